//! Checkpoints: `<output>/checkpoints/step-NNNNNN/` with the trainable values and AdamW's moments
//! (`state.safetensors`), the trainer's state (`trainer_state.json`: step, data position, seed, the loss curve so
//! far, and the config fields that shape the curve) and, for LoRA runs, the adapter in PEFT's format. A checkpoint is
//! written into a hidden temporary folder, synced, and renamed into place, so a crash (even `kill -9`) leaves either
//! the previous checkpoints or a complete new one, never a half-written one; leftover temporary folders are removed
//! on the next start.
//!
//! The data order of epoch `e` is a function of `[train] seed` and `e`, and LoRA dropout's masks of that seed and the step,
//! so a step number is the whole RNG state: resuming at step `k` replays exactly what an uninterrupted run would do.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::optim::AdamState;

const STATE_FILE: &str = "state.safetensors";
const TRAINER_FILE: &str = "trainer_state.json";
const FORMAT: u32 = 1;

/// One optimiser step's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    pub step: u64,
    pub epoch: f64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: usize,
    pub loss_tokens: usize,
    pub seconds: f64,
    /// DPO only: the step's reward accuracy and mean margin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_margin: Option<f64>,
}

/// One evaluation during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalLog {
    pub step: u64,
    /// Mean loss per loss token (SFT), or mean DPO loss per pair.
    pub loss: f64,
    pub rows: usize,
    /// Multiple-choice accuracy on the eval rows with a letter answer, when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcq_rows: Option<usize>,
    /// DPO: held-out reward accuracy and mean margin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_margin: Option<f64>,
}

/// `trainer_state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub format: u32,
    /// Optimiser steps done.
    pub step: u64,
    pub total_steps: u64,
    pub seed: u64,
    /// The config fields that shape the loss curve ([`crate::TrainConfig::curve_fields`]).
    pub config: serde_json::Value,
    /// The base model file or folder trained on.
    pub base: String,
    pub trainable_values: usize,
    pub steps: Vec<StepLog>,
    pub evals: Vec<EvalLog>,
    /// Wall-clock seconds spent training before this checkpoint (over all resumed runs).
    pub elapsed: f64,
}

/// The checkpoints folder of a run.
pub fn dir(output: &Path) -> PathBuf {
    output.join("checkpoints")
}

fn step_dir(output: &Path, step: u64) -> PathBuf {
    dir(output).join(format!("step-{step:06}"))
}

