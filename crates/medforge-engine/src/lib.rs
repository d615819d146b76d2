//! medforge's local inference engine: llama-family (llama, mistral, qwen2) and Gemma models from GGUF files or Hugging
//! Face safetensors folders, on its own CPU kernels ([`cpu`], crate-private) under one forward pass ([`model`]), with
//! the tokenizer rebuilt from GGUF metadata and the chat template rendered by `medforge_text::chat` (the renderer the
//! curation formats use). Generation (greedy, temperature, top-k, top-p, seeded; stop strings; KV cache with prefix
//! reuse), log-likelihood of continuations and perplexity ([`Engine`]); a forward pass that records a [`model::Tape`]
//! and a narrow API over layers and LoRA pairs for training.
//!
//! Features: `serve` adds the [`medforge_llm::Backend`] adapter ([`LocalBackend`], [`source`]) and the
//! OpenAI-compatible HTTP server ([`server`]); `testing` adds tiny random-weight models for tests ([`tiny`]).
//!
//! A separate crate rather than a module of `medforge-llm`, so that the HTTP-only users of `medforge-llm` do not
//! compile candle, and so that the engine and its server can be tested on their own.

#[cfg(feature = "serve")]
pub mod backend;
pub mod constrain;
pub(crate) mod cpu;
pub mod engine;
mod error;
pub mod export;
pub mod gguf;

/// Vectorisable math for training's loss kernels.
pub mod math {
    pub use crate::cpu::ops::{exp_in_place, fast_exp};
}
pub mod info;
pub mod model;
pub mod sampling;
#[cfg(feature = "serve")]
pub mod server;
#[cfg(feature = "serve")]
pub mod source;
#[cfg(feature = "testing")]
pub mod tiny;

#[cfg(feature = "serve")]
pub use backend::LocalBackend;
pub use constrain::Constraint;
pub use engine::{Engine, GenerateParams, Generation, LoadOptions};
pub use error::{EngineError, Result};
pub use info::{inspect, ModelInfo};
pub use sampling::SamplingParams;

/// File name of the embedded default model, as `scripts/fetch_model.sh` writes it.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The model cache: `$MEDFORGE_MODELS`, else `~/.cache/medforge/models`.
/// Use `threads` compute threads (the engine's pool and rayon's, which the backward GEMMs use), before any model
/// work starts; `threads = 0` keeps the default (`MEDFORGE_THREADS`, else all cores). Returns the count in effect.
pub fn set_threads(threads: usize) -> usize {
    if threads > 0 {
        cpu::pool::Pool::init_global(threads);
        // Fails only when rayon's pool already runs; its size then stays.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    }
    cpu::pool::Pool::global().threads()
}

pub fn models_dir() -> std::path::PathBuf {
    match std::env::var_os("MEDFORGE_MODELS") {
        Some(d) if !d.is_empty() => d.into(),
        _ => std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_default().join(".cache/medforge/models"),
    }
}

/// The default model (SmolLM2-135M-Instruct) if `scripts/fetch_model.sh` has fetched it.
pub fn default_model() -> Option<std::path::PathBuf> {
    let p = models_dir().join(DEFAULT_MODEL_FILE);
    p.is_file().then_some(p)
}
