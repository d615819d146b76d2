//! Weights: where they come from ([`Source`]: GGUF or safetensors, under GGUF names), the projections ([`Linear`], with
//! an optional LoRA slot), the layers ([`Layer`]) and the whole [`Model`], with the narrow API training uses: the
//! layers and their projections by [`Projection`], LoRA pairs as writable f32 ([`LoraPair`]), and a switch to run
//! with LoRA off (the DPO reference model). The matrix kernels stay private to the crate.

use std::collections::HashMap;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};

use crate::cpu::QMatrix;
use crate::gguf::Gguf;
use crate::{EngineError, Result};

use super::config::{Family, ModelConfig};
use super::lora::{LoraDropout, LoraPair};
use super::params::NormKind;

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
    pub(crate) fn has(&self, name: &str) -> bool {
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
    pub(crate) fn vector(&mut self, name: &str) -> Result<Vec<f32>> {
        match self {
            Source::Gguf { file, .. } => {
                let q = file.content.tensor(&mut file.reader, name, &Device::Cpu)?;
                Ok(q.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1()?)
            }
            Source::Safetensors { .. } => Ok(self.hf_tensor(name)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?),
        }
    }

    /// A weight matrix, kept in its stored format (optionally requantised).
    pub(crate) fn matrix(&mut self, name: &str) -> Result<QMatrix> {
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

/// The seven projections of a layer, by their PEFT target-module names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Projection {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Projection {
    pub const ALL: [Projection; 7] = [
        Projection::Q,
        Projection::K,
        Projection::V,
        Projection::O,
        Projection::Gate,
        Projection::Up,
        Projection::Down,
    ];

    /// `q_proj`, `k_proj`, ...: the names PEFT's `target_modules` and adapter tensors use.
    pub fn module_name(self) -> &'static str {
        match self {
            Projection::Q => "q_proj",
            Projection::K => "k_proj",
            Projection::V => "v_proj",
            Projection::O => "o_proj",
            Projection::Gate => "gate_proj",
            Projection::Up => "up_proj",
            Projection::Down => "down_proj",
        }
    }

    /// The projection of a PEFT module name (`q_proj`, `down_proj`, ...).
    pub fn from_module_name(name: &str) -> Option<Projection> {
        Projection::ALL.into_iter().find(|p| p.module_name() == name)
    }
}

/// A projection `y = x W^T (+ b) (+ LoRA)`. The base weight is frozen (any storage format); the LoRA pair is f32.
pub struct Linear {
    pub(crate) w: QMatrix,
    pub(crate) bias: Option<Vec<f32>>,
    lora: Option<LoraPair>,
}

impl Linear {
    fn load(src: &mut Source, name: &str) -> Result<Self> {
        let bias = format!("{name}.bias");
        let bias = if src.has(&bias) { Some(src.vector(&bias)?) } else { None };
        Ok(Linear { w: src.matrix(&format!("{name}.weight"))?, bias, lora: None })
    }

    /// Input features (columns of W).
    pub fn in_dim(&self) -> usize {
        self.w.cols()
    }

