//! Parity with the Python reference implementations (sacrebleu, nltk sentence BLEU, rouge-score, nltk METEOR, SQuAD
//! EM/F1). `scripts/verify_metrics.sh` writes the pairs and the reference values into a folder and
//! runs this test with `MEDFORGE_PARITY_DIR` pointing at it; without that variable the test has
//! nothing to compare and passes after saying so.
use std::path::PathBuf;

use medforge_eval::metrics::bleu::{corpus_bleu, sentence_bleu, BleuConfig, BleuTokenizer};
use medforge_eval::metrics::meteor::Meteor;
use medforge_eval::metrics::nltk_bleu::{nltk_bleu, NltkBleu, Smoothing};
use medforge_eval::metrics::rouge::{rouge, RougeConfig};
use medforge_eval::metrics::squad::{exact_match, squad_scores, token_f1};
use medforge_eval::metrics::wordnet::WordNet;
use serde_json::Value;

const TOL: f64 = 1e-6;

struct Diffs {
    worst: Vec<(String, f64, String)>,
    compared: usize,
    bad: usize,
}

impl Diffs {
    fn check(&mut self, what: &str, i: usize, got: f64, want: f64, pair: &(String, String)) {
        self.compared += 1;
        let d = (got - want).abs();
        if d.is_nan() || d > TOL {
            self.bad += 1;
            if self.worst.len() < 20 {
                self.worst.push((
                    format!("{what} #{i}: medforge {got} vs reference {want}"),
                    d,
                    format!("ref={:?} hyp={:?}", pair.0, pair.1),
                ));
            }
        }
    }
}

