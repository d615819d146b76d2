//! DeBERTa encoders (Hugging Face `DebertaModel`, v1, and `DebertaV2Model`, the v2/v3 architecture) on candle, for
//! BERTScore with the encoders bert-score users pick (`microsoft/deberta-xlarge-mnli` is its recommended model).
//!
//! The blocks are BERT's post-LN blocks; what differs is attention, which is *disentangled*: besides
//! content-to-content scores `q·k`, every score gets content-to-position `q_i · Kr[δ(i,j)]` (c2p) and
//! position-to-content `k_j · Qr[δ(j,i)]` (p2c) terms, where `Kr`/`Qr` are projections of shared relative-position
//! embeddings and `δ` indexes them by the relative distance `i - j` (v2: log-bucketed beyond half the bucket count),
//! clamped to the embedding span. Scores are divided by `sqrt(d · (1 + #terms))`. There are no absolute position
//! embeddings (`position_biased_input = false`); the embedding output is multiplied by the attention mask.
//! - v1: one `in_proj` (no bias) yields q, k, v interleaved per head, with separate `q_bias`/`v_bias`; `pos_proj`
//!   (no bias) and `pos_q_proj` project the relative embeddings; the query is scaled before the c2p product.
//! - v2: `query_proj`/`key_proj`/`value_proj`; with `share_att_key` the relative embeddings go through the same
//!   key/query projections; the relative embeddings pass a LayerNorm (`norm_rel_ebd = "layer_norm"`).
//!
//! Written from the transformers source (`modeling_deberta.py`, `modeling_deberta_v2.py`) and checked against it
//! on tiny random models (`tests/tiny_encoders.rs`).
use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{
    embedding, layer_norm, linear, linear_no_bias, Embedding, LayerNorm, LayerNormConfig, Linear, VarBuilder,
};

use super::model::{Act, BlockTail};
use serde::Deserialize;

/// The `config.json` fields of a DeBERTa model.
#[derive(Debug, Clone, Deserialize)]
pub struct DebertaConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: u32,
    #[serde(default)]
    pub relative_attention: bool,
    #[serde(default = "default_max_rel")]
    pub max_relative_positions: i64,
    #[serde(default)]
    pub position_buckets: i64,
    #[serde(default = "yes")]
    pub position_biased_input: bool,
    #[serde(default)]
    pub pos_att_type: Option<PosAttType>,
    #[serde(default)]
    pub share_att_key: bool,
    #[serde(default)]
    pub norm_rel_ebd: Option<String>,
    #[serde(default)]
    pub embedding_size: Option<usize>,
    #[serde(default)]
    pub conv_kernel_size: usize,
}

/// `pos_att_type`: a list (`["p2c", "c2p"]`) or, in old configs, a `|`-separated string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PosAttType {
    List(Vec<String>),
    Text(String),
}

impl PosAttType {
    fn kinds(&self) -> Vec<String> {
        match self {
            PosAttType::List(v) => v.iter().map(|s| s.to_lowercase()).collect(),
            PosAttType::Text(s) => s.split('|').map(|x| x.trim().to_lowercase()).filter(|x| !x.is_empty()).collect(),
        }
    }
}

fn default_act() -> String {
    "gelu".into()
}
fn default_eps() -> f64 {
    1e-7
}
fn default_max_rel() -> i64 {
    -1
}
fn yes() -> bool {
    true
}

/// transformers' `make_log_bucket_position`: distances within `bucket/2` stay exact, longer ones are bucketed
/// logarithmically up to `max_position`.
fn log_bucket(rel: i64, bucket: i64, max_position: i64) -> i64 {
    let mid = bucket / 2;
    let abs = if rel < mid && rel > -mid { mid - 1 } else { rel.abs() };
    if abs <= mid {
        return rel;
    }
    let log_pos = ((abs as f64 / mid as f64).ln() / ((max_position - 1) as f64 / mid as f64).ln() * (mid - 1) as f64)
        .ceil() as i64
        + mid;
    log_pos * rel.signum()
}

