//! An OpenAI-compatible HTTP server over one [`Engine`]: `POST /v1/chat/completions` (JSON or SSE streaming),
//! `POST /v1/completions` (one prompt or a batch), `GET /v1/models`, `GET /health`.
//!
//! Every bad request gets an OpenAI-style JSON error (`{"error": {"message", "type", "param", "code"}}`) with a 4xx
//! status: invalid JSON, wrong field types, missing or empty `messages`, unknown roles, unknown model, `max_tokens`
//! beyond the context, `n > 1`, out-of-range sampling values, oversize bodies, wrong method or path, a missing or wrong
//! bearer token. Requests are served one at a time (the engine is single-threaded); others wait their turn.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use medforge_text::chat::Message;
use serde_json::{json, Map, Value};
use tokio_stream::StreamExt;

use crate::constrain::Constraint;
use crate::engine::{Engine, GenerateParams, Generation, TokenLogprob};
use crate::sampling::SamplingParams;
use crate::EngineError;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Required bearer token, if any.
    pub api_key: Option<String>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Default `max_tokens` for chat when the request gives none.
    pub default_max_tokens: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { api_key: None, max_body_bytes: 1 << 20, default_max_tokens: 512 }
    }
}

struct AppState {
    engine: Arc<Mutex<Engine>>,
    model: String,
    context: usize,
    cfg: ServerConfig,
    counter: AtomicU64,
}

/// An OpenAI-style error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    param: Option<String>,
    code: Option<&'static str>,
}

impl ApiError {
    fn bad(param: &str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            param: Some(param.to_string()).filter(|p| !p.is_empty()),
            code: None,
        }
    }
    fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
    fn status(mut self, s: StatusCode) -> Self {
        self.status = s;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}});
        (self.status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}

fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::ContextOverflow { .. } => {
            ApiError::bad("messages", e.to_string()).with_code("context_length_exceeded")
        }
        EngineError::BadInput(_) | EngineError::Template(_) | EngineError::Unsupported(_) => {
            ApiError::bad("", e.to_string())
        }
        other => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "server_error",
            message: other.to_string(),
            param: None,
            code: None,
        },
    }
}

/// The router for an engine.
pub fn router(engine: Arc<Mutex<Engine>>, cfg: ServerConfig) -> Router {
    let (model, context) = {
        let e = engine.lock().unwrap_or_else(|p| p.into_inner());
        (e.name.clone(), e.context_length())
    };
    let state = Arc::new(AppState { engine, model, context, cfg, counter: AtomicU64::new(0) });
    Router::new()
        .route("/v1/chat/completions", any(chat_completions))
        .route("/v1/completions", any(completions))
        .route("/v1/models", any(models))
        .route("/health", any(health))
        .fallback(not_found)
        .with_state(state)
}

/// Serve on a bound listener until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(listener, app).await
}

/// Bind `addr`, report the bound address through `on_bound` (the port may have been 0), and serve `engine` until
/// the process ends, on a runtime of its own.
pub fn run_blocking(
    addr: &str,
    engine: Engine,
    cfg: ServerConfig,
    on_bound: impl FnOnce(std::net::SocketAddr),
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        on_bound(listener.local_addr()?);
        serve(listener, router(Arc::new(Mutex::new(engine)), cfg)).await
    })
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::bad("", format!("no route {method} {}", uri.path())).with_code("not_found").status(StatusCode::NOT_FOUND)
}

fn method_is(method: &Method, want: Method) -> Result<(), ApiError> {
    if *method == want {
        Ok(())
    } else {
        Err(ApiError::bad("", format!("method {method} not allowed here; use {want}"))
            .with_code("method_not_allowed")
            .status(StatusCode::METHOD_NOT_ALLOWED))
    }
}

fn check_auth(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &state.cfg.api_key else { return Ok(()) };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "invalid_request_error",
            message: "missing or incorrect API key (send `Authorization: Bearer <key>`)".into(),
            param: None,
            code: Some("invalid_api_key"),
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn read_json(state: &AppState, body: Body) -> Result<Map<String, Value>, ApiError> {
    let limit = state.cfg.max_body_bytes;
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::bad("", format!("request body larger than {limit} bytes"))
            .with_code("request_too_large")
            .status(StatusCode::PAYLOAD_TOO_LARGE)
    })?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad("", format!("request body is not valid JSON: {e}")).with_code("invalid_json"))?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::bad("", "request body must be a JSON object").with_code("invalid_json")),
    }
}

