//! GGUF files: metadata access, a summary for `medforge model inspect`, and the tokenizer and chat template
//! stored in the metadata.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};

use crate::{EngineError, Result};

/// An opened GGUF file: its parsed header, and a reader positioned anywhere.
pub struct Gguf {
    pub content: Content,
    pub reader: BufReader<File>,
}

impl Gguf {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| EngineError::io(path, e))?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader)
            .map_err(|e| EngineError::Format(format!("{}: not a readable GGUF file: {e}", path.display())))?;
        Ok(Gguf { content, reader })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    pub fn str(&self, key: &str) -> Option<String> {
        self.get(key).and_then(|v| v.to_string().ok()).cloned()
    }

    /// An integer of any GGUF integer type.
    pub fn int(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(value_int)
    }

    pub fn float(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Value::F32(v) => Some(*v as f64),
            Value::F64(v) => Some(*v),
            v => value_int(v).map(|i| i as f64),
        }
    }

    pub fn arch(&self) -> Result<String> {
        self.str("general.architecture").ok_or_else(|| EngineError::Format("GGUF has no general.architecture".into()))
    }

    /// `{arch}.{key}`, required.
    pub fn arch_int(&self, arch: &str, key: &str) -> Result<u64> {
        self.int(&format!("{arch}.{key}")).ok_or_else(|| EngineError::Format(format!("GGUF has no {arch}.{key}")))
    }

    pub fn strings(&self, key: &str) -> Option<Vec<String>> {
        let list = self.get(key)?.to_vec().ok()?;
        list.iter().map(|v| v.to_string().ok().cloned()).collect()
    }

    pub fn floats(&self, key: &str) -> Option<Vec<f64>> {
        let list = self.get(key)?.to_vec().ok()?;
        list.iter()
            .map(|v| match v {
                Value::F32(f) => Some(*f as f64),
                Value::F64(f) => Some(*f),
                _ => None,
            })
            .collect()
    }

    pub fn ints(&self, key: &str) -> Option<Vec<u64>> {
        let list = self.get(key)?.to_vec().ok()?;
        list.iter().map(value_int).collect()
    }

    /// Number of elements of a tensor, from its header.
    pub fn tensor_elems(&self, name: &str) -> Option<usize> {
        self.content.tensor_infos.get(name).map(|t| t.shape.elem_count())
    }
}

fn value_int(v: &Value) -> Option<u64> {
    match v {
        Value::U8(x) => Some(*x as u64),
        Value::I8(x) => u64::try_from(*x).ok(),
        Value::U16(x) => Some(*x as u64),
        Value::I16(x) => u64::try_from(*x).ok(),
        Value::U32(x) => Some(*x as u64),
        Value::I32(x) => u64::try_from(*x).ok(),
        Value::U64(x) => Some(*x),
        Value::I64(x) => u64::try_from(*x).ok(),
        Value::Bool(b) => Some(*b as u64),
        _ => None,
    }
}

/// A Hugging Face tokenizer rebuilt from the GGUF tokenizer metadata.
///
/// Supported: `gpt2` (byte-level BPE from tokens and merges; the pre-tokenizer regex follows `tokenizer.ggml.pre`)
/// and `llama` (SentencePiece BPE from tokens and scores: Llama 2, Mistral, Gemma). Control and user-defined tokens
/// become added tokens, so that chat markers such as `<|im_start|>` encode to one id.
pub fn tokenizer(g: &Gguf) -> Result<tokenizers::Tokenizer> {
    let model = g.str("tokenizer.ggml.model").unwrap_or_default();
    let tokens = g
        .strings("tokenizer.ggml.tokens")
        .ok_or_else(|| EngineError::Format("GGUF has no tokenizer.ggml.tokens".into()))?;
    let types = g.ints("tokenizer.ggml.token_type").unwrap_or_default();
    match model.as_str() {
        "gpt2" => {
            let merges = g
                .strings("tokenizer.ggml.merges")
                .ok_or_else(|| EngineError::Format("GGUF gpt2 tokenizer has no tokenizer.ggml.merges".into()))?;
            let pre = g.str("tokenizer.ggml.pre").unwrap_or_else(|| "default".into());
            let json = byte_level_bpe_json(&tokens, &types, &merges, &pre);
            tokenizers::Tokenizer::from_bytes(serde_json::to_vec(&json)?)
                .map_err(|e| EngineError::Format(format!("tokenizer from GGUF metadata: {e}")))
        }
        "llama" => {
            let scores = g.floats("tokenizer.ggml.scores").ok_or_else(|| {
                EngineError::Format("GGUF SentencePiece tokenizer has no tokenizer.ggml.scores".into())
            })?;
            let add_space_prefix = g.int("tokenizer.ggml.add_space_prefix").map(|v| v != 0).unwrap_or(true);
            let unk = g.int("tokenizer.ggml.unknown_token_id").and_then(|i| tokens.get(i as usize)).cloned();
            sentencepiece_bpe(&tokens, &scores, &types, add_space_prefix, unk.as_deref())
        }
        other => Err(EngineError::Unsupported(format!(
            "GGUF tokenizer model `{other}` (rebuilt from GGUF metadata: `gpt2` byte-level BPE and `llama` \
             SentencePiece; for others pass a tokenizer.json)"
        ))),
    }
}

