//! Image updates (SPEC §12): whether the registry's tag of a running image moved.
//!
//! A check ([`ImageChecker::check`]) looks at every stack that takes updates (synced, not held
//! by the operator or Git, its `imageUpdates` or else `IMAGE_UPDATE_INTERVAL` set), and at each
//! of its services whose `image:` is a tag and that is not built from the stack: it asks the
//! registry once per distinct image for the tag's current manifest digest, compares it with the
//! digest the running image is known by, and records what it found on the stack (`images`).
//! Then it asks for a reconcile: the plan turns "an update is available" into an update job,
//! held back by dependencies and sync windows like any automatic sync, and the job pulls and
//! recreates only those services (see `jobs`). So the check itself never changes the host.
//!
//! A check costs `docker ps` (one for all stacks), one `docker container inspect` and one
//! `docker image inspect` for all candidate containers, and one manifest request per distinct
//! image, whatever the number of services using it; nothing is pulled to check.
//!
//! Workflow layer; part of the reconciler. Uses: engine (actual state, the images services
//! run), registry (manifest digests), stack (which services build), desired_state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::Reason;
use crate::desired_state::settings;
use crate::desired_state::{ImageStatus, StackStatus, Store};
use crate::engine::{Engine, ServiceImage};
use crate::queue::SingleSlot;
use crate::registry::{ImageRef, Reference, Registries};
use crate::stack::compose_file;
use crate::untrusted::Untrusted;

/// A service to check: what it runs, and its image reference (or why that cannot be read).
type Candidate = (ServiceImage, Result<ImageRef, String>);

/// What one check did (logged, and answered to `POST /api/image-updates` when it waits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckSummary {
    /// Stacks looked at.
    pub stacks: usize,
    /// Services with a tag to check.
    pub services: usize,
    /// Manifest requests made: one per distinct image.
    pub requests: usize,
    /// Services whose registry digest differs from the running one.
    pub updates: usize,
}

/// Asks registries whether the stacks' images moved; shared by the interval's ticker and the
/// API.
#[derive(Debug)]
pub struct ImageChecker {
    store: Arc<Store>,
    engine: Arc<Engine>,
    registries: Arc<Registries>,
    stacks_dir: PathBuf,
    slot: Arc<SingleSlot<Reason>>,
    /// Stacks take updates unless their `imageUpdates` says otherwise.
    default_on: bool,
    /// One check at a time: a second request while one runs waits for it.
    running: tokio::sync::Mutex<()>,
}

