//! The benchmark behind `scripts/bench.sh`: docker-cd against the Git floor and the strategies a
//! user could pick instead, on repositories made by `gen_fixture_repo.sh`, all in one run.
//!
//! Usage: `bench --binary target/release/docker-cd [--rounds 5] [--alt-rounds 3]
//! [--burst 1000] [--reconcile REPO] N=REPO...` (each REPO a bare repository of N stacks under
//! `stacks/`; `--alt-rounds` limits the rounds of the slow `git show` alternative).
//!
//! Per N, every figure is the median of `--rounds` rounds, and every ratio compares figures of
//! the same run:
//! - **refreshes through the service** (`app::start` on 127.0.0.1, the code path of the
//!   binary): cold (start with an empty data dir until the start-up refresh completed), no-op
//!   (`POST /api/refresh` until the refresh completed) and one new commit touching one stack
//!   (pushed to the origin, then the same); git processes counted with `process::spawn_counts`;
//! - **the floor**: the same work as raw git processes, timed process by process (what runs
//!   between them, picking the compose blobs, is not counted): cold `init` + `fetch` +
//!   `ls-tree -r -z` + `cat-file --batch` of the compose blobs; no-op: `fetch`; one commit:
//!   `fetch` + `diff-tree -r -z` + `cat-file --batch` of the changed compose blobs; the full
//!   re-read of one commit: `fetch` + `ls-tree -r -z` + `cat-file` of every compose blob;
//! - **docker-cd's full re-read** of the same one-commit change (`GitReader::read_full_listing`
//!   on its own mirror): what the refresh costs without the incremental listing;
//! - **the alternatives**: one `git show` per compose file (after the floor's fetch and
//!   `ls-tree`), and a fresh `git clone --depth 1` per refresh (then reading and hashing the
//!   compose files from the checkout, as the original Go docker-cd did);
//! - **the release binary** as a child process: VmRSS/VmHWM with the snapshot held, the latency
//!   of `GET /api/stacks`, and a burst of signed push webhooks (exactly `--burst` requests from
//!   a Rust client in this process, 32 at a time over keep-alive connections, after a new
//!   commit) with p50/p99 latency and the refreshes that ran (one `ls-remote` each, counted by
//!   a recording `GIT_BIN` wrapper);
//! - with `--reconcile REPO` and a Docker engine: a no-op reconcile over every stack of REPO,
//!   the host prepared with one exited container per stack carrying exactly the labels a sync
//!   writes, docker and compose processes counted by recording `DOCKER_BIN`/`COMPOSE_BIN`
//!   wrappers (the compose wrapper refuses to run anything but `version`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use docker_cd::app;
use docker_cd::compose::labels::{self, SyncLabels};
use docker_cd::config::{
    Args, ChildEnv, Config, DeployDir, GitConfig, RepoUrl, Revision, SshSettings,
};
use docker_cd::desired_state::{COMPOSE_FILE_NAMES, Snapshot};
use docker_cd::git::{GitReader, parse};
use docker_cd::process::spawn_counts;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const SECRET: &str = "bench-webhook-secret";
const DEPLOY: &str = "stacks";
const IMAGE: &str = "docker-cd-test/busybox:latest";

// ---------------------------------------------------------------------------------------------
// Small helpers

fn git_cmd(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid");
    c
}

