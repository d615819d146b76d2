//! Text normalisation shared by dedup, decontamination and statistics.
//!
//! Datasets disagree on trivia (fullwidth punctuation in KorMedMCQA, `"What is (are) X ?"` in
//! MedQuAD, doubled spaces everywhere); these functions remove that noise so that comparisons look
//! at content. [`match_key`] is the single definition of "the same text" for exact duplicate and
//! exact contamination matching.

use std::borrow::Cow;

use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// Unicode NFKC: folds compatibility forms onto their plain form (fullwidth `～` → `~`, `Ａ` → `A`,
/// `㎎` → `mg`) so that visually equal texts compare equal. Borrows when the text already is NFKC
/// (all ASCII text is), which keeps the common case allocation-free.
pub fn nfkc(text: &str) -> Cow<'_, str> {
    if text.is_ascii() || is_nfkc_quick(text.chars()) == IsNormalized::Yes {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.nfkc().collect())
    }
}

/// Trims and replaces every run of Unicode whitespace (newlines and tabs included) by one space.
pub fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Punctuation that never takes a space before it in English prose.
fn is_closing_punct(c: char) -> bool {
    matches!(c, '?' | '!' | '.' | ',' | ';')
}

/// Removes spaces and tabs before `? ! . , ;` — MedQuAD writes `"What is (are) Glaucoma ?"`.
///
/// Only when the punctuation ends a word (it is followed by the end of the text, whitespace or
/// more punctuation), so that a leading decimal point such as `"dose of .5 mg"` keeps its space.
/// Newlines are left alone: they separate lines, not words from punctuation.
pub fn fix_question_spacing(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == ' ' || c == '\t' {
            let mut j = i;
            while j < chars.len() && (chars[j] == ' ' || chars[j] == '\t') {
                j += 1;
            }
            let drop = i > 0
                && j < chars.len()
                && is_closing_punct(chars[j])
                && chars.get(j + 1).is_none_or(|&n| !n.is_alphanumeric());
            if !drop {
                out.extend(&chars[i..j]);
            }
            i = j;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The normalised form used for exact-duplicate and exact-contamination matching: NFKC, lowercase,
/// punctuation and symbols removed, whitespace collapsed.
///
/// It is exactly the word tokens of [`crate::shingle::words`] joined by single spaces, so exact
/// matching and n-gram matching agree on what a word is. Punctuation acts as a word break
/// (`"fever,cough"` = `"fever, cough"`), an apostrophe inside a word is dropped (`"Crohn's"` =
/// `"Crohns"`), and letters of every script are kept, so Korean keys keep their Hangul.
pub fn match_key(text: &str) -> String {
    let words = crate::shingle::words(text);
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfkc_folds_fullwidth() {
        assert_eq!(nfkc("1～2주"), "1~2주");
        assert_eq!(nfkc("ＡＢＣ１２３"), "ABC123");
        assert_eq!(nfkc("5㎎"), "5mg");
        assert!(matches!(nfkc("plain ascii"), Cow::Borrowed(_)));
        assert!(matches!(nfkc("이미 정규화된 한국어"), Cow::Borrowed(_)));
    }

    #[test]
    fn collapse_whitespace_trims_and_joins() {
        assert_eq!(collapse_whitespace("  a \t b\n\n c  "), "a b c");
        assert_eq!(collapse_whitespace("a\u{3000}b"), "a b"); // ideographic space
        assert_eq!(collapse_whitespace("   "), "");
    }

    #[test]
    fn question_spacing_medquad() {
        assert_eq!(fix_question_spacing("What is (are) Glaucoma ?"), "What is (are) Glaucoma?");
        assert_eq!(fix_question_spacing("Yes , it is ; really !"), "Yes, it is; really!");
        assert_eq!(fix_question_spacing("end .  Next"), "end.  Next"); // only the space before
        assert_eq!(fix_question_spacing("Why ?!"), "Why?!");
        // A decimal point that starts a number keeps its space.
        assert_eq!(fix_question_spacing("a dose of .5 mg"), "a dose of .5 mg");
        // Leading spaces and newlines are not touched.
        assert_eq!(fix_question_spacing(" ?"), " ?");
        assert_eq!(fix_question_spacing("line\n?"), "line\n?");
        assert_eq!(fix_question_spacing("no change."), "no change.");
    }

    #[test]
    fn match_key_english() {
        assert_eq!(match_key("  What is (are) Glaucoma ?  "), match_key("what is are glaucoma"));
        assert_eq!(match_key("Fever,cough"), match_key("fever, cough"));
        assert_eq!(match_key("Crohn's disease"), "crohns disease");
        assert_eq!(match_key("A 45-year-old MAN"), "a 45 year old man");
        assert_eq!(match_key("!!!"), "");
    }

    #[test]
    fn match_key_keeps_hangul() {
        assert_eq!(match_key("고혈압 환자의 1～2주 치료는?"), "고혈압 환자의 1 2주 치료는");
        assert_eq!(match_key("ＣＴ 검사"), "ct 검사");
    }
}
