//! Format: render kept rows into the training set under `formatted/` (JSONL + HF folder + format.json)
//! with a chat template, reasoning markers and the four training types (plus DPO triples).
//! Rows that cannot be formatted are dropped with `format.skipped:<why>`.

use medforge_data::Record;

use crate::format::{write_formatted, FormatConfig, Formatter};
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

impl Stage for Format {
    fn name(&self) -> &str {
        "format"
    }

    fn run(&mut self, rows: &mut [Record], ctx: &StageContext) -> StageResult<StageOutput> {
        use rayon::prelude::*;
        let results: Vec<_> = rows.par_iter().map(|r| self.formatter.format_or_skip(r)).collect();
        let mut formatted = Vec::new();
        let mut decisions = Vec::with_capacity(rows.len());
        for res in results {
            match res.map_err(|e| StageError::failed("format", e))? {
                Ok(out) => {
                    decisions.push(Decision::keep().with_score("format.rows", out.len() as f64));
                    formatted.extend(out);
                }
                Err(why) => decisions.push(Decision::drop(format!("format.skipped:{why}"))),
            }
        }
        let summary = write_formatted(&ctx.path("formatted"), &formatted, self.formatter.spec())
            .map_err(|e| StageError::failed("format", e))?;
        (ctx.progress)(rows.len() as u64, rows.len() as u64);
        let mut types = std::collections::BTreeMap::<&str, u64>::new();
        for f in &formatted {
            *types.entry(f.training_type.as_str()).or_default() += 1;
        }
        let report = serde_json::json!({
            "rows": summary.rows,
            "types": types,
            "template": self.formatter.spec().template,
            "jsonl": summary.jsonl,
            "hf": summary.hf_dir,
        });
        Ok(StageOutput::new(decisions).with_report("format_report.json", report))
    }
}
