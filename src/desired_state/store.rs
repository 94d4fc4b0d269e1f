//! The cache: current snapshot, per-stack sync state, refresh status, and the event stream.
//!
//! One `std::sync::Mutex` guards it all. Every critical section is a few map operations with no
//! `.await` inside, so a blocking mutex is cheaper and simpler than an async one, and one lock
//! (rather than one per field) means readers always see a consistent view: a snapshot with
//! exactly the sync entries that belong to it. Events are published while the lock is held, so
//! their order matches the order of the changes; [`Store::subscribe`] takes the current records
//! and a receiver under the same lock, so a subscriber misses nothing and sees nothing twice.
//!
//! The deployment history is not kept here: it is durable, in `crate::history`, written by
//! the reconciler. The store only announces a new record on the event stream
//! ([`Store::publish_history`]), as a JSON value it does not look into. The [`Event`] type
//! lives in `events`.
//!
//! Whoever reports on the whole cache (`GET /metrics`) takes a [`Census`] of it
//! ([`Store::census`]): plain values of this module's own types, taken under the one lock. The
//! store knows nothing of its readers' types.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::broadcast;

use super::census::{Census, SnapshotCensus, StackCensus};
use super::public::PublicError;
use super::tree::Ascending;
use super::{
    RefreshPhase, RefreshStatus, Snapshot, StackRecord, StackRecordView, StackStatus, SyncInfo,
    Trigger,
};

pub use super::events::Event;

/// How many events a slow subscriber may fall behind before it is re-sent a full snapshot.
const EVENT_BUFFER: usize = 1024;

/// What installing a snapshot changed, for logs and the reconciler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: usize,
    /// The commit differs from the previous snapshot's.
    pub new_revision: bool,
}

#[derive(Debug)]
struct Inner {
    refresh: RefreshStatus,
    snapshot: Option<Arc<Snapshot>>,
    /// Sync state by path: every stack of the snapshot, plus stacks gone from Git that still
    /// have something on the host (`host_project` set).
    sync: BTreeMap<String, SyncInfo>,
}

impl Inner {
    fn record(&self, path: &str) -> Option<StackRecord> {
        let sync = self.sync.get(path)?;
        match self.snapshot.as_ref().and_then(|s| s.stacks.get(path)) {
            Some(desired) => Some(StackRecord::new(desired, sync)),
            None => Some(StackRecord::gone_from_git(path, sync)),
        }
    }

    fn records(&self) -> Vec<StackRecord> {
        self.sync.keys().filter_map(|p| self.record(p)).collect()
    }

    fn view<'a>(&'a self, path: &'a str, sync: &'a SyncInfo) -> StackRecordView<'a> {
        match self.snapshot.as_ref().and_then(|s| s.stacks.get(path)) {
            Some(desired) => StackRecordView::new(desired, sync),
            None => StackRecordView::gone_from_git(path, sync),
        }
    }
}

/// Every stack of the cache as a JSON array, serialised from borrowed views.
struct AllStacks<'a>(&'a Inner);

impl serde::Serialize for AllStacks<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.0
                .sync
                .iter()
                .map(|(path, sync)| self.0.view(path, sync)),
        )
    }
}

/// The shared cache. Cheap to clone through `Arc<Store>`.
#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
}

