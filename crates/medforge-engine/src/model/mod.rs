//! Decoder-only transformers on the CPU kernels of [`crate::cpu`]: one forward pass for the llama family (llama,
//! mistral, qwen2; [`llama`]) and the Gemma family (gemma, gemma2, gemma3; [`gemma`]), whose differences are
//! switches of [`ModelConfig`] (embedding scale, `(1 + w)` norms, per-head q/k norms, sandwich norms, GELU, sliding
//! windows, soft caps, two rope bases). Weights come from GGUF files or Hugging Face safetensors ([`Source`]), with an
//! optional PEFT LoRA adapter ([`lora`]).
//!
//! The forward pass returns hidden states for every position (log-likelihood and perplexity need them) and runs
//! several sequences at once ([`Model::forward_batch`]): their projections share one pass over the weights.

pub mod gemma;
pub mod llama;
pub mod lora;

use std::collections::HashMap;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};

use crate::cpu::matrix::matmul_many;
use crate::cpu::ops::{self, AttnShape, RopeTable};
use crate::cpu::QMatrix;
use crate::gguf::Gguf;
use crate::{EngineError, Result};

pub use lora::Adapter;

/// Model families with their own tensor names and forward-pass switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Llama,
    Gemma,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    GeluTanh,
}

/// Shape and numerics of a decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// `llama`, `mistral`, `qwen2`, `gemma`, `gemma2`, `gemma3`.
    pub arch: String,
    pub family: Family,
    pub n_layer: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rms_eps: f64,
    pub rope_theta: f64,
    /// Rope base of the sliding-window layers where it differs (Gemma 3: 10,000 against 1,000,000).
    pub rope_local_theta: Option<f64>,
    /// Linear position scaling of the global layers (`rope_scaling.factor`), 1 for none.
    pub rope_linear_scale: f64,
    /// Per-frequency divisors (Llama 3.1's `rope_freqs`), empty for none.
    pub rope_freq_factors: Vec<f32>,
    /// Interleaved pairs (GGUF llama, whose Q/K rows are stored permuted) or half-split (HF, qwen2, gemma).
    pub rope_interleaved: bool,
    pub context_length: usize,
    pub vocab_size: usize,
    pub activation: Activation,
    /// Multiply embeddings by this (Gemma: sqrt(hidden)).
    pub embed_scale: Option<f32>,
    /// Added to every norm weight: 1 for Gemma checkpoints in HF layout (`x * (1 + w)`); GGUF stores `1 + w`.
    pub norm_add: f32,
    pub qk_norm: bool,
    /// Norms after attention and after the MLP as well as before (Gemma 2 and 3).
    pub sandwich_norm: bool,
    /// Query scaling (default `1 / sqrt(head_dim)`).
    pub attn_scale: f32,
    pub sliding_window: Option<usize>,
    /// Which layers use the sliding window (all of them when `sliding_window` is set and this is empty).
    pub sliding_layers: Vec<bool>,
    pub attn_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
}

impl ModelConfig {
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let arch = g.arch()?;
        match arch.as_str() {
            "llama" | "mistral" | "qwen2" => llama::config_from_gguf(g, &arch),
            "gemma" | "gemma2" | "gemma3" => gemma::config_from_gguf(g, &arch),
            other => Err(EngineError::Unsupported(format!(
                "GGUF architecture `{other}` (supported: llama, mistral, qwen2, gemma, gemma2, gemma3)"
            ))),
        }
    }

    /// From a Hugging Face `config.json`.
    pub fn from_hf_config(cfg: &serde_json::Value) -> Result<Self> {
        let arch = cfg["model_type"].as_str().unwrap_or("llama");
        match arch {
            "llama" | "mistral" | "qwen2" => llama::config_from_hf(cfg, arch),
            "gemma" | "gemma2" | "gemma3_text" | "gemma3" => gemma::config_from_hf(cfg, arch),
            other => Err(EngineError::Unsupported(format!(
                "safetensors model_type `{other}` (supported: llama, mistral, qwen2, gemma, gemma2, gemma3_text)"
            ))),
        }
    }

    fn is_sliding(&self, layer: usize) -> bool {
        self.sliding_window.is_some() && self.sliding_layers.get(layer).copied().unwrap_or(true)
    }
}

