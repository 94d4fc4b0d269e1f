//! The health of one stack (SPEC §9), decided from what an engine reports: for compose, the
//! `docker ps` lines of the project's containers and, for those that need a closer look, a
//! narrow `docker inspect` ([`ContainerDetail`]); for swarm, the services' replica counts and
//! update state and, for services that are not converged, their tasks.
//!
//! Pure: the engines' adapters read, convert into the input types here, and call
//! [`assess_compose`] or [`assess_swarm`]. The input types are this module's own (not
//! `compose::ContainerInfo` or `swarm::ServiceInfo`) because the stack layer sits below both
//! adapters.
//!
//! Every message is a function of the engine's state only, never of the clock: no "4 minutes
//! ago", no uptime, no failing streak. The store republishes a stack on every change, so two
//! reads of an unchanged state must give the same [`Assessment`].
//!
//! Uses: desired_state ([`Health`]). Spawns nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::desired_state::Health;

/// How many characters of a healthcheck's output or an engine error a message keeps.
const OUTPUT_CAP: usize = 200;
/// A container restarted at least this often …
pub const CRASH_LOOP_RESTARTS: u32 = 3;
/// … and up for less than this is crash-looping.
pub const CRASH_LOOP_UPTIME: Duration = Duration::from_secs(60);
/// A running container without a healthcheck that has been up for less than this is still
/// `progressing` (`just started`): a process that dies at once is running for an instant, and
/// a sync must not take that instant for health. A healthcheck, once it passes, says more.
pub const SETTLE_UPTIME: Duration = Duration::from_secs(2);

/// The health of one stack, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub health: Health,
    /// `<service>: <cause>` for the first service (in name order) with the worst health; `None`
    /// when healthy or missing.
    pub message: Option<String>,
    /// The state cannot get better by itself: healthy, missing, or some service is degraded in
    /// a way no engine retries (a container exited non-zero and was not restarted, dead,
    /// paused, never started; a service gone; a swarm update paused or rolled back). A sync
    /// waiting for health may stop waiting.
    pub settled: bool,
}

impl Assessment {
    /// Nothing of the stack is deployed.
    pub fn missing() -> Self {
        Self {
            health: Health::Missing,
            message: None,
            settled: true,
        }
    }
}

/// One verdict about a container, a task set or a service, before the worst one is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Healthy,
    Progressing(String),
    Degraded { cause: String, settled: bool },
}

impl Verdict {
    fn degraded(cause: impl Into<String>, settled: bool) -> Self {
        Self::Degraded {
            cause: cause.into(),
            settled,
        }
    }

    /// Higher is worse.
    fn rank(&self) -> u8 {
        match self {
            Self::Healthy => 0,
            Self::Progressing(_) => 1,
            Self::Degraded { .. } => 2,
        }
    }
}

/// The stack's assessment from one verdict per service, keyed (and so ordered) by service
/// name: the worst verdict wins, the first service in name order among the worst is named.
fn combine(verdicts: &BTreeMap<&str, Verdict>) -> Assessment {
    if verdicts.is_empty() {
        return Assessment::missing();
    }
    let settled_failure = verdicts
        .values()
        .any(|v| matches!(v, Verdict::Degraded { settled: true, .. }));
    // max_by_key keeps the last maximum; iterate in reverse so the first name wins ties.
    let (service, worst) = verdicts
        .iter()
        .rev()
        .max_by_key(|(_, v)| v.rank())
        .expect("not empty");
    match worst {
        Verdict::Healthy => Assessment {
            health: Health::Healthy,
            message: None,
            settled: true,
        },
        Verdict::Progressing(cause) => Assessment {
            health: Health::Progressing,
            message: Some(format!("{service}: {cause}")),
            settled: false,
        },
        Verdict::Degraded { cause, .. } => Assessment {
            health: Health::Degraded,
            message: Some(format!("{service}: {cause}")),
            settled: settled_failure,
        },
    }
}

/// An engine's free text (healthcheck output, a start error) for a one-line message:
/// whitespace runs (newlines included) become one space, at most [`OUTPUT_CAP`] characters.
fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= OUTPUT_CAP {
        line
    } else {
        let mut cut: String = line.chars().take(OUTPUT_CAP).collect();
        cut.push('…');
        cut
    }
}

// ----- compose -----

/// How long a container has been up, from docker's human status (`docker ps`'s `Status`):
/// `Up Less than a second`, `Up 1 second`, `Up 30 seconds`, `Up About a minute`,
/// `Up 5 minutes`, `Up About an hour`, `Up 2 hours`, `Up 3 days`, `Up 2 weeks`, `Up 3 months`,
/// `Up 2 years`, any of them followed by ` (healthy)`, ` (unhealthy)`, ` (health: starting)` or
/// ` (Paused)`. The lower bound of what the text covers ("About a minute" is 60 to 119
/// seconds: 60). `None` for a status that is not `Up …`.
pub fn uptime(status: &str) -> Option<Duration> {
    let rest = status.strip_prefix("Up ")?;
    human_duration(rest.split(" (").next().unwrap_or(rest))
}

/// A duration in the docker CLI's words (go-units' `HumanDuration`): `Less than a second`
/// (`less than a second` in task states), `1 second`, `30 seconds`, `About a minute`,
/// `5 minutes`, `About an hour`, `2 hours`, `3 days`, `2 weeks`, `3 months`, `2 years`. The lower
/// bound of what the text covers.
fn human_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let seconds = match text.to_ascii_lowercase().as_str() {
        "less than a second" => 0,
        "about a minute" => 60,
        "about an hour" => 3600,
        _ => {
            let (count, unit) = text.split_once(' ')?;
            let count: u64 = count.parse().ok()?;
            let unit = match unit.trim_end_matches('s') {
                "second" => 1,
                "minute" => 60,
                "hour" => 3600,
                "day" => 86_400,
                "week" => 7 * 86_400,
                "month" => 30 * 86_400,
                "year" => 365 * 86_400,
                _ => return None,
            };
            count * unit
        }
    };
    Some(Duration::from_secs(seconds))
}

