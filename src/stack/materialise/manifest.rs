//! The list of files docker-cd wrote into a stack directory ([`MANIFEST`]): its format, pure.
//!
//! Format 2, written since the security review:
//!
//! ```text
//! docker-cd files 2\0<path>\0<path>\0...
//! ```
//!
//! a fixed header, then each path (relative to the stack directory, `/`-separated, byte-exact)
//! followed by a NUL, in byte order. Git paths never hold a NUL, so no name can split, merge or
//! forge an entry; a list that does not end with a NUL was cut short and is not trusted.
//!
//! Format 1, written before, is one path per line with nothing escaped: a name holding a
//! newline became two entries, and the next version removed a file of that name that the stack
//! had made at run time. It is read once, for the first sync after an upgrade (see
//! [`parse_legacy`]); the list is then rewritten in format 2 under the same name.
//!
//! [`MANIFEST`]: super::MANIFEST

use std::collections::BTreeSet;

/// The header that starts format 2. An older docker-cd reading it as lines sees names holding
/// NULs, which match no file, so a downgrade removes nothing it should not.
pub const HEADER: &[u8] = b"docker-cd files 2\0";

/// What a stored list says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Format 2: exactly these paths.
    Exact(BTreeSet<String>),
    /// Format 1: lines, in the order written; see [`parse_legacy`].
    Legacy(Vec<String>),
    /// Neither: cut short, not UTF-8, or a path no materialise could have written.
    Unreadable,
}

/// The list in format 2.
pub fn render<'a>(paths: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut out = HEADER.to_vec();
    for path in paths {
        out.extend_from_slice(path.as_bytes());
        out.push(0);
    }
    out
}

/// Reads a stored list in either format.
pub fn parse(bytes: &[u8]) -> Stored {
    let Some(body) = bytes.strip_prefix(HEADER) else {
        return match std::str::from_utf8(bytes) {
            Ok(text) if !text.contains('\0') => {
                Stored::Legacy(text.lines().map(str::to_owned).collect())
            }
            _ => Stored::Unreadable,
        };
    };
    let Some(body) = body.strip_suffix(b"\0") else {
        return if body.is_empty() {
            Stored::Exact(BTreeSet::new())
        } else {
            Stored::Unreadable
        };
    };
    let mut paths = BTreeSet::new();
    for entry in body.split(|b| *b == 0) {
        match std::str::from_utf8(entry) {
            Ok(path) if super::rules::check_relative(path).is_ok() => {
                paths.insert(path.to_owned());
            }
            _ => return Stored::Unreadable,
        }
    }
    Stored::Exact(paths)
}

/// How many consecutive lines of a format 1 list are tried as the pieces of one name.
pub const MAX_LEGACY_PIECES: usize = 32;

/// The paths of a format 1 list that are safe to treat as files of the previous version.
///
/// Format 1 wrote each path and a newline, so a name with newlines became a run of consecutive
/// lines. A run whose lines, joined with newlines, name an entry that `exists` (looked up
/// without following links) is such a name: neither its pieces (which may be the stack's own
/// runtime files, `data/db` from `x\ndata/db`) nor the joined name are kept, so the one stale
/// file may stay behind once but no runtime file is removed. Runs longer than
/// [`MAX_LEGACY_PIECES`] lines are not looked for.
pub fn parse_legacy(lines: &[String], exists: impl Fn(&str) -> bool) -> BTreeSet<String> {
    let mut pieces = vec![false; lines.len()];
    for start in 0..lines.len() {
        let mut joined = lines[start].clone();
        for end in start + 1..lines.len().min(start + MAX_LEGACY_PIECES) {
            joined.push('\n');
            joined.push_str(&lines[end]);
            if exists(&joined) {
                pieces[start..=end].iter_mut().for_each(|p| *p = true);
            }
        }
    }
    lines
        .iter()
        .zip(pieces)
        .filter(|(line, piece)| !piece && super::rules::check_relative(line).is_ok())
        .map(|(line, _)| line.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(paths: &[&str]) -> BTreeSet<String> {
        paths.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn every_byte_a_git_path_may_hold_round_trips() {
        let paths = set(&[
            "compose.yaml",
            "x\ndata/db",
            "ends\n",
            "tab\there",
            "back\\slash",
            " lead",
            "trail ",
            "cr\r",
            "\u{1b}[31mred",
            "é/✓",
        ]);
        let bytes = render(paths.iter().map(String::as_str));
        assert_eq!(parse(&bytes), Stored::Exact(paths));
        assert_eq!(parse(HEADER), Stored::Exact(BTreeSet::new()));
    }

    #[test]
    fn the_format_is_a_header_and_nul_terminated_paths() {
        assert_eq!(
            render(["a", "b\nc"]),
            b"docker-cd files 2\0a\0b\nc\0".to_vec()
        );
    }

    #[test]
    fn a_list_cut_short_or_holding_an_impossible_path_is_unreadable() {
        for bytes in [
            &b"docker-cd files 2\0a\0b"[..],
            b"docker-cd files 2\0a\0\0",
            b"docker-cd files 2\0../x\0",
            b"docker-cd files 2\0/etc/x\0",
            b"docker-cd files 2\0\xff\0",
            b"a\0b\n",
            b"\xff\n",
        ] {
            assert_eq!(parse(bytes), Stored::Unreadable, "{bytes:?}");
        }
    }

    #[test]
    fn a_format_one_list_is_read_as_lines() {
        assert_eq!(
            parse(b"compose.yaml\n.env\n"),
            Stored::Legacy(vec!["compose.yaml".into(), ".env".into()])
        );
        assert_eq!(parse(b""), Stored::Legacy(Vec::new()));
    }

    #[test]
    fn format_one_lines_that_are_pieces_of_an_existing_name_are_dropped_with_it() {
        let lines: Vec<String> = ["compose.yaml", "old.conf", "x", "data/db", "../evil", "y"]
            .map(String::from)
            .to_vec();
        let on_disk = set(&["compose.yaml", "x\ndata/db", "data/db"]);
        let kept = parse_legacy(&lines, |p| on_disk.contains(p));
        assert_eq!(kept, set(&["compose.yaml", "old.conf", "y"]));
    }

    #[test]
    fn format_one_pieces_are_found_across_several_newlines() {
        let lines: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let kept = parse_legacy(&lines, |p| p == "a\nb\nc");
        assert_eq!(kept, set(&["d"]));
    }
}
