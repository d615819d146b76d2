//! Evaluation-driven training, as the MedGemma Korean pipeline runs it:
//!
//! - **loop until target** (`--until TARGET --max-loops N`): each loop trains the training types in order, one epoch
//!   each, saving `loop_N/after_typeK/`; the benchmark is checked after each loop; the best loop is kept in
//!   `best_checkpoint/`, and training stops at the target (`final/`). `loop_report.json` records every loop.
//! - **probe and focus** (`--probe-focus`): train `probe_steps` on each type and measure the benchmark gain; then
//!   focus on the type with the best average gain, `focus_steps` a round, while a round gains at least
//!   `min_improvement` points (at most `max_focus_rounds`), then rotate to the next best type; stop at the target or
//!   when every type is exhausted. `final_report.json` holds each type's improvements and a ranking.
//!
//! Each segment (a type's epoch in a loop, a probe, a focus round) is a fresh optimiser run over its own seeded step
//! plan, as that pipeline's one-trainer-per-segment scripts do. Every check writes `division_report.json` and adds
//! its misses to `failed_questions.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use medforge_data::formatted::{self, TrainingType};
use medforge_eval::failures::FailureTracker;
use medforge_text::rng::derive_seed;
use serde::Serialize;
use serde_json::json;

use crate::checkpoint::StepLog;
use crate::config::{Method, TrainConfig};
use crate::data;
use crate::error::{Result, TrainError};
use crate::optim::{self, AdamState};
use crate::probe::{Probe, ProbeResult};
use crate::run::write_dir_atomic;
use crate::session::Session;

/// Which loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopMode {
    Until,
    ProbeFocus,
}

/// The MedGemma Korean pipeline's name of a training type (`type3_word`), the key of its reports.
fn type_key(t: TrainingType) -> &'static str {
    match t {
        TrainingType::Text => "type1_text",
        TrainingType::TextReasoning => "type2_text_reasoning",
        TrainingType::Letter => "type3_word",
        TrainingType::LetterReasoning => "type4_word_reasoning",
        TrainingType::Dpo => "dpo",
    }
}

/// What a loop run produced.
#[derive(Debug, Clone, Serialize)]
pub struct LoopOutcome {
    pub output: PathBuf,
    pub initial_accuracy: f64,
    pub best_accuracy: f64,
    pub reached_target: bool,
    /// `loop_report.json` or `final_report.json`.
    pub report: PathBuf,
    pub steps: usize,
}

struct Driver<'a> {
    s: Session,
    cfg: &'a TrainConfig,
    probe: Probe,
    failures: FailureTracker,
    out: PathBuf,
    steps: Vec<StepLog>,
    best: f64,
    checks: usize,
}

impl Driver<'_> {
    /// Train one segment over `rows`: a fresh optimiser and schedule over its plan.
    fn segment(&mut self, rows: &[usize], label: &str, epochs: f64, max_steps: Option<u64>) -> Result<Vec<StepLog>> {
        let plan = self.s.plan(rows, derive_seed(self.cfg.seed, label), epochs, max_steps);
        let total = plan.steps.len() as u64;
        let warmup = if self.cfg.warmup_steps > 0 {
            self.cfg.warmup_steps
        } else {
            (self.cfg.warmup_ratio * total as f64).ceil() as u64
        };
        self.s.adam = AdamState::new(self.s.trainable.len());
        let base = self.steps.len() as u64;
        let mut logs = Vec::with_capacity(plan.steps.len());
        for (k, micro) in plan.steps.iter().enumerate() {
            let lr = optim::lr_at(self.cfg.schedule, self.cfg.lr, k as u64, warmup, total);
            // Dropout seeds from the global step, so segments never reuse masks.
            let mut log = self.s.step(micro, base + k as u64, lr)?;
            log.step = base + k as u64 + 1;
            log.epoch = plan.epoch_at[k];
            logs.push(log);
        }
        self.steps.extend(logs.iter().cloned());
        Ok(logs)
    }

    /// Check the benchmark: record misses, write the division report, keep the best adapter.
    fn check(&mut self, label: &str) -> Result<ProbeResult> {
        let r = self.probe.run(self.s.engine.model())?;
        let step = self.steps.len() as u64;
        for it in r.items.iter().filter(|i| !i.correct) {
            self.failures.record(&it.id, &it.expected.to_string(), &it.predicted.to_string(), &it.preview, step);
        }
        self.failures.write(&self.out.join("failed_questions.json"))?;
        // The MedGemma Korean pipeline's `{division: {accuracy, count, avg_loss}}`; the overall figures are in the
        // loop report.
        medforge_data::write::write_atomic(
            &self.out.join("division_report.json"),
            &serde_json::to_vec_pretty(&r.by_division()).expect("serialises"),
        )?;
        self.checks += 1;
        if r.accuracy > self.best || self.checks == 1 {
            self.best = self.best.max(r.accuracy);
            self.save("best_checkpoint")?;
        }
        eprintln!("{label}: {} accuracy {:.1}% ({} items)", self.probe.benchmark, r.accuracy, r.count);
        Ok(r)
    }

    fn save(&self, name: &str) -> Result<PathBuf> {
        let dir = self.out.join(name);
        write_dir_atomic(&dir, |tmp| self.s.save_trained(tmp))?;
        Ok(dir)
    }
}

