//! Nested markdown lists, read one way for everyone: the hierarchical response rewrite stage validates its
//! rewrites with [`Outline`] and evaluation scores a model's structure compliance with it, so the two can never
//! disagree about how deep a list is.
//!
//! List items are lines starting (after indentation) with `-`, `*`, `+` or `1.`/`1)`; nesting is by indentation
//! of any consistent width (a tab counts 4 columns), so a 4-space indent is one level, like a 2-space one.
//! Non-item lines are allowed only as indented continuations of an item. Reasoning blocks (`<think>…</think>`)
//! and a surrounding code fence are ignored.

use crate::answer::visible_answer;

/// The items of a nested list: `(depth, text)`, depth 1 at the top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outline {
    pub items: Vec<(usize, String)>,
}

/// Why a text is not a nested list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutlineError {
    /// A line (1-based) that is neither an item nor an indented continuation.
    NotAnItem { line: usize, text: String },
    /// No list items at all.
    Empty,
}

impl std::fmt::Display for OutlineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutlineError::NotAnItem { line, text } => {
                write!(f, "line {line} is not a list item (`{text}`); write only a nested markdown list")
            }
            OutlineError::Empty => {
                write!(f, "there is no markdown list; write the text as a nested list of `- ` items")
            }
        }
    }
}

impl Outline {
    /// Read a nested list, or say which line is not one.
    pub fn parse(text: &str) -> Result<Outline, OutlineError> {
        let text = visible_answer(text);
        let text = text.trim().trim_start_matches("```markdown").trim_start_matches("```").trim_end_matches("```");
        let mut items: Vec<(usize, String)> = Vec::new();
        // Indentations of the open levels; the first item's indentation is the top level.
        let mut stack: Vec<usize> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let indent = line
                .chars()
                .take_while(|c| *c == ' ' || *c == '\t')
                .map(|c| if c == '\t' { 4 } else { 1 })
                .sum::<usize>();
            let t = line.trim_start();
            let Some(body) = list_item(t) else {
                if items.is_empty() || indent == 0 {
                    return Err(OutlineError::NotAnItem { line: n + 1, text: t.chars().take(40).collect() });
                }
                continue;
            };
            while stack.last().is_some_and(|&top| indent < top) {
                stack.pop();
            }
            if stack.last() != Some(&indent) {
                stack.push(indent);
            }
            items.push((stack.len(), body.to_string()));
        }
        if items.is_empty() {
            return Err(OutlineError::Empty);
        }
        Ok(Outline { items })
    }

    /// The deepest level.
    pub fn depth(&self) -> usize {
        self.items.iter().map(|(d, _)| *d).max().unwrap_or(0)
    }

    /// The most items under one parent, and the first item that reached that count.
    pub fn widest(&self) -> (usize, Option<&str>) {
        let mut counts: Vec<usize> = vec![0]; // counts[d-1]: siblings so far at depth d under the current parent
        let mut best = (0, None);
        for (d, body) in &self.items {
            counts.truncate(*d);
            while counts.len() < *d {
                counts.push(0);
            }
            counts[d - 1] += 1;
            if counts[d - 1] > best.0 {
                best = (counts[d - 1], Some(body.as_str()));
            }
        }
        best
    }

    /// The first item that makes a level exceed `max_items` under one parent.
    pub fn first_overfull(&self, max_items: usize) -> Option<(usize, &str)> {
        let mut counts: Vec<usize> = vec![0];
        for (d, body) in &self.items {
            counts.truncate(*d);
            while counts.len() < *d {
                counts.push(0);
            }
            counts[d - 1] += 1;
            if counts[d - 1] > max_items {
                return Some((*d, body.as_str()));
            }
        }
        None
    }
}

/// The text of a list item line (`- x`, `* x`, `+ x`, `1. x`, `1) x`), without its marker.
pub fn list_item(t: &str) -> Option<&str> {
    for b in ["- ", "* ", "+ "] {
        if let Some(rest) = t.strip_prefix(b) {
            return Some(rest.trim());
        }
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && digits <= 3 {
        let rest = &t[digits..];
        if let Some(r) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            return Some(r.trim());
        }
    }
    None
}

/// Structure compliance of an answer: the hierarchical response rewrite pipeline's rules (depth of at least
/// `min_depth`, at most `max_items` under any parent).
#[derive(Debug, Clone, PartialEq)]
pub struct Compliance {
    /// 0 when the text is not a nested list.
    pub depth: usize,
    pub max_items_per_level: usize,
    /// Whether the text parses as a nested list at all.
    pub is_list: bool,
    pub compliant: bool,
    /// 1.0 when compliant; 0.5 when it is a list that keeps one of the two rules; else 0.
    pub score: f64,
}

/// Score `text` against the rules (the rewrite validator's structural checks, without its answer-first check).
pub fn compliance(text: &str, min_depth: usize, max_items: usize) -> Compliance {
    match Outline::parse(text) {
        Err(_) => Compliance { depth: 0, max_items_per_level: 0, is_list: false, compliant: false, score: 0.0 },
        Ok(o) => {
            let depth = o.depth();
            let widest = o.widest().0;
            let (deep, narrow) = (depth >= min_depth, widest <= max_items);
            Compliance {
                depth,
                max_items_per_level: widest,
                is_list: true,
                compliant: deep && narrow,
                score: (deep as u8 + narrow as u8) as f64 / 2.0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indentation_of_any_width_is_one_level() {
        let two = "- a\n  - b\n    - c";
        let four = "- a\n    - b\n        - c";
        let tab = "- a\n\t- b\n\t\t- c";
        for t in [two, four, tab] {
            assert_eq!(Outline::parse(t).unwrap().depth(), 3, "{t:?}");
        }
        let c = compliance("- a\n  - b\n  - c\n  - d\n  - e\n  - f\n  - g\n    - h", 3, 5);
        assert_eq!((c.depth, c.max_items_per_level, c.compliant, c.score), (3, 6, false, 0.5));
        assert_eq!(compliance("Just prose.", 3, 5).score, 0.0);
        assert!(matches!(Outline::parse("prose\n- a"), Err(OutlineError::NotAnItem { line: 1, .. })));
        assert_eq!(Outline::parse(""), Err(OutlineError::Empty));
        // A continuation line under an item is allowed.
        assert_eq!(Outline::parse("- a\n  more about a\n  - b").unwrap().items.len(), 2);
    }
}
