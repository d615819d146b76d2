//! sacrebleu's `13a`, `intl` and `char` tokenizers as token streams: each token is handed to a
//! callback as a slice of the (pre-processed) line, so BLEU can intern it without building the
//! joined, space-separated string sacrebleu returns.
//!
//! **Why this equals the regex passes.** Both tokenizers only ever *insert* spaces (13a's entity and
//! `<skipped>` replacements run first, on the line); the final `' '.join(line.split())` then cuts
//! at original whitespace and at the inserted spaces, so every token is a contiguous piece of the line.
//! The two-character rules (13a: `([^0-9])([\.,])`, `([\.,])([^0-9])`, `([0-9])(-)`; intl:
//! `(\P{N})(\p{P})`, `(\p{P})(\P{N})`) see every other character — letters, spaces, the characters
//! rule 1 pads (13a) or the symbols rule 3 pads (intl) — as one class "other", and no rule matches a
//! pair of two "other"s. A run of "others" of any length therefore behaves as a single one (at most
//! one of its two edge pairs can match in a rule, so `re.sub`'s left-to-right, non-overlapping
//! consumption never interacts across it), and the words between whitespace and padded characters
//! can be processed one at a time, with an "other" on each side (13a pads the line with spaces;
//! intl does not, so a word at the very start or end of the line has no neighbour there). Words
//! without `.`/`,`/`-` (13a) or without punctuation (intl) cannot match any rule and are one token;
//! the others are cut where the rules would insert spaces ([`split_word`] says how that follows
//! from the rules). The tests check all of this against a literal port of the regex passes,
//! exhaustively on short strings and on random longer ones.
use std::borrow::Cow;
use std::sync::OnceLock;

use super::pysplit::is_py_space;

/// Character classes for the two-character rules (13a and intl share the numbering).
const OTHER: u8 = 0;
/// 13a: `[0-9]`; intl: `\p{N}`.
const DIGIT: u8 = 1;
/// 13a: `.` or `,`; intl: `\p{P}`.
const PUNCT: u8 = 2;
/// 13a: `-`.
const DASH: u8 = 3;
/// Token separators and single-character tokens (only in the line scanners' tables).
const SPACE: u8 = 4;
/// 13a: a character rule 1 pads (`[\{-\~\[-\` -\&\(-\+\:-\@\/]`); intl: `\p{S}`.
const ALONE: u8 = 5;
/// A UTF-8 lead byte of a character that may be Python whitespace (U+0085, U+00A0, U+1680,
/// U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000); any other non-ASCII byte is "other".
const MAYBE_SPACE: u8 = 6;

/// Reusable buffers for the word splitter.
#[derive(Default)]
pub(crate) struct TokBufs {
    /// intl: byte offset and class of each character of the word (plus an end sentinel).
    chars: Vec<(u32, u8)>,
}

