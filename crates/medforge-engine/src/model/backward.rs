//! The backward pass of [`Model::forward_tape`], hand-written beside the forward: RMS norms (Gemma's `1 + w` and the
//! per-head q/k norms too), RoPE in both layouts, SwiGLU/GeGLU, causal GQA attention recomputed flash-style from the
//! saved output and log-sum-exp, the output projection on loss rows only, and the projections: a frozen base costs
//! only `dX = dY·W` (over quantised weights a dequantised panel at a time, the QLoRA pattern); LoRA pairs (with
//! dropout) and, in full fine-tuning, the weights themselves accumulate their gradients into a [`GradSink`]. Checked
//! against PyTorch autograd in `tests/backward.rs`.

use rayon::prelude::*;

use crate::cpu::backward::{gelu_tanh_grad, rms_norm_backward, rope_backward, silu_grad, AttnGrad};
use crate::cpu::dense_attention::attention_backward;
use crate::cpu::gemm::{accumulate_dy_w, matmul};
use crate::cpu::ops;
use crate::{EngineError, Result};

use super::config::{Activation, ModelConfig};
use super::forward::{attn_shape, PassMode, Ropes, Span};
use super::lora::LoraPair;
use super::params::{NormKind, Param};
use super::tape::{LayerTape, Tape};
use super::weights::{Layer, Linear, Model, Projection};

/// Where the backward pass accumulates gradients (a trainer's flat gradient buffer). Every gradient is added to what
/// the accumulator holds, so micro-batches accumulate without copies. Rows are in the engine's order: for GGUF llama
/// bases the q/k rows of B (and of q/k weights) are permuted as the base's are.
pub trait GradSink {
    /// The accumulators of layer `layer`'s `proj` LoRA pair: dA (`rank × in`) and dB (`out × rank`); `None` skips
    /// the pair.
    fn lora(&mut self, layer: usize, proj: Projection) -> Option<(&mut [f32], &mut [f32])>;

    /// The accumulator of one of the model's own weights (full fine-tuning), shaped like it. `None`, the default,
    /// means the weight is frozen: its gradient is never computed (a frozen projection costs only `dX = dY·W`).
    fn base(&mut self, _param: Param) -> Option<&mut [f32]> {
        None
    }
}

/// A sink that takes no gradient (only the input gradient is wanted).
pub struct NoGrads;

impl GradSink for NoGrads {
    fn lora(&mut self, _: usize, _: Projection) -> Option<(&mut [f32], &mut [f32])> {
        None
    }
}

/// `dW += dyᵀ·x` (`out × in`).
fn weight_grad(dw: &mut [f32], dy: &[f32], x: &[f32], t: usize, out: usize, inp: usize) {
    matmul(out, inp, t, dy, true, x, false, dw, true);
}

/// `dw += Σ_rows dy ⊙ x · (1/rms)`: the gradient of an RMS norm's weight (the same for Gemma's `1 + w`).
fn norm_weight_grad(dw: &mut [f32], x: &[f32], inv: &[f32], dy: &[f32]) {
    let d = dw.len();
    for ((xr, gr), &ir) in x.chunks_exact(d).zip(dy.chunks_exact(d)).zip(inv) {
        for ((o, &xv), &g) in dw.iter_mut().zip(xr).zip(gr) {
            *o += g * xv * ir;
        }
    }
}

/// The backward of an RMS norm: `dx += ...` and, when the sink trains the weight, its gradient.
#[allow(clippy::too_many_arguments)]
fn norm_backward(
    x: &[f32],
    w: &[f32],
    add: f32,
    inv: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    sink: &mut dyn GradSink,
    param: Param,
) {
    rms_norm_backward(x, w, add, inv, dy, dx);
    if let Some(dw) = sink.base(param) {
        norm_weight_grad(dw, x, inv, dy);
    }
}

