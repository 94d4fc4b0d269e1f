//! Validation: turns the strings of [`Args`], [`ClientArgs`] and [`RefreshArgs`] into domain
//! types ([`Config`] through [`Config::validate`], [`ClientConfig`]): durations, booleans,
//! policies, modes, the listen address, binaries located on `PATH`, the child environment. Every
//! invalid setting becomes one [`Problem`] line of a [`ConfigError`], which `main` prints before
//! exiting with code 2; problems are collected, not short-circuited, and never echo a secret.
//!
//! Reads the process environment (only the `PASSTHROUGH_VARS`, in [`Config::from_args`]), the
//! secret and SSH files it is pointed at, and the working directory; spawns nothing. Uses `cli`,
//! `repo`, `secrets` and `notify`, and of the rest of the crate only [`crate::schedule`] (`SYNC_WINDOWS`).

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cli::{Args, ClientArgs, RefreshArgs, TokenArgs};
use super::notify::{self, CommitStatusConfig, NotifyConfig};
use super::repo::{DeployDir, RepoUrl, Revision, Transport};
use super::secrets::{Secret, age_identities, secret_list, secret_value};
use super::{
    AgeIdentities, ChildEnv, Config, DeployMode, DriftPolicy, GitConfig, HttpConfig, LogFormat,
    ReconcileConfig, SopsConfig, SshSettings,
};

/// Shortest accepted `REFRESH_POLL_INTERVAL`.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// The most stacks synced at once (`SYNC_CONCURRENCY`): each sync is a compose process tree.
pub const MAX_SYNC_CONCURRENCY: usize = 64;
/// The shortest `IMAGE_UPDATE_INTERVAL`: every check asks each registry once per image.
pub const MIN_IMAGE_UPDATE_INTERVAL: Duration = Duration::from_secs(60);
/// The most deployments kept per stack (`HISTORY_LIMIT`).
pub const MAX_HISTORY_LIMIT: usize = 1000;

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

impl ClientConfig {
    /// For the operator's commands (`diff`, `history`, `sync`, `rollback`, …): where the
    /// instance is, and its token when given (the read-only commands pass none).
    pub fn for_operator(args: ClientArgs, token: TokenArgs) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut problem = |variable: &'static str, message: String| {
            problems.push(Problem { variable, message });
        };
        let base_url = client_base_url(&args, &mut problem);
        let api_token = secret_value(
            "API_TOKEN",
            token.api_token,
            token.api_token_file,
            &mut problem,
        );
        match base_url {
            Some(base_url) if problems.is_empty() => Ok(Self {
                base_url,
                api_token,
                timeout: Duration::from_secs(30),
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
        let health_timeout = match args.sync_health_timeout.trim() {
            "0" | "off" => Some(Duration::ZERO),
            raw => match humantime::parse_duration(raw) {
                Ok(d) => Some(d),
                Err(e) => {
                    problem(
                        "SYNC_HEALTH_TIMEOUT",
                        format!(
                            "{raw:?} is not a duration ({e}); use e.g. 2m, 30s, or 0 to not wait"
                        ),
                    );
                    None
                }
            },
        };
        let concurrency = match args.sync_concurrency.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_SYNC_CONCURRENCY).contains(&n) => Some(n),
            _ => {
                problem(
                    "SYNC_CONCURRENCY",
                    format!(
                        "{:?} is not a whole number from 1 to {MAX_SYNC_CONCURRENCY}",
                        args.sync_concurrency
                    ),
                );
                None
            }
        };
        let sync_windows = crate::schedule::parse_windows(&args.sync_windows)
            .map_err(|e| {
                problem(
                    "SYNC_WINDOWS",
                    format!(
                        "{e}; give `;`-separated windows, each a 5-field cron schedule in UTC and \
                         a duration, e.g. `0 2 * * 6 2h; 30 1 * * * 45m`"
                    ),
                )
            })
            .ok();
        let history_limit = match args.history_limit.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_HISTORY_LIMIT).contains(&n) => Some(n),
            _ => {
                problem(
                    "HISTORY_LIMIT",
                    format!(
                        "{:?} is not a whole number from 1 to {MAX_HISTORY_LIMIT}",
                        args.history_limit
                    ),
                );
                None
            }
        };
        let image_update_interval = match args.image_update_interval.trim() {
            "" | "0" | "off" | "false" => None,
            raw => match humantime::parse_duration(raw) {
                Ok(d) if d.is_zero() => None,
                Ok(d) if d < MIN_IMAGE_UPDATE_INTERVAL => {
                    problem(
                        "IMAGE_UPDATE_INTERVAL",
                        format!("{raw:?} is below the minimum of 1m (use `off` to disable)"),
                    );
                    None
                }
                Ok(d) => Some(d),
                Err(e) => {
                    problem(
                        "IMAGE_UPDATE_INTERVAL",
                        format!("{raw:?} is not a duration (such as 30m or 6h) or `off`: {e}"),
                    );
                    None
                }
            },
        };
        let rollback_on_failure = parse_bool(
            "ROLLBACK_ON_FAILURE",
            &args.rollback_on_failure,
            &mut problem,
        );
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

        let webhook_secret = secret_list(
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

        let notify = notify_settings(
            secret_value(
                "NOTIFY_URLS",
                args.notify_urls,
                args.notify_urls_file,
                &mut problem,
            ),
            &args.notify_events,
            secret_value(
                "NOTIFY_SECRET",
                args.notify_secret,
                args.notify_secret_file,
                &mut problem,
            ),
            &mut problem,
        );
        let commit_status_token = secret_value(
            "COMMIT_STATUS_TOKEN",
            args.commit_status_token,
            args.commit_status_token_file,
            &mut problem,
        )
        .or_else(|| token.clone());
        let commit_status = commit_status_settings(
            &args.commit_status,
            repo.as_ref(),
            args.commit_status_api_url.as_deref(),
            args.commit_status_repo.as_deref(),
            commit_status_token,
            &mut problem,
        );
        let public_url = args.public_url.as_deref().and_then(|raw| {
            notify::parse_base_url(raw)
                .map_err(|e| problem("PUBLIC_URL", format!("{raw:?} {e}")))
                .ok()
        });

        // SOPS_AGE_KEY, then SOPS_AGE_KEY_FILE: both may be given (sops uses both).
        let sops = SopsConfig {
            age_identities: [
                ("SOPS_AGE_KEY", args.sops_age_key, None),
                ("SOPS_AGE_KEY_FILE", None, args.sops_age_key_file),
            ]
            .into_iter()
            .filter_map(|(variable, direct, file)| {
                age_identities(variable, direct, file, &mut problem)
                    .map(|text| AgeIdentities { variable, text })
            })
            .collect(),
        };

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
            Some(health_timeout),
            Some(concurrency),
            Some(sync_windows),
            Some(history_limit),
            Some(rollback_on_failure),
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
            health_timeout,
            concurrency,
            sync_windows,
            history_limit,
            rollback_on_failure,
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
                health_timeout,
                concurrency,
                sync_windows,
                image_update_interval,
                history_limit,
                rollback_on_failure,
                docker_bin,
                compose_bin,
                deploy_mode,
            },
            child_env,
            log_format,
            sops,
            notify,
            commit_status,
            public_url,
        })
    }
}

