//! Chat templates: a conversation rendered to the exact string a chat model was trained on.
//!
//! Every template, built-in or loaded from a Hugging Face `tokenizer_config.json`, is a Jinja source rendered with
//! minijinja in the environment `transformers` uses for `apply_chat_template`: `trim_blocks` and `lstrip_blocks` on,
//! Python string/dict methods (`.strip()`, `.startswith()`, `.items()`, ... via `minijinja-contrib`'s pycompat),
//! `raise_exception(msg)`, a Python-compatible `tojson`, and the variables `messages`, `add_generation_prompt`,
//! `bos_token` and `eos_token`. Undefined variables are lenient, as in Jinja2, so `{% if tools %}` works.
//!
//! The built-ins reproduce the official templates' output:
//!
//! | template | conversation `system S, user U, assistant A` | EOS |
//! |---|---|---|
//! | `llama3` | `<\|begin_of_text\|><\|start_header_id\|>system<\|end_header_id\|>\n\nS<\|eot_id\|>` ... `A<\|eot_id\|>` | `<\|eot_id\|>` |
//! | `gemma` | `<bos><start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n` | `<end_of_turn>` |
//! | `chatml`/`qwen` | `<\|im_start\|>system\nS<\|im_end\|>\n<\|im_start\|>user\nU<\|im_end\|>\n` ... | `<\|im_end\|>` |
//! | `mistral` | `<s>[INST] S\n\nU [/INST]A</s>` | `</s>` |
//!
//! Gemma's EOS is the end-of-turn token, the one the instruction-tuned model stops on. The built-in ChatML adds no
//! default system prompt (Qwen2.5's own template adds "You are Qwen..." when a conversation has none); load the
//! model's `tokenizer_config.json` for byte-exact Qwen output without a system message.
//!
//! This module knows nothing about datasets: the local inference engine uses it as well as the training formats.

use std::path::{Path, PathBuf};

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};

/// Errors loading or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("unknown chat template `{name}` (built-ins: {}); use a tokenizer_config.json path or `jinja:<source>`", ChatTemplate::NAMES.join(", "))]
    UnknownName { name: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("chat template: {0:#}")]
    Template(#[from] minijinja::Error),
}

pub type Result<T, E = ChatError> = std::result::Result<T, E>;

/// One chat turn. `role` is `system`, `user` or `assistant` (templates map `assistant` to e.g. Gemma's `model`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message { role: role.into(), content: content.into() }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Message::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Message::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Message::new("assistant", content)
    }
}

/// A chat template: one of the built-ins, or any Jinja source with its special tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTemplate {
    /// Llama 3 / 3.1 / 3.2 Instruct turn format (without 3.1's date header).
    Llama3,
    /// Gemma instruction format; a system message is folded into the first user turn (as Gemma 3 does).
    Gemma,
    /// ChatML, as used by Qwen, SmolLM2 and others.
    ChatMl,
    /// Mistral Instruct `[INST]` format; a system message is prepended to the first user turn.
    Mistral,
    /// A Hugging Face-style Jinja template.
    Jinja { source: String, bos_token: String, eos_token: String },
}

const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = \
'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}\
{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}\
{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

const GEMMA: &str = r#"{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {{- message['content'] | trim -}}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\n' }}
{%- endif -%}
"#;

