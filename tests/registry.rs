//! The registry adapter against a real registry (Debian's `docker-registry`, the CNCF
//! distribution registry 2.8) filled by the real `docker push`: plain, with htpasswd auth, and
//! with token auth from a token server of this test (ES256 JWTs the registry verifies against
//! the server's self-signed certificate). And against small fakes for what a real registry does
//! not show: a `HEAD` without a digest header, redirects, how many requests an image costs, a
//! registry that never answers.
//!
//! The real-registry tests need Docker, the test image and the `docker-registry` and
//! `apache2-utils` packages: they skip loudly without them, and fail under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine as _;
use common::docker::TEST_IMAGE;
use common::registry::{self, HTPASSWD_REALM, RegistryAuth, TestRegistry};
use docker_cd::registry::{
    Auth, DockerConfig, ImageRef, Registries, RegistryError, RegistryOptions, choose,
    parse_challenges,
};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

const USER: &str = "ci-bot";
const PASSWORD: &str = "s3cret-Passw0rd";
const WRONG_PASSWORD: &str = "not-the-Passw0rd";

/// A Docker client config directory holding `config`.
fn config_dir(config: serde_json::Value) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

fn registries_with(dir: Option<&Path>) -> Registries {
    Registries::new(DockerConfig::load(dir).unwrap(), RegistryOptions::default()).unwrap()
}

fn basic_auth(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

fn nonce() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{}", nanos, std::process::id())
}

/// Asserts `error` names the registry and the image, and never says `secret`.
fn assert_names(error: &RegistryError, host: &str, image: &str, secret: &str) {
    let text = docker_cd::error_chain(error);
    assert!(text.contains(&format!("registry {host}")), "{text}");
    assert!(text.contains(image), "{text}");
    assert!(!text.contains(secret), "{text}");
    let debug = format!("{error:?}");
    assert!(!debug.contains(secret), "{debug}");
}

// ---- a real registry -----------------------------------------------------------------------

#[tokio::test]
async fn the_digest_is_what_docker_push_recorded_and_follows_the_tag() {
    if !registry::require() {
        return;
    }
    let registry = TestRegistry::start(RegistryAuth::None).await;
    let first = registry.push(TEST_IMAGE, "team/app:1");
    let registries = registries_with(None);
    let image = ImageRef::parse(&registry.image("team/app:1")).unwrap();
    assert_eq!(registries.digest(&image).await.unwrap(), first);

    // A new image under the same tag: the tag now points at another manifest.
    let variant = registry.build_variant(TEST_IMAGE, &nonce());
    let second = registry.push(&variant, "team/app:1");
    assert_ne!(first, second);
    assert_eq!(registries.digest(&image).await.unwrap(), second);

    // An unknown tag, and an unknown repository.
    for missing in ["team/app:2", "team/other:1"] {
        let image = ImageRef::parse(&registry.image(missing)).unwrap();
        let error = registries.digest(&image).await.unwrap_err();
        assert!(matches!(error, RegistryError::NotFound { .. }), "{error:?}");
        assert_names(&error, &registry.host, missing, "\u{0}");
        assert!(error.to_string().contains("404"), "{error}");
    }

    // A digest reference is its own answer.
    let pinned = ImageRef::parse(&registry.image(&format!("team/app@{first}"))).unwrap();
    assert_eq!(registries.digest(&pinned).await.unwrap(), first);
}

