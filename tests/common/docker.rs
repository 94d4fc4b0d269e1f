//! Guards for tests against the real Docker Engine.
//!
//! A Docker test opens with [`begin`] (skip or fail, and a unique prefix), holds a [`Cleanup`]
//! for the projects it may create, made before the app starts, and runs its body through
//! [`TestApp::run`](super::TestApp::run), which stops the app before the cleanup runs:
//!
//! ```ignore
//! let Some((prefix, p, _cleanup)) = docker::begin_projects("deploy", ["one", "two"]) else {
//!     return;
//! };
//! // … a TestRepo …
//! let app = TestApp::start(&repo.url(), |a| a.reconcile_enabled = "true".into()).await;
//! app.run(async |app| { /* assertions */ }).await;
//! ```
//!
//! [`require`] answers whether Docker tests can run: with `CI=true` a missing engine or test
//! image is a loud failure, never a skip; on a laptop without Docker the test prints why it
//! skips. [`Cleanup`] removes every container, network and volume of the projects a test used,
//! on drop, so a failing test cleans up too.

use std::process::Command;

/// The image every Docker test uses (built by `scripts/build-test-image.sh`).
pub const TEST_IMAGE: &str = "docker-cd-test/busybox:latest";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// True when the engine answers and the test image exists. Panics under `CI=true` otherwise.
pub fn require() -> bool {
    let engine = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    let engine_ok = matches!(&engine, Ok(out) if out.status.success());
    if !engine_ok {
        let why = match engine {
            Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        if in_ci() {
            panic!("CI=true but the Docker engine does not answer: {why}");
        }
        eprintln!("\n*** SKIPPING Docker test: the Docker engine does not answer ({why}) ***\n");
        return false;
    }
    let image = Command::new("docker")
        .args(["image", "inspect", TEST_IMAGE])
        .output();
    if !matches!(&image, Ok(out) if out.status.success()) {
        if in_ci() {
            panic!(
                "CI=true but the test image {TEST_IMAGE} is missing: run scripts/build-test-image.sh"
            );
        }
        eprintln!(
            "\n*** SKIPPING Docker test: image {TEST_IMAGE} is missing (run scripts/build-test-image.sh) ***\n"
        );
        return false;
    }
    true
}

/// The prologue of a Docker test: `None` (the test returns, having said why) when Docker tests
/// cannot run here, else a [`unique_prefix`] for `test`'s project names.
pub fn begin(test: &str) -> Option<String> {
    require().then(|| unique_prefix(test))
}

/// [`begin`] for a test whose projects are `<prefix>-<name>` for each of `names`: the prefix,
/// those paths (= project names), and their [`Cleanup`].
pub fn begin_projects<const N: usize>(
    test: &str,
    names: [&str; N],
) -> Option<(String, [String; N], Cleanup)> {
    let prefix = begin(test)?;
    let paths = names.map(|n| format!("{prefix}-{n}"));
    let cleanup = Cleanup::new(paths.to_vec());
    Some((prefix, paths, cleanup))
}

/// Stack paths (= project names) `<prefix>-<name>`.
pub fn paths(prefix: &str, names: &[&str]) -> Vec<String> {
    names.iter().map(|n| format!("{prefix}-{n}")).collect()
}

/// A prefix no operator would use, unique per test run, for stack directory (= project) names.
pub fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("dcdt{:x}{}", nanos ^ std::process::id(), test)
}

/// Removes every container, network and volume of the given compose projects on drop.
pub struct Cleanup {
    pub projects: Vec<String>,
}

impl Cleanup {
    pub fn new(projects: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            projects: projects.into_iter().map(Into::into).collect(),
        }
    }

    pub fn add(&mut self, project: impl Into<String>) {
        self.projects.push(project.into());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for project in &self.projects {
            remove_project(project);
        }
    }
}

/// Removes a project's containers, networks and volumes by label.
pub fn remove_project(project: &str) {
    let filter = format!("label=com.docker.compose.project={project}");
    for (list, remove) in [
        (
            vec!["ps", "-aq", "--filter", &filter],
            vec!["rm", "-f", "-v"],
        ),
        (
            vec!["network", "ls", "-q", "--filter", &filter],
            vec!["network", "rm"],
        ),
        (
            vec!["volume", "ls", "-q", "--filter", &filter],
            vec!["volume", "rm", "-f"],
        ),
    ] {
        let ids = output(&list);
        let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
        if !ids.is_empty() {
            let mut args = remove.clone();
            args.extend(ids);
            let _ = Command::new("docker").args(&args).output();
        }
    }
}

/// Runs docker and returns stdout (empty on failure).
pub fn output(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Container ids of a project (running or not), sorted.
pub fn container_ids(project: &str) -> Vec<String> {
    let filter = format!("label=com.docker.compose.project={project}");
    let mut ids: Vec<String> = output(&["ps", "-aq", "--no-trunc", "--filter", &filter])
        .lines()
        .map(str::to_owned)
        .collect();
    ids.sort();
    ids
}

/// One label of a container.
pub fn label(container: &str, key: &str) -> String {
    output(&[
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels \"{key}\"}}}}"),
        container,
    ])
    .trim()
    .to_owned()
}

/// A compose file running the test image with a long sleep.
pub fn sleeper_compose(services: &[&str]) -> String {
    let mut text = String::from("services:\n");
    for service in services {
        text.push_str(&format!(
            "  {service}:\n    image: {TEST_IMAGE}\n    command: [\"sleep\", \"3600\"]\n    init: true\n"
        ));
    }
    text
}
