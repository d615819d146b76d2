//! Exact match and token F1 with the SQuAD v1.1 evaluation script's answer normalisation:
//! lowercase, drop ASCII punctuation (`string.punctuation`), drop the articles `a`/`an`/`the` as
//! whole words, collapse whitespace; F1 over the multiset of remaining whitespace tokens. Scores
//! are 0..1 (the script's per-item values); with several references the best counts.
//!
//! The normalisation is one pass over the characters into a reused buffer (ASCII bytes handled
//! directly); [`reference_normalize`] in the tests is the step-by-step version it is checked against.
use std::cell::RefCell;

use super::pysplit::is_py_space;

/// Python's `\w` as the script's `re.sub(r"\b(a|an|the)\b", ...)` sees it, after lowercasing and
/// punctuation removal.
#[inline]
fn is_word(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || c == '_'
    } else {
        is_hangul_syllable(c) || c.is_alphanumeric()
    }
}

/// Hangul syllables: letters without case (a shortcut past the Unicode tables; see the tests).
#[inline]
fn is_hangul_syllable(c: char) -> bool {
    ('\u{AC00}'..='\u{D7A3}').contains(&c)
}

/// The class of a lowercased character.
#[inline]
fn class_of(c: char) -> u8 {
    if c.is_ascii() {
        ASCII_CLASS[c as usize]
    } else if is_py_space(c) {
        SPACE
    } else if is_word(c) {
        WORD
    } else {
        OTHER
    }
}

/// `a`, `an` or `the` in either case (`w`: word bytes, `[A-Za-z0-9]`).
#[inline]
fn is_article(w: &[u8]) -> bool {
    match w.len() {
        1 => w[0] | 0x20 == b'a',
        2 => w[0] | 0x20 == b'a' && w[1] | 0x20 == b'n',
        3 => w[0] | 0x20 == b't' && w[1] | 0x20 == b'h' && w[2] | 0x20 == b'e',
        _ => false,
    }
}

/// Normalised text (tokens joined by single spaces) and each token's byte range in it.
#[derive(Default)]
struct Normalized {
    /// UTF-8 (only whole characters are ever written); the tokens are ranges of it (it may hold
    /// more, e.g. articles, between them).
    text: Vec<u8>,
    tokens: Vec<(u32, u32)>,
    /// Scratch for [`Normalized::set_plain`].
    ends: Vec<u32>,
}
/// ASCII byte classes after lowercasing: dropped (`string.punctuation`), word (`[a-z0-9]`; `_` is
/// punctuation), whitespace (Python's), other (control characters: in tokens, but not `\w`).
const DROP: u8 = 0;
const WORD: u8 = 1;
const SPACE: u8 = 2;
const OTHER: u8 = 3;

/// Not ASCII (only in [`BYTE_CLASS`]).
const WIDE: u8 = 4;

/// [`ASCII_CLASS`] for raw bytes: letters of either case are word bytes (`b | 0x20` lowercases
/// `[A-Za-z0-9]`), bytes above 0x7f are [`WIDE`].
static BYTE_CLASS: [u8; 256] = {
    let mut t = [WIDE; 256];
    let mut i = 0;
    while i < 128 {
        t[i] = ASCII_CLASS[i];
        i += 1;
    }
    t
};

static ASCII_CLASS: [u8; 128] = {
    let mut t = [OTHER; 128];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        t[i] = if c.is_ascii_punctuation() {
            DROP
        } else if c.is_ascii_alphanumeric() {
            WORD
        } else if matches!(c, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f | b' ') {
            SPACE
        } else {
            OTHER
        };
        i += 1;
    }
    t
};

impl Normalized {
    /// SQuAD's `normalize_answer(s)`, into `self`.
    fn set(&mut self, s: &str) {
        if s.is_ascii() && self.set_plain(s.as_bytes()) {
            return;
        }
        if !self.set_fast(s) {
            // `str.lower()` lowercases a capital sigma by its neighbours (final `ς`): leave such
            // text to the string-level lowercasing.
            self.text.clear();
            self.tokens.clear();
            self.set_chars(s.to_lowercase().chars());
        }
    }

