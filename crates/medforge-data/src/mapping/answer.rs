//! Answer keys: a letter, an option number, `B. text` or an option's text, read into an option letter.

use super::AnswerFormat;
use crate::error::{code, Location, RowError};
use crate::record::McqOption;

pub(super) fn letter_index(l: &str) -> Option<usize> {
    let b = l.as_bytes();
    (b.len() == 1 && b[0].is_ascii_uppercase()).then(|| (b[0] - b'A') as usize)
}

pub(super) fn letter(i: usize) -> String {
    ((b'A' + i as u8) as char).to_string()
}

/// A letter written loosely: `C`, `c`, `(C)`, `C.`, `C)`, `C:`.
pub(super) fn loose_letter(s: &str) -> Option<String> {
    let t = s.trim().trim_start_matches('(').trim_end_matches(['.', ')', ':']).trim();
    let mut cs = t.chars();
    match (cs.next(), cs.next()) {
        (Some(c), None) if c.is_ascii_alphabetic() => Some(c.to_ascii_uppercase().to_string()),
        _ => None,
    }
}

/// `B. text`, `B) text`, `(B) text`, `B: text` → (`B`, `text`).
pub(super) fn letter_prefix(s: &str) -> Option<(String, String)> {
    let t = s.trim_start();
    let t2 = t.strip_prefix('(').unwrap_or(t);
    let mut cs = t2.char_indices();
    let (_, c) = cs.next()?;
    if !c.is_ascii_uppercase() {
        return None;
    }
    let (i, sep) = cs.next()?;
    if !matches!(sep, '.' | ')' | ':') {
        return None;
    }
    let rest = &t2[i + 1..];
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some((c.to_string(), rest.trim().to_string()))
}

/// `field` names the answer's source field in errors (the location is only built on failure).
pub(super) fn parse_answer(
    raw: &str,
    format: AnswerFormat,
    options: &[McqOption],
    loc: &Location,
    field: &str,
) -> Result<(String, Option<String>), RowError> {
    let bad = |what: &str| {
        RowError::new(
            loc.clone().with_field(field),
            code::BAD_ANSWER,
            format!("answer `{}` is not {what}", truncate(raw, 60)),
        )
    };
    let by_index = |s: &str, base: usize| -> Option<String> {
        let n: usize = s.trim().parse().ok()?;
        let i = n.checked_sub(base)?;
        (i < 26).then(|| letter(i))
    };
    let by_text = |s: &str| -> Option<String> {
        let a = s.trim();
        options.iter().find(|o| o.text.trim() == a || o.text.trim().eq_ignore_ascii_case(a)).map(|o| o.letter.clone())
    };
    Ok(match format {
        AnswerFormat::Letter => (loose_letter(raw).ok_or_else(|| bad("a letter"))?, None),
        AnswerFormat::Index1 => (by_index(raw, 1).ok_or_else(|| bad("a 1-based option number"))?, None),
        AnswerFormat::Index0 => (by_index(raw, 0).ok_or_else(|| bad("a 0-based option number"))?, None),
        AnswerFormat::LetterText => {
            let (l, t) = letter_prefix(raw).ok_or_else(|| bad("of the form `B. text`"))?;
            (l, Some(t).filter(|t| !t.is_empty()))
        }
        AnswerFormat::Text => {
            (by_text(raw).ok_or_else(|| bad("the text of any option"))?, Some(raw.trim().to_string()))
        }
        AnswerFormat::Auto => {
            if let Some(l) = loose_letter(raw) {
                (l, None)
            } else if let Some(l) = by_index(raw, 1) {
                (l, None)
            } else if let Some((l, t)) = letter_prefix(raw) {
                (l, Some(t).filter(|t| !t.is_empty()))
            } else if let Some(l) = by_text(raw) {
                (l, Some(raw.trim().to_string()))
            } else {
                return Err(bad("a letter, an option number, `B. text`, or the text of an option"));
            }
        }
    })
}

pub(super) fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}
