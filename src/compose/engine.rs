//! Actual state, read from the Docker Engine through the docker CLI.
//!
//! One `docker ps` lists every compose container on the host with the labels docker-cd cares
//! about, whatever the number of stacks; a no-op reconcile costs exactly that one process. The
//! output format is a Go template that prints one JSON object per container (`{{json …}}`
//! escapes every value), so nothing here depends on v2-only `compose ps --format json`.
//! docker-cd's labels come back as [`DeployedLabels`], parsed here and nowhere else for
//! containers.
//!
//! Uses: process, stack (labels, the container view).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ComposeError;
use crate::process::Command;
use crate::stack::ContainerView;
use crate::stack::labels::DeployedLabels;

/// How long a query of the engine may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `docker ps --format` template: one JSON object a line.
const PS_FORMAT: &str = concat!(
    r#"{"id":{{json .ID}},"name":{{json .Names}},"state":{{json .State}},"#,
    r#""status":{{json .Status}},"image":{{json .Image}},"ports":{{json .Ports}},"#,
    r#""project":{{json (.Label "com.docker.compose.project")}},"#,
    r#""service":{{json (.Label "com.docker.compose.service")}},"#,
    r#""oneoff":{{json (.Label "com.docker.compose.oneoff")}},"#,
    r#""owner":{{json (.Label "com.docker-cd.owner")}},"#,
    r#""instance":{{json (.Label "com.docker-cd.instance")}},"#,
    r#""path":{{json (.Label "com.docker-cd.stack.path")}},"#,
    r#""revision":{{json (.Label "com.docker-cd.revision")}},"#,
    r#""contentHash":{{json (.Label "com.docker-cd.content-hash")}},"#,
    r#""composeHash":{{json (.Label "com.docker-cd.compose-hash")}},"#,
    r#""syncedAt":{{json (.Label "com.docker-cd.synced-at")}},"#,
    r#""services":{{json (.Label "com.docker-cd.services")}}}"#,
);

/// One container of a compose project, as `docker ps` describes it. Absent labels are empty
/// strings (that is what the template's `.Label` gives).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    /// `created`, `restarting`, `running`, `removing`, `paused`, `exited` or `dead`.
    pub state: String,
    /// Human status: `Up 5 minutes (healthy)`, `Exited (137) 4 minutes ago`.
    pub status: String,
    pub image: String,
    pub ports: String,
    pub project: String,
    pub service: String,
    #[serde(skip_serializing)]
    pub oneoff: String,
    /// docker-cd's labels, from the template's `owner` … `services` keys.
    #[serde(flatten, skip_serializing)]
    pub labels: DeployedLabels,
}

impl ContainerInfo {
    /// Started by `compose run`: not part of the project's desired services.
    pub fn is_oneoff(&self) -> bool {
        self.oneoff.eq_ignore_ascii_case("true")
    }

    pub fn is_running(&self) -> bool {
        self.state == "running"
    }

    /// The exit code of an exited container, read from its status text.
    pub fn exit_code(&self) -> Option<i32> {
        let rest = self.status.strip_prefix("Exited (")?;
        rest.split(')').next()?.parse().ok()
    }

    /// `healthy`, `unhealthy` or `starting` for containers with a healthcheck.
    pub fn health(&self) -> Option<&'static str> {
        if self.status.contains("(healthy)") {
            Some("healthy")
        } else if self.status.contains("(unhealthy)") {
            Some("unhealthy")
        } else if self.status.contains("(health: starting)") {
            Some("starting")
        } else {
            None
        }
    }
}

impl From<&ContainerInfo> for ContainerView {
    fn from(c: &ContainerInfo) -> Self {
        Self {
            name: c.name.clone(),
            service: c.service.clone(),
            state: c.state.clone(),
            status: c.status.clone(),
            health: c.health(),
            image: c.image.clone(),
            ports: c.ports.clone(),
        }
    }
}

/// Parses `docker ps --format PS_FORMAT` output: one JSON object per line.
pub fn parse_ps(out: &[u8]) -> Result<Vec<ContainerInfo>, serde_json::Error> {
    out.split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(serde_json::from_slice)
        .collect()
}

/// The docker CLI, for reading state and removing leftovers.
#[derive(Debug, Clone)]
pub struct Docker {
    bin: PathBuf,
    env: Vec<(OsString, OsString)>,
}

