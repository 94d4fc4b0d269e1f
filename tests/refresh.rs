//! Desired-state cache and refresh, end to end against the real `git` binary (issue 2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestApp, TestRepo, stack};
use serde_json::Value;

fn compose(image: &str) -> String {
    format!("services:\n  app:\n    image: {image}\n")
}

#[tokio::test]
async fn startup_fills_the_cache_with_stacks_hashes_and_revision() {
    let repo = TestRepo::new();
    repo.write("stacks/web/compose.yaml", compose("nginx:1"))
        .write("stacks/web/.env", "A=1\n")
        .write("stacks/db/docker-compose.yml", compose("postgres:16"))
        .write("stacks/notes/README.md", "no compose file here\n")
        .write("stacks/.hidden/compose.yaml", compose("x"))
        .write("README.md", "root\n");
    let commit = repo.commit_and_push("initial stacks");

    let app = TestApp::start(&repo.url(), |a| a.git_deploy_dir = "stacks".into()).await;
    app.wait_refreshes(1).await;
    let status = app.refresh_status().await;
    assert_eq!(status["refreshStatus"], "completed", "{status}");
    assert_eq!(status["revision"], commit.as_str());
    assert_eq!(status["ref"], "refs/heads/main");
    assert_eq!(status["refType"], "branch");
    assert_eq!(status["commitMessage"], "initial stacks");
    assert_eq!(status["trigger"], "startup");
    assert!(status["lastSuccessAt"].is_string());

    let stacks = app.stacks().await;
    let paths: Vec<&str> = stacks.iter().map(|s| s["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["db", "web"]);
    let web = stack(&stacks, "web");
    assert_eq!(web["status"], "missing");
    assert_eq!(web["composeFile"], "compose.yaml");
    assert_eq!(web["projectName"], "web");
    // composeHash is the SHA-256 of the compose bytes; contentHash the tree id of the directory.
    let expected_compose = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(compose("nginx:1")));
    assert_eq!(web["composeHash"], expected_compose.as_str());
    assert_eq!(
        web["contentHash"],
        repo.git(&["rev-parse", "HEAD:stacks/web"]).as_str()
    );
    app.stop().await;
}

#[tokio::test]
async fn an_empty_deploy_dir_gives_an_empty_cache_and_a_successful_start() {
    let repo = TestRepo::new();
    repo.write("stacks/.gitkeep", "")
        .write("README.md", "nothing yet\n");
    repo.commit_and_push("empty");
    let app = TestApp::start(&repo.url(), |a| a.git_deploy_dir = "stacks".into()).await;
    app.wait_refreshes(1).await;
    let status = app.refresh_status().await;
    assert_eq!(status["refreshStatus"], "completed", "{status}");
    assert_eq!(status["stackCount"], 0);
    assert!(app.stacks().await.is_empty());
    let (code, health) = app.get_json("/healthz").await;
    assert_eq!((code, health["status"].as_str()), (200, Some("ok")));
    app.stop().await;
}

#[tokio::test]
async fn http_answers_before_the_first_refresh_finishes() {
    let repo = TestRepo::new();
    repo.write("a/compose.yaml", compose("x"));
    repo.commit_and_push("one");
    let dir = tempfile::tempdir().unwrap();
    // Every fetch takes 2 s: the first refresh is still running when we ask.
    let (git, _log) = common::recording_git(dir.path(), 2);
    let app = TestApp::start(&repo.url(), |a| a.git_bin = Some(git)).await;
    let started = std::time::Instant::now();
    let status = app.refresh_status().await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(status["refreshStatus"], "refreshing", "{status}");
    assert!(status["revision"].is_null());
    app.wait_refreshes(1).await;
    assert_eq!(app.refresh_status().await["refreshStatus"], "completed");
    app.stop().await;
}

#[tokio::test]
async fn a_signed_webhook_after_a_push_updates_the_cache() {
    let repo = TestRepo::new();
    repo.write("keep/compose.yaml", compose("keep:1"))
        .write("change/compose.yaml", compose("change:1"))
        .write("drop/compose.yaml", compose("drop:1"));
    repo.commit_and_push("v1");
    let app = TestApp::start(&repo.url(), |_| {}).await;
    app.wait_refreshes(1).await;
    let before = app.stacks().await;

    repo.write("change/compose.yaml", compose("change:2"))
        .remove("drop")
        .write("added/compose.yml", compose("added:1"));
    let commit = repo.commit_and_push("v2");
    let sent = std::time::Instant::now();
    let (code, answer) = app.push_webhook("refs/heads/main", &commit).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["status"], "refreshing");
    app.wait_refreshes(2).await;
    let elapsed = sent.elapsed();
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");

    let status = app.refresh_status().await;
    assert_eq!(status["revision"], commit.as_str());
    assert_eq!(status["trigger"], "webhook");
    let after = app.stacks().await;
    let paths: Vec<&str> = after.iter().map(|s| s["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["added", "change", "keep"]);
    assert_ne!(
        stack(&after, "change")["composeHash"],
        stack(&before, "change")["composeHash"]
    );
    assert_ne!(
        stack(&after, "change")["contentHash"],
        stack(&before, "change")["contentHash"]
    );
    // Unchanged stacks keep everything, status included.
    assert_eq!(stack(&after, "keep"), stack(&before, "keep"));
    assert_eq!(stack(&after, "added")["status"], "missing");
    app.stop().await;
}

#[tokio::test]
async fn a_force_push_deploys_the_new_tip_and_the_payload_commit_is_never_trusted() {
    let repo = TestRepo::new();
    repo.write("a/compose.yaml", compose("a:1"));
    let first = repo.commit_and_push("first");
    repo.write("a/compose.yaml", compose("a:2"));
    let second = repo.commit_and_push("second");
    let app = TestApp::start(&repo.url(), |_| {}).await;
    app.wait_refreshes(1).await;
    assert_eq!(app.refresh_status().await["revision"], second.as_str());

    repo.reset_hard(&first);
    repo.write("a/compose.yaml", compose("a:3"));
    let rewritten = repo.commit("rewritten history");
    repo.force_push();
    // The payload claims an older commit: the agent deploys what it fetches, the new tip.
    let (code, _) = app.push_webhook("refs/heads/main", &first).await;
    assert_eq!(code, 200);
    app.wait_refreshes(2).await;
    assert_eq!(app.refresh_status().await["revision"], rewritten.as_str());
    app.stop().await;
}

#[tokio::test]
async fn deleting_the_tracked_branch_keeps_the_last_good_snapshot() {
    let repo = TestRepo::new();
    repo.write("a/compose.yaml", compose("a:1"));
    let commit = repo.commit_and_push("one");
    repo.git(&["push", "--quiet", "origin", "HEAD:refs/heads/side"]);
    let app = TestApp::start(&repo.url(), |a| a.git_revision = "side".into()).await;
    app.wait_refreshes(1).await;
    repo.delete_remote_branch("side");
    let payload_after = "0000000000000000000000000000000000000000";
    let (code, answer) = app.push_webhook("refs/heads/side", payload_after).await;
    assert_eq!(code, 200, "{answer}");
    assert!(
        answer["warning"]
            .as_str()
            .unwrap()
            .contains("deletes the tracked ref")
    );
    app.wait_refreshes(2).await;
    let status = app.refresh_status().await;
    assert_eq!(status["refreshStatus"], "failed");
    assert!(
        status["refreshError"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{status}"
    );
    assert_eq!(status["revision"], commit.as_str());
    assert_eq!(app.stacks().await.len(), 1, "never read as 'no stacks'");
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_origin_after_a_good_refresh_keeps_the_snapshot_and_says_why() {
    let repo = TestRepo::new();
    repo.write("a/compose.yaml", compose("a:1"));
    let commit = repo.commit_and_push("one");
    let app = TestApp::start(&repo.url(), |_| {}).await;
    app.wait_refreshes(1).await;
    let before = app.stacks().await;

    let moved = repo.origin().with_extension("moved");
    std::fs::rename(repo.origin(), &moved).unwrap();
    let (code, answer) = app.post_json("/api/refresh", Value::Null).await;
    assert_eq!((code, answer["status"].as_str()), (200, Some("refreshing")));
    app.wait_refreshes(2).await;
    let status = app.refresh_status().await;
    assert_eq!(status["refreshStatus"], "failed");
    assert_eq!(status["trigger"], "manual");
    assert_eq!(status["revision"], commit.as_str());
    let reason = status["refreshError"].as_str().unwrap();
    assert!(reason.contains("cannot list refs"), "{reason}");
    assert_eq!(app.stacks().await, before);

    // Recovers by itself once the origin is back.
    std::fs::rename(&moved, repo.origin()).unwrap();
    app.post_json("/api/refresh", Value::Null).await;
    app.wait_refreshes(3).await;
    assert_eq!(app.refresh_status().await["refreshStatus"], "completed");
    app.stop().await;
}

#[tokio::test]
async fn a_hundred_concurrent_requests_run_at_most_two_fetches_one_at_a_time() {
    let repo = TestRepo::new();
    repo.write("a/compose.yaml", compose("a:1"));
    repo.commit_and_push("one");
    let dir = tempfile::tempdir().unwrap();
    let (git, log) = common::recording_git(dir.path(), 1);
    let app = TestApp::start(&repo.url(), |a| a.git_bin = Some(git)).await;
    app.wait_refreshes(1).await;
    let fetches_before = common::recorded_calls(&log)
        .iter()
        .filter(|c| *c == "fetch")
        .count();
    assert_eq!(fetches_before, 1);

    repo.write("a/compose.yaml", compose("a:2"));
    let tip = repo.commit_and_push("two");
    let first = app.post_json("/api/refresh", Value::Null).await;
    assert_eq!(first.1["status"], "refreshing");
    // The first refresh now sits in its 1 s fetch; 100 more arrive at once.
    let answers = futures_util::future::join_all(
        (0..100).map(|_| app.post_json("/api/refresh", Value::Null)),
    )
    .await;
    for (code, answer) in &answers {
        assert_eq!(*code, 200);
        let status = answer["status"].as_str().unwrap();
        assert!(status == "refreshing" || status == "queued", "{answer}");
    }
    assert!(
        answers
            .iter()
            .filter(|(_, a)| a["status"] == "queued")
            .count()
            >= 99
    );
    app.wait_refreshes(3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = common::recorded_calls(&log);
    let fetches = calls.iter().filter(|c| *c == "fetch").count() - fetches_before;
    assert!(fetches <= 2, "{fetches} fetches for one burst: {calls:?}");
    assert_eq!(common::max_concurrent_fetches(&log), 1);
    assert_eq!(
        app.app().refresh_progress.borrow().completed,
        3,
        "one running plus one waiting"
    );
    assert_eq!(app.refresh_status().await["revision"], tip.as_str());
    app.stop().await;
}

#[tokio::test]
async fn an_unchanged_remote_costs_one_git_process_and_a_change_four() {
    let repo = TestRepo::new();
    for i in 0..50 {
        repo.write(
            &format!("s{i:02}/compose.yaml"),
            compose(&format!("img:{i}")),
        );
    }
    repo.commit_and_push("fifty stacks");
    let dir = tempfile::tempdir().unwrap();
    let (git, log) = common::recording_git(dir.path(), 0);
    let app = TestApp::start(&repo.url(), |a| a.git_bin = Some(git)).await;
    app.wait_refreshes(1).await;
    let startup: Vec<String> = common::recorded_calls(&log);
    // --version and init happen once at start-up, before the first refresh.
    assert_eq!(
        startup
            .iter()
            .filter(|c| !c.is_empty() && *c != "init")
            .collect::<Vec<_>>(),
        ["ls-remote", "fetch", "cat-file", "ls-tree"]
    );

    app.post_json("/api/refresh", Value::Null).await;
    app.wait_refreshes(2).await;
    assert_eq!(common::recorded_calls(&log)[startup.len()..], ["ls-remote"]);

    repo.write("s07/compose.yaml", compose("img:changed"));
    repo.commit_and_push("change one");
    app.post_json("/api/refresh", Value::Null).await;
    app.wait_refreshes(3).await;
    // The listing is a diff against the previous commit, not the whole tree again.
    assert_eq!(
        common::recorded_calls(&log)[startup.len() + 1..],
        ["ls-remote", "fetch", "cat-file", "diff-tree"]
    );
    assert_eq!(app.stacks().await.len(), 50);
    app.stop().await;
}

#[tokio::test]
async fn tags_and_pinned_commits_are_deployable_revisions() {
    let repo = TestRepo::new();
    repo.write("a/compose.yaml", compose("a:1"));
    let tagged = repo.commit_and_push("tagged");
    repo.git(&["tag", "-a", "v1", "-m", "release v1"]);
    repo.git(&["push", "--quiet", "origin", "v1"]);
    repo.write("a/compose.yaml", compose("a:2"));
    let tip = repo.commit_and_push("later");

    let app = TestApp::start(&repo.url(), |a| a.git_revision = "v1".into()).await;
    app.wait_refreshes(1).await;
    let status = app.refresh_status().await;
    assert_eq!(status["revision"], tagged.as_str(), "{status}");
    assert_eq!(status["refType"], "tag");
    assert_eq!(status["ref"], "refs/tags/v1");
    // A push to main is not a push to the tag.
    let (_, answer) = app.push_webhook("refs/heads/main", &tip).await;
    assert_eq!(answer["status"], "ignored");
    app.stop().await;

    let app = TestApp::start(&repo.url(), |a| a.git_revision = tagged.clone()).await;
    app.wait_refreshes(1).await;
    let status = app.refresh_status().await;
    assert_eq!(status["revision"], tagged.as_str(), "{status}");
    assert_eq!(status["refType"], "commit");
    app.stop().await;
}

#[tokio::test]
async fn repository_content_edge_cases_become_per_stack_results() {
    let repo = TestRepo::new();
    repo.write("good/compose.yaml", compose("good:1"))
        .write("Tricky Name/compose.yaml", compose("t:1"))
        .write("trickyname/compose.yaml", compose("t:2"))
        .write("two/compose.yaml", compose("two:1"))
        .write("two/docker-compose.yml", compose("two:old"))
        .write("huge/compose.yaml", vec![b'#'; 2 * 1024 * 1024])
        .write("target/compose.yaml", compose("target:1"))
        .symlink("linked", "target")
        .write("evil/README.md", "x")
        .symlink("evil/compose.yaml", "/etc/shadow")
        .write(".github/compose.yaml", compose("hidden:1"));
    repo.commit_and_push("edge cases");
    let app = TestApp::start(&repo.url(), |_| {}).await;
    app.wait_refreshes(1).await;
    let stacks = app.stacks().await;
    let paths: Vec<&str> = stacks.iter().map(|s| s["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "Tricky Name",
            "evil",
            "good",
            "huge",
            "target",
            "trickyname",
            "two"
        ]
    );
    assert!(
        stack(&stacks, "Tricky Name")["error"]
            .as_str()
            .unwrap()
            .contains("collides")
    );
    assert!(
        stack(&stacks, "trickyname")["error"]
            .as_str()
            .unwrap()
            .contains("collides")
    );
    assert!(
        stack(&stacks, "evil")["error"]
            .as_str()
            .unwrap()
            .contains("symbolic link")
    );
    assert!(stack(&stacks, "evil")["composeHash"].is_null());
    assert!(
        stack(&stacks, "huge")["error"]
            .as_str()
            .unwrap()
            .contains("over the limit")
    );
    let two = stack(&stacks, "two");
    assert_eq!(two["composeFile"], "compose.yaml");
    assert!(
        two["warnings"][0]
            .as_str()
            .unwrap()
            .contains("docker-compose.yml is ignored")
    );
    assert!(stack(&stacks, "good")["error"].is_null());
    // The answer carries hashes, never file contents.
    let body = serde_json::to_string(&stacks).unwrap();
    assert!(!body.contains("good:1"));
    app.stop().await;
}

#[tokio::test]
async fn a_mirror_left_locked_by_a_killed_fetch_is_rebuilt() {
    let repo = TestRepo::new();
    repo.write("a/compose.yaml", compose("a:1"));
    repo.commit_and_push("one");
    let app = TestApp::start(&repo.url(), |_| {}).await;
    app.wait_refreshes(1).await;
    // A fetch killed while updating the ref leaves its lock file behind.
    let mirror = app.data.path().join("data/mirror.git");
    std::fs::write(mirror.join("refs/docker-cd/target.lock"), "").unwrap();
    repo.write("a/compose.yaml", compose("a:2"));
    let tip = repo.commit_and_push("two");
    app.post_json("/api/refresh", Value::Null).await;
    app.wait_refreshes(2).await;
    let status = app.refresh_status().await;
    assert_eq!(status["refreshStatus"], "completed", "{status}");
    assert_eq!(status["revision"], tip.as_str());
    assert!(common::logs().contains("the local mirror looks damaged"));
    app.stop().await;
}

#[tokio::test]
async fn a_mirror_that_lost_its_objects_recovers() {
    let repo = TestRepo::new();
    repo.write("a/compose.yaml", compose("a:1"));
    repo.commit_and_push("one");
    let app = TestApp::start(&repo.url(), |_| {}).await;
    app.wait_refreshes(1).await;
    let mirror = app.data.path().join("data/mirror.git");
    std::fs::remove_dir_all(mirror.join("objects")).unwrap();
    std::fs::create_dir_all(mirror.join("objects/pack")).unwrap();
    repo.write("a/compose.yaml", compose("a:2"));
    let tip = repo.commit_and_push("two");
    app.post_json("/api/refresh", Value::Null).await;
    app.wait_refreshes(2).await;
    let status = app.refresh_status().await;
    assert_eq!(status["refreshStatus"], "completed", "{status}");
    assert_eq!(status["revision"], tip.as_str());
    app.stop().await;
}

/// Child processes of this test process that are still around (running or zombie).
fn children_of_this_process() -> Vec<String> {
    let mut children = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        children.extend(text.split_whitespace().map(str::to_owned));
    }
    children
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_failing_refreshes_leave_no_children_and_no_leaked_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("file://{}/nowhere.git", dir.path().display());
    let app = TestApp::start(&missing, |_| {}).await;
    app.wait_refreshes(1).await;
    assert_eq!(app.refresh_status().await["refreshStatus"], "failed");
    let fds_before = open_fds();
    for n in 2..=1001 {
        app.app()
            .refresh
            .request(docker_cd::desired_state::Trigger::Manual);
        app.wait_refreshes(n).await;
    }
    let status = app.refresh_status().await;
    assert_eq!(status["refreshStatus"], "failed");
    assert!(
        status["consecutiveFailures"].as_u64().unwrap() >= 1001,
        "{status}"
    );
    let fds_after = open_fds();
    // Other tests in this binary run concurrently and open descriptors too: allow some slack,
    // far below one leaked descriptor per cycle.
    assert!(
        fds_after < fds_before + 50,
        "{fds_before} -> {fds_after} descriptors"
    );
    // No zombie children: every git that ran was reaped (retried briefly, as other tests in
    // this binary may have a child between its exit and its reaping).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let zombies: Vec<String> = children_of_this_process()
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')))
            })
            .collect();
        if zombies.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "zombie children: {zombies:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_remote_that_never_answers_is_killed_at_the_git_timeout() {
    // Accepts connections and never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _hold = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let app = TestApp::start(&format!("http://127.0.0.1:{port}/repo.git"), |a| {
        a.git_timeout = "2s".into();
    })
    .await;
    let started = std::time::Instant::now();
    app.wait_refreshes(1).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    let status = app.refresh_status().await;
    assert_eq!(status["refreshStatus"], "failed");
    assert!(
        status["refreshError"]
            .as_str()
            .unwrap()
            .contains("timed out after 2s"),
        "{status}"
    );
    // The next refresh can run.
    app.post_json("/api/refresh", Value::Null).await;
    app.wait_refreshes(2).await;
    app.stop().await;
    // git and its http helper were killed with their process group and reaped.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<String> = children_of_this_process()
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.contains(&port.to_string()))
            })
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "git children left: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
