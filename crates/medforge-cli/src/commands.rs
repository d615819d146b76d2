use std::path::{Path, PathBuf};

use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use medforge_curate::runner::{self, RunOptions};
use medforge_curate::stages::llm::{LlmMode, LlmOptions};
use medforge_curate::CurateConfig;
use medforge_data::config::{closest, OnError};
use medforge_data::inspect::Inspection;
use medforge_data::pipeline::{self, ConvertRequest};
use medforge_data::preset;
use medforge_data::read::Format;
use medforge_data::write::OutputFormat;
use medforge_llm::{CacheMode, Spend, SpendSnapshot};

use crate::progress;

/// Write to stdout; a closed pipe (`| head`) ends output quietly instead of panicking.
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

macro_rules! outln {
    ($buf:expr) => { $buf.push('\n') };
    ($buf:expr, $($arg:tt)*) => {{ use std::fmt::Write as _; let _ = writeln!($buf, $($arg)*); }};
}

fn parse_format(s: &str) -> Result<Format> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        let hint =
            closest(s, Format::NAMES.iter().copied()).map(|c| format!(" did you mean `{c}`?")).unwrap_or_default();
        anyhow!("unknown input format `{s}`.{hint} Valid: {}", Format::NAMES.join(", "))
    })
}

fn parse_output_format(s: &str) -> Result<OutputFormat> {
    OutputFormat::parse(s).ok_or_else(|| {
        let hint = closest(s, OutputFormat::NAMES.iter().copied())
            .map(|c| format!(" did you mean `{c}`?"))
            .unwrap_or_default();
        anyhow!("unknown output format `{s}`.{hint} Valid: {}", OutputFormat::NAMES.join(", "))
    })
}

pub fn presets(show: Option<&str>) -> Result<()> {
    if let Some(name) = show {
        let p = preset::get(name)?;
        return emit(p.toml);
    }
    let mut o = String::new();
    outln!(o, "{:<20} DATASET", "PRESET");
    for p in preset::all() {
        outln!(o, "{:<20} {}", p.name, p.description);
        outln!(o, "{:<20}   e.g. {}", "", p.example);
    }
    outln!(o, "\nUse one with `--preset NAME`, or `preset = \"NAME\"` in an [[inputs]] entry.");
    outln!(o, "`medforge presets --show NAME` prints its field mapping, ready to copy and edit.");
    emit(&o)
}

pub fn inspect(path: &Path, preset: Option<&str>, format: Option<&str>, json: bool) -> Result<()> {
    let format = format.map(parse_format).transpose()?;
    let ins = medforge_data::inspect::inspect(path, preset, format)?;
    if json {
        emit(&(serde_json::to_string_pretty(&ins)? + "\n"))
    } else {
        print_inspection(&ins)
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn print_inspection(ins: &Inspection) -> Result<()> {
    let mut o = String::new();
    outln!(o, "{}", ins.path);
    match &ins.preset {
        Some(p) => outln!(o, "  preset: {p}   format: {}", ins.format.as_deref().unwrap_or("?")),
        None => outln!(
            o,
            "  preset: none fits (raw view; pass --preset to map it)   format: {}",
            ins.format.as_deref().unwrap_or("?")
        ),
    }
    outln!(o, "  rows: {}   rejected: {}", ins.rows, ins.rejected);
    for (code, n) in &ins.reject_codes {
        outln!(o, "    {code}: {n}");
    }
    for e in ins.reject_examples.iter().take(3) {
        outln!(o, "    e.g. {e}");
    }
    if ins.preset.is_some() && !ins.source_schema.is_empty() {
        outln!(o, "\nsource columns (first 1000 rows):");
        for f in &ins.source_schema {
            outln!(
                o,
                "  {:<32} {:<14} null {:>6}  empty {:>6}",
                f.name,
                f.types.join("|"),
                pct(f.null_ratio),
                pct(f.empty_ratio)
            );
        }
    }
    outln!(o, "\n{}:", if ins.preset.is_some() { "record fields" } else { "fields" });
    for f in &ins.fields {
        outln!(
            o,
            "  {:<32} {:<20} null {:>6}  empty {:>6}",
            f.name,
            f.types.join("|"),
            pct(f.null_ratio),
            pct(f.empty_ratio)
        );
    }
    if !ins.labels.is_empty() {
        outln!(o, "\nlabels:");
        for (name, dist) in &ins.labels {
            let total: u64 = dist.values().sum();
            let mut items: Vec<_> = dist.iter().collect();
            items.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let shown: Vec<String> = items
                .iter()
                .take(12)
                .map(|(k, v)| format!("{k} {v} ({})", pct(**v as f64 / total.max(1) as f64)))
                .collect();
            let more = if items.len() > 12 { format!(", … {} more", items.len() - 12) } else { String::new() };
            outln!(o, "  {name}: {}{more}", shown.join(", "));
        }
    }
    outln!(o, "\nsamples:");
    for s in &ins.samples {
        let mut line = serde_json::to_string(s).unwrap_or_default();
        if line.chars().count() > 400 {
            line = format!("{}…", line.chars().take(400).collect::<String>());
        }
        outln!(o, "  {line}");
    }
    emit(&o)
}

pub struct ConvertArgs {
    pub input: PathBuf,
    pub output: PathBuf,
    pub preset: Option<String>,
    pub format: Option<String>,
    pub input_format: Option<String>,
    pub skip: bool,
    pub rejects: Option<PathBuf>,
    pub limit: Option<u64>,
}

pub fn convert(a: ConvertArgs) -> Result<()> {
    let req = ConvertRequest {
        input: a.input,
        output: a.output,
        preset: a.preset,
        input_format: a.input_format.as_deref().map(parse_format).transpose()?,
        format: a.format.as_deref().map(parse_output_format).transpose()?,
        on_error: if a.skip { OnError::Skip } else { OnError::Fail },
        rejects: a.rejects,
        limit: a.limit,
    };
    let bars = progress::Bars::new();
    let out = pipeline::convert(&req, &|label, n| bars.set(label, n));
    bars.finish();
    let out = out?;
    eprintln!(
        "wrote {} records to {} ({:?}, preset {})",
        out.rows,
        req.output.display(),
        out.format,
        out.preset.as_deref().unwrap_or("-")
    );
    let rejected = out.stats.rejected_total();
    if rejected > 0 {
        eprintln!("skipped {rejected} malformed rows, listed with reasons in {}:", out.rejects_path.display());
        for (code, n) in &out.stats.rejected {
            eprintln!("  {code}: {n}");
        }
    }
    Ok(())
}

/// The LLM flags of `run`, `curate` and `retry-failed`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LlmArgs {
    pub dry_run: bool,
    pub no_cache: bool,
    pub refresh: bool,
}

impl LlmArgs {
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

pub fn curate(config_path: &Path, only: Option<&str>, llm: LlmArgs) -> Result<()> {
    let cfg = CurateConfig::load(config_path)?;
    let opts = RunOptions { llm: llm.options(Arc::new(Spend::new())), only_ids: None };
    run_config(&cfg, config_path, only, opts)
}

pub fn retry_failed(run_dir: &Path, config: Option<&Path>, llm: LlmArgs) -> Result<()> {
    let failed_path = run_dir.join(medforge_llm::deadletter::FAILED_FILE);
    let letters = medforge_llm::read_dead_letters(&failed_path)?;
    if letters.is_empty() {
        eprintln!("{}: no failed rows to retry", failed_path.display());
        return Ok(());
    }
    let manifest_path = run_dir.join("manifest.json");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&manifest_path).with_context(|| format!("reading {}", manifest_path.display()))?,
    )
    .with_context(|| format!("{}: not a medforge manifest", manifest_path.display()))?;
    let config_path: PathBuf = match config {
        Some(c) => c.to_path_buf(),
        None => manifest["config"]["config_file"]
            .as_str()
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("{}: config.config_file is missing; pass --config", manifest_path.display()))?,
    };
    if !config_path.exists() {
        bail!(
            "the run's config {} is not there (it is resolved from the current folder); pass --config",
            config_path.display()
        );
    }
    let only = manifest["config"]["only"].as_str().map(str::to_string);
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

