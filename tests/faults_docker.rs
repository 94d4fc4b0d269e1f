//! TESTPLAN cases that need the real Docker engine and are not in `reconcile_docker.rs`:
//! awkward names deployed for real (R1), empty and service-less compose files (R5), the engine
//! unreachable (F7), a port already taken (F8), a full disk while materialising (F10) and
//! SIGTERM in the middle of `compose up` (F11).
//!
//! Same rules as every Docker test: skip loudly without Docker, fail under `CI=true`; unique
//! project names; a `Cleanup` guard made before the app starts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::docker::{self, Cleanup, TEST_IMAGE, sleeper_compose};
use common::{TestApp, TestRepo, stack, write_executable};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(120);

async fn start(repo: &TestRepo, adjust: impl FnOnce(&mut docker_cd::config::Args)) -> TestApp {
    TestApp::start(&repo.url(), |a| {
        a.reconcile_enabled = "true".into();
        a.git_deploy_dir = "stacks".into();
        adjust(a);
    })
    .await
}

/// A repository whose one commit holds a sleeper stack at `stacks/<name>`.
fn one_sleeper(name: &str) -> TestRepo {
    let repo = TestRepo::new();
    repo.write(
        &format!("stacks/{name}/compose.yaml"),
        sleeper_compose(&["app"]),
    );
    repo.commit_and_push("one stack");
    repo
}

