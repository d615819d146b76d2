//! `training_recommendations.json`: what an evaluation recommends for the next training round, in the Meerkat
//! progressive pipeline's format. `medforge eval`/`report` write it ([`Recommendations`] built from results) and
//! `medforge split update` reads it ([`Recommendations::targets`]); this module owns the file.
//!
//! The Meerkat pipeline's document gives the file as
//! `{low_performance_specialties: [..], recommended_sample_increases: {specialty: share}, overall_improvement: {..}}`,
//! where a share is the specialty's new training percentage (`0.8` = draw 80% of its non-holdout rows), the value
//! its `update_training_data` takes. Those three keys are the file's primary form. The older per-specialty form
//! (`low_performing_specialties` objects and `recommended_actions`, medforge's richer report) is read too; a file
//! with neither is an error, never a silent no-op.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// A recommended increase as the report writes it: a fraction (`0.5` = +50%) or text such as
/// `"50-80%"`, `"30%"`, `"+0.4"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Increase {
    Fraction(f64),
    Text(String),
}

impl Increase {
    /// The increase as a fraction. Numbers are fractions; text with `%` is a percentage; a range
    /// (`"50-80%"`, `"30 to 50%"`) counts as its midpoint, the report's point estimate between a
    /// cautious and an aggressive increase. `None` when unparseable.
    pub fn fraction(&self) -> Option<f64> {
        match self {
            Increase::Fraction(f) => f.is_finite().then_some(*f),
            Increase::Text(s) => parse_increase(s),
        }
    }
}

fn parse_increase(s: &str) -> Option<f64> {
    let t = s.trim();
    let pct = t.contains('%');
    let t = t.replace('%', "");
    let t = t.trim();
    let num = |x: &str| x.trim().trim_start_matches('+').trim().parse::<f64>().ok().filter(|v| v.is_finite());
    let v = num(t).or_else(|| {
        // A range; skip the first character so a leading sign is not taken for the separator.
        let body = t.get(1..)?;
        let (a, b) = body
            .split_once(" to ")
            .or_else(|| body.split_once('-'))
            .or_else(|| body.split_once('–'))
            .map(|(a, b)| (format!("{}{a}", &t[..1]), b.to_string()))?;
        Some((num(&a)? + num(&b)?) / 2.0)
    })?;
    Some(if pct { v / 100.0 } else { v })
}

/// One entry of `low_performing_specialties`.
///
/// The Meerkat pipeline writes `{specialty, medical_entity_f1, sample_count, improvement}`; the other fields are
/// medforge's extension for reports that state the size they want (`recommended_samples`, an absolute
/// train size) or an increase per specialty (`recommended_increase`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LowPerformingSpecialty {
    pub specialty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medical_entity_f1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(default, deserialize_with = "count", skip_serializing_if = "Option::is_none")]
    pub sample_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub improvement: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_samples: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_samples: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_increase: Option<Increase>,
}

/// One value of the Meerkat pipeline's `recommended_actions` map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecommendedAction {
    #[serde(default = "yes")]
    pub increase_training_data: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focus_on_entity_extraction: Option<bool>,
    /// `"50-80%"` (F1 below 0.3) or `"30-50%"` in the Meerkat pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_data_increase: Option<Increase>,
}

fn yes() -> bool {
    true
}

/// The eval report's `training_recommendations.json`, in the Meerkat pipeline's format:
///
/// ```json
/// {
///   "low_performing_specialties": [
///     {"specialty": "neurology", "medical_entity_f1": 0.21, "sample_count": 10, "improvement": 0.02}
///   ],
///   "recommended_actions": {
///     "neurology": {"increase_training_data": true, "focus_on_entity_extraction": true,
///                   "recommended_data_increase": "50-80%"}
///   },
///   "overall_performance": {"total_samples_evaluated": 120, "overall_improvement_rouge_l": 0.03}
/// }
/// ```
///
/// The Meerkat pipeline's evaluation script lists up to ten low performers (F1 below 0.5) and gives actions for
/// the worst five; only entries that carry an amount change the split. Unknown keys are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recommendations {
    /// The Meerkat pipeline's list of weak specialties (names).
    #[serde(default)]
    pub low_performance_specialties: Vec<String>,
    /// The Meerkat pipeline's new training share per specialty (`0.8` = 80% of its non-holdout rows).
    #[serde(default)]
    pub recommended_sample_increases: BTreeMap<String, f64>,
    /// The Meerkat pipeline's change of the headline metrics against the base model (`rougeL`, `bertscore_f1`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overall_improvement: BTreeMap<String, f64>,
    /// What this evaluation keyed on, its threshold and the share it recommends (medforge's note, not read back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criteria: Option<serde_json::Value>,
    /// medforge's per-specialty detail (score, sample count, improvement); the older form `split update` also reads.
    #[serde(default)]
    pub low_performing_specialties: Vec<LowPerformingSpecialty>,
    #[serde(default)]
    pub recommended_actions: BTreeMap<String, RecommendedAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overall_performance: Option<OverallPerformance>,
}

