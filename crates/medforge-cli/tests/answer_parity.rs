//! One answer parser, two call sites: the `difficulty` stage (curation: "the base model solved it") and
//! `medforge eval` ("the model got it right") read the same 200 tricky outputs to the same letter or the same
//! unparseable reason, and both agree with the hand labels.

use medforge_curate::stages::difficulty::read_base_answer;
use medforge_data::{McqOption, Record, RecordKind};
use medforge_eval::runner::{extract_answer, EvalItem};
use medforge_text::answer::Extraction;
use serde_json::Value;

#[test]
fn difficulty_and_eval_read_every_output_alike() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../medforge-text/tests/fixtures/extraction_cases.jsonl");
    let text = std::fs::read_to_string(&path).expect("the extraction fixture");
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let c: Value = serde_json::from_str(line).expect("json");
        let options: Vec<String> =
            c["options"].as_array().expect("options").iter().map(|t| t.as_str().expect("text").to_string()).collect();
        let letter = |i: usize| (b'A' + i as u8) as char;
        let mut record = Record::new(format!("case-{}", c["id"]), "fixture", RecordKind::Mcq, "question");
        record.options = options
            .iter()
            .enumerate()
            .map(|(i, t)| McqOption { letter: letter(i).to_string(), text: t.clone() })
            .collect();
        record.answer_letter = Some("A".into());
        let item = EvalItem {
            id: record.id.clone(),
            question: "question".into(),
            context: None,
            choices: options.iter().enumerate().map(|(i, t)| (letter(i), t.clone())).collect(),
            answer: 'A',
            subject: "fixture".into(),
            division: None,
        };
        let output = c["output"].as_str().expect("output");
        let curation = read_base_answer(output, &record);
        let evaluation = extract_answer(output, &item);
        assert_eq!(curation, evaluation, "case {}: {output:?}", c["id"]);
        match (c["expected"].as_str(), evaluation) {
            (Some(want), Extraction::Letter { letter, .. }) => assert_eq!(want, letter.to_string(), "case {}", c["id"]),
            (None, Extraction::Unparseable { .. }) => {}
            (want, got) => panic!("case {}: expected {want:?}, got {got:?}", c["id"]),
        }
        n += 1;
    }
    assert_eq!(n, 200);
}
