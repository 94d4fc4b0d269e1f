//! The operations that change the host (a sync, a removal), run as jobs beside the reconcile
//! loop, `SYNC_CONCURRENCY` at once (SPEC §9).
//!
//! - A reconcile plans, then hands every sync and removal to [`Jobs`] and returns: it never
//!   waits for compose, nor for a stack to turn healthy, so a slow or failing stack holds only
//!   its own slot and the next commit is planned at once.
//! - A stack (and its compose project) with a job queued or running is *busy*: the plan's
//!   action for it is skipped until the job is done, so there are never two operations on one
//!   project, whatever the setting. When a job ends it asks for a reconcile, which sees what
//!   changed meanwhile.
//! - A job that waits for its slot takes the newest snapshot when it starts: a commit that
//!   came while it queued is what it applies.
//! - A sync waits for health after `up` (`SYNC_HEALTH_TIMEOUT`) through the shared
//!   [`HealthWatch`]; only a healthy stack is `synced`.
//!
//! Workflow layer; part of the reconciler. Uses what [`super`] uses.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::plan::{Counts, Deployed, SyncReason};
use super::watch::HealthWatch;
use super::{LOG_ERROR_CHARS, Reason, Reconciler, SyncError, observe, truncate};
use std::path::Path;

use crate::desired_state::settings::{self, Phase, StackSettings};
use crate::desired_state::transitions::Deployment;
use crate::desired_state::{
    DesiredStack, Health, MAX_COMPOSE_FILE_BYTES, Snapshot, SyncInfo, Target, rfc3339,
};
use crate::engine::Prepared;
use crate::git::StackAt;
use crate::history::{
    DeployedImage, HOOK_OUTPUT_BYTES, HookRun, NewDeployment, Outcome, Trigger as HistoryTrigger,
};
use crate::stack::StackFiles;
use crate::stack::labels::SyncLabels;
use crate::stack::materialise;
use crate::stack::secrets;
use crate::untrusted::Untrusted;

/// How a sync waits for health, and how many run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSettings {
    /// `SYNC_HEALTH_TIMEOUT`; zero: a sync is done when the engine's apply is.
    pub health_timeout: Duration,
    /// `SYNC_CONCURRENCY`, at least 1.
    pub concurrency: usize,
    /// `ROLLBACK_ON_FAILURE`: a failed sync of a new commit re-applies the last good one.
    pub rollback_on_failure: bool,
}

impl Default for SyncSettings {
    /// One at a time, not waiting: what a reconciler did before health-aware sync.
    fn default() -> Self {
        Self {
            health_timeout: Duration::ZERO,
            concurrency: 1,
            rollback_on_failure: false,
        }
    }
}

/// One operation on one stack.
#[derive(Debug, Clone)]
pub enum Job {
    Sync {
        path: String,
        project: String,
        reason: SyncReason,
        reuse: Option<Deployed>,
        /// The held version to apply (pinned, rolled back); `None`: the snapshot's.
        target: Option<Box<Target>>,
        /// The snapshot the plan was made from.
        planned: Arc<Snapshot>,
        trigger: Reason,
    },
    Remove {
        path: String,
        project: String,
    },
    /// Pull and recreate `services`, whose tag moved in the registry (SPEC §12).
    UpdateImages {
        path: String,
        project: String,
        services: Vec<String>,
        /// The labels of the last sync, kept: only the images change.
        deployed: Deployed,
    },
}

impl Job {
    fn keys(&self) -> (&str, &str) {
        match self {
            Self::Sync { path, project, .. }
            | Self::Remove { path, project }
            | Self::UpdateImages { path, project, .. } => (path, project),
        }
    }
}

/// Jobs queued or running: the busy stacks, the slots, the tasks.
#[derive(Debug)]
pub struct Jobs {
    permits: Arc<Semaphore>,
    /// Stack paths and compose projects with a job queued or running.
    busy: Mutex<Busy>,
    tracker: TaskTracker,
    /// Cancelled when the shutdown grace period is over: running jobs are dropped, which kills
    /// their compose process groups.
    hard_stop: CancellationToken,
}

/// The busy stacks at one moment ([`Jobs::busy_now`]).
#[derive(Debug, Default)]
pub struct BusyNow {
    paths: BTreeSet<String>,
    projects: BTreeSet<String>,
}

impl BusyNow {
    pub fn contains(&self, path: &str, project: Option<&str>) -> bool {
        self.paths.contains(path) || project.is_some_and(|p| self.projects.contains(p))
    }
}

