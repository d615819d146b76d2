//! Training formats: records rendered through a chat template into the rows SFT and DPO trainers read.
//!
//! # Training types
//!
//! The MedGemma Korean pipeline's four supervised types, plus DPO:
//!
//! | type | user turn | assistant turn |
//! |---|---|---|
//! | 1 `text` | question | answer text |
//! | 2 `text_reasoning` | question | `<think>\nreasoning\n</think>\n\nanswer text` |
//! | 3 `letter` | question, blank line, one `A) option` line per option | `A` |
//! | 4 `letter_reasoning` | as type 3 (or the question alone, for short open answers) | `<think>\nreasoning\n</think>\n\nA` |
//! | `dpo` | question | `chosen` / `rejected` |
//!
//! The markers are configurable ([`Markers`]); a `context` (PubMedQA abstracts) goes before the question, separated by a
//! blank line. Each type has its own system prompt ([`SystemPrompts`]; an empty one means no system message).
//!
//! # Routing
//!
//! Each record goes to one type, the first enabled one of its chain ([`route`]):
//!
//! * `preference` records with both `chosen` and `rejected` → `dpo`.
//! * Multiple choice (options and an `answer_letter` among them): with reasoning → 4, falling back to 3; without → 3.
//! * Open questions and dialogues. The answer is `response` when the record has one (the long form, as HuatuoGPT-o1's
//!   `Response`), else `answer`. Without reasoning → 1. With reasoning, the answer's length decides: at least
//!   [`FormatConfig::long_answer_chars`] characters (a written explanation) → 2, falling back to 1; shorter (a word, a
//!   number, yes/no) → 4, the short-answer reasoning type, falling back to 2, then 1.
//!
//! With [`FormatConfig::plain_variants`], a record routed to a reasoning type is also emitted once more as the first
//! enabled type of its chain without reasoning, so one set teaches both answering styles.
//!
//! # Columns
//!
//! [`FormattedRow`] (owned by [`medforge_data::formatted`], which writes and reads the files) carries the columns TRL and axolotl read: `messages` (the conversation), `prompt` (the conversation
//! without its last assistant turn, rendered with the generation prompt), `completion` (the rest) and `text`
//! (`prompt + completion`). `text` is the template's rendering of the whole conversation, cut just after the final EOS
//! (ChatML and Gemma put a newline after it), or with EOS appended where the template does not end the turn with it; so
//! `completion` always ends with EOS. DPO rows add `chosen` and `rejected` completions rendered the same way, the
//! strings TRL derives from conversational preference data; their `completion` is the chosen one.
//!
//! `prompt` and `text` start with the template's BOS where it writes one (Llama 3, Gemma, Mistral), as
//! `apply_chat_template` does: tokenize them without adding special tokens.

mod render;
mod route;

use std::collections::BTreeMap;

use medforge_data::formatted::{FormatSpec, FormattedRow, Markers, TrainingType};
use medforge_data::Record;
use medforge_text::chat::{ChatError, ChatTemplate, CompiledTemplate, Message};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use render::{option_letters, render_training, Rendered};
pub use route::{route, skip, Route};

use render::{strip_markers, user_content};
use route::{mcq_letter, non_empty, open_answer};

/// Errors of the formatter.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("format: {0}")]
    Template(#[from] ChatError),
    #[error(
        "the template's rendering of the whole conversation does not start with its generation prompt, so it cannot \
         be split into prompt and completion"
    )]
    NotPrefix,
    #[error("format config: {0}")]
    Config(String),
    #[error("the template's rendering of the last assistant turn does not contain its content")]
    ContentLost,
    #[error("a training conversation must end with an assistant turn")]
    NoAssistantTurn,
    #[error("record {id}: {source}")]
    Record { id: String, source: Box<FormatError> },
    #[error(transparent)]
    Data(#[from] medforge_data::Error),
}

pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// System prompts per training type. `{open}` and `{close}` are replaced by the reasoning markers; an empty prompt
/// means no system message. The defaults are the MedGemma Korean pipeline's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SystemPrompts {
    pub text: String,
    pub text_reasoning: String,
    pub letter: String,
    pub letter_reasoning: String,
    pub dpo: String,
}