const CHATML: &str = r#"{%- for message in messages -%}
    {{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\n' -}}
{%- endif -%}
"#;

const MISTRAL: &str = r#"{%- if messages[0]['role'] == 'system' -%}
    {%- set system_message = messages[0]['content'] -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{{- bos_token -}}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') -}}
    {%- endif -%}
    {%- if message['role'] == 'user' -%}
        {%- if loop.first and system_message is defined -%}
            {{- '[INST] ' + system_message + '\n\n' + message['content'] + ' [/INST]' -}}
        {%- else -%}
            {{- '[INST] ' + message['content'] + ' [/INST]' -}}
        {%- endif -%}
    {%- elif message['role'] == 'assistant' -%}
        {{- message['content'] + eos_token -}}
    {%- else -%}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') -}}
    {%- endif -%}
{%- endfor -%}
"#;

impl ChatTemplate {
    /// Names accepted by [`ChatTemplate::from_name`].
    pub const NAMES: [&'static str; 5] = ["llama3", "gemma", "chatml", "qwen", "mistral"];

    /// A built-in template by name: `llama3`, `gemma`, `chatml`, `qwen` (= `chatml`), `mistral`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "llama3" | "llama-3" | "llama" => Ok(ChatTemplate::Llama3),
            "gemma" => Ok(ChatTemplate::Gemma),
            "chatml" | "qwen" => Ok(ChatTemplate::ChatMl),
            "mistral" => Ok(ChatTemplate::Mistral),
            _ => Err(ChatError::UnknownName { name: name.to_string() }),
        }
    }

    /// A template from a spec string: a built-in name, `jinja:<source>` (no special tokens), or the path of a
    /// `tokenizer_config.json` (or of the model folder holding one).
    pub fn from_spec(spec: &str) -> Result<Self> {
        if let Some(source) = spec.strip_prefix("jinja:") {
            return Ok(ChatTemplate::Jinja {
                source: source.to_string(),
                bos_token: String::new(),
                eos_token: String::new(),
            });
        }
        match ChatTemplate::from_name(spec) {
            Ok(t) => Ok(t),
            Err(e) => {
                let path = Path::new(spec);
                if path.exists() {
                    ChatTemplate::from_tokenizer_config(path)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Load `chat_template`, `bos_token` and `eos_token` from a Hugging Face `tokenizer_config.json`.
    ///
    /// `chat_template` may be a string or a list of `{name, template}` (the one named `default` is used); when the
    /// config has none, a `chat_template.jinja` or `chat_template.json` beside it is used, as newer `transformers`
    /// save them. Tokens may be strings or `{"content": ...}` objects. `path` may also be the model folder.
    pub fn from_tokenizer_config(path: impl AsRef<Path>) -> Result<Self> {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join("tokenizer_config.json");
        }
        let io = |p: &Path, e| ChatError::Io { path: p.to_path_buf(), source: e };
        let cfg_err = |p: &Path, m: String| ChatError::Config { path: p.to_path_buf(), message: m };
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        let cfg: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| cfg_err(&path, format!("not valid JSON: {e}")))?;
        let token = |key: &str| -> String {
            match cfg.get(key) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Object(o)) => {
                    o.get("content").and_then(|c| c.as_str()).unwrap_or_default().to_string()
                }
                _ => String::new(),
            }
        };
        let source = match cfg.get("chat_template") {
            Some(t) => template_from_value(t).map_err(|m| cfg_err(&path, m))?,
            None => {
                let dir = path.parent().unwrap_or(Path::new("."));
                let jinja = dir.join("chat_template.jinja");
                let json = dir.join("chat_template.json");
                if jinja.is_file() {
                    std::fs::read_to_string(&jinja).map_err(|e| io(&jinja, e))?
                } else if json.is_file() {
                    let text = std::fs::read_to_string(&json).map_err(|e| io(&json, e))?;
                    let v: serde_json::Value =
                        serde_json::from_str(&text).map_err(|e| cfg_err(&json, format!("not valid JSON: {e}")))?;
                    let t = v.get("chat_template").ok_or_else(|| cfg_err(&json, "no `chat_template` key".into()))?;
                    template_from_value(t).map_err(|m| cfg_err(&json, m))?
                } else {
                    return Err(cfg_err(&path, "no `chat_template` (nor chat_template.jinja beside it)".into()));
                }
            }
        };
        Ok(ChatTemplate::Jinja { source, bos_token: token("bos_token"), eos_token: token("eos_token") })
    }

    /// The short name: the built-in's name, or `jinja`.
    pub fn name(&self) -> &'static str {
        match self {
            ChatTemplate::Llama3 => "llama3",
            ChatTemplate::Gemma => "gemma",
            ChatTemplate::ChatMl => "chatml",
            ChatTemplate::Mistral => "mistral",
            ChatTemplate::Jinja { .. } => "jinja",
        }
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        match self {
            ChatTemplate::Llama3 => LLAMA3,
            ChatTemplate::Gemma => GEMMA,
            ChatTemplate::ChatMl => CHATML,
            ChatTemplate::Mistral => MISTRAL,
            ChatTemplate::Jinja { source, .. } => source,
        }
    }

    pub fn bos_token(&self) -> &str {
        match self {
            ChatTemplate::Llama3 => "<|begin_of_text|>",
            ChatTemplate::Gemma => "<bos>",
            ChatTemplate::ChatMl => "",
            ChatTemplate::Mistral => "<s>",
            ChatTemplate::Jinja { bos_token, .. } => bos_token,
        }
    }

    /// The token that ends an assistant turn (what generation stops on).
    pub fn eos_token(&self) -> &str {
        match self {
            ChatTemplate::Llama3 => "<|eot_id|>",
            ChatTemplate::Gemma => "<end_of_turn>",
            ChatTemplate::ChatMl => "<|im_end|>",
            ChatTemplate::Mistral => "</s>",
            ChatTemplate::Jinja { eos_token, .. } => eos_token,
        }
    }

    /// The same template as a `Jinja` value (built-ins become their source and tokens).
    pub fn to_jinja(&self) -> ChatTemplate {
        ChatTemplate::Jinja {
            source: self.source().to_string(),
            bos_token: self.bos_token().to_string(),
            eos_token: self.eos_token().to_string(),
        }
    }

    /// Parse the template once, for rendering many conversations.
    pub fn compile(&self) -> Result<CompiledTemplate> {
        CompiledTemplate::new(self.source(), self.bos_token(), self.eos_token())
    }

    /// Render a conversation. With `add_generation_prompt`, the header of the assistant turn to generate is appended.
    /// Compiles the template on every call; use [`ChatTemplate::compile`] for many conversations.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.compile()?.render(messages, add_generation_prompt)
    }
}