/// `dx += dy·W` (`dy`: `t × out`), the gradients of the projection's LoRA pair when LoRA is on, and of its weight
/// and bias when the sink trains them.
#[allow(clippy::too_many_arguments)]
fn linear_backward(
    lin: &Linear,
    x: &[f32],
    dy: &[f32],
    t: usize,
    lp: PassMode,
    dx: &mut [f32],
    sink: &mut dyn GradSink,
    (li, proj): (usize, Projection),
) {
    accumulate_dy_w(&lin.w, dy, t, dx);
    let (out, inp) = (lin.out_dim(), lin.in_dim());
    if let Some(dw) = sink.base(Param::Weight(li, proj)) {
        weight_grad(dw, dy, x, t, out, inp);
    }
    if lin.bias.is_some() {
        if let Some(db) = sink.base(Param::Bias(li, proj)) {
            for row in dy.chunks_exact(out) {
                db.iter_mut().zip(row).for_each(|(a, b)| *a += b);
            }
        }
    }
    let Some(pair) = lin.lora().filter(|_| lp.lora) else { return };
    let Some((da, db)) = sink.lora(li, proj) else {
        // Frozen pair: only its contribution to dx.
        lora_input_grad(pair, dy, t, lp, li, proj, dx);
        return;
    };
    let (r, s) = (pair.rank(), pair.scale());
    // y = x Wᵀ + s·(x_d Aᵀ) Bᵀ, x_d = dropout(x); z = s·x_d Aᵀ (t × r).
    let dropped = lp.dropout.map(|d| d.apply(x, li, proj));
    let xd = dropped.as_deref().unwrap_or(x);
    let mut z = vec![0f32; t * r];
    matmul(t, r, inp, xd, false, pair.a(), true, &mut z, false);
    z.iter_mut().for_each(|v| *v *= s);
    // dB += dyᵀ z
    matmul(out, r, t, dy, true, &z, false, db, true);
    // dz = s·dy B (t × r); dA += dzᵀ x_d
    let mut dz = vec![0f32; t * r];
    matmul(t, r, out, dy, false, pair.b(), false, &mut dz, false);
    dz.iter_mut().for_each(|v| *v *= s);
    matmul(r, inp, t, &dz, true, xd, false, da, true);
    add_lora_dx(pair, &dz, t, lp, li, proj, dx);
}

/// `dx += (dz·A) ⊙ dropout mask` for `dz = s·dy B`.
fn add_lora_dx(pair: &LoraPair, dz: &[f32], t: usize, lp: PassMode, li: usize, proj: Projection, dx: &mut [f32]) {
    match lp.dropout {
        None => matmul(t, pair.in_dim(), pair.rank(), dz, false, pair.a(), false, dx, true),
        Some(d) => {
            let mut g = vec![0f32; t * pair.in_dim()];
            matmul(t, pair.in_dim(), pair.rank(), dz, false, pair.a(), false, &mut g, false);
            // The mask is linear: applying it to the gradient is the transpose of applying it to x.
            dx.iter_mut().zip(d.apply(&g, li, proj)).for_each(|(a, b)| *a += b);
        }
    }
}

/// A frozen LoRA pair's share of `dx` (a pair the sink does not train, e.g. a second adapter).
fn lora_input_grad(pair: &LoraPair, dy: &[f32], t: usize, lp: PassMode, li: usize, proj: Projection, dx: &mut [f32]) {
    let mut dz = vec![0f32; t * pair.rank()];
    matmul(t, pair.rank(), pair.out_dim(), dy, false, pair.b(), false, &mut dz, false);
    dz.iter_mut().for_each(|v| *v *= pair.scale());
    add_lora_dx(pair, &dz, t, lp, li, proj, dx);
}

