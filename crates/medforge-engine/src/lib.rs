//! medforge's local inference engine: llama-family models (llama, mistral, qwen2) from GGUF files or Hugging Face
//! safetensors folders on candle (CPU), with the tokenizer rebuilt from GGUF metadata and the chat template rendered
//! by `medforge_text::chat` (the renderer the curation formats use). Generation (greedy, temperature, top-k, top-p,
//! seeded; stop strings; KV cache with prefix reuse), log-likelihood of continuations and perplexity, a
//! [`medforge_llm::Backend`] implementation, and an OpenAI-compatible HTTP server ([`server`]).
//!
//! A separate crate rather than a module of `medforge-llm`, so that the HTTP-only users of `medforge-llm` do not
//! compile candle, and so that the engine and its server can be tested on their own.

pub mod backend;
pub mod cpu;
pub mod engine;
pub mod gguf;
pub mod model;
pub mod sampling;
pub mod server;
pub mod tiny;

pub use backend::LocalBackend;
pub use engine::{Engine, GenerateParams, Generation, LoadOptions};
pub use sampling::SamplingParams;

use std::path::Path;

/// Why the engine could not do something.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Format(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{0}")]
    BadInput(String),
    #[error("the prompt and completion need {needed} tokens, more than the model's context of {limit}")]
    ContextOverflow { needed: usize, limit: usize },
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("chat template: {0}")]
    Template(#[from] medforge_text::chat::ChatError),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl EngineError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        EngineError::Io { path: path.display().to_string(), source }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Summarise a model file (GGUF) or folder (safetensors) without loading its weights.
pub fn inspect(path: &Path) -> Result<gguf::ModelInfo> {
    if path.is_dir() {
        tiny::inspect_hf(path)
    } else {
        gguf::inspect_gguf(path)
    }
}

/// File name of the embedded default model, as `scripts/fetch_model.sh` writes it.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The model cache: `$MEDFORGE_MODELS`, else `~/.cache/medforge/models`.
pub fn models_dir() -> std::path::PathBuf {
    match std::env::var_os("MEDFORGE_MODELS") {
        Some(d) if !d.is_empty() => d.into(),
        _ => std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_default().join(".cache/medforge/models"),
    }
}

/// The default model (SmolLM2-135M-Instruct) if `scripts/fetch_model.sh` has fetched it.
pub fn default_model() -> Option<std::path::PathBuf> {
    let p = models_dir().join(DEFAULT_MODEL_FILE);
    p.is_file().then_some(p)
}
