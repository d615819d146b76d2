//! The one trait every LLM backend implements: the OpenAI-compatible HTTP backend, a fleet of them,
//! and (later) the local inference engine.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cost::Pricing;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One fully rendered chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Message { role: Role::System, content: content.into() }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Message { role: Role::User, content: content.into() }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Message { role: Role::Assistant, content: content.into() }
    }
}

/// Generation parameters. `None` leaves a parameter to the server's default (and is part of the
/// cache key as `null`, so "default" and an explicit value never share a cache entry).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenParams {
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stop: Vec<String>,
    #[serde(default)]
    pub seed: Option<u64>,
    /// OpenAI `response_format`, e.g. `{"type":"json_object"}` or
    /// `{"type":"json_schema","json_schema":{"name":..,"schema":{..}}}`; sent as given.
    #[serde(default)]
    pub response_format: Option<serde_json::Value>,
    /// The structure the answer must have. The local engine enforces it; an endpoint gets it as `response_format`
    /// or vLLM's `guided_*` where its `structured_output` says so. Left out of the cache key when unset, so keys of
    /// unconstrained requests stay as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structure: Option<Structure>,
    /// With a [`Structure::Choice`]: rank the choices by log-likelihood instead of decoding. A backend that can
    /// (the local engine, `medforge serve`) answers with the likeliest choice and every choice's log-probability;
    /// others decode under the constraint as usual.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub score_choices: bool,
}

/// A choice's log-probability after the prompt (nats, summed over its tokens).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChoiceLogprob {
    pub choice: String,
    pub logprob: f64,
}

/// How sure a scored choice is: the softmax probability of the chosen one among all choices, and its log-probability
/// margin over the runner-up (nats; infinite with one choice).
pub fn choice_confidence(scores: &[ChoiceLogprob]) -> Option<(f64, f64)> {
    let best = scores.iter().map(|c| c.logprob).fold(f64::NEG_INFINITY, f64::max);
    if !best.is_finite() {
        return None;
    }
    let total: f64 = scores.iter().map(|c| (c.logprob - best).exp()).sum();
    let second = scores.iter().map(|c| c.logprob).filter(|&l| l < best).fold(f64::NEG_INFINITY, f64::max);
    let ties = scores.iter().filter(|c| c.logprob == best).count();
    let margin = if ties > 1 { 0.0 } else { best - second };
    Some((1.0 / total, margin))
}

/// What an answer must match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Structure {
    /// Exactly one of these strings.
    Choice(Vec<String>),
    /// A regex the whole answer matches.
    Regex(String),
    /// JSON valid against this schema.
    JsonSchema(serde_json::Value),
    /// A grammar in llguidance's Lark dialect (what vLLM's `guided_grammar` takes with its guidance backend).
    Grammar(String),
}

/// A chat completion request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    #[serde(default)]
    pub params: GenParams,
}

impl ChatRequest {
    pub fn new(messages: Vec<Message>) -> Self {
        ChatRequest { messages, params: GenParams::default() }
    }
    /// A single user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatRequest::new(vec![Message::user(content)])
    }
    pub fn with_params(mut self, params: GenParams) -> Self {
        self.params = params;
        self
    }
}

/// Token usage as the server reported it (or as estimated where it reported none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// A finished chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub text: String,
    pub usage: Usage,
    /// `stop`, `length`, ... as the server said; `content_filter` never reaches here (it is a skip).
    pub finish_reason: String,
    /// Retries this call needed (0 on the first try). Not stored in the cache.
    #[serde(skip)]
    pub retries: u32,
    /// Every choice's log-probability, where the request asked to score choices and the backend could.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice_logprobs: Option<Vec<ChoiceLogprob>>,
}

/// Why a call did not produce a response. Every variant carries a stable reason code (`llm.*`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// Worth retrying (429, 5xx, timeouts, connection errors, malformed bodies). Returned to the caller
    /// only once the retries are spent (`retries` of them), with `retry_after` from the last answer
    /// if it had one.
    #[error("{code}: {message}")]
    Transient { code: String, message: String, retry_after: Option<Duration>, retries: u32 },
    /// This row cannot be done (400, content filter): skip it with the reason code.
    #[error("{code}: {message}")]
    Skip { code: String, message: String },
    /// Nothing will work until a person fixes something (401/403, quota exhausted, unknown model):
    /// stop the run. The message says what to fix.
    #[error("{code}: {message}")]
    Fatal { code: String, message: String },
}

impl LlmError {
    pub fn code(&self) -> &str {
        match self {
            LlmError::Transient { code, .. } | LlmError::Skip { code, .. } | LlmError::Fatal { code, .. } => code,
        }
    }
    pub fn is_transient(&self) -> bool {
        matches!(self, LlmError::Transient { .. })
    }
    pub fn transient(code: &str, message: impl Into<String>) -> Self {
        LlmError::Transient { code: code.to_string(), message: message.into(), retry_after: None, retries: 0 }
    }
    pub fn skip(code: &str, message: impl Into<String>) -> Self {
        LlmError::Skip { code: code.to_string(), message: message.into() }
    }
    pub fn fatal(code: &str, message: impl Into<String>) -> Self {
        LlmError::Fatal { code: code.to_string(), message: message.into() }
    }
}

/// A chat backend. Implementations do their own retries; what they return is final for that call.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError>;

    /// Stable identity for cache keys: which server family / engine and where, never a secret.
    fn identity(&self) -> String;

    /// The model name requests go to.
    fn model(&self) -> String;

    /// Prices per 1M tokens, where the backend costs money.
    fn pricing(&self) -> Pricing {
        Pricing::default()
    }
}

/// A continuation's log-likelihood.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loglik {
    /// Natural-log probability, summed over the continuation's tokens.
    pub logprob: f64,
    pub tokens: usize,
}

/// Scores continuations by log-likelihood (MCQ option ranking, lm-eval's `loglikelihood` request): an
/// OpenAI-compatible `/v1/completions` with echo + logprobs, or the local engine.
#[async_trait::async_trait]
pub trait LoglikScorer: Send + Sync {
    /// `log P(continuation | context)` in nats, summed over the continuation's tokens, and how many tokens.
    async fn loglikelihood(&self, context: &str, continuation: &str) -> Result<Loglik, LlmError>;

    /// Stable identity (engine or server, and model), never a secret.
    fn identity(&self) -> String;
}
