//! The file-level diff of one stack directory between two commits of the mirror, for
//! `GET /api/stacks/{path}/diff` (SPEC §10): [`GitReader::diff_stack`], the [`FileDiff`]s it
//! gives, and the pure functions that cut git's patch into them.
//!
//! A diff costs two git processes whatever the number of files, run at once: `diff-tree -r -z`
//! (which paths changed and how, with exact paths) and `diff-tree -r -p` (the patch of all of
//! them, cut here into one text per file). Only when one of them fails is a third run, a
//! `cat-file --batch-check`, to tell a revision the mirror lacks from any other failure.
//!
//! Uses: the reader's one command builder ([`GitReader::git`], so every child is hermetic and
//! spawned through `process`), the `diff-tree` and `cat-file` parsers, desired_state (the diff
//! entry type).

use serde::Serialize;

use super::parse::{self, BatchHeader, ParseError};
use super::{GitError, GitReader};
use crate::desired_state::tree::DiffEntry;

/// The most text one file's diff may hold; a longer one is cut on a line boundary and ends
/// with [`TRUNCATED_MARKER`]'s line.
pub const MAX_FILE_DIFF_BYTES: usize = 64 * 1024;

/// How the line that ends a cut diff starts (git's own `\ No newline at end of file` is the
/// model: a line no patch tool reads as content).
pub const TRUNCATED_MARKER: &str = "\\ docker-cd cut this diff";

/// The empty tree, which git knows without it being stored: the "before" of a stack when
/// nothing is deployed. One id per object format.
const EMPTY_TREE_SHA1: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
const EMPTY_TREE_SHA256: &str = "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321";

/// What happened to a file between the deployed and the desired commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Modified,
    Deleted,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Modified => "modified",
            Self::Deleted => "deleted",
        }
    }
}

/// One changed file of a stack directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileDiff {
    /// Relative to the stack directory, `/`-separated; decoded lossily when it is not UTF-8.
    pub path: String,
    pub change: Change,
    /// git's unified diff of this file (headers included, paths relative to the stack
    /// directory), at most [`MAX_FILE_DIFF_BYTES`]; `None` for a binary file. Decoded lossily
    /// when the content is not UTF-8.
    pub diff: Option<String>,
    /// git found the file binary (on either side).
    pub binary: bool,
    /// The diff was over [`MAX_FILE_DIFF_BYTES`] and was cut.
    pub truncated: bool,
}

impl GitReader {
    /// The files of stack `stack_path` (relative to the deploy dir) that differ between commit
    /// `from` and commit `to`, in git's path order, each with its unified diff (3 lines of
    /// context, no rename detection: a move is a deletion and an addition). `from = None`
    /// (nothing deployed): every file of the stack at `to` is added. A stack missing at `to`
    /// has every file deleted.
    ///
    /// Two `git diff-tree` processes, run at once, whatever the number of files. git's
    /// external diff and textconv drivers are never run (`--no-ext-diff --no-textconv`:
    /// repository config must not be able to run programs), nor are any attributes read.
    ///
    /// Secrets: the diff is read from Git's blobs, so a SOPS-encrypted file (SPEC §12) shows
    /// as the ciphertext committed, never decrypted; decryption happens only when a stack is
    /// materialised, and must never be added here.
    ///
    /// `from` and `to` must be full commit ids. One that is not, or is not a commit in the
    /// mirror, is [`GitError::MissingObject`] naming it: the route answers 404 for it (a
    /// deployed commit the mirror lost, after a force-push and a rebuilt mirror, is the usual
    /// cause for `from`).
    #[tracing::instrument(name = "git_diff", skip(self))]
    pub async fn diff_stack(
        &self,
        from: Option<&str>,
        to: &str,
        stack_path: &str,
    ) -> Result<Vec<FileDiff>, GitError> {
        for id in from.into_iter().chain([to]) {
            if !parse::is_object_id(id) {
                return Err(GitError::MissingObject(id.to_owned()));
            }
        }
        let before = from.unwrap_or(if to.len() == 64 {
            EMPTY_TREE_SHA256
        } else {
            EMPTY_TREE_SHA1
        });
        let dir = self.repo_path(stack_path);
        // `--relative=<dir>/` shows paths from the stack directory (the slash keeps `web` from
        // also matching `webx`); the pathspec after `--` is literal (`GIT_LITERAL_PATHSPECS`).
        let relative = format!("--relative={dir}/");
        let command = |args: &[&str]| {
            self.git()
                .arg("diff-tree")
                .args(args)
                .args(["-r", "--no-renames", "--no-ext-diff", "--no-textconv"])
                .arg(&relative)
                .args(["--end-of-options", before, to, "--"])
                .arg(&dir)
                .run()
        };
        let (listing, patch) =
            tokio::join!(command(&["-z"]), command(&["-p", "-U3", "--no-color"]));
        let (listing, patch) = match (listing, patch) {
            (Ok(listing), Ok(patch)) => (listing, patch),
            (Err(e), _) | (_, Err(e)) => {
                return Err(self
                    .missing_revision(from, to)
                    .await?
                    .unwrap_or(GitError::Read(e)));
            }
        };
        let entries = parse::diff_tree(&listing.stdout)?;
        Ok(file_diffs(&entries, &patch.stdout)?)
    }

