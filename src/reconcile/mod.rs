//! Sync: make the Docker host run what the snapshot says (SPEC §6, §9).
//!
//! Decide, then act: [`plan::plan`] is pure; the reconcile loop applies its decisions. What
//! changes nothing on the host (recognise, observe, fail, flag, orphan, forget) is applied at
//! once; syncs and removals are handed to [`jobs`], which runs `SYNC_CONCURRENCY` of them at
//! once, never two on one compose project, and waits after each `up` until the stack is
//! healthy (`SYNC_HEALTH_TIMEOUT`). A reconcile runs after each completed refresh, on a resync
//! tick and when a job ends, through the same single-slot queue as refreshes: one running, at
//! most one waiting. It never waits for a job, so a slow stack holds only its own slot.
//!
//! Actual state is read with one `docker ps` per reconcile, and health with at most one
//! `docker inspect` more, of the containers whose `ps` line does not already say they are
//! fine ([`crate::engine::Engine::assess`]): a steady, healthy host costs one docker process
//! per tick. In swarm mode the same loop deploys with `docker stack deploy` and reads services
//! instead (`service ls`, `service inspect`, and `service ps` of services not converged).
//! Which engine is chosen once, by the wiring; this module only talks to [`Engine`].
//!
//! - [`plan`]: the pure decision.
//! - [`jobs`]: syncs and removals, their slots, and the wait for health.
//! - [`watch`]: [`watch::HealthWatch`], one engine reading per poll for every waiting sync.
//! - [`view`]: [`EngineView`], the read-only handle the HTTP edge gets on the engine.
//!
//! The reconciler changes a stack's sync state only through the named transitions of
//! [`crate::desired_state::transitions`] (`start_sync`, `succeed`, `fail`, `drift`, …), applied
//! through the store so every change is published.
//!
//! Uses: desired_state, queue, git (stack files), engine (the only way to the Docker host),
//! stack (labels, materialisation, health), config, metrics (sync durations). Never `compose`
//! or `swarm` directly but for the plan's workload types.

pub mod control;
pub mod diff;
pub mod images;
pub mod jobs;
pub mod plan;
pub mod view;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::config::Redactor;
use crate::desired_state::public::PublicErrors;
use crate::desired_state::transitions::Deployment;
use crate::desired_state::{Health, Snapshot, StackStatus, Store, SyncInfo, rfc3339};
use crate::engine::{Actual, EngineError};
use crate::git::{GitError, GitReader};
use crate::process::{elide_values, summary_chain};
use crate::queue::{Admission, SingleSlot};
use crate::stack::materialise::MaterialiseError;
use crate::untrusted::Untrusted;
use control::Records;
use jobs::{BusyNow, Job, Jobs};
use plan::{Action, Counts, Deployed, Policy, Workload};
use watch::HealthWatch;

pub use jobs::SyncSettings;

pub use crate::engine::Engine;
pub use view::EngineView;

/// How much of a compose error a stack record keeps.
const MAX_ERROR_CHARS: usize = 2000;
/// How much of an error a log line shows (the record's whole error, and a little more).
const LOG_ERROR_CHARS: usize = MAX_ERROR_CHARS + 100;
/// How long a running compose operation may go on after shutdown was asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Why a reconcile was requested (logged only: the reconciler is level-triggered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Refresh,
    Tick,
    Ack,
    /// A sync or removal job ended: what changed meanwhile is planned now.
    Finished,
    /// An operator's sync, rollback, unpin or resume.
    Operator,
    /// A sync window that automatic syncs wait for opened.
    Window,
    /// An image check found newer images in a registry.
    ImageUpdate,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Refresh => "refresh",
            Self::Tick => "tick",
            Self::Ack => "ack",
            Self::Finished => "job finished",
            Self::Operator => "operator",
            Self::Window => "sync window opened",
            Self::ImageUpdate => "image update available",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error("no stack {0:?}")]
    UnknownStack(String),
    #[error("stack {path:?} is {}, not drifted; nothing to acknowledge", status.as_str())]
    NotDrifted { path: String, status: StackStatus },
}

/// Asks for reconciles and takes acknowledgements. Cheap to clone; never blocks.
#[derive(Debug, Clone)]
pub struct ReconcileHandle {
    slot: Arc<SingleSlot<Reason>>,
    store: Arc<Store>,
    git: Arc<GitReader>,
    records: Arc<Records>,
    engine: Arc<Engine>,
    images: Option<Arc<images::ImageChecker>>,
}

