//! The forward pass: one decoder layer at a time ([`Layer::forward`], with an optional KV cache and an optional
//! [`LayerTape`]), and the passes built on it: inference over KV caches ([`Model::forward_batch`], several sequences
//! sharing each pass over the weights) and training over whole sequences with a [`Tape`] ([`Model::forward_tape`]);
//! then logits and log-probabilities.

use rayon::prelude::*;

use crate::cpu::dense_attention;
use crate::cpu::gemm::{matmul, matmul_scaled, matmul_x_wt};
use crate::cpu::matrix::matmul_many;
use crate::cpu::ops::{self, AttnShape, RopeTable};
use crate::cpu::QMatrix;
use crate::{EngineError, Result};

use super::config::{Activation, ModelConfig};
use super::lora::LoraDropout;
use super::tape::{LayerTape, Tape};
use super::weights::{Layer, Linear, Model, Projection};

/// Keys and values of every layer, one row of `n_kv_head * head_dim` per position. Truncating (to reuse a shared
/// prefix) drops rows.
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    kv_dim: usize,
    pub len: usize,
}

impl KvCache {
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
        for b in self.k.iter_mut().chain(self.v.iter_mut()) {
            b.truncate(self.len * self.kv_dim);
        }
    }
}

/// Hidden states, `rows x dim`, row-major.
#[derive(Debug, Clone)]
pub struct Hidden {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Hidden {
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.dim..(r + 1) * self.dim]
    }

    /// Rows `from..from + n`.
    pub fn slice(&self, from: usize, n: usize) -> &[f32] {
        &self.data[from * self.dim..(from + n) * self.dim]
    }
}

/// One sequence's rows in a pass: rows `off..off + t` at positions `start..start + t`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub(super) off: usize,
    pub(super) t: usize,
    pub(super) start: usize,
}

/// Each sequence's rotary tables for one pass: the global base, and the sliding layers' base where it differs.
pub(super) struct Ropes {
    global: Vec<RopeTable>,
    local: Option<Vec<RopeTable>>,
}

impl Ropes {
    pub(super) fn new(c: &ModelConfig, spans: &[Span]) -> Ropes {
        let tables = |base: f64, scale: f64| -> Vec<RopeTable> {
            spans
                .iter()
                .map(|s| RopeTable::new(s.start, s.t, c.head_dim, base as f32, scale as f32, &c.rope_freq_factors))
                .collect()
        };
        Ropes { global: tables(c.rope_theta, c.rope_linear_scale), local: c.rope_local_theta.map(|b| tables(b, 1.0)) }
    }

    pub(super) fn for_layer(&self, sliding: bool) -> &[RopeTable] {
        match (&self.local, sliding) {
            (Some(l), true) => l,
            _ => &self.global,
        }
    }
}

/// The attention geometry of layer `li`.
pub(super) fn attn_shape(c: &ModelConfig, li: usize) -> AttnShape {
    let sliding = c.is_sliding(li);
    AttnShape {
        n_head: c.n_head,
        n_kv_head: c.n_kv_head,
        head_dim: c.head_dim,
        scale: c.attn_scale,
        window: if sliding { c.sliding_window } else { None },
        softcap: c.attn_softcap,
    }
}

/// How a pass runs: with the LoRA pairs or not, with dropout on their inputs (training only), and with the dense
/// kernels of training passes (one tiled GEMM per projection, per-head GEMM attention) or the inference kernels.
#[derive(Debug, Clone, Copy)]
pub(super) struct PassMode {
    pub(super) lora: bool,
    pub(super) dropout: Option<LoraDropout>,
    pub(super) dense: bool,
}