/// Runs git, requires success, returns stdout.
fn git_out(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = git_cmd(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn git(dir: &Path, args: &[&str]) -> String {
    String::from_utf8_lossy(&git_out(dir, args))
        .trim()
        .to_owned()
}

/// Runs git and returns (wall time, stdout).
fn timed_git(dir: &Path, args: &[&str]) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let out = git_out(dir, args);
    (started.elapsed(), out)
}

/// `cat-file --batch` of `oids` in `git_dir`, all output read; wall time.
fn timed_cat_file(git_dir: &Path, oids: &[String]) -> Duration {
    let mut input = String::with_capacity(oids.len() * 41);
    for oid in oids {
        input.push_str(oid);
        input.push('\n');
    }
    let started = Instant::now();
    let mut child = git_cmd(git_dir)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let mut sink = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut sink).unwrap();
    writer.join().unwrap();
    assert!(child.wait().unwrap().success());
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn median_u64(mut v: Vec<u64>) -> u64 {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn hermetic_env() -> ChildEnv {
    ChildEnv {
        vars: ["PATH", "HOME"]
            .iter()
            .filter_map(|k| std::env::var_os(k).map(|v| ((*k).into(), v)))
            .collect(),
    }
}

fn git_spawns() -> BTreeMap<String, u64> {
    spawn_counts()
        .into_iter()
        .filter(|(k, _)| k == "git" || k.starts_with("git "))
        .collect()
}

/// Git processes spawned between two counter snapshots, start-up ones (`--version`, `init`)
/// left out. (`git --version` is counted as `git --version`: the counters name a leading
/// `--option` as the subcommand.)
fn refresh_spawns(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> u64 {
    after
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "git" | "git --version" | "git init"))
        .map(|(k, v)| v - before.get(k).copied().unwrap_or(0))
        .sum()
}

/// The compose blob of every stack in `ls-tree -r -z` output (files directly in a directory
/// directly under the deploy dir, in Compose's precedence), with its path. Not timed.
fn compose_blobs(listing: &[u8]) -> Vec<(String, String)> {
    let mut by_dir: BTreeMap<String, (usize, String, String)> = BTreeMap::new();
    for entry in parse::ls_tree(listing).unwrap() {
        let Some(rel) = entry.path.strip_prefix(&format!("{DEPLOY}/")) else {
            continue;
        };
        let Some((dir, file)) = rel.split_once('/') else {
            continue;
        };
        let Some(rank) = COMPOSE_FILE_NAMES.iter().position(|n| *n == file) else {
            continue;
        };
        let best =
            by_dir
                .entry(dir.to_owned())
                .or_insert((usize::MAX, String::new(), String::new()));
        if rank < best.0 {
            *best = (rank, entry.oid, entry.path);
        }
    }
    by_dir
        .into_values()
        .map(|(_, oid, path)| (oid, path))
        .collect()
}

/// New compose blobs in `diff-tree -r -z` output.
fn changed_compose_blobs(diff: &[u8]) -> Vec<String> {
    parse::diff_tree(diff)
        .unwrap()
        .into_iter()
        .filter(|e| {
            e.new_mode != 0
                && e.path.matches('/').count() == 2
                && COMPOSE_FILE_NAMES
                    .iter()
                    .any(|n| e.path.ends_with(&format!("/{n}")))
        })
        .map(|e| e.new_oid)
        .collect()
}

/// A writable clone of the origin to push one-stack commits from.
struct Pusher {
    work: PathBuf,
    file: PathBuf,
    round: usize,
}

impl Pusher {
    fn new(scratch: &Path, url: &str, name: &str) -> Self {
        git(scratch, &["clone", "--quiet", "--no-tags", url, name]);
        let work = scratch.join(name);
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(work.join(DEPLOY))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        let file = dirs
            .iter()
            .find_map(|d| {
                COMPOSE_FILE_NAMES
                    .iter()
                    .map(|n| d.join(n))
                    .find(|p| p.is_file())
            })
            .unwrap();
        Self {
            work,
            file,
            round: 0,
        }
    }

    /// Commits a change to one stack's compose file and pushes it; returns the commit id.
    fn push_one(&mut self) -> String {
        self.round += 1;
        let text = std::fs::read_to_string(&self.file).unwrap();
        std::fs::write(&self.file, format!("{text}# bench change {}\n", self.round)).unwrap();
        git(
            &self.work,
            &["commit", "--quiet", "-am", "bench: change one stack"],
        );
        git(&self.work, &["push", "--quiet", "origin", "HEAD:main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

/// A shell wrapper that appends its first non-option argument (the subcommand; values of `-c`
/// and `-C` skipped) to a log, then runs `real`.
/// With `refuse`, anything but `version` is refused (exit 1) instead of run.
fn recorder(dir: &Path, name: &str, real: &Path, refuse: bool) -> (PathBuf, PathBuf) {
    let log = dir.join(format!("{name}.log"));
    let script = dir.join(name);
    let guard = if refuse {
        "case \"$first\" in version) ;; *) echo \"bench: $first refused\" >&2; exit 1 ;; esac\n"
    } else {
        ""
    };
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfirst=\nskip=\nfor a in \"$@\"; do\n  if [ -n \"$skip\" ]; then skip=; continue; fi\n  \
             case \"$a\" in -c|-C) skip=1 ;; -*) ;; *) first=$a; break ;; esac\ndone\n\
             echo \"$first\" >> '{log}'\n{guard}exec '{real}' \"$@\"\n",
            log = log.display(),
            real = real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, log)
}

fn log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn service_args(url: &str, data: &Path) -> Args {
    Args {
        git_repo_url: Some(url.to_owned()),
        git_revision: "main".into(),
        git_deploy_dir: DEPLOY.into(),
        git_ssh_accept_new_host_keys: "false".into(),
        git_timeout: "600s".into(),
        data_dir: data.to_owned(),
        listen_addr: "127.0.0.1".into(),
        port: "0".into(),
        webhook_secret: Some(SECRET.into()),
        refresh_poll_interval: "off".into(),
        reconcile_enabled: "false".into(),
        reconcile_remove_enabled: "false".into(),
        reconcile_interval: "1h".into(),
        drift_policy: "revert".into(),
        compose_timeout: "1m".into(),
        sync_health_timeout: "2m".into(),
        sync_concurrency: "4".into(),
        sync_windows: String::new(),
        history_limit: "20".into(),
        rollback_on_failure: "false".into(),
        log_format: "text".into(),
        ..Args::default()
    }
}

async fn wait_completed(app: &app::App, n: u64) {
    let mut rx = app.refresh_progress.clone();
    tokio::time::timeout(Duration::from_secs(600), rx.wait_for(|p| p.completed >= n))
        .await
        .expect("refresh did not finish")
        .unwrap();
    let status = app.store.refresh_status();
    assert_eq!(
        status.refresh_status,
        docker_cd::desired_state::RefreshPhase::Completed,
        "{status:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Results

#[derive(Default)]
struct Size {
    n: usize,
    stacks: usize,
    cold: Vec<Duration>,
    cold_floor: Vec<Duration>,
    noop: Vec<Duration>,
    noop_floor: Vec<Duration>,
    one: Vec<Duration>,
    one_floor: Vec<Duration>,
    one_full_floor: Vec<Duration>,
    one_full_ours: Vec<Duration>,
    /// After the fetch: diff-tree + cat-file of the changed blobs; ls-tree + cat-file of all.
    one_floor_read: Vec<Duration>,
    one_full_floor_read: Vec<Duration>,
    fetch_one: Vec<Duration>,
    fetch_noop: Vec<Duration>,
    fetch_cold: Vec<Duration>,
    ls_tree: Vec<Duration>,
    shows: Vec<Duration>,
    clone: Vec<Duration>,
    spawns_cold: u64,
    spawns_noop: u64,
    spawns_one: u64,
    incremental_reads: u64,
    rss_kib: u64,
    hwm_kib: u64,
    rss_after_api_kib: u64,
    hwm_after_api_kib: u64,
    api_stacks: Vec<Duration>,
    api_bytes: usize,
    burst_p50: Vec<Duration>,
    burst_p99: Vec<Duration>,
    burst_max: Vec<Duration>,
    burst_total: Vec<Duration>,
    burst_refreshes: Vec<u64>,
    burst_non_2xx: usize,
    /// The same burst from the other forges (`gitea` form deliveries signed over their JSON,
    /// `gitlab` with its token): per sender, p50, p99, max and non-2xx answers.
    burst_forges: Vec<(&'static str, ForgeBurst)>,
}

// ---------------------------------------------------------------------------------------------
// 1. Refreshes through the service, the floor, the alternatives

async fn refreshes(n: usize, origin: &Path, rounds: usize, alt_rounds: usize, out: &mut Size) {
    let url = format!(
        "file://{}",
        std::fs::canonicalize(origin).unwrap().display()
    );
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let mut pusher = Pusher::new(s, &url, "work");
    let env = hermetic_env();

    // docker-cd's full re-read, on its own mirror, following the origin.
    let full_config = GitConfig {
        bin: which::which("git").unwrap(),
        repo: RepoUrl::parse(&url).unwrap(),
        revision: Revision::parse("main").unwrap(),
        deploy_dir: DeployDir::parse(DEPLOY).unwrap(),
        token: None,
        ssh: SshSettings::default(),
        timeout: Duration::from_secs(600),
    };
    let full_data = s.join("full-reader");
    let full_reader = GitReader::open(&full_config, &full_data, &env)
        .await
        .unwrap();
    let mut full_prev: Snapshot = full_reader.read(None).await.unwrap().unwrap();

    // The floor's warm mirror for the full re-read of one commit.
    let full_floor = s.join("full-floor.git");
    git(s, &["init", "--quiet", "--bare", "full-floor.git"]);
    let fetch = |dir: &Path| {
        timed_git(
            dir,
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                &url,
                "+refs/heads/main:refs/floor/main",
            ],
        )
        .0
    };
    fetch(&full_floor);

    for round in 0..rounds {
        // --- docker-cd, cold: a fresh data dir, start until the start-up refresh completed.
        let data = tempfile::tempdir().unwrap();
        let config = Config::validate(service_args(&url, data.path()), env.clone()).unwrap();
        let before = git_spawns();
        let started = Instant::now();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = app::start(config, listener).await.unwrap();
        wait_completed(&app, 1).await;
        out.cold.push(started.elapsed());
        out.spawns_cold = refresh_spawns(&before, &git_spawns());
        out.stacks = app.store.snapshot().unwrap().stacks.len();
        let client = reqwest::Client::new();
        let refresh_url = format!("http://{}/api/refresh", app.addr);

        // --- no-op refresh.
        let before = git_spawns();
        let started = Instant::now();
        let answer = client.post(&refresh_url).send().await.unwrap();
        assert!(answer.status().is_success());
        wait_completed(&app, 2).await;
        out.noop.push(started.elapsed());
        out.spawns_noop = refresh_spawns(&before, &git_spawns());

        // --- one new commit touching one stack.
        let tip = pusher.push_one();
        let before = git_spawns();
        let started = Instant::now();
        let answer = client.post(&refresh_url).send().await.unwrap();
        assert!(answer.status().is_success());
        wait_completed(&app, 3).await;
        out.one.push(started.elapsed());
        out.spawns_one = refresh_spawns(&before, &git_spawns());
        let snapshot = app.store.snapshot().unwrap();
        assert_eq!(snapshot.revision, tip, "the refresh read the new commit");
        app.stop().await;
        drop(data);

        // --- docker-cd's full re-read of the same commit (its mirror is one commit behind).
        let started = Instant::now();
        let full = full_reader
            .read_full_listing(Some(&full_prev))
            .await
            .unwrap()
            .unwrap();
        out.one_full_ours.push(started.elapsed());
        assert_eq!(
            full.stacks, snapshot.stacks,
            "full and incremental reads agree"
        );
        full_prev = full;

        // --- the floor, cold: init + fetch + ls-tree + cat-file of the compose blobs.
        let floor = s.join(format!("floor-{round}.git"));
        let (t_init, _) = timed_git(
            s,
            &["init", "--quiet", "--bare", &format!("floor-{round}.git")],
        );
        let t_fetch = fetch(&floor);
        let (t_ls, listing) = timed_git(&floor, &["ls-tree", "-r", "-z", &tip, "--", DEPLOY]);
        let blobs = compose_blobs(&listing);
        let oids: Vec<String> = blobs.iter().map(|(o, _)| o.clone()).collect();
        let t_cat = timed_cat_file(&floor, &oids);
        out.cold_floor.push(t_init + t_fetch + t_ls + t_cat);
        out.fetch_cold.push(t_init + t_fetch);
        out.ls_tree.push(t_ls);

        // --- alternative: one git show per compose file (the slowest measure: fewer rounds).
        if round < alt_rounds {
            let started = Instant::now();
            for (_, path) in &blobs {
                git_out(&floor, &["show", &format!("{tip}:{path}")]);
            }
            out.shows.push(started.elapsed());
        }

        // --- alternative: a fresh shallow clone, then read and hash the compose files.
        let clone_dir = s.join(format!("clone-{round}"));
        let started = Instant::now();
        git(
            s,
            &[
                "clone",
                "--quiet",
                "--depth",
                "1",
                "--single-branch",
                "--branch",
                "main",
                "--no-tags",
                &url,
                clone_dir.to_str().unwrap(),
            ],
        );
        let mut hashed = 0;
        for entry in std::fs::read_dir(clone_dir.join(DEPLOY)).unwrap() {
            let dir = entry.unwrap().path();
            if let Some(file) = COMPOSE_FILE_NAMES
                .iter()
                .map(|n| dir.join(n))
                .find(|p| p.is_file())
            {
                let _ = Sha256::digest(std::fs::read(file).unwrap());
                hashed += 1;
            }
        }
        out.clone.push(started.elapsed());
        assert_eq!(hashed, out.stacks);
        std::fs::remove_dir_all(&clone_dir).unwrap();

        // --- the floor, no-op: fetch with nothing new.
        out.noop_floor.push(fetch(&floor));

        // --- the floor, one commit: fetch + diff-tree + cat-file of the changed blobs.
        let previous_tip = git(&floor, &["rev-parse", "refs/floor/main"]);
        let next = pusher.push_one();
        let t_fetch = fetch(&floor);
        let (t_diff, diff) = timed_git(
            &floor,
            &["diff-tree", "-r", "-z", &previous_tip, &next, "--", DEPLOY],
        );
        let changed = changed_compose_blobs(&diff);
        assert_eq!(changed.len(), 1, "one compose file changed");
        let t_cat = timed_cat_file(&floor, &changed);
        out.one_floor.push(t_fetch + t_diff + t_cat);
        out.one_floor_read.push(t_diff + t_cat);
        out.fetch_one.push(t_fetch);

        // --- the floor's full re-read of one commit (its own warm mirror, one commit behind).
        let t_fetch = fetch(&full_floor);
        let (t_ls, listing) = timed_git(&full_floor, &["ls-tree", "-r", "-z", &next, "--", DEPLOY]);
        let oids: Vec<String> = compose_blobs(&listing)
            .into_iter()
            .map(|(o, _)| o)
            .collect();
        let t_cat = timed_cat_file(&full_floor, &oids);
        out.one_full_floor.push(t_fetch + t_ls + t_cat);
        out.one_full_floor_read.push(t_ls + t_cat);
        // Keep docker-cd's full reader level with the origin too.
        full_prev = full_reader
            .read_full_listing(Some(&full_prev))
            .await
            .unwrap()
            .unwrap();
        out.fetch_noop.push(fetch(&full_floor));

        std::fs::remove_dir_all(&floor).unwrap();
        eprintln!(
            "  N={n} round {}: cold {} (floor {}), no-op {} (floor {}), one commit {} (floor {}, full re-read {}), git show x{} {:?}, clone {}",
            round + 1,
            ms(*out.cold.last().unwrap()),
            ms(*out.cold_floor.last().unwrap()),
            ms(*out.noop.last().unwrap()),
            ms(*out.noop_floor.last().unwrap()),
            ms(*out.one.last().unwrap()),
            ms(*out.one_floor.last().unwrap()),
            ms(*out.one_full_ours.last().unwrap()),
            blobs.len(),
            (round < alt_rounds).then(|| ms(*out.shows.last().unwrap())),
            ms(*out.clone.last().unwrap()),
        );
    }
    out.incremental_reads = full_reader.stats().incremental;
}

// ---------------------------------------------------------------------------------------------
// 2. The release binary: memory, GET /api/stacks, the webhook burst

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One sender's bursts: p50, p99 and max per round, and the non-2xx answers of all rounds.
#[derive(Default)]
struct ForgeBurst {
    p50: Vec<Duration>,
    p99: Vec<Duration>,
    max: Vec<Duration>,
    non_2xx: usize,
}

/// The senders of each round's bursts, GitHub's first (the figures of the table's first burst
/// row), then those of SPEC §13 as they really deliver: Gitea's form signed over its JSON
/// payload, GitLab's JSON with `X-Gitlab-Token`.
const BURST_SENDERS: [&str; 3] = ["github", "gitea", "gitlab"];

async fn binary(
    n: usize,
    origin: &Path,
    binary: &Path,
    rounds: usize,
    burst: usize,
    out: &mut Size,
) {
    let url = format!(
        "file://{}",
        std::fs::canonicalize(origin).unwrap().display()
    );
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let mut pusher = Pusher::new(s, &url, "work");
    let (git_bin, git_log) = recorder(s, "git", &which::which("git").unwrap(), false);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(s.join("service.log")).unwrap();
    let child = Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", s)
        .env("GIT_REPO_URL", &url)
        .env("GIT_REVISION", "main")
        .env("GIT_DEPLOY_DIR", DEPLOY)
        .env("GIT_BIN", &git_bin)
        .env("GIT_TIMEOUT", "600s")
        .env("DATA_DIR", s.join("data"))
        .env("LISTEN_ADDR", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("WEBHOOK_SECRET", SECRET)
        .env("REFRESH_POLL_INTERVAL", "off")
        .env("RECONCILE_ENABLED", "false")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let child = Child(child);
    let pid = child.0.id();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();

    let status = async || -> Option<serde_json::Value> {
        client
            .get(format!("{base}/api/refresh-status"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(s) = status().await {
            if s["refreshStatus"] == "completed" {
                break;
            }
            assert_ne!(s["refreshStatus"], "failed", "{s}");
        }
        assert!(
            Instant::now() < deadline,
            "the service did not complete its first refresh"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    out.rss_kib = proc_status_kib(pid, "VmRSS:");
    out.hwm_kib = proc_status_kib(pid, "VmHWM:");

    for _ in 0..rounds {
        let started = Instant::now();
        let body = client
            .get(format!("{base}/api/stacks"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        out.api_stacks.push(started.elapsed());
        out.api_bytes = body.len();
        let stacks: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        assert_eq!(stacks.len(), out.stacks);
    }
    out.rss_after_api_kib = proc_status_kib(pid, "VmRSS:");
    out.hwm_after_api_kib = proc_status_kib(pid, "VmHWM:");

    // Bursts: a new commit, then `burst` signed deliveries of its push, 32 at a time; one
    // burst per sender.
    for round in 0..rounds {
        for sender in BURST_SENDERS {
            let tip = pusher.push_one();
            let payload = serde_json::json!({
                "ref": "refs/heads/main", "before": "0000000000000000000000000000000000000000",
                "after": tip, "created": false, "deleted": false,
                "repository": {"full_name": "bench/gitops"},
                "head_commit": {"id": tip, "message": "bench: change one stack"},
            })
            .to_string();
            let signature = sign(payload.as_bytes());
            // Gitea signs the JSON (bare hex) and posts it as the form's `payload`.
            let form = serde_urlencoded::to_string([("payload", payload.as_str())]).unwrap();
            let calls_before = log_lines(&git_log)
                .iter()
                .filter(|l| *l == "ls-remote")
                .count();
            let started = Instant::now();
            let results: Vec<(bool, Duration)> = futures_util::stream::iter(0..burst)
                .map(|i| {
                    let id = format!("bench-{n}-{round}-{i}");
                    let request = client.post(format!("{base}/api/webhook"));
                    let request = match sender {
                        "gitea" => request
                            .header("x-gitea-event", "push")
                            .header("x-gitea-delivery", &id)
                            .header("x-gitea-signature", &signature["sha256=".len()..])
                            .header("x-gogs-event", "push")
                            .header("x-gogs-signature", &signature["sha256=".len()..])
                            .header("x-hub-signature-256", &signature)
                            .header("x-github-event", "push")
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body(form.clone()),
                        "gitlab" => request
                            .header("x-gitlab-event", "Push Hook")
                            .header("x-gitlab-event-uuid", &id)
                            .header("x-gitlab-token", SECRET)
                            .header("content-type", "application/json")
                            .body(payload.clone()),
                        _ => request
                            .header("x-github-event", "push")
                            .header("x-github-delivery", &id)
                            .header("content-type", "application/json")
                            .header("x-hub-signature-256", &signature)
                            .body(payload.clone()),
                    };
                    async move {
                        let sent = Instant::now();
                        let response = request.send().await.unwrap();
                        let ok = response.status().is_success();
                        let _ = response.bytes().await.unwrap();
                        (ok, sent.elapsed())
                    }
                })
                .buffer_unordered(32)
                .collect()
                .await;
            let total = started.elapsed();
            let non_2xx = results.iter().filter(|r| !r.0).count();
            let mut latencies: Vec<Duration> = results.iter().map(|r| r.1).collect();
            latencies.sort();
            let (p50, p99, max) = (
                latencies[latencies.len() / 2],
                latencies[(latencies.len() * 99).div_ceil(100) - 1],
                *latencies.last().unwrap(),
            );
            if sender == "github" {
                out.burst_total.push(total);
                out.burst_non_2xx += non_2xx;
                out.burst_p50.push(p50);
                out.burst_p99.push(p99);
                out.burst_max.push(max);
            } else {
                let at = match out.burst_forges.iter().position(|(s, _)| *s == sender) {
                    Some(at) => at,
                    None => {
                        out.burst_forges.push((sender, ForgeBurst::default()));
                        out.burst_forges.len() - 1
                    }
                };
                let forge = &mut out.burst_forges[at].1;
                forge.p50.push(p50);
                forge.p99.push(p99);
                forge.max.push(max);
                forge.non_2xx += non_2xx;
            }
            // Settled: completed at the tip and no new ls-remote for 1.5 s.
            let mut last = usize::MAX;
            let mut quiet = Instant::now();
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let calls = log_lines(&git_log)
                    .iter()
                    .filter(|l| *l == "ls-remote")
                    .count();
                let s = status().await.unwrap_or_default();
                if calls != last || s["refreshStatus"] != "completed" {
                    last = calls;
                    quiet = Instant::now();
                } else if quiet.elapsed() > Duration::from_millis(1500) {
                    assert_eq!(s["revision"], tip.as_str(), "the burst ended at the tip");
                    break;
                }
                assert!(Instant::now() < deadline, "refreshes did not settle");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if sender == "github" {
                out.burst_refreshes.push((last - calls_before) as u64);
            }
        }
    }
    drop(child);
}

// ---------------------------------------------------------------------------------------------
// 3. A no-op reconcile over many synced stacks on the real engine

struct Containers(String);

impl Drop for Containers {
    fn drop(&mut self) {
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=com.docker-cd.bench={}", self.0),
            ])
            .output()
            .unwrap();
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        for chunk in ids.chunks(100) {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(chunk)
                .stdout(Stdio::null())
                .status();
        }
        eprintln!("  removed {} bench containers", ids.len());
    }
}

struct Reconcile {
    stacks: usize,
    prepare: Duration,
    docker: Vec<String>,
    compose: Vec<String>,
    startup_compose: Vec<String>,
    synced: usize,
}

async fn reconcile(origin: &Path) -> Reconcile {
    let url = format!(
        "file://{}",
        std::fs::canonicalize(origin).unwrap().display()
    );
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let env = hermetic_env();
    let (docker_bin, docker_log) = recorder(s, "docker", &which::which("docker").unwrap(), false);
    let compose_real = which::which("docker-compose").ok();
    let (compose_bin, compose_log) = match &compose_real {
        Some(real) => {
            let (bin, log) = recorder(s, "docker-compose", real, true);
            (Some(bin), log)
        }
        None => (None, s.join("no-compose.log")),
    };
    let mut args = service_args(&url, &s.join("data"));
    args.reconcile_enabled = "true".into();
    args.docker_bin = Some(docker_bin);
    args.compose_bin = compose_bin;
    let config = Config::validate(args, env.clone()).unwrap();
    let instance = labels::instance_id(config.git.repo.as_str(), config.git.deploy_dir.as_str());

    // What a sync of the tip would have written, read with docker-cd's own reader.
    let reader_data = tempfile::tempdir().unwrap();
    let reader = GitReader::open(&config.git, reader_data.path(), &env)
        .await
        .unwrap();
    let snapshot = reader.read(None).await.unwrap().unwrap();
    let tag = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    );
    let guard = Containers(tag.clone());
    let synced_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let jobs: Vec<Vec<String>> = snapshot
        .stacks
        .values()
        .enumerate()
        .map(|(i, stack)| {
            let project = stack.project_name.clone().unwrap();
            let sync = SyncLabels {
                instance: instance.clone(),
                stack_path: stack.path.clone(),
                revision: snapshot.revision.clone(),
                content_hash: stack.content_hash.clone(),
                compose_hash: stack.compose_hash.clone().unwrap(),
                synced_at: synced_at.clone(),
                services: vec!["app".into()],
                depends_on: Vec::new(),
            };
            let mut cmd = vec![
                "run".to_owned(),
                "--detach".into(),
                "--network".into(),
                "none".into(),
                "--name".into(),
                format!("dcdbench-{tag}-{i}"),
            ];
            let mut all: Vec<(String, String)> = sync
                .to_map()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            all.push(("com.docker.compose.project".into(), project));
            all.push(("com.docker.compose.service".into(), "app".into()));
            all.push(("com.docker.compose.oneoff".into(), "False".into()));
            all.push(("com.docker.compose.container-number".into(), "1".into()));
            all.push(("com.docker-cd.bench".into(), tag.clone()));
            for (k, v) in all {
                cmd.push("--label".into());
                cmd.push(format!("{k}={v}"));
            }
            cmd.push(IMAGE.into());
            cmd.push("true".into());
            cmd
        })
        .collect();
    let started = Instant::now();
    let jobs = Arc::new(std::sync::Mutex::new(jobs));
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let jobs = jobs.clone();
            std::thread::spawn(move || {
                loop {
                    let Some(job) = jobs.lock().unwrap().pop() else {
                        return;
                    };
                    let out = Command::new("docker").args(&job).output().unwrap();
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let prepare = started.elapsed();
    eprintln!(
        "  prepared {} exited containers in {}",
        snapshot.stacks.len(),
        ms(prepare)
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = app::start(config, listener).await.unwrap();
    wait_completed(&app, 1).await;
    // The start-up refresh asks for a reconcile: wait until every stack is recognised.
    let deadline = Instant::now() + Duration::from_secs(300);
    let synced = loop {
        let stacks = app.store.stacks();
        let synced = stacks
            .iter()
            .filter(|r| r.sync.status == docker_cd::desired_state::StackStatus::Synced)
            .count();
        if synced == stacks.len() && !stacks.is_empty() {
            break synced;
        }
        let compose_runs: Vec<String> = log_lines(&compose_log)
            .into_iter()
            .filter(|l| l != "version")
            .collect();
        if Instant::now() > deadline || !compose_runs.is_empty() {
            eprintln!(
                "  only {synced} of {} stacks recognised; compose runs: {compose_runs:?}",
                stacks.len()
            );
            break synced;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let startup_compose: Vec<String> = log_lines(&compose_log)
        .into_iter()
        .filter(|l| l != "version")
        .collect();
    // Let the first reconcile finish, then one more, triggered by hand.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let docker_before = log_lines(&docker_log).len();
    let compose_before = log_lines(&compose_log).len();
    app.reconcile
        .as_ref()
        .unwrap()
        .request(docker_cd::reconcile::Reason::Tick);
    let deadline = Instant::now() + Duration::from_secs(60);
    while log_lines(&docker_log).len() == docker_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let docker = log_lines(&docker_log)[docker_before..].to_vec();
    let compose = log_lines(&compose_log)[compose_before..].to_vec();
    app.stop().await;
    drop(guard);
    Reconcile {
        stacks: snapshot.stacks.len(),
        prepare,
        docker,
        compose,
        startup_compose,
        synced,
    }
}

// ---------------------------------------------------------------------------------------------
// The table

fn kib(v: u64) -> String {
    format!("{:.1} MiB", v as f64 / 1024.0)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut binary_path, mut rounds, mut burst, mut reconcile_repo) =
        (None, 5usize, 1000usize, None);
    let mut alt_rounds = 3usize;
    let mut sizes: Vec<(usize, PathBuf)> = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--binary" => binary_path = args.next().map(PathBuf::from),
            "--rounds" => rounds = args.next().unwrap().parse().unwrap(),
            "--burst" => burst = args.next().unwrap().parse().unwrap(),
            "--alt-rounds" => alt_rounds = args.next().unwrap().parse().unwrap(),
            "--reconcile" => reconcile_repo = args.next().map(PathBuf::from),
            other => {
                let (n, repo) = other.split_once('=').expect("N=REPO");
                sizes.push((n.parse().unwrap(), PathBuf::from(repo)));
            }
        }
    }
    let binary_path = binary_path.expect("--binary target/release/docker-cd");
    assert!(rounds >= 1 && burst >= 1 && !sizes.is_empty());

    let mut results = Vec::new();
    for (n, repo) in &sizes {
        eprintln!(
            "N = {n}: refreshes through the service, the floor and the alternatives ({rounds} rounds)"
        );
        let mut size = Size {
            n: *n,
            ..Size::default()
        };
        refreshes(*n, repo, rounds, alt_rounds.clamp(1, rounds), &mut size).await;
        eprintln!("N = {n}: the release binary: memory, GET /api/stacks, {burst}-webhook bursts");
        binary(*n, repo, &binary_path, rounds, burst, &mut size).await;
        results.push(size);
    }
    let reconciled = match &reconcile_repo {
        Some(repo) => {
            eprintln!("no-op reconcile on the Docker engine");
            Some(reconcile(repo).await)
        }
        None => None,
    };

    // ------------------------------------------------------------------------------ table
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    println!();
    println!(
        "docker-cd benchmark, {} UTC, {cores} cores, {:.0} GiB RAM, {}, medians of {rounds} rounds",
        humantime::format_rfc3339_seconds(SystemTime::now()),
        mem_kib as f64 / 1024.0 / 1024.0,
        git(Path::new("."), &["--version"]),
    );
    println!();
    println!(
        "| measure | N | docker-cd | floor | ratio | git show per file | clone --depth 1 | target |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &results {
        let (cold, cold_floor) = (median(r.cold.clone()), median(r.cold_floor.clone()));
        let shows = median(r.shows.clone());
        let clone = median(r.clone.clone());
        let ls = median(r.ls_tree.clone());
        let alt = |fetch: Duration, floor: Duration| {
            let show = fetch + ls + shows;
            (
                format!("{} ({:.1}×)", ms(show), ratio(show, floor)),
                format!("{} ({:.1}×)", ms(clone), ratio(clone, floor)),
            )
        };
        let (a, b) = alt(median(r.fetch_cold.clone()), cold_floor);
        println!(
            "| cold full refresh | {} | {} | {} | {:.2}× | {a} | {b} | ≤ 1.3× (N ≥ 1k) |",
            r.n,
            ms(cold),
            ms(cold_floor),
            ratio(cold, cold_floor)
        );
        let (noop, noop_floor) = (median(r.noop.clone()), median(r.noop_floor.clone()));
        let (a, b) = alt(median(r.fetch_noop.clone()), noop_floor);
        println!(
            "| no-op refresh (floor: no-op `git fetch`) | {} | {} | {} | {:.2}× | {a} | {b} | ≤ 2× |",
            r.n,
            ms(noop),
            ms(noop_floor),
            ratio(noop, noop_floor)
        );
        let (one, one_floor) = (median(r.one.clone()), median(r.one_floor.clone()));
        let (a, b) = alt(median(r.fetch_one.clone()), one_floor);
        println!(
            "| one-commit refresh (floor: fetch + diff-tree + cat-file) | {} | {} | {} | {:.2}× | {a} | {b} | ≤ 1.3× (N = 10k) |",
            r.n,
            ms(one),
            ms(one_floor),
            ratio(one, one_floor)
        );
        let full_ours = median(r.one_full_ours.clone());
        let full_floor = median(r.one_full_floor.clone());
        println!(
            "| one commit: full re-read (floor: fetch + ls-tree + cat-file of every compose blob) vs docker-cd's one-commit refresh | {} | {} | {} | {:.1}× faster | docker-cd's own full listing: {} ({:.1}× the one-commit refresh) | after the fetch: {:.1}× less work | ≥ 3× faster (N = 10k) |",
            r.n,
            ms(one),
            ms(full_floor),
            ratio(full_floor, one),
            ms(full_ours),
            ratio(full_ours, one),
            ratio(
                median(r.one_full_floor_read.clone()),
                median(r.one_floor_read.clone())
            ),
        );
        println!(
            "| git processes per refresh (cold / no-op / one commit) | {} | {} / {} / {} | | | | | ≤ 4 |",
            r.n, r.spawns_cold, r.spawns_noop, r.spawns_one
        );
        println!(
            "| RSS with the snapshot held (VmRSS / VmHWM; after GET /api/stacks) | {} | {} / {}; {} / {} | | | | | ≤ 64 MiB (10k) |",
            r.n,
            kib(r.rss_kib),
            kib(r.hwm_kib),
            kib(r.rss_after_api_kib),
            kib(r.hwm_after_api_kib)
        );
        println!(
            "| GET /api/stacks ({:.1} MiB of JSON) | {} | {} | | | | | ≤ 100 ms (10k) |",
            r.api_bytes as f64 / 1024.0 / 1024.0,
            r.n,
            ms(median(r.api_stacks.clone()))
        );
        println!(
            "| {burst}-webhook burst: p50 / p99 / max, refreshes that ran | {} | {} / {} / {}, {} refreshes (in {}; {} non-2xx) | | | | | p99 < 10 ms, ≤ 2 refreshes |",
            r.n,
            ms(median(r.burst_p50.clone())),
            ms(median(r.burst_p99.clone())),
            ms(median(r.burst_max.clone())),
            median_u64(r.burst_refreshes.clone()),
            ms(median(r.burst_total.clone())),
            r.burst_non_2xx,
        );
        for (sender, forge) in &r.burst_forges {
            println!(
                "| {burst}-webhook burst from {sender}: p50 / p99 / max | {} | {} / {} / {} ({} non-2xx) | | | | | p99 < 10 ms |",
                r.n,
                ms(median(forge.p50.clone())),
                ms(median(forge.p99.clone())),
                ms(median(forge.max.clone())),
                forge.non_2xx,
            );
        }
    }
    if let Some(rec) = &reconciled {
        println!(
            "| no-op reconcile over synced stacks: docker / compose processes | {} | {} {:?} / {} | | | | | ≤ 2 docker, 0 compose |",
            rec.stacks,
            rec.docker.len(),
            rec.docker,
            rec.compose.iter().filter(|c| *c != "version").count(),
        );
    }
    println!();
    for r in &results {
        println!(
            "N = {}: {} stacks; one-commit breakdown (floor): fetch {}, then diff-tree + cat-file {} vs ls-tree + cat-file of all {}; full reader took the incremental path {} times (expected 0)",
            r.n,
            r.stacks,
            ms(median(r.fetch_one.clone())),
            ms(median(r.one_floor_read.clone())),
            ms(median(r.one_full_floor_read.clone())),
            r.incremental_reads,
        );
    }
    if let Some(rec) = &reconciled {
        println!(
            "reconcile: host prepared with {} exited containers (`docker run … true` with a sync's labels) in {}; {} of {} recognised as synced with {} compose runs at start-up",
            rec.stacks,
            ms(rec.prepare),
            rec.synced,
            rec.stacks,
            rec.startup_compose.len()
        );
    }
}
