//! `POST /api/webhook`: the push webhooks of GitHub, Gitea, Forgejo, Gogs, GitLab and the
//! generic sender (SPEC §7, §13). The decisions are `crate::webhook`'s; this reads the request
//! in the order they need and answers.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};

use super::answers::{DeliveryAnswer, DeliveryStatus, RefreshAnswer};
use super::{ApiError, AppState, guard};
use crate::config::{Revision, secret_list_items};
use crate::desired_state::{RefType, Trigger};
use crate::metrics::WebhookResult;
use crate::untrusted::Untrusted;
use crate::webhook::{self, Decision, Delivery, RepoIdentity};

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

/// Order: enabled? → sender and its one credential, from the headers → size → body, within
/// the limit, one of [`super::EdgeLimits::max_webhook_bodies`] at a time → credential over the
/// raw bytes, against each configured secret → event → payload → decision. Nothing is read
/// before the headers authorise reading it, and nothing is interpreted before it is verified.
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
    let delivery = [
        "x-github-delivery",
        "x-gitea-delivery",
        "x-forgejo-delivery",
        "x-gogs-delivery",
        "x-gitlab-event-uuid",
    ]
    .into_iter()
    .find_map(|name| header_str(&headers, name))
    .unwrap_or("-");
    let delivery = Untrusted::bounded(delivery, 64);
    let unauthorized = |e: webhook::WebhookError| {
        tracing::warn!(%delivery, reason = %e, "rejected webhook: authentication failed");
        ApiError::from(e)
    };
    let (sender, credential) = webhook::authenticate(&headers).map_err(unauthorized)?;
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
    let secrets: Vec<&[u8]> = secret_list_items(&secret).map(str::as_bytes).collect();
    let content_type = headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
    let document = credential
        .verify(sender, &secrets, content_type, &body)
        .map_err(unauthorized)?;
    let bad_request = |e: webhook::WebhookError| {
        tracing::warn!(%delivery, sender = sender.name(), reason = %Untrusted::new(&e.to_string()), "rejected webhook: bad request");
        ApiError::from(e)
    };
    let push = match webhook::parse_delivery(sender, &headers, &document).map_err(bad_request)? {
        Delivery::Ping => {
            tracing::info!(%delivery, sender = sender.name(), "webhook ping");
            return Ok(DeliveryAnswer::pong());
        }
        Delivery::Ignored(reason) => {
            tracing::info!(%delivery, sender = sender.name(), reason = %Untrusted::new(&reason), "webhook event ignored");
            return Ok(DeliveryAnswer::ignored(reason));
        }
        Delivery::Push(push) => push,
    };
    let git_ref = Untrusted::new(push.refs.first().map_or("-", String::as_str));
    let tracked_repo = RepoIdentity::from_url(state.info.repo.as_str());
    let answer = match webhook::decide(&push, &tracked_refs(&state), tracked_repo.as_ref()) {
        Decision::Ignored(reason) => {
            tracing::info!(
                %delivery,
                sender = sender.name(),
                %git_ref,
                reason = %Untrusted::new(&reason),
                "webhook push ignored"
            );
            DeliveryAnswer::ignored(reason)
        }
        Decision::Refresh => {
            let admission = state.refresh.request(Trigger::Webhook);
            tracing::info!(
                %delivery,
                sender = sender.name(),
                %git_ref,
                ?admission,
                "webhook push accepted"
            );
            DeliveryAnswer::refresh(RefreshAnswer::from(admission))
        }
        Decision::RefreshTrackedRefDeleted => {
            let admission = state.refresh.request(Trigger::Webhook);
            tracing::warn!(
                %delivery,
                sender = sender.name(),
                %git_ref,
                "webhook says the tracked ref was deleted; nothing is torn down"
            );
            DeliveryAnswer::refresh(RefreshAnswer::from(admission)).warning(
                "the push deletes the tracked ref; the last good desired state is kept and nothing is removed",
            )
        }
    };
    Ok(answer)
}

/// The request's headers, for the pure checks.
impl webhook::Headers for HeaderMap {
    fn values(&self, name: &str) -> Vec<&[u8]> {
        self.get_all(name)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect()
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
