//! ROUGE-1/2/L/Lsum exactly as Google's `rouge-score` package computes them (`RougeScorer` with
//! `split_summaries=False`), with or without its Porter stemmer (nltk's, see [`super::porter`]).
//!
//! **Tokenizers.** [`RougeTokenizer::Reference`] is rouge-score's: lowercase, every character other
//! than `[a-z0-9]` becomes a space, and words longer than 3 characters are stemmed when the stemmer is
//! on. Text in other scripts therefore has no tokens at all: Korean reference/hypothesis pairs score
//! 0 however close they are. [`RougeTokenizer::Unicode`] is medforge's option for such text: it keeps
//! every Unicode letter and digit (so Hangul words are tokens), splits on everything else, and stems
//! only ASCII words. Its scores are *not* comparable with rouge-score's, by design; on ASCII-only text
//! the two tokenizers give the same tokens.
use super::bleu::FxMap;

use serde::Serialize;

use super::porter;

/// Which tokenizer ROUGE uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum RougeTokenizer {
    /// rouge-score's `[a-z0-9]+` tokenizer (the reference; non-Latin text scores 0).
    #[default]
    Reference,
    /// Unicode letters and digits (Korean and other scripts keep their words).
    Unicode,
}

/// ROUGE settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct RougeConfig {
    pub stemmer: bool,
    pub tokenizer: RougeTokenizer,
}

/// Precision, recall and F-measure of one ROUGE type (rouge-score's `Score`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct PRF {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

impl PRF {
    fn new(precision: f64, recall: f64) -> Self {
        let fmeasure = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
        PRF { precision, recall, fmeasure }
    }
}

/// The four ROUGE scores of one target/prediction pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct RougeScores {
    pub rouge1: PRF,
    pub rouge2: PRF,
    #[serde(rename = "rougeL")]
    pub rouge_l: PRF,
    #[serde(rename = "rougeLsum")]
    pub rouge_lsum: PRF,
}

thread_local! {
    static STEMS: std::cell::RefCell<FxMap<String, String>> = std::cell::RefCell::new(FxMap::default());
}

/// [`porter::stem`] with a per-thread cache (stemming dominates ROUGE's cost otherwise).
pub fn stem_cached(w: &str) -> String {
    STEMS.with(|m| {
        let mut m = m.borrow_mut();
        if let Some(s) = m.get(w) {
            return s.clone();
        }
        let s = porter::stem(w);
        if m.len() > 1_000_000 {
            m.clear();
        }
        m.insert(w.to_string(), s.clone());
        s
    })
}

/// Tokens of one text, as the configured tokenizer produces them.
pub fn tokenize(cfg: &RougeConfig, text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let keep: fn(char) -> bool = match cfg.tokenizer {
        RougeTokenizer::Reference => |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        RougeTokenizer::Unicode => |c| c.is_alphanumeric(),
    };
    lower
        .split(|c: char| !keep(c))
        .filter(|t| !t.is_empty())
        .map(|t| {
            // rouge-score stems words of more than 3 characters; the Porter stemmer only knows
            // English, so the Unicode tokenizer leaves non-ASCII words alone.
            if cfg.stemmer && t.chars().count() > 3 && t.is_ascii() {
                stem_cached(t)
            } else {
                t.to_string()
            }
        })
        // rouge-score's final `^[a-z0-9]+$` check (stems of [a-z0-9] words stay in it).
        .filter(|t| !t.is_empty())
        .collect()
}

struct Ids<'a>(FxMap<&'a str, u32>);
impl<'a> Ids<'a> {
    fn of(&mut self, toks: &'a [String]) -> Vec<u32> {
        toks.iter()
            .map(|t| {
                let n = self.0.len() as u32;
                *self.0.entry(t.as_str()).or_insert(n)
            })
            .collect()
    }
}

fn ngram_prf(t: &[u32], p: &[u32], n: usize) -> PRF {
    fn count(x: &[u32], n: usize) -> FxMap<u64, i64> {
        let mut m: FxMap<u64, i64> = FxMap::default();
        if x.len() >= n {
            for w in x.windows(n) {
                let k = w.iter().fold(0u64, |k, &id| (k << 32) | (id as u64 + 1));
                *m.entry(k).or_insert(0) += 1;
            }
        }
        m
    }
    let tc = count(t, n);
    let pc = count(p, n);
    let mut inter = 0i64;
    for (g, c) in &tc {
        inter += (*c).min(*pc.get(g).unwrap_or(&0));
    }
    let tn = t.len().saturating_sub(n - 1) as i64;
    let pn = p.len().saturating_sub(n - 1) as i64;
    PRF::new(inter as f64 / pn.max(1) as f64, inter as f64 / tn.max(1) as f64)
}