#[tokio::test]
async fn htpasswd_credentials_from_config_json_are_used_and_refusals_name_the_registry() {
    if !registry::require() {
        return;
    }
    let registry = TestRegistry::start(RegistryAuth::Htpasswd {
        user: USER.into(),
        password: PASSWORD.into(),
    })
    .await;
    let digest = registry.push(TEST_IMAGE, "team/app:1");
    let image = ImageRef::parse(&registry.image("team/app:1")).unwrap();
    let host = registry.host.clone();

    // The challenge the unit tests of the parser quote.
    let head = reqwest::Client::new()
        .head(format!("http://{host}/v2/team/app/manifests/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 401);
    let challenge = head.headers()["www-authenticate"].to_str().unwrap();
    assert_eq!(challenge, format!("Basic realm=\"{HTPASSWD_REALM}\""));
    assert_eq!(
        choose(&parse_challenges(challenge.as_bytes())),
        Some(Auth::Basic)
    );

    // The config.json the real `docker login` wrote (the `auth` form).
    let login = registry.docker_login_config().unwrap();
    let written = std::fs::read_to_string(login.join("config.json")).unwrap();
    assert!(written.contains("\"auth\""), "{written}");
    assert_eq!(
        registries_with(Some(&login)).digest(&image).await.unwrap(),
        digest
    );

    // The username and password form.
    let dir = config_dir(json!({ "auths": { &host: { "username": USER, "password": PASSWORD } } }));
    assert_eq!(
        registries_with(Some(dir.path()))
            .digest(&image)
            .await
            .unwrap(),
        digest
    );

    // A wrong password.
    let dir =
        config_dir(json!({ "auths": { &host: { "auth": basic_auth(USER, WRONG_PASSWORD) } } }));
    let error = registries_with(Some(dir.path()))
        .digest(&image)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::CredentialsRefused { status: 401, .. }),
        "{error:?}"
    );
    assert!(error.is_auth());
    assert_names(&error, &host, "team/app:1", WRONG_PASSWORD);
    assert!(error.to_string().contains(USER), "{error}");

    // No credentials: no config at all, and a config for another registry.
    let other = config_dir(json!({ "auths": { "ghcr.io": { "auth": basic_auth("u", "p") } } }));
    for dir in [None, Some(other.path())] {
        let error = registries_with(dir).digest(&image).await.unwrap_err();
        assert!(
            matches!(error, RegistryError::CredentialsMissing { .. }),
            "{error:?}"
        );
        assert_names(&error, &host, "team/app:1", "\u{0}");
    }

    // Credentials left to a helper docker-cd cannot run.
    let helper = config_dir(json!({ "auths": { &host: {} }, "credsStore": "secretservice" }));
    let error = registries_with(Some(helper.path()))
        .digest(&image)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::HelperUnsupported { .. }),
        "{error:?}"
    );
    assert_names(&error, &host, "team/app:1", "\u{0}");
    let text = error.to_string();
    assert!(
        text.contains("docker-credential-secretservice") && text.contains("not support"),
        "{text}"
    );
}

// Multi-threaded: `docker push` blocks one thread while the token server answers on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_flow_against_a_real_registry() {
    if !registry::require() {
        return;
    }
    let tokens = TokenServer::start().await;
    let mut registry = TestRegistry::start(RegistryAuth::Token {
        realm: tokens.realm(),
        service: TOKEN_SERVICE.into(),
        issuer: TOKEN_ISSUER.into(),
        root_cert_pem: tokens.cert_pem.clone(),
    })
    .await;
    registry.set_login(USER, PASSWORD);
    // The real engine logs in and pushes through this token server: it issues real tokens.
    let digest = registry.push(TEST_IMAGE, "team/app:1");
    let image = ImageRef::parse(&registry.image("team/app:1")).unwrap();
    let host = registry.host.clone();

    // The registry's challenge, as distribution sends it.
    let head = reqwest::Client::new()
        .head(format!("http://{host}/v2/team/app/manifests/1"))
        .send()
        .await
        .unwrap();
    let challenge = head.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        choose(&parse_challenges(challenge.as_bytes())),
        Some(Auth::Bearer {
            realm: tokens.realm(),
            service: Some(TOKEN_SERVICE.into()),
            scope: Some("repository:team/app:pull".into()),
        }),
        "{challenge}"
    );

    // With credentials: one token, then the cached token (and no new 401 round trip).
    let dir = config_dir(json!({ "auths": { &host: { "auth": basic_auth(USER, PASSWORD) } } }));
    let registries = registries_with(Some(dir.path()));
    let before = tokens.issued();
    assert_eq!(registries.digest(&image).await.unwrap(), digest);
    assert_eq!(tokens.issued(), before + 1);
    assert_eq!(registries.digest(&image).await.unwrap(), digest);
    assert_eq!(tokens.issued(), before + 1, "the token was not reused");

    // Anonymous: the token server gives a token without access, the registry refuses it.
    let error = registries_with(None).digest(&image).await.unwrap_err();
    assert!(
        matches!(error, RegistryError::CredentialsMissing { .. }),
        "{error:?}"
    );
    assert_names(&error, &host, "team/app:1", "\u{0}");

    // A wrong password: the token server refuses it.
    let dir =
        config_dir(json!({ "auths": { &host: { "auth": basic_auth(USER, WRONG_PASSWORD) } } }));
    let error = registries_with(Some(dir.path()))
        .digest(&image)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::CredentialsRefused { .. }),
        "{error:?}"
    );
    assert_names(&error, &host, "team/app:1", WRONG_PASSWORD);

    // An identity token (OAuth2 refresh token), exchanged with a POST.
    let dir = config_dir(json!({ "auths": { &host: { "identitytoken": IDENTITY_TOKEN } } }));
    assert_eq!(
        registries_with(Some(dir.path()))
            .digest(&image)
            .await
            .unwrap(),
        digest
    );
    let dir = config_dir(json!({ "auths": { &host: { "identitytoken": "revoked" } } }));
    let error = registries_with(Some(dir.path()))
        .digest(&image)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::CredentialsRefused { .. }),
        "{error:?}"
    );
    assert_names(&error, &host, "team/app:1", "revoked");
}

