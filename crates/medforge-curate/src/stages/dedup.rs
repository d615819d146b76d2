//! Deduplication: exact (a hash of normalised fields) then near-duplicate (MinHash + LSH). The first row
//! of each group is kept; the others are dropped with `dedup.exact:of=<id>` or `dedup.near:cluster=<k>`.

use std::borrow::Cow;
use std::collections::HashMap;

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
        cfg.minhash.bands_rows().map_err(|e| StageError::failed("dedup", format!("minhash: {e}")))?;
        Ok(Dedup { cfg })
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
            let keys: Vec<String> = rows.par_iter().map(|r| self.exact_key(r)).collect();
            let mut first: HashMap<&str, usize> = HashMap::with_capacity(n);
            for (i, k) in keys.iter().enumerate() {
                match first.get(k.as_str()) {
                    Some(&j) => {
                        decisions[i] = Decision::drop(format!("dedup.exact:of={}", rows[j].id));
                        exact_dropped += 1;
                    }
                    None => {
                        first.insert(k, i);
                    }
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
            let clusters = near_duplicate_clusters(&refs, &self.cfg.minhash)
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
            "bands_rows": self.cfg.minhash.bands_rows().ok(),
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
