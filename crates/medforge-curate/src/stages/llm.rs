//! What the LLM stages share: the `[llm]` config section, the run's [`LlmEnv`] (one client per named
//! backend over one cache, one spend counter and one budget), prompt templates, and the mapping of
//! call outcomes to row decisions and dead letters.
//!
//! The `[llm]` section itself is [`medforge_llm::config::LlmSection`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use medforge_data::Record;
pub use medforge_llm::batch::CustomId;
pub use medforge_llm::config::{LlmSection, NamedBackend, OnFailure, DEFAULT_BACKEND};
use medforge_llm::{
    build_backend, Cache, CacheMode, ChatRequest, ChoiceLogprob, DeadLetter, DeadLetterWriter, DryRunEstimate,
    GenParams, LlmClient, Message, Outcome, Spend, SpendSnapshot, Stop,
};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::stage::{Decision, StageContext, StageError, StageResult};

/// How a run uses the LLM backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LlmMode {
    /// Make the calls.
    #[default]
    Live,
    /// `--dry-run`: estimate the calls not already cached; make none.
    DryRun,
    /// `medforge batch export`: collect the calls not already cached as Batch API requests; make none.
    Export,
}

/// Run-level LLM options from the command line.
#[derive(Debug, Clone, Default)]
pub struct LlmOptions {
    pub mode: LlmMode,
    /// `--no-cache` (`Off`) / `--refresh` (`Refresh`); `None` keeps the config's `cache_mode`.
    pub cache_mode: Option<CacheMode>,
    /// Share the run's spend counters with the caller (for a live progress line).
    pub spend: Option<Arc<Spend>>,
}

/// One request collected by `medforge batch export`.
#[derive(Debug, Clone)]
pub struct ExportItem {
    /// Unique per row and stage.
    pub custom_id: CustomId,
    pub backend: String,
    pub model: String,
    pub request: ChatRequest,
}

/// Dry-run figures of one stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageEstimate {
    /// Requests already answered in the cache (free).
    pub cached: u64,
    /// Requests that would be made, with their tokens and cost.
    #[serde(flatten)]
    pub calls: DryRunEstimate,
    /// Rows whose later requests (a judge, a rewrite retry) depend on answers not yet known: not
    /// counted above.
    pub rows_with_later_calls: u64,
}

/// The LLM side of one run.
pub struct LlmEnv {
    section: LlmSection,
    mode: LlmMode,
    clients: BTreeMap<String, LlmClient>,
    cache: Option<Arc<Cache>>,
    cache_mode: CacheMode,
    spend: Arc<Spend>,
    rt: tokio::runtime::Runtime,
    dead: Mutex<Option<DeadLetterWriter>>,
    stop: Mutex<Option<Stop>>,
    estimates: Mutex<BTreeMap<String, StageEstimate>>,
    exported: Mutex<Vec<ExportItem>>,
    /// Export mode: rows an earlier stage is still waiting on. Their later-stage requests would be
    /// built from fields not yet filled in, so they are not exported until the earlier answers exist.
    waiting: Mutex<std::collections::HashSet<String>>,
    stage_spend: Mutex<BTreeMap<String, SpendSnapshot>>,
}

impl std::fmt::Debug for LlmEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmEnv").field("mode", &self.mode).field("backends", &self.clients.keys()).finish()
    }
}

fn llm_err(e: impl std::fmt::Display) -> StageError {
    StageError::failed("llm", e)
}

