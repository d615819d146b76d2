//! The `[llm]` section of a pipeline config: backends, cache, budget and how failed rows are treated.
//!
//! ```toml
//! [llm]
//! budget_usd = 2.0                  # the whole run; stops cleanly before a call would pass it
//! cache = "cache/llm.sqlite"        # default: <run.output>/llm_cache.sqlite, shared by every run
//! window = 32                       # requests started at once per stage (endpoints cap it further)
//! on_failure = "drop"               # or "keep": what happens to a row whose call finally failed
//! [[llm.endpoints]]                 # the default backend
//! base_url = "https://api.openai.com/v1"
//! model = "gpt-4o-mini"
//! api_key_env = "OPENAI_API_KEY"    # the variable's NAME; the key is read from the environment
//! [[llm.backends.teacher.endpoints]] # a named backend, picked with `backend = "teacher"`
//! base_url = "http://10.0.0.1:8000/v1"
//! model = "Qwen/Qwen2.5-72B-Instruct"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, LlmError};
use crate::client::CacheMode;
use crate::openai::{EndpointConfig, Fleet, OpenAiBackend};

/// The backend stages use unless they name another.
pub const DEFAULT_BACKEND: &str = "default";

fn default_window() -> usize {
    32
}

/// What happens to a row whose LLM call finally failed (retries spent, 400, content filter, an
/// unusable answer). Either way it is written to `failed.jsonl` for `medforge retry-failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Drop it with `llm.failed:<code>`: the curated set holds only rows the stage really processed.
    #[default]
    Drop,
    /// Keep it unchanged (the annotation still carries `llm.failed:<code>`): for optional enrichment.
    Keep,
}

/// A named backend: one endpoint, or several serving one model (a load-balanced fleet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedBackend {
    pub endpoints: Vec<EndpointConfig>,
}

/// The `[llm]` section of a pipeline config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSection {
    /// The `default` backend.
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
    #[serde(default)]
    pub backends: BTreeMap<String, NamedBackend>,
    #[serde(default)]
    pub cache: Option<PathBuf>,
    #[serde(default)]
    pub cache_mode: CacheMode,
    #[serde(default)]
    pub budget_usd: Option<f64>,
    #[serde(default = "default_window")]
    pub window: usize,
    #[serde(default)]
    pub on_failure: OnFailure,
}

impl LlmSection {
    /// The cache file: `cache`, or `<run.output>/llm_cache.sqlite` (shared by every run of the config).
    pub fn cache_path(&self, run_output: &Path) -> PathBuf {
        self.cache.clone().unwrap_or_else(|| run_output.join("llm_cache.sqlite"))
    }

    pub fn endpoints_of(&self, name: &str) -> Option<&[EndpointConfig]> {
        if name == DEFAULT_BACKEND && !self.endpoints.is_empty() {
            return Some(&self.endpoints);
        }
        self.backends.get(name).map(|b| b.endpoints.as_slice())
    }

    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.backends.keys().cloned().collect();
        if !self.endpoints.is_empty() {
            n.insert(0, DEFAULT_BACKEND.to_string());
        }
        n
    }
}

/// One endpoint: an [`OpenAiBackend`]; several: a [`Fleet`].
pub fn build_backend(endpoints: &[EndpointConfig]) -> Result<Arc<dyn Backend>, LlmError> {
    match endpoints {
        [] => Err(LlmError::fatal("llm.config", "no LLM endpoint configured: add an [[llm.endpoints]] table")),
        [one] => Ok(Arc::new(OpenAiBackend::new(one.clone())?)),
        many => Ok(Arc::new(Fleet::new(many.to_vec())?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_builds() {
        let cfg: LlmSection = toml::from_str(
            "budget_usd = 2.5\ncache_mode = \"refresh\"\n\
             [[endpoints]]\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\n\
             [[backends.teacher.endpoints]]\nbase_url = \"http://127.0.0.1:2/v1\"\nmodel = \"t\"\n",
        )
        .unwrap();
        assert_eq!(cfg.cache_mode, CacheMode::Refresh);
        assert_eq!(cfg.window, 32);
        assert_eq!(cfg.names(), vec!["default", "teacher"]);
        assert_eq!(cfg.endpoints_of("teacher").unwrap()[0].model, "t");
        assert_eq!(cfg.cache_path(Path::new("runs")), Path::new("runs/llm_cache.sqlite"));
        let backend = build_backend(cfg.endpoints_of("default").unwrap()).unwrap();
        assert!(backend.identity().starts_with("openai-compat:http://127.0.0.1:1"));
        assert!(build_backend(&[]).is_err());
        assert!(toml::from_str::<LlmSection>("budget = 1").is_err());
    }
}
