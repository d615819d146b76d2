//! Training formats: records rendered through a chat template into the rows SFT and DPO trainers read.
//!
//! # Training types
//!
//! The Korean seed's four supervised types, plus DPO:
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
//! [`FormattedRow`] carries the columns TRL and axolotl read: `messages` (the conversation), `prompt` (the conversation
//! without its last assistant turn, rendered with the generation prompt), `completion` (the rest) and `text`
//! (`prompt + completion`). `text` is the template's rendering of the whole conversation, cut just after the final EOS
//! (ChatML and Gemma put a newline after it), or with EOS appended where the template does not end the turn with it; so
//! `completion` always ends with EOS. DPO rows add `chosen` and `rejected` completions rendered the same way, the
//! strings TRL derives from conversational preference data; their `completion` is the chosen one.
//!
//! `prompt` and `text` start with the template's BOS where it writes one (Llama 3, Gemma, Mistral), as
//! `apply_chat_template` does: tokenize them without adding special tokens.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder, StructBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use medforge_data::{Record, RecordKind};
use medforge_text::chat::{ChatError, ChatTemplate, CompiledTemplate, Message};
use rayon::prelude::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Errors of the formatter and its writer.
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
    #[error("{}: {message}", path.display())]
    Write { path: PathBuf, message: String },
}

pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// Reasoning markers around the chain of thought in types 2 and 4.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Markers {
    /// `<think>` … `</think>`
    #[default]
    Think,
    /// `<R>` … `<R/>` (the Korean seed's)
    R,
    /// `<reasoning>` … `</reasoning>`
    Reasoning,
    Custom {
        open: String,
        close: String,
    },
}

impl Markers {
    pub fn open(&self) -> &str {
        match self {
            Markers::Think => "<think>",
            Markers::R => "<R>",
            Markers::Reasoning => "<reasoning>",
            Markers::Custom { open, .. } => open,
        }
    }

    pub fn close(&self) -> &str {
        match self {
            Markers::Think => "</think>",
            Markers::R => "<R/>",
            Markers::Reasoning => "</reasoning>",
            Markers::Custom { close, .. } => close,
        }
    }

    /// `{open}\n{reasoning}\n{close}\n\n{answer}`
    pub fn wrap(&self, reasoning: &str, answer: &str) -> String {
        format!("{}\n{}\n{}\n\n{}", self.open(), reasoning, self.close(), answer)
    }

    /// Whether `s` contains either marker.
    pub fn occur_in(&self, s: &str) -> bool {
        (!self.open().is_empty() && s.contains(self.open())) || (!self.close().is_empty() && s.contains(self.close()))
    }

    /// Check that the markers in `s` pair up in order (open, close, open, close, ...; no nesting). Returns the number
    /// of pairs, or what is wrong.
    pub fn check_balanced(&self, s: &str) -> std::result::Result<usize, String> {
        let (open, close) = (self.open(), self.close());
        if open.is_empty() || close.is_empty() {
            return Err("empty reasoning marker".into());
        }
        let (mut pos, mut inside, mut pairs) = (0usize, false, 0usize);
        loop {
            let rest = &s[pos..];
            let next_open = rest.find(open);
            let next_close = if open == close { next_open } else { rest.find(close) };
            // The earlier of the two; at equal positions (one marker a prefix of the other) the longer one.
            let (at, is_open, len) = match (next_open, next_close) {
                (None, None) => break,
                (Some(o), None) => (o, true, open.len()),
                (None, Some(c)) => (c, false, close.len()),
                (Some(o), Some(c)) if o < c || (o == c && open.len() > close.len()) => (o, true, open.len()),
                (Some(_), Some(c)) => (c, false, close.len()),
            };
            let is_open = if open == close { !inside } else { is_open };
            let offset = pos + at;
            if is_open {
                if inside {
                    return Err(format!("`{open}` at byte {offset} opens again before `{close}`"));
                }
                inside = true;
            } else {
                if !inside {
                    return Err(format!("`{close}` at byte {offset} without an open `{open}`"));
                }
                inside = false;
                pairs += 1;
            }
            pos = offset + len;
        }
        if inside {
            return Err(format!("`{open}` never closed with `{close}`"));
        }
        Ok(pairs)
    }
}

