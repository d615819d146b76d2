//! Dot products that candle implements only as scalar loops: Q4_1, Q5_0 and Q5_1 weight blocks against 8-bit
//! activation blocks, and plain `f32`. Each has a scalar definition and an AVX2 version chosen at run time; the tests
//! hold the two equal.
//!
//! Block layouts are GGUF's (little-endian, 32 weights per block):
//! - Q4_1: `d: f16, m: f16, qs: [u8; 16]`; weight j is `d * q_j + m` with q_j the low nibble of `qs[j]` for j < 16,
//!   the high nibble of `qs[j - 16]` otherwise;
//! - Q5_0: `d: f16, qh: u32, qs: [u8; 16]`; as Q4_1's nibbles plus bit j of `qh` as the fifth bit, weight `d * (q - 16)`;
//! - Q5_1: `d: f16, m: f16, qh: u32, qs: [u8; 16]`; weight `d * q + m`;
//! - Q4_0: `d: f16, qs: [u8; 16]`; weight `d * (q - 8)`;
//! - Q8_0: `d: f16, qs: [i8; 32]`; weight `d * q`.
//!
//! candle has AVX kernels for Q4_0 and Q8_0 too; these add the four-row versions for prompt processing, and the
//! one-row and four-row kernels of a format share their arithmetic exactly (even and odd blocks summed apart), so a
//! row's result does not depend on how many rows were computed with it.

use half::f16;

pub const QK: usize = 32;
pub const Q4_1_BYTES: usize = 20;
pub const Q5_0_BYTES: usize = 22;
pub const Q5_1_BYTES: usize = 24;
pub const Q4_0_BYTES: usize = 18;
pub const Q8_0_BYTES: usize = 34;

/// 32 activations as int8 with their scale, as llama.cpp's Q8_0/Q8_1 hold them (the scale rounded through f16, so
/// the products are the ones llama.cpp computes); `sum` is the sum of `qs` and `s = f16(d * sum)`.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
pub struct Q8Act {
    pub qs: [i8; QK],
    pub d: f32,
    pub s: f32,
    pub sum: i32,
}

impl Default for Q8Act {
    fn default() -> Self {
        Q8Act { qs: [0; QK], d: 0.0, s: 0.0, sum: 0 }
    }
}

/// Quantise `x` (a multiple of 32 long) into `out` blocks: `d = max|x| / 127`, `q = round(x / d)`.
pub fn quantize_act(x: &[f32], out: &mut [Q8Act]) {
    debug_assert_eq!(x.len(), out.len() * QK);
    for (chunk, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(chunk) {
            let r = (v * id).round() as i32;
            *q = r as i8;
            sum += r;
        }
        b.d = f16::from_f32(d).to_f32();
        b.s = f16::from_f32(d * sum as f32).to_f32();
        b.sum = sum;
    }
}

#[inline(always)]
fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// The 32 nibbles of a 16-byte `qs` in weight order.
#[inline(always)]
fn nibbles(qs: &[u8]) -> [u8; QK] {
    let mut q = [0u8; QK];
    for j in 0..16 {
        q[j] = qs[j] & 0x0F;
        q[j + 16] = qs[j] >> 4;
    }
    q
}

#[inline(always)]
fn idot(q: &[u8; QK], y: &[i8; QK]) -> i32 {
    q.iter().zip(y).map(|(&a, &b)| a as i32 * b as i32).sum()
}

pub mod scalar {
    use super::*;

    pub fn dot_q4_1(w: &[u8], a: &[Q8Act]) -> f32 {
        let mut acc = 0f32;
        for (b, y) in w.chunks_exact(Q4_1_BYTES).zip(a) {
            let (d, m) = (half_at(b, 0), half_at(b, 2));
            let q = nibbles(&b[4..20]);
            acc += d * y.d * idot(&q, &y.qs) as f32 + m * y.s;
        }
        acc
    }

    fn fifth_bits(q: &mut [u8; QK], qh: u32) {
        for (j, v) in q.iter_mut().enumerate() {
            *v |= (((qh >> j) & 1) as u8) << 4;
        }
    }

