//! Row-wise kernels of a decoder layer on `f32` slices: RMS norm, rotary embeddings, activations, and causal
//! attention over a KV cache. Reductions accumulate in f64 where llama.cpp does (norms), so that results track it.

use rayon::prelude::*;

use super::pool::Pool;
use super::simd;

/// `out = x / rms(x) * (w + add)` for each row of `x` (`add` is 1 for Gemma's `(1 + w)` norms stored without the 1).
/// `inv`, when given, receives each row's `1 / rms(x)` (what a backward pass needs).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, add: f32, out: &mut [f32], inv: Option<&mut [f32]>) {
    let d = w.len();
    let row = |xr: &[f32], or: &mut [f32]| -> f32 {
        let ss: f64 = xr.iter().map(|&v| v as f64 * v as f64).sum();
        let scale = 1.0 / ((ss / d as f64) as f32 + eps).sqrt();
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * scale * (g + add);
        }
        scale
    };
    let rows = x.len() / d.max(1);
    // Rows are independent: many of them (training passes, long prompts) are spread over rayon's threads, with
    // results identical to the sequential loop.
    if rows >= PAR_ROWS {
        let scales: Vec<f32> =
            x.par_chunks_exact(d).zip(out.par_chunks_exact_mut(d)).map(|(xr, or)| row(xr, or)).collect();
        if let Some(inv) = inv {
            inv[..rows].copy_from_slice(&scales);
        }
        return;
    }
    let mut inv = inv;
    for (r, (xr, or)) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)).enumerate() {
        let scale = row(xr, or);
        if let Some(inv) = inv.as_deref_mut() {
            inv[r] = scale;
        }
    }
}

/// Rows at which the row-wise kernels go parallel.
pub const PAR_ROWS: usize = 128;

/// `e^x` for f32 without libm and without branches, so loops over slices vectorise: `x = n·ln 2 + r` with
/// `|r| ≤ ln 2 / 2`, `e^r` by its degree-6 Taylor polynomial (relative error below 3e-7), `2^n` from the exponent
/// bits; below -87 the result is 0.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let xc = x.clamp(-87.0, 88.0);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let pow2 = f32::from_bits(((t.to_bits() as i32 - 0x4B40_0000 + 127) << 23) as u32);
    if x < -87.0 {
        0.0
    } else {
        p * pow2
    }
}

/// `x ← e^x` over a slice ([`fast_exp`]).
pub fn exp_in_place(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = fast_exp(*v);
    }
}

/// In-place RMS norm of each `w.len()`-wide piece of `x` (per-head q/k norms); `inv` as in [`rms_norm`], one per
/// piece.
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32, add: f32, mut inv: Option<&mut [f32]>) {
    let d = w.len();
    for (r, xr) in x.chunks_exact_mut(d).enumerate() {
        let ss: f64 = xr.iter().map(|&v| v as f64 * v as f64).sum();
        let scale = 1.0 / ((ss / d as f64) as f32 + eps).sqrt();
        if let Some(inv) = inv.as_deref_mut() {
            inv[r] = scale;
        }
        for (v, &g) in xr.iter_mut().zip(w) {
            *v = *v * scale * (g + add);
        }
    }
}

