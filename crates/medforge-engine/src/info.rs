//! `medforge model inspect`: a model file's or folder's summary ([`ModelInfo`]) without loading its weights.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Device;
use serde::Serialize;

use crate::gguf::Gguf;
use crate::{EngineError, Result};

/// Summarise a model file (GGUF) or folder (safetensors) without loading its weights.
pub fn inspect(path: &Path) -> Result<ModelInfo> {
    if path.is_dir() {
        inspect_hf(path)
    } else {
        inspect_gguf(path)
    }
}

/// What `medforge model inspect` prints for a model file or folder.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub path: String,
    pub format: String,
    pub architecture: String,
    pub name: Option<String>,
    pub parameters: u64,
    /// The dominant weight type (`Q4_1`, `F32`, ...), and a count of tensors per type.
    pub quantization: String,
    pub tensor_types: BTreeMap<String, usize>,
    pub layers: Option<u64>,
    pub hidden_size: Option<u64>,
    pub heads: Option<u64>,
    pub kv_heads: Option<u64>,
    pub context_length: Option<u64>,
    pub vocab_size: Option<usize>,
    pub tokenizer: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub chat_template: Option<String>,
    pub file_bytes: u64,
}

/// Summarise a GGUF file.
pub fn inspect_gguf(path: &Path) -> Result<ModelInfo> {
    let g = Gguf::open(path)?;
    let arch = g.arch()?;
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_elems: BTreeMap<String, u64> = BTreeMap::new();
    let mut params = 0u64;
    for info in g.content.tensor_infos.values() {
        let n = info.shape.elem_count() as u64;
        params += n;
        let t = format!("{:?}", info.ggml_dtype);
        *types.entry(t.clone()).or_default() += 1;
        *by_elems.entry(t).or_default() += n;
    }
    let quantization = by_elems.iter().max_by_key(|(_, n)| **n).map(|(t, _)| t.clone()).unwrap_or_default();
    let tokens = g.strings("tokenizer.ggml.tokens");
    let token = |key: &str| -> Option<String> {
        let id = g.int(key)? as usize;
        tokens.as_ref()?.get(id).cloned()
    };
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(ModelInfo {
        path: path.display().to_string(),
        format: "gguf".into(),
        name: g.str("general.name"),
        parameters: params,
        quantization,
        tensor_types: types,
        layers: g.int(&format!("{arch}.block_count")),
        hidden_size: g.int(&format!("{arch}.embedding_length")),
        heads: g.int(&format!("{arch}.attention.head_count")),
        kv_heads: g.int(&format!("{arch}.attention.head_count_kv")),
        context_length: g.int(&format!("{arch}.context_length")),
        vocab_size: tokens.as_ref().map(|t| t.len()),
        tokenizer: g.str("tokenizer.ggml.model"),
        bos_token: token("tokenizer.ggml.bos_token_id"),
        eos_token: token("tokenizer.ggml.eos_token_id"),
        chat_template: g.str("tokenizer.chat_template"),
        architecture: arch,
        file_bytes,
    })
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
