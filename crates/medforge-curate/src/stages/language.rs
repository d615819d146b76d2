//! Language checks: Hangul character ratio and medical-term coverage, per row (scores) and per
//! dataset (`language_report.json`), as in the Korean proficiency check.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use medforge_data::Record;
use medforge_text::lang::{LangStats, TermList};
use medforge_text::shingle::hangul_ratio;
use serde::{Deserialize, Serialize};

use super::fields::{check_fields, joined};
use crate::config::rebase_path;
use crate::stage::{Decision, Stage, StageContext, StageError, StageOutput, StageResult};

/// `[[stages]] stage = "language"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LanguageConfig {
    pub fields: Vec<String>,
    /// Medical terms, one per line (`#` comments).
    pub terms: Option<PathBuf>,
    /// Drop rows whose `language` is `ko` but whose Hangul ratio is below this.
    pub min_hangul_ratio: Option<f64>,
    /// Drop rows with fewer medical terms than this.
    pub min_terms: Option<usize>,
}

impl Default for LanguageConfig {
    fn default() -> Self {
        LanguageConfig {
            fields: ["question", "answer", "reasoning"].map(String::from).to_vec(),
            terms: None,
            min_hangul_ratio: None,
            min_terms: None,
        }
    }
}

impl LanguageConfig {
    pub(crate) fn rebase(&mut self, base: &Path) {
        if let Some(t) = &mut self.terms {
            rebase_path(t, base);
        }
    }
}

pub struct Language {
    cfg: LanguageConfig,
    terms: Option<TermList>,
}

impl Language {
    pub fn new(cfg: LanguageConfig) -> Result<Self, StageError> {
        check_fields("language", &cfg.fields)?;
        let terms = match &cfg.terms {
            Some(p) => Some(TermList::from_file(p).map_err(|e| StageError::failed("language", e))?),
            None if cfg.min_terms.is_some() => {
                return Err(StageError::failed("language", "`min_terms` needs a `terms` file"));
            }
            None => None,
        };
        Ok(Language { cfg, terms })
    }
}

impl Stage for Language {
    fn name(&self) -> &str {
        "language"
    }

    fn run(&mut self, rows: &mut [Record], ctx: &StageContext) -> StageResult<StageOutput> {
        use rayon::prelude::*;
        let texts: Vec<String> = rows.par_iter().map(|r| joined(r, &self.cfg.fields)).collect();
        let decisions: Vec<Decision> = rows
            .par_iter()
            .zip(texts.par_iter())
            .map(|(r, t)| {
                let ratio = hangul_ratio(t);
                let mut d = Decision::keep().with_score("lang.hangul_ratio", ratio);
                if let Some(terms) = &self.terms {
                    let c = terms.coverage(t);
                    d = d
                        .with_score("lang.terms", c.distinct_terms.len() as f64)
                        .with_score("lang.term_ratio", c.ratio);
                    if self.cfg.min_terms.is_some_and(|m| c.distinct_terms.len() < m) {
                        d.keep = false;
                        d.reason = Some("lang.few_terms".into());
                    }
                }
                let korean_row = r.language.as_deref() == Some("ko");
                if d.keep && korean_row && self.cfg.min_hangul_ratio.is_some_and(|m| ratio < m) {
                    d.keep = false;
                    d.reason = Some("lang.low_hangul".into());
                }
                d
            })
            .collect();
        (ctx.progress)(rows.len() as u64, rows.len() as u64);
        let mut by_source: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (r, t) in rows.iter().zip(&texts) {
            by_source.entry(r.source.as_str()).or_default().push(t);
        }
        let report: serde_json::Map<String, serde_json::Value> = by_source
            .into_iter()
            .map(|(s, ts)| {
                (s.to_string(), serde_json::to_value(LangStats::compute(&ts, self.terms.as_ref())).unwrap_or_default())
            })
            .collect();
        Ok(StageOutput::new(decisions).with_report("language_report.json", serde_json::Value::Object(report)))
    }
}
