//! `medforge score`, `medforge eval`, `medforge report` and `medforge perplexity`: arguments over medforge-eval.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use clap::{Args, ValueEnum};
use medforge_curate::format::FormatConfig;
use medforge_data::formatted::TrainingType;
use medforge_data::{McqOption, Record, RecordKind};
use medforge_engine::source::{ModelSource, OpenedModel};
use medforge_engine::LoadOptions;
use medforge_eval::failures::FailureTracker;
use medforge_eval::generate::{
    attach_key_terms, generate_answers, is_gen_run_dir, load_gen_runs, load_open_items, open_prompt, score_items,
    summarize_gen, write_gen_report, write_gen_run, GenRun, GenSettings, RecommendationRule, ReferenceField,
    TextMetrics, UNKNOWN,
};
use medforge_eval::metrics::bleu::BleuTokenizer;
use medforge_eval::metrics::nltk_bleu::Smoothing;
use medforge_eval::metrics::rouge::{RougeConfig, RougeTokenizer};
use medforge_eval::perplexity::{missed_targets, write_outputs, TargetsMissed};
use medforge_eval::report::{load_run, record_failures, safe_name, summarize, write_report, write_run};
use medforge_eval::runner::{load_benchmark, run_generation, run_generation_with, run_loglik, Benchmark, EvalItem};
use medforge_eval::score::{read_pairs, read_texts, score, BertScoreOptions, Metric, ScoreOptions};
use medforge_eval::scores::reasoning_format;
use medforge_llm::backend::{GenParams, Message};

/// sacrebleu's tokenizers.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BleuTokenizeArg {
    #[value(name = "13a")]
    Tok13a,
    Intl,
    Char,
    None,
}

impl From<BleuTokenizeArg> for BleuTokenizer {
    fn from(t: BleuTokenizeArg) -> BleuTokenizer {
        match t {
            BleuTokenizeArg::Tok13a => BleuTokenizer::Tok13a,
            BleuTokenizeArg::Intl => BleuTokenizer::Intl,
            BleuTokenizeArg::Char => BleuTokenizer::Char,
            BleuTokenizeArg::None => BleuTokenizer::None,
        }
    }
}

/// ROUGE tokenizers.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RougeTokenizerArg {
    /// rouge-score's: lowercase [a-z0-9] words only.
    Reference,
    /// Unicode letters and digits (Korean), not comparable with rouge-score.
    Unicode,
}

impl From<RougeTokenizerArg> for RougeTokenizer {
    fn from(t: RougeTokenizerArg) -> RougeTokenizer {
        match t {
            RougeTokenizerArg::Reference => RougeTokenizer::Reference,
            RougeTokenizerArg::Unicode => RougeTokenizer::Unicode,
        }
    }
}

/// The built-in MCQ benchmarks.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BenchmarkArg {
    Medqa,
    Medmcqa,
    Pubmedqa,
    MmluMedical,
    Kormedmcqa,
}

impl From<BenchmarkArg> for Benchmark {
    fn from(b: BenchmarkArg) -> Benchmark {
        match b {
            BenchmarkArg::Medqa => Benchmark::Medqa,
            BenchmarkArg::Medmcqa => Benchmark::Medmcqa,
            BenchmarkArg::Pubmedqa => Benchmark::Pubmedqa,
            BenchmarkArg::MmluMedical => Benchmark::MmluMedical,
            BenchmarkArg::Kormedmcqa => Benchmark::Kormedmcqa,
        }
    }
}

/// How MCQ answers are read from the model.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// Generate an answer and read its letter.
    Gen,
    /// Rank the options by log-likelihood.
    Loglik,
}

/// Arguments of `medforge score`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    medforge score --refs refs.txt --hyps hyps.txt\n  \
    medforge score --refs refs.jsonl --hyps hyps.jsonl --metrics bleu,rouge --rouge-stemmer --json\n  \
    medforge score --pairs pairs.jsonl --metrics meteor --per-pair scores.jsonl\n  \
    medforge score --pairs pairs.jsonl --metrics bertscore --bertscore-model all-MiniLM-L6-v2 --bertscore-idf\n\n\
    Inputs: .txt (one text per line) or .jsonl (a JSON string per line, or an object with `text`;\n\
    with --pairs, objects with `ref` and `hyp`). Every metric matches its reference implementation:\n\
    BLEU = sacrebleu (0-100; corpus BLEU and BLEU-1..4, mean sentence BLEU), ROUGE = rouge-score,\n\
    METEOR = nltk (WordNet from /usr/share/wordnet, $MEDFORGE_WORDNET or --wordnet; without it exact+stem\n\
    only, with a warning), EM/F1 = the SQuAD v1.1 script, BERTScore = bert-score (same model and\n\
num_layers; --bertscore-baseline FILE rescales as its rescale_with_baseline). The reference ROUGE tokenizer keeps only\n\
    [a-z0-9], so Korean scores 0: use --rouge-tokenizer unicode for Korean (not comparable with rouge-score).")]
