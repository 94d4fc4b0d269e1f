//! The status page at `/`: the dashboard for browsers ([`super::dashboard`]), a plain-text
//! banner for curl.
//!
//! Uses: [`super::dashboard`] (the grid), [`super::names`] (status names), the store and the
//! engine reads of [`super::AppState`].

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::dashboard::{self, GridQuery};
use super::names::WireName;

/// `GET /`: the dashboard for browsers, a plain-text banner for everything else (curl).
pub(super) async fn status_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let mut response = if wants_html {
        dashboard::grid_page(&state, &GridQuery::parse(query.as_deref()))
    } else {
        banner(&state).await
    };
    // The answer depends on Accept: a cache must not give the browser's HTML to curl.
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    response
}

/// The plain-text banner, its running count shared with other views of the moment.
async fn banner(state: &AppState) -> Response {
    let running = match state.engine.running_count().await {
        Ok(n) => n.to_string(),
        Err(_) => "unavailable (Docker engine not reachable)".to_owned(),
    };
    let refresh = state.store.refresh_status();
    let stacks = state.store.stacks();
    let info = &state.info;
    let revision = refresh
        .revision
        .clone()
        .unwrap_or_else(|| "(not read yet)".into());
    let mut text = format!(
        "Docker-CD\n\nrunning containers: {running}\nrepository: {}\nrevision: {} ({})\ndeploy dir: {}\nrefresh: {}\nstacks: {}\n",
        info.repo,
        info.revision,
        revision,
        info.deploy_dir,
        refresh.refresh_status.wire_name(),
        stacks.len()
    );
    for s in &stacks {
        text.push_str(&format!(
            "  {:<30} {:<9} {}\n",
            s.path,
            s.sync.status.wire_name(),
            s.sync.health.wire_name()
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}
