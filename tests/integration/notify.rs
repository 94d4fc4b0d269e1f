//! Notifications and commit statuses (SPEC §13) against real local HTTP receivers on
//! 127.0.0.1 (small axum apps that record what they receive): each format's body, headers and
//! signature; the de-duplication; a receiver that never answers does not hold up the caller
//! and its queue bound holds; retries stop at the limit; each forge's commit status request as
//! its API documents it; and the whole path from the store's events to a receiver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use docker_cd::config::{
    CommitStatusConfig, Forge, NotifyConfig, NotifyEvent, Receiver, ReceiverKind, Secret,
};
use docker_cd::desired_state::Store;
use docker_cd::notify::Notifier;
use docker_cd::notify::commit_status::{State as CommitState, Update};
use docker_cd::notify::deliver::{Context, Options};
use docker_cd::notify::derive::Notice;

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Got {
    method: Method,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct Recorder {
    got: Arc<Mutex<Vec<Got>>>,
    answer: StatusCode,
}

async fn record(
    State(r): State<Recorder>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    r.got.lock().unwrap().push(Got {
        method,
        uri: uri.to_string(),
        headers,
        body,
    });
    r.answer
}

/// A receiver on 127.0.0.1 answering every request with `answer`; its base URL and log.
async fn receiver(answer: StatusCode) -> (String, Arc<Mutex<Vec<Got>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new().fallback(record).with_state(Recorder {
        got: got.clone(),
        answer,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), got)
}

/// A receiver that accepts connections and never answers (nor closes them).
async fn hanging_receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}")
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn notice(event: NotifyEvent, reason: &str) -> Notice {
    Notice {
        event,
        stack: Some("apps/web".into()),
        revision: Some("0123456789abcdef0123456789abcdef01234567".into()),
        commit_message: Some("web: bump to 1.27".into()),
        status: Some("failed".into()),
        health: Some("degraded".into()),
        reason: Some(reason.into()),
        at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    }
}

fn fast() -> Options {
    Options {
        timeout: Duration::from_secs(2),
        attempts: 3,
        backoff: Duration::from_millis(20),
        capacity: 16,
    }
}

fn context() -> Context {
    Context {
        public_url: Some("https://cd.example".into()),
        instance: "https://cd.example".into(),
    }
}