impl ImageChecker {
    pub(super) fn new(
        store: Arc<Store>,
        engine: Arc<Engine>,
        registries: Arc<Registries>,
        stacks_dir: PathBuf,
        slot: Arc<SingleSlot<Reason>>,
        default_on: bool,
    ) -> Self {
        Self {
            store,
            engine,
            registries,
            stacks_dir,
            slot,
            default_on,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Checks every `interval` until `shutdown` (the first check one interval after start-up,
    /// when the first syncs are done).
    pub async fn run_periodic(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => { self.check().await; }
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// One check of every stack that takes updates; what it found is on the stacks' records,
    /// and a reconcile is asked for when an update is available.
    pub async fn check(&self) -> CheckSummary {
        let _one = self.running.lock().await;
        let mut summary = CheckSummary::default();
        let (snapshot, sync) = self.store.view();
        let Some(snapshot) = snapshot else {
            return summary;
        };
        // The stacks that take updates and run what Git says.
        let mut candidates: BTreeMap<String, (String, String)> = BTreeMap::new(); // project → (path, file)
        for (path, desired) in &snapshot.stacks {
            let Some(info) = sync.get(path) else { continue };
            let Some(project) = desired.project_name.as_deref() else {
                continue;
            };
            let takes = desired.settings().image_updates.unwrap_or(self.default_on);
            let settled = desired.error.is_none()
                && info.status == StackStatus::Synced
                && !info.suspended
                && !info.suspended_in_git
                && info.hold.is_none();
            if takes && settled {
                candidates.insert(
                    project.to_owned(),
                    (path.clone(), desired.compose_file.clone()),
                );
            }
        }
        summary.stacks = candidates.len();
        if candidates.is_empty() {
            return summary;
        }
        let actual = match self.engine.read().await {
            Ok(actual) => actual,
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "image check: cannot read the Docker host; tried again at the next check");
                return summary;
            }
        };
        let projects: BTreeSet<String> = candidates.keys().cloned().collect();
        let running = match self.engine.service_images(&actual, &projects).await {
            Ok(running) => running,
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "image check: cannot read the images the stacks run");
                return summary;
            }
        };
        // Which services each stack builds itself: never checked against a registry.
        let mut checked: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
        for (project, services) in running {
            let Some((_, file)) = candidates.get(&project) else {
                continue;
            };
            let built = built_services(&self.stacks_dir.join(&project), file);
            let list = services
                .into_iter()
                .filter(|s| !built.contains(&s.service))
                .filter_map(|s| match ImageRef::parse(&s.image) {
                    Ok(r) if matches!(r.reference, Reference::Digest(_)) => None,
                    Ok(r) => Some((s, Ok(r))),
                    Err(e) => Some((s, Err(e.to_string()))),
                })
                .collect();
            checked.insert(project, list);
        }
        // One request per distinct image.
        let mut wanted: BTreeMap<String, ImageRef> = BTreeMap::new();
        for (_, r) in checked.values().flatten() {
            if let Ok(r) = r {
                wanted.entry(r.key()).or_insert_with(|| r.clone());
            }
        }
        summary.requests = wanted.len();
        let answers = futures_util::future::join_all(wanted.into_iter().map(|(key, r)| {
            let registries = self.registries.clone();
            async move {
                let answer = registries.digest(&r).await.map_err(|e| e.to_string());
                (key, answer)
            }
        }))
        .await;
        let answers: BTreeMap<String, Result<String, String>> = answers.into_iter().collect();
        let now = SystemTime::now();
        for (project, list) in checked {
            let Some((path, _)) = candidates.get(&project) else {
                continue;
            };
            let statuses: Vec<ImageStatus> = list
                .into_iter()
                .map(|(service, reference)| status(service, reference, &answers))
                .collect();
            summary.services += statuses.len();
            let updates = statuses.iter().filter(|s| s.update_available).count();
            summary.updates += updates;
            if updates > 0 {
                tracing::info!(stack = %Untrusted::new(path), updates, "image check: the registry has newer images");
            }
            for s in statuses.iter().filter(|s| s.error.is_some()) {
                tracing::warn!(stack = %Untrusted::new(path), service = %s.service, error = %Untrusted::bounded(s.error.as_deref().unwrap_or_default(), 500), "image check failed for a service");
            }
            self.store
                .update_stack(path, |s| s.images_checked(statuses, now));
        }
        tracing::info!(
            stacks = summary.stacks,
            services = summary.services,
            requests = summary.requests,
            updates = summary.updates,
            "image check done"
        );
        if summary.updates > 0 {
            self.slot.request(Reason::ImageUpdate);
        }
        summary
    }
}

/// What the check found for one service: the running digest (the repository digest of the
/// running image for the same repository) against the registry's.
fn status(
    service: ServiceImage,
    reference: Result<ImageRef, String>,
    answers: &BTreeMap<String, Result<String, String>>,
) -> ImageStatus {
    let mut status = ImageStatus {
        service: service.service,
        image: service.image,
        digest: None,
        latest_digest: None,
        update_available: false,
        error: None,
        image_id: service.image_id,
        update_failed: false,
    };
    let reference = match reference {
        Ok(r) => r,
        Err(e) => {
            status.error = Some(e);
            return status;
        }
    };
    status.digest = running_digest(&reference, &service.repo_digests);
    match answers.get(&reference.key()) {
        Some(Ok(latest)) => {
            status.update_available = status.digest.as_deref() != Some(latest.as_str());
            status.latest_digest = Some(latest.clone());
        }
        Some(Err(e)) => status.error = Some(e.clone()),
        None => status.error = Some("not asked".into()),
    }
    status
}

