//! The pure decision: desired state + actual state → what to do with each stack, and why.
//!
//! Level-triggered: [`plan`] never cares why it was called; it compares what Git says (the
//! snapshot), what docker-cd knows (sync state) and what runs (the containers' labels), and
//! every call with the same inputs gives the same plan.
//!
//! Both engines share it: actual state is a list of [`Workload`]s, compose containers
//! ([`plan`]) or swarm services ([`plan_for`] with [`ServiceInfo`]), each carrying docker-cd's
//! labels; only how a workload drifts and how messages name it differ.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use crate::compose::ContainerInfo;
use crate::config::DriftPolicy;
use crate::desired_state::{Health, Request, Snapshot, StackStatus, SyncInfo, Target};
use crate::schedule::{self, Gate, SyncWindow};
use crate::stack::labels::DeployedLabels;
use crate::swarm::ServiceInfo;

/// First retry of a stack whose sync failed (same content); doubles per failure.
pub const RETRY_BASE: Duration = Duration::from_secs(30);
/// Longest wait between retries of a failing stack.
pub const RETRY_CAP: Duration = Duration::from_secs(600);

/// The knobs that change decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub remove_enabled: bool,
    pub drift_policy: DriftPolicy,
    /// This agent's instance id (`com.docker-cd.instance`): stacks gone from Git are only
    /// considered when this agent deployed them.
    pub instance: String,
    /// `SYNC_WINDOWS`: when automatic syncs may run (empty: always), unless a stack's
    /// `x-docker-cd.syncWindows` says otherwise.
    pub sync_windows: Vec<SyncWindow>,
    /// Stacks take image updates unless their `x-docker-cd.imageUpdates` says otherwise
    /// (`IMAGE_UPDATE_INTERVAL` is set).
    pub image_updates: bool,
}

/// Why a stack is (re-)synced. Logged with every sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncReason {
    /// Nothing of this stack runs on the host.
    NotDeployed,
    /// The content hash on the containers differs from Git's.
    ContentChanged { deployed: String, desired: String },
    /// The host drifted and the policy is `revert`.
    Drift(String),
    /// The operator acknowledged the drift.
    Acknowledged(String),
    /// This content was applied but its sync failed (it did not turn healthy in time).
    Retry,
    /// The operator asked for a sync now (`POST /api/stacks/{path}/sync`).
    Manual,
    /// The operator rolled the stack back to this commit.
    Rollback(String),
}

impl std::fmt::Display for SyncReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotDeployed => f.write_str("not deployed on this host"),
            Self::ContentChanged { deployed, desired } => write!(
                f,
                "content hash changed from {} to {}",
                short(deployed),
                short(desired)
            ),
            Self::Drift(what) => write!(f, "drift: {what}"),
            Self::Acknowledged(what) => write!(f, "drift acknowledged by the operator: {what}"),
            Self::Retry => f.write_str("the last sync of this content failed; trying again"),
            Self::Manual => f.write_str("sync asked for by the operator"),
            Self::Rollback(revision) => {
                write!(f, "rolled back by the operator to {}", short(revision))
            }
        }
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Runtime counts of a stack's containers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub running: u32,
    pub total: u32,
}

/// What the labels of a synced stack's containers say was deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub revision: String,
    pub content_hash: String,
    pub compose_hash: String,
    pub synced_at: String,
}

/// One decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Materialise and `up` the stack.
    Sync {
        path: String,
        project: String,
        reason: SyncReason,
        /// For a drift revert of unchanged content: the labels of the last sync, reused so
        /// compose recreates only what drifted (new label values would recreate every
        /// container of the stack).
        reuse: Option<Deployed>,
        /// The version to apply when the stack is held (pinned, rolled back); `None`: the
        /// snapshot's.
        target: Option<Target>,
    },
    /// The host already runs exactly this: record it as `synced` without running compose.
    Recognise {
        path: String,
        deployed: Deployed,
        counts: Counts,
    },
    /// Synced and unchanged: only refresh the runtime counts.
    Observe { path: String, counts: Counts },
    /// Cannot be applied; the host is not touched.
    Fail {
        path: String,
        reason: String,
        counts: Counts,
    },
    /// Drift under the `flag` policy: mark `drifted` and wait for an acknowledgement.
    Flag {
        path: String,
        drift: String,
        counts: Counts,
    },
    /// The last sync of this content failed; wait before retrying.
    Backoff {
        path: String,
        retry_at: SystemTime,
        counts: Counts,
    },
    /// Gone from Git, owned by docker-cd, removal enabled, snapshot not empty: `down`.
    Remove { path: String, project: String },
    /// Gone from Git but left running.
    Orphan {
        path: String,
        project: String,
        counts: Counts,
        reason: &'static str,
    },
    /// Gone from Git and from the host: drop it from the list.
    Forget { path: String },
    /// In sync, but the registry has newer images for these services (SPEC §12): pull them
    /// and recreate only them, with the labels of the last sync.
    UpdateImages {
        path: String,
        project: String,
        services: Vec<String>,
        deployed: Deployed,
    },
    /// Would sync (or be removed) but waits: for its dependencies, for a sync window, or (a
    /// stack gone from Git) for the stacks that depend on it to be removed first. Why is in
    /// [`Plan::blocked`].
    Wait {
        path: String,
        /// For a stack gone from Git: its project on the host.
        gone_project: Option<String>,
        counts: Counts,
    },
}

impl Action {
    pub fn path(&self) -> &str {
        match self {
            Self::Sync { path, .. }
            | Self::Recognise { path, .. }
            | Self::Observe { path, .. }
            | Self::Fail { path, .. }
            | Self::Flag { path, .. }
            | Self::Backoff { path, .. }
            | Self::Remove { path, .. }
            | Self::Orphan { path, .. }
            | Self::Wait { path, .. }
            | Self::UpdateImages { path, .. }
            | Self::Forget { path } => path,
        }
    }

    /// Does this action run compose?
    pub fn runs_compose(&self) -> bool {
        matches!(
            self,
            Self::Sync { .. } | Self::Remove { .. } | Self::UpdateImages { .. }
        )
    }
}

/// The plan: one action per stack, in path order (stacks in Git first, then the others).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Why each waiting stack ([`Action::Wait`]) waits: its `blockedBy`. Every other stack's
    /// `blockedBy` is cleared.
    pub blocked: BTreeMap<String, String>,
    /// The earliest opening of a sync window that a stack waits for: the reconciler plans
    /// again then.
    pub window_opens: Option<SystemTime>,
}

impl Plan {
    pub fn compose_runs(&self) -> usize {
        self.actions.iter().filter(|a| a.runs_compose()).count()
    }
}

