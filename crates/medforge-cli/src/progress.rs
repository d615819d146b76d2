//! Progress bars on stderr; silent when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressStyle};

pub fn rows(label: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {prefix} {human_pos} rows ({per_sec}) {elapsed}")
            .expect("valid template"),
    );
    pb.set_prefix(label.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}
