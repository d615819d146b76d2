//! Token lengths with an HF `tokenizer.json` (the `tokenizers` crate), per field, with optional bounds
//! (e.g. reasoning ≥ 1000 tokens, as in med-s1k). Scores `tokens.<field>` on every row.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use medforge_data::Record;
use medforge_text::tokens::TokenCounter;
use serde::{Deserialize, Serialize};

use super::fields::{check_fields, text_of};
use crate::config::rebase_path;
use crate::stage::{Decision, Stage, StageContext, StageError, StageOutput, StageResult};

/// `[[stages]] stage = "tokens"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokensConfig {
    /// A Hugging Face `tokenizer.json`.
    pub tokenizer: PathBuf,
    pub fields: Vec<String>,
    /// Drop rows with fewer tokens than this in a field (a missing field counts as 0).
    pub min: BTreeMap<String, usize>,
    pub max: BTreeMap<String, usize>,
}

impl Default for TokensConfig {
    fn default() -> Self {
        TokensConfig {
            tokenizer: PathBuf::from("tokenizer.json"),
            fields: ["question", "answer", "reasoning"].map(String::from).to_vec(),
            min: BTreeMap::new(),
            max: BTreeMap::new(),
        }
    }
}

impl TokensConfig {
    pub(crate) fn rebase(&mut self, base: &Path) {
        rebase_path(&mut self.tokenizer, base);
    }
}

pub struct Tokens {
    cfg: TokensConfig,
    counter: TokenCounter,
}

impl Tokens {
    pub fn new(cfg: TokensConfig) -> Result<Self, StageError> {
        check_fields("tokens", &cfg.fields)?;
        for f in cfg.min.keys().chain(cfg.max.keys()) {
            if !cfg.fields.contains(f) {
                return Err(StageError::failed("tokens", format!("bound on `{f}`, which is not in `fields`")));
            }
        }
        let counter = TokenCounter::from_file(&cfg.tokenizer).map_err(|e| StageError::failed("tokens", e))?;
        Ok(Tokens { cfg, counter })
    }
}

fn summary(mut v: Vec<usize>) -> serde_json::Value {
    if v.is_empty() {
        return serde_json::json!({"rows": 0});
    }
    v.sort_unstable();
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let mean = v.iter().sum::<usize>() as f64 / v.len() as f64;
    serde_json::json!({"rows": v.len(), "mean": mean, "p50": q(0.5), "p90": q(0.9), "max": v[v.len() - 1], "total": v.iter().sum::<usize>()})
}

impl Stage for Tokens {
    fn name(&self) -> &str {
        "tokens"
    }

    fn run(&mut self, rows: &mut [Record], ctx: &StageContext) -> StageResult<StageOutput> {
        let n = rows.len();
        // Counts per field, batched so the tokenizer runs in parallel.
        let mut counts: BTreeMap<&str, Vec<Option<usize>>> = BTreeMap::new();
        for (k, f) in self.cfg.fields.iter().enumerate() {
            let texts: Vec<Option<String>> = rows.iter().map(|r| text_of(r, f)).collect();
            let present: Vec<&str> = texts.iter().flatten().map(String::as_str).collect();
            let c = self.counter.count_batch(&present).map_err(|e| StageError::failed("tokens", e))?;
            let mut it = c.into_iter();
            counts.insert(f, texts.iter().map(|t| t.as_ref().and_then(|_| it.next())).collect());
            (ctx.progress)(((k + 1) * n / self.cfg.fields.len()) as u64, n as u64);
        }
        let mut decisions = Vec::with_capacity(n);
        let mut per_source: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            let mut d = Decision::keep();
            for f in &self.cfg.fields {
                let c = counts[f.as_str()][i];
                if let Some(c) = c {
                    d = d.with_score(format!("tokens.{f}"), c as f64);
                    per_source.entry((r.source.clone(), f.clone())).or_default().push(c);
                }
                let c = c.unwrap_or(0);
                if d.keep {
                    if self.cfg.min.get(f).is_some_and(|&m| c < m) {
                        d.keep = false;
                        d.reason = Some(format!("tokens.too_short:{f}"));
                    } else if self.cfg.max.get(f).is_some_and(|&m| c > m) {
                        d.keep = false;
                        d.reason = Some(format!("tokens.too_long:{f}"));
                    }
                }
            }
            decisions.push(d);
        }
        let mut by_source = serde_json::Map::new();
        for ((src, f), v) in per_source {
            let e = by_source.entry(src).or_insert_with(|| serde_json::json!({}));
            e[f.as_str()] = summary(v);
        }
        let report = serde_json::json!({
            "tokenizer": self.cfg.tokenizer,
            "vocab_size": self.counter.vocab_size(),
            "by_source": by_source,
            "dropped": decisions.iter().filter(|d| !d.keep).count(),
        });
        Ok(StageOutput::new(decisions).with_report("tokens_report.json", report))
    }
}