/// How long to wait after `failures` consecutive failed syncs of the same content.
pub fn retry_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    RETRY_BASE.saturating_mul(1 << exponent).min(RETRY_CAP)
}

/// One unit of actual state: what the plan needs from a compose container or a swarm service.
pub trait Workload {
    /// The compose project or swarm stack it belongs to.
    fn project(&self) -> &str;
    /// The compose service it runs.
    fn service(&self) -> &str;
    /// Not part of the project's desired services (`compose run` containers).
    fn is_ignored(&self) -> bool {
        false
    }
    /// docker-cd's labels on it (read by its engine's adapter, in one place each).
    fn labels(&self) -> &DeployedLabels;
    fn is_owned(&self) -> bool {
        self.labels().is_owned()
    }
    fn instance(&self) -> &str {
        &self.labels().instance
    }
    /// `com.docker-cd.stack.path` (empty when absent).
    fn stack_path(&self) -> &str {
        &self.labels().stack_path
    }
    fn content_hash(&self) -> &str {
        &self.labels().content_hash
    }
    fn deployed(&self) -> Deployed {
        let labels = self.labels();
        Deployed {
            revision: labels.revision.clone(),
            content_hash: labels.content_hash.clone(),
            compose_hash: labels.compose_hash.clone(),
            synced_at: labels.synced_at.clone(),
        }
    }
    fn recorded_services(&self) -> Vec<&str> {
        self.labels().recorded_services()
    }
    /// Adds this workload to its stack's runtime counts.
    fn count_into(&self, counts: &mut Counts);
    /// How this workload alone drifted (stopped, scaled, changed by hand), if it did.
    fn drift(&self) -> Option<String>;
    /// A failure the engine reports for this workload's last change: the stack is failed with
    /// it, and not re-applied until Git changes.
    fn failure(&self) -> Option<String> {
        None
    }
    /// Drift message for a workload of the project without docker-cd's labels.
    fn unlabelled(&self) -> String;
    /// Drift message for a recorded service with no workload.
    fn missing_service(service: &str) -> String;
    /// Drift message when nothing of a synced stack is left.
    fn all_gone() -> String;
    /// Why a same-named project docker-cd did not deploy is left alone, and how to adopt it.
    fn foreign_project(project: &str) -> String;
}

impl Workload for ContainerInfo {
    fn project(&self) -> &str {
        &self.project
    }
    fn service(&self) -> &str {
        &self.service
    }
    fn is_ignored(&self) -> bool {
        self.is_oneoff()
    }
    fn labels(&self) -> &DeployedLabels {
        &self.labels
    }
    fn count_into(&self, counts: &mut Counts) {
        counts.running += u32::from(self.is_running());
        counts.total += 1;
    }
    /// A container stopped: exited with a non-zero code, dead, created but never started.
    fn drift(&self) -> Option<String> {
        let stopped = match self.state.as_str() {
            "running" | "restarting" | "paused" | "removing" => false,
            // A one-shot service that finished cleanly is not drift.
            "exited" => self.exit_code() != Some(0),
            _ => true,
        };
        // No "4 minutes ago" from the status text: the description must stay the same while
        // the drift does, or every resync tick would publish a changed record.
        stopped.then(|| match self.exit_code() {
            Some(code) => format!(
                "container {} is {} (exit code {code})",
                self.name, self.state
            ),
            None => format!("container {} is {}", self.name, self.state),
        })
    }
    fn unlabelled(&self) -> String {
        format!("container {} does not carry docker-cd's labels", self.name)
    }
    fn missing_service(service: &str) -> String {
        format!("service {service} has no container")
    }
    fn all_gone() -> String {
        "all containers are gone".into()
    }
    fn foreign_project(project: &str) -> String {
        format!(
            "compose project {project:?} already runs on this host and was not deployed by docker-cd; \
             it is left alone. To let docker-cd take it over, stop it (`docker compose -p {project} down`, \
             volumes are kept) or rename the stack directory"
        )
    }
}

impl Workload for ServiceInfo {
    fn project(&self) -> &str {
        &self.stack
    }
    fn service(&self) -> &str {
        &self.service
    }
    fn labels(&self) -> &DeployedLabels {
        &self.deployed
    }
    /// Tasks: running and desired, summed over the stack's services.
    fn count_into(&self, counts: &mut Counts) {
        counts.running += self.running;
        counts.total += self.desired;
    }
    fn drift(&self) -> Option<String> {
        ServiceInfo::drift(self)
    }
    fn failure(&self) -> Option<String> {
        ServiceInfo::failure(self)
    }
    fn unlabelled(&self) -> String {
        format!("service {} does not carry docker-cd's labels", self.name)
    }
    fn missing_service(service: &str) -> String {
        format!("service {service} was removed")
    }
    fn all_gone() -> String {
        "all services are gone".into()
    }
    fn foreign_project(project: &str) -> String {
        format!(
            "stack {project:?} already runs on this swarm and was not deployed by docker-cd; \
             it is left alone. To let docker-cd take it over, remove it (`docker stack rm {project}`, \
             volumes are kept) or rename the stack directory"
        )
    }
}

/// Decides what to do. `containers`: every compose container on the host.
pub fn plan(
    snapshot: &Snapshot,
    sync: &BTreeMap<String, SyncInfo>,
    containers: &[ContainerInfo],
    policy: &Policy,
    now: SystemTime,
) -> Plan {
    plan_for(snapshot, sync, containers, policy, now)
}

