//! What an operator controls (SPEC §10): sync now, rollback and pin, unpin, suspend and resume,
//! and the durable record of every deployment.
//!
//! - Every change is written to disk first ([`Controls`], under `DATA_DIR/history`), then
//!   applied to the stack's sync state through a named transition, then a reconcile is asked
//!   for: what an answer says was done survives a `kill -9` right after it.
//! - The reconcile loop puts persisted controls back on the stacks they name
//!   ([`Reconciler::restore_controls`]): after a restart, and for a stack that comes back into
//!   Git. A pinned commit is looked up in the mirror once and remembered.
//! - [`Records`] is what the jobs write the history through.
//!
//! Workflow layer; part of the reconciler. Uses: history (the log and the controls), git
//! (a stack at a commit), desired_state (transitions).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::diff::{ServicePlan, in_sync, plan_services};
use super::{Reason, ReconcileHandle, Reconciler};
use crate::desired_state::store::Store;
use crate::desired_state::{SyncInfo, Target};
use crate::engine::Actual;
use crate::git::{FileDiff, GitError, StackAt};
use crate::history::{Controls, Deployment, History, HistoryError, NewDeployment};
use crate::untrusted::Untrusted;

/// Why an operator's request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no stack {0:?}")]
    UnknownStack(String),
    #[error("stack {0:?} is no longer in Git")]
    NotInGit(String),
    #[error("stack {0:?} is suspended; resume it first")]
    Suspended(String),
    #[error(
        "stack {0:?} is suspended in Git (x-docker-cd.suspend: true); commit its removal to sync it again"
    )]
    SuspendedInGit(String),
    #[error("no commit {0:?} in the mirror")]
    NoCommit(String),
    #[error("stack {path:?} does not exist at commit {revision}")]
    NoStackAt { path: String, revision: String },
    #[error("stack {0:?} has no earlier succeeded deployment of another commit to roll back to")]
    NothingToRollBackTo(String),
    #[error(
        "the deployed commit {0} is not in the mirror any more (the branch was rewritten?); sync the stack to compare again"
    )]
    DeployedCommitGone(String),
    #[error("cannot read the Docker host: {0}")]
    Engine(String),
    #[error("cannot read the mirror")]
    Git(#[from] GitError),
    #[error("cannot record it")]
    Store(#[from] HistoryError),
}

/// `GET /api/stacks/{path}/diff` (SPEC §10).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackDiff {
    /// The deployed commit (from the labels), `None` when nothing is deployed.
    pub from: Option<String>,
    /// The desired commit: the snapshot's, or the pin's.
    pub to: String,
    pub in_sync: bool,
    pub files: Vec<FileDiff>,
    pub services: Vec<ServicePlan>,
}

/// The durable records: deployments and controls.
#[derive(Debug)]
pub struct Records {
    pub history: History,
    pub controls: Controls,
    /// Where a new record is announced (`stack.history`), once it is on disk.
    store: Arc<Store>,
    /// Pinned commits already looked up, by (stack, revision).
    targets: Mutex<HashMap<(String, String), Target>>,
}

impl Records {
    pub fn new(history: History, controls: Controls, store: Arc<Store>) -> Self {
        Self {
            history,
            controls,
            store,
            targets: Mutex::default(),
        }
    }

    /// Appends one deployment, off the async threads (one `fdatasync`), then announces it on
    /// the event stream. A failure is logged: the sync itself happened, and its state is in
    /// the stack record either way.
    pub async fn record(self: &Arc<Self>, deployment: NewDeployment) {
        let me = self.clone();
        let stack = deployment.stack.clone();
        let written = tokio::task::spawn_blocking(move || me.history.append(deployment)).await;
        match written {
            Ok(Ok(deployment)) => {
                // A struct of strings, numbers and lists: serialising cannot fail.
                if let Ok(value) = serde_json::to_value(&deployment) {
                    self.store.publish_history(&stack, value);
                }
            }
            Ok(Err(e)) => {
                tracing::error!(stack = %Untrusted::new(&stack), error = %crate::error_chain(&e), "cannot record the deployment in the history")
            }
            Err(e) => tracing::error!(error = %e, "cannot record the deployment in the history"),
        }
    }

    fn remembered(&self, stack: &str, revision: &str) -> Option<Target> {
        self.lock()
            .get(&(stack.to_owned(), revision.to_owned()))
            .cloned()
    }

