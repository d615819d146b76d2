//! The Meerkat progressive pipeline's split workflow: a fixed holdout per specialty, an initial training share,
//! an eval share of that, and a pool of the rest that later rounds draw from.
//!
//! That pipeline (`create_datasets` / `update_training_data` in its dataset-preparation script) does:
//! 1. per specialty, `HOLDOUT_SAMPLES_PER_SPECIALTY` (10) "diverse" questions: sort by question length,
//!    cut into that many equal bins, take one at random from each bin;
//! 2. per specialty, `INITIAL_TRAIN_PERCENTAGE` (0.5) of the remaining rows, or the specialty's own
//!    share from `SPECIALTY_SAMPLE_PERCENTAGES`, at least one row;
//! 3. `EVAL_SPLIT_SIZE` (0.2) of those, stratified by specialty, as eval; the rest of the remaining rows
//!    is the pool (`eval_pool_dataset`);
//! 4. after an evaluation, `update_training_data` raises the share of weak specialties and *re-runs
//!    everything*, which reshuffles eval, so round-2 scores are not comparable with round 1.
//!
//! [`plan_splits`] does 1-3 with the same parameters. [`update`] replaces 4: it moves rows from the
//! pool into train for the specialties the evaluation report recommends, and leaves holdout and eval
//! exactly as they were (same ids, same order, hence byte-identical files), so every round is scored
//! on the same questions. Each specialty has its own ChaCha8 stream seeded from `(seed, specialty)`,
//! so a specialty's split does not change when another specialty gains or loses rows.
//!
//! The recommendations are the eval report's `training_recommendations.json`; see
//! [`medforge_data::recommendations::Recommendations`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use medforge_data::recommendations::{norm_specialty, Recommendations, Target};
use medforge_data::write::{write_all, OutputFormat};
use medforge_data::{Error, Record, Result};
use medforge_text::rng::{derive_seed, StableRng};
use serde::{Deserialize, Serialize};

use crate::sample::specialty_key;
use crate::taxonomy::write_json;

/// File name of the plan inside a split folder.
pub const PLAN_FILE: &str = "split_plan.json";
/// File name of the statistics inside a split folder (the Meerkat pipeline's name).
pub const STATS_FILE: &str = "dataset_stats.json";
/// Tolerance for `floor(n * fraction)`, so that `0.29 * 100` gives 29 and not 28.
const EPS: f64 = 1e-9;

/// Options of [`plan_splits`]; defaults are the Meerkat pipeline's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitOptions {
    /// Held-out rows per specialty (seed: 10). A specialty with this many rows or fewer goes to the
    /// holdout entirely, as in the Meerkat pipeline: a fixed test set for it matters more than a few training rows.
    pub holdout_per_specialty: usize,
    /// Share of each specialty's non-holdout rows drawn for train + eval (seed: 0.5). At least one row
    /// is drawn when the share is above 0 (that pipeline forces one row even at 0; an explicit 0 here
    /// means none).
    pub train_fraction: f64,
    /// Share of the drawn rows that go to eval, per specialty (seed: 0.2, stratified);
    /// `round(drawn * eval_fraction)`, but at least one drawn row stays in train.
    pub eval_fraction: f64,
    pub seed: u64,
    /// Per-specialty override of `train_fraction` (the Meerkat pipeline's `SPECIALTY_SAMPLE_PERCENTAGES`).
    #[serde(default)]
    pub specialty_fractions: BTreeMap<String, f64>,
}

impl Default for SplitOptions {
    fn default() -> Self {
        SplitOptions {
            holdout_per_specialty: 10,
            train_fraction: 0.5,
            eval_fraction: 0.2,
            seed: 42,
            specialty_fractions: BTreeMap::new(),
        }
    }
}

/// Which record ids go where. Lists are grouped by specialty (sorted by name); within a specialty the
/// holdout runs from short to long questions and the other lists follow the seeded shuffle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitPlan {
    pub options: SplitOptions,
    pub holdout: Vec<String>,
    pub train: Vec<String>,
    pub eval: Vec<String>,
    pub pool: Vec<String>,
    /// One entry per [`update`], oldest first.
    #[serde(default)]
    pub updates: Vec<PlanUpdate>,
}