impl Default for SystemPrompts {
    fn default() -> Self {
        const ROLE: &str = "당신은 신뢰할 수 있는 의료 전문 AI 어시스턴트입니다.";
        SystemPrompts {
            text: format!(
                "{ROLE} 질문을 주의 깊게 읽고, 의학적 근거에 기반하여 정확하고 명확한 답변을 작성하세요."
            ),
            text_reasoning: format!(
                "{ROLE} 답하기 전에 먼저 {{open}} 태그와 {{close}} 태그 사이에 단계별 추론 과정을 작성하세요. \
                 추론을 마친 뒤, 의학적 근거에 기반한 정확하고 명확한 최종 답변을 작성하세요."
            ),
            letter: format!(
                "{ROLE} 주어진 객관식 문제를 읽고 보기 중에서 정답을 하나 고르세요. \
                 설명 없이 정답 보기의 알파벳(예: A) 하나만 답하세요."
            ),
            letter_reasoning: format!(
                "{ROLE} 먼저 {{open}} 태그와 {{close}} 태그 사이에 단계별 추론 과정을 작성하세요. \
                 추론을 마친 뒤에는 최종 답만 간결하게 쓰세요. 객관식 문제라면 정답 보기의 알파벳(예: A) 하나만 답하세요."
            ),
            dpo: format!("{ROLE} 질문에 대해 정확하고 안전하며 도움이 되는 답변을 작성하세요."),
        }
    }
}

impl SystemPrompts {
    /// The prompt for a type, markers substituted.
    pub fn for_type(&self, t: TrainingType, markers: &Markers) -> String {
        let p = match t {
            TrainingType::Text => &self.text,
            TrainingType::TextReasoning => &self.text_reasoning,
            TrainingType::Letter => &self.letter,
            TrainingType::LetterReasoning => &self.letter_reasoning,
            TrainingType::Dpo => &self.dpo,
        };
        p.replace("{open}", markers.open()).replace("{close}", markers.close())
    }
}

/// How to format records for training. Deserialises from TOML/JSON with every key optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FormatConfig {
    /// A built-in name (`llama3`, `gemma`, `chatml`, `qwen`, `mistral`), `jinja:<source>`, or the path of a
    /// `tokenizer_config.json` (or its model folder).
    pub template: String,
    /// Override the template's BOS token (needed for `jinja:` templates, which have none).
    pub bos_token: Option<String>,
    /// Override the template's EOS token (needed for `jinja:` templates, which have none).
    pub eos_token: Option<String>,
    pub reasoning_markers: Markers,
    /// The types to emit (numbers 1-4 or names; `dpo`). Default: all.
    pub types: Vec<TrainingType>,
    pub system_prompts: SystemPrompts,
    /// An open answer with reasoning of at least this many characters goes to type 2, a shorter one to type 4.
    pub long_answer_chars: usize,
    /// Also emit the reasoning-free type for rows routed to a reasoning type.
    pub plain_variants: bool,
}

impl Default for FormatConfig {
    fn default() -> Self {
        FormatConfig {
            template: "chatml".into(),
            bos_token: None,
            eos_token: None,
            reasoning_markers: Markers::Think,
            types: TrainingType::ALL.to_vec(),
            system_prompts: SystemPrompts::default(),
            long_answer_chars: 100,
            plain_variants: false,
        }
    }
}

impl FormatConfig {
    /// Resolve the template spec and token overrides.
    pub fn chat_template(&self) -> Result<ChatTemplate> {
        let t = ChatTemplate::from_spec(&self.template)?;
        if self.bos_token.is_none() && self.eos_token.is_none() {
            return Ok(t);
        }
        Ok(ChatTemplate::Jinja {
            source: t.source().to_string(),
            bos_token: self.bos_token.clone().unwrap_or_else(|| t.bos_token().to_string()),
            eos_token: self.eos_token.clone().unwrap_or_else(|| t.eos_token().to_string()),
        })
    }
}

/// Counts from [`Formatter::format_all`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatStats {
    pub records: u64,
    /// Rows per training type name.
    pub rows: BTreeMap<String, u64>,
    /// Records skipped, per reason code.
    pub skipped: BTreeMap<String, u64>,
}

