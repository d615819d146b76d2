//! N-gram decontamination: does a training text contain an evaluation item?
//!
//! The index holds the evaluation items. An item is caught by an exact match of [`match_key`]
//! (which ignores case, punctuation and spacing), or by shared n-grams: word 13-grams (the
//! GPT-3 / Llama decontamination convention) for most text, character 50-grams for Korean, whose
//! particles and inconsistent spacing make word n-grams brittle.
//!
//! Shared n-grams alone over-fire on exam text: MedQA vignettes share boilerplate longer than 13
//! words ("which of the following is the most appropriate next step in the management of this
//! patient" is 16 tokens; reference lab tables are longer), and on MedQA dev against test 321 of
//! the 1,272 dev questions share at least one 13-gram with some test question. So a match also
//! needs a minimum *coverage*: the share of the item's distinct n-grams found in the query. Lightly
//! edited copies of a long question keep most of its n-grams (one word changed loses at most 13
//! of ~120), unrelated questions share a few percent.
//!
//! Limits, by construction: an item shorter than `word_n` words (`char_n` letters for Korean) has
//! no n-grams and is caught only by the exact match; so is an edited copy of an item too short to
//! keep n-grams clear of the edit.
//!
//! [`match_key`]: crate::normalize::match_key

use std::collections::HashMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::normalize::{match_key, nfkc};
use crate::shingle::{is_hangul, is_korean, word_spans};

/// Seeds separate the hash spaces of word and character n-grams, so they never match each other.
const WORD_SEED: u64 = 0x776f_7264; // "word"
const CHAR_SEED: u64 = 0x6368_6172; // "char"
/// Marks a posting that lives in the overflow list (n-gram shared by several items).
const OVERFLOW: u32 = 1 << 31;

/// Parameters of the decontamination index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NgramParams {
    /// Word n-gram length for non-Korean text.
    pub word_n: usize,
    /// Character n-gram length for Korean text (letters and digits only, spaces removed).
    pub char_n: usize,
    /// Minimum distinct shared n-grams for a match.
    pub min_overlaps: usize,
    /// Minimum share of the item's distinct n-grams found in the query, in [0, 1]. 0 gives the
    /// classic "any shared n-gram" rule.
    pub min_coverage: f64,
}

impl Default for NgramParams {
    /// 13 words, 50 Korean characters, one shared n-gram covering at least half of the item:
    /// a copy with a few words changed or a sentence added keeps far more than half. On MedQA dev
    /// against test, unrelated questions sharing boilerplate reach at most 0.20 (a short test item
    /// that is mostly its closing question) and a vignette rewritten around the same story 0.32;
    /// 0.5 flags neither. Lower it to catch rewrites at the cost of boilerplate matches.
    fn default() -> Self {
        NgramParams { word_n: 13, char_n: 50, min_overlaps: 1, min_coverage: 0.5 }
    }
}

/// How a contamination was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Same [`match_key`] (for Korean, also ignoring spaces).
    Exact,
    /// Shared word n-grams of this length.
    WordNgram(usize),
    /// Shared character n-grams of this length.
    CharNgram(usize),
}

/// A match of a query text against an indexed item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contamination {
    /// The id the item was added with.
    pub item_id: String,
    pub method: Method,
    /// The overlapping text in the query (after NFKC): the longest run of consecutive matching
    /// n-grams, from the first n-gram's start to the last one's end; the whole query for `Exact`.
    pub span: String,
    /// Distinct n-grams shared with the item (the item's n-gram count for `Exact`).
    pub overlaps: usize,
    /// `overlaps` over the item's distinct n-grams (1 for `Exact`).
    pub coverage: f64,
}

/// Letters and digits of a text, lowercased, with their byte ranges in the text: the view
/// character n-grams are cut from. Dropping spaces and punctuation makes Korean spacing variants
/// (`고혈압 환자` / `고혈압환자`) and punctuation edits invisible.
struct CharView {
    kept: String,
    /// Char boundaries in `kept`, `len + 1` entries.
    bounds: Vec<usize>,
    /// Per kept char, its byte range in the source text.
    src: Vec<(usize, usize)>,
}

impl CharView {
    fn new(normalized: &str) -> Self {
        let mut view = CharView { kept: String::with_capacity(normalized.len()), bounds: vec![0], src: Vec::new() };
        for (i, c) in normalized.char_indices() {
            if c.is_alphanumeric() {
                for lc in c.to_lowercase() {
                    view.kept.push(lc);
                    view.bounds.push(view.kept.len());
                    view.src.push((i, i + c.len_utf8()));
                }
            }
        }
        view
    }

