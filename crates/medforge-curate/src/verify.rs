//! Verify a formatted training set: what [`medforge_data::formatted::write_set`] wrote, read back from each split's
//! JSONL (`train.jsonl`, and `eval`, `holdout`, `pool` where present) and checked against the `format.json` spec
//! beside it.
//!
//! Checks, each with a stable code ([`code`]):
//!
//! * every line parses as a row, and its conversation ends with an assistant turn;
//! * no record id appears in two splits (a holdout row in train would leak);
//! * reasoning markers pair up in order in every completion (`chosen`/`rejected` too), and types 2 and 4 have a pair;
//! * types 1 and 3 carry no reasoning markers;
//! * types 3 and 4: the answer (after the reasoning) is a letter among the prompt's `A) …` lines; a type 4 row
//!   without option lines is a short open answer, which must not be a bare letter;
//! * the answer is not empty;
//! * completions (`chosen` and `rejected` too) end with the template's EOS;
//! * `text == prompt + completion`, and a DPO row's `chosen == completion`;
//! * the template round-trips: re-rendering `messages` gives back `prompt`, `completion` and `text`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Serialize;

use medforge_data::formatted::{FormatSpec, FormattedRow, Markers, TrainingType, DEFAULT_SPLIT, SPEC_FILE, SPLITS};

use crate::format::{option_letters, render_training};

/// Stable error codes.
pub mod code {
    pub const MISSING_FILE: &str = "verify.missing_file";
    pub const SPLIT_OVERLAP: &str = "verify.split_overlap";
    pub const BAD_SPEC: &str = "verify.bad_spec";
    pub const BAD_ROW: &str = "verify.bad_row";
    pub const BAD_MESSAGES: &str = "verify.bad_messages";
    pub const MARKERS_UNBALANCED: &str = "verify.markers_unbalanced";
    pub const REASONING_MISSING: &str = "verify.reasoning_missing";
    pub const MARKERS_IN_PLAIN_TYPE: &str = "verify.markers_in_plain_type";
    pub const LETTER_NOT_IN_OPTIONS: &str = "verify.letter_not_in_options";
    pub const EMPTY_ANSWER: &str = "verify.empty_answer";
    pub const MISSING_EOS: &str = "verify.missing_eos";
    pub const TEXT_NOT_PROMPT_PLUS_COMPLETION: &str = "verify.text_not_prompt_plus_completion";
    pub const DPO_PAIR: &str = "verify.dpo_pair";
    pub const TEMPLATE_MISMATCH: &str = "verify.template_mismatch";
    pub const TEMPLATE_ERROR: &str = "verify.template_error";
}

/// How many examples each error kind keeps.
pub const MAX_EXAMPLES: usize = 3;
const EXCERPT_CHARS: usize = 160;

/// One offending row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    /// The row's id (`line N` where the row could not be read).
    pub id: String,
    pub excerpt: String,
}

/// The rows with one kind of error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErrorEntry {
    pub count: u64,
    pub examples: Vec<Example>,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Rows read.
    pub rows: u64,
    /// Rows per training type name.
    pub types: BTreeMap<String, u64>,
    /// Rows per split file read.
    pub splits: BTreeMap<String, u64>,
    /// Errors per code.
    pub errors: BTreeMap<String, ErrorEntry>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// Rows with the error `code` (0 when none).
    pub fn count(&self, code: &str) -> u64 {
        self.errors.get(code).map_or(0, |e| e.count)
    }

    /// All errors found.
    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|e| e.count).sum()
    }

    fn add(&mut self, code: &str, id: &str, excerpt: impl Into<String>) {
        let e = self.errors.entry(code.to_string()).or_default();
        e.count += 1;
        if e.examples.len() < MAX_EXAMPLES {
            e.examples.push(Example { id: id.to_string(), excerpt: clip(&excerpt.into(), EXCERPT_CHARS) });
        }
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let types: Vec<String> = self.types.iter().map(|(t, n)| format!("{t} {n}")).collect();
        writeln!(f, "{} rows ({})", self.rows, types.join(", "))?;
        if self.is_ok() {
            return writeln!(f, "ok");
        }
        for (code, e) in &self.errors {
            writeln!(f, "{code}: {}", e.count)?;
            for ex in &e.examples {
                writeln!(f, "  {}: {}", ex.id, ex.excerpt)?;
            }
        }
        Ok(())
    }
}

