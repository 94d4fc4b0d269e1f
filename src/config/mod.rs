//! Configuration: every setting of SPEC §2, read once from flags and environment variables
//! (clap with `env`), validated into domain types, and handed down as small sub-structs.
//!
//! This is the only module that reads the process environment. It spawns nothing: binaries are
//! located on `PATH` here, but their versions are checked by the adapters that run them.
//! Invalid settings are collected, not short-circuited, so an operator sees every problem at
//! once (one line each, exit code 2, secrets never echoed).

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};

mod repo;
mod secrets;

pub use repo::{DeployDir, RepoUrl, Revision, Transport};
pub use secrets::{Redactor, Secret};

use secrets::secret_value;

/// Shortest accepted `REFRESH_POLL_INTERVAL`.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// The command line: a subcommand, or none for `serve` with its settings given directly
/// (`docker-cd --git-repo-url …` and `docker-cd serve --git-repo-url …` are the same).
#[derive(Debug, Parser)]
#[command(
    name = "docker-cd",
    version,
    about = "GitOps continuous delivery for Docker Compose: keeps this Docker host running what a Git repository says",
    long_about = None,
    args_conflicts_with_subcommands = true,
    after_help = "Without a subcommand, docker-cd runs the agent (`serve`) with the settings above."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<CliCommand>,
    /// The settings of `serve`, the default.
    #[command(flatten)]
    pub serve: Args,
}

impl Cli {
    /// The command to run: the subcommand given, or `serve` with the top-level settings.
    pub fn into_command(self) -> CliCommand {
        self.command.unwrap_or(CliCommand::Serve(self.serve))
    }
}

/// Parses the real command line and environment. On a usage error (unknown flag, `--help`,
/// `--version`) clap prints and exits, with code 2 for errors.
///
/// A secret given as a flag is accepted, with a warning on stderr (logging is not set up yet):
/// every local user can read a process's arguments in `/proc/<pid>/cmdline` and `ps`, while
/// its environment and its files are the owner's alone.
pub fn parse_command_line() -> Cli {
    let matches = Cli::command().get_matches();
    for flag in secret_flags(&matches) {
        let variable = SECRET_FLAGS
            .iter()
            .find(|s| s.flag == flag)
            .map_or("", |s| s.file_variable);
        eprintln!(
            "warning: {flag} puts a secret on the command line, where every local user can read \
             it (/proc/<pid>/cmdline, ps); prefer {variable}"
        );
    }
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Cli::command()).exit())
}

/// A setting whose value is, or may hold, a secret.
struct SecretFlag {
    /// The clap id: the field name.
    id: &'static str,
    flag: &'static str,
    /// Where the secret is better kept.
    file_variable: &'static str,
}

/// Every setting that may carry a secret, in the order of [`Args`] and [`RefreshArgs`].
const SECRET_FLAGS: &[SecretFlag] = &[
    SecretFlag {
        id: "git_repo_url",
        flag: "--git-repo-url",
        file_variable: "GIT_ACCESS_TOKEN_FILE",
    },
    SecretFlag {
        id: "git_access_token",
        flag: "--git-access-token",
        file_variable: "GIT_ACCESS_TOKEN_FILE",
    },
    SecretFlag {
        id: "webhook_secret",
        flag: "--webhook-secret",
        file_variable: "WEBHOOK_SECRET_FILE",
    },
    SecretFlag {
        id: "api_token",
        flag: "--api-token",
        file_variable: "API_TOKEN_FILE",
    },
];

/// The flags of [`SECRET_FLAGS`] that were given on the command line (not through their
/// environment variable) with a secret in them: any value, or for `--git-repo-url` a URL that
/// carries a password.
fn secret_flags(matches: &clap::ArgMatches) -> Vec<&'static str> {
    let mut found = Vec::new();
    let levels = std::iter::once(matches).chain(matches.subcommand().map(|(_, m)| m));
    for level in levels {
        // Only ids present in these matches are asked about: clap panics on unknown ones.
        let given: Vec<&str> = level.ids().map(clap::Id::as_str).collect();
        for secret in SECRET_FLAGS.iter().filter(|s| given.contains(&s.id)) {
            if level.value_source(secret.id) != Some(clap::parser::ValueSource::CommandLine) {
                continue;
            }
            let holds_secret = secret.id != "git_repo_url"
                || level
                    .get_one::<String>(secret.id)
                    .and_then(|raw| RepoUrl::parse(raw).ok())
                    .is_some_and(|url| url.password().is_some());
            if holds_secret {
                found.push(secret.flag);
            }
        }
    }
    found
}

