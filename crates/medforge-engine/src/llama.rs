//! The llama family (llama, mistral, qwen2): one decoder written on candle's `QMatMul`, so the same code runs
//! quantised GGUF weights and f32 safetensors weights, and returns hidden states for every position (log-likelihood
//! and perplexity need them; candle's stock models return only the last position).
//!
//! Rope layout: llama-architecture GGUF files store Q and K rows permuted for llama.cpp's interleaved rope, so GGUF
//! llama uses the interleaved rope (`rope_i`) on the weights as stored. Hugging Face checkpoints and qwen2 (GGUF or
//! not) use the half-split ("neox") rope.

use std::collections::HashMap;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};

use crate::gguf::Gguf;
use crate::{EngineError, Result};

/// Shape and numerics of a llama-family model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub arch: String,
    pub n_layer: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rms_eps: f64,
    pub rope_theta: f64,
    pub context_length: usize,
    pub vocab_size: usize,
    /// Interleaved (GGUF llama) or half-split (HF, qwen2) rope.
    pub rope_interleaved: bool,
}

impl LlamaConfig {
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let arch = g.arch()?;
        let rope_interleaved = match arch.as_str() {
            "llama" | "mistral" => true,
            "qwen2" => false,
            other => {
                return Err(EngineError::Unsupported(format!(
                    "GGUF architecture `{other}` (supported: llama, mistral, qwen2)"
                )))
            }
        };
        let n_head = g.arch_int(&arch, "attention.head_count")? as usize;
        let hidden = g.arch_int(&arch, "embedding_length")? as usize;
        let head_dim = g.int(&format!("{arch}.rope.dimension_count")).map(|v| v as usize).unwrap_or(hidden / n_head);
        let vocab_size = g
            .strings("tokenizer.ggml.tokens")
            .map(|t| t.len())
            .unwrap_or_else(|| g.content.tensor_infos.get("token_embd.weight").map(|t| t.shape.dims()[0]).unwrap_or(0));
        Ok(LlamaConfig {
            n_layer: g.arch_int(&arch, "block_count")? as usize,
            hidden,
            ffn: g.arch_int(&arch, "feed_forward_length")? as usize,
            n_head,
            n_kv_head: g.int(&format!("{arch}.attention.head_count_kv")).map(|v| v as usize).unwrap_or(n_head),
            head_dim,
            rms_eps: g.float(&format!("{arch}.attention.layer_norm_rms_epsilon")).unwrap_or(1e-5),
            rope_theta: g.float(&format!("{arch}.rope.freq_base")).unwrap_or(10_000.0),
            context_length: g.int(&format!("{arch}.context_length")).map(|v| v as usize).unwrap_or(4096),
            vocab_size,
            rope_interleaved,
            arch,
        })
    }

    /// From a Hugging Face `config.json` (llama, mistral, qwen2).
    pub fn from_hf_config(cfg: &serde_json::Value) -> Result<Self> {
        let arch = cfg["model_type"].as_str().unwrap_or("llama").to_string();
        if !matches!(arch.as_str(), "llama" | "mistral" | "qwen2") {
            return Err(EngineError::Unsupported(format!(
                "safetensors model_type `{arch}` (supported: llama, mistral, qwen2)"
            )));
        }
        let int = |k: &str| -> Result<usize> {
            cfg[k].as_u64().map(|v| v as usize).ok_or_else(|| EngineError::Format(format!("config.json has no `{k}`")))
        };
        let n_head = int("num_attention_heads")?;
        let hidden = int("hidden_size")?;
        Ok(LlamaConfig {
            n_layer: int("num_hidden_layers")?,
            hidden,
            ffn: int("intermediate_size")?,
            n_head,
            n_kv_head: cfg["num_key_value_heads"].as_u64().map(|v| v as usize).unwrap_or(n_head),
            head_dim: cfg["head_dim"].as_u64().map(|v| v as usize).unwrap_or(hidden / n_head),
            rms_eps: cfg["rms_norm_eps"].as_f64().unwrap_or(1e-5),
            rope_theta: cfg["rope_theta"].as_f64().unwrap_or(10_000.0),
            context_length: cfg["max_position_embeddings"].as_u64().map(|v| v as usize).unwrap_or(4096),
            vocab_size: int("vocab_size")?,
            rope_interleaved: false,
            arch,
        })
    }
}