fn is_status(stacks: &[Value], path: &str, status: &str) -> bool {
    stacks
        .iter()
        .any(|s| s["path"] == path && s["status"] == status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r01_a_stack_with_spaces_capitals_and_a_leading_dash_deploys_under_its_mapped_name() {
    let Some(prefix) = docker::begin("r01") else {
        return;
    };
    let path = format!("-{prefix} My App");
    let project = format!("{prefix}myapp");
    let _cleanup = Cleanup::new([project.clone()]);
    let repo = TestRepo::new();
    repo.write(
        &format!("stacks/{path}/compose.yaml"),
        sleeper_compose(&["app"]),
    );
    repo.commit_and_push("an awkward name");
    let app = start(&repo, |_| {}).await;
    app.run(async |app| {
        let stacks = app
            .wait_stacks(LONG, |s| {
                is_status(s, &path, "synced") || is_status(s, &path, "failed")
            })
            .await;
        let record = stack(&stacks, &path);
        assert_eq!(record["status"], "synced", "{record}");
        assert_eq!(record["projectName"], project.as_str());
        let ids = docker::container_ids(&project);
        assert_eq!(ids.len(), 1);
        assert_eq!(docker::label(&ids[0], "com.docker-cd.stack.path"), path);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r05_empty_and_service_less_compose_files_fail_and_leave_the_running_version() {
    let Some((_, [empty, none], _cleanup)) = docker::begin_projects("r05", ["empty", "none"])
    else {
        return;
    };
    let repo = TestRepo::new();
    repo.write(
        &format!("stacks/{empty}/compose.yaml"),
        sleeper_compose(&["app"]),
    )
    .write(
        &format!("stacks/{none}/compose.yaml"),
        sleeper_compose(&["app"]),
    );
    repo.commit_and_push("two good stacks");
    let app = start(&repo, |_| {}).await;
    app.run(async |app| {
        app.wait_stacks(LONG, |s| {
            is_status(s, &empty, "synced") && is_status(s, &none, "synced")
        })
        .await;
        let before = [docker::container_ids(&empty), docker::container_ids(&none)];

        repo.write(&format!("stacks/{empty}/compose.yaml"), "")
            .write(&format!("stacks/{none}/compose.yaml"), "services: {}\n");
        repo.commit_and_push("break both");
        app.post_json("/api/refresh", Value::Null).await;
        let stacks = app
            .wait_stacks(LONG, |s| {
                is_status(s, &empty, "failed") && is_status(s, &none, "failed")
            })
            .await;
        for path in [&empty, &none] {
            let error = stack(&stacks, path)["lastSyncError"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(
                error.starts_with("compose config failed") || error.contains("no services"),
                "{path}: {error}"
            );
        }
        // The running versions are untouched.
        assert_eq!(
            [docker::container_ids(&empty), docker::container_ids(&none)],
            before
        );
        for ids in &before {
            let running = docker::output(&["inspect", "--format", "{{.State.Running}}", &ids[0]]);
            assert_eq!(running.trim(), "true");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f07_an_unreachable_engine_is_reported_refresh_goes_on_and_it_recovers() {
    let Some((_, [name], _cleanup)) = docker::begin_projects("f07", ["app"]) else {
        return;
    };
    let repo = one_sleeper(&name);
    // A docker CLI that cannot reach its daemon while the flag file exists.
    let tools = tempfile::tempdir().unwrap();
    let flag = tools.path().join("engine-down");
    std::fs::write(&flag, "").unwrap();
    let fake = tools.path().join("docker");
    let real = which::which("docker").unwrap();
    write_executable(
        &fake,
        &format!(
            "#!/bin/sh\nif [ -e '{}' ] && [ \"$1\" != compose ]; then echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2; exit 1; fi\nexec '{}' \"$@\"\n",
            flag.display(),
            real.display()
        ),
    );
    let app = start(&repo, |a| {
        a.docker_bin = Some(fake.clone());
        a.reconcile_interval = "5s".into();
    })
    .await;
    app.run(async |app| {
        let stacks = app
            .wait_stacks(LONG, |s| is_status(s, &name, "failed"))
            .await;
        let error = stack(&stacks, &name)["lastSyncError"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(error.contains("cannot read the Docker host"), "{error}");
        assert!(
            error.contains("Cannot connect to the Docker daemon"),
            "{error}"
        );
        assert!(docker::container_ids(&name).is_empty());
        let (code, ready) = app.get_json("/readyz").await;
        assert_eq!(code, 503, "{ready}");

        // Refresh keeps working meanwhile.
        repo.write(&format!("stacks/{name}/.env"), "X=1\n");
        let commit = repo.commit_and_push("a change while the engine is down");
        app.post_json("/api/refresh", Value::Null).await;
        app.wait_refreshes(2).await;
        assert_eq!(app.refresh_status().await["revision"], commit.as_str());

        // The engine comes back: the next tick deploys.
        std::fs::remove_file(&flag).unwrap();
        app.wait_stacks(LONG, |s| is_status(s, &name, "synced"))
            .await;
        assert_eq!(docker::container_ids(&name).len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f08_a_port_already_taken_fails_that_stack_only() {
    let Some((_, [taken, fine], _cleanup)) = docker::begin_projects("f08", ["taken", "fine"])
    else {
        return;
    };
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let repo = TestRepo::new();
    repo.write(
        &format!("stacks/{taken}/compose.yaml"),
        format!(
            "services:\n  app:\n    image: {TEST_IMAGE}\n    command: [\"sleep\", \"3600\"]\n    init: true\n    ports:\n      - \"127.0.0.1:{port}:8080\"\n"
        ),
    )
    .write(&format!("stacks/{fine}/compose.yaml"), sleeper_compose(&["app"]));
    repo.commit_and_push("a port clash");
    let app = start(&repo, |_| {}).await;
    app.run(async |app| {
        let stacks = app
            .wait_stacks(LONG, |s| {
                is_status(s, &taken, "failed") && is_status(s, &fine, "synced")
            })
            .await;
        let error = stack(&stacks, &taken)["lastSyncError"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            error.contains("address already in use") || error.contains("port is already allocated"),
            "{error}"
        );
        drop(holder);
    })
    .await;
}

/// Mounts a tmpfs of `size` at `dir`; `None` (loudly) where mounting is not allowed, except
/// under CI=true, where CI runs as root.
fn mount_tmpfs(dir: &Path, size: &str) -> Option<Unmount> {
    std::fs::create_dir_all(dir).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output()
        .unwrap();
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but a tmpfs cannot be mounted (F10 needs root): {why}");
        }
        eprintln!("\n*** SKIPPING F10: cannot mount a tmpfs ({why}) ***\n");
        return None;
    }
    Some(Unmount(dir.to_owned()))
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f10_a_full_disk_while_materialising_keeps_the_previous_copy_and_fails_the_stack() {
    let Some((_, [name], _cleanup)) = docker::begin_projects("f10", ["app"]) else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let Some(_unmount) = mount_tmpfs(&data_dir.join("stacks"), "256k") else {
        return;
    };
    let repo = TestRepo::new();
    let v1 = sleeper_compose(&["app"]);
    repo.write(&format!("stacks/{name}/compose.yaml"), &v1);
    repo.commit_and_push("small");
    let app = start(&repo, |a| a.data_dir = data_dir.clone()).await;
    app.run(async |app| {
        app.wait_stacks(LONG, |s| is_status(s, &name, "synced"))
            .await;
        let before = docker::container_ids(&name);

        let mut v2 = v1.clone();
        v2.push_str("# v2\n");
        repo.write(&format!("stacks/{name}/compose.yaml"), &v2)
            .write(&format!("stacks/{name}/big.bin"), vec![7u8; 1024 * 1024]);
        repo.commit_and_push("too big for the disk");
        app.post_json("/api/refresh", Value::Null).await;
        let stacks = app
            .wait_stacks(LONG, |s| is_status(s, &name, "failed"))
            .await;
        let error = stack(&stacks, &name)["lastSyncError"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(error.contains("No space left on device"), "{error}");
        let materialised =
            std::fs::read_to_string(data_dir.join("stacks").join(&name).join("compose.yaml"))
                .unwrap();
        assert_eq!(
            materialised, v1,
            "the previous materialised copy must be intact"
        );
        let leftovers: Vec<_> = std::fs::read_dir(data_dir.join("stacks"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".staging"))
            .collect();
        assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
        assert_eq!(
            docker::container_ids(&name),
            before,
            "the running version is untouched"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f11_sigterm_during_compose_up_finishes_within_the_grace_period_and_a_restart_does_not_redo_it()
 {
    let Some(prefix) = docker::begin("f11") else {
        return;
    };
    let Ok(real_compose) = which::which("docker-compose") else {
        // With only the plugin, the same scenario runs through DOCKER_BIN; keep it simple.
        eprintln!("\n*** SKIPPING F11: needs a standalone docker-compose to wrap ***\n");
        return;
    };
    let name = format!("{prefix}-app");
    let _cleanup = Cleanup::new([name.clone()]);
    let repo = one_sleeper(&name);
    let tools = tempfile::tempdir().unwrap();
    let calls = tools.path().join("compose-calls.log");
    let slow = tools.path().join("docker-compose");
    // Records each run; `up` first waits 3 s, so SIGTERM lands in the middle of it.
    write_executable(
        &slow,
        &format!(
            "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in up|config|down|version) echo \"$a\" >> '{log}'; [ \"$a\" = up ] && sleep 3; break ;; esac; done\nexec '{real}' \"$@\"\n",
            log = calls.display(),
            real = real_compose.display()
        ),
    );
    let data = tempfile::tempdir().unwrap();
    let run = |port: u16| {
        Command::new(env!("CARGO_BIN_EXE_docker-cd"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env("GIT_REPO_URL", repo.url())
            .env("GIT_DEPLOY_DIR", "stacks")
            .env("DATA_DIR", data.path())
            .env("LISTEN_ADDR", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("COMPOSE_BIN", &slow)
            .env("REFRESH_POLL_INTERVAL", "off")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let ups = || {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "up")
            .count()
    };

    let mut first = KillOnDrop(run(free_port()));
    let deadline = Instant::now() + LONG;
    while ups() == 0 {
        assert!(Instant::now() < deadline, "compose up never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let signalled = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &first.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(status) = first.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(25),
            "not stopped within 25 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    // The up in flight was allowed to finish: the stack runs, labelled.
    let ids = docker::container_ids(&name);
    assert_eq!(
        ids.len(),
        1,
        "the interrupted up should have completed in the grace period"
    );
    assert_eq!(docker::label(&ids[0], "com.docker-cd.owner"), "docker-cd");

    // A restart recognises it: no second up.
    let port = free_port();
    let second = KillOnDrop(run(port));
    let client = reqwest::Client::new();
    let deadline = Instant::now() + LONG;
    loop {
        let answer = client
            .get(format!("http://127.0.0.1:{port}/api/stacks/{name}"))
            .send()
            .await;
        if let Ok(answer) = answer {
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            if body["status"] == "synced" {
                break;
            }
        }
        assert!(Instant::now() < deadline, "not synced after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ups(), 1, "the restart ran compose up again");
    assert_eq!(docker::container_ids(&name), ids);
    drop(second);
}

/// Kills a spawned docker-cd if the test ends early (a failed assertion).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}