/// One container of a compose project as `docker ps` lists it (the compose adapter's
/// `ContainerInfo`, borrowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerLine<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// `com.docker.compose.service`.
    pub service: &'a str,
    /// `created`, `restarting`, `running`, `removing`, `paused`, `exited` or `dead`.
    pub state: &'a str,
    /// `Up 5 minutes (healthy)`, `Exited (3) 2 seconds ago`, `Restarting (1) 1 second ago`, …
    pub status: &'a str,
}

impl ContainerLine<'_> {
    /// The code in `Exited (3) …` or `Restarting (1) …`.
    fn status_code(&self) -> Option<i64> {
        let rest = self
            .status
            .strip_prefix("Exited (")
            .or_else(|| self.status.strip_prefix("Restarting ("))?;
        rest.split(')').next()?.parse().ok()
    }

    /// A look at `docker inspect` can change the verdict about this container. Not for a
    /// container running with `(healthy)`, nor for one running without a healthcheck for a
    /// minute or more (too long up to be crash-looping): a steady healthy host needs no inspect.
    pub fn needs_detail(&self) -> bool {
        if self.state != "running" {
            return true;
        }
        if self.status.ends_with("(healthy)") {
            return false;
        }
        if self.status.contains("(unhealthy)") || self.status.contains("(health: starting)") {
            return true;
        }
        uptime(self.status).is_none_or(|up| up < CRASH_LOOP_UPTIME)
    }
}

/// What `docker inspect` adds about one container (the compose adapter's narrow template).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDetail {
    /// The full container id.
    pub id: String,
    /// `.RestartCount`: restarts by the restart policy since the container was created.
    pub restart_count: u32,
    /// `.State.Status`, newer than the `docker ps` line's state.
    pub status: String,
    /// `.State.ExitCode`: of the last exit (0 while running).
    pub exit_code: i64,
    /// `.State.OOMKilled`.
    #[serde(rename = "oomKilled")]
    pub oom_killed: bool,
    /// `.State.Error`: why the engine could not start it, if it could not.
    pub error: String,
    /// `.State.Health`; `None` without a healthcheck.
    pub health: Option<HealthDetail>,
    /// `.HostConfig.RestartPolicy.Name`: `no`, `always`, `unless-stopped`, `on-failure` (or
    /// empty).
    pub restart_policy: String,
    /// `.State.StartedAt`, RFC 3339 (`0001-01-01T00:00:00Z` if never started).
    pub started_at: String,
}

/// The healthcheck part of [`ContainerDetail`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthDetail {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    pub failing_streak: u32,
    /// The output of the last check (absent before the first one).
    #[serde(default)]
    pub last_output: Option<String>,
    #[serde(default)]
    pub last_exit_code: Option<i64>,
}

/// `word (fact, fact)`, or `word` without facts.
fn with_facts<const N: usize>(word: &str, facts: [Option<String>; N]) -> String {
    let facts: Vec<String> = facts.into_iter().flatten().collect();
    if facts.is_empty() {
        word.to_owned()
    } else {
        format!("{word} ({})", facts.join(", "))
    }
}

/// The verdict about one container.
///
/// The crash-loop rule: a container that is running (by its newest state), has been
/// restarted by its restart policy at least [`CRASH_LOOP_RESTARTS`] times, and whose `docker
/// ps` status says it has been up for less than [`CRASH_LOOP_UPTIME`] (`Up Less than a second`
/// … `Up 59 seconds`). It needs the detail (the restart count); without it a container is
/// judged on its `ps` line alone.
fn container_verdict(line: &ContainerLine<'_>, detail: Option<&ContainerDetail>) -> Verdict {
    let state = detail.map_or(line.state, |d| d.status.as_str());
    let exit_code = detail.map(|d| d.exit_code).or_else(|| line.status_code());
    let oom = detail
        .is_some_and(|d| d.oom_killed)
        .then(|| "OOM killed".to_owned());
    let with_error = |cause: String| match detail.map(|d| d.error.trim()) {
        Some(error) if !error.is_empty() => format!("{cause}: {}", one_line(error)),
        _ => cause,
    };
    match state {
        "running" => {
            let health = detail
                .and_then(|d| d.health.as_ref())
                .map(|h| h.status.as_str())
                .or_else(|| {
                    if line.status.contains("(unhealthy)") {
                        Some("unhealthy")
                    } else if line.status.ends_with("(healthy)") {
                        // `needs_detail` skips the inspect of such a line: without this, a
                        // container healthy by its check would wait out the settle time of one
                        // without a check.
                        Some("healthy")
                    } else if line.status.contains("(health: starting)") {
                        Some("starting")
                    } else {
                        None
                    }
                });
            let restarts = detail.map_or(0, |d| d.restart_count);
            // Running by the inspect but not `Up …` by the earlier `ps`: it has just started.
            let up = uptime(line.status).unwrap_or(Duration::ZERO);
            if health == Some("unhealthy") {
                let output = detail
                    .and_then(|d| d.health.as_ref())
                    .and_then(|h| h.last_output.as_deref())
                    .map(one_line)
                    .filter(|o| !o.is_empty());
                Verdict::degraded(
                    match output {
                        Some(output) => format!("unhealthy: {output}"),
                        None => "unhealthy".to_owned(),
                    },
                    false,
                )
            } else if restarts >= CRASH_LOOP_RESTARTS && up < CRASH_LOOP_UPTIME {
                Verdict::degraded(format!("crash-looping ({restarts} restarts)"), false)
            } else if health == Some("starting") {
                Verdict::Progressing("health: starting".to_owned())
            } else if health.is_none() && up < SETTLE_UPTIME {
                Verdict::Progressing("just started".to_owned())
            } else {
                Verdict::Healthy
            }
        }
        "restarting" => {
            let restarts = detail.map(|d| match d.restart_count {
                1 => "1 restart".to_owned(),
                n => format!("{n} restarts"),
            });
            let code = exit_code.map(|c| format!("exit code {c}"));
            Verdict::degraded(with_facts("restarting", [code, restarts, oom]), false)
        }
        // The daemon decides at exit whether the restart policy restarts a container (it is
        // then `restarting`); one left `exited` stays so until someone acts.
        "exited" if exit_code == Some(0) => Verdict::Healthy,
        "exited" => {
            let code = exit_code.map(|c| format!("exit code {c}"));
            Verdict::degraded(with_error(with_facts("exited", [code, oom])), true)
        }
        "dead" => Verdict::degraded(with_error("dead".to_owned()), true),
        "paused" => Verdict::degraded("paused", true),
        // `up` returned and left it created: it did not start, and will not by itself.
        "created" => Verdict::degraded(with_error("created, not started".to_owned()), true),
        "removing" => Verdict::Progressing("removing".to_owned()),
        other => Verdict::degraded(format!("state {other}"), false),
    }
}

