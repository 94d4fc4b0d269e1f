//! What an operator does to a stack, on the real engine (SPEC §10, issue 13): the durable
//! history, the diff, sync now, rollback and pin, unpin, suspend and resume, and
//! `ROLLBACK_ON_FAILURE`. A restart on the same data dir keeps history, pins and suspensions.

use std::time::Duration;

use super::common::docker::{self, TEST_IMAGE};
use super::common::{TestApp, TestRepo, find, status, wait_for, wait_revision};
use super::{LONG, stack_file, start};
use docker_cd::config::Args;
use serde_json::{Value, json};

fn env_compose(greeting: &str, extra: &str) -> String {
    format!(
        "services:\n  app:\n    image: {TEST_IMAGE}\n    init: true\n    command: [\"sleep\", \"3600\"]\n    \
         environment:\n      GREETING: {greeting:?}\n{extra}"
    )
}

/// The GREETING the stack's `app` container runs with.
fn greeting(project: &str) -> String {
    let filter = format!("label=com.docker.compose.project={project}");
    let ids = docker::output(&[
        "ps",
        "-q",
        "--filter",
        &filter,
        "--filter",
        "label=com.docker.compose.service=app",
    ]);
    let id = ids.lines().next().expect("a container of app").to_owned();
    docker::output(&[
        "inspect",
        "--format",
        "{{range .Config.Env}}{{println .}}{{end}}",
        &id,
    ])
    .lines()
    .find_map(|l| l.strip_prefix("GREETING=").map(str::to_owned))
    .unwrap_or_default()
}

async fn history(app: &TestApp, path: &str) -> Vec<Value> {
    let (code, body) = app
        .get_json(&format!("/api/stacks/{}/history", encode(path)))
        .await;
    assert_eq!(code, 200, "{body}");
    body["deployments"].as_array().cloned().unwrap_or_default()
}

async fn post(app: &TestApp, path: &str, action: &str, body: Value) -> (u16, Value) {
    app.post_json(&format!("/api/stacks/{}/{action}", encode(path)), body)
        .await
}

/// `docker-cd diff --url <the app> <path>`: its exit code.
async fn cli_diff(app: &TestApp, path: &str) -> Option<i32> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_docker-cd"))
        .args(["diff", "--url", &app.base, path])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .output()
        .await
        .unwrap();
    out.status.code()
}

fn encode(path: &str) -> String {
    path.replace('/', "%2F")
}

