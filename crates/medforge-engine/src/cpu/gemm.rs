//! Dense f32 matrix products for the backward pass, on the `gemm` crate's tiled AVX2/AVX-512 kernels (the crate
//! candle already brings in). The forward pass keeps its own quantised kernels; the backward multiplies by
//! transposed weights (`dX = dY·W`) and forms LoRA gradients (`dB = dYᵀ·Z`), which are dense f32 GEMMs.

use super::matrix::QMatrix;

/// Rows of a dequantised weight panel: large enough for the GEMM to reach its speed, small enough to stay in cache.
const PANEL_ROWS: usize = 256;

/// `c (m×n) = [c +] a·b` with row-major operands; `ta`: `a` is stored transposed (`k×m`), `tb`: `b` is stored
/// transposed (`n×k`).
#[allow(clippy::too_many_arguments)]
pub fn matmul(m: usize, n: usize, k: usize, a: &[f32], ta: bool, b: &[f32], tb: bool, c: &mut [f32], accumulate: bool) {
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
    let flops = m * n * k;
    let par = if flops >= 1 << 18 {
        gemm::Parallelism::Rayon(rayon::current_num_threads().max(1))
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the pointers cover the strided extents checked above; `c` does not alias `a` or `b` (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
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
    let mut panel = vec![0f32; PANEL_ROWS * inp];
    let mut dy_panel = vec![0f32; t * PANEL_ROWS];
    let mut o0 = 0;
    while o0 < out {
        let p = PANEL_ROWS.min(out - o0);
        for r in 0..p {
            w.row_f32(o0 + r, &mut panel[r * inp..(r + 1) * inp]);
        }
        // dy's columns o0..o0+p, packed (the GEMM reads a contiguous t×p block).
        for i in 0..t {
            dy_panel[i * p..(i + 1) * p].copy_from_slice(&dy[i * out + o0..i * out + o0 + p]);
        }
        matmul(t, inp, p, &dy_panel[..t * p], false, &panel[..p * inp], false, dx, true);
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
