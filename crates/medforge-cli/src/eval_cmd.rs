//! `medforge score`, `medforge eval` and `medforge report`: thin argument handling over medforge-eval.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use medforge_engine::source::{ModelSource, OpenedModel};
use medforge_engine::LoadOptions;
use medforge_eval::metrics::bleu::{corpus_bleu, sentence_bleu, BleuConfig, BleuTokenizer};
use medforge_eval::metrics::meteor::Meteor;
use medforge_eval::metrics::rouge::{rouge, RougeConfig, RougeTokenizer};
use medforge_eval::metrics::squad::{squad_scores, SquadScores};
use medforge_eval::report::{load_run, safe_name, summarize, write_report, write_run};
use medforge_eval::runner::{load_benchmark, run_generation, run_loglik, Benchmark};
use medforge_eval::scores::{hierarchy, korean_proficiency, reasoning_format};
use medforge_llm::backend::GenParams;
use serde_json::{json, Value};

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
    /// Comma-separated: bleu, rouge, meteor, em, f1; the seed's hypothesis-only scores format (reasoning
    /// format), hierarchy (depth >= 3, <= 5 items per level) and korean (Hangul ratio, term coverage
    /// with --terms); bertscore (P/R/F1 over a local BERT encoder: --bertscore-model).
    #[arg(long, default_value = "bleu,rouge,meteor,em,f1")]
    metrics: String,
    /// sacrebleu tokenizer: 13a, intl, char or none.
    #[arg(long, default_value = "13a")]
    bleu_tokenize: String,
    /// Porter-stem ROUGE tokens (rouge-score's use_stemmer=True).
    #[arg(long)]
    rouge_stemmer: bool,
    /// ROUGE tokenizer: reference (rouge-score's) or unicode.
    #[arg(long, default_value = "reference")]
    rouge_tokenizer: String,
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

fn read_texts(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let jsonl = path.extension().is_some_and(|e| e == "jsonl");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if !jsonl {
            out.push(line.to_string());
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        let s = match &v {
            Value::String(s) => s.clone(),
            Value::Object(o) => ["text", "hyp", "ref", "prediction", "reference", "answer"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str))
                .ok_or_else(|| anyhow!("{}:{}: no `text` field", path.display(), i + 1))?
                .to_string(),
            _ => bail!("{}:{}: expected a string or an object", path.display(), i + 1),
        };
        out.push(s);
    }
    Ok(out)
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

