//! Evaluation reports. Each `medforge eval` run folder gets:
//! - `{model}_results.csv`: a row per item (prediction, extracted answer, correctness, rule/reason);
//! - `specialty_performance.csv`: accuracy with its 95% bootstrap CI per subject/specialty;
//! - `model_comparison.csv`: per model and scope (overall, each subject) accuracy and CI, and against
//!   the base model (the first run given to `medforge report`) the paired delta with its CI;
//! - `failed_questions.json`: items that failed, with how many of the evaluations they failed, the
//!   last prediction and the expected answer;
//! - `training_recommendations.json`: low-performing specialties in the Meerkat pipeline's format (consumed by
//!   `medforge split update`);
//! - PNG charts and `report.html` (one self-contained page, charts inlined);
//! - `summary.json` and `results.jsonl`, which `medforge report` reads back.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use medforge_data::recommendations::{
    Increase, LowPerformingSpecialty, OverallPerformance, Recommendations, RecommendedAction,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::charts::{self, Bar};
use crate::error::{EvalError, Result};
use crate::failures::FailureTracker;
pub use crate::generate::RecommendationRule;
use crate::runner::{by_subject, ItemResult};
use crate::stats::{accuracy_ci, paired_delta_ci, Accuracy, BOOTSTRAP_SAMPLES};

/// The headline figures of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub model: String,
    pub benchmark: String,
    pub mode: String,
    pub created: String,
    /// Training step of the checkpoint, when known (for the accuracy-over-steps chart).
    #[serde(default)]
    pub step: Option<u64>,
    pub seed: u64,
    pub n: usize,
    pub correct: usize,
    pub unparseable: usize,
    pub errors: usize,
    pub accuracy: Accuracy,
    pub per_subject: BTreeMap<String, Accuracy>,
    pub medforge_version: String,
}

/// A run: summary and items.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRun {
    pub summary: RunSummary,
    pub items: Vec<ItemResult>,
}

/// Figures of a finished set of item results.
pub fn summarize(
    model: &str,
    benchmark: &str,
    mode: &str,
    items: Vec<ItemResult>,
    step: Option<u64>,
    seed: u64,
) -> EvalRun {
    let outcomes: Vec<bool> = items.iter().map(|r| r.correct).collect();
    let per_subject =
        by_subject(&items).into_iter().map(|(s, o)| (s, accuracy_ci(&o, BOOTSTRAP_SAMPLES, seed))).collect();
    let summary = RunSummary {
        model: model.to_string(),
        benchmark: benchmark.to_string(),
        mode: mode.to_string(),
        created: now_utc(),
        step,
        seed,
        n: items.len(),
        correct: outcomes.iter().filter(|&&c| c).count(),
        unparseable: items.iter().filter(|r| r.outcome == "unparseable").count(),
        errors: items.iter().filter(|r| r.outcome == "error").count(),
        accuracy: accuracy_ci(&outcomes, BOOTSTRAP_SAMPLES, seed),
        per_subject,
        medforge_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    EvalRun { summary, items }
}

/// The current UTC time, `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let days = (secs / 86400) as i64;
    let (h, m, s) = ((secs % 86400) / 3600, (secs % 3600) / 60, secs % 60);
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if mo <= 2 { 1 } else { 0 };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

/// A file-name-safe form of a model name.
pub fn safe_name(s: &str) -> String {
    let t: String =
        s.chars().map(|c| if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    if t.is_empty() {
        "model".into()
    } else {
        t
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(medforge_data::write::write_atomic(path, bytes)?)
}

pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    write_file(path, &serde_json::to_vec_pretty(value).map_err(|e| EvalError::json(path, e))?)
}

/// A CSV file (RFC 4180 quoting by the csv crate), written atomically.
pub(crate) fn write_csv(path: &Path, header: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let csv_err = |source| EvalError::Csv { path: path.to_path_buf(), source };
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).map_err(csv_err)?;
    for r in rows {
        w.write_record(r).map_err(csv_err)?;
    }
    let bytes = w.into_inner().map_err(|e| csv_err(e.into_error().into()))?;
    write_file(path, &bytes)
}

/// A figure in the CSVs: six decimals.
pub(crate) fn f(x: f64) -> String {
    format!("{x:.6}")
}

/// Write one run's own files (`{model}_results.csv`, `summary.json`, `results.jsonl`) and the report
/// files for it alone. Returns the files written.
pub fn write_run(dir: &Path, run: &EvalRun) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
    let mut out = Vec::new();
    let p = dir.join(format!("{}_results.csv", safe_name(&run.summary.model)));
    let rows: Vec<Vec<String>> = run
        .items
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.subject.clone(),
                r.expected.to_string(),
                r.extracted.map(String::from).unwrap_or_default(),
                (r.correct as u8).to_string(),
                r.outcome.clone(),
                r.detail.clone(),
                r.option_logprobs.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(";"),
                r.prediction.clone(),
            ]
        })
        .collect();
    write_csv(
        &p,
        &[
            "id",
            "subject",
            "expected",
            "extracted",
            "correct",
            "outcome",
            "rule_or_reason",
            "option_logprobs",
            "prediction",
        ],
        &rows,
    )?;
    out.push(p);
    let p = dir.join("summary.json");
    write_json(&p, &run.summary)?;
    out.push(p);
    let p = dir.join("results.jsonl");
    let mut buf = Vec::new();
    for r in &run.items {
        serde_json::to_writer(&mut buf, r).map_err(|e| EvalError::json(&p, e))?;
        buf.push(b'\n');
    }
    write_file(&p, &buf)?;
    out.push(p);
    out.extend(write_report(dir, std::slice::from_ref(run))?);
    Ok(out)
}

