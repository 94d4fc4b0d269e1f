//! Refresh: fetch from Git, read the stacks, swap the snapshot (SPEC §5).
//!
//! - [`RefreshHandle::request`] is what the triggers call (start-up, the poll timer, the
//!   webhook, the manual endpoint). It never blocks: the request goes into a
//!   [`SingleSlot`], so however many arrive, one refresh runs and at most one waits.
//! - [`Refresher::run`] is the one worker that takes requests from the slot, reads through a
//!   [`Source`] (the git adapter in production, fakes in tests) and installs the result in the
//!   [`Store`]. A failed read never touches the snapshot; its redacted reason is recorded.
//! - [`run_periodic`] asks for a refresh every poll interval after the last one completed, and
//!   backs off exponentially (capped) while refreshes fail, recovering by itself.
//! - A burst of requests (a thousand webhook deliveries of one push) costs two refreshes, not
//!   one per refresh-length slice of the burst: the refresh waiting behind a finished one
//!   starts once requests have paused for [`COALESCE_QUIET`] (at most [`COALESCE_MAX`] later).
//!
//! Uses: desired_state (and its public errors), queue, git (through [`Source`]), config
//! (redaction), metrics (refreshes by trigger and outcome), untrusted (log lines).

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Redactor;
use crate::desired_state::public::{PublicError, PublicErrors};
use crate::desired_state::store::InstallReport;
use crate::desired_state::{RefreshPhase, Snapshot, Store, Trigger};
use crate::queue::{Admission, SingleSlot};
use crate::untrusted::Untrusted;

/// How much of a failed refresh's reason its log line shows.
const LOG_ERROR_CHARS: usize = 4096;
/// First retry delay after a failed refresh; doubles with each further failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest delay between retries of a failing refresh.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// A refresh waiting behind a finished one starts once no request came for this long...
pub const COALESCE_QUIET: Duration = Duration::from_millis(50);
/// ...or this long after the previous refresh finished, whichever comes first.
pub const COALESCE_MAX: Duration = Duration::from_secs(2);

/// Where desired state comes from.
pub trait Source: Send + Sync + 'static {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Reads the current desired state. `Ok(None)`: unchanged since `previous`.
    fn read(
        &self,
        previous: Option<Arc<Snapshot>>,
    ) -> impl Future<Output = Result<Option<Snapshot>, Self::Error>> + Send;

    /// The `DATA_DIR` its errors may name, to be hidden from clients.
    fn data_dir(&self) -> Option<&Path> {
        None
    }
}

impl Source for crate::git::GitReader {
    type Error = crate::git::GitError;

    async fn read(&self, previous: Option<Arc<Snapshot>>) -> Result<Option<Snapshot>, Self::Error> {
        crate::git::GitReader::read(self, previous.as_deref()).await
    }

    fn data_dir(&self) -> Option<&Path> {
        crate::git::GitReader::data_dir(self)
    }
}

impl<S: Source> Source for Arc<S> {
    type Error = S::Error;

    fn read(
        &self,
        previous: Option<Arc<Snapshot>>,
    ) -> impl Future<Output = Result<Option<Snapshot>, Self::Error>> + Send {
        S::read(self, previous)
    }

    fn data_dir(&self) -> Option<&Path> {
        S::data_dir(self)
    }
}

/// Counters the periodic scheduler (and tests) watch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Refreshes finished, successfully or not.
    pub completed: u64,
    pub consecutive_failures: u32,
}

/// Asks for refreshes. Cheap to clone; never blocks.
#[derive(Debug, Clone)]
pub struct RefreshHandle {
    slot: Arc<SingleSlot<Trigger>>,
    store: Arc<Store>,
    last_request: Arc<Mutex<Instant>>,
}

impl RefreshHandle {
    /// Requests a refresh: `Started` if none was running, `Queued` otherwise.
    pub fn request(&self, trigger: Trigger) -> Admission {
        *self.last_request.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let admission = self.slot.request(trigger);
        if admission == Admission::Queued
            && self.store.refresh_status().queued_trigger != Some(trigger)
        {
            self.store
                .update_refresh(|r| r.queued_trigger = Some(trigger));
        }
        admission
    }
}

/// Called after each successful refresh (the app wires it to the reconciler).
pub type AfterRefresh = Box<dyn Fn(&InstallReport) + Send + Sync>;

/// The refresh worker.
pub struct Refresher<S> {
    source: S,
    store: Arc<Store>,
    slot: Arc<SingleSlot<Trigger>>,
    /// When the last request came (the coalescing window of a burst is measured from it).
    last_request: Arc<Mutex<Instant>>,
    errors: PublicErrors,
    progress: watch::Sender<Progress>,
    after_refresh: Option<AfterRefresh>,
}

impl<S> std::fmt::Debug for Refresher<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher").finish_non_exhaustive()
    }
}

