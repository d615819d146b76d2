//! A BERT-family encoder (Hugging Face `BertModel` and `RobertaModel` layouts) on candle, written with candle-nn so
//! that BERTScore can take the hidden state after any number of layers (bert-score's `num_layers`: it truncates
//! `model.encoder.layer` to the first `num_layers` and uses the last hidden state).
//!
//! Matches `transformers`' BertModel in eval mode: word + absolute position + token-type (all 0)
//! embeddings, LayerNorm, then post-LN blocks of multi-head self-attention (scores / sqrt(d),
//! padding keys masked out) and a GELU feed-forward. Dropout is the identity. RoBERTa is the same graph with
//! position ids counted from `pad_token_id + 1` (`create_position_ids_from_input_ids`: padding keeps
//! `pad_token_id`) and a `roberta.` weight prefix.
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, LayerNormConfig, Linear, VarBuilder};
use serde::Deserialize;

/// The fields of a Hugging Face BERT `config.json` that the encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: u32,
    #[serde(default = "default_pos")]
    pub position_embedding_type: String,
    /// `bert`, `roberta`, ... (RoBERTa counts positions from `pad_token_id + 1`).
    #[serde(default)]
    pub model_type: String,
}

impl BertConfig {
    pub fn is_roberta(&self) -> bool {
        matches!(self.model_type.as_str(), "roberta" | "xlm-roberta" | "camembert")
    }
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_pos() -> String {
    "absolute".into()
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Act {
    /// `gelu` in transformers: the exact erf form.
    GeluErf,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    Relu,
}

impl Act {
    pub(crate) fn parse(s: &str) -> Result<Act> {
        match s {
            "gelu" => Ok(Act::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Act::GeluTanh),
            "relu" => Ok(Act::Relu),
            o => candle_core::bail!("hidden_act `{o}` is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)"),
        }
    }
    pub(crate) fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Act::GeluErf => x.gelu_erf(),
            Act::GeluTanh => x.gelu(),
            Act::Relu => x.relu(),
        }
    }
}

/// What follows attention in a post-LN block, the same in BERT, RoBERTa and DeBERTa: the attention output
/// projection and LayerNorm over the residual, then the feed-forward and its LayerNorm.
pub(crate) struct BlockTail {
    attn_out: Linear,
    attn_ln: LayerNorm,
    inter: Linear,
    out: Linear,
    out_ln: LayerNorm,
}

impl BlockTail {
    /// From a layer's `attention.output.*`, `intermediate.dense` and `output.*` tensors.
    pub(crate) fn load(layer: VarBuilder, hidden: usize, intermediate: usize, eps: f64) -> Result<Self> {
        let ln = |vb: VarBuilder| layer_norm(hidden, LayerNormConfig { eps, ..Default::default() }, vb);
        let a = layer.pp("attention");
        Ok(BlockTail {
            attn_out: linear(hidden, hidden, a.pp("output.dense"))?,
            attn_ln: ln(a.pp("output.LayerNorm"))?,
            inter: linear(hidden, intermediate, layer.pp("intermediate.dense"))?,
            out: linear(intermediate, hidden, layer.pp("output.dense"))?,
            out_ln: ln(layer.pp("output.LayerNorm"))?,
        })
    }