/// The training types: the seed's four, and DPO triples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrainingType {
    /// 1: question → answer text.
    Text,
    /// 2: question → reasoning in markers, then answer text.
    TextReasoning,
    /// 3: multiple-choice question with `A) …` lines → the letter.
    Letter,
    /// 4: multiple-choice question → reasoning in markers, then the letter (or a short answer to an open question).
    LetterReasoning,
    /// Preference pairs: `prompt`, `chosen`, `rejected`.
    Dpo,
}

impl TrainingType {
    pub const ALL: [TrainingType; 5] = [
        TrainingType::Text,
        TrainingType::TextReasoning,
        TrainingType::Letter,
        TrainingType::LetterReasoning,
        TrainingType::Dpo,
    ];

    /// `text`, `text_reasoning`, `letter`, `letter_reasoning`, `dpo`: the `training_type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            TrainingType::Text => "text",
            TrainingType::TextReasoning => "text_reasoning",
            TrainingType::Letter => "letter",
            TrainingType::LetterReasoning => "letter_reasoning",
            TrainingType::Dpo => "dpo",
        }
    }

    /// The seed's number, 1 to 4 (`None` for DPO).
    pub fn number(self) -> Option<u8> {
        match self {
            TrainingType::Text => Some(1),
            TrainingType::TextReasoning => Some(2),
            TrainingType::Letter => Some(3),
            TrainingType::LetterReasoning => Some(4),
            TrainingType::Dpo => None,
        }
    }

    /// A name, or a number 1 to 4; also `preference` for DPO.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "1" => Some(TrainingType::Text),
            "2" => Some(TrainingType::TextReasoning),
            "3" => Some(TrainingType::Letter),
            "4" => Some(TrainingType::LetterReasoning),
            "preference" => Some(TrainingType::Dpo),
            s => TrainingType::ALL.into_iter().find(|t| t.as_str() == s),
        }
    }

    /// Whether the completion carries reasoning in markers (types 2 and 4).
    pub fn has_reasoning(self) -> bool {
        matches!(self, TrainingType::TextReasoning | TrainingType::LetterReasoning)
    }

    /// Whether the answer is a letter among `A) …` options (types 3 and 4).
    pub fn is_letter(self) -> bool {
        matches!(self, TrainingType::Letter | TrainingType::LetterReasoning)
    }
}

impl std::fmt::Display for TrainingType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TrainingType {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TrainingType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            N(u64),
            S(String),
        }
        let text = match Repr::deserialize(d)? {
            Repr::N(n) => n.to_string(),
            Repr::S(s) => s,
        };
        TrainingType::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown training type `{text}` (1-4, text, text_reasoning, letter, letter_reasoning, dpo)"
            ))
        })
    }
}

/// System prompts per training type. `{open}` and `{close}` are replaced by the reasoning markers; an empty prompt
/// means no system message. The defaults are the Korean seed's.
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

/// What a formatted set was made with: written as `format.json` beside the rows, so [`crate::verify`] can re-render
/// them without the original config (or the tokenizer_config.json it named).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatSpec {
    /// The template as configured (name, `jinja:…` or path); informational.
    pub template: String,
    /// The resolved Jinja source.
    pub chat_template: String,
    pub bos_token: String,
    pub eos_token: String,
    pub reasoning_markers: Markers,
}

impl FormatSpec {
    pub fn chat_template(&self) -> ChatTemplate {
        ChatTemplate::Jinja {
            source: self.chat_template.clone(),
            bos_token: self.bos_token.clone(),
            eos_token: self.eos_token.clone(),
        }
    }
}

/// One training row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormattedRow {
    /// The record's id (a record emitted twice, with `plain_variants`, keeps it in both rows).
    pub id: String,
    pub training_type: TrainingType,
    /// The conversation, ending with the assistant turn (the chosen one, for DPO).
    pub messages: Vec<Message>,
    /// `messages` without the last turn, rendered with the generation prompt.
    pub prompt: String,
    /// The rest of `text`; ends with the template's EOS.
    pub completion: String,
    /// `prompt + completion`: the whole conversation as the template renders it.
    pub text: String,
    /// DPO: the chosen completion (equal to `completion`).
    pub chosen: Option<String>,
    /// DPO: the rejected completion.
    pub rejected: Option<String>,
}

