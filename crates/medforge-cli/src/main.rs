//! The `medforge` command line. It parses arguments and calls the library; nothing else lives here.

mod commands;
mod eval_cmd;
mod progress;
mod serve_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// medforge: medical QA datasets to curated training sets, fine-tuned models and evaluation reports.
#[derive(Parser)]
#[command(name = "medforge", version, about, long_about = None, propagate_version = true)]
#[command(after_help = "Start with `medforge presets` to see the datasets medforge reads out of the box,\n\
then `medforge inspect FILE` to look inside one.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score hypotheses against references: BLEU, ROUGE, METEOR, EM, F1 (reference-exact).
    Score(eval_cmd::ScoreArgs),
    /// Evaluate a model on an MCQ benchmark (generation or log-likelihood) and write the reports.
    Eval(eval_cmd::EvalArgs),
    /// Perplexity of a formatted training set per training type, against optional targets.
    Perplexity(eval_cmd::PerplexityArgs),
    /// Compare eval runs: comparison/specialty CSVs, failed questions, recommendations, charts, HTML.
    Report(eval_cmd::ReportArgs),
    /// Show a dataset's schema, row count, null/empty ratios, label distributions and 3 sample rows.
    #[command(after_help = "Examples:\n  \
        medforge inspect data/medqa/US/4_options/dev.jsonl\n  \
        medforge inspect data/kormedmcqa/doctor/train.csv --preset kormedmcqa\n  \
        medforge inspect data/medquad --json > medquad_stats.json\n\n\
        Without --preset, the preset is guessed from the first row; if none fits, the file is shown raw.")]
    Inspect {
        /// File or folder to inspect.
        path: PathBuf,
        /// Dataset preset (see `medforge presets`).
        #[arg(long)]
        preset: Option<String>,
        /// Input format, when the extension does not tell: jsonl, json, csv, tsv, parquet, hf_dataset, medquad_xml.
        #[arg(long)]
        format: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Convert a dataset into medforge records: JSONL, Parquet, or a Hugging Face dataset folder.
    #[command(after_help = "Examples:\n  \
        medforge convert data/medqa/US/4_options/dev.jsonl medqa_dev.parquet\n  \
        medforge convert data/pubmedqa/ori_pqal.json pubmedqa_hf --format hf\n  \
        medforge convert data/kormedmcqa/doctor/train.csv kor.jsonl --on-error skip\n\n\
        The output format follows OUT's extension (.jsonl, .parquet; anything else is an HF folder)\n\
        unless --format says otherwise. Output is written atomically: a failed run leaves no partial file.\n\
        With --on-error skip, malformed rows go to OUT.rejects.jsonl with their location and reason.")]
    Convert {
        /// Input file or folder.
        input: PathBuf,
        /// Output path.
        output: PathBuf,
        /// Dataset preset (guessed when omitted).
        #[arg(long)]
        preset: Option<String>,
        /// Output format: jsonl, parquet or hf.
        #[arg(long)]
        format: Option<String>,
        /// Input format, when the extension does not tell.
        #[arg(long)]
        input_format: Option<String>,
        /// What to do with a malformed row: fail (stop, naming it) or skip (log it and go on).
        #[arg(long, default_value = "fail", value_parser = ["fail", "skip"])]
        on_error: String,
        /// Where skipped rows are logged (default: OUT.rejects.jsonl).
        #[arg(long)]
        rejects: Option<PathBuf>,
        /// Read at most N rows.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// List the built-in dataset presets, or print one as TOML to copy into a config.
    #[command(after_help = "Examples:\n  medforge presets\n  medforge presets --show kormedmcqa")]
    Presets {
        /// Print this preset's TOML.
        #[arg(long)]
        show: Option<String>,
    },
    /// Run a pipeline config: ingest every input, run its [[stages]] in order, and write
    /// filtered.parquet (every row with its annotations), curated.* (the kept rows), reports and
    /// manifest.json into a new run folder `<run.output>/<version>_<timestamp>/`.
    #[command(after_help = "Examples:\n  medforge run --config examples/demo.toml\n  \
        medforge run --config examples/llm_demo.toml --dry-run    # tokens and $ before any call\n  \
        medforge run --config examples/llm_demo.toml --refresh    # ignore cached LLM answers\n\n\
        A minimal config:\n\n  \
        [run]\n  output = \"runs\"\n  seed = 42\n  on_error = \"skip\"     # or \"fail\"\n\n  \
        [[inputs]]\n  path = \"data/medqa/US/4_options/dev.jsonl\"\n  preset = \"medqa\"\n\n  \
        [output]\n  formats = [\"parquet\", \"jsonl\", \"hf\"]")]
    Run {
        /// Pipeline config (TOML).
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        llm: LlmFlags,
    },
    /// Run a config's curation stages, all or one (`--only dedup`), into a new run folder.
    #[command(after_help = "Examples:\n  \
        medforge curate --config examples/curate.toml\n  \
        medforge curate --config examples/curate.toml --only decontam\n\n\
        Stages: quality, normalize, dedup, decontam, tokens, language (and, when configured, labels,\n\
        sample, split, format), and the LLM stages label, difficulty, rewrite, dpo_pairs, generate\n\
        (see --dry-run, --no-cache, --refresh). Every dropped row keeps a reason code such as\n\
        `quality.missing_field:answer`, `dedup.near:cluster=17` or `decontam.ngram13:medqa_test#311`.")]
    Curate {
        /// Pipeline config (TOML) with [[stages]].
        #[arg(long, short)]
        config: PathBuf,
        /// Run only this stage (on the config's inputs, e.g. a previous curated.parquet).
        #[arg(long)]
        only: Option<String>,
        #[command(flatten)]
        llm: LlmFlags,
    },
    /// Re-run only the rows a run's LLM stages dead-lettered (its failed.jsonl), into a new run folder.
    #[command(after_help = "Example:\n  medforge retry-failed out/llm_demo/0.1.0_20261122T010000Z\n\n\
        Reads RUN_DIR/failed.jsonl and RUN_DIR/manifest.json (the config it ran, or --config), and runs\n\
        that config on just those row ids. Every other answer the stages need comes from the cache, so\n\
        only the failed calls are made again.")]
    RetryFailed {
        /// A run folder with failed.jsonl.
        run_dir: PathBuf,
        /// The config to run (default: the one recorded in the run's manifest).
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        llm: LlmFlags,
    },
    /// OpenAI Batch API files: export a config's LLM requests, import the answers into the cache.
    Batch {
        #[command(subcommand)]
        command: BatchCommand,
    },
    /// Drop training rows that overlap benchmark test sets, and report what matched.
    #[command(after_help = "Examples:\n  \
        medforge decontam --train train.jsonl --against ../shared/data/medqa/US/4_options/test.jsonl --out clean.jsonl\n  \
        medforge decontam --train train.parquet --data-root ../shared/data --out clean.parquet\n\n\
        Matches are exact (normalised question) or shared n-grams: 13 words, or 50 characters for Korean.\n\
        The report (OUT.decontamination_report.json) names the benchmark item and the overlapping span.")]
    Decontam {
        /// Training data (any format; preset guessed unless --preset).
        #[arg(long)]
        train: PathBuf,
        #[arg(long)]
        preset: Option<String>,
        /// A benchmark file or folder (repeatable; preset guessed). Without it, the default test sets
        /// under --data-root are used.
        #[arg(long)]
        against: Vec<PathBuf>,
        /// Folder laid out like the shared data (medqa/, medmcqa/, pubmedqa/, mmlu_medical/, kormedmcqa/).
        #[arg(long)]
        data_root: Option<PathBuf>,
        /// Where the kept rows go (format from the extension).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a formatted training set: balanced reasoning markers, answer letters within the options,
    /// no markers in non-reasoning types, EOS at the end of every completion, a template that round-trips.
    #[command(after_help = "Example:\n  medforge verify runs/0.1.0_20261122T010000Z/formatted\n\n\
        Exits non-zero when any check fails, printing counts per error with examples.")]
    Verify {
        /// A `formatted/` folder (train.jsonl + format.json).
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Specialty/division taxonomy tools.
    Divisions {
        #[command(subcommand)]
        command: DivisionsCommand,
    },
    /// Train/eval/holdout/pool splits.
    Split {
        #[command(subcommand)]
        command: SplitCommand,
    },
    /// Serve a local model (GGUF or HF folder) with an OpenAI-compatible API.
    Serve(serve_cmd::ServeArgs),
    /// Local model tools.
    Model {
        #[command(subcommand)]
        command: serve_cmd::ModelCommand,
    },
}

/// LLM flags of `run`, `curate` and `retry-failed`.
#[derive(clap::Args, Clone, Copy)]
struct LlmFlags {
    /// Estimate the LLM calls (requests not already cached, tokens, $) and make none; no outputs.
    #[arg(long)]
    dry_run: bool,
    /// Neither read nor write the LLM response cache.
    #[arg(long, conflicts_with = "refresh")]
    no_cache: bool,
    /// Ignore cached LLM answers and store the new ones.
    #[arg(long)]
    refresh: bool,
}

#[derive(Subcommand)]
enum BatchCommand {
    /// Write the LLM requests a run would make (not already cached) as OpenAI Batch API JSONL.
    #[command(after_help = "Examples:\n  \
        medforge batch export --config examples/llm_demo.toml --out requests.jsonl\n  \
        medforge batch export --config examples/llm_demo.toml --only label --out label.jsonl\n\n\
        One line per request: {\"custom_id\": \"<stage>:<row id>:<cache key>\", \"method\": \"POST\",\n\
        \"url\": \"/v1/chat/completions\", \"body\": {...}}, the format of the OpenAI Batch API and of\n\
        vLLM's run_batch. The Batch API wants one model per file: with several backends, one file per\n\
        backend is written (OUT with `.<backend>` before the extension). Requests that depend on answers\n\
        not yet known (the difficulty judge, rewrite retries, later stages of a row still waiting on an\n\
        earlier one) are left for the next round: import the results, then export again until nothing\n\
        is left.")]
    Export {
        #[arg(long, short)]
        config: PathBuf,
        /// Only this stage's requests.
        #[arg(long)]
        only: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Read Batch API result JSONL into the LLM cache, so the next run makes no call for those rows.
    #[command(after_help = "Examples:\n  \
        medforge batch import --config examples/llm_demo.toml results.jsonl\n  \
        medforge run --config examples/llm_demo.toml      # answered rows now come from the cache\n\n\
        Lines are matched to requests by custom_id; failed lines are counted by error code and those\n\
        rows are simply asked live on the next run.")]
    Import {
        #[arg(long, short)]
        config: PathBuf,
        /// Result files from the Batch API (or vLLM run_batch).
        #[arg(required = true)]
        results: Vec<PathBuf>,
    },
}

impl LlmFlags {
    fn options(self) -> commands::LlmArgs {
        commands::LlmArgs { dry_run: self.dry_run, no_cache: self.no_cache, refresh: self.refresh }
    }
}

#[derive(Subcommand)]
enum DivisionsCommand {
    /// Write one folder per division (train.jsonl, validation.jsonl, metadata.json) and division_index.json.
    #[command(after_help = "Example:\n  medforge divisions organize --input runs/X/curated.parquet \\\n    \
        --taxonomy fixtures/specialty_taxonomy/med_division.json --out divisions --min-samples 20\n\n\
        Labels are validated and auto-fixed first (invalid ids removed, names and numbers mapped to ids,\n\
        empty lists become UNKNOWN), and the distribution is printed with names and percentages.")]
    Organize {
        /// Records (any format medforge reads; preset guessed).
        #[arg(long)]
        input: PathBuf,
        /// Taxonomy tree (med_division.json layout) or flat list.
        #[arg(long)]
        taxonomy: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Divisions with fewer records are skipped (listed in the index).
        #[arg(long, default_value_t = 1)]
        min_samples: usize,
        /// Share of each division written to validation.jsonl.
        #[arg(long, default_value_t = 0.1)]
        validation_fraction: f64,
        /// Taxonomy level of the folders (1 = top-level divisions).
        #[arg(long, default_value_t = 1)]
        level: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum SplitCommand {
    /// Move rows from the pool into train for the specialties an evaluation flagged, keeping holdout and
    /// eval byte-identical.
    #[command(after_help = "Example:\n  medforge split update --splits runs/X/splits \\\n    \
        --recommendations reports/training_recommendations.json\n\n\
        Reads split_plan.json and the split files in --splits, and rewrites train, pool, the stats and\n\
        the plan there (or in --out).")]
    Update {
        /// A `splits/` folder written by the split stage.
        #[arg(long)]
        splits: PathBuf,
        /// training_recommendations.json from `medforge eval`.
        #[arg(long)]
        recommendations: PathBuf,
        /// Write the updated splits here instead of in place.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Score(a) => a.run(),
        Command::Eval(a) => a.run(),
        Command::Perplexity(a) => a.run(),
        Command::Report(a) => a.run(),
        Command::Inspect { path, preset, format, json } => {
            commands::inspect(&path, preset.as_deref(), format.as_deref(), json)
        }
        Command::Convert { input, output, preset, format, input_format, on_error, rejects, limit } => {
            commands::convert(commands::ConvertArgs {
                input,
                output,
                preset,
                format,
                input_format,
                skip: on_error == "skip",
                rejects,
                limit,
            })
        }
        Command::Presets { show } => commands::presets(show.as_deref()),
        Command::Run { config, llm } => commands::curate(&config, None, llm.options()),
        Command::Curate { config, only, llm } => commands::curate(&config, only.as_deref(), llm.options()),
        Command::RetryFailed { run_dir, config, llm } => {
            commands::retry_failed(&run_dir, config.as_deref(), llm.options())
        }
        Command::Batch { command: BatchCommand::Export { config, only, out } } => {
            commands::batch_export(&config, only.as_deref(), &out)
        }
        Command::Batch { command: BatchCommand::Import { config, results } } => {
            commands::batch_import(&config, &results)
        }
        Command::Decontam { train, preset, against, data_root, out } => {
            commands::decontam(&train, preset, &against, data_root, &out)
        }
        Command::Verify { dir, json } => commands::verify(&dir, json),
        Command::Divisions {
            command: DivisionsCommand::Organize { input, taxonomy, out, min_samples, validation_fraction, level, seed },
        } => commands::divisions_organize(&input, &taxonomy, &out, min_samples, validation_fraction, level, seed),
        Command::Split { command: SplitCommand::Update { splits, recommendations, out } } => {
            commands::split_update(&splits, &recommendations, out.as_deref())
        }
        Command::Serve(args) => serve_cmd::serve(args),
        Command::Model { command } => serve_cmd::model(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
