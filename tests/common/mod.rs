//! Shared test helpers: a real Git repository builder ([`TestRepo`]), the real app on
//! 127.0.0.1:0 ([`TestApp`]) with the prologue and epilogue every test repeats ([`TestApp::run`],
//! [`catch`]), signed webhook deliveries ([`TestApp::delivery`]), log capture, polling on
//! `/api/stacks` ([`wait_for`], [`find`], [`status`]), recording wrappers that stand in for
//! `git`, `docker` or compose ([`wrappers`]), Docker guards ([`docker`]), and a real registry
//! ([`registry`]).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod docker;
pub mod registry;
pub mod wrappers;

#[allow(unused_imports)]
pub use wrappers::{max_concurrent_fetches, recorded_calls, recording_git, write_executable};

use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use docker_cd::app::{self, App};
use docker_cd::config::{Args, ChildEnv, Config};
use docker_cd::http::EdgeLimits;
use futures_util::FutureExt;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tempfile::TempDir;

/// The webhook secret every [`TestApp`] uses unless told otherwise.
pub const SECRET: &str = "It's a Secret to Everybody";

/// A Git repository in a temp dir: a bare `origin` (reached over `file://`) and a work tree to
/// commit and push from. Author, committer and dates are fixed, so commit ids are deterministic.
pub struct TestRepo {
    dir: TempDir,
    clock: Cell<u64>,
}

impl TestRepo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = Self {
            dir,
            clock: Cell::new(1_700_000_000),
        };
        git(
            repo.dir.path(),
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                "origin.git",
            ],
        );
        git(
            repo.dir.path(),
            &["init", "--quiet", "--initial-branch=main", "work"],
        );
        let origin = repo.url();
        repo.git(&["remote", "add", "origin", &origin]);
        repo
    }

    /// `file://` URL of the bare origin.
    pub fn url(&self) -> String {
        format!("file://{}", self.origin().display())
    }

    pub fn origin(&self) -> PathBuf {
        self.dir.path().join("origin.git")
    }

    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Runs git in the work tree and returns its trimmed stdout.
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.work(), args)
    }

    /// Writes a file (creating directories) relative to the work tree.
    pub fn write(&self, path: &str, content: impl AsRef<[u8]>) -> &Self {
        let full = self.work().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
        self
    }

    /// Creates a symbolic link at `path` pointing to `target`.
    pub fn symlink(&self, path: &str, target: &str) -> &Self {
        let full = self.work().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, full).unwrap();
        self
    }

    /// Removes a file or directory from the work tree.
    pub fn remove(&self, path: &str) -> &Self {
        let full = self.work().join(path);
        if full.is_dir() {
            std::fs::remove_dir_all(full).unwrap();
        } else {
            std::fs::remove_file(full).unwrap();
        }
        self
    }

    /// Copies a directory tree (e.g. a fixture) into the work tree at `dest`.
    pub fn copy_dir(&self, source: &Path, dest: &str) -> &Self {
        copy_tree(source, &self.work().join(dest));
        self
    }

    /// Commits everything with a fixed author and the next fixed date; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "--all"]);
        let t = self.clock.get() + 60;
        self.clock.set(t);
        let date = format!("@{t} +0000");
        checked(
            Command::new("git")
                .current_dir(self.work())
                .args(["commit", "--quiet", "--allow-empty", "-m", message])
                .envs(git_env())
                .env("GIT_AUTHOR_DATE", &date)
                .env("GIT_COMMITTER_DATE", &date),
        );
        self.head()
    }

    /// A repository with one pushed commit, `message`, holding the stack `path` of one service
    /// running `image` ([`compose`]); returns it and the commit id.
    pub fn with_stack(path: &str, image: &str, message: &str) -> (Self, String) {
        let repo = Self::new();
        repo.write(&format!("{path}/compose.yaml"), compose(image));
        let commit = repo.commit_and_push(message);
        (repo, commit)
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    /// Pushes the current branch to origin.
    pub fn push(&self) -> &Self {
        self.git(&["push", "--quiet", "origin", "HEAD"]);
        self
    }

    pub fn force_push(&self) -> &Self {
        self.git(&["push", "--quiet", "--force", "origin", "HEAD"]);
        self
    }

    /// Commits and pushes; returns the commit id.
    pub fn commit_and_push(&self, message: &str) -> String {
        let id = self.commit(message);
        self.push();
        id
    }

    /// Deletes a branch on origin.
    pub fn delete_remote_branch(&self, branch: &str) {
        self.git(&["push", "--quiet", "origin", "--delete", branch]);
    }

    /// Moves the work tree back one commit (for a force-push).
    pub fn reset_hard(&self, rev: &str) {
        self.git(&["reset", "--quiet", "--hard", rev]);
    }
}

