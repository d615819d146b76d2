//! METEOR as nltk 3.x's `nltk.translate.meteor_score.meteor_score` computes it: words lowercased,
//! aligned in three stages (exact, Porter stem, WordNet synonym), each stage matching from the last
//! hypothesis word backwards to the last still-unmatched reference position; then
//! `fmean = P·R / (α·P + (1-α)·R)`, `penalty = γ·(chunks/matches)^β`, score `(1 - penalty)·fmean`,
//! with α = 0.9, β = 3, γ = 0.5. With several references the best score counts.
//!
//! nltk quirks kept for parity: the synonym stage looks up the *stemmed* forms left over from the
//! stem stage, and synonyms are WordNet lemma names without `_`. Inputs are tokenized with Python's
//! `str.split()` (nltk needs pre-tokenized input; that is what the reference pipelines pass).
//!
//! Without WordNet ([`Meteor::new`] with `None`), only the exact and stem stages run; scores can be
//! lower than nltk's. [`Meteor::find`] logs a warning when it falls back.
use super::intern::Interner;
use super::porter;
use super::pysplit::py_split;
use super::wordnet::WordNet;

/// METEOR parameters (nltk's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeteorParams {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
}

impl Default for MeteorParams {
    fn default() -> Self {
        MeteorParams { alpha: 0.9, beta: 3.0, gamma: 0.5 }
    }
}

/// A METEOR scorer (holds WordNet when available).
#[derive(Debug)]
pub struct Meteor {
    pub wordnet: Option<WordNet>,
    pub params: MeteorParams,
}

impl Meteor {
    pub fn new(wordnet: Option<WordNet>) -> Self {
        Meteor { wordnet, params: MeteorParams::default() }
    }

    /// WordNet from `path`, or the default locations; without it, exact+stem with a warning on stderr.
    pub fn find(path: Option<&std::path::Path>) -> Self {
        let wn = match path {
            Some(p) => match WordNet::open(p) {
                Ok(w) => Some(w),
                Err(e) => {
                    eprintln!(
                        "warning: METEOR: cannot read WordNet at {}: {e}; using exact+stem matching only",
                        p.display()
                    );
                    None
                }
            },
            None => {
                let w = WordNet::find();
                if w.is_none() {
                    eprintln!(
                        "warning: METEOR: WordNet not found in {} (install Debian's wordnet-base or set MEDFORGE_WORDNET); \
                         using exact+stem matching only, scores may be lower than nltk's",
                        super::wordnet::default_dirs().iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
                    );
                }
                w
            }
        };
        Meteor::new(wn)
    }

    /// Score one hypothesis against references (untokenized: split on whitespace).
    pub fn score(&self, references: &[&str], hypothesis: &str) -> f64 {
        STATE.with(|st| {
            let st = &mut *st.borrow_mut();
            st.words.bound();
            let mut h = std::mem::take(&mut st.h);
            let mut r = std::mem::take(&mut st.r);
            st.words.ids(hypothesis, &mut h);
            let mut best: Option<f64> = None;
            for reference in references {
                st.words.ids(reference, &mut r);
                let s = self.single_ids(st, &r, &h);
                if best.is_none_or(|b| s > b) {
                    best = Some(s);
                }
            }
            st.h = h;
            st.r = r;
            best.unwrap_or(0.0)
        })
    }

    /// nltk's `single_meteor_score` on lowercased tokens.
    pub fn single(&self, reference: &[String], hypothesis: &[String]) -> f64 {
        STATE.with(|st| {
            let st = &mut *st.borrow_mut();
            st.words.bound();
            let r: Vec<u32> = reference.iter().map(|w| st.words.id(w)).collect();
            let h: Vec<u32> = hypothesis.iter().map(|w| st.words.id(w)).collect();
            self.single_ids(st, &r, &h)
        })
    }

