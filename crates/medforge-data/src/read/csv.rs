//! CSV and TSV, with or without a header, including pandas' leading unnamed index column.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Limits, Payload, RawIter, RawRow};
use crate::error::{code, Location, RowError};

/// CSV dialect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CsvOptions {
    /// Field separator; sniffed from the first line (tab or comma) when unset.
    pub delimiter: Option<char>,
    /// Whether the first row names the columns.
    pub has_header: bool,
    /// Column names for header-less files (MMLU's `question,A,B,C,D,answer`).
    pub columns: Option<Vec<String>>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions { delimiter: None, has_header: true, columns: None }
    }
}

/// Name given to a leading unnamed column (pandas' `to_csv` index).
pub const INDEX_COLUMN: &str = "_index";

pub(super) fn open(file: &Path, opts: &CsvOptions, forced: Option<u8>, limits: &Limits) -> Result<RawIter, RowError> {
    let floc = Location::file(file);
    let bytes = super::read_capped(file, limits)?;
    let delimiter = match (opts.delimiter, forced) {
        (Some(c), _) if c.is_ascii() => c as u8,
        (Some(c), _) => {
            return Err(RowError::file_level(
                floc,
                code::UNSUPPORTED,
                format!("delimiter {c:?} is not an ASCII character"),
            ))
        }
        (None, Some(b)) => b,
        (None, None) => sniff_delimiter(&bytes),
    };
    let rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(std::io::Cursor::new(bytes));
    let mut records = rdr.into_byte_records();

    let header: Vec<String> = if opts.has_header {
        let first = match records.next() {
            None => return Err(RowError::file_level(floc, code::EMPTY_FILE, "file is empty")),
            Some(Err(e)) => return Err(csv_error(&floc, e)),
            Some(Ok(r)) => r,
        };
        let mut names = Vec::with_capacity(first.len());
        for (i, raw) in first.iter().enumerate() {
            let name = std::str::from_utf8(raw).map_err(|_| {
                RowError::file_level(
                    floc.clone().with_line(1),
                    code::BAD_UTF8,
                    format!("header column {i} is not valid UTF-8"),
                )
            })?;
            let name = name.trim_start_matches('\u{feff}').trim();
            let name = if name.is_empty() {
                if i == 0 {
                    INDEX_COLUMN.to_string()
                } else {
                    format!("column_{i}")
                }
            } else {
                name.to_string()
            };
            let unique = if names.contains(&name) { format!("{name}_{i}") } else { name };
            names.push(unique);
        }
        if let Some(cols) = &opts.columns {
            // Explicit names override the header (useful to rename columns).
            for (i, c) in cols.iter().enumerate() {
                if i < names.len() {
                    names[i] = c.clone();
                }
            }
        }
        names
    } else {
        match &opts.columns {
            Some(c) => c.clone(),
            None => Vec::new(), // named column_0.. from the first row's width
        }
    };

    let path = file.to_path_buf();
    let max_field = limits.max_field_bytes;
    let mut header = header;
    let mut index = 0u64;
    let mut saw_row = false;
    let iter = std::iter::from_fn(move || {
        let rec = match records.next() {
            None => {
                if !saw_row && !opts_has_rows_ok(&header) {
                    saw_row = true;
                    return Some(Err(RowError::file_level(
                        Location::file(&path),
                        code::EMPTY_FILE,
                        "file holds no rows",
                    )));
                }
                return None;
            }
            Some(Err(e)) => return Some(Err(csv_error(&Location::file(&path), e))),
            Some(Ok(r)) => r,
        };
        saw_row = true;
        let line = rec.position().map_or(0, |p| p.line());
        let loc = Location::file(&path).with_line(line).with_record(index);
        index += 1;
        if header.is_empty() {
            header = (0..rec.len()).map(|i| format!("column_{i}")).collect();
        }
        if rec.len() != header.len() {
            return Some(Err(RowError::new(
                loc,
                code::RAGGED_ROW,
                format!(
                    "row has {} fields but the header has {} (unbalanced quotes or a stray delimiter?)",
                    rec.len(),
                    header.len()
                ),
            )));
        }
        let mut map = Map::with_capacity(header.len());
        for (name, raw) in header.iter().zip(rec.iter()) {
            if raw.len() > max_field {
                return Some(Err(RowError::new(
                    loc.with_field(name.clone()),
                    code::FIELD_TOO_LARGE,
                    format!("value is {} bytes, over the {max_field}-byte limit (limits.max_field_bytes)", raw.len()),
                )));
            }
            match std::str::from_utf8(raw) {
                Ok(s) => {
                    map.insert(name.clone(), Value::String(s.to_string()));
                }
                Err(e) => {
                    return Some(Err(RowError::new(
                        loc.with_field(name.clone()),
                        code::BAD_UTF8,
                        format!("invalid UTF-8 at byte {} of the value; re-encode the file as UTF-8", e.valid_up_to()),
                    )))
                }
            }
        }
        Some(Ok(RawRow { location: loc, payload: Payload::Fields(map) }))
    });
    Ok(Box::new(iter))
}

// A header-only file is a valid, empty table; only a file with neither header nor rows is "empty".
fn opts_has_rows_ok(header: &[String]) -> bool {
    !header.is_empty()
}

fn csv_error(floc: &Location, e: csv::Error) -> RowError {
    let line = e.position().map(|p| p.line());
    let mut loc = floc.clone();
    loc.line = line;
    RowError::new(loc, code::BAD_CSV, format!("malformed CSV: {e}"))
}

/// Pick tab or comma by which is more frequent on the first line.
fn sniff_delimiter(bytes: &[u8]) -> u8 {
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let tabs = first.iter().filter(|&&b| b == b'\t').count();
    let commas = first.iter().filter(|&&b| b == b',').count();
    if tabs > commas {
        b'\t'
    } else {
        b','
    }
}
