//! The reference pipelines' task-specific scores (MedGemma Korean training, hierarchical response rewrite): the type-4 composite, the reasoning-format score, hierarchy
//! compliance and Korean proficiency.
use serde::Serialize;

use medforge_text::answer::strip_reasoning;
use medforge_text::lang::TermList;
use medforge_text::shingle::hangul_ratio;

use crate::metrics::squad::normalize_answer;

/// The MedGemma Korean pipeline's target for the type-4 score.
pub const TYPE4_TARGET: f64 = 1.2;

/// Type-4 composite: 1.0 for the exact answer (SQuAD-normalised match, or the same option letter),
/// +0.1 when the reasoning has at least 10 whitespace tokens, +0.05 per distinct key term the
/// reasoning mentions (case-insensitive), capped at 1.4.
pub fn type4_composite(predicted: &str, expected: &str, reasoning: &str, key_terms: &[String]) -> f64 {
    let mut s = 0.0;
    if !expected.trim().is_empty() && normalize_answer(predicted) == normalize_answer(expected) {
        s += 1.0;
    }
    if reasoning.split_whitespace().count() >= 10 {
        s += 0.1;
    }
    let lower = reasoning.to_lowercase();
    let mut seen = std::collections::HashSet::new();
    for t in key_terms {
        let t = t.trim().to_lowercase();
        if !t.is_empty() && lower.contains(&t) && seen.insert(t) {
            s += 0.05;
        }
    }
    f64::min(s, 1.4)
}

/// `(reasoning, final answer)` of a generation, trimmed: [`medforge_text::answer::strip_reasoning`], the reader
/// of `<think>`, `<R>…<R/>` and `<reasoning>` blocks that answer extraction uses too.
pub fn split_reasoning(text: &str) -> (String, String) {
    let (rest, inner) = strip_reasoning(text);
    (inner.trim().to_string(), rest.trim().to_string())
}

/// Whether a final answer states `expected`: the same SQuAD-normalised text, or, for a one-letter `expected`,
/// the same first letter (`B`, `B)`, `B. Metformin`).
pub fn answer_matches(answer: &str, expected: &str) -> bool {
    let e = expected.trim();
    if e.chars().count() == 1 && e.chars().all(|c| c.is_ascii_alphabetic()) {
        let first = answer.trim().chars().next();
        let second = answer.trim().chars().nth(1);
        return first.is_some_and(|c| c.eq_ignore_ascii_case(&e.chars().next().unwrap_or(' ')))
            && second.is_none_or(|c| !c.is_alphanumeric());
    }
    !e.is_empty() && normalize_answer(answer) == normalize_answer(e)
}

/// The type-4 score of one generation: [`type4_composite`] on its final answer and reasoning.
pub fn type4_score(generation: &str, expected: &str, key_terms: &[String]) -> f64 {
    let (reasoning, answer) = split_reasoning(generation);
    let predicted = if answer_matches(&answer, expected) { expected } else { &answer };
    type4_composite(predicted, expected, &reasoning, key_terms)
}

/// The parts of the MedGemma Korean pipeline's reasoning score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FormatScore {
    /// `2/3 + format/3` for a correct answer, `format/4` for a wrong one ("wrong answer with good reasoning").
    pub score: f64,
    /// The share of the three format checks that pass (0, 1/3, 2/3, 1).
    pub format: f64,
    pub correct: bool,
    /// Check 1: `<reasoning>` and `</reasoning>` both present.
    pub has_tags: bool,
    /// How many of `첫째:` `둘째:` `셋째:` `넷째:` open a section of at least 3 words (check 2 needs all four).
    pub sections: usize,
    /// How many of the option analyses `A)`…`E)` have at least 3 words and a `number%` (check 3 needs all).
    pub options_ok: usize,
    pub options_expected: usize,
}