    /// Output features (rows of W).
    pub fn out_dim(&self) -> usize {
        self.w.rows()
    }

    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }

    /// Rows `rows` of the base weight as f32 (dequantised): panels for `dX = dY W` over a quantised base.
    pub fn weight_rows_f32(&self, rows: std::ops::Range<usize>) -> Vec<f32> {
        let cols = self.w.cols();
        let mut out = vec![0f32; rows.len() * cols];
        for (k, r) in rows.enumerate() {
            self.w.row_f32(r, &mut out[k * cols..(k + 1) * cols]);
        }
        out
    }

    /// `y = x W^T (+ b) (+ LoRA when `lora`)` for `t` rows of `x`.
    pub fn forward(&self, x: &[f32], t: usize, lora: bool) -> Vec<f32> {
        let mut y = vec![0f32; t * self.out_dim()];
        self.w.matmul(x, t, &mut y);
        self.finish(x, t, lora, &mut y);
        y
    }

    pub fn lora(&self) -> Option<&LoraPair> {
        self.lora.as_ref()
    }

    /// The LoRA pair, to read or write its A and B.
    pub fn lora_mut(&mut self) -> Option<&mut LoraPair> {
        self.lora.as_mut()
    }

    /// Attach a LoRA pair (replacing any); its shapes must fit this projection.
    pub fn set_lora(&mut self, pair: LoraPair) -> Result<()> {
        if pair.in_dim() != self.in_dim() || pair.out_dim() != self.out_dim() {
            return Err(EngineError::BadInput(format!(
                "a LoRA pair for {}x{} does not fit a {}x{} projection",
                pair.out_dim(),
                pair.in_dim(),
                self.out_dim(),
                self.in_dim()
            )));
        }
        self.lora = Some(pair);
        Ok(())
    }

    /// Detach the LoRA pair, returning it.
    pub fn take_lora(&mut self) -> Option<LoraPair> {
        self.lora.take()
    }

    /// Bias and LoRA on top of the plain product already in `y`.
    pub(crate) fn finish(&self, x: &[f32], t: usize, lora: bool, y: &mut [f32]) {
        if let Some(b) = &self.bias {
            for row in y.chunks_exact_mut(b.len()) {
                for (v, bi) in row.iter_mut().zip(b) {
                    *v += bi;
                }
            }
        }
        if let (true, Some(l)) = (lora, &self.lora) {
            l.add_to(x, t, y);
        }
    }
}

/// One decoder layer's weights.
pub struct Layer {
    pub(crate) attn_norm: Vec<f32>,
    pub(crate) q: Linear,
    pub(crate) k: Linear,
    pub(crate) v: Linear,
    pub(crate) o: Linear,
    pub(crate) q_norm: Option<Vec<f32>>,
    pub(crate) k_norm: Option<Vec<f32>>,
    pub(crate) post_attn_norm: Option<Vec<f32>>,
    pub(crate) ffn_norm: Vec<f32>,
    pub(crate) gate: Linear,
    pub(crate) up: Linear,
    pub(crate) down: Linear,
    pub(crate) post_ffn_norm: Option<Vec<f32>>,
}

impl Layer {
    pub fn projection(&self, p: Projection) -> &Linear {
        match p {
            Projection::Q => &self.q,
            Projection::K => &self.k,
            Projection::V => &self.v,
            Projection::O => &self.o,
            Projection::Gate => &self.gate,
            Projection::Up => &self.up,
            Projection::Down => &self.down,
        }
    }

    pub fn projection_mut(&mut self, p: Projection) -> &mut Linear {
        match p {
            Projection::Q => &mut self.q,
            Projection::K => &mut self.k,
            Projection::V => &mut self.v,
            Projection::O => &mut self.o,
            Projection::Gate => &mut self.gate,
            Projection::Up => &mut self.up,
            Projection::Down => &mut self.down,
        }
    }

    /// The projection for a PEFT target module name (`q_proj`, `down_proj`, ...).
    pub fn linear_mut(&mut self, module: &str) -> Option<&mut Linear> {
        Projection::from_module_name(module).map(|p| self.projection_mut(p))
    }

    /// The norm weights present, in [`Model::visit_params`]'s order.
    pub(crate) fn norm_list(&self) -> Vec<(NormKind, &[f32])> {
        let all = [
            (NormKind::Attn, Some(&self.attn_norm)),
            (NormKind::Q, self.q_norm.as_ref()),
            (NormKind::K, self.k_norm.as_ref()),
            (NormKind::PostAttn, self.post_attn_norm.as_ref()),
            (NormKind::Ffn, Some(&self.ffn_norm)),
            (NormKind::PostFfn, self.post_ffn_norm.as_ref()),
        ];
        all.into_iter().filter_map(|(k, w)| w.map(|w| (k, w.as_slice()))).collect()
    }

