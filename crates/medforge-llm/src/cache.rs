//! The persistent response cache: one SQLite file (WAL mode), one row per request key.
//!
//! Each `put` is its own committed transaction, so a run killed with `kill -9` loses at most the
//! call in flight: everything already answered is found again on the re-run. (`synchronous =
//! NORMAL` in WAL mode is durable against process death; a power cut may lose the last commits.)
//!
//! Calls are short (a primary-key lookup or one insert), so they run on the calling thread under a
//! mutex rather than on a blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::backend::{ChatRequest, ChatResponse, GenParams, Message};

/// Bumped when the key layout changes, so old entries are never read with a new meaning.
const KEY_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("cache {path}: stored response for key {key} is unreadable: {source}")]
    Corrupt { path: PathBuf, key: String, source: serde_json::Error },
}

#[derive(Serialize)]
struct KeyMaterial<'a> {
    v: u32,
    identity: &'a str,
    model: &'a str,
    template_version: &'a str,
    messages: &'a [Message],
    params: &'a GenParams,
}

/// The cache key: hex sha256 over the backend identity, the model, the prompt-template version, the
/// fully rendered messages and every generation parameter (as canonical JSON, `null` for unset).
pub fn cache_key(identity: &str, model: &str, template_version: &str, req: &ChatRequest) -> String {
    let m =
        KeyMaterial { v: KEY_VERSION, identity, model, template_version, messages: &req.messages, params: &req.params };
    let bytes = serde_json::to_vec(&m).expect("key material serialises");
    hex::encode(Sha256::digest(&bytes))
}

/// A response cache on one SQLite file. Several processes may share it (WAL, busy timeout).
#[derive(Debug)]
pub struct Cache {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Cache {
    pub fn open(path: &Path) -> Result<Cache, CacheError> {
        let err = |source| CacheError::Sqlite { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(err)?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(err)?;
        debug_assert!(mode.eq_ignore_ascii_case("wal") || path.as_os_str() == ":memory:");
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS responses (
                key TEXT PRIMARY KEY NOT NULL,
                identity TEXT NOT NULL,
                model TEXT NOT NULL,
                template_version TEXT NOT NULL,
                response TEXT NOT NULL,
                created_unix INTEGER NOT NULL
            )",
        )
        .map_err(err)?;
        Ok(Cache { path: path.to_path_buf(), conn: Mutex::new(conn) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, source: rusqlite::Error) -> CacheError {
        CacheError::Sqlite { path: self.path.clone(), source }
    }

    pub fn get(&self, key: &str) -> Result<Option<ChatResponse>, CacheError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let row: Option<String> = conn
            .query_row("SELECT response FROM responses WHERE key = ?1", params![key], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))?;
        drop(conn);
        match row {
            None => Ok(None),
            Some(s) => serde_json::from_str(&s).map(Some).map_err(|source| CacheError::Corrupt {
                path: self.path.clone(),
                key: key.to_string(),
                source,
            }),
        }
    }

    /// Store a response. Call only after it passed validation. Committed before returning.
    pub fn put(
        &self,
        key: &str,
        identity: &str,
        model: &str,
        template_version: &str,
        resp: &ChatResponse,
    ) -> Result<(), CacheError> {
        let json = serde_json::to_string(resp).expect("response serialises");
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.execute(
            "INSERT OR REPLACE INTO responses (key, identity, model, template_version, response, created_unix)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![key, identity, model, template_version, json, now],
        )
        .map_err(|e| self.sql(e))?;
        Ok(())
    }

    pub fn len(&self) -> Result<u64, CacheError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.query_row("SELECT COUNT(*) FROM responses", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.sql(e))
    }

    pub fn is_empty(&self) -> Result<bool, CacheError> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Usage;

    fn resp(t: &str) -> ChatResponse {
        ChatResponse {
            text: t.into(),
            usage: Usage { prompt_tokens: 1, completion_tokens: 2 },
            finish_reason: "stop".into(),
            retries: 3,
            choice_logprobs: None,
        }
    }

    #[test]
    fn key_covers_every_input() {
        let req = ChatRequest::user("q");
        let k = cache_key("id", "m", "v1", &req);
        assert_eq!(k.len(), 64);
        assert_eq!(k, cache_key("id", "m", "v1", &req.clone()));
        assert_ne!(k, cache_key("id2", "m", "v1", &req));
        assert_ne!(k, cache_key("id", "m2", "v1", &req));
        assert_ne!(k, cache_key("id", "m", "v2", &req));
        assert_ne!(k, cache_key("id", "m", "v1", &ChatRequest::user("q ")));
        let mut p = req.clone();
        p.params.temperature = Some(0.0);
        assert_ne!(k, cache_key("id", "m", "v1", &p));
        let mut p = req.clone();
        p.params.seed = Some(0);
        assert_ne!(k, cache_key("id", "m", "v1", &p));
        let mut p = req.clone();
        p.params.stop = vec!["x".into()];
        assert_ne!(k, cache_key("id", "m", "v1", &p));
        let mut p = req.clone();
        p.params.response_format = Some(serde_json::json!({"type": "json_object"}));
        assert_ne!(k, cache_key("id", "m", "v1", &p));
        let mut p = req.clone();
        p.messages[0].role = crate::backend::Role::System;
        assert_ne!(k, cache_key("id", "m", "v1", &p));
    }

    #[test]
    fn put_get_persists_across_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cache.sqlite");
        let c = Cache::open(&path).unwrap();
        assert!(c.get("k").unwrap().is_none());
        c.put("k", "id", "m", "v1", &resp("a")).unwrap();
        drop(c);
        let c2 = Cache::open(&path).unwrap();
        let got = c2.get("k").unwrap().unwrap();
        assert_eq!(got.text, "a");
        assert_eq!(got.retries, 0, "retries are not cached");
        c2.put("k", "id", "m", "v1", &resp("b")).unwrap();
        assert_eq!(c2.get("k").unwrap().unwrap().text, "b");
        assert_eq!(c2.len().unwrap(), 1);
    }
}
