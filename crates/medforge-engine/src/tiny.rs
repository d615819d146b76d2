//! A tiny random-weight llama for fast tests, written as a Hugging Face folder (config.json, model.safetensors,
//! tokenizer.json, tokenizer_config.json with a ChatML template) and as the equivalent GGUF file (Q/K rows permuted
//! the way llama.cpp's converter does, the tokenizer in `tokenizer.ggml.*`). Both describe the same function, so
//! their logits must agree: that checks the rope layouts and the GGUF tokenizer rebuild without a real model.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::gguf::byte_level_bpe_json;
use crate::{EngineError, Result};

pub const HIDDEN: usize = 32;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const HEAD_DIM: usize = HIDDEN / HEADS;
pub const FFN: usize = 64;
pub const LAYERS: usize = 2;
pub const CONTEXT: usize = 2048;
const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// GPT-2's byte-to-character table: printable bytes map to themselves, the rest to U+0100 onwards.
pub fn byte_chars() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut n = 0;
    (0..256u32)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap()
            } else {
                n += 1;
                char::from_u32(255 + n).unwrap()
            }
        })
        .collect()
}

/// Vocabulary: 256 byte tokens, a few merges, then the three ChatML special tokens (ids 262..265).
pub fn vocab() -> (Vec<String>, Vec<u64>, Vec<String>) {
    let mut tokens: Vec<String> = byte_chars().into_iter().map(String::from).collect();
    let merges: Vec<String> = ["Ġ t", "h e", "Ġt he", "i n", "e r", "Ġ a"].iter().map(|s| s.to_string()).collect();
    for m in &merges {
        tokens.push(m.replace(' ', ""));
    }
    let mut types = vec![1u64; tokens.len()];
    for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
        tokens.push(s.to_string());
        types.push(3);
    }
    (tokens, types, merges)
}

/// Deterministic pseudo-random values in about [-scale, scale].
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The architectures the tiny model comes in. Gemma 3 has both a sliding-window layer (window 8) and a global one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Gemma3,
}

pub const GEMMA_WINDOW: usize = 8;

/// The weights by Hugging Face name.
fn weights(vocab: usize, arch: Arch) -> Result<BTreeMap<String, Tensor>> {
    let dev = Device::Cpu;
    let mut seed = 1;
    let mut mat = |rows: usize, cols: usize, scale: f32| -> Result<Tensor> {
        seed += 1;
        Ok(Tensor::from_vec(values(rows * cols, seed, scale), (rows, cols), &dev)?)
    };
    let mut w = BTreeMap::new();
    w.insert(
        "model.embed_tokens.weight".to_string(),
        mat(vocab, HIDDEN, if arch == Arch::Gemma3 { 0.2 } else { 1.0 })?,
    );
    // Norm weights: ones for llama/qwen2; for Gemma small values around 0 (it multiplies by 1 + w).
    let norm_seed = std::cell::Cell::new(500u64);
    let norm = |n: usize| -> Result<Tensor> {
        norm_seed.set(norm_seed.get() + 1);
        match arch {
            Arch::Gemma3 => Ok(Tensor::from_vec(values(n, norm_seed.get(), 0.3), n, &Device::Cpu)?),
            _ => Ok(Tensor::ones(n, candle_core::DType::F32, &Device::Cpu)?),
        }
    };
    let mut layers = Vec::new();
    for i in 0..LAYERS {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        let mut l: Vec<(String, Tensor)> =
            vec![(p("input_layernorm.weight"), norm(HIDDEN)?), (p("post_attention_layernorm.weight"), norm(HIDDEN)?)];
        if arch == Arch::Gemma3 {
            l.push((p("pre_feedforward_layernorm.weight"), norm(HIDDEN)?));
            l.push((p("post_feedforward_layernorm.weight"), norm(HIDDEN)?));
            l.push((p("self_attn.q_norm.weight"), norm(HEAD_DIM)?));
            l.push((p("self_attn.k_norm.weight"), norm(HEAD_DIM)?));
        }
        layers.push(l);
    }
    for (i, l) in layers.into_iter().enumerate() {
        w.extend(l);
        let p = |s: &str| format!("model.layers.{i}.{s}");
        w.insert(p("self_attn.q_proj.weight"), mat(HEADS * HEAD_DIM, HIDDEN, 0.5)?);
        w.insert(p("self_attn.k_proj.weight"), mat(KV_HEADS * HEAD_DIM, HIDDEN, 0.5)?);
        w.insert(p("self_attn.v_proj.weight"), mat(KV_HEADS * HEAD_DIM, HIDDEN, 0.3)?);
        w.insert(p("self_attn.o_proj.weight"), mat(HIDDEN, HEADS * HEAD_DIM, 0.3)?);
        w.insert(p("mlp.gate_proj.weight"), mat(FFN, HIDDEN, 0.3)?);
        w.insert(p("mlp.up_proj.weight"), mat(FFN, HIDDEN, 0.3)?);
        w.insert(p("mlp.down_proj.weight"), mat(HIDDEN, FFN, 0.3)?);
        if arch == Arch::Qwen2 {
            for (m, n) in
                [("q_proj", HEADS * HEAD_DIM), ("k_proj", KV_HEADS * HEAD_DIM), ("v_proj", KV_HEADS * HEAD_DIM)]
            {
                w.insert(p(&format!("self_attn.{m}.bias")), mat(1, n, 0.5)?.squeeze(0)?);
            }
        }
    }
    w.insert("model.norm.weight".to_string(), norm(HIDDEN)?);
    Ok(w)
}