// ---- the token server ----------------------------------------------------------------------

const TOKEN_SERVICE: &str = "docker-cd-test-registry";
const TOKEN_ISSUER: &str = "docker-cd-test-token-server";
const IDENTITY_TOKEN: &str = "identity-refresh-token-for-ci-bot";

/// distribution's token auth, served: `GET /token` with `Basic` credentials (or none: a token
/// without access, as Docker Hub gives for a private repository) and the OAuth2 `POST /token`
/// with a refresh token. Tokens are ES256 JWTs with the signing certificate in `x5c`; the
/// registry trusts that certificate as its `rootcertbundle`.
struct TokenServer {
    addr: String,
    cert_pem: String,
    issued: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct TokenState {
    key_der: Arc<Vec<u8>>,
    cert_b64: Arc<String>,
    issued: Arc<AtomicUsize>,
}

#[derive(serde::Serialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: Vec<Access>,
}

#[derive(serde::Serialize)]
struct Access {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

impl TokenServer {
    async fn start() -> Self {
        let certified =
            rcgen::generate_simple_self_signed(vec!["token.docker-cd.test".into()]).unwrap();
        let state = TokenState {
            key_der: Arc::new(certified.key_pair.serialize_der()),
            cert_b64: Arc::new(
                base64::engine::general_purpose::STANDARD.encode(certified.cert.der()),
            ),
            issued: Arc::new(AtomicUsize::new(0)),
        };
        let issued = state.issued.clone();
        let router = Router::new()
            .route("/token", get(token_get).post(token_post))
            .with_state(state);
        Self {
            addr: serve(router).await,
            cert_pem: certified.cert.pem(),
            issued,
        }
    }

    fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}

impl TokenState {
    /// A token for `subject` with `scopes` (`repository:team/app:pull,push`, space-separated
    /// lists too).
    fn token(&self, subject: &str, scopes: &[String]) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let access = scopes
            .iter()
            .flat_map(|s| s.split(' '))
            .filter_map(|scope| {
                let (kind, rest) = scope.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(Access {
                    kind: kind.into(),
                    name: name.into(),
                    actions: actions.split(',').map(str::to_owned).collect(),
                })
            })
            .collect();
        let claims = Claims {
            iss: TOKEN_ISSUER.into(),
            sub: subject.into(),
            aud: TOKEN_SERVICE.into(),
            exp: now + 300,
            nbf: now - 10,
            iat: now,
            jti: nonce(),
            access,
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.x5c = Some(vec![self.cert_b64.to_string()]);
        let key = jsonwebtoken::EncodingKey::from_ec_der(&self.key_der);
        self.issued.fetch_add(1, Ordering::SeqCst);
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }
}

async fn token_get(
    State(state): State<TokenState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap();
    let scopes: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .map(str::to_owned);
    let token = match presented {
        None => state.token("", &[]),
        Some(b64) if b64 == basic_auth(USER, PASSWORD) => state.token(USER, &scopes),
        Some(_) => {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({ "errors": [{ "code": "UNAUTHORIZED", "message": "invalid credentials" }] })),
            )
                .into_response();
        }
    };
    axum::Json(json!({ "token": token, "expires_in": 300, "issued_at": "2026-01-01T00:00:00Z" }))
        .into_response()
}

async fn token_post(State(state): State<TokenState>, body: String) -> Response {
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if field("grant_type") != Some("refresh_token")
        || field("refresh_token") != Some(IDENTITY_TOKEN)
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "invalid_grant" })),
        )
            .into_response();
    }
    let scopes: Vec<String> = field("scope").map(str::to_owned).into_iter().collect();
    let token = state.token(USER, &scopes);
    axum::Json(json!({ "access_token": token, "expires_in": 300, "scope": field("scope") }))
        .into_response()
}

// ---- fakes ---------------------------------------------------------------------------------

