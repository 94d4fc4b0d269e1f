//! Configuration: every setting of SPEC §2, read once from flags and environment variables
//! (clap with `env`), validated into domain types, and handed down as small sub-structs.
//!
//! This is the only module that reads the process environment. It spawns nothing: binaries are
//! located on `PATH` here, but their versions are checked by the adapters that run them.
//! Invalid settings are collected, not short-circuited, so an operator sees every problem at
//! once (one line each, exit code 2, secrets never echoed).
//!
//! This file owns the validated [`Config`] and the sub-structs it hands down ([`GitConfig`],
//! [`HttpConfig`], [`ReconcileConfig`], [`ChildEnv`], …), and re-exports the public items of its
//! parts, so every path is `crate::config::…`:
//!
//! | part | owns |
//! |---|---|
//! | `cli` | the command line: [`Cli`], [`CliCommand`], [`Args`], [`parse_command_line`], warnings for secrets given as flags |
//! | `settings` | validation into domain types: [`Config::validate`], [`ClientConfig`], the [`Problem`] lines of a [`ConfigError`] |
//! | `secrets` | [`Secret`], [`Redactor`], secrets read from `*_FILE`s, empty secrets refused, the shape of the age identities of [`SopsConfig`] |
//! | `notify` | notifications and commit status: [`NotifyConfig`], [`CommitStatusConfig`], the receivers' URLs, the API base of each forge |
//! | `repo` | the repository's newtypes: [`RepoUrl`], [`Transport`], [`Revision`], [`DeployDir`] |
//!
//! Of the rest of the crate it uses only [`schedule`](crate::schedule), to read `SYNC_WINDOWS`;
//! the age identities of [`SopsConfig`] stay secret text, which the wiring hands to
//! [`sops::Identities::parse`](crate::sops::Identities::parse).
//! Inside, `repo` uses `secrets`, `cli` uses `repo`, and `settings` uses all three and this
//! file's types.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod cli;
mod notify;
mod repo;
mod secrets;
mod settings;

pub use cli::{
    Args, Cli, CliCommand, ClientArgs, ControlArgs, DiffArgs, RefreshArgs, RollbackArgs, StackArgs,
    TokenArgs, parse_command_line,
};
pub use notify::{
    CommitStatusConfig, Forge, NotifyConfig, NotifyEvent, Receiver, ReceiverKind, api_base,
    repo_host_and_path,
};
pub use repo::{DeployDir, RepoUrl, Revision, Transport};
pub use secrets::{Redactor, Secret, list_items as secret_list_items};
pub use settings::{ClientConfig, ConfigError, MIN_POLL_INTERVAL, Problem};

/// How SSH remotes are authenticated and their host keys checked.
#[derive(Debug, Clone, Default)]
pub struct SshSettings {
    pub key_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    pub accept_new_host_keys: bool,
}

/// Everything the git adapter needs.
#[derive(Debug, Clone)]
pub struct GitConfig {
    pub bin: PathBuf,
    pub repo: RepoUrl,
    pub revision: Revision,
    pub deploy_dir: DeployDir,
    /// HTTPS token (from `GIT_ACCESS_TOKEN[_FILE]` or the URL's password).
    pub token: Option<Secret>,
    pub ssh: SshSettings,
    pub timeout: Duration,
}

/// Drift handling (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftPolicy {
    Revert,
    Flag,
    /// Drift is neither reverted nor flagged (a stack's `x-docker-cd.drift`, SPEC §11; the
    /// global `DRIFT_POLICY` is `revert` or `flag`).
    Ignore,
}

/// Which engine deploys stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployMode {
    /// `docker compose` on this host.
    Compose,
    /// `docker stack deploy` on a swarm manager.
    Swarm,
    /// Swarm when the engine is a swarm manager at start-up, compose otherwise.
    Auto,
}