/// Decides what to do. `workloads`: every workload of every project (or stack) on the engine,
/// docker-cd's or not.
pub fn plan_for<W: Workload>(
    snapshot: &Snapshot,
    sync: &BTreeMap<String, SyncInfo>,
    workloads: &[W],
    policy: &Policy,
    now: SystemTime,
) -> Plan {
    let mut by_project: BTreeMap<&str, Vec<&W>> = BTreeMap::new();
    for c in workloads.iter().filter(|c| !c.is_ignored()) {
        by_project.entry(c.project()).or_default().push(c);
    }
    let mut actions = Vec::new();
    let mut desired_projects = BTreeSet::new();
    let mut counts_of: BTreeMap<&str, Counts> = BTreeMap::new();

    for (path, desired) in &snapshot.stacks {
        let info = sync.get(path);
        let project = desired.project_name.as_deref();
        let present: &[&W] = project
            .and_then(|p| by_project.get(p))
            .map(Vec::as_slice)
            .unwrap_or_default();
        if let Some(p) = project {
            desired_projects.insert(p);
        }
        let counts = count(present);
        counts_of.insert(path.as_str(), counts);
        // Suspended (by the operator, or in Git): never synced, reverted or removed; only
        // counted.
        if info.is_some_and(|i| i.suspended) || desired.settings().suspend == Some(true) {
            actions.push(Action::Observe {
                path: path.clone(),
                counts,
            });
            continue;
        }
        if let Some(error) = &desired.error {
            actions.push(Action::Fail {
                path: path.clone(),
                reason: error.clone(),
                counts,
            });
            continue;
        }
        let Some(project) = project else {
            continue; // unreachable: a stack without a project name always has an error
        };
        let (owned, foreign): (Vec<&W>, Vec<&W>) = present.iter().partition(|c| c.is_owned());
        let drift_policy = desired.settings().drift.unwrap_or(policy.drift_policy);

        if owned.is_empty() && !foreign.is_empty() {
            actions.push(Action::Fail {
                path: path.clone(),
                reason: W::foreign_project(project),
                counts,
            });
            continue;
        }

        if let Some(pinned) = info
            .filter(|i| i.hold.is_none())
            .and_then(|i| i.pinned_revision.as_deref())
        {
            actions.push(Action::Fail {
                path: path.clone(),
                reason: format!(
                    "pinned at {pinned}, which is not in the mirror (any more); unpin the stack or roll it back to another commit"
                ),
                counts,
            });
            continue;
        }
        // Held (pinned, or rolled back after a failure): the held version is the target.
        let hold = info
            .and_then(|i| i.hold.as_ref())
            .filter(|h| h.applies(&desired.content_hash));
        let target = hold.map(|h| h.target.clone());
        let target_hash = hold.map_or(desired.content_hash.as_str(), |h| {
            h.target.content_hash.as_str()
        });
        let sync = |reason: SyncReason, reuse: Option<Deployed>| Action::Sync {
            path: path.clone(),
            project: project.to_owned(),
            reason,
            reuse,
            target: target.clone(),
        };
        match info.and_then(|i| i.requested) {
            Some(Request::Sync) => {
                actions.push(sync(SyncReason::Manual, None));
                continue;
            }
            Some(Request::Rollback) => {
                let revision = target
                    .as_ref()
                    .map(|t| t.revision.clone())
                    .unwrap_or_default();
                actions.push(sync(SyncReason::Rollback(revision), None));
                continue;
            }
            None => {}
        }

        let backoff = |reason: SyncReason| -> Action {
            let failing_same = info.is_some_and(|i| {
                i.status == StackStatus::Failed
                    && i.failed_content_hash.as_deref() == Some(target_hash)
            });
            if let (true, Some(info)) = (failing_same, info) {
                let last = info.last_sync_at.unwrap_or(now);
                let retry_at = last + retry_delay(info.consecutive_failures);
                if now < retry_at {
                    return Action::Backoff {
                        path: path.clone(),
                        retry_at,
                        counts,
                    };
                }
            }
            sync(reason, None)
        };

        if owned.is_empty() {
            // Gone while Git still says what ran: drift. Gone while Git says something new
            // (a commit came while the stack was suspended, say): a deployment of that commit.
            let was_deployed = info.is_some_and(|i| {
                matches!(i.status, StackStatus::Synced | StackStatus::Drifted)
                    && i.synced_content_hash
                        .as_deref()
                        .is_none_or(|h| h == target_hash)
            });
            if was_deployed {
                actions.push(drift_action(
                    path,
                    W::all_gone(),
                    None,
                    info,
                    drift_policy,
                    counts,
                    &sync,
                ));
            } else {
                actions.push(backoff(SyncReason::NotDeployed));
            }
            continue;
        }

        let hashes: BTreeSet<&str> = owned.iter().map(|c| c.content_hash()).collect();
        let deployed_hash = hashes.iter().next().copied().unwrap_or_default();
        if hashes.len() > 1 || deployed_hash != target_hash {
            actions.push(backoff(SyncReason::ContentChanged {
                deployed: if hashes.len() > 1 {
                    "mixed".into()
                } else {
                    deployed_hash.to_owned()
                },
                desired: target_hash.to_owned(),
            }));
            continue;
        }

        let deployed = owned[0].deployed();
        let failures: Vec<String> = owned.iter().filter_map(|c| c.failure()).collect();
        if !failures.is_empty() {
            actions.push(Action::Fail {
                path: path.clone(),
                reason: failures.join("; "),
                counts,
            });
            continue;
        }
        let failed_here = info.is_some_and(|i| {
            i.status == StackStatus::Failed && i.failed_content_hash.as_deref() == Some(target_hash)
        });
        match describe_drift(&owned, &foreign) {
            // The last sync of this very content failed, say because a container exited: what
            // is stopped is that failure, retried after the backoff. Reverting it as drift at
            // once re-ran `up` in a loop, each failed sync's reconcile starting the next.
            Some(_) if failed_here => actions.push(backoff(SyncReason::Retry)),
            Some(drift) => {
                actions.push(drift_action(
                    path,
                    drift,
                    Some(deployed),
                    info,
                    drift_policy,
                    counts,
                    &sync,
                ));
            }
            // The labels say this content runs, but its sync failed (it did not turn healthy):
            // not `synced` because the labels match; tried again after the backoff.
            // Rolled back after a failure: it runs the last good version and stays `failed`,
            // saying so, until Git says something new.
            None if hold.is_some_and(|h| h.rolled_back_from.is_some())
                && info.is_some_and(|i| i.status == StackStatus::Failed) =>
            {
                actions.push(Action::Observe {
                    path: path.clone(),
                    counts,
                });
            }
            None if failed_here => actions.push(backoff(SyncReason::Retry)),
            None => {
                let already = info.is_some_and(|i| {
                    i.status == StackStatus::Synced
                        && i.synced_content_hash.as_deref() == Some(deployed_hash)
                        && !i.ack_requested
                });
                let updates = if already && hold.is_none() {
                    image_updates(info, desired.settings().image_updates, policy)
                } else {
                    Vec::new()
                };
                if !updates.is_empty() {
                    actions.push(Action::UpdateImages {
                        path: path.clone(),
                        project: project.to_owned(),
                        services: updates,
                        deployed,
                    });
                } else if already {
                    actions.push(Action::Observe {
                        path: path.clone(),
                        counts,
                    });
                } else {
                    actions.push(Action::Recognise {
                        path: path.clone(),
                        deployed,
                        counts,
                    });
                }
            }
        }
    }

    // Owned containers whose stack is not in Git (any more).
    let mut gone: BTreeMap<&str, (&str, Vec<&W>)> = BTreeMap::new();
    for (project, list) in &by_project {
        if desired_projects.contains(project) {
            continue;
        }
        // Only what this agent deployed: another agent on the host owns the rest.
        let mine =
            |c: &&&W| c.is_owned() && (c.instance() == policy.instance || c.instance().is_empty());
        for c in list.iter().filter(mine) {
            let path = if c.stack_path().is_empty() {
                *project
            } else {
                c.stack_path()
            };
            if snapshot.stacks.contains_key(path) {
                continue; // the stack is in Git under another project name; leave it
            }
            gone.entry(path).or_insert((project, Vec::new())).1.push(c);
        }
    }
    for (path, (project, list)) in &gone {
        let action = if snapshot.stacks.is_empty() {
            Action::Orphan {
                path: (*path).to_owned(),
                project: (*project).to_owned(),
                counts: count(list),
                reason: "the snapshot has no stacks at all; an empty snapshot never removes anything",
            }
        } else if sync.get(*path).is_some_and(|i| i.suspended) {
            Action::Orphan {
                path: (*path).to_owned(),
                project: (*project).to_owned(),
                counts: count(list),
                reason: "removed from Git while suspended; a suspended stack is never removed",
            }
        } else if policy.remove_enabled {
            Action::Remove {
                path: (*path).to_owned(),
                project: (*project).to_owned(),
            }
        } else {
            Action::Orphan {
                path: (*path).to_owned(),
                project: (*project).to_owned(),
                counts: count(list),
                reason: "removed from Git; RECONCILE_REMOVE_ENABLED=false leaves it running",
            }
        };
        actions.push(action);
    }
    // Listed stacks that are neither in Git nor on the host any more.
    for path in sync.keys() {
        if !snapshot.stacks.contains_key(path) && !gone.contains_key(path.as_str()) {
            actions.push(Action::Forget { path: path.clone() });
        }
    }
    // What each stack gone from Git but still on the host depended on at its last sync.
    let still_removed: BTreeMap<String, Vec<String>> = gone
        .iter()
        .map(|(path, (_, list))| {
            let deps: BTreeSet<&str> = list
                .iter()
                .flat_map(|w| w.labels().recorded_dependencies())
                .collect();
            (
                (*path).to_owned(),
                deps.into_iter().map(str::to_owned).collect(),
            )
        })
        .collect();
    let mut blocked = BTreeMap::new();
    let window_opens = gate(
        &mut actions,
        &mut blocked,
        snapshot,
        sync,
        policy,
        &counts_of,
        &still_removed,
        now,
    );
    Plan {
        actions,
        blocked,
        window_opens,
    }
}

