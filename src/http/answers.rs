//! The API's JSON answers, one type per answer, as they go on the wire (SPEC §7): the
//! contract with `docker-cd status`/`refresh`, the dashboard's script and every other client.
//! Errors are [`super::ApiError`]'s; `/api/stacks`, `/api/refresh-status` and the event
//! stream write the store's own types.
//!
//! The small answers list their fields in alphabetical order on purpose: they were JSON maps
//! once, which serde_json writes sorted, so the order keeps their bytes what they were (and
//! what the docs show).
//!
//! Uses: desired_state (records, statuses), compose (its view of a container, for the stack
//! detail), queue (what became of a request for a refresh). The stack detail is generic over
//! the view of a swarm service, so that naming it is left to the handler that reads it.

use serde::Serialize;

use crate::desired_state::{RefreshPhase, StackRecord};
use crate::queue::Admission;
use crate::stack::ContainerView;

/// Written as `null`: what an answer has no value for (a check not made, a list the engine
/// did not give).
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Null;

/// `GET /healthz`: `{"status": "ok"}`.
#[derive(Debug, Serialize)]
pub(super) struct Health {
    status: &'static str,
}

impl Health {
    pub(super) const OK: Self = Self { status: "ok" };
}

/// `GET /readyz`: a check of each dependency, and one line per unmet check in `reasons`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Readiness<'a> {
    pub(super) compose: ComposeCheck<'a>,
    pub(super) compose_tool: Option<&'a str>,
    pub(super) data_dir: DataDirCheck,
    pub(super) deploy_mode: Option<&'static str>,
    pub(super) docker: DockerCheck,
    pub(super) git: GitCheck,
    /// No reasons.
    pub(super) ready: bool,
    pub(super) reasons: Vec<String>,
    pub(super) refresh_status: RefreshPhase,
}

#[derive(Debug, Serialize)]
pub(super) struct GitCheck {
    pub(super) found: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct DataDirCheck {
    pub(super) writable: bool,
}

/// What `/readyz` says of the Docker engine.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(super) enum DockerCheck {
    /// `reachable` is `true`.
    Reachable { reachable: bool, version: String },
    /// `reachable` is `false`; `error` as clients see engine errors.
    Unreachable { error: String, reachable: bool },
    /// Reconciling is disabled.
    NotChecked { note: &'static str, reachable: Null },
}

/// What `/readyz` says of the compose tool found at start-up.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(super) enum ComposeCheck<'a> {
    /// `tool` is `null` when none was found at start-up.
    Checked { found: bool, tool: Option<&'a str> },
    /// Reconciling is disabled.
    NotChecked { found: Null, note: &'static str },
}

/// `GET /api/stacks/{path}`: the record, as `/api/stacks` lists it, and what the engine says
/// about the stack's project (`S`: how a swarm service is shown).
#[derive(Debug, Serialize)]
pub(super) struct StackDetail<S> {
    #[serde(flatten)]
    pub(super) record: StackRecord,
    #[serde(flatten)]
    pub(super) workloads: Workloads<S>,
}

/// The stack detail's view of the engine, in each mode: read, or why not.
#[derive(Debug, Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub(super) enum Workloads<S> {
    /// Compose mode: the project's containers (none for a stack without a project).
    Containers { containers: Vec<ContainerView> },
    /// Swarm mode: the stack's services, and their tasks in the shape of containers.
    Services {
        services: Vec<S>,
        containers: Vec<ContainerView>,
    },
    /// Compose mode, no answer from the engine; the error as clients see engine errors.
    ContainersUnread {
        containers: Null,
        containers_error: String,
    },
    /// Swarm mode, no answer from the engine; the error as clients see engine errors.
    ServicesUnread {
        services: Null,
        containers: Null,
        containers_error: String,
    },
}

/// What became of a request for a refresh: `POST /api/refresh`, and the part of a webhook's
/// answer that says so.
#[derive(Debug, Serialize)]
pub(super) struct RefreshAnswer {
    message: &'static str,
    status: Admitted,
}

/// `status` of a [`RefreshAnswer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Admitted {
    Refreshing,
    Queued,
}

impl From<Admission> for RefreshAnswer {
    fn from(admission: Admission) -> Self {
        match admission {
            Admission::Started => Self {
                message: "refresh started",
                status: Admitted::Refreshing,
            },
            Admission::Queued => Self {
                message: "a refresh is running; another will follow it",
                status: Admitted::Queued,
            },
        }
    }
}