/// What `docker-cd` can do.
#[derive(Debug, clap::Subcommand)]
pub enum CliCommand {
    /// Run the agent (the default when no subcommand is given)
    Serve(Args),
    /// Check the settings and the repository before deploying; exits 1 on any error
    ///
    /// Validates the settings like `serve` (exit 2 when invalid), reads the repository into a
    /// temporary directory (never DATA_DIR), finds the compose tool and the engine when
    /// reconciling, and lists the stacks that would be deployed with their project names and
    /// problems.
    Check(Args),
    /// Print the stacks of a running instance (GET /api/stacks)
    Status(ClientArgs),
    /// Ask a running instance for a refresh and wait for its outcome; exits 1 if it fails
    Refresh(RefreshArgs),
}

/// How `status` and `refresh` reach a running instance. The defaults come from the same
/// `LISTEN_ADDR` and `PORT` the instance uses, so inside its container no flag is needed.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientArgs {
    /// Base URL of the running instance [default: http://LISTEN_ADDR:PORT, with 0.0.0.0 as 127.0.0.1]
    #[arg(long)]
    pub url: Option<String>,
    /// Address the instance listens on (for the default --url)
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0")]
    pub listen_addr: String,
    /// Port the instance listens on (for the default --url)
    #[arg(long, env = "PORT", default_value = "8080")]
    pub port: String,
}

/// `refresh`: where the instance is, its API token, and how long to wait.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RefreshArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Bearer token the instance requires (prefer API_TOKEN_FILE)
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// File holding the API token
    #[arg(long, env = "API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// How long to wait for the refresh to finish (humantime: 30s, 5m)
    #[arg(long, default_value = "10m")]
    pub timeout: String,
}

/// The validated settings of `status` and `refresh`.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://host:port`, without a trailing `/`.
    pub base_url: String,
    pub api_token: Option<Secret>,
    /// How long `refresh` waits for the outcome.
    pub timeout: Duration,
}

impl ClientConfig {
    /// For `status`: where the instance is.
    pub fn for_status(args: ClientArgs) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let base_url = client_base_url(&args, &mut |variable, message| {
            problems.push(Problem { variable, message })
        });
        match base_url {
            Some(base_url) if problems.is_empty() => Ok(Self {
                base_url,
                api_token: None,
                timeout: Duration::from_secs(30),
            }),
            _ => Err(ConfigError(problems)),
        }
    }

    /// For `refresh`: where the instance is, its token, how long to wait.
    pub fn for_refresh(args: RefreshArgs) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut problem = |variable: &'static str, message: String| {
            problems.push(Problem { variable, message });
        };
        let base_url = client_base_url(&args.client, &mut problem);
        let api_token = secret_value(
            "API_TOKEN",
            args.api_token,
            args.api_token_file,
            &mut problem,
        );
        let timeout = parse_duration("--timeout", &args.timeout, &mut problem);
        match (base_url, timeout) {
            (Some(base_url), Some(timeout)) if problems.is_empty() => Ok(Self {
                base_url,
                api_token,
                timeout,
            }),
            _ => Err(ConfigError(problems)),
        }
    }
}

