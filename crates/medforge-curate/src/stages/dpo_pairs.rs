//! `dpo_pairs`: preference pairs for DPO. The prompt is built from the question (MedQuAD rows carry
//! their question type, normalised to `metadata.category` by the preset); `chosen` comes from a
//! teacher backend and `rejected` from another, each with its own system prompt. Pairs with an
//! empty side (`dpo.empty:chosen`) or two equal sides (`dpo.identical`) are dropped. Kept rows
//! become `preference` records (so the `format` stage makes DPO rows of them), and the run folder
//! gets `dpo_pairs.jsonl` (`prompt`, `chosen`, `rejected`, `meta`) as the MedQuAD safety DPO pipeline wrote, plus a
//! length-ratio report.

use std::sync::Arc;

use medforge_data::write::write_atomic;
use medforge_data::{Record, RecordKind};
use medforge_llm::GenParams;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::call::{LlmStageConfig, StageSettings};
use super::llm::{non_empty, require_env, Got, LlmEnv, LlmMode, Prompt, RowState};
use super::structure::StructureSetting;
use crate::stage::{Decision, Stage, StageContext, StageOutput, StageResult};
use medforge_text::answer::visible_answer;

pub const DEFAULT_PROMPT: &str = "{{ question }}{% if options %}

{{ options_text }}{% endif %}";

pub const DEFAULT_CHOSEN_SYSTEM: &str = "You are an experienced, board-certified physician. Answer the medical question accurately and completely: state the answer first, then explain the reasoning, cite the relevant guideline-level facts, and say clearly when something is uncertain or needs a clinician's examination.";

pub const DEFAULT_REJECTED_SYSTEM: &str = "You are a general-purpose assistant. Answer the question briefly.";

fn teacher() -> String {
    "teacher".into()
}
fn default_backend() -> String {
    super::llm::DEFAULT_BACKEND.into()
}
fn default_output() -> String {
    "dpo_pairs.jsonl".into()
}

/// `[[stages]] stage = "dpo_pairs"`: the shared LLM keys `prompt` and `params` ([`LlmCall`](super::call::LlmCall)) and
/// [`DpoPairsSettings`] (a backend and a system prompt per side).
pub type DpoPairsConfig = LlmStageConfig<DpoPairsSettings>;

/// The `dpo_pairs` stage's own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpoPairsSettings {
    #[serde(default = "teacher")]
    pub chosen_backend: String,
    #[serde(default = "default_backend")]
    pub rejected_backend: String,
    #[serde(default)]
    pub chosen_system: Option<String>,
    #[serde(default)]
    pub rejected_system: Option<String>,
    /// The pairs file in the run folder.
    #[serde(default = "default_output")]
    pub output: String,
    /// `{ json_schema = {...} }`: both answers are JSON valid against the schema where the backend enforces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structure: Option<StructureSetting>,
}

impl StageSettings for DpoPairsSettings {
    const STAGE: &'static str = "dpo_pairs";
    const CALL_KEYS: &'static [&'static str] = &["prompt", "params"];
    fn default_params() -> GenParams {
        GenParams { max_tokens: Some(1024), temperature: Some(0.7), seed: Some(42), ..Default::default() }
    }
    fn instead(key: &str) -> Option<&'static str> {
        match key {
            "backend" => Some("it takes `chosen_backend` and `rejected_backend`"),
            "system" => Some("it takes `chosen_system` and `rejected_system`"),
            _ => None,
        }
    }
}

pub struct DpoPairs {
    cfg: DpoPairsConfig,
    chosen: Prompt,
    rejected: Prompt,
    env: Arc<LlmEnv>,
    params: GenParams,
}

impl DpoPairs {
    pub fn new(cfg: DpoPairsConfig, env: Option<&Arc<LlmEnv>>) -> StageResult<Self> {
        let env = require_env("dpo_pairs", env)?.clone();
        let prompt = cfg.call.prompt_or(DEFAULT_PROMPT);
        let chosen = Prompt::new(
            "dpo_pairs",
            "dpo-chosen-v1",
            &[
                ("system", Some(cfg.chosen_system.as_deref().unwrap_or(DEFAULT_CHOSEN_SYSTEM))),
                ("prompt", Some(prompt)),
            ],
        )?;
        let rejected = Prompt::new(
            "dpo_pairs",
            "dpo-rejected-v1",
            &[
                ("system", Some(cfg.rejected_system.as_deref().unwrap_or(DEFAULT_REJECTED_SYSTEM))),
                ("prompt", Some(prompt)),
            ],
        )?;
        env.check_backend("dpo_pairs", &cfg.chosen_backend)?;
        env.check_backend("dpo_pairs", &cfg.rejected_backend)?;
        let params =
            GenParams { structure: StructureSetting::schema(&cfg.structure, "dpo_pairs")?, ..cfg.call.params.clone() };
        Ok(DpoPairs { cfg, chosen, rejected, env, params })
    }
}

