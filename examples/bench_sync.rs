//! Sync benchmark on the real Docker engine (run by `scripts/bench-sync.sh`).
//!
//! 1. Webhook → running: a one-service stack is changed in Git, a signed push webhook is sent,
//!    and the clock stops when `/api/stacks` says `synced` at the new revision with the
//!    container running (a sync waits for health, so `healthy` too). Two stacks: one without
//!    a healthcheck, against `compose up -d` by hand of the same change; one with a healthcheck
//!    of 1 s interval, against `compose up -d --wait` by hand (both then wait for health).
//!    Same run, same image; medians over the rounds.
//! 2. Cold start: 24 one-service stacks whose healthcheck passes only some 2 s after start
//!    (`sleep 2; touch /tmp/ready`), from `app::start` until all 24 are `synced` + `healthy`,
//!    with `SYNC_CONCURRENCY=4` and `1` in the same run (empty data dir and host each time).
//! 3. Health between syncs: a synced stack's healthcheck is made to fail, then pass again
//!    (`docker exec … rm`/`touch` of a file); the time from the engine's `health_status:
//!    healthy` event (its timestamp) to `/api/stacks` reading `healthy`, at the shortest
//!    `RECONCILE_INTERVAL` (5 s).
//! 4. Docker processes per reconcile tick with many synced stacks (default 1,000; the second
//!    argument): the host is prepared directly with one running `sleep` container per stack
//!    carrying exactly the labels a sync writes, the stacks are recognised, and one tick is
//!    counted right after (containers up for less than a minute need an inspect) and one when
//!    every container has been up for over a minute (steady host).
//! 5. No-op reconcile over the demo stacks (and the single ones of 1): the docker and compose
//!    processes one reconcile spawns when nothing changed, counted with recording wrappers.
//!
//! Every container, network and volume the benchmark creates carries its tag in its name and
//! is removed at the end, also when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use docker_cd::app::{self, App};
use docker_cd::config::{Args, ChildEnv, Config};
use docker_cd::git::GitReader;
use docker_cd::reconcile::Reason;
use docker_cd::stack::labels::{self, SyncLabels};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

const SECRET: &str = "bench-secret";
const IMAGE: &str = "docker-cd-test/busybox:latest";
/// The stacks of the cold start.
const COLD_STACKS: usize = 24;
/// The shortest resync tick docker-cd accepts (`MIN_POLL_INTERVAL`).
const TICK: &str = "5s";

fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn docker(args: &[&str]) -> String {
    run(Path::new("."), "docker", args)
}

/// A wrapper that logs each run's first non-option argument, then execs the real binary.
fn recorder(dir: &Path, name: &str, real: &Path) -> (PathBuf, PathBuf) {
    let log = dir.join(format!("{name}.log"));
    let script = dir.join(name);
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in -*) ;; *) echo \"$a\" >> '{}'; break ;; esac; done\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, log)
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// One service, no healthcheck.
fn compose_file(value: &str) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    init: true\n    environment:\n      ROUND: \"{value}\"\n"
    )
}

/// One service with a healthcheck of 1 s interval that passes at its first run.
fn compose_checked(value: &str) -> String {
    format!(
        "{}    healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: 1s\n      timeout: 1s\n      retries: 3\n",
        compose_file(value)
    )
}

/// One service whose healthcheck (every 1 s) passes once `/tmp/ready` exists: `ready_after`
/// seconds after start; a failing check turns it unhealthy at once (`retries: 1`).
fn compose_ready_file(ready_after: u32) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"sleep {ready_after}; touch /tmp/ready; exec sleep 3600\"]\n    init: true\n    healthcheck:\n      test: [\"CMD\", \"test\", \"-f\", \"/tmp/ready\"]\n      interval: 1s\n      timeout: 1s\n      retries: 1\n      start_period: 60s\n"
    )
}