async fn synced_at(app: &TestApp, prefix: &str, path: &str, revision: &str) -> Vec<Value> {
    wait_for(
        app,
        prefix,
        LONG,
        &format!("synced at {revision}"),
        |stacks| {
            find(stacks, path)
                .is_some_and(|s| s["status"] == "synced" && s["syncedRevision"] == revision)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_diff_rollback_pin_and_suspend_survive_a_restart() {
    let Some((prefix, [path, other], _cleanup)) = docker::begin_projects("op", ["web", "other"])
    else {
        return;
    };
    let repo = TestRepo::new();
    // A commit without the stack, to roll back to (409).
    repo.write("README.md", "stacks come next\n");
    let before = repo.commit_and_push("no stack yet");
    repo.write(&stack_file(&path, "compose.yaml"), env_compose("one", ""));
    repo.write(&stack_file(&path, "notes.txt"), "first\n");
    let first = repo.commit_and_push("first version");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let configure = |a: &mut Args| {
        a.data_dir = data_dir.clone();
        a.reconcile_interval = "5s".into();
        a.reconcile_remove_enabled = "true".into();
    };
    let app = start(&repo, configure).await;
    let second = app
        .run(async |app| {
            synced_at(app, &prefix, &path, &first).await;
            assert_eq!(greeting(&path), "one");

            // The diff of a pending commit: a modified file, an added text file, a deleted
            // file, an added binary file, and the services it recreates and creates.
            repo.write(
                &stack_file(&path, "compose.yaml"),
                env_compose(
                    "two",
                    &format!(
                        "  extra:\n    image: {TEST_IMAGE}\n    init: true\n    command: [\"sleep\", \"3600\"]\n"
                    ),
                ),
            );
            repo.remove(&stack_file(&path, "notes.txt"));
            repo.write(&stack_file(&path, "added.txt"), "new\n");
            repo.write(&stack_file(&path, "logo.bin"), [0u8, 159, 146, 150, 0, 1]);
            // Suspended first, so the diff can be read before anything is applied.
            let (code, body) = post(app, &path, "suspend", json!({})).await;
            assert_eq!(code, 200, "{body}");
            let second = repo.commit_and_push("second version");
            app.push_webhook("refs/heads/main", &second).await;
            wait_revision(app, &second).await;
            let stacks = wait_for(app, &prefix, LONG, "suspended", |stacks| {
                find(stacks, &path).is_some_and(|s| s["suspended"] == true && s["health"] == "suspended")
            })
            .await;
            assert_eq!(find(&stacks, &path).unwrap()["syncedRevision"], first.as_str());
            let (code, diff) = app
                .get_json(&format!("/api/stacks/{}/diff", encode(&path)))
                .await;
            assert_eq!(code, 200, "{diff}");
            assert_eq!(diff["from"], first.as_str());
            assert_eq!(diff["to"], second.as_str());
            assert_eq!(diff["inSync"], false);
            // The CLI against the real route: 1 while something is pending.
            assert_eq!(cli_diff(app, &path).await, Some(1));
            let change = |file: &str| {
                diff["files"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|f| f["path"] == file)
                    .cloned()
                    .unwrap_or(Value::Null)
            };
            assert_eq!(change("compose.yaml")["change"], "modified", "{diff}");
            assert!(change("compose.yaml")["diff"].as_str().unwrap().contains("+      GREETING: \"two\""), "{diff}");
            assert_eq!(change("notes.txt")["change"], "deleted", "{diff}");
            assert_eq!(change("added.txt")["change"], "added", "{diff}");
            assert_eq!(change("logo.bin")["diff"], Value::Null, "{diff}");
            assert_eq!(change("logo.bin")["binary"], true, "{diff}");
            let service = |name: &str| {
                diff["services"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["name"] == name)
                    .map(|s| s["action"].as_str().unwrap_or_default().to_owned())
            };
            assert_eq!(service("app").as_deref(), Some("recreate"), "{diff}");
            assert_eq!(service("extra").as_deref(), Some("create"), "{diff}");
            // Suspended: neither the commit nor a drift is applied.
            docker::output(&["rm", "-f", &docker::container_ids(&path)[0]]);
            tokio::time::sleep(Duration::from_secs(7)).await;
            assert!(docker::container_ids(&path).is_empty(), "a suspended stack was reverted");
            let (code, _) = post(app, &path, "sync", json!({})).await;
            assert_eq!(code, 409, "sync now of a suspended stack");

            // Resume: the new commit is applied; the history has both, newest first.
            let (code, body) = post(app, &path, "resume", json!({})).await;
            assert_eq!(code, 200, "{body}");
            synced_at(app, &prefix, &path, &second).await;
            assert_eq!(greeting(&path), "two");
            let (_, diff) = app
                .get_json(&format!("/api/stacks/{}/diff", encode(&path)))
                .await;
            assert_eq!(diff["inSync"], true, "{diff}");
            // 0 when nothing is pending, 2 for a stack that does not exist.
            assert_eq!(cli_diff(app, &path).await, Some(0));
            assert_eq!(cli_diff(app, "no-such-stack").await, Some(2));
            let deployments = history(app, &path).await;
            assert!(deployments.len() >= 2, "{deployments:?}");
            let newest = &deployments[0];
            assert_eq!(newest["revision"], second.as_str());
            assert_eq!(newest["outcome"], "succeeded");
            assert_eq!(newest["trigger"], "commit");
            assert_eq!(newest["commitMessage"], "second version");
            for field in ["id", "contentHash", "startedAt", "finishedAt", "reason", "images"] {
                assert!(newest.get(field).is_some(), "{field} missing: {newest}");
            }
            let images = newest["images"].as_array().unwrap();
            assert!(
                images.iter().any(|i| i["service"] == "app"
                    && i["image"] == TEST_IMAGE
                    && i["imageId"].as_str().is_some_and(|id| id.starts_with("sha256:"))),
                "{images:?}"
            );
            assert!(deployments[0]["id"].as_u64() > deployments[1]["id"].as_u64());

            // Sync now: re-applied though in sync, recorded as manual.
            let (code, body) = post(app, &path, "sync", json!({})).await;
            assert_eq!(code, 202, "{body}");
            wait_until_history(app, &path, |d| d[0]["trigger"] == "manual").await;

            // Rollback: unknown commit 404, a commit without the stack 409, the default goes to
            // the previous succeeded deployment and pins it.
            let (code, _) = post(app, &path, "rollback", json!({"revision": "0123456789abcdef0123456789abcdef01234567"})).await;
            assert_eq!(code, 404);
            let (code, body) = post(app, &path, "rollback", json!({"revision": before})).await;
            assert_eq!(code, 409, "{body}");
            let (code, body) = post(app, &path, "rollback", json!({})).await;
            assert_eq!(code, 202, "{body}");
            assert_eq!(body["revision"], first.as_str());
            let stacks = synced_at(app, &prefix, &path, &first).await;
            assert_eq!(find(&stacks, &path).unwrap()["pinnedRevision"], first.as_str());
            assert_eq!(greeting(&path), "one");
            wait_until_history(app, &path, |d| d[0]["trigger"] == "rollback" && d[0]["outcome"] == "succeeded").await;
            second
        })
        .await;

    // Restart on the same data dir: the pin holds through a newer commit, history is kept.
    repo.write(&stack_file(&path, "compose.yaml"), env_compose("three", ""));
    let third = repo.commit_and_push("third version");
    let app = start(&repo, configure).await;
    app.run(async |app| {
        wait_revision(app, &third).await;
        wait_for(app, &prefix, LONG, "restarted, still pinned", |stacks| {
            find(stacks, &path)
                .is_some_and(|s| s["pinnedRevision"] == first.as_str() && s["status"] == "synced")
        })
        .await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(greeting(&path), "one", "a pinned stack followed Git");
        let deployments = history(app, &path).await;
        assert!(
            deployments.iter().any(|d| d["revision"] == second.as_str()),
            "{deployments:?}"
        );
        assert_eq!(deployments[0]["trigger"], "rollback");
        // Unpin: the stack follows Git again, to the tip.
        let (code, body) = post(app, &path, "unpin", json!({})).await;
        assert_eq!(code, 200, "{body}");
        let stacks = synced_at(app, &prefix, &path, &third).await;
        assert_eq!(find(&stacks, &path).unwrap()["pinnedRevision"], Value::Null);
        assert_eq!(greeting(&path), "three");
        // Suspended, then removed from Git with removal enabled: never taken down.
        let (code, _) = post(app, &path, "suspend", json!({})).await;
        assert_eq!(code, 200);
        repo.remove(&stack_file(&path, "compose.yaml"));
        repo.write(&stack_file(&other, "compose.yaml"), env_compose("x", ""));
        let gone = repo.commit_and_push("remove the stack");
        app.push_webhook("refs/heads/main", &gone).await;
        wait_for(app, &prefix, LONG, "orphaned, not removed", |stacks| {
            status(stacks, &path) == "orphaned"
        })
        .await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(
            !docker::container_ids(&path).is_empty(),
            "a suspended stack was removed"
        );
    })
    .await;
}

async fn wait_until_history(app: &TestApp, path: &str, check: impl Fn(&[Value]) -> bool) {
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let deployments = history(app, path).await;
        if !deployments.is_empty() && check(&deployments) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "history never matched: {deployments:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_on_failure_puts_the_last_good_version_back_after_a_bad_image_or_health() {
    let Some((prefix, [path], _cleanup)) = docker::begin_projects("rof", ["web"]) else {
        return;
    };
    let repo = TestRepo::new();
    repo.write(&stack_file(&path, "compose.yaml"), env_compose("good", ""));
    let good = repo.commit_and_push("a good version");
    let app = start(&repo, |a| {
        a.rollback_on_failure = "true".into();
        a.sync_health_timeout = "8s".into();
        a.reconcile_interval = "5s".into();
    })
    .await;
    app.run(async |app| {
        synced_at(app, &prefix, &path, &good).await;
        let bad_image = "services:\n  app:\n    image: docker-cd-test/does-not-exist:nope\n".to_owned();
        let unhealthy = env_compose(
            "sick",
            "    healthcheck:\n      test: [\"CMD-SHELL\", \"exit 1\"]\n      interval: 1s\n      timeout: 1s\n      retries: 1\n",
        );
        for (file, what) in [(bad_image, "an unknown image"), (unhealthy, "a failing healthcheck")] {
            repo.write(&stack_file(&path, "compose.yaml"), file);
            let bad = repo.commit_and_push(what);
            app.push_webhook("refs/heads/main", &bad).await;
            // The previous round's words are still on the record: wait for this round's.
            wait_until_history(app, &path, |d| {
                d.len() >= 2 && d[1]["revision"] == bad.as_str() && d[0]["trigger"] == "rollback"
            })
            .await;
            let stacks = wait_for(app, &prefix, LONG, "rolled back", |stacks| {
                find(stacks, &path).is_some_and(|s| {
                    s["lastSyncError"]
                        .as_str()
                        .is_some_and(|e| e.starts_with(&format!("rolled back to {}", &good[..12])))
                })
            })
            .await;
            let record = find(&stacks, &path).unwrap();
            assert_eq!(record["status"], "failed", "{what}: {record}");
            assert_eq!(record["syncedRevision"], good.as_str(), "{what}: {record}");
            assert_eq!(greeting(&path), "good", "{what}");
            let deployments = history(app, &path).await;
            assert_eq!(deployments[0]["trigger"], "rollback", "{what}: {deployments:?}");
            assert_eq!(deployments[0]["outcome"], "succeeded", "{what}");
            assert_eq!(deployments[0]["revision"], good.as_str(), "{what}");
            assert_eq!(deployments[1]["revision"], bad.as_str(), "{what}");
            assert_eq!(deployments[1]["outcome"], "rolled-back", "{what}");
            // Held: the next ticks leave it on the good version, still saying why.
            tokio::time::sleep(Duration::from_secs(6)).await;
            let stacks = app.stacks().await;
            assert_eq!(find(&stacks, &path).unwrap()["syncedRevision"], good.as_str());
            assert_eq!(status(&stacks, &path), "failed");
        }
    })
    .await;
}
