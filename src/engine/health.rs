//! The health of each stack (SPEC §9), from the actual state [`Engine::read`] returned plus at
//! most one more docker process: compose inspects only the containers whose `docker ps` line
//! calls for a closer look (none on a steady healthy host); swarm lists the tasks only of the
//! services that are not converged or whose stack was synced in the last
//! [`SWARM_WATCH_AFTER_SYNC`] (none on a steady host where every service runs its replicas).
//!
//! [`SWARM_WATCH_AFTER_SYNC`]: crate::stack::health::SWARM_WATCH_AFTER_SYNC
//!
//! Choosing what to read and converting the adapters' types into [`crate::stack::health`]'s
//! inputs are pure functions here; deciding is `stack::health`'s.
//!
//! Uses: compose (containers, the inspect read), swarm (services, the task read), stack
//! (health).

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use super::{Actual, Engine, EngineError};
use crate::compose::ContainerInfo;
use crate::stack::health::{
    self, Assessment, ContainerDetail, ContainerLine, ServiceLine, TaskLine,
};
use crate::stack::labels::DeployedLabels;
use crate::swarm::{ServiceInfo, TaskInfo};

impl Engine {
    /// The health of each of `projects` from `actual` (read just before by `Engine::read`),
    /// with at most one more docker process for compose and two for swarm: compose inspects only
    /// the containers that need a closer look; swarm asks for the tasks (`docker service ps`,
    /// one process for all services given) only of services that are not converged or were
    /// synced just now, and then for the nodes (`docker node ls`) to leave out tasks on nodes
    /// that are down.
    ///
    /// Every project in `projects` gets an entry ([`Health::Missing`] when it has nothing on
    /// the host).
    ///
    /// [`Health::Missing`]: crate::desired_state::Health::Missing
    pub async fn assess(
        &self,
        actual: &Actual,
        projects: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Assessment>, EngineError> {
        match (self, actual) {
            (Self::Compose { host, .. }, Actual::Containers(containers)) => {
                let ids = detail_ids(containers, projects);
                let details = host.docker.inspect_health(&ids).await?;
                Ok(compose_assessments(containers, &details, projects))
            }
            (Self::Swarm { swarm, .. }, Actual::Services(services)) => {
                let now = SystemTime::now();
                let ids = examined_services(services, projects, now);
                let tasks = swarm.service_tasks(&ids).await?;
                // A lost node's tasks keep their last state (`Running`): with the tasks, one
                // `docker node ls` says which nodes are up.
                let down = if ids.is_empty() {
                    BTreeSet::new()
                } else {
                    crate::swarm::down_nodes(&swarm.nodes().await?)
                };
                Ok(swarm_assessments(
                    services, &ids, &tasks, &down, projects, now,
                ))
            }
            (Self::Compose { .. }, Actual::Services(_))
            | (Self::Swarm { .. }, Actual::Containers(_)) => Err(EngineError::Internal(
                "health asked of actual state another engine read".to_owned(),
            )),
        }
    }
}

/// The services the newest sync recorded among `labels` (the one with the latest
/// `synced-at`; RFC 3339 in UTC compares as text). Empty when none carries a record.
fn recorded_services<'a>(labels: impl Iterator<Item = &'a DeployedLabels>) -> Vec<&'a str> {
    labels
        .filter(|l| !l.recorded_services().is_empty())
        .max_by(|a, b| a.synced_at.cmp(&b.synced_at))
        .map(DeployedLabels::recorded_services)
        .unwrap_or_default()
}

/// The containers of `projects` that count for health: `compose run` ones left out.
fn project_containers<'a>(
    containers: &'a [ContainerInfo],
    projects: &'a BTreeSet<String>,
) -> impl Iterator<Item = &'a ContainerInfo> {
    containers
        .iter()
        .filter(|c| !c.is_oneoff() && projects.contains(&c.project))
}

/// The ids of the containers of `projects` whose `docker ps` line is not enough.
fn detail_ids(containers: &[ContainerInfo], projects: &BTreeSet<String>) -> Vec<String> {
    project_containers(containers, projects)
        .filter(|c| c.needs_detail())
        .map(|c| c.id.clone())
        .collect()
}

/// The assessment of each of `projects` from its containers and the details read of some.
fn compose_assessments(
    containers: &[ContainerInfo],
    details: &[ContainerDetail],
    projects: &BTreeSet<String>,
) -> BTreeMap<String, Assessment> {
    let mut by_project: BTreeMap<&str, Vec<&ContainerInfo>> = BTreeMap::new();
    for c in project_containers(containers, projects) {
        by_project.entry(&c.project).or_default().push(c);
    }
    projects
        .iter()
        .map(|project| {
            let mine = by_project
                .get(project.as_str())
                .map_or(&[][..], Vec::as_slice);
            let desired = recorded_services(mine.iter().map(|c| &c.labels));
            let lines: Vec<ContainerLine<'_>> = mine.iter().map(|c| c.line()).collect();
            (
                project.clone(),
                health::assess_compose(&desired, &lines, details),
            )
        })
        .collect()
}

/// How long before `now` the sync recorded on `service` was (a record from the future, a
/// clock set back: just now); `None` without a record.
fn since_sync(service: &ServiceInfo, now: SystemTime) -> Option<std::time::Duration> {
    let synced = humantime::parse_rfc3339_weak(&service.deployed.synced_at).ok()?;
    Some(now.duration_since(synced).unwrap_or_default())
}

/// A swarm service as the assessment reads it at `now`, with `tasks` if they were read.
fn service_line<'a>(
    service: &'a ServiceInfo,
    tasks: Option<Vec<TaskLine<'a>>>,
    now: SystemTime,
) -> ServiceLine<'a> {
    ServiceLine {
        service: &service.service,
        mode: &service.mode,
        running: service.running,
        desired: service.desired,
        image: &service.image,
        update_state: service.update_state.as_deref(),
        update_message: service.update_message.as_deref(),
        since_sync: since_sync(service, now),
        tasks,
    }
}

fn task_line(task: &TaskInfo) -> TaskLine<'_> {
    TaskLine {
        slot: &task.name,
        desired_state: &task.desired_state,
        state: task.state(),
        error: task.error.trim_matches('"'),
        image: &task.image,
        age: health::task_state_age(&task.current_state),
    }
}

