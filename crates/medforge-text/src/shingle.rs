//! Word tokens, word and character n-grams, and script detection.
//!
//! One tokeniser serves MinHash, n-gram decontamination, term coverage and [`match_key`], so every
//! stage agrees on what a word is: a maximal run of alphanumeric characters of any script
//! (Latin, Hangul, CJK, ...), lowercased after NFKC; an apostrophe inside a word is dropped.
//!
//! [`match_key`]: crate::normalize::match_key

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::normalize::{collapse_whitespace, nfkc};

/// A word token with its byte range in the text it was cut from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordSpan {
    pub start: usize,
    pub end: usize,
    /// The lowercased word, apostrophes removed.
    pub word: String,
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}')
}

/// Word tokens of `normalized` with their byte ranges in it.
///
/// The text should already be NFKC ([`nfkc`]); the ranges refer to the text as given, which is
/// what the decontamination index needs to quote the overlapping span.
pub fn word_spans(normalized: &str) -> Vec<WordSpan> {
    let mut spans = Vec::new();
    let mut chars = normalized.char_indices().peekable();
    let mut current: Option<WordSpan> = None;
    while let Some((i, c)) = chars.next() {
        if c.is_alphanumeric() {
            let span = current.get_or_insert_with(|| WordSpan { start: i, end: i, word: String::new() });
            if c.is_ascii() {
                span.word.push(c.to_ascii_lowercase());
            } else {
                span.word.extend(c.to_lowercase());
            }
            span.end = i + c.len_utf8();
        } else if is_apostrophe(c) && current.is_some() && chars.peek().is_some_and(|&(_, n)| n.is_alphanumeric()) {
            // "Crohn's" is one word: keep the token open and drop the apostrophe.
        } else if let Some(span) = current.take() {
            spans.push(span);
        }
    }
    spans.extend(current);
    spans
}

/// Lowercased word tokens of `text` (NFKC first).
pub fn words(text: &str) -> Vec<String> {
    word_spans(&nfkc(text)).into_iter().map(|s| s.word).collect()
}

/// Word n-grams, each the `n` words joined by one space.
///
/// A text with fewer than `n` (but at least one) words gives a single shingle of all its words, so
/// short texts still have a shingle set and an exact copy of one is still found. `n = 0` gives none.
pub fn word_ngrams(words: &[String], n: usize) -> Vec<String> {
    if n == 0 || words.is_empty() {
        return Vec::new();
    }
    if words.len() < n {
        return vec![words.join(" ")];
    }
    words.windows(n).map(|w| w.join(" ")).collect()
}

/// The text character n-grams are cut from: NFKC, lowercased, whitespace collapsed.
pub fn char_ngram_text(text: &str) -> String {
    collapse_whitespace(&nfkc(text).to_lowercase())
}

/// Byte offsets of every character boundary of `s`, the end included.
fn char_boundaries(s: &str) -> Vec<usize> {
    s.char_indices().map(|(i, _)| i).chain(std::iter::once(s.len())).collect()
}

/// Calls `f` on each character n-gram of `s` (already prepared by [`char_ngram_text`]), with the
/// same short-text rule as [`word_ngrams`].
fn for_each_char_ngram(s: &str, n: usize, mut f: impl FnMut(&str)) {
    if n == 0 || s.is_empty() {
        return;
    }
    let bounds = char_boundaries(s);
    let count = bounds.len() - 1;
    if count < n {
        f(s);
        return;
    }
    for i in 0..=count - n {
        f(&s[bounds[i]..bounds[i + n]]);
    }
}

/// Character n-grams of `text` after [`char_ngram_text`] (spaces included, as one space), with the
/// same short-text rule as [`word_ngrams`].
pub fn char_ngrams(text: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for_each_char_ngram(&char_ngram_text(text), n, |g| out.push(g.to_string()));
    out
}

/// How a text is cut into shingles for set similarity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shingle {
    /// Word n-grams ([`word_ngrams`]): robust to spacing and punctuation, the usual choice for
    /// English.
    Word(usize),
    /// Character n-grams ([`char_ngrams`]): works for text without reliable word breaks, such as
    /// Korean with inconsistent spacing.
    Char(usize),
}

impl Shingle {
    /// The n of the n-grams.
    pub fn n(self) -> usize {
        match self {
            Shingle::Word(n) | Shingle::Char(n) => n,
        }
    }

    /// The shingles of `text` as strings (for inspection and tests; hashing uses [`Self::hashes`]).
    pub fn shingles(self, text: &str) -> Vec<String> {
        match self {
            Shingle::Word(n) => word_ngrams(&words(text), n),
            Shingle::Char(n) => char_ngrams(text, n),
        }
    }