/// Rows and counts of a whole set.
#[derive(Debug, Clone, Default)]
pub struct FormatOutput {
    pub rows: Vec<FormattedRow>,
    pub stats: FormatStats,
}

/// A compiled formatter: resolve the template once, format many records (in parallel with `format_all`).
#[derive(Debug)]
pub struct Formatter {
    config: FormatConfig,
    spec: FormatSpec,
    template: CompiledTemplate,
}

impl Formatter {
    pub fn new(config: &FormatConfig) -> Result<Self> {
        let markers = &config.reasoning_markers;
        if markers.open().is_empty() || markers.close().is_empty() {
            return Err(FormatError::Config("reasoning markers must not be empty".into()));
        }
        let chat = config.chat_template()?;
        let template = chat.compile()?;
        let spec = FormatSpec {
            template: config.template.clone(),
            chat_template: chat.source().to_string(),
            bos_token: chat.bos_token().to_string(),
            eos_token: chat.eos_token().to_string(),
            reasoning_markers: config.reasoning_markers.clone(),
        };
        Ok(Formatter { config: config.clone(), spec, template })
    }

    pub fn config(&self) -> &FormatConfig {
        &self.config
    }

    /// What to save beside the rows (`format.json`, see [`medforge_data::formatted::write_set`]).
    pub fn spec(&self) -> &FormatSpec {
        &self.spec
    }

    pub fn template(&self) -> &CompiledTemplate {
        &self.template
    }

    /// Format one record: its rows, empty when it is skipped (see [`Formatter::format_or_skip`] for why).
    pub fn format(&self, r: &Record) -> Result<Vec<FormattedRow>> {
        Ok(self.format_or_skip(r)?.unwrap_or_default())
    }

