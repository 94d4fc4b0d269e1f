//! `POST /api/webhook`: GitHub, Gitea and Forgejo push webhooks.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};

use super::answers::{DeliveryAnswer, DeliveryStatus, RefreshAnswer};
use super::{ApiError, AppState, guard};
use crate::config::Revision;
use crate::desired_state::{RefType, Trigger};
use crate::metrics::WebhookResult;
use crate::untrusted::Untrusted;
use crate::webhook::{self, Decision, EventKind};

/// The refs a push must name to count as a push to the tracked revision.
fn tracked_refs(state: &AppState) -> Vec<String> {
    let status = state.store.refresh_status();
    match (status.ref_type, &state.info.revision) {
        (_, Revision::Commit(_)) | (Some(RefType::Commit), _) => Vec::new(),
        (Some(_), _) if status.revision.is_some() => vec![status.git_ref],
        // The same candidates the git reader asks the remote for.
        (_, revision) => revision.candidate_refs(),
    }
}

/// `POST /api/webhook` (SPEC §7), counted by result in the metrics.
pub(super) async fn webhook(
    state: State<AppState>,
    request: Request,
) -> Result<Json<DeliveryAnswer>, ApiError> {
    let answer = handle(state, request).await;
    crate::metrics::webhook_delivery(delivery_result(&answer));
    answer.map(Json)
}

/// What the metrics call an answer: by its status, or by the kind of refusal.
fn delivery_result(answer: &Result<DeliveryAnswer, ApiError>) -> WebhookResult {
    match answer {
        Ok(answer) => match answer.status() {
            DeliveryStatus::Pong => WebhookResult::Ping,
            DeliveryStatus::Ignored => WebhookResult::Ignored,
            DeliveryStatus::Refreshing | DeliveryStatus::Queued => WebhookResult::Accepted,
        },
        Err(e) => match e {
            ApiError::NotFound(_) => WebhookResult::Disabled,
            ApiError::PayloadTooLarge { .. } => WebhookResult::TooLarge,
            ApiError::Unauthorized(_) => WebhookResult::Unauthorized,
            _ => WebhookResult::BadRequest,
        },
    }
}

/// Order: enabled? → signature header (one, well-formed) → size → body, within the limit, one
/// of [`super::EdgeLimits::max_webhook_bodies`] at a time → signature over the raw bytes →
/// event → payload → decision. Nothing is read before the headers authorise reading it, and
/// nothing is parsed before the signature is verified.
async fn handle(
    State(state): State<AppState>,
    request: Request,
) -> Result<DeliveryAnswer, ApiError> {
    let Some(secret) = state.info.webhook_secret.clone() else {
        return Err(ApiError::NotFound(
            "the webhook is disabled: set WEBHOOK_SECRET (or WEBHOOK_SECRET_FILE) to enable it"
                .into(),
        ));
    };
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let delivery = header_str(&headers, "x-github-delivery")
        .or_else(|| header_str(&headers, "x-gitea-delivery"))
        .unwrap_or("-");
    let delivery = Untrusted::bounded(delivery, 64);
    let unauthorized = |e: webhook::WebhookError| {
        tracing::warn!(%delivery, reason = %e, "rejected webhook: authentication failed");
        ApiError::from(e)
    };
    let signature = webhook::parse_signature(
        headers
            .get_all("x-hub-signature-256")
            .iter()
            .map(HeaderValue::as_bytes),
    )
    .map_err(unauthorized)?;
    let unreadable = |e: ApiError| {
        tracing::warn!(%delivery, reason = %e, "rejected webhook: cannot read the body");
        e
    };
    guard::check_declared_length(&headers, webhook::MAX_BODY_BYTES).map_err(unreadable)?;
    // A slow sender holds its permit for at most the body timeouts; the others wait, holding
    // a connection but no memory.
    let Ok(_permit) = state.edge.webhook_bodies.acquire().await else {
        unreachable!("the webhook body semaphore is never closed")
    };
    let body = guard::read_body(body, &headers, webhook::MAX_BODY_BYTES)
        .await
        .map_err(unreadable)?;
    signature
        .verify(secret.expose().as_bytes(), &body)
        .map_err(unauthorized)?;
    let bad_request = |e: webhook::WebhookError| {
        tracing::warn!(%delivery, reason = %Untrusted::new(&e.to_string()), "rejected webhook: bad request");
        ApiError::from(e)
    };
    let event = webhook::event_kind(
        headers.get("x-github-event").map(HeaderValue::as_bytes),
        headers.get("x-gitea-event").map(HeaderValue::as_bytes),
        headers.get("x-gogs-event").map(HeaderValue::as_bytes),
    )
    .map_err(bad_request)?;
    let content_type = headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
    let answer = match event {
        EventKind::Ping => {
            webhook::parse_ping(content_type, &body).map_err(bad_request)?;
            tracing::info!(%delivery, "webhook ping");
            DeliveryAnswer::pong()
        }
        EventKind::Other(name) => {
            tracing::info!(%delivery, event = %Untrusted::new(&name), "webhook event ignored");
            DeliveryAnswer::ignored(format!("{name} events are not handled"))
        }
        EventKind::Push => {
            let push = webhook::parse_push(content_type, &body).map_err(bad_request)?;
            match webhook::decide(&push, &tracked_refs(&state)) {
                Decision::Ignored(reason) => {
                    tracing::info!(
                        %delivery,
                        git_ref = %Untrusted::new(&push.git_ref),
                        reason = %Untrusted::new(&reason),
                        "webhook push ignored"
                    );
                    DeliveryAnswer::ignored(reason)
                }
                Decision::Refresh => {
                    let admission = state.refresh.request(Trigger::Webhook);
                    tracing::info!(
                        %delivery,
                        git_ref = %Untrusted::new(&push.git_ref),
                        ?admission,
                        "webhook push accepted"
                    );
                    DeliveryAnswer::refresh(RefreshAnswer::from(admission))
                }
                Decision::RefreshTrackedRefDeleted => {
                    let admission = state.refresh.request(Trigger::Webhook);
                    tracing::warn!(
                        %delivery,
                        git_ref = %Untrusted::new(&push.git_ref),
                        "webhook says the tracked ref was deleted; nothing is torn down"
                    );
                    DeliveryAnswer::refresh(RefreshAnswer::from(admission)).warning(
                        "the push deletes the tracked ref; the last good desired state is kept and nothing is removed",
                    )
                }
            }
        }
    };
    Ok(answer)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
