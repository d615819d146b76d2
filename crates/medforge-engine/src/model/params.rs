//! The model's own weights as trainable parameters (full fine-tuning): [`Param`] names each one, and
//! [`Model::visit_params`]/[`Model::visit_params_mut`] walk them in one fixed order, so an optimiser can keep its state
//! in flat buffers and a checkpoint can name every tensor as Hugging Face does.

use crate::{EngineError, Result};

use super::config::Family;
use super::weights::{hf_name, Model, Projection};

/// Which RMS norm of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NormKind {
    Attn,
    Q,
    K,
    PostAttn,
    Ffn,
    PostFfn,
}

/// One weight tensor of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Param {
    /// The token embedding (also the output projection when tied).
    Embed,
    Weight(usize, Projection),
    Bias(usize, Projection),
    Norm(usize, NormKind),
    FinalNorm,
    /// The output projection of an untied model.
    LmHead,
}

impl Param {
    /// The tensor's GGUF name (`blk.3.attn_q.weight`).
    pub fn gguf_name(self) -> String {
        let proj = |p: Projection| match p {
            Projection::Q => "attn_q",
            Projection::K => "attn_k",
            Projection::V => "attn_v",
            Projection::O => "attn_output",
            Projection::Gate => "ffn_gate",
            Projection::Up => "ffn_up",
            Projection::Down => "ffn_down",
        };
        match self {
            Param::Embed => "token_embd.weight".into(),
            Param::FinalNorm => "output_norm.weight".into(),
            Param::LmHead => "output.weight".into(),
            Param::Weight(l, p) => format!("blk.{l}.{}.weight", proj(p)),
            Param::Bias(l, p) => format!("blk.{l}.{}.bias", proj(p)),
            Param::Norm(l, n) => format!(
                "blk.{l}.{}.weight",
                match n {
                    NormKind::Attn => "attn_norm",
                    NormKind::Q => "attn_q_norm",
                    NormKind::K => "attn_k_norm",
                    NormKind::PostAttn => "post_attention_norm",
                    NormKind::Ffn => "ffn_norm",
                    NormKind::PostFfn => "post_ffw_norm",
                }
            ),
        }
    }

    /// The tensor's Hugging Face name (`model.layers.3.self_attn.q_proj.weight`).
    pub fn hf_name(self, family: Family) -> String {
        hf_name(&self.gguf_name(), family)
    }
}

impl Model {
    /// Every weight with its values, in the order [`Model::visit_params_mut`] uses: embedding, then each layer's
    /// norms, projections and biases, then the final norm and an untied output projection. Quantised weights are
    /// an error: full fine-tuning needs f32 weights (an f32/bf16 Hugging Face base).
    pub fn visit_params(&self, f: &mut dyn FnMut(Param, &[f32])) -> Result<()> {
        fn f32s(m: &crate::cpu::QMatrix, p: Param) -> Result<&[f32]> {
            m.f32_values().ok_or_else(|| not_f32(p, m.dtype()))
        }
        f(Param::Embed, f32s(&self.embed, Param::Embed)?);
        for (li, layer) in self.layers.iter().enumerate() {
            for (kind, w) in layer.norm_list() {
                f(Param::Norm(li, kind), w);
            }
            for p in Projection::ALL {
                let lin = layer.projection(p);
                f(Param::Weight(li, p), f32s(&lin.w, Param::Weight(li, p))?);
                if let Some(b) = &lin.bias {
                    f(Param::Bias(li, p), b);
                }
            }
        }
        f(Param::FinalNorm, &self.norm);
        if let Some(h) = &self.lm_head {
            f(Param::LmHead, f32s(h, Param::LmHead)?);
        }
        Ok(())
    }

    /// [`Model::visit_params`], with the values writable (an optimiser step).
    pub fn visit_params_mut(&mut self, f: &mut dyn FnMut(Param, &mut [f32])) -> Result<()> {
        fn f32s(m: &mut crate::cpu::QMatrix, p: Param) -> Result<&mut [f32]> {
            let dtype = m.dtype();
            m.f32_values_mut().ok_or_else(|| not_f32(p, dtype))
        }
        f(Param::Embed, f32s(&mut self.embed, Param::Embed)?);
        for (li, layer) in self.layers.iter_mut().enumerate() {
            for (kind, w) in layer.norm_list_mut() {
                f(Param::Norm(li, kind), w);
            }
            for p in Projection::ALL {
                let lin = layer.projection_mut(p);
                f(Param::Weight(li, p), f32s(&mut lin.w, Param::Weight(li, p))?);
                if let Some(b) = &mut lin.bias {
                    f(Param::Bias(li, p), b);
                }
            }
        }
        f(Param::FinalNorm, &mut self.norm);
        if let Some(h) = &mut self.lm_head {
            f(Param::LmHead, f32s(h, Param::LmHead)?);
        }
        Ok(())
    }

    /// Every weight as f32 (quantised ones dequantised), with its rows and columns (`1 × n` for vectors), in
    /// [`Model::visit_params`]'s order: for exporting a model in another format.
    pub fn visit_weights_f32(&self, f: &mut dyn FnMut(Param, usize, usize, Vec<f32>)) {
        let mat = |m: &crate::cpu::QMatrix| (m.rows(), m.cols(), m.to_f32());
        let vec = |v: &[f32]| (1, v.len(), v.to_vec());
        let mut emit = |p: Param, (r, c, v): (usize, usize, Vec<f32>)| f(p, r, c, v);
        emit(Param::Embed, mat(&self.embed));
        for (li, layer) in self.layers.iter().enumerate() {
            for (kind, w) in layer.norm_list() {
                emit(Param::Norm(li, kind), vec(w));
            }
            for p in Projection::ALL {
                let lin = layer.projection(p);
                emit(Param::Weight(li, p), mat(&lin.w));
                if let Some(b) = &lin.bias {
                    emit(Param::Bias(li, p), vec(b));
                }
            }
        }
        emit(Param::FinalNorm, vec(&self.norm));
        if let Some(h) = &self.lm_head {
            emit(Param::LmHead, mat(h));
        }
    }

    /// The number of weights (what full fine-tuning trains).
    pub fn param_count(&self) -> usize {
        let mut n = 0;
        // Sizes are known without f32 values: count from the shapes.
        n += self.embed.rows() * self.embed.cols();
        for layer in &self.layers {
            n += layer.norm_list().iter().map(|(_, w)| w.len()).sum::<usize>();
            for p in Projection::ALL {
                let lin = layer.projection(p);
                n += lin.w.rows() * lin.w.cols() + lin.bias.as_ref().map_or(0, Vec::len);
            }
        }
        n += self.norm.len();
        n += self.lm_head.as_ref().map_or(0, |h| h.rows() * h.cols());
        n
    }
}

fn not_f32(p: Param, dtype: candle_core::quantized::GgmlDType) -> EngineError {
    EngineError::Unsupported(format!(
        "`{}` is stored as {dtype:?}; full fine-tuning needs f32 weights (a Hugging Face f32/bf16 base, or \
         `medforge model export-hf` of a GGUF); train a LoRA adapter over a quantised base instead",
        p.gguf_name()
    ))
}
