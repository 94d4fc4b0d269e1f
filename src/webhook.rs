//! Verifies and interprets push webhooks from GitHub, Gitea and Forgejo (`POST /api/webhook`).
//!
//! Pure: raw body bytes and raw header values in, typed decisions out. No I/O, no async, no
//! logging and no HTTP types; the HTTP layer owns those and maps a [`WebhookError`] to its status
//! code in one place (`src/http/error.rs`: the signature errors 401, the others 400). Uses only
//! `hmac`, `sha2`, `hex`, `serde`, `serde_json` and `serde_urlencoded`.
//!
//! The caller must check in this order, so that an unauthenticated body is never parsed, and a
//! delivery without a usable signature header is refused before its body is read:
//! 1. [`parse_signature`] of the `X-Hub-Signature-256` headers: 401 on any error;
//! 2. body longer than [`MAX_BODY_BYTES`]: 413, before anything is hashed;
//! 3. [`Signature::verify`] over the raw body bytes: 401 on any error;
//! 4. [`event_kind`]: 400 when missing; [`EventKind::Other`] is answered 2xx "ignored";
//! 5. [`EventKind::Ping`]: [`parse_ping`], then 200; [`EventKind::Push`]: [`parse_push`] (400 on
//!    error), then [`decide`].
//!
//! A push never names what gets deployed: the agent refreshes and deploys the tip it fetches
//! itself, so replayed, duplicated or out-of-order deliveries are harmless.

use std::borrow::Cow;
use std::collections::HashMap;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::error::Category;
use sha2::Sha256;

/// Largest body accepted; the caller enforces it before calling anything here.
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

/// The only signature format accepted: `sha256=` then 64 hex digits.
const SIGNATURE_PREFIX: &[u8] = b"sha256=";
const SIGNATURE_HEX_LEN: usize = 64;

const FORM_MEDIA_TYPE: &[u8] = b"application/x-www-form-urlencoded";

/// Most characters of untrusted text (a ref, an event name, a parser message) copied into an error
/// or a reason: serde echoes offending string values whole, and a 5 MiB `ref` must not reach a log.
const MAX_ECHO_CHARS: usize = 256;

/// Why a delivery was refused. Messages never contain the secret or any digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    /// No `X-Hub-Signature-256` header (a legacy sha1 `X-Hub-Signature` alone counts as missing).
    #[error("missing x-hub-signature-256 header")]
    MissingSignature,
    /// The header is not exactly `sha256=` followed by 64 hex digits.
    #[error("malformed x-hub-signature-256 header: expected `sha256=` and 64 hex digits")]
    MalformedSignature,
    /// More than one `X-Hub-Signature-256` header: which one a proxy checked is unknowable.
    #[error("more than one x-hub-signature-256 header")]
    DuplicateSignature,
    /// Well-formed, but not the HMAC of this body under the configured secret.
    #[error("signature does not match the body")]
    BadSignature,
    /// None of `X-GitHub-Event`, `X-Gitea-Event`, `X-Gogs-Event` is usable.
    #[error("missing event header (x-github-event, x-gitea-event or x-gogs-event)")]
    MissingEvent,
    /// The body cannot be read as the event it claims to be; the text names the problem.
    #[error("{0}")]
    InvalidPayload(String),
}

/// A well-formed `X-Hub-Signature-256` value: the 32 bytes of a claimed HMAC-SHA256. Checking
/// the form costs nothing, so it is done from the headers, before the body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature([u8; SIGNATURE_HEX_LEN / 2]);

/// The signature of a delivery from the raw values of its `X-Hub-Signature-256` headers (all
/// of them, in order): exactly one, exactly `sha256=` and 64 hex digits.
///
/// The digits may be lower-case (what GitHub, Gitea and Forgejo send) or upper-case, since
/// only the decoded bytes are compared.
pub fn parse_signature<'a>(
    headers: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Signature, WebhookError> {
    let mut headers = headers.into_iter();
    let header = headers.next().ok_or(WebhookError::MissingSignature)?;
    if headers.next().is_some() {
        return Err(WebhookError::DuplicateSignature);
    }
    // The length is checked before decoding, so a 10 KB header costs nothing.
    let digits = header
        .strip_prefix(SIGNATURE_PREFIX)
        .filter(|digits| digits.len() == SIGNATURE_HEX_LEN)
        .ok_or(WebhookError::MalformedSignature)?;
    let mut received = [0u8; SIGNATURE_HEX_LEN / 2];
    hex::decode_to_slice(digits, &mut received).map_err(|_| WebhookError::MalformedSignature)?;
    Ok(Signature(received))
}

