//! The HTTP API (SPEC §7), on axum.
//!
//! Handlers do little and answer fast: they read the [`Store`], ask the refresh queue or the
//! reconciler for work (never waiting for it), and query the engine only through the
//! [`EngineView`] the workflows hand them (read-only, shared and briefly cached). Errors become
//! `{"error": "…"}` and their status in one place ([`ApiError`], in `error`); internal errors
//! are logged once with their cause chain and shown to clients as a plain 500.
//!
//! - `api`: the JSON endpoints, health and readiness, the event stream.
//! - `answers`: the JSON answers, one type per answer, as they go on the wire.
//! - `webhook`: `POST /api/webhook`.
//! - `page`: the status page at `/`.
//! - `dashboard`: the dashboard pages for browsers and their embedded assets.
//! - `names`: a status's name in text (the banner, the dashboard), as the JSON API spells it.
//! - `/metrics`: the store's [`Census`], turned into the metrics' [`crate::metrics::State`]
//!   here (the edge is the one place that knows both) and rendered by
//!   [`crate::metrics::render`].
//! - [`serve`]: the server (connection cap, header read timeout, graceful shutdown).
//! - `guard`: the cross-site check, the API token, and body reading within a route's limit.
//! - `error`: [`ApiError`], every refusal and failure, and the status each is answered with.
//!
//! Every answer carries `X-Content-Type-Options: nosniff`. Body limits, by route: the webhook
//! 5 MiB ([`crate::webhook::MAX_BODY_BYTES`]), the acknowledgement [`ACK_MAX_BODY_BYTES`];
//! every other route never reads its body.
//!
//! Uses: desired_state, webhook, refresh, reconcile (its handle and [`EngineView`]), queue
//! (admissions), stack (the container view), config, metrics, untrusted. Never `compose`,
//! `swarm` or `engine`.

mod answers;
mod api;
mod dashboard;
mod error;
mod guard;
mod names;
mod operate;
mod page;
mod serve;
mod webhook;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

pub use error::ApiError;
pub use serve::{EdgeLimits, serve};

/// Largest acknowledgement body: `{"path": "…"}` with a long stack path fits many times over.
pub const ACK_MAX_BODY_BYTES: usize = 4 * 1024;

use crate::config::{DeployDir, RepoUrl, Revision, Secret};
use crate::desired_state::{Census, Store};
use crate::reconcile::{EngineView, ReconcileHandle};
use crate::refresh::RefreshHandle;

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
    /// The compose tool in use, e.g. `docker compose plugin 2.29.7`, or in swarm mode
    /// `docker stack deploy (docker CLI 28.2.2) --prune …`.
    pub compose_tool: Option<String>,
    /// `compose` or `swarm` (`None` when reconciling is disabled).
    pub deploy_mode: Option<&'static str>,
    pub data_dir: std::path::PathBuf,
    /// The git binary found at start-up (`/readyz` checks it is still there).
    pub git_bin: std::path::PathBuf,
    /// The binary the compose tool runs (`docker` for the plugin), when reconciling.
    pub compose_bin: Option<std::path::PathBuf>,
    /// Renders engine errors for clients (no command line, `DATA_DIR` hidden, redacted).
    pub errors: crate::desired_state::public::PublicErrors,
}

/// Everything the handlers use.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub refresh: RefreshHandle,
    pub reconcile: Option<ReconcileHandle>,
    /// The engine's stack details, running count and version, shared and briefly cached.
    pub engine: EngineView,
    pub info: Arc<ServiceInfo>,
    /// Ends event streams at shutdown, so graceful shutdown does not wait on them.
    pub shutdown: CancellationToken,
    /// The edge's limits and what enforces them across requests.
    pub edge: Edge,
}

/// What the edge shares across requests to bound unauthenticated work.
#[derive(Debug, Clone)]
pub struct Edge {
    limits: EdgeLimits,
    /// One permit per open event stream.
    event_streams: Arc<Semaphore>,
    /// One permit per webhook body being read.
    webhook_bodies: Arc<Semaphore>,
}

impl Edge {
    /// The edge's shared state for `limits`, with nothing cached and no permit taken.
    pub fn new(limits: EdgeLimits) -> Self {
        Self {
            event_streams: Arc::new(Semaphore::new(limits.max_event_streams)),
            webhook_bodies: Arc::new(Semaphore::new(limits.max_webhook_bodies)),
            limits,
        }
    }
}

