//! What both engines share about a stack on this host: its files on disk, docker-cd's labels,
//! and how one of its containers is shown.
//!
//! Neither engine adapter may use the other; what they have in common lives here, so that
//! `swarm` never reaches into `compose`:
//! - [`compose_file`]: the services a compose file starts and whether it builds, read without
//!   starting compose;
//! - [`health`]: a stack's health (SPEC §9) from what either engine reports;
//! - [`labels`]: docker-cd's labels, the override file that adds them (compose's flavour;
//!   swarm's is in `swarm::check`), and [`labels::DeployedLabels`], the labels read back;
//! - [`materialise`]: a stack directory written to disk from a commit, and atomic file writes;
//! - [`StackFiles`]: the files one deploy or removal works on;
//! - [`ContainerView`]: a container (compose) or task (swarm) as the stack detail shows it.
//!
//! Adapter layer, below `compose` and `swarm`. Uses: desired_state (stack files, `Health`),
//! the YAML crate. Spawns nothing.

pub mod compose_file;
pub mod health;
pub mod labels;
pub mod materialise;
pub mod secrets;

use std::path::PathBuf;

use serde::Serialize;

/// The files of one stack (compose project, swarm stack) on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackFiles {
    /// The compose project or swarm stack name.
    pub name: String,
    pub dir: PathBuf,
    /// The operator's compose file, relative to `dir`.
    pub compose_file: String,
    /// More compose files merged after it, in order (`x-docker-cd.files`), relative to `dir`.
    pub extra_files: Vec<String>,
    /// Compose profiles to enable (`x-docker-cd.profiles`).
    pub profiles: Vec<String>,
    /// docker-cd's generated label override.
    pub override_file: Option<PathBuf>,
}

impl StackFiles {
    /// The operator's compose files, in merge order, relative to `dir`.
    pub fn compose_files(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.compose_file.as_str())
            .chain(self.extra_files.iter().map(String::as_str))
    }

    /// Whether compose must be asked what the files start: several files, or profiles.
    pub fn is_plain(&self) -> bool {
        self.extra_files.is_empty() && self.profiles.is_empty()
    }
}

/// A container (or a swarm task, in the same shape) as the stack detail shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView {
    pub name: String,
    pub service: String,
    pub state: String,
    pub status: String,
    pub health: Option<&'static str>,
    pub image: String,
    pub ports: String,
}
