//! [`Registries`]: one HTTP client for every registry, the auth flows, and what they remember.
//!
//! A digest is asked with `HEAD /v2/<repository>/manifests/<tag>` and read from the
//! `Docker-Content-Digest` header; a registry that leaves the header out of `HEAD` answers is
//! asked again with `GET`, and the digest is the sha256 of the manifest's bytes (what the header
//! would have said). On a 401 the `WWW-Authenticate` challenge says how to authenticate:
//! `Bearer realm=…,service=…,scope=…` (the token flow: a token from the realm, with the
//! configured credentials or anonymously) or `Basic` (the configured user and password); the
//! request is then retried once.
//!
//! What is remembered, per [`Registries`]: how each registry asked to be authenticated, so later
//! requests to it authenticate up front (one `HEAD` per image, not two), and the tokens, until
//! shortly before they expire. Both sit behind `std::sync::Mutex`es held only to read or write a
//! map entry, never across an `.await`; two concurrent first requests may both fetch a token,
//! which is harmless.
//!
//! Transport rules: HTTPS (rustls with the system's roots), except plain HTTP for loopback
//! registries (127.0.0.0/8, `localhost`, `[::1]`, which the Docker engine treats as insecure by
//! default) and for the registries of [`RegistryOptions::insecure`] (names or CIDR ranges, as in
//! the engine's `insecure-registries`); a token realm follows the same rule. Plain HTTP is
//! never tried after HTTPS fails: that would let a network attacker downgrade the connection. Every request has a connect timeout and a total timeout. Redirects are followed
//! only within the same scheme, host and port, at most [`MAX_REDIRECTS`], so credentials never
//! travel to another host (reqwest would strip `Authorization` there anyway; refusing says so
//! instead of failing obscurely). Proxies from the environment are not used.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode, Url};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use super::RegistryError;
use super::challenge::{Auth, choose, parse_challenges, parse_token_answer};
use super::docker_config::{Credentials, DockerConfig, Lookup};
use super::reference::{ImageRef, Reference, parse_digest};
use crate::config::Secret;
use crate::untrusted::sanitize;

/// The manifest media types asked for, most specific first: an OCI index or a Docker manifest
/// list (multi-platform images, whose digest is what `docker pull` records), else a single
/// OCI or Docker v2 manifest.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Redirects followed within one origin.
pub const MAX_REDIRECTS: usize = 5;
/// The largest manifest read by the `GET` fallback (distribution's own limit is 4 MiB).
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// The largest token service answer read.
const MAX_TOKEN_ANSWER_BYTES: usize = 1024 * 1024;
/// A token is not used in its last moments, so it cannot expire on the way.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);

/// How registries are reached.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Registries reached over plain HTTP, like the engine's `insecure-registries`: a
    /// `host[:port]`, a `host` for all its ports, or a CIDR range of IP addresses. Loopback
    /// registries are always plain HTTP. [`engine_insecure_registries`] reads the engine's own
    /// list from `docker info`.
    pub insecure: Vec<String>,
    /// The most a TCP (and TLS) connection may take.
    pub connect_timeout: Duration,
    /// The most one request may take, from sending to the end of the answer.
    pub request_timeout: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Every registry, through one client: see the module documentation.
#[derive(Debug)]
pub struct Registries {
    client: reqwest::Client,
    config: DockerConfig,
    insecure: Vec<String>,
    /// How each registry (by `host[:port]`) last asked to be authenticated.
    schemes: Mutex<HashMap<String, Auth>>,
    tokens: Mutex<TokenCache>,
}

/// What a request carries, and on whose behalf, for the messages when it is refused.
struct Authorization {
    /// Marked sensitive: hyper keeps it out of debug output.
    header: Option<HeaderValue>,
    via: Via,
}