pub struct ScoreArgs {
    /// Reference texts.
    #[arg(long, required_unless_present = "pairs")]
    refs: Option<PathBuf>,
    /// Hypothesis texts, one per reference.
    #[arg(long, required_unless_present = "pairs")]
    hyps: Option<PathBuf>,
    /// A JSONL of {"ref": .., "hyp": ..} objects instead of --refs/--hyps.
    #[arg(long, conflicts_with_all = ["refs", "hyps"])]
    pairs: Option<PathBuf>,
    /// Comma-separated: bleu, rouge, meteor, em, f1; the reference pipelines' hypothesis-only scores format (reasoning
    /// format), hierarchy (depth >= 3, <= 5 items per level) and korean (Hangul ratio, term coverage
    /// with --terms); bertscore (P/R/F1 over a local BERT encoder: --bertscore-model).
    #[arg(long, default_value = "bleu,rouge,meteor,em,f1")]
    metrics: String,
    /// sacrebleu tokenizer.
    #[arg(long, value_enum, default_value = "13a")]
    bleu_tokenize: BleuTokenizeArg,
    /// Porter-stem ROUGE tokens (rouge-score's use_stemmer=True).
    #[arg(long)]
    rouge_stemmer: bool,
    /// ROUGE tokenizer: rouge-score's, or one that keeps Unicode letters.
    #[arg(long, value_enum, default_value = "reference")]
    rouge_tokenizer: RougeTokenizerArg,
    /// A WordNet dict folder for METEOR's synonym stage.
    #[arg(long)]
    wordnet: Option<PathBuf>,
    /// Medical term list (one per line) for the korean score's term coverage.
    #[arg(long)]
    terms: Option<PathBuf>,
    /// Options per item for the reasoning-format score's A)..E) analysis.
    #[arg(long, default_value_t = 5)]
    options: usize,
    /// BERTScore encoder: a Hugging Face BERT folder (config.json, model.safetensors, tokenizer.json),
    /// e.g. all-MiniLM-L6-v2; default $MEDFORGE_BERTSCORE_MODEL.
    #[arg(long)]
    bertscore_model: Option<PathBuf>,
    /// BERTScore layer (bert-score's num_layers: the hidden state after this many blocks); default the last.
    #[arg(long)]
    bertscore_layer: Option<usize>,
    /// Weight BERTScore tokens by idf over the references (bert-score's idf=True).
    #[arg(long)]
    bertscore_idf: bool,
    /// Sentences per BERTScore encoder batch.
    #[arg(long, default_value_t = 64)]
    bertscore_batch: usize,
    /// Rescale BERTScore with bert-score's baseline file for this model and layer (its
    /// `rescale_baseline/{lang}/{model}.tsv`, read from the path).
    #[arg(long)]
    bertscore_baseline: Option<PathBuf>,
    /// Write every pair's scores here (JSONL).
    #[arg(long)]
    per_pair: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

impl ScoreArgs {
    pub fn run(self) -> Result<()> {
        let (refs, hyps) = match &self.pairs {
            Some(p) => read_pairs(p)?,
            None => (
                read_texts(self.refs.as_deref().expect("clap requires refs"))?,
                read_texts(self.hyps.as_deref().expect("clap requires hyps"))?,
            ),
        };
        let bertscore = self
            .bertscore_model
            .clone()
            .or_else(|| std::env::var_os("MEDFORGE_BERTSCORE_MODEL").map(PathBuf::from))
            .map(|model| BertScoreOptions {
                model,
                layer: self.bertscore_layer,
                idf: self.bertscore_idf,
                batch_size: self.bertscore_batch,
                baseline: self.bertscore_baseline.clone(),
            });
        let opts = ScoreOptions {
            metrics: Metric::parse_list(&self.metrics)?,
            bleu_tokenizer: self.bleu_tokenize.into(),
            rouge: RougeConfig { stemmer: self.rouge_stemmer, tokenizer: self.rouge_tokenizer.into() },
            wordnet: self.wordnet.clone(),
            terms: self.terms.clone(),
            options: self.options,
            bertscore,
        };
        let report = score(&refs, &hyps, &opts)?;
        if let Some(p) = &self.per_pair {
            let mut buf = Vec::new();
            for row in &report.per_pair {
                serde_json::to_writer(&mut buf, row)?;
                buf.push(b'\n');
            }
            medforge_data::write::write_atomic(p, &buf)?;
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report.summary)?);
        } else {
            println!("{} pairs", refs.len());
            for (k, v) in &report.summary {
                if k != "pairs" {
                    match v.as_f64() {
                        Some(x) => println!("  {k:<20} {x:.4}"),
                        None => println!("  {k:<20} {v}"),
                    }
                }
            }
        }
        Ok(())
    }
}