    /// Format one record, or the reason code it was skipped for.
    pub fn format_or_skip(&self, r: &Record) -> Result<std::result::Result<Vec<FormattedRow>, &'static str>> {
        self.format_inner(r).map_err(|e| FormatError::Record { id: r.id.clone(), source: Box::new(e) })
    }

    fn enabled(&self, t: TrainingType) -> bool {
        self.config.types.contains(&t)
    }

    fn format_inner(&self, r: &Record) -> Result<std::result::Result<Vec<FormattedRow>, &'static str>> {
        let markers = &self.config.reasoning_markers;
        let chain = match route(r, self.config.long_answer_chars) {
            Route::Skip(reason) => return Ok(Err(reason)),
            Route::Dpo if !self.enabled(TrainingType::Dpo) => return Ok(Err(skip::TYPE_DISABLED)),
            Route::Dpo => return self.format_dpo(r),
            Route::Sft(chain) => chain,
        };
        let Some(primary) = chain.iter().copied().find(|t| self.enabled(*t)) else {
            return Ok(Err(skip::TYPE_DISABLED));
        };
        let mut types = vec![primary];
        if self.config.plain_variants && primary.has_reasoning() {
            if let Some(plain) = chain.iter().copied().find(|t| !t.has_reasoning() && self.enabled(*t)) {
                types.push(plain);
            }
        }
        let is_mcq = !r.options.is_empty();
        let final_answer = if is_mcq { mcq_letter(r) } else { open_answer(r).map(str::to_string) };
        let Some(final_answer) = final_answer else { return Ok(Err(skip::NO_ANSWER)) };
        if markers.occur_in(&final_answer) {
            return Ok(Err(skip::MARKERS_IN_CONTENT));
        }
        let mut rows = Vec::with_capacity(types.len());
        for t in types {
            let content = if t.has_reasoning() {
                let Some(reasoning) = strip_markers(non_empty(&r.reasoning).unwrap_or_default(), markers) else {
                    return Ok(Err(skip::MARKERS_IN_CONTENT));
                };
                markers.wrap(reasoning, &final_answer)
            } else {
                final_answer.clone()
            };
            let user = user_content(r, t.is_letter() && is_mcq);
            let messages = self.conversation(t, user, content);
            let Rendered { prompt, completion, text } = render_training(&self.template, &messages)?;
            rows.push(FormattedRow {
                id: r.id.clone(),
                training_type: t,
                messages,
                prompt,
                completion,
                text,
                chosen: None,
                rejected: None,
            });
        }
        Ok(Ok(rows))
    }

    /// The turns a model trained on type `t` saw before its answer (system prompt, user turn), for asking it the
    /// same way at test time: `medforge eval` sends these, so test prompts match training prompts.
    pub fn test_prompt(&self, r: &Record, t: TrainingType) -> Vec<Message> {
        self.prompt_turns(t, user_content(r, t.is_letter() && !r.options.is_empty()))
    }

    /// The system prompt of type `t` (none when empty) and the user turn.
    fn prompt_turns(&self, t: TrainingType, user: String) -> Vec<Message> {
        let system = self.config.system_prompts.for_type(t, &self.config.reasoning_markers);
        let mut m = Vec::with_capacity(3);
        if !system.trim().is_empty() {
            m.push(Message::system(system));
        }
        m.push(Message::user(user));
        m
    }

    fn conversation(&self, t: TrainingType, user: String, assistant: String) -> Vec<Message> {
        let mut m = self.prompt_turns(t, user);
        m.push(Message::assistant(assistant));
        m
    }

    fn format_dpo(&self, r: &Record) -> Result<std::result::Result<Vec<FormattedRow>, &'static str>> {
        let (Some(chosen), Some(rejected)) = (non_empty(&r.chosen), non_empty(&r.rejected)) else {
            return Ok(Err(skip::NO_PREFERENCE_PAIR));
        };
        let user = user_content(r, false);
        let messages = self.conversation(TrainingType::Dpo, user.clone(), chosen.to_string());
        let good = render_training(&self.template, &messages)?;
        let rejected_messages = self.conversation(TrainingType::Dpo, user, rejected.to_string());
        let bad = render_training(&self.template, &rejected_messages)?;
        if bad.prompt != good.prompt {
            return Err(FormatError::NotPrefix);
        }
        Ok(Ok(vec![FormattedRow {
            id: r.id.clone(),
            training_type: TrainingType::Dpo,
            messages,
            prompt: good.prompt,
            chosen: Some(good.completion.clone()),
            completion: good.completion,
            text: good.text,
            rejected: Some(bad.completion),
        }]))
    }

    /// Format a whole set, in parallel; rows keep the records' order. Fails on the first template error.
    pub fn format_all(&self, records: &[Record]) -> Result<FormatOutput> {
        let results: Vec<_> = records.par_iter().map(|r| self.format_or_skip(r)).collect();
        let mut out = FormatOutput::default();
        out.stats.records = records.len() as u64;
        for res in results {
            match res? {
                Ok(rows) => {
                    for row in rows {
                        *out.stats.rows.entry(row.training_type.as_str().to_string()).or_default() += 1;
                        out.rows.push(row);
                    }
                }
                Err(reason) => *out.stats.skipped.entry(reason.to_string()).or_default() += 1,
            }
        }
        Ok(out)
    }
}

/// Format one record with a config. Resolves and compiles the template on every call: use a [`Formatter`] for sets.
pub fn format_record(record: &Record, config: &FormatConfig) -> Result<Vec<FormattedRow>> {
    Formatter::new(config)?.format(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_type_serde_accepts_numbers_and_names() {
        let cfg: FormatConfig =
            toml::from_str("types = [1, \"letter\", 4, \"dpo\"]\nreasoning_markers = \"r\"").unwrap();
        assert_eq!(
            cfg.types,
            vec![TrainingType::Text, TrainingType::Letter, TrainingType::LetterReasoning, TrainingType::Dpo]
        );
        assert_eq!(cfg.reasoning_markers, Markers::R);
        assert_eq!(cfg.template, "chatml");
        let cfg: FormatConfig =
            toml::from_str("reasoning_markers = { custom = { open = \"[[\", close = \"]]\" } }").unwrap();
        assert_eq!(cfg.reasoning_markers.open(), "[[");
        assert!(toml::from_str::<FormatConfig>("types = [5]").is_err());
        assert!(toml::from_str::<FormatConfig>("tmplate = \"x\"").is_err());
    }
}
