//! The one seam between docker-cd's workflows and the Docker host: [`Engine`], compose or swarm
//! behind one interface. It reads actual state (the workloads with docker-cd's labels), applies
//! a stack's files, removes a project, describes a stack (its containers, or its services and
//! tasks), and probes the host (server version, running count) through its [`Host`].
//!
//! An enum, not a trait object. There are exactly two engines, both in this crate, chosen once
//! at start-up from `DEPLOY_MODE`; an enum dispatches their async methods statically, without
//! boxing every future (a `dyn` trait with async methods needs `async-trait` or hand-written
//! `Pin<Box<…>>`), and a third engine would be a compile error at every `match` that must know
//! it. The actual state stays typed per engine ([`Actual`]), which the pure plan needs (it is
//! generic over `plan::Workload`, not over a trait object). Tests replace engines at the process
//! boundary (recording `docker` wrappers), so no in-process fake needs a trait.
//!
//! [`Host`] is the part that needs no compose tool and no swarm: `docker ps` and
//! `docker version`. It exists even when reconciling is disabled (the status page still counts
//! running containers), and in both modes it asks exactly what it asked before the seam.
//!
//! Sits between the adapters and the workflows. Uses: compose, swarm, stack, config
//! (`DeployMode`, `ReconcileConfig`), desired_state (compose file names). Spawns only through the
//! adapters.

pub mod health;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::compose::{Compose, ComposeError, ComposeTool, ContainerInfo, Docker};
use crate::config::{DeployMode, ReconcileConfig};
use crate::desired_state::COMPOSE_FILE_NAMES;
use crate::stack::compose_file;
use crate::stack::labels::{self, SyncLabels};
use crate::stack::materialise::{self, MaterialiseError};
use crate::stack::{ContainerView, StackFiles};
use crate::swarm::{ServiceInfo, ServiceView, Swarm, SwarmError, check};

/// Actual state as one engine reports it.
#[derive(Debug)]
pub enum Actual {
    /// Every compose container on the host.
    Containers(Vec<ContainerInfo>),
    /// Every service of every stack on the swarm.
    Services(Vec<ServiceInfo>),
}

/// One stack as the stack detail shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackDescription {
    /// Its containers (compose; `compose run` containers left out), or its tasks in the same
    /// shape (swarm).
    pub containers: Vec<ContainerView>,
    /// Swarm only: its services with their replicas and the nodes of their tasks.
    pub services: Option<Vec<ServiceView>>,
}

impl StackDescription {
    /// A stack with nothing on the host, as `engine` would describe it.
    pub fn empty(lists_services: bool) -> Self {
        Self {
            containers: Vec::new(),
            services: lists_services.then(Vec::new),
        }
    }
}

/// A stack ready to be applied ([`Engine::prepare`]): its files with docker-cd's label
/// override, and whether `up` builds.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub files: StackFiles,
    pub build: bool,
}

/// What one hook did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookOutput {
    /// `None`: killed at the timeout (or ended by a signal).
    pub exit_code: Option<i32>,
    /// stdout, then stderr's tail.
    pub output: String,
    pub timed_out: bool,
}

/// The image one service of a stack runs, for the image-update check (SPEC §12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceImage {
    pub service: String,
    /// As the compose file names it (`nginx:1.27`).
    pub image: String,
    /// The image id it runs (compose), `None` in swarm mode.
    pub image_id: Option<String>,
    /// `repo@sha256:…`: the manifest digests the running image is known by (what a pull
    /// recorded; a swarm service's resolved digest). Empty for an image built or loaded here.
    pub repo_digests: Vec<String>,
}

/// One image a stack runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningImage {
    pub service: String,
    /// The reference the compose file names.
    pub image: String,
    /// What it resolved to: the image id (compose) or the digest (swarm).
    pub image_id: Option<String>,
}

