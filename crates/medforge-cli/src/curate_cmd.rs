//! The curation commands: `run`, `curate`, `retry-failed`, `batch`, `decontam`, `verify`, `divisions` and `split`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use medforge_curate::runner::{self, RunOptions};
use medforge_curate::stages::llm::{CustomId, LlmMode, LlmOptions};
use medforge_curate::CurateConfig;
use medforge_data::config::OnError;
use medforge_data::manifest::Manifest;
use medforge_data::preset;
use medforge_llm::{CacheMode, Spend, SpendSnapshot};

use crate::output::{emit, outln};
use crate::progress;

/// LLM flags of `run`, `curate` and `retry-failed`.
#[derive(clap::Args, Clone, Copy)]
pub struct LlmFlags {
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

impl LlmFlags {
    fn options(self, spend: Arc<Spend>) -> LlmOptions {
        LlmOptions {
            mode: if self.dry_run { LlmMode::DryRun } else { LlmMode::Live },
            cache_mode: if self.no_cache {
                Some(CacheMode::Off)
            } else if self.refresh {
                Some(CacheMode::Refresh)
            } else {
                None
            },
            spend: Some(spend),
        }
    }
}

/// Arguments of `medforge run`.
#[derive(Args)]
#[command(after_help = "Examples:\n  medforge run --config examples/demo.toml\n  \
    medforge run --config examples/llm_demo.toml --dry-run    # tokens and $ before any call\n  \
    medforge run --config examples/llm_demo.toml --refresh    # ignore cached LLM answers\n\n\
    A minimal config:\n\n  \
    [run]\n  output = \"runs\"\n  seed = 42\n  on_error = \"skip\"     # or \"fail\"\n\n  \
    [[inputs]]\n  path = \"data/medqa/US/4_options/dev.jsonl\"\n  preset = \"medqa\"\n\n  \
    [output]\n  formats = [\"parquet\", \"jsonl\", \"hf\"]")]
pub struct RunArgs {
    /// Pipeline config (TOML).
    #[arg(long, short)]
    config: PathBuf,
    #[command(flatten)]
    llm: LlmFlags,
}

impl RunArgs {
    pub fn run(self) -> Result<()> {
        curate(&self.config, None, self.llm)
    }
}

/// Arguments of `medforge curate`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    medforge curate --config examples/curate.toml\n  \
    medforge curate --config examples/curate.toml --only decontam\n\n\
    Stages: quality, normalize, dedup, decontam, tokens, language (and, when configured, labels,\n\
    sample, split, format), and the LLM stages label, difficulty, rewrite, dpo_pairs, generate\n\
    (see --dry-run, --no-cache, --refresh). Every dropped row keeps a reason code such as\n\
    `quality.missing_field:answer`, `dedup.near:cluster=17` or `decontam.ngram13:medqa_test#311`.")]
pub struct CurateArgs {
    /// Pipeline config (TOML) with [[stages]].
    #[arg(long, short)]
    config: PathBuf,
    /// Run only this stage (on the config's inputs, e.g. a previous curated.parquet).
    #[arg(long)]
    only: Option<String>,
    #[command(flatten)]
    llm: LlmFlags,
}

impl CurateArgs {
    pub fn run(self) -> Result<()> {
        curate(&self.config, self.only.as_deref(), self.llm)
    }
}

fn curate(config_path: &Path, only: Option<&str>, llm: LlmFlags) -> Result<()> {
    let cfg = CurateConfig::load(config_path)?;
    let opts = RunOptions { llm: llm.options(Arc::new(Spend::new())), only_ids: None };
    run_config(&cfg, config_path, only, opts)
}

/// Arguments of `medforge retry-failed`.
#[derive(Args)]
#[command(after_help = "Example:\n  medforge retry-failed out/llm_demo/0.1.0_20261122T010000Z\n\n\
    Reads RUN_DIR/failed.jsonl and RUN_DIR/manifest.json (the config it ran, or --config), and runs\n\
    that config on just those row ids. Every other answer the stages need comes from the cache, so\n\
    only the failed calls are made again.")]
pub struct RetryFailedArgs {
    /// A run folder with failed.jsonl.
    run_dir: PathBuf,
    /// The config to run (default: the one recorded in the run's manifest).
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(flatten)]
    llm: LlmFlags,
}