/// Cuts one word into tokens where the two-character rules insert spaces; `class(i)` is the class of
/// character `i` of `n`, `off(i)` its byte offset (`off(n)`: the word's length). `before_digit` /
/// `after_digit`: whether the word's outside neighbours count as digits (a missing neighbour at the
/// start or end of an intl line does; see below).
///
/// Derivation, for a maximal run of `k` punctuation characters `p1..pk` (13a: `.`/`,`; intl: `\p{P}`)
/// between neighbours `c` and `r`: rule "(non-digit)(punct) → `\1 \2 `" scans the run pairwise from
/// `c` (when `c` is not a digit it takes `c p1`, then `p2 p3`, ...; otherwise `p1 p2`, `p3 p4`, ...), so
/// it spaces every boundary inside the run, before `p1` when `c` is no digit, and after `pk` when
/// its last pair ends there. Then no two punctuation characters are adjacent, and rule "(punct)(non-digit)
/// → ` \1 \2`" spaces both sides of every punctuation character whose right neighbour is not a digit
/// (an inserted space is none). So: a lone punctuation character stays attached only between two
/// digits (`3.14`); in a longer run every character is cut off, except that the last one stays
/// attached to a following digit when the first rule's pairs did not end on it. A missing neighbour
/// matches no pair, exactly like a digit. 13a's `([0-9])(-)` rule cuts both sides of a `-` right after
/// a digit (no space is ever inserted between them by the other rules, which only touch punctuation).
#[inline]
fn split_word(
    n: usize,
    class: impl Fn(usize) -> u8,
    off: impl Fn(usize) -> usize,
    before_digit: bool,
    after_digit: bool,
    mut f: impl FnMut(usize, usize),
) {
    let mut start = 0usize;
    let mut cut = |at: usize| {
        if at > start {
            f(off(start), off(at));
            start = at;
        }
    };
    let mut i = 0;
    while i < n {
        match class(i) {
            PUNCT => {
                let s = i;
                while i < n && class(i) == PUNCT {
                    i += 1;
                }
                let k = i - s;
                let c_digit = if s == 0 { before_digit } else { class(s - 1) == DIGIT };
                let r_digit = if i == n { after_digit } else { class(i) == DIGIT };
                if k == 1 {
                    if !(c_digit && r_digit) {
                        cut(s);
                        cut(i);
                    }
                } else {
                    for j in s..i {
                        cut(j);
                    }
                    let pairs_end_on_last = (k % 2 == 1) != c_digit;
                    if !r_digit || pairs_end_on_last {
                        cut(i);
                    }
                }
                continue;
            }
            DASH if i > 0 && class(i - 1) == DIGIT => {
                cut(i);
                cut(i + 1);
            }
            _ => {}
        }
        i += 1;
    }
    cut(n);
}

static CLASS_13A: [u8; 256] = {
    let mut t = [OTHER; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = match c {
            b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f | b' ' => SPACE,
            b'{'..=b'~' | b'['..=b'`' | b'!'..=b'&' | b'('..=b'+' | b':'..=b'@' | b'/' => ALONE,
            b'0'..=b'9' => DIGIT,
            b'.' | b',' => PUNCT,
            b'-' => DASH,
            0xc2 | 0xe1 | 0xe2 | 0xe3 => MAYBE_SPACE,
            _ => OTHER,
        };
        i += 1;
    }
    t
};

/// Byte length of the Python-whitespace character starting at `b[i]` (a [`MAYBE_SPACE`] lead
/// byte), or 0 when the character there is not whitespace.
#[inline]
fn unicode_space_len(s: &str, i: usize) -> usize {
    match s[i..].chars().next() {
        Some(c) if is_py_space(c) => c.len_utf8(),
        _ => 0,
    }
}

/// 13a's line-level replacements (`<skipped>`, `-\n`, `\n`, and the four entities when the line
/// has a `&`), borrowed when none can apply.
fn preprocess_13a(line: &str) -> Cow<'_, str> {
    // Branch-free per 16-byte chunk, so the common case is a quick scan.
    let hit = |c: &[u8]| c.iter().fold(false, |h, &b| h | (b == b'<') | (b == b'\n') | (b == b'&'));
    let chunks = line.as_bytes().chunks_exact(16);
    let rest = chunks.remainder();
    if !chunks.into_iter().any(hit) && !hit(rest) {
        return Cow::Borrowed(line);
    }
    // The replacements in sacrebleu's order, each only where its pattern occurs.
    let mut l = Cow::Borrowed(line);
    for (from, to) in [("<skipped>", ""), ("-\n", ""), ("\n", " ")] {
        if l.contains(from) {
            l = Cow::Owned(l.replace(from, to));
        }
    }
    if l.contains('&') {
        for (from, to) in [("&quot;", "\""), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")] {
            if l.contains(from) {
                l = Cow::Owned(l.replace(from, to));
            }
        }
    }
    l
}

