//! Specialty and division taxonomies: loading, label lookup and repair, distributions, and per-division
//! training folders.
//!
//! A taxonomy is either a tree (`{title, version, nodes: [{id, name, children: [...]}]}`, ids like
//! `"1"`, `"1.2"`, `"1.2.3"`, as in ormastes/medgemma_korean's `med_division.json`) or a flat list
//! (`[{name, description}]`, a JSON list of strings, or a text file with one name per line). Flat
//! lists get positional ids `"1"`, `"2"`, ... in file order (or the item's own `id` if it has one), so
//! that a classifier shown a numbered list can answer with the number, exactly as with the tree.
//!
//! Labels written by people or LLMs are messy (`"3"`, `"03"`, `"3.0"`, `"Neurology"`,
//! `"1.4.1 Ischemic heart disease"`, `"1.9.9"`); [`fix_labels`] turns them into valid ids and says
//! what it removed and what it mapped, so a labelling run can be audited.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use medforge_data::write::{write_all, write_atomic, OutputFormat};
use medforge_data::{Error, Record, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use medforge_text::rng::{derive_seed, StableRng};

/// The label given to rows with no valid label, so that "unlabelled" is explicit in every output
/// rather than an empty list that a later stage might mistake for "not yet labelled".
pub const UNKNOWN: &str = "UNKNOWN";

/// One taxonomy entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaxonomyNode {
    pub id: String,
    pub name: String,
    /// Korean name, from a `name_ko` field when the file has one.
    pub name_ko: Option<String>,
    pub description: Option<String>,
    pub parent: Option<String>,
    /// 1 for top-level divisions (and every entry of a flat list).
    pub level: usize,
    /// Child ids, in file order.
    pub children: Vec<String>,
}

/// A loaded taxonomy. Nodes keep file order (pre-order for trees).
#[derive(Debug, Clone)]
pub struct Taxonomy {
    pub title: Option<String>,
    pub version: Option<String>,
    nodes: Vec<TaxonomyNode>,
    by_id: HashMap<String, usize>,
    /// Normalised `name` and `name_ko` -> nodes. Names repeat across a tree ("Diagnostics" sits under
    /// seven divisions), so a name can map to several nodes.
    by_name: HashMap<String, Vec<usize>>,
    /// Normalised names without a trailing parenthetical ("Infectious Diseases" for
    /// "Infectious Diseases (Cross-Cutting)"), consulted only when `by_name` has no match.
    by_alias: HashMap<String, Vec<usize>>,
}

#[derive(Deserialize)]
struct RawTree {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    version: Option<Value>,
    nodes: Vec<RawNode>,
}

#[derive(Deserialize)]
struct RawNode {
    id: Value,
    name: String,
    #[serde(default)]
    name_ko: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    children: Vec<RawNode>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawFlatItem {
    Name(String),
    Entry {
        #[serde(default)]
        id: Option<Value>,
        name: String,
        #[serde(default)]
        name_ko: Option<String>,
        #[serde(default)]
        description: Option<String>,
    },
}

fn id_string(v: &Value, ctx: &str) -> Result<String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        other => return Err(Error::Config(format!("{ctx}: taxonomy id must be a string or number, got {other}"))),
    };
    if s.is_empty() {
        return Err(Error::Config(format!("{ctx}: empty taxonomy id")));
    }
    Ok(s)
}

