//! `medforge serve` and `medforge model inspect`: the local inference engine from the command line.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use medforge_engine::engine::{Engine, LoadOptions};
use medforge_engine::server::ServerConfig;

/// Arguments of `medforge serve`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    scripts/fetch_model.sh    # SmolLM2-135M-Instruct into ~/.cache/medforge/models\n  \
    medforge serve --model ~/.cache/medforge/models/SmolLM2-135M-Instruct.Q4_1.gguf\n  \
    MEDFORGE_API_KEY=s3cret medforge serve --model M.gguf --api-key-env MEDFORGE_API_KEY --port 9000\n  \
    medforge serve --model base.gguf --adapter out/lora/adapter    # a PEFT LoRA folder on top of the base\n\n\
    Endpoints: POST /v1/chat/completions (\"stream\": true for SSE), POST /v1/completions, GET /v1/models.\n\
    Binds 127.0.0.1 unless --host says otherwise; one request runs at a time, others queue.")]
pub struct ServeArgs {
    /// A GGUF file (llama, mistral, qwen2, gemma, gemma2, gemma3) or a Hugging Face folder (config.json,
    /// *.safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Name of an environment variable holding the bearer token clients must send.
    #[arg(long)]
    api_key_env: Option<String>,
    /// The model id clients use (default: the file name without .gguf).
    #[arg(long)]
    name: Option<String>,
    /// Requantise weights at load (q8_0, q4_0, q4_1, q4k, q6k): smaller/faster f32 safetensors, or another trade-off
    /// of a GGUF file's size and accuracy.
    #[arg(long)]
    requant: Option<String>,
    /// A tokenizer.json to use instead of the model's own.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors), applied on top of --model.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
}

/// Arguments of `medforge model`.
#[derive(Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Architecture, parameter count, quantisation, vocabulary and chat template of a GGUF file or HF folder.
    #[command(
        after_help = "Example:\n  medforge model inspect ~/.cache/medforge/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    )]
    Inspect {
        path: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a GGUF file (or HF folder) as a Hugging Face folder in f32: config.json, model.safetensors,
    /// tokenizer.json and tokenizer_config.json with the chat template. Python `transformers` and `peft` load it,
    /// so adapters medforge trains on a GGUF base can be used there.
    #[command(after_help = "Example:
  medforge model export-hf --model SmolLM2-135M-Instruct.Q4_1.gguf --out smollm2-hf

Quantised weights are dequantised (the folder holds exactly what the GGUF computes); llama q/k rows are put back in
Hugging Face order and Gemma norms lose the +1 GGUF folds in.")]
    ExportHf {
        /// A GGUF file or Hugging Face folder.
        #[arg(long)]
        model: PathBuf,
        /// The folder to write (replaced atomically).
        #[arg(long)]
        out: PathBuf,
    },
    /// Bake a LoRA adapter into its base: write base + adapter as one Hugging Face folder (f32).
    #[command(after_help = "Example:
  medforge model merge --model base.gguf --adapter runs/lora/adapter --out merged-hf")]
    Merge {
        /// The base: a GGUF file or Hugging Face folder.
        #[arg(long)]
        model: PathBuf,
        /// A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors).
        #[arg(long)]
        adapter: PathBuf,
        /// The folder to write (replaced atomically).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Export `model` (with `adapter` merged in) into `out`, through a hidden sibling folder renamed into place.
fn export(model: &std::path::Path, adapter: Option<&std::path::Path>, out: &std::path::Path) -> Result<()> {
    let opts = medforge_engine::LoadOptions { adapter: adapter.map(|a| a.to_path_buf()), ..Default::default() };
    let engine = medforge_engine::Engine::load(model, &opts).with_context(|| format!("loading {}", model.display()))?;
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = parent.join(format!(".tmp-export-{}", std::process::id()));
    let summary = engine.export_hf(&tmp, adapter.is_some()).with_context(|| format!("writing {}", out.display()))?;
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("replacing {}", out.display()))?;
    }
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {} ({} tensors, {:.1}M parameters{})",
        out.display(),
        summary.tensors,
        summary.params as f64 / 1e6,
        if summary.merged_pairs > 0 { format!(", {} LoRA pairs merged", summary.merged_pairs) } else { String::new() }
    );
    Ok(())
}

impl ModelArgs {
    pub fn run(self) -> Result<()> {
        model(self.command)
    }
}

fn model(cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::ExportHf { model, out } => export(&model, None, &out),
        ModelCommand::Merge { model, adapter, out } => export(&model, Some(&adapter), &out),
        ModelCommand::Inspect { path, json } => {
            let info = medforge_engine::inspect(&path).with_context(|| format!("inspecting {}", path.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
                return Ok(());
            }
            let opt = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "?".into());
            println!("path          {}", info.path);
            println!("format        {}", info.format);
            println!("architecture  {}", info.architecture);
            if let Some(n) = &info.name {
                println!("name          {n}");
            }
            println!("parameters    {} ({:.1}M)", info.parameters, info.parameters as f64 / 1e6);
            let types: Vec<String> = info.tensor_types.iter().map(|(t, n)| format!("{t}: {n}")).collect();
            println!("quantization  {} (tensors: {})", info.quantization, types.join(", "));
            println!(
                "shape         {} layers, hidden {}, {} heads, {} kv heads, context {}",
                opt(info.layers),
                opt(info.hidden_size),
                opt(info.heads),
                opt(info.kv_heads),
                opt(info.context_length)
            );
            println!(
                "vocab         {} ({})",
                info.vocab_size.map(|v| v.to_string()).unwrap_or_else(|| "?".into()),
                info.tokenizer.as_deref().unwrap_or("?")
            );
            println!(
                "bos / eos     {} / {}",
                info.bos_token.as_deref().unwrap_or("-"),
                info.eos_token.as_deref().unwrap_or("-")
            );
            println!("file bytes    {}", info.file_bytes);
            match &info.chat_template {
                Some(t) => println!("chat template\n{t}"),
                None => println!("chat template (none)"),
            }
            Ok(())
        }
    }
}

impl ServeArgs {
    pub fn run(self) -> Result<()> {
        serve(self)
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    let api_key = match &args.api_key_env {
        Some(var) => match std::env::var(var) {
            Ok(k) if !k.is_empty() => Some(k),
            _ => bail!("--api-key-env {var}: the environment variable is not set"),
        },
        None => None,
    };
    let opts = LoadOptions {
        requant: args.requant.clone(),
        tokenizer: args.tokenizer.clone(),
        name: args.name.clone(),
        adapter: args.adapter.clone(),
    };
    let t0 = std::time::Instant::now();
    let engine = Engine::load(&args.model, &opts).with_context(|| format!("loading {}", args.model.display()))?;
    let name = engine.name.clone();
    eprintln!(
        "loaded {} ({}, {} layers) in {:.1}s",
        args.model.display(),
        engine.config().arch,
        engine.config().n_layer,
        t0.elapsed().as_secs_f64()
    );
    if let Some((dir, r, alpha)) = &engine.adapter {
        eprintln!("with LoRA adapter {dir} (r = {r}, alpha = {alpha})");
    }
    let cfg = ServerConfig { api_key, max_body_bytes: args.max_body_bytes, ..Default::default() };
    let addr = format!("{}:{}", args.host, args.port);
    medforge_engine::server::run_blocking(&addr, engine, cfg, |bound| {
        eprintln!("serving model `{name}` on http://{bound}/v1 (Ctrl-C to stop)");
    })
    .with_context(|| format!("serving on {addr}"))
}
