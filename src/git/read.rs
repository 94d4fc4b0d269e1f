//! Reading objects through one `cat-file --batch` exchange with the limits checked against each
//! header before any content is read ([`ReadLimits`]), the compose blobs hashed and their
//! settings read (an oversized one drained, never held), and the counters of how each read's listing was built ([`ReadStats`]).
//!
//! Uses: process (the session), desired_state (the tree types), the header parser.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use super::parse::BatchHeader;
use super::{GitError, MAX_STACK_BYTES, MAX_STACK_FILE_BYTES};
use crate::desired_state::MAX_COMPOSE_FILE_BYTES;
use crate::desired_state::settings;
use crate::desired_state::tree::BlobFacts;
use crate::process::Session;

/// The next header line of `cat-file --batch`'s output, read into `line`.
async fn next_header(
    out: &mut (impl tokio::io::AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
) -> io::Result<BatchHeader> {
    line.clear();
    if out.read_until(b'\n', line).await? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "cat-file ended early",
        ));
    }
    super::parse::batch_header(line).map_err(io::Error::other)
}

/// How much one `cat-file --batch` exchange may hold in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReadLimits {
    /// The largest object read.
    object: u64,
    /// The most all objects read may add up to.
    total: u64,
}

impl ReadLimits {
    /// The files of one stack, to be materialised.
    pub(super) const STACK: Self = Self {
        object: MAX_STACK_FILE_BYTES,
        total: MAX_STACK_BYTES,
    };
    /// Commits, each checked alone: a few hundred bytes in practice; one of megabytes comes
    /// from a malicious repository.
    pub(super) const COMMITS: Self = Self {
        object: MAX_STACK_FILE_BYTES,
        total: u64::MAX,
    };
}

/// Why [`read_objects`] stopped before reading the object at `index`: alone, or with the
/// objects before it, it is over its [`ReadLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OverLimit {
    Object { index: usize, size: u64 },
    Total { index: usize, total: u64 },
}

/// Sends `requests` to a `cat-file --batch` session and reads `count` answers: `(Some(oid),
/// content)` for each object found, `(None, empty)` for each missing one.
///
/// The size in each answer's header is checked against `limits` before any of the content is
/// read; an object over them is never held, the session is killed (the rest of its output is
/// not worth draining) and the outcome is `Ok(Err(_))`.
pub(super) async fn read_objects(
    session: &mut Session,
    requests: &[u8],
    count: usize,
    limits: ReadLimits,
) -> Result<Result<Vec<(Option<String>, Vec<u8>)>, OverLimit>, GitError> {
    let mut over = None;
    let outcome = session
        .exchange(requests, async |out| {
            let mut answers = Vec::with_capacity(count);
            let mut line = Vec::new();
            let mut total = 0u64;
            for index in 0..count {
                match next_header(out, &mut line).await? {
                    BatchHeader::Missing { .. } => answers.push((None, Vec::new())),
                    BatchHeader::Found { oid, size, .. } => {
                        let size = size as u64;
                        total = total.saturating_add(size);
                        over = if size > limits.object {
                            Some(OverLimit::Object { index, size })
                        } else if total > limits.total {
                            Some(OverLimit::Total { index, total })
                        } else {
                            None
                        };
                        if over.is_some() {
                            // An error ends the session: `exchange` kills and reaps the child.
                            return Err(io::Error::other("object over the read limit"));
                        }
                        let mut content = vec![0u8; size as usize + 1];
                        out.read_exact(&mut content).await?;
                        content.pop(); // the LF after each object
                        answers.push((Some(oid), content));
                    }
                }
            }
            Ok(answers)
        })
        .await;
    match (outcome, over) {
        (_, Some(over)) => Ok(Err(over)),
        (Ok(answers), None) => Ok(Ok(answers)),
        (Err(e), None) => Err(GitError::Read(e)),
    }
}

