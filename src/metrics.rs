//! Metrics: what `GET /metrics` serves, in the Prometheus text format (0.0.4), through the
//! `prometheus-client` crate (no exposition text is written by hand).
//!
//! Two kinds of series:
//!
//! - **Events**, counted where they happen and kept for the life of the process: refreshes by
//!   trigger and outcome with their durations ([`refresh_finished`]), the durations of stack
//!   syncs by outcome ([`sync_finished`]), webhook deliveries by result ([`webhook_delivery`]),
//!   and the duration and failures of every child process by program and subcommand
//!   ([`command_finished`], [`command_failed`]; the app registers them as `process`'s
//!   observer). They live in one process-wide [`Metrics`], because a child's
//!   report has no other way to reach them; several apps in one process (tests) share these
//!   counters.
//! - **State**, taken at scrape time from whoever owns it and handed to [`render`] as a plain
//!   [`State`] (the edge builds it from the cache's census): one
//!   `docker_cd_stack_status{stack, status}` and one `docker_cd_stack_health{stack, health}`
//!   series per stack, each with value 1 for the stack's current status or health, the
//!   snapshot's revision as an info metric, and when the last refresh succeeded. Nothing has
//!   to be kept in step with the cache.
//!
//! Foundation layer: uses no other module of the crate (labels arrive as plain strings, state
//! as a [`State`]); spawns nothing.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric name starts with this.
const PREFIX: &str = "docker_cd";

/// Histogram buckets in seconds: from a `git ls-remote` on a local repository (a few ms) to a
/// compose `up` that pulls images (minutes; `COMPOSE_TIMEOUT` defaults to 10 minutes).
const DURATION_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefreshLabels {
    trigger: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    receiver: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    program: String,
    subcommand: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandFailureLabels {
    program: String,
    subcommand: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StackLabels {
    stack: String,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StackHealthLabels {
    stack: String,
    health: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SnapshotLabels {
    revision: String,
    /// Encoded as `ref` (the derive strips the raw-identifier prefix).
    r#ref: String,
    ref_type: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// The event series of this process. Every field is a handle onto shared storage (cloning one
/// shares its values), so [`render`] can register clones in a registry built per scrape.
#[derive(Debug)]
pub struct Metrics {
    refreshes: Family<RefreshLabels, Counter>,
    refresh_duration: HistogramFamily<RefreshLabels>,
    sync_duration: HistogramFamily<SyncLabels>,
    webhook_deliveries: Family<WebhookLabels, Counter>,
    notifications: Family<NotificationLabels, Counter>,
    commit_statuses: Family<OutcomeLabels, Counter>,
    command_duration: HistogramFamily<CommandLabels>,
    command_failures: Family<CommandFailureLabels, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    refreshes: Family::default(),
    refresh_duration: Family::new_with_constructor(duration_histogram),
    sync_duration: Family::new_with_constructor(duration_histogram),
    webhook_deliveries: Family::default(),
    notifications: Family::default(),
    commit_statuses: Family::default(),
    command_duration: Family::new_with_constructor(duration_histogram),
    command_failures: Family::default(),
});

/// A refresh finished: `trigger` is what started it (`startup`, `periodic`, `webhook`,
/// `manual`), `ok` whether it completed (a new or an unchanged snapshot) or failed.
pub fn refresh_finished(trigger: &'static str, ok: bool, duration: Duration) {
    let labels = RefreshLabels {
        trigger,
        outcome: if ok { "completed" } else { "failed" },
    };
    METRICS.refreshes.get_or_create(&labels).inc();
    METRICS
        .refresh_duration
        .get_or_create(&labels)
        .observe(duration.as_secs_f64());
}

/// A stack's sync finished after `duration` (from its start to the outcome, the wait for
/// health included): `outcome` is `succeeded` or `failed`, the wire names of the stack's
/// `lastSyncStatus`.
pub fn sync_finished(outcome: &'static str, duration: Duration) {
    METRICS
        .sync_duration
        .get_or_create(&SyncLabels { outcome })
        .observe(duration.as_secs_f64());
}

/// How a webhook delivery was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookResult {
    /// A push to the tracked ref: a refresh was requested.
    Accepted,
    /// Authentic but not for us: another ref, another event.
    Ignored,
    Ping,
    /// Missing or wrong signature.
    Unauthorized,
    /// Malformed event header or payload.
    BadRequest,
    TooLarge,
    /// No `WEBHOOK_SECRET` configured.
    Disabled,
}

impl WebhookResult {
    fn label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Ignored => "ignored",
            Self::Ping => "ping",
            Self::Unauthorized => "unauthorized",
            Self::BadRequest => "bad_request",
            Self::TooLarge => "too_large",
            Self::Disabled => "disabled",
        }
    }
}

pub fn webhook_delivery(result: WebhookResult) {
    METRICS
        .webhook_deliveries
        .get_or_create(&WebhookLabels {
            result: result.label(),
        })
        .inc();
}

/// A notification was handled: `receiver` is the receiver's kind (`generic`, `slack`, `ntfy`;
/// `any` for a repeat dropped before any receiver), `outcome` one of `sent`, `failed` (after
/// the retries), `dropped` (its receiver's queue was full), `deduplicated`.
pub fn notification(receiver: &'static str, outcome: &'static str) {
    METRICS
        .notifications
        .get_or_create(&NotificationLabels { receiver, outcome })
        .inc();
}

/// A commit status was handled: `sent`, `failed` (after the retries) or `dropped`.
pub fn commit_status(outcome: &'static str) {
    METRICS
        .commit_statuses
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
}

/// A child process ran for `duration` (whatever its outcome). `program` is the binary's file
/// name (`git`, `docker`, `docker-compose`), `subcommand` what it was asked to do (`fetch`,
/// `compose up`, `ps`).
pub fn command_finished(program: &str, subcommand: &str, duration: Duration) {
    METRICS
        .command_duration
        .get_or_create(&CommandLabels {
            program: program.to_owned(),
            subcommand: subcommand.to_owned(),
        })
        .observe(duration.as_secs_f64());
}

/// A child process failed; `reason` is one of `spawn`, `exit`, `timeout`, `io`.
pub fn command_failed(program: &str, subcommand: &str, reason: &'static str) {
    METRICS
        .command_failures
        .get_or_create(&CommandFailureLabels {
            program: program.to_owned(),
            subcommand: subcommand.to_owned(),
            reason,
        })
        .inc();
}

/// The state series of one scrape, as plain values: the edge builds it from what the cache
/// reports, so this module needs none of the cache's types.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Every stack, by path.
    pub stacks: Vec<StackState>,
    /// The snapshot being served, once there is one.
    pub snapshot: Option<SnapshotState>,
    /// Stacks in that snapshot.
    pub stack_count: usize,
    pub last_success_at: Option<SystemTime>,
    pub consecutive_failures: u32,
    /// A refresh is running.
    pub refreshing: bool,
}

