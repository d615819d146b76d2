//! An in-process OpenAI-compatible server for tests (feature `testing`): axum on `127.0.0.1`, a
//! free port, scripted faults, a log of every request, deterministic answers.
//!
//! Answers: when the last user message starts with `REPLY:`, the rest of it verbatim; otherwise
//! `echo:` + the first 16 hex digits of sha256 over the request's `messages` JSON (see
//! [`expected_echo`]). Usage: `ceil(chars/4)` of the messages and of the answer, unless fixed with
//! [`FakeServer::set_usage`].
//!
//! Faults come from a queue ([`FakeServer::push`], consumed one per request in arrival order) and
//! from rules matched against the prompt text ([`FakeServer::fail_when`]); the queue goes first.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::backend::ChatRequest;

/// A scripted misbehaviour for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// 429 with an optional `Retry-After` header value (seconds or an HTTP date).
    RateLimited { retry_after: Option<String> },
    /// 503 overload.
    Unavailable,
    /// Answer normally, but only after this long (beyond the client timeout, it is a timeout).
    Slow(Duration),
    /// 200 with a body that is not JSON.
    MalformedJson,
    /// 401 invalid API key.
    Unauthorized,
    /// 403.
    Forbidden,
    /// 400 invalid request.
    BadRequest,
    /// 200 with `finish_reason: content_filter` and null content.
    ContentFilter,
    /// 400 with error code `content_policy_violation`.
    ContentPolicy,
    /// 429 with error code `insufficient_quota`.
    InsufficientQuota,
    /// Drop the connection without an answer (a connection reset, as the client sees it).
    Disconnect,
    /// Any status with an empty OpenAI-style error body.
    Status(u16),
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// 0-based arrival order.
    pub seq: usize,
    /// The `Authorization` header, as received.
    pub authorization: Option<String>,
    /// The JSON body (`Value::Null` if it did not parse).
    pub body: Value,
    /// sha256 (hex) of the `messages` JSON: equal prompts, equal hashes.
    pub prompt_hash: String,
    pub fault: Option<Fault>,
}

struct Rule {
    contains: String,
    fault: Fault,
    remaining: Option<usize>,
}

#[derive(Default)]
struct ServerState {
    script: Mutex<VecDeque<Fault>>,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<LoggedRequest>>,
    latency: Mutex<Duration>,
    usage: Mutex<Option<(u64, u64)>>,
    inflight: AtomicUsize,
    max_inflight: AtomicUsize,
}

/// The running server; stops when dropped.
pub struct FakeServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn hash_messages(messages: &Value) -> String {
    hex::encode(Sha256::digest(messages.to_string().as_bytes()))
}

/// The answer the server gives to `req` when no fault applies.
pub fn expected_echo(req: &ChatRequest) -> String {
    if let Some(last) = req.messages.iter().rev().find(|m| m.role == crate::backend::Role::User) {
        if let Some(rest) = last.content.strip_prefix("REPLY:") {
            return rest.to_string();
        }
    }
    let v = serde_json::to_value(&req.messages).unwrap_or(Value::Null);
    format!("echo:{}", &hash_messages(&v)[..16])
}

