//! A weight matrix in its storage format (GGUF blocks or f32) and `y = x W^T` for one or more activation rows.
//!
//! Activations are quantised once per call to the 8-bit block format the weight's dot product reads (llama.cpp's
//! scheme, so the arithmetic is the one it does), and rows of the output are spread over the engine's thread pool ([`super::pool`]). Several
//! matrices that read the same input (q/k/v, gate/up) run in one parallel pass.

use std::any::Any;

use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ5K, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1, GgmlType,
};
use candle_core::quantized::{GgmlDType, QTensor};

use super::pool::Pool;
use super::simd::{self, Q8Act};
use crate::{EngineError, Result};

/// A `rows x cols` matrix; row r is output feature r (GGUF and PyTorch `Linear` layout).
pub struct QMatrix {
    dtype: GgmlDType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    /// The blocks, row after row. `u32` storage so that any block type (alignment <= 4) can be viewed in place.
    data: Vec<u32>,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QMatrix({:?}, {}x{})", self.dtype, self.rows, self.cols)
    }
}

fn supported(dtype: GgmlDType) -> bool {
    !matches!(dtype, GgmlDType::F16 | GgmlDType::BF16)
}

impl QMatrix {
    /// From raw block bytes (row-major, `rows * cols / block_size` blocks).
    pub fn from_bytes(dtype: GgmlDType, rows: usize, cols: usize, bytes: &[u8]) -> Result<Self> {
        if !cols.is_multiple_of(dtype.block_size()) {
            return Err(EngineError::Format(format!(
                "a {rows}x{cols} {dtype:?} matrix: {cols} columns are not a multiple of the block size {}",
                dtype.block_size()
            )));
        }
        let row_bytes = cols / dtype.block_size() * dtype.type_size();
        if bytes.len() != rows * row_bytes {
            return Err(EngineError::Format(format!(
                "a {rows}x{cols} {dtype:?} matrix needs {} bytes, the tensor has {}",
                rows * row_bytes,
                bytes.len()
            )));
        }
        let mut data = vec![0u32; bytes.len().div_ceil(4)];
        bytemuck_copy(bytes, &mut data);
        Ok(QMatrix { dtype, rows, cols, row_bytes, data })
    }