/// The health of a compose project.
///
/// `desired`: the services its last sync recorded (`com.docker-cd.services`); empty when no
/// record exists, and then the services of `containers` are the desired ones. `containers`: the
/// project's containers, `compose run` ones already left out; containers of services not
/// desired (orphans) are ignored. `details`: the inspected containers (any subset; a container
/// without one is judged on its `ps` line).
///
/// With several containers per service (scale), the worst container counts (the first in name
/// order among the worst); a desired service without a container is degraded
/// (`db: no container`).
pub fn assess_compose(
    desired: &[&str],
    containers: &[ContainerLine<'_>],
    details: &[ContainerDetail],
) -> Assessment {
    if containers.is_empty() {
        return Assessment::missing();
    }
    let details: BTreeMap<&str, &ContainerDetail> =
        details.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut verdicts: BTreeMap<&str, Verdict> = if desired.is_empty() {
        containers
            .iter()
            .map(|c| (c.service, Verdict::Healthy))
            .collect()
    } else {
        desired.iter().map(|s| (*s, Verdict::Healthy)).collect()
    };
    let mut present: BTreeMap<&str, Vec<&ContainerLine<'_>>> = BTreeMap::new();
    for c in containers {
        if verdicts.contains_key(c.service) {
            present.entry(c.service).or_default().push(c);
        }
    }
    for (service, verdict) in &mut verdicts {
        let Some(mine) = present.get_mut(service) else {
            *verdict = Verdict::degraded("no container", true);
            continue;
        };
        mine.sort_by_key(|c| c.name);
        *verdict = mine
            .iter()
            .rev()
            .map(|c| container_verdict(c, details.get(c.id).copied()))
            .max_by_key(Verdict::rank)
            .unwrap_or(Verdict::Healthy);
    }
    combine(&verdicts)
}

// ----- swarm -----

/// For this long after a sync (its `com.docker-cd.synced-at`), a swarm service's tasks are
/// read even when `docker service ls` counts every replica running. A task that fails at once
/// is `Running` for an instant of each restart cycle (in about 3 % of `service ls` readings for
/// `sh -c 'exit 1'` under swarm's default 5 s restart delay, measured on Engine 20.10), and a
/// sync waiting for health must not take that instant for health. Several times the default
/// SYNC_HEALTH_TIMEOUT (2m); later, the counts of `service ls` are trusted (no `service ps` on
/// a steady host).
pub const SWARM_WATCH_AFTER_SYNC: Duration = Duration::from_secs(600);

/// How long the CLI's words say a task has been in its current state: the lower bound of
/// `Running 5 seconds ago`, `Starting less than a second ago`, `Failed About a minute ago`.
/// `None` for a text not of that shape.
pub fn task_state_age(current_state: &str) -> Option<Duration> {
    let (_, rest) = current_state.split_once(' ')?;
    human_duration(rest.strip_suffix(" ago")?)
}

/// One task of a swarm service (the swarm adapter's `TaskInfo`, borrowed), in `docker service
/// ps` order: by slot, the newest task of a slot first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLine<'a> {
    /// `<stack>_<service>.<slot>` (replicated) or `<stack>_<service>.<node id>` (global): the
    /// same for every task of one slot.
    pub slot: &'a str,
    /// `Running`, `Shutdown`, `Complete`, …
    pub desired_state: &'a str,
    /// The current state's first word, lower-cased: `running`, `starting`, `failed`, …
    pub state: String,
    /// Why it failed or is stuck, without the CLI's quotes; empty if nothing.
    pub error: &'a str,
    pub image: &'a str,
    /// How long it has been in its current state, at least ([`task_state_age`]).
    pub age: Option<Duration>,
}

impl TaskLine<'_> {
    /// Counts as a running replica: desired and current state both running (a task of a node
    /// that went down stays `running` in the record, with desired state `Shutdown`), for at
    /// least [`SETTLE_UPTIME`] (a task that fails at once is running for an instant).
    fn is_running(&self) -> bool {
        self.state == "running"
            && self.desired_state.eq_ignore_ascii_case("running")
            && self.age.is_none_or(|age| age >= SETTLE_UPTIME)
    }

    fn is_failed(&self) -> bool {
        matches!(self.state.as_str(), "failed" | "rejected")
    }

    /// The error without swarm's `task: ` prefix (`non-zero exit (1)`).
    fn error_text(&self) -> String {
        one_line(self.error.strip_prefix("task: ").unwrap_or(self.error))
    }
}

/// One service of a swarm stack (the swarm adapter's `ServiceInfo`, borrowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLine<'a> {
    /// The compose service name (without the stack prefix).
    pub service: &'a str,
    /// `replicated`, `global`, `replicated-job` or `global-job`.
    pub mode: &'a str,
    /// Running and desired tasks, as `docker service ls` counts them.
    pub running: u32,
    pub desired: u32,
    /// The spec's image (`name:tag@sha256:…` once resolved).
    pub image: &'a str,
    pub update_state: Option<&'a str>,
    pub update_message: Option<&'a str>,
    /// How long ago the stack's last sync was (its `com.docker-cd.synced-at`); `None` without
    /// a record.
    pub since_sync: Option<Duration>,
    /// Its tasks, when they were read (only for services that [`need_tasks`](Self::needs_tasks)).
    pub tasks: Option<Vec<TaskLine<'a>>>,
}

