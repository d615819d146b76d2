//! The `structure` key of the LLM stages: what shape an answer must have, as a [`Structure`] the request carries.
//! `medforge serve` (and vLLM, SGLang) enforce it where the endpoint's `structured_output` says so; elsewhere the
//! stages' tolerant parsing reads the answer as before. One builder per stage shape, so the grammar and the parser
//! that reads its output live side by side.
//!
//! ```toml
//! structure = "choice"                                  # label (default), difficulty (default)
//! structure = "json"                                    # label: {"labels": [...], "division_reasoning": "..."}
//! structure = "grammar"                                 # rewrite (default): nested lists only
//! structure = "none"                                    # ask for nothing; parse the prose
//! structure = { json_schema = { type = "object", ... } } # generate, dpo_pairs
//! ```

use medforge_llm::Structure;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::stage::{StageError, StageResult};

/// How a choice is made: decoded under the constraint (the default), or every choice scored by log-likelihood
/// (`choice_by = "loglik"`: the local engine and `medforge serve` with `structured_output = "medforge"`; other
/// backends decode), with the margin reported as the stage's confidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChoiceBy {
    #[default]
    Decode,
    Loglik,
}

/// The scores a stage adds for a scored choice: `<stage>.confidence` (softmax probability of the chosen one among
/// the choices) and `<stage>.margin` (its log-probability lead over the runner-up, nats).
pub fn confidence_scores(stage: &str, scores: Option<&[medforge_llm::ChoiceLogprob]>) -> Vec<(String, f64)> {
    match scores.and_then(medforge_llm::choice_confidence) {
        Some((p, margin)) => {
            vec![
                (format!("{stage}.confidence"), p),
                (format!("{stage}.margin"), if margin.is_finite() { margin } else { 99.0 }),
            ]
        }
        None => Vec::new(),
    }
}

/// A stage's `structure` setting as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StructureSetting {
    Mode(StructureMode),
    Schema { json_schema: Value },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructureMode {
    None,
    Choice,
    Json,
    Grammar,
}

impl StructureSetting {
    /// The mode, checked against what `stage` offers (`allowed`); a schema where the stage takes none is an error.
    pub fn mode(
        setting: &Option<StructureSetting>,
        stage: &str,
        default: StructureMode,
        allowed: &[StructureMode],
    ) -> StageResult<StructureMode> {
        let names =
            |a: &[StructureMode]| a.iter().map(|m| format!("\"{}\"", mode_name(*m))).collect::<Vec<_>>().join(", ");
        match setting {
            None => Ok(default),
            Some(StructureSetting::Mode(m)) if allowed.contains(m) => Ok(*m),
            Some(StructureSetting::Mode(m)) => Err(StageError::failed(
                stage,
                format!("`structure = \"{}\"` is not offered here; use one of {}", mode_name(*m), names(allowed)),
            )),
            Some(StructureSetting::Schema { .. }) => Err(StageError::failed(
                stage,
                format!("`structure = {{ json_schema = ... }}` is not offered here; use one of {}", names(allowed)),
            )),
        }
    }

    /// For stages whose answer is free text with an optional JSON schema (`generate`, `dpo_pairs`).
    pub fn schema(setting: &Option<StructureSetting>, stage: &str) -> StageResult<Option<Structure>> {
        match setting {
            None | Some(StructureSetting::Mode(StructureMode::None)) => Ok(None),
            Some(StructureSetting::Schema { json_schema }) if json_schema.is_object() => {
                Ok(Some(Structure::JsonSchema(json_schema.clone())))
            }
            Some(StructureSetting::Schema { .. }) => {
                Err(StageError::failed(stage, "`structure.json_schema` must be a table (an object)"))
            }
            Some(StructureSetting::Mode(m)) => Err(StageError::failed(
                stage,
                format!(
                    "`structure = \"{}\"` is not offered here; use `structure = {{ json_schema = {{ ... }} }}` or \"none\"",
                    mode_name(*m)
                ),
            )),
        }
    }
}

fn mode_name(m: StructureMode) -> &'static str {
    match m {
        StructureMode::None => "none",
        StructureMode::Choice => "choice",
        StructureMode::Json => "json",
        StructureMode::Grammar => "grammar",
    }
}

