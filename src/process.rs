//! Child processes: the only module that spawns them.
//!
//! Every child gets a cleared environment (the caller adds back exactly what it needs, so the
//! agent's secrets never leak into git or compose), stdin from `/dev/null` unless the caller
//! asks for a pipe, its own process group, and a hard timeout. On timeout, on drop (shutdown,
//! a cancelled task) and after every normal exit the whole process group is sent `SIGKILL`, so
//! grandchildren (ssh under git, the compose plugin under docker) never outlive the call.
//! stdout is captured up to a limit; stderr is drained concurrently and only its tail is kept,
//! so a child printing 100 MB can neither deadlock us nor fill memory.
//!
//! Every child's duration and failures are reported, by program and subcommand
//! ([`Command::metric_labels`]), to the one [`Observer`] registered at start-up
//! ([`set_observer`]; the app wires it to the Prometheus series). This module does not know who
//! listens: it sits below everything that might.
//!
//! Uses: tokio, nix (signals), untrusted (log lines). Used by: the git and compose adapters.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::untrusted::Untrusted;

/// How much of a child's stderr is kept (the tail: errors come last).
pub const STDERR_TAIL_BYTES: usize = 64 * 1024;
/// Default cap on captured stdout.
pub const DEFAULT_STDOUT_LIMIT: usize = 256 * 1024 * 1024;
/// How much of a command line a log line shows (a `docker service inspect` may list hundreds
/// of services).
const LOG_ARGV_CHARS: usize = 2048;

/// Why a child process failed, as reported to the [`Observer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandFailure {
    /// It could not be started.
    Spawn,
    /// It ran and exited with a non-zero status (or was killed by a signal).
    Exit,
    /// It ran into its timeout; its process group was killed.
    Timeout,
    /// Talking to it failed, or it wrote more than allowed.
    Io,
}

impl CommandFailure {
    /// The metric label: `spawn`, `exit`, `timeout` or `io`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spawn => "spawn",
            Self::Exit => "exit",
            Self::Timeout => "timeout",
            Self::Io => "io",
        }
    }
}

/// What happened to a child, as reported to the [`Observer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandEvent {
    /// It ran for this long, whatever its outcome (a child that never started did not run).
    Finished(Duration),
    /// It failed. A child that ran and failed reports both events.
    Failed(CommandFailure),
}

/// One report about one child: which program and subcommand ([`Command::metric_labels`]), and
/// what happened.
#[derive(Debug, Clone, Copy)]
pub struct CommandReport<'a> {
    pub program: &'a str,
    pub subcommand: &'a str,
    pub event: CommandEvent,
}

