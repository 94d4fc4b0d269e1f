//! The JSON endpoints: stacks, refresh, acknowledgement, health, readiness, events.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::answers::{
    AckAnswer, ComposeCheck, DataDirCheck, DockerCheck, GitCheck, Health, Null, Readiness,
    RefreshAnswer, StackDetail, Workloads,
};
use super::{ACK_MAX_BODY_BYTES, ApiError, AppState, guard};
use crate::desired_state::{Event, RefreshStatus, Trigger};
use crate::untrusted::Untrusted;

/// What `/readyz` says of the checks it does not make.
const NOT_CHECKED: &str = "reconciling is disabled";

pub(super) async fn healthz() -> Json<Health> {
    Json(Health::OK)
}

/// Ready when git is still where start-up found it, the data dir is writable and, when
/// reconciling, the Docker engine answers and the compose tool found at start-up is still
/// there. Otherwise 503, with one line per unmet check in `reasons`.
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let info = &state.info;
    let mut reasons = Vec::new();
    let git_found = is_executable(&info.git_bin);
    if !git_found {
        reasons.push(format!(
            "git is gone: {} is missing or not executable",
            info.git_bin.display()
        ));
    }
    let data_dir_ok = match tempfile::tempfile_in(&info.data_dir) {
        Ok(_) => true,
        Err(e) => {
            // The path is the operator's own setting; unauthenticated clients do not need it.
            reasons.push(format!("DATA_DIR is not writable: {e}"));
            false
        }
    };
    let (docker, compose) = if info.reconcile_enabled {
        let docker = match state.engine.server_version().await {
            Ok(version) => DockerCheck::Reachable {
                reachable: true,
                version: String::clone(&version),
            },
            Err(e) => {
                let error = info.errors.render(&*e).into_string();
                reasons.push(format!(
                    "the Docker engine is not reachable: {}",
                    error.split_whitespace().collect::<Vec<_>>().join(" ")
                ));
                DockerCheck::Unreachable {
                    error,
                    reachable: false,
                }
            }
        };
        let compose_found = info.compose_bin.as_deref().is_some_and(is_executable);
        if !compose_found {
            reasons.push(format!(
                "the compose tool is gone: {} is missing or not executable",
                info.compose_bin.as_deref().map_or_else(
                    || "(none found at start-up)".into(),
                    |p| p.display().to_string()
                )
            ));
        }
        let compose = ComposeCheck::Checked {
            found: compose_found,
            tool: info.compose_tool.as_deref(),
        };
        (docker, compose)
    } else {
        (
            DockerCheck::NotChecked {
                note: NOT_CHECKED,
                reachable: Null,
            },
            ComposeCheck::NotChecked {
                found: Null,
                note: NOT_CHECKED,
            },
        )
    };
    let ready = reasons.is_empty();
    let body = Readiness {
        compose,
        compose_tool: info.compose_tool.as_deref(),
        data_dir: DataDirCheck {
            writable: data_dir_ok,
        },
        deploy_mode: info.deploy_mode,
        docker,
        git: GitCheck { found: git_found },
        ready,
        reasons,
        refresh_status: state.store.refresh_status().refresh_status,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// A regular file with an execute bit: what the kernel would run. Checked without spawning.
fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub(super) async fn refresh_status(State(state): State<AppState>) -> Json<RefreshStatus> {
    Json(state.store.refresh_status())
}

/// Written straight from the cache (see `Store::stacks_json`): 10,000 stacks in milliseconds.
pub(super) async fn stacks(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.store.stacks_json(),
    )
        .into_response()
}