    fn len(&self) -> usize {
        self.src.len()
    }

    fn ngram_hashes(&self, n: usize) -> Vec<u64> {
        if n == 0 || self.len() < n {
            return Vec::new();
        }
        (0..=self.len() - n)
            .map(|i| {
                let gram = &self.kept[self.bounds[i]..self.bounds[i + n]];
                xxh3_64_with_seed(gram.as_bytes(), CHAR_SEED)
            })
            .collect()
    }
}

/// Hashes of the word n-grams of `words`, one per window position.
fn word_ngram_hashes(words: &[&str], n: usize) -> Vec<u64> {
    if n == 0 || words.len() < n {
        return Vec::new();
    }
    let mut buf = String::new();
    words
        .windows(n)
        .map(|w| {
            buf.clear();
            for (k, word) in w.iter().enumerate() {
                if k > 0 {
                    buf.push(' ');
                }
                buf.push_str(word);
            }
            xxh3_64_with_seed(buf.as_bytes(), WORD_SEED)
        })
        .collect()
}

fn spaceless(key: &str) -> String {
    key.chars().filter(|c| *c != ' ').collect()
}

/// The best candidate of one n-gram mode.
struct Scored {
    item: u32,
    overlaps: usize,
    coverage: f64,
    method: Method,
    span: (usize, usize),
}

/// Index of evaluation items for contamination lookups. Build with [`Self::add`], then query
/// with [`Self::find`] (it is `Sync`: [`Self::find_batch`] queries in parallel).
#[derive(Debug, Clone, Default)]
pub struct NgramIndex {
    params: NgramParams,
    ids: Vec<String>,
    /// Distinct n-grams per item: the denominator of coverage.
    item_ngrams: Vec<u32>,
    /// n-gram hash → item index, or `OVERFLOW | k` for `overflow[k]`.
    postings: HashMap<u64, u32>,
    overflow: Vec<Vec<u32>>,
    exact: HashMap<String, u32>,
    /// Korean items by match key without spaces.
    exact_spaceless: HashMap<String, u32>,
    has_word_items: bool,
    has_char_items: bool,
}

impl NgramIndex {
    pub fn new(params: NgramParams) -> Self {
        NgramIndex { params, ..Default::default() }
    }

    pub fn params(&self) -> &NgramParams {
        &self.params
    }

    /// Items added.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Distinct n-grams in the index.
    pub fn ngram_count(&self) -> usize {
        self.postings.len()
    }

    /// Adds an evaluation item: its match key for exact lookups, and its character n-grams when
    /// the text is Korean ([`is_korean`]), else its word n-grams.
    ///
    /// # Panics
    /// Past 2^31 items.
    pub fn add(&mut self, item_id: &str, text: &str) {
        let idx = self.ids.len() as u32;
        assert!(idx < OVERFLOW, "NgramIndex holds at most 2^31 items");
        self.ids.push(item_id.to_string());

        let key = match_key(text);
        if !key.is_empty() {
            if key.chars().any(is_hangul) {
                self.exact_spaceless.entry(spaceless(&key)).or_insert(idx);
            }
            self.exact.entry(key).or_insert(idx);
        }

        let normalized = nfkc(text);
        let mut hashes = if is_korean(&normalized) {
            self.has_char_items = true;
            CharView::new(&normalized).ngram_hashes(self.params.char_n)
        } else {
            self.has_word_items = true;
            let spans = word_spans(&normalized);
            let words: Vec<&str> = spans.iter().map(|s| s.word.as_str()).collect();
            word_ngram_hashes(&words, self.params.word_n)
        };
        hashes.sort_unstable();
        hashes.dedup();
        self.item_ngrams.push(hashes.len() as u32);
        for h in hashes {
            match self.postings.get_mut(&h) {
                None => {
                    self.postings.insert(h, idx);
                }
                Some(v) if *v & OVERFLOW == 0 => {
                    self.overflow.push(vec![*v, idx]);
                    *v = OVERFLOW | (self.overflow.len() - 1) as u32;
                }
                Some(v) => self.overflow[(*v & !OVERFLOW) as usize].push(idx),
            }
        }
    }

