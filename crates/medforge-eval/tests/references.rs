//! medforge-eval against independent tools, through fixtures they produced (regenerate with the scripts beside them
//! in tests/fixtures/; CI needs neither nltk nor torch):
//! - WordNet synonyms, the set METEOR's synonym stage matches on, against nltk 3.10.4's `synsets`/`lemma_names` on
//!   45 words (inflections, exception lists, multi-word lemmas, capitals, words with no synsets);
//! - BERTScore P/R/F1 with all-MiniLM-L6-v2 (layer 6) against bert-score 0.3.13 on 50 pairs.

use std::collections::BTreeSet;
use std::path::Path;

use medforge_eval::bertscore::BertScorer;
use medforge_eval::metrics::wordnet::WordNet;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

#[test]
fn wordnet_synonyms_match_nltk() {
    let Some(dir) = medforge_testkit::wordnet() else { return };
    let wn = WordNet::open(&dir).unwrap();
    let reference = fixture("wordnet_synonyms.json");
    let mut bad = Vec::new();
    let words = reference["words"].as_object().unwrap();
    for (word, want) in words {
        let want: BTreeSet<String> = want.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        let got: BTreeSet<String> = wn.synonyms(word).iter().cloned().collect();
        if got != want {
            let missing: Vec<_> = want.difference(&got).collect();
            let extra: Vec<_> = got.difference(&want).collect();
            bad.push(format!("{word}: missing {missing:?}, extra {extra:?}"));
        }
    }
    assert!(bad.is_empty(), "{} of {} words differ from nltk:\n{}", bad.len(), words.len(), bad.join("\n"));
}

/// bert-score at batch size 1 (no padding, so its result is the definition); float32 on both sides.
const BERTSCORE_TOL: f64 = 1e-5;

#[test]
fn bertscore_matches_bert_score_with_minilm() {
    let Some(model) = medforge_testkit::minilm() else { return };
    let reference = fixture("bertscore_minilm.json");
    let layers = reference["num_layers"].as_u64().unwrap() as usize;
    let scorer = BertScorer::load(&model, Some(layers)).unwrap();
    let pairs = reference["pairs"].as_array().unwrap();
    let refs: Vec<&str> = pairs.iter().map(|p| p["ref"].as_str().unwrap()).collect();
    let hyps: Vec<&str> = pairs.iter().map(|p| p["hyp"].as_str().unwrap()).collect();
    let got = scorer.score(&refs, &hyps, false).unwrap();
    let mut worst = 0.0f64;
    for (i, (p, g)) in pairs.iter().zip(&got).enumerate() {
        for (name, ours) in [("p", g.p), ("r", g.r), ("f", g.f)] {
            let want = p[name].as_f64().unwrap();
            let d = (ours - want).abs();
            worst = worst.max(d);
            assert!(d < BERTSCORE_TOL, "pair {i} ({}): {name} {ours} vs bert-score {want}", p["kind"]);
        }
    }
    eprintln!("{} pairs: largest difference from bert-score {worst:.2e}", pairs.len());
}
