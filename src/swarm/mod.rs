//! The swarm adapter: `docker stack deploy`/`rm` on a swarm manager, and actual state read from
//! the stack's services.
//!
//! Swarm mode is the multi-host engine: the same compose files, deployed with
//! `docker stack deploy` across every node of an existing Docker Swarm. What differs from the
//! compose adapter:
//! - the durable record (docker-cd's labels, [`crate::stack::labels`]) is on the *services*
//!   (`deploy.labels` in a generated override file), not on containers;
//! - actual state is read with a constant number of docker processes whatever the number of
//!   stacks: one `docker service ls` (running/desired replicas) and one `docker service inspect`
//!   of all of them (labels, mode, update state); the nodes of a stack's tasks cost one
//!   `docker stack ps`, only when the stack detail endpoint asks; health asks for the tasks of
//!   the services that are not converged or were synced just now, in one `docker service ps`;
//! - which `docker stack deploy` flags exist is read from the installed CLI at start-up
//!   (`--prune`, `--detach`, `--resolve-image` and `--with-registry-auth` are not in every
//!   version);
//! - compose features swarm drops are refused before deploying ([`check`]).
//!
//! This file holds the commands ([`Swarm`]); `parse` reads what they print.
//!
//! Uses: process, stack (labels, files, the container view); never `compose`. Spawns only
//! through `process`.

pub mod check;
mod parse;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{Command, ProcessError};
pub use crate::stack::StackFiles;

pub use parse::{
    DeployFlags, NodeInfo, ServiceInfo, ServiceView, SwarmState, TaskInfo, TaskView,
    doubtful_counts, down_nodes, parse_deploy_flags, parse_node_ls, parse_service_inspect,
    parse_service_ls, parse_swarm_state, parse_tasks, recount_running, service_views,
    task_containers,
};

/// How long a query of the engine may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// The label the docker CLI puts on everything of a stack.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";
/// The label the docker CLI puts on a service with the image the compose file names.
pub const STACK_IMAGE_LABEL: &str = "com.docker.stack.image";

