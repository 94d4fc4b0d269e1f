//! The notifications of SPEC §13, derived from the store's changes (pure): a stack record before
//! and after ([`from_upsert`]), a new deployment record ([`from_history`]), the refresh status
//! before and after ([`from_refresh`]); and [`Dedup`], which keeps the same event for the same
//! stack and reason from being sent twice within an hour. The clock is passed in.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::config::NotifyEvent;
use crate::desired_state::{Health, RefreshPhase, RefreshStatus, StackRecord};

/// `refresh.failing` is sent on this failure in a row.
pub const REFRESH_FAILURES: u32 = 3;

/// How long the same event for the same stack and reason is not sent again.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(3600);

/// One notification, before it is formatted for a receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub event: NotifyEvent,
    /// `None` for the refresh events (they concern the whole repository).
    pub stack: Option<String>,
    pub revision: Option<String>,
    pub commit_message: Option<String>,
    /// The stack's sync status (`synced`, `failed`, …), or the refresh's.
    pub status: Option<String>,
    pub health: Option<String>,
    pub reason: Option<String>,
    pub at: SystemTime,
}

impl Notice {
    fn of(event: NotifyEvent, record: &StackRecord, at: SystemTime) -> Self {
        Self {
            event,
            stack: Some(record.path.clone()),
            revision: record.sync.synced_revision.clone(),
            commit_message: record.sync.synced_commit_message.clone(),
            status: Some(record.sync.status.as_str().to_owned()),
            health: Some(record.sync.health.as_str().to_owned()),
            reason: None,
            at,
        }
    }
}

/// `health.degraded`, `health.recovered` and `drift.detected` from a stack's record before
/// (`None`: a stack seen for the first time) and after a change.
pub fn from_upsert(prev: Option<&StackRecord>, new: &StackRecord, at: SystemTime) -> Vec<Notice> {
    let mut out = Vec::new();
    let was = prev.map(|p| p.sync.health);
    let health = new.sync.health;
    if health == Health::Degraded && was != Some(Health::Degraded) {
        let mut n = Notice::of(NotifyEvent::HealthDegraded, new, at);
        n.reason = new.sync.health_message.clone();
        out.push(n);
    }
    if health == Health::Healthy && was == Some(Health::Degraded) {
        out.push(Notice::of(NotifyEvent::HealthRecovered, new, at));
    }
    let drifted_before = prev.is_some_and(|p| p.sync.drift.is_some());
    if let Some(drift) = &new.sync.drift {
        if !drifted_before {
            let mut n = Notice::of(NotifyEvent::DriftDetected, new, at);
            n.reason = Some(drift.clone());
            out.push(n);
        }
    }
    out
}

/// `sync.succeeded`, `sync.failed`, `rollback` and `image.updated` from a deployment record
/// (the history's JSON: `revision`, `commitMessage`, `trigger`, `outcome`, `reason`), with the
/// stack's record for its status and health when the store has it.
pub fn from_history(
    stack: &str,
    deployment: &Value,
    record: Option<&StackRecord>,
    at: SystemTime,
) -> Vec<Notice> {
    let text = |key: &str| deployment.get(key).and_then(Value::as_str);
    let base = |event| Notice {
        event,
        stack: Some(stack.to_owned()),
        revision: text("revision").map(str::to_owned),
        commit_message: text("commitMessage").map(str::to_owned),
        status: record.map(|r| r.sync.status.as_str().to_owned()),
        health: record.map(|r| r.sync.health.as_str().to_owned()),
        reason: text("reason").map(str::to_owned),
        at,
    };
    match (text("outcome"), text("trigger")) {
        (Some("succeeded"), Some("rollback")) => vec![base(NotifyEvent::Rollback)],
        (Some("succeeded"), Some("image-update")) => vec![base(NotifyEvent::ImageUpdated)],
        (Some("succeeded"), _) => vec![base(NotifyEvent::SyncSucceeded)],
        (Some("failed"), _) => vec![base(NotifyEvent::SyncFailed)],
        (Some("rolled-back"), _) => {
            vec![base(NotifyEvent::SyncFailed), base(NotifyEvent::Rollback)]
        }
        _ => Vec::new(),
    }
}

