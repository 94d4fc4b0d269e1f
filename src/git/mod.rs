//! The shell-out Git reader: drives the host `git` binary (SPEC §3).
//!
//! One place ([`GitReader::git`]) builds every git command: explicit `--git-dir`, a cleared
//! environment with no user or system config, `GIT_TERMINAL_PROMPT=0`, `GIT_ALLOW_PROTOCOL`
//! limited to what the URL needs, `--end-of-options` before configured values, literal
//! pathspecs, and credentials only through the environment (`GIT_CONFIG_*` for an HTTPS token,
//! with HTTP redirects refused so that it never leaves the configured origin; `GIT_SSH_COMMAND`
//! for keys).
//!
//! What a read holds in memory is bounded by the sizes in `cat-file --batch`'s headers, checked
//! before any content is read: [`MAX_STACK_FILE_BYTES`] per file and [`MAX_STACK_BYTES`] per
//! stack when a stack is materialised, the same per-file cap for commits, and
//! [`MAX_COMPOSE_FILE_BYTES`] for compose files (drained, not held).
//!
//! A refresh costs a constant number of git processes whatever the number of stacks:
//! `ls-remote` (1) decides whether anything changed; if it did, `fetch` (2) of just the configured
//! ref into a persistent bare mirror, one `cat-file --batch` (3) for the commit and the compose
//! blobs that are new since the last snapshot, and one listing (4): `diff-tree` against the
//! previous snapshot's commit, applied to that snapshot's listing, or, without a previous
//! snapshot (or when the diff cannot decide), `ls-tree` of the whole deploy dir.
//!
//! Uses: config, process, desired_state, untrusted. Spawns only through `process`.

pub mod parse;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use crate::config::{ChildEnv, GitConfig, Revision, Transport};
use crate::desired_state::tree::{self, BlobFacts, ObjectKind, ScanError, StackFile, TreeIndex};
use crate::desired_state::{self, MAX_COMPOSE_FILE_BYTES, RefType, Snapshot};
use crate::process::{Command, ProcessError, Session};
use crate::untrusted;
use parse::{BatchHeader, ParseError};

/// Oldest git this reader supports (`--end-of-options` arrived in 2.24, protocol v2 by default
/// in 2.26; 2.30 is the oldest still shipped by a supported Debian/Ubuntu release).
pub const MIN_GIT_VERSION: (u32, u32) = (2, 30);

/// The largest file of a stack read into memory to be materialised. Files are held whole
/// until they are written, so the cap bounds what one malicious or mistaken blob can cost;
/// 16 MiB is far above any compose file, config file, script or certificate, and large assets
/// belong in images or volumes, not in a deploy repository.
pub const MAX_STACK_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The most a stack's files may add up to in memory when it is materialised. One sync holds
/// one stack's files at a time, so this is what a sync may cost at worst.
pub const MAX_STACK_BYTES: u64 = 64 * 1024 * 1024;

/// Where each fetch puts the configured ref inside the mirror.
const TARGET_REF: &str = "refs/docker-cd/target";

/// Everything that can go wrong reading the repository.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git {found} is too old; docker-cd needs git {}.{} or newer", MIN_GIT_VERSION.0, MIN_GIT_VERSION.1)]
    TooOld { found: String },
    #[error("cannot list refs of {url}")]
    LsRemote {
        url: String,
        #[source]
        source: ProcessError,
    },
    #[error(
        "{url} answered git with a redirect (HTTP {status}); with a Git token configured, \
         redirects are refused so that the token cannot travel to another host: set \
         GIT_REPO_URL to the repository's final URL"
    )]
    Redirected {
        url: String,
        status: u16,
        #[source]
        source: ProcessError,
    },
    #[error("{what} does not exist on {url}; the last good desired state is kept")]
    RefNotFound { what: String, url: String },
    #[error("cannot fetch {what} from {url}")]
    Fetch {
        what: String,
        url: String,
        #[source]
        source: ProcessError,
    },
    #[error("cannot read the local mirror")]
    Read(#[source] ProcessError),
    #[error("{path} is {size} bytes, over the limit of {} MiB for one file of a stack", MAX_STACK_FILE_BYTES >> 20)]
    StackFileTooLarge { path: String, size: u64 },
    #[error("the files of the stack add up to more than the limit of {} MiB ({total} bytes with {path})", MAX_STACK_BYTES >> 20)]
    StackTooLarge { path: String, total: u64 },
    #[error("{what} is {size} bytes, over the limit of {} MiB for a commit", MAX_STACK_FILE_BYTES >> 20)]
    CommitTooLarge { what: String, size: u64 },
    #[error("object {0} is missing from the local mirror")]
    MissingObject(String),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error("cannot prepare the mirror at {path}")]
    Mirror {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot run git")]
    Version(#[source] ProcessError),
}

impl GitError {
    /// Does this look like a damaged mirror (killed mid-fetch, stale locks, lost objects) that a
    /// rebuild would cure, rather than a remote or configuration problem?
    fn is_mirror_damage(&self) -> bool {
        let stderr = match self {
            Self::Fetch { source, .. } | Self::Read(source) => source.stderr(),
            Self::MissingObject(_) => return true,
            _ => return false,
        };
        const SIGNS: [&str; 12] = [
            "not a git repository",
            "cannot lock ref",
            ".lock': File exists",
            "unable to create",
            "bad object",
            "corrupt",
            "missing object",
            "is empty",
            "did not send all necessary objects",
            "index-pack failed",
            "unable to read",
            "packfile",
        ];
        SIGNS.iter().any(|sign| stderr.contains(sign))
    }
}

/// The state of the configured ref on the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RemoteRef {
    /// Full ref name to fetch (or the commit id for a pinned commit).
    name: String,
    ref_type: RefType,
    /// The ref's value (a tag object id for annotated tags).
    oid: String,
    warnings: Vec<String>,
}

