//! The reconciler end to end against the real Docker Engine and the host's compose tool
//! (SPEC §4, §6, §7; TESTPLAN "Repository content", faults F8 and F9, and restarts (F11).
//!
//! Every test opens with [`docker::begin`]: it skips loudly without Docker (and fails under
//! `CI=true`), uses project names from its unique prefix, and holds a [`Cleanup`] for each project it may create, made before
//! the app starts. Its body runs in [`TestApp::run`], so the app is always stopped before the
//! cleanup runs, even when the test fails, and a reconcile still in flight cannot recreate what the cleanup removed.
//!
//! Several apps may run at once (`--test-threads=2`) against the same engine. Each has its own
//! repository, hence its own `com.docker-cd.instance`, so none removes or lists another's stacks;
//! assertions still look only at a test's own stacks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "reconcile_docker/health.rs"]
mod health;
#[path = "reconcile_docker/images.rs"]
mod images;
#[path = "reconcile_docker/operate.rs"]
mod operate;
#[path = "reconcile_docker/secrets.rs"]
mod secrets;
#[path = "reconcile_docker/settings.rs"]
mod settings;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use common::docker::{self, Cleanup, TEST_IMAGE, paths};
use common::{
    TestApp, TestRepo, eventually, find, log_tail, publish, refresh, status, wait_for,
    wait_revision, write_executable,
};
use docker_cd::config::Args;
use serde_json::{Value, json};

/// The deploy dir every test repository uses.
const DEPLOY: &str = "stacks";
/// Compose 1.29.2 is slow (1–2 s a call on two cores): deployments get this long.
const LONG: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Harness

/// Starts the app with reconciling on, the docker CLI from `PATH` and the deploy dir `stacks`.
async fn start(repo: &TestRepo, adjust: impl FnOnce(&mut Args)) -> TestApp {
    TestApp::start(&repo.url(), |a| {
        a.reconcile_enabled = "true".into();
        a.docker_bin = None;
        a.git_deploy_dir = DEPLOY.into();
        adjust(a);
    })
    .await
}

/// Waits until every path is `synced` with its containers counted as running.
async fn wait_synced(app: &TestApp, prefix: &str, paths: &[String]) -> Vec<Value> {
    wait_for(app, prefix, LONG, "all stacks synced", |stacks| {
        paths.iter().all(|p| {
            find(stacks, p).is_some_and(|s| {
                s["status"] == "synced" && s["containersRunning"].as_u64().unwrap_or(0) > 0
            })
        })
    })
    .await
}

/// The tree id of a stack directory at HEAD: what `contentHash` must be.
fn tree_id(repo: &TestRepo, path: &str) -> String {
    repo.git(&["rev-parse", &format!("HEAD:{DEPLOY}/{path}")])
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// `docker inspect` of one container.
fn inspect(id: &str) -> Value {
    let out = docker::output(&["inspect", id]);
    let mut list: Vec<Value> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("docker inspect {id}: {e}: {out:?}"));
    assert_eq!(list.len(), 1, "docker inspect {id}: {out}");
    list.remove(0)
}

/// Ids of a project's running containers, sorted.
fn running_ids(project: &str) -> Vec<String> {
    let filter = format!("label=com.docker.compose.project={project}");
    let mut ids: Vec<String> = docker::output(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &filter,
        "--filter",
        "status=running",
    ])
    .lines()
    .map(str::to_owned)
    .collect();
    ids.sort();
    ids
}

/// The id of the (single) container of `service` in `project`, running or not.
fn service_container(project: &str, service: &str) -> Option<String> {
    let project_filter = format!("label=com.docker.compose.project={project}");
    let service_filter = format!("label=com.docker.compose.service={service}");
    let out = docker::output(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &project_filter,
        "--filter",
        &service_filter,
    ]);
    let ids: Vec<&str> = out.lines().collect();
    assert!(
        ids.len() <= 1,
        "{project}/{service}: several containers {ids:?}"
    );
    ids.first().map(|s| (*s).to_owned())
}