    /// Read a `rows x cols` matrix of `dtype` blocks from `reader` at `offset`, straight into the matrix's storage
    /// (no intermediate copies: a 262k-token embedding is 180 MB).
    pub fn read_from<R: std::io::Read + std::io::Seek>(
        reader: &mut R,
        offset: u64,
        dtype: GgmlDType,
        rows: usize,
        cols: usize,
    ) -> Result<Self> {
        let bad = |what: String| EngineError::Format(what);
        if !cols.is_multiple_of(dtype.block_size()) {
            return Err(bad(format!("{rows}x{cols} {dtype:?}: columns not a multiple of the block size")));
        }
        let row_bytes = cols / dtype.block_size() * dtype.type_size();
        let n = rows * row_bytes;
        let end = reader.seek(std::io::SeekFrom::End(0)).map_err(|e| bad(format!("seek: {e}")))?;
        if offset.saturating_add(n as u64) > end {
            return Err(bad(format!(
                "a {rows}x{cols} {dtype:?} tensor at byte {offset} runs past the end of the file"
            )));
        }
        reader.seek(std::io::SeekFrom::Start(offset)).map_err(|e| bad(format!("seek: {e}")))?;
        let mut data = vec![0u32; n.div_ceil(4)];
        // SAFETY: u32 storage viewed as at least n bytes.
        let bytes = unsafe { std::slice::from_raw_parts_mut(data.as_mut_ptr() as *mut u8, n) };
        reader.read_exact(bytes).map_err(|e| bad(format!("reading a tensor: {e}")))?;
        let m = QMatrix { dtype, rows, cols, row_bytes, data };
        if supported(dtype) {
            return Ok(m);
        }
        // f16/bf16: widened to f32 (no fast kernel for them).
        let wide: Vec<f32> = match dtype {
            GgmlDType::F16 => {
                m.bytes().chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            _ => m.bytes().chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        };
        Self::from_f32(rows, cols, wide)
    }

    pub fn from_f32(rows: usize, cols: usize, values: Vec<f32>) -> Result<Self> {
        if values.len() != rows * cols {
            return Err(EngineError::Format(format!("{} values for a {rows}x{cols} matrix", values.len())));
        }
        let data = values.into_iter().map(f32::to_bits).collect();
        Ok(QMatrix { dtype: GgmlDType::F32, rows, cols, row_bytes: cols * 4, data })
    }

    /// From a 2-D candle quantised tensor, in its format; F16/BF16 become f32 (there is no fast kernel for them).
    pub fn from_qtensor(q: &QTensor) -> Result<Self> {
        let dims = q.shape().dims();
        let (rows, cols) = match dims {
            [r, c] => (*r, *c),
            [c] => (1, *c),
            _ => return Err(EngineError::Format(format!("a matrix needs 2 dimensions, the tensor has {dims:?}"))),
        };
        if !supported(q.dtype()) {
            let t = q.dequantize(&candle_core::Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
            return Self::from_f32(rows, cols, t);
        }
        Self::from_bytes(q.dtype(), rows, cols, &q.data()?)
    }

    /// Quantise f32 values (row-major) into `dtype` with candle's quantiser.
    pub fn quantize(rows: usize, cols: usize, values: Vec<f32>, dtype: GgmlDType) -> Result<Self> {
        if dtype == GgmlDType::F32 {
            return Self::from_f32(rows, cols, values);
        }
        let t = candle_core::Tensor::from_vec(values, (rows, cols), &candle_core::Device::Cpu)?;
        Self::from_qtensor(&QTensor::quantize(&t, dtype)?)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn dtype(&self) -> GgmlDType {
        self.dtype
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: u32 storage viewed as its bytes.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr() as *const u8, self.rows * self.row_bytes) }
    }

    fn row(&self, r: usize) -> &[u8] {
        &self.bytes()[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    fn blocks<T: GgmlType>(&self) -> &[T] {
        debug_assert_eq!(T::DTYPE, self.dtype);
        cast_slice(self.bytes())
    }

    /// Row `r` as f32 (an embedding lookup).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        let nb = self.cols / self.dtype.block_size();
        macro_rules! deq {
            ($t:ty) => {
                <$t>::to_float(&self.blocks::<$t>()[r * nb..(r + 1) * nb], out)
            };
        }
        match self.dtype {
            GgmlDType::F32 => out.copy_from_slice(cast_slice::<f32>(self.row(r))),
            GgmlDType::Q4_0 => deq!(BlockQ4_0),
            GgmlDType::Q4_1 => deq!(candle_core::quantized::k_quants::BlockQ4_1),
            GgmlDType::Q5_0 => deq!(candle_core::quantized::k_quants::BlockQ5_0),
            GgmlDType::Q5_1 => deq!(candle_core::quantized::k_quants::BlockQ5_1),
            GgmlDType::Q8_0 => deq!(BlockQ8_0),
            GgmlDType::Q8_1 => deq!(BlockQ8_1),
            GgmlDType::Q2K => deq!(BlockQ2K),
            GgmlDType::Q3K => deq!(BlockQ3K),
            GgmlDType::Q4K => deq!(BlockQ4K),
            GgmlDType::Q5K => deq!(BlockQ5K),
            GgmlDType::Q6K => deq!(BlockQ6K),
            GgmlDType::Q8K => deq!(BlockQ8K),
            GgmlDType::F16 | GgmlDType::BF16 => unreachable!("stored as f32"),
        }
    }

    /// The values of an f32 matrix, row-major (None for block-quantised storage).
    pub fn f32_values(&self) -> Option<&[f32]> {
        (self.dtype == GgmlDType::F32).then(|| bytemuck::cast_slice(&self.data[..self.rows * self.cols]))
    }

    /// The values of an f32 matrix, to write in place (None for block-quantised storage).
    pub fn f32_values_mut(&mut self) -> Option<&mut [f32]> {
        let n = self.rows * self.cols;
        (self.dtype == GgmlDType::F32).then(|| bytemuck::cast_slice_mut(&mut self.data[..n]))
    }

    /// The whole matrix as f32, row-major.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, o) in out.chunks_exact_mut(self.cols).enumerate() {
            self.row_f32(r, o);
        }
        out
    }

