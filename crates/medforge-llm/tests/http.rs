//! Fault-injection tests against the in-process fake server, over real HTTP on 127.0.0.1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use medforge_llm::batch::{read_requests, read_results, write_requests};
use medforge_llm::testing::{expected_echo, FakeServer, Fault};
use medforge_llm::SecretEnv;
use medforge_llm::{
    Backend, Backoff, Cache, CacheMode, ChatRequest, EndpointConfig, Fleet, GenParams, LlmClient, LlmError, Message,
    OpenAiBackend, Outcome, Pricing, Stop,
};

fn cfg(server: &FakeServer) -> EndpointConfig {
    let mut c = EndpointConfig::new(server.base_url(), "fake-model");
    c.backoff_base_ms = 10;
    c.backoff_max_ms = 80;
    c.jitter_seed = Some(42);
    c.max_retries = 4;
    c.timeout_s = 5.0;
    c
}

fn backend(c: EndpointConfig) -> Arc<OpenAiBackend> {
    Arc::new(OpenAiBackend::new(c).expect("backend"))
}

fn any(_: &str) -> Result<(), String> {
    Ok(())
}

fn row(i: usize) -> ChatRequest {
    ChatRequest::new(vec![Message::system("You are a medical expert."), Message::user(format!("question {i}"))])
        .with_params(GenParams { max_tokens: Some(100), temperature: Some(0.0), ..Default::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_burst_is_retried_with_the_seeded_backoff_sequence() {
    let s = FakeServer::start().await;
    s.push([Fault::Unavailable, Fault::Unavailable, Fault::Unavailable]);
    let c = cfg(&s);
    let b = backend(c.clone());
    let req = row(0);
    let r = b.chat(&req).await.expect("succeeds on the 4th attempt");
    assert_eq!(r.text, expected_echo(&req));
    assert_eq!(r.retries, 3);
    assert_eq!(s.request_count(), 4);
    let log = b.retry_log();
    let expected = Backoff::new(c.retry_policy());
    let want: Vec<u64> = (0..3).map(|i| expected.delay(i, None).as_millis() as u64).collect();
    let got: Vec<u64> = log.iter().map(|e| e.delay_ms).collect();
    assert_eq!(got, want, "delays are the seeded sequence");
    assert!(log.iter().all(|e| e.code == "llm.http_503"));
    for (i, d) in got.iter().enumerate() {
        let cap = (10u64 << i).min(80);
        assert!(*d >= cap / 2 && *d < cap, "retry {i}: {d} ms outside [{}, {cap})", cap / 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let s = FakeServer::start().await;
    s.push([Fault::RateLimited { retry_after: Some("1".into()) }]);
    let b = backend(cfg(&s));
    let t = Instant::now();
    b.chat(&row(0)).await.expect("succeeds after the 429");
    assert!(t.elapsed() >= Duration::from_secs(1), "waited the Retry-After second");
    let log = b.retry_log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].code, "llm.rate_limited");
    assert_eq!(log[0].retry_after_ms, Some(1000));
    assert!(log[0].delay_ms >= 1000);
    assert_eq!(s.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_after_max_retries() {
    let s = FakeServer::start().await;
    s.fail_when("", Fault::Unavailable, None);
    let b = backend(cfg(&s));
    match b.chat(&row(0)).await {
        Err(LlmError::Transient { code, retries, .. }) => {
            assert_eq!(code, "llm.http_503");
            assert_eq!(retries, 4);
        }
        other => panic!("expected a transient failure, got {other:?}"),
    }
    assert_eq!(s.request_count(), 5, "1 attempt + max_retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_malformed_bodies_and_resets_are_retried() {
    let s = FakeServer::start().await;
    let mut c = cfg(&s);
    // Generous against a loaded machine (an answer that takes longer than this would be counted as a timeout and
    // change the sequence); the slow fault is far beyond it.
    c.timeout_s = 3.0;
    let b = backend(c);
    s.push([Fault::Slow(Duration::from_secs(60)), Fault::MalformedJson, Fault::Disconnect]);
    let req = row(1);
    let r = b.chat(&req).await.expect("succeeds on the 4th attempt");
    assert_eq!(r.text, expected_echo(&req));
    let codes: Vec<String> = b.retry_log().into_iter().map(|e| e.code).collect();
    assert_eq!(codes, ["llm.timeout", "llm.malformed_json", "llm.connection"]);
    assert_eq!(s.request_count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_content_filters_skip_the_row() {
    let s = FakeServer::start().await;
    s.fail_when("question 1", Fault::BadRequest, None);
    s.fail_when("question 2", Fault::ContentFilter, None);
    s.fail_when("question 3", Fault::ContentPolicy, None);
    let client = LlmClient::new(backend(cfg(&s)));
    let mut codes = Vec::new();
    for i in 0..4 {
        match client.complete(&row(i), any).await.expect("no stop") {
            Outcome::Done(r, false) => codes.push(r.text),
            Outcome::Skipped { code, .. } => codes.push(code),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(codes[1..], ["llm.bad_request", "llm.content_filter", "llm.content_filter"]);
    assert_eq!(s.request_count(), 4, "skips are not retried");
    let snap = client.spend().snapshot();
    assert_eq!((snap.calls, snap.skipped, snap.retries), (4, 3, 0));
}

/// The key must be in the environment, and tests in one binary run in parallel, so this one re-runs itself in a child
/// process with the variable set there (no `set_var` while other tests read the environment).
#[test]
fn unauthorized_stops_the_run_and_never_shows_the_key() {
    const VAR: &str = "MEDFORGE_TEST_KEY_401";
    if std::env::var_os(VAR).is_some() {
        return tokio::runtime::Runtime::new().unwrap().block_on(unauthorized_body(VAR));
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["unauthorized_stops_the_run_and_never_shows_the_key", "--exact", "--test-threads=1"])
        .env(VAR, "sk-test-very-secret-4010")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"), "the child ran the test");
}

async fn unauthorized_body(var: &str) {
    let secret = std::env::var(var).unwrap();
    let secret = secret.as_str();
    let s = FakeServer::start().await;
    s.push([Fault::Unauthorized]);
    let mut c = cfg(&s);
    c.api_key_env = Some(SecretEnv(var.into()));
    let b = backend(c);
    let client = LlmClient::new(b.clone());
    let stop = client.complete(&row(0), any).await.expect_err("401 stops");
    match &stop {
        Stop::Fatal { code, message } => {
            assert_eq!(code, "llm.unauthorized");
            assert!(message.contains("MEDFORGE_TEST_KEY_401"), "says which variable to fix: {message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.requests()[0].authorization.as_deref(), Some(format!("Bearer {secret}").as_str()));
    // Later calls stop without a request.
    assert_eq!(client.complete(&row(1), any).await, Err(stop.clone()));
    assert_eq!(s.request_count(), 1);
    for shown in [stop.to_string(), format!("{stop:?}"), format!("{b:?}"), format!("{client:?}")] {
        assert!(!shown.contains(secret), "key leaked into: {shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_key_and_exhausted_quota_are_fatal() {
    let s = FakeServer::start().await;
    let mut c = cfg(&s);
    c.api_key_env = Some(SecretEnv("MEDFORGE_TEST_KEY_NEVER_SET".into()));
    match OpenAiBackend::new(c) {
        Err(LlmError::Fatal { code, message }) => {
            assert_eq!(code, "llm.no_api_key");
            assert!(message.contains("MEDFORGE_TEST_KEY_NEVER_SET"));
        }
        other => panic!("{other:?}"),
    }
    s.push([Fault::InsufficientQuota]);
    let b = backend(cfg(&s));
    assert_eq!(b.chat(&row(0)).await.unwrap_err().code(), "llm.insufficient_quota");
    assert_eq!(s.request_count(), 1, "quota is not retried");
    s.push([Fault::Forbidden]);
    assert_eq!(b.chat(&row(0)).await.unwrap_err().code(), "llm.forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_stops_within_one_request_of_the_limit() {
    let s = FakeServer::start().await;
    // The server reports at most what the estimator reserves, so reservations are upper bounds.
    s.set_usage(5, 100);
    let mut c = cfg(&s);
    c.pricing = Pricing { input_per_1m: 1000.0, output_per_1m: 1000.0 };
    c.max_concurrency = 4;
    let client = LlmClient::new(backend(c)).with_budget(Some(1.0));
    let per_request = client.pricing().cost(5, 100);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..40 {
        let client = client.clone();
        set.spawn(async move { client.complete(&row(i), any).await });
    }
    let (mut done, mut stopped) = (0, 0);
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(Outcome::Done(..)) => done += 1,
            Err(Stop::Budget { budget_usd, .. }) => {
                assert_eq!(budget_usd, 1.0);
                stopped += 1
            }
            other => panic!("{other:?}"),
        }
    }
    let spent = client.spend().usd();
    assert!(spent <= 1.0 + 1e-9, "never above the budget: {spent}");
    assert!(1.0 - spent < per_request + client.pricing().cost(30, 100), "within one request: {spent}");
    assert_eq!(done + stopped, 40);
    assert_eq!(s.request_count(), done, "no request after the stop");
    assert!(matches!(client.stopped(), Some(Stop::Budget { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_on_the_same_cache_makes_zero_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llm_cache.sqlite");
    let s = FakeServer::start().await;
    let reject_echo_of_4 =
        |t: &str| if t == expected_echo(&row(4)) { Err("scripted rejection".to_string()) } else { Ok(()) };
    {
        let client = LlmClient::new(backend(cfg(&s)))
            .with_cache(Arc::new(Cache::open(&path).unwrap()), CacheMode::Use)
            .with_template_version("label-v1");
        for i in 0..5 {
            let out = client.complete(&row(i), reject_echo_of_4).await.unwrap();
            if i == 4 {
                assert!(matches!(out, Outcome::Failed { ref code, .. } if code == "llm.invalid_response"), "{out:?}");
            } else {
                assert!(matches!(out, Outcome::Done(_, false)));
            }
        }
        assert_eq!(s.request_count(), 5);
    }
    // A second process: new backend, new cache connection on the same file.
    let cache = Arc::new(Cache::open(&path).unwrap());
    assert_eq!(cache.len().unwrap(), 4, "only validated responses are stored");
    let client =
        LlmClient::new(backend(cfg(&s))).with_cache(cache.clone(), CacheMode::Use).with_template_version("label-v1");
    for i in 0..4 {
        match client.complete(&row(i), any).await.unwrap() {
            Outcome::Done(r, true) => assert_eq!(r.text, expected_echo(&row(i))),
            other => panic!("row {i}: {other:?}"),
        }
    }
    assert_eq!(s.request_count(), 5, "zero requests for finished rows");
    assert_eq!(s.repeated_prompts(), 0);
    let snap = client.spend().snapshot();
    assert_eq!((snap.calls, snap.cache_hits), (0, 4));
    // The failed row is asked again.
    assert!(matches!(client.complete(&row(4), any).await.unwrap(), Outcome::Done(_, false)));
    assert_eq!(s.request_count(), 6);
    // Another template version is another key.
    let v2 = client.with_template_version("label-v2");
    assert!(matches!(v2.complete(&row(0), any).await.unwrap(), Outcome::Done(_, false)));
    assert_eq!(s.request_count(), 7);
    // --refresh asks again and overwrites; --no-cache neither reads nor writes.
    let refresh = LlmClient::new(backend(cfg(&s)))
        .with_cache(cache.clone(), CacheMode::Refresh)
        .with_template_version("label-v1");
    assert!(matches!(refresh.complete(&row(0), any).await.unwrap(), Outcome::Done(_, false)));
    assert_eq!(s.request_count(), 8);
    let before = cache.len().unwrap();
    let off =
        LlmClient::new(backend(cfg(&s))).with_cache(cache.clone(), CacheMode::Off).with_template_version("label-v1");
    assert!(matches!(off.complete(&row(1), any).await.unwrap(), Outcome::Done(_, false)));
    assert!(matches!(off.complete(&row(99), any).await.unwrap(), Outcome::Done(_, false)));
    assert_eq!(s.request_count(), 10);
    assert_eq!(cache.len().unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_takes_a_failing_endpoint_out_of_rotation() {
    let sick = FakeServer::start().await;
    sick.fail_when("", Fault::Unavailable, None);
    let healthy = FakeServer::start().await;
    // A dead endpoint that keeps its port for the whole test: it accepts and drops every connection.
    let dead_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_port = dead_listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((conn, _)) = dead_listener.accept().await {
            drop(conn);
        }
    });
    let mut dead = cfg(&healthy);
    dead.base_url = format!("http://127.0.0.1:{dead_port}/v1");
    let mut cfgs = vec![cfg(&sick), dead, cfg(&healthy)];
    for c in &mut cfgs {
        c.cooldown_s = 60.0;
    }
    let fleet = Arc::new(Fleet::new(cfgs).unwrap());
    let t = Instant::now();
    for i in 0..10 {
        let r = fleet.chat(&row(i)).await.expect("a healthy endpoint answers");
        assert_eq!(r.text, expected_echo(&row(i)));
    }
    assert_eq!(sick.request_count(), 1, "one failure, then out of rotation");
    assert_eq!(healthy.request_count(), 10);
    assert_eq!(fleet.served(), vec![0, 0, 10]);
    let codes: Vec<String> = fleet.retry_log().into_iter().map(|e| e.code).collect();
    assert_eq!(codes, ["llm.http_503", "llm.connection"]);
    assert!(t.elapsed() < Duration::from_secs(5), "failover does not wait while an endpoint is up");
    assert!(fleet.identity().contains("fake-model"));
    let mismatched = vec![cfg(&healthy), EndpointConfig::new(healthy.base_url(), "other")];
    assert!(Fleet::new(mismatched).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_limited() {
    let s = FakeServer::start().await;
    s.set_latency(Duration::from_millis(50));
    let mut c = cfg(&s);
    c.max_concurrency = 3;
    let client = LlmClient::new(backend(c));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..12 {
        let client = client.clone();
        set.spawn(async move { client.complete(&row(i), any).await });
    }
    while let Some(r) = set.join_next().await {
        assert!(matches!(r.unwrap(), Ok(Outcome::Done(_, false))));
    }
    assert_eq!(s.request_count(), 12);
    assert!(s.max_inflight() <= 3, "max in flight {}", s.max_inflight());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_files_round_trip_through_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let s = FakeServer::start().await;
    s.fail_when("question 2", Fault::BadRequest, None);
    let rows: Vec<(String, ChatRequest)> = (0..5).map(|i| (format!("medqa-{i}"), row(i))).collect();
    let req_path = dir.path().join("batch_requests.jsonl");
    let f = std::io::BufWriter::new(std::fs::File::create(&req_path).unwrap());
    assert_eq!(write_requests(f, "fake-model", rows.iter().map(|(id, r)| (id.as_str(), r))).unwrap(), 5);

    // Answer the file the way a batch service would: POST each body, write result lines.
    let lines = read_requests(std::io::BufReader::new(std::fs::File::open(&req_path).unwrap())).unwrap();
    let http = reqwest::Client::new();
    let mut out = String::new();
    for l in lines.iter().rev() {
        let resp = http.post(format!("http://{}{}", s.addr(), l.url)).json(&l.body).send().await.unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap();
        let line = serde_json::json!({"id": format!("batch_req_{}", l.custom_id), "custom_id": l.custom_id,
            "response": {"status_code": status, "request_id": "r", "body": body}, "error": null});
        out.push_str(&line.to_string());
        out.push('\n');
    }
    let res_path = dir.path().join("batch_results.jsonl");
    std::fs::write(&res_path, out).unwrap();

    let results = read_results(std::io::BufReader::new(std::fs::File::open(&res_path).unwrap())).unwrap();
    assert_eq!(results.len(), 5);
    for (id, req) in &rows {
        match &results[id] {
            Ok(r) => assert_eq!(r.text, expected_echo(req), "{id}"),
            Err(e) => {
                assert_eq!(id, "medqa-2");
                assert_eq!(e.code(), "llm.bad_request");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_all_keeps_order_and_stops_cleanly() {
    let s = FakeServer::start().await;
    s.fail_when("question 3", Fault::BadRequest, None);
    let client = LlmClient::new(backend(cfg(&s)));
    let reqs: Vec<ChatRequest> = (0..20).map(row).collect();
    let progressed = std::sync::atomic::AtomicUsize::new(0);
    let all = client
        .complete_all(
            reqs.clone(),
            8,
            |i, _t| if i == 5 { Err("row 5 rejected".into()) } else { Ok(()) },
            |done, total| {
                assert_eq!(total, 20);
                progressed.fetch_max(done, std::sync::atomic::Ordering::Relaxed);
            },
        )
        .await;
    assert_eq!(all.stop, None);
    assert_eq!(progressed.into_inner(), 20);
    for (i, o) in all.outcomes.iter().enumerate() {
        match (i, o) {
            (3, Some(Outcome::Skipped { code, .. })) => assert_eq!(code, "llm.bad_request"),
            (5, Some(Outcome::Failed { code, .. })) => assert_eq!(code, "llm.invalid_response"),
            (_, Some(Outcome::Done(r, false))) => assert_eq!(r.text, expected_echo(&reqs[i])),
            other => panic!("{other:?}"),
        }
    }

    // A 401 mid-run: nothing new starts, what was done is kept, the rest is None. One request at a time, so the
    // order is fixed (with a wider window, how many rows finish while question 7 is in flight depends on scheduling).
    let s = FakeServer::start().await;
    s.fail_when("question 7", Fault::Unauthorized, None);
    let client = LlmClient::new(backend(cfg(&s)));
    let all = client.complete_all(reqs.clone(), 1, |_, _| Ok(()), |_, _| {}).await;
    assert!(matches!(all.stop, Some(Stop::Fatal { ref code, .. }) if code == "llm.unauthorized"));
    assert!(all.outcomes[..7].iter().all(|o| matches!(o, Some(Outcome::Done(..)))));
    assert!(all.outcomes[7..].iter().all(Option::is_none), "{:?}", all.outcomes);
    assert_eq!(s.request_count(), 8, "nothing starts after the 401");
}

/// Lower bounds only (an upper bound on wall time would be flaky on a loaded machine); the ±5%
/// rate check is `cargo run --example rpm_check` / `bench/llm_bench.sh`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpm_and_tpm_limits_space_requests() {
    let s = FakeServer::start().await;
    let mut rpm = cfg(&s);
    rpm.rpm = Some(120); // one request every 0.5 s, no burst
    let mut tpm = cfg(&s);
    tpm.tpm = Some(6000); // 100 tokens/s, burst 600 tokens
    let rpm_client = LlmClient::new(backend(rpm));
    let tpm_client = LlmClient::new(backend(tpm));
    // Each request is estimated at 21 prompt tokens + 39 max_tokens = 60 tokens.
    let small = |i| {
        let mut r = row(i);
        r.params.max_tokens = Some(39);
        r
    };
    assert_eq!(medforge_llm::estimate_request(&small(0)).prompt_tokens + 39, 60);
    let t = Instant::now();
    let (a, b) = tokio::join!(
        async {
            let all = rpm_client.complete_all((0..4).map(row).collect(), 8, |_, _| Ok(()), |_, _| {}).await;
            (all, t.elapsed())
        },
        async {
            // 10 fit the burst; requests 11, 12 and 13 wait 0.6 s each.
            let all = tpm_client.complete_all((100..113).map(small).collect(), 16, |_, _| Ok(()), |_, _| {}).await;
            (all, t.elapsed())
        }
    );
    assert!(a.0.outcomes.iter().all(|o| matches!(o, Some(Outcome::Done(..)))));
    assert!(b.0.outcomes.iter().all(|o| matches!(o, Some(Outcome::Done(..)))));
    assert!(a.1 >= Duration::from_millis(1400), "4 requests at 120 rpm took {:?}", a.1);
    assert!(b.1 >= Duration::from_millis(1500), "13 x 60 tokens at 6000 tpm took {:?}", b.1);
}

/// A stage's `structure` reaches the server only where the endpoint's `structured_output` says how: nothing by
/// default, `response_format` (JSON schemas only) for OpenAI, `guided_*` for vLLM. Checked on the bodies a loopback
/// server recorded; a fleet sends each endpoint its own form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structure_is_sent_only_where_configured() {
    use medforge_llm::{Structure, StructuredOutputApi};
    let schema = serde_json::json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]});
    let kinds = [
        Structure::Choice(vec!["correct".into(), "incorrect".into()]),
        Structure::Regex("[A-E]".into()),
        Structure::JsonSchema(schema.clone()),
        Structure::Grammar("start: \"x\"".into()),
    ];
    let guided = ["guided_choice", "guided_regex", "guided_json", "guided_grammar"];
    let s = FakeServer::start().await;
    for api in [
        StructuredOutputApi::None,
        StructuredOutputApi::OpenAi,
        StructuredOutputApi::Vllm,
        StructuredOutputApi::Medforge,
    ] {
        let mut c = cfg(&s);
        c.structured_output = api;
        let b = backend(c);
        for (i, st) in kinds.iter().enumerate() {
            let mut req = row(i);
            req.params.structure = Some(st.clone());
            // Asked to score choices: only `medforge serve` hears it, and only for a choice.
            req.params.score_choices = true;
            b.chat(&req).await.expect("answer");
            let body = s.requests().last().unwrap().body.clone();
            let scoring = body.get("choice_scoring").is_some();
            assert_eq!(scoring, api == StructuredOutputApi::Medforge && i == 0, "{api:?}: {body}");
            let sent: Vec<&str> = guided.iter().copied().filter(|k| body.get(*k).is_some()).collect();
            match api {
                StructuredOutputApi::None => {
                    assert!(sent.is_empty() && body.get("response_format").is_none(), "{body}")
                }
                StructuredOutputApi::OpenAi => {
                    assert!(sent.is_empty(), "{body}");
                    if matches!(st, Structure::JsonSchema(_)) {
                        assert_eq!(body["response_format"]["type"], "json_schema");
                        assert_eq!(body["response_format"]["json_schema"]["schema"], schema);
                        assert_eq!(body["response_format"]["json_schema"]["strict"], true);
                    } else {
                        assert!(body.get("response_format").is_none(), "{body}");
                    }
                }
                StructuredOutputApi::Vllm | StructuredOutputApi::Medforge => {
                    assert_eq!(sent, vec![guided[i]], "{body}");
                    assert!(body.get("response_format").is_none());
                }
            }
        }
        // No structure: nothing extra, whatever the endpoint takes.
        b.chat(&row(9)).await.unwrap();
        let body = s.requests().last().unwrap().body.clone();
        assert!(guided.iter().all(|k| body.get(*k).is_none()) && body.get("response_format").is_none(), "{body}");
    }
    // A fleet: endpoint 0 takes vLLM's parameters, endpoint 1 none; each request's body follows the endpoint.
    let s2 = FakeServer::start().await;
    let mut c0 = cfg(&s);
    c0.structured_output = StructuredOutputApi::Vllm;
    let c1 = cfg(&s2);
    let fleet = Fleet::new(vec![c0, c1]).unwrap();
    let before = s.request_count();
    for i in 0..6 {
        let mut req = row(100 + i);
        req.params.structure = Some(kinds[0].clone());
        fleet.chat(&req).await.unwrap();
    }
    let to_vllm = &s.requests()[before..];
    assert!(!to_vllm.is_empty() && !s2.requests().is_empty());
    assert!(to_vllm.iter().all(|r| r.body.get("guided_choice").is_some()));
    assert!(s2.requests().iter().all(|r| r.body.get("guided_choice").is_none()));
    // The constraint is part of the cache key; an unconstrained request's key is what it always was.
    let plain = row(1);
    let mut constrained = row(1);
    constrained.params.structure = Some(kinds[1].clone());
    let k = |r: &ChatRequest| medforge_llm::cache_key("id", "m", "v1", r);
    assert_ne!(k(&plain), k(&constrained));
    assert!(!serde_json::to_string(&plain.params).unwrap().contains("structure"));
}
