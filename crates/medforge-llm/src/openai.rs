//! The OpenAI-compatible chat-completions backend (OpenAI, Gemini's OpenAI endpoint, DeepSeek, vLLM,
//! SGLang, llama.cpp server, Ollama), and a [`Fleet`] of endpoints serving one model.
//!
//! Transport: reqwest on tokio, HTTP/1.1, rustls with the `ring` provider for `https://` (no C
//! build of aws-lc), plain `http://` for loopback servers.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::backend::{Backend, ChatRequest, ChatResponse, LlmError, Loglik, LoglikScorer, Structure, Usage};
use crate::cost::{estimate_request, estimate_tokens, Pricing};
use crate::retry::{parse_retry_after, Backoff, RetryEvent, RetryPolicy};
use crate::secret::{Secret, SecretEnv};

fn default_concurrency() -> usize {
    16
}
fn default_timeout() -> f64 {
    120.0
}
fn default_retries() -> u32 {
    5
}
fn default_backoff_base_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    60_000
}
fn default_max_retry_after_s() -> f64 {
    120.0
}
fn default_cooldown_s() -> f64 {
    30.0
}

/// One OpenAI-compatible endpoint, as written in TOML:
///
/// ```toml
/// base_url = "https://api.openai.com/v1"
/// model = "gpt-4o-mini"
/// api_key_env = "OPENAI_API_KEY"      # the variable's name; omit for a keyless local server
/// pricing = { input_per_1m = 0.15, output_per_1m = 0.6 }
/// rpm = 500
/// tpm = 200000
/// max_concurrency = 16
/// timeout_s = 120
/// max_retries = 5
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Up to and including the version segment, e.g. `http://127.0.0.1:8000/v1`;
    /// requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    pub model: String,
    #[serde(default)]
    pub api_key_env: Option<SecretEnv>,
    #[serde(default)]
    pub pricing: Pricing,
    /// Requests per minute (smoothed: one every 60/rpm seconds, no burst).
    #[serde(default)]
    pub rpm: Option<u32>,
    /// Tokens per minute, counting the estimated prompt plus `max_tokens` of each request.
    #[serde(default)]
    pub tpm: Option<u32>,
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Whole-request timeout, seconds (fractions allowed).
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    #[serde(default = "default_max_retry_after_s")]
    pub max_retry_after_s: f64,
    /// Seed of the backoff jitter (for reproducible tests); the clock otherwise.
    #[serde(default)]
    pub jitter_seed: Option<u64>,
    /// How long a [`Fleet`] keeps a failing endpoint out of rotation, seconds.
    #[serde(default = "default_cooldown_s")]
    pub cooldown_s: f64,
    /// How this server takes a stage's `structure`: not at all (the default; stages parse the answer tolerantly),
    /// as OpenAI's `response_format` (JSON schemas only), or as vLLM's `guided_*` parameters (all kinds).
    #[serde(default)]
    pub structured_output: StructuredOutputApi,
}

/// The request parameters an endpoint understands for structured output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StructuredOutputApi {
    /// Send nothing: not every OpenAI-compatible server accepts these parameters.
    #[default]
    None,
    /// `response_format: {"type": "json_schema", "json_schema": {"name", "schema", "strict": true}}` for JSON
    /// schemas; other kinds are not sent.
    OpenAi,
    /// vLLM / SGLang: `guided_choice`, `guided_regex`, `guided_json`, `guided_grammar`.
    Vllm,
    /// `medforge serve`: vLLM's parameters, and `choice_scoring: "loglik"` where a stage asks to rank its choices by
    /// log-likelihood.
    Medforge,
}

impl EndpointConfig {
    /// A config with every default, for `base_url` and `model`.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        EndpointConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: None,
            pricing: Pricing::default(),
            rpm: None,
            tpm: None,
            max_concurrency: default_concurrency(),
            timeout_s: default_timeout(),
            max_retries: default_retries(),
            backoff_base_ms: default_backoff_base_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            max_retry_after_s: default_max_retry_after_s(),
            jitter_seed: None,
            cooldown_s: default_cooldown_s(),
            structured_output: StructuredOutputApi::None,
        }
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            base: Duration::from_millis(self.backoff_base_ms),
            max_delay: Duration::from_millis(self.backoff_max_ms.max(self.backoff_base_ms)),
            max_retry_after: Duration::from_secs_f64(self.max_retry_after_s.max(0.0)),
            jitter_seed: self.jitter_seed,
        }
    }

    fn base(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }

    fn key_hint(&self) -> String {
        match &self.api_key_env {
            Some(env) => format!("the key in environment variable `{}`", env.0),
            None => "the API key (none is configured: set `api_key_env`)".to_string(),
        }
    }
}

