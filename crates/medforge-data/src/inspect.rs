//! `inspect`: what a dataset holds, read through its preset (or raw, when no preset fits).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::config::{InputConfig, OnError};
use crate::error::{Result, RowError};
use crate::ingest::{ingest, RejectLog};
use crate::read::{self, Payload, ReadOptions, RowContent};
use crate::record::{Record, RecordKind};

/// Null and empty counts for one field.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FieldStat {
    pub name: String,
    /// Types seen (raw mode) or the canonical type.
    pub types: Vec<String>,
    pub null: u64,
    pub empty: u64,
    pub null_ratio: f64,
    pub empty_ratio: f64,
}

/// The result of inspecting one input.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inspection {
    pub path: String,
    pub preset: Option<String>,
    pub format: Option<String>,
    pub rows: u64,
    pub rejected: u64,
    pub reject_codes: BTreeMap<String, u64>,
    pub reject_examples: Vec<RowError>,
    /// Source columns as read (first 1000 rows), with their types.
    pub source_schema: Vec<FieldStat>,
    /// Canonical fields (record mode) or source fields (raw mode).
    pub fields: Vec<FieldStat>,
    /// Label distributions: kind, answer_letter, option count, specialty, language, source, with_answer.
    pub labels: BTreeMap<String, BTreeMap<String, u64>>,
    pub samples: Vec<Value>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[derive(Default)]
struct FieldAcc {
    order: Vec<String>,
    types: HashMap<String, BTreeMap<&'static str, u64>>,
    null: HashMap<String, u64>,
    empty: HashMap<String, u64>,
    rows: u64,
}

impl FieldAcc {
    fn add(&mut self, fields: &serde_json::Map<String, Value>) {
        self.rows += 1;
        for (k, v) in fields {
            if !self.types.contains_key(k) {
                self.order.push(k.clone());
            }
            *self.types.entry(k.clone()).or_default().entry(type_name(v)).or_default() += 1;
            if v.is_null() {
                *self.null.entry(k.clone()).or_default() += 1;
            } else if is_empty_value(v) {
                *self.empty.entry(k.clone()).or_default() += 1;
            }
        }
    }
    fn finish(self) -> Vec<FieldStat> {
        let rows = self.rows.max(1) as f64;
        self.order
            .iter()
            .map(|k| {
                let seen: u64 = self.types[k].values().sum();
                // A field missing from a row counts as null for that row.
                let null = self.null.get(k).copied().unwrap_or(0) + (self.rows - seen);
                let empty = self.empty.get(k).copied().unwrap_or(0);
                FieldStat {
                    name: k.clone(),
                    types: self.types[k].keys().filter(|t| **t != "null").map(|t| t.to_string()).collect(),
                    null,
                    empty,
                    null_ratio: null as f64 / rows,
                    empty_ratio: empty as f64 / rows,
                }
            })
            .collect()
    }
}

/// Inspect a path. With no preset given, one is guessed; if none fits, the file is shown raw.
pub fn inspect(path: &Path, preset: Option<&str>, format: Option<read::Format>) -> Result<Inspection> {
    let preset = match preset {
        Some(p) => Some(crate::preset::get(p)?.name.clone()),
        None if format.is_none() => crate::preset::detect(path).map(|p| p.name.clone()),
        None => None,
    };
    let mut cfg = InputConfig::for_path(path, preset.as_deref());
    cfg.format = format;
    let mut ins = Inspection { path: path.display().to_string(), preset: preset.clone(), ..Default::default() };

    // Source schema from the first rows.
    let resolved = if preset.is_some() { Some(cfg.resolve()?) } else { None };
    let read_opts = resolved.as_ref().map(|r| r.read.clone()).unwrap_or(ReadOptions { format, ..Default::default() });
    ins.format = read_opts
        .format
        .or_else(|| read::Format::detect(path))
        .map(|f| serde_json::to_value(f).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default());
    let mut raw_acc = FieldAcc::default();
    let mut raw_labels: HashMap<String, BTreeMap<String, u64>> = HashMap::new();
    let raw_mode = resolved.is_none();
    match read::open(path, &read_opts) {
        Ok(rows) => {
            let take = if raw_mode { usize::MAX } else { 1000 };
            for row in rows.take(take) {
                match row.and_then(|r| r.into_content()) {
                    Ok((_, RowContent::Fields(fields))) => {
                        if raw_mode {
                            ins.rows += 1;
                            if ins.samples.len() < 3 {
                                ins.samples.push(Value::Object(fields.clone()));
                            }
                            for (k, v) in &fields {
                                if let Value::String(s) = v {
                                    if s.chars().count() <= 40 {
                                        let e = raw_labels.entry(k.clone()).or_default();
                                        if e.len() <= 50 {
                                            *e.entry(s.clone()).or_default() += 1;
                                        }
                                    }
                                }
                            }
                        }
                        raw_acc.add(&fields);
                    }
                    Ok((_, RowContent::Record(record))) => {
                        if let Value::Object(m) = serde_json::to_value(&*record).unwrap_or_default() {
                            raw_acc.add(&m);
                        }
                    }
                    Err(e) => {
                        if raw_mode {
                            ins.rejected += 1;
                            *ins.reject_codes.entry(e.code.clone()).or_default() += 1;
                            if ins.reject_examples.len() < 5 {
                                ins.reject_examples.push(e);
                            }
                        }
                    }
                }
            }
        }
        Err(e) => {
            ins.rejected += 1;
            *ins.reject_codes.entry(e.code.clone()).or_default() += 1;
            ins.reject_examples.push(e);
        }
    }
    ins.source_schema = raw_acc.finish();
    if raw_mode {
        ins.fields = ins.source_schema.clone();
        // Only low-cardinality text columns are label-like.
        for (k, m) in raw_labels {
            if m.len() <= 50 && m.values().sum::<u64>() == ins.rows && m.len() as u64 * 2 <= ins.rows {
                ins.labels.insert(k, m);
            }
        }
        return Ok(ins);
    }

    let resolved = resolved.expect("record mode");
    let mut stats = RecordStats::default();
    let mut rejects =
        RejectLog::new(std::env::temp_dir().join(format!("medforge-inspect-{}.jsonl", std::process::id())));
    let mut examples = Vec::new();
    // Skip policy, but keep the first examples to show.
    let st = ingest(&resolved, OnError::Skip, &mut rejects, &|_| {}, &mut |batch| {
        for r in &batch {
            stats.add(r);
            if ins.samples.len() < 3 {
                ins.samples.push(serde_json::to_value(r).unwrap_or_default());
            }
        }
        Ok(())
    })?;
    let rej_path = rejects.path().to_path_buf();
    rejects.finish()?;
    if let Ok(text) = std::fs::read_to_string(&rej_path) {
        for line in text.lines().take(5) {
            if let Ok(e) = serde_json::from_str::<RowError>(line) {
                examples.push(e);
            }
        }
        let _ = std::fs::remove_file(&rej_path);
    }
    ins.rows = st.rows_ok;
    ins.rejected += st.rejected_total();
    for (k, v) in st.rejected {
        *ins.reject_codes.entry(k).or_default() += v;
    }
    ins.reject_examples.extend(examples);
    ins.fields = stats.fields(ins.rows);
    ins.labels = stats.labels;
    Ok(ins)
}

