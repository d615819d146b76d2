//! Dense f32 matrix products for the backward pass, on the `gemm` crate's tiled AVX2/AVX-512 kernels (the crate
//! candle already brings in). The forward pass keeps its own quantised kernels; the backward multiplies by
//! transposed weights (`dX = dY·W`) and forms LoRA gradients (`dB = dYᵀ·Z`), which are dense f32 GEMMs.

use super::matrix::QMatrix;

/// Rows of a dequantised weight panel: large enough for the GEMM to reach its speed, small enough to stay in cache.
const PANEL_ROWS: usize = 256;

/// A strided matrix operand: element `(i, j)` is at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub struct Strided {
    pub ptr: *const f32,
    pub rs: isize,
    pub cs: isize,
}

/// `dst (m×n, row stride dst_rs) = [dst +] beta · a·b` over strided operands, threads as [`matmul`] chooses
/// (`parallel = false`: on the calling thread, for callers that parallelise over tasks themselves).
///
/// # Safety
/// The operands must cover their strided extents, and `dst` must not overlap `a` or `b`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: isize,
    accumulate: bool,
    a: Strided,
    b: Strided,
    beta: f32,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let par = if parallel && m * n * k >= 1 << 18 {
        gemm::Parallelism::Rayon(rayon::current_num_threads().max(1))
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the caller's contract.
    unsafe {
        gemm::gemm(
            m, n, k, dst, 1, dst_rs, accumulate, a.ptr, a.cs, a.rs, b.ptr, b.cs, b.rs, 1.0, beta, false, false, false,
            par,
        );
    }
}

/// `c (m×n) = [c +] a·b` with row-major operands; `ta`: `a` is stored transposed (`k×m`), `tb`: `b` is stored
/// transposed (`n×k`).
#[allow(clippy::too_many_arguments)]
pub fn matmul(m: usize, n: usize, k: usize, a: &[f32], ta: bool, b: &[f32], tb: bool, c: &mut [f32], accumulate: bool) {
    matmul_scaled(m, n, k, a, ta, b, tb, c, accumulate, 1.0);
}

/// [`matmul`] with the product scaled: `c = [c +] beta·a·b`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_scaled(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    c: &mut [f32],
    accumulate: bool,
    beta: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "matmul: operand too small");
    let (a_rs, a_cs) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (b_rs, b_cs) = if tb { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the slices cover the strided extents checked above; `c` does not alias `a` or `b` (distinct borrows).
    unsafe {
        gemm_strided(
            m,
            n,
            k,
            c.as_mut_ptr(),
            n as isize,
            accumulate,
            Strided { ptr: a.as_ptr(), rs: a_rs, cs: a_cs },
            Strided { ptr: b.as_ptr(), rs: b_rs, cs: b_cs },
            beta,
            true,
        );
    }
}

/// `y (t×out) = [y +] x (t×in) · Wᵀ` for a weight in any storage format: the forward projection of training passes,
/// as one tiled GEMM (f32 weights in place, quantised ones a dequantised panel of rows at a time) instead of the
/// inference kernels' row-at-a-time dot products, which are built for a few rows.
pub fn matmul_x_wt(w: &QMatrix, x: &[f32], t: usize, y: &mut [f32], accumulate: bool) {
    let (out, inp) = (w.rows(), w.cols());
    assert!(x.len() >= t * inp && y.len() >= t * out, "matmul_x_wt: operand too small");
    if let Some(values) = w.f32_values() {
        matmul(t, out, inp, x, false, values, true, y, accumulate);
        return;
    }
    for_each_panel(w, |o0, p, panel| {
        // y's columns o0..o0+p: a strided destination with row stride `out`.
        // SAFETY: x covers t×inp, the panel p×inp, y's columns o0..o0+p of t rows lie inside y.
        unsafe {
            gemm_strided(
                t,
                p,
                inp,
                y.as_mut_ptr().add(o0),
                out as isize,
                accumulate,
                Strided { ptr: x.as_ptr(), rs: inp as isize, cs: 1 },
                Strided { ptr: panel.as_ptr(), rs: 1, cs: inp as isize },
                1.0,
                true,
            );
        }
    });
}

