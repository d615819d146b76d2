//! A multiple-choice benchmark measured during training (the MedGemma Korean pipeline's KorMedMCQA checks between
//! training rounds): each item is asked with the training set's own type-3 prompt (its system prompt, the question
//! and `A) …` option lines, rendered with the base's chat template) and answered by the option letter with the
//! highest probability at the answer position. One forward pass per item, no generation, so a check of 200 items
//! stays cheap enough to run after every round.
//!
//! Per item it records the prediction, whether it was right and the loss of the right letter (over the option
//! letters), which give the accuracy, `division_report.json` (accuracy, count and average loss per division) and the
//! failed-question history.

use std::collections::BTreeMap;
use std::path::Path;

use medforge_engine::engine::Engine;
use medforge_engine::model::{log_sum_exp, Model};
use medforge_eval::runner::{load_benchmark, Benchmark, EvalItem};
use medforge_text::chat::Message;
use serde::Serialize;

use medforge_eval::report::division_stats;
pub use medforge_eval::report::DivisionStats;

use crate::error::{Result, TrainError};

struct Item {
    id: String,
    division: String,
    ids: Vec<u32>,
    /// (letter, token id) of each option.
    options: Vec<(char, u32)>,
    answer: char,
    preview: String,
}

/// A loaded benchmark, tokenized for one model.
pub struct Probe {
    pub benchmark: String,
    items: Vec<Item>,
}

/// One item's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemOutcome {
    pub id: String,
    pub division: String,
    pub expected: char,
    pub predicted: char,
    pub correct: bool,
    /// −log p(right letter), over the option letters.
    pub loss: f64,
    pub preview: String,
}

/// A probe's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeResult {
    /// Percent, as the MedGemma Korean pipeline reports it.
    pub accuracy: f64,
    pub count: usize,
    pub avg_loss: f64,
    pub items: Vec<ItemOutcome>,
}

impl ProbeResult {
    /// `division_report.json`'s entries (the MedGemma Korean pipeline's schema, owned by medforge-eval).
    pub fn by_division(&self) -> BTreeMap<String, DivisionStats> {
        division_stats(self.items.iter().map(|it| (it.division.as_str(), it.correct, Some(it.loss))))
    }
}

/// The user turn of a type-3 item, as the `format` stage writes it: context, question, one `A) …` line per option.
fn user_content(item: &EvalItem) -> String {
    let mut s = String::new();
    if let Some(c) = item.context.as_deref().filter(|c| !c.trim().is_empty()) {
        s.push_str(c.trim());
        s.push_str("\n\n");
    }
    s.push_str(item.question.trim());
    s.push('\n');
    for (l, t) in &item.choices {
        s.push_str(&format!("\n{l}) {}", t.split_whitespace().collect::<Vec<_>>().join(" ")));
    }
    s
}

impl Probe {
    /// Load `limit` items of `bench` from `path` and tokenize them for `engine`, with `system` as the system turn
    /// (the training set's type-3 system prompt).
    pub fn load(engine: &Engine, bench: &str, path: &Path, limit: usize, system: Option<&str>) -> Result<Probe> {
        let b = Benchmark::parse(bench).ok_or_else(|| {
            TrainError::Config(format!(
                "[train.loop] benchmark `{bench}`: one of {}",
                Benchmark::ALL.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ")
            ))
        })?;
        let raw = load_benchmark(b, path, Some(limit))?;
        let mut items = Vec::with_capacity(raw.len());
        for it in raw {
            let mut msgs = Vec::new();
            if let Some(s) = system.filter(|s| !s.is_empty()) {
                msgs.push(Message::system(s));
            }
            msgs.push(Message::user(user_content(&it)));
            let prompt = engine.render_chat(&msgs)?;
            let ids = engine.encode_prompt(&prompt)?;
            let mut options = Vec::new();
            for (l, _) in &it.choices {
                match engine.encode(&l.to_string())?.as_slice() {
                    [id] => options.push((*l, *id)),
                    _ => {
                        return Err(TrainError::Data(format!(
                            "{}: option letter `{l}` is not one token for this tokenizer",
                            path.display()
                        )))
                    }
                }
            }
            let preview: String = it.question.chars().take(100).collect();
            items.push(Item { id: it.id, division: it.subject, ids, options, answer: it.answer, preview });
        }
        Ok(Probe { benchmark: b.name().to_string(), items })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Ask every item.
    pub fn run(&self, model: &Model) -> Result<ProbeResult> {
        let mut outcomes = Vec::with_capacity(self.items.len());
        for group in self.items.chunks(4) {
            let seqs: Vec<&[u32]> = group.iter().map(|i| i.ids.as_slice()).collect();
            let hidden = model.forward_full(&seqs)?;
            let mut off = 0;
            let last: Vec<f32> = group
                .iter()
                .flat_map(|it| {
                    off += it.ids.len();
                    hidden.row(off - 1).to_vec()
                })
                .collect();
            let logits = model.logits_dense(&last, group.len());
            let vocab = logits.len() / group.len();
            for (k, it) in group.iter().enumerate() {
                let row = &logits[k * vocab..(k + 1) * vocab];
                let scores: Vec<f32> = it.options.iter().map(|(_, t)| row[*t as usize]).collect();
                let best = scores.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i);
                let predicted = it.options[best].0;
                let lse = log_sum_exp(&scores);
                let right =
                    it.options.iter().position(|(l, _)| *l == it.answer).map_or(f32::NEG_INFINITY, |i| scores[i]);
                outcomes.push(ItemOutcome {
                    id: it.id.clone(),
                    division: it.division.clone(),
                    expected: it.answer,
                    predicted,
                    correct: predicted == it.answer,
                    loss: f64::from(lse - right),
                    preview: it.preview.clone(),
                });
            }
        }
        let n = outcomes.len().max(1);
        let correct = outcomes.iter().filter(|o| o.correct).count();
        Ok(ProbeResult {
            accuracy: 100.0 * correct as f64 / n as f64,
            count: outcomes.len(),
            avg_loss: outcomes.iter().map(|o| o.loss).sum::<f64>() / n as f64,
            items: outcomes,
        })
    }
}
