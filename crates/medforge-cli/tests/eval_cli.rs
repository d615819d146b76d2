//! `medforge score`, `medforge eval` (against the fake OpenAI-compatible server) and `medforge report`.
use std::path::Path;
use std::process::{Command, Output};

use medforge_llm::testing::FakeServer;

fn medforge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medforge"))
        .args(args)
        .env("MEDFORGE_WORDNET", "/nonexistent")
        .output()
        .expect("run medforge")
}

fn fixture(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(p).to_string_lossy().into_owned()
}

#[test]
fn score_reports_every_metric() {
    let tmp = tempfile::tempdir().expect("tmp");
    let refs = tmp.path().join("refs.txt");
    let hyps = tmp.path().join("hyps.jsonl");
    std::fs::write(&refs, "the patient has a fever\nstart metformin today\n").expect("w");
    std::fs::write(&hyps, "\"the patient has no fever\"\n{\"text\": \"start metformin today\"}\n").expect("w");
    let per = tmp.path().join("per.jsonl");
    let out = medforge(&[
        "score",
        "--refs",
        refs.to_str().expect("utf8"),
        "--hyps",
        hyps.to_str().expect("utf8"),
        "--json",
        "--per-pair",
        per.to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    for k in ["bleu", "bleu1", "bleu4", "rouge1", "rougeL", "rougeLsum", "meteor", "em", "f1"] {
        assert!(v[k].is_number(), "{k} missing in {v}");
    }
    assert_eq!(v["em"], serde_json::json!(0.5));
    // Without WordNet METEOR warns and degrades.
    assert!(String::from_utf8_lossy(&out.stderr).contains("WordNet not found"));
    assert_eq!(std::fs::read_to_string(&per).expect("per").lines().count(), 2);
    let ko = tmp.path().join("ko.jsonl");
    std::fs::write(&ko, "\"<reasoning>\\n첫째: 환자는 흉통을 호소한다.\\n</reasoning>B\"\n").expect("w");
    let ko_ref = tmp.path().join("ko_ref.jsonl");
    std::fs::write(&ko_ref, "\"B\"\n").expect("w");
    let terms = tmp.path().join("terms.txt");
    std::fs::write(&terms, "흉통\n").expect("w");
    let out = medforge(&[
        "score",
        "--refs",
        ko_ref.to_str().expect("u"),
        "--hyps",
        ko.to_str().expect("u"),
        "--metrics",
        "format,hierarchy,korean",
        "--terms",
        terms.to_str().expect("u"),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["format"].as_f64().expect("format") > 0.3, "{v}");
    assert!(v["hangul_ratio"].as_f64().expect("ratio") > 0.3, "{v}");
    assert!(v["term_coverage"].as_f64().expect("coverage") > 0.0, "{v}");
    assert!(v["hierarchy"].is_number());
    let bad = medforge(&[
        "score",
        "--refs",
        refs.to_str().expect("u"),
        "--hyps",
        hyps.to_str().expect("u"),
        "--metrics",
        "bertscore",
    ]);
    // Without an encoder, bertscore fails and says how to give one.
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--bertscore-model DIR"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_and_report_write_every_file() {
    let server = FakeServer::start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let run1 = tmp.path().join("run1");
    let run2 = tmp.path().join("run2");
    for (dir, step) in [(&run1, "10"), (&run2, "20")] {
        let out = medforge(&[
            "eval",
            "--endpoint",
            &server.base_url(),
            "--model",
            "fake",
            "--benchmark",
            "medqa",
            "--data",
            &fixture("medqa/dev_4opt.jsonl"),
            "--limit",
            "12",
            "--step",
            step,
            "--out",
            dir.to_str().expect("utf8"),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("accuracy") && stdout.contains("95% CI"), "{stdout}");
        for f in [
            "fake_results.csv",
            "model_comparison.csv",
            "specialty_performance.csv",
            "failed_questions.json",
            "training_recommendations.json",
            "specialty_accuracy.png",
            "model_comparison.png",
            "report.html",
        ] {
            assert!(dir.join(f).is_file(), "{f} missing");
        }
    }
    assert_eq!(server.request_count(), 24);
    let rep = tmp.path().join("rep");
    let out =
        medforge(&["report", run1.to_str().expect("u"), run2.to_str().expect("u"), "--out", rep.to_str().expect("u")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(rep.join("accuracy_over_steps.png").is_file());
    let fq: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rep.join("failed_questions_detail.json")).expect("fq")).expect("json");
    assert_eq!(fq["evaluations"], serde_json::json!(2));

    // A model file that is not there: the error names it.
    let out = medforge(&[
        "eval",
        "--model-path",
        "no-such-model.gguf",
        "--benchmark",
        "medqa",
        "--data",
        &fixture("medqa/dev_4opt.jsonl"),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-model.gguf"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--model-path` runs the in-process engine (here the tiny random-weight model) in both modes: every item gets a
/// prediction from the model, none is an error, and log-likelihood mode records one log-prob per option.
#[test]
fn eval_with_local_engine_in_both_modes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tmp.path().join("tiny");
    medforge_engine::tiny::write_hf(&model).expect("tiny model");
    for mode in ["loglik", "gen"] {
        let dir = tmp.path().join(mode);
        let out = medforge(&[
            "eval",
            "--model-path",
            model.to_str().expect("utf8"),
            "--benchmark",
            "mmlu-medical",
            "--data",
            &fixture("mmlu_medical/clinical_knowledge_dev.csv"),
            "--limit",
            "3",
            "--mode",
            mode,
            "--max-tokens",
            "4",
            "--out",
            dir.to_str().expect("utf8"),
        ]);
        assert!(out.status.success(), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("0 errors"), "{mode}: {stdout}");
        let mut rows = csv::Reader::from_path(dir.join("tiny_results.csv")).expect("results csv");
        let headers = rows.headers().expect("headers").clone();
        let lp = headers.iter().position(|h| h == "option_logprobs").expect("option_logprobs column");
        let outcome = headers.iter().position(|h| h == "outcome").expect("outcome column");
        let records: Vec<csv::StringRecord> = rows.records().map(|r| r.expect("row")).collect();
        assert_eq!(records.len(), 3);
        for r in &records {
            assert_ne!(&r[outcome], "error", "{r:?}");
            if mode == "loglik" {
                let n = r[lp].split(';').filter(|x| x.parse::<f64>().is_ok_and(|v| v < 0.0)).count();
                assert_eq!(n, 4, "four negative option log-probs: {r:?}");
            }
        }
        assert!(dir.join("report.html").is_file());
    }
    // The same with a LoRA adapter on top: the model changes, so the option log-probs do.
    let adapter = tmp.path().join("adapter");
    medforge_engine::tiny::write_lora(&adapter, 4, 8.0).expect("adapter");
    let option_logprobs = |dir: &std::path::Path| -> Vec<String> {
        let mut rows = csv::Reader::from_path(dir.join("tiny_results.csv")).expect("results csv");
        let lp = rows.headers().expect("headers").iter().position(|h| h == "option_logprobs").expect("column");
        rows.records().map(|r| r.expect("row")[lp].to_string()).collect()
    };
    let tuned = tmp.path().join("tuned");
    let base_args = [
        "eval",
        "--model-path",
        model.to_str().expect("utf8"),
        "--benchmark",
        "mmlu-medical",
        "--data",
        &fixture("mmlu_medical/clinical_knowledge_dev.csv"),
        "--limit",
        "3",
        "--mode",
        "loglik",
        "--out",
        tuned.to_str().expect("utf8"),
    ];
    let mut args = base_args.to_vec();
    args.extend(["--adapter", adapter.to_str().expect("utf8")]);
    let out = medforge(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(option_logprobs(&tuned), option_logprobs(&tmp.path().join("loglik")));
    let mut args = base_args.to_vec();
    args.extend(["--adapter", "no-such-adapter"]);
    let out = medforge(&args);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-adapter"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `medforge perplexity` on a formatted training set with the tiny model: per-type pooling equals the engine's own
/// log-likelihoods, targets are checked (exit status 3 when one is missed), bad rows are errors naming the line.
#[test]
fn perplexity_per_training_type_with_targets() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tmp.path().join("tiny");
    medforge_engine::tiny::write_hf(&model).expect("tiny model");
    let rows = [
        ("a", "text", "<|im_start|>user\nthe heart<|im_end|>\n<|im_start|>assistant\n", "pumps blood<|im_end|>\n"),
        ("b", "text", "<|im_start|>user\nthe lung<|im_end|>\n<|im_start|>assistant\n", "exchanges gas<|im_end|>\n"),
        ("c", "letter", "<|im_start|>user\nA or B?<|im_end|>\n<|im_start|>assistant\n", "B<|im_end|>\n"),
    ];
    let data = tmp.path().join("train.jsonl");
    let lines: Vec<String> = rows
        .iter()
        .map(|(id, t, p, c)| {
            serde_json::json!({"id": id, "training_type": t, "prompt": p, "completion": c, "text": format!("{p}{c}")})
                .to_string()
        })
        .collect();
    std::fs::write(&data, lines.join("\n") + "\n").expect("write");
    let out = tmp.path().join("ppl");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "perplexity",
            "--model-path",
            model.to_str().expect("utf8"),
            "--data",
            data.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        medforge(&args)
    };
    let ok = run(&["--target", "text=1e9,letter=1e9"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("perplexity.json")).expect("json")).expect("parse");
    // The pooled text perplexity from the engine directly.
    let mut e = medforge_engine::Engine::load(&model, &Default::default()).expect("engine");
    let (mut nll, mut n) = (0.0, 0usize);
    for (_, t, p, c) in &rows[..2] {
        assert_eq!(*t, "text");
        let l = e.loglikelihood(p, c).expect("ll");
        nll -= l.logprob;
        n += l.tokens;
    }
    let want = (nll / n as f64).exp();
    let got = v["groups"]["text"]["perplexity"].as_f64().expect("text ppl");
    assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}");
    assert_eq!(v["groups"]["text"]["tokens"], serde_json::json!(n));
    assert_eq!(v["groups"]["letter"]["rows"], serde_json::json!(1));
    assert_eq!(v["groups"]["text"]["meets_target"], serde_json::json!(true));
    assert!(out.join("perplexity_rows.csv").is_file());
    // An impossible target: reported, and the exit status says so.
    let missed = run(&["--target", "text=1.0"]);
    assert_eq!(missed.status.code(), Some(3), "{}", String::from_utf8_lossy(&missed.stderr));
    assert!(String::from_utf8_lossy(&missed.stdout).contains("NOT met"));
    // A row without a completion: the error names the file and line.
    std::fs::write(&data, format!("{}\n{{\"training_type\": \"text\", \"prompt\": \"x\"}}\n", lines[0])).expect("w");
    let bad = run(&[]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("train.jsonl:2") && err.contains("completion"), "{err}");
}

/// The Meerkat loop through the CLI: split the records, generate answers on the holdout as base and as fine-tuned
/// (two runs joined by `report`), and feed the recommendations to `split update`: holdout and eval stay
/// byte-identical and the weak specialty's training share becomes the recommended one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_eval_recommends_and_split_update_consumes() {
    let server = FakeServer::start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    // The fake model answers "REPLY:x" with x: cardiology gets its reference back, neurology a wrong answer.
    let mut rows = String::new();
    for i in 0..30 {
        let (spec, reference, reply) = if i % 2 == 0 {
            (
                "cardiology",
                format!("beta blockers lower the heart rate in case {i}"),
                format!("beta blockers lower the heart rate in case {i}"),
            )
        } else {
            ("neurology", format!("levodopa treats parkinson disease in case {i}"), "no idea".to_string())
        };
        rows.push_str(
            &serde_json::json!({"id": format!("q{i}"), "source": "test", "kind": "open_qa",
                "question": format!("REPLY:{reply}"), "answer": reference, "specialty": spec})
            .to_string(),
        );
        rows.push('\n');
    }
    let data = tmp.path().join("records.jsonl");
    std::fs::write(&data, rows).expect("w");
    let cfg = tmp.path().join("split.toml");
    std::fs::write(
        &cfg,
        format!(
            "[run]\nname = \"split\"\noutput = \"{}\"\nseed = 7\n[[inputs]]\npath = \"{}\"\npreset = \"medforge\"\n\
             [[stages]]\nstage = \"split\"\nholdout_per_specialty = 4\ntrain_fraction = 0.3\n[output]\nformats = [\"jsonl\"]\n",
            tmp.path().join("out").display(),
            data.display()
        ),
    )
    .expect("w");
    let o = medforge(&["curate", "--config", cfg.to_str().expect("u")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let splits = std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string()).join("splits");
    let holdout = splits.join("holdout.jsonl");

    let (base, ft) = (tmp.path().join("base"), tmp.path().join("ft"));
    for (dir, role, temp) in [(&base, "base", "0.1"), (&ft, "finetuned", "0.7")] {
        let o = medforge(&[
            "eval",
            "--task",
            "generate",
            "--endpoint",
            &server.base_url(),
            "--model",
            "fake",
            "--data",
            holdout.to_str().expect("u"),
            "--role",
            role,
            "--temperature",
            temp,
            "--out",
            dir.to_str().expect("u"),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(dir.join(format!("{role}_model_results.csv")).is_file());
    }
    // --target: below it is status 3 (a result, not a failure), with the files written.
    let t = tmp.path().join("target");
    let o = medforge(&[
        "eval",
        "--task",
        "generate",
        "--endpoint",
        &server.base_url(),
        "--model",
        "fake",
        "--data",
        holdout.to_str().expect("u"),
        "--target",
        "0.99",
        "--out",
        t.to_str().expect("u"),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("token_f1 0.5000 < target 0.99"));
    assert!(t.join("base_model_results.csv").is_file());

    let rep = tmp.path().join("rep");
    let o =
        medforge(&["report", base.to_str().expect("u"), ft.to_str().expect("u"), "--out", rep.to_str().expect("u")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "model_comparison.csv",
        "specialty_performance.csv",
        "specialty_analysis.png",
        "model_comparison.png",
        "training_recommendations.json",
        "report.html",
    ] {
        assert!(rep.join(f).is_file(), "{f}");
    }
    let cmp = std::fs::read_to_string(rep.join("model_comparison.csv")).expect("cmp");
    let row = cmp.lines().find(|l| l.starts_with("overall,,token_f1,")).expect("token_f1 row");
    assert!(row.ends_with(",8"), "paired over the 8 holdout items: {row}");
    let recs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rep.join("training_recommendations.json")).expect("r")).expect("json");
    assert_eq!(recs["low_performance_specialties"], serde_json::json!(["neurology"]));
    assert_eq!(recs["recommended_sample_increases"]["neurology"], serde_json::json!(0.8));
    assert!(recs["overall_improvement"]["rougeL"].is_number());

    let frozen: Vec<Vec<u8>> =
        ["holdout.jsonl", "eval.jsonl"].iter().map(|f| std::fs::read(splits.join(f)).expect("r")).collect();
    let u = medforge(&[
        "split",
        "update",
        "--splits",
        splits.to_str().expect("u"),
        "--recommendations",
        rep.join("training_recommendations.json").to_str().expect("u"),
    ]);
    assert!(u.status.success(), "{}", String::from_utf8_lossy(&u.stderr));
    for (f, old) in ["holdout.jsonl", "eval.jsonl"].iter().zip(&frozen) {
        assert_eq!(&std::fs::read(splits.join(f)).expect("r"), old, "{f} changed");
    }
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(splits.join("dataset_stats.json")).expect("s")).expect("json");
    // 15 neurology rows, 4 held out: 11 non-holdout; share 0.8 -> floor(8.8) = 8 drawn for train + eval.
    assert_eq!(stats["samples_per_specialty"]["neurology"], serde_json::json!(8));
    assert_eq!(stats["samples_per_specialty"]["cardiology"], serde_json::json!(3), "not recommended: unchanged");

    // A recommendations file of another schema is an error, not a silent no-op.
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, r#"{"weak": ["neurology"]}"#).expect("w");
    let u = medforge(&[
        "split",
        "update",
        "--splits",
        splits.to_str().expect("u"),
        "--recommendations",
        bad.to_str().expect("u"),
    ]);
    assert!(!u.status.success());
    assert!(String::from_utf8_lossy(&u.stderr).contains("unknown schema"), "{}", String::from_utf8_lossy(&u.stderr));
}

/// The training prompt at test time: `--training-type letter` asks with the `format` stage's type-3 system prompt
/// and user turn (options as `A) …` lines), at the temperature given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcq_eval_asks_with_the_training_prompt() {
    let server = FakeServer::start().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let o = medforge(&[
        "eval",
        "--endpoint",
        &server.base_url(),
        "--model",
        "fake",
        "--benchmark",
        "medqa",
        "--data",
        &fixture("medqa/dev_4opt.jsonl"),
        "--limit",
        "2",
        "--training-type",
        "letter",
        "--temperature",
        "0.3",
        "--out",
        tmp.path().join("run").to_str().expect("u"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    let body = &reqs[0].body;
    assert_eq!(body["temperature"], serde_json::json!(0.3));
    let msgs = body["messages"].as_array().expect("messages");
    assert_eq!(msgs[0]["role"], "system");
    assert!(msgs[0]["content"].as_str().expect("s").contains("알파벳"), "type 3's prompt: {}", msgs[0]["content"]);
    assert!(msgs[1]["content"].as_str().expect("s").contains("\nA) "), "options as A) lines: {}", msgs[1]["content"]);
    let bad = medforge(&[
        "eval",
        "--endpoint",
        &server.base_url(),
        "--model",
        "fake",
        "--benchmark",
        "medqa",
        "--data",
        &fixture("medqa/dev_4opt.jsonl"),
        "--training-type",
        "type9",
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--training-type type9"));
}

/// Base and fine-tuned in one command on the local engine: `--adapter` with `--with-base` writes both roles' results
/// into one folder and compares them item by item.
#[test]
fn generate_eval_with_base_and_adapter_in_one_command() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tmp.path().join("tiny");
    medforge_engine::tiny::write_hf(&model).expect("tiny model");
    let adapter = tmp.path().join("lora");
    medforge_engine::tiny::write_lora(&adapter, 4, 8.0).expect("adapter");
    let data = tmp.path().join("qa.jsonl");
    let mut rows = String::new();
    for (i, spec) in ["cardiology", "neurology", "cardiology"].iter().enumerate() {
        rows.push_str(
            &serde_json::json!({"id": format!("q{i}"), "source": "t", "kind": "open_qa",
                "question": format!("question {i}"), "answer": "the heart", "specialty": spec})
            .to_string(),
        );
        rows.push('\n');
    }
    std::fs::write(&data, rows).expect("w");
    let out = tmp.path().join("out");
    let o = medforge(&[
        "eval",
        "--task",
        "generate",
        "--model-path",
        model.to_str().expect("u"),
        "--adapter",
        adapter.to_str().expect("u"),
        "--with-base",
        "--max-tokens",
        "6",
        "--data",
        data.to_str().expect("u"),
        "--preset",
        "medforge",
        "--out",
        out.to_str().expect("u"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in ["base_model_results.csv", "finetuned_model_results.csv", "model_comparison.csv", "report.html"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let cmp = std::fs::read_to_string(out.join("model_comparison.csv")).expect("cmp");
    let row = cmp.lines().find(|l| l.starts_with("overall,,rougeL,")).expect("rougeL row");
    assert!(row.ends_with(",3"), "3 paired items: {row}");
    let sums: Vec<serde_json::Value> = ["base", "finetuned"]
        .iter()
        .map(|r| serde_json::from_slice(&std::fs::read(out.join(format!("{r}_summary.json"))).expect("s")).expect("j"))
        .collect();
    assert_eq!((sums[0]["role"].as_str(), sums[1]["role"].as_str()), (Some("base"), Some("finetuned")));
}
