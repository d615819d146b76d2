//! `difficulty`: ask a base model each question and drop the ones it already gets right (reason
//! `difficulty.solved_by_base`), keeping the hard ones for training.
//!
//! MCQ rows: the letter is read from the answer by [`read_base_answer`] (the same parser `medforge eval` uses,
//! [`medforge_text::answer::extract`]) and compared with `answer_letter`; an answer no rule can read counts as not
//! solved (`unparsed`).
//! Open rows with a reference `answer`: a judge (the same or another backend) compares the two and says
//! correct/incorrect. Rows with neither are kept untouched. The base answer, the letter, the verdict
//! and how it was read go into `metadata.difficulty`.

use std::collections::BTreeMap;
use std::sync::Arc;

use medforge_data::Record;
use medforge_llm::GenParams;
use medforge_text::answer::{extract, parse_verdict, Choice, Extraction};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::call::{LlmStageConfig, StageSettings};
use super::llm::{non_empty, require_env, Got, LlmEnv, Prompt, RowState};
use super::structure::{
    confidence_scores, mcq_answer, mcq_phrases, verdict, ChoiceBy, StructureMode, StructureSetting,
};
use crate::stage::{Decision, Stage, StageContext, StageOutput, StageResult};

pub const DEFAULT_MCQ_PROMPT: &str = "Answer the following multiple-choice medical question. Think briefly if you need to, then finish with a final line of the form \"The answer is X\", where X is the letter of the single best option.

{{ question }}

{{ options_text }}";

pub const DEFAULT_OPEN_PROMPT: &str = "Answer the following medical question accurately and concisely.

{{ question }}";

pub const DEFAULT_JUDGE_SYSTEM: &str = "You grade answers to medical questions against a reference answer. You reply with exactly one word: correct or incorrect.";

pub const DEFAULT_JUDGE_PROMPT: &str = "Question:
{{ question }}

Reference answer:
{{ answer }}

Candidate answer:
{{ base_answer }}

Is the candidate answer medically equivalent to the reference answer on the key point? Reply with one word: correct or incorrect.";

fn default_judge_params() -> GenParams {
    GenParams { max_tokens: Some(8), temperature: Some(0.0), ..Default::default() }
}
fn yes() -> bool {
    true
}
fn default_reasoning_tokens() -> usize {
    128
}

/// `[[stages]] stage = "difficulty"`: the shared LLM keys ([`LlmCall`](super::call::LlmCall): `backend` is the base model being tested;
/// `system` and `params` are its) and [`DifficultySettings`].
pub type DifficultyConfig = LlmStageConfig<DifficultySettings>;

/// The `difficulty` stage's own keys: its two prompts and the judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DifficultySettings {
    /// The judge for open answers (default: the base backend).
    #[serde(default)]
    pub judge_backend: Option<String>,
    #[serde(default)]
    pub mcq_prompt: Option<String>,
    #[serde(default)]
    pub open_prompt: Option<String>,
    #[serde(default)]
    pub judge_system: Option<String>,
    #[serde(default)]
    pub judge_prompt: Option<String>,
    #[serde(default = "default_judge_params")]
    pub judge_params: GenParams,
    /// Drop rows the base model solves (the point of the stage); `false` only annotates them.
    #[serde(default = "yes")]
    pub drop_solved: bool,
    /// `choice` (default): an MCQ answer is free reasoning then `The answer is X` with X one of the row's letters,
    /// and the judge's verdict is `correct` or `incorrect`; `none`: free text, parsed tolerantly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structure: Option<StructureSetting>,
    /// With `structure = "choice"`: the most tokens of reasoning before the letter (0: the letter alone).
    #[serde(default = "default_reasoning_tokens")]
    pub reasoning_tokens: usize,
    /// With `structure = "choice"`: `decode` (default), or `loglik` to score `The answer is X.` for each letter and
    /// each verdict by log-likelihood where the backend can (no reasoning then), adding `difficulty.confidence` and
    /// `difficulty.margin` to the row's scores.
    #[serde(default)]
    pub choice_by: ChoiceBy,
}

impl StageSettings for DifficultySettings {
    const STAGE: &'static str = "difficulty";
    const CALL_KEYS: &'static [&'static str] = &["backend", "system", "params"];
    fn default_params() -> GenParams {
        GenParams { max_tokens: Some(512), temperature: Some(0.0), ..Default::default() }
    }
    fn instead(key: &str) -> Option<&'static str> {
        (key == "prompt").then_some("it takes `mcq_prompt` and `open_prompt`")
    }
}

pub struct Difficulty {
    cfg: DifficultyConfig,
    mcq: Prompt,
    open: Prompt,
    judge: Prompt,
    env: Arc<LlmEnv>,
    backend: String,
    judge_backend: String,
    constrained: bool,
}

