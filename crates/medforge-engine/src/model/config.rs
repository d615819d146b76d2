//! A decoder's shape and numerics ([`ModelConfig`]), read from GGUF metadata or a Hugging Face `config.json` by the
//! family modules ([`super::llama`], [`super::gemma`]).

use crate::gguf::Gguf;
use crate::{EngineError, Result};

use super::{gemma, llama};

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

    pub(crate) fn is_sliding(&self, layer: usize) -> bool {
        self.sliding_window.is_some() && self.sliding_layers.get(layer).copied().unwrap_or(true)
    }
}
