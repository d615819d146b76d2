//! Medical term coverage and language statistics: how Korean a dataset is and how much of the
//! configured medical vocabulary it uses, to compare sources and check translations.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Result, TextError};
use crate::normalize::{collapse_whitespace, nfkc};
use crate::shingle::{hangul_ratio, is_hangul, script, word_spans, Script};

/// A list of medical terms, matched case-insensitively after NFKC.
///
/// Terms without Hangul match whole words (`"MI"` does not match inside `"MIND"`; multi-word terms
/// match word sequences, so `"heart failure"` matches `"Heart-failure"`). Terms with Hangul match
/// as substrings, because Korean attaches particles to nouns (`고혈압은`, `고혈압이`). Where a
/// Korean word carries a Latin or numeric part (`"CT에서"`, `"BCG예방접종"`) the script change
/// counts as a word break, so `"CT"` is found there. Overlapping terms count once, longest first
/// (`"myocardial infarction"` is not also an `"infarction"`).
#[derive(Debug, Clone)]
pub struct TermList {
    /// Terms as given, first spelling of each normalised form, in list order.
    terms: Vec<String>,
    /// Word terms by word count, longest first: joined normalised words → term index.
    word_terms: Vec<(usize, HashMap<String, usize>)>,
    korean: Option<AhoCorasick>,
    /// Term index per Korean pattern.
    korean_terms: Vec<usize>,
}

/// Term matches in one text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TermCoverage {
    /// Term occurrences (non-overlapping).
    pub found: usize,
    /// The distinct terms found, as written in the list, sorted.
    pub distinct_terms: Vec<String>,
    /// Word tokens of the text ([`crate::shingle::words`]).
    pub words: usize,
    /// Share of the text's words that lie inside a term occurrence, in [0, 1] (0 for a text
    /// without words). A share of words rather than `found / words` so that multi-word terms and
    /// Korean substring matches count by the text they cover.
    pub ratio: f64,
}

/// Splits `words` at changes between Hangul and other characters, keeping for each piece the
/// index of the word it came from.
fn sub_words<'a>(words: &[&'a str]) -> Vec<(&'a str, usize)> {
    let mut out = Vec::new();
    for (w, word) in words.iter().enumerate() {
        let mut start = 0;
        let mut prev: Option<bool> = None;
        for (i, c) in word.char_indices() {
            let h = is_hangul(c);
            if prev.is_some_and(|p| p != h) {
                out.push((&word[start..i], w));
                start = i;
            }
            prev = Some(h);
        }
        out.push((&word[start..], w));
    }
    out
}

