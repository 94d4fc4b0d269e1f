//! `POST /api/webhook` from every sender of SPEC §13, end to end: the real app on 127.0.0.1, real
//! HTTP deliveries with the headers each forge's delivery code really sends, and the real
//! payloads of `tests/payloads/` (see its README for their sources).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{SECRET, TestApp, TestRepo};
use hmac::{Hmac, Mac};
use reqwest::RequestBuilder;
use serde_json::Value;
use sha2::Sha256;

const MAIN: &str = "refs/heads/main";

fn hex_hmac(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A real payload from tests/payloads with its `ref` replaced (and `after`, when it has one).
fn real_payload(name: &str, git_ref: &str) -> String {
    let path = format!("{}/tests/payloads/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut value: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    value["ref"] = Value::String(git_ref.to_owned());
    value.to_string()
}

fn form(json: &str) -> String {
    serde_urlencoded::to_string([("payload", json)]).unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Forge {
    Gitea,
    Forgejo,
    Gogs,
}

/// A delivery as Gitea (`services/webhook/deliver.go`), Forgejo (`AddDefaultHeaders`) or Gogs
/// sends it: the HMAC of the JSON `json` under `secret` in every signature header they send, the
/// body JSON or, for `as_form`, the form Gitea builds around it.
fn forge_delivery(
    app: &TestApp,
    forge: Forge,
    event: &str,
    secret: &str,
    json: &str,
    as_form: bool,
) -> RequestBuilder {
    let bare = hex_hmac(secret, json.as_bytes());
    let id = "f6266f16-1bf3-46a5-9ea4-602e06ead473";
    let mut request = app.hook();
    if let Forge::Forgejo = forge {
        request = request
            .header("X-Forgejo-Delivery", id)
            .header("X-Forgejo-Event", event)
            .header("X-Forgejo-Event-Type", event)
            .header("X-Forgejo-Signature", &bare);
    }
    if let Forge::Gitea | Forge::Forgejo = forge {
        request = request
            .header("X-Gitea-Delivery", id)
            .header("X-Gitea-Event", event)
            .header("X-Gitea-Event-Type", event)
            .header("X-Gitea-Signature", &bare)
            .header(
                "X-Hub-Signature",
                "sha1=0123456789abcdef0123456789abcdef01234567",
            )
            .header("X-Hub-Signature-256", format!("sha256={bare}"))
            .header("X-GitHub-Event-Type", event);
    }
    request = request
        .header("X-Gogs-Delivery", id)
        .header("X-Gogs-Event", event)
        .header("X-Gogs-Signature", &bare)
        .header("X-GitHub-Delivery", id)
        .header("X-GitHub-Event", event);
    if as_form {
        request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(json))
    } else {
        request
            .header("content-type", "application/json")
            .body(json.to_owned())
    }
}

/// A GitLab delivery: `X-Gitlab-Event`, `X-Gitlab-Token` and the JSON body.
fn gitlab_delivery(app: &TestApp, event: &str, token: &str, body: &str) -> RequestBuilder {
    app.hook()
        .header("X-Gitlab-Event", event)
        .header("X-Gitlab-Token", token)
        .header(
            "X-Gitlab-Event-UUID",
            "13792a34-cac6-4fda-95a8-c58e00a3954e",
        )
        .header("X-Gitlab-Instance", "https://gitlab.example.com")
        .header("content-type", "application/json")
        .body(body.to_owned())
}

fn generic_delivery(app: &TestApp, secret: &str, body: &str) -> RequestBuilder {
    app.hook()
        .header(
            "X-Docker-CD-Signature",
            format!("sha256={}", hex_hmac(secret, body.as_bytes())),
        )
        .header("content-type", "application/json")
        .body(body.to_owned())
}

async fn answer(request: RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("answer {status} is not JSON ({e}): {text:.300}"));
    (status, body)
}

fn assert_accepted(got: &(u16, Value)) {
    let (status, body) = got;
    assert_eq!(*status, 200, "{body}");
    let s = body["status"].as_str().unwrap_or_default();
    assert!(s == "refreshing" || s == "queued", "{body}");
}

fn assert_ignored(got: &(u16, Value), reason: &str) {
    let (status, body) = got;
    assert_eq!(*status, 200, "{body}");
    assert_eq!(body["status"], "ignored", "{body}");
    let text = body["reason"].as_str().unwrap_or_default();
    assert!(text.contains(reason), "{reason:?} in {body}");
}

fn assert_unauthorized(got: &(u16, Value), needle: &str) {
    let (status, body) = got;
    assert_eq!(*status, 401, "{body}");
    let text = body["error"].as_str().unwrap_or_default();
    assert!(text.contains(needle), "{needle:?} in {body}");
}

fn completed(app: &TestApp) -> u64 {
    app.app().refresh_progress.borrow().completed
}

/// An app on a one-stack repository, after its start-up refresh.
async fn started(adjust: impl FnOnce(&mut docker_cd::config::Args)) -> (TestRepo, TestApp) {
    let (repo, _) = TestRepo::with_stack("a", "a:1", "one");
    let app = TestApp::start(&repo.url(), adjust).await;
    app.wait_refreshes(1).await;
    (repo, app)
}

#[tokio::test]
async fn gitea_forgejo_and_gogs_deliveries_json_and_form_refresh_with_every_header_they_send() {
    // Issue 16's first problem: Gitea's form delivery is signed over its JSON `payload`.
    let (_repo, app) = started(|_| {}).await;
    let mut refreshes = 1;
    for (forge, file) in [
        (Forge::Gitea, "gitea-push.json"),
        (Forge::Forgejo, "forgejo-push.json"),
        (Forge::Gogs, "gogs-push-legacy.json"),
    ] {
        let json = real_payload(file, MAIN);
        for as_form in [false, true] {
            let got = answer(forge_delivery(&app, forge, "push", SECRET, &json, as_form)).await;
            assert_accepted(&got);
            refreshes += 1;
            app.wait_refreshes(refreshes).await;
            // The same delivery signed with another secret changes nothing.
            let got = answer(forge_delivery(&app, forge, "push", "wrong", &json, as_form)).await;
            assert_unauthorized(&got, "signature does not match");
        }
        let other = real_payload(file, "refs/heads/dev");
        let got = answer(forge_delivery(&app, forge, "push", SECRET, &other, true)).await;
        assert_ignored(&got, "push to refs/heads/dev, tracking refs/heads/main");
        let got = answer(forge_delivery(&app, forge, "issues", SECRET, "{}", false)).await;
        assert_ignored(&got, "issues events are not handled");
    }
    assert_eq!(
        completed(&app),
        refreshes,
        "one refresh per accepted delivery"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_gitea_form_signed_over_the_form_body_or_with_disagreeing_headers_is_401() {
    let (_repo, app) = started(|_| {}).await;
    let json = real_payload("gitea-push.json", MAIN);
    let body = form(&json);
    let over_form = hex_hmac(SECRET, body.as_bytes());
    let got = answer(
        app.hook()
            .header("X-Gitea-Event", "push")
            .header("X-Gitea-Signature", &over_form)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone()),
    )
    .await;
    assert_unauthorized(&got, "signature does not match");
    let right = hex_hmac(SECRET, json.as_bytes());
    let got = answer(
        app.hook()
            .header("X-Gitea-Event", "push")
            .header("X-Gitea-Signature", &right)
            .header("X-Gogs-Signature", &over_form)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
    )
    .await;
    assert_unauthorized(&got, "different digests");
    assert_eq!(completed(&app), 1);
    app.stop().await;
}

#[tokio::test]
async fn gitlab_hooks_refresh_with_the_token_and_are_never_4xx_when_authentic() {
    let (_repo, app) = started(|_| {}).await;
    let push = real_payload("gitlab-push.json", MAIN);
    let got = answer(gitlab_delivery(&app, "Push Hook", SECRET, &push)).await;
    assert_accepted(&got);
    app.wait_refreshes(2).await;
    let system = real_payload("gitlab-system-hook-push.json", MAIN);
    let got = answer(gitlab_delivery(&app, "System Hook", SECRET, &system)).await;
    assert_accepted(&got);
    app.wait_refreshes(3).await;
    let tag = real_payload("gitlab-tag-push.json", "refs/tags/v1.0.0");
    let got = answer(gitlab_delivery(&app, "Tag Push Hook", SECRET, &tag)).await;
    assert_ignored(&got, "push to refs/tags/v1.0.0");
    // Authentic but unknown or unreadable: 200 ignored, so GitLab keeps the hook enabled.
    for (event, body) in [
        ("Merge Request Hook", "{}"),
        ("Push Hook", "not json"),
        ("Push Hook", r#"{"ref":5}"#),
        ("System Hook", r#"{"event_name":"user_create"}"#),
        ("Emoji Hook", ""),
    ] {
        let got = answer(gitlab_delivery(&app, event, SECRET, body)).await;
        assert_ignored(&got, "");
    }
    // Only authentication failures are 4xx.
    let got = answer(gitlab_delivery(&app, "Push Hook", "wrong token", &push)).await;
    assert_unauthorized(&got, "x-gitlab-token does not match");
    let got =
        answer(gitlab_delivery(&app, "Push Hook", SECRET, &push).header("X-Gitlab-Token", SECRET))
            .await;
    assert_unauthorized(&got, "more than one x-gitlab-token");
    let got = answer(
        gitlab_delivery(&app, "Push Hook", SECRET, &push)
            .header("X-Hub-Signature-256", common::sign(SECRET, push.as_bytes())),
    )
    .await;
    assert_unauthorized(&got, "ambiguous authentication");
    let got = answer(
        app.hook()
            .header("X-Gitlab-Event", "Push Hook")
            .body(push.clone()),
    )
    .await;
    assert_unauthorized(&got, "missing x-gitlab-token");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        completed(&app),
        3,
        "only the two accepted deliveries refreshed"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_generic_sender_refreshes_with_or_without_a_ref() {
    let (_repo, app) = started(|_| {}).await;
    let got = answer(generic_delivery(&app, SECRET, "")).await;
    assert_accepted(&got);
    app.wait_refreshes(2).await;
    let got = answer(generic_delivery(
        &app,
        SECRET,
        r#"{"ref":"refs/heads/main"}"#,
    ))
    .await;
    assert_accepted(&got);
    app.wait_refreshes(3).await;
    let got = answer(generic_delivery(
        &app,
        SECRET,
        r#"{"ref":"refs/heads/dev"}"#,
    ))
    .await;
    assert_ignored(&got, "push to refs/heads/dev");
    let got = answer(generic_delivery(&app, "wrong", "{}")).await;
    assert_unauthorized(&got, "signature does not match");
    let got = answer(generic_delivery(&app, SECRET, r#"{"ref":5}"#)).await;
    assert_eq!(got.0, 400, "{}", got.1);
    assert_eq!(completed(&app), 3);
    app.stop().await;
}

#[tokio::test]
async fn a_minimal_push_without_a_repository_refreshes() {
    // Issue 16's second problem.
    let (_repo, app) = started(|_| {}).await;
    let body = format!(r#"{{"ref":"{MAIN}"}}"#);
    let got = answer(app.delivery("push", "application/json", body.into_bytes())).await;
    assert_accepted(&got);
    app.wait_refreshes(2).await;
    app.stop().await;
}

#[tokio::test]
async fn secret_rotation_accepts_the_old_and_the_new_secret_and_nothing_else() {
    let (_repo, app) = started(|a| {
        a.webhook_secret = Some("old-secret, new-secret".to_owned());
    })
    .await;
    let json = real_payload("gitea-push.json", MAIN);
    let gitlab = real_payload("gitlab-push.json", MAIN);
    let mut refreshes = 1;
    for secret in ["old-secret", "new-secret"] {
        let got = answer(forge_delivery(
            &app,
            Forge::Gitea,
            "push",
            secret,
            &json,
            true,
        ))
        .await;
        assert_accepted(&got);
        refreshes += 1;
        app.wait_refreshes(refreshes).await;
        let got = answer(gitlab_delivery(&app, "Push Hook", secret, &gitlab)).await;
        assert_accepted(&got);
        refreshes += 1;
        app.wait_refreshes(refreshes).await;
    }
    for secret in [
        "old-secret, new-secret",
        "old-secret,new-secret",
        "retired",
        "",
    ] {
        let got = answer(forge_delivery(
            &app,
            Forge::Gitea,
            "push",
            secret,
            &json,
            false,
        ))
        .await;
        assert_unauthorized(&got, "signature does not match");
        let got = answer(gitlab_delivery(&app, "Push Hook", secret, &gitlab)).await;
        assert_unauthorized(&got, "x-gitlab-token does not match");
    }
    assert_eq!(completed(&app), refreshes);
    app.stop().await;
}

#[tokio::test]
async fn a_delivery_for_another_repository_is_ignored_naming_both() {
    // A network GIT_REPO_URL that nothing serves: the start-up refresh fails fast, and the
    // webhook still decides on the repository the payload names.
    let app = TestApp::start("http://127.0.0.1:9/org/gitops.git", |_| {}).await;
    app.wait_refreshes(1).await;
    let gitea = |clone_url: &str| {
        let mut value: Value =
            serde_json::from_str(&real_payload("gitea-push.json", MAIN)).unwrap();
        value["repository"]["clone_url"] = Value::String(clone_url.to_owned());
        value["repository"]["ssh_url"] = Value::Null;
        value["repository"]["html_url"] = Value::Null;
        value.to_string()
    };
    for url in [
        "http://127.0.0.1:3000/org/other.git",
        "https://git.example.com/org/gitops.git",
    ] {
        let got = answer(forge_delivery(
            &app,
            Forge::Gitea,
            "push",
            SECRET,
            &gitea(url),
            false,
        ))
        .await;
        assert_ignored(&got, "tracking 127.0.0.1/org/gitops");
    }
    // The real GitLab payload names example.com/mike/diaspora over three URLs.
    let gitlab = real_payload("gitlab-push.json", MAIN);
    let got = answer(gitlab_delivery(&app, "Push Hook", SECRET, &gitlab)).await;
    assert_ignored(&got, "delivery for repository example.com/mike/diaspora");
    assert_eq!(completed(&app), 1, "nothing refreshed");
    // The same repository over its SSH URL and another port: accepted.
    for url in [
        "git@127.0.0.1:org/gitops.git",
        "ssh://git@127.0.0.1:2222/Org/GitOps",
    ] {
        let got = answer(forge_delivery(
            &app,
            Forge::Gitea,
            "push",
            SECRET,
            &gitea(url),
            false,
        ))
        .await;
        assert_accepted(&got);
    }
    app.stop().await;
}

#[test]
fn a_webhook_secret_list_with_an_empty_entry_stops_start_up_naming_only_the_position() {
    let data = tempfile::tempdir().unwrap();
    for (direct, file) in [
        (Some("old-secret,"), None),
        (None, Some("old-secret\n\nnew-secret\n")),
    ] {
        let mut a = common::args("file:///nonexistent/repo.git", data.path());
        a.webhook_secret = direct.map(str::to_owned);
        a.webhook_secret_file = file.map(|text| {
            let path = data.path().join("webhook_secret");
            std::fs::write(&path, text).unwrap();
            path
        });
        let problems = docker_cd::config::Config::validate(a, common::child_env())
            .expect_err("refused")
            .0;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].variable, "WEBHOOK_SECRET");
        assert!(
            problems[0]
                .message
                .contains("secret 2 of the list is empty"),
            "{}",
            problems[0].message
        );
        assert!(
            !problems[0].message.contains("old-secret"),
            "{}",
            problems[0].message
        );
    }
    // One per line in the file is a list of two.
    let mut a = common::args("file:///nonexistent/repo.git", data.path());
    let path = data.path().join("rotation");
    std::fs::write(&path, "old-secret\nnew-secret\n").unwrap();
    a.webhook_secret = None;
    a.webhook_secret_file = Some(path);
    let config = docker_cd::config::Config::validate(a, common::child_env()).expect("valid");
    let secret = config.http.webhook_secret.clone().expect("set");
    let items: Vec<&str> = docker_cd::config::secret_list_items(&secret).collect();
    assert_eq!(items, ["old-secret", "new-secret"]);
    // Each secret of the list is redacted alone.
    assert_eq!(
        config.redactor().redact("new-secret here"),
        "[redacted] here"
    );
}