struct Attention {
    // v2 (and v1 after splitting in_proj): separate projections.
    query: Linear,
    key: Linear,
    value: Linear,
    /// v1: the relative-position projections (`pos_proj` for c2p, `pos_q_proj` for p2c).
    pos_key: Option<Linear>,
    pos_query: Option<Linear>,
}

struct Layer {
    attn: Attention,
    tail: BlockTail,
}

/// A DeBERTa (v1 or v2) encoder that stops after `layers` blocks.
pub struct DebertaEncoder {
    word: Embedding,
    token_type: Option<Embedding>,
    position: Option<Embedding>,
    embed_proj: Option<Linear>,
    emb_ln: LayerNorm,
    rel_embeddings: Option<Tensor>,
    layers: Vec<Layer>,
    v2: bool,
    c2p: bool,
    p2c: bool,
    /// Relative embedding rows on each side of 0 (v1: max_relative_positions; v2: position_buckets or that).
    span: i64,
    max_relative: i64,
    buckets: i64,
    act: Act,
    pub config: DebertaConfig,
}

impl DebertaEncoder {
    pub fn load(vb: VarBuilder, config: &DebertaConfig, layers: Option<usize>) -> Result<Self> {
        let v2 = config.model_type == "deberta-v2";
        if config.conv_kernel_size > 0 {
            candle_core::bail!("DeBERTa with a convolution layer (conv_kernel_size > 0) is not supported");
        }
        let n = layers.unwrap_or(config.num_hidden_layers);
        if n > config.num_hidden_layers {
            candle_core::bail!("layer {n} asked for, but the model has {} layers", config.num_hidden_layers);
        }
        let h = config.hidden_size;
        let heads = config.num_attention_heads;
        if heads == 0 || !h.is_multiple_of(heads) {
            candle_core::bail!("hidden_size {h} is not a multiple of {heads} heads");
        }
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") { vb } else { vb.pp("deberta") };
        let ln =
            |vb: VarBuilder| layer_norm(h, LayerNormConfig { eps: config.layer_norm_eps, ..Default::default() }, vb);
        let e = vb.pp("embeddings");
        let emb = config.embedding_size.unwrap_or(h);
        let word = embedding(config.vocab_size, emb, e.pp("word_embeddings"))?;
        let token_type = if config.type_vocab_size > 0 {
            Some(embedding(config.type_vocab_size, emb, e.pp("token_type_embeddings"))?)
        } else {
            None
        };
        let position = if config.position_biased_input {
            Some(embedding(config.max_position_embeddings, emb, e.pp("position_embeddings"))?)
        } else {
            None
        };
        let embed_proj = if emb != h { Some(linear_no_bias(emb, h, e.pp("embed_proj"))?) } else { None };
        let emb_ln = ln(e.pp("LayerNorm"))?;
        let kinds = config.pos_att_type.as_ref().map(PosAttType::kinds).unwrap_or_default();
        let (c2p, p2c) = (kinds.iter().any(|k| k == "c2p"), kinds.iter().any(|k| k == "p2c"));
        let max_relative = if config.max_relative_positions < 1 {
            config.max_position_embeddings as i64
        } else {
            config.max_relative_positions
        };
        let buckets = if v2 { config.position_buckets } else { -1 };
        let span = if buckets > 0 { buckets } else { max_relative };
        let enc = vb.pp("encoder");
        let rel_embeddings = if config.relative_attention {
            let w = enc.get(((span * 2) as usize, h), "rel_embeddings.weight")?;
            let norm = config.norm_rel_ebd.as_deref().unwrap_or("none").split('|').any(|x| x.trim() == "layer_norm");
            Some(if v2 && norm { ln(enc.pp("LayerNorm"))?.forward(&w)? } else { w })
        } else {
            None
        };
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let l = enc.pp(format!("layer.{i}"));
            let a = l.pp("attention");
            let s = a.pp("self");
            let attn = if v2 {
                let query = linear(h, h, s.pp("query_proj"))?;
                let key = linear(h, h, s.pp("key_proj"))?;
                let value = linear(h, h, s.pp("value_proj"))?;
                let (pos_key, pos_query) = if config.share_att_key || !config.relative_attention {
                    (None, None)
                } else {
                    (
                        if c2p { Some(linear(h, h, s.pp("pos_key_proj"))?) } else { None },
                        if p2c { Some(linear(h, h, s.pp("pos_query_proj"))?) } else { None },
                    )
                };
                Attention { query, key, value, pos_key, pos_query }
            } else {
                // in_proj's rows are [q|k|v] interleaved per head: head k owns rows 3dk..3dk+3d. Split them into
                // plain projections with the separate q/v biases.
                let d = h / heads;
                let w = s.get((3 * h, h), "in_proj.weight")?;
                let pick = |part: usize| -> Result<Tensor> {
                    let rows: Vec<u32> =
                        (0..heads).flat_map(|k| (0..d).map(move |r| (k * 3 * d + part * d + r) as u32)).collect();
                    let idx = Tensor::from_vec(rows, h, w.device())?;
                    w.index_select(&idx, 0)
                };
                let q_bias = s.get(h, "q_bias")?;
                let v_bias = s.get(h, "v_bias")?;
                let zero = Tensor::zeros(h, DType::F32, w.device())?;
                let pos_key =
                    if c2p && config.relative_attention { Some(linear_no_bias(h, h, s.pp("pos_proj"))?) } else { None };
                let pos_query =
                    if p2c && config.relative_attention { Some(linear(h, h, s.pp("pos_q_proj"))?) } else { None };
                Attention {
                    query: Linear::new(pick(0)?, Some(q_bias)),
                    key: Linear::new(pick(1)?, Some(zero)),
                    value: Linear::new(pick(2)?, Some(v_bias)),
                    pos_key,
                    pos_query,
                }
            };
            out.push(Layer { attn, tail: BlockTail::load(l, h, config.intermediate_size, config.layer_norm_eps)? });
        }
        Ok(DebertaEncoder {
            word,
            token_type,
            position,
            embed_proj,
            emb_ln,
            rel_embeddings,
            layers: out,
            v2,
            c2p,
            p2c,
            span,
            max_relative,
            buckets,
            act: Act::parse(&config.hidden_act)?,
            config: config.clone(),
        })
    }

    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    /// Relative-embedding row indexes for c2p (`[i][j]`) and p2c (`[j][i]` before the transpose), and the rows used.
    fn rel_index(&self, t: usize) -> (Vec<u32>, Vec<u32>, i64, i64) {
        // v1 uses the rows max_rel - span .. max_rel + span with span = min(t, max_rel); v2 all 2 * span rows.
        let (span, first) = if self.v2 {
            (self.span, 0)
        } else {
            let s = (t as i64).min(self.max_relative);
            (s, self.max_relative - s)
        };
        let rel = |i: usize, j: usize| {
            let r = i as i64 - j as i64;
            if self.v2 && self.buckets > 0 && self.max_relative > 0 {
                log_bucket(r, self.buckets, self.max_relative)
            } else {
                r
            }
        };
        let clamp = |x: i64| x.clamp(0, span * 2 - 1) as u32;
        let mut c2p = Vec::with_capacity(t * t);
        let mut p2c = Vec::with_capacity(t * t);
        for i in 0..t {
            for j in 0..t {
                c2p.push(clamp(rel(i, j) + span));
                p2c.push(clamp(-rel(i, j) + span));
            }
        }
        (c2p, p2c, span, first)
    }

    /// `ids`: (batch, len) u32; `mask`: (batch, len) f32, 1 for tokens. Returns (batch, len, hidden).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let dev: &Device = ids.device();
        let h = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let d = h / heads;
        let mut x = self.word.forward(ids)?;
        if let Some(p) = &self.position {
            x = x.broadcast_add(&p.forward(&Tensor::arange(0u32, t as u32, dev)?)?)?;
        }
        if let Some(tt) = &self.token_type {
            x = (x + tt.forward(&Tensor::zeros((b, t), DType::U32, dev)?)?)?;
        }
        if let Some(p) = &self.embed_proj {
            x = p.forward(&x)?;
        }
        x = self.emb_ln.forward(&x)?;
        x = x.broadcast_mul(&mask.unsqueeze(2)?)?;
        let bias = ((mask.ones_like()? - mask)? * f32::MIN as f64)?.reshape((b, 1, 1, t))?;
        let terms = 1 + self.c2p as usize + self.p2c as usize;
        let scale = ((d * terms) as f64).sqrt();
        let (c2p_idx, p2c_idx, span, first) = self.rel_index(t);
        let rel = match &self.rel_embeddings {
            Some(r) => Some(r.narrow(0, first as usize, (span * 2) as usize)?),
            None => None,
        };
        let idx = |v: &[u32]| -> Result<Tensor> {
            Tensor::from_vec(v.to_vec(), (1, 1, t, t), dev)?.broadcast_as((b, heads, t, t))?.contiguous()
        };
        let (c2p_idx, p2c_idx) = (idx(&c2p_idx)?, idx(&p2c_idx)?);
        let split = |y: Tensor, n: usize| y.reshape((n, y.dim(1)?, heads, d))?.transpose(1, 2)?.contiguous();
        for l in &self.layers {
            let a = &l.attn;
            let q = split(a.query.forward(&x)?, b)?;
            let k = split(a.key.forward(&x)?, b)?;
            let v = split(a.value.forward(&x)?, b)?;
            let mut scores = (q.matmul(&k.t()?)? / scale)?;
            if let Some(rel) = &rel {
                let rel3 = rel.unsqueeze(0)?; // (1, 2span, h)
                if self.c2p {
                    let proj = a.pos_key.as_ref().unwrap_or(&a.key);
                    let pk = split(proj.forward(&rel3)?, 1)?; // (1, heads, 2span, d)
                    let att = q.broadcast_matmul(&pk.t()?)?; // (b, heads, t, 2span)
                    scores = (scores + (att.gather(&c2p_idx, D::Minus1)? / scale)?)?;
                }
                if self.p2c {
                    let proj = a.pos_query.as_ref().unwrap_or(&a.query);
                    let pq = split(proj.forward(&rel3)?, 1)?;
                    let att = k.broadcast_matmul(&pq.t()?)?; // (b, heads, t_k, 2span)
                    let att = att.gather(&p2c_idx, D::Minus1)?.transpose(2, 3)?;
                    scores = (scores + (att / scale)?)?;
                }
            }
            let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&bias)?)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h))?;
            x = l.tail.forward(&ctx, &x, self.act)?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transformers' `make_log_bucket_position` tables (tests/fixtures/tiny_encoders/log_bucket_positions.json).
    #[test]
    fn log_buckets_match_transformers() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny_encoders/log_bucket_positions.json");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let mut checked = 0;
        for t in v["tables"].as_array().unwrap() {
            let (size, max) = (t["bucket_size"].as_i64().unwrap(), t["max_position"].as_i64().unwrap());
            let first = t["first_relative_position"].as_i64().unwrap();
            for (k, want) in t["buckets"].as_array().unwrap().iter().enumerate() {
                let r = first + k as i64;
                let want = want.as_i64().unwrap();
                assert_eq!(log_bucket(r, size, max), want, "bucket({r}, {size}, {max})");
                assert_eq!(log_bucket(-r, size, max), -want, "odd");
                checked += 1;
            }
        }
        assert!(checked > 500);
    }
}
