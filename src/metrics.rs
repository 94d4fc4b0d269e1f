//! Metrics: what `GET /metrics` serves, in the Prometheus text format (0.0.4), through the
//! `prometheus-client` crate (no exposition text is written by hand).
//!
//! Two kinds of series:
//!
//! - **Events**, counted where they happen and kept for the life of the process: refreshes by
//!   trigger and outcome with their durations ([`refresh_finished`]), webhook deliveries by
//!   result ([`webhook_delivery`]), and the duration and failures of every child process by
//!   program and subcommand ([`command_finished`], [`command_failed`]; called by `process`,
//!   the one place children are spawned). They live in one process-wide [`Metrics`], because
//!   the process module has no other way to reach them; several apps in one process (tests)
//!   share these counters.
//! - **State**, derived from the [`Store`] at scrape time ([`render`]): one
//!   `docker_cd_stack_status{stack, status}` series per stack with value 1 for its current
//!   status, the snapshot's revision as an info metric, and when the last refresh succeeded.
//!   Nothing has to be kept in step with the store.
//!
//! Foundation layer: uses only desired_state (read-only); spawns nothing.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::desired_state::{RefreshPhase, StackStatus, Store, Trigger};

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
struct WebhookLabels {
    result: &'static str,
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
    webhook_deliveries: Family<WebhookLabels, Counter>,
    command_duration: HistogramFamily<CommandLabels>,
    command_failures: Family<CommandFailureLabels, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    refreshes: Family::default(),
    refresh_duration: Family::new_with_constructor(duration_histogram),
    webhook_deliveries: Family::default(),
    command_duration: Family::new_with_constructor(duration_histogram),
    command_failures: Family::default(),
});

fn trigger_label(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::Startup => "startup",
        Trigger::Periodic => "periodic",
        Trigger::Webhook => "webhook",
        Trigger::Manual => "manual",
    }
}

fn status_label(status: StackStatus) -> &'static str {
    match status {
        StackStatus::Missing => "missing",
        StackStatus::Syncing => "syncing",
        StackStatus::Synced => "synced",
        StackStatus::Deleting => "deleting",
        StackStatus::Failed => "failed",
        StackStatus::Drifted => "drifted",
        StackStatus::Orphaned => "orphaned",
    }
}

/// A refresh finished: `ok` is whether it completed (a new or an unchanged snapshot) or failed.
pub fn refresh_finished(trigger: Trigger, ok: bool, duration: Duration) {
    let labels = RefreshLabels {
        trigger: trigger_label(trigger),
        outcome: if ok { "completed" } else { "failed" },
    };
    METRICS.refreshes.get_or_create(&labels).inc();
    METRICS
        .refresh_duration
        .get_or_create(&labels)
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

/// Why a child process failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandFailure {
    /// It could not be started.
    Spawn,
    /// It ran and exited with a non-zero status (or was killed by a signal).
    Exit,
    /// It ran into its timeout; its process group was killed.
    Timeout,
    /// Talking to it failed, or it wrote more than allowed.
    Io,
}

impl CommandFailure {
    fn label(self) -> &'static str {
        match self {
            Self::Spawn => "spawn",
            Self::Exit => "exit",
            Self::Timeout => "timeout",
            Self::Io => "io",
        }
    }
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

pub fn command_failed(program: &str, subcommand: &str, failure: CommandFailure) {
    METRICS
        .command_failures
        .get_or_create(&CommandFailureLabels {
            program: program.to_owned(),
            subcommand: subcommand.to_owned(),
            reason: failure.label(),
        })
        .inc();
}