/// What one [`update`] changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanUpdate {
    /// 1 for the first update.
    pub round: usize,
    /// Per specialty that a recommendation matched.
    pub changes: BTreeMap<String, SpecialtyChange>,
    /// Recommended specialties (as written) that match no specialty of the records.
    pub unmatched: Vec<String>,
    /// Records that were not in the plan; they joined the pool.
    pub new_rows: usize,
}

/// One specialty's change in an [`update`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialtyChange {
    /// The recommendation that applied, e.g. `recommended_actions.recommended_data_increase = "50-80%"`.
    pub reason: String,
    pub train_before: usize,
    /// The train size the recommendation asks for.
    pub train_target: usize,
    pub train_after: usize,
    /// Rows moved from the pool (less than asked when the pool ran out).
    pub moved: usize,
    pub pool_left: usize,
}

/// `dataset_stats.json`: the Meerkat pipeline's keys first, then per-split counts it did not keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetStats {
    pub total_specialties: usize,
    pub holdout_samples: usize,
    pub train_samples: usize,
    pub eval_samples: usize,
    pub eval_pool_samples: usize,
    /// Rows drawn for training per specialty, train + eval, as the Meerkat pipeline counts them (its `train_data`
    /// before the eval split); every specialty is listed, zeros included.
    pub samples_per_specialty: BTreeMap<String, usize>,
    pub train_per_specialty: BTreeMap<String, usize>,
    pub eval_per_specialty: BTreeMap<String, usize>,
    pub holdout_per_specialty: BTreeMap<String, usize>,
    pub pool_per_specialty: BTreeMap<String, usize>,
    /// Number of updates applied to the plan.
    pub round: usize,
}

fn check_fraction(name: &str, v: f64, max_inclusive: bool) -> Result<()> {
    let ok = v >= 0.0 && if max_inclusive { v <= 1.0 } else { v < 1.0 };
    if ok {
        Ok(())
    } else {
        let range = if max_inclusive { "[0, 1]" } else { "[0, 1)" };
        Err(Error::Config(format!("split: {name} must be in {range}, got {v}")))
    }
}

fn index_by_id(records: &[Record]) -> Result<HashMap<&str, usize>> {
    let mut m = HashMap::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        if m.insert(r.id.as_str(), i).is_some() {
            return Err(Error::Config(format!(
                "split: duplicate record id `{}`; splits are keyed by id (deduplicate first)",
                r.id
            )));
        }
    }
    Ok(m)
}

/// Rows of each specialty, in input order.
fn by_specialty(records: &[Record]) -> BTreeMap<&str, Vec<usize>> {
    let mut m: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        m.entry(specialty_key(r)).or_default().push(i);
    }
    m
}

/// The Meerkat pipeline's `sample_diverse_queries`: sort by question length (then id, so equal lengths have a
/// fixed order), cut into `n` bins of `len / n` rows, draw one row per bin. Returned short to long.
fn diverse_holdout(records: &[Record], rows: &[usize], n: usize, rng: &mut StableRng) -> Vec<usize> {
    if rows.len() <= n {
        return rows.to_vec();
    }
    if n == 0 {
        return Vec::new();
    }
    let mut by_len = rows.to_vec();
    by_len.sort_by(|&a, &b| {
        let (ra, rb) = (&records[a], &records[b]);
        ra.question.chars().count().cmp(&rb.question.chars().count()).then_with(|| ra.id.cmp(&rb.id))
    });
    let bin = rows.len() / n;
    (0..n).map(|b| by_len[b * bin + rng.below(bin)]).collect()
}

