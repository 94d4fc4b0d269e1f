//! The shell-out Git reader: drives the host `git` binary (SPEC §3).
//!
//! One place (`GitReader::git`) builds every git command: explicit `--git-dir`, a cleared
//! environment with no user or system config, `GIT_TERMINAL_PROMPT=0`, `GIT_ALLOW_PROTOCOL`
//! limited to what the URL needs, `--end-of-options` before configured values, literal
//! pathspecs, and credentials only through the environment (`GIT_CONFIG_*` for an HTTPS token,
//! with HTTP redirects refused so that it never leaves the configured origin; `GIT_SSH_COMMAND`
//! for keys).
//!
//! What a read holds in memory is bounded by the sizes in `cat-file --batch`'s headers, checked
//! before any content is read: [`MAX_STACK_FILE_BYTES`] per file and [`MAX_STACK_BYTES`] per
//! stack when a stack is materialised, the same per-file cap for commits, and
//! [`MAX_COMPOSE_FILE_BYTES`](crate::desired_state::MAX_COMPOSE_FILE_BYTES) for compose files
//! (drained, not held).
//!
//! A refresh costs a constant number of git processes whatever the number of stacks:
//! `ls-remote` (1) decides whether anything changed; if it did, `fetch` (2) of just the configured
//! ref into a persistent bare mirror, one `cat-file --batch` (3) for the commit and the compose
//! blobs that are new since the last snapshot, and one listing (4): `diff-tree` against the
//! previous snapshot's commit, applied to that snapshot's listing, or, without a previous
//! snapshot (or when the diff cannot decide), `ls-tree` of the whole deploy dir.
//!
//! This file holds the reader and its refresh flow; `env` builds the hermetic environment,
//! `read` the bounded `cat-file --batch` reads and their counters, `mirror` opens and repairs
//! the bare mirror, [`parse`] reads git's output.
//!
//! Uses: config, process, desired_state, untrusted. Spawns only through `process`.

mod at;
mod diff;
mod env;
mod mirror;
pub mod parse;
mod read;

pub use at::{StackAt, is_commit_id};
pub use diff::{Change, FileDiff, MAX_FILE_DIFF_BYTES, TRUNCATED_MARKER};
pub use read::ReadStats;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::{ChildEnv, GitConfig, Revision};
use crate::desired_state::tree::{self, BlobFacts, ObjectKind, ScanError, StackFile, TreeIndex};
use crate::desired_state::{self, RefType, Snapshot};
use crate::process::{Command, ProcessError};
use crate::untrusted;
use env::git_env;
use mirror::create_dir;
use parse::ParseError;
use read::{Counters, Listing, OverLimit, ReadLimits, ReadPath, read_compose_blobs, read_objects};

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
        desired_state::order::check_dependencies(&mut stacks);
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
    /// The path in the repository of the stack `stack_path` (relative to the deploy dir).
    fn repo_path(&self, stack_path: &str) -> String {
        if self.config.deploy_dir.is_root() {
            stack_path.to_owned()
        } else {
            format!("{}/{stack_path}", self.config.deploy_dir.as_str())
        }
    }

    /// Every file of one stack directory at `commit`: one `ls-tree` and one `cat-file --batch`.
    /// Submodules inside a stack are skipped (they have no content in this repository).
    pub async fn read_stack_files(
        &self,
        commit: &str,
        stack_path: &str,
    ) -> Result<Vec<StackFile>, GitError> {
        let dir = self.repo_path(stack_path);
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

/// The configuration the tests of every file here start from.
#[cfg(test)]
fn config(url: &str) -> GitConfig {
    use crate::config::{DeployDir, RepoUrl, SshSettings};
    GitConfig {
        bin: "git".into(),
        repo: RepoUrl::parse(url).unwrap(),
        revision: Revision::parse("main").unwrap(),
        deploy_dir: DeployDir::default(),
        token: None,
        ssh: SshSettings::default(),
        timeout: std::time::Duration::from_secs(5),
    }
}

/// Runs the real `git` for a test fixture in `dir/work` (or `dir` before `work` exists), with
/// no user or system config and fixed dates; its trimmed stdout. For the tests of every file
/// here.
#[cfg(test)]
fn fixture_git(dir: &Path, args: &[&str]) -> String {
    let work = dir.join("work");
    let cwd = if work.exists() { work } else { dir.to_owned() };
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
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The last value of `key` in a child environment, for the tests of every file here.
#[cfg(test)]
fn lookup<'a>(env: &'a [(OsString, OsString)], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.to_str())
}
