//! Writers: every format round-trips the canonical record, annotations included, and writes atomically.

use std::path::Path;

use medforge_data::config::{InputConfig, OnError};
use medforge_data::ingest::{read_all, RejectLog};
use medforge_data::write::{self, OutputFormat};
use medforge_data::{Annotation, McqOption, Record, RecordKind, Score, Verdict};

fn sample() -> Vec<Record> {
    let mut a = Record::new("q1", "test", RecordKind::Mcq, "Which vitamin deficiency causes scurvy?");
    a.options = vec![
        McqOption { letter: "A".into(), text: "Vitamin A".into() },
        McqOption { letter: "B".into(), text: "Vitamin C".into() },
    ];
    a.answer_letter = Some("B".into());
    a.answer = Some("Vitamin C".into());
    a.specialty = Some("nutrition".into());
    a.specialties = vec!["nutrition".into(), "internal_medicine".into()];
    a.language = Some("en".into());
    a.metadata.insert("year".into(), serde_json::json!(2021));
    a.metadata.insert("tags".into(), serde_json::json!(["a", "b"]));
    a.annotations = vec![
        Annotation { stage: "quality".into(), verdict: Verdict::Kept, reason: None, scores: vec![] },
        Annotation {
            stage: "dedup".into(),
            verdict: Verdict::Dropped,
            reason: Some("dedup.near:cluster=17".into()),
            scores: vec![Score { name: "jaccard".into(), value: 0.93 }],
        },
    ];
    let mut b = Record::new("q2", "test", RecordKind::Preference, "복통이 있어요. 어떻게 해야 하나요?");
    b.chosen = Some("병원에 가 보세요.".into());
    b.rejected = Some("모르겠어요.".into());
    b.language = Some("ko".into());
    let mut c = Record::new("q3", "test", RecordKind::OpenQa, "What is (are) asthma ?");
    c.reasoning = Some("<think>airways</think>".into());
    c.division = Some("4.2".into());
    c.divisions = vec!["4.2".into()];
    vec![a, b, c]
}

fn read_back(path: &Path) -> Vec<Record> {
    let dir = tempfile::tempdir().unwrap();
    let input = InputConfig::for_path(path, Some("medforge")).resolve().unwrap();
    read_all(&input, OnError::Fail, &mut RejectLog::new(dir.path().join("r.jsonl"))).unwrap().0
}

#[test]
fn every_format_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample();
    for (name, fmt) in
        [("out.jsonl", OutputFormat::Jsonl), ("out.parquet", OutputFormat::Parquet), ("out_hf", OutputFormat::Hf)]
    {
        let path = dir.path().join(name);
        assert_eq!(write::write_all(&path, fmt, &records).unwrap(), 3);
        assert_eq!(read_back(&path), records, "{name}");
        // medforge's own outputs are recognised without naming a preset.
        assert_eq!(medforge_data::preset::detect(&path).map(|p| p.name.as_str()), Some("medforge"), "{name}");
    }
}

#[test]
fn large_batches_stream_through_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = Vec::new();
    for i in 0..20_000 {
        let mut r = sample()[0].clone();
        r.id = format!("q{i}");
        records.push(r);
    }
    let path = dir.path().join("big.parquet");
    write::write_all(&path, OutputFormat::Parquet, &records).unwrap();
    let back = read_back(&path);
    assert_eq!(back.len(), 20_000);
    assert_eq!(back[19_999].id, "q19999");
}

#[test]
fn unfinished_writers_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    for (name, fmt) in
        [("a.jsonl", OutputFormat::Jsonl), ("a.parquet", OutputFormat::Parquet), ("a_hf", OutputFormat::Hf)]
    {
        let path = dir.path().join(name);
        let mut w = write::create(&path, fmt).unwrap();
        w.write(&sample()).unwrap();
        drop(w); // a crash or an error before finish()
        assert!(!path.exists(), "{name} must not appear unfinished");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "temporary files are cleaned up: {left:?}");
}

#[test]
fn rewriting_replaces_the_old_output_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ds_hf");
    write::write_all(&path, OutputFormat::Hf, &sample()).unwrap();
    write::write_all(&path, OutputFormat::Hf, &sample()[..1]).unwrap();
    assert_eq!(read_back(&path).len(), 1);
    let json = dir.path().join("x.jsonl");
    write::write_all(&json, OutputFormat::Jsonl, &sample()).unwrap();
    write::write_all(&json, OutputFormat::Jsonl, &sample()[..2]).unwrap();
    assert_eq!(read_back(&json).len(), 2);
}

#[test]
fn jsonl_keys_follow_the_canonical_column_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.jsonl");
    write::write_all(&path, OutputFormat::Jsonl, &sample()).unwrap();
    let line = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, Record::FIELDS);
}

#[cfg(unix)]
#[test]
fn outputs_are_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for (name, fmt) in [("p.jsonl", OutputFormat::Jsonl), ("p.parquet", OutputFormat::Parquet)] {
        let path = dir.path().join(name);
        write::write_all(&path, fmt, &sample()).unwrap();
        assert_eq!(mode(&path), 0o644, "{name}");
    }
    let hf = dir.path().join("p_hf");
    write::write_all(&hf, OutputFormat::Hf, &sample()).unwrap();
    assert_eq!(mode(&hf), 0o755);
    assert_eq!(mode(&hf.join("state.json")), 0o644);
}
