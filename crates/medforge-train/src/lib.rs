//! medforge training on the local engine's own forward and backward passes (`medforge_engine::model`): LoRA SFT over
//! f32/bf16 or quantised GGUF bases (the QLoRA pattern: a frozen base costs `dX = dY·W` only), full fine-tuning of
//! f32 bases, and DPO with the adapter-off base as reference.
//!
//! - `config`: the `[train]` section ([`TrainConfig`]), validated with messages naming the key;
//! - `data`: formatted rows, DPO triples and `dpo_pairs.jsonl` as token ids, with truncation counted;
//! - `loss`: masked cross-entropy and DPO's sigmoid loss at the logits, the output projection on loss rows only;
//! - `optim`: fused AdamW over flat moment buffers, gradient clipping, Hugging Face's schedules;
//! - `params`: the trainable layout (a [`medforge_engine::model::GradSink`]) and PEFT's LoRA initialisation;
//! - `session`: a loaded base with its data and optimiser, one step, an evaluation, saving;
//! - `checkpoint`: atomic checkpoints and exact resume;
//! - `handoff`: the job as TRL/axolotl files for multi-GPU machines (`medforge train export`);
//! - `probe` and `loops`: a benchmark checked between rounds, loop-until-target and probe-and-focus (the MedGemma
//!   Korean pipeline's);
//! - `run`: a whole run with its progress bar and outputs; `report`: `training_info.json` and the loss curve.

#![recursion_limit = "256"]

mod checkpoint;
mod config;
mod data;
mod error;
mod handoff;
mod loops;
mod loss;
mod optim;
mod params;
mod probe;
mod report;
mod run;
mod session;

pub use checkpoint::{EvalLog, StepLog, TrainerState};
pub use config::{DpoConfig, LoopConfig, LoraConfig, Method, Objective, Schedule, TrainConfig, ALL_TARGETS};
pub use data::{DataStats, Example, Pair};
pub use error::{Result, TrainError};
pub use handoff::{export as export_handoff, HandoffEngine, HandoffOptions, HandoffSummary};
pub use loops::{run_loops, LoopMode, LoopOutcome};
pub use probe::{DivisionStats, Probe, ProbeResult};
pub use report::{FinalMetrics, MemoryEstimate, TrainingInfo};
pub use run::{run, trained_dir, Outcome, RunOptions};
pub use session::{Plan, Session, TrainData};