/// Trim, lower-case, and collapse inner whitespace, so "  Neurology " and "neurology" match.
fn norm_name(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// "Infectious Diseases (Cross-Cutting)" -> "Infectious Diseases"; `None` when there is nothing to strip.
fn strip_parenthetical(s: &str) -> Option<&str> {
    let t = s.trim_end();
    if !t.ends_with(')') {
        return None;
    }
    let open = t.rfind('(')?;
    let head = t[..open].trim_end();
    (!head.is_empty()).then_some(head)
}

/// A dotted numeric id in canonical form: `"03"` -> `"3"`, `"1.02."` -> `"1.2"`, `"(3)"` -> `"3"`.
/// `None` unless every segment is digits.
fn numeric_id(label: &str) -> Option<String> {
    let s = label.trim().trim_start_matches(['#', '(']).trim_end_matches(['.', ')', ':']);
    if s.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for seg in s.split('.') {
        if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let t = seg.trim_start_matches('0');
        out.push(if t.is_empty() { "0" } else { t });
    }
    Some(out.join("."))
}

/// Compare ids segment by segment, numerically where both segments are numbers: "2" < "10" < "10.1".
pub fn cmp_ids(a: &str, b: &str) -> std::cmp::Ordering {
    let mut x = a.split('.');
    let mut y = b.split('.');
    loop {
        match (x.next(), y.next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(p), Some(q)) => {
                let o = match (p.parse::<u64>(), q.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n).then(p.cmp(q)),
                    _ => p.cmp(q),
                };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// How one raw label resolved.
#[derive(Debug, Clone, PartialEq)]
enum Resolution {
    /// The label is an id as written.
    Exact(usize),
    /// The label named a node some other way (numeric form, name, "id name").
    Mapped(usize),
    /// A name shared by several nodes.
    Ambiguous(Vec<usize>),
    NotFound,
}

impl Taxonomy {
    /// Load a tree or flat list; the format is detected from the content (a `.txt` file is always read
    /// as one name per line; blank lines and lines starting with `#` are skipped).
    pub fn load(path: &Path) -> Result<Taxonomy> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let ctx = path.display().to_string();
        let is_txt = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("txt"));
        let first = text.trim_start().chars().next();
        if !is_txt && matches!(first, Some('{') | Some('[')) {
            let v: Value = serde_json::from_str(&text).map_err(|e| Error::Config(format!("{ctx}: {e}")))?;
            Taxonomy::from_json(v, &ctx)
        } else {
            Taxonomy::from_lines(&text, &ctx)
        }
    }

    /// Build from parsed JSON (tree object or flat list).
    pub fn from_json(v: Value, ctx: &str) -> Result<Taxonomy> {
        match v {
            Value::Object(_) => {
                let raw: RawTree = serde_json::from_value(v).map_err(|e| {
                    Error::Config(format!("{ctx}: not a taxonomy tree ({{title, version, nodes}}): {e}"))
                })?;
                let version = raw.version.map(|v| match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                });
                let mut nodes = Vec::new();
                for n in raw.nodes {
                    flatten(n, None, 1, &mut nodes, ctx)?;
                }
                Taxonomy::build(raw.title, version, nodes, ctx)
            }
            Value::Array(items) => {
                let mut nodes = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let item: RawFlatItem = serde_json::from_value(item).map_err(|e| {
                        Error::Config(format!("{ctx}: item {i}: expected a name or {{name, description}}: {e}"))
                    })?;
                    let (id, name, name_ko, description) = match item {
                        RawFlatItem::Name(name) => ((i + 1).to_string(), name, None, None),
                        RawFlatItem::Entry { id, name, name_ko, description } => {
                            let id = match id {
                                Some(v) => id_string(&v, &format!("{ctx}: item {i}"))?,
                                None => (i + 1).to_string(),
                            };
                            (id, name, name_ko, description)
                        }
                    };
                    nodes.push(leaf(id, name, name_ko, description));
                }
                Taxonomy::build(None, None, nodes, ctx)
            }
            _ => Err(Error::Config(format!("{ctx}: a taxonomy is a JSON object with `nodes` or a JSON list"))),
        }
    }

    /// Build from text, one name per line.
    pub fn from_lines(text: &str, ctx: &str) -> Result<Taxonomy> {
        let names = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        let nodes = names.enumerate().map(|(i, n)| leaf((i + 1).to_string(), n.to_string(), None, None)).collect();
        Taxonomy::build(None, None, nodes, ctx)
    }

    fn build(title: Option<String>, version: Option<String>, nodes: Vec<TaxonomyNode>, ctx: &str) -> Result<Taxonomy> {
        if nodes.is_empty() {
            return Err(Error::Config(format!("{ctx}: taxonomy has no entries")));
        }
        let mut t = Taxonomy {
            title,
            version,
            nodes,
            by_id: HashMap::new(),
            by_name: HashMap::new(),
            by_alias: HashMap::new(),
        };
        for (i, n) in t.nodes.iter().enumerate() {
            if n.name.trim().is_empty() {
                return Err(Error::Config(format!("{ctx}: taxonomy entry {} has an empty name", n.id)));
            }
            if n.id.eq_ignore_ascii_case(UNKNOWN) {
                return Err(Error::Config(format!("{ctx}: `{UNKNOWN}` is reserved and cannot be a taxonomy id")));
            }
            if t.by_id.insert(n.id.clone(), i).is_some() {
                return Err(Error::Config(format!("{ctx}: duplicate taxonomy id {}", n.id)));
            }
            for name in std::iter::once(&n.name).chain(n.name_ko.as_ref()) {
                let key = norm_name(name);
                if !key.is_empty() {
                    push_unique(t.by_name.entry(key).or_default(), i);
                }
                if let Some(alias) = strip_parenthetical(name) {
                    push_unique(t.by_alias.entry(norm_name(alias)).or_default(), i);
                }
            }
        }
        Ok(t)
    }

    /// All nodes in file order.
    pub fn nodes(&self) -> &[TaxonomyNode] {
        &self.nodes
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The deepest level present (1 for flat lists).
    pub fn max_level(&self) -> usize {
        self.nodes.iter().map(|n| n.level).max().unwrap_or(0)
    }

    /// Nodes at one level, in file order.
    pub fn level(&self, level: usize) -> impl Iterator<Item = &TaxonomyNode> {
        self.nodes.iter().filter(move |n| n.level == level)
    }

    /// Top-level divisions, in file order.
    pub fn top_level(&self) -> impl Iterator<Item = &TaxonomyNode> {
        self.level(1)
    }

    /// A node by exact id.
    pub fn get(&self, id: &str) -> Option<&TaxonomyNode> {
        self.by_id.get(id).map(|&i| &self.nodes[i])
    }

    /// The node a name (or Korean name) uniquely identifies: trimmed, case-insensitive, whitespace
    /// collapsed; a trailing parenthetical may be omitted. `None` when no node or several share it
    /// (see [`Taxonomy::nodes_named`]).
    pub fn by_name(&self, name: &str) -> Option<&TaxonomyNode> {
        match self.name_candidates(name) {
            [i] => Some(&self.nodes[*i]),
            _ => None,
        }
    }

    /// Every node with this name.
    pub fn nodes_named(&self, name: &str) -> Vec<&TaxonomyNode> {
        self.name_candidates(name).iter().map(|&i| &self.nodes[i]).collect()
    }

    fn name_candidates(&self, name: &str) -> &[usize] {
        let key = norm_name(name);
        self.by_name.get(&key).or_else(|| self.by_alias.get(&key)).map_or(&[], Vec::as_slice)
    }

    /// The node a single label denotes (exact id, numeric form, unique name, or "id name"); see
    /// [`fix_labels`] for the rules.
    pub fn resolve(&self, label: &str) -> Option<&TaxonomyNode> {
        match self.resolve_idx(label) {
            Resolution::Exact(i) | Resolution::Mapped(i) => Some(&self.nodes[i]),
            _ => None,
        }
    }

    fn resolve_idx(&self, label: &str) -> Resolution {
        let t = label.trim();
        if let Some(&i) = self.by_id.get(t) {
            return Resolution::Exact(i);
        }
        if let Some(i) = self.numeric_idx(t) {
            return Resolution::Mapped(i);
        }
        match self.name_candidates(t) {
            [i] => return Resolution::Mapped(*i),
            [] => {}
            many => return Resolution::Ambiguous(many.to_vec()),
        }
        // "1.4.1 Ischemic heart disease", "3. Gastroenterology", "2 - Respiratory".
        if let Some((head, rest)) = t.split_once(char::is_whitespace) {
            if let Some(i) = self.numeric_idx(head.trim_end_matches(['-', ':'])) {
                let rest = rest.trim().trim_start_matches(['-', ':', '.', ')']).trim();
                let named = self.name_candidates(rest);
                // The name may be paraphrased; only a name that points elsewhere makes it a conflict.
                if rest.is_empty() || named.is_empty() || named.contains(&i) {
                    return Resolution::Mapped(i);
                }
            }
        }
        Resolution::NotFound
    }

    /// A numeric label in canonical form; a pandas-style float `"3.0"` also matches `"3"` when `"3.0"`
    /// is not itself an id.
    fn numeric_idx(&self, label: &str) -> Option<usize> {
        let id = numeric_id(label)?;
        if let Some(&i) = self.by_id.get(&id) {
            return Some(i);
        }
        let base = id.strip_suffix(".0")?;
        self.by_id.get(base).copied()
    }

    /// The ancestor of `id` at `level` (the node itself when it is at that level). A node above
    /// `level` is returned as is: a row labelled only "1" is still counted under "1" at level 2.
    pub fn ancestor_at(&self, id: &str, level: usize) -> Option<&TaxonomyNode> {
        let mut n = self.get(id)?;
        while n.level > level.max(1) {
            n = self.get(n.parent.as_deref()?)?;
        }
        Some(n)
    }

    /// True when `id` is `ancestor` or lies below it.
    pub fn is_within(&self, id: &str, ancestor: &str) -> bool {
        let mut cur = self.get(id);
        while let Some(n) = cur {
            if n.id == ancestor {
                return true;
            }
            cur = n.parent.as_deref().and_then(|p| self.get(p));
        }
        false
    }

    /// The node a record belongs to at `level`: the first of `division`, `divisions`, `specialty`,
    /// `specialties` that resolves, rolled up to `level`.
    pub fn record_node(&self, r: &Record, level: usize) -> Option<&TaxonomyNode> {
        let labels = r
            .division
            .iter()
            .chain(&r.divisions)
            .chain(r.specialty.iter())
            .chain(&r.specialties)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty());
        labels.filter_map(|l| self.resolve(l)).find_map(|n| self.ancestor_at(&n.id, level))
    }
}