    /// `y = x W^T` for `t` rows of `x` (`t x cols`, row-major) into `y` (`t x rows`).
    pub fn matmul(&self, x: &[f32], t: usize, y: &mut [f32]) {
        matmul_many(x, t, &mut [(self, y)]);
    }
}

fn bytemuck_copy(src: &[u8], dst: &mut [u32]) {
    // SAFETY: dst has at least src.len() bytes.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr() as *mut u8, src.len()) }
}

/// View bytes as a slice of plain-data blocks. The storage is 4-aligned and every GGUF block type has alignment <= 4.
fn cast_slice<T>(b: &[u8]) -> &[T] {
    let size = std::mem::size_of::<T>();
    assert!((b.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()), "misaligned block data");
    assert!(b.len().is_multiple_of(size));
    // SAFETY: aligned, in bounds, and T is a plain-data block type valid for any bit pattern.
    unsafe { std::slice::from_raw_parts(b.as_ptr() as *const T, b.len() / size) }
}

/// Activations quantised for each format that will read them.
struct Prepared<'a> {
    x: &'a [f32],
    cols: usize,
    own: Vec<Q8Act>,
    candle: Vec<(GgmlDType, Box<dyn Any + Send + Sync>)>,
}

impl<'a> Prepared<'a> {
    fn new(x: &'a [f32], t: usize, cols: usize, dtypes: impl Iterator<Item = GgmlDType>) -> Self {
        let mut p = Prepared { x, cols, own: Vec::new(), candle: Vec::new() };
        for d in dtypes {
            match d {
                GgmlDType::F32 => {}
                GgmlDType::Q4_0 | GgmlDType::Q8_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 => {
                    if p.own.is_empty() {
                        p.own = vec![Q8Act::default(); t * cols / simd::QK];
                        for (o, xi) in p.own.chunks_mut(cols / simd::QK).zip(x.chunks(cols)) {
                            simd::quantize_act(xi, o);
                        }
                    }
                }
                GgmlDType::Q8_1 => p.candle_acts::<BlockQ8_1>(t),
                _ => p.candle_acts::<BlockQ8K>(t),
            }
        }
        p
    }

    fn candle_acts<V: GgmlType + 'static>(&mut self, t: usize) {
        if self.candle.iter().any(|(d, _)| *d == V::DTYPE) {
            return;
        }
        let nb = self.cols / V::BLCK_SIZE;
        let mut v: Vec<V> = (0..t * nb).map(|_| V::zeros()).collect();
        for (o, xi) in v.chunks_mut(nb).zip(self.x.chunks(self.cols)) {
            V::from_float(xi, o);
        }
        self.candle.push((V::DTYPE, Box::new(v)));
    }

    fn candle<V: GgmlType + 'static>(&self) -> &[V] {
        let (_, b) = self.candle.iter().find(|(d, _)| *d == V::DTYPE).expect("activations prepared");
        b.downcast_ref::<Vec<V>>().expect("activation type")
    }
}

/// Output pointer shared by the parallel tasks; each task writes a disjoint set of elements.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint indices (distinct rows of distinct matrices).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// SAFETY: the caller owns index `i` exclusively and it is in bounds.
    unsafe fn set(self, i: usize, v: f32) {
        *self.0.add(i) = v;
    }
}

