//! medforge-curate: stages behind one trait, and the runner that executes them.
//!
//! A stage sees the rows every earlier stage kept, in input order, and returns a decision per row
//! with a stable reason code. The runner annotates every row, so `filtered.parquet` can say which stage
//! dropped each row and why.

pub mod config;
pub mod format;
pub mod runner;
pub mod sample;
pub mod split;
pub mod stage;
pub mod stages;
pub mod taxonomy;
pub mod verify;

pub use config::{CurateConfig, StageConfig};
pub use stage::{Decision, Stage, StageContext, StageError, StageOutput, StageResult};