fn push_unique(v: &mut Vec<usize>, i: usize) {
    if !v.contains(&i) {
        v.push(i);
    }
}

fn leaf(id: String, name: String, name_ko: Option<String>, description: Option<String>) -> TaxonomyNode {
    TaxonomyNode {
        id,
        name: name.trim().to_string(),
        name_ko,
        description,
        parent: None,
        level: 1,
        children: Vec::new(),
    }
}

fn flatten(n: RawNode, parent: Option<&str>, level: usize, out: &mut Vec<TaxonomyNode>, ctx: &str) -> Result<()> {
    let id = id_string(&n.id, ctx)?;
    let mut node = leaf(id.clone(), n.name, n.name_ko, n.description);
    node.parent = parent.map(str::to_string);
    node.level = level;
    let at = out.len();
    out.push(node);
    for c in n.children {
        let cid = id_string(&c.id, ctx)?;
        out[at].children.push(cid);
        flatten(c, Some(&id), level + 1, out, ctx)?;
    }
    Ok(())
}

/// The outcome of [`fix_labels`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelFix {
    /// The first valid label, or [`UNKNOWN`].
    pub primary: String,
    /// Valid ids in input order, without duplicates; `["UNKNOWN"]` when none survived.
    pub labels: Vec<String>,
    /// Raw labels that named no node (or a name shared by several nodes that the other labels could
    /// not disambiguate), as written.
    pub removed: Vec<String>,
    /// `(raw, id)` for labels that were not already ids: numeric forms, names, "id name".
    pub mapped: Vec<(String, String)>,
    /// True when no label survived.
    pub unknown: bool,
}