/// `--url` as given (http only: the client has no TLS), or `http://LISTEN_ADDR:PORT` with an
/// unspecified address (`0.0.0.0`, `::`) replaced by the loopback address.
fn client_base_url(
    args: &ClientArgs,
    problem: &mut impl FnMut(&'static str, String),
) -> Option<String> {
    if let Some(url) = &args.url {
        let url = url.trim().trim_end_matches('/');
        let Some(rest) = url.strip_prefix("http://") else {
            problem(
                "--url",
                format!(
                    "{url:?} is not an http:// URL (this client speaks plain HTTP; run it next to the instance, e.g. `docker exec <container> docker-cd status`)"
                ),
            );
            return None;
        };
        if rest.is_empty() || rest.contains(|c: char| c.is_whitespace() || c.is_control()) {
            problem("--url", format!("{url:?} has no host"));
            return None;
        }
        return Some(url.to_owned());
    }
    let (ip, port) = parse_listen(&args.listen_addr, &args.port, "; or give --url", problem);
    let ip = match ip? {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Some(format!("http://{}", SocketAddr::new(ip, port?)))
}

/// The settings of `serve` and `check`, as clap reads them from flags and the environment.
/// Everything is a string here so that validation can report all problems together instead of
/// stopping at the first.
#[derive(Debug, Clone, Default, Parser)]
pub struct Args {
    /// Repository to watch: https://…, ssh://…, git@host:org/repo.git, file://… or an absolute path
    #[arg(long, env = "GIT_REPO_URL", hide_env_values = true)]
    pub git_repo_url: Option<String>,
    /// Branch, tag or full 40-hex commit id to deploy
    #[arg(long, env = "GIT_REVISION", default_value = "main")]
    pub git_revision: String,
    /// Directory inside the repository whose subdirectories are stacks (default: the root)
    #[arg(long, env = "GIT_DEPLOY_DIR", default_value = "")]
    pub git_deploy_dir: String,
    /// HTTPS access token (prefer GIT_ACCESS_TOKEN_FILE)
    #[arg(long, env = "GIT_ACCESS_TOKEN", hide_env_values = true)]
    pub git_access_token: Option<String>,
    /// File holding the HTTPS access token
    #[arg(long, env = "GIT_ACCESS_TOKEN_FILE")]
    pub git_access_token_file: Option<PathBuf>,
    /// Private key for SSH remotes
    #[arg(long, env = "GIT_SSH_KEY_FILE")]
    pub git_ssh_key_file: Option<PathBuf>,
    /// known_hosts file with the pinned host keys of the SSH remote
    #[arg(long, env = "GIT_SSH_KNOWN_HOSTS_FILE")]
    pub git_ssh_known_hosts_file: Option<PathBuf>,
    /// Trust an SSH host key seen for the first time (a changed key still fails)
    #[arg(long, env = "GIT_SSH_ACCEPT_NEW_HOST_KEYS", default_value = "false")]
    pub git_ssh_accept_new_host_keys: String,
    /// Hard limit for each git child process (humantime: 30s, 2m)
    #[arg(long, env = "GIT_TIMEOUT", default_value = "120s")]
    pub git_timeout: String,
    /// git binary (default: `git` found on PATH)
    #[arg(long, env = "GIT_BIN")]
    pub git_bin: Option<PathBuf>,
    /// docker binary (default: `docker` found on PATH)
    #[arg(long, env = "DOCKER_BIN")]
    pub docker_bin: Option<PathBuf>,
    /// Standalone docker-compose binary to use instead of the `docker compose` plugin
    #[arg(long, env = "COMPOSE_BIN")]
    pub compose_bin: Option<PathBuf>,
    /// Local mirror of the repository and materialised stack directories
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Address the HTTP server listens on
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0")]
    pub listen_addr: String,
    /// Port the HTTP server listens on
    #[arg(long, env = "PORT", default_value = "8080")]
    pub port: String,
    /// Shared secret of the GitHub/Gitea webhook (prefer WEBHOOK_SECRET_FILE); unset disables the webhook
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// File holding the webhook secret
    #[arg(long, env = "WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Poll interval (humantime, minimum 5s); `0` or `off` disables polling
    #[arg(long, env = "REFRESH_POLL_INTERVAL", default_value = "3m")]
    pub refresh_poll_interval: String,
    /// Apply the desired state to the Docker host (`false`: refresh only)
    #[arg(long, env = "RECONCILE_ENABLED", default_value = "true")]
    pub reconcile_enabled: String,
    /// Allow `down` of stacks removed from Git
    #[arg(long, env = "RECONCILE_REMOVE_ENABLED", default_value = "false")]
    pub reconcile_remove_enabled: String,
    /// Resync tick: how often the host is re-checked for drift without a new commit
    #[arg(long, env = "RECONCILE_INTERVAL", default_value = "1m")]
    pub reconcile_interval: String,
    /// `revert` re-applies drifted stacks; `flag` marks them `drifted` until acknowledged
    #[arg(long, env = "DRIFT_POLICY", default_value = "revert")]
    pub drift_policy: String,
    /// Bearer token required by mutating endpoints (prefer API_TOKEN_FILE)
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// File holding the API token
    #[arg(long, env = "API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Hard limit for each compose child process
    #[arg(long, env = "COMPOSE_TIMEOUT", default_value = "10m")]
    pub compose_timeout: String,
    /// Log format: `text` or `json` (level from RUST_LOG, default info)
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// `compose` (docker compose on this host), `swarm` (docker stack deploy on a swarm manager),
    /// or `auto` (swarm when the engine is a swarm manager)
    #[arg(long, env = "DEPLOY_MODE", default_value = "compose")]
    pub deploy_mode: String,
}

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

/// Variables passed through to children from the agent's environment. Nothing else is.
const PASSTHROUGH_VARS: &[&str] = &[
    "PATH",
    "HOME",
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "DOCKER_API_VERSION",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "TMPDIR",
];

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
}

/// One invalid setting: the variable, what was wrong, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub variable: &'static str,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

/// All problems found in a configuration; printed one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<Problem>);

impl Config {
    /// Validates parsed arguments. Reads `PATH` and the docker client variables from the process
    /// environment for [`ChildEnv`], and secret files from disk.
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let vars = PASSTHROUGH_VARS
            .iter()
            .filter_map(|name| std::env::var_os(name).map(|v| (OsString::from(name), v)))
            .collect();
        Self::validate(args, ChildEnv { vars })
    }

    /// Validation proper, with the child environment given (tests pass their own).
    pub fn validate(args: Args, child_env: ChildEnv) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut problem = |variable: &'static str, message: String| {
            problems.push(Problem { variable, message });
        };

        let repo = match args.git_repo_url.as_deref() {
            None | Some("") => {
                problem(
                    "GIT_REPO_URL",
                    "is required (the Git repository to deploy from)".into(),
                );
                None
            }
            Some(raw) => match RepoUrl::parse(raw) {
                Ok(url) => Some(url),
                // The raw value may embed a token: show the problem, never the value.
                Err(e) => {
                    problem("GIT_REPO_URL", e);
                    None
                }
            },
        };

        let revision = Revision::parse(&args.git_revision)
            .map_err(|e| {
                problem(
                    "GIT_REVISION",
                    format!(
                        "{:?} {e}; give a branch, a tag or a 40-hex commit id",
                        args.git_revision
                    ),
                )
            })
            .ok();

        let deploy_dir = DeployDir::parse(&args.git_deploy_dir)
            .map_err(|e| problem("GIT_DEPLOY_DIR", format!("{:?} {e}", args.git_deploy_dir)))
            .ok();

        let token_from_env = secret_value(
            "GIT_ACCESS_TOKEN",
            args.git_access_token,
            args.git_access_token_file,
            &mut problem,
        );
        let token = match (&repo, token_from_env) {
            (Some(url), Some(_)) if url.password().is_some() => {
                problem(
                    "GIT_ACCESS_TOKEN",
                    "is set and GIT_REPO_URL also carries a password; give only one".into(),
                );
                None
            }
            (Some(url), Some(token)) if url.transport() == Transport::Ssh => {
                problem(
                    "GIT_ACCESS_TOKEN",
                    "applies to https:// repositories; use GIT_SSH_KEY_FILE for ssh".into(),
                );
                Some(token)
            }
            (Some(url), None) => url.password().cloned(),
            (_, token) => token,
        };

        let accept_new = parse_bool(
            "GIT_SSH_ACCEPT_NEW_HOST_KEYS",
            &args.git_ssh_accept_new_host_keys,
            &mut problem,
        );
        for (variable, file) in [
            ("GIT_SSH_KEY_FILE", &args.git_ssh_key_file),
            ("GIT_SSH_KNOWN_HOSTS_FILE", &args.git_ssh_known_hosts_file),
        ] {
            if let Some(path) = file {
                if let Err(e) = std::fs::File::open(path) {
                    problem(variable, format!("{} cannot be read: {e}", path.display()));
                }
            }
        }
        if let Some(url) = &repo {
            if url.transport() == Transport::Ssh
                && args.git_ssh_known_hosts_file.is_none()
                && accept_new != Some(true)
            {
                problem(
                    "GIT_SSH_KNOWN_HOSTS_FILE",
                    "is required for ssh repositories (pinned host keys; `ssh-keyscan host > known_hosts`), \
                     or set GIT_SSH_ACCEPT_NEW_HOST_KEYS=true to trust on first use"
                        .into(),
                );
            }
        }

        let git_timeout = parse_duration("GIT_TIMEOUT", &args.git_timeout, &mut problem);
        let compose_timeout =
            parse_duration("COMPOSE_TIMEOUT", &args.compose_timeout, &mut problem);
        let reconcile_interval =
            parse_duration("RECONCILE_INTERVAL", &args.reconcile_interval, &mut problem);
        if reconcile_interval.is_some_and(|d| d < MIN_POLL_INTERVAL) {
            problem("RECONCILE_INTERVAL", "must be at least 5s".into());
        }
        let poll_interval = match args.refresh_poll_interval.trim() {
            "0" | "off" | "false" => Some(None),
            raw => match humantime::parse_duration(raw) {
                Ok(d) if d.is_zero() => Some(None),
                Ok(d) if d < MIN_POLL_INTERVAL => {
                    problem(
                        "REFRESH_POLL_INTERVAL",
                        format!(
                            "{raw:?} is below the minimum of 5s (use `off` to disable polling)"
                        ),
                    );
                    None
                }
                Ok(d) => Some(Some(d)),
                Err(e) => {
                    problem(
                        "REFRESH_POLL_INTERVAL",
                        format!("{raw:?} is not a duration ({e}); use e.g. 30s, 5m, or `off`"),
                    );
                    None
                }
            },
        };

        let reconcile_enabled =
            parse_bool("RECONCILE_ENABLED", &args.reconcile_enabled, &mut problem);
        let remove_enabled = parse_bool(
            "RECONCILE_REMOVE_ENABLED",
            &args.reconcile_remove_enabled,
            &mut problem,
        );
        let drift_policy = match args.drift_policy.trim().to_ascii_lowercase().as_str() {
            "revert" => Some(DriftPolicy::Revert),
            "flag" => Some(DriftPolicy::Flag),
            other => {
                problem(
                    "DRIFT_POLICY",
                    format!("{other:?} is not one of: revert, flag"),
                );
                None
            }
        };

        let deploy_mode = match args.deploy_mode.trim().to_ascii_lowercase().as_str() {
            "" | "compose" => Some(DeployMode::Compose),
            "swarm" => Some(DeployMode::Swarm),
            "auto" => Some(DeployMode::Auto),
            other => {
                problem(
                    "DEPLOY_MODE",
                    format!("{other:?} is not one of: compose, swarm, auto"),
                );
                None
            }
        };

        let (ip, port) = parse_listen(&args.listen_addr, &args.port, "", &mut problem);

        let webhook_secret = secret_value(
            "WEBHOOK_SECRET",
            args.webhook_secret,
            args.webhook_secret_file,
            &mut problem,
        );
        let api_token = secret_value(
            "API_TOKEN",
            args.api_token,
            args.api_token_file,
            &mut problem,
        );

        let log_format = match args.log_format.trim() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            other => {
                problem("LOG_FORMAT", format!("{other:?} is not one of: text, json"));
                None
            }
        };

        let search_path = child_env
            .vars
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let git_bin = locate("GIT_BIN", args.git_bin, "git", &search_path, &mut problem);
        let reconciling = reconcile_enabled.unwrap_or(true);
        let docker_bin = if reconciling {
            locate(
                "DOCKER_BIN",
                args.docker_bin,
                "docker",
                &search_path,
                &mut problem,
            )
        } else {
            // Without reconciling, docker is only used for the status page; its absence is fine.
            Some(args.docker_bin.unwrap_or_else(|| PathBuf::from("docker")))
        };
        let compose_bin = args.compose_bin.and_then(|bin| {
            locate(
                "COMPOSE_BIN",
                Some(bin),
                "docker-compose",
                &search_path,
                &mut problem,
            )
        });

        if args.data_dir.as_os_str().is_empty() {
            problem("DATA_DIR", "must not be empty".into());
        }

        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        // Every Option below is Some when no problem was recorded; the `let … else` keeps that
        // invariant checked rather than assumed.
        let (
            Some(repo),
            Some(revision),
            Some(deploy_dir),
            Some(git_timeout),
            Some(compose_timeout),
            Some(reconcile_interval),
            Some(poll_interval),
            Some(reconcile_enabled),
            Some(remove_enabled),
            Some(drift_policy),
            Some(ip),
            Some(port),
            Some(log_format),
            Some(git_bin),
            Some(docker_bin),
            Some(accept_new),
            Some(deploy_mode),
        ) = (
            repo,
            revision,
            deploy_dir,
            git_timeout,
            compose_timeout,
            reconcile_interval,
            poll_interval,
            reconcile_enabled,
            remove_enabled,
            drift_policy,
            ip,
            port,
            log_format,
            git_bin,
            docker_bin,
            accept_new,
            deploy_mode,
        )
        else {
            return Err(ConfigError(vec![Problem {
                variable: "configuration",
                message: "internal validation error".into(),
            }]));
        };

        Ok(Config {
            git: GitConfig {
                bin: git_bin,
                repo,
                revision,
                deploy_dir,
                token,
                ssh: SshSettings {
                    key_file: args.git_ssh_key_file.map(absolute),
                    known_hosts_file: args.git_ssh_known_hosts_file.map(absolute),
                    accept_new_host_keys: accept_new,
                },
                timeout: git_timeout,
            },
            data_dir: absolute(args.data_dir),
            http: HttpConfig {
                listen: SocketAddr::new(ip, port),
                api_token,
                webhook_secret,
            },
            poll_interval,
            reconcile: ReconcileConfig {
                enabled: reconcile_enabled,
                remove_enabled,
                drift_policy,
                interval: reconcile_interval,
                compose_timeout,
                docker_bin,
                compose_bin,
                deploy_mode,
            },
            child_env,
            log_format,
        })
    }
}

