use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use medforge_curate::{runner, CurateConfig};
use medforge_data::config::{closest, OnError};
use medforge_data::inspect::Inspection;
use medforge_data::pipeline::{self, ConvertRequest};
use medforge_data::preset;
use medforge_data::read::Format;
use medforge_data::write::OutputFormat;

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

pub fn curate(config_path: &Path, only: Option<&str>) -> Result<()> {
    let cfg = CurateConfig::load(config_path)?;
    let bars = progress::Bars::new();
    let out = runner::run(&cfg, config_path, only, &|label, done, _total| bars.set(label, done));
    bars.finish();
    let out = out?;
    for step in &out.manifest.steps {
        let dropped: u64 = step.reasons.values().sum();
        let why: Vec<String> = step.reasons.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let why = if why.is_empty() { String::new() } else { format!(" ({})", why.join(", ")) };
        eprintln!("{:<28} {:>8} in {:>8} out {:>7} dropped{why}", step.name, step.rows_in, step.rows_out, dropped);
    }
    eprintln!("{} rows kept, {} dropped; manifest: {}", out.kept, out.dropped, out.dir.join("manifest.json").display());
    println!("{}", out.dir.display());
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
    use medforge_curate::split::{update, write_splits, Recommendations, SplitPlan, PLAN_FILE, SPLIT_FILES};
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
