//! The curation config: the pipeline config's `[run]`, `[[inputs]]` and `[output]`, with curation's `[[stages]]`
//! and `[llm]`.

use std::path::{Path, PathBuf};

use medforge_data::config::{normalize, PipelineConfig};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::stage::{Stage, StageError, StageResult};
use crate::stages;
use crate::stages::llm::{LlmEnv, LlmSection};

/// One `[[stages]]` entry; `stage = "..."` picks the kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
// A handful of these exist per run, built once: boxing the LLM stages' configs would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum StageConfig {
    Quality(stages::quality::QualityConfig),
    Normalize(stages::normalize::NormalizeConfig),
    Dedup(stages::dedup::DedupConfig),
    Decontam(stages::decontam::DecontamConfig),
    Tokens(stages::tokens::TokensConfig),
    Language(stages::language::LanguageConfig),
    Labels(stages::labels::LabelsConfig),
    Sample(stages::sample::SampleConfig),
    Split(stages::split::SplitConfig),
    Format(crate::format::FormatConfig),
    Label(stages::label::LabelConfig),
    Difficulty(stages::difficulty::DifficultyConfig),
    Rewrite(stages::rewrite::RewriteConfig),
    DpoPairs(stages::dpo_pairs::DpoPairsConfig),
    Generate(stages::generate::GenerateConfig),
}

impl StageConfig {
    pub const NAMES: &'static [&'static str] = &[
        "quality",
        "normalize",
        "dedup",
        "decontam",
        "tokens",
        "language",
        "labels",
        "sample",
        "split",
        "format",
        "label",
        "difficulty",
        "rewrite",
        "dpo_pairs",
        "generate",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            StageConfig::Quality(_) => "quality",
            StageConfig::Normalize(_) => "normalize",
            StageConfig::Dedup(_) => "dedup",
            StageConfig::Decontam(_) => "decontam",
            StageConfig::Tokens(_) => "tokens",
            StageConfig::Language(_) => "language",
            StageConfig::Labels(_) => "labels",
            StageConfig::Sample(_) => "sample",
            StageConfig::Split(_) => "split",
            StageConfig::Format(_) => "format",
            StageConfig::Label(_) => "label",
            StageConfig::Difficulty(_) => "difficulty",
            StageConfig::Rewrite(_) => "rewrite",
            StageConfig::DpoPairs(_) => "dpo_pairs",
            StageConfig::Generate(_) => "generate",
        }
    }

    /// True for the stages that call an LLM (they need `[llm]`).
    pub fn is_llm(&self) -> bool {
        matches!(
            self,
            StageConfig::Label(_)
                | StageConfig::Difficulty(_)
                | StageConfig::Rewrite(_)
                | StageConfig::DpoPairs(_)
                | StageConfig::Generate(_)
        )
    }

    /// Make relative paths inside the stage config relative to the config file's folder.
    fn rebase(&mut self, base: &Path) {
        match self {
            StageConfig::Decontam(c) => c.rebase(base),
            StageConfig::Tokens(c) => c.rebase(base),
            StageConfig::Language(c) => c.rebase(base),
            StageConfig::Labels(c) => c.rebase(base),
            StageConfig::Label(c) => c.rebase(base),
            StageConfig::Format(c) => {
                // A template given as a path (tokenizer_config.json) is relative to the config.
                let t = std::path::Path::new(&c.template);
                if !c.template.starts_with("jinja:") && t.is_relative() && base.join(t).exists() {
                    c.template = normalize(&base.join(t)).display().to_string();
                }
            }
            StageConfig::Quality(_)
            | StageConfig::Normalize(_)
            | StageConfig::Dedup(_)
            | StageConfig::Sample(_)
            | StageConfig::Split(_)
            | StageConfig::Difficulty(_)
            | StageConfig::Rewrite(_)
            | StageConfig::DpoPairs(_)
            | StageConfig::Generate(_) => {}
        }
    }

    pub fn build(&self) -> StageResult<Box<dyn Stage>> {
        self.build_with(None)
    }

    /// Build the stage; LLM stages take the run's [`LlmEnv`] (and fail, saying so, without one).
    pub fn build_with(&self, llm: Option<&Arc<LlmEnv>>) -> StageResult<Box<dyn Stage>> {
        Ok(match self {
            StageConfig::Quality(c) => Box::new(stages::quality::Quality::new(c.clone())),
            StageConfig::Normalize(c) => Box::new(stages::normalize::Normalize::new(c.clone())?),
            StageConfig::Dedup(c) => Box::new(stages::dedup::Dedup::new(c.clone())?),
            StageConfig::Decontam(c) => Box::new(stages::decontam::Decontam::new(c.clone())?),
            StageConfig::Tokens(c) => Box::new(stages::tokens::Tokens::new(c.clone())?),
            StageConfig::Language(c) => Box::new(stages::language::Language::new(c.clone())?),
            StageConfig::Labels(c) => Box::new(stages::labels::Labels::new(c.clone())?),
            StageConfig::Sample(c) => Box::new(stages::sample::Sample::new(c.clone())?),
            StageConfig::Split(c) => Box::new(stages::split::Split::new(c.clone())),
            StageConfig::Format(c) => Box::new(stages::format::Format::new(c.clone())?),
            StageConfig::Label(c) => Box::new(stages::label::Label::new(c.clone(), llm)?),
            StageConfig::Difficulty(c) => Box::new(stages::difficulty::Difficulty::new(c.clone(), llm)?),
            StageConfig::Rewrite(c) => Box::new(stages::rewrite::Rewrite::new(c.clone(), llm)?),
            StageConfig::DpoPairs(c) => Box::new(stages::dpo_pairs::DpoPairs::new(c.clone(), llm)?),
            StageConfig::Generate(c) => Box::new(stages::generate::Generate::new(c.clone(), llm)?),
        })
    }
}

