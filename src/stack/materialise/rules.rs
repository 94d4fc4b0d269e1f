//! Checking a stack's whole file list before anything is written: pure, no I/O.
//!
//! Owns the rules a commit's tree must meet to be materialised: every path plain and relative,
//! no path listed twice or beneath a file or a link, the manifest's name reserved, and every
//! symbolic link resolving inside the stack directory *through the other links of the tree*.
//!
//! Links are resolved as the kernel would, against the tree of the commit rather than one link
//! at a time: `s -> .`, `t -> s/..` and `u -> t/..` each look harmless alone, but `t` is the
//! stack's parent and `u` its grandparent. A path the tree does not hold is taken lexically (it
//! may appear at run time as a directory, so `missing/..` is where `missing` sits); a path
//! beneath a regular file dangles (`ENOTDIR`) and stops there. Links that dangle inside the
//! stack are kept: compose only opens what the compose file names, and a link to
//! `data/current` that the stack creates at run time is a normal thing to commit.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::{MANIFEST, MaterialiseError};
use crate::desired_state::tree::{MODE_SYMLINK, StackFile};

/// How many links one resolution may follow before it is a loop (Linux's `MAXSYMLINKS`).
pub const MAX_LINK_HOPS: usize = 40;

/// The longest link target the kernel stores (`PATH_MAX` less its NUL).
pub const MAX_LINK_TARGET_BYTES: usize = 4095;

/// How many hops an error shows, so a long chain cannot flood a log line.
const SHOWN_HOPS: usize = 8;

/// What a path of the tree is.
#[derive(Debug, Clone, Copy)]
enum Node<'a> {
    File,
    Dir,
    Link(&'a [u8]),
}

/// Checks `files` (one stack's whole tree) against every rule of this module.
pub fn check(files: &[StackFile]) -> Result<(), MaterialiseError> {
    let mut nodes: HashMap<&[u8], Node<'_>> = HashMap::with_capacity(files.len() * 2);
    for file in files {
        check_relative(&file.path)?;
        if file.path == MANIFEST {
            return Err(MaterialiseError::ReservedName {
                path: file.path.clone(),
            });
        }
        let node = if file.mode == MODE_SYMLINK {
            check_target(file)?;
            Node::Link(&file.content)
        } else {
            Node::File
        };
        if nodes.insert(file.path.as_bytes(), node).is_some() {
            return Err(conflict(&file.path));
        }
    }
    // Every proper prefix of a path is a directory: it must not be a file or a link too (a
    // crafted tree can list `s` as a link and `s/x` as a file; writing `s/x` would follow `s`).
    for file in files {
        let path = file.path.as_bytes();
        for (i, _) in path.iter().enumerate().filter(|(_, b)| **b == b'/') {
            match nodes.get(&path[..i]) {
                Some(Node::Dir) => {}
                Some(_) => return Err(conflict(&file.path)),
                None => {
                    nodes.insert(&path[..i], Node::Dir);
                }
            }
        }
    }
    for file in files.iter().filter(|f| f.mode == MODE_SYMLINK) {
        resolve(&nodes, file)?;
    }
    Ok(())
}

/// Checks that `path` is relative and stays inside the directory: `/`-separated names, none
/// empty, `.` or `..`.
pub fn check_relative(path: &str) -> Result<(), MaterialiseError> {
    let ok = !path.is_empty()
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(MaterialiseError::BadPath {
            path: path.to_owned(),
        })
    }
}

fn conflict(path: &str) -> MaterialiseError {
    MaterialiseError::PathConflict {
        path: path.to_owned(),
    }
}

/// A target the kernel can store, and relative (an absolute one leaves the stack at once).
fn check_target(file: &StackFile) -> Result<(), MaterialiseError> {
    let target = &file.content;
    if target.first() == Some(&b'/') {
        return Err(escaping(file, vec![(file.path.as_bytes(), target)]));
    }
    if target.is_empty() || target.len() > MAX_LINK_TARGET_BYTES || target.contains(&0) {
        return Err(MaterialiseError::BadLinkTarget {
            path: file.path.clone(),
        });
    }
    Ok(())
}

