//! Times medforge's metrics on a pairs.jsonl (from tests/parity/reference_metrics.py) with exactly the
//! passes the Python reference script times, and prints the seconds per library group as JSON.
//! Used by bench/metrics_bench.sh. Single-threaded unless RAYON_NUM_THREADS says otherwise.
//! For profiling, `BENCH_ONLY=sacrebleu,squad` runs only those groups (the others report 0).
use std::time::Instant;

use medforge_eval::metrics::bleu::{corpus_bleu, sentence_bleu, BleuConfig, BleuTokenizer};
use medforge_eval::metrics::meteor::Meteor;
use medforge_eval::metrics::rouge::{rouge, RougeConfig};
use medforge_eval::metrics::squad::{exact_match, squad_scores, token_f1};

fn main() {
    let path = std::env::args().nth(1).expect("usage: metrics_bench PAIRS.jsonl");
    let pairs: Vec<(String, String)> = std::fs::read_to_string(&path)
        .expect("read pairs")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            (v["ref"].as_str().unwrap_or("").to_string(), v["hyp"].as_str().unwrap_or("").to_string())
        })
        .collect();
    let refs: Vec<Vec<&str>> = pairs.iter().map(|p| vec![p.0.as_str()]).collect();
    let hyps: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
    let mut sink = 0.0f64;
    let only = std::env::var("BENCH_ONLY").ok().filter(|o| !o.is_empty());
    let run = |group: &str| only.as_deref().is_none_or(|o| o.split(',').any(|g| g == group));
    let (run_bleu, run_rouge, run_meteor, run_squad) =
        (run("sacrebleu"), run("rouge_score"), run("nltk_meteor"), run("squad"));

    let t0 = Instant::now();
    for tok in [BleuTokenizer::Tok13a, BleuTokenizer::Intl, BleuTokenizer::Char].into_iter().filter(|_| run_bleu) {
        sink += corpus_bleu(&BleuConfig::default().with_tokenizer(tok), &hyps, &refs).score;
        let sc = BleuConfig::sentence().with_tokenizer(tok);
        for p in &pairs {
            sink += sentence_bleu(&sc, &p.1, &[&p.0]).score;
        }
        if std::env::var_os("BENCH_DETAIL").is_some() {
            eprintln!("{}: {:.3}s", tok.name(), t0.elapsed().as_secs_f64());
        }
    }
    for n in (1..=4).filter(|_| run_bleu) {
        sink += corpus_bleu(&BleuConfig::default().with_max_order(n), &hyps, &refs).score;
        let sc = BleuConfig::sentence().with_max_order(n);
        for p in &pairs {
            sink += sentence_bleu(&sc, &p.1, &[&p.0]).score;
        }
    }
    let bleu = t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    for stem in [false, true].into_iter().filter(|_| run_rouge) {
        let cfg = RougeConfig { stemmer: stem, ..Default::default() };
        for p in &pairs {
            sink += rouge(&cfg, &p.0, &p.1).rouge_lsum.fmeasure;
        }
    }
    let rouge_s = t0.elapsed().as_secs_f64();

    // The Python side builds its WordNet reader before its timer starts; so does this.
    let t0 = Instant::now();
    let m = Meteor::find(None);
    let wordnet_load = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    for p in pairs.iter().take(if run_meteor { pairs.len() } else { 0 }) {
        sink += m.score(&[&p.0], &p.1);
    }
    let meteor = t0.elapsed().as_secs_f64();

    // Both scores as `medforge score --metrics em,f1` computes them (one normalisation of each
    // string), and as two separate calls (two normalisations each, like the script).
    let t0 = Instant::now();
    for p in pairs.iter().take(if run_squad { pairs.len() } else { 0 }) {
        let s = squad_scores(&p.1, &p.0);
        sink += s.exact_match + s.f1;
    }
    let squad = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    for p in pairs.iter().take(if run_squad { pairs.len() } else { 0 }) {
        sink += exact_match(&p.1, &p.0) + token_f1(&p.1, &p.0);
    }
    let squad_separate = t0.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"sacrebleu": bleu, "rouge_score": rouge_s, "nltk_meteor": meteor, "squad": squad, "squad_separate": squad_separate, "wordnet_load": wordnet_load, "pairs": pairs.len(), "checksum": sink})
    );
}
