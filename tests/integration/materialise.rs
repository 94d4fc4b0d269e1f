//! Materialising stacks on a real filesystem against a hostile tree or a hostile disk (TESTPLAN
//! X5, X7, and the file modes of finding 9 of the security review).
//!
//! Every test lays out `<tmp>/data/stacks` as the materialise root and `<tmp>/outside` beside
//! `data`, holding a [`Sentinel`]: a file that must survive untouched and unread, whatever the
//! commit holds or what a container planted in its stack directory.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use docker_cd::compose::materialise::{MANIFEST, materialise};
use docker_cd::desired_state::tree::{MODE_SYMLINK, StackFile};

/// A regular file of a stack.
fn file(path: &str, content: &str) -> StackFile {
    entry(path, 0o100644, content)
}

/// A symbolic link of a stack: its content is the target.
fn link(path: &str, target: &str) -> StackFile {
    entry(path, MODE_SYMLINK, target)
}

fn entry(path: &str, mode: u32, content: &str) -> StackFile {
    let (path, content) = (path.into(), content.as_bytes().to_vec());
    StackFile {
        path,
        mode,
        content,
    }
}

/// A temp dir with the materialise root and a directory outside it.
struct Layout {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Layout {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data/stacks");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        Self {
            root,
            outside,
            _dir: dir,
        }
    }

    fn stack(&self, project: &str) -> PathBuf {
        self.root.join(project)
    }
}

/// A file outside the root that must not be written, removed or read. Its access time is set a
/// day before its modification time, so that any read moves it (with `relatime`, the Linux
/// default, a read updates the access time exactly when it is older than the modification).
struct Sentinel {
    path: PathBuf,
    content: &'static str,
    inode: u64,
    accessed: SystemTime,
    modified: SystemTime,
}

impl Sentinel {
    fn new(path: PathBuf) -> Self {
        let content = "sentinel: must survive untouched and unread";
        fs::write(&path, content).unwrap();
        let modified = SystemTime::now() - Duration::from_secs(3600);
        let accessed = modified - Duration::from_secs(86_400);
        let f = fs::File::options().write(true).open(&path).unwrap();
        f.set_times(
            fs::FileTimes::new()
                .set_accessed(accessed)
                .set_modified(modified),
        )
        .unwrap();
        drop(f);
        let meta = fs::metadata(&path).unwrap();
        Self {
            inode: meta.ino(),
            accessed: meta.accessed().unwrap(),
            modified: meta.modified().unwrap(),
            path,
            content,
        }
    }

    #[track_caller]
    fn assert_untouched(&self) {
        let meta = fs::symlink_metadata(&self.path)
            .unwrap_or_else(|e| panic!("the sentinel {} is gone: {e}", self.path.display()));
        assert_eq!(meta.ino(), self.inode, "the sentinel was replaced");
        assert_eq!(
            meta.modified().unwrap(),
            self.modified,
            "the sentinel was written"
        );
        assert_eq!(
            meta.accessed().unwrap(),
            self.accessed,
            "the sentinel was read"
        );
        // Reading it here moves its access time, so this comes last.
        assert_eq!(fs::read_to_string(&self.path).unwrap(), self.content);
    }
}

#[test]
fn x05_a_chain_of_symlinks_climbing_one_level_per_link_refuses_the_stack_naming_the_link() {
    let layout = Layout::new();
    let sentinel = Sentinel::new(layout.outside.join("sentinel"));
    // Each link alone stays inside; together `t` is the stack's parent and `u` the root's.
    let files = [
        file("compose.yaml", "services: {}\n"),
        link("s", "."),
        link("t", "s/.."),
        link("u", "t/.."),
    ];
    let err = materialise(&layout.root, "web", &files).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("\"t\""),
        "the error names the link: {message}"
    );
    assert!(
        !layout.stack("web").join("compose.yaml").exists(),
        "nothing of a refused stack is written"
    );
    sentinel.assert_untouched();
}

#[test]
fn x05_a_chain_below_a_subdirectory_is_refused_too() {
    let layout = Layout::new();
    let files = [
        file("compose.yaml", "services: {}\n"),
        // `conf/up` is the stack root; `conf/out` is one above it.
        link("conf/up", ".."),
        link("conf/out", "up/.."),
    ];
    let err = materialise(&layout.root, "web", &files).unwrap_err();
    assert!(err.to_string().contains("\"conf/out\""), "{err}");
}

