//! Bad input is named, never read as something else: through `medforge convert --preset medqa`, a question
//! that is a JSON number is `ingest.wrong_type`, and a multiple-choice row with no answer is
//! `ingest.missing_field`. Both follow `--on-error`, and a mapping can opt out of the answer check.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medforge")).args(args).output().expect("medforge runs")
}

const GOOD: &str = r#"{"question": "Which drug lowers glucose?", "answer": "Insulin", "options": {"A": "Aspirin", "B": "Insulin", "C": "Heparin", "D": "Warfarin"}, "meta_info": "step1", "answer_idx": "B"}"#;
const NUMBER: &str = r#"{"question": 12345, "answer": "Insulin", "options": {"A": "Aspirin", "B": "Insulin", "C": "Heparin", "D": "Warfarin"}, "meta_info": "step1", "answer_idx": "B"}"#;
const NO_ANSWER: &str = r#"{"question": "Which drug thins blood?", "answer": null, "options": {"A": "Aspirin", "B": "Insulin", "C": "Heparin", "D": "Warfarin"}, "meta_info": "step1", "answer_idx": null}"#;

fn write_input(dir: &std::path::Path, lines: &[&str]) -> std::path::PathBuf {
    let p = dir.join("medqa_bad.jsonl");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

fn rejects(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("reject line is JSON"))
        .collect()
}

#[test]
fn a_number_where_text_is_expected_is_wrong_type() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write_input(tmp.path(), &[GOOD, NUMBER]);
    let out = tmp.path().join("out.jsonl");
    let o = run(&["convert", input.to_str().unwrap(), out.to_str().unwrap(), "--preset", "medqa"]);
    assert!(!o.status.success(), "a numeric question must fail the default on_error = fail");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ingest.wrong_type"), "{err}");
    assert!(
        err.contains("medqa_bad.jsonl:2") && err.contains("field `question`"),
        "the error names line and field: {err}"
    );
    assert!(!out.exists(), "nothing half-written");

    let o =
        run(&["convert", input.to_str().unwrap(), out.to_str().unwrap(), "--preset", "medqa", "--on-error", "skip"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 1, "only the good row is kept");
    let rej = rejects(&tmp.path().join("out.jsonl.rejects.jsonl"));
    assert_eq!(rej.len(), 1);
    assert_eq!(rej[0]["code"], "ingest.wrong_type", "{:?}", rej[0]);
}

#[test]
fn a_benchmark_row_without_an_answer_is_missing_field_unless_the_mapping_opts_out() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write_input(tmp.path(), &[GOOD, NO_ANSWER]);
    let out = tmp.path().join("out.jsonl");
    let o = run(&["convert", input.to_str().unwrap(), out.to_str().unwrap(), "--preset", "medqa"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ingest.missing_field") && err.contains("answer_idx"), "{err}");

    let o =
        run(&["convert", input.to_str().unwrap(), out.to_str().unwrap(), "--preset", "medqa", "--on-error", "skip"]);
    assert!(o.status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 1);
    let rej = rejects(&tmp.path().join("out.jsonl.rejects.jsonl"));
    assert_eq!(rej.len(), 1);
    assert_eq!(rej[0]["code"], "ingest.missing_field");

    // An unlabelled pool: the mapping opts out, and the row is read without an answer.
    let cfg = tmp.path().join("pool.toml");
    std::fs::write(
        &cfg,
        format!(
            "[run]\noutput = \"{}\"\n[[inputs]]\npath = \"{}\"\npreset = \"medqa\"\n[inputs.fields]\nrequire_answer = false\n[output]\nformats = [\"jsonl\"]\n",
            tmp.path().join("runs").display(),
            input.display()
        ),
    )
    .unwrap();
    let o = run(&["run", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run_dir = std::fs::read_dir(tmp.path().join("runs")).unwrap().next().unwrap().unwrap().path();
    let text = std::fs::read_to_string(run_dir.join("curated.jsonl"))
        .or_else(|_| std::fs::read_to_string(run_dir.join("records.jsonl")))
        .unwrap_or_else(|_| panic!("no records file in {}", run_dir.display()));
    let rows: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert!(rows[1]["answer_letter"].is_null());
}
