//! Training rows as token ids: the `format` stage's rows (prompt + completion, rendered with the one chat template
//! of curation, training and evaluation), DPO triples and `dpo_pairs.jsonl`, and plain text. Truncation and dropped
//! rows are counted; data that cannot train is an error naming the file and what to do.
//!
//! A row's ids are `encode_prompt(prompt) ++ encode(completion)`, so the boundary between prompt and completion is
//! exact whatever the tokenizer merges across it (TRL tokenizes `prompt + completion` at once and warns when the
//! prompt's ids are not a prefix; here they always are).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use medforge_data::formatted::{self, FormatSpec, FormattedRow, TrainingType};
use medforge_engine::engine::Engine;
use medforge_text::chat::Message;
use serde::Serialize;

use crate::config::Objective;
use crate::error::{Result, TrainError};

/// One training sequence: the loss covers `ids[n_prompt..]`, each predicted from the position before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub id: String,
    pub kind: Option<TrainingType>,
    pub ids: Vec<u32>,
    /// At least 1 (the first token is never a target).
    pub n_prompt: usize,
    /// Multiple-choice rows answered with a letter: the token ids of the option letters (`A`, `B`, ...) the
    /// question offers, for accuracy during training; empty otherwise.
    pub choices: Vec<u32>,
}

impl Example {
    /// Loss tokens.
    pub fn targets(&self) -> usize {
        self.ids.len() - self.n_prompt
    }
}

/// One preference pair: a prompt and two completions (each ending with the template's EOS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub id: String,
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
}

impl Pair {
    /// `prompt ++ chosen` and `prompt ++ rejected`.
    pub fn sequences(&self) -> [Vec<u32>; 2] {
        [[&self.prompt[..], &self.chosen[..]].concat(), [&self.prompt[..], &self.rejected[..]].concat()]
    }

    pub fn tokens(&self) -> usize {
        2 * self.prompt.len() + self.chosen.len() + self.rejected.len()
    }
}

/// What loading did to the rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DataStats {
    pub file: PathBuf,
    pub rows: usize,
    pub used: usize,
    /// Rows cut to `max_length` (still used when loss tokens remain).
    pub truncated: usize,
    /// Rows without a loss token (empty completion, or the prompt alone filled `max_length`).
    pub dropped_no_loss: usize,
    /// Rows of training types not selected.
    pub skipped_type: usize,
    pub tokens: usize,
    pub loss_tokens: usize,
    pub by_type: BTreeMap<String, usize>,
}

/// Where a split's rows are: a formatted folder's `<split>.jsonl`, or (train only) a JSONL file itself.
pub fn split_file(data: &Path, split: &str) -> Result<Option<PathBuf>> {
    if data.is_dir() {
        let (jsonl, _) = formatted::split_paths(data, split)?;
        return Ok(jsonl.exists().then_some(jsonl));
    }
    Ok((split == "train").then(|| data.to_path_buf()))
}

/// `format.json` of a formatted folder, if there is one.
pub fn format_spec(data: &Path) -> Result<Option<FormatSpec>> {
    let p = if data.is_dir() { data.join(formatted::SPEC_FILE) } else { data.with_file_name(formatted::SPEC_FILE) };
    Ok(if p.is_file() { Some(FormatSpec::load(&p)?) } else { None })
}

/// Check that the set was formatted for this model's tokenizer: the template's EOS must be one token of it (a set
/// formatted with Gemma's `<end_of_turn>` for a ChatML model would teach the model to spell the marker out).
pub fn check_template(engine: &Engine, spec: &FormatSpec, spec_path: &Path) -> Result<()> {
    for (what, text) in [("eos_token", spec.eos_token.as_str()), ("bos_token", spec.bos_token.as_str())] {
        if text.is_empty() {
            continue;
        }
        let ids = engine.encode(text)?;
        if ids.len() != 1 {
            return Err(TrainError::Data(format!(
                "{}: {what} `{text}` of template `{}` is {} tokens for the base model's tokenizer, not one: the set was \
                 formatted for another model family; re-run the `format` stage with the base model's template \
                 (e.g. `chatml` for SmolLM2/Qwen, `gemma` for Gemma)",
                spec_path.display(),
                spec.template,
                ids.len()
            )));
        }
    }
    Ok(())
}

