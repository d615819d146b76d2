//! The engine's errors: each names what failed (a file, a tensor, a token) and keeps its source.

use std::path::Path;

/// Why the engine could not do something.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A model file or folder that is not what it claims (missing tensors, wrong shapes).
    #[error("{0}")]
    Format(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A request the engine cannot serve as given (an unknown token id, bad parameters).
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