/// Verify the formatted set in `dir` (every split's JSONL against `format.json`). Problems reading the folder are
/// reported as errors too (`verify.missing_file`, `verify.bad_spec`), so this never fails.
pub fn verify(dir: &Path) -> VerifyReport {
    let mut report = VerifyReport::default();
    let spec_path = dir.join(SPEC_FILE);
    let spec: FormatSpec = match std::fs::read_to_string(&spec_path) {
        Err(e) => {
            report.add(code::MISSING_FILE, SPEC_FILE, format!("{}: {e}", spec_path.display()));
            return report;
        }
        Ok(text) => match serde_json::from_str(&text) {
            Ok(s) => s,
            Err(e) => {
                report.add(code::BAD_SPEC, SPEC_FILE, e.to_string());
                return report;
            }
        },
    };
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut rows = Vec::new();
    for (split, file, _) in SPLITS {
        let path = dir.join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(_) if split != DEFAULT_SPLIT && !path.exists() => continue,
            Err(e) => {
                report.add(code::MISSING_FILE, file, format!("{}: {e}", path.display()));
                return report;
            }
        };
        let mut n = 0;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            n += 1;
            let row = serde_json::from_str::<FormattedRow>(line)
                .map_err(|e| (format!("{file} line {}", i + 1), format!("{e}: {line}")));
            if let Ok(r) = &row {
                match seen.get(&r.id) {
                    Some(other) if *other != split => {
                        report.add(code::SPLIT_OVERLAP, &r.id, format!("in {other} and {split}"));
                    }
                    _ => {
                        seen.insert(r.id.clone(), split);
                    }
                }
            }
            rows.push(row);
        }
        report.splits.insert(split.to_string(), n);
    }
    check_rows(rows.into_iter(), &spec, report)
}

/// Verify rows in memory against a spec.
pub fn verify_rows(rows: &[FormattedRow], spec: &FormatSpec) -> VerifyReport {
    check_rows(rows.iter().cloned().map(Ok), spec, VerifyReport::default())
}

fn check_rows(
    rows: impl Iterator<Item = Result<FormattedRow, (String, String)>>,
    spec: &FormatSpec,
    mut report: VerifyReport,
) -> VerifyReport {
    let template = match spec.chat_template().compile() {
        Ok(t) => Some(t),
        Err(e) => {
            report.add(code::TEMPLATE_ERROR, SPEC_FILE, e.to_string());
            None
        }
    };
    for row in rows {
        report.rows += 1;
        match row {
            Err((id, excerpt)) => report.add(code::BAD_ROW, &id, excerpt),
            Ok(row) => {
                *report.types.entry(row.training_type.as_str().to_string()).or_default() += 1;
                check_row(&row, spec, template.as_ref(), &mut report);
            }
        }
    }
    report
}