/// The MedGemma Korean pipeline's reasoning score, as its document defines it: a correct answer weighs 2/3 and the
/// reasoning format 1/3; a wrong answer with good reasoning still earns 1/4 of the format's worth. The format is
/// the share of three checks: (1) the `<reasoning>`/`</reasoning>` tags; (2) `첫째:`, `둘째:`, `셋째:`, `넷째:` each
/// followed by 3+ words; (3) `A)`…`E)` (the item's options) each with 3+ words and a `number%`.
pub fn reasoning_format(text: &str, n_options: usize, correct: bool) -> FormatScore {
    let has_tags = text.contains("<reasoning>") && text.contains("</reasoning>");
    let body = match (text.find("<reasoning>"), text.find("</reasoning>")) {
        (Some(a), Some(b)) if b > a => &text[a + "<reasoning>".len()..b],
        _ => text,
    };
    let ordinals = ["첫째:", "둘째:", "셋째:", "넷째:"];
    let mut sections = 0;
    for (k, o) in ordinals.iter().enumerate() {
        if let Some(i) = body.find(o) {
            let rest = &body[i + o.len()..];
            // The section runs to the next ordinal.
            let end = ordinals[k + 1..].iter().filter_map(|n| rest.find(n)).min().unwrap_or(rest.len());
            if rest[..end].split_whitespace().count() >= 3 {
                sections += 1;
            }
        }
    }
    let n = n_options.clamp(1, 10);
    let letters: Vec<char> = (0..n).map(|i| (b'A' + i as u8) as char).collect();
    static PERCENT: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\d+(?:\.\d+)?\s*%").expect("valid regex"));
    let percent = &*PERCENT;
    let mut options_ok = 0;
    for (k, l) in letters.iter().enumerate() {
        let tag = format!("{l})");
        let Some(i) = body.find(&tag) else { continue };
        let rest = &body[i + tag.len()..];
        let end = letters[k + 1..].iter().filter_map(|m| rest.find(&format!("{m})"))).min().unwrap_or(rest.len());
        let seg = &rest[..end];
        if seg.split_whitespace().count() >= 3 && percent.is_match(seg) {
            options_ok += 1;
        }
    }
    let checks = has_tags as u8 + (sections == 4) as u8 + (options_ok == n) as u8;
    let format = f64::from(checks) / 3.0;
    let score = if correct { 2.0 / 3.0 + format / 3.0 } else { format / 4.0 };
    FormatScore { score, format, correct, has_tags, sections, options_ok, options_expected: n }
}

/// Hierarchy compliance of an outline answer (see [`medforge_text::outline`], the parser the rewrite stage's
/// validator uses).
pub type Hierarchy = medforge_text::outline::Compliance;

/// The hierarchical response rewrite pipeline's rules: depth >= 3 and at most 5 items under any one parent.
pub fn hierarchy(text: &str) -> Hierarchy {
    medforge_text::outline::compliance(text, 3, 5)
}

/// Korean proficiency of one answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KoreanProficiency {
    /// Share of letters that are Hangul (medforge-text's `hangul_ratio`).
    pub hangul_ratio: f64,
    /// Share of words inside a medical term of the list (None without a list).
    pub term_coverage: Option<f64>,
    pub terms_found: usize,
}

