//! Token and cost accounting, budgets, and the token estimator behind `--dry-run`.
//!
//! Money is counted in nano-dollars in `u64` atomics, so concurrent calls add up exactly.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::backend::{ChatRequest, Usage};

/// Prices in USD per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    #[serde(default)]
    pub input_per_1m: f64,
    #[serde(default)]
    pub output_per_1m: f64,
}

impl Pricing {
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (prompt_tokens as f64 * self.input_per_1m + completion_tokens as f64 * self.output_per_1m) / 1e6
    }
    pub fn cost_of(&self, usage: &Usage) -> f64 {
        self.cost(usage.prompt_tokens, usage.completion_tokens)
    }
}

const NANO: f64 = 1e9;

fn to_nano(usd: f64) -> u64 {
    if usd <= 0.0 {
        0
    } else {
        (usd * NANO).ceil() as u64
    }
}

/// Live counters of one run's LLM use. Shared (`Arc<Spend>`) between concurrent calls.
#[derive(Debug, Default)]
pub struct Spend {
    calls: AtomicU64,
    cache_hits: AtomicU64,
    retries: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    nano_usd: AtomicU64,
    /// Estimated cost of calls in flight, reserved against the budget.
    reserved_nano_usd: AtomicU64,
}

/// A copy of the counters, for the manifest and the progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SpendSnapshot {
    /// Requests that reached a backend (cache hits excluded; retries of one call count once).
    pub calls: u64,
    pub cache_hits: u64,
    pub retries: u64,
    pub skipped: u64,
    pub failed: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub usd: f64,
}

impl Spend {
    pub fn new() -> Self {
        Spend::default()
    }

    /// Record one finished backend call.
    pub fn record_call(&self, usage: &Usage, retries: u32, pricing: &Pricing) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.retries.fetch_add(retries as u64, Ordering::Relaxed);
        self.prompt_tokens.fetch_add(usage.prompt_tokens, Ordering::Relaxed);
        self.completion_tokens.fetch_add(usage.completion_tokens, Ordering::Relaxed);
        self.nano_usd.fetch_add(to_nano(pricing.cost_of(usage)), Ordering::Relaxed);
    }
    /// Record a call that reached the backend but produced nothing billable we know of.
    pub fn record_unbilled_call(&self, retries: u32) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.retries.fetch_add(retries as u64, Ordering::Relaxed);
    }
    pub fn record_cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }
    pub fn record_skip(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }
    pub fn record_failure(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn usd(&self) -> f64 {
        self.nano_usd.load(Ordering::Relaxed) as f64 / NANO
    }

    pub fn snapshot(&self) -> SpendSnapshot {
        SpendSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: self.completion_tokens.load(Ordering::Relaxed),
            usd: self.usd(),
        }
    }

    /// Whether spending `estimate_usd` more (on top of what is spent and reserved by calls in flight)
    /// would pass `budget_usd`.
    pub fn would_exceed(&self, budget_usd: f64, estimate_usd: f64) -> bool {
        let spent = self.nano_usd.load(Ordering::Relaxed) + self.reserved_nano_usd.load(Ordering::Relaxed);
        spent.saturating_add(to_nano(estimate_usd)) > to_nano(budget_usd)
    }

    /// Reserve `estimate_usd` against `budget_usd` for a call about to start, atomically with the
    /// check, so concurrent calls cannot together overshoot. `None`: the budget would be passed.
    pub fn try_reserve(&self, budget_usd: f64, estimate_usd: f64) -> Option<Reservation<'_>> {
        let est = to_nano(estimate_usd);
        let limit = to_nano(budget_usd);
        let mut cur = self.reserved_nano_usd.load(Ordering::Acquire);
        loop {
            let spent = self.nano_usd.load(Ordering::Acquire);
            if spent.saturating_add(cur).saturating_add(est) > limit {
                return None;
            }
            match self.reserved_nano_usd.compare_exchange_weak(cur, cur + est, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(Reservation { spend: self, nano: est }),
                Err(now) => cur = now,
            }
        }
    }
}

