//! A training run (`medforge train --config F`): the step plan, learning-rate schedule, evaluation and checkpoint
//! cadence, resume from the newest checkpoint, the progress bar, and the outputs (`adapter/` or `model/`,
//! `training_info.json`, `loss_curve.png`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::checkpoint::{self, TrainerState};
use crate::config::{Method, TrainConfig};
use crate::error::{Result, TrainError};
use crate::optim;
use crate::report::{self, MemoryEstimate, TrainingInfo};
use crate::session::Session;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from the newest checkpoint in the output folder.
    pub resume: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Stop after this many steps of this invocation without a final checkpoint, as a crash would (tests of resume).
    pub stop_after: Option<u64>,
    /// Write the token rows in the order the steps consume them (`{"ids", "n_prompt", "step"}` per line), so another
    /// trainer can be fed exactly the same batches (the PyTorch benchmark).
    pub dump_plan: Option<PathBuf>,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub output: PathBuf,
    pub info: TrainingInfo,
    /// The run stopped before its last step ([`RunOptions::stop_after`]).
    pub stopped: bool,
}

/// The folder the trained result goes to: `adapter/` or, for full fine-tuning, `model/`.
pub fn trained_dir(cfg: &TrainConfig) -> PathBuf {
    cfg.output.join(if cfg.method == Method::Full { "model" } else { "adapter" })
}

