//! Writers. Every output is written to a temporary path beside its target and renamed into place on
//! `finish`, so a crash or an error never leaves a half-written file under the final name.

mod hf;
mod jsonl;
mod parquet;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::Record;

pub use hf::{HfRecordWriter, HfWriter};
pub use jsonl::JsonlWriter;
pub use parquet::ParquetWriter;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    Jsonl,
    Parquet,
    /// A Hugging Face `save_to_disk` folder, opened by `datasets.load_from_disk`.
    Hf,
}

impl OutputFormat {
    pub const NAMES: [&'static str; 3] = ["jsonl", "parquet", "hf"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "jsonl" => Some(OutputFormat::Jsonl),
            "parquet" => Some(OutputFormat::Parquet),
            "hf" | "hf_dataset" | "arrow" => Some(OutputFormat::Hf),
            _ => None,
        }
    }

    /// Guess from the target path: `.jsonl`, `.parquet`, otherwise a dataset folder.
    pub fn from_path(path: &Path) -> OutputFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl") | Some("ndjson") => OutputFormat::Jsonl,
            Some("parquet") | Some("pq") => OutputFormat::Parquet,
            _ => OutputFormat::Hf,
        }
    }

    /// The conventional name inside a run folder.
    pub fn file_name(self, stem: &str) -> String {
        match self {
            OutputFormat::Jsonl => format!("{stem}.jsonl"),
            OutputFormat::Parquet => format!("{stem}.parquet"),
            OutputFormat::Hf => format!("{stem}_hf"),
        }
    }
}

/// A streaming record writer.
pub trait RecordWriter: Send {
    fn write(&mut self, records: &[Record]) -> Result<()>;
    /// Flush and move the output into place; returns the number of rows written.
    fn finish(self: Box<Self>) -> Result<u64>;
}

/// Open a writer for `path` in `format`.
pub fn create(path: &Path, format: OutputFormat) -> Result<Box<dyn RecordWriter>> {
    Ok(match format {
        OutputFormat::Jsonl => Box::new(JsonlWriter::create(path)?),
        OutputFormat::Parquet => Box::new(ParquetWriter::create(path)?),
        OutputFormat::Hf => Box::new(HfRecordWriter::create(path)?),
    })
}

/// Write all records to one output.
pub fn write_all(path: &Path, format: OutputFormat, records: &[Record]) -> Result<u64> {
    let mut w = create(path, format)?;
    for chunk in records.chunks(8192) {
        w.write(chunk)?;
    }
    w.finish()
}

/// Write a small file atomically (temp file + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut tmp = temp_beside(path)?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    persist(tmp, path)
}

pub(crate) fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

pub(crate) fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = parent_of(path);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".tmp").tempfile_in(dir).map_err(|e| Error::io(dir, e))
}

pub(crate) fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    publish_mode(tmp.path(), false).map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Temp files and folders are created private (0600/0700); outputs get the usual 0644/0755 before
/// they are renamed into place, so other users and tools can read them.
pub fn publish_mode(path: &Path, dir: bool) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(if dir { 0o755 } else { 0o644 }))?;
    }
    #[cfg(not(unix))]
    let _ = (path, dir);
    Ok(())
}

/// Encode records into a canonical batch, naming the output on failure.
pub(crate) fn encode(path: &Path, records: &[Record]) -> Result<arrow_array::RecordBatch> {
    crate::columnar::records_to_batch(records).map_err(|e| Error::write(path.display().to_string(), e))
}
