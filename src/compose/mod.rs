//! The compose adapter: finds the compose tool and runs it; reads actual state from the engine.
//!
//! Two tools are supported, with only what both share (SPEC §6): the `docker compose` v2 plugin
//! (preferred) and the standalone `docker-compose` (Debian's 1.29 among them). Every run passes
//! `--project-name`, `--project-directory` and explicit `--file`s (a compose file's `name:` or a
//! `.env`'s `COMPOSE_PROJECT_NAME` never chooses the project), has stdin on `/dev/null`, a
//! scrubbed environment (the agent's secrets never reach variable interpolation) and a timeout
//! that kills the whole process group.
//!
//! - [`engine`]: `docker ps` with label filters, the only source of actual state.
//! - [`labels`] and [`materialise`] live in [`crate::stack`] (swarm uses them too); they are
//!   re-exported here under their old paths.
//!
//! Uses: process, stack. Spawns only through `process`.

pub mod engine;

pub use crate::stack::{StackFiles, labels, materialise};

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{Command, ProcessError};
pub use crate::stack::ContainerView;
pub use engine::{ContainerInfo, Docker};

/// How long detecting the tool may take.
const DETECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(
        "no compose tool found: `docker compose` failed ({plugin}) and no `docker-compose` is on PATH; install the compose plugin"
    )]
    NotFound { plugin: String },
    #[error("docker failed")]
    Docker(#[source] ProcessError),
    #[error("compose {action} failed")]
    Compose {
        action: &'static str,
        #[source]
        source: ProcessError,
    },
    #[error("unexpected output from {what}: {message}")]
    Output { what: &'static str, message: String },
    #[error("the compose file defines no services")]
    NoServices,
}

impl ComposeError {
    /// The compose tool's own message (its stderr), for a stack's `lastSyncError`.
    pub fn tool_message(&self) -> Option<&str> {
        match self {
            Self::Compose { source, .. } | Self::Docker(source) => {
                Some(source.stderr().trim()).filter(|s| !s.is_empty())
            }
            _ => None,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Compose { source, .. } | Self::Docker(source) if source.is_timeout())
    }
}

/// The environment of docker and compose children: the scrubbed base plus an explicit
/// `DOCKER_HOST`. Compose v1 reads `DOCKER_HOST` from a stack's `.env`, so a repository could
/// otherwise point compose at another daemon; the caller's environment always wins over `.env`.
pub fn client_env(base: &[(OsString, OsString)]) -> Vec<(OsString, OsString)> {
    let mut env = base.to_vec();
    let has = |name: &str| base.iter().any(|(k, _)| k == name);
    if !has("DOCKER_HOST") && !has("DOCKER_CONTEXT") {
        env.push(("DOCKER_HOST".into(), "unix:///var/run/docker.sock".into()));
    }
    env
}

/// Which compose is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComposeTool {
    /// `docker compose …`
    Plugin { docker: PathBuf, version: String },
    /// `docker-compose …`
    Standalone { bin: PathBuf, version: String },
}

impl ComposeTool {
    /// Finds the tool: an explicit standalone binary if configured, else the `docker compose`
    /// plugin, else `docker-compose` on the children's `PATH`.
    pub async fn detect(
        docker: &Path,
        explicit: Option<&Path>,
        env: &[(OsString, OsString)],
    ) -> Result<Self, ComposeError> {
        if let Some(bin) = explicit {
            let version = version_of(Command::new(bin), env).await?;
            return Ok(Self::Standalone {
                bin: bin.to_owned(),
                version,
            });
        }
        let plugin = version_of(Command::new(docker).arg("compose"), env).await;
        match plugin {
            Ok(version) => Ok(Self::Plugin {
                docker: docker.to_owned(),
                version,
            }),
            Err(plugin_error) => {
                let search_path = env
                    .iter()
                    .rev()
                    .find(|(k, _)| k == "PATH")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
                let not_found = || ComposeError::NotFound {
                    plugin: plugin_error
                        .tool_message()
                        .unwrap_or("not installed")
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                };
                let bin = which::which_in("docker-compose", Some(search_path), cwd)
                    .map_err(|_| not_found())?;
                let version = version_of(Command::new(&bin), env).await?;
                Ok(Self::Standalone { bin, version })
            }
        }
    }

    /// For logs and `/readyz`: `docker compose plugin 2.29.7` or `docker-compose 1.29.2`.
    pub fn describe(&self) -> String {
        match self {
            Self::Plugin { version, .. } => format!("docker compose plugin {version}"),
            Self::Standalone { bin, version } => format!("{} {version}", bin.display()),
        }
    }

    fn command(&self) -> Command {
        match self {
            Self::Plugin { docker, .. } => Command::new(docker).arg("compose"),
            Self::Standalone { bin, .. } => Command::new(bin),
        }
    }
}