/// Actual state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read the Docker host")]
    Compose(#[source] ComposeError),
    #[error("cannot read the Docker host")]
    Swarm(#[source] SwarmError),
}

/// An engine operation failed. The adapters' errors are transparent: a stack's
/// `lastSyncError` and the API show their words, as they did before the seam.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Compose(#[from] ComposeError),
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    /// A `docker stack deploy` that failed, with the errors of the stack's failed tasks (a
    /// deploy that did not converge says little by itself; the tasks say why).
    #[error("{error}")]
    Deploy {
        error: SwarmError,
        task_errors: Vec<String>,
    },
    #[error("cannot write the stack's files")]
    Materialise(#[from] MaterialiseError),
    #[error("{0}")]
    Internal(String),
}

impl EngineError {
    /// The error through `chain`, and a failed swarm deploy's task errors through `task`.
    pub fn describe(
        &self,
        chain: impl Fn(&(dyn std::error::Error + 'static)) -> String,
        task: impl Fn(&str) -> String,
    ) -> String {
        match self {
            Self::Deploy { error, task_errors } => {
                let mut text = chain(error);
                if !task_errors.is_empty() {
                    text.push_str("\nfailed tasks:");
                    for error in task_errors {
                        text.push('\n');
                        text.push_str(&task(error));
                    }
                }
                text
            }
            other => chain(other),
        }
    }
}

/// The engine of a `DEPLOY_MODE` could not be set up at start-up.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(
        "DEPLOY_MODE=auto needs the Docker engine to answer at start-up, to tell a swarm manager from a plain host"
    )]
    Auto(#[source] SwarmError),
    #[error("DEPLOY_MODE=swarm needs a swarm manager and `docker stack deploy`")]
    Swarm(#[source] SwarmError),
    #[error("RECONCILE_ENABLED=true needs a compose tool")]
    Compose(#[source] ComposeError),
}

impl DetectError {
    /// The tool's own error, without the start-up context (`check` prints it under the tool).
    pub fn tool_error(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            Self::Auto(e) | Self::Swarm(e) => e,
            Self::Compose(e) => e,
        }
    }
}

/// The Docker host's read-only queries, the same whichever engine deploys.
#[derive(Debug, Clone)]
pub struct Host {
    docker: Docker,
}

impl Host {
    /// The docker CLI at `bin`, run with `env` (the client environment).
    pub fn new(bin: PathBuf, env: Vec<(OsString, OsString)>) -> Self {
        Self {
            docker: Docker::new(bin, env),
        }
    }

    /// How many containers run on the host (all of them, not only docker-cd's). One process.
    pub async fn running_count(&self) -> Result<usize, EngineError> {
        Ok(self.docker.running_count().await?)
    }

    /// The registries the engine reaches over plain HTTP (its `insecure-registries`), so that
    /// image checks use plain HTTP exactly where its pulls do. One process.
    pub async fn insecure_registries(&self) -> Result<Vec<String>, EngineError> {
        let config = self.docker.registry_config().await?;
        Ok(crate::registry::engine_insecure_registries(&config))
    }

    /// The engine's version: proves the daemon answers. One process.
    pub async fn server_version(&self) -> Result<String, EngineError> {
        Ok(self.docker.server_version().await?)
    }

    /// The containers of one compose project, but `compose run` ones. One process.
    pub async fn describe_containers(
        &self,
        project: &str,
    ) -> Result<StackDescription, EngineError> {
        let containers = self.docker.project_containers(project).await?;
        Ok(StackDescription {
            containers: containers
                .iter()
                .filter(|c| !c.is_oneoff())
                .map(ContainerView::from)
                .collect(),
            services: None,
        })
    }
}

/// What stacks are deployed with.
#[derive(Debug)]
pub enum Engine {
    /// `docker compose` on this host; actual state from containers.
    Compose { compose: Compose, host: Host },
    /// `docker stack deploy` on a swarm manager; actual state from services.
    Swarm { swarm: Swarm, host: Host },
}

impl Engine {
    /// Chooses and checks the engine of `config.deploy_mode` (`auto` asks the engine whether it
    /// is a swarm manager). `host` is also what the swarm engine probes with.
    pub async fn detect(
        config: &ReconcileConfig,
        host: Host,
        env: Vec<(OsString, OsString)>,
    ) -> Result<Self, DetectError> {
        let mode = match config.deploy_mode {
            DeployMode::Auto => {
                let state = Swarm::state(&config.docker_bin, &env)
                    .await
                    .map_err(DetectError::Auto)?;
                let mode = if state.is_manager() {
                    DeployMode::Swarm
                } else {
                    DeployMode::Compose
                };
                tracing::info!(swarm_state = %state.local_node_state, manager = state.control_available, ?mode, "DEPLOY_MODE=auto");
                mode
            }
            mode => mode,
        };
        if mode == DeployMode::Swarm {
            let swarm = Swarm::detect(&config.docker_bin, env, config.compose_timeout)
                .await
                .map_err(DetectError::Swarm)?;
            tracing::info!(tool = %swarm.describe(), "swarm mode: stacks are deployed with docker stack deploy");
            Ok(Self::Swarm { swarm, host })
        } else {
            let tool = ComposeTool::detect(&config.docker_bin, config.compose_bin.as_deref(), &env)
                .await
                .map_err(DetectError::Compose)?;
            tracing::info!(tool = %tool.describe(), "compose tool found");
            let compose = Compose::new(tool, env, config.compose_timeout);
            Ok(Self::Compose { compose, host })
        }
    }

    /// `compose` or `swarm`, for `/readyz`.
    pub fn mode_name(&self) -> &'static str {
        match self {
            Self::Compose { .. } => "compose",
            Self::Swarm { .. } => "swarm",
        }
    }

    /// The tool in use, for logs and `/readyz`: `docker compose plugin 2.29.7`, or
    /// `docker stack deploy (docker CLI 28.2.2) --prune …`.
    pub fn describe(&self) -> String {
        match self {
            Self::Compose { compose, .. } => compose.tool().describe(),
            Self::Swarm { swarm, .. } => swarm.describe(),
        }
    }

    /// The binary the engine runs (`/readyz` checks it is still there): `docker` for the
    /// compose plugin and for swarm, the standalone `docker-compose` otherwise.
    pub fn program(&self, docker_bin: &Path) -> PathBuf {
        match self {
            Self::Compose { compose, .. } => match compose.tool() {
                ComposeTool::Plugin { docker, .. } => docker.clone(),
                ComposeTool::Standalone { bin, .. } => bin.clone(),
            },
            Self::Swarm { .. } => docker_bin.to_owned(),
        }
    }

    /// The host's read-only queries.
    pub fn host(&self) -> &Host {
        match self {
            Self::Compose { host, .. } | Self::Swarm { host, .. } => host,
        }
    }

    /// Whether a stack's description has services (swarm) besides containers.
    pub fn lists_services(&self) -> bool {
        matches!(self, Self::Swarm { .. })
    }

    /// Every workload with docker-cd's labels or of a same-named project: one `docker ps`
    /// (compose), or `service ls` and `service inspect` (swarm), whatever the number of stacks.
    pub async fn read(&self) -> Result<Actual, ReadError> {
        match self {
            Self::Compose { host, .. } => host
                .docker
                .compose_containers()
                .await
                .map(Actual::Containers)
                .map_err(ReadError::Compose),
            Self::Swarm { swarm, .. } => swarm
                .services()
                .await
                .map(Actual::Services)
                .map_err(ReadError::Swarm),
        }
    }

    /// Readies the stack in `files` (materialised at the commit) to be applied, labelled with
    /// `labels` (its `services` are filled in here, from the engine's own reading of the
    /// compose files): lists the services and writes the label override to `override_file`.
    /// Nothing on the host changes yet; [`Engine::up`] applies it, and hooks run with it.
    pub async fn prepare(
        &self,
        mut files: StackFiles,
        mut labels: SyncLabels,
        override_file: PathBuf,
    ) -> Result<Prepared, EngineError> {
        files.override_file = None;
        let build = match self {
            Self::Compose { compose, .. } => {
                // One compose process per sync when the file says plainly what it starts;
                // compose itself (`config`) when it does not, or when several files
                // or profiles decide.
                let raw = read_compose_file(&files, &files.compose_file).await?;
                let listed = files
                    .is_plain()
                    .then(|| compose_file::services(&raw))
                    .flatten();
                let (services, build) = match listed {
                    Some(listed) => (listed.names, listed.builds),
                    None => (compose.services(&files).await?, true),
                };
                labels.services = services;
                let document = labels::override_document(&labels).to_string();
                write_override(&override_file, document).await?;
                build
            }
            Self::Swarm { swarm, .. } => {
                if !files.profiles.is_empty() {
                    return Err(EngineError::Internal(
                        "x-docker-cd.profiles: docker stack deploy has no profiles; remove the setting or deploy with DEPLOY_MODE=compose".into(),
                    ));
                }
                // Refuse what swarm would drop, before the engine is touched: first each file
                // as written, then the CLI's normalisation of them.
                let has_dot_env = files.dir.join(".env").is_file();
                let mut version = None;
                for name in files.compose_files().map(str::to_owned).collect::<Vec<_>>() {
                    let raw = read_compose_file(&files, &name).await?;
                    let source =
                        check::check_source(&name, &raw, has_dot_env).map_err(SwarmError::from)?;
                    version = version.or(source.version);
                }
                let normalised = swarm.config(&files).await?;
                let specs = check::read_config(&normalised).map_err(SwarmError::from)?;
                labels.services = specs.iter().map(|s| s.name.clone()).collect();
                let document =
                    check::override_document(&labels, &specs, version.as_deref()).to_string();
                write_override(&override_file, document).await?;
                false
            }
        };
        files.override_file = Some(override_file);
        Ok(Prepared { files, build })
    }

    /// Applies a prepared stack: `up` or `deploy`.
    pub async fn up(&self, prepared: &Prepared) -> Result<(), EngineError> {
        match self {
            Self::Compose { compose, .. } => compose.up(&prepared.files, prepared.build).await?,
            Self::Swarm { swarm, .. } => {
                if let Err(error) = swarm.deploy(&prepared.files).await {
                    let task_errors = swarm.task_errors(&prepared.files.name).await;
                    return Err(EngineError::Deploy { error, task_errors });
                }
            }
        }
        Ok(())
    }

    /// Whether this engine can run hooks: compose can (`compose run`); swarm mode has no `run`,
    /// so a stack with hooks is refused before anything is deployed.
    pub fn check_hooks(&self) -> Result<(), EngineError> {
        match self {
            Self::Compose { .. } => Ok(()),
            Self::Swarm { .. } => Err(EngineError::Internal(
                "x-docker-cd.hooks: hooks run with `compose run`, which swarm mode (docker stack deploy) does not have; remove the hooks or deploy with DEPLOY_MODE=compose".into(),
            )),
        }
    }

    /// Runs one hook of a prepared stack (SPEC §11): `compose run --rm --no-deps` of its
    /// `service` with its `command`, in a container named `name`, after building the service's
    /// image when the stack builds. An exit status is an answer, not an error; a hook that
    /// outlives `COMPOSE_TIMEOUT` is killed with its process group and its container removed.
    /// Swarm mode has no `run`: a hook there is an error.
    pub async fn run_hook(
        &self,
        prepared: &Prepared,
        name: &str,
        service: &str,
        command: &[String],
    ) -> Result<HookOutput, EngineError> {
        self.check_hooks()?;
        let Self::Compose { compose, host } = self else {
            unreachable!("check_hooks refuses every other engine");
        };
        if prepared.build {
            compose.build(&prepared.files, service).await?;
        }
        match compose.run(&prepared.files, name, service, command).await {
            Ok(out) => {
                let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
                output.push_str(&out.stderr);
                Ok(HookOutput {
                    exit_code: out.status.code,
                    output,
                    timed_out: false,
                })
            }
            Err(ComposeError::Compose { source, .. }) if source.is_timeout() => {
                if let Err(e) = host.docker.remove_container(name).await {
                    tracing::warn!(container = name, error = %crate::error_chain(&e), "cannot remove the container of a hook that timed out");
                }
                Ok(HookOutput {
                    exit_code: None,
                    output: format!("{}\n{source}", source.stderr()),
                    timed_out: true,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes `project` down. Compose needs the files of its last sync (in `dir`, with the
    /// override if it is still there); a swarm stack needs none.
    pub async fn remove(
        &self,
        project: &str,
        dir: &Path,
        override_file: &Path,
    ) -> Result<(), EngineError> {
        match self {
            Self::Swarm { swarm, .. } => Ok(swarm.remove(project).await?),
            Self::Compose { compose, .. } => {
                let compose_file = COMPOSE_FILE_NAMES
                    .iter()
                    .find(|name| dir.join(name).is_file())
                    .map(|name| (*name).to_owned());
                let Some(compose_file) = compose_file else {
                    return Err(EngineError::Internal(format!(
                        "the files of its last sync are gone from {}; remove it by hand with `docker compose -p {project} down`",
                        dir.display()
                    )));
                };
                let files = StackFiles {
                    name: project.to_owned(),
                    dir: dir.to_owned(),
                    compose_file,
                    // `down --remove-orphans` with the first file takes every container of the
                    // project down, those of other files and profiles included.
                    extra_files: Vec::new(),
                    profiles: Vec::new(),
                    override_file: override_file.is_file().then(|| override_file.to_owned()),
                };
                Ok(compose.down(&files).await?)
            }
        }
    }

    /// The images a project runs, one per container (compose) or service (swarm), for the
    /// deployment history: `docker ps` and `docker container inspect` (compose), or
    /// `service ls` and `service inspect` (swarm, whose specs name the resolved digest).
    pub async fn images(&self, project: &str) -> Result<Vec<RunningImage>, EngineError> {
        match self {
            Self::Compose { host, .. } => {
                let containers: Vec<ContainerInfo> = host
                    .docker
                    .project_containers(project)
                    .await?
                    .into_iter()
                    .filter(|c| !c.is_oneoff())
                    .collect();
                let ids: Vec<String> = containers.iter().map(|c| c.id.clone()).collect();
                let resolved = host.docker.image_ids(&ids).await?;
                let mut images: Vec<RunningImage> = containers
                    .into_iter()
                    .map(|c| RunningImage {
                        image_id: resolved
                            .iter()
                            .find(|(id, _)| id.starts_with(&c.id))
                            .map(|(_, image)| image.clone()),
                        service: c.service,
                        image: c.image,
                    })
                    .collect();
                images.sort_by(|a, b| a.service.cmp(&b.service));
                images.dedup();
                Ok(images)
            }
            Self::Swarm { swarm, .. } => {
                let mut images: Vec<RunningImage> = swarm
                    .stack_services(project)
                    .await?
                    .into_iter()
                    .map(|s| {
                        let (image, digest) = match s.image.split_once('@') {
                            Some((image, digest)) => (image.to_owned(), Some(digest.to_owned())),
                            None => (s.image.clone(), None),
                        };
                        RunningImage {
                            service: s.service,
                            image,
                            image_id: digest,
                        }
                    })
                    .collect();
                images.sort_by(|a, b| a.service.cmp(&b.service));
                Ok(images)
            }
        }
    }

    /// The images the services of `projects` run, by project: from `actual` and, in compose
    /// mode, one `docker container inspect` and one `docker image inspect` for all of them;
    /// in swarm mode from the services' specs (no process).
    pub async fn service_images(
        &self,
        actual: &Actual,
        projects: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Vec<ServiceImage>>, EngineError> {
        let mut out: BTreeMap<String, Vec<ServiceImage>> = BTreeMap::new();
        match (self, actual) {
            (Self::Compose { host, .. }, Actual::Containers(containers)) => {
                let ids: Vec<String> = containers
                    .iter()
                    .filter(|c| !c.is_oneoff() && projects.contains(&c.project))
                    .map(|c| c.id.clone())
                    .collect();
                let images = host.docker.container_images(&ids).await?;
                let mut image_ids: Vec<String> =
                    images.iter().map(|i| i.image_id.clone()).collect();
                image_ids.sort();
                image_ids.dedup();
                let digests = host.docker.repo_digests(&image_ids).await?;
                for c in containers {
                    let Some(found) = images
                        .iter()
                        .find(|i| i.id.starts_with(&c.id) || c.id.starts_with(&i.id))
                    else {
                        continue;
                    };
                    let list = out.entry(c.project.clone()).or_default();
                    if list.iter().any(|s| s.service == found.service) {
                        continue; // one entry per service (scaled services run one image)
                    }
                    list.push(ServiceImage {
                        service: found.service.clone(),
                        image: found.image.clone(),
                        image_id: Some(found.image_id.clone()),
                        repo_digests: digests.get(&found.image_id).cloned().unwrap_or_default(),
                    });
                }
            }
            (Self::Swarm { .. }, Actual::Services(services)) => {
                for s in services.iter().filter(|s| projects.contains(&s.stack)) {
                    let (image, digest) = match s.image.split_once('@') {
                        Some((image, digest)) => (image.to_owned(), Some(digest.to_owned())),
                        None => (s.image.clone(), None),
                    };
                    let repo = image
                        .rsplit_once(':')
                        .filter(|(_, tag)| !tag.contains('/'))
                        .map_or(image.as_str(), |(repo, _)| repo)
                        .to_owned();
                    out.entry(s.stack.clone()).or_default().push(ServiceImage {
                        service: s.service.clone(),
                        image,
                        image_id: None,
                        repo_digests: digest.map(|d| format!("{repo}@{d}")).into_iter().collect(),
                    });
                }
            }
            _ => {
                return Err(EngineError::Internal(
                    "actual state of the other engine".into(),
                ));
            }
        }
        for list in out.values_mut() {
            list.sort_by(|a, b| a.service.cmp(&b.service));
        }
        Ok(out)
    }

    /// Brings `services` of a prepared stack to the images their tags name now: `compose pull`
    /// of them, then `up -d --no-deps` of them (with the labels of the last sync, so nothing
    /// else is recreated). In swarm mode, a deploy again: the CLI resolves every tag to its
    /// current digest and updates the services whose digest moved.
    pub async fn update_images(
        &self,
        prepared: &Prepared,
        services: &[String],
    ) -> Result<(), EngineError> {
        match self {
            Self::Compose { compose, .. } => {
                compose.pull(&prepared.files, services).await?;
                compose.up_services(&prepared.files, services).await?;
                Ok(())
            }
            Self::Swarm { .. } => self.up(prepared).await,
        }
    }

    /// Puts `reference` back on the image `image_id` (compose), then recreates `services`: the
    /// rollback of an image update. Swarm mode keeps no previous image here: not supported.
    pub async fn restore_images(
        &self,
        prepared: &Prepared,
        images: &[(String, String)],
        services: &[String],
    ) -> Result<(), EngineError> {
        match self {
            Self::Compose { compose, host } => {
                for (image_id, reference) in images {
                    host.docker.tag(image_id, reference).await?;
                }
                compose.up_services(&prepared.files, services).await?;
                Ok(())
            }
            Self::Swarm { .. } => Err(EngineError::Internal(
                "rolling back an image update is not supported in swarm mode; `docker service rollback` does it by hand".into(),
            )),
        }
    }

    /// One stack as the stack detail shows it: its containers (one `docker ps`), or its
    /// services and, when it has any, their tasks (`service ls`, `service inspect`,
    /// `stack ps`).
    pub async fn describe_stack(&self, project: &str) -> Result<StackDescription, EngineError> {
        match self {
            Self::Compose { host, .. } => host.describe_containers(project).await,
            Self::Swarm { swarm, .. } => {
                let services = swarm.stack_services(project).await?;
                let tasks = if services.is_empty() {
                    Vec::new()
                } else {
                    swarm.tasks(project).await?
                };
                Ok(StackDescription {
                    containers: crate::swarm::task_containers(&services, &tasks),
                    services: Some(crate::swarm::service_views(&services, &tasks)),
                })
            }
        }
    }
}

/// One of the operator's compose files, as materialised.
async fn read_compose_file(files: &StackFiles, name: &str) -> Result<Vec<u8>, EngineError> {
    tokio::fs::read(files.dir.join(name))
        .await
        .map_err(|e| EngineError::Internal(format!("cannot read the compose file {name}: {e}")))
}

/// Writes an override file atomically, off the async threads.
async fn write_override(file: &Path, document: String) -> Result<(), EngineError> {
    let file = file.to_owned();
    tokio::task::spawn_blocking(move || materialise::write_atomically(&file, document.as_bytes()))
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_deploy_is_described_with_its_failed_tasks() {
        let failed = EngineError::Deploy {
            error: SwarmError::MissingFlag("--prune"),
            task_errors: vec!["web_app.1: task: non-zero exit (3)".into()],
        };
        let text = failed.describe(|e| e.to_string(), str::to_owned);
        assert_eq!(
            text,
            "`docker stack deploy` of this docker CLI has no --prune flag; docker-cd needs it\nfailed tasks:\nweb_app.1: task: non-zero exit (3)"
        );
    }

    #[test]
    fn adapter_errors_keep_their_own_words() {
        let error = EngineError::from(ComposeError::NoServices);
        assert_eq!(error.to_string(), "the compose file defines no services");
        assert_eq!(
            error.describe(|e| e.to_string(), str::to_owned),
            "the compose file defines no services"
        );
    }

    #[test]
    fn an_empty_stack_lists_services_only_in_swarm_mode() {
        assert_eq!(StackDescription::empty(false).services, None);
        assert_eq!(StackDescription::empty(true).services, Some(Vec::new()));
        assert!(StackDescription::empty(true).containers.is_empty());
    }
}