fn count<W: Workload>(workloads: &[&W]) -> Counts {
    let mut counts = Counts::default();
    for w in workloads {
        w.count_into(&mut counts);
    }
    counts
}

/// What differs between a synced stack's workloads and its last sync, if anything: a recorded
/// service without a workload, a workload that drifted by itself (a container stopped, a
/// service scaled), or workloads of the project without docker-cd's labels.
fn describe_drift<W: Workload>(owned: &[&W], foreign: &[&W]) -> Option<String> {
    let mut problems = Vec::new();
    let present: BTreeSet<&str> = owned.iter().map(|c| c.service()).collect();
    let recorded: BTreeSet<&str> = owned.iter().flat_map(|c| c.recorded_services()).collect();
    for service in recorded.difference(&present) {
        problems.push(W::missing_service(service));
    }
    problems.extend(owned.iter().filter_map(|c| c.drift()));
    problems.extend(foreign.iter().map(|c| c.unlabelled()));
    (!problems.is_empty()).then(|| problems.join("; "))
}

fn drift_action(
    path: &str,
    drift: String,
    deployed: Option<Deployed>,
    info: Option<&SyncInfo>,
    drift_policy: DriftPolicy,
    counts: Counts,
    sync: &impl Fn(SyncReason, Option<Deployed>) -> Action,
) -> Action {
    if info.is_some_and(|i| i.ack_requested) {
        return sync(SyncReason::Acknowledged(drift), deployed);
    }
    match drift_policy {
        DriftPolicy::Revert => sync(SyncReason::Drift(drift), deployed),
        DriftPolicy::Flag => Action::Flag {
            path: path.to_owned(),
            drift,
            counts,
        },
        // `x-docker-cd.drift: ignore`: what runs is left as it is, and not reported.
        DriftPolicy::Ignore => Action::Observe {
            path: path.to_owned(),
            counts,
        },
    }
}

/// The services of a stack in sync whose image the last check found newer in the registry,
/// when the stack takes image updates (its `imageUpdates`, else the policy), leaving out an
/// update that failed for the same digest.
fn image_updates(info: Option<&SyncInfo>, setting: Option<bool>, policy: &Policy) -> Vec<String> {
    if !setting.unwrap_or(policy.image_updates) {
        return Vec::new();
    }
    info.map(|i| {
        i.images
            .iter()
            .filter(|s| s.update_available && !s.update_failed)
            .map(|s| s.service.clone())
            .collect()
    })
    .unwrap_or_default()
}

impl SyncReason {
    /// Asked for by the operator (sync now, rollback, an acknowledged drift): never held back
    /// by dependencies or sync windows.
    pub fn is_requested(&self) -> bool {
        matches!(
            self,
            Self::Manual | Self::Rollback(_) | Self::Acknowledged(_)
        )
    }
}

/// Whether stack `path` is ready for the stacks that depend on it: synced to what this
/// snapshot says (or to what it is held at), healthy, and nothing to do for it in this plan.
/// `None`: ready; otherwise what it is instead, for `blockedBy`.
fn not_ready(
    path: &str,
    snapshot: &Snapshot,
    sync: &BTreeMap<String, SyncInfo>,
    planned: &BTreeMap<&str, &Action>,
) -> Option<String> {
    let Some(desired) = snapshot.stacks.get(path) else {
        return Some("not in this commit".into());
    };
    if desired.error.is_some() {
        return Some("failed".into());
    }
    let info = sync.get(path);
    if info.is_some_and(|i| i.suspended) || desired.settings().suspend == Some(true) {
        return Some("suspended".into());
    }
    match planned.get(path) {
        Some(Action::Observe { .. } | Action::Recognise { .. }) | None => {}
        Some(Action::Sync { .. } | Action::UpdateImages { .. }) => {
            return Some("syncing".into());
        }
        Some(Action::Wait { .. }) => return Some("waiting".into()),
        Some(Action::Fail { .. } | Action::Backoff { .. }) => return Some("failed".into()),
        Some(Action::Flag { .. }) => return Some("drifted".into()),
        Some(_) => return Some("not in this commit".into()),
    }
    let Some(info) = info else {
        return Some("not synced yet".into());
    };
    let target = info
        .hold
        .as_ref()
        .filter(|h| h.applies(&desired.content_hash))
        .map_or(desired.content_hash.as_str(), |h| {
            h.target.content_hash.as_str()
        });
    if info.synced_content_hash.as_deref() != Some(target) {
        return Some(match info.status {
            StackStatus::Failed => "failed".into(),
            StackStatus::Synced | StackStatus::Syncing => "syncing".into(),
            other => other.as_str().into(),
        });
    }
    if info.status != StackStatus::Synced {
        return Some(info.status.as_str().into());
    }
    (info.health != Health::Healthy).then(|| info.health.as_str().into())
}

