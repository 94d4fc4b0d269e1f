//! Turning a [`TreeIndex`] and the facts of its compose blobs into stacks, sharing every stack
//! that comes out as in the previous snapshot.
//!
//! It owns [`assemble`], the look-ups of what the previous snapshot already knows
//! ([`known_facts`], [`PreviousStacks`]) and the rule of when a stack is unchanged. It may use
//! the index types of its parent module and the `desired_state` types (`DesiredStack`,
//! `Snapshot`); it does no I/O.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{BlobFacts, MODE_SYMLINK, StackTree, TreeIndex};
use crate::desired_state::{DesiredStack, MAX_COMPOSE_FILE_BYTES, Snapshot};

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
                return Some(BlobFacts::Hash(hash.clone(), stack.settings.clone()));
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
pub(in crate::desired_state) struct Ascending<'a, V> {
    entries: Option<std::iter::Peekable<std::collections::btree_map::Iter<'a, String, V>>>,
}

impl<'a, V> Ascending<'a, V> {
    pub(in crate::desired_state) fn new(map: Option<&'a BTreeMap<String, V>>) -> Self {
        Self {
            entries: map.map(|m| m.iter().peekable()),
        }
    }

    /// The entry named `name`; names must be asked for in ascending order.
    pub(in crate::desired_state) fn get(&mut self, name: &str) -> Option<&'a V> {
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
            Some(BlobFacts::Hash(hash, _)) => earlier.compose_hash.as_ref() == Some(hash),
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
/// ([`assign_project_names`](crate::desired_state::assign_project_names) tells the two apart by whether the `Arc` is shared).
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
        settings: None,
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
            desired.settings.clone_from(&d.settings);
            None
        }
        (None, None) => known_facts_of(previous, None, &chosen.oid).map(Cow::Owned),
    };
    match facts.as_deref() {
        Some(BlobFacts::Hash(hash, settings)) => {
            desired.compose_hash = Some(hash.clone());
            desired.compose_blob = Some(chosen.oid.clone());
            desired.settings.clone_from(settings);
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
    // The settings' warnings and error are the stack's.
    if let Some(read) = desired.settings.as_deref() {
        desired
            .warnings
            .extend(read.warnings.iter().map(|w| format!("{file}: {w}")));
        if desired.error.is_none() {
            desired.error = read.error.as_ref().map(|e| format!("{file}: {e}"));
        }
    }
    desired
}
