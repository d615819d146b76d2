//! Labels: validate and auto-fix specialty/division labels against a taxonomy (remove invalid ids, map
//! numbers and names to ids, primary = first valid, empty → `UNKNOWN`), and report the distribution.

use std::path::{Path, PathBuf};

use medforge_data::Record;
use serde::{Deserialize, Serialize};

use crate::config::rebase_path;
use crate::stage::{Decision, Stage, StageContext, StageError, StageOutput, StageResult};
use crate::taxonomy::{distribution, fix_labels, Taxonomy};

/// Which label pair of the record is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelField {
    #[default]
    Division,
    Specialty,
}

/// `[[stages]] stage = "labels"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsConfig {
    /// Taxonomy tree (`med_division.json` layout) or flat list (JSON or one name per line).
    pub taxonomy: PathBuf,
    #[serde(default)]
    pub field: LabelField,
    /// Taxonomy level the distribution is reported at (1 = top-level divisions).
    #[serde(default = "one")]
    pub report_level: usize,
}

fn one() -> usize {
    1
}

impl LabelsConfig {
    pub(crate) fn rebase(&mut self, base: &Path) {
        rebase_path(&mut self.taxonomy, base);
    }
}

pub struct Labels {
    cfg: LabelsConfig,
    tax: Taxonomy,
}

impl Labels {
    pub fn new(cfg: LabelsConfig) -> Result<Self, StageError> {
        let tax = Taxonomy::load(&cfg.taxonomy)?;
        Ok(Labels { cfg, tax })
    }
}

impl Stage for Labels {
    fn name(&self) -> &str {
        "labels"
    }

    fn run(&mut self, rows: &mut [Record], ctx: &StageContext) -> StageResult<StageOutput> {
        let (mut unknown, mut removed, mut mapped) = (0usize, 0usize, 0usize);
        let mut decisions = Vec::with_capacity(rows.len());
        for r in rows.iter_mut() {
            let (primary, list) = match self.cfg.field {
                LabelField::Division => (&mut r.division, &mut r.divisions),
                LabelField::Specialty => (&mut r.specialty, &mut r.specialties),
            };
            let mut raw: Vec<String> = primary.iter().cloned().collect();
            raw.extend(list.iter().filter(|l| Some(*l) != primary.as_ref()).cloned());
            let fix = fix_labels(&self.tax, &raw);
            unknown += fix.unknown as usize;
            removed += fix.removed.len();
            mapped += fix.mapped.len();
            *primary = Some(fix.primary.clone());
            *list = fix.labels.clone();
            decisions.push(
                Decision::keep()
                    .with_score("labels.unknown", f64::from(u8::from(fix.unknown)))
                    .with_score("labels.removed", fix.removed.len() as f64),
            );
        }
        (ctx.progress)(rows.len() as u64, rows.len() as u64);
        let report = serde_json::json!({
            "taxonomy": self.cfg.taxonomy,
            "field": self.cfg.field,
            "rows": rows.len(),
            "unknown": unknown,
            "unknown_rate": if rows.is_empty() { 0.0 } else { unknown as f64 / rows.len() as f64 },
            "labels_removed": removed,
            "labels_mapped": mapped,
            "distribution": distribution(rows, &self.tax, self.cfg.report_level),
        });
        Ok(StageOutput::new(decisions).with_report("labels_report.json", report))
    }
}
