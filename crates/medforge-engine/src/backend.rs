//! [`LocalBackend`]: the engine behind medforge-llm's `Backend` trait, so every LLM stage and the evaluation can use
//! a local model. Inference is blocking and runs on tokio's blocking pool, one request at a time per engine.

use std::sync::{Arc, Mutex};

use medforge_llm::{
    Backend, ChatRequest, ChatResponse, ChoiceLogprob, LlmError, Loglik, LoglikScorer, Role, Structure, Usage,
};
use medforge_text::chat::Message;

use crate::constrain::Constraint;
use crate::engine::{Engine, GenerateParams};
use crate::sampling::SamplingParams;
use crate::EngineError;

/// Default `max_tokens` when a request gives none.
pub const DEFAULT_MAX_TOKENS: usize = 512;

#[derive(Clone)]
pub struct LocalBackend {
    engine: Arc<Mutex<Engine>>,
    name: String,
    path: String,
}

impl LocalBackend {
    pub fn new(engine: Engine) -> Self {
        Self::from_shared(Arc::new(Mutex::new(engine)))
    }

    pub fn from_shared(engine: Arc<Mutex<Engine>>) -> Self {
        let (name, path) = {
            let e = engine.lock().unwrap_or_else(|p| p.into_inner());
            (e.name.clone(), e.path.display().to_string())
        };
        LocalBackend { engine, name, path }
    }

    pub fn engine(&self) -> Arc<Mutex<Engine>> {
        self.engine.clone()
    }
}

pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// The engine's parameters for a medforge-llm request. Unset temperature means greedy here (reproducible
/// stages); unset seed means 0.
pub fn generate_params(req: &ChatRequest) -> GenerateParams {
    let p = &req.params;
    GenerateParams {
        max_tokens: p.max_tokens.map(|m| m as usize).unwrap_or(DEFAULT_MAX_TOKENS),
        sampling: SamplingParams {
            temperature: p.temperature.unwrap_or(0.0),
            top_p: p.top_p.unwrap_or(1.0),
            top_k: 0,
            seed: p.seed.unwrap_or(0),
        },
        stop: p.stop.clone(),
        logprobs: None,
        ignore_eos: false,
        constraint: p.structure.as_ref().map(constraint),
    }
}

/// The engine's constraint for a stage's structure.
pub fn constraint(s: &Structure) -> Constraint {
    match s {
        Structure::Choice(c) => Constraint::Choice(c.clone()),
        Structure::Regex(r) => Constraint::Regex(r.clone()),
        Structure::JsonSchema(j) => Constraint::JsonSchema(j.clone()),
        Structure::Grammar(g) => Constraint::Lark(g.clone()),
    }
}

/// The answer to a request that scored its choices: the likeliest one (the first on ties), with every score.
pub fn scored_response(prompt_tokens: usize, scores: Vec<(String, f64, usize)>) -> ChatResponse {
    let best = scores
        .iter()
        .enumerate()
        .fold(None::<usize>, |b, (i, s)| match b {
            Some(j) if scores[j].1 >= s.1 => Some(j),
            _ => Some(i),
        })
        .expect("at least one choice");
    ChatResponse {
        text: scores[best].0.clone(),
        usage: Usage { prompt_tokens: prompt_tokens as u64, completion_tokens: scores[best].2 as u64 },
        finish_reason: "stop".into(),
        retries: 0,
        choice_logprobs: Some(
            scores.into_iter().map(|(choice, logprob, _)| ChoiceLogprob { choice, logprob }).collect(),
        ),
    }
}

pub fn to_llm_error(e: EngineError) -> LlmError {
    match e {
        EngineError::ContextOverflow { .. } | EngineError::BadInput(_) | EngineError::Template(_) => {
            LlmError::skip("llm.local.bad_request", e.to_string())
        }
        EngineError::Unsupported(_) => LlmError::fatal("llm.local.unsupported", e.to_string()),
        other => LlmError::fatal("llm.local.engine", other.to_string()),
    }
}

#[async_trait::async_trait]
impl Backend for LocalBackend {
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let messages: Vec<Message> =
            req.messages.iter().map(|m| Message::new(role_name(m.role), m.content.clone())).collect();
        let params = generate_params(req);
        let engine = self.engine.clone();
        if let (true, Some(Structure::Choice(choices))) = (req.params.score_choices, &req.params.structure) {
            let choices = choices.clone();
            let scored = tokio::task::spawn_blocking(move || {
                let mut e = engine.lock().unwrap_or_else(|p| p.into_inner());
                let prompt = e.render_chat(&messages)?;
                let ids = e.encode_prompt(&prompt)?;
                let scores = e.score_choices(&ids, &choices)?;
                Ok::<_, EngineError>((ids.len(), scores))
            })
            .await
            .map_err(|e| LlmError::fatal("llm.local.panic", e.to_string()))?
            .map_err(to_llm_error)?;
            let (prompt_tokens, scores) = scored;
            return Ok(scored_response(prompt_tokens, scores));
        }
        let gen = tokio::task::spawn_blocking(move || {
            let mut e = engine.lock().unwrap_or_else(|p| p.into_inner());
            e.chat(&messages, &params, &mut |_| true)
        })
        .await
        .map_err(|e| LlmError::fatal("llm.local.panic", e.to_string()))?
        .map_err(to_llm_error)?;
        Ok(ChatResponse {
            text: gen.text,
            usage: Usage { prompt_tokens: gen.prompt_tokens as u64, completion_tokens: gen.tokens.len() as u64 },
            finish_reason: gen.finish_reason,
            retries: 0,
            choice_logprobs: None,
        })
    }

    fn identity(&self) -> String {
        format!("medforge-engine:{}", self.path)
    }

    fn model(&self) -> String {
        self.name.clone()
    }
}

/// MCQ option scoring on the local engine. Options of one question share the context, so after the first one the
/// engine's prefix cache skips the context's forward pass.
#[async_trait::async_trait]
impl LoglikScorer for LocalBackend {
    async fn loglikelihood(&self, context: &str, continuation: &str) -> Result<Loglik, LlmError> {
        let engine = self.engine.clone();
        let (context, continuation) = (context.to_string(), continuation.to_string());
        let ll = tokio::task::spawn_blocking(move || {
            let mut e = engine.lock().unwrap_or_else(|p| p.into_inner());
            e.loglikelihood(&context, &continuation)
        })
        .await
        .map_err(|e| LlmError::fatal("llm.local.panic", e.to_string()))?
        .map_err(to_llm_error)?;
        Ok(Loglik { logprob: ll.logprob, tokens: ll.tokens })
    }

    fn identity(&self) -> String {
        Backend::identity(self)
    }
}
