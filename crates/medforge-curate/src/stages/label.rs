//! `label`: classify each row into a taxonomy with an LLM. The answer is parsed tolerantly (ids,
//! numbers, names, Korean names, "id name", JSON lists, prose naming a category) and then repaired by
//! [`fix_labels`], exactly as hand-written labels are. Rows are never dropped for their label: an
//! unreadable answer becomes `UNKNOWN`, is counted, and its raw text is kept in `metadata.label_raw`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use medforge_data::Record;
use medforge_llm::GenParams;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::call::{LlmStageConfig, StageSettings};
use super::labels::LabelField;
use super::llm::{non_empty, require_env, Got, LlmEnv, Prompt, RowState};
use super::structure::{confidence_scores, label_json, ChoiceBy, StructureMode, StructureSetting};
use crate::config::rebase_path;
use crate::stage::{Decision, Stage, StageContext, StageOutput, StageResult};
use crate::taxonomy::{fix_labels, Taxonomy, UNKNOWN};
use medforge_text::answer::visible_answer;

pub const DEFAULT_SYSTEM: &str = "You are a medical librarian. You classify medical exam questions and clinical questions into a fixed taxonomy of medical divisions, answering only with category ids.";

pub const DEFAULT_PROMPT: &str = "Classify the question below into the taxonomy. Answer with the id of the best-fitting category first, then the ids of up to {{ max_labels - 1 }} other categories only if the question clearly spans them, separated by commas. Answer with ids only.

Taxonomy (id: name):
{{ taxonomy }}

Question:
{{ question }}
{% if options %}
Options:
{{ options_text }}
{% endif %}

Category ids:";

fn default_max_labels() -> usize {
    3
}
fn default_levels() -> usize {
    1
}

/// `[[stages]] stage = "label"`: the shared LLM keys ([`LlmCall`](super::call::LlmCall)) and [`LabelSettings`].
pub type LabelConfig = LlmStageConfig<LabelSettings>;

/// The `label` stage's own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSettings {
    pub taxonomy: PathBuf,
    /// Which label pair receives the labels.
    #[serde(default)]
    pub field: LabelField,
    /// Taxonomy levels listed in the prompt (1 = top-level divisions only).
    #[serde(default = "default_levels")]
    pub levels: usize,
    #[serde(default = "default_max_labels")]
    pub max_labels: usize,
    /// `choice` (default): the answer is one of the listed ids; `json`: `{"labels": [1..max_labels ids],
    /// "division_reasoning": ...}`; `none`: free text, parsed tolerantly. Enforced where the backend can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structure: Option<StructureSetting>,
    /// With `structure = "choice"`: `decode` (default), or `loglik` to score every id by log-likelihood where the
    /// backend can, adding `label.confidence` and `label.margin` to the row's scores.
    #[serde(default)]
    pub choice_by: ChoiceBy,
}

impl StageSettings for LabelSettings {
    const STAGE: &'static str = "label";
    fn default_params() -> GenParams {
        GenParams { max_tokens: Some(64), temperature: Some(0.0), ..Default::default() }
    }
}

impl LabelSettings {
    pub(crate) fn rebase(&mut self, base: &Path) {
        rebase_path(&mut self.taxonomy, base);
    }
}

pub struct Label {
    cfg: LabelConfig,
    tax: Arc<Taxonomy>,
    listing: String,
    prompt: Prompt,
    env: Arc<LlmEnv>,
    backend: String,
    /// `params` with the structure the answer must have.
    params: GenParams,
    mode: StructureMode,
    /// With `structure = "choice"`: each option (a listing line) and its id.
    choices: BTreeMap<String, String>,
}

/// A taxonomy node as the prompt lists it.
fn listing_line(n: &crate::taxonomy::TaxonomyNode) -> String {
    match &n.name_ko {
        Some(ko) => format!("{}: {} ({ko})", n.id, n.name),
        None => format!("{}: {}", n.id, n.name),
    }
}

