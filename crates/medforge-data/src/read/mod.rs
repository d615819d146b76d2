//! Readers turn files into [`RawRow`]s: a source-shaped map of fields plus the row's location.
//! Mapping raw rows onto the canonical [`Record`](crate::Record) happens in [`crate::mapping`].

mod arrow;
mod csv;
mod json;
mod jsonl;
mod medquad;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{code, Location, RowError};
use crate::record::Record;

pub use self::arrow::{arrow_value_rows, is_hf_dataset_dir};
pub use self::csv::CsvOptions;

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// A JSON array of records, or an object of records keyed by id.
    Json,
    /// Comma- (or tab-) separated values; see [`CsvOptions`].
    Csv,
    /// Tab-separated values.
    Tsv,
    Parquet,
    /// A Hugging Face `save_to_disk` folder (`state.json` + `data-*.arrow` IPC streams).
    HfDataset,
    /// The MedQuAD XML tree (a folder of `<Document>` files, searched recursively).
    MedquadXml,
}

impl Format {
    pub const NAMES: [&'static str; 7] = ["jsonl", "json", "csv", "tsv", "parquet", "hf_dataset", "medquad_xml"];

    /// Guess the format of a path from its extension or folder contents.
    pub fn detect(path: &Path) -> Option<Format> {
        if path.is_dir() {
            if is_hf_dataset_dir(path) {
                return Some(Format::HfDataset);
            }
            // A folder of files: take the format of the first data file in it.
            return list_files(path, None).ok()?.iter().find_map(|f| Format::detect(f));
        }
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "jsonl" | "ndjson" => Format::Jsonl,
            "json" => Format::Json,
            "csv" => Format::Csv,
            "tsv" | "tab" => Format::Tsv,
            "parquet" | "pq" => Format::Parquet,
            "arrow" => Format::HfDataset,
            "xml" => Format::MedquadXml,
            _ => return None,
        })
    }

    fn extensions(self) -> &'static [&'static str] {
        match self {
            Format::Jsonl => &["jsonl", "ndjson"],
            Format::Json => &["json"],
            Format::Csv => &["csv"],
            Format::Tsv => &["tsv", "tab"],
            Format::Parquet => &["parquet", "pq"],
            Format::HfDataset => &["arrow"],
            Format::MedquadXml => &["xml"],
        }
    }
}

/// Limits that keep hostile or broken input from exhausting memory.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest accepted JSONL line, in bytes.
    pub max_line_bytes: usize,
    /// Longest accepted single text field, in bytes.
    pub max_field_bytes: usize,
    /// Largest whole-file document (JSON, XML), in bytes.
    pub max_file_bytes: u64,
    /// Deepest accepted element nesting (XML; JSON uses serde_json's limit of 128).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_line_bytes: 64 << 20, max_field_bytes: 8 << 20, max_file_bytes: 2 << 30, max_depth: 64 }
    }
}

/// How to read one input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadOptions {
    pub format: Option<Format>,
    pub csv: CsvOptions,
    pub limits: Limits,
    /// For folders: only read files whose name contains this string (e.g. `test` or `dataset_with_answers_`).
    pub file_filter: Option<String>,
}

/// The payload of a raw row: parsed fields, an unparsed JSON line (parsed later, in parallel), or a
/// row that is already a canonical record (medforge's own Parquet/HF outputs).
#[derive(Debug, Clone)]
pub enum Payload {
    Fields(Map<String, Value>),
    JsonLine(Vec<u8>),
    Record(Box<Record>),
}

/// A parsed row: source fields, or a record that needs no mapping.
#[derive(Debug, Clone)]
pub enum RowContent {
    Fields(Map<String, Value>),
    Record(Box<Record>),
}

/// One source row with its location.
#[derive(Debug, Clone)]
pub struct RawRow {
    pub location: Location,
    pub payload: Payload,
}

impl RawRow {
    /// Parse a deferred JSON line, giving the row's fields (or its ready record).
    pub fn into_content(self) -> Result<(Location, RowContent), RowError> {
        match self.payload {
            Payload::Fields(m) => Ok((self.location, RowContent::Fields(m))),
            Payload::Record(r) => Ok((self.location, RowContent::Record(r))),
            Payload::JsonLine(bytes) => {
                let map = jsonl::parse_line(&bytes, &self.location)?;
                Ok((self.location, RowContent::Fields(map)))
            }
        }
    }
}

pub type RawIter = Box<dyn Iterator<Item = Result<RawRow, RowError>> + Send>;

