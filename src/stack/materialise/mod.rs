//! Writing a stack directory, read from a commit, to disk for compose to use.
//!
//! Compose needs real files: `.env`, `env_file:`, configs and relative bind mounts all resolve
//! against the project directory. The directory for project `p` is `<root>/p`.
//!
//! Before anything is written, the whole file list is checked (`rules`): plain relative paths,
//! none listed twice or beneath a file or link, and every symbolic link resolved through the
//! other links of the same commit must stay inside the stack directory (a chain such as
//! `s -> .`, `t -> s/..` is refused, naming `t`). Links that dangle inside are kept.
//!
//! Every file is then written, complete, into a staging directory next to the target (same
//! filesystem, mode `0700`); only when all of them are written is each renamed into place (an
//! atomic replace per file), and files the previous version had but this one does not are
//! removed (the previous file list is kept in [`MANIFEST`], see `manifest`). So a failure
//! while writing (a full disk, a name the filesystem refuses) leaves the previous copy untouched, and files
//! the stack itself creates at run time (a `./data` bind mount) survive re-syncs, as they would
//! in a `git checkout`.
//!
//! The stack directory is writable by its containers, so what is on disk there is not trusted:
//! every operation below the root goes through `dir::Dir` handles that never follow a
//! symbolic link. A link planted at run time is replaced (when a new file's path needs a real
//! directory there) or left alone (when a dropped file lies beneath it), never followed; the
//! file list is read only if it is a regular file. Nothing outside `<root>/<project>` is read,
//! written or removed, whatever the disk holds.
//!
//! Modes: files `0640`, files with an executable bit in Git `0750`, directories `0750`, the
//! stack directory loses any world bit it had; all owned by docker-cd's user and group.
//!
//! Uses: `desired_state::tree` for [`StackFile`].

mod dir;
mod manifest;
mod rules;

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use self::dir::{Dir, Kind, is_not_a_dir, is_not_found};
use self::manifest::Stored;
use crate::desired_state::tree::{MODE_SYMLINK, StackFile};

pub use self::rules::{MAX_LINK_HOPS, MAX_LINK_TARGET_BYTES};

/// The list of files docker-cd wrote into a project directory (format: see `manifest.rs`).
pub const MANIFEST: &str = ".docker-cd-files";

/// The mode of a materialised file: no bit for other users.
pub const FILE_MODE: u32 = 0o640;
/// The mode of a materialised file that is executable in Git: owner and group may run it.
pub const EXECUTABLE_MODE: u32 = 0o750;
/// The mode of a decrypted SOPS file: docker-cd's user only.
pub const SECRET_MODE: u32 = 0o600;
/// The mode of a directory materialise creates.
pub const DIR_MODE: u32 = 0o750;
/// The staging directory: only docker-cd's user, until each file is renamed into place.
const STAGING_MODE: u32 = 0o700;

/// The most of a stored file list that is read; a longer one is cut, and a cut list in format
/// 2 is not trusted (nothing is removed).
const MAX_MANIFEST_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MaterialiseError {
    #[error("{path:?} is not a plain relative path")]
    BadPath { path: String },
    #[error("{path:?} is listed twice, or beneath a file or a symbolic link")]
    PathConflict { path: String },
    #[error("{path:?} is reserved for docker-cd's list of the files it wrote")]
    ReservedName { path: String },
    #[error("symbolic link {path:?} resolves outside the stack directory ({chain})")]
    EscapingSymlink { path: String, chain: String },
    #[error("symbolic link {path:?} does not resolve within {MAX_LINK_HOPS} links ({chain})")]
    SymlinkLoop { path: String, chain: String },
    #[error(
        "symbolic link {path:?} has a target no filesystem stores (empty, with a NUL byte, or over {MAX_LINK_TARGET_BYTES} bytes)"
    )]
    BadLinkTarget { path: String },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(action: &'static str, path: PathBuf) -> impl FnOnce(io::Error) -> MaterialiseError {
    move |source| MaterialiseError::Io {
        action,
        path,
        source,
    }
}

