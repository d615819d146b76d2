//! Decoder-only transformers on the CPU kernels of [`crate::cpu`]: one forward pass for the llama family (llama,
//! mistral, qwen2; [`llama`]) and the Gemma family (gemma, gemma2, gemma3; [`gemma`]), whose differences are
//! switches of [`ModelConfig`] (embedding scale, `(1 + w)` norms, per-head q/k norms, sandwich norms, GELU, sliding
//! windows, soft caps, two rope bases). Weights come from GGUF files or Hugging Face safetensors ([`Source`]), with an
//! optional PEFT LoRA adapter ([`lora`]).
//!
//! - `config`: [`ModelConfig`] and the family switches;
//! - `weights`: [`Source`], [`Linear`], [`Layer`], [`Model`] and the API training uses ([`Projection`],
//!   [`LoraPair`], [`Model::set_lora_enabled`]);
//! - `forward`: the per-layer pass with an optional KV cache and an optional [`Tape`] ([`Model::forward_batch`] for
//!   inference, [`Model::forward_tape`] for training), logits and log-probabilities.

mod config;
mod forward;
pub mod gemma;
pub mod llama;
pub mod lora;
mod tape;
mod weights;

pub use config::{Activation, Family, ModelConfig};
pub use forward::{argmax, log_sum_exp, target_logprobs, Hidden, KvCache};
pub use lora::{Adapter, LoraPair};
pub use tape::{LayerTape, Tape};
pub use weights::{hf_name, Layer, LayerNorms, Linear, Model, Projection, Source};