impl Signature {
    /// Constant-time check that this is the HMAC of `body` under `secret`. An empty secret
    /// never verifies: anyone can compute an HMAC under it (the caller should not get here at
    /// all).
    pub fn verify(&self, secret: &[u8], body: &[u8]) -> Result<(), WebhookError> {
        if secret.is_empty() {
            return Err(WebhookError::BadSignature);
        }
        // HMAC accepts keys of any length, so this error cannot happen; it still fails closed.
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret).map_err(|_| WebhookError::BadSignature)?;
        mac.update(body);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&self.0)
            .map_err(|_| WebhookError::BadSignature)
    }
}

/// Constant-time check of `X-Hub-Signature-256: sha256=<hex>` over the raw body bytes:
/// [`parse_signature`] of the one header, if present, then [`Signature::verify`].
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&[u8]>,
) -> Result<(), WebhookError> {
    parse_signature(header)?.verify(secret, body)
}

/// Which event a delivery is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// Sent once when the hook is created; answered 200.
    Ping,
    /// A push to a branch or tag.
    Push,
    /// Any other event, by its header value (shortened and with control characters replaced).
    Other(String),
}

/// Which event this delivery is. Takes the raw values of X-GitHub-Event, X-Gitea-Event,
/// X-Gogs-Event (first present wins, in that order).
///
/// The value is the bare event name (`push`, `ping`, `issues`, …) with surrounding whitespace
/// ignored. A first present header that is empty or not UTF-8 gives [`WebhookError::MissingEvent`].
pub fn event_kind(
    github: Option<&[u8]>,
    gitea: Option<&[u8]>,
    gogs: Option<&[u8]>,
) -> Result<EventKind, WebhookError> {
    let raw = [github, gitea, gogs]
        .into_iter()
        .flatten()
        .next()
        .ok_or(WebhookError::MissingEvent)?;
    let name = std::str::from_utf8(raw)
        .map_err(|_| WebhookError::MissingEvent)?
        .trim();
    Ok(match name {
        "" => return Err(WebhookError::MissingEvent),
        "ping" => EventKind::Ping,
        "push" => EventKind::Push,
        other => EventKind::Other(printable(other)),
    })
}

/// The fields of a push docker-cd uses. Every field is untrusted input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEvent {
    /// `ref`: the full ref name pushed, e.g. `refs/heads/main` or `refs/tags/v1`.
    pub git_ref: String,
    /// `after`: the commit id after the push, if present (null counts as absent).
    pub after: Option<String>,
    /// `deleted` is true, or `after` is all zeros: the ref no longer exists upstream.
    pub deleted: bool,
    /// `repository.full_name`, or empty when absent or null.
    pub repository: String,
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
    repository: RawRepository,
}

#[derive(Deserialize)]
#[serde(expecting = "a repository object")]
struct RawRepository {
    full_name: Option<String>,
}

/// Parses the body: JSON (content type application/json, or absent/other), or form-encoded
/// (content type application/x-www-form-urlencoded, possibly with "; charset=…") whose `payload`
/// field holds the JSON.
///
/// Reads a JSON object with `ref` (string, required), `repository` (object, required) holding
/// `full_name` (string or null, optional), `after` (string or null, optional) and `deleted`
/// (boolean or null, optional). Other fields are ignored; a field of the wrong type is an error
/// ([`WebhookError::InvalidPayload`] with serde's message, which names the expected type and the
/// position), as are non-UTF-8 bytes and invalid JSON (`invalid JSON: …`).
pub fn parse_push(content_type: Option<&[u8]>, body: &[u8]) -> Result<PushEvent, WebhookError> {
    let raw: RawPush = from_json(&json_document(content_type, body)?)?;
    // GitHub sends 40 zeros (SHA-1 repositories) or 64 (SHA-256); Gitea may omit `deleted`.
    let after_is_zero = raw
        .after
        .as_deref()
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b == b'0'));
    Ok(PushEvent {
        git_ref: raw.git_ref,
        deleted: raw.deleted == Some(true) || after_is_zero,
        after: raw.after,
        repository: raw.repository.full_name.unwrap_or_default(),
    })
}

