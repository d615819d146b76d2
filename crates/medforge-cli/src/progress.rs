//! Progress bars on stderr; indicatif draws nothing when stderr is not a terminal.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

/// One spinner per label, created on first use.
pub struct Bars {
    current: Mutex<Option<(String, ProgressBar)>>,
}

impl Bars {
    pub fn new() -> Self {
        Bars { current: Mutex::new(None) }
    }

    pub fn set(&self, label: &str, rows: u64) {
        let mut cur = self.current.lock().expect("progress lock");
        if cur.as_ref().is_none_or(|(l, _)| l != label) {
            if let Some((_, pb)) = cur.take() {
                pb.finish_and_clear();
            }
            let pb = ProgressBar::new_spinner();
            pb.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {human_pos} rows ({per_sec}) {elapsed}")
                    .expect("valid template"),
            );
            pb.set_prefix(label.to_string());
            pb.enable_steady_tick(std::time::Duration::from_millis(200));
            *cur = Some((label.to_string(), pb));
        }
        if let Some((_, pb)) = cur.as_ref() {
            pb.set_position(rows);
        }
    }

    pub fn finish(&self) {
        if let Some((_, pb)) = self.current.lock().expect("progress lock").take() {
            pb.finish_and_clear();
        }
    }
}