/// Cosines and sines of the rotary angles for `n` positions from `start`, `half = rot_dims / 2` per position.
/// The angle for pair i is `pos / scale * base^(-2i / rot_dims) / factor_i`, the frequencies built by repeated
/// multiplication in f32 as llama.cpp builds them; `factors` (Llama 3.1's `rope_freqs`) may be empty.
pub struct RopeTable {
    pub half: usize,
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

impl RopeTable {
    pub fn new(start: usize, n: usize, rot_dims: usize, base: f32, linear_scale: f32, factors: &[f32]) -> Self {
        let half = rot_dims / 2;
        let theta_scale = base.powf(-2.0 / rot_dims as f32);
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for p in start..start + n {
            let mut theta = p as f32 / linear_scale;
            for i in 0..half {
                let a = theta / factors.get(i).copied().unwrap_or(1.0);
                cos.push(a.cos());
                sin.push(a.sin());
                theta *= theta_scale;
            }
        }
        RopeTable { half, cos, sin }
    }
}

/// Rotate each head of each row in place. `interleaved`: pairs `(2i, 2i+1)` (GGUF llama); otherwise pairs
/// `(i, i + half)` (Hugging Face layout, qwen2, gemma).
pub fn rope(x: &mut [f32], t: usize, heads: usize, head_dim: usize, table: &RopeTable, interleaved: bool) {
    rotate(x, t, heads, head_dim, table, interleaved, 1.0);
}

/// Rotate each head of `t` rows by its position's angles (`sign = -1`: the inverse rotation, rope's backward).
pub fn rotate(x: &mut [f32], t: usize, heads: usize, head_dim: usize, table: &RopeTable, interleaved: bool, sign: f32) {
    let half = table.half;
    let row = |i: usize, xr: &mut [f32]| {
        let (c, s) = (&table.cos[i * half..(i + 1) * half], &table.sin[i * half..(i + 1) * half]);
        for v in xr.chunks_exact_mut(head_dim) {
            for k in 0..half {
                let (a, b) = if interleaved { (2 * k, 2 * k + 1) } else { (k, k + half) };
                let (x0, x1, sk) = (v[a], v[b], sign * s[k]);
                v[a] = x0 * c[k] - x1 * sk;
                v[b] = x0 * sk + x1 * c[k];
            }
        }
    };
    let w = heads * head_dim;
    if t >= PAR_ROWS {
        x[..t * w].par_chunks_exact_mut(w).enumerate().for_each(|(i, xr)| row(i, xr));
    } else {
        x[..t * w].chunks_exact_mut(w).enumerate().for_each(|(i, xr)| row(i, xr));
    }
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + fast_exp(-x))
}

/// GELU, tanh approximation (`gelu_pytorch_tanh`).
pub fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2 / pi)
    0.5 * x * (1.0 + (C * (x + 0.044_715 * x * x * x)).tanh())
}

/// Softmax of `x` in place; returns the log-sum-exp of the input.
pub fn softmax(x: &mut [f32]) -> f32 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
    max + (sum.ln() as f32)
}

#[derive(Clone, Copy)]
struct OutRows(*mut f32);
// SAFETY: tasks write disjoint rows.
unsafe impl Send for OutRows {}
unsafe impl Sync for OutRows {}

impl OutRows {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Attention geometry.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub scale: f32,
    /// Sliding window: a query at position p sees keys `p - window < j <= p`.
    pub window: Option<usize>,
    /// Gemma 2's `tanh` soft cap on attention scores.
    pub softcap: Option<f32>,
}

/// One sequence's attention: `t` queries at positions `start..start + t` (`q`: `t x n_head*head_dim`) over the cached
/// keys and values of positions `0..start + t` (`k`, `v`: `(start + t) x n_kv_head*head_dim`), into `out`
/// (`t x n_head*head_dim`). `lse`, when given (`t x n_head`), receives each (query, head) row's log-sum-exp of the
/// scaled scores: with `out`, all a flash-style backward needs to recompute the probabilities.
pub struct AttnJob<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub t: usize,
    pub start: usize,
    pub out: &'a mut [f32],
    pub lse: Option<&'a mut [f32]>,
}

/// Causal attention for one sequence; query head h reads KV head `h / (n_head / n_kv_head)`.
#[cfg(test)]
pub fn attention(q: &[f32], k: &[f32], v: &[f32], t: usize, start: usize, s: AttnShape, out: &mut [f32]) {
    attention_batch(&mut [AttnJob { q, k, v, t, start, out, lse: None }], s);
}

