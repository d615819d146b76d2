//! Decontamination catches benchmark rows planted in a training set, lightly edited or not, and leaves
//! clean rows alone. The full check runs on the team's shared data when it sits beside the repo; a
//! fixture-sized version runs everywhere.

use std::path::PathBuf;

use medforge_curate::stages::decontam::{load_benchmark, Benchmark, Decontam, DecontamConfig};
use medforge_data::config::{InputConfig, OnError};
use medforge_data::ingest::{read_all, RejectLog};
use medforge_data::Record;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(path: PathBuf, preset: &str) -> Vec<Record> {
    let input = InputConfig::for_path(path, Some(preset)).resolve().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    read_all(&input, OnError::Fail, &mut RejectLog::new(tmp.path().join("r"))).unwrap().0
}

/// Light edits a copier might make: change a word, change punctuation and case, append a sentence,
/// collapse the vignette's spacing.
fn edit(q: &str, k: usize) -> String {
    match k % 4 {
        0 => q.replacen(" the ", " a ", 1),
        1 => q.replace(',', ";").to_uppercase(),
        2 => format!("{q} Please answer briefly."),
        _ => q.split_whitespace().collect::<Vec<_>>().join("  "),
    }
}

fn plant(train: &mut Vec<Record>, bench: &[Record], every: usize) -> Vec<String> {
    let mut planted = Vec::new();
    for (k, b) in bench.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let mut r = b.clone();
        r.id = format!("planted-{k}");
        if k % 2 == 1 {
            r.question = edit(&r.question, k / 2);
        }
        planted.push(r.id.clone());
        train.push(r);
    }
    planted
}

fn check(stage: &Decontam, train: &[Record], planted: &[String]) -> (f64, f64, usize) {
    let (decisions, _) = stage.check(train);
    let mut caught = 0;
    let mut false_drops = 0;
    for (r, d) in train.iter().zip(&decisions) {
        let is_planted = planted.contains(&r.id);
        if is_planted && !d.keep {
            caught += 1;
        }
        if !is_planted && !d.keep {
            false_drops += 1;
        }
    }
    let clean = train.len() - planted.len();
    (caught as f64 / planted.len() as f64, false_drops as f64 / clean as f64, false_drops)
}

#[test]
fn planted_fixture_rows_are_caught() {
    let bench = load(root().join("fixtures/medqa/dev_5opt.jsonl"), "medqa");
    let mut train = load(root().join("fixtures/medmcqa/medagents/medmcqa_test.jsonl"), "medmcqa-medagents");
    train.extend(load(root().join("fixtures/kormedmcqa/doctor/train.csv"), "kormedmcqa"));
    let planted = plant(&mut train, &bench, 1);
    let items: Vec<(String, String)> =
        bench.iter().enumerate().map(|(i, r)| (format!("medqa_test#{i}"), r.question.clone())).collect();
    let stage = Decontam::with_items(DecontamConfig::default(), &items);
    let (recall, false_rate, _) = check(&stage, &train, &planted);
    assert_eq!(recall, 1.0);
    assert_eq!(false_rate, 0.0);
    let (decisions, report) = stage.check(&train);
    let dropped = decisions.iter().find(|d| !d.keep).unwrap();
    assert!(dropped.reason.as_deref().unwrap().starts_with("decontam."), "{:?}", dropped.reason);
    assert!(report[0]["span"].as_str().unwrap().len() > 20, "the report shows the overlapping span");
}

#[test]
fn planted_medqa_test_rows_in_shared_data() {
    let Some(data) = medforge_testkit::shared(".") else { return };
    let cfg = DecontamConfig { data_root: Some(data.clone()), ..Default::default() };
    let mut stage = Decontam::new(cfg.clone()).unwrap();
    // Clean training data: MedQA dev, KorMedMCQA doctor train, HuatuoGPT demo.
    let mut train = load(data.join("medqa/US/4_options/dev.jsonl"), "medqa");
    train.extend(load(data.join("kormedmcqa/doctor/train.csv"), "kormedmcqa"));
    train.extend(load(data.join("huatuogpt_o1/demo_data.json"), "huatuogpt-o1"));
    let bench_spec = Benchmark {
        name: "medqa_test".into(),
        path: data.join("medqa/US/4_options/test.jsonl"),
        preset: Some("medqa".into()),
        file_filter: None,
        keys_from: None,
    };
    assert_eq!(load_benchmark(&bench_spec, &cfg.fields).unwrap().len(), 1019);
    let bench = load(data.join("medqa/US/4_options/test.jsonl"), "medqa");
    let planted = plant(&mut train, &bench, 4);
    let items = stage.index_items().unwrap();
    assert!(items > 1019);
    let (recall, false_rate, false_drops) = check(&stage, &train, &planted);
    eprintln!(
        "planted {}: caught {:.2}%; clean rows dropped {false_drops} ({:.3}%)",
        planted.len(),
        recall * 100.0,
        false_rate * 100.0
    );
    assert!(recall >= 0.99, "caught {recall}");
    assert!(false_rate < 0.005, "clean rows dropped: {false_rate}");
}