pub fn batch_export(config_path: &Path, only: Option<&str>, out: &Path) -> Result<()> {
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
        let mut buf = Vec::new();
        let n = medforge_llm::batch::write_requests(
            &mut buf,
            &its[0].model,
            its.iter().map(|i| (i.custom_id.as_str(), &i.request)),
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

pub fn batch_import(config_path: &Path, results: &[PathBuf]) -> Result<()> {
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
            let mut parts = custom_id.splitn(2, ':');
            let stage = parts.next().unwrap_or("");
            let key = custom_id.rsplit(':').next().unwrap_or("");
            if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!(
                    "{}: custom_id `{custom_id}` was not written by `medforge batch export` (expected <stage>:<row id>:<64-hex key>)",
                    path.display()
                );
            }
            match res {
                Ok(resp) if !resp.text.trim().is_empty() => {
                    cache.put(key, "batch-import", "", stage, &resp)?;
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

pub fn decontam(
    train: &Path,
    preset: Option<String>,
    against: &[PathBuf],
    data_root: Option<PathBuf>,
    out: &Path,
) -> Result<()> {
    let outcome =
        medforge_curate::stages::decontam::decontaminate_files(train, preset.as_deref(), against, data_root, out)?;
    eprintln!(
        "{} rows checked against {} benchmark items: {} dropped, {} kept -> {}",
        outcome.rows,
        outcome.benchmark_items,
        outcome.dropped,
        outcome.rows - outcome.dropped,
        out.display()
    );
    eprintln!("report: {}", outcome.report.display());
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

pub fn verify(dir: &Path, json: bool) -> Result<()> {
    let report = medforge_curate::verify::verify(dir);
    if json {
        emit(&(serde_json::to_string_pretty(&report)? + "\n"))?;
    } else {
        let mut o = String::new();
        outln!(o, "{}: {} rows", dir.display(), report.rows);
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
        anyhow::bail!("{} rows fail verification", report.error_count());
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn divisions_organize(
    input: &Path,
    taxonomy: &Path,
    out: &Path,
    min_samples: usize,
    validation_fraction: f64,
    level: usize,
    seed: u64,
) -> Result<()> {
    use medforge_curate::taxonomy::{distribution, fix_labels, organize_divisions, OrganizeOptions, Taxonomy};
    let tax = Taxonomy::load(taxonomy)?;
    let mut records = read_records(input)?;
    let mut unknown = 0;
    for r in &mut records {
        let mut raw: Vec<String> = r.division.iter().cloned().collect();
        raw.extend(r.divisions.iter().filter(|d| Some(*d) != r.division.as_ref()).cloned());
        let fix = fix_labels(&tax, &raw);
        unknown += fix.unknown as usize;
        r.division = Some(fix.primary);
        r.divisions = fix.labels;
    }
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

pub fn split_update(splits: &Path, recommendations: &Path, out: Option<&Path>) -> Result<()> {
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
