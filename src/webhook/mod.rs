//! Verifies and interprets the push webhooks of GitHub, Gitea, Forgejo, Gogs, GitLab and the
//! generic sender (`POST /api/webhook`, SPEC §7 and §13).
//!
//! Pure: raw header values and body bytes in, typed decisions out. No I/O, no async, no logging
//! and no HTTP types (the headers come through the small [`Headers`] trait); the HTTP layer owns
//! those and maps a [`WebhookError`] to its status code in one place (`src/http/error.rs`: the
//! authentication errors 401, the others 400). Uses only `hmac`, `sha2`, `subtle`, `hex`,
//! `serde`, `serde_json` and `serde_urlencoded`, and [`identity`] for repository URLs.
//!
//! The caller must check in this order, so that an unauthenticated body is never interpreted,
//! and a delivery without one usable credential is refused before its body is read:
//! 1. [`authenticate`] from the headers alone: which [`Sender`], and its one credential; 401 on
//!    any error;
//! 2. body longer than [`MAX_BODY_BYTES`]: 413, before anything is hashed;
//! 3. [`Credential::verify`] over the raw body bytes (Gitea, Forgejo, Gogs: over the JSON a form
//!    carries in `payload`) against each configured secret: 401 on any error; it returns the
//!    authenticated JSON document;
//! 4. [`parse_delivery`]: 400 when the event or payload is unreadable (GitLab: never, an
//!    authentic GitLab delivery is always answered 2xx, since GitLab disables hooks after 4xx);
//! 5. [`decide`] on a push.
//!
//! A push never names what gets deployed: the agent refreshes and deploys the tip it fetches
//! itself, so replayed, duplicated or out-of-order deliveries are harmless.
//!
//! **Two signatures.** A credential header given twice, two kinds of credential (a GitLab token
//! and an HMAC, the generic signature and a forge's), or signature headers of one forge that
//! disagree are refused (401): which one a proxy checked is unknowable. The headers a forge
//! sends together with one digest are one signature: Gitea sends the same HMAC in
//! `X-Gitea-Signature`, `X-Gogs-Signature` and (as `sha256=…`) `X-Hub-Signature-256`, Forgejo
//! also in `X-Forgejo-Signature`.

pub mod identity;

use std::borrow::Cow;
use std::collections::HashMap;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::error::Category;
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub use identity::RepoIdentity;

/// Largest body accepted; the caller enforces it before calling anything here.
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

const SIGNATURE_PREFIX: &[u8] = b"sha256=";
const SIGNATURE_HEX_LEN: usize = 64;

const FORM_MEDIA_TYPE: &[u8] = b"application/x-www-form-urlencoded";

/// Most characters of untrusted text (a ref, an event name, a parser message) copied into an error
/// or a reason: serde echoes offending string values whole, and a 5 MiB `ref` must not reach a log.
const MAX_ECHO_CHARS: usize = 256;

const HUB_SIGNATURE: &str = "x-hub-signature-256";
const GITEA_SIGNATURE: &str = "x-gitea-signature";
const FORGEJO_SIGNATURE: &str = "x-forgejo-signature";
const GOGS_SIGNATURE: &str = "x-gogs-signature";
const GITLAB_TOKEN: &str = "x-gitlab-token";
const GENERIC_SIGNATURE: &str = "x-docker-cd-signature";

/// Every header that carries a credential, for the ambiguity checks.
const CREDENTIAL_HEADERS: [&str; 6] = [
    HUB_SIGNATURE,
    GITEA_SIGNATURE,
    FORGEJO_SIGNATURE,
    GOGS_SIGNATURE,
    GITLAB_TOKEN,
    GENERIC_SIGNATURE,
];

/// Why a delivery was refused. Messages never contain a secret, a token or any digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    /// The sender's credential header is absent (a legacy sha1 `X-Hub-Signature` alone counts
    /// as absent). The text names the header(s) expected.
    #[error("missing {0} header")]
    MissingSignature(&'static str),
    /// The header is not in its sender's format (the text says which).
    #[error("malformed {header} header: expected {expected}")]
    MalformedSignature {
        header: &'static str,
        expected: &'static str,
    },
    /// One credential header given more than once.
    #[error("more than one {0} header")]
    DuplicateSignature(&'static str),
    /// Two kinds of credential, or one forge's signature headers with different digests.
    #[error("ambiguous authentication: {0}")]
    AmbiguousAuthentication(String),
    /// Well-formed, but not the HMAC of this body under any configured secret.
    #[error("signature does not match the body")]
    BadSignature,
    /// `X-Gitlab-Token` is none of the configured secrets.
    #[error("x-gitlab-token does not match the secret")]
    BadToken,
    /// A form delivery of Gitea, Forgejo or Gogs without the `payload` field their signature
    /// covers: there is nothing to verify.
    #[error("form body has no `payload` field, which the {0} signature covers")]
    UnsignedForm(&'static str),
    /// The sender's event header is absent, empty or not UTF-8; the text names it.
    #[error("missing event header ({0})")]
    MissingEvent(&'static str),
    /// The body cannot be read as the event it claims to be; the text names the problem.
    #[error("{0}")]
    InvalidPayload(String),
}

/// The raw values of a request's headers; implemented by the HTTP layer.
pub trait Headers {
    /// Every value of the header named `name` (lower-case), in the order received.
    fn values(&self, name: &str) -> Vec<&[u8]>;
}

/// Who sent a delivery, told apart by its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    GitHub,
    Gitea,
    Forgejo,
    Gogs,
    GitLab,
    /// `X-Docker-CD-Signature`, for scripts and CI jobs.
    Generic,
}

impl Sender {
    /// Lower-case name, for logs and answers.
    pub fn name(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::Gitea => "gitea",
            Self::Forgejo => "forgejo",
            Self::Gogs => "gogs",
            Self::GitLab => "gitlab",
            Self::Generic => "generic",
        }
    }

    /// The sender, from the first of these present: `X-Gitlab-Event` or `X-Gitlab-Token`
    /// (GitLab); `X-Docker-CD-Signature` (generic); `X-Forgejo-Event` or `-Signature`;
    /// `X-Gitea-…`; `X-Gogs-…`; otherwise GitHub. Forgejo sends the Gitea, Gogs and GitHub
    /// headers too, and Gitea the Gogs and GitHub ones, hence the order.
    pub fn of(headers: &impl Headers) -> Self {
        let has = |name: &str| !headers.values(name).is_empty();
        if has("x-gitlab-event") || has(GITLAB_TOKEN) {
            Self::GitLab
        } else if has(GENERIC_SIGNATURE) {
            Self::Generic
        } else if has("x-forgejo-event") || has(FORGEJO_SIGNATURE) {
            Self::Forgejo
        } else if has("x-gitea-event") || has(GITEA_SIGNATURE) {
            Self::Gitea
        } else if has("x-gogs-event") || has(GOGS_SIGNATURE) {
            Self::Gogs
        } else {
            Self::GitHub
        }
    }

    /// The credential headers this sender may send (together, with one digest).
    fn credential_headers(self) -> &'static [&'static str] {
        match self {
            Self::GitHub => &[HUB_SIGNATURE],
            Self::Forgejo | Self::Gitea | Self::Gogs => &[
                FORGEJO_SIGNATURE,
                GITEA_SIGNATURE,
                GOGS_SIGNATURE,
                HUB_SIGNATURE,
            ],
            Self::GitLab => &[GITLAB_TOKEN],
            Self::Generic => &[GENERIC_SIGNATURE],
        }
    }

    /// What the "missing" error names.
    fn expected_credential(self) -> &'static str {
        match self {
            Self::GitHub => HUB_SIGNATURE,
            Self::Forgejo => "x-forgejo-signature (or x-gitea-signature, x-hub-signature-256)",
            Self::Gitea => "x-gitea-signature (or x-gogs-signature, x-hub-signature-256)",
            Self::Gogs => GOGS_SIGNATURE,
            Self::GitLab => GITLAB_TOKEN,
            Self::Generic => GENERIC_SIGNATURE,
        }
    }

    /// The event headers this sender's event is read from, first present wins.
    fn event_headers(self) -> &'static [&'static str] {
        match self {
            Self::GitHub => &["x-github-event"],
            Self::Forgejo => &["x-forgejo-event", "x-gitea-event", "x-github-event"],
            Self::Gitea => &["x-gitea-event", "x-github-event"],
            Self::Gogs => &["x-gogs-event", "x-github-event"],
            Self::GitLab => &["x-gitlab-event"],
            Self::Generic => &[],
        }
    }
}

