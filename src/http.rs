//! The HTTP API (SPEC §7), on axum.
//!
//! Handlers do little and answer fast: they read the [`Store`], ask the refresh queue or the
//! reconciler for work (never waiting for it), and query the engine only through the compose
//! adapter. Errors become `{"error": "…"}` in one place ([`ApiError`]); internal errors are
//! logged once with their cause chain and shown to clients as a plain 500.
//!
//! Uses: desired_state, webhook, refresh, reconcile, compose (read-only queries), config.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::compose::{ContainerView, Docker};
use crate::config::{DeployDir, RepoUrl, Revision, Secret};
use crate::desired_state::{Event, RefType, Store, Trigger};
use crate::queue::Admission;
use crate::reconcile::{AckError, ReconcileHandle};
use crate::refresh::RefreshHandle;
use crate::webhook::{self, Decision, EventKind};

/// What the status page and `/readyz` show about this instance. Holds no secret but the two
/// the API checks, both behind [`Secret`].
#[derive(Debug)]
pub struct ServiceInfo {
    pub repo: RepoUrl,
    pub revision: Revision,
    pub deploy_dir: DeployDir,
    pub webhook_secret: Option<Secret>,
    pub api_token: Option<Secret>,
    pub reconcile_enabled: bool,
    /// The compose tool in use, e.g. `docker compose plugin 2.29.7`.
    pub compose_tool: Option<String>,
    pub data_dir: std::path::PathBuf,
}

/// Everything the handlers use.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub refresh: RefreshHandle,
    pub reconcile: Option<ReconcileHandle>,
    pub docker: Docker,
    pub info: Arc<ServiceInfo>,
    /// Ends event streams at shutdown, so graceful shutdown does not wait on them.
    pub shutdown: CancellationToken,
}

/// An error answer: status and a message for the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(status_page).fallback(method_not_allowed))
        .route("/healthz", get(healthz).fallback(method_not_allowed))
        .route("/readyz", get(readyz).fallback(method_not_allowed))
        .route("/api/webhook", post(webhook).fallback(method_not_allowed))
        .route(
            "/api/refresh",
            post(manual_refresh).fallback(method_not_allowed),
        )
        .route(
            "/api/refresh-status",
            get(refresh_status).fallback(method_not_allowed),
        )
        .route("/api/stacks", get(stacks).fallback(method_not_allowed))
        .route(
            "/api/stacks/{path}",
            get(stack).fallback(method_not_allowed),
        )
        .route("/api/reconcile/ack", post(ack).fallback(method_not_allowed))
        .route("/api/events", get(events).fallback(method_not_allowed))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}