    pub fn dot_q5_0(w: &[u8], a: &[Q8Act]) -> f32 {
        let mut acc = 0f32;
        for (b, y) in w.chunks_exact(Q5_0_BYTES).zip(a) {
            let d = half_at(b, 0);
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            let mut q = nibbles(&b[6..22]);
            fifth_bits(&mut q, qh);
            acc += d * y.d * (idot(&q, &y.qs) - 16 * y.sum) as f32;
        }
        acc
    }

    pub fn dot_q5_1(w: &[u8], a: &[Q8Act]) -> f32 {
        let mut acc = 0f32;
        for (b, y) in w.chunks_exact(Q5_1_BYTES).zip(a) {
            let (d, m) = (half_at(b, 0), half_at(b, 2));
            let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            let mut q = nibbles(&b[8..24]);
            fifth_bits(&mut q, qh);
            acc += d * y.d * idot(&q, &y.qs) as f32 + m * y.s;
        }
        acc
    }

    pub fn dot_q4_0(w: &[u8], a: &[Q8Act]) -> f32 {
        let mut acc = 0f32;
        for (b, y) in w.chunks_exact(Q4_0_BYTES).zip(a) {
            let q = nibbles(&b[2..18]);
            acc += half_at(b, 0) * y.d * (idot(&q, &y.qs) - 8 * y.sum) as f32;
        }
        acc
    }

    pub fn dot_q8_0(w: &[u8], a: &[Q8Act]) -> f32 {
        let mut acc = 0f32;
        for (b, y) in w.chunks_exact(Q8_0_BYTES).zip(a) {
            let s: i32 = b[2..34].iter().zip(&y.qs).map(|(&q, &v)| q as i8 as i32 * v as i32).sum();
            acc += half_at(b, 0) * y.d * s as f32;
        }
        acc
    }

    pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        // Eight partial sums, like the SIMD version, so that the two agree closely.
        let mut s = [0f32; 8];
        let n = a.len() / 8 * 8;
        for (ca, cb) in a[..n].chunks_exact(8).zip(b[..n].chunks_exact(8)) {
            for k in 0..8 {
                s[k] += ca[k] * cb[k];
            }
        }
        let mut t: f32 = s.iter().sum();
        for i in n..a.len() {
            t += a[i] * b[i];
        }
        t
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::*;

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// 16 bytes of packed nibbles as 32 bytes in weight order (low nibbles, then high nibbles).
    #[inline(always)]
    unsafe fn unpack_nibbles(p: *const u8) -> __m256i {
        let x = _mm_loadu_si128(p as *const __m128i);
        let m = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(x, m);
        let hi = _mm_and_si128(_mm_srli_epi16(x, 4), m);
        _mm256_set_m128i(hi, lo)
    }

    /// Bit j of `qh` as 0x10 in byte j.
    #[inline(always)]
    unsafe fn fifth_bits(qh: u32) -> __m256i {
        let v = _mm256_set1_epi32(qh as i32);
        // Byte j takes byte j / 8 of qh ...
        let shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
        let v = _mm256_shuffle_epi8(v, shuf);
        // ... and keeps bit j % 8 of it.
        let bit = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }

