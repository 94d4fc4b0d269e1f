//! [`EngineView`]: the read-only handle on the engine that the HTTP edge gets. It answers the
//! stack detail, the banner's running count and readiness's server version through the
//! [`Engine`] seam (or, when reconciling is disabled, the bare [`Host`]); the edge never holds
//! an engine, a `Docker` or a `Swarm`, and cannot apply or remove anything.
//!
//! The reads of unauthenticated pages are shared and cached for a moment, so that a burst of
//! views starts a handful of `docker` processes rather than one each (finding 3: 150 views made
//! 150). Each query (kind and project) is single-flight: views that ask while it runs wait for
//! its answer. An answer, error or not, is reused for [`FRESH_FOR`]; and at most
//! [`MAX_CONCURRENT`] reads run at once, whatever the queries.
//!
//! Workflow layer (it belongs with the reconciler that owns the engine). Uses: engine, stack
//! (the views it answers with).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OnceCell, Semaphore};
use tokio::time::Instant;

use crate::engine::{Engine, EngineError, Host, StackDescription};

/// How long an answer is reused: the pages update live from the event stream anyway.
pub const FRESH_FOR: Duration = Duration::from_millis(1500);

/// Engine reads for pages running at once.
pub const MAX_CONCURRENT: usize = 2;

/// A read's answer, shared by every view that waited for it.
pub type Shared<T, E> = Result<Arc<T>, Arc<E>>;

/// What a query asks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Query {
    RunningCount,
    ServerVersion,
    Stack(String),
}

/// One answer of any query, as stored.
#[derive(Debug, Clone)]
enum Answer {
    Count(Shared<usize, EngineError>),
    Version(Shared<String, EngineError>),
    Stack(Shared<StackDescription, EngineError>),
}

/// A query's answer once it is in, with when it came.
type Slot = Arc<OnceCell<(Answer, Instant)>>;

/// The shared, briefly cached engine reads of the HTTP handlers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EngineView {
    host: Host,
    /// `None` when reconciling is disabled: stacks are then described as compose containers,
    /// read from the host.
    engine: Option<Arc<Engine>>,
    /// Every query seen in the last [`FRESH_FOR`], in flight or answered. A std mutex: held
    /// only to look up or replace a slot, never across an await.
    slots: Arc<Mutex<HashMap<Query, Slot>>>,
    permits: Arc<Semaphore>,
}

impl EngineView {
    /// A view through `engine` (the reconciler's).
    pub fn new(engine: Arc<Engine>) -> Self {
        Self::with(engine.host().clone(), Some(engine))
    }

    /// A view of the bare host, for an agent that does not reconcile.
    pub fn host_only(host: Host) -> Self {
        Self::with(host, None)
    }

