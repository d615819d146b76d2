//! `failed_questions.json` in the MedGemma Korean pipeline's schema: per question the times it failed, the expected
//! and last predicted answer, a preview and the step of its last failure; the top 10 persistent failures, most
//! persistent first, as that pipeline writes them. The whole history goes beside it into
//! `failed_questions_history.json` (same schema, every question), which is what is read back to continue it across
//! steps and runs. Training loops and `medforge eval --failures` record every check into it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// The file beside `failed_questions.json` that keeps every question's history.
pub const HISTORY_FILE: &str = "failed_questions_history.json";

/// How many questions `failed_questions.json` lists (the MedGemma Korean pipeline's top 10).
pub const TOP: usize = 10;

/// One question's failure history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedQuestion {
    /// Written as a number when the id is one (the pipeline's question index), else as a string.
    #[serde(serialize_with = "id_out", deserialize_with = "id_in")]
    pub question_id: String,
    pub fail_count: usize,
    pub expected: String,
    pub last_predicted: String,
    pub question_preview: String,
    pub last_failed_step: u64,
}

fn id_out<S: serde::Serializer>(id: &str, s: S) -> std::result::Result<S::Ok, S::Error> {
    match id.parse::<u64>() {
        Ok(n) if n.to_string() == id => s.serialize_u64(n),
        _ => s.serialize_str(id),
    }
}

fn id_in<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!("question_id: expected a number or a string, found {other}"))),
    }
}

/// Failures across evaluations, by question id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailureTracker {
    by_id: BTreeMap<String, FailedQuestion>,
}

impl FailureTracker {
    /// Continue the history of the `failed_questions.json` at `path`: its history file beside it when there is one,
    /// else the file itself (which may have been cut to the top 10); empty when neither exists.
    pub fn load(path: &Path) -> Result<FailureTracker> {
        let history = path.with_file_name(HISTORY_FILE);
        let path = if history.exists() { history.as_path() } else { path };
        if !path.exists() {
            return Ok(FailureTracker::default());
        }
        let bytes = std::fs::read(path).map_err(|e| EvalError::io(path, e))?;
        let list: Vec<FailedQuestion> = serde_json::from_slice(&bytes).map_err(|e| EvalError::json(path, e))?;
        Ok(FailureTracker { by_id: list.into_iter().map(|q| (q.question_id.clone(), q)).collect() })
    }

    /// Record one failed answer at `step`.
    pub fn record(&mut self, id: &str, expected: &str, predicted: &str, preview: &str, step: u64) {
        let e = self.by_id.entry(id.to_string()).or_insert_with(|| FailedQuestion {
            question_id: id.to_string(),
            fail_count: 0,
            expected: expected.to_string(),
            last_predicted: String::new(),
            question_preview: preview.to_string(),
            last_failed_step: step,
        });
        e.fail_count += 1;
        e.last_predicted = predicted.to_string();
        e.last_failed_step = step;
    }

    /// The `n` most persistent failures: most failures first, then the most recent.
    pub fn top(&self, n: usize) -> Vec<FailedQuestion> {
        let mut v: Vec<FailedQuestion> = self.by_id.values().cloned().collect();
        v.sort_by(|a, b| b.fail_count.cmp(&a.fail_count).then(b.last_failed_step.cmp(&a.last_failed_step)));
        v.truncate(n);
        v
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Write the top 10 to `path` and every question's history to the history file beside it (history first, so
    /// a crash between the two loses nothing), atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let history = path.with_file_name(HISTORY_FILE);
        let body = serde_json::to_vec_pretty(&self.top(usize::MAX)).map_err(|e| EvalError::json(&history, e))?;
        medforge_data::write::write_atomic(&history, &body)?;
        let body = serde_json::to_vec_pretty(&self.top(TOP)).map_err(|e| EvalError::json(path, e))?;
        medforge_data::write::write_atomic(path, &body)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_accumulates_ranks_and_round_trips() {
        let mut t = FailureTracker::default();
        t.record("q1", "B", "C", "A patient…", 10);
        t.record("q2", "A", "D", "Another…", 10);
        t.record("q1", "B", "A", "A patient…", 20);
        let top = t.top(10);
        assert_eq!(top[0].question_id, "q1");
        assert_eq!(top[0].fail_count, 2);
        assert_eq!(top[0].last_predicted, "A");
        assert_eq!(top[0].last_failed_step, 20);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("failed_questions.json");
        t.write(&p).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(v[0]["question_id"], "q1");
        assert_eq!(v[0]["fail_count"], 2);
        assert_eq!(FailureTracker::load(&p).unwrap(), t);
    }

    /// The pipeline's file lists the top 10 (numeric ids as numbers); the history keeps everyone and continues.
    #[test]
    fn top_ten_in_the_file_everyone_in_the_history() {
        let mut t = FailureTracker::default();
        for i in 0..15u64 {
            for step in 0..=i {
                t.record(&i.to_string(), "A", "B", "…", step);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("failed_questions.json");
        t.write(&p).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 10);
        assert_eq!(v[0]["question_id"], 14, "a number, like the pipeline's question index");
        assert_eq!(v[0]["fail_count"], 15);
        let mut back = FailureTracker::load(&p).unwrap();
        assert_eq!(back.len(), 15, "read from the history");
        back.record("3", "A", "C", "…", 99);
        assert_eq!(back.top(1)[0].question_id, "14");
        assert_eq!(back.by_id["3"].fail_count, 5);
    }
}
