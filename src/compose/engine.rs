//! Actual state, read from the Docker Engine through the docker CLI.
//!
//! One `docker ps` lists every compose container on the host with the labels docker-cd cares
//! about, whatever the number of stacks; a no-op reconcile costs exactly that one process. The
//! output format is a Go template that prints one JSON object per container (`{{json …}}`
//! escapes every value), so nothing here depends on v2-only `compose ps --format json`.
//! docker-cd's labels come back as [`DeployedLabels`], parsed here and nowhere else for
//! containers.
//!
//! For health (SPEC §9), [`Docker::inspect_health`] reads what `docker ps` does not say (restart
//! count, exit code, the last healthcheck output) in one more process, only for the containers
//! whose `ps` line calls for it ([`ContainerInfo::needs_detail`]).
//!
//! Uses: process, stack (labels, the container view, the health inputs).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ComposeError;
use crate::process::Command;
use crate::process::ProcessError;
use crate::stack::ContainerView;
use crate::stack::health::{ContainerDetail, ContainerLine};
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
    r#""services":{{json (.Label "com.docker-cd.services")}},"#,
    r#""dependsOn":{{json (.Label "com.docker-cd.depends-on")}}}"#,
);

/// The `docker container inspect --format` template for health: one JSON object a line, with
/// only what the assessment reads ([`ContainerDetail`]). `.State.Health` is absent (not null)
/// without a healthcheck and the CLI's templates fail on a missing key, hence `index`; of its
/// log only the last entry's output and exit code are kept (a variable assigned in `range`).
const INSPECT_FORMAT: &str = concat!(
    r#"{"id":{{json .Id}},"restartCount":{{json .RestartCount}},"#,
    r#""status":{{json .State.Status}},"exitCode":{{json .State.ExitCode}},"#,
    r#""oomKilled":{{json .State.OOMKilled}},"error":{{json .State.Error}},"#,
    r#""health":{{with index .State "Health"}}{"status":{{json .Status}},"#,
    r#""failingStreak":{{json .FailingStreak}}{{$last := 0}}{{range .Log}}{{$last = .}}{{end}}"#,
    r#"{{if .Log}},"lastOutput":{{json $last.Output}},"lastExitCode":{{json $last.ExitCode}}{{end}}}"#,
    r#"{{else}}null{{end}},"#,
    r#""restartPolicy":{{json .HostConfig.RestartPolicy.Name}},"#,
    r#""startedAt":{{json .State.StartedAt}}}"#,
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

impl ContainerInfo {
    /// This container as the health assessment reads it.
    pub fn line(&self) -> ContainerLine<'_> {
        ContainerLine {
            id: &self.id,
            name: &self.name,
            service: &self.service,
            state: &self.state,
            status: &self.status,
        }
    }

    /// Its health needs a look at `docker inspect` (see [`ContainerLine::needs_detail`]): not
    /// when it runs `(healthy)`, or without healthcheck for a minute or more.
    pub fn needs_detail(&self) -> bool {
        self.line().needs_detail()
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

/// One container's image, from [`Docker::container_images`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    pub id: String,
    /// The image id it runs (`sha256:…`).
    pub image_id: String,
    /// The image as the compose file named it (`nginx:1.27`).
    pub image: String,
    pub service: String,
}

/// Parses `docker ps --format PS_FORMAT` output: one JSON object per line.
pub fn parse_ps(out: &[u8]) -> Result<Vec<ContainerInfo>, serde_json::Error> {
    out.split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(serde_json::from_slice)
        .collect()
}

/// Parses `docker container inspect --format INSPECT_FORMAT` output: one JSON object per line.
pub fn parse_inspect(out: &[u8]) -> Result<Vec<ContainerDetail>, serde_json::Error> {
    out.split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(serde_json::from_slice)
        .collect()
}

/// Whether a failed `docker container inspect` only missed containers that are gone (removed
/// between `ps` and `inspect`): every line of its stderr says so. It printed the others.
fn only_missing_containers(stderr: &str) -> bool {
    let mut lines = stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next();
    first.is_some()
        && first
            .into_iter()
            .chain(lines)
            .all(|l| l.contains("No such container") || l.contains("No such object"))
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

    /// `rm --force <name>`: a hook's container that outlived its killed `compose run`. One
    /// process.
    pub async fn remove_container(&self, name: &str) -> Result<(), ComposeError> {
        self.command()
            .args(["rm", "--force", "--", name])
            .run()
            .await
            .map(drop)
            .map_err(ComposeError::Docker)
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

    /// The health details of the containers `ids` (full ids from `docker ps`), in one
    /// `docker container inspect`. A container removed since `ps` is left out, not an error:
    /// inspect exits 1 for it and still prints the others.
    pub async fn inspect_health(
        &self,
        ids: &[String],
    ) -> Result<Vec<ContainerDetail>, ComposeError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .command()
            .args(["container", "inspect", "--format", INSPECT_FORMAT, "--"])
            .args(ids)
            .run_unchecked()
            .await
            .map_err(ComposeError::Docker)?;
        if !out.success() && !only_missing_containers(&out.stderr) {
            return Err(ComposeError::Docker(ProcessError::Failed {
                command: "docker container inspect".into(),
                status: out.status,
                stderr: out.stderr,
            }));
        }
        parse_inspect(&out.stdout).map_err(|e| ComposeError::Output {
            what: "docker container inspect",
            message: e.to_string(),
        })
    }

    /// The image id (`sha256:…`) each of `ids` was created from. One process; none without
    /// ids.
    pub async fn image_ids(
        &self,
        ids: &[String],
    ) -> Result<std::collections::BTreeMap<String, String>, ComposeError> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let out = self
            .command()
            .args(["container", "inspect", "--format", "{{.Id}} {{.Image}}"])
            .arg("--")
            .args(ids)
            .run()
            .await
            .map_err(ComposeError::Docker)?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let (id, image) = line.trim().split_once(' ')?;
                Some((id.to_owned(), image.to_owned()))
            })
            .collect())
    }

    /// For each of `ids`: its service label, the image as the compose file named it
    /// (`.Config.Image`) and the image id it runs. One process; none without ids.
    pub async fn container_images(
        &self,
        ids: &[String],
    ) -> Result<Vec<ContainerImage>, ComposeError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .command()
            .args([
                "container",
                "inspect",
                "--format",
                r#"{{json .Id}} {{json .Image}} {{json .Config.Image}} {{json (index .Config.Labels "com.docker.compose.service")}}"#,
            ])
            .arg("--")
            .args(ids)
            .run()
            .await
            .map_err(ComposeError::Docker)?;
        let mut images = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<String> = serde_json::Deserializer::from_str(line)
                .into_iter::<String>()
                .collect::<Result<_, _>>()
                .map_err(|e| ComposeError::Output {
                    what: "docker container inspect",
                    message: e.to_string(),
                })?;
            let [id, image_id, image, service] =
                <[String; 4]>::try_from(fields).map_err(|f| ComposeError::Output {
                    what: "docker container inspect",
                    message: format!("{} fields, not 4", f.len()),
                })?;
            images.push(ContainerImage {
                id,
                image_id,
                image,
                service,
            });
        }
        Ok(images)
    }

    /// The repository digests (`repo@sha256:…`) of each image id: what a pull or push
    /// recorded, empty for an image built or loaded here. One process; none without ids.
    pub async fn repo_digests(
        &self,
        image_ids: &[String],
    ) -> Result<std::collections::BTreeMap<String, Vec<String>>, ComposeError> {
        if image_ids.is_empty() {
            return Ok(Default::default());
        }
        let out = self
            .command()
            .args([
                "image",
                "inspect",
                "--format",
                "{{json .Id}} {{json .RepoDigests}}",
            ])
            .arg("--")
            .args(image_ids)
            .run()
            .await
            .map_err(ComposeError::Docker)?;
        let mut digests = std::collections::BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some((id, list)) = line.trim().split_once(' ') else {
                continue;
            };
            let id: String = serde_json::from_str(id).map_err(|e| ComposeError::Output {
                what: "docker image inspect",
                message: e.to_string(),
            })?;
            let list: Option<Vec<String>> =
                serde_json::from_str(list).map_err(|e| ComposeError::Output {
                    what: "docker image inspect",
                    message: e.to_string(),
                })?;
            digests.insert(id, list.unwrap_or_default());
        }
        Ok(digests)
    }

    /// The engine's registry configuration (`docker info`'s `RegistryConfig`, as JSON): which
    /// registries it reaches over plain HTTP. One process.
    pub async fn registry_config(&self) -> Result<Vec<u8>, ComposeError> {
        self.command()
            .args(["info", "--format", "{{json .RegistryConfig}}"])
            .run()
            .await
            .map(|out| out.stdout)
            .map_err(ComposeError::Docker)
    }

    /// `tag <image id> <reference>`: puts a tag back on the image a service ran before an
    /// update (the rollback of an image update). One process.
    pub async fn tag(&self, image_id: &str, reference: &str) -> Result<(), ComposeError> {
        self.command()
            .args(["tag", image_id, reference])
            .run()
            .await
            .map(drop)
            .map_err(ComposeError::Docker)
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

    // Captured from Docker Engine 20.10.24 (CLI 28.2.2) with INSPECT_FORMAT, for three
    // containers and one id that did not exist (ids shortened); the command exited 1.
    const INSPECT: &[u8] = br#"{"id":"5f53a47adbf7","restartCount":0,"status":"running","exitCode":0,"oomKilled":false,"error":"","health":null,"restartPolicy":"no","startedAt":"2026-12-02T00:48:36.085308231Z"}
{"id":"2ad9506e757c","restartCount":0,"status":"running","exitCode":0,"oomKilled":false,"error":"","health":{"status":"starting","failingStreak":0},"restartPolicy":"no","startedAt":"2026-12-02T00:48:32.223680826Z"}
{"id":"bd4a833e34a1","restartCount":0,"status":"running","exitCode":0,"oomKilled":false,"error":"","health":{"status":"unhealthy","failingStreak":26,"lastOutput":"boom: cannot connect to 127.0.0.1:8080\n","lastExitCode":1},"restartPolicy":"no","startedAt":"2026-12-02T00:48:31.858101644Z"}
"#;
    const INSPECT_STDERR: &str = "Error response from daemon: No such container: nonexistent123\n";

    #[test]
    fn inspect_lines_parse_into_details() {
        let details = parse_inspect(INSPECT).unwrap();
        assert_eq!(details.len(), 3);
        assert_eq!(details[0].id, "5f53a47adbf7");
        assert_eq!(details[0].health, None);
        assert_eq!(details[0].restart_policy, "no");
        let starting = details[1].health.as_ref().unwrap();
        assert_eq!(
            (starting.status.as_str(), starting.last_output.as_deref()),
            ("starting", None)
        );
        let unhealthy = details[2].health.as_ref().unwrap();
        assert_eq!(unhealthy.status, "unhealthy");
        assert_eq!(unhealthy.failing_streak, 26);
        assert_eq!(
            unhealthy.last_output.as_deref(),
            Some("boom: cannot connect to 127.0.0.1:8080\n")
        );
        assert_eq!(unhealthy.last_exit_code, Some(1));
        assert!(parse_inspect(b"").unwrap().is_empty());
        assert!(parse_inspect(b"{\"id\":\"x\"}\n").is_err());
        assert!(parse_inspect(b"template parsing error: map has no entry for key\n").is_err());
    }

    #[test]
    fn only_vanished_containers_are_tolerated_in_a_failed_inspect() {
        assert!(only_missing_containers(INSPECT_STDERR));
        assert!(only_missing_containers(
            "Error: No such container: a\nError: No such object: b\n"
        ));
        assert!(!only_missing_containers(""));
        assert!(!only_missing_containers(
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n"
        ));
        assert!(!only_missing_containers(
            "Error response from daemon: No such container: a\ntemplate parsing error: x\n"
        ));
    }

    #[test]
    fn the_ps_line_decides_which_containers_are_inspected() {
        let mut c = parse_ps(SAMPLE).unwrap().remove(0);
        for (state, status, needs) in [
            ("running", "Up 4 minutes (healthy)", false),
            ("running", "Up 2 hours", false),
            ("running", "Up About a minute", false),
            ("running", "Up 59 seconds", true),
            ("running", "Up Less than a second", true),
            ("running", "Up 4 minutes (unhealthy)", true),
            ("running", "Up 4 minutes (health: starting)", true),
            ("paused", "Up 4 minutes (Paused)", true),
            ("restarting", "Restarting (1) 3 seconds ago", true),
            ("exited", "Exited (0) 4 minutes ago", true),
            ("created", "Created", true),
        ] {
            c.state = state.into();
            c.status = status.into();
            assert_eq!(c.needs_detail(), needs, "{state} {status}");
        }
        assert_eq!(c.line().id, "587155ecb091");
        assert_eq!(c.line().service, "app");
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