fn answer_for(messages: &Value) -> String {
    let last_user = messages
        .as_array()
        .and_then(|a| a.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")));
    if let Some(rest) =
        last_user.and_then(|m| m.get("content")).and_then(Value::as_str).and_then(|c| c.strip_prefix("REPLY:"))
    {
        return rest.to_string();
    }
    format!("echo:{}", &hash_messages(messages)[..16])
}

fn prompt_text(messages: &Value) -> String {
    messages
        .as_array()
        .map(|a| a.iter().filter_map(|m| m.get("content").and_then(Value::as_str)).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

fn error_response(status: u16, code: &str, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": code, "code": code}});
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

struct InflightGuard<'a>(&'a ServerState);
impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn chat(State(st): State<Arc<ServerState>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = st.inflight.fetch_add(1, Ordering::SeqCst) + 1;
    st.max_inflight.fetch_max(now, Ordering::SeqCst);
    let _guard = InflightGuard(&st);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let messages = body.get("messages").cloned().unwrap_or(Value::Null);
    let text = prompt_text(&messages);
    let fault = lock(&st.script).pop_front().or_else(|| {
        let mut rules = lock(&st.rules);
        let r = rules.iter_mut().find(|r| text.contains(&r.contains) && r.remaining != Some(0))?;
        if let Some(n) = r.remaining.as_mut() {
            *n -= 1;
        }
        Some(r.fault.clone())
    });
    {
        let mut log = lock(&st.log);
        let seq = log.len();
        log.push(LoggedRequest {
            seq,
            authorization: headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string),
            body: body.clone(),
            prompt_hash: hash_messages(&messages),
            fault: fault.clone(),
        });
    }
    let latency = *lock(&st.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        Some(Fault::RateLimited { retry_after }) => {
            let mut r = error_response(429, "rate_limit_exceeded", "Rate limit reached, slow down");
            if let Some(v) = retry_after.and_then(|v| v.parse().ok()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        Some(Fault::Unavailable) => return error_response(503, "server_overloaded", "The server is overloaded"),
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        Some(Fault::MalformedJson) => {
            return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{\"choices\": [{\"mess")
                .into_response()
        }
        Some(Fault::Unauthorized) => return error_response(401, "invalid_api_key", "Incorrect API key provided"),
        Some(Fault::Forbidden) => return error_response(403, "permission_denied", "Not allowed"),
        Some(Fault::BadRequest) => {
            return error_response(400, "invalid_request_error", "Bad request: context too long")
        }
        Some(Fault::ContentPolicy) => {
            return error_response(400, "content_policy_violation", "Flagged by the content policy")
        }
        Some(Fault::InsufficientQuota) => {
            return error_response(429, "insufficient_quota", "You exceeded your current quota, please check your plan")
        }
        Some(Fault::Status(s)) => return error_response(s, "error", "scripted status"),
        Some(Fault::Disconnect) => panic!("fake server: scripted disconnect (this panic drops the connection)"),
        Some(Fault::ContentFilter) => {
            let v = json!({"id": "chatcmpl-fake", "object": "chat.completion", "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": null}, "finish_reason": "content_filter"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}});
            return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response();
        }
        None => {}
    }
    let answer = answer_for(&messages);
    let (p, c) = lock(&st.usage)
        .unwrap_or(((text.chars().count() as u64).div_ceil(4), (answer.chars().count() as u64).div_ceil(4)));
    let v = json!({"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": body.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}});
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

impl FakeServer {
    /// Start on `127.0.0.1:0` in the current tokio runtime.
    pub async fn start() -> FakeServer {
        let state = Arc::new(ServerState::default());
        let app = Router::new().route("/v1/chat/completions", post(chat)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        FakeServer { addr, state, shutdown: Some(tx) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://127.0.0.1:PORT/v1`, for `EndpointConfig::base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
    /// Faults for the next requests, in arrival order.
    pub fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.state.script).extend(faults);
    }
    /// A fault for requests whose prompt text contains `contains`; `times: None` for always.
    pub fn fail_when(&self, contains: &str, fault: Fault, times: Option<usize>) {
        lock(&self.state.rules).push(Rule { contains: contains.to_string(), fault, remaining: times });
    }
    /// Remove every queued fault and rule.
    pub fn clear_faults(&self) {
        lock(&self.state.script).clear();
        lock(&self.state.rules).clear();
    }
    /// Delay every answer by `d` (e.g. 50 ms for benchmarks).
    pub fn set_latency(&self, d: Duration) {
        *lock(&self.state.latency) = d;
    }
    /// Report this usage on every successful answer.
    pub fn set_usage(&self, prompt_tokens: u64, completion_tokens: u64) {
        *lock(&self.state.usage) = Some((prompt_tokens, completion_tokens));
    }
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.state.log).clone()
    }
    pub fn request_count(&self) -> usize {
        lock(&self.state.log).len()
    }
    /// How many requests with the same prompt arrived more than once (0 = no repeats).
    pub fn repeated_prompts(&self) -> usize {
        let log = lock(&self.state.log);
        let mut seen = std::collections::HashSet::new();
        log.iter().filter(|r| !seen.insert(r.prompt_hash.clone())).count()
    }
    /// The most requests the server handled at once.
    pub fn max_inflight(&self) -> usize {
        self.state.max_inflight.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
