use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use medforge_data::config::{closest, InputConfig, OnError, PipelineConfig};
use medforge_data::ingest::{ingest, IngestStats, RejectLog};
use medforge_data::inspect::Inspection;
use medforge_data::manifest::{hash_input, Manifest, OutputInfo, RunDir, StepCount};
use medforge_data::read::Format;
use medforge_data::write::{self, OutputFormat, RecordWriter};
use medforge_data::{preset, Error};

use crate::progress;

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
        print!("{}", p.toml);
        return Ok(());
    }
    println!("{:<20} {}", "PRESET", "DATASET");
    for p in preset::all() {
        println!("{:<20} {}", p.name, p.description);
        println!("{:<20}   e.g. {}", "", p.example);
    }
    println!("\nUse one with `--preset NAME`, or `preset = \"NAME\"` in an [[inputs]] entry.");
    println!("`medforge presets --show NAME` prints its field mapping, ready to copy and edit.");
    Ok(())
}

pub fn inspect(path: &Path, preset: Option<&str>, format: Option<&str>, json: bool) -> Result<()> {
    let format = format.map(parse_format).transpose()?;
    let ins = medforge_data::inspect::inspect(path, preset, format)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&ins)?);
    } else {
        print_inspection(&ins);
    }
    Ok(())
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn print_inspection(ins: &Inspection) {
    println!("{}", ins.path);
    match &ins.preset {
        Some(p) => println!("  preset: {p}   format: {}", ins.format.as_deref().unwrap_or("?")),
        None => println!(
            "  preset: none fits (raw view; pass --preset to map it)   format: {}",
            ins.format.as_deref().unwrap_or("?")
        ),
    }
    println!("  rows: {}   rejected: {}", ins.rows, ins.rejected);
    for (code, n) in &ins.reject_codes {
        println!("    {code}: {n}");
    }
    for e in ins.reject_examples.iter().take(3) {
        println!("    e.g. {e}");
    }
    if ins.preset.is_some() && !ins.source_schema.is_empty() {
        println!("\nsource columns (first 1000 rows):");
        for f in &ins.source_schema {
            println!(
                "  {:<32} {:<14} null {:>6}  empty {:>6}",
                f.name,
                f.types.join("|"),
                pct(f.null_ratio),
                pct(f.empty_ratio)
            );
        }
    }
    println!("\n{}:", if ins.preset.is_some() { "record fields" } else { "fields" });
    for f in &ins.fields {
        println!(
            "  {:<32} {:<20} null {:>6}  empty {:>6}",
            f.name,
            f.types.join("|"),
            pct(f.null_ratio),
            pct(f.empty_ratio)
        );
    }
    if !ins.labels.is_empty() {
        println!("\nlabels:");
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
            println!("  {name}: {}{more}", shown.join(", "));
        }
    }
    println!("\nsamples:");
    for s in &ins.samples {
        let mut line = serde_json::to_string(s).unwrap_or_default();
        if line.chars().count() > 400 {
            line = format!("{}…", line.chars().take(400).collect::<String>());
        }
        println!("  {line}");
    }
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

fn resolve_preset(path: &Path, preset: Option<String>, format: Option<Format>) -> Result<Option<String>> {
    Ok(match preset {
        Some(p) => Some(p),
        None if format.is_some() => None,
        None => preset::detect(path).map(|p| p.name.clone()),
    })
}