/// Where a record goes, before the enabled types are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Supervised types, most preferred first; the first enabled one is emitted.
    Sft(Vec<TrainingType>),
    Dpo,
    /// Not formattable, with a stable reason code.
    Skip(&'static str),
}

/// Skip reason codes.
pub mod skip {
    pub const NO_ANSWER: &str = "format.no_answer";
    pub const NO_ANSWER_LETTER: &str = "format.no_answer_letter";
    pub const LETTER_NOT_IN_OPTIONS: &str = "format.letter_not_in_options";
    pub const NO_PREFERENCE_PAIR: &str = "format.no_preference_pair";
    pub const MARKERS_IN_CONTENT: &str = "format.markers_in_content";
    pub const TYPE_DISABLED: &str = "format.type_disabled";
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The open answer: `response` (the long form) when present, else `answer`.
fn open_answer(r: &Record) -> Option<&str> {
    non_empty(&r.response).or_else(|| non_empty(&r.answer))
}

fn mcq_letter(r: &Record) -> Option<String> {
    non_empty(&r.answer_letter).map(|l| l.to_ascii_uppercase())
}

/// The routing rule (see the module docs).
pub fn route(r: &Record, long_answer_chars: usize) -> Route {
    use TrainingType::*;
    if r.kind == RecordKind::Preference {
        return if non_empty(&r.chosen).is_some() && non_empty(&r.rejected).is_some() {
            Route::Dpo
        } else {
            Route::Skip(skip::NO_PREFERENCE_PAIR)
        };
    }
    let reasoning = non_empty(&r.reasoning).is_some();
    if !r.options.is_empty() {
        let Some(letter) = mcq_letter(r) else { return Route::Skip(skip::NO_ANSWER_LETTER) };
        if !r.options.iter().any(|o| o.letter.trim() == letter) {
            return Route::Skip(skip::LETTER_NOT_IN_OPTIONS);
        }
        return Route::Sft(if reasoning { vec![LetterReasoning, Letter] } else { vec![Letter] });
    }
    let Some(answer) = open_answer(r) else { return Route::Skip(skip::NO_ANSWER) };
    if !reasoning {
        Route::Sft(vec![Text])
    } else if answer.chars().count() >= long_answer_chars {
        Route::Sft(vec![TextReasoning, Text])
    } else {
        Route::Sft(vec![LetterReasoning, TextReasoning, Text])
    }
}

/// Prompt, completion and text of one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub prompt: String,
    pub completion: String,
    pub text: String,
}

/// Render a conversation ending with an assistant turn into `prompt` / `completion` / `text` (see the module docs for
/// how EOS ends `text`). The verifier re-renders with this same function.
pub fn render_training(template: &CompiledTemplate, messages: &[Message]) -> Result<Rendered> {
    let (last, head) = match messages.split_last() {
        Some((last, head)) if last.role == "assistant" => (last, head),
        _ => return Err(FormatError::NoAssistantTurn),
    };
    let full = template.render(messages, false)?;
    let text = end_with_eos(full, template.eos_token());
    let prompt = template.render(head, true)?;
    if !text.starts_with(&prompt) {
        return Err(FormatError::NotPrefix);
    }
    let completion = text[prompt.len()..].to_string();
    // Some templates rewrite the last turn (DeepSeek-R1's drops everything up to `</think>`): refuse, rather than
    // train on something other than the row's answer.
    if !completion.contains(last.content.trim()) {
        return Err(FormatError::ContentLost);
    }
    Ok(Rendered { prompt, completion, text })
}