/// Where weights come from. Names are GGUF names (`blk.3.attn_q.weight`); safetensors names are mapped per family.
pub enum Source<'a> {
    Gguf { file: &'a mut Gguf, requant: Option<GgmlDType> },
    Safetensors { tensors: HashMap<String, Tensor>, family: Family, requant: Option<GgmlDType> },
}

/// The Hugging Face name of a GGUF tensor name.
pub fn hf_name(gguf: &str, family: Family) -> String {
    if let Some(rest) = gguf.strip_prefix("blk.") {
        let (layer, tail) = rest.split_once('.').unwrap_or((rest, ""));
        let (part, suffix) = tail.split_once('.').unwrap_or((tail, "weight"));
        let hf = match (part, family) {
            ("attn_norm", _) => "input_layernorm",
            ("attn_q", _) => "self_attn.q_proj",
            ("attn_k", _) => "self_attn.k_proj",
            ("attn_v", _) => "self_attn.v_proj",
            ("attn_output", _) => "self_attn.o_proj",
            ("attn_q_norm", _) => "self_attn.q_norm",
            ("attn_k_norm", _) => "self_attn.k_norm",
            ("ffn_norm", Family::Llama) => "post_attention_layernorm",
            ("ffn_norm", Family::Gemma) => "pre_feedforward_layernorm",
            ("post_attention_norm", _) => "post_attention_layernorm",
            ("post_ffw_norm", _) => "post_feedforward_layernorm",
            ("ffn_gate", _) => "mlp.gate_proj",
            ("ffn_up", _) => "mlp.up_proj",
            ("ffn_down", _) => "mlp.down_proj",
            (other, _) => other,
        };
        return format!("model.layers.{layer}.{hf}.{suffix}");
    }
    match gguf {
        "token_embd.weight" => "model.embed_tokens.weight".into(),
        "output_norm.weight" => "model.norm.weight".into(),
        "output.weight" => "lm_head.weight".into(),
        other => other.into(),
    }
}

impl Source<'_> {
    fn has(&self, name: &str) -> bool {
        match self {
            Source::Gguf { file, .. } => file.content.tensor_infos.contains_key(name),
            Source::Safetensors { tensors, family, .. } => tensors.contains_key(&hf_name(name, *family)),
        }
    }

    fn hf_tensor(&self, name: &str) -> Result<&Tensor> {
        let Source::Safetensors { tensors, family, .. } = self else { unreachable!() };
        let hf = hf_name(name, *family);
        tensors.get(&hf).ok_or_else(|| EngineError::Format(format!("the checkpoint has no tensor `{hf}`")))
    }

    /// A 1-D tensor (norm weight, bias) as f32.
    fn vector(&mut self, name: &str) -> Result<Vec<f32>> {
        match self {
            Source::Gguf { file, .. } => {
                let q = file.content.tensor(&mut file.reader, name, &Device::Cpu)?;
                Ok(q.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1()?)
            }
            Source::Safetensors { .. } => Ok(self.hf_tensor(name)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?),
        }
    }

    /// A weight matrix, kept in its stored format (optionally requantised).
    fn matrix(&mut self, name: &str) -> Result<QMatrix> {
        match self {
            Source::Gguf { file, requant } => {
                let requant = *requant;
                let info = file
                    .content
                    .tensor_infos
                    .get(name)
                    .ok_or_else(|| EngineError::Format(format!("the GGUF file has no tensor `{name}`")))?;
                let (rows, cols) = match info.shape.dims() {
                    [r, c] => (*r, *c),
                    [c] => (1, *c),
                    d => return Err(EngineError::Format(format!("tensor `{name}` has shape {d:?}, not a matrix"))),
                };
                let offset = file.content.tensor_data_offset + info.offset;
                let m = QMatrix::read_from(&mut file.reader, offset, info.ggml_dtype, rows, cols)?;
                match requant {
                    Some(target)
                        if m.dtype() != target
                            && !matches!(m.dtype(), GgmlDType::F32)
                            && m.cols().is_multiple_of(target.block_size()) =>
                    {
                        QMatrix::quantize(m.rows(), m.cols(), m.to_f32(), target)
                    }
                    _ => Ok(m),
                }
            }
            Source::Safetensors { requant, .. } => {
                let requant = *requant;
                let t = self.hf_tensor(name)?;
                let (rows, cols) = t.dims2().map_err(|_| {
                    EngineError::Format(format!("tensor `{name}` has shape {:?}, not a matrix", t.dims()))
                })?;
                let v: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                match requant {
                    Some(target) if cols.is_multiple_of(target.block_size()) => {
                        QMatrix::quantize(rows, cols, v, target)
                    }
                    _ => QMatrix::from_f32(rows, cols, v),
                }
            }
        }
    }
}

