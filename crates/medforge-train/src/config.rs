//! The `[train]` section: [`TrainConfig`] as written in TOML (plain data, unknown keys rejected with a suggestion),
//! and [`TrainConfig::validate`], which checks ranges and combinations and resolves paths. The section stands alone in
//! a file or sits in a pipeline config beside `[run]` and `[[stages]]`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// What is trained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// LoRA adapters on a frozen base (any base: f32/bf16 Hugging Face or quantised GGUF, the QLoRA pattern).
    #[default]
    Lora,
    /// Every weight (f32/bf16 Hugging Face bases only).
    Full,
    /// Direct preference optimisation of LoRA adapters; the reference is the base with the adapter off.
    Dpo,
}

/// Which tokens carry the loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// The completion (the assistant's answer) only; the prompt is context.
    #[default]
    Completion,
    /// Every token of `text` (continued pretraining on plain text).
    All,
}

/// The learning-rate schedule after warm-up (Hugging Face's `get_scheduler` shapes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    #[default]
    Linear,
    Cosine,
    Constant,
}

/// The seven projections PEFT can target in llama/qwen2/gemma models.
pub const ALL_TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// `[train.lora]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Scale `alpha / sqrt(r)` instead of `alpha / r` (rsLoRA).
    pub rslora: bool,
    /// PEFT target modules; all seven by default.
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig { r: 8, alpha: 16.0, dropout: 0.0, rslora: false, targets: ALL_TARGETS.map(String::from).to_vec() }
    }
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }
}

/// `[train.dpo]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpoConfig {
    pub beta: f64,
    /// cDPO's label smoothing ε in `[0, 0.5)`.
    pub label_smoothing: f64,
}

impl Default for DpoConfig {
    fn default() -> Self {
        DpoConfig { beta: 0.1, label_smoothing: 0.0 }
    }
}

/// `[train.loop]`: evaluation-driven training (`medforge train --until` / `--probe-focus`), the MedGemma Korean
/// pipeline's loop-until-target and probe-and-focus; defaults are that pipeline's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    /// The multiple-choice benchmark checked between rounds (`kormedmcqa`, `medqa`, ...).
    pub benchmark: String,
    /// Its file or folder.
    pub benchmark_data: PathBuf,
    /// Items checked each time.
    pub eval_samples: usize,
    /// Stop at this accuracy (percent).
    pub target: f64,
    /// `--until`: at most this many loops over the training types.
    pub max_loops: usize,
    /// `--probe-focus`: steps per type in the probe phase.
    pub probe_steps: u64,
    /// Steps per focus round.
    pub focus_steps: u64,
    /// Keep focusing on a type while a round gains at least this many accuracy points.
    pub min_improvement: f64,
    pub max_focus_rounds: usize,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            benchmark: "kormedmcqa".into(),
            benchmark_data: PathBuf::new(),
            eval_samples: 200,
            target: 90.0,
            max_loops: 10,
            probe_steps: 30,
            focus_steps: 50,
            min_improvement: 1.0,
            max_focus_rounds: 10,
        }
    }
}

/// `[train]` as written. Paths are relative to the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// The base model: a GGUF file or a Hugging Face folder.
    pub base: PathBuf,
    pub method: Method,
    /// A formatted folder (`train.jsonl`, `eval.jsonl`, `format.json`), or for DPO also a `dpo_pairs.jsonl`.
    pub data: PathBuf,
    /// The training run's folder (checkpoints, adapter, training_info.json).
    pub output: PathBuf,
    pub seed: u64,
    pub objective: Objective,
    /// Train on these training types only (`letter`, `text_reasoning`, 1-4, ...); all by default.
    pub types: Vec<String>,
    /// Longest sequence in tokens; longer rows are truncated (counted) and rows left without loss tokens dropped.
    pub max_length: usize,
    /// Fill micro-batches up to `batch_size × max_length` tokens instead of `batch_size` rows. Rows stay separate
    /// sequences (no attention across rows), so nothing is padded either way.
    pub packing: bool,
    pub epochs: f64,
    /// Stop after this many optimiser steps (overrides `epochs` when set).
    pub max_steps: Option<u64>,
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    pub grad_accum: usize,
    pub lr: f64,
    pub schedule: Schedule,
    pub warmup_steps: u64,
    /// Warm-up as a share of all steps (used when `warmup_steps` is 0).
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0: no clipping).
    pub max_grad_norm: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_eps: f64,
    /// Evaluate the eval split every N steps (0: only at the end).
    pub eval_every: u64,
    /// Evaluate on at most this many eval rows.
    pub eval_rows: usize,
    /// Write a checkpoint every N steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Keep the newest N checkpoints.
    pub keep_checkpoints: usize,
    /// Start from this PEFT adapter instead of PEFT's initialisation (LoRA and DPO).
    pub init_adapter: Option<PathBuf>,
    /// Compute threads (0: all cores).
    pub threads: usize,
    pub lora: LoraConfig,
    pub dpo: DpoConfig,
    #[serde(rename = "loop")]
    pub loops: LoopConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            base: PathBuf::new(),
            method: Method::Lora,
            data: PathBuf::new(),
            output: PathBuf::from("train_out"),
            seed: 42,
            objective: Objective::Completion,
            types: Vec::new(),
            max_length: 512,
            packing: false,
            epochs: 1.0,
            max_steps: None,
            batch_size: 4,
            grad_accum: 1,
            lr: 2e-4,
            schedule: Schedule::Linear,
            warmup_steps: 0,
            warmup_ratio: 0.0,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            eval_every: 0,
            eval_rows: 200,
            checkpoint_every: 0,
            keep_checkpoints: 2,
            init_adapter: None,
            threads: 0,
            lora: LoraConfig::default(),
            dpo: DpoConfig::default(),
            loops: LoopConfig::default(),
        }
    }
}