fn notifier(
    kind: ReceiverKind,
    url: &str,
    secret: Option<&str>,
    options: Options,
    shutdown: &CancellationToken,
) -> Notifier {
    let config = NotifyConfig {
        receivers: vec![Receiver {
            kind,
            url: Secret::new(url),
            label: kind.as_str().into(),
        }],
        events: NotifyEvent::ALL.into_iter().collect::<BTreeSet<_>>(),
        secret: secret.map(Secret::new),
    };
    Notifier::new(
        Arc::new(Store::new("main".into())),
        Some(&config),
        None,
        context(),
        options,
        shutdown,
    )
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn the_generic_receiver_gets_the_spec_fields_signed_with_the_secret() {
    let (base, got) = receiver(StatusCode::OK).await;
    let shutdown = CancellationToken::new();
    let mut n = notifier(
        ReceiverKind::Generic,
        &format!("{base}/hook"),
        Some("notify-secret"),
        fast(),
        &shutdown,
    );
    n.notify(
        notice(NotifyEvent::SyncFailed, "web: unhealthy"),
        SystemTime::now(),
    );
    wait_for("the delivery", || got.lock().unwrap().len() == 1).await;
    let got = got.lock().unwrap()[0].clone();
    assert_eq!(got.method, Method::POST);
    assert_eq!(got.uri, "/hook");
    assert_eq!(got.headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(
        body,
        json!({
            "event": "sync.failed",
            "stack": "apps/web",
            "revision": "0123456789abcdef0123456789abcdef01234567",
            "commitMessage": "web: bump to 1.27",
            "status": "failed",
            "health": "degraded",
            "reason": "web: unhealthy",
            "at": "2023-11-14T22:13:20Z",
            "instance": "https://cd.example",
        })
    );
    // The receiver checks the signature over the bytes it got, as a consumer would.
    let mut mac = Hmac::<Sha256>::new_from_slice(b"notify-secret").unwrap();
    mac.update(&got.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(got.headers["x-docker-cd-signature"], expected.as_str());
    assert_eq!(n.receivers()[0].counts.get(), (1, 0, 0));
    shutdown.cancel();
}

#[tokio::test]
async fn without_a_secret_the_generic_body_is_unsigned() {
    let (base, got) = receiver(StatusCode::NO_CONTENT).await;
    let shutdown = CancellationToken::new();
    let mut n = notifier(ReceiverKind::Generic, &base, None, fast(), &shutdown);
    n.notify(notice(NotifyEvent::Rollback, "r"), SystemTime::now());
    wait_for("the delivery", || got.lock().unwrap().len() == 1).await;
    assert!(
        got.lock().unwrap()[0]
            .headers
            .get("x-docker-cd-signature")
            .is_none()
    );
    shutdown.cancel();
}

#[tokio::test]
async fn slack_gets_incoming_webhook_text_with_escaped_markup_and_the_dashboard_link() {
    let (base, got) = receiver(StatusCode::OK).await;
    let shutdown = CancellationToken::new();
    let mut n = notifier(
        ReceiverKind::Slack,
        &format!("{base}/services/T0/B0/XXXX"),
        None,
        fast(),
        &shutdown,
    );
    n.notify(
        notice(NotifyEvent::HealthDegraded, "web: <unhealthy> & restarting"),
        SystemTime::now(),
    );
    wait_for("the delivery", || got.lock().unwrap().len() == 1).await;
    let got = got.lock().unwrap()[0].clone();
    assert_eq!(got.uri, "/services/T0/B0/XXXX");
    assert_eq!(got.headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    assert_eq!(
        body["text"],
        ":x: docker-cd: health.degraded apps/web at 0123456: web: &lt;unhealthy&gt; &amp; restarting <https://cd.example/stacks/apps%2Fweb|dashboard>"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn ntfy_gets_the_message_as_body_with_title_priority_tags_and_basic_auth() {
    let (base, got) = receiver(StatusCode::OK).await;
    let url = base.replace("http://", "http://deployer:p%40ss@") + "/deploys";
    let shutdown = CancellationToken::new();
    let mut n = notifier(ReceiverKind::Ntfy, &url, None, fast(), &shutdown);
    n.notify(
        notice(NotifyEvent::SyncFailed, "web: unhealthy"),
        SystemTime::now(),
    );
    n.notify(
        notice(NotifyEvent::HealthRecovered, "ok"),
        SystemTime::now(),
    );
    wait_for("the deliveries", || got.lock().unwrap().len() == 2).await;
    let got = got.lock().unwrap().clone();
    assert_eq!(got[0].uri, "/deploys");
    assert_eq!(
        std::str::from_utf8(&got[0].body).unwrap(),
        "sync.failed apps/web at 0123456: web: unhealthy"
    );
    assert_eq!(got[0].headers["title"], "docker-cd: sync.failed apps/web");
    assert_eq!(got[0].headers["priority"], "high");
    assert_eq!(got[0].headers["tags"], "rotating_light,docker-cd");
    assert_eq!(
        got[0].headers["click"],
        "https://cd.example/stacks/apps%2Fweb"
    );
    // base64("deployer:p@ss")
    assert_eq!(
        got[0].headers["authorization"],
        "Basic ZGVwbG95ZXI6cEBzcw=="
    );
    assert_eq!(got[1].headers["priority"], "default");
    assert_eq!(got[1].headers["tags"], "white_check_mark,docker-cd");
    shutdown.cancel();
}

#[tokio::test]
async fn the_same_event_stack_and_reason_is_sent_once_and_others_pass() {
    let (base, got) = receiver(StatusCode::OK).await;
    let shutdown = CancellationToken::new();
    let mut n = notifier(ReceiverKind::Generic, &base, None, fast(), &shutdown);
    let now = SystemTime::now();
    for _ in 0..5 {
        n.notify(notice(NotifyEvent::SyncFailed, "web: unhealthy"), now);
    }
    n.notify(notice(NotifyEvent::SyncFailed, "web: restarting"), now);
    n.notify(notice(NotifyEvent::HealthDegraded, "web: unhealthy"), now);
    // An hour later the first one passes again.
    n.notify(
        notice(NotifyEvent::SyncFailed, "web: unhealthy"),
        now + Duration::from_secs(3600),
    );
    wait_for("the deliveries", || n.receivers()[0].counts.get().0 == 4).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reasons: Vec<String> = got
        .lock()
        .unwrap()
        .iter()
        .map(|g| {
            let v: Value = serde_json::from_slice(&g.body).unwrap();
            format!(
                "{} {}",
                v["event"].as_str().unwrap(),
                v["reason"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "sync.failed web: unhealthy",
            "sync.failed web: restarting",
            "health.degraded web: unhealthy",
            "sync.failed web: unhealthy"
        ]
    );
    shutdown.cancel();
}

#[tokio::test]
async fn events_outside_notify_events_are_not_sent() {
    let (base, got) = receiver(StatusCode::OK).await;
    let shutdown = CancellationToken::new();
    let config = NotifyConfig {
        receivers: vec![Receiver {
            kind: ReceiverKind::Generic,
            url: Secret::new(base),
            label: "generic".into(),
        }],
        events: NotifyEvent::DEFAULT.into_iter().collect(),
        secret: None,
    };
    let mut n = Notifier::new(
        Arc::new(Store::new("main".into())),
        Some(&config),
        None,
        context(),
        fast(),
        &shutdown,
    )
    .unwrap()
    .unwrap();
    n.notify(notice(NotifyEvent::SyncSucceeded, "a"), SystemTime::now());
    n.notify(notice(NotifyEvent::ImageUpdated, "b"), SystemTime::now());
    n.notify(notice(NotifyEvent::SyncFailed, "c"), SystemTime::now());
    wait_for("the delivery", || got.lock().unwrap().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1);
    let v: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(v["event"], "sync.failed");
    shutdown.cancel();
}

#[tokio::test]
async fn a_receiver_that_never_answers_does_not_hold_up_the_caller_and_its_queue_stays_bounded() {
    let url = hanging_receiver().await;
    let shutdown = CancellationToken::new();
    let options = Options {
        timeout: Duration::from_secs(10),
        capacity: 8,
        ..fast()
    };
    let mut n = notifier(ReceiverKind::Generic, &url, None, options, &shutdown);
    // The worker takes the first notice and hangs on it.
    n.notify(notice(NotifyEvent::SyncFailed, "first"), SystemTime::now());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    for i in 0..1000 {
        n.notify(
            notice(NotifyEvent::SyncFailed, &format!("burst {i}")),
            SystemTime::now(),
        );
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(200),
        "1,000 notices took {took:?} to hand over"
    );
    let (sent, failed, dropped) = n.receivers()[0].counts.get();
    assert_eq!((sent, failed), (0, 0));
    // 8 wait in the queue; the first is in flight; every other one of the burst is dropped.
    assert_eq!(dropped, 1000 - 8, "dropped {dropped}");
    eprintln!("handing over 1,000 notices to a hanging receiver took {took:?}");
    shutdown.cancel();
}

#[tokio::test]
async fn retries_stop_after_the_limit_and_a_refusal_is_not_retried() {
    let (base, got) = receiver(StatusCode::SERVICE_UNAVAILABLE).await;
    let shutdown = CancellationToken::new();
    let mut n = notifier(ReceiverKind::Generic, &base, None, fast(), &shutdown);
    n.notify(notice(NotifyEvent::SyncFailed, "x"), SystemTime::now());
    wait_for("the failure", || n.receivers()[0].counts.get().1 == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        got.lock().unwrap().len(),
        3,
        "three attempts, then it stops"
    );
    assert_eq!(n.receivers()[0].counts.get(), (0, 1, 0));

    let (base, got) = receiver(StatusCode::BAD_REQUEST).await;
    let mut n = notifier(ReceiverKind::Generic, &base, None, fast(), &shutdown);
    n.notify(notice(NotifyEvent::SyncFailed, "x"), SystemTime::now());
    wait_for("the failure", || n.receivers()[0].counts.get().1 == 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(got.lock().unwrap().len(), 1, "a 400 is final");
    shutdown.cancel();
}

#[tokio::test]
async fn an_unreachable_receiver_fails_after_its_attempts_and_is_counted() {
    // A port that was just free: connections are refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    let shutdown = CancellationToken::new();
    let mut n = notifier(ReceiverKind::Slack, &url, None, fast(), &shutdown);
    n.notify(notice(NotifyEvent::SyncFailed, "x"), SystemTime::now());
    wait_for("the failure", || n.receivers()[0].counts.get().1 == 1).await;
    shutdown.cancel();
}

/// A forge API on 127.0.0.1 that answers 201 only to the documented request shape.
async fn forge(forge: Forge) -> (String, Arc<Mutex<Vec<Got>>>) {
    let (base, got) = receiver(StatusCode::CREATED).await;
    let api = match forge {
        Forge::Github => base.clone(),
        Forge::Gitea => format!("{base}/api/v1"),
        Forge::Gitlab => format!("{base}/api/v4"),
    };
    (api, got)
}

/// The one request a forge server receives for one status of `state` on `repo`.
async fn one_status(forge_kind: Forge, repo: &str, state: CommitState) -> Got {
    let (api, got) = forge(forge_kind).await;
    let shutdown = CancellationToken::new();
    let n = statuses(forge_kind, &api, repo, &shutdown);
    n.report(update(state));
    wait_for("the status", || got.lock().unwrap().len() == 1).await;
    let g = got.lock().unwrap()[0].clone();
    shutdown.cancel();
    g
}

fn statuses(forge: Forge, api: &str, repo: &str, shutdown: &CancellationToken) -> Notifier {
    let config = CommitStatusConfig {
        forge,
        api_url: api.into(),
        repo: repo.into(),
        token: Some(Secret::new("forge-token")),
    };
    Notifier::new(
        Arc::new(Store::new("main".into())),
        None,
        Some(&config),
        context(),
        fast(),
        shutdown,
    )
    .unwrap()
    .unwrap()
}

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn update(state: CommitState) -> Update {
    Update {
        stack: "apps/web".into(),
        sha: SHA.into(),
        state,
        description: "web: unhealthy".into(),
    }
}

#[tokio::test]
async fn github_statuses_follow_the_rest_api() {
    let (api, got) = forge(Forge::Github).await;
    let shutdown = CancellationToken::new();
    let n = statuses(Forge::Github, &api, "org/infra", &shutdown);
    n.report(update(CommitState::Pending));
    n.report(update(CommitState::Failure));
    wait_for("two statuses", || got.lock().unwrap().len() == 2).await;
    let got = got.lock().unwrap().clone();
    for g in &got {
        assert_eq!(g.method, Method::POST);
        assert_eq!(g.uri, format!("/repos/org/infra/statuses/{SHA}"));
        assert_eq!(g.headers["authorization"], "Bearer forge-token");
        assert_eq!(g.headers["accept"], "application/vnd.github+json");
        assert_eq!(g.headers["x-github-api-version"], "2022-11-28");
        assert_eq!(g.headers["content-type"], "application/json");
    }
    let bodies: Vec<Value> = got
        .iter()
        .map(|g| serde_json::from_slice(&g.body).unwrap())
        .collect();
    assert_eq!(
        bodies[1],
        json!({"state": "failure", "target_url": "https://cd.example/stacks/apps%2Fweb",
               "description": "web: unhealthy", "context": "docker-cd/apps/web"})
    );
    assert_eq!(bodies[0]["state"], "pending");
    assert_eq!(n.statuses().unwrap().counts.get(), (2, 0, 0));
    shutdown.cancel();
}

#[tokio::test]
async fn gitea_statuses_follow_api_v1() {
    let g = one_status(Forge::Gitea, "o/r", CommitState::Success).await;
    assert_eq!(g.method, Method::POST);
    assert_eq!(g.uri, format!("/api/v1/repos/o/r/statuses/{SHA}"));
    assert_eq!(g.headers["authorization"], "token forge-token");
    let body: Value = serde_json::from_slice(&g.body).unwrap();
    assert_eq!(body["state"], "success");
    assert_eq!(body["context"], "docker-cd/apps/web");
    assert_eq!(body["target_url"], "https://cd.example/stacks/apps%2Fweb");
}

#[tokio::test]
async fn gitlab_statuses_follow_api_v4_with_the_encoded_project_path() {
    let g = one_status(Forge::Gitlab, "group/sub/project", CommitState::Failure).await;
    assert_eq!(g.method, Method::POST);
    assert_eq!(
        g.uri,
        format!("/api/v4/projects/group%2Fsub%2Fproject/statuses/{SHA}")
    );
    assert_eq!(g.headers["private-token"], "forge-token");
    assert!(g.headers.get("authorization").is_none());
    let body: Value = serde_json::from_slice(&g.body).unwrap();
    assert_eq!(
        body,
        json!({"state": "failed", "name": "docker-cd/apps/web",
               "target_url": "https://cd.example/stacks/apps%2Fweb", "description": "web: unhealthy"})
    );
}

#[tokio::test]
async fn a_failing_forge_is_counted_and_never_fatal() {
    let (base, got) = receiver(StatusCode::UNAUTHORIZED).await;
    let shutdown = CancellationToken::new();
    let n = statuses(Forge::Github, &base, "o/r", &shutdown);
    n.report(update(CommitState::Success));
    wait_for("the failure", || n.statuses().unwrap().counts.get().1 == 1).await;
    assert_eq!(got.lock().unwrap().len(), 1);
    // The lane still takes the next one.
    n.report(update(CommitState::Failure));
    wait_for("the second failure", || {
        n.statuses().unwrap().counts.get().1 == 2
    })
    .await;
    shutdown.cancel();
}

#[tokio::test]
async fn a_deployment_in_the_store_reaches_the_receiver_and_the_forge() {
    let (base, got) = receiver(StatusCode::OK).await;
    let (api, statuses_got) = forge(Forge::Gitea).await;
    let store = Arc::new(Store::new("main".into()));
    let shutdown = CancellationToken::new();
    let notify = NotifyConfig {
        receivers: vec![Receiver {
            kind: ReceiverKind::Generic,
            url: Secret::new(base),
            label: "generic".into(),
        }],
        events: NotifyEvent::DEFAULT.into_iter().collect(),
        secret: None,
    };
    let status = CommitStatusConfig {
        forge: Forge::Gitea,
        api_url: api,
        repo: "o/r".into(),
        token: Some(Secret::new("forge-token")),
    };
    let n = Notifier::new(
        store.clone(),
        Some(&notify),
        Some(&status),
        context(),
        fast(),
        &shutdown,
    )
    .unwrap()
    .unwrap();
    tokio::spawn(n.run(shutdown.clone()));
    // The notifier subscribes when it starts running.
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.publish_history(
        "apps/web",
        json!({"id": 7, "revision": SHA, "commitMessage": "bump", "trigger": "commit",
               "outcome": "rolled-back", "reason": "web: unhealthy"}),
    );
    wait_for("two notifications", || got.lock().unwrap().len() == 2).await;
    wait_for("the commit status", || {
        statuses_got.lock().unwrap().len() == 1
    })
    .await;
    let events: Vec<String> = got
        .lock()
        .unwrap()
        .iter()
        .map(|g| {
            let v: Value = serde_json::from_slice(&g.body).unwrap();
            v["event"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(events, ["sync.failed", "rollback"]);
    let body: Value = serde_json::from_slice(&statuses_got.lock().unwrap()[0].body).unwrap();
    assert_eq!(body["state"], "failure");
    assert_eq!(body["description"], "rolled back: web: unhealthy");
    shutdown.cancel();
}

/// The binary with a clean environment plus `vars`, not reconciling.
fn docker_cd(args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_docker-cd"))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("DATA_DIR", dir.path().join("data"))
        .env("RECONCILE_ENABLED", "false")
        .envs(vars.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn help_lists_the_notification_and_commit_status_settings() {
    let out = docker_cd(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for variable in [
        "NOTIFY_URLS",
        "NOTIFY_URLS_FILE",
        "NOTIFY_EVENTS",
        "NOTIFY_SECRET",
        "NOTIFY_SECRET_FILE",
        "COMMIT_STATUS",
        "COMMIT_STATUS_TOKEN",
        "COMMIT_STATUS_TOKEN_FILE",
        "COMMIT_STATUS_API_URL",
        "COMMIT_STATUS_REPO",
        "PUBLIC_URL",
    ] {
        assert!(
            help.contains(&format!("[env: {variable}")),
            "--help lacks {variable}"
        );
    }
}

#[test]
fn an_invalid_receiver_stops_start_up_naming_the_entry_and_never_its_secret_parts() {
    let out = docker_cd(
        &[],
        &[
            ("GIT_REPO_URL", "https://github.com/o/r.git"),
            (
                "NOTIFY_URLS",
                "slack+https://hooks.slack.com/services/T0/B0/SECRETPART,teams+https://user:hunter2@teams.example/SECRETPATH",
            ),
            ("NOTIFY_EVENTS", "sync.failed,sync.exploded"),
            ("COMMIT_STATUS", "bitbucket"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("NOTIFY_URLS: entry 2 (teams+https://teams.example/…): the kind is not one of: generic, slack, ntfy"),
        "{stderr}"
    );
    assert!(
        stderr.contains("NOTIFY_EVENTS: \"sync.exploded\" not an event"),
        "{stderr}"
    );
    assert!(
        stderr.contains("COMMIT_STATUS: \"bitbucket\" is not one of"),
        "{stderr}"
    );
    for secret in ["SECRETPART", "SECRETPATH", "hunter2"] {
        assert!(!stderr.contains(secret), "{secret} in {stderr}");
    }
}
