//! LLM stages through the library runner against the fake OpenAI-compatible server (real HTTP on
//! 127.0.0.1): cache modes, keep-on-failure, judge failures as dead letters, config errors.

use std::path::{Path, PathBuf};

use medforge_curate::runner::{run_with, RunOptions};
use medforge_curate::stages::llm::{LlmMode, LlmOptions};
use medforge_curate::CurateConfig;
use medforge_llm::testing::{FakeServer, Fault};
use medforge_llm::CacheMode;
use serde_json::{json, Value};

/// The fake server on its own runtime (the runner makes its own for the stages).
fn server() -> (tokio::runtime::Runtime, FakeServer) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let s = rt.block_on(FakeServer::start());
    (rt, s)
}

fn rows(dir: &Path) -> PathBuf {
    let p = dir.join("rows.jsonl");
    let mut s = String::new();
    for (i, (q, a)) in [
        ("Which vitamin deficiency causes scurvy?", "Vitamin C"),
        ("Which organ produces insulin?", "The pancreas"),
        ("What is the first-line drug for type 2 diabetes?", "Metformin"),
        ("Which nerve is damaged in wrist drop?", "The radial nerve"),
    ]
    .iter()
    .enumerate()
    {
        s.push_str(
            &json!({"id": format!("r{i}"), "source": "t", "kind": "open_qa", "question": q, "answer": a}).to_string(),
        );
        s.push('\n');
    }
    std::fs::write(&p, s).unwrap();
    p
}

fn config(dir: &Path, base: &str, llm_extra: &str, stages: &str) -> (CurateConfig, PathBuf) {
    let text = format!(
        "[run]\noutput = \"{out}\"\n[[inputs]]\npath = \"{rows}\"\npreset = \"medforge\"\n\
         [llm]\nwindow = 2\n{llm_extra}\n[[llm.endpoints]]\nbase_url = \"{base}\"\nmodel = \"m\"\nbackoff_base_ms = 5\nmax_retries = 1\n\
         {stages}\n[output]\nformats = [\"jsonl\"]\n",
        out = dir.join("out").display(),
        rows = rows(dir).display(),
    );
    let path = dir.join("c.toml");
    std::fs::write(&path, &text).unwrap();
    (CurateConfig::load(&path).unwrap_or_else(|e| panic!("{e}\n{text}")), path)
}

fn opts(cache: Option<CacheMode>) -> RunOptions {
    RunOptions { llm: LlmOptions { mode: LlmMode::Live, cache_mode: cache, spend: None }, only_ids: None }
}

fn jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

const GENERATE: &str = r#"
[[stages]]
stage = "generate"
into = "reasoning"
prompt = '''REPLY:<think>scratch</think>reasoning for {{ id }}'''
strip_reasoning = true
"#;

#[test]
fn generate_fills_a_field_and_on_failure_keep_keeps_dead_lettered_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (_rt, s) = server();
    s.fail_when("reasoning for r2", Fault::ContentPolicy, None);
    let (cfg, path) = config(dir.path(), &s.base_url(), "on_failure = \"keep\"", GENERATE);
    let out = run_with(&cfg, &path, None, &opts(None), &|_, _, _| {}).unwrap();
    assert_eq!(out.kept, 4, "on_failure = keep");
    let rows = jsonl(&out.dir.join("curated.jsonl"));
    assert_eq!(rows[0]["reasoning"], "reasoning for r0", "reasoning blocks stripped");
    assert!(rows[2]["reasoning"].is_null());
    let ann = &rows[2]["annotations"][0];
    assert_eq!(
        (ann["verdict"].as_str(), ann["reason"].as_str()),
        (Some("kept"), Some("llm.failed:llm.content_filter"))
    );
    let failed = jsonl(&out.dir.join("failed.jsonl"));
    assert_eq!(failed.len(), 1);
    assert_eq!((failed[0]["row_id"].as_str(), failed[0]["stage"].as_str()), (Some("r2"), Some("generate")));
    assert_eq!(s.request_count(), 4);
}

