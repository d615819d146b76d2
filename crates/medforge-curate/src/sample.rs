//! s1-style diversity sampling: draw a fixed number of rows balanced across domains, preferring long
//! reasoning inside each domain.
//!
//! This follows the selection step of s1 ("s1: Simple test-time scaling", Muennighoff et al. 2025,
//! Algorithm 1): repeatedly pick a domain **uniformly** among the domains that still have rows, then
//! pick one row of that domain with a **power-law weight on its length rank** (rows sorted longest
//! first; rank `i`, counted from 0, has weight `power_base^-i`; s1 uses base 2), and remove it. Uniform
//! domain choice is what makes the result balanced: a specialty with 20 eligible rows gets as many
//! picks as one with 20 000 until it runs dry, so small specialties are not drowned out. The rank
//! weighting keeps the preference for long reasoning (a proxy for difficulty) without turning into a
//! deterministic "take the longest": with base 2 the longest remaining row is drawn half the time.
//!
//! Everything is driven by one [`StableRng`] seeded from [`SampleOptions::seed`], and ties are broken by
//! row index, so the same input and seed always give the same selection.

use std::collections::BTreeMap;

use medforge_data::{Error, Record, Result};
use medforge_text::rng::StableRng;
use serde::Serialize;

/// The domain label for rows without one.
pub const UNKNOWN_DOMAIN: &str = "UNKNOWN";

/// Which number measures a row's reasoning length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LengthOf {
    /// A score by name from the row's annotations (the last annotation that carries it wins, so a
    /// re-run stage overrides an earlier one), e.g. `tokens.reasoning` from the token-stats stage.
    /// Rows without the score fall back to [`LengthOf::ReasoningChars`]; [`Selection::fallback_rows`]
    /// counts them, because a threshold in tokens then compares against characters for those rows.
    Score(String),
    /// Characters (Unicode scalar values) of `reasoning`; 0 when absent.
    ReasoningChars,
}

impl Default for LengthOf {
    fn default() -> Self {
        LengthOf::Score("tokens.reasoning".to_string())
    }
}

/// Which label defines a row's domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DomainOf {
    /// `specialty`, else the first of `specialties`, else [`UNKNOWN_DOMAIN`].
    #[default]
    Specialty,
    /// `division`, else the first of `divisions`, else [`UNKNOWN_DOMAIN`].
    Division,
}

/// Options of [`diversity_sample`].
#[derive(Debug, Clone, PartialEq)]
pub struct SampleOptions {
    /// Rows to select. With fewer eligible rows, all eligible rows are selected.
    pub target: usize,
    /// Drop rows whose length (per `length_of`) is below this before sampling (s1's difficulty filter).
    pub min_tokens: Option<usize>,
    pub length_of: LengthOf,
    pub domain_of: DomainOf,
    /// Base of the rank weighting inside a domain: rank `i` (longest = 0) has weight `power_base^-i`.
    /// 2.0 is s1's choice; 1.0 samples uniformly inside a domain; values below 1 are rejected.
    pub power_base: f64,
    pub seed: u64,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            target: 1000,
            min_tokens: None,
            length_of: LengthOf::default(),
            domain_of: DomainOf::default(),
            power_base: 2.0,
            seed: 42,
        }
    }
}

/// Per-domain counts of a selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainCount {
    /// Rows of the domain that passed the length threshold.
    pub eligible: usize,
    pub selected: usize,
}

/// The result of [`diversity_sample`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selection {
    /// Indices into the input, ascending.
    pub indices: Vec<usize>,
    /// Keyed by domain label.
    pub per_domain: BTreeMap<String, DomainCount>,
    /// Rows that passed the threshold.
    pub eligible: usize,
    /// Rows dropped by `min_tokens`.
    pub below_threshold: usize,
    /// Rows whose length came from the reasoning-character fallback of [`LengthOf::Score`].
    pub fallback_rows: usize,
}

/// A record's primary specialty: `specialty`, else the first of `specialties`, trimmed; `None` if
/// neither is set. Shared by sampling and splitting so both group rows the same way.
pub fn primary_specialty(r: &Record) -> Option<&str> {
    first_label(r.specialty.as_deref(), &r.specialties)
}

/// A record's primary division: `division`, else the first of `divisions`, trimmed.
pub fn primary_division(r: &Record) -> Option<&str> {
    first_label(r.division.as_deref(), &r.divisions)
}

fn first_label<'a>(primary: Option<&'a str>, all: &'a [String]) -> Option<&'a str> {
    primary.map(str::trim).filter(|s| !s.is_empty()).or_else(|| all.iter().map(|s| s.trim()).find(|s| !s.is_empty()))
}

/// The grouping key for per-specialty work: the primary specialty or [`UNKNOWN_DOMAIN`].
pub fn specialty_key(r: &Record) -> &str {
    primary_specialty(r).unwrap_or(UNKNOWN_DOMAIN)
}

