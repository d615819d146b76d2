//! Token lengths with an HF `tokenizer.json` (the `tokenizers` crate), per field, with optional bounds
//! (e.g. reasoning ≥ 1000 tokens, as in med-s1k). Scores `tokens.<field>` on every row.
//!
//! Counting is the stage's hot path: a tokenizer call per text costs microseconds, mostly in the
//! library's normalisation bookkeeping. For tokenizers whose pipeline never looks across an ASCII
//! space (BERT-style normalizers, whitespace pre-tokenizers: see [`splits_at_spaces`]), the count of
//! a text is the sum of the counts of its space-separated pieces, so each distinct piece is
//! tokenized once and looked up afterwards. Other tokenizers count whole texts.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use medforge_data::Record;
use medforge_text::tokens::TokenCounter;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fields::{check_fields, text_of};
use crate::config::rebase_path;
use crate::stage::{Decision, Stage, StageContext, StageError, StageOutput, StageResult};

/// `[[stages]] stage = "tokens"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokensConfig {
    /// A Hugging Face `tokenizer.json`.
    pub tokenizer: PathBuf,
    pub fields: Vec<String>,
    /// Drop rows with fewer tokens than this in a field (a missing field counts as 0).
    pub min: BTreeMap<String, usize>,
    pub max: BTreeMap<String, usize>,
}

impl Default for TokensConfig {
    fn default() -> Self {
        TokensConfig {
            tokenizer: PathBuf::from("tokenizer.json"),
            fields: ["question", "answer", "reasoning"].map(String::from).to_vec(),
            min: BTreeMap::new(),
            max: BTreeMap::new(),
        }
    }
}

impl TokensConfig {
    pub(crate) fn rebase(&mut self, base: &Path) {
        rebase_path(&mut self.tokenizer, base);
    }
}

pub struct Tokens {
    cfg: TokensConfig,
    counter: TokenCounter,
    /// Counts add up over space-separated pieces ([`splits_at_spaces`]).
    by_piece: bool,
}

/// The separators pieces are cut at. Only ASCII ones: every whitespace-splitting pre-tokenizer drops
/// them and every accepted normalizer keeps them as whitespace (BERT's `clean_text` deletes some
/// Unicode whitespace, e.g. U+0085, which therefore must not separate pieces).
const PIECE_SEPARATORS: [char; 4] = [' ', '\t', '\n', '\r'];

/// Whether a `tokenizer.json` tokenizes each space-separated piece of a text on its own, so that
/// `count(text)` = the sum of `count(piece)` (without special tokens, truncation or padding, as
/// [`TokenCounter`] counts):
///
/// - the normalizers only map characters locally and never join across a space (`BertNormalizer`,
///   `Lowercase`, `StripAccents`, `NFC`/`NFD`/`NFKC`/`NFKD`, `Strip`, or a `Sequence` of them; not
///   `Replace`, `Prepend` or `Precompiled`, which may rewrite spaces);
/// - the pre-tokenizer splits at whitespace and drops it (`BertPreTokenizer`, `Whitespace`,
///   `WhitespaceSplit`, or a `Sequence` of those and `Punctuation` / `Digits` holding at least one
///   of them; not `ByteLevel` or `Metaspace`, which turn spaces into parts of tokens);
/// - the model is deterministic (no BPE dropout) and no added token contains whitespace.
pub fn splits_at_spaces(tokenizer_json: &Value) -> bool {
    fn normalizer_ok(n: &Value) -> bool {
        match n.get("type").and_then(Value::as_str) {
            Some("BertNormalizer" | "Lowercase" | "StripAccents" | "NFC" | "NFD" | "NFKC" | "NFKD" | "Strip") => true,
            Some("Sequence") => {
                n.get("normalizers").and_then(Value::as_array).is_some_and(|v| v.iter().all(normalizer_ok))
            }
            _ => false,
        }
    }
    fn splitter(p: &Value) -> Option<bool> {
        // Some(true): splits at whitespace; Some(false): a local split that keeps the text's spaces
        // where they are; None: anything else.
        match p.get("type").and_then(Value::as_str) {
            Some("BertPreTokenizer" | "Whitespace" | "WhitespaceSplit") => Some(true),
            Some("Punctuation" | "Digits") => Some(false),
            _ => None,
        }
    }
    let normalizer = match tokenizer_json.get("normalizer") {
        None | Some(Value::Null) => true,
        Some(n) => normalizer_ok(n),
    };
    let pre_tokenizer = match tokenizer_json.get("pre_tokenizer") {
        Some(p) if p.get("type").and_then(Value::as_str) == Some("Sequence") => {
            p.get("pretokenizers").and_then(Value::as_array).is_some_and(|v| {
                let kinds: Option<Vec<bool>> = v.iter().map(splitter).collect();
                kinds.is_some_and(|k| k.contains(&true))
            })
        }
        Some(p) => splitter(p) == Some(true),
        None => false,
    };
    let model = tokenizer_json.get("model").is_some_and(|m| m.get("dropout").is_none_or(Value::is_null));
    let added = tokenizer_json.get("added_tokens").and_then(Value::as_array).is_none_or(|v| {
        v.iter().all(|t| t.get("content").and_then(Value::as_str).is_some_and(|c| !c.contains(char::is_whitespace)))
    });
    normalizer && pre_tokenizer && model && added
}

