//! The desired state and the in-memory cache of it (SPEC §4).
//!
//! - [`Snapshot`]: what one commit of the repository says, read by the git adapter. Immutable,
//!   shared as `Arc<Snapshot>` and swapped whole; its stacks are `Arc`s too, shared with the
//!   previous snapshot where the commit did not change them.
//! - [`tree`]: the pure reading of a tree listing, or of a diff to the previous one, into stacks.
//! - [`store`]: the cache: the current snapshot, each stack's sync status, the refresh status,
//!   and the event stream the API serves.
//! - [`census`]: the plain count of that cache that [`Store::census`] takes for its reporters
//!   (`GET /metrics`).
//! - [`public`]: errors rendered for the clients of that cache.
//!
//! Foundation layer: uses no adapter and spawns nothing (config, process and untrusted, for
//! [`public`]). It knows none of its readers: the metrics get a [`Census`] and the edge turns
//! it into theirs.

pub mod census;
mod events;
pub mod order;
pub mod public;
pub mod settings;
pub mod store;
pub mod transitions;
pub mod tree;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

pub use census::Census;
pub use store::{Event, Store};

/// Compose's own precedence of file names: the first present wins.
pub const COMPOSE_FILE_NAMES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// Compose files larger than this are a per-stack error. The size comes from `cat-file`'s
/// header; the content of an oversized blob is drained, never held, and its id remembered so
/// later refreshes skip it. Real compose files are a few KiB.
pub const MAX_COMPOSE_FILE_BYTES: u64 = 1024 * 1024;

/// What kind of ref the configured revision turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RefType {
    Branch,
    Tag,
    Commit,
}

impl RefType {
    /// The wire name, as serde writes it: `branch`, `tag`, `commit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Branch => "branch",
            Self::Tag => "tag",
            Self::Commit => "commit",
        }
    }
}

/// The desired state read from one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Commit id everything was read from.
    pub revision: String,
    /// Full ref name (`refs/heads/main`), or the commit id for a pinned commit.
    pub git_ref: String,
    pub ref_type: RefType,
    /// The ref's value on the remote when it was read (a tag object id for annotated tags):
    /// when the remote still says this, nothing needs fetching.
    pub remote_oid: String,
    pub commit_message: String,
    /// Stacks by path. Each behind an `Arc`: a stack the next commit did not change is the
    /// same `Arc` in the next snapshot (see [`tree::assemble`]).
    pub stacks: BTreeMap<String, Arc<DesiredStack>>,
    pub warnings: Vec<String>,
    /// What the commit's tree says about each stack (internal): the next refresh applies the
    /// diff to the next commit to it instead of listing the whole tree again.
    pub tree: tree::TreeIndex,
}

/// One stack as Git says it should be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredStack {
    pub path: String,
    /// `None` when the path yields no valid project name.
    pub project_name: Option<String>,
    pub compose_file: String,
    /// SHA-256 hex of the compose file bytes; `None` when the file could not be read.
    pub compose_hash: Option<String>,
    /// Git tree id of the stack directory: any change to any file of the stack changes it.
    pub content_hash: String,
    /// Blob id of the compose file when it was read and hashed (internal: lets the next refresh
    /// skip unchanged blobs).
    #[serde(skip)]
    pub compose_blob: Option<String>,
    pub warnings: Vec<String>,
    /// Why this stack cannot be applied at all (symlinked or oversized compose file, name
    /// collision, an invalid setting). The reconciler reports it as `failed` without touching
    /// the host.
    pub error: Option<String>,
    /// What the compose file's `x-docker-cd:` says (SPEC §11); `None`: nothing. Its warnings
    /// and its error are in `warnings` and `error` too.
    #[serde(serialize_with = "settings::serialize_read")]
    pub settings: Option<Arc<settings::Read>>,
}

impl DesiredStack {
    /// The stack's settings in Git (empty when it has none).
    pub fn settings(&self) -> &settings::StackSettings {
        self.settings
            .as_deref()
            .map_or(&settings::EMPTY, |read| &read.settings)
    }
}

/// The compose project name for a stack path: lower-cased, characters outside `[a-z0-9_-]`
/// dropped, leading `_`/`-` dropped (a name must start with a letter or digit). The same rule
/// as Compose's own normalisation, so the name never changes under it.
pub fn project_name(path: &str) -> Option<String> {
    let mut name: String = path
        .chars()
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    let leading = name.len() - name.trim_start_matches(['_', '-']).len();
    name.drain(..leading);
    (!name.is_empty()).then_some(name)
}