/// Removes every container, network and volume whose name contains `tag`, ten at a time (this
/// machine's engine has hung removing 100 running containers at once).
fn remove_tagged(tag: &str) -> usize {
    let filter = format!("name={tag}");
    let mut removed = 0;
    for (list, rm) in [
        (
            vec!["ps", "-aq", "--filter", filter.as_str()],
            vec!["rm", "-f", "-v"],
        ),
        (
            vec!["network", "ls", "-q", "--filter", filter.as_str()],
            vec!["network", "rm"],
        ),
        (
            vec!["volume", "ls", "-q", "--filter", filter.as_str()],
            vec!["volume", "rm", "-f"],
        ),
    ] {
        let Ok(out) = Command::new("docker").args(&list).output() else {
            continue;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        for chunk in ids.chunks(10) {
            let _ = Command::new("docker")
                .args(&rm)
                .args(chunk)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        removed += ids.len();
    }
    removed
}

/// Removes what the benchmark created when dropped: at the end, or while a panic unwinds.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let removed = remove_tagged(&self.0);
        eprintln!("cleanup: removed {removed} containers, networks and volumes");
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// A bare origin and a work tree that pushes to it.
struct Repo {
    work: PathBuf,
    origin: String,
}

impl Repo {
    fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        run(
            dir,
            "git",
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                "origin.git",
            ],
        );
        run(
            dir,
            "git",
            &["init", "--quiet", "--initial-branch=main", "work"],
        );
        Self {
            work: dir.join("work"),
            origin: format!("file://{}", dir.join("origin.git").display()),
        }
    }

    fn write(&self, stack: &str, compose: &str) {
        std::fs::create_dir_all(self.work.join(stack)).unwrap();
        std::fs::write(self.work.join(stack).join("compose.yaml"), compose).unwrap();
    }

    /// Commits everything and pushes; the new commit.
    fn push(&self, message: &str) -> String {
        run(&self.work, "git", &["add", "-A"]);
        run(&self.work, "git", &["commit", "--quiet", "-m", message]);
        run(
            &self.work,
            "git",
            &["push", "--quiet", &self.origin, "HEAD:main"],
        );
        run(&self.work, "git", &["rev-parse", "HEAD"])
    }
}

/// What every run of the service shares.
struct Host {
    docker_bin: PathBuf,
    docker_log: PathBuf,
    /// The v1 binary's recorder, when there is no plugin.
    compose_bin: Option<(PathBuf, PathBuf)>,
    env: ChildEnv,
}

impl Host {
    fn args(&self, repo: &Repo, data_dir: &Path) -> Args {
        Args {
            git_repo_url: Some(repo.origin.clone()),
            git_revision: "main".into(),
            git_ssh_accept_new_host_keys: "false".into(),
            git_timeout: "60s".into(),
            data_dir: data_dir.to_owned(),
            listen_addr: "127.0.0.1".into(),
            port: "0".into(),
            webhook_secret: Some(SECRET.into()),
            refresh_poll_interval: "off".into(),
            reconcile_enabled: "true".into(),
            reconcile_remove_enabled: "false".into(),
            reconcile_interval: "1h".into(),
            drift_policy: "revert".into(),
            compose_timeout: "5m".into(),
            sync_health_timeout: "2m".into(),
            sync_concurrency: "4".into(),
            sync_windows: String::new(),
            history_limit: "20".into(),
            rollback_on_failure: "false".into(),
            log_format: "text".into(),
            docker_bin: Some(self.docker_bin.clone()),
            compose_bin: self.compose_bin.as_ref().map(|(bin, _)| bin.clone()),
            ..Args::default()
        }
    }

    fn config(&self, args: Args) -> Config {
        Config::validate(args, self.env.clone()).unwrap()
    }

    fn docker_calls(&self) -> usize {
        lines(&self.docker_log).len()
    }

    fn compose_calls(&self) -> usize {
        self.compose_bin
            .as_ref()
            .map(|(_, log)| lines(log).len())
            .unwrap_or(0)
    }

