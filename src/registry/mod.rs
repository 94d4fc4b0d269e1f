//! The registry adapter: asks a Docker registry (the distribution v2 API) which manifest a tag
//! points at now, for image updates (SPEC §12). Only manifests are asked for, never layers.
//!
//! | part | owns |
//! |---|---|
//! | `reference` | [`ImageRef`]: image references as compose files write them, normalised with Docker Hub's rules |
//! | `docker_config` | [`DockerConfig`]: credentials from the Docker client's `config.json` (`auths`; credential helpers unsupported) |
//! | `challenge` | pure parsers for `WWW-Authenticate` challenges and token service answers |
//! | `client` | [`Registries`]: the HTTP client, the auth flows (token and basic) and their caches |
//!
//! One [`Registries::digest`] call is one manifest `HEAD` (two when the registry first has to
//! say how it wants to be authenticated, plus a token request when the token flow needs a new
//! token); callers deduplicate by [`ImageRef::key`].
//!
//! Wiring: `Registries::new(DockerConfig::load(DockerConfig::dir(&config.child_env.vars)
//! .as_deref())?, options)`, so the adapter reads the `config.json` the docker children read;
//! `options.insecure` is best [`engine_insecure_registries`] of the engine's `docker info`, so
//! a registry is asked over plain HTTP exactly when the engine pulls from it that way.
//!
//! Uses [`config`](crate::config) (its [`Secret`](crate::config::Secret) type) and
//! [`untrusted`](crate::untrusted) (for text a registry sends), nothing else of the crate; it
//! reads no environment variable itself ([`DockerConfig::dir`] takes the children's environment
//! that `config` read). Every error names the registry and the image and says what happened,
//! never a password or a token.

use std::path::PathBuf;

mod challenge;
mod client;
mod docker_config;
mod reference;

pub use challenge::{Auth, Challenge, TokenAnswer, choose, parse_challenges, parse_token_answer};
pub use client::{MANIFEST_MEDIA_TYPES, Registries, RegistryOptions, engine_insecure_registries};
pub use docker_config::{Credentials, DockerConfig, Lookup};
pub use reference::{DOCKER_HUB, DOCKER_HUB_AUTH_KEY, ImageRef, Reference};

/// What went wrong asking a registry, or reading what it needs.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{image:?} is not an image reference: {why}")]
    InvalidReference { image: String, why: String },

    #[error("cannot read the Docker client config {}", path.display())]
    ConfigUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "the Docker client config {} is not valid JSON (line {line}, column {column})",
        path.display()
    )]
    ConfigInvalid {
        path: PathBuf,
        line: usize,
        column: usize,
    },

    #[error(
        "the credentials for registry {registry} in the Docker client config {config} cannot be used for {image}: {why}"
    )]
    BadCredentials {
        registry: String,
        image: String,
        config: String,
        why: &'static str,
    },

    #[error(
        "registry {registry} needs credentials for {image}, and the Docker client config {config} leaves them to the credential helper docker-credential-{helper} ({field}); docker-cd does not support credential helpers: put the credentials in its `auths` (e.g. `docker login` with a config that has no credsStore)"
    )]
    HelperUnsupported {
        registry: String,
        image: String,
        config: String,
        helper: String,
        field: &'static str,
    },

    #[error(
        "registry {registry} requires credentials for {image} (HTTP {status}), and the Docker client config {config} has none for it (or the repository does not exist)"
    )]
    CredentialsMissing {
        registry: String,
        image: String,
        config: String,
        status: u16,
    },

    #[error("registry {registry} refused the credentials of {who:?} for {image} (HTTP {status})")]
    CredentialsRefused {
        registry: String,
        image: String,
        who: String,
        status: u16,
    },

    #[error(
        "registry {registry} has no manifest for {image} (HTTP 404): no such tag or repository"
    )]
    NotFound { registry: String, image: String },

    #[error("registry {registry} answered HTTP {status} for {image}{hint}")]
    Status {
        registry: String,
        image: String,
        status: u16,
        hint: &'static str,
    },

    #[error("registry {registry} sent a malformed Docker-Content-Digest for {image}: {value:?}")]
    BadDigest {
        registry: String,
        image: String,
        value: String,
    },

    #[error("registry {registry} sent a manifest larger than {limit} bytes for {image}")]
    ManifestTooLarge {
        registry: String,
        image: String,
        limit: usize,
    },

    #[error(
        "registry {registry} answered HTTP 401 for {image} without a challenge docker-cd can answer (WWW-Authenticate: {challenges})"
    )]
    Challenge {
        registry: String,
        image: String,
        challenges: String,
    },

    #[error("the token service {realm} of registry {registry} failed for {image}: {what}")]
    Token {
        registry: String,
        image: String,
        realm: String,
        what: String,
    },

    #[error("asking registry {registry} for {image}: {what}")]
    Request {
        registry: String,
        image: String,
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },

    #[error("cannot set up the registry HTTP client")]
    Client(#[source] reqwest::Error),
}

impl RegistryError {
    /// The registry the error is about, when it is about one.
    pub fn registry(&self) -> Option<&str> {
        match self {
            Self::BadCredentials { registry, .. }
            | Self::HelperUnsupported { registry, .. }
            | Self::CredentialsMissing { registry, .. }
            | Self::CredentialsRefused { registry, .. }
            | Self::NotFound { registry, .. }
            | Self::Status { registry, .. }
            | Self::BadDigest { registry, .. }
            | Self::ManifestTooLarge { registry, .. }
            | Self::Challenge { registry, .. }
            | Self::Token { registry, .. }
            | Self::Request { registry, .. } => Some(registry),
            Self::InvalidReference { .. }
            | Self::ConfigUnreadable { .. }
            | Self::ConfigInvalid { .. }
            | Self::Client(_) => None,
        }
    }

    /// Whether credentials are the problem (missing, refused, unusable, in a helper): the
    /// operator's to fix, not worth a retry.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            Self::BadCredentials { .. }
                | Self::HelperUnsupported { .. }
                | Self::CredentialsMissing { .. }
                | Self::CredentialsRefused { .. }
        )
    }

    /// Whether asking again later may succeed (the network, a timeout, a registry's 5xx or
    /// 429).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Request { .. } => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}
