//! The losses and their gradients at the logits: masked cross-entropy for SFT (normalised by the step's loss-token
//! count, TRL's `num_items_in_batch`) and DPO's sigmoid loss with cDPO label smoothing. The output projection runs
//! only on loss rows, a chunk at a time, so a step never holds `tokens × vocab` logits.

use medforge_engine::math::fast_exp;
use medforge_engine::model::{GradSink, Model};
use rayon::prelude::*;

use crate::config::DpoConfig;
use crate::data::{Example, Pair};
use crate::error::{Result, TrainError};

/// Loss rows per output-projection chunk (the chunk's logits are `rows × vocab` floats).
const CHUNK_ROWS: usize = 256;

/// A pass's loss rows: for each, the row of the pass whose hidden state predicts `target`.
struct LossRows {
    rows: Vec<usize>,
    targets: Vec<u32>,
    /// For each loss row, the sequence it belongs to.
    seq: Vec<usize>,
}

/// Loss rows of sequences laid out one after another, each scoring `ids[from..]`.
fn loss_rows(seqs: &[(&[u32], usize)]) -> LossRows {
    let mut lr = LossRows { rows: Vec::new(), targets: Vec::new(), seq: Vec::new() };
    let mut off = 0;
    for (si, (ids, from)) in seqs.iter().enumerate() {
        for p in from - 1..ids.len() - 1 {
            lr.rows.push(off + p);
            lr.targets.push(ids[p + 1]);
            lr.seq.push(si);
        }
        off += ids.len();
    }
    lr
}

fn gather(hidden: &[f32], dim: usize, rows: &[usize]) -> Vec<f32> {
    let mut h = Vec::with_capacity(rows.len() * dim);
    for &r in rows {
        h.extend_from_slice(&hidden[r * dim..(r + 1) * dim]);
    }
    h
}

/// Log-probabilities of the targets of one chunk, and (with `coef`) dL/d(logits) for a loss whose derivative with
/// respect to each target's log-probability is `coef[i]`: `d logits = coef · (onehot − softmax)`. One exponential per
/// logit: the softmax row is kept from the log-sum-exp pass.
fn chunk_logps(logits: &[f32], vocab: usize, targets: &[u32], coef: Option<&[f64]>) -> (Vec<f64>, Option<Vec<f32>>) {
    let mut d = coef.map(|_| vec![0f32; logits.len()]);
    let row_lp = |i: usize, row: &[f32], out: Option<&mut [f32]>| -> f64 {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let t = targets[i] as usize;
        match (out, coef) {
            (Some(out), Some(coef)) => {
                out.iter_mut().zip(row).for_each(|(o, &l)| *o = fast_exp(l - m));
                let sum: f64 = out.iter().map(|&e| f64::from(e)).sum();
                let lse = f64::from(m) + sum.ln();
                let c = coef[i] as f32;
                let scale = -c / sum as f32;
                out.iter_mut().for_each(|o| *o *= scale);
                out[t] += c;
                f64::from(row[t]) - lse
            }
            _ => {
                let sum: f64 = row.iter().map(|&l| f64::from(fast_exp(l - m))).sum();
                f64::from(row[t]) - (f64::from(m) + sum.ln())
            }
        }
    };
    let lps: Vec<f64> = match d.as_mut() {
        Some(d) => logits
            .par_chunks(vocab)
            .zip(d.par_chunks_mut(vocab))
            .enumerate()
            .map(|(i, (row, out))| row_lp(i, row, Some(out)))
            .collect(),
        None => logits.par_chunks(vocab).enumerate().map(|(i, row)| row_lp(i, row, None)).collect(),
    };
    (lps, d)
}