/// [`CLASS_13A`] as flags for the word scan: ends a word, needs the word rules, may be Unicode
/// whitespace.
const F_STOP: u8 = 1;
const F_RULES: u8 = 2;
const F_MAYBE_SPACE: u8 = 4;
static FLAGS_13A: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match CLASS_13A[i] {
            SPACE | ALONE => F_STOP,
            PUNCT | DASH => F_RULES,
            MAYBE_SPACE => F_MAYBE_SPACE,
            _ => 0,
        };
        i += 1;
    }
    t
};

/// The tokens of sacrebleu's `Tokenizer13a()(line)`, in order, as UTF-8 bytes (each token is whole
/// characters: its ends are next to ASCII characters or the line's ends).
pub(crate) fn each_13a(line: &str, mut f: impl FnMut(&[u8])) {
    let pre = preprocess_13a(line);
    let s: &str = &pre;
    let b = s.as_bytes();
    let n = b.len();
    let mut i = 0;
    while i < n {
        match CLASS_13A[b[i] as usize] {
            SPACE => {
                i += 1;
                continue;
            }
            ALONE => {
                f(&b[i..i + 1]);
                i += 1;
                continue;
            }
            MAYBE_SPACE => {
                let l = unicode_space_len(s, i);
                if l > 0 {
                    i += l;
                    continue;
                }
            }
            _ => {}
        }
        // A word: up to whitespace or a padded character.
        let start = i;
        let mut flags = 0u8;
        while i < n {
            let fl = FLAGS_13A[b[i] as usize];
            if fl & (F_STOP | F_MAYBE_SPACE) != 0 && (fl & F_STOP != 0 || unicode_space_len(s, i) > 0) {
                break;
            }
            flags |= fl;
            i += 1;
        }
        let word = &b[start..i];
        if flags & F_RULES != 0 {
            split_13a_word(word, &mut f);
        } else {
            f(word);
        }
    }
}

/// 13a's rules 2-4 on one word (a space on each side).
fn split_13a_word(wb: &[u8], f: &mut impl FnMut(&[u8])) {
    let class = |i: usize| match wb[i] {
        b'0'..=b'9' => DIGIT,
        b'.' | b',' => PUNCT,
        b'-' => DASH,
        _ => OTHER,
    };
    split_word(wb.len(), class, |i| i, false, false, |a, b| f(&wb[a..b]));
}

/// `\p{P}`, `\p{S}`, `\p{N}` per code point (regex-syntax's tables, as the `regex` crate uses),
/// in two levels of 256-character blocks (uniform blocks shared).
struct IntlClasses {
    ascii: [u8; 128],
    block: Vec<u16>,
    data: Vec<u8>,
}

fn intl_classes() -> &'static IntlClasses {
    static C: OnceLock<IntlClasses> = OnceLock::new();
    C.get_or_init(|| {
        // The three classes are disjoint: one sorted list of (start, end, class).
        let mut ranges: Vec<(u32, u32, u8)> = Vec::new();
        for (class, cl) in [(r"\p{N}", DIGIT), (r"\p{P}", PUNCT), (r"\p{S}", ALONE)] {
            let hir = regex_syntax::parse(class).expect("class");
            let regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(c)) = hir.kind() else {
                unreachable!("a Unicode class")
            };
            ranges.extend(c.ranges().iter().map(|r| (r.start() as u32, r.end() as u32, cl)));
        }
        ranges.sort_unstable();
        // Blocks 0-3: all OTHER, DIGIT, PUNCT, ALONE; the mixed blocks after them.
        let mut data: Vec<u8> = [OTHER, DIGIT, PUNCT, ALONE].iter().flat_map(|&c| [c; 256]).collect();
        let mut block = Vec::with_capacity(0x1100);
        let mut k = 0;
        for b in 0..0x1100u32 {
            let (lo, hi) = (b << 8, (b << 8) | 0xff);
            while k < ranges.len() && ranges[k].1 < lo {
                k += 1;
            }
            let overlapping = ranges[k..].iter().take_while(|r| r.0 <= hi);
            let mut it = overlapping.clone();
            let id = match (it.next(), it.next()) {
                (None, _) => 0,
                (Some(&(a, z, c)), None) if a <= lo && z >= hi => {
                    [DIGIT, PUNCT, ALONE].iter().position(|&x| x == c).expect("a class") as u16 + 1
                }
                _ => {
                    let start = data.len();
                    data.resize(start + 256, OTHER);
                    for &(a, z, c) in overlapping {
                        data[start + (a.max(lo) - lo) as usize..=start + (z.min(hi) - lo) as usize].fill(c);
                    }
                    (start / 256) as u16
                }
            };
            block.push(id);
        }
        let mut ascii = [OTHER; 128];
        ascii.copy_from_slice(&data[block[0] as usize * 256..block[0] as usize * 256 + 128]);
        for (i, a) in ascii.iter_mut().enumerate() {
            if is_py_space(i as u8 as char) {
                *a = SPACE;
            }
        }
        IntlClasses { ascii, block, data }
    })
}