/// Everything the compose adapter and the reconciler need.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    pub enabled: bool,
    pub remove_enabled: bool,
    pub drift_policy: DriftPolicy,
    pub interval: Duration,
    pub compose_timeout: Duration,
    /// `SYNC_HEALTH_TIMEOUT`: how long a sync waits for health after `up`; zero waits not.
    pub health_timeout: Duration,
    /// `SYNC_CONCURRENCY`: stacks synced at once, at least 1.
    pub concurrency: usize,
    /// `SYNC_WINDOWS`: when automatic syncs may run; empty: always.
    pub sync_windows: Vec<crate::schedule::SyncWindow>,
    /// `IMAGE_UPDATE_INTERVAL`: how often the registries are asked; `None`: off.
    pub image_update_interval: Option<Duration>,
    /// `HISTORY_LIMIT`: deployments kept per stack.
    pub history_limit: usize,
    /// `ROLLBACK_ON_FAILURE`: a failed sync of a new commit re-applies the last good one.
    pub rollback_on_failure: bool,
    pub docker_bin: PathBuf,
    pub compose_bin: Option<PathBuf>,
    pub deploy_mode: DeployMode,
}

/// HTTP edge settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub api_token: Option<Secret>,
    pub webhook_secret: Option<Secret>,
}

/// The age identities SOPS-encrypted files of the repository are decrypted with (SPEC §12):
/// one entry per variable given, `SOPS_AGE_KEY` first, then the content of `SOPS_AGE_KEY_FILE`
/// (read at start-up); sops uses the keys of both, and so does docker-cd. Each text is in the
/// age identity file format and was checked for its shape here (identity lines only, no
/// plugins); [`crate::sops::Identities::parse`] reads it, in the wiring, so that `config` does
/// not depend on `sops`. Empty: no SOPS decryption.
#[derive(Debug, Clone, Default)]
pub struct SopsConfig {
    pub age_identities: Vec<AgeIdentities>,
}

/// The age identities of one variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgeIdentities {
    /// `SOPS_AGE_KEY` or `SOPS_AGE_KEY_FILE`, to name in messages.
    pub variable: &'static str,
    /// The identity text (`AGE-SECRET-KEY-1…` lines, `#` comments).
    pub text: Secret,
}

/// How logs are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The environment children start from: a scrubbed minimum, never the agent's own environment
/// (which holds its secrets). Docker client settings are passed on so the CLI finds the daemon.
#[derive(Debug, Clone, Default)]
pub struct ChildEnv {
    pub vars: Vec<(OsString, OsString)>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub git: GitConfig,
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    /// `None`: polling disabled.
    pub poll_interval: Option<Duration>,
    pub reconcile: ReconcileConfig,
    pub child_env: ChildEnv,
    pub log_format: LogFormat,
    pub sops: SopsConfig,
    /// `NOTIFY_URLS`; `None`: nothing is notified.
    pub notify: Option<NotifyConfig>,
    /// `COMMIT_STATUS`; `None`: no commit status is reported.
    pub commit_status: Option<CommitStatusConfig>,
    /// `PUBLIC_URL`, without its trailing slash.
    pub public_url: Option<String>,
}

impl Config {
    /// Every secret of this configuration, for [`Redactor`]; each age identity line alone.
    pub fn redactor(&self) -> Redactor {
        let age_lines = self
            .sops
            .age_identities
            .iter()
            .flat_map(|source| secrets::age_identity_lines(&source.text))
            .collect::<Vec<_>>();
        // Each webhook secret of a rotation list alone, too: one may leak without the other.
        let webhook_secrets = self
            .http
            .webhook_secret
            .iter()
            .flat_map(|list| secrets::list_items(list).map(Secret::new))
            .collect::<Vec<_>>();
        Redactor::new(
            [
                self.git.token.clone(),
                self.http.webhook_secret.clone(),
                self.http.api_token.clone(),
                self.notify.as_ref().and_then(|n| n.secret.clone()),
                self.commit_status.as_ref().and_then(|c| c.token.clone()),
            ]
            .into_iter()
            .flatten()
            .chain(age_lines)
            .chain(webhook_secrets)
            .chain(
                self.notify
                    .iter()
                    .flat_map(|n| n.receivers.iter().map(|r| r.url.clone())),
            ),
        )
    }
}