/// Read a run folder written by [`write_run`].
pub fn load_run(dir: &Path) -> Result<EvalRun> {
    let summary_path = dir.join("summary.json");
    let s = std::fs::read(&summary_path)
        .map_err(|e| EvalError::Config(format!("{}: not an eval run folder (no summary.json: {e})", dir.display())))?;
    let summary: RunSummary = serde_json::from_slice(&s).map_err(|e| EvalError::json(&summary_path, e))?;
    let results = dir.join("results.jsonl");
    let text = std::fs::read_to_string(&results).map_err(|e| EvalError::io(&results, e))?;
    let items = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| EvalError::json(&results, e)))
        .collect::<Result<Vec<ItemResult>>>()?;
    Ok(EvalRun { summary, items })
}

fn label(run: &EvalRun) -> String {
    match run.summary.step {
        Some(s) => format!("{}@{s}", run.summary.model),
        None => run.summary.model.clone(),
    }
}

/// The report over one or more runs (the first is the base for comparisons): comparison and
/// specialty CSVs, failed questions, recommendations, charts and the HTML page.
pub fn write_report(out: &Path, runs: &[EvalRun]) -> Result<Vec<PathBuf>> {
    if runs.is_empty() {
        return Err(EvalError::Config("no runs to report".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| EvalError::io(out, e))?;
    let mut written = Vec::new();
    let seed = runs[0].summary.seed;
    let base = &runs[0];
    let last = &runs[runs.len() - 1];

    // specialty_performance.csv
    let mut rows = Vec::new();
    for r in runs {
        for (s, a) in &r.summary.per_subject {
            rows.push(vec![
                label(r),
                r.summary.benchmark.clone(),
                s.clone(),
                a.n.to_string(),
                a.correct.to_string(),
                f(a.accuracy),
                f(a.ci_low),
                f(a.ci_high),
            ]);
        }
    }
    let p = out.join("specialty_performance.csv");
    write_csv(&p, &["model", "benchmark", "subject", "n", "correct", "accuracy", "ci_low", "ci_high"], &rows)?;
    written.push(p);

    // model_comparison.csv: every run against the base, overall and per subject, paired on item ids.
    let mut rows = Vec::new();
    let base_by_id: BTreeMap<&str, &ItemResult> = base.items.iter().map(|r| (r.id.as_str(), r)).collect();
    for r in runs {
        let mut scopes: Vec<(String, Option<&str>)> = vec![("overall".into(), None)];
        scopes.extend(r.summary.per_subject.keys().map(|s| ("subject".to_string(), Some(s.as_str()))));
        for (scope, subj) in scopes {
            let mine: Vec<&ItemResult> = r.items.iter().filter(|i| subj.is_none_or(|s| i.subject == s)).collect();
            let acc = accuracy_ci(&mine.iter().map(|i| i.correct).collect::<Vec<_>>(), BOOTSTRAP_SAMPLES, seed);
            let paired: Vec<(bool, bool)> =
                mine.iter().filter_map(|i| base_by_id.get(i.id.as_str()).map(|b| (b.correct, i.correct))).collect();
            let (a, b): (Vec<bool>, Vec<bool>) = paired.iter().copied().unzip();
            let bacc = accuracy_ci(&a, BOOTSTRAP_SAMPLES, seed);
            let is_base = std::ptr::eq(r, base);
            let (d, dl, dh) = if is_base || paired.is_empty() {
                (0.0, 0.0, 0.0)
            } else {
                paired_delta_ci(&a, &b, BOOTSTRAP_SAMPLES, seed)
            };
            let opt = |x: f64| if paired.is_empty() { String::new() } else { f(x) };
            rows.push(vec![
                scope,
                subj.unwrap_or("").to_string(),
                label(base),
                label(r),
                acc.n.to_string(),
                opt(bacc.accuracy),
                opt(bacc.ci_low),
                opt(bacc.ci_high),
                f(acc.accuracy),
                f(acc.ci_low),
                f(acc.ci_high),
                opt(d),
                opt(dl),
                opt(dh),
                paired.len().to_string(),
            ]);
        }
    }
    let p = out.join("model_comparison.csv");
    write_csv(
        &p,
        &[
            "scope",
            "subject",
            "base_model",
            "model",
            "n",
            "base_accuracy",
            "base_ci_low",
            "base_ci_high",
            "accuracy",
            "ci_low",
            "ci_high",
            "delta",
            "delta_ci_low",
            "delta_ci_high",
            "paired_items",
        ],
        &rows,
    )?;
    written.push(p);

    // failed_questions.json in the MedGemma Korean pipeline's schema (the ten most persistent failures, each run one
    // step), its full history beside it, and medforge's detail (every failed item, with the runs that evaluated it).
    let mut tracker = FailureTracker::default();
    for (k, r) in runs.iter().enumerate() {
        record_failures(&mut tracker, r, r.summary.step.unwrap_or(k as u64));
    }
    let p = out.join("failed_questions.json");
    tracker.write(&p)?;
    written.push(p);
    written.push(out.join(crate::failures::HISTORY_FILE));
    let failed = failed_questions(runs);
    let p = out.join("failed_questions_detail.json");
    write_json(&p, &failed)?;
    written.push(p);

    // division_report.json: per division of the last run, when its items have divisions.
    if last.items.iter().any(|i| i.division.is_some()) {
        let p = out.join("division_report.json");
        write_json(&p, &division_report(&last.items))?;
        written.push(p);
    }

    // training_recommendations.json from the last run (improvement against the base when there is one).
    let recs = recommendations(last, if runs.len() > 1 { Some(base) } else { None }, &RecommendationRule::accuracy());
    let p = out.join("training_recommendations.json");
    recs.save(&p)?;
    written.push(p);

    // Charts.
    let mut charts_done: Vec<(String, PathBuf)> = Vec::new();
    let bars: Vec<Bar> = last
        .summary
        .per_subject
        .iter()
        .map(|(s, a)| Bar { label: format!("{s} (n={})", a.n), value: a.accuracy, low: a.ci_low, high: a.ci_high })
        .collect();
    let p = out.join("specialty_accuracy.png");
    chart_atomic(&p, |t| {
        charts::specialty_bars(
            t,
            &format!("{} on {}: accuracy per subject", last.summary.model, last.summary.benchmark),
            &bars,
        )
    })?;
    charts_done.push(("Accuracy per subject".into(), p.clone()));
    written.push(p);

    // Runs of one model in two modes (gen and loglik) would share a legend entry: name the mode then.
    let plain: Vec<String> = runs.iter().map(label).collect();
    let models: Vec<String> =
        runs.iter()
            .zip(&plain)
            .map(|(r, l)| {
                if plain.iter().filter(|x| *x == l).count() > 1 {
                    format!("{l} ({})", r.summary.mode)
                } else {
                    l.clone()
                }
            })
            .collect();
    let mut groups: Vec<(String, Vec<Bar>)> = vec![(
        "overall".into(),
        runs.iter()
            .map(|r| Bar {
                label: label(r),
                value: r.summary.accuracy.accuracy,
                low: r.summary.accuracy.ci_low,
                high: r.summary.accuracy.ci_high,
            })
            .collect(),
    )];
    for s in last.summary.per_subject.keys().take(12) {
        groups.push((
            s.clone(),
            runs.iter()
                .map(|r| {
                    r.summary.per_subject.get(s).map_or(Bar { label: label(r), value: 0.0, low: 0.0, high: 0.0 }, |a| {
                        Bar { label: label(r), value: a.accuracy, low: a.ci_low, high: a.ci_high }
                    })
                })
                .collect(),
        ));
    }
    let p = out.join("model_comparison.png");
    chart_atomic(&p, |t| charts::comparison_bars(t, "Model comparison (95% bootstrap CIs)", &models, &groups))?;
    charts_done.push(("Model comparison".into(), p.clone()));
    written.push(p);

    let mut steps: Vec<(u64, f64, f64, f64)> = runs
        .iter()
        .filter_map(|r| {
            r.summary
                .step
                .map(|s| (s, r.summary.accuracy.accuracy, r.summary.accuracy.ci_low, r.summary.accuracy.ci_high))
        })
        .collect();
    steps.sort_by_key(|p| p.0);
    if steps.len() >= 2 {
        let p = out.join("accuracy_over_steps.png");
        chart_atomic(&p, |t| charts::accuracy_over_steps(t, "Accuracy over training steps", &steps))?;
        charts_done.push(("Accuracy over training steps".into(), p.clone()));
        written.push(p);
    }

    let p = out.join("report.html");
    write_file(&p, html(runs, &failed, &recs, &charts_done)?.as_bytes())?;
    written.push(p);
    Ok(written)
}

/// Render a chart to a temporary name in the same folder, then rename it into place.
pub(crate) fn chart_atomic(
    path: &Path,
    draw: impl FnOnce(&Path) -> std::result::Result<(), crate::error::ChartError>,
) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("chart.png");
    let tmp = path.with_file_name(format!(".{}.partial.png", name.trim_end_matches(".png")));
    draw(&tmp).map_err(|source| EvalError::Chart { path: path.to_path_buf(), source })?;
    std::fs::rename(&tmp, path).map_err(|e| EvalError::io(path, e))
}

/// Record a run's wrong answers into a failure history at `step`.
pub fn record_failures(tracker: &mut FailureTracker, run: &EvalRun, step: u64) {
    for i in run.items.iter().filter(|i| !i.correct) {
        let preview: String = i.question.chars().take(100).collect();
        let predicted = i.extracted.map(String::from).unwrap_or_else(|| i.prediction.chars().take(40).collect());
        tracker.record(&i.id, &i.expected.to_string(), &predicted, &preview, step);
    }
}

/// One division of `division_report.json`, the MedGemma Korean pipeline's schema: `{division: {accuracy, count,
/// avg_loss}}` with accuracy as a fraction (the document's example: `"accuracy": 0.65`). This type owns the file;
/// `medforge eval` and the training loops both write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DivisionStats {
    pub accuracy: f64,
    pub count: usize,
    /// Mean negative log-likelihood of the expected answer; `null` where no log-likelihoods were scored.
    pub avg_loss: Option<f64>,
}

