//! What an operator does to one stack (SPEC §10): its history, sync now, rollback and pin,
//! unpin, suspend and resume. Every route but the history needs the API token (checked from
//! the headers before any body is read); the rollback alone reads a body, a small optional
//! JSON object.
//!
//! Edge layer. Uses: reconcile (its handle, and the control errors it answers with), history
//! (the records it returns), untrusted.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{ACK_MAX_BODY_BYTES, ApiError, AppState, guard};
use crate::history::Deployment;
use crate::reconcile::ReconcileHandle;
use crate::reconcile::control::{ControlError, StackDiff};

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::UnknownStack(_) | ControlError::NoCommit(_) => {
                Self::NotFound(e.to_string())
            }
            ControlError::NotInGit(_)
            | ControlError::DeployedCommitGone(_)
            | ControlError::Suspended(_)
            | ControlError::SuspendedInGit(_)
            | ControlError::NoStackAt { .. }
            | ControlError::NothingToRollBackTo(_) => Self::Conflict(e.to_string()),
            ControlError::Engine(_) => Self::Unavailable("cannot read the Docker host"),
            ControlError::Git(_) | ControlError::Store(_) => {
                Self::internal("cannot carry out the operator's request", e)
            }
        }
    }
}

/// `GET /api/stacks/{path}/history`.
#[derive(Debug, Serialize)]
pub struct HistoryAnswer {
    pub deployments: Vec<Deployment>,
}

/// What a control route did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlAnswer {
    /// `queued` (a sync will run), `unpinned`, `suspended`, `resumed`.
    pub status: &'static str,
    pub path: String,
    /// The commit a rollback deploys and pins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

impl ControlAnswer {
    fn new(status: &'static str, path: String) -> Self {
        Self {
            status,
            path,
            revision: None,
        }
    }
}

fn handle(state: &AppState) -> Result<&ReconcileHandle, ApiError> {
    state.reconcile.as_ref().ok_or_else(|| {
        ApiError::Conflict("reconciling is disabled (RECONCILE_ENABLED=false)".into())
    })
}

pub(super) async fn history(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Json<HistoryAnswer>, ApiError> {
    if state.store.stack(&path).is_none() {
        return Err(ApiError::NotFound(format!("no stack {path:?}")));
    }
    let deployments = match &state.reconcile {
        Some(handle) => handle.history(&path)?,
        None => Vec::new(),
    };
    Ok(Json(HistoryAnswer { deployments }))
}

pub(super) async fn diff(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Json<StackDiff>, ApiError> {
    Ok(Json(handle(&state)?.diff(&path).await?))
}

pub(super) async fn sync(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    handle(&state)?.sync_now(&path)?;
    Ok(accepted(ControlAnswer::new("queued", path)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackRequest {
    revision: Option<String>,
}

pub(super) async fn rollback(
    State(state): State<AppState>,
    Path(path): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let body = guard::read_body(body, &parts.headers, ACK_MAX_BODY_BYTES).await?;
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackRequest::default()
    } else {
        guard::require_json(&parts.headers)?;
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!(
                "expected no body or {{\"revision\": \"<commit id>\"}}: {e}"
            ))
        })?
    };
    let target = handle(&state)?
        .rollback(&path, request.revision.as_deref())
        .await?;
    let mut answer = ControlAnswer::new("queued", path);
    answer.revision = Some(target.revision);
    Ok(accepted(answer))
}

pub(super) async fn unpin(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Json<ControlAnswer>, ApiError> {
    handle(&state)?.unpin(&path)?;
    Ok(Json(ControlAnswer::new("unpinned", path)))
}

pub(super) async fn suspend(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Json<ControlAnswer>, ApiError> {
    handle(&state)?.suspend(&path)?;
    Ok(Json(ControlAnswer::new("suspended", path)))
}

pub(super) async fn resume(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Json<ControlAnswer>, ApiError> {
    handle(&state)?.resume(&path)?;
    Ok(Json(ControlAnswer::new("resumed", path)))
}

fn accepted(answer: ControlAnswer) -> Response {
    (StatusCode::ACCEPTED, Json(answer)).into_response()
}

/// `POST /api/image-updates`'s answer.
#[derive(Debug, Serialize)]
pub struct ImageCheckAnswer {
    /// `checking`: a check of every stack that takes image updates started.
    pub status: &'static str,
}

/// `POST /api/image-updates`: checks the registries now (SPEC §12); 202, the check runs on.
/// What it finds is on the stacks' records (`images`), and updates run as deployments.
pub(super) async fn image_updates(State(state): State<AppState>) -> Result<Response, ApiError> {
    if !handle(&state)?.check_images() {
        return Err(ApiError::Unavailable(
            "image updates are off: no registry client could be set up (see the log)",
        ));
    }
    tracing::info!("image check requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(ImageCheckAnswer { status: "checking" }),
    )
        .into_response())
}
