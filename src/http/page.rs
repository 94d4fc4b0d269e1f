//! The status page at `/`: HTML for browsers, a plain-text banner for curl.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;

use super::AppState;

/// `GET /`: HTML for browsers, a plain-text banner for everything else (curl).
pub(super) async fn status_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
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