/// A stack in a map that [`assign_project_names`] names: owned, or behind the `Arc` a
/// snapshot holds it in (and may share with the snapshot before it).
pub trait StackSlot {
    fn stack(&self) -> &DesiredStack;
    fn stack_mut(&mut self) -> &mut DesiredStack;
    /// Shared with another snapshot, which named it already: [`tree::assemble`] shares only
    /// stacks that were named and had no error, so no two shared stacks have the same name.
    fn is_shared(&self) -> bool;
}

impl StackSlot for DesiredStack {
    fn stack(&self) -> &DesiredStack {
        self
    }

    fn stack_mut(&mut self) -> &mut DesiredStack {
        self
    }

    fn is_shared(&self) -> bool {
        false
    }
}

impl StackSlot for Arc<DesiredStack> {
    fn stack(&self) -> &DesiredStack {
        self
    }

    fn stack_mut(&mut self) -> &mut DesiredStack {
        // Copies a shared stack first, so the snapshot that shares it never changes.
        Arc::make_mut(self)
    }

    fn is_shared(&self) -> bool {
        Arc::strong_count(self) > 1
    }
}

/// Derives every stack's project name, and fails every stack that has none or shares one with
/// another stack: neither of two colliding stacks may touch the host.
///
/// Stacks shared with the previous snapshot ([`StackSlot::is_shared`]) keep the name they have;
/// since no two of them collide, only the names of the other stacks are looked for, so a
/// refresh that changed one stack of 10,000 names one stack and compares one name.
pub fn assign_project_names<S: StackSlot>(stacks: &mut BTreeMap<String, S>) {
    let mut any_shared = false;
    for slot in stacks.values_mut() {
        if slot.is_shared() {
            any_shared = true;
            continue;
        }
        let stack = slot.stack_mut();
        stack.project_name = project_name(&stack.path);
        if stack.project_name.is_none() {
            stack.error.get_or_insert_with(|| {
                format!(
                    "path {:?} yields no valid compose project name (needs a letter or digit)",
                    stack.path
                )
            });
        }
    }
    // Only a name some new stack has can collide (`None`: every stack is new).
    let new_names: Option<HashSet<&str>> = any_shared.then(|| {
        stacks
            .values()
            .filter(|slot| !slot.is_shared())
            .filter_map(|slot| slot.stack().project_name.as_deref())
            .collect()
    });
    if new_names.as_ref().is_some_and(HashSet::is_empty) {
        return;
    }
    // (name, path) pairs sorted by name, borrowed (10,000 stacks need one vector, no copies);
    // a run of equal names is a collision, and only collisions are collected as owned values.
    let mut named: Vec<(&str, &str)> = stacks
        .values()
        .map(StackSlot::stack)
        .filter_map(|s| Some((s.project_name.as_deref()?, s.path.as_str())))
        .filter(|(name, _)| new_names.as_ref().is_none_or(|new| new.contains(name)))
        .collect();
    named.sort_unstable();
    let mut collisions: Vec<(String, String)> = Vec::new();
    for run in named
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|run| run.len() > 1)
    {
        let name = run[0].0;
        for (_, path) in run {
            let others = run
                .iter()
                .filter(|(_, p)| p != path)
                .map(|(_, p)| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            collisions.push((
                (*path).to_owned(),
                format!("project name {name:?} collides with stacks {others}; rename one of them"),
            ));
        }
    }
    for (path, error) in collisions {
        if let Some(slot) = stacks.get_mut(&path) {
            slot.stack_mut().error = Some(error);
        }
    }
}

/// A stack's sync status (SPEC §4, §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StackStatus {
    Missing,
    Syncing,
    Synced,
    Deleting,
    Failed,
    Drifted,
    Orphaned,
}

impl StackStatus {
    /// The wire name, as serde writes it (`missing`, `synced`, …): the API, the dashboard and
    /// the metrics all show this.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Syncing => "syncing",
            Self::Synced => "synced",
            Self::Deleting => "deleting",
            Self::Failed => "failed",
            Self::Drifted => "drifted",
            Self::Orphaned => "orphaned",
        }
    }
}

/// How a stack's workloads are doing, beside its sync status (SPEC §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Every desired service runs, healthy where it has a healthcheck (a one-shot service that
    /// exited 0 counts).
    Healthy,
    /// Starting, `health: starting`, or still inside the health timeout after a sync.
    Progressing,
    /// Unhealthy, restarting or crash-looping, exited non-zero, or the health timeout passed.
    Degraded,
    /// Nothing of the stack is deployed.
    Missing,
    /// The operator suspended the stack (SPEC §10).
    Suspended,
    /// The engine does not answer, or the stack was not looked at yet.
    Unknown,
}