/// A claimed HMAC-SHA256 (32 bytes). Checking the form costs nothing, so it is done from the
/// headers, before the body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature([u8; SIGNATURE_HEX_LEN / 2]);

impl Signature {
    /// Constant-time check that this is the HMAC of `data` under one of `secrets`. Empty secrets
    /// never verify: anyone can compute an HMAC under them.
    fn verify_any(&self, secrets: &[&[u8]], data: &[u8]) -> bool {
        let mut matched = false;
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            // HMAC takes keys of any length; an error here cannot happen and fails closed.
            if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) {
                mac.update(data);
                // `verify_slice` compares in constant time; every secret is tried, so the
                // time taken does not tell which one matched.
                matched |= mac.verify_slice(&self.0).is_ok();
            }
        }
        matched
    }
}

/// What authenticates a delivery, read from its headers alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// HMAC-SHA256 of the raw body (GitHub, generic).
    BodyHmac(Signature),
    /// HMAC-SHA256 of the JSON payload: the body, or the `payload` field of a form (Gitea,
    /// Forgejo, Gogs sign the JSON before they wrap it).
    PayloadHmac(Signature),
    /// The secret itself (GitLab's `X-Gitlab-Token`).
    Token(Vec<u8>),
}

/// The sender of a delivery and its one credential, from the headers alone: exactly one
/// credential of the sender's kind (the headers a forge sends together count as one when they
/// carry one digest), in its format, and no credential header of another kind.
pub fn authenticate(headers: &impl Headers) -> Result<(Sender, Credential), WebhookError> {
    let sender = Sender::of(headers);
    let own = sender.credential_headers();
    for name in CREDENTIAL_HEADERS {
        let count = headers.values(name).len();
        if count > 1 {
            return Err(WebhookError::DuplicateSignature(name));
        }
        if count == 1 && !own.contains(&name) {
            return Err(WebhookError::AmbiguousAuthentication(format!(
                "a {} delivery must not also carry {name}",
                sender.name()
            )));
        }
    }
    let present = || {
        own.iter()
            .filter_map(|&name| headers.values(name).first().map(|value| (name, *value)))
    };
    let credential = match sender {
        Sender::GitLab => {
            let (_, token) = present()
                .next()
                .ok_or(WebhookError::MissingSignature(GITLAB_TOKEN))?;
            Credential::Token(token.to_vec())
        }
        Sender::GitHub | Sender::Generic => {
            let (name, value) = present()
                .next()
                .ok_or(WebhookError::MissingSignature(sender.expected_credential()))?;
            Credential::BodyHmac(parse_digest(name, value, true)?)
        }
        Sender::Forgejo | Sender::Gitea | Sender::Gogs => {
            let mut digest: Option<Signature> = None;
            for (name, value) in present() {
                let parsed = parse_digest(name, value, name == HUB_SIGNATURE)?;
                match &digest {
                    Some(first) if *first != parsed => {
                        return Err(WebhookError::AmbiguousAuthentication(format!(
                            "the {} signature headers carry different digests",
                            sender.name()
                        )));
                    }
                    _ => digest = Some(parsed),
                }
            }
            Credential::PayloadHmac(
                digest.ok_or(WebhookError::MissingSignature(sender.expected_credential()))?,
            )
        }
    };
    Ok((sender, credential))
}

/// 64 hex digits (either case: only the decoded bytes are compared), after `sha256=` when
/// `prefixed` (`X-Hub-Signature-256`, `X-Docker-CD-Signature`); bare otherwise (Gitea's).
fn parse_digest(
    header: &'static str,
    value: &[u8],
    prefixed: bool,
) -> Result<Signature, WebhookError> {
    let malformed = || WebhookError::MalformedSignature {
        header,
        expected: if prefixed {
            "`sha256=` and 64 hex digits"
        } else {
            "64 hex digits"
        },
    };
    let digits = if prefixed {
        value.strip_prefix(SIGNATURE_PREFIX).ok_or_else(malformed)?
    } else {
        value
    };
    // The length is checked before decoding, so a 10 KB header costs nothing.
    if digits.len() != SIGNATURE_HEX_LEN {
        return Err(malformed());
    }
    let mut received = [0u8; SIGNATURE_HEX_LEN / 2];
    hex::decode_to_slice(digits, &mut received).map_err(|_| malformed())?;
    Ok(Signature(received))
}

impl Credential {
    /// Checks the credential against each of `secrets` (any may match: rotation), over the raw
    /// `body`, and returns the authenticated JSON document: the body, or with content type
    /// `application/x-www-form-urlencoded` its `payload` field.
    ///
    /// A Gitea/Forgejo/Gogs form is decoded to find the JSON its signature covers, and nothing
    /// else of it is read; every other body is verified before it is decoded at all.
    pub fn verify<'a>(
        &self,
        sender: Sender,
        secrets: &[&[u8]],
        content_type: Option<&[u8]>,
        body: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, WebhookError> {
        match self {
            Self::BodyHmac(signature) => {
                if !signature.verify_any(secrets, body) {
                    return Err(WebhookError::BadSignature);
                }
                json_document(content_type, body)
            }
            Self::PayloadHmac(signature) => {
                let document = json_document(content_type, body)
                    .map_err(|_| WebhookError::UnsignedForm(sender.name()))?;
                if signature.verify_any(secrets, &document) {
                    Ok(document)
                } else {
                    Err(WebhookError::BadSignature)
                }
            }
            Self::Token(token) => {
                let mut matched = false;
                for secret in secrets.iter().filter(|s| !s.is_empty()) {
                    // Constant time for equal lengths; a length mismatch is known anyway.
                    matched |= bool::from(token.as_slice().ct_eq(secret));
                }
                if !matched {
                    return Err(WebhookError::BadToken);
                }
                // GitLab posts JSON. A form would be a proxy's doing: its JSON is read all the
                // same, and a form that holds none goes on as the body, which `parse_delivery`
                // answers `ignored` (an authentic GitLab delivery never gets a 4xx).
                Ok(json_document(content_type, body).unwrap_or(Cow::Borrowed(body)))
            }
        }
    }
}

/// What an authentic delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// GitHub's `ping` (sent when the hook is created): answered 200 `pong`.
    Ping,
    /// A push (or GitLab's `repository_update`, or a generic delivery).
    Push(PushEvent),
    /// Authentic but of no interest (another event, a GitLab payload that cannot be read):
    /// answered 2xx `ignored` with this reason.
    Ignored(String),
}

/// The fields of a push docker-cd uses. Every field is untrusted input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushEvent {
    /// The full ref names pushed, e.g. `refs/heads/main` or `refs/tags/v1`: one for a push,
    /// those of `refs` for GitLab's `repository_update`, none for a generic delivery without a
    /// ref (which asks for a refresh of whatever is tracked).
    pub refs: Vec<String>,
    /// `after`: the commit id after the push, if present (null counts as absent).
    pub after: Option<String>,
    /// `deleted` is true, or `after` is all zeros: the ref no longer exists upstream.
    pub deleted: bool,
    /// Which repository the payload says it is about.
    pub repository: RepositoryClaim,
}

/// The repository URLs and names a payload carries (`repository.clone_url`, `ssh_url`,
/// `html_url`, `git_url`, `url`, `git_http_url`, `git_ssh_url`, `homepage`, `full_name`;
/// GitLab's `project.git_http_url`, `git_ssh_url`, `web_url`, `url`, `ssh_url`, `http_url`,
/// `homepage`, `path_with_namespace`). Empty when the payload names none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepositoryClaim {
    pub urls: Vec<String>,
    pub names: Vec<String>,
}

impl RepositoryClaim {
    /// `None` when the claim fits `ours` (or claims nothing checkable); otherwise the reason
    /// it does not. URLs decide when there are any (one must name `ours`); names only when
    /// there are no URLs.
    fn mismatch(&self, ours: &RepoIdentity) -> Option<String> {
        let identities: Vec<RepoIdentity> = self
            .urls
            .iter()
            .filter_map(|url| RepoIdentity::from_url(url))
            .collect();
        let named = if let Some(first) = identities.first() {
            if identities.contains(ours) {
                return None;
            }
            first.to_string()
        } else {
            let first = self.names.iter().find(|n| !n.trim().is_empty())?;
            if self.names.iter().any(|name| ours.has_name(name)) {
                return None;
            }
            first.clone()
        };
        Some(format!(
            "delivery for repository {}, tracking {ours}",
            printable(&named)
        ))
    }
}

