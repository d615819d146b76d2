//! The BERTScore encoders beyond BERT against `transformers` on tiny random models: RoBERTa, DeBERTa v1 and
//! DeBERTa v2/v3 (with 256 relative-position buckets, and with 8 so the log bucketing is exercised). The fixtures
//! (`tests/fixtures/tiny_encoders/`, made by `tests/fixtures/make_tiny_encoders.py` with transformers 4.57) hold
//! each model, its tokenizer and the hidden state after every layer for four texts; every value must agree within
//! 1e-5, for each text alone and for the four run as one padded batch.
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use medforge_eval::bertscore::{BertScorer, Encoder};
use serde_json::Value;

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_encoders").join(name)
}

struct Case {
    ids: Vec<u32>,
    /// hidden_states[layer][token][dim]
    hidden: Vec<Vec<Vec<f32>>>,
}

fn cases(model: &str) -> Vec<Case> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(dir(model).join("expected.json")).expect("expected.json")).expect("json");
    v["texts"]
        .as_array()
        .expect("texts")
        .iter()
        .map(|t| Case {
            ids: t["input_ids"].as_array().expect("ids").iter().map(|x| x.as_u64().expect("id") as u32).collect(),
            hidden: serde_json::from_value(t["hidden_states"].clone()).expect("hidden_states"),
        })
        .collect()
}

/// Largest difference between the encoder's output after `layers` blocks and transformers', per text and batched.
fn max_diff(model: &str, layers: usize) -> f32 {
    let enc = Encoder::load(&dir(model), Some(layers)).unwrap_or_else(|e| panic!("{model}: {e}"));
    let cs = cases(model);
    let mut worst = 0f32;
    // Alone.
    for c in &cs {
        let t = c.ids.len();
        let ids = Tensor::from_vec(c.ids.clone(), (1, t), &Device::Cpu).expect("ids");
        let mask = Tensor::ones((1, t), candle_core::DType::F32, &Device::Cpu).expect("mask");
        let out: Vec<Vec<f32>> =
            enc.forward(&ids, &mask).expect("forward").squeeze(0).expect("b").to_vec2().expect("v");
        for (row, want) in out.iter().zip(&c.hidden[layers]) {
            for (a, b) in row.iter().zip(want) {
                worst = worst.max((a - b).abs());
            }
        }
    }
    // One right-padded batch: padding must not change the real tokens.
    let t = cs.iter().map(|c| c.ids.len()).max().expect("texts");
    let pad = 1u32; // any id: masked out
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for c in &cs {
        ids.extend(c.ids.iter().copied().chain(std::iter::repeat_n(pad, t - c.ids.len())));
        mask.extend(std::iter::repeat_n(1f32, c.ids.len()).chain(std::iter::repeat_n(0f32, t - c.ids.len())));
    }
    let ids = Tensor::from_vec(ids, (cs.len(), t), &Device::Cpu).expect("ids");
    let mask = Tensor::from_vec(mask, (cs.len(), t), &Device::Cpu).expect("mask");
    let out: Vec<Vec<Vec<f32>>> = enc.forward(&ids, &mask).expect("forward").to_vec3().expect("v");
    for (c, rows) in cs.iter().zip(&out) {
        for (row, want) in rows.iter().zip(&c.hidden[layers]).take(c.ids.len()) {
            for (a, b) in row.iter().zip(want) {
                worst = worst.max((a - b).abs());
            }
        }
    }
    worst
}

#[test]
fn roberta_and_deberta_match_transformers_at_every_layer() {
    for model in ["roberta", "deberta", "deberta-v2", "deberta-v2-buckets8"] {
        for layers in 0..=2 {
            let d = max_diff(model, layers);
            eprintln!("{model} after {layers} layers: max |diff| {d:e}");
            assert!(d <= 1e-5, "{model} after {layers} layers: max |diff| {d:e}");
        }
    }
}

/// The scorer around them: RoBERTa's `<s> … </s>` with a leading space (bert-score's `add_prefix_space`), the
/// DeBERTa tokenizer's `[CLS] … [SEP]`, and identical texts scoring 1.
#[test]
fn scorers_encode_like_bert_score_and_score_identity_as_one() {
    for (model, text) in [("roberta", "Fever."), ("deberta-v2", "Fever.")] {
        let s = BertScorer::load(&dir(model), None).unwrap_or_else(|e| panic!("{model}: {e}"));
        let ids = s.encode(text).expect("encode");
        let c = &cases(model)[0];
        if model == "roberta" {
            // transformers' fixture ids have no leading space; bert-score adds one, so only the ends agree.
            assert_eq!((ids[0], *ids.last().unwrap()), (c.ids[0], *c.ids.last().unwrap()));
        } else {
            assert_eq!(ids, c.ids, "{model}");
        }
        let r = s.score(&["the patient has chest pain"], &["the patient has chest pain"], false).expect("score");
        assert!((r[0].f - 1.0).abs() < 1e-5, "{model}: {:?}", r[0]);
    }
}
