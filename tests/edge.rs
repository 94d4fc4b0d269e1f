//! The HTTP edge under attack (TESTPLAN round two): slow and idle clients (X2), bodies sent to
//! protected routes without credentials (X3), bursts of page views (X4), cross-site requests
//! (X6), the response headers every answer carries, and repeated credentials (X11).
//!
//! Clients that misbehave are written by hand on a raw TCP stream: no HTTP client library
//! sends half a request on purpose. Bounds on time are generous (the timeouts under test are a
//! second or so; the tests allow tens of seconds), so a loaded machine does not make them
//! fail; what they check is a state: closed or not, refused or not, how many processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{SECRET, TestApp, TestRepo, sign};
use docker_cd::http::EdgeLimits;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far longer than any timeout under test: reaching it means the server never acted.
const GENEROUS: Duration = Duration::from_secs(40);

/// A repository with one stack, `a`.
fn one_stack_repo() -> TestRepo {
    let (repo, _) = TestRepo::with_stack("a", "a:1", "one");
    repo
}

/// Limits with timeouts short enough for a test.
fn short_limits() -> EdgeLimits {
    EdgeLimits {
        header_read_timeout: Duration::from_secs(1),
        body_idle_timeout: Duration::from_secs(2),
        body_read_timeout: Duration::from_secs(3),
        ..EdgeLimits::default()
    }
}

/// A client that does not reuse connections: the short timeouts close idle ones.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.app().addr).await.unwrap()
}

/// Reads until the server closes the connection (or resets it); `None` if it is still open
/// after `limit`. Returns what was read.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&seen).into_owned())
}

/// Reads until a whole status line has arrived; `None` if none came within `limit`.
async fn read_status_line(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut seen = Vec::new();
    tokio::time::timeout(limit, async {
        let mut buf = [0u8; 1024];
        while !seen.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    let text = String::from_utf8_lossy(&seen).into_owned();
    text.lines().next().map(str::to_owned)
}

/// Request headers for a POST of `length` bytes to `path`, with `extra` header lines.
fn post_head(path: &str, length: usize, extra: &[&str]) -> String {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n"
    );
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

#[tokio::test]
async fn x02_clients_that_never_finish_their_headers_are_closed_after_the_header_timeout() {
    let repo = one_stack_repo();
    let app = TestApp::start_with_limits(&repo.url(), |_| {}, short_limits()).await;

    // One sends half a request line and stops; one sends nothing at all; one drips a header
    // line every 300 ms, which must not keep resetting the timeout.
    let mut half = connect(&app).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut silent = connect(&app).await;
    let mut drip = connect(&app).await;
    let dripping = tokio::spawn(async move {
        drip.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let line = format!("x-drip-{i}: 1\r\n");
            if drip.write_all(line.as_bytes()).await.is_err() {
                return true;
            }
            if i > 130 {
                return false;
            }
        }
        false
    });
    for (name, stream) in [("half", &mut half), ("silent", &mut silent)] {
        let got = read_until_closed(stream, GENEROUS).await;
        assert!(got.is_some(), "the {name} client is still connected");
    }
    assert!(
        dripping.await.unwrap(),
        "the dripping client was never cut off"
    );
    let (code, _) = app.get_json("/healthz").await;
    assert_eq!(code, 200);
    app.stop().await;
}

#[tokio::test]
async fn x02_request_headers_over_32_kib_are_refused() {
    let repo = one_stack_repo();
    let app = TestApp::start(&repo.url(), |_| {}).await;
    // 100 KiB of headers: hyper's own default (its read buffer, ~400 KiB) would take them,
    // times every connection an attacker opens.
    let mut stream = connect(&app).await;
    let head = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    // The server may close before it has read everything: a failed write is fine.
    let _ = stream.write_all(head.as_bytes()).await;
    let answer = read_until_closed(&mut stream, GENEROUS).await;
    let answer = answer.expect("the connection with huge headers is still open");
    println!("huge headers: {:?}", answer.lines().next());
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer:.200}");
    app.stop().await;
}

