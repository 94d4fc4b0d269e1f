//! The service half of a stack's diff (SPEC §10): what a sync of the desired content would do
//! to each service of the project, and why ([`plan_services`]), and whether anything is pending
//! at all ([`in_sync`]).
//!
//! It says what docker-cd does today: a sync writes new label values on every service when
//! the content hash changes, so compose recreates each container of the stack; with the same
//! content, only what drifted is recreated (the labels of the last sync are reused).
//!
//! Both engines: actual state is a list of [`Workload`]s, compose containers or swarm services.
//!
//! Uses: plan (the [`Workload`] trait), git (the [`FileDiff`] type). Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::plan::Workload;
use crate::git::FileDiff;

/// What a sync would do to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Recreate,
    Remove,
    Unchanged,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Recreate => "recreate",
            Self::Remove => "remove",
            Self::Unchanged => "unchanged",
        }
    }
}

/// One service of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePlan {
    pub name: String,
    pub action: Action,
    pub reason: String,
}

/// Added to each reason when the desired services are unknown.
pub const SERVICES_UNKNOWN: &str =
    "the services of the compose file are unknown to docker-cd (compose decides)";

/// The plan of each service, sorted by name.
///
/// - `desired`: the services of the desired compose file
///   ([`crate::stack::compose_file::services`]'s names), or `None` when that reading cannot
///   tell (`include:`, anchors it cannot follow…) and only compose knows. Then nothing is
///   planned as created or removed: each running service is listed with what the content
///   hash and drift say, its reason ending with [`SERVICES_UNKNOWN`], and with nothing
///   running the list is empty.
/// - `desired_hash`: the desired content hash of the stack.
/// - `running`: the workloads of the project (compose containers, several per scaled
///   service, or swarm services). Those not part of the desired services (`compose run`
///   containers) are left out.
///
/// Per service, the first rule that applies:
/// desired but not running → create; running but not desired → remove; a workload without
/// docker-cd's labels, or whose content hash differs → recreate; same hash but drifted
/// ([`Workload::drift`]) → recreate; else unchanged.
pub fn plan_services<W: Workload>(
    desired: Option<&[String]>,
    desired_hash: &str,
    running: &[W],
) -> Vec<ServicePlan> {
    let mut by_service: BTreeMap<&str, Vec<&W>> = BTreeMap::new();
    for workload in running.iter().filter(|w| !w.is_ignored()) {
        by_service
            .entry(workload.service())
            .or_default()
            .push(workload);
    }
    // Services the last sync recorded: one of them with no workload was deployed and is gone.
    let recorded: BTreeSet<&str> = running
        .iter()
        .filter(|w| !w.is_ignored())
        .flat_map(|w| w.recorded_services())
        .collect();

    let mut plans = Vec::new();
    match desired {
        Some(desired) => {
            let desired: BTreeSet<&str> = desired.iter().map(String::as_str).collect();
            for name in desired.union(&by_service.keys().copied().collect()) {
                let plan = match (desired.contains(name), by_service.get(name)) {
                    (true, None) => ServicePlan {
                        name: (*name).to_owned(),
                        action: Action::Create,
                        reason: if recorded.contains(name) {
                            format!("not running: {}", W::missing_service(name))
                        } else {
                            "not running".to_owned()
                        },
                    },
                    (false, Some(_)) => ServicePlan {
                        name: (*name).to_owned(),
                        action: Action::Remove,
                        reason: "no longer in the compose file".to_owned(),
                    },
                    (_, Some(workloads)) => running_plan(name, workloads, desired_hash),
                    (false, None) => continue, // cannot happen: the name came from one side
                };
                plans.push(plan);
            }
        }
        None => {
            for (name, workloads) in &by_service {
                let mut plan = running_plan(name, workloads, desired_hash);
                plan.reason = format!("{}; {SERVICES_UNKNOWN}", plan.reason);
                plans.push(plan);
            }
        }
    }
    plans
}

/// The plan of a service that is both desired and running.
fn running_plan<W: Workload>(name: &str, workloads: &[&W], desired_hash: &str) -> ServicePlan {
    let plan = |action, reason| ServicePlan {
        name: name.to_owned(),
        action,
        reason,
    };
    if let Some(foreign) = workloads.iter().find(|w| !w.is_owned()) {
        return plan(
            Action::Recreate,
            format!("{}; a sync recreates it with them", foreign.unlabelled()),
        );
    }
    if let Some(other) = workloads.iter().find(|w| w.content_hash() != desired_hash) {
        return plan(
            Action::Recreate,
            format!(
                "the stack changed from {} to {}; docker-cd's labels change, so compose \
                 recreates it",
                short(other.content_hash()),
                short(desired_hash)
            ),
        );
    }
    let drift: Vec<String> = workloads.iter().filter_map(|w| w.drift()).collect();
    if !drift.is_empty() {
        return plan(Action::Recreate, format!("drift: {}", drift.join("; ")));
    }
    plan(Action::Unchanged, "runs the desired content".to_owned())
}