/// Reads compose blobs through a `cat-file --batch` session, one answer per id in order. Each
/// is hashed and its settings read (`x-docker-cd:`, parsed only when the file names it); one
/// larger than [`MAX_COMPOSE_FILE_BYTES`] (known from the header) is drained unread, never
/// held. A missing blob is an error.
pub(super) async fn read_compose_blobs(
    session: &mut Session,
    oids: &[String],
) -> Result<Vec<BlobFacts>, GitError> {
    if oids.is_empty() {
        return Ok(Vec::new());
    }
    let mut requests = String::with_capacity(oids.len() * 41);
    for oid in oids {
        requests.push_str(oid);
        requests.push('\n');
    }
    let count = oids.len();
    let answers = session
        .exchange(requests.as_bytes(), async |out| {
            let mut answers = Vec::with_capacity(count);
            let mut line = Vec::new();
            for _ in 0..count {
                match next_header(out, &mut line).await? {
                    BatchHeader::Missing { request } => answers.push(Err(request)),
                    BatchHeader::Found { size, .. } => {
                        let too_large = size as u64 > MAX_COMPOSE_FILE_BYTES;
                        let mut content = Vec::with_capacity(if too_large { 0 } else { size });
                        // The content, then the LF after it.
                        let mut left = size + 1;
                        while left > 0 {
                            let chunk = out.fill_buf().await?;
                            if chunk.is_empty() {
                                return Err(io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    "cat-file ended inside an object",
                                ));
                            }
                            let take = chunk.len().min(left);
                            let own = take.min(left - 1);
                            if !too_large {
                                content.extend_from_slice(&chunk[..own]);
                            }
                            out.consume(take);
                            left -= take;
                        }
                        answers.push(Ok(if too_large {
                            BlobFacts::TooLarge(size as u64)
                        } else {
                            facts_of(&content)
                        }));
                    }
                }
            }
            Ok(answers)
        })
        .await
        .map_err(GitError::Read)?;
    answers
        .into_iter()
        .map(|a| a.map_err(GitError::MissingObject))
        .collect()
}

/// What a compose file's content says: its hash and its settings.
fn facts_of(content: &[u8]) -> BlobFacts {
    let read = settings::read(content);
    let settings = (read != settings::Read::default()).then(|| Arc::new(read));
    BlobFacts::Hash(hex::encode(Sha256::digest(content)), settings)
}

/// Whether a read may list the stacks from a diff against the previous snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listing {
    Incremental,
    Full,
}

/// Which way a read built its stack listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadPath {
    /// `ls-tree` of the whole deploy dir: no usable previous snapshot.
    Full,
    /// `diff-tree` against the previous snapshot's commit, applied to its listing.
    Diff,
    /// The diff could not decide (or failed): `ls-tree` after all.
    FullAfterDiff,
    /// The ref moved but names the same commit (a re-created tag): nothing to list.
    SameCommit,
}

/// Counts of reads by the way their listing was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Whole-tree listings without a previous snapshot to diff against.
    pub full: u64,
    /// Listings built from a `diff-tree` against the previous snapshot.
    pub incremental: u64,
    /// Whole-tree listings after a diff that could not decide.
    pub fallbacks: u64,
    /// Reads of the very commit the previous snapshot was read from.
    pub same_commit: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    full: AtomicU64,
    incremental: AtomicU64,
    fallbacks: AtomicU64,
    same_commit: AtomicU64,
}