impl Label {
    pub fn new(cfg: LabelConfig, env: Option<&Arc<LlmEnv>>) -> StageResult<Self> {
        let env = require_env("label", env)?.clone();
        let tax = Taxonomy::load(&cfg.taxonomy)?;
        let listing = tax
            .nodes()
            .iter()
            .filter(|n| n.level <= cfg.levels.max(1))
            .map(|n| format!("{}{}", "  ".repeat(n.level - 1), listing_line(n)))
            .collect::<Vec<_>>()
            .join("\n");
        let prompt = Prompt::new(
            "label",
            "label-v1",
            &[
                ("system", Some(cfg.call.system_or(DEFAULT_SYSTEM))),
                ("prompt", Some(cfg.call.prompt_or(DEFAULT_PROMPT))),
            ],
        )?;
        let backend = cfg.call.backend("label", &env)?;
        let mode = StructureSetting::mode(
            &cfg.structure,
            "label",
            StructureMode::Choice,
            &[StructureMode::Choice, StructureMode::Json, StructureMode::None],
        )?;
        // The ids the prompt lists are the ones the answer may use. As a choice, each option is its line of the
        // listing (`7: Neurology`): a bare id is a prefix of others (`1`, `10`), and a model that wants to go on
        // after `1` could only write `10`.
        let listed: Vec<&crate::taxonomy::TaxonomyNode> =
            tax.nodes().iter().filter(|n| n.level <= cfg.levels.max(1)).collect();
        let ids: Vec<String> = listed.iter().map(|n| n.id.clone()).collect();
        let choices: BTreeMap<String, String> = listed.iter().map(|n| (listing_line(n), n.id.clone())).collect();
        let structure = match mode {
            StructureMode::Choice => Some(medforge_llm::Structure::Choice(choices.keys().cloned().collect())),
            StructureMode::Json => Some(label_json(&ids, cfg.max_labels)),
            _ => None,
        };
        if cfg.choice_by == ChoiceBy::Loglik && mode != StructureMode::Choice {
            return Err(crate::stage::StageError::failed(
                "label",
                "`choice_by = \"loglik\"` needs `structure = \"choice\"`",
            ));
        }
        let score_choices = cfg.choice_by == ChoiceBy::Loglik;
        let params = GenParams { structure, score_choices, ..cfg.call.params.clone() };
        Ok(Label { cfg, tax: Arc::new(tax), listing, prompt, env, backend, params, mode, choices })
    }
}

/// How a label answer was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParseMethod {
    /// Exactly one of the options of `structure = "choice"`.
    Choice,
    /// A JSON list or `{"labels": [...]}`.
    Json,
    /// Comma/line-separated items that each resolve (ids, numbers, names, Korean names).
    Items,
    /// Ids or names found inside prose.
    Scan,
    None,
}

