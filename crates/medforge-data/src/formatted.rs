//! The formatted training set: the rows the `format` stage writes and trainers, `medforge perplexity` and
//! `medforge verify` read. This module owns the file format; the rendering lives in `medforge-curate`.
//!
//! A formatted folder holds, per split of the run (`train`, `eval`, `holdout`, `pool`; only `train` when
//! the run has no `split` stage):
//! - `<split>.jsonl`: one [`FormattedRow`] per line;
//! - `<split>_dataset/`: the same rows as a Hugging Face `save_to_disk` folder (the splits' folder names);
//!
//! and `format.json`, the [`FormatSpec`] the rows were rendered with. A row sits in the file of its record's
//! split, so `train.jsonl` never holds a holdout, eval or pool row.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder, StructBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use medforge_text::chat::{ChatTemplate, Message};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::write::{write_atomic, HfWriter};

/// The training types: the MedGemma Korean pipeline's four, and DPO triples.
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

    /// The MedGemma Korean pipeline's number, 1 to 4 (`None` for DPO).
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

/// Reasoning markers around the chain of thought in types 2 and 4.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Markers {
    /// `<think>` … `</think>`
    #[default]
    Think,
    /// `<R>` … `<R/>` (the MedGemma Korean pipeline's)
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

/// What a formatted set was made with: written as `format.json` beside the rows, so the verifier and the trainer
/// render the same template without the original config (or the tokenizer_config.json it named).
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

    /// Read `format.json`.
    pub fn load(path: &Path) -> Result<FormatSpec> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Config(format!("{}: not a format.json: {e}", path.display())))
    }
}

/// One training row. Reading needs `id`, `training_type`, `prompt` and `completion` (a prompt/completion set made
/// by another tool reads too); the `format` stage always writes every field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormattedRow {
    /// The record's id (a record emitted twice, with `plain_variants`, keeps it in both rows).
    pub id: String,
    pub training_type: TrainingType,
    /// The conversation, ending with the assistant turn (the chosen one, for DPO).
    #[serde(default)]
    pub messages: Vec<Message>,
    /// `messages` without the last turn, rendered with the generation prompt.
    pub prompt: String,
    /// The rest of `text`; ends with the template's EOS.
    pub completion: String,
    /// `prompt + completion`: the whole conversation as the template renders it.
    #[serde(default)]
    pub text: String,
    /// DPO: the chosen completion (equal to `completion`).
    #[serde(default)]
    pub chosen: Option<String>,
    /// DPO: the rejected completion.
    #[serde(default)]
    pub rejected: Option<String>,
}

/// The splits a formatted folder holds, with their JSONL file and Hugging Face folder names (the Meerkat
/// pipeline's `save_to_disk` names, as in `splits/`).
pub const SPLITS: [(&str, &str, &str); 4] = [
    ("holdout", "holdout.jsonl", "holdout_dataset"),
    ("train", "train.jsonl", "train_dataset"),
    ("eval", "eval.jsonl", "eval_dataset"),
    ("pool", "pool.jsonl", "eval_pool_dataset"),
];

/// The split a row belongs to when the run made none.
pub const DEFAULT_SPLIT: &str = "train";

/// `format.json`.
pub const SPEC_FILE: &str = "format.json";

