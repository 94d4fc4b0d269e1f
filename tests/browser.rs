//! The dashboard in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven through WebDriver (fantoccini) against the real app.
//!
//! Each test starts its own `chromedriver` on a free 127.0.0.1 port, in its own process group,
//! and kills that group (chromedriver and every Chromium process) when it ends, failed or not.
//! Without Chromium or chromedriver the tests skip loudly; under `CI=true` they fail.
//!
//! Synchronisation is by explicit waits on what the page shows (a script polled until its
//! answer holds, with a deadline), never by fixed sleeps. Screenshots go to
//! `target/browser-artifacts/`, and a failing test leaves a screenshot and the page's HTML there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::docker::{self, TEST_IMAGE};
use common::{TestApp, TestRepo, compose};
use docker_cd::desired_state::Health;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long the page may take to show something the server already knows.
const WAIT: Duration = Duration::from_secs(30);
/// How long a deployment through compose may take (compose 1.29 is slow on two cores).
const DEPLOY_WAIT: Duration = Duration::from_secs(120);
const TOKEN: &str = "dashboard-test-token-0d5e";

// ---------------------------------------------------------------------------------------------
// Harness

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The browser and its driver.
struct Tools {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

/// The tools, or `None` (with a loud message) when they are missing. Panics under `CI=true`.
fn require_browser() -> Option<Tools> {
    let chromedriver = which::which("chromedriver").ok();
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| which::which(name).ok());
    match (chromium, chromedriver) {
        (Some(chromium), Some(chromedriver)) => Some(Tools {
            chromium,
            chromedriver,
        }),
        (chromium, chromedriver) => {
            let missing = [
                chromium.is_none().then_some("chromium"),
                chromedriver.is_none().then_some("chromedriver"),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" and ");
            if in_ci() {
                panic!(
                    "CI=true but {missing} is missing: apt-get install chromium chromium-driver"
                );
            }
            eprintln!(
                "\n*** SKIPPING browser test: {missing} not found (apt-get install chromium chromium-driver) ***\n"
            );
            None
        }
    }
}