/// Holds back automatic syncs of stacks whose dependencies are not ready or that are outside
/// every sync window, and removals of stacks gone from Git that other gone stacks depended on.
/// Returns the earliest opening of a window a stack waits for.
#[allow(clippy::too_many_arguments)]
fn gate(
    actions: &mut [Action],
    blocked: &mut BTreeMap<String, String>,
    snapshot: &Snapshot,
    sync: &BTreeMap<String, SyncInfo>,
    policy: &Policy,
    counts_of: &BTreeMap<&str, Counts>,
    still_removed: &BTreeMap<String, Vec<String>>,
    now: SystemTime,
) -> Option<SystemTime> {
    let planned: BTreeMap<&str, &Action> = actions.iter().map(|a| (a.path(), a)).collect();
    let mut waits = Vec::new();
    let mut window_opens: Option<SystemTime> = None;
    for (i, action) in actions.iter().enumerate() {
        match action {
            Action::Sync { path, .. } | Action::UpdateImages { path, .. } if !matches!(action, Action::Sync { reason, .. } if reason.is_requested()) =>
            {
                let Some(desired) = snapshot.stacks.get(path) else {
                    continue;
                };
                let settings = desired.settings();
                let waiting: Vec<String> = settings
                    .depends_on
                    .iter()
                    .filter_map(|dep| {
                        not_ready(dep, snapshot, sync, &planned).map(|why| format!("{dep} ({why})"))
                    })
                    .collect();
                let why = if waiting.is_empty() {
                    let windows = settings
                        .sync_windows
                        .as_deref()
                        .unwrap_or(&policy.sync_windows);
                    match schedule::gate(windows, now) {
                        Gate::Open => None,
                        Gate::Closed { opens: Some(at) } => {
                            window_opens = Some(window_opens.map_or(at, |w| w.min(at)));
                            Some(format!(
                                "sync window opens {}",
                                crate::desired_state::rfc3339::format(at)
                            ))
                        }
                        Gate::Closed { opens: None } => {
                            Some("no sync window opens again (check the schedules)".into())
                        }
                    }
                } else {
                    Some(format!("waiting for {}", waiting.join(", ")))
                };
                if let Some(why) = why {
                    let counts = counts_of.get(path.as_str()).copied().unwrap_or_default();
                    waits.push((i, path.clone(), None, counts, why));
                }
            }
            Action::Remove { path, project } => {
                let dependents: Vec<&str> = still_removed
                    .iter()
                    .filter(|(other, deps)| *other != path && deps.iter().any(|d| d == path))
                    .map(|(other, _)| other.as_str())
                    .collect();
                if !dependents.is_empty() {
                    let why = format!(
                        "waiting for {} to be removed first (they depended on it)",
                        dependents.join(", ")
                    );
                    waits.push((
                        i,
                        path.clone(),
                        Some(project.clone()),
                        Counts::default(),
                        why,
                    ));
                }
            }
            _ => {}
        }
    }
    for (i, path, gone_project, counts, why) in waits {
        blocked.insert(path.clone(), why);
        actions[i] = Action::Wait {
            path,
            gone_project,
            counts,
        };
    }
    window_opens
}