/// Where weights come from. Names are GGUF names (`blk.3.attn_q.weight`); safetensors names are mapped.
pub enum Weights<'a> {
    Gguf { file: &'a mut Gguf, requant: Option<GgmlDType> },
    Safetensors(HashMap<String, Tensor>),
}

fn hf_name(gguf: &str) -> String {
    if let Some(rest) = gguf.strip_prefix("blk.") {
        let (layer, tail) = rest.split_once('.').unwrap_or((rest, ""));
        let (part, suffix) = tail.split_once('.').unwrap_or((tail, "weight"));
        let hf = match part {
            "attn_norm" => "input_layernorm",
            "attn_q" => "self_attn.q_proj",
            "attn_k" => "self_attn.k_proj",
            "attn_v" => "self_attn.v_proj",
            "attn_output" => "self_attn.o_proj",
            "ffn_norm" => "post_attention_layernorm",
            "ffn_gate" => "mlp.gate_proj",
            "ffn_up" => "mlp.up_proj",
            "ffn_down" => "mlp.down_proj",
            other => other,
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

impl Weights<'_> {
    fn has(&self, name: &str) -> bool {
        match self {
            Weights::Gguf { file, .. } => file.content.tensor_infos.contains_key(name),
            Weights::Safetensors(map) => map.contains_key(&hf_name(name)),
        }
    }

    fn qtensor(&mut self, name: &str, dev: &Device) -> Result<QTensor> {
        let Weights::Gguf { file, .. } = self else { unreachable!() };
        Ok(file.content.tensor(&mut file.reader, name, dev)?)
    }

    /// A tensor as plain f32.
    fn tensor(&mut self, name: &str, dev: &Device) -> Result<Tensor> {
        match self {
            Weights::Gguf { .. } => Ok(self.qtensor(name, dev)?.dequantize(dev)?),
            Weights::Safetensors(map) => {
                let t = map
                    .get(&hf_name(name))
                    .ok_or_else(|| EngineError::Format(format!("missing tensor {}", hf_name(name))))?;
                Ok(t.to_dtype(DType::F32)?.to_device(dev)?)
            }
        }
    }

    /// A matrix for `x @ W^T`, kept quantised where the source is (optionally requantised).
    fn linear(&mut self, name: &str, dev: &Device) -> Result<QMatMul> {
        match self {
            Weights::Gguf { requant, .. } => {
                let requant = *requant;
                let q = self.qtensor(name, dev)?;
                let q = match requant {
                    Some(target) if q.dtype() != target && is_quantized(q.dtype()) => {
                        let cols = q.shape().dims().last().copied().unwrap_or(0);
                        if cols.is_multiple_of(target.block_size()) {
                            QTensor::quantize(&q.dequantize(dev)?, target)?
                        } else {
                            q
                        }
                    }
                    _ => q,
                };
                Ok(QMatMul::from_qtensor(q)?)
            }
            Weights::Safetensors(_) => Ok(QMatMul::Tensor(self.tensor(name, dev)?)),
        }
    }
}

fn is_quantized(t: GgmlDType) -> bool {
    !matches!(t, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
}

struct Proj {
    w: QMatMul,
    b: Option<Tensor>,
}

impl Proj {
    fn load(w: &mut Weights, name: &str, dev: &Device) -> Result<Self> {
        let bias = format!("{name}.bias");
        let b = if w.has(&bias) { Some(w.tensor(&bias, dev)?) } else { None };
        Ok(Proj { w: w.linear(&format!("{name}.weight"), dev)?, b })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.w.forward(x)?;
        match &self.b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

struct Layer {
    attn_norm: Tensor,
    q: Proj,
    k: Proj,
    v: Proj,
    o: Proj,
    ffn_norm: Tensor,
    gate: Proj,
    up: Proj,
    down: Proj,
}

/// A loaded llama-family model. Stateless: the KV cache lives in [`KvCache`].
pub struct Llama {
    pub config: LlamaConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: QMatMul,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

/// Per-layer key/value buffers `(1, kv_heads, capacity, head_dim)` and the number of positions filled.
/// Truncating (to reuse a shared prefix) is setting `len`.
pub struct KvCache {
    k: Vec<Option<Tensor>>,
    v: Vec<Option<Tensor>>,
    capacity: usize,
    pub len: usize,
}

impl KvCache {
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl Llama {
    pub fn load(config: LlamaConfig, w: &mut Weights, device: &Device) -> Result<Self> {
        let dev = device;
        let embed = w.tensor("token_embd.weight", dev)?;
        let lm_head = if w.has("output.weight") {
            w.linear("output.weight", dev)?
        } else {
            // Tied output layer (SmolLM2): reuse the embedding matrix.
            w.linear("token_embd.weight", dev)?
        };
        let mut layers = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let p = |s: &str| format!("blk.{i}.{s}");
            layers.push(Layer {
                attn_norm: w.tensor(&p("attn_norm.weight"), dev)?,
                q: Proj::load(w, &p("attn_q"), dev)?,
                k: Proj::load(w, &p("attn_k"), dev)?,
                v: Proj::load(w, &p("attn_v"), dev)?,
                o: Proj::load(w, &p("attn_output"), dev)?,
                ffn_norm: w.tensor(&p("ffn_norm.weight"), dev)?,
                gate: Proj::load(w, &p("ffn_gate"), dev)?,
                up: Proj::load(w, &p("ffn_up"), dev)?,
                down: Proj::load(w, &p("ffn_down"), dev)?,
            });
        }
        let norm = w.tensor("output_norm.weight", dev)?;
        let half = config.head_dim / 2;
        let inv: Vec<f32> =
            (0..half).map(|i| 1.0 / config.rope_theta.powf(2.0 * i as f64 / config.head_dim as f64) as f32).collect();
        let n = config.context_length;
        let inv = Tensor::from_vec(inv, (1, half), dev)?;
        let pos = Tensor::arange(0u32, n as u32, dev)?.to_dtype(DType::F32)?.reshape((n, 1))?;
        let freqs = pos.matmul(&inv)?;
        Ok(Llama { cos: freqs.cos()?, sin: freqs.sin()?, embed, layers, norm, lm_head, config, device: dev.clone() })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache { k: vec![None; self.config.n_layer], v: vec![None; self.config.n_layer], capacity: 0, len: 0 }
    }

    /// Run `ids` at positions `cache.len..`, append their keys/values, and return the final-normed hidden states
    /// `(ids.len(), hidden)`.
    pub fn forward(&self, ids: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let c = &self.config;
        let t = ids.len();
        let start = cache.len;
        if start + t > c.context_length {
            return Err(EngineError::ContextOverflow { needed: start + t, limit: c.context_length });
        }
        self.ensure_capacity(cache, start + t)?;
        let ids_t = Tensor::new(ids, &self.device)?;
        let mut x = self.embed.index_select(&ids_t, 0)?;
        let cos = self.cos.narrow(0, start, t)?;
        let sin = self.sin.narrow(0, start, t)?;
        let total = start + t;
        let mask = if t > 1 { Some(causal_mask(t, start, &self.device)?) } else { None };
        let n_rep = c.n_head / c.n_kv_head;
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        for (li, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, c.rms_eps as f32)?;
            let q = layer.q.forward(&h)?.reshape((1, t, c.n_head, c.head_dim))?.transpose(1, 2)?.contiguous()?;
            let k = layer.k.forward(&h)?.reshape((1, t, c.n_kv_head, c.head_dim))?.transpose(1, 2)?.contiguous()?;
            let v = layer.v.forward(&h)?.reshape((1, t, c.n_kv_head, c.head_dim))?.transpose(1, 2)?.contiguous()?;
            let (q, k) = if c.rope_interleaved {
                (candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?, candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?)
            } else {
                (candle_nn::rotary_emb::rope(&q, &cos, &sin)?, candle_nn::rotary_emb::rope(&k, &cos, &sin)?)
            };
            let kb = cache.k[li].as_ref().expect("cache allocated");
            let vb = cache.v[li].as_ref().expect("cache allocated");
            kb.slice_set(&k, 2, start)?;
            vb.slice_set(&v, 2, start)?;
            let k_all = kb.narrow(2, 0, total)?;
            let v_all = vb.narrow(2, 0, total)?;
            // Grouped-query attention without copying K/V: the n_rep query heads that share a KV head are stacked
            // along the sequence axis.
            let qg = q.reshape((1, c.n_kv_head, n_rep * t, c.head_dim))?;
            let att = (qg.matmul(&k_all.t()?)? * scale)?;
            let att = match &mask {
                Some(m) => att.reshape((1, c.n_kv_head, n_rep, t, total))?.broadcast_add(m)?.reshape((
                    1,
                    c.n_kv_head,
                    n_rep * t,
                    total,
                ))?,
                None => att,
            };
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att.matmul(&v_all)?; // (1, kvh, n_rep*t, d)
            let y = y.reshape((1, c.n_head, t, c.head_dim))?.transpose(1, 2)?.reshape((t, c.n_head * c.head_dim))?;
            x = (x + layer.o.forward(&y)?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, c.rms_eps as f32)?;
            let g = candle_nn::ops::silu(&layer.gate.forward(&h)?)?;
            let u = layer.up.forward(&h)?;
            x = (x + layer.down.forward(&(g * u)?)?)?;
        }
        cache.len = total;
        Ok(candle_nn::ops::rms_norm(&x, &self.norm, c.rms_eps as f32)?)
    }

    /// Logits `(rows, vocab)` of final hidden states `(rows, hidden)`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.lm_head.forward(hidden)?)
    }

    /// Logits of the last position only, as a vector.
    pub fn last_logits(&self, hidden: &Tensor) -> Result<Vec<f32>> {
        let t = hidden.dim(0)?;
        Ok(self.logits(&hidden.narrow(0, t - 1, 1)?)?.squeeze(0)?.to_vec1()?)
    }

    fn ensure_capacity(&self, cache: &mut KvCache, needed: usize) -> Result<()> {
        if needed <= cache.capacity && cache.k[0].is_some() {
            return Ok(());
        }
        let c = &self.config;
        let cap = needed.max(cache.capacity * 2).max(256).min(c.context_length).max(needed);
        for li in 0..c.n_layer {
            let grow = |old: &Option<Tensor>| -> Result<Tensor> {
                let buf = Tensor::zeros((1, c.n_kv_head, cap, c.head_dim), DType::F32, &self.device)?;
                if let Some(old) = old {
                    if cache.len > 0 {
                        buf.slice_set(&old.narrow(2, 0, cache.len)?.contiguous()?, 2, 0)?;
                    }
                }
                Ok(buf)
            };
            cache.k[li] = Some(grow(&cache.k[li])?);
            cache.v[li] = Some(grow(&cache.v[li])?);
        }
        cache.capacity = cap;
        Ok(())
    }
}

/// `(t, start + t)` additive mask: query i (at position start + i) sees keys 0..=start + i.
fn causal_mask(t: usize, start: usize, dev: &Device) -> Result<Tensor> {
    let total = start + t;
    let m: Vec<f32> =
        (0..t).flat_map(|i| (0..total).map(move |j| if j > start + i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Ok(Tensor::from_vec(m, (t, total), dev)?)
}

/// Log-softmax of each row of `(rows, vocab)` logits, returned as the log-probabilities of `targets`.
pub fn target_logprobs(logits: &Tensor, targets: &[u32]) -> Result<Vec<f32>> {
    let lsm = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let idx = Tensor::new(targets, logits.device())?.unsqueeze(1)?;
    Ok(lsm.gather(&idx, 1)?.squeeze(1)?.to_vec1()?)
}
