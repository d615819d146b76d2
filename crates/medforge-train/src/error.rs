//! Errors of training runs. Each names the file, row or `[train]` key involved and, where there is one, the fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A bad `[train]` value or combination.
    #[error("{0}")]
    Config(String),
    /// Training data that cannot be used (no loss tokens, every row truncated, template/tokenizer mismatch).
    #[error("{0}")]
    Data(String),
    /// A checkpoint that does not fit this run (another config, a partial write, another model).
    #[error("{0}")]
    Checkpoint(String),
    #[error(transparent)]
    Engine(#[from] medforge_engine::EngineError),
    #[error(transparent)]
    Formatted(#[from] medforge_data::Error),
    #[error(transparent)]
    Eval(#[from] medforge_eval::EvalError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The loss became NaN or infinite.
    #[error("{0}")]
    Diverged(String),
}

impl TrainError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io { path: path.into(), source }
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
