use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{persist, temp_beside, RecordWriter};
use crate::error::{Error, Result};
use crate::record::Record;

/// One canonical record per line, keys in [`Record::FIELDS`] order.
pub struct JsonlWriter {
    path: PathBuf,
    out: BufWriter<tempfile::NamedTempFile>,
    rows: u64,
}

impl JsonlWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let tmp = temp_beside(path)?;
        Ok(JsonlWriter { path: path.to_path_buf(), out: BufWriter::with_capacity(1 << 20, tmp), rows: 0 })
    }
}

impl RecordWriter for JsonlWriter {
    fn write(&mut self, records: &[Record]) -> Result<()> {
        // Serialise in parallel, write in order.
        let parts: Vec<Vec<u8>> = records
            .par_chunks(512)
            .map(|chunk| {
                let mut buf = Vec::with_capacity(chunk.len() * 512);
                for r in chunk {
                    serde_json::to_writer(&mut buf, r).expect("records serialise");
                    buf.push(b'\n');
                }
                buf
            })
            .collect();
        for p in parts {
            self.out.write_all(&p).map_err(|e| Error::io(&self.path, e))?;
        }
        self.rows += records.len() as u64;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<u64> {
        let tmp = self.out.into_inner().map_err(|e| Error::io(&self.path, e.into_error()))?;
        persist(tmp, &self.path)?;
        Ok(self.rows)
    }
}