/// Receives every [`CommandReport`]. A plain function, called on the task that ran the child:
/// it must be quick and must not block.
pub type Observer = fn(&CommandReport<'_>);

/// The observer, set once. A `OnceLock` rather than a lock: it is read for every child and
/// written once at start-up.
static OBSERVER: OnceLock<Observer> = OnceLock::new();

/// Registers the function that hears about every child from now on. Only the first call takes
/// effect (several apps in one process, as in tests, register the same function); it answers
/// whether this call was the one.
pub fn set_observer(observer: Observer) -> bool {
    OBSERVER.set(observer).is_ok()
}

fn report(program: &str, subcommand: &str, event: CommandEvent) {
    if let Some(observer) = OBSERVER.get() {
        observer(&CommandReport {
            program,
            subcommand,
            event,
        });
    }
}

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
    fn new(name: String, argv: String) -> Self {
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

/// What a finished child produced.
#[derive(Debug)]
pub struct Output {
    pub status: ExitDescription,
    pub stdout: Vec<u8>,
    /// The tail of stderr, lossily decoded.
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.code == Some(0)
    }
}

/// A command to run: program, arguments, the environment to add to an empty one, and limits.
#[derive(Debug, Clone)]
pub struct Command {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    timeout: Duration,
    stdout_limit: usize,
}

impl Command {
    pub fn new(program: impl AsRef<Path>) -> Self {
        Self {
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            timeout: Duration::from_secs(120),
            stdout_limit: DEFAULT_STDOUT_LIMIT,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Adds one variable to the child's otherwise empty environment.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn stdout_limit(mut self, limit: usize) -> Self {
        self.stdout_limit = limit;
        self
    }

    /// The command line as shown in errors and logs: the program's file name and the arguments,
    /// quoted where needed. Never contains a secret because secrets never go into arguments.
    pub fn display(&self) -> String {
        let program = self
            .program
            .file_name()
            .unwrap_or(self.program.as_os_str())
            .to_string_lossy()
            .into_owned();
        let mut out = program;
        for arg in &self.args {
            let arg = arg.to_string_lossy();
            out.push(' ');
            if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"')
            {
                out.push('\'');
                out.push_str(&arg.replace('\'', r"'\''"));
                out.push('\'');
            } else {
                out.push_str(&arg);
            }
        }
        out
    }

    /// The command as errors name it: [`Command::program_name`] and [`Command::display`].
    fn command_line(&self) -> CommandLine {
        CommandLine::new(self.program_name(), self.display())
    }

    /// `git --git-dir=… -c k=v fetch …` → `git fetch`: the first argument that is neither an
    /// option nor an option's value. For logs and the spawn counters.
    fn program_name(&self) -> String {
        // The same naming as the metrics: never an option's value (a project name, a path).
        match self.metric_labels() {
            (program, sub) if sub.is_empty() => program,
            (program, sub) => format!("{program} {sub}"),
        }
    }

    /// `(program, subcommand)` for the metrics: `("git", "fetch")`, `("docker", "compose up")`,
    /// `("docker-compose", "up")`, `("docker", "ps")`. Options and their values are skipped, so a
    /// label never holds a path, a project name or a ref, and the set of values stays small.
    pub fn metric_labels(&self) -> (String, String) {
        /// Options (of git, docker and compose) whose value is the next argument.
        const TAKES_VALUE: &[&str] = &[
            "-c",
            "-C",
            "-p",
            "-f",
            "-H",
            "-l",
            "--project-name",
            "--project-directory",
            "--file",
            "--env-file",
            "--profile",
            "--context",
            "--host",
            "--config",
            "--log-level",
            "--ansi",
            "--git-dir",
            "--work-tree",
        ];
        let program = self
            .program
            .file_name()
            .unwrap_or(self.program.as_os_str())
            .to_string_lossy()
            .into_owned();
        let mut words: Vec<&str> = Vec::new();
        let mut skip_value = false;
        for arg in &self.args {
            let arg = arg.to_str().unwrap_or("?");
            if skip_value {
                skip_value = false;
                continue;
            }
            if arg == "--" {
                break;
            }
            if arg.starts_with('-') {
                skip_value = TAKES_VALUE.contains(&arg);
                continue;
            }
            words.push(arg);
            // `docker compose <subcommand>`: one more word; everything else: the first word.
            let plugin = program == "docker" && words == ["compose"];
            if !plugin {
                break;
            }
        }
        let subcommand = match words.as_slice() {
            [] => self
                .args
                .first()
                .and_then(|a| a.to_str())
                .filter(|a| a.starts_with("--") && !a.contains('='))
                .unwrap_or_default()
                .to_owned(),
            words => words.join(" "),
        };
        let plain = |s: &str| {
            s.len() <= 40
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_ ".contains(c))
        };
        let program = if plain(&program) {
            program
        } else {
            "other".into()
        };
        let subcommand = if plain(&subcommand) {
            subcommand
        } else {
            "other".into()
        };
        (program, subcommand)
    }

    fn record_failure(&self, failure: CommandFailure) {
        let (program, subcommand) = self.metric_labels();
        report(&program, &subcommand, CommandEvent::Failed(failure));
    }

    fn spawn(&self, stdin_piped: bool) -> Result<(Child, GroupGuard), ProcessError> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if stdin_piped {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout can kill ssh or the compose plugin below it.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let child = cmd.spawn().map_err(|source| {
            self.record_failure(CommandFailure::Spawn);
            ProcessError::Spawn {
                command: self.command_line(),
                source,
            }
        })?;
        count_spawn(self.program_name());
        // The pid is only None after the child was reaped, which cannot have happened yet.
        let guard = GroupGuard {
            pgid: child.id().and_then(|id| i32::try_from(id).ok()),
        };
        Ok((child, guard))
    }

    /// Runs to the end and requires exit code 0.
    pub async fn run(self) -> Result<Output, ProcessError> {
        let output = self.clone().run_unchecked().await?;
        if output.success() {
            Ok(output)
        } else {
            self.record_failure(CommandFailure::Exit);
            Err(ProcessError::Failed {
                command: self.command_line(),
                status: output.status,
                stderr: output.stderr,
            })
        }
    }

    /// Runs to the end; any exit status is returned as data. Timeouts and spawn failures are
    /// still errors.
    #[tracing::instrument(name = "child", skip_all, fields(command = %self.program_name()))]
    pub async fn run_unchecked(self) -> Result<Output, ProcessError> {
        let started = Instant::now();
        let result = self.run_to_end(started).await;
        let failure = match &result {
            // Never ran: no duration to record (counted where the spawn failed).
            Err(ProcessError::Spawn { .. }) => return result,
            Ok(_) | Err(ProcessError::Failed { .. }) => None,
            Err(ProcessError::Timeout { .. }) => Some(CommandFailure::Timeout),
            Err(ProcessError::Io { .. } | ProcessError::OutputTooLarge { .. }) => {
                Some(CommandFailure::Io)
            }
        };
        let (program, subcommand) = self.metric_labels();
        report(
            &program,
            &subcommand,
            CommandEvent::Finished(started.elapsed()),
        );
        if let Some(failure) = failure {
            report(&program, &subcommand, CommandEvent::Failed(failure));
        }
        result
    }

    async fn run_to_end(&self, started: Instant) -> Result<Output, ProcessError> {
        let (mut child, mut group) = self.spawn(false)?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(self.io_error(io::Error::other("child pipes missing"), String::new()));
        };
        // Wait for the child, then kill whatever is left of its group: that closes the pipes a
        // stray grandchild could hold open, so the readers below always reach EOF.
        let wait = async {
            let status = tokio::time::timeout(self.timeout, child.wait()).await;
            group.kill();
            status
        };
        let (status, stdout, stderr) = tokio::join!(
            wait,
            read_limited(stdout, self.stdout_limit),
            read_tail(stderr, STDERR_TAIL_BYTES)
        );
        let stderr = stderr.unwrap_or_default();
        let status = match status {
            Err(_elapsed) => {
                // The group is dead; reap the direct child so it is not left a zombie.
                let _ = child.wait().await;
                tracing::warn!(command = %Untrusted::bounded(&self.display(), LOG_ARGV_CHARS), timeout = ?self.timeout, "child timed out, process group killed");
                return Err(ProcessError::Timeout {
                    command: self.command_line(),
                    timeout: self.timeout,
                    stderr,
                });
            }
            Ok(Err(e)) => return Err(self.io_error(e, stderr)),
            Ok(Ok(status)) => ExitDescription::from(status),
        };
        let (stdout, overflowed) = stdout.map_err(|e| self.io_error(e, stderr.clone()))?;
        if overflowed {
            return Err(ProcessError::OutputTooLarge {
                command: self.command_line(),
                limit: self.stdout_limit,
            });
        }
        tracing::debug!(status = %status, elapsed_ms = started.elapsed().as_millis() as u64, "child finished");
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// Starts a long-lived child with piped stdin, for request/response protocols such as
    /// `git cat-file --batch`. The timeout applies to the whole session.
    pub fn start_session(self) -> Result<Session, ProcessError> {
        let (mut child, group) = self.spawn(true)?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(self.io_error(io::Error::other("child pipes missing"), String::new()));
        };
        let stderr = tokio::spawn(read_tail(stderr, STDERR_TAIL_BYTES));
        Ok(Session {
            started: Instant::now(),
            deadline: tokio::time::Instant::now() + self.timeout,
            command: self,
            child,
            group,
            stdin: Some(stdin),
            stdout: BufReader::with_capacity(64 * 1024, stdout),
            stderr: Some(stderr),
        })
    }

    fn io_error(&self, source: io::Error, stderr: String) -> ProcessError {
        ProcessError::Io {
            command: self.command_line(),
            stderr,
            source,
        }
    }
}

/// A running child spoken to over stdin/stdout. Dropping it kills the process group.
#[derive(Debug)]
pub struct Session {
    command: Command,
    child: Child,
    group: GroupGuard,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Option<tokio::task::JoinHandle<io::Result<String>>>,
    deadline: tokio::time::Instant,
    /// For the duration metric, recorded when the session ends (by [`Session::finish`] or a
    /// failed exchange; a session dropped early is not recorded).
    started: Instant,
}

impl Session {
    /// Writes `input` to the child while `read` consumes its answers, concurrently (so neither
    /// pipe can fill up and deadlock), all within the session's deadline.
    pub async fn exchange<T>(
        &mut self,
        input: &[u8],
        read: impl AsyncFnOnce(&mut BufReader<ChildStdout>) -> io::Result<T>,
    ) -> Result<T, ProcessError> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(ProcessError::Io {
                command: self.command.command_line(),
                stderr: String::new(),
                source: io::Error::other("stdin already closed"),
            });
        };
        let stdout = &mut self.stdout;
        let write = async {
            stdin.write_all(input).await?;
            stdin.flush().await
        };
        let work = async {
            let (written, answer) = tokio::join!(write, read(stdout));
            // A reader error is the more telling one (a write fails only because the child died).
            let answer = answer?;
            written?;
            Ok::<T, io::Error>(answer)
        };
        match tokio::time::timeout_at(self.deadline, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.abort(Some(e)).await),
            Err(_elapsed) => Err(self.abort(None).await),
        }
    }

    /// Kills the group and turns the failure into an error that carries the stderr tail.
    async fn abort(&mut self, io_error: Option<io::Error>) -> ProcessError {
        self.group.kill();
        let _ = self.child.wait().await;
        self.record_end(Some(if io_error.is_some() {
            CommandFailure::Io
        } else {
            CommandFailure::Timeout
        }));
        let stderr = self.collect_stderr().await;
        match io_error {
            Some(source) => ProcessError::Io {
                command: self.command.command_line(),
                stderr,
                source,
            },
            None => ProcessError::Timeout {
                command: self.command.command_line(),
                timeout: self.command.timeout,
                stderr,
            },
        }
    }

    fn record_end(&self, failure: Option<CommandFailure>) {
        let (program, subcommand) = self.command.metric_labels();
        report(
            &program,
            &subcommand,
            CommandEvent::Finished(self.started.elapsed()),
        );
        if let Some(failure) = failure {
            report(&program, &subcommand, CommandEvent::Failed(failure));
        }
    }

    async fn collect_stderr(&mut self) -> String {
        match self.stderr.take() {
            Some(task) => task.await.ok().and_then(Result::ok).unwrap_or_default(),
            None => String::new(),
        }
    }

    /// Closes stdin, waits for the child to exit within the deadline, and requires exit code 0.
    pub async fn finish(mut self) -> Result<(), ProcessError> {
        drop(self.stdin.take());
        let status = tokio::time::timeout_at(self.deadline, self.child.wait()).await;
        self.group.kill();
        match status {
            Ok(Ok(status)) if status.success() => {
                self.record_end(None);
                Ok(())
            }
            Ok(Ok(status)) => {
                self.record_end(Some(CommandFailure::Exit));
                Err(ProcessError::Failed {
                    command: self.command.command_line(),
                    status: status.into(),
                    stderr: self.collect_stderr().await,
                })
            }
            Ok(Err(e)) => Err(self.abort(Some(e)).await),
            Err(_) => Err(self.abort(None).await),
        }
    }
}

