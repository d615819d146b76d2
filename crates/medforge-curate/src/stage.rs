//! The one trait every curation step implements, LLM-driven ones included.

use std::path::{Path, PathBuf};

use medforge_data::{Record, Score};

/// What a stage decided about one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub keep: bool,
    /// Stable reason code, e.g. `quality.missing_field:answer`. Required when dropping.
    pub reason: Option<String>,
    pub scores: Vec<Score>,
}

impl Decision {
    pub fn keep() -> Self {
        Decision { keep: true, reason: None, scores: Vec::new() }
    }
    pub fn drop(reason: impl Into<String>) -> Self {
        Decision { keep: false, reason: Some(reason.into()), scores: Vec::new() }
    }
    pub fn with_score(mut self, name: impl Into<String>, value: f64) -> Self {
        self.scores.push(Score { name: name.into(), value });
        self
    }
}

/// A report file a stage leaves in the run folder (e.g. `decontamination_report.json`).
#[derive(Debug, Clone)]
pub struct Report {
    pub file_name: String,
    pub body: serde_json::Value,
}

/// What a stage returns: one decision per input row, in order, and optional reports.
#[derive(Debug, Clone, Default)]
pub struct StageOutput {
    pub decisions: Vec<Decision>,
    pub reports: Vec<Report>,
}

impl StageOutput {
    pub fn new(decisions: Vec<Decision>) -> Self {
        StageOutput { decisions, reports: Vec::new() }
    }
    pub fn with_report(mut self, file_name: &str, body: serde_json::Value) -> Self {
        self.reports.push(Report { file_name: file_name.to_string(), body });
        self
    }
}

/// What a stage may use besides its rows.
pub struct StageContext<'a> {
    pub seed: u64,
    /// The run folder; stages that write whole outputs (formatted sets, splits) write under it.
    pub run_dir: &'a Path,
    /// Rows done so far, of `total`.
    pub progress: &'a (dyn Fn(u64, u64) + Sync),
}

impl StageContext<'_> {
    pub fn path(&self, name: &str) -> PathBuf {
        self.run_dir.join(name)
    }
}

pub type StageResult<T> = Result<T, StageError>;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("stage `{stage}`: {message}")]
    Failed { stage: String, message: String },
    #[error(transparent)]
    Data(#[from] medforge_data::Error),
}

impl StageError {
    pub fn failed(stage: &str, message: impl std::fmt::Display) -> Self {
        StageError::Failed { stage: stage.to_string(), message: message.to_string() }
    }
}

/// A curation step. It sees the rows every earlier stage kept, in input order, may edit them
/// (normalisation, labels), and returns one [`Decision`] per row.
pub trait Stage: Send {
    /// Short name used in annotations and reason codes, e.g. `dedup`.
    fn name(&self) -> &str;
    fn run(&mut self, rows: &mut [Record], ctx: &StageContext) -> StageResult<StageOutput>;
}