/// `refresh.failing` on the third failure in a row, `refresh.recovered` on the first success
/// after it.
pub fn from_refresh(prev: &RefreshStatus, new: &RefreshStatus, at: SystemTime) -> Vec<Notice> {
    let notice = |event, reason: Option<&String>| Notice {
        event,
        stack: None,
        revision: new.revision.clone(),
        commit_message: new.commit_message.clone(),
        status: Some(new.refresh_status.as_str().to_owned()),
        health: None,
        reason: reason.cloned(),
        at,
    };
    if new.consecutive_failures >= REFRESH_FAILURES && prev.consecutive_failures < REFRESH_FAILURES
    {
        return vec![notice(
            NotifyEvent::RefreshFailing,
            new.refresh_error.as_ref(),
        )];
    }
    if prev.consecutive_failures >= REFRESH_FAILURES
        && new.consecutive_failures == 0
        && new.refresh_status == RefreshPhase::Completed
    {
        return vec![notice(NotifyEvent::RefreshRecovered, None)];
    }
    Vec::new()
}

/// The same event for the same stack and reason is let through once per [`DEDUP_WINDOW`].
#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    sent: HashMap<(NotifyEvent, Option<String>, Option<String>), SystemTime>,
}

impl Default for Dedup {
    fn default() -> Self {
        Self::new(DEDUP_WINDOW)
    }
}

