//! Private repositories, end to end: an HTTP token against a real smart-HTTP git server
//! (`git http-backend` behind a small CGI bridge) and SSH keys against a real `sshd`
//! (TESTPLAN C2, C5, F4, X1). The token must never appear in argv, the mirror's config, logs or
//! the API, nor reach any host but the configured one; SSH must never prompt and must refuse
//! unknown and changed host keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use common::{TestApp, TestRepo, assert_refresh_error, compose};
use tokio::io::AsyncWriteExt;

const TOKEN: &str = "ghp_Th1sIsTheT0kenValue";

/// A smart-HTTP git server: every request must carry `expected_auth` (unless it is open),
/// then goes to `git http-backend` as CGI. Records every Authorization header it sees, and
/// every header of every request; once told to, answers every request with a redirect.
struct GitHttpServer {
    addr: SocketAddr,
    seen_auth: Arc<Mutex<Vec<String>>>,
    /// Each request's headers, one `name: value` line each.
    seen_headers: Arc<Mutex<Vec<String>>>,
    redirect_to: Arc<Mutex<Option<String>>>,
}

#[derive(Clone)]
struct ServerState {
    root: PathBuf,
    /// `None`: any request is served, with or without credentials.
    expected_auth: Option<String>,
    seen_auth: Arc<Mutex<Vec<String>>>,
    seen_headers: Arc<Mutex<Vec<String>>>,
    redirect_to: Arc<Mutex<Option<String>>>,
}

impl GitHttpServer {
    async fn start(root: &Path, expected_auth: String) -> Self {
        Self::launch(root, Some(expected_auth)).await
    }

    /// A server that asks for no credentials (and records any it is sent).
    async fn start_open(root: &Path) -> Self {
        Self::launch(root, None).await
    }

    async fn launch(root: &Path, expected_auth: Option<String>) -> Self {
        let seen_auth = Arc::new(Mutex::new(Vec::new()));
        let seen_headers = Arc::new(Mutex::new(Vec::new()));
        let redirect_to = Arc::new(Mutex::new(None));
        let state = ServerState {
            root: root.to_owned(),
            expected_auth,
            seen_auth: seen_auth.clone(),
            seen_headers: seen_headers.clone(),
            redirect_to: redirect_to.clone(),
        };
        let router = axum::Router::new().fallback(cgi).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            addr,
            seen_auth,
            seen_headers,
            redirect_to,
        }
    }

    /// From now on every request is answered `302 Found` to the same path and query on
    /// `base` (`http://host:port`).
    fn redirect_everything_to(&self, base: &str) {
        *self.redirect_to.lock().unwrap() = Some(base.to_owned());
    }
}

async fn cgi(State(state): State<ServerState>, request: Request) -> Response {
    // Slow enough that the client's processes can be sampled from /proc while they run.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (parts, body) = request.into_parts();
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {}", String::from_utf8_lossy(value.as_bytes())))
        .collect::<Vec<_>>()
        .join("\n");
    state.seen_headers.lock().unwrap().push(headers);
    let redirect = state.redirect_to.lock().unwrap().clone();
    if let Some(base) = redirect {
        let target = match parts.uri.query() {
            Some(query) => format!("{base}{}?{query}", parts.uri.path()),
            None => format!("{base}{}", parts.uri.path()),
        };
        return Response::builder()
            .status(StatusCode::FOUND)
            .header("location", target)
            .body(Body::empty())
            .unwrap();
    }
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    state.seen_auth.lock().unwrap().push(auth.clone());
    if state
        .expected_auth
        .as_ref()
        .is_some_and(|expected| auth != *expected)
    {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("www-authenticate", "Basic realm=\"git\"")
            .body(Body::empty())
            .unwrap();
    }
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("GIT_PROJECT_ROOT", &state.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "deploy")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let out = child.wait_with_output().await.unwrap();
    writer.await.unwrap();
    // CGI output: headers, a blank line, the body.
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| {
            out.stdout
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, 2))
        })
        .unwrap();
    let (head, rest) = (&out.stdout[..split.0], &out.stdout[split.0 + split.1..]);
    let mut response = Response::builder().status(StatusCode::OK);
    for line in String::from_utf8_lossy(head).lines() {
        let (name, value) = line.split_once(':').unwrap();
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code: u16 = value.split(' ').next().unwrap().parse().unwrap();
            response = response.status(code);
        } else {
            response = response.header(name, HeaderValue::from_str(value).unwrap());
        }
    }
    response.body(Body::from(rest.to_vec())).unwrap()
}

