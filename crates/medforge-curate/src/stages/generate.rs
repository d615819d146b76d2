//! `generate`: any prompt template into a field, e.g. reasoning for rows that have none, or answers.
//! The answer (reasoning blocks kept unless `strip_reasoning`) goes into `into`; rows are kept.

use std::sync::Arc;

use medforge_data::Record;
use medforge_llm::GenParams;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::call::{LlmStageConfig, StageSettings};
use super::llm::{check_field, get_text, non_empty, require_env, set_text, Got, LlmEnv, Prompt, RowState};
use super::structure::StructureSetting;
use crate::stage::{Decision, Stage, StageContext, StageOutput, StageResult};

/// `[[stages]] stage = "generate"`: the shared LLM keys ([`LlmCall`](super::call::LlmCall); `prompt`, the user message template, is
/// required and sees every record field and `options_text`) and [`GenerateSettings`].
pub type GenerateConfig = LlmStageConfig<GenerateSettings>;

/// The `generate` stage's own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateSettings {
    /// The field written: `answer`, `reasoning`, `response`, ... or `metadata.<name>`.
    pub into: String,
    /// Leave rows whose `into` field already has text alone (no call).
    #[serde(default)]
    pub skip_existing: bool,
    /// Remove `<think>`/`<R>`/`<reasoning>` blocks from the answer before storing it.
    #[serde(default)]
    pub strip_reasoning: bool,
    /// `{ json_schema = {...} }`: the answer is JSON valid against the schema where the backend enforces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structure: Option<StructureSetting>,
}

impl StageSettings for GenerateSettings {
    const STAGE: &'static str = "generate";
    const REQUIRED: &'static [&'static str] = &["prompt"];
    fn default_params() -> GenParams {
        GenParams { max_tokens: Some(1024), temperature: Some(0.0), ..Default::default() }
    }
}

pub struct Generate {
    cfg: GenerateConfig,
    prompt: Prompt,
    env: Arc<LlmEnv>,
    backend: String,
    params: GenParams,
}

impl Generate {
    pub fn new(cfg: GenerateConfig, env: Option<&Arc<LlmEnv>>) -> StageResult<Self> {
        let env = require_env("generate", env)?.clone();
        check_field("generate", "into", &cfg.into)?;
        let prompt = Prompt::new(
            "generate",
            &format!("generate-v1:{}", cfg.strip_reasoning),
            &[("system", cfg.call.system.as_deref()), ("prompt", cfg.call.prompt.as_deref())],
        )?;
        let backend = cfg.call.backend("generate", &env)?;
        let params =
            GenParams { structure: StructureSetting::schema(&cfg.structure, "generate")?, ..cfg.call.params.clone() };
        Ok(Generate { cfg, prompt, env, backend, params })
    }
}

impl Stage for Generate {
    fn name(&self) -> &str {
        "generate"
    }

    fn run(&mut self, rows: &mut [Record], ctx: &StageContext) -> StageResult<StageOutput> {
        const S: &str = "generate";
        let span = self.env.span(S);
        let client = self.env.client(S, &self.backend, &self.prompt.version)?;
        let none = json!({});
        let reqs = rows
            .iter()
            .map(|r| {
                if self.cfg.skip_existing && get_text(r, &self.cfg.into).is_some() {
                    Ok(None)
                } else {
                    self.prompt.request(S, r, &none, &self.params).map(Some)
                }
            })
            .collect::<StageResult<Vec<_>>>()?;
        let asked: Vec<bool> = reqs.iter().map(Option::is_some).collect();
        let got = self.env.round(S, &self.backend, &client, rows, reqs, non_empty, ctx);
        let (mut written, mut skipped) = (0usize, 0usize);
        let mut decisions = Vec::with_capacity(rows.len());
        for (i, (r, g)) in rows.iter_mut().zip(got).enumerate() {
            let state = if !asked[i] {
                skipped += 1;
                RowState::Done(Decision::keep())
            } else {
                match g {
                    Got::Text(t) => {
                        let t = if self.cfg.strip_reasoning { medforge_text::answer::visible_answer(&t) } else { t };
                        set_text(r, &self.cfg.into, t);
                        written += 1;
                        RowState::Done(Decision::keep())
                    }
                    Got::Failed { code, reason } => RowState::Failed { code, reason },
                    Got::Pending => RowState::Pending,
                }
            };
            decisions.push(self.env.decide(S, r, state, ctx)?);
        }
        span.finish();
        let report = json!({
            "into": self.cfg.into, "rows": rows.len(), "written": written, "skipped_existing": skipped,
            "template_version": self.prompt.version,
        });
        Ok(StageOutput::new(decisions).with_report("generate_report.json", report))
    }
}
