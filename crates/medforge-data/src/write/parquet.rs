use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::{persist, temp_beside, RecordWriter};
use crate::columnar::schema;
use crate::error::{Error, Result};
use crate::record::Record;

/// Parquet with the canonical schema (annotations included), Snappy-compressed.
pub struct ParquetWriter {
    path: PathBuf,
    writer: ArrowWriter<tempfile::NamedTempFile>,
    rows: u64,
}

impl ParquetWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let tmp = temp_beside(path)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("medforge {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = ArrowWriter::try_new(tmp, schema(), Some(props))
            .map_err(|e| Error::write(path.display().to_string(), e))?;
        Ok(ParquetWriter { path: path.to_path_buf(), writer, rows: 0 })
    }
}

impl RecordWriter for ParquetWriter {
    fn write(&mut self, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let batch = super::encode(&self.path, records)?;
        self.writer.write(&batch).map_err(|e| Error::write(self.path.display().to_string(), e))?;
        self.rows += records.len() as u64;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<u64> {
        let tmp = self.writer.into_inner().map_err(|e| Error::write(self.path.display().to_string(), e))?;
        persist(tmp, &self.path)?;
        Ok(self.rows)
    }
}