/// Mutating endpoints (but the webhook, which has its signature) need the API token if one is
/// configured. Compared in constant time.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.info.api_token else {
        return Ok(());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme name is case-insensitive (RFC 9110 §11.1).
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        })
        .unwrap_or_default();
    if bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) {
        Ok(())
    } else {
        tracing::warn!("rejected a request without a valid API token");
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or invalid bearer token",
        ))
    }
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the data dir is writable and, if reconciling, the Docker engine answers. (git was
/// found and its version checked before the server started.)
async fn readyz(State(state): State<AppState>) -> Response {
    let data_dir_ok = tempfile::tempfile_in(&state.info.data_dir).is_ok();
    let docker = if state.info.reconcile_enabled {
        match state.docker.server_version().await {
            Ok(version) => json!({ "reachable": true, "version": version }),
            Err(e) => json!({ "reachable": false, "error": crate::error_chain(&e) }),
        }
    } else {
        json!({ "reachable": null, "note": "reconciling is disabled" })
    };
    let docker_ok = !state.info.reconcile_enabled || docker["reachable"] == true;
    let ready = data_dir_ok && docker_ok;
    let body = json!({
        "ready": ready,
        "git": { "found": true },
        "dataDir": { "writable": data_dir_ok },
        "docker": docker,
        "composeTool": state.info.compose_tool,
        "refreshStatus": state.store.refresh_status().refresh_status,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /`: HTML for browsers, a plain-text banner for everything else (curl).
async fn status_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let running = match state.docker.running_count().await {
        Ok(n) => n.to_string(),
        Err(_) => "unavailable (Docker engine not reachable)".to_owned(),
    };
    let refresh = state.store.refresh_status();
    let stacks = state.store.stacks();
    let info = &state.info;
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let revision = refresh
        .revision
        .clone()
        .unwrap_or_else(|| "(not read yet)".into());
    if !wants_html {
        let mut text = format!(
            "Docker-CD\n\nrunning containers: {running}\nrepository: {}\nrevision: {} ({})\ndeploy dir: {}\nrefresh: {}\nstacks: {}\n",
            info.repo,
            info.revision,
            revision,
            info.deploy_dir,
            wire_name(&refresh.refresh_status),
            stacks.len()
        );
        for s in &stacks {
            text.push_str(&format!("  {:<30} {}\n", s.path, wire_name(&s.sync.status)));
        }
        return ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response();
    }
    let rows: String = stacks
        .iter()
        .map(|s| {
            let status = wire_name(&s.sync.status);
            format!(
                "<tr><td>{}</td><td>{}</td><td class=\"{status}\">{status}</td><td>{}/{}</td><td><code>{}</code></td><td>{}</td></tr>",
                escape(&s.path),
                escape(s.project_name.as_deref().unwrap_or("")),
                s.sync.containers_running,
                s.sync.containers_total,
                escape(&s.content_hash.as_deref().unwrap_or("").chars().take(12).collect::<String>()),
                escape(s.error.as_deref().or(s.sync.last_sync_error.as_deref()).unwrap_or("")),
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
<title>Docker-CD</title><style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:left}}\
.synced{{color:green}}.failed,.drifted{{color:#b00}}.orphaned,.missing{{color:#a60}}</style></head><body>\
<h1>Docker-CD</h1><p>Running containers: {}<br>Repository: <code>{}</code><br>Revision: <code>{}</code> at <code>{}</code><br>\
Deploy dir: <code>{}</code><br>Refresh: {}{}</p><table><tr><th>stack</th><th>project</th><th>status</th><th>running</th><th>content</th><th>error</th></tr>{}</table>\
<p>API: <a href=\"/api/stacks\">/api/stacks</a> · <a href=\"/api/refresh-status\">/api/refresh-status</a> · <a href=\"/api/events\">/api/events</a></p></body></html>",
        escape(&running),
        escape(&info.repo.to_string()),
        escape(&info.revision.to_string()),
        escape(&revision),
        escape(&info.deploy_dir.to_string()),
        wire_name(&refresh.refresh_status),
        refresh
            .refresh_error
            .as_deref()
            .map(|e| format!(" — {}", escape(e)))
            .unwrap_or_default(),
        rows
    ))
    .into_response()
}

/// A status as the JSON API spells it (`synced`, `completed`).
fn wire_name(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        _ => String::new(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn refresh_status(State(state): State<AppState>) -> Json<Value> {
    Json(serde_json::to_value(state.store.refresh_status()).unwrap_or(Value::Null))
}

async fn stacks(State(state): State<AppState>) -> Json<Value> {
    Json(serde_json::to_value(state.store.stacks()).unwrap_or(Value::Null))
}

/// One stack with its containers, read from the engine now.
async fn stack(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = state
        .store
        .stack(&path)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no stack {path:?}")))?;
    let mut body = serde_json::to_value(&record).unwrap_or(Value::Null);
    match &record.project_name {
        Some(project) => match state.docker.project_containers(project).await {
            Ok(containers) => {
                let views: Vec<ContainerView> = containers
                    .iter()
                    .filter(|c| !c.is_oneoff())
                    .map(ContainerView::from)
                    .collect();
                body["containers"] = serde_json::to_value(views).unwrap_or(Value::Null);
            }
            Err(e) => {
                body["containers"] = Value::Null;
                body["containersError"] = Value::String(crate::error_chain(&e));
            }
        },
        None => body["containers"] = json!([]),
    }
    Ok(Json(body))
}

async fn manual_refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let admission = state.refresh.request(Trigger::Manual);
    tracing::info!(?admission, "manual refresh requested");
    Ok(Json(refresh_answer(admission)))
}

fn refresh_answer(admission: Admission) -> Value {
    match admission {
        Admission::Started => json!({ "status": "refreshing", "message": "refresh started" }),
        Admission::Queued => json!({
            "status": "queued",
            "message": "a refresh is running; another will follow it"
        }),
    }
}

#[derive(Debug, Deserialize)]
struct AckRequest {
    path: String,
}

async fn ack(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let request: AckRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"path\": \"<stack path>\"}}: {e}"),
        )
    })?;
    let Some(reconcile) = &state.reconcile else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "reconciling is disabled (RECONCILE_ENABLED=false)",
        ));
    };
    match reconcile.ack(&request.path) {
        Ok(()) => {
            tracing::info!(stack = %request.path, "drift acknowledged; re-applying from Git");
            Ok(Json(
                json!({ "status": "acknowledged", "path": request.path }),
            ))
        }
        Err(e @ AckError::UnknownStack(_)) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, e.to_string()))
        }
        Err(e @ AckError::NotDrifted { .. }) => {
            Err(ApiError::new(StatusCode::CONFLICT, e.to_string()))
        }
    }
}

/// The refs a push must name to count as a push to the tracked revision.
fn tracked_refs(state: &AppState) -> Vec<String> {
    let status = state.store.refresh_status();
    match (status.ref_type, &state.info.revision) {
        (_, Revision::Commit(_)) | (Some(RefType::Commit), _) => Vec::new(),
        (Some(_), _) if status.revision.is_some() => vec![status.git_ref],
        (_, Revision::Branch(n)) => vec![format!("refs/heads/{n}")],
        (_, Revision::Tag(n)) => vec![format!("refs/tags/{n}")],
        (_, Revision::Name(n)) => vec![format!("refs/heads/{n}"), format!("refs/tags/{n}")],
    }
}

/// `POST /api/webhook` (SPEC §7). Order: enabled? → size → signature over the raw bytes →
/// event → payload → decision. Nothing is parsed before the signature is verified.
async fn webhook(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let Some(secret) = state.info.webhook_secret.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "the webhook is disabled: set WEBHOOK_SECRET (or WEBHOOK_SECRET_FILE) to enable it",
        ));
    };
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let delivery = header_str(&headers, "x-github-delivery")
        .or_else(|| header_str(&headers, "x-gitea-delivery"))
        .unwrap_or("-")
        .chars()
        .take(64)
        .collect::<String>();
    let too_large = || {
        tracing::warn!(%delivery, "rejected webhook: body over the limit");
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {} bytes", webhook::MAX_BODY_BYTES),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > webhook::MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    // Reads at most the limit, whatever the framing (chunked bodies have no Content-Length).
    let body = axum::body::to_bytes(Body::new(body), webhook::MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())?;

    let signature = headers
        .get("x-hub-signature-256")
        .map(HeaderValue::as_bytes);
    if let Err(e) = webhook::verify_signature(secret.expose().as_bytes(), &body, signature) {
        tracing::warn!(%delivery, reason = %e, "rejected webhook: authentication failed");
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()));
    }
    let bad_request = |e: webhook::WebhookError| {
        tracing::warn!(%delivery, reason = %e, "rejected webhook: bad request");
        ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
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
            json!({ "status": "pong" })
        }
        EventKind::Other(name) => {
            tracing::info!(%delivery, event = %name, "webhook event ignored");
            json!({ "status": "ignored", "reason": format!("{name} events are not handled") })
        }
        EventKind::Push => {
            let push = webhook::parse_push(content_type, &body).map_err(bad_request)?;
            match webhook::decide(&push, &tracked_refs(&state)) {
                Decision::Ignored(reason) => {
                    tracing::info!(%delivery, git_ref = %push.git_ref, %reason, "webhook push ignored");
                    json!({ "status": "ignored", "reason": reason })
                }
                Decision::Refresh => {
                    let admission = state.refresh.request(Trigger::Webhook);
                    tracing::info!(%delivery, git_ref = %push.git_ref, ?admission, "webhook push accepted");
                    refresh_answer(admission)
                }
                Decision::RefreshTrackedRefDeleted => {
                    let admission = state.refresh.request(Trigger::Webhook);
                    tracing::warn!(%delivery, git_ref = %push.git_ref, "webhook says the tracked ref was deleted; nothing is torn down");
                    let mut answer = refresh_answer(admission);
                    answer["warning"] = json!(
                        "the push deletes the tracked ref; the last good desired state is kept and nothing is removed"
                    );
                    answer
                }
            }
        }
    };
    Ok(Json(answer).into_response())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `GET /api/events`: a `stack.snapshot` and the refresh status on connect, then every change.
/// A subscriber that falls behind gets a fresh snapshot instead of the events it missed.
async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    let (records, rx) = state.store.subscribe();
    let first = vec![
        Event::StackSnapshot(records),
        Event::RefreshStatus(Box::new(state.store.refresh_status())),
    ];
    let store = state.store.clone();
    let stream = futures_util::stream::unfold(
        (first.into_iter(), rx, store, state.shutdown.clone()),
        |(mut pending, mut rx, store, shutdown)| async move {
            if let Some(event) = pending.next() {
                return Some((Ok(to_sse(&event)), (pending, rx, store, shutdown)));
            }
            let event = tokio::select! {
                received = rx.recv() => match received {
                    Ok(event) => event,
                    Err(RecvError::Lagged(_)) => Event::StackSnapshot(store.stacks()),
                    Err(RecvError::Closed) => return None,
                },
                () = shutdown.cancelled() => return None,
            };
            Some((Ok(to_sse(&event)), (pending, rx, store, shutdown)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn to_sse(event: &Event) -> SseEvent {
    SseEvent::default()
        .event(event.name())
        .data(event.data().to_string())
}
