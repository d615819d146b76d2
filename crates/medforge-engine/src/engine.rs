//! The engine: a model, its tokenizer and chat template, and what runs on them (generation, log-likelihood,
//! perplexity). Single-threaded by design (`&mut self`); [`crate::LocalBackend`] and the server put it behind a
//! mutex and run it off the async runtime.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::quantized::GgmlDType;
use medforge_text::chat::{CompiledTemplate, Message};
use serde::Serialize;
use tokenizers::Tokenizer;

use crate::constrain::{Constraint, ConstraintCompiler, Guide};
use crate::gguf::{self, Gguf};
use crate::model::{argmax, target_logprobs, Adapter, Family, Hidden, KvCache, Model, ModelConfig, Source};
use crate::sampling::{Sampler, SamplingParams};
use crate::{EngineError, Result};

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Requantise weights at load time (`q8_0`, `q4_0`, ...): GGUF blocks are converted, safetensors quantised.
    pub requant: Option<String>,
    /// A PEFT LoRA adapter folder (`adapter_config.json`, `adapter_model.safetensors`), applied unmerged.
    pub adapter: Option<PathBuf>,
    /// A tokenizer.json to use instead of the one in the model.
    pub tokenizer: Option<PathBuf>,
    /// The name the model is served under (default: the file or folder name).
    pub name: Option<String>,
}

pub fn parse_requant(s: &str) -> Result<GgmlDType> {
    match s.to_ascii_lowercase().as_str() {
        "q8_0" => Ok(GgmlDType::Q8_0),
        "q4_0" => Ok(GgmlDType::Q4_0),
        "q4_1" => Ok(GgmlDType::Q4_1),
        "q5_0" => Ok(GgmlDType::Q5_0),
        "q4k" | "q4_k" => Ok(GgmlDType::Q4K),
        "q6k" | "q6_k" => Ok(GgmlDType::Q6K),
        "f16" => Ok(GgmlDType::F16),
        other => Err(EngineError::Unsupported(format!("requantisation to `{other}` (use q8_0, q4_0, q4_1, q4k, q6k)"))),
    }
}

/// Generation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    /// Return the log-probability of each generated token and this many alternatives (0 = none).
    pub logprobs: Option<usize>,
    /// Keep going past EOS / end-of-turn tokens (benchmarks and reference comparisons).
    pub ignore_eos: bool,
    /// The output must match this (choice, regex, JSON schema, grammar); generation ends when it is complete.
    pub constraint: Option<Constraint>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 256,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            logprobs: None,
            ignore_eos: false,
            constraint: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLogprob {
    pub token: String,
    pub id: u32,
    pub logprob: f32,
    pub top: Vec<(String, f32)>,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    pub text: String,
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    /// `stop` (EOS or a stop string) or `length`.
    pub finish_reason: String,
    pub logprobs: Vec<TokenLogprob>,
    /// Seconds spent on the prompt and on the generated tokens.
    pub prompt_secs: f64,
    pub decode_secs: f64,
}

/// A loaded model ready to run.
pub struct Engine {
    pub name: String,
    pub path: PathBuf,
    model: Model,
    tokenizer: Tokenizer,
    /// The adapter applied, if any: `(folder, rank, alpha)`.
    pub adapter: Option<(String, usize, f64)>,
    template: Option<CompiledTemplate>,
    pub template_source: Option<String>,
    bos: Option<(u32, String)>,
    eos: Option<(u32, String)>,
    add_bos: bool,
    stop_ids: Vec<u32>,
    cache: KvCache,
    /// The tokens whose keys/values are in `cache`, for prefix reuse between calls.
    cached: Vec<u32>,
    /// Built on the first constrained request (the token trie takes a moment on a large vocabulary).
    constraints: Option<ConstraintCompiler>,
}

/// End-of-turn markers that end a chat answer whatever the EOS id says.
const EOT_TOKENS: [&str; 6] = ["<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|end|>"];

