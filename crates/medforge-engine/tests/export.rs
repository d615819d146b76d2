//! `Engine::export_hf` (`medforge model export-hf` / `merge`): the exported folder is the same function as what was
//! exported. GGUF llama (permuted q/k rows), GGUF Gemma 3 (`1 + w` norms) and merged LoRA adapters, each reloaded
//! from the written files and scored against the original; the adapter saved by `save_adapter` reloads to the same
//! logits.

use candle_core::quantized::GgmlDType;
use medforge_engine::engine::{Engine, LoadOptions};
use medforge_engine::model::lora;
use medforge_engine::tiny::{self, Arch};

const IDS: [u32; 12] = [40, 47, 54, 61, 68, 75, 82, 89, 96, 103, 110, 117];

fn load(p: &std::path::Path, adapter: Option<&std::path::Path>) -> Engine {
    Engine::load(p, &LoadOptions { adapter: adapter.map(|a| a.to_path_buf()), ..Default::default() }).unwrap()
}

fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn gguf_exports_to_an_equivalent_hf_folder() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, arch) in [("llama", Arch::Llama), ("qwen2", Arch::Qwen2), ("gemma3", Arch::Gemma3)] {
        let gguf = tmp.path().join(format!("{name}.gguf"));
        tiny::write_gguf_arch(&gguf, arch, GgmlDType::F32).unwrap();
        let mut src = load(&gguf, None);
        let out = tmp.path().join(format!("{name}-hf"));
        let s = src.export_hf(&out, false).unwrap();
        assert_eq!(s.merged_pairs, 0);
        for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            assert!(out.join(f).is_file(), "{name}: no {f}");
        }
        let mut back = load(&out, None);
        assert!(!back.config().rope_interleaved, "{name}: the HF folder uses the half-split rope");
        let a = src.score_tokens(&IDS, 1).unwrap();
        let b = back.score_tokens(&IDS, 1).unwrap();
        assert!(worst(&a, &b) < 1e-4, "{name}: exported folder scores differ by {}", worst(&a, &b));
        assert_eq!(src.encode("hello <|im_start|>").unwrap(), back.encode("hello <|im_start|>").unwrap());
        // And it equals the original HF folder's weights (what transformers would load).
        let orig = tmp.path().join(format!("{name}-orig"));
        tiny::write_hf_arch(&orig, arch).unwrap();
        let c = load(&orig, None).score_tokens(&IDS, 1).unwrap();
        assert!(worst(&b, &c) < 1e-4, "{name}: export differs from the original folder by {}", worst(&b, &c));
    }
}

#[test]
fn merge_bakes_the_adapter_in_and_saved_adapters_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("llama.gguf");
    tiny::write_gguf_arch(&gguf, Arch::Llama, GgmlDType::F32).unwrap();
    let adapter = tmp.path().join("lora");
    tiny::write_lora(&adapter, 4, 8.0).unwrap();
    let mut with = load(&gguf, Some(&adapter));
    let want = with.score_tokens(&IDS, 1).unwrap();
    let merged = tmp.path().join("merged");
    assert_eq!(with.export_hf(&merged, true).unwrap().merged_pairs, 14);
    let got = load(&merged, None).score_tokens(&IDS, 1).unwrap();
    assert!(worst(&want, &got) < 1e-4, "merged folder differs by {}", worst(&want, &got));
    // save_adapter un-permutes q/k rows for the GGUF base: reloading onto the HF folder gives the same function.
    let saved = tmp.path().join("saved");
    let meta = lora::AdapterMeta {
        base_model: "tiny".into(),
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        rslora: false,
        targets: vec![
            "q_proj".into(),
            "k_proj".into(),
            "v_proj".into(),
            "o_proj".into(),
            "gate_proj".into(),
            "up_proj".into(),
            "down_proj".into(),
        ],
    };
    lora::save_adapter(with.model(), &saved, &meta).unwrap();
    let hf = tmp.path().join("hf");
    tiny::write_hf(&hf).unwrap();
    let again = load(&hf, Some(&saved)).score_tokens(&IDS, 1).unwrap();
    assert!(worst(&want, &again) < 1e-4, "saved adapter on the HF base differs by {}", worst(&want, &again));
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(saved.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["target_modules"].as_array().unwrap().len(), 7);
}
