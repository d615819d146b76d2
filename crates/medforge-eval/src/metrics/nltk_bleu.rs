//! nltk's sentence BLEU (`nltk.translate.bleu_score.sentence_bleu`, nltk 3.10), the score the Meerkat pipeline's
//! evaluation reports as BLEU-1..4: a 0–1 value over token lists, with one of nltk's `SmoothingFunction` methods.
//! sacrebleu's BLEU ([`super::bleu`]) is a different metric (0–100, its own tokenizers, effective order); the two are
//! not interchangeable, so both are offered and named.
//!
//! BLEU-n here is nltk's cumulative score with uniform weights `(1/n, …, 1/n)`, the usual reading of "BLEU-1..4" in
//! scripts built on nltk. Modified precisions are kept as unreduced fractions, as nltk keeps them, because the
//! smoothing methods read their numerators and denominators.
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::pysplit::py_split;

/// nltk's `SmoothingFunction` methods 0–4 (with its defaults `epsilon = 0.1`, `k = 5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Smoothing {
    /// No smoothing: a zero precision becomes the smallest positive float (so the score is ~0).
    Method0,
    /// A zero numerator becomes `epsilon` (0.1): the common choice in evaluation scripts.
    #[default]
    Method1,
    /// Add one to numerator and denominator of every order above 1 (Lin and Och 2004).
    Method2,
    /// Zero precisions become `1 / (2^k * denominator)` for the k-th zero (NIST geometric sequence).
    Method3,
    /// Method 3 scaled by the hypothesis length: `1 / (2^k * 5 / ln(len))`.
    Method4,
}

impl Smoothing {
    pub fn parse(s: &str) -> Option<Smoothing> {
        Some(match s.trim().to_ascii_lowercase().trim_start_matches("method") {
            "0" | "none" => Smoothing::Method0,
            "1" => Smoothing::Method1,
            "2" => Smoothing::Method2,
            "3" => Smoothing::Method3,
            "4" => Smoothing::Method4,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Smoothing::Method0 => "method0",
            Smoothing::Method1 => "method1",
            Smoothing::Method2 => "method2",
            Smoothing::Method3 => "method3",
            Smoothing::Method4 => "method4",
        }
    }
}

/// An unreduced fraction, as nltk's `Fraction(_normalize=False)`.
#[derive(Debug, Clone, Copy)]
struct Frac {
    num: u64,
    den: u64,
}

/// `modified_precision(references, hypothesis, n)`: clipped n-gram matches over hypothesis n-grams (at least 1).
fn modified_precision(refs: &[Vec<&str>], hyp: &[&str], n: usize) -> Frac {
    if hyp.len() < n {
        return Frac { num: 0, den: 1 };
    }
    let mut counts: HashMap<&[&str], u64> = HashMap::new();
    for g in hyp.windows(n) {
        *counts.entry(g).or_default() += 1;
    }
    let mut max_ref: HashMap<&[&str], u64> = HashMap::new();
    for r in refs {
        if r.len() < n {
            continue;
        }
        let mut rc: HashMap<&[&str], u64> = HashMap::new();
        for g in r.windows(n) {
            if counts.contains_key(g) {
                *rc.entry(g).or_default() += 1;
            }
        }
        for (g, c) in rc {
            let e = max_ref.entry(g).or_default();
            *e = (*e).max(c);
        }
    }
    let num = counts.iter().map(|(g, &c)| c.min(max_ref.get(g).copied().unwrap_or(0))).sum();
    let den = counts.values().sum::<u64>().max(1);
    Frac { num, den }
}

/// nltk's `sentence_bleu(references, hypothesis, weights, smoothing_function)` on token lists.
pub fn sentence_bleu_tokens(refs: &[Vec<&str>], hyp: &[&str], weights: &[f64], smoothing: Smoothing) -> f64 {
    let max_n = weights.len();
    if max_n == 0 || refs.is_empty() {
        return 0.0;
    }
    let p: Vec<Frac> = (1..=max_n).map(|n| modified_precision(refs, hyp, n)).collect();
    let hyp_len = hyp.len();
    // closest_ref_length: the nearest length, the shorter on ties.
    let ref_len = refs.iter().map(Vec::len).min_by_key(|&l| (l.abs_diff(hyp_len), l)).unwrap_or(0);
    let bp = if hyp_len > ref_len {
        1.0
    } else if hyp_len == 0 {
        0.0
    } else {
        (1.0 - ref_len as f64 / hyp_len as f64).exp()
    };
    if p[0].num == 0 {
        return 0.0;
    }
    let ratio = |f: Frac| f.num as f64 / f.den as f64;
    // The smoothed precisions; `None` is nltk's zero that the `p_i > 0` filter leaves out of the sum.
    let smoothed: Vec<Option<f64>> = match smoothing {
        Smoothing::Method0 => p.iter().map(|f| Some(if f.num != 0 { ratio(*f) } else { f64::MIN_POSITIVE })).collect(),
        Smoothing::Method1 => p.iter().map(|f| Some(if f.num == 0 { 0.1 / f.den as f64 } else { ratio(*f) })).collect(),
        Smoothing::Method2 => p
            .iter()
            .enumerate()
            .map(|(i, f)| Some(if i == 0 { ratio(*f) } else { (f.num + 1) as f64 / (f.den + 1) as f64 }))
            .collect(),
        Smoothing::Method3 | Smoothing::Method4 => {
            let mut k = 1i32;
            p.iter()
                .map(|f| {
                    if f.num != 0 {
                        return Some(ratio(*f));
                    }
                    match smoothing {
                        Smoothing::Method3 => {
                            let v = 1.0 / (2f64.powi(k) * f.den as f64);
                            k += 1;
                            Some(v)
                        }
                        _ if hyp_len > 1 => {
                            let numerator = 1.0 / (2f64.powi(k) * 5.0 / (hyp_len as f64).ln());
                            k += 1;
                            Some(numerator / f.den as f64)
                        }
                        _ => None,
                    }
                })
                .collect()
        }
    };
    let terms: Vec<f64> =
        weights.iter().zip(&smoothed).filter_map(|(w, p)| p.filter(|&x| x > 0.0).map(|x| w * x.ln())).collect();
    bp * fsum(&terms).exp()
}

/// Python's `math.fsum` for a handful of terms: Neumaier's compensated sum (exact to the last bit here).
fn fsum(xs: &[f64]) -> f64 {
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for &x in xs {
        let t = s + x;
        c += if s.abs() >= x.abs() { (s - t) + x } else { (x - t) + s };
        s = t;
    }
    s + c
}

/// BLEU-1..4 of one pair with nltk's cumulative uniform weights, tokens from Python's `str.split()` (lowercased
/// first when `lowercase`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NltkBleu {
    pub bleu1: f64,
    pub bleu2: f64,
    pub bleu3: f64,
    pub bleu4: f64,
}

