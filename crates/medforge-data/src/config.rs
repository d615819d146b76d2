//! The TOML pipeline config. Unknown keys and bad values fail with the line, the key, and a suggestion.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mapping::FieldMapping;
use crate::read::{CsvOptions, Format, Limits, ReadOptions};
use crate::write::OutputFormat;

/// What to do with a malformed row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop at the first bad row, naming it.
    #[default]
    Fail,
    /// Write the row to `rejects.jsonl` with its reason, count it, and go on.
    Skip,
}

/// One input dataset: a path, usually a preset, and any field-mapping overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// File or folder to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// A built-in preset (`medforge presets` lists them); other keys override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Value of the records' `source` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<CsvOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// In folders, read only files whose name contains this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_filter: Option<String>,
    /// Read at most this many rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(default)]
    pub fields: FieldMapping,
}

/// An input with its preset applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedInput {
    pub path: PathBuf,
    pub preset: Option<String>,
    pub source: String,
    pub read: ReadOptions,
    pub fields: FieldMapping,
    pub limit: Option<u64>,
}

impl InputConfig {
    pub fn for_path(path: impl Into<PathBuf>, preset: Option<&str>) -> Self {
        InputConfig { path: Some(path.into()), preset: preset.map(str::to_string), ..Default::default() }
    }

    /// `self`'s keys win over `base`'s.
    pub fn overlay_on(&self, base: &InputConfig) -> InputConfig {
        InputConfig {
            path: self.path.clone().or_else(|| base.path.clone()),
            preset: base.preset.clone(),
            source: self.source.clone().or_else(|| base.source.clone()),
            format: self.format.or(base.format),
            csv: self.csv.clone().or_else(|| base.csv.clone()),
            limits: self.limits.or(base.limits),
            file_filter: self.file_filter.clone().or_else(|| base.file_filter.clone()),
            limit: self.limit.or(base.limit),
            fields: base.fields.overlay(&self.fields),
        }
    }

    /// Apply the preset chain and settle defaults.
    pub fn resolve(&self) -> Result<ResolvedInput> {
        let mut merged = self.clone();
        let mut preset_name = None;
        let mut next = self.preset.clone();
        let mut depth = 0;
        while let Some(name) = next {
            depth += 1;
            if depth > 8 {
                return Err(Error::Config(format!("preset `{name}` refers to itself")));
            }
            let p = crate::preset::get(&name)?;
            preset_name.get_or_insert(p.name.clone());
            next = p.input.preset.clone();
            merged = merged.overlay_on(&p.input);
        }
        let path = merged.path.clone().ok_or_else(|| Error::Config("input has no `path`".into()))?;
        let source = merged
            .source
            .clone()
            .or_else(|| preset_name.clone())
            .unwrap_or_else(|| path.file_stem().and_then(|s| s.to_str()).unwrap_or("input").to_string());
        Ok(ResolvedInput {
            path,
            preset: preset_name,
            source,
            read: ReadOptions {
                format: merged.format,
                csv: merged.csv.unwrap_or_default(),
                limits: merged.limits.unwrap_or_default(),
                file_filter: merged.file_filter,
            },
            fields: merged.fields,
            limit: merged.limit,
        })
    }
}

/// `[run]`: where runs go and how they behave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// A name for the run, recorded in the manifest.
    pub name: Option<String>,
    /// Folder under which each run writes `<version>_<timestamp>/`.
    pub output: PathBuf,
    /// Seed for every random choice.
    pub seed: u64,
    pub on_error: OnError,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig { name: None, output: PathBuf::from("runs"), seed: 42, on_error: OnError::Fail }
    }
}

/// `[output]`: which files a run writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    pub formats: Vec<OutputFormat>,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { formats: vec![OutputFormat::Parquet, OutputFormat::Jsonl, OutputFormat::Hf] }
    }
}