/// Cut whitespace after a final EOS, or append EOS when the rendering does not end with it.
fn end_with_eos(mut full: String, eos: &str) -> String {
    if eos.is_empty() {
        return full;
    }
    let trimmed = full.trim_end().len();
    if full[..trimmed].ends_with(eos) {
        full.truncate(trimmed);
    } else {
        full.push_str(eos);
    }
    full
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

    /// What to save beside the rows (see [`write_formatted`]).
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

    fn conversation(&self, t: TrainingType, user: String, assistant: String) -> Vec<Message> {
        let system = self.config.system_prompts.for_type(t, &self.config.reasoning_markers);
        let mut m = Vec::with_capacity(3);
        if !system.trim().is_empty() {
            m.push(Message::system(system));
        }
        m.push(Message::user(user));
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

/// Reasoning without an outer marker pair the dataset may already carry; `None` when markers remain inside.
fn strip_markers<'a>(reasoning: &'a str, markers: &Markers) -> Option<&'a str> {
    let inner = reasoning
        .strip_prefix(markers.open())
        .and_then(|s| s.strip_suffix(markers.close()))
        .map(str::trim)
        .unwrap_or(reasoning);
    (!markers.occur_in(inner)).then_some(inner)
}

/// The user turn: context, question, and for letter types the `A) …` option lines.
fn user_content(r: &Record, with_options: bool) -> String {
    let mut s = String::new();
    if let Some(ctx) = non_empty(&r.context) {
        s.push_str(ctx);
        s.push_str("\n\n");
    }
    s.push_str(r.question.trim());
    if with_options {
        s.push('\n');
        for o in &r.options {
            let text: String = o.text.split_whitespace().collect::<Vec<_>>().join(" ");
            s.push_str(&format!("\n{}) {}", o.letter.trim(), text));
        }
    }
    s
}

/// The option letters of the last block of `X) …` lines in a prompt.
pub fn option_letters(prompt: &str) -> Vec<String> {
    let mut last = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for line in prompt.lines() {
        let b = line.as_bytes();
        if b.len() >= 3 && b[0].is_ascii_uppercase() && b[1] == b')' && b[2] == b' ' {
            current.push((b[0] as char).to_string());
        } else if !current.is_empty() {
            last = std::mem::take(&mut current);
        }
    }
    if current.is_empty() {
        last
    } else {
        current
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

/// File names inside a formatted folder.
pub const JSONL: &str = "train.jsonl";
pub const HF_DIR: &str = "hf";
pub const SPEC: &str = "format.json";
const SHARD: &str = "data-00000-of-00001.arrow";

/// Arrow schema of the `hf/` folder.
pub fn formatted_schema() -> SchemaRef {
    let utf8 = |n: &str, nullable: bool| Field::new(n, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        utf8("id", false),
        utf8("training_type", false),
        Field::new("messages", DataType::List(Arc::new(Field::new("item", message_struct(), true))), false),
        utf8("prompt", false),
        utf8("completion", false),
        utf8("text", false),
        utf8("chosen", true),
        utf8("rejected", true),
    ]))
}

fn message_fields() -> Fields {
    Fields::from(vec![Field::new("role", DataType::Utf8, false), Field::new("content", DataType::Utf8, false)])
}

fn message_struct() -> DataType {
    DataType::Struct(message_fields())
}

fn rows_to_batch(rows: &[FormattedRow]) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let strings = |f: &dyn Fn(&FormattedRow) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::new();
        for r in rows {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    let mut messages = ListBuilder::new(StructBuilder::from_fields(message_fields(), 0))
        .with_field(Arc::new(Field::new("item", message_struct(), true)));
    for r in rows {
        let sb = messages.values();
        for m in &r.messages {
            sb.field_builder::<StringBuilder>(0).expect("role").append_value(&m.role);
            sb.field_builder::<StringBuilder>(1).expect("content").append_value(&m.content);
            sb.append(true);
        }
        messages.append(true);
    }
    RecordBatch::try_new(
        formatted_schema(),
        vec![
            strings(&|r| Some(&r.id)),
            strings(&|r| Some(r.training_type.as_str())),
            Arc::new(messages.finish()),
            strings(&|r| Some(&r.prompt)),
            strings(&|r| Some(&r.completion)),
            strings(&|r| Some(&r.text)),
            strings(&|r| r.chosen.as_deref()),
            strings(&|r| r.rejected.as_deref()),
        ],
    )
}

/// What [`write_formatted`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    pub rows: u64,
    pub jsonl: PathBuf,
    pub hf_dir: PathBuf,
    pub spec: PathBuf,
}