/// Reads desired state from one repository through a persistent bare mirror.
#[derive(Debug)]
pub struct GitReader {
    config: GitConfig,
    mirror: PathBuf,
    env: Vec<(OsString, OsString)>,
    stats: Counters,
}

impl GitReader {
    /// Checks the git version and prepares the mirror (created on first use, stale lock files
    /// of a killed run removed, rebuilt if it is not a repository any more).
    pub async fn open(
        config: &GitConfig,
        data_dir: &Path,
        child_env: &ChildEnv,
    ) -> Result<Self, GitError> {
        let reader = Self {
            config: config.clone(),
            mirror: data_dir.join("mirror.git"),
            env: git_env(config, data_dir, child_env),
            stats: Counters::default(),
        };
        let out = Command::new(&config.bin)
            .arg("--version")
            .envs(reader.env.iter().map(|(k, v)| (k, v)))
            .timeout(config.timeout)
            .run()
            .await
            .map_err(GitError::Version)?;
        let found = parse::version(&out.stdout)?;
        if found < MIN_GIT_VERSION {
            return Err(GitError::TooOld {
                found: format!("{}.{}", found.0, found.1),
            });
        }
        if let Some(known_hosts) = reader.learned_known_hosts(data_dir) {
            if let Some(parent) = known_hosts.parent() {
                create_dir(parent)?;
            }
        }
        reader.prepare_mirror().await?;
        Ok(reader)
    }

    /// Where trust-on-first-use host keys are recorded.
    fn learned_known_hosts(&self, data_dir: &Path) -> Option<PathBuf> {
        self.config
            .ssh
            .accept_new_host_keys
            .then(|| data_dir.join("ssh").join("known_hosts"))
    }

    /// A git command with the hermetic environment, the mirror and the timeout set.
    fn git(&self) -> Command {
        Command::new(&self.config.bin)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg(format!("--git-dir={}", self.mirror.display()))
            // Auto-gc in the foreground: a detached gc would outlive the fetch and our timeout.
            .args([
                "-c",
                "gc.autoDetach=false",
                "-c",
                "maintenance.autoDetach=false",
            ])
            .timeout(self.config.timeout)
    }

    async fn prepare_mirror(&self) -> Result<(), GitError> {
        let healthy = self.mirror.join("HEAD").is_file() && self.mirror.join("objects").is_dir();
        if self.mirror.exists() && !healthy {
            tracing::warn!(mirror = %self.mirror.display(), "mirror is not a git repository; rebuilding it");
            self.remove_mirror()?;
        }
        if !self.mirror.exists() {
            if let Some(parent) = self.mirror.parent() {
                create_dir(parent)?;
            }
            Command::new(&self.config.bin)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .args(["init", "--bare", "--quiet", "--"])
                .arg(&self.mirror)
                .timeout(self.config.timeout)
                .run()
                .await
                .map_err(GitError::Read)?;
        }
        // Only this process uses the mirror, and no git child runs yet: any lock file is a
        // leftover of a run that was killed.
        remove_lock_files(&self.mirror).map_err(|source| GitError::Mirror {
            path: self.mirror.clone(),
            source,
        })?;
        Ok(())
    }

    fn remove_mirror(&self) -> Result<(), GitError> {
        std::fs::remove_dir_all(&self.mirror).map_err(|source| GitError::Mirror {
            path: self.mirror.clone(),
            source,
        })
    }

    /// Reads the desired state at the tip of the configured revision. `Ok(None)` means the
    /// remote still points where `previous` was read from: nothing was fetched or read.
    #[tracing::instrument(name = "git_read", skip_all, fields(revision = %self.config.revision))]
    pub async fn read(&self, previous: Option<&Snapshot>) -> Result<Option<Snapshot>, GitError> {
        self.read_with(previous, Listing::Incremental).await
    }