enum Via {
    /// Nothing configured; `helper` when a credential helper would have had something.
    Anonymous {
        helper: Option<(String, &'static str)>,
    },
    /// The configured credentials of `who`.
    Credentials { who: String },
}

impl Registries {
    /// A client for every registry, with `config`'s credentials.
    pub fn new(config: DockerConfig, options: RegistryOptions) -> Result<Self, RegistryError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("docker-cd/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .redirect(same_origin_redirects())
            // The agent's environment is not the children's; no proxy is taken from it.
            .no_proxy()
            .build()
            .map_err(RegistryError::Client)?;
        Ok(Self {
            client,
            config,
            insecure: options
                .insecure
                .iter()
                .map(|r| r.trim().to_ascii_lowercase())
                .filter(|r| !r.is_empty())
                .collect(),
            schemes: Mutex::new(HashMap::new()),
            tokens: Mutex::new(TokenCache::default()),
        })
    }

    /// Whether `registry` (`host[:port]`) is reached over plain HTTP: a loopback registry, or
    /// one [`RegistryOptions::insecure`] names (as `host[:port]`, `host`, or a CIDR range its
    /// IP address is in; host names are not resolved for that).
    pub fn is_plain_http(&self, registry: &str) -> bool {
        let registry = registry.to_ascii_lowercase();
        let host = host_of(&registry);
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        is_loopback(host)
            || self.insecure.iter().any(|entry| {
                *entry == registry || *entry == host || ip.is_some_and(|ip| in_cidr(ip, entry))
            })
    }

