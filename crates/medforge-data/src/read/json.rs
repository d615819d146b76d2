//! Whole-file JSON: an array of records, or an object of records keyed by id (PubMedQA's `ori_pqal.json`),
//! or an object of `question -> answer` strings (the Meerkat pipeline's `dataset_with_answers_{specialty}.json`).
//! Each element keeps the line it starts on, so errors point into the file.

use std::fmt;
use std::path::Path;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::jsonl::{classify_json_error, json_type};
use super::{check_utf8, read_capped, strip_bom, Limits, Payload, RawIter, RawRow};
use crate::error::{code, Location, RowError};

/// Top-level elements, borrowed from the file buffer.
enum Top<'a> {
    Array(Vec<&'a RawValue>),
    Object(Vec<(String, &'a RawValue)>),
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Top<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON array or object of records")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = seq.next_element::<&'de RawValue>()? {
                    v.push(x);
                }
                Ok(Top::Array(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = map.next_entry::<String, &'de RawValue>()? {
                    v.push((k, x));
                }
                Ok(Top::Object(v))
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) fn open(file: &Path, limits: &Limits) -> Result<RawIter, RowError> {
    let bytes = read_capped(file, limits)?;
    let floc = Location::file(file);
    let text = check_utf8(&bytes, &floc, 1).map_err(|mut e| {
        e.fatal_for_file = true;
        e
    })?;
    let text = strip_bom(text);
    let top: Top = serde_json::from_str(text).map_err(|e| {
        let mut err = classify_json_error(&e, floc.clone().with_line(e.line() as u64));
        if e.classify() == serde_json::error::Category::Data {
            err.code = code::WRONG_TYPE.to_string();
        }
        err.fatal_for_file = true;
        err
    })?;
    let base = text.as_ptr() as usize;
    let mut lines = LineCounter::new(text);
    let mut rows = Vec::new();
    let mut push = |idx: usize, key: Option<String>, raw: &RawValue| {
        let line = lines.line_at(raw.get().as_ptr() as usize - base);
        let mut loc = floc.clone().with_line(line).with_record(idx as u64);
        if let Some(k) = &key {
            loc = loc.with_key(k.clone());
        }
        let row = match serde_json::from_str::<Value>(raw.get()) {
            Ok(Value::Object(m)) => Ok(RawRow { location: loc, payload: Payload::Fields(m) }),
            // An object of plain values (question -> answer): the key and value become `$key`/`$value`.
            Ok(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) if key.is_some() => {
                let mut m = Map::new();
                m.insert("$value".into(), v);
                Ok(RawRow { location: loc, payload: Payload::Fields(m) })
            }
            Ok(other) => Err(RowError::new(
                loc,
                code::WRONG_TYPE,
                format!("expected each record to be a JSON object, found {}", json_type(&other)),
            )),
            Err(e) => Err(classify_json_error(&e, loc)),
        };
        rows.push(row);
    };
    match top {
        Top::Array(items) => {
            for (i, raw) in items.into_iter().enumerate() {
                push(i, None, raw);
            }
        }
        Top::Object(items) => {
            for (i, (k, raw)) in items.into_iter().enumerate() {
                push(i, Some(k), raw);
            }
        }
    }
    if rows.is_empty() {
        return Err(RowError::file_level(floc, code::EMPTY_FILE, "the JSON array/object holds no records"));
    }
    Ok(Box::new(rows.into_iter()))
}

/// Maps byte offsets (visited in increasing order) to 1-based line numbers.
pub(crate) struct LineCounter<'a> {
    text: &'a [u8],
    pos: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        LineCounter { text: text.as_bytes(), pos: 0, line: 1 }
    }
    pub(crate) fn line_at(&mut self, offset: usize) -> u64 {
        let offset = offset.min(self.text.len());
        if offset < self.pos {
            self.pos = 0;
            self.line = 1;
        }
        self.line += self.text[self.pos..offset].iter().filter(|&&b| b == b'\n').count() as u64;
        self.pos = offset;
        self.line
    }
}
