//! `medforge score`, `medforge eval`, `medforge report` and `medforge perplexity`: arguments over medforge-eval.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use clap::{Args, ValueEnum};
use medforge_engine::source::{ModelSource, OpenedModel};
use medforge_engine::LoadOptions;
use medforge_eval::metrics::bleu::BleuTokenizer;
use medforge_eval::metrics::rouge::{RougeConfig, RougeTokenizer};
use medforge_eval::perplexity::{missed_targets, write_outputs, TargetsMissed};
use medforge_eval::report::{load_run, safe_name, summarize, write_report, write_run};
use medforge_eval::runner::{load_benchmark, run_generation, run_loglik, Benchmark};
use medforge_eval::score::{read_pairs, read_texts, score, BertScoreOptions, Metric, ScoreOptions};
use medforge_llm::backend::GenParams;

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
num_layers; no baseline rescaling). The reference ROUGE tokenizer keeps only\n\
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

/// Arguments of `medforge eval`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    medforge eval --endpoint http://localhost:8000/v1 --model smollm2 --benchmark medqa \\\n      \
    --data ../shared/data/medqa/US/4_options/dev.jsonl --limit 200\n  \
    medforge eval --endpoint http://localhost:8000/v1 --model smollm2 --benchmark kormedmcqa \\\n      \
    --data data/kormedmcqa/doctor/test.csv --mode loglik\n\n\
    --mode gen asks the model (chat completions) and extracts the letter: reasoning blocks stripped,\n\
    then \"answer is X\", \"정답: X\", a lone letter, the first option letter, the option text; answers\n\
    that fit none are counted as unparseable (and wrong), never guessed. --mode loglik ranks the options\n\
    by log-likelihood through /v1/completions with echo + logprobs. The run folder gets\n\
    {model}_results.csv, specialty_performance.csv, model_comparison.csv, failed_questions.json,\n\
    training_recommendations.json, PNG charts and report.html. Compare runs with `medforge report`.")]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The benchmark (its data preset reads --data).
    #[arg(long, value_enum)]
    benchmark: BenchmarkArg,
    /// The benchmark file or folder (read with the benchmark's data preset).
    #[arg(long)]
    data: PathBuf,
    /// gen: generate and read the letter; loglik: rank the options by log-likelihood.
    #[arg(long, value_enum, default_value = "gen")]
    mode: ModeArg,
    /// Evaluate only the first N items.
    #[arg(long)]
    limit: Option<usize>,
    /// Run folder (default out/eval/{model}_{benchmark}_{mode}).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Generation budget per answer.
    #[arg(long, default_value_t = 512)]
    max_tokens: u32,
    /// Training step of this checkpoint (for the accuracy-over-steps chart).
    #[arg(long)]
    step: Option<u64>,
    /// Bootstrap seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
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
        let bench = Benchmark::from(self.benchmark);
        let mode = match self.mode {
            ModeArg::Gen => "gen",
            ModeArg::Loglik => "loglik",
        };
        let OpenedModel { name: model, chat: backend, scorer, concurrency } = self.model.open()?;
        let items = load_benchmark(bench, &self.data, self.limit)?;
        eprintln!("{}: {} items from {}", bench.name(), items.len(), self.data.display());
        let rt = medforge_llm::client::runtime()?;
        let bars = crate::progress::Bars::new();
        let label = if mode == "gen" { "questions" } else { "options" };
        let progress = |done: u64, total: u64| bars.update(label, done, total, None);
        let results = if mode == "gen" {
            let params = GenParams { max_tokens: Some(self.max_tokens), temperature: Some(0.0), ..Default::default() };
            rt.block_on(run_generation(backend, &items, bench.korean(), params, concurrency, &progress))
        } else {
            rt.block_on(run_loglik(scorer, &items, bench.korean(), concurrency, &progress))
        };
        bars.finish();
        let errors = results.iter().filter(|r| r.outcome == "error").count();
        if errors == results.len() {
            bail!("every request failed; the first error: {}", results[0].detail);
        }
        let run = summarize(&model, bench.name(), mode, results, self.step, self.seed);
        let out = self.out.clone().unwrap_or_else(|| {
            PathBuf::from("out/eval").join(format!("{}_{}_{mode}", safe_name(&model), bench.name()))
        });
        let files = write_run(&out, &run)?;
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
        println!("wrote {} files to {} (open report.html)", files.len(), out.display());
        Ok(())
    }
}

/// Arguments of `medforge report`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    medforge report out/eval/base_medqa_gen out/eval/finetuned_medqa_gen\n  \
    medforge report runs/step100 runs/step200 runs/step300 --out runs/report\n\n\
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
}

impl ReportArgs {
    pub fn run(self) -> Result<()> {
        let runs = self.runs.iter().map(|d| load_run(d)).collect::<std::result::Result<Vec<_>, _>>()?;
        let last = self.runs.last().expect("clap requires one");
        let out = self.out.clone().unwrap_or_else(|| last.parent().unwrap_or(Path::new(".")).join("report"));
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
