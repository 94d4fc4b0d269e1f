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
//! The files: `command` builds a [`Command`]; `run` spawns, drains, times out and kills
//! it (and holds a [`Session`]); `error` says how it failed ([`ProcessError`], its summary);
//! `observer` tells the registered [`Observer`] about each child.
//!
//! Uses: tokio, nix (signals), untrusted (log lines). Used by: the git and compose adapters.

mod command;
mod error;
mod observer;
mod run;

pub use command::{Command, Output};
pub use error::{
    CommandLine, ExitDescription, ProcessError, SUMMARY_MESSAGE_CHARS, elide_values, summary_chain,
};
pub use observer::{CommandEvent, CommandFailure, CommandReport, Observer, set_observer};
pub use run::{Session, spawn_counts};

/// How much of a child's stderr is kept (the tail: errors come last).
pub const STDERR_TAIL_BYTES: usize = 64 * 1024;
/// Default cap on captured stdout.
pub const DEFAULT_STDOUT_LIMIT: usize = 256 * 1024 * 1024;
/// How much of a command line a log line shows (a `docker service inspect` may list hundreds
/// of services).
const LOG_ARGV_CHARS: usize = 2048;

/// A `/bin/sh -c` command with a plain `PATH`, for the tests of every file here.
#[cfg(test)]
fn sh(script: &str) -> Command {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .env("PATH", "/usr/bin:/bin")
}