/// Writes `files` as the content of `<root>/<project>`, returning that directory.
///
/// `root` is trusted (the operator's `DATA_DIR/stacks`); nothing below it is.
pub fn materialise(
    root: &Path,
    project: &str,
    files: &[StackFile],
) -> Result<PathBuf, MaterialiseError> {
    rules::check_relative(project)?;
    if project.contains('/') {
        return Err(MaterialiseError::BadPath {
            path: project.to_owned(),
        });
    }
    rules::check(files)?;

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(root)
        .map_err(io_err("create", root.to_owned()))?;
    let root_dir = Dir::open_trusted(root).map_err(io_err("open", root.to_owned()))?;
    let staging = Staging::create(root, &root_dir, project)?;

    for file in files {
        write_entry(&staging.files, file)?;
    }
    let current: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let list = manifest::render(current.iter().copied());
    staging
        .files
        .create_file(MANIFEST, &list, FILE_MODE)
        .map_err(io_err("write", staging.files.child_path(MANIFEST)))?;

    let target_path = root.join(project);
    root_dir
        .create_dir(project, DIR_MODE)
        .map_err(io_err("create", target_path.clone()))?;
    let target = root_dir
        .open_dir(project)
        .map_err(io_err("open", target_path.clone()))?;
    // Other users cannot reach anything below, whatever the modes an older version left.
    let mode = target.mode().map_err(io_err("stat", target_path.clone()))?;
    if mode & 0o007 != 0 {
        target
            .set_mode(mode & !0o007)
            .map_err(io_err("chmod", target_path.clone()))?;
    }

    let previous = read_previous(&target);
    for (n, file) in files.iter().enumerate() {
        place(&staging, &target, &file.path, n)?;
    }
    for gone in previous.iter().filter(|p| !current.contains(p.as_str())) {
        remove_dropped(&target, gone)?;
    }
    staging
        .files
        .rename(MANIFEST, &target, MANIFEST)
        .map_err(io_err("write", target.child_path(MANIFEST)))?;
    Ok(target_path)
}

/// The staging directory: `files/` holds the new version as it will be in the target,
/// `trash/` whatever directory stood where the new version has a file. Both go when this is
/// dropped (`std::fs::remove_dir_all`, which does not follow links either).
struct Staging {
    _guard: tempfile::TempDir,
    files: Dir,
    trash: Dir,
}

impl Staging {
    fn create(root: &Path, root_dir: &Dir, project: &str) -> Result<Self, MaterialiseError> {
        let guard = tempfile::Builder::new()
            .prefix(&format!(".staging-{project}-"))
            .tempdir_in(root)
            .map_err(io_err("create a staging directory in", root.to_owned()))?;
        let path = guard.path().to_owned();
        let fail = |action| io_err(action, path.clone());
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| fail("name")(io::ErrorKind::InvalidData.into()))?;
        let staging = root_dir.open_dir(name).map_err(fail("open"))?;
        staging.set_mode(STAGING_MODE).map_err(fail("chmod"))?;
        for sub in ["files", "trash"] {
            staging
                .create_dir(sub, STAGING_MODE)
                .map_err(fail("create"))?;
        }
        Ok(Self {
            files: staging.open_dir("files").map_err(fail("open"))?,
            trash: staging.open_dir("trash").map_err(fail("open"))?,
            _guard: guard,
        })
    }
}

/// `path`'s directory names and its own name.
fn split(path: &str) -> (Vec<&str>, &str) {
    let mut parts: Vec<&str> = path.split('/').collect();
    let name = parts.pop().unwrap_or(path);
    (parts, name)
}

/// Opens each of `names` in turn from `base` with `step`; the handles, outermost first.
fn walk(
    base: &Dir,
    names: &[&str],
    step: impl Fn(&Dir, &str) -> io::Result<Dir>,
) -> io::Result<Vec<Dir>> {
    let mut dirs: Vec<Dir> = Vec::with_capacity(names.len());
    for name in names {
        let next = step(dirs.last().unwrap_or(base), name)?;
        dirs.push(next);
    }
    Ok(dirs)
}

fn write_entry(staging: &Dir, file: &StackFile) -> Result<(), MaterialiseError> {
    let (parents, name) = split(&file.path);
    let dirs = walk(staging, &parents, |d, n| d.ensure_dir(n, DIR_MODE))
        .map_err(io_err("write", staging.child_path(&file.path)))?;
    let dir = dirs.last().unwrap_or(staging);
    let written = if file.mode == MODE_SYMLINK {
        dir.symlink(&file.content, name)
    } else {
        let mode = if file.mode == crate::stack::secrets::DECRYPTED {
            SECRET_MODE
        } else if file.mode & 0o111 != 0 {
            EXECUTABLE_MODE
        } else {
            FILE_MODE
        };
        dir.create_file(name, &file.content, mode)
    };
    written.map_err(io_err("write", dir.child_path(name)))
}