/// Serves `router` on 127.0.0.1 with a free port until the test's runtime ends.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// What a fake registry was asked: `METHOD path` lines, and the Authorization headers.
#[derive(Clone, Default)]
struct Recorder {
    requests: Arc<Mutex<Vec<String>>>,
    authorizations: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn record(&self, method: &Method, uri: &Uri, headers: &HeaderMap) {
        self.requests
            .lock()
            .unwrap()
            .push(format!("{method} {}", uri.path()));
        if let Some(a) = headers.get("authorization") {
            self.authorizations
                .lock()
                .unwrap()
                .push(a.to_str().unwrap().to_owned());
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn count(&self, prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with(prefix))
            .count()
    }
}

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;

#[tokio::test]
async fn a_registry_without_the_digest_header_on_head_is_asked_with_get() {
    let recorder = Recorder::default();
    let r = recorder.clone();
    let router = Router::new().route(
        "/v2/{*rest}",
        any(move |method: Method, uri: Uri, headers: HeaderMap| {
            let r = r.clone();
            async move {
                r.record(&method, &uri, &headers);
                let accept = headers["accept"].to_str().unwrap().to_owned();
                assert!(
                    accept.contains("application/vnd.oci.image.index.v1+json"),
                    "{accept}"
                );
                assert!(
                    accept.contains("application/vnd.docker.distribution.manifest.list.v2+json")
                );
                assert!(accept.contains("application/vnd.oci.image.manifest.v1+json"));
                assert!(accept.contains("application/vnd.docker.distribution.manifest.v2+json"));
                (
                    [("content-type", "application/vnd.oci.image.manifest.v1+json")],
                    MANIFEST,
                )
            }
        }),
    );
    let host = serve(router).await;
    let image = ImageRef::parse(&format!("{host}/team/app:1")).unwrap();
    let digest = registries_with(None).digest(&image).await.unwrap();
    assert_eq!(
        digest,
        format!("sha256:{}", hex::encode(Sha256::digest(MANIFEST)))
    );
    assert_eq!(
        recorder.requests(),
        [
            "HEAD /v2/team/app/manifests/1",
            "GET /v2/team/app/manifests/1"
        ]
    );
}

/// A fake registry with the token flow: manifests need `Bearer good-<repository>`, which
/// `/token` gives for the scope asked. Counts every request.
async fn fake_bearer_registry() -> (String, Recorder) {
    let recorder = Recorder::default();
    let r = recorder.clone();
    let t = recorder.clone();
    let host_cell: Arc<Mutex<String>> = Arc::default();
    let realm_host = host_cell.clone();
    let router = Router::new()
        .route(
            "/v2/{*rest}",
            any(move |method: Method, uri: Uri, headers: HeaderMap| {
                let (r, realm_host) = (r.clone(), realm_host.clone());
                async move {
                    r.record(&method, &uri, &headers);
                    let path = uri.path().to_owned();
                    let repository = path
                        .trim_start_matches("/v2/")
                        .split("/manifests/")
                        .next()
                        .unwrap()
                        .to_owned();
                    let wanted = format!("Bearer good-{repository}");
                    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&wanted)
                    {
                        let challenge = format!(
                            "Bearer realm=\"http://{}/token\",service=\"fake\",scope=\"repository:{repository}:pull\"",
                            realm_host.lock().unwrap()
                        );
                        return (StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)])
                            .into_response();
                    }
                    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&path)));
                    [("docker-content-digest", digest)].into_response()
                }
            }),
        )
        .route(
            "/token",
            get(move |method: Method, uri: Uri, headers: HeaderMap, RawQuery(q): RawQuery| {
                let t = t.clone();
                async move {
                    t.record(&method, &uri, &headers);
                    let q: BTreeMap<String, String> =
                        serde_urlencoded::from_str(q.as_deref().unwrap_or_default()).unwrap();
                    assert_eq!(q.get("service").map(String::as_str), Some("fake"));
                    let scope = &q["scope"];
                    let repository = scope
                        .trim_start_matches("repository:")
                        .trim_end_matches(":pull");
                    axum::Json(json!({ "token": format!("good-{repository}"), "expires_in": 300 }))
                }
            }),
        );
    let host = serve(router).await;
    *host_cell.lock().unwrap() = host.clone();
    (host, recorder)
}