/// A record's length per `length_of`, and whether the reasoning-character fallback was used.
pub fn record_length(r: &Record, length_of: &LengthOf) -> (f64, bool) {
    let chars = || r.reasoning.as_deref().map_or(0, |s| s.chars().count()) as f64;
    match length_of {
        LengthOf::ReasoningChars => (chars(), false),
        LengthOf::Score(name) => {
            let score = r.annotations.iter().rev().flat_map(|a| a.scores.iter()).find(|s| &s.name == name);
            match score {
                Some(s) if s.value.is_finite() => (s.value, false),
                _ => (chars(), true),
            }
        }
    }
}

/// Select `opts.target` rows balanced across domains, favouring long reasoning (see the module docs).
///
/// Errors only on invalid options (`power_base` not finite or below 1).
pub fn diversity_sample(records: &[Record], opts: &SampleOptions) -> Result<Selection> {
    if !opts.power_base.is_finite() || opts.power_base < 1.0 {
        return Err(Error::Config(format!("sample: power_base must be a finite number >= 1, got {}", opts.power_base)));
    }
    let mut below_threshold = 0;
    let mut fallback_rows = 0;
    let mut domains: BTreeMap<String, Vec<(f64, usize)>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let (len, fell_back) = record_length(r, &opts.length_of);
        if fell_back {
            fallback_rows += 1;
        }
        if opts.min_tokens.is_some_and(|min| len < min as f64) {
            below_threshold += 1;
            continue;
        }
        let domain = match opts.domain_of {
            DomainOf::Specialty => primary_specialty(r),
            DomainOf::Division => primary_division(r),
        };
        domains.entry(domain.unwrap_or(UNKNOWN_DOMAIN).to_string()).or_default().push((len, i));
    }
    let eligible: usize = domains.values().map(Vec::len).sum();
    let mut per_domain: BTreeMap<String, DomainCount> =
        domains.iter().map(|(d, rows)| (d.clone(), DomainCount { eligible: rows.len(), selected: 0 })).collect();

    let mut indices = Vec::with_capacity(opts.target.min(eligible));
    if opts.target >= eligible {
        // Everything qualifies; no draw needed (and none that could differ by seed).
        for (d, rows) in &domains {
            per_domain.get_mut(d).expect("domain").selected = rows.len();
            indices.extend(rows.iter().map(|&(_, i)| i));
        }
    } else {
        // Longest first; ties by input position so the order never depends on the sort algorithm.
        let mut active: Vec<(String, Vec<(f64, usize)>)> = domains
            .into_iter()
            .map(|(d, mut rows)| {
                rows.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                (d, rows)
            })
            .collect();
        let mut rng = StableRng::from_seed_u64(opts.seed);
        while indices.len() < opts.target && !active.is_empty() {
            let d = rng.below(active.len());
            let rows = &mut active[d].1;
            let rank = draw_rank(rows.len(), opts.power_base, &mut rng);
            indices.push(rows.remove(rank).1);
            per_domain.get_mut(&active[d].0).expect("domain").selected += 1;
            if active[d].1.is_empty() {
                // `remove`, not `swap_remove`: the domain order must stay the sorted one.
                active.remove(d);
            }
        }
    }
    indices.sort_unstable();
    Ok(Selection { indices, per_domain, eligible, below_threshold, fallback_rows })
}