impl RetryFailedArgs {
    pub fn run(self) -> Result<()> {
        retry_failed(&self.run_dir, self.config.as_deref(), self.llm)
    }
}

/// Arguments of `medforge batch`.
#[derive(Args)]
pub struct BatchArgs {
    #[command(subcommand)]
    command: BatchCommand,
}

impl BatchArgs {
    pub fn run(self) -> Result<()> {
        match self.command {
            BatchCommand::Export { config, only, out } => batch_export(&config, only.as_deref(), &out),
            BatchCommand::Import { config, results } => batch_import(&config, &results),
        }
    }
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

/// Arguments of `medforge decontam`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    medforge decontam --train train.jsonl --against ../shared/data/medqa/US/4_options/test.jsonl --out clean.jsonl\n  \
    medforge decontam --train train.parquet --data-root ../shared/data --out clean.parquet\n\n\
    Matches are exact (normalised question) or shared n-grams: 13 words, or 50 characters for Korean.\n\
    The report (OUT.decontamination_report.json) names the benchmark item and the overlapping span.")]
pub struct DecontamArgs {
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
}

impl DecontamArgs {
    pub fn run(self) -> Result<()> {
        let outcome = medforge_curate::stages::decontam::decontaminate_files(
            &self.train,
            self.preset.as_deref(),
            &self.against,
            self.data_root,
            &self.out,
        )?;
        eprintln!(
            "{} rows checked against {} benchmark items: {} dropped, {} kept -> {}",
            outcome.rows,
            outcome.benchmark_items,
            outcome.dropped,
            outcome.rows - outcome.dropped,
            self.out.display()
        );
        eprintln!("report: {}", outcome.report.display());
        Ok(())
    }
}

/// Arguments of `medforge verify`.
#[derive(Args)]
#[command(after_help = "Example:\n  medforge verify runs/0.1.0_20261122T010000Z/formatted\n\n\
    Exits non-zero when any check fails, printing counts per error with examples.")]
pub struct VerifyArgs {
    /// A `formatted/` folder (format.json and each split's JSONL).
    dir: PathBuf,
    #[arg(long)]
    json: bool,
}

impl VerifyArgs {
    pub fn run(self) -> Result<()> {
        verify(&self.dir, self.json)
    }
}

/// Arguments of `medforge divisions`.
#[derive(Args)]
pub struct DivisionsArgs {
    #[command(subcommand)]
    command: DivisionsCommand,
}

impl DivisionsArgs {
    pub fn run(self) -> Result<()> {
        let DivisionsCommand::Organize { input, taxonomy, out, min_samples, validation_fraction, level, seed } =
            self.command;
        divisions_organize(&input, &taxonomy, &out, min_samples, validation_fraction, level, seed)
    }
}

/// Arguments of `medforge split`.
#[derive(Args)]
pub struct SplitArgs {
    #[command(subcommand)]
    command: SplitCommand,
}

impl SplitArgs {
    pub fn run(self) -> Result<()> {
        let SplitCommand::Update { splits, recommendations, out } = self.command;
        split_update(&splits, &recommendations, out.as_deref())
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

fn spend_line(s: &SpendSnapshot) -> String {
    format!(
        "${:.4} | {} calls, {} cached, {} retries, {} failed | {} in / {} out tokens",
        s.usd,
        s.calls,
        s.cache_hits,
        s.retries,
        s.failed + s.skipped,
        s.prompt_tokens,
        s.completion_tokens
    )
}

/// Run a config with progress bars (with live LLM spend) and print the summary.
fn run_config(cfg: &CurateConfig, config_path: &Path, only: Option<&str>, opts: RunOptions) -> Result<()> {
    let spend = opts.llm.spend.clone().unwrap_or_default();
    let uses_llm = cfg.uses_llm(only);
    let bars = progress::Bars::new();
    let out = runner::run_with(cfg, config_path, only, &opts, &|label, done, total| {
        let msg = uses_llm.then(|| spend_line(&spend.snapshot()));
        bars.update(label, done, total, msg)
    });
    bars.finish();
    let out = out?;
    for step in &out.manifest.steps {
        let dropped: u64 = step.reasons.values().sum();
        let why: Vec<String> = step.reasons.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let why = if why.is_empty() { String::new() } else { format!(" ({})", why.join(", ")) };
        eprintln!("{:<28} {:>8} in {:>8} out {:>7} dropped{why}", step.name, step.rows_in, step.rows_out, dropped);
    }
    let Some(llm) = &out.llm else {
        eprintln!(
            "{} rows kept, {} dropped; manifest: {}",
            out.kept,
            out.dropped,
            out.dir.join("manifest.json").display()
        );
        println!("{}", out.dir.display());
        return Ok(());
    };
    if llm.mode() == LlmMode::DryRun {
        let mut o = String::new();
        outln!(o, "dry run: no LLM call was made. Estimate (tokens at ~4 characters each; max_tokens for answers):");
        outln!(
            o,
            "{:<12} {:>8} {:>9} {:>14} {:>14} {:>10}",
            "STAGE",
            "CACHED",
            "REQUESTS",
            "PROMPT_TOK",
            "COMPLETION_TOK",
            "USD"
        );
        let (mut req, mut pt, mut ct, mut usd, mut later) = (0, 0, 0, 0.0, 0);
        let estimates = llm.estimates();
        // Pipeline order, not alphabetical.
        let mut seen = std::collections::HashSet::new();
        let order: Vec<&str> =
            cfg.stages.iter().map(|s| s.name()).filter(|n| estimates.contains_key(*n) && seen.insert(*n)).collect();
        for stage in order {
            let e = estimates[stage];
            outln!(
                o,
                "{:<12} {:>8} {:>9} {:>14} {:>14} {:>10.4}",
                stage,
                e.cached,
                e.calls.requests,
                e.calls.prompt_tokens,
                e.calls.completion_tokens,
                e.calls.usd
            );
            req += e.calls.requests;
            pt += e.calls.prompt_tokens;
            ct += e.calls.completion_tokens;
            usd += e.calls.usd;
            later += e.rows_with_later_calls;
        }
        outln!(o, "{:<12} {:>8} {:>9} {:>14} {:>14} {:>10.4}", "total", "", req, pt, ct, usd);
        if later > 0 {
            outln!(o, "plus follow-up requests for up to {later} rows (judge verdicts, rewrite retries) once their first answers exist");
        }
        outln!(o, "manifest: {}", out.dir.join("manifest.json").display());
        return emit(&o);
    }
    let snap = llm.spend().snapshot();
    eprintln!("llm: {}", spend_line(&snap));
    let failed = out.dir.join(medforge_llm::deadletter::FAILED_FILE);
    if failed.exists() {
        let n = medforge_llm::read_dead_letters(&failed)?.len();
        eprintln!("{n} rows failed; listed in {} (medforge retry-failed {})", failed.display(), out.dir.display());
    }
    eprintln!("{} rows kept, {} dropped; manifest: {}", out.kept, out.dropped, out.dir.join("manifest.json").display());
    println!("{}", out.dir.display());
    if let Some(stop) = llm.stopped() {
        bail!(
            "the run stopped early: {stop}\nEverything finished so far is saved: outputs in {} (rows not reached are marked \
             `llm.stopped`), and every answer is cached, so re-running the same command continues where this one stopped.",
            out.dir.display()
        );
    }
    Ok(())
}

fn retry_failed(run_dir: &Path, config: Option<&Path>, llm: LlmFlags) -> Result<()> {
    let failed_path = run_dir.join(medforge_llm::deadletter::FAILED_FILE);
    let letters = medforge_llm::read_dead_letters(&failed_path)?;
    if letters.is_empty() {
        eprintln!("{}: no failed rows to retry", failed_path.display());
        return Ok(());
    }
    let manifest = Manifest::read(run_dir)?;
    let config_path: PathBuf = match config {
        Some(c) => c.to_path_buf(),
        None => manifest.config_file().ok_or_else(|| {
            anyhow!("{}: config.config_file is missing; pass --config", run_dir.join("manifest.json").display())
        })?,
    };
    if !config_path.exists() {
        bail!(
            "the run's config {} is not there (it is resolved from the current folder); pass --config",
            config_path.display()
        );
    }
    let only = manifest.only_stage().map(str::to_string);
    let cfg = CurateConfig::load(&config_path)?;
    let ids: std::collections::HashSet<String> = letters.iter().map(|l| l.row_id.clone()).collect();
    let mut by_code: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for l in &letters {
        *by_code.entry(l.code.as_str()).or_default() += 1;
    }
    let codes: Vec<String> = by_code.iter().map(|(c, n)| format!("{c} {n}")).collect();
    eprintln!("retrying {} rows from {} ({})", ids.len(), failed_path.display(), codes.join(", "));
    let opts = RunOptions { llm: llm.options(Arc::new(Spend::new())), only_ids: Some(ids) };
    run_config(&cfg, &config_path, only.as_deref(), opts)
}

fn batch_export(config_path: &Path, only: Option<&str>, out: &Path) -> Result<()> {
    let cfg = CurateConfig::load(config_path)?;
    if !cfg.uses_llm(only) {
        bail!("{}: no LLM stage to export requests for", config_path.display());
    }
    let opts = RunOptions { llm: LlmOptions { mode: LlmMode::Export, cache_mode: None, spend: None }, only_ids: None };
    let bars = progress::Bars::new();
    let res = runner::run_with(&cfg, config_path, only, &opts, &|l, d, t| bars.update(l, d, t, None));
    bars.finish();
    let res = res?;
    let env = res.llm.ok_or_else(|| anyhow!("no LLM stage ran"))?;
    let items = env.take_exported();
    let mut by_backend: std::collections::BTreeMap<&str, Vec<&medforge_curate::stages::llm::ExportItem>> =
        std::collections::BTreeMap::new();
    for it in &items {
        by_backend.entry(it.backend.as_str()).or_default().push(it);
    }
    let cached: u64 = env.estimates().values().map(|e| e.cached).sum();
    let several = by_backend.len() > 1;
    for (backend, its) in &by_backend {
        let path = if several {
            let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let ext = out.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_else(|| "jsonl".into());
            out.with_file_name(format!("{stem}.{backend}.{ext}"))
        } else {
            out.to_path_buf()
        };
        let ids: Vec<String> = its.iter().map(|i| i.custom_id.to_string()).collect();
        let mut buf = Vec::new();
        let n = medforge_llm::batch::write_requests(
            &mut buf,
            &its[0].model,
            ids.iter().map(String::as_str).zip(its.iter().map(|i| &i.request)),
        )?;
        medforge_data::write::write_atomic(&path, &buf)?;
        eprintln!("{n} requests for backend `{backend}` (model {}) -> {}", its[0].model, path.display());
    }
    if items.is_empty() {
        eprintln!("nothing to export: every request is already answered in the cache");
    }
    let later: u64 = env.estimates().values().map(|e| e.rows_with_later_calls).sum();
    eprintln!("{cached} requests already cached");
    if later > 0 {
        eprintln!(
            "{later} rows need follow-up requests once these are answered: import the results, then export again"
        );
    }
    Ok(())
}

fn batch_import(config_path: &Path, results: &[PathBuf]) -> Result<()> {
    let cfg = CurateConfig::load(config_path)?;
    let section = cfg.llm.as_ref().ok_or_else(|| anyhow!("{}: no [llm] section", config_path.display()))?;
    let cache_path = section.cache_path(&cfg.run.output);
    let cache = medforge_llm::Cache::open(&cache_path)?;
    let (mut stored, mut failed) = (0usize, std::collections::BTreeMap::<String, usize>::new());
    for path in results {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let got = medforge_llm::batch::read_results(std::io::BufReader::new(f))
            .with_context(|| format!("reading {}", path.display()))?;
        for (custom_id, res) in got {
            let Some(id) = CustomId::parse(&custom_id) else {
                bail!(
                    "{}: custom_id `{custom_id}` was not written by `medforge batch export` (expected <stage>:<row id>:<64-hex key>)",
                    path.display()
                );
            };
            match res {
                Ok(resp) if !resp.text.trim().is_empty() => {
                    cache.put(&id.key, "batch-import", "", &id.stage, &resp)?;
                    stored += 1;
                }
                Ok(_) => *failed.entry("llm.empty".into()).or_default() += 1,
                Err(e) => *failed.entry(e.code().to_string()).or_default() += 1,
            }
        }
    }
    eprintln!("{stored} answers stored in the cache {}", cache_path.display());
    if !failed.is_empty() {
        let codes: Vec<String> = failed.iter().map(|(c, n)| format!("{c} {n}")).collect();
        eprintln!(
            "{} results had no usable answer ({}); those rows are asked live on the next run",
            failed.values().sum::<usize>(),
            codes.join(", ")
        );
    }
    Ok(())
}

fn read_records(path: &Path) -> Result<Vec<medforge_data::Record>> {
    let preset = preset::detect(path).map(|p| p.name.clone());
    let input = medforge_data::config::InputConfig::for_path(path, preset.as_deref()).resolve()?;
    let tmp = std::env::temp_dir().join(format!("medforge-read-rejects-{}.jsonl", std::process::id()));
    let (records, _) =
        medforge_data::ingest::read_all(&input, OnError::Fail, &mut medforge_data::ingest::RejectLog::new(&tmp))?;
    Ok(records)
}

fn verify(dir: &Path, json: bool) -> Result<()> {
    let report = medforge_curate::verify::verify(dir);
    if json {
        emit(&(serde_json::to_string_pretty(&report)? + "\n"))?;
    } else {
        let mut o = String::new();
        let splits: Vec<String> = report.splits.iter().map(|(s, n)| format!("{s} {n}")).collect();
        outln!(o, "{}: {} rows ({})", dir.display(), report.rows, splits.join(", "));
        for (t, n) in &report.types {
            outln!(o, "  {t}: {n}");
        }
        if report.is_ok() {
            outln!(o, "all checks passed");
        }
        for (code, kind) in &report.errors {
            outln!(o, "  {code}: {} rows", kind.count);
            for ex in &kind.examples {
                outln!(o, "    e.g. {}: {}", ex.id, ex.excerpt);
            }
        }
        emit(&o)?;
    }
    if !report.is_ok() {
        anyhow::bail!("{} verification errors (counts per check above)", report.error_count());
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn divisions_organize(
    input: &Path,
    taxonomy: &Path,
    out: &Path,
    min_samples: usize,
    validation_fraction: f64,
    level: usize,
    seed: u64,
) -> Result<()> {
    use medforge_curate::taxonomy::{
        distribution, fix_record_divisions, organize_divisions, OrganizeOptions, Taxonomy,
    };
    let tax = Taxonomy::load(taxonomy)?;
    let mut records = read_records(input)?;
    let unknown = fix_record_divisions(&tax, &mut records);
    let opts = OrganizeOptions { min_samples, validation_fraction, seed, level };
    let index = organize_divisions(&records, &tax, out, &opts)?;
    let mut o = String::new();
    outln!(o, "{} records, {} with no valid division (UNKNOWN)", records.len(), unknown);
    outln!(o, "{:<10} {:<48} {:>8} {:>8}", "DIVISION", "NAME", "RECORDS", "SHARE");
    for d in distribution(&records, &tax, level) {
        outln!(o, "{:<10} {:<48} {:>8} {:>7.1}%", d.id, d.name, d.count, d.percent);
    }
    outln!(
        o,
        "\nwrote {} division folders under {} ({} skipped below --min-samples {min_samples})",
        index.divisions.len(),
        out.display(),
        index.skipped.len()
    );
    emit(&o)
}

fn split_update(splits: &Path, recommendations: &Path, out: Option<&Path>) -> Result<()> {
    use medforge_curate::split::{update, write_splits, SplitPlan, PLAN_FILE, SPLIT_FILES};
    use medforge_data::recommendations::Recommendations;
    let plan = SplitPlan::load(&splits.join(PLAN_FILE))?;
    let recs = Recommendations::load(recommendations)?;
    let mut records = Vec::new();
    for (_, jsonl, _) in SPLIT_FILES {
        records.extend(read_records(&splits.join(jsonl))?);
    }
    let new_plan = update(&plan, &records, &recs)?;
    let target = out.unwrap_or(splits);
    let stats = write_splits(target, &new_plan, &records)?;
    let mut o = String::new();
    if let Some(u) = new_plan.updates.last() {
        for (s, c) in &u.changes {
            outln!(
                o,
                "{s}: train {} -> {} (+{} from the pool; {} left) [{}]",
                c.train_before,
                c.train_after,
                c.moved,
                c.pool_left,
                c.reason
            );
        }
        for s in &u.unmatched {
            outln!(o, "{s}: no such specialty in these splits");
        }
    }
    outln!(
        o,
        "train {} eval {} holdout {} pool {} -> {}",
        stats.train_samples,
        stats.eval_samples,
        stats.holdout_samples,
        stats.eval_pool_samples,
        target.display()
    );
    emit(&o)
}