/// What `medforge eval` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskArg {
    /// Multiple-choice accuracy on a benchmark.
    Mcq,
    /// Open-ended answers scored against references (the Meerkat pipeline's evaluation).
    Generate,
}

/// Which record field holds the reference answer (generate).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReferenceArg {
    /// `answer` for open questions, `response` (PubMedQA's long answer) for multiple-choice rows.
    Auto,
    Answer,
    Response,
}

/// The role of a generation run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Base,
    Finetuned,
}

/// Arguments of `medforge eval`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    medforge eval --endpoint http://localhost:8000/v1 --model smollm2 --benchmark medqa \\\n      \
    --data ../shared/data/medqa/US/4_options/dev.jsonl --limit 200\n  \
    medforge eval --model-path base.gguf --benchmark kormedmcqa \\\n      \
    --data data/kormedmcqa/doctor/test.csv --format-config format.toml --training-type letter \\\n      \
    --target 0.9\n  \
    medforge eval --task generate --model-path base.gguf --adapter out/lora --with-base \\\n      \
    --data out/run/splits/holdout.jsonl --bertscore-model all-MiniLM-L6-v2\n\n\
    --task mcq (default): --mode gen asks the model (chat completions) and extracts the\n\
    letter: reasoning blocks stripped, then \"answer is X\", \"정답: X\", a lone letter, the\n\
    first option letter, the option text; answers that fit none are counted as unparseable\n\
    (and wrong), never guessed. --mode loglik ranks the options by log-likelihood. The run\n\
    folder gets {model}_results.csv, specialty_performance.csv, model_comparison.csv,\n\
    failed_questions.json (the MedGemma Korean pipeline's top 10; its history and medforge's\n\
    detail beside it), division_report.json (items with divisions),\n\
    training_recommendations.json, PNG charts and report.html.\n\n\
    --task generate: the model answers each question that has a reference (splits/holdout.jsonl\n\
    or eval.jsonl, MedQuAD, specialty JSON, PubMedQA long answers: any file a data preset\n\
    reads) with the Meerkat pipeline's settings (512 new tokens, temperature 0.1). Every answer\n\
    is scored with nltk BLEU-1..4, ROUGE-1/2/L, METEOR, exact match, token F1 and BERTScore\n\
    (with --bertscore-model). The folder gets {base,finetuned}_model_results.csv,\n\
    model_comparison.csv (paired improvements with CIs), specialty_performance.csv,\n\
    specialty_analysis.png, model_comparison.png, report.html and the Meerkat pipeline's\n\
    training_recommendations.json, which `medforge split update` applies. Base and\n\
    fine-tuned: --adapter with --with-base in one command, or two runs (--role) joined by\n\
    `medforge report`.\n\n\
    --format-config and --training-type ask with the prompt the model was trained on (the\n\
    `format` stage's system prompts and user turn). --target exits with status 3 below the\n\
    target (accuracy for mcq, the recommendation metric's mean for generate), for loop\n\
    drivers and CI. See docs/evaluation.md.")]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// mcq: multiple-choice accuracy; generate: open-ended answers against references.
    #[arg(long, value_enum, default_value = "mcq")]
    task: TaskArg,
    /// The benchmark (its data preset reads --data); required for --task mcq.
    #[arg(long, value_enum, required_if_eq("task", "mcq"))]
    benchmark: Option<BenchmarkArg>,
    /// The benchmark or dataset file or folder.
    #[arg(long)]
    data: PathBuf,
    /// generate: the data preset that reads --data (default: chosen from the path; medforge JSONL as is).
    #[arg(long)]
    preset: Option<String>,
    /// gen: generate and read the letter; loglik: rank the options by log-likelihood.
    #[arg(long, value_enum, default_value = "gen")]
    mode: ModeArg,
    /// Evaluate only the first N items.
    #[arg(long)]
    limit: Option<usize>,
    /// Run folder (default out/eval/{model}_{benchmark}_{mode}, or out/eval/{model}_generate).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Generation budget per answer.
    #[arg(long, default_value_t = 512)]
    max_tokens: u32,
    /// Sampling temperature (default 0 for mcq, the Meerkat pipeline's 0.1 for generate).
    #[arg(long)]
    temperature: Option<f64>,
    /// Nucleus sampling.
    #[arg(long)]
    top_p: Option<f64>,
    /// Sampling seed sent with every request (reproducible sampled answers).
    #[arg(long)]
    sample_seed: Option<u64>,
    /// The `format` stage's settings (a TOML file of its keys, or of a `[format]` table): test prompts then use
    /// its system prompts and user turn for --training-type.
    #[arg(long)]
    format_config: Option<PathBuf>,
    /// The training type whose prompt to ask with: text, text_reasoning, letter, letter_reasoning (or 1-4).
    /// Default with --format-config: letter for mcq, text for generate.
    #[arg(long)]
    training_type: Option<String>,
    /// Exit with status 3 when the result is below this (mcq accuracy or the generate recommendation metric, 0-1).
    #[arg(long)]
    target: Option<f64>,
    /// mcq: also score each answer with the MedGemma Korean reasoning score (correct 2/3 + format 1/3; a wrong
    /// answer with good reasoning 1/4).
    #[arg(long)]
    reasoning_score: bool,
    /// Continue a failed-question history across runs (a failed_questions.json; its history file sits beside it).
    #[arg(long)]
    failures: Option<PathBuf>,
    /// Training step of this checkpoint (for the accuracy-over-steps chart and the failure history).
    #[arg(long)]
    step: Option<u64>,
    /// Bootstrap seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[command(flatten)]
    generate: GenerateArgs,
}

