//! Deduplication: exact (a hash of normalised fields) then near-duplicate (MinHash + LSH). The first row
//! of each group is kept; the others are dropped with `dedup.exact:of=<id>` or `dedup.near:cluster=<k>`.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use medforge_data::{Record, RecordKind};
use medforge_text::minhash::{near_duplicate_clusters, MinHashParams};
use medforge_text::normalize::match_key;
use serde::{Deserialize, Serialize};

use super::fields::{check_fields, joined};
use crate::stage::{Decision, Stage, StageContext, StageError, StageOutput, StageResult};

/// `[[stages]] stage = "dedup"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupConfig {
    pub exact: bool,
    /// Fields hashed for exact matching. Unset: stem plus options for MCQ (KorMedMCQA repeats stems
    /// with different options), the question for everything else.
    pub exact_fields: Option<Vec<String>>,
    pub near: bool,
    /// Fields compared for near-duplicates.
    pub near_fields: Vec<String>,
    pub minhash: MinHashParams,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            exact: true,
            exact_fields: None,
            near: true,
            near_fields: vec!["question".into()],
            minhash: MinHashParams::default(),
        }
    }
}

pub struct Dedup {
    cfg: DedupConfig,
    /// `cfg.minhash` with its LSH `(bands, rows)` resolved once: the datasketch-style search for the
    /// optimal shape integrates numerically over every shape and costs a good fraction of a second.
    lsh: MinHashParams,
    bands_rows: (usize, usize),
}

/// [`joined`] without copying when it is a single text field (the usual `question`): the text stages
/// read every row's text, and copying the whole data set's questions costs time and memory.
pub(super) fn joined_cow<'a>(r: &'a Record, fields: &[String]) -> Cow<'a, str> {
    match fields {
        [f] if f != "options" => Cow::Borrowed(r.text_field(f).unwrap_or("")),
        _ => Cow::Owned(joined(r, fields)),
    }
}

impl Dedup {
    pub fn new(cfg: DedupConfig) -> Result<Self, StageError> {
        check_fields("dedup", cfg.exact_fields.as_deref().unwrap_or(&[]))?;
        check_fields("dedup", &cfg.near_fields)?;
        let bands_rows = cfg.minhash.bands_rows().map_err(|e| StageError::failed("dedup", format!("minhash: {e}")))?;
        let lsh = MinHashParams { bands: Some(bands_rows.0), rows: Some(bands_rows.1), ..cfg.minhash.clone() };
        Ok(Dedup { cfg, lsh, bands_rows })
    }

    fn exact_key(&self, r: &Record) -> String {
        let default_mcq = ["question".to_string(), "options".to_string()];
        let default_other = ["question".to_string()];
        let fields: &[String] = match &self.cfg.exact_fields {
            Some(f) => f,
            None if r.kind == RecordKind::Mcq => &default_mcq,
            None => &default_other,
        };
        match_key(&joined(r, fields))
    }

    /// For each row, the first earlier row with the same exact key, if any.
    ///
    /// Keys and their fingerprints are computed in parallel; the sequential pass then looks rows up
    /// by fingerprint and compares keys only on a fingerprint match.
    fn exact_duplicates(&self, rows: &[Record]) -> Vec<Option<usize>> {
        use rayon::prelude::*;
        use std::hash::{Hash, Hasher};
        let keys: Vec<(u64, String)> = rows
            .par_iter()
            .map(|r| {
                let key = self.exact_key(r);
                let mut h = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut h);
                (h.finish(), key)
            })
            .collect();
        first_with_key(&keys)
    }
}

/// For each `(fingerprint, key)`, the index of the first earlier entry with the same key. Keys are
/// compared only when fingerprints match: fingerprint -> first entry with it; entries with the same
/// fingerprint but another key (a collision) go to `other`.
fn first_with_key(keys: &[(u64, String)]) -> Vec<Option<usize>> {
    let mut first: HashMap<u64, usize, BuildHasherDefault<Prehashed>> =
        HashMap::with_capacity_and_hasher(keys.len(), Default::default());
    let mut other: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut of = vec![None; keys.len()];
    for (i, (print, key)) in keys.iter().enumerate() {
        match first.entry(*print) {
            Entry::Vacant(e) => {
                e.insert(i);
            }
            Entry::Occupied(e) if keys[*e.get()].1 == *key => of[i] = Some(*e.get()),
            Entry::Occupied(_) => {
                let firsts = other.entry(*print).or_default();
                match firsts.iter().find(|&&j| keys[j].1 == *key) {
                    Some(&j) => of[i] = Some(j),
                    None => firsts.push(i),
                }
            }
        }
    }
    of
}

