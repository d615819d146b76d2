//! Open-ended generation evaluation, the Meerkat progressive pipeline's core step: a model answers held-out
//! questions, every answer is scored against its reference with every text metric (nltk BLEU-1..4, ROUGE-1/2/L,
//! METEOR, BERTScore, exact match, token F1, and on request the MedGemma Korean type-4 score and hierarchy
//! compliance), and the figures are summarised per specialty with bootstrap CIs.
//!
//! A run folder holds one or two *roles* (`base`, `finetuned`): `{role}_model_results.csv` (the Meerkat
//! pipeline's names), `{role}_results.jsonl` and `{role}_summary.json` (read back by [`load_gen_runs`]).
//! [`write_gen_report`] then writes the comparison over any set of runs: `model_comparison.csv`,
//! `specialty_performance.csv`, `specialty_analysis.png`, `model_comparison.png`,
//! `training_recommendations.json` and `report.html`.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use medforge_data::recommendations::{LowPerformingSpecialty, Recommendations};
use medforge_data::Record;
use medforge_llm::backend::{Backend, GenParams, Message};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::charts::{self, Bar};
use crate::error::{EvalError, Result};
use crate::metrics::meteor::Meteor;
use crate::metrics::nltk_bleu::{nltk_bleu, Smoothing};
use crate::metrics::rouge::{rouge, RougeConfig};
use crate::metrics::squad::squad_scores;
use crate::report::{base64, chart_atomic, esc, f, round6, safe_name, write_csv, write_json};
use crate::score::BertScoreOptions;
use crate::scores::{hierarchy, type4_score};
use crate::stats::{mean_ci, paired_mean_delta_ci, MeanCi, BOOTSTRAP_SAMPLES};

/// The group of items without a specialty.
pub const UNKNOWN: &str = "UNKNOWN";

/// One question with a reference answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenItem {
    pub id: String,
    pub question: String,
    #[serde(default)]
    pub context: Option<String>,
    pub reference: String,
    pub specialty: String,
    /// Key terms for the type-4 score (from the record's `metadata.key_terms`, or a file).
    #[serde(default)]
    pub key_terms: Vec<String>,
}

/// Items read from a dataset, with what could not be used counted.
#[derive(Debug, Clone, Default)]
pub struct OpenItems {
    pub items: Vec<OpenItem>,
    /// Records with no reference answer (skipped).
    pub no_reference: usize,
    /// Items with no specialty (grouped as `UNKNOWN`).
    pub unknown_specialty: usize,
}

/// Which record field holds the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReferenceField {
    /// `answer` for open questions; `response` (PubMedQA's long answer) for multiple-choice rows.
    #[default]
    Auto,
    Answer,
    Response,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The group an item is reported under: the record's specialty, division, or `metadata.specialty` / `subject` /
/// `category` (MedQuAD's question-type group); `None` when there is none.
pub fn group_of(r: &Record, field: Option<&str>) -> Option<String> {
    if let Some(f) = field {
        return match f {
            "specialty" => non_empty(&r.specialty).map(str::to_string),
            "division" => non_empty(&r.division).map(str::to_string),
            key => r
                .metadata
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        };
    }
    non_empty(&r.specialty).or_else(|| non_empty(&r.division)).map(str::to_string).or_else(|| {
        ["specialty", "subject", "category"].iter().find_map(|k| {
            r.metadata.get(*k).and_then(|v| v.as_str()).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
        })
    })
}

/// Items of the records that have a reference answer. `group_field`: the record field or metadata key to group
/// by (default: see [`group_of`]).
pub fn open_items_from_records(records: &[Record], field: ReferenceField, group_field: Option<&str>) -> OpenItems {
    let mut out = OpenItems::default();
    for r in records {
        let reference = match field {
            ReferenceField::Answer => non_empty(&r.answer),
            ReferenceField::Response => non_empty(&r.response),
            ReferenceField::Auto if r.options.is_empty() => non_empty(&r.answer).or_else(|| non_empty(&r.response)),
            ReferenceField::Auto => non_empty(&r.response),
        };
        let Some(reference) = reference else {
            out.no_reference += 1;
            continue;
        };
        let specialty = group_of(r, group_field).unwrap_or_else(|| {
            out.unknown_specialty += 1;
            UNKNOWN.to_string()
        });
        let key_terms = match r.metadata.get("key_terms") {
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            Some(serde_json::Value::String(s)) => {
                s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect()
            }
            _ => Vec::new(),
        };
        out.items.push(OpenItem {
            id: r.id.clone(),
            question: r.question.clone(),
            context: r.context.clone(),
            reference: reference.to_string(),
            specialty,
            key_terms,
        });
    }
    out
}

/// Read a dataset (a medforge JSONL such as `splits/holdout.jsonl`, or any file a data preset reads: MedQuAD,
/// specialty JSON, PubMedQA) and take its items with references. `limit`: the first N items.
pub fn load_open_items(
    path: &Path,
    preset: Option<&str>,
    field: ReferenceField,
    group_field: Option<&str>,
    limit: Option<usize>,
) -> Result<OpenItems> {
    let preset = match preset {
        Some(p) => p.to_string(),
        None => medforge_data::preset::detect(path).map(|p| p.name.clone()).ok_or_else(|| {
            EvalError::Config(format!(
                "{}: no data preset reads this file; name one with --preset (`medforge presets` lists them)",
                path.display()
            ))
        })?,
    };
    let records = crate::runner::read_records(&medforge_data::config::InputConfig::for_path(path, Some(&preset)))?;
    let mut items = open_items_from_records(&records, field, group_field);
    if let Some(n) = limit {
        items.items.truncate(n);
        items.unknown_specialty = items.items.iter().filter(|i| i.specialty == UNKNOWN).count();
    }
    if items.items.is_empty() {
        return Err(EvalError::Config(format!(
            "{}: no items with a reference answer ({} records without one); for PubMedQA the long answer is the \
             reference (--reference response)",
            path.display(),
            items.no_reference
        )));
    }
    Ok(items)
}