/// Options of `--task generate`.
#[derive(Args)]
pub struct GenerateArgs {
    /// The record field that holds the reference answer.
    #[arg(long, value_enum, default_value = "auto")]
    reference: ReferenceArg,
    /// Group items by this record field or metadata key (default: specialty, division, then metadata
    /// specialty/subject/category); items with none are counted under UNKNOWN.
    #[arg(long)]
    group_by: Option<String>,
    /// The role of this run's model (default: finetuned with --adapter, else base).
    #[arg(long, value_enum)]
    role: Option<RoleArg>,
    /// With --model-path and --adapter: evaluate the base model too, in the same folder.
    #[arg(long, requires = "adapter")]
    with_base: bool,
    /// BERTScore encoder folder (default $MEDFORGE_BERTSCORE_MODEL); without one the BERTScore columns are left out.
    #[arg(long)]
    bertscore_model: Option<PathBuf>,
    /// bert-score's baseline file for rescaling BERTScore (see `medforge score --help`).
    #[arg(long)]
    bertscore_baseline: Option<PathBuf>,
    /// WordNet dict folder for METEOR's synonym stage.
    #[arg(long)]
    wordnet: Option<PathBuf>,
    /// nltk BLEU smoothing: method0..method4.
    #[arg(long, default_value = "method1")]
    bleu_smoothing: String,
    /// Also compute the MedGemma Korean type-4 score (key terms from the records or --key-terms).
    #[arg(long)]
    type4: bool,
    /// Key terms for --type4: one per line (every item), or a JSON object {id: [terms]}.
    #[arg(long)]
    key_terms: Option<PathBuf>,
    /// Also score hierarchy compliance (the rewrite validator's parser; depth >= 3, <= 5 items per parent).
    #[arg(long)]
    hierarchy: bool,
    /// ROUGE tokenizer (unicode for Korean).
    #[arg(long, value_enum, default_value = "reference")]
    rouge_tokenizer: RougeTokenizerArg,
    #[command(flatten)]
    rec: RecArgs,
}

/// How generation runs' `training_recommendations.json` is made (`eval --task generate` and `report`).
#[derive(Args)]
pub struct RecArgs {
    /// The per-specialty metric recommendations key on.
    #[arg(long, default_value = "token_f1")]
    rec_metric: String,
    /// Specialties whose mean is below this are recommended more data.
    #[arg(long, default_value_t = 0.5)]
    rec_threshold: f64,
    /// Their new training share (the fraction of their non-holdout rows `split update` draws).
    #[arg(long, default_value_t = 0.8)]
    rec_share: f64,
}

impl RecArgs {
    fn rule(&self) -> Result<RecommendationRule> {
        if !(0.0..=1.0).contains(&self.rec_share) {
            bail!("--rec-share {}: a training share between 0 and 1", self.rec_share);
        }
        Ok(RecommendationRule { metric: self.rec_metric.clone(), threshold: self.rec_threshold, share: self.rec_share })
    }
}

/// The `format` settings a test prompt is built with, and the type to ask as.
struct TestPrompt {
    formatter: medforge_curate::format::Formatter,
    training_type: TrainingType,
}

impl TestPrompt {
    fn load(path: Option<&Path>, training_type: Option<&str>, default: TrainingType) -> Result<Option<TestPrompt>> {
        let t = match training_type {
            Some(s) => TrainingType::parse(s).ok_or_else(|| {
                anyhow!("--training-type {s}: use text, text_reasoning, letter, letter_reasoning or 1-4")
            })?,
            None => default,
        };
        let config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| anyhow!("{}: {e}", p.display()))?;
                let v: toml::Value = toml::from_str(&text).map_err(|e| anyhow!("{}: not TOML: {e}", p.display()))?;
                let table = v.get("format").cloned().unwrap_or(v);
                table.try_into::<FormatConfig>().map_err(|e| anyhow!("{}: format settings: {e}", p.display()))?
            }
            None if training_type.is_some() => FormatConfig::default(),
            None => return Ok(None),
        };
        let formatter = medforge_curate::format::Formatter::new(&config)?;
        Ok(Some(TestPrompt { formatter, training_type: t }))
    }

    fn messages(&self, r: &Record) -> Vec<Message> {
        self.formatter
            .test_prompt(r, self.training_type)
            .into_iter()
            .map(|m| match m.role.as_str() {
                "system" => Message::system(m.content),
                _ => Message::user(m.content),
            })
            .collect()
    }
}

