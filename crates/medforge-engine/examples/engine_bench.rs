//! The medforge side of bench/engine_bench.sh.
//!
//!   engine_bench greedy MODEL PROMPTS.jsonl N [REQUANT]   -> JSONL: prompt ids, greedy ids, top-2 logit gap per step
//!   engine_bench ppl MODEL TEXT_FILE [REQUANT]            -> JSON: token ids, NLL, perplexity
//!   engine_bench speed MODEL PROMPT_TOKENS GEN_TOKENS [REQUANT] -> JSON: load s, prompt tok/s, decode tok/s, peak RSS
//!   engine_bench batch MODEL PROMPT_TOKENS GEN_TOKENS BATCH       -> JSON: decode tok/s over BATCH sequences at once
//!   engine_bench constrained MODEL GEN_TOKENS                     -> JSON: decode tok/s with and without a JSON schema
//!   engine_bench tiny OUT_DIR llama|qwen2|gemma3                  -> the tiny random-weight model as an HF folder
//!   engine_bench score MODEL IDS_JSON                             -> JSON: log-prob of each token after the first
//!   engine_bench logits MODEL ADAPTER|none PROMPTS_JSON           -> JSON: last-position logits with and without the adapter
//!
//! PROMPTS.jsonl rows are `{"text": ...}`; each text is tokenised with special tokens recognised (chat markers).

