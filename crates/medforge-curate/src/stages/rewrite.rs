//! `rewrite`: a structured rewrite of one field by an LLM, checked by a validator. A rewrite the
//! validator rejects is sent back with the validator's complaint, up to `max_retries` times; after
//! that the original text stays and the row gets `metadata._conversion_success = false` with the
//! reason in `metadata._conversion_error`, as the hierarchical response rewrite pipeline did. Rows are never dropped for a failed
//! conversion; the success rate is in `rewrite_report.json`.
//!
//! Every attempt's answer is cached once it is non-empty, valid or not: the retry conversation is
//! built from the earlier answers, so a re-run replays the whole chain from the cache instead of
//! asking again.

use std::collections::BTreeMap;
use std::sync::Arc;

use medforge_data::Record;
use medforge_llm::{ChatRequest, GenParams, Message};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::call::{LlmStageConfig, StageSettings};
use super::llm::{check_field, get_text, non_empty, require_env, set_text, Got, LlmEnv, Prompt, RowState};
use super::structure::{nested_list, StructureMode, StructureSetting};
use crate::stage::{Decision, Stage, StageContext, StageOutput, StageResult};
use medforge_text::answer::visible_answer;
use medforge_text::outline::Outline;

pub const DEFAULT_SYSTEM: &str = "You restructure medical explanations into clear hierarchical markdown lists without changing their medical content.";

pub const DEFAULT_PROMPT: &str = "Rewrite the text below as a nested markdown list.
Rules:
- The first top-level item states the answer{% if answer %} ({{ answer_letter ~ '. ' if answer_letter else '' }}{{ answer }}){% endif %}.
- Use at least {{ min_depth }} levels of nesting (indent each level by two spaces).
- Put at most {{ max_items }} items at any one level under the same parent.
- Keep every medical fact of the text; add nothing; output only the list.

Question:
{{ question }}

Text:
{{ text }}";

pub const DEFAULT_FEEDBACK: &str =
    "That rewrite was rejected: {{ complaint }}. Rewrite it again following every rule, and output only the list.";

fn default_retries() -> u32 {
    2
}
fn default_min_depth() -> usize {
    3
}
fn default_max_items() -> usize {
    5
}
fn yes() -> bool {
    true
}

/// Which validator checks a rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validator {
    /// The hierarchical response rewrite pipeline's: markdown nested list, depth ≥ `min_depth`, ≤ `max_items` per level, answer first.
    #[default]
    Hierarchical,
    /// Any non-empty text.
    NonEmpty,
}

/// `[[stages]] stage = "rewrite"`: the shared LLM keys ([`LlmCall`](super::call::LlmCall)) and [`RewriteSettings`].
pub type RewriteConfig = LlmStageConfig<RewriteSettings>;

/// The `rewrite` stage's own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteSettings {
    /// The field rewritten (`answer`, `reasoning`, `response`, ... or `metadata.<key>`).
    pub field: String,
    /// Where the rewrite goes (default: `field`, with the original kept in `metadata.<field>_original`).
    #[serde(default)]
    pub into: Option<String>,
    #[serde(default)]
    pub validator: Validator,
    #[serde(default = "default_min_depth")]
    pub min_depth: usize,
    #[serde(default = "default_max_items")]
    pub max_items: usize,
    /// Require the first top-level item to state the row's answer (letter or text).
    #[serde(default = "yes")]
    pub answer_first: bool,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// The retry message; sees `complaint` besides the row.
    #[serde(default)]
    pub feedback: Option<String>,
    /// `grammar` (default with the hierarchical validator): the answer can only be a nested list of the required
    /// depth and width, starting with the row's answer, where the backend enforces it; `none`: free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structure: Option<StructureSetting>,
}

impl StageSettings for RewriteSettings {
    const STAGE: &'static str = "rewrite";
    fn default_params() -> GenParams {
        GenParams { max_tokens: Some(1024), temperature: Some(0.0), ..Default::default() }
    }
}

pub struct Rewrite {
    cfg: RewriteConfig,
    into: String,
    prompt: Prompt,
    env: Arc<LlmEnv>,
    backend: String,
    grammar: bool,
}