/// Draw a rank in `0..n` with `P(i) ∝ base^-i`, by inverting the truncated geometric CDF: O(1) per
/// draw instead of building `n` weights, which matters for domains with 100k rows.
fn draw_rank(n: usize, base: f64, rng: &mut StableRng) -> usize {
    debug_assert!(n > 0);
    if n == 1 {
        return 0;
    }
    if base == 1.0 {
        return rng.below(n);
    }
    let r = 1.0 / base;
    // P(rank <= k) = (1 - r^(k+1)) / (1 - r^n); solve for the smallest k above u.
    let mass = 1.0 - r.powi(n.min(i32::MAX as usize) as i32);
    let u: f64 = rng.unit_f64() * mass;
    let k = ((1.0 - u).ln() / r.ln()).floor();
    if k.is_finite() && k >= 0.0 {
        (k as usize).min(n - 1)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medforge_data::{Annotation, RecordKind, Score, Verdict};

    fn row(i: usize, specialty: &str, reasoning_len: usize) -> Record {
        let mut r = Record::new(format!("r{i}"), "test", RecordKind::OpenQa, format!("question {i}"));
        r.specialty = Some(specialty.to_string());
        r.reasoning = Some("x".repeat(reasoning_len));
        r
    }

    fn with_score(mut r: Record, name: &str, value: f64) -> Record {
        r.annotations.push(Annotation {
            stage: "tokens".into(),
            verdict: Verdict::Kept,
            reason: None,
            scores: vec![Score { name: name.into(), value }],
        });
        r
    }

    /// 1000 cardiology rows, 20 each of two small specialties.
    fn skewed() -> Vec<Record> {
        let mut v = Vec::new();
        for i in 0..1000 {
            v.push(row(v.len(), "cardiology", 100 + i % 500));
        }
        for s in ["dermatology", "neurology"] {
            for i in 0..20 {
                v.push(row(v.len(), s, 100 + i * 7));
            }
        }
        v
    }

    fn opts(target: usize, seed: u64) -> SampleOptions {
        SampleOptions { target, seed, length_of: LengthOf::ReasoningChars, ..SampleOptions::default() }
    }

    #[test]
    fn same_seed_same_selection_different_seed_different() {
        let rows = skewed();
        let a = diversity_sample(&rows, &opts(45, 7)).unwrap();
        let b = diversity_sample(&rows, &opts(45, 7)).unwrap();
        let c = diversity_sample(&rows, &opts(45, 8)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.indices.len(), 45);
        assert_ne!(a.indices, c.indices);
        assert!(a.indices.windows(2).all(|w| w[0] < w[1]), "indices ascending and unique");
    }

    #[test]
    fn domains_are_balanced_on_skewed_input() {
        let rows = skewed();
        for seed in 0..5 {
            let s = diversity_sample(&rows, &opts(45, seed)).unwrap();
            // Proportional sampling would give cardiology ~43 of 45 and the others ~1 each;
            // uniform domain choice gives each about 15.
            for (d, c) in &s.per_domain {
                assert!((7..=25).contains(&c.selected), "seed {seed}: {d} got {}", c.selected);
            }
            let counted: usize = s.per_domain.values().map(|c| c.selected).sum();
            assert_eq!(counted, 45);
        }
    }

    #[test]
    fn exhausted_domains_hand_their_share_to_the_rest() {
        let rows = skewed();
        let s = diversity_sample(&rows, &opts(200, 3)).unwrap();
        assert_eq!(s.indices.len(), 200);
        assert_eq!(s.per_domain["dermatology"].selected, 20);
        assert_eq!(s.per_domain["neurology"].selected, 20);
        assert_eq!(s.per_domain["cardiology"].selected, 160);
    }

    #[test]
    fn longer_reasoning_is_preferred_inside_a_domain() {
        // One domain, lengths 0..200 with row i of length i: the longest rows have the highest index.
        let rows: Vec<Record> = (0..200).map(|i| row(i, "cardiology", i)).collect();
        let s = diversity_sample(&rows, &opts(10, 11)).unwrap();
        let mean = s.indices.iter().sum::<usize>() as f64 / 10.0;
        // Uniform sampling would average ~100; base-2 rank weighting stays near the top 20.
        assert!(mean > 175.0, "mean index {mean}: {:?}", s.indices);
        // Base 1 is uniform inside the domain: no such skew.
        let uniform = diversity_sample(&rows, &SampleOptions { power_base: 1.0, ..opts(10, 11) }).unwrap();
        let mean_u = uniform.indices.iter().sum::<usize>() as f64 / 10.0;
        assert!(mean_u < 175.0, "uniform mean {mean_u}");
    }

    #[test]
    fn threshold_uses_the_named_score_and_falls_back_to_chars() {
        let rows = vec![
            with_score(row(0, "a", 10), "tokens.reasoning", 500.0),
            with_score(row(1, "a", 10_000), "tokens.reasoning", 50.0),
            row(2, "b", 300), // no score: 300 chars
            row(3, "b", 20),
        ];
        let o = SampleOptions { target: 10, min_tokens: Some(100), ..SampleOptions::default() };
        let s = diversity_sample(&rows, &o).unwrap();
        assert_eq!(s.indices, vec![0, 2]);
        assert_eq!(s.below_threshold, 2);
        assert_eq!(s.fallback_rows, 2);
        assert_eq!(s.eligible, 2);
    }

    #[test]
    fn later_annotation_overrides_earlier_score() {
        let r = with_score(with_score(row(0, "a", 0), "tokens.reasoning", 5.0), "tokens.reasoning", 9.0);
        assert_eq!(record_length(&r, &LengthOf::default()), (9.0, false));
    }

    #[test]
    fn rows_without_labels_form_their_own_domain() {
        let mut rows: Vec<Record> = (0..5).map(|i| row(i, "a", 10)).collect();
        let mut bare = row(5, "x", 10);
        bare.specialty = None;
        bare.specialties = vec!["  ".into(), "Neurology".into()];
        rows.push(bare);
        let mut none = row(6, "x", 10);
        none.specialty = None;
        rows.push(none);
        let s = diversity_sample(&rows, &opts(100, 1)).unwrap();
        assert_eq!(s.per_domain["Neurology"].eligible, 1);
        assert_eq!(s.per_domain[UNKNOWN_DOMAIN].eligible, 1);
        assert_eq!(s.indices, (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn rejects_bad_base_and_draws_stay_in_range() {
        assert!(diversity_sample(&[], &SampleOptions { power_base: 0.5, ..SampleOptions::default() }).is_err());
        assert!(diversity_sample(&[], &SampleOptions { power_base: f64::NAN, ..SampleOptions::default() }).is_err());
        let mut rng = StableRng::from_seed_u64(0);
        for n in [1, 2, 3, 1000, 100_000] {
            for base in [1.0, 1.0001, 2.0, 1e9] {
                for _ in 0..200 {
                    assert!(draw_rank(n, base, &mut rng) < n);
                }
            }
        }
    }
}