impl Health {
    pub const ALL: [Self; 6] = [
        Self::Healthy,
        Self::Progressing,
        Self::Degraded,
        Self::Missing,
        Self::Suspended,
        Self::Unknown,
    ];

    /// The wire name, as serde writes it: the API, the dashboard and the metrics show this.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Progressing => "progressing",
            Self::Degraded => "degraded",
            Self::Missing => "missing",
            Self::Suspended => "suspended",
            Self::Unknown => "unknown",
        }
    }
}

/// Outcome of the last sync attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncOutcome {
    Succeeded,
    Failed,
}

impl SyncOutcome {
    /// The wire name, as serde writes it: `succeeded`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// What the reconciler knows about a stack on the host: status, sync metadata, runtime counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncInfo {
    pub status: StackStatus,
    pub synced_revision: Option<String>,
    pub synced_commit_message: Option<String>,
    pub synced_compose_hash: Option<String>,
    pub synced_content_hash: Option<String>,
    #[serde(serialize_with = "rfc3339::option")]
    pub synced_at: Option<SystemTime>,
    #[serde(serialize_with = "rfc3339::option")]
    pub last_sync_at: Option<SystemTime>,
    pub last_sync_status: Option<SyncOutcome>,
    pub last_sync_error: Option<String>,
    /// What drifted, while the stack is `drifted` (or was just reverted).
    pub drift: Option<String>,
    pub containers_running: u32,
    pub containers_total: u32,
    /// How the stack's workloads are doing (SPEC §9), and why, naming the service.
    pub health: Health,
    pub health_message: Option<String>,
    /// Content hash of the last failed attempt and how many times in a row it failed: a failing
    /// version is retried with backoff, a new version at once.
    #[serde(skip)]
    pub failed_content_hash: Option<String>,
    #[serde(skip)]
    pub consecutive_failures: u32,
    /// The operator acknowledged drift (`POST /api/reconcile/ack`): re-apply once.
    #[serde(skip)]
    pub ack_requested: bool,
    /// For a stack no longer in Git: its compose project on the host.
    #[serde(skip)]
    pub host_project: Option<String>,
    /// The commit an operator's rollback holds the stack at (SPEC §10): automatic syncs of it
    /// stop until `unpin`.
    pub pinned_revision: Option<String>,
    /// The operator suspended the stack: never synced, reverted or removed.
    pub suspended: bool,
    /// Git suspended it (`x-docker-cd.suspend: true`), as the operator's suspension does.
    pub suspended_in_git: bool,
    /// Why an automatic sync waits (SPEC §11): `waiting for db (progressing)`, `sync window
    /// opens 2026-12-05T02:00:00Z`. `None` when nothing holds the stack back.
    pub blocked_by: Option<String>,
    /// What the last image-update check found, per service (SPEC §12); empty before one.
    pub images: Vec<ImageStatus>,
    #[serde(serialize_with = "rfc3339::option")]
    pub images_checked_at: Option<SystemTime>,
    /// What the stack is held at instead of the snapshot's version: an operator's pin, or an
    /// automatic rollback (which holds only until Git says something new).
    #[serde(skip)]
    pub hold: Option<Hold>,
    /// A sync the operator asked for (`sync now`, `rollback`): applied once, even in sync.
    #[serde(skip)]
    pub requested: Option<Request>,
}

/// One service's image as the image-update check found it (SPEC §12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageStatus {
    pub service: String,
    /// As the compose file names it (`nginx:1.27`).
    pub image: String,
    /// The manifest digest the running image is known by; `None` for an image never pulled
    /// from (or pushed to) its registry here.
    pub digest: Option<String>,
    /// What the registry's tag points at now; `None` when it could not be asked (`error`).
    pub latest_digest: Option<String>,
    pub update_available: bool,
    /// Why the registry could not be asked (names the registry, never a credential).
    pub error: Option<String>,
    /// The running image's id, to put back if the update fails (internal).
    #[serde(skip)]
    pub image_id: Option<String>,
    /// An update to `latest_digest` was tried and failed: not tried again until the tag moves.
    pub update_failed: bool,
}

