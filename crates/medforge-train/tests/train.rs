//! Training runs on the tiny random models (`medforge_engine::tiny`): LoRA SFT lowers the loss and writes files PEFT
//! reads; gradient accumulation equals one big batch; a run stopped like a crash resumes onto the same loss curve;
//! DPO raises the reward accuracy; full fine-tuning trains every weight; a quantised GGUF base trains an adapter that
//! loads onto the Hugging Face form; bad input fails with the file and field named.

use std::collections::BTreeMap;
use std::path::PathBuf;

use medforge_data::formatted::{self, FormatSpec, FormattedRow, Markers, TrainingType};
use medforge_engine::engine::{Engine, LoadOptions};
use medforge_engine::tiny;
use medforge_text::chat::Message;
use medforge_train::{run, Method, Objective, RunOptions, TrainConfig};

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const COLOURS: [&str; 4] = ["red", "blue", "green", "pink"];

fn spec(eos: &str) -> FormatSpec {
    FormatSpec {
        template: "chatml".into(),
        chat_template: CHATML.into(),
        bos_token: String::new(),
        eos_token: eos.into(),
        reasoning_markers: Markers::Think,
    }
}

/// A letter-answer row: the question names a colour, the answer is its option letter.
fn row(i: usize) -> FormattedRow {
    let k = i % 4;
    let q = format!("Case {i}: the colour is {}.\nA) red\nB) blue\nC) green\nD) pink", COLOURS[k]);
    let a = ["A", "B", "C", "D"][k];
    let prompt = format!("<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n");
    let completion = format!("{a}<|im_end|>\n");
    FormattedRow {
        id: format!("r{i}"),
        training_type: TrainingType::Letter,
        messages: vec![Message::user(q), Message::assistant(a)],
        text: format!("{prompt}{completion}"),
        prompt,
        completion,
        chosen: None,
        rejected: None,
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    base: PathBuf,
    data: PathBuf,
}

fn fixture(train: usize, eval: usize) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let base = root.join("base");
    tiny::write_hf(&base).unwrap();
    let data = root.join("formatted");
    let splits = BTreeMap::from([
        ("train".to_string(), (0..train).map(row).collect()),
        ("eval".to_string(), (1000..1000 + eval).map(row).collect()),
    ]);
    formatted::write_set(&data, &splits, &spec("<|im_end|>")).unwrap();
    Fixture { _tmp: tmp, root, base, data }
}

fn config(f: &Fixture, out: &str) -> TrainConfig {
    TrainConfig {
        base: f.base.clone(),
        data: f.data.clone(),
        output: f.root.join(out),
        seed: 3,
        lr: 2e-2,
        epochs: 2.0,
        batch_size: 4,
        max_length: 128,
        eval_every: 4,
        threads: 2,
        lora: medforge_train::LoraConfig { r: 4, alpha: 8.0, ..Default::default() },
        ..Default::default()
    }
}

fn quiet() -> RunOptions {
    RunOptions::default()
}

fn mean_loss(engine: &mut Engine, rows: &[FormattedRow]) -> f64 {
    let mut total = 0.0;
    for r in rows {
        let ll = engine.loglikelihood(&r.prompt, &r.completion).unwrap();
        total -= ll.logprob;
    }
    total / rows.len() as f64
}

