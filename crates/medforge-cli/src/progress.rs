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
        self.update(label, rows, 0, None)
    }

    /// A bar with done/total, rate and ETA when `total` is known (a spinner otherwise), and a
    /// message after it (the LLM spend so far).
    pub fn update(&self, label: &str, rows: u64, total: u64, msg: Option<String>) {
        let mut cur = self.current.lock().expect("progress lock");
        if cur.as_ref().is_none_or(|(l, pb)| l != label || (total > 0) != pb.length().is_some()) {
            if let Some((_, pb)) = cur.take() {
                pb.finish_and_clear();
            }
            let pb = if total > 0 {
                let pb = ProgressBar::new(total);
                pb.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:24}] {human_pos}/{human_len} ({per_sec}, ETA {eta}) {msg}",
                    )
                    .expect("valid template"),
                );
                pb
            } else {
                let pb = ProgressBar::new_spinner();
                pb.set_style(
                    ProgressStyle::with_template("{spinner} {prefix} {human_pos} rows ({per_sec}) {elapsed} {msg}")
                        .expect("valid template"),
                );
                pb
            };
            pb.set_prefix(label.to_string());
            pb.enable_steady_tick(std::time::Duration::from_millis(200));
            *cur = Some((label.to_string(), pb));
        }
        if let Some((_, pb)) = cur.as_ref() {
            if total > 0 {
                pb.set_length(total);
            }
            pb.set_position(rows);
            if let Some(m) = msg {
                pb.set_message(m);
            }
        }
    }

    pub fn finish(&self) {
        if let Some((_, pb)) = self.current.lock().expect("progress lock").take() {
            pb.finish_and_clear();
        }
    }
}
