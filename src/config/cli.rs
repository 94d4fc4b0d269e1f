//! The command line: clap's [`Cli`] with its subcommands ([`CliCommand`]), the raw settings of
//! `serve` and `check` ([`Args`]) and of the clients ([`ClientArgs`], [`RefreshArgs`],
//! [`TokenArgs`] and the operator's commands' [`DiffArgs`], [`StackArgs`], [`ControlArgs`],
//! [`RollbackArgs`]),
//! [`parse_command_line`], and the warning for a secret given as a flag.
//!
//! Reads the command line and, through clap's `env`, the environment; values stay strings here
//! and are validated by `settings`. Uses `repo` to tell whether a `--git-repo-url` carries a
//! password, and nothing else of the crate.

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser};

use super::repo::RepoUrl;

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
    SecretFlag {
        id: "sops_age_key",
        flag: "--sops-age-key",
        file_variable: "SOPS_AGE_KEY_FILE",
    },
    SecretFlag {
        id: "notify_urls",
        flag: "--notify-urls",
        file_variable: "NOTIFY_URLS_FILE",
    },
    SecretFlag {
        id: "notify_secret",
        flag: "--notify-secret",
        file_variable: "NOTIFY_SECRET_FILE",
    },
    SecretFlag {
        id: "commit_status_token",
        flag: "--commit-status-token",
        file_variable: "COMMIT_STATUS_TOKEN_FILE",
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
    /// Show what a sync would change (GET /api/stacks/{path}/diff); exits 0 when nothing is
    /// pending, 1 when changes are pending, 2 on an error
    ///
    /// With a stack: its files (unified diff) and its services (create, recreate, remove,
    /// unchanged, with the reason). Without: one line per stack, exit 1 if any is pending.
    Diff(DiffArgs),
    /// Print the deployment history of a stack, newest first (GET /api/stacks/{path}/history)
    History(StackArgs),
    /// Sync a stack now, even when it is in sync (POST /api/stacks/{path}/sync)
    Sync(ControlArgs),
    /// Deploy a stack as it was at a commit and pin it there (POST /api/stacks/{path}/rollback)
    ///
    /// Without REVISION: the newest succeeded deployment of another commit than the one
    /// running. The stack stays pinned (automatic syncs stop) until `docker-cd unpin STACK`.
    Rollback(RollbackArgs),
    /// End a pin: the stack follows Git again (POST /api/stacks/{path}/unpin)
    Unpin(ControlArgs),
    /// Suspend a stack: never synced, reverted or removed until resumed
    Suspend(ControlArgs),
    /// Resume a suspended stack; the next sync applies what differs
    Resume(ControlArgs),
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

/// The API token of a running instance, for the commands that change something.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TokenArgs {
    /// Bearer token the instance requires (prefer API_TOKEN_FILE)
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// File holding the API token
    #[arg(long, env = "API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
}

/// `diff [STACK]`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The stack's path in the repository (as `docker-cd status` lists it); all stacks when
    /// left out
    pub stack: Option<String>,
}

/// `history STACK`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StackArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The stack's path in the repository (as `docker-cd status` lists it)
    pub stack: String,
}

/// `sync`, `unpin`, `suspend`, `resume`: a stack, and the token to change it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ControlArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub token: TokenArgs,
    /// The stack's path in the repository (as `docker-cd status` lists it)
    pub stack: String,
}

