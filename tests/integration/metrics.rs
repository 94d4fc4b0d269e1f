//! `GET /metrics` scraped from the real app: the series exist, carry the right labels, and move
//! when refreshes, webhooks, git and compose commands happen.
//!
//! The event counters are process-wide and the tests of this file run in parallel, so counters
//! are compared as "grew by at least" between two scrapes; the state series (stack status,
//! snapshot info) belong to each app and are compared exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::docker;
use common::{TestApp, TestRepo, compose};

/// One series of a scrape: name, labels, value.
#[derive(Debug)]
struct Series {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parses the Prometheus text format (as much of it as these tests need: no escaped quotes or
/// commas inside label values).
fn parse(text: &str) -> Vec<Series> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect(line);
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect(line);
                    let labels = body
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once("=\"").expect(line);
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, Vec::new()),
            };
            Series {
                name: name.to_owned(),
                labels,
                value: value.parse().expect(line),
            }
        })
        .collect()
}

/// The sum of every series named `name` whose labels include all of `labels`.
fn sum(scrape: &[Series], name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(scrape, name, labels).map(|s| s.value).sum()
}

fn matching<'a>(
    scrape: &'a [Series],
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a Series> {
    scrape.iter().filter(move |s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
    })
}

async fn scrape(app: &TestApp) -> Vec<Series> {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse(&response.text().await.unwrap())
}