    /// [`GitReader::read`] without the incremental listing: the whole deploy dir is listed
    /// even when a diff against `previous` would do (compose blobs known from `previous` are
    /// still not read again). What a refresh costs when the diff cannot be used; for
    /// benchmarks and tests.
    pub async fn read_full_listing(
        &self,
        previous: Option<&Snapshot>,
    ) -> Result<Option<Snapshot>, GitError> {
        self.read_with(previous, Listing::Full).await
    }

    async fn read_with(
        &self,
        previous: Option<&Snapshot>,
        listing: Listing,
    ) -> Result<Option<Snapshot>, GitError> {
        let remote = self.resolve_remote().await?;
        if let Some(prev) = previous {
            if prev.git_ref == remote.name && prev.remote_oid == remote.oid {
                return Ok(None);
            }
        }
        match self.fetch_and_read(&remote, previous, listing).await {
            Err(e) if e.is_mirror_damage() => {
                tracing::warn!(error = %crate::untrusted::Untrusted::bounded(&crate::error_chain(&e), 8192), "the local mirror looks damaged; rebuilding it and fetching again");
                self.remove_mirror()?;
                self.prepare_mirror().await?;
                self.fetch_and_read(&remote, previous, listing)
                    .await
                    .map(Some)
            }
            other => other.map(Some),
        }
    }

    /// Finds what the configured revision is on the remote: one `ls-remote`, or nothing for a
    /// pinned commit.
    async fn resolve_remote(&self) -> Result<RemoteRef, GitError> {
        let description = match &self.config.revision {
            Revision::Commit(id) => {
                return Ok(RemoteRef {
                    name: id.clone(),
                    ref_type: RefType::Commit,
                    oid: id.clone(),
                    warnings: Vec::new(),
                });
            }
            Revision::Branch(n) => format!("branch {n:?}"),
            Revision::Tag(n) => format!("tag {n:?}"),
            Revision::Name(n) => format!("branch or tag {n:?}"),
        };
        let candidates = self.config.revision.candidate_refs();
        let url = self.config.repo.as_str();
        let out = self
            .git()
            .args(["ls-remote", "--end-of-options", url])
            .args(&candidates)
            .run()
            .await
            .map_err(|source| {
                self.redirect_refused(source)
                    .unwrap_or_else(|source| GitError::LsRemote {
                        url: url.to_owned(),
                        source,
                    })
            })?;
        let refs = parse::ls_remote(&out.stdout)?;
        let find = |name: &str| {
            refs.iter()
                .find(|(_, r)| r == name)
                .map(|(oid, _)| oid.clone())
        };
        let mut warnings = Vec::new();
        for (index, name) in candidates.iter().enumerate() {
            if let Some(oid) = find(name) {
                if index == 0 && candidates.len() > 1 && find(&candidates[1]).is_some() {
                    warnings.push(format!(
                        "both a branch and a tag are named {:?}; the branch is deployed (set GIT_REVISION=refs/tags/… for the tag)",
                        self.config.revision.name()
                    ));
                }
                let ref_type = if name.starts_with("refs/heads/") {
                    RefType::Branch
                } else {
                    RefType::Tag
                };
                return Ok(RemoteRef {
                    name: name.clone(),
                    ref_type,
                    oid,
                    warnings,
                });
            }
        }
        Err(GitError::RefNotFound {
            what: description,
            url: url.to_owned(),
        })
    }

    /// A failure of git talking to the remote that is the redirect [`git_env`] makes it refuse
    /// while a token is configured, as [`GitError::Redirected`]; anything else is given back.
    fn redirect_refused(&self, source: ProcessError) -> Result<GitError, ProcessError> {
        match parse::refused_redirect(source.stderr()) {
            Some(status) if self.config.token.is_some() => Ok(GitError::Redirected {
                url: self.config.repo.as_str().to_owned(),
                status,
                source,
            }),
            _ => Err(source),
        }
    }