/// The environment for test git commands: no user or system config, fixed identity.
fn git_env() -> Vec<(&'static str, String)> {
    vec![
        ("GIT_CONFIG_GLOBAL", "/dev/null".into()),
        ("GIT_CONFIG_NOSYSTEM", "1".into()),
        ("GIT_AUTHOR_NAME", "Test Author".into()),
        ("GIT_AUTHOR_EMAIL", "author@example.invalid".into()),
        ("GIT_COMMITTER_NAME", "Test Committer".into()),
        ("GIT_COMMITTER_EMAIL", "committer@example.invalid".into()),
    ]
}

/// Runs git in `dir` with the test environment; asserts it succeeds, returns its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    checked(
        Command::new("git")
            .current_dir(dir)
            .args(args)
            .envs(git_env()),
    )
}

/// Runs `command` to its end; asserts it succeeded (else fails with the command and its
/// stderr) and returns its trimmed stdout.
pub fn checked(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn copy_tree(source: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        let to = dest.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
}

/// `sha256=<hex>` of `body` under `secret`, as GitHub sends it.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A GitHub push payload for `git_ref` with `after`.
pub fn push_payload(git_ref: &str, after: &str) -> Vec<u8> {
    serde_json::json!({
        "ref": git_ref,
        "before": "0000000000000000000000000000000000000000",
        "after": after,
        "created": false,
        "deleted": false,
        "repository": { "full_name": "example/gitops", "clone_url": "https://example.invalid/gitops.git" },
        "head_commit": { "id": after, "message": "change" },
    })
    .to_string()
    .into_bytes()
}

/// Everything the app logs in this test binary (all tests share one subscriber).
pub fn logs() -> String {
    let buffer = log_buffer();
    String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned()
}

fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER
        .get_or_init(|| {
            let buffer = Arc::new(Mutex::new(Vec::new()));
            let writer = CaptureWriter(buffer.clone());
            let _ = tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                        tracing_subscriber::EnvFilter::new("info,docker_cd=debug")
                    }),
                )
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .try_init();
            buffer
        })
        .clone()
}

#[derive(Clone)]
struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        // Also show it when a test fails (cargo captures stderr per test thread poorly for
        // spawned tasks, so print through the test harness's capture).
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Arguments for a test instance: reconciling off, polling off, the test webhook secret, a
/// temp data dir, 127.0.0.1.
pub fn args(repo_url: &str, data_dir: &Path) -> Args {
    let mut args = Args {
        git_repo_url: Some(repo_url.to_owned()),
        git_revision: "main".into(),
        git_deploy_dir: String::new(),
        git_ssh_accept_new_host_keys: "false".into(),
        git_timeout: "30s".into(),
        data_dir: data_dir.to_owned(),
        listen_addr: "127.0.0.1".into(),
        port: "0".into(),
        webhook_secret: Some(SECRET.into()),
        refresh_poll_interval: "off".into(),
        reconcile_enabled: "false".into(),
        reconcile_remove_enabled: "false".into(),
        reconcile_interval: "1m".into(),
        drift_policy: "revert".into(),
        compose_timeout: "2m".into(),
        // The production defaults.
        sync_health_timeout: "2m".into(),
        sync_concurrency: "4".into(),
        sync_windows: String::new(),
        history_limit: "20".into(),
        rollback_on_failure: "false".into(),
        log_format: "text".into(),
        // CI runs the reconcile suite a second time with Debian's compose v1 this way; by
        // default the app picks its compose tool as in production (the plugin first).
        compose_bin: std::env::var_os("DOCKER_CD_TEST_COMPOSE_BIN").map(PathBuf::from),
        ..Args::default()
    };
    args.git_deploy_dir = String::new();
    args
}

/// The child environment tests run the app with: this process's PATH and HOME.
pub fn child_env() -> ChildEnv {
    ChildEnv {
        vars: ["PATH", "HOME"]
            .iter()
            .filter_map(|k| std::env::var_os(k).map(|v| (k.into(), v)))
            .collect(),
    }
}

/// The real app (router, workers) on 127.0.0.1 with an ephemeral port.
pub struct TestApp {
    pub app: Option<App>,
    pub base: String,
    pub data: TempDir,
    pub client: reqwest::Client,
    /// Strings that identify this instance's child processes (data dir, repository).
    markers: Vec<String>,
    /// The secrets of this instance's configuration: never in logs.
    secrets: Vec<String>,
}

