//! A training session: the base model with its trainable parameters, the optimiser state, the tokenized data, and
//! the operations runs and loops are built from (one optimiser step, an evaluation, saving the adapter). The step
//! plan (which rows each step sees) is a function of the seed, so any step can be replayed.

use std::path::{Path, PathBuf};

use medforge_data::formatted::TrainingType;
use medforge_engine::engine::{Engine, LoadOptions};
use medforge_engine::model::{lora, LoraDropout};
use medforge_text::rng::{derive_seed, StableRng};

use crate::checkpoint::{EvalLog, StepLog};
use crate::config::{Method, TrainConfig};
use crate::data::{self, DataStats, Example, Pair};
use crate::error::{Result, TrainError};
use crate::loss::{self, DpoStats, PairLogps};
use crate::optim::{self, AdamState, AdamW};
use crate::params::{self, Trainable};

/// The rows a session trains on.
pub enum TrainData {
    Sft { train: Vec<Example>, eval: Vec<Example> },
    Dpo { train: Vec<Pair>, eval: Vec<Pair>, train_ref: Vec<PairLogps>, eval_ref: Vec<PairLogps> },
}

impl TrainData {
    pub fn train_len(&self) -> usize {
        match self {
            TrainData::Sft { train, .. } => train.len(),
            TrainData::Dpo { train, .. } => train.len(),
        }
    }

    /// Token count of each training row (for packing).
    fn train_tokens(&self) -> Vec<usize> {
        match self {
            TrainData::Sft { train, .. } => train.iter().map(|e| e.ids.len()).collect(),
            TrainData::Dpo { train, .. } => train.iter().map(Pair::tokens).collect(),
        }
    }
}

/// Which rows each optimiser step sees: `steps[k]` is step k's micro-batches of row indices.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub steps: Vec<Vec<Vec<usize>>>,
    /// The epoch (fractional) at the end of each step.
    pub epoch_at: Vec<f64>,
}