/// Kills a child's process group when dropped or asked to. Disarms itself after the first kill.
#[derive(Debug)]
struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // ESRCH (nothing left in the group) is the normal case after a clean exit.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads everything; keeps at most `limit` bytes and reports whether more came.
async fn read_limited(
    mut pipe: impl AsyncRead + Unpin,
    limit: usize,
) -> io::Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut overflowed = false;
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            return Ok((out, overflowed));
        }
        let room = limit.saturating_sub(out.len());
        if n > room {
            overflowed = true;
        }
        out.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// Reads everything; keeps only the last `limit` bytes, noting how much was dropped.
async fn read_tail(mut pipe: impl AsyncRead + Unpin, limit: usize) -> io::Result<String> {
    let mut kept: Vec<u8> = Vec::new();
    let mut dropped = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            // A broken pipe at the end of a killed child is not worth losing the tail over.
            Err(_) => break,
        };
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 2 * limit {
            let cut = kept.len() - limit;
            dropped += cut;
            kept.drain(..cut);
        }
    }
    if kept.len() > limit {
        let cut = kept.len() - limit;
        dropped += cut;
        kept.drain(..cut);
    }
    let text = String::from_utf8_lossy(&kept);
    Ok(if dropped > 0 {
        format!("[… {dropped} earlier bytes of stderr omitted …]\n{text}")
    } else {
        text.into_owned()
    })
}