const TOKEN_NORMAL: u64 = 1;
const TOKEN_BYTE: u64 = 6;

fn added_tokens(tokens: &[String], types: &[u64]) -> Vec<serde_json::Value> {
    tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(types.get(*i), Some(&TOKEN_CONTROL) | Some(&TOKEN_USER_DEFINED)))
        .map(|(i, t)| {
            serde_json::json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": types.get(i) == Some(&TOKEN_CONTROL)})
        })
        .collect()
}

/// A SentencePiece BPE model as a Hugging Face BPE tokenizer with byte fallback. SentencePiece merges, at each step,
/// the adjacent pair whose concatenation is the highest-scoring piece; the equivalent merge list has every split
/// `(left, right)` of every normal piece into two pieces of the vocabulary, ranked by the merged piece's score.
/// Spaces become `▁` (with one prepended when `add_space_prefix`, as Llama 2 does and Gemma does not). Built through
/// the tokenizers API rather than a tokenizer.json: Gemma's 262k pieces give 513k merges, and the JSON round trip
/// doubled load time and peak memory.
pub fn sentencepiece_bpe(
    tokens: &[String],
    scores: &[f64],
    types: &[u64],
    add_space_prefix: bool,
    unk: Option<&str>,
) -> Result<tokenizers::Tokenizer> {
    use tokenizers::decoders::{byte_fallback::ByteFallback, fuse::Fuse, sequence::Sequence, strip::Strip};
    use tokenizers::normalizers::{Prepend, Replace};
    use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper};
    let err = |e: tokenizers::Error| EngineError::Format(format!("SentencePiece tokenizer from GGUF metadata: {e}"));
    let normal = |i: usize| types.get(i).is_none_or(|t| *t == TOKEN_NORMAL);
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        if normal(i) || types.get(i) == Some(&TOKEN_BYTE) {
            index.entry(t.as_str()).or_insert(i);
        }
    }
    let mut ranked: Vec<(f64, usize, usize, usize)> = Vec::new();
    for (i, piece) in tokens.iter().enumerate() {
        if !normal(i) || piece.chars().nth(1).is_none() {
            continue;
        }
        for (at, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(at);
            if let (Some(&li), Some(&ri)) = (index.get(l), index.get(r)) {
                if normal(li) && normal(ri) {
                    ranked.push((scores.get(i).copied().unwrap_or(0.0), i, li, ri));
                }
            }
        }
    }
    // Highest score first; among splits of one piece, the one with the lower-id left part (a stable order).
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let merges: Vec<(String, String)> =
        ranked.iter().map(|&(_, _, l, r)| (tokens[l].clone(), tokens[r].clone())).collect();
    drop(ranked);
    let mut vocab = tokenizers::models::bpe::Vocab::default();
    vocab.reserve(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        vocab.entry(t.clone()).or_insert(i as u32);
    }
    let mut b =
        tokenizers::models::bpe::BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true).fuse_unk(true);
    if let Some(u) = unk {
        b = b.unk_token(u.to_string());
    }
    let mut tok = tokenizers::Tokenizer::new(b.build().map_err(err)?);
    let replace = Replace::new(" ", "\u{2581}").map_err(err)?;
    let normalizer: NormalizerWrapper = if add_space_prefix {
        tokenizers::normalizers::Sequence::new(vec![Prepend::new("\u{2581}".into()).into(), replace.into()]).into()
    } else {
        replace.into()
    };
    tok.with_normalizer(Some(normalizer)).map_err(err)?;
    let mut decoders: Vec<DecoderWrapper> =
        vec![Replace::new("\u{2581}", " ").map_err(err)?.into(), ByteFallback::new().into(), Fuse::new().into()];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tok.with_decoder(Some(Sequence::new(decoders)));
    let added: Vec<AddedToken> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(types.get(*i), Some(&TOKEN_CONTROL) | Some(&TOKEN_USER_DEFINED)))
        .map(|(i, t)| AddedToken::from(t.clone(), types.get(i) == Some(&TOKEN_CONTROL)).normalized(false))
        .collect();
    let (special, plain): (Vec<AddedToken>, Vec<AddedToken>) = added.into_iter().partition(|t| t.special);
    tok.add_special_tokens(special).map_err(err)?;
    tok.add_tokens(plain).map_err(err)?;
    Ok(tok)
}

/// GGUF token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
const TOKEN_CONTROL: u64 = 3;
const TOKEN_USER_DEFINED: u64 = 4;