/// The first 12 digits of a content hash, as the sync reasons show them.
fn short(hash: &str) -> &str {
    match hash {
        "" => "an unrecorded content",
        hash => hash.get(..12).unwrap_or(hash),
    }
}

/// Nothing is pending: no file differs from the deployed commit and no service would change.
pub fn in_sync(files: &[FileDiff], services: &[ServicePlan]) -> bool {
    files.is_empty() && services.iter().all(|s| s.action == Action::Unchanged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::ContainerInfo;
    use crate::git::Change;
    use crate::stack::labels::{DeployedLabels, OWNER_VALUE};
    use crate::swarm::ServiceInfo;

    const OLD: &str = "1111111111111111aaaa";
    const NEW: &str = "2222222222222222bbbb";

    fn container(service: &str, hash: &str, recorded: &str) -> ContainerInfo {
        ContainerInfo {
            id: format!("id-{service}"),
            name: format!("web-{service}-1"),
            state: "running".into(),
            status: "Up 1 minute".into(),
            image: "img".into(),
            ports: String::new(),
            project: "web".into(),
            service: service.into(),
            oneoff: "False".into(),
            labels: DeployedLabels {
                owner: OWNER_VALUE.into(),
                instance: "0123456789abcdef".into(),
                stack_path: "web".into(),
                revision: "r0".into(),
                content_hash: hash.into(),
                compose_hash: "c".into(),
                synced_at: "2026-11-28T16:00:00Z".into(),
                services: recorded.into(),
                depends_on: String::new(),
            },
        }
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn brief(plans: &[ServicePlan]) -> Vec<(&str, &str)> {
        plans
            .iter()
            .map(|p| (p.name.as_str(), p.action.as_str()))
            .collect()
    }

    #[test]
    fn an_env_change_recreates_every_service_of_the_stack() {
        let running = [
            container("app", OLD, "app,db"),
            container("db", OLD, "app,db"),
        ];
        let plans = plan_services(Some(&names(&["app", "db"])), NEW, &running);
        assert_eq!(brief(&plans), [("app", "recreate"), ("db", "recreate")]);
        assert_eq!(
            plans[0].reason,
            "the stack changed from 111111111111 to 222222222222; docker-cd's labels change, \
             so compose recreates it"
        );
        assert!(!in_sync(&[], &plans));
    }

    #[test]
    fn a_new_service_is_created() {
        let running = [container("app", OLD, "app")];
        let plans = plan_services(Some(&names(&["app", "cache"])), NEW, &running);
        assert_eq!(brief(&plans), [("app", "recreate"), ("cache", "create")]);
        assert_eq!(plans[1].reason, "not running");
    }

    #[test]
    fn a_service_gone_from_the_compose_file_is_removed() {
        let running = [
            container("app", OLD, "app,old"),
            container("old", OLD, "app,old"),
        ];
        let plans = plan_services(Some(&names(&["app"])), NEW, &running);
        assert_eq!(brief(&plans), [("app", "recreate"), ("old", "remove")]);
        assert_eq!(plans[1].reason, "no longer in the compose file");
    }

    #[test]
    fn the_same_content_running_is_unchanged_and_in_sync() {
        let running = [
            container("app", NEW, "app,db"),
            container("db", NEW, "app,db"),
        ];
        let plans = plan_services(Some(&names(&["db", "app"])), NEW, &running);
        assert_eq!(brief(&plans), [("app", "unchanged"), ("db", "unchanged")]);
        assert!(in_sync(&[], &plans));
        // A file that differs is pending even when every service would stay.
        let file = FileDiff {
            path: "README.md".into(),
            change: Change::Modified,
            diff: Some(String::new()),
            binary: false,
            truncated: false,
        };
        assert!(!in_sync(&[file], &plans));
    }

    #[test]
    fn nothing_deployed_creates_every_service() {
        let plans = plan_services::<ContainerInfo>(Some(&names(&["b", "a"])), NEW, &[]);
        assert_eq!(brief(&plans), [("a", "create"), ("b", "create")]);
        assert!(plans.iter().all(|p| p.reason == "not running"));
        assert!(!in_sync(&[], &plans));
    }

    #[test]
    fn a_stopped_container_of_unchanged_content_is_recreated_with_the_drift() {
        let mut stopped = container("db", NEW, "app,db");
        stopped.state = "exited".into();
        stopped.status = "Exited (137) 2 minutes ago".into();
        let running = [container("app", NEW, "app,db"), stopped];
        let plans = plan_services(Some(&names(&["app", "db"])), NEW, &running);
        assert_eq!(brief(&plans), [("app", "unchanged"), ("db", "recreate")]);
        assert_eq!(
            plans[1].reason,
            "drift: container web-db-1 is exited (exit code 137)"
        );
        assert!(!in_sync(&[], &plans));
    }

    #[test]
    fn a_recorded_service_whose_container_is_gone_is_created_saying_so() {
        let running = [container("app", NEW, "app,db")];
        let plans = plan_services(Some(&names(&["app", "db"])), NEW, &running);
        assert_eq!(brief(&plans), [("app", "unchanged"), ("db", "create")]);
        assert_eq!(plans[1].reason, "not running: service db has no container");
    }

    #[test]
    fn one_replica_of_another_content_recreates_the_service() {
        let mut second = container("app", OLD, "app");
        second.name = "web-app-2".into();
        let running = [container("app", NEW, "app"), second];
        let plans = plan_services(Some(&names(&["app"])), NEW, &running);
        assert_eq!(brief(&plans), [("app", "recreate")]);
        assert!(
            plans[0]
                .reason
                .contains("from 111111111111 to 222222222222")
        );
    }

    #[test]
    fn a_container_without_labels_is_recreated_and_one_off_containers_are_ignored() {
        let mut foreign = container("app", "", "");
        foreign.labels = DeployedLabels::default();
        let mut oneoff = container("migrate", NEW, "app");
        oneoff.oneoff = "True".into();
        let plans = plan_services(Some(&names(&["app"])), NEW, &[foreign, oneoff]);
        assert_eq!(brief(&plans), [("app", "recreate")]);
        assert!(
            plans[0]
                .reason
                .contains("does not carry docker-cd's labels"),
            "{}",
            plans[0].reason
        );
    }

    #[test]
    fn unknown_desired_services_plan_only_what_runs() {
        let running = [container("app", OLD, "app"), container("db", NEW, "app,db")];
        let plans = plan_services(None, NEW, &running);
        assert_eq!(brief(&plans), [("app", "recreate"), ("db", "unchanged")]);
        assert!(plans.iter().all(|p| p.reason.ends_with(SERVICES_UNKNOWN)));
        assert_eq!(plan_services::<ContainerInfo>(None, NEW, &[]), []);
    }

    fn swarm_service(service: &str, hash: &str) -> ServiceInfo {
        let mut labels = std::collections::BTreeMap::from([
            ("com.docker-cd.owner".to_owned(), OWNER_VALUE.to_owned()),
            ("com.docker-cd.content-hash".to_owned(), hash.to_owned()),
            ("com.docker-cd.services".to_owned(), "api,worker".to_owned()),
        ]);
        labels.insert(crate::swarm::STACK_IMAGE_LABEL.into(), "img:1".into());
        ServiceInfo {
            id: format!("id-{service}"),
            name: format!("web_{service}"),
            stack: "web".into(),
            service: service.into(),
            deployed: DeployedLabels::from_labels(&labels),
            labels,
            mode: "replicated".into(),
            spec_replicas: Some(1),
            running: 1,
            desired: 1,
            image: "img:1@sha256:abc".into(),
            update_state: None,
            update_message: None,
            ports: String::new(),
        }
    }

    #[test]
    fn swarm_services_are_planned_the_same_way() {
        let mut drifted = swarm_service("worker", NEW);
        drifted.image = "img:2".into();
        let plans = plan_services(
            Some(&names(&["api", "worker", "web"])),
            NEW,
            &[swarm_service("api", NEW), drifted],
        );
        assert_eq!(
            brief(&plans),
            [
                ("api", "unchanged"),
                ("web", "create"),
                ("worker", "recreate")
            ]
        );
        assert_eq!(
            plans[2].reason,
            "drift: service web_worker runs image img:2, not img:1"
        );
        let changed = plan_services(Some(&names(&["api"])), OLD, &[swarm_service("api", NEW)]);
        assert_eq!(brief(&changed), [("api", "recreate")]);
        // Recorded but gone: swarm's own words.
        let gone = plan_services(
            Some(&names(&["api", "worker"])),
            NEW,
            &[swarm_service("api", NEW)],
        );
        assert_eq!(gone[1].reason, "not running: service worker was removed");
    }
}
