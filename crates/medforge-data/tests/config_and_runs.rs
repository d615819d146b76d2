//! Config errors name the key and suggest fixes; runs write a manifest with hashes, counts and no secrets.

use std::path::PathBuf;

use medforge_data::config::{InputConfig, OnError, PipelineConfig};
use medforge_data::manifest::{hash_input, Manifest};
use medforge_data::pipeline::run_ingest;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(rel)
}

#[test]
fn typo_in_a_key_names_the_line_and_suggests_the_key() {
    let err = PipelineConfig::<medforge_data::config::Unsupported>::parse(
        "[run]\nseed = 1\n\n[[inputs]]\npath = \"x.jsonl\"\nfromat = \"jsonl\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("line 6"), "{err}");
    assert!(err.contains("unknown field `fromat`"), "{err}");
    assert!(err.contains("did you mean `format`?"), "{err}");
}

#[test]
fn bad_enum_value_lists_the_valid_ones() {
    let err = PipelineConfig::<medforge_data::config::Unsupported>::parse(
        "[run]\non_error = \"skipp\"\n[[inputs]]\npath = \"x.jsonl\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`fail`") && err.contains("`skip`"), "{err}");
    assert!(err.contains("did you mean `skip`?"), "{err}");
    let err =
        PipelineConfig::<medforge_data::config::Unsupported>::parse("[[inputs]]\npath = \"x\"\nformat = \"jsnol\"\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("did you mean `jsonl`?"), "{err}");
}

#[test]
fn unknown_preset_and_bad_mapping_are_config_errors() {
    let err =
        PipelineConfig::<medforge_data::config::Unsupported>::parse("[[inputs]]\npath = \"x\"\npreset = \"medqaa\"\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("inputs[0]") && err.contains("did you mean `medqa`?"), "{err}");
    let err = PipelineConfig::<medforge_data::config::Unsupported>::parse(
        "[[inputs]]\npath = \"x\"\n[inputs.fields]\nquestoin = \"q\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("did you mean `question`?"), "{err}");
    let err = PipelineConfig::<medforge_data::config::Unsupported>::parse("").unwrap_err().to_string();
    assert!(err.contains("[[inputs]]"), "{err}");
}

#[test]
fn preset_keys_can_be_overridden_per_input() {
    let cfg: PipelineConfig = PipelineConfig::parse(
        "[[inputs]]\npath = \"x.csv\"\npreset = \"kormedmcqa\"\nsource = \"kmm\"\n[inputs.fields]\nspecialty = \"=doctor-exam\"\n",
    )
    .unwrap();
    let r = cfg.inputs[0].resolve().unwrap();
    assert_eq!(r.source, "kmm");
    assert_eq!(r.fields.specialty.unwrap().from, "=doctor-exam");
    assert_eq!(r.fields.option_columns.unwrap().len(), 5, "untouched preset keys stay");
}

#[test]
fn hashes_cover_folders_and_change_with_content() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.jsonl"), "{}\n").unwrap();
    let h1 = hash_input(dir.path()).unwrap();
    assert_eq!(h1.files, 1);
    std::fs::write(dir.path().join("a.jsonl"), "{ }\n").unwrap();
    let h2 = hash_input(dir.path()).unwrap();
    assert_ne!(h1.sha256, h2.sha256);
    let f = hash_input(&fixture("medqa/dev_4opt.jsonl")).unwrap();
    assert_eq!(f.sha256.len(), 64);
}

#[test]
fn a_run_writes_outputs_rejects_and_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    let good = std::fs::read_to_string(fixture("medqa/dev_4opt.jsonl")).unwrap();
    let mut lines: Vec<&str> = good.lines().take(5).collect();
    lines.insert(2, "{\"question\": \"broken\", \"options\": {\"A\": \"x\", \"B\": \"y\"}, \"answer_idx\": \"F\"}");
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    let cfg_path = dir.path().join("pipeline.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[run]\noutput = \"runs\"\nseed = 7\non_error = \"skip\"\n\n[[inputs]]\npath = {:?}\npreset = \"medqa\"\n\n[[inputs]]\npath = \"bad.jsonl\"\npreset = \"medqa\"\n",
            fixture("medqa/dev_4opt.jsonl").display().to_string()
        ),
    )
    .unwrap();
    let cfg: PipelineConfig = PipelineConfig::load(&cfg_path).unwrap();
    assert_eq!(cfg.run.on_error, OnError::Skip);
    let out = run_ingest(&cfg, &cfg_path, &|_, _| {}).unwrap();
    assert!(out.dir.starts_with(dir.path().join("runs")));
    let name = out.dir.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with(&format!("{}_", env!("CARGO_PKG_VERSION"))), "{name}");

    let m = Manifest::read(&out.dir).unwrap();
    assert_eq!(m.seed, 7);
    assert_eq!(m.inputs.len(), 2);
    assert!(m.inputs.iter().all(|i| i.sha256.len() == 64));
    assert_eq!(m.steps.len(), 2);
    assert_eq!((m.steps[0].rows_in, m.steps[0].rows_out), (20, 20));
    assert_eq!((m.steps[1].rows_in, m.steps[1].rows_out), (6, 5));
    assert_eq!(m.rejects.get("ingest.answer_not_in_options"), Some(&1));
    assert!(m.finished_at.is_some());
    assert_eq!(m.config["inputs"][1]["preset"], "medqa");
    assert!(m.outputs.iter().all(|o| o.rows == 25), "{:?}", m.outputs);
    for f in ["records.parquet", "records.jsonl", "records_hf/state.json", "rejects.jsonl"] {
        assert!(out.dir.join(f).exists(), "{f}");
    }
    let rejects = std::fs::read_to_string(out.dir.join("rejects.jsonl")).unwrap();
    let rej: serde_json::Value = serde_json::from_str(rejects.lines().next().unwrap()).unwrap();
    assert_eq!(rej["location"]["line"], 3);
    assert_eq!(rej["location"]["field"], "answer_letter");
}

#[test]
fn limit_reads_only_the_first_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = InputConfig::for_path(fixture("medqa/dev_4opt.jsonl"), Some("medqa"));
    cfg.limit = Some(3);
    let input = cfg.resolve().unwrap();
    let (recs, _) = medforge_data::ingest::read_all(
        &input,
        OnError::Fail,
        &mut medforge_data::ingest::RejectLog::new(dir.path().join("r")),
    )
    .unwrap();
    assert_eq!(recs.len(), 3);
}
