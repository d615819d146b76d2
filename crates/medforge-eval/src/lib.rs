//! medforge evaluation: reference-exact text metrics, MCQ answer extraction and accuracy with
//! bootstrap confidence intervals, the seed's composite scores, BERTScore on a local candle
//! encoder, and reports (CSV, JSON, PNG, HTML).
pub mod bertscore;
pub mod charts;
pub mod extract;
pub mod metrics;
pub mod perplexity;
pub mod report;
pub mod runner;
pub mod scores;
pub mod stats;