/// Reads an authentic delivery: its event from the sender's event header, then the JSON
/// `document` (as [`Credential::verify`] returned it) as that event.
///
/// - GitHub, Gitea, Forgejo, Gogs: event `ping` → [`Delivery::Ping`] (the body must be a JSON
///   object); `push` → a push object: `ref` (string, required), `after` (string or null),
///   `deleted` (boolean or null), `repository` (object or null, optional) with the URL and name
///   fields of [`RepositoryClaim`] (strings or null); any other event → ignored. A missing event
///   header or an unreadable push is an error (400).
/// - GitLab: `Push Hook` and `Tag Push Hook` → a push (as above, and `project`); `System Hook`
///   → by `event_name` (or `object_kind`): `push`, `tag_push`, or `repository_update` (its
///   `refs` array); anything else, and any payload that cannot be read, → ignored, never an
///   error.
/// - Generic: an empty body or a JSON object with an optional `ref` (string or null).
///
/// Other fields are ignored; a read field of the wrong type is an error
/// ([`WebhookError::InvalidPayload`] with serde's message, which names the expected type and the
/// position), as are non-UTF-8 bytes and invalid JSON (`invalid JSON: …`).
pub fn parse_delivery(
    sender: Sender,
    headers: &impl Headers,
    document: &[u8],
) -> Result<Delivery, WebhookError> {
    if sender == Sender::Generic {
        return parse_generic(document).map(Delivery::Push);
    }
    let event = sender
        .event_headers()
        .iter()
        .find_map(|name| headers.values(name).first().copied());
    let event = event
        .and_then(|raw| std::str::from_utf8(raw).ok())
        .map(str::trim)
        .filter(|name| !name.is_empty());
    if sender == Sender::GitLab {
        return Ok(parse_gitlab(event, document)
            .unwrap_or_else(|e| Delivery::Ignored(format!("unreadable GitLab delivery: {e}"))));
    }
    let missing = || {
        WebhookError::MissingEvent(match sender {
            Sender::GitHub => "x-github-event",
            Sender::Forgejo => "x-forgejo-event or x-gitea-event",
            Sender::Gitea => "x-gitea-event",
            _ => "x-gogs-event",
        })
    };
    match event.ok_or_else(missing)? {
        "ping" => parse_ping(document).map(|()| Delivery::Ping),
        "push" => parse_push(document).map(Delivery::Push),
        other => Ok(Delivery::Ignored(format!(
            "{} events are not handled",
            printable(other)
        ))),
    }
}

/// GitLab: the hook kind from `X-Gitlab-Event`; for a system hook, the event from the body.
fn parse_gitlab(event: Option<&str>, document: &[u8]) -> Result<Delivery, WebhookError> {
    #[derive(Deserialize)]
    struct SystemHook {
        event_name: Option<String>,
        object_kind: Option<String>,
        refs: Option<Vec<String>>,
    }
    match event {
        None => Ok(Delivery::Ignored(
            "no X-Gitlab-Event header: not a hook docker-cd handles".to_owned(),
        )),
        Some("Push Hook" | "Tag Push Hook") => parse_push(document).map(Delivery::Push),
        Some("System Hook") => {
            let hook: SystemHook = from_json(document)?;
            match hook.event_name.or(hook.object_kind).as_deref() {
                Some("push" | "tag_push") => parse_push(document).map(Delivery::Push),
                Some("repository_update") => {
                    let mut push = parse_repository(document)?;
                    push.refs = hook.refs.unwrap_or_default();
                    Ok(Delivery::Push(push))
                }
                Some(other) => Ok(Delivery::Ignored(format!(
                    "system hook {} events are not handled",
                    printable(other)
                ))),
                None => Ok(Delivery::Ignored(
                    "system hook without event_name: not handled".to_owned(),
                )),
            }
        }
        Some(other) => Ok(Delivery::Ignored(format!(
            "{} events are not handled",
            printable(other)
        ))),
    }
}

/// The subset of a push payload read; every other field is skipped without being stored. (Like
/// every derived struct, it would also take an array of its fields in order: harmless.)
#[derive(Deserialize)]
#[serde(expecting = "a push event object")]
struct RawPush {
    #[serde(rename = "ref")]
    git_ref: String,
    after: Option<String>,
    deleted: Option<bool>,
    repository: Option<RawRepository>,
    /// GitLab's.
    project: Option<RawRepository>,
}

/// Where a payload names its repository.
#[derive(Deserialize)]
struct RawPlaces {
    repository: Option<RawRepository>,
    /// GitLab's.
    project: Option<RawRepository>,
}

#[derive(Deserialize, Default)]
#[serde(expecting = "a repository object")]
struct RawRepository {
    full_name: Option<String>,
    path_with_namespace: Option<String>,
    clone_url: Option<String>,
    ssh_url: Option<String>,
    html_url: Option<String>,
    git_url: Option<String>,
    url: Option<String>,
    git_http_url: Option<String>,
    git_ssh_url: Option<String>,
    http_url: Option<String>,
    web_url: Option<String>,
    homepage: Option<String>,
}

impl RawPlaces {
    fn claim(self) -> RepositoryClaim {
        claim(self.repository, self.project)
    }
}

fn claim(repository: Option<RawRepository>, project: Option<RawRepository>) -> RepositoryClaim {
    let mut claim = RepositoryClaim::default();
    for repo in [repository, project].into_iter().flatten() {
        claim.urls.extend(
            [
                repo.clone_url,
                repo.ssh_url,
                repo.html_url,
                repo.git_url,
                repo.url,
                repo.git_http_url,
                repo.git_ssh_url,
                repo.http_url,
                repo.web_url,
                repo.homepage,
            ]
            .into_iter()
            .flatten()
            .filter(|url| !url.trim().is_empty()),
        );
        claim.names.extend(
            [repo.full_name, repo.path_with_namespace]
                .into_iter()
                .flatten(),
        );
    }
    claim
}

/// A push object (GitHub, Gitea, Forgejo, Gogs, GitLab push and tag push).
fn parse_push(document: &[u8]) -> Result<PushEvent, WebhookError> {
    let raw: RawPush = from_json(document)?;
    // GitHub and GitLab send 40 zeros (SHA-1 repositories) or 64 (SHA-256); Gitea may omit
    // `deleted`, GitLab has no such field.
    let after_is_zero = raw
        .after
        .as_deref()
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b == b'0'));
    Ok(PushEvent {
        refs: vec![raw.git_ref],
        deleted: raw.deleted == Some(true) || after_is_zero,
        after: raw.after,
        repository: claim(raw.repository, raw.project),
    })
}

/// Only the repository of a payload (GitLab's `repository_update`).
fn parse_repository(document: &[u8]) -> Result<PushEvent, WebhookError> {
    let places: RawPlaces = from_json(document)?;
    Ok(PushEvent {
        repository: places.claim(),
        ..PushEvent::default()
    })
}

/// The generic sender's body: empty, or `{"ref": "…"}` with the ref optional.
fn parse_generic(document: &[u8]) -> Result<PushEvent, WebhookError> {
    #[derive(Deserialize)]
    #[serde(expecting = "a JSON object with an optional `ref`")]
    struct Generic {
        #[serde(rename = "ref")]
        git_ref: Option<String>,
    }
    if document.trim_ascii().is_empty() {
        return Ok(PushEvent::default());
    }
    let generic: Generic = from_json(document)?;
    Ok(PushEvent {
        refs: generic.git_ref.into_iter().collect(),
        ..PushEvent::default()
    })
}

/// A `ping`: only checks the body is a JSON object (GitHub's has `zen`, `hook_id`).
fn parse_ping(document: &[u8]) -> Result<(), WebhookError> {
    // A map rather than a struct: derived structs also accept JSON arrays.
    from_json::<HashMap<String, IgnoredAny>>(document).map(drop)
}

/// What the agent does about an authentic push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// a push to the tracked ref: refresh (the agent then deploys the fetched tip, never the
    /// payload's commit)
    Refresh,
    /// the tracked ref was deleted upstream: the caller refreshes anyway (the refresh will fail
    /// and keep the last good state) and reports a warning; never tear anything down
    RefreshTrackedRefDeleted,
    /// authentic but uninteresting: answered 2xx "ignored" with this reason (e.g. "push to
    /// refs/heads/dev, tracking refs/heads/main", "tracking a pinned commit")
    Ignored(String),
}

