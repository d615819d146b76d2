//! Causal attention for training passes, as per-head GEMMs over blocks of query rows: whole sequences from position
//! 0, so a block of queries `i0..i1` sees keys `k0..i1` only (`k0` from the sliding window), and its scores are one
//! product `Q_blk·K_spanᵀ`, a masked softmax and a second product `P·V_span` — the blocks above the diagonal are
//! never computed. The backward recomputes the probabilities from q, k and the saved row log-sum-exp, flash-style:
//! no score matrix outlives its block, and none is kept between the forward and the backward. Inference keeps the
//! row-at-a-time kernels of [`super::ops`], built for a few new rows over a KV cache.
//!
//! Heads run in parallel (rayon), each head's products on its own thread; a grouped-query kv head's dK/dV sum the
//! contributions of its query heads after they finish.

use rayon::prelude::*;

use super::backward::AttnGrad;
use super::gemm::{gemm_strided, Strided};
use super::ops::{fast_exp, AttnShape};
use super::simd;

/// Query rows per block: large enough for the GEMMs to run at speed, small enough that skipping the blocks above the
/// diagonal saves most of the masked half.
const BLOCK: usize = 64;

#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: each task writes only its own head's columns (or its own buffers).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: offsets stay inside the buffer the pointer came from (checked by the callers' slice lengths).
        unsafe { self.0.add(offset) }
    }
}

/// The keys query `i` sees: `lo(i)..=i`.
fn first_key(i: usize, window: Option<usize>) -> usize {
    window.map(|w| (i + 1).saturating_sub(w)).unwrap_or(0)
}

/// A head's view of one sequence's tensors.
#[derive(Clone, Copy)]
struct Head<'a> {
    q: &'a [f32],
    k: &'a [f32],
    h: usize,
    g: usize,
    s: AttnShape,
}

impl Head<'_> {
    fn qd(&self) -> usize {
        self.s.n_head * self.s.head_dim
    }

    fn kvd(&self) -> usize {
        self.s.n_kv_head * self.s.head_dim
    }

    /// `out (rows × span) = scale · Q[i0..i0+rows] · K[k0..k0+span]ᵀ`.
    fn scores(&self, i0: usize, rows: usize, k0: usize, span: usize, out: &mut [f32]) {
        let hd = self.s.head_dim;
        // SAFETY: the query and key rows lie inside q (t×qd) and k (t×kvd); out holds rows×span.
        unsafe {
            gemm_strided(
                rows,
                span,
                hd,
                out.as_mut_ptr(),
                span as isize,
                false,
                Strided { ptr: self.q.as_ptr().add(i0 * self.qd() + self.h * hd), rs: self.qd() as isize, cs: 1 },
                Strided { ptr: self.k.as_ptr().add(k0 * self.kvd() + self.g * hd), rs: 1, cs: self.kvd() as isize },
                self.s.scale,
                false,
            );
        }
    }
}

/// The block's query range `i0..i1` and key range `k0..i1`.
fn block(b: usize, t: usize, window: Option<usize>) -> (usize, usize, usize) {
    let i0 = b * BLOCK;
    let i1 = (i0 + BLOCK).min(t);
    (i0, i1, first_key(i0, window))
}

