//! rpm limit check (not part of `cargo test`: it takes wall-clock time).
//!
//! ```sh
//! cargo run --release -p medforge-llm --features testing --example rpm_check -- 600 30
//! ```
//! Runs against the in-process fake server with `rpm` = arg 1 for arg 2 seconds at concurrency 64
//! and checks the measured rate is within ±5% of the limit. Exit status 1 when it is not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use medforge_llm::testing::FakeServer;
use medforge_llm::{Backend, ChatRequest, EndpointConfig, OpenAiBackend};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rpm: u32 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(600);
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(30);
    let server = FakeServer::start().await;
    let mut cfg = EndpointConfig::new(server.base_url(), "fake-model");
    cfg.rpm = Some(rpm);
    cfg.max_concurrency = 64;
    let backend = Arc::new(OpenAiBackend::new(cfg).expect("backend"));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..64u64 {
        let (backend, stop) = (backend.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = backend.chat(&ChatRequest::user(format!("w{w} r{i}"))).await;
                i += 1;
            }
        }));
    }
    // Measure between the first and the last request inside the window, so start-up is excluded.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let n0 = server.request_count();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let n1 = server.request_count();
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let measured = (n1 - n0) as f64 / elapsed * 60.0;
    let err = (measured - rpm as f64) / rpm as f64 * 100.0;
    println!("rpm limit {rpm}, measured {measured:.1} rpm over {elapsed:.1} s ({:+.2}%)", err);
    for t in tasks {
        t.abort();
    }
    if err.abs() > 5.0 {
        eprintln!("outside ±5%");
        std::process::exit(1);
    }
}
