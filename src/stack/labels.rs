//! docker-cd's labels: the durable record, on every container (compose) or service (swarm), of
//! what was deployed.
//!
//! They are added through a generated override file (JSON, which both compose versions read as
//! YAML) so the operator's compose file is never rewritten. After a restart, docker-cd reads
//! them back with one `docker ps` (or `docker service inspect`) and knows what runs without
//! redeploying anything. [`SyncLabels`] are the values written at a sync; [`DeployedLabels`]
//! the same values read back, whichever engine reports them.
//!
//! Uses: nothing of docker-cd (pure).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Marks containers docker-cd created. Containers of a project without it are not ours.
pub const OWNER: &str = "com.docker-cd.owner";
pub const OWNER_VALUE: &str = "docker-cd";
/// Which docker-cd instance deployed the container (see [`instance_id`]): an instance only
/// ever removes stacks it deployed itself, so several agents can share a host.
pub const INSTANCE: &str = "com.docker-cd.instance";
pub const STACK_PATH: &str = "com.docker-cd.stack.path";
pub const REVISION: &str = "com.docker-cd.revision";
pub const CONTENT_HASH: &str = "com.docker-cd.content-hash";
pub const COMPOSE_HASH: &str = "com.docker-cd.compose-hash";
pub const SYNCED_AT: &str = "com.docker-cd.synced-at";
/// The services the stack had at sync time, comma-separated: a service whose container is gone
/// is drift even when the other containers run.
pub const SERVICES: &str = "com.docker-cd.services";
/// The stacks (paths) this one depended on at sync time (`x-docker-cd.dependsOn`),
/// comma-separated: a stack gone from Git is removed only after the stacks that depend on it.
pub const DEPENDS_ON: &str = "com.docker-cd.depends-on";

/// A stable id for the agent watching `repo` (the URL without credentials) and `deploy_dir`:
/// the first 16 hex digits of their SHA-256. Derived, not stored, so it survives a lost data
/// dir; it changes only if the repository URL or deploy dir changes.
pub fn instance_id(repo: &str, deploy_dir: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{repo}\n{deploy_dir}"));
    hex::encode(&digest[..8])
}

/// The values of one sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLabels {
    pub instance: String,
    pub stack_path: String,
    pub revision: String,
    pub content_hash: String,
    pub compose_hash: String,
    /// RFC 3339.
    pub synced_at: String,
    pub services: Vec<String>,
    pub depends_on: Vec<String>,
}

impl SyncLabels {
    pub fn to_map(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            (OWNER, OWNER_VALUE.to_owned()),
            (INSTANCE, self.instance.clone()),
            (STACK_PATH, self.stack_path.clone()),
            (REVISION, self.revision.clone()),
            (CONTENT_HASH, self.content_hash.clone()),
            (COMPOSE_HASH, self.compose_hash.clone()),
            (SYNCED_AT, self.synced_at.clone()),
            (SERVICES, self.services.join(",")),
            (DEPENDS_ON, self.depends_on.join(",")),
        ])
    }
}

/// docker-cd's labels as read back from a workload (a container or a service). An absent label
/// is an empty string.
///
/// Deserialised (by the compose adapter, flattened into its container) from the keys its
/// `docker ps` template prints; built from a label map with [`DeployedLabels::from_labels`] (by
/// the swarm adapter). Both are the one place their engine's labels are parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployedLabels {
    /// [`OWNER`]: [`OWNER_VALUE`] on what docker-cd created.
    pub owner: String,
    /// [`INSTANCE`]. Absent (empty) on workloads of docker-cd versions before the label existed.
    #[serde(default)]
    pub instance: String,
    /// [`STACK_PATH`].
    #[serde(rename = "path")]
    pub stack_path: String,
    /// [`REVISION`].
    pub revision: String,
    /// [`CONTENT_HASH`].
    pub content_hash: String,
    /// [`COMPOSE_HASH`].
    pub compose_hash: String,
    /// [`SYNCED_AT`], RFC 3339.
    pub synced_at: String,
    /// [`SERVICES`], comma-separated.
    pub services: String,
    /// [`DEPENDS_ON`], comma-separated. Absent on workloads of docker-cd versions before it.
    #[serde(default)]
    pub depends_on: String,
}

