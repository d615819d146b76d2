//! Reading a model's answer: one parser for every caller (the `difficulty` stage during curation, `medforge eval`
//! at test time), so "the base model solved it" and "the model got it right" mean the same on the same text.
//!
//! [`extract`] goes from a model's free text to one option letter, or an explicit [`Extraction::Unparseable`] that is
//! counted, never scored as a guess. [`parse_verdict`] reads a judge's correct/incorrect, and [`visible_answer`] is
//! the text outside reasoning blocks.
//!
//! The cascade, first hit wins:
//! 0. **Strip reasoning blocks**: `<think>…</think>`, `<R>…<R/>` (and `</R>`), `<reasoning>…</reasoning>`;
//!    an unclosed opening tag drops the rest. The stages below read what is left; when nothing is left
//!    (the whole answer sits inside the block) stages 1–2 read the block text too.
//! 1. **"answer is X"** (English): `answer is X`, `answer: X`, `final answer X`, `correct option is X`,
//!    `option X is correct`, `Answer: (X)`; the *last* such statement counts (models restate). `X or Y`
//!    there is ambiguous → unparseable.
//! 2. **Korean**: `정답: X`, `정답은 X`, `답은 X`, `X가 정답`, with X a letter, `1`–`5`, `①`–`⑤` or `N번`.
//! 3. **A lone letter**: the whole text is `B`, `(B)`, `B.`, `B)` or `B: …`/`B. …` at the start.
//! 4. **The first option letter**: the first letter mention formatted as an option (`(C)`, `C)`, `C.`,
//!    `option C`, a standalone `C` not used as the article "A"); `A or C` / `A/C` / `A and C` → unparseable.
//!    (lm-eval's KorMedMCQA task takes the first `[A-E]` match; stage 4 is that with the article guard.)
//! 5. **Option text → letter**: exactly one option's text occurs in the output (whole words,
//!    case-insensitive); when one option's text contains another's, the longer counts.
//!
//! Letters are only accepted when they name one of the item's options. "None of the above" without
//! such an option, and text with no letter at all, are unparseable with their reason.
use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

/// Which cascade stage found the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    AnswerIs,
    Korean,
    LoneLetter,
    FirstLetter,
    OptionText,
}

/// Why no answer could be extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unparseable {
    Empty,
    /// Two or more letters given as the answer ("A or C").
    Ambiguous,
    /// "None of the above" and no option says so.
    NoneOfTheAbove,
    /// A letter that is not one of the options (E on a four-option item).
    OutOfRange,
    NoLetter,
}

impl Unparseable {
    pub fn code(self) -> &'static str {
        match self {
            Unparseable::Empty => "extract.empty",
            Unparseable::Ambiguous => "extract.ambiguous",
            Unparseable::NoneOfTheAbove => "extract.none_of_the_above",
            Unparseable::OutOfRange => "extract.out_of_range",
            Unparseable::NoLetter => "extract.no_letter",
        }
    }
}

/// The outcome of extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Extraction {
    Letter { letter: char, rule: Rule },
    Unparseable { reason: Unparseable },
}

impl Extraction {
    pub fn letter(&self) -> Option<char> {
        match self {
            Extraction::Letter { letter, .. } => Some(*letter),
            Extraction::Unparseable { .. } => None,
        }
    }
}

/// One option of the item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub letter: char,
    pub text: String,
}

/// Remove reasoning blocks; returns (what is left, the blocks' text).
pub fn strip_reasoning(text: &str) -> (String, String) {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"(?is)<think>(.*?)(?:</think>|$)|<R>(.*?)(?:<R\s*/>|</R>|$)|<reasoning>(.*?)(?:</reasoning>|$)")
            .expect("regex")
    });
    let mut inner = String::new();
    for c in re.captures_iter(text) {
        for g in 1..=3 {
            if let Some(m) = c.get(g) {
                inner.push_str(m.as_str());
                inner.push('\n');
            }
        }
    }
    let mut rest = re.replace_all(text, "\n").to_string();
    // A stray closing tag (the opening one was in the prompt) ends the reasoning too.
    for close in ["</think>", "</reasoning>", "<R/>", "</R>"] {
        if let Some(i) = rest.rfind(close) {
            inner.push_str(&rest[..i]);
            rest = rest[i + close.len()..].to_string();
        }
    }
    (rest, inner)
}

fn circled(c: char) -> Option<usize> {
    "①②③④⑤⑥⑦⑧⑨⑩".chars().position(|x| x == c)
}