/// Forward over one whole sequence: `out` (`t × n_head·hd`) and each (row, head)'s log-sum-exp (`t × n_head`).
pub fn attention_forward(q: &[f32], k: &[f32], v: &[f32], t: usize, s: AttnShape, out: &mut [f32], lse: &mut [f32]) {
    let (hd, nh, nkv) = (s.head_dim, s.n_head, s.n_kv_head);
    let (qd, kvd, rep) = (nh * hd, nkv * hd, nh / nkv);
    assert!(
        q.len() >= t * qd && k.len() >= t * kvd && v.len() >= t * kvd && out.len() >= t * qd && lse.len() >= t * nh
    );
    let (o, l) = (Out(out.as_mut_ptr()), Out(lse.as_mut_ptr()));
    (0..nh).into_par_iter().for_each(|h| {
        let head = Head { q, k, h, g: h / rep, s };
        let mut p = vec![0f32; BLOCK * t];
        for b in 0..t.div_ceil(BLOCK) {
            let (i0, i1, k0) = block(b, t, s.window);
            let (rows, span) = (i1 - i0, i1 - k0);
            head.scores(i0, rows, k0, span, &mut p[..rows * span]);
            for r in 0..rows {
                let i = i0 + r;
                let row = &mut p[r * span..(r + 1) * span];
                let (lo, hi) = (first_key(i, s.window) - k0, i - k0);
                if let Some(c) = s.softcap {
                    row[lo..=hi].iter_mut().for_each(|x| *x = c * (*x / c).tanh());
                }
                let m = row[lo..=hi].iter().copied().fold(f32::NEG_INFINITY, f32::max);
                row[lo..=hi].iter_mut().for_each(|x| *x = fast_exp(*x - m));
                let sum: f32 = row[lo..=hi].iter().sum();
                let inv = 1.0 / sum;
                row[lo..=hi].iter_mut().for_each(|x| *x *= inv);
                row[..lo].fill(0.0);
                row[hi + 1..].fill(0.0);
                // SAFETY: task h alone writes lse column h.
                unsafe { *l.at(i * nh + h) = m + sum.ln() };
            }
            // O_h[i0..i1] = P · V_g[k0..i1], into out's head-h columns.
            // SAFETY: p holds rows×span; v's rows k0..i1 of group g; task h alone writes out's columns of head h.
            unsafe {
                gemm_strided(
                    rows,
                    hd,
                    span,
                    o.at(i0 * qd + h * hd),
                    qd as isize,
                    false,
                    Strided { ptr: p.as_ptr(), rs: span as isize, cs: 1 },
                    Strided { ptr: v.as_ptr().add(k0 * kvd + head.g * hd), rs: kvd as isize, cs: 1 },
                    1.0,
                    false,
                );
            }
        }
    });
}