/// BLEU-1..4 of `hyp` against `reference` (one reference, as the Meerkat pipeline scores).
pub fn nltk_bleu(reference: &str, hyp: &str, smoothing: Smoothing, lowercase: bool) -> NltkBleu {
    let (r, h) =
        if lowercase { (reference.to_lowercase(), hyp.to_lowercase()) } else { (reference.into(), hyp.into()) };
    let refs = vec![py_split(&r).collect::<Vec<_>>()];
    let toks: Vec<&str> = py_split(&h).collect();
    let b = |n: usize| sentence_bleu_tokens(&refs, &toks, &vec![1.0 / n as f64; n], smoothing);
    NltkBleu { bleu1: b(1), bleu2: b(2), bleu3: b(3), bleu4: b(4) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    /// nltk's own doctest figures (bleu_score.py).
    #[test]
    fn nltk_doctests() {
        let hyp1 =
            toks("It is a guide to action which ensures that the military always obeys the commands of the party");
        let r1a = toks("It is a guide to action that ensures that the military will forever heed Party commands");
        let r1b = toks(
            "It is the guiding principle which guarantees the military forces always being under the command of the Party",
        );
        let r1c = toks("It is the practical guide for the army always to heed the directions of the party");
        let refs = vec![r1a, r1b, r1c];
        let w = [0.25; 4];
        let s = sentence_bleu_tokens(&refs, &hyp1, &w, Smoothing::Method0);
        assert!((s - 0.5045666840058485).abs() < 1e-12, "{s}");
        let hyp2 = toks("he read the book because he was interested in world history");
        let r2a = toks("he was interested in world history because he read the book");
        let s2 = sentence_bleu_tokens(&[r2a], &hyp2, &w, Smoothing::Method0);
        assert!(((s + s2) / 2.0 - 0.6223).abs() < 1e-4, "{}", (s + s2) / 2.0);
        // No unigram in common: 0 whatever the smoothing.
        assert_eq!(sentence_bleu_tokens(&[toks("a b c")], &toks("x y z"), &w, Smoothing::Method1), 0.0);
    }

    #[test]
    fn smoothing_lifts_missing_orders() {
        let refs = vec![toks("the patient has chest pain")];
        let hyp = toks("chest pain in the patient");
        let w = [0.25; 4];
        let m0 = sentence_bleu_tokens(&refs, &hyp, &w, Smoothing::Method0);
        let m1 = sentence_bleu_tokens(&refs, &hyp, &w, Smoothing::Method1);
        assert!(m0 < 1e-50, "no 3-gram match: method0 is ~0 ({m0})");
        // p = 4/5 ("in" is not in the reference), 2/4, 0.1/3, 0.1/2; bp = 1.
        let want = (0.25f64 * (0.8f64.ln() + 0.5f64.ln() + (0.1f64 / 3.0).ln() + 0.05f64.ln())).exp();
        assert!((m1 - want).abs() < 1e-15, "{m1} vs {want}");
        let b = nltk_bleu("The patient has chest pain", "the patient has chest pain", Smoothing::Method1, true);
        assert_eq!((b.bleu1, b.bleu4), (1.0, 1.0));
        assert_eq!(Smoothing::parse("method4"), Some(Smoothing::Method4));
        assert_eq!(Smoothing::parse("7"), None);
    }
}
