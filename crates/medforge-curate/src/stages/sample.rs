//! Sampling: s1-style diversity sampling (length threshold, then a target N balanced across domains,
//! favouring long reasoning inside a domain). Seeded by the run's seed.

use medforge_data::Record;
use serde::{Deserialize, Serialize};

use crate::sample::{diversity_sample, record_length, DomainOf, LengthOf, SampleOptions};
use crate::stage::{Decision, Stage, StageContext, StageError, StageOutput, StageResult};

/// `[[stages]] stage = "sample"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SampleConfig {
    pub target: usize,
    /// Drop rows shorter than this first (in the units of `length_score`).
    pub min_tokens: Option<usize>,
    /// Score measuring reasoning length; rows without it fall back to reasoning characters.
    pub length_score: String,
    /// Balance over `specialty` or `division`.
    pub domain: String,
    /// Rank weighting inside a domain: rank i (longest = 0) has weight power_base^-i (s1: 2).
    pub power_base: f64,
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig {
            target: 1000,
            min_tokens: None,
            length_score: "tokens.reasoning".into(),
            domain: "specialty".into(),
            power_base: 2.0,
        }
    }
}

pub struct Sample {
    cfg: SampleConfig,
}

impl Sample {
    pub fn new(cfg: SampleConfig) -> Result<Self, StageError> {
        if !matches!(cfg.domain.as_str(), "specialty" | "division") {
            return Err(StageError::failed(
                "sample",
                format!("domain `{}`: use `specialty` or `division`", cfg.domain),
            ));
        }
        Ok(Sample { cfg })
    }

    fn options(&self, seed: u64) -> SampleOptions {
        SampleOptions {
            target: self.cfg.target,
            min_tokens: self.cfg.min_tokens,
            length_of: LengthOf::Score(self.cfg.length_score.clone()),
            domain_of: if self.cfg.domain == "division" { DomainOf::Division } else { DomainOf::Specialty },
            power_base: self.cfg.power_base,
            seed,
        }
    }
}

impl Stage for Sample {
    fn name(&self) -> &str {
        "sample"
    }

    fn run(&mut self, rows: &mut [Record], ctx: &StageContext) -> StageResult<StageOutput> {
        let opts = self.options(ctx.seed);
        let sel = diversity_sample(rows, &opts)?;
        let mut chosen = vec![false; rows.len()];
        for &i in &sel.indices {
            chosen[i] = true;
        }
        let decisions = rows
            .iter()
            .zip(&chosen)
            .map(|(r, &c)| {
                let (len, _) = record_length(r, &opts.length_of);
                let d = if c {
                    Decision::keep()
                } else if opts.min_tokens.is_some_and(|m| len < m as f64) {
                    Decision::drop("sample.below_min_tokens")
                } else {
                    Decision::drop("sample.not_selected")
                };
                d.with_score("sample.length", len)
            })
            .collect();
        (ctx.progress)(rows.len() as u64, rows.len() as u64);
        Ok(StageOutput::new(decisions)
            .with_report("sample_report.json", serde_json::to_value(&sel).unwrap_or_default()))
    }
}