/// Children started so far, by program and subcommand (`git fetch`, `docker ps`). For
/// benchmarks (the metrics hear of children through the [`Observer`]); tests that count
/// processes use recording fakes instead, because tests in one binary share this counter.
static SPAWNS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

fn count_spawn(name: String) {
    // A poisoned counter only means a panic elsewhere; counting is best effort.
    if let Ok(mut spawns) = SPAWNS.lock() {
        *spawns.entry(name).or_default() += 1;
    }
}

/// A copy of the spawn counters.
pub fn spawn_counts() -> BTreeMap<String, u64> {
    SPAWNS.lock().map(|s| s.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .env("PATH", "/usr/bin:/bin")
    }

    /// Every report the observer heard, for the test below (the one observer of this binary).
    static HEARD: Mutex<Vec<(String, String, CommandEvent)>> = Mutex::new(Vec::new());

    fn hear(report: &CommandReport<'_>) {
        HEARD.lock().unwrap().push((
            report.program.to_owned(),
            report.subcommand.to_owned(),
            report.event,
        ));
    }

    fn heard(program: &str) -> Vec<(String, CommandEvent)> {
        HEARD
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == program)
            .map(|(_, sub, event)| (sub.clone(), *event))
            .collect()
    }

    #[tokio::test]
    async fn the_observer_hears_how_long_each_child_ran_and_how_it_failed() {
        // Nothing else in this test binary registers an observer.
        set_observer(hear);
        // A program name no other test uses, so its reports are this test's alone.
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("observer-probe-sh");
        std::os::unix::fs::symlink("/bin/sh", &probe).unwrap();
        let _ = Command::new(&probe)
            .args(["-c", "exit 3"])
            .run()
            .await
            .unwrap_err();
        assert!(
            matches!(
                heard("observer-probe-sh").as_slice(),
                [
                    (_, CommandEvent::Finished(_)),
                    (_, CommandEvent::Failed(CommandFailure::Exit))
                ]
            ),
            "{:?}",
            heard("observer-probe-sh")
        );

        // A child that never started did not run: a failure, no duration.
        let _ = Command::new("/nonexistent/observer-probe")
            .run()
            .await
            .unwrap_err();
        assert_eq!(
            heard("observer-probe"),
            [(String::new(), CommandEvent::Failed(CommandFailure::Spawn))]
        );
    }

    #[test]
    fn failure_reasons_have_the_metric_names() {
        let names = [
            CommandFailure::Spawn,
            CommandFailure::Exit,
            CommandFailure::Timeout,
            CommandFailure::Io,
        ]
        .map(CommandFailure::as_str);
        assert_eq!(names, ["spawn", "exit", "timeout", "io"]);
    }

    #[test]
    fn metric_labels_name_the_subcommand_and_never_a_value() {
        let cases = [
            (
                Command::new("/usr/bin/git")
                    .arg("--git-dir=/data/mirror.git")
                    .args(["-c", "gc.autoDetach=false", "-c", "x=y", "fetch", "--quiet"])
                    .args([
                        "--end-of-options",
                        "file:///srv/r.git",
                        "+refs/heads/main:x",
                    ]),
                ("git", "fetch"),
            ),
            (Command::new("git").arg("--version"), ("git", "--version")),
            (
                Command::new("git").args(["init", "--bare", "--", "/data/mirror.git"]),
                ("git", "init"),
            ),
            (
                Command::new("/usr/local/bin/docker").args([
                    "compose",
                    "--project-name",
                    "web",
                    "--project-directory",
                    "/data/stacks/web",
                    "--file",
                    "/data/stacks/web/compose.yaml",
                    "up",
                    "--detach",
                ]),
                ("docker", "compose up"),
            ),
            (
                Command::new("/usr/bin/docker-compose").args([
                    "--project-name",
                    "web",
                    "--project-directory",
                    "/d",
                    "--file",
                    "/d/compose.yaml",
                    "config",
                    "--services",
                ]),
                ("docker-compose", "config"),
            ),
            (
                Command::new("docker").args(["ps", "--all", "--filter", "label=a=b"]),
                ("docker", "ps"),
            ),
            (
                Command::new("docker").args(["compose", "version", "--short"]),
                ("docker", "compose version"),
            ),
            (
                Command::new("/opt/Odd Tool").arg("/etc/passwd"),
                ("other", "other"),
            ),
        ];
        for (command, (program, subcommand)) in cases {
            assert_eq!(
                command.metric_labels(),
                (program.to_owned(), subcommand.to_owned()),
                "{}",
                command.display()
            );
        }
    }

    #[tokio::test]
    async fn output_and_status_are_captured() {
        let out = sh("echo out; echo err >&2; exit 3")
            .run_unchecked()
            .await
            .unwrap();
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code, Some(3));
    }

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

    #[tokio::test]
    async fn environment_is_not_inherited() {
        // SAFETY-free: set_var is unsafe in edition 2024, so check a variable every test
        // process has instead.
        assert!(std::env::var_os("PATH").is_some());
        let out = sh("env").run().await.unwrap();
        let env = String::from_utf8(out.stdout).unwrap();
        let names: Vec<_> = env.lines().filter_map(|l| l.split('=').next()).collect();
        assert!(
            names
                .iter()
                .all(|n| ["PATH", "PWD", "SHLVL", "_"].contains(n)),
            "{names:?}"
        );
    }

    #[tokio::test]
    async fn stdin_is_null() {
        let out = sh("cat; echo done")
            .timeout(Duration::from_secs(5))
            .run()
            .await
            .unwrap();
        assert_eq!(out.stdout, b"done\n");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        // The grandchild ignores nothing and would sleep for an hour; it must die with the group.
        let script = format!("sleep 3600 & echo $! > {}; wait", pidfile.display());
        let started = Instant::now();
        let err = sh(&script)
            .timeout(Duration::from_millis(300))
            .run()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!is_alive(pid), "grandchild {pid} survived the timeout");
    }

    #[tokio::test]
    async fn stray_grandchildren_are_killed_after_a_normal_exit() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("stray.pid");
        // The stray keeps stdout open; without the group kill, reading stdout would hang.
        let script = format!("sleep 3600 & echo $! > {}; echo done", pidfile.display());
        let out = sh(&script)
            .timeout(Duration::from_secs(10))
            .run()
            .await
            .unwrap();
        assert_eq!(out.stdout, b"done\n");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!is_alive(pid), "stray {pid} survived");
    }

    #[tokio::test]
    async fn f13_huge_stderr_is_bounded_and_does_not_deadlock() {
        // 100 MB of stderr while stdout stays small.
        let out = sh("head -c 100000000 /dev/zero | tr '\\0' x >&2; echo fine")
            .timeout(Duration::from_secs(60))
            .run()
            .await
            .unwrap();
        assert_eq!(out.stdout, b"fine\n");
        assert!(
            out.stderr.len() < STDERR_TAIL_BYTES + 200,
            "{}",
            out.stderr.len()
        );
        assert!(out.stderr.starts_with("[… "));
    }

    #[tokio::test]
    async fn stdout_over_the_limit_is_an_error() {
        let err = sh("head -c 10000 /dev/zero")
            .stdout_limit(100)
            .run()
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProcessError::OutputTooLarge { limit: 100, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let err = Command::new("/nonexistent/prog").run().await.unwrap_err();
        assert!(matches!(err, ProcessError::Spawn { .. }), "{err}");
    }

    #[tokio::test]
    async fn session_exchanges_requests_and_answers() {
        let mut session = Command::new("/bin/cat")
            .timeout(Duration::from_secs(10))
            .start_session()
            .unwrap();
        let answer = session
            .exchange(b"hello\n", async |out| {
                let mut line = String::new();
                tokio::io::AsyncBufReadExt::read_line(out, &mut line).await?;
                Ok(line)
            })
            .await
            .unwrap();
        assert_eq!(answer, "hello\n");
        session.finish().await.unwrap();
    }

    #[tokio::test]
    async fn session_deadline_kills_the_child() {
        let mut session = Command::new("/bin/sleep")
            .arg("3600")
            .timeout(Duration::from_millis(200))
            .start_session()
            .unwrap();
        let err = session
            .exchange(b"", async |out| {
                let mut buf = Vec::new();
                out.read_to_end(&mut buf).await?;
                Ok(buf)
            })
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
    }

    /// Whether `pid` is still running two seconds from now. `killpg` returns before the signal
    /// has been acted on, and on a busy machine the target may take a moment to die, so a
    /// process counts as alive only if it stays so.
    fn is_alive(pid: i32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            // A zombie still answers kill(0); read its state to tell.
            let running = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Ok(stat) => !stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')),
                Err(_) => false,
            };
            if !running || Instant::now() > deadline {
                return running;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
