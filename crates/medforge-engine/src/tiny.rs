//! A tiny random-weight llama for fast tests, written as a Hugging Face folder (config.json, model.safetensors,
//! tokenizer.json, tokenizer_config.json with a ChatML template) and as the equivalent GGUF file (Q/K rows permuted
//! the way llama.cpp's converter does, the tokenizer in `tokenizer.ggml.*`). Both describe the same function, so
//! their logits must agree: that checks the rope layouts and the GGUF tokenizer rebuild without a real model.
//!
//! Also: [`inspect_hf`], the `model inspect` summary of a safetensors folder.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::gguf::{byte_level_bpe_json, ModelInfo};
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

/// The weights by Hugging Face name.
fn weights(vocab: usize) -> Result<BTreeMap<String, Tensor>> {
    let dev = Device::Cpu;
    let mut seed = 1;
    let mut mat = |rows: usize, cols: usize, scale: f32| -> Result<Tensor> {
        seed += 1;
        Ok(Tensor::from_vec(values(rows * cols, seed, scale), (rows, cols), &dev)?)
    };
    let mut w = BTreeMap::new();
    w.insert("model.embed_tokens.weight".to_string(), mat(vocab, HIDDEN, 1.0)?);
    let ones = |n: usize| Tensor::ones(n, candle_core::DType::F32, &Device::Cpu);
    for i in 0..LAYERS {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        w.insert(p("input_layernorm.weight"), ones(HIDDEN)?);
        w.insert(p("post_attention_layernorm.weight"), ones(HIDDEN)?);
        w.insert(p("self_attn.q_proj.weight"), mat(HEADS * HEAD_DIM, HIDDEN, 0.5)?);
        w.insert(p("self_attn.k_proj.weight"), mat(KV_HEADS * HEAD_DIM, HIDDEN, 0.5)?);
        w.insert(p("self_attn.v_proj.weight"), mat(KV_HEADS * HEAD_DIM, HIDDEN, 0.3)?);
        w.insert(p("self_attn.o_proj.weight"), mat(HIDDEN, HEADS * HEAD_DIM, 0.3)?);
        w.insert(p("mlp.gate_proj.weight"), mat(FFN, HIDDEN, 0.3)?);
        w.insert(p("mlp.up_proj.weight"), mat(FFN, HIDDEN, 0.3)?);
        w.insert(p("mlp.down_proj.weight"), mat(HIDDEN, FFN, 0.3)?);
    }
    w.insert("model.norm.weight".to_string(), ones(HIDDEN)?);
    Ok(w)
}

/// Write the Hugging Face folder (tied embeddings, like SmolLM2).
pub fn write_hf(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let (tokens, types, merges) = vocab();
    let write = |name: &str, bytes: Vec<u8>| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| EngineError::io(&p, e))
    };
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
        "intermediate_size": FFN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": CONTEXT, "vocab_size": tokens.len(), "tie_word_embeddings": true,
        "bos_token_id": 262, "eos_token_id": 264, "torch_dtype": "float32",
    });
    write("config.json", serde_json::to_vec_pretty(&config)?)?;
    write("tokenizer.json", serde_json::to_vec(&byte_level_bpe_json(&tokens, &types, &merges, "default"))?)?;
    let tc = serde_json::json!({"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "add_bos_token": false,
        "chat_template": CHATML});
    write("tokenizer_config.json", serde_json::to_vec_pretty(&tc)?)?;
    let w: HashMap<String, Tensor> = weights(tokens.len())?.into_iter().collect();
    candle_core::safetensors::save(&w, dir.join("model.safetensors"))?;
    Ok(())
}

/// HF → GGUF row order for Q and K: within each head, rows `i` and `i + d/2` become `2i` and `2i + 1`.
fn permute_rows(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let d = rows / heads;
    Ok(w.reshape((heads, 2, d / 2, cols))?.transpose(1, 2)?.contiguous()?.reshape((rows, cols))?)
}