    /// The shingle set of `text` as sorted, distinct 64-bit xxh3 hashes of the shingle strings.
    ///
    /// Hashing without building each n-gram string keeps signatures cheap; 64 bits make
    /// collisions between distinct shingles negligible at dataset sizes.
    pub fn hashes(self, text: &str) -> Vec<u64> {
        let mut out = Vec::new();
        match self {
            Shingle::Word(n) => {
                let w = words(text);
                if n == 0 || w.is_empty() {
                    return out;
                }
                let n = n.min(w.len());
                let mut buf = String::new();
                for window in w.windows(n) {
                    buf.clear();
                    for (k, word) in window.iter().enumerate() {
                        if k > 0 {
                            buf.push(' ');
                        }
                        buf.push_str(word);
                    }
                    out.push(xxh3_64(buf.as_bytes()));
                }
            }
            Shingle::Char(n) => {
                for_each_char_ngram(&char_ngram_text(text), n, |g| out.push(xxh3_64(g.as_bytes())));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Whether `c` is Hangul: precomposed syllables (U+AC00–D7A3) or jamo (U+1100–11FF, compatibility
/// jamo U+3130–318F, extended-A U+A960–A97F, extended-B U+D7B0–D7FF, halfwidth U+FFA0–FFDC).
pub fn is_hangul(c: char) -> bool {
    matches!(c,
        '\u{AC00}'..='\u{D7A3}'
        | '\u{1100}'..='\u{11FF}'
        | '\u{3130}'..='\u{318F}'
        | '\u{A960}'..='\u{A97F}'
        | '\u{D7B0}'..='\u{D7FF}'
        | '\u{FFA0}'..='\u{FFDC}')
}

/// Share of Hangul among the letters of `text`: Hangul syllables and jamo ([`is_hangul`]) divided
/// by all alphabetic characters (`char::is_alphabetic`, any script). Digits, punctuation, symbols
/// and whitespace count in neither, so `"혈압 140/90 mmHg"` is 2 Hangul of 6 letters. A text
/// without letters has ratio 0.
///
/// Letters rather than characters are the base because Korean medical text is full of numbers,
/// units and English drug names, which should dilute the ratio only as much as the words they are.
pub fn hangul_ratio(text: &str) -> f64 {
    let (mut hangul, mut letters) = (0usize, 0usize);
    for c in text.chars() {
        if c.is_alphabetic() {
            letters += 1;
            if is_hangul(c) {
                hangul += 1;
            }
        }
    }
    if letters == 0 {
        0.0
    } else {
        hangul as f64 / letters as f64
    }
}

/// Minimum [`hangul_ratio`] for a text to count as Korean. Low on purpose: Korean exam questions
/// often carry long English terms (`"Staphylococcus aureus"` is 21 letters against a few Hangul
/// syllables), while non-Korean text has essentially no Hangul.
pub const KOREAN_MIN_HANGUL_RATIO: f64 = 0.3;

/// The dominant script of a text, as far as medforge needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Script {
    /// Hangul ratio at least [`KOREAN_MIN_HANGUL_RATIO`].
    Korean,
    /// Mostly Latin letters.
    Latin,
    /// Mostly Han characters or Japanese kana.
    Cjk,
    /// Mostly letters of another script.
    Other,
    /// No letters at all (empty, numbers or punctuation only).
    None,
}

impl Script {
    pub fn as_str(self) -> &'static str {
        match self {
            Script::Korean => "korean",
            Script::Latin => "latin",
            Script::Cjk => "cjk",
            Script::Other => "other",
            Script::None => "none",
        }
    }
}

fn is_latin(c: char) -> bool {
    c.is_ascii_alphabetic() || matches!(c, '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}' | '\u{FF21}'..='\u{FF5A}')
}

fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{4E00}'..='\u{9FFF}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{2FA1F}'
        | '\u{3040}'..='\u{30FF}')
}

/// Detects the [`Script`] of `text`: Korean when [`hangul_ratio`] ≥ [`KOREAN_MIN_HANGUL_RATIO`],
/// otherwise the most frequent of Latin / CJK / other letters (ties go to Latin, then CJK).
pub fn script(text: &str) -> Script {
    let (mut hangul, mut latin, mut cjk, mut other) = (0usize, 0usize, 0usize, 0usize);
    for c in text.chars().filter(|c| c.is_alphabetic()) {
        if is_hangul(c) {
            hangul += 1;
        } else if is_latin(c) {
            latin += 1;
        } else if is_cjk(c) {
            cjk += 1;
        } else {
            other += 1;
        }
    }
    let letters = hangul + latin + cjk + other;
    if letters == 0 {
        Script::None
    } else if hangul as f64 / letters as f64 >= KOREAN_MIN_HANGUL_RATIO {
        Script::Korean
    } else if latin >= cjk && latin >= other {
        Script::Latin
    } else if cjk >= other {
        Script::Cjk
    } else {
        Script::Other
    }
}

/// Whether `text` is Korean ([`hangul_ratio`] ≥ [`KOREAN_MIN_HANGUL_RATIO`]).
pub fn is_korean(text: &str) -> bool {
    hangul_ratio(text) >= KOREAN_MIN_HANGUL_RATIO
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_unicode_aware() {
        assert_eq!(words("What is (are) Glaucoma ?"), vec!["what", "is", "are", "glaucoma"]);
        assert_eq!(words("Crohn's disease, 45-year-old"), vec!["crohns", "disease", "45", "year", "old"]);
        assert_eq!(words("고혈압 환자의 BP는 140/90"), vec!["고혈압", "환자의", "bp는", "140", "90"]);
        assert_eq!(words("心肌梗死 患者"), vec!["心肌梗死", "患者"]);
        assert_eq!(words("ＡＢＣ～ｄｅｆ"), vec!["abc", "def"]);
        assert_eq!(words("'quoted' end'"), vec!["quoted", "end"]);
        assert!(words(" ,.; ").is_empty());
    }

    #[test]
    fn word_spans_point_into_the_text() {
        let text = "Él  dijo: «hola»";
        let spans = word_spans(text);
        let got: Vec<&str> = spans.iter().map(|s| &text[s.start..s.end]).collect();
        assert_eq!(got, vec!["Él", "dijo", "hola"]);
        assert_eq!(spans[0].word, "él");
    }

    #[test]
    fn word_ngrams_windows_and_short_texts() {
        let w = words("a b c d");
        assert_eq!(word_ngrams(&w, 2), vec!["a b", "b c", "c d"]);
        assert_eq!(word_ngrams(&w, 4), vec!["a b c d"]);
        assert_eq!(word_ngrams(&w, 9), vec!["a b c d"]);
        assert!(word_ngrams(&w, 0).is_empty());
        assert!(word_ngrams(&[], 3).is_empty());
    }

    #[test]
    fn char_ngrams_on_collapsed_lowercase() {
        assert_eq!(char_ngrams("Ab  C", 3), vec!["ab ", "b c"]);
        assert_eq!(char_ngrams("간염  B형", 3), vec!["간염 ", "염 b", " b형"]);
        assert_eq!(char_ngrams("ab", 5), vec!["ab"]);
        assert!(char_ngrams("   ", 2).is_empty());
    }

    #[test]
    fn hashes_match_shingle_strings() {
        let text = "The quick brown fox jumps over the quick brown fox";
        for sh in [Shingle::Word(2), Shingle::Word(20), Shingle::Char(4)] {
            let mut expected: Vec<u64> = sh.shingles(text).iter().map(|s| xxh3_64(s.as_bytes())).collect();
            expected.sort_unstable();
            expected.dedup();
            assert_eq!(sh.hashes(text), expected, "{sh:?}");
        }
        // "the quick" and "quick brown" and "brown fox" repeat: distinct shingles only.
        assert_eq!(Shingle::Word(2).hashes(text).len(), 6);
    }

    #[test]
    fn hangul_ratio_counts_letters_only() {
        assert_eq!(hangul_ratio("혈압 140/90 mmHg"), 2.0 / 6.0);
        assert_eq!(hangul_ratio("고혈압"), 1.0);
        assert_eq!(hangul_ratio("hypertension"), 0.0);
        assert_eq!(hangul_ratio("123 !!"), 0.0);
        assert_eq!(hangul_ratio("ㄱㄴ"), 1.0); // compatibility jamo
    }

    #[test]
    fn script_detection() {
        assert_eq!(script("2개월 남아가 BCG예방접종 1개월 뒤 주사 부위에 이상반응이 생겼다"), Script::Korean);
        assert!(is_korean("Staphylococcus aureus 감염 환자에게 가장 적절한 치료는?"));
        assert!(!is_korean("Staphylococcus aureus 감염의 치료는?")); // 5 of 25 letters
        assert!(!is_korean("Staphylococcus aureus infection, treatment of choice 약"));
        assert_eq!(script("A 45-year-old man"), Script::Latin);
        assert_eq!(script("心肌梗死患者 ECG"), Script::Cjk);
        assert_eq!(script("Инфаркт миокарда"), Script::Other);
        assert_eq!(script("120/80"), Script::None);
    }
}