impl Engine {
    /// Load a GGUF file, or a Hugging Face folder (config.json, *.safetensors, tokenizer.json).
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Self> {
        let name = opts.name.clone().unwrap_or_else(|| {
            path.file_name().map(|n| n.to_string_lossy().trim_end_matches(".gguf").to_string()).unwrap_or_default()
        });
        if path.is_dir() {
            return Self::load_hf(path, opts, name);
        }
        let mut g = Gguf::open(path)?;
        let config = ModelConfig::from_gguf(&g)?;
        let tokenizer = match &opts.tokenizer {
            Some(p) => load_tokenizer_file(p)?,
            None => gguf::tokenizer(&g)?,
        };
        let tokens = g.strings("tokenizer.ggml.tokens").unwrap_or_default();
        let tok_text = |id: Option<u64>| id.and_then(|i| tokens.get(i as usize).map(|t| (i as u32, t.clone())));
        let bos = tok_text(g.int("tokenizer.ggml.bos_token_id"));
        let eos = tok_text(g.int("tokenizer.ggml.eos_token_id"));
        let add_bos = g.int("tokenizer.ggml.add_bos_token").map(|v| v != 0).unwrap_or(false);
        let template_source = g.str("tokenizer.chat_template");
        let requant = opts.requant.as_deref().map(parse_requant).transpose()?;
        let model = Model::load(config, &mut Source::Gguf { file: &mut g, requant })?;
        Self::assemble(name, path, opts, model, tokenizer, template_source, bos, eos, add_bos)
    }