    fn with(host: Host, engine: Option<Arc<Engine>>) -> Self {
        Self {
            host,
            engine,
            slots: Arc::default(),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT)),
        }
    }

    /// Whether stacks are described with services (swarm) besides containers.
    pub fn lists_services(&self) -> bool {
        self.engine.as_deref().is_some_and(Engine::lists_services)
    }

    /// How many containers run on the host.
    pub async fn running_count(&self) -> Shared<usize, EngineError> {
        let answer = self
            .answer(Query::RunningCount, async {
                Answer::Count(shared(self.host.running_count().await))
            })
            .await;
        match answer {
            Answer::Count(count) => count,
            _ => unreachable!("the running count query stores a count"),
        }
    }

    /// The engine's version (readiness).
    pub async fn server_version(&self) -> Shared<String, EngineError> {
        let answer = self
            .answer(Query::ServerVersion, async {
                Answer::Version(shared(self.host.server_version().await))
            })
            .await;
        match answer {
            Answer::Version(version) => version,
            _ => unreachable!("the version query stores a version"),
        }
    }

    /// One stack (compose project or swarm stack `project`; `None` before it has a project
    /// name, which asks the engine nothing): its containers, and in swarm mode its services.
    pub async fn describe(&self, project: Option<&str>) -> Shared<StackDescription, EngineError> {
        let Some(project) = project else {
            return Ok(Arc::new(StackDescription::empty(self.lists_services())));
        };
        let answer = self
            .answer(Query::Stack(project.to_owned()), async {
                let read = match &self.engine {
                    Some(engine) => engine.describe_stack(project).await,
                    None => self.host.describe_containers(project).await,
                };
                Answer::Stack(shared(read))
            })
            .await;
        match answer {
            Answer::Stack(stack) => stack,
            _ => unreachable!("the stack query stores a stack"),
        }
    }

    /// Drops every answer. The reconciler calls it when it has just read or changed the
    /// engine, before it publishes what it found: a page fetched on that news (a stack turned
    /// `drifted`, say) must not be answered from a read made before it. A read in flight
    /// finishes into its own slot, which is no longer found.
    pub fn forget(&self) {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The fresh answer to `query`, from the cache, from the read in flight, or from `read`.
    async fn answer(&self, query: Query, read: impl Future<Output = Answer>) -> Answer {
        let slot = self.slot(query);
        let (answer, _) = slot
            .get_or_init(|| async {
                // The permit bounds the reads of all queries together. If this view goes away
                // while it waits or reads, the next waiter of the slot reads instead.
                let _permit = self.permits.acquire().await;
                (read.await, Instant::now())
            })
            .await;
        answer.clone()
    }

    /// The slot of `query`: the current one, or a new one when it is stale. Stale slots of
    /// other queries are dropped at the same time, so the map holds only the last moment's.
    fn slot(&self, query: Query) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let is_fresh = |slot: &Slot| slot.get().is_none_or(|(_, at)| at.elapsed() < FRESH_FOR);
        slots.retain(|_, slot| is_fresh(slot));
        slots.entry(query).or_default().clone()
    }
}

fn shared<T, E>(result: Result<T, E>) -> Shared<T, E> {
    result.map(Arc::new).map_err(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn count(n: usize) -> Answer {
        Answer::Count(Ok(Arc::new(n)))
    }

    fn value(answer: &Answer) -> usize {
        match answer {
            Answer::Count(Ok(n)) => **n,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_views_share_one_read_and_a_stale_answer_is_read_again() {
        let reads = EngineView::host_only(Host::new("docker".into(), Vec::new()));
        let calls = AtomicUsize::new(0);
        let read = || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            count(n)
        };
        let answers = futures_util::future::join_all(
            (0..50).map(|_| reads.answer(Query::RunningCount, read())),
        )
        .await;
        assert!(answers.iter().all(|a| value(a) == 0));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        tokio::time::advance(FRESH_FOR / 2).await;
        assert_eq!(value(&reads.answer(Query::RunningCount, read()).await), 0);
        tokio::time::advance(FRESH_FOR).await;
        assert_eq!(value(&reads.answer(Query::RunningCount, read()).await), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_forgotten_answer_is_read_again_even_while_fresh() {
        let reads = EngineView::host_only(Host::new("docker".into(), Vec::new()));
        let calls = AtomicUsize::new(0);
        let read = || async { count(calls.fetch_add(1, Ordering::SeqCst)) };
        assert_eq!(value(&reads.answer(Query::RunningCount, read()).await), 0);
        assert_eq!(value(&reads.answer(Query::RunningCount, read()).await), 0);
        reads.forget();
        assert_eq!(value(&reads.answer(Query::RunningCount, read()).await), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn different_queries_are_read_apart_but_never_more_than_the_limit_at_once() {
        let reads = EngineView::host_only(Host::new("docker".into(), Vec::new()));
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let read = || async {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            count(0)
        };
        futures_util::future::join_all(
            (0..10).map(|i| reads.answer(Query::Stack(format!("p{i}")), read())),
        )
        .await;
        assert_eq!(most.load(Ordering::SeqCst), MAX_CONCURRENT);
        assert!(reads.slots.lock().unwrap().len() <= 10);
    }
}
