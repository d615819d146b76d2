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
//!   inference, [`Model::forward_tape`] for training), logits and log-probabilities;
//! - `backward`: [`Model::backward`], [`Model::logits_backward`] and [`Model::embed_backward`], the gradients of a
//!   training pass accumulated into a [`GradSink`] (LoRA pairs; the model's own weights in full fine-tuning), the
//!   input gradient returned;
//! - `params`: the model's weights as named trainable parameters ([`Param`], [`Model::visit_params_mut`]).

mod backward;
mod config;
mod forward;
pub mod gemma;
pub mod llama;
pub mod lora;
mod params;
mod tape;
mod weights;

pub use backward::{GradSink, NoGrads};
pub use config::{Activation, Family, ModelConfig};
pub use forward::{argmax, log_sum_exp, target_logprobs, Hidden, KvCache};
pub use lora::{Adapter, LoraDropout, LoraPair};
pub use params::{NormKind, Param};
pub use tape::{LayerTape, Tape};
pub use weights::{hf_name, Layer, LayerNorms, Linear, Model, Projection, Source};