/// An MCQ item as a record, for the `format` stage's user turn.
fn item_record(item: &EvalItem) -> Record {
    let mut r = Record::new(item.id.clone(), "eval", RecordKind::Mcq, item.question.clone());
    r.context = item.context.clone();
    r.options = item.choices.iter().map(|(l, t)| McqOption { letter: l.to_string(), text: t.clone() }).collect();
    r
}

/// Where the model is: an OpenAI-compatible endpoint, or a local file for the in-process engine.
#[derive(Args)]
pub struct ModelArgs {
    /// OpenAI-compatible base URL (a remote API, `medforge serve`, vLLM, llama.cpp's server).
    #[arg(long, required_unless_present = "model_path")]
    endpoint: Option<String>,
    /// Model name sent to the endpoint (and used in file names).
    #[arg(long)]
    model: Option<String>,
    /// A local model for the in-process engine: a GGUF file or a Hugging Face safetensors folder
    /// (no server, no API key). --model then only names the run.
    #[arg(long, conflicts_with = "endpoint")]
    model_path: Option<PathBuf>,
    /// With --model-path: requantise GGUF weights at load (q8_0, q4_0, ...), see `medforge serve --help`.
    #[arg(long, requires = "model_path")]
    requant: Option<String>,
    /// With --model-path: a PEFT LoRA adapter folder applied on top (evaluate a fine-tune against its base).
    #[arg(long, requires = "model_path")]
    adapter: Option<PathBuf>,
    /// Requests in flight (an endpoint; the in-process engine takes one at a time).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Environment variable that holds the API key (never the key itself).
    #[arg(long)]
    api_key_env: Option<String>,
}

impl ModelArgs {
    /// The model these flags name.
    fn source(&self) -> Result<ModelSource> {
        if let Some(path) = &self.model_path {
            let load = LoadOptions {
                requant: self.requant.clone(),
                name: self.model.clone(),
                adapter: self.adapter.clone(),
                ..Default::default()
            };
            return Ok(ModelSource::Local { path: path.clone(), load });
        }
        Ok(ModelSource::Endpoint {
            base_url: self.endpoint.clone().expect("clap requires endpoint without model_path"),
            model: self.model.clone().ok_or_else(|| anyhow!("--model NAME is required with --endpoint"))?,
            api_key_env: self.api_key_env.clone().map(medforge_llm::SecretEnv),
            concurrency: self.concurrency,
        })
    }

    fn open(&self) -> Result<OpenedModel> {
        Ok(self.source()?.open()?)
    }
}

impl EvalArgs {
    pub fn run(self) -> Result<()> {
        if self.task == TaskArg::Generate {
            return self.run_generate();
        }
        let bench = Benchmark::from(self.benchmark.expect("clap requires --benchmark for mcq"));
        let mode = match self.mode {
            ModeArg::Gen => "gen",
            ModeArg::Loglik => "loglik",
        };
        let test_prompt =
            TestPrompt::load(self.format_config.as_deref(), self.training_type.as_deref(), TrainingType::Letter)?;
        let OpenedModel { name: model, chat: backend, scorer, concurrency } = self.model.open()?;
        let items = load_benchmark(bench, &self.data, self.limit)?;
        eprintln!("{}: {} items from {}", bench.name(), items.len(), self.data.display());
        let rt = medforge_llm::client::runtime()?;
        let bars = crate::progress::Bars::new();
        let label = if mode == "gen" { "questions" } else { "options" };
        let progress = |done: u64, total: u64| bars.update(label, done, total, None);
        let mut results = if mode == "gen" {
            let params = GenParams {
                max_tokens: Some(self.max_tokens),
                temperature: Some(self.temperature.unwrap_or(0.0)),
                top_p: self.top_p,
                seed: self.sample_seed,
                ..Default::default()
            };
            match &test_prompt {
                Some(tp) => {
                    let prompts = items.iter().map(|i| tp.messages(&item_record(i))).collect();
                    rt.block_on(run_generation_with(backend, &items, prompts, params, concurrency, &progress))
                }
                None => rt.block_on(run_generation(backend, &items, bench.korean(), params, concurrency, &progress)),
            }
        } else {
            if test_prompt.is_some() {
                eprintln!("note: --mode loglik scores the options after medforge's own prompt; --format-config applies to --mode gen");
            }
            rt.block_on(run_loglik(scorer, &items, bench.korean(), concurrency, &progress))
        };
        bars.finish();
        let errors = results.iter().filter(|r| r.outcome == "error").count();
        if errors == results.len() {
            bail!("every request failed; the first error: {}", results[0].detail);
        }
        if self.reasoning_score {
            for (r, item) in results.iter_mut().zip(&items) {
                r.reasoning_score = Some(reasoning_format(&r.prediction, item.choices.len(), r.correct).score);
            }
        }
        let run = summarize(&model, bench.name(), mode, results, self.step, self.seed);
        let out = self.out.clone().unwrap_or_else(|| {
            PathBuf::from("out/eval").join(format!("{}_{}_{mode}", safe_name(&model), bench.name()))
        });
        let files = write_run(&out, &run)?;
        if let Some(history) = &self.failures {
            // Continue the history across runs; this run's folder gets the merged top 10.
            let mut tracker = FailureTracker::load(history)?;
            let step = self
                .step
                .unwrap_or_else(|| tracker.top(usize::MAX).iter().map(|q| q.last_failed_step + 1).max().unwrap_or(0));
            record_failures(&mut tracker, &run, step);
            tracker.write(history)?;
            tracker.write(&out.join("failed_questions.json"))?;
        }
        let a = run.summary.accuracy;
        println!(
            "{model} on {} ({}): accuracy {:.1}% (95% CI {:.1}–{:.1}%), {}/{} correct, {} unparseable, {} errors",
            bench.name(),
            mode,
            a.accuracy * 100.0,
            a.ci_low * 100.0,
            a.ci_high * 100.0,
            run.summary.correct,
            run.summary.n,
            run.summary.unparseable,
            run.summary.errors
        );
        if self.reasoning_score {
            let v: Vec<f64> = run.items.iter().filter_map(|i| i.reasoning_score).collect();
            println!("reasoning score (MedGemma Korean): {:.3}", v.iter().sum::<f64>() / v.len().max(1) as f64);
        }
        println!("wrote {} files to {} (open report.html)", files.len(), out.display());
        check_target(self.target, "accuracy", a.accuracy)
    }

