//! Unit tests of the tree index: [`super::scan`], [`super::apply_diff`] (checked against a
//! fresh scan of the same commit) and [`super::assemble`]. They use only the parent module.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::*;
use crate::desired_state::Snapshot;

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
        .map(|oid| (oid, BlobFacts::Hash(format!("sha-{oid}"), None)))
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
        ("b1", BlobFacts::Hash("sha-b1".into(), None)),
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
    let blobs = HashMap::from([("b2", BlobFacts::Hash("sha-b2".into(), None))]);
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
        ("a1", BlobFacts::Hash("sha-a1".into(), None)),
        ("b2", BlobFacts::Hash("sha-b2".into(), None)),
        ("c1", BlobFacts::Hash("sha-c1".into(), None)),
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