/// Key terms for the type-4 score from a file: a `.json` object `{id: [terms]}` (per item), or a term file (one
/// per line, `#` comments, as `--terms` reads it) for every item. Items keep the terms they already have.
pub fn attach_key_terms(items: &mut [OpenItem], path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    if path.extension().is_some_and(|e| e == "json") {
        let m: BTreeMap<String, Vec<String>> = serde_json::from_str(&text).map_err(|e| EvalError::json(path, e))?;
        for it in items.iter_mut().filter(|i| i.key_terms.is_empty()) {
            if let Some(t) = m.get(&it.id) {
                it.key_terms = t.clone();
            }
        }
    } else {
        let terms = medforge_text::lang::TermList::parse(&text).terms().to_vec();
        for it in items.iter_mut().filter(|i| i.key_terms.is_empty()) {
            it.key_terms = terms.clone();
        }
    }
    Ok(())
}

/// The plain prompt: context, then the question (what the Meerkat pipeline sends).
pub fn open_prompt(item: &OpenItem) -> Vec<Message> {
    let mut s = String::new();
    if let Some(c) = non_empty(&item.context) {
        s.push_str(c);
        s.push_str("\n\n");
    }
    s.push_str(item.question.trim());
    vec![Message::user(s)]
}

/// One generated answer and its scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenItem {
    pub id: String,
    pub specialty: String,
    pub question: String,
    pub reference: String,
    pub prediction: String,
    /// Why no answer came back (the item is scored as an empty answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub metrics: BTreeMap<String, f64>,
}

/// Generate an answer per item (`prompts[i]` for `items[i]`, up to `concurrency` in flight). Failed calls keep
/// their error and an empty prediction.
pub async fn generate_answers(
    backend: Arc<dyn Backend>,
    items: &[OpenItem],
    prompts: Vec<Vec<Message>>,
    params: GenParams,
    concurrency: usize,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Vec<GenItem> {
    let answers = crate::runner::ask_all(backend, prompts, params, concurrency, progress).await;
    items
        .iter()
        .zip(answers)
        .map(|(it, r)| {
            let (prediction, error) = match r {
                Ok(resp) => (resp.text, None),
                Err(e) => (String::new(), Some(e.to_string())),
            };
            GenItem {
                id: it.id.clone(),
                specialty: it.specialty.clone(),
                question: it.question.clone(),
                reference: it.reference.clone(),
                prediction,
                error,
                metrics: BTreeMap::new(),
            }
        })
        .collect()
}

/// Which metrics to compute and how.
#[derive(Debug, Clone)]
pub struct TextMetrics {
    /// nltk BLEU smoothing (the Meerkat pipeline's scripts use method1).
    pub smoothing: Smoothing,
    /// Lowercase before BLEU's `str.split()` tokenisation.
    pub lowercase: bool,
    pub rouge: RougeConfig,
    pub wordnet: Option<PathBuf>,
    /// BERTScore encoder; without it the BERTScore columns are left out (and said so).
    pub bertscore: Option<BertScoreOptions>,
    /// The MedGemma Korean type-4 score (key terms from the items).
    pub type4: bool,
    /// Hierarchy compliance (the rewrite validator's parser: depth >= 3, <= 5 items per parent).
    pub hierarchy: bool,
}

impl Default for TextMetrics {
    fn default() -> Self {
        TextMetrics {
            smoothing: Smoothing::Method1,
            lowercase: true,
            rouge: RougeConfig { stemmer: true, ..Default::default() },
            wordnet: None,
            bertscore: None,
            type4: false,
            hierarchy: false,
        }
    }
}

/// Metric columns in report order.
pub const METRIC_ORDER: [&str; 17] = [
    "bleu1",
    "bleu2",
    "bleu3",
    "bleu4",
    "rouge1",
    "rouge2",
    "rougeL",
    "meteor",
    "bertscore_precision",
    "bertscore_recall",
    "bertscore_f1",
    "exact_match",
    "token_f1",
    "type4",
    "hierarchy",
    "hierarchy_compliant",
    "answer_chars",
];

/// Score every item against its reference; `key_terms[i]` for the type-4 score. Returns whether WordNet was found
/// for METEOR.
pub fn score_items(items: &mut [GenItem], key_terms: &[Vec<String>], cfg: &TextMetrics) -> Result<bool> {
    use rayon::prelude::*;
    let meteor = Meteor::find(cfg.wordnet.as_deref());
    items.par_iter_mut().enumerate().for_each(|(i, it)| {
        let (r, h) = (it.reference.as_str(), it.prediction.as_str());
        let b = nltk_bleu(r, h, cfg.smoothing, cfg.lowercase);
        let rg = rouge(&cfg.rouge, r, h);
        let sq = squad_scores(h, r);
        let m = &mut it.metrics;
        m.insert("bleu1".into(), b.bleu1);
        m.insert("bleu2".into(), b.bleu2);
        m.insert("bleu3".into(), b.bleu3);
        m.insert("bleu4".into(), b.bleu4);
        m.insert("rouge1".into(), rg.rouge1.fmeasure);
        m.insert("rouge2".into(), rg.rouge2.fmeasure);
        m.insert("rougeL".into(), rg.rouge_l.fmeasure);
        m.insert("meteor".into(), meteor.score(&[r], h));
        m.insert("exact_match".into(), sq.exact_match);
        m.insert("token_f1".into(), sq.f1);
        m.insert("answer_chars".into(), h.chars().count() as f64);
        if cfg.type4 {
            m.insert("type4".into(), type4_score(h, r, key_terms.get(i).map_or(&[][..], Vec::as_slice)));
        }
        if cfg.hierarchy {
            let c = hierarchy(h);
            m.insert("hierarchy".into(), c.score);
            m.insert("hierarchy_compliant".into(), c.compliant as u8 as f64);
        }
    });
    if let Some(b) = &cfg.bertscore {
        let refs: Vec<&str> = items.iter().map(|i| i.reference.as_str()).collect();
        let hyps: Vec<&str> = items.iter().map(|i| i.prediction.as_str()).collect();
        let (v, _) = b.score(&refs, &hyps)?;
        for (it, s) in items.iter_mut().zip(v) {
            it.metrics.insert("bertscore_precision".into(), s.p);
            it.metrics.insert("bertscore_recall".into(), s.r);
            it.metrics.insert("bertscore_f1".into(), s.f);
        }
    }
    Ok(meteor.wordnet.is_some())
}

/// Generation settings as recorded in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenSettings {
    pub max_tokens: u32,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub seed: Option<u64>,
}