    fn run_generate(self) -> Result<()> {
        let g = &self.generate;
        let rule = g.rec.rule()?;
        let smoothing = Smoothing::parse(&g.bleu_smoothing)
            .ok_or_else(|| anyhow!("--bleu-smoothing {}: use method0..method4", g.bleu_smoothing))?;
        let test_prompt =
            TestPrompt::load(self.format_config.as_deref(), self.training_type.as_deref(), TrainingType::Text)?;
        let field = match g.reference {
            ReferenceArg::Auto => ReferenceField::Auto,
            ReferenceArg::Answer => ReferenceField::Answer,
            ReferenceArg::Response => ReferenceField::Response,
        };
        let mut loaded = load_open_items(&self.data, self.preset.as_deref(), field, g.group_by.as_deref(), self.limit)?;
        if let Some(k) = &g.key_terms {
            attach_key_terms(&mut loaded.items, k)?;
        }
        let items = loaded.items;
        eprintln!(
            "{} items with references from {} ({} records without a reference skipped, {} items without a specialty              grouped as UNKNOWN)",
            items.len(),
            self.data.display(),
            loaded.no_reference,
            items.iter().filter(|i| i.specialty == UNKNOWN).count()
        );
        let records: Vec<Record> = items
            .iter()
            .map(|i| {
                let mut r = Record::new(i.id.clone(), "eval", RecordKind::OpenQa, i.question.clone());
                r.context = i.context.clone();
                r
            })
            .collect();
        let prompts = |tp: &Option<TestPrompt>| -> Vec<Vec<Message>> {
            match tp {
                Some(tp) => records.iter().map(|r| tp.messages(r)).collect(),
                None => items.iter().map(open_prompt).collect(),
            }
        };
        let temperature = self.temperature.unwrap_or(0.1);
        let params = GenParams {
            max_tokens: Some(self.max_tokens),
            temperature: Some(temperature),
            top_p: self.top_p,
            seed: self.sample_seed,
            ..Default::default()
        };
        let settings =
            GenSettings { max_tokens: self.max_tokens, temperature, top_p: self.top_p, seed: self.sample_seed };
        let bertscore =
            g.bertscore_model.clone().or_else(|| std::env::var_os("MEDFORGE_BERTSCORE_MODEL").map(PathBuf::from)).map(
                |model| BertScoreOptions {
                    model,
                    layer: None,
                    idf: false,
                    batch_size: 64,
                    baseline: g.bertscore_baseline.clone(),
                },
            );
        if bertscore.is_none() {
            eprintln!(
                "note: no BERTScore encoder (--bertscore-model or $MEDFORGE_BERTSCORE_MODEL): BERTScore left out"
            );
        }
        let metrics = TextMetrics {
            smoothing,
            rouge: RougeConfig { stemmer: true, tokenizer: g.rouge_tokenizer.into() },
            wordnet: g.wordnet.clone(),
            bertscore: bertscore.clone(),
            type4: g.type4,
            hierarchy: g.hierarchy,
            ..Default::default()
        };
        let key_terms: Vec<Vec<String>> = items.iter().map(|i| i.key_terms.clone()).collect();
        let role = g.role.unwrap_or(if self.model.adapter.is_some() { RoleArg::Finetuned } else { RoleArg::Base });
        let mut plan: Vec<(RoleArg, ModelSource)> = Vec::new();
        let source = self.model.source()?;
        if g.with_base {
            if let ModelSource::Local { path, load } = &source {
                let base = LoadOptions { adapter: None, ..load.clone() };
                plan.push((RoleArg::Base, ModelSource::Local { path: path.clone(), load: base }));
            }
        }
        plan.push((if g.with_base { RoleArg::Finetuned } else { role }, source));
        let mut runs = Vec::new();
        let mut out_dir = self.out.clone();
        let rt = medforge_llm::client::runtime()?;
        for (role, source) in plan {
            let role = if role == RoleArg::Base { "base" } else { "finetuned" };
            let OpenedModel { name: model, chat, concurrency, .. } = source.open()?;
            let out = out_dir
                .get_or_insert_with(|| PathBuf::from("out/eval").join(format!("{}_generate", safe_name(&model))))
                .clone();
            let bars = crate::progress::Bars::new();
            let progress = |done: u64, total: u64| bars.update(&format!("{role} answers"), done, total, None);
            let t0 = std::time::Instant::now();
            let mut answered = rt.block_on(generate_answers(
                chat,
                &items,
                prompts(&test_prompt),
                params.clone(),
                concurrency,
                &progress,
            ));
            bars.finish();
            let generate_s = t0.elapsed().as_secs_f64();
            let errors = answered.iter().filter(|i| i.error.is_some()).count();
            if errors == answered.len() {
                bail!("every request failed; the first error: {}", answered[0].error.clone().unwrap_or_default());
            }
            let t1 = std::time::Instant::now();
            let wordnet = score_items(&mut answered, &key_terms, &metrics)?;
            let score_s = t1.elapsed().as_secs_f64();
            let run = summarize_gen(
                &model,
                role,
                &self.data.display().to_string(),
                answered,
                settings.clone(),
                wordnet,
                bertscore.as_ref().map(|b| b.model.display().to_string()),
                self.seed,
                (generate_s, score_s),
            );
            write_gen_run(&out, &run)?;
            print_gen_summary(&run);
            eprintln!("{role}: generation {generate_s:.1} s, scoring {score_s:.1} s");
            runs.push(run);
        }
        let out = out_dir.expect("one run at least");
        // A folder that already holds the other role (an earlier run) is reported together.
        let all = load_gen_runs(&out)?;
        let files = write_gen_report(&out, &all, &rule)?;
        println!("wrote {} report files to {} (open report.html)", files.len(), out.display());
        let last = runs.last().expect("one run at least");
        let key = last.summary.metrics.get(&rule.metric).map_or(0.0, |m| m.mean);
        check_target(self.target, &rule.metric, key)
    }
}

