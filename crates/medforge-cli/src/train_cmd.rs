//! `medforge train`: LoRA SFT, full fine-tuning and DPO on the local engine, from a `[train]` config section.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use medforge_train::{HandoffEngine, HandoffOptions, LoopMode, RunOptions, TrainConfig};

const TRAIN_HELP: &str = "\
Examples:
  medforge run --config examples/train_medqa.toml               # curate + split + format MedQA -> <run>/formatted
  medforge train --config examples/train_medqa.toml             # LoRA SFT on the formatted train split
  medforge train --config examples/train_medqa.toml --resume    # continue after a crash or kill -9, same curve
  medforge train --config examples/dpo_medquad.toml             # DPO on MedQuAD preference pairs
  medforge train --config F --until 90 --max-loops 10 --benchmark-data kormedmcqa/doctor/test.csv
  medforge train --config F --probe-focus --benchmark-data kormedmcqa/doctor/test.csv
  medforge train export --engine trl --config F --out handoff/  # the same job as a TRL script + accelerate configs

The config's [train] section (alone in a file, or beside [run] and [[stages]] in a pipeline config):
  [train]
  base = \"~/.cache/medforge/models/SmolLM2-135M-Instruct.Q4_1.gguf\"   # GGUF (frozen, any quantisation) or HF folder
  method = \"lora\"              # lora | full (f32/bf16 HF bases) | dpo
  data = \"runs/medqa/formatted\" # the `format` stage's folder: train.jsonl, eval.jsonl, format.json
  output = \"runs/lora\"
  max_length = 512
  batch_size = 4
  grad_accum = 1
  epochs = 1.0                  # or max_steps = 300
  lr = 2e-4
  schedule = \"linear\"          # linear | cosine | constant, with warmup_steps or warmup_ratio
  eval_every = 50               # eval-split loss (and letter accuracy) every N steps
  checkpoint_every = 100
  [train.lora]
  r = 8
  alpha = 16
  targets = [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\", \"down_proj\"]
  [train.dpo]                   # method = \"dpo\": data is dpo_pairs.jsonl or formatted DPO triples
  beta = 0.1

Writes into `output`: adapter/ (PEFT: adapter_config.json + adapter_model.safetensors; `eval --adapter`,
`serve --adapter` and Python peft load it), or model/ for full fine-tuning; checkpoints/step-N/ (atomic);
training_info.json (config, seed, every step's loss, lr and tokens/s, evaluations, final metrics);
loss_curve.png.";

#[derive(Args)]
#[command(after_help = TRAIN_HELP, args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TrainArgs {
    #[command(subcommand)]
    command: Option<TrainCommand>,
    /// A TOML file with a [train] section.
    #[arg(long, required = true)]
    config: Option<PathBuf>,
    /// Continue from the newest checkpoint in the output folder (refused if the config changed).
    #[arg(long)]
    resume: bool,
    /// The training data (overrides [train] data): a formatted folder, e.g. a run's `formatted/`.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The base model (overrides [train] base): a GGUF file or Hugging Face folder.
    #[arg(long)]
    base: Option<PathBuf>,
    /// lora | full | dpo (overrides [train] method).
    #[arg(long)]
    method: Option<String>,
    /// Learning rate (overrides [train] lr).
    #[arg(long)]
    lr: Option<f64>,
    /// Start from this PEFT adapter (overrides [train] init_adapter; `none`: PEFT's initialisation).
    #[arg(long, value_name = "DIR|none")]
    init_adapter: Option<String>,
    /// The output folder (overrides [train] output).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Stop after this many optimiser steps (overrides [train] epochs and max_steps).
    #[arg(long)]
    max_steps: Option<u64>,
    /// Compute threads (overrides [train] threads; 0: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Loop until the [train.loop] benchmark reaches TARGET percent: each loop trains every training type one
    /// epoch in order (loop_N/after_typeK/), checks the benchmark, keeps best_checkpoint/ and stops at the target
    /// (final/). The MedGemma Korean pipeline's loop-until-target.
    #[arg(long, value_name = "TARGET")]
    until: Option<f64>,
    /// With --until: at most N loops (default 10).
    #[arg(long, value_name = "N")]
    max_loops: Option<usize>,
    /// Probe each training type for a few steps, then focus on the type that gains most while it keeps gaining
    /// (final_report.json ranks the types). The MedGemma Korean pipeline's probe-and-focus.
    #[arg(long, conflicts_with = "until")]
    probe_focus: bool,
    /// The benchmark the loops check (overrides [train.loop] benchmark_data); --benchmark names it.
    #[arg(long, value_name = "FILE")]
    benchmark_data: Option<PathBuf>,
    /// kormedmcqa | medqa | medmcqa | pubmedqa | mmlu-medical (overrides [train.loop] benchmark).
    #[arg(long)]
    benchmark: Option<String>,
    /// Benchmark items per check (overrides [train.loop] eval_samples; default 200).
    #[arg(long)]
    eval_samples: Option<usize>,
    /// Steps per type in the probe phase (default 30).
    #[arg(long)]
    probe_steps: Option<u64>,
    /// Steps per focus round (default 50).
    #[arg(long)]
    focus_steps: Option<u64>,
    /// Also write the token rows in the order the steps consume them (JSONL), to feed another trainer the same
    /// batches (bench/train_bench.sh does, for PyTorch + PEFT).
    #[arg(long, value_name = "FILE")]
    dump_plan: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum TrainCommand {
    /// Write the same job (data, chat template, hyperparameters) as files for a multi-GPU machine: a TRL
    /// SFTTrainer/DPOTrainer script with a PEFT LoraConfig, or an axolotl YAML, plus accelerate configs (DDP,
    /// DeepSpeed ZeRO-2/3), the data in the tool's format and a README with the launch commands.
    #[command(
        after_help = "Examples:\n  medforge train export --engine trl --config examples/train_medqa.toml --out handoff/\n  medforge train export --engine axolotl --config examples/train_medqa.toml --model HuggingFaceTB/SmolLM2-135M-Instruct --out handoff/"
    )]
    Export(ExportArgs),
}

