//! How a child failed: [`ProcessError`] with its full text for the operator, the
//! [`ProcessError::summary`] a client may read (values elided by [`elide_values`]),
//! [`summary_chain`], and [`ExitDescription`].
//!
//! Uses: the parent's limits; nothing else in the crate.

use std::fmt;
use std::io;
use std::process::ExitStatus;
use std::time::Duration;

/// A child process that failed to run to a successful end. Every variant names the command
/// (program and arguments; secrets are never in arguments by design) and, where there is one,
/// the tail of its stderr.
///
/// Two renderings: the `Display` text is the whole story (the command line, `--- stderr` and
/// the tail), for the debug log and the operator; [`ProcessError::summary`] is what a client of
/// the API may read (what ran, how it ended, the tool's message with values elided).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("could not start `{command}`")]
    Spawn {
        command: CommandLine,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` timed out after {}; its process group was killed{}", humantime::format_duration(*timeout), stderr_suffix(stderr))]
    Timeout {
        command: CommandLine,
        timeout: Duration,
        stderr: String,
    },
    #[error("`{command}` failed with {status}{}", stderr_suffix(stderr))]
    Failed {
        command: CommandLine,
        status: ExitDescription,
        stderr: String,
    },
    #[error("`{command}` wrote more than {limit} bytes to stdout")]
    OutputTooLarge { command: CommandLine, limit: usize },
    #[error("i/o error talking to `{command}`{}", stderr_suffix(stderr))]
    Io {
        command: CommandLine,
        stderr: String,
        #[source]
        source: io::Error,
    },
}

impl ProcessError {
    /// The child's stderr tail, if it got far enough to have one.
    pub fn stderr(&self) -> &str {
        match self {
            Self::Timeout { stderr, .. }
            | Self::Failed { stderr, .. }
            | Self::Io { stderr, .. } => stderr,
            Self::Spawn { .. } | Self::OutputTooLarge { .. } => "",
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// The error as a client of the API may read it: the program and subcommand (`git
    /// ls-remote`, never the arguments, which hold paths under `DATA_DIR` and the project's
    /// files), how it ended (exit status, timeout), and the end of the tool's message with the
    /// values it quotes elided ([`elide_values`]). Includes the cause, if any.
    pub fn summary(&self) -> String {
        match self {
            Self::Spawn { command, source } => {
                format!("could not start `{}`: {source}", command.name())
            }
            Self::Timeout {
                command,
                timeout,
                stderr,
            } => format!(
                "`{}` timed out after {}; its process group was killed{}",
                command.name(),
                humantime::format_duration(*timeout),
                message_suffix(stderr)
            ),
            Self::Failed {
                command,
                status,
                stderr,
            } => format!(
                "`{}` failed with {status}{}",
                command.name(),
                message_suffix(stderr)
            ),
            Self::OutputTooLarge { command, limit } => {
                format!(
                    "`{}` wrote more than {limit} bytes to stdout",
                    command.name()
                )
            }
            Self::Io {
                command,
                stderr,
                source,
            } => format!(
                "i/o error talking to `{}`: {source}{}",
                command.name(),
                message_suffix(stderr)
            ),
        }
    }
}

/// A command as errors name it: its [`name`](CommandLine::name) (program and subcommand, as
/// in the metrics: `git fetch`, `docker compose up`), and the whole command line, which is what
/// it displays as. Boxed: errors travel in `Result`s and should stay small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine(Box<NameAndArgv>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct NameAndArgv {
    name: String,
    argv: String,
}

impl CommandLine {
    pub(super) fn new(name: String, argv: String) -> Self {
        Self(Box::new(NameAndArgv { name, argv }))
    }

    /// Program and subcommand: never an option's value, a path or a project name.
    pub fn name(&self) -> &str {
        &self.0.name
    }
}

impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.argv)
    }
}

