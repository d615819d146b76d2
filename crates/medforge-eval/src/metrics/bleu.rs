//! BLEU exactly as sacrebleu 2.x computes it: the `13a` (default), `intl`, `char` and `none`
//! tokenizers, the `exp` (default), `floor`, `add-k` and `none` smoothing methods, corpus and
//! sentence level (sentence BLEU uses `effective_order`, as `sacrebleu.sentence_bleu` does).
//!
//! `BLEU-1` .. `BLEU-4` are cumulative BLEU scores with uniform weights over 1..n-grams, i.e.
//! `sacrebleu.BLEU(max_ngram_order=n)` — BLEU-4 is plain BLEU. Scores are on sacrebleu's 0..100 scale.
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use serde::Serialize;

use super::pysplit::{py_rstrip, py_split};

/// A sacrebleu tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BleuTokenizer {
    /// `13a`: mteval-v13a, sacrebleu's default.
    Tok13a,
    /// `intl`: mteval-v14 international (Unicode punctuation and symbols).
    Intl,
    /// `char`: every non-space character is a token.
    Char,
    /// `none`: whitespace only.
    None,
}

impl BleuTokenizer {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "13a" => Some(Self::Tok13a),
            "intl" => Some(Self::Intl),
            "char" => Some(Self::Char),
            "none" => Some(Self::None),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Tok13a => "13a",
            Self::Intl => "intl",
            Self::Char => "char",
            Self::None => "none",
        }
    }

    /// The tokenized line, tokens separated by single spaces (as sacrebleu's tokenizer returns it).
    pub fn tokenize(self, line: &str) -> String {
        match self {
            Self::Tok13a => tok_13a(line),
            Self::Intl => tok_intl(line),
            Self::Char => {
                let mut out = String::with_capacity(line.len() * 2);
                for (i, c) in line.chars().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push(c);
                }
                out
            }
            Self::None => line.to_string(),
        }
    }
}

/// sacrebleu's smoothing methods.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Smooth {
    None,
    /// `floor` with its value (default 0.1).
    Floor(f64),
    /// `add-k` with its value (default 1).
    AddK(f64),
    /// `exp`: the mteval-v13a smoothing, sacrebleu's default.
    Exp,
}

/// BLEU settings; `Default` is sacrebleu's `BLEU()` (corpus level).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BleuConfig {
    pub tokenizer: BleuTokenizer,
    pub lowercase: bool,
    pub smooth: Smooth,
    pub max_order: usize,
    pub effective_order: bool,
}

impl Default for BleuConfig {
    fn default() -> Self {
        BleuConfig {
            tokenizer: BleuTokenizer::Tok13a,
            lowercase: false,
            smooth: Smooth::Exp,
            max_order: 4,
            effective_order: false,
        }
    }
}

impl BleuConfig {
    /// The settings of `sacrebleu.sentence_bleu` (effective order on).
    pub fn sentence() -> Self {
        BleuConfig { effective_order: true, ..Default::default() }
    }
    pub fn with_tokenizer(mut self, t: BleuTokenizer) -> Self {
        self.tokenizer = t;
        self
    }
    pub fn with_max_order(mut self, n: usize) -> Self {
        self.max_order = n;
        self
    }
}

/// A BLEU result, as sacrebleu's `BLEUScore`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BleuScore {
    pub score: f64,
    pub counts: Vec<u64>,
    pub totals: Vec<u64>,
    pub precisions: Vec<f64>,
    pub bp: f64,
    pub sys_len: u64,
    pub ref_len: u64,
}

/// Sufficient statistics of one segment: `[hyp_len, ref_len, correct.., total..]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BleuStats {
    pub sys_len: u64,
    pub ref_len: u64,
    pub correct: Vec<u64>,
    pub total: Vec<u64>,
}

