//! Quality: required fields, empty and placeholder values, lengths, and multiple-choice consistency.

use std::collections::BTreeMap;

use medforge_data::{Record, RecordKind};
use serde::{Deserialize, Serialize};

use crate::stage::{Decision, Stage, StageContext, StageOutput, StageResult};

/// `[[stages]] stage = "quality"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityConfig {
    /// Fields every row must have. Empty means the defaults per kind: question and answer (or
    /// response) for open QA and dialogue; question, options and answer_letter for MCQ; question,
    /// chosen and rejected for preference pairs.
    pub required: Vec<String>,
    /// Minimum length in characters, per field.
    pub min_chars: BTreeMap<String, usize>,
    /// Maximum length in characters, per field.
    pub max_chars: BTreeMap<String, usize>,
    /// Values that mean "no value" (compared trimmed, case-insensitively).
    pub placeholders: Vec<String>,
    /// For MCQ: the number of options every row must have.
    pub expected_options: Option<usize>,
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            required: Vec::new(),
            min_chars: BTreeMap::new(),
            max_chars: BTreeMap::new(),
            placeholders: ["nan", "none", "null", "n/a", "na", "-", "...", "undefined", "[deleted]"]
                .map(String::from)
                .to_vec(),
            expected_options: None,
        }
    }
}

pub struct Quality {
    cfg: QualityConfig,
    placeholders: Vec<String>,
}

impl Quality {
    pub fn new(cfg: QualityConfig) -> Self {
        let placeholders = cfg.placeholders.iter().map(|p| p.trim().to_lowercase()).collect();
        Quality { cfg, placeholders }
    }

    fn default_required(kind: RecordKind) -> &'static [&'static str] {
        match kind {
            RecordKind::OpenQa | RecordKind::Dialogue => &["question", "answer"],
            RecordKind::Mcq => &["question", "options", "answer_letter"],
            RecordKind::Preference => &["question", "chosen", "rejected"],
        }
    }

    /// The raw value of a field: `None` when absent, `Some("")` when present but empty.
    fn value<'a>(r: &'a Record, field: &str) -> Option<&'a str> {
        match field {
            "id" => Some(&r.id),
            "question" => Some(&r.question),
            "context" => r.context.as_deref(),
            "answer_letter" => r.answer_letter.as_deref(),
            // An open answer may live in `answer` or, for reasoning datasets, in `response`.
            "answer" => r.answer.as_deref().or(r.response.as_deref()),
            "reasoning" => r.reasoning.as_deref(),
            "response" => r.response.as_deref(),
            "chosen" => r.chosen.as_deref(),
            "rejected" => r.rejected.as_deref(),
            "specialty" => r.specialty.as_deref(),
            "division" => r.division.as_deref(),
            "language" => r.language.as_deref(),
            "options" => (!r.options.is_empty()).then_some("options"),
            _ => None,
        }
    }

    pub fn check(&self, r: &Record) -> Decision {
        let defaults: Vec<String>;
        let required: &[String] = if self.cfg.required.is_empty() {
            defaults = Self::default_required(r.kind).iter().map(|s| s.to_string()).collect();
            &defaults
        } else {
            &self.cfg.required
        };
        for f in required {
            match Self::value(r, f) {
                None => return Decision::drop(format!("quality.missing_field:{f}")),
                Some(v) if v.trim().is_empty() => return Decision::drop(format!("quality.empty:{f}")),
                Some(v) if self.placeholders.iter().any(|p| p == &v.trim().to_lowercase()) => {
                    return Decision::drop(format!("quality.placeholder:{f}"))
                }
                _ => {}
            }
        }
        for (f, min) in &self.cfg.min_chars {
            if let Some(v) = Self::value(r, f) {
                if v.trim().chars().count() < *min {
                    return Decision::drop(format!("quality.too_short:{f}"));
                }
            }
        }
        for (f, max) in &self.cfg.max_chars {
            if let Some(v) = Self::value(r, f) {
                if v.chars().count() > *max {
                    return Decision::drop(format!("quality.too_long:{f}"));
                }
            }
        }
        if r.kind == RecordKind::Mcq {
            let mut seen = std::collections::HashSet::new();
            for o in &r.options {
                if o.text.trim().is_empty() {
                    return Decision::drop(format!("quality.empty_option:{}", o.letter));
                }
                if !seen.insert(o.text.trim().to_lowercase()) {
                    return Decision::drop("quality.duplicate_options");
                }
            }
            if let Some(l) = &r.answer_letter {
                if r.option_text(l).is_none() {
                    return Decision::drop("quality.answer_not_in_options");
                }
            }
            if let Some(n) = self.cfg.expected_options {
                if r.options.len() != n {
                    return Decision::drop(format!("quality.option_count:{}", r.options.len()));
                }
            }
        }
        Decision::keep()
    }
}