/// A letter, digit `1`-`10` or circled digit as an option index (0-based).
fn token_index(tok: &str) -> Option<usize> {
    let t = tok.trim();
    let mut cs = t.chars();
    let c = cs.next()?;
    if cs.next().is_none() {
        if c.is_ascii_alphabetic() {
            return Some((c.to_ascii_uppercase() as u8 - b'A') as usize);
        }
        if let Some(i) = circled(c) {
            return Some(i);
        }
    }
    t.parse::<usize>().ok().filter(|&n| (1..=10).contains(&n)).map(|n| n - 1)
}

fn to_letter(idx: usize, choices: &[Choice]) -> Result<char, Unparseable> {
    let l = (b'A' + idx as u8) as char;
    if choices.is_empty() || choices.iter().any(|c| c.letter == l) {
        Ok(l)
    } else {
        Err(Unparseable::OutOfRange)
    }
}

struct Patterns {
    answer_is: Regex,
    korean: Regex,
    lone: Regex,
    first: Regex,
    none_above: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let x = r"(?:\*\*|__)?\s*[\(\[]?\s*([A-Ja-j])\s*[\)\]]?(?:\*\*|__)?";
        let alt = r"(?:\s*(?:or|and|/|,)\s*[\(\[]?([A-Ja-j])\b)?";
        Patterns {
            answer_is: Regex::new(&format!(
                r"(?i)(?:\b(?:final|correct|best|right)\s+)?\b(?:answer|option|choice)\s*(?:is|would\s+be|should\s+be|will\s+be|=|:|-)\s*(?:option|choice|letter)?\s*(?:\*\*)?:?{x}(?-i:\b|$|[.)\]*,\s]){alt}|\b(?:option|choice)\s+\(?([A-Ja-j])\)?\s+is\s+(?:the\s+)?(?:correct|right|best)"
            ))
            .expect("regex"),
            korean: Regex::new(
                r"(?:정답|답|正答)\s*(?:은|는|이|:|：|=)?\s*(?:\*\*)?\s*[\(\[]?\s*([A-Ja-j]|10|[1-9]|[①-⑩])\s*[\)\]]?\s*(?:번)?(?:\s*(?:또는|혹은|이나|나|과|와|,|/)\s*[\(\[]?([A-Ja-j]|[1-9]|[①-⑩]))?|[\(\[]?([A-Ja-j]|[1-9]|[①-⑩])[\)\]]?\s*(?:번)?\s*(?:이|가)\s*정답",
            )
            .expect("regex"),
            lone: Regex::new(r"^\s*(?:\*\*)?[\(\[]?([A-J])[\)\]]?(?:\*\*)?\s*(?:[.):]\s*.*)?$").expect("regex"),
            first: Regex::new(
                r"(?:^|[^A-Za-z0-9])(?:(?:option|choice)\s+)?(?:\(([A-J])\)|\b([A-J])[.):](?:\s|$)|\b([A-J])\b)(\s*(?:or|and|/|,)\s*\(?[A-J]\b[.)]?)?",
            )
            .expect("regex"),
            none_above: Regex::new(r"(?i)\bnone of the (?:above|options|choices)\b|\b모두\s*(?:아님|틀림|정답이\s*아)|정답\s*없음").expect("regex"),
        }
    })
}

/// Whole-word, case-insensitive containment.
fn contains_phrase(hay_lower: &str, needle: &str) -> bool {
    let n = needle.trim().to_lowercase();
    if n.is_empty() {
        return false;
    }
    let mut start = 0;
    while let Some(i) = hay_lower[start..].find(&n) {
        let a = start + i;
        let b = a + n.len();
        let before = hay_lower[..a].chars().next_back();
        let after = hay_lower[b..].chars().next();
        if !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric) {
            return true;
        }
        start = a + n.chars().next().map_or(1, char::len_utf8);
    }
    false
}