/// Renames `path` from staging into the target, making each of its directories a real one.
fn place(staging: &Staging, target: &Dir, path: &str, n: usize) -> Result<(), MaterialiseError> {
    let (parents, name) = split(path);
    let from = walk(&staging.files, &parents, Dir::open_dir)
        .map_err(io_err("open", staging.files.child_path(path)))?;
    let from = from.last().unwrap_or(&staging.files);
    // A file or link of a previous version, or planted, where a directory must be: replaced.
    let to = walk(target, &parents, |d, n| d.ensure_dir(n, DIR_MODE))
        .map_err(io_err("create the directory of", target.child_path(path)))?;
    let to = to.last().unwrap_or(target);
    let fail = || io_err("write", to.child_path(name));
    if to.kind(name).map_err(fail())? == Some(Kind::Dir) {
        // rename(2) replaces files and links but not a directory: set it aside to go with
        // the staging directory.
        to.rename(name, &staging.trash, &n.to_string())
            .map_err(fail())?;
    }
    from.rename(name, to, name).map_err(fail())
}

/// Removes `path`, a file of the previous version, if it is still a file or link at a path
/// made of real directories; then its parents that became empty.
fn remove_dropped(target: &Dir, path: &str) -> Result<(), MaterialiseError> {
    let (parents, name) = split(path);
    let dirs = match walk(target, &parents, Dir::open_dir) {
        Ok(dirs) => dirs,
        // A link where a directory was (planted, or the new version's) is not followed, and
        // what lies beneath a missing directory is gone already.
        Err(e) if is_not_a_dir(&e) || is_not_found(&e) => return Ok(()),
        Err(e) => return Err(io_err("open", target.child_path(path))(e)),
    };
    let dir = dirs.last().unwrap_or(target);
    let fail = || io_err("remove", dir.child_path(name));
    match dir.kind(name).map_err(fail())? {
        // A directory is not what docker-cd wrote there: the stack made it at run time.
        None | Some(Kind::Dir) => return Ok(()),
        Some(Kind::File | Kind::Symlink | Kind::Other) => {}
    }
    match dir.remove_file(name) {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(fail()(e)),
    }
    for i in (0..parents.len()).rev() {
        let parent = if i == 0 { target } else { &dirs[i - 1] };
        if parent.remove_empty_dir(parents[i]).is_err() {
            break; // not empty: stop
        }
    }
    Ok(())
}

/// The files the previous version wrote. On any doubt (no list, a link or FIFO in its place, a
/// list cut short) the answer is none: a stale file left behind is harmless, a runtime file
/// removed is not.
fn read_previous(target: &Dir) -> BTreeSet<String> {
    let bytes = match target.read_file(MANIFEST, MAX_MANIFEST_BYTES) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return BTreeSet::new(),
        Err(error) => {
            tracing::warn!(dir = %target.path().display(), %error, "cannot read the list of files written before; removing none");
            return BTreeSet::new();
        }
    };
    match manifest::parse(&bytes) {
        Stored::Exact(paths) => paths,
        Stored::Legacy(lines) => manifest::parse_legacy(&lines, |path| exists(target, path)),
        Stored::Unreadable => {
            tracing::warn!(dir = %target.path().display(), "the list of files written before is unreadable; removing none");
            BTreeSet::new()
        }
    }
}

/// Is there an entry at `path` below `target`, through real directories only?
fn exists(target: &Dir, path: &str) -> bool {
    if rules::check_relative(path).is_err() {
        return false;
    }
    let (parents, name) = split(path);
    walk(target, &parents, Dir::open_dir)
        .is_ok_and(|dirs| matches!(dirs.last().unwrap_or(target).kind(name), Ok(Some(_))))
}

