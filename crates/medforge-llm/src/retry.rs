//! Exponential backoff with jitter, `Retry-After`, and a record of every delay taken, so the
//! sequence can be checked deterministically in tests (seed the jitter with `jitter_seed`).

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use medforge_text::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// How a backend retries transient errors.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so at most `max_retries + 1` requests per call).
    pub max_retries: u32,
    /// Delay before the first retry, doubled per retry, before jitter.
    pub base: Duration,
    /// Ceiling of the exponential delay.
    pub max_delay: Duration,
    /// Ceiling of a server's `Retry-After`.
    pub max_retry_after: Duration,
    /// Seed of the jitter; `None` seeds from the clock.
    pub jitter_seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(120),
            jitter_seed: None,
        }
    }
}

/// One retry a backend took: the error that caused it and the delay it waited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryEvent {
    pub code: String,
    /// The retry number, 0 for the first retry of a call.
    pub retry: u32,
    pub delay_ms: u64,
    /// The server's `Retry-After`, when it sent one.
    pub retry_after_ms: Option<u64>,
}

/// Computes retry delays and keeps the log of those taken.
#[derive(Debug)]
pub struct Backoff {
    pub policy: RetryPolicy,
    rng: Mutex<SplitMix64>,
    log: Mutex<Vec<RetryEvent>>,
}

/// Most events kept in the log (the oldest are dropped beyond it).
const LOG_CAP: usize = 10_000;

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Self {
        let seed = policy.jitter_seed.unwrap_or_else(|| {
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
        });
        Backoff { policy, rng: Mutex::new(SplitMix64::new(seed)), log: Mutex::new(Vec::new()) }
    }

    /// The delay before retry number `retry` (0-based): "equal jitter", uniform in
    /// `[cap/2, cap)` with `cap = min(max_delay, base * 2^retry)`; at least the server's
    /// `Retry-After` (capped at `max_retry_after`) when it sent one.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let cap = self.policy.base.saturating_mul(1u32 << retry.min(20)).min(self.policy.max_delay);
        let r = self.rng.lock().unwrap_or_else(|e| e.into_inner()).next_f64();
        let jittered = cap / 2 + cap.mul_f64(r / 2.0);
        match retry_after {
            Some(ra) => jittered.max(ra.min(self.policy.max_retry_after)),
            None => jittered,
        }
    }

    /// [`delay`](Self::delay), recorded in the log.
    pub fn next_delay(&self, code: &str, retry: u32, retry_after: Option<Duration>) -> Duration {
        let d = self.delay(retry, retry_after);
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() >= LOG_CAP {
            log.remove(0);
        }
        log.push(RetryEvent {
            code: code.to_string(),
            retry,
            delay_ms: d.as_millis() as u64,
            retry_after_ms: retry_after.map(|d| d.as_millis() as u64),
        });
        d
    }

    /// Every retry taken so far, oldest first.
    pub fn log(&self) -> Vec<RetryEvent> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Parse a `Retry-After` header value: delta-seconds (`"2"`, also `"1.5"`) or an HTTP date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`), relative to `now`. A date in the past means 0.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let date = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(date.timestamp().max(0) as u64);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(seed: u64) -> RetryPolicy {
        RetryPolicy {
            max_retries: 6,
            base: Duration::from_millis(10),
            max_delay: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(5),
            jitter_seed: Some(seed),
        }
    }

    #[test]
    fn backoff_is_exponential_jittered_capped_and_deterministic() {
        let a = Backoff::new(policy(7));
        let b = Backoff::new(policy(7));
        let da: Vec<Duration> = (0..7).map(|i| a.delay(i, None)).collect();
        let db: Vec<Duration> = (0..7).map(|i| b.delay(i, None)).collect();
        assert_eq!(da, db, "same seed, same sequence");
        for (i, d) in da.iter().enumerate() {
            let cap = Duration::from_millis(10 * (1 << i)).min(Duration::from_millis(200));
            assert!(*d >= cap / 2 && *d < cap, "retry {i}: {d:?} outside [{:?}, {cap:?})", cap / 2);
        }
        let c = Backoff::new(policy(8));
        let dc: Vec<Duration> = (0..7).map(|i| c.delay(i, None)).collect();
        assert_ne!(da, dc, "another seed, another jitter");
    }

    #[test]
    fn retry_after_is_a_floor_with_a_ceiling() {
        let b = Backoff::new(policy(1));
        assert_eq!(b.delay(0, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(b.delay(0, Some(Duration::from_secs(60))), Duration::from_secs(5));
        b.next_delay("llm.rate_limited", 0, Some(Duration::from_secs(1)));
        let log = b.log();
        assert_eq!(log.len(), 1);
        assert_eq!((log[0].delay_ms, log[0].retry_after_ms), (1000, Some(1000)));
    }

    #[test]
    fn parses_retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 2015-10-21T07:27:50Z
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0.5 ", now), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
