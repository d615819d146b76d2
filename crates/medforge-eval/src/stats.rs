//! Accuracy with a seeded percentile-bootstrap 95% confidence interval.
use serde::{Deserialize, Serialize};

pub use medforge_text::rng::SplitMix64;

/// An accuracy and its bootstrap CI (fractions 0..1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub n: usize,
    pub correct: usize,
    pub accuracy: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// Default bootstrap settings.
pub const BOOTSTRAP_SAMPLES: usize = 1000;
pub const DEFAULT_SEED: u64 = 42;

/// Accuracy of 0/1 outcomes with a percentile bootstrap CI (`samples` resamples, 2.5th and 97.5th
/// percentiles). Unparseable items count as wrong; callers report how many there were.
pub fn accuracy_ci(outcomes: &[bool], samples: usize, seed: u64) -> Accuracy {
    let n = outcomes.len();
    let correct = outcomes.iter().filter(|&&b| b).count();
    if n == 0 {
        return Accuracy { n, correct, accuracy: 0.0, ci_low: 0.0, ci_high: 0.0 };
    }
    let acc = correct as f64 / n as f64;
    let mut rng = SplitMix64::new(seed);
    let mut means: Vec<f64> = (0..samples.max(1))
        .map(|_| {
            let mut c = 0usize;
            for _ in 0..n {
                c += outcomes[rng.below(n)] as usize;
            }
            c as f64 / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let idx = ((means.len() - 1) as f64 * p).round() as usize;
        means[idx]
    };
    Accuracy { n, correct, accuracy: acc, ci_low: q(0.025), ci_high: q(0.975) }
}

/// A bootstrap CI of the difference `b - a` of paired outcomes (same items, two models).
pub fn paired_delta_ci(a: &[bool], b: &[bool], samples: usize, seed: u64) -> (f64, f64, f64) {
    let n = a.len().min(b.len());
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let d: Vec<i32> = (0..n).map(|i| b[i] as i32 - a[i] as i32).collect();
    let delta = d.iter().sum::<i32>() as f64 / n as f64;
    let mut rng = SplitMix64::new(seed);
    let mut ms: Vec<f64> = (0..samples.max(1))
        .map(|_| {
            let mut s = 0i64;
            for _ in 0..n {
                s += d[rng.below(n)] as i64;
            }
            s as f64 / n as f64
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    (delta, q(0.025), q(0.975))
}

/// The mean of a per-item score and its percentile-bootstrap 95% CI.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanCi {
    pub n: usize,
    pub mean: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

fn bootstrap_mean(values: &[f64], samples: usize, seed: u64) -> (f64, f64) {
    let n = values.len();
    let mut rng = SplitMix64::new(seed);
    let mut means: Vec<f64> = (0..samples.max(1))
        .map(|_| {
            let mut s = 0.0;
            for _ in 0..n {
                s += values[rng.below(n)];
            }
            s / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let q = |p: f64| means[((means.len() - 1) as f64 * p).round() as usize];
    (q(0.025), q(0.975))
}

/// Mean of `values` with a seeded percentile bootstrap CI (the same resampling as [`accuracy_ci`]).
pub fn mean_ci(values: &[f64], samples: usize, seed: u64) -> MeanCi {
    let n = values.len();
    if n == 0 {
        return MeanCi { n, mean: 0.0, ci_low: 0.0, ci_high: 0.0 };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let (ci_low, ci_high) = bootstrap_mean(values, samples, seed);
    MeanCi { n, mean, ci_low, ci_high }
}

/// Paired difference `b - a` of per-item scores (same items, two models): mean and bootstrap CI.
pub fn paired_mean_delta_ci(a: &[f64], b: &[f64], samples: usize, seed: u64) -> MeanCi {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    mean_ci(&d, samples, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_ci_brackets_and_pairs() {
        let v: Vec<f64> = (0..100).map(|i| (i % 10) as f64 / 10.0).collect();
        let m = mean_ci(&v, 1000, 3);
        assert!((m.mean - 0.45).abs() < 1e-12 && m.ci_low < 0.45 && 0.45 < m.ci_high, "{m:?}");
        assert_eq!(m, mean_ci(&v, 1000, 3), "seeded");
        let shifted: Vec<f64> = v.iter().map(|x| x + 0.1).collect();
        let d = paired_mean_delta_ci(&v, &shifted, 1000, 3);
        assert!((d.mean - 0.1).abs() < 1e-12 && (d.ci_low - 0.1).abs() < 1e-9 && (d.ci_high - 0.1).abs() < 1e-9);
        // 0/1 values: the same interval as accuracy_ci.
        let o: Vec<bool> = (0..50).map(|i| i % 3 == 0).collect();
        let f: Vec<f64> = o.iter().map(|&b| b as u8 as f64).collect();
        let (a, m) = (accuracy_ci(&o, 500, 9), mean_ci(&f, 500, 9));
        assert_eq!((a.ci_low, a.ci_high), (m.ci_low, m.ci_high));
    }

    #[test]
    fn ci_brackets_the_accuracy_and_is_seeded() {
        let o: Vec<bool> = (0..200).map(|i| i % 3 != 0).collect();
        let a = accuracy_ci(&o, 1000, 7);
        assert!(a.ci_low < a.accuracy && a.accuracy < a.ci_high, "{a:?}");
        assert!(a.ci_high - a.ci_low < 0.15);
        assert_eq!(a, accuracy_ci(&o, 1000, 7));
        let all = accuracy_ci(&[true; 10], 100, 1);
        assert_eq!((all.ci_low, all.ci_high), (1.0, 1.0));
    }

    /// The paired bootstrap against the exact bootstrap distribution of a small case: with d = b - a =
    /// [1, 1, 0, 0, -1], the 5^5 equally likely resamples put the mean difference's 2.5% quantile at -0.4 (CDF 0.071;
    /// -0.6 has 0.020) and its 97.5% quantile at 0.8 (CDF 0.990; 0.6 has 0.939), both far enough from the
    /// boundaries for 40,000 resamples to land on them.
    #[test]
    fn paired_delta_ci_matches_the_exact_bootstrap_of_a_small_case() {
        let a = [false, false, false, true, true];
        let b = [true, true, false, true, false];
        let (d, lo, hi) = paired_delta_ci(&a, &b, 40_000, 3);
        assert!((d - 0.2).abs() < 1e-12, "{d}");
        assert!((lo - -0.4).abs() < 1e-12 && (hi - 0.8).abs() < 1e-12, "({lo}, {hi})");
        assert_eq!(paired_delta_ci(&a, &b, 40_000, 3), (d, lo, hi), "seeded");
        // No change: a point; all better: a point at +1.
        assert_eq!(paired_delta_ci(&a, &a, 1000, 3), (0.0, 0.0, 0.0));
        assert_eq!(paired_delta_ci(&[false; 4], &[true; 4], 1000, 3), (1.0, 1.0, 1.0));
        assert_eq!(paired_delta_ci(&[], &[], 1000, 3), (0.0, 0.0, 0.0));
    }
}
