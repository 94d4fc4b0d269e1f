//! Sync: make the Docker host run what the snapshot says (SPEC §6).
//!
//! Decide, then act: [`plan::plan`] is pure; `Reconciler::apply` is a thin loop over it that
//! runs compose one stack at a time, so there is never more than one compose operation per
//! project (nor at all). A reconcile runs after each completed refresh and on a resync tick,
//! through the same single-slot queue as refreshes: one running, at most one waiting.
//!
//! Actual state is read with one `docker ps` per reconcile (plus one after syncs to refresh the
//! counts); a no-op reconcile spawns exactly one docker process. In swarm mode the same loop
//! deploys with `docker stack deploy` and reads services instead: two docker processes per
//! reconcile (`service ls`, `service inspect`), whatever the number of stacks. Which engine is
//! chosen once, by the wiring; this module only talks to [`Engine`].
//!
//! - [`plan`]: the pure decision.
//! - [`view`]: [`EngineView`], the read-only handle the HTTP edge gets on the engine.
//!
//! The reconciler changes a stack's sync state only through the named transitions of
//! [`crate::desired_state::transitions`] (`start_sync`, `succeed`, `fail`, `drift`, …), applied
//! through the store so every change is published.
//!
//! Uses: desired_state, queue, git (stack files), engine (the only way to the Docker host),
//! stack (labels, materialisation), config. Never `compose` or `swarm` directly but for the
//! plan's workload types.

pub mod plan;
pub mod view;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::config::Redactor;
use crate::desired_state::public::PublicErrors;
use crate::desired_state::transitions::Deployment;
use crate::desired_state::{Snapshot, StackStatus, Store, SyncInfo, rfc3339};
use crate::engine::{Actual, EngineError};
use crate::git::{GitError, GitReader};
use crate::process::{elide_values, summary_chain};
use crate::queue::{Admission, SingleSlot};
use crate::stack::StackFiles;
use crate::stack::labels::SyncLabels;
use crate::stack::materialise::{self, MaterialiseError};
use crate::untrusted::Untrusted;
use plan::{Action, Counts, Deployed, Policy, SyncReason, Workload};

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
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Refresh => "refresh",
            Self::Tick => "tick",
            Self::Ack => "ack",
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
}