/// `overall_performance`: what the evaluation covered and how far the model moved. Keys other pipelines write are
/// kept in `other`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OverallPerformance {
    #[serde(default, deserialize_with = "count", skip_serializing_if = "Option::is_none")]
    pub total_samples_evaluated: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub benchmark: Option<String>,
    /// Accuracy of this run minus the base run's (MCQ evaluation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overall_improvement_accuracy: Option<f64>,
    /// ROUGE-L of this run minus the base run's (the Meerkat pipeline's open-ended evaluation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overall_improvement_rouge_l: Option<f64>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A count written as an integer or (by Python) as a float such as `10.0`.
fn count<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    let v = Option::<f64>::deserialize(d)?;
    match v {
        None => Ok(None),
        Some(x) if x.is_finite() && x >= 0.0 && x.fract() == 0.0 => Ok(Some(x as u64)),
        Some(x) => Err(serde::de::Error::custom(format!("expected a count, found {x}"))),
    }
}

/// What a recommendation asks of one specialty's train split.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// This many train rows.
    Samples(usize),
    /// Grow the rows drawn for training (train + eval) by this fraction.
    Increase(f64),
    /// Draw this share of the specialty's non-holdout rows for training (train + eval): the Meerkat pipeline's
    /// `recommended_sample_increases` value, its new `SPECIALTY_SAMPLE_PERCENTAGES` entry.
    Share(f64),
}

/// The top-level keys a `training_recommendations.json` may carry; a file with none of them is not one.
const KNOWN_KEYS: [&str; 6] = [
    "low_performance_specialties",
    "recommended_sample_increases",
    "overall_improvement",
    "low_performing_specialties",
    "recommended_actions",
    "overall_performance",
];

/// Match specialty names across the report and the records: case, `_`, `-` and spacing ignored
/// ("internal_medicine" = "Internal Medicine").
pub fn norm_specialty(s: &str) -> String {
    s.replace(['_', '-'], " ").split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

impl Recommendations {
    /// Write the file atomically (pretty JSON).
    pub fn save(&self, path: &Path) -> Result<()> {
        let body = serde_json::to_vec_pretty(self).map_err(|e| Error::write(path.display().to_string(), e))?;
        crate::write::write_atomic(path, &body)
    }

    /// Read a file in either form. A file that is not a JSON object, or that has none of the known keys, is an
    /// error naming the keys it has and the ones expected.
    pub fn load(path: &Path) -> Result<Recommendations> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad =
            |why: String| Error::Config(format!("{}: not a training_recommendations.json: {why}", path.display()));
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        let obj = v.as_object().ok_or_else(|| bad("expected a JSON object".into()))?;
        if !obj.keys().any(|k| KNOWN_KEYS.contains(&k.as_str())) {
            let found: Vec<&str> = obj.keys().map(String::as_str).collect();
            return Err(bad(format!(
                "unknown schema (keys: {}); expected the Meerkat pipeline's `low_performance_specialties`, \
                 `recommended_sample_increases`, `overall_improvement` (or medforge's `low_performing_specialties`, \
                 `recommended_actions`)",
                if found.is_empty() { "none".to_string() } else { found.join(", ") }
            )));
        }
        let recs: Recommendations = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
        for (s, &share) in &recs.recommended_sample_increases {
            if !(share.is_finite() && (0.0..=1.0).contains(&share)) {
                return Err(bad(format!(
                    "recommended_sample_increases[{s:?}] = {share}: a share is a training fraction between 0 and 1"
                )));
            }
        }
        Ok(recs)
    }

    /// One target per recommended specialty, keyed by the specialty as written. Precedence: the Meerkat
    /// pipeline's `recommended_sample_increases` share, then an explicit `recommended_samples`, then `recommended_actions[..].recommended_data_increase` (when
    /// `increase_training_data` is true), then `recommended_increase`. Entries with none of these, or
    /// whose amount does not parse, ask for nothing.
    pub fn targets(&self) -> BTreeMap<String, (Target, String)> {
        let mut out = BTreeMap::new();
        // The Meerkat pipeline's shares come first: they are the file's primary form.
        for (s, &share) in &self.recommended_sample_increases {
            out.insert(s.clone(), (Target::Share(share), format!("recommended_sample_increases = {share}")));
        }
        for lp in &self.low_performing_specialties {
            if out.keys().any(|k| norm_specialty(k) == norm_specialty(&lp.specialty)) {
                continue;
            }
            if let Some(n) = lp.recommended_samples {
                out.insert(lp.specialty.clone(), (Target::Samples(n), format!("recommended_samples = {n}")));
            }
        }
        for (s, a) in &self.recommended_actions {
            if out.keys().any(|k| norm_specialty(k) == norm_specialty(s)) || !a.increase_training_data {
                continue;
            }
            if let Some(f) = a.recommended_data_increase.as_ref().and_then(Increase::fraction) {
                let raw = describe(a.recommended_data_increase.as_ref().expect("parsed"));
                out.insert(
                    s.clone(),
                    (Target::Increase(f), format!("recommended_actions.recommended_data_increase = {raw}")),
                );
            }
        }
        for lp in &self.low_performing_specialties {
            if out.keys().any(|k| norm_specialty(k) == norm_specialty(&lp.specialty)) {
                continue;
            }
            if let Some(f) = lp.recommended_increase.as_ref().and_then(Increase::fraction) {
                let raw = describe(lp.recommended_increase.as_ref().expect("parsed"));
                out.insert(lp.specialty.clone(), (Target::Increase(f), format!("recommended_increase = {raw}")));
            }
        }
        out
    }
}