/// The digest of `repo_digests` (`repo@sha256:…`) that belongs to `reference`'s registry and
/// repository.
pub fn running_digest(reference: &ImageRef, repo_digests: &[String]) -> Option<String> {
    repo_digests.iter().find_map(|entry| {
        let (repo, digest) = entry.rsplit_once('@')?;
        let parsed = ImageRef::parse(repo).ok()?;
        (parsed.registry == reference.registry && parsed.repository == reference.repository)
            .then(|| digest.to_owned())
    })
}

/// The services the stack in `dir` builds (`build:`), from its compose files as its settings
/// list them (the files of its last sync). A file that cannot be read adds none: its services'
/// image names then fail to parse or are asked for like any other.
fn built_services(dir: &std::path::Path, main: &str) -> BTreeSet<String> {
    let Ok(raw) = std::fs::read(dir.join(main)) else {
        return BTreeSet::new();
    };
    let read = settings::read(&raw);
    let files: Vec<String> = if read.settings.files.is_empty() {
        vec![main.to_owned()]
    } else {
        read.settings.files.clone()
    };
    let mut built = BTreeSet::new();
    for file in files {
        let bytes = if file == main {
            raw.clone()
        } else {
            match std::fs::read(dir.join(&file)) {
                Ok(bytes) => bytes,
                Err(_) => continue,
            }
        };
        built.extend(compose_file::built_services(&bytes));
    }
    built
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(image: &str, digests: &[&str]) -> ServiceImage {
        ServiceImage {
            service: "app".into(),
            image: image.into(),
            image_id: Some("sha256:old".into()),
            repo_digests: digests.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn the_running_digest_is_the_one_of_the_same_repository() {
        let r = ImageRef::parse("nginx:1.27").unwrap();
        let digests = [format!("127.0.0.1:5000/nginx@{D2}"), format!("nginx@{D1}")];
        assert_eq!(running_digest(&r, &digests).as_deref(), Some(D1));
        let local = ImageRef::parse("127.0.0.1:5000/nginx:1").unwrap();
        assert_eq!(running_digest(&local, &digests).as_deref(), Some(D2));
        let other = ImageRef::parse("ghcr.io/x/nginx:1").unwrap();
        assert_eq!(running_digest(&other, &digests), None);
    }

    #[test]
    fn an_update_is_available_when_the_registry_says_another_digest() {
        let r = ImageRef::parse("127.0.0.1:5000/team/app:1").unwrap();
        let key = r.key();
        let same = BTreeMap::from([(key.clone(), Ok(D1.to_owned()))]);
        let moved = BTreeMap::from([(key.clone(), Ok(D2.to_owned()))]);
        let failed = BTreeMap::from([(key, Err("registry 127.0.0.1:5000 refused".to_owned()))]);
        let running = service(
            "127.0.0.1:5000/team/app:1",
            &[&format!("127.0.0.1:5000/team/app@{D1}")],
        );
        let s = status(running.clone(), Ok(r.clone()), &same);
        assert!(!s.update_available);
        assert_eq!(s.digest.as_deref(), Some(D1));
        let s = status(running.clone(), Ok(r.clone()), &moved);
        assert!(s.update_available);
        assert_eq!(s.latest_digest.as_deref(), Some(D2));
        let s = status(running, Ok(r.clone()), &failed);
        assert!(!s.update_available);
        assert_eq!(s.error.as_deref(), Some("registry 127.0.0.1:5000 refused"));
        // Never pulled from that registry (built or loaded here): not known, so updated.
        let s = status(service("127.0.0.1:5000/team/app:1", &[]), Ok(r), &same);
        assert!(s.update_available);
        assert_eq!(s.digest, None);
    }
}
