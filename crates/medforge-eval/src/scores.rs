//! The reference pipelines' task-specific scores (MedGemma Korean training, hierarchical response rewrite): the type-4 composite, the reasoning-format score, hierarchy
//! compliance and Korean proficiency.
use serde::Serialize;

use medforge_text::lang::TermList;
use medforge_text::shingle::hangul_ratio;

use crate::metrics::squad::normalize_answer;

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

/// The parts of the reasoning-format score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FormatScore {
    pub score: f64,
    pub has_tags: bool,
    /// How many of 첫째/둘째/셋째/넷째 start a section of at least 3 words.
    pub sections: usize,
    /// How many option analyses `A)`…`E)` have at least 3 words and a `%`.
    pub options_ok: usize,
    pub options_expected: usize,
}

/// Reasoning-format score. medforge's reading of the MedGemma Korean pipeline's "2/3 · 1/3 · 1/4" weighting: the
/// structure is worth 2/3 — 1/3 for the `<reasoning>…</reasoning>` tags and 1/3 for the four ordinal
/// sections 첫째/둘째/셋째/넷째 (1/4 of that each, a section needing ≥ 3 words) — and the option
/// analysis 1/3, shared evenly by `A)`…`E)` (each needing ≥ 3 words and a `%` likelihood).
pub fn reasoning_format(text: &str, n_options: usize) -> FormatScore {
    let has_tags = text.contains("<reasoning>") && text.contains("</reasoning>");
    let body = match (text.find("<reasoning>"), text.find("</reasoning>")) {
        (Some(a), Some(b)) if b > a => &text[a + "<reasoning>".len()..b],
        _ => text,
    };
    let ordinals = ["첫째", "둘째", "셋째", "넷째"];
    let mut sections = 0;
    for (k, o) in ordinals.iter().enumerate() {
        if let Some(i) = body.find(o) {
            let rest = &body[i + o.len()..];
            // The section runs to the next ordinal or option line.
            let end = ordinals[k + 1..].iter().filter_map(|n| rest.find(n)).min().unwrap_or(rest.len());
            let words = rest[..end].trim_start_matches([',', ':', '.', ' ']).split_whitespace().count();
            if words >= 3 {
                sections += 1;
            }
        }
    }
    let n = n_options.clamp(1, 10);
    let letters: Vec<char> = (0..n).map(|i| (b'A' + i as u8) as char).collect();
    let mut options_ok = 0;
    for (k, l) in letters.iter().enumerate() {
        let tag = format!("{l})");
        let Some(i) = body.find(&tag) else { continue };
        let rest = &body[i + tag.len()..];
        let end = letters[k + 1..].iter().filter_map(|m| rest.find(&format!("{m})"))).min().unwrap_or(rest.len());
        let seg = &rest[..end];
        if seg.split_whitespace().count() >= 3 && seg.contains('%') {
            options_ok += 1;
        }
    }
    let score = f64::from(has_tags as u8) / 3.0 + (sections as f64 / 4.0) / 3.0 + (options_ok as f64 / n as f64) / 3.0;
    FormatScore { score, has_tags, sections, options_ok, options_expected: n }
}

/// Hierarchy compliance of an outline answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hierarchy {
    pub depth: usize,
    pub max_items_per_level: usize,
    pub compliant: bool,
    /// 1.0 when compliant, 0.5 when only one rule holds, else 0.
    pub score: f64,
}

/// Depth ≥ 3 and at most 5 items under any one parent. Levels come from markdown headings (`#` = 1),
/// dotted numbers (`1.2.3` = 3), and bullets/numbers indented under them (2 spaces or a tab per level).
pub fn hierarchy(text: &str) -> Hierarchy {
    // Count children per (parent path) with a stack of counters.
    let mut stack: Vec<usize> = Vec::new(); // children counted at each open level
    let mut max_items = 0usize;
    let mut depth = 0usize;
    let mut heading_level = 0usize;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let indent: usize = line.chars().take_while(|c| c.is_whitespace()).map(|c| if c == '\t' { 2 } else { 1 }).sum();
        let t = line.trim_start();
        let level = if let Some(h) = t.strip_prefix('#') {
            let n = 1 + h.chars().take_while(|&c| c == '#').count();
            heading_level = n;
            n
        } else if let Some(parts) = dotted_number(t) {
            if parts >= 2 {
                heading_level + parts
            } else {
                heading_level + 1 + indent / 2
            }
        } else if t.starts_with(['-', '*', '•', '+'])
            || t.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && t[1..].starts_with(')')
        {
            heading_level + 1 + indent / 2
        } else {
            continue;
        };
        if level == 0 {
            continue;
        }
        depth = depth.max(level);
        stack.truncate(level);
        while stack.len() < level {
            stack.push(0);
        }
        stack[level - 1] += 1;
        max_items = max_items.max(stack[level - 1]);
    }
    let deep = depth >= 3;
    let narrow = max_items <= 5;
    let compliant = deep && narrow;
    Hierarchy {
        depth,
        max_items_per_level: max_items,
        compliant,
        score: (deep as u8 + narrow as u8) as f64 / 2.0 * if depth == 0 { 0.0 } else { 1.0 },
    }
}

/// `1.`, `1.2`, `1.2.3.` at the start of `t`: the number of numeric parts.
fn dotted_number(t: &str) -> Option<usize> {
    let head = t.split_whitespace().next()?;
    let head = head.trim_end_matches([')', '.']);
    if head.is_empty() {
        return None;
    }
    let parts: Vec<&str> = head.split('.').collect();
    if parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())) && t.len() > head.len() {
        Some(parts.len())
    } else {
        None
    }
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

    #[test]
    fn format() {
        let t = "<reasoning>\n첫째, 환자는 흉통을 호소한다.\n둘째, 심전도에서 ST 상승이 보인다.\n셋째, 혈액 검사에서 트로포닌이 상승했다.\n넷째, 따라서 급성 심근경색이다.\nA) 고혈압 가능성 낮음 5%\nB) 심근경색 가능성 매우 높음 80%\nC) 폐색전증 가능성 낮음 10%\nD) 대동맥 박리 가능성 낮음 3%\nE) 심낭염 가능성 낮음 2%\n</reasoning>";
        let f = reasoning_format(t, 5);
        assert_eq!((f.has_tags, f.sections, f.options_ok), (true, 4, 5));
        assert!((f.score - 1.0).abs() < 1e-12);
        let g = reasoning_format("첫째, 짧다", 5);
        assert_eq!(g.score, 0.0);
    }

    #[test]
    fn outline() {
        let ok = "# 심장\n## 허혈성\n### 협심증\n### 심근경색\n## 판막\n### 승모판\n";
        let h = hierarchy(ok);
        assert!(h.compliant, "{h:?}");
        let flat = "- a\n- b\n- c\n- d\n- e\n- f\n";
        let h = hierarchy(flat);
        assert_eq!((h.depth, h.max_items_per_level, h.compliant), (1, 6, false));
        let nested = "1. a\n  - b\n    - c\n";
        assert_eq!(hierarchy(nested).depth, 3);
    }
}