async fn health() -> &'static str {
    "ok"
}

async fn models(State(s): State<Arc<AppState>>, method: Method, headers: HeaderMap) -> Result<Response, ApiError> {
    method_is(&method, Method::GET)?;
    check_auth(&s, &headers)?;
    Ok(json_response(json!({"object": "list", "data": [
        {"id": s.model, "object": "model", "created": 0, "owned_by": "medforge"}]})))
}

/// Typed access to request fields with OpenAI-style errors naming the field.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn present(&self, k: &str) -> Option<&Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }
    fn number(&self, k: &str, min: f64, max: f64) -> Result<Option<f64>, ApiError> {
        match self.present(k) {
            None => Ok(None),
            Some(v) => {
                let x = v.as_f64().ok_or_else(|| ApiError::bad(k, format!("`{k}` must be a number")))?;
                if !(min..=max).contains(&x) {
                    return Err(ApiError::bad(k, format!("`{k}` is {x}; it must be between {min} and {max}")));
                }
                Ok(Some(x))
            }
        }
    }
    fn int(&self, k: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        match self.present(k) {
            None => Ok(None),
            Some(v) => {
                let x = v.as_i64().ok_or_else(|| ApiError::bad(k, format!("`{k}` must be an integer")))?;
                if x < min || x > max {
                    return Err(ApiError::bad(k, format!("`{k}` is {x}; it must be between {min} and {max}")));
                }
                Ok(Some(x))
            }
        }
    }
    fn boolean(&self, k: &str) -> Result<bool, ApiError> {
        match self.present(k) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(ApiError::bad(k, format!("`{k}` must be a boolean"))),
        }
    }
    fn stop(&self) -> Result<Vec<String>, ApiError> {
        let list = match self.present("stop") {
            None => vec![],
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ApiError::bad("stop", "`stop` must be a string or a list of strings"))?,
            Some(_) => return Err(ApiError::bad("stop", "`stop` must be a string or a list of strings")),
        };
        if list.len() > 4 {
            return Err(ApiError::bad("stop", "at most 4 stop sequences"));
        }
        if list.iter().any(|s| s.is_empty()) {
            return Err(ApiError::bad("stop", "stop sequences must not be empty"));
        }
        Ok(list)
    }
}

/// What chat and completions share: model, sampling, limits.
fn common_params(s: &AppState, f: &Fields, default_max: usize) -> Result<(GenerateParams, bool, bool), ApiError> {
    match f.present("model") {
        None => return Err(ApiError::bad("model", "`model` is required")),
        Some(Value::String(m)) if *m == s.model => {}
        Some(Value::String(m)) => {
            return Err(ApiError::bad(
                "model",
                format!("the model `{m}` does not exist; this server has `{}`", s.model),
            )
            .with_code("model_not_found")
            .status(StatusCode::NOT_FOUND))
        }
        Some(_) => return Err(ApiError::bad("model", "`model` must be a string")),
    }
    if let Some(n) = f.int("n", 1, i64::MAX)? {
        if n != 1 {
            return Err(ApiError::bad("n", "only n = 1 is supported").with_code("unsupported_value"));
        }
    }
    let ctx = s.context as i64;
    let max_tokens = match f.int("max_completion_tokens", 1, i64::MAX)? {
        Some(m) => Some(m),
        None => f.int("max_tokens", 1, i64::MAX)?,
    };
    if let Some(m) = max_tokens {
        if m >= ctx {
            return Err(ApiError::bad(
                "max_tokens",
                format!("`max_tokens` is {m}; the model's context is {ctx} tokens, prompt included"),
            )
            .with_code("context_length_exceeded"));
        }
    }
    let temperature = f.number("temperature", 0.0, 2.0)?.unwrap_or(1.0);
    let top_p = f.number("top_p", 0.0, 1.0)?.unwrap_or(1.0);
    if top_p == 0.0 {
        return Err(ApiError::bad("top_p", "`top_p` must be greater than 0"));
    }
    let top_k = f.int("top_k", 0, i64::MAX)?.unwrap_or(0) as usize;
    let seed = f.int("seed", i64::MIN, i64::MAX)?.unwrap_or(0) as u64;
    f.number("presence_penalty", -2.0, 2.0)?;
    f.number("frequency_penalty", -2.0, 2.0)?;
    let stream = f.boolean("stream")?;
    let include_usage = match f.present("stream_options") {
        None => false,
        Some(Value::Object(o)) => o.get("include_usage").and_then(Value::as_bool).unwrap_or(false),
        Some(_) => return Err(ApiError::bad("stream_options", "`stream_options` must be an object")),
    };
    let mut params = GenerateParams {
        max_tokens: max_tokens.map(|m| m as usize).unwrap_or(default_max),
        sampling: SamplingParams { temperature, top_p, top_k, seed },
        stop: f.stop()?,
        logprobs: None,
        ignore_eos: false,
        constraint: None,
    };
    if let Some((param, c)) = constraint(f)? {
        let mut e = s.engine.lock().unwrap_or_else(|p| p.into_inner());
        e.check_constraint(&c).map_err(|err| ApiError::bad(param, err.to_string()))?;
        drop(e);
        params.constraint = Some(c);
    }
    Ok((params, stream, include_usage))
}