fn check_row(
    row: &FormattedRow,
    spec: &FormatSpec,
    template: Option<&medforge_text::chat::CompiledTemplate>,
    report: &mut VerifyReport,
) {
    let id = row.id.as_str();
    let markers = &spec.reasoning_markers;
    let t = row.training_type;

    let Some(last) = row.messages.last().filter(|m| m.role == "assistant") else {
        report.add(code::BAD_MESSAGES, id, "the conversation does not end with an assistant turn");
        return;
    };

    // The completions to check: the SFT completion, or DPO's chosen and rejected.
    let mut completions = vec![("completion", row.completion.as_str())];
    if t == TrainingType::Dpo {
        match (&row.chosen, &row.rejected) {
            (Some(chosen), Some(rejected)) => {
                if *chosen != row.completion {
                    report.add(code::DPO_PAIR, id, "chosen differs from completion");
                }
                completions.push(("rejected", rejected.as_str()));
            }
            _ => report.add(code::DPO_PAIR, id, "a DPO row without chosen and rejected"),
        }
    }

    // Marker problems make the answer unreadable: the answer checks are skipped for such rows.
    let mut markers_broken = false;
    for (name, c) in &completions {
        if t.has_reasoning() || t == TrainingType::Dpo {
            match markers.check_balanced(c) {
                Err(why) => {
                    markers_broken = true;
                    report.add(code::MARKERS_UNBALANCED, id, format!("{name}: {why}: {}", clip(c, 80)));
                }
                Ok(0) if t.has_reasoning() => {
                    markers_broken = true;
                    let what = format!("no {} … {}: {}", markers.open(), markers.close(), clip(c, 80));
                    report.add(code::REASONING_MISSING, id, what);
                }
                Ok(_) => {}
            }
        } else if markers.occur_in(c) {
            markers_broken = true;
            report.add(code::MARKERS_IN_PLAIN_TYPE, id, format!("{t} {name}: {}", clip(c, 80)));
        }
        if !spec.eos_token.is_empty() && !c.ends_with(&spec.eos_token) {
            report.add(code::MISSING_EOS, id, format!("{name} ends `{}`, not `{}`", tail(c, 40), spec.eos_token));
        }
    }

    if !markers_broken {
        check_answer(row, final_answer(&last.content, markers, t.has_reasoning()), report);
    }

    let joined_ok = row.text.len() == row.prompt.len() + row.completion.len()
        && row.text.starts_with(&row.prompt)
        && row.text.ends_with(&row.completion);
    if !joined_ok {
        let joined = format!("{}{}", row.prompt, row.completion);
        report.add(code::TEXT_NOT_PROMPT_PLUS_COMPLETION, id, diff_excerpt(&joined, &row.text));
    }

    if let Some(template) = template {
        match render_training(template, &row.messages) {
            Err(e) => report.add(code::TEMPLATE_ERROR, id, e.to_string()),
            Ok(r) => {
                if r.text != row.text {
                    report.add(code::TEMPLATE_MISMATCH, id, format!("text: {}", diff_excerpt(&r.text, &row.text)));
                } else if r.prompt != row.prompt || r.completion != row.completion {
                    report.add(
                        code::TEMPLATE_MISMATCH,
                        id,
                        format!("prompt: {}", diff_excerpt(&r.prompt, &row.prompt)),
                    );
                }
            }
        }
    }
}

/// Types 3 and 4: the answer is a letter among the prompt's options (type 4 without options: a short open answer).
fn check_answer(row: &FormattedRow, answer: &str, report: &mut VerifyReport) {
    let (id, t) = (row.id.as_str(), row.training_type);
    if answer.is_empty() {
        report.add(code::EMPTY_ANSWER, id, clip(&row.messages[row.messages.len() - 1].content, 80));
    } else if t.is_letter() {
        let letters = option_letters(&row.prompt);
        let is_letter = answer.len() == 1 && answer.as_bytes()[0].is_ascii_uppercase();
        if letters.is_empty() {
            if t == TrainingType::Letter || is_letter {
                report.add(
                    code::LETTER_NOT_IN_OPTIONS,
                    id,
                    format!("answer `{answer}`, but no `A) …` lines in the prompt"),
                );
            }
        } else if !letters.iter().any(|l| l == answer) {
            report.add(
                code::LETTER_NOT_IN_OPTIONS,
                id,
                format!("answer `{}` not in {}", clip(answer, 40), letters.join("")),
            );
        }
    }
}

/// The answer in an assistant turn: the text after the last closing marker for reasoning types, trimmed.
fn final_answer<'a>(content: &'a str, markers: &Markers, reasoning: bool) -> &'a str {
    let close = markers.close();
    let after = match content.rfind(close) {
        Some(i) if reasoning && !close.is_empty() => &content[i + close.len()..],
        _ => content,
    };
    after.trim()
}

fn clip(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

fn tail(s: &str, max: usize) -> String {
    let n = s.chars().count();
    s.chars().skip(n.saturating_sub(max)).collect()
}

/// `expected … | found …` around the first difference.
fn diff_excerpt(expected: &str, found: &str) -> String {
    let at = expected.char_indices().zip(found.chars()).find(|((_, a), b)| a != b).map(|((i, _), _)| i);
    let at = at.unwrap_or(expected.len().min(found.len()));
    let from = |s: &str| {
        let start = s.char_indices().map(|(i, _)| i).take_while(|&i| i <= at).filter(|&i| at - i <= 20).min();
        clip(&s[start.unwrap_or(at.min(s.len())).min(s.len())..], 50)
    };
    format!("differs at byte {at}: expected `{}`, found `{}`", from(expected), from(found))
}