/// The system prompt of the training set's type-3 (letter) rows, which the benchmark is asked with.
fn letter_system_prompt(cfg: &TrainConfig) -> Result<Option<String>> {
    let Some(file) = data::split_file(&cfg.data, "train")? else { return Ok(None) };
    Ok(formatted::read_jsonl(&file)?
        .iter()
        .filter(|r| r.training_type == TrainingType::Letter)
        .find_map(|r| r.messages.iter().find(|m| m.role == "system").map(|m| m.content.clone())))
}

/// Run `mode` as `cfg` and its `[train.loop]` say, into `cfg.output`.
pub fn run_loops(cfg: &TrainConfig, mode: LoopMode) -> Result<LoopOutcome> {
    cfg.validate()?;
    if cfg.method == Method::Dpo {
        return Err(TrainError::Config("[train] method: the evaluation-driven loops train SFT (lora or full)".into()));
    }
    let l = &cfg.loops;
    if l.benchmark_data.as_os_str().is_empty() || !l.benchmark_data.exists() {
        return Err(TrainError::Config(format!(
            "[train.loop] benchmark_data: `{}` does not exist; name the {} file the loops check between rounds",
            l.benchmark_data.display(),
            l.benchmark
        )));
    }
    medforge_engine::set_threads(cfg.threads);
    let out = cfg.output.clone();
    std::fs::create_dir_all(&out).map_err(|e| TrainError::io(&out, e))?;
    let s = Session::open(cfg)?;
    let system = letter_system_prompt(cfg)?;
    let probe = Probe::load(&s.engine, &l.benchmark, &l.benchmark_data, l.eval_samples, system.as_deref())?;
    let failures = FailureTracker::load(&out.join("failed_questions.json"))?;
    let mut d = Driver { s, cfg, probe, failures, out: out.clone(), steps: Vec::new(), best: f64::MIN, checks: 0 };
    let types: Vec<TrainingType> =
        [TrainingType::Text, TrainingType::TextReasoning, TrainingType::Letter, TrainingType::LetterReasoning]
            .into_iter()
            .filter(|t| !d.s.rows_of(&[*t]).is_empty())
            .collect();
    if types.is_empty() {
        return Err(TrainError::Data(format!("{}: no rows of the four training types", cfg.data.display())));
    }
    let initial = d.check("initial")?.accuracy;
    let (reached, report) = match mode {
        LoopMode::Until => until(&mut d, &types, initial)?,
        LoopMode::ProbeFocus => probe_focus(&mut d, &types, initial)?,
    };
    d.save("final")?;
    if !d.steps.is_empty() {
        crate::report::write_loss_curve(&out, &format!("{} loops", cfg.method_name()), &d.steps, &[])?;
    }
    Ok(LoopOutcome {
        output: out,
        initial_accuracy: initial,
        best_accuracy: d.best,
        reached_target: reached,
        report,
        steps: d.steps.len(),
    })
}

