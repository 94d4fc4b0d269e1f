//! Reading a Git tree into stacks: pure functions, no I/O.
//!
//! Two inputs lead to the same [`TreeIndex`]:
//! - [`scan`]: the parsed output of `git ls-tree -r -t -z <commit> -- <deploy dir>` (see
//!   `git::parse::ls_tree`), the whole tree;
//! - [`apply_diff`]: the previous commit's index plus the parsed output of
//!   `git diff-tree -r -t -z <previous> <commit> -- <deploy dir>` (see `git::parse::diff_tree`),
//!   only what changed. It answers `None` whenever the diff alone cannot decide (the deploy dir
//!   itself replaced, a path that is not UTF-8), and the caller lists the whole tree instead.
//!
//! Both keep, per stack, every compose-named blob directly in the stack directory with its mode
//! and object id, so the precedence, symlink and size rules are applied identically whichever
//! way the index was built. Blob sizes and contents are not part of the index: the caller reads
//! the chosen compose blobs (their size from `cat-file`'s header) and [`assemble`] turns index
//! and blob facts into stacks.
//!
//! Both the index and the stacks hold each stack behind an `Arc`: a refresh that changes one
//! stack of 10,000 shares the other 9,999 with the previous snapshot ([`apply_diff`] keeps the
//! untouched index entries, [`assemble`] the unchanged stacks) instead of rebuilding them, and
//! the cache tells shared stacks apart by pointer.
//!
//! This module owns the index's types and the rules every builder shares (which names are
//! compose files and in what precedence, which directories may be stacks). `index` builds an
//! index from a listing or a diff; `assembly` turns an index into stacks. They may use
//! the parent `desired_state` module's types and constants, and nothing that does I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::COMPOSE_FILE_NAMES;

mod assembly;
mod index;
#[cfg(test)]
mod tests;

pub(super) use assembly::Ascending;
pub use assembly::{PreviousStacks, assemble, known_facts, known_facts_of, wanted_blobs};
pub use index::{apply_diff, scan};

/// The kind of object a tree entry points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Blob,
    Tree,
    /// A submodule (gitlink).
    Commit,
}

impl ObjectKind {
    /// The kind git derives from a file mode (what `ls-tree` prints as the type).
    pub fn of_mode(mode: u32) -> Self {
        match mode & 0o170000 {
            0o040000 => Self::Tree,
            0o160000 => Self::Commit,
            _ => Self::Blob,
        }
    }
}

/// Git file modes that matter here.
pub const MODE_TREE: u32 = 0o040000;
pub const MODE_SYMLINK: u32 = 0o120000;
pub const MODE_GITLINK: u32 = 0o160000;

/// One line of `ls-tree -r -t -z` output (`-l` adds the size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub mode: u32,
    pub kind: ObjectKind,
    pub oid: String,
    /// Blob size in bytes when listed with `-l`; `None` for trees, submodules and without `-l`.
    pub size: Option<u64>,
    /// Full path from the repository root, `/`-separated.
    pub path: String,
    /// The path was not valid UTF-8 and was decoded lossily.
    pub path_lossy: bool,
}

/// One record of `diff-tree -r -t -z <old> <new>` output: a path whose entry differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffEntry {
    /// `0` when the path is new.
    pub old_mode: u32,
    /// `0` when the path is gone.
    pub new_mode: u32,
    /// The new object id (all zeros when the path is gone).
    pub new_oid: String,
    /// Full path from the repository root, `/`-separated.
    pub path: String,
    /// The path was not valid UTF-8 and was decoded lossily.
    pub path_lossy: bool,
}

impl DiffEntry {
    /// The path's new entry, `None` when it is gone.
    fn new_state(&self) -> Option<(u32, &str)> {
        (self.new_mode != 0).then_some((self.new_mode, self.new_oid.as_str()))
    }
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

/// A blob with one of [`COMPOSE_FILE_NAMES`] directly in a stack directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The file name, one of [`COMPOSE_FILE_NAMES`].
    pub file: &'static str,
    /// Git file mode (`0o120000`: a symlink).
    pub mode: u32,
    pub oid: String,
}

/// What the tree says about one stack directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackTree {
    /// Git tree id of the directory: the stack's content hash.
    pub tree: String,
    /// Its compose-named blobs in Compose's precedence; never empty (else it is no stack).
    pub candidates: Vec<Candidate>,
}

impl StackTree {
    /// The compose file Compose would pick.
    pub fn chosen(&self) -> &Candidate {
        // Never empty: both builders only keep directories with a candidate.
        &self.candidates[0]
    }

    /// The blob to read for this stack: `None` when the chosen file is a symlink (an error).
    pub fn compose_blob(&self) -> Option<&str> {
        let chosen = self.chosen();
        (chosen.mode != MODE_SYMLINK).then_some(chosen.oid.as_str())
    }
}

/// The stacks of one commit as its tree describes them. Kept in the snapshot so that the next
/// refresh can apply a diff instead of listing the whole tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TreeIndex {
    /// Stack directories by name (a single directory name under the deploy dir). Shared with
    /// the index of the previous commit where the diff did not touch them.
    pub stacks: BTreeMap<String, Arc<StackTree>>,
    /// Things worth telling the operator that are not about one stack, in tree order.
    pub warnings: Vec<String>,
    /// Chosen compose blobs found larger than
    /// [`MAX_COMPOSE_FILE_BYTES`](super::MAX_COMPOSE_FILE_BYTES), with their size: set
    /// by [`assemble`] (empty out of [`scan`] and [`apply_diff`]), so that such a blob is not
    /// streamed through `cat-file` again by the next refresh.
    pub too_large: BTreeMap<String, u64>,
}

/// What reading a compose blob found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobFacts {
    /// SHA-256 hex of the content, and what its `x-docker-cd:` says (`None` when the file does
    /// not mention it).
    Hash(
        String,
        Option<std::sync::Arc<crate::desired_state::settings::Read>>,
    ),
    /// Larger than [`MAX_COMPOSE_FILE_BYTES`](super::MAX_COMPOSE_FILE_BYTES): not hashed, not kept.
    TooLarge(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("deploy dir {0:?} does not exist at this revision")]
    DeployDirMissing(String),
    #[error("deploy dir {0:?} is not a directory at this revision")]
    DeployDirNotATree(String),
}

fn compose_name(file: &str) -> Option<&'static str> {
    COMPOSE_FILE_NAMES.iter().copied().find(|n| *n == file)
}

fn precedence(file: &str) -> usize {
    COMPOSE_FILE_NAMES
        .iter()
        .position(|n| *n == file)
        .unwrap_or(usize::MAX)
}

/// Is this entry directly under the deploy dir a directory that may be a stack?
fn is_stack_dir(name: &str, mode: u32) -> bool {
    mode == MODE_TREE && !name.starts_with('.')
}