/// Parse a classifier's answer into raw labels for [`fix_labels`].
pub fn parse_labels(tax: &Taxonomy, answer: &str) -> (Vec<String>, ParseMethod) {
    let text = visible_answer(answer);
    let text = text.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```").trim();
    // JSON: a list, or an object with a list under labels/ids/categories/divisions.
    let json_part = text.find(['[', '{']).map(|s| &text[s..]);
    if let Some(v) = json_part.and_then(|j| serde_json::Deserializer::from_str(j).into_iter::<Value>().next()?.ok()) {
        let list = match &v {
            Value::Array(a) => Some(a.clone()),
            Value::Object(o) => ["labels", "ids", "categories", "divisions", "label", "id", "category"]
                .iter()
                .find_map(|k| o.get(*k))
                .map(|x| match x {
                    Value::Array(a) => a.clone(),
                    other => vec![other.clone()],
                }),
            _ => None,
        };
        if let Some(list) = list {
            let raw: Vec<String> = list
                .iter()
                .filter_map(|x| match x {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Object(o) => o
                        .get("id")
                        .or_else(|| o.get("name"))
                        .map(|v| v.as_str().map(str::to_string).unwrap_or(v.to_string())),
                    _ => None,
                })
                .collect();
            if raw.iter().any(|r| tax.resolve(r).is_some()) {
                return (raw, ParseMethod::Json);
            }
        }
    }
    // Items: the answer after a "labels:" style prefix, split on commas, semicolons, lines, slashes.
    let body = text
        .rsplit_once(':')
        .filter(|(head, _)| {
            let h = head.to_lowercase();
            ["label", "categor", "id", "division", "answer", "분류", "정답"].iter().any(|k| h.contains(k))
        })
        .map_or(text, |(_, rest)| rest);
    let items: Vec<String> = body
        .split(['\n', ',', ';', '、', '/'])
        .map(|s| {
            s.trim()
                .trim_start_matches(['-', '*', '•', '"', '\'', '`', '['])
                .trim_end_matches(['"', '\'', '`', ']', '.'])
                .trim()
                .to_string()
        })
        .filter(|s| !s.is_empty())
        .collect();
    if !items.is_empty() && items.iter().all(|s| tax.resolve(s).is_some()) {
        return (items, ParseMethod::Items);
    }
    // Scan prose: dotted ids that exist, and node names (English or Korean), in order of appearance.
    let lower = text.to_lowercase();
    let mut found: Vec<(usize, usize, String)> = Vec::new(); // (position, -len for ties, id)
    for n in tax.nodes() {
        for name in std::iter::once(&n.name).chain(n.name_ko.iter()) {
            let nl = name.to_lowercase();
            // A name several nodes share ("Diagnostics") says nothing about which one.
            if nl.chars().count() >= 3 && tax.by_name(name).is_some() {
                if let Some(p) = lower.find(&nl) {
                    found.push((p, usize::MAX - nl.len(), n.id.clone()));
                }
            }
        }
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric() && bytes[i - 1] != b'.') {
            let mut j = i;
            while j < bytes.len() && (bytes[j].is_ascii_digit() || bytes[j] == b'.') {
                j += 1;
            }
            let id = text[i..j].trim_end_matches('.');
            if tax.get(id).is_some() && (j == bytes.len() || !bytes[j].is_ascii_alphanumeric()) {
                found.push((i, usize::MAX - id.len(), id.to_string()));
            }
            i = j;
        } else {
            i += 1;
        }
    }
    found.sort();
    let mut ids: Vec<String> = Vec::new();
    for (_, _, id) in found {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        (items, ParseMethod::None)
    } else {
        (ids, ParseMethod::Scan)
    }
}

impl Stage for Label {
    fn name(&self) -> &str {
        "label"
    }