#[tokio::test]
async fn x02_a_body_sent_byte_by_byte_or_stalled_is_refused_408_and_closed() {
    let repo = one_stack_repo();
    let app = TestApp::start_with_limits(&repo.url(), |_| {}, short_limits()).await;
    let signature = format!("x-hub-signature-256: sha256={}", "0".repeat(64));
    let head = post_head("/api/webhook", 1000, &["x-github-event: push", &signature]);

    // A byte every 300 ms: never a long pause, but the whole request takes too long.
    let mut slow = connect(&app).await;
    slow.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = slow.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..1000 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(GENEROUS, reader.read_to_end(&mut answer)).await;
    trickle.abort();
    assert!(read.is_ok(), "the byte-by-byte client is still connected");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\""), "{answer}");

    // Half a body, then nothing: the pause between two pieces is too long.
    let mut stalled = connect(&app).await;
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&[b' '; 500]).await.unwrap();
    let answer = read_until_closed(&mut stalled, GENEROUS).await;
    let answer = answer.expect("the stalled client is still connected");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    let (code, _) = app.get_json("/healthz").await;
    assert_eq!(code, 200);
    app.stop().await;
}

/// This process's resident memory, in MiB (`VmRSS` of `/proc/self/status`).
fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

#[tokio::test]
async fn x02_memory_returns_to_baseline_after_forty_slow_webhook_bodies() {
    // The review's attack: 40 deliveries declare 5 MiB, send all but the last byte, and hold.
    // It took the server from 37 to 224 MB, for as long as the attacker liked. The bounds
    // here are far from both the fixed figures (+20 MB at the peak, a few after) and the old
    // ones (+200 MB held), so that the other tests of this binary do not matter.
    let repo = one_stack_repo();
    let app = TestApp::start_with_limits(&repo.url(), |_| {}, short_limits()).await;
    let baseline = rss_mib();
    const SIZE: usize = 5 * 1024 * 1024;
    let signature = format!("x-hub-signature-256: sha256={}", "0".repeat(64));
    let head = post_head("/api/webhook", SIZE, &["x-github-event: push", &signature]);
    let piece = vec![b' '; 64 * 1024];
    let mut attackers = Vec::new();
    for _ in 0..40 {
        let mut stream = connect(&app).await;
        let (head, piece) = (head.clone(), piece.clone());
        attackers.push(tokio::spawn(async move {
            stream.write_all(head.as_bytes()).await.unwrap();
            // Until the server stops reading (it waits for a slot, or has closed): then hold.
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                let mut sent = 0;
                while sent + piece.len() < SIZE {
                    if stream.write_all(&piece).await.is_err() {
                        return;
                    }
                    sent += piece.len();
                }
            })
            .await;
            read_until_closed(&mut stream, GENEROUS).await.is_some()
        }));
    }
    let mut peak = baseline;
    while !attackers.iter().all(|a| a.is_finished()) {
        peak = peak.max(rss_mib());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("X2 memory: baseline {baseline} MiB, peak {peak} MiB");
    assert!(peak < baseline + 100, "peak {peak} MiB from {baseline} MiB");
    for attacker in attackers {
        assert!(attacker.await.unwrap(), "an attacker is still connected");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_mib();
    println!("X2 memory: {after} MiB after the attack");
    assert!(
        after < baseline + 40,
        "{after} MiB after, from {baseline} MiB"
    );
    let (code, _) = app.get_json("/healthz").await;
    assert_eq!(code, 200);
    app.stop().await;
}

#[tokio::test]
async fn x02_hundreds_of_idle_connections_are_closed_and_healthz_still_answers() {
    let repo = one_stack_repo();
    let limits = EdgeLimits {
        max_connections: 20,
        ..short_limits()
    };
    let app = TestApp::start_with_limits(&repo.url(), |_| {}, limits).await;
    // Ten times the cap: most wait in the backlog until a slot frees.
    let mut idle = Vec::new();
    for i in 0..200 {
        let mut stream = connect(&app).await;
        if i % 2 == 0 {
            stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        }
        idle.push(stream);
    }
    let healthz = tokio::time::timeout(GENEROUS, fresh_client().get(app.url("/healthz")).send())
        .await
        .expect("/healthz answered while 200 idle connections were open")
        .unwrap();
    assert_eq!(healthz.status(), 200);
    let still_open = futures_util::future::join_all(
        idle.iter_mut()
            .map(|stream| read_until_closed(stream, GENEROUS)),
    )
    .await
    .iter()
    .filter(|closed| closed.is_none())
    .count();
    assert_eq!(still_open, 0, "idle connections the server never closed");
    app.stop().await;
}

#[tokio::test]
async fn x03_a_large_body_without_credentials_is_refused_401_before_it_is_read() {
    const TOKEN: &str = "x03-api-t0ken-0c1d2e";
    let repo = one_stack_repo();
    let app = TestApp::start(&repo.url(), |a| a.api_token = Some(TOKEN.into())).await;
    // 1 MB declared (under every old limit), 16 KiB sent, then the client waits: it never
    // finishes sending, so only an answer from the headers alone can reach it.
    let cases = [
        ("/api/reconcile/ack", vec![]),
        ("/api/refresh", vec![]),
        ("/api/webhook", vec!["x-github-event: push"]),
        (
            "/api/reconcile/ack",
            vec!["authorization: Bearer not-the-token"],
        ),
    ];
    for (path, extra) in cases {
        let mut stream = connect(&app).await;
        stream
            .write_all(post_head(path, 1_000_000, &extra).as_bytes())
            .await
            .unwrap();
        stream.write_all(&[b' '; 16 * 1024]).await.unwrap();
        let status = read_status_line(&mut stream, GENEROUS).await;
        assert_eq!(
            status.as_deref(),
            Some("HTTP/1.1 401 Unauthorized"),
            "{path} {extra:?}"
        );
    }
    app.stop().await;
}

/// A docker stand-in that logs each call and answers `ps` with nothing, slowly enough that
/// concurrent views overlap.
fn recording_docker(dir: &Path) -> (PathBuf, PathBuf) {
    let log = dir.join("docker-calls.log");
    let script = dir.join("docker");
    common::write_executable(
        &script,
        &format!(
            "#!/bin/sh\necho \"$*\" >> \"{}\"\nsleep 0.5\nexit 0\n",
            log.display()
        ),
    );
    (script, log)
}

fn calls(log: &Path) -> Vec<String> {
    common::wrappers::recorded(log)
}

#[tokio::test]
async fn x04_sixty_concurrent_page_and_detail_views_start_at_most_three_docker_processes() {
    let repo = one_stack_repo();
    let bin = tempfile::tempdir().unwrap();
    let (docker, log) = recording_docker(bin.path());
    let app = TestApp::start(&repo.url(), |a| a.docker_bin = Some(docker.clone())).await;
    app.wait_refreshes(1).await;
    assert!(calls(&log).is_empty(), "{:?}", calls(&log));

    let client = fresh_client();
    let views = (0..60).map(|i| {
        let request = match i % 3 {
            0 => client.get(app.url("/")),
            1 => client
                .get(app.url("/stacks/a"))
                .header("accept", "text/html"),
            _ => client.get(app.url("/api/stacks/a")),
        };
        async move { request.send().await.unwrap().status().as_u16() }
    });
    let codes = futures_util::future::join_all(views).await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    let started = calls(&log);
    println!("X4: 60 views started {} docker processes", started.len());
    assert!(
        started.len() <= 3,
        "{} docker processes, the first: {:.60}",
        started.len(),
        started[0]
    );
    app.stop().await;
}

/// A POST as a browser on another site could send it.
fn cross_site(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: &str,
    origin: Option<&str>,
    site: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut request = app
        .client
        .post(app.url(path))
        .header("content-type", content_type)
        .body(body.to_owned());
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if let Some(site) = site {
        request = request.header("sec-fetch-site", site);
    }
    request
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn x06_cross_site_forms_and_text_plain_json_are_refused_and_nothing_is_queued() {
    let repo = one_stack_repo();
    let app = TestApp::start(&repo.url(), |_| {}).await;
    app.wait_refreshes(1).await;
    let before = app.refresh_status().await["refreshId"].clone();
    let evil = Some("http://evil.example");
    let ack = json!({ "path": "a" }).to_string();
    let form = "path=a";
    let urlencoded = "application/x-www-form-urlencoded";
    for path in ["/api/refresh", "/api/reconcile/ack"] {
        let attempts = [
            (cross_site(&app, path, urlencoded, form, evil, None), 403),
            (
                cross_site(&app, path, urlencoded, form, evil, Some("cross-site")),
                403,
            ),
            (cross_site(&app, path, "text/plain", &ack, None, None), 415),
            (
                cross_site(&app, path, "text/plain", &ack, None, Some("cross-site")),
                403,
            ),
            (
                cross_site(&app, path, "application/json", &ack, evil, None),
                403,
            ),
            (
                cross_site(
                    &app,
                    path,
                    "application/json",
                    &ack,
                    None,
                    Some("same-site"),
                ),
                403,
            ),
            (
                cross_site(
                    &app,
                    path,
                    "multipart/form-data; boundary=x",
                    "--x--",
                    None,
                    None,
                ),
                415,
            ),
        ];
        for (i, (request, code)) in attempts.into_iter().enumerate() {
            let (got, body) = send(request).await;
            assert_eq!(got, code, "{path} attempt {i}: {body}");
            assert!(body["error"].is_string(), "{path} attempt {i}: {body}");
        }
    }
    // Nothing was queued: no refresh ran after the refused requests.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.refresh_status().await["refreshId"], before);
    assert_eq!(app.app().refresh_progress.borrow().completed, 1);

    // What docker-cd's own clients send still works: curl and `docker-cd refresh` (no
    // Origin, no body), the dashboard (same origin, JSON).
    let (code, body) = send(app.client.post(app.url("/api/refresh"))).await;
    assert_eq!(code, 200, "{body}");
    app.wait_refreshes(2).await;
    let (code, body) = send(cross_site(
        &app,
        "/api/refresh",
        "application/json",
        "",
        Some(app.base.as_str()),
        Some("same-origin"),
    ))
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = send(cross_site(
        &app,
        "/api/reconcile/ack",
        "application/json",
        &ack,
        Some(app.base.as_str()),
        None,
    ))
    .await;
    // Past the checks: refused only because this instance does not reconcile.
    assert_eq!(code, 409, "{body}");
    // The webhook is exempt: forges send no Origin, and a browser cannot sign.
    let payload = common::push_payload("refs/heads/main", &repo.head());
    let (code, body) = send(
        cross_site(
            &app,
            "/api/webhook",
            "application/json",
            std::str::from_utf8(&payload).unwrap(),
            evil,
            None,
        )
        .header("x-github-event", "push")
        .header("x-hub-signature-256", sign(SECRET, &payload)),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn x06_an_acknowledgement_needs_a_json_content_type_and_a_small_body() {
    let repo = one_stack_repo();
    let app = TestApp::start(&repo.url(), |_| {}).await;
    let (code, body) = send(
        app.client
            .post(app.url("/api/reconcile/ack"))
            .body("{\"path\":\"a\"}"),
    )
    .await;
    assert_eq!(code, 415, "{body}");
    let long = json!({ "path": "a".repeat(8 * 1024) });
    let (code, body) = app.post_json("/api/reconcile/ack", long).await;
    assert_eq!(code, 413, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn x09_every_answer_says_nosniff_and_the_status_page_varies_by_accept() {
    let repo = one_stack_repo();
    let app = TestApp::start(&repo.url(), |_| {}).await;
    app.wait_refreshes(1).await;
    let requests = [
        app.client.get(app.url("/healthz")),
        app.client.get(app.url("/readyz")),
        app.client.get(app.url("/api/stacks")),
        app.client.get(app.url("/api/stacks/a")),
        app.client.get(app.url("/api/refresh-status")),
        app.client.get(app.url("/metrics")),
        app.client.get(app.url("/nowhere")),
        app.client.put(app.url("/api/refresh")),
        app.client.post(app.url("/api/webhook")),
        app.client.get(app.url("/")),
        app.client.get(app.url("/")).header("accept", "text/html"),
        app.client
            .get(app.url("/stacks/a"))
            .header("accept", "text/html"),
    ];
    for request in requests {
        let request = request.build().unwrap();
        let what = format!("{} {}", request.method(), request.url().path());
        let response = app.client.execute(request).await.unwrap();
        let headers = response.headers();
        assert_eq!(
            headers.get("x-content-type-options").map(|v| v.as_bytes()),
            Some(&b"nosniff"[..]),
            "{what}: {headers:?}"
        );
        if what.ends_with(" /") {
            let vary = headers.get("vary").and_then(|v| v.to_str().ok());
            assert!(
                vary.is_some_and(|v| v.to_ascii_lowercase().contains("accept")),
                "{what}: {headers:?}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn x11_two_signature_or_token_headers_on_one_request_are_401() {
    const TOKEN: &str = "x11-api-t0ken-9a8b7c";
    let repo = one_stack_repo();
    let app = TestApp::start(&repo.url(), |a| a.api_token = Some(TOKEN.into())).await;
    app.wait_refreshes(1).await;
    let payload = common::push_payload("refs/heads/main", &repo.head());
    let right = sign(SECRET, &payload);
    let wrong = sign("another secret", &payload);
    for pair in [[&right, &right], [&right, &wrong], [&wrong, &right]] {
        let (code, body) = send(
            app.client
                .post(app.url("/api/webhook"))
                .header("content-type", "application/json")
                .header("x-github-event", "push")
                .header("x-hub-signature-256", pair[0])
                .header("x-hub-signature-256", pair[1])
                .body(payload.clone()),
        )
        .await;
        assert_eq!(code, 401, "{body}");
    }
    let bearer = format!("Bearer {TOKEN}");
    for path in ["/api/refresh", "/api/reconcile/ack"] {
        let (code, body) = send(
            app.client
                .post(app.url(path))
                .header("authorization", &bearer)
                .header("authorization", &bearer)
                .json(&json!({ "path": "a" })),
        )
        .await;
        assert_eq!(code, 401, "{path}: {body}");
    }
    assert_eq!(app.app().refresh_progress.borrow().completed, 1);
    // One of each is still fine.
    let (code, body) = send(
        app.client
            .post(app.url("/api/refresh"))
            .header("authorization", &bearer),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn event_streams_beyond_their_cap_are_refused_503_and_a_closed_one_frees_its_place() {
    let repo = one_stack_repo();
    let limits = EdgeLimits {
        max_event_streams: 2,
        ..EdgeLimits::default()
    };
    let app = TestApp::start_with_limits(&repo.url(), |_| {}, limits).await;
    let client = fresh_client();
    let first = client.get(app.url("/api/events")).send().await.unwrap();
    let second = client.get(app.url("/api/events")).send().await.unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let (code, body) = send(client.get(app.url("/api/events"))).await;
    assert_eq!(code, 503, "{body}");
    drop(first);
    // The server notices the closed stream on its next write (at the latest the keep-alive).
    let deadline = tokio::time::Instant::now() + GENEROUS;
    loop {
        let response = client.get(app.url("/api/events")).send().await.unwrap();
        if response.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(second);
    app.stop().await;
}