static CRYPTO: Once = Once::new();

/// Install rustls' `ring` provider as the process default (once; a provider installed earlier by
/// someone else is kept).
pub fn install_crypto_provider() {
    CRYPTO.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The JSON body of a chat-completions request (also the `body` of a Batch API line); the request's `structure`
/// goes in as `api` says.
pub fn request_body(model: &str, req: &ChatRequest, api: StructuredOutputApi) -> Value {
    let mut body = serde_json::Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), serde_json::to_value(&req.messages).unwrap_or(Value::Null));
    let p = &req.params;
    if let Some(v) = p.max_tokens {
        body.insert("max_tokens".into(), json!(v));
    }
    if let Some(v) = p.temperature {
        body.insert("temperature".into(), json!(v));
    }
    if let Some(v) = p.top_p {
        body.insert("top_p".into(), json!(v));
    }
    if !p.stop.is_empty() {
        body.insert("stop".into(), json!(p.stop));
    }
    if let Some(v) = p.seed {
        body.insert("seed".into(), json!(v));
    }
    if let Some(v) = &p.response_format {
        body.insert("response_format".into(), v.clone());
    }
    match (&p.structure, api) {
        (None, _) | (Some(_), StructuredOutputApi::None) => {}
        (Some(Structure::JsonSchema(schema)), StructuredOutputApi::OpenAi) if p.response_format.is_none() => {
            body.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": true}}),
            );
        }
        (Some(_), StructuredOutputApi::OpenAi) => {}
        (Some(s), StructuredOutputApi::Vllm | StructuredOutputApi::Medforge) => {
            if p.score_choices && api == StructuredOutputApi::Medforge && matches!(s, Structure::Choice(_)) {
                body.insert("choice_scoring".into(), json!("loglik"));
            }
            let (k, v) = match s {
                Structure::Choice(c) => ("guided_choice", json!(c)),
                Structure::Regex(r) => ("guided_regex", json!(r)),
                Structure::JsonSchema(j) => ("guided_json", j.clone()),
                Structure::Grammar(g) => ("guided_grammar", json!(g)),
            };
            body.insert(k.into(), v);
        }
    }
    Value::Object(body)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(n).collect::<String>())
    }
}

/// `(code, type, message)` of an OpenAI-style error body `{"error":{"code","type","message"}}`.
fn error_fields(body: &Value) -> (String, String, String) {
    let e = body.get("error").unwrap_or(&Value::Null);
    let s = |k: &str| match e.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    };
    let msg = match e {
        Value::String(s) => s.clone(),
        _ => s("message"),
    };
    (s("code"), s("type"), truncate(&msg, 400))
}

