//! The OpenAI-compatible server on the tiny random-weight model: happy paths, streaming, auth, and the bad-request
//! suite (each bad request gets a 4xx with an OpenAI-style JSON error, and the server keeps serving).

use std::sync::{Arc, Mutex};

use candle_core::quantized::GgmlDType;
use medforge_engine::engine::{Engine, LoadOptions};
use medforge_engine::server::{router, serve, ServerConfig};
use medforge_engine::tiny;
use serde_json::{json, Value};

struct Server {
    base: String,
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

fn start(api_key: Option<&str>) -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    tiny::write_gguf(&path, GgmlDType::F32).unwrap();
    let engine = Engine::load(&path, &LoadOptions::default()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = ServerConfig { api_key: api_key.map(str::to_string), max_body_bytes: 64 * 1024, ..Default::default() };
    let app = router(Arc::new(Mutex::new(engine)), cfg);
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(serve(listener, app));
    Server { base: format!("http://{addr}"), _dir: dir, rt, client: reqwest::Client::new() }
}

impl Server {
    fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>, key: Option<&str>) -> (u16, String) {
        self.rt.block_on(async {
            let mut r =
                self.client.post(format!("{}{path}", self.base)).header("content-type", "application/json").body(body);
            if let Some(k) = key {
                r = r.bearer_auth(k);
            }
            let resp = r.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    }
    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (s, t) = self.post_raw(path, body.to_string(), None);
        (s, serde_json::from_str(&t).unwrap_or_else(|_| json!({"raw": t})))
    }
    fn get(&self, path: &str, key: Option<&str>) -> (u16, String) {
        self.rt.block_on(async {
            let mut r = self.client.get(format!("{}{path}", self.base));
            if let Some(k) = key {
                r = r.bearer_auth(k);
            }
            let resp = r.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    }
}

fn chat(extra: Value) -> Value {
    let mut b = json!({"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            b.as_object_mut().unwrap().remove(k);
        } else {
            b[k] = v.clone();
        }
    }
    b
}

fn assert_openai_error(status: u16, body: &Value, want_status: u16, case: &str) {
    assert_eq!(status, want_status, "{case}: status {status}, body {body}");
    let e = &body["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{case}: no error.message in {body}");
    assert!(e["type"].is_string(), "{case}: no error.type in {body}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{case}: error lacks param/code: {body}");
}

#[test]
fn chat_completion_json_and_stream() {
    let s = start(None);
    let (st, body) = s.post("/v1/chat/completions", &chat(json!({})));
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "tiny");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert!(body["choices"][0]["message"]["content"].is_string());
    let ct = body["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=5).contains(&ct) || body["choices"][0]["finish_reason"] == "stop");
    assert_eq!(body["usage"]["total_tokens"].as_u64().unwrap(), body["usage"]["prompt_tokens"].as_u64().unwrap() + ct);
    let greedy_text = body["choices"][0]["message"]["content"].as_str().unwrap().to_string();

    let (st, raw) = s.post_raw(
        "/v1/chat/completions",
        chat(json!({"stream": true, "stream_options": {"include_usage": true}})).to_string(),
        None,
    );
    assert_eq!(st, 200);
    let events: Vec<&str> = raw.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(*events.last().unwrap(), "data: [DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    // The request's temperature defaults to 1 (OpenAI's default), so compare against a greedy stream instead.
    let (_, raw_greedy) =
        s.post_raw("/v1/chat/completions", chat(json!({"stream": true, "temperature": 0})).to_string(), None);
    let greedy_stream: String = raw_greedy
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    let (_, greedy_json) = s.post("/v1/chat/completions", &chat(json!({"temperature": 0})));
    assert_eq!(greedy_stream, greedy_json["choices"][0]["message"]["content"].as_str().unwrap());
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"].is_string()));
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].as_u64().is_some());
    assert!(!text.is_empty() && !greedy_text.is_empty());

    // Sampling (temperature 1) is seeded: a seed gives one text, streamed or not, every time; other seeds give others.
    let stream_text = |extra: Value| -> String {
        let (st, raw) = s.post_raw("/v1/chat/completions", chat(extra).to_string(), None);
        assert_eq!(st, 200, "{raw}");
        raw.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|e| *e != "[DONE]")
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
            .collect()
    };
    let sampled = |seed: u64, stream: bool| -> String {
        let extra = json!({"temperature": 1.0, "seed": seed, "max_tokens": 8, "stream": stream});
        if stream {
            return stream_text(extra);
        }
        let (st, body) = s.post("/v1/chat/completions", &chat(extra));
        assert_eq!(st, 200, "{body}");
        body["choices"][0]["message"]["content"].as_str().unwrap().to_string()
    };
    let first = sampled(7, true);
    assert_eq!(sampled(7, true), first, "same seed, same stream");
    assert_eq!(sampled(7, false), first, "same seed, same text streamed or not");
    let texts: std::collections::BTreeSet<String> = (1..=5).map(|seed| sampled(seed, true)).collect();
    assert_eq!(texts.len(), 5, "five seeds, five texts: {texts:?}");
    let greedy = stream_text(json!({"temperature": 0, "max_tokens": 8}));
    assert!(texts.iter().any(|t| *t != greedy), "sampling differs from greedy decoding");
}

#[test]
fn completions_models_logprobs_and_batch() {
    let s = start(None);
    let (st, body) = s.post(
        "/v1/completions",
        &json!({"model": "tiny", "prompt": ["the heart", "the liver"], "max_tokens": 4, "temperature": 0, "logprobs": 2}),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["choices"].as_array().unwrap().len(), 2);
    let lp = &body["choices"][0]["logprobs"];
    let n = lp["tokens"].as_array().unwrap().len();
    assert_eq!(lp["token_logprobs"].as_array().unwrap().len(), n);
    assert!(lp["top_logprobs"][0].as_object().is_none_or(|o| o.len() <= 2));
    let (st, body) =
        s.post("/v1/chat/completions", &chat(json!({"logprobs": true, "top_logprobs": 2, "temperature": 0})));
    assert_eq!(st, 200);
    let content = body["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert!(content
        .iter()
        .all(|t| t["logprob"].as_f64().unwrap() <= 0.0 && t["top_logprobs"].as_array().unwrap().len() == 2));
    let (st, raw) = s.get("/v1/models", None);
    assert_eq!(st, 200);
    let m: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(m["data"][0]["id"], "tiny");
    let (st, raw) =
        s.post_raw("/v1/completions", json!({"model": "tiny", "prompt": "abc", "stream": true}).to_string(), None);
    assert_eq!(st, 200);
    assert!(raw.trim_end().ends_with("data: [DONE]"));
}

#[test]
fn bearer_token_is_required_when_configured() {
    let s = start(Some("sekret"));
    let body = chat(json!({})).to_string();
    let (st, t) = s.post_raw("/v1/chat/completions", body.clone(), None);
    assert_openai_error(st, &serde_json::from_str(&t).unwrap(), 401, "no key");
    let (st, t) = s.post_raw("/v1/chat/completions", body.clone(), Some("wrong"));
    assert_openai_error(st, &serde_json::from_str(&t).unwrap(), 401, "wrong key");
    let (st, _) = s.post_raw("/v1/chat/completions", body, Some("sekret"));
    assert_eq!(st, 200);
    assert_eq!(s.get("/v1/models", None).0, 401);
    assert_eq!(s.get("/v1/models", Some("sekret")).0, 200);
}

#[test]
fn bad_requests_get_openai_errors_and_the_server_survives() {
    let s = start(None);
    let cases: Vec<(&str, Value, u16)> = vec![
        ("unknown model", chat(json!({"model": "gpt-4"})), 404),
        ("missing model", chat(json!({"model": null})), 400),
        ("model not a string", chat(json!({"model": 3})), 400),
        ("missing messages", chat(json!({"messages": null})), 400),
        ("empty messages", chat(json!({"messages": []})), 400),
        ("messages not a list", chat(json!({"messages": "hi"})), 400),
        ("message not an object", chat(json!({"messages": ["hi"]})), 400),
        ("bad role", chat(json!({"messages": [{"role": "wizard", "content": "hi"}]})), 400),
        ("tool role", chat(json!({"messages": [{"role": "tool", "content": "hi"}]})), 400),
        ("content not a string", chat(json!({"messages": [{"role": "user", "content": 5}]})), 400),
        ("image content part", chat(json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})), 400),
        ("max_tokens too large", chat(json!({"max_tokens": 1_000_000})), 400),
        ("max_tokens zero", chat(json!({"max_tokens": 0})), 400),
        ("max_tokens a string", chat(json!({"max_tokens": "5"})), 400),
        ("negative temperature", chat(json!({"temperature": -0.5})), 400),
        ("temperature above 2", chat(json!({"temperature": 3})), 400),
        ("temperature a string", chat(json!({"temperature": "hot"})), 400),
        ("top_p above 1", chat(json!({"top_p": 1.5})), 400),
        ("top_p zero", chat(json!({"top_p": 0})), 400),
        ("n > 1", chat(json!({"n": 2})), 400),
        ("stream not a bool", chat(json!({"stream": "yes"})), 400),
        ("stop of numbers", chat(json!({"stop": [1, 2]})), 400),
        ("five stop strings", chat(json!({"stop": ["a", "b", "c", "d", "e"]})), 400),
        ("top_logprobs without logprobs", chat(json!({"top_logprobs": 3})), 400),
        ("top_logprobs too many", chat(json!({"logprobs": true, "top_logprobs": 50})), 400),
        ("prompt + max_tokens beyond context", chat(json!({"max_tokens": tiny::CONTEXT - 2})), 400),
    ];
    for (case, body, want) in &cases {
        let (st, b) = s.post("/v1/chat/completions", body);
        assert_openai_error(st, &b, *want, case);
    }
    let raw_cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("bad JSON", "/v1/chat/completions", b"{\"model\": \"tiny\", ".to_vec(), 400),
        ("JSON not an object", "/v1/chat/completions", b"[1, 2]".to_vec(), 400),
        ("empty body", "/v1/chat/completions", Vec::new(), 400),
        ("invalid UTF-8", "/v1/chat/completions", vec![0xff, 0xfe, b'{'], 400),
        (
            "oversize body",
            "/v1/chat/completions",
            {
                let big = "x".repeat(200 * 1024);
                json!({"model": "tiny", "messages": [{"role": "user", "content": big}]}).to_string().into_bytes()
            },
            413,
        ),
        ("completions without prompt", "/v1/completions", br#"{"model": "tiny"}"#.to_vec(), 400),
        ("completions prompt of numbers", "/v1/completions", br#"{"model": "tiny", "prompt": [1]}"#.to_vec(), 400),
        ("completions echo", "/v1/completions", br#"{"model": "tiny", "prompt": "a", "echo": true}"#.to_vec(), 400),
        (
            "completions logprobs too many",
            "/v1/completions",
            br#"{"model": "tiny", "prompt": "a", "logprobs": 9}"#.to_vec(),
            400,
        ),
        ("unknown path", "/v1/embeddings", b"{}".to_vec(), 404),
    ];
    for (case, path, body, want) in raw_cases {
        let (st, t) = s.post_raw(path, body, None);
        let b: Value = serde_json::from_str(&t).unwrap_or_else(|_| panic!("{case}: not JSON: {t}"));
        assert_openai_error(st, &b, want, case);
    }
    let (st, t) = s.get("/v1/chat/completions", None);
    assert_openai_error(st, &serde_json::from_str(&t).unwrap(), 405, "GET on chat");
    // Still serving.
    let (st, _) = s.post("/v1/chat/completions", &chat(json!({})));
    assert_eq!(st, 200);
}

#[test]
fn structured_output_parameters_constrain_the_answer() {
    let s = start(None);
    let schema = json!({"type": "object", "properties": {"answer": {"type": "string", "enum": ["A", "B", "C", "D"]},
        "confidence": {"type": "integer", "minimum": 1, "maximum": 5}}, "required": ["answer", "confidence"],
        "additionalProperties": false});
    let rf = json!({"type": "json_schema", "json_schema": {"name": "mcq", "schema": schema, "strict": true}});
    let text = |b: &Value| b["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    for seed in 0..5 {
        let (st, b) = s.post(
            "/v1/chat/completions",
            &chat(json!({"response_format": rf, "max_tokens": 40, "temperature": 1.0, "seed": seed})),
        );
        assert_eq!(st, 200, "{b}");
        let v: Value = serde_json::from_str(&text(&b)).unwrap_or_else(|e| panic!("{e}: {}", text(&b)));
        assert!(matches!(v["answer"].as_str(), Some("A" | "B" | "C" | "D")), "{v}");
        assert!(v["confidence"].as_i64().is_some_and(|c| (1..=5).contains(&c)), "{v}");
        assert_eq!(b["choices"][0]["finish_reason"], "stop");
    }
    let (st, b) =
        s.post("/v1/chat/completions", &chat(json!({"response_format": {"type": "json_object"}, "max_tokens": 60})));
    assert_eq!(st, 200, "{b}");
    // Any object: the random model fills strings until max_tokens, so only the opening is certain here.
    assert!(text(&b).starts_with('{'), "{}", text(&b));
    let (st, b) = s.post(
        "/v1/chat/completions",
        &chat(json!({"guided_choice": ["correct", "incorrect"], "temperature": 1.0, "seed": 3, "max_tokens": 20})),
    );
    assert_eq!(st, 200, "{b}");
    assert!(["correct", "incorrect"].contains(&text(&b).as_str()), "{}", text(&b));
    let (st, b) = s.post("/v1/chat/completions", &chat(json!({"guided_regex": "[A-E]", "max_tokens": 3})));
    assert_eq!(st, 200, "{b}");
    assert!(regex::Regex::new("^[A-E]$").unwrap().is_match(&text(&b)), "{}", text(&b));
    let (st, b) = s.post(
        "/v1/chat/completions",
        &chat(json!({"guided_grammar": "start: \"- \" /[a-z]{1,5}/ \"\\n\"", "max_tokens": 10})),
    );
    assert_eq!(st, 200, "{b}");
    assert!(regex::Regex::new("^- [a-z]{1,5}\n$").unwrap().is_match(&text(&b)), "{:?}", text(&b));
    // A schema given to vLLM as a string; and the completions endpoint.
    let (st, b) = s.post("/v1/chat/completions", &chat(json!({"guided_json": schema.to_string(), "max_tokens": 40})));
    assert_eq!(st, 200, "{b}");
    assert!(serde_json::from_str::<Value>(&text(&b)).is_ok());
    let (st, b) = s.post(
        "/v1/completions",
        &json!({"model": "tiny", "prompt": "x", "guided_choice": ["yes", "no"], "max_tokens": 8}),
    );
    assert_eq!(st, 200, "{b}");
    assert!(["yes", "no"].contains(&b["choices"][0]["text"].as_str().unwrap()), "{b}");
    // Streaming follows the constraint too.
    let (st, raw) = s.post_raw(
        "/v1/chat/completions",
        chat(json!({"guided_choice": ["alpha", "beta"], "stream": true, "max_tokens": 20})).to_string(),
        None,
    );
    assert_eq!(st, 200);
    let streamed: String = raw
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|l| *l != "[DONE]")
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert!(["alpha", "beta"].contains(&streamed.as_str()), "{raw}");

    // Bad structure requests: 400 naming the parameter and the problem; the server keeps serving.
    for (case, extra, param, needle) in [
        ("bad grammar", json!({"guided_grammar": "start: undefined_rule"}), "guided_grammar", "undefined_rule"),
        ("bad regex", json!({"guided_regex": "(unclosed"}), "guided_regex", "regex"),
        (
            "bad schema",
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x",
            "schema": {"type": "nonsense"}}}}),
            "response_format",
            "json_schema",
        ),
        ("no schema", json!({"response_format": {"type": "json_schema"}}), "response_format", "schema"),
        ("unknown type", json!({"response_format": {"type": "xml"}}), "response_format", "xml"),
        ("empty choice", json!({"guided_choice": []}), "guided_choice", "non-empty"),
        ("two at once", json!({"guided_choice": ["a"], "guided_regex": "a"}), "guided_regex", "at most one"),
        ("json string", json!({"guided_json": "{not json"}), "guided_json", "not valid JSON"),
    ] {
        let (st, b) = s.post("/v1/chat/completions", &chat(extra));
        assert_openai_error(st, &b, 400, case);
        assert_eq!(b["error"]["param"], param, "{case}: {b}");
        let msg = b["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{case}: {msg}");
    }
    let (st, _) = s.post("/v1/chat/completions", &chat(json!({})));
    assert_eq!(st, 200);

    // medforge's extension: rank the choices by log-likelihood and say how likely each was.
    let (st, b) = s.post(
        "/v1/chat/completions",
        &chat(json!({"guided_choice": ["correct", "incorrect", "unsure"], "choice_scoring": "loglik"})),
    );
    assert_eq!(st, 200, "{b}");
    let list = b["choices"][0]["choice_logprobs"].as_array().unwrap().clone();
    assert_eq!(list.len(), 3);
    let best =
        list.iter().max_by(|x, y| x["logprob"].as_f64().unwrap().total_cmp(&y["logprob"].as_f64().unwrap())).unwrap();
    assert_eq!(text(&b), best["choice"].as_str().unwrap());
    assert!(list.iter().all(|c| c["logprob"].as_f64().unwrap() < 0.0));
    for (case, extra, needle) in [
        ("no choices", json!({"choice_scoring": "loglik"}), "needs `guided_choice`"),
        ("streamed", json!({"guided_choice": ["a", "b"], "choice_scoring": "loglik", "stream": true}), "cannot stream"),
        ("unknown", json!({"guided_choice": ["a", "b"], "choice_scoring": "sum"}), "must be \"loglik\""),
    ] {
        let (st, b) = s.post("/v1/chat/completions", &chat(extra));
        assert_openai_error(st, &b, 400, case);
        assert!(b["error"]["message"].as_str().unwrap().contains(needle), "{case}: {b}");
    }
}
