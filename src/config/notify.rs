//! The settings of notifications and commit status (SPEC §13): `NOTIFY_URLS[_FILE]`,
//! `NOTIFY_EVENTS`, `NOTIFY_SECRET[_FILE]`, `COMMIT_STATUS`, `COMMIT_STATUS_TOKEN[_FILE]`,
//! `COMMIT_STATUS_API_URL`, `COMMIT_STATUS_REPO` and `PUBLIC_URL`, read into the types the
//! `notify` workflow uses. Pure: the callers hand in the raw values.
//!
//! A receiver's URL is a secret (a Slack incoming-webhook URL is its own credential, an ntfy
//! topic is "essentially a password"): problems name the entry by its position, its scheme and
//! its host, never its path or its credentials.

use std::collections::BTreeSet;

use reqwest::Url;

use super::Secret;

/// A notification event of SPEC §13, as `NOTIFY_EVENTS` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NotifyEvent {
    SyncSucceeded,
    SyncFailed,
    HealthDegraded,
    HealthRecovered,
    DriftDetected,
    Rollback,
    ImageUpdated,
    RefreshFailing,
    RefreshRecovered,
}

impl NotifyEvent {
    pub const ALL: [Self; 9] = [
        Self::SyncSucceeded,
        Self::SyncFailed,
        Self::HealthDegraded,
        Self::HealthRecovered,
        Self::DriftDetected,
        Self::Rollback,
        Self::ImageUpdated,
        Self::RefreshFailing,
        Self::RefreshRecovered,
    ];

    /// `NOTIFY_EVENTS`'s default: every failure, recovery and rollback.
    pub const DEFAULT: [Self; 6] = [
        Self::SyncFailed,
        Self::HealthDegraded,
        Self::HealthRecovered,
        Self::Rollback,
        Self::RefreshFailing,
        Self::RefreshRecovered,
    ];

    /// The wire name (`sync.failed`, …): `NOTIFY_EVENTS`, the messages and the metrics use it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SyncSucceeded => "sync.succeeded",
            Self::SyncFailed => "sync.failed",
            Self::HealthDegraded => "health.degraded",
            Self::HealthRecovered => "health.recovered",
            Self::DriftDetected => "drift.detected",
            Self::Rollback => "rollback",
            Self::ImageUpdated => "image.updated",
            Self::RefreshFailing => "refresh.failing",
            Self::RefreshRecovered => "refresh.recovered",
        }
    }

    /// A failure (shown red by the receivers), as opposed to a recovery or a success.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Self::SyncFailed
                | Self::HealthDegraded
                | Self::DriftDetected
                | Self::Rollback
                | Self::RefreshFailing
        )
    }
}

/// How a receiver is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiverKind {
    /// `generic+http(s)://…`: JSON, signed with `NOTIFY_SECRET`.
    Generic,
    /// `slack+http(s)://…`: a Slack-compatible incoming webhook (`{"text": …}`).
    Slack,
    /// `ntfy+http(s)://host/topic`: ntfy's publish format.
    Ntfy,
}

impl ReceiverKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::Slack => "slack",
            Self::Ntfy => "ntfy",
        }
    }
}

/// One entry of `NOTIFY_URLS`.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub kind: ReceiverKind,
    /// The `http(s)://…` URL after the `kind+` prefix, credentials included: secret.
    pub url: Secret,
    /// What logs and messages may show: `slack https://hooks.slack.com`.
    pub label: String,
}

/// Notifications: `None` in [`super::Config`] when `NOTIFY_URLS` is not set.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub receivers: Vec<Receiver>,
    pub events: BTreeSet<NotifyEvent>,
    /// `NOTIFY_SECRET`: the HMAC key of the generic receivers' `X-Docker-CD-Signature`.
    pub secret: Option<Secret>,
}

/// The forge whose commit status API is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    Github,
    Gitea,
    Gitlab,
}

impl Forge {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Gitea => "gitea",
            Self::Gitlab => "gitlab",
        }
    }
}