/// `rollback STACK [REVISION]`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// The commit to deploy (a full commit id, as the history shows it); default: the previous
    /// succeeded deployment
    pub revision: Option<String>,
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
    /// After `up`, how long a sync waits for the stack to turn healthy before it fails
    /// (`0`: do not wait)
    #[arg(long, env = "SYNC_HEALTH_TIMEOUT", default_value = "2m")]
    pub sync_health_timeout: String,
    /// How many stacks are synced at once (never two operations on one project)
    #[arg(long, env = "SYNC_CONCURRENCY", default_value = "4")]
    pub sync_concurrency: String,
    /// When automatic syncs may run: `;`-separated windows, each a 5-field cron schedule in UTC
    /// and a duration (`0 2 * * 6 2h; 30 1 * * * 45m`); empty: always
    #[arg(long, env = "SYNC_WINDOWS", default_value = "")]
    pub sync_windows: String,
    /// How often the registries are asked whether the images of the stacks' tags moved
    /// (`off`: only on `POST /api/image-updates` and for stacks with `imageUpdates: true`)
    #[arg(long, env = "IMAGE_UPDATE_INTERVAL", default_value = "off")]
    pub image_update_interval: String,
    /// Deployments kept in the history of each stack (under DATA_DIR/history)
    #[arg(long, env = "HISTORY_LIMIT", default_value = "20")]
    pub history_limit: String,
    /// When a new commit's sync fails (compose or health), re-apply the last succeeded
    /// deployment and hold the stack there until a newer commit
    #[arg(long, env = "ROLLBACK_ON_FAILURE", default_value = "false")]
    pub rollback_on_failure: String,
    /// Log format: `text` or `json` (level from RUST_LOG, default info)
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// `compose` (docker compose on this host), `swarm` (docker stack deploy on a swarm manager),
    /// or `auto` (swarm when the engine is a swarm manager)
    #[arg(long, env = "DEPLOY_MODE", default_value = "compose")]
    pub deploy_mode: String,
    /// age identity file (AGE-SECRET-KEY-1… lines, as age-keygen writes them) that decrypts the
    /// repository's SOPS files; mount it read-only
    #[arg(long, env = "SOPS_AGE_KEY_FILE")]
    pub sops_age_key_file: Option<PathBuf>,
    /// age identities given directly, one per line (prefer SOPS_AGE_KEY_FILE); with both, the
    /// keys of both are used, as sops does
    #[arg(long, env = "SOPS_AGE_KEY", hide_env_values = true)]
    pub sops_age_key: Option<String>,
    /// Where notifications go, comma-separated: `generic+https://…`, `slack+https://…`,
    /// `ntfy+https://host/topic` (`http` too); the URLs are secrets (prefer NOTIFY_URLS_FILE)
    #[arg(long, env = "NOTIFY_URLS", hide_env_values = true)]
    pub notify_urls: Option<String>,
    /// File holding NOTIFY_URLS (one per line, or comma-separated)
    #[arg(long, env = "NOTIFY_URLS_FILE")]
    pub notify_urls_file: Option<PathBuf>,
    /// Events notified, comma-separated, or `all` (default: every failure, recovery and
    /// rollback)
    #[arg(long, env = "NOTIFY_EVENTS", default_value = "")]
    pub notify_events: String,
    /// HMAC-SHA256 key that signs the generic receivers' bodies (X-Docker-CD-Signature)
    #[arg(long, env = "NOTIFY_SECRET", hide_env_values = true)]
    pub notify_secret: Option<String>,
    /// File holding NOTIFY_SECRET
    #[arg(long, env = "NOTIFY_SECRET_FILE")]
    pub notify_secret_file: Option<PathBuf>,
    /// Report each sync as a commit status: `github`, `gitea` (Forgejo too) or `gitlab`
    #[arg(long, env = "COMMIT_STATUS", default_value = "")]
    pub commit_status: String,
    /// Token of the commit status API (prefer COMMIT_STATUS_TOKEN_FILE; default: the Git token)
    #[arg(long, env = "COMMIT_STATUS_TOKEN", hide_env_values = true)]
    pub commit_status_token: Option<String>,
    /// File holding COMMIT_STATUS_TOKEN
    #[arg(long, env = "COMMIT_STATUS_TOKEN_FILE")]
    pub commit_status_token_file: Option<PathBuf>,
    /// The commit status API's base (default: from the repository's host)
    #[arg(long, env = "COMMIT_STATUS_API_URL")]
    pub commit_status_api_url: Option<String>,
    /// `owner/name` (GitLab: the project path) of the commit status API (default: from the
    /// repository URL's path)
    #[arg(long, env = "COMMIT_STATUS_REPO")]
    pub commit_status_repo: Option<String>,
    /// Where this instance's dashboard is reached (`https://cd.example`): notifications and
    /// commit statuses link to the stack's page
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let flagged = secret_flags(&matches(&[
            "docker-cd",
            "--sops-age-key",
            "AGE-SECRET-KEY-1X",
            "--sops-age-key-file",
            "/run/keys.txt",
        ]));
        assert_eq!(flagged, ["--sops-age-key"]);
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
}
