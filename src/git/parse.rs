//! Pure parsers for git's machine-readable output. Bytes in, typed values out; each documents
//! the exact format it reads and is tested on captured output, broken samples included.

use crate::desired_state::tree::{DiffEntry, ObjectKind, TreeEntry};

/// Output git produced that does not have the documented shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected output from git {command}: {message}")]
pub struct ParseError {
    pub command: &'static str,
    pub message: String,
}

fn error(command: &'static str, message: impl Into<String>) -> ParseError {
    ParseError {
        command,
        message: message.into(),
    }
}

/// `git --version`: `git version 2.47.3` (vendors may append text: `2.39.5 (Apple Git-154)`,
/// `2.45.2.windows.1`). Returns (major, minor).
pub fn version(out: &[u8]) -> Result<(u32, u32), ParseError> {
    let text = String::from_utf8_lossy(out);
    let rest = text
        .trim()
        .strip_prefix("git version ")
        .ok_or_else(|| error("--version", format!("{:?}", text.trim())))?;
    let mut numbers = rest
        .split(|c: char| !c.is_ascii_digit())
        .map(str::parse::<u32>);
    match (numbers.next(), numbers.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => Ok((major, minor)),
        _ => Err(error("--version", format!("{:?}", text.trim()))),
    }
}

/// Is `s` a full hexadecimal object id (SHA-1 or SHA-256)?
pub fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The HTTP status of a redirect that git refused, from its stderr: with
/// `http.followRedirects=false`, git (2.39 and 2.47 alike) ends with
/// `fatal: unable to access '<url>/': The requested URL returned error: 302`.
pub fn refused_redirect(stderr: &str) -> Option<u16> {
    const MARK: &str = "The requested URL returned error: ";
    stderr.lines().find_map(|line| {
        let (_, rest) = line.split_once(MARK)?;
        let status: u16 = rest.get(..3)?.parse().ok()?;
        (300..400).contains(&status).then_some(status)
    })
}

/// `git ls-remote <url> <patterns>`: lines of `<oid> TAB <refname> LF`. Annotated tags may come
/// with a peeled line `<oid> TAB <refname>^{}`.
pub fn ls_remote(out: &[u8]) -> Result<Vec<(String, String)>, ParseError> {
    let text = std::str::from_utf8(out).map_err(|_| error("ls-remote", "not UTF-8"))?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (oid, name) = line
                .split_once('\t')
                .ok_or_else(|| error("ls-remote", format!("no tab in {line:?}")))?;
            if !is_object_id(oid) {
                return Err(error("ls-remote", format!("bad object id in {line:?}")));
            }
            Ok((oid.to_owned(), name.to_owned()))
        })
        .collect()
}

/// `git ls-tree -r -t [-l] -z <tree-ish> [-- <path>]`: NUL-terminated records
/// `<mode> SP <type> SP <oid> TAB <path>`, with `-l` `<mode> SP <type> SP <oid> SP+ <size> TAB
/// <path>` where `<size>` is right-aligned and is `-` for trees and submodules. Paths are raw
/// bytes (not quoted, thanks to `-z`).
pub fn ls_tree(out: &[u8]) -> Result<Vec<TreeEntry>, ParseError> {
    let mut entries = Vec::new();
    for record in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let tab = record
            .iter()
            .position(|b| *b == b'\t')
            .ok_or_else(|| error("ls-tree", "record without a tab"))?;
        let meta = std::str::from_utf8(&record[..tab])
            .map_err(|_| error("ls-tree", "metadata not UTF-8"))?;
        let raw_path = &record[tab + 1..];
        let Some([Some(mode), Some(kind), Some(oid), size]) =
            at_most(meta.split_ascii_whitespace())
        else {
            return Err(error("ls-tree", format!("malformed record {meta:?}")));
        };
        let mode = u32::from_str_radix(mode, 8)
            .map_err(|_| error("ls-tree", format!("bad mode {mode:?}")))?;
        let kind = match kind {
            "blob" => ObjectKind::Blob,
            "tree" => ObjectKind::Tree,
            "commit" => ObjectKind::Commit,
            other => return Err(error("ls-tree", format!("unknown object type {other:?}"))),
        };
        if !is_object_id(oid) {
            return Err(error("ls-tree", format!("bad object id {oid:?}")));
        }
        let size = match size {
            None | Some("-") => None,
            Some(n) => Some(
                n.parse::<u64>()
                    .map_err(|_| error("ls-tree", format!("bad size {n:?}")))?,
            ),
        };
        let (path, path_lossy) = path_text(raw_path);
        entries.push(TreeEntry {
            mode,
            kind,
            oid: oid.to_owned(),
            size,
            path,
            path_lossy,
        });
    }
    Ok(entries)
}