impl ReconcileHandle {
    pub fn request(&self, reason: Reason) -> Admission {
        self.slot.request(reason)
    }

    /// `POST /api/image-updates`: starts an image check now (SPEC §12), beside whatever runs;
    /// `false` when no registry client could be set up.
    pub fn check_images(&self) -> bool {
        let Some(images) = self.images.clone() else {
            return false;
        };
        tokio::spawn(async move {
            images.check().await;
        });
        true
    }

    /// Acknowledges the drift of a `drifted` stack: it is re-applied from Git once.
    pub fn ack(&self, path: &str) -> Result<(), AckError> {
        let record = self
            .store
            .stack(path)
            .ok_or_else(|| AckError::UnknownStack(path.to_owned()))?;
        if record.sync.status != StackStatus::Drifted {
            return Err(AckError::NotDrifted {
                path: path.to_owned(),
                status: record.sync.status,
            });
        }
        self.store.update_stack(path, SyncInfo::acknowledge);
        self.request(Reason::Ack);
        Ok(())
    }
}

/// Where materialised stacks and override files live.
#[derive(Debug, Clone)]
pub struct Layout {
    pub stacks_dir: PathBuf,
    pub overrides_dir: PathBuf,
}

impl Layout {
    pub fn under(data_dir: &Path) -> Self {
        Self {
            stacks_dir: data_dir.join("stacks"),
            overrides_dir: data_dir.join("overrides"),
        }
    }

    /// `DATA_DIR`, which errors shown to clients hide.
    fn data_dir(&self) -> Option<&Path> {
        self.stacks_dir.parent()
    }
}

/// Runtime counts per project, for workloads not ignored.
fn counts_by_project<W: Workload>(workloads: &[W]) -> std::collections::BTreeMap<&str, Counts> {
    let mut counts = std::collections::BTreeMap::<&str, Counts>::new();
    for w in workloads.iter().filter(|w| !w.is_ignored()) {
        w.count_into(counts.entry(w.project()).or_default());
    }
    counts
}

/// The reconcile worker.
#[derive(Debug)]
pub struct Reconciler {
    store: Arc<Store>,
    git: Arc<GitReader>,
    engine: Arc<Engine>,
    policy: Policy,
    layout: Layout,
    /// Renders errors for `lastSyncError`: redacted, `DATA_DIR` hidden, in full at debug.
    errors: PublicErrors,
    slot: Arc<SingleSlot<Reason>>,
    /// The edge's view of the same engine, told to forget its cached reads whenever this
    /// reconciler has read or changed the engine.
    view: Option<EngineView>,
    settings: SyncSettings,
    /// The syncs and removals queued or running.
    jobs: Arc<Jobs>,
    /// What syncs that wait for health look through.
    watch: Arc<HealthWatch>,
    /// The deployment history and the operator's controls, on disk.
    records: Arc<Records>,
    /// A reconcile asked for when the earliest sync window a stack waits for opens (so that a
    /// window shorter than `RECONCILE_INTERVAL` is not missed): when, and its timer.
    window_alarm: std::sync::Mutex<Option<(SystemTime, tokio::task::AbortHandle)>>,
    /// The image-update checks (SPEC §12), when a registry client could be set up.
    images: Option<Arc<images::ImageChecker>>,
    /// The age identities SOPS files are decrypted with (SPEC §12); empty: none configured.
    identities: Arc<crate::sops::Identities>,
}

impl Reconciler {
    /// A reconciler that applies with `engine` (shared with the [`EngineView`] of the edge).
    pub fn new(
        store: Arc<Store>,
        git: Arc<GitReader>,
        engine: Arc<Engine>,
        policy: Policy,
        layout: Layout,
        redactor: Redactor,
        records: Arc<Records>,
    ) -> Self {
        let errors = PublicErrors::new(redactor, layout.data_dir());
        let settings = SyncSettings::default();
        Self {
            store,
            git,
            watch: jobs::watch(&engine),
            engine,
            policy,
            layout,
            errors,
            slot: Arc::new(SingleSlot::new()),
            view: None,
            jobs: Arc::new(Jobs::new(settings.concurrency)),
            settings,
            records,
            window_alarm: std::sync::Mutex::new(None),
            images: None,
            identities: Arc::default(),
        }
    }

