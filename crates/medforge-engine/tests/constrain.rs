//! Constrained decoding on the tiny random-weight model, whose free output is garbage: every constraint kind must
//! yield only strings it accepts, over 200 seeded samples each (single sequences sampled and greedy, and batches).

use medforge_engine::engine::{Engine, GenerateParams, LoadOptions};
use medforge_engine::sampling::SamplingParams;
use medforge_engine::{tiny, Constraint};
use serde_json::{json, Value};

fn engine(kind: &str) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let p = if kind == "gguf" {
        let p = dir.path().join("tiny.gguf");
        tiny::write_gguf(&p, candle_core::quantized::GgmlDType::Q8_0).unwrap();
        p
    } else {
        let p = dir.path().join("tiny-hf");
        tiny::write_hf(&p).unwrap();
        p
    };
    let e = Engine::load(&p, &LoadOptions::default()).unwrap();
    (dir, e)
}

const PROMPTS: [&str; 4] = [
    "<|im_start|>user\nWhich specialty?<|im_end|>\n<|im_start|>assistant\n",
    "the patient in the ward had a fever",
    "Answer with a letter: A, B, C or D.",
    "{\"answer\":",
];

fn params(c: &Constraint, seed: u64, temperature: f64, max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampling: SamplingParams { temperature, top_p: 1.0, top_k: 0, seed },
        constraint: Some(c.clone()),
        ..Default::default()
    }
}

/// 200 outputs under `c`: 120 sampled one at a time, 40 greedy-or-sampled in batches of 4, and the free outputs
/// for comparison.
fn outputs(e: &mut Engine, c: &Constraint, max_tokens: usize) -> (Vec<String>, Vec<String>) {
    let mut out = Vec::new();
    for i in 0..160u64 {
        let prompt = e.encode_prompt(PROMPTS[i as usize % 4]).unwrap();
        let g = e.generate(&prompt, &params(c, i, 1.0, max_tokens), &mut |_| true).unwrap();
        assert_eq!(g.finish_reason, "stop", "{} sample {i} did not complete: {:?}", c.kind(), g.text);
        out.push(g.text);
    }
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| e.encode_prompt(p).unwrap()).collect();
    for i in 0..10u64 {
        let temperature = if i == 0 { 0.0 } else { 0.8 };
        for g in e.generate_batch(&prompts, &params(c, 1000 + i, temperature, max_tokens)).unwrap() {
            assert_eq!(g.finish_reason, "stop", "{} batch {i} did not complete: {:?}", c.kind(), g.text);
            out.push(g.text);
        }
    }
    let free: Vec<String> = (0..20u64)
        .map(|i| {
            let prompt = e.encode_prompt(PROMPTS[i as usize % 4]).unwrap();
            let p = GenerateParams { constraint: None, ..params(c, i, 1.0, 24) };
            e.generate(&prompt, &p, &mut |_| true).unwrap().text
        })
        .collect();
    assert_eq!(out.len(), 200);
    (out, free)
}

fn check_all(c: &Constraint, max_tokens: usize, accepts: impl Fn(&str) -> bool) {
    for kind in ["hf", "gguf"] {
        let (_d, mut e) = engine(kind);
        let (out, free) = outputs(&mut e, c, max_tokens);
        for (i, t) in out.iter().enumerate() {
            assert!(accepts(t), "{kind}: {} output {i} not accepted: {t:?}", c.kind());
        }
        // The model alone would not have produced these: the test means something.
        assert!(free.iter().filter(|t| accepts(t)).count() <= 2, "{kind}: free outputs {free:?}");
        if kind == "hf" {
            let distinct: std::collections::HashSet<&String> = out.iter().collect();
            assert!(distinct.len() > 1, "{}: sampling under the mask still varies", c.kind());
        }
    }
}

#[test]
fn choice_yields_only_the_options() {
    let options = ["1.4.1", "2.3", "cardiology", "neuro \"quoted\" 심장 🧠"];
    let c = Constraint::Choice(options.iter().map(|s| s.to_string()).collect());
    check_all(&c, 32, |t| options.contains(&t));
}

#[test]
fn regex_yields_only_matches() {
    let rx = r"(A|B|C|D)\) [a-z]{2,8}( [a-z]{1,6}){0,3}\.";
    let c = Constraint::Regex(rx.into());
    let full = regex::Regex::new(&format!("^(?:{rx})$")).unwrap();
    check_all(&c, 64, |t| full.is_match(t));
}

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "labels": {"type": "array", "items": {"type": "string", "enum": ["1.1", "1.4.1", "2.3"]},
                       "minItems": 1, "maxItems": 3},
            "confidence": {"type": "integer", "minimum": 0, "maximum": 100},
            "reason": {"type": "string", "maxLength": 12},
            "urgent": {"type": "boolean"}
        },
        "required": ["labels", "confidence", "reason", "urgent"],
        "additionalProperties": false
    })
}

fn valid(v: &Value) -> bool {
    let Some(o) = v.as_object() else { return false };
    let labels_ok = o["labels"].as_array().is_some_and(|a| {
        (1..=3).contains(&a.len()) && a.iter().all(|x| matches!(x.as_str(), Some("1.1" | "1.4.1" | "2.3")))
    });
    o.len() == 4
        && labels_ok
        && o["confidence"].as_i64().is_some_and(|n| (0..=100).contains(&n))
        && o["reason"].as_str().is_some_and(|s| s.chars().count() <= 12)
        && o["urgent"].is_boolean()
}