impl Counters {
    pub(super) fn record(&self, path: ReadPath) {
        let counter = match path {
            ReadPath::Full => &self.full,
            ReadPath::Diff => &self.incremental,
            ReadPath::FullAfterDiff => &self.fallbacks,
            ReadPath::SameCommit => &self.same_commit,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> ReadStats {
        ReadStats {
            full: self.full.load(Ordering::Relaxed),
            incremental: self.incremental.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            same_commit: self.same_commit.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::ChildEnv;
    use crate::config::DeployDir;
    use crate::git::{GitReader, StackFile};
    use crate::git::{config, lookup};
    use std::time::Duration;

    /// A bare `origin` reached over `file://` and a work tree to commit and push from, with
    /// the real git and no user or system config.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let fixture = Self {
                dir: tempfile::tempdir().unwrap(),
            };
            fixture.run(&[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                "origin.git",
            ]);
            fixture.run(&["init", "--quiet", "--initial-branch=main", "work"]);
            fixture
        }

        /// A fixture whose work tree holds the stack `web` (its compose file, 28 bytes).
        fn with_web_stack() -> Self {
            let fixture = Self::new();
            fixture.write("web/compose.yaml", "services: {web: {image: x}}\n");
            fixture
        }

        fn run(&self, args: &[&str]) {
            crate::git::fixture_git(self.dir.path(), args);
        }

        fn write(&self, path: &str, content: impl AsRef<[u8]>) -> &Self {
            let full = self.dir.path().join("work").join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, content).unwrap();
            self
        }

        fn commit_and_push(&self, message: &str) {
            self.run(&["add", "--all"]);
            self.run(&["commit", "--quiet", "-m", message]);
            let origin = self.dir.path().join("origin.git");
            self.run(&["push", "--quiet", origin.to_str().unwrap(), "HEAD:main"]);
        }

        async fn reader(&self, deploy_dir: &str, data: &Path) -> GitReader {
            let mut c = config(&format!("file://{}/origin.git", self.dir.path().display()));
            c.deploy_dir = DeployDir::parse(deploy_dir).unwrap();
            c.timeout = Duration::from_secs(60);
            GitReader::open(&c, data, &ChildEnv::default())
                .await
                .unwrap()
        }

        /// The files of stack `web` at the commit pushed last, read by a fresh reader.
        async fn read_web_files(&self) -> Result<Vec<StackFile>, GitError> {
            let data = tempfile::tempdir().unwrap();
            let reader = self.reader("", data.path()).await;
            let snapshot = reader.read(None).await.unwrap().unwrap();
            reader.read_stack_files(&snapshot.revision, "web").await
        }
    }

    #[tokio::test]
    async fn settings_are_read_into_the_snapshot_with_their_warnings_errors_and_order() {
        let fixture = Fixture::new();
        fixture
            .write(
                "db/compose.yaml",
                "x-docker-cd:\n  healthTimeout: 3m\n  colour: blue\nservices: {db: {image: x}}\n",
            )
            .write(
                "api/compose.yaml",
                "x-docker-cd: {dependsOn: [db]}\nservices: {api: {image: x}}\n",
            )
            .write(
                "web/compose.yaml",
                "x-docker-cd: {dependsOn: [gone]}\nservices: {web: {image: x}}\n",
            )
            .write(
                "bad/compose.yml",
                "x-docker-cd: {drift: sometimes}\nservices: {bad: {image: x}}\n",
            )
            .write("plain/compose.yaml", "services: {p: {image: x}}\n");
        fixture.commit_and_push("settings");
        let data = tempfile::tempdir().unwrap();
        let reader = fixture.reader("", data.path()).await;
        let snapshot = reader.read(None).await.unwrap().unwrap();
        let db = &snapshot.stacks["db"];
        assert_eq!(db.settings().health_timeout, Some(Duration::from_secs(180)));
        assert_eq!(db.error, None);
        assert_eq!(db.warnings.len(), 1, "{:?}", db.warnings);
        assert!(
            db.warnings[0].starts_with("compose.yaml: x-docker-cd.colour: unknown setting"),
            "{:?}",
            db.warnings
        );
        assert_eq!(snapshot.stacks["api"].settings().depends_on, ["db"]);
        assert_eq!(snapshot.stacks["api"].error, None);
        assert_eq!(
            snapshot.stacks["web"].error.as_deref(),
            Some("x-docker-cd.dependsOn: gone is not a stack of this commit")
        );
        assert_eq!(
            snapshot.stacks["bad"].error.as_deref(),
            Some(
                "compose.yml: x-docker-cd.drift: \"sometimes\" is not one of: revert, flag, ignore"
            )
        );
        assert!(snapshot.stacks["plain"].settings.is_none());
        // A commit that changes another stack keeps the settings (and the warning) of the
        // unchanged ones, and the dependency is checked again: `gone` now exists.
        fixture.write("gone/compose.yaml", "services: {g: {image: x}}\n");
        fixture.commit_and_push("add gone");
        let next = reader.read(Some(&snapshot)).await.unwrap().unwrap();
        assert_eq!(next.stacks["web"].error, None);
        assert!(std::sync::Arc::ptr_eq(
            &next.stacks["db"],
            &snapshot.stacks["db"]
        ));
        assert_eq!(next.stacks["db"].warnings, snapshot.stacks["db"].warnings);
        assert_eq!(next.stacks["bad"].error, snapshot.stacks["bad"].error);
    }