    /// Syncs `settings.concurrency` stacks at once, each waiting for health as `settings` say.
    pub fn with_settings(mut self, settings: SyncSettings) -> Self {
        self.jobs = Arc::new(Jobs::new(settings.concurrency));
        self.settings = settings;
        self
    }

    /// Keeps `view`'s cached reads no older than what this reconciler publishes.
    pub fn with_view(mut self, view: EngineView) -> Self {
        self.view = Some(view);
        self
    }

    /// The engine was just read or changed: what the edge cached before is out of date.
    fn forget_views(&self) {
        if let Some(view) = &self.view {
            view.forget();
        }
    }

    pub fn handle(&self) -> ReconcileHandle {
        ReconcileHandle {
            slot: self.slot.clone(),
            store: self.store.clone(),
            git: self.git.clone(),
            records: self.records.clone(),
            engine: self.engine.clone(),
            images: self.images.clone(),
        }
    }

    /// Checks images with `registries` (SPEC §12); stacks take updates unless their
    /// `imageUpdates` says otherwise when `default_on` (`IMAGE_UPDATE_INTERVAL` is set).
    pub fn with_image_checks(mut self, registries: Arc<crate::registry::Registries>) -> Self {
        self.images = Some(Arc::new(images::ImageChecker::new(
            self.store.clone(),
            self.engine.clone(),
            registries,
            self.layout.stacks_dir.clone(),
            self.slot.clone(),
            self.policy.image_updates,
        )));
        self
    }

    /// Decrypts the stacks' SOPS files with `identities`.
    pub fn with_identities(mut self, identities: crate::sops::Identities) -> Self {
        self.identities = Arc::new(identities);
        self
    }

    /// The image checker, for the interval's ticker.
    pub fn image_checker(&self) -> Option<Arc<images::ImageChecker>> {
        self.images.clone()
    }

    /// Takes requests until `shutdown`. Then no job starts any more, and running ones get
    /// [`SHUTDOWN_GRACE`] to finish their compose operation; then they are dropped, which
    /// kills their compose process groups.
    pub async fn run(self, shutdown: CancellationToken) {
        let me = Arc::new(self);
        loop {
            let reason = tokio::select! {
                reason = me.slot.next() => reason,
                () = shutdown.cancelled() => break,
            };
            me.reconcile_once(reason, &shutdown).await;
            me.slot.done();
        }
        me.jobs.stop(SHUTDOWN_GRACE).await;
    }