fn hf_config(arch: Arch, vocab: usize) -> serde_json::Value {
    let mut c = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
        "intermediate_size": FFN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "head_dim": HEAD_DIM,
        "max_position_embeddings": CONTEXT, "vocab_size": vocab, "tie_word_embeddings": true,
        "bos_token_id": 262, "eos_token_id": 264, "torch_dtype": "float32", "hidden_act": "silu",
    });
    match arch {
        Arch::Llama => {}
        Arch::Qwen2 => {
            c["architectures"] = serde_json::json!(["Qwen2ForCausalLM"]);
            c["model_type"] = "qwen2".into();
            c["use_sliding_window"] = false.into();
        }
        Arch::Gemma3 => {
            c["architectures"] = serde_json::json!(["Gemma3ForCausalLM"]);
            c["model_type"] = "gemma3_text".into();
            c["rope_theta"] = 1_000_000.0.into();
            c["rope_local_base_freq"] = 10_000.0.into();
            c["sliding_window"] = GEMMA_WINDOW.into();
            c["layer_types"] = serde_json::json!(["sliding_attention", "full_attention"]);
            c["query_pre_attn_scalar"] = HEAD_DIM.into();
            c["hidden_activation"] = "gelu_pytorch_tanh".into();
            c["hidden_act"] = "gelu_pytorch_tanh".into();
            c["rms_norm_eps"] = 1e-6.into();
            c["final_logit_softcapping"] = serde_json::Value::Null;
            c["attn_logit_softcapping"] = serde_json::Value::Null;
            c["rope_scaling"] = serde_json::Value::Null;
            c["pad_token_id"] = 0.into();
        }
    }
    c
}

/// Write the Hugging Face folder of the tiny llama (tied embeddings, like SmolLM2).
pub fn write_hf(dir: &Path) -> Result<()> {
    write_hf_arch(dir, Arch::Llama)
}

pub fn write_hf_arch(dir: &Path, arch: Arch) -> Result<()> {
    let (tokens, _, _) = vocab();
    let w: HashMap<String, Tensor> = weights(tokens.len(), arch)?.into_iter().collect();
    write_hf_weights(dir, arch, w)
}

fn write_hf_weights(dir: &Path, arch: Arch, w: HashMap<String, Tensor>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let (tokens, types, merges) = vocab();
    let write = |name: &str, bytes: Vec<u8>| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| EngineError::io(&p, e))
    };
    write("config.json", serde_json::to_vec_pretty(&hf_config(arch, tokens.len()))?)?;
    write("tokenizer.json", serde_json::to_vec(&byte_level_bpe_json(&tokens, &types, &merges, "default"))?)?;
    let tc = serde_json::json!({"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "add_bos_token": false,
        "chat_template": CHATML});
    write("tokenizer_config.json", serde_json::to_vec_pretty(&tc)?)?;
    candle_core::safetensors::save(&w, dir.join("model.safetensors"))?;
    Ok(())
}

/// HF → GGUF row order for Q and K: within each head, rows `i` and `i + d/2` become `2i` and `2i + 1`.
fn permute_rows(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let d = rows / heads;
    Ok(w.reshape((heads, 2, d / 2, cols))?.transpose(1, 2)?.contiguous()?.reshape((rows, cols))?)
}