impl DeployedLabels {
    /// Reads docker-cd's labels from a workload's whole label map.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Self {
        let get = |key: &str| labels.get(key).cloned().unwrap_or_default();
        Self {
            owner: get(OWNER),
            instance: get(INSTANCE),
            stack_path: get(STACK_PATH),
            revision: get(REVISION),
            content_hash: get(CONTENT_HASH),
            compose_hash: get(COMPOSE_HASH),
            synced_at: get(SYNCED_AT),
            services: get(SERVICES),
            depends_on: get(DEPENDS_ON),
        }
    }

    /// Carries docker-cd's owner label.
    pub fn is_owned(&self) -> bool {
        self.owner == OWNER_VALUE
    }

    /// The stacks this one depended on at its last sync.
    pub fn recorded_dependencies(&self) -> impl Iterator<Item = &str> {
        self.depends_on.split(',').filter(|s| !s.is_empty())
    }

    /// The services the stack had at its last sync.
    pub fn recorded_services(&self) -> Vec<&str> {
        self.services.split(',').filter(|s| !s.is_empty()).collect()
    }
}

/// The override document: every service gets the labels (merged by compose with the
/// service's own labels). It has no `version` key: compose v1.29 merges it with files of any
/// version, and v2 ignores `version`.
pub fn override_document(labels: &SyncLabels) -> Value {
    let service_labels: Map<String, Value> = labels
        .to_map()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v)))
        .collect();
    let services: Map<String, Value> = labels
        .services
        .iter()
        .map(|s| (s.clone(), json!({ "labels": service_labels })))
        .collect();
    json!({ "services": services })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> SyncLabels {
        SyncLabels {
            instance: instance_id("https://example.com/a.git", "stacks"),
            stack_path: "web".into(),
            revision: "abc".into(),
            content_hash: "t1".into(),
            compose_hash: "c1".into(),
            synced_at: "2026-11-28T16:00:00Z".into(),
            services: vec!["app".into(), "db".into()],
            depends_on: Vec::new(),
        }
    }

    #[test]
    fn every_service_gets_every_label() {
        let doc = override_document(&labels());
        for service in ["app", "db"] {
            let l = &doc["services"][service]["labels"];
            assert_eq!(l[OWNER], OWNER_VALUE);
            assert_eq!(l[STACK_PATH], "web");
            assert_eq!(l[CONTENT_HASH], "t1");
            assert_eq!(l[SERVICES], "app,db");
            assert_eq!(l[INSTANCE].as_str().unwrap().len(), 16);
        }
        assert!(doc.get("version").is_none());
    }

    #[test]
    fn labels_read_back_from_a_map_are_the_labels_written() {
        let written = labels();
        let map = written
            .to_map()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let read = DeployedLabels::from_labels(&map);
        assert!(read.is_owned());
        assert_eq!(read.stack_path, "web");
        assert_eq!(read.revision, "abc");
        assert_eq!(read.content_hash, "t1");
        assert_eq!(read.compose_hash, "c1");
        assert_eq!(read.synced_at, written.synced_at);
        assert_eq!(read.instance, written.instance);
        assert_eq!(read.recorded_services(), ["app", "db"]);
        let unlabelled = DeployedLabels::from_labels(&BTreeMap::new());
        assert!(!unlabelled.is_owned());
        assert!(unlabelled.recorded_services().is_empty());
    }

    #[test]
    fn instance_ids_are_stable_and_differ_per_repository_and_deploy_dir() {
        let a = instance_id("https://example.com/a.git", "stacks");
        assert_eq!(a, instance_id("https://example.com/a.git", "stacks"));
        assert_ne!(a, instance_id("https://example.com/b.git", "stacks"));
        assert_ne!(a, instance_id("https://example.com/a.git", ""));
    }
}