    /// Items that contain n-gram `h`, ascending.
    fn items(&self, h: u64) -> &[u32] {
        match self.postings.get(&h) {
            None => &[],
            Some(v) if *v & OVERFLOW == 0 => std::slice::from_ref(v),
            Some(v) => &self.overflow[(*v & !OVERFLOW) as usize],
        }
    }

    /// The item `text` is contaminated with, if any: an exact match first, else the item with the
    /// highest coverage (then most overlaps, then first added) among those passing
    /// `min_overlaps` and `min_coverage`.
    ///
    /// The query is checked in every mode the index holds, so a query whose Hangul ratio falls on
    /// the other side of the Korean threshold than its source still matches.
    pub fn find(&self, text: &str) -> Option<Contamination> {
        if self.ids.is_empty() {
            return None;
        }
        let key = match_key(text);
        if !key.is_empty() {
            let hit = self.exact.get(&key).or_else(|| {
                if key.chars().any(is_hangul) {
                    self.exact_spaceless.get(&spaceless(&key))
                } else {
                    None
                }
            });
            if let Some(&idx) = hit {
                return Some(Contamination {
                    item_id: self.ids[idx as usize].clone(),
                    method: Method::Exact,
                    span: text.trim().to_string(),
                    overlaps: self.item_ngrams[idx as usize] as usize,
                    coverage: 1.0,
                });
            }
        }

        let normalized = nfkc(text);
        let mut best: Option<Scored> = None;
        let mut consider = |s: Option<Scored>| {
            if let Some(s) = s {
                let better = match &best {
                    None => true,
                    Some(b) => {
                        (s.coverage, s.overlaps, std::cmp::Reverse(s.item))
                            > (b.coverage, b.overlaps, std::cmp::Reverse(b.item))
                    }
                };
                if better {
                    best = Some(s);
                }
            }
        };
        if self.has_word_items {
            let spans = word_spans(&normalized);
            let words: Vec<&str> = spans.iter().map(|s| s.word.as_str()).collect();
            let n = self.params.word_n;
            let hashes = word_ngram_hashes(&words, n);
            consider(
                self.score(&hashes, Method::WordNgram(n), |first, last| (spans[first].start, spans[last + n - 1].end)),
            );
        }
        if self.has_char_items {
            let view = CharView::new(&normalized);
            let n = self.params.char_n;
            let hashes = view.ngram_hashes(n);
            consider(
                self.score(&hashes, Method::CharNgram(n), |first, last| (view.src[first].0, view.src[last + n - 1].1)),
            );
        }
        best.map(|b| Contamination {
            item_id: self.ids[b.item as usize].clone(),
            method: b.method,
            span: normalized[b.span.0..b.span.1].to_string(),
            overlaps: b.overlaps,
            coverage: b.coverage,
        })
    }

    /// Scores the query's n-gram `hashes` (one per position) against the items and returns the
    /// best passing item with the byte range (from `range(first_pos, last_pos)`) of its longest
    /// run of consecutive matching positions.
    fn score(&self, hashes: &[u64], method: Method, range: impl Fn(usize, usize) -> (usize, usize)) -> Option<Scored> {
        let mut distinct: Vec<u64> = hashes.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for h in &distinct {
            for &item in self.items(*h) {
                *counts.entry(item).or_default() += 1;
            }
        }
        let (item, overlaps, coverage) = counts
            .into_iter()
            .filter_map(|(item, overlaps)| {
                let total = self.item_ngrams[item as usize] as usize;
                let coverage = overlaps as f64 / total as f64;
                (overlaps >= self.params.min_overlaps.max(1) && coverage >= self.params.min_coverage)
                    .then_some((item, overlaps, coverage))
            })
            .max_by(|a, b| {
                (a.2, a.1, std::cmp::Reverse(a.0))
                    .partial_cmp(&(b.2, b.1, std::cmp::Reverse(b.0)))
                    .expect("coverage is finite")
            })?;

        // Longest run of consecutive positions whose n-gram belongs to the item.
        let (mut best_run, mut run_start) = ((0, 0, 0usize), None);
        for (pos, h) in hashes.iter().enumerate() {
            if self.items(*h).binary_search(&item).is_ok() {
                let start = *run_start.get_or_insert(pos);
                if pos + 1 - start > best_run.2 {
                    best_run = (start, pos, pos + 1 - start);
                }
            } else {
                run_start = None;
            }
        }
        Some(Scored { item, overlaps, coverage, method, span: range(best_run.0, best_run.1) })
    }