impl<S: Source> Refresher<S> {
    /// `redactor` applies to every error shown or logged; the source's `DATA_DIR` is hidden
    /// from clients.
    pub fn new(source: S, store: Arc<Store>, redactor: Redactor) -> Self {
        let errors = PublicErrors::new(redactor, source.data_dir());
        Self {
            source,
            store,
            slot: Arc::new(SingleSlot::new()),
            last_request: Arc::new(Mutex::new(Instant::now())),
            errors,
            progress: watch::Sender::new(Progress::default()),
            after_refresh: None,
        }
    }

    pub fn after_refresh(mut self, hook: AfterRefresh) -> Self {
        self.after_refresh = Some(hook);
        self
    }

    pub fn handle(&self) -> RefreshHandle {
        RefreshHandle {
            slot: self.slot.clone(),
            store: self.store.clone(),
            last_request: self.last_request.clone(),
        }
    }

    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Takes requests until `shutdown`. A refresh in flight at shutdown is dropped, which kills
    /// its git children.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            // Marked running under the queue's lock: nothing is waiting at that moment.
            let starting = |trigger: &Trigger| {
                self.store.update_refresh(|r| {
                    r.refresh_id += 1;
                    r.refresh_status = RefreshPhase::Refreshing;
                    r.trigger = Some(*trigger);
                    r.queued_trigger = None;
                });
            };
            let trigger = tokio::select! {
                trigger = self.slot.next_then(starting) => trigger,
                () = shutdown.cancelled() => return,
            };
            tokio::select! {
                () = self.refresh_once(trigger) => {}
                () = shutdown.cancelled() => return,
            }
            tokio::select! {
                () = self.let_burst_pass() => {}
                () = shutdown.cancelled() => return,
            }
            self.slot.done();
        }
    }

    /// While a refresh waits and requests keep coming, waits (still marked running, so they
    /// keep replacing the waiting one) until they pause for [`COALESCE_QUIET`], at most
    /// [`COALESCE_MAX`]. A waiting refresh whose last request is older starts at once.
    async fn let_burst_pass(&self) {
        if !self.slot.is_waiting() {
            return;
        }
        let deadline = Instant::now() + COALESCE_MAX;
        loop {
            let last = *self.last_request.lock().unwrap_or_else(|e| e.into_inner());
            let quiet_at = last + COALESCE_QUIET;
            let now = Instant::now();
            if now >= quiet_at || now >= deadline {
                return;
            }
            tokio::time::sleep_until(quiet_at.min(deadline)).await;
        }
    }

    #[tracing::instrument(name = "refresh", skip(self), fields(%trigger))]
    async fn refresh_once(&self, trigger: Trigger) {
        let previous = self.store.snapshot();
        tracing::info!("refresh started");
        let started = std::time::Instant::now();
        let result = self.source.read(previous.clone()).await;
        let duration = started.elapsed();
        let duration_ms = duration.as_millis() as u64;
        let now = SystemTime::now();
        let ok = match result {
            Ok(read) => {
                let (commit, report) = match (read, previous.as_ref()) {
                    (Some(new), _) => {
                        let commit = new.revision.clone();
                        (
                            commit,
                            self.store.install_snapshot(Arc::new(new), trigger, now),
                        )
                    }
                    // Nothing new: only the status changes (no walk over every stack).
                    (None, Some(previous)) => (
                        previous.revision.clone(),
                        self.store.confirm_snapshot(trigger, now),
                    ),
                    (None, None) => {
                        // A source only says "unchanged" relative to a snapshot it was given.
                        self.store.fail_refresh(
                            PublicError::fixed(
                                "the source reported no change but there is no snapshot yet",
                            ),
                            trigger,
                            now,
                        );
                        crate::metrics::refresh_finished(trigger.as_str(), false, duration);
                        self.finish(false);
                        return;
                    }
                };
                tracing::info!(
                    %trigger,
                    %commit,
                    duration_ms,
                    new_revision = report.new_revision,
                    added = report.added.len(),
                    removed = report.removed.len(),
                    changed = report.changed.len(),
                    unchanged = report.unchanged,
                    "refresh completed"
                );
                if let Some(hook) = &self.after_refresh {
                    hook(&report);
                }
                true
            }
            Err(error) => {
                // Shortened for the API (and this line); in full at debug level.
                let reason = self.errors.render(&error);
                tracing::error!(%trigger, duration_ms, error = %Untrusted::bounded(reason.as_str(), LOG_ERROR_CHARS), "refresh failed; keeping the last good desired state");
                self.store.fail_refresh(reason, trigger, now);
                false
            }
        };
        crate::metrics::refresh_finished(trigger.as_str(), ok, duration);
        self.finish(ok);
        // The replaced snapshot is freed off the refresh's path (10,000 stacks take a few
        // milliseconds to free), once this was its last holder.
        if let Some(previous) = previous {
            tokio::task::spawn_blocking(move || drop(previous));
        }
    }

    fn finish(&self, ok: bool) {
        self.progress.send_modify(|p| {
            p.completed += 1;
            p.consecutive_failures = if ok { 0 } else { p.consecutive_failures + 1 };
        });
    }
}

