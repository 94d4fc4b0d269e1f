//! `POST /api/webhook` end to end, and the API cases of the test plan (C6–C8), against the real
//! app on 127.0.0.1 with a real Git origin. Each test names its TESTPLAN id.
//!
//! "Nothing happened" is checked with a recording git wrapper: after the start-up refresh no
//! further git process may start, and the refresh counter must not move.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{SECRET, TestApp, TestRepo, assert_refresh_error, compose, push_payload, sign, stack};
use docker_cd::config::Args;
use futures_util::StreamExt;
use reqwest::RequestBuilder;
use serde_json::{Value, json};
use tempfile::TempDir;

/// The body limit of SPEC §7.
const LIMIT: usize = 5 * 1024 * 1024;
const MAIN: &str = "refs/heads/main";
const ZEROS: &str = "0000000000000000000000000000000000000000";

/// A repo with one stack `a` on `main`, pushed; returns it and the commit.
fn one_stack_repo() -> (TestRepo, String) {
    let (repo, commit) = TestRepo::with_stack("a", "a:1", "one");
    (repo, commit)
}

/// A real GitHub payload from tests/payloads.
fn real_payload(name: &str) -> Value {
    let path = format!("{}/tests/payloads/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// An app whose git is the recording wrapper, after its start-up refresh.
struct Watched {
    app: TestApp,
    log: PathBuf,
    startup_calls: usize,
    _dir: TempDir,
}

impl Watched {
    async fn start(repo: &TestRepo, fetch_delay_secs: u32, adjust: impl FnOnce(&mut Args)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (git, log) = common::recording_git(dir.path(), fetch_delay_secs);
        let app = TestApp::start(&repo.url(), |a| {
            a.git_bin = Some(git);
            adjust(a);
        })
        .await;
        app.wait_refreshes(1).await;
        let startup_calls = common::recorded_calls(&log).len();
        Self {
            app,
            log,
            startup_calls,
            _dir: dir,
        }
    }

    /// Git subcommands started since the start-up refresh finished.
    fn calls_since_startup(&self) -> Vec<String> {
        common::recorded_calls(&self.log)[self.startup_calls..].to_vec()
    }

    fn completed(&self) -> u64 {
        self.app.app().refresh_progress.borrow().completed
    }

    /// Gives a wrongly triggered refresh time to start, then checks none did.
    async fn assert_nothing_ran(&self) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            self.calls_since_startup(),
            Vec::<String>::new(),
            "no git process after start-up"
        );
        assert_eq!(self.completed(), 1, "no refresh after start-up");
        let status = self.app.refresh_status().await;
        assert_eq!(status["trigger"], "startup", "{status}");
        assert!(
            status["queuedTrigger"].is_null(),
            "nothing queued: {status}"
        );
    }

    async fn stop(self) {
        self.app.stop().await;
    }
}

impl std::ops::Deref for Watched {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

/// Sends; every answer of the API must be JSON.
async fn answer(request: RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("answer {status} is not JSON ({e}): {text:.300}"));
    (status, body)
}

/// `{"error": "…"}` with `code`, its message containing `needle`.
fn assert_error(got: &(u16, Value), code: u16, needle: &str) {
    let (status, body) = got;
    assert_eq!(*status, code, "{body}");
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {body}"));
    assert!(
        message.to_lowercase().contains(&needle.to_lowercase()),
        "{message:?} should mention {needle:?}"
    );
}

fn assert_accepted(got: &(u16, Value)) {
    let (status, body) = got;
    assert_eq!(*status, 200, "{body}");
    let s = body["status"].as_str().unwrap_or_default();
    assert!(s == "refreshing" || s == "queued", "{body}");
}

fn assert_ignored(got: &(u16, Value)) {
    let (status, body) = got;
    assert!((200..300).contains(status), "{status} {body}");
    assert_eq!(body["status"], "ignored", "{body}");
    assert!(body["reason"].is_string(), "{body}");
}