impl Layer {
    /// The backward of one layer on a training pass: `dx` holds dL/d(layer output) and becomes dL/d(layer input).
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        li: usize,
        c: &ModelConfig,
        lp: PassMode,
        lt: &LayerTape,
        spans: &[Span],
        ropes: &Ropes,
        dx: &mut [f32],
        sink: &mut dyn GradSink,
    ) {
        let (hd, nh, nkv, dim) = (c.head_dim, c.n_head, c.n_kv_head, c.hidden);
        let (qd, kvd) = (nh * hd, nkv * hd);
        let t = dx.len() / dim;
        let add = c.norm_add;
        let norm = |k: NormKind| Param::Norm(li, k);

        // MLP: x_out = x_mid + post_ffn_norm(down(act(gate) ⊙ up)).
        let d_down = match (&self.post_ffn_norm, &lt.down_raw) {
            (Some(w), Some(raw)) => {
                let mut g = vec![0f32; t * dim];
                norm_backward(raw, w, add, &lt.down_inv_rms, dx, &mut g, sink, norm(NormKind::PostFfn));
                g
            }
            _ => dx.to_vec(),
        };
        type Scalar = fn(f32) -> f32;
        let (act, act_grad): (Scalar, Scalar) = match c.activation {
            Activation::Silu => (ops::silu, silu_grad),
            Activation::GeluTanh => (ops::gelu_tanh, gelu_tanh_grad),
        };
        let a: Vec<f32> = lt.gate.par_iter().zip(&lt.up).map(|(g, u)| act(*g) * u).collect();
        let ffn = lt.gate.len() / t;
        let mut da = vec![0f32; t * ffn];
        linear_backward(&self.down, &a, &d_down, t, lp, &mut da, sink, (li, Projection::Down));
        drop(a);
        let dg: Vec<f32> = da.par_iter().zip(&lt.gate).zip(&lt.up).map(|((d, g), u)| d * u * act_grad(*g)).collect();
        let du: Vec<f32> = da.par_iter().zip(&lt.gate).map(|(d, g)| d * act(*g)).collect();
        drop(da);
        let mut dh = vec![0f32; t * dim];
        linear_backward(&self.gate, &lt.ffn_normed, &dg, t, lp, &mut dh, sink, (li, Projection::Gate));
        linear_backward(&self.up, &lt.ffn_normed, &du, t, lp, &mut dh, sink, (li, Projection::Up));
        // dx now becomes dL/dx_mid: the residual plus the MLP norm's input gradient.
        norm_backward(&lt.x_mid, &self.ffn_norm, add, &lt.ffn_inv_rms, &dh, dx, sink, norm(NormKind::Ffn));

        // Attention: x_mid = x_in + post_attn_norm(o(attention(rope(q), rope(k), v))).
        let d_o = match (&self.post_attn_norm, &lt.o_raw) {
            (Some(w), Some(raw)) => {
                let mut g = vec![0f32; t * dim];
                norm_backward(raw, w, add, &lt.o_inv_rms, dx, &mut g, sink, norm(NormKind::PostAttn));
                g
            }
            _ => dx.to_vec(),
        };
        let mut d_att = vec![0f32; t * qd];
        linear_backward(&self.o, &lt.attn_out, &d_o, t, lp, &mut d_att, sink, (li, Projection::O));
        let (mut dq, mut dk, mut dv) = (vec![0f32; t * qd], vec![0f32; t * kvd], vec![0f32; t * kvd]);
        let shape = attn_shape(c, li);
        let tabs = ropes.for_layer(c.is_sliding(li));
        for (sp, tab) in spans.iter().zip(tabs) {
            let (q_rows, kv_rows, h_rows) = (
                sp.off * qd..(sp.off + sp.t) * qd,
                sp.off * kvd..(sp.off + sp.t) * kvd,
                sp.off * nh..(sp.off + sp.t) * nh,
            );
            attention_backward(
                AttnGrad {
                    q: &lt.q[q_rows.clone()],
                    k: &lt.k[kv_rows.clone()],
                    v: &lt.v[kv_rows.clone()],
                    o: &lt.attn_out[q_rows.clone()],
                    lse: &lt.attn_lse[h_rows],
                    d_o: &d_att[q_rows.clone()],
                    t: sp.t,
                    dq: &mut dq[q_rows.clone()],
                    dk: &mut dk[kv_rows.clone()],
                    dv: &mut dv[kv_rows.clone()],
                },
                shape,
            );
            rope_backward(&mut dq[q_rows], sp.t, nh, hd, tab, c.rope_interleaved);
            rope_backward(&mut dk[kv_rows], sp.t, nkv, hd, tab, c.rope_interleaved);
        }
        if let (Some(qn), Some(kn), Some(q_raw), Some(k_raw)) = (&self.q_norm, &self.k_norm, &lt.q_raw, &lt.k_raw) {
            let mut g = vec![0f32; t * qd];
            norm_backward(q_raw, qn, add, &lt.q_inv_rms, &dq, &mut g, sink, norm(NormKind::Q));
            dq = g;
            let mut g = vec![0f32; t * kvd];
            norm_backward(k_raw, kn, add, &lt.k_inv_rms, &dk, &mut g, sink, norm(NormKind::K));
            dk = g;
        }
        let mut dh = vec![0f32; t * dim];
        linear_backward(&self.q, &lt.attn_normed, &dq, t, lp, &mut dh, sink, (li, Projection::Q));
        linear_backward(&self.k, &lt.attn_normed, &dk, t, lp, &mut dh, sink, (li, Projection::K));
        linear_backward(&self.v, &lt.attn_normed, &dv, t, lp, &mut dh, sink, (li, Projection::V));
        // dx becomes dL/dx_in: the residual plus the attention norm's input gradient.
        norm_backward(&lt.x_in, &self.attn_norm, add, &lt.attn_inv_rms, &dh, dx, sink, norm(NormKind::Attn));
    }
}