    /// The usual case, ASCII text of word bytes, whitespace and punctuation only. With punctuation
    /// dropped, every token is a run of word bytes (so an article is a whole token): one
    /// branch-free pass writes the lowercased word bytes with one space after each token and notes
    /// where tokens end; the tokens that are not articles are then listed. False (and `self`
    /// unfinished) when any other byte occurs.
    fn set_plain(&mut self, b: &[u8]) -> bool {
        let Normalized { text, tokens, ends } = self;
        text.clear();
        // (8 bytes past the last token: see [`Normalized::key`].)
        text.resize(b.len() + 8, 0);
        ends.clear();
        ends.resize(b.len() / 2 + 2, 0);
        tokens.clear();
        let (mut w, mut k) = (0usize, 0usize);
        let mut in_token = 0usize;
        let mut bad = 0u8;
        {
            // Plain slices, so the loop keeps its pointers in registers.
            let (out, ends): (&mut [u8], &mut [u32]) = (&mut text[..], &mut ends[..]);
            for &x in b {
                let class = BYTE_CLASS[x as usize];
                let word = (class == WORD) as usize;
                let space = (class == SPACE) as usize;
                bad |= (class >= OTHER) as u8;
                // A word byte is kept lowercased; a space only right after a token (so runs of
                // whitespace become one space and leading whitespace none); punctuation never.
                out[w] = if space == 1 { b' ' } else { x | 0x20 };
                let end = space & in_token;
                ends[k] = w as u32;
                k += end;
                w += word | end;
                in_token = word | (in_token & (class == DROP) as usize);
            }
        }
        if bad != 0 {
            return false;
        }
        let mut start = 0usize;
        let mut token = |st: usize, en: usize| {
            if !is_article(&text[st..en]) {
                tokens.push((st as u32, en as u32));
            }
        };
        for &e in &ends[..k] {
            token(start, e as usize);
            start = e as usize + 1;
        }
        if in_token == 1 {
            token(start, w);
        }
        true
    }

    /// One pass over the bytes: ASCII runs of word bytes at a time (a whole token at once when it
    /// is a run followed by nothing but punctuation up to whitespace), other characters lowercased
    /// one by one. False (and `self` unfinished) at a capital sigma.
    fn set_fast(&mut self, s: &str) -> bool {
        self.text.clear();
        self.tokens.clear();
        let b = s.as_bytes();
        let n = b.len();
        let mut m = Machine::default();
        let mut i = 0;
        while i < n {
            match BYTE_CLASS[b[i] as usize] {
                WORD => {
                    let st = i;
                    while i < n && BYTE_CLASS[b[i] as usize] == WORD {
                        i += 1;
                    }
                    let w = &b[st..i];
                    if m.idle() {
                        let mut j = i;
                        while j < n && BYTE_CLASS[b[j] as usize] == DROP {
                            j += 1;
                        }
                        if j == n || BYTE_CLASS[b[j] as usize] == SPACE {
                            // A whole token (or an article, which leaves nothing).
                            if !is_article(w) {
                                if !self.text.is_empty() {
                                    self.text.push(b' ');
                                }
                                let a = self.text.len() as u32;
                                self.text.extend(w.iter().map(|&x| x | 0x20));
                                self.tokens.push((a, self.text.len() as u32));
                            }
                            i = j;
                            continue;
                        }
                    }
                    m.step(self, WORD, |t| t.extend(w.iter().map(|&x| x | 0x20)));
                }
                DROP => i += 1,
                WIDE => {
                    let c = s[i..].chars().next().expect("char boundary");
                    if c == 'Σ' {
                        return false;
                    }
                    if is_hangul_syllable(c) {
                        // A run of Hangul syllables (word characters without case) at once.
                        let st = i;
                        i += s[i..].chars().take_while(|&h| is_hangul_syllable(h)).map(char::len_utf8).sum::<usize>();
                        m.step(self, WORD, |t| t.extend_from_slice(&b[st..i]));
                        continue;
                    }
                    i += c.len_utf8();
                    let mut buf = [0u8; 4];
                    for l in c.to_lowercase() {
                        m.step(self, class_of(l), |t| t.extend_from_slice(l.encode_utf8(&mut buf).as_bytes()));
                    }
                }
                class => {
                    m.step(self, class, |t| t.push(b[i]));
                    i += 1;
                }
            }
        }
        m.finish(self);
        true
    }