/// `choice_scoring: "loglik"` (medforge's extension): the choices of `guided_choice` to score, if asked.
fn choice_scoring(f: &Fields, params: &GenerateParams, stream: bool) -> Result<Option<Vec<String>>, ApiError> {
    const P: &str = "choice_scoring";
    match f.present(P) {
        None => Ok(None),
        Some(Value::String(m)) if m == "loglik" => match (&params.constraint, stream) {
            (_, true) => Err(ApiError::bad(P, "`choice_scoring` answers at once; it cannot stream")),
            (Some(Constraint::Choice(c)), false) => Ok(Some(c.clone())),
            _ => Err(ApiError::bad(P, "`choice_scoring` needs `guided_choice` (the choices to score)")),
        },
        Some(_) => Err(ApiError::bad(P, "`choice_scoring` must be \"loglik\"")),
    }
}

/// The structure a request asks for: OpenAI's `response_format` or one of vLLM's `guided_*` parameters (at most
/// one), with the parameter it came from.
fn constraint(f: &Fields) -> Result<Option<(&'static str, Constraint)>, ApiError> {
    let mut found: Vec<(&'static str, Constraint)> = Vec::new();
    if let Some(rf) = f.present("response_format") {
        let p = "response_format";
        let kind = rf.get("type").and_then(Value::as_str).ok_or_else(|| {
            ApiError::bad(p, "`response_format` must be an object with a `type` (text, json_object, json_schema)")
        })?;
        match kind {
            "text" => {}
            "json_object" => found.push((p, Constraint::json_object())),
            "json_schema" => {
                let schema = rf.get("json_schema").and_then(|j| j.get("schema")).ok_or_else(|| {
                    ApiError::bad(p, "`response_format.json_schema.schema` is required for type json_schema")
                })?;
                // `strict` is accepted either way: the output always follows the schema here.
                found.push((p, Constraint::JsonSchema(schema.clone())));
            }
            other => {
                return Err(ApiError::bad(
                    p,
                    format!("unknown `response_format.type` `{other}` (text, json_object, json_schema)"),
                ))
            }
        }
    }
    if let Some(v) = f.present("guided_choice") {
        let list = v
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect::<Option<Vec<_>>>())
            .filter(|l| !l.is_empty())
            .ok_or_else(|| ApiError::bad("guided_choice", "`guided_choice` must be a non-empty list of strings"))?;
        found.push(("guided_choice", Constraint::Choice(list)));
    }
    if let Some(v) = f.present("guided_regex") {
        let rx = v.as_str().ok_or_else(|| ApiError::bad("guided_regex", "`guided_regex` must be a string"))?;
        found.push(("guided_regex", Constraint::Regex(rx.to_string())));
    }
    if let Some(v) = f.present("guided_json") {
        // vLLM takes the schema as an object or as a JSON string.
        let schema = match v {
            Value::String(s) => serde_json::from_str(s)
                .map_err(|e| ApiError::bad("guided_json", format!("`guided_json` is not valid JSON: {e}")))?,
            other => other.clone(),
        };
        found.push(("guided_json", Constraint::JsonSchema(schema)));
    }
    if let Some(v) = f.present("guided_grammar") {
        let g = v.as_str().ok_or_else(|| ApiError::bad("guided_grammar", "`guided_grammar` must be a string"))?;
        found.push(("guided_grammar", Constraint::Lark(g.to_string())));
    }
    if found.len() > 1 {
        let names: Vec<&str> = found.iter().map(|(p, _)| *p).collect();
        return Err(ApiError::bad(names[1], format!("give at most one of {}", names.join(", "))));
    }
    Ok(found.pop())
}