impl BleuStats {
    fn zero(n: usize) -> Self {
        BleuStats { sys_len: 0, ref_len: 0, correct: vec![0; n], total: vec![0; n] }
    }
    fn add(&mut self, o: &BleuStats) {
        self.sys_len += o.sys_len;
        self.ref_len += o.ref_len;
        for (a, b) in self.correct.iter_mut().zip(&o.correct) {
            *a += b;
        }
        for (a, b) in self.total.iter_mut().zip(&o.total) {
            *a += b;
        }
    }
}

#[derive(Default)]
pub(crate) struct Fx(u64);
impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64);
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64);
    }
}
pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// Token ids for a segment: the same word gets the same id within one segment's hypothesis and
/// references, so n-grams can be compared as `&[u32]`.
struct Interner<'a> {
    ids: FxMap<&'a str, u32>,
}
impl<'a> Interner<'a> {
    fn ids(&mut self, text: &'a str) -> Vec<u32> {
        py_split(text)
            .map(|t| {
                let n = self.ids.len() as u32;
                *self.ids.entry(t).or_insert(n)
            })
            .collect()
    }
}

/// Fallback for orders above 4: slice keys.
fn ngram_counts_long(toks: &[u32], max_order: usize) -> FxMap<&[u32], u64> {
    let mut m: FxMap<&[u32], u64> = FxMap::default();
    for n in 1..=max_order {
        if toks.len() < n {
            break;
        }
        for w in toks.windows(n) {
            *m.entry(w).or_insert(0) += 1;
        }
    }
    m
}

fn preprocess(cfg: &BleuConfig, s: &str) -> String {
    let s = if cfg.lowercase { std::borrow::Cow::Owned(s.to_lowercase()) } else { std::borrow::Cow::Borrowed(s) };
    cfg.tokenizer.tokenize(py_rstrip(&s))
}

/// sacrebleu's `_get_closest_ref_len`.
fn closest_ref_len(hyp_len: u64, ref_lens: &[u64]) -> u64 {
    let mut best: Option<(u64, u64)> = None;
    for &r in ref_lens {
        let d = hyp_len.abs_diff(r);
        match best {
            None => best = Some((d, r)),
            Some((bd, bl)) => {
                if d < bd || (d == bd && r < bl) {
                    best = Some((d, r));
                }
            }
        }
    }
    best.map(|b| b.1).unwrap_or(0)
}

/// An unsigned key type n-grams are packed into.
trait Key: Copy + Ord + Default + std::ops::BitOr<Output = Self> + std::ops::Shl<u32, Output = Self> {
    const BITS: u32;
    fn from_u32(x: u32) -> Self;
    fn lz(self) -> u32;
}
impl Key for u64 {
    const BITS: u32 = 64;
    fn from_u32(x: u32) -> Self {
        x as u64
    }
    fn lz(self) -> u32 {
        self.leading_zeros()
    }
}
impl Key for u128 {
    const BITS: u32 = 128;
    fn from_u32(x: u32) -> Self {
        x as u128
    }
    fn lz(self) -> u32 {
        self.leading_zeros()
    }
}

/// Sorted n-gram keys of one token sequence (n <= 4): `id + 1` in `bits`-wide lanes, so n-grams of
/// different lengths never collide.
///
/// Keys are sorted wrapped in [`Local`], a type of this crate: `sort_unstable::<u64>` could otherwise
/// be a shared monomorphisation from a dependency built with debug assertions (3x slower here).
fn sorted_keys<K: Key>(toks: &[u32], max_order: usize, bits: u32, out: &mut Vec<Local<K>>) {
    out.clear();
    out.reserve(toks.len() * max_order);
    for n in 1..=max_order {
        if toks.len() < n {
            break;
        }
        for w in toks.windows(n) {
            let mut k = K::default();
            for (i, &id) in w.iter().enumerate() {
                k = k | (K::from_u32(id + 1) << (bits * i as u32));
            }
            out.push(Local(k));
        }
    }
    out.sort_unstable();
}

/// A key wrapped in a type of this crate (see [`sorted_keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Local<K>(K);