/// The version of a stack at one commit, when that is not the snapshot's: what a pinned or
/// rolled-back stack is synced to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The full commit id.
    pub revision: String,
    /// The tree id of the stack directory at that commit.
    pub content_hash: String,
    pub compose_file: String,
    pub compose_hash: Option<String>,
    pub commit_message: String,
}

/// Why a stack is held at a [`Target`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub target: Target,
    /// `None`: the operator pinned it (until `unpin`). `Some(hash)`: an automatic rollback
    /// after the sync of content `hash` failed; it holds while Git still says `hash`.
    pub rolled_back_from: Option<String>,
}

impl Hold {
    /// Whether the hold applies while Git says `desired_content_hash`.
    pub fn applies(&self, desired_content_hash: &str) -> bool {
        self.rolled_back_from
            .as_deref()
            .is_none_or(|failed| failed == desired_content_hash)
    }
}

/// A sync an operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `POST /api/stacks/{path}/sync`: re-apply, even when in sync.
    Sync,
    /// `POST /api/stacks/{path}/rollback`: apply the pinned version.
    Rollback,
}

impl SyncInfo {
    pub fn new(status: StackStatus) -> Self {
        Self {
            status,
            synced_revision: None,
            synced_commit_message: None,
            synced_compose_hash: None,
            synced_content_hash: None,
            synced_at: None,
            last_sync_at: None,
            last_sync_status: None,
            last_sync_error: None,
            drift: None,
            containers_running: 0,
            containers_total: 0,
            health: Health::Unknown,
            health_message: None,
            failed_content_hash: None,
            consecutive_failures: 0,
            ack_requested: false,
            host_project: None,
            pinned_revision: None,
            suspended: false,
            suspended_in_git: false,
            blocked_by: None,
            images: Vec::new(),
            images_checked_at: None,
            hold: None,
            requested: None,
        }
    }
}

/// A stack as the API shows it: the desired part (absent for a stack gone from Git) and the
/// sync part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackRecord {
    pub path: String,
    pub project_name: Option<String>,
    pub compose_file: Option<String>,
    pub compose_hash: Option<String>,
    pub content_hash: Option<String>,
    /// Still in the current snapshot.
    pub in_git: bool,
    pub warnings: Vec<String>,
    pub error: Option<String>,
    /// The stack's `x-docker-cd:` settings (`{}` when none, and for a stack gone from Git).
    pub settings: settings::StackSettings,
    #[serde(flatten)]
    pub sync: SyncInfo,
}

impl StackRecord {
    pub fn new(desired: &DesiredStack, sync: &SyncInfo) -> Self {
        Self {
            path: desired.path.clone(),
            project_name: desired.project_name.clone(),
            compose_file: Some(desired.compose_file.clone()),
            compose_hash: desired.compose_hash.clone(),
            content_hash: Some(desired.content_hash.clone()),
            in_git: true,
            warnings: desired.warnings.clone(),
            error: desired.error.clone(),
            settings: desired.settings().clone(),
            sync: sync.clone(),
        }
    }

    pub fn gone_from_git(path: &str, sync: &SyncInfo) -> Self {
        Self {
            path: path.to_owned(),
            project_name: sync.host_project.clone(),
            compose_file: None,
            compose_hash: None,
            content_hash: None,
            in_git: false,
            warnings: Vec::new(),
            error: None,
            settings: settings::StackSettings::default(),
            sync: sync.clone(),
        }
    }
}

/// A [`StackRecord`] borrowed from the cache instead of cloned: serialises to exactly the
/// same JSON. `GET /api/stacks` writes 10,000 of these straight into the response body.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackRecordView<'a> {
    pub path: &'a str,
    pub project_name: Option<&'a str>,
    pub compose_file: Option<&'a str>,
    pub compose_hash: Option<&'a str>,
    pub content_hash: Option<&'a str>,
    pub in_git: bool,
    pub warnings: &'a [String],
    pub error: Option<&'a str>,
    pub settings: &'a settings::StackSettings,
    #[serde(flatten)]
    pub sync: &'a SyncInfo,
}

impl<'a> StackRecordView<'a> {
    /// The view of [`StackRecord::new`].
    pub fn new(desired: &'a DesiredStack, sync: &'a SyncInfo) -> Self {
        Self {
            path: &desired.path,
            project_name: desired.project_name.as_deref(),
            compose_file: Some(&desired.compose_file),
            compose_hash: desired.compose_hash.as_deref(),
            content_hash: Some(&desired.content_hash),
            in_git: true,
            warnings: &desired.warnings,
            error: desired.error.as_deref(),
            settings: desired.settings(),
            sync,
        }
    }