    fn run(&mut self, rows: &mut [Record], ctx: &StageContext) -> StageResult<StageOutput> {
        let span = self.env.span("label");
        let client = self.env.client("label", &self.backend, &self.prompt.version)?;
        let extra = json!({"taxonomy": self.listing, "max_labels": self.cfg.max_labels.max(1)});
        let reqs = rows
            .iter()
            .map(|r| self.prompt.request("label", r, &extra, &self.params).map(Some))
            .collect::<StageResult<Vec<_>>>()?;
        let got = self.env.round_scored("label", &self.backend, &client, rows, reqs, non_empty, ctx);
        let (mut unknown, mut labelled) = (0usize, 0usize);
        let mut methods: BTreeMap<ParseMethod, usize> = BTreeMap::new();
        let mut unparsed_examples = Vec::new();
        let mut decisions = Vec::with_capacity(rows.len());
        for (r, (g, scored)) in rows.iter_mut().zip(got) {
            let state = match g {
                Got::Text(text) => {
                    let (raw, method) = match self.choices.get(text.trim()) {
                        Some(id) => (vec![id.clone()], ParseMethod::Choice),
                        None => parse_labels(&self.tax, &text),
                    };
                    let mut fix = fix_labels(&self.tax, &raw);
                    fix.labels.truncate(self.cfg.max_labels.max(1));
                    *methods.entry(method).or_default() += 1;
                    labelled += 1;
                    if fix.unknown {
                        unknown += 1;
                        if unparsed_examples.len() < 10 {
                            unparsed_examples.push(json!({"id": r.id, "answer": text}));
                        }
                    }
                    let (primary, list) = match self.cfg.field {
                        LabelField::Division => (&mut r.division, &mut r.divisions),
                        LabelField::Specialty => (&mut r.specialty, &mut r.specialties),
                    };
                    *primary = Some(fix.primary.clone());
                    *list = fix.labels.clone();
                    if self.mode == StructureMode::Json {
                        let why = serde_json::from_str::<Value>(visible_answer(&text).trim())
                            .ok()
                            .and_then(|v| v.get("division_reasoning").and_then(Value::as_str).map(str::to_string));
                        if let Some(why) = why {
                            r.metadata.insert("division_reasoning".into(), Value::String(why));
                        }
                    }
                    r.metadata.insert("label_raw".into(), Value::String(text));
                    let mut d = Decision::keep().with_score("label.unknown", f64::from(u8::from(fix.unknown)));
                    for (k, v) in confidence_scores("label", scored.as_deref()) {
                        d = d.with_score(&k, v);
                    }
                    RowState::Done(d)
                }
                Got::Failed { code, reason } => RowState::Failed { code, reason },
                Got::Pending => RowState::Pending,
            };
            decisions.push(self.env.decide("label", r, state, ctx)?);
        }
        span.finish();
        let report = json!({
            "taxonomy": self.cfg.taxonomy,
            "field": self.cfg.field,
            "template_version": self.prompt.version,
            "structure": self.mode,
            "choice_by": self.cfg.choice_by,
            "rows": rows.len(),
            "labelled": labelled,
            "unknown": unknown,
            "unknown_label": UNKNOWN,
            "unknown_rate": if labelled == 0 { 0.0 } else { unknown as f64 / labelled as f64 },
            "parse_methods": methods,
            "unknown_examples": unparsed_examples,
            "distribution": crate::taxonomy::distribution(rows, &self.tax, 1),
        });
        Ok(StageOutput::new(decisions).with_report("label_report.json", report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tax() -> Taxonomy {
        Taxonomy::from_json(
            json!({"nodes": [
                {"id": "1", "name": "Cardiovascular Medicine", "name_ko": "심장내과", "children": [{"id": "1.1", "name": "Anatomy"}]},
                {"id": "2", "name": "Respiratory Medicine", "name_ko": "호흡기내과"},
                {"id": "3", "name": "Neurology"}]}),
            "test",
        )
        .unwrap()
    }

    fn ids(s: &str) -> (Vec<String>, ParseMethod) {
        let t = tax();
        let (raw, m) = parse_labels(&t, s);
        (fix_labels(&t, &raw).labels, m)
    }

    #[test]
    fn tolerant_parsing() {
        assert_eq!(ids("1, 3"), (vec!["1".into(), "3".into()], ParseMethod::Items));
        assert_eq!(ids("Category ids: 03"), (vec!["3".into()], ParseMethod::Items));
        assert_eq!(ids("[\"2\", 1]"), (vec!["2".into(), "1".into()], ParseMethod::Json));
        assert_eq!(ids("```json\n{\"labels\": [\"Neurology\"]}\n```"), (vec!["3".into()], ParseMethod::Json));
        assert_eq!(ids("호흡기내과"), (vec!["2".into()], ParseMethod::Items));
        assert_eq!(ids("- Neurology\n- cardiovascular medicine"), (vec!["3".into(), "1".into()], ParseMethod::Items));
        assert_eq!(ids("1.1 Anatomy"), (vec!["1.1".into()], ParseMethod::Items));
        assert_eq!(
            ids("This question is mostly about Neurology, with some 1.1 anatomy."),
            (vec!["3".into(), "1.1".into()], ParseMethod::Scan)
        );
        assert_eq!(ids("<think>maybe 2</think>3"), (vec!["3".into()], ParseMethod::Items));
        assert_eq!(ids("I cannot tell").0, vec![UNKNOWN.to_string()]);
        assert_eq!(ids("11").0, vec![UNKNOWN.to_string()], "not an id");
    }
}