#[test]
fn lora_sft_lowers_the_loss_and_writes_peft_files() {
    let f = fixture(32, 8);
    let cfg = config(&f, "lora");
    let o = run(&cfg, &quiet()).unwrap();
    let info = &o.info;
    assert_eq!(info.total_steps, 16);
    assert_eq!(info.steps.len(), 16);
    assert_eq!(info.train_data.used, 32);
    let first = info.evals.first().unwrap();
    let last = info.evals.last().unwrap();
    assert_eq!(first.step, 0);
    eprintln!("eval loss {:.4} → {:.4}, accuracy {:?} → {:?}", first.loss, last.loss, first.accuracy, last.accuracy);
    assert!(last.loss < 0.7 * first.loss, "eval loss {} → {}", first.loss, last.loss);
    assert_eq!(first.mcq_rows, Some(8), "letter rows are scored as multiple choice");
    assert!(info.steps.iter().all(|s| s.lr > 0.0 && s.grad_norm > 0.0 && s.tokens > 0));
    // Linear decay: the rate falls step by step.
    assert!(info.steps.windows(2).all(|w| w[1].lr < w[0].lr));
    for file in
        ["training_info.json", "loss_curve.png", "adapter/adapter_config.json", "adapter/adapter_model.safetensors"]
    {
        assert!(o.output.join(file).is_file(), "no {file}");
    }
    let ckpts: Vec<_> = std::fs::read_dir(o.output.join("checkpoints")).unwrap().collect();
    assert_eq!(ckpts.len(), 1, "the final checkpoint");
    // The saved adapter is what was trained: the engine with it scores the training rows better than without.
    let rows: Vec<FormattedRow> = (0..8).map(row).collect();
    let mut base = Engine::load(&f.base, &LoadOptions::default()).unwrap();
    let adapter = Some(o.output.join("adapter"));
    let mut tuned = Engine::load(&f.base, &LoadOptions { adapter, ..Default::default() }).unwrap();
    let (b, t) = (mean_loss(&mut base, &rows), mean_loss(&mut tuned, &rows));
    assert!(t < 0.7 * b, "adapter did not help: {b} → {t}");
    let info_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(o.output.join("training_info.json")).unwrap()).unwrap();
    assert_eq!(info_json["seed"], 3);
    assert_eq!(info_json["steps"].as_array().unwrap().len(), 16);
    assert!(
        info_json["final_metrics"]["eval_loss"].as_f64().unwrap()
            < info_json["final_metrics"]["initial_eval_loss"].as_f64().unwrap()
    );
}

#[test]
fn gradient_accumulation_equals_one_big_batch() {
    let f = fixture(16, 0);
    let mut a = config(&f, "a");
    a.max_steps = Some(3);
    let mut b = a.clone();
    b.output = f.root.join("b");
    b.batch_size = 2;
    b.grad_accum = 2;
    let (ra, rb) = (run(&a, &quiet()).unwrap(), run(&b, &quiet()).unwrap());
    for (x, y) in ra.info.steps.iter().zip(&rb.info.steps) {
        assert!((x.loss - y.loss).abs() < 1e-5 * x.loss.abs(), "step {}: {} vs {}", x.step, x.loss, y.loss);
        assert!((x.grad_norm - y.grad_norm).abs() < 1e-4 * x.grad_norm, "step {} grad norm", x.step);
    }
}

#[test]
fn resume_after_a_crash_reproduces_the_uninterrupted_curve() {
    let f = fixture(24, 4);
    let mut whole = config(&f, "whole");
    whole.checkpoint_every = 2;
    whole.lora.dropout = 0.1;
    let w = run(&whole, &quiet()).unwrap();
    let mut cut = whole.clone();
    cut.output = f.root.join("cut");
    let stopped = run(&cut, &RunOptions { stop_after: Some(5), ..Default::default() }).unwrap();
    assert!(stopped.stopped);
    assert_eq!(stopped.info.steps.len(), 5);
    // Starting again without --resume would mix two runs: refused, nothing touched.
    let e = run(&cut, &quiet()).unwrap_err().to_string();
    assert!(e.contains("--resume") && e.contains("step-000004"), "{e}");
    let resumed = run(&cut, &RunOptions { resume: true, ..Default::default() }).unwrap();
    assert_eq!(resumed.info.resumed_from.len(), 1);
    assert_eq!(resumed.info.steps.len(), w.info.steps.len());
    for (x, y) in w.info.steps.iter().zip(&resumed.info.steps) {
        assert_eq!(x.step, y.step);
        assert!((x.loss - y.loss).abs() <= 1e-6 * x.loss.abs(), "step {}: {} vs {}", x.step, x.loss, y.loss);
        assert_eq!(x.lr, y.lr);
    }
    // A different config is refused, naming the field.
    let mut other = cut.clone();
    other.lr = 1e-3;
    let e = run(&other, &RunOptions { resume: true, ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("[train] lr") && e.contains("trainer_state.json"), "{e}");
}

#[test]
fn dpo_raises_the_held_out_reward_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    tiny::write_hf(&base).unwrap();
    // Preference: answer with the colour named in the question, not another one.
    let pair = |i: usize| {
        let k = i % 4;
        serde_json::json!({
            "id": format!("p{i}"),
            "prompt": format!("Case {i}: which colour? It is {}.", COLOURS[k]),
            "chosen": format!("It is {}.", COLOURS[k]),
            "rejected": format!("It is {}.", COLOURS[(k + 1) % 4]),
        })
        .to_string()
    };
    let data = tmp.path().join("pairs");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("train.jsonl"), (0..32).map(pair).collect::<Vec<_>>().join("\n")).unwrap();
    std::fs::write(data.join("eval.jsonl"), (100..116).map(pair).collect::<Vec<_>>().join("\n")).unwrap();
    let cfg = TrainConfig {
        base,
        data,
        output: tmp.path().join("dpo"),
        method: Method::Dpo,
        lr: 2e-2,
        epochs: 3.0,
        batch_size: 4,
        max_length: 96,
        eval_every: 8,
        threads: 2,
        lora: medforge_train::LoraConfig { r: 4, alpha: 8.0, ..Default::default() },
        ..Default::default()
    };
    let o = run(&cfg, &quiet()).unwrap();
    let first = o.info.evals.first().unwrap();
    let last = o.info.evals.last().unwrap();
    // At step 0 the adapter is the identity (B = 0): every reward is 0, the loss ln 2.
    assert!((first.loss - std::f64::consts::LN_2).abs() < 1e-6, "{}", first.loss);
    eprintln!(
        "DPO eval loss {:.4} → {:.4}, reward accuracy {:?} → {:?}",
        first.loss, last.loss, first.reward_accuracy, last.reward_accuracy
    );
    assert!(last.reward_accuracy.unwrap() > 0.5, "held-out reward accuracy {:?}", last.reward_accuracy);
    assert!(last.loss < first.loss);
    assert!(o.info.steps.iter().all(|s| s.reward_accuracy.is_some()));
}