/// Write a folder by writing a hidden sibling and renaming it over the target.
pub fn write_dir_atomic(dir: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = parent.join(format!(".tmp-{name}-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    write(&tmp)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| TrainError::io(dir, e))
}

fn bar(total: u64, done: u64, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} train [{bar:30}] {pos}/{len} steps  {msg}  {elapsed_precise} ETA {eta_precise}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_position(done);
    pb
}

/// Train as `cfg` says.
pub fn run(cfg: &TrainConfig, opts: &RunOptions) -> Result<Outcome> {
    cfg.validate()?;
    let threads = medforge_engine::set_threads(cfg.threads);
    let out = cfg.output.clone();
    std::fs::create_dir_all(&out).map_err(|e| TrainError::io(&out, e))?;
    checkpoint::clean_partial(&out)?;
    if let (false, Some((step, path))) = (opts.resume, checkpoint::list(&out)?.pop()) {
        return Err(TrainError::Checkpoint(format!(
            "{}: holds a checkpoint of an earlier run (step {step}); pass --resume to continue it, or set another \
             [train] output",
            path.display()
        )));
    }
    let mut s = Session::open(cfg)?;
    let rows = s.rows_of(&[]);
    let plan = s.plan(&rows, cfg.seed, cfg.epochs, cfg.max_steps);
    let total = plan.steps.len() as u64;
    if let Some(path) = &opts.dump_plan {
        dump_plan(&s, &plan, path)?;
    }
    let warmup = if cfg.warmup_steps > 0 { cfg.warmup_steps } else { (cfg.warmup_ratio * total as f64).ceil() as u64 };
    let mut state = TrainerState {
        format: 1,
        step: 0,
        total_steps: total,
        seed: cfg.seed,
        config: cfg.curve_fields(),
        base: s.base_name.clone(),
        trainable_values: s.trainable.len(),
        steps: Vec::new(),
        evals: Vec::new(),
        elapsed: 0.0,
    };
    let mut resumed_from = Vec::new();
    if opts.resume {
        if let Some(l) = checkpoint::load_latest(&out, &cfg.curve_fields(), &s.base_name, s.trainable.len())? {
            s.trainable.restore(s.engine.model_mut(), &l.values)?;
            s.adam = l.adam;
            state = l.state;
            resumed_from.push(l.path);
        }
    }
    let save_ckpt = |s: &Session, state: &TrainerState| -> Result<PathBuf> {
        let values = s.trainable.values(s.engine.model())?;
        checkpoint::save(&out, state, &values, &s.adam, cfg.keep_checkpoints, |dir| {
            if cfg.method != Method::Full {
                s.save_trained(&dir.join("adapter"))?;
            }
            Ok(())
        })
    };
    if state.step == 0 {
        if let Some(e) = s.evaluate(0)? {
            state.evals.push(e);
        }
    }
    let pb = bar(total, state.step, opts.progress);
    let started = Instant::now();
    let elapsed_before = state.elapsed;
    let first = state.step;
    let mut stopped = false;
    for k in first..total {
        if opts.stop_after.is_some_and(|n| k - first >= n) {
            stopped = true;
            break;
        }
        let lr = optim::lr_at(cfg.schedule, cfg.lr, k, warmup, total);
        let mut log = s.step(&plan.steps[k as usize], k, lr)?;
        log.epoch = plan.epoch_at[k as usize];
        pb.set_message(format!(
            "loss {:.4}  lr {:.2e}  {:.0} tok/s",
            log.loss,
            lr,
            log.tokens as f64 / log.seconds.max(1e-9)
        ));
        pb.inc(1);
        state.steps.push(log);
        state.step = k + 1;
        let last = k + 1 == total;
        if (cfg.eval_every > 0 && (k + 1) % cfg.eval_every == 0) || last {
            if let Some(e) = s.evaluate(k + 1)? {
                pb.println(format!(
                    "step {}: eval loss {:.4}{}",
                    k + 1,
                    e.loss,
                    e.accuracy.or(e.reward_accuracy).map(|a| format!(", accuracy {a:.3}")).unwrap_or_default()
                ));
                state.evals.push(e);
            }
        }
        if (cfg.checkpoint_every > 0 && (k + 1) % cfg.checkpoint_every == 0) || last {
            state.elapsed = elapsed_before + started.elapsed().as_secs_f64();
            save_ckpt(&s, &state)?;
        }
    }
    pb.finish_and_clear();
    state.elapsed = elapsed_before + started.elapsed().as_secs_f64();

    let trained = if stopped {
        None
    } else {
        let dir = trained_dir(cfg);
        write_dir_atomic(&dir, |tmp| s.save_trained(tmp))?;
        Some(dir)
    };
    let timed: Vec<_> = state.steps.iter().skip(1).collect();
    let (tok, secs) = timed.iter().fold((0usize, 0.0), |a, l| (a.0 + l.tokens, a.1 + l.seconds));
    let base_params = s.engine.model().param_count();
    let info = TrainingInfo {
        medforge_version: env!("CARGO_PKG_VERSION").to_string(),
        created: medforge_data::manifest::now_rfc3339(),
        config: cfg.clone(),
        seed: cfg.seed,
        base: s.base_name.clone(),
        base_params,
        trainable_params: s.trainable.len(),
        threads,
        train_data: s.train_stats.clone(),
        eval_data: s.eval_stats.clone(),
        total_steps: total,
        steps_done: state.step,
        warmup_steps: warmup,
        tokens_per_second: if secs > 0.0 { tok as f64 / secs } else { 0.0 },
        mean_step_seconds: if timed.is_empty() { 0.0 } else { secs / timed.len() as f64 },
        elapsed_seconds: state.elapsed,
        peak_rss_bytes: report::peak_rss_bytes(),
        full_finetune_memory: (cfg.method == Method::Full)
            .then(|| MemoryEstimate::for_params(s.trainable.len(), base_params)),
        final_metrics: report::final_metrics(&state.steps, &state.evals),
        trained,
        resumed_from,
        steps: state.steps.clone(),
        evals: state.evals.clone(),
    };
    report::write_info(&out, &info)?;
    if !state.steps.is_empty() {
        let title = format!("{} on {}", cfg.method_name(), file_name(&cfg.base));
        report::write_loss_curve(&out, &title, &state.steps, &state.evals)?;
    }
    Ok(Outcome { output: out, info, stopped })
}

fn dump_plan(s: &Session, plan: &crate::session::Plan, path: &Path) -> Result<()> {
    let crate::session::TrainData::Sft { train, .. } = &s.data else {
        return Err(TrainError::Config("--dump-plan writes SFT rows; this is a DPO run".into()));
    };
    let mut out = String::new();
    for (k, step) in plan.steps.iter().enumerate() {
        for &i in step.iter().flatten() {
            let row = serde_json::json!({"ids": train[i].ids, "n_prompt": train[i].n_prompt, "step": k + 1, "id": train[i].id});
            out.push_str(&row.to_string());
            out.push('\n');
        }
    }
    medforge_data::write::write_atomic(path, out.as_bytes())?;
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| p.display().to_string())
}
