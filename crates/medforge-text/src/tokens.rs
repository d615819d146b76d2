//! Token counts with a Hugging Face `tokenizer.json`, for length filters and training budgets that
//! must agree with the model that will be trained.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use rayon::prelude::*;
use tokenizers::Tokenizer;

use crate::error::{Result, TextError};

/// Counts tokens with a Hugging Face tokenizer.
///
/// Truncation and padding stored in the tokenizer file are switched off: a counter must see the
/// real length (sentence-embedding tokenizers often ship with truncation and padding to 128, which
/// would make every count 128). Special tokens (BOS, `[CLS]`/`[SEP]`, ...) are not added unless
/// asked for with [`Self::with_special_tokens`], because prompts are usually counted before a chat
/// template adds them.
#[derive(Clone)]
pub struct TokenCounter {
    tokenizer: Tokenizer,
    path: PathBuf,
    add_special_tokens: bool,
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCounter")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size())
            .field("add_special_tokens", &self.add_special_tokens)
            .finish()
    }
}

impl TokenCounter {
    /// Loads a `tokenizer.json`. Errors name the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let json =
            std::fs::read_to_string(path).map_err(|source| TextError::Io { path: path.to_path_buf(), source })?;
        let tokenizer = Tokenizer::from_str(&json)
            .map_err(|e| TextError::Tokenizer { path: path.to_path_buf(), message: e.to_string() })?;
        Self::from_tokenizer(tokenizer, path)
    }

    /// Wraps an already loaded tokenizer; `label` names it in errors.
    pub fn from_tokenizer(mut tokenizer: Tokenizer, label: impl Into<PathBuf>) -> Result<Self> {
        let path = label.into();
        tokenizer
            .with_truncation(None)
            .map_err(|e| TextError::Tokenizer { path: path.clone(), message: e.to_string() })?;
        tokenizer.with_padding(None);
        Ok(TokenCounter { tokenizer, path, add_special_tokens: false })
    }

    /// Whether counts include the special tokens the tokenizer's post-processor adds.
    pub fn with_special_tokens(mut self, add: bool) -> Self {
        self.add_special_tokens = add;
        self
    }

    pub fn adds_special_tokens(&self) -> bool {
        self.add_special_tokens
    }

    /// The file the tokenizer came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Number of tokens of `text`.
    pub fn count(&self, text: &str) -> Result<usize> {
        // encode_fast skips computing character offsets, which a count does not need.
        self.tokenizer
            .encode_fast(text, self.add_special_tokens)
            .map(|e| e.len())
            .map_err(|e| TextError::Tokenizer { path: self.path.clone(), message: e.to_string() })
    }

    /// Counts of many texts, in parallel, in input order.
    pub fn count_batch(&self, texts: &[&str]) -> Result<Vec<usize>> {
        texts.par_iter().map(|t| self.count(t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::decoders::DecoderWrapper;
    use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
    use tokenizers::normalizers::NormalizerWrapper;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    use tokenizers::pre_tokenizers::PreTokenizerWrapper;
    use tokenizers::processors::template::TemplateProcessing;
    use tokenizers::processors::PostProcessorWrapper;
    use tokenizers::{AddedToken, PaddingParams, PaddingStrategy, TokenizerBuilder, TruncationParams};

    const CORPUS: &[&str] = &[
        "the patient presents with fever and cough",
        "the patient has chest pain and dyspnea",
        "fever cough dyspnea chest pain hypertension diabetes",
        "what is the most likely diagnosis",
    ];

    /// Trains a small BPE tokenizer (whitespace pre-tokenizer, `[CLS] $A [SEP]` template,
    /// truncation to 3 and padding to 16 switched on) and saves it as `tokenizer.json`.
    fn write_tokenizer(dir: &Path) -> PathBuf {
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(1000)
            .min_frequency(1)
            .show_progress(false)
            .special_tokens(vec![
                AddedToken::from("[UNK]", true),
                AddedToken::from("[CLS]", true),
                AddedToken::from("[SEP]", true),
                AddedToken::from("[PAD]", true),
            ])
            .build();
        let mut tok =
            TokenizerBuilder::<BPE, NormalizerWrapper, PreTokenizerWrapper, PostProcessorWrapper, DecoderWrapper>::new(
            )
            .with_model(BPE::builder().unk_token("[UNK]".into()).build().unwrap())
            .with_pre_tokenizer(Some(Whitespace.into()))
            .build()
            .unwrap();
        tok.train(&mut trainer, CORPUS.iter()).unwrap();
        let cls = tok.token_to_id("[CLS]").unwrap();
        let sep = tok.token_to_id("[SEP]").unwrap();
        let template = TemplateProcessing::builder()
            .try_single("[CLS] $A [SEP]")
            .unwrap()
            .special_tokens(vec![("[CLS]", cls), ("[SEP]", sep)])
            .build()
            .unwrap();
        tok.with_post_processor(Some(template));
        tok.with_truncation(Some(TruncationParams { max_length: 3, ..Default::default() })).unwrap();
        tok.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(16),
            pad_token: "[PAD]".into(),
            ..Default::default()
        }));
        let path = dir.join("tokenizer.json");
        tok.save(&path, false).unwrap();
        path
    }

    #[test]
    fn counts_with_a_trained_bpe() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_tokenizer(dir.path());
        let counter = TokenCounter::from_file(&path).unwrap();
        assert_eq!(counter.path(), path);
        assert!(!counter.adds_special_tokens());
        // Every corpus word was merged into one token; "." and "?" are their own pre-tokens.
        assert_eq!(counter.count("the patient presents with fever.").unwrap(), 6);
        assert_eq!(counter.count("").unwrap(), 0);
        // Words outside the corpus fall back to smaller pieces: more tokens than words.
        assert!(counter.count("pneumothorax").unwrap() > 1);

        let with_special = counter.clone().with_special_tokens(true);
        assert_eq!(with_special.count("fever and cough").unwrap(), 3 + 2);

        let texts = ["the patient", "what is the most likely diagnosis?", "", "chest pain"];
        let batch = counter.count_batch(&texts).unwrap();
        let single: Vec<usize> = texts.iter().map(|t| counter.count(t).unwrap()).collect();
        assert_eq!(batch, single);
        assert_eq!(batch, vec![2, 7, 0, 2]);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing-tokenizer.json");
        let err = TokenCounter::from_file(&missing).unwrap_err();
        assert!(matches!(err, TextError::Io { .. }));
        assert!(err.to_string().contains("missing-tokenizer.json"), "{err}");

        let bad = dir.path().join("broken.json");
        std::fs::write(&bad, "{\"model\": 42}").unwrap();
        let err = TokenCounter::from_file(&bad).unwrap_err();
        assert!(matches!(err, TextError::Tokenizer { .. }));
        assert!(err.to_string().contains("broken.json"), "{err}");
    }
}