#[test]
fn full_fine_tuning_trains_every_weight() {
    let f = fixture(16, 4);
    let mut cfg = config(&f, "full");
    cfg.method = Method::Full;
    cfg.lr = 3e-3;
    cfg.weight_decay = 0.01;
    let o = run(&cfg, &quiet()).unwrap();
    let (first, last) = (o.info.evals.first().unwrap(), o.info.evals.last().unwrap());
    assert!(last.loss < first.loss, "{} → {}", first.loss, last.loss);
    let mem = o.info.full_finetune_memory.clone().unwrap();
    assert_eq!(mem.optimizer_bytes, 8 * o.info.trainable_params as u64);
    // The model folder loads, and every weight moved.
    let before = Engine::load(&f.base, &LoadOptions::default()).unwrap();
    let after = Engine::load(&o.output.join("model"), &LoadOptions::default()).unwrap();
    let mut moved = 0;
    let mut total = 0;
    let mut old = Vec::new();
    before.model().visit_params(&mut |_, v| old.push(v.to_vec())).unwrap();
    let mut i = 0;
    after
        .model()
        .visit_params(&mut |_, v| {
            total += 1;
            moved += usize::from(v != old[i].as_slice());
            i += 1;
        })
        .unwrap();
    assert_eq!(moved, total, "every weight tensor changed");
}

#[test]
fn a_quantised_gguf_base_trains_an_adapter_for_the_hf_form() {
    let f = fixture(16, 4);
    let gguf = f.root.join("tiny-q8.gguf");
    tiny::write_gguf(&gguf, candle_core::quantized::GgmlDType::Q8_0).unwrap();
    let mut cfg = config(&f, "qlora");
    cfg.base = gguf.clone();
    let o = run(&cfg, &quiet()).unwrap();
    assert!(o.info.evals.last().unwrap().loss < o.info.evals[0].loss);
    // The adapter (q/k rows un-permuted on save) works on the Hugging Face folder as on the GGUF base.
    let adapter = Some(o.output.join("adapter"));
    let mut on_gguf = Engine::load(&gguf, &LoadOptions { adapter: adapter.clone(), ..Default::default() }).unwrap();
    let mut on_hf = Engine::load(&f.base, &LoadOptions { adapter, ..Default::default() }).unwrap();
    let rows: Vec<FormattedRow> = (0..4).map(row).collect();
    let (a, b) = (mean_loss(&mut on_gguf, &rows), mean_loss(&mut on_hf, &rows));
    assert!((a - b).abs() < 0.05 * a.abs().max(0.1), "GGUF {a} vs HF {b} (Q8_0 rounding only)");
}

