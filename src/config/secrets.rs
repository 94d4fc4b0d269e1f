//! Secrets: [`Secret`], a value that cannot be logged; [`Redactor`], which blanks configured
//! secrets out of outgoing text; reading a secret given directly or as `<NAME>_FILE`, where an
//! empty value is refused rather than taken as "no authentication"; and the age identities of
//! `SOPS_AGE_KEY` and `SOPS_AGE_KEY_FILE`, checked for their shape.
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

/// A secret that may list several values, for rotation (`WEBHOOK_SECRET`): [`secret_value`],
/// then every value of [`list_items`] must be non-empty, so that `old,` or a blank line in the
/// file is refused rather than silently dropped. Problems name the position, never a value.
pub(super) fn secret_list(
    variable: &'static str,
    direct: Option<String>,
    file: Option<PathBuf>,
    problem: &mut impl FnMut(&'static str, String),
) -> Option<Secret> {
    let secret = secret_value(variable, direct, file, problem)?;
    let empty = split_list(&secret).position(|item| item.is_empty());
    if let Some(index) = empty {
        problem(
            variable,
            format!(
                "secret {} of the list is empty; separate secrets with one comma (or one per line in the file), without empty entries",
                index + 1
            ),
        );
        return None;
    }
    Some(secret)
}

/// The values of a list-valued secret: separated by commas or line breaks, each with
/// surrounding whitespace trimmed; empty ones skipped (start-up refuses them, see
/// [`secret_list`]). A secret therefore cannot contain a comma or a line break.
pub fn list_items(secret: &Secret) -> impl Iterator<Item = &str> {
    split_list(secret).filter(|item| !item.is_empty())
}

fn split_list(secret: &Secret) -> impl Iterator<Item = &str> {
    // Line breaks that end the value separate nothing (a file's last line, an echo).
    secret
        .expose()
        .trim_end_matches(['\n', '\r'])
        .split([',', '\n'])
        .map(|item| item.trim_matches(|c: char| c.is_whitespace()))
}

/// The age identities given in `variable` (`SOPS_AGE_KEY` directly, or the content of the
/// `SOPS_AGE_KEY_FILE` read here), checked for the shape of an age identity file: after
/// skipping empty lines and `#` comments, at least one line, and every line an
/// `AGE-SECRET-KEY-1…` (no spaces; case as age accepts it). The bech32 itself is checked by
/// [`crate::sops::Identities::parse`], which the wiring calls: `config` does not depend on
/// `sops`. Problems name the variable, the file and the line, never a line's content.
pub(super) fn age_identities(
    variable: &'static str,
    direct: Option<String>,
    file: Option<PathBuf>,
    problem: &mut impl FnMut(&'static str, String),
) -> Option<Secret> {
    let (text, source) = match (direct, file) {
        (Some(text), None) => (text, String::new()),
        (None, Some(path)) => match std::fs::read_to_string(&path) {
            Ok(text) => (text, format!("file {} ", path.display())),
            Err(e) => {
                problem(
                    variable,
                    format!("file {} cannot be read: {e}", path.display()),
                );
                return None;
            }
        },
        // One variable at a time; the caller asks for each.
        (None, None) | (Some(_), Some(_)) => return None,
    };
    match age_identity_shape(&text) {
        Ok(()) => Some(Secret::new(text)),
        Err(what) => {
            problem(variable, format!("{source}{what}"));
            None
        }
    }
}

/// What is wrong with the shape of an age identity text, if anything.
fn age_identity_shape(text: &str) -> Result<(), String> {
    let mut identities = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let has_prefix = |prefix: &str| {
            line.get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        };
        if has_prefix("AGE-PLUGIN-") {
            return Err(format!(
                "line {} is an age plugin identity (AGE-PLUGIN-…); plugins are not supported",
                i + 1
            ));
        }
        if !has_prefix("AGE-SECRET-KEY-1") || line.contains(char::is_whitespace) {
            return Err(format!(
                "line {} is not an age identity (AGE-SECRET-KEY-1…, as age-keygen writes it; not the age1… public key)",
                i + 1
            ));
        }
        identities += 1;
    }
    if identities == 0 {
        return Err(
            "holds no age identity (an AGE-SECRET-KEY-1… line); unset the variable to go without"
                .into(),
        );
    }
    Ok(())
}

/// The identity lines of an age identity text, each a secret of its own for the [`Redactor`]
/// (a line may leak alone, the whole text hardly).
pub(super) fn age_identity_lines(text: &Secret) -> impl Iterator<Item = Secret> + '_ {
    text.expose()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(Secret::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(direct: &str) -> (Option<Vec<String>>, Vec<String>) {
        let mut problems = Vec::new();
        let secret = secret_list(
            "WEBHOOK_SECRET",
            Some(direct.to_owned()),
            None,
            &mut |variable, message| problems.push(format!("{variable}: {message}")),
        );
        let items = secret.map(|s| list_items(&s).map(str::to_owned).collect());
        (items, problems)
    }

    #[test]
    fn a_webhook_secret_may_list_several_for_rotation() {
        for (raw, expected) in [
            ("one", vec!["one"]),
            ("old,new", vec!["old", "new"]),
            ("old, new ", vec!["old", "new"]),
            ("old\nnew", vec!["old", "new"]),
            ("old\r\nnew\n", vec!["old", "new"]),
        ] {
            let (items, problems) = list(raw);
            assert_eq!(problems, Vec::<String>::new(), "{raw:?}");
            assert_eq!(
                items,
                Some(expected.into_iter().map(str::to_owned).collect())
            );
        }
    }

    #[test]
    fn an_empty_entry_in_the_list_is_refused_without_echoing_the_others() {
        for (raw, position) in [
            ("old,", 2),
            (",new", 1),
            ("a,,b", 2),
            ("a\n\nb", 2),
            ("a, ,b", 2),
        ] {
            let (items, problems) = list(raw);
            assert_eq!(items, None, "{raw:?}");
            assert_eq!(problems.len(), 1, "{raw:?}");
            assert!(
                problems[0].starts_with(&format!(
                    "WEBHOOK_SECRET: secret {position} of the list is empty"
                )),
                "{}",
                problems[0]
            );
            assert!(!problems[0].contains("new") && !problems[0].contains("old"));
        }
    }

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

    const KEY: &str = "AGE-SECRET-KEY-1RH87A5Z54ZGUR9S0AS3R6WHFSEFNPLYMAKF5Z2CEU7R06VRJ0A3Q7242AM";

    /// `age_identities` for `SOPS_AGE_KEY_FILE`: the text it yields and the problems.
    fn identities(direct: Option<&str>, file: Option<PathBuf>) -> (Option<String>, Vec<String>) {
        let mut problems = Vec::new();
        let variable = if file.is_some() {
            "SOPS_AGE_KEY_FILE"
        } else {
            "SOPS_AGE_KEY"
        };
        let text = age_identities(
            variable,
            direct.map(str::to_owned),
            file,
            &mut |variable, message| problems.push(format!("{variable}: {message}")),
        );
        (text.map(|s| s.expose().to_owned()), problems)
    }

    #[test]
    fn an_age_identity_file_is_taken_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.txt");
        let text = format!("# created: 2021-03-31\n# public key: age1l44x\n{KEY}\n");
        std::fs::write(&file, &text).unwrap();
        assert_eq!(identities(None, Some(file)), (Some(text), vec![]));
        let two = format!("{KEY}\r\n  {}\n", KEY.to_lowercase());
        assert_eq!(identities(Some(&two), None), (Some(two.clone()), vec![]));
        let lines: Vec<_> = age_identity_lines(&Secret::new(two))
            .map(|s| s.expose().to_owned())
            .collect();
        assert_eq!(lines, [KEY.to_owned(), KEY.to_lowercase()]);
    }

    #[test]
    fn unreadable_empty_or_misshapen_identities_are_problems_that_never_echo_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let cases = [
            (
                Some(dir.path().join("missing")),
                None,
                "SOPS_AGE_KEY_FILE: file ",
                "cannot be read",
            ),
            (
                Some(write("blank", "\n# only a comment\n")),
                None,
                "SOPS_AGE_KEY_FILE: file ",
                "holds no age identity",
            ),
            (
                Some(write(
                    "public",
                    "age1l44xcng8dqj32nlv6d930qvvrny05hglzcv9qpc7kxjc6902ma4qufys29\n",
                )),
                None,
                "SOPS_AGE_KEY_FILE: file ",
                "line 1 is not an age identity",
            ),
            (
                None,
                Some(format!("{KEY}\n{KEY} trailing words\n")),
                "SOPS_AGE_KEY: ",
                "line 2 is not an age identity",
            ),
            (
                None,
                Some("AGE-PLUGIN-YUBIKEY-1QQQQ\n".to_owned()),
                "SOPS_AGE_KEY: ",
                "line 1 is an age plugin identity",
            ),
            (
                None,
                Some(" ".to_owned()),
                "SOPS_AGE_KEY: ",
                "holds no age identity",
            ),
        ];
        for (file, direct, start, expected) in cases {
            let (text, problems) = identities(direct.as_deref(), file);
            assert_eq!(text, None);
            assert!(
                problems.len() == 1
                    && problems[0].starts_with(start)
                    && problems[0].contains(expected),
                "{problems:?}"
            );
            assert!(!problems[0].contains("AGE-SECRET-KEY-1RH"), "{problems:?}");
            assert!(!problems[0].contains("YUBIKEY"), "{problems:?}");
        }
    }

    #[test]
    fn redactor_replaces_every_secret() {
        let r = Redactor::new([Secret::new("tok3n-value"), Secret::new("ab")]);
        assert_eq!(r.redact("x tok3n-value y ab"), "x [redacted] y ab");
    }
}