fn arr(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

/// Needs the Python references' outputs, so `cargo test` lists it as ignored; scripts/verify_metrics.sh (part of
/// the test command) computes them and runs it with `--ignored`.
#[test]
#[ignore = "run by scripts/verify_metrics.sh, which computes the Python references first"]
fn parity_with_python_references() {
    let dir = std::env::var_os("MEDFORGE_PARITY_DIR")
        .map(PathBuf::from)
        .expect("MEDFORGE_PARITY_DIR: the folder scripts/verify_metrics.sh writes the reference values into");
    let pairs: Vec<(String, String)> = std::fs::read_to_string(dir.join("pairs.jsonl"))
        .expect("pairs.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            (v["ref"].as_str().expect("ref").to_string(), v["hyp"].as_str().expect("hyp").to_string())
        })
        .collect();
    let exp: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).expect("expected.json")).expect("json");
    let mut d = Diffs { worst: vec![], compared: 0, bad: 0 };
    let refs: Vec<Vec<&str>> = pairs.iter().map(|p| vec![p.0.as_str()]).collect();
    let hyps: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
    let none = (String::new(), String::new());

    for tok in ["13a", "intl", "char"] {
        let t = BleuTokenizer::parse(tok).expect("tok");
        let c = corpus_bleu(&BleuConfig::default().with_tokenizer(t), &hyps, &refs);
        let e = &exp["bleu_corpus"][tok];
        d.check(&format!("corpus bleu {tok}"), 0, c.score, e["score"].as_f64().expect("score"), &none);
        let counts: Vec<u64> =
            e["counts"].as_array().expect("counts").iter().map(|x| x.as_u64().expect("u64")).collect();
        assert_eq!(c.counts, counts, "corpus bleu {tok} counts");
        let sc = BleuConfig::sentence().with_tokenizer(t);
        for (i, want) in arr(&exp["bleu_sentence"][tok]).into_iter().enumerate() {
            let got = sentence_bleu(&sc, hyps[i], &[&pairs[i].0]).score;
            d.check(&format!("sentence bleu {tok}"), i, got, want, &pairs[i]);
        }
    }
    for n in 1..=4usize {
        let key = format!("bleu{n}");
        let c = corpus_bleu(&BleuConfig::default().with_max_order(n), &hyps, &refs);
        d.check(&format!("corpus {key}"), 0, c.score, exp["bleu_corpus"][&key]["score"].as_f64().expect("f"), &none);
        let sc = BleuConfig::sentence().with_max_order(n);
        for (i, want) in arr(&exp["bleu_sentence"][&key]).into_iter().enumerate() {
            d.check(&format!("sentence {key}"), i, sentence_bleu(&sc, hyps[i], &[&pairs[i].0]).score, want, &pairs[i]);
        }
    }

    // nltk sentence BLEU: method1 BLEU-1..4 on raw and lowercased tokens, methods 0/2/3/4 for BLEU-4.
    for (lower, tag) in [(false, "raw"), (true, "lower")] {
        let b: Vec<NltkBleu> = pairs.iter().map(|p| nltk_bleu(&p.0, &p.1, Smoothing::Method1, lower)).collect();
        for n in 1..=4usize {
            let key = format!("{tag}_method1_bleu{n}");
            for (i, want) in arr(&exp["nltk_bleu"][&key]).into_iter().enumerate() {
                let got = [b[i].bleu1, b[i].bleu2, b[i].bleu3, b[i].bleu4][n - 1];
                d.check(&format!("nltk {key}"), i, got, want, &pairs[i]);
            }
        }
    }
    for m in [0, 2, 3, 4] {
        let key = format!("raw_method{m}_bleu4");
        let sm = Smoothing::parse(&m.to_string()).expect("method");
        for (i, want) in arr(&exp["nltk_bleu"][&key]).into_iter().enumerate() {
            d.check(&format!("nltk {key}"), i, nltk_bleu(&pairs[i].0, &pairs[i].1, sm, false).bleu4, want, &pairs[i]);
        }
    }

    for (key, stem) in [("nostem", false), ("stem", true)] {
        let cfg = RougeConfig { stemmer: stem, ..Default::default() };
        let e = &exp["rouge"][key];
        for (i, p) in pairs.iter().enumerate() {
            let s = rouge(&cfg, &p.0, &p.1);
            for (t, prf) in
                [("rouge1", s.rouge1), ("rouge2", s.rouge2), ("rougeL", s.rouge_l), ("rougeLsum", s.rouge_lsum)]
            {
                let w = arr(&e[t][i]);
                d.check(&format!("{t} {key} P"), i, prf.precision, w[0], p);
                d.check(&format!("{t} {key} R"), i, prf.recall, w[1], p);
                d.check(&format!("{t} {key} F"), i, prf.fmeasure, w[2], p);
            }
        }
    }

    let with_wn = exp["meteor_wordnet"].as_bool().unwrap_or(false);
    let wn = if with_wn {
        Some(WordNet::find().expect("the reference used WordNet, so medforge must find it too"))
    } else {
        None
    };
    let m = Meteor::new(wn);
    for (i, want) in arr(&exp["meteor"]).into_iter().enumerate() {
        d.check("meteor", i, m.score(&[&pairs[i].0], &pairs[i].1), want, &pairs[i]);
    }
    for (i, want) in arr(&exp["em"]).into_iter().enumerate() {
        d.check("em", i, exact_match(&pairs[i].1, &pairs[i].0), want, &pairs[i]);
    }
    for (i, want) in arr(&exp["f1"]).into_iter().enumerate() {
        d.check("f1", i, token_f1(&pairs[i].1, &pairs[i].0), want, &pairs[i]);
    }
    // Both from one normalisation, as `medforge score` computes them.
    for (i, (em, f1)) in arr(&exp["em"]).into_iter().zip(arr(&exp["f1"])).enumerate() {
        let both = squad_scores(&pairs[i].1, &pairs[i].0);
        d.check("squad_scores em", i, both.exact_match, em, &pairs[i]);
        d.check("squad_scores f1", i, both.f1, f1, &pairs[i]);
    }

    eprintln!("parity: {} values compared over {} pairs (METEOR with WordNet: {with_wn})", d.compared, pairs.len());
    if !d.worst.is_empty() {
        for (w, diff, p) in &d.worst {
            eprintln!("MISMATCH {w} (|diff| {diff:e})\n    {p}");
        }
        panic!("{} of {} values differ from the references by more than {TOL}", d.bad, d.compared);
    }
}