    /// Which of `from` and `to` is not a commit in the mirror, if one is: one `cat-file
    /// --batch-check`.
    async fn missing_revision(
        &self,
        from: Option<&str>,
        to: &str,
    ) -> Result<Option<GitError>, GitError> {
        let ids: Vec<&str> = from.into_iter().chain([to]).collect();
        let requests: String = ids.iter().map(|id| format!("{id}^{{commit}}\n")).collect();
        let mut session = self
            .git()
            .args(["cat-file", "--batch-check"])
            .start_session()
            .map_err(GitError::Read)?;
        let count = ids.len();
        let answers = session
            .exchange(requests.as_bytes(), async |out| {
                use tokio::io::AsyncBufReadExt;
                let mut answers = Vec::with_capacity(count);
                let mut line = Vec::new();
                for _ in 0..count {
                    line.clear();
                    out.read_until(b'\n', &mut line).await?;
                    answers.push(parse::batch_header(&line).map_err(std::io::Error::other)?);
                }
                Ok(answers)
            })
            .await
            .map_err(GitError::Read)?;
        session.finish().await.map_err(GitError::Read)?;
        Ok(ids
            .into_iter()
            .zip(answers)
            .find(|(_, answer)| matches!(answer, BatchHeader::Missing { .. }))
            .map(|(id, _)| GitError::MissingObject(id.to_owned())))
    }
}

fn error(message: impl Into<String>) -> ParseError {
    ParseError {
        command: "diff-tree -p",
        message: message.into(),
    }
}

/// Joins `git diff-tree -r -z` records (`entries`, paths relative to the stack directory) with
/// the `git diff-tree -r -p` output of the same two trees (`patch`) into one [`FileDiff`] per
/// entry.
///
/// The patch is a run of sections, one per changed path in the same order as the records,
/// each starting with a line `diff --git a/<path> b/<path>` (the path C-quoted, the whole
/// `"a/<path>"` in double quotes, when it holds control characters, `"`, `\` or non-ASCII
/// bytes). No line inside a section starts so: content lines start with ` `, `+`, `-` or `\`.
/// A path whose type changes between file, symlink and submodule (status `T`) has two
/// sections, the deletion and the creation; their text is joined. A section whose header
/// lines (before the first `@@`) hold `Binary files … differ` is a binary file.
pub fn file_diffs(entries: &[DiffEntry], patch: &[u8]) -> Result<Vec<FileDiff>, ParseError> {
    let sections = sections(patch)?;
    let mut sections = sections.into_iter();
    let mut diffs = Vec::with_capacity(entries.len());
    for entry in entries {
        const TYPE: u32 = 0o170000;
        let retyped = entry.old_mode != 0
            && entry.new_mode != 0
            && entry.old_mode & TYPE != entry.new_mode & TYPE;
        let mut text = Vec::new();
        let mut binary = false;
        for _ in 0..if retyped { 2 } else { 1 } {
            let section = sections
                .next()
                .ok_or_else(|| error(format!("no patch for {:?}", entry.path)))?;
            if !names(section, entry) {
                let header = section.split(|b| *b == b'\n').next().unwrap_or_default();
                return Err(error(format!(
                    "the patch of {:?} starts with {:?}",
                    entry.path,
                    String::from_utf8_lossy(header)
                )));
            }
            binary |= is_binary(section);
            text.extend_from_slice(section);
        }
        let change = match (entry.old_mode, entry.new_mode) {
            (0, _) => Change::Added,
            (_, 0) => Change::Deleted,
            _ => Change::Modified,
        };
        let (diff, truncated) = if binary {
            (None, false)
        } else {
            let (text, truncated) = capped(String::from_utf8_lossy(&text).into_owned());
            (Some(text), truncated)
        };
        diffs.push(FileDiff {
            path: entry.path.clone(),
            change,
            diff,
            binary,
            truncated,
        });
    }
    if sections.next().is_some() {
        return Err(error("more patches than changed paths"));
    }
    Ok(diffs)
}

