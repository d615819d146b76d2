//! The pipeline runner: ingest the inputs, run the configured stages in order, and write
//! `filtered.parquet` (every row, with its annotations), `curated.parquet` (the kept rows), reports and the
//! manifest into a fresh run folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use medforge_data::manifest::{hash_input, now_rfc3339, Manifest, OutputInfo, RunDir, StepCount};
use medforge_data::pipeline::ingest_all;
use medforge_data::write::{self, write_atomic, OutputFormat};
use medforge_data::{Annotation, Record, RecordKind, Verdict};

use crate::config::CurateConfig;
use crate::stage::{Stage, StageContext, StageError, StageResult};
use crate::stages::llm::{LlmEnv, LlmMode, LlmOptions};

/// Progress callback: (label, done, total); total is 0 when unknown.
pub type Progress<'a> = &'a (dyn Fn(&str, u64, u64) + Sync);

/// The result of a curation run.
#[derive(Debug, Clone)]
pub struct CurateOutcome {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub kept: usize,
    pub dropped: usize,
    /// The run's LLM side (spend, stop, dry-run estimates, exported requests), when it had one.
    pub llm: Option<std::sync::Arc<LlmEnv>>,
}

/// How a run is done, beyond its config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub llm: LlmOptions,
    /// Only these row ids go through the stages (`medforge retry-failed`).
    pub only_ids: Option<std::collections::HashSet<String>>,
}

/// Write the manifest, with the `llm` object (per-stage spend, stop, estimates) when the run has one.
fn write_manifest(m: &Manifest, dir: &Path, llm: Option<&LlmEnv>) -> StageResult<()> {
    let Some(env) = llm else {
        m.write(dir)?;
        return Ok(());
    };
    let mut v = serde_json::to_value(m).map_err(|e| StageError::failed("manifest", e))?;
    v["llm"] = env.manifest_json();
    let text = serde_json::to_vec_pretty(&v).map_err(|e| StageError::failed("manifest", e))?;
    write_atomic(&dir.join("manifest.json"), &text)?;
    Ok(())
}

/// Rows with their input position, split into those still kept and those dropped so far.
pub struct Rows {
    pub kept: Vec<Record>,
    kept_pos: Vec<usize>,
    dropped: Vec<(usize, Record)>,
}

impl Rows {
    pub fn new(records: Vec<Record>) -> Self {
        let n = records.len();
        Rows { kept: records, kept_pos: (0..n).collect(), dropped: Vec::new() }
    }

    /// Run one stage over the kept rows and annotate every row it saw.
    pub fn apply(
        &mut self,
        stage: &mut dyn Stage,
        ctx: &StageContext,
    ) -> StageResult<(StepCount, Vec<crate::stage::Report>)> {
        let name = stage.name().to_string();
        let rows_in = self.kept.len() as u64;
        let out = stage.run(&mut self.kept, ctx)?;
        if out.decisions.len() != self.kept.len() {
            return Err(StageError::failed(
                &name,
                format!("returned {} decisions for {} rows", out.decisions.len(), self.kept.len()),
            ));
        }
        // Annotate in place and move the dropped rows out, then compact the kept ones: no second
        // buffer of every row (the rows are the run's largest allocation).
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        let mut keep = Vec::with_capacity(self.kept.len());
        self.dropped.reserve_exact(out.decisions.iter().filter(|d| !d.keep).count());
        for (i, d) in out.decisions.into_iter().enumerate() {
            let r = &mut self.kept[i];
            if !d.keep && d.reason.is_none() {
                return Err(StageError::failed(&name, format!("dropped row `{}` without a reason code", r.id)));
            }
            let verdict = if d.keep { Verdict::Kept } else { Verdict::Dropped };
            r.annotations.reserve_exact(1); // one per stage: no spare capacity on a million rows
            r.annotations.push(Annotation { stage: name.clone(), verdict, reason: d.reason.clone(), scores: d.scores });
            if !d.keep {
                // Count by the code's family (`dedup.near`), not by each cluster or item.
                let reason = d.reason.unwrap_or_default();
                let family = reason.split(':').next().unwrap_or(&reason).to_string();
                *reasons.entry(family).or_default() += 1;
                self.dropped.push((self.kept_pos[i], std::mem::replace(r, placeholder())));
            }
            keep.push(d.keep);
        }
        let mut flags = keep.iter();
        self.kept.retain(|_| *flags.next().expect("one flag per row"));
        let mut flags = keep.iter();
        self.kept_pos.retain(|_| *flags.next().expect("one flag per row"));
        self.kept.shrink_to_fit();
        self.kept_pos.shrink_to_fit();
        let step = StepCount { name, rows_in, rows_out: self.kept.len() as u64, reasons };
        Ok((step, out.reports))
    }

