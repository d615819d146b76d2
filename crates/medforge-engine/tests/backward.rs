//! The hand-written backward pass against PyTorch autograd, through fixtures made by
//! `tests/fixtures/make_grad_references.py` (torch + transformers + peft on the tiny llama/qwen2/gemma3 models; CI
//! needs none of them): the loss, every LoRA gradient and the input gradient (LoRA training), and every weight's
//! gradient (full fine-tuning). Also the GGUF layout (interleaved rope, permuted q/k rows) against the same
//! numbers, and a finite-difference check that needs no reference at all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use medforge_engine::engine::{Engine, LoadOptions};
use medforge_engine::model::{lora, GradSink, Model, Param, Projection, Tape};
use medforge_engine::tiny::{self, Arch};
use serde_json::Value;

const ARCHS: [(&str, Arch); 3] = [("llama", Arch::Llama), ("qwen2", Arch::Qwen2), ("gemma3", Arch::Gemma3)];
/// Largest difference relative to the tensor's largest reference value. The f32 reference itself is ~1e-5 off the
/// f64 truth (reference.json: `lora_grad_f32_vs_f64_max_abs`).
const REL_TOL: f64 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grad")
}

fn reference() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("reference.json")).unwrap()).unwrap()
}

/// The two sequences and their prompt lengths.
fn sequences(r: &Value) -> Vec<(Vec<u32>, usize)> {
    r["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let ids = s["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            (ids, s["n_prompt"].as_u64().unwrap() as usize)
        })
        .collect()
}

fn tensors(path: &Path) -> HashMap<String, Vec<f32>> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[derive(Default)]
struct Grads {
    lora: HashMap<(usize, Projection), (Vec<f32>, Vec<f32>)>,
    base: Option<HashMap<Param, Vec<f32>>>,
}

impl Grads {
    fn for_model(model: &Model, full: bool) -> Grads {
        let mut g = Grads::default();
        for (li, layer) in model.layers().iter().enumerate() {
            for p in Projection::ALL {
                if let Some(pair) = layer.projection(p).lora() {
                    g.lora.insert((li, p), (vec![0.0; pair.a().len()], vec![0.0; pair.b().len()]));
                }
            }
        }
        if full {
            let mut base = HashMap::new();
            model.visit_params(&mut |p, v| drop(base.insert(p, vec![0.0; v.len()]))).unwrap();
            g.base = Some(base);
        }
        g
    }
}

impl GradSink for Grads {
    fn lora(&mut self, layer: usize, proj: Projection) -> Option<(&mut [f32], &mut [f32])> {
        self.lora.get_mut(&(layer, proj)).map(|(a, b)| (a.as_mut_slice(), b.as_mut_slice()))
    }

    fn base(&mut self, param: Param) -> Option<&mut [f32]> {
        self.base.as_mut()?.get_mut(&param).map(Vec::as_mut_slice)
    }
}

/// The masked mean cross-entropy of `seqs` and its full backward; returns the loss and dL/d(layer-stack input).
fn loss_and_backward(model: &Model, seqs: &[(Vec<u32>, usize)], sink: &mut dyn GradSink) -> (f64, Vec<f32>) {
    let ids: Vec<&[u32]> = seqs.iter().map(|(s, _)| s.as_slice()).collect();
    let (hidden, tape): (_, Tape) = model.forward_tape(&ids).unwrap();
    let dim = hidden.dim;
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    let mut off = 0;
    for (s, n_prompt) in seqs {
        for p in n_prompt - 1..s.len() - 1 {
            rows.push(off + p);
            targets.push(s[p + 1]);
        }
        off += s.len();
    }
    let n = rows.len();
    let h: Vec<f32> = rows.iter().flat_map(|&r| hidden.row(r).to_vec()).collect();
    let logits = model.logits_dense(&h, n);
    let vocab = logits.len() / n;
    let mut d_logits = vec![0f32; logits.len()];
    let mut loss = 0f64;
    for (i, &t) in targets.iter().enumerate() {
        let row = &logits[i * vocab..(i + 1) * vocab];
        let lse = medforge_engine::model::log_sum_exp(row);
        loss += (lse - row[t as usize]) as f64;
        for (d, &l) in d_logits[i * vocab..(i + 1) * vocab].iter_mut().zip(row) {
            *d = (l - lse).exp() / n as f32;
        }
        d_logits[i * vocab + t as usize] -= 1.0 / n as f32;
    }
    let dh = model.logits_backward(&h, &logits, &d_logits, n, sink);
    let mut d_hidden = vec![0f32; hidden.rows * dim];
    for (k, &r) in rows.iter().enumerate() {
        d_hidden[r * dim..(r + 1) * dim].copy_from_slice(&dh[k * dim..(k + 1) * dim]);
    }
    let dx = model.backward(&tape, &d_hidden, sink).unwrap();
    let all_ids: Vec<u32> = seqs.iter().flat_map(|(s, _)| s.clone()).collect();
    model.embed_backward(&all_ids, &dx, sink);
    (loss / n as f64, dx)
}

