//! Causal attention for training passes, as per-head GEMMs: whole sequences from position 0, so each head's scores
//! are one `t × t` product (`Q·Kᵀ`), a masked softmax and a second product (`P·V`). The backward recomputes the
//! probabilities from q, k and the saved row log-sum-exp, flash-style: no `t × t` matrix outlives its head's task,
//! and none is kept between the forward and the backward. Inference keeps the row-at-a-time kernels of
//! [`super::ops`], built for a few new rows over a KV cache.
//!
//! Heads run in parallel (rayon), each head's products on its own thread; a grouped-query kv head's dK/dV sum the
//! contributions of its query heads after they finish.

use rayon::prelude::*;

use super::backward::AttnGrad;
use super::gemm::{gemm_strided, Strided};
use super::ops::AttnShape;
use super::simd;

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

/// `scores = scale · Q_h · K_gᵀ` (`t × t`).
fn scores(q: &[f32], k: &[f32], t: usize, h: usize, g: usize, s: AttnShape, out: &mut [f32]) {
    let (hd, qd, kvd) = (s.head_dim, s.n_head * s.head_dim, s.n_kv_head * s.head_dim);
    // SAFETY: q is t×qd, k is t×kvd, out is t×t; head h's columns h·hd.. and group g's g·hd.. are inside them.
    unsafe {
        gemm_strided(
            t,
            t,
            hd,
            out.as_mut_ptr(),
            t as isize,
            false,
            Strided { ptr: q.as_ptr().add(h * hd), rs: qd as isize, cs: 1 },
            Strided { ptr: k.as_ptr().add(g * hd), rs: 1, cs: kvd as isize },
            s.scale,
            false,
        );
    }
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
        let g = h / rep;
        let mut p = vec![0f32; t * t];
        scores(q, k, t, h, g, s, &mut p);
        for i in 0..t {
            let row = &mut p[i * t..(i + 1) * t];
            let lo = first_key(i, s.window);
            if let Some(c) = s.softcap {
                row[lo..=i].iter_mut().for_each(|x| *x = c * (*x / c).tanh());
            }
            let m = row[lo..=i].iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = row[lo..=i]
                .iter_mut()
                .map(|x| {
                    *x = (*x - m).exp();
                    *x
                })
                .sum();
            let inv = 1.0 / sum;
            row[lo..=i].iter_mut().for_each(|x| *x *= inv);
            row[..lo].fill(0.0);
            row[i + 1..].fill(0.0);
            // SAFETY: task h alone writes lse column h.
            unsafe { *l.at(i * nh + h) = m + sum.ln() };
        }
        // O_h = P · V_g into out's head-h columns.
        // SAFETY: p is t×t, v is t×kvd; task h alone writes out's columns h·hd..(h+1)·hd.
        unsafe {
            gemm_strided(
                t,
                hd,
                t,
                o.at(h * hd),
                qd as isize,
                false,
                Strided { ptr: p.as_ptr(), rs: t as isize, cs: 1 },
                Strided { ptr: v.as_ptr().add(g * hd), rs: kvd as isize, cs: 1 },
                1.0,
                false,
            );
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
            let g = h / rep;
            let mut p = vec![0f32; t * t];
            let mut cap = if s.softcap.is_some() { vec![0f32; t * t] } else { Vec::new() };
            scores(q, k, t, h, g, s, &mut p);
            for i in 0..t {
                let row = &mut p[i * t..(i + 1) * t];
                let lo = first_key(i, s.window);
                let l = lse[i * nh + h];
                for j in lo..=i {
                    let mut x = row[j];
                    if let Some(c) = s.softcap {
                        let th = (x / c).tanh();
                        cap[i * t + j] = 1.0 - th * th;
                        x = c * th;
                    }
                    row[j] = (x - l).exp();
                }
                row[..lo].fill(0.0);
                row[i + 1..].fill(0.0);
            }
            // dP = dO_h · V_gᵀ
            let mut ds = vec![0f32; t * t];
            // SAFETY: d_o is t×qd, v t×kvd, ds t×t.
            unsafe {
                gemm_strided(
                    t,
                    t,
                    hd,
                    ds.as_mut_ptr(),
                    t as isize,
                    false,
                    Strided { ptr: d_o.as_ptr().add(h * hd), rs: qd as isize, cs: 1 },
                    Strided { ptr: v.as_ptr().add(g * hd), rs: 1, cs: kvd as isize },
                    1.0,
                    false,
                );
            }
            // dS = P ⊙ (dP − D) (⊙ cap'), D_i = rowsum(dO ⊙ O).
            for i in 0..t {
                let sl = i * qd + h * hd..i * qd + (h + 1) * hd;
                let d = simd::dot_f32(&d_o[sl.clone()], &o[sl]);
                let lo = first_key(i, s.window);
                for j in lo..=i {
                    let mut x = p[i * t + j] * (ds[i * t + j] - d);
                    if s.softcap.is_some() {
                        x *= cap[i * t + j];
                    }
                    ds[i * t + j] = x;
                }
                ds[i * t..i * t + lo].fill(0.0);
                ds[i * t + i + 1..(i + 1) * t].fill(0.0);
            }
            let (mut dk, mut dv) = (vec![0f32; t * hd], vec![0f32; t * hd]);
            // SAFETY: ds/p are t×t, k/q/d_o cover their strided heads, dq's head-h columns are this task's alone.
            unsafe {
                // dQ_h = scale · dS · K_g
                gemm_strided(
                    t,
                    hd,
                    t,
                    dq.at(h * hd),
                    qd as isize,
                    false,
                    Strided { ptr: ds.as_ptr(), rs: t as isize, cs: 1 },
                    Strided { ptr: k.as_ptr().add(g * hd), rs: kvd as isize, cs: 1 },
                    s.scale,
                    false,
                );
                // dK_h = scale · dSᵀ · Q_h
                gemm_strided(
                    t,
                    hd,
                    t,
                    dk.as_mut_ptr(),
                    hd as isize,
                    false,
                    Strided { ptr: ds.as_ptr(), rs: 1, cs: t as isize },
                    Strided { ptr: q.as_ptr().add(h * hd), rs: qd as isize, cs: 1 },
                    s.scale,
                    false,
                );
                // dV_h = Pᵀ · dO_h
                gemm_strided(
                    t,
                    hd,
                    t,
                    dv.as_mut_ptr(),
                    hd as isize,
                    false,
                    Strided { ptr: p.as_ptr(), rs: 1, cs: t as isize },
                    Strided { ptr: d_o.as_ptr().add(h * hd), rs: qd as isize, cs: 1 },
                    1.0,
                    false,
                );
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