impl IntlClasses {
    /// The class of a non-ASCII character (whitespace is not looked up here).
    #[inline]
    fn of(&self, c: char) -> u8 {
        let c = c as usize;
        self.data[(self.block[c >> 8] as usize) << 8 | (c & 0xff)]
    }
}

/// The tokens of sacrebleu's `TokenizerV14International()(line)`, in order, as UTF-8 bytes (whole
/// characters).
pub(crate) fn each_intl(line: &str, bufs: &mut TokBufs, mut f: impl FnMut(&[u8])) {
    let cls = intl_classes();
    let b = line.as_bytes();
    let n = b.len();
    // The class of the character at byte `i` and its length.
    let at = |i: usize| -> (u8, usize) {
        let x = b[i];
        if x < 0x80 {
            return (cls.ascii[x as usize], 1);
        }
        let c = line[i..].chars().next().expect("char boundary");
        let cl = if is_py_space(c) { SPACE } else { cls.of(c) };
        (cl, c.len_utf8())
    };
    let mut i = 0;
    while i < n {
        let (cl, l) = at(i);
        if cl == SPACE {
            i += l;
            continue;
        }
        if cl == ALONE {
            f(&b[i..i + l]);
            i += l;
            continue;
        }
        let start = i;
        let mut special = false;
        while i < n {
            let (cl, l) = at(i);
            if cl == SPACE || cl == ALONE {
                break;
            }
            special |= cl == PUNCT;
            i += l;
        }
        let word = &line[start..i];
        if special {
            split_intl_word(word, start == 0, i == n, bufs, &mut f);
        } else {
            f(word.as_bytes());
        }
    }
}

/// intl's two rules on one word; `at_start`/`at_end`: no character before/after it in the line.
fn split_intl_word(word: &str, at_start: bool, at_end: bool, bufs: &mut TokBufs, f: &mut impl FnMut(&[u8])) {
    let cls = intl_classes();
    if word.is_ascii() {
        let wb = word.as_bytes();
        let class = |i: usize| match cls.ascii[wb[i] as usize] {
            c @ (PUNCT | DIGIT) => c,
            _ => OTHER,
        };
        split_word(wb.len(), class, |i| i, at_start, at_end, |a, b| f(&wb[a..b]));
        return;
    }
    let chars = &mut bufs.chars;
    chars.clear();
    for (o, c) in word.char_indices() {
        let cl = if c.is_ascii() { cls.ascii[c as usize] } else { cls.of(c) };
        // intl has no dash rule.
        chars.push((o as u32, if cl == PUNCT || cl == DIGIT { cl } else { OTHER }));
    }
    let n = chars.len();
    chars.push((word.len() as u32, OTHER));
    let chars = &*chars;
    let wb = word.as_bytes();
    split_word(n, |i| chars[i].1, |i| chars[i].0 as usize, at_start, at_end, |a, b| f(&wb[a..b]));
}

