//! Normalisation (optional): NFKC, whitespace collapse, and MedQuAD's "What is (are) X ?" spacing.
//! The raw text of every changed field is kept under `metadata.raw`.

use medforge_data::Record;
use medforge_text::normalize::{collapse_whitespace, fix_question_spacing, nfkc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fields::{check_fields, text_mut};
use crate::stage::{Decision, Stage, StageContext, StageOutput, StageResult};

/// `[[stages]] stage = "normalize"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizeConfig {
    /// Fields to normalise. Long-form fields (reasoning, response) keep their line breaks only if
    /// `collapse_whitespace` is off, so they are not in the default list.
    pub fields: Vec<String>,
    pub nfkc: bool,
    pub collapse_whitespace: bool,
    pub fix_question_spacing: bool,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        NormalizeConfig {
            fields: ["question", "options", "answer"].map(String::from).to_vec(),
            nfkc: true,
            collapse_whitespace: true,
            fix_question_spacing: true,
        }
    }
}

pub struct Normalize {
    cfg: NormalizeConfig,
}

impl Normalize {
    pub fn new(cfg: NormalizeConfig) -> Result<Self, crate::StageError> {
        check_fields("normalize", &cfg.fields)?;
        Ok(Normalize { cfg })
    }

    fn apply(&self, text: &str) -> String {
        let mut t = if self.cfg.nfkc { nfkc(text).into_owned() } else { text.to_string() };
        if self.cfg.collapse_whitespace {
            t = collapse_whitespace(&t);
        }
        if self.cfg.fix_question_spacing {
            t = fix_question_spacing(&t);
        }
        t
    }

    /// Normalise one record; returns how many fields changed.
    pub fn normalize(&self, r: &mut Record) -> usize {
        let mut raw = serde_json::Map::new();
        for f in &self.cfg.fields {
            if f == "options" {
                for o in &mut r.options {
                    let new = self.apply(&o.text);
                    if new != o.text {
                        raw.insert(format!("options.{}", o.letter), Value::String(std::mem::replace(&mut o.text, new)));
                    }
                }
            } else if let Some(t) = text_mut(r, f) {
                let new = self.apply(t);
                if &new != t {
                    raw.insert(f.clone(), Value::String(std::mem::replace(t, new)));
                }
            }
        }
        let n = raw.len();
        if n > 0 {
            match r.metadata.get_mut("raw") {
                Some(Value::Object(existing)) => existing.extend(raw),
                _ => {
                    r.metadata.insert("raw".into(), Value::Object(raw));
                }
            }
        }
        n
    }
}

impl Stage for Normalize {
    fn name(&self) -> &str {
        "normalize"
    }

    fn run(&mut self, rows: &mut [Record], ctx: &StageContext) -> StageResult<StageOutput> {
        use rayon::prelude::*;
        let changed: Vec<usize> = rows.par_iter_mut().map(|r| self.normalize(r)).collect();
        (ctx.progress)(rows.len() as u64, rows.len() as u64);
        let decisions =
            changed.iter().map(|&n| Decision::keep().with_score("normalize.fields_changed", n as f64)).collect();
        let report = serde_json::json!({
            "rows": rows.len(),
            "rows_changed": changed.iter().filter(|&&n| n > 0).count(),
            "fields_changed": changed.iter().sum::<usize>(),
        });
        Ok(StageOutput::new(decisions).with_report("normalize_report.json", report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medforge_data::{McqOption, RecordKind};

    #[test]
    fn normalises_and_keeps_raw_text() {
        let n = Normalize::new(NormalizeConfig::default()).unwrap();
        let mut r = Record::new("1", "t", RecordKind::Mcq, "What is (are)  Asthma ?");
        r.options = vec![McqOption { letter: "A".into(), text: "백혈구 10～20".into() }];
        assert_eq!(n.normalize(&mut r), 2);
        assert_eq!(r.question, "What is (are) Asthma?");
        assert_eq!(r.options[0].text, "백혈구 10~20");
        assert_eq!(r.metadata["raw"]["question"], "What is (are)  Asthma ?");
        assert_eq!(r.metadata["raw"]["options.A"], "백혈구 10～20");
        assert_eq!(n.normalize(&mut r), 0, "idempotent");
    }
}