/// Every series, for one scrape: this process's event series and the state of `store`.
pub fn render(store: &Store) -> Result<String, std::fmt::Error> {
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
    registry.register(
        "webhook_deliveries",
        "Webhook deliveries by result (accepted, ignored, ping, unauthorized, bad_request, too_large, disabled)",
        metrics.webhook_deliveries.clone(),
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

    let stacks: Family<StackLabels, Gauge> = Family::default();
    for record in store.stacks() {
        stacks
            .get_or_create(&StackLabels {
                stack: record.path,
                status: status_label(record.sync.status),
            })
            .set(1);
    }
    registry.register(
        "stack_status",
        "One series per stack, value 1, labelled with the stack's current status",
        stacks,
    );

    let refresh = store.refresh_status();
    if let (Some(revision), Some(ref_type)) = (refresh.revision.clone(), refresh.ref_type) {
        registry.register(
            "snapshot",
            "The desired state being served: commit id, ref and ref type",
            Info::new(SnapshotLabels {
                revision,
                r#ref: refresh.git_ref.clone(),
                ref_type: match ref_type {
                    crate::desired_state::RefType::Branch => "branch",
                    crate::desired_state::RefType::Tag => "tag",
                    crate::desired_state::RefType::Commit => "commit",
                },
            }),
        );
    }
    let stack_count: Gauge = Gauge::default();
    stack_count.set(i64::try_from(refresh.stack_count).unwrap_or(i64::MAX));
    registry.register(
        "snapshot_stacks",
        "Stacks in the desired state being served",
        stack_count,
    );
    if let Some(at) = refresh.last_success_at {
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
    failures.set(i64::from(refresh.consecutive_failures));
    registry.register(
        "refresh_consecutive_failures",
        "Refreshes that failed in a row since the last success",
        failures,
    );
    let refreshing: Gauge = Gauge::default();
    refreshing.set(i64::from(
        refresh.refresh_status == RefreshPhase::Refreshing,
    ));
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
    use crate::desired_state::{DesiredStack, RefType, Snapshot};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn snapshot(paths: &[&str]) -> Snapshot {
        Snapshot {
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
            git_ref: "refs/heads/main".into(),
            ref_type: RefType::Branch,
            remote_oid: "0123456789abcdef0123456789abcdef01234567".into(),
            commit_message: "m".into(),
            stacks: paths
                .iter()
                .map(|p| {
                    (
                        (*p).to_owned(),
                        DesiredStack {
                            path: (*p).to_owned(),
                            project_name: Some((*p).to_owned()),
                            compose_file: "compose.yaml".into(),
                            compose_hash: None,
                            content_hash: "t".into(),
                            compose_blob: None,
                            warnings: vec![],
                            error: None,
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>(),
            warnings: vec![],
            tree: Default::default(),
        }
    }

    #[test]
    fn each_stack_is_one_series_labelled_with_its_current_status() {
        let store = Store::new("main".into());
        store.install_snapshot(
            Arc::new(snapshot(&["web", "db"])),
            Trigger::Startup,
            SystemTime::now(),
        );
        store.update_stack("db", |s| s.status = StackStatus::Synced);
        let text = render(&store).unwrap();
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
    fn the_snapshot_revision_is_an_info_metric_once_there_is_one() {
        let store = Store::new("main".into());
        assert!(!render(&store).unwrap().contains("docker_cd_snapshot_info"));
        store.install_snapshot(Arc::new(snapshot(&[])), Trigger::Manual, SystemTime::now());
        let text = render(&store).unwrap();
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
        let store = Store::new("main".into());
        store.install_snapshot(
            Arc::new(snapshot(&["we\"ird\\name"])),
            Trigger::Startup,
            SystemTime::now(),
        );
        let text = render(&store).unwrap();
        assert!(
            text.contains(r#"docker_cd_stack_status{stack="we\"ird\\name",status="missing"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn events_show_up_with_their_labels() {
        refresh_finished(Trigger::Webhook, false, Duration::from_millis(30));
        webhook_delivery(WebhookResult::TooLarge);
        command_finished("git", "unit-test-sub", Duration::from_millis(2));
        command_failed("git", "unit-test-sub", CommandFailure::Timeout);
        let text = render(&Store::new("main".into())).unwrap();
        for needle in [
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
