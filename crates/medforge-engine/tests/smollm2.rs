//! Tests on the real default model, SmolLM2-135M-Instruct (GGUF Q4_1), found through medforge-testkit: skipped with
//! a message where it has not been fetched (`scripts/fetch_model.sh`), a failure under `CI=true`.

use medforge_engine::engine::{Engine, GenerateParams, LoadOptions};
use medforge_text::chat::Message;

fn model() -> Option<Engine> {
    medforge_testkit::smollm2().map(|p| Engine::load(&p, &LoadOptions::default()).unwrap())
}

#[test]
fn smollm2_inspect() {
    let Some(p) = medforge_testkit::smollm2() else { return };
    let i = medforge_engine::inspect(&p).unwrap();
    assert_eq!(i.architecture, "llama");
    assert_eq!(i.vocab_size, Some(49152));
    assert_eq!(i.layers, Some(30));
    assert_eq!(i.kv_heads, Some(3));
    assert!((130_000_000..140_000_000).contains(&i.parameters), "{}", i.parameters);
    assert_eq!(i.quantization, "Q4_1");
    assert!(i.chat_template.unwrap().contains("<|im_start|>"));
}

#[test]
fn smollm2_greedy_knows_berlin_and_chats() {
    let Some(mut e) = model() else { return };
    let prompt = e.encode_prompt("The capital of France is Paris. The capital of Germany is").unwrap();
    let g = e.generate(&prompt, &GenerateParams { max_tokens: 3, ..Default::default() }, &mut |_| true).unwrap();
    assert!(g.text.starts_with(" Berlin"), "{:?}", g.text);
    let ans = e
        .chat(
            &[Message::user("What organ pumps blood through the body? Answer in one word.")],
            &GenerateParams { max_tokens: 20, ..Default::default() },
            &mut |_| true,
        )
        .unwrap();
    // A 135M model's answer is not always right; it must be a non-empty answer that ended on its own or at the limit.
    assert!(!ans.text.trim().is_empty(), "{:?}", ans.text);
    assert!(!ans.text.contains("<|im_end|>"));
}

#[test]
fn smollm2_perplexity_and_mcq_scoring_are_sane() {
    let Some(mut e) = model() else { return };
    let p = e
        .perplexity(
            "The heart is a muscular organ that pumps blood through the blood vessels of the circulatory system.",
        )
        .unwrap();
    assert!(p.perplexity > 1.5 && p.perplexity < 30.0, "perplexity {}", p.perplexity);
    let ctx = "Question: Which organ produces insulin?\nAnswer:";
    let right = e.loglikelihood(ctx, " The pancreas").unwrap().logprob;
    let wrong = e.loglikelihood(ctx, " The femur").unwrap().logprob;
    assert!(right > wrong, "{right} <= {wrong}");
}
