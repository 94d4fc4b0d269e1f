//! A stack's health on every surface of the real app (no Docker needed): the JSON records of
//! `/api/stacks` and `/api/stacks/{path}`, the event stream's `stack.upsert`, the per-stack
//! gauge of `/metrics` and the dashboard's badge and filter.
//!
//! Reconciling is off in these instances, so nothing but the test changes a stack's health:
//! it sets one through the store, as the reconciler does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::{TestApp, TestRepo, compose};
use docker_cd::desired_state::Health;
use futures_util::StreamExt;
use serde_json::Value;

const HEALTHS: [&str; 6] = [
    "healthy",
    "progressing",
    "degraded",
    "missing",
    "suspended",
    "unknown",
];

/// The `docker_cd_stack_health` series of a scrape, as `stack health value` lines, sorted.
async fn health_series(app: &TestApp) -> Vec<String> {
    let text = app.get_text("/metrics").await;
    let mut series: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("docker_cd_stack_health{"))
        .map(|l| {
            let (labels, value) = l.split_once("} ").expect(l);
            let labels = labels.replace("stack=", "").replace(",health=", " ");
            format!("{} {value}", labels.replace('"', ""))
        })
        .collect();
    series.sort_unstable();
    series
}

#[tokio::test]
async fn every_surface_shows_each_stacks_health_and_why() {
    let repo = TestRepo::new();
    repo.write("api/compose.yaml", compose("api:1"))
        .write("web/compose.yaml", compose("web:1"));
    repo.commit_and_push("one");
    let app = TestApp::start(&repo.url(), |a| {
        // `common::args` predates these two settings and leaves them empty (invalid).
        a.sync_health_timeout = "2m".into();
        a.sync_concurrency = "4".into();
    })
    .await;
    app.wait_refreshes(1).await;

    // Every record carries both fields, whatever the stack's health is before anyone looked.
    let stacks = app.stacks().await;
    assert_eq!(stacks.len(), 2, "{stacks:?}");
    for stack in &stacks {
        let health = stack["health"].as_str().expect("health is a string");
        assert!(HEALTHS.contains(&health), "{stack}");
        assert!(
            stack
                .get("healthMessage")
                .is_some_and(|m| m.is_null() || m.is_string()),
            "{stack}"
        );
    }
    let before: Vec<String> = stacks
        .iter()
        .map(|s| {
            format!(
                "{} {} 1",
                s["path"].as_str().unwrap(),
                s["health"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        health_series(&app).await,
        before,
        "the gauge says what the API says"
    );

    // The reconciler's view changes: the record, the event stream and the gauge follow.
    let events = app.client.get(app.url("/api/events")).send().await.unwrap();
    let mut stream = events.bytes_stream();
    let mut text = String::new();
    let mut wait_for = async |text: &mut String, want: &str| {
        tokio::time::timeout(Duration::from_secs(20), async {
            while !text.contains(want) {
                let chunk = stream.next().await.unwrap().unwrap();
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {want:?} in {text}"));
    };
    // The snapshot (which names both stacks), then the refresh status: what follows is new.
    wait_for(&mut text, "event: refresh.status").await;
    assert!(text.starts_with("event: stack.snapshot\n"), "{text}");
    text.clear();
    let message = "web: unhealthy: <b>curl: (7) refused</b>";
    assert!(app.app().store.update_stack("web", |s| {
        s.health = Health::Degraded;
        s.health_message = Some(message.into());
    }));
    assert!(app.app().store.update_stack("api", |s| {
        s.health = Health::Healthy;
        s.health_message = None;
    }));
    wait_for(&mut text, "\"path\":\"api\"").await;
    let upsert: Value = text
        .split("event: stack.upsert\ndata: ")
        .nth(1)
        .and_then(|t| t.split('\n').next())
        .map(|data| serde_json::from_str(data).unwrap())
        .unwrap_or_else(|| panic!("no stack.upsert in {text}"));
    assert_eq!(upsert["path"], "web");
    assert_eq!(upsert["health"], "degraded");
    assert_eq!(upsert["healthMessage"], message);
    drop(stream);

    let (code, web) = app.get_json("/api/stacks/web").await;
    assert_eq!(code, 200);
    assert_eq!(web["health"], "degraded");
    assert_eq!(web["healthMessage"], message);
    let stacks = app.stacks().await;
    assert_eq!(stacks[0]["path"], "api");
    assert_eq!(stacks[0]["health"], "healthy");
    assert!(stacks[0]["healthMessage"].is_null(), "{}", stacks[0]);
    assert_eq!(
        health_series(&app).await,
        ["api healthy 1", "web degraded 1"]
    );

    // The dashboard: the badge with its reason as a tooltip (escaped), and the health filter.
    let html = |path: &'static str| {
        let request = app.client.get(app.url(path)).header("accept", "text/html");
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let grid = html("/?health=degraded").await;
    assert!(
        grid.contains(
            "data-health=\"degraded\" title=\"web: unhealthy: &#60;b&#62;curl: (7) refused&#60;/b&#62;\">degraded</span>"
        ),
        "{grid}"
    );
    assert!(!grid.contains("<b>curl"), "{grid}");
    assert!(
        grid.contains("data-path=\"api\" data-status=\"missing\" data-health=\"healthy\" data-control=\"\" hidden>"),
        "the filter hides the healthy stack: {grid}"
    );
    assert!(
        grid.contains(
            "data-path=\"web\" data-status=\"missing\" data-health=\"degraded\" data-control=\"\">"
        ),
        "{grid}"
    );
    assert!(
        grid.contains("aria-pressed=\"true\">degraded <span class=\"count\" data-health-count=\"degraded\">1</span>"),
        "{grid}"
    );
    let page = html("/stacks/web").await;
    assert!(
        page.contains("Health: web: unhealthy: &#60;b&#62;curl: (7) refused&#60;/b&#62;</p>"),
        "{page}"
    );
    app.stop().await;
}