fn template_from_value(v: &serde_json::Value) -> Result<String, String> {
    match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Array(list) => {
            let named = |n: &str| {
                list.iter().find(|t| t.get("name").and_then(|x| x.as_str()) == Some(n)).and_then(|t| t.get("template"))
            };
            match named("default").and_then(|t| t.as_str()) {
                Some(s) => Ok(s.to_string()),
                None => {
                    let names: Vec<&str> = list.iter().filter_map(|t| t.get("name").and_then(|x| x.as_str())).collect();
                    Err(format!("`chat_template` list has no `default` entry (has: {})", names.join(", ")))
                }
            }
        }
        _ => Err("`chat_template` is neither a string nor a list of {name, template}".to_string()),
    }
}

/// A parsed template, ready to render many conversations. `Send + Sync`.
pub struct CompiledTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

const NAME: &str = "chat_template";

impl CompiledTemplate {
    /// Compile a Jinja source with its special tokens.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, source.to_string())?;
        Ok(CompiledTemplate { env, bos_token: bos_token.to_string(), eos_token: eos_token.to_string() })
    }

    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// Render a conversation (see [`ChatTemplate::render`]).
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self.env.get_template(NAME)?;
        let ctx = minijinja::context! {
            messages => Value::from_serialize(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        Ok(tmpl.render(ctx)?)
    }
}

impl std::fmt::Debug for CompiledTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, format!("raise_exception: {message}")))
}

/// `tojson` as `transformers` defines it: `json.dumps(x, ensure_ascii=False, indent=indent, sort_keys=..)`, so
/// `{"a": 1, "b": [1, 2]}` with Python's separators and no HTML escaping (minijinja's own escapes `<`, `>`, `&`, `'`).
/// One difference remains: minijinja is built without `preserve_order`, so template-made maps list keys sorted.
fn tojson(value: &Value, args: Kwargs) -> Result<Value, minijinja::Error> {
    let indent: Option<usize> = args.get("indent")?;
    let sort_keys: Option<bool> = args.get("sort_keys")?;
    args.assert_all_used()?;
    let json = serde_json::to_value(value)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    python_json(&json, indent, sort_keys.unwrap_or(false), 0, &mut out);
    Ok(Value::from_safe_string(out))
}