/// Classify a non-200 answer. `key_hint` names where the key comes from, for fatal messages.
pub fn classify_status(
    status: u16,
    body: &Value,
    retry_after: Option<Duration>,
    key_hint: &str,
    where_: &str,
) -> LlmError {
    let (code, typ, msg) = error_fields(body);
    let quota = code == "insufficient_quota"
        || typ == "insufficient_quota"
        || msg.contains("exceeded your current quota")
        || status == 402;
    let filtered = code == "content_policy_violation" || code == "content_filter" || typ == "content_filter";
    let detail = if msg.is_empty() { String::new() } else { format!(": {msg}") };
    match status {
        401 => LlmError::fatal(
            "llm.unauthorized",
            format!("{where_} rejected {key_hint} (HTTP 401){detail}; export a valid key and re-run"),
        ),
        403 => LlmError::fatal(
            "llm.forbidden",
            format!(
                "{where_} refused access (HTTP 403){detail}; check that {key_hint} may use this model and region"
            ),
        ),
        404 => LlmError::fatal(
            "llm.not_found",
            format!("{where_} answered 404{detail}; check `base_url` (it should end in /v1) and `model`"),
        ),
        _ if quota => LlmError::fatal(
            "llm.insufficient_quota",
            format!("{where_}: quota or credit exhausted (HTTP {status}){detail}; add credit or raise the quota, then re-run (finished rows are cached)"),
        ),
        _ if filtered => LlmError::skip("llm.content_filter", format!("HTTP {status}{detail}")),
        429 => LlmError::Transient { code: "llm.rate_limited".into(), message: format!("HTTP 429{detail}"), retry_after, retries: 0 },
        408 => LlmError::Transient { code: "llm.timeout".into(), message: format!("HTTP 408{detail}"), retry_after, retries: 0 },
        500..=599 => LlmError::Transient {
            code: format!("llm.http_{status}"),
            message: format!("HTTP {status}{detail}"),
            retry_after,
            retries: 0,
        },
        400 => LlmError::skip("llm.bad_request", format!("HTTP 400{detail}")),
        _ => LlmError::skip(&format!("llm.http_{status}"), format!("HTTP {status}{detail}")),
    }
}

/// Turn a 200 body into a response. `fallback` is used where the server reports no usage.
pub fn parse_completion(body: &[u8], fallback: Usage) -> Result<ChatResponse, LlmError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        LlmError::transient(
            "llm.malformed_json",
            format!("unparsable response body ({e}): {}", truncate(&String::from_utf8_lossy(body), 200)),
        )
    })?;
    parse_completion_value(&v, fallback)
}

/// [`parse_completion`] of an already parsed body.
pub fn parse_completion_value(v: &Value, fallback: Usage) -> Result<ChatResponse, LlmError> {
    if v.get("error").is_some_and(|e| !e.is_null()) {
        let (code, _, msg) = error_fields(v);
        if code == "content_policy_violation" || code == "content_filter" {
            return Err(LlmError::skip("llm.content_filter", msg));
        }
        return Err(LlmError::transient("llm.server_error", format!("error in a 200 body: {code} {msg}")));
    }
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| LlmError::transient("llm.malformed_json", "response has no choices[0]"))?;
    let finish = choice.get("finish_reason").and_then(Value::as_str).unwrap_or("").to_string();
    if finish == "content_filter" {
        return Err(LlmError::skip("llm.content_filter", "the server's content filter stopped the completion"));
    }
    let text = match choice.get("message").and_then(|m| m.get("content")) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(_) => return Err(LlmError::transient("llm.malformed_json", "message.content is not a string")),
    };
    let usage = match v.get("usage") {
        Some(u) if u.is_object() => Usage {
            prompt_tokens: u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(fallback.prompt_tokens),
            completion_tokens: u
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or_else(|| estimate_tokens(&text)),
        },
        _ => Usage { prompt_tokens: fallback.prompt_tokens, completion_tokens: estimate_tokens(&text) },
    };
    // `medforge serve`'s answer to `choice_scoring: "loglik"`.
    let choice_logprobs = choice.get("choice_logprobs").and_then(|c| serde_json::from_value(c.clone()).ok());
    Ok(ChatResponse { text, usage, finish_reason: finish, retries: 0, choice_logprobs })
}

/// One endpoint: HTTP client, key, concurrency limit and rate limiters. One attempt per
/// [`attempt`](Self::attempt); retries live in [`OpenAiBackend`] and [`Fleet`].
pub struct Endpoint {
    cfg: EndpointConfig,
    url: String,
    http: reqwest::Client,
    key: Option<Secret>,
    inflight: Semaphore,
    rpm: Option<DefaultDirectRateLimiter>,
    tpm: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("model", &self.cfg.model)
            .field("key", &self.key)
            .finish()
    }
}

