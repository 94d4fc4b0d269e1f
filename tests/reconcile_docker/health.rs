//! Health-aware sync on the real engine (SPEC §9, issue 12): a sync is `synced` only when the
//! stack turned healthy within `SYNC_HEALTH_TIMEOUT`; health is kept beside the sync status;
//! build stacks rebuild what the commit changed; stacks sync `SYNC_CONCURRENCY` at once, never
//! two operations on one project.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::common::docker::{self, TEST_IMAGE};
use super::common::{TestRepo, find, status, wait_for, write_executable};
use super::{LONG, stack_file, start};
use serde_json::Value;

fn health<'a>(stacks: &'a [Value], path: &str) -> &'a str {
    find(stacks, path)
        .and_then(|s| s["health"].as_str())
        .unwrap_or("<absent>")
}

fn message(stacks: &[Value], path: &str, field: &str) -> String {
    find(stacks, path)
        .and_then(|s| s[field].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// One service `app` of the test image running `command` (a shell line), with `extra` YAML
/// lines (indented for the service) such as a healthcheck or a restart policy.
fn service(name: &str, command: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    image: {TEST_IMAGE}\n    init: true\n    command: [\"sh\", \"-c\", {command:?}]\n{extra}"
    )
}

fn healthcheck(test: &str) -> String {
    format!(
        "    healthcheck:\n      test: [\"CMD-SHELL\", {test:?}]\n      interval: 1s\n      timeout: 2s\n      retries: 1\n"
    )
}

fn compose(services: &[String]) -> String {
    format!("services:\n{}", services.concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_is_synced_only_when_healthy_and_failed_naming_the_service_that_is_not() {
    let Some((prefix, p, _cleanup)) =
        docker::begin_projects("hl", ["good", "sick", "oneshot", "crash", "exits"])
    else {
        return;
    };
    let repo = TestRepo::new();
    let files = [
        compose(&[service("web", "exec sleep 3600", &healthcheck("true"))]),
        compose(&[service(
            "web",
            "exec sleep 3600",
            &healthcheck("echo still warming up; exit 1"),
        )]),
        compose(&[
            service("web", "exec sleep 3600", ""),
            service("init", "echo done", "    restart: \"no\"\n"),
        ]),
        compose(&[service("worker", "exit 1", "    restart: always\n")]),
        compose(&[service("job", "exit 3", "    restart: \"no\"\n")]),
    ];
    for (path, file) in p.iter().zip(&files) {
        repo.write(&stack_file(path, "compose.yaml"), file);
    }
    repo.commit_and_push("five stacks");
    let app = start(&repo, |a| {
        a.sync_health_timeout = "12s".into();
        a.reconcile_interval = "5s".into();
    })
    .await;
    app.run(async |app| {
        let stacks = wait_for(app, &prefix, LONG, "every stack settled", |stacks| {
            p.iter()
                .all(|path| matches!(status(stacks, path), "synced" | "failed"))
        })
        .await;
        for ok in [&p[0], &p[2]] {
            assert_eq!(status(&stacks, ok), "synced", "{ok}: {stacks:?}");
            assert_eq!(health(&stacks, ok), "healthy", "{ok}: {stacks:?}");
            assert!(find(&stacks, ok).unwrap()["healthMessage"].is_null());
        }
        for (path, service, words) in [
            (&p[1], "web", &["unhealthy", "still warming up"][..]),
            (&p[3], "worker", &["exit code 1"][..]),
            (&p[4], "job", &["exit code 3"][..]),
        ] {
            assert_eq!(status(&stacks, path), "failed", "{path}: {stacks:?}");
            assert_eq!(health(&stacks, path), "degraded", "{path}: {stacks:?}");
            let error = message(&stacks, path, "lastSyncError");
            assert!(
                error.starts_with(&format!("{service}: ")),
                "{path}: {error}"
            );
            for word in words {
                assert!(error.contains(word), "{path}: {word:?} not in {error}");
            }
            let why = message(&stacks, path, "healthMessage");
            assert!(why.starts_with(&format!("{service}: ")), "{path}: {why}");
        }
        // A crash loop is never taken for healthy between syncs either.
        let later = wait_for(app, &prefix, LONG, "a tick later", |stacks| {
            health(stacks, &p[3]) == "degraded" && health(stacks, &p[0]) == "healthy"
        })
        .await;
        assert_eq!(status(&later, &p[3]), "failed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_starting_service_is_progressing_before_it_is_healthy_and_synced() {
    let Some((prefix, p, _cleanup)) = docker::begin_projects("hs", ["slow"]) else {
        return;
    };
    let repo = TestRepo::new();
    repo.write(
        &stack_file(&p[0], "compose.yaml"),
        compose(&[service(
            "web",
            "sleep 4; touch /tmp/ready; exec sleep 3600",
            &healthcheck("test -f /tmp/ready"),
        )]),
    );
    repo.commit_and_push("a slow starter");
    let app = start(&repo, |a| {
        a.sync_health_timeout = "60s".into();
        a.reconcile_interval = "5s".into();
    })
    .await;
    app.run(async |app| {
        let mut seen: Vec<(String, String)> = Vec::new();
        let deadline = std::time::Instant::now() + LONG;
        loop {
            let stacks = app.stacks().await;
            let now = (
                status(&stacks, &p[0]).to_owned(),
                health(&stacks, &p[0]).to_owned(),
            );
            if seen.last() != Some(&now) {
                seen.push(now.clone());
            }
            if now.0 == "synced" || now.0 == "failed" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{seen:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let progressing = seen
            .iter()
            .position(|(s, h)| s == "syncing" && h == "progressing");
        assert!(progressing.is_some(), "never seen progressing: {seen:?}");
        assert_eq!(
            seen.last().unwrap(),
            &("synced".to_owned(), "healthy".to_owned()),
            "{seen:?}"
        );
        assert!(
            !seen.iter().any(|(s, h)| s == "synced" && h != "healthy"),
            "synced before healthy: {seen:?}"
        );

        // Between syncs: the healthcheck starts failing by itself. The tick reports it
        // degraded, naming the service; it is no drift, so the stack stays synced.
        let id = docker::container_ids(&p[0]).remove(0);
        docker::output(&["exec", &id, "rm", "/tmp/ready"]);
        let stacks = wait_for(app, &prefix, LONG, "degraded by itself", |stacks| {
            health(stacks, &p[0]) == "degraded"
        })
        .await;
        assert_eq!(status(&stacks, &p[0]), "synced");
        assert!(
            message(&stacks, &p[0], "healthMessage").starts_with("web: unhealthy"),
            "{stacks:?}"
        );
        docker::output(&["exec", &id, "touch", "/tmp/ready"]);
        wait_for(app, &prefix, LONG, "healthy again", |stacks| {
            health(stacks, &p[0]) == "healthy" && status(stacks, &p[0]) == "synced"
        })
        .await;
        assert_eq!(docker::container_ids(&p[0]), [id], "nothing was recreated");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_changing_only_the_dockerfile_or_only_the_build_context_reaches_the_container() {
    let Some((prefix, p, _cleanup)) = docker::begin_projects("hb", ["built"]) else {
        return;
    };
    let path = &p[0];
    // The image the stack builds has a name of its own, removed when the test ends.
    let image = format!("{path}-built:test");
    struct RemoveImage(String);
    impl Drop for RemoveImage {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker")
                .args(["image", "rm", "-f", &self.0])
                .output();
        }
    }
    let _image = RemoveImage(image.clone());
    let repo = TestRepo::new();
    repo.write(
        &stack_file(path, "compose.yaml"),
        format!("services:\n  app:\n    build: .\n    image: {image}\n    init: true\n"),
    );
    let dockerfile = |stage: &str| {
        format!(
            "FROM {TEST_IMAGE}\nENV STAGE={stage}\nCOPY ctx/msg /msg\nCMD [\"sh\", \"-c\", \"exec sleep 3600\"]\n"
        )
    };
    repo.write(&stack_file(path, "Dockerfile"), dockerfile("one"));
    repo.write(&stack_file(path, "ctx/msg"), "first\n");
    let first = repo.commit_and_push("a stack that builds its image");
    let app = start(&repo, |_| {}).await;
    app.run(async |app| {
        let in_container = |what: &[&str]| -> String {
            let id = docker::container_ids(path)
                .into_iter()
                .next()
                .expect("a container");
            let mut args = vec!["exec", id.as_str()];
            args.extend_from_slice(what);
            docker::output(&args).trim().to_owned()
        };
        let synced_at = async |revision: &str| {
            wait_for(app, &prefix, LONG, "synced at the commit", |stacks| {
                status(stacks, path) == "synced"
                    && find(stacks, path).unwrap()["syncedRevision"] == revision
            })
            .await
        };
        synced_at(&first).await;
        assert_eq!(in_container(&["cat", "/msg"]), "first");
        assert_eq!(in_container(&["sh", "-c", "echo $STAGE"]), "one");

        // Only the Dockerfile changes: the moment the stack reads synced, the new build runs.
        repo.write(&stack_file(path, "Dockerfile"), dockerfile("two"));
        let second = repo.commit_and_push("only the Dockerfile");
        app.push_webhook("refs/heads/main", &second).await;
        synced_at(&second).await;
        assert_eq!(in_container(&["sh", "-c", "echo $STAGE"]), "two");
        assert_eq!(in_container(&["cat", "/msg"]), "first");

        // Only a file of the build context changes.
        repo.write(&stack_file(path, "ctx/msg"), "second\n");
        let third = repo.commit_and_push("only the build context");
        app.push_webhook("refs/heads/main", &third).await;
        synced_at(&third).await;
        assert_eq!(in_container(&["cat", "/msg"]), "second");
        assert_eq!(in_container(&["sh", "-c", "echo $STAGE"]), "two");
    })
    .await;
}

/// A wrapper around the compose tool in use (the docker CLI for the v2 plugin, or the binary
/// in `DOCKER_CD_TEST_COMPOSE_BIN`) that logs when each run starts and ends, with its
/// arguments.
fn timing_wrapper(dir: &Path) -> (PathBuf, PathBuf, bool) {
    let standalone = std::env::var_os("DOCKER_CD_TEST_COMPOSE_BIN").map(PathBuf::from);
    let real = standalone
        .clone()
        .unwrap_or_else(|| which::which("docker").unwrap());
    let log = dir.join("calls.log");
    let script = dir.join("timed");
    write_executable(
        &script,
        &format!(
            "#!/bin/sh\necho \"start $(date +%s%N) $$ $*\" >> '{log}'\n'{real}' \"$@\"\nrc=$?\necho \"end $(date +%s%N) $$\" >> '{log}'\nexit $rc\n",
            log = log.display(),
            real = real.display()
        ),
    );
    (script, log, standalone.is_some())
}

/// Each compose run's project and its start and end, from [`timing_wrapper`]'s log.
fn compose_runs(log: &Path, standalone: bool) -> Vec<(String, u128, u128)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut open: BTreeMap<String, (u128, Option<String>)> = BTreeMap::new();
    let mut runs = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["start", at, pid, args @ ..] => {
                let compose = standalone || args.first() == Some(&"compose");
                let project = args
                    .iter()
                    .position(|a| *a == "--project-name")
                    .and_then(|i| args.get(i + 1))
                    .filter(|_| compose)
                    .map(|p| (*p).to_owned());
                open.insert((*pid).to_owned(), (at.parse().unwrap(), project));
            }
            ["end", at, pid] => {
                if let Some((start, Some(project))) = open.remove(*pid) {
                    runs.push((project, start, at.parse().unwrap()));
                }
            }
            _ => {}
        }
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacks_sync_concurrency_at_once_and_never_two_operations_on_one_project() {
    for (concurrency, name) in [(3, "hc"), (1, "hd")] {
        let names = ["a", "b", "c", "d", "e", "f"];
        let Some((prefix, p, _cleanup)) = docker::begin_projects(name, names) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let (wrapper, log, standalone) = timing_wrapper(dir.path());
        let repo = TestRepo::new();
        for path in &p {
            repo.write(
                &stack_file(path, "compose.yaml"),
                compose(&[service(
                    "web",
                    "sleep 3; touch /tmp/ready; exec sleep 3600",
                    &healthcheck("test -f /tmp/ready"),
                )]),
            );
        }
        repo.commit_and_push("six slow starters");
        let app = start(&repo, |a| {
            a.sync_concurrency = concurrency.to_string();
            a.sync_health_timeout = "60s".into();
            if standalone {
                a.compose_bin = Some(wrapper.clone());
            } else {
                a.docker_bin = Some(wrapper.clone());
            }
        })
        .await;
        app.run(async |app| {
            let mut most = 0;
            let deadline = std::time::Instant::now() + LONG;
            loop {
                let stacks = app.stacks().await;
                let syncing = p.iter().filter(|s| status(&stacks, s) == "syncing").count();
                most = most.max(syncing);
                if p.iter().all(|s| status(&stacks, s) == "synced") {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{stacks:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if concurrency == 1 {
                assert_eq!(most, 1, "with SYNC_CONCURRENCY=1 syncs overlapped");
            } else {
                assert!(
                    most >= 2,
                    "with SYNC_CONCURRENCY={concurrency} no syncs overlapped"
                );
                assert!(most <= concurrency, "{most} syncs at once");
            }
            let runs = compose_runs(&log, standalone);
            assert!(runs.len() >= p.len(), "{runs:?}");
            for (i, (project, start, end)) in runs.iter().enumerate() {
                for (other, o_start, o_end) in &runs[i + 1..] {
                    if project == other {
                        assert!(
                            end <= o_start || o_end <= start,
                            "two compose runs of {project} at once: {runs:?}"
                        );
                    }
                }
            }
            let _ = &prefix;
        })
        .await;
    }
}