#[tokio::test]
async fn after_the_first_challenge_an_image_costs_one_manifest_request() {
    let (host, recorder) = fake_bearer_registry().await;
    let registries = registries_with(None);
    let image = |s: &str| ImageRef::parse(&format!("{host}/{s}")).unwrap();

    // The first image: HEAD (401), the token, HEAD.
    registries.digest(&image("team/app:1")).await.unwrap();
    assert_eq!(recorder.count("HEAD"), 2);
    assert_eq!(recorder.count("GET /token"), 1);

    // Another tag of the same repository: the token is reused, one HEAD.
    registries.digest(&image("team/app:2")).await.unwrap();
    assert_eq!(recorder.count("HEAD"), 3);
    assert_eq!(recorder.count("GET /token"), 1);

    // Another repository: a token for its scope up front, then one HEAD (no 401).
    registries.digest(&image("team/web:1")).await.unwrap();
    assert_eq!(recorder.count("HEAD"), 4);
    assert_eq!(recorder.count("GET /token"), 2);

    // Ten images, each asked once: ten manifest requests.
    let before = recorder.count("HEAD");
    for i in 0..10 {
        registries
            .digest(&image(&format!("team/app:{i}")))
            .await
            .unwrap();
    }
    assert_eq!(recorder.count("HEAD") - before, 10);
    assert_eq!(recorder.count("GET /v2"), 0, "no manifest was downloaded");
}

#[tokio::test]
async fn redirects_stay_on_the_registry_host_and_credentials_never_leave_it() {
    let elsewhere = Recorder::default();
    let e = elsewhere.clone();
    let other_host = serve(Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap| {
            let e = e.clone();
            async move {
                e.record(&method, &uri, &headers);
                [(
                    "docker-content-digest",
                    format!("sha256:{}", "e".repeat(64)),
                )]
            }
        },
    ))
    .await;
    let home = Recorder::default();
    let h = home.clone();
    let redirect_to = other_host.clone();
    let router = Router::new().route(
        "/v2/{*rest}",
        any(move |method: Method, uri: Uri, headers: HeaderMap| {
            let (h, other_host) = (h.clone(), redirect_to.clone());
            async move {
                h.record(&method, &uri, &headers);
                if headers.get("authorization").is_none() {
                    return (
                        StatusCode::UNAUTHORIZED,
                        [("www-authenticate", "Basic realm=\"x\"".to_owned())],
                    )
                        .into_response();
                }
                let location = match uri.path() {
                    "/v2/team/app/manifests/moved" => "/v2/team/app/manifests/here".to_owned(),
                    "/v2/team/app/manifests/here" => {
                        return [(
                            "docker-content-digest",
                            format!("sha256:{}", "a".repeat(64)),
                        )]
                        .into_response();
                    }
                    path => format!("http://{other_host}{path}"),
                };
                (StatusCode::TEMPORARY_REDIRECT, [("location", location)]).into_response()
            }
        }),
    );
    let host = serve(router).await;
    let dir = config_dir(json!({ "auths": { &host: { "username": USER, "password": PASSWORD } } }));
    let registries = registries_with(Some(dir.path()));

    // Within the registry's own origin, a redirect is followed.
    let moved = ImageRef::parse(&format!("{host}/team/app:moved")).unwrap();
    assert_eq!(
        registries.digest(&moved).await.unwrap(),
        format!("sha256:{}", "a".repeat(64))
    );

    // To another origin (another port of 127.0.0.1 is one), it is refused.
    let away = ImageRef::parse(&format!("{host}/team/app:away")).unwrap();
    let error = registries.digest(&away).await.unwrap_err();
    assert!(matches!(error, RegistryError::Request { .. }), "{error:?}");
    let text = docker_cd::error_chain(&error);
    assert!(
        text.contains("redirect") && text.contains(&other_host),
        "{text}"
    );
    assert_names(&error, &host, "team/app:away", PASSWORD);
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
    assert!(
        home.authorizations
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == &format!("Basic {}", basic_auth(USER, PASSWORD)))
    );
}

#[tokio::test]
async fn a_registry_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    // Accepts connections and holds them, silent.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let registries = Registries::new(
        DockerConfig::default(),
        RegistryOptions {
            request_timeout: Duration::from_millis(300),
            ..RegistryOptions::default()
        },
    )
    .unwrap();
    let image = ImageRef::parse(&format!("{host}/team/app:1")).unwrap();
    let started = std::time::Instant::now();
    let error = registries.digest(&image).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(error.is_transient());
    let text = error.to_string();
    assert!(text.contains("timed out") && text.contains(&host), "{text}");
}
