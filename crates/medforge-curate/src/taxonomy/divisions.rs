//! Per-division training folders (`<id>_<slug>/{train.jsonl, validation.jsonl, metadata.json}` and
//! `division_index.json`), as the MedGemma Korean pipeline organises its data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use medforge_data::write::{write_all, write_atomic, OutputFormat};
use medforge_data::{Error, Record, Result};
use medforge_text::rng::{derive_seed, StableRng};
use serde::{Deserialize, Serialize};

use super::{cmp_ids, Taxonomy, UNKNOWN};

/// Options of [`organize_divisions`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrganizeOptions {
    /// Divisions with fewer records are not written (they are listed under `skipped` in the index).
    pub min_samples: usize,
    /// Share of each division's records written to `validation.jsonl`.
    pub validation_fraction: f64,
    pub seed: u64,
    /// Taxonomy level of the folders; 1 = top-level divisions.
    pub level: usize,
}

impl Default for OrganizeOptions {
    fn default() -> Self {
        OrganizeOptions { min_samples: 1, validation_fraction: 0.1, seed: 42, level: 1 }
    }
}

/// One written division folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DivisionEntry {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_ko: Option<String>,
    /// Folder name under the output directory.
    pub folder: String,
    pub total: usize,
    pub train: usize,
    pub validation: usize,
}

/// A division left out for having fewer than `min_samples` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedDivision {
    pub id: String,
    pub name: String,
    pub count: usize,
}

/// `division_index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DivisionIndex {
    pub taxonomy_title: Option<String>,
    pub taxonomy_version: Option<String>,
    pub level: usize,
    pub seed: u64,
    pub min_samples: usize,
    pub validation_fraction: f64,
    pub total_records: usize,
    /// Written divisions, by id in numeric order (`UNKNOWN` last).
    pub divisions: Vec<DivisionEntry>,
    /// Divisions below `min_samples`, same order. Divisions with no records at all are not listed.
    pub skipped: Vec<SkippedDivision>,
}

/// `metadata.json` inside a division folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DivisionMetadata {
    #[serde(flatten)]
    pub entry: DivisionEntry,
    pub level: usize,
    pub seed: u64,
    pub validation_fraction: f64,
    /// Records per source dataset.
    pub sources: BTreeMap<String, usize>,
}

/// A folder-safe slug: ASCII letters and digits lower-cased, runs of anything else as one `_`,
/// at most 60 characters; `"division"` when nothing is left (e.g. a Korean-only name).
pub fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('_') {
            s.push('_');
        }
    }
    let mut s = s.trim_matches('_').to_string();
    if s.len() > 60 {
        s.truncate(60);
        s = s.trim_end_matches('_').to_string();
    }
    if s.is_empty() {
        "division".to_string()
    } else {
        s
    }
}

/// Write one training folder per division:
/// `out_dir/<id>_<slug>/{train.jsonl, validation.jsonl, metadata.json}` and `out_dir/division_index.json`.
///
/// Rows are grouped by [`Taxonomy::record_node`] at `opts.level`; rows that resolve nowhere go to an
/// `UNKNOWN_unknown` folder (subject to `min_samples` like any other). The validation rows of a
/// division are drawn by a ChaCha8 RNG seeded from `(seed, division id)`, so a division's split does
/// not change when another division gains rows. Each file keeps the input order of its rows, and the
/// lines are the canonical records unchanged (fix labels first with [`fix_labels`] if they need it).
/// `round(n * validation_fraction)` rows go to validation, but never all of them: a division keeps at
/// least one training row. Every file is written atomically. Folders of divisions that are skipped
/// now are not deleted if an earlier run wrote them; the index is the source of truth.
pub fn organize_divisions(
    records: &[Record],
    tax: &Taxonomy,
    out_dir: &Path,
    opts: &OrganizeOptions,
) -> Result<DivisionIndex> {
    if !(0.0..1.0).contains(&opts.validation_fraction) {
        return Err(Error::Config(format!(
            "organize: validation_fraction must be in [0, 1), got {}",
            opts.validation_fraction
        )));
    }
    if opts.level == 0 || opts.level > tax.max_level() {
        return Err(Error::Config(format!("organize: level must be 1..={}, got {}", tax.max_level(), opts.level)));
    }
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let id = tax.record_node(r, opts.level).map_or(UNKNOWN, |n| n.id.as_str());
        groups.entry(id.to_string()).or_default().push(i);
    }
    let mut ids: Vec<String> = groups.keys().cloned().collect();
    ids.sort_by(|a, b| (a == UNKNOWN).cmp(&(b == UNKNOWN)).then_with(|| cmp_ids(a, b)));

    let mut index = DivisionIndex {
        taxonomy_title: tax.title.clone(),
        taxonomy_version: tax.version.clone(),
        level: opts.level,
        seed: opts.seed,
        min_samples: opts.min_samples,
        validation_fraction: opts.validation_fraction,
        total_records: records.len(),
        divisions: Vec::new(),
        skipped: Vec::new(),
    };
    for id in ids {
        let rows = &groups[&id];
        let node = tax.get(&id);
        let name = node.map_or_else(|| "Unknown".to_string(), |n| n.name.clone());
        if rows.len() < opts.min_samples {
            index.skipped.push(SkippedDivision { id, name, count: rows.len() });
            continue;
        }
        let n_val = ((rows.len() as f64 * opts.validation_fraction).round() as usize).min(rows.len() - 1);
        let mut order: Vec<usize> = (0..rows.len()).collect();
        StableRng::from_seed_u64(derive_seed(opts.seed, &id)).shuffle(&mut order);
        let mut is_val = vec![false; rows.len()];
        for &k in &order[..n_val] {
            is_val[k] = true;
        }
        let (mut train, mut val) = (Vec::new(), Vec::new());
        for (k, &i) in rows.iter().enumerate() {
            let part = if is_val[k] { &mut val } else { &mut train };
            part.push(records[i].clone());
        }
        let folder = format!("{id}_{}", slug(&name));
        let dir: PathBuf = out_dir.join(&folder);
        write_all(&dir.join("train.jsonl"), OutputFormat::Jsonl, &train)?;
        write_all(&dir.join("validation.jsonl"), OutputFormat::Jsonl, &val)?;
        let entry = DivisionEntry {
            id,
            name,
            name_ko: node.and_then(|n| n.name_ko.clone()),
            folder,
            total: rows.len(),
            train: train.len(),
            validation: val.len(),
        };
        let mut sources = BTreeMap::new();
        for &i in rows {
            *sources.entry(records[i].source.clone()).or_insert(0) += 1;
        }
        let meta = DivisionMetadata {
            entry: entry.clone(),
            level: opts.level,
            seed: opts.seed,
            validation_fraction: opts.validation_fraction,
            sources,
        };
        write_json(&dir.join("metadata.json"), &meta)?;
        index.divisions.push(entry);
    }
    write_json(&out_dir.join("division_index.json"), &index)?;
    Ok(index)
}

pub(crate) fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(v).map_err(|e| Error::write(path.display().to_string(), e))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}
