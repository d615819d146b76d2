//! BERTScore (Zhang et al., 2020) with greedy matching and optional idf weighting, over a local
//! BERT, RoBERTa or DeBERTa (v1, v2/v3) encoder (Hugging Face folder: `config.json`, `model.safetensors`, `tokenizer.json`,
//! optionally `tokenizer_config.json`), matching the Python `bert-score` package (0.3.13,
//! `bert_score/utils.py`) run with the same model and `num_layers`:
//!
//! - `sent_encode`: the text is `strip()`ped; an empty text encodes as `[CLS] [SEP]`; otherwise
//!   `[CLS] tokens [SEP]` (RoBERTa: `<s> tokens </s>`, the text with a leading space), truncated to the tokenizer's `model_max_length` (from
//!   `tokenizer_config.json`, capped at `max_position_embeddings`) keeping the final `[SEP]`. The
//!   padding and truncation settings stored in `tokenizer.json` are turned off.
//! - The embedding of each token is the hidden state after `num_layers` blocks (default: all),
//!   L2-normalised. `[CLS]` and `[SEP]` stay in the similarity matrix (a hypothesis token may match
//!   the reference's `[SEP]`) but weigh 0.
//! - Weights: without idf, 1 per token; with idf, `ln((M+1)/(df+1))` where `df` counts the M
//!   references containing the token (unseen tokens: `ln(M+1)`), used for both sides.
//! - `P = Σ_i w_h(i)·max_j sim(i,j) / Σ w_h`, `R` likewise over reference tokens, `F = 2PR/(P+R)`;
//!   an empty hypothesis or reference gives P = R = F = 0, and a NaN F becomes 0 (as bert-score).
//! - Optionally rescaled with bert-score's baseline file ([`baseline`]).
//!
//! One deliberate difference: bert-score pads the reference batch and takes the max over the padded
//! similarity row, whose padding entries are 0, so a hypothesis token whose similarities to every
//! reference token are negative scores 0 there when the reference is shorter than the longest one in
//! its batch of 64. This takes the max over real tokens only, so a pair's score never depends on
//! the other pairs. With contextual embeddings (cosines to [CLS]/[SEP] are positive) the two agree.
pub mod baseline;
pub mod deberta;
pub mod model;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use serde::Serialize;
use tokenizers::Tokenizer;

pub use deberta::{DebertaConfig, DebertaEncoder};
pub use model::{BertConfig, BertEncoder};

/// Errors of loading a model or scoring.
#[derive(Debug, thiserror::Error)]
pub enum BertScoreError {
    #[error("{path}: {msg}")]
    Load { path: PathBuf, msg: String },
    #[error("encoder: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{0} references but {1} hypotheses: they pair up one to one")]
    Mismatch(usize, usize),
}

/// One pair's BERTScore: precision (over hypothesis tokens), recall (over reference tokens), F1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BertScore {
    pub p: f64,
    pub r: f64,
    pub f: f64,
}

/// The encoder architectures BERTScore runs: BERT and RoBERTa (one graph), DeBERTa v1 and v2/v3.
pub enum Encoder {
    Bert(BertEncoder),
    Deberta(DebertaEncoder),
}

impl Encoder {
    /// Load the encoder `config.json` names (`model_type`), keeping the first `layer` blocks.
    pub fn load(model_dir: &Path, layer: Option<usize>) -> Result<Encoder, BertScoreError> {
        let cfg_path = model_dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| load_err(&cfg_path, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| load_err(&cfg_path, e))?;
        let weights = model_dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(load_err(&weights, "missing (safetensors weights are needed)"));
        }
        // SAFETY: the file is memory-mapped read-only and not modified while the encoder lives.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &Device::Cpu)? };
        match v.get("model_type").and_then(|m| m.as_str()).unwrap_or("bert") {
            "deberta" | "deberta-v2" => {
                let config: DebertaConfig = serde_json::from_value(v).map_err(|e| load_err(&cfg_path, e))?;
                Ok(Encoder::Deberta(DebertaEncoder::load(vb, &config, layer).map_err(|e| load_err(model_dir, e))?))
            }
            "bert" | "roberta" | "xlm-roberta" | "camembert" => {
                let config: BertConfig = serde_json::from_value(v).map_err(|e| load_err(&cfg_path, e))?;
                Ok(Encoder::Bert(BertEncoder::load(vb, &config, layer).map_err(|e| load_err(model_dir, e))?))
            }
            other => Err(load_err(
                &cfg_path,
                format!("model_type `{other}` is not supported (bert, roberta, deberta, deberta-v2)"),
            )),
        }
    }

    pub fn layers(&self) -> usize {
        match self {
            Encoder::Bert(e) => e.layers(),
            Encoder::Deberta(e) => e.layers(),
        }
    }

    pub fn hidden_size(&self) -> usize {
        match self {
            Encoder::Bert(e) => e.config.hidden_size,
            Encoder::Deberta(e) => e.config.hidden_size,
        }
    }

    fn max_positions(&self) -> usize {
        match self {
            Encoder::Bert(e) => e.config.max_position_embeddings,
            // Relative positions have no hard limit; the tokenizer's model_max_length applies.
            Encoder::Deberta(e) => e.config.max_position_embeddings.max(512),
        }
    }

    fn pad_token_id(&self) -> u32 {
        match self {
            Encoder::Bert(e) => e.config.pad_token_id,
            Encoder::Deberta(e) => e.config.pad_token_id,
        }
    }

    fn is_roberta(&self) -> bool {
        matches!(self, Encoder::Bert(e) if e.config.is_roberta())
    }

    /// `ids`: (batch, len) u32; `mask`: (batch, len) f32 with 1 for tokens. Hidden states (batch, len, hidden).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor, candle_core::Error> {
        match self {
            Encoder::Bert(e) => e.forward(ids, mask),
            Encoder::Deberta(e) => e.forward(ids, mask),
        }
    }
}

