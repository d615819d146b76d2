//! The backward kernels of a decoder layer: RMS norm, rotary embeddings and the gated activations; attention's is in
//! [`super::dense_attention`], beside its training forward.
//! Formulas: `../shared/notes/training.md`; each kernel is checked against finite differences in its tests.

use rayon::prelude::*;

use super::ops::{RopeTable, PAR_ROWS};

/// `dx += d(rms_norm)(x)·dy` for each `w.len()`-wide row, given the forward's `1/rms` per row (`inv`):
/// `dx = r·(dy⊙w') − (r³/C)·x·Σ(dy⊙w'⊙x)` with `w' = w + add`.
pub fn rms_norm_backward(x: &[f32], w: &[f32], add: f32, inv: &[f32], dy: &[f32], dx: &mut [f32]) {
    let d = w.len();
    let row = |ir: f32, xr: &[f32], gr: &[f32], dr: &mut [f32]| {
        let ir = ir as f64;
        let dot: f64 = xr.iter().zip(gr).zip(w).map(|((&xv, &g), &wv)| g as f64 * (wv + add) as f64 * xv as f64).sum();
        let c = ir * ir * ir * dot / d as f64;
        for (((o, &xv), &g), &wv) in dr.iter_mut().zip(xr).zip(gr).zip(w) {
            *o += (ir * g as f64 * (wv + add) as f64 - c * xv as f64) as f32;
        }
    };
    if inv.len() >= PAR_ROWS {
        inv.par_iter()
            .zip(x.par_chunks_exact(d))
            .zip(dy.par_chunks_exact(d))
            .zip(dx.par_chunks_exact_mut(d))
            .for_each(|(((ir, xr), gr), dr)| row(*ir, xr, gr, dr));
    } else {
        for (((ir, xr), gr), dr) in
            inv.iter().zip(x.chunks_exact(d)).zip(dy.chunks_exact(d)).zip(dx.chunks_exact_mut(d))
        {
            row(*ir, xr, gr, dr);
        }
    }
}

/// The inverse rotation of [`super::ops::rope`] (the same pairs rotated by `-angle`): the gradient of a rotation is
/// its transpose.
pub fn rope_backward(x: &mut [f32], t: usize, heads: usize, head_dim: usize, table: &RopeTable, interleaved: bool) {
    super::ops::rotate(x, t, heads, head_dim, table, interleaved, -1.0);
}

/// `d silu(g)/dg`.
pub fn silu_grad(g: f32) -> f32 {
    let s = 1.0 / (1.0 + super::ops::fast_exp(-g));
    s * (1.0 + g * (1.0 - s))
}

/// `d gelu_tanh(g)/dg`.
pub fn gelu_tanh_grad(g: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2 / pi)
    let inner = C * (g + 0.044_715 * g * g * g);
    let t = inner.tanh();
    0.5 * (1.0 + t) + 0.5 * g * (1.0 - t * t) * C * (1.0 + 3.0 * 0.044_715 * g * g)
}