// FxHash: the piece cache does one lookup per word of the corpus, where std's SipHash would cost
// more than the rest of the lookup.
type StrMap<'a> = HashMap<&'a str, usize, rustc_hash::FxBuildHasher>;

fn pieces(text: &str) -> impl Iterator<Item = &str> {
    text.split(PIECE_SEPARATORS).filter(|p| !p.is_empty())
}

/// Token counts of `texts`, in order, as the sums of the counts of their space-separated pieces
/// (only valid when [`splits_at_spaces`] holds for the tokenizer). Each worker takes a contiguous
/// block of texts and tokenizes each distinct piece the first time it meets it: a corpus has far
/// fewer distinct pieces than pieces (about 10^5 for the 10^8 pieces of a million rows).
fn count_by_piece(counter: &TokenCounter, texts: &[&str]) -> Result<Vec<usize>, String> {
    let workers = rayon::current_num_threads().max(1);
    let block = texts.len().div_ceil(workers).max(1);
    let parts: Vec<Vec<usize>> = texts
        .par_chunks(block)
        .map(|block| {
            let mut cache = StrMap::default();
            block
                .iter()
                .map(|text| {
                    let mut n = 0;
                    for piece in pieces(text) {
                        n += match cache.get(piece) {
                            Some(&c) => c,
                            None => {
                                let c = counter.count(piece).map_err(|e| e.to_string())?;
                                cache.insert(piece, c);
                                c
                            }
                        };
                    }
                    Ok(n)
                })
                .collect::<Result<Vec<usize>, String>>()
        })
        .collect::<Result<_, _>>()?;
    Ok(parts.into_iter().flatten().collect())
}

/// A field's text without copying it (options are assembled).
fn field_text<'a>(r: &'a Record, field: &str) -> Option<Cow<'a, str>> {
    match field {
        "options" => text_of(r, field).map(Cow::Owned),
        f => r.text_field(f).map(Cow::Borrowed),
    }
}

impl Tokens {
    pub fn new(cfg: TokensConfig) -> Result<Self, StageError> {
        check_fields("tokens", &cfg.fields)?;
        for f in cfg.min.keys().chain(cfg.max.keys()) {
            if !cfg.fields.contains(f) {
                return Err(StageError::failed("tokens", format!("bound on `{f}`, which is not in `fields`")));
            }
        }
        let counter = TokenCounter::from_file(&cfg.tokenizer).map_err(|e| StageError::failed("tokens", e))?;
        // The file parsed as a tokenizer above, so it is JSON; read its pipeline's shape.
        let by_piece = !counter.adds_special_tokens()
            && std::fs::read_to_string(&cfg.tokenizer)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| splits_at_spaces(&v));
        Ok(Tokens { cfg, counter, by_piece })
    }

    /// Token counts of `texts`, in order.
    ///
    /// Identical texts (a repeated answer, an MCQ option text) are counted once.
    fn count(&self, texts: &[&str]) -> Result<Vec<usize>, String> {
        // Each worker numbers the distinct texts of its block; the blocks' distinct texts are then
        // numbered globally and counted once.
        let workers = rayon::current_num_threads().max(1);
        let block = texts.len().div_ceil(workers).max(1);
        let local: Vec<(Vec<&str>, Vec<usize>)> = texts
            .par_chunks(block)
            .map(|block| {
                let mut seen = StrMap::default();
                let mut keys = Vec::new();
                let ids = block
                    .iter()
                    .map(|&t| {
                        *seen.entry(t).or_insert_with(|| {
                            keys.push(t);
                            keys.len() - 1
                        })
                    })
                    .collect();
                (keys, ids)
            })
            .collect();
        let mut global = StrMap::default();
        let mut keys: Vec<&str> = Vec::new();
        let remap: Vec<Vec<usize>> = local
            .iter()
            .map(|(block_keys, _)| {
                block_keys
                    .iter()
                    .map(|&t| {
                        *global.entry(t).or_insert_with(|| {
                            keys.push(t);
                            keys.len() - 1
                        })
                    })
                    .collect()
            })
            .collect();
        let counts = if self.by_piece {
            count_by_piece(&self.counter, &keys)?
        } else {
            self.counter.count_batch(&keys).map_err(|e| e.to_string())?
        };
        Ok(local.iter().zip(&remap).flat_map(|((_, ids), remap)| ids.iter().map(|&i| counts[remap[i]])).collect())
    }
}

