//! Each stack's sync history of this run: a bounded list of the statuses it reached
//! ([`SyncHistoryEntry`], at most [`HISTORY_PER_STACK`] per stack), recorded by the store as the
//! reconciler changes them. Nothing of it survives a restart.
//!
//! Uses: the desired state's types only; the store holds it under its lock.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use super::{StackStatus, SyncInfo};

/// How many history entries each stack keeps; older ones are dropped first.
pub const HISTORY_PER_STACK: usize = 50;

/// One entry of a stack's sync history: a status it reached, when, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncHistoryEntry {
    pub at: SystemTime,
    pub status: StackStatus,
    /// The status before: for the outcome of a sync, the status before the sync started.
    pub previous: StackStatus,
    /// The commit the stack runs after this change, as far as docker-cd knows.
    pub synced_revision: Option<String>,
    /// The commit of the snapshot at that moment: what Git asked for.
    pub git_revision: Option<String>,
    /// How long the sync that ended with this entry ran.
    pub duration: Option<Duration>,
    /// The error (`failed`, `orphaned`) or the drift (`drifted`).
    pub message: Option<String>,
}

/// A stack's history: newest last, at most [`HISTORY_PER_STACK`] entries.
#[derive(Debug, Default)]
pub(super) struct History {
    pub(super) entries: VecDeque<SyncHistoryEntry>,
    /// When the running sync started (the stack entered `syncing`), and the status before it.
    syncing_since: Option<(SystemTime, StackStatus)>,
}

impl History {
    /// Records the change from `before` to `after`, if it is one worth keeping: a new status
    /// other than `syncing`, or a new error while `failed`. (A drift message changes while the
    /// stack stays `drifted`: it quotes the engine's "Exited (1) 8 seconds ago".) Entering
    /// `syncing` only starts the clock for the entry that ends the sync.
    pub(super) fn record(
        &mut self,
        before: &SyncInfo,
        after: &SyncInfo,
        git_revision: Option<&str>,
        now: SystemTime,
    ) {
        if after.status == StackStatus::Syncing {
            if before.status != StackStatus::Syncing {
                self.syncing_since = Some((now, before.status));
            }
            return;
        }
        let message = history_message(after);
        let new_error = after.status == StackStatus::Failed && message != history_message(before);
        if after.status == before.status && !new_error {
            return;
        }
        // A sync's outcome is shown against the status the stack had before the sync.
        let (previous, duration) = match (before.status, self.syncing_since.take()) {
            (StackStatus::Syncing, Some((since, previous))) => {
                (previous, now.duration_since(since).ok())
            }
            (previous, _) => (previous, None),
        };
        if self.entries.len() == HISTORY_PER_STACK {
            self.entries.pop_front();
        }
        self.entries.push_back(SyncHistoryEntry {
            at: now,
            status: after.status,
            previous,
            synced_revision: after.synced_revision.clone(),
            git_revision: git_revision.map(str::to_owned),
            duration,
            message: message.map(str::to_owned),
        });
    }
}

/// What a history entry says about a status: the error or the drift.
pub(super) fn history_message(sync: &SyncInfo) -> Option<&str> {
    match sync.status {
        StackStatus::Failed | StackStatus::Orphaned => sync.last_sync_error.as_deref(),
        StackStatus::Drifted => sync.drift.as_deref(),
        _ => None,
    }
}