/// `y_i = x W_i^T` for projections that read the same input, in one pass over their weights.
fn project(x: &[f32], t: usize, li: usize, lins: &[(Projection, &Linear)], lp: PassMode) -> Vec<Vec<f32>> {
    let mut outs: Vec<Vec<f32>> = lins.iter().map(|(_, l)| vec![0f32; t * l.out_dim()]).collect();
    if lp.dense {
        for ((p, l), o) in lins.iter().zip(outs.iter_mut()) {
            matmul_x_wt(&l.w, x, t, o, false);
            l.finish(x, t, false, o);
            if let (true, Some(pair)) = (lp.lora, l.lora()) {
                let dropped = lp.dropout.map(|d| d.apply(x, li, *p));
                let xd = dropped.as_deref().unwrap_or(x);
                let r = pair.rank();
                let mut z = vec![0f32; t * r];
                matmul(t, r, pair.in_dim(), xd, false, pair.a(), true, &mut z, false);
                matmul_scaled(t, pair.out_dim(), r, &z, false, pair.b(), true, o, true, pair.scale());
            }
        }
        return outs;
    }
    {
        let mut mats: Vec<(&QMatrix, &mut [f32])> =
            lins.iter().zip(outs.iter_mut()).map(|((_, l), o)| (&l.w, o.as_mut_slice())).collect();
        matmul_many(x, t, &mut mats);
    }
    for ((p, l), o) in lins.iter().zip(outs.iter_mut()) {
        match (lp.lora, lp.dropout, l.lora()) {
            (true, Some(d), Some(pair)) => {
                l.finish(x, t, false, o);
                pair.add_to(&d.apply(x, li, *p), t, o);
            }
            _ => l.finish(x, t, lp.lora, o),
        }
    }
    outs
}

/// Where a layer's attention reads keys and values.
enum Keys<'a, 'c> {
    /// Inference: append each sequence's keys/values to its cache (one per span) and attend over the cache.
    Cache(&'a mut [&'c mut KvCache]),
    /// Training: whole sequences from position 0, attending over this pass's own keys.
    Pass,
}