/// `tracked_refs`: the full ref names that count as the tracked ref, e.g. `["refs/heads/main"]`,
/// or `["refs/heads/main", "refs/tags/main"]` before the ref type is known; EMPTY when a fixed
/// commit id is tracked (every push is then ignored). `tracked_repo`: the identity of
/// `GIT_REPO_URL`, `None` for a local repository (no payload is then checked for its
/// repository).
///
/// In order: another repository → ignored; a pinned commit → ignored; a push without a ref (the
/// generic sender's) → refresh; none of the refs tracked → ignored; the tracked ref deleted →
/// refresh with a warning. Refs are compared exactly; the payload's commit id plays no part.
pub fn decide(
    push: &PushEvent,
    tracked_refs: &[String],
    tracked_repo: Option<&RepoIdentity>,
) -> Decision {
    if let Some(reason) = tracked_repo.and_then(|ours| push.repository.mismatch(ours)) {
        return Decision::Ignored(reason);
    }
    if tracked_refs.is_empty() {
        return Decision::Ignored("tracking a pinned commit".to_owned());
    }
    if push.refs.is_empty() {
        return Decision::Refresh;
    }
    if !push.refs.iter().any(|r| tracked_refs.contains(r)) {
        let pushed: Vec<String> = push.refs.iter().take(3).map(|r| printable(r)).collect();
        return Decision::Ignored(format!(
            "push to {}{}, tracking {}",
            pushed.join(", "),
            if push.refs.len() > 3 { ", …" } else { "" },
            tracked_refs.join(" or ")
        ));
    }
    if push.deleted {
        Decision::RefreshTrackedRefDeleted
    } else {
        Decision::Refresh
    }
}

/// The JSON document of a delivery. With content type `application/x-www-form-urlencoded` (any
/// parameters) the body is `payload=<percent-encoded JSON>` among possibly other fields; with any
/// other or no content type the body is the JSON itself. Form values are decoded as UTF-8 with
/// invalid sequences replaced, which is what `serde_urlencoded` does (a signature over the
/// original bytes then no longer matches: fails closed).
fn json_document<'a>(
    content_type: Option<&[u8]>,
    body: &'a [u8],
) -> Result<Cow<'a, [u8]>, WebhookError> {
    #[derive(Deserialize)]
    struct Form {
        payload: Option<String>,
    }
    if !is_form(content_type) {
        return Ok(Cow::Borrowed(body));
    }
    let form: Form = serde_urlencoded::from_bytes(body)
        .map_err(|e| invalid_payload(&format!("invalid form body: {e}")))?;
    form.payload
        .map(|json| Cow::Owned(json.into_bytes()))
        .ok_or_else(|| invalid_payload("form body has no `payload` field"))
}

/// Whether the media type, parameters aside, is `application/x-www-form-urlencoded`.
fn is_form(content_type: Option<&[u8]>) -> bool {
    let media_type = content_type.and_then(|value| value.split(|&b| b == b';').next());
    media_type.is_some_and(|m| m.trim_ascii().eq_ignore_ascii_case(FORM_MEDIA_TYPE))
}

/// Deserializes JSON, telling syntax errors (`invalid JSON: …`) from well-formed JSON of the wrong
/// shape (serde's message as is). No body can overflow the stack: the types read are three levels
/// deep, serde_json skips every other value with a heap stack, and its recursion limit (128)
/// guards the rest.
fn from_json<T: DeserializeOwned>(json: &[u8]) -> Result<T, WebhookError> {
    // JSON is UTF-8 (RFC 8259). serde_json skips unread string values without checking them,
    // so check the whole document: invalid bytes anywhere make it invalid JSON.
    if let Err(e) = std::str::from_utf8(json) {
        return Err(invalid_payload(&format!(
            "invalid JSON: not valid UTF-8 at byte {}",
            e.valid_up_to()
        )));
    }
    serde_json::from_slice(json).map_err(|e| match e.classify() {
        Category::Data => invalid_payload(&e.to_string()),
        Category::Syntax | Category::Eof | Category::Io => {
            invalid_payload(&format!("invalid JSON: {e}"))
        }
    })
}

fn invalid_payload(message: &str) -> WebhookError {
    WebhookError::InvalidPayload(printable(message))
}

