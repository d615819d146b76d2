//! Applying a [`FieldMapping`] to one source row: [`Mapper`] and the checks every record passes.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::answer::{letter, letter_index, letter_prefix, loose_letter, parse_answer, truncate};
use super::{FieldMapping, FieldSource};
use crate::error::{code, Location, RowError};
use crate::read::RowContent;
use crate::record::{McqOption, Record, RecordKind};

/// A mapping ready to apply: regexes compiled, defaults settled.
#[derive(Debug, Clone)]
pub struct Mapper {
    mapping: FieldMapping,
    source: String,
    patterns: BTreeMap<String, regex::Regex>,
    used: Vec<String>,
    max_field_bytes: usize,
}

impl Mapper {
    pub fn new(mapping: FieldMapping, source: &str, max_field_bytes: usize) -> Result<Mapper, crate::Error> {
        let mut patterns = BTreeMap::new();
        let meta = mapping.meta.iter().flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v)));
        for (name, s) in mapping.sources().into_iter().chain(meta) {
            if let Some(p) = &s.pattern {
                let re = regex::Regex::new(p)
                    .map_err(|e| crate::Error::Config(format!("fields.{name}.pattern: invalid regex: {e}")))?;
                patterns.insert(p.clone(), re);
            }
        }
        if let Some(req) = &mapping.required {
            for r in req {
                if !Record::FIELDS.contains(&r.as_str()) {
                    return Err(crate::Error::Config(format!(
                        "fields.required: `{r}` is not a record field; valid: {}",
                        Record::FIELDS.join(", ")
                    )));
                }
            }
        }
        if mapping.question.is_none() && mapping.canonical != Some(true) {
            return Err(crate::Error::Config(
                "fields.question is not set: say which source field holds the question".into(),
            ));
        }
        let used = mapping.used_source_fields();
        Ok(Mapper { mapping, source: source.to_string(), patterns, used, max_field_bytes })
    }

    pub fn mapping(&self) -> &FieldMapping {
        &self.mapping
    }

    /// Map a raw row onto a record, or explain why it cannot be.
    pub fn map(&self, row: crate::read::RawRow) -> Result<Record, RowError> {
        let (loc, content) = row.into_content()?;
        let r = match content {
            RowContent::Fields(fields) if self.mapping.canonical == Some(true) => {
                serde_json::from_value::<Record>(Value::Object(fields))
                    .map_err(|e| RowError::new(loc.clone(), code::WRONG_TYPE, format!("not a medforge record: {e}")))?
            }
            RowContent::Fields(fields) => self.map_fields(&loc, fields)?,
            RowContent::Record(record) => *record,
        };
        let r = validate_record(r, &loc)?;
        if let (Some(n), RecordKind::Mcq) = (self.mapping.expected_options, r.kind) {
            if r.options.len() != n {
                return Err(RowError::new(
                    loc.with_field("options"),
                    code::BAD_OPTION,
                    format!("row has {} options; this input expects {n} (fields.expected_options)", r.options.len()),
                ));
            }
        }
        Ok(r)
    }

    fn map_fields(&self, loc: &Location, mut fields: Map<String, Value>) -> Result<Record, RowError> {
        let (mut r, moved) = self.map_borrowed(loc, &fields)?;
        // Metadata copied straight from a source field was left as a null placeholder: move the value
        // out of the row now that nothing else reads it, instead of deep-cloning it (MedQA's phrase
        // lists made those clones a large share of all allocations). A slot that is no longer null
        // was overwritten by a `meta` entry, which wins as before.
        for name in moved {
            if let (Some(slot), Some(v)) = (r.metadata.get_mut(&name), fields.get_mut(&name)) {
                if slot.is_null() {
                    *slot = v.take();
                }
            }
        }
        Ok(r)
    }

    /// Map a row's fields; metadata taken verbatim from a field is returned by name, to be moved in.
    fn map_borrowed(&self, loc: &Location, fields: &Map<String, Value>) -> Result<(Record, Vec<String>), RowError> {
        let cx = Ctx { loc, fields, max: self.max_field_bytes, patterns: &self.patterns };
        let m = &self.mapping;
        let get = |name: &str, s: &Option<FieldSource>| -> Result<Option<String>, RowError> {
            match s {
                Some(s) => cx.resolve(name, s),
                None => Ok(None),
            }
        };
        let question = get("question", &m.question)?.ok_or_else(|| {
            let src = m.question.as_ref().map(|s| s.from.as_str()).unwrap_or("question");
            RowError::new(loc.clone().with_field(src), code::MISSING_FIELD, "question is missing or empty")
        })?;
        let options = cx.options(m)?;
        let chosen = get("chosen", &m.chosen)?;
        let rejected = get("rejected", &m.rejected)?;
        let kind = m.kind.unwrap_or(if chosen.is_some() || rejected.is_some() {
            RecordKind::Preference
        } else if !options.is_empty() {
            RecordKind::Mcq
        } else {
            RecordKind::OpenQa
        });
        let id = match get("id", &m.id)? {
            Some(id) => id,
            None => {
                let stem = loc.file.file_stem().and_then(|s| s.to_str()).unwrap_or("row");
                match &loc.key {
                    Some(k) => format!("{}:{stem}:{k}", self.source),
                    None => format!("{}:{stem}:{}", self.source, loc.record.unwrap_or(0)),
                }
            }
        };
        let mut r = Record::new(id, self.source.clone(), kind, question);
        r.options = options;
        r.chosen = chosen;
        r.rejected = rejected;
        r.context = get("context", &m.context)?;
        r.answer = get("answer", &m.answer)?;
        r.reasoning = get("reasoning", &m.reasoning)?;
        r.response = get("response", &m.response)?;
        r.specialty = get("specialty", &m.specialty)?;
        r.division = get("division", &m.division)?;
        r.language = get("language", &m.language)?;
        r.specialties = cx.list("specialties", m.specialties.as_ref())?;
        r.divisions = cx.list("divisions", m.divisions.as_ref())?;
        if r.specialties.is_empty() {
            r.specialties.extend(r.specialty.clone());
        }
        if r.divisions.is_empty() {
            r.divisions.extend(r.division.clone());
        }

        if let Some(src) = &m.answer_letter {
            if let Some(raw) = cx.resolve("answer_letter", src)? {
                let (letter, text) =
                    parse_answer(&raw, m.answer_format.unwrap_or_default(), &r.options, loc, &src.from)?;
                r.answer_letter = Some(letter);
                if r.answer.is_none() {
                    r.answer = text;
                }
            }
        }
        if let (None, Some(ans), false) = (&r.answer_letter, &r.answer, r.options.is_empty()) {
            // Options and a text answer but no key (PubMedQA's final_decision, a MedQA row whose
            // `answer_idx` is empty): the option with that text.
            let a = ans.trim();
            r.answer_letter =
                r.options.iter().find(|o| o.text.trim().eq_ignore_ascii_case(a)).map(|o| o.letter.clone());
        }
        if m.require_answer == Some(true) && r.kind == RecordKind::Mcq && r.answer_letter.is_none() {
            let named: Vec<&str> =
                [&m.answer_letter, &m.answer].into_iter().flatten().map(|s| s.from.as_str()).collect();
            let field = named.first().copied().unwrap_or("answer");
            return Err(RowError::new(
                loc.clone().with_field(field),
                code::MISSING_FIELD,
                format!(
                    "multiple-choice row has no answer that names one of its options (read from {}); \
                     set `require_answer = false` in the input's [inputs.fields] to read unlabelled rows",
                    named.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" and ")
                ),
            ));
        }
        if r.answer.is_none() {
            if let Some(l) = &r.answer_letter {
                r.answer = r.option_text(l).map(str::to_string);
            }
        }

        let mut moved: Vec<String> = Vec::new();
        if let Some(list) = &m.metadata {
            for name in list {
                if name == "*" {
                    for (k, v) in fields {
                        if !self.used.iter().any(|u| u == k) && !k.starts_with('$') && !r.metadata.contains_key(k) {
                            cx.check_size(k, v)?;
                            r.metadata.insert(k.clone(), v.clone());
                        }
                    }
                } else if let Some(v) = cx.lookup(name) {
                    if !v.is_null() {
                        cx.check_size(name, &v)?;
                        if fields.contains_key(name.as_str()) {
                            // The field itself: keep its place, move the value in later (map_fields).
                            if !moved.contains(name) {
                                moved.push(name.clone());
                            }
                            r.metadata.insert(name.clone(), Value::Null);
                        } else {
                            r.metadata.insert(name.clone(), v.into_owned());
                        }
                    }
                }
            }
        }
        for (name, s) in m.meta.iter().flat_map(|m| m.iter()) {
            if let Some(v) = cx.resolve(name, s)? {
                r.metadata.insert(name.clone(), Value::String(v));
            }
        }
        if let Some(req) = &m.required {
            for f in req {
                if is_missing(&r, f) {
                    return Err(RowError::new(
                        loc.clone().with_field(f.clone()),
                        code::MISSING_FIELD,
                        format!("required field `{f}` is missing or empty"),
                    ));
                }
            }
        }
        Ok((r, moved))
    }
}

