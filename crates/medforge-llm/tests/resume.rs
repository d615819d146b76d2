//! Resume after `kill -9`: a child process (this test binary, re-run with an env var) works through
//! rows against the fake server in this process; it is killed with SIGKILL mid-run and run again.
//! The server's request log shows no finished row asked twice.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use medforge_llm::testing::FakeServer;
use medforge_llm::SecretEnv;
use medforge_llm::{Cache, CacheMode, ChatRequest, EndpointConfig, LlmClient, Message, OpenAiBackend, Outcome};

const CHILD: &str = "MEDFORGE_LLM_RESUME_CHILD";
const KEY_VAR: &str = "MEDFORGE_LLM_RESUME_KEY";
const SECRET: &str = "sk-resume-secret-value-77";
const ROWS: usize = 60;
/// Requests the child keeps in flight (it asks row after row): what a kill can leave unanswered.
const WINDOW: usize = 1;

fn row(i: usize) -> ChatRequest {
    ChatRequest::new(vec![Message::system("Classify."), Message::user(format!("resume row {i}"))])
}

/// The child: does nothing unless started by the parent test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_child() {
    let Ok(spec) = std::env::var(CHILD) else { return };
    let (base_url, cache_path) = spec.split_once('|').expect("base_url|cache_path");
    let mut cfg = EndpointConfig::new(base_url, "fake-model");
    cfg.api_key_env = Some(SecretEnv(KEY_VAR.into()));
    cfg.backoff_base_ms = 10;
    let client = LlmClient::new(Arc::new(OpenAiBackend::new(cfg).unwrap()))
        .with_cache(Arc::new(Cache::open(cache_path.as_ref()).unwrap()), CacheMode::Use)
        .with_template_version("resume-v1");
    for i in 0..ROWS {
        let out = client.complete(&row(i), |t| if t.is_empty() { Err("empty".into()) } else { Ok(()) }).await;
        assert!(matches!(out, Ok(Outcome::Done(..))), "row {i}: {out:?}");
    }
}

fn child(base_url: &str, cache: &std::path::Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["resume_child", "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, format!("{base_url}|{}", cache.display()))
        .env(KEY_VAR, SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_rerun_repeats_no_finished_row() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("llm_cache.sqlite");
    let server = FakeServer::start().await;
    server.set_latency(Duration::from_millis(15));

    let mut first = child(&server.base_url(), &cache);
    let t = Instant::now();
    while server.request_count() < ROWS / 3 {
        assert!(t.elapsed() < Duration::from_secs(60), "child made only {} requests", server.request_count());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let killed_at = server.request_count();
    assert!(killed_at < ROWS, "killed mid-run ({killed_at} of {ROWS})");
    let cached = Cache::open(&cache).unwrap().len().unwrap() as usize;
    assert!(cached + WINDOW >= killed_at, "everything answered before the kill is cached ({cached} of {killed_at})");

    let status = child(&server.base_url(), &cache).wait().unwrap();
    assert!(status.success(), "the re-run finishes");
    let log = server.requests();
    let repeats = server.repeated_prompts();
    assert!(repeats <= WINDOW, "only rows in flight at the kill may be asked again; {repeats} repeats");
    assert_eq!(log.len() - repeats, ROWS, "every row asked");
    eprintln!(
        "resume: killed after {killed_at} requests ({cached} cached); re-run total {} requests, {repeats} repeated",
        log.len()
    );
    assert_eq!(Cache::open(&cache).unwrap().len().unwrap() as usize, ROWS);
    assert!(log.iter().all(|r| r.authorization.as_deref() == Some(&format!("Bearer {SECRET}"))));

    // A third run is all cache hits: zero requests.
    let status = child(&server.base_url(), &cache).wait().unwrap();
    assert!(status.success());
    assert_eq!(server.request_count(), log.len());

    // The key never reaches a file.
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "key in {}", p.display());
    }
}
