//! BLEU exactly as sacrebleu 2.x computes it: the `13a` (default), `intl`, `char` and `none`
//! tokenizers, the `exp` (default), `floor`, `add-k` and `none` smoothing methods, corpus and
//! sentence level (sentence BLEU uses `effective_order`, as `sacrebleu.sentence_bleu` does).
//!
//! `BLEU-1` .. `BLEU-4` are cumulative BLEU scores with uniform weights over 1..n-grams, i.e.
//! `sacrebleu.BLEU(max_ngram_order=n)` — BLEU-4 is plain BLEU. Scores are on sacrebleu's 0..100 scale.
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::Serialize;

use super::bleu_tok::{each_13a, each_char, each_intl, TokBufs};
use super::intern::{Interner, K};
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
            Self::Tok13a | Self::Intl => {
                let mut out = String::with_capacity(line.len() + 16);
                let mut push = |t: &[u8]| {
                    if !out.is_empty() {
                        out.push(' ');
                    }
                    out.push_str(std::str::from_utf8(t).expect("tokens are whole characters"));
                };
                if self == Self::Tok13a {
                    each_13a(line, &mut push);
                } else {
                    each_intl(line, &mut TokBufs::default(), &mut push);
                }
                out
            }
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

/// Open-addressing n-gram counts for one side of a segment (keys never 0), and unigram counts by
/// id; reused across segments.
#[derive(Default)]
struct NgramTable {
    keys: Vec<u64>,
    counts: Vec<u32>,
    /// Unigrams: remaining count and presence, by token id (all `(0, false)` between segments).
    uni: Vec<(u32, bool)>,
}

/// Tokenized lines, per thread: (tokenizer, lowercase, line) to the line's token ids in a word
/// interner, so that BLEU passes over the same lines with the same tokenizer tokenize each line
/// once (sacrebleu memoises its tokenizers with `lru_cache(maxsize=2**16)` too, per tokenizer
/// object). Emptied when it holds 2^16 lines or 2^20 distinct tokens.
#[derive(Default)]
struct LineCache {
    lines: Interner,
    /// Per line id: its tokens in `toks`.
    spans: Vec<(u32, u32)>,
    toks: Vec<u32>,
    words: Interner,
    key: Vec<u8>,
}

const CACHE_LINES: usize = 1 << 16;
const CACHE_WORDS: usize = 1 << 20;

