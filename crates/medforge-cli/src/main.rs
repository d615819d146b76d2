//! The `medforge` command line. It parses arguments into each command's `Args` and calls its `run`, which calls the
//! libraries; nothing else lives here.

mod curate_cmd;
mod data_cmd;
mod eval_cmd;
mod output;
mod progress;
mod serve_cmd;
mod train_cmd;

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
    /// Evaluate a model: MCQ accuracy (generation or log-likelihood) or open-ended answers against references.
    Eval(Box<eval_cmd::EvalArgs>),
    /// Perplexity of a formatted training set per training type, against optional targets.
    Perplexity(eval_cmd::PerplexityArgs),
    /// Compare eval runs: comparison/specialty CSVs, failed questions, recommendations, charts, HTML.
    Report(eval_cmd::ReportArgs),
    /// Show a dataset's schema, row count, null/empty ratios, label distributions and 3 sample rows.
    Inspect(data_cmd::InspectArgs),
    /// Convert a dataset into medforge records: JSONL, Parquet, or a Hugging Face dataset folder.
    Convert(data_cmd::ConvertArgs),
    /// List the built-in dataset presets, or print one as TOML to copy into a config.
    Presets(data_cmd::PresetsArgs),
    /// Run a pipeline config: ingest every input, run its [[stages]] in order, and write
    /// filtered.parquet (every row with its annotations), curated.* (the kept rows), reports and
    /// manifest.json into a new run folder `<run.output>/<version>_<timestamp>/`.
    Run(curate_cmd::RunArgs),
    /// Run a config's curation stages, all or one (`--only dedup`), into a new run folder.
    Curate(curate_cmd::CurateArgs),
    /// Re-run only the rows a run's LLM stages dead-lettered (its failed.jsonl), into a new run folder.
    RetryFailed(curate_cmd::RetryFailedArgs),
    /// OpenAI Batch API files: export a config's LLM requests, import the answers into the cache.
    Batch(curate_cmd::BatchArgs),
    /// Drop training rows that overlap benchmark test sets, and report what matched.
    Decontam(curate_cmd::DecontamArgs),
    /// Check a formatted training set: balanced reasoning markers, answer letters within the options,
    /// no markers in non-reasoning types, EOS at the end of every completion, a template that round-trips.
    Verify(curate_cmd::VerifyArgs),
    /// Specialty/division taxonomy tools.
    Divisions(curate_cmd::DivisionsArgs),
    /// Train/eval/holdout/pool splits.
    Split(curate_cmd::SplitArgs),
    /// Serve a local model (GGUF or HF folder) with an OpenAI-compatible API.
    Serve(serve_cmd::ServeArgs),
    /// Local model tools: inspect, export-hf (GGUF to a Hugging Face folder), merge (bake an adapter in).
    Model(serve_cmd::ModelArgs),
    /// Train on the local engine: LoRA SFT, full fine-tuning or DPO, from a [train] config section.
    Train(Box<train_cmd::TrainArgs>),
}

/// The error and its causes, each once (a cause whose text its parent already quotes is not repeated).
fn describe(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

/// Training allocates and frees activation buffers of tens of megabytes in every layer of every step. glibc serves
/// such sizes with mmap and returns them on free, so every step paid page faults, kernel page zeroing (20% of a
/// training step's time, measured with perf) and TLB shootdowns across threads. Serving them from the heap and never
/// trimming it keeps the pages for reuse.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Score(a) => a.run(),
        Command::Eval(a) => (*a).run(),
        Command::Perplexity(a) => a.run(),
        Command::Report(a) => a.run(),
        Command::Inspect(a) => a.run(),
        Command::Convert(a) => a.run(),
        Command::Presets(a) => a.run(),
        Command::Run(a) => a.run(),
        Command::Curate(a) => a.run(),
        Command::RetryFailed(a) => a.run(),
        Command::Batch(a) => a.run(),
        Command::Decontam(a) => a.run(),
        Command::Verify(a) => a.run(),
        Command::Divisions(a) => a.run(),
        Command::Split(a) => a.run(),
        Command::Serve(a) => a.run(),
        Command::Model(a) => a.run(),
        Command::Train(a) => a.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            // A missed target is a result, not a failure: loop drivers and CI tell the two apart by the status.
            if e.downcast_ref::<medforge_eval::perplexity::TargetsMissed>().is_some() {
                ExitCode::from(3)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
