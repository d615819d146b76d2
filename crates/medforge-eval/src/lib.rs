//! medforge evaluation: reference-exact text metrics, MCQ accuracy with bootstrap confidence intervals (answers read
//! by [`medforge_text::answer`]), the MedGemma Korean pipeline's composite scores, BERTScore on a local candle encoder,
//! and reports (CSV, JSON, PNG, HTML).
pub mod bertscore;
pub mod charts;
pub mod error;
pub mod failures;
pub mod generate;
pub mod metrics;
pub mod perplexity;
pub mod report;
pub mod runner;
pub mod score;
pub mod scores;
pub mod stats;

pub use error::{EvalError, Result};
