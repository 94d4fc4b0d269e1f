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

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{COMPOSE_FILE_NAMES, DesiredStack, MAX_COMPOSE_FILE_BYTES, Snapshot};

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
    /// Chosen compose blobs found larger than [`MAX_COMPOSE_FILE_BYTES`], with their size: set
    /// by [`assemble`] (empty out of [`scan`] and [`apply_diff`]), so that such a blob is not
    /// streamed through `cat-file` again by the next refresh.
    pub too_large: BTreeMap<String, u64>,
}

/// What reading a compose blob found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobFacts {
    /// SHA-256 hex of the content.
    Hash(String),
    /// Larger than [`MAX_COMPOSE_FILE_BYTES`]: not hashed, not kept.
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

/// Finds the stacks under `deploy_dir` (empty = repository root) in a recursive tree listing.
///
/// A stack is an immediate subdirectory holding one of [`COMPOSE_FILE_NAMES`] directly as a
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

/// The blobs whose facts [`assemble`] needs: each stack's chosen compose file, unless it is a
/// symlink. Deduplicated, in stack order.
pub fn wanted_blobs(index: &TreeIndex) -> Vec<&str> {
    let mut seen = std::collections::HashSet::new();
    index
        .stacks
        .values()
        .filter_map(|stack| stack.compose_blob())
        .filter(|oid| seen.insert(*oid))
        .collect()
}

/// What the previous snapshot found out about blob `oid`, the compose file of stack `name`:
/// its hash if the same-named stack had that blob, or its size if it was too large.
pub fn known_facts(previous: Option<&Snapshot>, name: &str, oid: &str) -> Option<BlobFacts> {
    known_facts_of(previous, previous?.stacks.get(name).map(|s| &**s), oid)
}

/// [`known_facts`] with the same-named previous stack already looked up.
pub fn known_facts_of(
    previous: Option<&Snapshot>,
    same_name: Option<&DesiredStack>,
    oid: &str,
) -> Option<BlobFacts> {
    let previous = previous?;
    if let Some(stack) = same_name {
        if stack.compose_blob.as_deref() == Some(oid) {
            if let Some(hash) = &stack.compose_hash {
                return Some(BlobFacts::Hash(hash.clone()));
            }
        }
    }
    previous
        .tree
        .too_large
        .get(oid)
        .map(|size| BlobFacts::TooLarge(*size))
}

/// Entries of a map keyed by name, looked up by names that come in ascending order: one step
/// of a merge instead of a tree search per stack (a tenth of an assembly of 10,000 stacks).
#[derive(Debug)]
pub(super) struct Ascending<'a, V> {
    entries: Option<std::iter::Peekable<std::collections::btree_map::Iter<'a, String, V>>>,
}

impl<'a, V> Ascending<'a, V> {
    pub(super) fn new(map: Option<&'a BTreeMap<String, V>>) -> Self {
        Self {
            entries: map.map(|m| m.iter().peekable()),
        }
    }

    /// The entry named `name`; names must be asked for in ascending order.
    pub(super) fn get(&mut self, name: &str) -> Option<&'a V> {
        let entries = self.entries.as_mut()?;
        while let Some((key, value)) = entries.peek() {
            match key.as_str().cmp(name) {
                std::cmp::Ordering::Less => {
                    entries.next();
                }
                std::cmp::Ordering::Equal => return Some(*value),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }
}

/// The previous snapshot's stacks, looked up by names that come in ascending order: one step
/// of a merge instead of a tree search per stack.
#[derive(Debug)]
pub struct PreviousStacks<'a> {
    stacks: Ascending<'a, Arc<DesiredStack>>,
}

impl<'a> PreviousStacks<'a> {
    pub fn new(previous: Option<&'a Snapshot>) -> Self {
        Self {
            stacks: Ascending::new(previous.map(|p| &p.stacks)),
        }
    }

    /// The previous stack named `name`; names must be asked for in ascending order.
    pub fn get(&mut self, name: &str) -> Option<&'a DesiredStack> {
        self.stacks.get(name).map(|stack| &**stack)
    }

    /// [`PreviousStacks::get`], as the snapshot holds it (to share it).
    pub fn get_shared(&mut self, name: &str) -> Option<&'a Arc<DesiredStack>> {
        self.stacks.get(name)
    }
}

