//! The LLM stages asking for structure, end to end: the `medforge` binary against `medforge serve`'s server (in this
//! test process) on the tiny random-weight model, whose free text is garbage. With `structured_output = "vllm"` the
//! structure is enforced: no label is UNKNOWN, every verdict is readable, every MCQ answer a valid letter, every
//! rewrite passes the hierarchical validator, every DPO side is JSON of the schema. Without it, the same model's
//! prose parses into nothing, which shows the constraint did the work.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use medforge_engine::engine::{Engine, LoadOptions};
use medforge_engine::server::{router, serve, ServerConfig};
use medforge_engine::tiny;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn medforge(args: &[&str]) -> Output {
    tokio::task::block_in_place(|| Command::new(env!("CARGO_BIN_EXE_medforge")).args(args).output().unwrap())
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn open_rows(dir: &Path) -> PathBuf {
    let p = dir.join("open.jsonl");
    let rows = [
        ("open-1", "What is the first-line drug for type 2 diabetes in adults?", "Metformin"),
        ("open-2", "Which vitamin deficiency causes scurvy?", "Vitamin C"),
        ("open-3", "Which organ produces insulin?", "The pancreas"),
    ];
    let s: String = rows
        .iter()
        .map(|(id, q, a)| {
            serde_json::json!({"id": id, "source": "open", "kind": "open_qa", "question": q, "answer": a}).to_string()
                + "\n"
        })
        .collect();
    std::fs::write(&p, s).unwrap();
    p
}

fn config(dir: &Path, base: &str, structured_output: &str, name: &str) -> PathBuf {
    config_with(dir, base, structured_output, name, "decode")
}

fn config_with(dir: &Path, base: &str, structured_output: &str, name: &str, choice_by: &str) -> PathBuf {
    let medqa = root().join("fixtures/medqa/dev_4opt.jsonl");
    let tax = root().join("fixtures/specialty_taxonomy/med_division.json");
    let s = format!(
        r#"
[run]
output = "{out}"
[[inputs]]
path = "{medqa}"
preset = "medqa"
[[inputs]]
path = "{open}"
preset = "medforge"
[llm]
window = 4
[[llm.endpoints]]
base_url = "{base}"
model = "tiny"
structured_output = "{structured_output}"
timeout_s = 60
[[stages]]
stage = "label"
taxonomy = "{tax}"
levels = 1
choice_by = "{choice_by}"
prompt = '''{{{{ taxonomy }}}}
{{{{ question[:900] }}}}
Id:'''
[[stages]]
stage = "difficulty"
drop_solved = false
reasoning_tokens = 8
choice_by = "{choice_by}"
params = {{ max_tokens = 40, temperature = 0.0 }}
judge_params = {{ max_tokens = 16, temperature = 0.0 }}
[[stages]]
stage = "rewrite"
field = "answer"
into = "response"
min_depth = 3
max_items = 2
max_retries = 0
params = {{ max_tokens = 400, temperature = 0.0 }}
[[stages]]
stage = "dpo_pairs"
chosen_backend = "default"
params = {{ max_tokens = 60, temperature = 0.7, seed = 1 }}
structure = {{ json_schema = {{ type = "object", properties = {{ answer = {{ type = "string", maxLength = 20 }} }}, required = ["answer"], additionalProperties = false }} }}
[output]
formats = ["jsonl"]
"#,
        out = dir.join(name).display(),
        medqa = medqa.display(),
        open = open_rows(dir).display(),
        tax = tax.display(),
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, s).unwrap();
    p
}

fn run(cfg: &Path) -> PathBuf {
    let o = medforge(&["run", "--config", cfg.to_str().unwrap()]);
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{all}");
    PathBuf::from(String::from_utf8_lossy(&o.stdout).lines().last().unwrap().trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_get_valid_structure_from_a_model_that_cannot_write_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-hf");
    tiny::write_hf(&model).unwrap();
    let engine = Engine::load(&model, &LoadOptions { name: Some("tiny".into()), ..Default::default() }).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, router(Arc::new(Mutex::new(engine)), ServerConfig::default())));

    let on = run(&config(dir.path(), &base, "vllm", "on"));
    let label = json(&on.join("label_report.json"));
    let failed = std::fs::read_to_string(on.join("failed.jsonl")).unwrap_or_default();
    assert_eq!(label["labelled"], 23, "{label}\n{}", failed.lines().take(2).collect::<Vec<_>>().join("\n"));
    assert_eq!(label["unknown"], 0, "{label}");
    assert_eq!(label["structure"], "choice");
    let diff = json(&on.join("difficulty_report.json"));
    assert!(diff["verdicts"].get("unparsed").is_none(), "{diff}");
    assert_eq!(diff["letter_methods"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum::<u64>(), 20);
    let rewrite = json(&on.join("rewrite_report.json"));
    assert_eq!(rewrite["success_rate"], 1.0, "{rewrite}");
    let manifest = json(&on.join("manifest.json"));
    let reasons =
        manifest["steps"].as_array().unwrap().iter().find(|s| s["name"] == "difficulty").unwrap()["reasons"].clone();
    assert!(reasons.as_object().is_none_or(|r| r.keys().all(|k| !k.contains("invalid_response"))), "{reasons}");
    let curated = jsonl(&on.join("curated.jsonl"));
    for r in &curated {
        let d = &r["metadata"]["difficulty"];
        if d.get("base_letter").is_some() {
            let letter = d["base_letter"].as_str().unwrap_or_else(|| panic!("no letter: {d}"));
            assert!(["A", "B", "C", "D"].contains(&letter), "{d}");
        } else {
            assert!(["correct", "incorrect"].contains(&d["judge"].as_str().unwrap()), "{d}");
        }
    }
    let pairs = jsonl(&on.join("dpo_pairs.jsonl"));
    assert!(!pairs.is_empty());
    for p in &pairs {
        for side in ["chosen", "rejected"] {
            let v: Value = serde_json::from_str(p[side].as_str().unwrap()).unwrap_or_else(|e| panic!("{e}: {p}"));
            assert!(v["answer"].as_str().is_some_and(|a| a.chars().count() <= 20), "{v}");
        }
    }

    // The same model without the constraint: its prose names no category.
    let off = run(&config(dir.path(), &base, "none", "off"));
    let label = json(&off.join("label_report.json"));
    assert!(label["unknown"].as_u64().unwrap() >= 20, "{label}");
    let rewrite = json(&off.join("rewrite_report.json"));
    assert_eq!(rewrite["success_rate"], 0.0, "{rewrite}");

    // Choices ranked by log-likelihood through `medforge serve`: the same readable answers, each with a confidence.
    let scored = run(&config_with(dir.path(), &base, "medforge", "scored", "loglik"));
    let label = json(&scored.join("label_report.json"));
    assert_eq!((label["unknown"].as_u64(), label["choice_by"].as_str()), (Some(0), Some("loglik")), "{label}");
    let diff = json(&scored.join("difficulty_report.json"));
    assert!(diff["verdicts"].get("unparsed").is_none(), "{diff}");
    let rows = jsonl(&scored.join("curated.jsonl"));
    assert!(!rows.is_empty());
    for r in &rows {
        for stage in ["label", "difficulty"] {
            let a = r["annotations"].as_array().unwrap().iter().find(|a| a["stage"] == stage).unwrap();
            let score =
                |n: &str| a["scores"].as_array().unwrap().iter().find(|s| s["name"] == n).map(|s| s["value"].clone());
            let p = score(&format!("{stage}.confidence")).unwrap_or_else(|| panic!("{stage}: {a}"));
            let p = p.as_f64().unwrap();
            assert!(p > 0.0 && p <= 1.0, "{a}");
            assert!(score(&format!("{stage}.margin")).unwrap().as_f64().unwrap() >= 0.0, "{a}");
        }
    }
}