use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use medforge_engine::engine::{Engine, GenerateParams, LoadOptions};
use serde_json::json;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn load(model: &str, requant: Option<&String>) -> (Engine, f64) {
    let t = Instant::now();
    let opts = LoadOptions { requant: requant.cloned(), ..Default::default() };
    let e = Engine::load(Path::new(model), &opts).expect("load model");
    (e, t.elapsed().as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("greedy") => {
            let (mut e, _) = load(&args[2], args.get(5));
            let n: usize = args[4].parse().unwrap();
            let f = std::fs::File::open(&args[3]).unwrap();
            for line in std::io::BufReader::new(f).lines() {
                let row: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
                let ids = e.encode_prompt(row["text"].as_str().unwrap()).unwrap();
                let mut gaps = Vec::new();
                let params =
                    GenerateParams { max_tokens: n, logprobs: Some(2), ignore_eos: true, ..Default::default() };
                // No EOS stop for the comparison: generate exactly n tokens.
                let g = e.generate(&ids, &params, &mut |_| true).unwrap();
                for lp in &g.logprobs {
                    gaps.push(lp.top[0].1 - lp.top.get(1).map(|x| x.1).unwrap_or(f32::NEG_INFINITY));
                }
                println!(
                    "{}",
                    json!({"prompt_text": row["text"], "prompt_ids": ids, "ids": g.tokens, "gaps": gaps, "text": g.text})
                );
            }
        }
        Some("ppl") => {
            let (mut e, _) = load(&args[2], args.get(4));
            // A text, or a JSON with the "ids" of an earlier run (the same tokens through another copy of the model).
            let text = std::fs::read_to_string(&args[3]).unwrap();
            let ids: Vec<u32> = if args[3].ends_with(".json") {
                serde_json::from_value(serde_json::from_str::<serde_json::Value>(&text).unwrap()["ids"].clone())
                    .unwrap()
            } else {
                e.encode_prompt(&text).unwrap()
            };
            let p = e.perplexity_of_tokens(&ids).unwrap();
            println!("{}", json!({"ids": ids, "nll": p.nll, "tokens": p.tokens, "perplexity": p.perplexity}));
        }
        Some("speed") => {
            let (mut e, load_s) = load(&args[2], args.get(5));
            let pt: usize = args[3].parse().unwrap();
            let gt: usize = args[4].parse().unwrap();
            let base = e
                .encode("The patient presented with chest pain radiating to the left arm and shortness of breath. ")
                .unwrap();
            let prompt: Vec<u32> = base.iter().cycle().take(pt).copied().collect();
            let params = GenerateParams { max_tokens: gt, ignore_eos: true, ..Default::default() };
            // warm-up
            e.generate(
                &prompt[..8],
                &GenerateParams { max_tokens: 4, ignore_eos: true, ..Default::default() },
                &mut |_| true,
            )
            .unwrap();
            let mut best_pp = 0f64;
            let mut best_tg = 0f64;
            for _ in 0..3 {
                e.reset_cache();
                let g = e.generate(&prompt, &params, &mut |_| true).unwrap();
                best_pp = best_pp.max(pt as f64 / g.prompt_secs);
                best_tg = best_tg.max((g.tokens.len() - 1) as f64 / g.decode_secs);
            }
            println!(
                "{}",
                json!({"load_s": load_s, "prompt_tokens": pt, "gen_tokens": gt,
                       "pp_tok_s": best_pp, "tg_tok_s": best_tg, "peak_rss_mb": peak_rss_mb()})
            );
        }
        Some("constrained") => {
            // The same chat prompt decoded with a JSON-schema constraint and freely for as many tokens (EOS ignored),
            // greedy and sampled; best of 3 each. The schema's strings are long so the document runs to GEN_TOKENS.
            let (mut e, _) = load(&args[2], None);
            let gt: usize = args[3].parse().unwrap();
            let schema = json!({"type": "object", "properties": {
                "diagnosis": {"type": "string", "maxLength": 300},
                "findings": {"type": "array", "items": {"type": "string", "maxLength": 200}, "maxItems": 12},
                "plan": {"type": "string", "maxLength": 1500}},
                "required": ["diagnosis", "findings", "plan"], "additionalProperties": false});
            let c = medforge_engine::Constraint::JsonSchema(schema);
            let t = Instant::now();
            e.check_constraint(&c).unwrap();
            let compile_s = t.elapsed().as_secs_f64();
            let msgs = [medforge_text::chat::Message::new(
                "user",
                "A 58-year-old man has crushing chest pain radiating to the left arm, sweating and nausea for 40 \
                 minutes. Write the case as JSON with a diagnosis, the key findings and a detailed management plan.",
            )];
            let prompt = e.encode_prompt(&e.render_chat(&msgs).unwrap()).unwrap();
            let mut out = serde_json::Map::new();
            for (mode, temperature) in [("greedy", 0.0), ("sampled", 0.7)] {
                let sampling = medforge_engine::SamplingParams { temperature, top_p: 0.95, top_k: 0, seed: 7 };
                let free = GenerateParams { max_tokens: gt, ignore_eos: true, sampling, ..Default::default() };
                let guided = GenerateParams { constraint: Some(c.clone()), ..free.clone() };
                let (mut best_free, mut best_guided, mut n_guided, mut valid) = (0f64, 0f64, 0usize, true);
                for _ in 0..3 {
                    e.reset_cache();
                    let g = e.generate(&prompt, &guided, &mut |_| true).unwrap();
                    n_guided = g.tokens.len();
                    valid &= g.finish_reason == "length" || serde_json::from_str::<serde_json::Value>(&g.text).is_ok();
                    best_guided = best_guided.max((g.tokens.len() - 1) as f64 / g.decode_secs);
                    e.reset_cache();
                    let f = GenerateParams { max_tokens: n_guided, ..free.clone() };
                    let g = e.generate(&prompt, &f, &mut |_| true).unwrap();
                    best_free = best_free.max((g.tokens.len() - 1) as f64 / g.decode_secs);
                }
                out.insert(
                    mode.into(),
                    json!({"tokens": n_guided, "free_tok_s": best_free, "json_schema_tok_s": best_guided,
                           "ratio": best_guided / best_free, "valid_or_cut": valid}),
                );
            }
            out.insert("compile_s".into(), json!(compile_s));
            println!("{}", serde_json::Value::Object(out));
        }
        Some("batch") => {
            let (mut e, _) = load(&args[2], None);
            let (pt, gt, b): (usize, usize, usize) =
                (args[3].parse().unwrap(), args[4].parse().unwrap(), args[5].parse().unwrap());
            let base = e.encode("Fever, cough and fatigue for three days in a patient with asthma. ").unwrap();
            // Different prompts per sequence (rotated), same length.
            let prompts: Vec<Vec<u32>> =
                (0..b).map(|k| base.iter().cycle().skip(k).take(pt).copied().collect()).collect();
            let params = GenerateParams { max_tokens: gt, ignore_eos: true, ..Default::default() };
            let g = e.generate_batch(&prompts, &params).unwrap();
            let tokens: usize = g.iter().map(|x| x.tokens.len()).sum();
            println!(
                "{}",
                json!({"batch": b, "prompt_tokens": pt, "gen_tokens": gt, "prompt_s": g[0].prompt_secs,
                       "decode_tok_s": tokens as f64 / g[0].decode_secs, "peak_rss_mb": peak_rss_mb()})
            );
        }
        Some("tiny") => {
            let arch = match args[3].as_str() {
                "llama" => medforge_engine::tiny::Arch::Llama,
                "qwen2" => medforge_engine::tiny::Arch::Qwen2,
                "gemma3" => medforge_engine::tiny::Arch::Gemma3,
                other => panic!("unknown tiny arch {other}"),
            };
            medforge_engine::tiny::write_hf_arch(Path::new(&args[2]), arch).unwrap();
        }
        Some("score") => {
            let (mut e, _) = load(&args[2], None);
            let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&args[3]).unwrap()).unwrap();
            let ids: Vec<u32> = serde_json::from_value(v["ids"].clone()).unwrap();
            let lp = e.score_tokens(&ids, 1).unwrap();
            println!("{}", json!({"ids": ids, "logprobs": lp}));
        }
        Some("logits") => {
            // engine_bench logits MODEL ADAPTER|none PROMPTS_JSON: each prompt's last-position logits (full rows),
            // with and without the adapter, as bench/peft_logits.py writes them for PEFT.
            let adapter = (args[3] != "none").then(|| std::path::PathBuf::from(&args[3]));
            let opts = LoadOptions { adapter, ..Default::default() };
            let mut e = Engine::load(Path::new(&args[2]), &opts).unwrap();
            let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&args[4]).unwrap()).unwrap();
            let mut out = Vec::new();
            for p in v["prompts"].as_array().unwrap() {
                let ids: Vec<u32> = serde_json::from_value(p["ids"].clone()).unwrap();
                let m = e.model_mut();
                let h = m.forward_full(&[&ids]).unwrap();
                let with = m.logits(h.row(h.rows - 1), 1);
                m.set_lora_enabled(false);
                let h = m.forward_full(&[&ids]).unwrap();
                let without = m.logits(h.row(h.rows - 1), 1);
                m.set_lora_enabled(true);
                out.push(json!({"ids": ids, "adapter": with, "base": without}));
            }
            println!("{}", json!({"prompts": out}));
        }
        Some("requant") => {
            // engine_bench requant IN.gguf OUT.gguf q8_0: the same file with every quantised matrix requantised.
            use candle_core::quantized::{gguf_file, QTensor};
            let target = medforge_engine::engine::parse_requant(&args[4]).unwrap();
            let mut f = std::fs::File::open(&args[2]).unwrap();
            let c = gguf_file::Content::read(&mut f).unwrap();
            let dev = candle_core::Device::Cpu;
            let mut names: Vec<&String> = c.tensor_infos.keys().collect();
            names.sort();
            let tensors: Vec<(String, QTensor)> = names
                .into_iter()
                .map(|n| {
                    let q = c.tensor(&mut f, n, &dev).unwrap();
                    let cols = *q.shape().dims().last().unwrap();
                    let quantized = !matches!(
                        q.dtype(),
                        candle_core::quantized::GgmlDType::F32 | candle_core::quantized::GgmlDType::F16
                    );
                    let q = if quantized && q.dtype() != target && cols.is_multiple_of(target.block_size()) {
                        QTensor::quantize(&q.dequantize(&dev).unwrap(), target).unwrap()
                    } else {
                        q
                    };
                    (n.clone(), q)
                })
                .collect();
            let mut meta: Vec<(&str, &gguf_file::Value)> = c.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
            meta.sort_by_key(|(k, _)| *k);
            let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, q)| (n.as_str(), q)).collect();
            let mut out = std::fs::File::create(&args[3]).unwrap();
            gguf_file::write(&mut out, &meta, &refs).unwrap();
        }
        _ => {
            eprintln!("usage: engine_bench greedy|ppl|speed ...");
            std::process::exit(2);
        }
    }
}
