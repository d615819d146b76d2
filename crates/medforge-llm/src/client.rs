//! [`LlmClient`]: a backend with the response cache, spend counters and the budget in front of it.
//! LLM stages call [`LlmClient::complete`] once per row and act on the [`Outcome`]; an `Err(Stop)`
//! means the run must stop (cleanly: everything answered so far is in the cache).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, ChatRequest, ChatResponse, LlmError};
use crate::cache::{cache_key, Cache};
use crate::cost::{estimate_request, Pricing, Spend};

/// How the cache is used (`--no-cache`, `--refresh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    /// Read hits, store new validated responses.
    #[default]
    Use,
    /// `--refresh`: never read, store (overwrite) new validated responses.
    Refresh,
    /// `--no-cache`: neither read nor write.
    Off,
}

/// What became of one row's call.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A validated response; `true` when it came from the cache (no request made).
    Done(ChatResponse, bool),
    /// The row cannot be done (400, content filter): skip it with this reason code.
    Skipped { code: String, message: String },
    /// Retries spent, or the response failed validation: a dead letter with its reason code.
    Failed { code: String, reason: String },
}

/// Why the whole run must stop. Once returned, every later call that needs the backend returns
/// the same `Stop` without making a request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Stop {
    #[error("{code}: {message}")]
    Fatal { code: String, message: String },
    #[error("budget of ${budget_usd:.4} reached (spent ${spent_usd:.4}); raise `budget_usd` to continue (finished rows are cached)")]
    Budget { budget_usd: f64, spent_usd: f64 },
}

/// Backend + cache + spend + budget. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct LlmClient {
    backend: Arc<dyn Backend>,
    identity: Arc<str>,
    model: Arc<str>,
    pricing: Pricing,
    cache: Option<Arc<Cache>>,
    mode: CacheMode,
    spend: Arc<Spend>,
    budget_usd: Option<f64>,
    stop: Arc<Mutex<Option<Stop>>>,
    template_version: Arc<str>,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("identity", &self.identity)
            .field("model", &self.model)
            .field("mode", &self.mode)
            .field("budget_usd", &self.budget_usd)
            .field("template_version", &self.template_version)
            .finish()
    }
}

impl LlmClient {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        LlmClient {
            identity: backend.identity().into(),
            model: backend.model().into(),
            pricing: backend.pricing(),
            backend,
            cache: None,
            mode: CacheMode::Off,
            spend: Arc::new(Spend::new()),
            budget_usd: None,
            stop: Arc::new(Mutex::new(None)),
            template_version: "".into(),
        }
    }
    pub fn with_cache(mut self, cache: Arc<Cache>, mode: CacheMode) -> Self {
        self.cache = Some(cache);
        self.mode = mode;
        self
    }
    pub fn with_budget(mut self, budget_usd: Option<f64>) -> Self {
        self.budget_usd = budget_usd;
        self
    }
    /// Share counters with other clients (e.g. one per stage, one manifest).
    pub fn with_spend(mut self, spend: Arc<Spend>) -> Self {
        self.spend = spend;
        self
    }
    /// Override the backend's pricing (e.g. from config for a local server).
    pub fn with_pricing(mut self, pricing: Pricing) -> Self {
        self.pricing = pricing;
        self
    }
    /// A clone whose cache keys include this prompt-template version (one per stage/template).
    pub fn with_template_version(&self, v: &str) -> Self {
        let mut c = self.clone();
        c.template_version = v.into();
        c
    }

    pub fn spend(&self) -> &Arc<Spend> {
        &self.spend
    }
    pub fn pricing(&self) -> Pricing {
        self.pricing
    }
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
    /// The stop in force, if any.
    pub fn stopped(&self) -> Option<Stop> {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn latch(&self, s: Stop) -> Stop {
        let mut g = self.stop.lock().unwrap_or_else(|e| e.into_inner());
        g.get_or_insert(s).clone()
    }

    /// The cache key of a request under this client's backend, model and template version.
    pub fn key(&self, req: &ChatRequest) -> String {
        cache_key(&self.identity, &self.model, &self.template_version, req)
    }

    /// One call: cache, budget, backend, validation, cache store.
    ///
    /// `validate` decides whether a response is usable; only usable ones are cached (a cached
    /// response that no longer validates is treated as a miss).
    pub async fn complete(
        &self,
        req: &ChatRequest,
        validate: impl Fn(&str) -> Result<(), String>,
    ) -> Result<Outcome, Stop> {
        let key = (self.cache.is_some() && self.mode != CacheMode::Off).then(|| self.key(req));
        if let (Some(cache), Some(key), CacheMode::Use) = (&self.cache, &key, self.mode) {
            match cache.get(key) {
                Ok(Some(resp)) if validate(&resp.text).is_ok() => {
                    self.spend.record_cache_hit();
                    return Ok(Outcome::Done(resp, true));
                }
                Ok(_) => {}
                Err(crate::cache::CacheError::Corrupt { .. }) => {}
                Err(e) => return Err(self.latch(Stop::Fatal { code: "llm.cache".into(), message: e.to_string() })),
            }
        }
        if let Some(s) = self.stopped() {
            return Err(s);
        }
        let _reservation = match self.budget_usd {
            Some(budget) => {
                let est = self.pricing.cost_of(&estimate_request(req));
                match self.spend.try_reserve(budget, est) {
                    Some(r) => Some(r),
                    None => {
                        return Err(self.latch(Stop::Budget { budget_usd: budget, spent_usd: self.spend.usd() }));
                    }
                }
            }
            None => None,
        };
        match self.backend.chat(req).await {
            Ok(resp) => {
                self.spend.record_call(&resp.usage, resp.retries, &self.pricing);
                if let Err(msg) = validate(&resp.text) {
                    self.spend.record_failure();
                    return Ok(Outcome::Failed { code: "llm.invalid_response".into(), reason: msg });
                }
                if let (Some(cache), Some(key)) = (&self.cache, &key) {
                    if let Err(e) = cache.put(key, &self.identity, &self.model, &self.template_version, &resp) {
                        return Err(self.latch(Stop::Fatal { code: "llm.cache".into(), message: e.to_string() }));
                    }
                }
                Ok(Outcome::Done(resp, false))
            }
            Err(LlmError::Skip { code, message }) => {
                self.spend.record_unbilled_call(0);
                self.spend.record_skip();
                Ok(Outcome::Skipped { code, message })
            }
            Err(LlmError::Transient { code, message, retries, .. }) => {
                self.spend.record_unbilled_call(retries);
                self.spend.record_failure();
                Ok(Outcome::Failed { code, reason: message })
            }
            Err(LlmError::Fatal { code, message }) => {
                self.spend.record_unbilled_call(0);
                Err(self.latch(Stop::Fatal { code, message }))
            }
        }
    }
}