impl ServiceLine<'_> {
    /// `docker service ls` says every desired task runs, and no update is under way or
    /// stuck: the tasks would add nothing.
    pub fn is_converged(&self) -> bool {
        self.running == self.desired
            && !matches!(
                self.update_state,
                Some("updating" | "paused" | "rollback_started" | "rollback_paused")
            )
    }

    /// Its health needs its tasks: not [`is_converged`](Self::is_converged), or synced less
    /// than [`SWARM_WATCH_AFTER_SYNC`] ago (a crash loop's instant of `Running` looks
    /// converged).
    pub fn needs_tasks(&self) -> bool {
        !self.is_converged()
            || self
                .since_sync
                .is_some_and(|since| since < SWARM_WATCH_AFTER_SYNC)
    }

    fn is_job(&self) -> bool {
        self.mode.ends_with("-job")
    }

    /// The task runs this spec's image (compared without the digest), or says nothing of it.
    fn is_current(&self, task: &TaskLine<'_>) -> bool {
        let bare = |image: &str| image.split('@').next().unwrap_or_default().to_owned();
        task.image.is_empty() || self.image.is_empty() || bare(task.image) == bare(self.image)
    }

    fn verdict(&self) -> Verdict {
        let message = self.update_message.unwrap_or("no message");
        match self.update_state {
            Some("paused") => return Verdict::degraded(format!("update paused: {message}"), true),
            Some("rollback_paused") => {
                return Verdict::degraded(format!("rollback paused: {message}"), true);
            }
            Some("rollback_started") => {
                return Verdict::degraded(format!("rolling back: {message}"), false);
            }
            Some("rollback_completed") => {
                return Verdict::degraded(format!("rolled back: {message}"), true);
            }
            _ => {}
        }
        let Some(tasks) = &self.tasks else {
            return if self.running >= self.desired && self.update_state != Some("updating") {
                Verdict::Healthy
            } else if self.running >= self.desired {
                Verdict::Progressing("update in progress".to_owned())
            } else {
                Verdict::Progressing(self.replicas(self.running))
            };
        };
        // The newest task of each slot.
        let mut newest: Vec<&TaskLine<'_>> = Vec::new();
        for task in tasks {
            if newest.last().is_none_or(|t| t.slot != task.slot) {
                newest.push(task);
            }
        }
        if self.is_job() {
            if let Some(failed) = newest.iter().find(|t| t.is_failed()) {
                return Verdict::degraded(format!("job failed: {}", failed.error_text()), false);
            }
            return if !newest.is_empty() && newest.iter().all(|t| t.state == "complete") {
                Verdict::Healthy
            } else {
                Verdict::Progressing("job running".to_owned())
            };
        }
        let running =
            u32::try_from(tasks.iter().filter(|t| t.is_running()).count()).unwrap_or(u32::MAX);
        if running >= self.desired {
            return if self.update_state == Some("updating") {
                Verdict::Progressing("update in progress".to_owned())
            } else {
                Verdict::Healthy
            };
        }
        let failed = tasks
            .iter()
            .filter(|t| t.is_failed() && self.is_current(t))
            .find(|t| !t.error.is_empty())
            .or_else(|| tasks.iter().find(|t| t.is_failed() && self.is_current(t)));
        if let Some(failed) = failed {
            let error = failed.error_text();
            let error = if error.is_empty() {
                String::new()
            } else {
                format!(": {error}")
            };
            return Verdict::degraded(
                format!("{}; task {}{error}", self.replicas(running), failed.state),
                false,
            );
        }
        // Converging; a task the scheduler cannot place says why (`no suitable node (…)`).
        let stuck = newest
            .iter()
            .find(|t| !t.is_running() && !t.error.is_empty() && t.state != "shutdown");
        let just_started = newest.iter().any(|t| {
            t.state == "running"
                && !t.is_running()
                && t.desired_state.eq_ignore_ascii_case("running")
        });
        match stuck {
            Some(t) => Verdict::Progressing(format!(
                "{}; task {}: {}",
                self.replicas(running),
                t.state,
                t.error_text()
            )),
            None if just_started => {
                Verdict::Progressing(format!("{}; just started", self.replicas(running)))
            }
            None => Verdict::Progressing(self.replicas(running)),
        }
    }

    fn replicas(&self, running: u32) -> String {
        format!("{running}/{} replicas running", self.desired)
    }
}