fn lcs_len(a: &[u32], b: &[u32]) -> usize {
    let mut prev = vec![0u32; b.len() + 1];
    let mut cur = vec![0u32; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { prev[j + 1].max(cur[j]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()] as usize
}

/// Indices into `r` of rouge-score's backtracked LCS of `r` and `c` (`lcs_ind`).
fn lcs_ind(r: &[u32], c: &[u32], out: &mut Vec<usize>) {
    let cols = c.len() + 1;
    let mut t = vec![0u32; (r.len() + 1) * cols];
    for i in 1..=r.len() {
        for j in 1..=c.len() {
            t[i * cols + j] = if r[i - 1] == c[j - 1] {
                t[(i - 1) * cols + j - 1] + 1
            } else {
                t[(i - 1) * cols + j].max(t[i * cols + j - 1])
            };
        }
    }
    let (mut i, mut j) = (r.len(), c.len());
    while i > 0 && j > 0 {
        if r[i - 1] == c[j - 1] {
            out.push(i - 1);
            i -= 1;
            j -= 1;
        } else if t[i * cols + j - 1] > t[(i - 1) * cols + j] {
            j -= 1;
        } else {
            i -= 1;
        }
    }
}

fn summary_lcs(refs: &[Vec<u32>], cans: &[Vec<u32>]) -> PRF {
    if refs.is_empty() || cans.is_empty() {
        return PRF::default();
    }
    let m: usize = refs.iter().map(Vec::len).sum();
    let n: usize = cans.iter().map(Vec::len).sum();
    if m == 0 || n == 0 {
        return PRF::default();
    }
    let mut cr: FxMap<u32, i64> = FxMap::default();
    let mut cc: FxMap<u32, i64> = FxMap::default();
    for s in refs {
        for t in s {
            *cr.entry(*t).or_insert(0) += 1;
        }
    }
    for s in cans {
        for t in s {
            *cc.entry(*t).or_insert(0) += 1;
        }
    }
    let mut hits = 0usize;
    let mut idx = Vec::new();
    for r in refs {
        idx.clear();
        for c in cans {
            lcs_ind(r, c, &mut idx);
        }
        // A closure keeps this sort's instantiation in this crate (see bleu::sorted_keys).
        #[allow(clippy::unnecessary_sort_by)]
        idx.sort_unstable_by(|a, b| a.cmp(b));
        idx.dedup();
        for &i in &idx {
            let t = r[i];
            let (a, b) = (cc.get(&t).copied().unwrap_or(0), cr.get(&t).copied().unwrap_or(0));
            if a > 0 && b > 0 {
                hits += 1;
                *cc.get_mut(&t).expect("present") -= 1;
                *cr.get_mut(&t).expect("present") -= 1;
            }
        }
    }
    PRF::new(hits as f64 / n as f64, hits as f64 / m as f64)
}

/// ROUGE-1, -2, -L and -Lsum of `prediction` against `target` (rouge-score's `score(target, prediction)`).
pub fn rouge(cfg: &RougeConfig, target: &str, prediction: &str) -> RougeScores {
    // Lines are split on "\n", which both tokenizers treat as a separator, so the whole text's
    // tokens are the lines' tokens in order: tokenize once per line.
    let sents =
        |s: &str| -> Vec<Vec<String>> { s.split('\n').filter(|x| !x.is_empty()).map(|x| tokenize(cfg, x)).collect() };
    let ts = sents(target);
    let ps = sents(prediction);
    let mut ids = Ids(FxMap::default());
    let tsi: Vec<Vec<u32>> = ts.iter().map(|s| ids.of(s)).collect();
    let psi: Vec<Vec<u32>> = ps.iter().map(|s| ids.of(s)).collect();
    let t: Vec<u32> = tsi.concat();
    let p: Vec<u32> = psi.concat();
    let rouge_l = if t.is_empty() || p.is_empty() {
        PRF::default()
    } else {
        let l = lcs_len(&t, &p) as f64;
        PRF::new(l / p.len() as f64, l / t.len() as f64)
    };
    RougeScores {
        rouge1: ngram_prf(&t, &p, 1),
        rouge2: ngram_prf(&t, &p, 2),
        rouge_l,
        rouge_lsum: summary_lcs(&tsi, &psi),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn korean_scores_zero_with_reference_tokenizer_only() {
        let r = "고혈압 환자에게 이뇨제를 투여한다";
        let refc = RougeConfig::default();
        assert_eq!(rouge(&refc, r, r).rouge1.fmeasure, 0.0);
        let uni = RougeConfig { tokenizer: RougeTokenizer::Unicode, ..Default::default() };
        assert_eq!(rouge(&uni, r, r).rouge1.fmeasure, 1.0);
    }

    #[test]
    fn simple() {
        let c = RougeConfig { stemmer: true, ..Default::default() };
        let s = rouge(&c, "The quick brown fox jumps", "the quick fox jumped");
        assert!((s.rouge1.fmeasure - 2.0 * 0.8 / 1.8).abs() < 1e-12, "{s:?}");
    }
}