/// The headline figures of one role's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenSummary {
    /// Always `generate` (tells these folders from MCQ runs).
    pub task: String,
    pub model: String,
    /// `base` or `finetuned`.
    pub role: String,
    pub dataset: String,
    pub created: String,
    pub seed: u64,
    pub n: usize,
    pub errors: usize,
    pub unknown_specialty: usize,
    pub generation: GenSettings,
    pub meteor_wordnet: bool,
    pub bertscore_model: Option<String>,
    pub metrics: BTreeMap<String, MeanCi>,
    pub per_specialty: BTreeMap<String, BTreeMap<String, MeanCi>>,
    /// Seconds spent generating and scoring.
    pub generate_s: f64,
    pub score_s: f64,
    pub medforge_version: String,
}

/// A role's run: summary and items.
#[derive(Debug, Clone, PartialEq)]
pub struct GenRun {
    pub summary: GenSummary,
    pub items: Vec<GenItem>,
}

fn metric_names(items: &[GenItem]) -> Vec<String> {
    let mut present: Vec<String> = Vec::new();
    for it in items {
        for k in it.metrics.keys() {
            if !present.contains(k) {
                present.push(k.clone());
            }
        }
    }
    let rank = |k: &str| METRIC_ORDER.iter().position(|m| *m == k).unwrap_or(METRIC_ORDER.len());
    present.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    present
}

fn column(items: &[&GenItem], metric: &str) -> Vec<f64> {
    items.iter().map(|i| i.metrics.get(metric).copied().unwrap_or(0.0)).collect()
}

