//! The Gemma family: gemma, gemma2 and gemma3 (text). Against llama: embeddings scaled by sqrt(hidden), RMS norms of
//! the form `x * (1 + w)` (GGUF files store `1 + w`, Hugging Face checkpoints `w`), a GELU(tanh)-gated MLP, the
//! half-split rope, and tied embeddings; gemma2 adds norms after attention and the MLP, alternating sliding-window
//! layers and tanh soft caps on attention scores and logits; gemma3 drops the soft caps for per-head q/k norms, has
//! five sliding layers to one global, and a separate rope base (10,000) for the sliding layers.

use super::{Activation, Family, ModelConfig};
use crate::gguf::Gguf;
use crate::{EngineError, Result};

fn base(arch: &str) -> ModelConfig {
    let mut c = super::llama::config_from_hf(
        &serde_json::json!({"num_attention_heads": 1, "hidden_size": 1, "num_hidden_layers": 0,
                            "intermediate_size": 0, "vocab_size": 0}),
        "llama",
    )
    .expect("defaults");
    c.arch = arch.to_string();
    c.family = Family::Gemma;
    c.activation = Activation::GeluTanh;
    c
}

/// Layers that use the sliding window: every one but each `pattern`-th (gemma2: 2, gemma3: 6).
fn sliding_pattern(n_layer: usize, pattern: usize) -> Vec<bool> {
    (0..n_layer).map(|i| pattern == 0 || i % pattern < pattern - 1).collect()
}

fn finish(c: &mut ModelConfig) {
    c.embed_scale = Some((c.hidden as f32).sqrt());
    match c.arch.as_str() {
        "gemma2" => {
            c.sandwich_norm = true;
            c.sliding_layers = sliding_pattern(c.n_layer, 2);
        }
        "gemma3" => {
            c.sandwich_norm = true;
            c.qk_norm = true;
            c.sliding_layers = sliding_pattern(c.n_layer, 6);
            c.rope_local_theta.get_or_insert(10_000.0);
        }
        _ => {}
    }
}

pub fn config_from_gguf(g: &Gguf, arch: &str) -> Result<ModelConfig> {
    let mut c = super::llama::config_from_gguf(g, arch)?;
    let defaults = base(arch);
    c.family = defaults.family;
    c.activation = defaults.activation;
    c.rope_interleaved = false;
    c.attn_scale = 1.0 / (c.head_dim as f32).sqrt();
    c.sliding_window = g.int(&format!("{arch}.attention.sliding_window")).map(|v| v as usize);
    c.attn_softcap = g.float(&format!("{arch}.attn_logit_softcapping")).map(|v| v as f32).filter(|v| *v > 0.0);
    c.final_softcap = g.float(&format!("{arch}.final_logit_softcapping")).map(|v| v as f32).filter(|v| *v > 0.0);
    // GGUF norm weights already hold 1 + w (llama.cpp's converter adds the 1).
    c.norm_add = 0.0;
    finish(&mut c);
    // Newer converters write the layer pattern (a period, or one flag per layer); without it, the family's own.
    let key = format!("{arch}.attention.sliding_window_pattern");
    if let Some(p) = g.int(&key) {
        c.sliding_layers = sliding_pattern(c.n_layer, p as usize);
    } else if let Some(Ok(flags)) = g.get(&key).map(|v| v.to_vec()) {
        c.sliding_layers =
            flags.iter().map(|f| matches!(f, candle_core::quantized::gguf_file::Value::Bool(true))).collect();
    }
    if c.sliding_window.is_none() {
        c.sliding_layers.clear();
    }
    Ok(c)
}

pub fn config_from_hf(cfg: &serde_json::Value, model_type: &str) -> Result<ModelConfig> {
    // Gemma 3 multimodal checkpoints nest the language model's config.
    let cfg = if cfg["text_config"].is_object() { &cfg["text_config"] } else { cfg };
    let arch = match model_type {
        "gemma3_text" | "gemma3" => "gemma3",
        other => other,
    };
    let mut c = super::llama::config_from_hf(cfg, "llama")?;
    let defaults = base(arch);
    c.arch = arch.to_string();
    c.family = defaults.family;
    c.activation = match cfg["hidden_activation"].as_str().or_else(|| cfg["hidden_act"].as_str()) {
        Some("gelu_pytorch_tanh") | Some("gelu") | None => Activation::GeluTanh,
        Some(other) => return Err(EngineError::Unsupported(format!("gemma activation `{other}`"))),
    };
    c.norm_add = 1.0;
    if let Some(s) = cfg["query_pre_attn_scalar"].as_f64() {
        c.attn_scale = (1.0 / s.sqrt()) as f32;
    }
    c.sliding_window = cfg["sliding_window"].as_u64().map(|v| v as usize);
    c.attn_softcap = cfg["attn_logit_softcapping"].as_f64().map(|v| v as f32);
    c.final_softcap = cfg["final_logit_softcapping"].as_f64().map(|v| v as f32);
    c.rope_local_theta = cfg["rope_local_base_freq"]
        .as_f64()
        .or_else(|| super::llama::rope_parameters(cfg, "sliding_attention")["rope_theta"].as_f64())
        .filter(|_| cfg["rope_parameters"]["sliding_attention"].is_object() || cfg["rope_local_base_freq"].is_number());
    finish(&mut c);
    if arch == "gemma3" {
        if let Some(types) = cfg["layer_types"].as_array() {
            c.sliding_layers = types.iter().map(|t| t.as_str() == Some("sliding_attention")).collect();
        } else if let Some(p) = cfg["sliding_window_pattern"].as_u64() {
            c.sliding_layers = sliding_pattern(c.n_layer, p as usize);
        }
    }
    if c.sliding_window.is_none() {
        c.sliding_layers.clear();
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma3_has_one_global_layer_in_six() {
        let p = sliding_pattern(18, 6);
        let global: Vec<usize> = p.iter().enumerate().filter(|(_, s)| !**s).map(|(i, _)| i).collect();
        assert_eq!(global, vec![5, 11, 17]);
        let p2 = sliding_pattern(4, 2);
        assert_eq!(p2, vec![true, false, true, false]);
    }

    #[test]
    fn hf_gemma3_config_reads_its_switches() {
        let cfg = serde_json::json!({
            "model_type": "gemma3_text", "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
            "hidden_size": 640, "num_hidden_layers": 18, "intermediate_size": 2048, "vocab_size": 262144,
            "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "sliding_window": 512,
            "query_pre_attn_scalar": 256, "hidden_activation": "gelu_pytorch_tanh", "rms_norm_eps": 1e-6,
            "max_position_embeddings": 32768, "final_logit_softcapping": null, "attn_logit_softcapping": null
        });
        let c = config_from_hf(&cfg, "gemma3_text").expect("config");
        assert_eq!(c.arch, "gemma3");
        assert!(c.qk_norm && c.sandwich_norm);
        assert_eq!(c.norm_add, 1.0);
        assert_eq!(c.attn_scale, 1.0 / 16.0);
        assert_eq!(c.rope_local_theta, Some(10_000.0));
        assert_eq!(c.sliding_window, Some(512));
        assert_eq!(c.attn_softcap, None);
        assert!(!c.sliding_layers[5] && c.sliding_layers[4]);
        assert_eq!(c.embed_scale, Some(640f32.sqrt()));
    }
}