    /// Every row, kept and dropped, back in input order.
    pub fn all_in_order(&self) -> Vec<&Record> {
        let mut all: Vec<(usize, &Record)> = self.kept_pos.iter().copied().zip(self.kept.iter()).collect();
        all.extend(self.dropped.iter().map(|(p, r)| (*p, r)));
        all.sort_by_key(|(p, _)| *p);
        all.into_iter().map(|(_, r)| r).collect()
    }

    pub fn dropped_count(&self) -> usize {
        self.dropped.len()
    }

    /// Write `filtered` (every row, kept and dropped, in input order, as Parquet) and each of
    /// `curated` (the kept rows) in one pass that consumes the rows: each row is freed once every
    /// output has it, so the outputs' buffers grow while the rows shrink instead of on top of them.
    /// The curated outputs are written on a second thread, from the kept rows in the same
    /// 8192-row batches as [`write::write_all`]. Returns the rows written to `filtered` and to each
    /// of `curated`; on an error no output is moved into place.
    pub fn write_outputs(
        self,
        filtered: &Path,
        curated: &[(PathBuf, OutputFormat)],
    ) -> medforge_data::Result<(u64, Vec<u64>)> {
        const BATCH: usize = 8192;
        let mut all_w = write::create(filtered, OutputFormat::Parquet)?;
        let mut kept_w =
            curated.iter().map(|(p, f)| write::create(p, *f)).collect::<medforge_data::Result<Vec<_>>>()?;
        let mut dropped = self.dropped;
        dropped.sort_unstable_by_key(|(p, _)| *p);
        let mut dropped = dropped.into_iter().peekable();
        let mut kept = self.kept_pos.into_iter().zip(self.kept).peekable();
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Record>>(2);
            let curated_thread = s.spawn(move || -> medforge_data::Result<Vec<Box<dyn write::RecordWriter>>> {
                for chunk in rx {
                    for w in &mut kept_w {
                        w.write(&chunk)?;
                    }
                }
                Ok(kept_w)
            });
            let mut write_all_rows = || -> medforge_data::Result<()> {
                let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
                let mut is_kept: Vec<bool> = Vec::with_capacity(BATCH);
                let mut pending: Vec<Record> = Vec::with_capacity(2 * BATCH);
                let mut batches = 0usize;
                loop {
                    let next = match (kept.peek(), dropped.peek()) {
                        (Some((a, _)), Some((b, _))) if a < b => kept.next().map(|(_, r)| (r, true)),
                        (Some(_), Some(_)) => dropped.next().map(|(_, r)| (r, false)),
                        (Some(_), None) => kept.next().map(|(_, r)| (r, true)),
                        (None, Some(_)) => dropped.next().map(|(_, r)| (r, false)),
                        (None, None) => None,
                    };
                    let end = next.is_none();
                    if let Some((r, k)) = next {
                        batch.push(r);
                        is_kept.push(k);
                    }
                    if batch.len() == BATCH || end {
                        if !batch.is_empty() {
                            all_w.write(&batch)?;
                        }
                        pending.extend(batch.drain(..).zip(is_kept.drain(..)).filter_map(|(r, k)| k.then_some(r)));
                        while pending.len() >= BATCH || (end && !pending.is_empty()) {
                            let rest = pending.split_off(pending.len().min(BATCH));
                            if tx.send(std::mem::replace(&mut pending, rest)).is_err() {
                                return Ok(()); // the curated writer failed: its error is reported
                            }
                        }
                        batches += 1;
                        if batches.is_multiple_of(8) {
                            // The rows written so far are free; let the writers' growing buffers
                            // take their place rather than add to the peak.
                            release_free_memory();
                        }
                    }
                    if end {
                        return Ok(());
                    }
                }
            };
            let written = write_all_rows();
            drop(tx);
            let kept_w = curated_thread.join().expect("the curated writer thread panicked")?;
            written?;
            let n = all_w.finish()?;
            let counts = kept_w.into_iter().map(|w| w.finish()).collect::<medforge_data::Result<Vec<_>>>()?;
            Ok((n, counts))
        })
    }
}

/// An empty record to leave in a row's place while it is moved elsewhere (no allocation).
fn placeholder() -> Record {
    Record::new(String::new(), String::new(), RecordKind::OpenQa, String::new())
}

/// Run a curation config. With `only`, just the named stage runs (e.g. on a previous `curated.parquet`).
pub fn run(
    cfg: &CurateConfig,
    config_path: &Path,
    only: Option<&str>,
    progress: Progress,
) -> StageResult<CurateOutcome> {
    run_with(cfg, config_path, only, &RunOptions::default(), progress)
}