impl Dedup {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            sent: HashMap::new(),
        }
    }

    /// Whether `notice` may be sent at `now`; if so, it is remembered from `now` on.
    pub fn admit(&mut self, notice: &Notice, now: SystemTime) -> bool {
        let within = |then: SystemTime| {
            now.duration_since(then)
                .map_or(true, |age| age < self.window)
        };
        if self.sent.len() > 4096 {
            let window = self.window;
            self.sent
                .retain(|_, then| now.duration_since(*then).map_or(true, |age| age < window));
        }
        // An event without a reason (`sync.succeeded`, `image.updated`, `health.recovered`) is
        // told apart by its commit: each new deployment is news, a repeat of one is not.
        let reason = notice.reason.clone().or_else(|| notice.revision.clone());
        let key = (notice.event, notice.stack.clone(), reason);
        match self.sent.get(&key) {
            Some(then) if within(*then) => false,
            _ => {
                self.sent.insert(key, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired_state::{StackStatus, SyncInfo};
    use serde_json::json;

    fn record(health: Health) -> StackRecord {
        let mut r = StackRecord::gone_from_git("apps/web", &SyncInfo::new(StackStatus::Synced));
        r.sync.health = health;
        r.sync.synced_revision = Some("a".repeat(40));
        r
    }

    fn events(list: &[Notice]) -> Vec<&'static str> {
        list.iter().map(|n| n.event.as_str()).collect()
    }

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    #[test]
    fn health_changes_become_degraded_and_recovered_once() {
        let healthy = record(Health::Healthy);
        let mut degraded = record(Health::Degraded);
        degraded.sync.health_message = Some("web: unhealthy: exit 1".into());
        let out = from_upsert(Some(&healthy), &degraded, T0);
        assert_eq!(events(&out), ["health.degraded"]);
        assert_eq!(out[0].reason.as_deref(), Some("web: unhealthy: exit 1"));
        assert_eq!(out[0].stack.as_deref(), Some("apps/web"));
        assert!(from_upsert(Some(&degraded), &degraded, T0).is_empty());
        assert_eq!(
            events(&from_upsert(Some(&degraded), &healthy, T0)),
            ["health.recovered"]
        );
        // Progressing to healthy is no recovery; a new degraded stack is reported.
        assert!(from_upsert(Some(&record(Health::Progressing)), &healthy, T0).is_empty());
        assert_eq!(
            events(&from_upsert(None, &degraded, T0)),
            ["health.degraded"]
        );
    }

    #[test]
    fn drift_is_reported_when_it_appears() {
        let clean = record(Health::Healthy);
        let mut drifted = clean.clone();
        drifted.sync.drift = Some("web: container removed".into());
        assert_eq!(
            events(&from_upsert(Some(&clean), &drifted, T0)),
            ["drift.detected"]
        );
        assert!(from_upsert(Some(&drifted), &drifted, T0).is_empty());
    }

    #[test]
    fn deployments_become_sync_rollback_and_image_events() {
        let d = |trigger: &str, outcome: &str| {
            json!({"revision": "b".repeat(40), "commitMessage": "bump", "trigger": trigger,
                   "outcome": outcome, "reason": (outcome != "succeeded").then_some("web: unhealthy")})
        };
        let case =
            |trigger, outcome| events(&from_history("apps/web", &d(trigger, outcome), None, T0));
        assert_eq!(case("commit", "succeeded"), ["sync.succeeded"]);
        assert_eq!(case("commit", "failed"), ["sync.failed"]);
        assert_eq!(case("commit", "rolled-back"), ["sync.failed", "rollback"]);
        assert_eq!(case("rollback", "succeeded"), ["rollback"]);
        assert_eq!(case("image-update", "succeeded"), ["image.updated"]);
        assert_eq!(case("image-update", "failed"), ["sync.failed"]);
        let out = from_history(
            "apps/web",
            &d("commit", "failed"),
            Some(&record(Health::Degraded)),
            T0,
        );
        assert_eq!(out[0].revision.as_deref(), Some("b".repeat(40).as_str()));
        assert_eq!(out[0].commit_message.as_deref(), Some("bump"));
        assert_eq!(out[0].reason.as_deref(), Some("web: unhealthy"));
        assert_eq!(out[0].health.as_deref(), Some("degraded"));
        assert!(from_history("apps/web", &json!({}), None, T0).is_empty());
    }

    #[test]
    fn refresh_failing_on_the_third_failure_and_recovered_after_it() {
        let status = |failures, phase| {
            let mut s = RefreshStatus::initial("main".into());
            s.consecutive_failures = failures;
            s.refresh_status = phase;
            s.refresh_error = (failures > 0).then(|| "cannot fetch".to_owned());
            s
        };
        let f = RefreshPhase::Failed;
        assert!(from_refresh(&status(1, f), &status(2, f), T0).is_empty());
        let out = from_refresh(&status(2, f), &status(3, f), T0);
        assert_eq!(events(&out), ["refresh.failing"]);
        assert_eq!(out[0].reason.as_deref(), Some("cannot fetch"));
        assert!(from_refresh(&status(3, f), &status(4, f), T0).is_empty());
        let ok = RefreshPhase::Completed;
        assert_eq!(
            events(&from_refresh(&status(4, f), &status(0, ok), T0)),
            ["refresh.recovered"]
        );
        assert!(from_refresh(&status(2, f), &status(0, ok), T0).is_empty());
    }

    #[test]
    fn the_same_event_stack_and_reason_pass_once_an_hour() {
        let mut dedup = Dedup::default();
        let n = from_history(
            "apps/web",
            &json!({"trigger": "commit", "outcome": "failed", "reason": "web: unhealthy"}),
            None,
            T0,
        )
        .remove(0);
        let minute = Duration::from_secs(60);
        assert!(dedup.admit(&n, T0));
        assert!(!dedup.admit(&n, T0 + 59 * minute));
        let mut other_reason = n.clone();
        other_reason.reason = Some("web: restarting".into());
        assert!(dedup.admit(&other_reason, T0 + minute));
        let mut other_stack = n.clone();
        other_stack.stack = Some("apps/db".into());
        assert!(dedup.admit(&other_stack, T0 + minute));
        assert!(dedup.admit(&n, T0 + 60 * minute));
        assert!(!dedup.admit(&n, T0 + 61 * minute));
    }

    #[test]
    fn events_without_a_reason_are_told_apart_by_their_commit() {
        let mut dedup = Dedup::default();
        let deployed = |revision: &str| {
            from_history(
                "apps/web",
                &json!({"trigger": "commit", "outcome": "succeeded", "revision": revision}),
                None,
                T0,
            )
            .remove(0)
        };
        assert!(dedup.admit(&deployed("a"), T0));
        assert!(!dedup.admit(&deployed("a"), T0));
        assert!(dedup.admit(&deployed("b"), T0));
    }
}
