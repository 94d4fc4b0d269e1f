//! Untrusted text made safe to show: a webhook's ref, a stack's path, a child's stderr.
//!
//! Such text may hold newlines that forge a second log line, ANSI escape sequences that drive
//! the operator's terminal, or megabytes that flood the log. [`sanitize`] bounds it and escapes
//! every control character (C0, DEL, C1, and the Unicode bidirectional overrides), so what is
//! printed is one line of visible characters. [`Untrusted`] does the same as a `Display` value
//! for tracing fields (`ref = %Untrusted::new(&push.git_ref)`).
//!
//! Uses: nothing of the crate (foundation).

use std::fmt;

/// How many characters of untrusted text a log line or CLI line shows by default.
pub const DEFAULT_MAX_CHARS: usize = 256;

/// Is `c` a character that must not reach a log line or a terminal as itself?
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        // Bidirectional overrides and isolates reorder what a terminal shows ("Trojan Source").
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// `text` with every unsafe character escaped (`\n`, `\u{1b}`) and cut after `max_chars`
/// characters, the cut marked with how many characters were left out.
pub fn sanitize(text: &str, max_chars: usize) -> String {
    Untrusted { text, max_chars }.to_string()
}

/// Untrusted text as a `Display` value: escaped and bounded as [`sanitize`] does, without
/// allocating until it is written.
#[derive(Debug, Clone, Copy)]
pub struct Untrusted<'a> {
    text: &'a str,
    max_chars: usize,
}

impl<'a> Untrusted<'a> {
    /// Bounded to [`DEFAULT_MAX_CHARS`].
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            max_chars: DEFAULT_MAX_CHARS,
        }
    }

    /// Bounded to `max_chars` characters.
    pub fn bounded(text: &'a str, max_chars: usize) -> Self {
        Self { text, max_chars }
    }
}

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.text.chars();
        for (shown, c) in chars.by_ref().enumerate() {
            if shown == self.max_chars {
                // Count what is left without holding it: the text may be megabytes long.
                let left = 1 + chars.count();
                return write!(f, "…[{left} more characters]");
            }
            if is_unsafe_char(c) {
                match c {
                    '\n' => f.write_str("\\n")?,
                    '\r' => f.write_str("\\r")?,
                    '\t' => f.write_str("\\t")?,
                    c => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                }
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_shown_as_it_is() {
        assert_eq!(sanitize("refs/heads/main", 64), "refs/heads/main");
        assert_eq!(sanitize("stäck – ünïcode", 64), "stäck – ünïcode");
    }

    #[test]
    fn newlines_and_escapes_cannot_forge_a_line_or_drive_a_terminal() {
        let forged = "main\n2026-01-01T00:00:00Z  INFO forged\r\u{1b}[31mred\u{7}\u{9b}";
        let shown = sanitize(forged, 1000);
        assert!(!shown.chars().any(is_unsafe_char), "{shown:?}");
        assert_eq!(
            shown,
            "main\\n2026-01-01T00:00:00Z  INFO forged\\r\\u{1b}[31mred\\u{7}\\u{9b}"
        );
    }

    #[test]
    fn bidirectional_overrides_are_escaped() {
        assert_eq!(sanitize("a\u{202E}b\u{2066}c", 10), "a\\u{202e}b\\u{2066}c");
    }

    #[test]
    fn long_text_is_cut_and_says_how_much_was_left_out() {
        let long = "x".repeat(4 * 1024 * 1024);
        let shown = sanitize(&long, 10);
        assert_eq!(
            shown,
            format!(
                "{}…[{} more characters]",
                "x".repeat(10),
                4 * 1024 * 1024 - 10
            )
        );
        assert_eq!(sanitize("exactly", 7), "exactly");
        assert_eq!(sanitize("", 0), "");
        assert_eq!(sanitize("ab", 0), "…[2 more characters]");
    }

    #[test]
    fn the_display_value_matches_sanitize() {
        let text = "a\nb";
        assert_eq!(Untrusted::bounded(text, 2).to_string(), sanitize(text, 2));
        assert_eq!(Untrusted::new(text).to_string(), "a\\nb");
    }
}