fn err(cfg: &TrainConfig) -> String {
    run(cfg, &quiet()).unwrap_err().to_string()
}

#[test]
fn bad_input_names_the_file_and_field() {
    let f = fixture(8, 0);
    // Every row truncated to nothing.
    let mut c = config(&f, "e1");
    c.max_length = 8;
    let e = err(&c);
    assert!(e.contains("train.jsonl") && e.contains("max_length = 8"), "{e}");
    // No loss tokens after masking.
    let empty = f.root.join("empty");
    let mut r = row(1);
    r.completion.clear();
    formatted::write_set(&empty, &BTreeMap::from([("train".to_string(), vec![r])]), &spec("<|im_end|>")).unwrap();
    let mut c = config(&f, "e2");
    c.data = empty;
    let e = err(&c);
    assert!(e.contains("train.jsonl") && e.contains("after masking"), "{e}");
    // A set formatted for another model family.
    let gemma = f.root.join("gemma");
    formatted::write_set(&gemma, &BTreeMap::from([("train".to_string(), vec![row(1)])]), &spec("<end_of_turn>"))
        .unwrap();
    let mut c = config(&f, "e3");
    c.data = gemma;
    let e = err(&c);
    assert!(e.contains("format.json") && e.contains("<end_of_turn>") && e.contains("another model family"), "{e}");
    // An adapter to start from that lacks a configured target module.
    let adapter = f.root.join("qv");
    tiny::write_lora(&adapter, 4, 8.0).unwrap();
    let tensors =
        candle_core::safetensors::load(adapter.join("adapter_model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let kept: std::collections::HashMap<_, _> =
        tensors.into_iter().filter(|(k, _)| k.contains("q_proj") || k.contains("v_proj")).collect();
    candle_core::safetensors::save(&kept, adapter.join("adapter_model.safetensors")).unwrap();
    let mut c = config(&f, "e4");
    c.init_adapter = Some(adapter.clone());
    let e = err(&c);
    assert!(e.contains("k_proj") && e.contains(&adapter.display().to_string()), "{e}");
    // Objective `all` on a DPO run, a bad target name: the key is named.
    let mut c = config(&f, "e5");
    c.method = Method::Dpo;
    c.objective = Objective::All;
    assert!(err(&c).contains("[train] objective"));
    let mut c = config(&f, "e6");
    c.lora.targets = vec!["qproj".into()];
    assert!(err(&c).contains("did you mean `q_proj`"));
}

/// A MedQA-format benchmark of colour questions (the training rows' task), two divisions.
fn colour_benchmark(path: &std::path::Path, n: usize) {
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let k = (i * 3 + 1) % 4;
            let letter = ["A", "B", "C", "D"][k];
            serde_json::json!({
                "question": format!("Case {}: the colour is {}.", 5000 + i, COLOURS[k]),
                "options": {"A": "red", "B": "blue", "C": "green", "D": "pink"},
                "answer_idx": letter,
                "answer": COLOURS[k],
                "meta_info": if i % 2 == 0 { "step1" } else { "step2&3" },
            })
            .to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n")).unwrap();
}

/// Letter rows plus plain-text rows (type 1), so the loops see two training types.
fn two_type_fixture() -> Fixture {
    let f = fixture(0, 0);
    let text = |i: usize| {
        let k = i % 4;
        let q = format!("Name colour number {k}.");
        let prompt = format!("<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n");
        let completion = format!("{}<|im_end|>\n", COLOURS[k]);
        FormattedRow {
            id: format!("t{i}"),
            training_type: TrainingType::Text,
            messages: vec![Message::user(q), Message::assistant(COLOURS[k])],
            text: format!("{prompt}{completion}"),
            prompt,
            completion,
            chosen: None,
            rejected: None,
        }
    };
    let train: Vec<FormattedRow> = (0..8).map(text).chain((0..16).map(row)).collect();
    formatted::write_set(&f.data, &BTreeMap::from([("train".to_string(), train)]), &spec("<|im_end|>")).unwrap();
    colour_benchmark(&f.root.join("bench.jsonl"), 12);
    f
}

fn loop_config(f: &Fixture, out: &str) -> TrainConfig {
    let mut cfg = config(f, out);
    cfg.loops = medforge_train::LoopConfig {
        benchmark: "medqa".into(),
        benchmark_data: f.root.join("bench.jsonl"),
        eval_samples: 12,
        target: 101.0,
        max_loops: 2,
        probe_steps: 2,
        focus_steps: 2,
        min_improvement: 1000.0,
        max_focus_rounds: 3,
    };
    cfg
}

fn json_file(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn loop_until_target_trains_each_type_per_loop_and_keeps_the_best() {
    let f = two_type_fixture();
    // An unreachable target: exactly max_loops loops, each type once per loop (text: 2 steps, letter: 4 steps).
    let o = medforge_train::run_loops(&loop_config(&f, "until"), medforge_train::LoopMode::Until).unwrap();
    assert!(!o.reached_target);
    assert_eq!(o.steps, 2 * (2 + 4));
    let report = json_file(&o.report);
    let loops = report["loops"].as_array().unwrap();
    assert_eq!(loops.len(), 2);
    assert_eq!(loops[0]["types"]["type1_text"]["steps"], 2);
    assert_eq!(loops[0]["types"]["type3_word"]["steps"], 4);
    eprintln!("accuracy {} → {:?}", o.initial_accuracy, loops.iter().map(|l| &l["accuracy"]).collect::<Vec<_>>());
    assert!(o.best_accuracy > o.initial_accuracy, "training on the task raises the benchmark accuracy");
    // The best loop's adapter is the one kept (here loop 1 beats loop 2), the last one is `final/`.
    let acc = |n: usize| loops[n]["accuracy"].as_f64().unwrap();
    assert!(acc(0) == o.best_accuracy && acc(1) < acc(0), "this seed's curve: {} then {}", acc(0), acc(1));
    let bytes = |dir: &str| std::fs::read(o.output.join(dir).join("adapter_model.safetensors")).unwrap();
    assert!(bytes("best_checkpoint") == bytes("loop_1/after_type3"));
    assert!(bytes("final") == bytes("loop_2/after_type3") && bytes("final") != bytes("best_checkpoint"));
    for dir in ["loop_1/after_type1", "loop_1/after_type3", "loop_2/after_type3", "best_checkpoint", "final"] {
        assert!(o.output.join(dir).join("adapter_model.safetensors").is_file(), "no adapter in {dir}");
    }
    // division_report.json in the MedGemma Korean pipeline's schema: {division: {accuracy, count, avg_loss}}.
    let divisions = json_file(&o.output.join("division_report.json"));
    let d = divisions.as_object().unwrap();
    assert_eq!(d.keys().collect::<Vec<_>>(), ["step1", "step2&3"]);
    assert_eq!(d["step1"]["count"], 6);
    assert_eq!(d.values().map(|v| v["count"].as_u64().unwrap()).sum::<u64>(), 12);
    assert!(d.values().all(|v| (0.0..=1.0).contains(&v["accuracy"].as_f64().unwrap()) && v["avg_loss"].is_number()));
    // The failure history covers the three checks; every entry has the MedGemma Korean pipeline's fields.
    let failed = json_file(&o.output.join("failed_questions.json"));
    for q in failed.as_array().unwrap() {
        let n = q["fail_count"].as_u64().unwrap();
        assert!((1..=3).contains(&n) && q["question_preview"].as_str().unwrap().starts_with("Case 50"), "{q}");
    }
    // A target already met: no training, the report says so.
    let mut met = loop_config(&f, "met");
    met.loops.target = 0.0;
    let o = medforge_train::run_loops(&met, medforge_train::LoopMode::Until).unwrap();
    assert!(o.reached_target && o.steps == 0);
    assert_eq!(json_file(&o.report)["loops"].as_array().unwrap().len(), 0);
}

#[test]
fn probe_and_focus_ranks_the_types_by_gain() {
    let f = two_type_fixture();
    let o = medforge_train::run_loops(&loop_config(&f, "pf"), medforge_train::LoopMode::ProbeFocus).unwrap();
    // min_improvement is out of reach: one focus round per type after its probe.
    assert_eq!(o.steps, 2 * 2 + 2 * 2);
    let r = json_file(&o.report);
    assert!(o.report.ends_with("final_report.json"));
    let types = r["type_results"].as_object().unwrap();
    assert_eq!(types.keys().collect::<Vec<_>>(), ["type1_text", "type3_word"]);
    for t in types.values() {
        assert_eq!(t["total_steps"], 4);
        assert_eq!(t["improvements"].as_array().unwrap().len(), 2);
        assert_eq!(t["is_exhausted"], true);
    }
    let ranks = r["recommendations"].as_array().unwrap();
    assert_eq!(ranks.len(), 2);
    assert!(ranks[0]["avg_improvement"].as_f64().unwrap() >= ranks[1]["avg_improvement"].as_f64().unwrap());
    assert!(o.output.join("final/adapter_model.safetensors").is_file());
    // Loops train SFT only; a missing benchmark file is named.
    let mut dpo = loop_config(&f, "x");
    dpo.method = Method::Dpo;
    assert!(medforge_train::run_loops(&dpo, medforge_train::LoopMode::Until).unwrap_err().to_string().contains("SFT"));
    let mut missing = loop_config(&f, "y");
    missing.loops.benchmark_data = f.root.join("nope.jsonl");
    let e = medforge_train::run_loops(&missing, medforge_train::LoopMode::Until).unwrap_err().to_string();
    assert!(e.contains("benchmark_data") && e.contains("nope.jsonl"), "{e}");
}

#[test]
fn export_hands_the_same_job_to_trl_and_axolotl() {
    use medforge_train::{export_handoff, HandoffEngine, HandoffOptions};
    let f = fixture(6, 2);
    let mut cfg = config(&f, "unused");
    cfg.lora.rslora = true;
    cfg.lora.targets = vec!["q_proj".into(), "v_proj".into()];
    let opts = HandoffOptions { engine: HandoffEngine::Trl, model: None, gpus: 4 };
    let out = f.root.join("trl");
    let s = export_handoff(&cfg, &opts, &out).unwrap();
    assert_eq!((s.train_rows, s.eval_rows), (6, 2));
    let script = std::fs::read_to_string(out.join("sft_trl.py")).unwrap();
    for needle in [
        format!("MODEL_PATH = {}", serde_json::Value::String(f.base.display().to_string())),
        "LORA_R = 4".to_string(),
        "USE_RSLORA = True".to_string(),
        r#"LORA_TARGET_MODULES = ["q_proj", "v_proj"]"#.to_string(),
        "MAX_LENGTH = 128".to_string(),
    ] {
        assert!(script.contains(&needle), "sft_trl.py lacks `{needle}`");
    }
    assert!(!script.contains("{model_path}"), "every placeholder filled");
    // The rows carry the formatted prompt and completion, so TRL trains on the same text.
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(out.join("train.jsonl")).unwrap().lines().next().unwrap())
            .unwrap();
    assert_eq!(first["prompt"][0]["content"], row(0).messages[0].content);
    assert_eq!(first["completion"][0], serde_json::json!({"role": "assistant", "content": "A"}));
    assert!(std::fs::read_to_string(out.join("accelerate_multi_gpu.yaml")).unwrap().contains("num_processes: 4"));
    assert!(out.join("README.md").is_file() && out.join("requirements.txt").is_file());
    // axolotl: the LoRA block kept, the same keys.
    let out = f.root.join("axolotl");
    export_handoff(&cfg, &HandoffOptions { engine: HandoffEngine::Axolotl, ..opts.clone() }, &out).unwrap();
    let yml = std::fs::read_to_string(out.join("axolotl_sft.yml")).unwrap();
    assert!(
        yml.contains("adapter: lora") && yml.contains("lora_r: 4") && yml.contains("peft_use_rslora: true"),
        "{yml}"
    );
    assert!(yml.contains("sequence_len: 128") && !yml.contains("# @if"), "{yml}");
    // Full fine-tuning drops the LoRA block; a GGUF base needs an HF model named.
    cfg.method = Method::Full;
    let out = f.root.join("axolotl-full");
    export_handoff(&cfg, &HandoffOptions { engine: HandoffEngine::Axolotl, ..opts.clone() }, &out).unwrap();
    assert!(!std::fs::read_to_string(out.join("axolotl_sft.yml")).unwrap().contains("adapter: lora"));
    cfg.base = f.root.join("model.gguf");
    std::fs::write(&cfg.base, b"GGUF").unwrap();
    let e = export_handoff(&cfg, &opts, &f.root.join("x")).unwrap_err().to_string();
    assert!(e.contains("export-hf"), "{e}");
}