    async fn fetch_and_read(
        &self,
        remote: &RemoteRef,
        previous: Option<&Snapshot>,
        listing: Listing,
    ) -> Result<Snapshot, GitError> {
        let started = std::time::Instant::now();
        let url = self.config.repo.as_str();
        let refspec = match remote.ref_type {
            // A commit id cannot be force-updated; `+` is harmless and keeps one code path.
            RefType::Commit | RefType::Branch | RefType::Tag => {
                format!("+{}:{TARGET_REF}", remote.name)
            }
        };
        self.git()
            .args([
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                "--end-of-options",
            ])
            .arg(url)
            .arg(&refspec)
            .run()
            .await
            .map_err(|source| {
                self.redirect_refused(source)
                    .unwrap_or_else(|source| GitError::Fetch {
                        what: remote.name.clone(),
                        url: url.to_owned(),
                        source,
                    })
            })?;

        let fetched = started.elapsed();
        // One `cat-file --batch` session for everything read: the commit, whether the previous
        // snapshot's commit is still in the mirror (a rebuilt mirror may lack it), the blobs.
        let mut batch = self
            .git()
            .args(["cat-file", "--batch"])
            .start_session()
            .map_err(GitError::Read)?;
        let base = previous
            .filter(|p| listing == Listing::Incremental && parse::is_object_id(&p.revision));
        let mut request = format!("{TARGET_REF}^{{commit}}\n");
        if let Some(prev) = base {
            request.push_str(&prev.revision);
            request.push('\n');
        }
        let count = 1 + usize::from(base.is_some());
        // The diff runs while the commits are read: it names the fetched ref, which nothing
        // else moves during a refresh, and is thrown away if the previous commit is missing.
        let (answers, diff) = match base {
            Some(prev) => {
                let (answers, diff) = tokio::join!(
                    read_objects(&mut batch, request.as_bytes(), count, ReadLimits::COMMITS),
                    self.diff_index(prev, TARGET_REF)
                );
                (answers?, Some(diff))
            }
            None => (
                read_objects(&mut batch, request.as_bytes(), count, ReadLimits::COMMITS).await?,
                None,
            ),
        };
        let answers = answers.map_err(|over| {
            let (index, size) = match over {
                OverLimit::Object { index, size } => (index, size),
                OverLimit::Total { index, total } => (index, total),
            };
            let what = match base {
                Some(prev) if index == 1 => format!("the previous commit {}", prev.revision),
                _ => format!("the commit of {}", remote.name),
            };
            GitError::CommitTooLarge { what, size }
        })?;
        let mut answers = answers.into_iter();
        let (commit_id, commit) = match answers.next() {
            Some((Some(oid), content)) => (oid, content),
            _ => return Err(GitError::MissingObject(format!("{TARGET_REF}^{{commit}}"))),
        };
        let base = base.filter(|_| matches!(answers.next(), Some((Some(_), _))));

        let index = match base {
            Some(prev) if prev.revision == commit_id => {
                self.stats.record(ReadPath::SameCommit);
                prev.tree.clone()
            }
            Some(_) => match diff.unwrap_or(Ok(None)) {
                Ok(Some(index)) => {
                    self.stats.record(ReadPath::Diff);
                    index
                }
                outcome => {
                    if let Err(e) = outcome {
                        tracing::warn!(error = %crate::untrusted::Untrusted::bounded(&crate::error_chain(&e), 8192), "cannot diff against the previous commit; listing the whole tree");
                    }
                    self.stats.record(ReadPath::FullAfterDiff);
                    self.list_index(&commit_id).await?
                }
            },
            None => {
                self.stats.record(ReadPath::Full);
                self.list_index(&commit_id).await?
            }
        };

        let listed = started.elapsed();
        // Compose blobs the previous snapshot knows (same stack, same blob; or too large) are
        // not read again.
        let mut index = index;
        let mut seen = HashSet::new();
        let mut earlier = tree::PreviousStacks::new(previous);
        let wanted: Vec<String> = index
            .stacks
            .iter()
            .filter_map(|(name, stack)| {
                let oid = stack.compose_blob()?;
                let known = tree::known_facts_of(previous, earlier.get(name), oid).is_some();
                (!known && seen.insert(oid)).then(|| oid.to_owned())
            })
            .collect();
        let facts = read_compose_blobs(&mut batch, &wanted).await?;
        let blobs: HashMap<&str, BlobFacts> =
            wanted.iter().map(String::as_str).zip(facts).collect();
        batch.finish().await.map_err(GitError::Read)?;
        let read = started.elapsed();
        let mut stacks = tree::assemble(&mut index, &blobs, previous);
        desired_state::assign_project_names(&mut stacks);
        tracing::debug!(
            blobs_read = wanted.len(),
            fetch_ms = fetched.as_secs_f64() * 1e3,
            list_ms = (listed - fetched).as_secs_f64() * 1e3,
            blobs_ms = (read - listed).as_secs_f64() * 1e3,
            assemble_ms = (started.elapsed() - read).as_secs_f64() * 1e3,
            "read"
        );
        let mut warnings = remote.warnings.clone();
        warnings.extend(index.warnings.iter().cloned());
        Ok(Snapshot {
            revision: commit_id,
            git_ref: remote.name.clone(),
            ref_type: remote.ref_type,
            remote_oid: remote.oid.clone(),
            commit_message: parse::commit_message(&commit),
            stacks,
            warnings,
            tree: index,
        })
    }