/// A raw path as text: `(path, lossy)`, decoded lossily when it is not UTF-8.
/// The fields of a record, `None` past its end: `None` altogether when it has more than `N`.
fn at_most<'a, const N: usize>(
    mut fields: impl Iterator<Item = &'a str>,
) -> Option<[Option<&'a str>; N]> {
    let first = std::array::from_fn(|_| fields.next());
    fields.next().is_none().then_some(first)
}

fn path_text(raw: &[u8]) -> (String, bool) {
    match std::str::from_utf8(raw) {
        Ok(p) => (p.to_owned(), false),
        Err(_) => (String::from_utf8_lossy(raw).into_owned(), true),
    }
}

/// `git diff-tree -r -t -z <old> <new> [-- <path>]` (no rename detection): for each changed
/// path a record `:<old mode> SP <new mode> SP <old oid> SP <new oid> SP <status>` NUL `<path>`
/// NUL. Modes are octal, `000000` for a side where the path does not exist, whose oid is all
/// zeros; status is `A`, `D`, `M` or `T` (type change). With `-t` every directory on the way
/// to a change is listed too. A path whose type changes between a directory and anything else
/// is listed twice: deleted, and added.
pub fn diff_tree(out: &[u8]) -> Result<Vec<DiffEntry>, ParseError> {
    let mut entries = Vec::new();
    let mut fields = out.split(|b| *b == 0);
    while let Some(meta) = fields.next() {
        if meta.is_empty() {
            continue; // the final NUL
        }
        let meta =
            std::str::from_utf8(meta).map_err(|_| error("diff-tree", "metadata not UTF-8"))?;
        let Some(raw_path) = fields.next().filter(|p| !p.is_empty()) else {
            return Err(error(
                "diff-tree",
                format!("record without a path {meta:?}"),
            ));
        };
        let parts = meta
            .strip_prefix(':')
            .ok_or_else(|| error("diff-tree", format!("malformed record {meta:?}")))?
            .split(' ');
        let Some(
            [
                Some(old_mode),
                Some(new_mode),
                Some(old_oid),
                Some(new_oid),
                Some(status),
            ],
        ) = at_most(parts)
        else {
            return Err(error("diff-tree", format!("malformed record {meta:?}")));
        };
        let mode = |m: &str| {
            u32::from_str_radix(m, 8).map_err(|_| error("diff-tree", format!("bad mode {m:?}")))
        };
        let (old_mode, new_mode) = (mode(old_mode)?, mode(new_mode)?);
        if !is_object_id(old_oid) || !is_object_id(new_oid) {
            return Err(error("diff-tree", format!("bad object id in {meta:?}")));
        }
        let consistent = match status {
            "A" => old_mode == 0 && new_mode != 0,
            "D" => old_mode != 0 && new_mode == 0,
            "M" | "T" => old_mode != 0 && new_mode != 0,
            _ => false,
        };
        if !consistent {
            return Err(error("diff-tree", format!("unexpected status in {meta:?}")));
        }
        let (path, path_lossy) = path_text(raw_path);
        entries.push(DiffEntry {
            old_mode,
            new_mode,
            new_oid: new_oid.to_owned(),
            path,
            path_lossy,
        });
    }
    Ok(entries)
}

/// The header line `git cat-file --batch` prints before each object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchHeader {
    /// `<oid> SP <type> SP <size> LF`, followed by `<size>` bytes of content and a LF.
    Found {
        oid: String,
        kind: String,
        size: usize,
    },
    /// `<request> SP missing LF` (or `ambiguous`): no content follows.
    Missing { request: String },
}