/// A command line given as words we wrote (`docker service inspect`): it is its own name.
impl From<&str> for CommandLine {
    fn from(text: &str) -> Self {
        Self::new(text.to_owned(), text.to_owned())
    }
}

fn stderr_suffix(stderr: &str) -> String {
    let trimmed = stderr.trim_end();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("\n--- stderr\n{trimmed}")
    }
}

/// How much of a tool's (elided) message a summary keeps: its end, where the error is.
pub const SUMMARY_MESSAGE_CHARS: usize = 1500;

/// `: <message>` for a summary: the tool's stderr with blank lines dropped and values elided,
/// cut to its last [`SUMMARY_MESSAGE_CHARS`] characters.
fn message_suffix(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    let message = elide_values(&lines.join("\n"));
    let count = message.chars().count();
    if count <= SUMMARY_MESSAGE_CHARS {
        return format!(": {message}");
    }
    let tail: String = message
        .chars()
        .skip(count - SUMMARY_MESSAGE_CHARS)
        .collect();
    format!(": […] {tail}")
}

/// Longest quoted text that [`elide_values`] keeps as a name.
const MAX_NAME_CHARS: usize = 100;
/// What elided text is replaced by.
const ELIDED: &str = "…";

/// A tool's message with the values it quotes from its input elided: git and compose echo
/// what they could not use, and for compose that is a value of the compose file or of `.env`
/// (an interpolation error prints the whole broken value, a password and its stray `${`).
/// What goes:
///
/// - quoted text (`"…"`, `'…'`, across lines if need be) that stands where a value does (right
///   after `: ` or `=`), or that is not a plain name (at most 100 letters, digits or `._-/:@+`,
///   no `$`): service, network and option names, image references, URLs and paths stay;
/// - what follows `=` up to the next blank;
/// - any word holding a `$` expression (`${`, `$NAME`, `$(`);
/// - everything after compose v2's hint "escape any $ with another $", which it follows with
///   the raw value on lines of its own.
///
/// Best effort by design: the full text still goes to the debug log.
pub fn elide_values(text: &str) -> String {
    const HINT: &str = "escape any $ with another $";
    let (text, hint_cut) = match text.find(HINT) {
        Some(at) => {
            let end = text[at..].find('\n').map_or(text.len(), |n| at + n);
            let cut = !text[end..].trim().is_empty();
            (if cut { &text[..end] } else { text }, cut)
        }
        None => (text, false),
    };
    let mut out = elide_words(&elide_quotes_and_assignments(text));
    if hint_cut {
        out.push('\n');
        out.push_str(ELIDED);
    }
    out
}