    fn set_chars(&mut self, lowered: impl Iterator<Item = char>) {
        let mut m = Machine::default();
        let mut buf = [0u8; 4];
        for c in lowered {
            m.step(self, class_of(c), |t| t.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()));
        }
        m.finish(self);
    }

    fn token(&self, i: usize) -> &[u8] {
        let (a, b) = self.tokens[i];
        &self.text[a as usize..b as usize]
    }

    /// Token `i`'s first (up to) 8 bytes as a number and its length: equal for equal tokens, and
    /// for tokens of up to 8 bytes only for equal ones. (`text` has 8 bytes after the last token,
    /// so the load needs no length check.)
    #[inline]
    fn key(&self, i: usize) -> (u64, u32) {
        let (a, b) = self.tokens[i];
        let v = u64::from_le_bytes(self.text[a as usize..a as usize + 8].try_into().expect("8 bytes"));
        let len = b - a;
        let mask = u64::MAX >> (8 * (8 - len.clamp(1, 8)));
        (v & mask, len)
    }

    /// The normalised text: the tokens joined by single spaces.
    fn joined(&self) -> String {
        let mut out = Vec::with_capacity(self.text.len());
        for i in 0..self.tokens.len() {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(self.token(i));
        }
        String::from_utf8(out).expect("whole UTF-8 characters")
    }

    /// The same normalised text (the same tokens in the same order).
    fn same_as(&self, o: &Normalized) -> bool {
        self.tokens.len() == o.tokens.len() && (0..self.tokens.len()).all(|i| self.token(i) == o.token(i))
    }
}

/// The normalisation as one left-to-right pass: punctuation is skipped (so `t.he` is the word
/// `the`), a maximal run of word characters that is exactly `a`/`an`/`the` turns into a space, and
/// whitespace separates tokens, which are written joined by single spaces.
#[derive(Default)]
struct Machine {
    /// Where the open token starts in `text` (`None`: no open token).
    token: Option<usize>,
    /// Where the current run of word characters starts in `text`.
    run: Option<usize>,
}

impl Machine {
    /// No open token and no word run.
    #[inline]
    fn idle(&self) -> bool {
        self.token.is_none() && self.run.is_none()
    }

    /// One character of class `class`; `push` writes its bytes.
    #[inline(always)]
    fn step(&mut self, n: &mut Normalized, class: u8, push: impl FnOnce(&mut Vec<u8>)) {
        match class {
            DROP => {}
            WORD => {
                self.open(n);
                self.run.get_or_insert(n.text.len());
                push(&mut n.text);
            }
            OTHER => {
                self.end_run(n);
                self.open(n);
                push(&mut n.text);
            }
            _ => {
                self.end_run(n);
                self.close(n);
            }
        }
    }

    #[inline]
    fn open(&mut self, n: &mut Normalized) {
        if self.token.is_none() {
            if !n.text.is_empty() {
                n.text.push(b' ');
            }
            self.token = Some(n.text.len());
        }
    }

    #[inline]
    fn close(&mut self, n: &mut Normalized) {
        if let Some(st) = self.token.take() {
            n.tokens.push((st as u32, n.text.len() as u32));
        }
    }

