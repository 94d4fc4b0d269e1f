//! Swarm mode on a real three-node cluster (SPEC §14): one manager and two workers, each a
//! Docker engine in a container, made by `scripts/swarm-cluster.sh up` and removed by its `down`
//! at the end, even when a step fails. docker-cd runs here and reaches the manager with
//! `DOCKER_HOST=tcp://…` (set by a recording `docker` wrapper, which also counts the deploys).
//!
//! One test function drives the scenarios in order on one cluster: spread and placement, a
//! `start-first` rolling update, a drained worker, a killed worker, removal from Git; then the
//! cluster goes and nothing of it may be left. Not part of `scripts/test.sh` (it needs root,
//! debootstrap and a Debian mirror for the node image); CI runs it as its own step. It fails,
//! never skips, when Docker or debootstrap is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::wrappers::{recorded, write_executable};
use common::{TestApp, TestRepo, find};
use serde_json::Value;

const DEPLOY: &str = "stacks";
const STACK: &str = "clu-web";
/// A second stack that stays in Git: docker-cd removes nothing when the snapshot would be empty.
const KEEP: &str = "clu-keep";
const SERVICE: &str = "clu-web_web";
const LONG: Duration = Duration::from_secs(180);
const LABEL: &str = "com.docker-cd.swarm-cluster=docker-cd-swarm";
const WORKER1: &str = "docker-cd-swarm-worker1";
const WORKER2: &str = "docker-cd-swarm-worker2";
const MANAGER: &str = "docker-cd-swarm-manager";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/swarm-cluster.sh")
}

/// The cluster, up for the test; `down` on drop (also when the test fails).
struct Cluster {
    docker_host: String,
    image: String,
}

impl Cluster {
    fn up() -> Self {
        let docker = Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .env_remove("DOCKER_HOST")
            .output();
        assert!(
            docker.as_ref().is_ok_and(|o| o.status.success()),
            "the cluster suite needs a Docker engine that answers: {docker:?}"
        );
        assert!(
            which::which("debootstrap").is_ok(),
            "the cluster suite needs debootstrap for its node image (apt-get install debootstrap)"
        );
        let out = Command::new(script()).arg("up").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let _ = Command::new(script()).arg("down").output();
            panic!("swarm-cluster.sh up failed:\n{stdout}\n{stderr}");
        }
        let field = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("no {key}= in swarm-cluster.sh up's output: {stdout}"))
                .to_owned()
        };
        eprintln!("{}", stderr.trim());
        Self {
            docker_host: field("DOCKER_HOST"),
            image: field("IMAGE"),
        }
    }

    /// `docker <args>` against the manager: (success, stdout).
    fn docker(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.docker_host)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        )
    }

    fn checked(&self, args: &[&str]) -> String {
        let (ok, out) = self.docker(args);
        assert!(ok, "docker {args:?} against the manager failed: {out}");
        out
    }

    /// The nodes of the service's tasks that should run and do, newest first.
    fn running_nodes(&self) -> Vec<String> {
        self.docker(&[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}} {{.CurrentState}}",
            SERVICE,
        ])
        .1
        .lines()
        .filter(|l| l.split(' ').nth(1) == Some("Running"))
        .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
        .collect()
    }

    fn down() -> String {
        let out = Command::new(script()).arg("down").output().unwrap();
        assert!(
            out.status.success(),
            "swarm-cluster.sh down failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        host_docker(&["ps", "-a", "--filter", &format!("label={LABEL}"), "-q"])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("down").output();
    }
}

/// `docker <args>` on the host's engine, stdout.
fn host_docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .env_remove("DOCKER_HOST")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A `docker` for the app: logs each call, then runs the real CLI against the manager.
fn remote_docker(dir: &Path, docker_host: &str) -> (PathBuf, PathBuf) {
    let real = which::which("docker").unwrap();
    let log = dir.join("docker-calls.log");
    let script = dir.join("docker");
    write_executable(
        &script,
        &format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nDOCKER_HOST='{docker_host}'\nexport DOCKER_HOST\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        ),
    );
    (script, log)
}

fn stack_deploys(log: &Path) -> usize {
    recorded(log)
        .iter()
        .filter(|c| c.starts_with("stack deploy") && !c.contains("--help"))
        .count()
}