/// Attention for several sequences in one parallel pass over all their (query, head) rows.
pub fn attention_batch(jobs: &mut [AttnJob], s: AttnShape) {
    let (hd, nh) = (s.head_dim, s.n_head);
    let kvd = s.n_kv_head * hd;
    let rep = nh / s.n_kv_head;
    // One task per (job, query, head): `first[j]` is job j's first task.
    let mut first = Vec::with_capacity(jobs.len() + 1);
    let mut work = 0;
    let mut n = 0;
    for j in jobs.iter() {
        first.push(n);
        n += j.t * nh;
        work += j.t * nh * (j.start + j.t) * hd;
    }
    first.push(n);
    let outs: Vec<OutRows> = jobs.iter_mut().map(|j| OutRows(j.out.as_mut_ptr())).collect();
    let lses: Vec<Option<OutRows>> =
        jobs.iter_mut().map(|j| j.lse.as_deref_mut().map(|l| OutRows(l.as_mut_ptr()))).collect();
    let jobs = &*jobs;
    let one = |task: usize| {
        let ji = first.partition_point(|&f| f <= task) - 1;
        let job = &jobs[ji];
        let idx = task - first[ji];
        let (i, h) = (idx / nh, idx % nh);
        let pos = job.start + i;
        let lo = s.window.map(|w| (pos + 1).saturating_sub(w)).unwrap_or(0);
        let qh = &job.q[(i * nh + h) * hd..(i * nh + h + 1) * hd];
        let g = h / rep;
        let mut scores: Vec<f32> = (lo..=pos)
            .map(|p| {
                let sc = simd::dot_f32(qh, &job.k[p * kvd + g * hd..p * kvd + (g + 1) * hd]) * s.scale;
                match s.softcap {
                    Some(c) => c * (sc / c).tanh(),
                    None => sc,
                }
            })
            .collect();
        let lse = softmax(&mut scores);
        if let Some(l) = lses[ji] {
            // SAFETY: task (job, idx) writes only entry idx of that job's lse, which outlives this call.
            unsafe { *l.get().add(idx) = lse };
        }
        // SAFETY: task (job, idx) writes only row idx of that job's output, which outlives this call.
        let o = unsafe { std::slice::from_raw_parts_mut(outs[ji].get().add(idx * hd), hd) };
        o.fill(0.0);
        for (w, p) in scores.iter().zip(lo..=pos) {
            simd::axpy(*w, &job.v[p * kvd + g * hd..p * kvd + (g + 1) * hd], o);
        }
    };
    if work < 1 << 15 {
        (0..n).for_each(one);
    } else {
        Pool::global().run(n, &one);
    }
}

#[cfg(test)]
mod exp_tests {
    use super::*;

    #[test]
    fn fast_exp_is_within_3e7_of_libm() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (fast_exp(x) as f64, (x as f64).exp());
            worst = worst.max((a - b).abs() / b);
            x += 0.0137;
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert_eq!(fast_exp(-200.0), 0.0);
        assert_eq!(fast_exp(0.0), 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_attends_causally_and_within_the_window() {
        // One head, dim 2, three positions; values are one-hot by position so the output shows the weights.
        let s = AttnShape { n_head: 1, n_kv_head: 1, head_dim: 2, scale: 1.0, window: None, softcap: None };
        let k = vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let v = vec![1.0, 0.0, 0.0, 1.0, 0.5, 0.5];
        let q = vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let mut out = vec![0.0; 6];
        attention(&q, &k, &v, 3, 0, s, &mut out);
        // Equal scores: position 0 sees itself, 1 averages 0..1, 2 averages 0..2.
        assert_eq!(&out[0..2], &[1.0, 0.0]);
        assert!((out[2] - 0.5).abs() < 1e-6 && (out[3] - 0.5).abs() < 1e-6);
        assert!((out[4] - 0.5).abs() < 1e-6 && (out[5] - 0.5).abs() < 1e-6);
        let mut w = vec![0.0; 6];
        attention(&q, &k, &v, 3, 0, AttnShape { window: Some(1), ..s }, &mut w);
        assert_eq!(w, v, "a window of 1 sees only the current position");
    }

    #[test]
    fn rope_layouts_rotate_the_same_pairs_differently() {
        let table = RopeTable::new(3, 1, 4, 10_000.0, 1.0, &[]);
        let mut a = vec![1.0, 2.0, 3.0, 4.0];
        let mut b = a.clone();
        rope(&mut a, 1, 1, 4, &table, true);
        rope(&mut b, 1, 1, 4, &table, false);
        // Rotation keeps each pair's norm.
        assert!(((a[0] * a[0] + a[1] * a[1]) - 5.0).abs() < 1e-5);
        assert!(((b[0] * b[0] + b[2] * b[2]) - 10.0).abs() < 1e-5);
        assert_ne!(a, b);
        // Position 0 is the identity.
        let t0 = RopeTable::new(0, 1, 4, 10_000.0, 1.0, &[]);
        let mut c = vec![1.0, 2.0, 3.0, 4.0];
        rope(&mut c, 1, 1, 4, &t0, false);
        assert_eq!(c, vec![1.0, 2.0, 3.0, 4.0]);
    }
}
