//! The [`Command`] builder (program, arguments, the environment added to an empty one, working
//! directory, limits), how it shows in logs and its metric labels, and the [`Output`] of a run.
//! Running it lives in `run`.
//!
//! Uses: the observer (to report failures); nothing else in the crate.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::DEFAULT_STDOUT_LIMIT;
use super::error::{CommandLine, ExitDescription};
use super::observer::{CommandEvent, CommandFailure, report};

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
    pub(super) program: PathBuf,
    pub(super) args: Vec<OsString>,
    pub(super) env: Vec<(OsString, OsString)>,
    pub(super) cwd: Option<PathBuf>,
    pub(super) timeout: Duration,
    pub(super) stdout_limit: usize,
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
        let mut out = self.program_file_name();
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

    /// The program's file name, without its directory: `git` for `/usr/bin/git`.
    fn program_file_name(&self) -> String {
        self.program
            .file_name()
            .unwrap_or(self.program.as_os_str())
            .to_string_lossy()
            .into_owned()
    }

    /// The command as errors name it: [`Command::program_name`] and [`Command::display`].
    pub(super) fn command_line(&self) -> CommandLine {
        CommandLine::new(self.program_name(), self.display())
    }

    /// `git --git-dir=… -c k=v fetch …` → `git fetch`: the first argument that is neither an
    /// option nor an option's value. For logs and the spawn counters.
    pub(super) fn program_name(&self) -> String {
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
        let program = self.program_file_name();
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

    pub(super) fn record_failure(&self, failure: CommandFailure) {
        let (program, subcommand) = self.metric_labels();
        report(&program, &subcommand, CommandEvent::Failed(failure));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