/// Parses one `cat-file --batch` header line (with or without its LF).
pub fn batch_header(line: &[u8]) -> Result<BatchHeader, ParseError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| error("cat-file", "header not UTF-8"))?;
    if let Some(request) = text
        .strip_suffix(" missing")
        .or_else(|| text.strip_suffix(" ambiguous"))
    {
        return Ok(BatchHeader::Missing {
            request: request.to_owned(),
        });
    }
    let mut fields = text.split(' ');
    match (fields.next(), fields.next(), fields.next(), fields.next()) {
        (Some(oid), Some(kind), Some(size), None) if is_object_id(oid) => Ok(BatchHeader::Found {
            oid: oid.to_owned(),
            kind: kind.to_owned(),
            size: size
                .parse()
                .map_err(|_| error("cat-file", format!("bad size in {text:?}")))?,
        }),
        _ => Err(error("cat-file", format!("malformed header {text:?}"))),
    }
}

/// One object of `cat-file --batch` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchObject {
    pub header: BatchHeader,
    pub content: Vec<u8>,
}

/// Parses a whole `cat-file --batch` output (headers, contents, separating LFs). The adapter
/// reads the same format incrementally from a live process; this form serves captured samples.
pub fn batch(out: &[u8]) -> Result<Vec<BatchObject>, ParseError> {
    let mut objects = Vec::new();
    let mut rest = out;
    while !rest.is_empty() {
        let eol = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| error("cat-file", "header without LF"))?;
        let header = batch_header(&rest[..eol])?;
        rest = &rest[eol + 1..];
        let content = match &header {
            BatchHeader::Missing { .. } => Vec::new(),
            BatchHeader::Found { size, .. } => {
                if rest.len() < size + 1 || rest[*size] != b'\n' {
                    return Err(error("cat-file", "content shorter than its header says"));
                }
                let content = rest[..*size].to_vec();
                rest = &rest[size + 1..];
                content
            }
        };
        objects.push(BatchObject { header, content });
    }
    Ok(objects)
}