/// Per-division figures from `(division, correct, loss)` triples.
pub fn division_stats<'a>(
    items: impl IntoIterator<Item = (&'a str, bool, Option<f64>)>,
) -> BTreeMap<String, DivisionStats> {
    let mut by: BTreeMap<String, (usize, usize, Vec<f64>)> = BTreeMap::new();
    for (d, correct, loss) in items {
        let e = by.entry(d.to_string()).or_default();
        e.0 += correct as usize;
        e.1 += 1;
        e.2.extend(loss);
    }
    by.into_iter()
        .map(|(d, (c, n, l))| {
            let avg_loss = (!l.is_empty()).then(|| l.iter().sum::<f64>() / l.len() as f64);
            (d, DivisionStats { accuracy: c as f64 / n as f64, count: n, avg_loss })
        })
        .collect()
}

/// `division_report.json` of MCQ results: items without a division count under `UNKNOWN`; the loss is the expected
/// option's in log-likelihood mode.
pub fn division_report(items: &[ItemResult]) -> BTreeMap<String, DivisionStats> {
    division_stats(items.iter().map(|i| (i.division.as_deref().unwrap_or("UNKNOWN"), i.correct, i.loss())))
}

/// Items failed in any of the runs, with fail counts over the runs that evaluated them.
pub fn failed_questions(runs: &[EvalRun]) -> Value {
    struct Acc<'a> {
        fails: usize,
        evals: usize,
        last: &'a ItemResult,
    }
    let mut m: BTreeMap<&str, Acc> = BTreeMap::new();
    for r in runs {
        for i in &r.items {
            let e = m.entry(i.id.as_str()).or_insert(Acc { fails: 0, evals: 0, last: i });
            e.evals += 1;
            e.last = i;
            if !i.correct {
                e.fails += 1;
            }
        }
    }
    let mut v: Vec<(&str, Acc)> = m.into_iter().filter(|(_, a)| a.fails > 0).collect();
    v.sort_by(|a, b| b.1.fails.cmp(&a.1.fails).then(a.0.cmp(b.0)));
    json!({
        "evaluations": runs.len(),
        "models": runs.iter().map(label).collect::<Vec<_>>(),
        "failed": v.len(),
        "questions": v.iter().map(|(id, a)| json!({
            "id": id,
            "subject": a.last.subject,
            "question": a.last.question,
            "expected": a.last.expected.to_string(),
            "fail_count": a.fails,
            "evaluations": a.evals,
            "always_failed": a.fails == a.evals,
            "last_prediction": a.last.prediction,
            "last_extracted": a.last.extracted.map(String::from),
            "last_outcome": format!("{}:{}", a.last.outcome, a.last.detail),
        })).collect::<Vec<_>>(),
    })
}