/// Commit status: `None` in [`super::Config`] when `COMMIT_STATUS` is not set.
#[derive(Debug, Clone)]
pub struct CommitStatusConfig {
    pub forge: Forge,
    /// The API base without a trailing slash (`https://api.github.com`, `https://host/api/v4`).
    pub api_url: String,
    /// `owner/name` (GitLab: the project path, `group/sub/project`).
    pub repo: String,
    /// `COMMIT_STATUS_TOKEN`, or the Git token.
    pub token: Option<Secret>,
}

/// Reads `NOTIFY_URLS` (comma-separated; the file: one per line or comma-separated).
pub(super) fn parse_receivers(raw: &str) -> Result<Vec<Receiver>, Vec<String>> {
    let mut receivers = Vec::new();
    let mut problems = Vec::new();
    let entries = raw
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty());
    for (index, entry) in entries.enumerate() {
        match parse_receiver(entry) {
            Ok(receiver) => receivers.push(receiver),
            Err(e) => problems.push(format!("entry {} ({}): {e}", index + 1, describe(entry))),
        }
    }
    if receivers.is_empty() && problems.is_empty() {
        problems.push("is set but names no receiver".into());
    }
    if problems.is_empty() {
        Ok(receivers)
    } else {
        Err(problems)
    }
}

/// What an entry may show of itself: its scheme and host, nothing of its path or credentials.
fn describe(entry: &str) -> String {
    let (scheme, rest) = entry.split_once("://").unwrap_or(("?", ""));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let scheme: String = scheme
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '+')
        .take(20)
        .collect();
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        .take(100)
        .collect();
    format!("{scheme}://{host}/…")
}

fn parse_receiver(entry: &str) -> Result<Receiver, String> {
    let Some((prefix, rest)) = entry.split_once('+') else {
        return Err("does not start with generic+, slack+ or ntfy+".into());
    };
    let kind = match prefix.to_ascii_lowercase().as_str() {
        "generic" => ReceiverKind::Generic,
        "slack" => ReceiverKind::Slack,
        "ntfy" => ReceiverKind::Ntfy,
        _ => return Err("the kind is not one of: generic, slack, ntfy".into()),
    };
    let url = Url::parse(rest).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the scheme after the kind must be http or https".into());
    }
    let Some(host) = url.host_str() else {
        return Err("has no host".into());
    };
    if kind == ReceiverKind::Ntfy && url.path().trim_matches('/').is_empty() {
        return Err("names no topic (ntfy+https://host/topic)".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".into());
    }
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    Ok(Receiver {
        kind,
        label: format!("{} {}://{host}{port}", kind.as_str(), url.scheme()),
        url: Secret::new(url.to_string()),
    })
}

/// Reads `NOTIFY_EVENTS`: comma-separated names, or `all`; empty: [`NotifyEvent::DEFAULT`].
pub(super) fn parse_events(raw: &str) -> Result<BTreeSet<NotifyEvent>, String> {
    let mut events = BTreeSet::new();
    let mut unknown = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name == "all" {
            events.extend(NotifyEvent::ALL);
        } else if let Some(event) = NotifyEvent::ALL.iter().find(|e| e.as_str() == name) {
            events.insert(*event);
        } else {
            unknown.push(format!("{name:?}"));
        }
    }
    if !unknown.is_empty() {
        let known: Vec<_> = NotifyEvent::ALL.iter().map(|e| e.as_str()).collect();
        return Err(format!(
            "{} not an event; give `all` or some of: {}",
            unknown.join(", "),
            known.join(", ")
        ));
    }
    if events.is_empty() {
        events.extend(NotifyEvent::DEFAULT);
    }
    Ok(events)
}

/// Reads `COMMIT_STATUS`.
pub(super) fn parse_forge(raw: &str) -> Result<Option<Forge>, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "" | "off" | "none" => Ok(None),
        "github" => Ok(Some(Forge::Github)),
        "gitea" | "forgejo" => Ok(Some(Forge::Gitea)),
        "gitlab" => Ok(Some(Forge::Gitlab)),
        other => Err(format!("{other:?} is not one of: github, gitea, gitlab")),
    }
}