/// The sections of a patch, each from its `diff --git ` line up to the next one.
fn sections(patch: &[u8]) -> Result<Vec<&[u8]>, ParseError> {
    const HEADER: &[u8] = b"diff --git ";
    let mut starts = Vec::new();
    let mut at = 0;
    while at < patch.len() {
        if patch[at..].starts_with(HEADER) {
            starts.push(at);
        } else if starts.is_empty() {
            return Err(error("output before the first diff header"));
        }
        at = match patch[at..].iter().position(|b| *b == b'\n') {
            Some(eol) => at + eol + 1,
            None => patch.len(),
        };
    }
    let ends = starts.iter().skip(1).copied().chain([patch.len()]);
    Ok(starts
        .iter()
        .zip(ends)
        .map(|(&start, end)| &patch[start..end])
        .collect())
}

/// Does the section's header name the entry's path? Checked exactly when git prints the path
/// as it is; a quoted path is only checked to be quoted (unquoting C escapes of a lossily
/// decoded path could not be compared anyway).
fn names(section: &[u8], entry: &DiffEntry) -> bool {
    let header = section.split(|b| *b == b'\n').next().unwrap_or_default();
    let plain = format!("diff --git a/{0} b/{0}", entry.path);
    header == plain.as_bytes() || header.starts_with(b"diff --git \"")
}

/// git's own verdict: `Binary files a/x and b/x differ` among the header lines.
fn is_binary(section: &[u8]) -> bool {
    section
        .split(|b| *b == b'\n')
        .take_while(|line| !line.starts_with(b"@@"))
        .any(|line| line.starts_with(b"Binary files ") && line.ends_with(b" differ"))
}