/// `training_recommendations.json` in the Meerkat pipeline's format: up to ten specialties scoring below 0.5 (lowest
/// first) with their score (`accuracy`; that pipeline's open-QA runs wrote `medical_entity_f1`), `sample_count` and
/// `improvement` over the base; actions for the worst five with `recommended_data_increase` "50-80%" below 0.3 and
/// "30-50%" otherwise.
pub fn recommendations(run: &EvalRun, base: Option<&EvalRun>, rule: &RecommendationRule) -> Recommendations {
    let mut low: Vec<(&String, &Accuracy)> = run.summary.per_subject.iter().filter(|(_, a)| a.accuracy < 0.5).collect();
    low.sort_by(|a, b| a.1.accuracy.total_cmp(&b.1.accuracy).then(a.0.cmp(b.0)));
    low.truncate(10);
    let improvement = |s: &str, a: f64| base.and_then(|b| b.summary.per_subject.get(s)).map(|b| round6(a - b.accuracy));
    let low_performing_specialties = low
        .iter()
        .map(|(s, a)| LowPerformingSpecialty {
            specialty: (*s).clone(),
            medical_entity_f1: None,
            accuracy: Some(round6(a.accuracy)),
            sample_count: Some(a.n as u64),
            improvement: Some(improvement(s, a.accuracy).unwrap_or(0.0)),
            current_samples: None,
            recommended_samples: None,
            recommended_increase: None,
        })
        .collect();
    let recommended_actions = low
        .iter()
        .take(5)
        .map(|(s, a)| {
            let increase = if a.accuracy < 0.3 { "50-80%" } else { "30-50%" };
            (
                (*s).clone(),
                RecommendedAction {
                    increase_training_data: true,
                    focus_on_entity_extraction: Some(true),
                    recommended_data_increase: Some(Increase::Text(increase.into())),
                },
            )
        })
        .collect();
    let overall = OverallPerformance {
        total_samples_evaluated: Some(run.summary.n as u64),
        accuracy: Some(round6(run.summary.accuracy.accuracy)),
        model: Some(run.summary.model.clone()),
        benchmark: Some(run.summary.benchmark.clone()),
        overall_improvement_accuracy: base.map(|b| round6(run.summary.accuracy.accuracy - b.summary.accuracy.accuracy)),
        ..Default::default()
    };
    // The Meerkat pipeline's primary keys: the specialties below the rule's threshold and their new training share.
    let mut weak: Vec<(&String, &Accuracy)> =
        run.summary.per_subject.iter().filter(|(_, a)| a.accuracy < rule.threshold).collect();
    weak.sort_by(|a, b| a.1.accuracy.total_cmp(&b.1.accuracy).then(a.0.cmp(b.0)));
    let mut overall_improvement = BTreeMap::new();
    if let Some(b) = base {
        overall_improvement
            .insert("accuracy".to_string(), round6(run.summary.accuracy.accuracy - b.summary.accuracy.accuracy));
    }
    Recommendations {
        low_performance_specialties: weak.iter().map(|(s, _)| (*s).clone()).collect(),
        recommended_sample_increases: weak.iter().map(|(s, _)| ((*s).clone(), rule.share)).collect(),
        overall_improvement,
        criteria: Some(json!({"metric": "accuracy", "threshold": rule.threshold, "share": rule.share,
            "meaning": "recommended_sample_increases[specialty] is the specialty's new training share; low_performing_specialties and recommended_actions are medforge's detail"})),
        low_performing_specialties,
        recommended_actions,
        overall_performance: Some(overall),
    }
}