/// Clipped matches per order from two sorted key lists.
fn merge_counts<K: Key>(hk: &[Local<K>], rk: &[Local<K>], bits: u32, st: &mut BleuStats) {
    let (mut i, mut j) = (0, 0);
    while i < hk.len() {
        let k = hk[i];
        let mut c = 0u64;
        while i < hk.len() && hk[i] == k {
            c += 1;
            i += 1;
        }
        while j < rk.len() && rk[j] < k {
            j += 1;
        }
        let mut rc = 0u64;
        while j < rk.len() && rk[j] == k {
            rc += 1;
            j += 1;
        }
        let o = (K::BITS - k.0.lz()).div_ceil(bits) as usize - 1;
        st.total[o] += c;
        st.correct[o] += c.min(rc);
    }
}

/// Statistics of one hypothesis against its references.
pub fn segment_stats(cfg: &BleuConfig, hyp: &str, refs: &[&str]) -> BleuStats {
    let n = cfg.max_order;
    let (h, rs): (Vec<u32>, Vec<Vec<u32>>) = if cfg.tokenizer == BleuTokenizer::Char {
        // Every non-space character is a token (no joined string), interned to a small id.
        let mut map: FxMap<char, u32> = FxMap::default();
        let mut ids = |t: &str| {
            let t =
                if cfg.lowercase { std::borrow::Cow::Owned(t.to_lowercase()) } else { std::borrow::Cow::Borrowed(t) };
            py_rstrip(&t)
                .chars()
                .filter(|&c| !super::pysplit::is_py_space(c))
                .map(|c| {
                    let n = map.len() as u32;
                    *map.entry(c).or_insert(n)
                })
                .collect::<Vec<u32>>()
        };
        let h = ids(hyp);
        let rs = refs.iter().map(|r| ids(r)).collect();
        (h, rs)
    } else {
        let hyp_t = preprocess(cfg, hyp);
        let refs_t: Vec<String> = refs.iter().map(|r| preprocess(cfg, r)).collect();
        let mut int = Interner { ids: FxMap::default() };
        let h = int.ids(&hyp_t);
        (h, refs_t.iter().map(|r| int.ids(r)).collect())
    };
    let mut st = BleuStats::zero(n);
    st.sys_len = h.len() as u64;
    let ref_lens: Vec<u64> = rs.iter().map(|r| r.len() as u64).collect();
    st.ref_len = closest_ref_len(st.sys_len, &ref_lens);
    let max_id = h.iter().chain(rs.iter().flatten()).copied().max().unwrap_or(0) as u64 + 1;
    let bits = 64 - max_id.leading_zeros();
    if n <= 4 && bits * 4 <= 64 && rs.len() == 1 {
        // One reference: merge two sorted key lists.
        let (mut hk, mut rk) = (Vec::new(), Vec::new());
        sorted_keys::<u64>(&h, n, bits, &mut hk);
        sorted_keys::<u64>(&rs[0], n, bits, &mut rk);
        merge_counts(&hk, &rk, bits, &mut st);
        return st;
    }
    if n <= 4 && bits * 4 <= 128 && rs.len() == 1 {
        let (mut hk, mut rk) = (Vec::new(), Vec::new());
        sorted_keys::<u128>(&h, n, bits, &mut hk);
        sorted_keys::<u128>(&rs[0], n, bits, &mut rk);
        merge_counts(&hk, &rk, bits, &mut st);
        return st;
    }
    let mut ref_max: FxMap<&[u32], u64> = FxMap::default();
    for r in &rs {
        for (g, c) in ngram_counts_long(r, n) {
            let e = ref_max.entry(g).or_insert(0);
            *e = (*e).max(c);
        }
    }
    for (g, c) in ngram_counts_long(&h, n) {
        let k = g.len() - 1;
        st.total[k] += c;
        if let Some(&rc) = ref_max.get(g) {
            st.correct[k] += c.min(rc);
        }
    }
    st
}

fn my_log(x: f64) -> f64 {
    if x == 0.0 {
        -9999999999.0
    } else {
        x.ln()
    }
}

