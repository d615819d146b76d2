//! medforge-data: the canonical record model, dataset readers with field mapping and presets, atomic
//! writers (JSONL, Parquet, Hugging Face dataset folders), pipeline config, and run manifests.
//!
//! ```no_run
//! use medforge_data::{config::{InputConfig, OnError}, ingest::{read_all, RejectLog}};
//! let input = InputConfig::for_path("medqa/US/4_options/dev.jsonl", Some("medqa")).resolve()?;
//! let (records, stats) = read_all(&input, OnError::Skip, &mut RejectLog::new("rejects.jsonl"))?;
//! assert_eq!(stats.rows_ok as usize, records.len());
//! # Ok::<(), medforge_data::Error>(())
//! ```

// Row errors carry their full location by value. They sit on the cold path, and the `Ok` side of a
// row result (a `Record`) is larger still, so boxing them would only add allocations.
#![allow(clippy::result_large_err)]

pub mod columnar;
pub mod config;
pub mod error;
pub mod formatted;
pub mod ingest;
pub mod inspect;
pub mod manifest;
pub mod mapping;
pub mod pipeline;
pub mod preset;
pub mod read;
pub mod recommendations;
pub mod record;
pub mod write;

pub use error::{Error, Location, Result, RowError};
pub use record::{Annotation, McqOption, Record, RecordKind, Score, Verdict};
