//! Secrets come only from environment variables named in config. A [`Secret`] cannot be serialised
//! or printed, so it cannot reach a manifest, a cache key or a log by accident.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::backend::LlmError;

/// The *name* of an environment variable that holds a secret (e.g. `OPENAI_API_KEY`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretEnv(pub String);

impl SecretEnv {
    /// Read the secret from the environment now.
    pub fn read(&self) -> Result<Secret, LlmError> {
        self.read_with(|name| std::env::var(name).ok())
    }

    /// Read the secret through `lookup` (the environment, or a map in tests).
    pub fn read_with(&self, lookup: impl FnOnce(&str) -> Option<String>) -> Result<Secret, LlmError> {
        match lookup(&self.0) {
            Some(v) if !v.is_empty() => Ok(Secret(v)),
            _ => Err(LlmError::fatal(
                "llm.no_api_key",
                format!(
                    "environment variable `{}` is not set; export it (the config names the variable, never the key)",
                    self.0
                ),
            )),
        }
    }
}

/// A secret value. `Debug` shows `***`; there is no `Display` or `Serialize`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The raw value, for the one place that needs it (an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_read_by_name_and_never_print() {
        let env = SecretEnv("MEDFORGE_TEST_SECRET_KEY".into());
        let s = env.read_with(|n| (n == "MEDFORGE_TEST_SECRET_KEY").then(|| "sk-test-0123456789".to_string())).unwrap();
        assert_eq!(s.expose(), "sk-test-0123456789");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        // Configs and manifests serialise the variable's name only.
        assert_eq!(serde_json::to_string(&env).unwrap(), "\"MEDFORGE_TEST_SECRET_KEY\"");
        let missing = env.read_with(|_| None).unwrap_err().to_string();
        assert!(missing.contains("MEDFORGE_TEST_SECRET_KEY") && missing.contains("not set"), "{missing}");
        assert!(env.read_with(|_| Some(String::new())).is_err(), "an empty value is not a key");
    }
}
