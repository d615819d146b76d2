//! Dead letters: rows that finally failed, one JSON line each in `failed.jsonl`, with the reason
//! code, so `medforge retry-failed RUN_DIR` can re-run only those.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The conventional file name in a run folder.
pub const FAILED_FILE: &str = "failed.jsonl";

/// One failed row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The record's `id`.
    pub row_id: String,
    pub stage: String,
    /// Stable reason code, e.g. `llm.timeout`, `llm.invalid_response`.
    pub code: String,
    pub reason: String,
}

/// Appends dead letters; each line is written and flushed at once, so a killed run keeps them.
#[derive(Debug)]
pub struct DeadLetterWriter {
    path: PathBuf,
    file: Mutex<File>,
}

impl DeadLetterWriter {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(DeadLetterWriter { path: path.to_path_buf(), file: Mutex::new(file) })
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn write(&self, letter: &DeadLetter) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(letter).map_err(std::io::Error::from)?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(&line)?;
        f.flush()
    }
}

/// Read a dead-letter file (a missing file is an empty list).
pub fn read_dead_letters(path: &Path) -> std::io::Result<Vec<DeadLetter>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}:{}: {e}", path.display(), i + 1))
        })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FAILED_FILE);
        assert!(read_dead_letters(&p).unwrap().is_empty());
        let l =
            DeadLetter { row_id: "r1".into(), stage: "label".into(), code: "llm.timeout".into(), reason: "x".into() };
        DeadLetterWriter::open(&p).unwrap().write(&l).unwrap();
        DeadLetterWriter::open(&p).unwrap().write(&DeadLetter { row_id: "r2".into(), ..l.clone() }).unwrap();
        let got = read_dead_letters(&p).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], l);
        assert_eq!(got[1].row_id, "r2");
    }
}
