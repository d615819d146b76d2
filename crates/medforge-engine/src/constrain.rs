//! Constrained decoding: the output must match a choice among strings, a regex, a JSON schema or a Lark grammar.
//! `llguidance` compiles the constraint and, at each step, gives the set of tokens that keep the output inside it
//! (a token-trie walk, not a scan of the vocabulary); the sampler only sees those. Built once per engine from the
//! tokenizer's bytes per token.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::Value;
use tokenizers::Tokenizer;

use crate::{EngineError, Result};

/// What the generated text must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// Exactly one of these strings.
    Choice(Vec<String>),
    /// The whole output matches this regex (Rust `regex` syntax, anchored at both ends).
    Regex(String),
    /// A JSON value valid against this schema. Compact (no free whitespace) unless the schema says otherwise in
    /// `x-guidance`: small models otherwise tend to emit whitespace until they run out of tokens.
    JsonSchema(Value),
    /// A grammar in llguidance's Lark dialect (`start: ...`; `/regex/` terminals; `%json {schema}` inlined).
    Lark(String),
}

impl Constraint {
    /// Any JSON object (OpenAI's `response_format: {"type": "json_object"}`).
    pub fn json_object() -> Self {
        Constraint::JsonSchema(serde_json::json!({"type": "object"}))
    }

    fn grammar(&self) -> Result<TopLevelGrammar> {
        Ok(match self {
            Constraint::Choice(options) => {
                if options.is_empty() || options.iter().any(|o| o.is_empty()) {
                    return Err(EngineError::BadInput("a choice constraint needs non-empty options".into()));
                }
                let alts: Vec<String> = options.iter().map(|o| regex_syntax::escape(o)).collect();
                TopLevelGrammar::from_regex(&alts.join("|"))
            }
            Constraint::Regex(rx) => TopLevelGrammar::from_regex(rx),
            Constraint::JsonSchema(schema) => {
                if !schema.is_object() && !schema.is_boolean() {
                    return Err(EngineError::BadInput("a JSON schema must be an object".into()));
                }
                let mut schema = schema.clone();
                if let Some(obj) = schema.as_object_mut() {
                    obj.entry("x-guidance").or_insert_with(|| serde_json::json!({"whitespace_flexible": false}));
                }
                TopLevelGrammar::from_json_schema(schema)
            }
            Constraint::Lark(src) => TopLevelGrammar::from_lark(src.clone()),
        })
    }

    /// A short stable description (for logs and errors).
    pub fn kind(&self) -> &'static str {
        match self {
            Constraint::Choice(_) => "choice",
            Constraint::Regex(_) => "regex",
            Constraint::JsonSchema(_) => "json_schema",
            Constraint::Lark(_) => "grammar",
        }
    }
}

/// The tokenizer as llguidance sees it: each token's bytes in a trie, and a way to tokenize literal text.
struct TokenizerBytes {
    trie: TokTrie,
    tokenizer: Arc<Tokenizer>,
}

impl TokenizerEnv for TokenizerBytes {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    /// llguidance also asks for partial UTF-8 (bytes a grammar forces mid-character): the valid prefix goes through
    /// the tokenizer, the rest byte by byte through the trie (a lossy conversion would turn it into U+FFFD).
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        let valid = match std::str::from_utf8(s) {
            Ok(_) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        let text = std::str::from_utf8(&s[..valid]).expect("valid prefix");
        let mut ids = self.tokenizer.encode(text, false).map(|e| e.get_ids().to_vec()).unwrap_or_default();
        ids.extend(self.trie.greedy_tokenize(&s[valid..]));
        ids
    }
}

/// Compiles constraints for one model's tokenizer.
pub struct ConstraintCompiler {
    factory: ParserFactory,
}

impl ConstraintCompiler {
    /// `vocab` is the model's output size (logit rows), which may exceed the tokenizer's; `eos` ends a sequence once
    /// the constraint is satisfied, `end_of_turn` too (chat models).
    pub fn new(tokenizer: &Tokenizer, vocab: usize, eos: u32, end_of_turn: Option<u32>) -> Result<Self> {
        let json = serde_json::to_value(tokenizer).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let mut words = llguidance::token_bytes_from_tokenizer_json(&json)
            .map_err(|e| EngineError::Tokenizer(format!("token bytes for constrained decoding: {e}")))?;
        words.resize(vocab.max(words.len()), Vec::new());
        let info = TokRxInfo {
            vocab_size: words.len() as u32,
            tok_eos: eos,
            tok_bos: None,
            tok_pad: None,
            tok_unk: None,
            tok_end_of_turn: end_of_turn,
        };
        let env: TokEnv =
            Arc::new(TokenizerBytes { trie: TokTrie::from(&info, &words), tokenizer: Arc::new(tokenizer.clone()) });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        factory.quiet();
        Ok(ConstraintCompiler { factory })
    }

    /// A fresh matcher for one sequence; a constraint that does not compile is `BadInput` naming the problem.
    pub fn matcher(&self, c: &Constraint) -> Result<Matcher> {
        let parser = self
            .factory
            .create_parser(c.grammar()?)
            .map_err(|e| EngineError::BadInput(format!("the {} constraint does not compile: {e}", c.kind())))?;
        Ok(Matcher::new(Ok(parser)))
    }
}

/// One sequence's constraint state during decoding.
pub(crate) struct Guide {
    matcher: Matcher,
    /// Logits with disallowed tokens at -inf (reused between steps).
    masked: Vec<f32>,
}

impl Guide {
    pub(crate) fn new(matcher: Matcher) -> Self {
        Guide { matcher, masked: Vec::new() }
    }

    /// `logits` with every token the constraint forbids set to -inf.
    pub(crate) fn mask(&mut self, logits: &[f32]) -> Result<&[f32]> {
        let mask = self.matcher.compute_mask_or_eos().map_err(|e| self.error("mask", e))?;
        self.masked.clear();
        self.masked.extend_from_slice(logits);
        for (i, l) in self.masked.iter_mut().enumerate() {
            if !mask.is_allowed(i as TokenId) {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(&self.masked)
    }

    /// Whether the output so far is a complete match (EOS may end it).
    pub(crate) fn accepting(&mut self) -> bool {
        self.matcher.is_stopped() || self.matcher.is_accepting().unwrap_or(false)
    }

    /// Advance past `token`; returns true when nothing more may follow.
    pub(crate) fn consume(&mut self, token: u32) -> Result<bool> {
        self.matcher.consume_token(token).map_err(|e| self.error("token", e))?;
        Ok(self.matcher.is_stopped())
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> EngineError {
        let detail = self.matcher.get_error().unwrap_or_else(|| e.to_string());
        EngineError::BadInput(format!("constrained decoding ({what}): {detail}"))
    }
}
