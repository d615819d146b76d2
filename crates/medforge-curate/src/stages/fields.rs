//! Reading and writing record fields by name, shared by the text stages.

use medforge_data::Record;

/// The text of a field for matching: options become `A) text` lines.
pub fn text_of(r: &Record, field: &str) -> Option<String> {
    match field {
        "options" => (!r.options.is_empty())
            .then(|| r.options.iter().map(|o| format!("{}) {}", o.letter, o.text)).collect::<Vec<_>>().join("\n")),
        f => r.text_field(f).map(str::to_string),
    }
}

/// Several fields joined by newlines (missing ones skipped).
pub fn joined(r: &Record, fields: &[String]) -> String {
    fields.iter().filter_map(|f| text_of(r, f)).collect::<Vec<_>>().join("\n")
}

/// A mutable handle on a text field, for stages that rewrite text.
pub fn text_mut<'a>(r: &'a mut Record, field: &str) -> Option<&'a mut String> {
    match field {
        "question" => Some(&mut r.question),
        "context" => r.context.as_mut(),
        "answer" => r.answer.as_mut(),
        "reasoning" => r.reasoning.as_mut(),
        "response" => r.response.as_mut(),
        "chosen" => r.chosen.as_mut(),
        "rejected" => r.rejected.as_mut(),
        _ => None,
    }
}

pub const TEXT_FIELDS: &[&str] =
    &["question", "context", "options", "answer", "reasoning", "response", "chosen", "rejected"];

/// Check field names in a config, naming the valid ones.
pub fn check_fields(stage: &str, fields: &[String]) -> Result<(), crate::StageError> {
    for f in fields {
        if !TEXT_FIELDS.contains(&f.as_str()) {
            return Err(crate::StageError::failed(
                stage,
                format!("`{f}` is not a text field; use one of {}", TEXT_FIELDS.join(", ")),
            ));
        }
    }
    Ok(())
}
