//! Located errors. Every problem with user data names the file, the line or record, and the field,
//! and carries a stable reason code so that `skip` mode can count and report it.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in the input a problem was found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based line number, where the format has lines.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub line: Option<u64>,
    /// 0-based record index within the file (array element, CSV row, Arrow row, XML QA pair).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub record: Option<u64>,
    /// Key of the record, for JSON objects of records (PubMedQA's PMIDs).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key: Option<String>,
    /// Source field (input column) or canonical field involved.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
}

impl Location {
    pub fn file(path: &Path) -> Self {
        Location { file: path.to_path_buf(), ..Default::default() }
    }
    pub fn with_line(mut self, line: u64) -> Self {
        self.line = Some(line);
        self
    }
    pub fn with_record(mut self, record: u64) -> Self {
        self.record = Some(record);
        self
    }
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(rec) = self.record {
            write!(f, " (record {rec})")?;
        }
        if let Some(key) = &self.key {
            write!(f, " (key {key:?})")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        Ok(())
    }
}

/// Stable reason codes for rejected input. They appear in `rejects.jsonl` and the manifest.
pub mod code {
    pub const IO: &str = "ingest.io";
    pub const EMPTY_FILE: &str = "ingest.empty_file";
    pub const BAD_UTF8: &str = "ingest.bad_utf8";
    pub const BAD_JSON: &str = "ingest.bad_json";
    pub const TRUNCATED: &str = "ingest.truncated";
    pub const TOO_DEEP: &str = "ingest.too_deep";
    pub const LINE_TOO_LONG: &str = "ingest.line_too_long";
    pub const FIELD_TOO_LARGE: &str = "ingest.field_too_large";
    pub const RAGGED_ROW: &str = "ingest.ragged_row";
    pub const BAD_CSV: &str = "ingest.bad_csv";
    pub const BAD_XML: &str = "ingest.bad_xml";
    pub const XML_ENTITY: &str = "ingest.xml_entity";
    pub const BAD_ARROW: &str = "ingest.bad_arrow";
    pub const WRONG_TYPE: &str = "ingest.wrong_type";
    pub const MISSING_FIELD: &str = "ingest.missing_field";
    pub const BAD_OPTION: &str = "ingest.bad_option";
    pub const ANSWER_NOT_IN_OPTIONS: &str = "ingest.answer_not_in_options";
    pub const BAD_ANSWER: &str = "ingest.bad_answer";
    pub const UNSUPPORTED: &str = "ingest.unsupported";
}

/// A problem with one row (or one file) of user data.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RowError {
    pub location: Location,
    /// Stable reason code, e.g. `ingest.answer_not_in_options`.
    pub code: String,
    pub message: String,
    /// True when the whole rest of the file could not be read (e.g. a JSON syntax error in an array file).
    #[serde(default)]
    pub fatal_for_file: bool,
}

impl RowError {
    pub fn new(location: Location, code: &str, message: impl Into<String>) -> Self {
        RowError { location, code: code.to_string(), message: message.into(), fatal_for_file: false }
    }
    pub fn file_level(location: Location, code: &str, message: impl Into<String>) -> Self {
        RowError { location, code: code.to_string(), message: message.into(), fatal_for_file: true }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} [{}]", self.location, self.message, self.code)
    }
}

impl std::error::Error for RowError {}

/// Errors of the data layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Row(Box<RowError>),
    // The message quotes the source too, so `{e}` alone says what failed; the CLI prints a cause only once.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("{context}: {source}")]
    Write {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl From<RowError> for Error {
    fn from(e: RowError) -> Self {
        Error::Row(Box::new(e))
    }
}

impl Error {
    /// The located row error, if this is one.
    pub fn row(&self) -> Option<&RowError> {
        match self {
            Error::Row(e) => Some(e),
            _ => None,
        }
    }

    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), error: source }
    }
    pub fn write(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Write { context: context.into(), source: Box::new(source) }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