/// Summary figures: every metric's mean with its CI, overall and per specialty.
#[allow(clippy::too_many_arguments)]
pub fn summarize_gen(
    model: &str,
    role: &str,
    dataset: &str,
    items: Vec<GenItem>,
    generation: GenSettings,
    meteor_wordnet: bool,
    bertscore_model: Option<String>,
    seed: u64,
    (generate_s, score_s): (f64, f64),
) -> GenRun {
    let names = metric_names(&items);
    let all: Vec<&GenItem> = items.iter().collect();
    let metrics = names.iter().map(|m| (m.clone(), mean_ci(&column(&all, m), BOOTSTRAP_SAMPLES, seed))).collect();
    let mut groups: BTreeMap<String, Vec<&GenItem>> = BTreeMap::new();
    for it in &items {
        groups.entry(it.specialty.clone()).or_default().push(it);
    }
    let per_specialty = groups
        .iter()
        .map(|(s, g)| {
            (s.clone(), names.iter().map(|m| (m.clone(), mean_ci(&column(g, m), BOOTSTRAP_SAMPLES, seed))).collect())
        })
        .collect();
    let summary = GenSummary {
        task: "generate".into(),
        model: model.to_string(),
        role: role.to_string(),
        dataset: dataset.to_string(),
        created: crate::report::now_utc(),
        seed,
        n: items.len(),
        errors: items.iter().filter(|i| i.error.is_some()).count(),
        unknown_specialty: items.iter().filter(|i| i.specialty == UNKNOWN).count(),
        generation,
        meteor_wordnet,
        bertscore_model,
        metrics,
        per_specialty,
        generate_s,
        score_s,
        medforge_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    GenRun { summary, items }
}

/// Write a role's own files into `dir`: `{role}_model_results.csv`, `{role}_results.jsonl`, `{role}_summary.json`.
pub fn write_gen_run(dir: &Path, run: &GenRun) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
    let role = safe_name(&run.summary.role);
    let names = metric_names(&run.items);
    let mut header: Vec<&str> = vec!["id", "specialty", "question", "reference", "prediction", "error"];
    header.extend(names.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = run
        .items
        .iter()
        .map(|i| {
            let mut r = vec![
                i.id.clone(),
                i.specialty.clone(),
                i.question.clone(),
                i.reference.clone(),
                i.prediction.clone(),
                i.error.clone().unwrap_or_default(),
            ];
            r.extend(names.iter().map(|m| i.metrics.get(m).map_or(String::new(), |v| format!("{v:.6}"))));
            r
        })
        .collect();
    let mut out = Vec::new();
    let p = dir.join(format!("{role}_model_results.csv"));
    write_csv(&p, &header, &rows)?;
    out.push(p);
    let p = dir.join(format!("{role}_results.jsonl"));
    let mut buf = Vec::new();
    for it in &run.items {
        serde_json::to_writer(&mut buf, it).map_err(|e| EvalError::json(&p, e))?;
        buf.push(b'\n');
    }
    medforge_data::write::write_atomic(&p, &buf)?;
    out.push(p);
    let p = dir.join(format!("{role}_summary.json"));
    write_json(&p, &run.summary)?;
    out.push(p);
    Ok(out)
}

/// Whether `dir` holds generation runs (a `*_summary.json` with `"task": "generate"`).
pub fn is_gen_run_dir(dir: &Path) -> bool {
    ["base", "finetuned"].iter().any(|r| dir.join(format!("{r}_summary.json")).exists())
}

/// The runs in a folder written by [`write_gen_run`]: `base` first, then `finetuned`.
pub fn load_gen_runs(dir: &Path) -> Result<Vec<GenRun>> {
    let mut runs = Vec::new();
    for role in ["base", "finetuned"] {
        let sp = dir.join(format!("{role}_summary.json"));
        if !sp.exists() {
            continue;
        }
        let bytes = std::fs::read(&sp).map_err(|e| EvalError::io(&sp, e))?;
        let summary: GenSummary = serde_json::from_slice(&bytes).map_err(|e| EvalError::json(&sp, e))?;
        let rp = dir.join(format!("{role}_results.jsonl"));
        let text = std::fs::read_to_string(&rp).map_err(|e| EvalError::io(&rp, e))?;
        let items = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                serde_json::from_str(l)
                    .map_err(|e| EvalError::Config(format!("{}:{}: not a result row: {e}", rp.display(), n + 1)))
            })
            .collect::<Result<Vec<GenItem>>>()?;
        runs.push(GenRun { summary, items });
    }
    if runs.is_empty() {
        return Err(EvalError::Config(format!(
            "{}: no generation run here (no base_summary.json or finetuned_summary.json)",
            dir.display()
        )));
    }
    Ok(runs)
}

/// What `training_recommendations.json` keys on.
#[derive(Debug, Clone, PartialEq)]
pub struct RecommendationRule {
    /// The per-specialty metric (default `token_f1`, the Meerkat pipeline's medical-entity F1).
    pub metric: String,
    /// Specialties whose mean is below this are low-performing.
    pub threshold: f64,
    /// Their new training share (the Meerkat pipeline's example: 0.8).
    pub share: f64,
}

impl Default for RecommendationRule {
    fn default() -> Self {
        RecommendationRule { metric: "token_f1".into(), threshold: 0.5, share: 0.8 }
    }
}

impl RecommendationRule {
    /// The MCQ rule: accuracy below 0.5, share 0.8.
    pub fn accuracy() -> Self {
        RecommendationRule { metric: "accuracy".into(), threshold: 0.5, share: 0.8 }
    }
}

fn label(r: &GenRun) -> String {
    format!("{} ({})", r.summary.model, r.summary.role)
}