impl Model {
    /// The backward pass of [`Model::forward_tape`]: from `d_hidden` (dL/d of the final-normed hidden states, one
    /// row per position of the pass) to the gradients the sink asks for (LoRA pairs when LoRA is on; the model's own
    /// weights in full fine-tuning), and dL/d of the layer stack's input (the embeddings after Gemma's scale), which
    /// it returns. The LoRA setting and dropout must be those of the forward pass.
    pub fn backward(&self, tape: &Tape, d_hidden: &[f32], sink: &mut dyn GradSink) -> Result<Vec<f32>> {
        let c = &self.config;
        let rows: usize = tape.spans.iter().map(|s| s.1).sum();
        if d_hidden.len() != rows * c.hidden || tape.layers.len() != self.layers.len() {
            return Err(EngineError::BadInput(format!(
                "backward: {} gradient values and {} tape layers for {rows} rows of a {}-layer model with hidden {}",
                d_hidden.len(),
                tape.layers.len(),
                self.layers.len(),
                c.hidden
            )));
        }
        let spans: Vec<Span> = tape.spans.iter().map(|&(off, t)| Span { off, t, start: 0 }).collect();
        let ropes = Ropes::new(c, &spans);
        let lp = PassMode { lora: self.lora_enabled, dropout: self.lora_dropout, dense: true };
        let mut dx = vec![0f32; rows * c.hidden];
        norm_backward(
            &tape.x_final,
            &self.norm,
            c.norm_add,
            &tape.final_inv_rms,
            d_hidden,
            &mut dx,
            sink,
            Param::FinalNorm,
        );
        for (li, (layer, lt)) in self.layers.iter().zip(&tape.layers).enumerate().rev() {
            layer.backward(li, c, lp, lt, &spans, &ropes, &mut dx, sink);
        }
        Ok(dx)
    }

    /// The embedding's gradient from [`Model::backward`]'s result: `dx` (one row per id of the pass, `ids` in the
    /// pass's order) scattered into the embedding rows, through Gemma's scale. Only when the sink trains
    /// [`Param::Embed`].
    pub fn embed_backward(&self, ids: &[u32], dx: &[f32], sink: &mut dyn GradSink) {
        let Some(de) = sink.base(Param::Embed) else { return };
        let dim = self.config.hidden;
        let scale = self.config.embed_scale.unwrap_or(1.0);
        for (&id, row) in ids.iter().zip(dx.chunks_exact(dim)) {
            let dst = &mut de[id as usize * dim..(id as usize + 1) * dim];
            dst.iter_mut().zip(row).for_each(|(a, b)| *a += scale * b);
        }
    }

    /// dL/d(hidden rows) of `n` final hidden rows (`hidden`, `n × hidden`) whose [`Model::logits`] were `logits`,
    /// given dL/d(logits) (`n × vocab`; through the final soft cap where the model has one); and the output
    /// projection's gradient when the sink trains it (the embedding when tied).
    pub fn logits_backward(
        &self,
        hidden: &[f32],
        logits: &[f32],
        d_logits: &[f32],
        n: usize,
        sink: &mut dyn GradSink,
    ) -> Vec<f32> {
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        let d_raw: Vec<f32> = match self.config.final_softcap {
            Some(cap) => d_logits.iter().zip(logits).map(|(d, l)| d * (1.0 - (l / cap) * (l / cap))).collect(),
            None => d_logits.to_vec(),
        };
        let mut dh = vec![0f32; n * self.config.hidden];
        accumulate_dy_w(head, &d_raw, n, &mut dh);
        let param = if self.lm_head.is_some() { Param::LmHead } else { Param::Embed };
        if let Some(dw) = sink.base(param) {
            weight_grad(dw, &d_raw, hidden, n, head.rows(), head.cols());
        }
        dh
    }
}
