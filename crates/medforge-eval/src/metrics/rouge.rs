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
use super::intern::{Interner, K};

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

/// Words by id (per thread), each with its stem's id once looked up.
#[derive(Default)]
struct Words {
    ids: Interner,
    stem: Vec<u32>,
    buf: Vec<u8>,
}

const NONE: u32 = u32::MAX;

impl Words {
    #[inline]
    fn id(&mut self, w: &[u8]) -> u32 {
        let id = self.ids.id(w);
        if id as usize == self.stem.len() {
            self.stem.push(NONE);
        }
        id
    }

    /// The id of the token `w` (lowercase), stemmed when `stem` says so.
    #[inline]
    fn token(&mut self, w: &[u8], stem: bool) -> u32 {
        let id = self.id(w);
        if !stem {
            return id;
        }
        let s = self.stem[id as usize];
        if s != NONE {
            return s;
        }
        let st = porter::stem(std::str::from_utf8(w).expect("token from str"));
        let s = self.id(st.as_bytes());
        self.stem[id as usize] = s;
        s
    }
}

/// Reused per-call buffers.
#[derive(Default)]
struct Scratch {
    words: Words,
    /// Token ids of target and prediction, and where their lines end.
    t: Vec<u32>,
    p: Vec<u32>,
    t_lines: Vec<usize>,
    p_lines: Vec<usize>,
    /// n-gram counts: keys (0 = empty) and counts.
    keys: Vec<u64>,
    counts: Vec<i64>,
    /// Per word id, remaining token counts of target and prediction (0 between uses).
    cr: Vec<i64>,
    cc: Vec<i64>,
    lcs: Vec<u32>,
    idx: Vec<usize>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Appends the token ids of one line (no `\n` in it) to `out`.
fn line_ids(cfg: &RougeConfig, line: &str, words: &mut Words, out: &mut Vec<u32>) {
    if cfg.tokenizer == RougeTokenizer::Reference && line.is_ascii() {
        // Bytes: lowercase, cut at everything but [a-z0-9].
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if !b[i].is_ascii_alphanumeric() {
                i += 1;
                continue;
            }
            let st = i;
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let w = &b[st..i];
            let stem = cfg.stemmer && w.len() > 3;
            if w.iter().any(|c| c.is_ascii_uppercase()) {
                let mut buf = std::mem::take(&mut words.buf);
                buf.clear();
                buf.extend(w.iter().map(|c| c.to_ascii_lowercase()));
                out.push(words.token(&buf, stem));
                words.buf = buf;
            } else {
                out.push(words.token(w, stem));
            }
        }
        return;
    }
    for t in tokenize(&RougeConfig { stemmer: false, ..*cfg }, line) {
        let stem = cfg.stemmer && t.chars().count() > 3 && t.is_ascii();
        out.push(words.token(t.as_bytes(), stem));
    }
}

/// Tokens of `text`'s non-empty lines, in order, and the end of each line in `out`.
fn text_ids(cfg: &RougeConfig, text: &str, words: &mut Words, out: &mut Vec<u32>, lines: &mut Vec<usize>) {
    out.clear();
    lines.clear();
    for line in text.split('\n').filter(|x| !x.is_empty()) {
        line_ids(cfg, line, words, out);
        lines.push(out.len());
    }
}

/// `sum over n-grams of min(count in t, count in p)` for n = 1 or 2 (ids + 1 in 32-bit lanes).
fn overlap(t: &[u32], p: &[u32], n: usize, keys: &mut Vec<u64>, counts: &mut Vec<i64>) -> i64 {
    if t.len() < n || p.len() < n {
        return 0;
    }
    let size = (2 * t.len()).next_power_of_two().max(16);
    if keys.len() < size {
        keys.resize(size, 0);
        counts.resize(size, 0);
    }
    let (keys, counts) = (&mut keys[..size], &mut counts[..size]);
    let shift = 64 - size.trailing_zeros();
    let key = |w: &[u32]| w.iter().fold(0u64, |k, &id| (k << 32) | (id as u64 + 1));
    let slot = |k: u64| (k.wrapping_mul(K) >> shift) as usize;
    for w in t.windows(n) {
        let k = key(w);
        let mut s = slot(k);
        while keys[s] != 0 && keys[s] != k {
            s = (s + 1) & (size - 1);
        }
        if keys[s] == 0 {
            keys[s] = k;
            counts[s] = 0;
        }
        counts[s] += 1;
    }
    let mut inter = 0;
    for w in p.windows(n) {
        let k = key(w);
        let mut s = slot(k);
        while keys[s] != 0 && keys[s] != k {
            s = (s + 1) & (size - 1);
        }
        if keys[s] == k && counts[s] > 0 {
            counts[s] -= 1;
            inter += 1;
        }
    }
    keys.fill(0);
    inter
}

fn ngram_prf(t: &[u32], p: &[u32], n: usize, keys: &mut Vec<u64>, counts: &mut Vec<i64>) -> PRF {
    let inter = overlap(t, p, n, keys, counts);
    let tn = t.len().saturating_sub(n - 1) as i64;
    let pn = p.len().saturating_sub(n - 1) as i64;
    PRF::new(inter as f64 / pn.max(1) as f64, inter as f64 / tn.max(1) as f64)
}