    #[inline]
    fn end_run(&mut self, n: &mut Normalized) {
        let Some(st) = self.run.take() else { return };
        if matches!(&n.text[st..], b"a" | b"an" | b"the") {
            // The article becomes a space: it ends the token, which may now be empty.
            n.text.truncate(st);
            if self.token == Some(st) {
                self.token = None;
                if st > 0 {
                    n.text.truncate(st - 1);
                }
            } else {
                self.close(n);
            }
        }
    }

    fn finish(mut self, n: &mut Normalized) {
        self.end_run(n);
        self.close(n);
        // Padding for [`Normalized::key`].
        n.text.extend_from_slice(&[0; 8]);
    }
}

#[derive(Default)]
struct Scratch {
    p: Normalized,
    r: Normalized,
    hp: Vec<(u64, u32)>,
    hr: Vec<(u64, u32)>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// SQuAD's `normalize_answer`.
pub fn normalize_answer(s: &str) -> String {
    let mut n = Normalized::default();
    n.set(s);
    n.joined()
}

/// 1.0 when the normalised strings are equal.
pub fn exact_match(prediction: &str, reference: &str) -> f64 {
    if prediction == reference {
        // The same text normalises the same.
        return 1.0;
    }
    SCRATCH.with(|sc| {
        let sc = &mut *sc.borrow_mut();
        sc.p.set(prediction);
        sc.r.set(reference);
        if sc.p.same_as(&sc.r) {
            1.0
        } else {
            0.0
        }
    })
}

/// The size of the multiset intersection of the two token lists: both sorted (by their first 8
/// bytes as a number, then the whole text: an order that only equal tokens tie in), then merged.
fn common_tokens(p: &Normalized, r: &Normalized, hp: &mut Vec<(u64, u32)>, hr: &mut Vec<(u64, u32)>) -> usize {
    if p.tokens.len() * r.tokens.len() <= 256 {
        // Short lists: each prediction token takes the first equal reference token still free
        // (compared by first 8 bytes and length, then the rest).
        hr.clear();
        hr.extend((0..r.tokens.len()).map(|j| r.key(j)));
        let mut same = 0;
        for i in 0..p.tokens.len() {
            let key = p.key(i);
            if let Some(j) = (0..hr.len()).find(|&j| hr[j] == key && (key.1 <= 8 || r.token(j) == p.token(i))) {
                hr[j].1 = u32::MAX;
                same += 1;
            }
        }
        return same;
    }
    let keyed = |n: &Normalized, out: &mut Vec<(u64, u32)>| {
        out.clear();
        out.extend((0..n.tokens.len()).map(|i| (n.key(i).0, i as u32)));
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| n.token(a.1 as usize).cmp(n.token(b.1 as usize))));
    };
    keyed(p, hp);
    keyed(r, hr);
    let (mut i, mut j, mut same) = (0, 0, 0);
    while i < hp.len() && j < hr.len() {
        let ord = hp[i].0.cmp(&hr[j].0).then_with(|| p.token(hp[i].1 as usize).cmp(r.token(hr[j].1 as usize)));
        match ord {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                same += 1;
                i += 1;
                j += 1;
            }
        }
    }
    same
}

/// SQuAD's `f1_score`.
pub fn token_f1(prediction: &str, reference: &str) -> f64 {
    // The exact match beside it is one comparison of the two token lists.
    squad_scores(prediction, reference).f1
}

/// Exact match and token F1 of one prediction against one reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SquadScores {
    pub exact_match: f64,
    pub f1: f64,
}

