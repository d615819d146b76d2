//! `medforge train export --engine trl|axolotl`: the same training job as files a multi-GPU machine runs — a TRL
//! script (`SFTTrainer`/`DPOTrainer` with a PEFT `LoraConfig`) or an axolotl YAML, accelerate configs for DDP and
//! DeepSpeed ZeRO-2/3, the data converted to what each tool reads, and a README with the launch commands.
//!
//! The templates (`handoff/*.tmpl`, verified with `bench/handoff/verify_handoff.sh`) hold `{name}` placeholders,
//! filled in one pass so that Jinja and Python braces pass through: in `.py` templates each value is a Python literal,
//! in YAML templates JSON; YAML blocks between `# @if NAME` and `# @endif` are dropped when NAME is false or null.

use std::path::{Path, PathBuf};

use medforge_data::formatted::{self, FormattedRow, TrainingType};
use serde_json::{json, Map, Value};

use crate::config::{Method, Objective, Schedule, TrainConfig};
use crate::data;
use crate::error::{Result, TrainError};

const SFT_TRL: &str = include_str!("../handoff/sft_trl.py.tmpl");
const DPO_TRL: &str = include_str!("../handoff/dpo_trl.py.tmpl");
const SFT_AXOLOTL: &str = include_str!("../handoff/axolotl_sft.yml.tmpl");
const DPO_AXOLOTL: &str = include_str!("../handoff/axolotl_dpo.yml.tmpl");
const ACCELERATE: [(&str, &str); 3] = [
    ("accelerate_multi_gpu.yaml", include_str!("../handoff/accelerate_multi_gpu.yaml.tmpl")),
    ("accelerate_zero2.yaml", include_str!("../handoff/accelerate_zero2.yaml.tmpl")),
    ("accelerate_zero3.yaml", include_str!("../handoff/accelerate_zero3.yaml.tmpl")),
];
const REQUIREMENTS: &str = include_str!("../handoff/requirements.txt");

/// The tool the job is handed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffEngine {
    Trl,
    Axolotl,
}

