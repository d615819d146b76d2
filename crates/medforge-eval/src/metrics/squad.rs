//! Exact match and token F1 with the SQuAD v1.1 evaluation script's answer normalisation:
//! lowercase, drop ASCII punctuation (`string.punctuation`), drop the articles `a`/`an`/`the` as
//! whole words, collapse whitespace; F1 over the multiset of remaining whitespace tokens. Scores
//! are 0..1 (the script's per-item values); with several references the best counts.
use std::collections::HashMap;

use super::pysplit::py_split;

/// SQuAD's `normalize_answer`.
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punc: String = lower.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    // `\b(a|an|the)\b` → " ": a run of word characters (Python's `\w`: alphanumeric or `_`) that
    // is exactly an article.
    let mut no_art = String::with_capacity(no_punc.len());
    let mut run_start: Option<usize> = None;
    let is_w = |c: char| c.is_alphanumeric() || c == '_';
    let flush = |out: &mut String, run: &str| {
        if matches!(run, "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(run);
        }
    };
    for (i, c) in no_punc.char_indices() {
        if is_w(c) {
            run_start.get_or_insert(i);
        } else {
            if let Some(st) = run_start.take() {
                flush(&mut no_art, &no_punc[st..i]);
            }
            no_art.push(c);
        }
    }
    if let Some(st) = run_start {
        flush(&mut no_art, &no_punc[st..]);
    }
    py_split(&no_art).collect::<Vec<_>>().join(" ")
}

/// 1.0 when the normalised strings are equal.
pub fn exact_match(prediction: &str, reference: &str) -> f64 {
    if normalize_answer(prediction) == normalize_answer(reference) {
        1.0
    } else {
        0.0
    }
}

/// SQuAD's `f1_score`.
pub fn token_f1(prediction: &str, reference: &str) -> f64 {
    let p = normalize_answer(prediction);
    let r = normalize_answer(reference);
    let pt: Vec<&str> = py_split(&p).collect();
    let rt: Vec<&str> = py_split(&r).collect();
    let mut rc: HashMap<&str, i64> = HashMap::new();
    for t in &rt {
        *rc.entry(t).or_insert(0) += 1;
    }
    let mut same = 0i64;
    let mut pc: HashMap<&str, i64> = HashMap::new();
    for t in &pt {
        *pc.entry(t).or_insert(0) += 1;
    }
    for (t, c) in &pc {
        same += (*c).min(*rc.get(t).unwrap_or(&0));
    }
    if same == 0 {
        return 0.0;
    }
    let precision = 1.0 * same as f64 / pt.len() as f64;
    let recall = 1.0 * same as f64 / rt.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// Best exact match over several references.
pub fn exact_match_multi(prediction: &str, references: &[&str]) -> f64 {
    references.iter().map(|r| exact_match(prediction, r)).fold(0.0, f64::max)
}

/// Best token F1 over several references.
pub fn token_f1_multi(prediction: &str, references: &[&str]) -> f64 {
    references.iter().map(|r| token_f1(prediction, r)).fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn squad() {
        assert_eq!(normalize_answer("The  Cat, sat!"), "cat sat");
        assert_eq!(exact_match("the cat", "Cat"), 1.0);
        assert!((token_f1("a big cat", "the cat") - 2.0 / 3.0).abs() < 1e-12);
    }
}