impl Stage for Quality {
    fn name(&self) -> &str {
        "quality"
    }

    fn run(&mut self, rows: &mut [Record], ctx: &StageContext) -> StageResult<StageOutput> {
        use rayon::prelude::*;
        let decisions: Vec<Decision> = rows.par_iter().map(|r| self.check(r)).collect();
        (ctx.progress)(rows.len() as u64, rows.len() as u64);
        Ok(StageOutput::new(decisions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medforge_data::McqOption;

    fn mcq(opts: &[&str], ans: Option<&str>) -> Record {
        let mut r = Record::new("1", "t", RecordKind::Mcq, "Which drug?");
        r.options = opts
            .iter()
            .enumerate()
            .map(|(i, t)| McqOption { letter: ((b'A' + i as u8) as char).to_string(), text: t.to_string() })
            .collect();
        r.answer_letter = ans.map(String::from);
        r
    }

    fn reason(q: &Quality, r: &Record) -> Option<String> {
        q.check(r).reason
    }

    #[test]
    fn mcq_consistency() {
        let q = Quality::new(QualityConfig { expected_options: Some(4), ..Default::default() });
        assert_eq!(reason(&q, &mcq(&["a", "b", "c", "d"], Some("B"))), None);
        assert_eq!(
            reason(&q, &mcq(&["a", "b", "c", "d"], None)).as_deref(),
            Some("quality.missing_field:answer_letter")
        );
        assert_eq!(
            reason(&q, &mcq(&["a", "b", "c", "d"], Some("E"))).as_deref(),
            Some("quality.answer_not_in_options")
        );
        assert_eq!(reason(&q, &mcq(&["a", "b", "A ", "d"], Some("B"))).as_deref(), Some("quality.duplicate_options"));
        assert_eq!(reason(&q, &mcq(&["a", "b", "c"], Some("B"))).as_deref(), Some("quality.option_count:3"));
    }

    #[test]
    fn placeholders_empty_and_lengths() {
        let mut cfg = QualityConfig::default();
        cfg.min_chars.insert("question".into(), 5);
        cfg.max_chars.insert("answer".into(), 10);
        let q = Quality::new(cfg);
        let mut r = Record::new("1", "t", RecordKind::Dialogue, "I have a headache");
        assert_eq!(reason(&q, &r).as_deref(), Some("quality.missing_field:answer"));
        r.answer = Some("  ".into());
        assert_eq!(reason(&q, &r).as_deref(), Some("quality.empty:answer"));
        r.answer = Some("NaN".into());
        assert_eq!(reason(&q, &r).as_deref(), Some("quality.placeholder:answer"));
        r.answer = Some("Rest well.".into());
        assert_eq!(reason(&q, &r), None);
        r.answer = Some("Rest well and drink water.".into());
        assert_eq!(reason(&q, &r).as_deref(), Some("quality.too_long:answer"));
        r.answer = Some("Rest.".into());
        r.question = "Hi".into();
        assert_eq!(reason(&q, &r).as_deref(), Some("quality.too_short:question"));
    }

    #[test]
    fn response_counts_as_an_open_answer() {
        let q = Quality::new(QualityConfig::default());
        let mut r = Record::new("1", "t", RecordKind::OpenQa, "Why?");
        r.response = Some("Because.".into());
        assert_eq!(reason(&q, &r), None);
    }
}