/// A loaded encoder and tokenizer that scores hypothesis/reference pairs.
pub struct BertScorer {
    encoder: Encoder,
    tokenizer: Tokenizer,
    cls: u32,
    sep: u32,
    pad: u32,
    max_len: usize,
    /// Byte-level BPE models (RoBERTa) are asked with a leading space, as bert-score's `sent_encode` does
    /// (`add_prefix_space=True`).
    prefix_space: bool,
    /// Sentences per encoder batch (bert-score's default is 64).
    pub batch_size: usize,
}

fn load_err(path: &Path, msg: impl ToString) -> BertScoreError {
    BertScoreError::Load { path: path.to_path_buf(), msg: msg.to_string() }
}

/// Python's `str.strip()` (its whitespace also includes U+001C..U+001F).
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

impl BertScorer {
    /// Loads `model_dir` and keeps the first `layer` blocks (bert-score's `num_layers`; `None` = all).
    pub fn load(model_dir: &Path, layer: Option<usize>) -> Result<Self, BertScoreError> {
        let encoder = Encoder::load(model_dir, layer)?;
        let tok_path = model_dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| load_err(&tok_path, e))?;
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(|e| load_err(&tok_path, e))?;
        let id = |t: &str| tokenizer.token_to_id(t).ok_or_else(|| load_err(&tok_path, format!("no {t} token")));
        let roberta = encoder.is_roberta();
        let (cls, sep) = if roberta { (id("<s>")?, id("</s>")?) } else { (id("[CLS]")?, id("[SEP]")?) };
        let pad = tokenizer.token_to_id(if roberta { "<pad>" } else { "[PAD]" }).unwrap_or(encoder.pad_token_id());
        let tc_path = model_dir.join("tokenizer_config.json");
        let model_max = std::fs::read_to_string(&tc_path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("model_max_length").and_then(serde_json::Value::as_f64))
            .map(|x| x.min(usize::MAX as f64) as usize);
        let max_len = model_max.unwrap_or(usize::MAX).min(encoder.max_positions()).max(2);
        Ok(BertScorer { encoder, tokenizer, cls, sep, pad, max_len, prefix_space: roberta, batch_size: 64 })
    }

    /// Number of encoder blocks in use (the `num_layers` to give bert-score for the same numbers).
    pub fn layers(&self) -> usize {
        self.encoder.layers()
    }

    /// bert-score's `sent_encode`: `[CLS] tokens [SEP]` (`<s> tokens </s>` for RoBERTa), truncated to the model's
    /// maximum length.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, BertScoreError> {
        let s = py_strip(text);
        let mut ids = vec![self.cls];
        if !s.is_empty() {
            let spaced;
            let s = if self.prefix_space && !s.starts_with(' ') {
                spaced = format!(" {s}");
                spaced.as_str()
            } else {
                s
            };
            let enc = self.tokenizer.encode(s, false).map_err(|e| BertScoreError::Tokenizer(e.to_string()))?;
            let body = enc.get_ids();
            ids.extend_from_slice(&body[..body.len().min(self.max_len - 2)]);
        }
        ids.push(self.sep);
        Ok(ids)
    }

    /// The L2-normalised token embeddings of each text (its `encode` tokens, `hidden_size` floats
    /// per token, row after row), as BERTScore compares them.
    pub fn embed_texts<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>, BertScoreError> {
        let seqs: Vec<Vec<u32>> = texts.iter().map(|t| self.encode(t.as_ref())).collect::<Result<_, _>>()?;
        self.embed(&seqs)
    }

    /// The encoder's hidden size (floats per token embedding).
    pub fn hidden_size(&self) -> usize {
        self.encoder.hidden_size()
    }

    /// L2-normalised token embeddings (rows of `hidden` floats) of each token sequence, encoded in
    /// batches of similar length.
    fn embed(&self, seqs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, BertScoreError> {
        let h = self.encoder.hidden_size();
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
        let mut out = vec![Vec::new(); seqs.len()];
        for chunk in order.chunks(self.batch_size.max(1)) {
            let t = chunk.iter().map(|&i| seqs[i].len()).max().unwrap_or(0);
            let mut ids = Vec::with_capacity(chunk.len() * t);
            let mut mask = Vec::with_capacity(chunk.len() * t);
            for &i in chunk {
                let s = &seqs[i];
                ids.extend_from_slice(s);
                ids.extend(std::iter::repeat_n(self.pad, t - s.len()));
                mask.extend(std::iter::repeat_n(1f32, s.len()));
                mask.extend(std::iter::repeat_n(0f32, t - s.len()));
            }
            let ids = Tensor::from_vec(ids, (chunk.len(), t), &Device::Cpu)?;
            let mask = Tensor::from_vec(mask, (chunk.len(), t), &Device::Cpu)?;
            let hidden = self.encoder.forward(&ids, &mask)?.flatten_all()?.to_vec1::<f32>()?;
            for (k, &i) in chunk.iter().enumerate() {
                let n = seqs[i].len();
                let mut e = hidden[k * t * h..(k * t + n) * h].to_vec();
                for row in e.chunks_mut(h) {
                    let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
                    row.iter_mut().for_each(|x| *x /= norm);
                }
                out[i] = e;
            }
        }
        Ok(out)
    }

    /// Scores each hypothesis against its reference. With `idf`, tokens are weighted by their
    /// inverse document frequency over `refs` (bert-score's `idf=True`).
    pub fn score<R: AsRef<str>, H: AsRef<str>>(
        &self,
        refs: &[R],
        hyps: &[H],
        idf: bool,
    ) -> Result<Vec<BertScore>, BertScoreError> {
        if refs.len() != hyps.len() {
            return Err(BertScoreError::Mismatch(refs.len(), hyps.len()));
        }
        // Each distinct text is encoded once (as bert-score's dedup).
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut texts: Vec<&str> = Vec::new();
        let mut pair_idx: Vec<(usize, usize)> = Vec::with_capacity(refs.len());
        for (r, h) in refs.iter().zip(hyps) {
            let mut ix = [0usize; 2];
            for (k, t) in [r.as_ref(), h.as_ref()].into_iter().enumerate() {
                ix[k] = *index.entry(t).or_insert_with(|| {
                    texts.push(t);
                    texts.len() - 1
                });
            }
            pair_idx.push((ix[0], ix[1]));
        }
        let seqs: Vec<Vec<u32>> = texts.iter().map(|t| self.encode(t)).collect::<Result<_, _>>()?;
        let weights = self.weights(&pair_idx, &seqs, idf);
        let embs = self.embed(&seqs)?;
        let h = self.encoder.hidden_size();
        Ok(pair_idx.par_iter().map(|&(r, c)| greedy(&embs[r], &weights[r], &embs[c], &weights[c], h)).collect())
    }

    /// Per-sequence token weights: idf over the references (or 1), with [CLS]/[SEP] at 0.
    fn weights(&self, pairs: &[(usize, usize)], seqs: &[Vec<u32>], idf: bool) -> Vec<Vec<f64>> {
        let table: Option<(HashMap<u32, usize>, f64)> = idf.then(|| {
            let mut df: HashMap<u32, usize> = HashMap::new();
            for &(r, _) in pairs {
                for &t in seqs[r].iter().collect::<HashSet<_>>() {
                    *df.entry(t).or_default() += 1;
                }
            }
            (df, pairs.len() as f64)
        });
        seqs.iter()
            .map(|s| {
                s.iter()
                    .map(|&t| {
                        if t == self.cls || t == self.sep {
                            0.0
                        } else if let Some((df, m)) = &table {
                            ((m + 1.0) / (df.get(&t).copied().unwrap_or(0) as f64 + 1.0)).ln()
                        } else {
                            1.0
                        }
                    })
                    .collect()
            })
            .collect()
    }
}