/// Repair a row's labels against a taxonomy.
///
/// Each raw label (trimmed; blank ones and `UNKNOWN` placeholders are skipped silently) becomes:
/// - itself, when it is an id (`"1.2"` stays `"1.2"`);
/// - the id it denotes in numeric form: `"03"`, `"3."`, `"(3)"` and the float `"3.0"` all become
///   top-level `"3"`;
/// - the node it names (case-insensitive, trimmed; a trailing parenthetical such as
///   "(Cross-Cutting)" may be left off; `name_ko` also matches);
/// - the id of an "id name" label such as `"1.4.1 Ischemic heart disease"`, unless the name part names
///   a *different* node, which makes the label contradictory and it is removed;
/// - for a name shared by several nodes ("Anatomy" is both `1.1.1` and `2.1.1`), the one candidate
///   inside the subtree of another label of the same row (`["1", "Anatomy"]` -> `1.1.1`); otherwise
///   it is removed;
/// - otherwise removed (`"1.9.9"`, `"11"`, free text).
///
/// `primary` is the first surviving label. A row left with no label gets `labels = ["UNKNOWN"]`,
/// `primary = "UNKNOWN"` and `unknown = true`, so it stays visible in distributions and folders
/// instead of silently disappearing.
pub fn fix_labels(tax: &Taxonomy, raw: &[String]) -> LabelFix {
    let mut slots: Vec<Option<String>> = Vec::with_capacity(raw.len());
    let mut removed = Vec::new();
    let mut mapped = Vec::new();
    let mut deferred = Vec::new();
    for r in raw {
        let t = r.trim();
        if t.is_empty() || t.eq_ignore_ascii_case(UNKNOWN) {
            continue;
        }
        match tax.resolve_idx(t) {
            Resolution::Exact(i) => slots.push(Some(tax.nodes[i].id.clone())),
            Resolution::Mapped(i) => {
                mapped.push((r.clone(), tax.nodes[i].id.clone()));
                slots.push(Some(tax.nodes[i].id.clone()));
            }
            Resolution::Ambiguous(c) => {
                deferred.push((slots.len(), r.clone(), c));
                slots.push(None);
            }
            Resolution::NotFound => removed.push(r.clone()),
        }
    }
    // Disambiguate shared names by the row's other labels.
    let context: Vec<String> = slots.iter().flatten().cloned().collect();
    for (slot, r, candidates) in deferred {
        let inside: Vec<usize> = candidates
            .into_iter()
            .filter(|&c| context.iter().any(|ctx| tax.is_within(&tax.nodes[c].id, ctx)))
            .collect();
        match inside.as_slice() {
            [i] => {
                mapped.push((r, tax.nodes[*i].id.clone()));
                slots[slot] = Some(tax.nodes[*i].id.clone());
            }
            _ => removed.push(r),
        }
    }
    let mut labels: Vec<String> = Vec::new();
    for id in slots.into_iter().flatten() {
        if !labels.contains(&id) {
            labels.push(id);
        }
    }
    let unknown = labels.is_empty();
    if unknown {
        labels.push(UNKNOWN.to_string());
    }
    LabelFix { primary: labels[0].clone(), labels, removed, mapped, unknown }
}