/// The host and the path (without `.git` and slashes at either end) of a repository URL:
/// `https://host/o/r.git`, `ssh://git@host:22/o/r`, scp-like `git@host:o/r.git`. `None` for
/// local repositories.
pub fn repo_host_and_path(repo: &str) -> Option<(String, String)> {
    let (host, path) = if repo.contains("://") {
        let url = Url::parse(repo).ok()?;
        if !matches!(url.scheme(), "http" | "https" | "ssh" | "git") {
            return None;
        }
        let host = url.host_str()?.to_owned();
        // An https URL's port belongs to the web host; ssh's is the ssh daemon's.
        let host = match (url.scheme(), url.port()) {
            ("http" | "https", Some(port)) => format!("{host}:{port}"),
            _ => host,
        };
        (host, url.path().to_owned())
    } else {
        let (authority, path) = repo.split_once(':')?;
        if authority.contains('/') {
            return None;
        }
        let host = authority.rsplit('@').next()?.to_owned();
        (host, path.to_owned())
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path).to_owned();
    if host.is_empty() || !path.contains('/') {
        return None;
    }
    Some((host, path))
}

/// The commit status API's base for a repository host (SPEC §13): github.com →
/// `https://api.github.com`, another GitHub host (Enterprise) → `https://host/api/v3`, Gitea
/// `https://host/api/v1`, GitLab `https://host/api/v4`. The scheme follows the repository's
/// (`http://` repositories get an `http://` API).
pub fn api_base(forge: Forge, repo: &str) -> Option<String> {
    let (host, _) = repo_host_and_path(repo)?;
    let scheme = if repo.starts_with("http://") {
        "http"
    } else {
        "https"
    };
    Some(match forge {
        Forge::Github if host.eq_ignore_ascii_case("github.com") => {
            "https://api.github.com".to_owned()
        }
        Forge::Github => format!("{scheme}://{host}/api/v3"),
        Forge::Gitea => format!("{scheme}://{host}/api/v1"),
        Forge::Gitlab => format!("{scheme}://{host}/api/v4"),
    })
}