/// Whether the stack `now` describes would be rebuilt exactly as `earlier`, the previous
/// snapshot's stack of that name read from `before`: same directory listing, and `earlier`
/// complete (hashed, named, no error), with no fresher facts about its blob. Such a stack is
/// shared, not rebuilt. A stack with an error is always rebuilt: its error may be a project
/// name collision, which depends on the other stacks and is decided again for every snapshot.
fn is_unchanged(
    earlier: &DesiredStack,
    before: &Arc<StackTree>,
    now: &Arc<StackTree>,
    blobs: &HashMap<&str, BlobFacts>,
) -> bool {
    let chosen = now.chosen();
    (Arc::ptr_eq(before, now) || before == now)
        && earlier.error.is_none()
        && earlier.project_name.is_some()
        && earlier.content_hash == now.tree
        && earlier.compose_file == chosen.file
        && earlier.compose_blob.as_deref() == Some(chosen.oid.as_str())
        && match blobs.get(chosen.oid.as_str()) {
            None => earlier.compose_hash.is_some(),
            Some(BlobFacts::Hash(hash)) => earlier.compose_hash.as_ref() == Some(hash),
            Some(BlobFacts::TooLarge(_)) => false,
        }
}

/// Turns an index and the facts of its chosen compose blobs into stacks, and records the blobs
/// found too large in `index.too_large`. Facts come from `blobs`, or else from `previous` (see
/// [`known_facts`]). A chosen compose file that is a symlink or larger than
/// [`MAX_COMPOSE_FILE_BYTES`] makes a stack with an error; the other candidates give warnings.
/// A blob without facts is treated as unreadable (an error of that stack), which the reader
/// never lets happen.
///
/// A stack that would come out exactly as in `previous` is that snapshot's `Arc`, project name
/// included; every other stack is new, its project name not yet assigned
/// ([`super::assign_project_names`] tells the two apart by whether the `Arc` is shared).
pub fn assemble(
    index: &mut TreeIndex,
    blobs: &HashMap<&str, BlobFacts>,
    previous: Option<&Snapshot>,
) -> BTreeMap<String, Arc<DesiredStack>> {
    let mut too_large = BTreeMap::new();
    let mut earlier_stacks = PreviousStacks::new(previous);
    let mut earlier_trees = Ascending::new(previous.map(|p| &p.tree.stacks));
    let stacks = index
        .stacks
        .iter()
        .map(|(name, stack)| {
            let earlier = earlier_stacks.get_shared(name);
            if let (Some(earlier), Some(before)) = (earlier, earlier_trees.get(name)) {
                if is_unchanged(earlier, before, stack, blobs) {
                    return (name.clone(), Arc::clone(earlier));
                }
            }
            let desired = build_stack(
                name,
                stack,
                blobs,
                previous,
                earlier.map(|e| &**e),
                &mut too_large,
            );
            (name.clone(), Arc::new(desired))
        })
        .collect();
    index.too_large = too_large;
    stacks
}