/// The stack: three replicas on workers only, rolled `start-first`; a health check so a new
/// task is `starting` for a few seconds (a drain or a lost node is then seen as progressing).
fn compose(image: &str, greeting: &str) -> String {
    format!(
        r#"services:
  web:
    image: {image}
    command: ["sh", "-c", "while :; do sleep 3600; done"]
    environment:
      GREETING: {greeting}
    healthcheck:
      test: ["CMD", "true"]
      interval: 8s
      timeout: 3s
      retries: 3
    deploy:
      replicas: 3
      placement:
        constraints: ["node.role == worker"]
      update_config:
        order: start-first
        parallelism: 1
"#
    )
}

async fn stack(app: &TestApp) -> Option<Value> {
    let (code, body) = app.get_json("/api/stacks").await;
    assert_eq!(code, 200, "{body}");
    let stacks = body.as_array().cloned().unwrap_or_default();
    find(&stacks, STACK).cloned()
}

/// Polls the stack until `check` holds; `seen` gets every (status, health, running, total).
async fn wait_stack(
    app: &TestApp,
    what: &str,
    seen: &mut Vec<(String, String, u64, u64)>,
    check: impl Fn(Option<&Value>) -> bool,
) -> Option<Value> {
    let deadline = Instant::now() + LONG;
    loop {
        let s = stack(app).await;
        if let Some(s) = &s {
            let entry = (
                s["status"].as_str().unwrap_or_default().to_owned(),
                s["health"].as_str().unwrap_or_default().to_owned(),
                s["containersRunning"].as_u64().unwrap_or(0),
                s["containersTotal"].as_u64().unwrap_or(0),
            );
            if seen.last() != Some(&entry) {
                seen.push(entry);
            }
        }
        if check(s.as_ref()) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {LONG:?}; last: {s:?}; seen: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn healthy_at(s: Option<&Value>, revision: &str) -> bool {
    s.is_some_and(|s| {
        s["status"] == "synced"
            && s["health"] == "healthy"
            && s["syncedRevision"] == revision
            && s["containersRunning"] == 3
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_swarm_spreads_rolls_drains_loses_a_node_and_removes() {
    let cluster = Cluster::up();
    let dir = tempfile::tempdir().unwrap();
    let (docker_bin, calls) = remote_docker(dir.path(), &cluster.docker_host);

    let repo = TestRepo::new();
    repo.write(
        &format!("{DEPLOY}/{STACK}/compose.yaml"),
        compose(&cluster.image, "one"),
    );
    repo.write(
        &format!("{DEPLOY}/{KEEP}/compose.yaml"),
        format!(
            "services:\n  idle:\n    image: {}\n    command: [\"sh\", \"-c\", \"while :; do sleep 3600; done\"]\n",
            cluster.image
        ),
    );
    let first = repo.commit_and_push("a three-replica stack on the workers, and one that stays");

    let app = TestApp::start(&repo.url(), |a| {
        a.reconcile_enabled = "true".into();
        a.reconcile_remove_enabled = "true".into();
        a.reconcile_interval = "5s".into();
        a.refresh_poll_interval = "5s".into();
        a.git_deploy_dir = DEPLOY.into();
        a.deploy_mode = "swarm".into();
        a.docker_bin = Some(docker_bin.clone());
    })
    .await;
    app.run(async |app| {
        let mut seen = Vec::new();
        // 1. Spread over both workers, none on the manager.
        let started = Instant::now();
        wait_stack(app, "first sync healthy", &mut seen, |s| {
            healthy_at(s, &first)
        })
        .await;
        eprintln!("first deploy healthy after {:?}", started.elapsed());
        let nodes: BTreeSet<String> = cluster.running_nodes().into_iter().collect();
        assert!(
            nodes.len() >= 2,
            "3 replicas on at least two nodes: {nodes:?}"
        );
        assert!(
            !nodes.contains(MANAGER),
            "node.role == worker keeps tasks off the manager: {nodes:?}"
        );

        // 2. An env var changed in Git: rolled start-first, synced at the new revision.
        repo.write(
            &format!("{DEPLOY}/{STACK}/compose.yaml"),
            compose(&cluster.image, "two"),
        );
        let second = repo.commit_and_push("GREETING=two");
        let pushed = Instant::now();
        wait_stack(app, "the env change synced", &mut seen, |s| {
            healthy_at(s, &second)
        })
        .await;
        let order = cluster.checked(&[
            "service",
            "inspect",
            "--format",
            "{{.Spec.UpdateConfig.Order}}",
            SERVICE,
        ]);
        assert_eq!(order, "start-first");
        let env = cluster.checked(&[
            "service",
            "inspect",
            "--format",
            "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
            SERVICE,
        ]);
        assert!(env.contains("GREETING=two"), "{env}");
        let mut updated = false;
        while !updated {
            let state = cluster.checked(&[
                "service",
                "inspect",
                "--format",
                "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
                SERVICE,
            ]);
            updated = state == "completed";
            assert!(
                pushed.elapsed() < LONG,
                "the rolling update did not complete: {state}"
            );
            if !updated {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        eprintln!(
            "push to replicas updated and healthy: {:?}",
            pushed.elapsed()
        );
        let deploys_before_drain = stack_deploys(&calls);

        // 3. Drain worker1: its tasks move to worker2; the stack passes through progressing.
        seen.clear();
        cluster.checked(&["node", "update", "--availability", "drain", WORKER1]);
        wait_stack(app, "progressing after the drain", &mut seen, |s| {
            s.is_some_and(|s| s["health"] == "progressing")
        })
        .await;
        wait_stack(app, "healthy after the drain", &mut seen, |s| {
            healthy_at(s, &second)
        })
        .await;
        let nodes = cluster.running_nodes();
        assert_eq!(
            nodes,
            vec![WORKER2; 3],
            "the drained worker's tasks moved: {nodes:?}; seen {seen:?}"
        );
        cluster.checked(&["node", "update", "--availability", "active", WORKER1]);

        // 4. Kill worker2 (which runs all three): the swarm reschedules on worker1; the counts
        //    never include the lost node's tasks; docker-cd does not redeploy in a loop.
        seen.clear();
        let killed = Instant::now();
        host_docker(&["kill", WORKER2]);
        wait_stack(app, "not healthy after the kill", &mut seen, |s| {
            s.is_some_and(|s| s["health"] != "healthy")
        })
        .await;
        wait_stack(app, "healthy after the kill", &mut seen, |s| {
            healthy_at(s, &second)
        })
        .await;
        eprintln!(
            "killed worker to healthy again: {:?}; seen {seen:?}",
            killed.elapsed()
        );
        let nodes = cluster.running_nodes();
        assert_eq!(
            nodes,
            vec![WORKER1; 3],
            "rescheduled on the live worker: {nodes:?}"
        );
        // `docker service ls` alone read 3/3 throughout, then 5/3: the loss must show in the
        // counts, which never exceed the desired, and once down never bounce back up to count
        // the dead node's tasks before the replacements run (they only rise as those start).
        let counts: Vec<u64> = seen.iter().map(|(_, _, running, _)| *running).collect();
        assert!(
            seen.iter().all(|(_, _, r, t)| r <= t),
            "a count above the desired: {seen:?}"
        );
        let drop = counts.iter().position(|r| *r < 3);
        assert!(
            drop.is_some(),
            "the lost node's tasks were counted throughout: {seen:?}"
        );
        let after = &counts[drop.unwrap_or_default()..];
        assert!(
            after.windows(2).all(|w| w[0] <= w[1]),
            "the counts went back down after the loss: {seen:?}"
        );
        let deploys = stack_deploys(&calls) - deploys_before_drain;
        assert!(
            deploys <= 1,
            "docker-cd deployed {deploys} times during the drain and the node loss"
        );

        // 5. Removed from Git (removal enabled): removed from the cluster; the other stays.
        repo.remove(&format!("{DEPLOY}/{STACK}"));
        repo.commit_and_push("remove the stack");
        wait_stack(app, "the stack removed", &mut seen, |s| s.is_none()).await;
        let deadline = Instant::now() + LONG;
        loop {
            let left = cluster.checked(&[
                "service",
                "ls",
                "--filter",
                &format!("label=com.docker.stack.namespace={STACK}"),
                "-q",
            ]);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "services left after removal: {left}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;

    // 6. Nothing of the cluster is left.
    drop(cluster);
    assert_eq!(
        Cluster::down(),
        "",
        "containers of the cluster left after down"
    );
    assert_eq!(
        host_docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            "name=docker-cd-swarm-net"
        ]),
        "",
        "the cluster's network left after down"
    );
}