/// A hasher for keys that already are hashes (the fingerprints above): passes them through.
#[derive(Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl Stage for Dedup {
    fn name(&self) -> &str {
        "dedup"
    }

    fn run(&mut self, rows: &mut [Record], ctx: &StageContext) -> StageResult<StageOutput> {
        use rayon::prelude::*;
        let n = rows.len();
        let mut decisions = vec![Decision::keep(); n];
        let mut exact_dropped = 0usize;
        if self.cfg.exact {
            for (i, of) in self.exact_duplicates(rows).into_iter().enumerate() {
                if let Some(j) = of {
                    decisions[i] = Decision::drop(format!("dedup.exact:of={}", rows[j].id));
                    exact_dropped += 1;
                }
            }
        }
        (ctx.progress)(n as u64 / 3, n as u64);
        let mut clusters_report = Vec::new();
        if self.cfg.near {
            // Near-duplicates among the rows exact dedup kept.
            let live: Vec<usize> = (0..n).filter(|&i| decisions[i].keep).collect();
            let texts: Vec<Cow<str>> = live.par_iter().map(|&i| joined_cow(&rows[i], &self.cfg.near_fields)).collect();
            let refs: Vec<&str> = texts.iter().map(|t| t.as_ref()).collect();
            let clusters = near_duplicate_clusters(&refs, &self.lsh)
                .map_err(|e| StageError::failed("dedup", format!("minhash: {e}")))?;
            for (k, members) in clusters.clusters.iter().enumerate() {
                let ids: Vec<&str> = members.iter().map(|&m| rows[live[m]].id.as_str()).collect();
                clusters_report.push(serde_json::json!({ "cluster": k, "kept": ids[0], "dropped": &ids[1..] }));
                for &m in &members[1..] {
                    decisions[live[m]] = Decision::drop(format!("dedup.near:cluster={k}"));
                }
            }
        }
        (ctx.progress)(n as u64, n as u64);
        let near_dropped = decisions.iter().filter(|d| !d.keep).count() - exact_dropped;
        let report = serde_json::json!({
            "rows": n,
            "exact_dropped": exact_dropped,
            "near_dropped": near_dropped,
            "minhash": self.cfg.minhash,
            "bands_rows": Some(self.bands_rows),
            "clusters": clusters_report,
        });
        Ok(StageOutput::new(decisions).with_report("dedup_report.json", report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medforge_data::McqOption;

    fn ctx_run(stage: &mut Dedup, rows: &mut [Record]) -> Vec<Option<String>> {
        let dir = std::env::temp_dir();
        let ctx = StageContext { seed: 1, run_dir: &dir, progress: &|_, _| {} };
        stage.run(rows, &ctx).unwrap().decisions.into_iter().map(|d| d.reason).collect()
    }

    fn mcq(id: &str, q: &str, opts: &[&str]) -> Record {
        let mut r = Record::new(id, "t", RecordKind::Mcq, q);
        r.options = opts
            .iter()
            .enumerate()
            .map(|(i, t)| McqOption { letter: ((b'A' + i as u8) as char).to_string(), text: t.to_string() })
            .collect();
        r
    }

    #[test]
    fn exact_mcq_key_includes_options() {
        let mut d = Dedup::new(DedupConfig { near: false, ..Default::default() }).unwrap();
        let mut rows = vec![
            mcq("a", "다음 중 옳은 것은?", &["x", "y"]),
            mcq("b", "다음 중  옳은 것은?", &["x", "y"]),
            mcq("c", "다음 중 옳은 것은?", &["x", "z"]),
        ];
        assert_eq!(ctx_run(&mut d, &mut rows), vec![None, Some("dedup.exact:of=a".into()), None]);
    }

    #[test]
    fn exact_duplicates_point_at_the_first_row_with_the_key() {
        let mut d = Dedup::new(DedupConfig { near: false, ..Default::default() }).unwrap();
        let q = |id: &str, text: &str| Record::new(id, "t", RecordKind::OpenQa, text);
        let mut rows = vec![
            q("a", "What causes gout?"),
            q("b", "what causes GOUT"),
            q("c", "What treats gout?"),
            q("d", "  What causes gout ?  "),
            q("e", "What treats gout"),
            q("f", ""),
            q("g", "?!"),
        ];
        assert_eq!(
            ctx_run(&mut d, &mut rows),
            vec![
                None,
                Some("dedup.exact:of=a".into()),
                None,
                Some("dedup.exact:of=a".into()),
                Some("dedup.exact:of=c".into()),
                None,
                Some("dedup.exact:of=f".into()),
            ]
        );
    }

    #[test]
    fn fingerprint_collisions_compare_keys() {
        let k = |p: u64, s: &str| (p, s.to_string());
        let keys = [k(1, "a"), k(1, "b"), k(2, "c"), k(1, "b"), k(1, "a"), k(1, "d"), k(1, "d"), k(2, "c")];
        assert_eq!(first_with_key(&keys), vec![None, None, None, Some(1), Some(0), None, Some(5), Some(2)]);
    }

    #[test]
    fn near_duplicates_keep_the_first_of_each_cluster() {
        let mut d = Dedup::new(DedupConfig::default()).unwrap();
        let base = "A 45-year-old man presents with crushing chest pain radiating to the left arm for two hours and diaphoresis";
        let mut rows = vec![
            Record::new("a", "t", RecordKind::OpenQa, base),
            Record::new(
                "b",
                "t",
                RecordKind::OpenQa,
                "A 7-year-old girl has a sore throat, fever and a sandpaper rash on her trunk",
            ),
            Record::new("c", "t", RecordKind::OpenQa, base.replace("two hours", "two hours,")),
            Record::new("d", "t", RecordKind::OpenQa, format!("{base} and nausea")),
        ];
        let r = ctx_run(&mut d, &mut rows);
        assert_eq!(r[0], None);
        assert_eq!(r[1], None);
        assert_eq!(r[2].as_deref(), Some("dedup.exact:of=a"), "punctuation-only change is an exact duplicate");
        assert_eq!(r[3].as_deref(), Some("dedup.near:cluster=0"));
    }
}
