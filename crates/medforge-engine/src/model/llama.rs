//! The llama family: llama (SmolLM2, Llama 2/3), mistral and qwen2 (biases on q/k/v). SiLU-gated MLP, plain RMS norms.
//!
//! Rope layout: llama-architecture GGUF files store Q and K rows permuted for llama.cpp's interleaved rope, so GGUF
//! llama/mistral use the interleaved rope on the weights as stored. Hugging Face checkpoints and qwen2 (GGUF or not)
//! use the half-split rope.

use super::{Activation, Family, ModelConfig};
use crate::gguf::Gguf;
use crate::{EngineError, Result};

fn base(arch: &str) -> ModelConfig {
    ModelConfig {
        arch: arch.to_string(),
        family: Family::Llama,
        n_layer: 0,
        hidden: 0,
        ffn: 0,
        n_head: 0,
        n_kv_head: 0,
        head_dim: 0,
        rms_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_local_theta: None,
        rope_linear_scale: 1.0,
        rope_freq_factors: Vec::new(),
        rope_interleaved: false,
        context_length: 4096,
        vocab_size: 0,
        activation: Activation::Silu,
        embed_scale: None,
        norm_add: 0.0,
        qk_norm: false,
        sandwich_norm: false,
        attn_scale: 1.0,
        sliding_window: None,
        sliding_layers: Vec::new(),
        attn_softcap: None,
        final_softcap: None,
    }
}

pub fn config_from_gguf(g: &Gguf, arch: &str) -> Result<ModelConfig> {
    let n_head = g.arch_int(arch, "attention.head_count")? as usize;
    let hidden = g.arch_int(arch, "embedding_length")? as usize;
    let head_dim = g
        .int(&format!("{arch}.attention.key_length"))
        .or_else(|| g.int(&format!("{arch}.rope.dimension_count")))
        .map(|v| v as usize)
        .unwrap_or(hidden / n_head);
    let vocab_size = g
        .strings("tokenizer.ggml.tokens")
        .map(|t| t.len())
        .unwrap_or_else(|| g.content.tensor_infos.get("token_embd.weight").map(|t| t.shape.dims()[0]).unwrap_or(0));
    let mut c = base(arch);
    c.n_layer = g.arch_int(arch, "block_count")? as usize;
    c.hidden = hidden;
    c.ffn = g.arch_int(arch, "feed_forward_length")? as usize;
    c.n_head = n_head;
    c.n_kv_head = g.int(&format!("{arch}.attention.head_count_kv")).map(|v| v as usize).unwrap_or(n_head);
    c.head_dim = head_dim;
    c.rms_eps = g.float(&format!("{arch}.attention.layer_norm_rms_epsilon")).unwrap_or(1e-5);
    c.rope_theta = g.float(&format!("{arch}.rope.freq_base")).unwrap_or(10_000.0);
    c.rope_linear_scale = match g.str(&format!("{arch}.rope.scaling.type")).as_deref() {
        Some("linear") => g.float(&format!("{arch}.rope.scaling.factor")).unwrap_or(1.0),
        _ => 1.0,
    };
    c.rope_interleaved = arch != "qwen2";
    c.context_length = g.int(&format!("{arch}.context_length")).map(|v| v as usize).unwrap_or(4096);
    c.vocab_size = vocab_size;
    c.attn_scale = 1.0 / (head_dim as f32).sqrt();
    Ok(c)
}

/// Llama 3.1's rope scaling (`rope_type = "llama3"`): per-frequency divisors, 1 for short wavelengths, `factor` for
/// long ones, a smooth blend between.
pub fn llama3_freq_factors(head_dim: usize, theta: f64, rs: &serde_json::Value) -> Vec<f32> {
    let factor = rs["factor"].as_f64().unwrap_or(8.0);
    let low = rs["low_freq_factor"].as_f64().unwrap_or(1.0);
    let high = rs["high_freq_factor"].as_f64().unwrap_or(4.0);
    let orig = rs["original_max_position_embeddings"].as_f64().unwrap_or(8192.0);
    let (low_wl, high_wl) = (orig / low, orig / high);
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
            let wl = 2.0 * std::f64::consts::PI / freq;
            if wl < high_wl {
                1.0
            } else if wl > low_wl {
                factor as f32
            } else {
                let smooth = (orig / wl - low) / (high - low);
                let new = (1.0 - smooth) * freq / factor + smooth * freq;
                (freq / new) as f32
            }
        })
        .collect()
}