impl TermList {
    /// Builds a list from terms; blank terms are skipped and duplicates (after normalisation)
    /// keep their first spelling.
    pub fn new<I, S>(terms: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut list = TermList { terms: Vec::new(), word_terms: Vec::new(), korean: None, korean_terms: Vec::new() };
        let mut seen = HashSet::new();
        let mut by_len: BTreeMap<usize, HashMap<String, usize>> = BTreeMap::new();
        let mut korean_patterns = Vec::new();
        for term in terms {
            let term: String = term.into();
            let term = term.trim();
            let norm = collapse_whitespace(&nfkc(term).to_lowercase());
            if norm.is_empty() || !seen.insert(norm.clone()) {
                continue;
            }
            let idx = list.terms.len();
            if norm.chars().any(is_hangul) {
                korean_patterns.push(norm);
                list.korean_terms.push(idx);
            } else {
                let spans = word_spans(&norm);
                if spans.is_empty() {
                    continue; // punctuation only: nothing a word match could find
                }
                let words: Vec<&str> = spans.iter().map(|s| s.word.as_str()).collect();
                let pieces: Vec<&str> = sub_words(&words).into_iter().map(|(p, _)| p).collect();
                by_len.entry(pieces.len()).or_default().entry(pieces.join(" ")).or_insert(idx);
            }
            list.terms.push(term.to_string());
        }
        list.word_terms = by_len.into_iter().rev().collect();
        if !korean_patterns.is_empty() {
            list.korean = Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&korean_patterns)
                    .expect("term patterns fit the automaton"),
            );
        }
        list
    }

    /// Reads a term file: one term per line, blank lines and lines starting with `#` skipped,
    /// and a ` #` (whitespace, then `#`) starts a trailing comment.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| TextError::Io { path: path.to_path_buf(), source })?;
        Ok(Self::parse(&text))
    }

    /// Parses the contents of a term file (see [`Self::from_file`]).
    pub fn parse(text: &str) -> Self {
        Self::new(text.lines().filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let comment = line.match_indices('#').find(|(i, _)| line[..*i].ends_with([' ', '\t']));
            let line = match comment {
                Some((i, _)) => line[..i].trim_end(),
                None => line,
            };
            (!line.is_empty()).then(|| line.to_string())
        }))
    }

    /// The terms, as given, in list order.
    pub fn terms(&self) -> &[String] {
        &self.terms
    }

    pub fn len(&self) -> usize {
        self.terms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Finds the terms in `text`.
    pub fn coverage(&self, text: &str) -> TermCoverage {
        let norm = nfkc(text).to_lowercase();
        let spans = word_spans(&norm);
        let words: Vec<&str> = spans.iter().map(|s| s.word.as_str()).collect();
        let mut covered = vec![false; words.len()];
        let mut hits: Vec<usize> = Vec::new();

        if !self.word_terms.is_empty() {
            let pieces = sub_words(&words);
            let mut buf = String::new();
            let mut i = 0;
            'outer: while i < pieces.len() {
                for (k, terms) in &self.word_terms {
                    if i + k > pieces.len() {
                        continue;
                    }
                    buf.clear();
                    for (j, (p, _)) in pieces[i..i + k].iter().enumerate() {
                        if j > 0 {
                            buf.push(' ');
                        }
                        buf.push_str(p);
                    }
                    if let Some(&t) = terms.get(buf.as_str()) {
                        hits.push(t);
                        for (_, w) in &pieces[i..i + k] {
                            covered[*w] = true;
                        }
                        i += k;
                        continue 'outer;
                    }
                }
                i += 1;
            }
        }

        if let Some(ac) = &self.korean {
            let collapsed = collapse_whitespace(&norm);
            // Patterns are whitespace-collapsed; search the collapsed text and map matches back
            // to words through the words' order (collapsing keeps every word, in order).
            let collapsed_spans = word_spans(&collapsed);
            for m in ac.find_iter(&collapsed) {
                hits.push(self.korean_terms[m.pattern().as_usize()]);
                for (w, s) in collapsed_spans.iter().enumerate() {
                    if s.start < m.end() && m.start() < s.end {
                        covered[w] = true;
                    }
                }
            }
        }

        let mut distinct: Vec<String> =
            hits.iter().collect::<HashSet<_>>().into_iter().map(|&t| self.terms[t].clone()).collect();
        distinct.sort();
        let covered_words = covered.iter().filter(|c| **c).count();
        TermCoverage {
            found: hits.len(),
            distinct_terms: distinct,
            words: words.len(),
            ratio: if words.is_empty() { 0.0 } else { covered_words as f64 / words.len() as f64 },
        }
    }
}

/// Language summary of a set of texts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LangStats {
    pub texts: usize,
    /// Texts without any letter (empty, numbers or punctuation only).
    pub without_letters: usize,
    /// Mean [`hangul_ratio`] over the texts that have letters.
    pub mean_hangul_ratio: f64,
    /// Share of all texts that are Korean ([`crate::shingle::is_korean`]).
    pub korean_share: f64,
    /// Texts per dominant [`Script`].
    pub scripts: BTreeMap<Script, usize>,
    /// Mean word tokens per text.
    pub mean_words: f64,
    /// With a term list: share of texts with at least one term.
    pub with_term_share: Option<f64>,
    /// With a term list: mean [`TermCoverage::ratio`].
    pub mean_term_ratio: Option<f64>,
    /// With a term list: per term found, the number of texts containing it; most frequent first,
    /// ties by term.
    pub term_texts: Vec<(String, usize)>,
}

