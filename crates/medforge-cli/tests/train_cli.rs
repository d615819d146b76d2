//! `medforge train`, `medforge train export` and `medforge model merge` through the binary, on the tiny model: a
//! `[train]` section inside a pipeline config, paths relative to the config file, flags overriding the section.
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use medforge_data::formatted::{self, FormatSpec, FormattedRow, Markers, TrainingType};
use medforge_text::chat::Message;

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

fn medforge(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medforge")).args(args).current_dir(dir).output().expect("run medforge")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn row(i: usize) -> FormattedRow {
    let k = i % 2;
    let q = format!("Case {i}: is it {}?\nA) yes\nB) no", ["yes", "no"][k]);
    let a = ["A", "B"][k];
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

#[test]
fn train_from_a_pipeline_config_then_export_and_merge() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    medforge_engine::tiny::write_hf(&root.join("tiny")).expect("tiny model");
    let spec = FormatSpec {
        template: "chatml".into(),
        chat_template: CHATML.into(),
        bos_token: String::new(),
        eos_token: "<|im_end|>".into(),
        reasoning_markers: Markers::Think,
    };
    let splits = BTreeMap::from([
        ("train".to_string(), (0..12).map(row).collect()),
        ("eval".to_string(), (100..104).map(row).collect()),
    ]);
    formatted::write_set(&root.join("formatted"), &splits, &spec).expect("formatted set");
    // A pipeline config: `medforge train` reads [train] only; paths are relative to the file, not the working dir.
    let cfg_dir = root.join("configs");
    std::fs::create_dir_all(&cfg_dir).expect("mkdir");
    std::fs::write(
        cfg_dir.join("job.toml"),
        "[run]\nname = \"x\"\noutput = \"../runs\"\n\n[[inputs]]\npath = \"../data.jsonl\"\n\n\
         [train]\nbase = \"../tiny\"\ndata = \"../formatted\"\noutput = \"../lora\"\nbatch_size = 4\nlr = 0.01\n\
         max_steps = 50\neval_every = 2\nthreads = 1\n[train.lora]\nr = 4\nalpha = 8\n",
    )
    .expect("config");
    let elsewhere = root.join("formatted");
    ok(&medforge(&elsewhere, &["train", "--config", "../configs/job.toml", "--max-steps", "3", "--quiet"]));
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("lora/training_info.json")).expect("training_info.json"))
            .expect("json");
    assert_eq!(info["steps"].as_array().expect("steps").len(), 3, "--max-steps overrides [train] max_steps");
    assert!(root.join("lora/adapter/adapter_model.safetensors").is_file());
    assert!(root.join("lora/loss_curve.png").is_file());
    // Again without --resume: refused, naming the flag; with it, nothing left to do but the same result.
    let again = medforge(root, &["train", "--config", "configs/job.toml", "--max-steps", "3", "--quiet"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"), "{}", String::from_utf8_lossy(&again.stderr));
    // The same job for TRL.
    ok(&medforge(root, &["train", "export", "--engine", "trl", "--config", "configs/job.toml", "--out", "handoff"]));
    let script = std::fs::read_to_string(root.join("handoff/sft_trl.py")).expect("sft_trl.py");
    assert!(script.contains("LORA_R = 4") && script.contains("LEARNING_RATE = 0.01"), "{script}");
    assert_eq!(std::fs::read_to_string(root.join("handoff/train.jsonl")).expect("rows").lines().count(), 12);
    // The adapter merged into the base: the merged model scores like base + adapter.
    ok(&medforge(root, &["model", "merge", "--model", "tiny", "--adapter", "lora/adapter", "--out", "merged"]));
    let opts = medforge_engine::engine::LoadOptions { adapter: Some(root.join("lora/adapter")), ..Default::default() };
    let mut with = medforge_engine::Engine::load(&root.join("tiny"), &opts).expect("base + adapter");
    let mut merged = medforge_engine::Engine::load(&root.join("merged"), &Default::default()).expect("merged");
    let r = row(1);
    let (a, b) = (
        with.loglikelihood(&r.prompt, &r.completion).expect("ll").logprob,
        merged.loglikelihood(&r.prompt, &r.completion).expect("ll").logprob,
    );
    assert!((a - b).abs() < 1e-4 * a.abs().max(1.0), "base+adapter {a} vs merged {b}");
}
