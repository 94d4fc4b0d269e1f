//! Notifications and commit status (SPEC §13), a workflow beside the reconciler: it subscribes
//! to the store's events, turns them into the notifications of SPEC §13 ([`derive`], pure),
//! filters them by `NOTIFY_EVENTS`, drops repeats within an hour, and hands each receiver's
//! bounded [`deliver::Lane`]; commit statuses go through a lane of their own
//! ([`commit_status`]). Nothing here waits on a receiver: the store's broadcast never blocks,
//! and a lane that is full drops and counts. A failing or hanging receiver therefore never
//! delays or fails a sync.
//!
//! Uses: [`crate::config`] (the settings), [`crate::desired_state`] (the store and its
//! events), [`crate::metrics`], [`crate::untrusted`]. Speaks HTTP itself (reqwest, rustls).

pub mod commit_status;
pub mod deliver;
pub mod derive;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::config::{CommitStatusConfig, NotifyConfig, NotifyEvent};
use crate::desired_state::{Event, RefreshStatus, StackRecord, StackStatus, Store};
use commit_status::{State, Update};
use deliver::{Context, Lane, Options, Outcome};
use derive::{Dedup, Notice};

/// The running notifier's lanes, for tests that look at their counts.
#[derive(Debug)]
pub struct Notifier {
    store: Arc<Store>,
    events: BTreeSet<NotifyEvent>,
    receivers: Vec<Lane<Arc<Notice>>>,
    statuses: Option<Lane<Update>>,
    dedup: Dedup,
}