/// The tokens of sacrebleu's `TokenizerChar` followed by BLEU's `split()`: every character that
/// is not whitespace.
#[inline]
pub(crate) fn each_char(line: &str, mut f: impl FnMut(char)) {
    for c in line.chars() {
        if !is_py_space(c) {
            f(c);
        }
    }
}

#[cfg(test)]
pub(crate) mod reference {
    //! Literal ports of sacrebleu's regex passes (character by character), the oracle for the tests.
    use super::super::pysplit::py_split;

    fn sub2(s: &[char], m: impl Fn(char, char) -> bool, r: impl Fn(char, char, &mut Vec<char>)) -> Vec<char> {
        let mut out = Vec::with_capacity(s.len() + 16);
        let mut i = 0;
        while i < s.len() {
            if i + 1 < s.len() && m(s[i], s[i + 1]) {
                r(s[i], s[i + 1], &mut out);
                i += 2;
            } else {
                out.push(s[i]);
                i += 1;
            }
        }
        out
    }

    fn join_split(s: &str) -> String {
        py_split(s).collect::<Vec<_>>().join(" ")
    }

    pub fn tok_13a(line: &str) -> String {
        let mut line = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
        if line.contains('&') {
            line = line.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
        }
        let p1 = |c: char| matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/');
        let mut s1: Vec<char> = Vec::new();
        for c in std::iter::once(' ').chain(line.chars()).chain(std::iter::once(' ')) {
            if p1(c) {
                s1.extend([' ', c, ' ']);
            } else {
                s1.push(c);
            }
        }
        let s2 = sub2(&s1, |a, b| !a.is_ascii_digit() && (b == '.' || b == ','), |a, b, o| o.extend([a, ' ', b, ' ']));
        let s3 = sub2(&s2, |a, b| (a == '.' || a == ',') && !b.is_ascii_digit(), |a, b, o| o.extend([' ', a, ' ', b]));
        let s4 = sub2(&s3, |a, b| a.is_ascii_digit() && b == '-', |a, b, o| o.extend([a, ' ', b, ' ']));
        join_split(&s4.into_iter().collect::<String>())
    }