impl ScoreArgs {
    pub fn run(self) -> Result<()> {
        let (refs, hyps) = if let Some(p) = &self.pairs {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let mut r = Vec::new();
            let mut h = Vec::new();
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line).with_context(|| format!("{}:{}", p.display(), i + 1))?;
                r.push(v["ref"].as_str().ok_or_else(|| anyhow!("{}:{}: no `ref`", p.display(), i + 1))?.to_string());
                h.push(v["hyp"].as_str().ok_or_else(|| anyhow!("{}:{}: no `hyp`", p.display(), i + 1))?.to_string());
            }
            (r, h)
        } else {
            let refs = read_texts(self.refs.as_deref().expect("clap requires refs"))?;
            let hyps = read_texts(self.hyps.as_deref().expect("clap requires hyps"))?;
            (refs, hyps)
        };
        if refs.len() != hyps.len() {
            bail!("{} references but {} hypotheses: they pair up line by line", refs.len(), hyps.len());
        }
        let metrics: Vec<String> =
            self.metrics.split(',').map(|m| m.trim().to_ascii_lowercase()).filter(|m| !m.is_empty()).collect();
        for m in &metrics {
            match m.as_str() {
                "bleu" | "rouge" | "meteor" | "em" | "f1" | "format" | "hierarchy" | "korean" | "bertscore" => {}
                other => {
                    bail!("unknown metric `{other}`: use bleu, rouge, meteor, em, f1, format, hierarchy, korean, bertscore")
                }
            }
        }
        let has = |m: &str| metrics.iter().any(|x| x == m);
        let tok = BleuTokenizer::parse(&self.bleu_tokenize)
            .ok_or_else(|| anyhow!("--bleu-tokenize must be 13a, intl, char or none, not `{}`", self.bleu_tokenize))?;
        let rcfg = RougeConfig {
            stemmer: self.rouge_stemmer,
            tokenizer: match self.rouge_tokenizer.as_str() {
                "reference" => RougeTokenizer::Reference,
                "unicode" => RougeTokenizer::Unicode,
                o => bail!("--rouge-tokenizer must be reference or unicode, not `{o}`"),
            },
        };
        let bert = if has("bertscore") {
            let dir = self
                .bertscore_model
                .clone()
                .or_else(|| std::env::var_os("MEDFORGE_BERTSCORE_MODEL").map(PathBuf::from))
                .ok_or_else(|| {
                    anyhow!(
                        "bertscore needs an encoder: --bertscore-model DIR (a Hugging Face BERT folder with \
                         config.json, model.safetensors, tokenizer.json) or $MEDFORGE_BERTSCORE_MODEL"
                    )
                })?;
            let mut s = medforge_eval::bertscore::BertScorer::load(&dir, self.bertscore_layer)
                .with_context(|| format!("loading the BERTScore encoder {}", dir.display()))?;
            s.batch_size = self.bertscore_batch.max(1);
            Some(s)
        } else {
            None
        };
        let meteor = if has("meteor") { Some(Meteor::find(self.wordnet.as_deref())) } else { None };
        let n = refs.len();
        let mut summary = serde_json::Map::new();
        summary.insert("pairs".into(), json!(n));
        let mut per: Vec<serde_json::Map<String, Value>> = vec![serde_json::Map::new(); n];
        if has("bleu") {
            let rr: Vec<Vec<&str>> = refs.iter().map(|r| vec![r.as_str()]).collect();
            let c = corpus_bleu(&BleuConfig::default().with_tokenizer(tok), &hyps, &rr);
            summary.insert("bleu".into(), json!(c.score));
            summary.insert("bleu_tokenize".into(), json!(tok.name()));
            for k in 1..=4 {
                let ck = corpus_bleu(&BleuConfig::default().with_tokenizer(tok).with_max_order(k), &hyps, &rr);
                summary.insert(format!("bleu{k}"), json!(ck.score));
            }
            let sc = BleuConfig::sentence().with_tokenizer(tok);
            let s: Vec<f64> = (0..n).map(|i| sentence_bleu(&sc, &hyps[i], &[&refs[i]]).score).collect();
            for (p, v) in per.iter_mut().zip(&s) {
                p.insert("bleu".into(), json!(v));
            }
            summary.insert("sentence_bleu_mean".into(), json!(mean(&s)));
        }
        if has("rouge") {
            let rs: Vec<_> = (0..n).map(|i| rouge(&rcfg, &refs[i], &hyps[i])).collect();
            for (k, get) in [
                ("rouge1", (|s: &medforge_eval::metrics::rouge::RougeScores| s.rouge1.fmeasure) as fn(&_) -> f64),
                ("rouge2", |s| s.rouge2.fmeasure),
                ("rougeL", |s| s.rouge_l.fmeasure),
                ("rougeLsum", |s| s.rouge_lsum.fmeasure),
            ] {
                let v: Vec<f64> = rs.iter().map(get).collect();
                for (p, x) in per.iter_mut().zip(&v) {
                    p.insert(k.into(), json!(x));
                }
                summary.insert(k.into(), json!(mean(&v)));
            }
        }
        if let Some(m) = &meteor {
            let v: Vec<f64> = (0..n).map(|i| m.score(&[&refs[i]], &hyps[i])).collect();
            for (p, x) in per.iter_mut().zip(&v) {
                p.insert("meteor".into(), json!(x));
            }
            summary.insert("meteor".into(), json!(mean(&v)));
            summary.insert("meteor_wordnet".into(), json!(m.wordnet.is_some()));
        }
        if has("em") || has("f1") {
            let s: Vec<SquadScores> = (0..n).map(|i| squad_scores(&hyps[i], &refs[i])).collect();
            let em: Vec<f64> = s.iter().map(|x| x.exact_match).collect();
            let f1: Vec<f64> = s.iter().map(|x| x.f1).collect();
            for (name, v) in [("em", em), ("f1", f1)] {
                if has(name) {
                    for (p, x) in per.iter_mut().zip(&v) {
                        p.insert(name.into(), json!(x));
                    }
                    summary.insert(name.into(), json!(mean(&v)));
                }
            }
        }
        if let Some(b) = &bert {
            let v = b.score(&refs, &hyps, self.bertscore_idf)?;
            for (p, x) in per.iter_mut().zip(&v) {
                p.insert("bertscore_p".into(), json!(x.p));
                p.insert("bertscore_r".into(), json!(x.r));
                p.insert("bertscore_f1".into(), json!(x.f));
            }
            summary.insert("bertscore_p".into(), json!(mean(&v.iter().map(|x| x.p).collect::<Vec<_>>())));
            summary.insert("bertscore_r".into(), json!(mean(&v.iter().map(|x| x.r).collect::<Vec<_>>())));
            summary.insert("bertscore_f1".into(), json!(mean(&v.iter().map(|x| x.f).collect::<Vec<_>>())));
            summary.insert("bertscore_layer".into(), json!(b.layers()));
            summary.insert("bertscore_idf".into(), json!(self.bertscore_idf));
        }
        if has("format") {
            let v: Vec<f64> = hyps.iter().map(|h| reasoning_format(h, self.options).score).collect();
            for (p, x) in per.iter_mut().zip(&v) {
                p.insert("format".into(), json!(x));
            }
            summary.insert("format".into(), json!(mean(&v)));
        }
        if has("hierarchy") {
            let v: Vec<_> = hyps.iter().map(|h| hierarchy(h)).collect();
            for (p, x) in per.iter_mut().zip(&v) {
                p.insert("hierarchy".into(), json!(x.score));
                p.insert("hierarchy_compliant".into(), json!(x.compliant));
            }
            summary.insert("hierarchy".into(), json!(mean(&v.iter().map(|x| x.score).collect::<Vec<_>>())));
            summary.insert(
                "hierarchy_compliant_share".into(),
                json!(v.iter().filter(|x| x.compliant).count() as f64 / n.max(1) as f64),
            );
        }
        if has("korean") {
            let terms = match &self.terms {
                Some(t) => Some(
                    medforge_text::lang::TermList::from_file(t).with_context(|| format!("reading {}", t.display()))?,
                ),
                None => None,
            };
            let v: Vec<_> = hyps.iter().map(|h| korean_proficiency(h, terms.as_ref())).collect();
            for (p, x) in per.iter_mut().zip(&v) {
                p.insert("hangul_ratio".into(), json!(x.hangul_ratio));
                if let Some(c) = x.term_coverage {
                    p.insert("term_coverage".into(), json!(c));
                }
            }
            summary.insert("hangul_ratio".into(), json!(mean(&v.iter().map(|x| x.hangul_ratio).collect::<Vec<_>>())));
            if terms.is_some() {
                let c: Vec<f64> = v.iter().filter_map(|x| x.term_coverage).collect();
                summary.insert("term_coverage".into(), json!(mean(&c)));
            }
        }
        if let Some(p) = &self.per_pair {
            let mut buf = Vec::new();
            for row in per {
                serde_json::to_writer(&mut buf, &row)?;
                buf.push(b'\n');
            }
            medforge_data::write::write_atomic(p, &buf)?;
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&summary)?);
        } else {
            println!("{n} pairs");
            for (k, v) in &summary {
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
    /// medqa, medmcqa, pubmedqa, mmlu-medical or kormedmcqa.
    #[arg(long)]
    benchmark: String,
    /// The benchmark file or folder (read with the benchmark's data preset).
    #[arg(long)]
    data: PathBuf,
    /// gen (generate and extract the letter) or loglik (rank the options by log-likelihood).
    #[arg(long, default_value = "gen")]
    mode: String,
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
        let bench = Benchmark::parse(&self.benchmark).ok_or_else(|| {
            anyhow!("unknown benchmark `{}`: use medqa, medmcqa, pubmedqa, mmlu-medical or kormedmcqa", self.benchmark)
        })?;
        if !matches!(self.mode.as_str(), "gen" | "loglik") {
            bail!("--mode must be gen or loglik, not `{}`", self.mode);
        }
        let OpenedModel { name: model, chat: backend, scorer, concurrency } = self.model.open()?;
        let items = load_benchmark(bench, &self.data, self.limit)?;
        eprintln!("{}: {} items from {}", bench.name(), items.len(), self.data.display());
        let rt = medforge_llm::client::runtime()?;
        let bars = crate::progress::Bars::new();
        let label = if self.mode == "gen" { "questions" } else { "options" };
        let progress = |done: u64, total: u64| bars.update(label, done, total, None);
        let results = if self.mode == "gen" {
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
        let run = summarize(&model, bench.name(), &self.mode, results, self.step, self.seed);
        let out = self.out.clone().unwrap_or_else(|| {
            PathBuf::from("out/eval").join(format!("{}_{}_{}", safe_name(&model), bench.name(), self.mode))
        });
        let files = write_run(&out, &run)?;
        let a = run.summary.accuracy;
        println!(
            "{model} on {} ({}): accuracy {:.1}% (95% CI {:.1}–{:.1}%), {}/{} correct, {} unparseable, {} errors",
            bench.name(),
            self.mode,
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
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let mut csv = String::from("id,training_type,tokens,nll,perplexity,error\n");
        for r in &report.rows {
            let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            csv.push_str(&format!(
                "{},{},{},{:.6},{:.6},{}\n",
                q(&r.id),
                q(&r.group),
                r.tokens,
                r.nll,
                r.perplexity,
                q(r.error.as_deref().unwrap_or(""))
            ));
        }
        medforge_data::write::write_atomic(&out.join("perplexity_rows.csv"), csv.as_bytes())?;
        let summary = json!({"model": report.model, "data": self.data.display().to_string(),
            "groups": report.groups, "overall": report.overall, "errors": report.errors});
        medforge_data::write::write_atomic(&out.join("perplexity.json"), &serde_json::to_vec_pretty(&summary)?)?;
        println!("{:<18} {:>6} {:>8} {:>11} {:>8}  target", "training_type", "rows", "tokens", "perplexity", "");
        let mut missed = Vec::new();
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
            if g.meets_target == Some(false) {
                missed.push(name.clone());
            }
        }
        line("all", &report.overall);
        if report.overall.meets_target == Some(false) {
            missed.push("all".into());
        }
        for t in targets.keys() {
            if t != "all" && !report.groups.contains_key(t) {
                eprintln!("warning: --target {t}: no rows of that training type in {}", self.data.display());
            }
        }
        if report.errors > 0 {
            eprintln!("{} rows could not be scored (see perplexity_rows.csv)", report.errors);
        }
        println!("wrote perplexity.json and perplexity_rows.csv to {}", out.display());
        if !missed.is_empty() {
            eprintln!("perplexity targets not met: {}", missed.join(", "));
            std::process::exit(3);
        }
        Ok(())
    }
}