/// Micro-batches of one epoch over `rows` (indices into the data), shuffled by the epoch's seed: `batch_size` rows
/// each, or with packing as many rows as fit `budget` tokens.
fn epoch_batches(rows: &[usize], tokens: &[usize], cfg: &TrainConfig, epoch: u64, seed: u64) -> Vec<Vec<usize>> {
    let mut order = rows.to_vec();
    StableRng::from_seed_u64(derive_seed(seed, &format!("epoch-{epoch}"))).shuffle(&mut order);
    if !cfg.packing {
        return order.chunks(cfg.batch_size).map(<[usize]>::to_vec).collect();
    }
    let budget = cfg.batch_size * cfg.max_length;
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur = Vec::new();
    let mut used = 0;
    for i in order {
        if !cur.is_empty() && used + tokens[i] > budget {
            out.push(std::mem::take(&mut cur));
            used = 0;
        }
        used += tokens[i];
        cur.push(i);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The plan for `rows` over `epochs` (fractional: the last epoch is cut), or exactly `max_steps` steps (cycling
/// through epochs as needed).
pub fn plan(
    rows: &[usize],
    tokens: &[usize],
    cfg: &TrainConfig,
    seed: u64,
    epochs: f64,
    max_steps: Option<u64>,
) -> Plan {
    let mut p = Plan { steps: Vec::new(), epoch_at: Vec::new() };
    if rows.is_empty() {
        return p;
    }
    let per_epoch = epoch_batches(rows, tokens, cfg, 0, seed).len().div_ceil(cfg.grad_accum) as u64;
    let total = max_steps.unwrap_or_else(|| (epochs * per_epoch as f64).ceil() as u64).max(1);
    let mut epoch = 0;
    while (p.steps.len() as u64) < total {
        let batches = epoch_batches(rows, tokens, cfg, epoch, seed);
        let steps: Vec<Vec<Vec<usize>>> = batches.chunks(cfg.grad_accum).map(<[Vec<usize>]>::to_vec).collect();
        let n = steps.len();
        for (k, s) in steps.into_iter().enumerate() {
            if p.steps.len() as u64 >= total {
                break;
            }
            p.steps.push(s);
            p.epoch_at.push(epoch as f64 + (k + 1) as f64 / n as f64);
        }
        epoch += 1;
    }
    p
}

/// A loaded base, its trainable parameters and optimiser, and the data.
pub struct Session {
    pub cfg: TrainConfig,
    pub engine: Engine,
    pub trainable: Trainable,
    pub adam: AdamState,
    pub opt: AdamW,
    pub data: TrainData,
    pub train_stats: DataStats,
    pub eval_stats: Option<DataStats>,
    /// What the base is, for the adapter's `base_model_name_or_path` and checkpoints.
    pub base_name: String,
}

impl Session {
    /// Load the base and the data, and set up the trainable parameters (PEFT's initialisation, or `init_adapter`).
    pub fn open(cfg: &TrainConfig) -> Result<Session> {
        cfg.validate()?;
        let mut engine =
            Engine::load(&cfg.base, &LoadOptions { adapter: cfg.init_adapter.clone(), ..Default::default() })?;
        let base_name = cfg.base.display().to_string();
        let (data, train_stats, eval_stats) = load_data(&mut engine, cfg)?;
        let trainable = match cfg.method {
            Method::Full => Trainable::full(engine.model())?,
            Method::Lora | Method::Dpo => {
                match &cfg.init_adapter {
                    Some(a) => params::check_adapter_matches(engine.model(), &cfg.lora, &a.display().to_string())?,
                    None => params::init_lora(engine.model_mut(), &cfg.lora, derive_seed(cfg.seed, "lora-init"))?,
                }
                Trainable::lora(engine.model())?
            }
        };
        let opt =
            AdamW { beta1: cfg.adam_beta1, beta2: cfg.adam_beta2, eps: cfg.adam_eps, weight_decay: cfg.weight_decay };
        let adam = AdamState::new(trainable.len());
        let mut s =
            Session { cfg: cfg.clone(), engine, trainable, adam, opt, data, train_stats, eval_stats, base_name };
        s.compute_references()?;
        Ok(s)
    }

    /// DPO: the reference log-probabilities of every pair, with the adapter off, once.
    fn compute_references(&mut self) -> Result<()> {
        let TrainData::Dpo { train, eval, train_ref, eval_ref } = &mut self.data else { return Ok(()) };
        let model = self.engine.model_mut();
        model.set_lora_enabled(false);
        let result = (|| -> Result<()> {
            *train_ref = pair_logps(model, train)?;
            *eval_ref = pair_logps(model, eval)?;
            Ok(())
        })();
        model.set_lora_enabled(true);
        result
    }

    /// Row indices of the training set whose type is in `types` (all when empty).
    pub fn rows_of(&self, types: &[TrainingType]) -> Vec<usize> {
        match &self.data {
            TrainData::Sft { train, .. } => (0..train.len())
                .filter(|&i| types.is_empty() || train[i].kind.is_some_and(|k| types.contains(&k)))
                .collect(),
            TrainData::Dpo { train, .. } => (0..train.len()).collect(),
        }
    }

    /// The step plan over `rows` (seeded by `seed`).
    pub fn plan(&self, rows: &[usize], seed: u64, epochs: f64, max_steps: Option<u64>) -> Plan {
        plan(rows, &self.data.train_tokens(), &self.cfg, seed, epochs, max_steps)
    }

    /// One optimiser step over `micro` (the step's micro-batches), at learning rate `lr`. `step` seeds LoRA dropout.
    pub fn step(&mut self, micro: &[Vec<usize>], step: u64, lr: f64) -> Result<StepLog> {
        let t0 = std::time::Instant::now();
        self.trainable.zero_grads();
        let full = self.cfg.method == Method::Full;
        let dropout = (self.cfg.method != Method::Full && self.cfg.lora.dropout > 0.0).then_some(self.cfg.lora.dropout);
        let mut log = StepLog {
            step: step + 1,
            epoch: 0.0,
            loss: 0.0,
            lr,
            grad_norm: 0.0,
            tokens: 0,
            loss_tokens: 0,
            seconds: 0.0,
            reward_accuracy: None,
            reward_margin: None,
        };
        match &self.data {
            TrainData::Sft { train, .. } => {
                let step_targets: usize = micro.iter().flatten().map(|&i| train[i].targets()).sum();
                let mut nll = 0.0;
                for (mi, batch) in micro.iter().enumerate() {
                    let rows: Vec<&Example> = batch.iter().map(|&i| &train[i]).collect();
                    let d = dropout.map(|p| LoraDropout {
                        p: p as f32,
                        seed: derive_seed(self.cfg.seed, &format!("dropout-{step}-{mi}")),
                    });
                    self.engine.model_mut().set_lora_dropout(d);
                    let st =
                        loss::sft_micro_batch(self.engine.model(), &rows, step_targets, &mut self.trainable, full)?;
                    nll += st.nll;
                    log.tokens += st.tokens;
                    log.loss_tokens += st.targets;
                }
                log.loss = nll / step_targets.max(1) as f64;
            }
            TrainData::Dpo { train, train_ref, .. } => {
                let n_pairs: usize = micro.iter().map(Vec::len).sum();
                let mut total = DpoStats::default();
                for (mi, batch) in micro.iter().enumerate() {
                    let rows: Vec<&Pair> = batch.iter().map(|&i| &train[i]).collect();
                    let refs: Vec<PairLogps> = batch.iter().map(|&i| train_ref[i]).collect();
                    let d = dropout.map(|p| LoraDropout {
                        p: p as f32,
                        seed: derive_seed(self.cfg.seed, &format!("dropout-{step}-{mi}")),
                    });
                    self.engine.model_mut().set_lora_dropout(d);
                    let st = loss::dpo_micro_batch(
                        self.engine.model(),
                        &rows,
                        &refs,
                        &self.cfg.dpo,
                        n_pairs,
                        &mut self.trainable,
                    )?;
                    total.add(&st);
                }
                log.loss = total.loss / n_pairs.max(1) as f64;
                log.tokens = total.tokens;
                log.loss_tokens =
                    micro.iter().flatten().map(|&i| train[i].chosen.len() + train[i].rejected.len()).sum();
                log.reward_accuracy = Some(total.correct as f64 / n_pairs.max(1) as f64);
                log.reward_margin = Some((total.chosen_reward - total.rejected_reward) / n_pairs.max(1) as f64);
            }
        }
        self.engine.model_mut().set_lora_dropout(None);
        log.grad_norm = optim::clip_grad_norm(&mut self.trainable.grads, self.cfg.max_grad_norm);
        self.trainable.step(self.engine.model_mut(), &self.opt, &mut self.adam, lr)?;
        log.seconds = t0.elapsed().as_secs_f64();
        Ok(log)
    }

    /// Evaluate on the eval split (at most `eval_rows` rows): mean loss per loss token and multiple-choice accuracy
    /// for SFT; mean loss, reward accuracy and margin for DPO. `None` without an eval split.
    pub fn evaluate(&mut self, step: u64) -> Result<Option<EvalLog>> {
        let n = self.cfg.eval_rows;
        match &self.data {
            TrainData::Sft { eval, .. } => {
                if eval.is_empty() {
                    return Ok(None);
                }
                let rows: Vec<&Example> = eval.iter().take(n).collect();
                let res = loss::eval_examples(self.engine.model(), &rows)?;
                let (nll, targets) = res.iter().fold((0.0, 0), |a, r| (a.0 + r.nll, a.1 + r.targets));
                let mcq: Vec<bool> = res.iter().filter_map(|r| r.correct).collect();
                Ok(Some(EvalLog {
                    step,
                    loss: nll / targets.max(1) as f64,
                    rows: rows.len(),
                    accuracy: (!mcq.is_empty()).then(|| mcq.iter().filter(|c| **c).count() as f64 / mcq.len() as f64),
                    mcq_rows: (!mcq.is_empty()).then_some(mcq.len()),
                    reward_accuracy: None,
                    reward_margin: None,
                }))
            }
            TrainData::Dpo { eval, eval_ref, .. } => {
                if eval.is_empty() {
                    return Ok(None);
                }
                let k = eval.len().min(n);
                let policy = pair_logps(self.engine.model(), &eval[..k])?;
                let st = loss::dpo_stats(&policy, &eval_ref[..k], &self.cfg.dpo);
                Ok(Some(EvalLog {
                    step,
                    loss: st.loss / k as f64,
                    rows: k,
                    accuracy: None,
                    mcq_rows: None,
                    reward_accuracy: Some(st.correct as f64 / k as f64),
                    reward_margin: Some((st.chosen_reward - st.rejected_reward) / k as f64),
                }))
            }
        }
    }

    /// Write what was trained: the LoRA adapter (PEFT's format) into `dir`, or for full fine-tuning the model as a
    /// Hugging Face folder (the base folder's config and tokenizer files beside the new weights).
    pub fn save_trained(&self, dir: &Path) -> Result<()> {
        match self.cfg.method {
            Method::Lora | Method::Dpo => {
                let l = &self.cfg.lora;
                let meta = lora::AdapterMeta {
                    base_model: self.base_name.clone(),
                    r: l.r,
                    alpha: l.alpha,
                    dropout: l.dropout,
                    rslora: l.rslora,
                    targets: l.targets.clone(),
                };
                lora::save_adapter(self.engine.model(), dir, &meta)?;
            }
            Method::Full => {
                self.engine.export_hf(dir, false)?;
            }
        }
        Ok(())
    }
}

/// Summed completion log-probabilities of each pair's two sequences.
fn pair_logps(model: &medforge_engine::model::Model, pairs: &[Pair]) -> Result<Vec<PairLogps>> {
    let seqs_owned: Vec<[Vec<u32>; 2]> = pairs.iter().map(Pair::sequences).collect();
    let seqs: Vec<(&[u32], usize)> = seqs_owned
        .iter()
        .zip(pairs)
        .flat_map(|(s, p)| [(s[0].as_slice(), p.prompt.len()), (s[1].as_slice(), p.prompt.len())])
        .collect();
    let lps = loss::sequence_logps(model, &seqs)?;
    Ok(lps.chunks(2).map(|c| PairLogps { chosen: c[0], rejected: c[1] }).collect())
}

/// Tokenize the training and eval rows the config names.
fn load_data(engine: &mut Engine, cfg: &TrainConfig) -> Result<(TrainData, DataStats, Option<DataStats>)> {
    if let Some(spec) = data::format_spec(&cfg.data)? {
        let p = if cfg.data.is_dir() { cfg.data.join("format.json") } else { cfg.data.with_file_name("format.json") };
        data::check_template(engine, &spec, &p)?;
    }
    let train_file = data::split_file(&cfg.data, "train")?.ok_or_else(|| {
        TrainError::Data(format!(
            "{}: no train.jsonl; point [train] data at the `format` stage's output folder",
            cfg.data.display()
        ))
    })?;
    let eval_file: Option<PathBuf> = data::split_file(&cfg.data, "eval")?;
    if cfg.method == Method::Dpo {
        let (train, st) = data::load_pairs(engine, &train_file, cfg.max_length)?;
        if train.is_empty() {
            return Err(data::nothing_to_train(&st, cfg.max_length));
        }
        let (eval, est) = match &eval_file {
            Some(f) => {
                let (e, s) = data::load_pairs(engine, f, cfg.max_length)?;
                (e, Some(s))
            }
            None => (Vec::new(), None),
        };
        let data = TrainData::Dpo { train, eval, train_ref: Vec::new(), eval_ref: Vec::new() };
        return Ok((data, st, est));
    }
    let types: Vec<TrainingType> = cfg.types.iter().filter_map(|t| TrainingType::parse(t)).collect();
    let (train, st) = data::load_examples(engine, &train_file, cfg.objective, &types, cfg.max_length)?;
    if train.is_empty() {
        return Err(data::nothing_to_train(&st, cfg.max_length));
    }
    let (eval, est) = match &eval_file {
        Some(f) => {
            let (e, s) = data::load_examples(engine, f, cfg.objective, &types, cfg.max_length)?;
            (e, Some(s))
        }
        None => (Vec::new(), None),
    };
    Ok((TrainData::Sft { train, eval }, st, est))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_seeded_cover_every_row_and_accumulate() {
        let cfg = TrainConfig { batch_size: 2, grad_accum: 2, ..Default::default() };
        let rows: Vec<usize> = (0..10).collect();
        let tokens = vec![10; 10];
        let p = plan(&rows, &tokens, &cfg, 7, 1.0, None);
        // 5 micro-batches → 3 steps (the last with one micro-batch).
        assert_eq!(p.steps.len(), 3);
        let mut seen: Vec<usize> = p.steps.iter().flatten().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, rows);
        assert_eq!(p, plan(&rows, &tokens, &cfg, 7, 1.0, None));
        assert_ne!(p.steps, plan(&rows, &tokens, &cfg, 8, 1.0, None).steps);
        assert_eq!(p.epoch_at.last(), Some(&1.0));
        // Fractional epochs and max_steps cycle through new epoch orders.
        assert_eq!(plan(&rows, &tokens, &cfg, 7, 2.5, None).steps.len(), 8);
        let long = plan(&rows, &tokens, &cfg, 7, 1.0, Some(7));
        assert_eq!(long.steps.len(), 7);
        assert_ne!(long.steps[3], long.steps[0]);
        // Packing fills the token budget (2 × max_length).
        let packed = TrainConfig { packing: true, max_length: 25, batch_size: 2, grad_accum: 1, ..Default::default() };
        let pp = plan(&rows, &tokens, &packed, 7, 1.0, None);
        assert!(pp.steps.iter().all(|s| s[0].len() == 5));
    }
}