/// Waits until no refresh runs or waits: the counter has reached `at_least` and neither it nor
/// the status has moved for a while. Returns the counter.
async fn settle(app: &TestApp, at_least: u64) -> u64 {
    app.wait_refreshes(at_least).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = u64::MAX;
    let mut quiet_since = Instant::now();
    loop {
        let now = app.app().refresh_progress.borrow().completed;
        let status = app.refresh_status().await;
        if now != last || status["refreshStatus"] == "refreshing" {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > Duration::from_millis(700) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "refreshes did not settle: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The largest number of overlapping runs of any of `subcommands` in a recording.
fn max_overlap(log: &Path, subcommands: &[&str]) -> usize {
    let (mut running, mut max) = (0usize, 0usize);
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let mut words = line.split(' ');
        let (edge, sub) = (words.next(), words.next().unwrap_or_default());
        if !subcommands.contains(&sub) {
            continue;
        }
        match edge {
            Some("start") => {
                running += 1;
                max = max.max(running);
            }
            Some("end") => running = running.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// SHA-1 (FIPS 180-4), only to build the legacy `X-Hub-Signature` header GitHub also sends.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in message.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes(word.try_into().unwrap());
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, word) in out.chunks_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Hex HMAC-SHA1 (RFC 2104) of `body` under `secret`.
fn hmac_sha1_hex(secret: &str, body: &[u8]) -> String {
    let mut key = [0u8; 64];
    if secret.len() > 64 {
        key[..20].copy_from_slice(&sha1(secret.as_bytes()));
    } else {
        key[..secret.len()].copy_from_slice(secret.as_bytes());
    }
    let pad = |byte: u8| key.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = sha1(&[pad(0x36), body.to_vec()].concat());
    hex::encode(sha1(&[pad(0x5c), inner.to_vec()].concat()))
}

/// A push to `git_ref` padded with spaces to exactly `size` bytes.
fn padded_push(git_ref: &str, size: usize) -> Vec<u8> {
    let mut body = push_payload(git_ref, ZEROS.replace('0', "1").as_str());
    assert_eq!(body.pop(), Some(b'}'));
    body.resize(size - 1, b' ');
    body.push(b'}');
    assert_eq!(body.len(), size);
    body
}

// ---------------------------------------------------------------------------------------------
// W1–W5: authentication
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn w01_missing_signature_is_401_and_nothing_is_queued() {
    // W1
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    let body = push_payload(MAIN, &repo.head());
    for content_type in ["application/json", "application/x-www-form-urlencoded"] {
        let got = answer(app.unsigned_push(content_type).body(body.clone())).await;
        assert_error(&got, 401, "missing x-hub-signature-256");
    }
    app.assert_nothing_ran().await;

    // The recorder does see a refresh when one happens.
    let got = answer(app.delivery("push", "application/json", body)).await;
    assert_accepted(&got);
    app.wait_refreshes(2).await;
    assert_eq!(app.calls_since_startup(), ["ls-remote"]);
    app.stop().await;
}

#[tokio::test]
async fn w02_legacy_sha1_signature_alone_is_401() {
    // W2: GitHub also sends `X-Hub-Signature: sha1=…`; a correct one alone is not enough.
    assert_eq!(
        hmac_sha1_hex("key", b"The quick brown fox jumps over the lazy dog"),
        "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9",
        "the test's own HMAC-SHA1 (RFC 2202 style vector)"
    );
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    let body = push_payload(MAIN, &repo.head());
    let legacy = format!("sha1={}", hmac_sha1_hex(SECRET, &body));
    let got = answer(
        app.unsigned_push("application/json")
            .header("x-hub-signature", &legacy)
            .body(body),
    )
    .await;
    assert_error(&got, 401, "missing x-hub-signature-256");
    app.assert_nothing_ran().await;
    app.stop().await;
}

#[tokio::test]
async fn w03_sha1_prefix_in_the_sha256_header_is_401() {
    // W3
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    let body = push_payload(MAIN, &repo.head());
    let sha256_hex = sign(SECRET, &body)["sha256=".len()..].to_owned();
    for header in [
        format!("sha1={}", hmac_sha1_hex(SECRET, &body)),
        format!("sha1={sha256_hex}"),
    ] {
        let got = answer(
            app.unsigned_push("application/json")
                .header("x-hub-signature-256", &header)
                .body(body.clone()),
        )
        .await;
        assert_error(&got, 401, "x-hub-signature-256");
    }
    app.assert_nothing_ran().await;
    app.stop().await;
}

#[tokio::test]
async fn w04_signature_of_another_body_or_secret_is_401_and_never_logged() {
    // W4
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    let body = push_payload(MAIN, "4d1f5b0c3e2a9f8e7d6c5b4a39281706f5e4d3c2");
    let mut one_byte = body.clone();
    *one_byte.last_mut().unwrap() = b' ';
    one_byte.push(b'}');
    let mut newline = body.clone();
    newline.push(b'\n');
    let wrong_secret = "not the secret, but close: It's a Secret to Everybody!";
    let mut sent = Vec::new();
    for (signature, sent_body) in [
        (sign(SECRET, &one_byte), body.clone()),
        (sign(SECRET, &body), newline.clone()),
        (sign(SECRET, &newline), body.clone()),
        (sign(wrong_secret, &body), body.clone()),
        (sign(SECRET, b""), body.clone()),
    ] {
        let got = answer(
            app.hook()
                .header("x-github-event", "push")
                .header("x-github-delivery", "w4-delivery")
                .header("content-type", "application/json")
                .header("x-hub-signature-256", &signature)
                .body(sent_body.clone()),
        )
        .await;
        assert_error(&got, 401, "signature does not match");
        let text = got.1.to_string();
        // The digest sent, and the one that would have been right.
        let right = sign(SECRET, &sent_body);
        for digest in [&signature["sha256=".len()..], &right["sha256=".len()..]] {
            assert!(!text.contains(digest), "digest in the answer: {text}");
            sent.push(digest.to_owned());
        }
        assert!(!text.contains(SECRET) && !text.contains(wrong_secret));
    }
    app.assert_nothing_ran().await;
    let logs = common::logs();
    assert!(
        logs.contains("rejected webhook"),
        "rejections are logged (warn)"
    );
    assert!(!logs.contains(SECRET), "the webhook secret is logged");
    assert!(
        !logs.contains(wrong_secret),
        "the presented secret is logged"
    );
    for digest in &sent {
        assert!(!logs.contains(digest.as_str()), "digest {digest} logged");
    }
    app.stop().await;
}

#[tokio::test]
async fn w05_malformed_digests_are_401_without_panic() {
    // W5
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    let body = push_payload(MAIN, &repo.head());
    let good = sign(SECRET, &body);
    let digits = &good["sha256=".len()..];
    let headers: Vec<Vec<u8>> = vec![
        format!("sha256={}", &digits[..63]).into(),
        format!("sha256={digits}0").into(),
        format!("sha256={}", &digits[..32]).into(),
        format!("sha256={}", "g".repeat(64)).into(),
        format!("sha256={}zz", &digits[..62]).into(),
        b"".to_vec(),
        b"sha256=".to_vec(),
        b"sha256".to_vec(),
        format!("sha256={}", "a".repeat(10 * 1024)).into(),
        format!("sha256={}{}", digits, "0".repeat(10 * 1024)).into(),
        // obs-text bytes (valid in a header value, not hex)
        [
            format!("sha256={}", &digits[..60]).as_bytes(),
            b"\xc3\xa9\xc3\xa9",
        ]
        .concat(),
    ];
    for header in headers {
        let value = reqwest::header::HeaderValue::from_bytes(&header).unwrap();
        let got = answer(
            app.unsigned_push("application/json")
                .header("x-hub-signature-256", value)
                .body(body.clone()),
        )
        .await;
        assert_eq!(
            got.0,
            401,
            "{:.80} → {}",
            String::from_utf8_lossy(&header),
            got.1
        );
        assert!(got.1["error"].is_string());
    }
    // Still alive and still verifying.
    let (code, health) = app.get_json("/healthz").await;
    assert_eq!((code, health["status"].as_str()), (200, Some("ok")));
    app.assert_nothing_ran().await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// W6: body limit
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn w06_oversize_body_is_413_before_hashing_with_or_without_content_length() {
    // W6
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    let big = padded_push(MAIN, 6 * 1024 * 1024);
    let signature = sign(SECRET, &big);

    // With Content-Length: refused on the header. Unsigned: refused 401 on the headers even
    // sooner (X3: authentication before any byte of the body is read).
    for (signature, code, needle) in [
        (Some(signature.as_str()), 413, "larger than"),
        (None, 401, "missing"),
    ] {
        let mut request = app
            .hook()
            .header("x-github-event", "push")
            .header("content-type", "application/json")
            .body(big.clone());
        if let Some(s) = signature {
            request = request.header("x-hub-signature-256", s);
        }
        let started = Instant::now();
        let got = answer(request).await;
        println!(
            "W6 content-length 6 MiB: {} in {:?}",
            got.0,
            started.elapsed()
        );
        assert_error(&got, code, needle);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    // Chunked (no Content-Length): refused once the limit is crossed, or unsigned at once.
    for (signature, code, needle) in [
        (Some(signature.as_str()), 413, "larger than"),
        (None, 401, "missing"),
    ] {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            big.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
        let mut request = app
            .hook()
            .header("x-github-event", "push")
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )));
        if let Some(s) = signature {
            request = request.header("x-hub-signature-256", s);
        }
        let started = Instant::now();
        let got = answer(request).await;
        println!("W6 chunked 6 MiB: {} in {:?}", got.0, started.elapsed());
        assert_error(&got, code, needle);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    app.assert_nothing_ran().await;
    app.stop().await;
}

#[tokio::test]
async fn w06_a_body_of_exactly_the_limit_is_accepted_and_one_byte_more_is_not() {
    // W6, the boundary: 5 MiB is allowed, 5 MiB + 1 is not, in both framings.
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    let at_limit = padded_push(MAIN, LIMIT);
    let over = padded_push(MAIN, LIMIT + 1);
    let got = answer(app.delivery("push", "application/json", at_limit.clone())).await;
    assert_accepted(&got);
    let got = answer(app.delivery("push", "application/json", over.clone())).await;
    assert_error(&got, 413, "larger than");
    for (body, code) in [(at_limit, 200), (over, 413)] {
        let signature = sign(SECRET, &body);
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            body.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
        let got = answer(
            app.unsigned_push("application/json")
                .header("x-hub-signature-256", signature)
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                ))),
        )
        .await;
        assert_eq!(got.0, code, "chunked {} bytes: {}", body.len(), got.1);
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// W7–W12: payload and event handling
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn w07_non_utf8_body_with_a_valid_signature_is_400_invalid_json() {
    // W7: JSON is UTF-8 (RFC 8259 §8.1); a body that is not is not JSON, wherever the bad bytes
    // sit, including fields the agent does not read (a Latin-1 commit message).
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    let bodies: [&[u8]; 5] = [
        b"\xff\xfe\x00\x01",
        b"\xef\xbb\xbf\xc0\xaf",
        b"{\"ref\":\"refs/heads/main\xff\",\"repository\":{}}",
        b"{\"ref\":\"refs/heads/main\",\"repository\":{\"full_name\":\"o/r\"},\
          \"head_commit\":{\"message\":\"caf\xe9\"}}",
        b"{\"zen\":\"\xff\",\"hook_id\":1}",
    ];
    let mut wrong = Vec::new();
    for body in bodies {
        for event in ["push", "ping"] {
            let got = answer(app.delivery(event, "application/json", body.to_vec())).await;
            let message = got.1["error"].as_str().unwrap_or_default();
            if got.0 != 400 || !message.contains("invalid JSON") {
                wrong.push(format!(
                    "{event} {:?} → {} {}",
                    String::from_utf8_lossy(body),
                    got.0,
                    got.1
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "expected 400 invalid JSON for every non-UTF-8 body:\n{}",
        wrong.join("\n")
    );
    app.assert_nothing_ran().await;
    app.stop().await;
}

#[tokio::test]
async fn w08_form_encoded_push_is_accepted_like_json() {
    // W8, with the real GitHub "push creating a branch" payload, retargeted at main.
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    repo.write("a/compose.yaml", compose("a:2"));
    let tip = repo.commit_and_push("two");

    let mut payload = real_payload("github-push-new-branch.json");
    payload["ref"] = json!(MAIN);
    payload["after"] = json!(tip);
    let form = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let got = answer(app.delivery(
        "push",
        "application/x-www-form-urlencoded",
        form.clone().into_bytes(),
    ))
    .await;
    assert_accepted(&got);
    app.wait_refreshes(2).await;
    let status = app.refresh_status().await;
    assert_eq!(status["revision"], tip.as_str(), "{status}");
    assert_eq!(status["trigger"], "webhook");

    // A charset parameter changes nothing; the signature covers the raw form bytes only.
    let got = answer(app.delivery(
        "push",
        "application/x-www-form-urlencoded; charset=utf-8",
        form.clone().into_bytes(),
    ))
    .await;
    assert_accepted(&got);
    // A form body signed over its decoded JSON is not authentic.
    let got = answer(
        app.unsigned_push("application/x-www-form-urlencoded")
            .header(
                "x-hub-signature-256",
                sign(SECRET, payload.to_string().as_bytes()),
            )
            .body(form),
    )
    .await;
    assert_error(&got, 401, "signature does not match");
    // A form-encoded ping is a ping.
    let ping = serde_urlencoded::to_string([("payload", r#"{"zen":"z","hook_id":1}"#)]).unwrap();
    let got = answer(app.delivery(
        "ping",
        "application/x-www-form-urlencoded",
        ping.into_bytes(),
    ))
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    settle(&app, 3).await;
    assert_eq!(app.refresh_status().await["revision"], tip.as_str());
    app.stop().await;
}

#[tokio::test]
async fn w09_form_without_payload_or_with_non_json_payload_is_400_after_the_signature_check() {
    // W9
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    let form = "application/x-www-form-urlencoded";
    for (body, needle) in [
        ("other=1", "no `payload` field"),
        ("", "no `payload` field"),
        ("payload=not%20json", "invalid JSON"),
        ("payload=", "invalid JSON"),
        ("payload=%7B%22ref%22%3A5%7D", "invalid type"),
    ] {
        let got = answer(app.delivery("push", form, body.as_bytes().to_vec())).await;
        assert_error(&got, 400, needle);
        // The same body unsigned or badly signed: authentication comes first.
        let got = answer(
            app.unsigned_push(form)
                .header("x-hub-signature-256", sign("wrong", body.as_bytes()))
                .body(body),
        )
        .await;
        assert_error(&got, 401, "signature");
    }
    app.assert_nothing_ran().await;
    app.stop().await;
}

#[tokio::test]
async fn w10_ping_is_200_without_a_refresh() {
    // W10
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    let ping = json!({
        "zen": "Design for failure.",
        "hook_id": 123456,
        "hook": {
            "type": "Repository", "id": 123456, "name": "web", "active": true,
            "events": ["push"],
            "config": { "content_type": "json", "insecure_ssl": "0", "url": "https://example.invalid/api/webhook" }
        },
        "repository": { "full_name": "example/gitops" },
        "sender": { "login": "octocat" }
    });
    let got = answer(app.delivery("ping", "application/json", ping.to_string().into_bytes())).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_ne!(got.1["status"], "refreshing");
    assert_ne!(got.1["status"], "queued");
    // A ping still needs a valid signature.
    let got = answer(
        app.hook()
            .header("x-github-event", "ping")
            .body(ping.to_string()),
    )
    .await;
    assert_error(&got, 401, "signature");
    app.assert_nothing_ran().await;
    app.stop().await;
}

#[tokio::test]
async fn w11_missing_event_header_with_a_valid_signature_is_400() {
    // W11
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    let body = push_payload(MAIN, &repo.head());
    let got = answer(
        app.hook()
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sign(SECRET, &body))
            .body(body.clone()),
    )
    .await;
    assert_error(&got, 400, "event");
    // An empty event header is no event either.
    let got = answer(app.delivery("", "application/json", body)).await;
    assert_error(&got, 400, "event");
    app.assert_nothing_ran().await;
    app.stop().await;
}

#[tokio::test]
async fn w12_unsupported_events_are_2xx_ignored_without_a_refresh() {
    // W12
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    // Bodies shaped like pushes to the tracked ref must not be taken for pushes.
    let body = push_payload(MAIN, &repo.head());
    for event in [
        "issues",
        "pull_request",
        "create",
        "delete",
        "release",
        "workflow_run",
        "Push",
        "push_v2",
    ] {
        let got = answer(app.delivery(event, "application/json", body.clone())).await;
        assert_ignored(&got);
    }
    // Gitea's header names an unsupported event the same way.
    let got = answer(
        app.hook()
            .header("x-gitea-event", "issues")
            .header("x-hub-signature-256", sign(SECRET, &body))
            .body(body),
    )
    .await;
    assert_ignored(&got);
    app.assert_nothing_ran().await;
    app.stop().await;
}

#[tokio::test]
async fn gitea_push_signed_with_the_same_header_is_accepted() {
    // SPEC §7: Gitea/Forgejo send X-Hub-Signature-256 too.
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    repo.write("a/compose.yaml", compose("a:2"));
    let tip = repo.commit_and_push("two");
    let body = push_payload(MAIN, &tip);
    let got = answer(
        app.hook()
            .header("x-gitea-event", "push")
            .header("x-gitea-delivery", "gitea-1")
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sign(SECRET, &body))
            .body(body),
    )
    .await;
    assert_accepted(&got);
    app.wait_refreshes(2).await;
    assert_eq!(app.refresh_status().await["revision"], tip.as_str());
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// W13–W16: pushes and the refresh they cause
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn w13_push_to_another_branch_is_2xx_ignored_without_running_git() {
    // W13, also with the real GitHub payload (a push creating refs/heads/master).
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    let head = repo.head();
    for git_ref in [
        "refs/heads/dev",
        "refs/heads/main2",
        "refs/heads/mai",
        "refs/heads/main/x",
        "refs/heads/MAIN",
        "refs/tags/main",
        "refs/remotes/origin/main",
        "main",
        "",
    ] {
        let got =
            answer(app.delivery("push", "application/json", push_payload(git_ref, &head))).await;
        assert_ignored(&got);
    }
    let real = real_payload("github-push-new-branch.json");
    assert_eq!(real["ref"], "refs/heads/master");
    let got = answer(app.delivery("push", "application/json", real.to_string().into_bytes())).await;
    assert_ignored(&got);
    assert!(
        got.1["reason"]
            .as_str()
            .unwrap()
            .contains("refs/heads/master"),
        "{}",
        got.1
    );
    app.assert_nothing_ran().await;
    app.stop().await;
}

#[tokio::test]
async fn w13_with_a_pinned_commit_every_push_is_ignored_without_running_git() {
    // W13: a fixed commit id has no ref a push could move.
    let (repo, commit) = one_stack_repo();
    let app = Watched::start(&repo, 0, |a| a.git_revision = commit.clone()).await;
    assert_eq!(app.refresh_status().await["refType"], "commit");
    repo.write("a/compose.yaml", compose("a:2"));
    let tip = repo.commit_and_push("two");
    for git_ref in [MAIN, "refs/tags/v1", &format!("refs/heads/{commit}")] {
        let got =
            answer(app.delivery("push", "application/json", push_payload(git_ref, &tip))).await;
        assert_ignored(&got);
    }
    app.assert_nothing_ran().await;
    assert_eq!(app.refresh_status().await["revision"], commit.as_str());
    app.stop().await;
}

#[tokio::test]
async fn w14_push_deleting_the_tracked_branch_warns_and_tears_nothing_down() {
    // W14: the branch is really gone on origin.
    let repo = TestRepo::new();
    repo.write("a/compose.yaml", compose("a:1"))
        .write("b/compose.yaml", compose("b:1"));
    let commit = repo.commit_and_push("two stacks");
    let app = Watched::start(&repo, 0, |_| {}).await;
    let before = app.stacks().await;
    assert_eq!(before.len(), 2);

    // Deleted on origin directly (a push cannot delete a bare repo's current branch).
    common::git(&repo.origin(), &["update-ref", "-d", "refs/heads/main"]);
    let mut payload: Value = serde_json::from_slice(&push_payload(MAIN, ZEROS)).unwrap();
    payload["before"] = json!(commit);
    payload["deleted"] = json!(true);
    payload["head_commit"] = Value::Null;
    let got =
        answer(app.delivery("push", "application/json", payload.to_string().into_bytes())).await;
    assert!((200..300).contains(&got.0), "{}", got.1);
    assert!(
        got.1["warning"]
            .as_str()
            .unwrap_or_default()
            .contains("deletes the tracked ref"),
        "{}",
        got.1
    );
    let status = app.refreshed(2, "failed").await;
    let reason = status["refreshError"].as_str().unwrap();
    assert!(reason.contains("does not exist"), "{reason}");
    assert_eq!(status["revision"], commit.as_str(), "last good state kept");
    assert_eq!(app.stacks().await, before, "nothing torn down");

    // The branch comes back: the next push refreshes normally.
    repo.write("a/compose.yaml", compose("a:2"));
    let tip = repo.commit_and_push("back");
    assert_accepted(&app.push_webhook(MAIN, &tip).await);
    let status = app.refreshed(3, "completed").await;
    assert_eq!(status["revision"], tip.as_str());
    app.stop().await;
}

#[tokio::test]
async fn w14_a_deletion_payload_for_a_branch_that_still_exists_keeps_the_tip() {
    // W14 (and W16): the payload is not trusted; origin still has the branch.
    let (repo, commit) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    let before = app.stacks().await;
    let mut payload: Value = serde_json::from_slice(&push_payload(MAIN, ZEROS)).unwrap();
    payload["deleted"] = json!(true);
    let got =
        answer(app.delivery("push", "application/json", payload.to_string().into_bytes())).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert!(got.1["warning"].is_string(), "{}", got.1);
    let status = app.refreshed(2, "completed").await;
    assert_eq!(status["revision"], commit.as_str());
    assert_eq!(app.stacks().await, before);
    app.stop().await;
}

#[tokio::test]
async fn w14_real_github_deletion_of_the_tracked_tag_keeps_the_last_good_state() {
    // W14 with the real GitHub "tag deleted" payload (refs/tags/simple-tag, form-encoded as the
    // GitHub UI sends by default).
    let (repo, commit) = one_stack_repo();
    repo.git(&["tag", "simple-tag"]);
    repo.git(&["push", "--quiet", "origin", "refs/tags/simple-tag"]);
    let app = Watched::start(&repo, 0, |a| a.git_revision = "simple-tag".into()).await;
    let status = app.refresh_status().await;
    assert_eq!(status["refType"], "tag", "{status}");
    let before = app.stacks().await;

    repo.git(&[
        "push",
        "--quiet",
        "origin",
        "--delete",
        "refs/tags/simple-tag",
    ]);
    let payload = real_payload("github-push-tag-deleted.json");
    assert_eq!(payload["ref"], "refs/tags/simple-tag");
    assert_eq!(payload["deleted"], true);
    let form = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let got = answer(app.delivery(
        "push",
        "application/x-www-form-urlencoded",
        form.into_bytes(),
    ))
    .await;
    assert!((200..300).contains(&got.0), "{}", got.1);
    assert!(got.1["warning"].is_string(), "{}", got.1);
    let status = app.refreshed(2, "failed").await;
    assert_refresh_error(&status, "does not exist");
    assert_eq!(status["revision"], commit.as_str());
    assert_eq!(app.stacks().await, before);
    app.stop().await;
}

#[tokio::test]
async fn w15_force_push_to_the_tracked_branch_deploys_the_new_tip() {
    // W15
    let (repo, first) = one_stack_repo();
    repo.write("a/compose.yaml", compose("a:2"));
    let second = repo.commit_and_push("second");
    let app = Watched::start(&repo, 0, |_| {}).await;
    assert_eq!(app.refresh_status().await["revision"], second.as_str());

    repo.reset_hard(&first);
    repo.write("a/compose.yaml", compose("a:rewritten"))
        .write("b/compose.yaml", compose("b:1"));
    let rewritten = repo.commit("rewritten history");
    repo.force_push();
    let mut payload: Value = serde_json::from_slice(&push_payload(MAIN, &rewritten)).unwrap();
    payload["before"] = json!(second);
    payload["forced"] = json!(true);
    let got =
        answer(app.delivery("push", "application/json", payload.to_string().into_bytes())).await;
    assert_accepted(&got);
    let status = app.refreshed(2, "completed").await;
    assert_eq!(status["revision"], rewritten.as_str());
    let stacks = app.stacks().await;
    assert_eq!(stacks.len(), 2);
    assert_eq!(
        stack(&stacks, "a")["contentHash"],
        repo.git(&["rev-parse", "HEAD:a"]).as_str()
    );
    app.stop().await;
}

#[tokio::test]
async fn w16_duplicate_and_out_of_order_deliveries_end_at_the_tip_of_origin() {
    // W16
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    repo.write("a/compose.yaml", compose("a:2"));
    let older = repo.commit_and_push("two");
    repo.write("a/compose.yaml", compose("a:3"));
    let tip = repo.commit_and_push("three");

    // The same delivery twice (a redelivery keeps its id and body).
    let body = push_payload(MAIN, &tip);
    for _ in 0..2 {
        assert_accepted(&answer(app.delivery("push", "application/json", body.clone())).await);
    }
    // The newer push, then the older one arriving late.
    for after in [&tip, &older] {
        let got = answer(
            app.hook()
                .header("x-github-event", "push")
                .header("x-github-delivery", format!("delivery-{after}"))
                .header(
                    "x-hub-signature-256",
                    sign(SECRET, &push_payload(MAIN, after)),
                )
                .body(push_payload(MAIN, after)),
        )
        .await;
        assert_accepted(&got);
    }
    let done = settle(&app, 2).await;
    assert!(done <= 5, "{done} refreshes for four deliveries");
    let status = app.refresh_status().await;
    assert_eq!(status["revision"], tip.as_str(), "{status}");
    assert_eq!(status["commitMessage"], "three");

    // A late replay of the older delivery after everything settled: still the tip.
    assert_accepted(&app.push_webhook(MAIN, &older).await);
    settle(&app, done + 1).await;
    assert_eq!(app.refresh_status().await["revision"], tip.as_str());
    let fetches = app
        .calls_since_startup()
        .iter()
        .filter(|c| *c == "fetch")
        .count();
    assert_eq!(
        fetches,
        1,
        "one new tip, one fetch: {:?}",
        app.calls_since_startup()
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// W17–W20
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn w17_type_confused_and_deeply_nested_payloads_are_400_naming_the_problem() {
    // W17
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_objects = format!("{}{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    let cases: Vec<(String, &str)> = vec![
        (
            r#"{"ref":5,"repository":{}}"#.into(),
            "invalid type: integer `5`",
        ),
        (
            r#"{"ref":null,"repository":{}}"#.into(),
            "invalid type: null",
        ),
        (
            r#"{"ref":["refs/heads/main"],"repository":{}}"#.into(),
            "expected a string",
        ),
        (
            r#"{"ref":{"$ne":""},"repository":{}}"#.into(),
            "expected a string",
        ),
        (
            r#"{"ref":"refs/heads/main","repository":"o/r"}"#.into(),
            "repository",
        ),
        (
            r#"{"ref":"refs/heads/main","repository":{"full_name":7}}"#.into(),
            "expected a string",
        ),
        (r#"{"repository":{}}"#.into(), "missing field `ref`"),
        (
            r#"{"ref":"refs/heads/main","repository":{},"after":1}"#.into(),
            "expected a string",
        ),
        (
            r#"{"ref":"refs/heads/main","repository":{},"deleted":"yes"}"#.into(),
            "expected a boolean",
        ),
        ("5".into(), "invalid type"),
        ("null".into(), "invalid type"),
        ("\"push\"".into(), "invalid type"),
        ("[]".into(), "invalid"),
        ("".into(), "invalid JSON"),
        ("{".into(), "invalid JSON"),
        (
            r#"{"ref":"refs/heads/main","repository":{}"#.into(),
            "invalid JSON",
        ),
        (deep.clone(), "invalid"),
        (deep_objects.clone(), "invalid"),
        (
            format!(r#"{{"ref":{deep},"repository":{{}}}}"#),
            "expected a string",
        ),
        (
            format!(r#"{{"ref":"refs/heads/main","repository":{deep}}}"#),
            "invalid type",
        ),
        ("[".repeat(1_000_000), "invalid"),
    ];
    for (body, needle) in &cases {
        let got = answer(app.delivery("push", "application/json", body.clone().into_bytes())).await;
        assert_error(&got, 400, needle);
        assert!(
            got.1.to_string().len() < 2_000,
            "the answer echoes the payload: {:.200}",
            got.1
        );
    }
    for body in ["[]", "null", "5", deep.as_str(), deep_objects.as_str()] {
        let got = answer(app.delivery("ping", "application/json", body)).await;
        assert_eq!(got.0, 400, "ping {body:.40}: {}", got.1);
    }
    // A huge ref is an untracked ref, and is not echoed whole.
    let huge = format!("refs/heads/{}", "x".repeat(1024 * 1024));
    let got = answer(app.delivery("push", "application/json", push_payload(&huge, ZEROS))).await;
    assert_ignored(&got);
    assert!(got.1.to_string().len() < 2_000, "{:.200}", got.1);
    // Control characters in the ref are not echoed raw.
    let got = answer(app.delivery(
        "push",
        "application/json",
        push_payload("refs/heads/\u{1b}[31mred\u{7}", ZEROS),
    ))
    .await;
    assert_ignored(&got);
    let reason = got.1["reason"].as_str().unwrap();
    assert!(
        !reason.contains('\u{1b}') && !reason.contains('\u{7}'),
        "{reason:?}"
    );
    // Still alive; nothing was refreshed.
    let (code, _) = app.get_json("/healthz").await;
    assert_eq!(code, 200);
    app.assert_nothing_ran().await;
    app.stop().await;
}

#[tokio::test]
async fn x09_a_signed_ref_of_a_mebibyte_with_newlines_and_escapes_is_logged_bounded_and_escaped() {
    // X9: a delivery with a valid signature may still carry a hostile ref. Its log line must
    // stay one bounded line: no forged second line, no escape sequence reaching a terminal.
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    let marker = "x09-forged-line";
    let hostile = format!(
        "refs/heads/{marker}\n2026-12-01T00:00:00Z  INFO forged: deployed\u{1b}[31m\u{7}{}",
        "y".repeat(1024 * 1024)
    );
    let got = answer(app.delivery("push", "application/json", push_payload(&hostile, ZEROS))).await;
    assert_ignored(&got);
    let logs = common::logs();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains(marker)).collect();
    assert!(!lines.is_empty(), "the ignored push is logged with its ref");
    for line in &lines {
        assert!(
            line.len() < 4 * 1024,
            "an unbounded log line: {} bytes",
            line.len()
        );
        assert!(
            !line.contains('\u{1b}') && !line.contains('\u{7}'),
            "a raw control character in {line:?}"
        );
        assert!(
            line.contains("\\n"),
            "the newline is shown escaped: {line:?}"
        );
    }
    // The forged text never starts a line of its own.
    assert!(
        !logs.lines().any(|l| l.starts_with("2026-12-01T00:00:00Z")),
        "a forged log line"
    );
    app.assert_nothing_ran().await;
    app.stop().await;
}

#[tokio::test]
async fn w18_get_and_put_on_the_webhook_path_are_405_with_a_json_error() {
    // W18
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |_| {}).await;
    let body = push_payload(MAIN, &repo.head());
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        let got = answer(
            app.client
                .request(method.clone(), app.url("/api/webhook"))
                .header("x-github-event", "push")
                .header("x-hub-signature-256", sign(SECRET, &body))
                .body(body.clone()),
        )
        .await;
        assert_eq!(got.0, 405, "{method}: {}", got.1);
        assert!(got.1["error"].is_string(), "{method}: {}", got.1);
    }
    let response = app
        .client
        .get(app.url("/api/webhook"))
        .send()
        .await
        .unwrap();
    let allow = response
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        allow.as_deref().is_some_and(|a| a.contains("POST")),
        "a 405 names the allowed methods (RFC 9110 §15.5.6): allow = {allow:?}"
    );
    app.assert_nothing_ran().await;
    app.stop().await;
}

#[tokio::test]
async fn w19_without_a_secret_the_webhook_is_disabled_and_accepts_nothing() {
    // W19
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |a| a.webhook_secret = None).await;
    let body = push_payload(MAIN, &repo.head());
    let unsigned = app
        .hook()
        .header("x-github-event", "push")
        .header("content-type", "application/json")
        .body(body.clone());
    let signed_with_test_secret = app.delivery("push", "application/json", body.clone());
    let signed_with_empty_secret = app
        .hook()
        .header("x-github-event", "push")
        .header("x-hub-signature-256", sign("", &body))
        .body(body.clone());
    let ping = app.delivery("ping", "application/json", br#"{"zen":"z"}"#.to_vec());
    for request in [
        unsigned,
        signed_with_test_secret,
        signed_with_empty_secret,
        ping,
    ] {
        let got = answer(request).await;
        assert!(!(200..300).contains(&got.0), "{} {}", got.0, got.1);
        assert_error(&got, got.0, "disabled");
    }
    app.assert_nothing_ran().await;
    app.stop().await;
}

// The app runs on a multi-threaded runtime in production; so does this burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w20_a_thousand_signed_pushes_run_at_most_one_refresh_plus_one_waiting() {
    // W20. Each fetch takes 2 s, so the burst meets a running refresh.
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 2, |_| {}).await;
    repo.write("a/compose.yaml", compose("a:2"));
    let tip = repo.commit_and_push("two");
    let body = push_payload(MAIN, &tip);
    let signature = sign(SECRET, &body);

    let started = Instant::now();
    let answers: Vec<(u16, Value, Duration)> = futures_util::stream::iter(0..1000)
        .map(|i| {
            let request = app
                .hook()
                .header("x-github-event", "push")
                .header("x-github-delivery", format!("burst-{i}"))
                .header("content-type", "application/json")
                .header("x-hub-signature-256", &signature)
                .body(body.clone());
            async move {
                let sent = Instant::now();
                let (code, answer) = answer(request).await;
                (code, answer, sent.elapsed())
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    let burst = started.elapsed();
    let slowest = answers.iter().map(|a| a.2).max().unwrap();
    let refreshing = answers
        .iter()
        .filter(|a| a.1["status"] == "refreshing")
        .count();
    println!(
        "W20: 1000 signed pushes in {burst:?} ({:.0}/s), slowest answer {slowest:?}, \
         {refreshing} answered refreshing",
        1000.0 / burst.as_secs_f64()
    );
    for (code, answer, _) in &answers {
        assert_accepted(&(*code, answer.clone()));
    }
    assert!(
        slowest < Duration::from_secs(5),
        "slowest answer {slowest:?}"
    );

    let completed = settle(&app, 2).await;
    let refreshes = completed - 1;
    let calls = app.calls_since_startup();
    println!(
        "W20: {refreshes} refreshes after the burst; git calls: {} ls-remote, {} fetch",
        calls.iter().filter(|c| *c == "ls-remote").count(),
        calls.iter().filter(|c| *c == "fetch").count()
    );
    assert!(refreshes <= 20, "{refreshes} refreshes for one burst");
    // Answers say "refreshing" while the worker has not yet picked up the previous request (the
    // requests coalesce into that one refresh), so only "at least one" is exact here.
    assert!(refreshing >= 1);
    assert_eq!(common::max_concurrent_fetches(&app.log), 1);
    assert_eq!(
        max_overlap(&app.log, &["ls-remote", "fetch"]),
        1,
        "one refresh at a time"
    );
    let status = app.refresh_status().await;
    assert_eq!(status["refreshStatus"], "completed", "{status}");
    assert_eq!(status["revision"], tip.as_str());
    assert_eq!(status["trigger"], "webhook");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// C6–C8: the API
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn c06_manual_refresh_while_one_runs_is_queued_and_fetches_never_overlap() {
    // C6
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 2, |_| {}).await;
    repo.write("a/compose.yaml", compose("a:2"));
    repo.commit_and_push("two");
    let (code, first) = app.post_json("/api/refresh", Value::Null).await;
    assert_eq!((code, first["status"].as_str()), (200, Some("refreshing")));

    // Wait until that refresh sits in its 2 s fetch, then push again and ask again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !app.calls_since_startup().iter().any(|c| c == "fetch") {
        assert!(Instant::now() < deadline, "{:?}", app.calls_since_startup());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    repo.write("a/compose.yaml", compose("a:3"));
    let tip = repo.commit_and_push("three");
    for _ in 0..3 {
        let (code, answer) = app.post_json("/api/refresh", Value::Null).await;
        assert_eq!(
            (code, answer["status"].as_str()),
            (200, Some("queued")),
            "{answer}"
        );
        assert!(answer["message"].is_string());
    }
    let status = app.refresh_status().await;
    assert_eq!(status["refreshStatus"], "refreshing", "{status}");
    assert_eq!(status["queuedTrigger"], "manual", "{status}");

    let completed = settle(&app, 3).await;
    assert_eq!(completed, 3, "start-up, the running one, one queued");
    let calls = app.calls_since_startup();
    assert_eq!(
        calls.iter().filter(|c| *c == "fetch").count(),
        2,
        "{calls:?}"
    );
    assert_eq!(common::max_concurrent_fetches(&app.log), 1);
    assert_eq!(max_overlap(&app.log, &["ls-remote", "fetch"]), 1);
    let status = app.refresh_status().await;
    assert_eq!(status["revision"], tip.as_str(), "{status}");
    assert!(status["queuedTrigger"].is_null(), "{status}");
    app.stop().await;
}

#[tokio::test]
async fn c07_api_token_guards_mutating_endpoints_but_not_the_webhook() {
    // C7
    const TOKEN: &str = "c7-api-t0ken-5f2e8a91";
    let (repo, _) = one_stack_repo();
    let app = Watched::start(&repo, 0, |a| a.api_token = Some(TOKEN.into())).await;
    let ack_body = json!({ "path": "a" });
    let wrong = [
        None,
        Some("Bearer wrong".to_owned()),
        Some("Bearer ".to_owned()),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_owned()),
    ];
    for path in ["/api/refresh", "/api/reconcile/ack"] {
        for authorization in &wrong {
            let mut request = app.client.post(app.url(path)).json(&ack_body);
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            let got = answer(request).await;
            assert_error(&got, 401, "token");
            assert!(!got.1.to_string().contains(TOKEN));
        }
        // Authentication before parsing: a bad body without a token is still 401.
        let got = answer(app.client.post(app.url(path)).body("not json")).await;
        assert_eq!(got.0, 401, "{path}: {}", got.1);
    }
    app.assert_nothing_ran().await;

    let bearer = format!("Bearer {TOKEN}");
    let got = answer(
        app.client
            .post(app.url("/api/reconcile/ack"))
            .header("authorization", &bearer)
            .json(&ack_body),
    )
    .await;
    println!("C7: ack with the right token → {} {}", got.0, got.1);
    assert_ne!(got.0, 401, "{}", got.1);
    let got = answer(
        app.client
            .post(app.url("/api/refresh"))
            .header("authorization", &bearer),
    )
    .await;
    assert_accepted(&got);
    app.wait_refreshes(2).await;

    // The webhook has its own authentication: no bearer needed.
    repo.write("a/compose.yaml", compose("a:2"));
    let tip = repo.commit_and_push("two");
    assert_accepted(&app.push_webhook(MAIN, &tip).await);
    app.wait_refreshes(3).await;
    assert_eq!(app.refresh_status().await["revision"], tip.as_str());
    // Reading needs no token.
    for path in ["/api/stacks", "/api/refresh-status", "/healthz"] {
        let (code, _) = app.get_json(path).await;
        assert_eq!(code, 200, "{path}");
    }
    assert!(!common::logs().contains(TOKEN), "the API token is logged");
    app.stop().await;
}

/// A bare repo with `n` stacks under `stacks/`, each with a compose file and an `.env`, built
/// with one `git fast-import`. Returns its `file://` URL.
fn many_stacks_origin(dir: &Path, n: usize) -> String {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let origin = dir.join("origin.git");
    common::git(
        dir,
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            "origin.git",
        ],
    );
    let mut stream = Vec::new();
    let blob = |stream: &mut Vec<u8>, path: &str, data: &str| {
        write!(
            stream,
            "M 100644 inline {path}\ndata {}\n{data}\n",
            data.len()
        )
        .unwrap();
    };
    let message = format!("{n} stacks");
    write!(
        stream,
        "commit refs/heads/main\ncommitter T <t@example.invalid> 1700000000 +0000\ndata {}\n{message}\n",
        message.len()
    )
    .unwrap();
    for i in 0..n {
        let name = format!("stacks/svc-{i:05}");
        let compose = format!(
            "services:\n  app:\n    image: registry.example.com/team/svc-{i}:1.{i}\n    environment:\n      DB_PASSWORD: compose-content-marker-{i}\n"
        );
        blob(&mut stream, &format!("{name}/compose.yaml"), &compose);
        blob(
            &mut stream,
            &format!("{name}/.env"),
            &format!("API_KEY=env-value-marker-{i}\n"),
        );
    }
    stream.extend_from_slice(b"done\n");
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet", "--done"])
        .current_dir(&origin)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&stream).unwrap();
    assert!(child.wait().unwrap().success(), "fast-import failed");
    format!("file://{}", origin.display())
}

#[tokio::test]
async fn c08_ten_thousand_stacks_are_listed_quickly_without_file_contents() {
    // C8
    let dir = tempfile::tempdir().unwrap();
    let built = Instant::now();
    let url = many_stacks_origin(dir.path(), 10_000);
    println!("C8: fixture repo built in {:?}", built.elapsed());
    let started = Instant::now();
    let app = TestApp::start(&url, |a| a.git_deploy_dir = "stacks".into()).await;
    app.wait_refreshes(1).await;
    println!(
        "C8: start-up refresh of 10,000 stacks in {:?}",
        started.elapsed()
    );
    let status = app.refresh_status().await;
    assert_eq!(status["refreshStatus"], "completed", "{status}");
    assert_eq!(status["stackCount"], 10_000);

    let mut timings = Vec::new();
    for _ in 0..3 {
        let asked = Instant::now();
        let response = app.client.get(app.url("/api/stacks")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        let took = asked.elapsed();
        timings.push(took);
        let stacks: Vec<Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(stacks.len(), 10_000);
        assert_eq!(stack(&stacks, "svc-04242")["composeFile"], "compose.yaml");
        for marker in [
            "registry.example.com",
            "compose-content-marker",
            "env-value-marker",
            "API_KEY",
            "DB_PASSWORD",
            "services:",
        ] {
            assert!(!text.contains(marker), "{marker:?} in /api/stacks");
        }
        println!("C8: GET /api/stacks: {} bytes in {took:?}", text.len());
    }
    assert!(
        timings.iter().all(|t| *t < Duration::from_secs(5)),
        "GET /api/stacks took {timings:?} (target: under a second)"
    );
    app.stop().await;
}