impl TestApp {
    /// Starts with [`args`] for `repo_url`, changed by `adjust`.
    pub async fn start(repo_url: &str, adjust: impl FnOnce(&mut Args)) -> Self {
        Self::start_with_limits(repo_url, adjust, EdgeLimits::default()).await
    }

    /// [`TestApp::start`] with other limits for the HTTP edge (short timeouts, low caps).
    pub async fn start_with_limits(
        repo_url: &str,
        adjust: impl FnOnce(&mut Args),
        limits: EdgeLimits,
    ) -> Self {
        log_buffer();
        let data = tempfile::tempdir().unwrap();
        let mut a = args(repo_url, &data.path().join("data"));
        adjust(&mut a);
        let config = Config::validate(a, child_env()).expect("valid test configuration");
        let repo = config.git.repo.as_str().to_owned();
        let mut markers = vec![config.data_dir.display().to_string(), repo.clone()];
        // file:///x/origin.git → /x/origin.git (what git-upload-pack is given). Only for local
        // repositories: the path of a network URL (/repo.git) is not this instance's alone.
        if let Some(path) = repo.strip_prefix("file://") {
            if path.len() > 1 {
                markers.push(path.to_owned());
            }
        }
        let secrets = [
            config.git.token.as_ref(),
            config.http.webhook_secret.as_ref(),
            config.http.api_token.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|s| s.expose().to_owned())
        .collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = app::start_with_limits(config, listener, limits)
            .await
            .expect("app starts");
        let base = format!("http://{}", app.addr);
        Self {
            app: Some(app),
            base,
            data,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            markers,
            secrets,
        }
    }

    /// What the snapshot says: revision and every stack's desired fields. For the invariant
    /// "the snapshot changes only when a new valid commit of the configured ref was read".
    pub async fn snapshot_fingerprint(&self) -> Value {
        let status = self.refresh_status().await;
        let stacks: Vec<Value> = self
            .stacks()
            .await
            .into_iter()
            .map(|s| {
                serde_json::json!([
                    s["path"],
                    s["projectName"],
                    s["composeFile"],
                    s["composeHash"],
                    s["contentHash"],
                    s["error"],
                    s["inGit"]
                ])
            })
            .collect();
        serde_json::json!({ "revision": status["revision"], "stacks": stacks })
    }

