//! Secrets come only from environment variables named in config. A [`Secret`] cannot be serialised
//! or printed, so it cannot reach a manifest or a log by accident.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The *name* of an environment variable that holds a secret (e.g. `OPENAI_API_KEY`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretEnv(pub String);

impl SecretEnv {
    /// Read the secret now.
    pub fn read(&self) -> Result<Secret> {
        match std::env::var(&self.0) {
            Ok(v) if !v.is_empty() => Ok(Secret(v)),
            _ => Err(Error::Config(format!(
                "environment variable `{}` is not set; export it (the config names the variable, never the key)",
                self.0
            ))),
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