    /// The manifest digest `image`'s tag points at now (`sha256:…`). A digest reference is its
    /// own answer, without a request.
    #[tracing::instrument(skip_all, fields(image = %image))]
    pub async fn digest(&self, image: &ImageRef) -> Result<String, RegistryError> {
        let tag = match &image.reference {
            Reference::Digest(digest) => return Ok(digest.clone()),
            Reference::Tag(tag) => tag,
        };
        let scheme = if self.is_plain_http(&image.registry) {
            "http"
        } else {
            "https"
        };
        let url = format!(
            "{scheme}://{}/v2/{}/manifests/{tag}",
            image.registry, image.repository
        );
        let known = lock(&self.schemes).get(&image.registry).cloned();
        let mut authorization = match &known {
            Some(auth) => self.authorization(image, auth, false).await?,
            None => Authorization {
                header: None,
                via: Via::Anonymous { helper: None },
            },
        };
        let mut response = self
            .manifest(Method::HEAD, &url, &authorization, image)
            .await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let header = challenge_header(&response);
            let Some(auth) = choose(&parse_challenges(&header)) else {
                return Err(RegistryError::Challenge {
                    registry: image.registry.clone(),
                    image: image.to_string(),
                    challenges: match header.is_empty() {
                        true => "none".into(),
                        false => sanitize(&String::from_utf8_lossy(&header), 200),
                    },
                });
            };
            tracing::debug!(registry = %image.registry, challenge = ?auth, "registry asks for authentication");
            lock(&self.schemes).insert(image.registry.clone(), auth.clone());
            // What was sent (nothing, or a remembered token) did not do: fetch afresh.
            authorization = self.authorization(image, &auth, true).await?;
            response = self
                .manifest(Method::HEAD, &url, &authorization, image)
                .await?;
        }
        let status = response.status();
        tracing::debug!(registry = %image.registry, status = status.as_u16(), "manifest HEAD");
        match status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(self.refused(image, &authorization.via, status));
            }
            StatusCode::NOT_FOUND => {
                return Err(RegistryError::NotFound {
                    registry: image.registry.clone(),
                    image: image.to_string(),
                });
            }
            other => return Err(status_error(image, other)),
        }
        if let Some(digest) = content_digest(&response, image)? {
            return Ok(digest);
        }
        // No header on HEAD (some registries and proxies): the manifest's own bytes.
        tracing::debug!(registry = %image.registry, "no Docker-Content-Digest on HEAD; asking with GET");
        let response = self
            .manifest(Method::GET, &url, &authorization, image)
            .await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(self.refused(image, &authorization.via, response.status()));
            }
            other => return Err(status_error(image, other)),
        }
        if let Some(digest) = content_digest(&response, image)? {
            return Ok(digest);
        }
        let body = read_capped(response, MAX_MANIFEST_BYTES)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => RegistryError::ManifestTooLarge {
                    registry: image.registry.clone(),
                    image: image.to_string(),
                    limit: MAX_MANIFEST_BYTES,
                },
                ReadError::Http(source) => request_error(image, source),
            })?;
        Ok(format!("sha256:{}", hex::encode(Sha256::digest(&body))))
    }

    /// One manifest request with the Accept header of [`MANIFEST_MEDIA_TYPES`].
    async fn manifest(
        &self,
        method: Method,
        url: &str,
        authorization: &Authorization,
        image: &ImageRef,
    ) -> Result<Response, RegistryError> {
        let mut request = self
            .client
            .request(method, url)
            .header(ACCEPT, MANIFEST_MEDIA_TYPES.join(", "));
        if let Some(header) = &authorization.header {
            request = request.header(AUTHORIZATION, header.clone());
        }
        request
            .send()
            .await
            .map_err(|source| request_error(image, source))
    }

    /// The Authorization to answer `auth` with for `image`; `fresh` skips remembered tokens.
    async fn authorization(
        &self,
        image: &ImageRef,
        auth: &Auth,
        fresh: bool,
    ) -> Result<Authorization, RegistryError> {
        match auth {
            Auth::Basic => match self.config.lookup(&image.registry) {
                Lookup::Found(Credentials::Basic { username, password }) => {
                    let pair = format!("{username}:{}", password.expose());
                    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                    // Base64 is always a valid header value.
                    let header = sensitive(&format!("Basic {encoded}"))
                        .ok_or_else(|| self.bad_credentials(image, "they cannot be encoded"))?;
                    Ok(Authorization {
                        header: Some(header),
                        via: Via::Credentials {
                            who: username.clone(),
                        },
                    })
                }
                Lookup::Found(Credentials::IdentityToken(_)) => Err(self.bad_credentials(
                    image,
                    "it is an identity token, and the registry asks for a user and password",
                )),
                Lookup::Broken(why) => Err(self.bad_credentials(image, why)),
                Lookup::Helper { helper, field } => Err(self.helper_error(image, helper, field)),
                Lookup::None => Err(RegistryError::CredentialsMissing {
                    registry: image.registry.clone(),
                    image: image.to_string(),
                    config: self.config_name(),
                    status: 401,
                }),
            },
            Auth::Bearer { realm, service, .. } => {
                // The scope is always this repository's pull, as Docker's client asks (a
                // challenge's own scope may be a placeholder, as ghcr.io's on `/v2/`).
                let scope = format!("repository:{}:pull", image.repository);
                let key = TokenKey {
                    registry: image.registry.clone(),
                    realm: realm.clone(),
                    service: service.clone(),
                    scope,
                };
                let (credentials, via) = match self.config.lookup(&image.registry) {
                    Lookup::Found(credentials) => (
                        Some(credentials),
                        Via::Credentials {
                            who: credentials.who().to_owned(),
                        },
                    ),
                    Lookup::None => (None, Via::Anonymous { helper: None }),
                    // The token service may well let anyone pull: ask anonymously, and say
                    // that the helper is not supported if the registry then refuses.
                    Lookup::Helper { helper, field } => (
                        None,
                        Via::Anonymous {
                            helper: Some((helper.to_owned(), field)),
                        },
                    ),
                    Lookup::Broken(why) => return Err(self.bad_credentials(image, why)),
                };
                let now = Instant::now();
                let cached = match fresh {
                    true => None,
                    false => lock(&self.tokens).get(&key, now),
                };
                let token = match cached {
                    Some(token) => token,
                    None => {
                        let answer = self.fetch_token(image, &key, credentials, &via).await?;
                        let token = Secret::new(answer.token);
                        lock(&self.tokens).put(key, token.clone(), answer.lifetime, now);
                        token
                    }
                };
                // parse_token_answer admits only visible ASCII, so this always succeeds.
                let header = sensitive(&format!("Bearer {}", token.expose())).ok_or_else(|| {
                    RegistryError::Token {
                        registry: image.registry.clone(),
                        image: image.to_string(),
                        realm: sanitize(realm, 200),
                        what: "its token cannot be sent in an HTTP header".into(),
                    }
                })?;
                Ok(Authorization {
                    header: Some(header),
                    via,
                })
            }
        }
    }

    /// The token flow's token request: `GET <realm>?service=…&scope=…` with `Basic`
    /// credentials or none, or the OAuth2 `POST` with an identity token.
    async fn fetch_token(
        &self,
        image: &ImageRef,
        key: &TokenKey,
        credentials: Option<&Credentials>,
        via: &Via,
    ) -> Result<super::TokenAnswer, RegistryError> {
        let token_error = |what: String| RegistryError::Token {
            registry: image.registry.clone(),
            image: image.to_string(),
            realm: sanitize(&key.realm, 200),
            what,
        };
        let realm =
            Url::parse(&key.realm).map_err(|_| token_error("its realm is not a URL".into()))?;
        match realm.scheme() {
            "https" => {}
            "http" if self.is_plain_http(&authority(&realm)) => {}
            _ => {
                return Err(token_error(
                    "its realm is not an https:// URL (plain http only for loopback and insecure registries)"
                        .into(),
                ));
            }
        }
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = &key.service {
            query.push(("service", service));
        }
        query.push(("scope", &key.scope));
        let request = match credentials {
            Some(Credentials::IdentityToken(token)) => {
                query.push(("grant_type", "refresh_token"));
                query.push(("refresh_token", token.expose()));
                query.push(("client_id", "docker-cd"));
                self.client.post(realm).form(&query)
            }
            Some(Credentials::Basic { username, password }) => {
                query.push(("account", username));
                self.client
                    .get(realm)
                    .query(&query)
                    .basic_auth(username, Some(password.expose()))
            }
            None => self.client.get(realm).query(&query),
        };
        let response = request
            .send()
            .await
            .map_err(|source| request_error(image, source))?;
        let status = response.status();
        tracing::debug!(registry = %image.registry, status = status.as_u16(), "token request");
        let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
            || (status == StatusCode::BAD_REQUEST
                && matches!(credentials, Some(Credentials::IdentityToken(_))));
        if refused {
            return Err(self.refused(image, via, status));
        }
        if status != StatusCode::OK {
            return Err(token_error(format!("HTTP {}", status.as_u16())));
        }
        let body = read_capped(response, MAX_TOKEN_ANSWER_BYTES)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => token_error("its answer is too large".into()),
                ReadError::Http(source) => request_error(image, source),
            })?;
        parse_token_answer(&body).map_err(|what| token_error(what.into()))
    }

    /// The error for a refused request: whose credentials were refused, or that there were
    /// none (or only a helper's).
    fn refused(&self, image: &ImageRef, via: &Via, status: StatusCode) -> RegistryError {
        match via {
            Via::Credentials { who } => RegistryError::CredentialsRefused {
                registry: image.registry.clone(),
                image: image.to_string(),
                who: who.clone(),
                status: status.as_u16(),
            },
            Via::Anonymous {
                helper: Some((helper, field)),
            } => self.helper_error(image, helper, field),
            Via::Anonymous { helper: None } => RegistryError::CredentialsMissing {
                registry: image.registry.clone(),
                image: image.to_string(),
                config: self.config_name(),
                status: status.as_u16(),
            },
        }
    }

    fn helper_error(&self, image: &ImageRef, helper: &str, field: &'static str) -> RegistryError {
        RegistryError::HelperUnsupported {
            registry: image.registry.clone(),
            image: image.to_string(),
            config: self.config_name(),
            helper: sanitize(helper, 100),
            field,
        }
    }

    fn bad_credentials(&self, image: &ImageRef, why: &'static str) -> RegistryError {
        RegistryError::BadCredentials {
            registry: image.registry.clone(),
            image: image.to_string(),
            config: self.config_name(),
            why,
        }
    }

    fn config_name(&self) -> String {
        match self.config.path() {
            Some(path) => path.display().to_string(),
            None => "(none: neither DOCKER_CONFIG nor HOME is set)".into(),
        }
    }
}