fn env_var(container: &Value, name: &str) -> Option<String> {
    container["Config"]["Env"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

/// The networks compose created for a project.
fn networks(project: &str) -> Vec<String> {
    let filter = format!("label=com.docker.compose.project={project}");
    docker::output(&["network", "ls", "-q", "--filter", &filter])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Is a process alive? A zombie (state `Z`) or a missing `/proc` entry counts as dead.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// A `docker-compose` wrapper that appends each invocation's arguments to a log, then runs the
/// real tool.
fn recording_compose(dir: &Path) -> (PathBuf, PathBuf) {
    common::wrappers::recording_tool(dir, "docker-compose")
}

/// The compose subcommands recorded by [`recording_compose`] (the first word after the global
/// options, which all take a value).
fn compose_subcommands(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let mut i = 0;
            while i < words.len() && words[i].starts_with('-') {
                i += 2; // --project-name X, --project-directory D, --file F
            }
            words.get(i).copied().unwrap_or_default().to_owned()
        })
        .collect()
}

/// A compose service with a healthcheck and a published port on an ephemeral host port.
fn healthy_web_compose() -> String {
    format!(
        "services:\n  web:\n    image: {TEST_IMAGE}\n    command: [\"sleep\", \"3600\"]\n    init: true\n    \
         ports:\n      - \"127.0.0.1::8080\"\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      \
         interval: 1s\n      timeout: 1s\n      retries: 1\n"
    )
}

/// A sleeper whose environment comes from `.env` through interpolation.
fn greeting_compose() -> String {
    format!(
        "services:\n  app:\n    image: {TEST_IMAGE}\n    command: [\"sleep\", \"3600\"]\n    init: true\n    \
         environment:\n      GREETING: \"${{GREETING}}\"\n"
    )
}

/// A one-service sleeper stack at each of `paths`.
fn write_sleepers(repo: &TestRepo, paths: &[String]) {
    for path in paths {
        repo.write(
            &stack_file(path, "compose.yaml"),
            docker::sleeper_compose(&["app"]),
        );
    }
}

fn stack_file(path: &str, file: &str) -> String {
    format!("{DEPLOY}/{path}/{file}")
}

// ---------------------------------------------------------------------------------------------
// 1. Deploy

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_stacks_deploy_with_every_label_and_the_detail_endpoint_lists_their_containers() {
    let Some((prefix, p, _cleanup)) = docker::begin_projects("deploy", ["one", "two", "web"])
    else {
        return;
    };
    let repo = TestRepo::new();
    let composes = [
        docker::sleeper_compose(&["app"]),
        docker::sleeper_compose(&["front", "back"]),
        healthy_web_compose(),
    ];
    for (path, compose) in p.iter().zip(&composes) {
        repo.write(&stack_file(path, "compose.yaml"), compose);
    }
    repo.write(&stack_file(&p[2], "README.md"), "not a compose file\n");
    let commit = repo.commit_and_push("three stacks");
    let started = SystemTime::now() - Duration::from_secs(1);

    let app = start(&repo, |_| {}).await;
    app.run(async |app| {
        let stacks = wait_synced(app, &prefix, &p).await;
        let expected_services: [&[&str]; 3] = [&["app"], &["back", "front"], &["web"]];
        for ((path, compose), services) in p.iter().zip(&composes).zip(expected_services) {
            let record = find(&stacks, path).unwrap();
            let content = tree_id(&repo, path);
            let compose_hash = sha256_hex(compose.as_bytes());
            assert_eq!(record["syncedContentHash"], content.as_str(), "{record}");
            assert_eq!(record["syncedRevision"], commit.as_str(), "{record}");
            assert_eq!(record["lastSyncError"], Value::Null, "{record}");
            assert_eq!(
                record["containersRunning"].as_u64(),
                Some(services.len() as u64),
                "{record}"
            );

            let ids = docker::container_ids(path);
            assert_eq!(ids.len(), services.len(), "{path}: containers {ids:?}");
            assert_eq!(running_ids(path), ids, "{path}: all running");
            for id in &ids {
                let c = inspect(id);
                let labels = &c["Config"]["Labels"];
                let got = |k: &str| labels[k].as_str().unwrap_or("<absent>").to_owned();
                assert_eq!(got("com.docker-cd.owner"), "docker-cd", "{path}");
                assert_eq!(got("com.docker-cd.stack.path"), *path);
                assert_eq!(got("com.docker-cd.revision"), commit, "{path}");
                assert_eq!(got("com.docker-cd.content-hash"), content, "{path}");
                assert_eq!(got("com.docker-cd.compose-hash"), compose_hash, "{path}");
                assert_eq!(got("com.docker.compose.project"), *path);
                let synced_at = got("com.docker-cd.synced-at");
                let when = humantime::parse_rfc3339_weak(&synced_at)
                    .unwrap_or_else(|e| panic!("{path}: synced-at {synced_at:?}: {e}"));
                assert!(
                    when >= started && when <= SystemTime::now() + Duration::from_secs(1),
                    "{path}: synced-at {synced_at} is not the time of this sync"
                );
                assert_eq!(c["State"]["Status"], "running");
            }
        }

        // The detail endpoint reads the containers from the engine.
        for (path, services) in p.iter().zip(expected_services) {
            let (code, body) = app.get_json(&format!("/api/stacks/{path}")).await;
            assert_eq!(code, 200, "{body}");
            assert_eq!(body["status"], "synced", "{body}");
            let containers = body["containers"].as_array().expect("containers array");
            let mut listed: Vec<&str> = containers
                .iter()
                .map(|c| c["service"].as_str().unwrap())
                .collect();
            listed.sort_unstable();
            assert_eq!(listed, services, "{body}");
            for c in containers {
                for key in ["name", "service", "state", "image", "ports"] {
                    assert!(c[key].is_string(), "{key} missing in {c}");
                }
                assert!(c.get("health").is_some(), "health missing in {c}");
                assert_eq!(c["state"], "running", "{c}");
                assert_eq!(c["image"], TEST_IMAGE, "{c}");
                let name = c["name"].as_str().unwrap();
                let id = service_container(path, c["service"].as_str().unwrap()).unwrap();
                assert_eq!(
                    inspect(&id)["Name"]
                        .as_str()
                        .unwrap()
                        .trim_start_matches('/'),
                    name
                );
            }
        }
        // The web stack: health from the healthcheck, the published port.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, body) = app.get_json(&format!("/api/stacks/{}", p[2])).await;
            let web = &body["containers"][0];
            if web["health"] == "healthy" {
                let ports = web["ports"].as_str().unwrap();
                assert!(
                    ports.starts_with("127.0.0.1:") && ports.contains("->8080/tcp"),
                    "{web}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "never healthy: {body}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let (_, plain) = app.get_json(&format!("/api/stacks/{}", p[0])).await;
        assert_eq!(plain["containers"][0]["health"], Value::Null, "{plain}");
        assert_eq!(plain["containers"][0]["ports"], "", "{plain}");
        let (code, _) = app.get_json(&format!("/api/stacks/{prefix}-nosuch")).await;
        assert_eq!(code, 404);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 2. A change in one stack re-syncs that stack alone

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_changing_only_one_stacks_env_file_recreates_that_stack_alone() {
    let Some((prefix, p, _cleanup)) = docker::begin_projects("dotenv", ["greet", "b", "c"]) else {
        return;
    };
    let repo = TestRepo::new();
    repo.write(&stack_file(&p[0], "compose.yaml"), greeting_compose())
        .write(&stack_file(&p[0], ".env"), "GREETING=hello-v1\n")
        .write(
            &stack_file(&p[1], "compose.yaml"),
            docker::sleeper_compose(&["app"]),
        )
        .write(
            &stack_file(&p[2], "compose.yaml"),
            docker::sleeper_compose(&["app"]),
        );
    repo.commit_and_push("three stacks");

    let app = start(&repo, |_| {}).await;
    app.run(async |app| {
        wait_synced(app, &prefix, &p).await;
        let before: Vec<Vec<String>> = p.iter().map(|s| docker::container_ids(s)).collect();
        let old = service_container(&p[0], "app").unwrap();
        assert_eq!(
            env_var(&inspect(&old), "GREETING").as_deref(),
            Some("hello-v1")
        );

        repo.write(&stack_file(&p[0], ".env"), "GREETING=hello-v2\n");
        let commit = publish(app, &repo, "change the greeting").await;
        let new_hash = tree_id(&repo, &p[0]);
        let stacks = wait_for(app, &prefix, LONG, "greet re-synced", |stacks| {
            find(stacks, &p[0]).is_some_and(|s| {
                s["status"] == "synced" && s["syncedContentHash"] == new_hash.as_str()
            })
        })
        .await;

        let new = service_container(&p[0], "app").expect("greet has a container");
        assert_ne!(new, old, "the greet container was not recreated");
        let c = inspect(&new);
        assert_eq!(env_var(&c, "GREETING").as_deref(), Some("hello-v2"));
        assert_eq!(c["State"]["Status"], "running");
        let labels = &c["Config"]["Labels"];
        assert_eq!(labels["com.docker-cd.content-hash"], new_hash.as_str());
        assert_eq!(labels["com.docker-cd.revision"], commit.as_str());
        for (i, path) in p.iter().enumerate().skip(1) {
            assert_eq!(status(&stacks, path), "synced");
            assert_eq!(
                docker::container_ids(path),
                before[i],
                "{path} was touched by a change to another stack"
            );
            // Untouched stacks keep the labels of the commit that deployed them.
            let id = &before[i][0];
            assert_ne!(docker::label(id, "com.docker-cd.revision"), commit);
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3. A broken stack fails alone and keeps running its previous version

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r05_f08_invalid_yaml_and_an_unknown_image_fail_their_stacks_only_and_keep_the_old_containers()
 {
    let Some(prefix) = docker::begin("broken") else {
        return;
    };
    let p = paths(&prefix, &["good", "yaml", "image"]);
    let (good, yaml, image) = (&p[0], &p[1], &p[2]);
    let _cleanup = Cleanup::new(p.clone());
    let repo = TestRepo::new();
    for path in &p {
        repo.write(
            &stack_file(path, "compose.yaml"),
            docker::sleeper_compose(&["app"]),
        )
        .write(&stack_file(path, "VERSION"), "1\n");
    }
    repo.commit_and_push("three good stacks");

    let app = start(&repo, |_| {}).await;
    app.run(async |app| {
        wait_synced(app, &prefix, &p).await;
        let ids: Vec<Vec<String>> = p.iter().map(|s| docker::container_ids(s)).collect();
        let old_hashes: Vec<String> = p.iter().map(|s| tree_id(&repo, s)).collect();

        // `good` changes too, so the same reconcile has work to do after the failures.
        repo.write(&stack_file(good, "VERSION"), "2\n")
            .write(
                &stack_file(yaml, "compose.yaml"),
                "services:\n  app:\n    image: [unclosed\n    command: x: y\n",
            )
            .write(
                &stack_file(image, "compose.yaml"),
                "services:\n  app:\n    image: docker-cd-test/does-not-exist:1\n    init: true\n",
            );
        publish(app, &repo, "break two stacks").await;
        let good_hash = tree_id(&repo, good);
        let stacks = wait_for(app, &prefix, LONG, "two failed, one synced", |stacks| {
            status(stacks, yaml) == "failed"
                && status(stacks, image) == "failed"
                && find(stacks, good).is_some_and(|s| {
                    s["status"] == "synced" && s["syncedContentHash"] == good_hash.as_str()
                })
        })
        .await;

        let yaml_error = find(&stacks, yaml).unwrap()["lastSyncError"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // Compose v1 says `while parsing a flow sequence in "./compose.yaml", line 3`, v2
        // `yaml: line 2: did not find expected ',' or ']'`: both name the line, neither
        // wording is asserted.
        assert!(
            yaml_error.contains("compose config failed") && yaml_error.contains("line"),
            "invalid YAML should report the parser's message: {yaml_error}"
        );
        let image_error = find(&stacks, image).unwrap()["lastSyncError"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // v1 names the image; v2 names the service and says it is pulling, then the
        // registry's error (no registry answers here).
        assert!(
            image_error.contains("compose up failed")
                && (image_error.contains("docker-cd-test/does-not-exist")
                    || image_error.to_lowercase().contains("pull")),
            "an unknown image should report compose's pull error: {image_error}"
        );

        // The broken stacks' previous containers run on, untouched, with their old labels.
        for (i, path) in p.iter().enumerate().skip(1) {
            assert_eq!(
                docker::container_ids(path),
                ids[i],
                "{path}: containers changed"
            );
            assert_eq!(running_ids(path), ids[i], "{path}: not running any more");
            assert_eq!(
                docker::label(&ids[i][0], "com.docker-cd.content-hash"),
                old_hashes[i],
                "{path}"
            );
            let record = find(&stacks, path).unwrap();
            assert_eq!(
                record["syncedContentHash"],
                old_hashes[i].as_str(),
                "{record}"
            );
            assert_eq!(record["containersRunning"], 1, "{record}");
        }
        assert_ne!(
            docker::container_ids(good),
            ids[0],
            "good was not re-synced"
        );

        // Reverting the bad commit's content: the host already runs exactly that, so the
        // stacks are recognised as synced without touching their containers.
        for path in [yaml, image] {
            repo.write(
                &stack_file(path, "compose.yaml"),
                docker::sleeper_compose(&["app"]),
            );
        }
        publish(app, &repo, "fix them").await;
        wait_for(app, &prefix, LONG, "all synced after the fix", |stacks| {
            p.iter().all(|s| status(stacks, s) == "synced")
        })
        .await;
        let stacks = app.stacks().await;
        for (i, path) in p.iter().enumerate().skip(1) {
            assert_eq!(docker::container_ids(path), ids[i], "{path} was recreated");
            assert_eq!(find(&stacks, path).unwrap()["lastSyncError"], Value::Null);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x05_a_symlink_chain_fails_its_stack_naming_the_link_and_keeps_the_running_version() {
    let Some(prefix) = docker::begin("x05") else {
        return;
    };
    let p = paths(&prefix, &["chain"]);
    let chain = &p[0];
    let _cleanup = Cleanup::new(p.clone());
    let repo = TestRepo::new();
    repo.write(
        &stack_file(chain, "compose.yaml"),
        docker::sleeper_compose(&["app"]),
    )
    .write(&stack_file(chain, "VERSION"), "1\n");
    repo.commit_and_push("one good stack");

    let app = start(&repo, |_| {}).await;
    app.run(async |app| {
        wait_synced(app, &prefix, &p).await;
        let ids = docker::container_ids(chain);
        let old_hash = tree_id(&repo, chain);
        // Beside DATA_DIR: `w` reaches it from the stack directory, one level per link.
        let sentinel = app.data.path().join("sentinel");
        std::fs::write(&sentinel, "untouched").unwrap();

        repo.write(&stack_file(chain, "VERSION"), "2\n")
            .symlink(&stack_file(chain, "s"), ".")
            .symlink(&stack_file(chain, "t"), "s/..")
            .symlink(&stack_file(chain, "u"), "t/..")
            .symlink(&stack_file(chain, "w"), "u/../sentinel");
        publish(app, &repo, "climb out through a chain of links").await;
        let stacks = wait_for(app, &prefix, LONG, "the chain's stack failed", |stacks| {
            status(stacks, chain) == "failed"
        })
        .await;

        let record = find(&stacks, chain).unwrap();
        let error = record["lastSyncError"].as_str().unwrap_or_default();
        assert!(
            error.contains(r#"symbolic link "t" resolves outside the stack directory"#),
            "the error names the link: {record}"
        );
        assert_eq!(record["syncedContentHash"], old_hash.as_str(), "{record}");
        assert_eq!(docker::container_ids(chain), ids, "containers changed");
        assert_eq!(running_ids(chain), ids, "not running any more");
        let dir = app.data.path().join("data/stacks").join(chain);
        assert_eq!(std::fs::read_to_string(dir.join("VERSION")).unwrap(), "1\n");
        assert!(
            std::fs::symlink_metadata(dir.join("t")).is_err(),
            "a link was written"
        );
        assert_eq!(std::fs::read_to_string(&sentinel).unwrap(), "untouched");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 4. Stacks removed from Git

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r09_a_stack_deleted_from_git_is_taken_down_when_removal_is_enabled() {
    let Some((prefix, p, _cleanup)) = docker::begin_projects("rmon", ["keep", "gone"]) else {
        return;
    };
    let repo = TestRepo::new();
    write_sleepers(&repo, &p);
    repo.commit_and_push("two stacks");

    let app = start(&repo, |a| a.reconcile_remove_enabled = "true".into()).await;
    app.run(async |app| {
        wait_synced(app, &prefix, &p).await;
        let keep_ids = docker::container_ids(&p[0]);
        assert_eq!(docker::container_ids(&p[1]).len(), 1);
        assert!(!networks(&p[1]).is_empty());

        repo.remove(&format!("{DEPLOY}/{}", p[1]));
        publish(app, &repo, "remove a stack").await;
        wait_for(app, &prefix, LONG, "removed stack dropped", |stacks| {
            find(stacks, &p[1]).is_none() && status(stacks, &p[0]) == "synced"
        })
        .await;
        assert!(
            docker::container_ids(&p[1]).is_empty(),
            "containers of the removed stack remain: {:?}",
            docker::container_ids(&p[1])
        );
        assert!(networks(&p[1]).is_empty(), "its network remains");
        assert_eq!(
            docker::container_ids(&p[0]),
            keep_ids,
            "the other stack was touched"
        );
        assert_eq!(running_ids(&p[0]), keep_ids);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r09_a_stack_deleted_from_git_keeps_running_and_is_listed_orphaned_when_removal_is_disabled()
 {
    let Some((prefix, p, _cleanup)) = docker::begin_projects("rmoff", ["keep", "gone"]) else {
        return;
    };
    let repo = TestRepo::new();
    write_sleepers(&repo, &p);
    repo.commit_and_push("two stacks");

    let app = start(&repo, |a| {
        a.reconcile_remove_enabled = "false".into();
        a.reconcile_interval = "5s".into();
    })
    .await;
    app.run(async |app| {
        wait_synced(app, &prefix, &p).await;
        let ids: Vec<Vec<String>> = p.iter().map(|s| docker::container_ids(s)).collect();

        repo.remove(&format!("{DEPLOY}/{}", p[1]));
        publish(app, &repo, "remove a stack").await;
        // The refresh lists it `orphaned` at once; the reconcile that follows adds the reason.
        let stacks = wait_for(app, &prefix, LONG, "gone stack orphaned", |stacks| {
            status(stacks, &p[1]) == "orphaned"
                && find(stacks, &p[1]).is_some_and(|s| s["lastSyncError"].is_string())
        })
        .await;
        let record = find(&stacks, &p[1]).unwrap();
        assert_eq!(record["inGit"], false, "{record}");
        assert_eq!(record["containersRunning"], 1, "{record}");
        assert!(
            record["lastSyncError"]
                .as_str()
                .is_some_and(|e| e.contains("RECONCILE_REMOVE_ENABLED")),
            "the orphan should say why it runs on: {record}"
        );
        // Across a resync tick: still running, still orphaned.
        tokio::time::sleep(Duration::from_secs(7)).await;
        let stacks = app.stacks().await;
        assert_eq!(status(&stacks, &p[1]), "orphaned");
        assert_eq!(status(&stacks, &p[0]), "synced");
        for (i, path) in p.iter().enumerate() {
            assert_eq!(running_ids(path), ids[i], "{path} was touched");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r07_a_commit_with_no_stacks_at_all_removes_nothing_even_with_removal_enabled() {
    let Some((prefix, p, _cleanup)) = docker::begin_projects("empty", ["a", "b"]) else {
        return;
    };
    let repo = TestRepo::new();
    repo.write(&format!("{DEPLOY}/README.md"), "stacks live here\n");
    write_sleepers(&repo, &p);
    repo.commit_and_push("two stacks");

    let app = start(&repo, |a| {
        a.reconcile_remove_enabled = "true".into();
        a.reconcile_interval = "5s".into();
    })
    .await;
    app.run(async |app| {
        wait_synced(app, &prefix, &p).await;
        let ids: Vec<Vec<String>> = p.iter().map(|s| docker::container_ids(s)).collect();

        for path in &p {
            repo.remove(&format!("{DEPLOY}/{path}"));
        }
        publish(app, &repo, "empty the deploy dir").await;
        let status_now = app.refresh_status().await;
        assert_eq!(status_now["stackCount"], 0, "{status_now}");
        // The refresh lists them `orphaned` at once; the reconcile that follows adds the reason.
        let stacks = wait_for(app, &prefix, LONG, "both orphaned", |stacks| {
            p.iter().all(|s| {
                status(stacks, s) == "orphaned"
                    && find(stacks, s).is_some_and(|r| r["lastSyncError"].is_string())
            })
        })
        .await;
        for path in &p {
            let record = find(&stacks, path).unwrap();
            assert!(
                record["lastSyncError"]
                    .as_str()
                    .is_some_and(|e| e.contains("no stacks")),
                "the orphan should say why nothing was removed: {record}"
            );
        }
        // Across resync ticks: nothing is removed.
        tokio::time::sleep(Duration::from_secs(7)).await;
        let stacks = app.stacks().await;
        for (i, path) in p.iter().enumerate() {
            assert_eq!(status(&stacks, path), "orphaned");
            assert_eq!(running_ids(path), ids[i], "{path} was taken down");
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 5. Restart

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f11_a_restart_on_the_same_data_dir_recognises_deployed_stacks_without_running_compose() {
    let Some((prefix, p, _cleanup)) = docker::begin_projects("restart", ["a", "b"]) else {
        return;
    };
    let repo = TestRepo::new();
    repo.write(
        &stack_file(&p[0], "compose.yaml"),
        docker::sleeper_compose(&["app"]),
    )
    .write(&stack_file(&p[1], "compose.yaml"), greeting_compose())
    .write(&stack_file(&p[1], ".env"), "GREETING=hi\n");
    let commit = repo.commit_and_push("two stacks");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (recorder, log) = recording_compose(dir.path());
    let configure = |a: &mut Args| {
        a.data_dir = data_dir.clone();
        a.compose_bin = Some(recorder.clone());
    };

    let first = start(&repo, configure).await;
    first
        .run(async |first| {
            wait_synced(first, &prefix, &p).await;
        })
        .await;
    let ids: Vec<Vec<String>> = p.iter().map(|s| docker::container_ids(s)).collect();
    let calls_before = compose_subcommands(&log);
    assert_eq!(
        calls_before.iter().filter(|c| *c == "up").count(),
        2,
        "the first instance should run one `up` per stack: {calls_before:?}"
    );

    let started = Instant::now();
    let second = start(&repo, configure).await;
    second
        .run(async |second| {
            let stacks = wait_for(
                second,
                &prefix,
                Duration::from_secs(20),
                "synced",
                |stacks| {
                    p.iter().all(|s| {
                        find(stacks, s)
                            .is_some_and(|r| r["status"] == "synced" && r["containersRunning"] == 1)
                    })
                },
            )
            .await;
            let elapsed = started.elapsed();
            for path in &p {
                let record = find(&stacks, path).unwrap();
                assert_eq!(record["syncedRevision"], commit.as_str(), "{record}");
                assert_eq!(record["syncedContentHash"], tree_id(&repo, path).as_str());
                assert!(record["syncedAt"].is_string(), "{record}");
            }
            // Give a late, unwanted sync the chance to show up.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let calls: Vec<String> = compose_subcommands(&log)
                .into_iter()
                .skip(calls_before.len())
                .collect();
            assert!(
                calls.iter().all(|c| c == "version"),
                "the restarted instance ran compose beyond detecting it: {calls:?}\n{}",
                log_tail(&prefix)
            );
            for (i, path) in p.iter().enumerate() {
                assert_eq!(docker::container_ids(path), ids[i], "{path} was recreated");
            }
            assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
        })
        .await;
}

// ---------------------------------------------------------------------------------------------
// 6. Drift

/// The setup of the drift cases: one stack of two sleeping services (`a`, `b`), in an app with
/// `drift_policy` and a 5 s reconcile tick. Destructure it with named bindings: `_cleanup` and
/// `_repo` must live to the end of the case.
struct DriftCase {
    prefix: String,
    paths: Vec<String>,
    _cleanup: Cleanup,
    _repo: TestRepo,
    app: TestApp,
}

/// Waits until the drift case's stack is synced with both its services' containers running
/// (`failure` says what did not happen, with the logs, after [`LONG`]).
async fn wait_both_running(app: &TestApp, prefix: &str, path: &str, failure: &str) {
    let deadline = Instant::now() + LONG;
    loop {
        let stacks = app.stacks().await;
        if status(&stacks, path) == "synced"
            && service_container(path, "a").is_some()
            && service_container(path, "b").is_some()
            && running_ids(path).len() == 2
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{failure}: {stacks:?}\n{}",
            log_tail(prefix)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `None` when Docker tests cannot run here (see [`docker::begin`]).
async fn drift_case(name: &str, drift_policy: &str) -> Option<DriftCase> {
    let prefix = docker::begin(name)?;
    let paths = paths(&prefix, &["pair"]);
    let cleanup = Cleanup::new(paths.clone());
    let repo = TestRepo::new();
    repo.write(
        &stack_file(&paths[0], "compose.yaml"),
        docker::sleeper_compose(&["a", "b"]),
    );
    repo.commit_and_push("one stack");
    let app = start(&repo, |a| {
        a.drift_policy = drift_policy.into();
        a.reconcile_interval = "5s".into();
    })
    .await;
    Some(DriftCase {
        prefix,
        paths,
        _cleanup: cleanup,
        _repo: repo,
        app,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_container_is_recreated_on_the_next_tick_with_drift_policy_revert() {
    let Some(case) = drift_case("revert", "revert").await else {
        return;
    };
    let (prefix, p, app) = (&case.prefix, &case.paths, case.app);
    app.run(async |app| {
        wait_synced(app, prefix, p).await;
        let removed = service_container(&p[0], "b").unwrap();
        docker::output(&["rm", "-f", &removed]);
        assert!(service_container(&p[0], "b").is_none());

        wait_both_running(app, prefix, &p[0], "the drift was not reverted").await;
        assert_ne!(service_container(&p[0], "b").unwrap(), removed);
        let logs = log_tail(&p[0]);
        assert!(
            logs.contains("service b has no container"),
            "the re-sync should log the drift it reverts:\n{logs}"
        );

        // A container stopped by hand is drift too: it runs again after the next tick.
        let stopped = service_container(&p[0], "a").unwrap();
        docker::output(&["stop", &stopped]);
        assert_eq!(running_ids(&p[0]).len(), 1);
        wait_both_running(
            app,
            prefix,
            &p[0],
            "the stopped container was not started again",
        )
        .await;
        let logs = log_tail(&p[0]);
        assert!(
            logs.contains("is exited"),
            "the re-sync should name the stopped container:\n{logs}"
        );
    })
    .await;
}

/// Found while writing the test above: a drift revert recreates every container of the stack,
/// including those that did not drift, because the sync writes new `synced-at` (and possibly
/// `revision`) label values, which changes compose's config hash of every service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_revert_leaves_the_containers_that_did_not_drift_alone() {
    let Some(case) = drift_case("healonly", "revert").await else {
        return;
    };
    let (prefix, p, app) = (&case.prefix, &case.paths, case.app);
    let path = &p[0];
    app.run(async |app| {
        wait_synced(app, prefix, p).await;
        let healthy = service_container(path, "a").unwrap();
        let synced_at = docker::label(&healthy, "com.docker-cd.synced-at");
        let removed = service_container(path, "b").unwrap();
        docker::output(&["rm", "-f", &removed]);

        wait_both_running(app, prefix, path, "the drift was not reverted").await;
        let after = service_container(path, "a").unwrap();
        assert_eq!(
            after,
            healthy,
            "reverting the drift of service b also recreated service a, which had not drifted \
             (its com.docker-cd.synced-at label went from {synced_at} to {}); a self-heal should \
             only touch what drifted",
            docker::label(&after, "com.docker-cd.synced-at")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_container_is_flagged_until_acknowledged_with_drift_policy_flag() {
    let Some(case) = drift_case("flag", "flag").await else {
        return;
    };
    let (prefix, p, app) = (&case.prefix, &case.paths, case.app);
    let path = &p[0];
    app.run(async |app| {
        wait_synced(app, prefix, p).await;
        // Nothing to acknowledge yet.
        let (code, body) = app
            .post_json("/api/reconcile/ack", json!({ "path": path }))
            .await;
        assert_eq!(code, 409, "{body}");

        let kept = service_container(path, "a").unwrap();
        let removed = service_container(path, "b").unwrap();
        docker::output(&["rm", "-f", &removed]);

        let stacks = wait_for(app, prefix, Duration::from_secs(60), "drifted", |stacks| {
            status(stacks, path) == "drifted"
        })
        .await;
        let record = find(&stacks, path).unwrap();
        let drift = record["drift"].as_str().unwrap_or_default();
        assert!(drift.contains("service b has no container"), "{record}");

        // Two more ticks: still drifted, nothing re-applied.
        tokio::time::sleep(Duration::from_secs(12)).await;
        let stacks = app.stacks().await;
        assert_eq!(status(&stacks, path), "drifted", "{stacks:?}");
        assert!(
            service_container(path, "b").is_none(),
            "re-applied without an ack"
        );
        assert_eq!(running_ids(path), vec![kept.clone()]);

        let (code, body) = app
            .post_json("/api/reconcile/ack", json!({ "path": path }))
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["status"], "acknowledged", "{body}");
        let stacks = wait_for(app, prefix, LONG, "re-applied after the ack", |stacks| {
            status(stacks, path) == "synced" && running_ids(path).len() == 2
        })
        .await;
        let record = find(&stacks, path).unwrap();
        assert_eq!(record["drift"], Value::Null, "{record}");
        let back = service_container(path, "b").expect("b is back");
        assert_ne!(back, removed);
        // Stays synced on the following tick.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(status(&app.stacks().await, path), "synced");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 7. A project docker-cd does not own

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compose_project_started_by_hand_is_not_taken_over() {
    let Some(prefix) = docker::begin("foreign") else {
        return;
    };
    let p = paths(&prefix, &["mine", "theirs"]);
    let (mine, theirs) = (&p[0], &p[1]);
    let _cleanup = Cleanup::new(p.clone());

    // Someone runs the project by hand, with their own file.
    let by_hand = tempfile::tempdir().unwrap();
    let file = by_hand.path().join("docker-compose.yml");
    std::fs::write(&file, docker::sleeper_compose(&["app"])).unwrap();
    common::checked(
        std::process::Command::new("docker-compose")
            .args(["-p", theirs, "-f"])
            .arg(&file)
            .args(["up", "-d"]),
    );
    let hand_ids = docker::container_ids(theirs);
    assert_eq!(hand_ids.len(), 1);

    let repo = TestRepo::new();
    write_sleepers(&repo, &p);
    repo.commit_and_push("two stacks, one already running by hand");

    let app = start(&repo, |a| a.reconcile_interval = "5s".into()).await;
    app.run(async |app| {
        let stacks = wait_for(app, &prefix, LONG, "mine synced, theirs failed", |stacks| {
            status(stacks, mine) == "synced" && status(stacks, theirs) == "failed"
        })
        .await;
        let error = find(&stacks, theirs).unwrap()["lastSyncError"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            error.contains("not deployed by docker-cd")
                && error.contains(&format!("-p {theirs} down")),
            "the failure should say how to adopt the project: {error}"
        );
        // Across a tick: the hand-started container is untouched.
        tokio::time::sleep(Duration::from_secs(7)).await;
        assert_eq!(status(&app.stacks().await, theirs), "failed");
        assert_eq!(docker::container_ids(theirs), hand_ids, "taken over");
        assert_eq!(running_ids(theirs), hand_ids, "stopped");
        let labels = &inspect(&hand_ids[0])["Config"]["Labels"];
        for key in [
            "com.docker-cd.owner",
            "com.docker-cd.stack.path",
            "com.docker-cd.content-hash",
            "com.docker-cd.revision",
        ] {
            assert!(labels.get(key).is_none(), "{key} was added: {labels}");
        }
        assert_eq!(
            labels["com.docker.compose.project.config_files"],
            file.to_str().unwrap(),
            "{labels}"
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 8. A hanging compose

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f09_a_hanging_compose_is_killed_at_the_timeout_with_its_children_and_the_next_stack_proceeds()
 {
    let Some((prefix, p, _cleanup)) = docker::begin_projects("hang", ["first", "second"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let fake = dir.path().join("fake-compose");
    write_executable(
        &fake,
        &format!(
            "#!/bin/sh\n\
             if [ \"$1\" = version ]; then echo 1.29.2; exit 0; fi\n\
             for a in \"$@\"; do [ \"$a\" = config ] && {{ echo app; exit 0; }}; done\n\
             echo \"script $$\" >> '{pids}'\n\
             sleep 3600 &\n\
             echo \"grandchild $!\" >> '{pids}'\n\
             sleep 3600\n",
            pids = pids.display()
        ),
    );
    let repo = TestRepo::new();
    write_sleepers(&repo, &p);
    repo.commit_and_push("two stacks");

    let started = Instant::now();
    let app = start(&repo, |a| {
        a.compose_bin = Some(fake.clone());
        a.compose_timeout = "3s".into();
    })
    .await;
    app.run(async |app| {
        let stacks = wait_for(
            app,
            &prefix,
            Duration::from_secs(30),
            "both failed",
            |stacks| p.iter().all(|s| status(stacks, s) == "failed"),
        )
        .await;
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(20),
            "both failed only after {elapsed:?}"
        );
        for path in &p {
            let error = find(&stacks, path).unwrap()["lastSyncError"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                error.contains("compose up failed") && error.contains("timed out after 3s"),
                "{path}: the failure should name the step and the timeout: {error}"
            );
        }
        let recorded: Vec<u32> = std::fs::read_to_string(&pids)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .collect();
        assert!(
            recorded.len() >= 4,
            "each stack should have started the fake tool once: {recorded:?}"
        );
        eventually(
            Duration::from_secs(5),
            "fake compose processes dead",
            || recorded.iter().all(|pid| !alive(*pid)),
        )
        .await;
        assert!(docker::container_ids(&p[0]).is_empty());
    })
    .await;
    // Whatever happened, leave no sleeper behind.
    for line in std::fs::read_to_string(&pids).unwrap_or_default().lines() {
        if let Some(pid) = line.split_whitespace().nth(1) {
            let _ = std::process::Command::new("kill")
                .args(["-9", pid])
                .output();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Reconciling disabled

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reconciling_disabled_stacks_are_listed_missing_and_nothing_is_deployed() {
    let Some((_prefix, p, _cleanup)) = docker::begin_projects("off", ["a", "b"]) else {
        return;
    };
    let repo = TestRepo::new();
    write_sleepers(&repo, &p);
    let commit = repo.commit_and_push("two stacks");

    let app = start(&repo, |a| a.reconcile_enabled = "false".into()).await;
    app.run(async |app| {
        wait_revision(app, &commit).await;
        refresh(app).await;
        app.wait_refreshes(2).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let stacks = app.stacks().await;
        for path in &p {
            assert_eq!(status(&stacks, path), "missing", "{stacks:?}");
            assert!(
                docker::container_ids(path).is_empty(),
                "{path} was deployed"
            );
            assert!(networks(path).is_empty(), "{path} got a network");
        }
        let (code, body) = app
            .post_json("/api/reconcile/ack", json!({ "path": p[0] }))
            .await;
        assert_eq!(code, 409, "{body}");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 10. Errors readable without a token (X8)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x08_a_compose_interpolation_error_shows_neither_the_value_nor_data_dir() {
    let Some((prefix, p, _cleanup)) = docker::begin_projects("x08", ["leaky"]) else {
        return;
    };
    let repo = TestRepo::new();
    repo.write(
        &stack_file(&p[0], "compose.yaml"),
        format!(
            "services:\n  app:\n    image: {TEST_IMAGE}\n    command: [\"sleep\", \"3600\"]\n    \
             environment:\n      PASSWORD: \"hunter2${{\"\n"
        ),
    );
    repo.commit_and_push("a broken value");
    let app = start(&repo, |_| {}).await;
    app.run(async |app| {
        let stacks = wait_for(app, &prefix, LONG, "the stack failed", |stacks| {
            status(stacks, &p[0]) == "failed"
        })
        .await;
        let error = find(&stacks, &p[0]).unwrap()["lastSyncError"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // Whatever the compose version's words: the step and its exit status, not the value.
        // A sync starts compose once (`up`): the file is plain YAML, so docker-cd lists its
        // services itself and compose meets the bad value at `up`.
        assert!(error.starts_with("compose up failed: "), "{error}");
        assert!(error.contains("exit code"), "{error}");
        assert!(error.contains("interpolation"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let data_dir = app.data.path().join("data").display().to_string();
        assert!(!error.contains(&data_dir), "{error}");
        assert!(
            common::logs()
                .lines()
                .any(|l| l.contains("the full text of an error") && l.contains("hunter2${")),
            "the full text is not in the debug log"
        );
        assert!(docker::container_ids(&p[0]).is_empty());
    })
    .await;
}