    pub(crate) fn norm_list_mut(&mut self) -> Vec<(NormKind, &mut [f32])> {
        let all = [
            (NormKind::Attn, Some(&mut self.attn_norm)),
            (NormKind::Q, self.q_norm.as_mut()),
            (NormKind::K, self.k_norm.as_mut()),
            (NormKind::PostAttn, self.post_attn_norm.as_mut()),
            (NormKind::Ffn, Some(&mut self.ffn_norm)),
            (NormKind::PostFfn, self.post_ffn_norm.as_mut()),
        ];
        all.into_iter().filter_map(|(k, w)| w.map(|w| (k, w.as_mut_slice()))).collect()
    }

    /// The RMS norm weights: before attention, before the MLP, and (Gemma 2/3) after each.
    pub fn norms(&self) -> LayerNorms<'_> {
        LayerNorms {
            attn: &self.attn_norm,
            ffn: &self.ffn_norm,
            q: self.q_norm.as_deref(),
            k: self.k_norm.as_deref(),
            post_attn: self.post_attn_norm.as_deref(),
            post_ffn: self.post_ffn_norm.as_deref(),
        }
    }
}

/// A layer's norm weights (frozen in LoRA training).
#[derive(Debug, Clone, Copy)]
pub struct LayerNorms<'a> {
    pub attn: &'a [f32],
    pub ffn: &'a [f32],
    pub q: Option<&'a [f32]>,
    pub k: Option<&'a [f32]>,
    pub post_attn: Option<&'a [f32]>,
    pub post_ffn: Option<&'a [f32]>,
}

/// A loaded model. Stateless: the KV cache lives in [`super::KvCache`].
pub struct Model {
    pub config: ModelConfig,
    pub(crate) embed: QMatrix,
    pub(crate) layers: Vec<Layer>,
    pub(crate) norm: Vec<f32>,
    /// None: tied to the embedding.
    pub(crate) lm_head: Option<QMatrix>,
    /// Whether projections add their LoRA pairs (off: the base model, e.g. DPO's reference).
    pub(crate) lora_enabled: bool,
    /// Dropout on the LoRA branches of training passes ([`Model::forward_tape`] and the backward); never inference.
    pub(crate) lora_dropout: Option<LoraDropout>,
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
        Ok(Model { embed, layers, norm, lm_head, config, lora_enabled: true, lora_dropout: None })
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    pub fn layers_mut(&mut self) -> &mut [Layer] {
        &mut self.layers
    }

    /// Run with (`true`, the default) or without the LoRA pairs: off gives the base model's outputs without
    /// detaching the adapter.
    pub fn set_lora_enabled(&mut self, on: bool) {
        self.lora_enabled = on;
    }

    pub fn lora_enabled(&self) -> bool {
        self.lora_enabled
    }

    /// LoRA dropout for the next training passes ([`Model::forward_tape`] and [`Model::backward`] must see the same
    /// setting); `None` turns it off. Inference never drops.
    pub fn set_lora_dropout(&mut self, dropout: Option<LoraDropout>) {
        self.lora_dropout = dropout.filter(|d| d.p > 0.0);
    }

    /// The final norm's weight.
    pub fn final_norm(&self) -> &[f32] {
        &self.norm
    }

    /// Whether the output projection is the embedding matrix (tied weights).
    pub fn tied_embeddings(&self) -> bool {
        self.lm_head.is_none()
    }

    pub fn vocab_size(&self) -> usize {
        self.lm_head.as_ref().unwrap_or(&self.embed).rows()
    }

    /// The embedding rows of `ids` (`ids.len() x hidden`, before Gemma's scale).
    pub fn embed_rows(&self, ids: &[u32]) -> Vec<f32> {
        let dim = self.config.hidden;
        let mut x = vec![0f32; ids.len() * dim];
        for (k, &id) in ids.iter().enumerate() {
            self.embed.row_f32(id as usize, &mut x[k * dim..(k + 1) * dim]);
        }
        x
    }

    /// Rows `rows` of the output projection (the lm_head, or the embedding when tied) as f32.
    pub fn lm_head_rows_f32(&self, rows: std::ops::Range<usize>) -> Vec<f32> {
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        let cols = head.cols();
        let mut out = vec![0f32; rows.len() * cols];
        for (k, r) in rows.enumerate() {
            head.row_f32(r, &mut out[k * cols..(k + 1) * cols]);
        }
        out
    }
}