    /// The docker and compose processes one reconcile spawns: requested by hand, then given
    /// a few seconds to finish.
    async fn count_tick(&self, app: &App) -> (Vec<String>, Vec<String>) {
        let docker_before = self.docker_calls();
        let compose_before = self.compose_calls();
        app.reconcile.as_ref().unwrap().request(Reason::Tick);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.docker_calls() == docker_before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Done when no process started for 3 s.
        let mut seen = self.docker_calls();
        loop {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let now = self.docker_calls();
            if now == seen {
                break;
            }
            seen = now;
        }
        let docker_calls = lines(&self.docker_log)[docker_before..].to_vec();
        let compose_calls = self
            .compose_bin
            .as_ref()
            .map(|(_, log)| lines(log)[compose_before..].to_vec())
            .unwrap_or_default();
        (docker_calls, compose_calls)
    }
}

async fn start(config: Config) -> (App, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = app::start(config, listener).await.unwrap();
    let base = format!("http://{}", app.addr);
    (app, base)
}

/// The records of `/api/stacks` (the store's; no engine read on this endpoint).
async fn records(client: &reqwest::Client, base: &str) -> Vec<Value> {
    client
        .get(format!("{base}/api/stacks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls `/api/stacks` every `every` until `done` holds for the records, or panics after
/// `limit`.
async fn wait_until(
    client: &reqwest::Client,
    base: &str,
    every: Duration,
    limit: Duration,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        let all = records(client, base).await;
        if done(&all) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached in {limit:?}: {all:?}"
        );
        tokio::time::sleep(every).await;
    }
}

fn record<'a>(all: &'a [Value], path: &str) -> Option<&'a Value> {
    all.iter().find(|r| r["path"] == path)
}

/// `synced` at `revision` with a container running, and `healthy`.
fn is_synced(r: Option<&Value>, revision: &str) -> bool {
    r.is_some_and(|r| {
        r["status"] == "synced"
            && r["syncedRevision"] == revision
            && r["containersRunning"].as_u64() >= Some(1)
            && r["health"] == "healthy"
    })
}