impl LlmEnv {
    /// Open the cache and build one client per backend. In dry-run and export modes no API key is
    /// read (nothing is sent); cache keys are the same, since a backend's identity never holds a key.
    pub fn new(section: &LlmSection, run_output: &Path, opts: &LlmOptions) -> StageResult<LlmEnv> {
        let cache_mode = opts.cache_mode.unwrap_or(section.cache_mode);
        let cache = match cache_mode {
            CacheMode::Off => None,
            _ => {
                let path = section.cache_path(run_output);
                Some(Arc::new(Cache::open(&path).map_err(llm_err)?))
            }
        };
        let spend = opts.spend.clone().unwrap_or_default();
        let mut clients = BTreeMap::new();
        for name in section.names() {
            let mut eps = section.endpoints_of(&name).unwrap_or_default().to_vec();
            if opts.mode != LlmMode::Live {
                for e in &mut eps {
                    e.api_key_env = None;
                }
            }
            let label = if name == DEFAULT_BACKEND {
                "[[llm.endpoints]]".to_string()
            } else {
                format!("[llm.backends.{name}]")
            };
            let backend = build_backend(&eps).map_err(|e| StageError::failed("llm", format!("{label}: {e}")))?;
            let mut c = LlmClient::new(backend).with_spend(spend.clone()).with_budget(section.budget_usd);
            if let Some(cache) = &cache {
                c = c.with_cache(cache.clone(), cache_mode);
            }
            clients.insert(name, c);
        }
        let rt = medforge_llm::runtime().map_err(llm_err)?;
        Ok(LlmEnv {
            section: section.clone(),
            mode: opts.mode,
            clients,
            cache,
            cache_mode,
            spend,
            rt,
            dead: Mutex::new(None),
            stop: Mutex::new(None),
            estimates: Mutex::new(BTreeMap::new()),
            exported: Mutex::new(Vec::new()),
            waiting: Mutex::new(std::collections::HashSet::new()),
            stage_spend: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn mode(&self) -> LlmMode {
        self.mode
    }
    pub fn spend(&self) -> &Arc<Spend> {
        &self.spend
    }
    pub fn on_failure(&self) -> OnFailure {
        self.section.on_failure
    }
    /// The stop that ended the run's LLM work (budget, 401/403, quota), if any.
    pub fn stopped(&self) -> Option<Stop> {
        lock(&self.stop).clone()
    }
    pub fn estimates(&self) -> BTreeMap<String, StageEstimate> {
        lock(&self.estimates).clone()
    }
    pub fn take_exported(&self) -> Vec<ExportItem> {
        std::mem::take(&mut *lock(&self.exported))
    }
    pub fn stage_spend(&self) -> BTreeMap<String, SpendSnapshot> {
        lock(&self.stage_spend).clone()
    }

    /// A client for `backend` whose cache keys carry `template_version`; the error names the valid
    /// backends.
    pub fn client(&self, stage: &str, backend: &str, template_version: &str) -> StageResult<LlmClient> {
        match self.clients.get(backend) {
            Some(c) => Ok(c.with_template_version(template_version)),
            None => Err(StageError::failed(
                stage,
                format!(
                    "backend `{backend}` is not configured; [llm] has: {} (add [[llm.endpoints]] for `default`, or [[llm.backends.{backend}.endpoints]])",
                    if self.clients.is_empty() { "none".to_string() } else { self.clients.keys().cloned().collect::<Vec<_>>().join(", ") }
                ),
            )),
        }
    }

    /// Check at build time that a stage's backend exists.
    pub fn check_backend(&self, stage: &str, backend: &str) -> StageResult<()> {
        self.client(stage, backend, "").map(|_| ())
    }

    /// The `llm` object of the manifest: per-stage spend, totals, budget, stop, dry-run figures.
    pub fn manifest_json(&self) -> Value {
        let stop = self.stopped().map(|s| {
            json!({"message": s.to_string(), "kind": match s {
                Stop::Budget { .. } => "budget".to_string(),
                Stop::Fatal { code, .. } => code,
            }})
        });
        let mut v = json!({
            "mode": format!("{:?}", self.mode).to_lowercase(),
            "cache": self.cache.as_ref().map(|c| c.path().to_path_buf()),
            "cache_mode": self.cache_mode,
            "budget_usd": self.section.budget_usd,
            "stages": self.stage_spend(),
            "total": self.spend.snapshot(),
            "stopped": stop,
        });
        if self.mode != LlmMode::Live {
            v["estimate"] = json!(self.estimates());
        }
        v
    }

    /// Write a dead letter into the run's `failed.jsonl`.
    pub fn dead_letter(&self, run_dir: &Path, letter: DeadLetter) -> StageResult<()> {
        let mut g = lock(&self.dead);
        if g.as_ref().is_none_or(|w| w.path().parent() != Some(run_dir)) {
            let path = run_dir.join(medforge_llm::deadletter::FAILED_FILE);
            *g = Some(DeadLetterWriter::open(&path).map_err(|e| medforge_data::Error::io(&path, e))?);
        }
        let w = g.as_ref().expect("opened above");
        w.write(&letter).map_err(|e| medforge_data::Error::io(w.path(), e).into())
    }

    /// Start counting a stage's own spend; [`StageSpan::finish`] stores the difference.
    pub fn span(&self, stage: &str) -> StageSpan<'_> {
        StageSpan { env: self, stage: stage.to_string(), start: self.spend.snapshot() }
    }

    /// One round of requests, one per entry of `reqs` (`None`: this row makes no call this round).
    ///
    /// Live: up to `window` at once through the cache; a [`Stop`] ends the round, leaving the rows not
    /// started `Pending`. Dry-run/export: cached answers are used, the rest are estimated (and
    /// collected for export) and left `Pending`, so a stage walks as far as the cache lets it.
    #[allow(clippy::too_many_arguments)] // each is one independent input of the round
    pub fn round<V>(
        &self,
        stage: &str,
        backend: &str,
        client: &LlmClient,
        rows: &[Record],
        reqs: Vec<Option<ChatRequest>>,
        validate: V,
        ctx: &StageContext,
    ) -> Vec<Got>
    where
        V: Fn(usize, &str) -> Result<(), String> + Send + Sync + 'static,
    {
        self.round_scored(stage, backend, client, rows, reqs, validate, ctx).into_iter().map(|(g, _)| g).collect()
    }

    /// [`LlmEnv::round`], with each answer's choice scores where the request asked to score its choices and the
    /// backend did.
    #[allow(clippy::too_many_arguments)]
    pub fn round_scored<V>(
        &self,
        stage: &str,
        backend: &str,
        client: &LlmClient,
        rows: &[Record],
        reqs: Vec<Option<ChatRequest>>,
        validate: V,
        ctx: &StageContext,
    ) -> Vec<(Got, Option<Vec<ChoiceLogprob>>)>
    where
        V: Fn(usize, &str) -> Result<(), String> + Send + Sync + 'static,
    {
        let mut scores: Vec<Option<Vec<ChoiceLogprob>>> = vec![None; reqs.len()];
        let mut out: Vec<Got> = vec![Got::Pending; reqs.len()];
        let idx: Vec<usize> = (0..reqs.len()).filter(|&i| reqs[i].is_some()).collect();
        if idx.is_empty() {
            return out.into_iter().zip(scores).collect();
        }
        match self.mode {
            LlmMode::Live => {
                if self.stopped().is_some() {
                    return out.into_iter().zip(scores).collect();
                }
                let total = idx.len() as u64;
                let map = Arc::new(idx.clone());
                let v = Arc::new(validate);
                let batch: Vec<ChatRequest> = idx.iter().map(|&i| reqs[i].clone().expect("some")).collect();
                let all = self.rt.block_on(client.complete_all(
                    batch,
                    self.section.window.max(1),
                    {
                        let (map, v) = (map.clone(), v.clone());
                        move |j, t| v(map[j], t)
                    },
                    |d, _| (ctx.progress)(d as u64, total),
                ));
                for (j, o) in all.outcomes.into_iter().enumerate() {
                    out[idx[j]] = match o {
                        Some(Outcome::Done(resp, _)) => {
                            scores[idx[j]] = resp.choice_logprobs;
                            Got::Text(resp.text)
                        }
                        Some(Outcome::Skipped { code, message }) => Got::Failed { code, reason: message },
                        Some(Outcome::Failed { code, reason }) => Got::Failed { code, reason },
                        None => Got::Pending,
                    };
                }
                if let Some(s) = all.stop {
                    lock(&self.stop).get_or_insert(s);
                }
            }
            LlmMode::DryRun | LlmMode::Export => {
                let mut est = StageEstimate::default();
                let model = client.backend().model();
                let waiting = lock(&self.waiting).clone();
                for &i in &idx {
                    if self.mode == LlmMode::Export && waiting.contains(&rows[i].id) {
                        est.rows_with_later_calls += 1;
                        continue;
                    }
                    let req = reqs[i].as_ref().expect("some");
                    let key = client.key(req);
                    let hit = match (&self.cache, self.cache_mode) {
                        (Some(c), CacheMode::Use) => {
                            c.get(&key).ok().flatten().filter(|r| validate(i, &r.text).is_ok())
                        }
                        _ => None,
                    };
                    match hit {
                        Some(r) => {
                            est.cached += 1;
                            scores[i] = r.choice_logprobs;
                            out[i] = Got::Text(r.text);
                        }
                        None => {
                            est.calls.add(req, &client.pricing());
                            if self.mode == LlmMode::Export {
                                lock(&self.exported).push(ExportItem {
                                    custom_id: CustomId {
                                        stage: stage.to_string(),
                                        row_id: rows[i].id.clone(),
                                        key: key.clone(),
                                    },
                                    backend: backend.to_string(),
                                    model: model.clone(),
                                    request: req.clone(),
                                });
                            }
                        }
                    }
                }
                let mut all = lock(&self.estimates);
                let e = all.entry(stage.to_string()).or_default();
                e.cached += est.cached;
                e.calls.requests += est.calls.requests;
                e.calls.prompt_tokens += est.calls.prompt_tokens;
                e.calls.completion_tokens += est.calls.completion_tokens;
                e.calls.usd += est.calls.usd;
                e.rows_with_later_calls += est.rows_with_later_calls;
            }
        }
        out.into_iter().zip(scores).collect()
    }

    /// Note rows whose next request cannot be estimated yet (dry-run only).
    pub fn note_later_calls(&self, stage: &str, rows: u64) {
        if self.mode != LlmMode::Live && rows > 0 {
            lock(&self.estimates).entry(stage.to_string()).or_default().rows_with_later_calls += rows;
        }
    }

    /// Turn a row's final state into its decision, writing a dead letter for a failure.
    pub fn decide(&self, stage: &str, row: &Record, state: RowState, ctx: &StageContext) -> StageResult<Decision> {
        Ok(match state {
            RowState::Done(d) => d,
            RowState::Failed { code, reason } => {
                self.dead_letter(
                    ctx.run_dir,
                    DeadLetter { row_id: row.id.clone(), stage: stage.to_string(), code: code.clone(), reason },
                )?;
                let why = format!("llm.failed:{code}");
                match self.section.on_failure {
                    OnFailure::Drop => Decision::drop(why),
                    OnFailure::Keep => Decision { keep: true, reason: Some(why), scores: Vec::new() },
                }
            }
            RowState::Pending => match self.stopped() {
                // Not processed because the run stopped: out of the curated set, but no dead letter
                // (a re-run does them, reusing every cached answer).
                Some(s) if self.mode == LlmMode::Live => Decision::drop(format!("llm.stopped:{}", stop_code(&s))),
                _ => {
                    if self.mode == LlmMode::Export {
                        lock(&self.waiting).insert(row.id.clone());
                    }
                    Decision::keep()
                }
            },
        })
    }
}

/// The stable code of a stop: `budget`, or the fatal error's code (`llm.unauthorized`, ...).
pub fn stop_code(s: &Stop) -> String {
    match s {
        Stop::Budget { .. } => "budget".into(),
        Stop::Fatal { code, .. } => code.clone(),
    }
}

/// Counts one stage's share of the run's spend.
pub struct StageSpan<'a> {
    env: &'a LlmEnv,
    stage: String,
    start: SpendSnapshot,
}

impl StageSpan<'_> {
    pub fn finish(self) {
        let now = self.env.spend.snapshot();
        let s = &self.start;
        let d = SpendSnapshot {
            calls: now.calls - s.calls,
            cache_hits: now.cache_hits - s.cache_hits,
            retries: now.retries - s.retries,
            skipped: now.skipped - s.skipped,
            failed: now.failed - s.failed,
            prompt_tokens: now.prompt_tokens - s.prompt_tokens,
            completion_tokens: now.completion_tokens - s.completion_tokens,
            usd: (now.usd - s.usd).max(0.0),
        };
        lock(&self.env.stage_spend).insert(self.stage, d);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One request's result as a stage sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Got {
    Text(String),
    /// A dead letter: retries spent, 400/content filter (`llm.content_filter`), an invalid answer.
    Failed {
        code: String,
        reason: String,
    },
    /// Not asked: the run stopped, or a dry run / export.
    Pending,
}

/// A row's state as it moves through a stage's rounds.
#[derive(Debug, Clone, PartialEq)]
pub enum RowState {
    Done(Decision),
    Failed { code: String, reason: String },
    Pending,
}

/// A stage's prompt: minijinja templates (system and user, plus any extras such as a retry
/// message), compiled once, with undefined variables an error so a typo fails at the first row.
pub struct Prompt {
    env: minijinja::Environment<'static>,
    has_system: bool,
    /// Hash of every template and the stage's own version: part of every cache key.
    pub version: String,
}

impl Prompt {
    /// `templates`: (name, source) pairs; `system` and `prompt` are the chat messages. `code_version`
    /// changes when the stage's parsing changes the meaning of cached answers.
    pub fn new(stage: &str, code_version: &str, templates: &[(&str, Option<&str>)]) -> StageResult<Prompt> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_trim_blocks(true);
        let mut h = Sha256::new();
        h.update(stage.as_bytes());
        h.update([0]);
        h.update(code_version.as_bytes());
        let mut has_system = false;
        for (name, src) in templates {
            let Some(src) = src else { continue };
            h.update([0]);
            h.update(name.as_bytes());
            h.update([0]);
            h.update(src.as_bytes());
            has_system |= *name == "system";
            env.add_template_owned(name.to_string(), src.to_string())
                .map_err(|e| StageError::failed(stage, format!("template `{name}`: {e:#}")))?;
        }
        let version = hex::encode(&Sha256::digest(h.finalize())[..8]);
        Ok(Prompt { env, has_system, version })
    }