/// A git wrapper that records its full argv, one line per run.
fn argv_recorder(dir: &Path) -> (PathBuf, PathBuf) {
    common::wrappers::recording(dir, "git-argv", "argv.log", &which::which("git").unwrap())
}

/// Scans /proc/*/cmdline until `stop`: returns how many processes mentioning the server's
/// port were seen, and every command line that held the token (plain or base64).
fn sample_cmdlines(stop: &std::sync::atomic::AtomicBool, port: &str) -> (usize, Vec<String>) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("deploy:{TOKEN}"));
    let mut seen = std::collections::BTreeSet::new();
    let mut leaked = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmdline.contains(port) {
                seen.insert(entry.file_name());
            }
            if cmdline.contains(TOKEN) || cmdline.contains(&basic) {
                leaked.push(cmdline);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (seen.len(), leaked)
}

/// Waits for the first refresh, which must fail within `limit`; returns the refresh status.
async fn first_refresh_fails_within(
    app: &TestApp,
    limit: Duration,
    case: &str,
) -> serde_json::Value {
    let started = Instant::now();
    app.wait_refreshes(1).await;
    assert!(
        started.elapsed() < limit,
        "{case}: took {:?}",
        started.elapsed()
    );
    let status = app.refresh_status().await;
    assert_eq!(status["refreshStatus"], "failed", "{case}: {status}");
    status
}

fn assert_token_absent(app: &TestApp, argv_log: &Path, api: &[serde_json::Value]) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("deploy:{TOKEN}"));
    let argv = std::fs::read_to_string(argv_log).unwrap();
    assert!(!argv.is_empty());
    let config = std::fs::read_to_string(app.data.path().join("data/mirror.git/config")).unwrap();
    let logs = common::logs();
    for (place, text) in [
        ("argv", argv.as_str()),
        ("mirror config", &config),
        ("logs", &logs),
    ] {
        assert!(!text.contains(TOKEN), "token in {place}");
        assert!(!text.contains(&basic), "encoded token in {place}");
    }
    for value in api {
        let text = value.to_string();
        assert!(
            !text.contains(TOKEN) && !text.contains(&basic),
            "token in the API: {text}"
        );
    }
}

#[tokio::test]
async fn c02_a_token_in_the_url_works_and_never_leaks() {
    let (repo, commit) = TestRepo::with_stack("web", "web:1", "private");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("deploy:{TOKEN}"));
    let server =
        GitHttpServer::start(repo.origin().parent().unwrap(), format!("Basic {basic}")).await;
    let tools = tempfile::tempdir().unwrap();
    let (git, argv_log) = argv_recorder(tools.path());
    let url = format!("http://deploy:{TOKEN}@{}/origin.git", server.addr);

    // Sample every process's argv while the refresh runs (git, git-remote-http, …).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let stop = stop.clone();
        let port = server.addr.port().to_string();
        move || sample_cmdlines(&stop, &port)
    });
    let app = TestApp::start(&url, |a| a.git_bin = Some(git)).await;
    app.wait_refreshes(1).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (seen, leaked) = sampler.join().unwrap();
    assert!(
        seen > 0,
        "the sampler never saw a git process talking to the server"
    );
    assert!(
        leaked.is_empty(),
        "the token was in a child's argv: {leaked:?}"
    );
    let status = app.refresh_status().await;
    assert_eq!(status["refreshStatus"], "completed", "{status}");
    assert_eq!(status["revision"], commit.as_str());
    assert!(
        server
            .seen_auth
            .lock()
            .unwrap()
            .iter()
            .any(|a| *a == format!("Basic {basic}"))
    );
    let stacks = app.get_json("/api/stacks").await.1;
    let banner = serde_json::Value::String(app.get_text("/").await);
    assert_token_absent(&app, &argv_log, &[status, stacks, banner]);
    app.stop().await;
}