fn escaping(file: &StackFile, hops: Vec<(&[u8], &[u8])>) -> MaterialiseError {
    MaterialiseError::EscapingSymlink {
        path: file.path.clone(),
        chain: render_hops(&hops),
    }
}

/// `a -> b, b -> c`, bounded to [`SHOWN_HOPS`] links.
fn render_hops(hops: &[(&[u8], &[u8])]) -> String {
    let mut text = String::new();
    for (i, (link, target)) in hops.iter().enumerate() {
        if i == SHOWN_HOPS {
            let _ = write!(text, ", and {} more", hops.len() - SHOWN_HOPS);
            break;
        }
        if i > 0 {
            text.push_str(", ");
        }
        let _ = write!(
            text,
            "{:?} -> {:?}",
            String::from_utf8_lossy(link),
            String::from_utf8_lossy(target)
        );
    }
    text
}

/// Where a resolution stands: a path below the stack root, kept as the lookup key itself so
/// that each step costs one component, not the whole path.
#[derive(Debug, Default)]
struct Cursor {
    key: Vec<u8>,
    /// The key's length before each of its components was added.
    ends: Vec<usize>,
}

impl Cursor {
    fn push(&mut self, name: &[u8]) {
        self.ends.push(self.key.len());
        if !self.key.is_empty() {
            self.key.push(b'/');
        }
        self.key.extend_from_slice(name);
    }

    /// Goes up one level; `false` at the stack root, where `..` leaves the stack.
    fn pop(&mut self) -> bool {
        match self.ends.pop() {
            Some(end) => {
                self.key.truncate(end);
                true
            }
            None => false,
        }
    }
}

