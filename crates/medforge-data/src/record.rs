//! The canonical medforge record: one type for open QA, multiple choice, dialogue and preference pairs.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What kind of example a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    OpenQa,
    Mcq,
    Dialogue,
    Preference,
}

impl RecordKind {
    pub const ALL: [RecordKind; 4] =
        [RecordKind::OpenQa, RecordKind::Mcq, RecordKind::Dialogue, RecordKind::Preference];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::OpenQa => "open_qa",
            RecordKind::Mcq => "mcq",
            RecordKind::Dialogue => "dialogue",
            RecordKind::Preference => "preference",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One answer option of a multiple-choice question, in display order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McqOption {
    /// Upper-case letter `A`..`Z`.
    pub letter: String,
    pub text: String,
}

/// Whether a stage kept or dropped a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Kept,
    Dropped,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Kept => "kept",
            Verdict::Dropped => "dropped",
        }
    }
}

/// A named numeric score attached by a stage (token counts, ratios, similarities).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub name: String,
    pub value: f64,
}

/// What one stage decided about a row, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    pub stage: String,
    pub verdict: Verdict,
    /// Stable reason code such as `quality.missing_field:answer`; `None` for plain keeps.
    pub reason: Option<String>,
    pub scores: Vec<Score>,
}

/// The canonical record. Field order here is the column order of every output format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// Dataset the row came from (preset name or configured source name).
    pub source: String,
    pub kind: RecordKind,
    /// The question or prompt (the patient turn for dialogues).
    pub question: String,
    /// Supporting passage, e.g. PubMedQA abstracts.
    #[serde(default)]
    pub context: Option<String>,
    /// Ordered options for multiple choice; empty otherwise.
    #[serde(default)]
    pub options: Vec<McqOption>,
    /// Correct option letter, for multiple choice.
    #[serde(default)]
    pub answer_letter: Option<String>,
    /// Reference answer text (the option text for MCQ, the doctor's reply for dialogues).
    #[serde(default)]
    pub answer: Option<String>,
    /// Chain of thought.
    #[serde(default)]
    pub reasoning: Option<String>,
    /// Long-form response, where a dataset keeps one beside a short answer (HuatuoGPT-o1's `Response`).
    #[serde(default)]
    pub response: Option<String>,
    #[serde(default)]
    pub chosen: Option<String>,
    #[serde(default)]
    pub rejected: Option<String>,
    /// Primary specialty label.
    #[serde(default)]
    pub specialty: Option<String>,
    #[serde(default)]
    pub specialties: Vec<String>,
    /// Primary division label (taxonomy id).
    #[serde(default)]
    pub division: Option<String>,
    #[serde(default)]
    pub divisions: Vec<String>,
    /// BCP-47-ish language code, e.g. `en`, `ko`.
    #[serde(default)]
    pub language: Option<String>,
    /// Free metadata; stored as a JSON object string in columnar formats.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub annotations: Vec<Annotation>,
}

impl Record {
    /// A minimal record; other fields empty.
    pub fn new(
        id: impl Into<String>,
        source: impl Into<String>,
        kind: RecordKind,
        question: impl Into<String>,
    ) -> Self {
        Record {
            id: id.into(),
            source: source.into(),
            kind,
            question: question.into(),
            context: None,
            options: Vec::new(),
            answer_letter: None,
            answer: None,
            reasoning: None,
            response: None,
            chosen: None,
            rejected: None,
            specialty: None,
            specialties: Vec::new(),
            division: None,
            divisions: Vec::new(),
            language: None,
            metadata: Map::new(),
            annotations: Vec::new(),
        }
    }

    /// The text of an option by letter.
    pub fn option_text(&self, letter: &str) -> Option<&str> {
        self.options.iter().find(|o| o.letter == letter).map(|o| o.text.as_str())
    }

    /// True when no annotation dropped the row.
    pub fn is_kept(&self) -> bool {
        self.annotations.iter().all(|a| a.verdict == Verdict::Kept)
    }

    /// Canonical field names, in column order.
    pub const FIELDS: [&'static str; 19] = [
        "id",
        "source",
        "kind",
        "question",
        "context",
        "options",
        "answer_letter",
        "answer",
        "reasoning",
        "response",
        "chosen",
        "rejected",
        "specialty",
        "specialties",
        "division",
        "divisions",
        "language",
        "metadata",
        "annotations",
    ];

    /// Text of a canonical string field by name (`None` if empty/null or not a string field).
    pub fn text_field(&self, name: &str) -> Option<&str> {
        let v = match name {
            "id" => Some(self.id.as_str()),
            "source" => Some(self.source.as_str()),
            "kind" => Some(self.kind.as_str()),
            "question" => Some(self.question.as_str()),
            "context" => self.context.as_deref(),
            "answer_letter" => self.answer_letter.as_deref(),
            "answer" => self.answer.as_deref(),
            "reasoning" => self.reasoning.as_deref(),
            "response" => self.response.as_deref(),
            "chosen" => self.chosen.as_deref(),
            "rejected" => self.rejected.as_deref(),
            "specialty" => self.specialty.as_deref(),
            "division" => self.division.as_deref(),
            "language" => self.language.as_deref(),
            _ => None,
        };
        v.filter(|s| !s.is_empty())
    }
}