    #[tokio::test]
    async fn a_deploy_dir_named_like_a_glob_is_read_literally() {
        let repo = Fixture::new();
        repo.write("st*/a/compose.yaml", "services: {a: {image: x}}\n");
        repo.write("stx/b/compose.yaml", "services: {b: {image: x}}\n");
        repo.commit_and_push("one");
        let data = tempfile::tempdir().unwrap();
        let reader = repo.reader("st*", data.path()).await;
        let first = reader.read(None).await.unwrap().unwrap();
        assert_eq!(first.stacks.keys().collect::<Vec<_>>(), ["a"]);

        // A change under `stx` alone: as a glob, `st*` would match it and the diff would
        // leave the deploy dir; read literally, the diff is empty.
        repo.write("stx/b/compose.yaml", "services: {b: {image: y}}\n");
        repo.write("stx/c/compose.yaml", "services: {c: {image: y}}\n");
        repo.commit_and_push("two");
        let second = reader.read(Some(&first)).await.unwrap().unwrap();
        assert_eq!(second.stacks.keys().collect::<Vec<_>>(), ["a"]);
        let stats = reader.stats();
        assert_eq!((stats.incremental, stats.fallbacks), (1, 0), "{stats:?}");
        assert_eq!(lookup(&reader.env, "GIT_LITERAL_PATHSPECS"), Some("1"));
    }

    #[tokio::test]
    async fn a_stack_file_over_the_cap_is_refused_naming_the_file_and_the_cap() {
        let repo = Fixture::with_web_stack();
        repo.write("web/small.txt", "fine\n");
        repo.write(
            "web/data/big.bin",
            vec![0u8; MAX_STACK_FILE_BYTES as usize + 1],
        );
        repo.commit_and_push("one");
        let Err(error) = repo.read_web_files().await else {
            panic!("the files over the cap were read");
        };
        assert!(
            matches!(&error, GitError::StackFileTooLarge { path, size, .. }
                if path == "data/big.bin" && *size == MAX_STACK_FILE_BYTES + 1),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains("data/big.bin") && text.contains("16 MiB"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_commit_over_the_cap_is_refused_without_being_read() {
        let repo = Fixture::with_web_stack();
        let message = repo.dir.path().join("message");
        std::fs::write(&message, vec![b'x'; MAX_STACK_FILE_BYTES as usize + 1]).unwrap();
        repo.run(&["add", "--all"]);
        repo.run(&[
            "commit",
            "--quiet",
            "--cleanup=verbatim",
            "-F",
            message.to_str().unwrap(),
        ]);
        let origin = repo.dir.path().join("origin.git");
        repo.run(&["push", "--quiet", origin.to_str().unwrap(), "HEAD:main"]);
        let data = tempfile::tempdir().unwrap();
        let reader = repo.reader("", data.path()).await;
        let Err(error) = reader.read(None).await else {
            panic!("the commit over the cap was read");
        };
        assert!(
            matches!(error, GitError::CommitTooLarge { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("refs/heads/main"), "{error}");
    }

    #[tokio::test]
    async fn stack_files_adding_up_to_more_than_the_stack_cap_are_refused() {
        // Five copies of one blob just under the per-file cap: one object in Git, five in
        // memory if they were read.
        let repo = Fixture::new();
        let file = vec![7u8; (MAX_STACK_BYTES / 5 + 1) as usize];
        assert!(file.len() as u64 <= MAX_STACK_FILE_BYTES);
        repo.write("web/compose.yaml", "services: {web: {image: x}}\n");
        for i in 0..5 {
            repo.write(&format!("web/part{i}.bin"), &file);
        }
        repo.commit_and_push("one");
        let Err(error) = repo.read_web_files().await else {
            panic!("the files over the cap were read");
        };
        assert!(
            matches!(&error, GitError::StackTooLarge { path, .. } if path == "part4.bin"),
            "{error:?}"
        );
        assert!(error.to_string().contains("64 MiB"), "{error}");

        // Under both caps, every file is read whole.
        let repo = Fixture::with_web_stack();
        repo.write("web/part.bin", &file);
        repo.commit_and_push("one");
        let files = repo.read_web_files().await.unwrap();
        let sizes: Vec<_> = files
            .iter()
            .map(|f| (f.path.as_str(), f.content.len()))
            .collect();
        assert_eq!(sizes, [("compose.yaml", 28), ("part.bin", file.len())]);
    }
}