    #[tracing::instrument(name = "reconcile", skip_all, fields(trigger = %reason))]
    async fn reconcile_once(self: &Arc<Self>, reason: Reason, shutdown: &CancellationToken) {
        if self.store.snapshot().is_none() {
            return; // nothing desired yet
        }
        self.restore_controls().await;
        let busy_before = self.jobs.busy_now();
        let (snapshot, sync) = self.store.view();
        let Some(snapshot) = snapshot else {
            return;
        };
        let read = self.engine.read().await;
        self.forget_views();
        let actual = match read {
            Ok(actual) => actual,
            Err(e) => {
                let message = truncate(self.errors.render(&e).as_str());
                tracing::error!(error = %Untrusted::bounded(&message, LOG_ERROR_CHARS), "reconcile skipped; retried on the next tick");
                for path in snapshot.stacks.keys() {
                    if !self.jobs.is_busy(path, None) {
                        self.store.update_stack(path, |s| {
                            s.refuse(message.clone());
                            s.assess(Health::Unknown, Some(message.clone()));
                        });
                    }
                }
                return;
            }
        };
        let now = SystemTime::now();
        let plan = match &actual {
            Actual::Containers(containers) => {
                plan::plan(&snapshot, &sync, containers, &self.policy, now)
            }
            Actual::Services(services) => {
                plan::plan_for(&snapshot, &sync, services, &self.policy, now)
            }
        };
        let compose_runs = plan.compose_runs();
        if compose_runs > 0 {
            tracing::info!(
                compose_runs,
                stacks = snapshot.stacks.len(),
                "reconcile plan"
            );
        } else {
            tracing::debug!(
                stacks = snapshot.stacks.len(),
                "reconcile plan: nothing to apply"
            );
        }
        self.publish_gates(&snapshot, &sync, &plan.blocked, &busy_before);
        self.set_window_alarm(plan.window_opens);
        for action in plan.actions {
            let project = match &action {
                Action::Sync { project, .. }
                | Action::Remove { project, .. }
                | Action::UpdateImages { project, .. }
                | Action::Orphan { project, .. } => Some(project.as_str()),
                _ => snapshot
                    .stacks
                    .get(action.path())
                    .and_then(|d| d.project_name.as_deref()),
            };
            if busy_before.contains(action.path(), project)
                || self.jobs.is_busy(action.path(), project)
            {
                continue; // its job publishes its state
            }
            match action {
                Action::Sync {
                    path,
                    project,
                    reason: why,
                    reuse,
                    target,
                } => {
                    if shutdown.is_cancelled() {
                        continue;
                    }
                    let job = Job::Sync {
                        path,
                        project,
                        reason: why,
                        reuse,
                        target: target.map(Box::new),
                        planned: snapshot.clone(),
                        trigger: reason,
                    };
                    self.dispatch(job, shutdown);
                }
                Action::Remove { path, project } => {
                    if !shutdown.is_cancelled() {
                        self.dispatch(Job::Remove { path, project }, shutdown);
                    }
                }
                Action::UpdateImages {
                    path,
                    project,
                    services,
                    deployed,
                } => {
                    if !shutdown.is_cancelled() {
                        let job = Job::UpdateImages {
                            path,
                            project,
                            services,
                            deployed,
                        };
                        self.dispatch(job, shutdown);
                    }
                }
                other => self.apply(other, &snapshot),
            }
        }
        self.assess_health(&actual, &snapshot, &busy_before).await;
    }

    /// Keeps `health` current for every stack no job is busy with: one more look at the
    /// engine at most ([`Engine::assess`]), for all of them.
    async fn assess_health(&self, actual: &Actual, snapshot: &Snapshot, busy_before: &BusyNow) {
        let (_, sync) = self.store.view();
        let mut projects = std::collections::BTreeMap::<String, Vec<String>>::new();
        for (path, info) in &sync {
            let project = match snapshot.stacks.get(path) {
                Some(desired) => desired.project_name.clone(),
                None => info.host_project.clone(),
            };
            if info.suspended || info.suspended_in_git {
                continue; // `suspended` until resumed
            }
            if let Some(project) = project {
                if !busy_before.contains(path, Some(&project))
                    && !self.jobs.is_busy(path, Some(&project))
                {
                    projects.entry(project).or_default().push(path.clone());
                }
            }
        }
        if projects.is_empty() {
            return;
        }
        let wanted = projects.keys().cloned().collect();
        let assessed = self.engine.assess(actual, &wanted).await;
        self.forget_views();
        match assessed {
            Ok(assessed) => {
                for (project, assessment) in assessed {
                    for path in projects.get(&project).into_iter().flatten() {
                        let message = assessment.message.clone();
                        self.store
                            .update_stack(path, |s| s.assess(assessment.health, message));
                    }
                }
            }
            Err(e) => {
                let message = truncate(self.errors.render(&e).as_str());
                tracing::warn!(error = %Untrusted::bounded(&message, LOG_ERROR_CHARS), "cannot read the stacks' health; retried on the next tick");
                for path in projects.values().flatten() {
                    self.store
                        .update_stack(path, |s| s.assess(Health::Unknown, Some(message.clone())));
                }
            }
        }
    }