#[test]
fn x05_a_symlink_loop_refuses_the_stack_naming_the_link() {
    let layout = Layout::new();
    let files = [
        file("compose.yaml", "services: {}\n"),
        link("a", "b"),
        link("b", "a"),
    ];
    let err = materialise(&layout.root, "web", &files).unwrap_err();
    assert!(err.to_string().contains("\"a\""), "{err}");
}

#[test]
fn x05_links_that_resolve_inside_the_stack_through_other_links_are_kept() {
    let layout = Layout::new();
    let files = [
        file("compose.yaml", "services: {}\n"),
        file("conf/v2/app.conf", "x"),
        link("conf/current", "v2"),
        link("app.conf", "conf/current/app.conf"),
        link("conf/root", ".."),
        link("again", "conf/root/conf/current/../current"),
        // Dangling, but inside: where the stack will write its data at run time.
        link("latest", "data/latest"),
    ];
    let dir = materialise(&layout.root, "web", &files).unwrap();
    assert_eq!(fs::read_to_string(dir.join("app.conf")).unwrap(), "x");
    assert_eq!(
        fs::read_link(dir.join("latest")).unwrap(),
        Path::new("data/latest")
    );
}

#[test]
fn x05_a_file_listed_beneath_a_symlink_chain_cannot_write_outside() {
    let layout = Layout::new();
    let sentinel = Sentinel::new(layout.outside.join("sentinel"));
    // A crafted tree can list a path twice (a link and a file); writing the file must never
    // go through the link. `w` climbs from the staging directory to the temp dir.
    let files = [
        link("s", "."),
        link("t", "s/.."),
        link("u", "t/.."),
        link("v", "u/.."),
        link("w", "v/outside/sentinel"),
        file("w", "overwritten"),
    ];
    assert!(materialise(&layout.root, "web", &files).is_err());
    sentinel.assert_untouched();
}

#[test]
fn x05_removing_a_dropped_file_never_follows_a_symlink_planted_in_its_parent() {
    let layout = Layout::new();
    let sentinel = Sentinel::new(layout.outside.join("x"));
    let v1 = [file("compose.yaml", "v1"), file("sub/x", "ours")];
    let dir = materialise(&layout.root, "web", &v1).unwrap();
    // A container that can write into its stack directory swaps `sub` for a link.
    fs::remove_dir_all(dir.join("sub")).unwrap();
    symlink(&layout.outside, dir.join("sub")).unwrap();

    let v2 = [file("compose.yaml", "v2")];
    materialise(&layout.root, "web", &v2).unwrap();
    sentinel.assert_untouched();
    assert_eq!(fs::read_to_string(dir.join("compose.yaml")).unwrap(), "v2");
}

#[test]
fn x05_writing_through_a_symlink_planted_in_the_stack_replaces_the_link_not_its_target() {
    let layout = Layout::new();
    let sentinel = Sentinel::new(layout.outside.join("x"));
    let v1 = [file("compose.yaml", "v1"), file("sub/x", "v1")];
    let dir = materialise(&layout.root, "web", &v1).unwrap();
    fs::remove_dir_all(dir.join("sub")).unwrap();
    symlink(&layout.outside, dir.join("sub")).unwrap();
    symlink(layout.outside.join("x"), dir.join("compose.yaml.new")).unwrap();

    let v2 = [
        file("compose.yaml", "v2"),
        file("sub/x", "v2"),
        file("compose.yaml.new", "v2"),
    ];
    materialise(&layout.root, "web", &v2).unwrap();
    sentinel.assert_untouched();
    assert!(!dir.join("sub").is_symlink());
    assert_eq!(fs::read_to_string(dir.join("sub/x")).unwrap(), "v2");
    assert_eq!(
        fs::read_to_string(dir.join("compose.yaml.new")).unwrap(),
        "v2"
    );
}

#[test]
fn x05_a_file_list_replaced_by_a_symlink_is_not_read_through() {
    let layout = Layout::new();
    let v1 = [file("compose.yaml", "v1")];
    let dir = materialise(&layout.root, "web", &v1).unwrap();
    fs::create_dir_all(dir.join("data")).unwrap();
    fs::write(dir.join("data/db"), "runtime").unwrap();
    // A planted list naming the stack's own runtime file, reached through a link.
    let planted = layout.outside.join("list");
    fs::write(&planted, "data/db\n").unwrap();
    fs::remove_file(dir.join(MANIFEST)).unwrap();
    symlink(&planted, dir.join(MANIFEST)).unwrap();

    materialise(&layout.root, "web", &[file("compose.yaml", "v2")]).unwrap();
    assert_eq!(fs::read_to_string(dir.join("data/db")).unwrap(), "runtime");
    assert_eq!(fs::read_to_string(&planted).unwrap(), "data/db\n");
}