/// Tokenize one formatted row into an example, or `None` when no loss token survives.
fn example(
    engine: &Engine,
    row: &FormattedRow,
    objective: Objective,
    max_length: usize,
    st: &mut DataStats,
) -> Result<Option<Example>> {
    let (mut ids, n_prompt) = match objective {
        Objective::Completion => {
            let p = engine.encode_prompt(&row.prompt)?;
            let c = engine.encode(&row.completion)?;
            let n = p.len().max(1);
            ([p, c].concat(), n)
        }
        Objective::All => {
            let text = if row.text.is_empty() { format!("{}{}", row.prompt, row.completion) } else { row.text.clone() };
            (engine.encode_prompt(&text)?, 1)
        }
    };
    if ids.len() > max_length {
        ids.truncate(max_length);
        st.truncated += 1;
    }
    if ids.len() <= n_prompt {
        st.dropped_no_loss += 1;
        return Ok(None);
    }
    let choices = if row.training_type == TrainingType::Letter && objective == Objective::Completion {
        option_letter_ids(engine, &row.prompt)?
    } else {
        Vec::new()
    };
    Ok(Some(Example { id: row.id.clone(), kind: Some(row.training_type), ids, n_prompt, choices }))
}

/// The option letters of a multiple-choice prompt (lines starting `A)` or `A.`), as single token ids; empty when
/// the prompt has fewer than two or a letter is not one token.
fn option_letter_ids(engine: &Engine, prompt: &str) -> Result<Vec<u32>> {
    let mut letters: Vec<char> = prompt
        .lines()
        .filter_map(|l| {
            let mut c = l.trim_start().chars();
            match (c.next(), c.next()) {
                (Some(x @ 'A'..='J'), Some(')' | '.')) => Some(x),
                _ => None,
            }
        })
        .collect();
    letters.sort_unstable();
    letters.dedup();
    if letters.len() < 2 {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(letters.len());
    for l in letters {
        match engine.encode(&l.to_string())?.as_slice() {
            [id] => ids.push(*id),
            _ => return Ok(Vec::new()),
        }
    }
    Ok(ids)
}

/// Load and tokenize the rows of `file` for SFT (or continued pretraining with [`Objective::All`]), keeping the
/// training types in `types` (all when empty; DPO triples never).
pub fn load_examples(
    engine: &Engine,
    file: &Path,
    objective: Objective,
    types: &[TrainingType],
    max_length: usize,
) -> Result<(Vec<Example>, DataStats)> {
    let rows = formatted::read_jsonl(file)?;
    let mut st = DataStats { file: file.to_path_buf(), rows: rows.len(), ..Default::default() };
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        if row.training_type == TrainingType::Dpo || (!types.is_empty() && !types.contains(&row.training_type)) {
            st.skipped_type += 1;
            continue;
        }
        if let Some(ex) = example(engine, row, objective, max_length, &mut st)? {
            st.tokens += ex.ids.len();
            st.loss_tokens += ex.targets();
            *st.by_type.entry(row.training_type.as_str().to_string()).or_default() += 1;
            out.push(ex);
        }
    }
    st.used = out.len();
    Ok((out, st))
}

/// The error for a training set with nothing to train on, saying why.
pub fn nothing_to_train(st: &DataStats, max_length: usize) -> TrainError {
    let why = if st.rows == 0 {
        "the file has no rows".to_string()
    } else if st.skipped_type == st.rows {
        "no row has a selected training type ([train] types)".to_string()
    } else if st.dropped_no_loss > 0 && st.truncated >= st.dropped_no_loss {
        format!(
            "every row lost its loss tokens to truncation at max_length = {max_length} ({} truncated): raise \
             [train] max_length or shorten the prompts",
            st.truncated
        )
    } else {
        format!(
            "no row has a loss token after masking the prompt ({} rows with an empty completion); check that the \
             rows have completions, or use objective = \"all\" for plain text",
            st.dropped_no_loss
        )
    };
    TrainError::Data(format!("{}: nothing to train on: {why}", st.file.display()))
}