    pub fn tok_intl(line: &str) -> String {
        static RE: std::sync::OnceLock<[regex::Regex; 3]> = std::sync::OnceLock::new();
        let re = RE.get_or_init(|| [r"^\p{P}$", r"^\p{S}$", r"^\p{N}$"].map(|r| regex::Regex::new(r).expect("re")));
        let has = |k: usize, c: char| re[k].is_match(c.encode_utf8(&mut [0; 4]));
        let (p, s, n) = (|c| has(0, c), |c| has(1, c), |c| has(2, c));
        let s0: Vec<char> = line.chars().collect();
        let s1 = sub2(&s0, |a, b| !n(a) && p(b), |a, b, o| o.extend([a, ' ', b, ' ']));
        let s2 = sub2(&s1, |a, b| p(a) && !n(b), |a, b, o| o.extend([' ', a, ' ', b]));
        let mut s3 = String::new();
        for ch in s2 {
            if s(ch) {
                s3.push(' ');
                s3.push(ch);
                s3.push(' ');
            } else {
                s3.push(ch);
            }
        }
        join_split(&s3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast_13a(s: &str) -> String {
        let mut v = Vec::new();
        each_13a(s, |t| v.push(String::from_utf8(t.to_vec()).expect("whole characters")));
        v.join(" ")
    }
    fn fast_intl(s: &str) -> String {
        let mut v = Vec::new();
        each_intl(s, &mut TokBufs::default(), |t| v.push(String::from_utf8(t.to_vec()).expect("whole characters")));
        v.join(" ")
    }

    /// Every string of length `1..=len` over `alphabet`, then `random` seeded random strings of
    /// length up to 24.
    fn strings(alphabet: &[char], len: usize, random: usize, mut f: impl FnMut(&str)) {
        let mut idx = vec![0usize; len];
        for l in 1..=len {
            idx[..l].iter_mut().for_each(|x| *x = 0);
            loop {
                let s: String = idx[..l].iter().map(|&i| alphabet[i]).collect();
                f(&s);
                let mut k = 0;
                while k < l {
                    idx[k] += 1;
                    if idx[k] < alphabet.len() {
                        break;
                    }
                    idx[k] = 0;
                    k += 1;
                }
                if k == l {
                    break;
                }
            }
        }
        let mut rng = medforge_text::rng::SplitMix64::new(20261122);
        for _ in 0..random {
            let l = 1 + (rng.next_u64() % 24) as usize;
            let s: String = (0..l).map(|_| alphabet[(rng.next_u64() % alphabet.len() as u64) as usize]).collect();
            f(&s);
        }
    }

    #[test]
    fn tok13a_matches_regex_passes_exhaustively() {
        // Digits, both rule-2/3 characters, the dash, a letter, a padded character, a space, a
        // non-ASCII letter, Unicode whitespace, a tab, an apostrophe.
        let alphabet = ['1', '.', ',', '-', 'a', '(', ' ', 'é', '\u{a0}', '\t', '\''];
        strings(&alphabet, 5, 100_000, |s| assert_eq!(fast_13a(s), reference::tok_13a(s), "{s:?}"));
    }

    #[test]
    fn tok13a_line_replacements_and_examples() {
        for s in [
            "",
            " ",
            "Hello, world. It's 3.14-5 (x)!",
            "a &amp; b &lt;c&gt; &quot;q&quot; &amp;lt;",
            "x <skipped> y",
            "line-\nbreak\nnext",
            "1,000.5 12-14 $5 100% e.g. ... --3 3-- 3.-4 a.,b ,.,",
            "e.g.,3,a.3.b",
            "Ünïcödé… → ±2 °C 1\u{2009}000 a\u{3000}b\u{85}c\u{1c}d",
            "고혈압 환자에게 이뇨제를 투여한다. 3.5mg, 1-2회.",
            "trailing -",
            "\u{a0}.\u{a0}",
        ] {
            assert_eq!(fast_13a(s), reference::tok_13a(s), "{s:?}");
        }
    }

    #[test]
    fn intl_class_table_is_the_regex_classes() {
        let re = [r"^\p{N}$", r"^\p{P}$", r"^\p{S}$"].map(|r| regex::Regex::new(r).expect("re"));
        let cls = intl_classes();
        for c in (0..0x110000u32).filter_map(char::from_u32).filter(|c| !c.is_ascii()) {
            let s = c.encode_utf8(&mut [0; 4]).to_string();
            let want = if re[0].is_match(&s) {
                DIGIT
            } else if re[1].is_match(&s) {
                PUNCT
            } else if re[2].is_match(&s) {
                ALONE
            } else {
                OTHER
            };
            assert_eq!(cls.of(c), want, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn intl_matches_regex_passes_exhaustively() {
        // `'` and `.` are \p{P}, `$` and `+` \p{S}, `٣` (Arabic-Indic three) and `½` are \p{N},
        // `、` is CJK punctuation, `€` a currency symbol.
        let alphabet = ['1', '.', '\'', '$', 'a', ' ', '٣', '、', '€', '\u{a0}', '-'];
        strings(&alphabet, 4, 100_000, |s| assert_eq!(fast_intl(s), reference::tok_intl(s), "{s:?}"));
        for s in [
            "",
            "Hello, world. It's 3.14-5 (x)!",
            "½.½ ².³ Ⅻ. 3.a a.3 .3. ,,",
            "«quoted» „this“ — dash – dash ‘x’",
            "고혈압 환자에게 이뇨제를 투여한다. 3.5mg, 1-2회.",
            "中文，标点。100％ ¥5",
            ".leading and trailing.",
            "\n.x\n",
        ] {
            assert_eq!(fast_intl(s), reference::tok_intl(s), "{s:?}");
        }
    }
}
