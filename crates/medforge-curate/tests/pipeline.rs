//! The whole curation pipeline on fixtures: every input row ends in filtered.parquet with a reason,
//! decontamination drops exactly the planted overlap, the formatted set verifies, the same seed gives
//! byte-identical outputs, and split updates keep holdout and eval identical.

use std::path::{Path, PathBuf};

use medforge_curate::runner::run;
use medforge_curate::CurateConfig;
use medforge_data::config::{InputConfig, OnError};
use medforge_data::ingest::{read_all, RejectLog};
use medforge_data::{Record, Verdict};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn config(out: &Path, seed: u64) -> String {
    let f = |p: &str| root().join("fixtures").join(p).display().to_string();
    format!(
        r#"
[run]
output = "{out}"
seed = {seed}
on_error = "skip"

[[inputs]]
path = "{medqa}"
preset = "medqa"
[[inputs]]
path = "{kor}"
preset = "kormedmcqa"
[[inputs]]
path = "{huatuo}"
preset = "huatuogpt-o1"
[[inputs]]
path = "{mmlu}"
preset = "mmlu-medical"

[[stages]]
stage = "quality"
[[stages]]
stage = "normalize"
[[stages]]
stage = "dedup"
[[stages]]
stage = "decontam"
[[stages.benchmarks]]
name = "medqa_test"
path = "{bench}"
preset = "medqa"
[[stages]]
stage = "tokens"
tokenizer = "{tok}"
[[stages]]
stage = "language"
[[stages]]
stage = "labels"
taxonomy = "{tax}"
[[stages]]
stage = "sample"
target = 24
[[stages]]
stage = "split"
holdout_per_specialty = 2
train_fraction = 0.5
[[stages]]
stage = "format"
template = "llama3"
reasoning_markers = "reasoning"

[output]
formats = ["parquet", "jsonl"]
"#,
        out = out.display(),
        medqa = f("medqa/dev_4opt.jsonl"),
        kor = f("kormedmcqa/doctor"),
        huatuo = f("huatuogpt_o1/demo_data.json"),
        mmlu = f("mmlu_medical"),
        // The 5-option dev file holds the same first ten questions as the 4-option one: a planted overlap.
        bench = f("medqa/dev_5opt.jsonl"),
        tok = f("tokenizers/all-MiniLM-L6-v2/tokenizer.json"),
        tax = f("specialty_taxonomy/med_division.json"),
    )
}

fn read(path: &Path) -> Vec<Record> {
    let input = InputConfig::for_path(path, Some("medforge")).resolve().unwrap();
    let dir = tempfile::tempdir().unwrap();
    read_all(&input, OnError::Fail, &mut RejectLog::new(dir.path().join("r"))).unwrap().0
}

fn run_with(out: &Path, seed: u64) -> PathBuf {
    let cfg = CurateConfig::parse(&config(out, seed)).unwrap();
    run(&cfg, Path::new("test.toml"), None, &|_, _, _| {}).unwrap().dir
}