/// Complete checkpoints, oldest first.
pub fn list(output: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let d = dir(output);
    if !d.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(&d).map_err(|e| TrainError::io(&d, e))? {
        let e = e.map_err(|e| TrainError::io(&d, e))?;
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(n) = name.strip_prefix("step-").and_then(|n| n.parse::<u64>().ok()) {
            out.push((n, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Remove temporary folders a crash left behind.
pub fn clean_partial(output: &Path) -> Result<usize> {
    let d = dir(output);
    if !d.is_dir() {
        return Ok(0);
    }
    let mut n = 0;
    for e in std::fs::read_dir(&d).map_err(|e| TrainError::io(&d, e))?.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp-") {
            std::fs::remove_dir_all(e.path()).map_err(|err| TrainError::io(e.path(), err))?;
            n += 1;
        }
    }
    Ok(n)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| TrainError::io(path, e))?;
    f.write_all(bytes).map_err(|e| TrainError::io(path, e))?;
    f.sync_all().map_err(|e| TrainError::io(path, e))
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Write step `state.step`'s checkpoint atomically; `extra` writes more files into the folder (the adapter). Keeps
/// the newest `keep` checkpoints.
pub fn save(
    output: &Path,
    state: &TrainerState,
    values: &[f32],
    adam: &AdamState,
    keep: usize,
    extra: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let d = dir(output);
    std::fs::create_dir_all(&d).map_err(|e| TrainError::io(&d, e))?;
    let tmp = d.join(format!(".tmp-step-{:06}-{}", state.step, std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    let (vb, mb, sb) = (f32_bytes(values), f32_bytes(&adam.m), f32_bytes(&adam.v));
    fn view(b: &[u8], n: usize) -> TensorView<'_> {
        TensorView::new(Dtype::F32, vec![n], b).expect("sizes match")
    }
    let tensors: HashMap<String, TensorView> = HashMap::from([
        ("values".to_string(), view(&vb, values.len())),
        ("adam_m".to_string(), view(&mb, adam.m.len())),
        ("adam_v".to_string(), view(&sb, adam.v.len())),
    ]);
    let meta = HashMap::from([("adam_step".to_string(), adam.step.to_string())]);
    let bytes = safetensors::serialize(&tensors, Some(meta))
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", tmp.display())))?;
    write_synced(&tmp.join(STATE_FILE), &bytes)?;
    write_synced(&tmp.join(TRAINER_FILE), &serde_json::to_vec_pretty(state).expect("state serialises"))?;
    extra(&tmp)?;
    let final_dir = step_dir(output, state.step);
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| TrainError::io(&final_dir, e))?;
    if let Ok(f) = std::fs::File::open(&d) {
        let _ = f.sync_all();
    }
    let all = list(output)?;
    for (_, old) in all.iter().take(all.len().saturating_sub(keep)) {
        std::fs::remove_dir_all(old).map_err(|e| TrainError::io(old, e))?;
    }
    Ok(final_dir)
}

/// A loaded checkpoint.
pub struct Loaded {
    pub path: PathBuf,
    pub state: TrainerState,
    pub values: Vec<f32>,
    pub adam: AdamState,
}

/// Load the newest complete checkpoint, checking that it belongs to this run: the same curve-shaping config (a
/// difference names the field), the same base, the same number of trainable values.
pub fn load_latest(output: &Path, config: &serde_json::Value, base: &str, trainable: usize) -> Result<Option<Loaded>> {
    let Some((_, path)) = list(output)?.pop() else { return Ok(None) };
    let tf = path.join(TRAINER_FILE);
    let bad = |why: String| TrainError::Checkpoint(format!("{}: {why}", tf.display()));
    let bytes = std::fs::read(&tf).map_err(|e| TrainError::io(&tf, e))?;
    let state: TrainerState =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a medforge trainer state ({e})")))?;
    if state.format != FORMAT {
        return Err(bad(format!("checkpoint format {} (this medforge writes {FORMAT})", state.format)));
    }
    if let Some(diff) = first_difference(&state.config, config, "") {
        return Err(bad(format!(
            "written by a run with another config: [train] {diff}; resume with the config it was made with, or \
             train into another output folder"
        )));
    }
    if state.base != base {
        return Err(bad(format!("trained on base `{}`, this run's base is `{base}`", state.base)));
    }
    if state.trainable_values != trainable {
        return Err(bad(format!(
            "holds {} trainable values, this run trains {trainable} (another model or LoRA layout)",
            state.trainable_values
        )));
    }
    let sf = path.join(STATE_FILE);
    let raw = std::fs::read(&sf).map_err(|e| TrainError::io(&sf, e))?;
    let st = safetensors::SafeTensors::deserialize(&raw)
        .map_err(|e| TrainError::Checkpoint(format!("{}: unreadable ({e})", sf.display())))?;
    let get = |name: &str| -> Result<Vec<f32>> {
        let t = st.tensor(name).map_err(|e| TrainError::Checkpoint(format!("{}: {name}: {e}", sf.display())))?;
        if t.dtype() != Dtype::F32 || t.data().len() != 4 * trainable {
            return Err(TrainError::Checkpoint(format!(
                "{}: {name} has {} bytes of {:?}, expected {trainable} f32 values",
                sf.display(),
                t.data().len(),
                t.dtype()
            )));
        }
        Ok(t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    };
    let (_, header) = safetensors::SafeTensors::read_metadata(&raw)
        .map_err(|e| TrainError::Checkpoint(format!("{}: unreadable ({e})", sf.display())))?;
    let adam_step = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("adam_step"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| TrainError::Checkpoint(format!("{}: no adam_step", sf.display())))?;
    let adam = AdamState { m: get("adam_m")?, v: get("adam_v")?, step: adam_step };
    Ok(Some(Loaded { values: get("values")?, adam, state, path }))
}

/// The first key path where two JSON values differ, with both values.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => first_difference(p, q, &path),
                    (p, q) => Some(format!("{path}: checkpoint {p:?}, now {q:?}")),
                }
            })
        }
        _ if a == b => None,
        _ => Some(format!("{at}: checkpoint {a}, now {b}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: u64) -> TrainerState {
        TrainerState {
            format: FORMAT,
            step,
            total_steps: 10,
            seed: 1,
            config: serde_json::json!({"lr": 1e-4, "lora": {"r": 8}}),
            base: "m.gguf".into(),
            trainable_values: 3,
            steps: Vec::new(),
            evals: Vec::new(),
            elapsed: 0.0,
        }
    }

    #[test]
    fn round_trip_keep_and_partial_folders() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let adam = AdamState { m: vec![0.1, 0.2, 0.3], v: vec![1.0, 2.0, 3.0], step: 4 };
        for s in 1..=3 {
            save(out, &state(s), &[s as f32, 0.5, -1.0], &adam, 2, |_| Ok(())).unwrap();
        }
        assert_eq!(list(out).unwrap().iter().map(|c| c.0).collect::<Vec<_>>(), vec![2, 3]);
        let cfg = serde_json::json!({"lr": 1e-4, "lora": {"r": 8}});
        let l = load_latest(out, &cfg, "m.gguf", 3).unwrap().unwrap();
        assert_eq!(l.state.step, 3);
        assert_eq!(l.values, vec![3.0, 0.5, -1.0]);
        assert_eq!(l.adam, adam);
        // A crash mid-write leaves a temporary folder: ignored, then cleaned.
        std::fs::create_dir_all(dir::tmp(out)).unwrap();
        assert_eq!(load_latest(out, &cfg, "m.gguf", 3).unwrap().unwrap().state.step, 3);
        assert_eq!(clean_partial(out).unwrap(), 1);
        // Another config is refused, naming the field.
        let other = serde_json::json!({"lr": 1e-4, "lora": {"r": 16}});
        let e = load_latest(out, &other, "m.gguf", 3).err().unwrap().to_string();
        assert!(e.contains("lora.r") && e.contains("trainer_state.json"), "{e}");
        let e = load_latest(out, &cfg, "other.gguf", 3).err().unwrap().to_string();
        assert!(e.contains("other.gguf"), "{e}");
    }

    mod dir {
        pub fn tmp(out: &std::path::Path) -> std::path::PathBuf {
            super::super::dir(out).join(".tmp-step-000004-1")
        }
    }
}