#[tokio::test]
async fn refreshes_webhooks_git_commands_and_stacks_show_in_the_metrics() {
    let repo = TestRepo::new();
    repo.write("a/compose.yaml", compose("a:1"))
        .write("b/compose.yaml", compose("b:1"));
    let first = repo.commit_and_push("one");
    let app = TestApp::start(&repo.url(), |_| {}).await;
    app.wait_refreshes(1).await;

    let before = scrape(&app).await;
    assert!(
        sum(
            &before,
            "docker_cd_refreshes_total",
            &[("trigger", "startup"), ("outcome", "completed")]
        ) >= 1.0
    );
    let stacks: Vec<_> = matching(&before, "docker_cd_stack_status", &[]).collect();
    assert_eq!(stacks.len(), 2, "{stacks:?}");
    assert_eq!(
        sum(
            &before,
            "docker_cd_stack_status",
            &[("stack", "a"), ("status", "missing")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &before,
            "docker_cd_stack_status",
            &[("stack", "b"), ("status", "missing")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &before,
            "docker_cd_snapshot_info",
            &[
                ("revision", &first),
                ("ref", "refs/heads/main"),
                ("ref_type", "branch")
            ]
        ),
        1.0
    );
    assert_eq!(sum(&before, "docker_cd_snapshot_stacks", &[]), 2.0);
    assert!(
        sum(
            &before,
            "docker_cd_refresh_last_success_timestamp_seconds",
            &[]
        ) > 1.6e9
    );

    repo.remove("b").write("c/compose.yaml", compose("c:1"));
    let second = repo.commit_and_push("two");
    let (code, body) = app.push_webhook("refs/heads/main", &second).await;
    assert_eq!(code, 200, "{body}");
    app.wait_refreshes(2).await;
    let (code, _) = app.push_webhook("refs/heads/other", &second).await;
    assert_eq!(code, 200);
    let unsigned = app
        .client
        .post(app.url("/api/webhook"))
        .header("x-github-event", "push")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);

    let after = scrape(&app).await;
    let grew = |name: &str, labels: &[(&str, &str)]| {
        sum(&after, name, labels) - sum(&before, name, labels)
    };
    assert!(
        grew(
            "docker_cd_webhook_deliveries_total",
            &[("result", "accepted")]
        ) >= 1.0
    );
    assert!(
        grew(
            "docker_cd_webhook_deliveries_total",
            &[("result", "ignored")]
        ) >= 1.0
    );
    assert!(
        grew(
            "docker_cd_webhook_deliveries_total",
            &[("result", "unauthorized")]
        ) >= 1.0
    );
    let webhook_refresh = [("trigger", "webhook"), ("outcome", "completed")];
    assert!(grew("docker_cd_refreshes_total", &webhook_refresh) >= 1.0);
    assert!(grew("docker_cd_refresh_duration_seconds_count", &webhook_refresh) >= 1.0);
    assert!(
        grew(
            "docker_cd_refresh_duration_seconds_bucket",
            &[
                ("trigger", "webhook"),
                ("outcome", "completed"),
                ("le", "+Inf")
            ]
        ) >= 1.0
    );
    // A refresh after one new commit lists what changed with diff-tree (the incremental path).
    for git in ["ls-remote", "fetch", "cat-file", "diff-tree"] {
        assert!(
            grew(
                "docker_cd_command_duration_seconds_count",
                &[("program", "git"), ("subcommand", git)]
            ) >= 1.0,
            "git {git} not counted"
        );
    }
    // The state series follow the new snapshot: the old revision and stack are gone.
    assert_eq!(
        sum(&after, "docker_cd_snapshot_info", &[("revision", &second)]),
        1.0
    );
    assert_eq!(matching(&after, "docker_cd_snapshot_info", &[]).count(), 1);
    let mut stacks: Vec<String> = matching(&after, "docker_cd_stack_status", &[])
        .map(|s| format!("{:?}", s.labels))
        .collect();
    stacks.sort();
    assert_eq!(
        stacks,
        [
            r#"[("stack", "a"), ("status", "missing")]"#,
            r#"[("stack", "c"), ("status", "missing")]"#
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn failed_refreshes_and_git_failures_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("file://{}/nothing-here.git", dir.path().display());
    let app = TestApp::start(&missing, |_| {}).await;
    app.wait_refreshes(1).await;
    let scrape = scrape(&app).await;
    assert!(
        sum(
            &scrape,
            "docker_cd_refreshes_total",
            &[("trigger", "startup"), ("outcome", "failed")]
        ) >= 1.0
    );
    assert!(
        sum(
            &scrape,
            "docker_cd_command_failures_total",
            &[
                ("program", "git"),
                ("subcommand", "ls-remote"),
                ("reason", "exit")
            ]
        ) >= 1.0
    );
    assert_eq!(matching(&scrape, "docker_cd_snapshot_info", &[]).count(), 0);
    assert!(sum(&scrape, "docker_cd_refresh_consecutive_failures", &[]) >= 1.0);
    assert_eq!(matching(&scrape, "docker_cd_stack_status", &[]).count(), 0);
    app.stop().await;
}

#[tokio::test]
async fn metrics_answer_only_to_get() {
    let (repo, _) = TestRepo::with_stack("a", "a:1", "one");
    let app = TestApp::start(&repo.url(), |_| {}).await;
    let response = app.client.post(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    app.stop().await;
}

/// Reconciling against the real engine: a synced stack, a stack whose compose file is broken,
/// and the compose commands behind them.
#[tokio::test]
async fn synced_and_failed_stacks_and_compose_commands_show_in_the_metrics() {
    let Some((_, [good, broken], _cleanup)) = docker::begin_projects("metrics", ["good", "broken"])
    else {
        return;
    };
    let repo = TestRepo::new();
    repo.write(
        &format!("stacks/{good}/compose.yaml"),
        docker::sleeper_compose(&["app"]),
    )
    .write(&format!("stacks/{broken}/compose.yaml"), "services: [\n");
    let commit = repo.commit_and_push("one");
    let app = TestApp::start(&repo.url(), |a| {
        a.reconcile_enabled = "true".into();
        a.docker_bin = None;
        a.git_deploy_dir = "stacks".into();
    })
    .await;
    let before = scrape(&app).await;
    app.run(async |app| {
        let status = |stacks: &[serde_json::Value], path: &str| {
            stacks
                .iter()
                .find(|s| s["path"] == path)
                .map(|s| s["status"].clone())
        };
        app.wait_stacks(Duration::from_secs(120), |stacks| {
            status(stacks, &good) == Some("synced".into())
                && status(stacks, &broken) == Some("failed".into())
        })
        .await;
        let after = scrape(app).await;
        assert_eq!(
            sum(
                &after,
                "docker_cd_stack_status",
                &[("stack", &good), ("status", "synced")]
            ),
            1.0
        );
        assert_eq!(
            sum(
                &after,
                "docker_cd_stack_status",
                &[("stack", &broken), ("status", "failed")]
            ),
            1.0
        );
        // The plugin (`docker compose up`) or the standalone tool (`docker-compose up`).
        let grew = |name: &str, labels: &[(&str, &str)]| {
            sum(&after, name, labels) - sum(&before, name, labels)
        };
        let ups = grew(
            "docker_cd_command_duration_seconds_count",
            &[("program", "docker"), ("subcommand", "compose up")],
        ) + grew(
            "docker_cd_command_duration_seconds_count",
            &[("program", "docker-compose"), ("subcommand", "up")],
        );
        assert!(ups >= 1.0, "no compose up counted");
        let failed_configs = grew(
            "docker_cd_command_failures_total",
            &[
                ("program", "docker"),
                ("subcommand", "compose config"),
                ("reason", "exit"),
            ],
        ) + grew(
            "docker_cd_command_failures_total",
            &[
                ("program", "docker-compose"),
                ("subcommand", "config"),
                ("reason", "exit"),
            ],
        );
        assert!(
            failed_configs >= 1.0,
            "the broken compose file's config failure not counted"
        );
        assert!(
            grew(
                "docker_cd_command_duration_seconds_count",
                &[("program", "docker"), ("subcommand", "ps")]
            ) >= 1.0
        );

        // The sync's own log line carries stack, commit, trigger and duration.
        let logs = common::logs();
        let line = logs
            .lines()
            .find(|l| l.contains("sync succeeded") && l.contains(&format!("stack={good}")))
            .unwrap_or_else(|| panic!("no 'sync succeeded' line for {good}"));
        assert!(line.contains(&format!("commit={commit}")), "{line}");
        assert!(line.contains("trigger=refresh"), "{line}");
        assert!(line.contains("duration_ms="), "{line}");
    })
    .await;
}