fn norm(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

impl Stage for DpoPairs {
    fn name(&self) -> &str {
        "dpo_pairs"
    }

    fn run(&mut self, rows: &mut [Record], ctx: &StageContext) -> StageResult<StageOutput> {
        const S: &str = "dpo_pairs";
        let span = self.env.span(S);
        // The prompt template also sees `side` ("chosen" / "rejected"), for side-specific wording.
        let chosen_side = json!({"side": "chosen"});
        let mut sides = Vec::with_capacity(2);
        for (prompt, backend, side) in [
            (&self.chosen, &self.cfg.chosen_backend, "chosen"),
            (&self.rejected, &self.cfg.rejected_backend, "rejected"),
        ] {
            let client = self.env.client(S, backend, &prompt.version)?;
            let extra = json!({"side": side});
            let reqs = rows
                .iter()
                .map(|r| prompt.request(S, r, &extra, &self.params).map(Some))
                .collect::<StageResult<Vec<_>>>()?;
            sides.push((self.env.round(S, backend, &client, rows, reqs, non_empty, ctx), client.backend().model()));
        }
        let (rejected, rejected_model) = sides.pop().expect("two sides");
        let (chosen, chosen_model) = sides.pop().expect("two sides");
        let mut lines = Vec::new();
        let mut ratios: Vec<f64> = Vec::new();
        let (mut empty, mut identical) = (0usize, 0usize);
        let mut decisions = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter_mut().enumerate() {
            let state = match (&chosen[i], &rejected[i]) {
                (Got::Failed { code, reason }, _) | (_, Got::Failed { code, reason }) => {
                    RowState::Failed { code: code.clone(), reason: reason.clone() }
                }
                (Got::Pending, _) | (_, Got::Pending) => RowState::Pending,
                (Got::Text(c), Got::Text(rj)) => {
                    let (c, rj) = (visible_answer(c), visible_answer(rj));
                    if c.trim().is_empty() || rj.trim().is_empty() {
                        empty += 1;
                        let side = if c.trim().is_empty() { "chosen" } else { "rejected" };
                        RowState::Done(Decision::drop(format!("dpo.empty:{side}")))
                    } else if norm(&c) == norm(&rj) {
                        identical += 1;
                        RowState::Done(Decision::drop("dpo.identical"))
                    } else {
                        let (lc, lr) = (c.chars().count(), rj.chars().count());
                        let ratio = lc as f64 / lr.max(1) as f64;
                        ratios.push(ratio);
                        let prompt = self.chosen.render(S, "prompt", r, &chosen_side)?;
                        let category = r.metadata.get("category").or_else(|| r.metadata.get("qtype")).cloned();
                        lines.push(json!({
                            "prompt": prompt, "chosen": c, "rejected": rj,
                            "meta": {"id": r.id, "source": r.source, "category": category, "language": r.language,
                                     "chosen_model": chosen_model, "rejected_model": rejected_model,
                                     "chosen_chars": lc, "rejected_chars": lr, "length_ratio": ratio},
                        }));
                        r.kind = RecordKind::Preference;
                        r.chosen = Some(c);
                        r.rejected = Some(rj);
                        r.metadata.insert("dpo_prompt".into(), Value::String(prompt));
                        RowState::Done(Decision::keep().with_score("dpo.length_ratio", ratio))
                    }
                }
            };
            decisions.push(self.env.decide(S, r, state, ctx)?);
        }
        span.finish();
        if self.env.mode() == LlmMode::Live {
            let mut text = String::new();
            for l in &lines {
                text.push_str(&l.to_string());
                text.push('\n');
            }
            write_atomic(&ctx.path(&self.cfg.output), text.as_bytes())?;
        }
        ratios.sort_by(f64::total_cmp);
        let pct = |q: f64| ratios.get(((ratios.len() as f64 - 1.0) * q).round() as usize).copied();
        let report = json!({
            "rows": rows.len(),
            "pairs": lines.len(),
            "dropped_empty": empty,
            "dropped_identical": identical,
            "chosen_model": chosen_model,
            "rejected_model": rejected_model,
            "length_ratio": {
                "mean": if ratios.is_empty() { None } else { Some(ratios.iter().sum::<f64>() / ratios.len() as f64) },
                "min": ratios.first(), "p50": pct(0.5), "p90": pct(0.9), "max": ratios.last(),
                "chosen_shorter": ratios.iter().filter(|r| **r < 1.0).count(),
            },
            "output": self.cfg.output,
            "template_versions": {"chosen": self.chosen.version, "rejected": self.rejected.version},
        });
        Ok(StageOutput::new(decisions).with_report("dpo_pairs_report.json", report))
    }
}
