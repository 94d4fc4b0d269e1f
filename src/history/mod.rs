//! The durable store of SPEC §10: each stack's deployment history and its controls (pins and
//! suspensions), kept in one directory (the app gives it `DATA_DIR/history`). Pure storage:
//! no HTTP, no git, no docker; the reconciler records into it and the edge reads from it.
//!
//! - [`History`] (in [`log`]): every sync attempt as a [`Deployment`], appended to
//!   `deployments.log`, the newest `limit` (`HISTORY_LIMIT`) per stack kept in memory.
//! - [`Controls`] (in [`controls`]): `pinnedRevision` and `suspended` per stack, in
//!   `controls.json`.
//!
//! # `deployments.log`
//!
//! An append-only text file, one record per line:
//!
//! ```text
//! 3f1c0a9e5b7d2468 {"format":"docker-cd-history","version":1,"nextId":41}
//! 9a0b1c2d3e4f5061 {"stack":"apps/web","id":41,"revision":"…","commitMessage":"…",…}
//! ```
//!
//! Each line is 16 lower-case hex digits (the first 8 bytes of the SHA-256 of the JSON that
//! follows), one space, the record as compact JSON (which never holds a raw newline), and
//! `\n`. The first line of a file this module wrote whole is a header: the format name, its
//! version (a file of another version is refused, not misread), and the next id to hand out
//! (so ids keep increasing even when the records holding the highest ones were dropped).
//!
//! Why this and not an embedded database: the workload is one small append per deployment and
//! one full read at start-up, a handful of megabytes at most. A line log gives that with one
//! `write` and one `fdatasync` per record, no new dependency (`sha2` is already one), and a
//! file an operator can read with `tail`. Damage is contained to a line: a `kill -9` or power
//! loss can leave at most the last line torn, a flipped byte fails that line's checksum, and
//! reading skips such lines (counted in the [`LoadReport`]) instead of failing. SHA-256 rather
//! than a CRC: it is already linked, hardware-accelerated, and at 20,000 records costs a few
//! milliseconds of the start-up budget.
//!
//! The file is compacted (rewritten with only the kept records, through a temporary file,
//! `fsync`, `rename` and an `fsync` of the directory) when it holds more than twice
//! `limit × stacks` records (and at least 4,096, so a small store is not rewritten every few
//! appends), when it is opened damaged or too long, and on [`History::forget`]. An append is
//! one `write` and one `fdatasync`; a compaction adds two `fsync`s at most once per
//! `max(limit × stacks, 4,096 − kept)` appends. Memory holds at most `limit × stacks`
//! records, the file at most twice that (40,000 at 1,000 stacks and the default limit, about
//! 28 MB at 700 bytes a record).
//!
//! # `controls.json`
//!
//! `{"version":1,"stacks":{"<path>":{"pinnedRevision":"<commit>","suspended":true}}}`,
//! rewritten whole and atomically on every change. A missing file means no controls; a damaged
//! one fails [`Controls::open`]: the app refuses to start rather than forget a pin or a
//! suspension and deploy what the operator stopped.
//!
//! Foundation layer: uses only [`crate::desired_state::rfc3339`] (the API's timestamp format)
//! and spawns nothing (its kill test re-runs the test binary, see there).

pub mod controls;
pub mod log;

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use controls::{Control, Controls};
pub use log::{
    DEFAULT_LIMIT, DeployedImage, Deployment, HOOK_OUTPUT_BYTES, History, HookRun, LoadReport,
    NewDeployment, Outcome, Trigger,
};

/// What went wrong with the store; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is damaged: {reason}", path.display())]
    Damaged { path: PathBuf, reason: String },
    #[error("{} has format version {found}; this docker-cd reads version {supported}", path.display())]
    UnsupportedVersion {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("cannot encode a record for {}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl HistoryError {
    fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> HistoryError {
        let path = path.to_owned();
        move |source| HistoryError::Io { op, path, source }
    }
}

/// Creates `dir` (and its parents) if needed, and makes its entry durable.
fn ensure_dir(dir: &Path) -> Result<(), HistoryError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(HistoryError::io("create the directory", dir))?;
    sync_dir(dir)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// `fsync` of a directory: makes the creation, rename or removal of its entries durable.
fn sync_dir(dir: &Path) -> Result<(), HistoryError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(HistoryError::io("sync the directory", dir))
}

/// The prefix of the temporary files [`replace_file`] writes next to `name`.
fn temp_prefix(name: &str) -> String {
    format!(".{name}.")
}

/// Replaces `dir/name` with `bytes` atomically: a reader (or a restart after a crash) sees the
/// old content or the new one, never a mix. Temporary file, `fsync`, `rename`, `fsync` of the
/// directory.
fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), HistoryError> {
    let path = dir.join(name);
    let mut temp = tempfile::Builder::new()
        .prefix(&temp_prefix(name))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(HistoryError::io("create a temporary file in", dir))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(HistoryError::io("write", temp.path()))?;
    temp.persist(&path)
        .map_err(|e| HistoryError::io("replace", &path)(e.error))?;
    sync_dir(dir)
}

/// Removes temporary files a crash left behind in the middle of [`replace_file`]; best effort,
/// they are never read.
fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = temp_prefix(name);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_a_file_leaves_only_the_new_content() {
        let dir = tempfile::tempdir().unwrap();
        replace_file(dir.path(), "x.json", b"old").unwrap();
        replace_file(dir.path(), "x.json", b"new").unwrap();
        assert_eq!(std::fs::read(dir.path().join("x.json")).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn stale_temporary_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".x.json.abc.tmp"), b"half").unwrap();
        std::fs::write(dir.path().join("x.json"), b"keep").unwrap();
        remove_stale_temps(dir.path(), "x.json");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.json")]);
    }

    #[test]
    fn errors_name_the_file_and_the_cause() {
        let err = HistoryError::io("append to", Path::new("/d/deployments.log"))(io::Error::other(
            "disk full",
        ));
        assert_eq!(
            crate::error_chain(&err),
            "cannot append to /d/deployments.log: disk full"
        );
    }
}