    #[inline(always)]
    unsafe fn dot_u8_i8(q: __m256i, y: *const i8) -> __m256 {
        let y = _mm256_load_si256(y as *const __m256i);
        let p16 = _mm256_maddubs_epi16(q, y);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q4_1(w: &[u8], a: &[Q8Act]) -> f32 {
        // Two blocks per step into two accumulators: the FMA chains overlap.
        let n = (w.len() / Q4_1_BYTES).min(a.len());
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (mut m0, mut m1) = (0f32, 0f32);
        let p = w.as_ptr();
        let mut i = 0;
        while i + 2 <= n {
            let (b0, b1) = (p.add(i * Q4_1_BYTES), p.add((i + 1) * Q4_1_BYTES));
            let (y0, y1) = (a.get_unchecked(i), a.get_unchecked(i + 1));
            let s0 = dot_u8_i8(unpack_nibbles(b0.add(4)), y0.qs.as_ptr());
            let s1 = dot_u8_i8(unpack_nibbles(b1.add(4)), y1.qs.as_ptr());
            let bs0 = std::slice::from_raw_parts(b0, 4);
            let bs1 = std::slice::from_raw_parts(b1, 4);
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half_at(bs0, 0) * y0.d), s0, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_set1_ps(half_at(bs1, 0) * y1.d), s1, acc1);
            m0 += half_at(bs0, 2) * y0.s;
            m1 += half_at(bs1, 2) * y1.s;
            i += 2;
        }
        if i < n {
            let b = std::slice::from_raw_parts(p.add(i * Q4_1_BYTES), Q4_1_BYTES);
            let y = a.get_unchecked(i);
            let s = dot_u8_i8(unpack_nibbles(b.as_ptr().add(4)), y.qs.as_ptr());
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half_at(b, 0) * y.d), s, acc0);
            m0 += half_at(b, 2) * y.s;
        }
        hsum(_mm256_add_ps(acc0, acc1)) + (m0 + m1)
    }

    /// Signed weights (`load` gives 32 int8 of a block) times int8 activations: maddubs needs an unsigned side, so
    /// take |w| and move w's sign onto the activations. Even and odd blocks go to separate sums.
    #[inline(always)]
    unsafe fn signed_dot(y: &Q8Act, w: __m256i) -> __m256 {
        let yv = _mm256_load_si256(y.qs.as_ptr() as *const __m256i);
        let p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(yv, w));
        _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
    }

    // The loops below take blocks in pairs with the even and odd accumulators in named variables: indexing an
    // accumulator array by `block & 1` kept it in memory (a store-to-load chain per block, half the decode speed).

    #[inline(always)]
    unsafe fn signed_1(w: &[u8], a: &[Q8Act], size: usize, load: impl Fn(*const u8) -> __m256i) -> f32 {
        let n = (w.len() / size).min(a.len());
        let p = w.as_ptr();
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let block = |i: usize, acc: __m256| {
            let b = p.add(i * size);
            let y = a.get_unchecked(i);
            let d = half_at(std::slice::from_raw_parts(b, 2), 0);
            _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), signed_dot(y, load(b)), acc)
        };
        let mut i = 0;
        while i + 2 <= n {
            acc0 = block(i, acc0);
            acc1 = block(i + 1, acc1);
            i += 2;
        }
        if i < n {
            acc0 = block(i, acc0);
        }
        hsum(_mm256_add_ps(acc0, acc1))
    }

    #[inline(always)]
    unsafe fn signed_4(w: &[u8], a: [&[Q8Act]; 4], size: usize, load: impl Fn(*const u8) -> __m256i) -> [f32; 4] {
        let n = w.len() / size;
        let p = w.as_ptr();
        let z = _mm256_setzero_ps();
        let (mut e0, mut e1, mut e2, mut e3) = (z, z, z, z);
        let (mut o0, mut o1, mut o2, mut o3) = (z, z, z, z);
        let step = |i: usize, acc: [__m256; 4]| -> [__m256; 4] {
            let b = p.add(i * size);
            let d = half_at(std::slice::from_raw_parts(b, 2), 0);
            let q = load(b);
            let one = |k: usize, acc: __m256| {
                let y = a[k].get_unchecked(i);
                _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), signed_dot(y, q), acc)
            };
            [one(0, acc[0]), one(1, acc[1]), one(2, acc[2]), one(3, acc[3])]
        };
        let mut i = 0;
        while i + 2 <= n {
            [e0, e1, e2, e3] = step(i, [e0, e1, e2, e3]);
            [o0, o1, o2, o3] = step(i + 1, [o0, o1, o2, o3]);
            i += 2;
        }
        if i < n {
            [e0, e1, e2, e3] = step(i, [e0, e1, e2, e3]);
        }
        [
            hsum(_mm256_add_ps(e0, o0)),
            hsum(_mm256_add_ps(e1, o1)),
            hsum(_mm256_add_ps(e2, o2)),
            hsum(_mm256_add_ps(e3, o3)),
        ]
    }

    #[inline(always)]
    unsafe fn load_q5_0(b: *const u8) -> __m256i {
        let qh = u32::from_le_bytes([*b.add(2), *b.add(3), *b.add(4), *b.add(5)]);
        let q = _mm256_or_si256(unpack_nibbles(b.add(6)), fifth_bits(qh));
        _mm256_sub_epi8(q, _mm256_set1_epi8(16))
    }

    #[inline(always)]
    unsafe fn load_q4_0(b: *const u8) -> __m256i {
        _mm256_sub_epi8(unpack_nibbles(b.add(2)), _mm256_set1_epi8(8))
    }

    #[inline(always)]
    unsafe fn load_q8_0(b: *const u8) -> __m256i {
        _mm256_loadu_si256(b.add(2) as *const __m256i)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q5_0(w: &[u8], a: &[Q8Act]) -> f32 {
        signed_1(w, a, Q5_0_BYTES, |b| load_q5_0(b))
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q5_0_x4(w: &[u8], a: [&[Q8Act]; 4]) -> [f32; 4] {
        signed_4(w, a, Q5_0_BYTES, |b| load_q5_0(b))
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q4_0(w: &[u8], a: &[Q8Act]) -> f32 {
        signed_1(w, a, Q4_0_BYTES, |b| load_q4_0(b))
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q4_0_x4(w: &[u8], a: [&[Q8Act]; 4]) -> [f32; 4] {
        signed_4(w, a, Q4_0_BYTES, |b| load_q4_0(b))
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q8_0(w: &[u8], a: &[Q8Act]) -> f32 {
        signed_1(w, a, Q8_0_BYTES, |b| load_q8_0(b))
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q8_0_x4(w: &[u8], a: [&[Q8Act]; 4]) -> [f32; 4] {
        signed_4(w, a, Q8_0_BYTES, |b| load_q8_0(b))
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q5_1(w: &[u8], a: &[Q8Act]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut summ = 0f32;
        for (b, y) in w.chunks_exact(Q5_1_BYTES).zip(a) {
            let (d, m) = (half_at(b, 0), half_at(b, 2));
            let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            let q = _mm256_or_si256(unpack_nibbles(b.as_ptr().add(8)), fifth_bits(qh));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), dot_u8_i8(q, y.qs.as_ptr()), acc);
            summ += m * y.s;
        }
        hsum(acc) + summ
    }

    /// Four activation rows against one weight row: the weights are unpacked once for all four (prompt processing).
    /// Even and odd blocks go to separate sums, exactly as in `dot_q4_1`, so each row gets the same bits either way.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q4_1_x4(w: &[u8], a: [&[Q8Act]; 4]) -> [f32; 4] {
        let n = w.len() / Q4_1_BYTES;
        let p = w.as_ptr();
        let z = _mm256_setzero_ps();
        let (mut ea, mut oa) = ([z; 4], [z; 4]);
        let (mut em, mut om) = ([0f32; 4], [0f32; 4]);
        let step = |i: usize, acc: [__m256; 4], m: [f32; 4]| -> ([__m256; 4], [f32; 4]) {
            let b = std::slice::from_raw_parts(p.add(i * Q4_1_BYTES), Q4_1_BYTES);
            let (d, mm) = (half_at(b, 0), half_at(b, 2));
            let q = unpack_nibbles(b.as_ptr().add(4));
            let one = |k: usize| {
                let y = a[k].get_unchecked(i);
                (_mm256_fmadd_ps(_mm256_set1_ps(d * y.d), dot_u8_i8(q, y.qs.as_ptr()), acc[k]), m[k] + mm * y.s)
            };
            let (r0, r1, r2, r3) = (one(0), one(1), one(2), one(3));
            ([r0.0, r1.0, r2.0, r3.0], [r0.1, r1.1, r2.1, r3.1])
        };
        let mut i = 0;
        while i + 2 <= n {
            (ea, em) = step(i, ea, em);
            (oa, om) = step(i + 1, oa, om);
            i += 2;
        }
        if i < n {
            (ea, em) = step(i, ea, em);
        }
        let f = |k: usize| hsum(_mm256_add_ps(ea[k], oa[k])) + (em[k] + om[k]);
        [f(0), f(1), f(2), f(3)]
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut s0 = _mm256_setzero_ps();
        let mut s1 = _mm256_setzero_ps();
        let mut s2 = _mm256_setzero_ps();
        let mut s3 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 32 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), s1);
            s2 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 16)), _mm256_loadu_ps(pb.add(i + 16)), s2);
            s3 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 24)), _mm256_loadu_ps(pb.add(i + 24)), s3);
            i += 32;
        }
        while i + 8 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            i += 8;
        }
        let mut t = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
        while i < n {
            t += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        t
    }

    /// `y += a * x`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len().min(y.len());
        let (px, py) = (x.as_ptr(), y.as_mut_ptr());
        let va = _mm256_set1_ps(a);
        let mut i = 0;
        while i + 8 <= n {
            _mm256_storeu_ps(py.add(i), _mm256_fmadd_ps(va, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i))));
            i += 8;
        }
        while i < n {
            *py.add(i) += a * *px.add(i);
            i += 1;
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| {
        std::env::var_os("MEDFORGE_NO_SIMD").is_none()
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
    })
}