/// Greedy matching of one pair: `re`/`he` are normalised embeddings (rows of `h`), `rw`/`hw` the
/// token weights.
fn greedy(re: &[f32], rw: &[f64], he: &[f32], hw: &[f64], h: usize) -> BertScore {
    let (nr, nh) = (rw.len(), hw.len());
    let mut best_h = vec![f32::NEG_INFINITY; nh];
    let mut best_r = vec![f32::NEG_INFINITY; nr];
    for (i, hrow) in he.chunks(h).enumerate() {
        for (j, rrow) in re.chunks(h).enumerate() {
            let s: f32 = hrow.iter().zip(rrow).map(|(a, b)| a * b).sum();
            best_h[i] = best_h[i].max(s);
            best_r[j] = best_r[j].max(s);
        }
    }
    let wavg = |best: &[f32], w: &[f64]| {
        let tot: f64 = w.iter().sum();
        best.iter().zip(w).map(|(&b, &x)| b as f64 * (x / tot)).sum::<f64>()
    };
    let (mut p, mut r) = (wavg(&best_h, hw), wavg(&best_r, rw));
    let mut f = 2.0 * p * r / (p + r);
    if nh == 2 || nr == 2 {
        // An empty side: bert-score zeroes P and R (F is NaN there and becomes 0 below).
        p = 0.0;
        r = 0.0;
    }
    if f.is_nan() {
        f = 0.0;
    }
    BertScore { p, r, f }
}