    /// Render one template for a row.
    pub fn render(&self, stage: &str, name: &str, row: &Record, extra: &Value) -> StageResult<String> {
        let t =
            self.env.get_template(name).map_err(|e| StageError::failed(stage, format!("template `{name}`: {e}")))?;
        let mut ctx = row_context(row);
        if let (Value::Object(m), Value::Object(x)) = (&mut ctx, extra) {
            m.extend(x.clone());
        }
        t.render(minijinja::Value::from_serialize(&ctx))
            .map_err(|e| StageError::failed(stage, format!("template `{name}` on row `{}`: {e:#}", row.id)))
    }

    /// The chat request: the system message (when the stage has one) and the user prompt.
    pub fn request(&self, stage: &str, row: &Record, extra: &Value, params: &GenParams) -> StageResult<ChatRequest> {
        let mut messages = Vec::with_capacity(2);
        if self.has_system {
            messages.push(Message::system(self.render(stage, "system", row, extra)?));
        }
        messages.push(Message::user(self.render(stage, "prompt", row, extra)?));
        Ok(ChatRequest::new(messages).with_params(params.clone()))
    }
}

/// The variables a prompt template sees: every record field, `options_text` ("A. text" lines) and
/// whatever the stage adds.
pub fn row_context(r: &Record) -> Value {
    let options_text = r.options.iter().map(|o| format!("{}. {}", o.letter, o.text)).collect::<Vec<_>>().join("\n");
    json!({
        "id": r.id, "source": r.source, "kind": r.kind.as_str(), "question": r.question, "context": r.context,
        "options": r.options, "options_text": options_text, "answer_letter": r.answer_letter, "answer": r.answer,
        "reasoning": r.reasoning, "response": r.response, "chosen": r.chosen, "rejected": r.rejected,
        "specialty": r.specialty, "specialties": r.specialties, "division": r.division, "divisions": r.divisions,
        "language": r.language, "metadata": r.metadata,
    })
}