/// A projection `y = x W^T (+ b) (+ LoRA)`.
pub struct Linear {
    pub w: QMatrix,
    pub bias: Option<Vec<f32>>,
    pub lora: Option<lora::LoraPair>,
}

impl Linear {
    fn load(src: &mut Source, name: &str) -> Result<Self> {
        let bias = format!("{name}.bias");
        let bias = if src.has(&bias) { Some(src.vector(&bias)?) } else { None };
        Ok(Linear { w: src.matrix(&format!("{name}.weight"))?, bias, lora: None })
    }

    fn out_dim(&self) -> usize {
        self.w.rows()
    }

    /// Bias and LoRA on top of the plain product already in `y`.
    fn finish(&self, x: &[f32], t: usize, y: &mut [f32]) {
        if let Some(b) = &self.bias {
            for row in y.chunks_exact_mut(b.len()) {
                for (v, bi) in row.iter_mut().zip(b) {
                    *v += bi;
                }
            }
        }
        if let Some(l) = &self.lora {
            l.add_to(x, t, y);
        }
    }
}

/// `y_i = x W_i^T` for projections that read the same input, in one pass over their weights.
fn project(x: &[f32], t: usize, lins: &[&Linear]) -> Vec<Vec<f32>> {
    let mut outs: Vec<Vec<f32>> = lins.iter().map(|l| vec![0f32; t * l.out_dim()]).collect();
    {
        let mut mats: Vec<(&QMatrix, &mut [f32])> =
            lins.iter().zip(outs.iter_mut()).map(|(l, o)| (&l.w, o.as_mut_slice())).collect();
        matmul_many(x, t, &mut mats);
    }
    for (l, o) in lins.iter().zip(outs.iter_mut()) {
        l.finish(x, t, o);
    }
    outs
}

pub struct Layer {
    attn_norm: Vec<f32>,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    gate: Linear,
    up: Linear,
    down: Linear,
    post_ffn_norm: Option<Vec<f32>>,
}

impl Layer {
    /// The projection for a PEFT target module name (`q_proj`, `down_proj`, ...).
    pub fn linear_mut(&mut self, module: &str) -> Option<&mut Linear> {
        Some(match module {
            "q_proj" => &mut self.q,
            "k_proj" => &mut self.k,
            "v_proj" => &mut self.v,
            "o_proj" => &mut self.o,
            "gate_proj" => &mut self.gate,
            "up_proj" => &mut self.up,
            "down_proj" => &mut self.down,
            _ => return None,
        })
    }
}

/// A loaded model. Stateless: the KV cache lives in [`KvCache`].
pub struct Model {
    pub config: ModelConfig,
    embed: QMatrix,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// None: tied to the embedding.
    lm_head: Option<QMatrix>,
}

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