    /// [`Self::find`] over many texts in parallel, in input order.
    pub fn find_batch(&self, texts: &[&str]) -> Vec<Option<Contamination>> {
        texts.par_iter().map(|t| self.find(t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A MedQA-length vignette (written for these tests; ~130 words).
    const ITEM: &str = "A 45-year-old man comes to the physician because of a 2-week history of \
        progressive shortness of breath and a nonproductive cough. He has smoked one pack of \
        cigarettes daily for 25 years and drinks two beers on weekends. Six months ago he started \
        working at a shipyard where he removes old insulation from engine rooms. His temperature \
        is 37.2°C (99°F), pulse is 92/min, respirations are 22/min, and blood pressure is 134/82 \
        mm Hg. Pulse oximetry on room air shows an oxygen saturation of 91%. Examination shows \
        bibasilar end-inspiratory crackles and clubbing of the fingers. A chest x-ray shows \
        pleural plaques along the diaphragm and reticular opacities in both lower lobes. \
        Which of the following is the most appropriate next step in the management of this \
        patient?";

    /// Another vignette that shares the boilerplate opening and closing with [`ITEM`].
    const UNRELATED: &str = "A 45-year-old man comes to the physician because of a 2-week \
        history of painful swelling of his right knee. Three days before the onset he returned \
        from a hiking trip in Connecticut, where he noticed a circular red rash on his thigh that \
        resolved without treatment. He takes no medications and has no history of joint disease. \
        His temperature is 38.1°C (100.6°F). The right knee is warm and tender with a large \
        effusion, and range of motion is limited by pain. Arthrocentesis yields cloudy fluid with \
        a leukocyte count of 24,000/mm3. Serologic testing is positive for antibodies against a \
        spirochete. Which of the following is the most appropriate next step in the management \
        of this patient?";

    const KO_ITEM: &str = "65세 남자가 3일 전부터 발생한 발열과 기침, 누런 가래를 주소로 응급실에 \
        내원하였다. 환자는 10년 전부터 고혈압과 당뇨병으로 약을 복용 중이며, 40갑년의 흡연력이 있다. \
        내원 당시 체온은 38.9도, 맥박은 분당 112회, 호흡수는 분당 28회, 혈압은 90/60 mmHg였다. \
        흉부 청진에서 우하엽에 수포음이 들렸고, 흉부 X선 사진에서 우하엽의 경화 소견이 관찰되었다. \
        혈액검사에서 백혈구 18,000/mm3, CRP 24 mg/dL, BUN 32 mg/dL였다. 이 환자에게 가장 적절한 \
        치료는?";

    const KO_UNRELATED: &str = "28세 여자가 2주 전부터 발생한 피로감과 체중 감소를 주소로 외래에 \
        내원하였다. 환자는 최근 더위를 참기 어렵고 손이 떨리며 가슴이 두근거린다고 하였다. \
        갑상선은 미만성으로 커져 있었고 안구 돌출이 관찰되었다. 혈액검사에서 유리 T4가 상승하고 \
        TSH는 억제되어 있었다. 이 환자에게 가장 적절한 치료는?";

    fn index() -> NgramIndex {
        let mut idx = NgramIndex::new(NgramParams::default());
        idx.add("medqa-test-1", ITEM);
        idx.add("kor-test-7", KO_ITEM);
        idx.add("short", "What is the first-line treatment of anaphylaxis?");
        idx
    }

    #[test]
    fn catches_lightly_edited_copies() {
        let idx = index();
        let edits = [
            ITEM.replace("shipyard", "dockyard"),
            ITEM.replace("two beers", "three beers").replace("reticular", "linear"),
            format!("{ITEM} Explain your reasoning step by step."),
            format!("Question: {ITEM}\nAnswer: Pulmonary function testing"),
        ];
        for text in &edits {
            let hit = idx.find(text).unwrap_or_else(|| panic!("missed: {text}"));
            assert_eq!(hit.item_id, "medqa-test-1");
            assert_eq!(hit.method, Method::WordNgram(13));
            assert!(hit.coverage >= 0.7, "{hit:?}");
        }
        // A sentence appended: the span is the whole item and stops before the addition.
        let hit = idx.find(&edits[2]).unwrap();
        assert_eq!(hit.coverage, 1.0);
        assert!(hit.span.starts_with("A 45-year-old man comes"), "{}", hit.span);
        assert!(hit.span.ends_with("management of this patient"), "{}", hit.span);
        // One word changed: the longest run is the side of the change with more n-grams.
        let hit = idx.find(&edits[0]).unwrap();
        assert!(hit.span.starts_with("where he removes old insulation"), "{}", hit.span);
    }

    #[test]
    fn punctuation_and_case_changes_are_exact() {
        let idx = index();
        let shouted = ITEM.to_uppercase().replace(['.', ','], " ; ");
        let hit = idx.find(&shouted).unwrap();
        assert_eq!((hit.item_id.as_str(), hit.method), ("medqa-test-1", Method::Exact));
        let hit = idx.find("what is the first line treatment of anaphylaxis").unwrap();
        assert_eq!((hit.item_id.as_str(), hit.method), ("short", Method::Exact));
        // Short items have no 13-grams: an edited copy is out of reach, by design.
        assert!(idx.find("What is the first-line therapy of anaphylaxis?").is_none());
    }

    #[test]
    fn ignores_texts_sharing_only_common_phrases() {
        let idx = index();
        assert!(idx.find(UNRELATED).is_none());
        assert!(idx
            .find(
                "Which of the following is the most appropriate next step in the \
                          management of this patient?"
            )
            .is_none());
        assert!(idx.find("").is_none());
        // The boilerplate really does share 13-grams: the classic any-overlap rule fires.
        let mut loose = NgramIndex::new(NgramParams { min_coverage: 0.0, ..NgramParams::default() });
        loose.add("medqa-test-1", ITEM);
        let hit = loose.find(UNRELATED).expect("shared boilerplate 13-grams");
        assert!(hit.coverage < 0.1, "{hit:?}");
    }

    #[test]
    fn korean_char_ngrams() {
        let idx = index();
        // Spacing removed in places, punctuation changed, a sentence appended.
        let copy = format!(
            "{} 정답과 해설을 함께 쓰시오.",
            KO_ITEM.replace("응급실에 내원하였다", "응급실에내원하였다").replace(',', "")
        );
        let hit = idx.find(&copy).unwrap();
        assert_eq!(hit.item_id, "kor-test-7");
        assert_eq!(hit.method, Method::CharNgram(50));
        assert_eq!(hit.coverage, 1.0);
        assert!(hit.span.starts_with("65세 남자가"), "{}", hit.span);
        assert!(hit.span.ends_with("적절한 치료는"), "{}", hit.span);
        // One clinical value changed: still caught, less than fully covered.
        let hit = idx.find(&KO_ITEM.replace("18,000", "13,000")).unwrap();
        assert_eq!(hit.method, Method::CharNgram(50));
        assert!(hit.coverage > 0.5 && hit.coverage < 1.0, "{hit:?}");
        // Spacing-only differences are exact.
        let hit = idx.find(&KO_ITEM.replace(' ', "")).unwrap();
        assert_eq!(hit.method, Method::Exact);
        // Another Korean question with the same closing phrase is not.
        assert!(idx.find(KO_UNRELATED).is_none());
    }

    #[test]
    fn overlapping_items_and_min_overlaps() {
        let mut idx =
            NgramIndex::new(NgramParams { word_n: 3, min_coverage: 0.0, min_overlaps: 2, ..NgramParams::default() });
        idx.add("a", "alpha beta gamma delta epsilon");
        idx.add("b", "gamma delta epsilon zeta eta theta");
        assert_eq!(idx.len(), 2);
        // "gamma delta epsilon" is in both items; one overlap is not enough.
        assert!(idx.find("xx gamma delta epsilon yy").is_none());
        let hit = idx.find("xx delta epsilon zeta eta yy").unwrap();
        assert_eq!((hit.item_id.as_str(), hit.overlaps), ("b", 2));
        assert_eq!(hit.span, "delta epsilon zeta eta");
        // Higher coverage wins: "a" has 2 of its 3 n-grams here, "b" 2 of 4.
        let hit = idx.find("beta gamma delta epsilon zeta").unwrap();
        assert_eq!((hit.item_id.as_str(), hit.coverage), ("a", 2.0 / 3.0));
        // Full ties go to the first item added.
        idx.add("c", "one two three four");
        idx.add("d", "one two three four");
        assert_eq!(idx.find("zz one two three four zz").unwrap().item_id, "c");
        assert_eq!(idx.find("One, two; three four!").unwrap().item_id, "c");
        let batch = idx.find_batch(&["nothing here", "beta gamma delta epsilon zeta"]);
        assert!(batch[0].is_none() && batch[1].is_some());
    }
}
