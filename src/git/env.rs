//! The hermetic environment of every git child ([`git_env`]): the scrubbed base, no user or
//! system config, `GIT_TERMINAL_PROMPT=0`, the allowed protocols, and the credentials (an HTTPS
//! token as a URL-scoped header, `GIT_SSH_COMMAND` with pinned or learned host keys).
//!
//! Uses: config. Pure: it builds values and runs nothing.

use std::ffi::OsString;
use std::path::Path;

use base64::Engine as _;

use crate::config::{ChildEnv, GitConfig, Transport};

/// The environment of every git child: the scrubbed base plus git's own switches. Credentials
/// go here and nowhere else.
pub(super) fn git_env(
    config: &GitConfig,
    data_dir: &Path,
    child_env: &ChildEnv,
) -> Vec<(OsString, OsString)> {
    let mut env = child_env.vars.clone();
    let mut set = |k: &str, v: &str| env.push((k.into(), v.into()));
    set("HOME", &data_dir.display().to_string());
    set("LC_ALL", "C");
    set("LANG", "C");
    set("GIT_TERMINAL_PROMPT", "0");
    set("GCM_INTERACTIVE", "never");
    set("GIT_CONFIG_NOSYSTEM", "1");
    set("GIT_CONFIG_GLOBAL", "/dev/null");
    set("GIT_ALLOW_PROTOCOL", config.repo.transport().git_protocol());
    set("GIT_OPTIONAL_LOCKS", "0");
    // The deploy dir is given to `ls-tree` and `diff-tree` after `--`: as a literal path, never
    // a pattern (`st*` would also match `stx`) or pathspec magic (`:(top)…`, `:!…`).
    set("GIT_LITERAL_PATHSPECS", "1");
    match config.repo.transport() {
        Transport::Https | Transport::Http => {
            if let Some(token) = &config.token {
                // Basic auth works for GitHub (`x-access-token`), GitLab and Gitea tokens.
                let user = config.repo.username().unwrap_or("x-access-token");
                let basic = base64::engine::general_purpose::STANDARD
                    .encode(format!("{user}:{}", token.expose()));
                set("GIT_CONFIG_COUNT", "2");
                set(
                    "GIT_CONFIG_KEY_0",
                    &format!("http.{}.extraHeader", config.repo.as_str()),
                );
                set(
                    "GIT_CONFIG_VALUE_0",
                    &format!("Authorization: Basic {basic}"),
                );
                // Scoping the header to the URL is not enough: git matches `http.<url>.*`
                // against the configured URL once, follows a redirect of its first request
                // (`initial`, the default) and sends the header with every later request to
                // wherever it was redirected. `false` makes any redirect an error, so no
                // request but those to the configured origin is ever made.
                set("GIT_CONFIG_KEY_1", "http.followRedirects");
                set("GIT_CONFIG_VALUE_1", "false");
            }
        }
        Transport::Ssh => {
            set("GIT_SSH_VARIANT", "ssh");
            set("GIT_SSH_COMMAND", &ssh_command(config, data_dir));
        }
        Transport::File => {}
    }
    env
}