async fn webhook(client: &reqwest::Client, base: &str, commit: &str) {
    let body = serde_json::json!({
        "ref": "refs/heads/main", "after": commit, "repository": {"full_name": "bench/bench"}
    })
    .to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let answer = client
        .post(format!("{base}/api/webhook"))
        .header("x-github-event", "push")
        .header("x-hub-signature-256", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
}

/// `compose up` by hand of `compose` as project `project` in `dir`, timed.
fn by_hand(
    compose_cmd: &[String],
    dir: &Path,
    project: &str,
    compose: &str,
    wait: bool,
) -> Duration {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("compose.yaml"), compose).unwrap();
    let mut cmd = Command::new(&compose_cmd[0]);
    cmd.args(&compose_cmd[1..])
        .args(["--project-name", project, "--project-directory"])
        .arg(dir)
        .arg("--file")
        .arg(dir.join("compose.yaml"))
        .args(["up", "--detach", "--remove-orphans"]);
    if wait {
        cmd.arg("--wait");
    }
    let started = Instant::now();
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

#[tokio::main]
async fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|r| r.parse().unwrap())
        .unwrap_or(5);
    let many: usize = std::env::args()
        .nth(2)
        .map(|r| r.parse().unwrap())
        .unwrap_or(1000);
    let root = std::env::current_dir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let tag = format!("dcdbench{}", std::process::id());
    let _cleanup = Cleanup(tag.clone());
    let client = reqwest::Client::new();

    let docker_real = which::which("docker").unwrap();
    let (docker_bin, docker_log) = recorder(s, "docker", &docker_real);
    // Like docker-cd itself: the plugin when there is one (its runs are then docker runs).
    let plugin = Command::new("docker")
        .args(["compose", "version", "--short"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let compose_bin = if plugin.is_some() {
        None
    } else {
        which::which("docker-compose")
            .ok()
            .map(|real| recorder(s, "docker-compose", &real))
    };
    let compose_cmd = compose_bin
        .as_ref()
        .map(|_| vec!["docker-compose".to_owned()])
        .unwrap_or_else(|| vec!["docker".to_owned(), "compose".to_owned()]);
    let host = Host {
        docker_bin,
        docker_log,
        compose_bin,
        env: ChildEnv {
            vars: ["PATH", "HOME"]
                .iter()
                .filter_map(|k| std::env::var_os(k).map(|v| ((*k).into(), v)))
                .collect(),
        },
    };
    println!(
        "sync benchmark: {rounds} rounds, medians; compose: {} {}",
        compose_cmd.join(" "),
        plugin.as_deref().unwrap_or("(v1)")
    );

    let only = std::env::var("BENCH_SYNC_ONLY").unwrap_or_default();
    if only == "many" {
        many_section(&host, s, &tag, &client, many).await;
        return;
    }
    // 1. Webhook → running (and 5. the no-op reconcile), in one service run.
    let (hook, noop) = webhook_rounds(&host, s, &root, &tag, &compose_cmd, &client, rounds).await;
    println!(
        "webhook -> new container running, synced and healthy, no healthcheck (healthy after docker-cd's 2 s settle): {}   compose up -d by hand: {}   ratio {:.2}x",
        ms(hook.plain.0),
        ms(hook.plain.1),
        hook.plain.0.as_secs_f64() / hook.plain.1.as_secs_f64()
    );
    println!(
        "webhook -> new container running, synced and healthy, healthcheck every 1 s: {}   compose up -d --wait by hand: {}   ratio {:.2}x (target <= 1.3x)",
        ms(hook.checked.0),
        ms(hook.checked.1),
        hook.checked.0.as_secs_f64() / hook.checked.1.as_secs_f64()
    );
    println!(
        "no-op reconcile over 5 stacks (the 3 demo stacks + 2): {} docker process(es) {:?}, {} compose process(es)",
        noop.0.len(),
        noop.0,
        noop.1.len()
    );
    // Each figure is printed before its section cleans up: a removal that hangs in the
    // engine must not lose it.
    remove_tagged(&tag);
    // BENCH_SYNC_ONLY=webhook: only the first section (to study it, e.g. with RUST_LOG=debug);
    // =many: only the last one.
    if only == "webhook" {
        return;
    }

    // 2. Cold start, SYNC_CONCURRENCY 4 against 1.
    let mut cold = Vec::new();
    for concurrency in [4, 1] {
        let took = cold_start(&host, s, &tag, &client, concurrency).await;
        remove_tagged(&tag);
        eprintln!(
            "  cold start, SYNC_CONCURRENCY={concurrency}: {}",
            secs(took.0)
        );
        cold.push(took);
    }
    println!(
        "cold start of {COLD_STACKS} one-service stacks (healthcheck every 1 s, passes once `sleep 2; touch /tmp/ready` ran) until all synced + healthy: SYNC_CONCURRENCY=4 {}   SYNC_CONCURRENCY=1 {}   {:.2}x faster (target >= 2.5x)",
        secs(cold[0].0),
        secs(cold[1].0),
        cold[1].0.as_secs_f64() / cold[0].0.as_secs_f64()
    );
    println!(
        "reconcile tick right after the cold start ({COLD_STACKS} stacks synced, containers (healthy)): {} docker process(es) {:?}",
        cold[0].1.len(),
        cold[0].1
    );

    // 3. Health between syncs.
    let turns = health_turns(&host, s, &tag, &client, rounds).await;
    let max = turns.iter().max().copied().unwrap();
    let min = turns.iter().min().copied().unwrap();
    println!(
        "container turns healthy (engine event) -> /api/stacks says healthy, between syncs, RECONCILE_INTERVAL={TICK}: median {}   min {}   max {}   over {} rounds (target <= one interval + 1 s = 6000 ms)",
        ms(median(turns.clone())),
        ms(min),
        ms(max),
        turns.len()
    );
    remove_tagged(&tag);

    many_section(&host, s, &tag, &client, many).await;
}

/// 4. Docker processes per tick with many synced stacks, printed, then removed.
async fn many_section(host: &Host, s: &Path, tag: &str, client: &reqwest::Client, many: usize) {
    // 4. Docker processes per tick with many synced stacks.
    let ticks = many_stacks(host, s, tag, client, many).await;
    println!(
        "reconcile tick over {many} synced stacks (host prepared directly: {many} running `sleep` containers with a sync's labels, in {}; recognised with {} compose process(es)): right after (containers up < 1 min): {} docker process(es) {:?}, {} compose   steady (all up > 1 min, {} of {many} healthy): {} docker process(es) {:?}, {} compose (target <= 2)",
        secs(ticks.prepare),
        ticks.startup_compose,
        ticks.fresh.0.len(),
        ticks.fresh.0,
        ticks.fresh.1.len(),
        ticks.healthy,
        ticks.steady.0.len(),
        ticks.steady.0,
        ticks.steady.1.len(),
    );
    remove_tagged(tag);
}

/// Medians of docker-cd and by hand: without and with a healthcheck.
struct Hook {
    plain: (Duration, Duration),
    checked: (Duration, Duration),
}

async fn webhook_rounds(
    host: &Host,
    s: &Path,
    root: &Path,
    tag: &str,
    compose_cmd: &[String],
    client: &reqwest::Client,
    rounds: usize,
) -> (Hook, (Vec<String>, Vec<String>)) {
    let repo = Repo::new(&s.join("hook"));
    let one = format!("{tag}-one");
    let checked = format!("{tag}-hc");
    let demo: Vec<String> = ["web", "worker", "cache"]
        .iter()
        .map(|n| format!("{tag}-{n}"))
        .collect();
    repo.write(&one, &compose_file("0"));
    repo.write(&checked, &compose_checked("0"));
    for (name, dest) in ["web", "worker", "cache"].iter().zip(&demo) {
        let from = root.join("fixtures/demo/stacks").join(name);
        run(
            root,
            "cp",
            &[
                "-a",
                &from.display().to_string(),
                &repo.work.join(dest).display().to_string(),
            ],
        );
    }
    // The demo's web stack publishes 127.0.0.1:18080; move it aside in case a demo runs.
    // Its x-docker-cd.dependsOn names the demo's cache stack, here under the tagged path.
    let web_compose = repo.work.join(&demo[0]).join("compose.yaml");
    let text = std::fs::read_to_string(&web_compose).unwrap();
    let depends = format!("dependsOn: [{}]", demo[2]);
    let edited = text
        .replace("18080", "18981")
        .replace("dependsOn: [cache]", &depends);
    assert!(
        edited.contains(&depends),
        "the demo's web stack changed: {web_compose:?}"
    );
    std::fs::write(&web_compose, edited).unwrap();
    // The demo's worker waits for a Saturday-night sync window; here it syncs at once.
    let worker_compose = repo.work.join(&demo[1]).join("docker-compose.yml");
    let text = std::fs::read_to_string(&worker_compose).unwrap();
    let window = "\n    - {schedule: \"0 2 * * 6\", duration: 2h}\n";
    assert!(
        text.contains(window),
        "the demo's worker stack changed: {worker_compose:?}"
    );
    std::fs::write(&worker_compose, text.replace(window, " []\n")).unwrap();
    let tip = repo.push("bench stacks");

    let (app, base) = start(host.config(host.args(&repo, &s.join("hook-data")))).await;
    let all: Vec<&String> = [&one, &checked].into_iter().chain(&demo).collect();
    wait_until(
        client,
        &base,
        Duration::from_millis(100),
        Duration::from_secs(300),
        "first sync",
        |r| all.iter().all(|p| is_synced(record(r, p), &tip)),
    )
    .await;

    // The projects by hand exist before the first round, like docker-cd's: every timed `up`
    // recreates a container.
    for (path, make, wait) in [
        (&one, compose_file as fn(&str) -> String, false),
        (&checked, compose_checked, true),
    ] {
        let project = format!("{path}-manual");
        by_hand(compose_cmd, &s.join(&project), &project, &make("0"), wait);
    }
    let mut times = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for round in 1..=rounds {
        for (i, (path, make, wait)) in [
            (&one, compose_file as fn(&str) -> String, false),
            (&checked, compose_checked, true),
        ]
        .into_iter()
        .enumerate()
        {
            let value = round.to_string();
            repo.write(path, &make(&value));
            let commit = repo.push(&format!("round {round} {path}"));
            let started = Instant::now();
            webhook(client, &base, &commit).await;
            wait_until(
                client,
                &base,
                Duration::from_millis(20),
                Duration::from_secs(300),
                "webhook sync",
                |r| is_synced(record(r, path), &commit),
            )
            .await;
            times[2 * i].push(started.elapsed());
            let project = format!("{path}-manual");
            times[2 * i + 1].push(by_hand(
                compose_cmd,
                &s.join(&project),
                &project,
                &make(&value),
                wait,
            ));
        }
    }
    for (i, t) in times.iter().enumerate() {
        let rounds: Vec<String> = t.iter().map(|d| ms(*d)).collect();
        eprintln!(
            "  webhook rounds, {}: {rounds:?}",
            [
                "docker-cd, no healthcheck",
                "up -d",
                "docker-cd, healthcheck",
                "up -d --wait"
            ][i]
        );
    }

    // 5. No-op reconcile over the demo stacks and the two single ones.
    let noop = host.count_tick(&app).await;
    app.stop().await;
    let [a, b, c, d] = times.map(median);
    (
        Hook {
            plain: (a, b),
            checked: (c, d),
        },
        noop,
    )
}

/// From `app::start` until all the stacks are `synced` + `healthy`, and the processes of the
/// next tick.
async fn cold_start(
    host: &Host,
    s: &Path,
    tag: &str,
    client: &reqwest::Client,
    concurrency: usize,
) -> (Duration, Vec<String>) {
    let dir = s.join(format!("cold{concurrency}"));
    let repo = Repo::new(&dir);
    let paths: Vec<String> = (0..COLD_STACKS).map(|i| format!("{tag}-c{i:02}")).collect();
    for p in &paths {
        repo.write(p, &compose_ready_file(2));
    }
    let tip = repo.push("cold stacks");
    let mut args = host.args(&repo, &dir.join("data"));
    args.sync_concurrency = concurrency.to_string();
    let config = host.config(args);
    let started = Instant::now();
    let (app, base) = start(config).await;
    wait_until(
        client,
        &base,
        Duration::from_millis(100),
        Duration::from_secs(600),
        "cold start",
        |r| paths.iter().all(|p| is_synced(record(r, p), &tip)),
    )
    .await;
    let took = started.elapsed();
    let (docker, _) = host.count_tick(&app).await;
    app.stop().await;
    (took, docker)
}

/// A `docker events` child that reports each `health_status: healthy` of `container` with the
/// engine's timestamp.
fn health_events(container: &str) -> (std::process::Child, std::sync::mpsc::Receiver<SystemTime>) {
    let mut child = Command::new("docker")
        .args([
            "events",
            "--filter",
            &format!("container={container}"),
            "--filter",
            "event=health_status",
            "--format",
            "{{.TimeNano}} {{.Status}}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let Some((nanos, status)) = line.split_once(' ') else {
                continue;
            };
            if status.trim() == "health_status: healthy" {
                let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos.parse().unwrap());
                if tx.send(at).is_err() {
                    return;
                }
            }
        }
    });
    (child, rx)
}