#[tokio::test]
async fn a_percent_encoded_password_in_the_url_reaches_the_server_decoded() {
    let (repo, commit) = TestRepo::with_stack("web", "web:1", "private");
    let password = "p@ss:w/rd%-T0ken";
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("deploy:{password}"));
    let server =
        GitHttpServer::start(repo.origin().parent().unwrap(), format!("Basic {basic}")).await;
    let url = format!(
        "http://deploy:p%40ss%3Aw%2Frd%25-T0ken@{}/origin.git",
        server.addr
    );
    let app = TestApp::start(&url, |_| {}).await;
    let status = app.refreshed(1, "completed").await;
    assert_eq!(status["revision"], commit.as_str());
    app.stop().await;
}

#[tokio::test]
async fn f04_a_wrong_token_fails_fast_without_a_prompt_and_without_leaking() {
    let (repo, _) = TestRepo::with_stack("web", "web:1", "private");
    let server =
        GitHttpServer::start(repo.origin().parent().unwrap(), "Basic bm9wZTpub3Bl".into()).await;
    let tools = tempfile::tempdir().unwrap();
    let (git, argv_log) = argv_recorder(tools.path());
    let app = TestApp::start(&format!("http://{}/origin.git", server.addr), |a| {
        a.git_bin = Some(git);
        a.git_access_token = Some(TOKEN.into());
    })
    .await;
    let status = first_refresh_fails_within(&app, Duration::from_secs(10), "F4").await;
    let reason = status["refreshError"].as_str().unwrap();
    // git got a 401 for the header it sent; it then refuses to prompt for other credentials.
    assert!(
        reason.contains("Authentication failed") || reason.contains("terminal prompts disabled"),
        "{reason}"
    );
    assert!(!server.seen_auth.lock().unwrap().is_empty());
    assert_token_absent(&app, &argv_log, &[status]);
    app.stop().await;
}

/// Every distinct git on this machine (the distribution's and a newer one on PATH, when both
/// are installed), so that what holds is checked with each version an image may ship.
fn git_binaries() -> Vec<(PathBuf, String)> {
    let mut found: Vec<(PathBuf, String)> = Vec::new();
    let candidates = [which::which("git").ok(), Some("/usr/bin/git".into())];
    for bin in candidates.into_iter().flatten().filter(|p| p.exists()) {
        let out = std::process::Command::new(&bin)
            .arg("--version")
            .output()
            .unwrap();
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !found.iter().any(|(_, v)| *v == version) {
            found.push((bin, version));
        }
    }
    found
}

#[tokio::test]
async fn x01_a_redirect_to_another_host_never_carries_the_token_and_keeps_the_last_good_state() {
    let (repo, _) = TestRepo::with_stack("web", "web:1", "private");
    let root = repo.origin().parent().unwrap().to_owned();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{TOKEN}"));
    for (git, version) in git_binaries() {
        let origin = GitHttpServer::start(&root, format!("Basic {basic}")).await;
        // Another host serving the same repository, asking for nothing: what a redirect
        // would lure git into talking to.
        let elsewhere = GitHttpServer::start_open(&root).await;
        let app = TestApp::start(&format!("http://{}/origin.git", origin.addr), |a| {
            a.git_bin = Some(git.clone());
            a.git_access_token = Some(TOKEN.into());
        })
        .await;
        app.wait_refreshes(1).await;
        let status = app.refresh_status().await;
        assert_eq!(status["refreshStatus"], "completed", "{version}: {status}");
        let before = app.snapshot_fingerprint().await;

        origin.redirect_everything_to(&format!("http://{}", elsewhere.addr));
        repo.write("web/compose.yaml", compose("web:2"));
        repo.commit_and_push("pushed while the origin redirects");
        app.post_json("/api/refresh", serde_json::Value::Null).await;
        app.wait_refreshes(2).await;

        let token_sent_home = origin
            .seen_headers
            .lock()
            .unwrap()
            .iter()
            .any(|h| h.contains(&basic));
        assert!(token_sent_home, "{version}: the origin never saw the token");
        for headers in elsewhere.seen_headers.lock().unwrap().iter() {
            assert!(
                !headers.contains(TOKEN) && !headers.contains(&basic),
                "{version}: the token reached the other host:\n{headers}"
            );
        }
        let status = app.refresh_status().await;
        assert_eq!(status["refreshStatus"], "failed", "{version}: {status}");
        let reason = status["refreshError"].as_str().unwrap();
        assert!(reason.contains("redirect"), "{version}: {reason}");
        app.assert_snapshot_unchanged(&before).await;
        app.stop().await;
        repo.reset_hard("HEAD~1");
        repo.force_push();
    }
}