/// Files that make up an input path: the path itself, or the sorted data files of a folder.
pub fn list_files(path: &Path, format: Option<Format>) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let ext = p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
                let keep = match (format, ext.as_deref()) {
                    (_, None) => false,
                    (Some(f), Some(e)) => f.extensions().contains(&e),
                    (None, Some(e)) => ["jsonl", "ndjson", "json", "csv", "tsv", "parquet", "xml"].contains(&e),
                };
                if keep {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Open a path as a stream of raw rows.
pub fn open(path: &Path, opts: &ReadOptions) -> Result<RawIter, RowError> {
    if !path.exists() {
        return Err(RowError::file_level(
            Location::file(path),
            code::IO,
            "no such file or folder (check the path, relative paths resolve from the current directory)",
        ));
    }
    // A Parquet file or an HF dataset folder is read as such whatever the preset's usual format: a
    // MedQA-shaped dataset saved by `datasets` is still MedQA.
    let detected = Format::detect(path);
    let container = matches!(detected, Some(Format::Parquet | Format::HfDataset));
    let format = match if container { detected } else { opts.format.or(detected) } {
        Some(f) => f,
        None => {
            return Err(RowError::file_level(
                Location::file(path),
                code::UNSUPPORTED,
                format!("cannot tell the format from the name; set `format` to one of {}", Format::NAMES.join(", ")),
            ))
        }
    };
    if format == Format::HfDataset && path.is_dir() {
        return arrow::open_hf_dataset(path);
    }
    let mut files = list_files(path, Some(format))
        .map_err(|e| RowError::file_level(Location::file(path), code::IO, e.to_string()))?;
    if let Some(filter) = &opts.file_filter {
        files.retain(|f| f.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(filter.as_str())));
    }
    if files.is_empty() {
        return Err(RowError::file_level(
            Location::file(path),
            code::EMPTY_FILE,
            format!("folder holds no {format:?} files"),
        ));
    }
    let opts = opts.clone();
    let iter = files.into_iter().flat_map(move |file| -> RawIter {
        match open_file(&file, format, &opts) {
            Ok(it) => it,
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    });
    Ok(Box::new(iter))
}

fn open_file(file: &Path, format: Format, opts: &ReadOptions) -> Result<RawIter, RowError> {
    match format {
        Format::Jsonl => jsonl::open(file, &opts.limits),
        Format::Json => json::open(file, &opts.limits),
        Format::Csv => csv::open(file, &opts.csv, None, &opts.limits),
        Format::Tsv => csv::open(file, &opts.csv, Some(b'\t'), &opts.limits),
        Format::Parquet => arrow::open_parquet(file),
        Format::HfDataset => arrow::open_arrow_file(file),
        Format::MedquadXml => medquad::open(file, &opts.limits),
    }
}

/// Read a whole file with the size limit, reporting an empty file as an error.
pub(crate) fn read_capped(file: &Path, limits: &Limits) -> Result<Vec<u8>, RowError> {
    let loc = || Location::file(file);
    let meta = std::fs::metadata(file).map_err(|e| RowError::file_level(loc(), code::IO, e.to_string()))?;
    if meta.len() > limits.max_file_bytes {
        return Err(RowError::file_level(
            loc(),
            code::FIELD_TOO_LARGE,
            format!(
                "file is {} bytes, over the {}-byte limit (limits.max_file_bytes)",
                meta.len(),
                limits.max_file_bytes
            ),
        ));
    }
    let bytes = std::fs::read(file).map_err(|e| RowError::file_level(loc(), code::IO, e.to_string()))?;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(RowError::file_level(loc(), code::EMPTY_FILE, "file is empty"));
    }
    Ok(bytes)
}

/// Check UTF-8, naming the line and column of the first bad byte.
pub(crate) fn check_utf8<'a>(bytes: &'a [u8], loc: &Location, first_line: u64) -> Result<&'a str, RowError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let upto = &bytes[..e.valid_up_to()];
        let line = first_line + upto.iter().filter(|&&b| b == b'\n').count() as u64;
        let col = upto.len() - upto.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
        RowError::new(
            loc.clone().with_line(line),
            code::BAD_UTF8,
            format!("invalid UTF-8 at column {col} (byte {}); re-encode the file as UTF-8", e.valid_up_to()),
        )
    })
}

fn strip_bom(s: &str) -> &str {
    s.strip_prefix('\u{feff}').unwrap_or(s)
}