/// `text` cut to at most [`MAX_FILE_DIFF_BYTES`] on a line boundary, ending with a line that
/// says it was cut, and whether it was.
pub fn capped(text: String) -> (String, bool) {
    if text.len() <= MAX_FILE_DIFF_BYTES {
        return (text, false);
    }
    let marker = format!(
        "{TRUNCATED_MARKER}: it is {} bytes, over the limit of {} KiB per file\n",
        text.len(),
        MAX_FILE_DIFF_BYTES >> 10
    );
    // One byte kept for the newline a cut inside a line needs.
    let mut limit = MAX_FILE_DIFF_BYTES - marker.len() - 1;
    while !text.is_char_boundary(limit) {
        limit -= 1;
    }
    let mut kept = match text[..limit].rfind('\n') {
        Some(eol) => text[..=eol].to_owned(),
        None => format!("{}\n", &text[..limit]),
    };
    kept.push_str(&marker);
    (kept, true)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn entry(old_mode: u32, new_mode: u32, path: &str) -> DiffEntry {
        DiffEntry {
            old_mode,
            new_mode,
            new_oid: "0".repeat(40),
            path: path.into(),
            path_lossy: false,
        }
    }

    /// Captured from git 2.47.3: `diff-tree -r -p --no-renames --relative=d/web/` of a
    /// modified text file, a modified binary file, an added file, a deleted file whose name
    /// has a space, and a file that became a symlink.
    const PATCH: &str = "\
diff --git a/a b/a
index 7898192..9ad2ebb 100644
--- a/a
+++ b/a
@@ -1 +1,2 @@
 a
+a2
diff --git a/bin b/bin
index bdc955b..8835708 100644
Binary files a/bin and b/bin differ
diff --git a/new b/new
new file mode 100644
index 0000000..8ba3a16
--- /dev/null
+++ b/new
@@ -0,0 +1 @@
+n
diff --git a/sp ace b/sp ace
deleted file mode 100644
index b478595..0000000
--- a/sp ace\t
+++ /dev/null
@@ -1 +0,0 @@
-s
diff --git a/t b/t
deleted file mode 100644
index 6178079..0000000
--- a/t
+++ /dev/null
@@ -1 +0,0 @@
-b
diff --git a/t b/t
new file mode 120000
index 0000000..2e65efe
--- /dev/null
+++ b/t
@@ -0,0 +1 @@
+a
\\ No newline at end of file
";

    fn captured_entries() -> Vec<DiffEntry> {
        vec![
            entry(0o100644, 0o100644, "a"),
            entry(0o100644, 0o100644, "bin"),
            entry(0, 0o100644, "new"),
            entry(0o100644, 0, "sp ace"),
            entry(0o100644, 0o120000, "t"),
        ]
    }

    #[test]
    fn a_captured_patch_is_cut_into_one_diff_per_file() {
        let diffs = file_diffs(&captured_entries(), PATCH.as_bytes()).unwrap();
        let summary: Vec<_> = diffs
            .iter()
            .map(|d| (d.path.as_str(), d.change.as_str(), d.binary))
            .collect();
        assert_eq!(
            summary,
            [
                ("a", "modified", false),
                ("bin", "modified", true),
                ("new", "added", false),
                ("sp ace", "deleted", false),
                ("t", "modified", false),
            ]
        );
        assert_eq!(
            diffs[0].diff.as_deref(),
            Some(
                "diff --git a/a b/a\nindex 7898192..9ad2ebb 100644\n--- a/a\n+++ b/a\n@@ -1 +1,2 @@\n a\n+a2\n"
            )
        );
        assert_eq!(diffs[1].diff, None);
        let retyped = diffs[4].diff.as_deref().unwrap();
        assert!(retyped.starts_with("diff --git a/t b/t\ndeleted file mode 100644\n"));
        assert!(retyped.contains("new file mode 120000\n"));
        assert!(retyped.ends_with("\\ No newline at end of file\n"));
        assert!(diffs.iter().all(|d| !d.truncated));
    }

    #[test]
    fn nothing_changed_is_no_files() {
        assert_eq!(file_diffs(&[], b"").unwrap(), []);
    }

    #[test]
    fn a_patch_that_does_not_match_the_listing_is_refused() {
        // A section too few: the symlink change has only its deletion.
        let short = &PATCH[..PATCH.rfind("diff --git a/t b/t\nnew").unwrap()];
        assert!(file_diffs(&captured_entries(), short.as_bytes()).is_err());
        // A section too many.
        assert!(file_diffs(&captured_entries()[..4], PATCH.as_bytes()).is_err());
        // Another path than the listing says.
        let mut entries = captured_entries();
        entries[0].path = "b".into();
        assert!(file_diffs(&entries, PATCH.as_bytes()).is_err());
        // Text before the first header.
        let noise = format!("warning: x\n{PATCH}");
        assert!(file_diffs(&captured_entries(), noise.as_bytes()).is_err());
    }

    #[test]
    fn a_quoted_path_is_matched_as_quoted() {
        let patch = "diff --git \"a/caf\\303\\251\" \"b/caf\\303\\251\"\nnew file mode 100644\nindex 0000000..8ba3a16\n--- /dev/null\n+++ \"b/caf\\303\\251\"\n@@ -0,0 +1 @@\n+n\n";
        let diffs = file_diffs(&[entry(0, 0o100644, "café")], patch.as_bytes()).unwrap();
        assert_eq!(diffs[0].path, "café");
        assert_eq!(diffs[0].diff.as_deref(), Some(patch));
    }

    #[test]
    fn a_content_line_reading_binary_files_differ_is_text() {
        let patch = "diff --git a/x b/x\nindex 1..2 100644\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+Binary files a and b differ\n";
        let diffs = file_diffs(&[entry(0o100644, 0o100644, "x")], patch.as_bytes()).unwrap();
        assert!(!diffs[0].binary);
    }

    #[test]
    fn a_long_diff_is_cut_on_a_line_boundary_with_a_marker_line() {
        let line = "+0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";
        let text = line.repeat(100 * 1024 / line.len());
        let (cut, truncated) = capped(text.clone());
        assert!(truncated);
        assert!(cut.len() <= MAX_FILE_DIFF_BYTES, "{}", cut.len());
        assert!(cut.len() > MAX_FILE_DIFF_BYTES - 2 * line.len());
        let (kept, marker) = cut.split_at(cut.rfind(TRUNCATED_MARKER).unwrap());
        assert!(text.starts_with(kept) && kept.ends_with('\n'));
        assert!(
            marker.ends_with('\n') && marker.lines().count() == 1,
            "{marker}"
        );
        assert!(marker.contains(&text.len().to_string()), "{marker}");

        // One line longer than the cap, with multi-byte characters: cut inside it, on a
        // character boundary.
        let (cut, truncated) = capped("é".repeat(MAX_FILE_DIFF_BYTES));
        assert!(truncated && cut.len() <= MAX_FILE_DIFF_BYTES);
        assert_eq!(cut.lines().count(), 2);

        let exact = "x".repeat(MAX_FILE_DIFF_BYTES);
        assert_eq!(capped(exact.clone()), (exact, false));
    }

    /// A bare `origin` reached over `file://` and a work tree to commit and push from, with
    /// the real git, no user or system config, and fixed dates.
    pub(in crate::git) struct Repo {
        dir: tempfile::TempDir,
    }

    impl Repo {
        pub(in crate::git) fn new() -> Self {
            let repo = Self {
                dir: tempfile::tempdir().unwrap(),
            };
            repo.git(&[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                "origin.git",
            ]);
            repo.git(&["init", "--quiet", "--initial-branch=main", "work"]);
            repo
        }

        pub(in crate::git) fn git(&self, args: &[&str]) -> String {
            crate::git::fixture_git(self.dir.path(), args)
        }

        pub(in crate::git) fn write(&self, path: &str, content: impl AsRef<[u8]>) -> &Self {
            let full = self.dir.path().join("work").join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, content).unwrap();
            self
        }

        pub(in crate::git) fn remove(&self, path: &str) -> &Self {
            std::fs::remove_file(self.dir.path().join("work").join(path)).unwrap();
            self
        }

        /// Commits everything and pushes it; the commit id.
        pub(in crate::git) fn commit(&self, message: &str) -> String {
            self.git(&["add", "--all"]);
            self.git(&["commit", "--quiet", "--allow-empty", "-m", message]);
            let origin = self.dir.path().join("origin.git");
            self.git(&["push", "--quiet", origin.to_str().unwrap(), "HEAD:main"]);
            self.git(&["rev-parse", "HEAD"])
        }

        /// A reader whose mirror has fetched everything pushed so far.
        pub(in crate::git) async fn reader(
            &self,
            deploy_dir: &str,
            data: &std::path::Path,
        ) -> GitReader {
            let mut c =
                crate::git::config(&format!("file://{}/origin.git", self.dir.path().display()));
            c.deploy_dir = crate::config::DeployDir::parse(deploy_dir).unwrap();
            c.timeout = std::time::Duration::from_secs(60);
            let reader = GitReader::open(&c, data, &crate::config::ChildEnv::default())
                .await
                .unwrap();
            reader.read(None).await.unwrap().unwrap();
            reader
        }
    }

    fn summary(diffs: &[FileDiff]) -> Vec<(&str, &str, bool, bool)> {
        diffs
            .iter()
            .map(|d| (d.path.as_str(), d.change.as_str(), d.binary, d.truncated))
            .collect()
    }

    #[tokio::test]
    async fn added_modified_deleted_and_binary_files_of_the_stack_alone() {
        let repo = Repo::new();
        repo.write(
            "stacks/web/compose.yaml",
            "services:\n  web:\n    image: nginx:1.27\n    environment:\n      MODE: blue\n",
        )
        .write("stacks/web/conf/old.conf", "gone soon\n")
        .write("stacks/web/logo.png", [0x89, b'P', b'N', b'G', 0, 1, 2, 3])
        .write("stacks/webx/compose.yaml", "services: {x: {image: x}}\n")
        .write("README.md", "outside\n");
        let first = repo.commit("one");
        repo.write(
            "stacks/web/compose.yaml",
            "services:\n  web:\n    image: nginx:1.27\n    environment:\n      MODE: green\n",
        )
        .remove("stacks/web/conf/old.conf")
        .write("stacks/web/conf/new.conf", "hello\n")
        .write("stacks/web/data.bin", [0u8, 159, 146, 150, 0, 0])
        .write(
            "stacks/web/big.txt",
            "line of text that is long enough to matter\n".repeat(100 * 1024 / 43),
        )
        .write("stacks/webx/compose.yaml", "services: {x: {image: y}}\n")
        .write("README.md", "outside, changed\n");
        let second = repo.commit("two");
        let data = tempfile::tempdir().unwrap();
        let reader = repo.reader("stacks", data.path()).await;

        let diffs = reader
            .diff_stack(Some(&first), &second, "web")
            .await
            .unwrap();
        assert_eq!(
            summary(&diffs),
            [
                ("big.txt", "added", false, true),
                ("compose.yaml", "modified", false, false),
                ("conf/new.conf", "added", false, false),
                ("conf/old.conf", "deleted", false, false),
                ("data.bin", "added", true, false),
            ]
        );
        let compose = diffs[1].diff.as_deref().unwrap();
        assert!(
            compose.starts_with("diff --git a/compose.yaml b/compose.yaml\n"),
            "{compose}"
        );
        assert!(
            compose.contains("\n-      MODE: blue\n+      MODE: green\n"),
            "{compose}"
        );
        assert!(diffs[3].diff.as_deref().unwrap().contains("-gone soon\n"));
        assert_eq!(diffs[4].diff, None);
        let big = diffs[0].diff.as_deref().unwrap();
        assert!(
            big.len() <= MAX_FILE_DIFF_BYTES && big.len() > 60 * 1024,
            "{}",
            big.len()
        );
        assert!(
            big.lines().last().unwrap().starts_with(TRUNCATED_MARKER),
            "cut diff ends with the marker"
        );
        assert!(
            big.lines()
                .rev()
                .nth(1)
                .unwrap()
                .starts_with("+line of text")
        );

        // The other way round, a binary change reads as modified; nothing outside the stack.
        let back = reader
            .diff_stack(Some(&second), &first, "web")
            .await
            .unwrap();
        assert_eq!(
            summary(&back)
                .iter()
                .map(|(p, c, ..)| (*p, *c))
                .collect::<Vec<_>>(),
            [
                ("big.txt", "deleted"),
                ("compose.yaml", "modified"),
                ("conf/new.conf", "deleted"),
                ("conf/old.conf", "added"),
                ("data.bin", "deleted"),
            ]
        );
        assert_eq!(
            reader
                .diff_stack(Some(&second), &second, "web")
                .await
                .unwrap(),
            []
        );
        // The JSON an API client reads.
        let json = serde_json::to_value(&diffs[4]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"path": "data.bin", "change": "added", "diff": null, "binary": true, "truncated": false})
        );
    }

    #[tokio::test]
    async fn nothing_deployed_adds_every_file_of_the_stack() {
        let repo = Repo::new();
        repo.write("web/compose.yaml", "services: {web: {image: x}}\n")
            .write("web/.env", "A=1\n")
            .write("web/icon.bin", [0u8, 1, 2])
            .write("db/compose.yaml", "services: {db: {image: x}}\n");
        let commit = repo.commit("one");
        let data = tempfile::tempdir().unwrap();
        let reader = repo.reader("", data.path()).await;
        let diffs = reader.diff_stack(None, &commit, "web").await.unwrap();
        assert_eq!(
            summary(&diffs),
            [
                (".env", "added", false, false),
                ("compose.yaml", "added", false, false),
                ("icon.bin", "added", true, false),
            ]
        );
        assert!(
            diffs[0]
                .diff
                .as_deref()
                .unwrap()
                .ends_with("@@ -0,0 +1 @@\n+A=1\n")
        );
        // A stack not at the commit has nothing to add.
        assert_eq!(reader.diff_stack(None, &commit, "nope").await.unwrap(), []);
    }

    #[tokio::test]
    async fn a_revision_the_mirror_lacks_is_a_missing_object() {
        let repo = Repo::new();
        repo.write("web/compose.yaml", "services: {web: {image: x}}\n");
        let commit = repo.commit("one");
        let data = tempfile::tempdir().unwrap();
        let reader = repo.reader("", data.path()).await;
        let unknown = "0123456789abcdef0123456789abcdef01234567";
        for (from, to) in [
            (Some(unknown), commit.as_str()),
            (Some(commit.as_str()), unknown),
            (Some("HEAD"), commit.as_str()),
            (Some("--output=/tmp/x"), commit.as_str()),
        ] {
            let error = reader.diff_stack(from, to, "web").await.unwrap_err();
            let missing = if from == Some(commit.as_str()) {
                to
            } else {
                from.unwrap()
            };
            assert!(
                matches!(&error, GitError::MissingObject(id) if id == missing),
                "{error:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_path_that_is_not_utf8_is_shown_lossily() {
        use std::os::unix::ffi::OsStrExt;
        let repo = Repo::new();
        repo.write("web/compose.yaml", "services: {web: {image: x}}\n");
        let first = repo.commit("one");
        let name = std::ffi::OsStr::from_bytes(b"web/caf\xe9.txt");
        std::fs::write(repo.dir.path().join("work").join(name), "x\n").unwrap();
        let second = repo.commit("two");
        let data = tempfile::tempdir().unwrap();
        let reader = repo.reader("", data.path()).await;
        let diffs = reader
            .diff_stack(Some(&first), &second, "web")
            .await
            .unwrap();
        assert_eq!(
            summary(&diffs),
            [("caf\u{fffd}.txt", "added", false, false)]
        );
        assert!(diffs[0].diff.as_deref().unwrap().contains("+x\n"));
    }

    #[tokio::test]
    async fn a_repository_diff_driver_is_never_run() {
        // Attributes naming an external diff and a textconv driver, and the config defining
        // them in the mirror itself: neither may run.
        let repo = Repo::new();
        repo.write("web/compose.yaml", "services: {web: {image: x}}\n")
            .write("web/.gitattributes", "* diff=evil\n");
        let first = repo.commit("one");
        repo.write("web/compose.yaml", "services: {web: {image: y}}\n");
        let second = repo.commit("two");
        let data = tempfile::tempdir().unwrap();
        let reader = repo.reader("", data.path()).await;
        let proof = data.path().join("ran");
        let mirror = data.path().join("mirror.git");
        for key in ["diff.evil.command", "diff.evil.textconv", "diff.external"] {
            repo.git(&[
                "--git-dir",
                mirror.to_str().unwrap(),
                "config",
                key,
                &format!("touch {}", proof.display()),
            ]);
        }
        std::fs::write(mirror.join("info").join("attributes"), "* diff=evil\n").unwrap();
        let diffs = reader
            .diff_stack(Some(&first), &second, "web")
            .await
            .unwrap();
        assert!(!proof.exists(), "a diff driver ran");
        assert!(
            diffs[0]
                .diff
                .as_deref()
                .unwrap()
                .contains("+services: {web: {image: y}}\n")
        );
    }
}
