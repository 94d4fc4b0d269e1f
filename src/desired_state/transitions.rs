//! The named transitions of a stack's sync state ([`SyncInfo`]): the only ways the reconciler
//! changes it. Each keeps its invariants here, in one place, instead of in a closure that
//! writes fields one by one at its call site:
//!
//! - a sync that succeeded or a deployment recognised from its labels clears every failure,
//!   drift and pending acknowledgement;
//! - a failed sync counts consecutive failures of the same content only (a new commit starts
//!   again at one), which is what the retry backoff reads;
//! - a sync's outcome (`lastSyncAt`, `lastSyncStatus`) is written only by a sync or a removal
//!   that ran, never by a decision that ran nothing.
//!
//! Pure: no clock, no store; the caller passes the time and applies a transition through
//! [`super::Store::update_stack`] or [`super::Store::upsert_gone`], which publish the change.
//!
//! Foundation. Uses: nothing beyond this module's parent.

use std::time::SystemTime;

use super::{Health, Hold, ImageStatus, Request, StackStatus, SyncInfo, SyncOutcome, Target};

/// What runs on the host after a sync, or what its labels say was deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The commit the stack was applied from.
    pub revision: String,
    /// That commit's message, when it is known (it is the snapshot's commit).
    pub commit_message: Option<String>,
    pub content_hash: String,
    pub compose_hash: Option<String>,
    /// When it was applied, if the labels say so (parsed from `com.docker-cd.synced-at`).
    pub synced_at: Option<SystemTime>,
}

impl SyncInfo {
    /// The operator acknowledged the drift of a `drifted` stack: re-apply it once.
    pub fn acknowledge(&mut self) {
        self.ack_requested = true;
    }

    /// The runtime counts of the stack's containers (tasks, in swarm mode).
    pub fn observe(&mut self, running: u32, total: u32) {
        self.containers_running = running;
        self.containers_total = total;
    }

    /// The engine's latest word on the stack's health, with why (`None` when healthy).
    /// A suspended stack stays `suspended`, whatever a reading begun before the suspension says.
    pub fn assess(&mut self, health: Health, message: Option<String>) {
        if self.suspended || self.suspended_in_git {
            return;
        }
        self.health = health;
        self.health_message = message;
    }

    /// The stack cannot be applied (an error in Git, a foreign project, an unreadable host);
    /// nothing ran, so the last sync's outcome stays as it was.
    pub fn refuse(&mut self, reason: String) {
        self.status = StackStatus::Failed;
        self.last_sync_error = Some(reason);
    }

    /// Drift under `DRIFT_POLICY=flag`: wait for an acknowledgement.
    pub fn drift(&mut self, what: String) {
        self.status = StackStatus::Drifted;
        self.drift = Some(what);
    }

    /// A stack gone from Git and left running, with why it is left.
    pub fn orphan(&mut self, reason: &str) {
        self.status = StackStatus::Orphaned;
        self.last_sync_error = Some(reason.to_owned());
    }

    /// A sync (compose `up`, `stack deploy`) starts.
    pub fn start_sync(&mut self) {
        self.status = StackStatus::Syncing;
        self.blocked_by = None;
    }

    /// A sync the operator asked for (sync now, rollback) starts: the request is spent. A sync
    /// of another cause leaves a request made meanwhile for the next plan.
    pub fn start_requested_sync(&mut self) {
        self.status = StackStatus::Syncing;
        self.requested = None;
        self.blocked_by = None;
    }

    /// The sync that ran at `at` succeeded: `deployed` runs now. Without a time from the
    /// labels, `synced_at` is `at`.
    pub fn succeed(&mut self, deployed: Deployment, at: SystemTime) {
        self.status = StackStatus::Synced;
        self.set_deployed(deployed, Some(at));
        self.last_sync_at = Some(at);
        self.last_sync_status = Some(SyncOutcome::Succeeded);
        self.last_sync_error = None;
        self.clear_trouble();
        // What the last image check found is about the containers this sync replaced.
        self.images.clear();
        self.images_checked_at = None;
    }