/// Reads an `http(s)://` base URL (`COMMIT_STATUS_API_URL`, `PUBLIC_URL`) without its trailing
/// slash; credentials, queries and fragments are refused.
pub(super) fn parse_base_url(raw: &str) -> Result<String, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    if url.host_str().is_none() {
        return Err("has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a ?query or #fragment".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_are_read_with_their_kind_and_a_label_without_path_or_credentials() {
        let list = parse_receivers(
            "generic+https://hooks.example/x, slack+https://hooks.slack.com/services/T/B/SECRET,\n\
             ntfy+http://user:pw@ntfy.local:8080/deploys",
        )
        .unwrap();
        let kinds: Vec<_> = list.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [
                ReceiverKind::Generic,
                ReceiverKind::Slack,
                ReceiverKind::Ntfy
            ]
        );
        assert_eq!(list[1].label, "slack https://hooks.slack.com");
        assert_eq!(list[2].label, "ntfy http://ntfy.local:8080");
        assert_eq!(
            list[2].url.expose(),
            "http://user:pw@ntfy.local:8080/deploys"
        );
        assert!(!format!("{list:?}").contains("SECRET"));
    }

    #[test]
    fn an_invalid_entry_is_named_by_position_scheme_and_host_only() {
        let problems = parse_receivers(
            "slack+https://hooks.slack.com/services/T/B/SECRET,teams+https://user:pw@x.example/SECRET2,ntfy+https://ntfy.sh/,generic+ftp://h/x,slack:https://h",
        )
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert_eq!(
            problems[0],
            "entry 2 (teams+https://x.example/…): the kind is not one of: generic, slack, ntfy"
        );
        assert!(problems[1].starts_with("entry 3 (ntfy+https://ntfy.sh/…): names no topic"));
        assert!(problems[2].contains("must be http or https"));
        assert!(problems[3].starts_with("entry 5"));
        let all = problems.join("\n");
        assert!(!all.contains("SECRET") && !all.contains("pw"), "{all}");
        assert!(parse_receivers(" , ").is_err());
    }

    #[test]
    fn events_default_to_failures_recoveries_and_rollbacks_and_unknown_names_are_named() {
        let default = parse_events("").unwrap();
        assert!(default.contains(&NotifyEvent::SyncFailed));
        assert!(default.contains(&NotifyEvent::RefreshRecovered));
        assert!(!default.contains(&NotifyEvent::SyncSucceeded));
        assert!(!default.contains(&NotifyEvent::ImageUpdated));
        assert_eq!(parse_events("all").unwrap().len(), NotifyEvent::ALL.len());
        assert_eq!(
            parse_events("sync.succeeded, image.updated").unwrap(),
            BTreeSet::from([NotifyEvent::SyncSucceeded, NotifyEvent::ImageUpdated])
        );
        let e = parse_events("sync.failed,sync.broke").unwrap_err();
        assert!(e.starts_with("\"sync.broke\" not an event"), "{e}");
    }

    #[test]
    fn repository_host_and_path_come_from_every_url_form() {
        for (url, host, path) in [
            ("https://github.com/org/repo.git", "github.com", "org/repo"),
            (
                "https://token@github.com/org/repo",
                "github.com",
                "org/repo",
            ),
            ("http://gitea.local:3000/o/r.git", "gitea.local:3000", "o/r"),
            (
                "ssh://git@gitlab.com:2222/g/sub/p.git",
                "gitlab.com",
                "g/sub/p",
            ),
            (
                "git@gitlab.example:group/sub/project.git",
                "gitlab.example",
                "group/sub/project",
            ),
        ] {
            assert_eq!(
                repo_host_and_path(url),
                Some((host.to_owned(), path.to_owned())),
                "{url}"
            );
        }
        assert_eq!(repo_host_and_path("/srv/git/repo"), None);
        assert_eq!(repo_host_and_path("file:///srv/git/repo"), None);
    }

    #[test]
    fn the_api_base_follows_the_forge_and_the_host() {
        let cases = [
            (
                Forge::Github,
                "https://github.com/o/r.git",
                "https://api.github.com",
            ),
            (
                Forge::Github,
                "git@github.com:o/r.git",
                "https://api.github.com",
            ),
            (
                Forge::Github,
                "https://ghe.corp/o/r",
                "https://ghe.corp/api/v3",
            ),
            (
                Forge::Gitea,
                "https://codeberg.org/o/r.git",
                "https://codeberg.org/api/v1",
            ),
            (
                Forge::Gitea,
                "http://gitea:3000/o/r.git",
                "http://gitea:3000/api/v1",
            ),
            (
                Forge::Gitlab,
                "https://gitlab.com/g/s/p.git",
                "https://gitlab.com/api/v4",
            ),
        ];
        for (forge, repo, base) in cases {
            assert_eq!(api_base(forge, repo).as_deref(), Some(base), "{repo}");
        }
        assert_eq!(api_base(Forge::Gitea, "/srv/repo"), None);
    }

    #[test]
    fn base_urls_lose_their_trailing_slash_and_refuse_credentials() {
        assert_eq!(
            parse_base_url("https://cd.example/").unwrap(),
            "https://cd.example"
        );
        assert_eq!(
            parse_base_url("http://h:8080/docker-cd/").unwrap(),
            "http://h:8080/docker-cd"
        );
        assert!(parse_base_url("https://u:p@h").is_err());
        assert!(parse_base_url("ftp://h").is_err());
        assert!(parse_base_url("h").is_err());
        assert_eq!(parse_forge("GitLab").unwrap(), Some(Forge::Gitlab));
        assert!(
            parse_forge("bitbucket")
                .unwrap_err()
                .contains("github, gitea, gitlab")
        );
    }
}