/// A real sshd on 127.0.0.1 serving git over SSH for the current user.
struct Sshd {
    port: u16,
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Sshd {
    /// `None` (with a loud message) when no sshd is installed, except under CI=true.
    fn start() -> Option<Self> {
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let Some(sshd) = sshd else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but sshd is not installed (apt-get install openssh-server)");
            }
            eprintln!(
                "\n*** SKIPPING SSH test: no sshd installed (apt-get install openssh-server) ***\n"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let user = std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap();
        let user = String::from_utf8(user.stdout).unwrap().trim().to_owned();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {dir}/host_key\n\
                 AuthorizedKeysFile {dir}/authorized_keys\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
                 PidFile {dir}/sshd.pid\nAllowUsers {user}\n",
                dir = d.display()
            ),
        )
        .unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = launch_sshd(Path::new(sshd), d, port);
        Some(Self { port, dir, child })
    }

    fn user(&self) -> String {
        let out = std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn url(&self, repo: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user(),
            self.port,
            repo.display()
        )
    }

    /// A known_hosts line pinning this server's host key.
    fn known_hosts(&self) -> String {
        let key = std::fs::read_to_string(self.dir.path().join("host_key.pub")).unwrap();
        let mut fields = key.split_whitespace();
        format!(
            "[127.0.0.1]:{} {} {}\n",
            self.port,
            fields.next().unwrap(),
            fields.next().unwrap()
        )
    }

    fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }
}

impl Sshd {
    /// The server's host key changes (a reinstalled or impostor host) on the same address.
    fn restart_with_a_new_host_key(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let d = self.dir.path();
        std::fs::remove_file(d.join("host_key")).unwrap();
        std::fs::remove_file(d.join("host_key.pub")).unwrap();
        keygen(&d.join("host_key"));
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap();
        self.child = launch_sshd(Path::new(sshd), d, self.port);
    }
}

