//! PEFT LoRA adapters (`adapter_config.json` + `adapter_model.safetensors`, as `peft` saves them), applied unmerged:
//! each target projection computes `W x + (alpha / r) B (A x)`, so a quantised base stays exact and the adapter can
//! be swapped without reloading the base.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::{Model, ModelConfig};
use crate::cpu::QMatrix;
use crate::{EngineError, Result};

/// One projection's low-rank update `scale * B A`, in f32 (trainable; the base stays in its own format).
pub struct LoraPair {
    /// `r x in`.
    a: QMatrix,
    /// `out x r`.
    b: QMatrix,
    scale: f32,
}

impl LoraPair {
    /// A pair from row-major values: `a` is `rank x in_dim`, `b` is `out_dim x rank`; `scale` is `alpha / r`
    /// (`alpha / sqrt(r)` with rsLoRA).
    pub fn new(rank: usize, in_dim: usize, out_dim: usize, a: Vec<f32>, b: Vec<f32>, scale: f32) -> Result<Self> {
        Ok(LoraPair { a: QMatrix::from_f32(rank, in_dim, a)?, b: QMatrix::from_f32(out_dim, rank, b)?, scale })
    }

    pub fn rank(&self) -> usize {
        self.a.rows()
    }

    pub fn in_dim(&self) -> usize {
        self.a.cols()
    }

    pub fn out_dim(&self) -> usize {
        self.b.rows()
    }

    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// A, `rank x in_dim`, row-major.
    pub fn a(&self) -> &[f32] {
        self.a.f32_values().expect("LoRA matrices are f32")
    }

    /// B, `out_dim x rank`, row-major.
    pub fn b(&self) -> &[f32] {
        self.b.f32_values().expect("LoRA matrices are f32")
    }

    /// A, to update in place (an optimiser step).
    pub fn a_mut(&mut self) -> &mut [f32] {
        self.a.f32_values_mut().expect("LoRA matrices are f32")
    }

    /// B, to update in place.
    pub fn b_mut(&mut self) -> &mut [f32] {
        self.b.f32_values_mut().expect("LoRA matrices are f32")
    }

    /// `y += scale * (x A^T) B^T` for `t` rows.
    pub fn add_to(&self, x: &[f32], t: usize, y: &mut [f32]) {
        let r = self.a.rows();
        let mut ax = vec![0f32; t * r];
        self.a.matmul(x, t, &mut ax);
        let mut bax = vec![0f32; t * self.b.rows()];
        self.b.matmul(&ax, t, &mut bax);
        y.iter_mut().zip(&bax).for_each(|(v, d)| *v += self.scale * d);
    }
}

/// LoRA dropout on training passes (PEFT's `lora_dropout`): a projection's LoRA branch reads `x ⊙ m / (1 - p)`,
/// with an independent Bernoulli mask per projection and pass, as PEFT's one `nn.Dropout` per adapted module does.
/// The mask is a hash of (seed, layer, projection, element), so the backward pass regenerates it instead of storing
/// it. The base branch always reads `x`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoraDropout {
    /// The drop probability, in `[0, 1)`.
    pub p: f32,
    /// One seed per pass (a trainer derives it from its seed and the micro-batch).
    pub seed: u64,
}

impl LoraDropout {
    /// `x ⊙ m / (1 - p)` for layer `layer`'s projection `proj`.
    pub fn apply(&self, x: &[f32], layer: usize, proj: super::Projection) -> Vec<f32> {
        let key = mix64(self.seed ^ mix64(((layer as u64) << 8) | (proj as u64 + 1)));
        let scale = 1.0 / (1.0 - self.p);
        // Drop when the hash's top 32 bits fall below p·2^32.
        let threshold = (f64::from(self.p) * 4_294_967_296.0) as u64;
        x.iter()
            .enumerate()
            .map(|(e, &v)| if mix64(key.wrapping_add(e as u64)) >> 32 < threshold { 0.0 } else { v * scale })
            .collect()
    }
}

/// SplitMix64's finaliser: a counter-based hash with good bit mixing.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A loaded adapter: its config and the pairs by (layer, module).
pub struct Adapter {
    pub dir: String,
    pub rank: usize,
    pub alpha: f64,
    pub targets: Vec<String>,
    pairs: HashMap<(usize, String), (Tensor, Tensor)>,
    scale: f64,
}

const MODULES: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

