//! Splits (the Meerkat progressive pipeline's workflow): holdout N per specialty, a train fraction, an eval fraction of
//! train, the rest to a pool. Rows are not dropped; each gets `metadata.split`, and the split files,
//! `dataset_stats.json` and `split_plan.json` go to `splits/` in the run folder.

use medforge_data::Record;
use serde::{Deserialize, Serialize};

use crate::split::{plan_splits, write_splits, SplitOptions};
use crate::stage::{Decision, Stage, StageContext, StageOutput, StageResult};

/// `[[stages]] stage = "split"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitConfig {
    pub holdout_per_specialty: usize,
    pub train_fraction: f64,
    pub eval_fraction: f64,
    pub specialty_fractions: std::collections::BTreeMap<String, f64>,
}

impl Default for SplitConfig {
    fn default() -> Self {
        let d = SplitOptions::default();
        SplitConfig {
            holdout_per_specialty: d.holdout_per_specialty,
            train_fraction: d.train_fraction,
            eval_fraction: d.eval_fraction,
            specialty_fractions: d.specialty_fractions,
        }
    }
}

pub struct Split {
    cfg: SplitConfig,
}

impl Split {
    pub fn new(cfg: SplitConfig) -> Self {
        Split { cfg }
    }
}

impl Stage for Split {
    fn name(&self) -> &str {
        "split"
    }

    fn run(&mut self, rows: &mut [Record], ctx: &StageContext) -> StageResult<StageOutput> {
        let opts = SplitOptions {
            holdout_per_specialty: self.cfg.holdout_per_specialty,
            train_fraction: self.cfg.train_fraction,
            eval_fraction: self.cfg.eval_fraction,
            seed: ctx.seed,
            specialty_fractions: self.cfg.specialty_fractions.clone(),
        };
        let plan = plan_splits(rows, &opts)?;
        let mut which = std::collections::HashMap::new();
        for (name, ids) in
            [("holdout", &plan.holdout), ("train", &plan.train), ("eval", &plan.eval), ("pool", &plan.pool)]
        {
            for id in ids {
                which.insert(id.clone(), name);
            }
        }
        for r in rows.iter_mut() {
            if let Some(s) = which.get(&r.id) {
                r.metadata.insert("split".into(), serde_json::Value::String(s.to_string()));
            }
        }
        let stats = write_splits(&ctx.path("splits"), &plan, rows)?;
        (ctx.progress)(rows.len() as u64, rows.len() as u64);
        Ok(StageOutput::new(vec![Decision::keep(); rows.len()])
            .with_report("split_report.json", serde_json::to_value(&stats).unwrap_or_default()))
    }
}