#[derive(Debug, Default)]
struct Busy {
    paths: BTreeSet<String>,
    projects: BTreeSet<String>,
}

impl Jobs {
    pub fn new(concurrency: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            busy: Mutex::default(),
            tracker: TaskTracker::new(),
            hard_stop: CancellationToken::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Busy> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a job for the stack at `path` or for `project` is queued or running.
    pub fn is_busy(&self, path: &str, project: Option<&str>) -> bool {
        let busy = self.lock();
        busy.paths.contains(path) || project.is_some_and(|p| busy.projects.contains(p))
    }

    /// The stacks busy now. A reconcile takes this before it reads the store and the engine,
    /// and skips these stacks as well as those busy when it acts: a job that ends meanwhile
    /// wrote its outcome after what the reconcile read, which must not overwrite it.
    pub fn busy_now(&self) -> BusyNow {
        let busy = self.lock();
        BusyNow {
            paths: busy.paths.clone(),
            projects: busy.projects.clone(),
        }
    }

    /// Marks the job's stack busy; false when it already is (the job must not run).
    fn claim(&self, job: &Job) -> bool {
        let (path, project) = job.keys();
        let mut busy = self.lock();
        if busy.paths.contains(path) || busy.projects.contains(project) {
            return false;
        }
        busy.paths.insert(path.to_owned());
        busy.projects.insert(project.to_owned());
        true
    }

    fn release(&self, job: &Job) {
        let (path, project) = job.keys();
        let mut busy = self.lock();
        busy.paths.remove(path);
        busy.projects.remove(project);
    }

    /// Shutdown: no new job starts; running ones get `grace`, then are dropped.
    pub async fn stop(&self, grace: Duration) {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("compose did not finish within the shutdown grace period; killed");
            self.hard_stop.cancel();
            self.tracker.wait().await;
        }
    }
}

/// The version of a stack one sync applies: the snapshot's, or a held one.
#[derive(Debug, Clone)]
struct Version {
    revision: String,
    commit_message: String,
    content_hash: String,
    compose_file: String,
    compose_hash: Option<String>,
}

impl Version {
    fn of(snapshot: &Snapshot, desired: &DesiredStack) -> Self {
        Self {
            revision: snapshot.revision.clone(),
            commit_message: snapshot.commit_message.clone(),
            content_hash: desired.content_hash.clone(),
            compose_file: desired.compose_file.clone(),
            compose_hash: desired.compose_hash.clone(),
        }
    }

    fn held(target: &Target) -> Self {
        Self {
            revision: target.revision.clone(),
            commit_message: target.commit_message.clone(),
            content_hash: target.content_hash.clone(),
            compose_file: target.compose_file.clone(),
            compose_hash: target.compose_hash.clone(),
        }
    }
}

/// What one apply of a version came to.
struct Attempt {
    /// What runs now if it succeeded (the labels it was applied with).
    deployed: Deployment,
    outcome: Result<Counts, (String, Option<Health>)>,
    /// The hooks that ran, in order.
    hooks: Vec<HookRun>,
    /// The version's settings (`x-docker-cd:` at its commit), as far as they were read.
    settings: StackSettings,
    /// `up` (or `deploy`) ran: the host may have changed. A sync that failed before (its files,
    /// its settings, a `preSync` hook) left the running version as it was, and is never
    /// rolled back.
    applied: bool,
}

/// A version ready to be applied: the engine's prepared stack and the settings at its commit.
struct Staged {
    prepared: Prepared,
    settings: StackSettings,
}

/// The history's trigger for a sync of `reason`.
fn history_trigger(reason: &SyncReason) -> HistoryTrigger {
    match reason {
        SyncReason::NotDeployed | SyncReason::ContentChanged { .. } | SyncReason::Retry => {
            HistoryTrigger::Commit
        }
        SyncReason::Drift(_) => HistoryTrigger::Drift,
        SyncReason::Acknowledged(_) => HistoryTrigger::Ack,
        SyncReason::Manual => HistoryTrigger::Manual,
        SyncReason::Rollback(_) => HistoryTrigger::Rollback,
    }
}

/// How the wait for health ended.
enum Waited {
    Healthy(Counts),
    /// Not healthy in time, or can never be: the stack's health and why.
    Unhealthy {
        health: Health,
        message: String,
    },
    /// Shutdown came first.
    Interrupted,
}