/// Backward over one whole sequence: writes `dq`, `dk` and `dv` (overwriting them).
pub fn attention_backward(job: AttnGrad, s: AttnShape) {
    let (hd, nh, nkv) = (s.head_dim, s.n_head, s.n_kv_head);
    let (qd, kvd, rep, t) = (nh * hd, nkv * hd, nh / nkv, job.t);
    let (q, k, v, o, d_o, lse) = (job.q, job.k, job.v, job.o, job.d_o, job.lse);
    let dq = Out(job.dq.as_mut_ptr());
    // Per query head: dQ written in place; dK and dV into the head's own buffers, summed per group below.
    let per_head: Vec<(Vec<f32>, Vec<f32>)> = (0..nh)
        .into_par_iter()
        .map(|h| {
            let head = Head { q, k, h, g: h / rep, s };
            let g = head.g;
            let (mut dk, mut dv) = (vec![0f32; t * hd], vec![0f32; t * hd]);
            let mut p = vec![0f32; BLOCK * t];
            let mut ds = vec![0f32; BLOCK * t];
            let mut cap = if s.softcap.is_some() { vec![0f32; BLOCK * t] } else { Vec::new() };
            for b in 0..t.div_ceil(BLOCK) {
                let (i0, i1, k0) = block(b, t, s.window);
                let (rows, span) = (i1 - i0, i1 - k0);
                let (p, ds) = (&mut p[..rows * span], &mut ds[..rows * span]);
                head.scores(i0, rows, k0, span, p);
                for r in 0..rows {
                    let i = i0 + r;
                    let row = &mut p[r * span..(r + 1) * span];
                    let (lo, hi) = (first_key(i, s.window) - k0, i - k0);
                    let l = lse[i * nh + h];
                    match s.softcap {
                        None => row[lo..=hi].iter_mut().for_each(|x| *x = fast_exp(*x - l)),
                        Some(c) => {
                            for j in lo..=hi {
                                let th = (row[j] / c).tanh();
                                cap[r * span + j] = 1.0 - th * th;
                                row[j] = fast_exp(c * th - l);
                            }
                        }
                    }
                    row[..lo].fill(0.0);
                    row[hi + 1..].fill(0.0);
                }
                // dP = dO_h[i0..i1] · V_g[k0..i1]ᵀ
                // SAFETY: d_o's rows i0..i1 of head h, v's rows k0..i1 of group g; ds holds rows×span.
                unsafe {
                    gemm_strided(
                        rows,
                        span,
                        hd,
                        ds.as_mut_ptr(),
                        span as isize,
                        false,
                        Strided { ptr: d_o.as_ptr().add(i0 * qd + h * hd), rs: qd as isize, cs: 1 },
                        Strided { ptr: v.as_ptr().add(k0 * kvd + g * hd), rs: 1, cs: kvd as isize },
                        1.0,
                        false,
                    );
                }
                // dS = P ⊙ (dP − D) (⊙ cap'), D_i = rowsum(dO ⊙ O).
                for r in 0..rows {
                    let i = i0 + r;
                    let sl = i * qd + h * hd..i * qd + (h + 1) * hd;
                    let d = simd::dot_f32(&d_o[sl.clone()], &o[sl]);
                    let (lo, hi) = (first_key(i, s.window) - k0, i - k0);
                    let (pr, dr) = (&p[r * span + lo..=r * span + hi], &mut ds[r * span + lo..=r * span + hi]);
                    dr.iter_mut().zip(pr).for_each(|(x, &pv)| *x = pv * (*x - d));
                    if s.softcap.is_some() {
                        dr.iter_mut().zip(&cap[r * span + lo..=r * span + hi]).for_each(|(x, &c)| *x *= c);
                    }
                    ds[r * span..r * span + lo].fill(0.0);
                    ds[r * span + hi + 1..(r + 1) * span].fill(0.0);
                }
                // SAFETY: ds/p hold rows×span; k/q/d_o rows lie inside their buffers; dq's head-h columns of rows
                // i0..i1 are this task's alone; dk/dv are this task's buffers (t×hd).
                unsafe {
                    // dQ_h[i0..i1] = scale · dS · K_g[k0..i1]
                    gemm_strided(
                        rows,
                        hd,
                        span,
                        dq.at(i0 * qd + h * hd),
                        qd as isize,
                        false,
                        Strided { ptr: ds.as_ptr(), rs: span as isize, cs: 1 },
                        Strided { ptr: k.as_ptr().add(k0 * kvd + g * hd), rs: kvd as isize, cs: 1 },
                        s.scale,
                        false,
                    );
                    // dK_h[k0..i1] += scale · dSᵀ · Q_h[i0..i1]
                    gemm_strided(
                        span,
                        hd,
                        rows,
                        dk.as_mut_ptr().add(k0 * hd),
                        hd as isize,
                        true,
                        Strided { ptr: ds.as_ptr(), rs: 1, cs: span as isize },
                        Strided { ptr: q.as_ptr().add(i0 * qd + h * hd), rs: qd as isize, cs: 1 },
                        s.scale,
                        false,
                    );
                    // dV_h[k0..i1] += Pᵀ · dO_h[i0..i1]
                    gemm_strided(
                        span,
                        hd,
                        rows,
                        dv.as_mut_ptr().add(k0 * hd),
                        hd as isize,
                        true,
                        Strided { ptr: p.as_ptr(), rs: 1, cs: span as isize },
                        Strided { ptr: d_o.as_ptr().add(i0 * qd + h * hd), rs: qd as isize, cs: 1 },
                        1.0,
                        false,
                    );
                }
            }
            (dk, dv)
        })
        .collect();
    job.dk.fill(0.0);
    job.dv.fill(0.0);
    for (h, (dk_h, dv_h)) in per_head.iter().enumerate() {
        let g = h / rep;
        for j in 0..t {
            let dst = j * kvd + g * hd..j * kvd + (g + 1) * hd;
            job.dk[dst.clone()].iter_mut().zip(&dk_h[j * hd..(j + 1) * hd]).for_each(|(a, b)| *a += b);
            job.dv[dst].iter_mut().zip(&dv_h[j * hd..(j + 1) * hd]).for_each(|(a, b)| *a += b);
        }
    }
}