/// Load preference pairs: formatted DPO triples (`training_type = "dpo"`, already rendered), or the `dpo_pairs`
/// stage's `dpo_pairs.jsonl` (`prompt`, `chosen`, `rejected` as plain text; rendered here with the base model's chat
/// template, completions closed with its EOS).
pub fn load_pairs(engine: &Engine, file: &Path, max_length: usize) -> Result<(Vec<Pair>, DataStats)> {
    let text = std::fs::read_to_string(file).map_err(|e| TrainError::io(file, e))?;
    let mut st = DataStats { file: file.to_path_buf(), ..Default::default() };
    let eos = engine.eos_token().unwrap_or_default().to_string();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        st.rows += 1;
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| TrainError::Data(format!("{}:{}: not JSON: {e}", file.display(), i + 1)))?;
        let field = |k: &str| -> Result<String> {
            v.get(k).and_then(|x| x.as_str()).map(str::to_string).ok_or_else(|| {
                TrainError::Data(format!(
                    "{}:{}: field `{k}` is missing or not a string; a preference row needs prompt, chosen and rejected",
                    file.display(),
                    i + 1
                ))
            })
        };
        let (prompt, chosen, rejected) = (field("prompt")?, field("chosen")?, field("rejected")?);
        let id = v.get("id").and_then(|x| x.as_str()).map(str::to_string).unwrap_or_else(|| format!("line{}", i + 1));
        // Formatted triples carry the rendered prompt (and `training_type`); stage pairs are plain text.
        let rendered = v.get("training_type").is_some();
        let (prompt_text, close) = if rendered {
            (prompt, String::new())
        } else {
            (engine.render_chat(&[Message::user(prompt)])?, eos.clone())
        };
        let mut p = engine.encode_prompt(&prompt_text)?;
        let mut c = engine.encode(&format!("{chosen}{close}"))?;
        let mut r = engine.encode(&format!("{rejected}{close}"))?;
        if c.is_empty() || r.is_empty() {
            st.dropped_no_loss += 1;
            continue;
        }
        // Keep the prompt's end (it holds the question's tail and the assistant header), at most half the budget
        // when the completions need room; then cut the completions.
        let longest = c.len().max(r.len());
        if p.len() + longest > max_length {
            st.truncated += 1;
            let keep = p.len().min(max_length.saturating_sub(longest).max(max_length / 2));
            p.drain(..p.len() - keep);
            c.truncate(max_length.saturating_sub(p.len()));
            r.truncate(max_length.saturating_sub(p.len()));
            if c.is_empty() || r.is_empty() {
                st.dropped_no_loss += 1;
                continue;
            }
        }
        let pair = Pair { id, prompt: p, chosen: c, rejected: r };
        st.tokens += pair.tokens();
        st.loss_tokens += pair.chosen.len() + pair.rejected.len();
        out.push(pair);
    }
    st.used = out.len();
    *st.by_type.entry("dpo".into()).or_default() = out.len();
    Ok((out, st))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_train_says_why() {
        let st = DataStats { file: "t.jsonl".into(), rows: 3, truncated: 3, dropped_no_loss: 3, ..Default::default() };
        let e = nothing_to_train(&st, 16).to_string();
        assert!(e.contains("t.jsonl") && e.contains("max_length = 16"), "{e}");
        let st = DataStats { file: "t.jsonl".into(), rows: 2, dropped_no_loss: 2, ..Default::default() };
        assert!(nothing_to_train(&st, 16).to_string().contains("after masking"));
    }
}