impl Rewrite {
    pub fn new(cfg: RewriteConfig, env: Option<&Arc<LlmEnv>>) -> StageResult<Self> {
        let env = require_env("rewrite", env)?.clone();
        check_field("rewrite", "field", &cfg.field)?;
        let into = cfg.into.clone().unwrap_or_else(|| cfg.field.clone());
        check_field("rewrite", "into", &into)?;
        let prompt = Prompt::new(
            "rewrite",
            &format!("rewrite-v1:{:?}:{}:{}:{}", cfg.validator, cfg.min_depth, cfg.max_items, cfg.answer_first),
            &[
                ("system", Some(cfg.call.system_or(DEFAULT_SYSTEM))),
                ("prompt", Some(cfg.call.prompt_or(DEFAULT_PROMPT))),
                ("feedback", Some(cfg.feedback.as_deref().unwrap_or(DEFAULT_FEEDBACK))),
            ],
        )?;
        let backend = cfg.call.backend("rewrite", &env)?;
        let (default, allowed): (_, &[StructureMode]) = match cfg.validator {
            Validator::Hierarchical => (StructureMode::Grammar, &[StructureMode::Grammar, StructureMode::None]),
            Validator::NonEmpty => (StructureMode::None, &[StructureMode::None]),
        };
        let grammar = StructureSetting::mode(&cfg.structure, "rewrite", default, allowed)? == StructureMode::Grammar;
        Ok(Rewrite { cfg, into, prompt, env, backend, grammar })
    }

    /// `params` with the nested-list grammar for `r`: its first item opens with the answer the validator looks for
    /// (`C. ` for a letter, else the answer's first 60 characters, whitespace squashed).
    fn params(&self, r: &Record) -> GenParams {
        if !self.grammar {
            return self.cfg.call.params.clone();
        }
        let first = if !self.cfg.answer_first {
            None
        } else if let Some(l) = r.answer_letter.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
            Some(format!("{l}. "))
        } else {
            r.answer
                .as_deref()
                .map(|a| squash(a).chars().take(60).collect::<String>().trim_end_matches('.').trim_end().to_string())
                .filter(|h| !h.is_empty())
        };
        let structure = nested_list(self.cfg.min_depth, self.cfg.max_items, first.as_deref());
        GenParams { structure: Some(structure), ..self.cfg.call.params.clone() }
    }

    fn check(&self, r: &Record, text: &str) -> Result<(), String> {
        match self.cfg.validator {
            Validator::NonEmpty => {
                if text.trim().is_empty() {
                    Err("the rewrite is empty".into())
                } else {
                    Ok(())
                }
            }
            Validator::Hierarchical => {
                let answer = if self.cfg.answer_first {
                    (r.answer_letter.as_deref(), r.answer.as_deref())
                } else {
                    (None, None)
                };
                validate_hierarchical(text, self.cfg.min_depth, self.cfg.max_items, answer)
            }
        }
    }
}

/// The hierarchical response rewrite pipeline's check. `Err` holds the complaint fed back to the model.
///
/// The list is read by [`Outline`] (the parser evaluation's hierarchy score uses too): items are lines starting
/// with `-`, `*`, `+` or `1.`/`1)`, nested by indentation of any consistent width. `answer`: (letter, text) the
/// first top-level item must mention, when given.
pub fn validate_hierarchical(
    text: &str,
    min_depth: usize,
    max_items: usize,
    answer: (Option<&str>, Option<&str>),
) -> Result<(), String> {
    let outline = Outline::parse(text).map_err(|e| e.to_string())?;
    let depth = outline.depth();
    if depth < min_depth {
        return Err(format!("the list is only {depth} level(s) deep; nest it at least {min_depth} levels deep"));
    }
    if let Some((d, body)) = outline.first_overfull(max_items) {
        return Err(format!(
            "level {d} has more than {max_items} items under one parent (at `{}`); group them into at most {max_items}",
            body.chars().take(40).collect::<String>()
        ));
    }
    let first = outline.items[0].1.to_lowercase();
    let (letter, text_ans) = answer;
    if letter.is_some() || text_ans.is_some() {
        let by_letter = letter.map(str::trim).filter(|l| !l.is_empty()).is_some_and(|l| {
            let l = l.to_lowercase();
            first.starts_with(&format!("{l}."))
                || first.starts_with(&format!("{l})"))
                || first.contains(&format!("({l})"))
                || first.split(|c: char| !c.is_alphanumeric()).any(|w| w == l) && first.contains("answer")
        });
        // Whitespace-insensitive: an answer that opens with a heading line ("Key Points\n  - ...") can still be
        // stated on one list line.
        let first_words = squash(&first);
        let by_text = text_ans.map(|a| squash(&a.to_lowercase())).filter(|a| !a.is_empty()).is_some_and(|a| {
            let head: String = a.chars().take(60).collect();
            first_words.contains(head.trim_end_matches('.').trim_end())
        });
        if !by_letter && !by_text {
            return Err("the first item does not state the answer; put the answer first".into());
        }
    }
    Ok(())
}

