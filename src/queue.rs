//! The single-slot replacement queue (SPEC §5): at most one unit of work runs, at most one
//! waits, and a newer request replaces the waiting one. However many requests arrive, the
//! work is one running plus one waiting. Used by the refresh worker and the reconciler.
//!
//! A `std::sync::Mutex` guards two fields for a few instructions; `Notify` wakes the worker.
//! `Notify::notify_one` stores a permit when nobody waits, so a request made between the
//! worker's check and its `.await` is never lost.

use std::sync::Mutex;

use tokio::sync::Notify;

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Admission {
    /// Nothing was running: the work starts now.
    Started,
    /// Work is running: this request waits (replacing any earlier waiting one).
    Queued,
}

#[derive(Debug)]
struct State<T> {
    running: bool,
    waiting: Option<T>,
}

/// One running, at most one waiting.
#[derive(Debug)]
pub struct SingleSlot<T> {
    state: Mutex<State<T>>,
    notify: Notify,
}

impl<T> Default for SingleSlot<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                running: false,
                waiting: None,
            }),
            notify: Notify::new(),
        }
    }
}

impl<T> SingleSlot<T> {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // The state is two plain fields; it is valid even after a panic elsewhere.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for work. Never blocks.
    pub fn request(&self, item: T) -> Admission {
        self.request_then(item, |_| {})
    }

    /// Asks for work and runs `then` with the answer while the queue is still locked, so a
    /// status derived from the queue (e.g. "a refresh is waiting") is published in the same
    /// order as the queue changes. `then` must be quick and must not touch this queue.
    pub fn request_then(&self, item: T, then: impl FnOnce(Admission)) -> Admission {
        let mut state = self.lock();
        state.waiting = Some(item);
        let admission = if state.running {
            Admission::Queued
        } else {
            self.notify.notify_one();
            Admission::Started
        };
        then(admission);
        admission
    }

    /// Is work waiting behind the running one?
    pub fn is_waiting(&self) -> bool {
        let state = self.lock();
        state.running && state.waiting.is_some()
    }

    /// For the worker: waits for the next request and marks work as running. Call
    /// [`SingleSlot::done`] when it is finished.
    pub async fn next(&self) -> T {
        self.next_then(|_| {}).await
    }

    /// Like [`SingleSlot::next`], running `then` on the item while the queue is still locked
    /// (nothing is waiting at that moment). Same rules as for [`SingleSlot::request_then`].
    pub async fn next_then(&self, then: impl Fn(&T)) -> T {
        loop {
            {
                let mut state = self.lock();
                if let Some(item) = state.waiting.take() {
                    state.running = true;
                    then(&item);
                    return item;
                }
            }
            self.notify.notified().await;
        }
    }

    /// For the worker: the running work finished.
    pub fn done(&self) {
        let mut state = self.lock();
        state.running = false;
        if state.waiting.is_some() {
            self.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_while_running_are_queued_and_the_newest_wins() {
        let slot = SingleSlot::new();
        assert_eq!(slot.request(1), Admission::Started);
        assert_eq!(slot.next().await, 1);
        assert_eq!(slot.request(2), Admission::Queued);
        assert_eq!(slot.request(3), Admission::Queued);
        assert!(slot.is_waiting());
        slot.done();
        assert_eq!(slot.next().await, 3);
        slot.done();
        assert!(!slot.is_waiting());
        assert_eq!(slot.request(4), Admission::Started);
    }

    #[tokio::test]
    async fn a_request_before_the_worker_waits_is_not_lost() {
        let slot = std::sync::Arc::new(SingleSlot::new());
        slot.request("early");
        let worker = tokio::spawn({
            let slot = slot.clone();
            async move { slot.next().await }
        });
        assert_eq!(worker.await.unwrap(), "early");
    }
}
