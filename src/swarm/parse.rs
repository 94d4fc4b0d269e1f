//! Parsing what the docker CLI prints about a swarm: `docker info` (membership),
//! `docker stack deploy --help` (which flags exist), `docker service ls` and
//! `docker service inspect` (services, their labels, modes and update state) and
//! `docker stack ps` and `docker service ps` (tasks), and the views built from them. Pure: bytes
//! in, typed values out, tested on captured output.
//!
//! Uses: stack (labels, the container view), `check` (the replicas label).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stack::ContainerView;
use crate::stack::labels::DeployedLabels;

use super::{NAMESPACE_LABEL, STACK_IMAGE_LABEL};

/// The engine's swarm membership, from `docker info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmState {
    /// `inactive`, `pending`, `active`, `error` or `locked`.
    pub local_node_state: String,
    /// This node is a manager (can deploy stacks).
    pub control_available: bool,
}

impl SwarmState {
    pub fn is_manager(&self) -> bool {
        self.local_node_state == "active" && self.control_available
    }
}

/// Parses `docker info --format '{{json .Swarm.LocalNodeState}} {{json .Swarm.ControlAvailable}}'`,
/// e.g. `"active" true`.
pub fn parse_swarm_state(out: &[u8]) -> Result<SwarmState, String> {
    let text = String::from_utf8_lossy(out);
    let mut words = text.split_whitespace();
    let state: String = serde_json::from_str(words.next().unwrap_or_default())
        .map_err(|e| format!("swarm state: {e}: {text:?}"))?;
    let control: bool = serde_json::from_str(words.next().unwrap_or_default())
        .map_err(|e| format!("control available: {e}: {text:?}"))?;
    Ok(SwarmState {
        local_node_state: state,
        control_available: control,
    })
}

/// Which optional `docker stack deploy` flags the installed CLI has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployFlags {
    pub prune: bool,
    pub detach: bool,
    pub resolve_image: bool,
    pub with_registry_auth: bool,
}

/// Reads the flags from `docker stack deploy --help` (the options list: `--prune`,
/// `-d, --detach`, …; words that merely mention a flag in a description do not count).
pub fn parse_deploy_flags(help: &str) -> DeployFlags {
    let has = |flag: &str| {
        help.lines().any(|line| {
            let line = line.trim_start();
            line.starts_with('-')
                && line
                    .split_whitespace()
                    .take(3)
                    .any(|w| w.trim_end_matches(',') == flag)
        })
    };
    DeployFlags {
        prune: has("--prune"),
        detach: has("--detach"),
        resolve_image: has("--resolve-image"),
        with_registry_auth: has("--with-registry-auth"),
    }
}

impl DeployFlags {
    /// The `docker stack deploy` arguments after the compose files. `--prune` is required
    /// (services removed from Git must go, as compose's `--remove-orphans` does); the others are
    /// used when present.
    pub(super) fn args(&self) -> Vec<&'static str> {
        let mut args = vec!["--prune"];
        if self.detach {
            // Do not wait for the services to converge: the sync's health wait does
            // (SYNC_HEALTH_TIMEOUT), and sees the tasks meanwhile. The CLI's own wait never ends
            // for a service whose tasks keep failing (it holds the deploy until
            // COMPOSE_TIMEOUT), and a stack it waits for shows no `progressing`. Explicit,
            // because the default changed between CLI versions (CLI 20.10 has no flag and
            // never waits).
            args.push("--detach=true");
        }
        if self.resolve_image {
            // Pin digests only for services whose spec changed: unchanged services (and drift
            // reverts) never move to whatever a tag points at now.
            args.extend(["--resolve-image", "changed"]);
        }
        if self.with_registry_auth {
            args.push("--with-registry-auth");
        }
        args
    }
}