impl ReconcileHandle {
    pub fn request(&self, reason: Reason) -> Admission {
        self.slot.request(reason)
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
    ) -> Self {
        let errors = PublicErrors::new(redactor, layout.data_dir());
        Self {
            store,
            git,
            engine,
            policy,
            layout,
            errors,
            slot: Arc::new(SingleSlot::new()),
            view: None,
        }
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
        }
    }

    /// Takes requests until `shutdown`. A reconcile in flight at shutdown starts nothing new
    /// and gets [`SHUTDOWN_GRACE`] to finish its compose operation; then it is dropped, which
    /// kills the compose process group.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let reason = tokio::select! {
                reason = self.slot.next() => reason,
                () = shutdown.cancelled() => return,
            };
            let work = self.reconcile_once(reason, &shutdown);
            tokio::pin!(work);
            tokio::select! {
                () = &mut work => {}
                () = shutdown.cancelled() => {
                    if tokio::time::timeout(SHUTDOWN_GRACE, work).await.is_err() {
                        tracing::warn!("compose did not finish within the shutdown grace period; killed");
                    }
                    return;
                }
            }
            self.slot.done();
        }
    }

    #[tracing::instrument(name = "reconcile", skip_all, fields(trigger = %reason))]
    async fn reconcile_once(&self, reason: Reason, shutdown: &CancellationToken) {
        let (snapshot, sync) = self.store.view();
        let Some(snapshot) = snapshot else {
            return; // nothing desired yet
        };
        let read = self.engine.read().await;
        self.forget_views();
        let actual = match read {
            Ok(actual) => actual,
            Err(e) => {
                let message = truncate(self.errors.render(&e).as_str());
                tracing::error!(error = %Untrusted::bounded(&message, LOG_ERROR_CHARS), "reconcile skipped; retried on the next tick");
                for path in snapshot.stacks.keys() {
                    self.store.update_stack(path, |s| s.refuse(message.clone()));
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
        for action in plan.actions {
            if shutdown.is_cancelled() {
                tracing::info!("shutdown: no further syncs started");
                return;
            }
            self.apply(action, &snapshot, reason).await;
        }
        if compose_runs > 0 {
            self.observe_counts(&snapshot).await;
        }
    }

    /// Carries out one action. `trigger` (why this reconcile runs) is only logged.
    async fn apply(&self, action: Action, snapshot: &Snapshot, trigger: Reason) {
        match action {
            Action::Sync {
                path,
                project,
                reason,
                reuse,
            } => {
                self.sync(&path, &project, &reason, reuse.as_ref(), snapshot, trigger)
                    .await
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
            Action::Remove { path, project } => self.remove(&path, &project).await,
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
        }
    }

    #[tracing::instrument(name = "sync", skip_all, fields(stack = %Untrusted::new(path), project = %project))]
    async fn sync(
        &self,
        path: &str,
        project: &str,
        reason: &SyncReason,
        reuse: Option<&Deployed>,
        snapshot: &Snapshot,
        trigger: Reason,
    ) {
        let Some(desired) = snapshot.stacks.get(path) else {
            return;
        };
        // Outcome events carry stack, commit, trigger and duration themselves (not only
        // through their spans), so log shippers find them as top-level JSON fields.
        tracing::info!(stack = %Untrusted::new(path), commit = %snapshot.revision, %trigger, reason = %Untrusted::bounded(&reason.to_string(), LOG_ERROR_CHARS), "sync started");
        self.store.update_stack(path, SyncInfo::start_sync);
        let started = std::time::Instant::now();
        let now = SystemTime::now();
        // A drift revert keeps the labels (revision, sync time) of the sync it restores.
        let (revision, synced_at) = match reuse {
            Some(d) => (d.revision.clone(), d.synced_at.clone()),
            None => (snapshot.revision.clone(), rfc3339::format(now)),
        };
        let applied = self
            .sync_steps(path, project, snapshot, &revision, &synced_at)
            .await;
        self.forget_views();
        match applied {
            Ok(()) => {
                tracing::info!(stack = %Untrusted::new(path), commit = %snapshot.revision, %trigger, duration_ms = started.elapsed().as_millis() as u64, "sync succeeded");
                let deployed = Deployment {
                    commit_message: (revision == snapshot.revision)
                        .then(|| snapshot.commit_message.clone()),
                    revision,
                    content_hash: desired.content_hash.clone(),
                    compose_hash: desired.compose_hash.clone(),
                    synced_at: humantime::parse_rfc3339(&synced_at).ok(),
                };
                self.store.update_stack(path, |s| s.succeed(deployed, now));
            }
            Err(error) => {
                let message = truncate(error.render(&self.errors).as_str());
                tracing::error!(stack = %Untrusted::new(path), commit = %snapshot.revision, %trigger, duration_ms = started.elapsed().as_millis() as u64, error = %Untrusted::bounded(&message, LOG_ERROR_CHARS), "sync failed");
                self.store
                    .update_stack(path, |s| s.fail(message, &desired.content_hash, now));
            }
        }
    }

    /// Materialise the stack at the commit, then let the engine apply it (validate and list
    /// services, write the label override, `up` or `deploy`).
    async fn sync_steps(
        &self,
        path: &str,
        project: &str,
        snapshot: &Snapshot,
        revision: &str,
        synced_at: &str,
    ) -> Result<(), SyncError> {
        let Some(desired) = snapshot.stacks.get(path) else {
            return Ok(());
        };
        let files = self.git.read_stack_files(&snapshot.revision, path).await?;
        let stacks_dir = self.layout.stacks_dir.clone();
        let name = project.to_owned();
        let dir = tokio::task::spawn_blocking(move || {
            materialise::materialise(&stacks_dir, &name, &files)
        })
        .await
        .map_err(|e| SyncError::Internal(e.to_string()))??;
        let labels = SyncLabels {
            instance: self.policy.instance.clone(),
            stack_path: path.to_owned(),
            revision: revision.to_owned(),
            content_hash: desired.content_hash.clone(),
            compose_hash: desired.compose_hash.clone().unwrap_or_default(),
            synced_at: synced_at.to_owned(),
            // Filled in by the engine, from its own reading of the compose file.
            services: Vec::new(),
        };
        let files = StackFiles {
            name: project.to_owned(),
            dir,
            compose_file: desired.compose_file.clone(),
            override_file: None,
        };
        let override_file = self.layout.overrides_dir.join(format!("{project}.json"));
        self.engine.apply(files, labels, override_file).await?;
        Ok(())
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

    /// Takes a stack gone from Git down with the files of its last sync.
    #[tracing::instrument(name = "remove", skip_all, fields(stack = %Untrusted::new(path), project = %project))]
    async fn remove(&self, path: &str, project: &str) {
        tracing::info!("removing a stack deleted from Git (RECONCILE_REMOVE_ENABLED=true)");
        self.store
            .upsert_gone(path, project, SyncInfo::start_removal);
        let dir = self.layout.stacks_dir.join(project);
        let override_file = self.layout.overrides_dir.join(format!("{project}.json"));
        let result = self
            .engine
            .remove(project, &dir, &override_file)
            .await
            .map_err(SyncError::from);
        self.forget_views();
        self.removed(path, project, &dir, result);
    }

    /// Records the outcome of a removal.
    fn removed(&self, path: &str, project: &str, dir: &Path, result: Result<(), SyncError>) {
        match result {
            Ok(()) => {
                tracing::info!("stack removed");
                let _ = std::fs::remove_dir_all(dir);
                let _ =
                    std::fs::remove_file(self.layout.overrides_dir.join(format!("{project}.json")));
                self.store.remove_gone(path);
            }
            Err(error) => {
                let message = truncate(error.render(&self.errors).as_str());
                tracing::error!(error = %Untrusted::bounded(&message, LOG_ERROR_CHARS), "removal failed");
                self.store.upsert_gone(path, project, |s| {
                    s.fail_removal(message, SystemTime::now());
                });
            }
        }
    }

    /// After syncs: one more read of the engine to show the new containers' (tasks') counts.
    async fn observe_counts(&self, snapshot: &Snapshot) {
        let read = self.engine.read().await;
        self.forget_views();
        let Ok(actual) = read else {
            return;
        };
        let counts = match &actual {
            Actual::Containers(containers) => counts_by_project(containers),
            Actual::Services(services) => counts_by_project(services),
        };
        for (path, desired) in &snapshot.stacks {
            let Some(project) = &desired.project_name else {
                continue;
            };
            let counts = counts.get(project.as_str()).copied().unwrap_or_default();
            self.store.update_stack(path, |s| observe(s, counts));
        }
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