/// SQuAD's `exact_match_score` and `f1_score` together, from one normalisation of each string
/// (the script normalises both strings once per score, as separate [`exact_match`] and
/// [`token_f1`] calls do).
pub fn squad_scores(prediction: &str, reference: &str) -> SquadScores {
    SCRATCH.with(|sc| {
        let Scratch { p, r, hp, hr } = &mut *sc.borrow_mut();
        p.set(prediction);
        if prediction == reference {
            // All tokens in common (F1 1), unless there are none (0, as the script's `num_same == 0`).
            return SquadScores { exact_match: 1.0, f1: if p.tokens.is_empty() { 0.0 } else { 1.0 } };
        }
        r.set(reference);
        let exact_match = if p.same_as(r) { 1.0 } else { 0.0 };
        let same = common_tokens(p, r, hp, hr);
        if same == 0 {
            return SquadScores { exact_match, f1: 0.0 };
        }
        let precision = 1.0 * same as f64 / p.tokens.len() as f64;
        let recall = 1.0 * same as f64 / r.tokens.len() as f64;
        SquadScores { exact_match, f1: (2.0 * precision * recall) / (precision + recall) }
    })
}

/// Best exact match and best token F1 over several references (each its own best, as the
/// script's `metric_max_over_ground_truths`).
pub fn squad_scores_multi(prediction: &str, references: &[&str]) -> SquadScores {
    references.iter().map(|r| squad_scores(prediction, r)).fold(SquadScores { exact_match: 0.0, f1: 0.0 }, |a, b| {
        SquadScores { exact_match: a.exact_match.max(b.exact_match), f1: a.f1.max(b.f1) }
    })
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
    use std::collections::HashMap;

    use super::super::pysplit::py_split;
    use super::*;

    /// The script's steps one at a time: `s.lower()`, punctuation, articles, whitespace.
    fn reference_normalize(s: &str) -> String {
        let lower = s.to_lowercase();
        let no_punc: String = lower.chars().filter(|c| !c.is_ascii_punctuation()).collect();
        let mut no_art = String::new();
        let mut run = String::new();
        let is_w = |c: char| c.is_alphanumeric() || c == '_';
        for c in no_punc.chars().chain(std::iter::once('\0')) {
            if is_w(c) {
                run.push(c);
                continue;
            }
            if matches!(run.as_str(), "a" | "an" | "the") {
                no_art.push(' ');
            } else {
                no_art.push_str(&run);
            }
            run.clear();
            if c != '\0' {
                no_art.push(c);
            }
        }
        py_split(&no_art).collect::<Vec<_>>().join(" ")
    }

    fn reference_f1(p: &str, r: &str) -> f64 {
        let (p, r) = (reference_normalize(p), reference_normalize(r));
        let pt: Vec<&str> = py_split(&p).collect();
        let rt: Vec<&str> = py_split(&r).collect();
        let mut rc: HashMap<&str, i64> = HashMap::new();
        for t in &rt {
            *rc.entry(t).or_insert(0) += 1;
        }
        let mut pc: HashMap<&str, i64> = HashMap::new();
        for t in &pt {
            *pc.entry(t).or_insert(0) += 1;
        }
        let same: i64 = pc.iter().map(|(t, c)| (*c).min(*rc.get(t).unwrap_or(&0))).sum();
        if same == 0 {
            return 0.0;
        }
        let (pr, rr) = (same as f64 / pt.len() as f64, same as f64 / rt.len() as f64);
        2.0 * pr * rr / (pr + rr)
    }

    #[test]
    fn squad() {
        assert_eq!(normalize_answer("The  Cat, sat!"), "cat sat");
        assert_eq!(exact_match("the cat", "Cat"), 1.0);
        assert!((token_f1("a big cat", "the cat") - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn one_pass_equals_the_steps() {
        let cases = [
            "",
            " ",
            "The  Cat, sat!",
            "t.he a.n a_n an_ THE the.",
            "theory another a1 1a x-the-y the's AN",
            "\u{1}the\u{7f}an\u{1c}a",
            "İstanbul ΣΑΣ ΌΣΟΣ σ Σ.",
            "고혈압 환자에게 a 이뇨제를 the 투여한다.",
            "Ünïcödé the…and → ±2 °C a\u{3000}b\u{85}the\u{a0}an",
            "ǅemal ﬁnance ß ẞ ΐ",
            "a\u{300} the\u{300} \u{300}an",
            "1,000 the-an 3.5 e.g. A.N.",
            "(The) the, an. A! \"a\" 'the' the's thé théâtre \u{212a}elvin \u{212a}",
            "it’s a — the – an… THE",
        ];
        for a in cases {
            assert_eq!(normalize_answer(a), reference_normalize(a), "{a:?}");
            for b in cases {
                assert_eq!(exact_match(a, b), (reference_normalize(a) == reference_normalize(b)) as u8 as f64);
                assert_eq!(token_f1(a, b), reference_f1(a, b), "{a:?} vs {b:?}");
                let both = squad_scores(a, b);
                assert_eq!((both.exact_match, both.f1), (exact_match(a, b), token_f1(a, b)), "{a:?} vs {b:?}");
            }
        }
        let mut rng = medforge_text::rng::SplitMix64::new(7);
        let alphabet =
            ['a', 'n', 't', 'h', 'e', 'A', 'T', 'H', ' ', '.', '_', '1', '한', 'é', 'Σ', '\u{a0}', '\t', 'x'];
        for _ in 0..50_000 {
            let s: String = (0..rng.below(14)).map(|_| alphabet[rng.below(alphabet.len())]).collect();
            let t: String = (0..rng.below(14)).map(|_| alphabet[rng.below(alphabet.len())]).collect();
            assert_eq!(normalize_answer(&s), reference_normalize(&s), "{s:?}");
            assert_eq!(token_f1(&s, &t), reference_f1(&s, &t), "{s:?} vs {t:?}");
            let both = squad_scores(&s, &t);
            assert_eq!(both.f1, reference_f1(&s, &t), "{s:?} vs {t:?}");
            assert_eq!(both.exact_match, (reference_normalize(&s) == reference_normalize(&t)) as u8 as f64);
        }
    }

    #[test]
    fn scores_over_several_references() {
        // EM from one reference, F1 from another: each is its own best.
        let s = squad_scores_multi("the big cat", &["Big cat!", "a big cat sat"]);
        assert_eq!(s.exact_match, 1.0);
        assert_eq!(s.f1, 1.0);
        let s = squad_scores_multi("big cat", &["cat", "big dog"]);
        assert_eq!(s.exact_match, 0.0);
        assert!((s.f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.f1, token_f1_multi("big cat", &["cat", "big dog"]));
        assert_eq!(squad_scores_multi("x", &[]), SquadScores { exact_match: 0.0, f1: 0.0 });
    }

    #[test]
    fn long_ascii_text() {
        // Past the 64-byte words of the bit sets, with punctuation inside and between tokens.
        let mut rng = medforge_text::rng::SplitMix64::new(9);
        let pieces =
            ["the", "An", "a", "Cat", "x.y", "(t.he)", ",", " ", "  ", "\t", "1,000", "don't", "e.g.", "HbA1c"];
        for _ in 0..5_000 {
            let s: String = (0..rng.below(120)).map(|_| pieces[rng.below(pieces.len())]).collect::<Vec<_>>().join(" ");
            let t: String = (0..rng.below(120)).map(|_| pieces[rng.below(pieces.len())]).collect::<Vec<_>>().join("");
            assert_eq!(normalize_answer(&s), reference_normalize(&s), "{s:?}");
            assert_eq!(normalize_answer(&t), reference_normalize(&t), "{t:?}");
            assert_eq!(token_f1(&s, &t), reference_f1(&s, &t), "{s:?} vs {t:?}");
            assert_eq!(exact_match(&s, &t), (reference_normalize(&s) == reference_normalize(&t)) as u8 as f64);
            assert_eq!(squad_scores(&s, &t), SquadScores { exact_match: exact_match(&s, &t), f1: token_f1(&s, &t) });
        }
    }

    #[test]
    fn hangul_syllables_are_caseless_letters() {
        for c in '\u{AC00}'..='\u{D7A3}' {
            assert!(c.is_alphanumeric() && c.to_lowercase().eq(std::iter::once(c)), "{c}");
        }
    }
}
