//! Errors of the text algorithms. Every error that comes from a file names that file, so a config
//! pointing at the wrong term list or tokenizer is found without a debugger.

use std::path::PathBuf;

/// An error from medforge-text.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A tokenizer file could not be loaded or used.
    #[error("{path}: tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },
    /// Parameters that cannot work together (e.g. `bands * rows > num_perm`).
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
}

/// Result alias for this crate.
pub type Result<T, E = TextError> = std::result::Result<T, E>;
