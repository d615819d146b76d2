//! medforge evaluation: reference-exact text metrics, MCQ answer extraction and accuracy with
//! bootstrap confidence intervals, the seed's composite scores, and reports (CSV, JSON, PNG, HTML).
pub mod charts;
pub mod extract;
pub mod metrics;
pub mod report;
pub mod runner;
pub mod scores;
pub mod stats;