    /// The view of [`StackRecord::gone_from_git`].
    pub fn gone_from_git(path: &'a str, sync: &'a SyncInfo) -> Self {
        Self {
            path,
            project_name: sync.host_project.as_deref(),
            compose_file: None,
            compose_hash: None,
            content_hash: None,
            in_git: false,
            warnings: &[],
            error: None,
            settings: &settings::EMPTY,
            sync,
        }
    }
}

/// What started a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Startup,
    Periodic,
    Webhook,
    Manual,
}

impl Trigger {
    /// The wire name, as serde writes it: `startup`, `periodic`, `webhook`, `manual`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Periodic => "periodic",
            Self::Webhook => "webhook",
            Self::Manual => "manual",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the refresh machinery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RefreshPhase {
    Refreshing,
    Queued,
    Completed,
    Failed,
}

impl RefreshPhase {
    /// The wire name, as serde writes it: `refreshing`, `queued`, `completed`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refreshing => "refreshing",
            Self::Queued => "queued",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// The snapshot-level status served by `/api/refresh-status` (SPEC §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshStatus {
    /// Number of the running or last refresh since start-up (1 for the first; 0 before it
    /// starts). A client that noted it before asking for a refresh knows that its request has
    /// been served once this is higher and `refreshStatus` is `completed` or `failed`.
    pub refresh_id: u64,
    /// Commit id of the current snapshot.
    pub revision: Option<String>,
    /// Full ref name of the current snapshot, or the configured revision before the first one.
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub ref_type: Option<RefType>,
    pub commit_message: Option<String>,
    #[serde(serialize_with = "rfc3339::option")]
    pub refreshed_at: Option<SystemTime>,
    pub refresh_status: RefreshPhase,
    pub refresh_error: Option<String>,
    #[serde(serialize_with = "rfc3339::option")]
    pub last_success_at: Option<SystemTime>,
    pub trigger: Option<Trigger>,
    /// A refresh waiting behind the running one, and what asked for it.
    pub queued_trigger: Option<Trigger>,
    pub consecutive_failures: u32,
    pub stack_count: usize,
    pub warnings: Vec<String>,
}

impl RefreshStatus {
    /// A refresh by `trigger` succeeded at `now`.
    pub(crate) fn complete(&mut self, trigger: Trigger, now: SystemTime) {
        self.refreshed_at = Some(now);
        self.last_success_at = Some(now);
        self.refresh_status = RefreshPhase::Completed;
        self.refresh_error = None;
        self.trigger = Some(trigger);
        self.consecutive_failures = 0;
    }

    pub fn initial(configured_ref: String) -> Self {
        Self {
            refresh_id: 0,
            revision: None,
            git_ref: configured_ref,
            ref_type: None,
            commit_message: None,
            refreshed_at: None,
            refresh_status: RefreshPhase::Queued,
            refresh_error: None,
            last_success_at: None,
            trigger: None,
            queued_trigger: None,
            consecutive_failures: 0,
            stack_count: 0,
            warnings: Vec::new(),
        }
    }
}

/// RFC 3339 timestamps (UTC, seconds) for serde.
pub mod rfc3339 {
    use std::time::SystemTime;

    pub fn format(t: SystemTime) -> String {
        humantime::format_rfc3339_seconds(t).to_string()
    }

    pub fn option<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format(*t)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(path: &str) -> DesiredStack {
        DesiredStack {
            path: path.into(),
            project_name: None,
            compose_file: "compose.yaml".into(),
            compose_hash: None,
            content_hash: "t".into(),
            compose_blob: None,
            warnings: vec![],
            error: None,
            settings: None,
        }
    }

    #[test]
    fn project_names_are_normalised_deterministically() {
        assert_eq!(project_name("Web App").as_deref(), Some("webapp"));
        assert_eq!(project_name("-leading").as_deref(), Some("leading"));
        assert_eq!(project_name("_x-Y_9").as_deref(), Some("x-y_9"));
        assert_eq!(project_name("café").as_deref(), Some("caf"));
        assert_eq!(project_name("ÄÖÜ"), None);
        assert_eq!(project_name("--"), None);
        assert_eq!(project_name("Web App"), project_name("Web App"));
    }

