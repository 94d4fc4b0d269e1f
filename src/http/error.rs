//! The edge's one error type, and the one place where an error becomes a status code.
//!
//! Handlers, guards and layers answer every refusal and failure with an [`ApiError`]; its
//! [`IntoResponse`] picks the status ([`ApiError::status`]) and writes `{"error": "…"}`. An
//! internal error is logged there, once, with its cause chain; the client reads a plain
//! `internal error`. The domain errors the edge answers (a webhook delivery's, an
//! acknowledgement's) are sorted into the variants here, by `From`, so that a new domain
//! variant needs a decision in this file.
//!
//! Uses: axum, the error types of webhook and reconcile.

use std::error::Error;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::reconcile::AckError;
use crate::webhook::WebhookError;

/// Why a request was refused or failed. The message is the client's: it never holds a
/// secret, a command line or a cause of [`ApiError::Internal`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No such endpoint, stack or asset, or the webhook while no secret is set.
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// Missing or wrong credentials: the API token, or a webhook delivery's signature.
    #[error("{0}")]
    Unauthorized(String),
    /// A mutating request sent by a page of another site.
    #[error("cross-site request refused")]
    Forbidden,
    #[error("expected content-type: application/json")]
    UnsupportedMediaType,
    #[error("body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// `what` (the body, the whole request) did not arrive within its timeout.
    #[error("{what} did not arrive in time")]
    RequestTimeout { what: &'static str },
    /// The request itself is wrong; the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// The request is fine but the state does not allow it (reconciling is disabled, the
    /// stack has no drift to acknowledge).
    #[error("{0}")]
    Conflict(String),
    /// A bounded resource is taken; the client may try again later.
    #[error("{0}")]
    Unavailable(&'static str),
    /// Our fault. `context` says what failed; it and the source go to the log only.
    #[error("internal error")]
    Internal {
        context: &'static str,
        source: Box<dyn Error + Send + Sync>,
    },
}

impl ApiError {
    /// An internal error: `context` (`cannot render a dashboard page`) and `source` are
    /// logged when it is answered.
    pub fn internal(
        context: &'static str,
        source: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> Self {
        Self::Internal {
            context,
            source: source.into(),
        }
    }

    /// The status each error is answered with: the one place that chooses.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal { context, source } = &self {
            tracing::error!(error = %crate::error_chain(&**source), "{context}");
        }
        let body = ErrorBody {
            error: self.to_string(),
        };
        (self.status(), Json(body)).into_response()
    }
}

/// A delivery without one valid signature or token is unauthorised; anything else wrong with an
/// authentic one is the sender's bad request (GitLab's never get here: `webhook` answers them
/// `ignored`).
impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::MissingSignature(_)
            | WebhookError::MalformedSignature { .. }
            | WebhookError::DuplicateSignature(_)
            | WebhookError::AmbiguousAuthentication(_)
            | WebhookError::BadSignature
            | WebhookError::BadToken
            | WebhookError::UnsignedForm(_) => Self::Unauthorized(e.to_string()),
            WebhookError::MissingEvent(_) | WebhookError::InvalidPayload(_) => {
                Self::BadRequest(e.to_string())
            }
        }
    }
}

impl From<AckError> for ApiError {
    fn from(e: AckError) -> Self {
        match e {
            AckError::UnknownStack(_) => Self::NotFound(e.to_string()),
            AckError::NotDrifted { .. } => Self::Conflict(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(error: ApiError) -> (StatusCode, String) {
        let response = error.into_response();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("an error body is small");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn an_error_is_answered_as_json_with_its_status() {
        assert_eq!(
            answer(ApiError::PayloadTooLarge { limit: 4096 }).await,
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                r#"{"error":"body larger than 4096 bytes"}"#.to_owned()
            )
        );
        assert_eq!(
            answer(ApiError::RequestTimeout { what: "the body" }).await,
            (
                StatusCode::REQUEST_TIMEOUT,
                r#"{"error":"the body did not arrive in time"}"#.to_owned()
            )
        );
    }

    #[tokio::test]
    async fn an_internal_error_shows_the_client_nothing_of_its_cause() {
        let cause = std::io::Error::other("/var/lib/docker-cd/secret-path: permission denied");
        let (status, body) =
            answer(ApiError::internal("cannot render a dashboard page", cause)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, r#"{"error":"internal error"}"#);
    }

    #[test]
    fn a_bad_signature_is_unauthorised_and_a_bad_payload_a_bad_request() {
        for e in [
            WebhookError::MissingSignature("x-hub-signature-256"),
            WebhookError::MalformedSignature {
                header: "x-gitea-signature",
                expected: "64 hex digits",
            },
            WebhookError::DuplicateSignature("x-gitlab-token"),
            WebhookError::AmbiguousAuthentication("two kinds".into()),
            WebhookError::BadSignature,
            WebhookError::BadToken,
            WebhookError::UnsignedForm("gitea"),
        ] {
            assert_eq!(ApiError::from(e).status(), StatusCode::UNAUTHORIZED);
        }
        for e in [
            WebhookError::MissingEvent("x-github-event"),
            WebhookError::InvalidPayload("not JSON".into()),
        ] {
            assert_eq!(ApiError::from(e).status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn an_unknown_stack_is_not_found_and_one_without_drift_a_conflict() {
        let unknown = ApiError::from(AckError::UnknownStack("web".into()));
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert_eq!(unknown.to_string(), r#"no stack "web""#);
        let synced = ApiError::from(AckError::NotDrifted {
            path: "web".into(),
            status: crate::desired_state::StackStatus::Synced,
        });
        assert_eq!(synced.status(), StatusCode::CONFLICT);
    }
}
