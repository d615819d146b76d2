//! Routing: which training type a record becomes (see the module docs of [`crate::format`]).

use medforge_data::formatted::TrainingType;
use medforge_data::{Record, RecordKind};

/// Where a record goes, before the enabled types are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Supervised types, most preferred first; the first enabled one is emitted.
    Sft(Vec<TrainingType>),
    Dpo,
    /// Not formattable, with a stable reason code.
    Skip(&'static str),
}

/// Skip reason codes.
pub mod skip {
    pub const NO_ANSWER: &str = "format.no_answer";
    pub const NO_ANSWER_LETTER: &str = "format.no_answer_letter";
    pub const LETTER_NOT_IN_OPTIONS: &str = "format.letter_not_in_options";
    pub const NO_PREFERENCE_PAIR: &str = "format.no_preference_pair";
    pub const MARKERS_IN_CONTENT: &str = "format.markers_in_content";
    pub const TYPE_DISABLED: &str = "format.type_disabled";
}

pub(super) fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The open answer: `response` (the long form) when present, else `answer`.
pub(super) fn open_answer(r: &Record) -> Option<&str> {
    non_empty(&r.response).or_else(|| non_empty(&r.answer))
}

pub(super) fn mcq_letter(r: &Record) -> Option<String> {
    non_empty(&r.answer_letter).map(|l| l.to_ascii_uppercase())
}

/// The routing rule (see the module docs).
pub fn route(r: &Record, long_answer_chars: usize) -> Route {
    use TrainingType::*;
    if r.kind == RecordKind::Preference {
        return if non_empty(&r.chosen).is_some() && non_empty(&r.rejected).is_some() {
            Route::Dpo
        } else {
            Route::Skip(skip::NO_PREFERENCE_PAIR)
        };
    }
    let reasoning = non_empty(&r.reasoning).is_some();
    if !r.options.is_empty() {
        let Some(letter) = mcq_letter(r) else { return Route::Skip(skip::NO_ANSWER_LETTER) };
        if !r.options.iter().any(|o| o.letter.trim() == letter) {
            return Route::Skip(skip::LETTER_NOT_IN_OPTIONS);
        }
        return Route::Sft(if reasoning { vec![LetterReasoning, Letter] } else { vec![Letter] });
    }
    let Some(answer) = open_answer(r) else { return Route::Skip(skip::NO_ANSWER) };
    if !reasoning {
        Route::Sft(vec![Text])
    } else if answer.chars().count() >= long_answer_chars {
        Route::Sft(vec![TextReasoning, Text])
    } else {
        Route::Sft(vec![LetterReasoning, TextReasoning, Text])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medforge_data::McqOption;

    fn mcq(reasoning: Option<&str>) -> Record {
        let mut r = Record::new("m1", "t", RecordKind::Mcq, "Which drug lowers glucose?");
        r.options = ["Aspirin", "Insulin", "Heparin"]
            .iter()
            .zip(["A", "B", "C"])
            .map(|(t, l)| McqOption { letter: l.into(), text: t.to_string() })
            .collect();
        r.answer_letter = Some("B".into());
        r.answer = Some("Insulin".into());
        r.reasoning = reasoning.map(str::to_string);
        r
    }

    fn open(answer: &str, reasoning: Option<&str>) -> Record {
        let mut r = Record::new("o1", "t", RecordKind::OpenQa, "What is HbA1c?");
        r.answer = Some(answer.into());
        r.reasoning = reasoning.map(str::to_string);
        r
    }

    #[test]
    fn routing_rule() {
        use TrainingType::*;
        assert_eq!(route(&mcq(Some("why")), 100), Route::Sft(vec![LetterReasoning, Letter]));
        assert_eq!(route(&mcq(None), 100), Route::Sft(vec![Letter]));
        assert_eq!(route(&open("short", None), 100), Route::Sft(vec![Text]));
        assert_eq!(route(&open("short", Some("why")), 100), Route::Sft(vec![LetterReasoning, TextReasoning, Text]));
        assert_eq!(route(&open(&"x".repeat(100), Some("why")), 100), Route::Sft(vec![TextReasoning, Text]));
        // Characters, not bytes.
        assert_eq!(
            route(&open(&"가".repeat(99), Some("why")), 100),
            Route::Sft(vec![LetterReasoning, TextReasoning, Text])
        );
        let mut r = mcq(None);
        r.answer_letter = Some("E".into());
        assert_eq!(route(&r, 100), Route::Skip(skip::LETTER_NOT_IN_OPTIONS));
        let mut p = Record::new("p", "t", RecordKind::Preference, "q");
        p.chosen = Some("good".into());
        assert_eq!(route(&p, 100), Route::Skip(skip::NO_PREFERENCE_PAIR));
        p.rejected = Some("bad".into());
        assert_eq!(route(&p, 100), Route::Dpo);
        assert_eq!(route(&open(" ", None), 100), Route::Skip(skip::NO_ANSWER));
    }
}