impl Store {
    /// An empty cache; `configured_ref` is shown as `ref` until the first snapshot.
    pub fn new(configured_ref: String) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            inner: Mutex::new(Inner {
                refresh: RefreshStatus::initial(configured_ref),
                snapshot: None,
                sync: BTreeMap::new(),
            }),
            events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves maps that are still structurally valid; keep
        // serving rather than poisoning every later request.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, event: Event) {
        // No subscribers is fine.
        let _ = self.events.send(event);
    }

    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.lock().snapshot.clone()
    }

    pub fn refresh_status(&self) -> RefreshStatus {
        self.lock().refresh.clone()
    }

    /// Every stack, ordered by path.
    pub fn stacks(&self) -> Vec<StackRecord> {
        self.lock().records()
    }

    /// [`Store::stacks`] as JSON bytes, written straight from the cache: no record is cloned
    /// and no intermediate JSON tree is built, so 10,000 stacks cost one buffer of their JSON.
    /// The lock is held while writing (a few milliseconds per thousand stacks).
    pub fn stacks_json(&self) -> Vec<u8> {
        let inner = self.lock();
        // Roughly what one record takes, so the buffer rarely grows.
        let mut out = Vec::with_capacity(64 + inner.sync.len() * 640);
        // Plain structs of strings, numbers and options: serialising cannot fail.
        let _ = serde_json::to_writer(&mut out, &AllStacks(&inner));
        out
    }

    pub fn stack(&self, path: &str) -> Option<StackRecord> {
        self.lock().record(path)
    }

    /// The snapshot and the sync state that belongs to it, as one consistent view.
    pub fn view(&self) -> (Option<Arc<Snapshot>>, BTreeMap<String, SyncInfo>) {
        let inner = self.lock();
        (inner.snapshot.clone(), inner.sync.clone())
    }

    /// The current records and a receiver for every later change.
    pub fn subscribe(&self) -> (Vec<StackRecord>, broadcast::Receiver<Event>) {
        let inner = self.lock();
        (inner.records(), self.events.subscribe())
    }

    /// Changes the refresh status and publishes it.
    pub fn update_refresh(&self, change: impl FnOnce(&mut RefreshStatus)) {
        let mut inner = self.lock();
        change(&mut inner.refresh);
        self.publish(Event::RefreshStatus(Box::new(inner.refresh.clone())));
    }

    /// Installs a newly read snapshot. Stacks in both keep their sync state; new stacks start
    /// `missing`; stacks gone from Git with nothing deployed are dropped, the others stay listed
    /// (`inGit: false`, status unchanged) until the reconciler decides: `deleting` or `orphaned`.
    pub fn install_snapshot(
        &self,
        snapshot: Arc<Snapshot>,
        trigger: Trigger,
        now: SystemTime,
    ) -> InstallReport {
        let mut inner = self.lock();
        let old = inner.snapshot.replace(snapshot.clone());
        let mut report = InstallReport {
            new_revision: old.as_ref().is_none_or(|o| o.revision != snapshot.revision),
            ..InstallReport::default()
        };
        let mut touched = Vec::new();

        // One walk in path order over the new stacks, the old ones and the sync entries (all
        // three are keyed by path): no lookup per stack. A stack the new snapshot shares with
        // the old one (the same `Arc`) is unchanged without looking inside; only the others are
        // compared, which after a one-commit refresh are the stacks the diff touched.
        let mut earlier = Ascending::new(old.as_ref().map(|o| &o.stacks));
        let mut synced = inner.sync.iter_mut().peekable();
        let mut gone: Vec<String> = Vec::new();
        let mut new_paths: Vec<String> = Vec::new();
        for (path, desired) in &snapshot.stacks {
            while let Some((p, _)) = synced.next_if(|(p, _)| p.as_str() < path.as_str()) {
                gone.push(p.clone());
            }
            let before = earlier.get(path);
            match synced.next_if(|(p, _)| *p == path) {
                Some((_, sync)) => {
                    if sync.host_project.take().is_some()
                        && matches!(sync.status, StackStatus::Orphaned | StackStatus::Deleting)
                    {
                        // Back in Git: the reconciler decides afresh.
                        sync.status = StackStatus::Missing;
                    }
                    let unchanged =
                        before.is_some_and(|b| Arc::ptr_eq(b, desired) || **b == **desired);
                    if unchanged {
                        report.unchanged += 1;
                    } else {
                        report.changed.push(path.clone());
                        touched.push(path.clone());
                    }
                }
                None => {
                    new_paths.push(path.clone());
                    report.added.push(path.clone());
                    touched.push(path.clone());
                }
            }
        }
        gone.extend(synced.map(|(p, _)| p.clone()));
        for path in new_paths {
            inner.sync.insert(path, SyncInfo::new(StackStatus::Missing));
        }

        for path in gone {
            let was_in_git = old.as_ref().is_some_and(|o| o.stacks.contains_key(&path));
            let Some(sync) = inner.sync.get_mut(&path) else {
                continue;
            };
            let deployed = sync.synced_content_hash.is_some() || sync.containers_total > 0;
            if deployed {
                if was_in_git {
                    report.removed.push(path.clone());
                    sync.host_project = old
                        .as_ref()
                        .and_then(|o| o.stacks.get(&path))
                        .and_then(|d| d.project_name.clone());
                    touched.push(path);
                }
            } else {
                if was_in_git {
                    report.removed.push(path.clone());
                }
                inner.sync.remove(&path);
                self.publish(Event::StackDelete { path });
            }
        }

        for path in touched {
            if let Some(record) = inner.record(&path) {
                self.publish(Event::StackUpsert(Box::new(record)));
            }
        }

        let refresh = &mut inner.refresh;
        refresh.revision = Some(snapshot.revision.clone());
        refresh.git_ref = snapshot.git_ref.clone();
        refresh.ref_type = Some(snapshot.ref_type);
        refresh.commit_message = Some(snapshot.commit_message.clone());
        refresh.complete(trigger, now);
        refresh.stack_count = snapshot.stacks.len();
        refresh.warnings = snapshot.warnings.clone();
        if snapshot.stacks.is_empty() {
            refresh.warnings.push(
                "the deploy dir holds no stacks; nothing running is removed because of an empty snapshot"
                    .into(),
            );
        }
        self.publish(Event::RefreshStatus(Box::new(inner.refresh.clone())));
        report
    }

    /// Records a successful refresh that found the snapshot unchanged (the remote still points
    /// where it was read from): the refresh status as [`Store::install_snapshot`] of the same
    /// snapshot would set it, without walking every stack.
    pub fn confirm_snapshot(&self, trigger: Trigger, now: SystemTime) -> InstallReport {
        let mut inner = self.lock();
        let unchanged = inner.snapshot.as_ref().map_or(0, |s| s.stacks.len());
        let refresh = &mut inner.refresh;
        refresh.complete(trigger, now);
        self.publish(Event::RefreshStatus(Box::new(inner.refresh.clone())));
        InstallReport {
            unchanged,
            ..InstallReport::default()
        }
    }

    /// Records a failed refresh. The snapshot is left exactly as it was.
    pub fn fail_refresh(&self, reason: PublicError, trigger: Trigger, now: SystemTime) {
        self.update_refresh(|r| {
            r.refresh_status = RefreshPhase::Failed;
            r.refresh_error = Some(reason.into_string());
            r.refreshed_at = Some(now);
            r.trigger = Some(trigger);
            r.consecutive_failures += 1;
        });
    }

    /// Changes one stack's sync state and publishes the new record. Returns false (and changes
    /// nothing) for an unknown path.
    pub fn update_stack(&self, path: &str, change: impl FnOnce(&mut SyncInfo)) -> bool {
        let mut inner = self.lock();
        let Some(sync) = inner.sync.get_mut(path) else {
            return false;
        };
        let before = sync.clone();
        change(sync);
        if *sync != before {
            if let Some(record) = inner.record(path) {
                self.publish(Event::StackUpsert(Box::new(record)));
            }
        }
        true
    }

    /// Lists a stack that is not in Git but has containers on the host.
    pub fn upsert_gone(&self, path: &str, project: &str, change: impl FnOnce(&mut SyncInfo)) {
        let mut inner = self.lock();
        if inner
            .snapshot
            .as_ref()
            .is_some_and(|s| s.stacks.contains_key(path))
        {
            return; // in Git after all: not an orphan
        }
        let sync = inner
            .sync
            .entry(path.to_owned())
            .or_insert_with(|| SyncInfo::new(StackStatus::Orphaned));
        let before = sync.clone();
        sync.host_project = Some(project.to_owned());
        change(sync);
        if *sync != before {
            if let Some(record) = inner.record(path) {
                self.publish(Event::StackUpsert(Box::new(record)));
            }
        }
    }

    /// Every stack's status and health, the snapshot served and the refresh state, taken under
    /// one lock (`GET /metrics` reports this).
    pub fn census(&self) -> Census {
        let inner = self.lock();
        let refresh = &inner.refresh;
        let snapshot = match (&refresh.revision, refresh.ref_type) {
            (Some(revision), Some(ref_type)) => Some(SnapshotCensus {
                revision: revision.clone(),
                git_ref: refresh.git_ref.clone(),
                ref_type,
            }),
            _ => None,
        };
        Census {
            stacks: inner
                .sync
                .iter()
                .map(|(path, sync)| StackCensus {
                    path: path.clone(),
                    status: sync.status,
                    health: sync.health,
                })
                .collect(),
            snapshot,
            stack_count: refresh.stack_count,
            last_success_at: refresh.last_success_at,
            consecutive_failures: refresh.consecutive_failures,
            refreshing: refresh.refresh_status == RefreshPhase::Refreshing,
        }
    }

    /// Drops a stack that is neither in Git nor on the host any more.
    pub fn remove_gone(&self, path: &str) {
        let mut inner = self.lock();
        if inner
            .snapshot
            .as_ref()
            .is_some_and(|s| s.stacks.contains_key(path))
        {
            return;
        }
        if inner.sync.remove(path).is_some() {
            self.publish(Event::StackDelete {
                path: path.to_owned(),
            });
        }
    }

    /// Announces a new deployment record of the stack at `path` (`stack.history`). The record
    /// is a JSON value the store does not look into: the history's type is not the desired
    /// state's business. Sent under the lock like every other event, so it keeps its place
    /// among the upserts of the same stack. The caller publishes after the record is on disk:
    /// a page that subscribes first and reads the history next misses nothing.
    pub fn publish_history(&self, path: &str, deployment: serde_json::Value) {
        let _inner = self.lock();
        self.publish(Event::StackHistory {
            path: path.to_owned(),
            deployment,
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::{DesiredStack, Health, RefType};
    use super::*;

    fn snapshot(revision: &str, stacks: &[(&str, &str)]) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            revision: revision.into(),
            git_ref: "refs/heads/main".into(),
            ref_type: RefType::Branch,
            remote_oid: revision.into(),
            commit_message: format!("commit {revision}"),
            stacks: stacks
                .iter()
                .map(|(path, hash)| {
                    (
                        path.to_string(),
                        Arc::new(DesiredStack {
                            path: path.to_string(),
                            project_name: Some(path.to_string()),
                            compose_file: "compose.yaml".into(),
                            compose_hash: Some(format!("c-{hash}")),
                            content_hash: hash.to_string(),
                            compose_blob: None,
                            warnings: vec![],
                            error: None,
                            settings: None,
                        }),
                    )
                })
                .collect(),
            warnings: vec![],
            tree: Default::default(),
        })
    }

    #[test]
    fn stacks_in_both_snapshots_keep_their_sync_state() {
        let store = Store::new("main".into());
        let now = SystemTime::now();
        store.install_snapshot(
            snapshot("r1", &[("a", "1"), ("b", "1")]),
            Trigger::Startup,
            now,
        );
        store.update_stack("a", |s| s.status = StackStatus::Synced);
        let report = store.install_snapshot(
            snapshot("r2", &[("a", "1"), ("c", "1")]),
            Trigger::Webhook,
            now,
        );
        assert_eq!(report.added, ["c"]);
        assert_eq!(report.removed, ["b"]);
        assert_eq!(report.unchanged, 1);
        let stacks = store.stacks();
        let paths: Vec<_> = stacks.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths, ["a", "c"]);
        assert_eq!(stacks[0].sync.status, StackStatus::Synced);
        assert_eq!(stacks[1].sync.status, StackStatus::Missing);
        assert_eq!(store.refresh_status().revision.as_deref(), Some("r2"));
    }

    #[test]
    fn a_deployed_stack_gone_from_git_stays_listed_for_the_reconciler() {
        let store = Store::new("main".into());
        let now = SystemTime::now();
        store.install_snapshot(snapshot("r1", &[("a", "1")]), Trigger::Startup, now);
        store.update_stack("a", |s| {
            s.status = StackStatus::Synced;
            s.synced_content_hash = Some("1".into());
        });
        store.install_snapshot(snapshot("r2", &[]), Trigger::Webhook, now);
        let a = store.stack("a").unwrap();
        assert_eq!(a.sync.status, StackStatus::Synced);
        assert!(!a.in_git);
        assert_eq!(a.project_name.as_deref(), Some("a"));
        assert!(store.refresh_status().warnings[0].contains("no stacks"));
    }

    #[test]
    fn confirming_an_unchanged_snapshot_sets_the_status_like_installing_it_again() {
        let installed = Store::new("main".into());
        let confirmed = Store::new("main".into());
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let t1 = t0 + std::time::Duration::from_secs(60);
        let snap = snapshot("r1", &[("a", "1"), ("b", "1")]);
        for store in [&installed, &confirmed] {
            store.install_snapshot(snap.clone(), Trigger::Startup, t0);
            store.fail_refresh(
                PublicError::fixed("remote unreachable"),
                Trigger::Periodic,
                t0,
            );
        }
        let report = installed.install_snapshot(snap.clone(), Trigger::Manual, t1);
        assert_eq!(confirmed.confirm_snapshot(Trigger::Manual, t1), report);
        assert_eq!(confirmed.refresh_status(), installed.refresh_status());
        assert_eq!(confirmed.stacks(), installed.stacks());
        assert_eq!(report.unchanged, 2);
    }

    #[test]
    fn a_failed_refresh_keeps_the_snapshot() {
        let store = Store::new("main".into());
        let now = SystemTime::now();
        store.install_snapshot(snapshot("r1", &[("a", "1")]), Trigger::Startup, now);
        store.fail_refresh(
            PublicError::fixed("remote unreachable"),
            Trigger::Periodic,
            now,
        );
        let status = store.refresh_status();
        assert_eq!(status.refresh_status, RefreshPhase::Failed);
        assert_eq!(status.revision.as_deref(), Some("r1"));
        assert_eq!(status.consecutive_failures, 1);
        assert_eq!(store.stacks().len(), 1);
    }

    #[test]
    fn the_json_of_all_stacks_is_the_json_of_their_records() {
        let store = Store::new("main".into());
        let now = SystemTime::now();
        store.install_snapshot(
            snapshot("r1", &[("a", "1"), ("b", "1"), ("c", "2")]),
            Trigger::Startup,
            now,
        );
        store.update_stack("a", |s| {
            s.status = StackStatus::Synced;
            s.synced_content_hash = Some("1".into());
            s.synced_at = Some(now);
            s.containers_running = 2;
        });
        // "a" is gone from Git but deployed: listed with inGit false.
        store.install_snapshot(
            snapshot("r2", &[("b", "1"), ("c", "3")]),
            Trigger::Webhook,
            now,
        );
        let records = serde_json::to_value(store.stacks()).unwrap();
        let written: Value = serde_json::from_slice(&store.stacks_json()).unwrap();
        assert_eq!(written, records);
        assert_eq!(written.as_array().unwrap().len(), 3);
        assert_eq!(written[0]["inGit"], false);
        assert_eq!(written[0]["projectName"], "a");
        assert!(written[0].get("hostProject").is_none());
        assert_eq!(
            serde_json::from_slice::<Value>(&Store::new("x".into()).stacks_json()).unwrap(),
            serde_json::json!([])
        );
    }

    #[test]
    fn shared_stacks_are_unchanged_and_equal_copies_are_too() {
        let store = Store::new("main".into());
        let now = SystemTime::now();
        let first = snapshot("r1", &[("a", "1"), ("b", "1"), ("c", "1")]);
        store.install_snapshot(first.clone(), Trigger::Startup, now);
        let (_, mut rx) = store.subscribe();
        // "a" shared, "b" an equal copy, "c" changed, "d" new.
        let mut next = (*snapshot("r2", &[("b", "1"), ("c", "2"), ("d", "1")])).clone();
        next.stacks.insert("a".into(), first.stacks["a"].clone());
        let report = store.install_snapshot(Arc::new(next), Trigger::Webhook, now);
        assert_eq!(report.unchanged, 2);
        assert_eq!(report.changed, ["c"]);
        assert_eq!(report.added, ["d"]);
        let upserts: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|e| match e {
                Event::StackUpsert(record) => Some(record.path),
                _ => None,
            })
            .collect();
        assert_eq!(upserts, ["c", "d"]);
    }

    #[test]
    fn a_new_deployment_is_announced_with_its_path_and_record_as_given() {
        let store = Store::new("main".into());
        let (_, mut rx) = store.subscribe();
        let deployment = serde_json::json!({"id": 7, "outcome": "succeeded"});
        store.publish_history("apps/web", deployment.clone());
        let event = rx.try_recv().unwrap();
        assert_eq!(event.name(), "stack.history");
        assert_eq!(
            event.data(),
            serde_json::json!({"path": "apps/web", "deployment": deployment})
        );
    }

    #[test]
    fn a_census_counts_every_stack_with_its_status_and_health_and_the_snapshot_served() {
        let store = Store::new("main".into());
        assert_eq!(store.census(), Census::default());
        let now = SystemTime::now();
        store.install_snapshot(
            snapshot("r1", &[("db", "1"), ("web", "1")]),
            Trigger::Startup,
            now,
        );
        store.update_stack("db", |s| {
            s.status = StackStatus::Synced;
            s.health = Health::Degraded;
        });
        store.upsert_gone("old", "old", |s| s.health = Health::Healthy);
        let census = store.census();
        let stack = |path: &str, status, health| StackCensus {
            path: path.to_owned(),
            status,
            health,
        };
        assert_eq!(
            census.stacks,
            [
                stack("db", StackStatus::Synced, Health::Degraded),
                stack("old", StackStatus::Orphaned, Health::Healthy),
                stack(
                    "web",
                    StackStatus::Missing,
                    SyncInfo::new(StackStatus::Missing).health
                ),
            ]
        );
        assert_eq!(
            census.snapshot,
            Some(SnapshotCensus {
                revision: "r1".into(),
                git_ref: "refs/heads/main".into(),
                ref_type: RefType::Branch,
            })
        );
        assert_eq!(census.stack_count, 2);
        assert_eq!(census.last_success_at, Some(now));
        assert_eq!(census.consecutive_failures, 0);
        assert!(!census.refreshing);
        // The stack gone from both is gone from the census too.
        store.remove_gone("old");
        assert_eq!(store.census().stacks.len(), 2);
    }

    #[test]
    fn subscribers_get_changes_in_order() {
        let store = Store::new("main".into());
        let (initial, mut rx) = store.subscribe();
        assert!(initial.is_empty());
        store.install_snapshot(
            snapshot("r1", &[("a", "1")]),
            Trigger::Startup,
            SystemTime::now(),
        );
        assert_eq!(rx.try_recv().unwrap().name(), "stack.upsert");
        assert_eq!(rx.try_recv().unwrap().name(), "refresh.status");
        store.update_stack("a", |s| s.status = StackStatus::Syncing);
        let event = rx.try_recv().unwrap();
        assert_eq!(event.data()["status"], "syncing");
    }
}