impl Endpoint {
    /// Build the endpoint; reads the API key from its environment variable now (a missing key is
    /// fatal, with the variable's name in the message).
    pub fn new(cfg: EndpointConfig) -> Result<Self, LlmError> {
        install_crypto_provider();
        let key = match &cfg.api_key_env {
            Some(env) => Some(env.read()?),
            None => None,
        };
        if !(cfg.timeout_s > 0.0 && cfg.timeout_s.is_finite()) {
            return Err(LlmError::fatal("llm.config", format!("timeout_s must be > 0, got {}", cfg.timeout_s)));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(cfg.timeout_s))
            .connect_timeout(Duration::from_secs_f64(cfg.timeout_s.min(30.0)))
            .pool_max_idle_per_host(cfg.max_concurrency.max(1))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| LlmError::fatal("llm.config", format!("cannot build the HTTP client: {e}")))?;
        let rpm = cfg
            .rpm
            .and_then(NonZeroU32::new)
            .map(|n| RateLimiter::direct(Quota::per_minute(n).allow_burst(NonZeroU32::MIN)));
        let tpm = cfg.tpm.and_then(NonZeroU32::new).map(|n| {
            // Burst of a tenth of a minute's tokens, so a start does not spend the whole minute at once.
            let burst = NonZeroU32::new((n.get() / 10).max(1)).unwrap_or(NonZeroU32::MIN);
            (RateLimiter::direct(Quota::per_minute(n).allow_burst(burst)), burst)
        });
        let url = format!("{}/chat/completions", cfg.base());
        Ok(Endpoint { inflight: Semaphore::new(cfg.max_concurrency.max(1)), cfg, url, http, key, rpm, tpm })
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.cfg
    }

    fn where_(&self) -> String {
        format!("the server at {}", self.cfg.base())
    }

    /// One chat request: wait for a concurrency slot and the rate limits, send, classify the answer.
    pub async fn attempt(&self, req: &ChatRequest, body: &Value) -> Result<ChatResponse, LlmError> {
        let estimate = estimate_request(req);
        let bytes = self.post(&self.url, body, estimate).await?;
        parse_completion(&bytes, estimate)
    }

    /// One log-likelihood request through `/completions` with `echo` and `logprobs` (vLLM, llama.cpp's server,
    /// `medforge serve`): the prompt is `context + continuation`, no new tokens, and the log-probs of the tokens
    /// starting at or after the context's length are summed.
    pub async fn attempt_loglik(&self, context: &str, continuation: &str) -> Result<Loglik, LlmError> {
        let url = format!("{}/completions", self.cfg.base());
        let body = json!({
            "model": self.cfg.model, "prompt": format!("{context}{continuation}"),
            "max_tokens": 0, "echo": true, "logprobs": 1, "temperature": 0.0,
        });
        let estimate =
            Usage { prompt_tokens: estimate_tokens(context) + estimate_tokens(continuation), completion_tokens: 0 };
        let bytes = self.post(&url, &body, estimate).await.map_err(|e| match e {
            LlmError::Fatal { code, message } => LlmError::Fatal {
                code,
                message: format!("{message} (log-likelihood mode needs /v1/completions with echo and logprobs)"),
            },
            e => e,
        })?;
        parse_echo_loglik(&bytes, context.len(), &url)
    }

    /// Send `body` to `url` once the concurrency slot and rate limits allow; the body of a 200, or the classified
    /// error.
    async fn post(&self, url: &str, body: &Value, estimate: Usage) -> Result<Vec<u8>, LlmError> {
        let _permit =
            self.inflight.acquire().await.map_err(|_| LlmError::fatal("llm.closed", "the endpoint was shut down"))?;
        if let Some(rl) = &self.rpm {
            rl.until_ready().await;
        }
        if let Some((rl, burst)) = &self.tpm {
            let n = (estimate.prompt_tokens + estimate.completion_tokens).clamp(1, burst.get() as u64) as u32;
            let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
            let _ = rl.until_n_ready(n).await; // n <= burst, so capacity always suffices
        }
        let mut rb = self.http.post(url).json(body);
        if let Some(k) = &self.key {
            rb = rb.bearer_auth(k.expose());
        }
        let resp = rb.send().await.map_err(transport_error)?;
        let status = resp.status().as_u16();
        let retry_after = retry_after_of(resp.headers());
        let bytes = resp.bytes().await.map_err(transport_error)?;
        if status == 200 {
            return Ok(bytes.to_vec());
        }
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(classify_status(status, &v, retry_after, &self.cfg.key_hint(), &self.where_()))
    }
}