/// max |a − b| / max |b|.
fn rel_diff(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().map(|v| v.abs() as f64).fold(0.0, f64::max).max(1e-12);
    got.iter().zip(want).map(|(a, b)| (*a as f64 - *b as f64).abs()).fold(0.0, f64::max) / scale
}

fn peft_name(layer: usize, p: Projection, half: &str) -> String {
    let group = if matches!(p, Projection::Gate | Projection::Up | Projection::Down) { "mlp" } else { "self_attn" };
    format!("base_model.model.model.layers.{layer}.{group}.{}.lora_{half}.weight", p.module_name())
}

fn load(dir: &Path, adapter: Option<PathBuf>) -> Engine {
    Engine::load(dir, &LoadOptions { adapter, ..Default::default() }).unwrap()
}

#[test]
fn lora_gradients_match_pytorch_autograd() {
    let r = reference();
    let seqs = sequences(&r);
    let tmp = tempfile::tempdir().unwrap();
    for (name, arch) in ARCHS {
        let dir = tmp.path().join(name);
        tiny::write_hf_arch(&dir, arch).unwrap();
        let e = load(&dir, Some(fixtures().join(name).join("adapter")));
        let model = e.model();
        let want = tensors(&fixtures().join(name).join("lora_grads.safetensors"));
        let mut g = Grads::for_model(model, false);
        assert_eq!(g.lora.len(), 14, "{name}: every projection of both layers has a pair");
        let (loss, dx) = loss_and_backward(model, &seqs, &mut g);
        let want_loss = r["archs"][name]["lora_loss"].as_f64().unwrap_or_else(|| want["loss"][0] as f64);
        assert!((loss - want_loss).abs() < 1e-4 * want_loss.abs(), "{name}: loss {loss} vs PyTorch {want_loss}");
        let mut worst = (0.0, String::new());
        for ((li, p), (da, db)) in &g.lora {
            for (half, got) in [("A", da), ("B", db)] {
                let key = peft_name(*li, *p, half);
                let d = rel_diff(got, &want[&key]);
                if d > worst.0 {
                    worst = (d, key);
                }
            }
        }
        assert!(worst.0 < REL_TOL, "{name}: {} differs from PyTorch by {:.2e} (relative)", worst.1, worst.0);
        eprintln!(
            "{name}: loss {loss:.7} (PyTorch {want_loss:.7}); worst LoRA gradient {} at {:.2e} relative",
            worst.1, worst.0
        );
        let t0 = seqs[0].0.len();
        for (k, range) in [(0, 0..t0 * tiny::HIDDEN), (1, t0 * tiny::HIDDEN..dx.len())] {
            let d = rel_diff(&dx[range], &want[&format!("dx.{k}")]);
            assert!(d < REL_TOL, "{name}: dX of sequence {k} differs from PyTorch by {d:.2e}");
        }
    }
}

#[test]
fn full_fine_tuning_gradients_match_pytorch_autograd() {
    let r = reference();
    let seqs = sequences(&r);
    let tmp = tempfile::tempdir().unwrap();
    for (name, arch) in ARCHS {
        let dir = tmp.path().join(name);
        tiny::write_hf_arch(&dir, arch).unwrap();
        let e = load(&dir, None);
        let model = e.model();
        let want = tensors(&fixtures().join(name).join("full_grads.safetensors"));
        let mut g = Grads::for_model(model, true);
        let (loss, _) = loss_and_backward(model, &seqs, &mut g);
        assert!(
            (loss - want["loss"][0] as f64).abs() < 1e-4 * loss.abs(),
            "{name}: loss {loss} vs {}",
            want["loss"][0]
        );
        let base = g.base.unwrap();
        // Every PyTorch parameter has its gradient here, and the other way round.
        assert_eq!(base.len() + 1, want.len(), "{name}: parameter sets differ");
        for (param, got) in &base {
            let key = param.hf_name(model.config.family);
            let w = want.get(&key).unwrap_or_else(|| panic!("{name}: PyTorch has no parameter {key}"));
            let d = rel_diff(got, w);
            assert!(d < REL_TOL, "{name}: gradient of {key} differs from PyTorch by {d:.2e} (relative)");
            assert!(got.iter().any(|v| *v != 0.0), "{name}: {key} got no gradient");
        }
    }
}

/// The GGUF layout stores q/k rows permuted for interleaved rope; the engine permutes the adapter's B rows the same
/// way, so dB of q/k comes out permuted and must be un-permuted to compare (as the trainer does on save).
#[test]
fn gguf_layout_gives_the_same_gradients() {
    let r = reference();
    let seqs = sequences(&r);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tiny.gguf");
    tiny::write_gguf_arch(&path, Arch::Llama, candle_core::quantized::GgmlDType::F32).unwrap();
    let e = load(&path, Some(fixtures().join("llama/adapter")));
    let model = e.model();
    assert!(model.config.rope_interleaved);
    let want = tensors(&fixtures().join("llama/lora_grads.safetensors"));
    let mut g = Grads::for_model(model, false);
    let (_, dx) = loss_and_backward(model, &seqs, &mut g);
    for ((li, p), (da, db)) in &g.lora {
        let db = match p {
            Projection::Q | Projection::K => {
                let heads = if *p == Projection::Q { tiny::HEADS } else { tiny::KV_HEADS };
                lora::unpermute_rows_for_interleaved_rope(db, db.len() / 4, 4, heads)
            }
            _ => db.clone(),
        };
        assert!(rel_diff(da, &want[&peft_name(*li, *p, "A")]) < REL_TOL, "{li} {p:?} A");
        assert!(rel_diff(&db, &want[&peft_name(*li, *p, "B")]) < REL_TOL, "{li} {p:?} B");
    }
    let t0 = seqs[0].0.len();
    assert!(rel_diff(&dx[..t0 * tiny::HIDDEN], &want["dx.0"]) < REL_TOL);
}