fn lcs_len(a: &[u32], b: &[u32], rows: &mut Vec<u32>) -> usize {
    rows.clear();
    rows.resize(2 * (b.len() + 1), 0);
    let (mut prev, mut cur) = rows.split_at_mut(b.len() + 1);
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { prev[j + 1].max(cur[j]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()] as usize
}

/// Indices into `r` of rouge-score's backtracked LCS of `r` and `c` (`lcs_ind`).
fn lcs_ind(r: &[u32], c: &[u32], t: &mut Vec<u32>, out: &mut Vec<usize>) {
    let cols = c.len() + 1;
    t.clear();
    t.resize((r.len() + 1) * cols, 0);
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

/// The lines of `toks` that end at `ends`.
fn lines<'a>(toks: &'a [u32], ends: &'a [usize]) -> impl Iterator<Item = &'a [u32]> + Clone + 'a {
    ends.iter().scan(0, move |st, &e| {
        let l = &toks[*st..e];
        *st = e;
        Some(l)
    })
}

fn summary_lcs(sc: &mut Scratch) -> PRF {
    let Scratch { words, t, p, t_lines, p_lines, cr, cc, lcs, idx, .. } = sc;
    if t_lines.is_empty() || p_lines.is_empty() {
        return PRF::default();
    }
    let (m, n) = (t.len(), p.len());
    if m == 0 || n == 0 {
        return PRF::default();
    }
    if cr.len() < words.stem.len() {
        cr.resize(words.stem.len(), 0);
        cc.resize(words.stem.len(), 0);
    }
    for &x in t.iter() {
        cr[x as usize] += 1;
    }
    for &x in p.iter() {
        cc[x as usize] += 1;
    }
    let mut hits = 0usize;
    for r in lines(t, t_lines) {
        idx.clear();
        for c in lines(p, p_lines) {
            lcs_ind(r, c, lcs, idx);
        }
        // A closure keeps this sort's instantiation in this crate (see bleu::sorted_keys).
        #[allow(clippy::unnecessary_sort_by)]
        idx.sort_unstable_by(|a, b| a.cmp(b));
        idx.dedup();
        for &i in idx.iter() {
            let w = r[i] as usize;
            if cc[w] > 0 && cr[w] > 0 {
                hits += 1;
                cc[w] -= 1;
                cr[w] -= 1;
            }
        }
    }
    for &x in t.iter().chain(p.iter()) {
        cr[x as usize] = 0;
        cc[x as usize] = 0;
    }
    PRF::new(hits as f64 / n as f64, hits as f64 / m as f64)
}

/// ROUGE-1, -2, -L and -Lsum of `prediction` against `target` (rouge-score's `score(target, prediction)`).
pub fn rouge(cfg: &RougeConfig, target: &str, prediction: &str) -> RougeScores {
    SCRATCH.with(|sc| {
        let sc = &mut *sc.borrow_mut();
        // The word memo starts over past 2^20 words (between calls: ids are used within one call;
        // `cr`/`cc` are all zero between calls).
        if sc.words.stem.len() > 1 << 20 {
            sc.words.ids.clear();
            sc.words.stem.clear();
        }
        // Lines are split on "\n", which both tokenizers treat as a separator, so the whole text's
        // tokens are the lines' tokens in order: tokenize once per line.
        text_ids(cfg, target, &mut sc.words, &mut sc.t, &mut sc.t_lines);
        text_ids(cfg, prediction, &mut sc.words, &mut sc.p, &mut sc.p_lines);
        let (t, p) = (&sc.t, &sc.p);
        let rouge_l = if t.is_empty() || p.is_empty() {
            PRF::default()
        } else {
            let l = lcs_len(t, p, &mut sc.lcs) as f64;
            PRF::new(l / p.len() as f64, l / t.len() as f64)
        };
        let rouge1 = ngram_prf(t, p, 1, &mut sc.keys, &mut sc.counts);
        let rouge2 = ngram_prf(t, p, 2, &mut sc.keys, &mut sc.counts);
        RougeScores { rouge1, rouge2, rouge_l, rouge_lsum: summary_lcs(sc) }
    })
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

    #[test]
    fn token_ids_are_the_tokenizer_s_tokens() {
        let texts = [
            "The quick brown fox jumps over the lazy dogs; running, runner, ran.",
            "HYPERTENSION-related CARDIOMYOPATHY (3.5mg/dL) x1000 a-b",
            "Ünïcödé café naïve \u{212a}elvin İstanbul 고혈압 환자에게 이뇨제를",
            "",
            "   ",
            "sky skies dying generously happy analogous",
        ];
        for tokenizer in [RougeTokenizer::Reference, RougeTokenizer::Unicode] {
            for stemmer in [false, true] {
                let cfg = RougeConfig { stemmer, tokenizer };
                let mut words = Words::default();
                for text in texts {
                    let mut ids = Vec::new();
                    line_ids(&cfg, text, &mut words, &mut ids);
                    let got: Vec<String> = ids
                        .iter()
                        .map(|&id| {
                            let mut b = Vec::new();
                            words.ids.bytes_into(id, &mut b);
                            String::from_utf8(b).expect("utf8")
                        })
                        .collect();
                    assert_eq!(got, tokenize(&cfg, text), "{cfg:?} {text:?}");
                }
            }
        }
    }

    #[test]
    fn lsum_over_lines() {
        let c = RougeConfig::default();
        let s = rouge(&c, "a b c\nd e", "a b\n\nx d e");
        // LCS unions per target line: {a, b} and {d, e}: 4 hits of 5 target and 5 prediction tokens.
        assert!((s.rouge_lsum.recall - 0.8).abs() < 1e-12 && (s.rouge_lsum.precision - 0.8).abs() < 1e-12, "{s:?}");
        assert_eq!(rouge(&c, "", "a").rouge_lsum, PRF::default());
    }
}