/// Write the same model as a GGUF file with weights of type `dtype` (F32 for exact agreement with the folder).
pub fn write_gguf(path: &Path, dtype: GgmlDType) -> Result<()> {
    let (tokens, types, merges) = vocab();
    let w = weights(tokens.len())?;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let q = |t: &Tensor, quant: bool| -> Result<QTensor> {
        Ok(QTensor::quantize(t, if quant { dtype } else { GgmlDType::F32 })?)
    };
    tensors.push(("token_embd.weight".into(), q(&w["model.embed_tokens.weight"], true)?));
    tensors.push(("output_norm.weight".into(), q(&w["model.norm.weight"], false)?));
    for i in 0..LAYERS {
        let hf = |s: &str| &w[&format!("model.layers.{i}.{s}")];
        let name = |s: &str| format!("blk.{i}.{s}.weight");
        tensors.push((name("attn_norm"), q(hf("input_layernorm.weight"), false)?));
        tensors.push((name("ffn_norm"), q(hf("post_attention_layernorm.weight"), false)?));
        tensors.push((name("attn_q"), q(&permute_rows(hf("self_attn.q_proj.weight"), HEADS)?, true)?));
        tensors.push((name("attn_k"), q(&permute_rows(hf("self_attn.k_proj.weight"), KV_HEADS)?, true)?));
        tensors.push((name("attn_v"), q(hf("self_attn.v_proj.weight"), true)?));
        tensors.push((name("attn_output"), q(hf("self_attn.o_proj.weight"), true)?));
        tensors.push((name("ffn_gate"), q(hf("mlp.gate_proj.weight"), true)?));
        tensors.push((name("ffn_up"), q(hf("mlp.up_proj.weight"), true)?));
        tensors.push((name("ffn_down"), q(hf("mlp.down_proj.weight"), true)?));
    }
    let s = |x: &str| Value::String(x.to_string());
    let strs = |v: &[String]| Value::Array(v.iter().map(|x| Value::String(x.clone())).collect());
    let meta: Vec<(&str, Value)> = vec![
        ("general.architecture", s("llama")),
        ("general.name", s("tiny-random-llama")),
        ("llama.block_count", Value::U32(LAYERS as u32)),
        ("llama.embedding_length", Value::U32(HIDDEN as u32)),
        ("llama.feed_forward_length", Value::U32(FFN as u32)),
        ("llama.attention.head_count", Value::U32(HEADS as u32)),
        ("llama.attention.head_count_kv", Value::U32(KV_HEADS as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("llama.rope.dimension_count", Value::U32(HEAD_DIM as u32)),
        ("llama.context_length", Value::U32(CONTEXT as u32)),
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.pre", s("default")),
        ("tokenizer.ggml.tokens", strs(&tokens)),
        ("tokenizer.ggml.token_type", Value::Array(types.iter().map(|t| Value::I32(*t as i32)).collect())),
        ("tokenizer.ggml.merges", strs(&merges)),
        ("tokenizer.ggml.bos_token_id", Value::U32(262)),
        ("tokenizer.ggml.eos_token_id", Value::U32(264)),
        ("tokenizer.chat_template", s(CHATML)),
    ];
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).map_err(|e| EngineError::io(path, e))?;
    candle_core::quantized::gguf_file::write(&mut f, &meta_refs, &tensor_refs)?;
    Ok(())
}

/// `model inspect` for a Hugging Face folder: from config.json, the safetensors headers and tokenizer_config.json.
pub fn inspect_hf(dir: &Path) -> Result<ModelInfo> {
    let read = |name: &str| -> Result<serde_json::Value> {
        let p = dir.join(name);
        Ok(serde_json::from_slice(&std::fs::read(&p).map_err(|e| EngineError::io(&p, e))?)?)
    };
    let cfg = read("config.json")?;
    let tc = read("tokenizer_config.json").unwrap_or(serde_json::Value::Null);
    let mut params = 0u64;
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    let mut bytes = 0u64;
    for e in std::fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))?.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "safetensors") {
            bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            let data = std::fs::read(&p).map_err(|e| EngineError::io(&p, e))?;
            let st = candle_core::safetensors::load_buffer(&data, &Device::Cpu)?;
            for t in st.values() {
                params += t.elem_count() as u64;
                *types.entry(format!("{:?}", t.dtype()).to_uppercase()).or_default() += 1;
            }
        }
    }
    let tok = |k: &str| tc[k].as_str().or_else(|| tc[k]["content"].as_str()).map(str::to_string);
    let int = |k: &str| cfg[k].as_u64();
    Ok(ModelInfo {
        path: dir.display().to_string(),
        format: "safetensors".into(),
        architecture: cfg["model_type"].as_str().unwrap_or("unknown").to_string(),
        name: cfg["_name_or_path"].as_str().map(str::to_string),
        parameters: params,
        quantization: types.iter().max_by_key(|(_, n)| **n).map(|(t, _)| t.clone()).unwrap_or_default(),
        tensor_types: types,
        layers: int("num_hidden_layers"),
        hidden_size: int("hidden_size"),
        heads: int("num_attention_heads"),
        kv_heads: int("num_key_value_heads"),
        context_length: int("max_position_embeddings"),
        vocab_size: int("vocab_size").map(|v| v as usize),
        tokenizer: Some("tokenizer.json".into()),
        bos_token: tok("bos_token"),
        eos_token: tok("eos_token"),
        chat_template: tc["chat_template"].as_str().map(str::to_string),
        file_bytes: bytes,
    })
}