/// Options of an export.
#[derive(Debug, Clone)]
pub struct HandoffOptions {
    pub engine: HandoffEngine,
    /// The Hugging Face model the scripts load (a folder or hub id); by default the base when it is a folder.
    pub model: Option<String>,
    /// GPUs per node, for the accelerate configs.
    pub gpus: usize,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct HandoffSummary {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub train_rows: usize,
    pub eval_rows: usize,
}

/// A value as a Python literal.
fn py(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(py).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter().map(|(k, v)| format!("{}: {}", Value::String(k.clone()), py(v))).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

/// Render a template: `# @if` blocks (YAML), then every `{name}` in one pass. A placeholder without a value is an
/// error naming it.
pub fn render(name: &str, template: &str, values: &Map<String, Value>) -> Result<String> {
    let python = name.ends_with(".py");
    let mut text = String::with_capacity(template.len());
    let mut keep = true;
    for line in template.split_inclusive('\n') {
        let t = line.trim();
        if !python {
            if let Some(cond) = t.strip_prefix("# @if ") {
                keep = values.get(cond).is_some_and(truthy);
                continue;
            }
            if t == "# @endif" {
                keep = true;
                continue;
            }
        }
        if keep {
            text.push_str(line);
        }
    }
    let re = regex::Regex::new(r"\{([a-z_][a-z0-9_]*)\}").expect("valid pattern");
    let mut missing = None;
    let out = re.replace_all(&text, |c: &regex::Captures| match values.get(&c[1]) {
        Some(v) if python => py(v),
        Some(v) => v.to_string(),
        None => {
            missing.get_or_insert_with(|| c[1].to_string());
            String::new()
        }
    });
    if let Some(m) = missing {
        return Err(TrainError::Config(format!("handoff template {name}: no value for `{m}`")));
    }
    Ok(out.into_owned())
}

/// The value map every template reads (unused values are ignored).
fn values(
    cfg: &TrainConfig,
    model: &str,
    chat_template: Option<&str>,
    has_eval: bool,
    gpus: usize,
) -> Map<String, Value> {
    let l = &cfg.lora;
    let scheduler = match (cfg.schedule, cfg.warmup_steps > 0 || cfg.warmup_ratio > 0.0) {
        (Schedule::Linear, _) => "linear",
        (Schedule::Cosine, _) => "cosine",
        (Schedule::Constant, true) => "constant_with_warmup",
        (Schedule::Constant, false) => "constant",
    };
    let warmup = if cfg.warmup_steps > 0 { json!(cfg.warmup_steps) } else { json!(cfg.warmup_ratio) };
    let max_steps = cfg.max_steps.map_or(json!(-1), |s| json!(s));
    let v = json!({
        "model_path": model,
        "train_file": "train.jsonl",
        "eval_file": if has_eval { json!("eval.jsonl") } else { Value::Null },
        "output_dir": "output",
        "chat_template": chat_template,
        "axolotl_chat_template": if chat_template.is_some() { "jinja" } else { "tokenizer_default" },
        "prompt_format": "chat",
        "system_prompt": Value::Null,
        "max_length": cfg.max_length,
        "max_prompt_length": Value::Null,
        "packing": cfg.packing,
        "completion_only_loss": if cfg.objective == Objective::All { json!(false) } else { Value::Null },
        "assistant_only_loss": false,
        "model_dtype": "bfloat16",
        "attn_implementation": Value::Null,
        "use_peft": cfg.method != Method::Full,
        "lora_r": l.r,
        "lora_alpha": l.alpha,
        "lora_dropout": l.dropout,
        "lora_target_modules": l.targets,
        "axolotl_lora_target_modules": l.targets,
        "lora_target_linear": false,
        "use_rslora": l.rslora,
        "num_train_epochs": cfg.epochs,
        "max_steps": max_steps,
        "axolotl_max_steps": cfg.max_steps,
        "per_device_train_batch_size": cfg.batch_size,
        "per_device_eval_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "learning_rate": cfg.lr,
        "lr_scheduler_type": scheduler,
        "warmup_steps": warmup,
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        "bf16": true,
        "axolotl_bf16": "auto",
        "gradient_checkpointing": false,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "logging_steps": 10,
        "eval_steps": if cfg.eval_every > 0 { cfg.eval_every } else { 500 },
        "save_steps": if cfg.checkpoint_every > 0 { cfg.checkpoint_every } else { 500 },
        "save_total_limit": cfg.keep_checkpoints,
        "dataset_prepared_path": "output/prepared",
        "beta": cfg.dpo.beta,
        "label_smoothing": cfg.dpo.label_smoothing,
        "loss_type": "sigmoid",
        "precompute_ref_log_probs": true,
        "num_processes": gpus,
        "mixed_precision": "bf16",
    });
    let Value::Object(m) = v else { unreachable!() };
    m
}

/// The prompt (every turn but the last) and the last turn of a formatted row.
fn split_turns(row: &FormattedRow) -> (Vec<Value>, Value) {
    let turns: Vec<Value> = row.messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
    let (last, prompt) = turns.split_last().map(|(l, p)| (l.clone(), p.to_vec())).unwrap_or((Value::Null, Vec::new()));
    (prompt, last)
}

/// One SFT row as the engine reads it: TRL conversational prompt/completion (completion loss) or messages (all
/// tokens); axolotl messages (it trains the assistant turns).
fn sft_row(row: &FormattedRow, cfg: &TrainConfig, engine: HandoffEngine) -> Result<Value> {
    if row.messages.is_empty() {
        return Err(TrainError::Data(format!(
            "row `{}` has no `messages`; the handoff needs the `format` stage's conversations",
            row.id
        )));
    }
    let all: Vec<Value> = row.messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
    Ok(match (engine, cfg.objective) {
        (HandoffEngine::Trl, Objective::Completion) => {
            let (prompt, last) = split_turns(row);
            json!({"prompt": prompt, "completion": [last]})
        }
        _ => json!({"messages": all}),
    })
}

/// The raw assistant text of a rendered completion: the text before the template's EOS.
fn strip_eos<'a>(text: &'a str, eos: &str) -> &'a str {
    let t = text.trim_end();
    match (eos.is_empty(), t.strip_suffix(eos)) {
        (false, Some(s)) => s,
        _ => t,
    }
}

/// DPO rows as prompt/chosen/rejected strings (the user's question and the two raw answers), and the system prompt
/// the set used, if any.
fn dpo_rows(file: &Path, eos: &str) -> Result<(Vec<Value>, Option<String>)> {
    let text = std::fs::read_to_string(file).map_err(|e| TrainError::io(file, e))?;
    let mut out = Vec::new();
    let mut system = None;
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .map_err(|e| TrainError::Data(format!("{}:{}: not JSON: {e}", file.display(), i + 1)))?;
        if v.get("training_type").is_some() {
            let row: FormattedRow = serde_json::from_value(v)
                .map_err(|e| TrainError::Data(format!("{}:{}: not a formatted row: {e}", file.display(), i + 1)))?;
            let user = row.messages.iter().rev().find(|m| m.role == "user").map(|m| m.content.clone());
            if let Some(s) = row.messages.iter().find(|m| m.role == "system") {
                system.get_or_insert_with(|| s.content.clone());
            }
            let (Some(user), Some(chosen), Some(rejected)) = (user, row.chosen.as_deref(), row.rejected.as_deref())
            else {
                return Err(TrainError::Data(format!(
                    "{}:{}: a DPO row needs a user turn, chosen and rejected",
                    file.display(),
                    i + 1
                )));
            };
            out.push(json!({"prompt": user, "chosen": strip_eos(chosen, eos), "rejected": strip_eos(rejected, eos)}));
        } else {
            let get = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
            match (get("prompt"), get("chosen"), get("rejected")) {
                (Some(p), Some(c), Some(r)) => out.push(json!({"prompt": p, "chosen": c, "rejected": r})),
                _ => {
                    return Err(TrainError::Data(format!(
                        "{}:{}: a preference row needs prompt, chosen and rejected strings",
                        file.display(),
                        i + 1
                    )))
                }
            }
        }
    }
    Ok((out, system))
}