fn is_missing(r: &Record, field: &str) -> bool {
    match field {
        "options" => r.options.is_empty(),
        "specialties" => r.specialties.is_empty(),
        "divisions" => r.divisions.is_empty(),
        "metadata" => r.metadata.is_empty(),
        "annotations" => false,
        f => r.text_field(f).is_none(),
    }
}

/// Checks every record must pass, whatever its origin.
pub fn validate_record(r: Record, loc: &Location) -> Result<Record, RowError> {
    if r.question.trim().is_empty() {
        return Err(RowError::new(loc.clone().with_field("question"), code::MISSING_FIELD, "question is empty"));
    }
    if r.kind == RecordKind::Preference {
        for (name, v) in [("chosen", &r.chosen), ("rejected", &r.rejected)] {
            if v.as_deref().is_none_or(|s| s.trim().is_empty()) {
                return Err(RowError::new(
                    loc.clone().with_field(name),
                    code::MISSING_FIELD,
                    format!("preference pair has no `{name}` text"),
                ));
            }
        }
    }
    if r.kind == RecordKind::Mcq && r.options.len() < 2 {
        return Err(RowError::new(
            loc.clone().with_field("options"),
            code::BAD_OPTION,
            format!("multiple-choice row has {} option(s); at least 2 are needed", r.options.len()),
        ));
    }
    let mut seen = [false; 26];
    for o in &r.options {
        let idx = letter_index(&o.letter).ok_or_else(|| {
            RowError::new(
                loc.clone().with_field("options"),
                code::BAD_OPTION,
                format!("option key `{}` is not a letter A-Z", o.letter),
            )
        })?;
        if std::mem::replace(&mut seen[idx], true) {
            return Err(RowError::new(
                loc.clone().with_field("options"),
                code::BAD_OPTION,
                format!("option `{}` appears twice", o.letter),
            ));
        }
    }
    if let Some(l) = &r.answer_letter {
        if r.option_text(l).is_none() {
            let letters: Vec<&str> = r.options.iter().map(|o| o.letter.as_str()).collect();
            let msg = if letters.is_empty() {
                format!("answer letter `{l}` given but the row has no options")
            } else {
                format!("answer `{l}` is not among the options {}", letters.join(", "))
            };
            return Err(RowError::new(loc.clone().with_field("answer_letter"), code::ANSWER_NOT_IN_OPTIONS, msg));
        }
    }
    Ok(r)
}