/// sacrebleu's `BLEU.compute_bleu` over summed statistics.
pub fn compute_bleu(cfg: &BleuConfig, st: &BleuStats) -> BleuScore {
    let n = cfg.max_order;
    let (sys_len, ref_len) = (st.sys_len, st.ref_len);
    let mut bp = 1.0;
    if sys_len < ref_len {
        bp = if sys_len > 0 { (1.0 - ref_len as f64 / sys_len as f64).exp() } else { 0.0 };
    }
    let mut precisions = vec![0.0f64; n];
    let counts = st.correct.clone();
    let totals = st.total.clone();
    if !st.correct.iter().any(|&c| c > 0) {
        return BleuScore { score: 0.0, counts, totals, precisions, bp, sys_len, ref_len };
    }
    // add-k works on floats in sacrebleu (the counts become floats after `+= k`).
    let mut correct: Vec<f64> = st.correct.iter().map(|&c| c as f64).collect();
    let mut total: Vec<f64> = st.total.iter().map(|&c| c as f64).collect();
    let mut smooth_mteval = 1.0f64;
    let mut eff_order = n;
    for k in 1..=n {
        if let Smooth::AddK(v) = cfg.smooth {
            if k > 1 {
                correct[k - 1] += v;
                total[k - 1] += v;
            }
        }
        if total[k - 1] == 0.0 {
            break;
        }
        if cfg.effective_order {
            eff_order = k;
        }
        if correct[k - 1] == 0.0 {
            match cfg.smooth {
                Smooth::Exp => {
                    smooth_mteval *= 2.0;
                    precisions[k - 1] = 100.0 / (smooth_mteval * total[k - 1]);
                }
                Smooth::Floor(v) => precisions[k - 1] = 100.0 * v / total[k - 1],
                _ => {}
            }
        } else {
            precisions[k - 1] = 100.0 * correct[k - 1] / total[k - 1];
        }
    }
    let mut s = 0.0f64;
    for p in &precisions[..eff_order] {
        s += my_log(*p);
    }
    let score = bp * (s / eff_order as f64).exp();
    BleuScore { score, counts, totals, precisions, bp, sys_len, ref_len }
}

/// Corpus BLEU: `hyps[i]` against `refs[i]` (one or more references per segment).
pub fn corpus_bleu<S: AsRef<str> + Sync, R: AsRef<str> + Sync>(
    cfg: &BleuConfig,
    hyps: &[S],
    refs: &[Vec<R>],
) -> BleuScore {
    use rayon::prelude::*;
    assert_eq!(hyps.len(), refs.len(), "corpus_bleu: {} hypotheses but {} reference sets", hyps.len(), refs.len());
    let total = hyps
        .par_iter()
        .zip(refs.par_iter())
        .with_min_len(256)
        .map(|(h, r)| {
            let rr: Vec<&str> = r.iter().map(|x| x.as_ref()).collect();
            segment_stats(cfg, h.as_ref(), &rr)
        })
        .reduce(
            || BleuStats::zero(cfg.max_order),
            |mut a, b| {
                a.add(&b);
                a
            },
        );
    compute_bleu(cfg, &total)
}

/// Sentence BLEU of one hypothesis (use [`BleuConfig::sentence`] for `sacrebleu.sentence_bleu`).
pub fn sentence_bleu(cfg: &BleuConfig, hyp: &str, refs: &[&str]) -> BleuScore {
    compute_bleu(cfg, &segment_stats(cfg, hyp, refs))
}