macro_rules! dispatch {
    ($name:ident, $($arg:ident: $ty:ty),*) => {
        #[inline]
        pub fn $name($($arg: $ty),*) -> f32 {
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                return unsafe { avx2::$name($($arg),*) };
            }
            scalar::$name($($arg),*)
        }
    };
}

dispatch!(dot_q4_1, w: &[u8], a: &[Q8Act]);
dispatch!(dot_q5_0, w: &[u8], a: &[Q8Act]);
dispatch!(dot_q5_1, w: &[u8], a: &[Q8Act]);
dispatch!(dot_q4_0, w: &[u8], a: &[Q8Act]);
dispatch!(dot_q8_0, w: &[u8], a: &[Q8Act]);
dispatch!(dot_f32, a: &[f32], b: &[f32]);

/// `[dot(w, a[0]), .., dot(w, a[3])]`, reading the weights once.
#[inline]
pub fn dot_q4_1_x4(w: &[u8], a: [&[Q8Act]; 4]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked above); each a[k] has a block per weight block.
        debug_assert!(a.iter().all(|x| x.len() * Q4_1_BYTES >= w.len()));
        return unsafe { avx2::dot_q4_1_x4(w, a) };
    }
    a.map(|x| scalar::dot_q4_1(w, x))
}

macro_rules! dispatch4 {
    ($name:ident, $scalar:ident, $bytes:expr) => {
        /// Four activation rows against one weight row, reading the weights once.
        #[inline]
        pub fn $name(w: &[u8], a: [&[Q8Act]; 4]) -> [f32; 4] {
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                debug_assert!(a.iter().all(|x| x.len() * $bytes >= w.len()));
                // SAFETY: the CPU has AVX2 and FMA (checked above); each a[k] has a block per weight block.
                return unsafe { avx2::$name(w, a) };
            }
            a.map(|x| scalar::$scalar(w, x))
        }
    };
}