impl Notifier {
    /// Builds the lanes (their workers start at once); `None` when neither notifications nor
    /// commit status are configured.
    pub fn new(
        store: Arc<Store>,
        notify: Option<&NotifyConfig>,
        commit_status: Option<&CommitStatusConfig>,
        context: Context,
        options: Options,
        shutdown: &CancellationToken,
    ) -> Result<Option<Self>, reqwest::Error> {
        if notify.is_none() && commit_status.is_none() {
            return Ok(None);
        }
        let client = deliver::client(&options)?;
        let context = Arc::new(context);
        let receivers = notify
            .map(|n| {
                n.receivers
                    .iter()
                    .map(|r| {
                        deliver::receiver_lane(
                            r,
                            client.clone(),
                            context.clone(),
                            n.secret.clone(),
                            options.clone(),
                            shutdown.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let statuses = commit_status
            .map(|c| status_lane(c.clone(), client, context, options, shutdown.clone()));
        Ok(Some(Self {
            store,
            events: notify.map(|n| n.events.clone()).unwrap_or_default(),
            receivers,
            statuses,
            dedup: Dedup::default(),
        }))
    }

    /// Offers `notice` to every receiver when `NOTIFY_EVENTS` has it and it is no repeat.
    /// Never waits.
    pub fn notify(&mut self, notice: Notice, now: SystemTime) {
        if self.receivers.is_empty() || !self.events.contains(&notice.event) {
            return;
        }
        if !self.dedup.admit(&notice, now) {
            crate::metrics::notification("any", "deduplicated");
            return;
        }
        let notice = Arc::new(notice);
        for lane in &self.receivers {
            lane.offer(notice.clone());
        }
    }

    /// Offers a commit status. Never waits.
    pub fn report(&self, update: Update) {
        if let Some(lane) = &self.statuses {
            lane.offer(update);
        }
    }

    /// The receivers' lanes, in `NOTIFY_URLS` order.
    pub fn receivers(&self) -> &[Lane<Arc<Notice>>] {
        &self.receivers
    }

    /// The commit status lane.
    pub fn statuses(&self) -> Option<&Lane<Update>> {
        self.statuses.as_ref()
    }

    /// Follows the store's events until shutdown.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let (initial, mut rx) = self.store.subscribe();
        let mut records: HashMap<String, StackRecord> =
            initial.into_iter().map(|r| (r.path.clone(), r)).collect();
        let mut refresh = self.store.refresh_status();
        loop {
            let event = tokio::select! {
                event = rx.recv() => event,
                () = shutdown.cancelled() => return,
            };
            let now = SystemTime::now();
            match event {
                Ok(Event::StackUpsert(record)) => {
                    let prev = records.get(&record.path);
                    for notice in derive::from_upsert(prev, &record, now) {
                        self.notify(notice, now);
                    }
                    let started = record.sync.status == StackStatus::Syncing
                        && prev.is_none_or(|p| p.sync.status != StackStatus::Syncing);
                    if started {
                        if let Some(sha) = target_revision(&record, &refresh) {
                            self.report(Update {
                                stack: record.path.clone(),
                                sha,
                                state: State::Pending,
                                description: "docker-cd is deploying this commit".into(),
                            });
                        }
                    }
                    records.insert(record.path.clone(), *record);
                }
                Ok(Event::StackHistory { path, deployment }) => {
                    for notice in derive::from_history(&path, &deployment, records.get(&path), now)
                    {
                        self.notify(notice, now);
                    }
                    if let Some(update) = finished(&path, &deployment) {
                        self.report(update);
                    }
                }
                Ok(Event::RefreshStatus(status)) => {
                    for notice in derive::from_refresh(&refresh, &status, now) {
                        self.notify(notice, now);
                    }
                    refresh = *status;
                }
                Ok(Event::StackDelete { path }) => {
                    records.remove(&path);
                }
                Ok(Event::StackSnapshot(all)) => {
                    records = all.into_iter().map(|r| (r.path.clone(), r)).collect();
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "the notifier fell behind the store's events; it goes on from the current records"
                    );
                    records = self
                        .store
                        .stacks()
                        .into_iter()
                        .map(|r| (r.path.clone(), r))
                        .collect();
                    refresh = self.store.refresh_status();
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

/// The commit a sync that starts is applying: the held or pinned one, else the snapshot's.
fn target_revision(record: &StackRecord, refresh: &RefreshStatus) -> Option<String> {
    let sha = record
        .sync
        .hold
        .as_ref()
        .map(|h| h.target.revision.clone())
        .or_else(|| record.sync.pinned_revision.clone())
        .or_else(|| refresh.revision.clone())?;
    is_commit_id(&sha).then_some(sha)
}

fn is_commit_id(sha: &str) -> bool {
    sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The final status of a deployment record: success, or failure with its reason.
fn finished(stack: &str, deployment: &serde_json::Value) -> Option<Update> {
    let text = |key: &str| deployment.get(key).and_then(serde_json::Value::as_str);
    let sha = text("revision").filter(|s| is_commit_id(s))?;
    let (state, description) = match text("outcome")? {
        "succeeded" => (State::Success, "deployed and healthy".to_owned()),
        outcome => (
            State::Failure,
            match text("reason") {
                Some(reason) if outcome == "rolled-back" => format!("rolled back: {reason}"),
                Some(reason) => reason.to_owned(),
                None => format!("sync {outcome}"),
            },
        ),
    };
    Some(Update {
        stack: stack.to_owned(),
        sha: sha.to_owned(),
        state,
        description,
    })
}

fn status_lane(
    config: CommitStatusConfig,
    client: reqwest::Client,
    context: Arc<Context>,
    options: Options,
    shutdown: CancellationToken,
) -> Lane<Update> {
    let config = Arc::new(config);
    let worker_shutdown = shutdown.clone();
    Lane::spawn(
        options.capacity,
        || crate::metrics::commit_status("dropped"),
        shutdown,
        move |update: Update| {
            let (url, request) = commit_status::request(&config, &update, &context);
            let (client, options, shutdown, forge) = (
                client.clone(),
                options.clone(),
                worker_shutdown.clone(),
                config.forge,
            );
            async move {
                let (outcome, attempts) =
                    deliver::post(&client, &url, &request, &options, &shutdown).await;
                match outcome {
                    Outcome::Sent => crate::metrics::commit_status("sent"),
                    Outcome::Failed => {
                        crate::metrics::commit_status("failed");
                        tracing::warn!(
                            forge = forge.as_str(),
                            stack = %crate::untrusted::Untrusted::new(&update.stack),
                            attempts,
                            "the commit status could not be reported"
                        );
                    }
                }
                outcome
            }
        },
    )
}
