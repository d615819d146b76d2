//! The keys every LLM stage shares, declared once: `backend`, `system`, `prompt` and `params`. A stage's config is
//! [`LlmStageConfig`]: these keys and the stage's own settings in one flat table, as users write it:
//!
//! ```toml
//! [[stages]]
//! stage = "label"
//! backend = "teacher"                       # shared: a named backend of [llm] (default: `default`)
//! system = "You are a medical librarian."    # shared: the system message template
//! params = { max_tokens = 32, temperature = 0.0 }
//! taxonomy = "med_division.json"            # the stage's own
//! ```
//!
//! A stage that takes another shape (`dpo_pairs` has a backend and a system prompt per side) says so, and a shared
//! key it does not take is an error naming what to write instead.

use std::ops::Deref;

use medforge_llm::GenParams;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::llm::{LlmEnv, DEFAULT_BACKEND};
use crate::stage::StageResult;

/// `backend`, `system`, `prompt` and `params` of one LLM stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlmCall {
    /// A backend named in `[llm]`; `default` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The system message template (the stage's default when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The user message template (the stage's default when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Generation parameters (the stage's defaults when unset).
    pub params: GenParams,
}

impl LlmCall {
    /// The backend's name, checked against the run's `[llm]` section.
    pub fn backend(&self, stage: &str, env: &LlmEnv) -> StageResult<String> {
        let name = self.backend.clone().unwrap_or_else(|| DEFAULT_BACKEND.into());
        env.check_backend(stage, &name)?;
        Ok(name)
    }

    /// The system template, or `default`.
    pub fn system_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.system.as_deref().unwrap_or(default)
    }

    /// The user template, or `default`.
    pub fn prompt_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.prompt.as_deref().unwrap_or(default)
    }
}

/// What a stage's own settings declare about the shared keys.
pub trait StageSettings: Serialize + DeserializeOwned {
    /// The stage name, for messages.
    const STAGE: &'static str;
    /// The shared keys the stage reads; another shared key is an error.
    const CALL_KEYS: &'static [&'static str] = &["backend", "system", "prompt", "params"];
    /// Shared keys the stage cannot do without.
    const REQUIRED: &'static [&'static str] = &[];

    /// `params` when the config gives none.
    fn default_params() -> GenParams;

    /// What to write instead of a shared key this stage does not take.
    fn instead(_key: &str) -> Option<&'static str> {
        None
    }
}

/// An LLM stage's config: the shared call keys and the stage's settings `S`, read from one flat table. Derefs to
/// `S`, so a stage reads its own settings as `cfg.field` and the shared ones as `cfg.call.params`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlmStageConfig<S> {
    #[serde(flatten)]
    pub call: LlmCall,
    #[serde(flatten)]
    pub settings: S,
}

impl<S> Deref for LlmStageConfig<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.settings
    }
}

impl<S> std::ops::DerefMut for LlmStageConfig<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.settings
    }
}

const SHARED: [&str; 4] = ["backend", "system", "prompt", "params"];

impl<'de, S: StageSettings> Deserialize<'de> for LlmStageConfig<S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut table = Map::<String, Value>::deserialize(d)?;
        let mut shared = Map::new();
        for key in SHARED {
            if let Some(v) = table.remove(key) {
                if !S::CALL_KEYS.contains(&key) {
                    let hint = S::instead(key).map(|h| format!("; {h}")).unwrap_or_default();
                    return Err(D::Error::custom(format!("`{key}` is not a key of the {} stage{hint}", S::STAGE)));
                }
                shared.insert(key.to_string(), v);
            }
        }
        for key in S::REQUIRED {
            if !shared.contains_key(*key) {
                return Err(D::Error::custom(format!("missing field `{key}` (the {} stage needs it)", S::STAGE)));
            }
        }
        let text = |key: &str| -> Result<Option<String>, D::Error> {
            shared
                .get(key)
                .map(|v| String::deserialize(v).map_err(|e| D::Error::custom(format!("{key}: {e}"))))
                .transpose()
        };
        let params = match shared.get("params") {
            Some(v) => GenParams::deserialize(v).map_err(|e| D::Error::custom(format!("params: {e}")))?,
            None => S::default_params(),
        };
        let call = LlmCall { backend: text("backend")?, system: text("system")?, prompt: text("prompt")?, params };
        let settings = S::deserialize(Value::Object(table)).map_err(D::Error::custom)?;
        Ok(LlmStageConfig { call, settings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Own {
        field: String,
    }

    impl StageSettings for Own {
        const STAGE: &'static str = "own";
        const CALL_KEYS: &'static [&'static str] = &["prompt", "params"];
        fn default_params() -> GenParams {
            GenParams { max_tokens: Some(7), ..Default::default() }
        }
        fn instead(key: &str) -> Option<&'static str> {
            (key == "backend").then_some("use `left_backend` and `right_backend`")
        }
    }

    #[test]
    fn shared_and_own_keys_in_one_table() {
        let c: LlmStageConfig<Own> = toml::from_str("field = \"x\"\nprompt = \"p\"").unwrap();
        assert_eq!(c.field, "x");
        assert_eq!(c.call.prompt.as_deref(), Some("p"));
        assert_eq!(c.call.params.max_tokens, Some(7), "the stage's default params");
        let c: LlmStageConfig<Own> = toml::from_str("field = \"x\"\nparams = { max_tokens = 3 }").unwrap();
        assert_eq!(c.call.params.max_tokens, Some(3));
        let back: LlmStageConfig<Own> = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);

        let e = toml::from_str::<LlmStageConfig<Own>>("field = \"x\"\nbackend = \"b\"").unwrap_err().to_string();
        assert!(e.contains("`backend` is not a key of the own stage; use `left_backend`"), "{e}");
        let e = toml::from_str::<LlmStageConfig<Own>>("field = \"x\"\nfeild = 1").unwrap_err().to_string();
        assert!(e.contains("unknown field `feild`"), "{e}");
        assert!(toml::from_str::<LlmStageConfig<Own>>("field = \"x\"\nprompt = 3").is_err());
    }
}