impl LineCache {
    /// Empties the cache when it is over its bounds. Only between segments: ids must not change
    /// within one.
    fn bound(&mut self) {
        if self.lines.len() >= CACHE_LINES || self.words.len() >= CACHE_WORDS {
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.lines.clear();
        self.spans.clear();
        self.toks.clear();
        self.words.clear();
    }

    /// The token ids of `text` under `cfg`'s tokenizer and lowercasing (word ids of this cache;
    /// for `char`, ASCII characters are their own ids and the others are interned above 127).
    fn tokens(&mut self, cfg: &BleuConfig, text: &str, bufs: &mut TokBufs) -> &[u32] {
        self.key.clear();
        self.key.push(cfg.tokenizer as u8 | (cfg.lowercase as u8) << 4);
        self.key.extend_from_slice(text.as_bytes());
        let known = self.lines.len();
        let id = self.lines.id(&self.key) as usize;
        if id == known {
            let start = self.toks.len();
            token_ids(cfg, text, bufs, &mut self.words, &mut self.toks);
            self.spans.push((start as u32, (self.toks.len() - start) as u32));
        }
        let (a, l) = self.spans[id];
        &self.toks[a as usize..(a + l) as usize]
    }
}

/// Everything a segment needs, kept per thread so that scoring allocates nothing in the steady state.
#[derive(Default)]
struct Scratch {
    bufs: TokBufs,
    cache: LineCache,
    /// Per cache word id: (segment stamp, dense id within the segment).
    local: Vec<(u32, u32)>,
    stamp: u32,
    hyp: Vec<u32>,
    refs: Vec<Vec<u32>>,
    table: NgramTable,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Appends the token ids of one line after sacrebleu's preprocessing (lowercase, `rstrip`, the
/// tokenizer, `split`) to `out`.
fn token_ids(cfg: &BleuConfig, text: &str, bufs: &mut TokBufs, int: &mut Interner, out: &mut Vec<u32>) {
    let lowered;
    let text = if cfg.lowercase {
        lowered = text.to_lowercase();
        lowered.as_str()
    } else {
        text
    };
    let text = py_rstrip(text);
    match cfg.tokenizer {
        BleuTokenizer::Tok13a => each_13a(text, |t| out.push(int.id(t))),
        BleuTokenizer::Intl => each_intl(text, bufs, |t| out.push(int.id(t))),
        // ASCII characters are their own ids; the others are interned above them.
        BleuTokenizer::Char => each_char(text, |c| {
            out.push(if c.is_ascii() { c as u32 } else { 128 + int.id(c.encode_utf8(&mut [0; 4]).as_bytes()) })
        }),
        BleuTokenizer::None => out.extend(py_split(text).map(|t| int.id(t.as_bytes()))),
    }
}

/// n-grams of orders `1..=max_order` with their counts (any order, any number of ids).
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

/// sacrebleu's `_get_closest_ref_len`.
fn closest_ref_len(hyp_len: u64, ref_lens: impl Iterator<Item = u64>) -> u64 {
    let mut best: Option<(u64, u64)> = None;
    for r in ref_lens {
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

/// Clipped matches and totals per order of `h` against the single reference `r`, for orders
/// `1..=n` with `n <= 4` and ids below `ids < 0xffff`.
///
/// The clipped count of an order, `sum over n-grams g of min(count_h(g), count_r(g))`, is symmetric,
/// so the shorter side is counted (unigrams by id; longer n-grams as their ids + 1 in 16-bit lanes of
/// a `u64`, so orders never collide and no key is 0, in an open-addressing table) and the other side
/// takes one count per n-gram while one is left. An n-gram can only occur on the counted side if its
/// prefix does, so each position stops at the first order that is absent.
fn match_one_ref(
    h: &[u32],
    r: &[u32],
    n: usize,
    ids: usize,
    t: &mut NgramTable,
    correct: &mut [u64],
    total: &mut [u64],
) {
    for (o, tot) in total.iter_mut().enumerate().take(n) {
        *tot += h.len().saturating_sub(o) as u64;
    }
    let (a, b) = if r.len() <= h.len() { (r, h) } else { (h, r) };
    if t.uni.len() < ids {
        t.uni.resize(ids, (0, false));
    }
    let uni = &mut t.uni[..ids];
    for &x in a {
        let u = &mut uni[x as usize];
        u.0 += 1;
        u.1 = true;
    }
    let size = (a.len() * (n - 1) * 2).next_power_of_two().max(16);
    if t.keys.len() < size {
        t.keys.resize(size, 0);
        t.counts.resize(size, 0);
    }
    let shift = 64 - size.trailing_zeros();
    let mask = size - 1;
    let keys = &mut t.keys[..size];
    let counts = &mut t.counts[..size];
    if n > 1 {
        for i in 0..a.len() {
            let mut k = a[i] as u64 + 1;
            for (o, &id) in a[i..].iter().enumerate().take(n).skip(1) {
                k |= (id as u64 + 1) << (16 * o);
                let mut s = (k.wrapping_mul(K) >> shift) as usize;
                loop {
                    if keys[s] == k {
                        counts[s] += 1;
                        break;
                    }
                    if keys[s] == 0 {
                        keys[s] = k;
                        counts[s] = 1;
                        break;
                    }
                    s = (s + 1) & mask;
                }
            }
        }
    }
    for i in 0..b.len() {
        let x = b[i];
        let u = &mut uni[x as usize];
        if !u.1 {
            continue;
        }
        if u.0 > 0 {
            u.0 -= 1;
            correct[0] += 1;
        }
        let mut k = x as u64 + 1;
        'orders: for (o, &id) in b[i..].iter().enumerate().take(n).skip(1) {
            k |= (id as u64 + 1) << (16 * o);
            let mut s = (k.wrapping_mul(K) >> shift) as usize;
            loop {
                if keys[s] == k {
                    if counts[s] > 0 {
                        counts[s] -= 1;
                        correct[o] += 1;
                    }
                    break;
                }
                if keys[s] == 0 {
                    break 'orders;
                }
                s = (s + 1) & mask;
            }
        }
    }
    if n > 1 {
        keys.fill(0);
    }
    for &x in a {
        uni[x as usize] = (0, false);
    }
}

/// Adds one segment's clipped matches and totals per order to `correct`/`total` (`cfg.max_order`
/// entries each) and returns its hypothesis length and closest reference length.
fn add_segment<R: AsRef<str>>(
    cfg: &BleuConfig,
    hyp: &str,
    refs: &[R],
    sc: &mut Scratch,
    correct: &mut [u64],
    total: &mut [u64],
) -> (u64, u64) {
    let n = cfg.max_order;
    let Scratch { bufs, cache, local, stamp, hyp: h, refs: rs, table } = sc;
    cache.bound();
    // The segment's tokens as dense ids 0.. (the same token, the same id, across hypothesis and
    // references).
    *stamp = stamp.wrapping_add(1);
    if *stamp == 0 {
        local.fill((0, 0));
        *stamp = 1;
    }
    let mut ids = 0u32;
    let mut dense = |toks: &[u32], out: &mut Vec<u32>| {
        out.clear();
        for &g in toks {
            if local.len() <= g as usize {
                local.resize(g as usize + 1, (0, 0));
            }
            let e = &mut local[g as usize];
            if e.0 != *stamp {
                *e = (*stamp, ids);
                ids += 1;
            }
            out.push(e.1);
        }
    };
    dense(cache.tokens(cfg, hyp, bufs), h);
    if rs.len() < refs.len() {
        rs.resize_with(refs.len(), Vec::new);
    }
    for (r, out) in refs.iter().zip(rs.iter_mut()) {
        dense(cache.tokens(cfg, r.as_ref(), bufs), out);
    }
    let rs = &rs[..refs.len()];
    let sys_len = h.len() as u64;
    let ref_len = closest_ref_len(sys_len, rs.iter().map(|r| r.len() as u64));
    let ids = ids as usize;
    if (1..=4).contains(&n) && rs.len() == 1 && ids < 0xffff {
        match_one_ref(h, &rs[0], n, ids, table, correct, total);
        return (sys_len, ref_len);
    }
    // Several references (counts clipped by the maximum over them), or long orders.
    let mut ref_max: FxMap<&[u32], u64> = FxMap::default();
    for r in rs {
        for (g, c) in ngram_counts_long(r, n) {
            let e = ref_max.entry(g).or_insert(0);
            *e = (*e).max(c);
        }
    }
    for (g, c) in ngram_counts_long(h, n) {
        let k = g.len() - 1;
        total[k] += c;
        if let Some(&rc) = ref_max.get(g) {
            correct[k] += c.min(rc);
        }
    }
    (sys_len, ref_len)
}

/// [`add_segment`] on this thread's scratch buffers.
fn with_segment<R: AsRef<str>>(
    cfg: &BleuConfig,
    hyp: &str,
    refs: &[R],
    correct: &mut [u64],
    total: &mut [u64],
) -> (u64, u64) {
    SCRATCH.with(|sc| add_segment(cfg, hyp, refs, &mut sc.borrow_mut(), correct, total))
}

/// Statistics of one hypothesis against its references.
pub fn segment_stats(cfg: &BleuConfig, hyp: &str, refs: &[&str]) -> BleuStats {
    let mut st = BleuStats::zero(cfg.max_order);
    let (sys_len, ref_len) = with_segment(cfg, hyp, refs, &mut st.correct, &mut st.total);
    st.sys_len = sys_len;
    st.ref_len = ref_len;
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
    compute(cfg, st.sys_len, st.ref_len, &st.correct, &st.total)
}

fn compute(cfg: &BleuConfig, sys_len: u64, ref_len: u64, correct: &[u64], total: &[u64]) -> BleuScore {
    let n = cfg.max_order;
    let mut bp = 1.0;
    if sys_len < ref_len {
        bp = if sys_len > 0 { (1.0 - ref_len as f64 / sys_len as f64).exp() } else { 0.0 };
    }
    let mut precisions = vec![0.0f64; n];
    let counts = correct.to_vec();
    let totals = total.to_vec();
    if !correct.iter().any(|&c| c > 0) {
        return BleuScore { score: 0.0, counts, totals, precisions, bp, sys_len, ref_len };
    }
    let mut smooth_mteval = 1.0f64;
    let mut eff_order = n;
    for k in 1..=n {
        // add-k works on floats in sacrebleu (the counts become floats after `+= k`).
        let add = match cfg.smooth {
            Smooth::AddK(v) if k > 1 => v,
            _ => 0.0,
        };
        let (c, t) = (correct[k - 1] as f64 + add, total[k - 1] as f64 + add);
        if t == 0.0 {
            break;
        }
        if cfg.effective_order {
            eff_order = k;
        }
        if c == 0.0 {
            match cfg.smooth {
                Smooth::Exp => {
                    smooth_mteval *= 2.0;
                    precisions[k - 1] = 100.0 / (smooth_mteval * t);
                }
                Smooth::Floor(v) => precisions[k - 1] = 100.0 * v / t,
                _ => {}
            }
        } else {
            precisions[k - 1] = 100.0 * c / t;
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
        .fold(
            || BleuStats::zero(cfg.max_order),
            |mut st, (h, r)| {
                let (sys_len, ref_len) = with_segment(cfg, h.as_ref(), r, &mut st.correct, &mut st.total);
                st.sys_len += sys_len;
                st.ref_len += ref_len;
                st
            },
        )
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
    let n = cfg.max_order;
    // The counts on the stack for the usual orders.
    let mut small = [0u64; 16];
    let mut large = Vec::new();
    let (correct, total) = if n <= 8 {
        let (c, t) = small.split_at_mut(8);
        (&mut c[..n], &mut t[..n])
    } else {
        large.resize(2 * n, 0);
        large.split_at_mut(n)
    };
    let (sys_len, ref_len) = with_segment(cfg, hyp, refs, correct, total);
    compute(cfg, sys_len, ref_len, correct, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tok13a_examples() {
        let t = BleuTokenizer::Tok13a;
        assert_eq!(t.tokenize("Hello, world. It's 3.14-5 (x)!"), "Hello , world . It's 3.14 - 5 ( x ) !");
        assert_eq!(t.tokenize("a &amp; b &lt;c&gt;"), "a & b < c >");
        assert_eq!(BleuTokenizer::Intl.tokenize("It's 3.14-5 $x."), "It ' s 3.14-5 $ x .");
    }

    #[test]
    fn sentence_examples() {
        let cfg = BleuConfig::sentence();
        let s = sentence_bleu(&cfg, "the cat sat on the mat", &["the cat sat on the mat"]);
        assert!((s.score - 100.0).abs() < 1e-9);
        let s = sentence_bleu(&cfg, "", &["the cat"]);
        assert_eq!(s.score, 0.0);
    }

    /// The n-gram maps of the general path, for one reference.
    fn clipped_by_maps(h: &[u32], r: &[u32], n: usize) -> (Vec<u64>, Vec<u64>) {
        let (mut correct, mut total) = (vec![0; n], vec![0; n]);
        let rc = ngram_counts_long(r, n);
        for (g, c) in ngram_counts_long(h, n) {
            total[g.len() - 1] += c;
            correct[g.len() - 1] += c.min(rc.get(g).copied().unwrap_or(0));
        }
        (correct, total)
    }

    #[test]
    fn one_reference_table_equals_the_maps() {
        let mut rng = medforge_text::rng::SplitMix64::new(11);
        let mut t = NgramTable::default();
        for case in 0..20_000 {
            // Small vocabularies make repeated n-grams (clipping) common; some cases are long.
            let vocab = 1 + rng.below(if case % 3 == 0 { 3 } else { 40 });
            let len = |rng: &mut medforge_text::rng::SplitMix64| rng.below(if case % 50 == 0 { 400 } else { 14 });
            let (lh, lr) = (len(&mut rng), len(&mut rng));
            let h: Vec<u32> = (0..lh).map(|_| rng.below(vocab) as u32).collect();
            let r: Vec<u32> = (0..lr).map(|_| rng.below(vocab) as u32).collect();
            for n in 1..=4 {
                let (mut c, mut tot) = (vec![0; n], vec![0; n]);
                match_one_ref(&h, &r, n, vocab, &mut t, &mut c, &mut tot);
                assert_eq!((c, tot), clipped_by_maps(&h, &r, n), "{h:?} {r:?} {n}");
            }
        }
    }

    #[test]
    fn line_cache_keys_tokenizer_and_case() {
        let lines = ["The cat, the CAT. It's 3.14-5!", "the cat the cat its 3 14 5", "고혈압 환자, 3.5mg"];
        let configs: Vec<BleuConfig> =
            [BleuTokenizer::Tok13a, BleuTokenizer::Intl, BleuTokenizer::Char, BleuTokenizer::None]
                .into_iter()
                .flat_map(|t| {
                    [false, true].map(|lowercase| BleuConfig { lowercase, ..BleuConfig::sentence().with_tokenizer(t) })
                })
                .collect();
        // Scores computed cold (fresh thread) and then again in an interleaved order (cache hits).
        let cold: Vec<f64> = std::thread::spawn({
            let configs = configs.clone();
            move || {
                let mut v = Vec::new();
                for c in &configs {
                    for h in lines {
                        for r in lines {
                            v.push(sentence_bleu(c, h, &[r]).score);
                        }
                    }
                }
                v
            }
        })
        .join()
        .expect("thread");
        let mut warm = Vec::new();
        for _ in 0..2 {
            warm.clear();
            for c in &configs {
                for h in lines {
                    for r in lines {
                        warm.push(sentence_bleu(c, h, &[r]).score);
                    }
                }
            }
        }
        assert_eq!(cold, warm);
        // Lowercasing and the tokenizer are part of the key.
        let lc = BleuConfig { lowercase: true, ..BleuConfig::sentence() };
        assert_eq!(segment_stats(&lc, "The CAT", &["the cat"]).correct[0], 2);
        assert_eq!(segment_stats(&BleuConfig::sentence(), "The CAT", &["the cat"]).correct[0], 0);
        let ch = BleuConfig::sentence().with_tokenizer(BleuTokenizer::Char);
        assert_eq!(segment_stats(&ch, "The CAT", &["the cat"]).total[0], 6);
    }

    #[test]
    fn line_cache_empties_at_its_bound() {
        let mut cache = LineCache::default();
        let mut bufs = TokBufs::default();
        let cfg = BleuConfig::default();
        for i in 0..CACHE_LINES + 10 {
            let line = format!("w{i} shared");
            cache.bound();
            let toks = cache.tokens(&cfg, &line, &mut bufs).to_vec();
            assert_eq!(toks.len(), 2);
            assert!(cache.lines.len() <= CACHE_LINES);
            // The same line again: the same ids.
            assert_eq!(cache.tokens(&cfg, &line, &mut bufs), &toks[..]);
        }
        assert_eq!(cache.lines.len(), 10);
        // A segment whose hypothesis fills the cache: its reference is still tokenized with the
        // same word ids (the cache empties only between segments).
        let mut sc = Scratch::default();
        for i in 0..CACHE_LINES - 1 {
            sc.cache.tokens(&cfg, &format!("filler {i}"), &mut bufs);
        }
        let (mut c, mut t) = (vec![0; 4], vec![0; 4]);
        add_segment(&cfg, "the cat sat on the mat", &["the cat sat on the mat ."], &mut sc, &mut c, &mut t);
        assert_eq!((c.clone(), t), (vec![6, 5, 4, 3], vec![6, 5, 4, 3]));
        assert!(sc.cache.lines.len() > CACHE_LINES);
        c.fill(0);
        let mut t = vec![0; 4];
        add_segment(&cfg, "the cat", &["the cat"], &mut sc, &mut c, &mut t);
        assert_eq!(sc.cache.lines.len(), 1);
        assert_eq!(c, vec![2, 1, 0, 0]);
    }

    #[test]
    fn several_references_and_long_orders() {
        // Several references take the general path: the best reference's counts clip.
        let cfg = BleuConfig::sentence();
        let s = sentence_bleu(&cfg, "the cat sat on the mat", &["a dog sat", "the cat sat on the mat"]);
        assert!((s.score - 100.0).abs() < 1e-9);
        let one = segment_stats(&cfg, "the the the cat", &["the cat"]);
        let two = segment_stats(&cfg, "the the the cat", &["the cat", "the the dog"]);
        assert_eq!(one.correct, vec![2, 1, 0, 0]);
        assert_eq!(two.correct, vec![3, 2, 0, 0]);
        assert_eq!((two.sys_len, two.ref_len), (4, 3));
        let c6 = BleuConfig::default().with_max_order(6);
        let st = segment_stats(&c6, "a b c d e f g", &["a b c d e f x"]);
        assert_eq!(st.correct, vec![6, 5, 4, 3, 2, 1]);
        assert_eq!(st.total, vec![7, 6, 5, 4, 3, 2]);
    }
}