/// The message of a raw commit object: everything after the first blank line, trailing
/// newlines removed. Non-UTF-8 messages are decoded lossily.
pub fn commit_message(commit: &[u8]) -> String {
    let body = commit
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| &commit[i + 2..])
        .unwrap_or_default();
    String::from_utf8_lossy(body).trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_redirect_is_told_from_other_http_errors() {
        let refused = "fatal: unable to access 'http://127.0.0.1:8/r.git/': The requested URL returned error: 302\n";
        assert_eq!(refused_redirect(refused), Some(302));
        let moved = "warning: x\nfatal: unable to access 'https://h/r/': The requested URL returned error: 308";
        assert_eq!(refused_redirect(moved), Some(308));
        let denied =
            "fatal: unable to access 'https://h/r/': The requested URL returned error: 403\n";
        assert_eq!(refused_redirect(denied), None);
        assert_eq!(
            refused_redirect("fatal: Authentication failed for 'https://h/r/'"),
            None
        );
        assert_eq!(
            refused_redirect("The requested URL returned error: 3"),
            None
        );
    }

    #[test]
    fn versions_parse_with_vendor_suffixes() {
        assert_eq!(version(b"git version 2.47.3\n"), Ok((2, 47)));
        assert_eq!(
            version(b"git version 2.39.5 (Apple Git-154)\n"),
            Ok((2, 39))
        );
        assert_eq!(version(b"git version 2.45.2.windows.1\n"), Ok((2, 45)));
        assert!(version(b"hub version 2.14.2").is_err());
        assert!(version(b"").is_err());
    }

    #[test]
    fn ls_remote_output_is_parsed_including_peeled_tags() {
        // Captured from `git ls-remote file:///tmp/src` (git 2.47.3).
        let out = b"8ba7f56884af1a6a51068bcca372711276059be7\trefs/heads/main\n\
2fcfba711478f993d83ec7315fa505d6b142ef7f\trefs/tags/v1\n\
8ba7f56884af1a6a51068bcca372711276059be7\trefs/tags/v1^{}\n";
        let refs = ls_remote(out).unwrap();
        assert_eq!(refs.len(), 3);
        assert_eq!(refs[0].1, "refs/heads/main");
        assert_eq!(refs[2].1, "refs/tags/v1^{}");
        assert!(ls_remote(b"").unwrap().is_empty());
        assert!(ls_remote(b"nonsense\n").is_err());
        assert!(ls_remote(b"xyz\trefs/heads/main\n").is_err());
    }

    #[test]
    fn ls_tree_records_are_parsed() {
        // Captured from `git ls-tree -r -t -l -z HEAD -- stacks` (git 2.47.3).
        let out = b"040000 tree 6e295440ba7e39b9f0c50ac188462866015c990a       -\tstacks\0\
040000 tree 6b0eb0d7b26424995b6215e121ef915e965710cf       -\tstacks/a\0\
100644 blob aac40468f7cca69f33be77f75eb66c8f2f80b71a      26\tstacks/a/compose.yaml\0\
120000 blob 587be6b4c3f93f93c489c0111bba5596147a26cb       9\tstacks/a b/link\0\
160000 commit 1933da329284aca10dab8dc2fdd54213acd39be5       -\tstacks/sub\0";
        let entries = ls_tree(out).unwrap();
        assert_eq!(entries.len(), 5);
        assert_eq!(entries[0].kind, ObjectKind::Tree);
        assert_eq!(entries[0].size, None);
        assert_eq!(entries[2].size, Some(26));
        assert_eq!(entries[2].mode, 0o100644);
        assert_eq!(entries[3].path, "stacks/a b/link");
        assert_eq!(entries[3].mode, 0o120000);
        assert_eq!(entries[4].kind, ObjectKind::Commit);
    }

    #[test]
    fn ls_tree_records_without_sizes_are_parsed() {
        // Captured from `git ls-tree -r -t -z HEAD -- s` (git 2.47.3).
        let out = b"040000 tree 72d30516a24a7e56160f04035af9dd5247e950ee\ts\0\
100644 blob f2ad6c76f0115a6ba5b00456a849810e7ec0af20\ts/c\0\
120000 blob eda76f7226728b0f13def6ba3452fc35bb8d3961\ts/b/compose.yaml\0";
        let entries = ls_tree(out).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].kind, ObjectKind::Tree);
        assert!(entries.iter().all(|e| e.size.is_none()));
        assert_eq!(entries[2].mode, 0o120000);
        assert_eq!(entries[2].path, "s/b/compose.yaml");
    }

    #[test]
    fn diff_tree_records_are_parsed_including_type_changes() {
        // Captured from `git diff-tree -r -t -z A B -- s` (git 2.47.3): s/c went from a
        // directory to a file, a compose file became a directory.
        let out = b":040000 040000 6c1fe49cf7fd3f6759e58810ef7fad8025fbc6d2 72d30516a24a7e56160f04035af9dd5247e950ee M\0s\0\
:100644 000000 587be6b4c3f93f93c489c0111bba5596147a26cb 0000000000000000000000000000000000000000 D\0s/a/compose.yaml\0\
:000000 040000 0000000000000000000000000000000000000000 2c01b7afe323738ffa774328100f490219f60b8a A\0s/a/compose.yaml\0\
:000000 100644 0000000000000000000000000000000000000000 f2ad6c76f0115a6ba5b00456a849810e7ec0af20 A\0s/c\0\
:040000 000000 d0077fe968722bca1b2f64e8188960c326667a31 0000000000000000000000000000000000000000 D\0s/c\0\
:100644 120000 587be6b4c3f93f93c489c0111bba5596147a26cb eda76f7226728b0f13def6ba3452fc35bb8d3961 T\0s/b c/compose.yaml\0";
        let entries = diff_tree(out).unwrap();
        assert_eq!(entries.len(), 6);
        assert_eq!(
            (entries[0].old_mode, entries[0].new_mode),
            (0o40000, 0o40000)
        );
        assert_eq!(
            entries[0].new_oid,
            "72d30516a24a7e56160f04035af9dd5247e950ee"
        );
        assert_eq!(entries[1].new_mode, 0);
        assert_eq!(entries[2].new_mode, 0o40000);
        assert_eq!(entries[5].path, "s/b c/compose.yaml");
        assert_eq!(entries[5].new_mode, 0o120000);
        assert!(diff_tree(b"").unwrap().is_empty());
    }

    #[test]
    fn broken_diff_tree_output_is_an_error() {
        let oid = "587be6b4c3f93f93c489c0111bba5596147a26cb";
        let zero = "0000000000000000000000000000000000000000";
        for bad in [
            format!(":100644 100644 {oid} {oid} M\0"),
            format!("100644 100644 {oid} {oid} M\0p\0"),
            format!(":100644 100644 {oid} short M\0p\0"),
            format!(":100644 000000 {oid} {zero} A\0p\0"),
            format!(":100644 100644 {oid} {oid} R100\0p\0q\0"),
            format!(":10x644 100644 {oid} {oid} M\0p\0"),
        ] {
            assert!(diff_tree(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let mut lossy = format!(":000000 100644 {zero} {oid} A\0").into_bytes();
        lossy.extend_from_slice(&[b'p', 0xff, 0]);
        assert!(diff_tree(&lossy).unwrap()[0].path_lossy);
    }

    #[test]
    fn ls_tree_keeps_non_utf8_paths_lossily_and_rejects_garbage() {
        let mut out = b"040000 tree 6e295440ba7e39b9f0c50ac188462866015c990a       -\tbad".to_vec();
        out.extend_from_slice(&[0xff, 0xfe, 0]);
        let entries = ls_tree(&out).unwrap();
        assert!(entries[0].path_lossy);
        assert!(ls_tree(b"no tab here\0").is_err());
        assert!(ls_tree(b"040000 tree short -\tx\0").is_err());
        assert!(ls_tree(b"040000 tree\tx\0").is_err());
        assert!(ls_tree(b"999999 tree 6e295440ba7e39b9f0c50ac188462866015c990a -\tx\0").is_err());
        assert!(
            ls_tree(b"100644 blob 6e295440ba7e39b9f0c50ac188462866015c990a huge\tx\0").is_err()
        );
        assert!(ls_tree(b"100644 tag 6e295440ba7e39b9f0c50ac188462866015c990a 1\tx\0").is_err());
    }

    #[test]
    fn batch_output_is_parsed_including_missing_objects() {
        // Captured from `printf 'refs/dcd/pin^{commit}\nnope\n' | git cat-file --batch`.
        let out = b"8ba7f56884af1a6a51068bcca372711276059be7 commit 119\n\
tree da5cdd729a9a0763ce5a540e8b1995aacb5f9c3e\n\
author a <a@b> 1795881805 +0000\n\
committer a <a@b> 1795881805 +0000\n\
\n\
init\n\
\n\
nope missing\n";
        let objects = batch(out).unwrap();
        assert_eq!(objects.len(), 2);
        let BatchHeader::Found { kind, size, .. } = &objects[0].header else {
            panic!("first object should be found");
        };
        assert_eq!((kind.as_str(), *size), ("commit", 119));
        assert_eq!(commit_message(&objects[0].content), "init");
        assert_eq!(
            objects[1].header,
            BatchHeader::Missing {
                request: "nope".into()
            }
        );
    }

    #[test]
    fn truncated_batch_output_is_an_error() {
        assert!(batch(b"8ba7f56884af1a6a51068bcca372711276059be7 blob 10\nshort\n").is_err());
        assert!(batch(b"8ba7f56884af1a6a51068bcca372711276059be7 blob 5\n").is_err());
        assert!(batch(b"no newline").is_err());
        assert!(batch_header(b"8ba7f56884af1a6a51068bcca372711276059be7 blob x").is_err());
    }

    #[test]
    fn commit_messages_skip_headers_including_signatures() {
        let commit = b"tree abc\nparent def\nauthor A <a@b> 1 +0000\ncommitter A <a@b> 1 +0000\n\
gpgsig -----BEGIN PGP SIGNATURE-----\n \n line\n -----END PGP SIGNATURE-----\n\n\
Fix the thing\n\nLonger body.\n";
        assert_eq!(commit_message(commit), "Fix the thing\n\nLonger body.");
        assert_eq!(commit_message(b"tree abc\n"), "");
    }
}