fn print_gen_summary(run: &GenRun) {
    println!("{} ({}), {} items, {} errors:", run.summary.model, run.summary.role, run.summary.n, run.summary.errors);
    for (k, m) in &run.summary.metrics {
        if k != "answer_chars" {
            println!("  {k:<20} {:.4}  (95% CI {:.4}–{:.4})", m.mean, m.ci_low, m.ci_high);
        }
    }
}

/// A result below `--target` is status 3 (a result, not a failure).
fn check_target(target: Option<f64>, what: &str, value: f64) -> Result<()> {
    match target {
        Some(t) if value < t => Err(TargetsMissed(vec![format!("{what} {value:.4} < target {t}")]).into()),
        Some(t) => {
            println!("target met: {what} {value:.4} >= {t}");
            Ok(())
        }
        None => Ok(()),
    }
}

/// Arguments of `medforge report`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    medforge report out/eval/base_medqa_gen out/eval/finetuned_medqa_gen\n  \
    medforge report runs/step100 runs/step200 runs/step300 --out runs/report\n  \
    medforge report out/eval/base_generate out/eval/finetuned_generate --out out/eval/compare\n\n\
    The first run is the base: model_comparison.csv gives every run's accuracy and its paired delta\n\
    against the base with 95% bootstrap CIs; failed_questions.json counts failures across the runs;\n\
    runs evaluated with --step draw the accuracy-over-steps chart.")]
pub struct ReportArgs {
    /// Run folders written by `medforge eval` (the first is the base).
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Where to write the report (default: a `report` folder beside the last run).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Generation runs: how the recommendations are made.
    #[command(flatten)]
    rec: RecArgs,
}