    /// The block's output from the attention context `ctx` and the block's input `x`.
    pub(crate) fn forward(&self, ctx: &Tensor, x: &Tensor, act: Act) -> Result<Tensor> {
        let a = self.attn_ln.forward(&(self.attn_out.forward(ctx)? + x)?)?;
        let f = self.out.forward(&act.apply(&self.inter.forward(&a)?)?)?;
        self.out_ln.forward(&(f + a)?)
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    tail: BlockTail,
}

/// A BERT encoder that stops after `layers` transformer blocks.
pub struct BertEncoder {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    emb_ln: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    act: Act,
    pub config: BertConfig,
}

impl BertEncoder {
    /// Loads the embeddings and the first `layers` blocks (all of them when `None`). Accepts weights
    /// saved from `BertModel` (no prefix) or from a task model (`bert.` prefix).
    pub fn load(vb: VarBuilder, config: &BertConfig, layers: Option<usize>) -> Result<Self> {
        if config.position_embedding_type != "absolute" {
            candle_core::bail!(
                "position_embedding_type `{}` is not supported (absolute)",
                config.position_embedding_type
            );
        }
        let n = layers.unwrap_or(config.num_hidden_layers);
        if n > config.num_hidden_layers {
            candle_core::bail!("layer {n} asked for, but the model has {} layers", config.num_hidden_layers);
        }
        if config.num_attention_heads == 0 || !config.hidden_size.is_multiple_of(config.num_attention_heads) {
            candle_core::bail!(
                "hidden_size {} is not a multiple of {} heads",
                config.hidden_size,
                config.num_attention_heads
            );
        }
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else if vb.contains_tensor("roberta.embeddings.word_embeddings.weight") {
            vb.pp("roberta")
        } else {
            vb.pp("bert")
        };
        let h = config.hidden_size;
        let ln =
            |vb: VarBuilder| layer_norm(h, LayerNormConfig { eps: config.layer_norm_eps, ..Default::default() }, vb);
        let e = vb.pp("embeddings");
        let word = embedding(config.vocab_size, h, e.pp("word_embeddings"))?;
        let position = embedding(config.max_position_embeddings, h, e.pp("position_embeddings"))?;
        let token_type = embedding(config.type_vocab_size, h, e.pp("token_type_embeddings"))?;
        let emb_ln = ln(e.pp("LayerNorm"))?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            out.push(Layer {
                query: linear(h, h, a.pp("self.query"))?,
                key: linear(h, h, a.pp("self.key"))?,
                value: linear(h, h, a.pp("self.value"))?,
                tail: BlockTail::load(l, h, config.intermediate_size, config.layer_norm_eps)?,
            });
        }
        Ok(BertEncoder {
            word,
            position,
            token_type,
            emb_ln,
            layers: out,
            heads: config.num_attention_heads,
            act: Act::parse(&config.hidden_act)?,
            config: config.clone(),
        })
    }

    /// Number of blocks this encoder runs.
    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    /// `ids`: (batch, len) u32; `mask`: (batch, len) f32 with 1 for tokens, 0 for padding.
    /// Returns the hidden states (batch, len, hidden) after the loaded blocks.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let dev = ids.device();
        let types = Tensor::zeros((b, t), DType::U32, dev)?;
        let x = if self.config.is_roberta() {
            // Real tokens count from pad + 1, padding stays at pad (sequences are right-padded).
            let pad = self.config.pad_token_id as f64;
            let steps = Tensor::arange(0u32, t as u32, dev)?.to_dtype(DType::F32)?.reshape((1, t))?;
            let real = mask.broadcast_mul(&(steps + (pad + 1.0))?)?;
            let pads = ((mask.ones_like()? - mask)? * pad)?;
            let pos = (real + pads)?.to_dtype(DType::U32)?;
            (self.word.forward(ids)? + self.position.forward(&pos)?)?
        } else {
            let pos = Tensor::arange(0u32, t as u32, dev)?;
            self.word.forward(ids)?.broadcast_add(&self.position.forward(&pos)?)?
        };
        let x = (x + self.token_type.forward(&types)?)?;
        let mut x = self.emb_ln.forward(&x)?;
        // Additive key mask, (b, 1, 1, t): 0 for tokens, a large negative for padding.
        let bias = ((mask.ones_like()? - mask)? * f32::MIN as f64)?.reshape((b, 1, 1, t))?;
        let hd = self.config.hidden_size / self.heads;
        let scale = 1.0 / (hd as f64).sqrt();
        for l in &self.layers {
            let split = |y: Tensor| y.reshape((b, t, self.heads, hd))?.transpose(1, 2)?.contiguous();
            let q = split(l.query.forward(&x)?)?;
            let k = split(l.key.forward(&x)?)?;
            let v = split(l.value.forward(&x)?)?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, self.config.hidden_size))?;
            x = l.tail.forward(&ctx, &x, self.act)?;
        }
        Ok(x)
    }
}