/// Central differences of the loss in f64 terms against the analytic gradient, for a few LoRA entries and base
/// weights of each architecture: needs nothing but the engine.
#[test]
fn gradients_match_finite_differences() {
    let r = reference();
    let seqs = sequences(&r);
    let tmp = tempfile::tempdir().unwrap();
    for (name, arch) in ARCHS {
        let dir = tmp.path().join(name);
        tiny::write_hf_arch(&dir, arch).unwrap();
        let mut e = load(&dir, Some(fixtures().join(name).join("adapter")));
        let mut g = Grads::for_model(e.model(), false);
        loss_and_backward(e.model(), &seqs, &mut g);
        let eps = 3e-3f32;
        for (li, p, half, idx) in [(0, Projection::Q, 0, 3), (1, Projection::Down, 1, 17), (0, Projection::V, 1, 5)] {
            let analytic = if half == 0 { g.lora[&(li, p)].0[idx] } else { g.lora[&(li, p)].1[idx] };
            let mut at = |delta: f32| {
                let pair = e.model_mut().layers_mut()[li].projection_mut(p).lora_mut().unwrap();
                let v = if half == 0 { pair.a_mut() } else { pair.b_mut() };
                v[idx] += delta;
                let mut none = Grads::default();
                let (l, _) = loss_and_backward(e.model(), &seqs, &mut none);
                let pair = e.model_mut().layers_mut()[li].projection_mut(p).lora_mut().unwrap();
                let v = if half == 0 { pair.a_mut() } else { pair.b_mut() };
                v[idx] -= delta;
                l
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps as f64);
            assert!(
                (numeric - analytic as f64).abs() < 3e-3 + 1e-2 * numeric.abs(),
                "{name} layer {li} {p:?} {}[{idx}]: numeric {numeric} vs analytic {analytic}",
                if half == 0 { "A" } else { "B" }
            );
        }
    }
}

/// LoRA dropout: the backward regenerates the forward's masks, so finite differences still agree; the masks drop
/// about `p` of the inputs and change with the seed.
#[test]
fn dropout_gradients_match_finite_differences() {
    let r = reference();
    let seqs = sequences(&r);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("llama");
    tiny::write_hf_arch(&dir, Arch::Llama).unwrap();
    let mut e = load(&dir, Some(fixtures().join("llama/adapter")));
    let d = lora::LoraDropout { p: 0.3, seed: 7 };
    let x = vec![1f32; 10_000];
    let kept = d.apply(&x, 0, Projection::Q);
    let dropped = kept.iter().filter(|v| **v == 0.0).count();
    assert!((2700..3300).contains(&dropped), "{dropped} of 10000 dropped at p = 0.3");
    assert!(kept.iter().all(|v| *v == 0.0 || (*v - 1.0 / 0.7).abs() < 1e-6));
    assert_ne!(kept, d.apply(&x, 0, Projection::K), "each projection has its own mask");
    e.model_mut().set_lora_dropout(Some(d));
    let mut g = Grads::for_model(e.model(), false);
    let (with_dropout, _) = loss_and_backward(e.model(), &seqs, &mut g);
    // Dropout's 1/(1-p) scaling makes this loss strongly curved in A; a smaller step keeps the truncation error low.
    let eps = 1e-3f32;
    for (li, p, idx) in [(0, Projection::Q, 3), (1, Projection::Up, 11)] {
        let analytic = g.lora[&(li, p)].0[idx];
        let mut at = |delta: f32| {
            e.model_mut().layers_mut()[li].projection_mut(p).lora_mut().unwrap().a_mut()[idx] += delta;
            let (l, _) = loss_and_backward(e.model(), &seqs, &mut Grads::default());
            e.model_mut().layers_mut()[li].projection_mut(p).lora_mut().unwrap().a_mut()[idx] -= delta;
            l
        };
        let numeric = (at(eps) - at(-eps)) / (2.0 * eps as f64);
        assert!(
            (numeric - analytic as f64).abs() < 3e-3 + 1e-2 * numeric.abs(),
            "layer {li} {p:?} A[{idx}] with dropout: numeric {numeric} vs analytic {analytic}"
        );
    }
    e.model_mut().set_lora_dropout(None);
    let (without, _) = loss_and_backward(e.model(), &seqs, &mut Grads::default());
    assert!((with_dropout - without).abs() > 1e-3, "dropout changed nothing ({with_dropout} vs {without})");
}