dispatch4!(dot_q5_0_x4, dot_q5_0, Q5_0_BYTES);
dispatch4!(dot_q4_0_x4, dot_q4_0, Q4_0_BYTES);
dispatch4!(dot_q8_0_x4, dot_q8_0, Q8_0_BYTES);

/// `y += a * x`.
#[inline]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { avx2::axpy(a, x, y) };
    }
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand_bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    fn rand_f32(n: usize, seed: u64) -> Vec<f32> {
        rand_bytes(n * 2, seed).chunks(2).map(|c| (c[0] as f32 - 127.5) / 50.0 + c[1] as f32 / 1000.0).collect()
    }

    /// Valid block bytes: random quants, small finite f16 scales.
    fn blocks(n: usize, size: usize, scales: usize, seed: u64) -> Vec<u8> {
        let mut b = rand_bytes(n * size, seed);
        for blk in b.chunks_exact_mut(size) {
            for k in 0..scales {
                let v = f16::from_f32(0.01 + (blk[2 * k + 1] as f32) / 5000.0 * if k == 1 { -1.0 } else { 1.0 });
                blk[2 * k..2 * k + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
        b
    }

    fn act(n: usize, seed: u64) -> Vec<Q8Act> {
        let x = rand_f32(n * QK, seed);
        let mut a = vec![Q8Act::default(); n];
        quantize_act(&x, &mut a);
        a
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 1e-4 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn simd_kernels_equal_the_scalar_definitions() {
        // The comparison only means something when the dispatchers pick the SIMD kernels: say which ran, and never
        // compare scalar with scalar in CI.
        #[cfg(target_arch = "x86_64")]
        {
            let cpu = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            let found = (cpu && std::env::var_os("MEDFORGE_NO_SIMD").is_none()).then(std::path::PathBuf::new);
            if medforge_testkit::require(
                "the AVX2+FMA kernels",
                "an x86-64 CPU with AVX2 and FMA, MEDFORGE_NO_SIMD unset",
                found,
            )
            .is_none()
            {
                return;
            }
            assert!(has_avx2(), "the dispatchers must pick the AVX2 kernels on this CPU");
        }
        for (nb, seed) in [(1usize, 3u64), (18, 5), (48, 9)] {
            let a = act(nb, seed);
            let w = blocks(nb, Q4_1_BYTES, 2, seed + 1);
            assert!(close(dot_q4_1(&w, &a), scalar::dot_q4_1(&w, &a)));
            let w = blocks(nb, Q5_0_BYTES, 1, seed + 2);
            assert!(
                close(dot_q5_0(&w, &a), scalar::dot_q5_0(&w, &a)),
                "{} {}",
                dot_q5_0(&w, &a),
                scalar::dot_q5_0(&w, &a)
            );
            let w = blocks(nb, Q5_1_BYTES, 2, seed + 3);
            assert!(close(dot_q5_1(&w, &a), scalar::dot_q5_1(&w, &a)));
            let acts: Vec<Vec<Q8Act>> = (0..4).map(|k| act(nb, seed + 10 + k)).collect();
            let four = [&acts[0][..], &acts[1][..], &acts[2][..], &acts[3][..]];
            let w1 = blocks(nb, Q4_1_BYTES, 2, seed + 1);
            let w0 = blocks(nb, Q5_0_BYTES, 1, seed + 2);
            let w40 = blocks(nb, Q4_0_BYTES, 1, seed + 7);
            let w80 = blocks(nb, Q8_0_BYTES, 1, seed + 8);
            assert!(close(dot_q4_0(&w40, &a), scalar::dot_q4_0(&w40, &a)));
            assert!(close(dot_q8_0(&w80, &a), scalar::dot_q8_0(&w80, &a)));
            for k in 0..4 {
                assert!(close(dot_q4_1_x4(&w1, four)[k], scalar::dot_q4_1(&w1, four[k])));
                assert!(close(dot_q5_0_x4(&w0, four)[k], scalar::dot_q5_0(&w0, four[k])));
                assert!(close(dot_q4_0_x4(&w40, four)[k], scalar::dot_q4_0(&w40, four[k])));
                assert!(close(dot_q8_0_x4(&w80, four)[k], scalar::dot_q8_0(&w80, four[k])));
                // One row and four rows: the same bits.
                assert_eq!(dot_q8_0_x4(&w80, four)[k], dot_q8_0(&w80, four[k]));
                assert_eq!(dot_q4_1_x4(&w1, four)[k], dot_q4_1(&w1, four[k]));
            }
            let x = rand_f32(nb * QK + 5, seed + 4);
            let y = rand_f32(nb * QK + 5, seed + 6);
            assert!(close(dot_f32(&x, &y), scalar::dot_f32(&x, &y)));
        }
    }

    /// The scalar Q4_1 definition against the plain arithmetic of the dequantised weights.
    #[test]
    fn q4_1_dot_is_the_dequantised_product() {
        let w = blocks(2, Q4_1_BYTES, 2, 11);
        let a = act(2, 12);
        let mut want = 0f32;
        for (bi, b) in w.chunks_exact(Q4_1_BYTES).enumerate() {
            let (d, m) = (half_at(b, 0), half_at(b, 2));
            for j in 0..QK {
                let q = if j < 16 { b[4 + j] & 15 } else { b[4 + j - 16] >> 4 };
                let y = &a[bi];
                want += (d * q as f32 + m) * (y.d * y.qs[j] as f32);
            }
        }
        // m * s uses s = f16(d * sum), as llama.cpp does: agree to f16 precision of that term.
        assert!((scalar::dot_q4_1(&w, &a) - want).abs() < 2e-2 * (1.0 + want.abs()), "{want}");
    }

    #[test]
    fn activations_round_trip_within_half_a_step() {
        let x = rand_f32(64, 21);
        let mut a = vec![Q8Act::default(); 2];
        quantize_act(&x, &mut a);
        for (i, v) in x.iter().enumerate() {
            let b = &a[i / QK];
            assert!((b.qs[i % QK] as f32 * b.d - v).abs() <= b.d * 0.51 + 1e-3, "{i}");
        }
    }
}
