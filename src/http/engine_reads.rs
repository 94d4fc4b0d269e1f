//! The engine reads of unauthenticated pages (the banner's running count, a stack's
//! containers, readiness), shared and cached for a moment, so that a burst of views starts a
//! handful of `docker` processes rather than one each (finding 3: 150 views made 150).
//!
//! Each query (kind and project) is single-flight: views that ask while it runs wait for its
//! answer. An answer, error or not, is reused for [`FRESH_FOR`]; and at most
//! [`MAX_CONCURRENT`] reads run at once, whatever the queries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OnceCell, Semaphore};
use tokio::time::Instant;

use crate::compose::{ComposeError, ContainerInfo, Docker};
use crate::swarm::{ServiceInfo, Swarm, SwarmError, TaskInfo};

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
    ProjectContainers(String),
    SwarmStack(String),
}

/// One answer of any query, as stored.
#[derive(Debug, Clone)]
enum Answer {
    Count(Shared<usize, ComposeError>),
    Version(Shared<String, ComposeError>),
    Containers(Shared<Vec<ContainerInfo>, ComposeError>),
    Swarm(Shared<(Vec<ServiceInfo>, Vec<TaskInfo>), SwarmError>),
}

/// A query's answer once it is in, with when it came.
type Slot = Arc<OnceCell<(Answer, Instant)>>;

/// The shared, briefly cached engine reads of the HTTP handlers.
#[derive(Debug, Clone)]
pub struct EngineReads {
    /// Every query seen in the last [`FRESH_FOR`], in flight or answered. A std mutex: held
    /// only to look up or replace a slot, never across an await.
    slots: Arc<Mutex<HashMap<Query, Slot>>>,
    permits: Arc<Semaphore>,
}

impl Default for EngineReads {
    fn default() -> Self {
        Self {
            slots: Arc::default(),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT)),
        }
    }
}

impl EngineReads {
    /// How many containers run on the host.
    pub async fn running_count(&self, docker: &Docker) -> Shared<usize, ComposeError> {
        let answer = self
            .answer(Query::RunningCount, async {
                Answer::Count(shared(docker.running_count().await))
            })
            .await;
        match answer {
            Answer::Count(count) => count,
            _ => unreachable!("the running count query stores a count"),
        }
    }

    /// The engine's version (readiness).
    pub async fn server_version(&self, docker: &Docker) -> Shared<String, ComposeError> {
        let answer = self
            .answer(Query::ServerVersion, async {
                Answer::Version(shared(docker.server_version().await))
            })
            .await;
        match answer {
            Answer::Version(version) => version,
            _ => unreachable!("the version query stores a version"),
        }
    }

    /// The containers of one compose project.
    pub async fn project_containers(
        &self,
        docker: &Docker,
        project: &str,
    ) -> Shared<Vec<ContainerInfo>, ComposeError> {
        let answer = self
            .answer(Query::ProjectContainers(project.to_owned()), async {
                Answer::Containers(shared(docker.project_containers(project).await))
            })
            .await;
        match answer {
            Answer::Containers(containers) => containers,
            _ => unreachable!("the containers query stores containers"),
        }
    }

    /// The services of one swarm stack and, when it has any, their tasks.
    pub async fn swarm_stack(
        &self,
        swarm: &Swarm,
        stack: &str,
    ) -> Shared<(Vec<ServiceInfo>, Vec<TaskInfo>), SwarmError> {
        let read = async {
            let services = swarm.stack_services(stack).await?;
            let tasks = if services.is_empty() {
                Vec::new()
            } else {
                swarm.tasks(stack).await?
            };
            Ok((services, tasks))
        };
        let answer = self
            .answer(Query::SwarmStack(stack.to_owned()), async {
                Answer::Swarm(shared(read.await))
            })
            .await;
        match answer {
            Answer::Swarm(read) => read,
            _ => unreachable!("the swarm query stores services and tasks"),
        }
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
        let reads = EngineReads::default();
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
    async fn different_queries_are_read_apart_but_never_more_than_the_limit_at_once() {
        let reads = EngineReads::default();
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let read = || async {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            count(0)
        };
        futures_util::future::join_all(
            (0..10).map(|i| reads.answer(Query::ProjectContainers(format!("p{i}")), read())),
        )
        .await;
        assert_eq!(most.load(Ordering::SeqCst), MAX_CONCURRENT);
        assert!(reads.slots.lock().unwrap().len() <= 10);
    }
}