impl LangStats {
    /// Computes the summary (per-text work in parallel; sums in input order so the figures are
    /// identical run to run).
    pub fn compute(texts: &[&str], terms: Option<&TermList>) -> Self {
        struct PerText {
            script: Script,
            hangul: f64,
            words: usize,
            coverage: Option<TermCoverage>,
        }
        let per: Vec<PerText> = texts
            .par_iter()
            .map(|t| {
                let coverage = terms.map(|l| l.coverage(t));
                PerText {
                    script: script(t),
                    hangul: hangul_ratio(t),
                    words: match &coverage {
                        Some(c) => c.words,
                        None => crate::shingle::words(t).len(),
                    },
                    coverage,
                }
            })
            .collect();

        let n = per.len();
        let share = |count: usize| if n == 0 { 0.0 } else { count as f64 / n as f64 };
        let mut scripts = BTreeMap::new();
        let (mut with_letters, mut hangul_sum, mut korean, mut words) = (0usize, 0.0, 0usize, 0usize);
        let (mut with_term, mut ratio_sum) = (0usize, 0.0);
        let mut term_texts: HashMap<&str, usize> = HashMap::new();
        for p in &per {
            *scripts.entry(p.script).or_insert(0) += 1;
            if p.script != Script::None {
                with_letters += 1;
                hangul_sum += p.hangul;
            }
            korean += usize::from(p.script == Script::Korean);
            words += p.words;
            if let Some(c) = &p.coverage {
                with_term += usize::from(c.found > 0);
                ratio_sum += c.ratio;
                for t in &c.distinct_terms {
                    *term_texts.entry(t.as_str()).or_insert(0) += 1;
                }
            }
        }
        let mut term_texts: Vec<(String, usize)> = term_texts.into_iter().map(|(t, c)| (t.to_string(), c)).collect();
        term_texts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        LangStats {
            texts: n,
            without_letters: n - with_letters,
            mean_hangul_ratio: if with_letters == 0 { 0.0 } else { hangul_sum / with_letters as f64 },
            korean_share: share(korean),
            scripts,
            mean_words: share(words),
            with_term_share: terms.map(|_| share(with_term)),
            mean_term_ratio: terms.map(|_| if n == 0 { 0.0 } else { ratio_sum / n as f64 }),
            term_texts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms() -> TermList {
        TermList::new(vec![
            "Myocardial infarction",
            "infarction",
            "MI",
            "heart failure",
            "CT",
            "고혈압",
            "B형 간염",
            "당뇨병",
            "  ",
            "mi", // duplicate of "MI"
        ])
    }

    #[test]
    fn english_terms_on_word_boundaries() {
        let t = terms();
        assert_eq!(t.len(), 8);
        let c = t.coverage("History of MI; the MIND study. Acute myocardial   Infarction and heart-failure.");
        assert_eq!(c.found, 3);
        assert_eq!(c.distinct_terms, vec!["MI", "Myocardial infarction", "heart failure"]);
        // words: history of mi the mind study acute myocardial infarction and heart failure
        assert_eq!(c.words, 12);
        assert!((c.ratio - 5.0 / 12.0).abs() < 1e-12);
        let none = t.coverage("Nothing relevant here.");
        assert_eq!((none.found, none.ratio), (0, 0.0));
        assert!(none.distinct_terms.is_empty());
        assert_eq!(t.coverage("").words, 0);
    }

    #[test]
    fn korean_terms_as_substrings() {
        let t = terms();
        let c = t.coverage("고혈압은 흔하다. 고혈압이 있는 B형  간염 환자의 CT에서 이상 소견");
        assert_eq!(c.found, 4);
        assert_eq!(c.distinct_terms, vec!["B형 간염", "CT", "고혈압"]);
        // 10 words; covered: 고혈압은, 고혈압이, b형, 간염, ct에서
        assert_eq!(c.words, 10);
        assert!((c.ratio - 0.5).abs() < 1e-12);
        // Hangul terms do not need word boundaries; Latin ones do.
        assert_eq!(t.coverage("당뇨병성 신증").found, 1);
        assert_eq!(t.coverage("ACT에서").found, 0);
    }

    #[test]
    fn term_file_with_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("terms.txt");
        std::fs::write(&path, "# cardiology\nmyocardial infarction   # MI\n\n  atrial fibrillation\n#comment\nC#\n")
            .unwrap();
        let t = TermList::from_file(&path).unwrap();
        assert_eq!(t.terms(), ["myocardial infarction", "atrial fibrillation", "C#"]);
        let missing = dir.path().join("nope.txt");
        let err = TermList::from_file(&missing).unwrap_err().to_string();
        assert!(err.contains("nope.txt"), "{err}");
    }

    #[test]
    fn lang_stats_summary() {
        let t = terms();
        let texts = [
            "고혈압 환자에게 가장 적절한 치료는?",
            "A patient with heart failure.",
            "Plain English without terms.",
            "12/80",
            "",
        ];
        let s = LangStats::compute(&texts, Some(&t));
        assert_eq!(s.texts, 5);
        assert_eq!(s.without_letters, 2);
        assert!((s.mean_hangul_ratio - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.korean_share - 0.2).abs() < 1e-12);
        assert_eq!(s.scripts[&Script::Latin], 2);
        assert_eq!(s.scripts[&Script::None], 2);
        assert_eq!(s.with_term_share, Some(0.4));
        assert_eq!(s.term_texts, vec![("heart failure".to_string(), 1), ("고혈압".to_string(), 1)]);
        assert_eq!(s, LangStats::compute(&texts, Some(&t)));
        let plain = LangStats::compute(&texts, None);
        assert_eq!(plain.with_term_share, None);
        assert_eq!(plain.mean_words, s.mean_words);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["scripts"]["korean"], 1);
    }
}