/// A curation config: a [`PipelineConfig`] whose `[[stages]]` are [`StageConfig`]s and whose `[llm]` is an
/// [`LlmSection`]. Derefs to the pipeline config (`cfg.run`, `cfg.inputs`, `cfg.stages`, `cfg.llm`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CurateConfig(pub PipelineConfig<StageConfig, LlmSection>);

impl std::ops::Deref for CurateConfig {
    type Target = PipelineConfig<StageConfig, LlmSection>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for CurateConfig {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl CurateConfig {
    pub fn parse(text: &str) -> medforge_data::Result<CurateConfig> {
        PipelineConfig::parse(text).map(CurateConfig)
    }

    /// Read a config file; relative paths (inputs, run output, paths inside stages, the LLM cache) resolve against
    /// its folder.
    pub fn load(path: &Path) -> StageResult<CurateConfig> {
        let mut cfg = CurateConfig(PipelineConfig::load(path)?);
        let base = path.parent().unwrap_or(Path::new("."));
        for s in &mut cfg.stages {
            s.rebase(base);
        }
        if let Some(cache) = cfg.llm.as_mut().and_then(|l| l.cache.as_mut()) {
            rebase_path(cache, base);
        }
        Ok(cfg)
    }

    /// The stages to run: all, or only the named one.
    pub fn build_stages(&self, only: Option<&str>) -> StageResult<Vec<Box<dyn Stage>>> {
        self.build_stages_with(only, None)
    }

    /// True when a stage that would run (all, or `only`) calls an LLM.
    pub fn uses_llm(&self, only: Option<&str>) -> bool {
        self.stages.iter().any(|s| s.is_llm() && only.is_none_or(|o| o == s.name()))
    }

    /// [`CurateConfig::build_stages`] with the run's LLM environment for the LLM stages.
    pub fn build_stages_with(&self, only: Option<&str>, llm: Option<&Arc<LlmEnv>>) -> StageResult<Vec<Box<dyn Stage>>> {
        let chosen: Vec<&StageConfig> = match only {
            None => self.stages.iter().collect(),
            Some(name) => {
                let found: Vec<_> = self.stages.iter().filter(|s| s.name() == name).collect();
                if found.is_empty() {
                    let names: Vec<&str> = self.stages.iter().map(|s| s.name()).collect();
                    return Err(StageError::failed(
                        name,
                        format!("not in this config's [[stages]] (it has: {})", names.join(", ")),
                    ));
                }
                found
            }
        };
        chosen.into_iter().map(|s| s.build_with(llm)).collect()
    }
}

/// Resolve `p` against `base` when relative.
pub(crate) fn rebase_path(p: &mut PathBuf, base: &Path) {
    if p.is_relative() {
        *p = normalize(&base.join(&*p));
    }
}