fn explicit(text: &str, choices: &[Choice]) -> Option<Result<(char, Rule), Unparseable>> {
    let p = patterns();
    // Stage 1: the last "answer is X".
    if let Some(c) = p.answer_is.captures_iter(text).last() {
        if let Some(second) = c.get(2) {
            let a = c.get(1).map(|m| m.as_str().to_ascii_uppercase());
            if a.as_deref() != Some(&second.as_str().to_ascii_uppercase()) {
                return Some(Err(Unparseable::Ambiguous));
            }
        }
        let tok = c.get(1).or_else(|| c.get(3)).map(|m| m.as_str()).unwrap_or("");
        if let Some(i) = token_index(tok) {
            return Some(to_letter(i, choices).map(|l| (l, Rule::AnswerIs)));
        }
    }
    // "The answer is <option text>".
    static ANS_TEXT: OnceLock<Regex> = OnceLock::new();
    let at = ANS_TEXT.get_or_init(|| Regex::new(r"(?i)\banswer\s*(?:is|:)\s*(.+)").expect("regex"));
    if let Some(c) = at.captures_iter(text).last() {
        let tail = c[1].to_lowercase();
        let hits: Vec<&Choice> = choices.iter().filter(|ch| contains_phrase(&tail, &ch.text)).collect();
        if let Some(best) = longest_unique(&hits) {
            return Some(Ok((best.letter, Rule::AnswerIs)));
        }
    }
    // Stage 2: Korean.
    if let Some(c) = p.korean.captures_iter(text).last() {
        if let (Some(a), Some(b)) = (c.get(1), c.get(2)) {
            if token_index(a.as_str()) != token_index(b.as_str()) {
                return Some(Err(Unparseable::Ambiguous));
            }
        }
        let tok = c.get(1).or_else(|| c.get(3)).map(|m| m.as_str()).unwrap_or("");
        if let Some(i) = token_index(tok) {
            return Some(to_letter(i, choices).map(|l| (l, Rule::Korean)));
        }
    }
    None
}

/// The option whose text is longest, if every other hit is contained in it.
fn longest_unique<'a>(hits: &[&'a Choice]) -> Option<&'a Choice> {
    let best = hits.iter().max_by_key(|c| c.text.trim().len())?;
    let bl = best.text.to_lowercase();
    if hits.iter().all(|c| c.letter == best.letter || bl.contains(&c.text.trim().to_lowercase())) {
        Some(best)
    } else {
        None
    }
}

/// Extract the answer letter from a model output.
pub fn extract(output: &str, choices: &[Choice]) -> Extraction {
    let done = |r: Result<(char, Rule), Unparseable>| match r {
        Ok((letter, rule)) => Extraction::Letter { letter, rule },
        Err(reason) => Extraction::Unparseable { reason },
    };
    let (rest, inner) = strip_reasoning(output);
    let text = rest.trim();
    if text.is_empty() {
        if inner.trim().is_empty() {
            return Extraction::Unparseable { reason: Unparseable::Empty };
        }
        return match explicit(&inner, choices) {
            Some(r) => done(r),
            None => Extraction::Unparseable { reason: Unparseable::NoLetter },
        };
    }
    if let Some(r) = explicit(text, choices) {
        return done(r);
    }
    let p = patterns();
    // Stage 3: a lone letter.
    if let Some(c) = p.lone.captures(text) {
        if !text.starts_with("A ") || text.trim() == "A" {
            let i = token_index(&c[1]).expect("letter");
            return done(to_letter(i, choices).map(|l| (l, Rule::LoneLetter)));
        }
    }
    // Stage 4: the first option-formatted letter (the article "A" followed by a word is skipped).
    for c in p.first.captures_iter(text) {
        let m = c.get(1).or_else(|| c.get(2)).or_else(|| c.get(3)).expect("a letter group");
        if c.get(3).is_some() {
            let after = &text[m.end()..];
            let before = &text[..m.start()];
            let article =
                m.as_str() == "A" && after.starts_with(' ') && after[1..].starts_with(|ch: char| ch.is_alphanumeric());
            // A capital letter inside a sentence that is followed by a lowercase word is prose.
            let prose = after.starts_with(' ')
                && after[1..].starts_with(|ch: char| ch.is_lowercase())
                && !before.trim_end().ends_with(['(', ':']);
            // "N/A", "T-B": a letter glued to a word by / or - is not an option.
            let mut bc = before.chars().rev();
            let glued = matches!(bc.next(), Some('/' | '-' | '\'')) && bc.next().is_some_and(char::is_alphanumeric);
            if article || prose || glued {
                continue;
            }
        }
        if let Some(alt) = c.get(4) {
            let other: String = alt.as_str().chars().filter(|ch| ch.is_ascii_uppercase()).collect();
            if other != m.as_str() {
                return Extraction::Unparseable { reason: Unparseable::Ambiguous };
            }
        }
        let i = token_index(m.as_str()).expect("letter");
        match to_letter(i, choices) {
            Ok(l) => return Extraction::Letter { letter: l, rule: Rule::FirstLetter },
            Err(_) => continue,
        }
    }
    // Stage 5: option text.
    let lower = text.to_lowercase();
    let hits: Vec<&Choice> = choices.iter().filter(|ch| contains_phrase(&lower, &ch.text)).collect();
    if let Some(best) = longest_unique(&hits) {
        return Extraction::Letter { letter: best.letter, rule: Rule::OptionText };
    }
    if !hits.is_empty() {
        return Extraction::Unparseable { reason: Unparseable::Ambiguous };
    }
    if p.none_above.is_match(text) {
        return Extraction::Unparseable { reason: Unparseable::NoneOfTheAbove };
    }
    Extraction::Unparseable { reason: Unparseable::NoLetter }
}