/// Kills the child when dropped.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// For each round: the time from the engine saying the container is healthy again to
/// `/api/stacks` saying the stack is.
async fn health_turns(
    host: &Host,
    s: &Path,
    tag: &str,
    client: &reqwest::Client,
    rounds: usize,
) -> Vec<Duration> {
    let dir = s.join("turns");
    let repo = Repo::new(&dir);
    let path = format!("{tag}-flip");
    repo.write(&path, &compose_ready_file(0));
    let tip = repo.push("flip stack");
    let mut args = host.args(&repo, &dir.join("data"));
    args.reconcile_interval = TICK.into();
    let (app, base) = start(host.config(args)).await;
    let health_is = |want: &'static str| {
        let path = path.clone();
        move |r: &[Value]| record(r, &path).is_some_and(|r| r["health"] == want)
    };
    wait_until(
        client,
        &base,
        Duration::from_millis(100),
        Duration::from_secs(300),
        "flip stack synced",
        |r| is_synced(record(r, &path), &tip),
    )
    .await;
    let container = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={path}"),
    ]);
    let (child, events) = health_events(&container);
    let _events = Kill(child);
    let mut turns = Vec::new();
    for _ in 0..rounds {
        docker(&["exec", &container, "rm", "/tmp/ready"]);
        wait_until(
            client,
            &base,
            Duration::from_millis(50),
            Duration::from_secs(60),
            "degraded",
            health_is("degraded"),
        )
        .await;
        while events.try_recv().is_ok() {}
        docker(&["exec", &container, "touch", "/tmp/ready"]);
        wait_until(
            client,
            &base,
            Duration::from_millis(10),
            Duration::from_secs(60),
            "healthy again",
            health_is("healthy"),
        )
        .await;
        let seen = SystemTime::now();
        let healthy = events.recv_timeout(Duration::from_secs(10)).unwrap();
        turns.push(seen.duration_since(healthy).unwrap_or_default());
    }
    eprintln!(
        "  health turns: {:?}",
        turns.iter().map(|d| ms(*d)).collect::<Vec<_>>()
    );
    app.stop().await;
    turns
}

