//! The optimiser: AdamW with PyTorch's semantics (decoupled weight decay, bias-corrected moments) fused over flat
//! moment buffers, global gradient-norm clipping as `torch.nn.utils.clip_grad_norm_`, and Hugging Face's learning-rate
//! schedules (`get_scheduler`: linear, cosine, constant, each with linear warm-up).

use rayon::prelude::*;

use crate::config::Schedule;

/// AdamW's hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// The moments of every trainable value, in the parameter layout's order, and the step count.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdamState {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    /// Optimiser steps taken (PyTorch's `state["step"]`).
    pub step: u64,
}

impl AdamState {
    pub fn new(len: usize) -> Self {
        AdamState { m: vec![0.0; len], v: vec![0.0; len], step: 0 }
    }
}

/// Values per parallel task: large enough to amortise scheduling, small enough to spread over the cores.
const CHUNK: usize = 1 << 15;

impl AdamW {
    /// Start a step: advance the step count and return the bias corrections for it.
    pub fn begin(&self, state: &mut AdamState) -> StepCoefs {
        state.step += 1;
        let t = state.step as i32;
        StepCoefs { bc1: 1.0 - self.beta1.powi(t), bc2_sqrt: (1.0 - self.beta2.powi(t)).sqrt() }
    }

    /// Update one parameter tensor (`p`, its gradient `g`, and its moments) at learning rate `lr`, in place:
    /// `p ← p·(1 − lr·wd)`, `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
    /// `p ← p − (lr/bc1)·m / (√v/√bc2 + ε)`. `decay`: whether weight decay applies (not to biases and norms).
    #[allow(clippy::too_many_arguments)]
    pub fn update(&self, c: StepCoefs, lr: f64, decay: bool, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let shrink = if decay { (1.0 - lr * self.weight_decay) as f32 } else { 1.0 };
        let step_size = (lr / c.bc1) as f32;
        let (bc2_sqrt, eps) = (c.bc2_sqrt as f32, self.eps as f32);
        let kernel = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
            for i in 0..p.len() {
                let gi = g[i];
                let mi = b1 * m[i] + (1.0 - b1) * gi;
                let vi = b2 * v[i] + (1.0 - b2) * gi * gi;
                m[i] = mi;
                v[i] = vi;
                p[i] = p[i] * shrink - step_size * mi / (vi.sqrt() / bc2_sqrt + eps);
            }
        };
        if p.len() < 2 * CHUNK {
            kernel(p, g, m, v);
        } else {
            p.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| kernel(p, g, m, v));
        }
    }
}

/// The bias corrections of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepCoefs {
    bc1: f64,
    bc2_sqrt: f64,
}

/// The global L2 norm of the gradient (accumulated in f64).
pub fn grad_norm(g: &[f32]) -> f64 {
    g.par_chunks(CHUNK).map(|c| c.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>()).sum::<f64>().sqrt()
}

/// Scale the gradient so its norm is at most `max_norm`, as `clip_grad_norm_` does (coefficient
/// `max_norm / (norm + 1e-6)`, applied only when below 1). Returns the norm before clipping.
pub fn clip_grad_norm(g: &mut [f32], max_norm: f64) -> f64 {
    let norm = grad_norm(g);
    if max_norm > 0.0 {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            let c = coef as f32;
            g.par_chunks_mut(CHUNK).for_each(|ch| ch.iter_mut().for_each(|x| *x *= c));
        }
    }
    norm
}

/// The learning rate of optimiser step `step` (0-based) of `total`, as Hugging Face's schedulers give it: warm-up
/// from 0 over `warmup` steps (so step 0 of a warmed-up run has rate 0), then linear decay to 0, half a cosine, or
/// constant.
pub fn lr_at(schedule: Schedule, base: f64, step: u64, warmup: u64, total: u64) -> f64 {
    if step < warmup {
        return base * step as f64 / warmup.max(1) as f64;
    }
    match schedule {
        Schedule::Constant => base,
        Schedule::Linear => {
            base * ((total.saturating_sub(step)) as f64 / (total.saturating_sub(warmup)).max(1) as f64).max(0.0)
        }
        Schedule::Cosine => {
            let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
            base * (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused f32 update against AdamW as PyTorch documents it (`torch.optim.AdamW`), evaluated in f64 beside it:
    /// lr 1e-2, betas (0.9, 0.999), eps 1e-8, weight decay 0.1, three steps with changing gradients. (The end-to-end
    /// loss curve against PyTorch itself is `bench/train_bench.sh`.)
    #[test]
    fn adamw_follows_pytorch_algorithm() {
        let opt = AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 };
        let mut p = vec![1.0f32, -2.0, 0.5];
        let mut st = AdamState::new(3);
        // Reference in f64, straight from the documented algorithm.
        let mut rp = [1.0f64, -2.0, 0.5];
        let (mut rm, mut rv) = ([0f64; 3], [0f64; 3]);
        for t in 1..=3 {
            let g = [0.1 * t as f64, -0.3, 0.2 * if t % 2 == 0 { 1.0 } else { -1.0 }];
            let c = opt.begin(&mut st);
            let gf: Vec<f32> = g.iter().map(|&x| x as f32).collect();
            let (m, v) = (&mut st.m, &mut st.v);
            opt.update(c, 1e-2, true, &mut p, &gf, m, v);
            for i in 0..3 {
                rp[i] *= 1.0 - 1e-2 * 0.1;
                rm[i] = 0.9 * rm[i] + 0.1 * g[i];
                rv[i] = 0.999 * rv[i] + 0.001 * g[i] * g[i];
                let mh = rm[i] / (1.0 - 0.9f64.powi(t));
                let vh = rv[i] / (1.0 - 0.999f64.powi(t));
                rp[i] -= 1e-2 * mh / (vh.sqrt() + 1e-8);
            }
        }
        for i in 0..3 {
            assert!((p[i] as f64 - rp[i]).abs() < 1e-6, "{i}: {} vs {}", p[i], rp[i]);
        }
        assert_eq!(st.step, 3);
    }

    #[test]
    fn clipping_matches_clip_grad_norm() {
        let mut g = vec![3.0f32, 4.0];
        let n = clip_grad_norm(&mut g, 1.0);
        assert!((n - 5.0).abs() < 1e-12);
        assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
        let mut small = vec![0.3f32, 0.4];
        clip_grad_norm(&mut small, 1.0);
        assert_eq!(small, vec![0.3, 0.4]);
    }

    #[test]
    fn schedules_match_hugging_face() {
        // get_linear_schedule_with_warmup(warmup=2, total=10): 0, .5, 1, 7/8, ...
        assert_eq!(lr_at(Schedule::Linear, 1.0, 0, 2, 10), 0.0);
        assert_eq!(lr_at(Schedule::Linear, 1.0, 1, 2, 10), 0.5);
        assert_eq!(lr_at(Schedule::Linear, 1.0, 2, 2, 10), 1.0);
        assert_eq!(lr_at(Schedule::Linear, 1.0, 3, 2, 10), 7.0 / 8.0);
        assert_eq!(lr_at(Schedule::Linear, 1.0, 0, 0, 4), 1.0);
        assert_eq!(lr_at(Schedule::Linear, 1.0, 1, 0, 4), 0.75);
        // Cosine: halfway through the decay is half the rate.
        assert!((lr_at(Schedule::Cosine, 1.0, 6, 2, 10) - 0.5).abs() < 1e-12);
        assert_eq!(lr_at(Schedule::Constant, 0.3, 5, 2, 10), 0.3);
    }
}