/// Write the tiny llama as a GGUF file with weights of type `dtype` (F32 for exact agreement with the folder).
pub fn write_gguf(path: &Path, dtype: GgmlDType) -> Result<()> {
    write_gguf_arch(path, Arch::Llama, dtype)
}

/// The same model as [`write_hf_arch`] as a GGUF file, laid out as llama.cpp's converter writes it: llama Q/K rows
/// permuted, Gemma norm weights stored as `1 + w`.
pub fn write_gguf_arch(path: &Path, arch: Arch, dtype: GgmlDType) -> Result<()> {
    let (tokens, types, merges) = vocab();
    let w = weights(tokens.len(), arch)?;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let q = |t: &Tensor, quant: bool| -> Result<QTensor> {
        Ok(QTensor::quantize(t, if quant { dtype } else { GgmlDType::F32 })?)
    };
    let norm = |t: &Tensor| -> Result<QTensor> {
        match arch {
            Arch::Gemma3 => q(&(t + 1.0)?, false),
            _ => q(t, false),
        }
    };
    tensors.push(("token_embd.weight".into(), q(&w["model.embed_tokens.weight"], true)?));
    tensors.push(("output_norm.weight".into(), norm(&w["model.norm.weight"])?));
    for i in 0..LAYERS {
        let hf = |s: &str| &w[&format!("model.layers.{i}.{s}")];
        let name = |s: &str| format!("blk.{i}.{s}.weight");
        tensors.push((name("attn_norm"), norm(hf("input_layernorm.weight"))?));
        let (qw, kw) = if arch == Arch::Llama {
            (
                permute_rows(hf("self_attn.q_proj.weight"), HEADS)?,
                permute_rows(hf("self_attn.k_proj.weight"), KV_HEADS)?,
            )
        } else {
            (hf("self_attn.q_proj.weight").clone(), hf("self_attn.k_proj.weight").clone())
        };
        if arch == Arch::Gemma3 {
            tensors.push((name("post_attention_norm"), norm(hf("post_attention_layernorm.weight"))?));
            tensors.push((name("ffn_norm"), norm(hf("pre_feedforward_layernorm.weight"))?));
            tensors.push((name("post_ffw_norm"), norm(hf("post_feedforward_layernorm.weight"))?));
            tensors.push((name("attn_q_norm"), norm(hf("self_attn.q_norm.weight"))?));
            tensors.push((name("attn_k_norm"), norm(hf("self_attn.k_norm.weight"))?));
        } else {
            tensors.push((name("ffn_norm"), norm(hf("post_attention_layernorm.weight"))?));
        }
        if arch == Arch::Qwen2 {
            for (m, g) in [("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v")] {
                tensors.push((format!("blk.{i}.{g}.bias"), q(hf(&format!("self_attn.{m}.bias")), false)?));
            }
        }
        tensors.push((name("attn_q"), q(&qw, true)?));
        tensors.push((name("attn_k"), q(&kw, true)?));
        tensors.push((name("attn_v"), q(hf("self_attn.v_proj.weight"), true)?));
        tensors.push((name("attn_output"), q(hf("self_attn.o_proj.weight"), true)?));
        tensors.push((name("ffn_gate"), q(hf("mlp.gate_proj.weight"), true)?));
        tensors.push((name("ffn_up"), q(hf("mlp.up_proj.weight"), true)?));
        tensors.push((name("ffn_down"), q(hf("mlp.down_proj.weight"), true)?));
    }
    let a = match arch {
        Arch::Llama => "llama",
        Arch::Qwen2 => "qwen2",
        Arch::Gemma3 => "gemma3",
    };
    let s = |x: &str| Value::String(x.to_string());
    let strs = |v: &[String]| Value::Array(v.iter().map(|x| Value::String(x.clone())).collect());
    let k = |key: &str| format!("{a}.{key}");
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), s(a)),
        ("general.name".into(), s(&format!("tiny-random-{a}"))),
        (k("block_count"), Value::U32(LAYERS as u32)),
        (k("embedding_length"), Value::U32(HIDDEN as u32)),
        (k("feed_forward_length"), Value::U32(FFN as u32)),
        (k("attention.head_count"), Value::U32(HEADS as u32)),
        (k("attention.head_count_kv"), Value::U32(KV_HEADS as u32)),
        (k("attention.key_length"), Value::U32(HEAD_DIM as u32)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(if arch == Arch::Gemma3 { 1e-6 } else { 1e-5 })),
        (k("rope.freq_base"), Value::F32(if arch == Arch::Gemma3 { 1_000_000.0 } else { 10000.0 })),
        (k("rope.dimension_count"), Value::U32(HEAD_DIM as u32)),
        (k("context_length"), Value::U32(CONTEXT as u32)),
        ("tokenizer.ggml.model".into(), s("gpt2")),
        ("tokenizer.ggml.pre".into(), s("default")),
        ("tokenizer.ggml.tokens".into(), strs(&tokens)),
        ("tokenizer.ggml.token_type".into(), Value::Array(types.iter().map(|t| Value::I32(*t as i32)).collect())),
        ("tokenizer.ggml.merges".into(), strs(&merges)),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(262)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(264)),
        ("tokenizer.chat_template".into(), s(CHATML)),
    ];
    if arch == Arch::Gemma3 {
        meta.push((k("attention.sliding_window"), Value::U32(GEMMA_WINDOW as u32)));
        meta.push((k("attention.sliding_window_pattern"), Value::U32(2)));
    }
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).map_err(|e| EngineError::io(path, e))?;
    candle_core::quantized::gguf_file::write(&mut f, &meta_refs, &tensor_refs)?;
    Ok(())
}