/// Forward with a tape, the loss at the logits, and the backward into `sink`. `coef_of(seq_logps)` is called once
/// with every loss row's log-probability and returns dL/d(log p) per loss row; the output projection runs twice
/// for DPO (log-probs first, gradients second) and once for SFT (`coef_fixed`).
fn forward_backward(
    model: &Model,
    seqs: &[(&[u32], usize)],
    coef: Coef,
    sink: &mut dyn GradSink,
    embed_grads: bool,
) -> Result<Vec<f64>> {
    let ids: Vec<&[u32]> = seqs.iter().map(|s| s.0).collect();
    let t0 = std::time::Instant::now();
    let (hidden, tape) = model.forward_tape(&ids)?;
    let t_fwd = t0.elapsed().as_secs_f64();
    let dim = hidden.dim;
    let hidden_rows = hidden.rows;
    let lr = loss_rows(seqs);
    let mut d_hidden = vec![0f32; hidden.rows * dim];
    let mut logps = vec![0f64; lr.rows.len()];
    // DPO needs every log-prob before any gradient: a first pass without gradients.
    let coefs: Vec<f64> = match &coef {
        Coef::PerRow(c) => c.clone(),
        Coef::FromLogps(f) => {
            for (start, rows) in (0..lr.rows.len()).step_by(CHUNK_ROWS).zip(lr.rows.chunks(CHUNK_ROWS)) {
                let h = gather(&hidden.data, dim, rows);
                let logits = model.logits_dense(&h, rows.len());
                let (lp, _) =
                    chunk_logps(&logits, logits.len() / rows.len(), &lr.targets[start..start + rows.len()], None);
                logps[start..start + rows.len()].copy_from_slice(&lp);
            }
            f(&logps, &lr.seq)
        }
    };
    for (start, rows) in (0..lr.rows.len()).step_by(CHUNK_ROWS).zip(lr.rows.chunks(CHUNK_ROWS)) {
        let n = rows.len();
        let h = gather(&hidden.data, dim, rows);
        let logits = model.logits_dense(&h, n);
        let (lp, d) =
            chunk_logps(&logits, logits.len() / n, &lr.targets[start..start + n], Some(&coefs[start..start + n]));
        logps[start..start + n].copy_from_slice(&lp);
        let dh = model.logits_backward(&h, &logits, &d.expect("gradient asked"), n, sink);
        for (k, &r) in rows.iter().enumerate() {
            d_hidden[r * dim..(r + 1) * dim].copy_from_slice(&dh[k * dim..(k + 1) * dim]);
        }
    }
    drop(hidden);
    let t_head = t0.elapsed().as_secs_f64() - t_fwd;
    let dx = model.backward(&tape, &d_hidden, sink)?;
    if std::env::var_os("MEDFORGE_TRAIN_PROFILE").is_some() {
        eprintln!(
            "profile: {} rows: forward {t_fwd:.2} s, head {t_head:.2} s, backward {:.2} s",
            hidden_rows,
            t0.elapsed().as_secs_f64() - t_fwd - t_head
        );
    }
    if embed_grads {
        let all: Vec<u32> = seqs.iter().flat_map(|s| s.0.iter().copied()).collect();
        model.embed_backward(&all, &dx, sink);
    }
    Ok(logps)
}

/// dL/d(log p) per loss row from every row's log-probability and sequence.
type CoefFn<'a> = dyn Fn(&[f64], &[usize]) -> Vec<f64> + 'a;

/// How the loss depends on the loss rows' log-probabilities.
enum Coef<'a> {
    /// A fixed dL/d(log p) per row (cross-entropy: `−1/N`).
    PerRow(Vec<f64>),
    /// Computed from all log-probs and each row's sequence (DPO).
    FromLogps(&'a CoefFn<'a>),
}

/// What one micro-batch contributed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SftStats {
    /// Summed negative log-likelihood of the loss tokens.
    pub nll: f64,
    pub targets: usize,
    pub tokens: usize,
}