impl Sshd {
    /// The app reading `repo` over this server with the client key, this server's key pinned
    /// in a known_hosts file written in `dir`.
    async fn start_app(&self, repo: &TestRepo, dir: &Path) -> TestApp {
        let known = write(dir, "known_hosts", &self.known_hosts());
        TestApp::start(&self.url(&repo.origin()), |a| {
            a.git_ssh_key_file = Some(self.client_key());
            a.git_ssh_known_hosts_file = Some(known);
        })
        .await
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts sshd with the config in `dir` and waits until it accepts connections on `port`.
fn launch_sshd(sshd: &Path, dir: &Path, port: u16) -> std::process::Child {
    let child = std::process::Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn keygen(path: &Path) {
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[tokio::test]
async fn c05_ssh_with_a_pinned_host_key_and_a_deploy_key_works() {
    let Some(sshd) = Sshd::start() else { return };
    let (repo, commit) = TestRepo::with_stack("web", "web:1", "over ssh");
    let files = tempfile::tempdir().unwrap();
    let app = sshd.start_app(&repo, files.path()).await;
    let status = app.refreshed(1, "completed").await;
    assert_eq!(status["revision"], commit.as_str());
    app.stop().await;
}

#[tokio::test]
async fn c05_an_unknown_or_changed_host_key_fails_without_a_prompt() {
    let Some(sshd) = Sshd::start() else { return };
    let (repo, _) = TestRepo::with_stack("web", "web:1", "over ssh");
    let files = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    keygen(&other.path().join("k"));
    let other_key = std::fs::read_to_string(other.path().join("k.pub")).unwrap();
    let mut fields = other_key.split_whitespace();
    let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
    let cases = [
        ("unknown", format!("[127.0.0.1]:1 {kind} {key}\n"), "false"),
        (
            "changed",
            format!("[127.0.0.1]:{} {kind} {key}\n", sshd.port),
            "false",
        ),
        // Trust on first use never accepts a key that differs from a pinned one.
        (
            "changed, accept-new",
            format!("[127.0.0.1]:{} {kind} {key}\n", sshd.port),
            "true",
        ),
    ];
    for (case, known_hosts, accept_new) in cases {
        let known = write(files.path(), "known_hosts", &known_hosts);
        let app = TestApp::start(&sshd.url(&repo.origin()), |a| {
            a.git_ssh_key_file = Some(sshd.client_key());
            a.git_ssh_known_hosts_file = Some(known);
            a.git_ssh_accept_new_host_keys = accept_new.into();
        })
        .await;
        let status = first_refresh_fails_within(&app, Duration::from_secs(15), case).await;
        let reason = status["refreshError"].as_str().unwrap();
        assert!(
            reason.contains("Host key verification failed"),
            "{case}: {reason}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn c05_trust_on_first_use_records_the_key_and_f04_a_wrong_client_key_is_refused() {
    let Some(sshd) = Sshd::start() else { return };
    let (repo, _) = TestRepo::with_stack("web", "web:1", "over ssh");
    let app = TestApp::start(&sshd.url(&repo.origin()), |a| {
        a.git_ssh_key_file = Some(sshd.client_key());
        a.git_ssh_accept_new_host_keys = "true".into();
    })
    .await;
    app.wait_refreshes(1).await;
    assert_eq!(app.refresh_status().await["refreshStatus"], "completed");
    let learned = std::fs::read_to_string(app.data.path().join("data/ssh/known_hosts")).unwrap();
    assert!(
        learned.contains(&format!("[127.0.0.1]:{}", sshd.port)),
        "{learned}"
    );
    app.stop().await;

    let files = tempfile::tempdir().unwrap();
    keygen(&files.path().join("stranger"));
    let known = write(files.path(), "known_hosts", &sshd.known_hosts());
    let app = TestApp::start(&sshd.url(&repo.origin()), |a| {
        a.git_ssh_key_file = Some(files.path().join("stranger"));
        a.git_ssh_known_hosts_file = Some(known);
    })
    .await;
    let status = app.refreshed(1, "failed").await;
    assert_refresh_error(&status, "Permission denied");
    app.stop().await;
}

#[tokio::test]
async fn c05_a_host_key_that_changes_after_a_good_refresh_fails_and_keeps_the_last_good_snapshot() {
    let Some(mut sshd) = Sshd::start() else {
        return;
    };
    let (repo, _) = TestRepo::with_stack("web", "web:1", "over ssh");
    let files = tempfile::tempdir().unwrap();
    let app = sshd.start_app(&repo, files.path()).await;
    app.wait_refreshes(1).await;
    assert_eq!(app.refresh_status().await["refreshStatus"], "completed");
    let before = app.snapshot_fingerprint().await;

    sshd.restart_with_a_new_host_key();
    repo.write("web/compose.yaml", compose("web:2"));
    repo.commit_and_push("pushed while the host key changed");
    app.post_json("/api/refresh", serde_json::Value::Null).await;
    let status = app.refreshed(2, "failed").await;
    let reason = status["refreshError"].as_str().unwrap();
    assert!(
        reason.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || reason.contains("Host key verification failed"),
        "{reason}"
    );
    app.assert_snapshot_unchanged(&before).await;
    app.stop().await;
}