    #[test]
    fn colliding_and_nameless_stacks_get_errors() {
        let mut stacks: BTreeMap<_, _> = ["Tricky Name", "trickyname", "ok", "日本"]
            .into_iter()
            .map(|p| (p.to_owned(), stack(p)))
            .collect();
        assert_project_names(&mut stacks);
        assert!(
            stacks["Tricky Name"]
                .error
                .as_ref()
                .unwrap()
                .contains("collides")
        );
        assert!(
            stacks["trickyname"]
                .error
                .as_ref()
                .unwrap()
                .contains("\"Tricky Name\"")
        );
        assert!(stacks["ok"].error.is_none());
        assert!(
            stacks["日本"]
                .error
                .as_ref()
                .unwrap()
                .contains("no valid compose project name")
        );
    }

    fn assert_project_names(stacks: &mut BTreeMap<String, DesiredStack>) {
        assign_project_names(stacks);
        assert_eq!(stacks["ok"].project_name.as_deref(), Some("ok"));
    }

    #[test]
    fn a_new_stack_colliding_with_a_shared_one_fails_both_and_leaves_the_old_snapshot_alone() {
        let mut first: BTreeMap<String, Arc<DesiredStack>> = ["ok", "web"]
            .into_iter()
            .map(|p| (p.to_owned(), Arc::new(stack(p))))
            .collect();
        assign_project_names(&mut first);
        assert!(first.values().all(|s| s.error.is_none()));
        // The next snapshot shares both and adds "Web", which is named "web" too.
        let mut next = first.clone();
        next.insert("Web".into(), Arc::new(stack("Web")));
        assign_project_names(&mut next);
        assert!(Arc::ptr_eq(&next["ok"], &first["ok"]));
        assert!(next["web"].error.as_ref().unwrap().contains("\"Web\""));
        assert!(next["Web"].error.as_ref().unwrap().contains("\"web\""));
        assert!(
            first["web"].error.is_none(),
            "the shared stack was copied, not changed"
        );
        // The same as naming every stack afresh.
        let mut owned: BTreeMap<String, DesiredStack> = ["ok", "web", "Web"]
            .into_iter()
            .map(|p| (p.to_owned(), stack(p)))
            .collect();
        assign_project_names(&mut owned);
        let next: BTreeMap<String, DesiredStack> = next
            .into_iter()
            .map(|(p, s)| (p, Arc::unwrap_or_clone(s)))
            .collect();
        assert_eq!(next, owned);
    }

    /// Serde's name for `value`: the JSON string it writes.
    fn serde_name(value: impl Serialize) -> String {
        match serde_json::to_value(value).unwrap() {
            serde_json::Value::String(name) => name,
            other => panic!("not a string: {other}"),
        }
    }

    #[test]
    fn every_status_name_is_the_name_serde_writes() {
        // Each list names every variant (a new variant belongs in its list too).
        let stacks = [
            StackStatus::Missing,
            StackStatus::Syncing,
            StackStatus::Synced,
            StackStatus::Deleting,
            StackStatus::Failed,
            StackStatus::Drifted,
            StackStatus::Orphaned,
        ];
        let phases = [
            RefreshPhase::Refreshing,
            RefreshPhase::Queued,
            RefreshPhase::Completed,
            RefreshPhase::Failed,
        ];
        let triggers = [
            Trigger::Startup,
            Trigger::Periodic,
            Trigger::Webhook,
            Trigger::Manual,
        ];
        let ref_types = [RefType::Branch, RefType::Tag, RefType::Commit];
        let outcomes = [SyncOutcome::Succeeded, SyncOutcome::Failed];
        for s in stacks {
            assert_eq!(s.as_str(), serde_name(s));
        }
        for p in phases {
            assert_eq!(p.as_str(), serde_name(p));
        }
        for t in triggers {
            assert_eq!(t.as_str(), serde_name(t));
            assert_eq!(t.to_string(), t.as_str());
        }
        for r in ref_types {
            assert_eq!(r.as_str(), serde_name(r));
        }
        for o in outcomes {
            assert_eq!(o.as_str(), serde_name(o));
        }
    }

    #[test]
    fn stack_records_serialise_in_camel_case_without_internals() {
        let mut desired = stack("web");
        desired.compose_blob = Some("blobid".into());
        let mut sync = SyncInfo::new(StackStatus::Missing);
        sync.failed_content_hash = Some("x".into());
        let json = serde_json::to_value(StackRecord::new(&desired, &sync)).unwrap();
        assert_eq!(json["status"], "missing");
        assert_eq!(json["contentHash"], "t");
        assert!(json.get("composeBlob").is_none());
        assert!(json.get("failedContentHash").is_none());
        assert!(json.get("syncedAt").unwrap().is_null());
    }
}