/// `rope_parameters` of a transformers-5 config, or its entry for `layer_type` when it has one per layer type.
pub fn rope_parameters<'a>(cfg: &'a serde_json::Value, layer_type: &str) -> &'a serde_json::Value {
    let rp = &cfg["rope_parameters"];
    if rp[layer_type].is_object() {
        &rp[layer_type]
    } else {
        rp
    }
}

pub fn config_from_hf(cfg: &serde_json::Value, arch: &str) -> Result<ModelConfig> {
    let int = |k: &str| -> Result<usize> {
        cfg[k].as_u64().map(|v| v as usize).ok_or_else(|| EngineError::Format(format!("config.json has no `{k}`")))
    };
    let n_head = int("num_attention_heads")?;
    let hidden = int("hidden_size")?;
    let head_dim = cfg["head_dim"].as_u64().map(|v| v as usize).unwrap_or(hidden / n_head);
    let mut c = base(arch);
    c.n_layer = int("num_hidden_layers")?;
    c.hidden = hidden;
    c.ffn = int("intermediate_size")?;
    c.n_head = n_head;
    c.n_kv_head = cfg["num_key_value_heads"].as_u64().map(|v| v as usize).unwrap_or(n_head);
    c.head_dim = head_dim;
    c.rms_eps = cfg["rms_norm_eps"].as_f64().unwrap_or(1e-5);
    // transformers >= 5 writes rope settings under `rope_parameters` (per layer type for Gemma 3); earlier versions
    // as `rope_theta` + `rope_scaling`.
    let rp = rope_parameters(cfg, "full_attention");
    c.rope_theta = cfg["rope_theta"].as_f64().or_else(|| rp["rope_theta"].as_f64()).unwrap_or(10_000.0);
    let rs = if cfg["rope_scaling"].is_object() { &cfg["rope_scaling"] } else { rp };
    match rs["rope_type"].as_str().or_else(|| rs["type"].as_str()).filter(|t| !t.is_empty()) {
        None | Some("default") => {}
        Some("linear") => c.rope_linear_scale = rs["factor"].as_f64().unwrap_or(1.0),
        Some("llama3") => c.rope_freq_factors = llama3_freq_factors(head_dim, c.rope_theta, rs),
        Some(other) => {
            return Err(EngineError::Unsupported(format!("rope_scaling type `{other}` (supported: linear, llama3)")))
        }
    }
    c.context_length = cfg["max_position_embeddings"].as_u64().map(|v| v as usize).unwrap_or(4096);
    c.vocab_size = int("vocab_size")?;
    c.attn_scale = 1.0 / (head_dim as f32).sqrt();
    let sliding = match arch {
        "mistral" => cfg["sliding_window"].as_u64(),
        "qwen2" if cfg["use_sliding_window"].as_bool() == Some(true) => cfg["sliding_window"].as_u64(),
        _ => None,
    };
    c.sliding_window = sliding.map(|w| w as usize).filter(|&w| w < c.context_length);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_settings_are_read_from_both_config_layouts() {
        let base = serde_json::json!({"num_attention_heads": 9, "hidden_size": 576, "num_hidden_layers": 30,
                                      "intermediate_size": 1536, "vocab_size": 49152});
        let mut old = base.clone();
        old["rope_theta"] = 100000.0.into();
        old["rope_scaling"] = serde_json::json!({"type": "linear", "factor": 2.0});
        let mut new = base.clone();
        new["rope_parameters"] = serde_json::json!({"rope_theta": 100000.0, "rope_type": "linear", "factor": 2.0});
        for cfg in [old, new] {
            let c = config_from_hf(&cfg, "llama").unwrap();
            assert_eq!((c.rope_theta, c.rope_linear_scale), (100000.0, 2.0), "{cfg}");
        }
        let mut plain = base;
        plain["rope_parameters"] = serde_json::json!({"rope_theta": 100000.0, "rope_type": "default"});
        assert_eq!(config_from_hf(&plain, "llama").unwrap().rope_linear_scale, 1.0);
    }

    #[test]
    fn llama3_factors_keep_high_frequencies_and_divide_low_ones() {
        let rs = serde_json::json!({"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 8192});
        let f = llama3_freq_factors(128, 500_000.0, &rs);
        assert_eq!(f.len(), 64);
        assert_eq!(f[0], 1.0);
        assert_eq!(f[63], 8.0);
        assert!(f.windows(2).all(|w| w[0] <= w[1]), "monotone: {f:?}");
    }
}