/// Builds the router.
///
/// Layers of a mutating route, outermost first: nosniff, JSON error bodies, the cross-site
/// check, the pause-between-pieces body timeout, then the route's own: the API token, and for
/// a route that reads a body the whole-request timeout. All but the last decide from headers.
pub fn router(state: AppState) -> Router {
    let limits = state.edge.limits.clone();
    let token = || middleware::from_fn_with_state(state.clone(), guard::require_token);
    let whole_request =
        || TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.body_read_timeout);
    Router::new()
        .route("/", get(page::status_page).fallback(method_not_allowed))
        .route("/healthz", get(api::healthz).fallback(method_not_allowed))
        .route("/readyz", get(api::readyz).fallback(method_not_allowed))
        .route(
            "/api/webhook",
            post(webhook::webhook)
                .route_layer(whole_request())
                .fallback(method_not_allowed),
        )
        .route(
            "/api/refresh",
            post(api::manual_refresh)
                .route_layer(token())
                .fallback(method_not_allowed),
        )
        .route(
            "/api/refresh-status",
            get(api::refresh_status).fallback(method_not_allowed),
        )
        .route("/api/stacks", get(api::stacks).fallback(method_not_allowed))
        .route(
            "/api/stacks/{path}",
            get(api::stack).fallback(method_not_allowed),
        )
        .route(
            "/api/stacks/{path}/history",
            get(operate::history).fallback(method_not_allowed),
        )
        .route(
            "/api/stacks/{path}/diff",
            // The files' text may hold values (a `.env`): only with the token, when one is set.
            get(operate::diff)
                .route_layer(token())
                .fallback(method_not_allowed),
        )
        .route(
            "/api/stacks/{path}/sync",
            post(operate::sync)
                .route_layer(token())
                .fallback(method_not_allowed),
        )
        .route(
            "/api/stacks/{path}/rollback",
            post(operate::rollback)
                .route_layer(whole_request())
                .route_layer(token())
                .fallback(method_not_allowed),
        )
        .route(
            "/api/stacks/{path}/unpin",
            post(operate::unpin)
                .route_layer(token())
                .fallback(method_not_allowed),
        )
        .route(
            "/api/stacks/{path}/suspend",
            post(operate::suspend)
                .route_layer(token())
                .fallback(method_not_allowed),
        )
        .route(
            "/api/stacks/{path}/resume",
            post(operate::resume)
                .route_layer(token())
                .fallback(method_not_allowed),
        )
        .route(
            "/api/reconcile/ack",
            post(api::ack)
                .route_layer(whole_request())
                .route_layer(token())
                .fallback(method_not_allowed),
        )
        .route(
            "/api/image-updates",
            post(operate::image_updates)
                .route_layer(token())
                .fallback(method_not_allowed),
        )
        .route("/api/events", get(api::events).fallback(method_not_allowed))
        .route(
            "/stacks/{path}",
            get(dashboard::stack_page).fallback(method_not_allowed),
        )
        .route(
            "/assets/{name}",
            get(dashboard::asset).fallback(method_not_allowed),
        )
        .route("/metrics", get(metrics).fallback(method_not_allowed))
        .fallback(not_found)
        // A handler that takes a body by an extractor without saying its limit reads nothing.
        .layer(DefaultBodyLimit::max(0))
        .layer(RequestBodyTimeoutLayer::new(limits.body_idle_timeout))
        .layer(middleware::from_fn(guard::refuse_cross_site))
        .layer(middleware::from_fn(guard::json_errors))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(state)
}

/// `GET /metrics`: Prometheus text format (see [`crate::metrics`]).
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    match crate::metrics::render(&metrics_state(state.store.census())) {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => ApiError::internal("cannot encode the metrics", e).into_response(),
    }
}

/// The metrics' state of a census: the same facts, statuses, health and ref type by their
/// wire names (as the JSON API spells them).
fn metrics_state(census: Census) -> crate::metrics::State {
    use crate::metrics::{SnapshotState, StackState, State};
    State {
        stacks: census
            .stacks
            .into_iter()
            .map(|stack| StackState {
                path: stack.path,
                status: stack.status.as_str(),
                health: stack.health.as_str(),
            })
            .collect(),
        snapshot: census.snapshot.map(|snapshot| SnapshotState {
            revision: snapshot.revision,
            git_ref: snapshot.git_ref,
            ref_type: snapshot.ref_type.as_str(),
        }),
        stack_count: census.stack_count,
        last_success_at: census.last_success_at,
        consecutive_failures: census.consecutive_failures,
        refreshing: census.refreshing,
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Mutating endpoints (but the webhook, which has its signature) need the API token if one is
/// configured. Compared in constant time.
///
/// More than one `Authorization` header is refused: which one counts would be a guess.
pub(crate) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.info.api_token else {
        return Ok(());
    };
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (first, second) = (values.next(), values.next());
    let presented = first
        .filter(|_| second.is_none())
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
        Err(ApiError::Unauthorized(
            "missing or invalid bearer token".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::desired_state::census::{SnapshotCensus, StackCensus};
    use crate::desired_state::{Health, RefType, StackStatus};

    #[test]
    fn a_census_becomes_the_metrics_state_by_wire_names() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let census = Census {
            stacks: vec![
                StackCensus {
                    path: "db".into(),
                    status: StackStatus::Synced,
                    health: Health::Healthy,
                },
                StackCensus {
                    path: "web".into(),
                    status: StackStatus::Failed,
                    health: Health::Degraded,
                },
            ],
            snapshot: Some(SnapshotCensus {
                revision: "r1".into(),
                git_ref: "refs/tags/v1".into(),
                ref_type: RefType::Tag,
            }),
            stack_count: 2,
            last_success_at: Some(at),
            consecutive_failures: 3,
            refreshing: true,
        };
        let state = metrics_state(census);
        let stacks: Vec<_> = state
            .stacks
            .iter()
            .map(|s| (s.path.as_str(), s.status, s.health))
            .collect();
        assert_eq!(
            stacks,
            [("db", "synced", "healthy"), ("web", "failed", "degraded")]
        );
        let snapshot = state.snapshot.as_ref().unwrap();
        assert_eq!(
            (
                snapshot.revision.as_str(),
                snapshot.git_ref.as_str(),
                snapshot.ref_type
            ),
            ("r1", "refs/tags/v1", "tag")
        );
        assert_eq!(
            (
                state.stack_count,
                state.last_success_at,
                state.consecutive_failures,
                state.refreshing
            ),
            (2, Some(at), 3, true)
        );
        let text = crate::metrics::render(&state).unwrap();
        assert!(
            text.contains("docker_cd_stack_health{stack=\"web\",health=\"degraded\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("docker_cd_stack_status{stack=\"web\",status=\"failed\"} 1"),
            "{text}"
        );
        assert_eq!(
            metrics_state(Census::default()),
            crate::metrics::State::default()
        );
    }
}