#[derive(Default)]
struct RecordStats {
    null: BTreeMap<&'static str, u64>,
    empty: BTreeMap<&'static str, u64>,
    labels: BTreeMap<String, BTreeMap<String, u64>>,
}

impl RecordStats {
    fn label(&mut self, name: &str, value: &str) {
        *self.labels.entry(name.to_string()).or_default().entry(value.to_string()).or_default() += 1;
    }

    fn add(&mut self, r: &Record) {
        for f in Record::FIELDS {
            let (null, empty) = match f {
                "options" => (r.options.is_empty(), false),
                "specialties" => (r.specialties.is_empty(), false),
                "divisions" => (r.divisions.is_empty(), false),
                "metadata" => (r.metadata.is_empty(), false),
                "annotations" => (r.annotations.is_empty(), false),
                "id" | "source" | "kind" | "question" => (false, r.text_field(f).is_none_or(|s| s.trim().is_empty())),
                _ => match r.text_field(f) {
                    None => (true, false),
                    Some(s) => (false, s.trim().is_empty()),
                },
            };
            if null {
                *self.null.entry(f).or_default() += 1;
            }
            if empty {
                *self.empty.entry(f).or_default() += 1;
            }
        }
        self.label("kind", r.kind.as_str());
        self.label("source", &r.source);
        if r.kind == RecordKind::Mcq {
            self.label("option_count", &r.options.len().to_string());
            self.label("answer_letter", r.answer_letter.as_deref().unwrap_or("(none)"));
        }
        let has_answer = r.answer.as_deref().is_some_and(|a| !a.trim().is_empty()) || r.answer_letter.is_some();
        self.label("has_answer", if has_answer { "yes" } else { "no" });
        if let Some(s) = &r.specialty {
            self.label("specialty", s);
        }
        if let Some(l) = &r.language {
            self.label("language", l);
        }
        if let Some(Value::String(c)) = r.metadata.get("category") {
            self.label("category", c);
        }
    }

    fn fields(&self, rows: u64) -> Vec<FieldStat> {
        let n = rows.max(1) as f64;
        Record::FIELDS
            .iter()
            .map(|f| {
                let null = self.null.get(f).copied().unwrap_or(0);
                let empty = self.empty.get(f).copied().unwrap_or(0);
                let ty = match *f {
                    "options" => "list<{letter,text}>",
                    "specialties" | "divisions" => "list<string>",
                    "metadata" => "object",
                    "annotations" => "list<annotation>",
                    _ => "string",
                };
                FieldStat {
                    name: f.to_string(),
                    types: vec![ty.to_string()],
                    null,
                    empty,
                    null_ratio: null as f64 / n,
                    empty_ratio: empty as f64 / n,
                }
            })
            .collect()
    }
}

/// Kinds present, for help texts.
pub fn kinds() -> Vec<&'static str> {
    RecordKind::ALL.iter().map(|k| k.as_str()).collect()
}

/// Payloads carried by a reader, exposed for tests that look at raw rows.
pub fn first_raw(path: &Path, opts: &ReadOptions) -> Option<Payload> {
    read::open(path, opts).ok()?.next()?.ok().map(|r| r.payload)
}