const LORA_MODULES: [(&str, &str, usize, usize); 7] = [
    ("self_attn", "q_proj", HEADS * HEAD_DIM, HIDDEN),
    ("self_attn", "k_proj", KV_HEADS * HEAD_DIM, HIDDEN),
    ("self_attn", "v_proj", KV_HEADS * HEAD_DIM, HIDDEN),
    ("self_attn", "o_proj", HIDDEN, HEADS * HEAD_DIM),
    ("mlp", "gate_proj", FFN, HIDDEN),
    ("mlp", "up_proj", FFN, HIDDEN),
    ("mlp", "down_proj", HIDDEN, FFN),
];

/// A LoRA adapter for the tiny llama in PEFT's layout (every projection of every layer), with the `A`/`B` pairs by
/// module, for [`write_lora`] and [`write_hf_merged`].
fn lora_pairs(rank: usize) -> Result<Vec<(String, Tensor, Tensor)>> {
    let dev = Device::Cpu;
    let mut seed = 1000;
    let mut mat = |r: usize, c: usize| -> Result<Tensor> {
        seed += 1;
        Ok(Tensor::from_vec(values(r * c, seed, 0.4), (r, c), &dev)?)
    };
    let mut out = Vec::new();
    for i in 0..LAYERS {
        for (group, m, rows, cols) in LORA_MODULES {
            out.push((format!("model.layers.{i}.{group}.{m}"), mat(rank, cols)?, mat(rows, rank)?));
        }
    }
    Ok(out)
}

/// Write a PEFT LoRA adapter folder for the tiny llama (`adapter_config.json`, `adapter_model.safetensors`).
pub fn write_lora(dir: &Path, rank: usize, alpha: f64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let mut t = HashMap::new();
    for (name, a, b) in lora_pairs(rank)? {
        t.insert(format!("base_model.model.{name}.lora_A.weight"), a);
        t.insert(format!("base_model.model.{name}.lora_B.weight"), b);
    }
    candle_core::safetensors::save(&t, dir.join("adapter_model.safetensors"))?;
    let cfg = serde_json::json!({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": alpha, "lora_dropout": 0.0,
        "target_modules": LORA_MODULES.iter().map(|m| m.1).collect::<Vec<_>>(), "bias": "none",
        "fan_in_fan_out": false, "use_rslora": false, "use_dora": false, "modules_to_save": null,
        "rank_pattern": {}, "alpha_pattern": {}, "base_model_name_or_path": "tiny-random-llama",
    });
    let p = dir.join("adapter_config.json");
    std::fs::write(&p, serde_json::to_vec_pretty(&cfg)?).map_err(|e| EngineError::io(&p, e))
}

/// The tiny llama with the adapter of [`write_lora`] merged into its weights (`W + alpha / r * B A`).
pub fn write_hf_merged(dir: &Path, rank: usize, alpha: f64) -> Result<()> {
    let (tokens, _, _) = vocab();
    let mut w: HashMap<String, Tensor> = weights(tokens.len(), Arch::Llama)?.into_iter().collect();
    for (name, a, b) in lora_pairs(rank)? {
        let key = format!("{name}.weight");
        let merged = (&w[&key] + (b.matmul(&a)? * (alpha / rank as f64))?)?;
        w.insert(key, merged);
    }
    write_hf_weights(dir, Arch::Llama, w)
}