/// Write `dir/train.jsonl`, the Hugging Face `save_to_disk` folder `dir/hf/` (one Arrow IPC stream shard,
/// `dataset_info.json`, `state.json`; opens with `datasets.load_from_disk`), and `dir/format.json` (the spec the
/// verifier re-renders with). Each is written to a temporary path and renamed into place.
pub fn write_formatted(dir: &Path, rows: &[FormattedRow], spec: &FormatSpec) -> Result<WriteSummary> {
    let werr = |p: &Path, m: String| FormatError::Write { path: p.to_path_buf(), message: m };
    std::fs::create_dir_all(dir).map_err(|e| werr(dir, e.to_string()))?;

    let hf_dir = dir.join(HF_DIR);
    write_hf(&hf_dir, rows)?;

    let jsonl = dir.join(JSONL);
    let mut buf = Vec::with_capacity(rows.iter().map(|r| r.text.len() * 3).sum::<usize>() + 1024);
    for r in rows {
        serde_json::to_writer(&mut buf, r).map_err(|e| werr(&jsonl, e.to_string()))?;
        buf.push(b'\n');
    }
    medforge_data::write::write_atomic(&jsonl, &buf)?;

    let spec_path = dir.join(SPEC);
    let body = serde_json::to_vec_pretty(spec).map_err(|e| werr(&spec_path, e.to_string()))?;
    medforge_data::write::write_atomic(&spec_path, &body)?;
    Ok(WriteSummary { rows: rows.len() as u64, jsonl, hf_dir, spec: spec_path })
}