/// One stack of [`assemble`], built afresh; `earlier` is the previous snapshot's stack of that
/// name.
fn build_stack(
    name: &str,
    stack: &StackTree,
    blobs: &HashMap<&str, BlobFacts>,
    previous: Option<&Snapshot>,
    earlier: Option<&DesiredStack>,
    too_large: &mut BTreeMap<String, u64>,
) -> DesiredStack {
    let chosen = stack.chosen();
    let file = chosen.file;
    let mut desired = DesiredStack {
        path: name.to_owned(),
        project_name: None,
        compose_file: file.to_owned(),
        compose_hash: None,
        content_hash: stack.tree.clone(),
        compose_blob: None,
        warnings: stack.candidates[1..]
            .iter()
            .map(|other| format!("{} is ignored: {file} takes precedence", other.file))
            .collect(),
        error: None,
    };
    if chosen.mode == MODE_SYMLINK {
        desired.error = Some(format!(
            "{file} is a symbolic link; compose files must be regular files"
        ));
        return desired;
    }
    // The previous stack's hash is cloned once, straight into the new stack.
    let earlier = earlier.filter(|d| {
        d.compose_blob.as_deref() == Some(chosen.oid.as_str()) && d.compose_hash.is_some()
    });
    let facts = match (blobs.get(chosen.oid.as_str()), earlier) {
        (Some(facts), _) => Some(Cow::Borrowed(facts)),
        (None, Some(d)) => {
            desired.compose_hash.clone_from(&d.compose_hash);
            desired.compose_blob = Some(chosen.oid.clone());
            None
        }
        (None, None) => known_facts_of(previous, None, &chosen.oid).map(Cow::Owned),
    };
    match facts.as_deref() {
        Some(BlobFacts::Hash(hash)) => {
            desired.compose_hash = Some(hash.clone());
            desired.compose_blob = Some(chosen.oid.clone());
        }
        Some(BlobFacts::TooLarge(size)) => {
            too_large.insert(chosen.oid.clone(), *size);
            desired.error = Some(format!(
                "{file} is {size} bytes, over the limit of {MAX_COMPOSE_FILE_BYTES} bytes"
            ));
        }
        None if desired.compose_hash.is_some() => {} // taken over above
        None => {
            desired.error = Some(format!("{file} could not be read"));
        }
    }
    desired
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

    fn blob(path: &str, oid: &str) -> TreeEntry {
        TreeEntry {
            mode: 0o100644,
            kind: ObjectKind::Blob,
            oid: oid.into(),
            size: None,
            path: path.into(),
            path_lossy: false,
        }
    }

    fn facts(index: &TreeIndex) -> HashMap<&str, BlobFacts> {
        wanted_blobs(index)
            .into_iter()
            .map(|oid| (oid, BlobFacts::Hash(format!("sha-{oid}"))))
            .collect()
    }

    #[test]
    fn stacks_are_immediate_subdirectories_with_a_compose_file() {
        let entries = vec![
            tree("stacks", "t0"),
            tree("stacks/web", "t1"),
            blob("stacks/web/compose.yaml", "b1"),
            tree("stacks/notes", "t2"),
            blob("stacks/notes/README.md", "b2"),
            tree("stacks/web/examples", "t3"),
            blob("stacks/web/examples/docker-compose.yml", "b3"),
            blob("stacks/compose.yaml", "b4"),
        ];
        let index = scan(&entries, "stacks").unwrap();
        assert_eq!(index.stacks.len(), 1);
        let stacks = assemble(&mut index.clone(), &facts(&index), None);
        let web = &stacks["web"];
        assert_eq!(web.content_hash, "t1");
        assert_eq!(web.compose_blob.as_deref(), Some("b1"));
        assert_eq!(web.compose_hash.as_deref(), Some("sha-b1"));
    }

    #[test]
    fn hidden_directories_symlinks_and_submodules_are_not_stacks() {
        let entries = vec![
            tree(".github", "t1"),
            blob(".github/compose.yaml", "b1"),
            TreeEntry {
                mode: MODE_SYMLINK,
                kind: ObjectKind::Blob,
                oid: "l1".into(),
                size: None,
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
            blob("app/docker-compose.yml", "b1"),
            blob("app/compose.yaml", "b2"),
            blob("app/compose.yml", "b3"),
        ];
        let index = scan(&entries, "").unwrap();
        let app = &assemble(&mut index.clone(), &facts(&index), None)["app"];
        assert_eq!(app.compose_file, "compose.yaml");
        assert_eq!(app.compose_blob.as_deref(), Some("b2"));
        assert_eq!(
            app.warnings,
            [
                "compose.yml is ignored: compose.yaml takes precedence",
                "docker-compose.yml is ignored: compose.yaml takes precedence"
            ]
        );
    }

    #[test]
    fn symlinked_or_oversized_compose_files_are_stack_errors() {
        let mut link = blob("a/compose.yaml", "b1");
        link.mode = MODE_SYMLINK;
        let entries = vec![
            tree("a", "t1"),
            link,
            tree("b", "t2"),
            blob("b/compose.yaml", "b2"),
        ];
        let index = scan(&entries, "").unwrap();
        assert_eq!(wanted_blobs(&index), ["b2"], "a symlink is never read");
        let blobs = HashMap::from([("b2", BlobFacts::TooLarge(50 * 1024 * 1024))]);
        let mut index = index.clone();
        let stacks = assemble(&mut index, &blobs, None);
        assert_eq!(
            index.too_large,
            BTreeMap::from([("b2".into(), 50 * 1024 * 1024)])
        );
        assert!(
            stacks["a"]
                .error
                .as_ref()
                .unwrap()
                .contains("symbolic link")
        );
        assert!(stacks["a"].compose_hash.is_none());
        let b = stacks["b"].error.as_ref().unwrap();
        assert!(b.contains("52428800 bytes, over the limit"), "{b}");
        assert!(stacks["b"].compose_hash.is_none() && stacks["b"].compose_blob.is_none());
    }

    #[test]
    fn facts_of_unchanged_blobs_come_from_the_previous_snapshot() {
        let entries = vec![
            tree("a", "t1"),
            blob("a/compose.yaml", "b1"),
            tree("b", "t2"),
            blob("b/compose.yaml", "b2"),
        ];
        let mut index = scan(&entries, "").unwrap();
        let blobs = HashMap::from([
            ("b1", BlobFacts::Hash("sha-b1".into())),
            ("b2", BlobFacts::TooLarge(2 << 20)),
        ]);
        let stacks = assemble(&mut index, &blobs, None);
        let first = Snapshot {
            revision: "c1".into(),
            git_ref: "refs/heads/main".into(),
            ref_type: super::super::RefType::Branch,
            remote_oid: "c1".into(),
            commit_message: String::new(),
            stacks,
            warnings: vec![],
            tree: index.clone(),
        };
        // Nothing new is read: a's hash and b's size are carried over.
        let mut next = index.clone();
        next.too_large.clear();
        let second = assemble(&mut next, &HashMap::new(), Some(&first));
        assert_eq!(second["a"].compose_hash.as_deref(), Some("sha-b1"));
        assert!(
            second["b"]
                .error
                .as_ref()
                .unwrap()
                .contains("2097152 bytes")
        );
        assert_eq!(next, index);
        // A blob that is new gets its facts from the read; without any, the stack says so.
        Arc::make_mut(next.stacks.get_mut("a").unwrap()).candidates[0].oid = "b3".into();
        let third = assemble(&mut next, &HashMap::new(), Some(&first));
        assert!(
            third["a"]
                .error
                .as_ref()
                .unwrap()
                .contains("could not be read")
        );
        assert_eq!(known_facts(Some(&first), "a", "b3"), None);
        assert_eq!(
            known_facts(Some(&first), "other", "b2"),
            Some(BlobFacts::TooLarge(2 << 20))
        );
    }

    #[test]
    fn a_missing_deploy_dir_is_an_error_not_an_empty_scan() {
        assert_eq!(
            scan(&[tree("other", "t")], "stacks"),
            Err(ScanError::DeployDirMissing("stacks".into()))
        );
        assert_eq!(
            scan(&[blob("stacks", "b")], "stacks"),
            Err(ScanError::DeployDirNotATree("stacks".into()))
        );
    }

    #[test]
    fn prefix_matching_respects_path_components() {
        let entries = vec![
            tree("stacks", "t0"),
            tree("stacks-old", "t1"),
            tree("stacks-old/x", "t2"),
            blob("stacks-old/x/compose.yaml", "b"),
        ];
        assert!(scan(&entries, "stacks").unwrap().stacks.is_empty());
    }

    #[test]
    fn directories_with_names_that_are_not_utf8_are_warned_about() {
        let mut odd = tree("s/caf\u{fffd}", "t1");
        odd.path_lossy = true;
        let entries = vec![
            tree("s", "t0"),
            odd,
            blob("s/caf\u{fffd}/compose.yaml", "b"),
        ];
        let index = scan(&entries, "s").unwrap();
        assert!(index.stacks.is_empty());
        assert_eq!(index.warnings.len(), 1);
    }

    fn change(old_mode: u32, new_mode: u32, new_oid: &str, path: &str) -> DiffEntry {
        DiffEntry {
            old_mode,
            new_mode,
            new_oid: new_oid.into(),
            path: path.into(),
            path_lossy: false,
        }
    }

    const F: u32 = 0o100644;
    const T: u32 = MODE_TREE;

    /// `before` and `after` as full listings, `diff` as `diff-tree -r -t` gives it.
    fn assert_diff_matches_scan(before: &[TreeEntry], diff: &[DiffEntry], after: &[TreeEntry]) {
        let previous = scan(before, "s").unwrap();
        let applied = apply_diff(&previous, diff, "s").expect("decidable");
        assert_eq!(applied, scan(after, "s").unwrap());
    }

    #[test]
    fn a_diff_applies_additions_removals_and_precedence_changes() {
        let before = vec![
            tree("s", "t0"),
            tree("s/a", "ta"),
            blob("s/a/docker-compose.yml", "a1"),
            tree("s/b", "tb"),
            blob("s/b/compose.yaml", "b1"),
            tree("s/notes", "tn"),
            blob("s/notes/README", "n1"),
            tree("s/old", "to"),
            blob("s/old/compose.yml", "o1"),
        ];
        let diff = vec![
            change(T, T, "t0'", "s"),
            // a: a higher-precedence file appears; the old one stays as a warning.
            change(T, T, "ta'", "s/a"),
            change(0, F, "a2", "s/a/compose.yaml"),
            // b: only a non-compose file changes; same blob, new content hash.
            change(T, T, "tb'", "s/b"),
            change(0, F, "e1", "s/b/.env"),
            // notes becomes a stack.
            change(T, T, "tn'", "s/notes"),
            change(0, F, "n2", "s/notes/compose.yml"),
            // old is removed.
            change(T, 0, "0", "s/old"),
            change(F, 0, "0", "s/old/compose.yml"),
            // a new stack.
            change(0, T, "tc", "s/c"),
            change(0, F, "c1", "s/c/docker-compose.yaml"),
        ];
        let after = vec![
            tree("s", "t0'"),
            tree("s/a", "ta'"),
            blob("s/a/compose.yaml", "a2"),
            blob("s/a/docker-compose.yml", "a1"),
            tree("s/b", "tb'"),
            blob("s/b/.env", "e1"),
            blob("s/b/compose.yaml", "b1"),
            tree("s/c", "tc"),
            blob("s/c/docker-compose.yaml", "c1"),
            tree("s/notes", "tn'"),
            blob("s/notes/README", "n1"),
            blob("s/notes/compose.yml", "n2"),
        ];
        assert_diff_matches_scan(&before, &diff, &after);
    }

    #[test]
    fn a_diff_applies_type_changes_listed_in_either_order() {
        let mut link = blob("s/b/compose.yaml", "l1");
        link.mode = MODE_SYMLINK;
        let before = vec![
            tree("s", "t0"),
            tree("s/a", "ta"),
            blob("s/a/compose.yaml", "a1"),
            blob("s/a/compose.yml", "a2"),
            tree("s/b", "tb"),
            blob("s/b/compose.yaml", "b1"),
            tree("s/c", "tc"),
            blob("s/c/compose.yaml", "c1"),
            blob("s/d", "d0"),
        ];
        let diff = vec![
            change(T, T, "t0'", "s"),
            // a: compose.yaml becomes a directory, compose.yml takes over.
            change(T, T, "ta'", "s/a"),
            change(F, 0, "0", "s/a/compose.yaml"),
            change(0, T, "tx", "s/a/compose.yaml"),
            change(0, F, "x1", "s/a/compose.yaml/f"),
            // b: compose.yaml becomes a symlink.
            change(T, T, "tb'", "s/b"),
            change(F, MODE_SYMLINK, "l1", "s/b/compose.yaml"),
            // c: the stack directory becomes a file (addition listed first, as git does).
            change(0, F, "c9", "s/c"),
            change(T, 0, "0", "s/c"),
            change(F, 0, "0", "s/c/compose.yaml"),
            // d: a file becomes a stack directory.
            change(F, 0, "0", "s/d"),
            change(0, T, "td", "s/d"),
            change(0, F, "d1", "s/d/compose.yaml"),
        ];
        let after = vec![
            tree("s", "t0'"),
            tree("s/a", "ta'"),
            tree("s/a/compose.yaml", "tx"),
            blob("s/a/compose.yaml/f", "x1"),
            blob("s/a/compose.yml", "a2"),
            tree("s/b", "tb'"),
            link,
            blob("s/c", "c9"),
            tree("s/d", "td"),
            blob("s/d/compose.yaml", "d1"),
        ];
        assert_diff_matches_scan(&before, &diff, &after);
    }

    #[test]
    fn a_diff_that_cannot_decide_asks_for_a_full_listing() {
        let previous = scan(&[tree("s", "t0")], "s").unwrap();
        // The deploy dir replaced by a file.
        assert_eq!(apply_diff(&previous, &[change(T, F, "x", "s")], "s"), None);
        // A change inside a directory without the directory's own line.
        assert_eq!(
            apply_diff(&previous, &[change(0, F, "x", "s/a/compose.yaml")], "s"),
            None
        );
        // A path that is not UTF-8.
        let mut odd = change(0, T, "x", "s/\u{fffd}");
        odd.path_lossy = true;
        assert_eq!(apply_diff(&previous, &[odd], "s"), None);
        // Hidden directories are skipped, not a reason to give up.
        let hidden = [
            change(0, T, "h", "s/.hidden"),
            change(0, F, "h1", "s/.hidden/compose.yaml"),
        ];
        assert_eq!(apply_diff(&previous, &hidden, "s"), Some(previous));
    }

    /// A snapshot of `index` as the git reader builds it: assembled, then named.
    fn snapshot_of(
        index: &TreeIndex,
        blobs: &HashMap<&str, BlobFacts>,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        let mut index = index.clone();
        let mut stacks = assemble(&mut index, blobs, previous);
        super::super::assign_project_names(&mut stacks);
        Snapshot {
            revision: "c".into(),
            git_ref: "refs/heads/main".into(),
            ref_type: super::super::RefType::Branch,
            remote_oid: "c".into(),
            commit_message: String::new(),
            stacks,
            warnings: vec![],
            tree: index,
        }
    }

    #[test]
    fn a_diff_shares_every_untouched_stack_with_the_previous_snapshot() {
        let before = vec![
            tree("s", "t0"),
            tree("s/a", "ta"),
            blob("s/a/compose.yaml", "a1"),
            tree("s/b", "tb"),
            blob("s/b/compose.yaml", "b1"),
            tree("s/c", "tc"),
            blob("s/c/compose.yaml", "c1"),
        ];
        let first_index = scan(&before, "s").unwrap();
        let first = snapshot_of(&first_index, &facts(&first_index), None);
        // b's compose file changes; a and c do not.
        let diff = vec![
            change(T, T, "t0'", "s"),
            change(T, T, "tb'", "s/b"),
            change(F, F, "b2", "s/b/compose.yaml"),
        ];
        let index = apply_diff(&first.tree, &diff, "s").unwrap();
        assert!(Arc::ptr_eq(&index.stacks["a"], &first.tree.stacks["a"]));
        assert!(!Arc::ptr_eq(&index.stacks["b"], &first.tree.stacks["b"]));
        let blobs = HashMap::from([("b2", BlobFacts::Hash("sha-b2".into()))]);
        let second = snapshot_of(&index, &blobs, Some(&first));
        for shared in ["a", "c"] {
            assert!(
                Arc::ptr_eq(&second.stacks[shared], &first.stacks[shared]),
                "{shared}"
            );
        }
        assert!(!Arc::ptr_eq(&second.stacks["b"], &first.stacks["b"]));
        assert_eq!(second.stacks["b"].compose_hash.as_deref(), Some("sha-b2"));
        assert_eq!(second.stacks["b"].project_name.as_deref(), Some("b"));
        // Exactly what reading the new commit from scratch gives.
        let scratch_blobs = HashMap::from([
            ("a1", BlobFacts::Hash("sha-a1".into())),
            ("b2", BlobFacts::Hash("sha-b2".into())),
            ("c1", BlobFacts::Hash("sha-c1".into())),
        ]);
        assert_eq!(
            second.stacks,
            snapshot_of(&index, &scratch_blobs, None).stacks
        );
    }

    #[test]
    fn stacks_with_errors_are_rebuilt_not_shared() {
        let mut link = blob("a/compose.yaml", "l1");
        link.mode = MODE_SYMLINK;
        let entries = vec![
            tree("a", "ta"),
            link,
            tree("b", "tb"),
            blob("b/compose.yaml", "b1"),
            tree("B", "tB"),
            blob("B/compose.yaml", "B1"),
        ];
        let index = scan(&entries, "").unwrap();
        let first = snapshot_of(&index, &facts(&index), None);
        assert!(
            first.stacks["b"]
                .error
                .as_ref()
                .unwrap()
                .contains("collides")
        );
        // The same tree again: nothing changed, yet the stacks with an error are built anew
        // (a collision depends on the other stacks) and come out equal.
        let second = snapshot_of(&first.tree, &HashMap::new(), Some(&first));
        for rebuilt in ["a", "b", "B"] {
            assert!(
                !Arc::ptr_eq(&second.stacks[rebuilt], &first.stacks[rebuilt]),
                "{rebuilt}"
            );
        }
        assert_eq!(second.stacks, first.stacks);
    }

    #[test]
    fn modes_map_to_the_kinds_ls_tree_prints() {
        assert_eq!(ObjectKind::of_mode(0o100644), ObjectKind::Blob);
        assert_eq!(ObjectKind::of_mode(0o100755), ObjectKind::Blob);
        assert_eq!(ObjectKind::of_mode(MODE_SYMLINK), ObjectKind::Blob);
        assert_eq!(ObjectKind::of_mode(MODE_TREE), ObjectKind::Tree);
        assert_eq!(ObjectKind::of_mode(MODE_GITLINK), ObjectKind::Commit);
    }
}