pub fn convert(a: ConvertArgs) -> Result<()> {
    let in_format = a.input_format.as_deref().map(parse_format).transpose()?;
    let out_format = match &a.format {
        Some(f) => parse_output_format(f)?,
        None => OutputFormat::from_path(&a.output),
    };
    let preset = resolve_preset(&a.input, a.preset, in_format)?;
    if preset.is_none() {
        bail!(
            "{}: no preset fits this data; pass --preset NAME (see `medforge presets`), or write a config with a field mapping",
            a.input.display()
        );
    }
    let mut cfg = InputConfig::for_path(&a.input, preset.as_deref());
    cfg.format = in_format;
    cfg.limit = a.limit;
    let input = cfg.resolve()?;
    let rejects_path = a.rejects.unwrap_or_else(|| {
        let mut s = a.output.clone().into_os_string();
        s.push(".rejects.jsonl");
        PathBuf::from(s)
    });
    let on_error = if a.skip { OnError::Skip } else { OnError::Fail };
    let mut rejects = RejectLog::new(&rejects_path);
    let mut writer = write::create(&a.output, out_format)?;
    let pb = progress::rows("converting");
    let stats = ingest(&input, on_error, &mut rejects, &|n| pb.set_position(n), &mut |batch| writer.write(&batch));
    pb.finish_and_clear();
    let stats = stats?; // on error the writer is dropped and its temp output removed
    let rows = writer.finish()?;
    let rejected = rejects.finish()?;
    eprintln!(
        "wrote {rows} records to {} ({out_format:?}, preset {})",
        a.output.display(),
        preset.as_deref().unwrap_or("-")
    );
    if rejected > 0 {
        eprintln!("skipped {rejected} malformed rows, listed with reasons in {}:", rejects_path.display());
        for (code, n) in &stats.rejected {
            eprintln!("  {code}: {n}");
        }
    }
    Ok(())
}

pub fn run(config_path: &Path) -> Result<()> {
    let cfg = PipelineConfig::load(config_path)?;
    let run = RunDir::create(&cfg.run.output)?;
    let resolved: Vec<_> = cfg.inputs.iter().map(|i| i.resolve()).collect::<Result<_, Error>>()?;
    let config_json = serde_json::json!({
        "run": cfg.run,
        "inputs": resolved,
        "output": cfg.output,
        "config_file": config_path,
    });
    let mut manifest = Manifest::new(&run, cfg.run.seed, config_json);
    for r in &resolved {
        manifest.inputs.push(hash_input(&r.path).with_context(|| format!("hashing {}", r.path.display()))?);
    }
    manifest.write(&run.path)?;

    let mut writers: Vec<(PathBuf, OutputFormat, Box<dyn RecordWriter>)> = Vec::new();
    for f in &cfg.output.formats {
        let p = run.file(&f.file_name("records"));
        writers.push((p.clone(), *f, write::create(&p, *f)?));
    }
    let mut rejects = RejectLog::new(run.file("rejects.jsonl"));
    let mut total = IngestStats::default();
    for input in &resolved {
        let pb = progress::rows(&format!("ingest {}", input.source));
        let stats = ingest(input, cfg.run.on_error, &mut rejects, &|n| pb.set_position(n), &mut |batch| {
            for (_, _, w) in writers.iter_mut() {
                w.write(&batch)?;
            }
            Ok(())
        });
        pb.finish_and_clear();
        let stats = stats.with_context(|| format!("ingesting {}", input.path.display()))?;
        eprintln!(
            "{}: {} rows read, {} kept, {} rejected",
            input.path.display(),
            stats.rows_read,
            stats.rows_ok,
            stats.rejected_total()
        );
        manifest.steps.push(StepCount {
            name: format!("ingest:{}", input.source),
            rows_in: stats.rows_read,
            rows_out: stats.rows_ok,
            reasons: stats.rejected.clone(),
        });
        total.add(&stats);
    }
    for (path, format, w) in writers {
        let rows = w.finish()?;
        manifest.outputs.push(OutputInfo {
            path: path.strip_prefix(&run.path).unwrap_or(&path).to_path_buf(),
            format: format!("{format:?}").to_lowercase(),
            rows,
        });
    }
    rejects.finish()?;
    manifest.rejects = total.rejected.clone();
    manifest.finished_at = Some(chrono_now());
    let mpath = manifest.write(&run.path)?;
    eprintln!("run folder: {}", run.path.display());
    eprintln!(
        "  {} records written; {} rejected; manifest: {}",
        total.rows_ok,
        total.rejected_total(),
        mpath.display()
    );
    println!("{}", run.path.display());
    Ok(())
}

fn chrono_now() -> String {
    // The library's manifest owns time formatting; reuse its clock via a fresh RunDir-free call.
    medforge_data::manifest::now_rfc3339()
}
