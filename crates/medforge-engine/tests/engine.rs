//! Engine tests on the tiny random-weight llama (no network, no shared files).

use candle_core::quantized::GgmlDType;
use medforge_engine::engine::{Engine, GenerateParams, LoadOptions};
use medforge_engine::sampling::SamplingParams;
use medforge_engine::{inspect, tiny};
use medforge_text::chat::Message;

struct Tiny {
    _dir: tempfile::TempDir,
    hf: std::path::PathBuf,
    gguf: std::path::PathBuf,
    q8: std::path::PathBuf,
}

fn tiny() -> Tiny {
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("tiny-hf");
    tiny::write_hf(&hf).unwrap();
    let gguf = dir.path().join("tiny.gguf");
    tiny::write_gguf(&gguf, GgmlDType::F32).unwrap();
    let q8 = dir.path().join("tiny-q8.gguf");
    tiny::write_gguf(&q8, GgmlDType::Q8_0).unwrap();
    Tiny { _dir: dir, hf, gguf, q8 }
}

fn load(p: &std::path::Path) -> Engine {
    Engine::load(p, &LoadOptions::default()).unwrap()
}

const TEXT: &str = "the patient in the ward had a fever and the nurse gave her water; the doctor came at 10:30.";

fn greedy(n: usize) -> GenerateParams {
    GenerateParams { max_tokens: n, ..Default::default() }
}

#[test]
fn gguf_with_permuted_qk_matches_the_hf_folder() {
    let t = tiny();
    let mut hf = load(&t.hf);
    let mut gg = load(&t.gguf);
    // Tokenizer rebuilt from GGUF metadata equals the tokenizer.json one, special tokens included.
    let prompt = "<|im_start|>user\nthe heart<|im_end|>\n";
    assert_eq!(hf.encode(prompt).unwrap(), gg.encode(prompt).unwrap());
    assert_eq!(gg.encode("<|im_start|>").unwrap(), vec![263]);
    let ids = hf.encode(TEXT).unwrap();
    assert_eq!(hf.decode(&ids).unwrap(), TEXT);
    let a = hf.score_tokens(&ids, 1).unwrap();
    let b = gg.score_tokens(&ids, 1).unwrap();
    assert_eq!(a.len(), ids.len() - 1);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-3, "{x} vs {y}");
    }
    let ga = hf.generate(&ids[..10], &greedy(20), &mut |_| true).unwrap();
    let gb = gg.generate(&ids[..10], &greedy(20), &mut |_| true).unwrap();
    assert_eq!(ga.tokens, gb.tokens);
}