impl Reconciler {
    /// Queues `job` unless its stack is busy. It starts when a slot is free.
    pub(super) fn dispatch(self: &Arc<Self>, job: Job, shutdown: &CancellationToken) {
        if !self.jobs.claim(&job) {
            return;
        }
        let me = self.clone();
        let shutdown = shutdown.clone();
        self.jobs.tracker.spawn(async move {
            let permit = tokio::select! {
                permit = me.jobs.permits.clone().acquire_owned() => permit.ok(),
                () = shutdown.cancelled() => None,
            };
            if permit.is_some() && !shutdown.is_cancelled() {
                tokio::select! {
                    () = me.run_job(&job, &shutdown) => {}
                    () = me.jobs.hard_stop.cancelled() => {}
                }
            }
            drop(permit);
            me.jobs.release(&job);
            if !shutdown.is_cancelled() {
                me.slot.request(Reason::Finished);
            }
        });
    }

    async fn run_job(&self, job: &Job, shutdown: &CancellationToken) {
        match job {
            Job::Sync {
                path,
                project,
                reason,
                reuse,
                target,
                planned,
                trigger,
            } => {
                // A commit that came while this job queued is what it applies.
                let latest = self.store.snapshot().unwrap_or_else(|| planned.clone());
                let reuse = if latest.revision == planned.revision {
                    reuse.as_ref()
                } else {
                    None
                };
                let applicable = latest.stacks.get(path).is_some_and(|d| {
                    d.error.is_none() && d.project_name.as_deref() == Some(project)
                });
                if applicable {
                    let version = match target {
                        Some(target) => Version::held(target),
                        None => match latest.stacks.get(path) {
                            Some(desired) => Version::of(&latest, desired),
                            None => return,
                        },
                    };
                    self.sync(path, project, reason, reuse, &version, *trigger, shutdown)
                        .await;
                }
            }
            Job::Remove { path, project } => self.remove(path, project).await,
            Job::UpdateImages {
                path,
                project,
                services,
                deployed,
            } => {
                self.update_images(path, project, services, deployed, shutdown)
                    .await;
            }
        }
    }