/// The delay before the next periodic refresh: the poll interval after a success, an
/// exponential backoff (5s, 10s, 20s, … capped at 5m) after failures, whether or not polling is
/// enabled (a failing start-up refresh is retried either way). `None`: wait for a trigger.
pub fn next_delay(poll_interval: Option<Duration>, consecutive_failures: u32) -> Option<Duration> {
    if consecutive_failures == 0 {
        return poll_interval;
    }
    let exponent = consecutive_failures.saturating_sub(1).min(16);
    Some(BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_CAP))
}

/// Requests periodic refreshes until `shutdown`. The timer starts once the first refresh has
/// finished and restarts whenever any refresh finishes, so a busy webhook means fewer polls.
pub async fn run_periodic(
    handle: RefreshHandle,
    poll_interval: Option<Duration>,
    mut progress: watch::Receiver<Progress>,
    shutdown: CancellationToken,
) {
    loop {
        let seen = *progress.borrow_and_update();
        let delay = if seen.completed == 0 {
            None // the start-up refresh has not finished yet
        } else {
            next_delay(poll_interval, seen.consecutive_failures)
        };
        let Some(delay) = delay else {
            tokio::select! {
                changed = progress.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
            }
            continue;
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {
                if seen.consecutive_failures > 0 {
                    tracing::warn!(failures = seen.consecutive_failures, "retrying the failed refresh");
                }
                handle.request(Trigger::Periodic);
                // Wait for a refresh to finish before computing the next delay.
                loop {
                    tokio::select! {
                        changed = progress.changed() => {
                            if changed.is_err() { return }
                            if progress.borrow().completed > seen.completed { break }
                        }
                        () = shutdown.cancelled() => return,
                    }
                }
            }
            changed = progress.changed() => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired_state::RefType;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use tokio::time::Instant;

    #[derive(Debug, thiserror::Error)]
    #[error("remote unreachable: token s3cret-t0ken rejected")]
    struct FakeError;

    /// Fails while `failing` is set; records the (virtual) time of every read.
    #[derive(Clone, Default)]
    struct FakeSource {
        failing: Arc<Mutex<bool>>,
        calls: Arc<Mutex<Vec<Instant>>>,
    }

    impl Source for FakeSource {
        type Error = FakeError;
        async fn read(&self, _: Option<Arc<Snapshot>>) -> Result<Option<Snapshot>, FakeError> {
            self.calls.lock().unwrap().push(Instant::now());
            if *self.failing.lock().unwrap() {
                return Err(FakeError);
            }
            Ok(Some(Snapshot {
                revision: "abc".into(),
                git_ref: "refs/heads/main".into(),
                ref_type: RefType::Branch,
                remote_oid: "abc".into(),
                commit_message: "m".into(),
                stacks: BTreeMap::new(),
                warnings: vec![],
                tree: Default::default(),
            }))
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let poll = Some(Duration::from_secs(180));
        assert_eq!(next_delay(poll, 0), poll);
        assert_eq!(next_delay(None, 0), None);
        assert_eq!(next_delay(poll, 1), Some(Duration::from_secs(5)));
        assert_eq!(next_delay(poll, 2), Some(Duration::from_secs(10)));
        assert_eq!(next_delay(None, 3), Some(Duration::from_secs(20)));
        assert_eq!(next_delay(poll, 10), Some(BACKOFF_CAP));
        assert_eq!(next_delay(poll, u32::MAX), Some(BACKOFF_CAP));
    }

    #[tokio::test(start_paused = true)]
    async fn periodic_refresh_backs_off_while_failing_and_recovers() {
        let source = FakeSource::default();
        *source.failing.lock().unwrap() = true;
        let store = Arc::new(Store::new("main".into()));
        let refresher = Refresher::new(
            source.clone(),
            store.clone(),
            Redactor::new([crate::config::Secret::new("s3cret-t0ken")]),
        );
        let handle = refresher.handle();
        let progress = refresher.progress();
        let shutdown = CancellationToken::new();
        let start = Instant::now();
        tokio::spawn(refresher.run(shutdown.clone()));
        tokio::spawn(run_periodic(
            handle.clone(),
            Some(Duration::from_secs(60)),
            progress.clone(),
            shutdown.clone(),
        ));
        handle.request(Trigger::Startup);

        let mut rx = progress.clone();
        // Start-up failure, then retries at +5s, +10s, +20s (cumulative 5, 15, 35).
        rx.wait_for(|p| p.completed == 4).await.unwrap();
        let status = store.refresh_status();
        assert_eq!(status.refresh_status, RefreshPhase::Failed);
        assert_eq!(status.consecutive_failures, 4);
        let reason = status.refresh_error.unwrap();
        assert!(reason.contains("remote unreachable"), "{reason}");
        assert!(!reason.contains("s3cret-t0ken"), "secret leaked: {reason}");

        *source.failing.lock().unwrap() = false;
        rx.wait_for(|p| p.completed == 5).await.unwrap();
        assert_eq!(
            store.refresh_status().refresh_status,
            RefreshPhase::Completed
        );
        // Recovered: back to the poll interval.
        rx.wait_for(|p| p.completed == 6).await.unwrap();

        let offsets: Vec<u64> = source
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|t| (*t - start).as_secs())
            .collect();
        assert_eq!(offsets, [0, 5, 15, 35, 75, 135]);
        shutdown.cancel();
    }

    /// Takes one second per read; records the (virtual) time of every read.
    #[derive(Clone, Default)]
    struct SlowSource {
        calls: Arc<Mutex<Vec<Instant>>>,
    }

    impl Source for SlowSource {
        type Error = FakeError;
        async fn read(&self, _: Option<Arc<Snapshot>>) -> Result<Option<Snapshot>, FakeError> {
            self.calls.lock().unwrap().push(Instant::now());
            tokio::time::sleep(Duration::from_secs(1)).await;
            FakeSource::default().read(None).await
        }
    }

    /// A [`Refresher`] over a [`SlowSource`] and a fresh store, running from `start` until
    /// `shutdown`.
    struct SlowRefresher {
        source: SlowSource,
        handle: RefreshHandle,
        progress: watch::Receiver<Progress>,
        shutdown: CancellationToken,
        start: Instant,
    }

    impl SlowRefresher {
        fn start() -> Self {
            let source = SlowSource::default();
            let store = Arc::new(Store::new("main".into()));
            let refresher = Refresher::new(source.clone(), store, Redactor::default());
            let handle = refresher.handle();
            let progress = refresher.progress();
            let shutdown = CancellationToken::new();
            tokio::spawn(refresher.run(shutdown.clone()));
            Self {
                source,
                handle,
                progress,
                shutdown,
                start: Instant::now(),
            }
        }

        /// Stops the worker and says when each read began, in (virtual) milliseconds after
        /// `start`.
        fn finish(self) -> Vec<u128> {
            self.shutdown.cancel();
            let calls = self.source.calls.lock().unwrap();
            calls
                .iter()
                .map(|t| (*t - self.start).as_millis())
                .collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_requests_costs_one_more_refresh_started_when_it_pauses() {
        let slow = SlowRefresher::start();
        // A request every 10 ms for 1.5 s: the first refresh runs 0–1 s.
        for _ in 0..150 {
            slow.handle.request(Trigger::Webhook);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut rx = slow.progress.clone();
        rx.wait_for(|p| p.completed == 2).await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        // The second starts once the requests paused for COALESCE_QUIET (the last came at
        // 1.49 s), not at the end of the first; nothing after it.
        assert_eq!(slow.finish(), [0, 1540]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_request_during_a_refresh_starts_right_after_it() {
        let slow = SlowRefresher::start();
        slow.handle.request(Trigger::Startup);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(slow.handle.request(Trigger::Webhook), Admission::Queued);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(slow.finish(), [0, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_endless_stream_of_requests_still_refreshes_every_coalesce_max() {
        let slow = SlowRefresher::start();
        for _ in 0..800 {
            slow.handle.request(Trigger::Webhook);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Each refresh takes 1 s, then the next waits COALESCE_MAX while requests keep coming.
        assert_eq!(slow.finish(), [0, 3000, 6000]);
    }

    #[tokio::test(start_paused = true)]
    async fn polling_off_still_retries_a_failed_start() {
        let source = FakeSource::default();
        *source.failing.lock().unwrap() = true;
        let store = Arc::new(Store::new("main".into()));
        let refresher = Refresher::new(source.clone(), store.clone(), Redactor::default());
        let handle = refresher.handle();
        let progress = refresher.progress();
        let shutdown = CancellationToken::new();
        tokio::spawn(refresher.run(shutdown.clone()));
        tokio::spawn(run_periodic(
            handle.clone(),
            None,
            progress.clone(),
            shutdown.clone(),
        ));
        handle.request(Trigger::Startup);
        let mut rx = progress.clone();
        rx.wait_for(|p| p.completed == 2).await.unwrap();
        *source.failing.lock().unwrap() = false;
        rx.wait_for(|p| p.completed == 3).await.unwrap();
        // Success with polling off: nothing more happens, however long we wait.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(progress.borrow().completed, 3);
        shutdown.cancel();
    }
}