fn describe(i: &Increase) -> String {
    match i {
        Increase::Fraction(f) => f.to_string(),
        Increase::Text(s) => format!("{s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increases_parse_like_the_report_writes_them() {
        let t = |s: &str| Increase::Text(s.into()).fraction();
        assert_eq!(t("50-80%"), Some(0.65));
        assert_eq!(t("30 - 50 %"), Some(0.4));
        assert_eq!(t("30%"), Some(0.3));
        assert_eq!(t("+0.25"), Some(0.25));
        assert_eq!(t("30 to 50%"), Some(0.4));
        assert_eq!(t("-20%"), Some(-0.2));
        assert_eq!(t("lots"), None);
        assert_eq!(Increase::Fraction(0.5).fraction(), Some(0.5));
    }

    fn load_str(body: &str) -> Result<Recommendations> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("training_recommendations.json");
        std::fs::write(&p, body).unwrap();
        Recommendations::load(&p)
    }

    #[test]
    fn the_meerkat_schema_gives_shares_and_unknown_schemas_are_errors() {
        let r = load_str(
            r#"{"low_performance_specialties": ["cardiology", "neurology"],
                "recommended_sample_increases": {"cardiology": 0.8, "neurology": 0.8},
                "overall_improvement": {"ROUGE-L": 0.045, "bertscore_f1": 0.032}}"#,
        )
        .unwrap();
        let t = r.targets();
        assert_eq!(t["cardiology"].0, Target::Share(0.8));
        assert_eq!(t.len(), 2);
        assert_eq!(r.overall_improvement["ROUGE-L"], 0.045);
        let e = load_str(r#"{"weak": ["cardiology"], "increase": 0.8}"#).unwrap_err().to_string();
        assert!(
            e.contains("unknown schema") && e.contains("weak, increase") && e.contains("recommended_sample_increases"),
            "{e}"
        );
        assert!(load_str("[1, 2]").unwrap_err().to_string().contains("JSON object"));
        let e = load_str(r#"{"recommended_sample_increases": {"cardiology": 80}}"#).unwrap_err().to_string();
        assert!(e.contains("between 0 and 1"), "{e}");
        // The share wins over the older per-specialty form for the same specialty.
        let r = load_str(
            r#"{"recommended_sample_increases": {"Cardiology": 0.7},
                "recommended_actions": {"cardiology": {"recommended_data_increase": "50-80%"}, "neurology": {"recommended_data_increase": 0.5}}}"#,
        )
        .unwrap();
        let t = r.targets();
        assert_eq!(t["Cardiology"].0, Target::Share(0.7));
        assert!(!t.contains_key("cardiology"));
        assert_eq!(t["neurology"].0, Target::Increase(0.5));
    }

    #[test]
    fn counts_read_from_python_floats_and_write_as_integers() {
        let r: Recommendations = serde_json::from_str(
            r#"{"low_performing_specialties": [{"specialty": "neurology", "sample_count": 10.0}],
                "overall_performance": {"total_samples_evaluated": 120, "overall_improvement_rouge_l": 0.03, "note": "x"}}"#,
        )
        .unwrap();
        assert_eq!(r.low_performing_specialties[0].sample_count, Some(10));
        let o = r.overall_performance.as_ref().unwrap();
        assert_eq!(o.overall_improvement_rouge_l, Some(0.03));
        assert_eq!(o.other["note"], "x", "unknown keys are kept");
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["low_performing_specialties"][0]["sample_count"], serde_json::json!(10));
        assert!(serde_json::from_str::<Recommendations>(
            r#"{"low_performing_specialties": [{"specialty": "a", "sample_count": 1.5}]}"#
        )
        .is_err());
    }
}