/// One service of a stack, from `docker service ls` and `docker service inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub id: String,
    /// `<stack>_<service>`.
    pub name: String,
    /// The stack (`com.docker.stack.namespace`), docker-cd's project name.
    pub stack: String,
    /// The compose service name.
    pub service: String,
    /// Every label of the service (docker-cd's, the CLI's, the operator's).
    pub labels: BTreeMap<String, String>,
    /// docker-cd's labels among them, parsed from `labels` once, when the service is read.
    pub deployed: DeployedLabels,
    /// `replicated`, `global`, `replicated-job` or `global-job`.
    pub mode: String,
    /// The replica count in the spec (replicated services).
    pub spec_replicas: Option<u64>,
    /// Running tasks and desired tasks, as `docker service ls` counts them.
    pub running: u32,
    pub desired: u32,
    /// The image in the spec (`name:tag@sha256:…` once resolved).
    pub image: String,
    /// `updating`, `paused`, `completed`, `rollback_started`, `rollback_paused`,
    /// `rollback_completed`; `None` for a service never updated.
    pub update_state: Option<String>,
    pub update_message: Option<String>,
    /// Published ports, `*:8080->80/tcp` style.
    pub ports: String,
}

impl ServiceInfo {
    fn label(&self, key: &str) -> &str {
        self.labels.get(key).map(String::as_str).unwrap_or_default()
    }

    /// What a hand-made change to this service looks like, if any: scaled away from the replica
    /// count Git asked for, or running another image than the compose file names.
    pub fn drift(&self) -> Option<String> {
        let mut problems = Vec::new();
        let recorded = self
            .labels
            .get(super::check::REPLICAS)
            .and_then(|r| r.parse::<u64>().ok());
        if let (Some(recorded), Some(now)) = (recorded, self.spec_replicas) {
            if recorded != now {
                problems.push(format!(
                    "service {} was scaled to {now} replicas (Git says {recorded})",
                    self.name
                ));
            }
        }
        let stack_image = self.label(STACK_IMAGE_LABEL);
        let image = self.image.split('@').next().unwrap_or_default();
        if !stack_image.is_empty() && image != stack_image {
            problems.push(format!(
                "service {} runs image {image}, not {stack_image}",
                self.name
            ));
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    /// An update of this service that swarm stopped (`paused`, `rollback_paused`): the stack
    /// cannot be applied until Git or the operator changes something.
    pub fn failure(&self) -> Option<String> {
        let state = self.update_state.as_deref()?;
        matches!(state, "paused" | "rollback_paused").then(|| {
            format!(
                "the update of service {} is {state}: {}",
                self.name,
                self.update_message.as_deref().unwrap_or("no message")
            )
        })
    }
}

/// One task (a container on some node) of a stack, from `docker stack ps`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskInfo {
    #[serde(rename(deserialize = "ID"))]
    pub id: String,
    /// `<stack>_<service>.<slot>` (replicated) or `<stack>_<service>.<node id>` (global).
    #[serde(rename(deserialize = "Name"))]
    pub name: String,
    #[serde(rename(deserialize = "Node"))]
    pub node: String,
    #[serde(rename(deserialize = "Image"))]
    pub image: String,
    /// `Running`, `Shutdown`, …
    #[serde(rename(deserialize = "DesiredState"))]
    pub desired_state: String,
    /// `Running 5 minutes ago`, `Failed 8 seconds ago`, …
    #[serde(rename(deserialize = "CurrentState"))]
    pub current_state: String,
    #[serde(rename(deserialize = "Error"))]
    pub error: String,
    #[serde(rename(deserialize = "Ports"), default)]
    pub ports: String,
}

impl TaskInfo {
    /// The service's full name (`<stack>_<service>`).
    pub fn service_name(&self) -> &str {
        self.name.rsplit_once('.').map_or(&self.name, |(s, _)| s)
    }