    /// The host already runs `deployed` (its labels say so): `synced` without a sync. The last
    /// sync's outcome stays; its error is dropped unless that sync succeeded (then there is
    /// none anyway).
    pub fn recognise(&mut self, deployed: Deployment) {
        self.status = StackStatus::Synced;
        let previous = self.synced_at;
        self.set_deployed(deployed, previous);
        if self.last_sync_status != Some(SyncOutcome::Succeeded) {
            self.last_sync_error = None;
        }
        self.clear_trouble();
    }

    /// The sync of `content_hash` that ran at `at` failed with `error`. Failures of the same
    /// content in a row are counted (the backoff grows with them); other content starts at one.
    pub fn fail(&mut self, error: String, content_hash: &str, at: SystemTime) {
        self.status = StackStatus::Failed;
        self.last_sync_at = Some(at);
        self.last_sync_status = Some(SyncOutcome::Failed);
        self.last_sync_error = Some(error);
        if self.failed_content_hash.as_deref() == Some(content_hash) {
            self.consecutive_failures += 1;
        } else {
            self.failed_content_hash = Some(content_hash.to_owned());
            self.consecutive_failures = 1;
        }
        self.ack_requested = false;
    }

    /// The operator holds the stack at `target` (a rollback): automatic syncs stop until
    /// [`SyncInfo::unpin`]; the pinned version is applied once.
    pub fn pin(&mut self, target: Target) {
        self.pinned_revision = Some(target.revision.clone());
        self.hold = Some(Hold {
            target,
            rolled_back_from: None,
        });
        self.requested = Some(Request::Rollback);
    }

    /// The pin (or an automatic rollback's hold) ends: the snapshot's version applies again.
    pub fn unpin(&mut self) {
        self.pinned_revision = None;
        self.hold = None;
    }

    /// A pin restored at start-up from what was persisted: held, nothing requested (the host
    /// may already run it; the plan decides).
    pub fn restore_pin(&mut self, target: Target) {
        self.pinned_revision = Some(target.revision.clone());
        self.hold = Some(Hold {
            target,
            rolled_back_from: None,
        });
    }

    /// A persisted pin whose commit is not in the mirror (any more): the stack stays pinned,
    /// and is failed by the plan until the operator unpins it or rolls back elsewhere.
    pub fn lose_pin(&mut self, revision: &str) {
        self.pinned_revision = Some(revision.to_owned());
        self.hold = None;
    }

    /// The sync of content `failed` failed and `target` (the last good version) was applied
    /// again (`deployed` runs now): the stack is `failed` with why, and held at `target` until
    /// Git says something other than `failed`.
    pub fn roll_back(
        &mut self,
        deployed: Deployment,
        target: Target,
        failed: &str,
        reason: &str,
        at: SystemTime,
    ) {
        let message = format!("rolled back to {}: {reason}", short(&target.revision));
        self.set_deployed(deployed, Some(at));
        self.hold = Some(Hold {
            target,
            rolled_back_from: Some(failed.to_owned()),
        });
        self.status = StackStatus::Failed;
        self.last_sync_at = Some(at);
        self.last_sync_status = Some(SyncOutcome::Failed);
        self.last_sync_error = Some(message);
        self.failed_content_hash = Some(failed.to_owned());
        self.consecutive_failures = self.consecutive_failures.max(1);
    }

    /// What an image-update check found (SPEC §12). An update that failed for a digest stays
    /// marked failed while the registry still says that digest.
    pub fn images_checked(&mut self, mut images: Vec<ImageStatus>, at: SystemTime) {
        for image in &mut images {
            image.update_failed = self.images.iter().any(|old| {
                old.service == image.service
                    && old.update_failed
                    && old.latest_digest.is_some()
                    && old.latest_digest == image.latest_digest
            });
        }
        self.images = images;
        self.images_checked_at = Some(at);
    }

    /// The image update of `services` that ran at `at` succeeded: they run the registry's
    /// digest now.
    pub fn images_updated(&mut self, services: &[String], at: SystemTime) {
        self.status = StackStatus::Synced;
        self.last_sync_at = Some(at);
        self.last_sync_status = Some(SyncOutcome::Succeeded);
        self.last_sync_error = None;
        for image in self
            .images
            .iter_mut()
            .filter(|i| services.contains(&i.service))
        {
            image.digest.clone_from(&image.latest_digest);
            image.update_available = false;
            image.update_failed = false;
        }
    }

