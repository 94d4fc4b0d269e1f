//! What every request passes before a handler reads its body: the cross-site check of mutating
//! routes, the API token, and reading a body within its route's limit.
//!
//! Everything here decides from the headers alone, so a client that is refused never gets a
//! byte of its body read.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::{ApiError, AppState, authorize};

/// The one mutating route that may be called from anywhere: its signature authenticates it,
/// and forges send no `Origin`.
const WEBHOOK_PATH: &str = "/api/webhook";

/// Refuses cross-site requests to every mutating route but the webhook (finding 5, CSRF):
/// without `API_TOKEN`, a form on another site could otherwise make a visitor's browser ask
/// for a refresh or acknowledge drift.
///
/// A browser tells where a request comes from: `Sec-Fetch-Site` (every current browser), else
/// `Origin`, which must then name this host. A request with neither comes from no browser
/// (curl, `docker-cd refresh`) and passes. A content type, if any, must be JSON: a page on
/// another site can send a form or `text/plain` without asking first, but not JSON.
pub(super) async fn refuse_cross_site(request: Request, next: Next) -> Response {
    if request.method().is_safe() || request.uri().path() == WEBHOOK_PATH {
        return next.run(request).await;
    }
    match check_same_origin(request.headers()).and_then(|()| check_json_if_typed(request.headers()))
    {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// The cross-site part of [`refuse_cross_site`]: Go's `CrossOriginProtection` rule.
fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let refused = |why: &str| {
        tracing::warn!(reason = why, "refused a cross-site request");
        Err(ApiError::Forbidden)
    };
    let Some(site) = single(headers, "sec-fetch-site")? else {
        return match single(headers, header::ORIGIN.as_str())? {
            None => Ok(()),
            Some(origin) if is_same_origin(origin, headers) => Ok(()),
            Some(_) => refused("origin"),
        };
    };
    // `none`: typed by the user (a bookmark, the address bar), not sent by a page.
    match site.as_bytes() {
        b"same-origin" | b"none" => Ok(()),
        _ => refused("sec-fetch-site"),
    }
}

/// Does `Origin` (`scheme://host[:port]`) name the host this request was sent to?
fn is_same_origin(origin: &HeaderValue, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

/// A content type, when present, must be `application/json` (parameters allowed).
fn check_json_if_typed(headers: &HeaderMap) -> Result<(), ApiError> {
    match single(headers, header::CONTENT_TYPE.as_str())? {
        None => Ok(()),
        Some(value) if is_json(value) => Ok(()),
        Some(_) => Err(ApiError::UnsupportedMediaType),
    }
}

/// For a route that reads a JSON body: the content type must say so.
pub(super) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    match single(headers, header::CONTENT_TYPE.as_str())? {
        Some(value) if is_json(value) => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

fn is_json(value: &HeaderValue) -> bool {
    value.to_str().is_ok_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// A header that must appear at most once: two are refused, since a proxy and the handler
/// might each read a different one.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a HeaderValue>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::BadRequest(format!("more than one {name} header")));
    }
    Ok(first)
}

/// The API token of a protected route, checked from the headers before the handler reads
/// anything (finding 2: the acknowledgement used to read 2 MiB first).
pub(super) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match authorize(&state, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Reads a body of at most `limit` bytes: a declared `Content-Length` over it is refused
/// before a byte is read, and any other body (chunked) is cut off at it.
///
/// The pieces are kept as hyper delivered them and joined once at the end, so a body that
/// never finishes holds what arrived and nothing more.
pub(super) async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, ApiError> {
    check_declared_length(headers, limit)?;
    let mut pieces = Vec::new();
    let mut length = 0usize;
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| {
            if is_timeout(&e) {
                ApiError::RequestTimeout { what: "the body" }
            } else {
                ApiError::BadRequest("cannot read the body".into())
            }
        })?;
        length += piece.len();
        if length > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        pieces.push(piece);
    }
    Ok(match pieces.len() {
        0 => Bytes::new(),
        1 => pieces.swap_remove(0),
        _ => pieces.concat().into(),
    })
}

/// A declared `Content-Length` over `limit` is refused from the headers alone.
pub(super) fn check_declared_length(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(())
}

/// Did tower-http's body timeout end this body?
fn is_timeout(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Gives an error answer made by a layer rather than a handler (tower-http's 408 of a request
/// that took too long) the `{"error": …}` body every other error has.
pub(super) async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if status == StatusCode::REQUEST_TIMEOUT
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        return ApiError::RequestTimeout {
            what: "the request",
        }
        .into_response();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn status(result: Result<(), ApiError>) -> Option<StatusCode> {
        result.err().map(|e| e.status())
    }

    #[test]
    fn requests_from_no_browser_pass() {
        assert_eq!(
            status(check_same_origin(&headers(&[("host", "cd:8080")]))),
            None
        );
    }

    #[test]
    fn a_foreign_origin_or_site_is_refused() {
        let h = headers(&[("host", "cd:8080"), ("origin", "http://evil.example")]);
        assert_eq!(status(check_same_origin(&h)), Some(StatusCode::FORBIDDEN));
        let h = headers(&[("host", "cd:8080"), ("origin", "null")]);
        assert_eq!(status(check_same_origin(&h)), Some(StatusCode::FORBIDDEN));
        for site in ["cross-site", "same-site"] {
            let h = headers(&[("host", "cd:8080"), ("sec-fetch-site", site)]);
            assert_eq!(status(check_same_origin(&h)), Some(StatusCode::FORBIDDEN));
        }
        // A browser's own word wins over an Origin that a proxy's Host rewrite broke, and
        // the other way round.
        let h = headers(&[
            ("host", "cd:8080"),
            ("origin", "http://cd:8080"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert_eq!(status(check_same_origin(&h)), Some(StatusCode::FORBIDDEN));
    }

    #[test]
    fn the_dashboard_on_its_own_origin_passes() {
        let h = headers(&[("host", "cd:8080"), ("origin", "http://CD:8080")]);
        assert_eq!(status(check_same_origin(&h)), None);
        let h = headers(&[
            ("host", "127.0.0.1:9"),
            ("origin", "https://cd.example"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(status(check_same_origin(&h)), None);
    }

    #[test]
    fn only_json_or_no_content_type_passes() {
        assert_eq!(status(check_json_if_typed(&headers(&[]))), None);
        let json = headers(&[("content-type", "Application/JSON; charset=utf-8")]);
        assert_eq!(status(check_json_if_typed(&json)), None);
        assert_eq!(status(require_json(&json)), None);
        assert_eq!(
            status(require_json(&headers(&[]))),
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        for other in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
        ] {
            let h = headers(&[("content-type", other)]);
            assert_eq!(
                status(check_json_if_typed(&h)),
                Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
                "{other}"
            );
        }
    }

    #[test]
    fn a_repeated_origin_or_content_type_is_refused() {
        let h = headers(&[
            ("origin", "http://cd"),
            ("origin", "http://cd"),
            ("host", "cd"),
        ]);
        assert_eq!(status(check_same_origin(&h)), Some(StatusCode::BAD_REQUEST));
        let h = headers(&[
            ("content-type", "application/json"),
            ("content-type", "text/plain"),
        ]);
        assert_eq!(
            status(check_json_if_typed(&h)),
            Some(StatusCode::BAD_REQUEST)
        );
    }

    #[tokio::test]
    async fn a_body_over_its_limit_is_refused_by_length_or_by_what_arrives() {
        let declared = headers(&[("content-length", "11")]);
        let got = read_body(Body::from("0123456789a"), &declared, 10).await;
        assert!(
            matches!(got, Err(ApiError::PayloadTooLarge { limit: 10 })),
            "{got:?}"
        );
        let got = read_body(Body::from("0123456789a"), &HeaderMap::new(), 10).await;
        assert!(
            matches!(got, Err(ApiError::PayloadTooLarge { limit: 10 })),
            "{got:?}"
        );
        let got = read_body(Body::from("0123456789"), &HeaderMap::new(), 10).await;
        assert_eq!(got.unwrap(), "0123456789");
    }
}