/// Remembered tokens by what they were asked for, each until [`TOKEN_MARGIN`] before it
/// expires. Time is given, so the cache is tested without a clock.
#[derive(Debug, Default)]
struct TokenCache {
    tokens: HashMap<TokenKey, (Secret, Instant)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    registry: String,
    realm: String,
    service: Option<String>,
    scope: String,
}

impl TokenCache {
    fn get(&self, key: &TokenKey, now: Instant) -> Option<Secret> {
        self.tokens
            .get(key)
            .filter(|(_, until)| now < *until)
            .map(|(token, _)| token.clone())
    }

    fn put(&mut self, key: TokenKey, token: Secret, lifetime: Duration, now: Instant) {
        self.tokens.retain(|_, (_, until)| now < *until);
        let until = now + lifetime.saturating_sub(TOKEN_MARGIN);
        self.tokens.insert(key, (token, until));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps stay consistent whatever panicked while one was held (single inserts and reads).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A header value marked sensitive (hyper keeps it out of its debug output); `None` when the
/// text cannot be a header value.
fn sensitive(text: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(text).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// The values of every `WWW-Authenticate` header, joined by `, ` (RFC 7230 §3.2.2).
fn challenge_header(response: &Response) -> Vec<u8> {
    let mut joined = Vec::new();
    for value in response.headers().get_all(WWW_AUTHENTICATE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    joined
}

/// The `Docker-Content-Digest` header, checked; `None` when there is none.
fn content_digest(response: &Response, image: &ImageRef) -> Result<Option<String>, RegistryError> {
    let Some(value) = response.headers().get("docker-content-digest") else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    parse_digest(text.trim())
        .map(Some)
        .map_err(|_| RegistryError::BadDigest {
            registry: image.registry.clone(),
            image: image.to_string(),
            value: sanitize(&text, 150),
        })
}

fn status_error(image: &ImageRef, status: StatusCode) -> RegistryError {
    RegistryError::Status {
        registry: image.registry.clone(),
        image: image.to_string(),
        status: status.as_u16(),
        hint: match status.as_u16() {
            429 => " (rate limited: too many requests)",
            s if s >= 500 => " (a server error)",
            s if (300..400).contains(&s) => " (a redirect that was not followed)",
            _ => "",
        },
    }
}

fn request_error(image: &ImageRef, source: reqwest::Error) -> RegistryError {
    let what = if source.is_timeout() {
        "the request timed out"
    } else if source.is_redirect() {
        "a redirect was refused (only redirects within the registry's own host are followed)"
    } else if source.is_connect() {
        "cannot connect"
    } else if source.is_body() || source.is_decode() {
        "reading the answer failed"
    } else {
        "the request failed"
    };
    RegistryError::Request {
        registry: image.registry.clone(),
        image: image.to_string(),
        what,
        source,
    }
}

enum ReadError {
    TooLarge,
    Http(reqwest::Error),
}

/// The body, or [`ReadError::TooLarge`] as soon as it passes `limit` bytes.
async fn read_capped(mut response: Response, limit: usize) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Http)? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Follows a redirect only to the same scheme, host and port as the first request.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.follow();
        };
        let next = attempt.url();
        let same_origin = next.scheme() == first.scheme()
            && next.host_str() == first.host_str()
            && next.port_or_known_default() == first.port_or_known_default();
        if !same_origin {
            let to = format!("{}://{}", next.scheme(), authority(next));
            attempt.error(format!("a redirect to another origin ({to}) was refused"))
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else {
            attempt.follow()
        }
    })
}