#[test]
fn cache_modes_use_refresh_and_off() {
    let dir = tempfile::tempdir().unwrap();
    let (_rt, s) = server();
    let (cfg, path) = config(dir.path(), &s.base_url(), "", GENERATE);
    let cache = dir.path().join("out/llm_cache.sqlite");
    run_with(&cfg, &path, None, &opts(None), &|_, _, _| {}).unwrap();
    assert_eq!(s.request_count(), 4);
    let again = run_with(&cfg, &path, None, &opts(None), &|_, _, _| {}).unwrap();
    assert_eq!(s.request_count(), 4, "all from the cache");
    assert_eq!(again.llm.unwrap().spend().snapshot().cache_hits, 4);
    run_with(&cfg, &path, None, &opts(Some(CacheMode::Refresh)), &|_, _, _| {}).unwrap();
    assert_eq!(s.request_count(), 8, "--refresh asks again");
    assert_eq!(medforge_llm::Cache::open(&cache).unwrap().len().unwrap(), 4, "and overwrites");
    std::fs::remove_file(&cache).unwrap();
    run_with(&cfg, &path, None, &opts(Some(CacheMode::Off)), &|_, _, _| {}).unwrap();
    assert_eq!(s.request_count(), 12);
    assert!(!cache.exists(), "--no-cache neither reads nor writes a cache");
}

#[test]
fn an_unreadable_judge_verdict_is_a_dead_letter_and_is_asked_again_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let (_rt, s) = server();
    let stages = r#"
[[stages]]
stage = "difficulty"
open_prompt = '''REPLY:base answer {{ id }}'''
judge_prompt = '''REPLY:{% if id == "r1" %}maybe{% elif id == "r0" %}Correct.{% else %}incorrect{% endif %} {{ id }}'''
"#;
    let (cfg, path) = config(dir.path(), &s.base_url(), "", stages);
    let out = run_with(&cfg, &path, None, &opts(None), &|_, _, _| {}).unwrap();
    assert_eq!(s.request_count(), 8, "4 base answers + 4 verdicts");
    let step = out.manifest.steps.iter().find(|s| s.name == "difficulty").unwrap();
    assert_eq!(step.reasons.get("difficulty.solved_by_base"), Some(&1));
    assert_eq!(step.reasons.get("llm.failed"), Some(&1));
    let failed = jsonl(&out.dir.join("failed.jsonl"));
    assert_eq!(failed[0]["code"], "llm.invalid_response");
    let kept = jsonl(&out.dir.join("curated.jsonl"));
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0]["metadata"]["difficulty"]["verdict"], "incorrect");
    assert_eq!(kept[0]["metadata"]["difficulty"]["base_answer"], "base answer r2");
    // The re-run asks only the verdict that was not usable (it was never cached).
    run_with(&cfg, &path, None, &opts(None), &|_, _, _| {}).unwrap();
    assert_eq!(s.request_count(), 9);
}

#[test]
fn config_errors_say_what_to_add() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    let input = format!("[[inputs]]\npath = \"{}\"\npreset = \"medforge\"\n", rows(dir.path()).display());
    std::fs::write(&p, format!("[run]\noutput = \"{}\"\n{input}{GENERATE}", dir.path().display())).unwrap();
    let cfg = CurateConfig::load(&p).unwrap();
    let e = cfg.build_stages(None).err().unwrap().to_string();
    assert!(e.contains("add an [llm] section"), "{e}");

    let (_rt, s) = server();
    let (cfg, path) = config(dir.path(), &s.base_url(), "", "[[stages]]\nstage = \"dpo_pairs\"\n");
    let e = run_with(&cfg, &path, None, &opts(None), &|_, _, _| {}).err().unwrap().to_string();
    assert!(e.contains("backend `teacher` is not configured") && e.contains("[llm.backends.teacher"), "{e}");

    let bad = GENERATE.replace("{{ id }}", "{{ idd }}");
    let (cfg, path) = config(dir.path(), &s.base_url(), "", &bad);
    let e = run_with(&cfg, &path, None, &opts(None), &|_, _, _| {}).err().unwrap().to_string();
    assert!(e.contains("template `prompt` on row `r0`") && e.contains("idd"), "{e}");
    assert_eq!(s.request_count(), 0);

    let e = CurateConfig::parse(&format!("{input}[[stages]]\nstage = \"rewrite\"\nfield = \"answer\"\nretries = 2\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("retries"), "{e}");
}