#[test]
fn wrong_rope_layout_would_change_the_logits() {
    // Guard for the test above: the permutation matters, so a GGUF read with the HF rope would disagree.
    let t = tiny();
    let mut hf = load(&t.hf);
    let ids = hf.encode(TEXT).unwrap();
    let a = hf.score_tokens(&ids, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // An HF folder whose q/k rows are stored in GGUF order, read as HF: logits must differ.
    let bad = dir.path().join("bad");
    tiny::write_hf(&bad).unwrap();
    let st = bad.join("model.safetensors");
    let mut w = candle_core::safetensors::load(&st, &candle_core::Device::Cpu).unwrap();
    for (k, v) in w.iter_mut() {
        if k.ends_with("q_proj.weight") {
            let (r, c) = v.dims2().unwrap();
            *v = v.reshape((tiny::HEADS, 2, r / tiny::HEADS / 2, c)).unwrap().transpose(1, 2).unwrap();
            *v = v.contiguous().unwrap().reshape((r, c)).unwrap();
        }
    }
    candle_core::safetensors::save(&w, &st).unwrap();
    let b = load(&bad).score_tokens(&ids, 1).unwrap();
    let diff: f32 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum();
    assert!(diff > 0.1, "permuting q rows changed nothing ({diff})");
}

#[test]
fn kv_cache_generation_agrees_with_full_scoring() {
    let t = tiny();
    let mut e = load(&t.gguf);
    let prompt = e.encode(TEXT).unwrap();
    let params = GenerateParams { logprobs: Some(1), ignore_eos: true, ..greedy(24) };
    let g = e.generate(&prompt, &params, &mut |_| true).unwrap();
    assert_eq!(g.tokens.len(), 24);
    assert_eq!(g.finish_reason, "length");
    // A fresh engine scoring prompt + generation in one pass (no cache) gives the same log-probabilities, and each
    // generated token was the argmax.
    let mut fresh = load(&t.gguf);
    let mut all = prompt.clone();
    all.extend(&g.tokens);
    let lp = fresh.score_tokens(&all, prompt.len()).unwrap();
    assert_eq!(lp.len(), 24);
    for (i, (full, step)) in lp.iter().zip(&g.logprobs).enumerate() {
        assert!((full - step.logprob).abs() < 1e-3, "token {i}: {full} vs {}", step.logprob);
        assert_eq!(step.top[0].1, step.logprob, "token {i} was not the argmax");
    }
}

#[test]
fn prefix_reuse_gives_the_same_loglikelihoods_as_a_fresh_engine() {
    let t = tiny();
    let mut e = load(&t.hf);
    let ctx = "Question: which organ pumps blood?\nAnswer:";
    let opts = [" the heart", " the liver", " the lung", " the kidney"];
    let warm: Vec<f64> = opts.iter().map(|o| e.loglikelihood(ctx, o).unwrap().logprob).collect();
    for (o, w) in opts.iter().zip(&warm) {
        let cold = load(&t.hf).loglikelihood(ctx, o).unwrap().logprob;
        assert!((cold - w).abs() < 1e-4, "{o}: {cold} vs {w}");
    }
    let p = e.perplexity(TEXT).unwrap();
    assert!(p.perplexity > 1.0 && p.perplexity.is_finite());
    assert_eq!(p.tokens, e.encode(TEXT).unwrap().len() - 1);
}

#[test]
fn stop_strings_max_tokens_and_seeded_sampling() {
    let t = tiny();
    let mut e = load(&t.hf);
    let prompt = e.encode(TEXT).unwrap();
    let full = e.generate(&prompt, &greedy(40), &mut |_| true).unwrap();
    // Pick a stop string from the middle of the greedy text: the output ends right before it.
    let chars: Vec<char> = full.text.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let mut streamed = String::new();
    let params = GenerateParams { stop: vec![stop.clone()], ..greedy(40) };
    let g = e
        .generate(&prompt, &params, &mut |t| {
            streamed.push_str(t);
            true
        })
        .unwrap();
    assert_eq!(g.finish_reason, "stop");
    assert!(!g.text.contains(&stop));
    assert!(full.text.starts_with(&g.text));
    assert_eq!(streamed, g.text, "streamed text differs from the final text");
    let mut sampled = |seed| {
        let p =
            GenerateParams { sampling: SamplingParams { temperature: 1.0, top_p: 0.9, top_k: 20, seed }, ..greedy(16) };
        e.generate(&prompt, &p, &mut |_| true).unwrap().tokens
    };
    let (a, b, c) = (sampled(1), sampled(1), sampled(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Early stop from the callback.
    let mut n = 0;
    let g = e
        .generate(&prompt, &greedy(30), &mut |_| {
            n += 1;
            n < 3
        })
        .unwrap();
    assert!(g.tokens.len() < 30);
}

#[test]
fn chat_template_from_the_model_and_logprobs() {
    let t = tiny();
    let mut e = load(&t.gguf);
    let rendered = e.render_chat(&[Message::system("be brief"), Message::user("hi")]).unwrap();
    assert_eq!(
        rendered,
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
    let params = GenerateParams { logprobs: Some(3), ..greedy(5) };
    let g = e.chat(&[Message::user("hi")], &params, &mut |_| true).unwrap();
    assert_eq!(g.logprobs.len(), g.tokens.len());
    for lp in &g.logprobs {
        assert_eq!(lp.top.len(), 3);
        // greedy: the chosen token is the top alternative
        assert!((lp.top[0].1 - lp.logprob).abs() < 1e-5);
    }
}

#[test]
fn requantised_and_q8_gguf_stay_close() {
    let t = tiny();
    let ids = load(&t.hf).encode(TEXT).unwrap();
    let base = load(&t.gguf).perplexity_of_tokens(&ids).unwrap().perplexity;
    let q8 = load(&t.q8).perplexity_of_tokens(&ids).unwrap().perplexity;
    let opts = LoadOptions { requant: Some("q8_0".into()), ..Default::default() };
    let rq = Engine::load(&t.gguf, &opts).unwrap().perplexity_of_tokens(&ids).unwrap().perplexity;
    assert!((q8 / base - 1.0).abs() < 0.02, "q8 {q8} vs f32 {base}");
    assert!((rq / base - 1.0).abs() < 0.02, "requant {rq} vs f32 {base}");
}

#[test]
fn inspect_reports_arch_params_quantisation_vocab_template() {
    let t = tiny();
    let g = inspect(&t.q8).unwrap();
    assert_eq!(g.architecture, "llama");
    assert_eq!(g.format, "gguf");
    assert_eq!(g.quantization, "Q8_0");
    assert_eq!(g.vocab_size, Some(265));
    assert_eq!(g.layers, Some(2));
    let per_layer = 2 * 32 + 32 * 32 + 2 * 16 * 32 + 32 * 32 + 3 * 32 * 64;
    assert_eq!(g.parameters, (265 * 32 + 32 + 2 * per_layer) as u64);
    assert!(g.chat_template.unwrap().contains("<|im_start|>"));
    assert_eq!(g.eos_token.as_deref(), Some("<|im_end|>"));
    let h = inspect(&t.hf).unwrap();
    assert_eq!(h.format, "safetensors");
    assert_eq!(h.parameters, g.parameters);
    assert_eq!(h.quantization, "F32");
}

#[test]
fn context_overflow_is_an_error_not_a_panic() {
    let t = tiny();
    let mut e = load(&t.hf);
    let long: Vec<u32> = (0..tiny::CONTEXT as u32 + 5).map(|i| 100 + i % 50).collect();
    assert!(matches!(
        e.generate(&long, &greedy(4), &mut |_| true),
        Err(medforge_engine::EngineError::ContextOverflow { .. })
    ));
    // and the engine still works afterwards
    let ok = e.generate(&long[..20], &greedy(4), &mut |_| true).unwrap();
    assert_eq!(ok.tokens.len(), 4);
    // generation near the end of the context stops at the context
    let g = e.generate(&long[..tiny::CONTEXT - 3], &greedy(50), &mut |_| true).unwrap();
    assert_eq!(g.tokens.len(), 3);
    assert_eq!(g.finish_reason, "length");
}

#[test]
fn backend_trait_runs_local_chat() {
    use medforge_llm::{Backend, ChatRequest, GenParams};
    let t = tiny();
    let backend = medforge_engine::LocalBackend::new(load(&t.gguf));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let req = ChatRequest::user("hello").with_params(GenParams { max_tokens: Some(6), ..Default::default() });
    let a = rt.block_on(backend.chat(&req)).unwrap();
    let b = rt.block_on(backend.chat(&req)).unwrap();
    assert_eq!(a, b, "greedy by default: same answer twice");
    assert!(a.usage.completion_tokens <= 6);
    assert!(a.finish_reason == "length" || a.finish_reason == "stop");
    assert!(a.usage.prompt_tokens > 5);
    assert_eq!(backend.model(), "tiny");
    assert!(backend.identity().starts_with("medforge-engine:"));
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() < tol, "{what}: position {i}: {x} vs {y}");
    }
}

/// Qwen2 (q/k/v biases, half-split rope) and Gemma 3 (scaled embeddings, `1 + w` norms stored two ways, q/k norms,
/// sandwich norms, GELU, a sliding-window layer with its own rope base and a global one): the GGUF file, laid out as
/// llama.cpp's converter writes it, and the Hugging Face folder describe the same function.
#[test]
fn qwen2_and_gemma3_load_the_same_from_gguf_and_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<u32> = (0..40).map(|i| 40 + (i * 7) % 200).collect();
    for arch in [tiny::Arch::Qwen2, tiny::Arch::Gemma3] {
        let hf = dir.path().join(format!("{arch:?}"));
        tiny::write_hf_arch(&hf, arch).unwrap();
        let gguf = dir.path().join(format!("{arch:?}.gguf"));
        tiny::write_gguf_arch(&gguf, arch, GgmlDType::F32).unwrap();
        let (mut a, mut b) = (load(&hf), load(&gguf));
        assert_eq!(a.config().arch, b.config().arch);
        let (la, lb) = (a.score_tokens(&ids, 1).unwrap(), b.score_tokens(&ids, 1).unwrap());
        assert_close(&la, &lb, 1e-4, &format!("{arch:?}"));
        let ga = a.generate(&ids[..12], &greedy(16), &mut |_| true).unwrap();
        let gb = b.generate(&ids[..12], &greedy(16), &mut |_| true).unwrap();
        assert_eq!(ga.tokens, gb.tokens, "{arch:?}");
    }
    // The Gemma switches change the function: the same weights read as llama give other log-probabilities.
    let gemma = dir.path().join("Gemma3");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gemma.join("config.json")).unwrap()).unwrap();
    cfg["model_type"] = "llama".into();
    let as_llama = dir.path().join("gemma-as-llama");
    std::fs::create_dir_all(&as_llama).unwrap();
    for f in ["model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(gemma.join(f), as_llama.join(f)).unwrap();
    }
    std::fs::write(as_llama.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    let (mut g, mut l) = (load(&gemma), load(&as_llama));
    let (lg, ll) = (g.score_tokens(&ids, 1).unwrap(), l.score_tokens(&ids, 1).unwrap());
    assert!(lg.iter().zip(&ll).any(|(x, y)| (x - y).abs() > 1e-2), "gemma and llama readings agree");
}