fn write(path: &Path, text: &str, files: &mut Vec<PathBuf>) -> Result<()> {
    medforge_data::write::write_atomic(path, text.as_bytes())?;
    files.push(path.to_path_buf());
    Ok(())
}

fn jsonl(rows: &[Value]) -> String {
    rows.iter().map(|r| format!("{r}\n")).collect()
}

/// Write the handoff files for `cfg`'s job into `out`.
pub fn export(cfg: &TrainConfig, opts: &HandoffOptions, out: &Path) -> Result<HandoffSummary> {
    cfg.validate()?;
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let model = match &opts.model {
        Some(m) => m.clone(),
        None if cfg.base.is_dir() => cfg.base.display().to_string(),
        None => {
            return Err(TrainError::Config(format!(
                "{} is a GGUF file, which TRL and axolotl do not train; export it first \
                 (`medforge model export-hf --model {} --out base-hf`) and pass --model base-hf, or pass a hub id \
                 with --model",
                cfg.base.display(),
                cfg.base.display()
            )))
        }
    };
    let spec = data::format_spec(&cfg.data)?;
    let train_file = data::split_file(&cfg.data, "train")?
        .ok_or_else(|| TrainError::Data(format!("{}: no train.jsonl", cfg.data.display())))?;
    let eval_file = data::split_file(&cfg.data, "eval")?;
    let types: Vec<TrainingType> = cfg.types.iter().filter_map(|t| TrainingType::parse(t)).collect();
    let mut files = Vec::new();
    let (mut train_rows, mut eval_rows) = (0, 0);
    let mut system_prompt = None;
    let eos = spec.as_ref().map(|s| s.eos_token.clone()).unwrap_or_default();
    for (split, file) in [("train", Some(train_file)), ("eval", eval_file)] {
        let Some(file) = file else { continue };
        let rows: Vec<Value> = if cfg.method == Method::Dpo {
            let (rows, system) = dpo_rows(&file, &eos)?;
            system_prompt = system_prompt.or(system);
            rows
        } else {
            formatted::read_jsonl(&file)?
                .iter()
                .filter(|r| {
                    r.training_type != TrainingType::Dpo && (types.is_empty() || types.contains(&r.training_type))
                })
                .map(|r| sft_row(r, cfg, opts.engine))
                .collect::<Result<_>>()?
        };
        if split == "train" {
            if rows.is_empty() {
                return Err(TrainError::Data(format!("{}: no training rows to hand off", file.display())));
            }
            train_rows = rows.len();
        } else {
            eval_rows = rows.len();
        }
        write(&out.join(format!("{split}.jsonl")), &jsonl(&rows), &mut files)?;
    }
    let mut v = values(cfg, &model, spec.as_ref().map(|s| s.chat_template.as_str()), eval_rows > 0, opts.gpus);
    if let Some(s) = system_prompt {
        v.insert("system_prompt".into(), Value::String(s));
    }
    let (name, template) = match (opts.engine, cfg.method == Method::Dpo) {
        (HandoffEngine::Trl, false) => ("sft_trl.py", SFT_TRL),
        (HandoffEngine::Trl, true) => ("dpo_trl.py", DPO_TRL),
        (HandoffEngine::Axolotl, false) => ("axolotl_sft.yml", SFT_AXOLOTL),
        (HandoffEngine::Axolotl, true) => ("axolotl_dpo.yml", DPO_AXOLOTL),
    };
    write(&out.join(name), &render(name, template, &v)?, &mut files)?;
    for (file, t) in ACCELERATE {
        write(&out.join(file), &render(file, t, &v)?, &mut files)?;
    }
    if opts.engine == HandoffEngine::Trl {
        write(&out.join("requirements.txt"), REQUIREMENTS, &mut files)?;
    }
    write(&out.join("README.md"), &readme(cfg, name, &model, opts, train_rows, eval_rows), &mut files)?;
    Ok(HandoffSummary { dir: out.to_path_buf(), files, train_rows, eval_rows })
}