    /// Carries out one action that changes nothing on the host (syncs and removals are
    /// [`Job`]s).
    fn apply(&self, action: Action, snapshot: &Snapshot) {
        match action {
            Action::Sync { .. } | Action::Remove { .. } | Action::UpdateImages { .. } => {
                unreachable!("syncs, removals and image updates run as jobs")
            }
            Action::Recognise {
                path,
                deployed,
                counts,
            } => self.recognise(&path, &deployed, counts, snapshot),
            Action::Observe { path, counts } => {
                self.store.update_stack(&path, |s| observe(s, counts));
            }
            Action::Fail {
                path,
                reason,
                counts,
            } => {
                let changed = self
                    .store
                    .stack(&path)
                    .is_none_or(|r| r.sync.last_sync_error.as_deref() != Some(reason.as_str()));
                if changed {
                    tracing::error!(stack = %Untrusted::new(&path), error = %Untrusted::bounded(&reason, LOG_ERROR_CHARS), "stack cannot be applied");
                }
                self.store.update_stack(&path, |s| {
                    s.refuse(reason);
                    observe(s, counts);
                });
            }
            Action::Flag {
                path,
                drift,
                counts,
            } => {
                let first = self
                    .store
                    .stack(&path)
                    .is_none_or(|r| r.sync.status != StackStatus::Drifted);
                if first {
                    tracing::warn!(stack = %Untrusted::new(&path), drift = %Untrusted::bounded(&drift, LOG_ERROR_CHARS), "drift detected; flagged (DRIFT_POLICY=flag), waiting for an acknowledgement");
                }
                self.store.update_stack(&path, |s| {
                    s.drift(drift);
                    observe(s, counts);
                });
            }
            Action::Backoff {
                path,
                retry_at,
                counts,
            } => {
                tracing::debug!(stack = %Untrusted::new(&path), retry_at = %rfc3339::format(retry_at), "failed sync; waiting before retrying");
                self.store.update_stack(&path, |s| observe(s, counts));
            }
            Action::Orphan {
                path,
                project,
                counts,
                reason,
            } => {
                let known = self
                    .store
                    .stack(&path)
                    .is_some_and(|r| r.sync.status == StackStatus::Orphaned);
                if !known {
                    tracing::warn!(stack = %Untrusted::new(&path), %project, reason, "stack is orphaned");
                }
                self.store.upsert_gone(&path, &project, |s| {
                    s.orphan(reason);
                    observe(s, counts);
                });
            }
            Action::Forget { path } => self.store.remove_gone(&path),
            Action::Wait {
                path,
                gone_project,
                counts,
            } => {
                let why = self
                    .store
                    .stack(&path)
                    .and_then(|r| r.sync.blocked_by.clone())
                    .unwrap_or_default();
                tracing::debug!(stack = %Untrusted::new(&path), blocked_by = %Untrusted::bounded(&why, LOG_ERROR_CHARS), "sync waits");
                match gone_project {
                    Some(project) => self
                        .store
                        .upsert_gone(&path, &project, |s| observe(s, counts)),
                    None => {
                        self.store.update_stack(&path, |s| observe(s, counts));
                    }
                }
            }
        }
    }

    /// Asks for a reconcile when the earliest window a stack waits for opens (a second after,
    /// so the plan finds it open), replacing the alarm set for another time.
    fn set_window_alarm(&self, opens: Option<SystemTime>) {
        let mut alarm = self
            .window_alarm
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if alarm.as_ref().map(|(at, _)| *at) == opens {
            return;
        }
        if let Some((_, timer)) = alarm.take() {
            timer.abort();
        }
        let Some(at) = opens else {
            return;
        };
        let wait = at
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_add(Duration::from_secs(1));
        let slot = self.slot.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            slot.request(Reason::Window);
        });
        *alarm = Some((at, timer.abort_handle()));
    }

    /// Sets each stack's `blockedBy` and its suspension in Git where they changed (most
    /// ticks: none, and no store write). Stacks a job is busy with are left to it.
    fn publish_gates(
        &self,
        snapshot: &Snapshot,
        sync: &std::collections::BTreeMap<String, SyncInfo>,
        blocked: &std::collections::BTreeMap<String, String>,
        busy_before: &BusyNow,
    ) {
        for (path, info) in sync {
            let desired = snapshot.stacks.get(path);
            let suspended_in_git = desired.is_some_and(|d| d.settings().suspend == Some(true));
            let blocked_by = blocked.get(path);
            if info.suspended_in_git == suspended_in_git && info.blocked_by.as_ref() == blocked_by {
                continue;
            }
            let project = desired.and_then(|d| d.project_name.as_deref());
            if busy_before.contains(path, project) {
                continue; // its job's outcome comes first; the next reconcile sees the rest
            }
            if suspended_in_git && !info.suspended_in_git {
                tracing::info!(stack = %Untrusted::new(path), "suspended in Git (x-docker-cd.suspend: true)");
            }
            let blocked_by = blocked_by.cloned();
            self.store
                .update_stack(path, |s| s.gate(suspended_in_git, blocked_by));
        }
    }

    fn recognise(&self, path: &str, deployed: &Deployed, counts: Counts, snapshot: &Snapshot) {
        let first_time = self
            .store
            .stack(path)
            .is_none_or(|r| r.sync.status != StackStatus::Synced);
        if first_time {
            tracing::info!(stack = %Untrusted::new(path), revision = %deployed.revision, "already deployed on this host; recognised from its labels, no compose run");
        }
        let deployment = Deployment {
            revision: deployed.revision.clone(),
            commit_message: (deployed.revision == snapshot.revision)
                .then(|| snapshot.commit_message.clone()),
            content_hash: deployed.content_hash.clone(),
            compose_hash: Some(deployed.compose_hash.clone()),
            synced_at: humantime::parse_rfc3339(&deployed.synced_at).ok(),
        };
        self.store.update_stack(path, |s| {
            s.recognise(deployment);
            observe(s, counts);
        });
    }
}