    /// The image update of `services` failed with `error`: not tried again for these digests.
    /// `rolled_back`: the previous images run again, and the stack is `synced` on them;
    /// otherwise it failed like any sync.
    pub fn image_update_failed(
        &mut self,
        services: &[String],
        error: String,
        rolled_back: bool,
        content_hash: &str,
        at: SystemTime,
    ) {
        for image in self
            .images
            .iter_mut()
            .filter(|i| services.contains(&i.service))
        {
            image.update_failed = true;
        }
        if rolled_back {
            self.status = StackStatus::Synced;
            self.last_sync_at = Some(at);
            self.last_sync_status = Some(SyncOutcome::Failed);
            self.last_sync_error = Some(error);
        } else {
            self.fail(error, content_hash, at);
        }
    }

    /// The operator suspended the stack: nothing is synced, reverted or removed.
    pub fn suspend(&mut self) {
        self.suspended = true;
        self.health = Health::Suspended;
        self.health_message = None;
    }

    /// The suspension ends; the next reconcile syncs what differs.
    pub fn resume(&mut self) {
        self.suspended = false;
        if !self.suspended_in_git {
            self.health = Health::Unknown;
        }
    }

    /// What Git says of the stack at this reconcile: whether its settings suspend it, and why
    /// an automatic sync of it waits (`None`: nothing holds it back).
    pub fn gate(&mut self, suspended_in_git: bool, blocked_by: Option<String>) {
        if suspended_in_git != self.suspended_in_git {
            self.suspended_in_git = suspended_in_git;
            if suspended_in_git {
                self.health = Health::Suspended;
                self.health_message = Some("suspended in Git (x-docker-cd.suspend: true)".into());
            } else if !self.suspended {
                self.health = Health::Unknown;
                self.health_message = None;
            }
        }
        self.blocked_by = blocked_by;
    }

    /// The operator asked for a sync now, even in sync.
    pub fn request_sync(&mut self) {
        self.requested = Some(Request::Sync);
    }

    /// The removal of a stack gone from Git starts (compose `down`, `stack rm`).
    pub fn start_removal(&mut self) {
        self.status = StackStatus::Deleting;
    }

    /// The removal that ran at `at` failed with `error`: the stack stays listed, orphaned.
    pub fn fail_removal(&mut self, error: String, at: SystemTime) {
        self.status = StackStatus::Orphaned;
        self.last_sync_error = Some(error);
        self.last_sync_at = Some(at);
        self.last_sync_status = Some(SyncOutcome::Failed);
    }

    /// Records what runs; `synced_at` falls back to `fallback` when the labels hold no time.
    fn set_deployed(&mut self, deployed: Deployment, fallback: Option<SystemTime>) {
        if let Some(message) = deployed.commit_message {
            self.synced_commit_message = Some(message);
        }
        self.synced_revision = Some(deployed.revision);
        self.synced_content_hash = Some(deployed.content_hash);
        self.synced_compose_hash = deployed.compose_hash;
        self.synced_at = deployed.synced_at.or(fallback);
    }

    /// What runs is what Git says: no drift, no failure count, no pending acknowledgement,
    /// and no automatic rollback's hold (an operator's pin stays).
    fn clear_trouble(&mut self) {
        if self
            .hold
            .as_ref()
            .is_some_and(|h| h.rolled_back_from.is_some())
        {
            self.hold = None;
        }
        self.drift = None;
        self.failed_content_hash = None;
        self.consecutive_failures = 0;
        self.ack_requested = false;
    }
}