/// Rows `r0..r1` of `w` against every activation row, into `out[i * rows + r]`.
fn run_rows(w: &QMatrix, p: &Prepared, t: usize, r0: usize, r1: usize, out: OutPtr) {
    let rows = w.rows;
    let cols = w.cols;
    // SAFETY (all `out.set` below): index i * rows + r with r in this task's row range, i < t; out has t * rows.
    macro_rules! own {
        ($dot:path, $dot4:path) => {{
            let nb = cols / simd::QK;
            let act = |i: usize| &p.own[i * nb..(i + 1) * nb];
            for r in r0..r1 {
                let row = w.row(r);
                let mut i = 0;
                while i + 4 <= t {
                    let y = $dot4(row, [act(i), act(i + 1), act(i + 2), act(i + 3)]);
                    for (k, v) in y.into_iter().enumerate() {
                        unsafe { out.set((i + k) * rows + r, v) };
                    }
                    i += 4;
                }
                for i in i..t {
                    unsafe { out.set(i * rows + r, $dot(row, act(i))) };
                }
            }
        }};
        ($dot:path) => {{
            let nb = cols / simd::QK;
            for r in r0..r1 {
                let row = w.row(r);
                for i in 0..t {
                    unsafe { out.set(i * rows + r, $dot(row, &p.own[i * nb..(i + 1) * nb])) };
                }
            }
        }};
    }
    macro_rules! candle {
        ($t:ty) => {{
            let nbw = cols / <$t>::BLCK_SIZE;
            let blocks = w.blocks::<$t>();
            let acts = p.candle::<<$t as GgmlType>::VecDotType>();
            let nba = cols / <<$t as GgmlType>::VecDotType as GgmlType>::BLCK_SIZE;
            for r in r0..r1 {
                let row = &blocks[r * nbw..(r + 1) * nbw];
                for i in 0..t {
                    unsafe { out.set(i * rows + r, <$t>::vec_dot(cols, row, &acts[i * nba..(i + 1) * nba])) };
                }
            }
        }};
    }
    match w.dtype {
        GgmlDType::F32 => {
            for r in r0..r1 {
                let row: &[f32] = cast_slice(w.row(r));
                for i in 0..t {
                    unsafe { out.set(i * rows + r, simd::dot_f32(row, &p.x[i * cols..(i + 1) * cols])) };
                }
            }
        }
        GgmlDType::Q4_1 => own!(simd::dot_q4_1, simd::dot_q4_1_x4),
        GgmlDType::Q5_0 => own!(simd::dot_q5_0, simd::dot_q5_0_x4),
        GgmlDType::Q5_1 => own!(simd::dot_q5_1),
        GgmlDType::Q4_0 => own!(simd::dot_q4_0, simd::dot_q4_0_x4),
        GgmlDType::Q8_0 => own!(simd::dot_q8_0, simd::dot_q8_0_x4),
        GgmlDType::Q8_1 => candle!(BlockQ8_1),
        GgmlDType::Q2K => candle!(BlockQ2K),
        GgmlDType::Q3K => candle!(BlockQ3K),
        GgmlDType::Q4K => candle!(BlockQ4K),
        GgmlDType::Q5K => candle!(BlockQ5K),
        GgmlDType::Q6K => candle!(BlockQ6K),
        GgmlDType::Q8K => candle!(BlockQ8K),
        GgmlDType::F16 | GgmlDType::BF16 => unreachable!("stored as f32"),
    }
}

