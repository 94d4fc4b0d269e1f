//! A census of the cache: every stack's status and health, the snapshot being served and the
//! refresh state, counted at one moment ([`super::Store::census`] takes it under the store's
//! one lock, so a census never mixes two snapshots).
//!
//! Plain values of this module's own types: whoever reports on the cache (the edge, which
//! turns a census into the metrics' state for `GET /metrics`) needs nothing else of the store,
//! and the store needs nothing of its readers.
//!
//! Foundation layer, part of [`super`]: uses only its siblings' types.

use std::time::SystemTime;

use super::{Health, RefType, StackStatus};

/// What the cache holds, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Every stack the cache tracks (those in the snapshot and those gone from Git that are
    /// still on the host), by path.
    pub stacks: Vec<StackCensus>,
    /// The snapshot being served, once there is one.
    pub snapshot: Option<SnapshotCensus>,
    /// Stacks in that snapshot.
    pub stack_count: usize,
    pub last_success_at: Option<SystemTime>,
    /// Refreshes that failed in a row since the last success.
    pub consecutive_failures: u32,
    /// A refresh is running.
    pub refreshing: bool,
}

/// One stack of a [`Census`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackCensus {
    pub path: String,
    pub status: StackStatus,
    pub health: Health,
}

/// The snapshot of a [`Census`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotCensus {
    /// Its commit id.
    pub revision: String,
    /// The full ref name (or the commit id for a pinned commit).
    pub git_ref: String,
    pub ref_type: RefType,
}
