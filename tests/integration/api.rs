//! The read side of the API: status page, readiness, the event stream (no Docker needed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::{TestApp, TestRepo, compose};
use futures_util::StreamExt;
use serde_json::Value;

#[tokio::test]
async fn the_status_page_is_a_plain_banner_for_curl_and_html_for_browsers() {
    let repo = TestRepo::new();
    repo.write("stacks/web/compose.yaml", compose("web:1"));
    let commit = repo.commit_and_push("one");
    let app = TestApp::start("https://deploy:s3cr3t-t0ken@127.0.0.1:9/infra.git", |a| {
        a.git_deploy_dir = "stacks".into();
    })
    .await;
    // The https origin does not exist: the banner must still answer, without the token.
    let text = app.get_text("/").await;
    assert!(text.starts_with("Docker-CD\n"), "{text}");
    assert!(text.contains("running containers: "), "{text}");
    assert!(
        text.contains("repository: https://127.0.0.1:9/infra.git"),
        "{text}"
    );
    assert!(text.contains("deploy dir: stacks"), "{text}");
    assert!(!text.contains("s3cr3t-t0ken"), "{text}");
    app.wait_refreshes(1).await;
    let status = app.refresh_status().await;
    assert!(!status.to_string().contains("s3cr3t-t0ken"), "{status}");
    app.stop().await;

    let app = TestApp::start(&repo.url(), |a| a.git_deploy_dir = "stacks".into()).await;
    app.wait_refreshes(1).await;
    let text = app.get_text("/").await;
    assert!(
        text.contains(&format!("revision: main ({commit})")),
        "{text}"
    );
    assert!(text.contains("web"), "{text}");
    let html = app
        .client
        .get(app.url("/"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert!(
        html.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = html.text().await.unwrap();
    assert!(
        body.contains("<h1>Docker-CD</h1>") && body.contains("data-path=\"web\""),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_stacks_answer_json_errors() {
    let (repo, _) = TestRepo::with_stack("a", "a:1", "one");
    let app = TestApp::start(&repo.url(), |_| {}).await;
    app.wait_refreshes(1).await;
    let (code, body) = app.get_json("/api/nope").await;
    assert_eq!(code, 404);
    assert!(body["error"].is_string());
    let (code, body) = app.get_json("/api/stacks/missing").await;
    assert_eq!(code, 404);
    assert!(body["error"].as_str().unwrap().contains("missing"));
    let (code, body) = app.get_json("/api/stacks/a").await;
    assert_eq!(code, 200);
    assert_eq!(body["path"], "a");
    assert!(body.get("containers").is_some());
    // Acknowledging needs reconciling.
    let (code, body) = app
        .post_json("/api/reconcile/ack", serde_json::json!({"path": "a"}))
        .await;
    assert_eq!(code, 409, "{body}");
    let (code, _) = app
        .post_json("/api/reconcile/ack", Value::String("nope".into()))
        .await;
    assert_eq!(code, 400);
    app.stop().await;
}

#[tokio::test]
async fn readiness_reports_its_checks() {
    let (repo, _) = TestRepo::with_stack("a", "a:1", "one");
    let app = TestApp::start(&repo.url(), |_| {}).await;
    let (code, body) = app.get_json("/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["dataDir"]["writable"], true);
    assert_eq!(body["git"]["found"], true);
    app.stop().await;
}

#[tokio::test]
async fn readiness_fails_with_a_reason_per_check_when_git_or_the_data_dir_go_away() {
    let (repo, _) = TestRepo::with_stack("a", "a:1", "one");
    let bin = tempfile::tempdir().unwrap();
    let git = bin.path().join("git");
    std::fs::copy(which::which("git").unwrap(), &git).unwrap();
    let app = TestApp::start(&repo.url(), |a| a.git_bin = Some(git.clone())).await;
    app.wait_refreshes(1).await;
    let (code, body) = app.get_json("/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["reasons"], serde_json::json!([]));

    std::fs::remove_file(&git).unwrap();
    std::fs::remove_dir_all(app.data.path().join("data")).unwrap();
    let (code, body) = app.get_json("/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["git"]["found"], false);
    assert_eq!(body["dataDir"]["writable"], false);
    let reasons: Vec<&str> = body["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{body}");
    assert!(reasons[0].starts_with("git is gone: "), "{body}");
    assert!(reasons[1].starts_with("DATA_DIR "), "{body}");
    assert!(reasons[1].contains("is not writable"), "{body}");
    // X8: unauthenticated clients are not told where DATA_DIR is.
    let data_dir = app.data.path().join("data");
    assert!(
        !body.to_string().contains(&data_dir.display().to_string()),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn readiness_when_reconciling_needs_the_engine_and_the_compose_tool() {
    let (repo, _) = TestRepo::with_stack("a", "a:1", "one");
    // A docker whose compose plugin answers but whose engine does not.
    let bin = tempfile::tempdir().unwrap();
    let docker = bin.path().join("docker");
    std::fs::write(
        &docker,
        "#!/bin/sh\n[ \"$1 $2\" = \"compose version\" ] && { echo 2.99.0; exit 0; }\n\
         echo 'Cannot connect to the Docker daemon at unix:///nowhere.sock' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = TestApp::start(&repo.url(), |a| {
        a.reconcile_enabled = "true".into();
        a.docker_bin = Some(docker.clone());
    })
    .await;
    let (code, body) = app.get_json("/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["docker"]["reachable"], false);
    assert_eq!(body["compose"]["found"], true);
    assert_eq!(body["composeTool"], "docker compose plugin 2.99.0");
    let reasons = body["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{body}");
    let reason = reasons[0].as_str().unwrap();
    assert!(
        reason.starts_with("the Docker engine is not reachable: ")
            && reason.contains("Cannot connect to the Docker daemon"),
        "{reason}"
    );
    assert!(!reason.contains('\n'), "{reason}");

    std::fs::remove_file(&docker).unwrap();
    let (code, body) = app.get_json("/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["compose"]["found"], false);
    let reasons = body["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 2, "{body}");
    assert!(
        reasons[1]
            .as_str()
            .unwrap()
            .starts_with("the compose tool is gone: "),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_event_stream_starts_with_a_snapshot_and_follows_changes() {
    let (repo, _) = TestRepo::with_stack("a", "a:1", "one");
    let app = TestApp::start(&repo.url(), |_| {}).await;
    app.wait_refreshes(1).await;

    let response = app.client.get(app.url("/api/events")).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    let mut next_events = async |text: &mut String, want: &str| {
        tokio::time::timeout(Duration::from_secs(20), async {
            while !text.contains(want) {
                let chunk = stream.next().await.unwrap().unwrap();
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {want:?} in {text}"));
    };
    next_events(&mut text, "event: refresh.status").await;
    assert!(
        text.starts_with("event: stack.snapshot\ndata: [{"),
        "{text}"
    );
    assert!(text.contains("\"path\":\"a\""), "{text}");

    repo.write("b/compose.yaml", compose("b:1")).remove("a");
    repo.commit_and_push("two");
    text.clear();
    app.post_json("/api/refresh", Value::Null).await;
    next_events(&mut text, "event: stack.delete").await;
    next_events(&mut text, "\"refreshStatus\":\"completed\"").await;
    assert!(text.contains("event: stack.upsert\ndata: {"), "{text}");
    assert!(text.contains("\"path\":\"b\""), "{text}");
    assert!(
        text.contains("event: stack.delete\ndata: {\"path\":\"a\"}"),
        "{text}"
    );
    drop(stream);
    // Shutdown is not held up by an open stream.
    let started = std::time::Instant::now();
    app.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn shutdown_with_an_open_event_stream_is_prompt() {
    let (repo, _) = TestRepo::with_stack("a", "a:1", "one");
    let app = TestApp::start(&repo.url(), |_| {}).await;
    let response = app.client.get(app.url("/api/events")).send().await.unwrap();
    let mut stream = response.bytes_stream();
    let _ = stream.next().await;
    let started = std::time::Instant::now();
    app.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // The stream ends rather than hanging.
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(end.is_ok());
}
