//! Secrets: [`Secret`], a value that cannot be logged; [`Redactor`], which blanks configured
//! secrets out of outgoing text; and reading a secret given directly or as `<NAME>_FILE`, where an
//! empty value is refused rather than taken as "no authentication".
//!
//! Reads the secret files it is pointed at, nothing else: no environment, no processes. Problems
//! are reported through the caller's callback, so it uses nothing else of the crate.

use std::fmt;
use std::path::PathBuf;

/// A value that must never be printed. `Debug` and `Display` show `[redacted]`; the only way to
/// the bytes is [`Secret::expose`], which makes every use greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Replaces every configured secret in a text with `[redacted]`. Used on every error text that
/// leaves the process (API answers, logs), as a second line of defence: secrets are never put in
/// argv or URLs in the first place.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<Secret>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        // Very short values would redact innocent text and protect nothing.
        let secrets = secrets.into_iter().filter(|s| s.0.len() >= 4).collect();
        Self { secrets }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.expose()) {
                out = out.replace(secret.expose(), "[redacted]");
            }
        }
        out
    }
}

/// A secret given directly or as `<NAME>_FILE` (trailing newline trimmed). Both set is an error.
///
/// So is an empty (or all-whitespace) value, in either form: taken as "no secret", it would
/// silently turn authentication off (`API_TOKEN=` from a compose file's `${API_TOKEN:-}`, a
/// secret file that was never filled in). Not setting the variable is how to go without.
pub(super) fn secret_value(
    variable: &'static str,
    direct: Option<String>,
    file: Option<PathBuf>,
    problem: &mut impl FnMut(&'static str, String),
) -> Option<Secret> {
    match (direct, file) {
        (Some(_), Some(_)) => {
            problem(
                variable,
                format!("is set together with {variable}_FILE; give only one"),
            );
            None
        }
        (Some(value), None) if value.trim().is_empty() => {
            problem(
                variable,
                format!(
                    "is set but empty (or only whitespace); unset {variable} to go without, or give the secret"
                ),
            );
            None
        }
        (Some(value), None) => Some(Secret::new(value)),
        (None, Some(path)) => match std::fs::read_to_string(&path) {
            Ok(content) => {
                let value = content.trim_end_matches(['\n', '\r']);
                if value.trim().is_empty() {
                    problem(
                        variable,
                        format!(
                            "file {} is empty (or only whitespace); unset {variable}_FILE to go without, or put the secret in it",
                            path.display()
                        ),
                    );
                    None
                } else {
                    Some(Secret::new(value))
                }
            }
            Err(e) => {
                problem(
                    variable,
                    format!("file {} cannot be read: {e}", path.display()),
                );
                None
            }
        },
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `secret_value` for `API_TOKEN`: the secret it yields and the problems it records.
    fn read(direct: Option<&str>, file: Option<PathBuf>) -> (Option<String>, Vec<String>) {
        let mut problems = Vec::new();
        let secret = secret_value(
            "API_TOKEN",
            direct.map(str::to_owned),
            file,
            &mut |variable, message| problems.push(format!("{variable}: {message}")),
        );
        (secret.map(|s| s.expose().to_owned()), problems)
    }

    #[test]
    fn a_secret_file_is_read_with_only_its_line_ending_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, " t0ken \r\n").unwrap();
        assert_eq!(read(None, Some(file)), (Some(" t0ken ".into()), vec![]));
        assert_eq!(read(Some("direct"), None), (Some("direct".into()), vec![]));
        assert_eq!(read(None, None), (None, vec![]));
    }

    #[test]
    fn empty_doubled_and_unreadable_secrets_are_problems() {
        let dir = tempfile::tempdir().unwrap();
        let blank = dir.path().join("blank");
        std::fs::write(&blank, " \n").unwrap();
        for (direct, file, expected) in [
            (Some(" "), None, "API_TOKEN: is set but empty"),
            (None, Some(blank.clone()), "is empty (or only whitespace)"),
            (
                Some("x"),
                Some(blank.clone()),
                "together with API_TOKEN_FILE",
            ),
            (None, Some(dir.path().join("missing")), "cannot be read"),
        ] {
            let (secret, problems) = read(direct, file);
            assert_eq!(secret, None);
            assert!(
                problems.len() == 1 && problems[0].contains(expected),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn redactor_replaces_every_secret() {
        let r = Redactor::new([Secret::new("tok3n-value"), Secret::new("ab")]);
        assert_eq!(r.redact("x tok3n-value y ab"), "x [redacted] y ab");
    }
}