/// The summed log-prob of the echoed tokens at or after byte `start` of the prompt.
fn parse_echo_loglik(body: &[u8], start: usize, url: &str) -> Result<Loglik, LlmError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| LlmError::transient("llm.bad_json", format!("{url}: bad JSON: {e}")))?;
    let lp = &v["choices"][0]["logprobs"];
    let (Some(tl), Some(off)) = (lp["token_logprobs"].as_array(), lp["text_offset"].as_array()) else {
        return Err(LlmError::fatal(
            "llm.no_logprobs",
            format!("{url}: the server returned no echo logprobs (token_logprobs/text_offset); it cannot score log-likelihoods"),
        ));
    };
    let (mut logprob, mut tokens) = (0.0, 0);
    for (l, o) in tl.iter().zip(off) {
        if o.as_u64().unwrap_or(0) >= start as u64 {
            logprob += l.as_f64().unwrap_or(0.0);
            tokens += 1;
        }
    }
    Ok(Loglik { logprob, tokens })
}

fn retry_after_of(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(ms) = h.get("retry-after-ms").and_then(|v| v.to_str().ok()).and_then(|s| s.trim().parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(v, SystemTime::now())
}

fn transport_error(e: reqwest::Error) -> LlmError {
    // reqwest's message names the URL, never headers, so no key can leak through it.
    let code = if e.is_timeout() {
        "llm.timeout"
    } else if e.is_connect() {
        "llm.connect"
    } else {
        "llm.connection"
    };
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    LlmError::transient(code, msg)
}

/// A single OpenAI-compatible endpoint with retries.
#[derive(Debug)]
pub struct OpenAiBackend {
    endpoint: Endpoint,
    backoff: Backoff,
}

impl OpenAiBackend {
    pub fn new(cfg: EndpointConfig) -> Result<Self, LlmError> {
        let backoff = Backoff::new(cfg.retry_policy());
        Ok(OpenAiBackend { endpoint: Endpoint::new(cfg)?, backoff })
    }
    pub fn config(&self) -> &EndpointConfig {
        self.endpoint.config()
    }
    /// Every retry taken so far, with its delay.
    pub fn retry_log(&self) -> Vec<RetryEvent> {
        self.backoff.log()
    }
}

impl OpenAiBackend {
    /// Run `attempt` until it succeeds, fails for good, or the transient retries are spent (with backoff between
    /// tries); returns the result and the retries taken.
    async fn with_retries<T, Fut>(&self, attempt: impl Fn() -> Fut) -> Result<(T, u32), LlmError>
    where
        Fut: std::future::Future<Output = Result<T, LlmError>>,
    {
        let mut retry = 0u32;
        loop {
            match attempt().await {
                Ok(r) => return Ok((r, retry)),
                Err(LlmError::Transient { code, retry_after, .. }) if retry < self.backoff.policy.max_retries => {
                    tokio::time::sleep(self.backoff.next_delay(&code, retry, retry_after)).await;
                    retry += 1;
                }
                Err(LlmError::Transient { code, message, retry_after, .. }) => {
                    return Err(LlmError::Transient {
                        code,
                        message: format!("{message} (gave up after {} attempts)", retry + 1),
                        retry_after,
                        retries: retry,
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait::async_trait]
impl Backend for OpenAiBackend {
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let body = request_body(&self.config().model, req, self.config().structured_output);
        let (mut r, retries) = self.with_retries(|| self.endpoint.attempt(req, &body)).await?;
        r.retries = retries;
        Ok(r)
    }

    fn identity(&self) -> String {
        format!("openai-compat:{}", self.config().base())
    }
    fn model(&self) -> String {
        self.config().model.clone()
    }
    fn pricing(&self) -> Pricing {
        self.config().pricing
    }
}

/// Log-likelihoods through the endpoint's `/completions` (echo + logprobs), with the same concurrency limit, rate
/// limits and retries as chat requests.
#[async_trait::async_trait]
impl LoglikScorer for OpenAiBackend {
    async fn loglikelihood(&self, context: &str, continuation: &str) -> Result<Loglik, LlmError> {
        Ok(self.with_retries(|| self.endpoint.attempt_loglik(context, continuation)).await?.0)
    }
    fn identity(&self) -> String {
        format!("completions:{}#{}", self.config().base(), self.config().model)
    }
}

/// Several endpoints serving one model, load-balanced round-robin. An endpoint that fails with a
/// transient error leaves the rotation for its `cooldown_s`; the retry goes to the next one. When
/// every endpoint is cooling down, the one that recovers first is used.
///
/// Its cache identity is `openai-compat-fleet:{model}`: any endpoint's answer counts for the fleet
/// (they serve the same model), so adding or removing endpoints keeps the cache valid.
#[derive(Debug)]
pub struct Fleet {
    endpoints: Vec<Endpoint>,
    down_until: Vec<Mutex<Option<Instant>>>,
    next: AtomicUsize,
    backoff: Backoff,
    served: Vec<AtomicUsize>,
}

impl Fleet {
    /// All endpoints must name the same model. Retry settings come from the first endpoint.
    pub fn new(cfgs: Vec<EndpointConfig>) -> Result<Self, LlmError> {
        let first = cfgs.first().ok_or_else(|| LlmError::fatal("llm.config", "a fleet needs at least one endpoint"))?;
        if let Some(other) = cfgs.iter().find(|c| c.model != first.model) {
            return Err(LlmError::fatal(
                "llm.config",
                format!("fleet endpoints serve different models: `{}` and `{}`", first.model, other.model),
            ));
        }
        let backoff = Backoff::new(first.retry_policy());
        let n = cfgs.len();
        let endpoints = cfgs.into_iter().map(Endpoint::new).collect::<Result<Vec<_>, _>>()?;
        Ok(Fleet {
            endpoints,
            down_until: (0..n).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            backoff,
            served: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    fn pick(&self) -> usize {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut soonest: Option<(Instant, usize)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            let until = *self.down_until[i].lock().unwrap_or_else(|e| e.into_inner());
            match until {
                Some(t) if t > now => {
                    if soonest.is_none_or(|(s, _)| t < s) {
                        soonest = Some((t, i));
                    }
                }
                _ => return i,
            }
        }
        soonest.map(|(_, i)| i).unwrap_or(start % n)
    }

    fn cool_down(&self, i: usize) {
        let d = Duration::from_secs_f64(self.endpoints[i].cfg.cooldown_s.max(0.0));
        *self.down_until[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + d);
    }

    /// Requests each endpoint answered successfully, in config order.
    pub fn served(&self) -> Vec<usize> {
        self.served.iter().map(|a| a.load(Ordering::Relaxed)).collect()
    }
    pub fn retry_log(&self) -> Vec<RetryEvent> {
        self.backoff.log()
    }
}

#[async_trait::async_trait]
impl Backend for Fleet {
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let mut retry = 0u32;
        loop {
            let i = self.pick();
            // Endpoints of one fleet may take structured output differently.
            let cfg = &self.endpoints[i].cfg;
            let body = request_body(&self.endpoints[0].cfg.model, req, cfg.structured_output);
            match self.endpoints[i].attempt(req, &body).await {
                Ok(mut r) => {
                    self.served[i].fetch_add(1, Ordering::Relaxed);
                    *self.down_until[i].lock().unwrap_or_else(|e| e.into_inner()) = None;
                    r.retries = retry;
                    return Ok(r);
                }
                Err(LlmError::Transient { code, message, retry_after, .. }) => {
                    self.cool_down(i);
                    if retry >= self.backoff.policy.max_retries {
                        return Err(LlmError::Transient {
                            code,
                            message: format!("{message} (gave up after {} attempts)", retry + 1),
                            retry_after,
                            retries: retry,
                        });
                    }
                    // Another endpoint may be healthy: retry at once if one is in rotation.
                    let now = Instant::now();
                    let any_up = self
                        .down_until
                        .iter()
                        .any(|m| m.lock().unwrap_or_else(|e| e.into_inner()).is_none_or(|t| t <= now));
                    let delay = self.backoff.next_delay(&code, retry, retry_after);
                    if !any_up {
                        tokio::time::sleep(delay).await;
                    }
                    retry += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn identity(&self) -> String {
        format!("openai-compat-fleet:{}", self.endpoints[0].cfg.model)
    }
    fn model(&self) -> String {
        self.endpoints[0].cfg.model.clone()
    }
    fn pricing(&self) -> Pricing {
        self.endpoints[0].cfg.pricing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses() {
        let e = |s: u16, b: Value| classify_status(s, &b, None, "KEY", "srv");
        assert_eq!(e(401, Value::Null).code(), "llm.unauthorized");
        assert!(matches!(e(401, Value::Null), LlmError::Fatal { message, .. } if message.contains("KEY")));
        assert_eq!(e(403, Value::Null).code(), "llm.forbidden");
        assert_eq!(
            e(429, json!({"error":{"code":"insufficient_quota","message":"You exceeded your current quota"}})).code(),
            "llm.insufficient_quota"
        );
        assert!(e(429, json!({"error":{"code":"rate_limit_exceeded"}})).is_transient());
        assert!(e(503, Value::Null).is_transient());
        assert_eq!(e(400, json!({"error":{"code":"content_policy_violation"}})).code(), "llm.content_filter");
        assert!(matches!(e(400, Value::Null), LlmError::Skip { code, .. } if code == "llm.bad_request"));
        assert_eq!(e(422, Value::Null).code(), "llm.http_422");
    }

    #[test]
    fn parses_completions() {
        let fb = Usage { prompt_tokens: 7, completion_tokens: 9 };
        let ok = br#"{"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        let r = parse_completion(ok, fb).unwrap();
        assert_eq!(
            (r.text.as_str(), r.usage.prompt_tokens, r.usage.completion_tokens, r.finish_reason.as_str()),
            ("hi", 3, 1, "stop")
        );
        let no_usage = br#"{"choices":[{"message":{"content":"abcdefgh"},"finish_reason":"length"}]}"#;
        assert_eq!(parse_completion(no_usage, fb).unwrap().usage, Usage { prompt_tokens: 7, completion_tokens: 2 });
        let filtered = br#"{"choices":[{"message":{"content":null},"finish_reason":"content_filter"}]}"#;
        assert_eq!(parse_completion(filtered, fb).unwrap_err().code(), "llm.content_filter");
        assert_eq!(parse_completion(b"{\"choices\": [", fb).unwrap_err().code(), "llm.malformed_json");
        assert_eq!(parse_completion(b"{}", fb).unwrap_err().code(), "llm.malformed_json");
    }

    #[test]
    fn config_from_toml_rejects_unknown_fields() {
        let c: EndpointConfig = serde_json::from_value(json!({
            "base_url": "http://127.0.0.1:8000/v1/", "model": "m", "api_key_env": "OPENAI_API_KEY",
            "pricing": {"input_per_1m": 0.15, "output_per_1m": 0.6}, "rpm": 500
        }))
        .unwrap();
        assert_eq!(c.api_key_env, Some(SecretEnv("OPENAI_API_KEY".into())));
        assert_eq!(c.max_retries, 5);
        assert_eq!(c.base(), "http://127.0.0.1:8000/v1");
        assert!(serde_json::from_value::<EndpointConfig>(json!({"base_url": "x", "model": "m", "api_key": "sk-..."}))
            .is_err());
    }

    #[test]
    fn request_body_carries_every_parameter() {
        use crate::backend::{GenParams, Message};
        let req = ChatRequest::new(vec![Message::system("s"), Message::user("u")]).with_params(GenParams {
            max_tokens: Some(5),
            temperature: Some(0.0),
            top_p: Some(0.9),
            stop: vec!["\n".into()],
            seed: Some(1),
            response_format: Some(json!({"type": "json_object"})),
            structure: None,
            score_choices: false,
        });
        let b = request_body("m", &req, StructuredOutputApi::None);
        assert_eq!(b["messages"][1], json!({"role": "user", "content": "u"}));
        for k in ["max_tokens", "temperature", "top_p", "stop", "seed", "response_format"] {
            assert!(b.get(k).is_some(), "{k}");
        }
        assert!(request_body("m", &ChatRequest::user("x"), StructuredOutputApi::None).get("stop").is_none());
    }
}
