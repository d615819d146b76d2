//! The pipeline runner: ingest the inputs, run the configured stages in order, and write
//! `filtered.parquet` (every row, with its annotations), `curated.parquet` (the kept rows), reports and the
//! manifest into a fresh run folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use medforge_data::manifest::{hash_input, now_rfc3339, Manifest, OutputInfo, RunDir, StepCount};
use medforge_data::pipeline::ingest_all;
use medforge_data::write::{self, write_atomic, OutputFormat};
use medforge_data::{Annotation, Record, Verdict};

use crate::config::CurateConfig;
use crate::stage::{Stage, StageContext, StageError, StageResult};

/// Progress callback: (label, done, total); total is 0 when unknown.
pub type Progress<'a> = &'a (dyn Fn(&str, u64, u64) + Sync);

/// The result of a curation run.
#[derive(Debug, Clone)]
pub struct CurateOutcome {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub kept: usize,
    pub dropped: usize,
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
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        let kept = std::mem::take(&mut self.kept);
        let pos = std::mem::take(&mut self.kept_pos);
        for ((mut r, p), d) in kept.into_iter().zip(pos).zip(out.decisions) {
            if !d.keep && d.reason.is_none() {
                return Err(StageError::failed(&name, format!("dropped row `{}` without a reason code", r.id)));
            }
            let verdict = if d.keep { Verdict::Kept } else { Verdict::Dropped };
            r.annotations.push(Annotation { stage: name.clone(), verdict, reason: d.reason.clone(), scores: d.scores });
            if d.keep {
                self.kept.push(r);
                self.kept_pos.push(p);
            } else {
                // Count by the code's family (`dedup.near`), not by each cluster or item.
                let reason = d.reason.unwrap_or_default();
                let family = reason.split(':').next().unwrap_or(&reason).to_string();
                *reasons.entry(family).or_default() += 1;
                self.dropped.push((p, r));
            }
        }
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
}

/// Run a curation config. With `only`, just the named stage runs (e.g. on a previous `curated.parquet`).
pub fn run(
    cfg: &CurateConfig,
    config_path: &Path,
    only: Option<&str>,
    progress: Progress,
) -> StageResult<CurateOutcome> {
    let mut stages = cfg.build_stages(only)?;
    let run = RunDir::create(&cfg.run.output)?;
    let resolved: Vec<_> = cfg.inputs.iter().map(|i| i.resolve()).collect::<Result<_, _>>()?;
    let config_json = serde_json::json!({
        "config_file": config_path,
        "run": cfg.run,
        "inputs": resolved,
        "stages": cfg.stages,
        "only": only,
        "output": cfg.output,
    });
    let mut manifest = Manifest::new(&run, cfg.run.seed, config_json);
    for r in &resolved {
        manifest.inputs.push(hash_input(&r.path)?);
    }
    manifest.write(&run.path)?;

    // Ingest.
    let mut records = Vec::new();
    let (steps, total) =
        ingest_all(&resolved, cfg.run.on_error, &run.file("rejects.jsonl"), &|l, n| progress(l, n, 0), &mut |batch| {
            records.extend(batch);
            Ok(())
        })?;
    manifest.steps.extend(steps);
    manifest.rejects = total.rejected.clone();

    // Stages.
    let mut rows = Rows::new(records);
    for stage in stages.iter_mut() {
        let label = stage.name().to_string();
        let ctx = StageContext { seed: cfg.run.seed, run_dir: &run.path, progress: &|d, t| progress(&label, d, t) };
        let (step, reports) = rows.apply(stage.as_mut(), &ctx)?;
        for rep in reports {
            let text = serde_json::to_vec_pretty(&rep.body).map_err(|e| StageError::failed(&label, e))?;
            write_atomic(&run.file(&rep.file_name), &text)?;
        }
        manifest.steps.push(step);
        manifest.write(&run.path)?;
    }

    // Outputs.
    let all: Vec<Record> = rows.all_in_order().into_iter().cloned().collect();
    let n = write::write_all(&run.file("filtered.parquet"), OutputFormat::Parquet, &all)?;
    manifest.outputs.push(OutputInfo { path: "filtered.parquet".into(), format: "parquet".into(), rows: n });
    for f in &cfg.output.formats {
        let name = f.file_name("curated");
        let n = write::write_all(&run.file(&name), *f, &rows.kept)?;
        manifest.outputs.push(OutputInfo { path: name.into(), format: format!("{f:?}").to_lowercase(), rows: n });
    }
    manifest.finished_at = Some(now_rfc3339());
    manifest.write(&run.path)?;
    Ok(CurateOutcome { dir: run.path, manifest, kept: rows.kept.len(), dropped: rows.dropped_count() })
}