    /// [`Meteor::single`] on word ids.
    fn single_ids(&self, st: &mut State, reference: &[u32], hypothesis: &[u32]) -> f64 {
        let State { words, align, .. } = st;
        let Align { hyp, rf, matches, heads } = align;
        hyp.clear();
        hyp.extend(hypothesis.iter().enumerate().map(|(i, &w)| (i as u32, w)));
        rf.clear();
        rf.extend(reference.iter().enumerate().map(|(i, &w)| (i as u32, w)));
        matches.clear();
        heads.resize(words.len(), NONE);
        match_enums(hyp, rf, matches, heads);
        for e in hyp.iter_mut().chain(rf.iter_mut()) {
            e.1 = words.stem(e.1);
        }
        heads.resize(words.len(), NONE);
        match_enums(hyp, rf, matches, heads);
        if let Some(wn) = &self.wordnet {
            synonym_match(wn, words, hyp, rf, matches, heads);
        }
        matches.sort_unstable_by_key(|m| m.0);
        let m = matches.len() as f64;
        let (tl, rl) = (hypothesis.len() as f64, reference.len() as f64);
        if m == 0.0 || tl == 0.0 || rl == 0.0 {
            return 0.0;
        }
        let p = m / tl;
        let r = m / rl;
        let a = self.params.alpha;
        let denom = a * p + (1.0 - a) * r;
        if denom == 0.0 {
            return 0.0;
        }
        let fmean = (p * r) / denom;
        let mut chunks = 1usize;
        for w in matches.windows(2) {
            if !(w[1].0 == w[0].0 + 1 && w[1].1 == w[0].1 + 1) {
                chunks += 1;
            }
        }
        let frag = chunks as f64 / m;
        let penalty = self.params.gamma * frag.powf(self.params.beta);
        (1.0 - penalty) * fmean
    }
}

/// No position.
const NONE: u32 = u32::MAX;

/// Words by id, with their Porter stems and WordNet synonyms as ids, computed once per word (per
/// thread; the synonyms per loaded WordNet).
#[derive(Default)]
struct Words {
    ids: Interner,
    info: Vec<WordInfo>,
    lower: String,
    text: Vec<u8>,
}

#[derive(Clone)]
struct WordInfo {
    stem: u32,
    /// The WordNet ([`WordNet::serial`]) `syns` were looked up in (0: not yet).
    syn_wn: u64,
    /// Distinct synonym ids, the word itself included.
    syns: Box<[u32]>,
}

/// More distinct words than this per thread and the memo starts over (between calls only: ids are
/// used within one call).
const MAX_WORDS: usize = 1 << 20;

impl Words {
    fn len(&self) -> usize {
        self.info.len()
    }

    fn bound(&mut self) {
        if self.info.len() > MAX_WORDS {
            self.ids.clear();
            self.info.clear();
        }
    }

    fn id(&mut self, w: &str) -> u32 {
        let id = self.ids.id(w.as_bytes());
        if id as usize == self.info.len() {
            self.info.push(WordInfo { stem: NONE, syn_wn: 0, syns: Box::new([]) });
        }
        id
    }

    /// The text of word `id`.
    fn text(&mut self, id: u32) -> String {
        self.text.clear();
        self.ids.bytes_into(id, &mut self.text);
        String::from_utf8(self.text.clone()).expect("interned from str")
    }

    /// Ids of `text`'s whitespace tokens, lowercased (as `str.lower`).
    fn ids(&mut self, text: &str, out: &mut Vec<u32>) {
        out.clear();
        for w in py_split(text) {
            let id = if w.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
                self.id(w)
            } else {
                let mut lower = std::mem::take(&mut self.lower);
                lower.clear();
                if w.is_ascii() {
                    lower.extend(w.chars().map(|c| c.to_ascii_lowercase()));
                } else {
                    lower.push_str(&w.to_lowercase());
                }
                let id = self.id(&lower);
                self.lower = lower;
                id
            };
            out.push(id);
        }
    }

    fn stem(&mut self, id: u32) -> u32 {
        let s = self.info[id as usize].stem;
        if s != NONE {
            return s;
        }
        let stem = porter::stem(&self.text(id));
        let s = self.id(&stem);
        self.info[id as usize].stem = s;
        s
    }

    fn synonyms(&mut self, wn: &WordNet, id: u32) -> &[u32] {
        if self.info[id as usize].syn_wn != wn.serial() {
            let text = self.text(id);
            let mut syns = vec![id];
            wn.each_synonym(&text, |name| syns.push(self.id(name)));
            syns.sort_unstable();
            syns.dedup();
            let info = &mut self.info[id as usize];
            info.syn_wn = wn.serial();
            info.syns = syns.into_boxed_slice();
        }
        &self.info[id as usize].syns
    }
}

/// Reused alignment buffers.
#[derive(Default)]
struct Align {
    /// (position, word id) of the words not matched yet.
    hyp: Vec<(u32, u32)>,
    rf: Vec<(u32, u32)>,
    /// (hypothesis position, reference position).
    matches: Vec<(u32, u32)>,
    /// Per word id: the last unmatched reference index with that word (then linked through
    /// `next`); all `NONE` between uses.
    heads: Vec<u32>,
}