#[test]
fn full_pipeline_on_fixtures() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_with(tmp.path(), 42);

    let filtered = read(&dir.join("filtered.parquet"));
    let curated = read(&dir.join("curated.parquet"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let ingested: u64 = manifest["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with("ingest:"))
        .map(|s| s["rows_out"].as_u64().unwrap())
        .sum();
    assert_eq!(filtered.len() as u64, ingested, "every input row is in filtered.parquet");
    for r in &filtered {
        let dropped: Vec<_> = r.annotations.iter().filter(|a| a.verdict == Verdict::Dropped).collect();
        assert!(dropped.len() <= 1, "a row is dropped once: {}", r.id);
        if let Some(d) = dropped.first() {
            let reason = d.reason.as_deref().unwrap();
            assert!(reason.starts_with(&format!("{}.", d.stage)), "{reason}");
        }
    }
    let kept_ids: Vec<&str> = filtered.iter().filter(|r| r.is_kept()).map(|r| r.id.as_str()).collect();
    assert_eq!(kept_ids, curated.iter().map(|r| r.id.as_str()).collect::<Vec<_>>());

    // Decontamination: exactly the ten shared MedQA questions, each naming its benchmark item.
    let decontam: Vec<&str> = filtered
        .iter()
        .flat_map(|r| &r.annotations)
        .filter(|a| a.stage == "decontam" && a.verdict == Verdict::Dropped)
        .map(|a| a.reason.as_deref().unwrap())
        .collect();
    assert_eq!(decontam.len(), 10, "{decontam:?}");
    assert!(decontam.iter().all(|r| r.starts_with("decontam.") && r.contains(":medqa_test#")));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("decontamination_report.json")).unwrap()).unwrap();
    assert_eq!(report["matches"].as_array().unwrap().len(), 10);
    assert!(!report["matches"][0]["span"].as_str().unwrap().is_empty());

    // Sampling, labels, splits and formats.
    assert_eq!(curated.len(), 24);
    assert!(curated.iter().all(|r| r.division.is_some() && r.metadata.contains_key("split")));
    assert!(curated.iter().all(|r| r.annotations.iter().any(|a| a.scores.iter().any(|s| s.name == "tokens.question"))));
    for f in [
        "splits/train.jsonl",
        "splits/holdout.jsonl",
        "splits/dataset_stats.json",
        "formatted/train.jsonl",
        "formatted/train_dataset/state.json",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let v = medforge_curate::verify::verify(&dir.join("formatted"));
    assert!(v.is_ok(), "{v:?}");
    assert!(v.rows >= 24);

    // Same seed: byte-identical outputs. Another seed: another sample.
    let again = run_with(tmp.path(), 42);
    let other = run_with(tmp.path(), 7);
    for f in ["filtered.parquet", "curated.parquet", "curated.jsonl", "formatted/train.jsonl", "splits/train.jsonl"] {
        assert_eq!(std::fs::read(dir.join(f)).unwrap(), std::fs::read(again.join(f)).unwrap(), "{f}");
    }
    assert_ne!(std::fs::read(dir.join("curated.jsonl")).unwrap(), std::fs::read(other.join("curated.jsonl")).unwrap());
}

/// The demo config runs `split` then `format`: `formatted/train*` must hold train rows only, and each other split's
/// rows go to that split's own files.
#[test]
fn formatting_follows_the_splits_on_the_demo_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = CurateConfig::load(&root.join("examples/curate_demo.toml")).unwrap();
    cfg.run.output = tmp.path().to_path_buf();
    let dir = run(&cfg, &root.join("examples/curate_demo.toml"), None, &|_, _, _| {}).unwrap().dir;
    // `<output>/latest` names the newest complete run (what `[train] data = ".../latest/formatted"` reads); a
    // second run moves it.
    assert_eq!(std::fs::canonicalize(tmp.path().join("latest")).unwrap(), std::fs::canonicalize(&dir).unwrap());
    let second = run(&cfg, &root.join("examples/curate_demo.toml"), None, &|_, _, _| {}).unwrap().dir;
    assert_ne!(second, dir);
    assert_eq!(std::fs::canonicalize(tmp.path().join("latest")).unwrap(), std::fs::canonicalize(&second).unwrap());
    let split_of: std::collections::HashMap<String, String> = read(&dir.join("curated.parquet"))
        .into_iter()
        .map(|r| (r.id.clone(), r.metadata["split"].as_str().unwrap().to_string()))
        .collect();
    let mut seen = std::collections::BTreeMap::new();
    for split in ["train", "eval", "holdout", "pool"] {
        let rows = medforge_data::formatted::read_jsonl(&dir.join(format!("formatted/{split}.jsonl"))).unwrap();
        for r in &rows {
            assert_eq!(
                split_of[&r.id], split,
                "row {} of split {} is in formatted/{split}.jsonl",
                r.id, split_of[&r.id]
            );
        }
        seen.insert(split, rows.len());
    }
    assert!(seen["train"] > 0 && seen["holdout"] > 0 && seen["pool"] > 0, "{seen:?}");
    // The HF folders hold the same rows as the JSONL files.
    for (split, folder) in [("train", "train_dataset"), ("holdout", "holdout_dataset")] {
        let file = std::fs::File::open(dir.join(format!("formatted/{folder}/data-00000-of-00001.arrow"))).unwrap();
        let n: usize =
            arrow_ipc::reader::StreamReader::try_new(file, None).unwrap().map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(n, seen[split], "{folder}");
    }
    let v = medforge_curate::verify::verify(&dir.join("formatted"));
    assert!(v.is_ok(), "{v}");
    assert_eq!(v.splits.values().sum::<u64>(), v.rows);
}