/// `host[:port]` of a URL, as a registry is named.
fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// The host of `host[:port]` (`[::1]:5000` → `[::1]`).
fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry
            .split_once(']')
            .map_or(registry, |(h, _)| &registry[..=h.len()]);
    }
    registry.split_once(':').map_or(registry, |(host, _)| host)
}

/// Whether `ip` is in `cidr` (`10.0.0.0/8`, `fd00::/8`); `false` for anything else.
fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let Some((network, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(network), Ok(bits)) = (network.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

/// The registries the Docker engine reaches without TLS, from
/// `docker info --format '{{json .RegistryConfig}}'`, for [`RegistryOptions::insecure`]: its
/// `InsecureRegistryCIDRs` and the names of its `IndexConfigs` with `"Secure": false` (both
/// from `insecure-registries` in daemon.json). So docker-cd asks a registry the way the engine
/// that pulls from it does. Broken input gives an empty list (loopback is plain HTTP anyway).
///
/// ```text
/// {"IndexConfigs":{"docker.io":{"Mirrors":[],"Name":"docker.io","Official":true,"Secure":true},
///  "registry.lan:5000":{"Mirrors":[],"Name":"registry.lan:5000","Official":false,"Secure":false}},
///  "InsecureRegistryCIDRs":["10.0.0.0/8","127.0.0.0/8"],"Mirrors":[]}
/// ```
pub fn engine_insecure_registries(registry_config_json: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct RegistryConfig {
        #[serde(rename = "IndexConfigs", default)]
        index_configs: HashMap<String, IndexConfig>,
        #[serde(rename = "InsecureRegistryCIDRs", default)]
        insecure_cidrs: Option<Vec<String>>,
    }
    #[derive(serde::Deserialize)]
    struct IndexConfig {
        #[serde(rename = "Secure", default = "secure_by_default")]
        secure: bool,
    }
    fn secure_by_default() -> bool {
        true
    }
    let Ok(config) = serde_json::from_slice::<RegistryConfig>(registry_config_json) else {
        return Vec::new();
    };
    let mut insecure: Vec<String> = config
        .index_configs
        .into_iter()
        .filter(|(_, index)| !index.secure)
        .map(|(name, _)| name)
        .chain(config.insecure_cidrs.unwrap_or_default())
        .collect();
    insecure.sort();
    insecure
}

/// 127.0.0.0/8, `::1` and `localhost`: what the engine reaches without TLS by default.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registries(insecure: &[&str]) -> Registries {
        Registries::new(
            DockerConfig::default(),
            RegistryOptions {
                insecure: insecure.iter().map(|s| s.to_string()).collect(),
                ..RegistryOptions::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn loopback_registries_are_plain_http_and_others_https() {
        let r = registries(&[]);
        for plain in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost:5000",
            "LOCALHOST",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(r.is_plain_http(plain), "{plain}");
        }
        for tls in [
            "ghcr.io",
            "registry-1.docker.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:5000",
            "128.0.0.1",
        ] {
            assert!(!r.is_plain_http(tls), "{tls}");
        }
    }

    #[test]
    fn the_insecure_list_names_a_registry_or_a_host_for_all_its_ports() {
        let r = registries(&["registry.lan:5000", "Other.LAN"]);
        assert!(r.is_plain_http("registry.lan:5000"));
        assert!(!r.is_plain_http("registry.lan:5001"));
        assert!(!r.is_plain_http("registry.lan"));
        assert!(r.is_plain_http("other.lan"));
        assert!(r.is_plain_http("other.lan:8080"));
    }

    #[test]
    fn the_insecure_list_may_hold_cidr_ranges_of_ip_registries() {
        let r = registries(&["10.0.0.0/8", "fd00::/8", "192.168.1.7/32", "junk/99"]);
        assert!(r.is_plain_http("10.1.2.3:5000"));
        assert!(r.is_plain_http("[fd12::1]:5000"));
        assert!(r.is_plain_http("192.168.1.7"));
        assert!(!r.is_plain_http("192.168.1.8"));
        assert!(!r.is_plain_http("11.0.0.1:5000"));
        assert!(!r.is_plain_http("registry.lan:5000"));
        assert!(in_cidr("1.2.3.4".parse().unwrap(), "0.0.0.0/0"));
        assert!(!in_cidr("1.2.3.4".parse().unwrap(), "::/0"));
    }

    #[test]
    fn the_engines_insecure_registries_are_read_from_docker_info() {
        // `docker info --format '{{json .RegistryConfig}}'` of Docker 20.10 with
        // `"insecure-registries": ["registry.lan:5000", "10.0.0.0/8"]` in daemon.json.
        let info = br#"{"AllowNondistributableArtifactsCIDRs":[],"AllowNondistributableArtifactsHostnames":[],"IndexConfigs":{"docker.io":{"Name":"docker.io","Mirrors":[],"Secure":true,"Official":true},"registry.lan:5000":{"Name":"registry.lan:5000","Mirrors":[],"Secure":false,"Official":false}},"InsecureRegistryCIDRs":["10.0.0.0/8","127.0.0.0/8"],"Mirrors":[]}"#;
        assert_eq!(
            engine_insecure_registries(info),
            ["10.0.0.0/8", "127.0.0.0/8", "registry.lan:5000"]
        );
        // This machine's engine, with no insecure-registries configured.
        let default = br#"{"IndexConfigs":{"docker.io":{"Mirrors":[],"Name":"docker.io","Official":true,"Secure":true}},"InsecureRegistryCIDRs":["127.0.0.0/8"],"Mirrors":[]}"#;
        assert_eq!(engine_insecure_registries(default), ["127.0.0.0/8"]);
        assert!(engine_insecure_registries(b"null").is_empty());
        assert!(engine_insecure_registries(b"not json").is_empty());
        assert!(engine_insecure_registries(br#"{"InsecureRegistryCIDRs":null}"#).is_empty());
    }

    #[test]
    fn a_digest_call_can_run_on_any_tokio_worker() {
        fn assert_send<T: Send>(_: &T) {}
        let r = registries(&[]);
        let image = ImageRef::parse("nginx").unwrap();
        assert_send(&r.digest(&image));
        fn assert_sync<T: Send + Sync>() {}
        assert_sync::<Registries>();
    }

    #[test]
    fn hosts_are_cut_from_their_port() {
        assert_eq!(host_of("a.example:5000"), "a.example");
        assert_eq!(host_of("a.example"), "a.example");
        assert_eq!(host_of("[::1]:5000"), "[::1]");
        assert_eq!(host_of("[::1]"), "[::1]");
    }

    fn key(scope: &str) -> TokenKey {
        TokenKey {
            registry: "r".into(),
            realm: "https://r/token".into(),
            service: Some("r".into()),
            scope: scope.into(),
        }
    }

    #[test]
    fn a_token_is_remembered_until_shortly_before_it_expires() {
        let mut cache = TokenCache::default();
        let t0 = Instant::now();
        cache.put(key("a"), Secret::new("tok"), Duration::from_secs(60), t0);
        assert_eq!(
            cache.get(&key("a"), t0).map(|t| t.expose().to_owned()),
            Some("tok".into())
        );
        assert!(cache.get(&key("a"), t0 + Duration::from_secs(49)).is_some());
        assert!(cache.get(&key("a"), t0 + Duration::from_secs(50)).is_none());
        assert!(cache.get(&key("b"), t0).is_none());
    }

    #[test]
    fn expired_tokens_are_dropped_when_another_is_stored() {
        let mut cache = TokenCache::default();
        let t0 = Instant::now();
        cache.put(key("a"), Secret::new("1"), Duration::from_secs(60), t0);
        cache.put(
            key("b"),
            Secret::new("2"),
            Duration::from_secs(60),
            t0 + Duration::from_secs(120),
        );
        assert_eq!(cache.tokens.len(), 1);
    }
}