/// Requests a reconcile every `interval` (the resync tick that finds drift).
pub async fn run_ticker(handle: ReconcileHandle, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => { handle.request(Reason::Tick); }
            () = shutdown.cancelled() => return,
        }
    }
}

/// Records the plan's runtime counts ([`SyncInfo::observe`]).
fn observe(s: &mut SyncInfo, counts: Counts) {
    s.observe(counts.running, counts.total);
}

/// Keeps the end of long compose output (the error is at the end).
fn truncate(text: &str) -> String {
    let count = text.chars().count();
    if count <= MAX_ERROR_CHARS {
        return text.to_owned();
    }
    let tail: String = text.chars().skip(count - MAX_ERROR_CHARS).collect();
    format!("[…] {tail}")
}

/// Why one sync failed.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("cannot read the stack's files from Git")]
    Git(#[from] GitError),
    #[error("cannot write the stack's files")]
    Materialise(#[from] MaterialiseError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The stack's settings or hooks refused the sync (the message names the key or hook).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Internal(String),
}

impl SyncError {
    /// For `lastSyncError`: what failed and the tool's summarised words
    /// ([`summary_chain`]); the full text, command lines and all, to the debug log.
    fn render(&self, errors: &PublicErrors) -> crate::desired_state::public::PublicError {
        let public = self.describe(summary_chain, elide_values);
        #[allow(clippy::redundant_closure)]
        // error_chain's lifetimes are too specific for `describe`
        let full = self.describe(|e| crate::error_chain(e), str::to_owned);
        errors.publish(&public, &full)
    }

    /// The error through `chain`, and a failed swarm deploy's task errors through `task`
    /// ([`EngineError::describe`]).
    fn describe(
        &self,
        chain: impl Fn(&(dyn std::error::Error + 'static)) -> String,
        task: impl Fn(&str) -> String,
    ) -> String {
        match self {
            Self::Engine(error) => error.describe(chain, task),
            other => chain(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::{SwarmError, check};

    fn public(error: &SyncError) -> String {
        error.render(&PublicErrors::default()).into_string()
    }

    #[test]
    fn a_refused_swarm_stack_and_failed_tasks_are_described_in_full() {
        let refused = SyncError::from(EngineError::from(SwarmError::Refused(
            check::Refusal::Unsupported(vec![
                "service app: build: swarm does not build images".into(),
            ]),
        )));
        let text = public(&refused);
        assert!(
            text.starts_with("swarm mode cannot deploy this stack"),
            "{text}"
        );
        assert!(
            text.ends_with("- service app: build: swarm does not build images"),
            "{text}"
        );
        let failed = SyncError::from(EngineError::Deploy {
            error: SwarmError::MissingFlag("--prune"),
            task_errors: vec!["web_app.1: task: non-zero exit (3)".into()],
        });
        assert!(
            public(&failed).ends_with("failed tasks:\nweb_app.1: task: non-zero exit (3)"),
            "{}",
            public(&failed)
        );
    }

    #[test]
    fn long_errors_keep_their_end() {
        let long = format!("{}THE END", "x".repeat(5000));
        let short = truncate(&long);
        assert!(short.ends_with("THE END"));
        assert!(short.chars().count() <= MAX_ERROR_CHARS + 4);
        assert_eq!(truncate("short"), "short");
    }
}