/// A whole pipeline config file: `[run]`, `[[inputs]]`, `[output]`, and for jobs that take them, `[[stages]]` (`S`)
/// and `[llm]` (`L`). `medforge-curate` fills in its stage and LLM types; a plain ingest config takes neither.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig<S = Unsupported, L = Unsupported> {
    #[serde(default)]
    pub run: RunConfig,
    #[serde(default)]
    pub inputs: Vec<InputConfig>,
    #[serde(default)]
    pub output: OutputConfig,
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<S>,
    /// LLM backends, cache and budget for the LLM stages.
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub llm: Option<L>,
    /// `[train]`, read by `medforge train` (`medforge-train` owns its keys); carried here so one file can hold the
    /// curation pipeline and the training run on its output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<toml::Table>,
}

impl<S, L> Default for PipelineConfig<S, L> {
    fn default() -> Self {
        PipelineConfig {
            run: RunConfig::default(),
            inputs: Vec::new(),
            output: OutputConfig::default(),
            stages: Vec::new(),
            llm: None,
            train: None,
        }
    }
}

/// A section a job does not take: `[[stages]]` or `[llm]` in a plain ingest config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Unsupported {}

impl<'de> Deserialize<'de> for Unsupported {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> std::result::Result<Self, D::Error> {
        Err(serde::de::Error::custom("this job takes no [[stages]] or [llm]: run the config with `medforge curate`"))
    }
}

impl<S: serde::de::DeserializeOwned, L: serde::de::DeserializeOwned> PipelineConfig<S, L> {
    /// Read and check a config file. Relative input paths and the run output resolve against the config's folder
    /// (the caller rebases paths inside `stages` and `llm`).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut cfg = Self::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        rebase_run(&mut cfg.run, &mut cfg.inputs, path.parent().unwrap_or(Path::new(".")));
        Ok(cfg)
    }

    /// Parse and check a config's text: unknown keys and bad values name the line and suggest a fix.
    pub fn parse(text: &str) -> Result<Self> {
        let cfg: Self = toml::from_str(text).map_err(|e| Error::Config(with_suggestion(&e.to_string())))?;
        check_inputs(&cfg.inputs)?;
        Ok(cfg)
    }
}

/// Every config needs inputs, and each must resolve (known preset, valid mapping).
pub fn check_inputs(inputs: &[InputConfig]) -> Result<()> {
    if inputs.is_empty() {
        return Err(Error::Config(
            "no [[inputs]]: add at least one, e.g.\n\n[[inputs]]\npath = \"data/dev.jsonl\"\npreset = \"medqa\"".into(),
        ));
    }
    for (i, input) in inputs.iter().enumerate() {
        input.resolve().map_err(|e| Error::Config(format!("inputs[{i}]: {e}")))?;
    }
    Ok(())
}

/// Resolve relative input paths and the run output against the config file's folder.
pub fn rebase_run(run: &mut RunConfig, inputs: &mut [InputConfig], base: &Path) {
    for input in inputs {
        if let Some(p) = &input.path {
            if p.is_relative() {
                input.path = Some(normalize(&base.join(p)));
            }
        }
    }
    if run.output.is_relative() {
        run.output = normalize(&base.join(&run.output));
    }
}

/// Append "did you mean `x`?" to serde's "unknown field/variant `y`, expected one of ..." messages.
pub fn with_suggestion(msg: &str) -> String {
    let Some(start) = msg.find("unknown field `").or_else(|| msg.find("unknown variant `")) else {
        return msg.to_string();
    };
    let rest = &msg[start..];
    let ticks: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let Some((bad, candidates)) = ticks.split_first() else { return msg.to_string() };
    match closest(bad, candidates.iter().copied()) {
        Some(best) => format!("{}\nhelp: did you mean `{best}`?", msg.trim_end()),
        None => msg.to_string(),
    }
}

/// The closest candidate by Jaro-Winkler similarity, if it is close enough to be a likely typo.
pub fn closest<'a>(bad: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::jaro_winkler(&bad.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(s, _)| *s > 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Lexically remove `.` and `dir/..` pairs, so manifests show `fixtures/x.jsonl`, not `examples/../fixtures/x.jsonl`.
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}