    /// The deploy dir as a pathspec after `--`, or nothing for the repository root.
    fn pathspec(&self, command: Command) -> Command {
        if self.config.deploy_dir.is_root() {
            command
        } else {
            command.arg("--").arg(self.config.deploy_dir.as_str())
        }
    }

    /// The whole listing of the deploy dir at `commit`: one `ls-tree`. (Without `-l`: sizes
    /// cost a quarter of its time and come from `cat-file`'s header instead.)
    async fn list_index(&self, commit: &str) -> Result<TreeIndex, GitError> {
        let listing = self
            .git()
            .args(["ls-tree", "-r", "-t", "-z", "--end-of-options", commit]);
        let out = self.pathspec(listing).run().await.map_err(GitError::Read)?;
        let entries = parse::ls_tree(&out.stdout)?;
        Ok(tree::scan(&entries, self.config.deploy_dir.as_str())?)
    }

    /// The index at `commit` from the previous snapshot's and one `diff-tree` between the two
    /// commits; `Ok(None)` when the diff cannot decide.
    async fn diff_index(
        &self,
        previous: &Snapshot,
        commit: &str,
    ) -> Result<Option<TreeIndex>, GitError> {
        let diff = self.git().args([
            "diff-tree",
            "-r",
            "-t",
            "-z",
            "--no-renames",
            "--end-of-options",
            &previous.revision,
            commit,
        ]);
        let out = self.pathspec(diff).run().await.map_err(GitError::Read)?;
        let changes = parse::diff_tree(&out.stdout)?;
        Ok(tree::apply_diff(
            &previous.tree,
            &changes,
            self.config.deploy_dir.as_str(),
        ))
    }

    /// How reads went so far (for benchmarks, tests and metrics).
    pub fn stats(&self) -> ReadStats {
        self.stats.snapshot()
    }

    /// The directory the mirror lives in (`DATA_DIR`), so that errors shown to clients can
    /// name paths under it relatively.
    pub fn data_dir(&self) -> Option<&Path> {
        self.mirror.parent()
    }

    /// Every file of one stack directory at `commit`: one `ls-tree` and one `cat-file --batch`.
    /// Submodules inside a stack are skipped (they have no content in this repository).
    pub async fn read_stack_files(
        &self,
        commit: &str,
        stack_path: &str,
    ) -> Result<Vec<StackFile>, GitError> {
        let dir = if self.config.deploy_dir.is_root() {
            stack_path.to_owned()
        } else {
            format!("{}/{stack_path}", self.config.deploy_dir.as_str())
        };
        let out = self
            .git()
            .args(["ls-tree", "-r", "-l", "-z", "--end-of-options"])
            .arg(format!("{commit}:{dir}"))
            .run()
            .await
            .map_err(GitError::Read)?;
        let entries: Vec<_> = parse::ls_tree(&out.stdout)?
            .into_iter()
            .filter(|e| e.kind == ObjectKind::Blob)
            .collect();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = self
            .git()
            .args(["cat-file", "--batch"])
            .start_session()
            .map_err(GitError::Read)?;
        let mut requests = String::new();
        for e in &entries {
            requests.push_str(&e.oid);
            requests.push('\n');
        }
        let contents = read_objects(
            &mut batch,
            requests.as_bytes(),
            entries.len(),
            ReadLimits::STACK,
        )
        .await?;
        let contents = match contents {
            Ok(contents) => contents,
            // The session was killed; the path comes from this repository: shown escaped.
            Err(OverLimit::Object { index, size }) => {
                return Err(GitError::StackFileTooLarge {
                    path: untrusted::sanitize(&entries[index].path, untrusted::DEFAULT_MAX_CHARS),
                    size,
                });
            }
            Err(OverLimit::Total { index, total }) => {
                return Err(GitError::StackTooLarge {
                    path: untrusted::sanitize(&entries[index].path, untrusted::DEFAULT_MAX_CHARS),
                    total,
                });
            }
        };
        batch.finish().await.map_err(GitError::Read)?;
        entries
            .into_iter()
            .zip(contents)
            .map(|(entry, (oid, content))| match oid {
                Some(_) => Ok(StackFile {
                    path: entry.path,
                    mode: entry.mode,
                    content,
                }),
                None => Err(GitError::MissingObject(entry.oid)),
            })
            .collect()
    }
}

/// How much one `cat-file --batch` exchange may hold in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReadLimits {
    /// The largest object read.
    object: u64,
    /// The most all objects read may add up to.
    total: u64,
}

impl ReadLimits {
    /// The files of one stack, to be materialised.
    const STACK: Self = Self {
        object: MAX_STACK_FILE_BYTES,
        total: MAX_STACK_BYTES,
    };
    /// Commits, each checked alone: a few hundred bytes in practice; one of megabytes comes
    /// from a malicious repository.
    const COMMITS: Self = Self {
        object: MAX_STACK_FILE_BYTES,
        total: u64::MAX,
    };
}