/// `POST /api/webhook`, for a delivery that was not refused.
#[derive(Debug, Serialize)]
pub(super) struct DeliveryAnswer {
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    status: DeliveryStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<&'static str>,
}

/// `status` of a [`DeliveryAnswer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum DeliveryStatus {
    Pong,
    Ignored,
    Refreshing,
    Queued,
}

impl DeliveryAnswer {
    /// A ping: `{"status": "pong"}`.
    pub(super) fn pong() -> Self {
        Self::new(DeliveryStatus::Pong)
    }

    /// Another event, or a push to another ref: `{"reason": …, "status": "ignored"}`.
    pub(super) fn ignored(reason: String) -> Self {
        Self {
            reason: Some(reason),
            ..Self::new(DeliveryStatus::Ignored)
        }
    }

    /// A push to the tracked ref: the [`RefreshAnswer`].
    pub(super) fn refresh(answer: RefreshAnswer) -> Self {
        let status = match answer.status {
            Admitted::Refreshing => DeliveryStatus::Refreshing,
            Admitted::Queued => DeliveryStatus::Queued,
        };
        Self {
            message: Some(answer.message),
            ..Self::new(status)
        }
    }

    /// The answer, with `warning` added.
    pub(super) fn warning(self, warning: &'static str) -> Self {
        Self {
            warning: Some(warning),
            ..self
        }
    }

    pub(super) fn status(&self) -> DeliveryStatus {
        self.status
    }

    fn new(status: DeliveryStatus) -> Self {
        Self {
            message: None,
            reason: None,
            status,
            warning: None,
        }
    }
}

/// `POST /api/reconcile/ack`: `{"path": …, "status": "acknowledged"}`.
#[derive(Debug, Serialize)]
pub(super) struct AckAnswer {
    path: String,
    status: &'static str,
}

