//! Reading a model's answer to a multiple-choice question: strip reasoning blocks, then a cascade of
//! ever weaker signals, each only trusted when it names one of the question's own option letters.
//!
//! Models answer "The answer is (C).", "정답: 3번", "**B**", "C", "B. Metformin", or just the option's
//! text; reasoning models wrap all of that after a `<think>` block that itself mentions every letter.
//! The order matters: an explicit statement beats a lone letter beats an option's text.

use std::sync::OnceLock;

use medforge_data::record::McqOption;
use regex::Regex;
use serde::Serialize;

/// Which rule of the cascade found the letter (reported, so a run can be audited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// "answer is X", "Answer: X", "정답: X", "정답은 X", `\boxed{X}`, "final answer X".
    Explicit,
    /// The whole answer is one letter, possibly decorated: `C`, `(C)`, `**C.**`, or it starts `C.`/`C)`.
    Lone,
    /// A numbered answer mapped to a letter: `3번`, `③`, "정답: 3" (1 → A).
    Number,
    /// The answer contains exactly one option's text.
    OptionText,
}

/// Remove reasoning blocks: `<think>…</think>`, `<R>…<R/>` (or `</R>`), `<reasoning>…</reasoning>`.
/// An opened block that never closes hides the rest of the text, unless nothing is left outside it, in
/// which case the text is returned unchanged (the answer may sit inside an unfinished block).
pub fn strip_reasoning(text: &str) -> String {
    const BLOCKS: &[(&str, &[&str])] =
        &[("<think>", &["</think>"]), ("<reasoning>", &["</reasoning>"]), ("<R>", &["<R/>", "</R>"])];
    let mut out = text.to_string();
    for (open, closes) in BLOCKS {
        while let Some(start) = out.find(open) {
            let after = start + open.len();
            let end = closes.iter().filter_map(|c| out[after..].find(c).map(|i| after + i + c.len())).min();
            match end {
                Some(end) => out.replace_range(start..end, ""),
                None => {
                    let head = out[..start].trim();
                    if head.is_empty() {
                        return text.trim().to_string();
                    }
                    out.truncate(start);
                    break;
                }
            }
        }
        // A stray closing tag (the model's template opened the block for it): keep what follows.
        for c in *closes {
            if let Some(i) = out.rfind(c) {
                out = out[i + c.len()..].to_string();
            }
        }
    }
    out.trim().to_string()
}

fn explicit_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(?ix)
            (?: answer \s* (?:is|:|=|-|would\s+be|should\s+be) | correct\s+(?:option|choice)\s*(?:is|:)
              | 정답\s*(?:은|는|:|=)? | 답\s*(?:은|는|:) | \\boxed\{ )
            \s* [\(\[\*\x22']* \s* ([A-Za-z]|[1-9]|[①-⑨]) (?:\s*번)? [\)\]\*\x22'}]* (?:$|[^A-Za-z0-9])",
        )
        .expect("valid regex")
    })
}

fn lone_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[\s\(\[\*\x22']*([A-Za-z])(?:[\)\]\*\x22'.:]+(?:\s|$)|\s*$)").expect("valid regex"))
}

fn number_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?:^|[^0-9])([1-9])\s*번|([①-⑨])").expect("valid regex"))
}

/// `1` / `①` → the first option's letter.
fn number_to_letter(s: &str, options: &[McqOption]) -> Option<String> {
    let c = s.chars().next()?;
    let n = match c {
        '1'..='9' => c as u32 - '0' as u32,
        '①'..='⑨' => c as u32 - '①' as u32 + 1,
        _ => return None,
    };
    options.get(n as usize - 1).map(|o| o.letter.clone())
}

/// The option whose letter is `s` (case-insensitive).
fn letter_of(s: &str, options: &[McqOption]) -> Option<String> {
    options.iter().find(|o| o.letter.eq_ignore_ascii_case(s)).map(|o| o.letter.clone())
}

fn norm(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase().trim_matches(['.', ' ']).to_string()
}

