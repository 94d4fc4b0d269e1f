//! Running a [`Command`]: spawning it in its own process group with a cleared environment and
//! null stdin, draining stdout (bounded) and stderr (its tail) concurrently, the timeout, the
//! [`Session`] spoken to over stdin/stdout, killing the group on every exit, and the spawn
//! counters.
//!
//! Uses: tokio, nix (signals), untrusted (log lines).

use std::collections::BTreeMap;
use std::io;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Instant;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::command::{Command, Output};
use super::error::{ExitDescription, ProcessError};
use super::observer::{CommandEvent, CommandFailure, report};
use super::{LOG_ARGV_CHARS, STDERR_TAIL_BYTES};
use crate::untrusted::Untrusted;

impl Command {
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
pub(super) struct GroupGuard {
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
pub(super) async fn read_limited(
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
pub(super) async fn read_tail(
    mut pipe: impl AsyncRead + Unpin,
    limit: usize,
) -> io::Result<String> {
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

pub(super) fn count_spawn(name: String) {
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
    use std::time::Duration;

    use super::*;
    use crate::process::sh;

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
        let out = run_ok("cat; echo done", 5).await;
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
        let pid = read_pid(&pidfile);
        assert!(!is_alive(pid), "grandchild {pid} survived the timeout");
    }

    #[tokio::test]
    async fn stray_grandchildren_are_killed_after_a_normal_exit() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("stray.pid");
        // The stray keeps stdout open; without the group kill, reading stdout would hang.
        let script = format!("sleep 3600 & echo $! > {}; echo done", pidfile.display());
        let out = run_ok(&script, 10).await;
        assert_eq!(out.stdout, b"done\n");
        let pid = read_pid(&pidfile);
        assert!(!is_alive(pid), "stray {pid} survived");
    }

    #[tokio::test]
    async fn f13_huge_stderr_is_bounded_and_does_not_deadlock() {
        // 100 MB of stderr while stdout stays small.
        let out = run_ok(
            "head -c 100000000 /dev/zero | tr '\\0' x >&2; echo fine",
            60,
        )
        .await;
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

    /// `script` run to a successful end within `secs` seconds.
    async fn run_ok(script: &str, secs: u64) -> Output {
        sh(script)
            .timeout(Duration::from_secs(secs))
            .run()
            .await
            .unwrap()
    }

    /// The process id a test script wrote to `pidfile` (`echo $! > pidfile`).
    fn read_pid(pidfile: &std::path::Path) -> i32 {
        std::fs::read_to_string(pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
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