/// The quoting and `=` rules of [`elide_values`].
fn elide_quotes_and_assignments(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let previous = i.checked_sub(1).map(|p| chars[p]);
        // An apostrophe inside a word ("can't") opens no quote.
        let opens_quote = c == '"' || (c == '\'' && !previous.is_some_and(char::is_alphanumeric));
        if opens_quote {
            let rest = &chars[i + 1..];
            let is_value = out.ends_with('=') || follows_a_key(&out);
            // A value may hold the quote itself (`"echo "$X" done"`): it ends at a quote that
            // ends the line or the sentence if there is one, else at the next quote.
            // Unterminated, it runs to the end.
            let next = rest.iter().position(|&d| d == c);
            let close = if is_value {
                (0..rest.len())
                    .find(|&k| rest[k] == c && ends_quoted_value(&rest[k + 1..]))
                    .or(next)
            } else {
                next
            };
            let inner = &rest[..close.unwrap_or(rest.len())];
            out.push(c);
            if is_value || !is_plain_name(inner) {
                out.push_str(ELIDED);
            } else {
                out.extend(inner);
            }
            if close.is_some() {
                out.push(c);
            }
            i += 1 + inner.len() + usize::from(close.is_some());
        } else if c == '=' {
            out.push(c);
            i += 1;
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !matches!(chars[i], '"' | '\'') {
                i += 1;
            }
            if i > start {
                out.push_str(ELIDED);
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Does `out` end with a key and `: ` (`service "app": `, `…environment.PASSWORD: `), so that
/// what follows is its value? Not after a line's labels (`fatal: `, `remote: error: `).
fn follows_a_key(out: &str) -> bool {
    let Some(before) = out.strip_suffix(": ") else {
        return false;
    };
    let line = before.rsplit('\n').next().unwrap_or(before);
    let is_label = line
        .split(": ")
        .all(|word| !word.is_empty() && !word.contains(char::is_whitespace));
    !is_label
}

/// Does the text after a closing quote show the quote ended a value: the end, a line break, or
/// a sentence's end (`". You may need…`, `",`)?
fn ends_quoted_value(after: &[char]) -> bool {
    match after {
        [] | ['\n', ..] | ['\r', ..] => true,
        ['.' | ',' | ';', next, ..] => next.is_whitespace(),
        ['.' | ',' | ';'] => true,
        _ => false,
    }
}

/// Quoted text that is safe to show: a name, not a value.
fn is_plain_name(text: &[char]) -> bool {
    text.len() <= MAX_NAME_CHARS
        && text
            .iter()
            .all(|c| c.is_alphanumeric() || "._-/:@+".contains(*c))
}

/// The `$` rule of [`elide_values`]: words (runs without blanks) holding `${`, `$(`, `$NAME`.
fn elide_words(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let chars: Vec<char> = word.chars().collect();
        let expression = chars.windows(2).any(|w| {
            w[0] == '$' && (w[1] == '{' || w[1] == '(' || w[1] == '_' || w[1].is_alphanumeric())
        });
        out.push_str(if expression { ELIDED } else { word });
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// [`crate::error_chain`] for clients: the same chain of causes, but a [`ProcessError`] in it
/// shown by its [`ProcessError::summary`] (which ends the chain: it includes its own cause).
pub fn summary_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        let (cause_text, last) = match cause.downcast_ref::<ProcessError>() {
            Some(process) => (process.summary(), true),
            None => (cause.to_string(), false),
        };
        // thiserror's `transparent` and some io errors repeat their cause; skip exact repeats.
        if text.is_empty() {
            text = cause_text;
        } else if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = if last { None } else { cause.source() };
    }
    text
}

/// An exit status in words: `exit code 128` or `signal 9`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitDescription {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl From<ExitStatus> for ExitDescription {
    fn from(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        Self {
            code: status.code(),
            signal: status.signal(),
        }
    }
}

impl fmt::Display for ExitDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(signal)) => write!(f, "signal {signal}"),
            (None, None) => f.write_str("unknown status"),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::process::Command;

    use super::*;
    use crate::process::sh;

    #[tokio::test]
    async fn failure_error_shows_command_and_stderr() {
        let err = sh("echo boom >&2; exit 1").run().await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sh -c 'echo boom >&2; exit 1'"), "{text}");
        assert!(text.contains("exit code 1"), "{text}");
        assert!(text.contains("--- stderr\nboom"), "{text}");
    }

    /// Compose's interpolation errors for the value `hunter2${`: Debian's 1.29 (captured),
    /// early v2 and current v2 (compose-go's `newPathError`, which prints the value on a line of
    /// its own after the hint).
    const COMPOSE_V1: &str = "Invalid interpolation format for \"environment\" option in service \"app\": \"hunter2${\"\n";
    const COMPOSE_V2_EARLY: &str = "invalid interpolation format for services.app.environment.PASSWORD: \"hunter2${\". You may need to escape any $ with another $.\n";
    const COMPOSE_V2: &str = "invalid interpolation format for services.app.environment.PASSWORD.\nYou may need to escape any $ with another $.\nhunter2${\n";

    #[test]
    fn compose_interpolation_errors_keep_what_failed_and_lose_the_value() {
        assert_eq!(
            elide_values(COMPOSE_V1),
            "Invalid interpolation format for \"environment\" option in service \"app\": \"…\"\n"
        );
        assert_eq!(
            elide_values(COMPOSE_V2_EARLY),
            "invalid interpolation format for services.app.environment.PASSWORD: \"…\". You may need to escape any $ with another $.\n"
        );
        assert_eq!(
            elide_values(COMPOSE_V2),
            "invalid interpolation format for services.app.environment.PASSWORD.\nYou may need to escape any $ with another $.\n…"
        );
    }

    #[test]
    fn values_holding_quotes_newlines_or_assignments_are_elided_whole() {
        // Captured from compose 1.29: a multi-line `command: |` with quotes of its own.
        let multiline = "Invalid interpolation format for \"command\" option in service \"app\": \"echo one\necho \"$${X}\" ${\nsecret-line-two\n\"\n";
        let shown = elide_values(multiline);
        assert_eq!(
            shown,
            "Invalid interpolation format for \"command\" option in service \"app\": \"…\"\n"
        );
        let assignment = "Invalid interpolation format for \"environment\" option in service \"app\": \"PASSWORD=hunter2${\"";
        assert!(!elide_values(assignment).contains("hunter2"));
        assert_eq!(
            elide_values("bad entry PASSWORD=hunter2 in .env, TOKEN='x y' too"),
            "bad entry PASSWORD=… in .env, TOKEN='…' too"
        );
        assert_eq!(
            elide_values("Missing mandatory value interpolating ${PW:?hunter2} in service app"),
            "Missing mandatory value interpolating … in service app"
        );
        assert_eq!(
            elide_values("unterminated: \"hunter2 and more"),
            "unterminated: \"…"
        );
    }

    #[test]
    fn names_paths_urls_and_plain_messages_are_kept() {
        for message in [
            "fatal: '/srv/repo.git' does not appear to be a git repository",
            "fatal: unable to access 'https://git.example.com/r.git/': The requested URL returned error: 403",
            "Bind for 0.0.0.0:8080 failed: port is already allocated",
            "service \"web\" refers to undefined network \"back-end\": invalid compose project",
            "Can't find a suitable configuration file; the users' files are fine",
            "Host key verification failed.",
            "You may need to escape any $ with another $.",
            "[… 10 earlier bytes of stderr omitted …]",
        ] {
            assert_eq!(elide_values(message), message);
        }
    }

    #[tokio::test]
    async fn a_summary_names_the_program_and_status_but_never_the_arguments() {
        let script = format!("printf '%s' '{}' >&2; exit 1", COMPOSE_V1.trim_end());
        let err = sh(&script).run().await.unwrap_err();
        let summary = err.summary();
        assert_eq!(
            summary,
            "`sh` failed with exit code 1: Invalid interpolation format for \"environment\" option in service \"app\": \"…\""
        );
        // The full text keeps everything, for the debug log.
        let full = err.to_string();
        assert!(full.contains("sh -c 'printf"), "{full}");
        assert!(full.contains("hunter2${"), "{full}");

        let err = Command::new("/nonexistent/prog").run().await.unwrap_err();
        assert!(
            err.summary().starts_with("could not start `prog`: "),
            "{}",
            err.summary()
        );
        assert!(!err.summary().contains("/nonexistent"), "{}", err.summary());
    }

    #[tokio::test]
    async fn the_summary_chain_replaces_the_process_error_in_a_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot fetch from origin")]
        struct Fetch(#[source] ProcessError);
        let err = Fetch(sh("echo boom >&2; exit 128").run().await.unwrap_err());
        assert_eq!(
            summary_chain(&err),
            "cannot fetch from origin: `sh` failed with exit code 128: boom"
        );
        assert!(crate::error_chain(&err).contains("sh -c 'echo boom"));
        let timeout = sh("echo started >&2; sleep 5")
            .timeout(Duration::from_millis(200))
            .run()
            .await
            .unwrap_err();
        assert_eq!(
            timeout.summary(),
            "`sh` timed out after 200ms; its process group was killed: started"
        );
    }
}