/// [`run`] with options: LLM mode and cache flags, a row filter.
///
/// When an LLM call stops the run (budget, 401/403, quota), the stages after it do not run, but the
/// outputs are still written: rows the stopped stage did not reach are dropped with
/// `llm.stopped:<code>`, and every answer so far is in the cache for the re-run. In dry-run and
/// export modes no call is made and no curated output is written; the manifest has the estimate.
pub fn run_with(
    cfg: &CurateConfig,
    config_path: &Path,
    only: Option<&str>,
    opts: &RunOptions,
    progress: Progress,
) -> StageResult<CurateOutcome> {
    let llm = match (&cfg.llm, cfg.uses_llm(only)) {
        (Some(section), true) => Some(std::sync::Arc::new(LlmEnv::new(section, &cfg.run.output, &opts.llm)?)),
        _ => None,
    };
    let mut stages = cfg.build_stages_with(only, llm.as_ref())?;
    let run = RunDir::create(&cfg.run.output)?;
    let resolved: Vec<_> = cfg.inputs.iter().map(|i| i.resolve()).collect::<Result<_, _>>()?;
    let config_json = serde_json::json!({
        "config_file": config_path,
        "run": cfg.run,
        "inputs": resolved,
        "stages": cfg.stages,
        "only": only,
        "output": cfg.output,
        "llm": cfg.llm,
    });
    let mut manifest = Manifest::new(&run, cfg.run.seed, config_json);
    manifest.write(&run.path)?;

    // Ingest, hashing the inputs for the manifest on another thread meanwhile (a pass over every
    // input byte that ingest does not need).
    let mut records = Vec::new();
    let (hashes, ingested) = std::thread::scope(|s| {
        let hashing = s.spawn(|| resolved.iter().map(|r| hash_input(&r.path)).collect::<Result<Vec<_>, _>>());
        let ingested = ingest_all(
            &resolved,
            cfg.run.on_error,
            &run.file("rejects.jsonl"),
            &|l, n| progress(l, n, 0),
            &mut |batch| {
                records.extend(batch);
                Ok(())
            },
        );
        (hashing.join().expect("the input hashing thread panicked"), ingested)
    });
    manifest.inputs = hashes?;
    manifest.write(&run.path)?;
    let (steps, total) = ingested?;
    manifest.steps.extend(steps);
    manifest.rejects = total.rejected.clone();
    if let Some(ids) = &opts.only_ids {
        let rows_in = records.len() as u64;
        records.retain(|r| ids.contains(&r.id));
        let rows_out = records.len() as u64;
        manifest.steps.push(StepCount { name: "only_ids".into(), rows_in, rows_out, reasons: BTreeMap::new() });
    }

    // Stages.
    let mut rows = Rows::new(records);
    release_free_memory();
    for stage in stages.iter_mut() {
        let label = stage.name().to_string();
        let ctx = StageContext { seed: cfg.run.seed, run_dir: &run.path, progress: &|d, t| progress(&label, d, t) };
        let (step, reports) = rows.apply(stage.as_mut(), &ctx)?;
        for rep in reports {
            let text = serde_json::to_vec_pretty(&rep.body).map_err(|e| StageError::failed(&label, e))?;
            write_atomic(&run.file(&rep.file_name), &text)?;
        }
        manifest.steps.push(step);
        write_manifest(&manifest, &run.path, llm.as_deref())?;
        release_free_memory();
        if llm.as_ref().is_some_and(|l| l.stopped().is_some()) {
            break; // the later stages would only see unprocessed rows
        }
    }
    if llm.as_ref().is_some_and(|l| l.mode() != LlmMode::Live) {
        manifest.finished_at = Some(now_rfc3339());
        write_manifest(&manifest, &run.path, llm.as_deref())?;
        let (kept, dropped) = (rows.kept.len(), rows.dropped_count());
        return Ok(CurateOutcome { dir: run.path, manifest, kept, dropped, llm });
    }

    // Outputs, written together in one pass that frees each row once written (none is copied).
    let (kept, dropped) = (rows.kept.len(), rows.dropped_count());
    let curated: Vec<(PathBuf, OutputFormat)> =
        cfg.output.formats.iter().map(|f| (run.file(&f.file_name("curated")), *f)).collect();
    let (n, counts) = rows.write_outputs(&run.file("filtered.parquet"), &curated)?;
    manifest.outputs.push(OutputInfo { path: "filtered.parquet".into(), format: "parquet".into(), rows: n });
    for (f, n) in cfg.output.formats.iter().zip(counts) {
        manifest.outputs.push(OutputInfo {
            path: f.file_name("curated").into(),
            format: format!("{f:?}").to_lowercase(),
            rows: n,
        });
    }
    manifest.finished_at = Some(now_rfc3339());
    write_manifest(&manifest, &run.path, llm.as_deref())?;
    run.mark_latest()?;
    Ok(CurateOutcome { dir: run.path, manifest, kept, dropped, llm })
}

/// Hand memory freed by the last step back to the system. glibc's allocator keeps freed blocks in
/// per-thread arenas; after a parallel stage (signatures, n-gram sets, token caches) that is
/// hundreds of MB the next stage, allocating from other arenas or in other sizes, may never reuse,
/// and the process's peak RSS would add every stage's leftovers to the rows themselves.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only returns free memory to the kernel; it takes no pointers.
        unsafe {
            malloc_trim(0);
        }
    }
}