impl Difficulty {
    pub fn new(cfg: DifficultyConfig, env: Option<&Arc<LlmEnv>>) -> StageResult<Self> {
        let env = require_env("difficulty", env)?.clone();
        let system = cfg.call.system.as_deref();
        let mcq = Prompt::new(
            "difficulty",
            "difficulty-mcq-v1",
            &[("system", system), ("prompt", Some(cfg.mcq_prompt.as_deref().unwrap_or(DEFAULT_MCQ_PROMPT)))],
        )?;
        let open = Prompt::new(
            "difficulty",
            "difficulty-open-v1",
            &[("system", system), ("prompt", Some(cfg.open_prompt.as_deref().unwrap_or(DEFAULT_OPEN_PROMPT)))],
        )?;
        let judge = Prompt::new(
            "difficulty",
            "difficulty-judge-v1",
            &[
                ("system", Some(cfg.judge_system.as_deref().unwrap_or(DEFAULT_JUDGE_SYSTEM))),
                ("prompt", Some(cfg.judge_prompt.as_deref().unwrap_or(DEFAULT_JUDGE_PROMPT))),
            ],
        )?;
        let backend = cfg.call.backend("difficulty", &env)?;
        let judge_backend = cfg.judge_backend.clone().unwrap_or_else(|| backend.clone());
        env.check_backend("difficulty", &backend)?;
        env.check_backend("difficulty", &judge_backend)?;
        let mode = StructureSetting::mode(
            &cfg.structure,
            "difficulty",
            StructureMode::Choice,
            &[StructureMode::Choice, StructureMode::None],
        )?;
        let constrained = mode == StructureMode::Choice;
        if cfg.choice_by == ChoiceBy::Loglik && !constrained {
            return Err(crate::stage::StageError::failed(
                "difficulty",
                "`choice_by = \"loglik\"` needs `structure = \"choice\"`",
            ));
        }
        Ok(Difficulty { cfg, mcq, open, judge, env, backend, judge_backend, constrained })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mcq,
    Open,
    Skip,
}

fn kind_of(r: &Record) -> Kind {
    if !r.options.is_empty() && r.answer_letter.as_deref().is_some_and(|s| !s.trim().is_empty()) {
        Kind::Mcq
    } else if r.answer.as_deref().is_some_and(|s| !s.trim().is_empty()) {
        Kind::Open
    } else {
        Kind::Skip
    }
}

impl Stage for Difficulty {
    fn name(&self) -> &str {
        "difficulty"
    }

