//! BERTScore on a tiny random-weight BERT written here (the fixture all-MiniLM-L6-v2 tokenizer,
//! hidden 32, 3 layers), and on the real all-MiniLM-L6-v2 (`scripts/fetch_model.sh minilm`; required under `CI=true`).
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use medforge_eval::bertscore::BertScorer;

const H: usize = 32;
const FF: usize = 64;
const LAYERS: usize = 3;
const VOCAB: usize = 30522;
const MAX_POS: usize = 64;

/// A deterministic pseudo-random tensor (uniform in [-a, a]).
fn rand(shape: &[usize], a: f32, seed: &mut u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Writes a tiny BERT (config.json, model.safetensors, tokenizer.json, tokenizer_config.json).
fn tiny_model(dir: &Path, model_max_length: usize) -> PathBuf {
    let mut seed = 7u64;
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let ln = |t: &mut HashMap<String, Tensor>, p: &str, seed: &mut u64| {
        t.insert(format!("{p}.weight"), (rand(&[H], 0.2, seed) + 1.0).unwrap());
        t.insert(format!("{p}.bias"), rand(&[H], 0.1, seed));
    };
    let lin = |t: &mut HashMap<String, Tensor>, p: &str, o: usize, i: usize, seed: &mut u64| {
        t.insert(format!("{p}.weight"), rand(&[o, i], 0.3, seed));
        t.insert(format!("{p}.bias"), rand(&[o], 0.1, seed));
    };
    t.insert("embeddings.word_embeddings.weight".into(), rand(&[VOCAB, H], 1.0, &mut seed));
    t.insert("embeddings.position_embeddings.weight".into(), rand(&[MAX_POS, H], 0.5, &mut seed));
    t.insert("embeddings.token_type_embeddings.weight".into(), rand(&[2, H], 0.5, &mut seed));
    ln(&mut t, "embeddings.LayerNorm", &mut seed);
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}");
        for q in ["query", "key", "value"] {
            lin(&mut t, &format!("{p}.attention.self.{q}"), H, H, &mut seed);
        }
        lin(&mut t, &format!("{p}.attention.output.dense"), H, H, &mut seed);
        ln(&mut t, &format!("{p}.attention.output.LayerNorm"), &mut seed);
        lin(&mut t, &format!("{p}.intermediate.dense"), FF, H, &mut seed);
        lin(&mut t, &format!("{p}.output.dense"), H, FF, &mut seed);
        ln(&mut t, &format!("{p}.output.LayerNorm"), &mut seed);
    }
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    let config = serde_json::json!({
        "architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
        "hidden_size": H, "intermediate_size": FF, "num_attention_heads": 4, "num_hidden_layers": LAYERS,
        "max_position_embeddings": MAX_POS, "type_vocab_size": 2, "vocab_size": VOCAB,
        "layer_norm_eps": 1e-12, "pad_token_id": 0
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let tok = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tokenizers/all-MiniLM-L6-v2/tokenizer.json");
    std::fs::copy(tok, dir.join("tokenizer.json")).unwrap();
    let tc = serde_json::json!({"model_max_length": model_max_length, "do_lower_case": true});
    std::fs::write(dir.join("tokenizer_config.json"), tc.to_string()).unwrap();
    dir.to_path_buf()
}

const REFS: [&str; 4] = [
    "The patient has a fever and a persistent cough.",
    "Metformin is the first-line drug for type 2 diabetes.",
    "Aspirin inhibits platelet aggregation by blocking cyclooxygenase irreversibly in the platelets of the patient.",
    "Hypertension",
];
const HYPS: [&str; 4] = [
    "A persistent cough and fever in the patient.",
    "For type 2 diabetes, metformin comes first.",
    "Aspirin blocks cyclooxygenase.",
    "High blood pressure, also called hypertension, is common.",
];

/// bert-score's `greedy_cos_idf`, written out naively over `embed_texts` and `encode`.
fn reference(s: &BertScorer, refs: &[&str], hyps: &[&str], idf: bool) -> Vec<(f64, f64, f64)> {
    let e0 = s.encode("").unwrap();
    let (cls, sep) = (e0[0], e0[1]);
    let m = refs.len() as f64;
    let mut df: HashMap<u32, f64> = HashMap::new();
    for r in refs {
        for t in s.encode(r).unwrap().into_iter().collect::<HashSet<_>>() {
            *df.entry(t).or_default() += 1.0;
        }
    }
    let w = |t: u32| {
        if t == cls || t == sep {
            0.0
        } else if idf {
            ((m + 1.0) / (df.get(&t).copied().unwrap_or(0.0) + 1.0)).ln()
        } else {
            1.0
        }
    };
    let h = s.hidden_size();
    refs.iter()
        .zip(hyps)
        .map(|(r, c)| {
            let e = s.embed_texts(&[*r, *c]).unwrap();
            let (ri, ci) = (s.encode(r).unwrap(), s.encode(c).unwrap());
            let sim =
                |i: usize, j: usize| -> f64 { (0..h).map(|k| e[1][i * h + k] as f64 * e[0][j * h + k] as f64).sum() };
            let side = |a: &[u32], b: &[u32], flip: bool| {
                let tot: f64 = a.iter().map(|&t| w(t)).sum();
                (0..a.len())
                    .map(|i| {
                        let best = (0..b.len())
                            .map(|j| if flip { sim(j, i) } else { sim(i, j) })
                            .fold(f64::NEG_INFINITY, f64::max);
                        w(a[i]) / tot * best
                    })
                    .sum::<f64>()
            };
            let p = side(&ci, &ri, false);
            let rr = side(&ri, &ci, true);
            (p, rr, 2.0 * p * rr / (p + rr))
        })
        .collect()
}

#[test]
fn tiny_bert_matches_the_naive_greedy_cos_idf_and_is_padding_invariant() {
    let dir = tempfile::tempdir().unwrap();
    let s = BertScorer::load(&tiny_model(dir.path(), 512), None).unwrap();
    assert_eq!(s.layers(), LAYERS);
    assert_eq!(s.hidden_size(), H);
    let e = s.embed_texts(&["fever"]).unwrap();
    assert_eq!(e[0].len(), 3 * H, "[CLS] fever [SEP]");
    for idf in [false, true] {
        let batch = s.score(&REFS, &HYPS, idf).unwrap();
        assert_eq!(batch.len(), 4);
        let naive = reference(&s, &REFS, &HYPS, idf);
        for (b, n) in batch.iter().zip(&naive) {
            assert!((b.p - n.0).abs() < 1e-5 && (b.r - n.1).abs() < 1e-5 && (b.f - n.2).abs() < 1e-5, "{b:?} vs {n:?}");
        }
        if !idf {
            // Alone (no padding) or in a padded batch: the same numbers.
            for i in 0..4 {
                let alone = s.score(&REFS[i..=i], &HYPS[i..=i], false).unwrap()[0];
                for (x, y) in [(alone.p, batch[i].p), (alone.r, batch[i].r), (alone.f, batch[i].f)] {
                    assert!((x - y).abs() < 1e-6, "pair {i}: alone {alone:?}, in batch {:?}", batch[i]);
                }
            }
        }
    }
    let idf = s.score(&REFS, &HYPS, true).unwrap();
    let plain = s.score(&REFS, &HYPS, false).unwrap();
    assert!(idf.iter().zip(&plain).any(|(a, b)| (a.f - b.f).abs() > 1e-4), "idf changes the weighting");
}

#[test]
fn identical_pairs_score_one_and_empty_sides_zero() {
    let dir = tempfile::tempdir().unwrap();
    let s = BertScorer::load(&tiny_model(dir.path(), 512), None).unwrap();
    for idf in [false, true] {
        let r = s.score(&REFS, &REFS, idf).unwrap();
        for x in &r {
            assert!((x.p - 1.0).abs() < 1e-6 && (x.r - 1.0).abs() < 1e-6 && (x.f - 1.0).abs() < 1e-6, "{x:?}");
        }
    }
    let r = s.score(&["fever", "  ", "cough"], &["", "fever", "cough"], false).unwrap();
    assert_eq!((r[0].p, r[0].r, r[0].f), (0.0, 0.0, 0.0));
    assert_eq!((r[1].p, r[1].r, r[1].f), (0.0, 0.0, 0.0));
    assert!((r[2].f - 1.0).abs() < 1e-6);
}

#[test]
fn idf_is_over_the_references_and_special_tokens_weigh_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = BertScorer::load(&tiny_model(dir.path(), 512), None).unwrap();
    // "the" occurs in every reference: idf ln(4/4) = 0, so a hypothesis of only "the" has no weight:
    // P is NaN and F 0, as in bert-score; without idf it is an ordinary score.
    let refs = ["the fever", "the cough", "the rash"];
    let hyps = ["the", "cough", "rash the"];
    let idf = s.score(&refs, &hyps, true).unwrap();
    assert!(idf[0].p.is_nan() && idf[0].f == 0.0, "{:?}", idf[0]);
    let plain = s.score(&refs, &hyps, false).unwrap();
    assert!(plain[0].p.is_finite() && plain[0].f > 0.0);
    // With idf, "the" in "rash the" weighs 0: P is rash's best match alone.
    let only = s.score(&["the rash"], &["rash"], false).unwrap()[0];
    let e = s.embed_texts(&["the rash", "rash the"]).unwrap();
    let h = H;
    let rash = &e[1][h..2 * h];
    let best = (0..4)
        .map(|j| (0..h).map(|k| rash[k] as f64 * e[0][j * h + k] as f64).sum::<f64>())
        .fold(f64::NEG_INFINITY, f64::max);
    assert!((idf[2].p - best).abs() < 1e-5, "{} vs {best}", idf[2].p);
    assert!(only.p.is_finite());
}