/// Extract the chosen option letter from a model's answer, or `None` when no rule is sure.
pub fn extract_letter(answer: &str, options: &[McqOption]) -> Option<(String, Method)> {
    let text = strip_reasoning(answer);
    if text.is_empty() || options.is_empty() {
        return None;
    }
    // The last explicit statement wins: models restate their final choice at the end.
    let mut explicit = None;
    for c in explicit_re().captures_iter(&text) {
        let g = &c[1];
        // "the answer is a rare disease": a lower-case `a` followed by a word is an article.
        let after = &text[c.get(1).map_or(0, |m| m.end())..];
        if g.chars().all(|c| c.is_ascii_lowercase())
            && after.starts_with(' ')
            && after.trim_start().starts_with(char::is_alphabetic)
        {
            continue;
        }
        let l = if g.chars().all(|c| c.is_ascii_alphabetic()) {
            letter_of(g, options)
        } else {
            number_to_letter(g, options)
        };
        if let Some(l) = l {
            let m = if g.chars().all(|c| c.is_ascii_alphabetic()) { Method::Explicit } else { Method::Number };
            explicit = Some((l, m));
        }
    }
    if explicit.is_some() {
        return explicit;
    }
    if let Some(c) = lone_re().captures(&text) {
        // "A patient ..." is prose, not an answer: a lone `A`/`I` must stand alone or be decorated.
        let whole = c.get(0).map(|m| m.as_str()).unwrap_or("");
        let decorated = whole.trim() != c[1].to_string() || text.trim().chars().count() == 1;
        if decorated || !matches!(&c[1], "A" | "a" | "I") {
            if let Some(l) = letter_of(&c[1], options) {
                return Some((l, Method::Lone));
            }
        }
    }
    if let Some(c) = number_re().captures(&text) {
        let g = c.get(1).or_else(|| c.get(2)).map(|m| m.as_str()).unwrap_or("");
        if let Some(l) = number_to_letter(g, options) {
            return Some((l, Method::Number));
        }
    }
    // Option text: exactly one option's text appears (longest texts first, so "Type 2 diabetes"
    // is not also counted as "diabetes").
    let t = norm(&text);
    let mut opts: Vec<&McqOption> = options.iter().filter(|o| !norm(&o.text).is_empty()).collect();
    opts.sort_by_key(|o| std::cmp::Reverse(o.text.chars().count()));
    let mut found: Vec<&McqOption> = Vec::new();
    let mut rest = t.clone();
    for o in opts {
        let n = norm(&o.text);
        if rest.contains(&n) {
            found.push(o);
            rest = rest.replace(&n, " ");
        }
    }
    match found.as_slice() {
        [one] => Some((one.letter.clone(), Method::OptionText)),
        _ => None,
    }
}

/// A judge's verdict: `Some(true)` correct, `Some(false)` incorrect, `None` unreadable.
///
/// Reads JSON `{"verdict": "correct"}` / `{"correct": true}`, then the first word of the answer with
/// reasoning stripped ("Correct.", "INCORRECT", "정답", "오답"), then a `verdict:` line.
pub fn parse_verdict(answer: &str) -> Option<bool> {
    let text = strip_reasoning(answer);
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

    fn opts(n: usize) -> Vec<McqOption> {
        ["Aspirin", "Metformin", "Type 2 diabetes", "Diabetes", "Warfarin"][..n]
            .iter()
            .enumerate()
            .map(|(i, t)| McqOption { letter: ((b'A' + i as u8) as char).to_string(), text: t.to_string() })
            .collect()
    }

    fn ex(s: &str) -> Option<(String, Method)> {
        extract_letter(s, &opts(5))
    }

    #[test]
    fn cascade() {
        let l = |s: &str| ex(s).map(|(l, _)| l);
        assert_eq!(ex("The answer is (C)."), Some(("C".into(), Method::Explicit)));
        assert_eq!(ex("Answer: b"), Some(("B".into(), Method::Explicit)));
        assert_eq!(l("A is tempting, but the correct answer is **D**."), Some("D".into()));
        assert_eq!(l("정답: E"), Some("E".into()));
        assert_eq!(l("정답은 B입니다"), Some("B".into()));
        assert_eq!(l("The answer is Amoxicillin"), None, "a word, not a letter");
        assert_eq!(ex("정답: 3번"), Some(("C".into(), Method::Number)));
        assert_eq!(ex("③ 입니다"), Some(("C".into(), Method::Number)));
        assert_eq!(l("\\boxed{E}"), Some("E".into()));
        assert_eq!(ex("C"), Some(("C".into(), Method::Lone)));
        assert_eq!(ex("(B)"), Some(("B".into(), Method::Lone)));
        assert_eq!(ex("B. Metformin lowers glucose"), Some(("B".into(), Method::Lone)));
        assert_eq!(ex("A"), Some(("A".into(), Method::Lone)));
        assert_eq!(ex("A patient with diabetes"), Some(("D".into(), Method::OptionText)));
        assert_eq!(ex("It is type 2 diabetes."), Some(("C".into(), Method::OptionText)), "longest text first");
        assert_eq!(ex("Either aspirin or warfarin"), None, "two options named");
        assert_eq!(ex("<think>A? B? the answer is C</think>The answer is D"), Some(("D".into(), Method::Explicit)));
        assert_eq!(l("<R>maybe A</R>Answer: B"), Some("B".into()));
        assert_eq!(l("<R>maybe A<R/>Answer: B"), Some("B".into()));
        assert_eq!(l("<reasoning>so A</reasoning>\nB"), Some("B".into()));
        assert_eq!(l("<think>the answer is E"), Some("E".into()), "unclosed block with nothing outside it");
        assert_eq!(l("The answer is F"), None, "F is not an option");
        assert_eq!(l("The answer is a rare disease"), None, "an article, not a letter");
        assert_eq!(l(""), None);
        assert_eq!(extract_letter("B", &opts(4)).map(|x| x.0), Some("B".into()));
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
}
