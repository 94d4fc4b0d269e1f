//! Desired-state cache and refresh, end to end against the real `git` binary (issue 2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestApp, TestRepo, assert_refresh_error, compose, stack};
use serde_json::Value;

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
    let status = app.refreshed(1, "completed").await;
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
    let status = app.refreshed(1, "completed").await;
    assert_eq!(status["stackCount"], 0);
    assert!(app.stacks().await.is_empty());
    let (code, health) = app.get_json("/healthz").await;
    assert_eq!((code, health["status"].as_str()), (200, Some("ok")));
    app.stop().await;
}

#[tokio::test]
async fn http_answers_before_the_first_refresh_finishes() {
    let (repo, _) = TestRepo::with_stack("a", "x", "one");
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
async fn w16_the_payload_commit_is_never_trusted_and_a_force_push_deploys_the_new_tip() {
    let (repo, first) = TestRepo::with_stack("a", "a:1", "first");
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
async fn f05_tracked_branch_deleted_upstream_is_an_error_never_read_as_no_stacks() {
    let (repo, commit) = TestRepo::with_stack("a", "a:1", "one");
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
    let status = app.refreshed(2, "failed").await;
    assert_refresh_error(&status, "does not exist");
    assert_eq!(status["revision"], commit.as_str());
    assert_eq!(app.stacks().await.len(), 1, "never read as 'no stacks'");
    app.stop().await;
}

#[tokio::test]
async fn f02_remote_unreachable_after_a_good_refresh_keeps_the_snapshot_and_says_why() {
    let (repo, commit) = TestRepo::with_stack("a", "a:1", "one");
    let app = TestApp::start(&repo.url(), |_| {}).await;
    app.wait_refreshes(1).await;
    let before = app.stacks().await;

    let moved = repo.origin().with_extension("moved");
    std::fs::rename(repo.origin(), &moved).unwrap();
    let (code, answer) = app.post_json("/api/refresh", Value::Null).await;
    assert_eq!((code, answer["status"].as_str()), (200, Some("refreshing")));
    let status = app.refreshed(2, "failed").await;
    assert_eq!(status["trigger"], "manual");
    assert_eq!(status["revision"], commit.as_str());
    let reason = status["refreshError"].as_str().unwrap();
    assert!(reason.contains("cannot list refs"), "{reason}");
    assert_eq!(app.stacks().await, before);

    // Recovers by itself once the origin is back: the backoff retry (5 s) finds it, with
    // polling off and nobody asking.
    std::fs::rename(&moved, repo.origin()).unwrap();
    let status = app.refreshed(3, "completed").await;
    assert_eq!(status["trigger"], "periodic");
    app.stop().await;
}

#[tokio::test]
async fn f01_remote_unreachable_at_first_start_fails_with_a_reason_and_retries_until_it_works() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("late.git");
    let app = TestApp::start(&format!("file://{}", origin.display()), |_| {}).await;
    let status = app.refreshed(1, "failed").await;
    assert_refresh_error(&status, "cannot list refs");
    assert!(status["revision"].is_null());
    assert!(
        app.stacks().await.is_empty(),
        "nothing is listed, nothing touched"
    );

    // The origin appears; the backoff retry picks it up without any trigger.
    common::git(
        dir.path(),
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            "late.git",
        ],
    );
    let work = dir.path().join("work");
    common::git(
        dir.path(),
        &["clone", "--quiet", origin.to_str().unwrap(), "work"],
    );
    std::fs::create_dir_all(work.join("a")).unwrap();
    std::fs::write(work.join("a/compose.yaml"), compose("a:1")).unwrap();
    common::git(&work, &["add", "-A"]);
    common::git(&work, &["commit", "--quiet", "-m", "finally"]);
    common::git(&work, &["push", "--quiet", "origin", "HEAD:main"]);
    let started = std::time::Instant::now();
    let status = app.refreshed(2, "completed").await;
    assert_eq!(status["trigger"], "periodic");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(app.stacks().await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn c06_a_hundred_concurrent_requests_run_at_most_two_fetches_one_at_a_time() {
    let (repo, _) = TestRepo::with_stack("a", "a:1", "one");
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

/// The calls of one refresh: `ls-remote` and `fetch` run one after the other, then the
/// `cat-file` session and the listing start together, so their two wrapper scripts may log in
/// either order. Puts that pair in a fixed order and leaves the rest as recorded.
fn in_start_order(calls: &[String]) -> Vec<String> {
    let mut calls = calls.to_vec();
    if calls.len() == 4 {
        calls[2..].sort_by_key(|c| c != "cat-file");
    }
    calls
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
    let refresh: Vec<String> = startup
        .iter()
        .filter(|c| !c.is_empty() && *c != "init")
        .cloned()
        .collect();
    assert_eq!(
        in_start_order(&refresh),
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
        in_start_order(&common::recorded_calls(&log)[startup.len() + 1..]),
        ["ls-remote", "fetch", "cat-file", "diff-tree"]
    );
    assert_eq!(app.stacks().await.len(), 50);
    app.stop().await;
}

#[tokio::test]
async fn tags_and_pinned_commits_are_deployable_revisions() {
    let (repo, tagged) = TestRepo::with_stack("a", "a:1", "tagged");
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

/// Starts an app on `repo` and returns its stacks after the first refresh.
async fn stacks_of(repo: &TestRepo) -> (TestApp, Vec<Value>) {
    let app = TestApp::start(&repo.url(), |_| {}).await;
    app.wait_refreshes(1).await;
    assert_eq!(app.refresh_status().await["refreshStatus"], "completed");
    let stacks = app.stacks().await;
    (app, stacks)
}

#[tokio::test]
async fn r01_awkward_stack_names_map_to_valid_project_names_or_errors_deterministically() {
    let repo = TestRepo::new();
    for name in [
        "Web App",
        "-leading",
        "UPPER",
        "Ünïcode-Stack",
        "日本",
        "a.b",
        "Tricky Name",
        "trickyname",
    ] {
        repo.write(&format!("{name}/compose.yaml"), compose("x:1"));
    }
    repo.commit_and_push("awkward names");
    let (app, stacks) = stacks_of(&repo).await;
    let name = |p: &str| stack(&stacks, p)["projectName"].clone();
    assert_eq!(name("Web App"), "webapp");
    assert_eq!(name("-leading"), "leading");
    assert_eq!(name("UPPER"), "upper");
    assert_eq!(name("Ünïcode-Stack"), "ncode-stack");
    assert_eq!(name("a.b"), "ab");
    assert!(
        stack(&stacks, "日本")["error"]
            .as_str()
            .unwrap()
            .contains("no valid compose project name")
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
    for s in &stacks {
        if let Some(n) = s["projectName"].as_str() {
            assert!(
                n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()),
                "{n}"
            );
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'),
                "{n}"
            );
        }
    }
    // Always the same result: a second instance reads the same commit the same way.
    app.stop().await;
    let (again, stacks_again) = stacks_of(&repo).await;
    assert_eq!(stacks, stacks_again);
    again.stop().await;
}

#[tokio::test]
async fn r02_hidden_directories_submodules_and_symlinked_directories_are_not_stacks() {
    let repo = TestRepo::new();
    repo.write("real/compose.yaml", compose("real:1"))
        .write(".github/compose.yaml", compose("hidden:1"))
        .write(".archive/old/compose.yaml", compose("hidden:2"))
        .symlink("linked", "real");
    // A submodule (gitlink) named like a stack.
    let commit = repo.commit("content");
    repo.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{commit},sub"),
    ]);
    // Not commit(): its `add --all` would record the missing `sub` directory as deleted.
    repo.git(&["commit", "--quiet", "-m", "with a submodule"]);
    repo.push();
    assert!(repo.git(&["ls-tree", "HEAD"]).contains("160000 commit"));
    let (app, stacks) = stacks_of(&repo).await;
    let paths: Vec<&str> = stacks.iter().map(|s| s["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["real"]);
    app.stop().await;
}

#[tokio::test]
async fn r03_a_symlinked_compose_file_is_a_stack_error_and_nothing_outside_is_read() {
    let repo = TestRepo::new();
    repo.write("good/compose.yaml", compose("good:1"))
        .write("shadow/README.md", "x")
        .symlink("shadow/compose.yaml", "/etc/shadow")
        .write("other/compose.yaml", compose("other:1"))
        .write("sibling/README.md", "x")
        .symlink("sibling/compose.yaml", "../other/compose.yaml");
    repo.commit_and_push("symlinked compose files");
    let (app, stacks) = stacks_of(&repo).await;
    for path in ["shadow", "sibling"] {
        let s = stack(&stacks, path);
        assert!(
            s["error"].as_str().unwrap().contains("symbolic link"),
            "{s}"
        );
        assert!(
            s["composeHash"].is_null(),
            "nothing may be read through the link: {s}"
        );
    }
    assert!(stack(&stacks, "good")["error"].is_null());
    assert!(stack(&stacks, "other")["error"].is_null());
    app.stop().await;
}

#[tokio::test]
async fn r04_a_50_mb_compose_file_is_refused_by_its_size_and_the_others_proceed() {
    let repo = TestRepo::new();
    repo.write("big/compose.yaml", vec![b'#'; 50 * 1024 * 1024])
        .write("small/compose.yaml", compose("small:1"));
    repo.commit_and_push("a huge compose file");
    let dir = tempfile::tempdir().unwrap();
    let (git, log) = common::recording_git(dir.path(), 0);
    let app = TestApp::start(&repo.url(), |a| a.git_bin = Some(git)).await;
    app.wait_refreshes(1).await;
    let stacks = app.stacks().await;
    let big = stack(&stacks, "big");
    assert!(
        big["error"].as_str().unwrap().contains("over the limit"),
        "{big}"
    );
    assert!(big["composeHash"].is_null());
    assert!(stack(&stacks, "small")["composeHash"].is_string());
    // Still one cat-file for the whole refresh. Its size comes from cat-file's header; the
    // content is drained in chunks and never held (nor hashed), and the blob id is remembered
    // so later refreshes do not stream it again.
    let calls = common::recorded_calls(&log);
    assert_eq!(
        calls.iter().filter(|c| *c == "cat-file").count(),
        1,
        "{calls:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn r06_two_compose_names_in_one_directory_follow_compose_precedence_with_a_warning() {
    let repo = TestRepo::new();
    repo.write("two/docker-compose.yml", compose("two:old"))
        .write("two/compose.yaml", compose("two:chosen"))
        .write("three/compose.yml", compose("three:chosen"))
        .write("three/docker-compose.yaml", compose("three:old"))
        .write("three/docker-compose.yml", compose("three:older"));
    repo.commit_and_push("several compose files");
    let (app, stacks) = stacks_of(&repo).await;
    let two = stack(&stacks, "two");
    assert_eq!(two["composeFile"], "compose.yaml");
    assert_eq!(two["warnings"].as_array().unwrap().len(), 1);
    assert!(
        two["warnings"][0]
            .as_str()
            .unwrap()
            .contains("docker-compose.yml is ignored")
    );
    let expected = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(compose(
        "two:chosen",
    )));
    assert_eq!(two["composeHash"], expected.as_str());
    let three = stack(&stacks, "three");
    assert_eq!(three["composeFile"], "compose.yml");
    assert_eq!(three["warnings"].as_array().unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn r08_ten_thousand_stacks_cost_one_ls_tree_and_one_cat_file() {
    let repo = TestRepo::new();
    // fast-import keeps building 10,000 stacks to a second or two.
    let mut script = String::from(
        "commit refs/heads/main\ncommitter T <t@example.invalid> 1700000000 +0000\ndata 4\nbulk\n",
    );
    for i in 0..10_000 {
        let body = compose(&format!("img:{i}"));
        script.push_str(&format!(
            "M 100644 inline stacks/s{i:05}/compose.yaml\ndata {}\n{body}\n",
            body.len()
        ));
    }
    script.push_str("done\n");
    let mut child = std::process::Command::new("git")
        .args(["fast-import", "--quiet", "--done"])
        .current_dir(repo.origin())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());

    let dir = tempfile::tempdir().unwrap();
    let (git, log) = common::recording_git(dir.path(), 0);
    let started = std::time::Instant::now();
    let app = TestApp::start(&repo.url(), |a| {
        a.git_bin = Some(git);
        a.git_deploy_dir = "stacks".into();
    })
    .await;
    app.wait_refreshes(1).await;
    eprintln!(
        "r08: 10,000 stacks read in {:?} (debug build, includes start-up)",
        started.elapsed()
    );
    assert_eq!(app.refresh_status().await["stackCount"], 10_000);
    let calls = common::recorded_calls(&log);
    let count = |name: &str| calls.iter().filter(|c| *c == name).count();
    assert_eq!(
        (count("ls-tree"), count("cat-file"), count("fetch")),
        (1, 1, 1),
        "{calls:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn f06_a_mirror_left_locked_by_a_killed_fetch_is_rebuilt() {
    let (repo, _) = TestRepo::with_stack("a", "a:1", "one");
    let app = TestApp::start(&repo.url(), |_| {}).await;
    app.wait_refreshes(1).await;
    // A fetch killed while updating the ref leaves its lock file behind.
    let mirror = app.data.path().join("data/mirror.git");
    std::fs::write(mirror.join("refs/docker-cd/target.lock"), "").unwrap();
    repo.write("a/compose.yaml", compose("a:2"));
    let tip = repo.commit_and_push("two");
    app.post_json("/api/refresh", Value::Null).await;
    let status = app.refreshed(2, "completed").await;
    assert_eq!(status["revision"], tip.as_str());
    assert!(common::logs().contains("the local mirror looks damaged"));
    app.stop().await;
}

#[tokio::test]
async fn f06_a_mirror_that_lost_its_objects_recovers() {
    let (repo, _) = TestRepo::with_stack("a", "a:1", "one");
    let app = TestApp::start(&repo.url(), |_| {}).await;
    app.wait_refreshes(1).await;
    let mirror = app.data.path().join("data/mirror.git");
    std::fs::remove_dir_all(mirror.join("objects")).unwrap();
    std::fs::create_dir_all(mirror.join("objects/pack")).unwrap();
    repo.write("a/compose.yaml", compose("a:2"));
    let tip = repo.commit_and_push("two");
    app.post_json("/api/refresh", Value::Null).await;
    let status = app.refreshed(2, "completed").await;
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

/// Resident memory of this test process.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f12_a_thousand_failing_refreshes_leave_no_children_descriptors_or_memory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("file://{}/nowhere.git", dir.path().display());
    let app = TestApp::start(&missing, |_| {}).await;
    app.wait_refreshes(1).await;
    assert_eq!(app.refresh_status().await["refreshStatus"], "failed");
    let fds_before = open_fds();
    let rss_before = rss_kib();
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
    let rss_after = rss_kib();
    // Memory stays flat: far below what keeping anything per cycle would cost.
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS {rss_before} KiB -> {rss_after} KiB"
    );
    // Other tests in this binary run concurrently and open descriptors too: allow some slack,
    // far below one leaked descriptor per cycle.
    assert!(
        fds_after < fds_before + 50,
        "{fds_before} -> {fds_after} descriptors"
    );
    // No zombie children while the app still runs: every git that ran was reaped. (The same
    // check as at every stop, which also looks for live processes of this instance.)
    common::assert_no_leftover_processes(&[]).await;
    app.stop().await;
}

#[tokio::test]
async fn f03_a_remote_that_accepts_and_never_answers_is_killed_at_the_git_timeout() {
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
    assert_refresh_error(&status, "timed out after 2s");
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

#[tokio::test]
async fn x08_a_failed_refresh_shows_neither_data_dir_nor_the_git_command_line_which_go_to_the_debug_log()
 {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.git");
    let app = TestApp::start(&format!("file://{}", missing.display()), |_| {}).await;
    let status = app.refreshed(1, "failed").await;
    let reason = status["refreshError"].as_str().unwrap().to_owned();
    // What failed, the tool's exit status and its own message stay.
    assert!(reason.contains("cannot list refs of"), "{reason}");
    assert!(
        reason.contains("`git ls-remote` failed with exit code"),
        "{reason}"
    );
    assert!(
        reason.contains("does not appear to be a git repository"),
        "{reason}"
    );
    // Neither DATA_DIR's absolute path nor the command line.
    let data_dir = app.data.path().join("data").display().to_string();
    assert!(!reason.contains(&data_dir), "{reason}");
    for argv in [
        "--git-dir",
        "mirror.git",
        "gc.autoDetach",
        "--end-of-options",
    ] {
        assert!(!reason.contains(argv), "{argv} in {reason}");
    }
    // The debug log holds the full text, once per failure (a retry may fail meanwhile).
    let failures = || async { app.refresh_status().await["consecutiveFailures"].as_u64() };
    let before = failures().await.unwrap();
    let logs = common::logs();
    let after = failures().await.unwrap();
    let full: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("the full text of an error") && l.contains(&data_dir))
        .collect();
    assert!(
        (before..=after).contains(&(full.len() as u64)),
        "{before}..={after} failures: {full:#?}"
    );
    assert!(
        full[0].contains(&format!("--git-dir={data_dir}/mirror.git")),
        "{}",
        full[0]
    );
    assert!(full[0].contains("DEBUG"), "{}", full[0]);
    app.stop().await;
}