impl AckAnswer {
    pub(super) fn new(path: String) -> Self {
        Self {
            path,
            status: "acknowledged",
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::desired_state::{DesiredStack, StackStatus, SyncInfo};

    /// The text an answer goes on the wire as.
    fn wire(answer: &impl Serialize) -> String {
        serde_json::to_string(answer).expect("answers serialise")
    }

    // Each small answer is compared with the text of the `json!` map it replaces: equal
    // strings, not only equal values, so the bytes on the wire stayed the same.

    #[test]
    fn health_refresh_and_ack_answers_keep_their_bytes() {
        assert_eq!(wire(&Health::OK), json!({ "status": "ok" }).to_string());
        assert_eq!(
            wire(&RefreshAnswer::from(Admission::Started)),
            json!({ "status": "refreshing", "message": "refresh started" }).to_string()
        );
        assert_eq!(
            wire(&RefreshAnswer::from(Admission::Queued)),
            json!({
                "status": "queued",
                "message": "a refresh is running; another will follow it"
            })
            .to_string()
        );
        assert_eq!(
            wire(&AckAnswer::new("web".into())),
            json!({ "status": "acknowledged", "path": "web" }).to_string()
        );
    }

    #[test]
    fn webhook_answers_keep_their_bytes() {
        assert_eq!(
            wire(&DeliveryAnswer::pong()),
            json!({ "status": "pong" }).to_string()
        );
        assert_eq!(
            wire(&DeliveryAnswer::ignored(
                "issues events are not handled".into()
            )),
            json!({ "status": "ignored", "reason": "issues events are not handled" }).to_string()
        );
        let deleted = DeliveryAnswer::refresh(RefreshAnswer::from(Admission::Queued))
            .warning("nothing is removed");
        assert_eq!(deleted.status(), DeliveryStatus::Queued);
        let mut expected = json!({
            "status": "queued",
            "message": "a refresh is running; another will follow it"
        });
        expected["warning"] = json!("nothing is removed");
        assert_eq!(wire(&deleted), expected.to_string());
    }

    #[test]
    fn readiness_keeps_its_bytes_when_checked_failing_or_not_checked() {
        let checked = Readiness {
            compose: ComposeCheck::Checked {
                found: true,
                tool: Some("docker compose plugin 2.40.3"),
            },
            compose_tool: Some("docker compose plugin 2.40.3"),
            data_dir: DataDirCheck { writable: true },
            deploy_mode: Some("compose"),
            docker: DockerCheck::Reachable {
                reachable: true,
                version: "28.2.2".into(),
            },
            git: GitCheck { found: true },
            ready: true,
            reasons: vec![],
            refresh_status: RefreshPhase::Completed,
        };
        assert_eq!(
            wire(&checked),
            json!({
                "ready": true,
                "reasons": [],
                "git": { "found": true },
                "dataDir": { "writable": true },
                "docker": { "reachable": true, "version": "28.2.2" },
                "compose": { "found": true, "tool": "docker compose plugin 2.40.3" },
                "composeTool": "docker compose plugin 2.40.3",
                "deployMode": "compose",
                "refreshStatus": "completed",
            })
            .to_string()
        );
        let failing = Readiness {
            compose: ComposeCheck::Checked {
                found: false,
                tool: None,
            },
            compose_tool: None,
            docker: DockerCheck::Unreachable {
                error: "cannot connect".into(),
                reachable: false,
            },
            ready: false,
            reasons: vec!["the Docker engine is not reachable: cannot connect".into()],
            ..checked
        };
        assert_eq!(
            wire(&failing),
            json!({
                "ready": false,
                "reasons": ["the Docker engine is not reachable: cannot connect"],
                "git": { "found": true },
                "dataDir": { "writable": true },
                "docker": { "reachable": false, "error": "cannot connect" },
                "compose": { "found": false, "tool": null },
                "composeTool": null,
                "deployMode": "compose",
                "refreshStatus": "completed",
            })
            .to_string()
        );
        let not_checked = Readiness {
            compose: ComposeCheck::NotChecked {
                found: Null,
                note: "reconciling is disabled",
            },
            docker: DockerCheck::NotChecked {
                note: "reconciling is disabled",
                reachable: Null,
            },
            deploy_mode: None,
            ready: true,
            reasons: vec![],
            ..failing
        };
        assert_eq!(
            wire(&not_checked),
            json!({
                "ready": true,
                "reasons": [],
                "git": { "found": true },
                "dataDir": { "writable": true },
                "docker": { "reachable": null, "note": "reconciling is disabled" },
                "compose": { "found": null, "note": "reconciling is disabled" },
                "composeTool": null,
                "deployMode": null,
                "refreshStatus": "completed",
            })
            .to_string()
        );
    }

    fn record() -> StackRecord {
        let desired = DesiredStack {
            path: "web".into(),
            project_name: Some("web".into()),
            compose_file: "compose.yaml".into(),
            compose_hash: None,
            content_hash: "0123456789abcdef0123".into(),
            compose_blob: None,
            warnings: vec!["a warning".into()],
            error: None,
            settings: None,
        };
        StackRecord::new(&desired, &SyncInfo::new(StackStatus::Synced))
    }

    /// The record as a JSON map with `patch`'s keys set: how the detail used to be built.
    fn patched(patch: Value) -> Value {
        let mut body = serde_json::to_value(record()).expect("records serialise");
        for (key, value) in patch.as_object().expect("a map of keys to set") {
            body[key] = value.clone();
        }
        body
    }

    /// A service as a test shows it: any serialisable view will do.
    type Service = Value;

    fn detail(workloads: Workloads<Service>) -> Value {
        serde_json::to_value(StackDetail {
            record: record(),
            workloads,
        })
        .expect("details serialise")
    }

    #[test]
    fn the_stack_detail_is_the_record_with_the_engines_view_in_each_mode() {
        let container = ContainerView {
            name: "web_httpd_1".into(),
            service: "httpd".into(),
            state: "running".into(),
            status: "Up 10 seconds (healthy)".into(),
            health: Some("healthy"),
            image: "busybox:latest".into(),
            ports: "127.0.0.1:18080->8080/tcp".into(),
        };
        let containers = serde_json::to_value(vec![container.clone()]).expect("views serialise");
        assert_eq!(
            detail(Workloads::Containers {
                containers: vec![container.clone()]
            }),
            patched(json!({ "containers": containers }))
        );
        assert_eq!(
            detail(Workloads::Services {
                services: vec![json!({ "name": "web_httpd", "replicas": "1/1" })],
                containers: vec![container],
            }),
            patched(json!({
                "services": [{ "name": "web_httpd", "replicas": "1/1" }],
                "containers": containers
            }))
        );
        assert_eq!(
            detail(Workloads::ContainersUnread {
                containers: Null,
                containers_error: "engine down".into(),
            }),
            patched(json!({ "containers": null, "containersError": "engine down" }))
        );
        assert_eq!(
            detail(Workloads::ServicesUnread {
                services: Null,
                containers: Null,
                containers_error: "engine down".into(),
            }),
            patched(json!({
                "services": null,
                "containers": null,
                "containersError": "engine down"
            }))
        );
    }
}