#[test]
fn json_schema_yields_only_valid_documents() {
    let c = Constraint::JsonSchema(schema());
    check_all(&c, 160, |t| serde_json::from_str::<Value>(t).is_ok_and(|v| valid(&v)));
}

#[test]
fn lark_grammar_yields_only_nested_lists() {
    // Two-level markdown lists, as the rewrite stage asks for: 1-3 top items each with 1-2 sub-items.
    let g = r#"
start: item{1,3}
item: "- " WORDS "\n" sub{1,2}
sub: "  - " WORDS "\n"
WORDS: /[a-z]{1,8}( [a-z]{1,8}){0,2}/
"#;
    let c = Constraint::Lark(g.into());
    let line = r"- [a-z]{1,8}( [a-z]{1,8}){0,2}\n(  - [a-z]{1,8}( [a-z]{1,8}){0,2}\n){1,2}";
    let full = regex::Regex::new(&format!("^(?:{line}){{1,3}}$")).unwrap();
    check_all(&c, 200, |t| full.is_match(t));
}

#[test]
fn a_bad_constraint_is_a_clear_error() {
    let (_d, mut e) = engine("hf");
    for (c, want) in [
        (Constraint::Lark("start: item\nitem: \"x\" undefined_rule".into()), "grammar"),
        (Constraint::Regex("(unclosed".into()), "regex"),
        (Constraint::JsonSchema(json!({"type": "nonsense"})), "json_schema"),
        (Constraint::Choice(vec![]), "choice"),
    ] {
        let err = e.check_constraint(&c).unwrap_err().to_string();
        assert!(err.contains(want) || err.contains("non-empty"), "{err}");
        let prompt = e.encode_prompt("x").unwrap();
        assert!(e.generate(&prompt, &params(&c, 0, 0.0, 8), &mut |_| true).is_err());
    }
}

#[test]
fn reasoning_then_a_letter() {
    // The difficulty stage's MCQ shape: free reasoning (bounded), then the letter after a fixed phrase.
    let g = "start: think \"The answer is \" LETTER \".\"\nthink[suffix=\"\\n\", max_tokens=24]: /(?s:.*)/\nLETTER: \"A\" | \"B\" | \"C\" | \"D\"\n";
    let c = Constraint::Lark(g.into());
    let full = regex::Regex::new(r"(?s)^.*The answer is [ABCD]\.$").unwrap();
    check_all(&c, 64, |t| full.is_match(t));
}

#[test]
fn scored_choices_are_their_log_likelihoods_and_agree_with_greedy_choice() {
    let (_d, mut e) = engine("hf");
    let letters: Vec<String> = ["A", "B", "C", "D"].iter().map(|s| s.to_string()).collect();
    let c = Constraint::Choice(letters.clone());
    for p in PROMPTS {
        let prompt = e.encode_prompt(p).unwrap();
        let scores = e.score_choices(&prompt, &letters).unwrap();
        assert_eq!(scores.len(), 4);
        for (choice, lp, n) in &scores {
            // The same number the MCQ log-likelihood path gives.
            let mut ids = prompt.clone();
            ids.extend(e.encode(choice).unwrap());
            let direct: f64 = e.score_tokens(&ids, prompt.len()).unwrap().iter().map(|&x| x as f64).sum();
            assert!((lp - direct).abs() < 1e-5, "{choice}: {lp} vs {direct}");
            assert!(*lp < 0.0 && *n == 1);
        }
        // One-token choices: the likeliest is what greedy constrained decoding picks.
        let best = scores.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0.clone();
        let g = e.generate(&prompt, &params(&c, 0, 0.0, 4), &mut |_| true).unwrap();
        assert_eq!(g.text, best, "{p}");
    }
    let prompt = e.encode_prompt("x").unwrap();
    assert!(e.score_choices(&prompt, &[]).is_err());
}

/// A generation cut by its token budget in the middle of a multi-byte character (the tiny model's byte tokens
/// split them often) ends at the last whole character, never with U+FFFD.
#[test]
fn a_budget_cut_never_leaves_a_broken_character() {
    let (_d, mut e) = engine("hf");
    let mut cut_mid_char = 0;
    let prompt = e.encode_prompt("환자는 흉통을").unwrap();
    for seed in 0..120u64 {
        for max_tokens in [3usize, 5, 8] {
            let p = GenerateParams {
                max_tokens,
                sampling: SamplingParams { temperature: 1.5, top_p: 1.0, top_k: 0, seed },
                ..Default::default()
            };
            let g = e.generate(&prompt, &p, &mut |_| true).unwrap();
            if g.finish_reason == "length" {
                assert!(!g.text.ends_with('\u{FFFD}'), "seed {seed}: {:?}", g.text);
                let full = e.decode(&g.tokens).unwrap();
                cut_mid_char += full.ends_with('\u{FFFD}') as usize;
            }
        }
    }
    assert!(cut_mid_char > 0, "the test never cut a character: it checks nothing");
}