    fn load_hf(dir: &Path, opts: &LoadOptions, name: String) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cfg_path).map_err(|e| EngineError::io(&cfg_path, e))?)?;
        let config = ModelConfig::from_hf_config(&cfg)?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| EngineError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors") && !p.to_string_lossy().contains("adapter"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(EngineError::Format(format!("{}: no *.safetensors", dir.display())));
        }
        let mut map = std::collections::HashMap::new();
        for f in &files {
            map.extend(candle_core::safetensors::load(f, &candle_core::Device::Cpu)?);
        }
        let tok_path = opts.tokenizer.clone().unwrap_or_else(|| dir.join("tokenizer.json"));
        let tokenizer = load_tokenizer_file(&tok_path)?;
        let tc_path = dir.join("tokenizer_config.json");
        let tc: serde_json::Value = std::fs::read(&tc_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null);
        let special = |key: &str| -> Option<(u32, String)> {
            let v = &tc[key];
            let text = v.as_str().or_else(|| v["content"].as_str())?.to_string();
            Some((tokenizer.token_to_id(&text)?, text))
        };
        let bos = special("bos_token");
        let eos = special("eos_token").or_else(|| {
            let id = cfg["eos_token_id"].as_u64()? as u32;
            Some((id, tokenizer.id_to_token(id)?))
        });
        let add_bos = tc["add_bos_token"].as_bool().unwrap_or(false);
        let template_source = tc["chat_template"].as_str().map(str::to_string);
        let requant = opts.requant.as_deref().map(parse_requant).transpose()?;
        let family: Family = config.family;
        let model = Model::load(config, &mut Source::Safetensors { tensors: map, family, requant })?;
        Self::assemble(name, dir, opts, model, tokenizer, template_source, bos, eos, add_bos)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        name: String,
        path: &Path,
        opts: &LoadOptions,
        mut model: Model,
        tokenizer: Tokenizer,
        template_source: Option<String>,
        bos: Option<(u32, String)>,
        eos: Option<(u32, String)>,
        add_bos: bool,
    ) -> Result<Self> {
        let mut stop_ids: Vec<u32> = eos.iter().map(|(i, _)| *i).collect();
        for t in EOT_TOKENS {
            if let Some(id) = tokenizer.token_to_id(t) {
                if !stop_ids.contains(&id) {
                    stop_ids.push(id);
                }
            }
        }
        let template = match &template_source {
            Some(src) => Some(CompiledTemplate::new(
                src,
                bos.as_ref().map(|b| b.1.as_str()).unwrap_or(""),
                eos.as_ref().map(|e| e.1.as_str()).unwrap_or(""),
            )?),
            None => None,
        };
        let adapter = match &opts.adapter {
            Some(dir) => {
                let a = Adapter::load(dir)?;
                a.apply(&mut model)?;
                Some((a.dir.clone(), a.rank, a.alpha))
            }
            None => None,
        };
        let cache = model.new_cache();
        Ok(Engine {
            adapter,
            name,
            path: path.to_path_buf(),
            model,
            tokenizer,
            template,
            template_source,
            bos,
            eos,
            add_bos,
            stop_ids,
            cache,
            cached: Vec::new(),
            constraints: None,
        })
    }

    /// Check that a constraint compiles for this model's tokenizer (`BadInput` naming the problem if not).
    pub fn check_constraint(&mut self, c: &Constraint) -> Result<()> {
        self.compiler()?.matcher(c).map(|_| ())
    }

    fn compiler(&mut self) -> Result<&ConstraintCompiler> {
        if self.constraints.is_none() {
            let eos = self.eos_id().or_else(|| self.stop_ids.first().copied()).ok_or_else(|| {
                EngineError::Unsupported(format!(
                    "model `{}` names no EOS token: constrained decoding needs one",
                    self.name
                ))
            })?;
            let eot = self.stop_ids.iter().copied().find(|&i| i != eos);
            self.constraints = Some(ConstraintCompiler::new(&self.tokenizer, self.model.vocab_size(), eos, eot)?);
        }
        Ok(self.constraints.as_ref().expect("built above"))
    }

    fn guide(&mut self, params: &GenerateParams) -> Result<Option<Guide>> {
        match &params.constraint {
            Some(c) => Ok(Some(Guide::new(self.compiler()?.matcher(c)?))),
            None => Ok(None),
        }
    }

    /// Forget the KV cache (the next call runs its whole prompt).
    pub fn reset_cache(&mut self) {
        self.cache.truncate(0);
        self.cached.clear();
    }

    pub fn config(&self) -> &ModelConfig {
        &self.model.config
    }

    /// The model, for training's forward pass ([`Model::forward_tape`]) and its layer and LoRA API.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The model, to change its LoRA pairs or switch them off. The KV cache is dropped: entries computed with the
    /// old weights would be stale.
    pub fn model_mut(&mut self) -> &mut Model {
        self.reset_cache();
        &mut self.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn context_length(&self) -> usize {
        self.model.config.context_length
    }

    /// Render a conversation with the model's chat template (with the assistant header appended).
    pub fn render_chat(&self, messages: &[Message]) -> Result<String> {
        let t = self.template.as_ref().ok_or_else(|| {
            EngineError::Unsupported(format!("model `{}` has no chat template; use completions", self.name))
        })?;
        Ok(t.render(messages, true)?)
    }

    /// Token ids of a prompt: special tokens written in the text (`<|im_start|>`) are recognised, and BOS is added
    /// when the model wants one and the text does not already start with it.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode(text)?;
        if self.add_bos {
            if let Some((id, s)) = &self.bos {
                if !text.starts_with(s.as_str()) {
                    ids.insert(0, *id);
                }
            }
        }
        Ok(ids)
    }

    /// The beginning-of-sequence token's text, if the model names one.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos.as_ref().map(|b| b.1.as_str())
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos.as_ref().map(|b| b.0)
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos.as_ref().map(|e| e.0)
    }

    /// Whether prompts get a BOS token prepended ([`Engine::encode_prompt`]).
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// The end-of-sequence token's text (what closes an assistant turn in training data), if the model names one.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos.as_ref().map(|e| e.1.as_str())
    }

    /// Token ids of a text, nothing added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, false).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, true).map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    fn token_text(&self, id: u32) -> String {
        self.tokenizer.decode(&[id], false).unwrap_or_default()
    }

    /// Feed `ids` reusing the longest cached prefix (at most `reuse_max` tokens of it); returns the hidden states of
    /// the positions actually run, and the index of the first of them.
    fn feed(&mut self, ids: &[u32], reuse_max: usize) -> Result<(Hidden, usize)> {
        let common = self.cached.iter().zip(ids).take_while(|(a, b)| a == b).count();
        let reuse = common.min(reuse_max).min(ids.len().saturating_sub(1));
        self.cache.truncate(reuse);
        self.cached.truncate(reuse);
        let hidden = self.run(&ids[reuse..])?;
        Ok((hidden, reuse))
    }

    /// Forward new tokens at the end of the cache, in chunks, returning the hidden states of all of them.
    fn run(&mut self, ids: &[u32]) -> Result<Hidden> {
        const CHUNK: usize = 512;
        let mut all = Hidden { rows: 0, dim: self.model.config.hidden, data: Vec::new() };
        for chunk in ids.chunks(CHUNK) {
            let h = self.model.forward(chunk, &mut self.cache).inspect_err(|_| {
                self.cache.truncate(self.cached.len());
            })?;
            self.cached.extend_from_slice(chunk);
            all.rows += h.rows;
            all.data.extend_from_slice(&h.data);
        }
        Ok(all)
    }

    /// Generate from a prompt of token ids. `on_text` receives each new piece of text as it becomes final (never a
    /// partial UTF-8 character, never text that may turn out to be the start of a stop string) and returns `false`
    /// to stop early.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let max_tokens = self.check_prompt(prompt, params)?;
        let guide = self.guide(params)?;
        let t0 = Instant::now();
        let (hidden, _) = self.feed(prompt, usize::MAX)?;
        let mut logits = self.model.last_logits(&hidden);
        let prompt_secs = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let mut stream = Stream::new(params, max_tokens, guide);
        while let Some(next) = stream.step(self, &logits, on_text)? {
            let h = self.run(&[next])?;
            logits = self.model.last_logits(&h);
        }
        Ok(stream.finish(prompt.len(), prompt_secs, t1.elapsed().as_secs_f64(), on_text))
    }

    fn check_prompt(&self, prompt: &[u32], params: &GenerateParams) -> Result<usize> {
        if prompt.is_empty() {
            return Err(EngineError::BadInput("empty prompt".into()));
        }
        let limit = self.context_length();
        if prompt.len() >= limit {
            return Err(EngineError::ContextOverflow { needed: prompt.len() + 1, limit });
        }
        Ok(params.max_tokens.min(limit - prompt.len()))
    }

    /// Generate for several prompts at once: their prompts run in one forward pass and each decoding step runs every
    /// unfinished sequence together, so the weights are read once per step for all of them. Results are in prompt
    /// order and equal what [`Engine::generate`] gives for each prompt alone (same sampling seeds), up to float
    /// rounding. The engine's prefix cache is not used.
    pub fn generate_batch(&mut self, prompts: &[Vec<u32>], params: &GenerateParams) -> Result<Vec<Generation>> {
        let mut limits = Vec::with_capacity(prompts.len());
        let mut guides = Vec::with_capacity(prompts.len());
        for p in prompts {
            limits.push(self.check_prompt(p, params)?);
            guides.push(self.guide(params)?);
        }
        let t0 = Instant::now();
        let mut caches: Vec<KvCache> = prompts.iter().map(|_| self.model.new_cache()).collect();
        let hidden = {
            let mut seqs: Vec<(&[u32], &mut KvCache)> =
                prompts.iter().map(|p| p.as_slice()).zip(caches.iter_mut()).collect();
            self.model.forward_batch(&mut seqs)?
        };
        let prompt_secs = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let mut ends = 0;
        let mut logits: Vec<Vec<f32>> = prompts
            .iter()
            .map(|p| {
                ends += p.len();
                self.model.logits(hidden.row(ends - 1), 1)
            })
            .collect();
        let mut streams: Vec<Stream> =
            limits.iter().zip(guides).map(|(&m, guide)| Stream::new(params, m, guide)).collect();
        let mut active: Vec<usize> = (0..prompts.len()).collect();
        let mut quiet = |_: &str| true;
        while !active.is_empty() {
            let mut next_ids = Vec::new();
            let mut still = Vec::new();
            for &i in &active {
                if let Some(tok) = streams[i].step(self, &logits[i], &mut quiet)? {
                    next_ids.push([tok]);
                    still.push(i);
                }
            }
            if still.is_empty() {
                break;
            }
            let h = {
                let mut seqs: Vec<(&[u32], &mut KvCache)> = Vec::with_capacity(still.len());
                let mut rest: &mut [KvCache] = &mut caches;
                let mut base = 0;
                for (k, &i) in still.iter().enumerate() {
                    let (_, tail) = std::mem::take(&mut rest).split_at_mut(i - base);
                    let (c, tail) = tail.split_first_mut().expect("cache");
                    seqs.push((&next_ids[k], c));
                    rest = tail;
                    base = i + 1;
                }
                self.model.forward_batch(&mut seqs)?
            };
            for (k, &i) in still.iter().enumerate() {
                logits[i] = self.model.logits(h.row(k), 1);
            }
            active = still;
        }
        let decode_secs = t1.elapsed().as_secs_f64();
        Ok(streams
            .into_iter()
            .zip(prompts)
            .map(|(s, p)| s.finish(p.len(), prompt_secs, decode_secs, &mut quiet))
            .collect())
    }

    fn logprob_entry(&self, logits: &[f32], chosen: u32, top_n: usize) -> TokenLogprob {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
        let mut top: Vec<(u32, f32)> = Vec::new();
        if top_n > 0 {
            let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
            let n = top_n.min(idx.len());
            idx.select_nth_unstable_by(n - 1, |a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
            idx.truncate(n);
            idx.sort_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
            top = idx.into_iter().map(|i| (i, logits[i as usize] - lse)).collect();
        }
        TokenLogprob {
            token: self.token_text(chosen),
            id: chosen,
            logprob: logits[chosen as usize] - lse,
            top: top.into_iter().map(|(i, l)| (self.token_text(i), l)).collect(),
        }
    }

    /// Greedy/sampled generation from a chat conversation.
    pub fn chat(
        &mut self,
        messages: &[Message],
        params: &GenerateParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let prompt = self.render_chat(messages)?;
        let ids = self.encode_prompt(&prompt)?;
        self.generate(&ids, params, on_text)
    }

    /// Log-probabilities of `tokens[from..]`, each given the tokens before it (`from >= 1`).
    pub fn score_tokens(&mut self, tokens: &[u32], from: usize) -> Result<Vec<f32>> {
        if from == 0 || from > tokens.len() {
            return Err(EngineError::BadInput("score_tokens needs 1 <= from <= len".into()));
        }
        if tokens.len() > self.context_length() {
            return Err(EngineError::ContextOverflow { needed: tokens.len(), limit: self.context_length() });
        }
        let (hidden, start) = self.feed(tokens, from - 1)?;
        // hidden row r is position start + r; position p predicts token p + 1.
        let mut out = Vec::with_capacity(tokens.len() - from);
        let first_row = from - 1 - start;
        let rows = tokens.len() - from;
        let vocab = self.model.vocab_size();
        let mut r = 0;
        while r < rows {
            let n = (rows - r).min(128);
            let logits = self.model.logits(hidden.slice(first_row + r, n), n);
            out.extend(target_logprobs(&logits, vocab, &tokens[from + r..from + r + n]));
            r += n;
        }
        Ok(out)
    }

    /// Each choice's log-probability after `prompt` (nats, summed over its tokens) and its token count, in order.
    /// The prompt runs once: later choices reuse its keys and values from the prefix cache.
    pub fn score_choices(&mut self, prompt: &[u32], choices: &[String]) -> Result<Vec<(String, f64, usize)>> {
        if choices.is_empty() || choices.iter().any(|c| c.is_empty()) {
            return Err(EngineError::BadInput("choice scoring needs non-empty choices".into()));
        }
        let mut out = Vec::with_capacity(choices.len());
        for c in choices {
            let mut ids = prompt.to_vec();
            let cont = self.encode(c)?;
            ids.extend_from_slice(&cont);
            let lp = self.score_tokens(&ids, prompt.len())?;
            out.push((c.clone(), lp.iter().map(|&x| x as f64).sum(), cont.len()));
        }
        Ok(out)
    }

    /// Log-likelihood of `continuation` after `context` (lm-eval style: the continuation's tokens are those of
    /// `context + continuation` after the context's), and whether it is the greedy continuation.
    pub fn loglikelihood(&mut self, context: &str, continuation: &str) -> Result<LogLikelihood> {
        let ctx = self.encode_prompt(context)?;
        let whole = self.encode_prompt(&format!("{context}{continuation}"))?;
        let (ctx_len, tokens) = if whole.starts_with(&ctx) && whole.len() > ctx.len() {
            (ctx.len(), whole)
        } else {
            let mut t = ctx.clone();
            t.extend(self.encode(continuation)?);
            (ctx.len(), t)
        };
        if ctx_len == 0 {
            return Err(EngineError::BadInput("empty context (and the model adds no BOS)".into()));
        }
        if tokens.len() == ctx_len {
            return Err(EngineError::BadInput("empty continuation".into()));
        }
        let (hidden, start) = self.feed(&tokens, ctx_len - 1)?;
        let first_row = ctx_len - 1 - start;
        let rows = tokens.len() - ctx_len;
        let vocab = self.model.vocab_size();
        let logits = self.model.logits(hidden.slice(first_row, rows), rows);
        let targets = &tokens[ctx_len..];
        let lp = target_logprobs(&logits, vocab, targets);
        let greedy: Vec<u32> = logits.chunks_exact(vocab).map(argmax).collect();
        Ok(LogLikelihood {
            logprob: lp.iter().map(|&x| x as f64).sum(),
            tokens: rows,
            is_greedy: greedy.as_slice() == targets,
        })
    }

    /// Perplexity of a text: exp of the mean negative log-likelihood of every token after the first, in windows of
    /// the context length.
    pub fn perplexity(&mut self, text: &str) -> Result<Perplexity> {
        let ids = self.encode_prompt(text)?;
        self.perplexity_of_tokens(&ids)
    }

    pub fn perplexity_of_tokens(&mut self, ids: &[u32]) -> Result<Perplexity> {
        if ids.len() < 2 {
            return Err(EngineError::BadInput("perplexity needs at least two tokens".into()));
        }
        let mut nll = 0.0f64;
        let mut n = 0usize;
        for window in ids.chunks(self.context_length()) {
            if window.len() < 2 {
                continue;
            }
            for lp in self.score_tokens(window, 1)? {
                nll -= lp as f64;
                n += 1;
            }
        }
        Ok(Perplexity { perplexity: (nll / n as f64).exp(), nll, tokens: n })
    }
}

