//! Reading a Git tree listing into stack drafts: pure functions, no I/O.
//!
//! Input is the parsed output of `git ls-tree -r -t -l -z <commit> -- <deploy dir>` (see
//! `git::parse::ls_tree`); output is one [`StackDraft`] per stack. The compose blobs are read
//! afterwards by the caller, only for the drafts whose blob it does not already know.

use std::collections::BTreeMap;

use super::{COMPOSE_FILE_NAMES, MAX_COMPOSE_FILE_BYTES};

/// The kind of object a tree entry points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Blob,
    Tree,
    /// A submodule (gitlink).
    Commit,
}

/// Git file modes that matter here.
pub const MODE_TREE: u32 = 0o040000;
pub const MODE_SYMLINK: u32 = 0o120000;
pub const MODE_GITLINK: u32 = 0o160000;

/// One line of `ls-tree -r -t -l -z` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub mode: u32,
    pub kind: ObjectKind,
    pub oid: String,
    /// Blob size in bytes (`-l`); `None` for trees and submodules.
    pub size: Option<u64>,
    /// Full path from the repository root, `/`-separated.
    pub path: String,
    /// The path was not valid UTF-8 and was decoded lossily.
    pub path_lossy: bool,
}

/// A file of a stack directory read from a commit, for materialisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackFile {
    /// Path relative to the stack directory.
    pub path: String,
    /// Git file mode (`0o100644`, `0o100755`, `0o120000` for symlinks).
    pub mode: u32,
    /// File content, or the link target for symlinks.
    pub content: Vec<u8>,
}

/// The compose file chosen for a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeBlob {
    pub file_name: String,
    pub oid: String,
    pub size: u64,
}

/// A stack as the tree describes it, before its compose blob has been read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackDraft {
    /// Path relative to the deploy dir (a single directory name).
    pub path: String,
    /// Git tree id of the stack directory.
    pub content_hash: String,
    pub compose_file: String,
    /// The blob to read; `None` when the stack already has an error (symlink, too large).
    pub compose: Option<ComposeBlob>,
    pub warnings: Vec<String>,
    pub error: Option<String>,
}

/// The result of scanning a deploy dir.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scan {
    pub stacks: Vec<StackDraft>,
    /// Things worth telling the operator that are not about one stack.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("deploy dir {0:?} does not exist at this revision")]
    DeployDirMissing(String),
    #[error("deploy dir {0:?} is not a directory at this revision")]
    DeployDirNotATree(String),
}

