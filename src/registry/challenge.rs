//! What a registry says about authentication, parsed: the `WWW-Authenticate` challenges of a 401
//! answer ([`parse_challenges`], [`choose`]) and a token service's JSON answer
//! ([`parse_token_answer`]).
//!
//! Pure: bytes in, typed values out. The grammar is RFC 7235's:
//!
//! ```text
//! WWW-Authenticate = 1#challenge
//! challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param       = token BWS "=" BWS ( token / quoted-string )
//! ```
//!
//! Registries send one header with one challenge (`Bearer realm="…",service="…",scope="…"` or
//! `Basic realm="…"`), but a header may hold several challenges and a quoted value may hold
//! commas (`scope="repository:a/b:pull,push"`), so a new challenge is told from the next
//! parameter by the `=` after a parameter's name.

use std::time::Duration;

/// One challenge: the scheme, lower-cased, and its parameters (names lower-cased, values as
/// sent, quotes and escapes removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// A parameter's value by (case-insensitive) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How a registry wants to be answered, from its challenges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Auth {
    /// The token flow: a token from `realm` for `service` and `scope`, then `Bearer <token>`.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// `Authorization: Basic` with the configured user and password.
    Basic,
}

/// Every challenge in the values of a response's `WWW-Authenticate` headers, in order. Broken
/// input yields the challenges that could be read before the break.
pub fn parse_challenges(header: &[u8]) -> Vec<Challenge> {
    let mut p = Cursor { s: header, i: 0 };
    let mut challenges = Vec::new();
    loop {
        p.skip(|b| b == b',' || is_space(b));
        if p.at_end() {
            break;
        }
        let scheme = p.token();
        if scheme.is_empty() {
            // Not a challenge: the rest cannot be told apart reliably.
            break;
        }
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        loop {
            p.skip(is_space);
            let before = p.i;
            let name = p.token();
            p.skip(is_space);
            if name.is_empty() || p.peek() != Some(b'=') {
                // The next challenge's scheme.
                p.i = before;
                break;
            }
            p.i += 1;
            p.skip(is_space);
            if matches!(p.peek(), None | Some(b',' | b'=')) {
                // A token68 (`YIIB0gYGKwYBBQUCoII=`), which registries never send: skipped.
                p.skip(|b| b == b'=' || is_space(b));
                match p.peek() {
                    Some(b',') => {
                        p.i += 1;
                        continue;
                    }
                    _ => break,
                }
            }
            let value = if p.peek() == Some(b'"') {
                match p.quoted() {
                    Some(v) => v,
                    None => {
                        // Unterminated quote: keep what came before it.
                        challenges.push(challenge);
                        return challenges;
                    }
                }
            } else {
                p.token().to_owned()
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
            p.skip(is_space);
            match p.peek() {
                Some(b',') => {
                    p.i += 1;
                }
                None => break,
                Some(_) => {
                    // Garbage after a value: stop here.
                    challenges.push(challenge);
                    return challenges;
                }
            }
        }
        challenges.push(challenge);
    }
    challenges
}

/// The challenge to answer: a `Bearer` one with a realm first (what Docker does), else `Basic`.
pub fn choose(challenges: &[Challenge]) -> Option<Auth> {
    let bearer = challenges.iter().find_map(|c| {
        let realm = c.param("realm").filter(|r| !r.is_empty());
        (c.scheme == "bearer")
            .then_some(realm)
            .flatten()
            .map(|realm| Auth::Bearer {
                realm: realm.to_owned(),
                service: c.param("service").map(str::to_owned),
                scope: c.param("scope").map(str::to_owned),
            })
    });
    bearer.or_else(|| {
        challenges
            .iter()
            .any(|c| c.scheme == "basic")
            .then_some(Auth::Basic)
    })
}

/// A token service's answer (distribution's token spec, and OAuth2's for the POST form).
#[derive(Debug, PartialEq, Eq)]
pub struct TokenAnswer {
    pub token: String,
    /// How long the token may be used: `expires_in`, 60 s when left out or shorter (the spec's
    /// minimum, as Docker does), at most an hour.
    pub lifetime: Duration,
}

/// The spec's default and minimum token lifetime.
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A cap, so a token service's odd value cannot keep a token for days.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Reads `{"token": "…", "access_token": "…", "expires_in": 300, "issued_at": "…"}`.
/// `access_token` wins when both are there, as in Docker's client; one of them must be a
/// non-empty string. The error says what was wrong, never what the body held.
pub fn parse_token_answer(body: &[u8]) -> Result<TokenAnswer, &'static str> {
    #[derive(serde::Deserialize)]
    struct Raw {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<serde_json::Value>,
    }
    let raw: Raw = serde_json::from_slice(body)
        .map_err(|_| "its answer is not a JSON object with `token` or `access_token`")?;
    let token = raw
        .access_token
        .filter(|t| !t.is_empty())
        .or(raw.token.filter(|t| !t.is_empty()))
        .ok_or("its answer has no `token` or `access_token`")?;
    if token.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err("its token has characters an Authorization header cannot carry");
    }
    let seconds = raw
        .expires_in
        .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64)))
        .unwrap_or(0);
    let lifetime = Duration::from_secs(seconds).clamp(MIN_TOKEN_LIFETIME, MAX_TOKEN_LIFETIME);
    Ok(TokenAnswer { token, lifetime })
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip(&mut self, what: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&what) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> &'a str {
        let start = self.i;
        self.skip(is_tchar);
        // tchar is ASCII, so the slice is valid UTF-8.
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default()
    }

    /// A quoted-string from its opening quote; `None` when it never closes.
    fn quoted(&mut self) -> Option<String> {
        self.i += 1;
        let mut value = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => return Some(String::from_utf8_lossy(&value).into_owned()),
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        value.push(escaped);
                        self.i += 1;
                    }
                }
                _ => value.push(b),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(c: &Challenge) -> Vec<(&str, &str)> {
        c.params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn one(header: &str) -> Challenge {
        let mut all = parse_challenges(header.as_bytes());
        assert_eq!(all.len(), 1, "{header}: {all:?}");
        all.remove(0)
    }

    // Captured answers of real registries to a manifest or /v2/ request without credentials.

    /// Docker Hub, a private repository with an anonymous token (Stack Overflow question
    /// 62011345, "Download manifest of private repository from Docker Registry API").
    const DOCKER_HUB_PRIVATE: &str = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:ourcompany/ourrepo:pull",error="insufficient_scope""#;
    /// Docker Hub, `GET /v2/_catalog` (forums.docker.com, "Registry V2 Catalog").
    const DOCKER_HUB_CATALOG: &str = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="registry:catalog:*""#;
    /// GitHub's ghcr.io, lower-case header name as HTTP/2 sends it.
    const GHCR: &str = r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:user/image:pull""#;
    /// GitLab.com's registry on `/v2/` (deitch/docker_registry2 issue 14): no scope.
    const GITLAB: &str =
        r#"Bearer realm="https://gitlab.com/jwt/auth",service="container_registry""#;
    /// A self-managed GitLab (fraunhoferfokus/deckschrubber issue 26).
    const GITLAB_CATALOG: &str = r#"Bearer realm="https://ourgitlab.com/jwt/auth",service="container_registry",scope="registry:catalog:*""#;
    /// Harbor 2.x on `/v2/` (a blog post's curl trace): no scope.
    const HARBOR: &str =
        r#"Bearer realm="https://ygt.harbor.csse/service/token",service="harbor-registry""#;
    /// The CNCF distribution registry 2.8.2 (Debian's docker-registry) with `auth: htpasswd`,
    /// captured from the test registry of tests/registry.rs.
    const DISTRIBUTION_HTPASSWD: &str = r#"Basic realm="docker-cd-test""#;

    #[test]
    fn docker_hub_challenges_are_read_with_their_error() {
        let c = one(DOCKER_HUB_PRIVATE);
        assert_eq!(c.scheme, "bearer");
        assert_eq!(
            params(&c),
            [
                ("realm", "https://auth.docker.io/token"),
                ("service", "registry.docker.io"),
                ("scope", "repository:ourcompany/ourrepo:pull"),
                ("error", "insufficient_scope"),
            ]
        );
        assert_eq!(
            choose(&[c]),
            Some(Auth::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:ourcompany/ourrepo:pull".into()),
            })
        );
        assert_eq!(
            one(DOCKER_HUB_CATALOG).param("scope"),
            Some("registry:catalog:*")
        );
    }

    #[test]
    fn ghcr_gitlab_and_harbor_challenges_are_read() {
        assert_eq!(
            params(&one(GHCR)),
            [
                ("realm", "https://ghcr.io/token"),
                ("service", "ghcr.io"),
                ("scope", "repository:user/image:pull"),
            ]
        );
        for (header, realm, service) in [
            (GITLAB, "https://gitlab.com/jwt/auth", "container_registry"),
            (
                GITLAB_CATALOG,
                "https://ourgitlab.com/jwt/auth",
                "container_registry",
            ),
            (
                HARBOR,
                "https://ygt.harbor.csse/service/token",
                "harbor-registry",
            ),
        ] {
            let c = one(header);
            assert_eq!(c.param("realm"), Some(realm), "{header}");
            assert_eq!(c.param("service"), Some(service), "{header}");
        }
        assert_eq!(
            choose(&parse_challenges(HARBOR.as_bytes())),
            Some(Auth::Bearer {
                realm: "https://ygt.harbor.csse/service/token".into(),
                service: Some("harbor-registry".into()),
                scope: None,
            })
        );
    }

    #[test]
    fn the_distribution_htpasswd_challenge_is_basic() {
        let c = one(DISTRIBUTION_HTPASSWD);
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.param("realm"), Some("docker-cd-test"));
        assert_eq!(choose(&[c]), Some(Auth::Basic));
    }

    #[test]
    fn a_comma_inside_quotes_belongs_to_the_value() {
        let c = one(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        );
        assert_eq!(
            c.param("scope"),
            Some("repository:samalba/my-app:pull,push")
        );
    }

    #[test]
    fn several_challenges_in_one_header_are_told_apart_and_bearer_wins() {
        let all = parse_challenges(
            br#"Basic realm="Registry Realm", Bearer realm="https://r.example/token", service="r.example""#,
        );
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].scheme, "basic");
        assert_eq!(all[1].param("service"), Some("r.example"));
        assert!(matches!(choose(&all), Some(Auth::Bearer { .. })));
    }

    #[test]
    fn schemes_and_names_are_case_insensitive_and_spaces_are_allowed() {
        let c = one(r#"BEARER Realm = "https://x/token" , Service=svc"#);
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://x/token"));
        assert_eq!(c.param("SERVICE"), Some("svc"));
    }

    #[test]
    fn escapes_in_quoted_values_are_undone() {
        let c = one(r#"Basic realm="say \"hi\" \\ there""#);
        assert_eq!(c.param("realm"), Some(r#"say "hi" \ there"#));
    }

    #[test]
    fn a_token68_challenge_is_skipped_and_the_next_one_read() {
        let all = parse_challenges(b"Negotiate YIIB0gYGKwYBBQUCoII=, Basic realm=\"x\"");
        let schemes: Vec<&str> = all.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["negotiate", "basic"]);
    }

    #[test]
    fn broken_headers_give_what_could_be_read() {
        assert!(parse_challenges(b"").is_empty());
        assert!(parse_challenges(b"   ,  ").is_empty());
        assert!(parse_challenges(b"\"oops").is_empty());
        let c = parse_challenges(br#"Bearer realm="https://x/token",service="unterminated"#);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].param("realm"), Some("https://x/token"));
        assert_eq!(c[0].param("service"), None);
        let c = parse_challenges(br#"Bearer realm="a" junk"#);
        assert_eq!(c[0].param("realm"), Some("a"));
    }

    #[test]
    fn a_bearer_without_a_realm_or_an_unknown_scheme_cannot_be_answered() {
        assert_eq!(choose(&parse_challenges(b"Bearer service=\"x\"")), None);
        assert_eq!(choose(&parse_challenges(b"Bearer realm=\"\"")), None);
        assert_eq!(
            choose(&parse_challenges(b"Digest realm=\"x\", nonce=\"y\"")),
            None
        );
        assert_eq!(choose(&[]), None);
    }

    #[test]
    fn a_docker_hub_token_answer_is_read() {
        // The shape auth.docker.io answers with (token elided).
        let body = br#"{"token":"eyJhbGciOiJFUzI1NiJ9.e30.sig","access_token":"eyJhbGciOiJFUzI1NiJ9.e30.sig","expires_in":300,"issued_at":"2024-06-01T10:00:00.123456789Z"}"#;
        assert_eq!(
            parse_token_answer(body),
            Ok(TokenAnswer {
                token: "eyJhbGciOiJFUzI1NiJ9.e30.sig".into(),
                lifetime: Duration::from_secs(300),
            })
        );
    }

    #[test]
    fn either_token_field_is_accepted_and_access_token_wins() {
        assert_eq!(parse_token_answer(br#"{"token":"a"}"#).unwrap().token, "a");
        assert_eq!(
            parse_token_answer(br#"{"access_token":"b"}"#)
                .unwrap()
                .token,
            "b"
        );
        assert_eq!(
            parse_token_answer(br#"{"token":"a","access_token":"b"}"#)
                .unwrap()
                .token,
            "b"
        );
        assert_eq!(
            parse_token_answer(br#"{"token":"a","access_token":""}"#)
                .unwrap()
                .token,
            "a"
        );
    }

    #[test]
    fn token_lifetimes_default_to_a_minute_and_are_bounded() {
        let life = |body: &[u8]| parse_token_answer(body).unwrap().lifetime.as_secs();
        assert_eq!(life(br#"{"token":"a"}"#), 60);
        assert_eq!(life(br#"{"token":"a","expires_in":10}"#), 60);
        assert_eq!(life(br#"{"token":"a","expires_in":1800}"#), 1800);
        assert_eq!(life(br#"{"token":"a","expires_in":1e12}"#), 3600);
        assert_eq!(life(br#"{"token":"a","expires_in":-5}"#), 60);
        assert_eq!(life(br#"{"token":"a","expires_in":"300"}"#), 60);
    }

    #[test]
    fn broken_token_answers_are_refused_without_echoing_them() {
        for body in [
            &b""[..],
            b"<html>nope</html>",
            b"[]",
            br#"{"token":""}"#,
            br#"{"token":null}"#,
            br#"{"token":"has space"}"#,
            br#"{"token":"line\nbreak"}"#,
        ] {
            let e = parse_token_answer(body).unwrap_err();
            assert!(!e.contains("nope") && !e.contains("space"), "{e}");
        }
    }
}