    /// The current state's first word, lower-cased: `running`, `failed`, `shutdown`, …
    pub fn state(&self) -> String {
        self.current_state
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
    }
}

/// One line of `docker service ls --format '{{json .}}'`.
#[derive(Debug, Deserialize)]
struct LsLine {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Replicas")]
    replicas: String,
}

/// The part of `docker service inspect` docker-cd reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspected {
    #[serde(rename = "ID")]
    id: String,
    spec: InspectedSpec,
    #[serde(default)]
    update_status: Option<UpdateStatus>,
    #[serde(default)]
    endpoint: Option<Endpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedSpec {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    mode: BTreeMap<String, serde_json::Value>,
    task_template: TaskTemplate,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TaskTemplate {
    container_spec: ContainerSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerSpec {
    #[serde(default)]
    image: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateStatus {
    #[serde(default)]
    state: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Endpoint {
    #[serde(default)]
    ports: Vec<PortConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PortConfig {
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    target_port: u32,
    #[serde(default)]
    published_port: u32,
    #[serde(default)]
    publish_mode: String,
}

/// `"1/1"`, `"0/3 (max 1 per node)"`, `"0/1 (1/1 completed)"` → (running, desired).
fn parse_replicas(text: &str) -> Option<(u32, u32)> {
    let first = text.split_whitespace().next()?;
    let (running, desired) = first.split_once('/')?;
    Some((running.parse().ok()?, desired.parse().ok()?))
}

/// Parses `docker service ls --format '{{json .}}'` output: service id → (running, desired).
pub fn parse_service_ls(out: &[u8]) -> Result<BTreeMap<String, (u32, u32)>, String> {
    let mut replicas = BTreeMap::new();
    for line in out.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line: LsLine = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        let counts = parse_replicas(&line.replicas).unwrap_or((0, 0));
        replicas.insert(line.id, counts);
    }
    Ok(replicas)
}

/// Parses `docker service inspect` output (a JSON array) and joins it with the replica counts
/// of [`parse_service_ls`] (matched by id prefix: `ls` prints short ids). Services without the
/// stack namespace label are skipped.
pub fn parse_service_inspect(
    out: &[u8],
    replicas: &BTreeMap<String, (u32, u32)>,
) -> Result<Vec<ServiceInfo>, String> {
    if out.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let inspected: Vec<Inspected> = serde_json::from_slice(out).map_err(|e| e.to_string())?;
    let mut services = Vec::new();
    for s in inspected {
        let Some(stack) = s.spec.labels.get(NAMESPACE_LABEL).cloned() else {
            continue;
        };
        let (running, desired) = replicas
            .iter()
            .find(|(id, _)| s.id.starts_with(id.as_str()))
            .map(|(_, counts)| *counts)
            .unwrap_or((0, 0));
        let (mode, spec_replicas) = match s.spec.mode.iter().next() {
            Some((kind, value)) if kind == "Replicated" => (
                "replicated".to_owned(),
                Some(value.get("Replicas").and_then(|r| r.as_u64()).unwrap_or(1)),
            ),
            Some((kind, _)) => (
                match kind.as_str() {
                    "Global" => "global",
                    "ReplicatedJob" => "replicated-job",
                    "GlobalJob" => "global-job",
                    _ => "other",
                }
                .to_owned(),
                None,
            ),
            None => ("replicated".to_owned(), Some(1)),
        };
        let service = s
            .spec
            .name
            .strip_prefix(&format!("{stack}_"))
            .unwrap_or(&s.spec.name)
            .to_owned();
        let ports = s
            .endpoint
            .map(|e| {
                e.ports
                    .iter()
                    .map(|p| {
                        let host = if p.publish_mode == "host" {
                            "host"
                        } else {
                            "*"
                        };
                        format!(
                            "{host}:{}->{}/{}",
                            p.published_port, p.target_port, p.protocol
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let (update_state, update_message) = match s.update_status {
            Some(u) if !u.state.is_empty() => {
                (Some(u.state), Some(u.message).filter(|m| !m.is_empty()))
            }
            _ => (None, None),
        };
        services.push(ServiceInfo {
            id: s.id,
            name: s.spec.name,
            stack,
            service,
            deployed: DeployedLabels::from_labels(&s.spec.labels),
            labels: s.spec.labels,
            mode,
            spec_replicas,
            running,
            desired,
            image: s.spec.task_template.container_spec.image,
            update_state,
            update_message,
            ports,
        });
    }
    services.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(services)
}

/// One line of `docker node ls --format '{{json .}}'`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NodeInfo {
    #[serde(rename(deserialize = "ID"))]
    pub id: String,
    /// What `docker service ps` names the node by.
    #[serde(rename(deserialize = "Hostname"))]
    pub hostname: String,
    /// `Ready`, `Down`, `Unknown`, `Disconnected`.
    #[serde(rename(deserialize = "Status"))]
    pub status: String,
    /// `Active`, `Pause`, `Drain`.
    #[serde(rename(deserialize = "Availability"))]
    pub availability: String,
}

impl NodeInfo {
    /// The manager hears from the node: its tasks' recorded states can be believed.
    pub fn is_up(&self) -> bool {
        self.status.eq_ignore_ascii_case("ready")
    }
}

/// Parses `docker node ls --format '{{json .}}'` output.
pub fn parse_node_ls(out: &[u8]) -> Result<Vec<NodeInfo>, String> {
    out.split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| {
            serde_json::from_slice(line)
                .map_err(|e| format!("{e}: {:?}", String::from_utf8_lossy(line)))
        })
        .collect()
}

/// The names (hostname and id) of the nodes in `nodes` that are not up: a task recorded on one
/// of them is not known to run (a lost node's tasks keep their last reported state).
pub fn down_nodes(nodes: &[NodeInfo]) -> std::collections::BTreeSet<String> {
    nodes
        .iter()
        .filter(|n| !n.is_up())
        .flat_map(|n| [n.hostname.clone(), n.id.clone()])
        .collect()
}

/// The ids of the services whose `docker service ls` count cannot be believed: every service
/// with running tasks while a node is down (its tasks there keep their last state), and any
/// service counting more running tasks than it desires (replaced tasks still recorded running).
pub fn doubtful_counts(
    services: &[ServiceInfo],
    down: &std::collections::BTreeSet<String>,
) -> Vec<String> {
    services
        .iter()
        .filter(|s| s.running > s.desired || (!down.is_empty() && s.running > 0))
        .map(|s| s.id.clone())
        .collect()
}

/// Recounts the running tasks of the services `ids` from their `tasks`: desired and current
/// state both running, on a node not in `down`.
pub fn recount_running(
    services: &mut [ServiceInfo],
    ids: &[String],
    tasks: &[TaskInfo],
    down: &std::collections::BTreeSet<String>,
) {
    for service in services.iter_mut().filter(|s| ids.contains(&s.id)) {
        let running = tasks
            .iter()
            .filter(|t| {
                t.service_name() == service.name
                    && t.desired_state.eq_ignore_ascii_case("running")
                    && t.state() == "running"
                    && !down.contains(&t.node)
            })
            .count();
        service.running = u32::try_from(running).unwrap_or(u32::MAX);
    }
}

/// Parses `docker stack ps --format '{{json .}}'` or `docker service ps --format '{{json .}}'`
/// output (the same shape).
pub fn parse_tasks(out: &[u8]) -> Result<Vec<TaskInfo>, String> {
    out.split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| serde_json::from_slice(line).map_err(|e| e.to_string()))
        .collect()
}

/// A service as the stack detail endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceView {
    /// `<stack>_<service>`.
    pub name: String,
    pub service: String,
    /// `replicated`, `global`, `replicated-job` or `global-job`.
    pub mode: String,
    pub image: String,
    pub replicas_running: u32,
    pub replicas_desired: u32,
    pub update_state: Option<String>,
    pub update_message: Option<String>,
    pub ports: String,
    /// The nodes its current tasks are on, sorted, without repeats.
    pub nodes: Vec<String>,
    pub tasks: Vec<TaskView>,
}

/// A current task of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    /// `<stack>_<service>.<slot>`.
    pub name: String,
    pub node: String,
    /// `running`, `starting`, `preparing`, `failed`, …
    pub state: String,
    /// The engine's words: `Running 5 minutes ago`.
    pub status: String,
    pub desired_state: String,
    /// Why the task failed, if it did.
    pub error: Option<String>,
}

/// Joins services with their current tasks for the stack detail endpoint.
pub fn service_views(services: &[ServiceInfo], tasks: &[TaskInfo]) -> Vec<ServiceView> {
    services
        .iter()
        .map(|s| {
            let mine: Vec<&TaskInfo> = tasks
                .iter()
                .filter(|t| t.service_name() == s.name)
                .collect();
            let nodes: std::collections::BTreeSet<String> = mine
                .iter()
                .filter(|t| !t.node.is_empty())
                .map(|t| t.node.clone())
                .collect();
            ServiceView {
                name: s.name.clone(),
                service: s.service.clone(),
                mode: s.mode.clone(),
                image: s.image.clone(),
                replicas_running: s.running,
                replicas_desired: s.desired,
                update_state: s.update_state.clone(),
                update_message: s.update_message.clone(),
                ports: s.ports.clone(),
                nodes: nodes.into_iter().collect(),
                tasks: mine
                    .iter()
                    .map(|t| TaskView {
                        name: t.name.clone(),
                        node: t.node.clone(),
                        state: t.state(),
                        status: t.current_state.clone(),
                        desired_state: t.desired_state.to_ascii_lowercase(),
                        error: Some(t.error.trim_matches('"').to_owned()).filter(|e| !e.is_empty()),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The tasks of a stack as containers (the shape compose mode shows), so a client reading
/// `containers` sees the same fields in both modes.
pub fn task_containers(services: &[ServiceInfo], tasks: &[TaskInfo]) -> Vec<ContainerView> {
    tasks
        .iter()
        .map(|t| {
            let service = services.iter().find(|s| s.name == t.service_name());
            ContainerView {
                name: t.name.clone(),
                service: service.map_or_else(|| t.service_name().to_owned(), |s| s.service.clone()),
                state: t.state(),
                status: t.current_state.clone(),
                health: None,
                image: t.image.clone(),
                ports: service.map(|s| s.ports.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from docker CLI 28.2.2 against Engine 20.10 (ids shortened where noted).
    const LS: &[u8] = br#"{"ID":"ctyhybyd857t","Image":"docker-cd-test/busybox:latest","Mode":"replicated","Name":"web_app","Ports":"","Replicas":"1/2"}
{"ID":"9xcaodx6678f","Image":"docker-cd-test/busybox:latest","Mode":"global","Name":"g_g","Ports":"*:18996-\u003e80/tcp","Replicas":"1/1"}
"#;
    const INSPECT: &[u8] = br#"[{"ID": "ctyhybyd857tkv2qyrlbjoc3c", "Spec": {"Name": "web_app", "Labels": {"com.docker-cd.content-hash": "t1", "com.docker-cd.owner": "docker-cd", "com.docker-cd.replicas": "1", "com.docker-cd.services": "app,db", "com.docker.stack.image": "docker-cd-test/busybox:latest", "com.docker.stack.namespace": "web"}, "TaskTemplate": {"ContainerSpec": {"Image": "docker-cd-test/busybox:latest", "Labels": {"com.docker.stack.namespace": "web"}, "Init": true}, "RestartPolicy": {"Condition": "any"}}, "Mode": {"Replicated": {"Replicas": 2}}}, "Endpoint": {"Spec": {"Mode": "vip"}}, "UpdateStatus": {"State":"paused","StartedAt":"2026-11-28T16:51:54Z","Message":"update paused due to failure or early termination of task cbmx"}},
{"ID": "9xcaodx6678fug28rclzpitdr", "Spec": {"Name": "g_g", "Labels": {"com.docker.stack.image": "docker-cd-test/busybox:latest", "com.docker.stack.namespace": "g"}, "TaskTemplate": {"ContainerSpec": {"Image": "other:1@sha256:abc"}}, "Mode": {"Global": {}}}, "Endpoint": {"Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 18996, "PublishMode": "ingress"}]}},
{"ID": "zzz", "Spec": {"Name": "loose", "Labels": {}, "TaskTemplate": {"ContainerSpec": {"Image": "x"}}, "Mode": {"Replicated": {"Replicas": 1}}}}]"#;
    const PS: &[u8] = br#"{"CurrentState":"Running 1 second ago","DesiredState":"Running","Error":"","ID":"o9htiraeb5al","Image":"docker-cd-test/busybox:latest","Name":"g_g.x8fhzxg6ffwigvaewqczie3ne","Node":"vm","Ports":""}
{"CurrentState":"Failed 8 seconds ago","DesiredState":"Shutdown","Error":"\"task: non-zero exit (3)\"","ID":"gjluei7rkhao","Image":"docker-cd-test/busybox:latest","Name":"web_app.1","Node":"vm","Ports":""}
"#;

    #[test]
    fn services_join_ls_counts_with_inspect_labels_modes_and_update_state() {
        let replicas = parse_service_ls(LS).unwrap();
        assert_eq!(replicas["ctyhybyd857t"], (1, 2));
        let services = parse_service_inspect(INSPECT, &replicas).unwrap();
        assert_eq!(services.len(), 2, "a service outside any stack is skipped");
        let g = &services[0];
        assert_eq!(
            (g.stack.as_str(), g.service.as_str(), g.mode.as_str()),
            ("g", "g", "global")
        );
        assert_eq!((g.running, g.desired, g.spec_replicas), (1, 1, None));
        assert_eq!(g.ports, "*:18996->80/tcp");
        assert!(!g.deployed.is_owned());
        assert_eq!(
            g.drift().as_deref(),
            Some("service g_g runs image other:1, not docker-cd-test/busybox:latest")
        );
        let web = &services[1];
        assert_eq!((web.stack.as_str(), web.service.as_str()), ("web", "app"));
        assert!(web.deployed.is_owned());
        assert_eq!(web.deployed.content_hash, "t1");
        assert_eq!(web.deployed.recorded_services(), ["app", "db"]);
        assert_eq!(
            (web.running, web.desired, web.spec_replicas),
            (1, 2, Some(2))
        );
        assert_eq!(
            web.drift().as_deref(),
            Some("service web_app was scaled to 2 replicas (Git says 1)")
        );
        assert!(
            web.failure()
                .unwrap()
                .contains("is paused: update paused due to failure")
        );
        assert!(parse_service_inspect(b"", &replicas).unwrap().is_empty());
        assert!(parse_service_ls(b"{oops}\n").is_err());
    }

    #[test]
    fn the_detail_view_puts_tasks_and_their_nodes_under_each_service() {
        let replicas = parse_service_ls(LS).unwrap();
        let services = parse_service_inspect(INSPECT, &replicas).unwrap();
        let tasks = parse_tasks(PS).unwrap();
        let views = service_views(&services, &tasks);
        assert_eq!(views[0].name, "g_g");
        assert_eq!(views[0].nodes, ["vm"]);
        assert_eq!(
            (views[0].replicas_running, views[0].replicas_desired),
            (1, 1)
        );
        assert_eq!(
            views[1].tasks[0].error.as_deref(),
            Some("task: non-zero exit (3)")
        );
        assert_eq!(views[1].tasks[0].state, "failed");
        assert_eq!(views[1].update_state.as_deref(), Some("paused"));
        let containers = task_containers(&services, &tasks);
        assert_eq!(containers[0].service, "g");
        assert_eq!(containers[0].ports, "*:18996->80/tcp");
        assert_eq!(containers[1].name, "web_app.1");
        assert_eq!(containers[1].service, "app");
    }

    #[test]
    fn replica_texts_of_every_mode_parse() {
        assert_eq!(parse_replicas("3/3"), Some((3, 3)));
        assert_eq!(parse_replicas("0/3 (max 1 per node)"), Some((0, 3)));
        assert_eq!(parse_replicas("0/1 (1/1 completed)"), Some((0, 1)));
        assert_eq!(parse_replicas(""), None);
    }

    #[test]
    fn tasks_name_their_service_node_and_state() {
        let tasks = parse_tasks(PS).unwrap();
        assert_eq!(tasks[0].service_name(), "g_g");
        assert_eq!(tasks[0].node, "vm");
        assert_eq!(tasks[0].state(), "running");
        assert_eq!(tasks[1].service_name(), "web_app");
        assert_eq!(tasks[1].state(), "failed");
        assert_eq!(tasks[1].error, "\"task: non-zero exit (3)\"");
    }

    #[test]
    fn deploy_flags_come_from_the_options_list_only() {
        let cli28 = "Usage:  docker stack deploy [OPTIONS] STACK\n\nOptions:\n  -c, --compose-file strings   Path to a Compose file\n  \
                     -d, --detach                 Exit immediately instead of waiting\n      --prune                  Prune services\n  \
                     -q, --quiet                  Suppress progress output\n      --resolve-image string   Query the registry\n      \
                     --with-registry-auth     Send registry authentication details\n";
        let flags = parse_deploy_flags(cli28);
        assert_eq!(
            flags,
            DeployFlags {
                prune: true,
                detach: true,
                resolve_image: true,
                with_registry_auth: true
            }
        );
        assert_eq!(
            flags.args(),
            [
                "--prune",
                "--detach=true",
                "--resolve-image",
                "changed",
                "--with-registry-auth"
            ]
        );
        // CLI 20.10: no --detach; a description mentioning --detach does not count.
        let cli20 = "Options:\n  -c, --compose-file strings   Path to a Compose file (see --detach)\n      --prune                  Prune services\n      \
                     --resolve-image string   Query the registry\n      --with-registry-auth     Send registry authentication details\n";
        let old = parse_deploy_flags(cli20);
        assert!(old.prune && !old.detach);
        assert_eq!(old.args()[..2], ["--prune", "--resolve-image"]);
    }

    #[test]
    fn swarm_state_parses_and_only_an_active_manager_counts() {
        let manager = parse_swarm_state(b"\"active\" true\n").unwrap();
        assert!(manager.is_manager());
        assert!(!parse_swarm_state(b"\"active\" false").unwrap().is_manager());
        assert!(
            !parse_swarm_state(b"\"inactive\" false")
                .unwrap()
                .is_manager()
        );
        assert!(parse_swarm_state(b"garbage").is_err());
    }

    /// The captured loss of a worker (tests/data/swarm/README.md) at second `n`: the service
    /// as `docker service ls` counts it, then as recounted from its tasks and the nodes.
    fn node_lost(n: u32) -> (ServiceInfo, Vec<String>, ServiceInfo) {
        let data = |what: &str| {
            let path = format!(
                "{}/tests/data/swarm/node-lost-{n}-{what}.jsonl",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
        };
        let inspect = include_bytes!("../../tests/data/swarm/inspect.json");
        let replicas = parse_service_ls(&data("ls")).unwrap();
        let mut services = parse_service_inspect(inspect, &replicas).unwrap();
        let listed = services[0].clone();
        let down = down_nodes(&parse_node_ls(&data("nodes")).unwrap());
        let doubtful = doubtful_counts(&services, &down);
        let tasks = parse_tasks(&data("ps")).unwrap();
        recount_running(&mut services, &doubtful, &tasks, &down);
        (listed, doubtful, services.remove(0))
    }

    #[test]
    fn a_lost_nodes_tasks_are_not_counted_as_running() {
        // Before the manager noticed: nothing to doubt, and nothing docker-cd can know better.
        let (listed, doubtful, counted) = node_lost(2);
        assert_eq!((listed.running, listed.desired), (3, 3));
        assert!(doubtful.is_empty());
        assert_eq!(counted.running, 3);
        // Worker2 down: `3/3` from service ls, one task really running.
        let (listed, doubtful, counted) = node_lost(5);
        assert_eq!((listed.running, listed.desired), (3, 3));
        assert_eq!(doubtful, std::slice::from_ref(&listed.id));
        assert_eq!((counted.running, counted.desired), (1, 3));
        // Replacements running: `5/3` from service ls, three running.
        let (listed, _, counted) = node_lost(9);
        assert_eq!((listed.running, listed.desired), (5, 3));
        assert_eq!((counted.running, counted.desired), (3, 3));
    }

    #[test]
    fn nodes_parse_and_only_ready_ones_are_up() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/swarm/node-lost-5-nodes.jsonl"
        );
        let nodes = parse_node_ls(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(nodes.len(), 3);
        let down = down_nodes(&nodes);
        assert!(down.contains("docker-cd-swarm-worker2"), "{down:?}");
        assert!(down.contains("qj6tefylz7jah2jxp1g5eexxb"), "{down:?}");
        assert_eq!(down.len(), 2, "{down:?}");
        let err = parse_node_ls(b"{\"ID\": 1}\n").unwrap_err();
        assert!(err.contains("ID"), "{err}");
        assert!(parse_node_ls(b"\n").unwrap().is_empty());
    }
}