fn summary(mut v: Vec<usize>) -> serde_json::Value {
    if v.is_empty() {
        return serde_json::json!({"rows": 0});
    }
    v.sort_unstable();
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let mean = v.iter().sum::<usize>() as f64 / v.len() as f64;
    serde_json::json!({"rows": v.len(), "mean": mean, "p50": q(0.5), "p90": q(0.9), "max": v[v.len() - 1], "total": v.iter().sum::<usize>()})
}

impl Stage for Tokens {
    fn name(&self) -> &str {
        "tokens"
    }

    fn run(&mut self, rows: &mut [Record], ctx: &StageContext) -> StageResult<StageOutput> {
        let n = rows.len();
        // Counts per field, batched so the tokenizer runs in parallel.
        let mut counts: BTreeMap<&str, Vec<Option<usize>>> = BTreeMap::new();
        for (k, f) in self.cfg.fields.iter().enumerate() {
            let texts: Vec<Option<Cow<str>>> = rows.iter().map(|r| field_text(r, f)).collect();
            let present: Vec<&str> = texts.iter().flatten().map(|t| t.as_ref()).collect();
            let c = self.count(&present).map_err(|e| StageError::failed("tokens", e))?;
            let mut it = c.into_iter();
            counts.insert(f, texts.iter().map(|t| t.as_ref().and_then(|_| it.next())).collect());
            (ctx.progress)(((k + 1) * n / self.cfg.fields.len()) as u64, n as u64);
        }
        let mut decisions = Vec::with_capacity(n);
        let mut per_source: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            // Scores sized exactly: they stay on the row's annotation until the run ends.
            let mut d = Decision { scores: Vec::with_capacity(self.cfg.fields.len()), ..Decision::keep() };
            for f in &self.cfg.fields {
                let c = counts[f.as_str()][i];
                if let Some(c) = c {
                    d = d.with_score(format!("tokens.{f}"), c as f64);
                    per_source.entry((r.source.as_str(), f.as_str())).or_default().push(c);
                }
                let c = c.unwrap_or(0);
                if d.keep {
                    if self.cfg.min.get(f).is_some_and(|&m| c < m) {
                        d.keep = false;
                        d.reason = Some(format!("tokens.too_short:{f}"));
                    } else if self.cfg.max.get(f).is_some_and(|&m| c > m) {
                        d.keep = false;
                        d.reason = Some(format!("tokens.too_long:{f}"));
                    }
                }
            }
            decisions.push(d);
        }
        let mut by_source = serde_json::Map::new();
        for ((src, f), v) in per_source {
            let e = by_source.entry(src).or_insert_with(|| serde_json::json!({}));
            e[f] = summary(v);
        }
        let report = serde_json::json!({
            "tokenizer": self.cfg.tokenizer,
            "vocab_size": self.counter.vocab_size(),
            "by_source": by_source,
            "dropped": decisions.iter().filter(|d| !d.keep).count(),
        });
        Ok(StageOutput::new(decisions).with_report("tokens_report.json", report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_tokenizer() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tokenizers/all-MiniLM-L6-v2/tokenizer.json")
    }

    #[test]
    fn piece_counts_equal_whole_text_counts() {
        let path = fixture_tokenizer();
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(splits_at_spaces(&json), "the bundled MiniLM tokenizer is BERT-style");
        let counter = TokenCounter::from_file(&path).unwrap();
        let texts = [
            "",
            "   ",
            "A 45-year-old man presents with crushing chest pain (BP 150/90 mm Hg).",
            "  leading and trailing\twhitespace\n\nand  doubled   spaces\r\n",
            "Crohn's disease, naïve T-cells, Ångström, ﬁnal ligature, Ｆｕｌｌｗｉｄｔｈ ９０％",
            "고혈압 환자의 1～2주 치료는? 정답: ACE 억제제",
            "心肌梗死患者 ECG 所见 mixed中文text",
            "control\u{0}chars\u{fffd}and\u{200b}zero width\u{85}next line\u{0b}vt\u{0c}ff\u{a0}nbsp\u{3000}ideo",
            "special [MASK] tokens [CLS]inline[SEP] and [UNK]",
            "Σίσυφος ΟΔΟΣ İstanbul ǅ",
            "averyveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryverylongword x",
            "repeat repeat repeat, repeat; repeat.",
        ];
        let whole = counter.count_batch(&texts).unwrap();
        assert_eq!(count_by_piece(&counter, &texts).unwrap(), whole);
        // One by one too (each text its own cache), and in a batch large enough to split.
        for (t, w) in texts.iter().zip(&whole) {
            assert_eq!(count_by_piece(&counter, &[t]).unwrap(), vec![*w], "{t:?}");
        }
        let many: Vec<&str> = texts.iter().cycle().take(500).copied().collect();
        let expected: Vec<usize> = whole.iter().cycle().take(500).copied().collect();
        assert_eq!(count_by_piece(&counter, &many).unwrap(), expected);
    }

    #[test]
    fn pipelines_that_look_across_spaces_count_whole_texts() {
        let base = |normalizer: Value, pre: Value| {
            serde_json::json!({
                "normalizer": normalizer,
                "pre_tokenizer": pre,
                "model": {"type": "WordPiece"},
                "added_tokens": [{"content": "[CLS]"}],
            })
        };
        let bert = serde_json::json!({"type": "BertNormalizer"});
        let bert_pre = serde_json::json!({"type": "BertPreTokenizer"});
        assert!(splits_at_spaces(&base(bert.clone(), bert_pre.clone())));
        assert!(splits_at_spaces(&base(Value::Null, serde_json::json!({"type": "WhitespaceSplit"}))));
        assert!(splits_at_spaces(&base(
            serde_json::json!({"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]}),
            serde_json::json!({"type": "Sequence", "pretokenizers": [{"type": "Punctuation"}, {"type": "Whitespace"}]}),
        )));
        // Spaces become part of tokens, or may be rewritten.
        assert!(!splits_at_spaces(&base(Value::Null, serde_json::json!({"type": "ByteLevel"}))));
        assert!(!splits_at_spaces(&base(Value::Null, serde_json::json!({"type": "Metaspace"}))));
        assert!(!splits_at_spaces(&base(Value::Null, Value::Null)));
        assert!(!splits_at_spaces(&base(
            Value::Null,
            serde_json::json!({"type": "Sequence", "pretokenizers": [{"type": "Punctuation"}]}),
        )));
        assert!(!splits_at_spaces(&base(serde_json::json!({"type": "Replace"}), bert_pre.clone())));
        assert!(!splits_at_spaces(&base(serde_json::json!({"type": "Precompiled"}), bert_pre.clone())));
        // An added token spanning a space, or BPE dropout.
        let mut v = base(bert.clone(), bert_pre.clone());
        v["added_tokens"] = serde_json::json!([{"content": "<end of turn>"}]);
        assert!(!splits_at_spaces(&v));
        let mut v = base(bert, bert_pre);
        v["model"] = serde_json::json!({"type": "BPE", "dropout": 0.1});
        assert!(!splits_at_spaces(&v));
    }

    #[test]
    fn stage_counts_match_the_tokenizer() {
        let cfg = TokensConfig {
            tokenizer: fixture_tokenizer(),
            fields: vec!["question".into(), "options".into()],
            ..Default::default()
        };
        let mut stage = Tokens::new(cfg.clone()).unwrap();
        assert!(stage.by_piece);
        let counter = TokenCounter::from_file(&cfg.tokenizer).unwrap();
        let mut r = Record::new("a", "t", medforge_data::RecordKind::Mcq, "Which drug  blocks\ncell-wall synthesis?");
        r.options = vec![medforge_data::McqOption { letter: "A".into(), text: "Ceftriaxone sodium".into() }];
        let mut rows = vec![r, Record::new("b", "t", medforge_data::RecordKind::OpenQa, "")];
        let dir = std::env::temp_dir();
        let ctx = StageContext { seed: 1, run_dir: &dir, progress: &|_, _| {} };
        let out = stage.run(&mut rows, &ctx).unwrap();
        let q = counter.count("Which drug  blocks\ncell-wall synthesis?").unwrap() as f64;
        let o = counter.count("A) Ceftriaxone sodium").unwrap() as f64;
        let scores: Vec<(String, f64)> = out.decisions[0].scores.iter().map(|s| (s.name.clone(), s.value)).collect();
        assert_eq!(scores, vec![("tokens.question".to_string(), q), ("tokens.options".to_string(), o)]);
        assert!(out.decisions[1].scores.is_empty(), "an empty question has no count");

        // Repeated texts are counted once, by pieces or whole, with the same result.
        let texts = ["same text, twice", "other text", "same text, twice", "", "other text"];
        let expected = counter.count_batch(&texts).unwrap();
        assert_eq!(stage.count(&texts).unwrap(), expected);
        stage.by_piece = false;
        assert_eq!(stage.count(&texts).unwrap(), expected);
    }
}
