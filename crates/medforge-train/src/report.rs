//! `training_info.json` (the run's manifest: config, versions, seed, data, every step's loss and learning rate,
//! throughput, evaluations and final metrics) and `loss_curve.png`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checkpoint::{EvalLog, StepLog};
use crate::config::TrainConfig;
use crate::data::DataStats;
use crate::error::{Result, TrainError};

/// Memory a full fine-tune holds besides activations: weights, gradients and AdamW's two moments, all f32.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MemoryEstimate {
    pub weights_bytes: u64,
    pub gradient_bytes: u64,
    pub optimizer_bytes: u64,
    pub total_bytes: u64,
}

impl MemoryEstimate {
    pub fn for_params(trainable: usize, total_params: usize) -> MemoryEstimate {
        let w = 4 * total_params as u64;
        let g = 4 * trainable as u64;
        let o = 8 * trainable as u64;
        MemoryEstimate { weights_bytes: w, gradient_bytes: g, optimizer_bytes: o, total_bytes: w + g + o }
    }
}

/// The headline numbers at the end of a run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FinalMetrics {
    /// Mean training loss of the last 10 steps.
    pub train_loss: Option<f64>,
    pub eval_loss: Option<f64>,
    pub eval_accuracy: Option<f64>,
    pub eval_reward_accuracy: Option<f64>,
    pub eval_reward_margin: Option<f64>,
    /// The first evaluation's numbers, for before/after.
    pub initial_eval_loss: Option<f64>,
    pub initial_eval_accuracy: Option<f64>,
    pub initial_eval_reward_accuracy: Option<f64>,
}

/// `training_info.json`.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingInfo {
    pub medforge_version: String,
    pub created: String,
    pub config: TrainConfig,
    pub seed: u64,
    pub base: String,
    pub base_params: usize,
    pub trainable_params: usize,
    pub threads: usize,
    pub train_data: DataStats,
    pub eval_data: Option<DataStats>,
    pub total_steps: u64,
    pub steps_done: u64,
    pub warmup_steps: u64,
    pub tokens_per_second: f64,
    pub mean_step_seconds: f64,
    pub elapsed_seconds: f64,
    /// The process's peak resident memory (Linux `VmHWM`).
    pub peak_rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_finetune_memory: Option<MemoryEstimate>,
    pub final_metrics: FinalMetrics,
    /// The adapter folder (LoRA, DPO) or model folder (full fine-tuning).
    pub trained: Option<PathBuf>,
    pub resumed_from: Vec<PathBuf>,
    pub steps: Vec<StepLog>,
    pub evals: Vec<EvalLog>,
}

/// Peak resident memory of this process, from `/proc/self/status` (`None` elsewhere).
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Final metrics from the step and eval logs.
pub fn final_metrics(steps: &[StepLog], evals: &[EvalLog]) -> FinalMetrics {
    let tail = &steps[steps.len().saturating_sub(10)..];
    let last = evals.last();
    let first = evals.first();
    FinalMetrics {
        train_loss: (!tail.is_empty()).then(|| tail.iter().map(|s| s.loss).sum::<f64>() / tail.len() as f64),
        eval_loss: last.map(|e| e.loss),
        eval_accuracy: last.and_then(|e| e.accuracy),
        eval_reward_accuracy: last.and_then(|e| e.reward_accuracy),
        eval_reward_margin: last.and_then(|e| e.reward_margin),
        initial_eval_loss: first.map(|e| e.loss),
        initial_eval_accuracy: first.and_then(|e| e.accuracy),
        initial_eval_reward_accuracy: first.and_then(|e| e.reward_accuracy),
    }
}

/// Write `training_info.json` atomically.
pub fn write_info(dir: &Path, info: &TrainingInfo) -> Result<PathBuf> {
    let p = dir.join("training_info.json");
    let body = serde_json::to_vec_pretty(info).expect("info serialises");
    medforge_data::write::write_atomic(&p, &body)?;
    Ok(p)
}

/// `loss_curve.png`: training loss per step, and the eval loss where measured.
pub fn write_loss_curve(dir: &Path, title: &str, steps: &[StepLog], evals: &[EvalLog]) -> Result<PathBuf> {
    let p = dir.join("loss_curve.png");
    let mut series =
        vec![("train loss".to_string(), steps.iter().map(|s| (s.step as f64, s.loss)).collect::<Vec<_>>())];
    if !evals.is_empty() {
        series.push(("eval loss".to_string(), evals.iter().map(|e| (e.step as f64, e.loss)).collect()));
    }
    let tmp = dir.join(".loss_curve.tmp.png");
    medforge_eval::charts::lines_over_steps(&tmp, title, "loss", &series)
        .map_err(|e| medforge_eval::EvalError::Chart { path: p.clone(), source: e })?;
    std::fs::rename(&tmp, &p).map_err(|e| TrainError::io(&p, e))?;
    Ok(p)
}
