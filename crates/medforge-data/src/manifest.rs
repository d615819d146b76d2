//! Run folders and their `manifest.json`: what ran, on which exact inputs, with which config, and how
//! many rows each step kept.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_HASH: &str = env!("MEDFORGE_GIT_HASH");

/// A run's output folder, `<root>/<version>_<UTC timestamp>/`.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
    pub started: chrono::DateTime<chrono::Utc>,
}

impl RunDir {
    pub fn create(root: &Path) -> Result<RunDir> {
        let started = chrono::Utc::now();
        let stamp = started.format("%Y%m%dT%H%M%SZ");
        std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        for n in 0..1000 {
            let name = if n == 0 { format!("{VERSION}_{stamp}") } else { format!("{VERSION}_{stamp}_{n}") };
            let path = root.join(name);
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir { path, started }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Err(Error::Config(format!("{}: too many runs in the same second", root.display())))
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Point `<root>/latest` at this run (a relative symlink, swapped in by rename), so configs can name
    /// `<output>/latest/formatted` for the newest complete run. Called once the run has finished; a run that failed
    /// leaves the previous `latest` in place. A no-op where symlinks are not available.
    pub fn mark_latest(&self) -> Result<()> {
        #[cfg(unix)]
        {
            let (Some(root), Some(name)) = (self.path.parent(), self.path.file_name()) else { return Ok(()) };
            let link = root.join("latest");
            let tmp = root.join(format!(".latest.{}", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(name, &tmp).map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, &link).map_err(|e| Error::io(&link, e))?;
        }
        Ok(())
    }
}

/// Identity of one input: its files and their combined sha256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputHash {
    pub path: PathBuf,
    pub files: u64,
    pub bytes: u64,
    /// sha256 of the file, or for a folder of (relative path, NUL, content) over its sorted files.
    pub sha256: String,
}

/// Hash a file or folder (all regular files, sorted by path).
pub fn hash_input(path: &Path) -> Result<InputHash> {
    let mut files = Vec::new();
    if path.is_dir() {
        let mut stack = vec![path.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
                let p = e.map_err(|e| Error::io(&d, e))?.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files.push(p);
                }
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut h = Sha256::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    for f in &files {
        if path.is_dir() {
            let rel = f.strip_prefix(path).unwrap_or(f);
            h.update(rel.to_string_lossy().as_bytes());
            h.update([0u8]);
        }
        let mut file = std::fs::File::open(f).map_err(|e| Error::io(f, e))?;
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(f, e))?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            h.update(&buf[..n]);
        }
    }
    Ok(InputHash { path: path.to_path_buf(), files: files.len() as u64, bytes, sha256: hex::encode(h.finalize()) })
}

/// Rows in and out of one step, with drop/reject reasons.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepCount {
    pub name: String,
    pub rows_in: u64,
    pub rows_out: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reasons: BTreeMap<String, u64>,
}

/// One written output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputInfo {
    pub path: PathBuf,
    pub format: String,
    pub rows: u64,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub medforge_version: String,
    pub git_hash: String,
    pub command: Vec<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub seed: u64,
    /// The resolved config (presets applied). Holds only the *names* of secret env vars, never values.
    pub config: serde_json::Value,
    pub inputs: Vec<InputHash>,
    pub steps: Vec<StepCount>,
    pub outputs: Vec<OutputInfo>,
    /// Rejected input rows by reason code (details in `rejects.jsonl`).
    pub rejects: BTreeMap<String, u64>,
}

impl Manifest {
    pub fn new(run: &RunDir, seed: u64, config: serde_json::Value) -> Manifest {
        Manifest {
            medforge_version: VERSION.to_string(),
            git_hash: GIT_HASH.to_string(),
            command: std::env::args().collect(),
            started_at: run.started.to_rfc3339(),
            finished_at: None,
            seed,
            config,
            inputs: Vec::new(),
            steps: Vec::new(),
            outputs: Vec::new(),
            rejects: BTreeMap::new(),
        }
    }

    /// Write `manifest.json` atomically into `dir`.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join("manifest.json");
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::write("manifest.json", e))?;
        crate::write::write_atomic(&path, &text)?;
        Ok(path)
    }

    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: not a medforge manifest: {e}", path.display())))
    }

    /// The config file the run was started with (`config.config_file`), as recorded.
    pub fn config_file(&self) -> Option<PathBuf> {
        self.config["config_file"].as_str().map(PathBuf::from)
    }

    /// The one stage the run was limited to (`--only`), if any.
    pub fn only_stage(&self) -> Option<&str> {
        self.config["only"].as_str()
    }
}

/// The current UTC time, RFC 3339.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339()
}