#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error("docker failed")]
    Docker(#[source] ProcessError),
    #[error("docker stack {action} failed")]
    Stack {
        action: &'static str,
        #[source]
        source: ProcessError,
    },
    #[error(
        "this Docker engine is not a swarm manager (swarm state {state:?}, manager: {manager}); \
         run docker-cd on a manager node (`docker swarm init`, or join as a manager), or use DEPLOY_MODE=compose"
    )]
    NotManager { state: String, manager: bool },
    #[error("`docker stack deploy` of this docker CLI has no {0} flag; docker-cd needs it")]
    MissingFlag(&'static str),
    #[error("unexpected output from {what}: {message}")]
    Output { what: &'static str, message: String },
    #[error("{0}")]
    Refused(#[from] check::Refusal),
}

impl SwarmError {
    /// The docker CLI's own message (its stderr), for a stack's `lastSyncError`.
    pub fn tool_message(&self) -> Option<&str> {
        match self {
            Self::Stack { source, .. } | Self::Docker(source) => {
                Some(source.stderr().trim()).filter(|s| !s.is_empty())
            }
            _ => None,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Stack { source, .. } | Self::Docker(source) if source.is_timeout())
    }
}

/// Runs `docker stack` and `docker service` commands against a swarm manager.
#[derive(Debug, Clone)]
pub struct Swarm {
    bin: PathBuf,
    env: Vec<(OsString, OsString)>,
    timeout: Duration,
    flags: DeployFlags,
    cli_version: String,
}

impl Swarm {
    /// The engine's swarm membership (`docker info`): for `DEPLOY_MODE=auto`.
    pub async fn state(bin: &Path, env: &[(OsString, OsString)]) -> Result<SwarmState, SwarmError> {
        let out = Command::new(bin)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .timeout(QUERY_TIMEOUT)
            .args([
                "info",
                "--format",
                "{{json .Swarm.LocalNodeState}} {{json .Swarm.ControlAvailable}}",
            ])
            .run()
            .await
            .map_err(SwarmError::Docker)?;
        parse_swarm_state(&out.stdout).map_err(|message| SwarmError::Output {
            what: "docker info",
            message,
        })
    }

    /// Start-up checks: the engine is a swarm manager, and which deploy flags the CLI has.
    /// `timeout` bounds every `docker stack deploy`/`rm` (COMPOSE_TIMEOUT).
    pub async fn detect(
        bin: &Path,
        env: Vec<(OsString, OsString)>,
        timeout: Duration,
    ) -> Result<Self, SwarmError> {
        let state = Self::state(bin, &env).await?;
        if !state.is_manager() {
            return Err(SwarmError::NotManager {
                state: state.local_node_state,
                manager: state.control_available,
            });
        }
        let help = Command::new(bin)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .timeout(QUERY_TIMEOUT)
            .args(["stack", "deploy", "--help"])
            .run()
            .await
            .map_err(SwarmError::Docker)?;
        let flags = parse_deploy_flags(&String::from_utf8_lossy(&help.stdout));
        if !flags.prune {
            return Err(SwarmError::MissingFlag("--prune"));
        }
        let version = Command::new(bin)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .timeout(QUERY_TIMEOUT)
            .args(["version", "--format", "{{.Client.Version}}"])
            .run_unchecked()
            .await
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Ok(Self {
            bin: bin.to_owned(),
            env,
            timeout,
            flags,
            cli_version: version,
        })
    }

    /// For logs and `/readyz`: `docker stack deploy (docker CLI 28.2.2) --prune --detach=true …`.
    pub fn describe(&self) -> String {
        format!(
            "docker stack deploy (docker CLI {}) {}",
            self.cli_version,
            self.flags.args().join(" ")
        )
    }

    fn command(&self) -> Command {
        Command::new(&self.bin)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .timeout(QUERY_TIMEOUT)
    }

    /// `docker stack config`: the CLI's validation and interpolation of the operator's file
    /// alone, as YAML.
    pub async fn config(&self, stack: &StackFiles) -> Result<Vec<u8>, SwarmError> {
        let out = self
            .command()
            .current_dir(&stack.dir)
            .args(["stack", "config"])
            .args(compose_file_args(stack, false))
            .run()
            .await
            .map_err(|source| SwarmError::Stack {
                action: "config",
                source,
            })?;
        Ok(out.stdout)
    }

    /// `docker stack deploy --compose-file <file>… --compose-file <override> --prune …`.
    pub async fn deploy(&self, stack: &StackFiles) -> Result<(), SwarmError> {
        let cmd = self
            .command()
            .timeout(self.timeout)
            .current_dir(&stack.dir)
            .args(["stack", "deploy"])
            .args(compose_file_args(stack, true));
        cmd.args(self.flags.args())
            .arg("--")
            .arg(&stack.name)
            .run()
            .await
            .map(drop)
            .map_err(|source| SwarmError::Stack {
                action: "deploy",
                source,
            })
    }

    /// `docker stack rm`: services, networks, secrets and configs of the stack (volumes stay).
    pub async fn remove(&self, name: &str) -> Result<(), SwarmError> {
        self.command()
            .timeout(self.timeout)
            .args(["stack", "rm", "--", name])
            .run()
            .await
            .map(drop)
            .map_err(|source| SwarmError::Stack {
                action: "rm",
                source,
            })
    }

    /// Every service of every stack in the swarm (docker-cd's or not). Two processes: `service
    /// ls` for the replica counts, `service inspect` of all of them for labels and spec.
    pub async fn services(&self) -> Result<Vec<ServiceInfo>, SwarmError> {
        self.services_filtered(NAMESPACE_LABEL).await
    }

    /// The services of one stack.
    pub async fn stack_services(&self, stack: &str) -> Result<Vec<ServiceInfo>, SwarmError> {
        self.services_filtered(&format!("{NAMESPACE_LABEL}={stack}"))
            .await
    }

    async fn services_filtered(&self, label: &str) -> Result<Vec<ServiceInfo>, SwarmError> {
        let output = |what| move |message| SwarmError::Output { what, message };
        let ls = self
            .command()
            .args(["service", "ls", "--filter"])
            .arg(format!("label={label}"))
            .args(["--format", "{{json .}}"])
            .run()
            .await
            .map_err(SwarmError::Docker)?;
        let replicas = parse_service_ls(&ls.stdout).map_err(output("docker service ls"))?;
        if replicas.is_empty() {
            return Ok(Vec::new());
        }
        // A service removed between the two calls makes inspect exit 1 after printing the
        // others: what it printed is still the truth about those.
        let inspect = self
            .command()
            .args(["service", "inspect", "--"])
            .args(replicas.keys())
            .run_unchecked()
            .await
            .map_err(SwarmError::Docker)?;
        if !inspect.success() && inspect.stdout.iter().all(u8::is_ascii_whitespace) {
            return Err(SwarmError::Docker(ProcessError::Failed {
                command: "docker service inspect".into(),
                status: inspect.status,
                stderr: inspect.stderr,
            }));
        }
        let mut services = parse_service_inspect(&inspect.stdout, &replicas)
            .map_err(output("docker service inspect"))?;
        // `docker service ls` counts every task whose last reported state is running: a lost
        // node's tasks too (3/3 while one runs, 5/3 once they are replaced). One `docker node
        // ls`; when a node is down or a count exceeds the desired, one `docker service ps` of
        // those services recounts them.
        let down = down_nodes(&self.nodes().await?);
        let doubtful = doubtful_counts(&services, &down);
        if !doubtful.is_empty() {
            let tasks = self.service_tasks(&doubtful).await?;
            recount_running(&mut services, &doubtful, &tasks, &down);
        }
        Ok(services)
    }

    /// The current tasks of one stack (desired state running or ready), with their nodes.
    pub async fn tasks(&self, stack: &str) -> Result<Vec<TaskInfo>, SwarmError> {
        let out = self
            .command()
            .args([
                "stack",
                "ps",
                "--no-trunc",
                "--filter",
                "desired-state=running",
                "--filter",
                "desired-state=ready",
                "--format",
                "{{json .}}",
                "--",
                stack,
            ])
            .run_unchecked()
            .await
            .map_err(SwarmError::Docker)?;
        if !out.success() {
            // "nothing found in stack: x" once the stack is gone.
            return Ok(Vec::new());
        }
        parse_tasks(&out.stdout).map_err(|message| SwarmError::Output {
            what: "docker stack ps",
            message,
        })
    }

    /// Every task of the services `services` (ids or names), history included (failed tasks
    /// say why a service does not converge), in one `docker service ps`: by slot, newest
    /// first. A service removed since it was listed is left out: `service ps` then exits 1
    /// after printing the others, with `no such service: …` on stderr.
    pub async fn service_tasks(&self, services: &[String]) -> Result<Vec<TaskInfo>, SwarmError> {
        if services.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .command()
            .args([
                "service",
                "ps",
                "--no-trunc",
                "--format",
                "{{json .}}",
                "--",
            ])
            .args(services)
            .run_unchecked()
            .await
            .map_err(SwarmError::Docker)?;
        if !out.success() && !only_missing_services(&out.stderr) {
            return Err(SwarmError::Docker(ProcessError::Failed {
                command: "docker service ps".into(),
                status: out.status,
                stderr: out.stderr,
            }));
        }
        parse_tasks(&out.stdout).map_err(|message| SwarmError::Output {
            what: "docker service ps",
            message,
        })
    }

    /// The swarm's nodes (`docker node ls`, one process): which are up, for counting only the
    /// tasks that really run.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, SwarmError> {
        let out = self
            .command()
            .args(["node", "ls", "--format", "{{json .}}"])
            .run()
            .await
            .map_err(SwarmError::Docker)?;
        parse_node_ls(&out.stdout).map_err(|message| SwarmError::Output {
            what: "docker node ls",
            message,
        })
    }

    /// The errors of a stack's failed tasks (for a deploy that did not converge), newest first,
    /// one per service.
    pub async fn task_errors(&self, stack: &str) -> Vec<String> {
        let Ok(out) = self
            .command()
            .args([
                "stack",
                "ps",
                "--no-trunc",
                "--format",
                "{{json .}}",
                "--",
                stack,
            ])
            .run_unchecked()
            .await
        else {
            return Vec::new();
        };
        let mut seen = std::collections::BTreeSet::new();
        parse_tasks(&out.stdout)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !t.error.is_empty())
            .filter(|t| seen.insert(t.service_name().to_owned()))
            .map(|t| format!("{}: {}", t.name, t.error.trim_matches('"')))
            .collect()
    }
}

/// Whether a failed `docker service ps` only missed services that are gone: every line of its
/// stderr is `no such service: …`.
fn only_missing_services(stderr: &str) -> bool {
    let mut lines = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .peekable();
    lines.peek().is_some() && lines.all(|l| l.starts_with("no such service: "))
}

/// `--compose-file` for each of the operator's files in order, then the override.
fn compose_file_args(stack: &StackFiles, with_override: bool) -> Vec<std::ffi::OsString> {
    let mut args = Vec::new();
    for file in stack.compose_files() {
        args.push("--compose-file".into());
        args.push(stack.dir.join(file).into_os_string());
    }
    if let (true, Some(file)) = (with_override, &stack.override_file) {
        args.push("--compose-file".into());
        args.push(file.clone().into_os_string());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_vanished_services_are_tolerated_in_a_failed_service_ps() {
        assert!(only_missing_services("no such service: web_app\n"));
        assert!(only_missing_services(
            "no such service: a\nno such service: b\n"
        ));
        assert!(!only_missing_services(""));
        assert!(!only_missing_services(
            "Error response from daemon: This node is not a swarm manager.\n"
        ));
    }
}
