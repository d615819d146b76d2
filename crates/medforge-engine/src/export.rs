//! Writing a loaded model as a Hugging Face folder that transformers and PEFT load (`medforge model export-hf`,
//! `medforge model merge`, and full fine-tuning's output): `config.json`, `model.safetensors` (f32), `tokenizer.json`,
//! `tokenizer_config.json` (chat template, BOS/EOS) and `generation_config.json`.
//!
//! From a GGUF file the weights are dequantised, llama's q/k rows are put back in Hugging Face order, and Gemma's norm
//! weights lose the `+1` GGUF folds in; the config is rebuilt from the GGUF metadata. With `merge_lora` the LoRA
//! pairs are baked in (`W + s·B·A`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::cpu::gemm::matmul;
use crate::engine::Engine;
use crate::model::lora::unpermute_rows_for_interleaved_rope;
use crate::model::{Family, ModelConfig, Param, Projection};
use crate::{EngineError, Result};

/// What [`Engine::export_hf`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    pub dir: PathBuf,
    pub tensors: usize,
    pub params: usize,
    /// LoRA pairs baked into the weights.
    pub merged_pairs: usize,
}

/// The Hugging Face `config.json` of a model config.
pub fn hf_config(c: &ModelConfig, tied: bool, bos: Option<u32>, eos: Option<u32>) -> Result<serde_json::Value> {
    if !c.rope_freq_factors.is_empty() {
        return Err(EngineError::Unsupported(
            "exporting a model with per-frequency rope factors (Llama 3.1 scaling) to config.json".into(),
        ));
    }
    let mut j = serde_json::json!({
        "hidden_size": c.hidden, "intermediate_size": c.ffn, "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head, "num_key_value_heads": c.n_kv_head, "head_dim": c.head_dim,
        "rms_norm_eps": c.rms_eps, "rope_theta": c.rope_theta, "max_position_embeddings": c.context_length,
        "vocab_size": c.vocab_size, "tie_word_embeddings": tied, "torch_dtype": "float32",
        "bos_token_id": bos, "eos_token_id": eos,
    });
    if c.rope_linear_scale != 1.0 {
        j["rope_scaling"] = serde_json::json!({"type": "linear", "rope_type": "linear", "factor": c.rope_linear_scale});
    }
    match (c.family, c.arch.as_str()) {
        (Family::Llama, "qwen2") => {
            j["architectures"] = serde_json::json!(["Qwen2ForCausalLM"]);
            j["model_type"] = "qwen2".into();
            j["hidden_act"] = "silu".into();
            j["use_sliding_window"] = false.into();
        }
        (Family::Llama, "mistral") => {
            j["architectures"] = serde_json::json!(["MistralForCausalLM"]);
            j["model_type"] = "mistral".into();
            j["hidden_act"] = "silu".into();
            j["sliding_window"] = c.sliding_window.into();
        }
        (Family::Llama, _) => {
            j["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
            j["model_type"] = "llama".into();
            j["hidden_act"] = "silu".into();
        }
        (Family::Gemma, "gemma3") => {
            j["architectures"] = serde_json::json!(["Gemma3ForCausalLM"]);
            j["model_type"] = "gemma3_text".into();
            j["hidden_activation"] = "gelu_pytorch_tanh".into();
            j["query_pre_attn_scalar"] = (1.0 / (c.attn_scale as f64 * c.attn_scale as f64)).round().into();
            j["sliding_window"] = c.sliding_window.into();
            j["rope_local_base_freq"] = c.rope_local_theta.unwrap_or(c.rope_theta).into();
            let types: Vec<&str> =
                (0..c.n_layer).map(|l| if c.is_sliding(l) { "sliding_attention" } else { "full_attention" }).collect();
            j["layer_types"] = serde_json::json!(types);
            j["final_logit_softcapping"] = c.final_softcap.into();
            j["attn_logit_softcapping"] = c.attn_softcap.into();
        }
        (Family::Gemma, other) => {
            return Err(EngineError::Unsupported(format!("exporting `{other}` to a Hugging Face folder (gemma3 only)")))
        }
    }
    Ok(j)
}

impl Engine {
    /// Write this model (with its LoRA pairs baked in when `merge_lora`) as a Hugging Face folder at `dir`.
    pub fn export_hf(&self, dir: &Path, merge_lora: bool) -> Result<ExportSummary> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        let model = self.model();
        let c = &model.config;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        let mut params = 0;
        let mut merged_pairs = 0;
        let mut failure: Option<EngineError> = None;
        model.visit_weights_f32(&mut |param, rows, cols, mut w: Vec<f32>| {
            if failure.is_some() {
                return;
            }
            if let Param::Weight(li, p) = param {
                if merge_lora && model.lora_enabled() {
                    if let Some(pair) = model.layers()[li].projection(p).lora() {
                        // W += s·B·A in the engine's row order, before any un-permutation.
                        let mut ba = vec![0f32; rows * cols];
                        matmul(rows, cols, pair.rank(), pair.b(), false, pair.a(), false, &mut ba, false);
                        let s = pair.scale();
                        w.iter_mut().zip(&ba).for_each(|(x, d)| *x += s * d);
                        merged_pairs += 1;
                    }
                }
                if c.rope_interleaved && matches!(p, Projection::Q | Projection::K) {
                    let heads = if p == Projection::Q { c.n_head } else { c.n_kv_head };
                    w = unpermute_rows_for_interleaved_rope(&w, rows, cols, heads);
                }
            }
            if let (Param::Norm(..) | Param::FinalNorm, Family::Gemma) = (param, c.family) {
                // Hugging Face Gemma stores w for x·(1 + w); GGUF stores 1 + w (norm_add 0).
                let shift = c.norm_add - 1.0;
                w.iter_mut().for_each(|x| *x += shift);
            }
            params += w.len();
            let shape: Vec<usize> = if matches!(param, Param::Bias(..) | Param::Norm(..) | Param::FinalNorm) {
                vec![w.len()]
            } else {
                vec![rows, cols]
            };
            match Tensor::from_vec(w, shape, &Device::Cpu) {
                Ok(t) => {
                    tensors.insert(param.hf_name(c.family), t);
                }
                Err(e) => failure = Some(e.into()),
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        let n_tensors = tensors.len();
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
        drop(tensors);
        let (bos, eos) = (self.bos_id(), self.eos_id());
        let write_json = |name: &str, v: &serde_json::Value| -> Result<()> {
            let p = dir.join(name);
            std::fs::write(&p, serde_json::to_vec_pretty(v)?).map_err(|e| EngineError::io(&p, e))
        };
        write_json("config.json", &hf_config(c, model.tied_embeddings(), bos, eos)?)?;
        self.tokenizer()
            .save(dir.join("tokenizer.json"), false)
            .map_err(|e| EngineError::Tokenizer(format!("writing tokenizer.json: {e}")))?;
        let mut tc = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": self.adds_bos(),
            "add_eos_token": false,
            "model_max_length": c.context_length,
            "clean_up_tokenization_spaces": false,
        });
        if let Some(b) = self.bos_token() {
            tc["bos_token"] = b.into();
        }
        if let Some(e) = self.eos_token() {
            tc["eos_token"] = e.into();
            tc["pad_token"] = e.into();
        }
        if let Some(t) = &self.template_source {
            tc["chat_template"] = t.clone().into();
        }
        write_json("tokenizer_config.json", &tc)?;
        write_json("generation_config.json", &serde_json::json!({"bos_token_id": bos, "eos_token_id": eos}))?;
        Ok(ExportSummary { dir: dir.to_path_buf(), tensors: n_tensors, params, merged_pairs })
    }
}