    /// Asserts the snapshot is what `before` captured.
    pub async fn assert_snapshot_unchanged(&self, before: &Value) {
        assert_eq!(
            &self.snapshot_fingerprint().await,
            before,
            "the snapshot changed"
        );
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The body of a plain `GET` of `path`, whatever its status.
    pub async fn get_text(&self, path: &str) -> String {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        response.text().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A POST to the webhook path with nothing set: the start of every delivery a test builds
    /// by hand (a missing header, a wrong signature).
    pub fn hook(&self) -> reqwest::RequestBuilder {
        self.client.post(self.url("/api/webhook"))
    }

    /// A push delivery of `content_type` with no signature (nor body) yet: for the cases that
    /// sign it wrongly or not at all.
    pub fn unsigned_push(&self, content_type: &str) -> reqwest::RequestBuilder {
        self.hook()
            .header("x-github-event", "push")
            .header("content-type", content_type)
    }

    /// A delivery as GitHub sends it: `event`, a delivery id, `content_type`, and the
    /// signature of `body` under the test [`SECRET`].
    pub fn delivery(
        &self,
        event: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> reqwest::RequestBuilder {
        let body = body.into();
        self.hook()
            .header("x-github-event", event)
            .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
            .header("content-type", content_type)
            .header("x-hub-signature-256", sign(SECRET, &body))
            .body(body)
    }

    /// Sends a signed push webhook for `git_ref`.
    pub async fn push_webhook(&self, git_ref: &str, after: &str) -> (u16, Value) {
        let response = self
            .delivery("push", "application/json", push_payload(git_ref, after))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn refresh_status(&self) -> Value {
        self.get_json("/api/refresh-status").await.1
    }

    pub async fn stacks(&self) -> Vec<Value> {
        match self.get_json("/api/stacks").await.1 {
            Value::Array(stacks) => stacks,
            other => panic!("expected an array, got {other}"),
        }
    }

    /// Waits until the refresh counter reaches `n` completed refreshes.
    pub async fn wait_refreshes(&self, n: u64) {
        let mut progress = self.app().refresh_progress.clone();
        tokio::time::timeout(
            Duration::from_secs(60),
            progress.wait_for(|p| p.completed >= n),
        )
        .await
        .expect("refresh finished in time")
        .unwrap();
    }

    /// Waits for `n` completed refreshes; asserts the refresh status is `outcome` (`completed`,
    /// `failed`) and returns the whole status.
    pub async fn refreshed(&self, n: u64, outcome: &str) -> Value {
        self.wait_refreshes(n).await;
        let status = self.refresh_status().await;
        assert_eq!(status["refreshStatus"], outcome, "{status}");
        status
    }

    /// Polls `check` on `/api/stacks` until it holds (or fails after `timeout`).
    pub async fn wait_stacks(
        &self,
        timeout: Duration,
        check: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        poll_stacks(self, timeout, Duration::from_millis(100), check, |stacks| {
            format!(
                "condition not reached in {timeout:?}; stacks: {}",
                serde_json::to_string_pretty(stacks).unwrap()
            )
        })
        .await
    }

    /// The epilogue of a test: runs `body` on this app, then stops the app (with the checks of
    /// [`TestApp::stop`]) whether or not `body` panicked, and only then re-raises its panic. So
    /// the app is stopped before a Docker test's [`docker::Cleanup`] runs, and no reconcile still
    /// in flight recreates what the cleanup removed.
    pub async fn run<T>(self, body: impl AsyncFnOnce(&TestApp) -> T) -> T {
        let outcome = catch(body(&self)).await;
        self.finish(outcome).await
    }

    /// Stops the app, then re-raises the panic of `outcome` (from [`catch`]) or returns its value:
    /// [`TestApp::run`] for a test that does something between the body and the stop.
    pub async fn finish<T>(self, outcome: std::thread::Result<T>) -> T {
        self.stop().await;
        outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Stops the app, then checks the invariants every case must keep (TESTPLAN): no child
    /// process of this instance left running or zombie, and no secret of its configuration in
    /// the captured logs.
    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
        {
            // Shared: only a test that makes a leftover on purpose (the harness's own test)
            // holds it exclusively, so no other instance's check sees that leftover.
            let _scan = PROCESS_SCAN.read().await;
            assert_no_leftover_processes(&self.markers).await;
        }
        let logs = logs();
        for secret in self.secrets.iter().filter(|s| s.len() >= 4) {
            assert!(
                !logs.contains(secret.as_str()),
                "a configured secret reached the logs"
            );
        }
    }
}

/// Held shared by every [`TestApp::stop`] check and exclusively by a test that leaves a process
/// or a zombie behind on purpose to show the check failing.
pub static PROCESS_SCAN: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Runs a test body, catching its panic: the value, or the panic to re-raise once everything
/// the test started is stopped (see [`TestApp::finish`]).
pub async fn catch<T>(body: impl Future<Output = T>) -> std::thread::Result<T> {
    AssertUnwindSafe(body).catch_unwind().await
}

/// Waits (up to 5 s, for children still being reaped) until no process on the machine has any
/// of `markers` in its command line, and no child of this test process is a zombie.
///
/// The markers name this instance alone, so any process that has one counts, in whatever scan.
/// A zombie has no command line to tell whose it is, and other tests of this binary run
/// concurrently, their children passing through the zombie state for a moment before they are
/// reaped; so a zombie counts when the same one (pid and start time) is there for the whole
/// 5 s. A different short-lived zombie in each scan is churn, not a leak.
pub async fn assert_no_leftover_processes(markers: &[String]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut zombies_seen_throughout: Option<BTreeMap<String, String>> = None;
    loop {
        let (ours, zombies) = leftover_processes(markers);
        let zombies: BTreeMap<String, String> = match zombies_seen_throughout {
            None => zombies,
            Some(before) => before
                .into_iter()
                .filter(|(key, _)| zombies.contains_key(key))
                .collect(),
        };
        if ours.is_empty() && zombies.is_empty() {
            return;
        }
        // One line, so a truncated CI log still shows it.
        assert!(
            std::time::Instant::now() < deadline,
            "processes left behind after 5 s (markers {markers:?}): {}",
            ours.into_values()
                .chain(zombies.into_values())
                .collect::<Vec<_>>()
                .join(" | ")
        );
        zombies_seen_throughout = Some(zombies);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One scan of `/proc`: the processes with any of `markers` in their command line, and the
/// zombie children of this process, each keyed by pid and start time.
fn leftover_processes(markers: &[String]) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let me = std::process::id().to_string();
    let (mut ours, mut zombies) = (BTreeMap::new(), BTreeMap::new());
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let Some((head, after_name)) = stat.rsplit_once(") ") else {
            continue;
        };
        let name = head.split_once(" (").map(|(_, n)| n).unwrap_or_default();
        // Fields 3 (state), 4 (ppid), 5 (pgrp) and 22 (start time) of proc(5).
        let fields: Vec<&str> = after_name.split(' ').collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or_default();
        let (state, ppid, pgrp, start) = (field(0), field(1), field(2), field(19));
        let key = format!("{pid}@{start}");
        if state == "Z" && ppid == me {
            zombies.insert(key, format!("zombie child {pid} ({name}, group {pgrp})"));
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if markers
            .iter()
            .any(|m| !m.is_empty() && cmdline.contains(m.as_str()))
        {
            ours.insert(
                key,
                format!("{pid} (state {state}, parent {ppid}, group {pgrp}): {cmdline}"),
            );
        }
    }
    (ours, zombies)
}

/// Finds one stack by path in an `/api/stacks` answer.
pub fn stack<'a>(stacks: &'a [Value], path: &str) -> &'a Value {
    stacks
        .iter()
        .find(|s| s["path"] == path)
        .unwrap_or_else(|| panic!("no stack {path:?} in {stacks:?}"))
}

/// A stack by path in an `/api/stacks` answer, if it is there.
pub fn find<'a>(stacks: &'a [Value], path: &str) -> Option<&'a Value> {
    stacks.iter().find(|s| s["path"] == path)
}

/// The status of a stack in an `/api/stacks` answer, `<absent>` when it is not there.
pub fn status<'a>(stacks: &'a [Value], path: &str) -> &'a str {
    find(stacks, path)
        .and_then(|s| s["status"].as_str())
        .unwrap_or("<absent>")
}

