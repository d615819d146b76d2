use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::SchemaRef;
use sha2::{Digest, Sha256};

use super::{parent_of, RecordWriter};
use crate::columnar::schema;
use crate::error::{Error, Result};
use crate::record::Record;

const SHARD: &str = "data-00000-of-00001.arrow";

/// A Hugging Face `save_to_disk` folder of any Arrow schema: one Arrow IPC *stream* shard,
/// `dataset_info.json`, `state.json`. Built in a private temporary folder beside the target and renamed into
/// place on [`HfWriter::finish`], so the target is never half-written; dropped unfinished, it leaves nothing.
pub struct HfWriter {
    path: PathBuf,
    tmp: tempfile::TempDir,
    writer: StreamWriter<BufWriter<File>>,
    description: String,
    rows: u64,
}

impl HfWriter {
    /// Start a folder at `path` whose rows have `schema`; `description` goes into `dataset_info.json`.
    pub fn create(path: &Path, schema: SchemaRef, description: impl Into<String>) -> Result<Self> {
        let parent = parent_of(path);
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("dataset");
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        let shard = tmp.path().join(SHARD);
        let f = File::create(&shard).map_err(|e| Error::io(&shard, e))?;
        let writer = StreamWriter::try_new(BufWriter::with_capacity(1 << 20, f), &schema)
            .map_err(|e| Error::write(path.display().to_string(), e))?;
        Ok(HfWriter { path: path.to_path_buf(), tmp, writer, description: description.into(), rows: 0 })
    }

    /// Append a batch of the folder's schema.
    pub fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(|e| Error::write(self.path.display().to_string(), e))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Flush the shard, write the metadata files and move the folder into place; returns the rows written.
    pub fn finish(self) -> Result<u64> {
        let HfWriter { path, tmp, mut writer, description, rows } = self;
        let ctx = || path.display().to_string();
        writer.finish().map_err(|e| Error::write(ctx(), e))?;
        let inner = writer.into_inner().map_err(|e| Error::write(ctx(), e))?;
        let file = inner.into_inner().map_err(|e| Error::write(ctx(), e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&path, e))?;
        drop(file);

        let shard = tmp.path().join(SHARD);
        let bytes = std::fs::read(&shard).map_err(|e| Error::io(&shard, e))?;
        let fingerprint = hex::encode(&Sha256::digest(&bytes)[..8]);
        let info = serde_json::json!({
            "builder_name": "medforge",
            "citation": "",
            "description": description,
            "homepage": "",
            "license": "",
            "dataset_size": bytes.len(),
            "size_in_bytes": bytes.len(),
        });
        let state = serde_json::json!({
            "_data_files": [{"filename": SHARD}],
            "_fingerprint": fingerprint,
            "_format_columns": null,
            "_format_kwargs": {},
            "_format_type": null,
            "_output_all_columns": false,
            "_split": null,
        });
        for (name, v) in [("dataset_info.json", info), ("state.json", state)] {
            let p = tmp.path().join(name);
            std::fs::write(&p, serde_json::to_vec_pretty(&v).expect("json")).map_err(|e| Error::io(&p, e))?;
        }

        // Swap into place: move any old folder aside first, so the target is never half-written.
        for f in [SHARD, "dataset_info.json", "state.json"] {
            super::publish_mode(&tmp.path().join(f), false).map_err(|e| Error::io(&path, e))?;
        }
        super::publish_mode(tmp.path(), true).map_err(|e| Error::io(&path, e))?;
        let staged = tmp.keep();
        if path.exists() {
            let old = parent_of(&path).join(format!(
                ".{}.old.{}",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("dataset"),
                std::process::id()
            ));
            std::fs::rename(&path, &old).map_err(|e| Error::io(&path, e))?;
            std::fs::rename(&staged, &path).map_err(|e| Error::io(&path, e))?;
            let _ = if old.is_dir() { std::fs::remove_dir_all(&old) } else { std::fs::remove_file(&old) };
        } else {
            std::fs::rename(&staged, &path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(rows)
    }
}

/// Canonical records as a Hugging Face folder.
pub struct HfRecordWriter(HfWriter);

impl HfRecordWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let description = format!("medforge records, schema v{}", crate::columnar::SCHEMA_VERSION);
        Ok(HfRecordWriter(HfWriter::create(path, schema(), description)?))
    }
}

impl RecordWriter for HfRecordWriter {
    fn write(&mut self, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let batch = super::encode(&self.0.path, records)?;
        self.0.write_batch(&batch)
    }

    fn finish(self: Box<Self>) -> Result<u64> {
        self.0.finish()
    }
}
