//! Swarm mode end to end against the real Docker Engine (`DEPLOY_MODE=swarm|auto`): deploy,
//! change, refuse, remove, drift (revert and flag), restart, and the stack detail's services.
//!
//! `docker swarm init` is global to the engine, so the swarm tests never run concurrently with
//! each other: each takes [`SWARM_TESTS`] first. One test function drives the deploy scenarios
//! in order, another the health ones (a swarm init and leave cost a few seconds; health needs
//! its own settings). In each, the engine is put in swarm mode only if it is not in it already,
//! and then left again (`docker swarm leave --force`) when the test ends, even when it fails; compose-mode tests of other binaries keep working on
//! a swarm manager meanwhile (swarm tasks carry no compose labels). Stacks get names from
//! [`docker::unique_prefix`], and their services, networks, configs and secrets are removed on
//! drop, before the swarm is left.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::docker::{self, Cleanup};
use common::wrappers::{recorded, recording_tool};
use common::{TestApp, TestRepo, find, log_tail, publish};
use docker_cd::config::Args;
use serde_json::Value;

const DEPLOY: &str = "stacks";
/// Held by each swarm test for its whole run: one engine, one swarm at a time. A tokio mutex
/// because it is held across awaits; it is not poisoned by a failing test.
static SWARM_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One swarm test at a time, across test processes too (nextest runs each test in a process
/// of its own, where [`SWARM_TESTS`] alone would not see the others): the mutex, and an
/// exclusive `flock` on a file in the temp dir, both held until the guard drops.
async fn serial() -> (tokio::sync::MutexGuard<'static, ()>, std::fs::File) {
    let guard = SWARM_TESTS.lock().await;
    let file = tokio::task::spawn_blocking(|| {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(std::env::temp_dir().join("docker-cd-swarm-tests.lock"))
            .expect("the swarm tests' lock file");
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .expect("the swarm tests' lock");
        file
    })
    .await
    .expect("the lock task");
    (guard, file)
}
/// A stack deploy waits for its services to converge (swarm's 5 s stability check included).
const LONG: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Harness

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn docker_out(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("docker").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

fn swarm_state() -> String {
    docker_out(&[
        "info",
        "--format",
        "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
    ])
    .1
}

/// Puts the engine in swarm mode for the test and takes it out again on drop, unless it was a
/// manager already (then it is left as it was).
struct SwarmGuard {
    initialised: bool,
    /// `docker swarm init` creates the `docker_gwbridge` network and `leave` keeps it: removed
    /// again when it was not there before.
    gwbridge_existed: bool,
}

impl SwarmGuard {
    /// `None` (with a loud message) when the engine refuses swarm mode; panics under CI.
    fn init() -> Option<Self> {
        match swarm_state().as_str() {
            "active true" => {
                return Some(Self {
                    initialised: false,
                    gwbridge_existed: true,
                });
            }
            "inactive false" => {}
            other => {
                let why = format!(
                    "the engine is in swarm state {other:?}, not a manager and not free to init"
                );
                assert!(!in_ci(), "CI=true but {why}");
                eprintln!("\n*** SKIPPING swarm test: {why} ***\n");
                return None;
            }
        }
        let gwbridge_existed = docker_out(&["network", "inspect", "docker_gwbridge"]).0;
        let (ok, _, err) = docker_out(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        if !ok {
            assert!(!in_ci(), "CI=true but `docker swarm init` failed: {err}");
            eprintln!("\n*** SKIPPING swarm test: `docker swarm init` failed: {err} ***\n");
            return None;
        }
        Some(Self {
            initialised: true,
            gwbridge_existed,
        })
    }

    fn leave(&mut self) {
        if self.initialised {
            let (ok, _, err) = docker_out(&["swarm", "leave", "--force"]);
            assert!(
                ok || err.contains("not part of a swarm"),
                "swarm leave: {err}"
            );
            self.initialised = false;
            self.remove_gwbridge();
        }
    }
}

impl Drop for SwarmGuard {
    fn drop(&mut self) {
        if self.initialised {
            let _ = Command::new("docker")
                .args(["swarm", "leave", "--force"])
                .output();
            self.remove_gwbridge();
        }
    }
}

impl SwarmGuard {
    fn remove_gwbridge(&self) {
        if !self.gwbridge_existed {
            let _ = Command::new("docker")
                .args(["network", "rm", "docker_gwbridge"])
                .output();
        }
    }
}

/// Removes every stack named (services, networks, configs, secrets) on drop, and waits until
/// its networks are gone.
struct StackCleanup(Vec<String>);

impl Drop for StackCleanup {
    fn drop(&mut self) {
        for stack in &self.0 {
            remove_stack(stack);
        }
    }
}

fn remove_stack(stack: &str) {
    let filter = format!("label=com.docker.stack.namespace={stack}");
    if !docker::output(&["service", "ls", "-q", "--filter", &filter])
        .trim()
        .is_empty()
    {
        let _ = Command::new("docker").args(["stack", "rm", stack]).output();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for kind in ["service", "network", "config", "secret"] {
        loop {
            let ids = docker::output(&[kind, "ls", "-q", "--filter", &filter]);
            let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
            if ids.is_empty() || Instant::now() > deadline {
                break;
            }
            let mut args = vec![kind, "rm"];
            args.extend(ids);
            let _ = Command::new("docker").args(&args).output();
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

fn stack_deploys(calls: &[String]) -> usize {
    calls
        .iter()
        .filter(|c| c.starts_with("stack deploy") && !c.contains("--help"))
        .count()
}

async fn start(repo: &TestRepo, adjust: impl FnOnce(&mut Args)) -> TestApp {
    TestApp::start(&repo.url(), |a| {
        a.reconcile_enabled = "true".into();
        a.docker_bin = None;
        a.git_deploy_dir = DEPLOY.into();
        a.reconcile_interval = "5s".into();
        adjust(a);
    })
    .await
}

/// Polls `/api/stacks` until `check` holds, for up to [`LONG`].
async fn wait_for(
    app: &TestApp,
    prefix: &str,
    what: &str,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    common::wait_for(app, prefix, LONG, what, check).await
}

/// Polls a condition on the engine for up to [`LONG`].
async fn eventually(what: &str, check: impl FnMut() -> bool) {
    common::eventually(LONG, what, check).await
}

fn synced_and_running(stacks: &[Value], paths: &[&str]) -> bool {
    paths.iter().all(|p| {
        find(stacks, p).is_some_and(|s| {
            s["status"] == "synced"
                && s["containersRunning"].as_u64().unwrap_or(0) > 0
                && s["containersRunning"] == s["containersTotal"]
        })
    })
}

fn tree_id(repo: &TestRepo, path: &str) -> String {
    repo.git(&["rev-parse", &format!("HEAD:{DEPLOY}/{path}")])
}

/// One `docker service inspect` field of a stack's service.
fn service_field(stack: &str, service: &str, template: &str) -> String {
    docker::output(&[
        "service",
        "inspect",
        "--format",
        template,
        &format!("{stack}_{service}"),
    ])
    .trim()
    .to_owned()
}

fn service_label(stack: &str, service: &str, key: &str) -> String {
    service_field(
        stack,
        service,
        &format!("{{{{index .Spec.Labels \"{key}\"}}}}"),
    )
}

fn spec_replicas(stack: &str, service: &str) -> String {
    service_field(stack, service, "{{.Spec.Mode.Replicated.Replicas}}")
}

fn stack_services(stack: &str) -> Vec<String> {
    let filter = format!("label=com.docker.stack.namespace={stack}");
    docker::output(&[
        "service",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}}",
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

/// The API record without what legitimately differs between two deployments of the same
/// commit: times and runtime counts.
fn comparable(record: &Value) -> Value {
    let mut r = record.clone();
    for key in [
        "syncedAt",
        "lastSyncAt",
        "containersRunning",
        "containersTotal",
    ] {
        r.as_object_mut().unwrap().remove(key);
    }
    r
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_mode_deploys_changes_refuses_removes_reverts_drift_and_restarts_like_compose_mode() {
    let _serial = serial().await;
    let Some(mut swarm) = SwarmGuard::init() else {
        return;
    };
    let Some(prefix) = docker::begin("swarm") else {
        return;
    };
    let web = format!("{prefix}-web");
    let worker = format!("{prefix}-worker");
    let refused = format!("{prefix}-refused");
    // Dropped before `swarm`: stacks go first, then the engine leaves swarm mode.
    let _stacks = StackCleanup(vec![web.clone(), worker.clone(), refused.clone()]);
    let _compose = Cleanup::new([web.clone(), worker.clone()]);
    let node = docker::output(&[
        "node",
        "ls",
        "--filter",
        "role=manager",
        "--format",
        "{{.Hostname}}",
    ])
    .trim()
    .to_owned();

    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/portable");
    let repo = TestRepo::new();
    repo.copy_dir(&fixture.join("web"), &format!("{DEPLOY}/{web}"))
        .copy_dir(&fixture.join("worker"), &format!("{DEPLOY}/{worker}"));
    let first_commit = repo.commit_and_push("portable stacks");
    let paths = [web.as_str(), worker.as_str()];

    // 0. The same repository in compose mode, on the same (swarm manager) engine: the answers
    //    to compare with. Then its containers go.
    let compose_app = start(&repo, |a| a.deploy_mode = "compose".into()).await;
    let compose_answers = compose_app
        .run(async |compose_app| {
            let (_, ready) = compose_app.get_json("/readyz").await;
            assert_eq!(ready["deployMode"], "compose", "{ready}");
            wait_for(compose_app, &prefix, "compose mode synced", |s| {
                synced_and_running(s, &paths)
            })
            .await
        })
        .await;
    for path in paths {
        docker::remove_project(path);
    }

    // 1. Swarm mode, chosen by DEPLOY_MODE=auto on a manager.
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (recorder, calls_log) = recording_tool(dir.path(), "docker");
    let configure = |a: &mut Args| {
        a.deploy_mode = "auto".into();
        a.data_dir = data_dir.clone();
        a.docker_bin = Some(recorder.clone());
        a.reconcile_remove_enabled = "true".into();
    };
    let app = start(&repo, configure).await;
    app.run(async |app| {
        let (code, ready) = app.get_json("/readyz").await;
        assert_eq!(code, 200, "{ready}");
        assert_eq!(ready["deployMode"], "swarm", "auto picks swarm on a manager: {ready}");
        assert!(
            ready["composeTool"].as_str().unwrap().starts_with("docker stack deploy"),
            "{ready}"
        );
        let stacks = wait_for(app, &prefix, "swarm mode synced", |s| synced_and_running(s, &paths)).await;

        // Same answers as compose mode, apart from times and runtime counts.
        for path in paths {
            assert_eq!(
                comparable(find(&stacks, path).unwrap()),
                comparable(find(&compose_answers, path).unwrap()),
                "{path}: swarm and compose mode answer differently"
            );
            let record = find(&stacks, path).unwrap();
            assert_eq!(record["syncedRevision"], first_commit.as_str());
            assert_eq!(record["containersRunning"], 1, "{record}");
        }

        // The labels are on the services (deploy.labels), not only in docker-cd's memory.
        let content = tree_id(&repo, &web);
        for (key, value) in [
            ("com.docker-cd.owner", "docker-cd"),
            ("com.docker-cd.stack.path", web.as_str()),
            ("com.docker-cd.revision", first_commit.as_str()),
            ("com.docker-cd.content-hash", content.as_str()),
            ("com.docker-cd.services", "httpd"),
            ("com.docker-cd.replicas", "1"),
        ] {
            assert_eq!(service_label(&web, "httpd", key), value, "{key}");
        }

        // The detail endpoint: services with replicas and the nodes of their tasks.
        let (code, body) = app.get_json(&format!("/api/stacks/{web}")).await;
        assert_eq!(code, 200, "{body}");
        let services = body["services"].as_array().expect("services in swarm mode");
        assert_eq!(services.len(), 1, "{body}");
        let s = &services[0];
        assert_eq!(s["name"], format!("{web}_httpd"));
        assert_eq!(s["service"], "httpd");
        assert_eq!(s["mode"], "replicated");
        assert_eq!((s["replicasRunning"].as_u64(), s["replicasDesired"].as_u64()), (Some(1), Some(1)), "{s}");
        assert_eq!(s["nodes"], serde_json::json!([node]), "{s}");
        assert_eq!(s["tasks"][0]["state"], "running", "{s}");
        assert_eq!(s["tasks"][0]["node"], node.as_str(), "{s}");
        let containers = body["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0]["service"], "httpd");
        assert_eq!(containers[0]["state"], "running");

        // 2. A change in one stack updates that stack alone.
        let web_version = service_field(&web, "httpd", "{{.Version.Index}}");
        repo.write(
            &format!("{DEPLOY}/{worker}/worker.env"),
            "WORKER_MESSAGE=changed\n",
        );
        let second = publish(app, &repo, "change the worker").await;
        let worker_hash = tree_id(&repo, &worker);
        wait_for(app, &prefix, "worker re-synced", |s| {
            find(s, &worker).is_some_and(|r| r["syncedRevision"] == second && r["status"] == "synced")
        })
        .await;
        assert_eq!(service_label(&worker, "worker", "com.docker-cd.content-hash"), worker_hash);
        assert!(
            service_field(&worker, "worker", "{{json .Spec.TaskTemplate.ContainerSpec.Env}}")
                .contains("WORKER_MESSAGE=changed")
        );
        assert_eq!(
            service_field(&web, "httpd", "{{.Version.Index}}"),
            web_version,
            "the unchanged stack was updated"
        );

        // 3. A stack using what swarm drops fails with a clear message; nothing is deployed.
        repo.write(
            &format!("{DEPLOY}/{refused}/compose.yaml"),
            format!(
                "services:\n  app:\n    image: {}\n    build: .\n    container_name: {refused}-app\n    \
                 ports: [\"127.0.0.1:18995:80\"]\n",
                docker::TEST_IMAGE
            ),
        );
        publish(app, &repo, "a stack swarm cannot run").await;
        let stacks = wait_for(app, &prefix, "refused stack failed", |s| {
            find(s, &refused).is_some_and(|r| r["status"] == "failed")
        })
        .await;
        let error = find(&stacks, &refused).unwrap()["lastSyncError"].as_str().unwrap().to_owned();
        for needle in ["swarm mode cannot deploy", "service app: build:", "container_name", "bound to 127.0.0.1"] {
            assert!(error.contains(needle), "{needle:?} not in {error}");
        }
        assert!(stack_services(&refused).is_empty());
        assert!(synced_and_running(&stacks, &paths), "the others are unaffected");

        // 4. Stacks removed from Git: the deployed one is `docker stack rm`ed, the refused one
        //    forgotten.
        repo.remove(&format!("{DEPLOY}/{worker}")).remove(&format!("{DEPLOY}/{refused}"));
        publish(app, &repo, "remove two stacks").await;
        wait_for(app, &prefix, "removed stacks dropped", |s| {
            find(s, &worker).is_none() && find(s, &refused).is_none()
        })
        .await;
        eventually("worker services gone", || stack_services(&worker).is_empty()).await;
        assert_eq!(stack_services(&web).len(), 1);

        // 5. Drift, reverted: a service scaled by hand, then one removed by hand.
        let (ok, _, err) = docker_out(&["service", "scale", "--detach", &format!("{web}_httpd=2")]);
        assert!(ok, "{err}");
        eventually("scaled service reverted", || spec_replicas(&web, "httpd") == "1").await;
        assert!(log_tail(&web).contains("was scaled to 2 replicas (Git says 1)"), "{}", log_tail(&web));
        wait_for(app, &prefix, "web synced after the revert", |s| synced_and_running(s, &[&web])).await;
        let (ok, _, err) = docker_out(&["service", "rm", &format!("{web}_httpd")]);
        assert!(ok, "{err}");
        eventually("removed service recreated", || stack_services(&web).len() == 1).await;
        assert!(log_tail(&web).contains("drift: all services are gone"), "{}", log_tail(&web));
        wait_for(app, &prefix, "web synced after reverts", |s| synced_and_running(s, &[&web])).await;
    })
    .await;

    // 6. Restart on the same data dir, now with DRIFT_POLICY=flag: recognised from the service
    //    labels without a deploy; then a scaled service is flagged until acknowledged.
    let before = recorded(&calls_log).len();
    let app = start(&repo, |a| {
        configure(a);
        a.drift_policy = "flag".into();
    })
    .await;
    app.run(async |app| {
        wait_for(app, &prefix, "recognised after restart", |s| {
            synced_and_running(s, &[&web])
        })
        .await;
        tokio::time::sleep(Duration::from_secs(6)).await; // one more tick
        let calls: Vec<String> = recorded(&calls_log).split_off(before);
        assert_eq!(
            stack_deploys(&calls),
            0,
            "the restarted instance deployed: {calls:#?}"
        );
        assert!(
            calls.iter().any(|c| c.starts_with("service ls")),
            "{calls:#?}"
        );

        let (ok, _, err) = docker_out(&["service", "scale", "--detach", &format!("{web}_httpd=2")]);
        assert!(ok, "{err}");
        let stacks = wait_for(app, &prefix, "drift flagged", |s| {
            find(s, &web).is_some_and(|r| r["status"] == "drifted")
        })
        .await;
        let drift = find(&stacks, &web).unwrap()["drift"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(drift.contains("scaled to 2 replicas"), "{drift}");
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(spec_replicas(&web, "httpd"), "2", "flag must not revert");
        let (code, body) = app
            .post_json("/api/reconcile/ack", serde_json::json!({ "path": web }))
            .await;
        assert_eq!(code, 200, "{body}");
        eventually("acknowledged drift reverted", || {
            spec_replicas(&web, "httpd") == "1"
        })
        .await;
        wait_for(app, &prefix, "synced after ack", |s| {
            find(s, &web).is_some_and(|r| r["status"] == "synced")
        })
        .await;
    })
    .await;

    // 7. Off swarm (only when this test put the engine in swarm mode): auto picks compose, and
    //    DEPLOY_MODE=swarm refuses to start.
    if swarm.initialised {
        remove_stack(&web);
        swarm.leave();
        let empty = TestRepo::new();
        empty.write("README.md", "no stacks\n");
        empty.commit_and_push("empty");
        let app = TestApp::start(&empty.url(), |a| {
            a.reconcile_enabled = "true".into();
            a.docker_bin = None;
            a.deploy_mode = "auto".into();
        })
        .await;
        let (_, ready) = app.get_json("/readyz").await;
        app.stop().await;
        assert_eq!(ready["deployMode"], "compose", "{ready}");

        let data = tempfile::tempdir().unwrap();
        let mut args = common::args(&empty.url(), data.path());
        args.reconcile_enabled = "true".into();
        args.deploy_mode = "swarm".into();
        let config = docker_cd::config::Config::validate(args, common::child_env()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let error = docker_cd::app::start(config, listener)
            .await
            .expect_err("swarm mode on a non-manager must not start");
        let text = format!("{error:#}");
        assert!(text.contains("not a swarm manager"), "{text}");
    }
}

/// One stack whose only task fails at once, forever (`restart_policy: any`); one of three
/// replicas that turn healthy after about 3 s (swarm keeps a task `starting` until its
/// healthcheck passes). `SYNC_HEALTH_TIMEOUT=20s`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_health_a_crash_loop_fails_degraded_and_converging_replicas_progress_before_healthy()
{
    let _serial = serial().await;
    let Some(_swarm) = SwarmGuard::init() else {
        return;
    };
    let Some(prefix) = docker::begin("swhealth") else {
        return;
    };
    let crash = format!("{prefix}-crash");
    let slow = format!("{prefix}-slow");
    // Dropped before `_swarm`: stacks go first, then the engine leaves swarm mode.
    let _stacks = StackCleanup(vec![crash.clone(), slow.clone()]);
    let image = docker::TEST_IMAGE;
    let repo = TestRepo::new();
    repo.write(
        &format!("{DEPLOY}/{crash}/compose.yaml"),
        format!(
            "services:\n  worker:\n    image: {image}\n    command: [\"sh\", \"-c\", \"exit 1\"]\n    \
             deploy:\n      restart_policy:\n        condition: any\n"
        ),
    )
    .write(
        &format!("{DEPLOY}/{slow}/compose.yaml"),
        format!(
            "services:\n  app:\n    image: {image}\n    \
             command: [\"sh\", \"-c\", \"sleep 3; touch /tmp/ready; exec sleep 3600\"]\n    \
             stop_grace_period: 1s\n    \
             healthcheck:\n      test: [\"CMD\", \"test\", \"-f\", \"/tmp/ready\"]\n      \
             interval: 1s\n      timeout: 1s\n      retries: 60\n    \
             deploy:\n      replicas: 3\n"
        ),
    );
    repo.commit_and_push("a crash loop and a slow starter");

    let app = start(&repo, |a| {
        a.deploy_mode = "swarm".into();
        a.sync_health_timeout = "20s".into();
    })
    .await;
    app.run(async |app| {
        let started = Instant::now();
        // Every (status, health) the slow stack showed, in order, and the crash loop's first
        // failed record.
        let seen = std::sync::Mutex::new(Vec::<(String, String)>::new());
        let first_failure = std::sync::Mutex::new(None::<Value>);
        let took = std::sync::Mutex::new(None::<Duration>);
        wait_for(
            app,
            &prefix,
            "crash loop failed, slow starter synced and healthy",
            |stacks| {
                if let Some(r) = find(stacks, &slow) {
                    let now = (
                        r["status"].as_str().unwrap_or_default().to_owned(),
                        r["health"].as_str().unwrap_or_default().to_owned(),
                    );
                    let mut seen = seen.lock().unwrap();
                    if seen.last() != Some(&now) {
                        seen.push(now);
                    }
                    if r["status"] == "synced" && r["health"] == "healthy" {
                        took.lock().unwrap().get_or_insert(started.elapsed());
                    }
                }
                let mut failure = first_failure.lock().unwrap();
                if failure.is_none() {
                    *failure = find(stacks, &crash)
                        .filter(|r| r["status"] == "failed")
                        .cloned();
                }
                failure.is_some() && took.lock().unwrap().is_some()
            },
        )
        .await;

        // The crash loop: failed when the health wait ran out, degraded, the service and the
        // task's error named.
        let failure = first_failure.into_inner().unwrap().unwrap();
        assert_eq!(failure["health"], "degraded", "{failure}");
        let error = failure["lastSyncError"].as_str().unwrap_or_default();
        let health = failure["healthMessage"].as_str().unwrap_or_default();
        for text in [error, health] {
            assert!(
                text.starts_with("worker: 0/1 replicas running; task failed: non-zero exit (1)"),
                "{failure}"
            );
        }
        assert!(
            error.contains("not healthy within SYNC_HEALTH_TIMEOUT=20s"),
            "{failure}"
        );
        assert!(failure["syncedRevision"].is_null(), "{failure}");

        // The slow starter: progressing while its replicas started, never synced before it
        // was healthy.
        let seen = seen.into_inner().unwrap();
        let progressing = seen.iter().position(|(_, h)| h == "progressing");
        let synced = seen.iter().position(|(s, _)| s == "synced").unwrap();
        assert!(progressing.is_some_and(|p| p < synced), "{seen:?}");
        assert!(
            seen.iter().all(|(s, h)| s != "synced" || h == "healthy"),
            "{seen:?}"
        );
        assert_eq!(
            service_field(&slow, "app", "{{.Spec.Mode.Replicated.Replicas}}"),
            "3"
        );
        eprintln!(
            "slow starter synced and healthy after {:?}; seen {seen:?}",
            took.into_inner().unwrap().unwrap()
        );
    })
    .await;
}