/// Split records into holdout, train, eval and pool (see the module docs).
///
/// Errors on duplicate ids (the plan is keyed by id) and on fractions outside `[0, 1]`
/// (`eval_fraction` must be below 1).
pub fn plan_splits(records: &[Record], opts: &SplitOptions) -> Result<SplitPlan> {
    check_fraction("train_fraction", opts.train_fraction, true)?;
    check_fraction("eval_fraction", opts.eval_fraction, false)?;
    for (s, &f) in &opts.specialty_fractions {
        check_fraction(&format!("specialty_fractions[{s}]"), f, true)?;
    }
    index_by_id(records)?;
    let mut plan = SplitPlan {
        options: opts.clone(),
        holdout: Vec::new(),
        train: Vec::new(),
        eval: Vec::new(),
        pool: Vec::new(),
        updates: Vec::new(),
    };
    let id = |i: usize| records[i].id.clone();
    for (specialty, rows) in by_specialty(records) {
        let mut rng = StableRng::from_seed_u64(derive_seed(opts.seed, specialty));
        let holdout = diverse_holdout(records, &rows, opts.holdout_per_specialty, &mut rng);
        let held: HashSet<usize> = holdout.iter().copied().collect();
        let mut rest: Vec<usize> = rows.iter().copied().filter(|i| !held.contains(i)).collect();
        rng.shuffle(&mut rest);

        let frac = opts.specialty_fractions.get(specialty).copied().unwrap_or(opts.train_fraction);
        let mut drawn = ((rest.len() as f64 * frac + EPS).floor() as usize).min(rest.len());
        if drawn == 0 && frac > 0.0 && !rest.is_empty() {
            drawn = 1;
        }
        let n_eval = ((drawn as f64 * opts.eval_fraction).round() as usize).min(drawn.saturating_sub(1));
        plan.holdout.extend(holdout.into_iter().map(id));
        plan.eval.extend(rest[..n_eval].iter().map(|&i| id(i)));
        plan.train.extend(rest[n_eval..drawn].iter().map(|&i| id(i)));
        plan.pool.extend(rest[drawn..].iter().map(|&i| id(i)));
    }
    Ok(plan)
}

impl SplitPlan {
    /// Read a plan written by [`write_splits`] (`split_plan.json`).
    pub fn load(path: &Path) -> Result<SplitPlan> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let plan: SplitPlan = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Config(format!("{}: not a split plan: {e}", path.display())))?;
        plan.check_disjoint()?;
        Ok(plan)
    }

    /// Every id once, across all four lists.
    fn check_disjoint(&self) -> Result<()> {
        let mut seen = HashSet::new();
        for id in self.holdout.iter().chain(&self.train).chain(&self.eval).chain(&self.pool) {
            if !seen.insert(id.as_str()) {
                return Err(Error::Config(format!("split plan lists id `{id}` twice")));
            }
        }
        Ok(())
    }

    fn all_ids(&self) -> impl Iterator<Item = &String> {
        self.holdout.iter().chain(&self.train).chain(&self.eval).chain(&self.pool)
    }
}