/// A budget reservation; released when dropped (after the call's real cost has been recorded).
#[derive(Debug)]
pub struct Reservation<'a> {
    spend: &'a Spend,
    nano: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.spend.reserved_nano_usd.fetch_sub(self.nano, Ordering::AcqRel);
    }
}

/// Completion tokens assumed for a request without `max_tokens`.
pub const DEFAULT_COMPLETION_ESTIMATE: u64 = 512;

/// Estimate the tokens of a text: `ceil(chars / 4)`.
///
/// The common "4 characters per token" rule of thumb for English with GPT-style BPE vocabularies. It
/// undercounts scripts such as Korean (often ~1-2 characters per token), so dry-run figures for
/// non-Latin text are low; the budget check uses the server's reported usage once calls return.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// Estimated tokens of a request: prompt = messages (+4 per message for the chat framing, +3 for
/// the reply primer), completion = `max_tokens` or [`DEFAULT_COMPLETION_ESTIMATE`] (an upper bound
/// when `max_tokens` is set, so budget reservations are conservative).
pub fn estimate_request(req: &ChatRequest) -> Usage {
    let prompt = req.messages.iter().map(|m| estimate_tokens(&m.content) + 4).sum::<u64>() + 3;
    let completion = req.params.max_tokens.map(u64::from).unwrap_or(DEFAULT_COMPLETION_ESTIMATE);
    Usage { prompt_tokens: prompt, completion_tokens: completion }
}

/// What a `--dry-run` prints: the calls, tokens and cost a set of requests would take.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct DryRunEstimate {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub usd: f64,
}

impl DryRunEstimate {
    pub fn add(&mut self, req: &ChatRequest, pricing: &Pricing) {
        let u = estimate_request(req);
        self.requests += 1;
        self.prompt_tokens += u.prompt_tokens;
        self.completion_tokens += u.completion_tokens;
        self.usd += pricing.cost_of(&u);
    }
    pub fn of<'a>(reqs: impl IntoIterator<Item = &'a ChatRequest>, pricing: &Pricing) -> Self {
        let mut e = DryRunEstimate::default();
        for r in reqs {
            e.add(r, pricing);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{GenParams, Message};

    #[test]
    fn estimator_and_pricing() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        let req = ChatRequest::new(vec![Message::system("abcd"), Message::user("abcdefgh")])
            .with_params(GenParams { max_tokens: Some(100), ..Default::default() });
        let u = estimate_request(&req);
        assert_eq!(u, Usage { prompt_tokens: 1 + 4 + 2 + 4 + 3, completion_tokens: 100 });
        let p = Pricing { input_per_1m: 2.0, output_per_1m: 8.0 };
        assert!((p.cost(1_000_000, 500_000) - 6.0).abs() < 1e-12);
        let d = DryRunEstimate::of([&req, &req], &p);
        assert_eq!(d.requests, 2);
        assert_eq!(d.prompt_tokens, 28);
        assert!((d.usd - 2.0 * p.cost_of(&u)).abs() < 1e-12);
    }

    #[test]
    fn reservations_hold_the_budget() {
        let s = Spend::new();
        let p = Pricing { input_per_1m: 1_000_000.0, output_per_1m: 0.0 }; // $1 per token
        let r1 = s.try_reserve(3.0, 2.0).expect("fits");
        assert!(s.try_reserve(3.0, 2.0).is_none(), "2 reserved + 2 > 3");
        assert!(s.would_exceed(3.0, 1.5));
        s.record_call(&Usage { prompt_tokens: 1, completion_tokens: 0 }, 2, &p);
        drop(r1);
        assert!((s.usd() - 1.0).abs() < 1e-9);
        assert!(s.try_reserve(3.0, 2.0).is_some());
        assert!(s.try_reserve(3.0, 2.5).is_none());
        let snap = s.snapshot();
        assert_eq!((snap.calls, snap.retries, snap.prompt_tokens), (1, 2, 1));
    }
}
