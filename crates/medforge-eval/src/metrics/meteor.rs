//! METEOR as nltk 3.x's `nltk.translate.meteor_score.meteor_score` computes it: words lowercased,
//! aligned in three stages (exact, Porter stem, WordNet synonym), each stage matching from the last
//! hypothesis word backwards to the last still-unmatched reference position; then
//! `fmean = P·R / (α·P + (1-α)·R)`, `penalty = γ·(chunks/matches)^β`, score `(1 - penalty)·fmean`,
//! with α = 0.9, β = 3, γ = 0.5. With several references the best score counts.
//!
//! nltk quirks kept for parity: the synonym stage looks up the *stemmed* forms left over from the
//! stem stage, and synonyms are WordNet lemma names without `_`. Inputs are tokenized with Python's
//! `str.split()` (nltk needs pre-tokenized input; that is what the seeds pass).
//!
//! Without WordNet ([`Meteor::new`] with `None`), only the exact and stem stages run; scores can be
//! lower than nltk's. [`Meteor::find`] logs a warning when it falls back.
use std::collections::HashMap;

use super::pysplit::py_split;
use super::rouge::stem_cached;
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
        let h: Vec<String> = py_split(hypothesis).map(|w| w.to_lowercase()).collect();
        let mut best: Option<f64> = None;
        for r in references {
            let rt: Vec<String> = py_split(r).map(|w| w.to_lowercase()).collect();
            let s = self.single(&rt, &h);
            if best.is_none_or(|b| s > b) {
                best = Some(s);
            }
        }
        best.unwrap_or(0.0)
    }

    /// nltk's `single_meteor_score` on lowercased tokens.
    pub fn single(&self, reference: &[String], hypothesis: &[String]) -> f64 {
        let mut hyp: Vec<(usize, String)> = hypothesis.iter().cloned().enumerate().collect();
        let mut rf: Vec<(usize, String)> = reference.iter().cloned().enumerate().collect();
        let mut matches: Vec<(usize, usize)> = Vec::new();
        match_enums(&mut hyp, &mut rf, &mut matches);
        for e in hyp.iter_mut().chain(rf.iter_mut()) {
            e.1 = stem_cached(&e.1);
        }
        match_enums(&mut hyp, &mut rf, &mut matches);
        if let Some(wn) = &self.wordnet {
            synonym_match(wn, &mut hyp, &mut rf, &mut matches);
        }
        matches.sort_by_key(|m| m.0);
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
        let mut i = 0;
        while i + 1 < matches.len() {
            if !(matches[i + 1].0 == matches[i].0 + 1 && matches[i + 1].1 == matches[i].1 + 1) {
                chunks += 1;
            }
            i += 1;
        }
        let frag = chunks as f64 / m;
        let penalty = self.params.gamma * frag.powf(self.params.beta);
        (1.0 - penalty) * fmean
    }
}

/// nltk's `_match_enums`: from the last hypothesis word back, match the last unmatched equal
/// reference word; remove matched words from both lists.
fn match_enums(hyp: &mut Vec<(usize, String)>, rf: &mut Vec<(usize, String)>, out: &mut Vec<(usize, usize)>) {
    let mut positions: HashMap<&str, Vec<usize>> = HashMap::new();
    for (j, (_, w)) in rf.iter().enumerate() {
        positions.entry(w.as_str()).or_default().push(j);
    }
    let mut mh = vec![false; hyp.len()];
    let mut mr = vec![false; rf.len()];
    for i in (0..hyp.len()).rev() {
        if let Some(p) = positions.get_mut(hyp[i].1.as_str()) {
            if let Some(j) = p.pop() {
                mh[i] = true;
                mr[j] = true;
                out.push((hyp[i].0, rf[j].0));
            }
        }
    }
    drop(positions);
    retain_unmatched(hyp, &mh);
    retain_unmatched(rf, &mr);
}

fn retain_unmatched(v: &mut Vec<(usize, String)>, matched: &[bool]) {
    let mut k = 0;
    v.retain(|_| {
        let keep = !matched[k];
        k += 1;
        keep
    });
}

/// nltk's `_enum_wordnetsyn_match`.
fn synonym_match(
    wn: &WordNet,
    hyp: &mut Vec<(usize, String)>,
    rf: &mut Vec<(usize, String)>,
    out: &mut Vec<(usize, usize)>,
) {
    if hyp.is_empty() || rf.is_empty() {
        return;
    }
    let mut positions: HashMap<String, Vec<usize>> = HashMap::new();
    for (j, (_, w)) in rf.iter().enumerate() {
        positions.entry(w.clone()).or_default().push(j);
    }
    let mut mh = vec![false; hyp.len()];
    let mut mr = vec![false; rf.len()];
    for i in (0..hyp.len()).rev() {
        let word = &hyp[i].1;
        let syns = wn.synonyms(word);
        let mut best: Option<(usize, &str)> = None;
        for syn in syns.iter().map(String::as_str).chain(std::iter::once(word.as_str())) {
            if let Some(&last) = positions.get(syn).and_then(|p| p.last()) {
                if best.is_none_or(|(bj, _)| last > bj) {
                    best = Some((last, syn));
                }
            }
        }
        if let Some((j, w)) = best {
            let w = w.to_string();
            positions.get_mut(&w).expect("present").pop();
            mh[i] = true;
            mr[j] = true;
            out.push((hyp[i].0, rf[j].0));
        }
    }
    retain_unmatched(hyp, &mh);
    retain_unmatched(rf, &mr);
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
