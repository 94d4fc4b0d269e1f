//! Registry credentials from the Docker client's `config.json`, the file `docker login` writes:
//! the same one the docker and compose children read, found from the same `DOCKER_CONFIG` and
//! `HOME` ([`DockerConfig::dir`]).
//!
//! ```json
//! {
//!   "auths": {
//!     "https://index.docker.io/v1/": { "auth": "<base64 of user:password>" },
//!     "ghcr.io": { "username": "bot", "password": "ghp_…" },
//!     "myregistry.azurecr.io": { "identitytoken": "<refresh token>" }
//!   },
//!   "credsStore": "desktop",
//!   "credHelpers": { "123456789012.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login" }
//! }
//! ```
//!
//! Supported: `auths` entries with `auth`, or `username` and `password`, or `identitytoken` (an
//! OAuth2 refresh token for the token service). Not supported: credential helpers (`credsStore`,
//! `credHelpers`; docker-cd runs no `docker-credential-*` program) and `registrytoken`. A helper
//! is only an error when it matters: when a registry demands credentials that the helper would
//! keep and `auths` has none ([`Lookup::Helper`]). Reads the one file it is given; other keys
//! of the file (`proxies`, `HttpHeaders`, …) are ignored.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::RegistryError;
use super::reference::{DOCKER_HUB, DOCKER_HUB_AUTH_KEY};
use crate::config::Secret;

/// Credentials for one registry.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A user and password (or access token used as a password), sent as `Basic` to the
    /// registry or to its token service.
    Basic { username: String, password: Secret },
    /// An OAuth2 refresh token, exchanged at the token service (`grant_type=refresh_token`).
    IdentityToken(Secret),
}

impl Credentials {
    /// Who the credentials are, for error messages: the user name, or `identity token`.
    pub fn who(&self) -> &str {
        match self {
            Self::Basic { username, .. } => username,
            Self::IdentityToken(_) => "<identity token>",
        }
    }
}

/// What the config says about one registry.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    Found(&'a Credentials),
    /// No entry, and no helper.
    None,
    /// No usable `auths` entry, and a credential helper covers the registry: `helper` (the
    /// suffix of `docker-credential-<helper>`) from `field` (`credsStore` or `credHelpers`).
    Helper {
        helper: &'a str,
        field: &'static str,
    },
    /// An entry that cannot be used (bad base64, no `:`), with what is wrong.
    Broken(&'static str),
}

/// The `auths` of a Docker client config, decoded once; credential helpers noted.
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    /// The file read (or looked for), for messages; `None` when no config directory is known.
    path: Option<PathBuf>,
    /// Keyed by the entry's key as written (`https://index.docker.io/v1/`, `ghcr.io`).
    auths: BTreeMap<String, Result<Credentials, &'static str>>,
    creds_store: Option<String>,
    cred_helpers: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, RawAuth>,
    #[serde(rename = "credsStore", default)]
    creds_store: Option<String>,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct RawAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

impl DockerConfig {
    /// The directory the docker CLI takes its config from in an environment (the children's,
    /// [`crate::config::ChildEnv`]): `$DOCKER_CONFIG`, else `$HOME/.docker`; `None` without
    /// either.
    pub fn dir(env: &[(OsString, OsString)]) -> Option<PathBuf> {
        let var = |name: &str| {
            env.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
                .filter(|v| !v.is_empty())
        };
        var("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|home| Path::new(home).join(".docker")))
    }

    /// Reads `<dir>/config.json`. No directory or no file: no credentials (anonymous access,
    /// as for `docker pull` without `docker login`). An unreadable file or invalid JSON is an
    /// error naming the file, never showing its content.
    pub fn load(dir: Option<&Path>) -> Result<Self, RegistryError> {
        let Some(dir) = dir else {
            return Ok(Self::default());
        };
        let path = dir.join("config.json");
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    path: Some(path),
                    ..Self::default()
                });
            }
            Err(source) => return Err(RegistryError::ConfigUnreadable { path, source }),
        };
        Self::parse(&bytes, path)
    }

    /// Parses a config file's bytes; `path` is what messages name.
    pub fn parse(bytes: &[u8], path: PathBuf) -> Result<Self, RegistryError> {
        // serde_json's messages quote the value they choke on, which may be a password: only
        // the position is shown.
        let raw: RawConfig =
            serde_json::from_slice(bytes).map_err(|e| RegistryError::ConfigInvalid {
                path: path.clone(),
                line: e.line(),
                column: e.column(),
            })?;
        let auths = raw
            .auths
            .into_iter()
            .filter_map(|(key, entry)| decode(entry).map(|c| (key, c)))
            .collect();
        Ok(Self {
            path: Some(path),
            auths,
            creds_store: raw.creds_store.filter(|s| !s.is_empty()),
            cred_helpers: raw.cred_helpers,
        })
    }

    /// The file this config came from (or would have), for messages.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// What the config has for `registry` (`host[:port]` as in [`ImageRef`]). An `auths` key
    /// matches when its host (scheme and path stripped, as the docker CLI does) is the
    /// registry; Docker Hub also answers to `https://index.docker.io/v1/`, `index.docker.io`
    /// and `docker.io`. An exact key wins over a stripped one.
    ///
    /// [`ImageRef`]: super::ImageRef
    pub fn lookup(&self, registry: &str) -> Lookup<'_> {
        let hosts: &[&str] = if registry == DOCKER_HUB {
            &[
                DOCKER_HUB_AUTH_KEY,
                "index.docker.io",
                "docker.io",
                DOCKER_HUB,
            ]
        } else {
            &[registry]
        };
        let exact = hosts.iter().find_map(|h| self.auths.get(*h));
        let stripped = || {
            self.auths.iter().find_map(|(key, c)| {
                let host = key_host(key);
                hosts
                    .iter()
                    .any(|h| key_host(h).eq_ignore_ascii_case(host))
                    .then_some(c)
            })
        };
        match exact.or_else(stripped) {
            Some(Ok(credentials)) => return Lookup::Found(credentials),
            Some(Err(why)) => return Lookup::Broken(why),
            None => {}
        }
        let helper = self.cred_helpers.iter().find_map(|(key, helper)| {
            let host = key_host(key);
            hosts
                .iter()
                .any(|h| key_host(h).eq_ignore_ascii_case(host))
                .then_some(helper.as_str())
        });
        match (helper, &self.creds_store) {
            (Some(helper), _) if !helper.is_empty() => Lookup::Helper {
                helper,
                field: "credHelpers",
            },
            (_, Some(store)) => Lookup::Helper {
                helper: store,
                field: "credsStore",
            },
            _ => Lookup::None,
        }
    }
}