/// Grow the train split of recommended specialties from the pool; holdout and eval are kept as they
/// are (same ids, same order).
///
/// For `Target::Share(p)` (the Meerkat pipeline's `recommended_sample_increases`) the rows drawn for training
/// become `floor(p * (train + eval + pool))` of the specialty, as `plan_splits` draws `train_fraction`, and
/// `p` is recorded as the specialty's fraction in the plan's options. For `Target::Increase(f)` the rows drawn for training (train + eval) grow by `f`, as the Meerkat pipeline's
/// raised percentage would: `train_target = ceil((train + eval) * (1 + f)) - eval`, and at least one
/// more row when `f > 0`. `Target::Samples(n)` asks for `n` train rows. Rows come from the front of
/// the specialty's pool, which is already in seeded-shuffle order, so the choice is random yet
/// deterministic; moved rows are appended to `train`. The train split never shrinks (a model has
/// already seen those rows), and a target beyond the pool takes the whole pool. Records that are not in
/// the plan (new since the last split) join the end of the pool first. Every plan id must be among
/// `records`. The change is logged in [`SplitPlan::updates`].
pub fn update(plan: &SplitPlan, records: &[Record], recommendations: &Recommendations) -> Result<SplitPlan> {
    plan.check_disjoint()?;
    let index = index_by_id(records)?;
    for id in plan.all_ids() {
        if !index.contains_key(id.as_str()) {
            return Err(Error::Config(format!(
                "split update: plan id `{id}` is not among the records (the plan needs the same rows it was made from)"
            )));
        }
    }
    let spec = |id: &str| specialty_key(&records[index[id]]);
    let known: HashSet<&str> = plan.all_ids().map(String::as_str).collect();
    let new_ids: Vec<String> =
        records.iter().filter(|r| !known.contains(r.id.as_str())).map(|r| r.id.clone()).collect();

    let mut pool: Vec<String> = plan.pool.iter().cloned().chain(new_ids.iter().cloned()).collect();
    let count = |ids: &[String]| {
        let mut m: BTreeMap<&str, usize> = BTreeMap::new();
        for id in ids {
            *m.entry(spec(id)).or_default() += 1;
        }
        m
    };
    let train_n = count(&plan.train);
    let eval_n = count(&plan.eval);
    let mut pool_of: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for id in &pool {
        pool_of.entry(spec(id)).or_default().push(id);
    }
    let mut specialties: Vec<&str> = records.iter().map(specialty_key).collect();
    specialties.sort_unstable();
    specialties.dedup();

    let mut changes = BTreeMap::new();
    let mut unmatched = Vec::new();
    let mut moved_ids: Vec<String> = Vec::new();
    let targets = recommendations.targets();
    let mut shares: BTreeMap<String, f64> = BTreeMap::new();
    for s in &specialties {
        let Some((target, reason)) =
            targets.iter().find(|(k, _)| norm_specialty(k) == norm_specialty(s)).map(|(_, v)| v)
        else {
            continue;
        };
        let train = train_n.get(s).copied().unwrap_or(0);
        let eval = eval_n.get(s).copied().unwrap_or(0);
        let available = pool_of.get(s).map_or(&[][..], Vec::as_slice);
        let train_target = match *target {
            Target::Samples(n) => n,
            // The Meerkat pipeline's new training percentage over the non-holdout rows, as `plan_splits` draws it;
            // eval keeps its rows, so train gets the rest of the drawn share.
            Target::Share(share) => {
                let rest = train + eval + available.len();
                let drawn = ((rest as f64 * share + EPS).floor() as usize).min(rest);
                shares.insert(s.to_string(), share);
                drawn.saturating_sub(eval)
            }
            Target::Increase(f) => {
                let grown = ((train + eval) as f64 * (1.0 + f) - EPS).ceil().max(0.0) as usize;
                let t = grown.saturating_sub(eval);
                if f > 0.0 {
                    t.max(train + 1)
                } else {
                    t
                }
            }
        };
        let moved = train_target.saturating_sub(train).min(available.len());
        moved_ids.extend(available[..moved].iter().map(|id| (*id).clone()));
        changes.insert(
            s.to_string(),
            SpecialtyChange {
                reason: reason.clone(),
                train_before: train,
                train_target,
                train_after: train + moved,
                moved,
                pool_left: available.len() - moved,
            },
        );
    }
    for k in targets.keys() {
        if !specialties.iter().any(|s| norm_specialty(s) == norm_specialty(k)) {
            unmatched.push(k.clone());
        }
    }

    let moved_set: HashSet<&str> = moved_ids.iter().map(String::as_str).collect();
    pool.retain(|id| !moved_set.contains(id.as_str()));
    let mut next = plan.clone();
    next.train.extend(moved_ids.iter().cloned());
    next.pool = pool;
    // A share is the specialty's training fraction from now on (a later `plan_splits` with these options agrees).
    next.options.specialty_fractions.extend(shares);
    next.updates.push(PlanUpdate { round: plan.updates.len() + 1, changes, unmatched, new_rows: new_ids.len() });
    Ok(next)
}