fn until(d: &mut Driver, types: &[TrainingType], initial: f64) -> Result<(bool, PathBuf)> {
    let l = &d.cfg.loops;
    let mut loops = Vec::new();
    let mut reached = initial >= l.target;
    for n in 1..=l.max_loops {
        if reached {
            break;
        }
        let mut per_type = BTreeMap::new();
        for (k, t) in types.iter().enumerate() {
            let rows = d.s.rows_of(&[*t]);
            let logs = d.segment(&rows, &format!("loop{n}-{}", t.as_str()), 1.0, None)?;
            let dir = d.save(&format!("loop_{n}/after_type{}", t.number().unwrap_or(k as u8 + 1)))?;
            per_type.insert(
                type_key(*t),
                json!({"steps": logs.len(), "first_loss": logs.first().map(|s| s.loss),
                       "last_loss": logs.last().map(|s| s.loss), "checkpoint": dir}),
            );
        }
        let r = d.check(&format!("loop {n}"))?;
        reached = r.accuracy >= l.target;
        loops.push(json!({"loop": n, "accuracy": r.accuracy, "types": per_type, "reached_target": reached}));
        write_report(
            &d.out.join("loop_report.json"),
            &json!({
                "benchmark": d.probe.benchmark, "target": l.target, "max_loops": l.max_loops,
                "initial_accuracy": initial, "best_accuracy": d.best, "reached_target": reached, "loops": loops,
                "persistent_failures": d.failures.top(10),
            }),
        )?;
    }
    if loops.is_empty() {
        write_report(
            &d.out.join("loop_report.json"),
            &json!({
                "benchmark": d.probe.benchmark, "target": l.target, "initial_accuracy": initial,
                "best_accuracy": d.best, "reached_target": reached, "loops": loops,
            }),
        )?;
    }
    Ok((reached, d.out.join("loop_report.json")))
}

#[derive(Default, Serialize)]
struct TypeResult {
    total_steps: u64,
    improvements: Vec<f64>,
    is_exhausted: bool,
}

fn avg(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::MIN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn probe_focus(d: &mut Driver, types: &[TrainingType], initial: f64) -> Result<(bool, PathBuf)> {
    let l = d.cfg.loops.clone();
    let mut results: BTreeMap<&'static str, TypeResult> = BTreeMap::new();
    let mut acc = initial;
    let mut reached = acc >= l.target;
    // Probe: a few steps of each type, each gain measured against the accuracy before it.
    for t in types {
        if reached {
            break;
        }
        let rows = d.s.rows_of(&[*t]);
        let logs = d.segment(&rows, &format!("probe-{}", t.as_str()), f64::MAX, Some(l.probe_steps))?;
        let r = d.check(&format!("probe {}", type_key(*t)))?;
        let e = results.entry(type_key(*t)).or_default();
        e.total_steps += logs.len() as u64;
        e.improvements.push(r.accuracy - acc);
        acc = r.accuracy;
        reached = acc >= l.target;
    }
    // Focus: the best type first, while it keeps gaining; then the next.
    let mut order: Vec<TrainingType> = types.to_vec();
    order.sort_by(|a, b| avg(&results[type_key(*b)].improvements).total_cmp(&avg(&results[type_key(*a)].improvements)));
    for t in order {
        if reached {
            break;
        }
        let rows = d.s.rows_of(&[t]);
        for round in 1..=l.max_focus_rounds {
            let logs = d.segment(&rows, &format!("focus-{}-{round}", t.as_str()), f64::MAX, Some(l.focus_steps))?;
            let r = d.check(&format!("focus {} round {round}", type_key(t)))?;
            let gain = r.accuracy - acc;
            let e = results.entry(type_key(t)).or_default();
            e.total_steps += logs.len() as u64;
            e.improvements.push(gain);
            acc = r.accuracy;
            reached = acc >= l.target;
            if reached || gain < l.min_improvement {
                break;
            }
        }
        results.entry(type_key(t)).or_default().is_exhausted = true;
    }
    let mut ranking: Vec<(&str, f64)> = results.iter().map(|(k, v)| (*k, avg(&v.improvements))).collect();
    ranking.sort_by(|a, b| b.1.total_cmp(&a.1));
    let recommendations: Vec<_> =
        ranking.iter().enumerate().map(|(i, (t, a))| json!({"rank": i + 1, "type": t, "avg_improvement": a})).collect();
    let path = d.out.join("final_report.json");
    write_report(
        &path,
        &json!({
            "benchmark": d.probe.benchmark, "target": l.target, "final_best_accuracy": d.best, "final_accuracy": acc,
            "initial_accuracy": initial, "reached_target": reached,
            "parameters": {"probe_steps": l.probe_steps, "focus_steps": l.focus_steps, "min_improvement": l.min_improvement,
                           "max_focus_rounds": l.max_focus_rounds, "eval_samples": l.eval_samples},
            "type_results": results, "recommendations": recommendations, "persistent_failures": d.failures.top(10),
        }),
    )?;
    Ok((reached, path))
}

fn write_report(path: &Path, v: &serde_json::Value) -> Result<()> {
    medforge_data::write::write_atomic(path, &serde_json::to_vec_pretty(v).expect("serialises"))?;
    Ok(())
}