/// What [`LlmClient::complete_all`] returns: one outcome per request, in input order (`None` for
/// requests never started because the run stopped), and the stop, if one happened.
#[derive(Debug, Clone, PartialEq)]
pub struct AllOutcomes {
    pub outcomes: Vec<Option<Outcome>>,
    pub stop: Option<Stop>,
}

impl LlmClient {
    /// Run many requests with up to `window` of them started at once (the endpoint's own
    /// `max_concurrency` and rate limits still apply), results in input order. `validate` gets the
    /// request's index and the response text. `progress(done, total)` is called after each one.
    ///
    /// On a [`Stop`] no new request starts; those already started finish (and are cached), and the
    /// rest stay `None`.
    pub async fn complete_all<V, P>(
        &self,
        reqs: Vec<ChatRequest>,
        window: usize,
        validate: V,
        progress: P,
    ) -> AllOutcomes
    where
        V: Fn(usize, &str) -> Result<(), String> + Send + Sync + 'static,
        P: Fn(usize, usize),
    {
        let total = reqs.len();
        let validate = Arc::new(validate);
        let mut outcomes: Vec<Option<Outcome>> = vec![None; total];
        let mut stop: Option<Stop> = None;
        let mut pending = reqs.into_iter().enumerate();
        let mut set = tokio::task::JoinSet::new();
        let mut done = 0;
        loop {
            while stop.is_none() && set.len() < window.max(1) {
                let Some((i, req)) = pending.next() else { break };
                let (client, validate) = (self.clone(), validate.clone());
                set.spawn(async move { (i, client.complete(&req, |t| validate(i, t)).await) });
            }
            let Some(joined) = set.join_next().await else { break };
            let (i, res) = match joined {
                Ok(r) => r,
                Err(e) => {
                    stop.get_or_insert(Stop::Fatal { code: "llm.task".into(), message: e.to_string() });
                    continue;
                }
            };
            match res {
                Ok(o) => outcomes[i] = Some(o),
                Err(s) => {
                    stop.get_or_insert(s);
                }
            }
            done += 1;
            progress(done, total);
        }
        AllOutcomes { outcomes, stop }
    }
}

/// A multi-threaded tokio runtime for synchronous callers (curation stages run synchronously).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("medforge-llm").build()
}
