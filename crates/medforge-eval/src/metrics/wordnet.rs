//! The part of WordNet 3.0 that METEOR's synonym stage needs, read from a standard WordNet `dict`
//! folder (`index.*`, `data.*`, `*.exc`), e.g. Debian's `wordnet-base` at `/usr/share/wordnet`.
//!
//! [`WordNet::synonyms`] reproduces what nltk's METEOR collects for a word:
//! `{lemma.name() for synset in wordnet.synsets(word) for lemma in synset.lemmas() if "_" not in
//! lemma.name()}`, where `synsets` runs nltk's `_morphy` (exception lists, then one round of the
//! detachment rules, keeping forms that are in the index) for nouns, verbs, adjectives and adverbs.
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::bleu::FxMap;

const POS: [(&str, char); 4] = [("noun", 'n'), ("verb", 'v'), ("adj", 'a'), ("adv", 'r')];

/// Where WordNet is looked for when no path is given: `$MEDFORGE_WORDNET` alone when it is set,
/// else Debian's `wordnet-base` location, then `$WNHOME/dict`.
pub fn default_dirs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(p) = std::env::var("MEDFORGE_WORDNET") {
        v.push(PathBuf::from(p));
        return v;
    }
    v.push(PathBuf::from("/usr/share/wordnet"));
    if let Ok(p) = std::env::var("WNHOME") {
        v.push(PathBuf::from(p).join("dict"));
    }
    v
}

/// A loaded WordNet dictionary.
pub struct WordNet {
    dir: PathBuf,
    /// lemma -> offsets per POS index (n, v, a, r).
    index: FxMap<String, [Vec<u64>; 4]>,
    exceptions: [FxMap<String, Vec<String>>; 4],
    data: [Vec<u8>; 4],
    cache: Mutex<HashMap<String, std::sync::Arc<HashSet<String>>>>,
    /// Distinguishes loaded dictionaries (for caches kept outside this value).
    serial: u64,
}

impl std::fmt::Debug for WordNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WordNet({}, {} lemmas)", self.dir.display(), self.index.len())
    }
}

impl WordNet {
    /// The first of [`default_dirs`] that holds a WordNet dict, if any.
    pub fn find() -> Option<WordNet> {
        default_dirs().into_iter().find_map(|d| WordNet::open(&d).ok())
    }

