//! `medforge inspect`, `medforge convert` and `medforge presets`: datasets in, records out.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use medforge_data::config::OnError;
use medforge_data::inspect::Inspection;
use medforge_data::pipeline::{self, ConvertRequest};
use medforge_data::preset;
use medforge_data::read::Format;
use medforge_data::write::OutputFormat;

use crate::output::{emit, outln};
use crate::progress;

/// An input format, when the extension does not tell.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum InputFormatArg {
    Jsonl,
    Json,
    Csv,
    Tsv,
    Parquet,
    #[value(name = "hf_dataset", alias = "hf")]
    HfDataset,
    #[value(name = "medquad_xml")]
    MedquadXml,
}

impl From<InputFormatArg> for Format {
    fn from(f: InputFormatArg) -> Format {
        match f {
            InputFormatArg::Jsonl => Format::Jsonl,
            InputFormatArg::Json => Format::Json,
            InputFormatArg::Csv => Format::Csv,
            InputFormatArg::Tsv => Format::Tsv,
            InputFormatArg::Parquet => Format::Parquet,
            InputFormatArg::HfDataset => Format::HfDataset,
            InputFormatArg::MedquadXml => Format::MedquadXml,
        }
    }
}

/// An output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormatArg {
    Jsonl,
    Parquet,
    /// A Hugging Face `save_to_disk` folder.
    #[value(alias = "hf_dataset", alias = "arrow")]
    Hf,
}

impl From<OutputFormatArg> for OutputFormat {
    fn from(f: OutputFormatArg) -> OutputFormat {
        match f {
            OutputFormatArg::Jsonl => OutputFormat::Jsonl,
            OutputFormatArg::Parquet => OutputFormat::Parquet,
            OutputFormatArg::Hf => OutputFormat::Hf,
        }
    }
}

/// What to do with a malformed row.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnErrorArg {
    /// Stop at the first bad row, naming it.
    Fail,
    /// Log it to the rejects file with its reason and go on.
    Skip,
}

impl From<OnErrorArg> for OnError {
    fn from(o: OnErrorArg) -> OnError {
        match o {
            OnErrorArg::Fail => OnError::Fail,
            OnErrorArg::Skip => OnError::Skip,
        }
    }
}

/// Arguments of `medforge inspect`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    medforge inspect data/medqa/US/4_options/dev.jsonl\n  \
    medforge inspect data/kormedmcqa/doctor/train.csv --preset kormedmcqa\n  \
    medforge inspect data/medquad --json > medquad_stats.json\n\n\
    Without --preset, the preset is guessed from the first row; if none fits, the file is shown raw.")]
pub struct InspectArgs {
    /// File or folder to inspect.
    path: PathBuf,
    /// Dataset preset (see `medforge presets`).
    #[arg(long)]
    preset: Option<String>,
    /// Input format, when the extension does not tell.
    #[arg(long, value_enum)]
    format: Option<InputFormatArg>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl InspectArgs {
    pub fn run(self) -> Result<()> {
        let ins = medforge_data::inspect::inspect(&self.path, self.preset.as_deref(), self.format.map(Format::from))?;
        if self.json {
            emit(&(serde_json::to_string_pretty(&ins)? + "\n"))
        } else {
            print_inspection(&ins)
        }
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

/// Arguments of `medforge convert`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    medforge convert data/medqa/US/4_options/dev.jsonl medqa_dev.parquet\n  \
    medforge convert data/pubmedqa/ori_pqal.json pubmedqa_hf --format hf\n  \
    medforge convert data/kormedmcqa/doctor/train.csv kor.jsonl --on-error skip\n\n\
    The output format follows OUT's extension (.jsonl, .parquet; anything else is an HF folder)\n\
    unless --format says otherwise. Output is written atomically: a failed run leaves no partial file.\n\
    With --on-error skip, malformed rows go to OUT.rejects.jsonl with their location and reason.")]
pub struct ConvertArgs {
    /// Input file or folder.
    input: PathBuf,
    /// Output path.
    output: PathBuf,
    /// Dataset preset (guessed when omitted).
    #[arg(long)]
    preset: Option<String>,
    /// Output format (default: from OUT's extension).
    #[arg(long, value_enum)]
    format: Option<OutputFormatArg>,
    /// Input format, when the extension does not tell.
    #[arg(long, value_enum)]
    input_format: Option<InputFormatArg>,
    /// What to do with a malformed row.
    #[arg(long, value_enum, default_value = "fail")]
    on_error: OnErrorArg,
    /// Where skipped rows are logged (default: OUT.rejects.jsonl).
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// Read at most N rows.
    #[arg(long)]
    limit: Option<u64>,
}

impl ConvertArgs {
    pub fn run(self) -> Result<()> {
        let req = ConvertRequest {
            input: self.input,
            output: self.output,
            preset: self.preset,
            input_format: self.input_format.map(Format::from),
            format: self.format.map(OutputFormat::from),
            on_error: self.on_error.into(),
            rejects: self.rejects,
            limit: self.limit,
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
}

/// Arguments of `medforge presets`.
#[derive(Args)]
#[command(after_help = "Examples:\n  medforge presets\n  medforge presets --show kormedmcqa")]
pub struct PresetsArgs {
    /// Print this preset's TOML.
    #[arg(long)]
    show: Option<String>,
}

impl PresetsArgs {
    pub fn run(self) -> Result<()> {
        if let Some(name) = &self.show {
            return emit(preset::get(name)?.toml);
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
}
