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

#[cfg(test)]
mod tests {
    use super::*;
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
}
