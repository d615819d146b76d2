//! The LLM stages end to end: the `medforge` binary (a child process) against the fault-injecting
//! OpenAI-compatible fake server running in this test process, over real HTTP on 127.0.0.1.
//!
//! The prompt templates in these configs start with `REPLY:`, which makes the fake server answer with
//! the rest of the message verbatim: each template scripts the "model" per row (right or wrong MCQ
//! letters, valid or invalid rewrites, equal or different DPO sides).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use medforge_llm::testing::{FakeServer, Fault};
use serde_json::Value;

const KEY_VAR: &str = "MEDFORGE_CLI_TEST_LLM_KEY";
const SECRET: &str = "sk-medforge-cli-test-secret-4f1c9a";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_medforge"));
    c.env(KEY_VAR, SECRET);
    c
}

/// Run the binary without blocking the server's runtime.
fn medforge(args: &[&str]) -> Output {
    tokio::task::block_in_place(|| bin().args(args).output().expect("medforge runs"))
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Open questions with reference answers, in medforge's own JSONL (for the judge path).
fn write_open_rows(dir: &Path) -> PathBuf {
    let p = dir.join("open.jsonl");
    let rows = [
        ("open-1", "What is the first-line drug for type 2 diabetes in adults?", "Metformin"),
        ("open-2", "Which vitamin deficiency causes scurvy?", "Vitamin C"),
        ("open-3", "Which organ produces insulin?", "The pancreas"),
    ];
    let mut s = String::new();
    for (id, q, a) in rows {
        s.push_str(
            &serde_json::json!({"id": id, "source": "open", "kind": "open_qa", "question": q, "answer": a}).to_string(),
        );
        s.push('\n');
    }
    std::fs::write(&p, s).unwrap();
    p
}

const LLM: &str = r#"
[llm]
window = 4
@LLM_EXTRA@
[[llm.endpoints]]
base_url = "@BASE@"
model = "base-model"
api_key_env = "MEDFORGE_CLI_TEST_LLM_KEY"
pricing = { input_per_1m = 1.0, output_per_1m = 2.0 }
timeout_s = 10
max_retries = 2
backoff_base_ms = 10
[[llm.backends.teacher.endpoints]]
base_url = "@BASE@"
model = "teacher-model"
api_key_env = "MEDFORGE_CLI_TEST_LLM_KEY"
pricing = { input_per_1m = 3.0, output_per_1m = 6.0 }
timeout_s = 10
max_retries = 2
backoff_base_ms = 10
"#;

const LABEL: &str = r#"
[[stages]]
stage = "label"
taxonomy = "@ROOT@/fixtures/specialty_taxonomy/med_division.json"
prompt = '''REPLY:(row {{ id }})
Category ids: {% if question|length is even %}2, 5{% else %}Neurology{% endif %}'''
"#;

const DIFFICULTY: &str = r#"
[[stages]]
stage = "difficulty"
mcq_prompt = '''REPLY:(row {{ id }}) The answer is {% if question|length is even %}{{ answer_letter }}{% elif answer_letter == "A" %}B{% else %}A{% endif %}.'''
open_prompt = '''REPLY:(row {{ id }}) an open answer'''
judge_prompt = '''REPLY:{% if question|length is even %}correct{% else %}incorrect{% endif %} (judge {{ id }})'''
"#;

const REWRITE: &str = r#"
[[stages]]
stage = "rewrite"
field = "answer"
max_retries = 1
prompt = '''{% if question|length is divisibleby(3) %}REPLY:(row {{ id }}) plain prose, not a list{% else %}REPLY:- The answer is {{ answer }} (row {{ id }})
  - why
    - because{% endif %}'''
feedback = '''{% if question|length is divisibleby(9) %}REPLY:(again {{ id }}) still prose{% else %}REPLY:- The answer is {{ answer }} (fixed {{ id }})
  - why
    - because{% endif %}'''
"#;

const DPO: &str = r#"
[[stages]]
stage = "dpo_pairs"
prompt = '''REPLY:{% if side == "chosen" or question|length is divisibleby(5) %}A careful, complete answer for {{ id }}: {{ answer }}{% else %}short {{ id }}{% endif %}'''
"#;

fn config(dir: &Path, base_url: &str, llm_extra: &str, stages: &[&str], inputs: &[PathBuf]) -> PathBuf {
    let mut s = format!("[run]\noutput = \"{}\"\n", dir.join("out").display());
    for i in inputs {
        s.push_str(&format!("[[inputs]]\npath = \"{}\"\n", i.display()));
        if i.extension().is_some_and(|e| e == "jsonl") && i.to_string_lossy().contains("medqa") {
            s.push_str("preset = \"medqa\"\n");
        } else {
            s.push_str("preset = \"medforge\"\n");
        }
    }
    s.push_str(&LLM.replace("@LLM_EXTRA@", llm_extra));
    for st in stages {
        s.push_str(st);
    }
    s.push_str("[output]\nformats = [\"jsonl\"]\n");
    let s = s.replace("@BASE@", base_url).replace("@ROOT@", &root().display().to_string());
    let p = dir.join("llm.toml");
    std::fs::write(&p, s).unwrap();
    p
}

fn medqa() -> PathBuf {
    root().join("fixtures/medqa/dev_4opt.jsonl")
}

/// The row ids medforge gives the MedQA fixture.
fn medqa_ids(dir: &Path) -> Vec<String> {
    let out = dir.join("ids.jsonl");
    let o = bin()
        .args(["convert", medqa().to_str().unwrap(), out.to_str().unwrap(), "--preset", "medqa"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    jsonl(&out).iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

/// The run folder a command printed on its last stdout line.
fn run_dir(o: &Output) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&o.stdout).lines().last().expect("run dir printed").trim())
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Every file under `dir` (the SQLite cache included) and every captured output, searched for the key.
fn assert_no_secret(dir: &Path, outputs: &[&[u8]]) {
    let mut stack = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files += 1;
                let bytes = std::fs::read(&p).unwrap();
                assert!(!contains(&bytes, SECRET.as_bytes()), "the API key is in {}", p.display());
            }
        }
    }
    assert!(files > 3, "searched {files} files");
    for o in outputs {
        assert!(!contains(o, SECRET.as_bytes()), "the API key is in captured output");
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_llm_stages_completes_resumes_after_kill_9_without_repeats_and_never_leaks_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    server.set_latency(Duration::from_millis(25));
    let open = write_open_rows(dir.path());
    let cfg = config(dir.path(), &server.base_url(), "", &[LABEL, DIFFICULTY, REWRITE, DPO], &[medqa(), open]);
    let cfg_s = cfg.to_str().unwrap();
    let cache = dir.path().join("out/llm_cache.sqlite");

    // 1. Start, and kill -9 once about a third of the calls are made.
    let mut child = bin()
        .args(["run", "--config", cfg_s])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn medforge");
    let t = Instant::now();
    while server.request_count() < 40 {
        assert!(t.elapsed() < Duration::from_secs(60), "only {} requests", server.request_count());
        if let Ok(Some(st)) = child.try_wait() {
            panic!("medforge exited before the kill ({st}): {}", text(&child.wait_with_output().unwrap()));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap(); // SIGKILL
    let killed = tokio::task::block_in_place(|| child.wait_with_output()).unwrap();
    // Let bytes already on the wire reach the server's log before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed_at = server.request_count();
    let cached_at_kill = medforge_llm::Cache::open(&cache).unwrap().len().unwrap() as usize;
    // Requests the server saw but whose answers the killed process never stored: the ones in flight.
    let in_flight = killed_at - cached_at_kill;
    assert!(in_flight <= 4, "at most `window` requests in flight: {in_flight}");

    // 2. Re-run: finishes; only the requests in flight at the kill are asked again.
    let second = medforge(&["run", "--config", cfg_s]);
    assert!(second.status.success(), "{}", text(&second));
    let total = server.request_count();
    let repeats = server.repeated_prompts();
    // Zero repeats among the requests the killed process got an answer to: the only prompts asked
    // twice are the ones whose answers never reached it (in flight at the SIGKILL), each once.
    assert_eq!(repeats, in_flight, "repeated requests beyond the {in_flight} unanswered at the kill");
    assert!(total > killed_at, "the re-run did the rest");
    eprintln!(
        "resume proof: killed after {killed_at} requests ({cached_at_kill} cached, {in_flight} in flight); \
         re-run made {} more; {repeats} prompts asked twice; {total} requests in all",
        total - killed_at
    );

    // 3. A third run is all cache: zero requests.
    let third = medforge(&["run", "--config", cfg_s]);
    assert!(third.status.success(), "{}", text(&third));
    assert_eq!(server.request_count(), total, "a finished run is answered from the cache");

    // The outputs of the completed run.
    let run = run_dir(&second);
    let label = json(&run.join("label_report.json"));
    assert_eq!(label["labelled"], 23);
    assert_eq!(label["unknown"], 0, "{label}");
    let diff = json(&run.join("difficulty_report.json"));
    let verdicts = &diff["verdicts"];
    assert!(verdicts["correct"].as_u64().unwrap() > 0 && verdicts["incorrect"].as_u64().unwrap() > 0, "{diff}");
    let manifest = json(&run.join("manifest.json"));
    let step = |name: &str| manifest["steps"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap().clone();
    assert_eq!(step("difficulty")["reasons"]["difficulty.solved_by_base"], verdicts["correct"]);
    let rewrite = json(&run.join("rewrite_report.json"));
    assert!(rewrite["converted"].as_u64().unwrap() > 0, "{rewrite}");
    assert!(rewrite["attempts_of_successes"]["2"].as_u64().unwrap_or(0) > 0, "some passed on the retry: {rewrite}");
    let dpo = json(&run.join("dpo_pairs_report.json"));
    let pairs = jsonl(&run.join("dpo_pairs.jsonl"));
    assert_eq!(pairs.len() as u64, dpo["pairs"].as_u64().unwrap());
    assert!(!pairs.is_empty());
    for p in &pairs {
        assert!(p["prompt"].is_string() && p["chosen"].is_string() && p["rejected"].is_string(), "{p}");
        assert_ne!(p["chosen"], p["rejected"]);
        assert_eq!(p["meta"]["chosen_model"], "teacher-model");
        assert_eq!(p["meta"]["rejected_model"], "base-model");
    }
    let curated = jsonl(&run.join("curated.jsonl"));
    assert_eq!(curated.len(), pairs.len());
    for r in &curated {
        assert_eq!(r["kind"], "preference");
        assert!(r["metadata"]["difficulty"]["verdict"].is_string(), "base answer and verdict stored: {r}");
        assert!(r["metadata"]["_conversion_success"].is_boolean());
        assert!(r["division"].is_string());
    }
    // Per-stage spend in the manifest; the completed re-run made calls and had cache hits.
    let llm = &manifest["llm"];
    for s in ["label", "difficulty", "rewrite", "dpo_pairs"] {
        assert!(llm["stages"][s]["calls"].is_u64(), "{s}: {llm}");
    }
    assert!(llm["total"]["cache_hits"].as_u64().unwrap() > 0);
    assert!(llm["total"]["usd"].as_f64().unwrap() > 0.0);
    let third_run = json(&run_dir(&third).join("manifest.json"));
    assert_eq!(third_run["llm"]["total"]["calls"], 0);

    // The key went to the server, and nowhere else.
    assert!(server.requests().iter().all(|r| r.authorization.as_deref() == Some(&format!("Bearer {SECRET}"))));
    assert_no_secret(
        dir.path(),
        &[&killed.stdout, &killed.stderr, &second.stdout, &second.stderr, &third.stdout, &third.stderr],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_estimates_tokens_and_cost_and_makes_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    let cfg = config(dir.path(), &server.base_url(), "", &[LABEL, DIFFICULTY, REWRITE, DPO], &[medqa()]);
    // No key in the environment: a dry run needs none.
    let o = tokio::task::block_in_place(|| {
        bin().env_remove(KEY_VAR).args(["run", "--config", cfg.to_str().unwrap(), "--dry-run"]).output().unwrap()
    });
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("dry run: no LLM call was made"), "{out}");
    let total = out.lines().find(|l| l.starts_with("total")).expect("a total line");
    let cols: Vec<&str> = total.split_whitespace().collect();
    // label 20 + difficulty 20 + rewrite 20 + dpo 2 x 20 first-round requests.
    assert_eq!(cols[1], "100", "{out}");
    assert!(cols[4].parse::<f64>().unwrap() > 0.0, "a cost: {out}");
    assert_eq!(server.request_count(), 0, "no request");
    let run = run_dir_from_text(&out);
    assert!(!run.join("curated.jsonl").exists(), "no outputs from a dry run");
    assert_eq!(json(&run.join("manifest.json"))["llm"]["estimate"]["label"]["requests"], 20);
}

fn run_dir_from_text(out: &str) -> PathBuf {
    let line = out.lines().find_map(|l| l.strip_prefix("manifest: ")).expect("manifest line");
    PathBuf::from(line).parent().unwrap().to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_stops_within_one_request_and_keeps_the_work_done() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    // Every answer costs 1000 prompt + 50 completion tokens at $1/$2 per 1M: $0.0011.
    server.set_usage(1000, 50);
    let budget = 0.0105;
    let extra = format!("budget_usd = {budget}");
    // One request at a time, so the overshoot is bounded by one request (see below).
    let label =
        LABEL.replace("[[stages]]\nstage = \"label\"", "[[stages]]\nstage = \"label\"\nparams = { max_tokens = 50 }");
    let cfg = config(dir.path(), &server.base_url(), &extra, &[&label], &[medqa()]);
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("window = 4", "window = 1")).unwrap();
    let o = medforge(&["run", "--config", cfg.to_str().unwrap()]);
    assert!(!o.status.success(), "a budget stop exits non-zero");
    let msg = text(&o);
    assert!(msg.contains("budget of $0.0105 reached"), "{msg}");
    assert!(msg.contains("re-running the same command continues"), "{msg}");
    let run = run_dir(&o);
    let m = json(&run.join("manifest.json"));
    let spent = m["llm"]["total"]["usd"].as_f64().unwrap();
    let one_request = 0.0011;
    // Each call reserves its estimate (prompt chars/4 + max_tokens) before it starts; the server bills
    // more prompt tokens than estimated here, so the last call may pass the budget, by less than
    // its own cost; and the stop never comes a whole request early.
    let calls = m["llm"]["total"]["calls"].as_u64().unwrap();
    assert!((spent - budget).abs() < one_request, "within one request of the budget: spent {spent} in {calls} calls");
    assert_eq!(m["llm"]["stopped"]["kind"], "budget");
    let curated = jsonl(&run.join("curated.jsonl"));
    assert_eq!(curated.len() as u64, m["llm"]["total"]["calls"].as_u64().unwrap(), "the labelled rows are written");
    let step = &m["steps"].as_array().unwrap().iter().find(|s| s["name"] == "label").unwrap()["reasons"];
    assert_eq!(step["llm.stopped"].as_u64().unwrap() as usize + curated.len(), 20);
    assert_eq!(server.request_count() as u64, m["llm"]["total"]["calls"].as_u64().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_stops_cleanly_saying_which_variable_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    server.fail_when("REPLY", Fault::Unauthorized, None);
    let cfg = config(dir.path(), &server.base_url(), "", &[LABEL], &[medqa()]);
    let o = medforge(&["run", "--config", cfg.to_str().unwrap()]);
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(msg.contains(KEY_VAR), "names the variable to fix: {msg}");
    assert!(msg.contains("stopped early"), "{msg}");
    assert!(server.request_count() <= 4, "no new request after the 401 (only those in flight)");
    let run = run_dir(&o);
    assert!(run.join("curated.jsonl").exists() && run.join("filtered.parquet").exists());
    assert_no_secret(dir.path(), &[&o.stdout, &o.stderr]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_then_retry_failed_reruns_only_those_rows() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    // Two rows get a 400 (a skip) and one a content filter, every time during the first run.
    let ids = medqa_ids(dir.path());
    let row = |i: usize| format!("(row {})", ids[i]);
    server.fail_when(&row(3), Fault::BadRequest, None);
    server.fail_when(&row(7), Fault::ContentPolicy, None);
    server.fail_when(&row(11), Fault::Unavailable, None); // 503 until the retries are spent
    let cfg = config(dir.path(), &server.base_url(), "", &[LABEL], &[medqa()]);
    let o = medforge(&["run", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let run = run_dir(&o);
    let failed = jsonl(&run.join("failed.jsonl"));
    assert_eq!(failed.len(), 3, "{failed:?}");
    let codes: Vec<&str> = failed.iter().map(|f| f["code"].as_str().unwrap()).collect();
    assert!(codes.contains(&"llm.content_filter") && codes.contains(&"llm.bad_request"), "{codes:?}");
    assert_eq!(jsonl(&run.join("curated.jsonl")).len(), 17, "failed rows dropped with llm.failed:<code>");
    let m = json(&run.join("manifest.json"));
    assert_eq!(
        m["steps"].as_array().unwrap().iter().find(|s| s["name"] == "label").unwrap()["reasons"]["llm.failed"],
        3
    );

    server.clear_faults();
    let before = server.request_count();
    let r = medforge(&["retry-failed", run.to_str().unwrap()]);
    assert!(r.status.success(), "{}", text(&r));
    assert_eq!(server.request_count() - before, 3, "only the dead-lettered rows are asked again");
    let retried = run_dir(&r);
    assert_ne!(retried, run);
    assert_eq!(jsonl(&retried.join("curated.jsonl")).len(), 3);
    assert!(!retried.join("failed.jsonl").exists());
}

/// Answer a Batch API request file as the service would: one result line per custom_id, in another
/// order, the answer chosen by the stage the request belongs to.
fn answer_batch(req_path: &Path, res_path: &Path) -> usize {
    let reqs =
        medforge_llm::batch::read_requests(std::io::BufReader::new(std::fs::File::open(req_path).unwrap())).unwrap();
    let mut results = String::new();
    for (i, r) in reqs.iter().enumerate().rev() {
        assert_eq!((r.method.as_str(), r.url.as_str()), ("POST", "/v1/chat/completions"));
        assert_eq!(r.body["model"], "base-model");
        assert!(r.body["messages"].is_array());
        let answer = match r.custom_id.split(':').next().unwrap() {
            "label" if i % 2 == 0 => "4",
            "label" => "Neurology",
            "difficulty" => "The answer is A.",
            other => panic!("unexpected stage {other}"),
        };
        let line = serde_json::json!({"id": format!("batch_req_{i}"), "custom_id": r.custom_id, "error": null,
            "response": {"status_code": 200, "request_id": "x", "body": {"id": "c", "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 2, "total_tokens": 102}}}});
        results.push_str(&line.to_string());
        results.push('\n');
    }
    std::fs::write(res_path, results).unwrap();
    reqs.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_export_answer_import_then_run_makes_zero_calls() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    let difficulty = "[[stages]]\nstage = \"difficulty\"\n";
    let cfg = config(dir.path(), &server.base_url(), "", &[LABEL, difficulty], &[medqa()]);
    let cfg_s = cfg.to_str().unwrap();
    let req_path = dir.path().join("requests.jsonl");
    let res_path = dir.path().join("results.jsonl");
    // Round 1 exports the labels; the difficulty requests wait for the rows' labels (round 2).
    let mut rounds = Vec::new();
    loop {
        let _ = std::fs::remove_file(&req_path);
        let o = medforge(&["batch", "export", "--config", cfg_s, "--out", req_path.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o));
        if text(&o).contains("nothing to export") {
            break;
        }
        rounds.push(answer_batch(&req_path, &res_path));
        let i = medforge(&["batch", "import", "--config", cfg_s, res_path.to_str().unwrap()]);
        assert!(i.status.success(), "{}", text(&i));
        assert!(text(&i).contains(&format!("{} answers stored", rounds.last().unwrap())), "{}", text(&i));
        assert!(rounds.len() < 4, "export does not converge: {rounds:?}");
    }
    assert_eq!(rounds, vec![20, 20]);
    assert_eq!(server.request_count(), 0);

    let run = medforge(&["run", "--config", cfg_s]);
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(server.request_count(), 0, "every answer came from the imported batches");
    let d = run_dir(&run);
    let rep = json(&d.join("label_report.json"));
    assert_eq!((rep["labelled"].as_u64(), rep["unknown"].as_u64()), (Some(20), Some(0)), "{rep}");
    let diff = json(&d.join("difficulty_report.json"));
    let v = &diff["verdicts"];
    assert_eq!(v["correct"].as_u64().unwrap_or(0) + v["incorrect"].as_u64().unwrap_or(0), 20, "{diff}");
    let rows = jsonl(&d.join("curated.jsonl"));
    assert!(rows.iter().all(|r| r["metadata"]["difficulty"]["base_letter"] == "A"));
}

#[test]
fn llm_commands_have_help_with_examples() {
    for cmd in [&["retry-failed"][..], &["batch", "export"], &["batch", "import"]] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let o = bin().args(&args).output().unwrap();
        assert!(o.status.success());
        let t = String::from_utf8_lossy(&o.stdout);
        assert!(t.contains("Example") && t.contains("medforge "), "{cmd:?}: {t}");
    }
    let o = bin().args(["run", "--help"]).output().unwrap();
    let t = String::from_utf8_lossy(&o.stdout);
    for f in ["--dry-run", "--no-cache", "--refresh"] {
        assert!(t.contains(f), "{f}");
    }
}