/// Runs of whitespace as one space.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Stage for Rewrite {
    fn name(&self) -> &str {
        "rewrite"
    }

    fn run(&mut self, rows: &mut [Record], ctx: &StageContext) -> StageResult<StageOutput> {
        const S: &str = "rewrite";
        let span = self.env.span(S);
        let client = self.env.client(S, &self.backend, &self.prompt.version)?;
        let extra = json!({"min_depth": self.cfg.min_depth, "max_items": self.cfg.max_items});
        // Per row: the conversation so far (None: no source text, nothing to do), the last
        // complaint, the final state.
        let mut convo: Vec<Option<ChatRequest>> = Vec::with_capacity(rows.len());
        for r in rows.iter() {
            convo.push(match get_text(r, &self.cfg.field) {
                Some(text) => {
                    let mut x = extra.clone();
                    x["text"] = Value::String(text);
                    Some(self.prompt.request(S, r, &x, &self.params(r))?)
                }
                None => None,
            });
        }
        let mut state: Vec<Option<RowState>> =
            convo.iter().map(|c| if c.is_none() { Some(RowState::Done(Decision::keep())) } else { None }).collect();
        let mut complaints: Vec<Option<String>> = vec![None; rows.len()];
        let mut attempts = vec![0u32; rows.len()];
        let mut results: Vec<Option<String>> = vec![None; rows.len()];
        for attempt in 0..=self.cfg.max_retries {
            let reqs: Vec<Option<ChatRequest>> =
                (0..rows.len()).map(|i| if state[i].is_none() { convo[i].clone() } else { None }).collect();
            if reqs.iter().all(Option::is_none) {
                break;
            }
            let got = self.env.round(S, &self.backend, &client, rows, reqs.clone(), non_empty, ctx);
            for (i, g) in got.into_iter().enumerate() {
                if reqs[i].is_none() {
                    continue;
                }
                match g {
                    Got::Text(t) => {
                        attempts[i] = attempt + 1;
                        match self.check(&rows[i], &t) {
                            Ok(()) => {
                                results[i] = Some(visible_answer(&t));
                                state[i] = Some(RowState::Done(Decision::keep()));
                            }
                            Err(c) if attempt < self.cfg.max_retries => {
                                let fb = self.prompt.render(S, "feedback", &rows[i], &json!({"complaint": c}))?;
                                let conv = convo[i].as_mut().expect("has a conversation");
                                conv.messages.push(Message::assistant(t));
                                conv.messages.push(Message::user(fb));
                                complaints[i] = Some(c);
                            }
                            Err(c) => {
                                complaints[i] = Some(c);
                                state[i] = Some(RowState::Done(Decision::keep()));
                            }
                        }
                    }
                    Got::Failed { code, reason } => state[i] = Some(RowState::Failed { code, reason }),
                    Got::Pending => {
                        // Stopped, or (dry run) not cached: any retries it may need are not estimated.
                        if self.cfg.max_retries > attempt {
                            self.env.note_later_calls(S, 1);
                        }
                        state[i] = Some(RowState::Pending);
                    }
                }
            }
        }
        let (mut ok, mut failed) = (0usize, 0usize);
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut hist: BTreeMap<u32, usize> = BTreeMap::new();
        let mut decisions = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter_mut().enumerate() {
            let st = state[i].take().unwrap_or(RowState::Pending);
            if convo[i].is_some() && matches!(st, RowState::Done(_)) {
                match results[i].take() {
                    Some(new) => {
                        ok += 1;
                        *hist.entry(attempts[i]).or_default() += 1;
                        if self.into == self.cfg.field {
                            if let Some(orig) = get_text(r, &self.cfg.field) {
                                r.metadata.insert(
                                    format!("{}_original", self.cfg.field.trim_start_matches("metadata.")),
                                    Value::String(orig),
                                );
                            }
                        }
                        set_text(r, &self.into, new);
                        r.metadata.insert("_conversion_success".into(), Value::Bool(true));
                        r.metadata.insert("_conversion_attempts".into(), json!(attempts[i]));
                    }
                    None => {
                        failed += 1;
                        let c = complaints[i].clone().unwrap_or_default();
                        let family = c.split(';').next().unwrap_or("").to_string();
                        *reasons.entry(family).or_default() += 1;
                        r.metadata.insert("_conversion_success".into(), Value::Bool(false));
                        r.metadata.insert("_conversion_error".into(), Value::String(c));
                        r.metadata.insert("_conversion_attempts".into(), json!(attempts[i]));
                    }
                }
            }
            decisions.push(self.env.decide(S, r, st, ctx)?);
        }
        span.finish();
        let report = json!({
            "field": self.cfg.field,
            "into": self.into,
            "validator": self.cfg.validator,
            "rows": rows.len(),
            "converted": ok,
            "fell_back": failed,
            "success_rate": if ok + failed == 0 { 0.0 } else { ok as f64 / (ok + failed) as f64 },
            "attempts_of_successes": hist,
            "fallback_reasons": reasons,
            "template_version": self.prompt.version,
        });
        Ok(StageOutput::new(decisions).with_report("rewrite_report.json", report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "- The answer is B. Metformin\n  - First-line for type 2 diabetes\n    - Lowers hepatic glucose output\n    - Weight neutral\n  - Contraindications\n    - Severe renal impairment";

    /// Evaluation's hierarchy score reads lists with the same parser: on every structural case of the validator's
    /// test, "compliant" and "passes without an answer to check" agree.
    #[test]
    fn hierarchy_score_agrees_with_the_validator() {
        let cases = [
            GOOD,
            "- Metformin\n  - first line",
            "- Metformin\n  - a\n    - x\n  - b\n  - c\n  - d\n  - e\n  - f",
            "- Metformin\n  - a\n    - x\n  - b\n  - c\n- other\n  - d\n  - e\n  - f",
            "- Background\n  - a\n    - Metformin is the answer",
            "Metformin is best.",
            "",
            "1. B) Metformin\n   1. why\n      - because",
            "- x\n  - y\n    - z",
            "- Key Points - Adult acute lymphoblastic leukemia (ALL) is a t...\n  - a\n    - b",
            "- a\n    - b\n        - c",
            "<think>plan</think>\n- a\n\t- b\n\t\t- c",
        ];
        for c in cases {
            let v = validate_hierarchical(c, 3, 5, (None, None)).is_ok();
            assert_eq!(medforge_text::outline::compliance(c, 3, 5).compliant, v, "{c:?}");
        }
    }

    #[test]
    fn hierarchical_validator() {
        let ans = (Some("B"), Some("Metformin"));
        assert_eq!(validate_hierarchical(GOOD, 3, 5, ans), Ok(()));
        assert_eq!(validate_hierarchical(&format!("<think>x</think>\n{GOOD}"), 3, 5, ans), Ok(()));
        let shallow = "- Metformin\n  - first line";
        assert!(validate_hierarchical(shallow, 3, 5, ans).unwrap_err().contains("2 level(s) deep"));
        let wide = "- Metformin\n  - a\n    - x\n  - b\n  - c\n  - d\n  - e\n  - f";
        assert!(validate_hierarchical(wide, 3, 5, ans).unwrap_err().contains("more than 5 items"));
        // Six items in total at level 2, but under two parents: fine.
        let two_parents = "- Metformin\n  - a\n    - x\n  - b\n  - c\n- other\n  - d\n  - e\n  - f";
        assert_eq!(validate_hierarchical(two_parents, 3, 5, ans), Ok(()));
        let late = "- Background\n  - a\n    - Metformin is the answer";
        assert!(validate_hierarchical(late, 3, 5, ans).unwrap_err().contains("answer first"));
        assert!(validate_hierarchical("Metformin is best.", 3, 5, ans).unwrap_err().contains("not a list item"));
        assert!(validate_hierarchical("", 3, 5, ans).unwrap_err().contains("no markdown list"));
        let numbered = "1. B) Metformin\n   1. why\n      - because";
        assert_eq!(validate_hierarchical(numbered, 3, 5, (Some("B"), None)), Ok(()));
        assert_eq!(validate_hierarchical("- x\n  - y\n    - z", 3, 5, (None, None)), Ok(()), "no answer to check");
        // An answer opening with a heading line is stated on one list line, whitespace squashed.
        let headed = (None, Some("Key Points\n        - Adult acute lymphoblastic leukemia (ALL) is a type of cancer"));
        let one_line = "- Key Points - Adult acute lymphoblastic leukemia (ALL) is a t...\n  - a\n    - b";
        assert_eq!(validate_hierarchical(one_line, 3, 5, headed), Ok(()));
        assert!(validate_hierarchical("- Leukemia\n  - a\n    - b", 3, 5, headed).is_err());
    }
}
