//! Python's `str.split()` (no argument) on Unicode text: runs of whitespace separate, leading and
//! trailing whitespace is dropped. Python counts a few more characters as whitespace than Unicode's
//! `White_Space` property (the ASCII separators U+001C..U+001F), which matters for exact parity.

/// Whether Python's `str.isspace()` is true for this character.
#[inline]
pub fn is_py_space(c: char) -> bool {
    match c {
        ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r' | '\x1c' | '\x1d' | '\x1e' | '\x1f' | '\u{85}' => true,
        c if c.is_ascii() => false,
        c => c.is_whitespace(),
    }
}

/// The pieces of `s.split()` in Python.
pub fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|t| !t.is_empty())
}

/// `s.rstrip()` in Python.
pub fn py_rstrip(s: &str) -> &str {
    match s.as_bytes().last() {
        // The usual case: nothing to strip.
        Some(&b) if b > b' ' && b < 0x80 => s,
        _ => s.trim_end_matches(is_py_space),
    }
}
