//! Whole jobs built from the pieces: `convert` one input to one output, and `run_ingest`, which runs a
//! pipeline config's inputs into a fresh run folder with its manifest. The CLI calls these.

use std::path::{Path, PathBuf};

use crate::config::{InputConfig, OnError, PipelineConfig, ResolvedInput};
use crate::error::{Error, Result};
use crate::ingest::{ingest, IngestStats, RejectLog};
use crate::manifest::{hash_input, now_rfc3339, Manifest, OutputInfo, RunDir, StepCount};
use crate::read::Format;
use crate::record::Record;
use crate::write::{self, OutputFormat, RecordWriter};

/// Progress callback: (label, rows read so far).
pub type Progress<'a> = &'a (dyn Fn(&str, u64) + Sync);

/// What to convert.
#[derive(Debug, Clone)]
pub struct ConvertRequest {
    pub input: PathBuf,
    pub output: PathBuf,
    /// Preset name; guessed from the data when `None`.
    pub preset: Option<String>,
    pub input_format: Option<Format>,
    /// Output format; follows the output's extension when `None`.
    pub format: Option<OutputFormat>,
    pub on_error: OnError,
    /// Reject log path; `OUT.rejects.jsonl` when `None`.
    pub rejects: Option<PathBuf>,
    pub limit: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ConvertOutcome {
    pub preset: Option<String>,
    pub format: OutputFormat,
    pub rows: u64,
    pub stats: IngestStats,
    pub rejects_path: PathBuf,
}

pub fn convert(req: &ConvertRequest, progress: Progress) -> Result<ConvertOutcome> {
    let format = req.format.unwrap_or_else(|| OutputFormat::from_path(&req.output));
    let preset = match &req.preset {
        Some(p) => Some(p.clone()),
        None if req.input_format.is_some() => None,
        None => crate::preset::detect(&req.input).map(|p| p.name.clone()),
    };
    if preset.is_none() {
        return Err(Error::Config(format!(
            "{}: no preset fits this data; pass --preset NAME (see `medforge presets`), or write a config with a field mapping",
            req.input.display()
        )));
    }
    let mut cfg = InputConfig::for_path(&req.input, preset.as_deref());
    cfg.format = req.input_format;
    cfg.limit = req.limit;
    let input = cfg.resolve()?;
    let rejects_path = req.rejects.clone().unwrap_or_else(|| {
        let mut s = req.output.clone().into_os_string();
        s.push(".rejects.jsonl");
        PathBuf::from(s)
    });
    let mut rejects = RejectLog::new(&rejects_path);
    let mut writer = write::create(&req.output, format)?;
    // On error the writer is dropped unfinished and its temporary output removed.
    let stats =
        ingest(&input, req.on_error, &mut rejects, &|n| progress("converting", n), &mut |batch| writer.write(&batch))?;
    let rows = writer.finish()?;
    rejects.finish()?;
    Ok(ConvertOutcome { preset, format, rows, stats, rejects_path })
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub stats: IngestStats,
}

/// Ingest every input of a config into a new run folder: `records.{parquet,jsonl}`, `records_hf/`,
/// `rejects.jsonl` (when rows were skipped) and `manifest.json`.
pub fn run_ingest(cfg: &PipelineConfig, config_path: &Path, progress: Progress) -> Result<RunOutcome> {
    let run = RunDir::create(&cfg.run.output)?;
    let resolved: Vec<_> = cfg.inputs.iter().map(|i| i.resolve()).collect::<Result<_>>()?;
    let config_json = serde_json::json!({
        "config_file": config_path,
        "run": cfg.run,
        "inputs": resolved,
        "output": cfg.output,
    });
    let mut manifest = Manifest::new(&run, cfg.run.seed, config_json);
    for r in &resolved {
        manifest.inputs.push(hash_input(&r.path)?);
    }
    // Written first so that even a crashed run says what it was doing.
    manifest.write(&run.path)?;

    let mut writers: Vec<(PathBuf, OutputFormat, Box<dyn RecordWriter>)> = Vec::new();
    for f in &cfg.output.formats {
        let p = run.file(&f.file_name("records"));
        writers.push((p.clone(), *f, write::create(&p, *f)?));
    }
    let (steps, total) = ingest_all(&resolved, cfg.run.on_error, &run.file("rejects.jsonl"), progress, &mut |batch| {
        for (_, _, w) in writers.iter_mut() {
            w.write(&batch)?;
        }
        Ok(())
    })?;
    manifest.steps.extend(steps);
    for (path, format, w) in writers {
        let rows = w.finish()?;
        manifest.outputs.push(OutputInfo {
            path: path.strip_prefix(&run.path).unwrap_or(&path).to_path_buf(),
            format: format!("{format:?}").to_lowercase(),
            rows,
        });
    }
    manifest.rejects = total.rejected.clone();
    manifest.finished_at = Some(now_rfc3339());
    manifest.write(&run.path)?;
    run.mark_latest()?;
    Ok(RunOutcome { dir: run.path, manifest, stats: total })
}

/// Ingest several inputs in order into one sink, logging rejects to `rejects_path` (created only if
/// a row is rejected). Returns a step count per input and the totals.
pub fn ingest_all(
    inputs: &[ResolvedInput],
    on_error: OnError,
    rejects_path: &Path,
    progress: Progress,
    sink: &mut dyn FnMut(Vec<Record>) -> Result<()>,
) -> Result<(Vec<StepCount>, IngestStats)> {
    let mut rejects = RejectLog::new(rejects_path);
    let mut steps = Vec::new();
    let mut total = IngestStats::default();
    for input in inputs {
        let label = format!("ingest {}", input.source);
        let stats = ingest(input, on_error, &mut rejects, &|n| progress(&label, n), sink)?;
        steps.push(StepCount {
            name: format!("ingest:{}", input.source),
            rows_in: stats.rows_read,
            rows_out: stats.rows_ok,
            reasons: stats.rejected.clone(),
        });
        total.add(&stats);
    }
    rejects.finish()?;
    Ok((steps, total))
}