/// A figure in `training_recommendations.json`: rounded to six decimals.
pub(crate) fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if c.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn html(runs: &[EvalRun], failed: &Value, recs: &Recommendations, charts: &[(String, PathBuf)]) -> Result<String> {
    let last = &runs[runs.len() - 1];
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>medforge evaluation report</title>\n<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:0.5em 0}.low{color:#b2182b;font-weight:600}pre{background:#f7f7f7;padding:1em;overflow:auto}</style></head><body>\n");
    h.push_str(&format!(
        "<h1>Evaluation report: {} on {}</h1>\n<p>Mode: {} · items: {} · created {} · medforge {}. Accuracy CIs are 95% percentile bootstrap ({} resamples, seed {}); unparseable answers count as wrong and are listed.</p>\n",
        esc(&last.summary.model),
        esc(&last.summary.benchmark),
        esc(&last.summary.mode),
        last.summary.n,
        esc(&last.summary.created),
        esc(&last.summary.medforge_version),
        BOOTSTRAP_SAMPLES,
        last.summary.seed
    ));
    h.push_str("<h2>Summary</h2>\n<table id=\"summary\"><tr><th>model</th><th>benchmark</th><th>mode</th><th>n</th><th>accuracy</th><th>95% CI</th><th>unparseable</th><th>errors</th></tr>\n");
    for r in runs {
        let s = &r.summary;
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} – {}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&label(r)),
            esc(&s.benchmark),
            esc(&s.mode),
            s.n,
            pct(s.accuracy.accuracy),
            pct(s.accuracy.ci_low),
            pct(s.accuracy.ci_high),
            s.unparseable,
            s.errors
        ));
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
    h.push_str("<h2>Per subject</h2>\n<table id=\"subjects\"><tr><th>subject</th><th>n</th><th>accuracy</th><th>95% CI</th></tr>\n");
    for (s, a) in &last.summary.per_subject {
        let cls = if a.accuracy < 0.5 { " class=\"low\"" } else { "" };
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td{cls}>{}</td><td>{} – {}</td></tr>\n",
            esc(s),
            a.n,
            pct(a.accuracy),
            pct(a.ci_low),
            pct(a.ci_high)
        ));
    }
    h.push_str("</table>\n<h2>Most often failed questions</h2>\n<table id=\"failed\"><tr><th>id</th><th>subject</th><th>fails</th><th>expected</th><th>last answer</th><th>question</th></tr>\n");
    for q in failed["questions"].as_array().into_iter().flatten().take(25) {
        let question: String = q["question"].as_str().unwrap_or("").chars().take(160).collect();
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>\n",
            esc(q["id"].as_str().unwrap_or("")),
            esc(q["subject"].as_str().unwrap_or("")),
            q["fail_count"],
            q["evaluations"],
            esc(q["expected"].as_str().unwrap_or("")),
            esc(q["last_extracted"].as_str().unwrap_or("—")),
            esc(&question)
        ));
    }
    h.push_str("</table>\n<h2>Training recommendations</h2>\n<pre id=\"recommendations\">");
    h.push_str(&esc(&serde_json::to_string_pretty(recs).unwrap_or_default()));
    h.push_str("</pre>\n</body></html>\n");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The MedGemma Korean pipeline's `division_report.json`: accuracy, count, and the mean loss of the expected
    /// option where log-likelihoods were scored.
    #[test]
    fn division_report_per_division() {
        let item = |id: &str, div: Option<&str>, correct: bool, lps: Vec<f64>| ItemResult {
            id: id.into(),
            subject: "s".into(),
            question: "q".into(),
            expected: 'B',
            prediction: String::new(),
            extracted: None,
            outcome: "letter".into(),
            detail: String::new(),
            correct,
            option_logprobs: lps,
            division: div.map(str::to_string),
            reasoning_score: None,
        };
        let r = division_report(&[
            item("1", Some("1.4.1"), true, vec![-2.0, -0.5, -3.0]),
            item("2", Some("1.4.1"), false, vec![-0.1, -1.5, -3.0]),
            item("3", Some("2"), true, vec![]),
            item("4", None, false, vec![]),
        ]);
        assert_eq!(r["1.4.1"], DivisionStats { accuracy: 0.5, count: 2, avg_loss: Some(1.0) });
        assert_eq!(serde_json::to_value(&r["2"]).unwrap(), json!({"accuracy": 1.0, "count": 1, "avg_loss": null}));
        assert_eq!(r["UNKNOWN"].count, 1);
    }
    #[test]
    fn b64() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
