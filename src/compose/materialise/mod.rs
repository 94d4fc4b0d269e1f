//! Writing a stack directory, read from a commit, to disk for compose to use.
//!
//! Compose needs real files: `.env`, `env_file:`, configs and relative bind mounts all resolve
//! against the project directory. The directory for project `p` is `<root>/p`.
//!
//! Every file is first written, complete, into a staging directory next to the target (same
//! filesystem); only when all of them are written is each renamed into place (an atomic
//! replace per file), and files the previous version had but this one does not are removed
//! (the previous file list is kept in a manifest). So a failure while writing (a full disk, a
//! refused symlink) leaves the previous copy untouched, and files the stack itself creates at
//! run time (a `./data` bind mount) survive re-syncs, as they would in a `git checkout`.

use std::collections::BTreeSet;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::desired_state::tree::{MODE_SYMLINK, StackFile};

/// The list of files docker-cd wrote into a project directory.
pub const MANIFEST: &str = ".docker-cd-files";

#[derive(Debug, thiserror::Error)]
pub enum MaterialiseError {
    #[error("{path:?} is not a plain relative path")]
    BadPath { path: String },
    #[error("symbolic link {path:?} points outside the stack directory ({target:?})")]
    EscapingSymlink { path: String, target: String },
    #[error("cannot write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> MaterialiseError + '_ {
    move |source| MaterialiseError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Checks that `path` is relative and stays inside the directory (no `..`, no root).
fn check_relative(path: &str) -> Result<(), MaterialiseError> {
    let ok = !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(MaterialiseError::BadPath {
            path: path.to_owned(),
        })
    }
}

/// Does a symlink at `link` (relative to the stack root) pointing to `target` stay inside it?
/// Resolved lexically: absolute targets and any `..` that climbs above the root escape.
pub fn symlink_stays_inside(link: &str, target: &str) -> bool {
    if target.starts_with('/') || target.is_empty() {
        return false;
    }
    let mut depth: Vec<&str> = link.split('/').collect();
    depth.pop(); // the link's own name
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            p => depth.push(p),
        }
    }
    true
}

/// Writes `files` as the content of `<root>/<project>`, returning that directory.
pub fn materialise(
    root: &Path,
    project: &str,
    files: &[StackFile],
) -> Result<PathBuf, MaterialiseError> {
    check_relative(project)?;
    for file in files {
        check_relative(&file.path)?;
        if file.mode == MODE_SYMLINK {
            let target = String::from_utf8_lossy(&file.content);
            if !symlink_stays_inside(&file.path, &target) {
                return Err(MaterialiseError::EscapingSymlink {
                    path: file.path.clone(),
                    target: target.into_owned(),
                });
            }
        }
    }
    std::fs::create_dir_all(root).map_err(io_err(root))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".staging-{project}-"))
        .tempdir_in(root)
        .map_err(io_err(root))?;

    for file in files {
        let dest = staging.path().join(&file.path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        write_entry(&dest, file)?;
    }

    let target = root.join(project);
    std::fs::create_dir_all(&target).map_err(io_err(&target))?;
    let previous = read_manifest(&target);
    let current: BTreeSet<String> = files.iter().map(|f| f.path.clone()).collect();
    for file in files {
        let from = staging.path().join(&file.path);
        let to = target.join(&file.path);
        if let Some(parent) = to.parent() {
            prepare_parent(&target, parent)?;
        }
        if to.is_dir() && !to.is_symlink() {
            std::fs::remove_dir_all(&to).map_err(io_err(&to))?;
        }
        std::fs::rename(&from, &to).map_err(io_err(&to))?;
    }
    for gone in previous.difference(&current) {
        if check_relative(gone).is_err() {
            continue;
        }
        let path = target.join(gone);
        match std::fs::remove_file(&path) {
            Ok(()) => prune_empty_parents(&target, &path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    write_manifest(&target, &current)?;
    Ok(target)
}

fn write_entry(dest: &Path, file: &StackFile) -> Result<(), MaterialiseError> {
    if file.mode == MODE_SYMLINK {
        let target = String::from_utf8_lossy(&file.content).into_owned();
        return std::os::unix::fs::symlink(target, dest).map_err(io_err(dest));
    }
    std::fs::write(dest, &file.content).map_err(io_err(dest))?;
    if file.mode & 0o111 != 0 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err(dest))?;
    }
    Ok(())
}

/// Makes sure every directory between `target` and `parent` is a real directory (a file or
/// symlink of a previous version in the way is removed).
fn prepare_parent(target: &Path, parent: &Path) -> Result<(), MaterialiseError> {
    let Ok(relative) = parent.strip_prefix(target) else {
        return Ok(());
    };
    let mut dir = target.to_path_buf();
    for part in relative.components() {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                std::fs::remove_file(&dir).map_err(io_err(&dir))?;
                std::fs::create_dir(&dir).map_err(io_err(&dir))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&dir).map_err(io_err(&dir))?;
            }
            Err(e) => return Err(io_err(&dir)(e)),
        }
    }
    Ok(())
}

fn prune_empty_parents(target: &Path, removed: &Path) {
    let mut dir = removed.parent();
    while let Some(d) = dir {
        if d == target || !d.starts_with(target) || std::fs::remove_dir(d).is_err() {
            break; // not empty (or the root): stop
        }
        dir = d.parent();
    }
}

fn read_manifest(target: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(target.join(MANIFEST))
        .map(|text| text.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn write_manifest(target: &Path, files: &BTreeSet<String>) -> Result<(), MaterialiseError> {
    let mut text = String::new();
    for f in files {
        text.push_str(f);
        text.push('\n');
    }
    write_atomically(&target.join(MANIFEST), text.as_bytes())
}

/// Writes a file through a temporary file in the same directory and a rename.
pub fn write_atomically(path: &Path, content: &[u8]) -> Result<(), MaterialiseError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    io::Write::write_all(&mut tmp, content).map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn symlinks_are_resolved_lexically_against_the_stack_root() {
        assert!(symlink_stays_inside("compose.yaml", "base/compose.yaml"));
        assert!(symlink_stays_inside("config/a", "../other"));
        assert!(!symlink_stays_inside(
            "compose.yaml",
            "../other/compose.yaml"
        ));
        assert!(!symlink_stays_inside("a", "/etc/shadow"));
        assert!(!symlink_stays_inside("config/a", "../../x"));
        assert!(!symlink_stays_inside("a", ""));
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
        let leftovers: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["web"]);
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
    fn paths_with_dot_dot_are_refused() {
        let root = tempfile::tempdir().unwrap();
        assert!(materialise(root.path(), "web", &[file("../evil", "x")]).is_err());
        assert!(materialise(root.path(), "..", &[file("a", "x")]).is_err());
    }

    #[test]
    fn executable_bits_are_kept() {
        use std::os::unix::fs::PermissionsExt;
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
        assert_eq!(mode & 0o777, 0o755);
    }
}
