//! Throughput and CPU of the medforge HTTP client against an OpenAI-compatible server.
//!
//! ```sh
//! cargo run --release -p medforge-llm --features testing --example bench_client -- URL CONCURRENCY REQUESTS
//! ```
//! Prints one JSON line: concurrency, requests, seconds, requests/s, CPU seconds (user+system of
//! this process) and CPU microseconds per request. The cache is off; every request is distinct.

use std::sync::Arc;
use std::time::Instant;

use medforge_llm::{ChatRequest, EndpointConfig, GenParams, LlmClient, Message, OpenAiBackend, Outcome};

/// user+system CPU seconds of this process, from /proc/self/stat (Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is [0]; utime is field 14 overall -> [11], stime [12].
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().expect("URL CONCURRENCY REQUESTS");
    let conc: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let mut cfg = EndpointConfig::new(url, "fake-model");
    cfg.max_concurrency = conc;
    let client = LlmClient::new(Arc::new(OpenAiBackend::new(cfg).expect("backend")));
    let reqs: Vec<ChatRequest> = (0..n)
        .map(|i| {
            ChatRequest::new(vec![
                Message::system("You are a medical expert. Answer with one letter."),
                Message::user(format!("Question {i}: which vitamin deficiency causes scurvy? A) A B) B12 C) C D) D")),
            ])
            .with_params(GenParams { max_tokens: Some(16), temperature: Some(0.0), ..Default::default() })
        })
        .collect();
    // Warm the connection pool.
    let _ = client.complete_all(reqs[..conc.min(n)].to_vec(), conc, |_, _| Ok(()), |_, _| {}).await;
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let all = client.complete_all(reqs, conc, |_, _| Ok(()), |_, _| {}).await;
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let ok = all.outcomes.iter().filter(|o| matches!(o, Some(Outcome::Done(..)))).count();
    println!(
        "{{\"client\":\"medforge\",\"concurrency\":{conc},\"requests\":{n},\"ok\":{ok},\"seconds\":{secs:.3},\"rps\":{:.1},\"cpu_s\":{cpu:.3},\"cpu_us_per_req\":{:.1}}}",
        n as f64 / secs,
        cpu / n as f64 * 1e6
    );
}