/// The ssh command line for `GIT_SSH_COMMAND` (run by git through a shell, hence the quoting):
/// no user config, batch mode (never a prompt), pinned host keys, only the configured key.
pub(super) fn ssh_command(config: &GitConfig, data_dir: &Path) -> String {
    let ssh = &config.ssh;
    let mut known_hosts = Vec::new();
    if ssh.accept_new_host_keys {
        known_hosts.push(data_dir.join("ssh").join("known_hosts"));
    }
    if let Some(pinned) = &ssh.known_hosts_file {
        known_hosts.push(pinned.clone());
    }
    let known_hosts = known_hosts
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = vec![
        "ssh".to_owned(),
        "-F".into(),
        "/dev/null".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        format!(
            "StrictHostKeyChecking={}",
            if ssh.accept_new_host_keys {
                "accept-new"
            } else {
                "yes"
            }
        ),
        "-o".into(),
        format!("UserKnownHostsFile={known_hosts}"),
        "-o".into(),
        "GlobalKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "ConnectTimeout=30".into(),
        "-o".into(),
        "ServerAliveInterval=15".into(),
    ];
    if let Some(key) = &ssh.key_file {
        cmd.extend([
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-i".into(),
            key.display().to_string(),
        ]);
    }
    cmd.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, SshSettings};
    use crate::git::{config, lookup};

    /// The `user:password` of the `Authorization: Basic` header `git_env` configures.
    fn basic_credentials(env: &[(OsString, OsString)]) -> Vec<u8> {
        let header = lookup(env, "GIT_CONFIG_VALUE_0").unwrap();
        let encoded = header.strip_prefix("Authorization: Basic ").unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap()
    }

    #[test]
    fn a_token_goes_into_a_url_scoped_header_in_the_environment() {
        let mut c = config("https://bob:t0ken-value@git.example.com/org/repo.git");
        c.token = c.repo.password().cloned();
        let env = git_env(&c, Path::new("/data"), &ChildEnv::default());
        assert_eq!(
            lookup(&env, "GIT_CONFIG_KEY_0"),
            Some("http.https://git.example.com/org/repo.git.extraHeader")
        );
        assert_eq!(basic_credentials(&env), b"bob:t0ken-value");
        assert_eq!(lookup(&env, "GIT_CONFIG_COUNT"), Some("2"));
        assert_eq!(
            lookup(&env, "GIT_CONFIG_KEY_1"),
            Some("http.followRedirects")
        );
        assert_eq!(lookup(&env, "GIT_CONFIG_VALUE_1"), Some("false"));
        assert_eq!(lookup(&env, "GIT_ALLOW_PROTOCOL"), Some("https"));
        assert_eq!(lookup(&env, "GIT_TERMINAL_PROMPT"), Some("0"));
    }

    #[test]
    fn a_percent_encoded_password_reaches_git_decoded() {
        let mut c = config("https://bob:p%40ss%3Aw0rd@git.example.com/org/repo.git");
        c.token = c.repo.password().cloned();
        let env = git_env(&c, Path::new("/data"), &ChildEnv::default());
        assert_eq!(basic_credentials(&env), b"bob:p@ss:w0rd");
    }

    #[test]
    fn a_token_without_user_uses_the_github_convention() {
        let mut c = config("https://github.com/org/repo.git");
        c.token = Some(Secret::new("ghp_x"));
        let env = git_env(&c, Path::new("/data"), &ChildEnv::default());
        assert_eq!(basic_credentials(&env), b"x-access-token:ghp_x");
    }

    #[test]
    fn ssh_is_batch_mode_with_pinned_keys() {
        let mut c = config("git@github.com:org/repo.git");
        c.ssh = SshSettings {
            key_file: Some("/keys/id ed25519".into()),
            known_hosts_file: Some("/keys/known_hosts".into()),
            accept_new_host_keys: false,
        };
        let cmd = ssh_command(&c, Path::new("/data"));
        assert!(cmd.contains("-o BatchMode=yes"), "{cmd}");
        assert!(cmd.contains("StrictHostKeyChecking=yes"), "{cmd}");
        assert!(
            cmd.contains("UserKnownHostsFile=/keys/known_hosts"),
            "{cmd}"
        );
        assert!(cmd.contains("-i '/keys/id ed25519'"), "{cmd}");
        assert!(cmd.starts_with("ssh -F /dev/null"), "{cmd}");
    }

    #[test]
    fn trust_on_first_use_records_keys_under_the_data_dir() {
        let mut c = config("ssh://git@host/repo.git");
        c.ssh.accept_new_host_keys = true;
        let cmd = ssh_command(&c, Path::new("/data"));
        assert!(cmd.contains("StrictHostKeyChecking=accept-new"), "{cmd}");
        assert!(
            cmd.contains("UserKnownHostsFile=/data/ssh/known_hosts"),
            "{cmd}"
        );
    }
}