    /// Pulls and recreates `services` of a synced stack with the labels of its last sync, waits
    /// for health, and records it (`trigger: image-update`). On failure with
    /// `rollbackOnFailure` (the stack's, else `ROLLBACK_ON_FAILURE`) the previous images are
    /// tagged again and the services recreated on them.
    #[tracing::instrument(name = "image_update", skip_all, fields(stack = %Untrusted::new(path), project = %project))]
    async fn update_images(
        &self,
        path: &str,
        project: &str,
        services: &[String],
        deployed: &Deployed,
        shutdown: &CancellationToken,
    ) {
        let Some(record) = self.store.stack(path) else {
            return;
        };
        let Some(compose_file) = record.compose_file.clone() else {
            return;
        };
        tracing::info!(services = %services.join(","), "image update started: the registry has newer images for these tags");
        self.store.update_stack(path, SyncInfo::start_sync);
        let started_at = SystemTime::now();
        let previous: Vec<(String, String)> = record
            .sync
            .images
            .iter()
            .filter(|i| services.contains(&i.service))
            .filter_map(|i| Some((i.image_id.clone()?, i.image.clone())))
            .collect();
        let staged = self
            .stage_deployed(path, project, &compose_file, deployed)
            .await;
        let applied = match &staged {
            Ok(staged) => self
                .engine
                .update_images(&staged.prepared, services)
                .await
                .map_err(SyncError::from),
            Err(e) => Err(SyncError::Internal(e.to_string())),
        };
        self.forget_views();
        let settings = staged
            .as_ref()
            .map(|s| s.settings.clone())
            .unwrap_or_default();
        let timeout = match settings.health_timeout {
            Some(t) => (t, "x-docker-cd.healthTimeout"),
            None => (self.settings.health_timeout, "SYNC_HEALTH_TIMEOUT"),
        };
        let outcome = match applied {
            Ok(()) => match self.wait_healthy(path, project, timeout, shutdown).await {
                Waited::Healthy(counts) => Ok(counts),
                Waited::Interrupted => return,
                Waited::Unhealthy { message, .. } => Err(message),
            },
            Err(error) => Err(truncate(error.render(&self.errors).as_str())),
        };
        let rollback = settings
            .rollback_on_failure
            .unwrap_or(self.settings.rollback_on_failure);
        let rolled_back = match (&outcome, &staged) {
            (Err(_), Ok(staged)) if rollback && !previous.is_empty() => {
                tracing::warn!("image update failed; putting the previous images back");
                let back = self
                    .engine
                    .restore_images(&staged.prepared, &previous, services)
                    .await;
                self.forget_views();
                match back {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(error = %crate::error_chain(&e), "the rollback of the image update failed too");
                        false
                    }
                }
            }
            _ => false,
        };
        let images = self.images(project).await;
        let finished_at = SystemTime::now();
        let (history_outcome, reason) = match &outcome {
            Ok(_) => (Outcome::Succeeded, None),
            Err(m) if rolled_back => (Outcome::RolledBack, Some(m.clone())),
            Err(m) => (Outcome::Failed, Some(m.clone())),
        };
        self.records
            .record(NewDeployment {
                stack: path.to_owned(),
                revision: deployed.revision.clone(),
                commit_message: record
                    .sync
                    .synced_commit_message
                    .clone()
                    .unwrap_or_default(),
                content_hash: deployed.content_hash.clone(),
                trigger: HistoryTrigger::ImageUpdate,
                started_at,
                finished_at,
                outcome: history_outcome,
                reason,
                images,
                hooks: Vec::new(),
            })
            .await;
        match outcome {
            Ok(counts) => {
                tracing::info!(services = %services.join(","), "image update succeeded");
                self.store.update_stack(path, |s| {
                    s.images_updated(services, started_at);
                    observe(s, counts);
                });
            }
            Err(message) => {
                tracing::error!(error = %Untrusted::bounded(&message, LOG_ERROR_CHARS), "image update failed");
                self.store.update_stack(path, |s| {
                    s.image_update_failed(
                        services,
                        format!("image update of {}: {message}", services.join(", ")),
                        rolled_back,
                        &deployed.content_hash,
                        started_at,
                    );
                });
            }
        }
    }

    /// The stack as its last sync left it on disk (files, settings), prepared with the labels
    /// of that sync.
    async fn stage_deployed(
        &self,
        path: &str,
        project: &str,
        compose_file: &str,
        deployed: &Deployed,
    ) -> Result<Staged, SyncError> {
        let dir = self.layout.stacks_dir.join(project);
        let main = compose_file.to_owned();
        let at = dir.clone();
        let (settings, compose_files) =
            tokio::task::spawn_blocking(move || settings_at(&at, &main))
                .await
                .map_err(|e| SyncError::Internal(e.to_string()))??;
        let labels = SyncLabels {
            instance: self.policy.instance.clone(),
            stack_path: path.to_owned(),
            revision: deployed.revision.clone(),
            content_hash: deployed.content_hash.clone(),
            compose_hash: deployed.compose_hash.clone(),
            synced_at: deployed.synced_at.clone(),
            services: Vec::new(),
            depends_on: settings.depends_on.clone(),
        };
        self.prepare(project, dir, compose_file, compose_files, settings, labels)
            .await
    }

    #[tracing::instrument(name = "sync", skip_all, fields(stack = %Untrusted::new(path), project = %project))]
    #[allow(clippy::too_many_arguments)]
    async fn sync(
        &self,
        path: &str,
        project: &str,
        reason: &SyncReason,
        reuse: Option<&Deployed>,
        version: &Version,
        trigger: Reason,
        shutdown: &CancellationToken,
    ) {
        // Outcome events carry stack, commit, trigger and duration themselves (not only
        // through their spans), so log shippers find them as top-level JSON fields.
        tracing::info!(stack = %Untrusted::new(path), commit = %version.revision, %trigger, reason = %Untrusted::bounded(&reason.to_string(), LOG_ERROR_CHARS), "sync started");
        let requested = matches!(reason, SyncReason::Manual | SyncReason::Rollback(_));
        self.store.update_stack(path, |s| {
            if requested {
                s.start_requested_sync();
            } else {
                s.start_sync();
            }
        });
        let started_at = SystemTime::now();
        let Some(attempt) = self
            .apply_version(path, project, version, reuse, shutdown)
            .await
        else {
            return; // shutdown during the health wait: nothing to record
        };
        let finished_at = SystemTime::now();
        let duration = finished_at.duration_since(started_at).unwrap_or_default();
        crate::metrics::sync_finished(
            if attempt.outcome.is_ok() {
                "succeeded"
            } else {
                "failed"
            },
            duration,
        );
        let record = |outcome, why: Option<String>, images| NewDeployment {
            stack: path.to_owned(),
            revision: attempt.deployed.revision.clone(),
            commit_message: version.commit_message.clone(),
            content_hash: version.content_hash.clone(),
            trigger: history_trigger(reason),
            started_at,
            finished_at,
            outcome,
            reason: why,
            images,
            hooks: attempt.hooks.clone(),
        };
        match attempt.outcome {
            Ok(counts) => {
                tracing::info!(stack = %Untrusted::new(path), commit = %version.revision, %trigger, duration_ms = duration.as_millis() as u64, "sync succeeded");
                let images = self.images(project).await;
                self.records
                    .record(record(Outcome::Succeeded, None, images))
                    .await;
                self.store.update_stack(path, |s| {
                    s.succeed(attempt.deployed, started_at);
                    observe(s, counts);
                    let timeout = attempt
                        .settings
                        .health_timeout
                        .unwrap_or(self.settings.health_timeout);
                    if !timeout.is_zero() {
                        s.assess(Health::Healthy, None);
                    }
                });
            }
            Err((message, health)) => {
                tracing::error!(stack = %Untrusted::new(path), commit = %version.revision, %trigger, duration_ms = duration.as_millis() as u64, error = %Untrusted::bounded(&message, LOG_ERROR_CHARS), "sync failed");
                let images = self.images(project).await;
                let back_to = if attempt.applied {
                    self.rollback_target(path, reason, version, &attempt.settings)
                        .await
                } else {
                    None
                };
                let outcome = if back_to.is_some() {
                    Outcome::RolledBack
                } else {
                    Outcome::Failed
                };
                self.records
                    .record(record(outcome, Some(message.clone()), images))
                    .await;
                self.store.update_stack(path, |s| {
                    s.fail(message.clone(), &version.content_hash, started_at);
                    if let Some(health) = health {
                        s.assess(health, Some(message.clone()));
                    }
                });
                if let Some(target) = back_to {
                    self.roll_back(path, project, &target, version, &message, shutdown)
                        .await;
                }
            }
        }
    }

    /// Materialises `version`, runs its `preSync` hooks, applies it, waits for health, then runs
    /// its `postSync` hooks. `None`: shutdown came first.
    async fn apply_version(
        &self,
        path: &str,
        project: &str,
        version: &Version,
        reuse: Option<&Deployed>,
        shutdown: &CancellationToken,
    ) -> Option<Attempt> {
        let now = SystemTime::now();
        // A drift revert keeps the labels (revision, sync time) of the sync it restores.
        let (revision, synced_at) = match reuse {
            Some(d) => (d.revision.clone(), d.synced_at.clone()),
            None => (version.revision.clone(), rfc3339::format(now)),
        };
        let mut hooks = Vec::new();
        let mut settings = StackSettings::default();
        let mut up_ran = false;
        let staged = self
            .stage(path, project, version, &revision, &synced_at)
            .await;
        let applied = match staged {
            Ok(staged) => {
                settings.clone_from(&staged.settings);
                let pre = self
                    .run_hooks(Phase::PreSync, project, &staged, &mut hooks)
                    .await;
                match pre {
                    Ok(()) => {
                        up_ran = true;
                        self.engine
                            .up(&staged.prepared)
                            .await
                            .map(|()| staged)
                            .map_err(SyncError::from)
                    }
                    Err(message) => Err(SyncError::Refused(message)),
                }
            }
            Err(error) => Err(error),
        };
        self.forget_views();
        let timeout = match settings.health_timeout {
            Some(t) => (t, "x-docker-cd.healthTimeout"),
            None => (self.settings.health_timeout, "SYNC_HEALTH_TIMEOUT"),
        };
        let outcome = match applied {
            Ok(staged) => match self.wait_healthy(path, project, timeout, shutdown).await {
                Waited::Healthy(counts) => {
                    let post = self
                        .run_hooks(Phase::PostSync, project, &staged, &mut hooks)
                        .await;
                    match post {
                        Ok(()) => Ok(counts),
                        Err(message) => Err((message, None)),
                    }
                }
                Waited::Interrupted => return None,
                Waited::Unhealthy { health, message } => Err((message, Some(health))),
            },
            Err(error) => Err((truncate(error.render(&self.errors).as_str()), None)),
        };
        let deployed = Deployment {
            commit_message: (revision == version.revision).then(|| version.commit_message.clone()),
            revision,
            content_hash: version.content_hash.clone(),
            compose_hash: version.compose_hash.clone(),
            synced_at: humantime::parse_rfc3339(&synced_at).ok(),
        };
        Some(Attempt {
            deployed,
            outcome,
            hooks,
            settings,
            applied: up_ran,
        })
    }

    /// Runs the hooks of `phase` in order, each recorded in `hooks`; the first that fails (a
    /// non-zero exit, a timeout, compose refusing) stops the others and is the error.
    async fn run_hooks(
        &self,
        phase: Phase,
        project: &str,
        staged: &Staged,
        hooks: &mut Vec<HookRun>,
    ) -> Result<(), String> {
        let list = match phase {
            Phase::PreSync => &staged.settings.hooks.pre_sync,
            Phase::PostSync => &staged.settings.hooks.post_sync,
        };
        for (i, hook) in list.iter().enumerate() {
            let name = format!("{project}-hook-{}-{i}", phase.as_str().to_ascii_lowercase());
            tracing::info!(phase = phase.as_str(), service = %hook.service, "hook started");
            let ran = self
                .engine
                .run_hook(&staged.prepared, &name, &hook.service, &hook.command)
                .await;
            let (exit_code, output, failure) = match ran {
                Ok(out) => {
                    let failure = if out.timed_out {
                        Some("did not finish within COMPOSE_TIMEOUT and was killed".to_owned())
                    } else {
                        match out.exit_code {
                            Some(0) => None,
                            Some(code) => Some(format!("exited with code {code}")),
                            None => Some("was ended by a signal".into()),
                        }
                    };
                    (out.exit_code, out.output, failure)
                }
                Err(error) => {
                    let text = truncate(SyncError::from(error).render(&self.errors).as_str());
                    (None, text.clone(), Some(format!("could not run: {text}")))
                }
            };
            hooks.push(HookRun {
                phase: phase.as_str().to_owned(),
                service: hook.service.clone(),
                exit_code,
                output: tail(&output, HOOK_OUTPUT_BYTES),
            });
            if let Some(failure) = failure {
                tracing::warn!(phase = phase.as_str(), service = %hook.service, "hook failed");
                let consequence = match phase {
                    Phase::PreSync => "; the running version was left as it was",
                    Phase::PostSync => "",
                };
                return Err(format!(
                    "{} hook {} ({}) {failure}{consequence}",
                    phase.as_str(),
                    i + 1,
                    hook.service
                ));
            }
        }
        Ok(())
    }

    /// With `ROLLBACK_ON_FAILURE`, the version a failed sync of a new commit goes back to: the
    /// newest succeeded deployment of other content, as that commit holds the stack.
    async fn rollback_target(
        &self,
        path: &str,
        reason: &SyncReason,
        failed: &Version,
        settings: &StackSettings,
    ) -> Option<Target> {
        let new_commit = matches!(
            reason,
            SyncReason::NotDeployed | SyncReason::ContentChanged { .. } | SyncReason::Retry
        );
        let enabled = settings
            .rollback_on_failure
            .unwrap_or(self.settings.rollback_on_failure);
        if !enabled || !new_commit {
            return None;
        }
        let last =
            self.records.history.list(path).into_iter().find(|d| {
                d.outcome == Outcome::Succeeded && d.content_hash != failed.content_hash
            })?;
        match self.git.stack_at(&last.revision, path).await {
            Ok(StackAt::Found(target)) => Some(target),
            Ok(_) => {
                tracing::warn!(stack = %Untrusted::new(path), revision = %last.revision, "ROLLBACK_ON_FAILURE: the last good commit is not in the mirror any more; not rolled back");
                None
            }
            Err(e) => {
                tracing::warn!(stack = %Untrusted::new(path), error = %crate::error_chain(&e), "ROLLBACK_ON_FAILURE: cannot read the last good commit; not rolled back");
                None
            }
        }
    }

    /// Re-applies `target` after the sync of `failed` failed with `why`, and records it.
    async fn roll_back(
        &self,
        path: &str,
        project: &str,
        target: &Target,
        failed: &Version,
        why: &str,
        shutdown: &CancellationToken,
    ) {
        tracing::warn!(stack = %Untrusted::new(path), to = %target.revision, "ROLLBACK_ON_FAILURE: re-applying the last succeeded deployment");
        let version = Version::held(target);
        let started_at = SystemTime::now();
        let Some(attempt) = self
            .apply_version(path, project, &version, None, shutdown)
            .await
        else {
            return;
        };
        let images = self.images(project).await;
        let (outcome, reason) = match &attempt.outcome {
            Ok(_) => (Outcome::Succeeded, None),
            Err((message, _)) => (Outcome::Failed, Some(message.clone())),
        };
        self.records
            .record(NewDeployment {
                stack: path.to_owned(),
                revision: target.revision.clone(),
                commit_message: target.commit_message.clone(),
                content_hash: target.content_hash.clone(),
                trigger: HistoryTrigger::Rollback,
                started_at,
                finished_at: SystemTime::now(),
                outcome,
                reason,
                images,
                hooks: attempt.hooks.clone(),
            })
            .await;
        match attempt.outcome {
            Ok(counts) => {
                tracing::warn!(stack = %Untrusted::new(path), to = %target.revision, "rolled back; held there until a newer commit");
                self.store.update_stack(path, |s| {
                    s.roll_back(
                        attempt.deployed,
                        target.clone(),
                        &failed.content_hash,
                        why,
                        started_at,
                    );
                    observe(s, counts);
                });
            }
            Err((message, _)) => {
                tracing::error!(stack = %Untrusted::new(path), to = %target.revision, error = %Untrusted::bounded(&message, LOG_ERROR_CHARS), "the rollback failed too");
                self.store.update_stack(path, |s| {
                    s.fail(
                        format!(
                            "{why}; the rollback to {} failed too: {message}",
                            target.revision
                        ),
                        &failed.content_hash,
                        started_at,
                    );
                });
            }
        }
    }

    /// The images the project runs now, for the history (what the engine says; empty when it
    /// cannot be read).
    async fn images(&self, project: &str) -> Vec<DeployedImage> {
        match self.engine.images(project).await {
            Ok(images) => images
                .into_iter()
                .map(|i| DeployedImage {
                    service: i.service,
                    image: i.image,
                    image_id: i.image_id,
                })
                .collect(),
            Err(e) => {
                tracing::debug!(error = %crate::error_chain(&e), "cannot read the images of {project}");
                Vec::new()
            }
        }
    }

    /// After `up`: waits until the stack is healthy, cannot get better by itself, or
    /// `SYNC_HEALTH_TIMEOUT` passed, showing it `progressing` meanwhile. Without a timeout,
    /// one look for the runtime counts, and done.
    async fn wait_healthy(
        &self,
        path: &str,
        project: &str,
        (timeout, setting): (Duration, &str),
        shutdown: &CancellationToken,
    ) -> Waited {
        if timeout.is_zero() {
            let Ok(look) = self.watch.look(project).await else {
                return Waited::Healthy(Counts::default());
            };
            let a = look.assessment;
            self.store
                .update_stack(path, |s| s.assess(a.health, a.message));
            return Waited::Healthy(look.counts);
        }
        let _waiting = self.watch.wait_for(project);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = format!("{project}: no answer from the engine yet");
        loop {
            let look = self.watch.look(project).await;
            self.forget_views();
            match look {
                Ok(look) => {
                    let a = look.assessment;
                    if a.health == Health::Healthy {
                        return Waited::Healthy(look.counts);
                    }
                    last = a
                        .message
                        .clone()
                        .unwrap_or_else(|| format!("{project}: {}", a.health.as_str()));
                    if a.settled {
                        return Waited::Unhealthy {
                            health: Health::Degraded,
                            message: last,
                        };
                    }
                    self.store.update_stack(path, |s| {
                        observe(s, look.counts);
                        s.assess(Health::Progressing, a.message);
                    });
                }
                Err(error) => {
                    last = format!("cannot read the Docker host: {error}");
                    self.store.update_stack(path, |s| {
                        s.assess(Health::Unknown, Some(last.clone()));
                    });
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Waited::Unhealthy {
                    health: Health::Degraded,
                    message: format!(
                        "{last} (not healthy within {setting}={})",
                        humantime::format_duration(timeout)
                    ),
                };
            }
            let pause = super::watch::POLL.min(deadline - now);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => return Waited::Interrupted,
            }
        }
    }

    /// Materialises the stack at the commit, reads its settings there, and lets the engine
    /// prepare it (list services, write the label override).
    async fn stage(
        &self,
        path: &str,
        project: &str,
        version: &Version,
        revision: &str,
        synced_at: &str,
    ) -> Result<Staged, SyncError> {
        let mut files = self.git.read_stack_files(&version.revision, path).await?;
        let stacks_dir = self.layout.stacks_dir.clone();
        let name = project.to_owned();
        let main = version.compose_file.clone();
        let identities = self.identities.clone();
        let (dir, settings, compose_files) = tokio::task::spawn_blocking(move || {
            // SOPS files become their plaintext here, written 0600; nothing else sees it.
            let decrypted = secrets::decrypt(&mut files, &identities)
                .map_err(|e| SyncError::Refused(crate::error_chain(&e)))?;
            if !decrypted.is_empty() {
                tracing::debug!(files = decrypted.len(), "SOPS files decrypted");
            }
            let dir = materialise::materialise(&stacks_dir, &name, &files)?;
            let (settings, compose_files) = settings_at(&dir, &main)?;
            Ok::<_, SyncError>((dir, settings, compose_files))
        })
        .await
        .map_err(|e| SyncError::Internal(e.to_string()))??;
        if !settings.hooks.is_empty() {
            self.engine.check_hooks().map_err(SyncError::from)?;
        }
        let labels = SyncLabels {
            instance: self.policy.instance.clone(),
            stack_path: path.to_owned(),
            revision: revision.to_owned(),
            content_hash: version.content_hash.clone(),
            compose_hash: version.compose_hash.clone().unwrap_or_default(),
            synced_at: synced_at.to_owned(),
            // Filled in by the engine, from its own reading of the compose file.
            services: Vec::new(),
            depends_on: settings.depends_on.clone(),
        };
        self.prepare(
            project,
            dir,
            &version.compose_file,
            compose_files,
            settings,
            labels,
        )
        .await
    }

    /// Lets the engine prepare the stack materialised in `dir` (list its services, write the
    /// label override) with its files and settings.
    async fn prepare(
        &self,
        project: &str,
        dir: std::path::PathBuf,
        compose_file: &str,
        compose_files: Vec<String>,
        settings: StackSettings,
        labels: SyncLabels,
    ) -> Result<Staged, SyncError> {
        let files = StackFiles {
            name: project.to_owned(),
            dir,
            compose_file: compose_file.to_owned(),
            extra_files: compose_files.into_iter().skip(1).collect(),
            profiles: settings.profiles.clone(),
            override_file: None,
        };
        let override_file = self.layout.overrides_dir.join(format!("{project}.json"));
        let prepared = self.engine.prepare(files, labels, override_file).await?;
        Ok(Staged { prepared, settings })
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
        match result {
            Ok(()) => {
                tracing::info!("stack removed");
                let _ = std::fs::remove_dir_all(&dir);
                let _ = std::fs::remove_file(&override_file);
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
}

/// The settings of the stack materialised in `dir` (read from its compose file `main`, as the
/// refresh reads them) and its compose files in merge order, each checked like the compose
/// file itself: inside the stack directory through no symbolic link, a regular file, and no
/// larger than [`MAX_COMPOSE_FILE_BYTES`].
fn settings_at(dir: &Path, main: &str) -> Result<(StackSettings, Vec<String>), SyncError> {
    let raw = std::fs::read(dir.join(main))
        .map_err(|e| SyncError::Internal(format!("cannot read {main}: {e}")))?;
    let read = settings::read(&raw);
    if let Some(error) = read.error {
        return Err(SyncError::Refused(format!("{main}: {error}")));
    }
    let settings = read.settings;
    let files = if settings.files.is_empty() {
        vec![main.to_owned()]
    } else {
        settings.files.clone()
    };
    if files[0] != main {
        return Err(SyncError::Refused(format!(
            "{main}: x-docker-cd.files must start with {main}, the file that holds the settings (it lists {})",
            files[0]
        )));
    }
    for file in &files[1..] {
        check_compose_file(dir, file).map_err(|why| {
            SyncError::Refused(format!("{main}: x-docker-cd.files: {file} {why}"))
        })?;
    }
    Ok((settings, files))
}

/// Why `file` (relative to `dir`) cannot be a compose file of the stack, if it cannot.
fn check_compose_file(dir: &Path, file: &str) -> Result<(), String> {
    let mut at = dir.to_owned();
    let parts: Vec<&str> = file.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        let meta = match std::fs::symlink_metadata(&at) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err("is not in the stack directory at this commit".into());
            }
            Err(e) => return Err(format!("cannot be read: {e}")),
        };
        if meta.file_type().is_symlink() {
            return Err(
                "is (or is under) a symbolic link; compose files must be regular files".into(),
            );
        }
        let last = i + 1 == parts.len();
        if last && !meta.is_file() {
            return Err("is not a regular file".into());
        }
        if last && meta.len() > MAX_COMPOSE_FILE_BYTES {
            return Err(format!(
                "is {} bytes, over the limit of {MAX_COMPOSE_FILE_BYTES} bytes",
                meta.len()
            ));
        }
    }
    Ok(())
}

/// The last `limit` bytes of `text`, cut at a character boundary.
fn tail(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

/// The health every job's watcher shares.
pub(super) fn watch(engine: &Arc<crate::engine::Engine>) -> Arc<HealthWatch> {
    Arc::new(HealthWatch::new(engine.clone()))
}