/// `dx (t×in) += dy (t×out) · W (out×in)` for a weight in any storage format: f32 weights are used in place,
/// quantised ones are dequantised a panel of rows at a time (the QLoRA pattern: the base stays frozen and
/// quantised, only its transposed product is needed).
pub fn accumulate_dy_w(w: &QMatrix, dy: &[f32], t: usize, dx: &mut [f32]) {
    let (out, inp) = (w.rows(), w.cols());
    if let Some(values) = w.f32_values() {
        matmul(t, inp, out, dy, false, values, false, dx, true);
        return;
    }
    for_each_panel(w, |o0, p, panel| {
        // dy's columns o0..o0+p, read in place with row stride `out`.
        // SAFETY: dy covers t×out, the panel p×inp, dx t×inp; dx does not alias dy or the panel.
        unsafe {
            gemm_strided(
                t,
                inp,
                p,
                dx.as_mut_ptr(),
                inp as isize,
                true,
                Strided { ptr: dy.as_ptr().add(o0), rs: out as isize, cs: 1 },
                Strided { ptr: panel.as_ptr(), rs: inp as isize, cs: 1 },
                1.0,
                true,
            );
        }
    });
}

/// Call `f(first_row, rows, panel)` for each panel of up to `PANEL_ROWS` rows of a quantised weight, dequantised
/// into one reused buffer (`rows × cols`, row-major).
fn for_each_panel(w: &QMatrix, mut f: impl FnMut(usize, usize, &[f32])) {
    let (out, inp) = (w.rows(), w.cols());
    let mut panel = vec![0f32; PANEL_ROWS * inp];
    let mut o0 = 0;
    while o0 < out {
        let p = PANEL_ROWS.min(out - o0);
        for r in 0..p {
            w.row_f32(o0 + r, &mut panel[r * inp..(r + 1) * inp]);
        }
        f(o0, p, &panel[..p * inp]);
        o0 += p;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], ta: bool, b: &[f32], tb: bool) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    let x = if ta { a[p * m + i] } else { a[i * k + p] };
                    let y = if tb { b[j * k + p] } else { b[p * n + j] };
                    s += x as f64 * y as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn transposes_and_accumulation_match_the_definition() {
        let (m, n, k) = (7, 5, 9);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 29) as f32 - 14.0) / 9.0).collect();
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let want = naive(m, n, k, &a, ta, &b, tb);
            let mut c = vec![1f32; m * n];
            matmul(m, n, k, &a, ta, &b, tb, &mut c, true);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - (y + 1.0)).abs() < 1e-4, "{ta} {tb}: {x} vs {}", y + 1.0);
            }
            matmul(m, n, k, &a, ta, &b, tb, &mut c, false);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn x_wt_equals_the_dequantised_product() {
        use candle_core::quantized::GgmlDType;
        let (out, inp, t) = (300, 64, 5);
        let w: Vec<f32> = (0..out * inp).map(|i| ((i * 31 % 97) as f32 - 48.0) / 50.0).collect();
        let x: Vec<f32> = (0..t * inp).map(|i| ((i * 17 % 41) as f32 - 20.0) / 30.0).collect();
        for q in
            [QMatrix::from_f32(out, inp, w.clone()).unwrap(), QMatrix::quantize(out, inp, w, GgmlDType::Q8_0).unwrap()]
        {
            let want = naive(t, out, inp, &x, false, &q.to_f32(), true);
            let mut y = vec![0f32; t * out];
            matmul_x_wt(&q, &x, t, &mut y, false);
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).abs() < 1e-3 * (1.0 + b.abs()), "{:?}: {a} vs {b}", q.dtype());
            }
        }
    }

    #[test]
    fn dy_w_equals_the_dequantised_product() {
        use candle_core::quantized::GgmlDType;
        let (out, inp, t) = (300, 64, 3);
        let w: Vec<f32> = (0..out * inp).map(|i| ((i * 31 % 97) as f32 - 48.0) / 50.0).collect();
        let dy: Vec<f32> = (0..t * out).map(|i| ((i * 17 % 41) as f32 - 20.0) / 30.0).collect();
        for q in
            [QMatrix::from_f32(out, inp, w.clone()).unwrap(), QMatrix::quantize(out, inp, w, GgmlDType::Q8_0).unwrap()]
        {
            let deq = q.to_f32();
            let want = naive(t, inp, out, &dy, false, &deq, false);
            let mut dx = vec![0f32; t * inp];
            accumulate_dy_w(&q, &dy, t, &mut dx);
            for (x, y) in dx.iter().zip(&want) {
                assert!((x - y).abs() < 1e-3 * (1.0 + y.abs()), "{:?}: {x} vs {y}", q.dtype());
            }
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;
    use std::time::Instant;

    fn time(f: &mut dyn FnMut()) -> f64 {
        f();
        let t = Instant::now();
        for _ in 0..3 {
            f();
        }
        t.elapsed().as_secs_f64() / 3.0
    }

    #[test]
    #[ignore]
    fn report_speeds() {
        use crate::cpu::ops::AttnShape;
        use candle_core::quantized::GgmlDType;
        let (t, inp, out) = (985, 576, 1536);
        let x = vec![0.1f32; t * inp];
        let w: Vec<f32> = (0..out * inp).map(|i| ((i % 97) as f32 - 48.0) / 50.0).collect();
        let wf = QMatrix::from_f32(out, inp, w.clone()).unwrap();
        let wq = QMatrix::quantize(out, inp, w, GgmlDType::Q4_1).unwrap();
        let mut y = vec![0f32; t * out];
        let gf = 2.0 * (t * inp * out) as f64 / 1e9;
        eprintln!("x_wt f32: {:.1} GFLOP/s", gf / time(&mut || matmul_x_wt(&wf, &x, t, &mut y, false)));
        eprintln!("x_wt q4_1: {:.1} GFLOP/s", gf / time(&mut || matmul_x_wt(&wq, &x, t, &mut y, false)));
        let mut dx = vec![0f32; t * inp];
        eprintln!("dy_w f32: {:.1} GFLOP/s", gf / time(&mut || accumulate_dy_w(&wf, &y, t, &mut dx)));
        eprintln!("dy_w q4_1: {:.1} GFLOP/s", gf / time(&mut || accumulate_dy_w(&wq, &y, t, &mut dx)));
        let r = 8;
        let a = vec![0.01f32; r * inp];
        let mut z = vec![0f32; t * r];
        let gl = 2.0 * (t * inp * r) as f64 / 1e9;
        eprintln!("lora x·Aᵀ: {:.1} GFLOP/s", gl / time(&mut || matmul(t, r, inp, &x, false, &a, true, &mut z, false)));
        let mut da = vec![0f32; r * inp];
        eprintln!(
            "lora dzᵀ·x: {:.1} GFLOP/s",
            gl / time(&mut || matmul(r, inp, t, &z, true, &x, false, &mut da, true))
        );
        let s = AttnShape { n_head: 9, n_kv_head: 3, head_dim: 64, scale: 0.125, window: None, softcap: None };
        let tt = 250;
        let q = vec![0.01f32; tt * 576];
        let k = vec![0.01f32; tt * 192];
        let mut o = vec![0f32; tt * 576];
        let mut lse = vec![0f32; tt * 9];
        let ga = 4.0 * (tt * tt * 64 * 9) as f64 / 1e9;
        eprintln!(
            "attention fwd t=250: {:.1} GFLOP/s",
            ga / time(&mut || crate::cpu::dense_attention::attention_forward(&q, &k, &k, tt, s, &mut o, &mut lse))
        );
        let (mut dq, mut dk, mut dv) = (vec![0f32; tt * 576], vec![0f32; tt * 192], vec![0f32; tt * 192]);
        let secs = time(&mut || {
            crate::cpu::dense_attention::attention_backward(
                crate::cpu::backward::AttnGrad {
                    q: &q,
                    k: &k,
                    v: &k,
                    o: &o,
                    lse: &lse,
                    d_o: &q,
                    t: tt,
                    dq: &mut dq,
                    dk: &mut dk,
                    dv: &mut dv,
                },
                s,
            )
        });
        eprintln!("attention bwd t=250: {:.1} GFLOP/s ({secs:.4} s)", 2.0 * ga / secs);
    }
}
