//! JSON Lines. Lines are read sequentially and parsed later, in parallel, by the ingest step.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::{Map, Value};

use super::{check_utf8, Limits, Payload, RawIter, RawRow};
use crate::error::{code, Location, RowError};

pub(super) fn open(file: &Path, limits: &Limits) -> Result<RawIter, RowError> {
    let f = File::open(file).map_err(|e| RowError::file_level(Location::file(file), code::IO, e.to_string()))?;
    let empty = f.metadata().map(|m| m.len() == 0).unwrap_or(false);
    if empty {
        return Err(RowError::file_level(Location::file(file), code::EMPTY_FILE, "file is empty"));
    }
    Ok(Box::new(JsonlIter {
        path: file.to_path_buf(),
        reader: BufReader::with_capacity(1 << 20, f),
        line: 0,
        record: 0,
        max_line: limits.max_line_bytes,
        done: false,
        saw_row: false,
    }))
}

struct JsonlIter {
    path: std::path::PathBuf,
    reader: BufReader<File>,
    line: u64,
    record: u64,
    max_line: usize,
    done: bool,
    saw_row: bool,
}

enum Line {
    Eof,
    Ok(Vec<u8>),
    TooLong(usize),
}

impl JsonlIter {
    /// Read one line without ever holding more than `max_line` bytes of it.
    fn read_line(&mut self) -> std::io::Result<Line> {
        let mut buf = Vec::new();
        let mut too_long = 0usize;
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                if buf.is_empty() && too_long == 0 {
                    return Ok(Line::Eof);
                }
                break;
            }
            let (take, found) = match memchr(chunk) {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if too_long > 0 || buf.len() + take > self.max_line {
                too_long += take;
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
            self.reader.consume(take);
            if found {
                break;
            }
        }
        if too_long > 0 {
            return Ok(Line::TooLong(buf.len() + too_long));
        }
        Ok(Line::Ok(buf))
    }
}

/// Position of the first `\n`. Scans 32-byte blocks with a branch-free test the compiler vectorises;
/// a byte-at-a-time `position` was a visible share of a large convert (every input byte passes here).
fn memchr(b: &[u8]) -> Option<usize> {
    let mut blocks = b.chunks_exact(32);
    let mut base = 0;
    for block in blocks.by_ref() {
        if block.iter().fold(false, |any, &c| any | (c == b'\n')) {
            return block.iter().position(|&c| c == b'\n').map(|i| base + i);
        }
        base += 32;
    }
    blocks.remainder().iter().position(|&c| c == b'\n').map(|i| base + i)
}

impl Iterator for JsonlIter {
    type Item = Result<RawRow, RowError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            self.line += 1;
            let loc = Location::file(&self.path).with_line(self.line);
            match self.read_line() {
                Err(e) => {
                    self.done = true;
                    return Some(Err(RowError::file_level(loc, code::IO, e.to_string())));
                }
                Ok(Line::Eof) => {
                    self.done = true;
                    if !self.saw_row {
                        return Some(Err(RowError::file_level(
                            Location::file(&self.path),
                            code::EMPTY_FILE,
                            "file holds no JSON lines",
                        )));
                    }
                    return None;
                }
                Ok(Line::TooLong(n)) => {
                    self.saw_row = true;
                    let loc = loc.with_record(self.record);
                    self.record += 1;
                    return Some(Err(RowError::new(
                        loc,
                        code::LINE_TOO_LONG,
                        format!("line is {n} bytes, over the {}-byte limit (limits.max_line_bytes)", self.max_line),
                    )));
                }
                Ok(Line::Ok(bytes)) => {
                    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
                        continue;
                    }
                    self.saw_row = true;
                    let loc = loc.with_record(self.record);
                    self.record += 1;
                    return Some(Ok(RawRow { location: loc, payload: Payload::JsonLine(bytes) }));
                }
            }
        }
    }
}

/// Parse one JSON line into an object, classifying failures.
pub(crate) fn parse_line(bytes: &[u8], loc: &Location) -> Result<Map<String, Value>, RowError> {
    let line = loc.line.unwrap_or(1);
    let mut text = check_utf8(bytes, loc, line)?;
    if loc.record == Some(0) {
        text = super::strip_bom(text);
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(RowError::new(
            loc.clone(),
            code::WRONG_TYPE,
            format!("expected a JSON object on each line, found {}", json_type(&other)),
        )),
        Err(e) => Err(classify_json_error(&e, loc.clone())),
    }
}

pub(crate) fn classify_json_error(e: &serde_json::Error, loc: Location) -> RowError {
    let msg = e.to_string();
    let code = if msg.contains("recursion limit") {
        code::TOO_DEEP
    } else if e.classify() == serde_json::error::Category::Eof {
        code::TRUNCATED
    } else {
        code::BAD_JSON
    };
    let hint = match code {
        code::TRUNCATED => " (the JSON ends early: truncated file or an unclosed bracket?)",
        code::TOO_DEEP => " (nesting deeper than 128 levels is refused)",
        _ => "",
    };
    RowError::new(loc, code, format!("invalid JSON at column {}: {msg}{hint}", e.column()))
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::memchr;

    #[test]
    fn memchr_finds_the_first_newline_at_any_offset() {
        for len in [0usize, 1, 31, 32, 33, 64, 100] {
            let mut b = vec![b'x'; len];
            assert_eq!(memchr(&b), None, "len {len}");
            for at in 0..len {
                b[at] = b'\n';
                assert_eq!(memchr(&b), Some(at), "len {len}, at {at}");
                if at + 1 < len {
                    b[len - 1] = b'\n';
                    assert_eq!(memchr(&b), Some(at), "two newlines, len {len}, at {at}");
                    b[len - 1] = b'x';
                }
                b[at] = b'x';
            }
        }
    }
}