struct Ticks {
    prepare: Duration,
    /// Docker and compose processes of a tick right after the host was prepared.
    fresh: (Vec<String>, Vec<String>),
    /// … and once every container has been up for over a minute.
    steady: (Vec<String>, Vec<String>),
    healthy: usize,
    /// Compose processes while the stacks were recognised at start-up (the version check).
    startup_compose: usize,
}

async fn many_stacks(
    host: &Host,
    s: &Path,
    tag: &str,
    client: &reqwest::Client,
    n: usize,
) -> Ticks {
    let dir = s.join("many");
    let repo = Repo::new(&dir);
    for i in 0..n {
        repo.write(&format!("{tag}-m{i:04}"), &compose_file("0"));
    }
    repo.push("many stacks");
    let config = host.config(host.args(&repo, &dir.join("data")));
    let instance = labels::instance_id(config.git.repo.as_str(), config.git.deploy_dir.as_str());

    // What a sync of the tip would have written, read with docker-cd's own reader.
    let reader_data = tempfile::tempdir().unwrap();
    let reader = GitReader::open(&config.git, reader_data.path(), &host.env)
        .await
        .unwrap();
    let snapshot = reader.read(None).await.unwrap().unwrap();
    let synced_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let jobs: Vec<Vec<String>> = snapshot
        .stacks
        .values()
        .map(|stack| {
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
                format!("{project}-app-1"),
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
            for (k, v) in all {
                cmd.push("--label".into());
                cmd.push(format!("{k}={v}"));
            }
            cmd.extend([IMAGE.to_owned(), "sleep".into(), "3600".into()]);
            cmd
        })
        .collect();
    assert_eq!(jobs.len(), n);
    let started = Instant::now();
    let jobs = Arc::new(std::sync::Mutex::new(jobs));
    let workers: Vec<_> = (0..4)
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
    let prepared = Instant::now();
    let prepare = prepared - started;
    eprintln!("  prepared {n} running containers in {}", secs(prepare));

    let docker_before = host.docker_calls();
    let compose_before = host.compose_calls();
    let (app, base) = start(config).await;
    wait_until(
        client,
        &base,
        Duration::from_millis(500),
        Duration::from_secs(600),
        "recognised",
        |r| r.len() == n && r.iter().all(|r| r["status"] == "synced"),
    )
    .await;
    let startup: Vec<String> = lines(&host.docker_log)[docker_before..].to_vec();
    let startup_compose =
        startup.iter().filter(|l| *l == "compose").count() + host.compose_calls() - compose_before;
    let fresh = host.count_tick(&app).await;
    // Up for over a minute: a running container without healthcheck needs no inspect.
    let steady_at = prepared + Duration::from_secs(65);
    tokio::time::sleep_until(tokio::time::Instant::from_std(steady_at)).await;
    let steady = host.count_tick(&app).await;
    let healthy = records(client, &base)
        .await
        .iter()
        .filter(|r| r["health"] == "healthy")
        .count();
    app.stop().await;
    Ticks {
        prepare,
        fresh,
        steady,
        healthy,
        startup_compose,
    }
}