fn python_json(v: &serde_json::Value, indent: Option<usize>, sort: bool, depth: usize, out: &mut String) {
    use serde_json::Value as J;
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * depth));
        }
    };
    let sep = if indent.is_some() { "," } else { ", " };
    match v {
        J::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                python_json(item, indent, sort, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        J::Object(map) if !map.is_empty() => {
            let mut entries: Vec<(&String, &J)> = map.iter().collect();
            if sort {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push_str(": ");
                python_json(item, indent, sort, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convo() -> Vec<Message> {
        vec![
            Message::system("You are a doctor."),
            Message::user("What lowers blood sugar?"),
            Message::assistant("Insulin."),
        ]
    }

    #[test]
    fn chat_llama3_exact() {
        let t = ChatTemplate::Llama3;
        assert_eq!(
            t.render(&convo(), false).unwrap(),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a doctor.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nWhat lowers blood sugar?<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nInsulin.<|eot_id|>"
        );
        assert_eq!(
            t.render(&convo()[..2], true).unwrap(),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a doctor.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nWhat lowers blood sugar?<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        assert_eq!(t.eos_token(), "<|eot_id|>");
    }

    #[test]
    fn chat_gemma_exact() {
        let t = ChatTemplate::Gemma;
        assert_eq!(
            t.render(&convo(), false).unwrap(),
            "<bos><start_of_turn>user\nYou are a doctor.\n\nWhat lowers blood sugar?<end_of_turn>\n\
             <start_of_turn>model\nInsulin.<end_of_turn>\n"
        );
        assert_eq!(
            t.render(&convo()[..2], true).unwrap(),
            "<bos><start_of_turn>user\nYou are a doctor.\n\nWhat lowers blood sugar?<end_of_turn>\n\
             <start_of_turn>model\n"
        );
        // Without a system message the first user turn has no prefix.
        assert_eq!(
            t.render(&convo()[1..], false).unwrap(),
            "<bos><start_of_turn>user\nWhat lowers blood sugar?<end_of_turn>\n<start_of_turn>model\nInsulin.<end_of_turn>\n"
        );
        assert_eq!(t.eos_token(), "<end_of_turn>");
    }

    #[test]
    fn chat_chatml_exact() {
        let t = ChatTemplate::from_name("qwen").unwrap();
        assert_eq!(t, ChatTemplate::ChatMl);
        assert_eq!(
            t.render(&convo(), false).unwrap(),
            "<|im_start|>system\nYou are a doctor.<|im_end|>\n<|im_start|>user\nWhat lowers blood sugar?<|im_end|>\n\
             <|im_start|>assistant\nInsulin.<|im_end|>\n"
        );
        assert_eq!(
            t.render(&convo()[..2], true).unwrap(),
            "<|im_start|>system\nYou are a doctor.<|im_end|>\n<|im_start|>user\nWhat lowers blood sugar?<|im_end|>\n\
             <|im_start|>assistant\n"
        );
        assert_eq!(t.eos_token(), "<|im_end|>");
    }

    #[test]
    fn chat_mistral_exact() {
        let t = ChatTemplate::Mistral;
        assert_eq!(
            t.render(&convo(), false).unwrap(),
            "<s>[INST] You are a doctor.\n\nWhat lowers blood sugar? [/INST]Insulin.</s>"
        );
        assert_eq!(
            t.render(&convo()[..2], true).unwrap(),
            "<s>[INST] You are a doctor.\n\nWhat lowers blood sugar? [/INST]"
        );
        let multi = [Message::user("Q1"), Message::assistant("A1"), Message::user("Q2"), Message::assistant("A2")];
        assert_eq!(t.render(&multi, false).unwrap(), "<s>[INST] Q1 [/INST]A1</s>[INST] Q2 [/INST]A2</s>");
        assert_eq!(t.eos_token(), "</s>");
    }

    #[test]
    fn chat_raise_exception_surfaces_message() {
        let bad = [Message::user("a"), Message::user("b")];
        let err = ChatTemplate::Mistral.render(&bad, false).unwrap_err().to_string();
        assert!(err.contains("roles must alternate"), "{err}");
        let err = ChatTemplate::Gemma.render(&bad, false).unwrap_err().to_string();
        assert!(err.contains("roles must alternate"), "{err}");
    }

    /// SmolLM2-Instruct's `chat_template`, as shipped in its tokenizer_config.json.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// Qwen2.5-Instruct's `chat_template` (tools branch included).
    const QWEN25: &str = r#"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

    fn jinja(source: &str) -> ChatTemplate {
        ChatTemplate::Jinja { source: source.into(), bos_token: String::new(), eos_token: "<|im_end|>".into() }
    }

    #[test]
    fn chat_real_world_chatml_templates_match_builtin() {
        for source in [SMOLLM2, QWEN25] {
            let t = jinja(source);
            for (n, gen) in [(3, false), (2, true), (2, false)] {
                assert_eq!(
                    t.render(&convo()[..n], gen).unwrap(),
                    ChatTemplate::ChatMl.render(&convo()[..n], gen).unwrap(),
                    "{n} messages, add_generation_prompt={gen}"
                );
            }
        }
        // Their default system prompts appear only without a system message.
        let out = jinja(QWEN25).render(&convo()[1..2], true).unwrap();
        assert!(out.starts_with("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud."), "{out}");
    }

    #[test]
    fn chat_pycompat_methods_and_loop_vars() {
        let src = "{% for m in messages %}{% if loop.first %}[{{ messages[0]['role'] }}]{% endif %}\
                   {{ m['content'].strip().upper() }}{% if m.content.startswith(' ') %}!{% endif %}\
                   {% if not loop.last %}|{% endif %}{% endfor %}";
        let t = jinja(src);
        let out = t.render(&[Message::system("  a "), Message::user("b")], false).unwrap();
        assert_eq!(out, "[system]A!|B");
    }

    #[test]
    fn chat_tojson_is_python_style() {
        // (Map keys come out sorted: minijinja is built without `preserve_order`.)
        let t = jinja("{{ {'args': [1, '<x>'], 'name': 'f'} | tojson }}|{{ [1] | tojson(indent=2) }}");
        assert_eq!(t.render(&[], false).unwrap(), "{\"args\": [1, \"<x>\"], \"name\": \"f\"}|[\n  1\n]");
    }

    #[test]
    fn chat_from_tokenizer_config_string_list_and_token_objects() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer_config.json");
        let cfg = serde_json::json!({
            "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
            "eos_token": "<|im_end|>",
            "chat_template": SMOLLM2,
        });
        std::fs::write(&p, cfg.to_string()).unwrap();
        let t = ChatTemplate::from_tokenizer_config(&p).unwrap();
        assert_eq!(t.bos_token(), "<s>");
        assert_eq!(t.eos_token(), "<|im_end|>");
        assert_eq!(t.render(&convo(), false).unwrap(), ChatTemplate::ChatMl.render(&convo(), false).unwrap());
        // The folder works too, and so does from_spec with a path.
        assert_eq!(ChatTemplate::from_tokenizer_config(dir.path()).unwrap(), t);
        assert_eq!(ChatTemplate::from_spec(p.to_str().unwrap()).unwrap(), t);

        let cfg = serde_json::json!({
            "eos_token": {"content": "</s>"},
            "chat_template": [
                {"name": "tool_use", "template": "TOOLS"},
                {"name": "default", "template": "{{ messages[0]['content'] }}{{ eos_token }}"},
            ],
        });
        std::fs::write(&p, cfg.to_string()).unwrap();
        let t = ChatTemplate::from_tokenizer_config(&p).unwrap();
        assert_eq!(t.render(&convo(), false).unwrap(), "You are a doctor.</s>");
        assert_eq!(t.bos_token(), "");

        let cfg = serde_json::json!({"chat_template": [{"name": "tool_use", "template": "x"}]});
        std::fs::write(&p, cfg.to_string()).unwrap();
        let err = ChatTemplate::from_tokenizer_config(&p).unwrap_err().to_string();
        assert!(err.contains("no `default`") && err.contains("tool_use"), "{err}");

        // No chat_template key: chat_template.jinja beside it.
        std::fs::write(&p, r#"{"eos_token": "<e>"}"#).unwrap();
        std::fs::write(dir.path().join("chat_template.jinja"), "J{{ eos_token }}").unwrap();
        assert_eq!(ChatTemplate::from_tokenizer_config(&p).unwrap().render(&[], false).unwrap(), "J<e>");
    }

    #[test]
    fn chat_from_name_and_spec() {
        assert_eq!(ChatTemplate::from_name("LLAMA3").unwrap(), ChatTemplate::Llama3);
        assert_eq!(ChatTemplate::from_name("gemma").unwrap(), ChatTemplate::Gemma);
        assert_eq!(ChatTemplate::from_name("chatml").unwrap(), ChatTemplate::ChatMl);
        assert_eq!(ChatTemplate::from_name("mistral").unwrap(), ChatTemplate::Mistral);
        let err = ChatTemplate::from_name("vicuna").unwrap_err().to_string();
        assert!(err.contains("llama3, gemma, chatml, qwen, mistral"), "{err}");
        let t = ChatTemplate::from_spec("jinja:{{ messages|length }}").unwrap();
        assert_eq!(t.render(&convo(), false).unwrap(), "3");
        assert!(ChatTemplate::from_spec("/nonexistent/tokenizer_config.json").is_err());
        // A built-in and its Jinja form render the same.
        for t in [ChatTemplate::Llama3, ChatTemplate::Gemma, ChatTemplate::ChatMl, ChatTemplate::Mistral] {
            assert_eq!(t.to_jinja().render(&convo(), false).unwrap(), t.render(&convo(), false).unwrap());
        }
    }

    #[test]
    fn chat_compiled_template_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CompiledTemplate>();
    }
}
