//! Rendering a conversation through the chat template into prompt, completion and text.

use medforge_data::formatted::Markers;
use medforge_data::Record;
use medforge_text::chat::{CompiledTemplate, Message};

use super::route::non_empty;
use super::{FormatError, Result};

/// Prompt, completion and text of one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub prompt: String,
    pub completion: String,
    pub text: String,
}

/// Render a conversation ending with an assistant turn into `prompt` / `completion` / `text` (see the module docs for
/// how EOS ends `text`). The verifier re-renders with this same function.
pub fn render_training(template: &CompiledTemplate, messages: &[Message]) -> Result<Rendered> {
    let (last, head) = match messages.split_last() {
        Some((last, head)) if last.role == "assistant" => (last, head),
        _ => return Err(FormatError::NoAssistantTurn),
    };
    let full = template.render(messages, false)?;
    let text = end_with_eos(full, template.eos_token());
    let prompt = template.render(head, true)?;
    if !text.starts_with(&prompt) {
        return Err(FormatError::NotPrefix);
    }
    let completion = text[prompt.len()..].to_string();
    // Some templates rewrite the last turn (DeepSeek-R1's drops everything up to `</think>`): refuse, rather than
    // train on something other than the row's answer.
    if !completion.contains(last.content.trim()) {
        return Err(FormatError::ContentLost);
    }
    Ok(Rendered { prompt, completion, text })
}

/// Cut whitespace after a final EOS, or append EOS when the rendering does not end with it.
fn end_with_eos(mut full: String, eos: &str) -> String {
    if eos.is_empty() {
        return full;
    }
    let trimmed = full.trim_end().len();
    if full[..trimmed].ends_with(eos) {
        full.truncate(trimmed);
    } else {
        full.push_str(eos);
    }
    full
}

/// Reasoning without an outer marker pair the dataset may already carry; `None` when markers remain inside.
pub(super) fn strip_markers<'a>(reasoning: &'a str, markers: &Markers) -> Option<&'a str> {
    let inner = reasoning
        .strip_prefix(markers.open())
        .and_then(|s| s.strip_suffix(markers.close()))
        .map(str::trim)
        .unwrap_or(reasoning);
    (!markers.occur_in(inner)).then_some(inner)
}

/// The user turn: context, question, and for letter types the `A) …` option lines.
pub(super) fn user_content(r: &Record, with_options: bool) -> String {
    let mut s = String::new();
    if let Some(ctx) = non_empty(&r.context) {
        s.push_str(ctx);
        s.push_str("\n\n");
    }
    s.push_str(r.question.trim());
    if with_options {
        s.push('\n');
        for o in &r.options {
            let text: String = o.text.split_whitespace().collect::<Vec<_>>().join(" ");
            s.push_str(&format!("\n{}) {}", o.letter.trim(), text));
        }
    }
    s
}

/// The option letters of the last block of `X) …` lines in a prompt.
pub fn option_letters(prompt: &str) -> Vec<String> {
    let mut last = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for line in prompt.lines() {
        let b = line.as_bytes();
        if b.len() >= 3 && b[0].is_ascii_uppercase() && b[1] == b')' && b[2] == b' ' {
            current.push((b[0] as char).to_string());
        } else if !current.is_empty() {
            last = std::mem::take(&mut current);
        }
    }
    if current.is_empty() {
        last
    } else {
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_letters_last_block() {
        let p = "A) context line\nq\n\nA) x\nB) y\nC) z<|im_end|>\n<|im_start|>assistant\n";
        assert_eq!(option_letters(p), vec!["A", "B", "C"]);
        assert!(option_letters("no options").is_empty());
    }

    #[test]
    fn end_with_eos_rules() {
        assert_eq!(end_with_eos("a<|im_end|>\n".into(), "<|im_end|>"), "a<|im_end|>");
        assert_eq!(end_with_eos("a<end_of_turn>\n".into(), "<eos>"), "a<end_of_turn>\n<eos>");
        assert_eq!(end_with_eos("a".into(), ""), "a");
    }
}
