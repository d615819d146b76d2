//! What a forward pass keeps for a backward pass ([`Tape`], one [`LayerTape`] per layer), recorded by
//! [`super::Model::forward_tape`]. Inference passes no tape and records nothing.
//!
//! Per layer it keeps the inputs of every operation whose gradient needs them: the residual stream and the RMS
//! norms' inputs with their inverse norms (`1 / rms`), q and k after rope (and before the per-head norms of q/k-norm
//! models), v, the attention output with each (query, head) row's log-sum-exp (a flash-style backward recomputes the
//! probabilities from q, k and the log-sum-exp instead of storing `t x t` per head), and the MLP's gate and up
//! pre-activations. All buffers are row-major over the pass's rows, sequence after sequence ([`Tape::spans`]).

/// One layer's saved activations.
#[derive(Debug, Clone, Default)]
pub struct LayerTape {
    /// The residual stream entering the layer, `t x hidden`.
    pub x_in: Vec<f32>,
    /// `attn_norm(x_in)`, `t x hidden`, and each row's `1 / rms(x_in)`.
    pub attn_normed: Vec<f32>,
    pub attn_inv_rms: Vec<f32>,
    /// q/k-norm models: q and k before their per-head norm, and each head row's `1 / rms` (`t x n_head`,
    /// `t x n_kv_head`).
    pub q_raw: Option<Vec<f32>>,
    pub k_raw: Option<Vec<f32>>,
    pub q_inv_rms: Vec<f32>,
    pub k_inv_rms: Vec<f32>,
    /// q after rope, `t x n_head*head_dim`; k after rope and v, `t x n_kv_head*head_dim`.
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    /// The attention output before `o_proj`, `t x n_head*head_dim`, and the log-sum-exp of each (query, head) row's
    /// scaled scores, `t x n_head`.
    pub attn_out: Vec<f32>,
    pub attn_lse: Vec<f32>,
    /// Sandwich-norm models: `o_proj`'s output before the post-attention norm, and its `1 / rms` per row.
    pub o_raw: Option<Vec<f32>>,
    pub o_inv_rms: Vec<f32>,
    /// The residual stream after attention, `t x hidden`.
    pub x_mid: Vec<f32>,
    /// `ffn_norm(x_mid)` and its `1 / rms` per row.
    pub ffn_normed: Vec<f32>,
    pub ffn_inv_rms: Vec<f32>,
    /// The MLP's gate and up projections before the activation, `t x ffn`.
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
    /// Sandwich-norm models: `down_proj`'s output before the post-MLP norm, and its `1 / rms` per row.
    pub down_raw: Option<Vec<f32>>,
    pub down_inv_rms: Vec<f32>,
}

/// A whole forward pass's saved activations.
#[derive(Debug, Clone, Default)]
pub struct Tape {
    /// `(first row, rows)` of each sequence in the pass.
    pub spans: Vec<(usize, usize)>,
    pub layers: Vec<LayerTape>,
    /// The residual stream entering the final norm, `t x hidden`, and each row's `1 / rms`.
    pub x_final: Vec<f32>,
    pub final_inv_rms: Vec<f32>,
}

impl LayerTape {
    /// Bytes held (what a training step's activation memory costs per layer).
    pub fn bytes(&self) -> usize {
        let opt = |v: &Option<Vec<f32>>| v.as_ref().map_or(0, Vec::len);
        4 * (self.x_in.len()
            + self.attn_normed.len()
            + self.attn_inv_rms.len()
            + opt(&self.q_raw)
            + opt(&self.k_raw)
            + self.q_inv_rms.len()
            + self.k_inv_rms.len()
            + self.q.len()
            + self.k.len()
            + self.v.len()
            + self.attn_out.len()
            + self.attn_lse.len()
            + opt(&self.o_raw)
            + self.o_inv_rms.len()
            + self.x_mid.len()
            + self.ffn_normed.len()
            + self.ffn_inv_rms.len()
            + self.gate.len()
            + self.up.len()
            + opt(&self.down_raw)
            + self.down_inv_rms.len())
    }
}

impl Tape {
    /// Bytes held by the whole tape.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(LayerTape::bytes).sum::<usize>() + 4 * (self.x_final.len() + self.final_inv_rms.len())
    }
}