    /// Load a WordNet dict folder.
    pub fn open(dir: &Path) -> std::io::Result<WordNet> {
        let mut index: FxMap<String, [Vec<u64>; 4]> = FxMap::default();
        let mut exceptions: [FxMap<String, Vec<String>>; 4] = Default::default();
        let mut data: [Vec<u8>; 4] = Default::default();
        for (k, (suffix, _)) in POS.iter().enumerate() {
            let text = std::fs::read_to_string(dir.join(format!("index.{suffix}")))?;
            for line in text.lines() {
                if line.starts_with(' ') {
                    continue;
                }
                let mut it = line.split_ascii_whitespace();
                let (Some(lemma), Some(_pos), Some(n)) = (it.next(), it.next(), it.next()) else { continue };
                let Ok(n_synsets) = n.parse::<usize>() else { continue };
                let Some(Ok(n_ptr)) = it.next().map(str::parse::<usize>) else { continue };
                let mut it = it.skip(n_ptr + 2); // pointer symbols, sense_cnt, tagsense_cnt
                let offs: Vec<u64> = (0..n_synsets).filter_map(|_| it.next().and_then(|o| o.parse().ok())).collect();
                index.entry(lemma.to_string()).or_default()[k] = offs;
            }
            let exc = std::fs::read_to_string(dir.join(format!("{suffix}.exc")))?;
            for line in exc.lines() {
                let mut it = line.split_ascii_whitespace();
                if let Some(w) = it.next() {
                    exceptions[k].insert(w.to_string(), it.map(str::to_string).collect());
                }
            }
            data[k] = std::fs::read(dir.join(format!("data.{suffix}")))?;
        }
        if index.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "empty WordNet index"));
        }
        static SERIAL: AtomicU64 = AtomicU64::new(1);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        Ok(WordNet { dir: dir.to_path_buf(), index, exceptions, data, cache: Mutex::new(HashMap::new()), serial })
    }

    /// A number that differs between loaded dictionaries (never 0).
    pub fn serial(&self) -> u64 {
        self.serial
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// nltk's `_morphy(form, pos)`: each distinct candidate form that has synsets in part of
    /// speech `k`, in nltk's order.
    fn morphy(&self, form: &str, k: usize, mut f: impl FnMut(&str)) {
        const NOUN: &[(&str, &str)] = &[
            ("s", ""),
            ("ses", "s"),
            ("ves", "f"),
            ("xes", "x"),
            ("zes", "z"),
            ("ches", "ch"),
            ("shes", "sh"),
            ("men", "man"),
            ("ies", "y"),
        ];
        const VERB: &[(&str, &str)] =
            &[("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")];
        const ADJ: &[(&str, &str)] = &[("er", ""), ("est", ""), ("er", "e"), ("est", "e")];
        let subs: &[(&str, &str)] = match k {
            0 => NOUN,
            1 => VERB,
            2 => ADJ,
            _ => &[],
        };
        let mut seen: Vec<String> = Vec::new();
        let mut consider = |cand: &str| {
            if self.index.get(cand).is_some_and(|e| !e[k].is_empty()) && !seen.iter().any(|s| s == cand) {
                f(cand);
                seen.push(cand.to_string());
            }
        };
        consider(form);
        if let Some(exc) = self.exceptions[k].get(form) {
            for e in exc {
                consider(e);
            }
        } else {
            let mut buf = String::new();
            for (old, new) in subs {
                if let Some(stem) = form.strip_suffix(old) {
                    buf.clear();
                    buf.push_str(stem);
                    buf.push_str(new);
                    consider(&buf);
                }
            }
        }
    }

    /// The lemma names of the synset at `offset` in part of speech `k`, without the syntactic
    /// marker of an adjective and without names that have `_`.
    fn lemma_names(&self, k: usize, offset: u64, mut f: impl FnMut(&str)) {
        let d = &self.data[k];
        let start = offset as usize;
        if start >= d.len() {
            return;
        }
        let end = d[start..].iter().position(|&b| b == b'\n').map_or(d.len(), |e| start + e);
        let line = String::from_utf8_lossy(&d[start..end]);
        let mut it = line.split_ascii_whitespace();
        let _off = it.next();
        let _lexfile = it.next();
        let _sstype = it.next();
        let Some(n) = it.next().and_then(|h| usize::from_str_radix(h, 16).ok()) else { return };
        for _ in 0..n {
            let (Some(name), Some(_lexid)) = (it.next(), it.next()) else { return };
            // Strip an adjective's syntactic marker: `(.*?)(\([^()]*\))?$`.
            let name = match name.strip_suffix(')').and_then(|s| s.rfind('(').map(|i| (s, i))) {
                Some((s, i)) if !s[i + 1..].contains(['(', ')']) => &name[..i],
                _ => name,
            };
            if !name.contains('_') {
                f(name);
            }
        }
    }

    /// Calls `f` with each lemma name (without `_`) of every synset of `word` in any part of speech,
    /// as nltk's METEOR collects them; a name may come more than once. `word` should already be
    /// lowercase, as METEOR's are.
    pub fn each_synonym(&self, word: &str, mut f: impl FnMut(&str)) {
        let lower;
        let word = if word.bytes().any(|b| b.is_ascii_uppercase()) || !word.is_ascii() {
            lower = word.to_lowercase();
            lower.as_str()
        } else {
            word
        };
        for k in 0..4 {
            self.morphy(word, k, |form| {
                if let Some(e) = self.index.get(form) {
                    for &off in &e[k] {
                        self.lemma_names(k, off, &mut f);
                    }
                }
            });
        }
    }

    /// The set of [`WordNet::each_synonym`] (cached).
    pub fn synonyms(&self, word: &str) -> std::sync::Arc<HashSet<String>> {
        if let Some(s) = self.cache.lock().expect("wordnet cache").get(word) {
            return s.clone();
        }
        let mut out = HashSet::new();
        self.each_synonym(word, |name| {
            out.insert(name.to_string());
        });
        let out = std::sync::Arc::new(out);
        self.cache.lock().expect("wordnet cache").insert(word.to_string(), out.clone());
        out
    }
}