/// Length of `v` as compact JSON, counted without building the string (this runs on every row).
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        Err(_) => 0,
    }
}

/// An upper bound on [`json_len`]: a string byte escapes to at most 6 bytes (`\u00XX`), a number
/// prints in at most 40.
fn json_len_bound(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 40,
        Value::String(s) => 6 * s.len() + 2,
        Value::Array(a) => 2 + a.len() + a.iter().map(json_len_bound).sum::<usize>(),
        Value::Object(m) => 2 + m.iter().map(|(k, v)| 6 * k.len() + 4 + json_len_bound(v)).sum::<usize>(),
    }
}

/// Canonical fields that hold prose: a number or boolean there is `ingest.wrong_type`. Ids, answer
/// keys, labels and option texts may be numbers (`answer = 3`, an option `5 mg` written as `5`).
const TEXT_FIELDS: [&str; 7] = ["question", "context", "answer", "reasoning", "response", "chosen", "rejected"];

/// Whether a number or boolean reads as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Text {
    Strict,
    Loose,
}

struct Ctx<'a> {
    loc: &'a Location,
    fields: &'a Map<String, Value>,
    max: usize,
    patterns: &'a BTreeMap<String, regex::Regex>,
}

impl<'a> Ctx<'a> {
    /// A source field by exact name, then by dotted path. Borrowed, not cloned: most callers only read
    /// the value, and cloning every looked-up field (option maps, phrase lists) was a hot spot.
    fn lookup(&self, path: &str) -> Option<Cow<'a, Value>> {
        if let Some(v) = self.fields.get(path) {
            return Some(Cow::Borrowed(v));
        }
        if let Some(special) = self.special(path) {
            return Some(Cow::Owned(Value::String(special)));
        }
        let mut parts = path.split('.');
        let mut cur = self.fields.get(parts.next()?)?;
        for p in parts {
            cur = match cur {
                Value::Object(m) => m.get(p)?,
                Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(Cow::Borrowed(cur))
    }

    fn special(&self, name: &str) -> Option<String> {
        let file = &self.loc.file;
        Some(match name {
            "$file_stem" => file.file_stem()?.to_str()?.to_string(),
            "$file_name" => file.file_name()?.to_str()?.to_string(),
            "$parent" => file.parent()?.file_name()?.to_str()?.to_string(),
            "$key" => self.loc.key.clone()?,
            "$index" | "$record" => self.loc.record?.to_string(),
            "$line" => self.loc.line?.to_string(),
            _ => return None,
        })
    }

    /// A value as text. Numbers and booleans print, except for [`Text::Strict`] targets (a question that
    /// is a JSON number is a broken row, not the text "12345").
    fn text_of(&self, field: &str, v: &Value, join: &str, text: Text) -> Result<Option<String>, RowError> {
        let wrong = |found: &str| {
            RowError::new(self.loc.clone().with_field(field), code::WRONG_TYPE, format!("expected text, found {found}"))
        };
        Ok(match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) if text == Text::Strict => return Err(wrong(&format!("the number {n}"))),
            Value::Bool(b) if text == Text::Strict => return Err(wrong(&format!("the boolean {b}"))),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Array(items) => {
                let mut parts = Vec::with_capacity(items.len());
                for it in items {
                    if let Some(t) = self.text_of(field, it, join, text)? {
                        parts.push(t);
                    }
                }
                (!parts.is_empty()).then(|| parts.join(join))
            }
            Value::Object(_) => return Err(wrong("an object (map a nested key such as `field.key`)")),
        })
    }

    fn expr(&self, expr: &str, join: &str, text: Text) -> Result<Option<String>, RowError> {
        if let Some(lit) = expr.strip_prefix('=') {
            return Ok(Some(lit.to_string()));
        }
        if expr.contains('{') {
            let mut out = String::new();
            let mut any = false;
            let mut rest = expr;
            while let Some(s) = rest.find('{') {
                out.push_str(&rest[..s]);
                let Some(e) = rest[s..].find('}') else { break };
                let name = &rest[s + 1..s + e];
                if let Some(v) = self.lookup(name) {
                    if let Some(t) = self.text_of(name, &v, join, text)? {
                        out.push_str(&t);
                        any = true;
                    }
                }
                rest = &rest[s + e + 1..];
            }
            out.push_str(rest);
            return Ok(any.then_some(out));
        }
        match self.lookup(expr) {
            Some(v) => self.text_of(expr, &v, join, text),
            None => Ok(None),
        }
    }

    fn resolve(&self, target: &str, s: &FieldSource) -> Result<Option<String>, RowError> {
        let join = s.join.as_deref().unwrap_or("\n\n");
        let text = if TEXT_FIELDS.contains(&target) { Text::Strict } else { Text::Loose };
        let mut v = self.expr(&s.from, join, text)?.filter(|t| !t.is_empty());
        if let (Some(p), Some(t)) = (&s.pattern, &v) {
            if let Some(c) = self.patterns.get(p).and_then(|re| re.captures(t)) {
                v = c.get(1).or_else(|| c.get(0)).map(|m| m.as_str().to_string());
            }
        }
        if let Some(t) = &v {
            if let Some(mapped) = s.map.get(t.trim()) {
                v = Some(mapped.clone());
            }
        }
        let v = v.or_else(|| s.default.clone());
        if let Some(t) = &v {
            if t.len() > self.max {
                return Err(RowError::new(
                    self.loc.clone().with_field(s.from.clone()),
                    code::FIELD_TOO_LARGE,
                    format!("{target} is {} bytes, over the {}-byte limit (limits.max_field_bytes)", t.len(), self.max),
                ));
            }
        }
        Ok(v)
    }

    fn check_size(&self, field: &str, v: &Value) -> Result<(), RowError> {
        let n = match v {
            Value::String(s) => s.len(),
            // The exact length needs a serialisation pass; skip it when a cheap bound is under the limit.
            Value::Array(_) | Value::Object(_) if json_len_bound(v) <= self.max => return Ok(()),
            Value::Array(_) | Value::Object(_) => json_len(v),
            _ => 0,
        };
        if n > self.max {
            return Err(RowError::new(
                self.loc.clone().with_field(field),
                code::FIELD_TOO_LARGE,
                format!("value is {n} bytes, over the {}-byte limit (limits.max_field_bytes)", self.max),
            ));
        }
        Ok(())
    }

    fn list(&self, target: &str, s: Option<&FieldSource>) -> Result<Vec<String>, RowError> {
        let Some(s) = s else { return Ok(Vec::new()) };
        match self.lookup(&s.from).as_deref() {
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for it in items {
                    if let Some(t) = self.text_of(&s.from, it, ",", Text::Loose)? {
                        out.push(t);
                    }
                }
                Ok(out)
            }
            _ => Ok(self
                .resolve(target, s)?
                .map(|t| t.split([',', ';']).map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect())
                .unwrap_or_default()),
        }
    }

    fn bad_option(&self, field: &str, msg: String) -> RowError {
        RowError::new(self.loc.clone().with_field(field), code::BAD_OPTION, msg)
    }

    fn options(&self, m: &FieldMapping) -> Result<Vec<McqOption>, RowError> {
        let mut out = Vec::new();
        if let Some(cols) = &m.option_columns {
            for (i, col) in cols.iter().enumerate() {
                let v = self.fields.get(col).ok_or_else(|| {
                    RowError::new(
                        self.loc.clone().with_field(col.clone()),
                        code::MISSING_FIELD,
                        format!("option column `{col}` is not in this row"),
                    )
                })?;
                if let Some(t) = self.text_of(col, v, " ", Text::Loose)?.filter(|t| !t.trim().is_empty()) {
                    let l = loose_letter(col).filter(|_| col.trim().len() == 1).unwrap_or_else(|| letter(i));
                    self.check_size(col, v)?;
                    out.push(McqOption { letter: l, text: t });
                }
            }
            return Ok(out);
        }
        if let Some(fixed) = &m.fixed_options {
            return Ok(fixed
                .iter()
                .enumerate()
                .map(|(i, t)| McqOption { letter: letter(i), text: t.clone() })
                .collect());
        }
        let Some(src) = &m.options else { return Ok(out) };
        let field = src.from.as_str();
        let Some(v) = self.lookup(field) else { return Ok(out) };
        self.check_size(field, &v)?;
        match &*v {
            Value::Null => {}
            Value::Object(map) => {
                for (k, v) in map {
                    let l = loose_letter(k)
                        .filter(|_| k.trim().len() == 1)
                        .ok_or_else(|| self.bad_option(field, format!("option key `{k}` is not a letter A-Z")))?;
                    let t = self
                        .text_of(field, v, " ", Text::Loose)?
                        .ok_or_else(|| self.bad_option(field, format!("option `{k}` has no text")))?;
                    out.push(McqOption { letter: l, text: t });
                }
            }
            Value::Array(items) => {
                if items.len() > 26 {
                    return Err(self.bad_option(field, format!("{} options; at most 26 are supported", items.len())));
                }
                for (i, it) in items.iter().enumerate() {
                    match it {
                        Value::Object(o) => {
                            let l = ["letter", "key", "label"]
                                .iter()
                                .find_map(|k| o.get(*k).and_then(Value::as_str))
                                .map(str::to_string)
                                .unwrap_or_else(|| letter(i));
                            let l = loose_letter(&l).ok_or_else(|| {
                                self.bad_option(field, format!("option key `{l}` is not a letter A-Z"))
                            })?;
                            let t = ["text", "value", "content"]
                                .iter()
                                .find_map(|k| o.get(*k))
                                .map(|v| self.text_of(field, v, " ", Text::Loose))
                                .transpose()?
                                .flatten()
                                .ok_or_else(|| self.bad_option(field, format!("option {i} has no `text`")))?;
                            out.push(McqOption { letter: l, text: t });
                        }
                        other => {
                            let t = self
                                .text_of(field, other, " ", Text::Loose)?
                                .ok_or_else(|| self.bad_option(field, format!("option {i} is empty")))?;
                            out.push(McqOption { letter: letter(i), text: t });
                        }
                    }
                }
            }
            Value::String(s) => {
                for line in s.lines().filter(|l| !l.trim().is_empty()) {
                    match letter_prefix(line) {
                        Some((l, t)) => out.push(McqOption { letter: l, text: t }),
                        None => match out.last_mut() {
                            Some(prev) => {
                                prev.text.push('\n');
                                prev.text.push_str(line.trim());
                            }
                            None => {
                                return Err(self.bad_option(
                                    field,
                                    format!("options text must list `A. ...` lines; found `{}`", truncate(line, 40)),
                                ))
                            }
                        },
                    }
                }
            }
            other => {
                return Err(RowError::new(
                    self.loc.clone().with_field(field),
                    code::WRONG_TYPE,
                    format!("options must be an object, a list or `A. ...` text, found {other}"),
                ))
            }
        }
        Ok(out)
    }
}