impl Layer {
    /// One layer over a pass's rows: `x` (the residual stream, `rows x hidden`) is updated in place; `h` is scratch.
    /// `tape` records what a backward pass needs.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        li: usize,
        c: &ModelConfig,
        lp: PassMode,
        x: &mut [f32],
        h: &mut [f32],
        spans: &[Span],
        ropes: &Ropes,
        keys: Keys,
        mut tape: Option<&mut LayerTape>,
    ) {
        let (hd, nh, nkv) = (c.head_dim, c.n_head, c.n_kv_head);
        let (qd, kvd) = (nh * hd, nkv * hd);
        let t = x.len() / c.hidden;
        let (eps, add) = (c.rms_eps as f32, c.norm_add);
        // Inverse-norm and log-sum-exp buffers, only when recording.
        let rec = tape.is_some();
        let inv = |n: usize| rec.then(|| vec![0f32; n]);

        let mut attn_inv = inv(t);
        ops::rms_norm(x, &self.attn_norm, eps, add, h, attn_inv.as_deref_mut());
        if let Some(tp) = tape.as_deref_mut() {
            tp.x_in = x.to_vec();
            tp.attn_normed = h.to_vec();
            tp.attn_inv_rms = attn_inv.take().unwrap_or_default();
        }
        let mut qkv =
            project(h, t, li, &[(Projection::Q, &self.q), (Projection::K, &self.k), (Projection::V, &self.v)], lp);
        let vv = qkv.pop().expect("v");
        let mut kk = qkv.pop().expect("k");
        let mut qq = qkv.pop().expect("q");
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            let (mut qi, mut ki) = (inv(t * nh), inv(t * nkv));
            if let Some(tp) = tape.as_deref_mut() {
                tp.q_raw = Some(qq.clone());
                tp.k_raw = Some(kk.clone());
            }
            ops::rms_norm_inplace(&mut qq, qn, eps, add, qi.as_deref_mut());
            ops::rms_norm_inplace(&mut kk, kn, eps, add, ki.as_deref_mut());
            if let Some(tp) = tape.as_deref_mut() {
                tp.q_inv_rms = qi.unwrap_or_default();
                tp.k_inv_rms = ki.unwrap_or_default();
            }
        }
        let tabs = ropes.for_layer(c.is_sliding(li));
        let shape = attn_shape(c, li);
        for (s, tab) in spans.iter().zip(tabs) {
            ops::rope(&mut qq[s.off * qd..(s.off + s.t) * qd], s.t, nh, hd, tab, c.rope_interleaved);
            ops::rope(&mut kk[s.off * kvd..(s.off + s.t) * kvd], s.t, nkv, hd, tab, c.rope_interleaved);
        }
        let mut att = vec![0f32; t * qd];
        let mut lse = inv(t * nh);
        // Inference appends this pass's keys/values to each sequence's cache and attends over the cache; training
        // attends over the pass's own keys from position 0.
        let caches: Option<&[&mut KvCache]> = match keys {
            Keys::Cache(caches) => {
                for (cache, s) in caches.iter_mut().zip(spans) {
                    let (kc, vc) = (&mut cache.k[li], &mut cache.v[li]);
                    kc.truncate(s.start * kvd);
                    vc.truncate(s.start * kvd);
                    kc.extend_from_slice(&kk[s.off * kvd..(s.off + s.t) * kvd]);
                    vc.extend_from_slice(&vv[s.off * kvd..(s.off + s.t) * kvd]);
                }
                Some(caches)
            }
            Keys::Pass => None,
        };
        if let (None, true) = (caches, lp.dense) {
            // Training: whole sequences from position 0, each head's scores as one GEMM.
            let mut scratch;
            let lse_all: &mut [f32] = match lse.as_deref_mut() {
                Some(l) => l,
                None => {
                    scratch = vec![0f32; t * nh];
                    &mut scratch
                }
            };
            for s in spans {
                dense_attention::attention_forward(
                    &qq[s.off * qd..(s.off + s.t) * qd],
                    &kk[s.off * kvd..(s.off + s.t) * kvd],
                    &vv[s.off * kvd..(s.off + s.t) * kvd],
                    s.t,
                    shape,
                    &mut att[s.off * qd..(s.off + s.t) * qd],
                    &mut lse_all[s.off * nh..(s.off + s.t) * nh],
                );
            }
        } else {
            {
                let mut jobs = Vec::with_capacity(spans.len());
                let mut rest: &mut [f32] = &mut att;
                let mut lse_rest: Option<&mut [f32]> = lse.as_deref_mut();
                for (i, s) in spans.iter().enumerate() {
                    let (out, tail) = std::mem::take(&mut rest).split_at_mut(s.t * qd);
                    rest = tail;
                    let l = lse_rest.take().map(|l| {
                        let (head, tail) = l.split_at_mut(s.t * nh);
                        lse_rest = Some(tail);
                        head
                    });
                    let (k, v, start) = match caches {
                        Some(c) => (&c[i].k[li][..], &c[i].v[li][..], s.start),
                        None => (&kk[s.off * kvd..(s.off + s.t) * kvd], &vv[s.off * kvd..(s.off + s.t) * kvd], 0),
                    };
                    jobs.push(ops::AttnJob {
                        q: &qq[s.off * qd..(s.off + s.t) * qd],
                        k,
                        v,
                        t: s.t,
                        start,
                        out,
                        lse: l,
                    });
                }
                ops::attention_batch(&mut jobs, shape);
            }
        }
        let mut o = project(&att, t, li, &[(Projection::O, &self.o)], lp).pop().expect("o");
        if let Some(tp) = tape.as_deref_mut() {
            tp.q = qq;
            tp.k = kk;
            tp.v = vv;
            tp.attn_out = att;
            tp.attn_lse = lse.take().unwrap_or_default();
        }
        if let Some(pn) = &self.post_attn_norm {
            let raw = o.clone();
            let mut oi = inv(t);
            ops::rms_norm(&raw, pn, eps, add, &mut o, oi.as_deref_mut());
            if let Some(tp) = tape.as_deref_mut() {
                tp.o_raw = Some(raw);
                tp.o_inv_rms = oi.unwrap_or_default();
            }
        }
        x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
        let mut ffn_inv = inv(t);
        ops::rms_norm(x, &self.ffn_norm, eps, add, h, ffn_inv.as_deref_mut());
        if let Some(tp) = tape.as_deref_mut() {
            tp.x_mid = x.to_vec();
            tp.ffn_normed = h.to_vec();
            tp.ffn_inv_rms = ffn_inv.unwrap_or_default();
        }
        let mut gu = project(h, t, li, &[(Projection::Gate, &self.gate), (Projection::Up, &self.up)], lp);
        let u = gu.pop().expect("up");
        let mut g = gu.pop().expect("gate");
        if let Some(tp) = tape.as_deref_mut() {
            tp.gate = g.clone();
            tp.up = u.clone();
        }
        let act: fn(f32) -> f32 = match c.activation {
            Activation::Silu => ops::silu,
            Activation::GeluTanh => ops::gelu_tanh,
        };
        if t >= ops::PAR_ROWS {
            g.par_chunks_mut(4096).zip(u.par_chunks(4096)).for_each(|(gc, uc)| {
                gc.iter_mut().zip(uc).for_each(|(a, b)| *a = act(*a) * b);
            });
        } else {
            g.iter_mut().zip(&u).for_each(|(a, b)| *a = act(*a) * b);
        }
        let mut d = project(&g, t, li, &[(Projection::Down, &self.down)], lp).pop().expect("down");
        if let Some(pn) = &self.post_ffn_norm {
            let raw = d.clone();
            let mut di = inv(t);
            ops::rms_norm(&raw, pn, eps, add, &mut d, di.as_deref_mut());
            if let Some(tp) = tape {
                tp.down_raw = Some(raw);
                tp.down_inv_rms = di.unwrap_or_default();
            }
        }
        x.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
    }
}