/// The ids of the services of `projects` whose health needs their tasks at `now`: replica
/// counts or update state leave it open, or the stack was synced just now
/// ([`ServiceLine::needs_tasks`]).
fn examined_services(
    services: &[ServiceInfo],
    projects: &BTreeSet<String>,
    now: SystemTime,
) -> Vec<String> {
    services
        .iter()
        .filter(|s| projects.contains(&s.stack) && service_line(s, None, now).needs_tasks())
        .map(|s| s.id.clone())
        .collect()
}

/// The assessment of each of `projects` at `now` from its services and the tasks read of the
/// services `asked` (ids). Tasks on a node in `down` (names or ids) are left out: the manager
/// no longer hears from it, so its tasks' recorded `Running` says nothing.
fn swarm_assessments(
    services: &[ServiceInfo],
    asked: &[String],
    tasks: &[TaskInfo],
    down: &BTreeSet<String>,
    projects: &BTreeSet<String>,
    now: SystemTime,
) -> BTreeMap<String, Assessment> {
    projects
        .iter()
        .map(|project| {
            let mine: Vec<&ServiceInfo> = services.iter().filter(|s| &s.stack == project).collect();
            let desired = recorded_services(mine.iter().map(|s| &s.deployed));
            let lines: Vec<ServiceLine<'_>> = mine
                .iter()
                .map(|s| {
                    let tasks = asked.contains(&s.id).then(|| {
                        tasks
                            .iter()
                            .filter(|t| t.service_name() == s.name && !down.contains(&t.node))
                            .map(task_line)
                            .collect()
                    });
                    service_line(s, tasks, now)
                })
                .collect();
            (project.clone(), health::assess_swarm(&desired, &lines))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::engine::{parse_inspect, parse_ps};
    use crate::desired_state::Health;
    use crate::swarm::{parse_service_inspect, parse_service_ls, parse_tasks};

    fn set(projects: &[&str]) -> BTreeSet<String> {
        projects.iter().map(|p| (*p).to_owned()).collect()
    }

    fn assessment(health: Health, message: Option<&str>, settled: bool) -> Assessment {
        Assessment {
            health,
            message: message.map(str::to_owned),
            settled,
        }
    }

    // Captured from Docker Engine 20.10.24 with the compose adapter's PS_FORMAT and
    // INSPECT_FORMAT (ids shortened, labels trimmed to those that matter): project `shop`
    // with a healthy web, an unhealthy api, a one-shot that exited 0 and a `compose run`
    // container; project `old` with a plain container up for minutes.
    const PS: &[u8] = br#"{"id":"d88cc94af422","name":"shop-web-1","state":"running","status":"Up About a minute (healthy)","image":"docker-cd-test/busybox:latest","ports":"","project":"shop","service":"web","oneoff":"False","owner":"docker-cd","path":"shop","revision":"r1","contentHash":"t1","composeHash":"c1","syncedAt":"2026-12-02T00:48:30Z","services":"api,migrate,web"}
{"id":"bd4a833e34a1","name":"shop-api-1","state":"running","status":"Up About a minute (unhealthy)","image":"docker-cd-test/busybox:latest","ports":"","project":"shop","service":"api","oneoff":"False","owner":"docker-cd","path":"shop","revision":"r1","contentHash":"t1","composeHash":"c1","syncedAt":"2026-12-02T00:48:30Z","services":"api,migrate,web"}
{"id":"94993953f029","name":"shop-migrate-1","state":"exited","status":"Exited (0) About a minute ago","image":"docker-cd-test/busybox:latest","ports":"","project":"shop","service":"migrate","oneoff":"False","owner":"docker-cd","path":"shop","revision":"r1","contentHash":"t1","composeHash":"c1","syncedAt":"2026-12-02T00:48:30Z","services":"api,migrate,web"}
{"id":"c4ead0282cd1","name":"shop-api-run-1","state":"exited","status":"Exited (3) About a minute ago","image":"docker-cd-test/busybox:latest","ports":"","project":"shop","service":"api","oneoff":"True","owner":"docker-cd","path":"shop","revision":"r1","contentHash":"t1","composeHash":"c1","syncedAt":"2026-12-02T00:48:30Z","services":"api,migrate,web"}
{"id":"5f53a47adbf7","name":"old-x-1","state":"running","status":"Up 5 minutes","image":"busybox","ports":"","project":"old","service":"x","oneoff":"False","owner":"","path":"","revision":"","contentHash":"","composeHash":"","syncedAt":"","services":""}
"#;
    const INSPECT: &[u8] = br#"{"id":"bd4a833e34a1","restartCount":0,"status":"running","exitCode":0,"oomKilled":false,"error":"","health":{"status":"unhealthy","failingStreak":26,"lastOutput":"boom: cannot connect to 127.0.0.1:8080\n","lastExitCode":1},"restartPolicy":"no","startedAt":"2026-12-02T00:48:31.858101644Z"}
{"id":"94993953f029","restartCount":0,"status":"exited","exitCode":0,"oomKilled":false,"error":"","health":null,"restartPolicy":"no","startedAt":"2026-12-02T00:48:33.143776669Z"}
"#;

    #[test]
    fn compose_inspects_only_what_the_ps_line_leaves_open_and_assesses_every_project() {
        let containers = parse_ps(PS).unwrap();
        let projects = set(&["gone", "old", "shop"]);
        assert_eq!(
            detail_ids(&containers, &projects),
            ["bd4a833e34a1", "94993953f029"],
            "not the healthy one, not the one up for minutes, not the `compose run` one"
        );
        assert!(detail_ids(&containers, &set(&["old"])).is_empty());
        let details = parse_inspect(INSPECT).unwrap();
        let health = compose_assessments(&containers, &details, &projects);
        assert_eq!(health.len(), 3);
        assert_eq!(health["gone"], Assessment::missing());
        assert_eq!(health["old"], assessment(Health::Healthy, None, true));
        assert_eq!(
            health["shop"],
            assessment(
                Health::Degraded,
                Some("api: unhealthy: boom: cannot connect to 127.0.0.1:8080"),
                false
            )
        );
    }

    #[test]
    fn the_newest_sync_names_the_desired_services() {
        let containers = parse_ps(PS).unwrap();
        let mut labels: Vec<DeployedLabels> = containers.iter().map(|c| c.labels.clone()).collect();
        labels[0].services = "web".into();
        labels[0].synced_at = "2026-12-02T01:00:00Z".into();
        assert_eq!(recorded_services(labels.iter()), ["web"]);
        assert_eq!(recorded_services(labels[4..].iter()), Vec::<&str>::new());
    }

    // Written by hand, in the shapes of the real captures below, for what one node cannot
    // show: several nodes (a global service not placeable on one, a down node's stale task),
    // several stacks at once. Stacks: `shop` (web
    // converged, api converging with an old spec's failed task, worker failing), `pay` (update
    // paused), `mon` (global agent converged, global exporter not placeable on one node),
    // `edge` (a down node's stale Running task), `batch` (a completed job), `half` (a recorded
    // service gone).
    const LS: &[u8] = br#"{"ID":"aaaaaaaaaaaa","Image":"docker-cd-test/busybox:latest","Mode":"replicated","Name":"shop_web","Ports":"","Replicas":"2/2"}
{"ID":"bbbbbbbbbbbb","Image":"docker-cd-test/busybox:latest","Mode":"replicated","Name":"shop_api","Ports":"","Replicas":"1/3"}
{"ID":"cccccccccccc","Image":"docker-cd-test/busybox:latest","Mode":"replicated","Name":"shop_worker","Ports":"","Replicas":"0/2"}
{"ID":"dddddddddddd","Image":"docker-cd-test/busybox:latest","Mode":"replicated","Name":"pay_app","Ports":"","Replicas":"1/2"}
{"ID":"eeeeeeeeeeee","Image":"docker-cd-test/busybox:latest","Mode":"global","Name":"mon_agent","Ports":"","Replicas":"2/2"}
{"ID":"ffffffffffff","Image":"docker-cd-test/busybox:latest","Mode":"global","Name":"mon_exporter","Ports":"","Replicas":"1/2"}
{"ID":"gggggggggggg","Image":"docker-cd-test/busybox:latest","Mode":"replicated","Name":"edge_proxy","Ports":"","Replicas":"1/2"}
{"ID":"hhhhhhhhhhhh","Image":"docker-cd-test/busybox:latest","Mode":"replicated job","Name":"batch_migrate","Ports":"","Replicas":"0/1 (1/1 completed)"}
{"ID":"iiiiiiiiiiii","Image":"docker-cd-test/busybox:latest","Mode":"replicated","Name":"half_a","Ports":"","Replicas":"1/1"}
"#;
    const INSPECT_SERVICES: &[u8] = br#"[{"ID": "aaaaaaaaaaaa1", "Spec": {"Name": "shop_web", "Labels": {"com.docker-cd.owner": "docker-cd", "com.docker-cd.services": "api,web,worker", "com.docker-cd.synced-at": "2026-12-02T00:00:00Z", "com.docker.stack.namespace": "shop"}, "TaskTemplate": {"ContainerSpec": {"Image": "docker-cd-test/busybox:latest"}}, "Mode": {"Replicated": {"Replicas": 2}}}},
{"ID": "bbbbbbbbbbbb1", "Spec": {"Name": "shop_api", "Labels": {"com.docker-cd.owner": "docker-cd", "com.docker-cd.services": "api,web,worker", "com.docker-cd.synced-at": "2026-12-02T00:00:00Z", "com.docker.stack.namespace": "shop"}, "TaskTemplate": {"ContainerSpec": {"Image": "docker-cd-test/busybox:latest"}}, "Mode": {"Replicated": {"Replicas": 3}}}, "UpdateStatus": {"State": "completed", "Message": "update completed"}},
{"ID": "cccccccccccc1", "Spec": {"Name": "shop_worker", "Labels": {"com.docker-cd.owner": "docker-cd", "com.docker-cd.services": "api,web,worker", "com.docker-cd.synced-at": "2026-12-02T00:00:00Z", "com.docker.stack.namespace": "shop"}, "TaskTemplate": {"ContainerSpec": {"Image": "docker-cd-test/busybox:latest"}}, "Mode": {"Replicated": {"Replicas": 2}}}},
{"ID": "dddddddddddd1", "Spec": {"Name": "pay_app", "Labels": {"com.docker-cd.owner": "docker-cd", "com.docker-cd.services": "app", "com.docker.stack.namespace": "pay"}, "TaskTemplate": {"ContainerSpec": {"Image": "docker-cd-test/busybox:latest"}}, "Mode": {"Replicated": {"Replicas": 2}}}, "UpdateStatus": {"State": "paused", "StartedAt": "2026-11-28T16:51:54Z", "Message": "update paused due to failure or early termination of task cbmx"}},
{"ID": "eeeeeeeeeeee1", "Spec": {"Name": "mon_agent", "Labels": {"com.docker-cd.owner": "docker-cd", "com.docker-cd.services": "agent,exporter", "com.docker.stack.namespace": "mon"}, "TaskTemplate": {"ContainerSpec": {"Image": "docker-cd-test/busybox:latest"}}, "Mode": {"Global": {}}}},
{"ID": "ffffffffffff1", "Spec": {"Name": "mon_exporter", "Labels": {"com.docker-cd.owner": "docker-cd", "com.docker-cd.services": "agent,exporter", "com.docker.stack.namespace": "mon"}, "TaskTemplate": {"ContainerSpec": {"Image": "docker-cd-test/busybox:latest"}}, "Mode": {"Global": {}}}},
{"ID": "gggggggggggg1", "Spec": {"Name": "edge_proxy", "Labels": {"com.docker-cd.owner": "docker-cd", "com.docker-cd.services": "proxy", "com.docker.stack.namespace": "edge"}, "TaskTemplate": {"ContainerSpec": {"Image": "docker-cd-test/busybox:latest"}}, "Mode": {"Replicated": {"Replicas": 2}}}},
{"ID": "hhhhhhhhhhhh1", "Spec": {"Name": "batch_migrate", "Labels": {"com.docker-cd.owner": "docker-cd", "com.docker-cd.services": "migrate", "com.docker.stack.namespace": "batch"}, "TaskTemplate": {"ContainerSpec": {"Image": "docker-cd-test/busybox:latest"}}, "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}}},
{"ID": "iiiiiiiiiiii1", "Spec": {"Name": "half_a", "Labels": {"com.docker-cd.owner": "docker-cd", "com.docker-cd.services": "a,b", "com.docker.stack.namespace": "half"}, "TaskTemplate": {"ContainerSpec": {"Image": "docker-cd-test/busybox:latest"}}, "Mode": {"Replicated": {"Replicas": 1}}}}]"#;
    const SERVICE_PS: &[u8] = br#"{"CurrentState":"Running 10 seconds ago","DesiredState":"Running","Error":"","ID":"t01","Image":"docker-cd-test/busybox:latest","Name":"shop_api.1","Node":"vm1","Ports":""}
{"CurrentState":"Starting 2 seconds ago","DesiredState":"Running","Error":"","ID":"t02","Image":"docker-cd-test/busybox:latest","Name":"shop_api.2","Node":"vm2","Ports":""}
{"CurrentState":"Preparing 3 seconds ago","DesiredState":"Running","Error":"","ID":"t03","Image":"docker-cd-test/busybox:latest","Name":"shop_api.3","Node":"vm1","Ports":""}
{"CurrentState":"Rejected 2 hours ago","DesiredState":"Shutdown","Error":"\"No such image: docker-cd-test/busybox:broken\"","ID":"t04","Image":"docker-cd-test/busybox:broken","Name":"shop_api.3","Node":"vm1","Ports":""}
{"CurrentState":"Ready 1 second ago","DesiredState":"Ready","Error":"","ID":"t05","Image":"docker-cd-test/busybox:latest","Name":"shop_worker.1","Node":"vm1","Ports":""}
{"CurrentState":"Failed 6 seconds ago","DesiredState":"Shutdown","Error":"\"task: non-zero exit (1)\"","ID":"t06","Image":"docker-cd-test/busybox:latest","Name":"shop_worker.1","Node":"vm1","Ports":""}
{"CurrentState":"Failed 12 seconds ago","DesiredState":"Shutdown","Error":"\"task: non-zero exit (1)\"","ID":"t07","Image":"docker-cd-test/busybox:latest","Name":"shop_worker.1","Node":"vm1","Ports":""}
{"CurrentState":"Failed 7 seconds ago","DesiredState":"Shutdown","Error":"\"task: non-zero exit (1)\"","ID":"t08","Image":"docker-cd-test/busybox:latest","Name":"shop_worker.2","Node":"vm2","Ports":""}
{"CurrentState":"Running 5 minutes ago","DesiredState":"Running","Error":"","ID":"t09","Image":"docker-cd-test/busybox:latest","Name":"pay_app.1","Node":"vm1","Ports":""}
{"CurrentState":"Failed 4 minutes ago","DesiredState":"Shutdown","Error":"\"task: non-zero exit (3)\"","ID":"t10","Image":"docker-cd-test/busybox:latest","Name":"pay_app.2","Node":"vm1","Ports":""}
{"CurrentState":"Running 3 minutes ago","DesiredState":"Running","Error":"","ID":"t11","Image":"docker-cd-test/busybox:latest","Name":"mon_exporter.k3b2cn5kq0yyzmigxg4sbr2qe","Node":"vm1","Ports":""}
{"CurrentState":"Pending 3 minutes ago","DesiredState":"Running","Error":"\"no suitable node (insufficient resources on 1 node)\"","ID":"t12","Image":"docker-cd-test/busybox:latest","Name":"mon_exporter.x8fhzxg6ffwigvaewqczie3ne","Node":"","Ports":""}
{"CurrentState":"Running 20 minutes ago","DesiredState":"Running","Error":"","ID":"t13","Image":"docker-cd-test/busybox:latest","Name":"edge_proxy.1","Node":"vm1","Ports":""}
{"CurrentState":"Preparing 4 seconds ago","DesiredState":"Running","Error":"","ID":"t14","Image":"docker-cd-test/busybox:latest","Name":"edge_proxy.2","Node":"vm1","Ports":""}
{"CurrentState":"Running 20 minutes ago","DesiredState":"Shutdown","Error":"","ID":"t15","Image":"docker-cd-test/busybox:latest","Name":"edge_proxy.2","Node":"vm2","Ports":""}
{"CurrentState":"Complete 5 seconds ago","DesiredState":"Complete","Error":"","ID":"t16","Image":"docker-cd-test/busybox:latest","Name":"batch_migrate.1","Node":"vm1","Ports":""}
"#;

    /// An hour after the samples' last sync: their tasks are read only where the counts
    /// leave health open.
    fn later() -> SystemTime {
        humantime::parse_rfc3339("2026-12-02T01:00:00Z").unwrap()
    }

    fn swarm_health(projects: &[&str]) -> (Vec<String>, BTreeMap<String, Assessment>) {
        let replicas = parse_service_ls(LS).unwrap();
        let services = parse_service_inspect(INSPECT_SERVICES, &replicas).unwrap();
        services_health(&services, projects)
    }

    /// The services examined and the health of `projects`, over the captured tasks.
    fn services_health(
        services: &[ServiceInfo],
        projects: &[&str],
    ) -> (Vec<String>, BTreeMap<String, Assessment>) {
        let projects = set(projects);
        let asked = examined_services(services, &projects, later());
        let tasks = parse_tasks(SERVICE_PS).unwrap();
        let health = swarm_assessments(
            services,
            &asked,
            &tasks,
            &BTreeSet::new(),
            &projects,
            later(),
        );
        (asked, health)
    }

    #[test]
    fn swarm_asks_for_the_tasks_of_unconverged_services_only() {
        let (asked, _) = swarm_health(&["batch", "edge", "half", "mon", "pay", "shop"]);
        let asked: BTreeSet<&str> = asked.iter().map(String::as_str).collect();
        assert_eq!(
            asked,
            BTreeSet::from([
                "bbbbbbbbbbbb1",
                "cccccccccccc1",
                "dddddddddddd1",
                "ffffffffffff1",
                "gggggggggggg1",
                "hhhhhhhhhhhh1"
            ])
        );
        let (asked, health) = swarm_health(&["half"]);
        assert!(asked.is_empty());
        assert_eq!(
            health["half"],
            assessment(Health::Degraded, Some("b: no service"), true)
        );
    }

    #[test]
    fn failing_tasks_degrade_and_converging_replicas_progress() {
        let (_, health) = swarm_health(&["shop"]);
        assert_eq!(
            health["shop"],
            assessment(
                Health::Degraded,
                Some("worker: 0/2 replicas running; task failed: non-zero exit (1)"),
                false
            )
        );
    }

    #[test]
    fn converging_replicas_are_progressing_and_an_old_specs_failure_does_not_count() {
        let replicas = parse_service_ls(LS).unwrap();
        let mut services = parse_service_inspect(INSPECT_SERVICES, &replicas).unwrap();
        services.retain(|s| s.name != "shop_worker");
        let (asked, health) = services_health(&services, &["shop"]);
        let (projects, tasks) = (set(&["shop"]), parse_tasks(SERVICE_PS).unwrap());
        // The recorded worker is gone now: degraded, but the api's progress is what would be
        // named without it.
        assert_eq!(
            health["shop"],
            assessment(Health::Degraded, Some("worker: no service"), true)
        );
        let mut labelled = services.clone();
        for s in &mut labelled {
            s.deployed.services = "api,web".into();
        }
        let health = swarm_assessments(
            &labelled,
            &asked,
            &tasks,
            &BTreeSet::new(),
            &projects,
            later(),
        );
        assert_eq!(
            health["shop"],
            assessment(
                Health::Progressing,
                Some("api: 1/3 replicas running"),
                false
            )
        );
    }

    #[test]
    fn a_paused_update_is_degraded_and_settled() {
        let (_, health) = swarm_health(&["pay"]);
        assert_eq!(
            health["pay"],
            assessment(
                Health::Degraded,
                Some(
                    "app: update paused: update paused due to failure or early termination of task cbmx"
                ),
                true
            )
        );
    }

    #[test]
    fn a_global_service_not_placeable_everywhere_says_why() {
        let (_, health) = swarm_health(&["mon"]);
        assert_eq!(
            health["mon"],
            assessment(
                Health::Progressing,
                Some(
                    "exporter: 1/2 replicas running; task pending: no suitable node (insufficient resources on 1 node)"
                ),
                false
            )
        );
    }

    #[test]
    fn a_down_nodes_stale_running_task_is_not_a_replica() {
        let (_, health) = swarm_health(&["edge"]);
        assert_eq!(
            health["edge"],
            assessment(
                Health::Progressing,
                Some("proxy: 1/2 replicas running"),
                false
            )
        );
    }

    #[test]
    fn converged_services_and_completed_jobs_are_healthy_and_absent_stacks_missing() {
        let (_, health) = swarm_health(&["batch", "gone"]);
        assert_eq!(health["batch"], assessment(Health::Healthy, None, true));
        assert_eq!(health["gone"], Assessment::missing());
        let replicas = parse_service_ls(LS).unwrap();
        let services = parse_service_inspect(INSPECT_SERVICES, &replicas).unwrap();
        let web: Vec<ServiceInfo> = services
            .into_iter()
            .filter(|s| s.name == "shop_web" || s.name == "mon_agent")
            .map(|mut s| {
                s.deployed.services.clear();
                s
            })
            .collect();
        let projects = set(&["mon", "shop"]);
        assert!(examined_services(&web, &projects, later()).is_empty());
        let health = swarm_assessments(&web, &[], &[], &BTreeSet::new(), &projects, later());
        assert_eq!(health["shop"], assessment(Health::Healthy, None, true));
        assert_eq!(health["mon"], assessment(Health::Healthy, None, true));
    }

    // ----- captured from a real single-node swarm -----
    //
    // Docker CLI 28.2.2, Engine 20.10.24, `docker stack deploy` by hand of the test image;
    // `docker service ls --format '{{json .}}'`, `docker service ps --no-trunc --format
    // '{{json .}}'` (the swarm adapter's formats) as printed. `docker service inspect` trimmed
    // to the fields read, with docker-cd's labels added (owner, services, synced-at: the deploy
    // time); the slow stack's inspect is in the same shape (its suffix of the id made up).

    /// A stack of one service at `now`: its `service ls` line, its inspect, and its tasks if
    /// they are asked for. Returns whether they were, and the stack's assessment.
    fn captured(ls: &str, inspect: &str, ps: &str, now: &str) -> (bool, Assessment) {
        let replicas = parse_service_ls(ls.as_bytes()).unwrap();
        let services = parse_service_inspect(inspect.as_bytes(), &replicas).unwrap();
        assert_eq!(services.len(), 1);
        let projects = set(&[services[0].stack.as_str()]);
        let now = humantime::parse_rfc3339(now).unwrap();
        let asked = examined_services(&services, &projects, now);
        let tasks = parse_tasks(ps.as_bytes()).unwrap();
        let mut health =
            swarm_assessments(&services, &asked, &tasks, &BTreeSet::new(), &projects, now);
        (!asked.is_empty(), health.pop_first().unwrap().1)
    }

    fn inspect(
        id: &str,
        name: &str,
        stack: &str,
        service: &str,
        synced: &str,
        rest: &str,
    ) -> String {
        format!(
            r#"[{{"ID": "{id}", "Spec": {{"Name": "{name}", "Labels": {{"com.docker-cd.owner": "docker-cd", "com.docker-cd.services": "{service}", "com.docker-cd.synced-at": "{synced}", "com.docker.stack.image": "docker-cd-test/busybox:latest", "com.docker.stack.namespace": "{stack}"}}, "TaskTemplate": {{"ContainerSpec": {{"Image": "docker-cd-test/busybox:latest"}}}}, {rest}}}]"#
        )
    }

    /// `command: ["sh", "-c", "exit 1"]`, restart_policy condition any (delay 5 s), one replica.
    fn crash_loop(synced: &str) -> String {
        inspect(
            "fvq80v64j1ar3b0u1otbqc0j0",
            "dcdcap-fail_worker",
            "dcdcap-fail",
            "worker",
            synced,
            r#""Mode": {"Replicated": {"Replicas": 1}}}, "Endpoint": {"Spec": {"Mode": "vip"}}"#,
        )
    }
    const CRASH_LS_DOWN: &str = r#"{"ID":"fvq80v64j1ar","Image":"docker-cd-test/busybox:latest","Mode":"replicated","Name":"dcdcap-fail_worker","Ports":"","Replicas":"0/1"}"#;
    /// The instant of each restart cycle when the task runs (3 of 100 readings 0.2 s apart).
    const CRASH_LS_UP: &str = r#"{"ID":"fvq80v64j1ar","Image":"docker-cd-test/busybox:latest","Mode":"replicated","Name":"dcdcap-fail_worker","Ports":"","Replicas":"1/1"}"#;
    const CRASH_PS_STARTING: &str = r#"{"CurrentState":"Starting 2 seconds ago","DesiredState":"Running","Error":"","ID":"wbomsxd781bdludgzy45pb6rr","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-fail_worker.1","Node":"vm","Ports":""}
{"CurrentState":"Failed 8 seconds ago","DesiredState":"Shutdown","Error":"\"task: non-zero exit (1)\"","ID":"nsf45msutgnkvhtz3qams7tzi","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-fail_worker.1","Node":"vm","Ports":""}
{"CurrentState":"Failed 15 seconds ago","DesiredState":"Shutdown","Error":"\"task: non-zero exit (1)\"","ID":"xt18ryl5yi3hpe7o1s90t74ab","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-fail_worker.1","Node":"vm","Ports":""}
{"CurrentState":"Failed 21 seconds ago","DesiredState":"Shutdown","Error":"\"task: non-zero exit (1)\"","ID":"62fzh0nrzrlenz8yvml49oj7d","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-fail_worker.1","Node":"vm","Ports":""}
{"CurrentState":"Failed 27 seconds ago","DesiredState":"Shutdown","Error":"\"task: non-zero exit (1)\"","ID":"wbmszuby07ev8jixaar8q2k1w","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-fail_worker.1","Node":"vm","Ports":""}
"#;
    const CRASH_PS_RUNNING: &str = r#"{"CurrentState":"Running less than a second ago","DesiredState":"Running","Error":"","ID":"0lbz7zasm9nn1s3q3kv1hgm7g","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-fail_worker.1","Node":"vm","Ports":""}
{"CurrentState":"Failed 6 seconds ago","DesiredState":"Shutdown","Error":"\"task: non-zero exit (1)\"","ID":"r3jkbdmm3sarkeatsayckbzlc","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-fail_worker.1","Node":"vm","Ports":""}
{"CurrentState":"Failed 12 seconds ago","DesiredState":"Shutdown","Error":"\"task: non-zero exit (1)\"","ID":"uycr1ao0hg5jdljg9cbvlrq8r","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-fail_worker.1","Node":"vm","Ports":""}
{"CurrentState":"Failed 19 seconds ago","DesiredState":"Shutdown","Error":"\"task: non-zero exit (1)\"","ID":"qx3jhwc6h84cbu3uj75rik66p","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-fail_worker.1","Node":"vm","Ports":""}
{"CurrentState":"Failed 26 seconds ago","DesiredState":"Shutdown","Error":"\"task: non-zero exit (1)\"","ID":"mj8y65rbj4ylz6v5syjm07t2s","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-fail_worker.1","Node":"vm","Ports":""}
"#;

    #[test]
    fn a_real_crash_loop_is_degraded_even_in_the_instant_its_task_runs() {
        let crashing = Some("worker: 0/1 replicas running; task failed: non-zero exit (1)");
        let synced = "2026-12-02T01:17:03Z";
        for (ls, ps) in [
            (CRASH_LS_DOWN, CRASH_PS_STARTING),
            (CRASH_LS_UP, CRASH_PS_RUNNING),
        ] {
            assert_eq!(
                captured(ls, &crash_loop(synced), ps, "2026-12-02T01:18:30Z"),
                (true, assessment(Health::Degraded, crashing, false)),
                "{ls}"
            );
        }
        // Long after its sync the counts are trusted again: the instant reads healthy (the
        // tick's limit; a sync waits within SWARM_WATCH_AFTER_SYNC).
        assert_eq!(
            captured(
                CRASH_LS_DOWN,
                &crash_loop(synced),
                CRASH_PS_STARTING,
                "2026-12-02T02:00:00Z"
            ),
            (true, assessment(Health::Degraded, crashing, false))
        );
        assert_eq!(
            captured(CRASH_LS_UP, &crash_loop(synced), "", "2026-12-02T02:00:00Z"),
            (false, assessment(Health::Healthy, None, true))
        );
    }

    /// Three replicas of `sh -c "sleep 8; touch /tmp/ready; sleep 3600"` with a healthcheck
    /// (interval 1 s) on the file: swarm keeps a task `Starting` until its check passes.
    fn slow(ls: &str, ps: &str, now: &str) -> (bool, Assessment) {
        let ls = format!(
            r#"{{"ID":"al5zy78rimca","Image":"docker-cd-test/busybox:latest","Mode":"replicated","Name":"dcdcap-slow_app","Ports":"","Replicas":"{ls}"}}"#
        );
        let inspect = inspect(
            "al5zy78rimcaxxxxxxxxxxxxx",
            "dcdcap-slow_app",
            "dcdcap-slow",
            "app",
            "2026-12-02T01:19:24Z",
            r#""Mode": {"Replicated": {"Replicas": 3}}}, "Endpoint": {"Spec": {"Mode": "vip"}}"#,
        );
        let ps: String = ["mmg22j5z9hbsxmlfp0z115vfs", "65s4xwblsslasffy8l7q24gjj", "nj2z2xq5ofxa2s4acpi6dweqw"]
            .iter()
            .zip(ps.split('|'))
            .enumerate()
            .map(|(slot, (id, state))| {
                format!(
                    r#"{{"CurrentState":"{state}","DesiredState":"Running","Error":"","ID":"{id}","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-slow_app.{}","Node":"vm","Ports":""}}"#,
                    slot + 1
                ) + "\n"
            })
            .collect();
        captured(&ls, &inspect, &ps, now)
    }

    #[test]
    fn real_replicas_starting_slowly_progress_until_each_has_run_two_seconds() {
        let progressing = |m| (true, assessment(Health::Progressing, Some(m), false));
        let assigned = "Assigned less than a second ago";
        assert_eq!(
            slow("0/3", &[assigned; 3].join("|"), "2026-12-02T01:19:25Z"),
            progressing("app: 0/3 replicas running")
        );
        let starting =
            "Starting 9 seconds ago|Running less than a second ago|Running less than a second ago";
        assert_eq!(
            slow("2/3", starting, "2026-12-02T01:19:36Z"),
            progressing("app: 0/3 replicas running; just started")
        );
        let one = ["Running 1 second ago"; 3].join("|");
        assert_eq!(
            slow("3/3", &one, "2026-12-02T01:19:37Z"),
            progressing("app: 0/3 replicas running; just started"),
            "service ls counts them all, but they have run for less than 2 s"
        );
        let two = ["Running 2 seconds ago"; 3].join("|");
        assert_eq!(
            slow("3/3", &two, "2026-12-02T01:19:38Z"),
            (true, assessment(Health::Healthy, None, true))
        );
    }

    #[test]
    fn a_real_impossible_placement_is_progressing_and_says_why() {
        let inspect = inspect(
            "v9dsqpkm9y3pr6n7hchbbz9n3",
            "dcdcap-pend_app",
            "dcdcap-pend",
            "app",
            "2026-12-02T01:19:44Z",
            r#""Mode": {"Replicated": {"Replicas": 1}}}, "Endpoint": {"Spec": {"Mode": "vip"}}"#,
        );
        let ls = r#"{"ID":"v9dsqpkm9y3p","Image":"docker-cd-test/busybox:latest","Mode":"replicated","Name":"dcdcap-pend_app","Ports":"","Replicas":"0/1"}"#;
        let ps = r#"{"CurrentState":"Pending 3 seconds ago","DesiredState":"Running","Error":"\"no suitable node (scheduling constraints not satisfied on 1 node)\"","ID":"wmba7vn7au3br0344844sqb0r","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-pend_app.1","Node":"","Ports":""}"#;
        // Later too: the counts leave it open.
        for now in ["2026-12-02T01:19:47Z", "2026-12-02T03:00:00Z"] {
            assert_eq!(
                captured(ls, &inspect, ps, now),
                (
                    true,
                    assessment(
                        Health::Progressing,
                        Some(
                            "app: 0/1 replicas running; task pending: no suitable node (scheduling constraints not satisfied on 1 node)"
                        ),
                        false
                    )
                )
            );
        }
    }

    /// Two replicas of `sleep 3600` (update_config parallelism 1, failure_action pause,
    /// monitor 5 s), updated to `sh -c "exit 3"` (same image).
    fn update(status: &str) -> String {
        inspect(
            "egf44p04iogi1zqn76jetam76",
            "dcdcap-upd_app",
            "dcdcap-upd",
            "app",
            "2026-12-02T01:20:04Z",
            &format!(
                r#""Mode": {{"Replicated": {{"Replicas": 2}}}}}}, "Endpoint": {{"Spec": {{"Mode": "vip"}}}}, "UpdateStatus": {status}"#
            ),
        )
    }

    #[test]
    fn a_real_update_under_way_progresses_and_once_paused_is_degraded_and_settled() {
        let ls = |replicas| {
            format!(
                r#"{{"ID":"egf44p04iogi","Image":"docker-cd-test/busybox:latest","Mode":"replicated","Name":"dcdcap-upd_app","Ports":"","Replicas":"{replicas}"}}"#
            )
        };
        // Stop-first: the old task of slot 2 still runs (desired Shutdown, 10 s grace), the new
        // one waits in Ready. `service ls` counts 2/2.
        let updating = r#"{"State":"updating","StartedAt":"2026-12-02T01:20:04.391282459Z","Message":"update in progress"}"#;
        let ps = r#"{"CurrentState":"Running 14 seconds ago","DesiredState":"Running","Error":"","ID":"it0tjh66ygi728ogwa3z0uqgi","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-upd_app.1","Node":"vm","Ports":""}
{"CurrentState":"Ready 9 seconds ago","DesiredState":"Ready","Error":"","ID":"5qcvv0yo4wo200mybfsb6rb6e","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-upd_app.2","Node":"vm","Ports":""}
{"CurrentState":"Running 9 seconds ago","DesiredState":"Shutdown","Error":"","ID":"0iqbyvj4y3on06o97iwr6ve82","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-upd_app.2","Node":"vm","Ports":""}
"#;
        assert_eq!(
            captured(&ls("2/2"), &update(updating), ps, "2026-12-02T01:20:13Z"),
            (
                true,
                assessment(
                    Health::Progressing,
                    Some("app: 1/2 replicas running"),
                    false
                )
            )
        );
        let paused = r#"{"State":"paused","StartedAt":"2026-12-02T01:20:04.391282459Z","Message":"update paused due to failure or early termination of task 5qcvv0yo4wo200mybfsb6rb6e"}"#;
        let ps = r#"{"CurrentState":"Running 21 seconds ago","DesiredState":"Running","Error":"","ID":"it0tjh66ygi728ogwa3z0uqgi","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-upd_app.1","Node":"vm","Ports":""}
{"CurrentState":"Starting less than a second ago","DesiredState":"Running","Error":"","ID":"wr3fnp74224txyg0gweymweea","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-upd_app.2","Node":"vm","Ports":""}
{"CurrentState":"Failed 1 second ago","DesiredState":"Shutdown","Error":"\"task: non-zero exit (3)\"","ID":"5qcvv0yo4wo200mybfsb6rb6e","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-upd_app.2","Node":"vm","Ports":""}
{"CurrentState":"Shutdown 2 seconds ago","DesiredState":"Shutdown","Error":"","ID":"0iqbyvj4y3on06o97iwr6ve82","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-upd_app.2","Node":"vm","Ports":""}
"#;
        let expected = assessment(
            Health::Degraded,
            Some(
                "app: update paused: update paused due to failure or early termination of task 5qcvv0yo4wo200mybfsb6rb6e",
            ),
            true,
        );
        assert_eq!(
            captured(&ls("1/2"), &update(paused), ps, "2026-12-02T01:20:20Z"),
            (true, expected.clone())
        );
        // Paused is not converged: the tasks are read however long ago the sync was.
        assert_eq!(
            captured(&ls("1/2"), &update(paused), ps, "2026-12-02T05:00:00Z"),
            (true, expected)
        );
    }

    #[test]
    fn a_real_job_runs_then_completes_and_a_global_service_starts_then_runs() {
        let job = |replicas| {
            format!(
                r#"{{"ID":"cw7xc7n4248s","Image":"docker-cd-test/busybox:latest","Mode":"replicated job","Name":"dcdcap-job_migrate","Ports":"","Replicas":"{replicas}"}}"#
            )
        };
        let job_inspect = inspect(
            "cw7xc7n4248sb610zecfb8916",
            "dcdcap-job_migrate",
            "dcdcap-job",
            "migrate",
            "2026-12-02T01:21:44Z",
            r#""Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}}, "Endpoint": {"Spec": {}}"#,
        );
        // A job's task is named after the node, like a global service's, not after a slot.
        let running = r#"{"CurrentState":"Running less than a second ago","DesiredState":"Complete","Error":"","ID":"ak31st9os1iwlz8jtqqtsjv4v","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-job_migrate.rh5fityapw383bby5f7y4r0v0","Node":"vm","Ports":""}"#;
        let complete = r#"{"CurrentState":"Complete 3 seconds ago","DesiredState":"Complete","Error":"","ID":"ak31st9os1iwlz8jtqqtsjv4v","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-job_migrate.rh5fityapw383bby5f7y4r0v0","Node":"vm","Ports":""}"#;
        assert_eq!(
            captured(
                &job("1/1 (0/1 completed)"),
                &job_inspect,
                running,
                "2026-12-02T01:21:45Z"
            ),
            (
                true,
                assessment(Health::Progressing, Some("migrate: job running"), false)
            ),
            "service ls counts the running job as converged; its tasks say it is not done"
        );
        assert_eq!(
            captured(
                &job("0/1 (1/1 completed)"),
                &job_inspect,
                complete,
                "2026-12-02T01:21:49Z"
            ),
            (true, assessment(Health::Healthy, None, true))
        );

        let agent = |replicas| {
            format!(
                r#"{{"ID":"0265i7p6cuho","Image":"docker-cd-test/busybox:latest","Mode":"global","Name":"dcdcap-job_agent","Ports":"","Replicas":"{replicas}"}}"#
            )
        };
        let agent_inspect = inspect(
            "0265i7p6cuhosdncyztfxh27c",
            "dcdcap-job_agent",
            "dcdcap-job",
            "agent",
            "2026-12-02T01:21:44Z",
            r#""Mode": {"Global": {}}}, "Endpoint": {"Spec": {}}"#,
        );
        let task = |state| {
            format!(
                r#"{{"CurrentState":"{state}","DesiredState":"Running","Error":"","ID":"uaatq887ir2wnn3a770tthj1r","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-job_agent.rh5fityapw383bby5f7y4r0v0","Node":"vm","Ports":""}}"#
            )
        };
        assert_eq!(
            captured(
                &agent("0/1"),
                &agent_inspect,
                &task("Starting less than a second ago"),
                "2026-12-02T01:21:45Z"
            ),
            (
                true,
                assessment(
                    Health::Progressing,
                    Some("agent: 0/1 replicas running"),
                    false
                )
            )
        );
        assert_eq!(
            captured(
                &agent("1/1"),
                &agent_inspect,
                &task("Running 3 seconds ago"),
                "2026-12-02T01:21:49Z"
            ),
            (true, assessment(Health::Healthy, None, true))
        );
    }

    #[test]
    fn a_real_converged_service_is_healthy_and_asks_nothing_once_its_sync_is_old() {
        let ls = r#"{"ID":"3xq4ktl39202","Image":"docker-cd-test/busybox:latest","Mode":"replicated","Name":"dcdcap-ok_web","Ports":"","Replicas":"2/2"}"#;
        let inspect = inspect(
            "3xq4ktl39202cyml9j59o1tun",
            "dcdcap-ok_web",
            "dcdcap-ok",
            "web",
            "2026-12-02T01:16:51Z",
            r#""Mode": {"Replicated": {"Replicas": 2}}}, "Endpoint": {"Spec": {"Mode": "vip"}, "VirtualIPs": [{"NetworkID": "o1rk0zndlscs3y7gcry9e9klt", "Addr": "10.0.1.2/24"}]}"#,
        );
        let ps = r#"{"CurrentState":"Running 5 seconds ago","DesiredState":"Running","Error":"","ID":"jmfcj7c2jq6uw1kypa5ezm7jm","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-ok_web.1","Node":"vm","Ports":""}
{"CurrentState":"Running 5 seconds ago","DesiredState":"Running","Error":"","ID":"tgij0jrr4rnydroi51ucl5zvg","Image":"docker-cd-test/busybox:latest","Name":"dcdcap-ok_web.2","Node":"vm","Ports":""}
"#;
        let healthy = assessment(Health::Healthy, None, true);
        assert_eq!(
            captured(ls, &inspect, ps, "2026-12-02T01:16:57Z"),
            (true, healthy.clone())
        );
        // Just at the end of the watch, and a sync recorded in the future (a clock set back).
        assert_eq!(
            captured(ls, &inspect, "", "2026-12-02T01:26:51Z"),
            (false, healthy.clone())
        );
        assert_eq!(
            captured(ls, &inspect, ps, "2026-12-02T01:00:00Z"),
            (true, healthy.clone())
        );
        let unrecorded = inspect.replace("2026-12-02T01:16:51Z", "");
        assert_eq!(
            captured(ls, &unrecorded, "", "2026-12-02T01:16:57Z"),
            (false, healthy)
        );
    }
}
