//! Specialty and division taxonomies: loading, label lookup and repair, distributions, and per-division
//! training folders ([`divisions`]).
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

use std::collections::HashMap;
use std::path::Path;

use medforge_data::{Error, Record, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// Repair every record's `division`/`divisions` with [`fix_labels`] (the primary first); returns how many records
/// had no valid division and became [`UNKNOWN`].
pub fn fix_record_divisions(tax: &Taxonomy, records: &mut [Record]) -> usize {
    let mut unknown = 0;
    for r in records {
        let mut raw: Vec<String> = r.division.iter().cloned().collect();
        raw.extend(r.divisions.iter().filter(|d| Some(*d) != r.division.as_ref()).cloned());
        let fix = fix_labels(tax, &raw);
        unknown += usize::from(fix.unknown);
        r.division = Some(fix.primary);
        r.divisions = fix.labels;
    }
    unknown
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

mod divisions;

pub(crate) use divisions::write_json;
pub use divisions::{
    organize_divisions, slug, DivisionEntry, DivisionIndex, DivisionMetadata, OrganizeOptions, SkippedDivision,
};

#[cfg(test)]
mod tests;