impl Adapter {
    pub fn load(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("adapter_config.json");
        let bytes = std::fs::read(&cfg_path).map_err(|e| EngineError::io(&cfg_path, e))?;
        let cfg: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| EngineError::Format(format!("{}: {e}", cfg_path.display())))?;
        let bad = |what: String| EngineError::Unsupported(format!("{}: {what}", cfg_path.display()));
        if let Some(t) = cfg["peft_type"].as_str() {
            if t != "LORA" {
                return Err(bad(format!("peft_type `{t}` (only LORA adapters are supported)")));
            }
        }
        if cfg["use_dora"].as_bool() == Some(true) {
            return Err(bad("DoRA adapters (use_dora = true) are not supported".into()));
        }
        if cfg["fan_in_fan_out"].as_bool() == Some(true) {
            return Err(bad("fan_in_fan_out = true (Conv1D models) is not supported".into()));
        }
        for key in ["rank_pattern", "alpha_pattern"] {
            if cfg[key].as_object().is_some_and(|m| !m.is_empty()) {
                return Err(bad(format!("per-module `{key}` is not supported; use one r and lora_alpha")));
            }
        }
        if cfg["modules_to_save"].as_array().is_some_and(|m| !m.is_empty()) {
            return Err(bad("modules_to_save (fully trained extra modules) is not supported".into()));
        }
        let rank = cfg["r"].as_u64().ok_or_else(|| bad("no `r`".into()))? as usize;
        let alpha = cfg["lora_alpha"].as_f64().unwrap_or(rank as f64);
        let scale =
            if cfg["use_rslora"].as_bool() == Some(true) { alpha / (rank as f64).sqrt() } else { alpha / rank as f64 };
        let weights = dir.join("adapter_model.safetensors");
        if !weights.is_file() {
            return Err(EngineError::Format(format!(
                "{}: no adapter_model.safetensors (adapter_model.bin is not read; save with safe_serialization=True)",
                dir.display()
            )));
        }
        let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)?;
        let mut halves: HashMap<(usize, String), (Option<Tensor>, Option<Tensor>)> = HashMap::new();
        let mut targets: Vec<String> = Vec::new();
        for (name, t) in tensors {
            // base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}[.default].weight
            let Some(rest) = name.split("layers.").nth(1) else {
                return Err(EngineError::Unsupported(format!(
                    "{}: tensor `{name}` is not in a decoder layer (embedding/lm_head adapters are not supported)",
                    weights.display()
                )));
            };
            let mut parts = rest.split('.');
            let layer: usize = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
                EngineError::Format(format!("{}: cannot read the layer number of `{name}`", weights.display()))
            })?;
            let module = MODULES.iter().find(|m| rest.contains(&format!(".{m}."))).ok_or_else(|| {
                EngineError::Unsupported(format!(
                    "{}: `{name}` targets a module other than {}",
                    weights.display(),
                    MODULES.join(", ")
                ))
            })?;
            let entry = halves.entry((layer, module.to_string())).or_default();
            if name.contains("lora_A") {
                entry.0 = Some(t);
            } else if name.contains("lora_B") {
                entry.1 = Some(t);
            } else {
                return Err(EngineError::Unsupported(format!(
                    "{}: `{name}` is neither lora_A nor lora_B (LoRA biases and magnitudes are not supported)",
                    weights.display()
                )));
            }
            if !targets.contains(&module.to_string()) {
                targets.push(module.to_string());
            }
        }
        let mut pairs = HashMap::new();
        for ((layer, module), (a, b)) in halves {
            match (a, b) {
                (Some(a), Some(b)) => {
                    pairs.insert((layer, module), (a, b));
                }
                _ => {
                    return Err(EngineError::Format(format!(
                        "{}: layer {layer} {module} has only one of lora_A/lora_B",
                        weights.display()
                    )))
                }
            }
        }
        if pairs.is_empty() {
            return Err(EngineError::Format(format!("{}: the adapter has no LoRA tensors", weights.display())));
        }
        targets.sort();
        Ok(Adapter { dir: dir.display().to_string(), rank, alpha, targets, pairs, scale })
    }

    /// Attach the adapter to a model. `interleaved_qk`: the base stores Q/K rows in llama.cpp's order (GGUF llama),
    /// so the rows of B for q_proj/k_proj are permuted the same way.
    pub fn apply(&self, model: &mut Model) -> Result<()> {
        let config: ModelConfig = model.config.clone();
        for ((layer, module), (a, b)) in &self.pairs {
            let lin = model
                .layers_mut()
                .get_mut(*layer)
                .ok_or_else(|| {
                    EngineError::Format(format!(
                        "{}: layer {layer} does not exist in a {}-layer model",
                        self.dir, config.n_layer
                    ))
                })?
                .linear_mut(module)
                .expect("known module");
            let mat = |t: &Tensor| -> Result<(usize, usize, Vec<f32>)> {
                let (r, c) = t.dims2()?;
                Ok((r, c, t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?))
            };
            let (ar, ac, av) = mat(a)?;
            let (br, bc, mut bv) = mat(b)?;
            if ac != lin.in_dim() || br != lin.out_dim() || ar != bc {
                return Err(EngineError::Format(format!(
                    "{}: layer {layer} {module}: A is {ar}x{ac} and B {br}x{bc}, the base projection is {}x{} \
                     (an adapter for another model?)",
                    self.dir,
                    lin.out_dim(),
                    lin.in_dim()
                )));
            }
            if config.rope_interleaved && (module == "q_proj" || module == "k_proj") {
                let heads = if module == "q_proj" { config.n_head } else { config.n_kv_head };
                bv = permute_rows_for_interleaved_rope(&bv, br, bc, heads);
            }
            lin.set_lora(LoraPair::new(ar, ac, br, av, bv, self.scale as f32)?)?;
        }
        Ok(())
    }
}