/// The first 12 characters of a commit id, for messages.
fn short(revision: &str) -> &str {
    revision.get(..12).unwrap_or(revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn git_suspends_and_releases_a_stack_and_the_operator_suspension_outlasts_it() {
        let mut s = SyncInfo::new(StackStatus::Synced);
        s.assess(Health::Healthy, None);
        s.gate(true, None);
        assert!(s.suspended_in_git);
        assert_eq!(s.health, Health::Suspended);
        assert_eq!(
            s.health_message.as_deref(),
            Some("suspended in Git (x-docker-cd.suspend: true)")
        );
        // The engine's word does not change a suspended stack's health.
        s.assess(Health::Degraded, Some("x".into()));
        assert_eq!(s.health, Health::Suspended);
        // The operator's resume does not lift Git's suspension.
        s.resume();
        assert_eq!(s.health, Health::Suspended);
        s.gate(false, None);
        assert_eq!(s.health, Health::Unknown);
        assert_eq!(s.health_message, None);
        // Suspended by the operator too: released by Git, still suspended.
        s.suspend();
        s.gate(true, None);
        s.gate(false, None);
        assert_eq!(s.health, Health::Suspended);
    }

    #[test]
    fn blocked_by_is_set_by_the_plan_and_cleared_when_a_sync_starts() {
        let mut s = SyncInfo::new(StackStatus::Missing);
        s.gate(false, Some("waiting for db (progressing)".into()));
        assert_eq!(
            s.blocked_by.as_deref(),
            Some("waiting for db (progressing)")
        );
        s.start_sync();
        assert_eq!(s.blocked_by, None);
        s.gate(false, Some("sync window opens 2026-12-06T02:00:00Z".into()));
        s.start_requested_sync();
        assert_eq!(s.blocked_by, None);
    }

    fn deployment(revision: &str, hash: &str) -> Deployment {
        Deployment {
            revision: revision.into(),
            commit_message: Some(format!("commit {revision}")),
            content_hash: hash.into(),
            compose_hash: Some("c".into()),
            synced_at: None,
        }
    }

    /// A stack that failed twice on `h1`, drifted and was acknowledged.
    fn troubled() -> SyncInfo {
        let mut s = SyncInfo::new(StackStatus::Missing);
        s.fail("boom".into(), "h1", at(1));
        s.fail("boom".into(), "h1", at(2));
        s.drift("container gone".into());
        s.acknowledge();
        s
    }

    #[test]
    fn failures_of_the_same_content_are_counted_and_new_content_starts_again_at_one() {
        let mut s = SyncInfo::new(StackStatus::Missing);
        s.fail("boom".into(), "h1", at(1));
        s.fail("boom again".into(), "h1", at(2));
        assert_eq!((s.status, s.consecutive_failures), (StackStatus::Failed, 2));
        assert_eq!(s.failed_content_hash.as_deref(), Some("h1"));
        assert_eq!(s.last_sync_error.as_deref(), Some("boom again"));
        assert_eq!(
            (s.last_sync_at, s.last_sync_status),
            (Some(at(2)), Some(SyncOutcome::Failed))
        );
        s.fail("other".into(), "h2", at(3));
        assert_eq!(s.consecutive_failures, 1);
        assert_eq!(s.failed_content_hash.as_deref(), Some("h2"));
    }

    #[test]
    fn a_failed_sync_ends_a_pending_acknowledgement() {
        let mut s = SyncInfo::new(StackStatus::Drifted);
        s.acknowledge();
        assert!(s.ack_requested);
        s.fail("boom".into(), "h1", at(1));
        assert!(!s.ack_requested);
    }

    #[test]
    fn a_successful_sync_clears_every_failure_drift_and_acknowledgement() {
        let mut s = troubled();
        s.start_sync();
        assert_eq!(s.status, StackStatus::Syncing);
        s.succeed(deployment("r1", "h1"), at(5));
        assert_eq!(s.status, StackStatus::Synced);
        assert_eq!(s.synced_revision.as_deref(), Some("r1"));
        assert_eq!(s.synced_commit_message.as_deref(), Some("commit r1"));
        assert_eq!(s.synced_content_hash.as_deref(), Some("h1"));
        assert_eq!(s.synced_compose_hash.as_deref(), Some("c"));
        assert_eq!(s.synced_at, Some(at(5)), "no time in the labels: now");
        assert_eq!(
            (
                s.last_sync_at,
                s.last_sync_status,
                s.last_sync_error.as_deref()
            ),
            (Some(at(5)), Some(SyncOutcome::Succeeded), None)
        );
        assert_eq!(s.drift, None);
        assert_eq!(
            (s.failed_content_hash.as_deref(), s.consecutive_failures),
            (None, 0)
        );
        assert!(!s.ack_requested);
    }

    #[test]
    fn a_drift_revert_keeps_the_time_of_the_sync_it_restores_and_an_unknown_message() {
        let mut s = SyncInfo::new(StackStatus::Synced);
        s.synced_commit_message = Some("the old commit".into());
        let restored = Deployment {
            synced_at: Some(at(1)),
            commit_message: None,
            ..deployment("r0", "h0")
        };
        s.succeed(restored, at(9));
        assert_eq!(s.synced_at, Some(at(1)));
        assert_eq!(s.last_sync_at, Some(at(9)));
        assert_eq!(s.synced_commit_message.as_deref(), Some("the old commit"));
    }

    #[test]
    fn a_recognised_deployment_keeps_the_last_outcome_but_drops_a_failure() {
        let mut s = troubled();
        s.synced_at = Some(at(1));
        s.recognise(deployment("r0", "h0"));
        assert_eq!(s.status, StackStatus::Synced);
        assert_eq!(s.synced_revision.as_deref(), Some("r0"));
        assert_eq!(s.synced_at, Some(at(1)), "no time in the labels: unchanged");
        assert_eq!(
            (s.last_sync_at, s.last_sync_status),
            (Some(at(2)), Some(SyncOutcome::Failed)),
            "nothing ran"
        );
        assert_eq!(s.last_sync_error, None);
        assert_eq!((s.drift.as_deref(), s.consecutive_failures), (None, 0));
        assert!(!s.ack_requested);
    }

    #[test]
    fn a_recognised_deployment_after_a_success_keeps_its_outcome() {
        let mut s = SyncInfo::new(StackStatus::Missing);
        s.succeed(deployment("r0", "h0"), at(1));
        s.recognise(Deployment {
            synced_at: Some(at(1)),
            ..deployment("r0", "h0")
        });
        assert_eq!(
            (s.last_sync_at, s.last_sync_status),
            (Some(at(1)), Some(SyncOutcome::Succeeded))
        );
    }

    #[test]
    fn refusing_a_stack_runs_nothing_so_the_last_outcome_stays() {
        let mut s = SyncInfo::new(StackStatus::Missing);
        s.succeed(deployment("r0", "h0"), at(1));
        s.refuse("symlinked compose file".into());
        assert_eq!(s.status, StackStatus::Failed);
        assert_eq!(s.last_sync_error.as_deref(), Some("symlinked compose file"));
        assert_eq!(s.last_sync_status, Some(SyncOutcome::Succeeded));
        assert_eq!(s.consecutive_failures, 0, "not a failed sync: no backoff");
    }

    #[test]
    fn flagged_drift_and_counts_are_recorded() {
        let mut s = SyncInfo::new(StackStatus::Synced);
        s.drift("container web_app_1 is exited (exit code 1)".into());
        s.observe(1, 2);
        assert_eq!(s.status, StackStatus::Drifted);
        assert_eq!(
            s.drift.as_deref(),
            Some("container web_app_1 is exited (exit code 1)")
        );
        assert_eq!((s.containers_running, s.containers_total), (1, 2));
    }

    #[test]
    fn an_orphan_says_why_and_a_failed_removal_leaves_it_orphaned_with_the_error() {
        let mut s = SyncInfo::new(StackStatus::Orphaned);
        s.orphan("removed from Git; RECONCILE_REMOVE_ENABLED=false");
        assert_eq!(s.status, StackStatus::Orphaned);
        assert_eq!(
            s.last_sync_error.as_deref(),
            Some("removed from Git; RECONCILE_REMOVE_ENABLED=false")
        );
        s.start_removal();
        assert_eq!(s.status, StackStatus::Deleting);
        s.fail_removal("compose down failed".into(), at(3));
        assert_eq!(s.status, StackStatus::Orphaned);
        assert_eq!(s.last_sync_error.as_deref(), Some("compose down failed"));
        assert_eq!(
            (s.last_sync_at, s.last_sync_status),
            (Some(at(3)), Some(SyncOutcome::Failed))
        );
    }
}