/// The Meerkat pipeline's `training_recommendations.json` for the last run (improvement against the first when
/// there are two): specialties below the threshold, lowest first, each with the recommended share; the overall
/// change of ROUGE-L and BERTScore F1; medforge's per-specialty detail as an extra section.
pub fn gen_recommendations(runs: &[GenRun], rule: &RecommendationRule) -> Result<Recommendations> {
    let last = runs.last().ok_or_else(|| EvalError::Config("no runs".into()))?;
    let base = (runs.len() > 1).then(|| &runs[0]);
    if !last.summary.metrics.contains_key(&rule.metric) {
        return Err(EvalError::Config(format!(
            "recommendations: the runs have no `{}` metric (they have {})",
            rule.metric,
            last.summary.metrics.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let mut low: Vec<(&String, f64, usize)> = last
        .summary
        .per_specialty
        .iter()
        .filter_map(|(s, m)| m.get(&rule.metric).map(|x| (s, x.mean, x.n)))
        .filter(|(s, v, _)| *v < rule.threshold && s.as_str() != UNKNOWN)
        .collect();
    low.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(b.0)));
    let improvement = |s: &str, metric: &str, v: f64| {
        base.and_then(|b| b.summary.per_specialty.get(s)).and_then(|m| m.get(metric)).map(|b| round6(v - b.mean))
    };
    let mut overall_improvement = BTreeMap::new();
    if let Some(b) = base {
        for m in ["rougeL", "bertscore_f1"] {
            if let (Some(x), Some(y)) = (last.summary.metrics.get(m), b.summary.metrics.get(m)) {
                overall_improvement.insert(m.to_string(), round6(x.mean - y.mean));
            }
        }
    }
    Ok(Recommendations {
        low_performance_specialties: low.iter().map(|(s, _, _)| (*s).clone()).collect(),
        recommended_sample_increases: low.iter().map(|(s, _, _)| ((*s).clone(), rule.share)).collect(),
        overall_improvement,
        criteria: Some(json!({
            "metric": rule.metric, "threshold": rule.threshold, "share": rule.share,
            "model": last.summary.model, "role": last.summary.role,
            "base": base.map(|b| b.summary.model.clone()),
            "meaning": "recommended_sample_increases[specialty] is the specialty's new training share: medforge split update draws that fraction of its non-holdout rows for train + eval",
        })),
        low_performing_specialties: low
            .iter()
            .map(|(s, v, n)| LowPerformingSpecialty {
                specialty: (*s).clone(),
                medical_entity_f1: last.summary.per_specialty[*s].get("token_f1").map(|x| round6(x.mean)),
                accuracy: None,
                sample_count: Some(*n as u64),
                improvement: improvement(s, &rule.metric, *v),
                current_samples: None,
                recommended_samples: None,
                recommended_increase: None,
            })
            .collect(),
        recommended_actions: BTreeMap::new(),
        overall_performance: None,
    })
}

/// One line of `model_comparison.csv`: a metric, overall or in one specialty, of the base run (the first) and, per
/// later run, that run's figure and the improvement paired on the items both answered.
struct Comparison<'a> {
    specialty: Option<&'a str>,
    metric: &'a str,
    base: MeanCi,
    /// The later run, its figure, the paired improvement and the number of paired items.
    other: Option<(&'a GenRun, MeanCi, MeanCi, usize)>,
}

/// A run's summary figure of `metric`, overall or in one specialty.
fn figure(run: &GenRun, specialty: Option<&str>, metric: &str) -> MeanCi {
    let m = match specialty {
        None => run.summary.metrics.get(metric),
        Some(s) => run.summary.per_specialty.get(s).and_then(|p| p.get(metric)),
    };
    m.copied().unwrap_or(MeanCi { n: 0, mean: 0.0, ci_low: 0.0, ci_high: 0.0 })
}

/// Every comparison of the report: per scope (overall, then each of the base's specialties), per later run, per
/// metric. Items are paired once per scope and run.
fn comparisons<'a>(runs: &'a [GenRun], names: &'a [String], seed: u64) -> Vec<Comparison<'a>> {
    let base = &runs[0];
    let mut scopes: Vec<Option<&str>> = vec![None];
    scopes.extend(base.summary.per_specialty.keys().map(|s| Some(s.as_str())));
    let mut out = Vec::new();
    for specialty in scopes {
        let in_scope = |i: &&GenItem| specialty.is_none_or(|s| i.specialty == s);
        if runs.len() == 1 {
            out.extend(names.iter().map(|m| Comparison {
                specialty,
                metric: m,
                base: figure(base, specialty, m),
                other: None,
            }));
            continue;
        }
        let by_id: BTreeMap<&str, &GenItem> = base.items.iter().filter(in_scope).map(|i| (i.id.as_str(), i)).collect();
        for o in &runs[1..] {
            let pairs: Vec<(&GenItem, &GenItem)> =
                o.items.iter().filter(in_scope).filter_map(|i| Some((*by_id.get(i.id.as_str())?, i))).collect();
            for m in names {
                let value = |i: &GenItem| i.metrics.get(m).copied().unwrap_or(0.0);
                let (a, b): (Vec<f64>, Vec<f64>) = pairs.iter().map(|(x, y)| (value(x), value(y))).unzip();
                let d = paired_mean_delta_ci(&a, &b, BOOTSTRAP_SAMPLES, seed);
                out.push(Comparison {
                    specialty,
                    metric: m,
                    base: figure(base, specialty, m),
                    other: Some((o, figure(o, specialty, m), d, pairs.len())),
                });
            }
        }
    }
    out
}

/// `model_comparison.csv`'s rows.
fn comparison_rows(base: &GenRun, cmp: &[Comparison]) -> Vec<Vec<String>> {
    cmp.iter()
        .map(|c| {
            let mut row = vec![
                c.specialty.map_or("overall", |_| "specialty").into(),
                c.specialty.unwrap_or("").into(),
                c.metric.to_string(),
                label(base),
            ];
            match &c.other {
                None => {
                    row.extend([
                        String::new(),
                        c.base.n.to_string(),
                        f(c.base.mean),
                        f(c.base.ci_low),
                        f(c.base.ci_high),
                    ]);
                    row.extend(std::iter::repeat_n(String::new(), 6));
                    row.push("0".into());
                }
                Some((o, om, d, paired)) => {
                    let opt = |x: f64| if *paired > 0 { f(x) } else { String::new() };
                    row.extend([label(o), c.base.n.to_string(), f(c.base.mean), f(c.base.ci_low), f(c.base.ci_high)]);
                    row.extend([f(om.mean), f(om.ci_low), f(om.ci_high), opt(d.mean), opt(d.ci_low), opt(d.ci_high)]);
                    row.push(paired.to_string());
                }
            }
            row
        })
        .collect()
}

/// Metrics drawn in `model_comparison.png` (all on a 0-1 scale).
const CHART_METRICS: [&str; 9] =
    ["bleu1", "bleu4", "rouge1", "rouge2", "rougeL", "meteor", "bertscore_f1", "exact_match", "token_f1"];

/// The report over generation runs (the first is the base): comparison and specialty CSVs, the two charts,
/// recommendations and the HTML page. `key_metric` is the one drawn per specialty.
pub fn write_gen_report(out: &Path, runs: &[GenRun], rule: &RecommendationRule) -> Result<Vec<PathBuf>> {
    if runs.is_empty() {
        return Err(EvalError::Config("no runs to report".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| EvalError::io(out, e))?;
    let seed = runs[0].summary.seed;
    let mut written = Vec::new();

    // specialty_performance.csv: a row per run and specialty, every metric's mean.
    let names = metric_names(&runs[0].items);
    let mut header: Vec<String> = vec!["model".into(), "role".into(), "specialty".into(), "n".into()];
    header.extend(names.iter().cloned());
    let mut rows = Vec::new();
    for r in runs {
        for (s, m) in &r.summary.per_specialty {
            let mut row = vec![r.summary.model.clone(), r.summary.role.clone(), s.clone()];
            row.push(m.values().next().map_or(0, |x| x.n).to_string());
            row.extend(names.iter().map(|k| m.get(k).map_or(String::new(), |x| f(x.mean))));
            rows.push(row);
        }
    }
    let p = out.join("specialty_performance.csv");
    write_csv(&p, &header.iter().map(String::as_str).collect::<Vec<_>>(), &rows)?;
    written.push(p);

    let cmp = comparisons(runs, &names, seed);
    let p = out.join("model_comparison.csv");
    write_csv(
        &p,
        &[
            "scope",
            "specialty",
            "metric",
            "base_model",
            "finetuned_model",
            "n",
            "base",
            "base_ci_low",
            "base_ci_high",
            "finetuned",
            "finetuned_ci_low",
            "finetuned_ci_high",
            "improvement",
            "improvement_ci_low",
            "improvement_ci_high",
            "paired_items",
        ],
        &comparison_rows(&runs[0], &cmp),
    )?;
    written.push(p);

    let recs = gen_recommendations(runs, rule)?;
    let p = out.join("training_recommendations.json");
    recs.save(&p)?;
    written.push(p);

    // Charts: the key metric per specialty, and every 0-1 metric overall, one bar per run.
    let models: Vec<String> = runs.iter().map(label).collect();
    let key = rule.metric.as_str();
    let specialties: Vec<&String> = runs.last().expect("non-empty").summary.per_specialty.keys().collect();
    let groups: Vec<(String, Vec<Bar>)> = specialties
        .iter()
        .take(16)
        .map(|s| {
            (
                (*s).clone(),
                runs.iter()
                    .map(|r| {
                        let x = r.summary.per_specialty.get(*s).and_then(|m| m.get(key));
                        x.map_or(Bar { label: label(r), value: 0.0, low: 0.0, high: 0.0 }, |x| Bar {
                            label: label(r),
                            value: x.mean,
                            low: x.ci_low,
                            high: x.ci_high,
                        })
                    })
                    .collect(),
            )
        })
        .collect();
    let mut charts_done = Vec::new();
    let p = out.join("specialty_analysis.png");
    chart_atomic(&p, |t| {
        charts::comparison_bars_with(t, &format!("{key} per specialty (95% bootstrap CIs)"), key, &models, &groups)
    })?;
    charts_done.push((format!("{key} per specialty"), p.clone()));
    written.push(p);
    let groups: Vec<(String, Vec<Bar>)> = CHART_METRICS
        .iter()
        .filter(|m| runs[0].summary.metrics.contains_key(**m))
        .map(|m| {
            (
                m.to_string(),
                runs.iter()
                    .map(|r| {
                        let x = r.summary.metrics[*m];
                        Bar { label: label(r), value: x.mean, low: x.ci_low, high: x.ci_high }
                    })
                    .collect(),
            )
        })
        .collect();
    let p = out.join("model_comparison.png");
    chart_atomic(&p, |t| {
        charts::comparison_bars_with(t, "Model comparison (95% bootstrap CIs)", "score", &models, &groups)
    })?;
    charts_done.push(("Model comparison".into(), p.clone()));
    written.push(p);

    let p = out.join("report.html");
    medforge_data::write::write_atomic(&p, gen_html(runs, &cmp, &recs, &charts_done, key, seed)?.as_bytes())?;
    written.push(p);
    Ok(written)
}

fn gen_html(
    runs: &[GenRun],
    cmp: &[Comparison],
    recs: &Recommendations,
    charts: &[(String, PathBuf)],
    key: &str,
    seed: u64,
) -> Result<String> {
    let last = runs.last().expect("non-empty");
    let base = &runs[0];
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>medforge generation evaluation</title>\n<style>body{font-family:system-ui,'Noto Sans CJK KR','NanumGothic','Noto Sans KR',sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:top}td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}td.text{text-align:left;max-width:360px;white-space:pre-wrap;font-size:13px}img{max-width:100%;border:1px solid #eee;margin:0.5em 0}.up{color:#1b7837}.down{color:#b2182b}pre{background:#f7f7f7;padding:1em;overflow:auto}</style></head><body>\n");
    h.push_str(&format!(
        "<h1>Generation evaluation: {}</h1>\n<p>Dataset: {} · items: {} · {} · created {} · medforge {}. Means with 95% percentile-bootstrap CIs ({} resamples, seed {}); improvements are paired on items.</p>\n",
        esc(&runs.iter().map(label).collect::<Vec<_>>().join(" vs ")),
        esc(&last.summary.dataset),
        last.summary.n,
        esc(&runs
            .iter()
            .map(|r| format!(
                "{}: max new tokens {}, temperature {}, {:.0} s generating",
                r.summary.role, r.summary.generation.max_tokens, r.summary.generation.temperature, r.summary.generate_s
            ))
            .collect::<Vec<_>>()
            .join("; ")),
        esc(&last.summary.created),
        esc(&last.summary.medforge_version),
        BOOTSTRAP_SAMPLES,
        seed
    ));
    h.push_str("<h2>Metrics</h2>\n<table id=\"metrics\"><tr><th>metric</th>");
    for r in runs {
        h.push_str(&format!("<th>{}</th>", esc(&label(r))));
    }
    if runs.len() > 1 {
        h.push_str("<th>improvement (95% CI)</th>");
    }
    h.push_str("</tr>\n");
    for m in metric_names(&base.items) {
        h.push_str(&format!("<tr><td>{}</td>", esc(&m)));
        for r in runs {
            match r.summary.metrics.get(&m) {
                Some(x) => h.push_str(&format!("<td>{:.4} ({:.4} – {:.4})</td>", x.mean, x.ci_low, x.ci_high)),
                None => h.push_str("<td>—</td>"),
            }
        }
        // The last run's overall improvement, as model_comparison.csv gives it.
        let last_overall = cmp.iter().find_map(|c| match &c.other {
            Some((o, _, d, _)) if c.specialty.is_none() && c.metric == m && std::ptr::eq(*o, last) => Some(*d),
            _ => None,
        });
        if let Some(d) = last_overall {
            let cls = if d.ci_low > 0.0 {
                " class=\"up\""
            } else if d.ci_high < 0.0 {
                " class=\"down\""
            } else {
                ""
            };
            h.push_str(&format!("<td{cls}>{:+.4} ({:+.4} – {:+.4})</td>", d.mean, d.ci_low, d.ci_high));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n<h2>Charts</h2>\n");
    for (title, p) in charts {
        let bytes = std::fs::read(p).map_err(|e| EvalError::io(p, e))?;
        h.push_str(&format!(
            "<figure><figcaption>{}</figcaption><img class=\"chart\" alt=\"{}\" src=\"data:image/png;base64,{}\"></figure>\n",
            esc(title),
            esc(title),
            base64(&bytes)
        ));
    }
    h.push_str(&format!(
        "<h2>Per specialty ({})</h2>\n<table id=\"specialties\"><tr><th>specialty</th><th>n</th>",
        esc(key)
    ));
    for r in runs {
        h.push_str(&format!("<th>{}</th>", esc(&label(r))));
    }
    h.push_str("</tr>\n");
    for (s, m) in &last.summary.per_specialty {
        h.push_str(&format!("<tr><td>{}</td><td>{}</td>", esc(s), m.get(key).map_or(0, |x| x.n)));
        for r in runs {
            match r.summary.per_specialty.get(s).and_then(|m| m.get(key)) {
                Some(x) => h.push_str(&format!("<td>{:.4} ({:.4} – {:.4})</td>", x.mean, x.ci_low, x.ci_high)),
                None => h.push_str("<td>—</td>"),
            }
        }
        h.push_str("</tr>\n");
    }
    // The worst items of the last run by the key metric, with every run's answer beside the reference.
    h.push_str(&format!(
        "</table>\n<h2>Worst items ({} of {})</h2>\n<table id=\"worst\"><tr><th>id</th><th>specialty</th><th>{}</th><th>question</th><th>reference</th>",
        esc(&label(last)),
        esc(key),
        esc(key)
    ));
    for r in runs {
        h.push_str(&format!("<th>{}</th>", esc(&label(r))));
    }
    h.push_str("</tr>\n");
    let mut worst: Vec<&GenItem> = last.items.iter().collect();
    worst.sort_by(|a, b| {
        let k = |i: &GenItem| i.metrics.get(key).copied().unwrap_or(0.0);
        k(a).total_cmp(&k(b)).then(a.id.cmp(&b.id))
    });
    let clip = |s: &str| -> String {
        let t: String = s.chars().take(600).collect();
        if s.chars().count() > 600 {
            format!("{t}…")
        } else {
            t
        }
    };
    for it in worst.iter().take(10) {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{:.4}</td><td class=\"text\">{}</td><td class=\"text\">{}</td>",
            esc(&it.id),
            esc(&it.specialty),
            it.metrics.get(key).copied().unwrap_or(0.0),
            esc(&clip(&it.question)),
            esc(&clip(&it.reference))
        ));
        for r in runs {
            let p = r.items.iter().find(|i| i.id == it.id).map_or("—".to_string(), |i| clip(&i.prediction));
            h.push_str(&format!("<td class=\"text\">{}</td>", esc(&p)));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n<h2>Training recommendations</h2>\n<pre id=\"recommendations\">");
    h.push_str(&esc(&serde_json::to_string_pretty(recs).unwrap_or_default()));
    h.push_str("</pre>\n</body></html>\n");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, spec: &str, reference: &str, prediction: &str) -> GenItem {
        GenItem {
            id: id.into(),
            specialty: spec.into(),
            question: format!("question {id}"),
            reference: reference.into(),
            prediction: prediction.into(),
            error: None,
            metrics: BTreeMap::new(),
        }
    }

    fn settings() -> GenSettings {
        GenSettings { max_tokens: 512, temperature: 0.1, top_p: None, seed: Some(42) }
    }

    fn run(role: &str, preds: &[&str]) -> GenRun {
        let refs = [
            "insulin lowers blood glucose",
            "aspirin inhibits platelets",
            "the heart pumps blood",
            "beta blockers slow the heart",
        ];
        let specs = ["endocrinology", "cardiology", "cardiology", "cardiology"];
        let mut items: Vec<GenItem> = (0..4).map(|i| item(&format!("q{i}"), specs[i], refs[i], preds[i])).collect();
        score_items(&mut items, &[], &TextMetrics::default()).unwrap();
        summarize_gen("m", role, "d", items, settings(), false, None, 42, (0.0, 0.0))
    }

    #[test]
    fn scores_summaries_recommendations_and_files() {
        let base = run("base", &["glucose", "no idea", "blood", "slow"]);
        let ft =
            run("finetuned", &["insulin lowers blood glucose", "aspirin inhibits platelets", "the heart pumps", "no"]);
        assert_eq!(ft.items[0].metrics["exact_match"], 1.0);
        assert_eq!(ft.items[0].metrics["bleu4"], 1.0);
        assert!(base.summary.metrics["token_f1"].mean < ft.summary.metrics["token_f1"].mean);
        assert_eq!(base.summary.per_specialty["cardiology"]["rougeL"].n, 3);

        let rule = RecommendationRule { metric: "token_f1".into(), threshold: 0.9, share: 0.75 };
        let recs = gen_recommendations(&[base.clone(), ft.clone()], &rule).unwrap();
        // cardiology's F1 mean is below 0.9, endocrinology's is 1.0.
        assert_eq!(recs.low_performance_specialties, vec!["cardiology"]);
        assert_eq!(recs.recommended_sample_increases["cardiology"], 0.75);
        assert!(recs.overall_improvement["rougeL"] > 0.0);
        assert!(!recs.overall_improvement.contains_key("bertscore_f1"), "no BERTScore computed");
        let bad = RecommendationRule { metric: "nope".into(), ..rule.clone() };
        assert!(gen_recommendations(std::slice::from_ref(&ft), &bad).unwrap_err().to_string().contains("`nope`"));

        let dir = tempfile::tempdir().unwrap();
        write_gen_run(dir.path(), &base).unwrap();
        write_gen_run(dir.path(), &ft).unwrap();
        let back = load_gen_runs(dir.path()).unwrap();
        assert_eq!(back.len(), 2);
        for (got, want) in back.iter().zip([&base, &ft]) {
            assert_eq!(got.summary.role, want.summary.role);
            assert_eq!(got.items.len(), want.items.len());
            for (g, w) in got.items.iter().zip(&want.items) {
                assert_eq!((&g.id, &g.prediction), (&w.id, &w.prediction));
                for (k, v) in &w.metrics {
                    assert!((g.metrics[k] - v).abs() < 1e-12, "{k}");
                }
            }
        }
        let files = write_gen_report(dir.path(), &back, &rule).unwrap();
        for f in [
            "specialty_performance.csv",
            "model_comparison.csv",
            "specialty_analysis.png",
            "model_comparison.png",
            "training_recommendations.json",
            "report.html",
            "base_model_results.csv",
            "finetuned_model_results.csv",
        ] {
            assert!(dir.path().join(f).exists(), "{f}");
        }
        assert!(files.len() >= 6);
        let cmp = std::fs::read_to_string(dir.path().join("model_comparison.csv")).unwrap();
        let overall_f1 = cmp.lines().find(|l| l.starts_with("overall,,token_f1,")).unwrap();
        assert!(overall_f1.ends_with(",4"), "paired on 4 items: {overall_f1}");
        let loaded = Recommendations::load(&dir.path().join("training_recommendations.json")).unwrap();
        assert_eq!(loaded.targets()["cardiology"].0, medforge_data::recommendations::Target::Share(0.75));
        let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
        assert!(html.contains("id=\"worst\"") && html.contains("beta blockers slow the heart"));
    }

    #[test]
    fn references_groups_and_unknowns() {
        let mut a = Record::new("a", "t", medforge_data::RecordKind::OpenQa, "What lowers glucose?");
        a.answer = Some("Insulin".into());
        a.specialty = Some("endocrinology".into());
        let mut b = Record::new("b", "t", medforge_data::RecordKind::OpenQa, "Q?");
        b.answer = Some("A".into());
        let c = Record::new("c", "t", medforge_data::RecordKind::OpenQa, "no answer");
        let mut d = Record::new("d", "t", medforge_data::RecordKind::Mcq, "PubMedQA?");
        d.options = vec![medforge_data::McqOption { letter: "A".into(), text: "yes".into() }];
        d.answer = Some("yes".into());
        d.response = Some("The long answer.".into());
        let got = open_items_from_records(&[a, b, c, d], ReferenceField::Auto, None);
        assert_eq!(got.items.len(), 3);
        assert_eq!((got.no_reference, got.unknown_specialty), (1, 2));
        assert_eq!(got.items[1].specialty, UNKNOWN);
        assert_eq!(got.items[2].reference, "The long answer.");
    }
}