/// `13a`: characters sacrebleu's first regex pads with spaces.
#[inline]
fn is_13a_punct(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

fn tok_13a(line: &str) -> String {
    let mut line = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
    if line.contains('&') {
        line = line.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
    }
    // ' {line} ' then rule 1: pad ASCII punctuation (not ' , . -).
    let mut s1: Vec<char> = Vec::with_capacity(line.len() + 16);
    for c in std::iter::once(' ').chain(line.chars()).chain(std::iter::once(' ')) {
        if is_13a_punct(c) {
            s1.extend([' ', c, ' ']);
        } else {
            s1.push(c);
        }
    }
    // Rules 2-4 are two-character patterns; re.sub scans left to right without overlaps.
    let s2 = sub2(&s1, |a, b| !a.is_ascii_digit() && (b == '.' || b == ','), |a, b, o| o.extend([a, ' ', b, ' ']));
    let s3 = sub2(&s2, |a, b| (a == '.' || a == ',') && !b.is_ascii_digit(), |a, b, o| o.extend([' ', a, ' ', b]));
    let s4 = sub2(&s3, |a, b| a.is_ascii_digit() && b == '-', |a, b, o| o.extend([a, ' ', b, ' ']));
    let joined: String = s4.into_iter().collect();
    let mut out = String::with_capacity(joined.len());
    for t in py_split(&joined) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(t);
    }
    out
}

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

/// Unicode general-category ranges (from regex-syntax's tables, the same the `regex` crate uses).
struct Cat(Vec<(char, char)>, [bool; 128]);
impl Cat {
    fn new(class: &str) -> Cat {
        let hir = regex_syntax::parse(class).expect("class");
        match hir.kind() {
            regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(c)) => {
                let ranges: Vec<(char, char)> = c.ranges().iter().map(|r| (r.start(), r.end())).collect();
                let mut ascii = [false; 128];
                for (i, a) in ascii.iter_mut().enumerate() {
                    let ch = i as u8 as char;
                    *a = ranges.iter().any(|&(lo, hi)| lo <= ch && ch <= hi);
                }
                Cat(ranges, ascii)
            }
            _ => unreachable!("a Unicode class"),
        }
    }
    #[inline]
    fn has(&self, c: char) -> bool {
        if c.is_ascii() {
            return self.1[c as usize];
        }
        self.0
            .binary_search_by(|&(a, b)| {
                if c < a {
                    std::cmp::Ordering::Greater
                } else if c > b {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }
}

struct IntlCats {
    p: Cat,
    s: Cat,
    n: Cat,
}

fn intl_cats() -> &'static IntlCats {
    static C: OnceLock<IntlCats> = OnceLock::new();
    C.get_or_init(|| IntlCats { p: Cat::new(r"\p{P}"), s: Cat::new(r"\p{S}"), n: Cat::new(r"\p{N}") })
}

/// `intl`: `(\P{N})(\p{P})` → `\1 \2 `, then `(\p{P})(\P{N})` → ` \1 \2`, then `(\p{S})` → ` \1 `.
fn tok_intl(line: &str) -> String {
    let c = intl_cats();
    let s0: Vec<char> = line.chars().collect();
    let s1 = sub2(&s0, |a, b| !c.n.has(a) && c.p.has(b), |a, b, o| o.extend([a, ' ', b, ' ']));
    let s2 = sub2(&s1, |a, b| c.p.has(a) && !c.n.has(b), |a, b, o| o.extend([' ', a, ' ', b]));
    let mut s3 = String::with_capacity(s2.len() + 8);
    for ch in s2 {
        if c.s.has(ch) {
            s3.push(' ');
            s3.push(ch);
            s3.push(' ');
        } else {
            s3.push(ch);
        }
    }
    let mut out = String::with_capacity(s3.len());
    for t in py_split(&s3) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tok13a_examples() {
        assert_eq!(tok_13a("Hello, world. It's 3.14-5 (x)!"), "Hello , world . It's 3.14 - 5 ( x ) !");
        assert_eq!(tok_13a("a &amp; b &lt;c&gt;"), "a & b < c >");
    }

    #[test]
    fn sentence_examples() {
        let cfg = BleuConfig::sentence();
        let s = sentence_bleu(&cfg, "the cat sat on the mat", &["the cat sat on the mat"]);
        assert!((s.score - 100.0).abs() < 1e-9);
        let s = sentence_bleu(&cfg, "", &["the cat"]);
        assert_eq!(s.score, 0.0);
    }
}