/// Compute [`DatasetStats`] for a plan.
pub fn dataset_stats(plan: &SplitPlan, records: &[Record]) -> Result<DatasetStats> {
    let index = index_by_id(records)?;
    let count = |ids: &[String]| -> Result<BTreeMap<String, usize>> {
        let mut m = BTreeMap::new();
        for id in ids {
            let i = *index
                .get(id.as_str())
                .ok_or_else(|| Error::Config(format!("split: plan id `{id}` is not among the records")))?;
            *m.entry(specialty_key(&records[i]).to_string()).or_insert(0) += 1;
        }
        Ok(m)
    };
    let holdout = count(&plan.holdout)?;
    let train = count(&plan.train)?;
    let eval = count(&plan.eval)?;
    let pool = count(&plan.pool)?;
    let mut all: Vec<String> =
        holdout.keys().chain(train.keys()).chain(eval.keys()).chain(pool.keys()).cloned().collect();
    all.sort();
    all.dedup();
    let get = |m: &BTreeMap<String, usize>, s: &str| m.get(s).copied().unwrap_or(0);
    let samples_per_specialty = all.iter().map(|s| (s.clone(), get(&train, s) + get(&eval, s))).collect();
    let fill = |m: BTreeMap<String, usize>| all.iter().map(|s| (s.clone(), get(&m, s))).collect();
    Ok(DatasetStats {
        total_specialties: all.len(),
        holdout_samples: plan.holdout.len(),
        train_samples: plan.train.len(),
        eval_samples: plan.eval.len(),
        eval_pool_samples: plan.pool.len(),
        samples_per_specialty,
        train_per_specialty: fill(train),
        eval_per_specialty: fill(eval),
        holdout_per_specialty: fill(holdout),
        pool_per_specialty: fill(pool),
        round: plan.updates.len(),
    })
}

/// The four splits with their JSONL file and Hugging Face folder names (the folders use the Meerkat pipeline's
/// `save_to_disk` names).
pub const SPLIT_FILES: [(&str, &str, &str); 4] = [
    ("holdout", "holdout.jsonl", "holdout_dataset"),
    ("train", "train.jsonl", "train_dataset"),
    ("eval", "eval.jsonl", "eval_dataset"),
    ("pool", "pool.jsonl", "eval_pool_dataset"),
];

