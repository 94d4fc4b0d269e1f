//! [`HealthWatch`]: how syncs that wait for health (SPEC §9) look at the engine without a
//! process per second per stack. Every sync that waits registers its project; each look at one
//! project reuses a reading younger than [`FRESH_FOR`], or makes one reading (one
//! [`Engine::read`] and one [`Engine::assess`], so one `docker ps` and at most one
//! `docker inspect` in compose mode) for every project that is waiting at that moment. Lookers
//! that come while a reading is made wait for it (single flight). However many stacks wait,
//! the engine is asked about once per poll.
//!
//! Workflow layer. Uses: engine, stack (the assessment), reconcile's plan (counts).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::plan::Counts;
use crate::engine::{Actual, Engine};
use crate::stack::health::Assessment;

/// How often a waiting sync looks. Half a second: a stack reads `healthy` at most that long
/// after its last container did (a healthcheck's own interval is rarely shorter), for one
/// `docker ps` and one `docker inspect` per half second while any sync waits, none otherwise.
pub const POLL: Duration = Duration::from_millis(500);
/// A reading younger than this is reused: a little under [`POLL`], so that every poll of a
/// sync sees a reading made after its previous poll.
pub const FRESH_FOR: Duration = Duration::from_millis(450);

/// What one look at a project found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Look {
    pub assessment: Assessment,
    pub counts: Counts,
}

/// One reading of the engine for the projects that were waiting.
#[derive(Debug)]
struct Reading {
    at: Instant,
    /// `Err`: the engine could not be read (the words for the record).
    looks: Result<BTreeMap<String, Look>, String>,
}

/// The shared, single-flight health readings of the syncs that wait.
#[derive(Debug)]
pub struct HealthWatch {
    engine: Arc<Engine>,
    /// Projects being waited for, with how many syncs wait for each (always one today: never
    /// two operations on one project; counted anyway so that a second waiter is harmless).
    waiting: Mutex<BTreeMap<String, usize>>,
    last: tokio::sync::Mutex<Option<Reading>>,
}

impl HealthWatch {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            waiting: Mutex::default(),
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// Registers a wait for `project`; the wait ends when the guard is dropped.
    pub fn wait_for(self: &Arc<Self>, project: &str) -> Waiting {
        *self.lock_waiting().entry(project.to_owned()).or_default() += 1;
        Waiting {
            watch: self.clone(),
            project: project.to_owned(),
        }
    }

    /// How `project` is doing: from a fresh enough reading, or from a new one.
    pub async fn look(&self, project: &str) -> Result<Look, String> {
        let mut last = self.last.lock().await;
        if let Some(reading) = last.as_ref() {
            let fresh = reading.at.elapsed() < FRESH_FOR;
            let covers = reading
                .looks
                .as_ref()
                .map_or(true, |looks| looks.contains_key(project));
            if fresh && covers {
                return found(&reading.looks, project);
            }
        }
        let mut projects: BTreeSet<String> = self.lock_waiting().keys().cloned().collect();
        projects.insert(project.to_owned());
        let reading = Reading {
            at: Instant::now(),
            looks: self.read(&projects).await,
        };
        let answer = found(&reading.looks, project);
        *last = Some(reading);
        answer
    }

    async fn read(&self, projects: &BTreeSet<String>) -> Result<BTreeMap<String, Look>, String> {
        let actual = self
            .engine
            .read()
            .await
            .map_err(|e| crate::error_chain(&e))?;
        let assessed = self
            .engine
            .assess(&actual, projects)
            .await
            .map_err(|e| crate::error_chain(&e))?;
        let counts = match &actual {
            Actual::Containers(containers) => super::counts_by_project(containers),
            Actual::Services(services) => super::counts_by_project(services),
        };
        Ok(assessed
            .into_iter()
            .map(|(project, assessment)| {
                let counts = counts.get(project.as_str()).copied().unwrap_or_default();
                (project, Look { assessment, counts })
            })
            .collect())
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, usize>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn found(looks: &Result<BTreeMap<String, Look>, String>, project: &str) -> Result<Look, String> {
    match looks {
        Ok(looks) => looks
            .get(project)
            .cloned()
            .ok_or_else(|| format!("the engine said nothing about {project}")),
        Err(e) => Err(e.clone()),
    }
}

/// A registered wait; dropping it ends the wait.
#[derive(Debug)]
pub struct Waiting {
    watch: Arc<HealthWatch>,
    project: String,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut waiting = self.watch.lock_waiting();
        if let Some(count) = waiting.get_mut(&self.project) {
            *count -= 1;
            if *count == 0 {
                waiting.remove(&self.project);
            }
        }
    }
}
