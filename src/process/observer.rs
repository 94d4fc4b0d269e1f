//! Who hears about children: the one [`Observer`] registered at start-up ([`set_observer`]),
//! told each child's duration and failures by program and subcommand. This module does not
//! know who listens (the app wires it to the Prometheus series).
//!
//! Uses: nothing else in the crate.

use std::sync::OnceLock;
use std::time::Duration;

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

/// One report about one child: which program and subcommand
/// ([`Command::metric_labels`](super::Command::metric_labels)), and what happened.
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

pub(super) fn report(program: &str, subcommand: &str, event: CommandEvent) {
    if let Some(observer) = OBSERVER.get() {
        observer(&CommandReport {
            program,
            subcommand,
            event,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use crate::process::Command;

    use super::*;

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
}