/// One stack of [`State::stacks`]: its path and the wire names of its status and health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackState {
    pub path: String,
    /// `missing`, `synced`, … (SPEC §4).
    pub status: &'static str,
    /// `healthy`, `degraded`, … (SPEC §9).
    pub health: &'static str,
}

/// What [`State::snapshot`] says about the snapshot being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotState {
    /// Its commit id.
    pub revision: String,
    /// The full ref name (or the commit id for a pinned commit).
    pub git_ref: String,
    /// `branch`, `tag` or `commit`.
    pub ref_type: &'static str,
}

/// Every series, for one scrape: this process's event series and `state`.
pub fn render(state: &State) -> Result<String, std::fmt::Error> {
    let metrics = &*METRICS;
    let mut registry = Registry::with_prefix(PREFIX);

    registry.register(
        "build",
        "The running docker-cd version",
        Info::new(BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
        }),
    );
    registry.register(
        "refreshes",
        "Refreshes finished, by trigger and outcome (completed or failed)",
        metrics.refreshes.clone(),
    );
    registry.register_with_unit(
        "refresh_duration",
        "How long refreshes took, by trigger and outcome",
        Unit::Seconds,
        metrics.refresh_duration.clone(),
    );
    registry.register_with_unit(
        "sync_duration",
        "How long stack syncs took, up to the stack's health when the sync waits for it, by outcome (succeeded or failed)",
        Unit::Seconds,
        metrics.sync_duration.clone(),
    );
    registry.register(
        "webhook_deliveries",
        "Webhook deliveries by result (accepted, ignored, ping, unauthorized, bad_request, too_large, disabled)",
        metrics.webhook_deliveries.clone(),
    );
    registry.register(
        "notifications",
        "Notifications by receiver kind and outcome (sent, failed, dropped, deduplicated)",
        metrics.notifications.clone(),
    );
    registry.register(
        "commit_statuses",
        "Commit statuses reported to the forge, by outcome (sent, failed, dropped)",
        metrics.commit_statuses.clone(),
    );
    registry.register_with_unit(
        "command_duration",
        "How long git and docker/compose child processes ran, by program and subcommand",
        Unit::Seconds,
        metrics.command_duration.clone(),
    );
    registry.register(
        "command_failures",
        "Git and docker/compose child processes that failed, by program, subcommand and reason (spawn, exit, timeout, io)",
        metrics.command_failures.clone(),
    );

    let statuses: Family<StackLabels, Gauge> = Family::default();
    let healths: Family<StackHealthLabels, Gauge> = Family::default();
    for stack in &state.stacks {
        statuses
            .get_or_create(&StackLabels {
                stack: stack.path.clone(),
                status: stack.status,
            })
            .set(1);
        healths
            .get_or_create(&StackHealthLabels {
                stack: stack.path.clone(),
                health: stack.health,
            })
            .set(1);
    }
    registry.register(
        "stack_status",
        "One series per stack, value 1, labelled with the stack's current status",
        statuses,
    );
    registry.register(
        "stack_health",
        "One series per stack, value 1, labelled with the stack's current health (healthy, progressing, degraded, missing, suspended, unknown)",
        healths,
    );

    if let Some(snapshot) = &state.snapshot {
        registry.register(
            "snapshot",
            "The desired state being served: commit id, ref and ref type",
            Info::new(SnapshotLabels {
                revision: snapshot.revision.clone(),
                r#ref: snapshot.git_ref.clone(),
                ref_type: snapshot.ref_type,
            }),
        );
    }
    let stack_count: Gauge = Gauge::default();
    stack_count.set(i64::try_from(state.stack_count).unwrap_or(i64::MAX));
    registry.register(
        "snapshot_stacks",
        "Stacks in the desired state being served",
        stack_count,
    );
    if let Some(at) = state.last_success_at {
        let seconds: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
        seconds.set(unix_seconds(at));
        registry.register_with_unit(
            "refresh_last_success_timestamp",
            "When the last refresh completed (Unix time)",
            Unit::Seconds,
            seconds,
        );
    }
    let failures: Gauge = Gauge::default();
    failures.set(i64::from(state.consecutive_failures));
    registry.register(
        "refresh_consecutive_failures",
        "Refreshes that failed in a row since the last success",
        failures,
    );
    let refreshing: Gauge = Gauge::default();
    refreshing.set(i64::from(state.refreshing));
    registry.register("refresh_in_progress", "1 while a refresh runs", refreshing);

    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";

    /// A state with `stacks` as (path, status, health).
    fn state(stacks: &[(&str, &'static str, &'static str)]) -> State {
        State {
            stacks: stacks
                .iter()
                .map(|&(path, status, health)| StackState {
                    path: path.to_owned(),
                    status,
                    health,
                })
                .collect(),
            snapshot: Some(SnapshotState {
                revision: REVISION.into(),
                git_ref: "refs/heads/main".into(),
                ref_type: "branch",
            }),
            stack_count: stacks.len(),
            ..State::default()
        }
    }

    #[test]
    fn each_stack_is_one_series_labelled_with_its_current_status() {
        let text = render(&state(&[
            ("db", "synced", "healthy"),
            ("web", "missing", "missing"),
        ]))
        .unwrap();
        let mut series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("docker_cd_stack_status{"))
            .collect();
        series.sort_unstable();
        assert_eq!(
            series,
            [
                "docker_cd_stack_status{stack=\"db\",status=\"synced\"} 1",
                "docker_cd_stack_status{stack=\"web\",status=\"missing\"} 1",
            ],
            "{text}"
        );
        assert!(
            text.contains("# TYPE docker_cd_stack_status gauge"),
            "{text}"
        );
    }

    #[test]
    fn each_stack_is_one_health_series_labelled_with_its_current_health() {
        let text = render(&state(&[
            ("db", "synced", "degraded"),
            ("web", "syncing", "progressing"),
        ]))
        .unwrap();
        let mut series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("docker_cd_stack_health{"))
            .collect();
        series.sort_unstable();
        assert_eq!(
            series,
            [
                "docker_cd_stack_health{stack=\"db\",health=\"degraded\"} 1",
                "docker_cd_stack_health{stack=\"web\",health=\"progressing\"} 1",
            ],
            "{text}"
        );
        assert!(
            text.contains("# TYPE docker_cd_stack_health gauge"),
            "{text}"
        );
    }

    #[test]
    fn the_snapshot_revision_is_an_info_metric_once_there_is_one() {
        assert!(
            !render(&State::default())
                .unwrap()
                .contains("docker_cd_snapshot_info")
        );
        let text = render(&state(&[])).unwrap();
        assert!(
            text.contains(
                "docker_cd_snapshot_info{revision=\"0123456789abcdef0123456789abcdef01234567\",ref=\"refs/heads/main\",ref_type=\"branch\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("docker_cd_snapshot_stacks 0"), "{text}");
    }

    #[test]
    fn label_values_are_escaped_by_the_encoder() {
        let text = render(&state(&[("we\"ird\\name", "missing", "missing")])).unwrap();
        assert!(
            text.contains(r#"docker_cd_stack_status{stack="we\"ird\\name",status="missing"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn the_refresh_state_is_rendered_as_gauges() {
        let text = render(&State {
            last_success_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000)),
            consecutive_failures: 3,
            refreshing: true,
            ..State::default()
        })
        .unwrap();
        for needle in [
            "docker_cd_refresh_last_success_timestamp_seconds 1000",
            "docker_cd_refresh_consecutive_failures 3",
            "docker_cd_refresh_in_progress 1",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }

    /// The `_count` of the sync-duration histogram for `outcome` in a scrape.
    fn sync_count(outcome: &str) -> u64 {
        let prefix = format!("docker_cd_sync_duration_seconds_count{{outcome=\"{outcome}\"}} ");
        render(&State::default())
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(|v| v.parse().unwrap()))
            .unwrap_or(0)
    }

    #[test]
    fn finished_syncs_are_timed_by_outcome() {
        // Process-wide and shared with tests running in parallel: compared as "grew by".
        let (succeeded, failed) = (sync_count("succeeded"), sync_count("failed"));
        sync_finished("succeeded", Duration::from_millis(40));
        sync_finished("succeeded", Duration::from_secs(90));
        sync_finished("failed", Duration::from_secs(700));
        assert!(sync_count("succeeded") >= succeeded + 2);
        assert!(sync_count("failed") > failed);
        let text = render(&State::default()).unwrap();
        assert!(
            text.contains("# TYPE docker_cd_sync_duration_seconds histogram"),
            "{text}"
        );
        for needle in [
            "docker_cd_sync_duration_seconds_bucket{outcome=\"succeeded\",le=\"0.05\"} ",
            "docker_cd_sync_duration_seconds_bucket{outcome=\"succeeded\",le=\"120\"} ",
            "docker_cd_sync_duration_seconds_bucket{outcome=\"failed\",le=\"+Inf\"} ",
            "docker_cd_sync_duration_seconds_sum{outcome=\"failed\"} ",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        // 700 s is past the last bucket: only +Inf holds it.
        let bucket = |le: &str| {
            let prefix = format!(
                "docker_cd_sync_duration_seconds_bucket{{outcome=\"failed\",le=\"{le}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix).map(|v| v.parse::<u64>().unwrap()))
                .unwrap()
        };
        assert!(bucket("+Inf") > bucket("600"), "{text}");
    }

    #[test]
    fn events_show_up_with_their_labels() {
        refresh_finished("webhook", false, Duration::from_millis(30));
        webhook_delivery(WebhookResult::TooLarge);
        command_finished("git", "unit-test-sub", Duration::from_millis(2));
        command_failed("git", "unit-test-sub", "timeout");
        notification("ntfy", "dropped");
        commit_status("failed");
        let text = render(&State::default()).unwrap();
        for needle in [
            "docker_cd_notifications_total{receiver=\"ntfy\",outcome=\"dropped\"} ",
            "docker_cd_commit_statuses_total{outcome=\"failed\"} ",
            "docker_cd_refreshes_total{trigger=\"webhook\",outcome=\"failed\"} ",
            "docker_cd_refresh_duration_seconds_bucket{trigger=\"webhook\",outcome=\"failed\",le=\"0.05\"} 1",
            "docker_cd_webhook_deliveries_total{result=\"too_large\"} ",
            "docker_cd_command_duration_seconds_count{program=\"git\",subcommand=\"unit-test-sub\"} ",
            "docker_cd_command_failures_total{program=\"git\",subcommand=\"unit-test-sub\",reason=\"timeout\"} ",
            "docker_cd_build_info{version=\"",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}