/// The JSONL file and HF folder of `split` inside a formatted folder.
pub fn split_paths(dir: &Path, split: &str) -> Result<(PathBuf, PathBuf)> {
    SPLITS.iter().find(|(s, _, _)| *s == split).map(|(_, jsonl, hf)| (dir.join(jsonl), dir.join(hf))).ok_or_else(|| {
        Error::Config(format!(
            "unknown split `{split}` (one of {})",
            SPLITS.iter().map(|s| s.0).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Arrow schema of the HF folders.
pub fn schema() -> SchemaRef {
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
        schema(),
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

/// What [`write_set`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WriteSummary {
    /// Rows per split, for every split written.
    pub rows: BTreeMap<String, u64>,
    /// The JSONL file of each split.
    pub jsonl: BTreeMap<String, PathBuf>,
    /// The HF folder of each split.
    pub hf: BTreeMap<String, PathBuf>,
    pub spec: PathBuf,
}

/// Write a formatted folder: each split's rows as `<split>.jsonl` and `<split>_dataset/` (see the module docs), then
/// `format.json`. `splits` maps a split name to its rows; the `train` split is always written, even empty. Every file
/// is written to a temporary path and renamed into place.
pub fn write_set(dir: &Path, splits: &BTreeMap<String, Vec<FormattedRow>>, spec: &FormatSpec) -> Result<WriteSummary> {
    if let Some(unknown) = splits.keys().find(|k| !SPLITS.iter().any(|s| s.0 == k.as_str())) {
        return Err(Error::Config(format!("formatted rows of unknown split `{unknown}`")));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut summary = WriteSummary::default();
    let empty = Vec::new();
    for (split, _, _) in SPLITS {
        let rows = match splits.get(split) {
            Some(rows) => rows,
            None if split == DEFAULT_SPLIT => &empty,
            None => continue,
        };
        let (jsonl, hf) = split_paths(dir, split)?;
        write_jsonl(&jsonl, rows)?;
        write_hf(&hf, rows)?;
        summary.rows.insert(split.to_string(), rows.len() as u64);
        summary.jsonl.insert(split.to_string(), jsonl);
        summary.hf.insert(split.to_string(), hf);
    }
    let spec_path = dir.join(SPEC_FILE);
    let body = serde_json::to_vec_pretty(spec).map_err(|e| Error::write(spec_path.display().to_string(), e))?;
    write_atomic(&spec_path, &body)?;
    summary.spec = spec_path;
    Ok(summary)
}

/// Rows as JSONL, atomically.
pub fn write_jsonl(path: &Path, rows: &[FormattedRow]) -> Result<()> {
    let mut buf = Vec::with_capacity(rows.iter().map(|r| r.text.len() * 3).sum::<usize>() + 1024);
    for r in rows {
        serde_json::to_writer(&mut buf, r).map_err(|e| Error::write(path.display().to_string(), e))?;
        buf.push(b'\n');
    }
    write_atomic(path, &buf)
}

/// Rows as a Hugging Face `save_to_disk` folder (opens with `datasets.load_from_disk`), atomically.
pub fn write_hf(path: &Path, rows: &[FormattedRow]) -> Result<()> {
    let mut w = HfWriter::create(
        path,
        schema(),
        "medforge training rows: messages, prompt, completion, text (chosen/rejected for DPO)",
    )?;
    for chunk in rows.chunks(4096) {
        let batch = rows_to_batch(chunk).map_err(|e| Error::write(path.display().to_string(), e))?;
        w.write_batch(&batch)?;
    }
    w.finish()?;
    Ok(())
}

/// Read a formatted JSONL file; a line that is not a [`FormattedRow`] is an error naming the file, line and
/// what is wrong.
pub fn read_jsonl(path: &Path) -> Result<Vec<FormattedRow>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut rows = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: FormattedRow = serde_json::from_str(&line).map_err(|e| {
            Error::Config(format!(
                "{}:{}: not a formatted row ({e}); expected the `format` stage's rows (id, training_type, prompt, completion, ...)",
                path.display(),
                i + 1
            ))
        })?;
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn training_type_names_and_numbers() {
        for t in TrainingType::ALL {
            assert_eq!(TrainingType::parse(t.as_str()), Some(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<TrainingType>(&json).unwrap(), t);
        }
        assert_eq!(serde_json::from_str::<TrainingType>("3").unwrap(), TrainingType::Letter);
        assert!(serde_json::from_str::<TrainingType>("5").is_err());
    }

    #[test]
    fn write_then_read_by_split() {
        let dir = tempfile::tempdir().unwrap();
        let row = |id: &str| FormattedRow {
            id: id.into(),
            training_type: TrainingType::Letter,
            messages: vec![Message::new("user", "q"), Message::new("assistant", "A")],
            prompt: "p".into(),
            completion: "A</s>".into(),
            text: "pA</s>".into(),
            chosen: None,
            rejected: None,
        };
        let spec = FormatSpec {
            template: "chatml".into(),
            chat_template: "x".into(),
            bos_token: String::new(),
            eos_token: "</s>".into(),
            reasoning_markers: Markers::Think,
        };
        let splits = BTreeMap::from([("train".to_string(), vec![row("a")]), ("holdout".to_string(), vec![row("b")])]);
        let s = write_set(dir.path(), &splits, &spec).unwrap();
        assert_eq!(s.rows.keys().collect::<Vec<_>>(), vec!["holdout", "train"]);
        assert_eq!(read_jsonl(&dir.path().join("train.jsonl")).unwrap(), vec![row("a")]);
        assert_eq!(read_jsonl(&dir.path().join("holdout.jsonl")).unwrap(), vec![row("b")]);
        assert!(dir.path().join("train_dataset/state.json").exists());
        assert_eq!(FormatSpec::load(&dir.path().join(SPEC_FILE)).unwrap(), spec);
        std::fs::write(dir.path().join("bad.jsonl"), "{\"id\": 1}\n").unwrap();
        let e = read_jsonl(&dir.path().join("bad.jsonl")).unwrap_err().to_string();
        assert!(e.contains("bad.jsonl:1"), "{e}");
        let bad = BTreeMap::from([("test".to_string(), vec![row("c")])]);
        assert!(write_set(dir.path(), &bad, &spec).is_err());
    }
}