impl Config {
    /// Every secret of this configuration, for [`Redactor`].
    pub fn redactor(&self) -> Redactor {
        Redactor::new(
            [
                self.git.token.clone(),
                self.http.webhook_secret.clone(),
                self.http.api_token.clone(),
            ]
            .into_iter()
            .flatten(),
        )
    }
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// `LISTEN_ADDR` and `PORT`; `hint` is appended to each problem.
fn parse_listen(
    listen_addr: &str,
    port: &str,
    hint: &str,
    problem: &mut impl FnMut(&'static str, String),
) -> (Option<IpAddr>, Option<u16>) {
    let ip = listen_addr
        .parse::<IpAddr>()
        .map_err(|_| {
            problem(
                "LISTEN_ADDR",
                format!("{listen_addr:?} is not an IP address (e.g. 0.0.0.0, 127.0.0.1, ::){hint}"),
            )
        })
        .ok();
    let port = port
        .parse::<u16>()
        .map_err(|_| {
            problem(
                "PORT",
                format!("{port:?} is not a port number (0-65535){hint}"),
            )
        })
        .ok();
    (ip, port)
}

fn parse_bool(
    variable: &'static str,
    raw: &str,
    problem: &mut impl FnMut(&'static str, String),
) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => {
            problem(
                variable,
                format!("{raw:?} is not a boolean (true or false)"),
            );
            None
        }
    }
}

fn parse_duration(
    variable: &'static str,
    raw: &str,
    problem: &mut impl FnMut(&'static str, String),
) -> Option<Duration> {
    match humantime::parse_duration(raw.trim()) {
        Ok(d) if d.is_zero() => {
            problem(variable, "must be greater than zero".into());
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            problem(
                variable,
                format!("{raw:?} is not a duration ({e}); use e.g. 30s, 2m"),
            );
            None
        }
    }
}

/// Resolves a binary: an explicit path must exist; a bare name is looked up on `PATH`.
fn locate(
    variable: &'static str,
    explicit: Option<PathBuf>,
    default: &str,
    search_path: &std::ffi::OsStr,
    problem: &mut impl FnMut(&'static str, String),
) -> Option<PathBuf> {
    let wanted = explicit.unwrap_or_else(|| PathBuf::from(default));
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    match which::which_in(&wanted, Some(search_path), cwd) {
        Ok(path) => Some(path),
        Err(_) => {
            problem(
                variable,
                format!(
                    "{} was not found (not on PATH or not executable)",
                    Path::new(&wanted).display()
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reconciling off, so the tests do not depend on a docker binary being installed.
    fn args(url: &str) -> Args {
        Args::parse_from([
            "docker-cd",
            "--git-repo-url",
            url,
            "--reconcile-enabled",
            "false",
        ])
    }

    fn env() -> ChildEnv {
        ChildEnv {
            vars: vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())],
        }
    }

    fn problems(args: Args) -> Vec<Problem> {
        match Config::validate(args, env()) {
            Ok(_) => Vec::new(),
            Err(ConfigError(p)) => p,
        }
    }

    #[test]
    fn every_invalid_value_is_reported_once_per_line() {
        let mut a = args("ext::sh -c x");
        a.git_revision = "HEAD~1".into();
        a.refresh_poll_interval = "soon".into();
        a.drift_policy = "ignore".into();
        a.port = "99999".into();
        let p = problems(a);
        let vars: Vec<_> = p.iter().map(|p| p.variable).collect();
        assert_eq!(
            vars,
            [
                "GIT_REPO_URL",
                "GIT_REVISION",
                "REFRESH_POLL_INTERVAL",
                "DRIFT_POLICY",
                "PORT"
            ]
        );
        let text = ConfigError(p).to_string();
        assert_eq!(text.lines().count(), 5, "{text}");
    }

    #[test]
    fn missing_repo_url_is_a_problem() {
        let p = problems(Args::parse_from(["docker-cd"]));
        assert_eq!(p[0].variable, "GIT_REPO_URL");
        assert!(p[0].message.contains("required"));
    }

    #[test]
    fn poll_interval_accepts_off_and_rejects_below_minimum() {
        let mut a = args("/srv/repo.git");
        a.refresh_poll_interval = "off".into();
        assert_eq!(Config::validate(a, env()).unwrap().poll_interval, None);
        let mut a = args("/srv/repo.git");
        a.refresh_poll_interval = "2s".into();
        assert_eq!(problems(a)[0].variable, "REFRESH_POLL_INTERVAL");
        let mut a = args("/srv/repo.git");
        a.refresh_poll_interval = "30s".into();
        assert_eq!(
            Config::validate(a, env()).unwrap().poll_interval,
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn token_in_url_never_shows_in_problems_or_debug() {
        let mut a = args("https://u:hunter2secret@host/repo.git");
        a.drift_policy = "nope".into();
        let text = ConfigError(problems(a)).to_string();
        assert!(!text.contains("hunter2secret"));
        let config =
            Config::validate(args("https://u:hunter2secret@host/repo.git"), env()).unwrap();
        assert!(!format!("{config:?}").contains("hunter2secret"));
        assert_eq!(
            config.git.token.as_ref().map(Secret::expose),
            Some("hunter2secret")
        );
    }

    #[test]
    fn empty_secrets_are_problems_not_a_way_to_turn_authentication_off() {
        let dir = tempfile::tempdir().unwrap();
        let blank = dir.path().join("blank");
        std::fs::write(&blank, " \r\n").unwrap();
        let mut a = args("/srv/repo.git");
        a.api_token = Some(String::new());
        a.webhook_secret_file = Some(blank.clone());
        a.git_access_token = Some(" ".into());
        let vars: Vec<_> = problems(a).iter().map(|p| p.variable).collect();
        assert_eq!(vars, ["GIT_ACCESS_TOKEN", "WEBHOOK_SECRET", "API_TOKEN"]);
        let refresh = RefreshArgs {
            client: ClientArgs {
                url: Some("http://x".into()),
                ..ClientArgs::default()
            },
            api_token_file: Some(blank),
            timeout: "1m".into(),
            ..RefreshArgs::default()
        };
        let problems = ClientConfig::for_refresh(refresh).unwrap_err().0;
        assert_eq!(problems[0].variable, "API_TOKEN");
    }

    #[test]
    fn secret_flags_are_told_from_environment_variables() {
        let matches = |argv: &[&str]| Cli::command().try_get_matches_from(argv).unwrap();
        let flagged = secret_flags(&matches(&[
            "docker-cd",
            "--git-access-token",
            "x",
            "--api-token",
            "y",
            "--git-repo-url",
            "https://u:pw@host/r.git",
        ]));
        assert_eq!(
            flagged,
            ["--git-repo-url", "--git-access-token", "--api-token"]
        );
        let flagged = secret_flags(&matches(&[
            "docker-cd",
            "check",
            "--webhook-secret",
            "x",
            "--git-repo-url",
            "https://host/r.git",
        ]));
        assert_eq!(flagged, ["--webhook-secret"]);
        let flagged = secret_flags(&matches(&["docker-cd", "refresh", "--api-token", "y"]));
        assert_eq!(flagged, ["--api-token"]);
        let flagged = secret_flags(&matches(&["docker-cd", "--api-token-file", "/run/t"]));
        assert!(flagged.is_empty(), "{flagged:?}");
    }

    #[test]
    fn secrets_come_from_files_with_newline_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\n").unwrap();
        let mut a = args("/srv/repo.git");
        a.webhook_secret_file = Some(file);
        let config = Config::validate(a, env()).unwrap();
        assert_eq!(config.http.webhook_secret.unwrap().expose(), "from-file");
    }

    #[test]
    fn ssh_without_known_hosts_is_rejected_unless_trust_on_first_use() {
        let p = problems(args("git@github.com:org/repo.git"));
        assert_eq!(p[0].variable, "GIT_SSH_KNOWN_HOSTS_FILE");
        let mut a = args("git@github.com:org/repo.git");
        a.git_ssh_accept_new_host_keys = "true".into();
        assert!(problems(a).is_empty());
    }

    #[test]
    fn deploy_mode_defaults_to_compose_and_rejects_unknown_engines() {
        let config = Config::validate(args("/srv/repo.git"), env()).unwrap();
        assert_eq!(config.reconcile.deploy_mode, DeployMode::Compose);
        for (raw, mode) in [("swarm", DeployMode::Swarm), ("AUTO", DeployMode::Auto)] {
            let mut a = args("/srv/repo.git");
            a.deploy_mode = raw.into();
            assert_eq!(
                Config::validate(a, env()).unwrap().reconcile.deploy_mode,
                mode
            );
        }
        let mut a = args("/srv/repo.git");
        a.deploy_mode = "kubernetes".into();
        let p = problems(a);
        assert_eq!(p[0].variable, "DEPLOY_MODE");
        assert!(p[0].message.contains("compose, swarm, auto"), "{}", p[0]);
    }

    #[test]
    fn no_subcommand_means_serve_with_the_top_level_settings() {
        let cli = Cli::parse_from(["docker-cd", "--git-repo-url", "/srv/repo.git"]);
        let CliCommand::Serve(args) = cli.into_command() else {
            panic!("not serve");
        };
        assert_eq!(args.git_repo_url.as_deref(), Some("/srv/repo.git"));
        let cli = Cli::parse_from(["docker-cd", "check", "--git-repo-url", "/srv/repo.git"]);
        assert!(matches!(cli.into_command(), CliCommand::Check(a) if a.git_repo_url.is_some()));
        assert!(Cli::try_parse_from(["docker-cd", "--port", "1", "status"]).is_err());
    }

    #[test]
    fn clients_reach_an_unspecified_listen_address_through_loopback() {
        let url = |listen: &str, port: &str| {
            ClientConfig::for_status(ClientArgs {
                url: None,
                listen_addr: listen.into(),
                port: port.into(),
            })
            .map(|c| c.base_url)
        };
        assert_eq!(url("0.0.0.0", "8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(url("::", "9000").unwrap(), "http://[::1]:9000");
        assert_eq!(url("192.0.2.7", "80").unwrap(), "http://192.0.2.7:80");
        let problems = url("localhost", "http").unwrap_err().0;
        let variables: Vec<_> = problems.iter().map(|p| p.variable).collect();
        assert_eq!(variables, ["LISTEN_ADDR", "PORT"]);
    }

    #[test]
    fn an_explicit_url_must_be_plain_http() {
        let with = |url: &str| {
            ClientConfig::for_status(ClientArgs {
                url: Some(url.into()),
                listen_addr: "nonsense".into(),
                port: "nonsense".into(),
            })
        };
        assert_eq!(
            with("http://cd.internal:8080/").unwrap().base_url,
            "http://cd.internal:8080"
        );
        assert_eq!(
            with("https://cd.example.com").unwrap_err().0[0].variable,
            "--url"
        );
        assert_eq!(with("http://").unwrap_err().0[0].variable, "--url");
    }

    #[test]
    fn refresh_settings_take_the_token_and_a_timeout() {
        let args = RefreshArgs {
            client: ClientArgs {
                url: None,
                listen_addr: "127.0.0.1".into(),
                port: "8080".into(),
            },
            api_token: Some("tok3n-value".into()),
            timeout: "2m".into(),
            ..RefreshArgs::default()
        };
        let config = ClientConfig::for_refresh(args).unwrap();
        assert_eq!(config.api_token.unwrap().expose(), "tok3n-value");
        assert_eq!(config.timeout, Duration::from_secs(120));
        let args = RefreshArgs {
            client: ClientArgs {
                url: Some("http://x".into()),
                ..ClientArgs::default()
            },
            timeout: "soon".into(),
            ..RefreshArgs::default()
        };
        let problems = ClientConfig::for_refresh(args).unwrap_err().0;
        assert_eq!(problems[0].variable, "--timeout");
    }
}
