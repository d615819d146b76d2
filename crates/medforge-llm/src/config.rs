//! The `[llm]` section of a config: endpoints, cache, budget.
//!
//! ```toml
//! [llm]
//! budget_usd = 5.0
//! cache = "cache/llm.sqlite"       # opened as given: callers rebase it like other config paths
//! cache_mode = "use"               # use | refresh | off  (--refresh, --no-cache)
//! [[llm.endpoints]]
//! base_url = "http://10.0.0.1:8000/v1"
//! model = "Qwen/Qwen2.5-7B-Instruct"
//! [[llm.endpoints]]                # more endpoints for the same model: a load-balanced fleet
//! base_url = "http://10.0.0.2:8000/v1"
//! model = "Qwen/Qwen2.5-7B-Instruct"
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, LlmError};
use crate::cache::Cache;
use crate::client::{CacheMode, LlmClient};
use crate::openai::{EndpointConfig, Fleet, OpenAiBackend};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    pub endpoints: Vec<EndpointConfig>,
    #[serde(default)]
    pub cache: Option<PathBuf>,
    #[serde(default)]
    pub cache_mode: CacheMode,
    #[serde(default)]
    pub budget_usd: Option<f64>,
}

/// One endpoint: an [`OpenAiBackend`]; several: a [`Fleet`].
pub fn build_backend(endpoints: &[EndpointConfig]) -> Result<Arc<dyn Backend>, LlmError> {
    match endpoints {
        [] => Err(LlmError::fatal("llm.config", "no LLM endpoint configured: add an [[llm.endpoints]] table")),
        [one] => Ok(Arc::new(OpenAiBackend::new(one.clone())?)),
        many => Ok(Arc::new(Fleet::new(many.to_vec())?)),
    }
}

impl LlmConfig {
    /// The client this config describes (the cache file is opened, the key read now).
    pub fn client(&self) -> Result<LlmClient, LlmError> {
        let mut c = LlmClient::new(build_backend(&self.endpoints)?).with_budget(self.budget_usd);
        if let Some(path) = &self.cache {
            let cache = Cache::open(path).map_err(|e| LlmError::fatal("llm.cache", e.to_string()))?;
            c = c.with_cache(Arc::new(cache), self.cache_mode);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_builds() {
        let cfg: LlmConfig = serde_json::from_value(serde_json::json!({
            "budget_usd": 2.5, "cache_mode": "refresh",
            "endpoints": [{"base_url": "http://127.0.0.1:1/v1", "model": "m"}, {"base_url": "http://127.0.0.1:2/v1", "model": "m"}]
        }))
        .unwrap();
        assert_eq!(cfg.cache_mode, CacheMode::Refresh);
        let c = cfg.client().unwrap();
        assert!(c.backend().identity().starts_with("openai-compat-fleet:"));
        assert!(build_backend(&cfg.endpoints[..1]).unwrap().identity().starts_with("openai-compat:http://127.0.0.1:1"));
        assert!(build_backend(&[]).is_err());
        assert!(serde_json::from_value::<LlmConfig>(serde_json::json!({"endpoints": [], "budget": 1})).is_err());
    }
}