/// `y_m = x W_m^T` for several matrices with the same input width, in one parallel pass.
pub fn matmul_many(x: &[f32], t: usize, mats: &mut [(&QMatrix, &mut [f32])]) {
    let Some(cols) = mats.first().map(|(w, _)| w.cols) else { return };
    assert_eq!(x.len(), t * cols, "input is {} values, not {t} x {cols}", x.len());
    for (w, y) in mats.iter() {
        assert_eq!(w.cols, cols, "matrices in one pass read the same input");
        assert_eq!(y.len(), t * w.rows, "output for {w:?} has {} values, not {t} x {}", y.len(), w.rows);
    }
    let p = Prepared::new(x, t, cols, mats.iter().map(|(w, _)| w.dtype));
    // Tasks of about the same work: rows * tokens * block bytes, split into a few tasks per thread.
    let total_rows: usize = mats.iter().map(|(w, _)| w.rows).sum();
    let pool = Pool::global();
    let threads = pool.threads();
    let work = total_rows * t * cols;
    let tasks_wanted = if work < 1 << 16 { 1 } else { threads * 4 };
    let chunk = total_rows.div_ceil(tasks_wanted).max(8);
    let mut tasks: Vec<(usize, usize, usize, OutPtr)> = Vec::new();
    for (mi, (w, y)) in mats.iter_mut().enumerate() {
        let out = OutPtr(y.as_mut_ptr());
        let mut r = 0;
        while r < w.rows {
            let e = (r + chunk).min(w.rows);
            tasks.push((mi, r, e, out));
            r = e;
        }
    }
    let mats = &*mats;
    let run = |k: usize| {
        let (mi, r0, r1, out) = tasks[k];
        run_rows(mats[mi].0, &p, t, r0, r1, out)
    };
    pool.run(tasks.len(), &run);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    fn reference(w: &[f32], x: &[f32], rows: usize, cols: usize, t: usize) -> Vec<f32> {
        let mut y = vec![0f32; t * rows];
        for i in 0..t {
            for r in 0..rows {
                y[i * rows + r] =
                    (0..cols).map(|c| w[r * cols + c] as f64 * x[i * cols + c] as f64).sum::<f64>() as f32;
            }
        }
        y
    }

    /// Every format's product against the f64 product of its dequantised weights: the only error left is the 8-bit
    /// activation rounding (none for f32), so it must be small relative to the output scale.
    #[test]
    fn products_match_the_dequantised_weights_in_every_format() {
        let (rows, cols, t) = (40, 512, 5);
        let x = values(t * cols, 7);
        for dtype in [
            GgmlDType::F32,
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5_1,
            GgmlDType::Q8_0,
            GgmlDType::Q2K,
            GgmlDType::Q3K,
            GgmlDType::Q4K,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
        ] {
            let m = QMatrix::quantize(rows, cols, values(rows * cols, 3), dtype).expect("quantize");
            let deq = m.to_f32();
            let want = reference(&deq, &x, rows, cols, t);
            let mut got = vec![0f32; t * rows];
            m.matmul(&x, t, &mut got);
            let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
            let err = want.iter().zip(&got).fold(0f32, |a, (w, g)| a.max((w - g).abs()));
            let tol = if dtype == GgmlDType::F32 { 1e-5 } else { 0.02 };
            assert!(err <= tol * scale, "{dtype:?}: max error {err} vs scale {scale}");
            // One row at a time gives the same as all at once (the parallel split does not change results).
            let mut one = vec![0f32; rows];
            m.matmul(&x[cols..2 * cols], 1, &mut one);
            assert_eq!(&one[..], &got[rows..2 * rows], "{dtype:?}");
        }
    }

    #[test]
    fn several_matrices_in_one_pass_equal_separate_products() {
        let cols = 256;
        let a = QMatrix::quantize(64, cols, values(64 * cols, 1), GgmlDType::Q4_1).expect("a");
        let b = QMatrix::quantize(32, cols, values(32 * cols, 2), GgmlDType::Q8_0).expect("b");
        let x = values(2 * cols, 9);
        let (mut ya, mut yb) = (vec![0f32; 128], vec![0f32; 64]);
        matmul_many(&x, 2, &mut [(&a, &mut ya), (&b, &mut yb)]);
        let (mut ya1, mut yb1) = (vec![0f32; 128], vec![0f32; 64]);
        a.matmul(&x, 2, &mut ya1);
        b.matmul(&x, 2, &mut yb1);
        assert_eq!(ya, ya1);
        assert_eq!(yb, yb1);
    }

    #[test]
    fn wrong_sizes_are_errors() {
        assert!(QMatrix::from_bytes(GgmlDType::Q4_1, 2, 33, &[0; 40]).is_err());
        assert!(QMatrix::from_bytes(GgmlDType::Q4_1, 2, 32, &[0; 39]).is_err());
        assert!(QMatrix::from_f32(2, 2, vec![0.0; 3]).is_err());
    }
}