    fn remember(&self, stack: &str, target: &Target) {
        self.lock()
            .insert((stack.to_owned(), target.revision.clone()), target.clone());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Target>> {
        self.targets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ReconcileHandle {
    fn in_git(&self, path: &str) -> Result<SyncInfo, ControlError> {
        let record = self
            .store
            .stack(path)
            .ok_or_else(|| ControlError::UnknownStack(path.to_owned()))?;
        if !record.in_git {
            return Err(ControlError::NotInGit(path.to_owned()));
        }
        Ok(record.sync)
    }

    /// Sync now, even when in sync (trigger `manual`).
    pub fn sync_now(&self, path: &str) -> Result<(), ControlError> {
        let sync = self.in_git(path)?;
        if sync.suspended {
            return Err(ControlError::Suspended(path.to_owned()));
        }
        if sync.suspended_in_git {
            return Err(ControlError::SuspendedInGit(path.to_owned()));
        }
        self.store.update_stack(path, SyncInfo::request_sync);
        self.request(Reason::Operator);
        Ok(())
    }

    /// Deploys the stack as it was at `revision` (default: the newest succeeded deployment of
    /// another commit than the one running) and pins it there.
    pub async fn rollback(
        &self,
        path: &str,
        revision: Option<&str>,
    ) -> Result<Target, ControlError> {
        let sync = self.in_git(path)?;
        if sync.suspended {
            return Err(ControlError::Suspended(path.to_owned()));
        }
        if sync.suspended_in_git {
            return Err(ControlError::SuspendedInGit(path.to_owned()));
        }
        let revision = match revision {
            Some(revision) => revision.to_owned(),
            None => {
                let running = sync.synced_revision.clone().unwrap_or_default();
                self.records
                    .history
                    .previous_succeeded(path, &running)
                    .map(|d| d.revision)
                    .ok_or_else(|| ControlError::NothingToRollBackTo(path.to_owned()))?
            }
        };
        let target = match self.git.stack_at(&revision, path).await? {
            StackAt::NoCommit => return Err(ControlError::NoCommit(revision)),
            StackAt::NoStack { revision } => {
                return Err(ControlError::NoStackAt {
                    path: path.to_owned(),
                    revision,
                });
            }
            StackAt::Found(target) => target,
        };
        let records = self.records.clone();
        let (stack, pinned) = (path.to_owned(), target.revision.clone());
        tokio::task::spawn_blocking(move || records.controls.pin(&stack, &pinned))
            .await
            .map_err(|e| HistoryError::Io {
                op: "write the controls of",
                path: path.into(),
                source: std::io::Error::other(e.to_string()),
            })??;
        self.records.remember(path, &target);
        tracing::info!(stack = %Untrusted::new(path), revision = %target.revision, "rollback asked for; the stack is pinned there");
        self.store.update_stack(path, |s| s.pin(target.clone()));
        self.request(Reason::Operator);
        Ok(target)
    }

    /// Ends a pin: the stack follows Git again.
    pub fn unpin(&self, path: &str) -> Result<(), ControlError> {
        self.in_git(path)?;
        self.records.controls.unpin(path)?;
        tracing::info!(stack = %Untrusted::new(path), "unpinned; the stack follows Git again");
        self.store.update_stack(path, SyncInfo::unpin);
        self.request(Reason::Operator);
        Ok(())
    }

    /// Suspends the stack: never synced, reverted or removed until resumed.
    pub fn suspend(&self, path: &str) -> Result<(), ControlError> {
        self.store
            .stack(path)
            .ok_or_else(|| ControlError::UnknownStack(path.to_owned()))?;
        self.records.controls.suspend(path)?;
        tracing::info!(stack = %Untrusted::new(path), "suspended");
        self.store.update_stack(path, SyncInfo::suspend);
        Ok(())
    }

    /// Ends a suspension; the next reconcile syncs what differs.
    /// A stack only Git suspends cannot be resumed here (409).
    pub fn resume(&self, path: &str) -> Result<(), ControlError> {
        let record = self
            .store
            .stack(path)
            .ok_or_else(|| ControlError::UnknownStack(path.to_owned()))?;
        if record.sync.suspended_in_git && !record.sync.suspended {
            return Err(ControlError::SuspendedInGit(path.to_owned()));
        }
        self.records.controls.resume(path)?;
        tracing::info!(stack = %Untrusted::new(path), "resumed");
        self.store.update_stack(path, SyncInfo::resume);
        self.request(Reason::Operator);
        Ok(())
    }

    /// What a sync of the stack would change (SPEC §10): its files between the deployed
    /// commit and the desired one (the pin's, when held), and each service against what runs.
    /// Files are read from Git's blobs: a SOPS file shows as committed, encrypted.
    pub async fn diff(&self, path: &str) -> Result<StackDiff, ControlError> {
        let record = self.in_git(path)?;
        let snapshot = self
            .store
            .snapshot()
            .ok_or_else(|| ControlError::UnknownStack(path.to_owned()))?;
        let desired = snapshot
            .stacks
            .get(path)
            .ok_or_else(|| ControlError::NotInGit(path.to_owned()))?;
        let held = record
            .hold
            .as_ref()
            .filter(|h| h.applies(&desired.content_hash))
            .map(|h| &h.target);
        let (to, content_hash, compose_file) = match held {
            Some(t) => (
                t.revision.clone(),
                t.content_hash.clone(),
                t.compose_file.clone(),
            ),
            None => (
                snapshot.revision.clone(),
                desired.content_hash.clone(),
                desired.compose_file.clone(),
            ),
        };
        let from = record.synced_revision.clone();
        let files = self
            .git
            .diff_stack(from.as_deref(), &to, path)
            .await
            .map_err(|e| match (&e, &from) {
                (GitError::MissingObject(id), Some(from)) if id == from => {
                    ControlError::DeployedCommitGone(from.clone())
                }
                _ => ControlError::Git(e),
            })?;
        let compose = self.git.stack_file_at(&to, path, &compose_file).await?;
        let desired_services = compose
            .as_deref()
            .and_then(crate::stack::compose_file::services)
            .map(|s| s.names);
        let actual = self
            .engine
            .read()
            .await
            .map_err(|e| ControlError::Engine(crate::error_chain(&e)))?;
        let project = desired.project_name.as_deref().unwrap_or_default();
        let services = match &actual {
            Actual::Containers(all) => {
                let mine: Vec<_> = all
                    .iter()
                    .filter(|c| c.project == project)
                    .cloned()
                    .collect();
                plan_services(desired_services.as_deref(), &content_hash, &mine)
            }
            Actual::Services(all) => {
                let mine: Vec<_> = all.iter().filter(|s| s.stack == project).cloned().collect();
                plan_services(desired_services.as_deref(), &content_hash, &mine)
            }
        };
        Ok(StackDiff {
            in_sync: in_sync(&files, &services),
            from,
            to,
            files,
            services,
        })
    }

    /// The stack's deployments, newest first.
    pub fn history(&self, path: &str) -> Result<Vec<Deployment>, ControlError> {
        self.store
            .stack(path)
            .ok_or_else(|| ControlError::UnknownStack(path.to_owned()))?;
        Ok(self.records.history.list(path))
    }
}

impl Reconciler {
    /// Puts the persisted controls back on the stacks of the cache that lack them.
    pub(super) async fn restore_controls(&self) {
        let controls = self.records.controls.all();
        for (path, control) in controls.iter() {
            let Some(record) = self.store.stack(path) else {
                continue;
            };
            if control.suspended && !record.sync.suspended {
                self.store.update_stack(path, SyncInfo::suspend);
            }
            let Some(revision) = &control.pinned_revision else {
                continue;
            };
            if record.sync.pinned_revision.as_ref() == Some(revision) && record.sync.hold.is_some()
            {
                continue;
            }
            let target = match self.records.remembered(path, revision) {
                Some(target) => Some(target),
                None => match self.git.stack_at(revision, path).await {
                    Ok(StackAt::Found(target)) => {
                        self.records.remember(path, &target);
                        Some(target)
                    }
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(stack = %Untrusted::new(path), error = %crate::error_chain(&e), "cannot read the pinned commit; retried on the next reconcile");
                        continue;
                    }
                },
            };
            match target {
                Some(target) => self.store.update_stack(path, |s| s.restore_pin(target)),
                None => self.store.update_stack(path, |s| s.lose_pin(revision)),
            };
        }
    }
}
