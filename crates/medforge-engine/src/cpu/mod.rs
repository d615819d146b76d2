//! The CPU forward pass's building blocks, on plain `f32` slices: quantised weight matrices and their products with
//! activations ([`matrix`]), and the elementwise and attention kernels ([`ops`]).
//!
//! Why not candle tensors here: a 135M model decodes a token in a few milliseconds, so candle's per-op dispatch and
//! allocation (about 20 ops per layer) and its scalar-only Q4_1 dot product dominated (2.4 tok/s, against llama.cpp's
//! 110 on the same file). The weights still come through candle (GGUF reader, block types, dequantisation and its
//! AVX kernels for Q4_0, Q8_0 and the k-quants); what candle has only as scalar code (Q4_1, Q5_0, Q5_1, f32) is written
//! here with AVX2 and checked against the scalar definition.

pub mod backward;
pub mod dense_attention;
pub mod gemm;
pub mod matrix;
pub mod ops;
pub mod pool;
pub(crate) mod simd;

pub use matrix::QMatrix;