/// A byte-level BPE tokenizer.json. `pre` is llama.cpp's pre-tokenizer name.
pub fn byte_level_bpe_json(tokens: &[String], types: &[u64], merges: &[String], pre: &str) -> serde_json::Value {
    use serde_json::json;
    let vocab: serde_json::Map<String, serde_json::Value> =
        tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
    let added = added_tokens(tokens, types);
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    // llama.cpp's starcoder-family pre-tokenizers (SmolLM's included) split every digit on its own before the GPT-2
    // regex; that is HF's `Digits(individual_digits=true)` followed by `ByteLevel`.
    let pre_tokenizer = match pre {
        "smollm" | "starcoder" | "refact" | "codeshell" | "command-r" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level]}),
        _ => byte_level,
    };
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    })
}

#[cfg(test)]
mod spm_tests {
    use super::*;

    /// SentencePiece BPE as its paper and llama.cpp define it: start from characters (bytes for pieces not in the
    /// vocabulary), repeatedly merge the adjacent pair whose concatenation is the best-scoring piece, leftmost first.
    fn reference(vocab: &[(String, f64)], text: &str, prefix: bool) -> Vec<u32> {
        let id = |s: &str| vocab.iter().position(|(t, _)| t == s);
        if text.is_empty() {
            return Vec::new(); // llama.cpp: no space prefix on an empty text
        }
        let text = format!("{}{}", if prefix { " " } else { "" }, text).replace(' ', "\u{2581}");
        let mut syms: Vec<String> = text.chars().map(String::from).collect();
        loop {
            let mut best: Option<(f64, usize)> = None;
            for i in 0..syms.len().saturating_sub(1) {
                let cat = format!("{}{}", syms[i], syms[i + 1]);
                if let Some(j) = id(&cat) {
                    if best.is_none_or(|(s, _)| vocab[j].1 > s) {
                        best = Some((vocab[j].1, i));
                    }
                }
            }
            let Some((_, i)) = best else { break };
            let right = syms.remove(i + 1);
            syms[i].push_str(&right);
        }
        let mut ids = Vec::new();
        for s in syms {
            match id(&s) {
                Some(i) => ids.push(i as u32),
                None => {
                    for b in s.bytes() {
                        ids.push(id(&format!("<0x{b:02X}>")).expect("byte token") as u32);
                    }
                }
            }
        }
        ids
    }

    #[test]
    fn rebuilt_sentencepiece_encodes_as_sentencepiece_does() {
        let mut vocab: Vec<(String, f64, u64)> =
            vec![("<unk>".into(), 0.0, 2), ("<s>".into(), 0.0, 3), ("</s>".into(), 0.0, 3)];
        for b in 0..=255u32 {
            vocab.push((format!("<0x{b:02X}>"), 0.0, 6));
        }
        let pieces = [
            "\u{2581}",
            "a",
            "b",
            "c",
            "d",
            "e",
            "g",
            "h",
            "i",
            "l",
            "n",
            "o",
            "p",
            "r",
            "s",
            "t",
            "y",
            "\u{2581}t",
            "he",
            "\u{2581}the",
            "in",
            "er",
            "\u{2581}a",
            "an",
            "\u{2581}p",
            "at",
            "ie",
            "nt",
            "\u{2581}pa",
            "\u{2581}pat",
            "ient",
            "\u{2581}patient",
            "ch",
            "\u{2581}ch",
            "es",
            "st",
            "\u{2581}chest",
            "\u{2581}in",
            "ai",
            "\u{2581}pain",
            "ra",
            "dia",
            "ti",
            "ng",
            "ing",
            "re",
            "ad",
            "\u{2581}rad",
            "th",
            "ea",
            "ear",
            "\u{2581}he",
            "\u{2581}heart",
        ];
        for (k, p) in pieces.iter().enumerate() {
            // Scores not ordered by length, so that the order of merges matters. (As in real SentencePiece models,
            // every character of a piece is a piece itself.)
            vocab.push((p.to_string(), -(((k * 37) % 53) as f64), 1));
        }
        let tokens: Vec<String> = vocab.iter().map(|v| v.0.clone()).collect();
        let scores: Vec<f64> = vocab.iter().map(|v| v.1).collect();
        let types: Vec<u64> = vocab.iter().map(|v| v.2).collect();
        let plain: Vec<(String, f64)> =
            vocab.iter().map(|v| (v.0.clone(), if v.2 == 1 { v.1 } else { -1e9 })).collect();
        for prefix in [false, true] {
            let tok = sentencepiece_bpe(&tokens, &scores, &types, prefix, Some("<unk>")).unwrap();
            for text in [
                "the patient in the chest pain",
                "heart rate ends radiating",
                "the heartthe  pain, 10% \u{d658}\u{c790} ok",
                "chestpainrad",
                "",
            ] {
                let got = tok.encode(text, false).unwrap().get_ids().to_vec();
                assert_eq!(got, reference(&plain, text, prefix), "{text:?} prefix={prefix}");
                let back = tok.decode(&got, false).unwrap();
                assert_eq!(back, text, "round trip of {text:?}");
            }
        }
    }
}