/// An `auths` key's host: `https://index.docker.io/v1/` → `index.docker.io`.
fn key_host(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

/// An `auths` entry's credentials: `auth` first (it is what `docker login` writes, and the
/// CLI lets it override `username`/`password`), then `username`/`password`, then
/// `identitytoken`. `None` for an empty entry (`{}`, what `docker login` leaves when a helper
/// keeps the secret).
fn decode(entry: RawAuth) -> Option<Result<Credentials, &'static str>> {
    if let Some(token) = entry.identitytoken.filter(|t| !t.is_empty()) {
        return Some(Ok(Credentials::IdentityToken(Secret::new(token))));
    }
    if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| "its `auth` is not base64");
        return Some(decoded.and_then(|bytes| {
            let text = String::from_utf8(bytes).map_err(|_| "its `auth` is not UTF-8")?;
            let (username, password) = text
                .split_once(':')
                .ok_or("its `auth` is not base64 of `user:password`")?;
            Ok(Credentials::Basic {
                username: username.to_owned(),
                password: Secret::new(password),
            })
        }));
    }
    match (entry.username, entry.password) {
        (Some(username), Some(password)) if !username.is_empty() => Some(Ok(Credentials::Basic {
            username,
            password: Secret::new(password),
        })),
        (Some(_), None) | (None, Some(_)) => Some(Err("it has a username or a password, not both")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> DockerConfig {
        DockerConfig::parse(json.as_bytes(), PathBuf::from("/x/config.json")).unwrap()
    }

    fn basic(lookup: Lookup<'_>) -> (String, String) {
        match lookup {
            Lookup::Found(Credentials::Basic { username, password }) => {
                (username.clone(), password.expose().to_owned())
            }
            other => panic!("not basic credentials: {other:?}"),
        }
    }

    #[test]
    fn the_auth_form_is_base64_of_user_and_password() {
        // `user:pa:ss` — a password may hold colons; the user cannot.
        let c = config(r#"{"auths":{"ghcr.io":{"auth":"dXNlcjpwYTpzcw=="}}}"#);
        assert_eq!(basic(c.lookup("ghcr.io")), ("user".into(), "pa:ss".into()));
    }

    #[test]
    fn the_username_and_password_form_is_read() {
        let c = config(r#"{"auths":{"127.0.0.1:5000":{"username":"u","password":"p"}}}"#);
        assert_eq!(basic(c.lookup("127.0.0.1:5000")), ("u".into(), "p".into()));
        assert!(matches!(c.lookup("127.0.0.1:5001"), Lookup::None));
    }

    #[test]
    fn auth_wins_over_username_and_password() {
        let c =
            config(r#"{"auths":{"r.example":{"auth":"YTpi","username":"other","password":"x"}}}"#);
        assert_eq!(basic(c.lookup("r.example")), ("a".into(), "b".into()));
    }

    #[test]
    fn docker_hub_credentials_are_found_under_the_keys_docker_login_uses() {
        for key in [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "docker.io",
            "https://index.docker.io/v1",
        ] {
            let c = config(&format!(r#"{{"auths":{{"{key}":{{"auth":"YTpi"}}}}}}"#));
            assert_eq!(
                basic(c.lookup(DOCKER_HUB)),
                ("a".into(), "b".into()),
                "{key}"
            );
        }
    }

    #[test]
    fn keys_with_a_scheme_or_a_path_match_their_host() {
        let c = config(r#"{"auths":{"https://registry.example.com/v2/":{"auth":"YTpi"}}}"#);
        assert_eq!(basic(c.lookup("registry.example.com")).0, "a");
        let c = config(r#"{"auths":{"http://127.0.0.1:5000":{"auth":"YTpi"}}}"#);
        assert_eq!(basic(c.lookup("127.0.0.1:5000")).0, "a");
    }

    #[test]
    fn an_exact_key_wins_over_a_stripped_one() {
        let c = config(
            r#"{"auths":{"https://r.example/v1/":{"auth":"b2xkOng="},"r.example":{"auth":"bmV3Ong="}}}"#,
        );
        assert_eq!(basic(c.lookup("r.example")).0, "new");
    }

    #[test]
    fn an_identity_token_is_read() {
        let c = config(
            r#"{"auths":{"x.azurecr.io":{"username":"00000000-0000-0000-0000-000000000000","identitytoken":"refresh"}}}"#,
        );
        match c.lookup("x.azurecr.io") {
            Lookup::Found(Credentials::IdentityToken(t)) => assert_eq!(t.expose(), "refresh"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_empty_entry_is_no_credentials() {
        let c = config(r#"{"auths":{"ghcr.io":{}}}"#);
        assert!(matches!(c.lookup("ghcr.io"), Lookup::None));
    }

    #[test]
    fn credential_helpers_are_reported_only_where_auths_has_nothing() {
        let c = config(
            r#"{"auths":{"ghcr.io":{},"r.example":{"auth":"YTpi"}},"credsStore":"desktop","credHelpers":{"1.dkr.ecr.eu-west-1.amazonaws.com":"ecr-login"}}"#,
        );
        assert!(matches!(
            c.lookup("ghcr.io"),
            Lookup::Helper {
                helper: "desktop",
                field: "credsStore"
            }
        ));
        assert!(matches!(
            c.lookup("1.dkr.ecr.eu-west-1.amazonaws.com"),
            Lookup::Helper {
                helper: "ecr-login",
                field: "credHelpers"
            }
        ));
        assert_eq!(basic(c.lookup("r.example")).0, "a");
    }

    #[test]
    fn broken_entries_fail_their_registry_only_and_say_why() {
        let c = config(
            r#"{"auths":{"a.example":{"auth":"%%%"},"b.example":{"auth":"bm9jb2xvbg=="},"c.example":{"username":"u"},"d.example":{"auth":"YTpi"}}}"#,
        );
        assert!(matches!(c.lookup("a.example"), Lookup::Broken(w) if w.contains("base64")));
        assert!(matches!(c.lookup("b.example"), Lookup::Broken(w) if w.contains("user:password")));
        assert!(matches!(c.lookup("c.example"), Lookup::Broken(w) if w.contains("both")));
        assert_eq!(basic(c.lookup("d.example")).0, "a");
    }

    #[test]
    fn invalid_json_is_an_error_that_does_not_quote_the_file() {
        let e = DockerConfig::parse(
            br#"{"auths":{"r":{"auth":["hunter2"]}}}"#,
            PathBuf::from("/x/config.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("/x/config.json") && e.contains("line 1"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn the_directory_is_docker_config_else_home_dot_docker() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(OsString, OsString)> {
            pairs.iter().map(|(k, v)| (k.into(), v.into())).collect()
        };
        assert_eq!(
            DockerConfig::dir(&env(&[("HOME", "/home/u"), ("DOCKER_CONFIG", "/etc/dc")])),
            Some(PathBuf::from("/etc/dc"))
        );
        assert_eq!(
            DockerConfig::dir(&env(&[("HOME", "/home/u"), ("DOCKER_CONFIG", "")])),
            Some(PathBuf::from("/home/u/.docker"))
        );
        assert_eq!(DockerConfig::dir(&env(&[])), None);
    }

    #[test]
    fn a_missing_file_or_directory_is_no_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let c = DockerConfig::load(Some(dir.path())).unwrap();
        assert!(matches!(c.lookup(DOCKER_HUB), Lookup::None));
        assert_eq!(c.path(), Some(dir.path().join("config.json").as_path()));
        assert!(matches!(
            DockerConfig::load(None).unwrap().lookup("x"),
            Lookup::None
        ));
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let c =
            config(r#"{"auths":{"r":{"auth":"dXNlcjpodW50ZXIy"},"s":{"identitytoken":"tok3n"}}}"#);
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("tok3n"),
            "{debug}"
        );
    }
}