/// A compose file of one service `app` running `image` (never started in tests without Docker).
pub fn compose(image: &str) -> String {
    format!("services:\n  app:\n    image: {image}\n")
}

/// The last 40 lines of the app's logs that mention `needle` (all tests of a binary share one
/// log, so a test's own project prefix is the usual needle).
pub fn log_tail(needle: &str) -> String {
    let logs = logs();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains(needle)).collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Polls `/api/stacks` until `check` holds; on timeout fails with the stacks whose path starts
/// with `prefix` and the log lines that mention it.
pub async fn wait_for(
    app: &TestApp,
    prefix: &str,
    timeout: Duration,
    what: &str,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    poll_stacks(app, timeout, Duration::from_millis(200), check, |stacks| {
        let mine: Vec<&Value> = stacks
            .iter()
            .filter(|s| s["path"].as_str().is_some_and(|p| p.starts_with(prefix)))
            .collect();
        format!(
            "{what}: not reached within {timeout:?}\nstacks: {}\nlogs:\n{}",
            serde_json::to_string_pretty(&mine).unwrap(),
            log_tail(prefix)
        )
    })
    .await
}

/// Polls `/api/stacks` every `every` until `check` holds; after `timeout` fails with what
/// `failure` makes of the last answer.
async fn poll_stacks(
    app: &TestApp,
    timeout: Duration,
    every: Duration,
    check: impl Fn(&[Value]) -> bool,
    failure: impl Fn(&[Value]) -> String,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let stacks = app.stacks().await;
        if check(&stacks) {
            return stacks;
        }
        assert!(
            tokio::time::Instant::now() <= deadline,
            "{}",
            failure(&stacks)
        );
        tokio::time::sleep(every).await;
    }
}

/// Polls a condition (on the engine, a file) every 250 ms until it holds, or fails after
/// `timeout`.
pub async fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not reached within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Asserts a refresh status's error says `needle`.
pub fn assert_refresh_error(status: &Value, needle: &str) {
    let error = status["refreshError"].as_str().unwrap_or_default();
    assert!(error.contains(needle), "{status}");
}

/// A refresh through the manual endpoint, which must be accepted.
pub async fn refresh(app: &TestApp) {
    let (code, body) = app.post_json("/api/refresh", Value::Null).await;
    assert_eq!(code, 200, "POST /api/refresh: {body}");
}

/// Waits (up to 60 s) until the app has read `commit` and its refresh completed.
pub async fn wait_revision(app: &TestApp, commit: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = app.refresh_status().await;
        if status["revision"] == commit && status["refreshStatus"] == "completed" {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refresh to {commit} did not complete: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Commits, pushes, refreshes, and waits until the app has read the commit.
pub async fn publish(app: &TestApp, repo: &TestRepo, message: &str) -> String {
    let commit = repo.commit_and_push(message);
    refresh(app).await;
    wait_revision(app, &commit).await;
    commit
}