/// The health of a swarm stack. `desired`: the services its last sync recorded
/// (`com.docker-cd.services`; empty when no record exists, and then the services present are
/// the desired ones). `services`: the stack's services.
///
/// A service whose tasks were read counts its running replicas from them (desired and current
/// state both running, for at least [`SETTLE_UPTIME`]); otherwise from `docker service ls`. Fewer than desired with a failed or
/// rejected task of the current spec (same image) is degraded, naming the task error; fewer
/// without one is progressing. An update paused, rolling back or rolled back is degraded.
pub fn assess_swarm(desired: &[&str], services: &[ServiceLine<'_>]) -> Assessment {
    if services.is_empty() {
        return Assessment::missing();
    }
    let mut verdicts: BTreeMap<&str, Verdict> = if desired.is_empty() {
        services
            .iter()
            .map(|s| (s.service, Verdict::Healthy))
            .collect()
    } else {
        desired.iter().map(|s| (*s, Verdict::Healthy)).collect()
    };
    for (service, verdict) in &mut verdicts {
        *verdict = match services.iter().find(|s| s.service == *service) {
            Some(s) => s.verdict(),
            None => Verdict::degraded("no service", true),
        };
    }
    combine(&verdicts)
}

#[cfg(test)]
mod tests {
    use super::*;

    // `docker ps` states and statuses and `docker inspect` details (the compose adapter's
    // template) captured from Docker Engine 20.10.24 with the test image; ids shortened. `dead`
    // and `removing` could not be produced on demand and are written in the same shapes.
    const DETAILS: &str = r#"{"id":"plain","restartCount":0,"status":"running","exitCode":0,"oomKilled":false,"error":"","health":null,"restartPolicy":"no","startedAt":"2026-12-02T00:48:36.085308231Z"}
{"id":"gaveup","restartCount":2,"status":"exited","exitCode":1,"oomKilled":false,"error":"","health":null,"restartPolicy":"on-failure","startedAt":"2026-12-02T00:48:37.01537584Z"}
{"id":"created","restartCount":0,"status":"created","exitCode":0,"oomKilled":false,"error":"","health":null,"restartPolicy":"no","startedAt":"0001-01-01T00:00:00Z"}
{"id":"paused","restartCount":0,"status":"paused","exitCode":0,"oomKilled":false,"error":"","health":null,"restartPolicy":"no","startedAt":"2026-12-02T00:48:34.294196306Z"}
{"id":"exited3","restartCount":0,"status":"exited","exitCode":3,"oomKilled":false,"error":"","health":null,"restartPolicy":"no","startedAt":"2026-12-02T00:48:33.802483399Z"}
{"id":"exited0","restartCount":0,"status":"exited","exitCode":0,"oomKilled":false,"error":"","health":null,"restartPolicy":"no","startedAt":"2026-12-02T00:48:33.143776669Z"}
{"id":"restarting","restartCount":8,"status":"restarting","exitCode":1,"oomKilled":false,"error":"","health":null,"restartPolicy":"always","startedAt":"2026-12-02T00:48:48.876261488Z"}
{"id":"starting","restartCount":0,"status":"running","exitCode":0,"oomKilled":false,"error":"","health":{"status":"starting","failingStreak":0},"restartPolicy":"no","startedAt":"2026-12-02T00:48:32.223680826Z"}
{"id":"unhealthy","restartCount":0,"status":"running","exitCode":0,"oomKilled":false,"error":"","health":{"status":"unhealthy","failingStreak":26,"lastOutput":"boom: cannot connect to 127.0.0.1:8080\n","lastExitCode":1},"restartPolicy":"no","startedAt":"2026-12-02T00:48:31.858101644Z"}
{"id":"healthy","restartCount":0,"status":"running","exitCode":0,"oomKilled":false,"error":"","health":{"status":"healthy","failingStreak":0,"lastOutput":"","lastExitCode":0},"restartPolicy":"no","startedAt":"2026-12-02T00:48:31.55286127Z"}
{"id":"loop","restartCount":3,"status":"running","exitCode":0,"oomKilled":false,"error":"","health":null,"restartPolicy":"always","startedAt":"2026-12-02T00:50:40.736602088Z"}
{"id":"badcmd","restartCount":0,"status":"created","exitCode":127,"oomKilled":false,"error":"failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"/nonexistent\": stat /nonexistent: no such file or directory: unknown","health":null,"restartPolicy":"no","startedAt":"0001-01-01T00:00:00Z"}
{"id":"dead","restartCount":0,"status":"dead","exitCode":137,"oomKilled":false,"error":"driver failed programming external connectivity","health":null,"restartPolicy":"no","startedAt":"2026-12-02T00:48:31.55286127Z"}
{"id":"oom","restartCount":0,"status":"exited","exitCode":137,"oomKilled":true,"error":"","health":null,"restartPolicy":"no","startedAt":"2026-12-02T00:48:31.55286127Z"}"#;

    /// The `docker ps` `(id, state, status)` of each captured container.
    const LINES: &[(&str, &str, &str)] = &[
        ("plain", "running", "Up About a minute"),
        ("fresh", "running", "Up 8 seconds"),
        ("gaveup", "exited", "Exited (1) About a minute ago"),
        ("created", "created", "Created"),
        ("paused", "paused", "Up About a minute (Paused)"),
        ("exited3", "exited", "Exited (3) About a minute ago"),
        ("exited0", "exited", "Exited (0) About a minute ago"),
        ("restarting", "restarting", "Restarting (1) 45 seconds ago"),
        (
            "starting",
            "running",
            "Up About a minute (health: starting)",
        ),
        ("unhealthy", "running", "Up About a minute (unhealthy)"),
        ("healthy", "running", "Up About a minute (healthy)"),
        ("loop", "running", "Up Less than a second"),
        ("badcmd", "created", "Created"),
        ("dead", "dead", "Dead"),
        ("removing", "removing", "Removal In Progress"),
        ("oom", "exited", "Exited (137) 2 minutes ago"),
    ];

    fn details() -> Vec<ContainerDetail> {
        DETAILS
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The captured container `id` as container `name` of `service`.
    fn line<'a>(id: &'a str, service: &'a str, name: &'a str) -> ContainerLine<'a> {
        let (_, state, status) = LINES.iter().find(|(i, ..)| *i == id).unwrap();
        ContainerLine {
            id,
            name,
            service,
            state,
            status,
        }
    }

    /// The assessment of one service `web` whose one container is the captured `id`, with
    /// and without its detail.
    fn web(id: &str) -> (Assessment, Assessment) {
        let c = [line(id, "web", "p-web-1")];
        (
            assess_compose(&["web"], &c, &details()),
            assess_compose(&["web"], &c, &[]),
        )
    }

    fn verdict(health: Health, message: Option<&str>, settled: bool) -> Assessment {
        Assessment {
            health,
            message: message.map(str::to_owned),
            settled,
        }
    }

    #[test]
    fn a_steady_healthy_host_needs_no_inspect() {
        let needs = |id| line(id, "web", "w").needs_detail();
        assert!(!needs("plain"), "running a minute or more, no healthcheck");
        assert!(!needs("healthy"));
        for id in [
            "fresh",
            "gaveup",
            "created",
            "paused",
            "exited3",
            "exited0",
            "restarting",
            "starting",
            "unhealthy",
            "loop",
            "dead",
            "removing",
        ] {
            assert!(needs(id), "{id}");
        }
    }

    #[test]
    fn running_containers_with_and_without_healthcheck_are_healthy() {
        let c = [
            line("plain", "worker", "p-worker-1"),
            line("healthy", "web", "p-web-1"),
        ];
        let healthy = verdict(Health::Healthy, None, true);
        assert_eq!(assess_compose(&["web", "worker"], &c, &details()), healthy);
        assert_eq!(assess_compose(&["web", "worker"], &c, &[]), healthy);
        let fresh = [line("fresh", "web", "p-web-1")];
        assert_eq!(assess_compose(&["web"], &fresh, &[]), healthy);
    }

    #[test]
    fn a_container_without_healthcheck_up_for_less_than_two_seconds_has_just_started() {
        let just = verdict(Health::Progressing, Some("web: just started"), false);
        for status in ["Up Less than a second", "Up 1 second"] {
            let mut c = line("fresh", "web", "p-web-1");
            c.status = status;
            assert_eq!(assess_compose(&["web"], &[c], &[]), just, "{status}");
        }
        let mut c = line("fresh", "web", "p-web-1");
        c.status = "Up 2 seconds";
        assert_eq!(
            assess_compose(&["web"], &[c], &[]),
            verdict(Health::Healthy, None, true)
        );
    }

    /// Healthy by its own check a second after start: healthy at once, as `up --wait` says; the
    /// settle time is for containers without a check. (The inspect is skipped for such a line.)
    #[test]
    fn a_container_healthy_by_its_check_right_after_start_is_healthy() {
        for status in ["Up Less than a second (healthy)", "Up 1 second (healthy)"] {
            let mut c = line("healthy", "web", "p-web-1");
            c.status = status;
            assert!(!c.needs_detail(), "{status}");
            assert_eq!(
                assess_compose(&["web"], &[c], &[]),
                verdict(Health::Healthy, None, true),
                "{status}"
            );
        }
    }

    #[test]
    fn a_starting_healthcheck_is_progressing() {
        let (with, without) = web("starting");
        let expected = verdict(Health::Progressing, Some("web: health: starting"), false);
        assert_eq!((with.clone(), without), (expected.clone(), expected));
    }

    #[test]
    fn an_unhealthy_container_is_degraded_with_its_last_check_output() {
        let (with, without) = web("unhealthy");
        assert_eq!(
            with,
            verdict(
                Health::Degraded,
                Some("web: unhealthy: boom: cannot connect to 127.0.0.1:8080"),
                false
            )
        );
        assert_eq!(
            without,
            verdict(Health::Degraded, Some("web: unhealthy"), false)
        );
    }

    #[test]
    fn a_restarting_container_is_degraded_with_exit_code_and_restarts() {
        let (with, without) = web("restarting");
        assert_eq!(
            with,
            verdict(
                Health::Degraded,
                Some("web: restarting (exit code 1, 8 restarts)"),
                false
            )
        );
        assert_eq!(
            without.message.as_deref(),
            Some("web: restarting (exit code 1)")
        );
    }

    #[test]
    fn a_one_shot_that_exited_0_beside_a_long_runner_is_healthy() {
        let c = [
            line("exited0", "job", "p-job-1"),
            line("plain", "web", "p-web-1"),
        ];
        assert_eq!(
            assess_compose(&["job", "web"], &c, &details()),
            verdict(Health::Healthy, None, true)
        );
    }

    #[test]
    fn exited_non_zero_is_degraded_and_settled() {
        let (with, without) = web("exited3");
        let expected = verdict(Health::Degraded, Some("web: exited (exit code 3)"), true);
        assert_eq!((with.clone(), without), (expected.clone(), expected));
        let (gave_up, _) = web("gaveup");
        assert_eq!(
            gave_up,
            verdict(Health::Degraded, Some("web: exited (exit code 1)"), true)
        );
        let (oom, _) = web("oom");
        assert_eq!(
            oom.message.as_deref(),
            Some("web: exited (exit code 137, OOM killed)")
        );
    }

    #[test]
    fn dead_paused_and_created_are_degraded_and_settled() {
        assert_eq!(
            web("dead").0,
            verdict(
                Health::Degraded,
                Some("web: dead: driver failed programming external connectivity"),
                true
            )
        );
        assert_eq!(
            web("paused").0,
            verdict(Health::Degraded, Some("web: paused"), true)
        );
        assert_eq!(
            web("created").0,
            verdict(Health::Degraded, Some("web: created, not started"), true)
        );
        assert_eq!(
            web("badcmd").0.message.as_deref(),
            Some(
                "web: created, not started: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"/nonexistent\": stat /nonexistent: no such file or directory: unknown"
            )
        );
    }

    #[test]
    fn removing_is_progressing() {
        assert_eq!(
            web("removing").1,
            verdict(Health::Progressing, Some("web: removing"), false)
        );
    }

    #[test]
    fn a_crash_loop_is_restarted_three_times_and_up_less_than_a_minute() {
        let (with, without) = web("loop");
        assert_eq!(
            with,
            verdict(
                Health::Degraded,
                Some("web: crash-looping (3 restarts)"),
                false
            )
        );
        assert_eq!(
            without.message.as_deref(),
            Some("web: just started"),
            "no restart count, no crash loop: only just started"
        );
        let mut details = details();
        let loop_detail = details.iter_mut().find(|d| d.id == "loop").unwrap();
        loop_detail.restart_count = 2;
        let c = [line("loop", "web", "p-web-1")];
        assert_eq!(
            assess_compose(&["web"], &c, &details).message.as_deref(),
            Some("web: just started"),
            "two restarts are not a loop yet"
        );
        // Up a minute after 3 restarts: it recovered.
        let mut details = self::details();
        let plain = details.iter_mut().find(|d| d.id == "plain").unwrap();
        plain.restart_count = 3;
        let c = [line("plain", "web", "p-web-1")];
        assert_eq!(
            assess_compose(&["web"], &c, &details).health,
            Health::Healthy
        );
    }

    #[test]
    fn a_desired_service_without_container_is_degraded() {
        let c = [line("healthy", "web", "p-web-1")];
        assert_eq!(
            assess_compose(&["db", "web"], &c, &details()),
            verdict(Health::Degraded, Some("db: no container"), true)
        );
    }

    #[test]
    fn nothing_deployed_is_missing() {
        assert_eq!(
            assess_compose(&["web"], &[], &[]),
            verdict(Health::Missing, None, true)
        );
    }

    #[test]
    fn with_scale_the_worst_container_counts() {
        let c = [
            line("healthy", "web", "p-web-1"),
            line("unhealthy", "web", "p-web-2"),
        ];
        assert_eq!(
            assess_compose(&["web"], &c, &details()).message.as_deref(),
            Some("web: unhealthy: boom: cannot connect to 127.0.0.1:8080")
        );
        // Two bad ones: the first in name order is named, whatever the order docker lists.
        let c = [
            line("exited3", "web", "p-web-2"),
            line("gaveup", "web", "p-web-1"),
        ];
        assert_eq!(
            assess_compose(&["web"], &c, &details()).message.as_deref(),
            Some("web: exited (exit code 1)")
        );
    }

    #[test]
    fn the_worst_service_wins_and_the_first_in_name_order_is_named() {
        let c = [
            line("starting", "api", "p-api-1"),
            line("unhealthy", "web", "p-web-1"),
            line("restarting", "worker", "p-worker-1"),
            line("healthy", "cache", "p-cache-1"),
        ];
        let a = assess_compose(&["api", "cache", "web", "worker"], &c, &details());
        assert_eq!(
            a,
            verdict(
                Health::Degraded,
                Some("web: unhealthy: boom: cannot connect to 127.0.0.1:8080"),
                false
            )
        );
        let c = [
            line("starting", "api", "p-api-1"),
            line("healthy", "web", "p-web-1"),
        ];
        assert_eq!(
            assess_compose(&["api", "web"], &c, &details()).health,
            Health::Progressing
        );
    }

    #[test]
    fn one_settled_failure_settles_the_stack() {
        let c = [
            line("exited3", "job", "p-job-1"),
            line("starting", "web", "p-web-1"),
        ];
        assert_eq!(
            assess_compose(&["job", "web"], &c, &details()),
            verdict(Health::Degraded, Some("job: exited (exit code 3)"), true)
        );
    }

    #[test]
    fn orphans_are_ignored_and_without_a_record_the_present_services_are_desired() {
        let c = [
            line("healthy", "web", "p-web-1"),
            line("exited3", "old", "p-old-1"),
        ];
        assert_eq!(
            assess_compose(&["web"], &c, &details()).health,
            Health::Healthy
        );
        assert_eq!(
            assess_compose(&[], &c, &details()).message.as_deref(),
            Some("old: exited (exit code 3)")
        );
    }

    #[test]
    fn the_detail_is_newer_than_the_ps_line() {
        // `ps` saw it running; by the inspect it had exited.
        let c = [ContainerLine {
            state: "running",
            status: "Up 2 seconds",
            ..line("exited3", "web", "p-web-1")
        }];
        assert_eq!(
            assess_compose(&["web"], &c, &details()).message.as_deref(),
            Some("web: exited (exit code 3)")
        );
    }

    #[test]
    fn every_captured_container_at_once_names_the_first_degraded_service() {
        let services: Vec<String> = LINES.iter().map(|(id, ..)| format!("s-{id}")).collect();
        let names: Vec<String> = LINES.iter().map(|(id, ..)| format!("p-{id}-1")).collect();
        let c: Vec<ContainerLine<'_>> = LINES
            .iter()
            .zip(services.iter().zip(&names))
            .map(|((id, ..), (service, name))| line(id, service, name))
            .collect();
        let desired: Vec<&str> = services.iter().map(String::as_str).collect();
        let details = details();
        let first = assess_compose(&desired, &c, &details);
        assert_eq!(
            first.message.as_deref(),
            Some(
                "s-badcmd: created, not started: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"/nonexistent\": stat /nonexistent: no such file or directory: unknown"
            )
        );
        assert!(first.settled);
        // Stable: the same state reads the same.
        assert_eq!(assess_compose(&desired, &c, &details), first);
    }

    fn service<'a>(
        update_state: Option<&'a str>,
        tasks: Option<Vec<TaskLine<'a>>>,
    ) -> ServiceLine<'a> {
        ServiceLine {
            service: "web",
            mode: "replicated",
            running: 2,
            desired: 2,
            image: "docker-cd-test/busybox:latest@sha256:abc",
            update_state,
            update_message: Some(
                "update rolled back due to failure or early termination of task x",
            ),
            since_sync: None,
            tasks,
        }
    }

    #[test]
    fn swarm_updates_under_way_progress_and_rollbacks_degrade() {
        let one = |s: ServiceLine<'_>| assess_swarm(&["web"], &[s]);
        assert!(service(Some("completed"), None).is_converged());
        assert_eq!(
            one(service(Some("completed"), None)).health,
            Health::Healthy
        );
        assert!(!service(Some("updating"), None).is_converged());
        assert_eq!(
            one(service(Some("updating"), Some(Vec::new()))),
            verdict(
                Health::Progressing,
                Some("web: 0/2 replicas running"),
                false
            )
        );
        let running = |slot| TaskLine {
            slot,
            desired_state: "Running",
            state: "running".to_owned(),
            error: "",
            image: "docker-cd-test/busybox:latest",
            age: Some(Duration::from_secs(30)),
        };
        let tasks = vec![running("s_web.1"), running("s_web.2")];
        assert_eq!(
            one(service(Some("updating"), Some(tasks))),
            verdict(Health::Progressing, Some("web: update in progress"), false)
        );
        let started = one(service(Some("rollback_started"), None));
        assert_eq!((started.health, started.settled), (Health::Degraded, false));
        assert_eq!(
            one(service(Some("rollback_completed"), None)),
            verdict(
                Health::Degraded,
                Some(
                    "web: rolled back: update rolled back due to failure or early termination of task x"
                ),
                true
            )
        );
        assert_eq!(
            one(service(Some("rollback_paused"), None))
                .message
                .as_deref(),
            Some(
                "web: rollback paused: update rolled back due to failure or early termination of task x"
            )
        );
        assert_eq!(assess_swarm(&["web"], &[]), Assessment::missing());
    }

    #[test]
    fn task_state_ages_of_every_captured_wording_parse() {
        let s = Duration::from_secs;
        for (state, age) in [
            ("Assigned less than a second ago", Some(s(0))),
            ("Running less than a second ago", Some(s(0))),
            ("Running 1 second ago", Some(s(1))),
            ("Starting 9 seconds ago", Some(s(9))),
            ("Failed 27 seconds ago", Some(s(27))),
            ("Pending 3 seconds ago", Some(s(3))),
            ("Complete 3 seconds ago", Some(s(3))),
            ("Shutdown less than a second ago", Some(s(0))),
            ("Running About a minute ago", Some(s(60))),
            ("Running 20 minutes ago", Some(s(1200))),
            ("Running", None),
            ("Running 5 seconds", None),
            ("Running soon ago", None),
            ("", None),
        ] {
            assert_eq!(task_state_age(state), age, "{state}");
        }
    }

    fn task<'a>(slot: &'a str, state: &str, age: u64, error: &'a str) -> TaskLine<'a> {
        TaskLine {
            slot,
            desired_state: if state == "failed" {
                "Shutdown"
            } else {
                "Running"
            },
            state: state.to_owned(),
            error,
            image: "docker-cd-test/busybox:latest",
            age: Some(Duration::from_secs(age)),
        }
    }

    #[test]
    fn a_task_counts_as_a_replica_once_it_has_run_two_seconds() {
        let with = |tasks| assess_swarm(&["web"], &[service(None, Some(tasks))]);
        assert_eq!(
            with(vec![
                task("s_web.1", "running", 1, ""),
                task("s_web.2", "running", 2, "")
            ]),
            verdict(
                Health::Progressing,
                Some("web: 1/2 replicas running; just started"),
                false
            )
        );
        assert_eq!(
            with(vec![
                task("s_web.1", "running", 2, ""),
                task("s_web.2", "running", 30, "")
            ])
            .health,
            Health::Healthy
        );
        // A task without a readable age counts when running, as before ages were read.
        let mut unknown = task("s_web.1", "running", 0, "");
        unknown.age = None;
        let mut known = task("s_web.2", "running", 5, "");
        known.age = None;
        assert_eq!(with(vec![unknown, known]).health, Health::Healthy);
        // A crash loop's instant of running beside its failures: degraded, as between them.
        let instant = with(vec![
            task("s_web.1", "running", 0, ""),
            task("s_web.1", "failed", 6, "task: non-zero exit (1)"),
            task("s_web.2", "running", 40, ""),
        ]);
        assert_eq!(
            instant,
            verdict(
                Health::Degraded,
                Some("web: 1/2 replicas running; task failed: non-zero exit (1)"),
                false
            )
        );
    }

    #[test]
    fn tasks_are_needed_when_not_converged_or_for_ten_minutes_after_a_sync() {
        let mut s = service(Some("completed"), None);
        assert!(!s.needs_tasks(), "converged, no record of a sync");
        s.since_sync = Some(SWARM_WATCH_AFTER_SYNC - Duration::from_secs(1));
        assert!(s.needs_tasks());
        s.since_sync = Some(SWARM_WATCH_AFTER_SYNC);
        assert!(!s.needs_tasks());
        s.running = 1;
        assert!(s.needs_tasks(), "fewer running than desired");
        s.running = 2;
        for state in ["updating", "paused", "rollback_started", "rollback_paused"] {
            s.update_state = Some(state);
            assert!(s.needs_tasks(), "{state}");
        }
    }

    #[test]
    fn uptimes_of_every_docker_wording_parse() {
        let s = Duration::from_secs;
        for (status, up) in [
            ("Up Less than a second", Some(s(0))),
            ("Up 1 second", Some(s(1))),
            ("Up 30 seconds", Some(s(30))),
            ("Up 59 seconds (health: starting)", Some(s(59))),
            ("Up About a minute", Some(s(60))),
            ("Up 5 minutes (healthy)", Some(s(300))),
            ("Up About an hour", Some(s(3600))),
            ("Up 2 hours (unhealthy)", Some(s(7200))),
            ("Up 3 days", Some(s(3 * 86_400))),
            ("Up 2 weeks", Some(s(14 * 86_400))),
            ("Up 3 months", Some(s(90 * 86_400))),
            ("Up 2 years", Some(s(730 * 86_400))),
            ("Up About a minute (Paused)", Some(s(60))),
            ("Exited (0) 5 minutes ago", None),
            ("Restarting (1) 1 second ago", None),
            ("Created", None),
            ("Up forever", None),
            ("Up 3 fortnights", None),
        ] {
            assert_eq!(uptime(status), up, "{status}");
        }
    }

    #[test]
    fn long_output_becomes_one_capped_line() {
        assert_eq!(
            one_line("  boom:\n  cannot connect\n"),
            "boom: cannot connect"
        );
        let long = "é".repeat(OUTPUT_CAP + 10);
        let cut = one_line(&long);
        assert_eq!(cut.chars().count(), OUTPUT_CAP + 1);
        assert!(cut.ends_with('…'));
    }
}