/// One row of [`distribution`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DivisionCount {
    pub id: String,
    pub name: String,
    pub count: usize,
    /// Share of all records, 0-100.
    pub percent: f64,
}

/// Records per node at `level` (1 = top-level divisions), by [`Taxonomy::record_node`]; rows that
/// resolve nowhere count under `UNKNOWN`. Every node of the level is listed, zero counts included,
/// because the empty divisions are exactly the ones a data plan has to fill. Sorted by count
/// (descending), then id in numeric order.
pub fn distribution(records: &[Record], tax: &Taxonomy, level: usize) -> Vec<DivisionCount> {
    let mut counts: HashMap<String, usize> = tax.level(level.max(1)).map(|n| (n.id.clone(), 0)).collect();
    for r in records {
        let id = tax.record_node(r, level).map_or(UNKNOWN, |n| n.id.as_str());
        *counts.entry(id.to_string()).or_default() += 1;
    }
    if counts.get(UNKNOWN) == Some(&0) {
        counts.remove(UNKNOWN);
    }
    let total = records.len().max(1) as f64;
    let mut out: Vec<DivisionCount> = counts
        .into_iter()
        .map(|(id, count)| DivisionCount {
            name: tax.get(&id).map_or_else(|| "Unknown".to_string(), |n| n.name.clone()),
            id,
            count,
            percent: count as f64 * 100.0 / total,
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| cmp_ids(&a.id, &b.id)));
    out
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use medforge_data::RecordKind;

    fn fixture() -> Taxonomy {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/specialty_taxonomy/med_division.json");
        Taxonomy::load(&p).unwrap()
    }

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn rec(i: usize, division: Option<&str>) -> Record {
        let mut r = Record::new(
            format!("r{i}"),
            if i.is_multiple_of(2) { "medqa" } else { "kormedmcqa" },
            RecordKind::Mcq,
            "q",
        );
        r.division = division.map(str::to_string);
        r
    }

    #[test]
    fn loads_the_medgemma_tree() {
        let t = fixture();
        assert_eq!(t.len(), 268);
        assert_eq!(t.top_level().count(), 10);
        assert_eq!(t.max_level(), 3);
        assert_eq!(t.version.as_deref(), Some("1.0"));
        let n = t.get("1.2.3").unwrap();
        assert_eq!(n.parent.as_deref(), Some("1.2"));
        assert_eq!(n.level, 3);
        assert_eq!(t.get("1").unwrap().name, "Cardiovascular Medicine");
        assert!(t.get("1").unwrap().children.contains(&"1.2".to_string()));
        assert_eq!(t.ancestor_at("1.2.3", 1).unwrap().id, "1");
        assert_eq!(t.ancestor_at("1.2.3", 2).unwrap().id, "1.2");
        assert_eq!(t.ancestor_at("1", 2).unwrap().id, "1");
    }

    #[test]
    fn name_lookup_is_trimmed_case_insensitive_and_knows_ambiguity() {
        let t = fixture();
        assert_eq!(t.by_name("  neurology ").unwrap().id, "7");
        assert_eq!(t.by_name("GASTROENTEROLOGY   AND hepatology").unwrap().id, "3");
        // Trailing parenthetical may be omitted.
        assert_eq!(t.by_name("Infectious Diseases").unwrap().id, "8");
        assert_eq!(t.by_name("infectious diseases (cross-cutting)").unwrap().id, "8");
        // "Diagnostics" sits under seven divisions.
        assert!(t.by_name("Diagnostics").is_none());
        assert_eq!(t.nodes_named("diagnostics").len(), 7);
        assert_eq!(t.by_name("Core Foundations").unwrap().id, "1.1");
    }

    #[test]
    fn korean_names_resolve_when_present() {
        let v = serde_json::json!({"title": "t", "version": 2, "nodes": [
            {"id": "1", "name": "Cardiology", "name_ko": "순환기내과", "children": [
                {"id": "1.1", "name": "Arrhythmia", "name_ko": "부정맥"}]},
            {"id": "2", "name": "Neurology"}]});
        let t = Taxonomy::from_json(v, "inline").unwrap();
        assert_eq!(t.version.as_deref(), Some("2"));
        assert_eq!(t.by_name("부정맥").unwrap().id, "1.1");
        let fix = fix_labels(&t, &labels(&["순환기내과"]));
        assert_eq!(fix.labels, vec!["1"]);
        assert_eq!(fix.mapped, vec![("순환기내과".to_string(), "1".to_string())]);
    }

    #[test]
    fn fix_labels_removes_maps_and_keeps() {
        let t = fixture();
        let f = fix_labels(&t, &labels(&[" 1.9.9", "3", "1.2", "Neurology", "11", "1.2", "03", "free text", ""]));
        assert_eq!(f.labels, vec!["3", "1.2", "7"]);
        assert_eq!(f.primary, "3");
        assert_eq!(f.removed, labels(&[" 1.9.9", "11", "free text"]));
        assert_eq!(f.mapped, vec![("Neurology".to_string(), "7".to_string()), ("03".to_string(), "3".to_string())]);
        assert!(!f.unknown);
    }

    #[test]
    fn fix_labels_numeric_forms_and_id_name_labels() {
        let t = fixture();
        for raw in ["3.0", "3.", "(3)", "#3", " 3 "] {
            assert_eq!(fix_labels(&t, &labels(&[raw])).labels, vec!["3"], "{raw}");
        }
        assert_eq!(fix_labels(&t, &labels(&["1.02"])).labels, vec!["1.2"]);
        assert_eq!(fix_labels(&t, &labels(&["3. Gastroenterology and Hepatology"])).labels, vec!["3"]);
        assert_eq!(fix_labels(&t, &labels(&["1.4.1 Ischemic heart disease"])).labels, vec!["1.4.1"]);
        // The name contradicts the id: neither can be trusted.
        let f = fix_labels(&t, &labels(&["3 Neurology"]));
        assert!(f.unknown);
        assert_eq!(f.removed, labels(&["3 Neurology"]));
    }

    #[test]
    fn ambiguous_names_use_the_rows_other_labels() {
        let t = fixture();
        let f = fix_labels(&t, &labels(&["Anatomy", "2"]));
        assert_eq!(f.labels, vec!["2.1.1", "2"]);
        assert_eq!(t.get("2.1.1").unwrap().name, "Anatomy");
        let alone = fix_labels(&t, &labels(&["Anatomy"]));
        assert!(alone.unknown);
        assert_eq!(alone.removed, labels(&["Anatomy"]));
    }

    #[test]
    fn empty_labels_become_unknown() {
        let t = fixture();
        for raw in [labels(&[]), labels(&["", "  "]), labels(&["UNKNOWN"]), labels(&["99"])] {
            let f = fix_labels(&t, &raw);
            assert_eq!(f.labels, vec![UNKNOWN]);
            assert_eq!(f.primary, UNKNOWN);
            assert!(f.unknown);
        }
    }

    #[test]
    fn flat_lists_json_strings_and_text() {
        let dir = tempfile::tempdir().unwrap();
        let objs = dir.path().join("specialties.json");
        std::fs::write(&objs, r#"[{"name": "Dermatology", "description": "skin"}, {"name": "Cardiology"}]"#).unwrap();
        let strs = dir.path().join("list.json");
        std::fs::write(&strs, r#"["Dermatology", "Cardiology"]"#).unwrap();
        let txt = dir.path().join("list.txt");
        std::fs::write(&txt, "# specialties\nDermatology\n\n  Cardiology  \n").unwrap();
        for p in [&objs, &strs, &txt] {
            let t = Taxonomy::load(p).unwrap();
            assert_eq!(t.len(), 2, "{}", p.display());
            assert_eq!(t.get("2").unwrap().name, "Cardiology");
            assert_eq!(t.by_name("cardiology").unwrap().id, "2");
            assert_eq!(fix_labels(&t, &labels(&["2", "dermatology"])).labels, vec!["2", "1"]);
        }
        assert_eq!(Taxonomy::load(&objs).unwrap().get("1").unwrap().description.as_deref(), Some("skin"));
    }

    #[test]
    fn the_shared_specialty_list_loads_when_present() {
        let p = Path::new("/work/shared/data/specialty_taxonomy/nyimul_medical_specialty_search/specialties.json");
        if !p.exists() {
            return;
        }
        let t = Taxonomy::load(p).unwrap();
        assert_eq!(t.len(), 40);
        assert_eq!(t.by_name("cardiology").unwrap().id, "2");
    }

    #[test]
    fn bad_taxonomies_are_errors() {
        let dup = serde_json::json!({"nodes": [{"id": "1", "name": "a"}, {"id": "1", "name": "b"}]});
        assert!(Taxonomy::from_json(dup, "x").unwrap_err().to_string().contains("duplicate"));
        assert!(Taxonomy::from_json(serde_json::json!([]), "x").is_err());
        assert!(Taxonomy::from_json(serde_json::json!({"nodes": [{"id": "", "name": "a"}]}), "x").is_err());
        assert!(Taxonomy::from_json(serde_json::json!([{"description": "no name"}]), "x").is_err());
        assert!(Taxonomy::from_json(serde_json::json!(3), "x").is_err());
    }

    #[test]
    fn distribution_rolls_up_and_sorts() {
        let t = fixture();
        let mut rows = vec![rec(0, Some("1.2.3")), rec(1, Some("1")), rec(2, Some("7.1")), rec(3, None), rec(4, None)];
        rows[3].specialty = Some("Nephrology".into()); // falls back to the specialty label
        let d = distribution(&rows, &t, 1);
        assert_eq!(d.len(), 11, "10 divisions + UNKNOWN");
        assert_eq!((d[0].id.as_str(), d[0].count), ("1", 2));
        assert_eq!(d[0].name, "Cardiovascular Medicine");
        assert!((d[0].percent - 40.0).abs() < 1e-9);
        let ids: Vec<&str> = d.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(&ids[1..5], &["4", "7", UNKNOWN, "2"]);
        assert_eq!(d.last().unwrap().id, "10", "ties in numeric id order");
        assert!((d.iter().map(|c| c.percent).sum::<f64>() - 100.0).abs() < 1e-9);

        let d2 = distribution(&rows, &t, 2);
        assert_eq!(d2.iter().find(|c| c.id == "1.2").unwrap().count, 1);
        assert_eq!(d2.iter().find(|c| c.id == "1").unwrap().count, 1, "a level-1 label stays at level 1");
    }

    #[test]
    fn organize_writes_folders_index_and_is_deterministic() {
        let t = fixture();
        let mut rows = Vec::new();
        for i in 0..40 {
            rows.push(rec(i, Some(if i % 4 == 0 { "1.4.2" } else { "7" })));
        }
        rows.push(rec(40, Some("3")));
        rows.push(rec(41, None));
        let opts = OrganizeOptions { min_samples: 2, validation_fraction: 0.25, seed: 9, level: 1 };
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let idx = organize_divisions(&rows, &t, a.path(), &opts).unwrap();
        organize_divisions(&rows, &t, b.path(), &opts).unwrap();

        assert_eq!(
            idx.divisions.iter().map(|d| d.folder.as_str()).collect::<Vec<_>>(),
            ["1_cardiovascular_medicine", "7_neurology"]
        );
        assert_eq!(idx.skipped.iter().map(|s| (s.id.as_str(), s.count)).collect::<Vec<_>>(), [("3", 1), (UNKNOWN, 1)]);
        let neuro = &idx.divisions[1];
        assert_eq!((neuro.total, neuro.train, neuro.validation), (30, 22, 8));

        for f in [
            "division_index.json",
            "7_neurology/train.jsonl",
            "7_neurology/validation.jsonl",
            "7_neurology/metadata.json",
        ] {
            let x = std::fs::read(a.path().join(f)).unwrap();
            assert_eq!(x, std::fs::read(b.path().join(f)).unwrap(), "{f} differs between runs");
        }
        assert!(!a.path().join("3_gastroenterology_and_hepatology").exists());

        // Lines are canonical records, in input order, and the two files partition the division.
        let read = |f: &str| -> Vec<Record> {
            std::fs::read_to_string(a.path().join(f))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let train = read("7_neurology/train.jsonl");
        let val = read("7_neurology/validation.jsonl");
        assert_eq!(train.len() + val.len(), 30);
        let pos = |r: &Record| r.id[1..].parse::<usize>().unwrap();
        assert!(train.windows(2).all(|w| pos(&w[0]) < pos(&w[1])));
        let mut all: Vec<String> = train.iter().chain(&val).map(|r| r.id.clone()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 30);

        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(a.path().join("7_neurology/metadata.json")).unwrap()).unwrap();
        assert_eq!(meta["id"], "7");
        assert_eq!(meta["sources"]["medqa"].as_u64().unwrap() + meta["sources"]["kormedmcqa"].as_u64().unwrap(), 30);

        // A different seed draws a different validation set.
        let c = tempfile::tempdir().unwrap();
        organize_divisions(&rows, &t, c.path(), &OrganizeOptions { seed: 10, ..opts.clone() }).unwrap();
        assert_ne!(
            std::fs::read(a.path().join("7_neurology/validation.jsonl")).unwrap(),
            std::fs::read(c.path().join("7_neurology/validation.jsonl")).unwrap()
        );
    }

    #[test]
    fn organize_keeps_a_training_row_and_checks_options() {
        let t = fixture();
        let rows = vec![rec(0, Some("7"))];
        let d = tempfile::tempdir().unwrap();
        let idx = organize_divisions(
            &rows,
            &t,
            d.path(),
            &OrganizeOptions { validation_fraction: 0.9, ..Default::default() },
        )
        .unwrap();
        assert_eq!((idx.divisions[0].train, idx.divisions[0].validation), (1, 0));
        assert!(organize_divisions(&rows, &t, d.path(), &OrganizeOptions { level: 4, ..Default::default() }).is_err());
        assert!(organize_divisions(
            &rows,
            &t,
            d.path(),
            &OrganizeOptions { validation_fraction: 1.0, ..Default::default() }
        )
        .is_err());
    }

    #[test]
    fn slugs_and_id_order() {
        assert_eq!(
            slug("Ethics, Law, and Patient Safety (Cross-Cutting)"),
            "ethics_law_and_patient_safety_cross_cutting"
        );
        assert_eq!(slug("순환기내과"), "division");
        assert!(slug(&"a b ".repeat(50)).len() <= 60);
        let mut ids = vec!["10", "2", "1.10", "1.2", "1", UNKNOWN];
        ids.sort_by(|a, b| cmp_ids(a, b));
        assert_eq!(ids, ["1", "1.2", "1.10", "2", "10", UNKNOWN]);
    }
}