/// Finds the stacks under `deploy_dir` (empty = repository root) in a recursive tree listing.
///
/// A stack is an immediate subdirectory holding one of [`COMPOSE_FILE_NAMES`] directly.
/// Hidden directories, symlinks and submodules are never stacks. A compose file that is a
/// symlink or larger than [`MAX_COMPOSE_FILE_BYTES`] makes a stack with an error; several compose
/// names in one directory pick the first in Compose's precedence and warn about the rest.
pub fn scan(entries: &[TreeEntry], deploy_dir: &str) -> Result<Scan, ScanError> {
    let prefix = if deploy_dir.is_empty() {
        String::new()
    } else {
        match entries.iter().find(|e| e.path == deploy_dir) {
            None => return Err(ScanError::DeployDirMissing(deploy_dir.to_owned())),
            Some(e) if e.kind != ObjectKind::Tree => {
                return Err(ScanError::DeployDirNotATree(deploy_dir.to_owned()));
            }
            Some(_) => format!("{deploy_dir}/"),
        }
    };

    // Directories directly under the deploy dir, and the compose-named entries directly in them.
    let mut dirs: BTreeMap<&str, &TreeEntry> = BTreeMap::new();
    let mut compose_entries: BTreeMap<&str, Vec<&TreeEntry>> = BTreeMap::new();
    let mut warnings = Vec::new();
    for entry in entries {
        let Some(rel) = entry.path.strip_prefix(prefix.as_str()) else {
            continue;
        };
        match rel.split_once('/') {
            None => {
                if entry.kind == ObjectKind::Tree
                    && entry.mode == MODE_TREE
                    && !rel.starts_with('.')
                {
                    if entry.path_lossy {
                        warnings.push(format!(
                            "directory {rel:?} has a name that is not valid UTF-8; it is not a stack"
                        ));
                    } else {
                        dirs.insert(rel, entry);
                    }
                }
            }
            Some((dir, file)) => {
                if !file.contains('/') && COMPOSE_FILE_NAMES.contains(&file) {
                    compose_entries.entry(dir).or_default().push(entry);
                }
            }
        }
    }

    let mut stacks = Vec::new();
    for (name, dir) in dirs {
        let Some(found) = compose_entries.get(name) else {
            continue; // a directory without a compose file is not a stack
        };
        // Only files count; a directory named compose.yaml is not a compose file.
        let mut candidates: Vec<&TreeEntry> = found
            .iter()
            .copied()
            .filter(|e| e.kind == ObjectKind::Blob)
            .collect();
        if candidates.is_empty() {
            continue;
        }
        candidates.sort_by_key(|e| {
            let file = e.path.rsplit('/').next().unwrap_or_default();
            COMPOSE_FILE_NAMES.iter().position(|n| *n == file)
        });
        let chosen = candidates[0];
        let file_name = chosen
            .path
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let mut draft = StackDraft {
            path: name.to_owned(),
            content_hash: dir.oid.clone(),
            compose_file: file_name.clone(),
            compose: None,
            warnings: candidates[1..]
                .iter()
                .map(|e| {
                    let other = e.path.rsplit('/').next().unwrap_or_default();
                    format!("{other} is ignored: {file_name} takes precedence")
                })
                .collect(),
            error: None,
        };
        let size = chosen.size.unwrap_or(0);
        if chosen.mode == MODE_SYMLINK {
            draft.error = Some(format!(
                "{file_name} is a symbolic link; compose files must be regular files"
            ));
        } else if size > MAX_COMPOSE_FILE_BYTES {
            draft.error = Some(format!(
                "{file_name} is {size} bytes, over the limit of {MAX_COMPOSE_FILE_BYTES} bytes"
            ));
        } else {
            draft.compose = Some(ComposeBlob {
                file_name,
                oid: chosen.oid.clone(),
                size,
            });
        }
        stacks.push(draft);
    }
    Ok(Scan { stacks, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(path: &str, oid: &str) -> TreeEntry {
        TreeEntry {
            mode: MODE_TREE,
            kind: ObjectKind::Tree,
            oid: oid.into(),
            size: None,
            path: path.into(),
            path_lossy: false,
        }
    }

    fn blob(path: &str, oid: &str, size: u64) -> TreeEntry {
        TreeEntry {
            mode: 0o100644,
            kind: ObjectKind::Blob,
            oid: oid.into(),
            size: Some(size),
            path: path.into(),
            path_lossy: false,
        }
    }

    #[test]
    fn stacks_are_immediate_subdirectories_with_a_compose_file() {
        let entries = vec![
            tree("stacks", "t0"),
            tree("stacks/web", "t1"),
            blob("stacks/web/compose.yaml", "b1", 10),
            tree("stacks/notes", "t2"),
            blob("stacks/notes/README.md", "b2", 5),
            tree("stacks/web/examples", "t3"),
            blob("stacks/web/examples/docker-compose.yml", "b3", 5),
            blob("stacks/compose.yaml", "b4", 5),
        ];
        let scan = scan(&entries, "stacks").unwrap();
        assert_eq!(scan.stacks.len(), 1);
        let web = &scan.stacks[0];
        assert_eq!(web.path, "web");
        assert_eq!(web.content_hash, "t1");
        assert_eq!(web.compose.as_ref().unwrap().oid, "b1");
    }

    #[test]
    fn hidden_directories_symlinks_and_submodules_are_not_stacks() {
        let entries = vec![
            tree(".github", "t1"),
            blob(".github/compose.yaml", "b1", 1),
            TreeEntry {
                mode: MODE_SYMLINK,
                kind: ObjectKind::Blob,
                oid: "l1".into(),
                size: Some(3),
                path: "linked".into(),
                path_lossy: false,
            },
            TreeEntry {
                mode: MODE_GITLINK,
                kind: ObjectKind::Commit,
                oid: "c1".into(),
                size: None,
                path: "sub".into(),
                path_lossy: false,
            },
        ];
        assert!(scan(&entries, "").unwrap().stacks.is_empty());
    }

    #[test]
    fn compose_precedence_picks_one_file_and_warns() {
        let entries = vec![
            tree("app", "t1"),
            blob("app/docker-compose.yml", "b1", 1),
            blob("app/compose.yaml", "b2", 1),
            blob("app/compose.yml", "b3", 1),
        ];
        let scan = scan(&entries, "").unwrap();
        let app = &scan.stacks[0];
        assert_eq!(app.compose_file, "compose.yaml");
        assert_eq!(app.warnings.len(), 2);
        assert!(
            app.warnings[0].contains("compose.yml is ignored"),
            "{:?}",
            app.warnings
        );
    }

    #[test]
    fn symlinked_or_oversized_compose_files_are_stack_errors() {
        let mut link = blob("a/compose.yaml", "b1", 11);
        link.mode = MODE_SYMLINK;
        let entries = vec![
            tree("a", "t1"),
            link,
            tree("b", "t2"),
            blob("b/compose.yaml", "b2", 50 * 1024 * 1024),
        ];
        let scan = scan(&entries, "").unwrap();
        assert!(
            scan.stacks[0]
                .error
                .as_ref()
                .unwrap()
                .contains("symbolic link")
        );
        assert!(scan.stacks[0].compose.is_none());
        assert!(
            scan.stacks[1]
                .error
                .as_ref()
                .unwrap()
                .contains("over the limit")
        );
        assert!(scan.stacks[1].compose.is_none());
    }

    #[test]
    fn a_missing_deploy_dir_is_an_error_not_an_empty_scan() {
        assert_eq!(
            scan(&[tree("other", "t")], "stacks"),
            Err(ScanError::DeployDirMissing("stacks".into()))
        );
        assert_eq!(
            scan(&[blob("stacks", "b", 1)], "stacks"),
            Err(ScanError::DeployDirNotATree("stacks".into()))
        );
    }

    #[test]
    fn prefix_matching_respects_path_components() {
        let entries = vec![
            tree("stacks", "t0"),
            tree("stacks-old", "t1"),
            tree("stacks-old/x", "t2"),
            blob("stacks-old/x/compose.yaml", "b", 1),
        ];
        assert!(scan(&entries, "stacks").unwrap().stacks.is_empty());
    }
}