fn write_hf(path: &Path, rows: &[FormattedRow]) -> Result<()> {
    let werr = |p: &Path, m: String| FormatError::Write { path: p.to_path_buf(), message: m };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("hf");
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let staged = parent.join(format!(".{name}.{}.{nonce}.tmp", std::process::id()));
    std::fs::create_dir(&staged).map_err(|e| werr(&staged, e.to_string()))?;
    let result = (|| -> Result<()> {
        let shard = staged.join(SHARD);
        let file = std::fs::File::create(&shard).map_err(|e| werr(&shard, e.to_string()))?;
        let mut writer = arrow_ipc::writer::StreamWriter::try_new(
            std::io::BufWriter::with_capacity(1 << 20, file),
            &formatted_schema(),
        )
        .map_err(|e| werr(&shard, e.to_string()))?;
        for chunk in rows.chunks(4096) {
            let batch = rows_to_batch(chunk).map_err(|e| werr(&shard, e.to_string()))?;
            writer.write(&batch).map_err(|e| werr(&shard, e.to_string()))?;
        }
        writer.finish().map_err(|e| werr(&shard, e.to_string()))?;
        let mut inner = writer.into_inner().map_err(|e| werr(&shard, e.to_string()))?;
        inner.flush().map_err(|e| werr(&shard, e.to_string()))?;
        let file = inner.into_inner().map_err(|e| werr(&shard, e.into_error().to_string()))?;
        file.sync_all().map_err(|e| werr(&shard, e.to_string()))?;
        drop(file);

        let bytes = std::fs::read(&shard).map_err(|e| werr(&shard, e.to_string()))?;
        let info = serde_json::json!({
            "builder_name": "medforge",
            "citation": "",
            "description": "medforge training rows: messages, prompt, completion, text (chosen/rejected for DPO)",
            "homepage": "",
            "license": "",
            "dataset_size": bytes.len(),
            "size_in_bytes": bytes.len(),
        });
        let state = serde_json::json!({
            "_data_files": [{"filename": SHARD}],
            "_fingerprint": format!("{:016x}", fnv1a(&bytes)),
            "_format_columns": null,
            "_format_kwargs": {},
            "_format_type": null,
            "_output_all_columns": false,
            "_split": null,
        });
        for (file, v) in [("dataset_info.json", info), ("state.json", state)] {
            let p = staged.join(file);
            std::fs::write(&p, serde_json::to_vec_pretty(&v).expect("json")).map_err(|e| werr(&p, e.to_string()))?;
        }
        // Swap into place; an old folder is moved aside first, so the target is never half-written.
        if path.exists() {
            let old = parent.join(format!(".{name}.old.{}.{nonce}", std::process::id()));
            std::fs::rename(path, &old).map_err(|e| werr(path, e.to_string()))?;
            std::fs::rename(&staged, path).map_err(|e| werr(path, e.to_string()))?;
            let _ = if old.is_dir() { std::fs::remove_dir_all(&old) } else { std::fs::remove_file(&old) };
        } else {
            std::fs::rename(&staged, path).map_err(|e| werr(path, e.to_string()))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staged);
    }
    result
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use medforge_data::McqOption;

    fn mcq(reasoning: Option<&str>) -> Record {
        let mut r = Record::new("m1", "t", RecordKind::Mcq, "Which drug lowers glucose?");
        r.options = ["Aspirin", "Insulin", "Heparin"]
            .iter()
            .zip(["A", "B", "C"])
            .map(|(t, l)| McqOption { letter: l.into(), text: t.to_string() })
            .collect();
        r.answer_letter = Some("B".into());
        r.answer = Some("Insulin".into());
        r.reasoning = reasoning.map(str::to_string);
        r
    }

    fn open(answer: &str, reasoning: Option<&str>) -> Record {
        let mut r = Record::new("o1", "t", RecordKind::OpenQa, "What is HbA1c?");
        r.answer = Some(answer.into());
        r.reasoning = reasoning.map(str::to_string);
        r
    }

    #[test]
    fn routing_rule() {
        use TrainingType::*;
        assert_eq!(route(&mcq(Some("why")), 100), Route::Sft(vec![LetterReasoning, Letter]));
        assert_eq!(route(&mcq(None), 100), Route::Sft(vec![Letter]));
        assert_eq!(route(&open("short", None), 100), Route::Sft(vec![Text]));
        assert_eq!(route(&open("short", Some("why")), 100), Route::Sft(vec![LetterReasoning, TextReasoning, Text]));
        assert_eq!(route(&open(&"x".repeat(100), Some("why")), 100), Route::Sft(vec![TextReasoning, Text]));
        // Characters, not bytes.
        assert_eq!(
            route(&open(&"가".repeat(99), Some("why")), 100),
            Route::Sft(vec![LetterReasoning, TextReasoning, Text])
        );
        let mut r = mcq(None);
        r.answer_letter = Some("E".into());
        assert_eq!(route(&r, 100), Route::Skip(skip::LETTER_NOT_IN_OPTIONS));
        let mut p = Record::new("p", "t", RecordKind::Preference, "q");
        p.chosen = Some("good".into());
        assert_eq!(route(&p, 100), Route::Skip(skip::NO_PREFERENCE_PAIR));
        p.rejected = Some("bad".into());
        assert_eq!(route(&p, 100), Route::Dpo);
        assert_eq!(route(&open(" ", None), 100), Route::Skip(skip::NO_ANSWER));
    }

    #[test]
    fn markers_balance() {
        let m = Markers::Think;
        assert_eq!(m.check_balanced("<think>a</think>b<think>c</think>"), Ok(2));
        assert_eq!(m.check_balanced("plain"), Ok(0));
        assert!(m.check_balanced("<think>a").is_err());
        assert!(m.check_balanced("a</think>").is_err());
        assert!(m.check_balanced("</think><think>").is_err());
        assert!(m.check_balanced("<think><think></think></think>").is_err());
        let r = Markers::R;
        assert_eq!(r.check_balanced("<R>x<R/>y"), Ok(1));
        assert!(r.check_balanced("<R/>x<R>").is_err());
        let same = Markers::Custom { open: "###".into(), close: "###".into() };
        assert_eq!(same.check_balanced("###a###b"), Ok(1));
        assert!(same.check_balanced("###a###b###").is_err());
    }

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

    #[test]
    fn option_letters_last_block() {
        let p = "A) context line\nq\n\nA) x\nB) y\nC) z<|im_end|>\n<|im_start|>assistant\n";
        assert_eq!(option_letters(p), vec!["A", "B", "C"]);
        assert!(option_letters("no options").is_empty());
    }

    #[test]
    fn end_with_eos_rules() {
        assert_eq!(end_with_eos("a<|im_end|>\n".into(), "<|im_end|>"), "a<|im_end|>");
        assert_eq!(end_with_eos("a<end_of_turn>\n".into(), "<eos>"), "a<end_of_turn>\n<eos>");
        assert_eq!(end_with_eos("a".into(), ""), "a");
    }
}