/// The answer outside reasoning blocks, trimmed; the whole text when nothing is left outside them (the answer may sit
/// inside an unfinished block).
pub fn visible_answer(text: &str) -> String {
    let (rest, _) = strip_reasoning(text);
    let rest = rest.trim();
    if rest.is_empty() {
        text.trim().to_string()
    } else {
        rest.to_string()
    }
}

/// A judge's verdict: `Some(true)` correct, `Some(false)` incorrect, `None` unreadable.
///
/// Reads JSON `{"verdict": "correct"}` / `{"correct": true}`, then a `verdict:` line, then the first word of the
/// answer with reasoning stripped ("Correct.", "INCORRECT", "정답", "오답").
pub fn parse_verdict(answer: &str) -> Option<bool> {
    let text = visible_answer(answer);
    let word = |s: &str| -> Option<bool> {
        let w = s.trim().trim_matches(|c: char| !c.is_alphanumeric() && !('가'..='힣').contains(&c)).to_lowercase();
        match w.as_str() {
            "correct" | "yes" | "true" | "정답" | "맞음" => Some(true),
            "incorrect" | "wrong" | "no" | "false" | "오답" | "틀림" | "not correct" => Some(false),
            _ => None,
        }
    };
    if let Some(start) = text.find('{') {
        if let Some(end) = text.rfind('}') {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text[start..=end]) {
                if let Some(b) = v.get("correct").and_then(|b| b.as_bool()) {
                    return Some(b);
                }
                if let Some(s) = v.get("verdict").and_then(|s| s.as_str()) {
                    return word(s);
                }
            }
        }
    }
    for line in text.lines() {
        let l = line.trim();
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("verdict") || k.trim() == "판정" {
                if let Some(b) = word(v) {
                    return Some(b);
                }
            }
        }
    }
    let first = text.split(|c: char| c.is_whitespace() || c == ',' || c == '.').find(|w| !w.is_empty())?;
    word(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch() -> Vec<Choice> {
        ["Metformin", "Insulin", "Aspirin", "None of the above"]
            .iter()
            .enumerate()
            .map(|(i, t)| Choice { letter: (b'A' + i as u8) as char, text: t.to_string() })
            .collect()
    }

    #[test]
    fn cascade() {
        let c = ch();
        assert_eq!(extract("<think>maybe A</think>The answer is B.", &c).letter(), Some('B'));
        assert_eq!(extract("정답은 3번입니다", &c).letter(), Some('C'));
        assert_eq!(extract("(D)", &c).letter(), Some('D'));
        assert_eq!(extract("A 45-year-old needs insulin", &c).letter(), Some('B'));
        assert_eq!(extract("The answer is A or C", &c), Extraction::Unparseable { reason: Unparseable::Ambiguous });
        assert_eq!(extract("I am not sure.", &c), Extraction::Unparseable { reason: Unparseable::NoLetter });
        assert_eq!(extract("The answer is E", &c), Extraction::Unparseable { reason: Unparseable::OutOfRange });
    }

    #[test]
    fn verdicts() {
        assert_eq!(parse_verdict("Correct."), Some(true));
        assert_eq!(parse_verdict("INCORRECT - the reference says X"), Some(false));
        assert_eq!(parse_verdict("{\"verdict\": \"incorrect\"}"), Some(false));
        assert_eq!(parse_verdict("```json\n{\"correct\": true}\n```"), Some(true));
        assert_eq!(parse_verdict("<think>hmm correct?</think>\nVerdict: incorrect"), Some(false));
        assert_eq!(parse_verdict("정답"), Some(true));
        assert_eq!(parse_verdict("I am not sure"), None);
    }

    #[test]
    fn visible_answer_keeps_an_unfinished_block() {
        assert_eq!(visible_answer("<think>why</think>\n B "), "B");
        assert_eq!(visible_answer("<think>the answer is E"), "<think>the answer is E");
        assert_eq!(visible_answer("<R>a<R/>ok"), "ok");
    }
}
