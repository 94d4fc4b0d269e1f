//! Delivery: each receiver's request ([`format`], pure), a bounded [`Lane`] per receiver whose
//! [`Lane::offer`] never waits (a full lane drops and counts), and the task behind each lane
//! that posts with a timeout and retries with backoff up to a limit ([`post`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::derive::Notice;
use crate::config::{Receiver, ReceiverKind, Secret};
use crate::desired_state::rfc3339;

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct Options {
    /// Per request (SPEC §13: 10 s).
    pub timeout: Duration,
    /// Requests per message, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each next one.
    pub backoff: Duration,
    /// Messages waiting per receiver; more are dropped and counted.
    pub capacity: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            attempts: 4,
            backoff: Duration::from_secs(2),
            capacity: 256,
        }
    }
}

/// A request, ready to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// What a message says about its stack, for the links in it.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// `PUBLIC_URL`, without its trailing slash.
    pub public_url: Option<String>,
    /// The `instance` field: `PUBLIC_URL`, or the instance id of the labels.
    pub instance: String,
}

impl Context {
    /// The stack's dashboard page, when `PUBLIC_URL` is set.
    pub fn stack_page(&self, stack: &str) -> Option<String> {
        let base = self.public_url.as_deref()?;
        let path = percent_encoding::utf8_percent_encode(stack, COMPONENT);
        Some(format!("{base}/stacks/{path}"))
    }
}

/// What a URL path component keeps unencoded (RFC 3986 unreserved).
pub(super) const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The short line every format starts from: `sync.failed apps/web at 1a2b3c4: web: unhealthy`.
pub fn summary(notice: &Notice) -> String {
    let mut text = notice.event.as_str().to_owned();
    if let Some(stack) = &notice.stack {
        text.push(' ');
        text.push_str(stack);
    }
    if let Some(revision) = &notice.revision {
        text.push_str(" at ");
        text.push_str(&revision[..revision.len().min(7)]);
    }
    if let Some(reason) = &notice.reason {
        text.push_str(": ");
        text.push_str(reason);
    }
    crate::untrusted::sanitize(&text, 1000)
}