/// Names Git allows that a line-based list would split, trim or unescape.
const ODD_NAMES: &[&str] = &[
    "x\ndata/db",
    "tab\there",
    "back\\slash",
    " leading space",
    "trailing space ",
    "carriage\rreturn",
    "\"quoted\"",
    "unicode-é-✓",
    "ends-with-newline\n",
];

#[test]
fn x07_a_file_name_with_a_newline_keeps_the_list_exact_and_no_runtime_file_is_removed() {
    let layout = Layout::new();
    let mut v1 = vec![file("compose.yaml", "v1")];
    v1.extend(ODD_NAMES.iter().map(|name| file(name, "ours")));
    let dir = materialise(&layout.root, "web", &v1).unwrap();
    for name in ODD_NAMES {
        assert_eq!(
            fs::read_to_string(dir.join(name)).unwrap(),
            "ours",
            "{name:?}"
        );
    }
    // Runtime files of the stack whose names are the pieces a line-based list would hold.
    fs::create_dir_all(dir.join("data")).unwrap();
    fs::write(dir.join("data/db"), "runtime").unwrap();
    fs::write(dir.join("x"), "runtime").unwrap();
    fs::write(dir.join("ends-with-newline"), "runtime").unwrap();
    fs::write(dir.join("tab"), "runtime").unwrap();

    materialise(&layout.root, "web", &[file("compose.yaml", "v2")]).unwrap();
    for runtime in ["data/db", "x", "ends-with-newline", "tab"] {
        assert_eq!(
            fs::read_to_string(dir.join(runtime)).unwrap(),
            "runtime",
            "runtime file {runtime:?}"
        );
    }
    for name in ODD_NAMES {
        assert!(
            fs::symlink_metadata(dir.join(name)).is_err(),
            "{name:?} was dropped from the commit but is still there"
        );
    }
    assert!(
        !dir.join("x\ndata").exists(),
        "its emptied directory is pruned"
    );
}

#[test]
fn x07_a_list_written_by_an_older_version_is_migrated_without_removing_runtime_files() {
    let layout = Layout::new();
    let dir = layout.stack("web");
    fs::create_dir_all(dir.join("x\ndata")).unwrap();
    fs::create_dir_all(dir.join("data")).unwrap();
    fs::write(dir.join("compose.yaml"), "v1").unwrap();
    fs::write(dir.join("old.conf"), "v1").unwrap();
    fs::write(dir.join("x\ndata/db"), "v1").unwrap();
    fs::write(dir.join("data/db"), "runtime").unwrap();
    // What the line-based list of an older docker-cd holds for that version.
    fs::write(dir.join(MANIFEST), "compose.yaml\nold.conf\nx\ndata/db\n").unwrap();

    materialise(&layout.root, "web", &[file("compose.yaml", "v2")]).unwrap();
    assert!(
        !dir.join("old.conf").exists(),
        "the old list is still honoured"
    );
    assert_eq!(fs::read_to_string(dir.join("data/db")).unwrap(), "runtime");

    // From now on the list is exact: the next version drops nothing it does not name.
    fs::write(dir.join("old.conf"), "runtime").unwrap();
    materialise(&layout.root, "web", &[file("compose.yaml", "v3")]).unwrap();
    assert_eq!(fs::read_to_string(dir.join("old.conf")).unwrap(), "runtime");
}

#[test]
fn materialised_files_and_directories_have_no_world_bits() {
    let layout = Layout::new();
    let script = StackFile {
        path: "bin/entry.sh".into(),
        mode: 0o100755,
        content: b"#!/bin/sh\n".to_vec(),
    };
    let files = [
        file("compose.yaml", "v1"),
        file("conf/app.conf", "x"),
        script,
    ];
    let dir = materialise(&layout.root, "web", &files).unwrap();
    let mode = |path: &str| {
        fs::symlink_metadata(dir.join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode(""), 0o750, "the stack directory");
    assert_eq!(mode("conf"), 0o750);
    assert_eq!(mode("bin"), 0o750);
    assert_eq!(mode("compose.yaml"), 0o640);
    assert_eq!(mode("conf/app.conf"), 0o640);
    assert_eq!(
        mode("bin/entry.sh"),
        0o750,
        "executables keep x for owner and group"
    );
    assert_eq!(mode(MANIFEST), 0o640);
}
