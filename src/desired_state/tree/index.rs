//! Building a [`TreeIndex`] from Git's output: [`scan`] reads a whole recursive listing,
//! [`apply_diff`] updates the previous commit's index from a `diff-tree` between the two.
//!
//! It owns the rules of what a listing or a diff makes a stack, and may use only the index
//! types and shared name rules of its parent module.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{
    Candidate, DiffEntry, MODE_TREE, ObjectKind, ScanError, StackTree, TreeEntry, TreeIndex,
    compose_name, is_stack_dir, precedence,
};

/// Finds the stacks under `deploy_dir` (empty = repository root) in a recursive tree listing.
///
/// A stack is an immediate subdirectory holding one of [`COMPOSE_FILE_NAMES`](crate::desired_state::COMPOSE_FILE_NAMES) directly as a
/// file (a blob; a symlink counts and becomes the stack's error). Hidden directories, symlinks
/// and submodules are never stacks; a directory whose name is not UTF-8 is not one either, with
/// a warning.
pub fn scan(entries: &[TreeEntry], deploy_dir: &str) -> Result<TreeIndex, ScanError> {
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

    // Directories directly under the deploy dir, and the compose-named blobs directly in them.
    let mut dirs: BTreeMap<&str, &TreeEntry> = BTreeMap::new();
    let mut candidates: BTreeMap<&str, Vec<Candidate>> = BTreeMap::new();
    let mut warnings = Vec::new();
    for entry in entries {
        let Some(rel) = entry.path.strip_prefix(prefix.as_str()) else {
            continue;
        };
        match rel.split_once('/') {
            None => {
                if entry.kind == ObjectKind::Tree && is_stack_dir(rel, entry.mode) {
                    if entry.path_lossy {
                        warnings.push(lossy_warning(rel));
                    } else {
                        dirs.insert(rel, entry);
                    }
                }
            }
            Some((dir, file)) => {
                // Only files count; a directory named compose.yaml is not a compose file.
                if entry.kind == ObjectKind::Blob {
                    if let Some(file) = compose_name(file) {
                        candidates.entry(dir).or_default().push(Candidate {
                            file,
                            mode: entry.mode,
                            oid: entry.oid.clone(),
                        });
                    }
                }
            }
        }
    }

    let mut stacks = BTreeMap::new();
    for (name, dir) in dirs {
        let Some(mut found) = candidates.remove(name) else {
            continue; // a directory without a compose file is not a stack
        };
        found.sort_by_key(|c| precedence(c.file));
        stacks.insert(
            name.to_owned(),
            Arc::new(StackTree {
                tree: dir.oid.clone(),
                candidates: found,
            }),
        );
    }
    Ok(TreeIndex {
        stacks,
        warnings,
        too_large: BTreeMap::new(),
    })
}

fn lossy_warning(name: &str) -> String {
    format!("directory {name:?} has a name that is not valid UTF-8; it is not a stack")
}

/// How one name directly under the deploy dir changed.
#[derive(Default)]
struct Touched<'a> {
    /// `Some(None)`: gone; `Some(Some(..))`: its new entry; `None`: not listed itself.
    entry: Option<Option<(u32, &'a str)>>,
    /// Compose-named paths directly inside it: their new entry, `None` when gone.
    compose: BTreeMap<&'static str, Option<(u32, &'a str)>>,
}

/// Records `new` as the new state of a path listed once or twice (a type change is listed as
/// a deletion and an addition, in either order): an addition wins over a deletion.
fn record<'a>(slot: &mut Option<Option<(u32, &'a str)>>, new: Option<(u32, &'a str)>) {
    if new.is_some() || slot.is_none() {
        *slot = Some(new);
    }
}

/// The index of a commit from the index of an earlier commit and the `diff-tree -r -t` output
/// between the two, limited to `deploy_dir`. Gives exactly what [`scan`] gives on the new
/// commit's listing, or `None` when the diff cannot decide (the deploy dir added, removed or
/// replaced; a path that is not UTF-8; a listing without the directory lines `-t` adds).
pub fn apply_diff(
    previous: &TreeIndex,
    changes: &[DiffEntry],
    deploy_dir: &str,
) -> Option<TreeIndex> {
    let prefix = if deploy_dir.is_empty() {
        String::new()
    } else {
        format!("{deploy_dir}/")
    };
    let mut touched: BTreeMap<&str, Touched<'_>> = BTreeMap::new();
    for change in changes {
        if change.path_lossy {
            return None;
        }
        if change.path == deploy_dir {
            if change.old_mode != MODE_TREE || change.new_mode != MODE_TREE {
                return None; // the deploy dir itself appeared, vanished or became a file
            }
            continue;
        }
        let rel = change.path.strip_prefix(prefix.as_str())?;
        match rel.split_once('/') {
            None => {
                if !rel.starts_with('.') {
                    record(
                        &mut touched.entry(rel).or_default().entry,
                        change.new_state(),
                    );
                }
            }
            Some((dir, file)) => {
                if dir.starts_with('.') {
                    continue;
                }
                let t = touched.entry(dir).or_default();
                if let Some(file) = compose_name(file) {
                    let slot = t.compose.entry(file).or_insert(None);
                    // Same rule as `record`, with "not seen yet" folded into `None`.
                    if let Some(new) = change.new_state() {
                        *slot = Some(new);
                    }
                }
            }
        }
    }

    // Cheap: the entries are `Arc`s; only the touched ones are replaced below.
    let mut index = previous.clone();
    index.too_large.clear();
    for (name, t) in touched {
        // Anything inside a directory changes the directory's tree id, which `-t` lists.
        let entry = t.entry?;
        let before = index.stacks.remove(name);
        let Some((mode, tree)) = entry else {
            continue; // gone
        };
        if !is_stack_dir(name, mode) {
            continue; // now a file, a symlink or a submodule
        }
        let mut candidates = before
            .map(|s| Arc::unwrap_or_clone(s).candidates)
            .unwrap_or_default();
        for (file, new) in t.compose {
            candidates.retain(|c| c.file != file);
            if let Some((mode, oid)) = new {
                if ObjectKind::of_mode(mode) == ObjectKind::Blob {
                    candidates.push(Candidate {
                        file,
                        mode,
                        oid: oid.to_owned(),
                    });
                }
            }
        }
        if candidates.is_empty() {
            continue;
        }
        candidates.sort_by_key(|c| precedence(c.file));
        index.stacks.insert(
            name.to_owned(),
            Arc::new(StackTree {
                tree: tree.to_owned(),
                candidates,
            }),
        );
    }
    Some(index)
}