/// A PEFT adapter applied unmerged gives the function of the merged checkpoint, on the HF folder and on the GGUF file
/// (whose Q/K rows are permuted, so the adapter's B rows are permuted the same way).
#[test]
fn lora_adapter_equals_the_merged_weights() {
    let t = tiny();
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("adapter");
    tiny::write_lora(&adapter, 4, 8.0).unwrap();
    let merged = dir.path().join("merged");
    tiny::write_hf_merged(&merged, 4, 8.0).unwrap();
    let ids: Vec<u32> = (0..30).map(|i| 50 + (i * 11) % 150).collect();
    let want = load(&merged).score_tokens(&ids, 1).unwrap();
    let base = load(&t.hf).score_tokens(&ids, 1).unwrap();
    assert!(want.iter().zip(&base).any(|(x, y)| (x - y).abs() > 1e-2), "the adapter must change the model");
    let opts = LoadOptions { adapter: Some(adapter.clone()), ..Default::default() };
    for base_path in [&t.hf, &t.gguf] {
        let mut e = Engine::load(base_path, &opts).unwrap();
        assert_eq!(e.adapter.as_ref().map(|a| a.1), Some(4));
        assert_close(&e.score_tokens(&ids, 1).unwrap(), &want, 1e-3, &base_path.display().to_string());
    }
    // An adapter for another model is refused with what does not fit.
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(adapter.join("adapter_config.json")).unwrap()).unwrap();
    cfg["use_dora"] = true.into();
    std::fs::write(adapter.join("adapter_config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    let err = Engine::load(&t.hf, &opts).err().expect("DoRA refused").to_string();
    assert!(err.contains("DoRA"), "{err}");
    let qwen = dir.path().join("qwen");
    tiny::write_hf_arch(&qwen, tiny::Arch::Qwen2).unwrap();
    cfg["use_dora"] = false.into();
    std::fs::write(adapter.join("adapter_config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    std::fs::remove_file(adapter.join("adapter_model.safetensors")).unwrap();
    let err = Engine::load(&qwen, &opts).err().expect("no weights").to_string();
    assert!(err.contains("adapter_model.safetensors"), "{err}");
}

/// Batched generation gives each prompt what it gets alone.
#[test]
fn batched_generation_equals_one_prompt_at_a_time() {
    let t = tiny();
    let mut e = load(&t.q8);
    let prompts: Vec<Vec<u32>> =
        vec![(0..7).map(|i| 60 + i).collect(), (0..19).map(|i| 90 + 3 * i).collect(), vec![120, 121]];
    for params in [
        greedy(12),
        GenerateParams {
            max_tokens: 9,
            sampling: SamplingParams { temperature: 0.9, top_p: 0.95, top_k: 0, seed: 5 },
            ..Default::default()
        },
    ] {
        let batch = e.generate_batch(&prompts, &params).unwrap();
        for (p, b) in prompts.iter().zip(&batch) {
            e.reset_cache();
            let one = e.generate(p, &params, &mut |_| true).unwrap();
            assert_eq!(one.tokens, b.tokens, "prompt {p:?}");
            assert_eq!(one.text, b.text);
            assert_eq!(one.finish_reason, b.finish_reason);
        }
    }
}

/// Training's pass ([`Model::forward_tape`]: whole sequences, no cache) gives the inference pass's hidden states bit
/// for bit, on all three families, and its tape holds what a backward pass reads: the attention log-sum-exp
/// recomputed from the saved q and k, the norms' inverse RMS recomputed from their inputs.
#[test]
fn forward_tape_equals_inference_and_records_the_backward_inputs() {
    use medforge_engine::model::KvCache;
    let dir = tempfile::tempdir().unwrap();
    for arch in [tiny::Arch::Llama, tiny::Arch::Qwen2, tiny::Arch::Gemma3] {
        let path = dir.path().join(format!("{arch:?}"));
        tiny::write_hf_arch(&path, arch).unwrap();
        let e = load(&path);
        let m = e.model();
        let a: Vec<u32> = (0..13).map(|i| 40 + (i * 7) % 120).collect();
        let b: Vec<u32> = (0..6).map(|i| 60 + (i * 5) % 90).collect();
        let (mut ca, mut cb): (KvCache, KvCache) = (m.new_cache(), m.new_cache());
        let want = m.forward_batch(&mut [(&a[..], &mut ca), (&b[..], &mut cb)]).unwrap();
        let (got, tape) = m.forward_tape(&[&a, &b]).unwrap();
        // The training pass runs on other kernels (tiled GEMMs, per-head GEMM attention): the same function, summed
        // in another order.
        let worst = got.data.iter().zip(&want.data).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-4, "{arch:?}: the tape pass differs from inference by {worst}");
        assert_eq!(m.forward_full(&[&a, &b]).unwrap().data, got.data, "{arch:?}: with and without the tape");
        assert_eq!(tape.spans, vec![(0, 13), (13, 6)]);
        assert_eq!(tape.layers.len(), m.config.n_layer);
        let c = &m.config;
        let (hd, nh, nkv) = (c.head_dim, c.n_head, c.n_kv_head);
        let rows = a.len() + b.len();
        for lt in &tape.layers {
            assert_eq!(lt.q.len(), rows * nh * hd);
            assert_eq!(lt.k.len(), rows * nkv * hd);
            assert_eq!(lt.attn_lse.len(), rows * nh);
            assert_eq!(lt.gate.len(), rows * c.ffn);
            assert_eq!(lt.q_raw.is_some(), c.qk_norm, "{arch:?}");
            assert_eq!(lt.o_raw.is_some(), c.sandwich_norm, "{arch:?}");
            // 1/rms of the layer input, from the input itself.
            let x0 = &lt.x_in[..c.hidden];
            let ms: f64 = x0.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / c.hidden as f64;
            let inv = 1.0 / ((ms as f32) + c.rms_eps as f32).sqrt();
            assert!((lt.attn_inv_rms[0] - inv).abs() <= 1e-6 * inv, "{} vs {inv}", lt.attn_inv_rms[0]);
            // Row 4 of sequence b (pass row 17), head 1: log-sum-exp of its causal scores, from the saved q and k.
            let (row, start, pos, h) = (17, 13, 4, 1);
            let g = h / (nh / nkv);
            let q = &lt.q[(row * nh + h) * hd..(row * nh + h + 1) * hd];
            let scores: Vec<f32> = (0..=pos)
                .map(|p| {
                    let k = &lt.k[((start + p) * nkv + g) * hd..((start + p) * nkv + g + 1) * hd];
                    let s = q.iter().zip(k).map(|(x, y)| x * y).sum::<f32>() * c.attn_scale;
                    c.attn_softcap.map_or(s, |cap| cap * (s / cap).tanh())
                })
                .collect();
            let lse = medforge_engine::model::log_sum_exp(&scores);
            assert!((lt.attn_lse[row * nh + h] - lse).abs() < 1e-4, "{} vs {lse}", lt.attn_lse[row * nh + h]);
        }
        assert_eq!(tape.x_final.len(), rows * c.hidden);
        assert!(tape.bytes() > 0);
    }
}

/// LoRA for training: the pairs are readable and writable f32, and switching LoRA off gives the base model (DPO's
/// reference) without detaching the adapter.
#[test]
fn lora_pairs_are_writable_and_can_be_switched_off() {
    use medforge_engine::model::Projection;
    let t = tiny();
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("adapter");
    tiny::write_lora(&adapter, 4, 8.0).unwrap();
    let ids: Vec<u32> = (0..30).map(|i| 50 + (i * 11) % 150).collect();
    let base = load(&t.hf).score_tokens(&ids, 1).unwrap();
    let mut e = Engine::load(&t.hf, &LoadOptions { adapter: Some(adapter), ..Default::default() }).unwrap();
    let with = e.score_tokens(&ids, 1).unwrap();
    assert!(with.iter().zip(&base).any(|(x, y)| (x - y).abs() > 1e-2), "the adapter changes the model");
    e.model_mut().set_lora_enabled(false);
    assert_eq!(e.score_tokens(&ids, 1).unwrap(), base, "LoRA off is the base model");
    e.model_mut().set_lora_enabled(true);
    assert_eq!(e.score_tokens(&ids, 1).unwrap(), with);
    // Zeroing every B through the writable view also gives the base model.
    let mut pairs = 0;
    for layer in e.model_mut().layers_mut() {
        for p in Projection::ALL {
            if let Some(pair) = layer.projection_mut(p).lora_mut() {
                assert_eq!(pair.a().len(), pair.rank() * pair.in_dim());
                pair.b_mut().fill(0.0);
                pairs += 1;
            }
        }
    }
    assert!(pairs > 0);
    assert_close(&e.score_tokens(&ids, 1).unwrap(), &base, 1e-6, "B = 0");
    // A pair of the wrong shape is refused.
    let layer = &mut e.model_mut().layers_mut()[0];
    let lin = layer.projection_mut(Projection::Q);
    let bad = medforge_engine::model::LoraPair::new(2, 3, 4, vec![0.0; 6], vec![0.0; 8], 1.0).unwrap();
    assert!(lin.set_lora(bad).is_err());
}