/// One stack with its containers (in swarm mode also its services), read from the engine
/// (shared with other views of the moment: see [`crate::reconcile::EngineView`]).
pub(super) async fn stack(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    let record = state
        .store
        .stack(&path)
        .ok_or_else(|| ApiError::NotFound(format!("no stack {path:?}")))?;
    // In swarm mode also the stack's services with their replicas and the nodes of their
    // tasks; `containers` then lists the tasks in compose mode's shape.
    let workloads = match state.engine.describe(record.project_name.as_deref()).await {
        Ok(stack) => match &stack.services {
            Some(services) => Workloads::Services {
                services: services.clone(),
                containers: stack.containers.clone(),
            },
            None => Workloads::Containers {
                containers: stack.containers.clone(),
            },
        },
        Err(e) => {
            let containers_error = state.info.errors.render(&*e).into_string();
            if state.engine.lists_services() {
                Workloads::ServicesUnread {
                    services: Null,
                    containers: Null,
                    containers_error,
                }
            } else {
                Workloads::ContainersUnread {
                    containers: Null,
                    containers_error,
                }
            }
        }
    };
    // Answered as a response so that the service type is inferred: `http` names no engine type.
    Ok(Json(StackDetail { record, workloads }).into_response())
}

/// `POST /api/refresh`. The token (if any) was checked by [`guard::require_token`]; a body, if
/// sent, is never read.
pub(super) async fn manual_refresh(State(state): State<AppState>) -> Json<RefreshAnswer> {
    let admission = state.refresh.request(Trigger::Manual);
    tracing::info!(?admission, "manual refresh requested");
    Json(RefreshAnswer::from(admission))
}

#[derive(Debug, Deserialize)]
struct AckRequest {
    path: String,
}

/// `POST /api/reconcile/ack` with `{"path": "<stack path>"}` as JSON. The token (if any) was
/// checked from the headers by [`guard::require_token`] before the body is read here.
pub(super) async fn ack(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<AckAnswer>, ApiError> {
    let (parts, body) = request.into_parts();
    guard::require_json(&parts.headers)?;
    let body = guard::read_body(body, &parts.headers, ACK_MAX_BODY_BYTES).await?;
    let request: AckRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!("expected {{\"path\": \"<stack path>\"}}: {e}"))
    })?;
    let Some(reconcile) = &state.reconcile else {
        return Err(ApiError::Conflict(
            "reconciling is disabled (RECONCILE_ENABLED=false)".into(),
        ));
    };
    reconcile.ack(&request.path)?;
    tracing::info!(stack = %Untrusted::new(&request.path), "drift acknowledged; re-applying from Git");
    Ok(Json(AckAnswer::new(request.path)))
}

/// `GET /api/events`: a `stack.snapshot` and the refresh status on connect, then every change.
/// A subscriber that falls behind gets a fresh snapshot instead of the events it missed.
/// At most [`super::EdgeLimits::max_event_streams`] are open at once (503 beyond): a stream
/// holds its connection for as long as the client likes.
pub(super) async fn events(
    State(state): State<AppState>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>>>, ApiError> {
    let Ok(permit) = state.edge.event_streams.clone().try_acquire_owned() else {
        tracing::warn!("refused an event stream: too many open");
        return Err(ApiError::Unavailable(
            "too many event streams open; try again later",
        ));
    };
    let (records, rx) = state.store.subscribe();
    let first = vec![
        Event::StackSnapshot(records),
        Event::RefreshStatus(Box::new(state.store.refresh_status())),
    ];
    let store = state.store.clone();
    // The permit lives in the stream's state: it is given back when the stream is dropped.
    let stream = futures_util::stream::unfold(
        (
            first.into_iter(),
            rx,
            store,
            (state.shutdown.clone(), permit),
        ),
        |(mut pending, mut rx, store, (shutdown, permit))| async move {
            if let Some(event) = pending.next() {
                return Some((Ok(to_sse(&event)), (pending, rx, store, (shutdown, permit))));
            }
            let event = tokio::select! {
                received = rx.recv() => match received {
                    Ok(event) => event,
                    Err(RecvError::Lagged(_)) => Event::StackSnapshot(store.stacks()),
                    Err(RecvError::Closed) => return None,
                },
                () = shutdown.cancelled() => return None,
            };
            Some((Ok(to_sse(&event)), (pending, rx, store, (shutdown, permit))))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn to_sse(event: &Event) -> SseEvent {
    SseEvent::default()
        .event(event.name())
        .data(event.data().to_string())
}
