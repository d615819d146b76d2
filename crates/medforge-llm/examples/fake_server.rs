//! The fake OpenAI-compatible server as a standalone process, for benchmarks and manual tests.
//!
//! ```sh
//! cargo run --release -p medforge-llm --features testing --example fake_server -- --latency-ms 50 --port 0
//! ```
//! Prints `listening http://127.0.0.1:PORT/v1` on the first line, then serves until killed.

use std::time::Duration;

use medforge_llm::testing::FakeServer;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<u64>().ok())
    };
    let latency = arg("--latency-ms").unwrap_or(50);
    let server = FakeServer::start().await;
    server.set_latency(Duration::from_millis(latency));
    println!("listening {}", server.base_url());
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        eprintln!("requests so far: {}", server.request_count());
    }
}