fn parse_messages(f: &Fields) -> Result<Vec<Message>, ApiError> {
    let list = match f.present("messages") {
        None => return Err(ApiError::bad("messages", "`messages` is required")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ApiError::bad("messages", "`messages` must be a list")),
    };
    if list.is_empty() {
        return Err(ApiError::bad("messages", "`messages` must not be empty"));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let p = format!("messages[{i}]");
        let obj = m.as_object().ok_or_else(|| ApiError::bad(&p, format!("`{p}` must be an object")))?;
        let role = match obj.get("role") {
            Some(Value::String(r)) => match r.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                other => {
                    return Err(ApiError::bad(
                        &format!("{p}.role"),
                        format!("unsupported role `{other}` (system, developer, user, assistant)"),
                    ))
                }
            },
            _ => return Err(ApiError::bad(&format!("{p}.role"), format!("`{p}.role` must be a string"))),
        };
        let content = match obj.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for part in parts {
                    match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                        (Some("text"), Some(t)) => text.push_str(t),
                        _ => {
                            return Err(ApiError::bad(
                                &format!("{p}.content"),
                                "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported",
                            ))
                        }
                    }
                }
                text
            }
            _ => {
                return Err(ApiError::bad(
                    &format!("{p}.content"),
                    format!("`{p}.content` must be a string or a list of text parts"),
                ))
            }
        };
        out.push(Message::new(role, content));
    }
    Ok(out)
}

