//! Stand-ins for the binaries the app runs (`GIT_BIN`, `DOCKER_BIN`, `COMPOSE_BIN`): shell
//! scripts written into a test's temp dir that record each invocation in a log, then run the
//! real tool (or fake an answer), and the readers of those logs.

use std::path::{Path, PathBuf};

/// Writes `text` to `path` and makes it executable.
pub fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A script `dir/<name>` that appends its whole argv (`$*`) to `dir/<log>`, one line a run,
/// then runs `real` with the same arguments. Returns the script and the log.
pub fn recording(dir: &Path, name: &str, log: &str, real: &Path) -> (PathBuf, PathBuf) {
    let log = dir.join(log);
    let script = dir.join(name);
    write_executable(
        &script,
        &format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        ),
    );
    (script, log)
}

/// [`recording`] for the `git`, `docker` or `docker-compose` found on `PATH`.
pub fn recording_tool(dir: &Path, tool: &str) -> (PathBuf, PathBuf) {
    let real = which::which(tool).unwrap_or_else(|e| panic!("{tool} on PATH: {e}"));
    recording(
        dir,
        &format!("{tool}-recorder"),
        &format!("{tool}-calls.log"),
        &real,
    )
}

/// The lines a recording wrapper wrote (none when it never ran).
pub fn recorded(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A git wrapper script that logs each invocation's subcommand (and optionally sleeps during
/// fetches), then runs the real git: for counting processes and holding a refresh open.
pub fn recording_git(dir: &Path, fetch_delay_secs: u32) -> (PathBuf, PathBuf) {
    let real = which::which("git").unwrap();
    let log = dir.join("git-calls.log");
    let script = dir.join("git-recorder");
    write_executable(
        &script,
        &format!(
            r#"#!/bin/sh
sub=""
for a in "$@"; do case "$a" in -*) ;; *) if [ -z "$sub" ] && [ "$prev" != "-c" ]; then sub="$a"; fi ;; esac; prev="$a"; done
echo "start $sub $$" >> "{log}"
if [ "$sub" = fetch ] && [ {delay} -gt 0 ]; then sleep {delay}; fi
"{real}" "$@"
rc=$?
echo "end $sub $$" >> "{log}"
exit $rc
"#,
            log = log.display(),
            delay = fetch_delay_secs,
            real = real.display()
        ),
    );
    (script, log)
}

/// Subcommands recorded by [`recording_git`], in order of start.
pub fn recorded_calls(log: &Path) -> Vec<String> {
    recorded(log)
        .iter()
        .filter_map(|l| l.strip_prefix("start "))
        .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
        .collect()
}

/// The largest number of overlapping `fetch` runs in a [`recording_git`] log.
pub fn max_concurrent_fetches(log: &Path) -> usize {
    let mut running = 0usize;
    let mut max = 0usize;
    for line in recorded(log) {
        if line.starts_with("start fetch") {
            running += 1;
            max = max.max(running);
        } else if line.starts_with("end fetch") {
            running = running.saturating_sub(1);
        }
    }
    max
}
