//! Errors of evaluation runs, reports and charts. File errors name their path and keep their source.

use std::path::PathBuf;

/// Errors of an evaluation run or report.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Bad arguments or input (a benchmark with no items, a malformed target).
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Data(#[from] medforge_data::Error),
    /// The model could not be loaded or called.
    #[error("{0}")]
    Model(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: {source}", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("{}: drawing the chart: {source}", path.display())]
    Chart {
        path: PathBuf,
        #[source]
        source: ChartError,
    },
}

impl EvalError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EvalError::Io { path: path.into(), source }
    }
    pub fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        EvalError::Json { path: path.into(), source }
    }
}

/// What plotters reported while drawing a chart.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ChartError(pub Box<dyn std::error::Error + Send + Sync>);

pub type Result<T, E = EvalError> = std::result::Result<T, E>;