/// Same content-type handling, for a `ping` event: only checks the body is a JSON object (GitHub
/// ping has `zen`, `hook_id`); returns `Ok(())` or `InvalidPayload`.
pub fn parse_ping(content_type: Option<&[u8]>, body: &[u8]) -> Result<(), WebhookError> {
    // A map rather than a struct: derived structs also accept JSON arrays.
    from_json::<HashMap<String, IgnoredAny>>(&json_document(content_type, body)?).map(drop)
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
/// commit id is tracked (every push is then ignored).
///
/// Refs are compared exactly; the payload's commit id plays no part.
pub fn decide(push: &PushEvent, tracked_refs: &[String]) -> Decision {
    if tracked_refs.is_empty() {
        return Decision::Ignored("tracking a pinned commit".to_owned());
    }
    if !tracked_refs.contains(&push.git_ref) {
        return Decision::Ignored(format!(
            "push to {}, tracking {}",
            printable(&push.git_ref),
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
/// invalid sequences replaced, which is what `serde_urlencoded` does.
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
/// shape (serde's message as is). No body can overflow the stack: the types read are two levels
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

    #[test]
    fn invalid_utf8_in_an_unread_field_is_still_invalid_json() {
        let body = b"{\"ref\":\"refs/heads/main\",\"repository\":{},\"head_commit\":{\"message\":\"caf\xe9\"}}";
        let err = parse_push(Some(b"application/json"), body).unwrap_err();
        assert!(
            matches!(&err, WebhookError::InvalidPayload(m) if m.starts_with("invalid JSON")),
            "{err}"
        );
        assert!(parse_ping(None, b"{\"zen\":\"\xff\",\"hook_id\":1}").is_err());
    }

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const DIGEST: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    const JSON: Option<&[u8]> = Some(b"application/json");
    const FORM: Option<&[u8]> = Some(b"application/x-www-form-urlencoded; charset=utf-8");
    const MAIN: &[&str] = &["refs/heads/main"];

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn verify(secret: &[u8], body: &[u8], header: &str) -> Result<(), WebhookError> {
        verify_signature(secret, body, Some(header.as_bytes()))
    }

    fn push_json(git_ref: &str, extra: &str) -> String {
        format!(r#"{{"ref":"{git_ref}","repository":{{"full_name":"o/r"}}{extra}}}"#)
    }

    /// Parses a push built by `push_json` and decides on it.
    fn decision(git_ref: &str, extra: &str, tracked: &[&str]) -> Decision {
        let push = parse_push(JSON, push_json(git_ref, extra).as_bytes()).expect("parses");
        let tracked: Vec<String> = tracked.iter().map(|r| (*r).to_owned()).collect();
        decide(&push, &tracked)
    }

    fn payload_error(body: impl AsRef<[u8]>) -> String {
        match parse_push(JSON, body.as_ref()) {
            Err(WebhookError::InvalidPayload(message)) => message,
            other => panic!("expected InvalidPayload, got {other:?}"),
        }
    }

    fn form(json: &str) -> String {
        serde_urlencoded::to_string([("payload", json)]).expect("encodes")
    }

    fn real_payload(path: &str) -> String {
        std::fs::read_to_string(path).expect("payload copied into tests/payloads")
    }

    #[test]
    fn github_test_vector_verifies_in_either_hex_case() {
        let header = format!("sha256={DIGEST}");
        assert_eq!(sign(SECRET, BODY), header);
        assert_eq!(verify(SECRET, BODY, &header), Ok(()));
        let upper = header.to_uppercase().replace("SHA256=", "sha256=");
        assert_eq!(verify(SECRET, BODY, &upper), Ok(()));
    }

    #[test]
    fn missing_signature_is_rejected() {
        // W1, and W2: the caller reads only X-Hub-Signature-256, so a legacy sha1
        // X-Hub-Signature alone arrives here as None.
        let missing = Err(WebhookError::MissingSignature);
        assert_eq!(verify_signature(SECRET, BODY, None), missing);
    }

    #[test]
    fn two_signature_headers_are_rejected_even_if_one_is_right() {
        // X11: a proxy may check one and the handler read the other.
        let right = sign(SECRET, BODY);
        let wrong = sign(b"another secret", BODY);
        for pair in [[&right, &wrong], [&wrong, &right], [&right, &right]] {
            assert_eq!(
                parse_signature(pair.map(|h| h.as_bytes())),
                Err(WebhookError::DuplicateSignature)
            );
        }
        assert_eq!(
            parse_signature(std::iter::empty()),
            Err(WebhookError::MissingSignature)
        );
        assert!(parse_signature([right.as_bytes()]).is_ok());
    }

    #[test]
    fn signature_of_another_body_or_secret_is_rejected() {
        let header = sign(SECRET, BODY);
        let bad = Err(WebhookError::BadSignature);
        for body in [&b"Hello, World?"[..], b"Hello, World!\n", b""] {
            assert_eq!(verify(SECRET, body, &header), bad);
        }
        assert_eq!(verify(b"another secret", BODY, &header), bad);
        // An empty secret is no secret: even its own HMAC is refused.
        assert_eq!(verify(b"", BODY, &sign(b"", BODY)), bad);
    }

    #[test]
    fn malformed_digests_are_rejected_without_panic() {
        let cases = [
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
            format!("sha256={}", "a".repeat(10 * 1024)),
        ];
        for header in cases {
            let err = verify(SECRET, BODY, &header);
            assert_eq!(err, Err(WebhookError::MalformedSignature), "{header:.80}");
        }
    }

    #[test]
    fn error_messages_are_lower_case_without_a_trailing_period() {
        use WebhookError::*;
        let all = [
            MissingSignature,
            MalformedSignature,
            DuplicateSignature,
            BadSignature,
            MissingEvent,
            InvalidPayload("x".to_owned()),
        ];
        for message in all.iter().map(ToString::to_string) {
            let lower = !message.starts_with(|c: char| c.is_uppercase());
            assert!(lower && !message.ends_with('.'), "{message}");
        }
    }

    #[test]
    fn non_utf8_body_is_invalid_json() {
        for body in [&b"\xff\xfe"[..], b"{\"ref\":\"\xff\",\"repository\":{}}"] {
            let message = payload_error(body);
            assert!(message.starts_with("invalid JSON: "), "{message}");
        }
    }

    #[test]
    fn signed_form_body_verifies_and_parses_like_json() {
        let json = push_json("refs/heads/main", r#","after":"abc""#);
        let body = form(&json);
        let signature = sign(SECRET, body.as_bytes());
        assert_eq!(verify(SECRET, body.as_bytes(), &signature), Ok(()));
        let from_form = parse_push(FORM, body.as_bytes()).expect("form parses");
        assert_eq!(Ok(from_form), parse_push(None, json.as_bytes()));
        let ping = form(r#"{"zen":"z"}"#);
        assert_eq!(parse_ping(FORM, ping.as_bytes()), Ok(()));
    }

    #[test]
    fn form_without_payload_or_with_non_json_payload_is_invalid() {
        let invalid = |message: &str| Err(WebhookError::InvalidPayload(message.to_owned()));
        let no_payload = invalid("form body has no `payload` field");
        assert_eq!(parse_push(FORM, b"other=1"), no_payload);
        let not_json = invalid("invalid JSON: expected ident at line 1 column 2");
        assert_eq!(parse_push(FORM, b"payload=not%20json"), not_json);
        // A form body without the form content type is read as JSON, and is not JSON.
        let not_json = invalid("invalid JSON: expected value at line 1 column 1");
        assert_eq!(parse_push(None, b"payload=%7B%7D"), not_json);
    }

    #[test]
    fn ping_body_must_be_a_json_object() {
        let ping = br#"{"zen":"Design for failure.","hook_id":1,"hook":{"events":["push"]}}"#;
        assert_eq!(parse_ping(JSON, ping), Ok(()));
        for body in [&b"[]"[..], b"null", b"{", b""] {
            let result = parse_ping(None, body);
            assert!(matches!(result, Err(WebhookError::InvalidPayload(_))));
        }
    }

    #[test]
    fn missing_or_unreadable_event_header_is_rejected() {
        let missing = Err(WebhookError::MissingEvent);
        assert_eq!(event_kind(None, None, None), missing);
        assert_eq!(event_kind(Some(b"\xff"), None, None), missing);
        assert_eq!(event_kind(Some(b" "), Some(b"push"), None), missing);
    }

    #[test]
    fn first_present_event_header_wins_and_others_are_named() {
        let (ping, push) = (Some(&b"ping"[..]), Some(&b"push"[..]));
        assert_eq!(event_kind(ping, push, None), Ok(EventKind::Ping));
        assert_eq!(event_kind(None, push, ping), Ok(EventKind::Push));
        assert_eq!(event_kind(None, None, push), Ok(EventKind::Push));
        for name in ["issues", "pull_request", "Push"] {
            let kind = event_kind(Some(name.as_bytes()), None, None);
            assert_eq!(kind, Ok(EventKind::Other(name.to_owned())));
        }
    }

    #[test]
    fn push_to_the_tracked_ref_refreshes() {
        let branch_or_tag = ["refs/heads/main", "refs/tags/main"];
        let branch = decision("refs/heads/main", "", &branch_or_tag);
        assert_eq!(branch, Decision::Refresh);
        let tag = decision("refs/tags/v1", "", &["refs/tags/v1"]);
        assert_eq!(tag, Decision::Refresh);
    }

    #[test]
    fn push_to_another_branch_or_with_a_pinned_commit_is_ignored() {
        let other = decision("refs/heads/dev", "", MAIN);
        let reason = "push to refs/heads/dev, tracking refs/heads/main";
        assert_eq!(other, Decision::Ignored(reason.to_owned()));
        let pinned = decision("refs/heads/main", "", &[]);
        assert_eq!(
            pinned,
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
    fn type_confused_fields_are_rejected_naming_the_problem() {
        let message = payload_error(r#"{"ref":5}"#);
        let expected = "invalid type: integer `5`, expected a string at line 1 column 8";
        assert_eq!(message, expected);
        let documents = [
            (
                r#"{"ref":"r","repository":null}"#,
                "null, expected a repository",
            ),
            (
                r#"{"ref":"r","repository":"o"}"#,
                "expected a repository object",
            ),
            (r#"{"repository":{}}"#, "missing field `ref`"),
            (r#"{"ref":"r"}"#, "missing field `repository`"),
            ("5", "expected a push event object"),
        ];
        for (body, expected) in documents {
            let message = payload_error(body);
            assert!(message.contains(expected), "{message}");
        }
        // Fields added to an otherwise valid push.
        let fields = [
            (r#","deleted":"yes""#, "expected a boolean"),
            (r#","after":1"#, "expected a string"),
            (r#","after":{}"#, "expected a string"),
        ];
        for (field, expected) in fields {
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
            assert!(parse_ping(JSON, body.as_bytes()).is_err());
            payload_error(body);
        }
        payload_error(format!(r#"{{"ref":{deep},"repository":{{}}}}"#));
        payload_error(format!(r#"{{"ref":"r","repository":{{"x":{open}"#));
        // Unknown fields are skipped without recursion: balanced nesting there is just ignored.
        let skipped = format!(r#"{{"ref":"r","repository":{{}},"x":{deep}}}"#);
        assert!(parse_push(JSON, skipped.as_bytes()).is_ok());
    }

    #[test]
    fn real_github_push_creating_a_branch_parses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/payloads/github-push-new-branch.json"
        );
        let push = parse_push(JSON, real_payload(path).as_bytes()).expect("parses");
        let expected = PushEvent {
            git_ref: "refs/heads/master".to_owned(),
            after: Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246".to_owned()),
            deleted: false,
            repository: "Codertocat/Hello-World".to_owned(),
        };
        assert_eq!(push, expected);
        let decision = decide(&push, &["refs/heads/master".to_owned()]);
        assert_eq!(decision, Decision::Refresh);
    }

    #[test]
    fn real_github_tag_deletion_signed_and_form_encoded_is_a_deletion() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/payloads/github-push-tag-deleted.json"
        );
        let json = real_payload(path);
        let body = form(&json);
        let signature = sign(SECRET, body.as_bytes());
        assert_eq!(verify(SECRET, body.as_bytes(), &signature), Ok(()));
        let push = parse_push(FORM, body.as_bytes()).expect("parses");
        assert_eq!(Ok(&push), parse_push(None, json.as_bytes()).as_ref());
        assert!(push.deleted && push.git_ref == "refs/tags/simple-tag");
        let decision = decide(&push, &["refs/tags/simple-tag".to_owned()]);
        assert_eq!(decision, Decision::RefreshTrackedRefDeleted);
    }
}