impl Model {
    pub fn load(mut config: ModelConfig, src: &mut Source) -> Result<Self> {
        if config.rope_freq_factors.is_empty() && src.has("rope_freqs.weight") {
            config.rope_freq_factors = src.vector("rope_freqs.weight")?;
        }
        let embed = src.matrix("token_embd.weight")?;
        let lm_head = if src.has("output.weight") { Some(src.matrix("output.weight")?) } else { None };
        let gemma = config.family == Family::Gemma;
        let mut layers = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let p = |s: &str| format!("blk.{i}.{s}");
            let opt = |src: &mut Source, s: &str| -> Result<Option<Vec<f32>>> {
                let n = p(s);
                if src.has(&n) {
                    Ok(Some(src.vector(&n)?))
                } else {
                    Ok(None)
                }
            };
            let layer = Layer {
                attn_norm: src.vector(&p("attn_norm.weight"))?,
                q: Linear::load(src, &p("attn_q"))?,
                k: Linear::load(src, &p("attn_k"))?,
                v: Linear::load(src, &p("attn_v"))?,
                o: Linear::load(src, &p("attn_output"))?,
                q_norm: opt(src, "attn_q_norm.weight")?,
                k_norm: opt(src, "attn_k_norm.weight")?,
                post_attn_norm: if gemma { opt(src, "post_attention_norm.weight")? } else { None },
                ffn_norm: src.vector(&p("ffn_norm.weight"))?,
                gate: Linear::load(src, &p("ffn_gate"))?,
                up: Linear::load(src, &p("ffn_up"))?,
                down: Linear::load(src, &p("ffn_down"))?,
                post_ffn_norm: if gemma { opt(src, "post_ffw_norm.weight")? } else { None },
            };
            if config.qk_norm && (layer.q_norm.is_none() || layer.k_norm.is_none()) {
                return Err(EngineError::Format(format!(
                    "layer {i} has no q/k norm weights, which {} needs",
                    config.arch
                )));
            }
            if config.sandwich_norm && (layer.post_attn_norm.is_none() || layer.post_ffn_norm.is_none()) {
                return Err(EngineError::Format(format!(
                    "layer {i} has no post-attention/post-MLP norm weights, which {} needs",
                    config.arch
                )));
            }
            let qd = layer.q.out_dim();
            let kd = layer.k.out_dim();
            if qd != config.n_head * config.head_dim || kd != config.n_kv_head * config.head_dim {
                return Err(EngineError::Format(format!(
                    "layer {i}: q/k projections have {qd}/{kd} outputs, the config says {} heads x {} and {} kv heads",
                    config.n_head, config.head_dim, config.n_kv_head
                )));
            }
            layers.push(layer);
        }
        let norm = src.vector("output_norm.weight")?;
        if embed.cols() != config.hidden {
            return Err(EngineError::Format(format!(
                "the embedding is {} wide, the config says hidden size {}",
                embed.cols(),
                config.hidden
            )));
        }
        Ok(Model { embed, layers, norm, lm_head, config })
    }

    pub fn layers_mut(&mut self) -> &mut [Layer] {
        &mut self.layers
    }

    pub fn new_cache(&self) -> KvCache {
        let n = self.config.n_layer;
        KvCache {
            k: vec![Vec::new(); n],
            v: vec![Vec::new(); n],
            kv_dim: self.config.n_kv_head * self.config.head_dim,
            len: 0,
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.lm_head.as_ref().unwrap_or(&self.embed).rows()
    }

    /// Run `ids` at positions `cache.len..`, append their keys/values, and return the final-normed hidden states.
    pub fn forward(&self, ids: &[u32], cache: &mut KvCache) -> Result<Hidden> {
        self.forward_batch(&mut [(ids, cache)])
    }

    /// Several sequences at once, each with its own cache: the projections run on all their rows together (one pass
    /// over the weights), attention on each sequence's own keys. Returns the hidden states of every new position,
    /// sequence after sequence.
    pub fn forward_batch(&self, seqs: &mut [(&[u32], &mut KvCache)]) -> Result<Hidden> {
        let c = &self.config;
        let (hd, nh, nkv) = (c.head_dim, c.n_head, c.n_kv_head);
        let (qd, kvd, dim) = (nh * hd, nkv * hd, c.hidden);
        let vocab = self.embed.rows();
        let mut spans = Vec::with_capacity(seqs.len()); // (row offset, t, start)
        let mut rows = 0;
        for (ids, cache) in seqs.iter() {
            if cache.len + ids.len() > c.context_length {
                return Err(EngineError::ContextOverflow { needed: cache.len + ids.len(), limit: c.context_length });
            }
            if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
                return Err(EngineError::BadInput(format!("token id {bad} is outside the vocabulary of {vocab}")));
            }
            spans.push((rows, ids.len(), cache.len));
            rows += ids.len();
        }
        let t = rows;
        let mut x = vec![0f32; t * dim];
        for ((ids, _), &(off, _, _)) in seqs.iter().zip(&spans) {
            for (k, &id) in ids.iter().enumerate() {
                self.embed.row_f32(id as usize, &mut x[(off + k) * dim..(off + k + 1) * dim]);
            }
        }
        if let Some(s) = c.embed_scale {
            x.iter_mut().for_each(|v| *v *= s);
        }
        // Rotary tables per sequence (positions differ), for the global and, where different, the local base.
        let tables = |base: f64, scale: f64| -> Vec<RopeTable> {
            spans
                .iter()
                .map(|&(_, n, start)| RopeTable::new(start, n, hd, base as f32, scale as f32, &c.rope_freq_factors))
                .collect()
        };
        let global = tables(c.rope_theta, c.rope_linear_scale);
        let local = c.rope_local_theta.map(|b| tables(b, 1.0));
        let eps = c.rms_eps as f32;
        let add = c.norm_add;
        let mut h = vec![0f32; t * dim];
        for (li, layer) in self.layers.iter().enumerate() {
            ops::rms_norm(&x, &layer.attn_norm, eps, add, &mut h);
            let mut qkv = project(&h, t, &[&layer.q, &layer.k, &layer.v]);
            let vv = qkv.pop().expect("v");
            let mut kk = qkv.pop().expect("k");
            let mut qq = qkv.pop().expect("q");
            if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                ops::rms_norm_inplace(&mut qq, qn, eps, add);
                ops::rms_norm_inplace(&mut kk, kn, eps, add);
            }
            let sliding = c.is_sliding(li);
            let tabs = match (&local, sliding) {
                (Some(l), true) => l,
                _ => &global,
            };
            let shape = AttnShape {
                n_head: nh,
                n_kv_head: nkv,
                head_dim: hd,
                scale: c.attn_scale,
                window: if sliding { c.sliding_window } else { None },
                softcap: c.attn_softcap,
            };
            let mut att = vec![0f32; t * qd];
            for (((_, cache), &(off, n, start)), tab) in seqs.iter_mut().zip(&spans).zip(tabs) {
                let q = &mut qq[off * qd..(off + n) * qd];
                let k = &mut kk[off * kvd..(off + n) * kvd];
                ops::rope(q, n, nh, hd, tab, c.rope_interleaved);
                ops::rope(k, n, nkv, hd, tab, c.rope_interleaved);
                let (kc, vc) = (&mut cache.k[li], &mut cache.v[li]);
                kc.truncate(start * kvd);
                vc.truncate(start * kvd);
                kc.extend_from_slice(k);
                vc.extend_from_slice(&vv[off * kvd..(off + n) * kvd]);
            }
            {
                let mut jobs = Vec::with_capacity(seqs.len());
                let mut rest: &mut [f32] = &mut att;
                for ((_, cache), &(off, n, start)) in seqs.iter().zip(&spans) {
                    let (out, tail) = std::mem::take(&mut rest).split_at_mut(n * qd);
                    rest = tail;
                    jobs.push(ops::AttnJob {
                        q: &qq[off * qd..(off + n) * qd],
                        k: &cache.k[li],
                        v: &cache.v[li],
                        t: n,
                        start,
                        out,
                    });
                }
                ops::attention_batch(&mut jobs, shape);
            }
            let mut o = project(&att, t, &[&layer.o]).pop().expect("o");
            if let Some(pn) = &layer.post_attn_norm {
                let raw = o.clone();
                ops::rms_norm(&raw, pn, eps, add, &mut o);
            }
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            ops::rms_norm(&x, &layer.ffn_norm, eps, add, &mut h);
            let mut gu = project(&h, t, &[&layer.gate, &layer.up]);
            let u = gu.pop().expect("up");
            let mut g = gu.pop().expect("gate");
            match c.activation {
                Activation::Silu => g.iter_mut().zip(&u).for_each(|(a, b)| *a = ops::silu(*a) * b),
                Activation::GeluTanh => g.iter_mut().zip(&u).for_each(|(a, b)| *a = ops::gelu_tanh(*a) * b),
            }
            let mut d = project(&g, t, &[&layer.down]).pop().expect("down");
            if let Some(pn) = &layer.post_ffn_norm {
                let raw = d.clone();
                ops::rms_norm(&raw, pn, eps, add, &mut d);
            }
            x.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
        }
        for ((ids, cache), _) in seqs.iter_mut().zip(&spans) {
            cache.len += ids.len();
        }
        ops::rms_norm(&x.clone(), &self.norm, eps, add, &mut x);
        Ok(Hidden { rows: t, dim, data: x })
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