#[test]
fn layers_and_truncation_follow_bert_score() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model(dir.path(), 16);
    let s = BertScorer::load(&path, Some(1)).unwrap();
    assert_eq!(s.layers(), 1);
    let full = BertScorer::load(&path, None).unwrap();
    let a = s.score(&REFS, &HYPS, false).unwrap();
    let b = full.score(&REFS, &HYPS, false).unwrap();
    assert!(a.iter().zip(&b).any(|(x, y)| (x.f - y.f).abs() > 1e-4), "a different layer, different numbers");
    assert!(BertScorer::load(&path, Some(LAYERS + 1)).is_err());
    // model_max_length 16: [CLS] + 14 tokens + [SEP].
    let ids = s.encode(REFS[2]).unwrap();
    assert_eq!(ids.len(), 16);
    assert_eq!(ids[0], s.encode("").unwrap()[0]);
    assert_eq!(ids[15], s.encode("").unwrap()[1]);
    assert_eq!(&ids[..15], &full.encode(REFS[2]).unwrap()[..15]);
    let r = s.score(&[REFS[2]], &[REFS[2]], false).unwrap();
    assert!((r[0].f - 1.0).abs() < 1e-6);
}

#[test]
fn real_minilm() {
    let Some(dir) = medforge_testkit::minilm() else { return };
    let s = BertScorer::load(Path::new(&dir), None).unwrap();
    assert_eq!((s.layers(), s.hidden_size()), (6, 384));
    let r = s
        .score(
            &["The patient has a fever and a cough.", "The patient has a fever and a cough."],
            &["The patient is coughing and feverish.", "Stock markets fell sharply on Monday."],
            false,
        )
        .unwrap();
    assert!(r[0].f > r[1].f + 0.1, "{r:?}");
    let same = s.score(&REFS, &REFS, true).unwrap();
    assert!(same.iter().all(|x| (x.f - 1.0).abs() < 1e-5));
}
