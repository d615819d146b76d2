//! Ingest: read an input, map every row onto a [`Record`] in parallel (order kept), and apply the
//! `on_error` policy. Rejected rows go to a [`RejectLog`]; nothing valid is dropped.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::config::{OnError, ResolvedInput};
use crate::error::{Error, Result, RowError};
use crate::mapping::Mapper;
use crate::read;
use crate::record::Record;

/// Rows handed to the mapper at once; big enough to keep both cores busy, small enough to stream.
const CHUNK: usize = 4096;

/// Counts for one ingested input.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IngestStats {
    pub rows_read: u64,
    pub rows_ok: u64,
    pub rejected: BTreeMap<String, u64>,
}

impl IngestStats {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
    pub fn add(&mut self, other: &IngestStats) {
        self.rows_read += other.rows_read;
        self.rows_ok += other.rows_ok;
        for (k, v) in &other.rejected {
            *self.rejected.entry(k.clone()).or_default() += v;
        }
    }
}

/// Where rejected rows are written: `rejects.jsonl`, one JSON object per reject.
pub struct RejectLog {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    pub count: u64,
}

impl RejectLog {
    /// The file is created on the first reject, so a clean run leaves none.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RejectLog { path: path.into(), out: None, count: 0 }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, e: &RowError) -> Result<()> {
        if self.out.is_none() {
            let f = File::create(&self.path).map_err(|err| Error::io(&self.path, err))?;
            self.out = Some(BufWriter::new(f));
        }
        let out = self.out.as_mut().expect("opened above");
        serde_json::to_writer(&mut *out, e).map_err(|err| Error::write(self.path.display().to_string(), err))?;
        out.write_all(b"\n").map_err(|err| Error::io(&self.path, err))?;
        self.count += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<u64> {
        if let Some(mut out) = self.out.take() {
            out.flush().map_err(|e| Error::io(&self.path, e))?;
        }
        Ok(self.count)
    }
}

/// Read one input and pass mapped records to `sink` in order, chunk by chunk.
///
/// Under `OnError::Fail` the first bad row stops ingest with its located error; under `Skip` it is
/// written to `rejects` and counted. `progress` is called with the number of rows read so far.
pub fn ingest(
    input: &ResolvedInput,
    on_error: OnError,
    rejects: &mut RejectLog,
    progress: &dyn Fn(u64),
    sink: &mut dyn FnMut(Vec<Record>) -> Result<()>,
) -> Result<IngestStats> {
    let mapper = Mapper::new(input.fields.clone(), &input.source, input.read.limits.max_field_bytes)
        .map_err(|m| Error::Config(format!("{}: {m}", input.path.display())))?;
    let mut stats = IngestStats::default();
    let mut handle = |e: RowError, stats: &mut IngestStats| -> Result<()> {
        match on_error {
            OnError::Fail => Err(e.into()),
            OnError::Skip => {
                *stats.rejected.entry(e.code.clone()).or_default() += 1;
                rejects.write(&e)
            }
        }
    };
    let rows = match read::open(&input.path, &input.read) {
        Ok(r) => r,
        Err(e) => {
            handle(e, &mut stats)?;
            return Ok(stats);
        }
    };
    let limit = input.limit.unwrap_or(u64::MAX);
    let mut rows = rows.take(limit.try_into().unwrap_or(usize::MAX));
    let mut mapped = read_and_map(&mut rows, &mapper);
    while !mapped.is_empty() {
        stats.rows_read += mapped.len() as u64;
        // Pipeline: while this thread handles rejects and runs the sink (for Parquet, the serial
        // encode), the next chunk is read and mapped beside it. Sinking used to leave the mapping
        // threads idle for about a third of a convert. Order, rejects and progress are unchanged.
        mapped = std::thread::scope(|s| -> Result<_> {
            let next = s.spawn(|| read_and_map(&mut rows, &mapper));
            let mut good = Vec::with_capacity(mapped.len());
            for m in std::mem::take(&mut mapped) {
                match m {
                    Ok(r) => good.push(r),
                    Err(e) => handle(e, &mut stats)?,
                }
            }
            stats.rows_ok += good.len() as u64;
            sink(good)?;
            progress(stats.rows_read);
            Ok(next.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        })?;
    }
    Ok(stats)
}

/// Read up to [`CHUNK`] rows and map them in parallel, keeping their order.
fn read_and_map(
    rows: &mut impl Iterator<Item = std::result::Result<read::RawRow, RowError>>,
    mapper: &Mapper,
) -> Vec<std::result::Result<Record, RowError>> {
    let chunk: Vec<_> = rows.by_ref().take(CHUNK).collect();
    chunk.into_par_iter().map(|row| row.and_then(|r| mapper.map(r))).collect()
}

/// Convenience: ingest everything into memory (tests, small inputs, inspection).
pub fn read_all(
    input: &ResolvedInput,
    on_error: OnError,
    rejects: &mut RejectLog,
) -> Result<(Vec<Record>, IngestStats)> {
    let mut all = Vec::new();
    let stats = ingest(input, on_error, rejects, &|_| {}, &mut |batch| {
        all.extend(batch);
        Ok(())
    })?;
    Ok((all, stats))
}