/// The request of one notice for one kind of receiver.
pub fn format(
    kind: ReceiverKind,
    notice: &Notice,
    context: &Context,
    secret: Option<&Secret>,
) -> Request {
    let mut headers = HeaderMap::new();
    let page = notice.stack.as_deref().and_then(|s| context.stack_page(s));
    let body = match kind {
        ReceiverKind::Generic => {
            let body = json!({
                "event": notice.event.as_str(),
                "stack": notice.stack,
                "revision": notice.revision,
                "commitMessage": notice.commit_message,
                "status": notice.status,
                "health": notice.health,
                "reason": notice.reason,
                "at": rfc3339::format(notice.at),
                "instance": context.instance,
            })
            .to_string()
            .into_bytes();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if let Some(secret) = secret {
                headers.insert(
                    HeaderName::from_static("x-docker-cd-signature"),
                    signature(secret, &body),
                );
            }
            body
        }
        ReceiverKind::Slack => {
            // Slack's mrkdwn: &, < and > are escaped; a link is <url|label>.
            let escaped = summary(notice)
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            let mark = if notice.event.is_failure() {
                ":x:"
            } else {
                ":white_check_mark:"
            };
            let mut text = format!("{mark} docker-cd: {escaped}");
            if let Some(page) = &page {
                text.push_str(&format!(" <{page}|dashboard>"));
            }
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            json!({ "text": text }).to_string().into_bytes()
        }
        ReceiverKind::Ntfy => {
            let mut title = format!("docker-cd: {}", notice.event.as_str());
            if let Some(stack) = &notice.stack {
                title.push(' ');
                title.push_str(stack);
            }
            let (priority, tags) = if notice.event.is_failure() {
                ("high", "rotating_light,docker-cd")
            } else {
                ("default", "white_check_mark,docker-cd")
            };
            headers.insert(HeaderName::from_static("title"), header_text(&title));
            headers.insert(
                HeaderName::from_static("priority"),
                HeaderValue::from_static(priority),
            );
            headers.insert(
                HeaderName::from_static("tags"),
                HeaderValue::from_static(tags),
            );
            if let Some(page) = &page {
                headers.insert(HeaderName::from_static("click"), header_text(page));
            }
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            summary(notice).into_bytes()
        }
    };
    Request { headers, body }
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`, the generic sender's signature of SPEC §13.
pub fn signature(secret: &Secret, body: &[u8]) -> HeaderValue {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    let hex = hex::encode(mac.finalize().into_bytes());
    HeaderValue::from_str(&format!("sha256={hex}"))
        .unwrap_or_else(|_| HeaderValue::from_static("sha256="))
}

/// A header value of visible ASCII: anything else becomes `?` (stack paths may be UTF-8).
fn header_text(text: &str) -> HeaderValue {
    let ascii: String = text
        .chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    HeaderValue::from_str(&ascii).unwrap_or_else(|_| HeaderValue::from_static("docker-cd"))
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Every attempt failed, or the receiver refused it (a 4xx other than 408 and 429).
    Failed,
}

/// Posts `request` to `url`: up to `options.attempts` tries, `options.timeout` each, waiting
/// `backoff`, then twice that, between them. Stops early on shutdown.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    request: &Request,
    options: &Options,
    shutdown: &CancellationToken,
) -> (Outcome, u32) {
    let (url, auth) = split_credentials(url);
    let mut wait = options.backoff;
    for attempt in 1..=options.attempts.max(1) {
        let mut builder = client
            .post(url.clone())
            .timeout(options.timeout)
            .headers(request.headers.clone())
            .body(request.body.clone());
        if let Some((user, password)) = &auth {
            builder = builder.basic_auth(user, password.as_deref());
        }
        let retry = match builder.send().await {
            Ok(answer) if answer.status().is_success() => return (Outcome::Sent, attempt),
            Ok(answer) => {
                let status = answer.status().as_u16();
                status >= 500 || status == 408 || status == 429
            }
            Err(_) => true,
        };
        if !retry || attempt == options.attempts {
            return (Outcome::Failed, attempt);
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return (Outcome::Failed, attempt),
        }
        wait = wait.saturating_mul(2);
    }
    (Outcome::Failed, options.attempts)
}

/// The URL without its `user:password@`, and those as basic-auth credentials (ntfy's access
/// control, a receiver behind a proxy).
fn split_credentials(url: &str) -> (reqwest::Url, Option<(String, Option<String>)>) {
    let mut url = match reqwest::Url::parse(url) {
        Ok(url) => url,
        // Checked at start-up; an unparsable URL cannot reach here.
        Err(_) => return (unreachable_url(), None),
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let auth = (!url.username().is_empty() || url.password().is_some())
        .then(|| (decode(url.username()), url.password().map(decode)));
    let _ = url.set_username("");
    let _ = url.set_password(None);
    (url, auth)
}

fn unreachable_url() -> reqwest::Url {
    reqwest::Url::parse("http://0.0.0.0:9/").unwrap_or_else(|_| unreachable!("a valid URL"))
}

/// The HTTP client of notifications and commit statuses: rustls, no proxy from the agent's
/// environment, no redirects (a receiver's redirect could carry a signed body elsewhere).
pub fn client(options: &Options) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("docker-cd/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(options.timeout)
        .timeout(options.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
}

/// Counts of one lane, for tests and logs (the metrics count the same by kind).
#[derive(Debug, Default)]
pub struct Counts {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

impl Counts {
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

/// A bounded queue in front of one worker task. [`Lane::offer`] never waits.
#[derive(Debug)]
pub struct Lane<T> {
    tx: mpsc::Sender<T>,
    pub counts: Arc<Counts>,
    on_drop: fn(),
}

impl<T: Send + 'static> Lane<T> {
    /// Spawns the worker: `work` handles one item at a time and says whether it was delivered.
    pub fn spawn<F, Fut>(
        capacity: usize,
        on_drop: fn(),
        shutdown: CancellationToken,
        work: F,
    ) -> Self
    where
        F: Fn(T) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Outcome> + Send,
    {
        let (tx, mut rx) = mpsc::channel::<T>(capacity.max(1));
        let counts = Arc::new(Counts::default());
        let task_counts = counts.clone();
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    item = rx.recv() => item,
                    () = shutdown.cancelled() => None,
                };
                let Some(item) = item else { break };
                let outcome = tokio::select! {
                    outcome = work(item) => outcome,
                    () = shutdown.cancelled() => break,
                };
                let counter = match outcome {
                    Outcome::Sent => &task_counts.sent,
                    Outcome::Failed => &task_counts.failed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        Self {
            tx,
            counts,
            on_drop,
        }
    }

    /// Queues `item`, or drops and counts it when the lane is full (or its worker stopped).
    /// Returns whether it was queued.
    pub fn offer(&self, item: T) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(_) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                (self.on_drop)();
                false
            }
        }
    }
}

/// One receiver's lane: formats each notice and posts it.
pub fn receiver_lane(
    receiver: &Receiver,
    client: reqwest::Client,
    context: Arc<Context>,
    secret: Option<Secret>,
    options: Options,
    shutdown: CancellationToken,
) -> Lane<Arc<Notice>> {
    let kind = receiver.kind;
    let url = Arc::new(receiver.url.clone());
    let label = Arc::new(receiver.label.clone());
    let on_drop: fn() = match kind {
        ReceiverKind::Generic => || crate::metrics::notification("generic", "dropped"),
        ReceiverKind::Slack => || crate::metrics::notification("slack", "dropped"),
        ReceiverKind::Ntfy => || crate::metrics::notification("ntfy", "dropped"),
    };
    let worker_shutdown = shutdown.clone();
    Lane::spawn(
        options.capacity,
        on_drop,
        shutdown,
        move |notice: Arc<Notice>| {
            let request = format(kind, &notice, &context, secret.as_ref());
            let (client, url, label, options, shutdown) = (
                client.clone(),
                url.clone(),
                label.clone(),
                options.clone(),
                worker_shutdown.clone(),
            );
            async move {
                let (outcome, attempts) =
                    post(&client, url.expose(), &request, &options, &shutdown).await;
                let name = match outcome {
                    Outcome::Sent => "sent",
                    Outcome::Failed => "failed",
                };
                crate::metrics::notification(kind.as_str(), name);
                if outcome == Outcome::Failed {
                    tracing::warn!(receiver = %label, event = notice.event.as_str(), attempts, "a notification could not be delivered");
                }
                outcome
            }
        },
    )
}