/// Why [`read_objects`] stopped before reading the object at `index`: alone, or with the
/// objects before it, it is over its [`ReadLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OverLimit {
    Object { index: usize, size: u64 },
    Total { index: usize, total: u64 },
}

/// Sends `requests` to a `cat-file --batch` session and reads `count` answers: `(Some(oid),
/// content)` for each object found, `(None, empty)` for each missing one.
///
/// The size in each answer's header is checked against `limits` before any of the content is
/// read; an object over them is never held, the session is killed (the rest of its output is
/// not worth draining) and the outcome is `Ok(Err(_))`.
async fn read_objects(
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
                line.clear();
                if out.read_until(b'\n', &mut line).await? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "cat-file ended early",
                    ));
                }
                match parse::batch_header(&line).map_err(io::Error::other)? {
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
/// is hashed as it streams by, never held whole; one larger than [`MAX_COMPOSE_FILE_BYTES`]
/// (known from the header) is skipped unhashed. A missing blob is an error.
async fn read_compose_blobs(
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
                line.clear();
                if out.read_until(b'\n', &mut line).await? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "cat-file ended early",
                    ));
                }
                match parse::batch_header(&line).map_err(io::Error::other)? {
                    BatchHeader::Missing { request } => answers.push(Err(request)),
                    BatchHeader::Found { size, .. } => {
                        let too_large = size as u64 > MAX_COMPOSE_FILE_BYTES;
                        let mut hasher = Sha256::new();
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
                            let content = take.min(left - 1);
                            if !too_large {
                                hasher.update(&chunk[..content]);
                            }
                            out.consume(take);
                            left -= take;
                        }
                        answers.push(Ok(if too_large {
                            BlobFacts::TooLarge(size as u64)
                        } else {
                            BlobFacts::Hash(hex::encode(hasher.finalize()))
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

/// Whether a read may list the stacks from a diff against the previous snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listing {
    Incremental,
    Full,
}

/// Which way a read built its stack listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadPath {
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
struct Counters {
    full: AtomicU64,
    incremental: AtomicU64,
    fallbacks: AtomicU64,
    same_commit: AtomicU64,
}

impl Counters {
    fn record(&self, path: ReadPath) {
        let counter = match path {
            ReadPath::Full => &self.full,
            ReadPath::Diff => &self.incremental,
            ReadPath::FullAfterDiff => &self.fallbacks,
            ReadPath::SameCommit => &self.same_commit,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ReadStats {
        ReadStats {
            full: self.full.load(Ordering::Relaxed),
            incremental: self.incremental.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            same_commit: self.same_commit.load(Ordering::Relaxed),
        }
    }
}

/// The environment of every git child: the scrubbed base plus git's own switches. Credentials
/// go here and nowhere else.
fn git_env(config: &GitConfig, data_dir: &Path, child_env: &ChildEnv) -> Vec<(OsString, OsString)> {
    let mut env = child_env.vars.clone();
    let mut set = |k: &str, v: &str| env.push((k.into(), v.into()));
    set("HOME", &data_dir.display().to_string());
    set("LC_ALL", "C");
    set("LANG", "C");
    set("GIT_TERMINAL_PROMPT", "0");
    set("GCM_INTERACTIVE", "never");
    set("GIT_CONFIG_NOSYSTEM", "1");
    set("GIT_CONFIG_GLOBAL", "/dev/null");
    set("GIT_ALLOW_PROTOCOL", config.repo.transport().git_protocol());
    set("GIT_OPTIONAL_LOCKS", "0");
    // The deploy dir is given to `ls-tree` and `diff-tree` after `--`: as a literal path, never
    // a pattern (`st*` would also match `stx`) or pathspec magic (`:(top)…`, `:!…`).
    set("GIT_LITERAL_PATHSPECS", "1");
    match config.repo.transport() {
        Transport::Https | Transport::Http => {
            if let Some(token) = &config.token {
                // Basic auth works for GitHub (`x-access-token`), GitLab and Gitea tokens.
                let user = config.repo.username().unwrap_or("x-access-token");
                let basic = base64::engine::general_purpose::STANDARD
                    .encode(format!("{user}:{}", token.expose()));
                set("GIT_CONFIG_COUNT", "2");
                set(
                    "GIT_CONFIG_KEY_0",
                    &format!("http.{}.extraHeader", config.repo.as_str()),
                );
                set(
                    "GIT_CONFIG_VALUE_0",
                    &format!("Authorization: Basic {basic}"),
                );
                // Scoping the header to the URL is not enough: git matches `http.<url>.*`
                // against the configured URL once, follows a redirect of its first request
                // (`initial`, the default) and sends the header with every later request to
                // wherever it was redirected. `false` makes any redirect an error, so no
                // request but those to the configured origin is ever made.
                set("GIT_CONFIG_KEY_1", "http.followRedirects");
                set("GIT_CONFIG_VALUE_1", "false");
            }
        }
        Transport::Ssh => {
            set("GIT_SSH_VARIANT", "ssh");
            set("GIT_SSH_COMMAND", &ssh_command(config, data_dir));
        }
        Transport::File => {}
    }
    env
}

/// The ssh command line for `GIT_SSH_COMMAND` (run by git through a shell, hence the quoting):
/// no user config, batch mode (never a prompt), pinned host keys, only the configured key.
fn ssh_command(config: &GitConfig, data_dir: &Path) -> String {
    let ssh = &config.ssh;
    let mut known_hosts = Vec::new();
    if ssh.accept_new_host_keys {
        known_hosts.push(data_dir.join("ssh").join("known_hosts"));
    }
    if let Some(pinned) = &ssh.known_hosts_file {
        known_hosts.push(pinned.clone());
    }
    let known_hosts = known_hosts
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = vec![
        "ssh".to_owned(),
        "-F".into(),
        "/dev/null".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        format!(
            "StrictHostKeyChecking={}",
            if ssh.accept_new_host_keys {
                "accept-new"
            } else {
                "yes"
            }
        ),
        "-o".into(),
        format!("UserKnownHostsFile={known_hosts}"),
        "-o".into(),
        "GlobalKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "ConnectTimeout=30".into(),
        "-o".into(),
        "ServerAliveInterval=15".into(),
    ];
    if let Some(key) = &ssh.key_file {
        cmd.extend([
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-i".into(),
            key.display().to_string(),
        ]);
    }
    cmd.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn create_dir(path: &Path) -> Result<(), GitError> {
    std::fs::create_dir_all(path).map_err(|source| GitError::Mirror {
        path: path.to_owned(),
        source,
    })
}

/// Removes `*.lock` files left in the mirror's top level and under `refs/`.
fn remove_lock_files(mirror: &Path) -> io::Result<()> {
    fn walk(dir: &Path, recurse: bool) -> io::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                if recurse {
                    walk(&path, true)?;
                }
            } else if path.extension().is_some_and(|e| e == "lock") {
                tracing::warn!(file = %path.display(), "removing a stale lock file from the mirror");
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }
    walk(mirror, false)?;
    walk(&mirror.join("refs"), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DeployDir, RepoUrl, Secret, SshSettings};
    use std::time::Duration;

    fn config(url: &str) -> GitConfig {
        GitConfig {
            bin: "git".into(),
            repo: RepoUrl::parse(url).unwrap(),
            revision: Revision::parse("main").unwrap(),
            deploy_dir: DeployDir::default(),
            token: None,
            ssh: SshSettings::default(),
            timeout: Duration::from_secs(5),
        }
    }

    fn lookup<'a>(env: &'a [(OsString, OsString)], key: &str) -> Option<&'a str> {
        env.iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.to_str())
    }

    #[test]
    fn a_token_goes_into_a_url_scoped_header_in_the_environment() {
        let mut c = config("https://bob:t0ken-value@git.example.com/org/repo.git");
        c.token = c.repo.password().cloned();
        let env = git_env(&c, Path::new("/data"), &ChildEnv::default());
        assert_eq!(
            lookup(&env, "GIT_CONFIG_KEY_0"),
            Some("http.https://git.example.com/org/repo.git.extraHeader")
        );
        let header = lookup(&env, "GIT_CONFIG_VALUE_0").unwrap();
        let encoded = header.strip_prefix("Authorization: Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(decoded, b"bob:t0ken-value");
        assert_eq!(lookup(&env, "GIT_CONFIG_COUNT"), Some("2"));
        assert_eq!(
            lookup(&env, "GIT_CONFIG_KEY_1"),
            Some("http.followRedirects")
        );
        assert_eq!(lookup(&env, "GIT_CONFIG_VALUE_1"), Some("false"));
        assert_eq!(lookup(&env, "GIT_ALLOW_PROTOCOL"), Some("https"));
        assert_eq!(lookup(&env, "GIT_TERMINAL_PROMPT"), Some("0"));
    }

    #[test]
    fn a_percent_encoded_password_reaches_git_decoded() {
        let mut c = config("https://bob:p%40ss%3Aw0rd@git.example.com/org/repo.git");
        c.token = c.repo.password().cloned();
        let env = git_env(&c, Path::new("/data"), &ChildEnv::default());
        let header = lookup(&env, "GIT_CONFIG_VALUE_0").unwrap();
        let encoded = header.strip_prefix("Authorization: Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(decoded, b"bob:p@ss:w0rd");
    }

    #[test]
    fn a_token_without_user_uses_the_github_convention() {
        let mut c = config("https://github.com/org/repo.git");
        c.token = Some(Secret::new("ghp_x"));
        let env = git_env(&c, Path::new("/data"), &ChildEnv::default());
        let header = lookup(&env, "GIT_CONFIG_VALUE_0").unwrap();
        let encoded = header.strip_prefix("Authorization: Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(decoded, b"x-access-token:ghp_x");
    }

    #[test]
    fn ssh_is_batch_mode_with_pinned_keys() {
        let mut c = config("git@github.com:org/repo.git");
        c.ssh = SshSettings {
            key_file: Some("/keys/id ed25519".into()),
            known_hosts_file: Some("/keys/known_hosts".into()),
            accept_new_host_keys: false,
        };
        let cmd = ssh_command(&c, Path::new("/data"));
        assert!(cmd.contains("-o BatchMode=yes"), "{cmd}");
        assert!(cmd.contains("StrictHostKeyChecking=yes"), "{cmd}");
        assert!(
            cmd.contains("UserKnownHostsFile=/keys/known_hosts"),
            "{cmd}"
        );
        assert!(cmd.contains("-i '/keys/id ed25519'"), "{cmd}");
        assert!(cmd.starts_with("ssh -F /dev/null"), "{cmd}");
    }

    #[test]
    fn trust_on_first_use_records_keys_under_the_data_dir() {
        let mut c = config("ssh://git@host/repo.git");
        c.ssh.accept_new_host_keys = true;
        let cmd = ssh_command(&c, Path::new("/data"));
        assert!(cmd.contains("StrictHostKeyChecking=accept-new"), "{cmd}");
        assert!(
            cmd.contains("UserKnownHostsFile=/data/ssh/known_hosts"),
            "{cmd}"
        );
    }

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

        fn run(&self, args: &[&str]) {
            let work = self.dir.path().join("work");
            let cwd = if work.exists() {
                work
            } else {
                self.dir.path().to_owned()
            };
            let out = std::process::Command::new("git")
                .current_dir(cwd)
                .args([
                    "-c",
                    "user.name=Test",
                    "-c",
                    "user.email=test@example.invalid",
                ])
                .args(args)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
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
        let repo = Fixture::new();
        repo.write("web/compose.yaml", "services: {web: {image: x}}\n");
        repo.write("web/small.txt", "fine\n");
        repo.write(
            "web/data/big.bin",
            vec![0u8; MAX_STACK_FILE_BYTES as usize + 1],
        );
        repo.commit_and_push("one");
        let data = tempfile::tempdir().unwrap();
        let reader = repo.reader("", data.path()).await;
        let snapshot = reader.read(None).await.unwrap().unwrap();
        let Err(error) = reader.read_stack_files(&snapshot.revision, "web").await else {
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
        let repo = Fixture::new();
        repo.write("web/compose.yaml", "services: {web: {image: x}}\n");
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
        let data = tempfile::tempdir().unwrap();
        let reader = repo.reader("", data.path()).await;
        let snapshot = reader.read(None).await.unwrap().unwrap();
        let Err(error) = reader.read_stack_files(&snapshot.revision, "web").await else {
            panic!("the files over the cap were read");
        };
        assert!(
            matches!(&error, GitError::StackTooLarge { path, .. } if path == "part4.bin"),
            "{error:?}"
        );
        assert!(error.to_string().contains("64 MiB"), "{error}");

        // Under both caps, every file is read whole.
        let repo = Fixture::new();
        repo.write("web/compose.yaml", "services: {web: {image: x}}\n");
        repo.write("web/part.bin", &file);
        repo.commit_and_push("one");
        let data = tempfile::tempdir().unwrap();
        let reader = repo.reader("", data.path()).await;
        let snapshot = reader.read(None).await.unwrap().unwrap();
        let files = reader
            .read_stack_files(&snapshot.revision, "web")
            .await
            .unwrap();
        let sizes: Vec<_> = files
            .iter()
            .map(|f| (f.path.as_str(), f.content.len()))
            .collect();
        assert_eq!(sizes, [("compose.yaml", 28), ("part.bin", file.len())]);
    }

    #[test]
    fn stale_lock_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mirror = dir.path();
        std::fs::create_dir_all(mirror.join("refs/docker-cd")).unwrap();
        std::fs::write(mirror.join("packed-refs.lock"), "").unwrap();
        std::fs::write(mirror.join("refs/docker-cd/target.lock"), "").unwrap();
        std::fs::write(mirror.join("refs/docker-cd/target"), "x").unwrap();
        remove_lock_files(mirror).unwrap();
        assert!(!mirror.join("packed-refs.lock").exists());
        assert!(!mirror.join("refs/docker-cd/target.lock").exists());
        assert!(mirror.join("refs/docker-cd/target").exists());
    }
}