#[derive(Args)]
pub struct ExportArgs {
    /// trl or axolotl.
    #[arg(long, value_parser = ["trl", "axolotl"])]
    engine: String,
    /// A TOML file with a [train] section.
    #[arg(long)]
    config: PathBuf,
    /// The training data (overrides [train] data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The Hugging Face model the scripts load: a folder or hub id (default: [train] base when it is a folder; a
    /// GGUF base needs `medforge model export-hf` first).
    #[arg(long)]
    model: Option<String>,
    /// GPUs per node, for the accelerate configs.
    #[arg(long, default_value_t = 8)]
    gpus: usize,
    /// The folder to write.
    #[arg(long)]
    out: PathBuf,
}

impl ExportArgs {
    fn run(self) -> Result<()> {
        let mut cfg = TrainConfig::load(&self.config)?;
        if let Some(d) = self.data {
            cfg.data = d;
        }
        let engine = if self.engine == "trl" { HandoffEngine::Trl } else { HandoffEngine::Axolotl };
        let opts = HandoffOptions { engine, model: self.model, gpus: self.gpus };
        let s = medforge_train::export_handoff(&cfg, &opts, &self.out)
            .with_context(|| format!("exporting {} for {}", self.config.display(), self.engine))?;
        eprintln!(
            "{} training rows, {} eval rows; launch commands in {}",
            s.train_rows,
            s.eval_rows,
            s.dir.join("README.md").display()
        );
        for f in &s.files {
            println!("{}", f.display());
        }
        Ok(())
    }
}