/// `NOTIFY_URLS`, `NOTIFY_EVENTS` and `NOTIFY_SECRET` (SPEC §13); `None` without receivers.
fn notify_settings(
    urls: Option<Secret>,
    events: &str,
    secret: Option<Secret>,
    problem: &mut impl FnMut(&'static str, String),
) -> Option<NotifyConfig> {
    let events = notify::parse_events(events)
        .map_err(|e| problem("NOTIFY_EVENTS", e))
        .ok();
    let receivers = match urls.map(|raw| notify::parse_receivers(raw.expose())) {
        None => return None,
        Some(Ok(receivers)) => receivers,
        Some(Err(problems)) => {
            for p in problems {
                problem("NOTIFY_URLS", p);
            }
            return None;
        }
    };
    Some(NotifyConfig {
        receivers,
        events: events?,
        secret,
    })
}

/// `COMMIT_STATUS` and its API, repository and token (SPEC §13); `None` when it is not set.
fn commit_status_settings(
    forge: &str,
    repo: Option<&RepoUrl>,
    api_url: Option<&str>,
    repo_path: Option<&str>,
    token: Option<Secret>,
    problem: &mut impl FnMut(&'static str, String),
) -> Option<CommitStatusConfig> {
    let forge = match notify::parse_forge(forge) {
        Ok(Some(forge)) => forge,
        Ok(None) => return None,
        Err(e) => {
            problem("COMMIT_STATUS", e);
            return None;
        }
    };
    let repo = repo?;
    let api_url = match api_url {
        Some(raw) => notify::parse_base_url(raw)
            .map_err(|e| problem("COMMIT_STATUS_API_URL", format!("{raw:?} {e}")))
            .ok(),
        None => notify::api_base(forge, repo.as_str()).or_else(|| {
            problem(
                "COMMIT_STATUS_API_URL",
                "is required: GIT_REPO_URL names no forge host (a local repository)".into(),
            );
            None
        }),
    };
    let repo_path = match repo_path.map(|r| r.trim().trim_matches('/')) {
        Some(path) if path.split('/').count() >= 2 && !path.split('/').any(str::is_empty) => {
            Some(path.to_owned())
        }
        Some(path) => {
            problem(
                "COMMIT_STATUS_REPO",
                format!("{path:?} is not owner/name (GitLab: group/project)"),
            );
            None
        }
        None => notify::repo_host_and_path(repo.as_str())
            .map(|(_, path)| path)
            .or_else(|| {
                problem(
                    "COMMIT_STATUS_REPO",
                    "is required: GIT_REPO_URL's path names no owner/name".into(),
                );
                None
            }),
    };
    if token.is_none() {
        problem(
            "COMMIT_STATUS_TOKEN",
            "is required with COMMIT_STATUS (or a GIT_ACCESS_TOKEN to use)".into(),
        );
    }
    Some(CommitStatusConfig {
        forge,
        api_url: api_url?,
        repo: repo_path?,
        token,
    })
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
    let ip = listen_addr.parse::<IpAddr>().ok();
    if ip.is_none() {
        let example = "e.g. 0.0.0.0, 127.0.0.1, ::";
        let message = format!("{listen_addr:?} is not an IP address ({example}){hint}");
        problem("LISTEN_ADDR", message);
    }
    let number = port.parse::<u16>().ok();
    if number.is_none() {
        problem(
            "PORT",
            format!("{port:?} is not a port number (0-65535){hint}"),
        );
    }
    (ip, number)
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
    use clap::Parser;

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
    fn notifications_and_commit_status_are_off_unless_set() {
        let config = Config::validate(args("https://github.com/o/r.git"), env()).unwrap();
        assert!(config.notify.is_none());
        assert!(config.commit_status.is_none());
        assert!(config.public_url.is_none());
    }

    #[test]
    fn commit_status_takes_the_git_token_and_the_api_and_repository_from_the_url() {
        let mut a = args("https://x-access-token:ghp_secret123@github.com/org/infra.git");
        a.commit_status = "github".into();
        a.public_url = Some("https://cd.example/".into());
        let config = Config::validate(a, env()).unwrap();
        let status = config.commit_status.unwrap();
        assert_eq!(status.api_url, "https://api.github.com");
        assert_eq!(status.repo, "org/infra");
        assert_eq!(status.token.unwrap().expose(), "ghp_secret123");
        assert_eq!(config.public_url.as_deref(), Some("https://cd.example"));

        let mut a = args("https://gitlab.example/group/sub/project.git");
        a.commit_status = "gitlab".into();
        a.commit_status_token = Some("glpat-x".into());
        a.commit_status_api_url = Some("http://127.0.0.1:9/api/v4/".into());
        a.commit_status_repo = Some("other/project".into());
        let status = Config::validate(a, env()).unwrap().commit_status.unwrap();
        assert_eq!(status.api_url, "http://127.0.0.1:9/api/v4");
        assert_eq!(status.repo, "other/project");
    }

    #[test]
    fn invalid_notification_and_commit_status_settings_name_their_variable() {
        let mut a = args("/srv/git/repo");
        a.notify_urls = Some("slack+https://hooks.slack.com/services/T/B/SECRETPATH,mail+x".into());
        a.notify_events = "sync.failed,everything".into();
        a.commit_status = "gitea".into();
        a.public_url = Some("cd.example".into());
        let found = problems(a);
        let vars: Vec<_> = found.iter().map(|p| p.variable).collect();
        assert_eq!(
            vars,
            [
                "NOTIFY_EVENTS",
                "NOTIFY_URLS",
                "COMMIT_STATUS_API_URL",
                "COMMIT_STATUS_REPO",
                "COMMIT_STATUS_TOKEN",
                "PUBLIC_URL"
            ],
            "{found:?}"
        );
        assert!(!format!("{found:?}").contains("SECRETPATH"));
    }

    #[test]
    fn missing_repo_url_is_a_problem() {
        let p = problems(Args::parse_from(["docker-cd"]));
        assert_eq!(p[0].variable, "GIT_REPO_URL");
        assert!(p[0].message.contains("required"));
    }

    #[test]
    fn sync_settings_default_to_a_two_minute_health_wait_and_four_at_once() {
        let config = Config::validate(args("https://example.com/r.git"), env()).unwrap();
        assert_eq!(config.reconcile.health_timeout, Duration::from_secs(120));
        assert_eq!(config.reconcile.concurrency, 4);
        let mut a = args("https://example.com/r.git");
        a.sync_health_timeout = "0".into();
        a.sync_concurrency = "1".into();
        let config = Config::validate(a, env()).unwrap();
        assert_eq!(config.reconcile.health_timeout, Duration::ZERO);
        assert_eq!(config.reconcile.concurrency, 1);
        for (timeout, concurrency, wrong) in [
            ("soon", "4", "SYNC_HEALTH_TIMEOUT"),
            ("2m", "0", "SYNC_CONCURRENCY"),
            ("2m", "65", "SYNC_CONCURRENCY"),
            ("2m", "-1", "SYNC_CONCURRENCY"),
            ("2m", "four", "SYNC_CONCURRENCY"),
        ] {
            let mut a = args("https://example.com/r.git");
            a.sync_health_timeout = timeout.into();
            a.sync_concurrency = concurrency.into();
            let problems = Config::validate(a, env()).unwrap_err().0;
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].variable, wrong);
        }
    }

    #[test]
    fn sync_windows_default_to_none_and_are_read_into_schedules() {
        let config = Config::validate(args("/srv/repo.git"), env()).unwrap();
        assert!(config.reconcile.sync_windows.is_empty());
        let mut a = args("/srv/repo.git");
        a.sync_windows = "0 2 * * 6 2h; 30 1 * * * 45m;".into();
        let windows = Config::validate(a, env()).unwrap().reconcile.sync_windows;
        let read: Vec<_> = windows
            .iter()
            .map(|w| (w.schedule(), w.duration()))
            .collect();
        assert_eq!(
            read,
            [
                ("0 2 * * 6", Duration::from_secs(2 * 3600)),
                ("30 1 * * *", Duration::from_secs(45 * 60)),
            ]
        );
    }

    #[test]
    fn an_invalid_sync_window_is_a_sync_windows_problem_naming_the_window() {
        let mut a = args("/srv/repo.git");
        a.sync_windows = "0 2 * * 6 2h; 0 2 * * 2h".into();
        let p = problems(a);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].variable, "SYNC_WINDOWS");
        assert!(
            p[0].message
                .starts_with("window 2 (\"0 2 * * 2h\"): schedule \"0 2 * *\""),
            "{}",
            p[0]
        );
        assert!(p[0].message.contains("e.g. `0 2 * * 6 2h"), "{}", p[0]);
        let mut a = args("/srv/repo.git");
        a.sync_windows = "0 2 * * 6 0s".into();
        assert_eq!(problems(a)[0].variable, "SYNC_WINDOWS");
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
    fn secrets_come_from_files_with_newline_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\n").unwrap();
        let mut a = args("/srv/repo.git");
        a.webhook_secret_file = Some(file);
        let config = Config::validate(a, env()).unwrap();
        assert_eq!(config.http.webhook_secret.unwrap().expose(), "from-file");
    }

    /// A public throwaway test key (tests/data/sops/fluxcd-kustomize-controller/age.txt).
    const AGE_KEY: &str =
        "AGE-SECRET-KEY-1RH87A5Z54ZGUR9S0AS3R6WHFSEFNPLYMAKF5Z2CEU7R06VRJ0A3Q7242AM";

    #[test]
    fn sops_age_identities_come_from_the_key_and_the_key_file_and_are_never_shown() {
        let config = Config::validate(args("/srv/repo.git"), env()).unwrap();
        assert!(config.sops.age_identities.is_empty());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.txt");
        std::fs::write(&file, format!("# public key: age1l44x\n{AGE_KEY}\n")).unwrap();
        let mut a = args("/srv/repo.git");
        a.sops_age_key_file = Some(file);
        a.sops_age_key = Some(AGE_KEY.to_lowercase());
        let config = Config::validate(a, env()).unwrap();
        let variables: Vec<_> = config
            .sops
            .age_identities
            .iter()
            .map(|s| s.variable)
            .collect();
        assert_eq!(variables, ["SOPS_AGE_KEY", "SOPS_AGE_KEY_FILE"]);
        assert!(
            config.sops.age_identities[1]
                .text
                .expose()
                .contains(AGE_KEY)
        );
        assert!(!format!("{config:?}").to_uppercase().contains(AGE_KEY));
        let redacted = config
            .redactor()
            .redact(&format!("error: {AGE_KEY} / {}", AGE_KEY.to_lowercase()));
        assert_eq!(redacted, "error: [redacted] / [redacted]");
    }

    #[test]
    fn an_unreadable_or_invalid_sops_key_is_a_problem_naming_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = args("/srv/repo.git");
        a.sops_age_key_file = Some(dir.path().join("missing.txt"));
        a.sops_age_key = Some(format!(
            "{AGE_KEY}\nage1l44xcng8dqj32nlv6d930qvvrny05hglzcv9qpc7kxjc6902ma4qufys29\n"
        ));
        let p = problems(a);
        let vars: Vec<_> = p.iter().map(|p| p.variable).collect();
        assert_eq!(vars, ["SOPS_AGE_KEY", "SOPS_AGE_KEY_FILE"]);
        assert!(
            p[0].message.contains("line 2 is not an age identity"),
            "{}",
            p[0]
        );
        assert!(p[1].message.contains("cannot be read"), "{}", p[1]);
        for problem in &p {
            assert!(!problem.message.contains("AGE-SECRET-KEY-1RH"), "{problem}");
            assert!(!problem.message.contains("age1l44x"), "{problem}");
        }
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
