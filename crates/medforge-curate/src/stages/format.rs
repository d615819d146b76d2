//! Format: render kept rows into the training set under `formatted/` with a chat template, reasoning markers and
//! the four training types (plus DPO triples). Each row goes to the file of its record's split
//! (`metadata.split` from the `split` stage; `train` when the run has none), so holdout, eval and pool rows never
//! reach `formatted/train*`. Files: see [`medforge_data::formatted`]. Rows that cannot be formatted are dropped
//! with `format.skipped:<why>`.

use std::collections::BTreeMap;

use medforge_data::formatted::{write_set, FormattedRow, DEFAULT_SPLIT, SPLITS};
use medforge_data::Record;

use crate::format::{FormatConfig, Formatter};
use crate::stage::{Decision, Stage, StageContext, StageError, StageOutput, StageResult};

pub struct Format {
    formatter: Formatter,
}

impl Format {
    pub fn new(cfg: FormatConfig) -> Result<Self, StageError> {
        let formatter = Formatter::new(&cfg).map_err(|e| StageError::failed("format", e))?;
        Ok(Format { formatter })
    }
}

/// The split a record was assigned, or `train` when no `split` stage ran.
fn split_of(r: &Record) -> Result<&str, StageError> {
    match r.metadata.get("split") {
        None => Ok(DEFAULT_SPLIT),
        Some(serde_json::Value::String(s)) if SPLITS.iter().any(|(name, _, _)| name == s) => Ok(s),
        Some(other) => Err(StageError::failed(
            "format",
            format!("record {}: metadata.split is {other}, not one of holdout, train, eval, pool", r.id),
        )),
    }
}

impl Stage for Format {
    fn name(&self) -> &str {
        "format"
    }

    fn run(&mut self, rows: &mut [Record], ctx: &StageContext) -> StageResult<StageOutput> {
        use rayon::prelude::*;
        let results: Vec<_> = rows.par_iter().map(|r| self.formatter.format_or_skip(r)).collect();
        let mut by_split: BTreeMap<String, Vec<FormattedRow>> = BTreeMap::new();
        let mut types = BTreeMap::<String, BTreeMap<&str, u64>>::new();
        let mut decisions = Vec::with_capacity(rows.len());
        for (record, res) in rows.iter().zip(results) {
            match res.map_err(|e| StageError::failed("format", e))? {
                Ok(out) => {
                    let split = split_of(record)?;
                    decisions.push(Decision::keep().with_score("format.rows", out.len() as f64));
                    let counts = types.entry(split.to_string()).or_default();
                    for f in &out {
                        *counts.entry(f.training_type.as_str()).or_default() += 1;
                    }
                    by_split.entry(split.to_string()).or_default().extend(out);
                }
                Err(why) => decisions.push(Decision::drop(format!("format.skipped:{why}"))),
            }
        }
        let summary = write_set(&ctx.path("formatted"), &by_split, self.formatter.spec())?;
        (ctx.progress)(rows.len() as u64, rows.len() as u64);
        let report = serde_json::json!({
            "rows": summary.rows,
            "types": types,
            "template": self.formatter.spec().template,
            "jsonl": summary.jsonl,
            "hf": summary.hf,
        });
        Ok(StageOutput::new(decisions).with_report("format_report.json", report))
    }
}