fn json_response(v: Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn usage(g: &Generation) -> Value {
    json!({"prompt_tokens": g.prompt_tokens, "completion_tokens": g.tokens.len(),
           "total_tokens": g.prompt_tokens + g.tokens.len()})
}

fn chat_logprobs(lp: &[TokenLogprob]) -> Value {
    let entry = |t: &str, l: f32| json!({"token": t, "logprob": l, "bytes": t.as_bytes()});
    json!({"content": lp.iter().map(|t| {
        let mut e = entry(&t.token, t.logprob);
        e["top_logprobs"] = Value::Array(t.top.iter().map(|(s, l)| entry(s, *l)).collect());
        e
    }).collect::<Vec<_>>()})
}

async fn chat_completions(
    State(s): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    method_is(&method, Method::POST)?;
    check_auth(&s, &headers)?;
    let map = read_json(&s, body).await?;
    let f = Fields(&map);
    let (mut params, stream, include_usage) = common_params(&s, &f, s.cfg.default_max_tokens)?;
    let messages = parse_messages(&f)?;
    if f.boolean("logprobs")? {
        params.logprobs = Some(f.int("top_logprobs", 0, 20)?.unwrap_or(0) as usize);
    } else if f.present("top_logprobs").is_some() {
        return Err(ApiError::bad("top_logprobs", "`top_logprobs` needs `logprobs: true`"));
    }
    let id = format!("chatcmpl-{}", s.counter.fetch_add(1, Ordering::Relaxed));
    // Render and tokenise up front, so that template and context errors are JSON errors, streaming or not.
    let prompt = {
        let e = s.engine.lock().unwrap_or_else(|p| p.into_inner());
        let text = e.render_chat(&messages).map_err(engine_error)?;
        e.encode_prompt(&text).map_err(engine_error)?
    };
    check_fits(&s, prompt.len(), params.max_tokens, f.present("max_tokens").is_some())?;
    let created = now();
    let model = s.model.clone();
    if let Some(choices) = choice_scoring(&f, &params, stream)? {
        // medforge's extension: rank the choices by log-likelihood (the MCQ log-likelihood machinery) instead of
        // decoding, and say how likely each was.
        let engine = s.engine.clone();
        let n_prompt = prompt.len();
        let scores = tokio::task::spawn_blocking(move || {
            let mut e = engine.lock().unwrap_or_else(|p| p.into_inner());
            e.score_choices(&prompt, &choices)
        })
        .await
        .map_err(|e| engine_error(EngineError::Format(format!("inference task failed: {e}"))))?
        .map_err(engine_error)?;
        let best = scores.iter().enumerate().fold(0, |b, (i, c)| if c.1 > scores[b].1 { i } else { b });
        let list: Vec<Value> = scores.iter().map(|(c, lp, _)| json!({"choice": c, "logprob": lp})).collect();
        return Ok(json_response(json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": scores[best].0},
                         "logprobs": null, "finish_reason": "stop", "choice_logprobs": list}],
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": scores[best].2,
                      "total_tokens": n_prompt + scores[best].2},
        })));
    }
    if !stream {
        let want_lp = params.logprobs.is_some();
        let engine = s.engine.clone();
        let g = tokio::task::spawn_blocking(move || {
            let mut e = engine.lock().unwrap_or_else(|p| p.into_inner());
            e.generate(&prompt, &params, &mut |_| true)
        })
        .await
        .map_err(|e| engine_error(EngineError::Format(format!("inference task failed: {e}"))))?
        .map_err(engine_error)?;
        let logprobs = if want_lp { chat_logprobs(&g.logprobs) } else { Value::Null };
        return Ok(json_response(json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": g.text},
                         "logprobs": logprobs, "finish_reason": g.finish_reason}],
            "usage": usage(&g),
        })));
    }
    let chunk = move |delta: Value, finish: Value, usage: Option<Value>| {
        let choices = match usage {
            // The usage chunk has no choices.
            Some(_) => json!([]),
            None => json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]),
        };
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": choices});
        if let Some(u) = usage {
            c["usage"] = u;
        }
        format!("data: {c}\n\n")
    };
    Ok(sse(s.engine.clone(), prompt, params, move |ev| match ev {
        Ev::Start => chunk(json!({"role": "assistant", "content": ""}), Value::Null, None),
        Ev::Text(t) => chunk(json!({"content": t}), Value::Null, None),
        Ev::Done(g) => {
            let mut out = chunk(json!({}), json!(g.finish_reason), None);
            if include_usage {
                out.push_str(&chunk(Value::Null, Value::Null, Some(usage(g))));
            }
            out
        }
    }))
}

/// With an explicit `max_tokens` the prompt plus it must fit; without, generation stops at the context.
fn check_fits(s: &AppState, prompt: usize, max_tokens: usize, explicit: bool) -> Result<(), ApiError> {
    if prompt >= s.context || (explicit && prompt + max_tokens > s.context) {
        return Err(ApiError::bad(
            "messages",
            format!(
                "the prompt has {prompt} tokens{}; the model's context is {} tokens",
                if explicit { format!(" and max_tokens is {max_tokens}") } else { String::new() },
                s.context
            ),
        )
        .with_code("context_length_exceeded"));
    }
    Ok(())
}