    fn run(&mut self, rows: &mut [Record], ctx: &StageContext) -> StageResult<StageOutput> {
        const S: &str = "difficulty";
        let span = self.env.span(S);
        let kinds: Vec<Kind> = rows.iter().map(kind_of).collect();
        let none = json!({});
        let params = &self.cfg.call.params;
        // An MCQ row's structure names its own letters.
        let mcq_params = |r: &Record| -> GenParams {
            let letters: Vec<String> = r.options.iter().map(|o| o.letter.trim().to_ascii_uppercase()).collect();
            let scored = self.cfg.choice_by == ChoiceBy::Loglik;
            let structure = (self.constrained && !letters.is_empty()).then(|| {
                if scored {
                    mcq_phrases(&letters)
                } else {
                    mcq_answer(&letters, self.cfg.reasoning_tokens)
                }
            });
            GenParams { structure, score_choices: scored, ..params.clone() }
        };
        let judge_params = GenParams {
            structure: self.constrained.then(verdict),
            score_choices: self.cfg.choice_by == ChoiceBy::Loglik,
            ..self.cfg.judge_params.clone()
        };

        // Round 1: the base model answers. MCQ and open rows use different templates (so different
        // template versions), hence two calls to `round`, merged back by position.
        let mut base: Vec<Got> = vec![Got::Pending; rows.len()];
        // Choice scores of the answer that decided the row (the MCQ letter, or the judge's verdict).
        let mut scored: Vec<Option<Vec<medforge_llm::ChoiceLogprob>>> = vec![None; rows.len()];
        for (k, prompt) in [(Kind::Mcq, &self.mcq), (Kind::Open, &self.open)] {
            let client = self.env.client(S, &self.backend, &prompt.version)?;
            let reqs = rows
                .iter()
                .zip(&kinds)
                .map(|(r, kk)| match (*kk == k, k) {
                    (false, _) => Ok(None),
                    (true, Kind::Mcq) => prompt.request(S, r, &none, &mcq_params(r)).map(Some),
                    (true, _) => prompt.request(S, r, &none, params).map(Some),
                })
                .collect::<StageResult<Vec<_>>>()?;
            let got = self.env.round_scored(S, &self.backend, &client, rows, reqs, non_empty, ctx);
            for (i, (g, sc)) in got.into_iter().enumerate() {
                if kinds[i] == k {
                    base[i] = g;
                    scored[i] = sc;
                }
            }
        }

        // Round 2: the judge, for open rows with a base answer.
        let judge_client = self.env.client(S, &self.judge_backend, &self.judge.version)?;
        let mut jreqs = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            jreqs.push(match (&base[i], kinds[i]) {
                (Got::Text(t), Kind::Open) => {
                    Some(self.judge.request(S, r, &json!({"base_answer": t}), &judge_params)?)
                }
                _ => None,
            });
        }
        let later = (0..rows.len()).filter(|&i| kinds[i] == Kind::Open && base[i] == Got::Pending).count();
        self.env.note_later_calls(S, later as u64);
        let judged = self.env.round_scored(
            S,
            &self.judge_backend,
            &judge_client,
            rows,
            jreqs,
            |_, t| {
                parse_verdict(t).map(|_| ()).ok_or_else(|| {
                    format!("no correct/incorrect verdict in `{}`", t.chars().take(80).collect::<String>())
                })
            },
            ctx,
        );
        let (judged, judge_scores): (Vec<Got>, Vec<_>) = judged.into_iter().unzip();
        for (i, sc) in judge_scores.into_iter().enumerate() {
            if kinds[i] == Kind::Open {
                scored[i] = sc;
            }
        }

        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        let mut methods: BTreeMap<String, usize> = BTreeMap::new();
        let mut decisions = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter_mut().enumerate() {
            let state = match (kinds[i], &base[i], &judged[i]) {
                (Kind::Skip, ..) => {
                    *counts.entry("no_reference").or_default() += 1;
                    RowState::Done(Decision::keep())
                }
                (_, Got::Failed { code, reason }, _) | (Kind::Open, _, Got::Failed { code, reason }) => {
                    RowState::Failed { code: code.clone(), reason: reason.clone() }
                }
                (_, Got::Pending, _) | (Kind::Open, _, Got::Pending) => RowState::Pending,
                (Kind::Mcq, Got::Text(t), _) => {
                    let got = read_base_answer(t, r);
                    let want = r.answer_letter.as_deref().unwrap_or("").trim();
                    let verdict = match got {
                        Extraction::Letter { letter, .. } if want.eq_ignore_ascii_case(&letter.to_string()) => {
                            "correct"
                        }
                        Extraction::Letter { .. } => "incorrect",
                        Extraction::Unparseable { .. } => "unparsed",
                    };
                    let (method, letter) = match got {
                        Extraction::Letter { letter, rule } => (json!(rule), Some(letter.to_string())),
                        Extraction::Unparseable { reason } => (json!(reason.code()), None),
                    };
                    *methods.entry(method.as_str().unwrap_or("none").to_string()).or_default() += 1;
                    r.metadata.insert(
                        "difficulty".into(),
                        json!({"base_answer": t, "base_letter": letter, "method": method, "verdict": verdict}),
                    );
                    RowState::Done(self.verdict(verdict, &mut counts, scored[i].as_deref()))
                }
                (Kind::Open, Got::Text(t), Got::Text(j)) => {
                    let verdict = if parse_verdict(j) == Some(true) { "correct" } else { "incorrect" };
                    r.metadata.insert("difficulty".into(), json!({"base_answer": t, "judge": j, "verdict": verdict}));
                    RowState::Done(self.verdict(verdict, &mut counts, scored[i].as_deref()))
                }
            };
            decisions.push(self.env.decide(S, r, state, ctx)?);
        }
        span.finish();
        let answered = counts.get("correct").unwrap_or(&0)
            + counts.get("incorrect").unwrap_or(&0)
            + counts.get("unparsed").unwrap_or(&0);
        let report = json!({
            "rows": rows.len(),
            "verdicts": counts,
            "solve_rate": if answered == 0 { 0.0 } else { *counts.get("correct").unwrap_or(&0) as f64 / answered as f64 },
            "letter_methods": methods,
            "drop_solved": self.cfg.drop_solved,
            "structure": if self.constrained { "choice" } else { "none" },
            "choice_by": self.cfg.choice_by,
            "template_versions": {"mcq": self.mcq.version, "open": self.open.version, "judge": self.judge.version},
        });
        Ok(StageOutput::new(decisions).with_report("difficulty_report.json", report))
    }
}

/// The letter a base model's answer picks among the row's options: [`medforge_text::answer::extract`], the cascade
/// `medforge eval` scores with.
pub fn read_base_answer(answer: &str, r: &Record) -> Extraction {
    let choices: Vec<Choice> = r
        .options
        .iter()
        .filter_map(|o| {
            let letter = o.letter.trim().chars().next()?.to_ascii_uppercase();
            Some(Choice { letter, text: o.text.clone() })
        })
        .collect();
    extract(answer, &choices)
}

impl Difficulty {
    fn verdict(
        &self,
        verdict: &'static str,
        counts: &mut BTreeMap<&'static str, usize>,
        scored: Option<&[medforge_llm::ChoiceLogprob]>,
    ) -> Decision {
        *counts.entry(verdict).or_default() += 1;
        let solved = verdict == "correct";
        let d =
            if solved && self.cfg.drop_solved { Decision::drop("difficulty.solved_by_base") } else { Decision::keep() };
        let mut d = d.with_score("difficulty.solved", f64::from(u8::from(solved)));
        for (k, v) in confidence_scores("difficulty", scored) {
            d = d.with_score(&k, v);
        }
        d
    }
}