pub fn korean_proficiency(text: &str, terms: Option<&TermList>) -> KoreanProficiency {
    let cov = terms.map(|t| t.coverage(text));
    KoreanProficiency {
        hangul_ratio: hangul_ratio(text),
        term_coverage: cov.as_ref().map(|c| c.ratio),
        terms_found: cov.map_or(0, |c| c.distinct_terms.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite() {
        let terms = vec!["insulin".to_string(), "HbA1c".to_string()];
        let r = "Because the HbA1c is high and oral agents failed we start insulin now today";
        assert!((type4_composite("Insulin", "insulin", r, &terms) - 1.2).abs() < 1e-12);
        assert_eq!(type4_composite("x", "y", "short", &[]), 0.0);
        let many: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
        let text = many.join(" ");
        assert_eq!(type4_composite("a", "a", &text, &many), 1.4);
    }

    /// The MedGemma Korean document's weighting: correct 2/3 + format 1/3; wrong with good reasoning 1/4.
    #[test]
    fn format() {
        let t = "<reasoning>\n첫째: 환자는 흉통을 호소한다.\n둘째: 심전도에서 ST 상승이 보인다.\n셋째: 혈액 검사에서 트로포닌이 상승했다.\n넷째: A) 고혈압 가능성 낮음 5%, B) 심근경색 가능성 매우 높음 80%, C) 폐색전증 가능성 낮음 10%, D) 대동맥 박리 가능성 3%, E) 심낭염 가능성 낮음 2%\n</reasoning>B";
        let f = reasoning_format(t, 5, true);
        assert_eq!((f.has_tags, f.sections, f.options_ok), (true, 4, 5));
        assert!((f.score - 1.0).abs() < 1e-12);
        let wrong = reasoning_format(t, 5, false);
        assert!((wrong.score - 0.25).abs() < 1e-12, "wrong answer, good reasoning: 1/4");
        assert!((reasoning_format("B", 5, true).score - 2.0 / 3.0).abs() < 1e-12, "correct, no format");
        assert_eq!(reasoning_format("C", 5, false).score, 0.0);
        // Tags only: one of three checks.
        let tags = reasoning_format("<reasoning>짧다</reasoning>B", 5, true);
        assert!((tags.score - (2.0 / 3.0 + 1.0 / 9.0)).abs() < 1e-12, "{tags:?}");
        // A section under 3 words, or an option without a number%, fails its check.
        let short = t.replace("셋째: 혈액 검사에서 트로포닌이 상승했다.", "셋째: 짧다");
        assert_eq!(reasoning_format(&short, 5, true).sections, 3);
        let no_pct = t.replace("80%", "높음");
        let f = reasoning_format(&no_pct, 5, true);
        assert_eq!(f.options_ok, 4);
        assert!((f.format - 2.0 / 3.0).abs() < 1e-12);
    }

    /// The MedGemma Korean document's type-4 table: exact answer 1.0, reasoning of 10+ tokens +0.1, +0.05 per key
    /// term, at most 1.4; the target is 1.2.
    #[test]
    fn type4_from_a_generation() {
        let terms: Vec<String> = ["TSH", "T4", "하시모토"].iter().map(|s| s.to_string()).collect();
        let g = "<R>TSH 상승과 T4 감소는 일차성 갑상선기능저하를 시사하며 중년 여성에서 흔한 원인은 하시모토 갑상선염이다<R/>갑상선기능저하증";
        let s = type4_score(g, "갑상선기능저하증", &terms);
        assert!((s - 1.25).abs() < 1e-12, "1.0 + 0.1 + 3 x 0.05 = {s}");
        assert!(s >= 1.2, "meets the document's target");
        assert!((type4_score("<R>짧은 추론<R/>오답", "갑상선기능저하증", &terms) - 0.0).abs() < 1e-12);
        assert_eq!(type4_score("B", "B", &[]), 1.0);
        assert_eq!(split_reasoning("<think>a b</think> C"), ("a b".to_string(), "C".to_string()));
        assert!(answer_matches("B) 메트포르민", "B") && !answer_matches("Because", "B"));
    }

    #[test]
    fn outline() {
        let ok = "- 심장\n  - 허혈성\n    - 협심증\n    - 심근경색\n  - 판막\n    - 승모판\n";
        let h = hierarchy(ok);
        assert!(h.compliant, "{h:?}");
        let flat = "- a\n- b\n- c\n- d\n- e\n- f\n";
        let h = hierarchy(flat);
        assert_eq!((h.depth, h.max_items_per_level, h.compliant), (1, 6, false));
        // Four-space indents are one level each, as the rewrite validator reads them.
        assert_eq!(hierarchy("1. a\n    - b\n        - c\n").depth, 3);
    }
}