/// `<tool> version --short` (both versions support it; v1 prints `1.29.2`, v2 `2.29.7`).
async fn version_of(cmd: Command, env: &[(OsString, OsString)]) -> Result<String, ComposeError> {
    let out = cmd
        .args(["version", "--short"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .timeout(DETECT_TIMEOUT)
        .run()
        .await
        .map_err(|source| ComposeError::Compose {
            action: "version",
            source,
        })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches('v')
        .to_owned())
}

/// Runs a compose operation to the end; a failure says which `action` it was.
async fn run_action(cmd: Command, action: &'static str) -> Result<(), ComposeError> {
    cmd.run()
        .await
        .map(drop)
        .map_err(|source| ComposeError::Compose { action, source })
}

/// Runs compose operations.
#[derive(Debug, Clone)]
pub struct Compose {
    tool: ComposeTool,
    env: Vec<(OsString, OsString)>,
    timeout: Duration,
}

impl Compose {
    /// `env` is the complete environment compose gets (it feeds variable interpolation, so it
    /// holds nothing but what the docker client needs).
    pub fn new(tool: ComposeTool, env: Vec<(OsString, OsString)>, timeout: Duration) -> Self {
        Self { tool, env, timeout }
    }

    pub fn tool(&self) -> &ComposeTool {
        &self.tool
    }

    fn project_command(&self, project: &StackFiles, with_override: bool) -> Command {
        let mut cmd = self
            .tool
            .command()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&project.dir)
            .timeout(self.timeout)
            .arg("--project-name")
            .arg(&project.name)
            .arg("--project-directory")
            .arg(&project.dir);
        for file in project.compose_files() {
            cmd = cmd.arg("--file").arg(project.dir.join(file));
        }
        for profile in &project.profiles {
            cmd = cmd.arg("--profile").arg(profile);
        }
        if with_override {
            if let Some(file) = &project.override_file {
                cmd = cmd.arg("--file").arg(file);
            }
        }
        cmd
    }

    /// Validates the operator's compose files and lists the services `up` starts, from
    /// compose's rendering of the project (`config`). Not `config --services`: compose v1 lists
    /// services of inactive profiles there too, which `up` does not start.
    pub async fn services(&self, project: &StackFiles) -> Result<Vec<String>, ComposeError> {
        let out = self
            .project_command(project, false)
            .arg("config")
            .run()
            .await
            .map_err(|source| ComposeError::Compose {
                action: "config",
                source,
            })?;
        let services = crate::stack::compose_file::started_services(&out.stdout, &project.profiles)
            .ok_or_else(|| ComposeError::Output {
                what: "compose config",
                message: "no services mapping in the rendered project".into(),
            })?;
        if services.is_empty() {
            return Err(ComposeError::NoServices);
        }
        Ok(services)
    }

    /// `up -d --remove-orphans` with the override; with `build`, `--build` too: the images the
    /// stack builds are rebuilt from the files of this commit (the build cache keeps an
    /// unchanged build cheap), and containers whose image changed are recreated.
    pub async fn up(&self, project: &StackFiles, build: bool) -> Result<(), ComposeError> {
        let cmd = self
            .project_command(project, true)
            .args(["up", "--detach", "--remove-orphans"])
            .args(build.then_some("--build"));
        run_action(cmd, "up").await
    }

    /// `pull <services>`: the images those services name, as the registry has them now.
    pub async fn pull(
        &self,
        project: &StackFiles,
        services: &[String],
    ) -> Result<(), ComposeError> {
        self.services_action(project, &["pull"], services).await
    }

    /// `up -d --no-deps <services>`: recreates those services (their image changed), with the
    /// labels of the last sync, and nothing else of the project.
    pub async fn up_services(
        &self,
        project: &StackFiles,
        services: &[String],
    ) -> Result<(), ComposeError> {
        self.services_action(project, &["up", "--detach", "--no-deps"], services)
            .await
    }

    /// `<action…> -- <services>` on the project, under the action's name.
    async fn services_action(
        &self,
        project: &StackFiles,
        action: &[&'static str],
        services: &[String],
    ) -> Result<(), ComposeError> {
        let cmd = self
            .project_command(project, true)
            .args(action)
            .arg("--")
            .args(services);
        run_action(cmd, action[0]).await
    }

    /// `build <service>`: what a hook of a stack that builds runs with is built from this
    /// commit's files first (`run` builds only a missing image).
    pub async fn build(&self, project: &StackFiles, service: &str) -> Result<(), ComposeError> {
        let cmd = self
            .project_command(project, true)
            .args(["build", "--", service]);
        run_action(cmd, "build").await
    }

    /// `run --rm --no-deps -T --name <name> <service> <command…>`: one hook (SPEC §11), with the
    /// labels of the sync, under `COMPOSE_TIMEOUT`. Any exit status is an answer; a timeout kills
    /// compose's process group (the container it leaves behind is removed by name with
    /// [`Docker::remove_container`]).
    pub async fn run(
        &self,
        project: &StackFiles,
        name: &str,
        service: &str,
        command: &[String],
    ) -> Result<crate::process::Output, ComposeError> {
        let result = self
            .project_command(project, true)
            .args([
                "run",
                "--rm",
                "--no-deps",
                "-T",
                "--name",
                name,
                "--",
                service,
            ])
            .args(command)
            .run_unchecked()
            .await;
        result.map_err(|source| ComposeError::Compose {
            action: "run",
            source,
        })
    }

    /// `down --remove-orphans`: removes the project's containers and networks (volumes stay).
    pub async fn down(&self, project: &StackFiles) -> Result<(), ComposeError> {
        let cmd = self
            .project_command(project, true)
            .args(["down", "--remove-orphans"]);
        run_action(cmd, "down").await
    }
}