impl Docker {
    pub fn new(bin: PathBuf, env: Vec<(OsString, OsString)>) -> Self {
        Self { bin, env }
    }

    pub(super) fn command(&self) -> Command {
        Command::new(&self.bin)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .timeout(QUERY_TIMEOUT)
    }

    /// Every container of every compose project on the host (owned by docker-cd or not),
    /// running or not. One process.
    pub async fn compose_containers(&self) -> Result<Vec<ContainerInfo>, ComposeError> {
        self.containers(&["--filter", "label=com.docker.compose.project"])
            .await
    }

    /// The containers of one compose project. One process.
    pub async fn project_containers(
        &self,
        project: &str,
    ) -> Result<Vec<ContainerInfo>, ComposeError> {
        let filter = format!("label=com.docker.compose.project={project}");
        self.containers(&["--filter", &filter]).await
    }

    async fn containers(&self, filters: &[&str]) -> Result<Vec<ContainerInfo>, ComposeError> {
        let out = self
            .command()
            .args(["ps", "--all", "--no-trunc"])
            .args(filters)
            .args(["--format", PS_FORMAT])
            .run()
            .await
            .map_err(ComposeError::Docker)?;
        parse_ps(&out.stdout).map_err(|e| ComposeError::Output {
            what: "docker ps",
            message: e.to_string(),
        })
    }

    /// How many containers run on the host (all of them, not only docker-cd's).
    pub async fn running_count(&self) -> Result<usize, ComposeError> {
        let out = self
            .command()
            .args(["ps", "--quiet", "--no-trunc"])
            .run()
            .await
            .map_err(ComposeError::Docker)?;
        Ok(out
            .stdout
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count())
    }

    /// The engine's version: proves the daemon answers.
    pub async fn server_version(&self) -> Result<String, ComposeError> {
        let out = self
            .command()
            .args(["version", "--format", "{{.Server.Version}}"])
            .timeout(Duration::from_secs(10))
            .run()
            .await
            .map_err(ComposeError::Docker)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from Docker 20.10 with the PS_FORMAT template (ids shortened).
    const SAMPLE: &[u8] = br#"{"id":"587155ecb091","name":"web_app_1","state":"running","status":"Up 4 minutes (healthy)","image":"docker-cd-test/busybox:latest","ports":"127.0.0.1:18080->8080/tcp","project":"web","service":"app","oneoff":"False","owner":"docker-cd","instance":"0123456789abcdef","path":"web","revision":"abc","contentHash":"t1","composeHash":"c1","syncedAt":"2026-11-28T16:00:00Z","services":"app,db"}
{"id":"69ba7779f6ef","name":"other_x_1","state":"exited","status":"Exited (137) 4 minutes ago","image":"busybox","ports":"","project":"other","service":"x","oneoff":"False","owner":"","instance":"","path":"","revision":"","contentHash":"","composeHash":"","syncedAt":"","services":""}
"#;

    #[test]
    fn ps_lines_parse_into_containers() {
        let containers = parse_ps(SAMPLE).unwrap();
        assert_eq!(containers.len(), 2);
        let web = &containers[0];
        assert!(web.labels.is_owned() && web.is_running() && !web.is_oneoff());
        assert_eq!(web.health(), Some("healthy"));
        assert_eq!(web.labels.recorded_services(), ["app", "db"]);
        assert_eq!(web.labels.stack_path, "web");
        assert_eq!(web.labels.instance, "0123456789abcdef");
        assert_eq!(web.labels.synced_at, "2026-11-28T16:00:00Z");
        let other = &containers[1];
        assert!(!other.labels.is_owned());
        assert_eq!(other.exit_code(), Some(137));
        assert_eq!(other.health(), None);
        assert!(parse_ps(b"").unwrap().is_empty());
        assert!(parse_ps(b"{not json}\n").is_err());
    }

    #[test]
    fn health_and_exit_codes_come_from_the_status_text() {
        let mut c = parse_ps(SAMPLE).unwrap().remove(0);
        for (status, health, code) in [
            ("Up 5 minutes (unhealthy)", Some("unhealthy"), None),
            ("Up 1 second (health: starting)", Some("starting"), None),
            ("Exited (0) 5 minutes ago", None, Some(0)),
            ("Created", None, None),
        ] {
            c.status = status.into();
            assert_eq!((c.health(), c.exit_code()), (health, code), "{status}");
        }
    }
}