/// One sequence being decoded: sampling, stop tokens and strings, and the text released so far.
struct Stream<'p> {
    params: &'p GenerateParams,
    max_tokens: usize,
    sampler: Sampler,
    max_stop: usize,
    out: Vec<u32>,
    logprobs: Vec<TokenLogprob>,
    text: String,
    emitted: usize,
    finish: &'static str,
    guide: Option<Guide>,
}

impl<'p> Stream<'p> {
    fn new(params: &'p GenerateParams, max_tokens: usize, guide: Option<Guide>) -> Self {
        Stream {
            params,
            max_tokens,
            sampler: Sampler::new(params.sampling.clone()),
            max_stop: params.stop.iter().map(|s| s.len()).max().unwrap_or(0),
            out: Vec::new(),
            logprobs: Vec::new(),
            text: String::new(),
            emitted: 0,
            finish: "length",
            guide,
        }
    }

    /// Sample from `logits`; returns the token to feed next, or None when the sequence has ended.
    fn step(&mut self, e: &Engine, logits: &[f32], on_text: &mut dyn FnMut(&str) -> bool) -> Result<Option<u32>> {
        if self.out.len() >= self.max_tokens {
            return Ok(None);
        }
        let params = self.params;
        let mut complete = false;
        let next = match &mut self.guide {
            Some(g) => {
                let next = self.sampler.sample(g.mask(logits)?);
                // The mask offers EOS only once the output is a complete match.
                if e.stop_ids.contains(&next) && g.accepting() {
                    self.finish = "stop";
                    return Ok(None);
                }
                complete = g.consume(next)?;
                next
            }
            None => self.sampler.sample(logits),
        };
        if !params.ignore_eos && e.stop_ids.contains(&next) {
            self.finish = "stop";
            return Ok(None);
        }
        if let Some(n) = params.logprobs {
            self.logprobs.push(e.logprob_entry(logits, next, n));
        }
        self.out.push(next);
        self.text = e.decode(&self.out)?;
        if let Some(cut) = params.stop.iter().filter_map(|s| self.text.find(s.as_str())).min() {
            self.text.truncate(cut);
            self.finish = "stop";
            return Ok(None);
        }
        // Emit what can no longer change: not an incomplete character, not a possible stop-string start.
        if !self.text.ends_with('\u{FFFD}') {
            let text = &self.text;
            let mut safe = text.len();
            for k in (1..=self.max_stop.min(text.len())).rev() {
                let start = text.len() - k;
                if text.is_char_boundary(start) && params.stop.iter().any(|s| s.starts_with(&text[start..])) {
                    safe = start;
                    break;
                }
            }
            if safe > self.emitted {
                let keep_going = on_text(&text[self.emitted..safe]);
                self.emitted = safe;
                if !keep_going {
                    self.finish = "stop";
                    return Ok(None);
                }
            }
        }
        if complete {
            self.finish = "stop";
            return Ok(None);
        }
        if self.out.len() >= self.max_tokens {
            return Ok(None);
        }
        Ok(Some(next))
    }

    fn finish(
        mut self,
        prompt_tokens: usize,
        prompt_secs: f64,
        decode_secs: f64,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Generation {
        // Cut by the token budget in the middle of a character (a Hangul syllable is 3 bytes, often 2-3 byte
        // tokens): drop the undecodable tail instead of returning U+FFFD, as streaming never emitted it either.
        if self.finish == "length" {
            let kept = self.text.trim_end_matches('\u{FFFD}').len().max(self.emitted);
            self.text.truncate(kept);
        }
        if self.text.len() > self.emitted {
            on_text(&self.text[self.emitted..]);
        }
        Generation {
            text: self.text,
            tokens: self.out,
            prompt_tokens,
            finish_reason: self.finish.to_string(),
            logprobs: self.logprobs,
            prompt_secs,
            decode_secs,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LogLikelihood {
    pub logprob: f64,
    pub tokens: usize,
    pub is_greedy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Perplexity {
    pub perplexity: f64,
    /// Sum of negative log-likelihoods (nats) and the number of tokens scored.
    pub nll: f64,
    pub tokens: usize,
}

fn load_tokenizer_file(p: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(p).map_err(|e| EngineError::Format(format!("{}: {e}", p.display())))
}