#[test]
fn one_stage_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = CurateConfig::parse(&config(tmp.path(), 1)).unwrap();
    let out = run(&cfg, Path::new("t.toml"), Some("dedup"), &|_, _, _| {}).unwrap();
    let steps: Vec<&str> =
        out.manifest.steps.iter().map(|s| s.name.as_str()).filter(|n| !n.starts_with("ingest")).collect();
    assert_eq!(steps, ["dedup"]);
    let err = run(&cfg, Path::new("t.toml"), Some("dedupe"), &|_, _, _| {}).unwrap_err().to_string();
    assert!(err.contains("dedupe") && err.contains("dedup"), "{err}");
}

#[test]
fn config_errors_name_the_stage_key() {
    let bad = config(Path::new("/tmp/x"), 1).replace("target = 24", "taget = 24");
    let err = CurateConfig::parse(&bad).unwrap_err().to_string();
    assert!(err.contains("taget"), "{err}");
    let bad = config(Path::new("/tmp/x"), 1).replace("stage = \"sample\"", "stage = \"sampel\"");
    let err = CurateConfig::parse(&bad).unwrap_err().to_string();
    assert!(err.contains("sampel") && err.contains("did you mean `sample`?"), "{err}");
}

#[test]
fn split_update_keeps_holdout_and_eval_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_with(tmp.path(), 42);
    let splits = dir.join("splits");
    let before: Vec<Vec<u8>> =
        ["holdout.jsonl", "eval.jsonl", "train.jsonl"].iter().map(|f| std::fs::read(splits.join(f)).unwrap()).collect();
    let plan = medforge_curate::split::SplitPlan::load(&splits.join("split_plan.json")).unwrap();
    assert!(!plan.pool.is_empty(), "the fixture run leaves rows in the pool");
    let recs = tmp.path().join("training_recommendations.json");
    std::fs::write(
        &recs,
        r#"{"low_performing_specialties": [{"specialty": "doctor", "accuracy": 0.3, "recommended_increase": 1.0},
                                            {"specialty": "UNKNOWN", "accuracy": 0.3, "recommended_increase": 1.0}],
            "recommended_actions": {}}"#,
    )
    .unwrap();
    let records: Vec<Record> =
        medforge_curate::split::SPLIT_FILES.iter().flat_map(|(_, f, _)| read(&splits.join(f))).collect();
    let r = medforge_data::recommendations::Recommendations::load(&recs).unwrap();
    let new_plan = medforge_curate::split::update(&plan, &records, &r).unwrap();
    medforge_curate::split::write_splits(&splits, &new_plan, &records).unwrap();
    assert_eq!(std::fs::read(splits.join("holdout.jsonl")).unwrap(), before[0]);
    assert_eq!(std::fs::read(splits.join("eval.jsonl")).unwrap(), before[1]);
    assert!(new_plan.train.len() > plan.train.len(), "rows moved from the pool into train");
    assert_ne!(std::fs::read(splits.join("train.jsonl")).unwrap(), before[2]);
}
