//! The extraction cascade on 200 tricky model outputs (reasoning blocks, Korean phrasing, "None of the
//! above", two letters, no letter): every expected label is recovered and every output a reader could
//! not label comes out as unparseable, with the reason the fixture gives.
use medforge_text::answer::{extract, Choice, Extraction};
use serde_json::Value;

#[test]
fn two_hundred_tricky_outputs() {
    let text = include_str!("fixtures/extraction_cases.jsonl");
    let mut failures = Vec::new();
    let (mut n, mut unparseable, mut expected_unparseable) = (0, 0, 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let c: Value = serde_json::from_str(line).expect("json");
        n += 1;
        let choices: Vec<Choice> = c["options"]
            .as_array()
            .expect("options")
            .iter()
            .enumerate()
            .map(|(i, t)| Choice { letter: (b'A' + i as u8) as char, text: t.as_str().expect("text").to_string() })
            .collect();
        let out = c["output"].as_str().expect("output");
        let got = extract(out, &choices);
        let want = c["expected"].as_str().and_then(|s| s.chars().next());
        if want.is_none() {
            expected_unparseable += 1;
        }
        if matches!(got, Extraction::Unparseable { .. }) {
            unparseable += 1;
        }
        let ok = match (want, got) {
            (Some(w), Extraction::Letter { letter, .. }) => w == letter,
            (None, Extraction::Unparseable { reason }) => {
                let want_reason = c["reason"].as_str().unwrap_or("");
                reason.code().trim_start_matches("extract.") == want_reason
            }
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "#{} [{}] {:?}: expected {:?} ({:?}), got {:?}",
                c["id"], c["category"], out, want, c["reason"], got
            ));
        }
    }
    assert_eq!(n, 200);
    for f in &failures {
        eprintln!("{f}");
    }
    assert!(failures.is_empty(), "{} of {n} outputs mis-extracted", failures.len());
    assert_eq!(unparseable, expected_unparseable);
    eprintln!("{n} outputs: {} labelled correctly, {unparseable} counted as unparseable", n - unparseable);
}