/// Write a plan's splits under `dir`: `holdout.jsonl`, `train.jsonl`, `eval.jsonl`, `pool.jsonl`, the
/// same as Hugging Face folders (`holdout_dataset/`, `train_dataset/`, `eval_dataset/`,
/// `eval_pool_dataset/`), `dataset_stats.json` and `split_plan.json` (written last, so a plan on disk
/// always describes files that were completely written). Records are written unchanged, in plan order,
/// so unchanged splits give byte-identical files. Every output is atomic.
pub fn write_splits(dir: &Path, plan: &SplitPlan, records: &[Record]) -> Result<DatasetStats> {
    plan.check_disjoint()?;
    let stats = dataset_stats(plan, records)?;
    let index = index_by_id(records)?;
    for ((_, jsonl, hf), ids) in SPLIT_FILES.iter().zip([&plan.holdout, &plan.train, &plan.eval, &plan.pool]) {
        let rows: Vec<Record> = ids.iter().map(|id| records[index[id.as_str()]].clone()).collect();
        write_all(&dir.join(jsonl), OutputFormat::Jsonl, &rows)?;
        write_all(&dir.join(hf), OutputFormat::Hf, &rows)?;
    }
    write_json(&dir.join(STATS_FILE), &stats)?;
    write_json(&dir.join(PLAN_FILE), plan)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use medforge_data::RecordKind;

    /// `n` rows per specialty; question lengths grow with the row number.
    fn rows(specialties: &[(&str, usize)]) -> Vec<Record> {
        let mut v = Vec::new();
        for (s, n) in specialties {
            for i in 0..*n {
                let mut r =
                    Record::new(format!("{s}-{i:03}"), "meerkat", RecordKind::OpenQa, format!("q{}", "?".repeat(i)));
                r.specialty = Some(s.to_string());
                r.answer = Some(format!("answer {i}"));
                v.push(r);
            }
        }
        v
    }

    fn opts() -> SplitOptions {
        SplitOptions {
            holdout_per_specialty: 5,
            train_fraction: 0.3,
            eval_fraction: 0.2,
            seed: 7,
            ..Default::default()
        }
    }

    fn meerkat_recommendations() -> Recommendations {
        serde_json::from_value(serde_json::json!({
            "low_performing_specialties": [
                {"specialty": "neurology", "medical_entity_f1": 0.21, "sample_count": 5, "improvement": 0.01},
                {"specialty": "Dermatology", "medical_entity_f1": 0.45, "sample_count": 5, "improvement": 0.0},
                {"specialty": "psychiatry", "medical_entity_f1": 0.1, "sample_count": 3, "improvement": 0.0}
            ],
            "recommended_actions": {
                "neurology": {"increase_training_data": true, "focus_on_entity_extraction": true,
                              "recommended_data_increase": "50-80%"},
                "psychiatry": {"increase_training_data": true, "focus_on_entity_extraction": true,
                               "recommended_data_increase": "50-80%"}
            },
            "overall_performance": {"total_samples_evaluated": 15, "overall_improvement_rouge_l": 0.02}
        }))
        .unwrap()
    }

    fn of<'a>(ids: &'a [String], prefix: &str) -> Vec<&'a String> {
        ids.iter().filter(|id| id.starts_with(prefix)).collect()
    }

    #[test]
    fn plan_follows_the_meerkat_proportions() {
        let recs = rows(&[("Cardiology", 60), ("Neurology", 60), ("Rare", 4)]);
        let p = plan_splits(&recs, &opts()).unwrap();
        // 55 left after holdout; floor(55 * 0.3) = 16 drawn; round(16 * 0.2) = 3 eval.
        for s in ["Cardiology", "Neurology"] {
            assert_eq!(of(&p.holdout, s).len(), 5);
            assert_eq!(of(&p.eval, s).len(), 3);
            assert_eq!(of(&p.train, s).len(), 13);
            assert_eq!(of(&p.pool, s).len(), 39);
        }
        // A specialty no bigger than the holdout is all holdout, as in the Meerkat pipeline.
        assert_eq!(of(&p.holdout, "Rare").len(), 4);
        assert!(of(&p.train, "Rare").is_empty());
        let mut all: Vec<&String> = p.all_ids().collect();
        assert_eq!(all.len(), recs.len());
        all.sort();
        all.dedup();
        assert_eq!(all.len(), recs.len(), "every row in exactly one split");
    }

    #[test]
    fn holdout_spreads_over_question_lengths() {
        let recs = rows(&[("Cardiology", 100)]);
        let p = plan_splits(&recs, &SplitOptions { holdout_per_specialty: 5, ..opts() }).unwrap();
        // Row i has question length i + 1, so bins are ids 0-19, 20-39, ...: one holdout row in each.
        let bins: Vec<usize> = p.holdout.iter().map(|id| id[11..].parse::<usize>().unwrap() / 20).collect();
        assert_eq!(bins, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn plans_are_deterministic_per_seed_and_per_specialty() {
        let recs = rows(&[("Cardiology", 60), ("Neurology", 60)]);
        let a = plan_splits(&recs, &opts()).unwrap();
        assert_eq!(a, plan_splits(&recs, &opts()).unwrap());
        let b = plan_splits(&recs, &SplitOptions { seed: 8, ..opts() }).unwrap();
        assert_ne!(a.train, b.train);
        assert_ne!(a.holdout, b.holdout);
        // Adding a specialty leaves the others' splits alone.
        let more = rows(&[("Cardiology", 60), ("Neurology", 60), ("Anatomy", 30)]);
        let c = plan_splits(&more, &opts()).unwrap();
        assert_eq!(of(&a.eval, "Neurology"), of(&c.eval, "Neurology"));
        assert_eq!(of(&a.train, "Cardiology"), of(&c.train, "Cardiology"));
    }

    #[test]
    fn specialty_fractions_override_and_bad_options_fail() {
        let recs = rows(&[("Cardiology", 60), ("Neurology", 60)]);
        let mut o = opts();
        o.specialty_fractions.insert("Neurology".into(), 1.0);
        let p = plan_splits(&recs, &o).unwrap();
        assert_eq!(of(&p.train, "Neurology").len() + of(&p.eval, "Neurology").len(), 55);
        assert!(of(&p.pool, "Neurology").is_empty());
        assert_eq!(of(&p.train, "Cardiology").len(), 13);

        assert!(plan_splits(&recs, &SplitOptions { eval_fraction: 1.0, ..opts() }).is_err());
        assert!(plan_splits(&recs, &SplitOptions { train_fraction: -0.1, ..opts() }).is_err());
        let mut dup = recs.clone();
        dup.push(recs[0].clone());
        assert!(plan_splits(&dup, &opts()).unwrap_err().to_string().contains("duplicate record id"));
    }

    #[test]
    fn update_keeps_holdout_and_eval_byte_identical_and_grows_train() {
        let recs = rows(&[("Cardiology", 60), ("neurology", 60), ("Dermatology", 60)]);
        let plan = plan_splits(&recs, &opts()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let before = write_splits(dir.path(), &plan, &recs).unwrap();
        assert_eq!(before.samples_per_specialty["neurology"], 16);
        let snapshot = |p: &str| std::fs::read(dir.path().join(p)).unwrap();
        let frozen = [
            "holdout.jsonl",
            "eval.jsonl",
            "holdout_dataset/data-00000-of-00001.arrow",
            "eval_dataset/data-00000-of-00001.arrow",
            "eval_dataset/state.json",
        ];
        let old: Vec<Vec<u8>> = frozen.iter().map(|f| snapshot(f)).collect();
        let old_train = snapshot("train.jsonl");

        // Round trip through the files, as a later run would.
        let loaded = SplitPlan::load(&dir.path().join(PLAN_FILE)).unwrap();
        assert_eq!(loaded, plan);
        let recs_path = dir.path().join("training_recommendations.json");
        std::fs::write(&recs_path, serde_json::to_vec(&meerkat_recommendations()).unwrap()).unwrap();
        let next = update(&loaded, &recs, &Recommendations::load(&recs_path).unwrap()).unwrap();
        let after = write_splits(dir.path(), &next, &recs).unwrap();

        for (f, bytes) in frozen.iter().zip(&old) {
            assert_eq!(&snapshot(f), bytes, "{f} changed");
        }
        assert_eq!(next.holdout, plan.holdout);
        assert_eq!(next.eval, plan.eval);
        assert_ne!(snapshot("train.jsonl"), old_train);

        // neurology: drawn 16 (13 train + 3 eval); ceil(16 * 1.65) = 27 drawn -> 24 train: 11 moved.
        let ch = &next.updates[0].changes["neurology"];
        assert_eq!((ch.train_before, ch.train_target, ch.train_after, ch.moved), (13, 24, 24, 11));
        assert_eq!(after.train_per_specialty["neurology"], 24);
        assert_eq!(after.pool_per_specialty["neurology"], 39 - 11);
        // The old train list is a prefix; the moved rows came from the neurology pool, in pool order.
        assert_eq!(&next.train[..plan.train.len()], &plan.train[..]);
        let moved: Vec<&String> = next.train[plan.train.len()..].iter().collect();
        assert_eq!(moved, of(&plan.pool, "neurology")[..11].to_vec());
        assert!(moved.iter().all(|id| !next.pool.contains(id)));
        // Dermatology is low-performing but has no action: unchanged. Cardiology was not mentioned.
        assert_eq!(after.train_per_specialty["Dermatology"], 13);
        assert_eq!(after.train_per_specialty["Cardiology"], 13);
        assert!(!next.updates[0].changes.contains_key("Dermatology"));
        assert_eq!(next.updates[0].unmatched, vec!["psychiatry"]);
        assert_eq!(next.updates[0].round, 1);
        assert_eq!(SplitPlan::load(&dir.path().join(PLAN_FILE)).unwrap(), next);

        let stats: serde_json::Value = serde_json::from_slice(&snapshot(STATS_FILE)).unwrap();
        for k in ["total_specialties", "holdout_samples", "train_samples", "eval_samples", "eval_pool_samples"] {
            assert!(stats[k].is_u64(), "{k}");
        }
        assert_eq!(stats["train_samples"], 13 * 3 + 11);
        assert_eq!(stats["samples_per_specialty"]["neurology"], 27);

        // Updating again is deterministic.
        assert_eq!(update(&loaded, &recs, &meerkat_recommendations()).unwrap(), next);
    }

    /// The Meerkat pipeline's own file: the share becomes the specialty's training fraction; holdout and eval files
    /// stay byte-identical.
    #[test]
    fn meerkat_shares_become_the_train_fraction() {
        let recs = rows(&[("Cardiology", 60), ("neurology", 60)]);
        let plan = plan_splits(&recs, &opts()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_splits(dir.path(), &plan, &recs).unwrap();
        let frozen = ["holdout.jsonl", "eval.jsonl", "holdout_dataset/data-00000-of-00001.arrow"];
        let old: Vec<Vec<u8>> = frozen.iter().map(|f| std::fs::read(dir.path().join(f)).unwrap()).collect();
        let recs_path = dir.path().join("training_recommendations.json");
        std::fs::write(
            &recs_path,
            r#"{"low_performance_specialties": ["Neurology"], "recommended_sample_increases": {"Neurology": 0.8},
                "overall_improvement": {"rougeL": -0.01, "bertscore_f1": 0.002}}"#,
        )
        .unwrap();
        let next = update(&plan, &recs, &Recommendations::load(&recs_path).unwrap()).unwrap();
        let after = write_splits(dir.path(), &next, &recs).unwrap();
        for (f, bytes) in frozen.iter().zip(&old) {
            assert_eq!(&std::fs::read(dir.path().join(f)).unwrap(), bytes, "{f} changed");
        }
        // 55 non-holdout rows; share 0.8 -> 44 drawn; eval keeps its 3 -> 41 train.
        let non_holdout = 60 - 5;
        let drawn = after.train_per_specialty["neurology"] + after.eval_per_specialty["neurology"];
        assert_eq!(drawn, (non_holdout as f64 * 0.8).floor() as usize);
        assert_eq!(after.eval_per_specialty["neurology"], 3);
        assert_eq!(after.train_per_specialty["Cardiology"], 13, "not recommended: unchanged");
        assert_eq!(next.options.specialty_fractions["neurology"], 0.8);
        assert!(next.updates[0].changes["neurology"].reason.contains("recommended_sample_increases = 0.8"));
    }

    #[test]
    fn explicit_targets_new_rows_and_exhausted_pools() {
        let recs = rows(&[("Cardiology", 30), ("Neurology", 30)]);
        let plan = plan_splits(&recs, &opts()).unwrap();
        // 25 after holdout: 7 drawn, 1 eval, 6 train, 18 pool.
        let r: Recommendations = serde_json::from_value(serde_json::json!({
            "low_performing_specialties": [
                {"specialty": "cardiology", "accuracy": 0.4, "current_samples": 6, "recommended_samples": 100},
                {"specialty": "NEUROLOGY", "accuracy": 0.5, "current_samples": 6, "recommended_increase": "100%"}
            ]
        }))
        .unwrap();
        let mut more = recs.clone();
        let mut extra = Record::new("Cardiology-new", "meerkat", RecordKind::OpenQa, "new question");
        extra.specialty = Some("Cardiology".into());
        more.push(extra);
        let next = update(&plan, &more, &r).unwrap();
        let u = &next.updates[0];
        assert_eq!(u.new_rows, 1);
        // Cardiology asked for 100: the whole pool, new row included, and no more.
        assert_eq!(u.changes["Cardiology"].moved, 19);
        assert_eq!(u.changes["Cardiology"].pool_left, 0);
        assert!(next.train.contains(&"Cardiology-new".to_string()));
        // Neurology: 7 drawn doubled = 14 -> 13 train, 7 moved.
        assert_eq!(u.changes["Neurology"].moved, 7);
        assert_eq!(next.holdout, plan.holdout);
        assert_eq!(next.eval, plan.eval);
        assert_eq!(next.all_ids().count(), more.len());

        // A plan id missing from the records is an error, not a silent drop.
        assert!(update(&plan, &recs[1..], &r).is_err());
    }

    #[test]
    fn plan_files_with_repeated_ids_are_rejected() {
        let recs = rows(&[("Cardiology", 30)]);
        let mut plan = plan_splits(&recs, &opts()).unwrap();
        plan.pool.push(plan.train[0].clone());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PLAN_FILE);
        std::fs::write(&p, serde_json::to_vec(&plan).unwrap()).unwrap();
        assert!(SplitPlan::load(&p).is_err());
        assert!(write_splits(dir.path(), &plan, &recs).is_err());
    }
}