impl ReportArgs {
    pub fn run(self) -> Result<()> {
        let last = self.runs.last().expect("clap requires one");
        let out = self.out.clone().unwrap_or_else(|| last.parent().unwrap_or(Path::new(".")).join("report"));
        let gen: Vec<bool> = self.runs.iter().map(|d| is_gen_run_dir(d)).collect();
        if gen.iter().any(|g| *g) {
            if !gen.iter().all(|g| *g) {
                bail!("medforge report: mix of generation and MCQ run folders; report each kind on its own");
            }
            let mut runs = Vec::new();
            for d in &self.runs {
                runs.extend(load_gen_runs(d)?);
            }
            let rule = self.rec.rule()?;
            let files = write_gen_report(&out, &runs, &rule)?;
            for r in &runs {
                print_gen_summary(r);
            }
            println!("wrote {} files to {} (open report.html)", files.len(), out.display());
            return Ok(());
        }
        let runs = self.runs.iter().map(|d| load_run(d)).collect::<std::result::Result<Vec<_>, _>>()?;
        let files = write_report(&out, &runs)?;
        for r in &runs {
            let a = r.summary.accuracy;
            println!(
                "{:<30} {:<12} {:<6} n={:<5} accuracy {:.1}% (95% CI {:.1}–{:.1}%)",
                r.summary.model,
                r.summary.benchmark,
                r.summary.mode,
                r.summary.n,
                a.accuracy * 100.0,
                a.ci_low * 100.0,
                a.ci_high * 100.0
            );
        }
        println!("wrote {} files to {} (open report.html)", files.len(), out.display());
        Ok(())
    }
}

/// Arguments of `medforge perplexity`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    medforge perplexity --model-path ~/.cache/medforge/models/SmolLM2-135M-Instruct.Q4_1.gguf \\\n      \
    --data out/curate_demo/<run>/formatted/train.jsonl\n  \
    medforge perplexity --model-path base.gguf --adapter out/lora --data formatted/train.jsonl \\\n      \
    --target text=12,text_reasoning=8,letter=3,letter_reasoning=5\n\n\
    Each row's completion is scored given its prompt (the tokens a fine-tune learns); perplexity is pooled per\n\
    training_type as exp(total NLL / total tokens). With --target, the table says which types meet theirs and\n\
    the command exits with status 3 when one does not. Writes perplexity.json and perplexity_rows.csv.")]
pub struct PerplexityArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A formatted training set (JSONL with training_type, prompt, completion; the `format` stage writes one).
    #[arg(long)]
    data: PathBuf,
    /// Score only the first N rows.
    #[arg(long)]
    limit: Option<usize>,
    /// Targets as TYPE=PERPLEXITY, comma-separated or repeated (`all` for the pooled figure).
    #[arg(long)]
    target: Vec<String>,
    /// Output folder (default out/perplexity/{model}).
    #[arg(long)]
    out: Option<PathBuf>,
}

impl PerplexityArgs {
    pub fn run(self) -> Result<()> {
        let targets = medforge_eval::perplexity::parse_targets(&self.target)?;
        let rows = medforge_eval::perplexity::load_rows(&self.data, self.limit)?;
        if rows.is_empty() {
            bail!("{}: no rows to score", self.data.display());
        }
        let OpenedModel { name: model, scorer, concurrency, .. } = self.model.open()?;
        eprintln!("{} rows from {}", rows.len(), self.data.display());
        let rt = medforge_llm::client::runtime()?;
        let bars = crate::progress::Bars::new();
        let progress = |done: u64, total: u64| bars.update("rows", done, total, None);
        let report =
            rt.block_on(medforge_eval::perplexity::run(scorer, &model, &rows, &targets, concurrency, &progress));
        bars.finish();
        if report.errors == rows.len() {
            let first = report.rows.iter().find_map(|r| r.error.clone()).unwrap_or_default();
            bail!("every row failed; the first error: {first}");
        }
        let out = self.out.clone().unwrap_or_else(|| PathBuf::from("out/perplexity").join(safe_name(&model)));
        write_outputs(&out, &report, &self.data)?;
        println!("{:<18} {:>6} {:>8} {:>11} {:>8}  target", "training_type", "rows", "tokens", "perplexity", "");
        let line = |name: &str, g: &medforge_eval::perplexity::GroupPpl| {
            let t = match (g.target, g.meets_target) {
                (Some(t), Some(true)) => format!("<= {t}: met"),
                (Some(t), _) => format!("<= {t}: NOT met"),
                _ => "-".into(),
            };
            println!("{name:<18} {:>6} {:>8} {:>11.3} {:>8}  {t}", g.rows, g.tokens, g.perplexity, "");
        };
        for (name, g) in &report.groups {
            line(name, g);
        }
        line("all", &report.overall);
        for t in targets.keys() {
            if t != "all" && !report.groups.contains_key(t) {
                eprintln!("warning: --target {t}: no rows of that training type in {}", self.data.display());
            }
        }
        if report.errors > 0 {
            eprintln!("{} rows could not be scored (see perplexity_rows.csv)", report.errors);
        }
        println!("wrote perplexity.json and perplexity_rows.csv to {}", out.display());
        let missed = missed_targets(&report);
        if !missed.is_empty() {
            return Err(TargetsMissed(missed).into());
        }
        Ok(())
    }
}