/// A config file: `[train]`, and any other pipeline sections (ignored here).
#[derive(Deserialize)]
struct File {
    train: Option<toml::Value>,
}

impl TrainConfig {
    /// Read `[train]` from a config file and resolve its paths against the file's folder.
    pub fn load(path: &Path) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let file: File = toml::from_str(&text).map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
        let Some(section) = file.train else {
            return Err(TrainError::Config(format!(
                "{}: no [train] section; add one, e.g.\n\n[train]\nbase = \"model.gguf\"\ndata = \"runs/x/formatted\"\noutput = \"runs/lora\"",
                path.display()
            )));
        };
        let mut cfg: TrainConfig = section.try_into().map_err(|e: toml::de::Error| {
            TrainError::Config(format!(
                "{}: [train]: {}",
                path.display(),
                medforge_data::config::with_suggestion(&e.to_string())
            ))
        })?;
        cfg.rebase(path.parent().unwrap_or(Path::new(".")));
        cfg.resolve_defaults();
        Ok(cfg)
    }

    /// Make relative paths relative to `base`.
    pub fn rebase(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if !p.as_os_str().is_empty() && p.is_relative() {
                *p = medforge_data::config::normalize(&base.join(&*p));
            }
        };
        fix(&mut self.base);
        fix(&mut self.data);
        fix(&mut self.output);
        if let Some(p) = &mut self.init_adapter {
            fix(p);
        }
        fix(&mut self.loops.benchmark_data);
    }

    /// `LoRA SFT`, `full fine-tuning`, `DPO` (for titles and messages).
    pub fn method_name(&self) -> &'static str {
        match self.method {
            Method::Lora => "LoRA SFT",
            Method::Full => "full fine-tuning",
            Method::Dpo => "DPO",
        }
    }

    /// Fill in defaults that depend on the machine: an empty `base` is the embedded default model (SmolLM2), when
    /// it has been fetched.
    pub fn resolve_defaults(&mut self) {
        if self.base.as_os_str().is_empty() {
            if let Some(p) = medforge_engine::default_model() {
                self.base = p;
            }
        }
    }

    /// Check ranges and combinations; every message names the `[train]` key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: String| Err(TrainError::Config(format!("[train] {key}: {why}")));
        if self.base.as_os_str().is_empty() {
            return bad(
                "base",
                "missing: a GGUF file or a Hugging Face folder (or fetch the default model with scripts/fetch_model.sh)"
                    .into(),
            );
        }
        if !self.base.exists() {
            return bad("base", format!("{} does not exist", self.base.display()));
        }
        if self.data.as_os_str().is_empty() {
            return bad("data", "missing: a formatted folder (the `format` stage's output)".into());
        }
        if !self.data.exists() {
            return bad("data", format!("{} does not exist", self.data.display()));
        }
        if self.max_length < 2 {
            return bad("max_length", format!("{} is too short to hold a prompt and a target", self.max_length));
        }
        if self.batch_size == 0 || self.grad_accum == 0 {
            return bad("batch_size/grad_accum", "must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", format!("{} is not a positive learning rate", self.lr));
        }
        if self.max_steps.is_none() && (self.epochs.is_nan() || self.epochs <= 0.0) {
            return bad("epochs", format!("{} trains nothing; set epochs > 0 or max_steps", self.epochs));
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad("warmup_ratio", format!("{} is not in [0, 1)", self.warmup_ratio));
        }
        if self.weight_decay < 0.0 || self.max_grad_norm < 0.0 {
            return bad("weight_decay/max_grad_norm", "must not be negative".into());
        }
        if !(0.0..1.0).contains(&self.adam_beta1) || !(0.0..1.0).contains(&self.adam_beta2) || self.adam_eps <= 0.0 {
            return bad("adam_beta1/adam_beta2/adam_eps", "betas in [0, 1), eps > 0".into());
        }
        if self.keep_checkpoints == 0 {
            return bad("keep_checkpoints", "must be at least 1 (resume needs the newest)".into());
        }
        if self.method != Method::Full {
            let l = &self.lora;
            if l.r == 0 {
                return bad("lora.r", "must be at least 1".into());
            }
            if l.alpha.is_nan() || l.alpha <= 0.0 {
                return bad("lora.alpha", format!("{} is not positive", l.alpha));
            }
            if !(0.0..1.0).contains(&l.dropout) {
                return bad("lora.dropout", format!("{} is not in [0, 1)", l.dropout));
            }
            if l.targets.is_empty() {
                return bad("lora.targets", "empty: name at least one of the seven projections".into());
            }
            for t in &l.targets {
                if !ALL_TARGETS.contains(&t.as_str()) {
                    let hint = medforge_data::config::closest(t, ALL_TARGETS.iter().copied())
                        .map(|c| format!(" (did you mean `{c}`?)"))
                        .unwrap_or_default();
                    return bad(
                        "lora.targets",
                        format!(
                            "`{t}` is not a module of llama/qwen2/gemma models; use {}{hint}",
                            ALL_TARGETS.join(", ")
                        ),
                    );
                }
            }
        } else if self.init_adapter.is_some() {
            return bad("init_adapter", "full fine-tuning trains the weights themselves; remove init_adapter".into());
        }
        if self.method == Method::Dpo {
            let d = &self.dpo;
            if d.beta.is_nan() || d.beta <= 0.0 {
                return bad("dpo.beta", format!("{} is not positive", d.beta));
            }
            if !(0.0..0.5).contains(&d.label_smoothing) {
                return bad("dpo.label_smoothing", format!("{} is not in [0, 0.5)", d.label_smoothing));
            }
            if self.objective == Objective::All {
                return bad("objective", "DPO scores completions; `all` does not apply".into());
            }
        }
        for t in &self.types {
            if medforge_data::formatted::TrainingType::parse(t).is_none() {
                return bad(
                    "types",
                    format!("unknown training type `{t}` (1-4, text, text_reasoning, letter, letter_reasoning, dpo)"),
                );
            }
        }
        Ok(())
    }

    /// The fields that shape the loss curve, as JSON: a checkpoint records them, and resuming with different ones is
    /// an error naming the field (output, evaluation and checkpoint cadence may change between runs).
    pub fn curve_fields(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("config serialises");
        if let Some(m) = v.as_object_mut() {
            for k in ["output", "eval_every", "eval_rows", "checkpoint_every", "keep_checkpoints", "threads", "loop"] {
                m.remove(k);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(&p, "[train]\nbase = \"m.gguf\"\nlearning_rate = 1e-4\n").unwrap();
        let e = TrainConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("learning_rate") && e.contains("t.toml"), "{e}");
        std::fs::write(&p, "[run]\nname = \"x\"\n").unwrap();
        assert!(TrainConfig::load(&p).unwrap_err().to_string().contains("no [train] section"));

        std::fs::write(dir.path().join("m.gguf"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("fmt")).unwrap();
        std::fs::write(
            &p,
            "[run]\nname = \"x\"\n[train]\nbase = \"m.gguf\"\ndata = \"fmt\"\n[train.lora]\ntargets = [\"q_prj\"]\n",
        )
        .unwrap();
        let cfg = TrainConfig::load(&p).unwrap();
        assert_eq!(cfg.base, dir.path().join("m.gguf"));
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("lora.targets") && e.contains("q_proj"), "{e}");
    }

    #[test]
    fn rslora_scales_by_the_square_root() {
        let l = LoraConfig { r: 64, alpha: 128.0, rslora: true, ..Default::default() };
        assert_eq!(l.scale(), 16.0);
        assert_eq!(LoraConfig { rslora: false, ..l }.scale(), 2.0);
    }
}