/// Where screenshots and failure dumps go: `<target dir>/browser-artifacts`.
fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `chromedriver` process group; killed, with every browser it started, on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    async fn start(tools: &Tools, log: &Path) -> Self {
        use std::os::unix::process::CommandExt;
        for _attempt in 0..3 {
            // A free port: bound, read, released. Another process could take it in between;
            // then chromedriver exits and the next attempt picks another.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log_file = std::fs::File::create(log).unwrap();
            let child = Command::new(&tools.chromedriver)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .process_group(0)
                .spawn()
                .expect("chromedriver starts");
            let mut driver = Self { child, port };
            if driver.wait_ready().await {
                return driver;
            }
        }
        panic!(
            "chromedriver did not become ready; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Polls `/status` until the driver is ready; false when it exited or never answered.
    async fn wait_ready(&mut self) -> bool {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if let Ok(response) = client.get(format!("{}/status", self.url())).send().await {
                if let Ok(status) = response.json::<Value>().await {
                    if status["value"]["ready"] == true {
                        return true;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium processes it started.
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A headless Chromium session.
struct Browser {
    client: Client,
    /// Declared after `client` so it is dropped (killed) after the session is gone.
    driver: Driver,
    _profile: tempfile::TempDir,
    name: String,
}

impl Browser {
    async fn start(tools: &Tools, name: &str) -> Self {
        let artifacts = artifacts_dir();
        let driver =
            Driver::start(tools, &artifacts.join(format!("{name}-chromedriver.log"))).await;
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": tools.chromium,
                "args": [
                    "--headless=new",
                    // Root in a container has no user namespace for the sandbox.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-extensions",
                    // No crash handler: it would run outside the driver's process group.
                    "--disable-crash-reporter",
                    "--disable-breakpad",
                    "--hide-scrollbars",
                    "--window-size=1280,960",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url())
            .await
            .expect("a WebDriver session with headless Chromium");
        Self {
            client,
            driver,
            _profile: profile,
            name: name.to_owned(),
        }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("page loads");
    }

    async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` until `accept` holds on its answer; fails after `timeout` with the last
    /// answer. Errors (a page being replaced) count as "not yet".
    async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        script: &str,
        args: Vec<Value>,
        accept: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self.client.execute(script, args.clone()).await;
            if let Ok(value) = &answer {
                if accept(value) {
                    return value.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not reached within {timeout:?}; last answer: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the visible cards of the grid are exactly `paths`, in this order.
    async fn wait_cards(&self, what: &str, paths: &[&str]) {
        let want = json!(paths);
        self.wait_for(WAIT, what, VISIBLE_CARDS, vec![], |v| *v == want)
            .await;
    }

    /// Waits for one card to satisfy `accept` (its fields as [`CARD`] reports them).
    async fn wait_card(
        &self,
        timeout: Duration,
        path: &str,
        what: &str,
        accept: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_for(timeout, what, CARD, vec![json!(path)], |v| {
            !v.is_null() && accept(v)
        })
        .await
    }

    /// Clicks `css`. The stack page replaces its detail live (an SSE change reloads it), so an
    /// element found a moment ago may be gone by the click: found again, a few times.
    async fn click(&self, css: &str) {
        for attempt in 1.. {
            let element = self
                .client
                .wait()
                .at_most(WAIT)
                .for_element(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no element {css}: {e}"));
            match element.click().await {
                Ok(()) => return,
                Err(e) if attempt < 5 && e.to_string().contains("stale element") => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot click {css}: {e}"),
            }
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into {css}: {e}"));
    }

    async fn screenshot(&self, file: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = artifacts_dir().join(file);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Waits until the grid the script keeps up to date from the event stream equals the grid
    /// the server renders now for the same URL: every card's status, visibility, and each
    /// field's text, visibility and attributes. `fillCard` (JS) and `CardView` (Rust) are twins;
    /// this is where a difference between them shows.
    async fn assert_grid_matches_server(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let views = self
                .client
                .execute_async(GRID_VS_SERVER, vec![])
                .await
                .expect("the grid comparison runs");
            assert!(
                views[0].as_array().is_some_and(|a| !a.is_empty()),
                "{views}"
            );
            if views[0] == views[1] {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the live grid differs from the server's:\nserver: {:#}\nlive:   {:#}",
                views[0],
                views[1]
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Emulates `prefers-color-scheme` through the DevTools protocol (chromedriver's
    /// `goog/cdp/execute`).
    async fn prefer_color_scheme(&self, scheme: &str) {
        let session = self.client.session_id().await.unwrap().unwrap();
        let response = reqwest::Client::new()
            .post(format!(
                "{}/session/{session}/goog/cdp/execute",
                self.driver.url()
            ))
            .json(&json!({
                "cmd": "Emulation.setEmulatedMedia",
                "params": { "features": [{ "name": "prefers-color-scheme", "value": scheme }] },
            }))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{:?}",
            response.text().await
        );
    }

    /// Ends the session. After a failed test body it first saves a screenshot and the page's
    /// HTML. (The driver guard kills whatever remains.)
    async fn close(self, outcome: &std::thread::Result<()>) {
        if outcome.is_err() {
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                if let Ok(png) = self.client.screenshot().await {
                    let _ = std::fs::write(
                        artifacts_dir().join(format!("{}-failure.png", self.name)),
                        png,
                    );
                }
                if let Ok(html) = self.client.source().await {
                    let _ = std::fs::write(
                        artifacts_dir().join(format!("{}-failure.html", self.name)),
                        html,
                    );
                }
            })
            .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
    }
}

/// The paths of the grid's visible cards, in page order.
const VISIBLE_CARDS: &str = "return [...document.querySelectorAll('#grid .card')]
    .filter(c => !c.hidden).map(c => c.dataset.path);";

/// `[server's cards, live cards]`, each card as the comparable facts of its markup.
const GRID_VS_SERVER: &str = "const done = arguments[arguments.length - 1];
    const view = root => [...root.querySelectorAll('#grid .card')].map(c => ({
        path: c.dataset.path, status: c.dataset.status, health: c.dataset.health,
        hidden: c.hidden,
        ack: [c.querySelector('[data-action=ack]').hidden,
              c.querySelector('[data-action=ack]').dataset.path],
        fields: [...c.querySelectorAll('[data-field]')].map(f => [
            f.dataset.field, f.hidden, f.textContent.replace(/\\s+/g, ' ').trim(),
            f.getAttribute('href'), f.getAttribute('title'), f.getAttribute('datetime'),
            f.dataset.status || null, f.dataset.health || null,
            f.value === undefined ? null : [f.value, f.max]]),
    }));
    fetch(location.pathname + location.search, { headers: { Accept: 'text/html' } })
        .then(r => r.text())
        .then(html => done([view(new DOMParser().parseFromString(html, 'text/html')),
                            view(document)]))
        .catch(e => done(String(e)));";

/// One card's fields, or null.
const CARD: &str = "const c = [...document.querySelectorAll('#grid .card')]
        .find(c => c.dataset.path === arguments[0]);
    if (!c) return null;
    const f = n => c.querySelector(`[data-field='${n}']`);
    const shown = n => f(n).hidden ? null : f(n).textContent;
    return {
        status: c.dataset.status, hidden: c.hidden, badge: f('status').textContent,
        containers: f('containers').textContent, revision: f('revision').textContent,
        message: f('commit-message').textContent, error: shown('error'), drift: shown('drift'),
        href: f('path').getAttribute('href'),
        ack: !c.querySelector('[data-action=ack]').hidden,
    };";

/// The connection banner.
const BANNER: &str = "const b = document.getElementById('connection');
    return { state: b.dataset.state, text: b.textContent, hidden: b.hidden,
             stale: document.body.classList.contains('stale') };";

/// The header's refresh status.
const REFRESH: &str = "const f = n => document.querySelector(`[data-refresh-field='${n}']`);
    return { status: f('status').textContent, revision: f('revision').textContent,
             message: f('commit-message').textContent,
             bold: document.querySelectorAll('header b').length };";

/// The notice line under the header.
const NOTICE: &str = "const n = document.getElementById('notice');
    return n.hidden ? null : { kind: n.dataset.kind, text: n.textContent };";

/// The stack page: status, acknowledge button, containers (service, state), history.
const STACK_PAGE: &str = "const d = document.getElementById('stack-detail');
    if (!d) return null;
    return {
        status: d.dataset.status,
        ack: !d.querySelector('[data-action=ack]').hidden,
        containers: [...d.querySelectorAll('#containers tbody tr')]
            .map(r => [r.cells[1].textContent, r.cells[2].textContent]),
        history: [...d.querySelectorAll('#history tbody tr')]
            .map(r => r.querySelector('[data-field=trigger]').textContent + ':'
                 + r.querySelector('[data-field=outcome]').textContent),
    };";

/// The token dialog.
const DIALOG: &str = "const d = document.getElementById('token-dialog');
    const e = document.getElementById('token-error');
    return { open: d.open, error: e.hidden ? null : e.textContent };";

/// A TCP proxy in front of the app whose connections the test can cut: the browser's event
/// stream really drops, and reconnecting fails until [`CutProxy::restore`].
struct CutProxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cut_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let mut cut = cut_rx.clone();
                if *cut.borrow() {
                    continue; // closed at once: the browser sees a network error
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Self { addr, cut, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Closes every connection and refuses new ones.
    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut.send_replace(true);
        self.task.abort();
    }
}

fn app_addr(app: &TestApp) -> SocketAddr {
    app.app().addr
}

// ---------------------------------------------------------------------------------------------
// Tests without Docker: reconciling off, so every stack is `missing`.

#[tokio::test]
async fn the_grid_follows_webhook_pushes_live_filters_and_survives_a_dropped_stream() {
    let Some(tools) = require_browser() else {
        return;
    };
    let repo = TestRepo::new();
    repo.copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo"),
        ".",
    );
    repo.copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/broken/Tricky Name"),
        "stacks/Tricky Name",
    );
    let first = repo.commit_and_push("Demo stacks <b>v1</b>\n\nwith a body line");
    let app = TestApp::start(&repo.url(), |a| a.git_deploy_dir = "stacks".into()).await;
    app.wait_refreshes(1).await;
    let proxy = CutProxy::start(app_addr(&app)).await;

    // Server-side filtering, without a browser: hidden cards for a query string.
    let html = app
        .client
        .get(app.url("/?status=missing&q=CACH"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let csp = html.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = html.text().await.unwrap();
    // A card's opening tag, after its path: its status, its health, whether it is hidden.
    let card_tag = |path: &str| {
        html.split(&format!("<article class=\"card\" data-path=\"{path}\""))
            .nth(1)
            .and_then(|t| t.split('>').next())
            .unwrap_or_else(|| panic!("no card {path}"))
            .to_owned()
    };
    let cache = card_tag("cache");
    assert!(
        cache.starts_with(" data-status=\"missing\" data-health=\"") && !cache.ends_with(" hidden"),
        "cache is shown: {cache}"
    );
    let web = card_tag("web");
    assert!(web.ends_with(" hidden"), "web is hidden: {web}");

    // An unknown stack's page is a 404 page; the assets are revalidated by their ETag.
    let missing = app
        .client
        .get(app.url("/stacks/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(
        missing
            .text()
            .await
            .unwrap()
            .contains("There is no stack <code>nope</code>")
    );
    let script = app
        .client
        .get(app.url("/assets/dashboard.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let etag = script.headers()["etag"].to_str().unwrap().to_owned();
    let again = app
        .client
        .get(app.url("/assets/dashboard.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let (status, _) = app.get_json("/assets/../Cargo.toml").await;
    assert_eq!(status, 404);

    let browser = Browser::start(&tools, "grid").await;
    let b = &browser;
    let outcome = common::catch(async {
        b.goto(&proxy.url("/")).await;
        b.wait_for(WAIT, "live updates connected", BANNER, vec![], |v| {
            v["state"] == "connected" && v["hidden"] == true
        })
        .await;
        b.wait_cards(
            "the fixture stacks",
            &["Tricky Name", "cache", "web", "worker"],
        )
        .await;
        let web = b.wait_card(WAIT, "web", "web card", |_| true).await;
        assert_eq!(web["status"], "missing");
        assert_eq!(web["badge"], "missing");
        assert_eq!(web["containers"], "0/0");
        assert_eq!(web["revision"], "—");
        let tricky = b
            .wait_card(WAIT, "Tricky Name", "tricky card", |_| true)
            .await;
        assert_eq!(tricky["href"], "/stacks/Tricky%20Name");
        let header = b.eval(REFRESH, vec![]).await;
        assert_eq!(header["status"], "completed");
        assert_eq!(header["revision"], &first[..12]);
        // Escaped, and only the subject line.
        assert_eq!(header["message"], "Demo stacks <b>v1</b>");
        assert_eq!(header["bold"], 0);

        // A push announced by a signed webhook shows up without a reload.
        b.eval("window.dcdMarker = 'no reload'; return null;", vec![])
            .await;
        repo.write("stacks/api/compose.yaml", compose("api:1"));
        repo.remove("stacks/worker");
        let second = repo.commit_and_push("Add api, drop worker");
        let (status, body) = app.push_webhook("refs/heads/main", &second).await;
        assert_eq!(status, 200, "{body}");
        b.wait_cards(
            "api added, worker gone",
            &["Tricky Name", "api", "cache", "web"],
        )
        .await;
        b.wait_for(
            WAIT,
            "the header shows the new commit",
            REFRESH,
            vec![],
            |v| v["revision"] == second[..12] && v["message"] == "Add api, drop worker",
        )
        .await;
        let marker = b.eval("return window.dcdMarker || null;", vec![]).await;
        assert_eq!(marker, "no reload", "the page was reloaded");
        b.assert_grid_matches_server().await;
        let counts = b
            .eval(
                "return Object.fromEntries([...document.querySelectorAll('[data-count]')]
                        .map(c => [c.dataset.count || 'all', c.textContent]));",
                vec![],
            )
            .await;
        assert_eq!(counts["all"], "4");
        assert_eq!(counts["missing"], "4");
        assert_eq!(counts["synced"], "0");

        // The status filter.
        b.click("button[data-filter-status='failed']").await;
        b.wait_cards("no failed stack", &[]).await;
        let empty = b
            .eval(
                "const e = document.getElementById('empty');
                     return e.hidden ? null : e.textContent;",
                vec![],
            )
            .await;
        assert_eq!(empty, "No stack matches the filter.");
        let url = b.client.current_url().await.unwrap();
        assert_eq!(url.query(), Some("status=failed"));
        b.click("button[data-filter-status='missing']").await;
        b.wait_cards(
            "every stack is missing",
            &["Tricky Name", "api", "cache", "web"],
        )
        .await;
        let pressed = b
            .eval(
                "return document.querySelector(\"[data-filter-status='missing']\")
                        .getAttribute('aria-pressed');",
                vec![],
            )
            .await;
        assert_eq!(pressed, "true");

        // The path search (case-insensitive), combined with the status filter.
        b.type_into("#search", "CA").await;
        b.wait_cards("search 'CA'", &["cache"]).await;
        let url = b.client.current_url().await.unwrap();
        assert_eq!(url.query(), Some("status=missing&q=CA"));
        b.type_into("#search", "\u{e003}\u{e003}").await;
        b.click("button[data-filter-status='']").await;
        b.wait_cards("filter cleared", &["Tricky Name", "api", "cache", "web"])
            .await;

        // The health filter, beside the status filter, follows a change of health live.
        b.click("button[data-filter-health='degraded']").await;
        b.wait_cards("no degraded stack", &[]).await;
        assert!(app.app().store.update_stack("cache", |s| {
            s.health = Health::Degraded;
            s.health_message = Some("cache: restarting (exit code 1, 5 restarts)".into());
        }));
        b.wait_cards("cache turned degraded", &["cache"]).await;
        let badge = b
            .eval(
                "const f = document.querySelector(\"#grid .card[data-path='cache'] [data-field='health']\");
                 return [f.textContent, f.title,
                         document.querySelector(\"[data-health-count='degraded']\").textContent];",
                vec![],
            )
            .await;
        assert_eq!(
            badge,
            json!(["degraded", "cache: restarting (exit code 1, 5 restarts)", "1"])
        );
        let url = b.client.current_url().await.unwrap();
        assert_eq!(url.query(), Some("health=degraded"));
        b.click("button[data-filter-status='failed']").await;
        b.wait_cards("degraded and failed: none", &[]).await;
        b.click("button[data-filter-status='']").await;
        b.click("button[data-filter-health='']").await;
        b.wait_cards("health filter cleared", &["Tricky Name", "api", "cache", "web"])
            .await;
        b.assert_grid_matches_server().await;

        // The filter in the URL is applied when the page loads.
        b.goto(&proxy.url("/?status=missing&q=we")).await;
        b.wait_cards("filter from the URL", &["web"]).await;
        let search = b
            .eval("return document.getElementById('search').value;", vec![])
            .await;
        assert_eq!(search, "we");
        b.goto(&proxy.url("/")).await;
        b.wait_for(WAIT, "connected again", BANNER, vec![], |v| {
            v["state"] == "connected"
        })
        .await;

        // The stream drops: the banner says so; a change made meanwhile arrives with the
        // snapshot sent on reconnect.
        proxy.cut();
        b.wait_for(WAIT, "the lost-stream banner", BANNER, vec![], |v| {
            v["state"] == "lost"
                && v["hidden"] == false
                && v["stale"] == true
                && v["text"].as_str().unwrap_or("").contains("reconnecting")
        })
        .await;
        repo.write("stacks/extra/compose.yaml", compose("extra:1"));
        let third = repo.commit_and_push("Add extra");
        let (status, _) = app.push_webhook("refs/heads/main", &third).await;
        assert_eq!(status, 200);
        app.wait_refreshes(3).await;
        assert_eq!(
            b.eval(VISIBLE_CARDS, vec![]).await,
            json!(["Tricky Name", "api", "cache", "web"]),
            "nothing can arrive while the stream is cut"
        );
        b.screenshot("dashboard-stream-lost.png").await;
        proxy.restore();
        b.wait_for(WAIT, "the restored banner", BANNER, vec![], |v| {
            v["state"] == "restored" && v["hidden"] == false && v["stale"] == false
        })
        .await;
        b.wait_cards(
            "the change made while disconnected",
            &["Tricky Name", "api", "cache", "extra", "web"],
        )
        .await;
        b.wait_for(WAIT, "the banner goes away", BANNER, vec![], |v| {
            v["state"] == "connected" && v["hidden"] == true
        })
        .await;
        let light = b
            .eval(
                "return getComputedStyle(document.body).backgroundColor;",
                vec![],
            )
            .await;
        b.screenshot("dashboard-grid.png").await;

        // Dark mode follows the system's preference.
        b.prefer_color_scheme("dark").await;
        let dark = b
            .eval(
                "return getComputedStyle(document.body).backgroundColor;",
                vec![],
            )
            .await;
        assert_eq!(light, "rgb(246, 247, 249)");
        assert_eq!(dark, "rgb(15, 19, 24)");
        b.screenshot("dashboard-grid-dark.png").await;
        b.prefer_color_scheme("light").await;

        // The stack page of a path with a space.
        b.click("article.card[data-path='Tricky Name'] a.path")
            .await;
        b.wait_for(
            WAIT,
            "the stack page",
            "return document.querySelector('#stack-detail h2')?.textContent ?? null;",
            vec![],
            |v| v == "Tricky Name",
        )
        .await;
        let url = b.client.current_url().await.unwrap();
        assert_eq!(url.path(), "/stacks/Tricky%20Name");
        let detail = b
            .eval(
                "return { badge: document.querySelector('#stack-detail .badge').textContent,
                              containers: !!(document.getElementById('no-containers')
                                  || document.getElementById('containers-error')),
                              history: document.getElementById('no-history')?.textContent ?? null,
                              project: document.querySelector('.fields code').textContent };",
                vec![],
            )
            .await;
        assert_eq!(detail["badge"], "missing");
        assert_eq!(detail["containers"], true);
        assert_eq!(detail["project"], "trickyname");
        assert!(detail["history"].as_str().is_some(), "{detail}");
        b.screenshot("dashboard-stack.png").await;
    })
    .await;
    browser.close(&outcome).await;
    app.finish(outcome).await;
}

#[tokio::test]
async fn the_refresh_button_asks_for_the_api_token_once_and_sends_it() {
    let Some(tools) = require_browser() else {
        return;
    };
    let repo = TestRepo::new();
    repo.write("stacks/web/compose.yaml", compose("web:1"));
    repo.commit_and_push("one");
    let app = TestApp::start(&repo.url(), |a| {
        a.git_deploy_dir = "stacks".into();
        a.api_token = Some(TOKEN.into());
    })
    .await;
    app.wait_refreshes(1).await;
    let browser = Browser::start(&tools, "token").await;
    let b = &browser;
    let outcome = common::catch(async {
        b.goto(&app.url("/")).await;
        b.wait_cards("the stack", &["web"]).await;
        let completed = || app.app().refresh_progress.borrow().completed;

        // No token yet: the button asks for it before sending anything.
        b.click("#refresh-button").await;
        b.wait_for(WAIT, "the token dialog", DIALOG, vec![], |v| {
            v["open"] == true && v["error"].is_null()
        })
        .await;
        b.type_into("#token-input", "wrong-token").await;
        b.click("#token-save").await;
        b.wait_for(WAIT, "the token is rejected", DIALOG, vec![], |v| {
            v["open"] == true && v["error"].as_str().unwrap_or("").contains("rejected")
        })
        .await;
        assert_eq!(completed(), 1, "a rejected request started a refresh");
        b.type_into("#token-input", TOKEN).await;
        b.click("#token-save").await;
        let notice = b
            .wait_for(WAIT, "the refresh answer", NOTICE, vec![], |v| !v.is_null())
            .await;
        assert_eq!(notice["kind"], "ok", "{notice}");
        assert_eq!(notice["text"], "Refresh started.", "{notice}");
        app.wait_refreshes(2).await;
        let stored = b
            .eval(
                "return [sessionStorage.getItem('docker-cd.apiToken'), localStorage.length];",
                vec![],
            )
            .await;
        assert_eq!(stored, json!([TOKEN, 0]), "kept for this tab only");

        // The token is remembered for the tab: no second question.
        b.eval(
            "document.getElementById('notice').hidden = true; return null;",
            vec![],
        )
        .await;
        b.click("#refresh-button").await;
        b.wait_for(WAIT, "the second refresh answer", NOTICE, vec![], |v| {
            !v.is_null()
        })
        .await;
        assert_eq!(b.eval(DIALOG, vec![]).await["open"], false);
        app.wait_refreshes(3).await;

        // Forgetting it.
        b.click("#forget-token").await;
        let stored = b
            .eval(
                "return [sessionStorage.getItem('docker-cd.apiToken'),
                             document.getElementById('forget-token').hidden];",
                vec![],
            )
            .await;
        assert_eq!(stored, json!([null, true]));
    })
    .await;
    browser.close(&outcome).await;
    app.finish(outcome).await;
}

/// A card's holds from Git: `[shown, text, title]` of its waiting tag, its suspended-in-Git
/// tag and its dependencies, and how many elements the card's tags hold (markup from Git would
/// be some).
const GIT_HOLDS: &str = "const c = [...document.querySelectorAll('#grid .card')]
        .find(c => c.dataset.path === arguments[0]);
    if (!c) return null;
    const f = n => c.querySelector(`[data-field='${n}']`);
    const tag = n => [!f(n).hidden, f(n).textContent, f(n).title];
    return { blocked: tag('blocked-by'), git: tag('suspended-in-git'),
             after: tag('depends-on'), health: c.dataset.health,
             elements: c.querySelectorAll('.tags .tag *').length };";

/// The stack page's word on what holds it back, and its dependencies' links.
const PAGE_HOLDS: &str = "const d = document.getElementById('stack-detail');
    if (!d) return null;
    const text = id => document.getElementById(id)?.textContent ?? null;
    return { blocked: text('blocked-by-text'), waiting: text('waiting'),
             git: !!document.getElementById('suspended-in-git-note'),
             links: [...d.querySelectorAll('#depends-on a')].map(a => a.getAttribute('href')),
             settings: [...d.querySelectorAll('#settings [data-setting]')]
                 .map(s => s.dataset.setting) };";

#[tokio::test]
async fn what_holds_a_stack_back_appears_and_goes_live_on_the_grid_and_its_page() {
    let Some(tools) = require_browser() else {
        return;
    };
    let repo = TestRepo::new();
    repo.write("stacks/db/compose.yaml", compose("db:1"));
    repo.write(
        "stacks/web/compose.yaml",
        format!("{}x-docker-cd:\n  dependsOn: [db]\n", compose("web:1")),
    );
    repo.commit_and_push("web after db");
    let app = TestApp::start(&repo.url(), |a| a.git_deploy_dir = "stacks".into()).await;
    app.wait_refreshes(1).await;
    // Reconciling is off: only the test moves the gate, as the reconciler would.
    let gate = |suspended_in_git: bool, blocked_by: Option<&str>| {
        let blocked_by = blocked_by.map(str::to_owned);
        assert!(
            app.app()
                .store
                .update_stack("web", |s| s.gate(suspended_in_git, blocked_by))
        );
    };
    let browser = Browser::start(&tools, "holds").await;
    let b = &browser;
    let outcome = common::catch(async {
        b.goto(&app.url("/")).await;
        b.wait_cards("the stacks", &["db", "web"]).await;
        let web = b
            .wait_for(WAIT, "web's card", GIT_HOLDS, vec![json!("web")], |v| {
                !v.is_null()
            })
            .await;
        assert_eq!(web["after"], json!([true, "after db", ""]));
        assert_eq!(web["blocked"], json!([false, "", ""]));
        assert_eq!(web["git"][0], false);

        let why = "waiting for db (progressing) <b>db</b>";
        gate(false, Some(why));
        let web = b
            .wait_for(WAIT, "web waits", GIT_HOLDS, vec![json!("web")], |v| {
                v["blocked"][0] == true
            })
            .await;
        assert_eq!(web["blocked"], json!([true, why, why]));
        assert_eq!(web["elements"], 0, "text from Git is never markup");
        b.assert_grid_matches_server().await;

        gate(true, None);
        let web = b
            .wait_for(
                WAIT,
                "web suspended in Git",
                GIT_HOLDS,
                vec![json!("web")],
                |v| v["git"][0] == true,
            )
            .await;
        assert_eq!(web["blocked"][0], false, "{web}");
        assert_eq!(web["health"], "suspended");
        b.assert_grid_matches_server().await;
        gate(false, None);
        b.wait_for(
            WAIT,
            "web follows Git again",
            GIT_HOLDS,
            vec![json!("web")],
            |v| v["git"][0] == false && v["blocked"][0] == false,
        )
        .await;

        // The stack page: its settings and dependency, and the wait appearing and going.
        b.goto(&app.url("/stacks/web")).await;
        let page = b
            .wait_for(WAIT, "web's page", PAGE_HOLDS, vec![], |v| !v.is_null())
            .await;
        assert_eq!(page["links"], json!(["/stacks/db"]));
        assert_eq!(page["settings"], json!(["dependsOn"]));
        assert!(
            page["blocked"].is_null() && page["waiting"].is_null(),
            "{page}"
        );
        let window = "sync window opens 2026-12-05T02:00:00Z";
        gate(false, Some(window));
        b.wait_for(WAIT, "the page says web waits", PAGE_HOLDS, vec![], |v| {
            v["blocked"] == window && v["waiting"] == "waiting"
        })
        .await;
        b.screenshot("dashboard-stack-waiting.png").await;
        gate(false, None);
        b.wait_for(
            WAIT,
            "the wait is gone from the page",
            PAGE_HOLDS,
            vec![],
            |v| !v.is_null() && v["blocked"].is_null() && v["waiting"].is_null(),
        )
        .await;
    })
    .await;
    browser.close(&outcome).await;
    app.finish(outcome).await;
}

/// A card's image tags: [shown, text, title] each, and any element inside the tags.
const IMAGE_TAGS: &str = "const c = [...document.querySelectorAll('#grid .card')]
        .find(c => c.dataset.path === arguments[0]);
    if (!c) return null;
    const f = n => c.querySelector(`[data-field='${n}']`);
    const tag = n => [!f(n).hidden, f(n).textContent, f(n).title];
    return { updates: tag('updates'), errors: tag('image-errors'),
             elements: c.querySelectorAll('.tags .tag *').length };";

/// The stack page's images section: each row's service, status and status cell.
const PAGE_IMAGES: &str = "const d = document.getElementById('stack-detail');
    if (!d) return null;
    return { checked: document.querySelector('#images-checked time')?.textContent ?? null,
             button: !!d.querySelector('[data-action=check-images]'),
             empty: document.getElementById('no-images')?.textContent ?? null,
             rows: [...d.querySelectorAll('#images tbody tr')].map(r =>
                 [r.dataset.service, r.dataset.imageStatus, r.cells[4].textContent]),
             elements: d.querySelectorAll('#images td .message *').length };";

#[tokio::test]
async fn image_updates_appear_live_on_the_grid_and_the_stack_page() {
    use docker_cd::desired_state::ImageStatus;
    let Some(tools) = require_browser() else {
        return;
    };
    let repo = TestRepo::new();
    repo.write("stacks/web/compose.yaml", compose("web:1"));
    repo.commit_and_push("web");
    let app = TestApp::start(&repo.url(), |a| a.git_deploy_dir = "stacks".into()).await;
    app.wait_refreshes(1).await;
    let digest = |d: char| format!("sha256:{}", d.to_string().repeat(64));
    let up_to_date = ImageStatus {
        service: "db".into(),
        image: "postgres:16".into(),
        digest: Some(digest('1')),
        latest_digest: Some(digest('1')),
        update_available: false,
        error: None,
        image_id: None,
        update_failed: false,
    };
    let newer = ImageStatus {
        service: "web".into(),
        image: "nginx:1.27".into(),
        latest_digest: Some(digest('2')),
        update_available: true,
        ..up_to_date.clone()
    };
    let hostile = "registry.example.com: <b>refused</b>";
    let broken = ImageStatus {
        service: "cache".into(),
        image: "registry.example.com/cache:7".into(),
        digest: None,
        latest_digest: None,
        error: Some(hostile.into()),
        ..up_to_date.clone()
    };
    // Reconciling is off: only the test records a check, as the reconciler would.
    let checked = |images: Vec<ImageStatus>| {
        assert!(app.app().store.update_stack("web", |s| {
            s.images_checked(images, std::time::SystemTime::UNIX_EPOCH);
        }));
    };
    let browser = Browser::start(&tools, "images").await;
    let b = &browser;
    let outcome = common::catch(async {
        b.goto(&app.url("/")).await;
        b.wait_cards("the stacks", &["web"]).await;
        let web = b
            .wait_for(WAIT, "web's card", IMAGE_TAGS, vec![json!("web")], |v| {
                !v.is_null()
            })
            .await;
        assert_eq!(web["updates"][0], false, "{web}");
        assert_eq!(web["errors"][0], false, "{web}");

        checked(vec![up_to_date.clone(), newer.clone(), broken.clone()]);
        let web = b
            .wait_for(
                WAIT,
                "web has an update",
                IMAGE_TAGS,
                vec![json!("web")],
                |v| v["updates"][0] == true,
            )
            .await;
        assert_eq!(
            web["updates"],
            json!([true, "update available", "web: nginx:1.27"])
        );
        assert_eq!(
            web["errors"],
            json!([true, "image check failed", format!("cache: {hostile}")])
        );
        assert_eq!(web["elements"], 0, "a registry's text is never markup");
        b.assert_grid_matches_server().await;

        checked(vec![up_to_date.clone()]);
        b.wait_for(
            WAIT,
            "web is up to date",
            IMAGE_TAGS,
            vec![json!("web")],
            |v| v["updates"][0] == false && v["errors"][0] == false,
        )
        .await;
        b.assert_grid_matches_server().await;

        // The stack page: the table follows each check without a reload.
        b.goto(&app.url("/stacks/web")).await;
        let page = b
            .wait_for(WAIT, "web's page", PAGE_IMAGES, vec![], |v| !v.is_null())
            .await;
        assert_eq!(
            page["rows"],
            json!([["db", "up-to-date", "up to date"]]),
            "{page}"
        );
        assert_eq!(page["checked"], "1970-01-01 00:00:00 UTC");
        assert_eq!(
            page["button"], false,
            "no check on request without reconciling"
        );
        checked(vec![up_to_date, newer, broken]);
        let page = b
            .wait_for(
                WAIT,
                "the page shows the update",
                PAGE_IMAGES,
                vec![],
                |v| v["rows"].as_array().is_some_and(|r| r.len() == 3),
            )
            .await;
        assert_eq!(
            page["rows"],
            json!([
                ["db", "up-to-date", "up to date"],
                ["web", "update-available", "update available"],
                ["cache", "error", format!("error {hostile}")]
            ])
        );
        assert_eq!(page["elements"], 0);
        b.screenshot("dashboard-stack-images.png").await;
    })
    .await;
    browser.close(&outcome).await;
    app.finish(outcome).await;
}

// ---------------------------------------------------------------------------------------------
// With Docker: real statuses, drift flagged and acknowledged from the page.

#[tokio::test]
async fn drift_is_flagged_acknowledged_and_recorded_on_the_stack_page() {
    let Some(tools) = require_browser() else {
        return;
    };
    let Some((prefix, [app_stack, broken_stack], _cleanup)) =
        docker::begin_projects("ui", ["app", "broken"])
    else {
        return;
    };
    let repo = TestRepo::new();
    repo.write(
        &format!("stacks/{app_stack}/compose.yaml"),
        docker::sleeper_compose(&["app"]),
    );
    repo.write(
        &format!("stacks/{broken_stack}/compose.yaml"),
        format!(
            "services:\n  app:\n    image: {}\n    init: true\n",
            TEST_IMAGE.replace("busybox", "does-not-exist")
        ),
    );
    repo.commit_and_push("Two stacks, one broken");
    let app = TestApp::start(&repo.url(), |a| {
        a.git_deploy_dir = "stacks".into();
        a.reconcile_enabled = "true".into();
        a.docker_bin = None;
        a.drift_policy = "flag".into();
        a.reconcile_interval = "5s".into();
        a.api_token = Some(TOKEN.into());
    })
    .await;
    let browser = Browser::start(&tools, "drift").await;
    let b = &browser;
    let outcome = common::catch(async {
        b.goto(&app.url(&format!("/?q={prefix}"))).await;
        let synced = b
            .wait_card(DEPLOY_WAIT, &app_stack, "the app synced", |c| {
                c["status"] == "synced" && c["containers"] == "1/1"
            })
            .await;
        assert_eq!(synced["message"], "Two stacks, one broken");
        let broken = b
            .wait_card(DEPLOY_WAIT, &broken_stack, "the broken stack failed", |c| {
                c["status"] == "failed" && !c["error"].is_null()
            })
            .await;
        // Compose v1 names the missing image, v2 the service and the registry's error: the
        // card shows compose's own error either way.
        assert!(
            broken["error"]
                .as_str()
                .unwrap()
                .contains("compose up failed"),
            "{broken}"
        );
        b.click("button[data-filter-status='failed']").await;
        b.wait_cards("only the failed stack", &[broken_stack.as_str()])
            .await;
        b.click("button[data-filter-status='']").await;

        // The stack page, open while the container is stopped by hand: the next resync tick
        // flags the drift, and the page follows without a reload.
        b.click(&format!("article.card[data-path='{app_stack}'] a.path"))
            .await;
        b.wait_for(WAIT, "the stack page", STACK_PAGE, vec![], |v| {
            v["status"] == "synced" && v["containers"] == json!([["app", "running"]])
        })
        .await;
        b.eval("window.dcdMarker = 'no reload'; return null;", vec![])
            .await;
        let ids = docker::container_ids(&app_stack);
        assert_eq!(ids.len(), 1, "{ids:?}");
        let stopped = Command::new("docker")
            .args(["stop", "--time", "1", &ids[0]])
            .output()
            .unwrap();
        assert!(stopped.status.success(), "{stopped:?}");
        let page = b
            .wait_for(
                DEPLOY_WAIT,
                "drift on the stack page",
                STACK_PAGE,
                vec![],
                |v| v["status"] == "drifted" && v["ack"] == true,
            )
            .await;
        // Drift is no deployment: the history holds the first sync only.
        assert_eq!(page["history"], json!(["commit:succeeded"]));
        assert_eq!(page["containers"][0][0], "app");
        assert_ne!(page["containers"][0][1], "running");
        assert_eq!(
            b.eval("return window.dcdMarker || null;", vec![]).await,
            "no reload"
        );

        // Back on the grid, the card shows the drift; acknowledging it asks for the token,
        // then re-applies the stack from Git.
        b.click(".crumbs a").await;
        let drifted = b
            .wait_card(WAIT, &app_stack, "drift on the grid", |c| {
                c["status"] == "drifted" && c["ack"] == true && !c["drift"].is_null()
            })
            .await;
        assert_eq!(drifted["containers"], "0/1");
        b.assert_grid_matches_server().await;
        b.screenshot("dashboard-drift.png").await;
        b.click(&format!(
            "article.card[data-path='{app_stack}'] button[data-action='ack']"
        ))
        .await;
        b.wait_for(WAIT, "the token dialog", DIALOG, vec![], |v| {
            v["open"] == true
        })
        .await;
        b.type_into("#token-input", TOKEN).await;
        b.click("#token-save").await;
        let notice = b
            .wait_for(WAIT, "the acknowledgement", NOTICE, vec![], |v| {
                !v.is_null()
            })
            .await;
        assert_eq!(notice["kind"], "ok", "{notice}");
        b.wait_card(DEPLOY_WAIT, &app_stack, "re-synced", |c| {
            c["status"] == "synced" && c["containers"] == "1/1" && c["ack"] == false
        })
        .await;
        b.assert_grid_matches_server().await;
        b.screenshot("dashboard-docker.png").await;

        // The deployment history, newest first.
        b.click(&format!("article.card[data-path='{app_stack}'] a.path"))
            .await;
        let page = b
            .wait_for(
                WAIT,
                "the stack page after the ack",
                STACK_PAGE,
                vec![],
                |v| v["status"] == "synced",
            )
            .await;
        assert_eq!(
            page["history"],
            json!(["ack:succeeded", "commit:succeeded"])
        );
        assert_eq!(page["containers"], json!([["app", "running"]]));
        b.screenshot("dashboard-docker-stack.png").await;
    })
    .await;
    browser.close(&outcome).await;
    // Stop the app before the cleanup removes the containers, so no sync recreates them.
    app.finish(outcome).await;
}

// ---------------------------------------------------------------------------------------------
// Operating a stack from its page (SPEC §10), without Docker: a docker CLI that sees no
// containers and a compose whose `up` succeeds, so syncs run through the real reconciler and
// end `succeeded`. (The next look finds nothing running: drift, flagged rather than reverted.)

/// The stack page's operator view: the buttons shown, the holds, the history rows.
const OPERATE: &str = "const d = document.getElementById('stack-detail');
    if (!d) return null;
    const shown = a => { const b = d.querySelector(`[data-action='${a}']`); return !!b && !b.hidden; };
    return {
        sync: shown('sync'), suspend: shown('suspend'), resume: shown('resume'),
        unpin: shown('unpin'),
        suspended: !!document.getElementById('suspended-note'),
        pinned: !!document.getElementById('pinned-note'),
        rows: [...d.querySelectorAll('#history tbody tr')].map(r => ({
            id: r.dataset.deployment,
            revision: r.querySelector('[data-field=revision]').title,
            trigger: r.querySelector('[data-field=trigger]').textContent,
            outcome: r.querySelector('[data-field=outcome]').textContent,
            rollback: !r.querySelector('[data-action=rollback]').hidden,
        })),
        diff: document.getElementById('stack-diff').dataset.state || null,
    };";

/// A repository with the stack `web` and an app that deploys it through the fake engine.
async fn operated_app(tools_dir: &Path) -> (TestRepo, String, TestApp) {
    let docker = tools_dir.join("docker");
    common::write_executable(&docker, "#!/bin/sh\nexit 0\n");
    let compose_bin = tools_dir.join("docker-compose");
    common::write_executable(
        &compose_bin,
        "#!/bin/sh\nif [ \"$1\" = version ]; then echo 1.29.2; exit 0; fi\nexit 0\n",
    );
    let (repo, first) = TestRepo::with_stack("web", "web:1", "first");
    let app = TestApp::start(&repo.url(), |a| {
        a.reconcile_enabled = "true".into();
        a.docker_bin = Some(docker.clone());
        a.compose_bin = Some(compose_bin.clone());
        a.sync_health_timeout = "0".into();
        a.drift_policy = "flag".into();
        a.api_token = Some(TOKEN.into());
    })
    .await;
    (repo, first, app)
}

/// Pushes a commit changing `web` and tells the app by webhook; returns the commit.
async fn push_second(app: &TestApp, repo: &TestRepo) -> String {
    repo.write("web/compose.yaml", compose("web:2"));
    let second = repo.commit_and_push("second");
    let (code, body) = app.push_webhook("refs/heads/main", &second).await;
    assert_eq!(code, 200, "{body}");
    common::wait_revision(app, &second).await;
    second
}

#[tokio::test]
async fn the_stack_page_suspends_resumes_and_syncs_with_the_token_and_shows_deployments_live() {
    let Some(tools) = require_browser() else {
        return;
    };
    let fakes = tempfile::tempdir().unwrap();
    let (repo, first, app) = operated_app(fakes.path()).await;
    let browser = Browser::start(&tools, "operate").await;
    let b = &browser;
    let outcome = common::catch(async {
        b.goto(&app.url("/stacks/web")).await;
        let page = b
            .wait_for(WAIT, "the first deployment", OPERATE, vec![], |v| {
                v["rows"].as_array().is_some_and(|r| r.len() == 1)
            })
            .await;
        assert_eq!(page["rows"][0]["revision"], first.as_str(), "{page}");
        assert_eq!(page["rows"][0]["outcome"], "succeeded", "{page}");
        assert_eq!(page["rows"][0]["trigger"], "commit", "{page}");
        assert_eq!(
            page["rows"][0]["rollback"], false,
            "it is what runs: {page}"
        );
        assert_eq!(
            (
                &page["sync"],
                &page["suspend"],
                &page["resume"],
                &page["unpin"]
            ),
            (&json!(true), &json!(true), &json!(false), &json!(false)),
            "{page}"
        );
        b.eval("window.dcdMarker = 'no reload'; return null;", vec![])
            .await;

        // Suspend: the token is asked for, a wrong one is refused (401), the right one works.
        b.click("#stack-detail [data-action='suspend']").await;
        b.wait_for(WAIT, "the token dialog", DIALOG, vec![], |v| {
            v["open"] == true && v["error"].is_null()
        })
        .await;
        b.type_into("#token-input", "wrong-token").await;
        b.click("#token-save").await;
        b.wait_for(WAIT, "the token is rejected", DIALOG, vec![], |v| {
            v["open"] == true && v["error"].as_str().unwrap_or("").contains("rejected")
        })
        .await;
        assert_eq!(
            common::stack(&app.stacks().await, "web")["suspended"],
            false
        );
        b.type_into("#token-input", TOKEN).await;
        b.click("#token-save").await;
        let notice = b
            .wait_for(WAIT, "the answer", NOTICE, vec![], |v| !v.is_null())
            .await;
        assert_eq!(notice["kind"], "ok", "{notice}");
        assert_eq!(
            notice["text"], "web suspended: it is never synced, reverted or removed until resumed.",
            "{notice}"
        );
        let page = b
            .wait_for(
                WAIT,
                "the page shows the suspension",
                OPERATE,
                vec![],
                |v| v["suspended"] == true && v["resume"] == true,
            )
            .await;
        assert_eq!(
            (&page["sync"], &page["suspend"]),
            (&json!(false), &json!(false))
        );
        assert_eq!(common::stack(&app.stacks().await, "web")["suspended"], true);

        // Resume: the token is remembered for the tab.
        b.click("#stack-detail [data-action='resume']").await;
        b.wait_for(WAIT, "resumed", OPERATE, vec![], |v| {
            v["suspended"] == false && v["sync"] == true
        })
        .await;
        assert_eq!(b.eval(DIALOG, vec![]).await["open"], false);
        assert_eq!(
            common::stack(&app.stacks().await, "web")["suspended"],
            false
        );

        // A new commit is deployed (the fake engine shows no containers, and Git says
        // something new: a commit deployment, not a drift); then "Sync now" re-applies it.
        // Each deployment appears at the top, and the first one can be rolled back to.
        let second = push_second(&app, &repo).await;
        b.wait_for(WAIT, "the second commit deployed", OPERATE, vec![], |v| {
            v["rows"][0]["revision"] == second.as_str() && v["rows"][0]["trigger"] == "commit"
        })
        .await;
        b.click("#stack-detail [data-action='sync']").await;
        let page = b
            .wait_for(WAIT, "the manual deployment", OPERATE, vec![], |v| {
                v["rows"][0]["revision"] == second.as_str()
                    && v["rows"][0]["trigger"] == "manual"
                    && v["rows"][0]["outcome"] == "succeeded"
            })
            .await;
        let rows = page["rows"].as_array().unwrap();
        assert_eq!(rows.last().unwrap()["revision"], first.as_str(), "{page}");
        assert_eq!(rows[0]["trigger"], "manual", "{page}");
        assert_eq!(rows[0]["rollback"], false, "{page}");
        assert_eq!(rows.last().unwrap()["rollback"], true, "{page}");
        let ids: Vec<u64> = rows
            .iter()
            .map(|r| r["id"].as_str().unwrap().parse().unwrap())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
        // The same rows as the server renders now.
        let server = app.get_text("/stacks/web").await;
        for id in &ids {
            assert!(
                server.contains(&format!("data-deployment=\"{id}\"")),
                "{id}"
            );
        }
        // The diff section got an answer (the diff route may not be there yet: then it says
        // why instead of hanging).
        b.wait_for(WAIT, "the diff section", OPERATE, vec![], |v| {
            !v["diff"].is_null()
        })
        .await;
        assert_eq!(
            b.eval("return window.dcdMarker || null;", vec![]).await,
            "no reload"
        );
        b.screenshot("dashboard-operate.png").await;
    })
    .await;
    browser.close(&outcome).await;
    app.finish(outcome).await;
}

#[tokio::test]
async fn a_stack_is_rolled_back_from_its_page_pinned_and_unpinned() {
    let Some(tools) = require_browser() else {
        return;
    };
    let fakes = tempfile::tempdir().unwrap();
    let (repo, first, app) = operated_app(fakes.path()).await;
    let browser = Browser::start(&tools, "rollback").await;
    let b = &browser;
    let outcome = common::catch(async {
        b.goto(&app.url("/stacks/web")).await;
        b.wait_for(WAIT, "the first deployment", OPERATE, vec![], |v| {
            v["rows"].as_array().is_some_and(|r| r.len() == 1)
        })
        .await;
        // Put the token in first, as an operator would after the first question.
        b.eval(
            &format!("sessionStorage.setItem('docker-cd.apiToken', '{TOKEN}'); return null;"),
            vec![],
        )
        .await;
        let second = push_second(&app, &repo).await;
        b.click("#stack-detail [data-action='sync']").await;
        b.wait_for(WAIT, "the second deployment", OPERATE, vec![], |v| {
            v["rows"][0]["revision"] == second.as_str() && v["rows"][0]["outcome"] == "succeeded"
        })
        .await;
        b.eval(
            "document.getElementById('notice').hidden = true; return null;",
            vec![],
        )
        .await;
        b.click(&format!(
            "#stack-detail [data-action='rollback'][data-revision='{first}']"
        ))
        .await;
        let notice = b
            .wait_for(WAIT, "the rollback answer", NOTICE, vec![], |v| {
                !v.is_null()
            })
            .await;
        assert_eq!(notice["kind"], "ok", "{notice}");
        assert!(
            notice["text"]
                .as_str()
                .unwrap()
                .starts_with(&format!("Rollback of web to {} queued", &first[..12])),
            "{notice}"
        );
        let page = b
            .wait_for(WAIT, "pinned, rolled back", OPERATE, vec![], |v| {
                v["pinned"] == true
                    && v["unpin"] == true
                    && v["rows"][0]["revision"] == first.as_str()
                    && v["rows"][0]["trigger"] == "rollback"
            })
            .await;
        assert_eq!(page["rows"][0]["outcome"], "succeeded", "{page}");
        let stack = common::stack(&app.stacks().await, "web").clone();
        assert_eq!(stack["pinnedRevision"], first.as_str());
        assert_eq!(stack["syncedRevision"], first.as_str());
        b.screenshot("dashboard-rollback.png").await;

        b.click("#stack-detail [data-action='unpin']").await;
        b.wait_for(WAIT, "unpinned", OPERATE, vec![], |v| {
            v["pinned"] == false && v["unpin"] == false
        })
        .await;
        assert!(common::stack(&app.stacks().await, "web")["pinnedRevision"].is_null());
    })
    .await;
    browser.close(&outcome).await;
    app.finish(outcome).await;
}