/// One sequence's attention backward ([`super::dense_attention::attention_backward`]), all rows from position 0: q (`t × n_head·hd`, after rope), k and v
/// (`t × n_kv_head·hd`), the forward output `o` and row log-sum-exp `lse` (`t × n_head`), and `d_o`; writes
/// `dq`, and `dk`, `dv` (accumulated over the query heads sharing a kv head).
pub struct AttnGrad<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub o: &'a [f32],
    pub lse: &'a [f32],
    pub d_o: &'a [f32],
    pub t: usize,
    pub dq: &'a mut [f32],
    pub dk: &'a mut [f32],
    pub dv: &'a mut [f32],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::dense_attention::{attention_backward, attention_forward};
    use crate::cpu::ops::{self, AttnShape};

    fn vals(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Central differences of `f` at `x` in the direction of `dy` against the analytic `<dx, dy>`.
    fn check_grad(x: &[f32], f: impl Fn(&[f32]) -> Vec<f32>, dy: &[f32], dx: &[f32], what: &str) {
        let eps = 1e-3f64;
        for idx in (0..x.len()).step_by((x.len() / 7).max(1)) {
            let mut xp: Vec<f32> = x.to_vec();
            let mut xm: Vec<f32> = x.to_vec();
            xp[idx] += eps as f32;
            xm[idx] -= eps as f32;
            let (fp, fm) = (f(&xp), f(&xm));
            let num: f64 =
                fp.iter().zip(&fm).zip(dy).map(|((a, b), g)| (*a as f64 - *b as f64) / (2.0 * eps) * *g as f64).sum();
            assert!(
                (num - dx[idx] as f64).abs() < 2e-3 * (1.0 + num.abs()),
                "{what}[{idx}]: numeric {num} vs analytic {}",
                dx[idx]
            );
        }
    }

    #[test]
    fn rms_norm_backward_matches_finite_differences() {
        let (rows, d) = (3, 8);
        let x = vals(rows * d, 3);
        let w = vals(d, 5);
        let dy = vals(rows * d, 7);
        for add in [0.0, 1.0] {
            let f = |x: &[f32]| {
                let mut y = vec![0f32; x.len()];
                ops::rms_norm(x, &w, 1e-5, add, &mut y, None);
                y
            };
            let mut inv = vec![0f32; rows];
            let mut y = vec![0f32; rows * d];
            ops::rms_norm(&x, &w, 1e-5, add, &mut y, Some(&mut inv));
            let mut dx = vec![0f32; rows * d];
            rms_norm_backward(&x, &w, add, &inv, &dy, &mut dx);
            check_grad(&x, f, &dy, &dx, "rms_norm");
        }
    }

    #[test]
    fn rope_backward_inverts_the_rotation() {
        let table = RopeTable::new(2, 3, 8, 10_000.0, 1.0, &[]);
        for interleaved in [false, true] {
            let x = vals(3 * 2 * 8, 11);
            let mut y = x.clone();
            ops::rope(&mut y, 3, 2, 8, &table, interleaved);
            rope_backward(&mut y, 3, 2, 8, &table, interleaved);
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn activation_derivatives_match_finite_differences() {
        for g in [-3.0f32, -0.7, 0.0, 0.4, 2.5] {
            let e = 1e-3f32;
            let n = (ops::silu(g + e) - ops::silu(g - e)) / (2.0 * e);
            assert!((n - silu_grad(g)).abs() < 1e-3, "silu' at {g}");
            let n = (ops::gelu_tanh(g + e) - ops::gelu_tanh(g - e)) / (2.0 * e);
            assert!((n - gelu_tanh_grad(g)).abs() < 1e-3, "gelu' at {g}");
        }
    }

    #[test]
    fn attention_backward_matches_finite_differences() {
        // 150 rows span three query blocks of the dense kernels (64 rows each), with windows across block edges.
        for (t, window, softcap) in
            [(5, None, None), (5, Some(3), None), (5, None, Some(2.0)), (150, None, None), (150, Some(70), Some(2.0))]
        {
            let s = AttnShape { n_head: 4, n_kv_head: 2, head_dim: 4, scale: 0.5, window, softcap };
            let (qd, kvd) = (16, 8);
            let q = vals(t * qd, 13);
            let k = vals(t * kvd, 17);
            let v = vals(t * kvd, 19);
            let d_o = vals(t * qd, 23);
            let fwd = |q: &[f32], k: &[f32], v: &[f32]| {
                let mut o = vec![0f32; t * qd];
                let mut lse = vec![0f32; t * 4];
                ops::attention_batch(&mut [ops::AttnJob { q, k, v, t, start: 0, out: &mut o, lse: Some(&mut lse) }], s);
                (o, lse)
            };
            let (o, lse) = fwd(&q, &k, &v);
            // The training forward equals the inference kernel.
            let (mut o2, mut lse2) = (vec![0f32; t * qd], vec![0f32; t * 4]);
            attention_forward(&q, &k, &v, t, s, &mut o2, &mut lse2);
            for (a, b) in o.iter().zip(&o2).chain(lse.iter().zip(&lse2)) {
                assert!((a - b).abs() < 1e-5, "t {t}: dense forward {b} vs {a}");
            }
            let (mut dq, mut dk, mut dv) = (vec![0f32; t * qd], vec![0f32; t * kvd], vec![0f32; t * kvd]);
            attention_backward(
                AttnGrad { q: &q, k: &k, v: &v, o: &o, lse: &lse, d_o: &d_o, t, dq: &mut dq, dk: &mut dk, dv: &mut dv },
                s,
            );
            check_grad(&q, |x| fwd(x, &k, &v).0, &d_o, &dq, "dq");
            check_grad(&k, |x| fwd(&q, x, &v).0, &d_o, &dk, "dk");
            check_grad(&v, |x| fwd(&q, &k, x).0, &d_o, &dv, "dv");
        }
    }
}
