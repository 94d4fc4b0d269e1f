//! Sync benchmark on the real Docker engine (run by `scripts/bench-sync.sh`).
//!
//! 1. Webhook → running: a one-service stack is changed in Git, a signed push webhook is sent,
//!    and the clock stops when the container with the new content hash runs and the API says
//!    `synced`. Baseline in the same run: `compose up -d` of the same change by hand (the
//!    least any tool must wait for).
//! 2. No-op reconcile over the demo stacks: the docker and compose processes one reconcile
//!    spawns when nothing changed, counted with recording wrappers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use docker_cd::app;
use docker_cd::config::{Args, ChildEnv, Config};
use docker_cd::reconcile::Reason;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET: &str = "bench-secret";
const IMAGE: &str = "docker-cd-test/busybox:latest";

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

fn compose_file(value: &str) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    init: true\n    environment:\n      ROUND: \"{value}\"\n"
    )
}

fn remove_project(project: &str) {
    let filter = format!("label=com.docker.compose.project={project}");
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
        let out = Command::new("docker").args(&list).output().unwrap();
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("docker").args(&rm).args(&ids).output();
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|r| r.parse().unwrap())
        .unwrap_or(5);
    let root = std::env::current_dir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let tag = format!("dcdbench{}", std::process::id());
    let one = format!("{tag}-one");
    let demo: Vec<String> = ["web", "worker", "cache"]
        .iter()
        .map(|n| format!("{tag}-{n}"))
        .collect();
    let projects: Vec<String> = std::iter::once(one.clone())
        .chain(demo.iter().cloned())
        .collect();
    struct Cleanup(Vec<String>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for p in &self.0 {
                remove_project(p);
            }
        }
    }
    let _cleanup = Cleanup(projects.clone());

    // The repository: one single-service stack plus the demo stacks under unique names.
    run(
        s,
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
        s,
        "git",
        &["init", "--quiet", "--initial-branch=main", "work"],
    );
    let work = s.join("work");
    std::fs::create_dir_all(work.join(&one)).unwrap();
    std::fs::write(work.join(&one).join("compose.yaml"), compose_file("0")).unwrap();
    for (name, dest) in ["web", "worker", "cache"].iter().zip(&demo) {
        let from = root.join("fixtures/demo/stacks").join(name);
        run(
            &root,
            "cp",
            &[
                "-a",
                &from.display().to_string(),
                &work.join(dest).display().to_string(),
            ],
        );
    }
    // The demo's web stack publishes 127.0.0.1:18080; move it aside in case a demo runs.
    let web_compose = work.join(&demo[0]).join("compose.yaml");
    let text = std::fs::read_to_string(&web_compose)
        .unwrap()
        .replace("18080", "18981");
    std::fs::write(&web_compose, text).unwrap();
    run(&work, "git", &["add", "-A"]);
    run(&work, "git", &["commit", "--quiet", "-m", "bench stacks"]);
    let origin = format!("file://{}", s.join("origin.git").display());
    run(&work, "git", &["push", "--quiet", &origin, "HEAD:main"]);

    let docker_real = which::which("docker").unwrap();
    let (docker_bin, docker_log) = recorder(s, "docker", &docker_real);
    // Like docker-cd itself: the plugin when there is one (its runs are then docker runs).
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let compose_bin = if plugin {
        None
    } else {
        which::which("docker-compose")
            .ok()
            .map(|real| recorder(s, "docker-compose", &real))
    };
    let args = Args {
        git_repo_url: Some(origin.clone()),
        git_revision: "main".into(),
        git_ssh_accept_new_host_keys: "false".into(),
        git_timeout: "60s".into(),
        data_dir: s.join("data"),
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
        history_limit: "20".into(),
        rollback_on_failure: "false".into(),
        log_format: "text".into(),
        docker_bin: Some(docker_bin),
        compose_bin: compose_bin.as_ref().map(|(bin, _)| bin.clone()),
        ..Args::default()
    };
    let env = ChildEnv {
        vars: ["PATH", "HOME"]
            .iter()
            .filter_map(|k| std::env::var_os(k).map(|v| ((*k).into(), v)))
            .collect(),
    };
    let config = Config::validate(args, env).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = app::start(config, listener).await.unwrap();
    let base = format!("http://{}", app.addr);
    let client = reqwest::Client::new();

    let synced = async |path: &str, revision: &str| {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let stack: serde_json::Value = client
                .get(format!("{base}/api/stacks/{path}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if stack["status"] == "synced"
                && stack["syncedRevision"] == revision
                && stack["containersRunning"].as_u64() >= Some(1)
            {
                return;
            }
            assert!(Instant::now() < deadline, "not synced: {stack}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let tip = run(&work, "git", &["rev-parse", "HEAD"]);
    for p in [&one].into_iter().chain(&demo) {
        synced(p, &tip).await;
    }

    // 1. Webhook → running, against compose by hand.
    let mut ours = Vec::new();
    let mut by_hand = Vec::new();
    let manual_dir = s.join("manual");
    std::fs::create_dir_all(&manual_dir).unwrap();
    let manual_project = format!("{tag}-manual");
    let _cleanup_manual = Cleanup(vec![manual_project.clone()]);
    let compose_cmd = compose_bin
        .as_ref()
        .map(|_| vec!["docker-compose".to_owned()])
        .unwrap_or_else(|| vec!["docker".to_owned(), "compose".to_owned()]);
    for round in 1..=rounds {
        std::fs::write(
            work.join(&one).join("compose.yaml"),
            compose_file(&round.to_string()),
        )
        .unwrap();
        run(
            &work,
            "git",
            &["commit", "--quiet", "-am", &format!("round {round}")],
        );
        run(&work, "git", &["push", "--quiet", &origin, "HEAD:main"]);
        let commit = run(&work, "git", &["rev-parse", "HEAD"]);
        let body = serde_json::json!({
            "ref": "refs/heads/main", "after": commit, "repository": {"full_name": "bench/bench"}
        })
        .to_string();
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let started = Instant::now();
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
        synced(&one, &commit).await;
        ours.push(started.elapsed());

        std::fs::write(
            manual_dir.join("compose.yaml"),
            compose_file(&round.to_string()),
        )
        .unwrap();
        let mut cmd = Command::new(&compose_cmd[0]);
        cmd.args(&compose_cmd[1..])
            .args(["--project-name", &manual_project, "--project-directory"])
            .arg(&manual_dir)
            .arg("--file")
            .arg(manual_dir.join("compose.yaml"))
            .args(["up", "--detach", "--remove-orphans"]);
        let started = Instant::now();
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        by_hand.push(started.elapsed());
    }

    // 2. No-op reconcile over the demo stacks (and the single one): count children.
    let docker_before = lines(&docker_log).len();
    let compose_before = compose_bin
        .as_ref()
        .map(|(_, log)| lines(log).len())
        .unwrap_or(0);
    app.reconcile.as_ref().unwrap().request(Reason::Tick);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let docker_calls = lines(&docker_log)[docker_before..].to_vec();
    let compose_calls = compose_bin
        .as_ref()
        .map(|(_, log)| lines(log)[compose_before..].to_vec())
        .unwrap_or_default();
    app.stop().await;

    let (ours, base_time) = (median(ours), median(by_hand));
    println!(
        "sync benchmark: {rounds} rounds, medians, compose: {}",
        compose_cmd.join(" ")
    );
    println!(
        "webhook -> new container running and synced (one-service stack): {}   compose up -d by hand: {}   ratio {:.2}x",
        ms(ours),
        ms(base_time),
        ours.as_secs_f64() / base_time.as_secs_f64()
    );
    println!(
        "no-op reconcile over {} stacks (the 3 demo stacks + 1): {} docker process(es) {:?}, {} compose process(es)",
        projects.len(),
        docker_calls.len(),
        docker_calls,
        compose_calls.len()
    );
}