#[cfg(test)]
mod control_tests;
#[cfg(test)]
mod settings_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired_state::{DesiredStack, RefType, assign_project_names};
    use crate::stack::labels::OWNER_VALUE;

    const INSTANCE: &str = "0123456789abcdef";

    pub(super) fn revert() -> Policy {
        Policy {
            remove_enabled: false,
            drift_policy: DriftPolicy::Revert,
            instance: INSTANCE.into(),
            sync_windows: Vec::new(),
            image_updates: false,
        }
    }

    pub(super) fn snapshot(stacks: &[(&str, &str)]) -> Snapshot {
        let mut map: BTreeMap<String, DesiredStack> = stacks
            .iter()
            .map(|(path, hash)| {
                (
                    path.to_string(),
                    DesiredStack {
                        path: path.to_string(),
                        project_name: None,
                        compose_file: "compose.yaml".into(),
                        compose_hash: Some("c".into()),
                        content_hash: hash.to_string(),
                        compose_blob: None,
                        warnings: vec![],
                        error: None,
                        settings: None,
                    },
                )
            })
            .collect();
        assign_project_names(&mut map);
        Snapshot {
            revision: "r".into(),
            git_ref: "refs/heads/main".into(),
            ref_type: RefType::Branch,
            remote_oid: "r".into(),
            commit_message: "m".into(),
            stacks: map
                .into_iter()
                .map(|(k, v)| (k, std::sync::Arc::new(v)))
                .collect(),
            warnings: vec![],
            tree: Default::default(),
        }
    }

    pub(super) fn container(project: &str, service: &str, hash: &str) -> ContainerInfo {
        ContainerInfo {
            id: format!("{project}-{service}"),
            name: format!("{project}_{service}_1"),
            state: "running".into(),
            status: "Up 1 minute".into(),
            image: "img".into(),
            ports: String::new(),
            project: project.into(),
            service: service.into(),
            oneoff: "False".into(),
            labels: DeployedLabels {
                owner: OWNER_VALUE.into(),
                instance: INSTANCE.into(),
                stack_path: project.into(),
                revision: "r0".into(),
                content_hash: hash.into(),
                compose_hash: "c".into(),
                synced_at: "2026-11-28T16:00:00Z".into(),
                services: service.into(),
                depends_on: String::new(),
            },
        }
    }

    pub(super) fn synced(hash: &str) -> SyncInfo {
        let mut info = SyncInfo::new(StackStatus::Synced);
        info.synced_content_hash = Some(hash.into());
        info
    }

    pub(super) fn only(plan: Plan) -> Action {
        assert_eq!(plan.actions.len(), 1, "{plan:?}");
        plan.actions.into_iter().next().unwrap()
    }

    /// A second after the failure at `at` the plan of stack `web` (at `h1`) backs off; after
    /// [`RETRY_BASE`] it retries.
    pub(super) fn backs_off_then_retries(
        sync: &BTreeMap<String, SyncInfo>,
        containers: &[ContainerInfo],
        at: SystemTime,
    ) {
        let plan_at = |when| {
            only(plan(
                &snapshot(&[("web", "h1")]),
                sync,
                containers,
                &revert(),
                when,
            ))
        };
        let soon = plan_at(at + Duration::from_secs(1));
        assert!(matches!(soon, Action::Backoff { .. }), "{soon:?}");
        let later = plan_at(at + RETRY_BASE);
        assert!(
            matches!(
                &later,
                Action::Sync {
                    reason: SyncReason::Retry,
                    ..
                }
            ),
            "{later:?}"
        );
    }

    pub(super) fn sync_map(entries: &[(&str, SyncInfo)]) -> BTreeMap<String, SyncInfo> {
        entries
            .iter()
            .map(|(p, i)| (p.to_string(), i.clone()))
            .collect()
    }

    #[test]
    fn a_stack_not_on_the_host_is_synced() {
        let action = only(plan(
            &snapshot(&[("web", "h1")]),
            &BTreeMap::new(),
            &[],
            &revert(),
            SystemTime::now(),
        ));
        assert_eq!(
            action,
            Action::Sync {
                path: "web".into(),
                project: "web".into(),
                reason: SyncReason::NotDeployed,
                reuse: None,
                target: None,
            }
        );
    }

    #[test]
    fn a_changed_content_hash_is_synced_with_both_hashes_in_the_reason() {
        let action = only(plan(
            &snapshot(&[("web", "h2")]),
            &sync_map(&[("web", synced("h1"))]),
            &[container("web", "app", "h1")],
            &revert(),
            SystemTime::now(),
        ));
        let Action::Sync { reason, .. } = action else {
            panic!("{action:?}")
        };
        assert_eq!(
            reason,
            SyncReason::ContentChanged {
                deployed: "h1".into(),
                desired: "h2".into()
            }
        );
        assert!(reason.to_string().contains("from h1 to h2"));
    }

    #[test]
    fn matching_labels_after_a_restart_are_recognised_without_compose() {
        let plan = plan(
            &snapshot(&[("web", "h1")]),
            &sync_map(&[("web", SyncInfo::new(StackStatus::Missing))]),
            &[container("web", "app", "h1")],
            &revert(),
            SystemTime::now(),
        );
        assert_eq!(plan.compose_runs(), 0);
        let Action::Recognise {
            deployed, counts, ..
        } = only(plan)
        else {
            panic!()
        };
        assert_eq!(deployed.content_hash, "h1");
        assert_eq!(deployed.revision, "r0");
        assert_eq!(
            counts,
            Counts {
                running: 1,
                total: 1
            }
        );
    }

    #[test]
    fn a_synced_unchanged_stack_is_only_observed() {
        let action = only(plan(
            &snapshot(&[("web", "h1")]),
            &sync_map(&[("web", synced("h1"))]),
            &[container("web", "app", "h1")],
            &revert(),
            SystemTime::now(),
        ));
        assert!(matches!(action, Action::Observe { .. }), "{action:?}");
    }

    #[test]
    fn stacks_with_desired_state_errors_fail_without_touching_the_host() {
        let mut snap = snapshot(&[("web", "h1")]);
        std::sync::Arc::make_mut(snap.stacks.get_mut("web").unwrap()).error =
            Some("compose.yaml is a symbolic link".into());
        let action = only(plan(
            &snap,
            &BTreeMap::new(),
            &[container("web", "app", "h0")],
            &revert(),
            SystemTime::now(),
        ));
        assert!(
            matches!(&action, Action::Fail { reason, .. } if reason.contains("symbolic link")),
            "{action:?}"
        );
    }

    #[test]
    fn colliding_project_names_fail_both_stacks() {
        let plan = plan(
            &snapshot(&[("Web", "h1"), ("web", "h2")]),
            &BTreeMap::new(),
            &[],
            &revert(),
            SystemTime::now(),
        );
        assert_eq!(plan.actions.len(), 2);
        assert!(
            plan.actions
                .iter()
                .all(|a| matches!(a, Action::Fail { reason, .. } if reason.contains("collides")))
        );
    }

    #[test]
    fn a_foreign_project_of_the_same_name_is_not_taken_over() {
        let mut foreign = container("web", "app", "");
        foreign.labels.owner = String::new();
        foreign.labels.stack_path = String::new();
        let action = only(plan(
            &snapshot(&[("web", "h1")]),
            &BTreeMap::new(),
            &[foreign],
            &revert(),
            SystemTime::now(),
        ));
        let Action::Fail { reason, .. } = action else {
            panic!("{action:?}")
        };
        assert!(reason.contains("not deployed by docker-cd"), "{reason}");
        assert!(reason.contains("docker compose -p web down"), "{reason}");
    }

    #[test]
    fn drift_is_reverted_or_flagged_by_policy() {
        let mut stopped = container("web", "app", "h1");
        stopped.state = "exited".into();
        stopped.status = "Exited (137) 1 second ago".into();
        let snap = snapshot(&[("web", "h1")]);
        let sync = sync_map(&[("web", synced("h1"))]);
        let reverted = only(plan(
            &snap,
            &sync,
            &[stopped.clone()],
            &revert(),
            SystemTime::now(),
        ));
        assert!(
            matches!(&reverted, Action::Sync { reason: SyncReason::Drift(d), .. } if d.contains("exited")),
            "{reverted:?}"
        );
        let flag_policy = Policy {
            drift_policy: DriftPolicy::Flag,
            ..revert()
        };
        let flagged = only(plan(
            &snap,
            &sync,
            &[stopped.clone()],
            &flag_policy,
            SystemTime::now(),
        ));
        assert!(matches!(flagged, Action::Flag { .. }), "{flagged:?}");

        let mut acked = synced("h1");
        acked.status = StackStatus::Drifted;
        acked.ack_requested = true;
        let after_ack = only(plan(
            &snap,
            &sync_map(&[("web", acked)]),
            &[stopped],
            &flag_policy,
            SystemTime::now(),
        ));
        assert!(
            matches!(
                after_ack,
                Action::Sync {
                    reason: SyncReason::Acknowledged(_),
                    ..
                }
            ),
            "{after_ack:?}"
        );
    }

    #[test]
    fn removed_containers_missing_services_and_foreign_containers_are_drift() {
        let snap = snapshot(&[("web", "h1")]);
        let sync = sync_map(&[("web", synced("h1"))]);
        // Every container removed by hand.
        let all_gone = only(plan(&snap, &sync, &[], &revert(), SystemTime::now()));
        assert!(
            matches!(&all_gone, Action::Sync { reason: SyncReason::Drift(d), .. } if d.contains("all containers are gone"))
        );
        // One of two services removed.
        let mut app = container("web", "app", "h1");
        app.labels.services = "app,db".into();
        let one_gone = only(plan(
            &snap,
            &sync,
            &[app.clone()],
            &revert(),
            SystemTime::now(),
        ));
        assert!(
            matches!(&one_gone, Action::Sync { reason: SyncReason::Drift(d), .. } if d.contains("service db has no container"))
        );
        // A container of the project started by hand without labels.
        let mut stray = container("web", "extra", "");
        stray.labels.owner = String::new();
        let mixed = only(plan(
            &snap,
            &sync,
            &[container("web", "app", "h1"), stray],
            &revert(),
            SystemTime::now(),
        ));
        assert!(
            matches!(&mixed, Action::Sync { reason: SyncReason::Drift(d), .. } if d.contains("does not carry"))
        );
    }

    #[test]
    fn a_cleanly_finished_one_shot_container_is_not_drift() {
        let mut job = container("web", "migrate", "h1");
        job.state = "exited".into();
        job.status = "Exited (0) 2 minutes ago".into();
        let action = only(plan(
            &snapshot(&[("web", "h1")]),
            &sync_map(&[("web", synced("h1"))]),
            &[job],
            &revert(),
            SystemTime::now(),
        ));
        assert!(matches!(action, Action::Observe { .. }), "{action:?}");
    }

    #[test]
    fn a_failing_version_backs_off_but_a_new_version_syncs_at_once() {
        let now = SystemTime::now();
        let mut failed = SyncInfo::new(StackStatus::Failed);
        failed.failed_content_hash = Some("h2".into());
        failed.consecutive_failures = 1;
        failed.last_sync_at = Some(now - Duration::from_secs(10));
        let sync = sync_map(&[("web", failed.clone())]);
        let running_old = [container("web", "app", "h1")];
        let waiting = only(plan(
            &snapshot(&[("web", "h2")]),
            &sync,
            &running_old,
            &revert(),
            now,
        ));
        assert!(matches!(waiting, Action::Backoff { .. }), "{waiting:?}");
        let later = now + Duration::from_secs(30);
        let retry = only(plan(
            &snapshot(&[("web", "h2")]),
            &sync,
            &running_old,
            &revert(),
            later,
        ));
        assert!(matches!(retry, Action::Sync { .. }), "{retry:?}");
        let fixed = only(plan(
            &snapshot(&[("web", "h3")]),
            &sync,
            &running_old,
            &revert(),
            now,
        ));
        assert!(matches!(fixed, Action::Sync { .. }), "{fixed:?}");
    }

    #[test]
    fn a_failed_sync_whose_container_exited_is_retried_after_the_backoff_not_reverted_as_drift() {
        let at = SystemTime::now();
        let mut info = SyncInfo::new(StackStatus::Missing);
        info.fail("app: exited (exit code 1)".into(), "h1", at);
        let sync = sync_map(&[("web", info)]);
        let mut exited = container("web", "app", "h1");
        exited.state = "exited".into();
        exited.status = "Exited (1) 1 second ago".into();
        let exited = [exited];
        backs_off_then_retries(&sync, &exited, at);
        // Once synced, the same exited container is drift.
        let reverted = only(plan(
            &snapshot(&[("web", "h1")]),
            &sync_map(&[("web", synced("h1"))]),
            &exited,
            &revert(),
            at,
        ));
        assert!(
            matches!(
                &reverted,
                Action::Sync {
                    reason: SyncReason::Drift(_),
                    ..
                }
            ),
            "{reverted:?}"
        );
    }

    #[test]
    fn retry_delays_double_and_are_capped() {
        assert_eq!(retry_delay(1), Duration::from_secs(30));
        assert_eq!(retry_delay(2), Duration::from_secs(60));
        assert_eq!(retry_delay(20), RETRY_CAP);
    }

    #[test]
    fn a_stack_gone_from_git_is_removed_only_when_enabled_and_owned() {
        let snap = snapshot(&[("web", "h1")]);
        let containers = [container("web", "app", "h1"), container("old", "app", "h0")];
        let kept = plan(
            &snap,
            &BTreeMap::new(),
            &containers,
            &revert(),
            SystemTime::now(),
        );
        assert!(
            kept.actions
                .iter()
                .any(|a| matches!(a, Action::Orphan { path, .. } if path == "old"))
        );
        assert!(
            !kept
                .actions
                .iter()
                .any(|a| matches!(a, Action::Remove { .. }))
        );

        let removing = Policy {
            remove_enabled: true,
            ..revert()
        };
        let removed = plan(
            &snap,
            &BTreeMap::new(),
            &containers,
            &removing,
            SystemTime::now(),
        );
        assert!(removed.actions.iter().any(
            |a| matches!(a, Action::Remove { path, project } if path == "old" && project == "old")
        ));

        // Not owned: never removed, not even listed.
        let mut foreign = container("other", "app", "");
        foreign.labels.owner = String::new();
        let untouched = plan(
            &snap,
            &BTreeMap::new(),
            &[foreign],
            &removing,
            SystemTime::now(),
        );
        assert_eq!(untouched.actions.len(), 1); // only the "web" sync

        // Deployed by another docker-cd instance on this host: not ours to remove or list.
        let mut theirs = container("theirs", "app", "h9");
        theirs.labels.instance = "fedcba9876543210".into();
        let other_agent = plan(
            &snap,
            &BTreeMap::new(),
            &[theirs],
            &removing,
            SystemTime::now(),
        );
        assert_eq!(other_agent.actions.len(), 1, "{other_agent:?}");
    }

    #[test]
    fn a_drift_revert_reuses_the_deployed_labels_so_intact_containers_stay() {
        let mut a = container("web", "a", "h1");
        a.labels.services = "a,b".into();
        let action = only(plan(
            &snapshot(&[("web", "h1")]),
            &sync_map(&[("web", synced("h1"))]),
            &[a],
            &revert(),
            SystemTime::now(),
        ));
        let Action::Sync {
            reuse: Some(deployed),
            reason: SyncReason::Drift(_),
            ..
        } = action
        else {
            panic!("{action:?}")
        };
        assert_eq!(deployed.revision, "r0");
        assert_eq!(deployed.synced_at, "2026-11-28T16:00:00Z");
    }

    #[test]
    fn an_empty_snapshot_never_removes_anything() {
        let removing = Policy {
            remove_enabled: true,
            ..revert()
        };
        let plan = plan(
            &snapshot(&[]),
            &BTreeMap::new(),
            &[container("web", "app", "h1")],
            &removing,
            SystemTime::now(),
        );
        let action = only(plan);
        assert!(
            matches!(action, Action::Orphan { reason, .. } if reason.contains("empty snapshot"))
        );
    }

    #[test]
    fn listed_stacks_gone_from_git_and_host_are_forgotten() {
        let mut orphan = synced("h0");
        orphan.status = StackStatus::Orphaned;
        let plan = plan(
            &snapshot(&[]),
            &sync_map(&[("old", orphan)]),
            &[],
            &revert(),
            SystemTime::now(),
        );
        assert_eq!(only(plan), Action::Forget { path: "old".into() });
    }

    #[test]
    fn one_off_containers_are_ignored() {
        let mut run = container("web", "app", "");
        run.oneoff = "True".into();
        run.labels.owner = String::new();
        let action = only(plan(
            &snapshot(&[("web", "h1")]),
            &BTreeMap::new(),
            &[run],
            &revert(),
            SystemTime::now(),
        ));
        assert!(
            matches!(
                action,
                Action::Sync {
                    reason: SyncReason::NotDeployed,
                    ..
                }
            ),
            "{action:?}"
        );
    }

    // Swarm services go through the same plan.

    fn service(stack: &str, name: &str, hash: &str) -> ServiceInfo {
        use crate::stack::labels;
        let labels: BTreeMap<String, String> = [
            (labels::OWNER, OWNER_VALUE),
            (labels::INSTANCE, INSTANCE),
            (labels::STACK_PATH, stack),
            (labels::REVISION, "r0"),
            (labels::CONTENT_HASH, hash),
            (labels::COMPOSE_HASH, "c"),
            (labels::SYNCED_AT, "2026-11-28T16:00:00Z"),
            (labels::SERVICES, name),
            (crate::swarm::check::REPLICAS, "1"),
            (crate::swarm::NAMESPACE_LABEL, stack),
            (crate::swarm::STACK_IMAGE_LABEL, "img"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        ServiceInfo {
            id: format!("{stack}-{name}"),
            name: format!("{stack}_{name}"),
            stack: stack.into(),
            service: name.into(),
            deployed: DeployedLabels::from_labels(&labels),
            labels,
            mode: "replicated".into(),
            spec_replicas: Some(1),
            running: 1,
            desired: 1,
            image: "img@sha256:0123".into(),
            update_state: Some("completed".into()),
            update_message: None,
            ports: String::new(),
        }
    }

    #[test]
    fn swarm_services_with_matching_labels_are_recognised_and_counted_in_tasks() {
        let mut web = service("web", "app", "h1");
        web.running = 2;
        web.desired = 3;
        web.spec_replicas = Some(3);
        web.labels
            .insert(crate::swarm::check::REPLICAS.into(), "3".into());
        let action = only(plan_for(
            &snapshot(&[("web", "h1")]),
            &BTreeMap::new(),
            &[web],
            &revert(),
            SystemTime::now(),
        ));
        let Action::Recognise {
            deployed, counts, ..
        } = action
        else {
            panic!("{action:?}")
        };
        assert_eq!(deployed.revision, "r0");
        assert_eq!(
            counts,
            Counts {
                running: 2,
                total: 3
            }
        );
    }

    #[test]
    fn a_service_scaled_or_removed_by_hand_is_drift_named_as_a_service() {
        let snap = snapshot(&[("web", "h1")]);
        let sync = sync_map(&[("web", synced("h1"))]);
        let mut scaled = service("web", "app", "h1");
        scaled.spec_replicas = Some(3);
        let action = only(plan_for(
            &snap,
            &sync,
            &[scaled],
            &revert(),
            SystemTime::now(),
        ));
        assert!(
            matches!(&action, Action::Sync { reason: SyncReason::Drift(d), reuse: Some(_), .. }
                if d == "service web_app was scaled to 3 replicas (Git says 1)"),
            "{action:?}"
        );
        let mut app = service("web", "app", "h1");
        app.deployed.services = "app,db".into();
        let action = only(plan_for(&snap, &sync, &[app], &revert(), SystemTime::now()));
        assert!(
            matches!(&action, Action::Sync { reason: SyncReason::Drift(d), .. } if d == "service db was removed"),
            "{action:?}"
        );
        let none: [ServiceInfo; 0] = [];
        let flag = Policy {
            drift_policy: DriftPolicy::Flag,
            ..revert()
        };
        let action = only(plan_for(&snap, &sync, &none, &flag, SystemTime::now()));
        assert!(
            matches!(&action, Action::Flag { drift, .. } if drift == "all services are gone"),
            "{action:?}"
        );
    }

    #[test]
    fn a_paused_swarm_update_fails_the_stack_without_redeploying() {
        let mut paused = service("web", "app", "h2");
        paused.update_state = Some("paused".into());
        paused.update_message = Some("update paused due to failure of task x".into());
        let plan = plan_for(
            &snapshot(&[("web", "h2")]),
            &sync_map(&[("web", synced("h1"))]),
            &[paused],
            &revert(),
            SystemTime::now(),
        );
        assert_eq!(plan.compose_runs(), 0);
        let action = only(plan);
        assert!(
            matches!(&action, Action::Fail { reason, .. } if reason.contains("update of service web_app is paused: update paused due to failure")),
            "{action:?}"
        );
    }

    #[test]
    fn a_foreign_stack_is_not_taken_over_and_says_how_to_remove_it() {
        let mut foreign = service("web", "app", "");
        foreign.labels.clear();
        foreign.deployed = DeployedLabels::default();
        let action = only(plan_for(
            &snapshot(&[("web", "h1")]),
            &BTreeMap::new(),
            &[foreign],
            &revert(),
            SystemTime::now(),
        ));
        assert!(
            matches!(&action, Action::Fail { reason, .. } if reason.contains("docker stack rm web") && reason.contains("swarm")),
            "{action:?}"
        );
    }

    #[test]
    fn a_swarm_stack_gone_from_git_is_removed_when_enabled() {
        let removing = Policy {
            remove_enabled: true,
            ..revert()
        };
        let plan = plan_for(
            &snapshot(&[("web", "h1")]),
            &BTreeMap::new(),
            &[service("web", "app", "h1"), service("old", "app", "h0")],
            &removing,
            SystemTime::now(),
        );
        assert!(plan.actions.iter().any(
            |a| matches!(a, Action::Remove { path, project } if path == "old" && project == "old")
        ));
    }
}