/// Non-empty after trimming: the minimal check before an answer is cached.
pub fn non_empty(_: usize, t: &str) -> Result<(), String> {
    if t.trim().is_empty() {
        Err("empty answer".into())
    } else {
        Ok(())
    }
}

/// Check that an LLM stage has its `[llm]` environment.
pub fn require_env<'a>(stage: &str, env: Option<&'a Arc<LlmEnv>>) -> StageResult<&'a Arc<LlmEnv>> {
    env.ok_or_else(|| {
        StageError::failed(
            stage,
            "this stage calls an LLM: add an [llm] section with at least one [[llm.endpoints]] (base_url, model, api_key_env)",
        )
    })
}

/// Fields an LLM stage can read from or write to: a record text field, or `metadata.<key>`.
pub const WRITABLE_FIELDS: &[&str] = &["question", "context", "answer", "reasoning", "response", "chosen", "rejected"];

/// Check a target field name in a config.
pub fn check_field(stage: &str, key: &str, field: &str) -> StageResult<()> {
    if WRITABLE_FIELDS.contains(&field) || field.strip_prefix("metadata.").is_some_and(|k| !k.is_empty()) {
        Ok(())
    } else {
        Err(StageError::failed(
            stage,
            format!(
                "`{key} = \"{field}\"` is not a text field; use one of {} or metadata.<name>",
                WRITABLE_FIELDS.join(", ")
            ),
        ))
    }
}

/// The text of a field (`metadata.<key>` strings included); `None` when absent or empty.
pub fn get_text(r: &Record, field: &str) -> Option<String> {
    match field.strip_prefix("metadata.") {
        Some(k) => r.metadata.get(k).and_then(|v| v.as_str()).filter(|s| !s.is_empty()).map(str::to_string),
        None => r.text_field(field).map(str::to_string),
    }
}

/// Set a field checked by [`check_field`].
pub fn set_text(r: &mut Record, field: &str, value: String) {
    if let Some(k) = field.strip_prefix("metadata.") {
        r.metadata.insert(k.to_string(), Value::String(value));
        return;
    }
    match field {
        "question" => r.question = value,
        "context" => r.context = Some(value),
        "answer" => r.answer = Some(value),
        "reasoning" => r.reasoning = Some(value),
        "response" => r.response = Some(value),
        "chosen" => r.chosen = Some(value),
        "rejected" => r.rejected = Some(value),
        _ => {}
    }
}