/// Follows the link `file` through `nodes` until it resolves: inside (fine, dangling or not),
/// outside (an error naming it and the links followed), or not within [`MAX_LINK_HOPS`].
fn resolve<'f>(
    nodes: &HashMap<&'f [u8], Node<'f>>,
    file: &'f StackFile,
) -> Result<(), MaterialiseError> {
    let path = file.path.as_bytes();
    // Resolution starts in the link's own directory.
    let mut at = Cursor::default();
    let mut parents: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
    parents.pop();
    parents.into_iter().for_each(|name| at.push(name));
    // Components still to walk, the next one last.
    let mut pending: Vec<&'f [u8]> = file.content.rsplit(|b| *b == b'/').collect();
    let mut hops: Vec<(&'f [u8], &'f [u8])> = vec![(path, &file.content)];
    while let Some(component) = pending.pop() {
        match component {
            b"" | b"." => {}
            b".." => {
                if !at.pop() {
                    return Err(escaping(file, hops));
                }
            }
            name => {
                at.push(name);
                match nodes.get_key_value(at.key.as_slice()) {
                    Some((link, Node::Link(target))) => {
                        if hops.len() >= MAX_LINK_HOPS {
                            return Err(MaterialiseError::SymlinkLoop {
                                path: file.path.clone(),
                                chain: render_hops(&hops),
                            });
                        }
                        hops.push((link, target));
                        // The target replaces the link's name; it is relative, since `check`
                        // refused every absolute target before resolving.
                        at.pop();
                        pending.extend(target.rsplit(|b| *b == b'/'));
                    }
                    // Anything beneath a regular file fails with ENOTDIR: it dangles, inside.
                    Some((_, Node::File)) if pending.iter().any(|c| !c.is_empty()) => {
                        return Ok(());
                    }
                    Some((_, Node::File | Node::Dir)) | None => {}
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> StackFile {
        StackFile {
            path: path.into(),
            mode: 0o100644,
            content: Vec::new(),
        }
    }

    fn link(path: &str, target: &str) -> StackFile {
        StackFile {
            path: path.into(),
            mode: MODE_SYMLINK,
            content: target.as_bytes().to_vec(),
        }
    }

    fn error(files: &[StackFile]) -> String {
        check(files).unwrap_err().to_string()
    }

    #[test]
    fn single_links_inside_the_stack_are_accepted() {
        let files = [
            file("base/compose.yaml"),
            link("compose.yaml", "base/compose.yaml"),
            link("config/a", "../other"),
            link("here", "./"),
        ];
        assert!(check(&files).is_ok());
    }

    #[test]
    fn single_links_leaving_the_stack_are_refused() {
        for (path, target) in [
            ("compose.yaml", "../other/compose.yaml"),
            ("a", "/etc/shadow"),
            ("config/a", "../../x"),
            ("a", "b/../../x"),
        ] {
            let message = error(&[link(path, target)]);
            assert!(message.contains(&format!("{path:?}")), "{message}");
        }
    }

    #[test]
    fn a_chain_climbing_one_level_per_link_is_refused_naming_the_first_link_that_leaves() {
        let files = [link("s", "."), link("t", "s/.."), link("u", "t/..")];
        let message = error(&files);
        assert_eq!(
            message,
            r#"symbolic link "t" resolves outside the stack directory ("t" -> "s/..", "s" -> ".")"#
        );
    }

    #[test]
    fn links_resolving_inside_through_other_links_are_accepted() {
        let files = [
            file("conf/v2/app.conf"),
            link("conf/current", "v2"),
            link("conf/root", ".."),
            link("app.conf", "conf/current/app.conf"),
            link("again", "conf/root/conf/root/conf/current/../current"),
            link("up-and-back", "conf/current/../../conf"),
        ];
        assert!(check(&files).is_ok());
    }

    #[test]
    fn a_link_beneath_a_subdirectory_climbing_past_the_root_is_refused() {
        let files = [link("conf/up", ".."), link("conf/out", "up/..")];
        assert!(error(&files).contains(r#""conf/out""#));
    }

    #[test]
    fn dangling_links_inside_the_stack_are_accepted() {
        assert!(check(&[link("latest", "data/current")]).is_ok());
        // ENOTDIR: a path beneath a file goes nowhere, so the `..` after it cannot climb.
        assert!(check(&[file("compose.yaml"), link("a", "compose.yaml/../..")]).is_ok());
    }

    #[test]
    fn a_missing_directory_counts_as_a_directory_so_climbing_through_it_is_refused() {
        assert!(error(&[link("a", "data/../../x")]).contains(r#""a""#));
    }

    #[test]
    fn loops_are_refused_naming_the_link_and_bounding_the_chain() {
        let message = error(&[link("a", "b"), link("b", "a")]);
        assert!(
            message.starts_with(r#"symbolic link "a" does not resolve"#),
            "{message}"
        );
        assert!(message.contains("and 32 more"), "{message}");
        assert!(error(&[link("self", "self/x")]).contains(r#""self""#));
    }

    #[test]
    fn a_path_beneath_a_link_or_a_file_or_listed_twice_is_refused() {
        for files in [
            vec![link("s", "."), file("s/x")],
            vec![file("a"), file("a/b")],
            vec![file("a"), link("a", "b")],
        ] {
            let err = check(&files).unwrap_err();
            assert!(
                matches!(err, MaterialiseError::PathConflict { .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn targets_the_kernel_cannot_store_are_refused() {
        for target in ["", "a\0b", &"a".repeat(4096)] {
            let err = check(&[link("l", target)]).unwrap_err();
            assert!(
                matches!(err, MaterialiseError::BadLinkTarget { .. }),
                "{err}"
            );
        }
        assert!(check(&[link("l", &"a".repeat(4095))]).is_ok());
    }

    #[test]
    fn plain_relative_paths_only_and_the_manifest_name_is_reserved() {
        for path in ["", "/etc/x", "../x", "a/../b", "a//b", "a/", "./a", "a\0b"] {
            assert!(check_relative(path).is_err(), "{path:?}");
        }
        for path in [" a", "a\nb", "a\\b", "...", "a/.b"] {
            assert!(check_relative(path).is_ok(), "{path:?}");
        }
        let err = check(&[file(MANIFEST)]).unwrap_err();
        assert!(
            matches!(err, MaterialiseError::ReservedName { .. }),
            "{err}"
        );
        assert!(check(&[file(&format!("sub/{MANIFEST}"))]).is_ok());
    }
}