/// Writes a file through a temporary file in the same directory and a rename. For docker-cd's
/// own directories (the label overrides), which no container reaches.
pub fn write_atomically(path: &Path, content: &[u8]) -> Result<(), MaterialiseError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err("create", dir.to_owned()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err("write", dir.to_owned()))?;
    io::Write::write_all(&mut tmp, content).map_err(io_err("write", path.to_owned()))?;
    tmp.persist(path)
        .map_err(|e| io_err("write", path.to_owned())(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn file(path: &str, content: &str) -> StackFile {
        StackFile {
            path: path.into(),
            mode: 0o100644,
            content: content.as_bytes().to_vec(),
        }
    }

    fn link(path: &str, target: &str) -> StackFile {
        StackFile {
            path: path.into(),
            mode: MODE_SYMLINK,
            content: target.as_bytes().to_vec(),
        }
    }

    fn names(dir: &Path) -> Vec<std::ffi::OsString> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    }

    #[test]
    fn a_new_version_replaces_files_and_keeps_runtime_data() {
        let root = tempfile::tempdir().unwrap();
        let v1 = [
            file("compose.yaml", "v1"),
            file(".env", "A=1"),
            file("config/old.conf", "x"),
        ];
        let dir = materialise(root.path(), "web", &v1).unwrap();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("data/db"), "runtime").unwrap();

        let v2 = [
            file("compose.yaml", "v2"),
            file(".env", "A=2"),
            link("current", "compose.yaml"),
        ];
        materialise(root.path(), "web", &v2).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("compose.yaml")).unwrap(),
            "v2"
        );
        assert_eq!(std::fs::read_to_string(dir.join(".env")).unwrap(), "A=2");
        assert!(
            !dir.join("config").exists(),
            "removed file and its empty dir remain"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("data/db")).unwrap(),
            "runtime"
        );
        assert_eq!(
            std::fs::read_link(dir.join("current")).unwrap(),
            Path::new("compose.yaml")
        );
        // No staging directory is left behind.
        assert_eq!(names(root.path()), ["web"]);
    }

    #[test]
    fn a_directory_and_a_file_can_swap_places_between_versions() {
        let root = tempfile::tempdir().unwrap();
        let v1 = [file("compose.yaml", "v1"), file("conf/a", "x")];
        let dir = materialise(root.path(), "web", &v1).unwrap();
        let v2 = [file("compose.yaml", "v2"), file("conf", "now a file")];
        materialise(root.path(), "web", &v2).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("conf")).unwrap(),
            "now a file"
        );
        materialise(root.path(), "web", &v1).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("conf/a")).unwrap(), "x");
        assert_eq!(names(root.path()), ["web"]);
    }

    #[test]
    fn an_escaping_symlink_refuses_the_stack_and_leaves_the_old_copy() {
        let root = tempfile::tempdir().unwrap();
        let dir = materialise(root.path(), "web", &[file("compose.yaml", "v1")]).unwrap();
        let err = materialise(
            root.path(),
            "web",
            &[file("compose.yaml", "v2"), link("secret", "/etc/shadow")],
        )
        .unwrap_err();
        assert!(
            matches!(err, MaterialiseError::EscapingSymlink { .. }),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("compose.yaml")).unwrap(),
            "v1"
        );
    }

    #[test]
    fn a_failure_while_staging_leaves_the_previous_copy_and_no_staging_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = materialise(root.path(), "web", &[file("compose.yaml", "v1")]).unwrap();
        // Written after compose.yaml, and refused by the filesystem (ENAMETOOLONG).
        let too_long = "x".repeat(300);
        let err = materialise(
            root.path(),
            "web",
            &[file("compose.yaml", "v2"), file(&too_long, "x")],
        )
        .unwrap_err();
        assert!(matches!(err, MaterialiseError::Io { .. }), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.join("compose.yaml")).unwrap(),
            "v1"
        );
        assert_eq!(names(root.path()), ["web"]);
    }

    #[test]
    fn paths_with_dot_dot_are_refused() {
        let root = tempfile::tempdir().unwrap();
        assert!(materialise(root.path(), "web", &[file("../evil", "x")]).is_err());
        assert!(materialise(root.path(), "..", &[file("a", "x")]).is_err());
        assert!(materialise(root.path(), "a/b", &[file("a", "x")]).is_err());
    }

    #[test]
    fn executables_keep_their_bit_for_owner_and_group_only() {
        let root = tempfile::tempdir().unwrap();
        let script = StackFile {
            path: "entry.sh".into(),
            mode: 0o100755,
            content: b"#!/bin/sh\n".to_vec(),
        };
        let dir = materialise(root.path(), "web", &[script]).unwrap();
        let mode = std::fs::metadata(dir.join("entry.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o750);
    }

    #[test]
    fn the_staging_directory_is_for_docker_cd_only() {
        let root = tempfile::tempdir().unwrap();
        let root_dir = Dir::open_trusted(root.path()).unwrap();
        let staging = Staging::create(root.path(), &root_dir, "web").unwrap();
        for dir in [staging._guard.path(), &staging._guard.path().join("files")] {
            let mode = std::fs::metadata(dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
        }
    }

    #[test]
    fn an_existing_stack_directory_loses_its_world_bits() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("web");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        materialise(root.path(), "web", &[file("compose.yaml", "v1")]).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o750);
    }
}