impl TrainArgs {
    pub fn run(self) -> Result<()> {
        if let Some(TrainCommand::Export(e)) = self.command {
            return e.run();
        }
        let config = self.config.expect("clap requires --config");
        let mut cfg = TrainConfig::load(&config)?;
        if let Some(d) = self.data {
            cfg.data = d;
        }
        if let Some(b) = self.base {
            cfg.base = b;
        }
        if let Some(m) = &self.method {
            cfg.method = match m.as_str() {
                "lora" => medforge_train::Method::Lora,
                "full" => medforge_train::Method::Full,
                "dpo" => medforge_train::Method::Dpo,
                other => anyhow::bail!("--method {other}: one of lora, full, dpo"),
            };
        }
        if let Some(lr) = self.lr {
            cfg.lr = lr;
        }
        match self.init_adapter.as_deref() {
            Some("none") => cfg.init_adapter = None,
            Some(p) => cfg.init_adapter = Some(PathBuf::from(p)),
            None => {}
        }
        if let Some(o) = self.output {
            cfg.output = o;
        }
        if let Some(n) = self.max_steps {
            cfg.max_steps = Some(n);
        }
        if let Some(t) = self.threads {
            cfg.threads = t;
        }
        {
            let l = &mut cfg.loops;
            if let Some(t) = self.until {
                l.target = t;
            }
            if let Some(n) = self.max_loops {
                l.max_loops = n;
            }
            if let Some(p) = self.benchmark_data.clone() {
                l.benchmark_data = p;
            }
            if let Some(b) = self.benchmark.clone() {
                l.benchmark = b;
            }
            if let Some(n) = self.eval_samples {
                l.eval_samples = n;
            }
            if let Some(n) = self.probe_steps {
                l.probe_steps = n;
            }
            if let Some(n) = self.focus_steps {
                l.focus_steps = n;
            }
        }
        if self.until.is_some() || self.probe_focus {
            let mode = if self.probe_focus { LoopMode::ProbeFocus } else { LoopMode::Until };
            let o =
                medforge_train::run_loops(&cfg, mode).with_context(|| format!("training with {}", config.display()))?;
            eprintln!(
                "{} accuracy {:.1}% → best {:.1}% over {} steps{}",
                cfg.loops.benchmark,
                o.initial_accuracy,
                o.best_accuracy,
                o.steps,
                if o.reached_target { " (target reached)" } else { "" }
            );
            println!("{}", o.report.display());
            return Ok(());
        }
        let opts =
            RunOptions { resume: self.resume, progress: !self.quiet, stop_after: None, dump_plan: self.dump_plan };
        let o = medforge_train::run(&cfg, &opts).with_context(|| format!("training with {}", config.display()))?;
        let i = &o.info;
        let d = &i.train_data;
        let dropped = match d.dropped_no_loss {
            0 => String::new(),
            n => format!(", {n} dropped with no loss token left: raise max_length"),
        };
        eprintln!(
            "{}: {} steps, {} of {} rows ({} truncated to max_length = {}{dropped}), {:.0} tokens/s, {:.1} s/step, \
             peak memory {}",
            cfg.method_name(),
            i.steps_done,
            d.used,
            d.rows,
            d.truncated,
            cfg.max_length,
            i.tokens_per_second,
            i.mean_step_seconds,
            i.peak_rss_bytes.map(|b| format!("{:.2} GB", b as f64 / 1e9)).unwrap_or_else(|| "?".into())
        );
        let m = &i.final_metrics;
        if let (Some(a), Some(b)) = (m.initial_eval_loss, m.eval_loss) {
            eprintln!("eval loss {a:.4} → {b:.4}");
        }
        if let (Some(a), Some(b)) = (m.initial_eval_accuracy, m.eval_accuracy) {
            eprintln!("eval letter accuracy {a:.3} → {b:.3}");
        }
        if let (Some(a), Some(b)) = (m.initial_eval_reward_accuracy, m.eval_reward_accuracy) {
            eprintln!("eval reward accuracy {a:.3} → {b:.3}");
        }
        if let Some(t) = &i.trained {
            println!("{}", t.display());
        }
        println!("{}", o.output.join("training_info.json").display());
        Ok(())
    }
}