impl Model {
    pub fn new_cache(&self) -> KvCache {
        let n = self.config.n_layer;
        KvCache {
            k: vec![Vec::new(); n],
            v: vec![Vec::new(); n],
            kv_dim: self.config.n_kv_head * self.config.head_dim,
            len: 0,
        }
    }

    /// The embedded (and, for Gemma, scaled) rows of `seqs`, after checking the ids; returns them with the spans.
    fn embed_pass(&self, seqs: &[(&[u32], usize)]) -> Result<(Vec<f32>, Vec<Span>)> {
        let c = &self.config;
        let vocab = self.embed.rows();
        let mut spans = Vec::with_capacity(seqs.len());
        let mut rows = 0;
        for &(ids, start) in seqs {
            if start + ids.len() > c.context_length {
                return Err(EngineError::ContextOverflow { needed: start + ids.len(), limit: c.context_length });
            }
            if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
                return Err(EngineError::BadInput(format!("token id {bad} is outside the vocabulary of {vocab}")));
            }
            spans.push(Span { off: rows, t: ids.len(), start });
            rows += ids.len();
        }
        let dim = c.hidden;
        let mut x = vec![0f32; rows * dim];
        for (&(ids, _), s) in seqs.iter().zip(&spans) {
            for (k, &id) in ids.iter().enumerate() {
                self.embed.row_f32(id as usize, &mut x[(s.off + k) * dim..(s.off + k + 1) * dim]);
            }
        }
        if let Some(scale) = c.embed_scale {
            x.iter_mut().for_each(|v| *v *= scale);
        }
        Ok((x, spans))
    }

    /// Run `ids` at positions `cache.len..`, append their keys/values, and return the final-normed hidden states.
    pub fn forward(&self, ids: &[u32], cache: &mut KvCache) -> Result<Hidden> {
        self.forward_batch(&mut [(ids, cache)])
    }

    /// Several sequences at once, each with its own cache: the projections run on all their rows together (one pass
    /// over the weights), attention on each sequence's own keys. Returns the hidden states of every new position,
    /// sequence after sequence.
    pub fn forward_batch(&self, seqs: &mut [(&[u32], &mut KvCache)]) -> Result<Hidden> {
        let starts: Vec<(&[u32], usize)> = seqs.iter().map(|(ids, cache)| (*ids, cache.len)).collect();
        let (mut x, spans) = self.embed_pass(&starts)?;
        let ropes = Ropes::new(&self.config, &spans);
        let mut h = vec![0f32; x.len()];
        let mut caches: Vec<&mut KvCache> = seqs.iter_mut().map(|(_, c)| &mut **c).collect();
        for (li, layer) in self.layers.iter().enumerate() {
            let keys = Keys::Cache(&mut caches);
            let lp = PassMode { lora: self.lora_enabled, dropout: None, dense: false };
            layer.forward(li, &self.config, lp, &mut x, &mut h, &spans, &ropes, keys, None);
        }
        for (cache, s) in caches.iter_mut().zip(&spans) {
            cache.len += s.t;
        }
        let (eps, add) = (self.config.rms_eps as f32, self.config.norm_add);
        ops::rms_norm(&x.clone(), &self.norm, eps, add, &mut x, None);
        Ok(Hidden { rows: x.len() / self.config.hidden, dim: self.config.hidden, data: x })
    }

    /// Training's pass: whole sequences from position 0, no cache, on the dense kernels (tiled GEMMs, per-head GEMM
    /// attention), every layer's activations recorded in the returned [`Tape`]. Without LoRA dropout the hidden states
    /// equal [`Model::forward_batch`]'s on fresh caches up to float rounding.
    pub fn forward_tape(&self, seqs: &[&[u32]]) -> Result<(Hidden, Tape)> {
        let (h, tape) = self.forward_dense(seqs, true)?;
        Ok((h, tape.expect("recorded")))
    }

    /// [`Model::forward_tape`] without the tape or dropout: whole sequences scored on the dense kernels (training's
    /// evaluations and DPO's reference, which must see the function training optimises).
    pub fn forward_full(&self, seqs: &[&[u32]]) -> Result<Hidden> {
        Ok(self.forward_dense(seqs, false)?.0)
    }

    fn forward_dense(&self, seqs: &[&[u32]], record: bool) -> Result<(Hidden, Option<Tape>)> {
        let starts: Vec<(&[u32], usize)> = seqs.iter().map(|ids| (*ids, 0)).collect();
        let (mut x, spans) = self.embed_pass(&starts)?;
        let ropes = Ropes::new(&self.config, &spans);
        let mut h = vec![0f32; x.len()];
        let mut tape = Tape {
            spans: spans.iter().map(|s| (s.off, s.t)).collect(),
            layers: Vec::with_capacity(self.layers.len()),
            ..Default::default()
        };
        let dropout = if record { self.lora_dropout } else { None };
        let lp = PassMode { lora: self.lora_enabled, dropout, dense: true };
        for (li, layer) in self.layers.iter().enumerate() {
            let mut lt = LayerTape::default();
            let rec = record.then_some(&mut lt);
            layer.forward(li, &self.config, lp, &mut x, &mut h, &spans, &ropes, Keys::Pass, rec);
            if record {
                tape.layers.push(lt);
            }
        }
        let (eps, add) = (self.config.rms_eps as f32, self.config.norm_add);
        let rows = x.len() / self.config.hidden;
        if !record {
            ops::rms_norm(&x.clone(), &self.norm, eps, add, &mut x, None);
            return Ok((Hidden { rows, dim: self.config.hidden, data: x }, None));
        }
        let mut inv = vec![0f32; rows];
        tape.x_final = x.clone();
        ops::rms_norm(&tape.x_final, &self.norm, eps, add, &mut x, Some(&mut inv));
        tape.final_inv_rms = inv;
        Ok((Hidden { rows, dim: self.config.hidden, data: x }, Some(tape)))
    }

    /// [`Model::logits`] on the dense kernels (one tiled GEMM over dequantised panels of the output projection):
    /// training's loss rows, many at a time.
    pub fn logits_dense(&self, hidden: &[f32], n: usize) -> Vec<f32> {
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        let mut out = vec![0f32; n * head.rows()];
        matmul_x_wt(head, hidden, n, &mut out, false);
        if let Some(cap) = self.config.final_softcap {
            out.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        }
        out
    }

    /// Logits `(n x vocab)` of `n` final hidden states (`n x hidden`).
    pub fn logits(&self, hidden: &[f32], n: usize) -> Vec<f32> {
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        let mut out = vec![0f32; n * head.rows()];
        head.matmul(hidden, n, &mut out);
        if let Some(cap) = self.config.final_softcap {
            out.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        }
        out
    }

    /// Logits of the last row of `hidden`.
    pub fn last_logits(&self, hidden: &Hidden) -> Vec<f32> {
        self.logits(hidden.row(hidden.rows - 1), 1)
    }
}

/// Log-softmax of each `vocab`-wide row of `logits`, at the row's target id.
pub fn target_logprobs(logits: &[f32], vocab: usize, targets: &[u32]) -> Vec<f32> {
    logits.chunks_exact(vocab).zip(targets).map(|(row, &t)| row[t as usize] - log_sum_exp(row)).collect()
}

pub fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let s: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
    max + s.ln() as f32
}

/// Index of the largest value (the first of equals).
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}