/// One SFT micro-batch: forward, cross-entropy on the loss tokens with each token weighted `1 / step_targets` (the
/// whole optimiser step's loss-token count, so accumulation equals one big batch), and the backward into `sink`.
pub fn sft_micro_batch(
    model: &Model,
    batch: &[&Example],
    step_targets: usize,
    sink: &mut dyn GradSink,
    embed_grads: bool,
) -> Result<SftStats> {
    let seqs: Vec<(&[u32], usize)> = batch.iter().map(|e| (e.ids.as_slice(), e.n_prompt)).collect();
    let n: usize = batch.iter().map(|e| e.targets()).sum();
    let w = -1.0 / step_targets.max(1) as f64;
    let logps = forward_backward(model, &seqs, Coef::PerRow(vec![w; n]), sink, embed_grads)?;
    let nll = -logps.iter().sum::<f64>();
    if !nll.is_finite() {
        return Err(TrainError::Diverged(format!(
            "the loss is {nll} on rows {}; lower [train] lr or check the data",
            batch.iter().map(|e| e.id.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(SftStats { nll, targets: n, tokens: batch.iter().map(|e| e.ids.len()).sum() })
}

/// Summed log-probabilities of `ids[from..]` for each sequence, without gradients (evaluation, DPO's reference).
pub fn sequence_logps(model: &Model, seqs: &[(&[u32], usize)]) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(seqs.len());
    for group in seqs.chunks(4) {
        let ids: Vec<&[u32]> = group.iter().map(|s| s.0).collect();
        let hidden = model.forward_full(&ids)?;
        let lr = loss_rows(group);
        let mut sums = vec![0f64; group.len()];
        for (start, rows) in (0..lr.rows.len()).step_by(CHUNK_ROWS).zip(lr.rows.chunks(CHUNK_ROWS)) {
            let h = gather(&hidden.data, hidden.dim, rows);
            let logits = model.logits_dense(&h, rows.len());
            let (lp, _) = chunk_logps(&logits, logits.len() / rows.len(), &lr.targets[start..start + rows.len()], None);
            for (k, v) in lp.into_iter().enumerate() {
                sums[lr.seq[start + k]] += v;
            }
        }
        out.extend(sums);
    }
    Ok(out)
}

/// One evaluated example: its summed negative log-likelihood over the loss tokens, and for a multiple-choice row
/// whether the highest-scoring option letter at the answer position is the right one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExampleEval {
    pub nll: f64,
    pub targets: usize,
    pub correct: Option<bool>,
}

/// Evaluate examples without gradients: loss per example and, for rows with option letters, the letter choice.
pub fn eval_examples(model: &Model, examples: &[&Example]) -> Result<Vec<ExampleEval>> {
    let mut out = Vec::with_capacity(examples.len());
    for group in examples.chunks(4) {
        let seqs: Vec<(&[u32], usize)> = group.iter().map(|e| (e.ids.as_slice(), e.n_prompt)).collect();
        let ids: Vec<&[u32]> = seqs.iter().map(|s| s.0).collect();
        let hidden = model.forward_full(&ids)?;
        let lr = loss_rows(&seqs);
        let mut res: Vec<ExampleEval> =
            group.iter().map(|e| ExampleEval { nll: 0.0, targets: e.targets(), correct: None }).collect();
        let mut first_of_seq = vec![true; group.len()];
        for (start, rows) in (0..lr.rows.len()).step_by(CHUNK_ROWS).zip(lr.rows.chunks(CHUNK_ROWS)) {
            let h = gather(&hidden.data, hidden.dim, rows);
            let logits = model.logits_dense(&h, rows.len());
            let vocab = logits.len() / rows.len();
            let (lp, _) = chunk_logps(&logits, vocab, &lr.targets[start..start + rows.len()], None);
            for (k, v) in lp.into_iter().enumerate() {
                let si = lr.seq[start + k];
                res[si].nll -= v;
                if std::mem::take(&mut first_of_seq[si]) && !group[si].choices.is_empty() {
                    let row = &logits[k * vocab..(k + 1) * vocab];
                    let ex = group[si];
                    let best = ex.choices.iter().copied().max_by(|a, b| row[*a as usize].total_cmp(&row[*b as usize]));
                    let answer = ex.ids[ex.n_prompt];
                    if ex.choices.contains(&answer) {
                        res[si].correct = Some(best == Some(answer));
                    }
                }
            }
        }
        out.extend(res);
    }
    Ok(out)
}

/// The policy's and the reference's summed completion log-probabilities of a pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PairLogps {
    pub chosen: f64,
    pub rejected: f64,
}

/// `log σ(z)`, stably.
fn log_sigmoid(z: f64) -> f64 {
    -((-z).max(0.0) + (-z.abs()).exp().ln_1p())
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// DPO's sigmoid loss of one pair and dL/dΔ, with `Δ = (logπ_c − logπref_c) − (logπ_r − logπref_r)`:
/// `L = −(1−ε)·log σ(βΔ) − ε·log σ(−βΔ)` (TRL's `sigmoid` loss; ε = 0 is plain DPO).
pub fn dpo_loss(policy: PairLogps, reference: PairLogps, cfg: &DpoConfig) -> (f64, f64) {
    let delta = (policy.chosen - reference.chosen) - (policy.rejected - reference.rejected);
    let (b, e) = (cfg.beta, cfg.label_smoothing);
    let z = b * delta;
    let loss = -(1.0 - e) * log_sigmoid(z) - e * log_sigmoid(-z);
    let grad = -b * ((1.0 - e) * sigmoid(-z) - e * sigmoid(z));
    (loss, grad)
}

/// What one DPO micro-batch contributed (sums over its pairs).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DpoStats {
    pub loss: f64,
    pub pairs: usize,
    /// Pairs whose chosen reward beats the rejected one.
    pub correct: usize,
    /// Σ β(logπ_c − logπref_c) and Σ β(logπ_r − logπref_r).
    pub chosen_reward: f64,
    pub rejected_reward: f64,
    pub tokens: usize,
}

impl DpoStats {
    pub fn add(&mut self, o: &DpoStats) {
        self.loss += o.loss;
        self.pairs += o.pairs;
        self.correct += o.correct;
        self.chosen_reward += o.chosen_reward;
        self.rejected_reward += o.rejected_reward;
        self.tokens += o.tokens;
    }
}

/// Rewards and accuracy of pairs from their log-probabilities.
pub fn dpo_stats(policy: &[PairLogps], reference: &[PairLogps], cfg: &DpoConfig) -> DpoStats {
    let mut st = DpoStats { pairs: policy.len(), ..Default::default() };
    for (p, r) in policy.iter().zip(reference) {
        let (loss, _) = dpo_loss(*p, *r, cfg);
        let (rc, rr) = (cfg.beta * (p.chosen - r.chosen), cfg.beta * (p.rejected - r.rejected));
        st.loss += loss;
        st.chosen_reward += rc;
        st.rejected_reward += rr;
        st.correct += usize::from(rc > rr);
    }
    st
}

/// One DPO micro-batch: both completions of each pair in one pass, the loss averaged over the step's `step_pairs`,
/// and the backward into `sink`.
pub fn dpo_micro_batch(
    model: &Model,
    pairs: &[&Pair],
    reference: &[PairLogps],
    cfg: &DpoConfig,
    step_pairs: usize,
    sink: &mut dyn GradSink,
) -> Result<DpoStats> {
    let seqs_owned: Vec<[Vec<u32>; 2]> = pairs.iter().map(|p| p.sequences()).collect();
    let seqs: Vec<(&[u32], usize)> = seqs_owned
        .iter()
        .zip(pairs)
        .flat_map(|(s, p)| [(s[0].as_slice(), p.prompt.len()), (s[1].as_slice(), p.prompt.len())])
        .collect();
    let policy = std::cell::RefCell::new(Vec::new());
    let coef = |logps: &[f64], seq_of: &[usize]| -> Vec<f64> {
        let mut sums = vec![0f64; seqs.len()];
        for (lp, &s) in logps.iter().zip(seq_of) {
            sums[s] += lp;
        }
        let pol: Vec<PairLogps> = sums.chunks(2).map(|c| PairLogps { chosen: c[0], rejected: c[1] }).collect();
        // dL/d logπ_c = dL/dΔ, dL/d logπ_r = −dL/dΔ, each divided by the step's pair count.
        let per_seq: Vec<f64> = pol
            .iter()
            .zip(reference)
            .flat_map(|(p, r)| {
                let (_, g) = dpo_loss(*p, *r, cfg);
                let g = g / step_pairs.max(1) as f64;
                [g, -g]
            })
            .collect();
        *policy.borrow_mut() = pol;
        // The loss is minimised: the coefficient is dL/d(log p).
        seq_of.iter().map(|&s| per_seq[s]).collect()
    };
    forward_backward(model, &seqs, Coef::FromLogps(&coef), sink, false)?;
    let mut st = dpo_stats(&policy.borrow(), reference, cfg);
    st.tokens = pairs.iter().map(|p| p.tokens()).sum();
    if !st.loss.is_finite() {
        return Err(TrainError::Diverged(format!("the DPO loss is {}; lower [train] lr", st.loss)));
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TRL's sigmoid loss: at Δ = 0 it is ln 2 with gradient −β/2; label smoothing pulls the gradient toward zero
    /// for confident pairs; the derivative matches finite differences.
    #[test]
    fn dpo_loss_and_gradient() {
        let cfg = DpoConfig { beta: 0.1, label_smoothing: 0.0 };
        let z = PairLogps { chosen: -10.0, rejected: -12.0 };
        let (l, g) = dpo_loss(z, z, &cfg);
        assert!((l - std::f64::consts::LN_2).abs() < 1e-12);
        assert!((g + 0.05).abs() < 1e-12);
        for eps in [0.0, 0.2] {
            let cfg = DpoConfig { beta: 0.3, label_smoothing: eps };
            let r = PairLogps { chosen: -11.0, rejected: -9.0 };
            let p = |c: f64| PairLogps { chosen: c, rejected: -8.5 };
            let h = 1e-5;
            let num = (dpo_loss(p(-10.0 + h), r, &cfg).0 - dpo_loss(p(-10.0 - h), r, &cfg).0) / (2.0 * h);
            let (_, g) = dpo_loss(p(-10.0), r, &cfg);
            assert!((num - g).abs() < 1e-8, "eps {eps}: numeric {num} vs {g}");
        }
        // Stable far out.
        let (l, _) = dpo_loss(PairLogps { chosen: 0.0, rejected: -1e4 }, PairLogps::default(), &cfg);
        assert!(l.is_finite() && l < 1e-6);
    }
}