#[derive(Default)]
struct State {
    words: Words,
    align: Align,
    h: Vec<u32>,
    r: Vec<u32>,
}

thread_local! {
    static STATE: std::cell::RefCell<State> = std::cell::RefCell::new(State::default());
}

/// Per reference index: the previous unmatched index with the same word.
fn link(rf: &[(u32, u32)], heads: &mut [u32], next: &mut Vec<u32>) {
    next.clear();
    for (j, &(_, w)) in rf.iter().enumerate() {
        next.push(heads[w as usize]);
        heads[w as usize] = j as u32;
    }
}

fn unlink(rf: &[(u32, u32)], heads: &mut [u32]) {
    for &(_, w) in rf {
        heads[w as usize] = NONE;
    }
}

/// nltk's `_match_enums`: from the last hypothesis word back, match the last unmatched equal
/// reference word; remove matched words from both lists.
fn match_enums(hyp: &mut Vec<(u32, u32)>, rf: &mut Vec<(u32, u32)>, out: &mut Vec<(u32, u32)>, heads: &mut [u32]) {
    if hyp.is_empty() || rf.is_empty() {
        return;
    }
    let mut next = Vec::new();
    NEXT.with(|n| std::mem::swap(&mut next, &mut n.borrow_mut()));
    link(rf, heads, &mut next);
    let mut any = false;
    let mut i = hyp.len();
    while i > 0 {
        i -= 1;
        let w = hyp[i].1 as usize;
        let j = heads[w];
        if j != NONE {
            heads[w] = next[j as usize];
            out.push((hyp[i].0, rf[j as usize].0));
            hyp[i].1 = NONE;
            next[j as usize] = NONE - 1;
            any = true;
        }
    }
    unlink(rf, heads);
    if any {
        hyp.retain(|e| e.1 != NONE);
        let mut j = 0;
        rf.retain(|_| {
            let keep = next[j] != NONE - 1;
            j += 1;
            keep
        });
    }
    NEXT.with(|n| std::mem::swap(&mut next, &mut n.borrow_mut()));
}

thread_local! {
    static NEXT: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// nltk's `_enum_wordnetsyn_match`: from the last hypothesis word back, match the last unmatched
/// reference word that is the word itself or one of its WordNet synonyms.
fn synonym_match(
    wn: &WordNet,
    words: &mut Words,
    hyp: &mut Vec<(u32, u32)>,
    rf: &mut Vec<(u32, u32)>,
    out: &mut Vec<(u32, u32)>,
    heads: &mut Vec<u32>,
) {
    if hyp.is_empty() || rf.is_empty() {
        return;
    }
    // Synonym lookups may add words: size the heads for them first.
    for &(_, w) in hyp.iter() {
        words.synonyms(wn, w);
    }
    heads.resize(words.len(), NONE);
    let mut next = Vec::new();
    NEXT.with(|n| std::mem::swap(&mut next, &mut n.borrow_mut()));
    link(rf, heads, &mut next);
    let mut any = false;
    let mut i = hyp.len();
    while i > 0 {
        i -= 1;
        let syns = words.synonyms(wn, hyp[i].1);
        let mut best: Option<(u32, u32)> = None;
        for &s in syns {
            let j = heads[s as usize];
            if j != NONE && best.is_none_or(|(bj, _)| j > bj) {
                best = Some((j, s));
            }
        }
        if let Some((j, s)) = best {
            heads[s as usize] = next[j as usize];
            out.push((hyp[i].0, rf[j as usize].0));
            hyp[i].1 = NONE;
            next[j as usize] = NONE - 1;
            any = true;
        }
    }
    unlink(rf, heads);
    if any {
        hyp.retain(|e| e.1 != NONE);
        let mut j = 0;
        rf.retain(|_| {
            let keep = next[j] != NONE - 1;
            j += 1;
            keep
        });
    }
    NEXT.with(|n| std::mem::swap(&mut next, &mut n.borrow_mut()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nltk_doc_example_without_wordnet_is_at_most_the_reference() {
        let h = "It is a guide to action which ensures that the military always obeys the commands of the party";
        let r = "It is a guide to action that ensures that the military will forever heed Party commands";
        let m = Meteor::new(None);
        let s = m.score(&[r], h);
        assert!(s > 0.6 && s <= 0.6944 + 1e-4, "{s}");
        assert_eq!(m.score(&["this is a cat"], "non matching hypothesis"), 0.0);
    }
}