enum Ev<'a> {
    Start,
    Text(&'a str),
    Done(&'a Generation),
}

/// Run a generation on the blocking pool, streaming server-sent events rendered by `render`; a client that goes
/// away stops the generation.
fn sse<F>(engine: Arc<Mutex<Engine>>, prompt: Vec<u32>, params: GenerateParams, render: F) -> Response
where
    F: Fn(Ev) -> String + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(64);
    tokio::task::spawn_blocking(move || {
        if tx.blocking_send(render(Ev::Start)).is_err() {
            return;
        }
        let mut e = engine.lock().unwrap_or_else(|p| p.into_inner());
        let result = e.generate(&prompt, &params, &mut |t| tx.blocking_send(render(Ev::Text(t))).is_ok());
        drop(e);
        let tail = match result {
            Ok(g) => render(Ev::Done(&g)),
            Err(err) => {
                let ApiError { message, kind, code, .. } = engine_error(err);
                format!(
                    "data: {}\n\n",
                    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
                )
            }
        };
        let _ = tx.blocking_send(tail);
        let _ = tx.blocking_send("data: [DONE]\n\n".to_string());
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|s| Ok::<_, Infallible>(Bytes::from(s)));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .expect("static response parts")
}

async fn completions(
    State(s): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    method_is(&method, Method::POST)?;
    check_auth(&s, &headers)?;
    let map = read_json(&s, body).await?;
    let f = Fields(&map);
    // OpenAI's default for completions is 16 tokens.
    let (mut params, stream, include_usage) = common_params(&s, &f, 16)?;
    let prompts: Vec<String> = match f.present("prompt") {
        None => return Err(ApiError::bad("prompt", "`prompt` is required")),
        Some(Value::String(p)) => vec![p.clone()],
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::bad("prompt", "`prompt` must be a string or a list of strings"))?,
        Some(_) => return Err(ApiError::bad("prompt", "`prompt` must be a string or a non-empty list of strings")),
    };
    if prompts.iter().any(String::is_empty) {
        return Err(ApiError::bad("prompt", "`prompt` must not be empty"));
    }
    if f.boolean("echo")? {
        return Err(ApiError::bad("echo", "`echo` is not supported").with_code("unsupported_value"));
    }
    if let Some(n) = f.int("logprobs", 0, 5)? {
        params.logprobs = Some(n as usize);
    }
    let id = format!("cmpl-{}", s.counter.fetch_add(1, Ordering::Relaxed));
    let encoded: Vec<Vec<u32>> = {
        let e = s.engine.lock().unwrap_or_else(|p| p.into_inner());
        prompts.iter().map(|p| e.encode_prompt(p)).collect::<Result<_, _>>().map_err(engine_error)?
    };
    for p in &encoded {
        check_fits(&s, p.len(), params.max_tokens, f.present("max_tokens").is_some())?;
    }
    let created = now();
    let model = s.model.clone();
    if stream {
        if encoded.len() != 1 {
            return Err(ApiError::bad("prompt", "streaming takes a single prompt").with_code("unsupported_value"));
        }
        let chunk = move |text: &str, finish: Value| {
            let c = json!({"id": id, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}]});
            format!("data: {c}\n\n")
        };
        let prompt = encoded.into_iter().next().expect("one prompt");
        return Ok(sse(s.engine.clone(), prompt, params, move |ev| match ev {
            Ev::Start => String::new(),
            Ev::Text(t) => chunk(t, Value::Null),
            Ev::Done(g) => {
                let mut out = chunk("", json!(g.finish_reason));
                if include_usage {
                    out.push_str(&format!(
                        "data: {}\n\n",
                        json!({"object": "text_completion", "choices": [],
                        "usage": usage(g)})
                    ));
                }
                out
            }
        }));
    }
    let engine = s.engine.clone();
    let want_lp = params.logprobs.is_some();
    let gens = tokio::task::spawn_blocking(move || {
        let mut e = engine.lock().unwrap_or_else(|p| p.into_inner());
        encoded.iter().map(|p| e.generate(p, &params, &mut |_| true)).collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| engine_error(EngineError::Format(format!("inference task failed: {e}"))))?
    .map_err(engine_error)?;
    let (mut pt, mut ct) = (0, 0);
    let choices: Vec<Value> = gens
        .iter()
        .enumerate()
        .map(|(i, g)| {
            pt += g.prompt_tokens;
            ct += g.tokens.len();
            let logprobs = if want_lp {
                let mut offset = 0;
                let offsets: Vec<usize> = g
                    .logprobs
                    .iter()
                    .map(|t| {
                        let o = offset;
                        offset += t.token.len();
                        o
                    })
                    .collect();
                json!({
                    "tokens": g.logprobs.iter().map(|t| &t.token).collect::<Vec<_>>(),
                    "token_logprobs": g.logprobs.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                    "top_logprobs": g.logprobs.iter().map(|t| t.top.iter().map(|(s, l)| (s.clone(), json!(l)))
                        .collect::<Map<String, Value>>()).collect::<Vec<_>>(),
                    "text_offset": offsets,
                })
            } else {
                Value::Null
            };
            json!({"index": i, "text": g.text, "logprobs": logprobs, "finish_reason": g.finish_reason})
        })
        .collect();
    Ok(json_response(json!({
        "id": id, "object": "text_completion", "created": created, "model": model, "choices": choices,
        "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
    })))
}