fn readme(cfg: &TrainConfig, script: &str, model: &str, opts: &HandoffOptions, train: usize, eval: usize) -> String {
    let launch = match opts.engine {
        HandoffEngine::Trl => format!(
            "pip install -r requirements.txt          # after the torch build for the cluster's CUDA\n\
             python {script}                            # one GPU\n\
             accelerate launch --config_file accelerate_multi_gpu.yaml {script}   # {gpus} GPUs, DDP\n\
             accelerate launch --config_file accelerate_zero3.yaml {script}       # DeepSpeed ZeRO-3 (pip install deepspeed)\n\
             python {script} --cpu --max-steps 2        # smoke test anywhere (fp32, CPU)",
            gpus = opts.gpus
        ),
        HandoffEngine::Axolotl => format!(
            "pip install axolotl==0.19.0               # its own environment\n\
             axolotl train {script}\n\
             accelerate launch --config_file accelerate_multi_gpu.yaml -m axolotl.cli.train {script}   # {gpus} GPUs",
            gpus = opts.gpus
        ),
    };
    format!(
        "# {method} handoff ({engine})\n\n\
         Written by `medforge train export` from the same data, chat template and hyperparameters as the medforge run\n\
         (`{data}`): {train} training rows{eval_txt}, base `{model}`, {lora}max_length {ml}, batch {b} x accumulation {ga},\n\
         lr {lr} ({sched}), seed {seed}. Run the commands from this folder.\n\n\
         ```sh\n{launch}\n```\n\n\
         - The global batch is per-device batch x accumulation x GPUs: on {gpus} GPUs it is {gpus}x the medforge run's\n\
           ({b} x {ga}); lower `gradient_accumulation_steps` (or scale the learning rate) to match it.\n\
         - bf16 on GPU (medforge trains in f32); gradient checkpointing is off, as in medforge; turn it on for larger models.\n\
         - The loss covers the completion (the assistant's answer) only, as in medforge{all}.\n\
         - `requirements.txt` pins the versions these files were verified with (`bench/handoff/verify_handoff.sh`).\n",
        method = cfg.method_name(),
        engine = if opts.engine == HandoffEngine::Trl { "TRL" } else { "axolotl" },
        data = cfg.data.display(),
        eval_txt = if eval > 0 { format!(", {eval} eval rows") } else { String::new() },
        lora = if cfg.method == Method::Full {
            "full fine-tuning, ".to_string()
        } else {
            format!(
                "LoRA r {} alpha {} dropout {} on {}{}, ",
                cfg.lora.r,
                cfg.lora.alpha,
                cfg.lora.dropout,
                cfg.lora.targets.join("/"),
                if cfg.lora.rslora { " (rsLoRA)" } else { "" }
            )
        },
        ml = cfg.max_length,
        b = cfg.batch_size,
        ga = cfg.grad_accum,
        lr = cfg.lr,
        sched = format!("{:?}", cfg.schedule).to_lowercase(),
        seed = cfg.seed,
        gpus = opts.gpus,
        all = if cfg.objective == Objective::All { " (objective `all`: every token)" } else { "" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_placeholders_once_and_drops_blocks() {
        let v = values(&TrainConfig::default(), "m", Some("{{ eos_token }} {eos_token}"), false, 8);
        let py = render(
            "x.py",
            "A = {chat_template}\nB = {use_peft}\nC = {eval_file}\nD = {lora_target_modules}\n{{ x }}\n",
            &v,
        )
        .unwrap();
        assert!(py.contains(r#"A = "{{ eos_token }} {eos_token}""#), "{py}");
        assert!(py.contains("B = True") && py.contains("C = None") && py.contains(r#"D = ["q_proj", "k_proj""#));
        assert!(py.contains("{{ x }}"), "other braces pass through");
        let yml =
            render("x.yml", "a: {max_length}\n# @if eval_file\nb: {eval_file}\n# @endif\nc: {use_peft}\n", &v).unwrap();
        assert_eq!(yml, "a: 512\nc: true\n");
        let e = render("x.yml", "a: {nope}\n", &v).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn every_template_renders() {
        let v = values(&TrainConfig::default(), "m", None, true, 8);
        for (name, t) in [
            ("sft_trl.py", SFT_TRL),
            ("dpo_trl.py", DPO_TRL),
            ("axolotl_sft.yml", SFT_AXOLOTL),
            ("axolotl_dpo.yml", DPO_AXOLOTL),
            ("accelerate_multi_gpu.yaml", ACCELERATE[0].1),
        ] {
            let out = render(name, t, &v).unwrap();
            assert!(!out.contains("# @if"), "{name}");
        }
    }
}