/// Lark string literal (JSON's escapes).
fn lit(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// `label` with `json`: 1..=`max` taxonomy ids, primary first, and a short reasoning.
pub fn label_json(ids: &[String], max: usize) -> Structure {
    Structure::JsonSchema(json!({
        "type": "object",
        "properties": {
            "labels": {"type": "array", "items": {"type": "string", "enum": ids}, "minItems": 1, "maxItems": max.max(1)},
            "division_reasoning": {"type": "string", "maxLength": 300}
        },
        "required": ["labels", "division_reasoning"],
        "additionalProperties": false
    }))
}

/// `difficulty` MCQ answers: up to `reasoning_tokens` of free reasoning, then `The answer is X` with X one of the
/// row's letters (the phrase the default prompt asks for, which the answer extractor reads first).
pub fn mcq_answer(letters: &[String], reasoning_tokens: usize) -> Structure {
    let choice = letters.iter().map(|l| lit(l)).collect::<Vec<_>>().join(" | ");
    if reasoning_tokens == 0 {
        return Structure::Grammar(format!("start: \"The answer is \" ({choice})\n"));
    }
    Structure::Grammar(format!(
        "start: think \"The answer is \" ({choice}) \".\"\nthink[suffix=\"\\n\", max_tokens={reasoning_tokens}]: /(?s:.*)/\n"
    ))
}

/// `difficulty` MCQ answers ranked by log-likelihood: the phrase with each of the row's letters.
pub fn mcq_phrases(letters: &[String]) -> Structure {
    Structure::Choice(letters.iter().map(|l| format!("The answer is {l}.")).collect())
}

/// The judge's verdict.
pub fn verdict() -> Structure {
    Structure::Choice(vec!["correct".into(), "incorrect".into()])
}

/// `rewrite` with the hierarchical validator: a markdown list indented two spaces per level, at least `min_depth`
/// levels deep along its first item, at most `max_items` siblings under any parent, nothing deeper than
/// `min_depth + 1`; the first item starts with `first` (the answer) when given. Every output of this grammar passes
/// the validator's structural checks, so retries are only for content.
pub fn nested_list(min_depth: usize, max_items: usize, first: Option<&str>) -> Structure {
    let depth = min_depth.max(1);
    let max_depth = depth + 1;
    let m = max_items.max(1);
    let more = |rule: String| if m > 1 { format!(" {rule}{{0,{}}}", m - 1) } else { String::new() };
    let mut g = String::new();
    let indent = |k: usize| if k > 1 { format!("{} ", lit(&"  ".repeat(k - 1))) } else { String::new() };
    // The first item's chain reaches `depth`.
    let head = first.map(|f| format!("{} ", lit(f))).unwrap_or_default();
    g.push_str(&format!("start: first1{}\n", more("item1".into())));
    for k in 1..=depth {
        let text = if k == 1 { format!("{head}text") } else { "text".to_string() };
        let below = if k < depth {
            format!(" first{}{}", k + 1, more(format!("item{}", k + 1)))
        } else if k < max_depth {
            format!(" item{}{{0,{m}}}", k + 1)
        } else {
            String::new()
        };
        g.push_str(&format!("first{k}: {}\"- \" {text} \"\\n\"{below}\n", indent(k)));
    }
    for k in 1..=max_depth {
        let below = if k < max_depth { format!(" item{}{{0,{m}}}", k + 1) } else { String::new() };
        g.push_str(&format!("item{k}: {}\"- \" text \"\\n\"{below}\n", indent(k)));
    }
    // An item's text: one line, not empty, not starting with a space or another list marker, at most a long
    // sentence (so the first item's chain reaches its depth within a few hundred tokens).
    g.push_str("text[max_tokens=64]: /[^\\s\\-*+][^\\n]*/\n");
    Structure::Grammar(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_and_check() {
        #[derive(Deserialize)]
        struct T {
            structure: Option<StructureSetting>,
        }
        let t: T = toml::from_str("structure = \"json\"").unwrap();
        let all = [StructureMode::None, StructureMode::Choice, StructureMode::Json];
        assert_eq!(
            StructureSetting::mode(&t.structure, "label", StructureMode::Choice, &all).unwrap(),
            StructureMode::Json
        );
        let e = StructureSetting::mode(&t.structure, "rewrite", StructureMode::Grammar, &[StructureMode::None])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`structure = \"json\"` is not offered here; use one of \"none\""), "{e}");
        let t: T = toml::from_str("structure = { json_schema = { type = \"object\" } }").unwrap();
        assert_eq!(
            StructureSetting::schema(&t.structure, "generate").unwrap(),
            Some(Structure::JsonSchema(json!({"type": "object"})))
        );
        assert!(StructureSetting::mode(&t.structure, "label", StructureMode::Choice, &all).is_err());
        assert!(toml::from_str::<T>("structure = \"xml\"").is_err());
        let t: T = toml::from_str("").unwrap();
        assert_eq!(StructureSetting::schema(&t.structure, "generate").unwrap(), None);
    }

    #[test]
    fn nested_list_grammar_shape() {
        let Structure::Grammar(g) = nested_list(3, 2, Some("C. ")) else { panic!() };
        assert!(g.starts_with("start: first1 item1{0,1}\n"), "{g}");
        assert!(g.contains("first1: \"- \" \"C. \" text \"\\n\" first2 item2{0,1}\n"), "{g}");
        assert!(g.contains("first3: \"    \" \"- \" text \"\\n\" item4{0,2}\n"), "{g}");
        assert!(g.contains("item4: \"      \" \"- \" text \"\\n\"\n"), "{g}");
    }
}
