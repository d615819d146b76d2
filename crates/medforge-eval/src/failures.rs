//! `failed_questions.json` in the MedGemma Korean pipeline's schema: per question the times it failed, the expected
//! and last predicted answer, a preview and the step of its last failure; written as a list, most persistent first.
//! Training loops record every benchmark check into it; the file is read back to continue the history.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// One question's failure history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedQuestion {
    pub question_id: String,
    pub fail_count: usize,
    pub expected: String,
    pub last_predicted: String,
    pub question_preview: String,
    pub last_failed_step: u64,
}

/// Failures across evaluations, by question id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailureTracker {
    by_id: BTreeMap<String, FailedQuestion>,
}

impl FailureTracker {
    /// Continue the history in `path` (empty when the file does not exist).
    pub fn load(path: &Path) -> Result<FailureTracker> {
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

    /// Write every question's history, most persistent first, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let body = serde_json::to_vec_pretty(&self.top(usize::MAX)).map_err(|e| EvalError::json(path, e))?;
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
}