/// What `adapter_config.json` records about an adapter medforge writes.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterMeta {
    /// `base_model_name_or_path`: the base the adapter was trained on (a path or a hub name).
    pub base_model: String,
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub rslora: bool,
    /// PEFT module names (`q_proj`, ...).
    pub targets: Vec<String>,
}

/// Write the model's LoRA pairs as a PEFT adapter folder (`adapter_config.json`, `adapter_model.safetensors`, f32,
/// PEFT's tensor names), so `PeftModel.from_pretrained` loads it onto the Hugging Face form of the base. Over a GGUF
/// llama base the q/k rows of B are un-permuted back to Hugging Face order. Files are written into `dir` (created);
/// a caller that needs the folder to appear atomically writes to a temporary folder and renames it.
pub fn save_adapter(model: &Model, dir: &Path, meta: &AdapterMeta) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let c = &model.config;
    let mut tensors = HashMap::new();
    for (li, layer) in model.layers().iter().enumerate() {
        for p in super::Projection::ALL {
            let Some(pair) = layer.projection(p).lora() else { continue };
            let group = if matches!(p, super::Projection::Gate | super::Projection::Up | super::Projection::Down) {
                "mlp"
            } else {
                "self_attn"
            };
            let name = format!("base_model.model.model.layers.{li}.{group}.{}", p.module_name());
            let (r, out) = (pair.rank(), pair.out_dim());
            let mut b = pair.b().to_vec();
            if c.rope_interleaved && matches!(p, super::Projection::Q | super::Projection::K) {
                let heads = if p == super::Projection::Q { c.n_head } else { c.n_kv_head };
                b = unpermute_rows_for_interleaved_rope(&b, out, r, heads);
            }
            tensors.insert(
                format!("{name}.lora_A.weight"),
                Tensor::from_vec(pair.a().to_vec(), (r, pair.in_dim()), &Device::Cpu)?,
            );
            tensors.insert(format!("{name}.lora_B.weight"), Tensor::from_vec(b, (out, r), &Device::Cpu)?);
        }
    }
    if tensors.is_empty() {
        return Err(EngineError::BadInput("the model has no LoRA pairs to save".into()));
    }
    candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors"))?;
    let mut targets = meta.targets.clone();
    targets.sort();
    let cfg = serde_json::json!({
        "alpha_pattern": {}, "auto_mapping": null, "base_model_name_or_path": meta.base_model, "bias": "none",
        "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true, "layers_pattern": null,
        "layers_to_transform": null, "lora_alpha": meta.alpha, "lora_dropout": meta.dropout, "modules_to_save": null,
        "peft_type": "LORA", "r": meta.r, "rank_pattern": {}, "revision": null, "target_modules": targets,
        "task_type": "CAUSAL_LM", "use_dora": false, "use_rslora": meta.rslora,
    });
    let p = dir.join("adapter_config.json");
    std::fs::write(&p, serde_json::to_vec_pretty(&cfg)?).map_err(|e| EngineError::io(&p, e))
}

/// llama.cpp → Hugging Face row order within each head: the inverse of [`permute_rows_for_interleaved_rope`].
pub fn unpermute_rows_for_interleaved_rope(m: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let d = rows / heads;
    let mut out = vec![0f32; m.len()];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..d / 2 {
                let hf = h * d + j * (d / 2) + i;
                let gg = h * d + 2 * i + j;
                out[hf * cols..(hf + 1) * cols].copy_from_slice(&m[gg * cols..(gg + 1) * cols]);
            }
        }
    }
    out
}

/// Hugging Face → llama.cpp row order within each head: rows `i` and `i + d/2` become `2i` and `2i + 1`.
pub fn permute_rows_for_interleaved_rope(m: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let d = rows / heads;
    let mut out = vec![0f32; m.len()];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..d / 2 {
                let src = h * d + j * (d / 2) + i;
                let dst = h * d + 2 * i + j;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&m[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}