/// Untrusted text made safe to echo: at most [`MAX_ECHO_CHARS`] characters, control characters
/// replaced.
fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_ECHO_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if text.chars().nth(MAX_ECHO_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    /// GitHub's documented test vector for SECRET and BODY.
    const DIGEST: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    const JSON: Option<&[u8]> = Some(b"application/json");
    const FORM: Option<&[u8]> = Some(b"application/x-www-form-urlencoded; charset=utf-8");
    const MAIN: &[&str] = &["refs/heads/main"];

    /// Headers as a test writes them: (name, value) pairs, names in any case.
    struct H(Vec<(String, Vec<u8>)>);

    impl Headers for H {
        fn values(&self, name: &str) -> Vec<&[u8]> {
            self.0
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_slice())
                .collect()
        }
    }

    fn h(pairs: &[(&str, &str)]) -> H {
        H(pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
            .collect())
    }

    fn hex_hmac(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn sign(secret: &[u8], body: &[u8]) -> String {
        format!("sha256={}", hex_hmac(secret, body))
    }

    /// Headers as each sender really sends them (Gitea's and Forgejo's delivery code, GitLab's
    /// docs), for `event`, signed with `secret` over `signed` (the JSON payload).
    fn sent_by(sender: Sender, event: &str, secret: &[u8], signed: &[u8]) -> H {
        let bare = hex_hmac(secret, signed);
        let prefixed = format!("sha256={bare}");
        let token = String::from_utf8_lossy(secret).into_owned();
        let pairs: Vec<(&str, &str)> = match sender {
            Sender::GitHub => vec![
                ("X-GitHub-Event", event),
                ("X-GitHub-Delivery", "72d3162e"),
                ("X-Hub-Signature-256", &prefixed),
            ],
            Sender::Gitea => vec![
                ("X-Gitea-Delivery", "f6266f16"),
                ("X-Gitea-Event", event),
                ("X-Gitea-Event-Type", event),
                ("X-Gitea-Signature", &bare),
                ("X-Gogs-Delivery", "f6266f16"),
                ("X-Gogs-Event", event),
                ("X-Gogs-Event-Type", event),
                ("X-Gogs-Signature", &bare),
                (
                    "X-Hub-Signature",
                    "sha1=0000000000000000000000000000000000000000",
                ),
                ("X-Hub-Signature-256", &prefixed),
                ("X-GitHub-Delivery", "f6266f16"),
                ("X-GitHub-Event", event),
                ("X-GitHub-Event-Type", event),
            ],
            Sender::Forgejo => vec![
                ("X-Forgejo-Delivery", "f6266f16"),
                ("X-Forgejo-Event", event),
                ("X-Forgejo-Event-Type", event),
                ("X-Forgejo-Signature", &bare),
                ("X-Gitea-Delivery", "f6266f16"),
                ("X-Gitea-Event", event),
                ("X-Gitea-Signature", &bare),
                ("X-Gogs-Event", event),
                ("X-Gogs-Signature", &bare),
                ("X-Hub-Signature-256", &prefixed),
                ("X-GitHub-Event", event),
            ],
            Sender::Gogs => vec![
                ("X-Gogs-Delivery", "f6266f16"),
                ("X-Gogs-Event", event),
                ("X-Gogs-Signature", &bare),
                ("X-GitHub-Event", event),
            ],
            Sender::GitLab => vec![
                ("X-Gitlab-Event", event),
                ("X-Gitlab-Token", &token),
                ("X-Gitlab-Event-UUID", "13792a34"),
            ],
            Sender::Generic => vec![("X-Docker-CD-Signature", &prefixed)],
        };
        h(&pairs)
    }

    /// The whole pure path for one delivery: authenticate, verify, parse.
    fn receive(
        headers: &H,
        secrets: &[&[u8]],
        content_type: Option<&[u8]>,
        body: &[u8],
    ) -> Result<(Sender, Delivery), WebhookError> {
        let (sender, credential) = authenticate(headers)?;
        let document = credential.verify(sender, secrets, content_type, body)?;
        Ok((sender, parse_delivery(sender, headers, &document)?))
    }

    fn push_json(git_ref: &str, extra: &str) -> String {
        format!(r#"{{"ref":"{git_ref}","repository":{{"full_name":"o/r"}}{extra}}}"#)
    }

    fn push_of(document: &str) -> Result<PushEvent, WebhookError> {
        parse_push(document.as_bytes())
    }

    /// Parses a push built by `push_json` and decides on it (no repository check).
    fn decision(git_ref: &str, extra: &str, tracked: &[&str]) -> Decision {
        let push = push_of(&push_json(git_ref, extra)).expect("parses");
        decide(&push, &refs(tracked), None)
    }

    fn refs(tracked: &[&str]) -> Vec<String> {
        tracked.iter().map(|r| (*r).to_owned()).collect()
    }

    fn payload_error(body: impl AsRef<[u8]>) -> String {
        match parse_push(body.as_ref()) {
            Err(WebhookError::InvalidPayload(message)) => message,
            other => panic!("expected InvalidPayload, got {other:?}"),
        }
    }

    fn form(json: &str) -> String {
        serde_urlencoded::to_string([("payload", json)]).expect("encodes")
    }

    fn real_payload(name: &str) -> String {
        let path = format!("{}/tests/payloads/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).expect("payload copied into tests/payloads")
    }

    fn pushed(result: Result<(Sender, Delivery), WebhookError>) -> PushEvent {
        match result {
            Ok((_, Delivery::Push(push))) => push,
            other => panic!("expected a push, got {other:?}"),
        }
    }

    fn ours(url: &str) -> RepoIdentity {
        RepoIdentity::from_url(url).expect("a network URL")
    }

    // --- signatures ---------------------------------------------------------------------------

    #[test]
    fn github_test_vector_verifies_in_either_hex_case() {
        let header = format!("sha256={DIGEST}");
        assert_eq!(sign(SECRET, BODY), header);
        let upper = header.to_uppercase().replace("SHA256=", "sha256=");
        for value in [&header, &upper] {
            let headers = h(&[("x-github-event", "push"), ("x-hub-signature-256", value)]);
            let (sender, credential) = authenticate(&headers).expect("well-formed");
            assert_eq!(sender, Sender::GitHub);
            assert!(credential.verify(sender, &[SECRET], None, BODY).is_ok());
        }
    }

    #[test]
    fn missing_signature_names_the_senders_header() {
        // W1, and W2: a legacy sha1 X-Hub-Signature alone counts as missing.
        let cases = [
            (vec![("x-github-event", "push")], "x-hub-signature-256"),
            (
                vec![("x-github-event", "push"), ("x-hub-signature", "sha1=ab")],
                "x-hub-signature-256",
            ),
            (vec![], "x-hub-signature-256"),
            (vec![("x-gitea-event", "push")], "x-gitea-signature"),
            (vec![("x-forgejo-event", "push")], "x-forgejo-signature"),
            (vec![("x-gogs-event", "push")], "x-gogs-signature"),
            (vec![("x-gitlab-event", "Push Hook")], "x-gitlab-token"),
        ];
        for (pairs, header) in cases {
            let err = authenticate(&h(&pairs)).unwrap_err();
            assert!(
                matches!(err, WebhookError::MissingSignature(name) if name.starts_with(header)),
                "{pairs:?}: {err}"
            );
        }
    }

    #[test]
    fn two_signature_headers_are_rejected_even_if_one_is_right() {
        // X11: a proxy may check one and the handler read the other.
        let right = sign(SECRET, BODY);
        let wrong = sign(b"another secret", BODY);
        for name in CREDENTIAL_HEADERS {
            for pair in [[&right, &wrong], [&wrong, &right], [&right, &right]] {
                let headers = h(&[(name, pair[0]), (name, pair[1])]);
                assert_eq!(
                    authenticate(&headers),
                    Err(WebhookError::DuplicateSignature(name)),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn two_kinds_of_credential_are_ambiguous() {
        let hmac = sign(SECRET, BODY);
        let bare = hex_hmac(SECRET, BODY);
        let secret = "It's a Secret to Everybody";
        let cases: [&[(&str, &str)]; 5] = [
            &[("x-gitlab-token", secret), ("x-hub-signature-256", &hmac)],
            &[
                ("x-gitlab-event", "Push Hook"),
                ("x-gitlab-token", secret),
                ("x-gitea-signature", &bare),
            ],
            &[
                ("x-docker-cd-signature", &hmac),
                ("x-hub-signature-256", &hmac),
            ],
            &[
                ("x-docker-cd-signature", &hmac),
                ("x-gitlab-event", "Push Hook"),
            ],
            &[
                ("x-gitea-event", "push"),
                ("x-gitea-signature", &bare),
                ("x-docker-cd-signature", &hmac),
            ],
        ];
        for pairs in cases {
            let err = authenticate(&h(pairs)).unwrap_err();
            assert!(
                matches!(err, WebhookError::AmbiguousAuthentication(_)),
                "{pairs:?}: {err}"
            );
        }
    }

    #[test]
    fn a_forges_signature_headers_that_disagree_are_ambiguous() {
        let right = hex_hmac(SECRET, BODY);
        let wrong = hex_hmac(b"another", BODY);
        let cases: [&[(&str, &str)]; 3] = [
            &[("x-gitea-signature", &right), ("x-gogs-signature", &wrong)],
            &[
                ("x-gitea-event", "push"),
                ("x-gitea-signature", &right),
                ("x-hub-signature-256", &format!("sha256={wrong}")),
            ],
            &[
                ("x-forgejo-signature", &wrong),
                ("x-gitea-signature", &right),
            ],
        ];
        for pairs in cases {
            let err = authenticate(&h(pairs)).unwrap_err();
            assert!(
                matches!(&err, WebhookError::AmbiguousAuthentication(m) if m.contains("different digests")),
                "{err}"
            );
        }
    }

    #[test]
    fn every_forge_with_the_headers_it_really_sends_is_accepted() {
        let json = push_json("refs/heads/main", "");
        for sender in [
            Sender::GitHub,
            Sender::Gitea,
            Sender::Forgejo,
            Sender::Gogs,
            Sender::GitLab,
        ] {
            let event = if sender == Sender::GitLab {
                "Push Hook"
            } else {
                "push"
            };
            let headers = sent_by(sender, event, SECRET, json.as_bytes());
            let result = receive(&headers, &[SECRET], JSON, json.as_bytes());
            assert!(
                matches!(&result, Ok((s, _)) if *s == sender),
                "{sender:?}: {result:?}"
            );
            assert_eq!(pushed(result).refs, ["refs/heads/main"], "{sender:?}");
        }
    }

    #[test]
    fn every_forge_signed_with_another_secret_or_over_another_body_is_rejected() {
        let json = push_json("refs/heads/main", "");
        let tampered = push_json("refs/heads/mainx", "");
        for sender in [
            Sender::GitHub,
            Sender::Gitea,
            Sender::Forgejo,
            Sender::Gogs,
            Sender::Generic,
        ] {
            let wrong_secret = sent_by(sender, "push", b"another secret", json.as_bytes());
            let result = receive(&wrong_secret, &[SECRET], JSON, json.as_bytes());
            assert_eq!(result, Err(WebhookError::BadSignature), "{sender:?}");
            let signed = sent_by(sender, "push", SECRET, json.as_bytes());
            let result = receive(&signed, &[SECRET], JSON, tampered.as_bytes());
            assert_eq!(result, Err(WebhookError::BadSignature), "{sender:?}");
        }
        let gitlab = sent_by(Sender::GitLab, "Push Hook", b"another secret", b"");
        let result = receive(&gitlab, &[SECRET], JSON, json.as_bytes());
        assert_eq!(result, Err(WebhookError::BadToken));
    }

    #[test]
    fn an_empty_secret_never_verifies() {
        let headers = sent_by(Sender::GitHub, "push", b"", BODY);
        assert_eq!(
            receive(&headers, &[b""], JSON, BODY),
            Err(WebhookError::BadSignature)
        );
        let gitlab = h(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "")]);
        assert_eq!(
            receive(&gitlab, &[b""], JSON, BODY),
            Err(WebhookError::BadToken)
        );
    }

    #[test]
    fn secret_rotation_accepts_the_old_and_the_new_secret_only() {
        let json = push_json("refs/heads/main", "");
        let (old, new) = (&b"old secret"[..], &b"new secret"[..]);
        for sender in [
            Sender::GitHub,
            Sender::Gitea,
            Sender::Generic,
            Sender::GitLab,
        ] {
            let event = if sender == Sender::GitLab {
                "Push Hook"
            } else {
                "push"
            };
            for secret in [old, new] {
                let headers = sent_by(sender, event, secret, json.as_bytes());
                let result = receive(&headers, &[old, new], JSON, json.as_bytes());
                assert!(result.is_ok(), "{sender:?} {secret:?}: {result:?}");
            }
            let retired = sent_by(sender, event, b"retired secret", json.as_bytes());
            let result = receive(&retired, &[old, new], JSON, json.as_bytes());
            assert!(
                matches!(
                    result,
                    Err(WebhookError::BadSignature | WebhookError::BadToken)
                ),
                "{sender:?}: {result:?}"
            );
        }
    }

    #[test]
    fn a_gitlab_token_is_compared_whole() {
        for token in [
            "It's a Secret",
            "It's a Secret to Everybody!",
            "it's a secret to everybody",
        ] {
            let headers = h(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", token)]);
            assert_eq!(
                receive(&headers, &[SECRET], JSON, b"{}"),
                Err(WebhookError::BadToken),
                "{token}"
            );
        }
    }

    #[test]
    fn malformed_digests_are_rejected_without_panic() {
        let prefixed_cases = [
            format!("sha1={}", &DIGEST[..40]),
            format!("sha1={DIGEST}"),
            String::new(),
            "sha256=".to_owned(),
            format!("sha256={}", &DIGEST[..63]),
            format!("sha256={DIGEST}0"),
            format!("sha256={}", "g".repeat(64)),
            format!("sha256={}éé", &DIGEST[..60]),
            format!("SHA256={DIGEST}"),
            format!(" sha256={DIGEST}"),
            DIGEST.to_owned(),
            format!("sha256={}", "a".repeat(10 * 1024)),
        ];
        for header in [HUB_SIGNATURE, GENERIC_SIGNATURE] {
            for value in &prefixed_cases {
                let err = authenticate(&h(&[(header, value)])).unwrap_err();
                assert!(
                    matches!(err, WebhookError::MalformedSignature { header: name, .. } if name == header),
                    "{header}: {value:.80}"
                );
            }
        }
        // Gitea's headers are bare hex; a `sha256=` prefix there is not what Gitea sends.
        for value in [
            format!("sha256={DIGEST}"),
            DIGEST[..63].to_owned(),
            "z".repeat(64),
            String::new(),
        ] {
            let err = authenticate(&h(&[("x-gitea-signature", &value)])).unwrap_err();
            assert!(
                matches!(
                    err,
                    WebhookError::MalformedSignature {
                        header: "x-gitea-signature",
                        ..
                    }
                ),
                "{value}"
            );
        }
    }

    #[test]
    fn error_messages_are_lower_case_without_a_trailing_period() {
        use WebhookError::*;
        let all = [
            MissingSignature(HUB_SIGNATURE),
            MalformedSignature {
                header: HUB_SIGNATURE,
                expected: "x",
            },
            DuplicateSignature(HUB_SIGNATURE),
            AmbiguousAuthentication("x".to_owned()),
            BadSignature,
            BadToken,
            UnsignedForm("gitea"),
            MissingEvent("x-github-event"),
            InvalidPayload("x".to_owned()),
        ];
        for message in all.iter().map(ToString::to_string) {
            let lower = !message.starts_with(|c: char| c.is_uppercase());
            assert!(lower && !message.ends_with('.'), "{message}");
        }
    }

    // --- form deliveries ----------------------------------------------------------------------

    #[test]
    fn a_github_form_is_signed_over_the_form_body() {
        let json = push_json("refs/heads/main", r#","after":"abc""#);
        let body = form(&json);
        let headers = sent_by(Sender::GitHub, "push", SECRET, body.as_bytes());
        let from_form = pushed(receive(&headers, &[SECRET], FORM, body.as_bytes()));
        assert_eq!(Ok(from_form), push_of(&json));
        // Signed over the JSON instead, as Gitea does: not GitHub's rule.
        let over_json = sent_by(Sender::GitHub, "push", SECRET, json.as_bytes());
        let result = receive(&over_json, &[SECRET], FORM, body.as_bytes());
        assert_eq!(result, Err(WebhookError::BadSignature));
    }

    #[test]
    fn a_gitea_forgejo_or_gogs_form_is_signed_over_its_json_payload() {
        // The first problem of issue 16: Gitea signs the JSON, then wraps it in the form.
        let json = real_payload("gitea-push.json");
        let body = form(&json);
        for sender in [Sender::Gitea, Sender::Forgejo, Sender::Gogs] {
            let headers = sent_by(sender, "push", SECRET, json.as_bytes());
            for content_type in [FORM, Some(&b"application/x-www-form-urlencoded"[..])] {
                let push = pushed(receive(&headers, &[SECRET], content_type, body.as_bytes()));
                assert_eq!(push.refs, ["refs/heads/develop"], "{sender:?}");
            }
            // Signed over the form body: not what these servers do.
            let over_form = sent_by(sender, "push", SECRET, body.as_bytes());
            let result = receive(&over_form, &[SECRET], FORM, body.as_bytes());
            assert_eq!(result, Err(WebhookError::BadSignature), "{sender:?}");
            // A form with no `payload` has nothing signed in it.
            let result = receive(&headers, &[SECRET], FORM, b"other=1");
            assert_eq!(result, Err(WebhookError::UnsignedForm(sender.name())));
        }
    }

    #[test]
    fn a_form_without_payload_or_with_non_json_payload_is_invalid_after_the_signature() {
        let invalid = |message: &str| Err(WebhookError::InvalidPayload(message.to_owned()));
        let receive_github = |body: &[u8], content_type| {
            let headers = sent_by(Sender::GitHub, "push", SECRET, body);
            receive(&headers, &[SECRET], content_type, body)
        };
        assert_eq!(
            receive_github(b"other=1", FORM),
            invalid("form body has no `payload` field")
        );
        assert_eq!(
            receive_github(b"payload=not%20json", FORM),
            invalid("invalid JSON: expected ident at line 1 column 2")
        );
        // A form body without the form content type is read as JSON, and is not JSON.
        assert_eq!(
            receive_github(b"payload=%7B%7D", None),
            invalid("invalid JSON: expected value at line 1 column 1")
        );
    }

    // --- events and payloads ------------------------------------------------------------------

    #[test]
    fn ping_is_pong_only_for_a_json_object() {
        let ping = br#"{"zen":"Design for failure.","hook_id":1,"hook":{"events":["push"]}}"#;
        let headers = sent_by(Sender::GitHub, "ping", SECRET, ping);
        let result = receive(&headers, &[SECRET], JSON, ping);
        assert_eq!(result, Ok((Sender::GitHub, Delivery::Ping)));
        for body in [&b"[]"[..], b"null", b"{", b""] {
            let headers = sent_by(Sender::GitHub, "ping", SECRET, body);
            let result = receive(&headers, &[SECRET], JSON, body);
            assert!(
                matches!(result, Err(WebhookError::InvalidPayload(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn missing_or_unreadable_event_header_is_rejected_except_for_gitlab() {
        let body = push_json("refs/heads/main", "");
        for value in [None, Some(&b"\xff"[..]), Some(b" ")] {
            let mut headers = sent_by(Sender::GitHub, "push", SECRET, body.as_bytes());
            headers.0.retain(|(n, _)| n != "X-GitHub-Event");
            if let Some(value) = value {
                headers
                    .0
                    .push(("X-GitHub-Event".to_owned(), value.to_vec()));
            }
            let result = receive(&headers, &[SECRET], JSON, body.as_bytes());
            assert_eq!(result, Err(WebhookError::MissingEvent("x-github-event")));
        }
        let gitlab = h(&[("x-gitlab-token", "It's a Secret to Everybody")]);
        let result = receive(&gitlab, &[SECRET], JSON, body.as_bytes());
        assert!(
            matches!(result, Ok((Sender::GitLab, Delivery::Ignored(_)))),
            "{result:?}"
        );
    }

    #[test]
    fn other_events_are_ignored_naming_them() {
        let body = br#"{"action":"opened"}"#;
        for (sender, event) in [
            (Sender::GitHub, "issues"),
            (Sender::GitHub, "Push"),
            (Sender::Gitea, "pull_request"),
            (Sender::Forgejo, "create"),
            (Sender::Gogs, "delete"),
            (Sender::GitLab, "Merge Request Hook"),
            (Sender::GitLab, "Pipeline Hook"),
            (Sender::GitLab, "A Hook Of The Future"),
        ] {
            let headers = sent_by(sender, event, SECRET, body);
            let result = receive(&headers, &[SECRET], JSON, body);
            let expected = Delivery::Ignored(format!("{event} events are not handled"));
            assert_eq!(result, Ok((sender, expected)));
        }
    }

    #[test]
    fn forgejo_reads_its_own_event_header_first() {
        let body = push_json("refs/heads/main", "");
        let bare = hex_hmac(SECRET, body.as_bytes());
        let headers = h(&[
            ("x-forgejo-event", "push"),
            ("x-gitea-event", "issues"),
            ("x-forgejo-signature", &bare),
        ]);
        let result = receive(&headers, &[SECRET], JSON, body.as_bytes());
        assert!(
            matches!(result, Ok((Sender::Forgejo, Delivery::Push(_)))),
            "{result:?}"
        );
    }

    #[test]
    fn gitlab_never_fails_an_authentic_delivery() {
        // GitLab disables a hook after repeated 4xx answers: everything authentic is 2xx.
        let secret = "It's a Secret to Everybody";
        let bodies: [&[u8]; 8] = [
            b"",
            b"not json",
            b"[]",
            br#"{"ref":5}"#,
            b"\xff\xfe",
            br#"{"event_name":"push"}"#,
            br#"{"event_name":7}"#,
            br#"{"object_kind":"push","ref":"refs/heads/main","repository":"x"}"#,
        ];
        for event in ["Push Hook", "Tag Push Hook", "System Hook", "Note Hook", ""] {
            for body in bodies {
                let headers = h(&[("x-gitlab-event", event), ("x-gitlab-token", secret)]);
                let result = receive(&headers, &[SECRET], JSON, body);
                assert!(
                    matches!(result, Ok((Sender::GitLab, Delivery::Ignored(_)))),
                    "{event:?} {body:?}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn a_push_needs_only_its_ref() {
        // The second problem of issue 16: `repository` was required although never used.
        let push = push_of(r#"{"ref":"refs/heads/main"}"#).expect("parses");
        assert_eq!(push.refs, ["refs/heads/main"]);
        assert_eq!(push.repository, RepositoryClaim::default());
        let null = push_of(r#"{"ref":"refs/heads/main","repository":null}"#).expect("parses");
        assert_eq!(null, push);
        for sender in [Sender::GitHub, Sender::Gitea, Sender::Gogs] {
            let body = br#"{"ref":"refs/heads/main"}"#;
            let headers = sent_by(sender, "push", SECRET, body);
            let push = pushed(receive(&headers, &[SECRET], JSON, body));
            assert_eq!(
                decide(&push, &refs(MAIN), Some(&ours("https://h/o/r"))),
                Decision::Refresh
            );
        }
    }

    #[test]
    fn the_generic_sender_takes_an_optional_ref() {
        for (body, expected) in [
            (
                &br#"{"ref":"refs/heads/main"}"#[..],
                vec!["refs/heads/main"],
            ),
            (br#"{"ref":null}"#, vec![]),
            (br#"{}"#, vec![]),
            (br#"{"other":[1,2]}"#, vec![]),
            (b"", vec![]),
            (b"  \n", vec![]),
        ] {
            let headers = sent_by(Sender::Generic, "", SECRET, body);
            let push = pushed(receive(&headers, &[SECRET], JSON, body));
            assert_eq!(push.refs, expected, "{body:?}");
        }
        // Without a ref: refresh whatever is tracked; with another: ignored.
        let any = PushEvent::default();
        assert_eq!(decide(&any, &refs(MAIN), None), Decision::Refresh);
        assert!(matches!(decide(&any, &[], None), Decision::Ignored(_)));
        for body in [&b"[]"[..], b"5", br#"{"ref":5}"#, b"{"] {
            let headers = sent_by(Sender::Generic, "", SECRET, body);
            let result = receive(&headers, &[SECRET], JSON, body);
            assert!(
                matches!(result, Err(WebhookError::InvalidPayload(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn invalid_utf8_anywhere_is_invalid_json() {
        let body = b"{\"ref\":\"refs/heads/main\",\"head_commit\":{\"message\":\"caf\xe9\"}}";
        assert!(payload_error(body).starts_with("invalid JSON"));
        assert!(parse_ping(b"{\"zen\":\"\xff\",\"hook_id\":1}").is_err());
        for body in [&b"\xff\xfe"[..], b"{\"ref\":\"\xff\",\"repository\":{}}"] {
            assert!(payload_error(body).starts_with("invalid JSON: "));
        }
    }

    #[test]
    fn type_confused_fields_are_rejected_naming_the_problem() {
        let message = payload_error(r#"{"ref":5}"#);
        let expected = "invalid type: integer `5`, expected a string at line 1 column 8";
        assert_eq!(message, expected);
        let documents = [
            (
                r#"{"ref":"r","repository":"o"}"#,
                "expected a repository object",
            ),
            (
                r#"{"ref":"r","repository":{"clone_url":5}}"#,
                "expected a string",
            ),
            (
                r#"{"ref":"r","project":[]}"#,
                "expected a repository object",
            ),
            (r#"{"repository":{}}"#, "missing field `ref`"),
            ("5", "expected a push event object"),
        ];
        for (body, expected) in documents {
            let message = payload_error(body);
            assert!(message.contains(expected), "{message}");
        }
        for (field, expected) in [
            (r#","deleted":"yes""#, "expected a boolean"),
            (r#","after":1"#, "expected a string"),
            (r#","after":{}"#, "expected a string"),
        ] {
            let message = payload_error(push_json("r", field));
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn huge_echoed_values_are_shortened() {
        let long = "x".repeat(MAX_BODY_BYTES / 2);
        let message = payload_error(push_json("r", &format!(r#","deleted":"{long}""#)));
        assert!(message.chars().count() <= MAX_ECHO_CHARS + 1, "{message}");
        // The ref starts with a JSON-escaped control character (BEL).
        let Decision::Ignored(reason) = decision(&format!("\\u0007{long}"), "", MAIN) else {
            panic!("expected Ignored");
        };
        assert!(reason.len() < 2 * MAX_ECHO_CHARS + 100 && !reason.contains('\u{7}'));
    }

    #[test]
    fn deeply_nested_json_is_rejected_without_overflowing_the_stack() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let open = "[".repeat(100_000);
        for body in [&deep, &open] {
            assert!(parse_ping(body.as_bytes()).is_err());
            payload_error(body);
        }
        payload_error(format!(r#"{{"ref":{deep},"repository":{{}}}}"#));
        payload_error(format!(r#"{{"ref":"r","repository":{{"x":{open}"#));
        // Unknown fields are skipped without recursion: balanced nesting there is just ignored.
        let skipped = format!(r#"{{"ref":"r","repository":{{"x":{deep}}},"x":{deep}}}"#);
        assert!(push_of(&skipped).is_ok());
    }

    // --- decisions ----------------------------------------------------------------------------

    #[test]
    fn push_to_the_tracked_ref_refreshes() {
        let branch_or_tag = ["refs/heads/main", "refs/tags/main"];
        assert_eq!(
            decision("refs/heads/main", "", &branch_or_tag),
            Decision::Refresh
        );
        assert_eq!(
            decision("refs/tags/v1", "", &["refs/tags/v1"]),
            Decision::Refresh
        );
    }

    #[test]
    fn push_to_another_branch_or_with_a_pinned_commit_is_ignored() {
        let reason = "push to refs/heads/dev, tracking refs/heads/main";
        assert_eq!(
            decision("refs/heads/dev", "", MAIN),
            Decision::Ignored(reason.to_owned())
        );
        assert_eq!(
            decision("refs/heads/main", "", &[]),
            Decision::Ignored("tracking a pinned commit".to_owned())
        );
    }

    #[test]
    fn deleting_the_tracked_branch_refreshes_with_a_warning() {
        let zeros = "0".repeat(64);
        for extra in [
            r#","deleted":true"#.to_owned(),
            format!(r#","after":"{}""#, &zeros[..40]),
            format!(r#","after":"{zeros}","deleted":null"#),
        ] {
            let decision = decision("refs/heads/main", &extra, MAIN);
            assert_eq!(decision, Decision::RefreshTrackedRefDeleted, "{extra}");
        }
    }

    #[test]
    fn another_repository_is_ignored_over_clone_ssh_and_web_urls() {
        let tracked = refs(MAIN);
        let claims = |field: &str, url: &str| {
            push_of(&format!(
                r#"{{"ref":"refs/heads/main","repository":{{"{field}":"{url}"}}}}"#
            ))
            .expect("parses")
        };
        let ours_https = ours("https://git.example.com/org/repo.git");
        let ours_ssh = ours("git@git.example.com:org/repo.git");
        for field in [
            "clone_url",
            "ssh_url",
            "html_url",
            "url",
            "git_http_url",
            "git_ssh_url",
        ] {
            for url in [
                "https://git.example.com/org/repo.git",
                "ssh://git@git.example.com:2222/org/repo.git",
                "git@git.example.com:org/repo.git",
                "https://git.example.com/Org/Repo",
            ] {
                let push = claims(field, url);
                for ours in [&ours_https, &ours_ssh] {
                    assert_eq!(
                        decide(&push, &tracked, Some(ours)),
                        Decision::Refresh,
                        "{field} {url}"
                    );
                }
            }
            for url in [
                "https://git.example.com/org/other.git",
                "git@github.com:org/repo.git",
                "https://git.example.com/fork/repo",
            ] {
                let push = claims(field, url);
                let Decision::Ignored(reason) = decide(&push, &tracked, Some(&ours_https)) else {
                    panic!("{field} {url}: expected ignored");
                };
                assert!(
                    reason.starts_with("delivery for repository ")
                        && reason.ends_with("tracking git.example.com/org/repo"),
                    "{reason}"
                );
            }
        }
        // A pinned commit and another repository: the repository is the better reason.
        let other = claims("clone_url", "https://elsewhere/x/y.git");
        assert!(
            matches!(decide(&other, &[], Some(&ours_https)), Decision::Ignored(r) if r.contains("elsewhere/x/y"))
        );
        // A local GIT_REPO_URL (no identity) checks nothing.
        assert_eq!(decide(&other, &tracked, None), Decision::Refresh);
    }

    #[test]
    fn one_matching_url_among_several_is_enough_and_names_decide_only_without_urls() {
        let tracked = refs(MAIN);
        let mirror = push_of(
            r#"{"ref":"refs/heads/main","repository":{"html_url":"https://mirror/x/y","clone_url":"https://git.example.com/org/repo.git"}}"#,
        )
        .expect("parses");
        let ours = ours("https://git.example.com/org/repo.git");
        assert_eq!(decide(&mirror, &tracked, Some(&ours)), Decision::Refresh);
        let by_name = |name: &str| {
            push_of(&format!(
                r#"{{"ref":"refs/heads/main","repository":{{"full_name":"{name}"}}}}"#
            ))
            .expect("parses")
        };
        assert_eq!(
            decide(&by_name("Org/Repo"), &tracked, Some(&ours)),
            Decision::Refresh
        );
        assert!(matches!(
            decide(&by_name("org/other"), &tracked, Some(&ours)),
            Decision::Ignored(_)
        ));
        // A name that fits does not rescue URLs that do not.
        let both = push_of(
            r#"{"ref":"refs/heads/main","repository":{"full_name":"org/repo","clone_url":"https://other/org/repo.git"}}"#,
        )
        .expect("parses");
        assert!(matches!(
            decide(&both, &tracked, Some(&ours)),
            Decision::Ignored(_)
        ));
    }

    // --- real payloads ------------------------------------------------------------------------

    #[test]
    fn real_github_push_creating_a_branch_parses() {
        let json = real_payload("github-push-new-branch.json");
        let headers = sent_by(Sender::GitHub, "push", SECRET, json.as_bytes());
        let push = pushed(receive(&headers, &[SECRET], JSON, json.as_bytes()));
        assert_eq!(push.refs, ["refs/heads/master"]);
        assert_eq!(
            push.after.as_deref(),
            Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246")
        );
        assert!(!push.deleted);
        assert!(
            push.repository
                .names
                .contains(&"Codertocat/Hello-World".to_owned())
        );
        let tracked = refs(&["refs/heads/master"]);
        for url in [
            "https://github.com/Codertocat/Hello-World.git",
            "git@github.com:Codertocat/Hello-World.git",
        ] {
            assert_eq!(
                decide(&push, &tracked, Some(&ours(url))),
                Decision::Refresh,
                "{url}"
            );
        }
        let other = ours("https://github.com/Codertocat/Other.git");
        assert!(matches!(
            decide(&push, &tracked, Some(&other)),
            Decision::Ignored(_)
        ));
    }

    #[test]
    fn real_github_tag_deletion_signed_and_form_encoded_is_a_deletion() {
        let json = real_payload("github-push-tag-deleted.json");
        let body = form(&json);
        let headers = sent_by(Sender::GitHub, "push", SECRET, body.as_bytes());
        let push = pushed(receive(&headers, &[SECRET], FORM, body.as_bytes()));
        assert_eq!(Ok(&push), push_of(&json).as_ref());
        assert!(push.deleted && push.refs == ["refs/tags/simple-tag"]);
        let decision = decide(&push, &refs(&["refs/tags/simple-tag"]), None);
        assert_eq!(decision, Decision::RefreshTrackedRefDeleted);
    }

    #[test]
    fn real_gitea_and_forgejo_pushes_json_and_form_with_every_header_they_send() {
        for (sender, file, repo) in [
            (Sender::Gitea, "gitea-push.json", "gitea/webhooks"),
            (Sender::Forgejo, "forgejo-push.json", "forgejo/webhooks"),
        ] {
            let json = real_payload(file);
            let tracked = refs(&["refs/heads/develop"]);
            let ours_ssh = ours(&format!("ssh://git@localhost:2222/{repo}.git"));
            let ours_http = ours(&format!("http://localhost:3000/{repo}"));
            let headers = sent_by(sender, "push", SECRET, json.as_bytes());
            for (content_type, body) in [(JSON, json.clone()), (FORM, form(&json))] {
                let push = pushed(receive(&headers, &[SECRET], content_type, body.as_bytes()));
                assert_eq!(push.refs, ["refs/heads/develop"]);
                assert_eq!(
                    push.after.as_deref(),
                    Some("bffeb74224043ba2feb48d137756c8a9331c449a")
                );
                for ours in [&ours_ssh, &ours_http] {
                    assert_eq!(decide(&push, &tracked, Some(ours)), Decision::Refresh);
                }
                let other = ours("http://localhost:3000/gitea/other.git");
                assert!(matches!(
                    decide(&push, &tracked, Some(&other)),
                    Decision::Ignored(_)
                ));
            }
        }
    }

    #[test]
    fn real_legacy_gogs_push_with_only_a_web_url() {
        let json = real_payload("gogs-push-legacy.json");
        let headers = sent_by(Sender::Gogs, "push", SECRET, json.as_bytes());
        for (content_type, body) in [(JSON, json.clone()), (FORM, form(&json))] {
            let push = pushed(receive(&headers, &[SECRET], content_type, body.as_bytes()));
            assert_eq!(push.refs, ["refs/heads/master"]);
            assert_eq!(push.after, None);
            let tracked = refs(&["refs/heads/master"]);
            let ours = ours("git@localhost:unknown/gogs.git");
            assert_eq!(decide(&push, &tracked, Some(&ours)), Decision::Refresh);
        }
    }

    #[test]
    fn real_gitlab_push_tag_push_and_system_hooks() {
        let mike = ours("git@example.com:mike/diaspora.git");
        let jsmith = ours("https://example.com/jsmith/example.git");
        for (event, file, git_ref, repo) in [
            ("Push Hook", "gitlab-push.json", "refs/heads/master", &mike),
            (
                "Tag Push Hook",
                "gitlab-tag-push.json",
                "refs/tags/v1.0.0",
                &jsmith,
            ),
            (
                "System Hook",
                "gitlab-system-hook-push.json",
                "refs/heads/master",
                &mike,
            ),
            (
                "System Hook",
                "gitlab-system-hook-repository-update.json",
                "refs/heads/master",
                &jsmith,
            ),
        ] {
            let json = real_payload(file);
            let headers = sent_by(Sender::GitLab, event, SECRET, b"");
            let push = pushed(receive(&headers, &[SECRET], JSON, json.as_bytes()));
            assert_eq!(push.refs, [git_ref], "{file}");
            assert!(!push.deleted, "{file}");
            let tracked = refs(&[git_ref]);
            assert_eq!(
                decide(&push, &tracked, Some(repo)),
                Decision::Refresh,
                "{file}"
            );
            let other = ours("git@example.com:mike/other.git");
            assert!(
                matches!(decide(&push, &tracked, Some(&other)), Decision::Ignored(_)),
                "{file}"
            );
            let dev = refs(&["refs/heads/dev"]);
            assert!(
                matches!(decide(&push, &dev, Some(repo)), Decision::Ignored(_)),
                "{file}"
            );
        }
    }

    #[test]
    fn a_gitlab_branch_deletion_is_a_deletion() {
        let json = real_payload("gitlab-push.json")
            .replace(
                r#""after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7""#,
                r#""after": "0000000000000000000000000000000000000000""#,
            )
            .replace(
                r#""checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7""#,
                r#""checkout_sha": null"#,
            );
        let headers = sent_by(Sender::GitLab, "Push Hook", SECRET, b"");
        let push = pushed(receive(&headers, &[SECRET], JSON, json.as_bytes()));
        let decision = decide(&push, &refs(&["refs/heads/master"]), None);
        assert_eq!(decision, Decision::RefreshTrackedRefDeleted);
    }

    #[test]
    fn gitlab_system_hooks_of_other_events_are_ignored() {
        let headers = sent_by(Sender::GitLab, "System Hook", SECRET, b"");
        let body = br#"{"event_name":"project_create","path_with_namespace":"jsmith/storecloud"}"#;
        let result = receive(&headers, &[SECRET], JSON, body);
        assert_eq!(
            result,
            Ok((
                Sender::GitLab,
                Delivery::Ignored("system hook project_create events are not handled".to_owned())
            ))
        );
    }
}
