//! Image references as compose files write them, normalised the way the Docker engine does
//! (distribution's `reference.ParseNormalizedNamed`): the registry host, the repository path and
//! a tag or a digest.
//!
//! Pure: text in, [`ImageRef`] out.

use std::fmt;

use super::RegistryError;

/// The host Docker Hub's registry API answers on.
pub const DOCKER_HUB: &str = "registry-1.docker.io";
/// The key `docker login` writes Docker Hub's credentials under in `config.json`.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// The longest repository name the distribution registry accepts (host included).
const MAX_NAME_LEN: usize = 255;
/// The longest tag (`[\w][\w.-]{0,127}`).
const MAX_TAG_LEN: usize = 128;

/// What an image reference points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A tag (`latest`, `1.27`), which a registry may move to another manifest.
    Tag(String),
    /// A manifest digest (`sha256:<64 hex>`): immutable, nothing to check.
    Digest(String),
}

/// An image reference: `nginx`, `nginx:1.27`, `ghcr.io/org/app:tag`,
/// `127.0.0.1:5000/team/web:latest`, `repo@sha256:…`.
///
/// Docker Hub's rules apply: without a registry host the registry is [`DOCKER_HUB`] (its
/// credentials are under [`DOCKER_HUB_AUTH_KEY`]) and a one-component repository gets `library/`;
/// the tag defaults to `latest`. A first component is a host when it has a `.` or a `:`, is
/// `localhost`, or has upper-case letters (which a repository cannot have).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// `host[:port]`, lower-case: where the registry API is (`registry-1.docker.io`, `ghcr.io`,
    /// `127.0.0.1:5000`, `[::1]:5000`).
    pub registry: String,
    /// The repository path in that registry (`library/nginx`, `org/app`).
    pub repository: String,
    pub reference: Reference,
}

impl ImageRef {
    /// Parses an image reference. A reference with both a tag and a digest (`app:1@sha256:…`) is
    /// a digest, as for the engine, which ignores the tag then.
    pub fn parse(image: &str) -> Result<Self, RegistryError> {
        parse(image).map_err(|why| RegistryError::InvalidReference {
            image: crate::untrusted::sanitize(image, 300),
            why,
        })
    }

    /// What identifies the manifest request: two references with the same key are answered by
    /// the same request (`nginx` and `docker.io/library/nginx:latest` share one).
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// The tag, unless the reference is a digest.
    pub fn tag(&self) -> Option<&str> {
        match &self.reference {
            Reference::Tag(tag) => Some(tag),
            Reference::Digest(_) => None,
        }
    }

    /// Whether the registry is Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB
    }
}

/// `registry/repository:tag` or `registry/repository@digest`, fully normalised.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            Reference::Tag(tag) => write!(f, "{}/{}:{tag}", self.registry, self.repository),
            Reference::Digest(digest) => {
                write!(f, "{}/{}@{digest}", self.registry, self.repository)
            }
        }
    }
}

fn parse(image: &str) -> Result<ImageRef, String> {
    if image.is_empty() {
        return Err("it is empty".into());
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it has white space or control characters".into());
    }
    if image.contains("${") || image.starts_with('$') || image.contains("/$") {
        return Err("it has an unresolved variable".into());
    }
    let (name_and_tag, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(parse_digest(digest)?)),
        None => (image, None),
    };
    // A tag is after the last `:` that follows the last `/` (a `:` before it is a port).
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
        Some(i) => {
            let at = last_slash + i;
            (&name_and_tag[..at], Some(&name_and_tag[at + 1..]))
        }
        None => (name_and_tag, None),
    };
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    let (host, path) = split_host(name);
    let path = match host {
        Some(host) => {
            check_host(host)?;
            path
        }
        None => path,
    };
    if path.is_empty() {
        return Err("it has no repository name".into());
    }
    for component in path.split('/') {
        check_component(component)?;
    }
    let host = host.map(str::to_ascii_lowercase);
    let (registry, repository) = match host.as_deref() {
        None | Some("docker.io" | "index.docker.io") => {
            let repository = if path.contains('/') {
                path.to_owned()
            } else {
                format!("library/{path}")
            };
            (DOCKER_HUB.to_owned(), repository)
        }
        Some(host) => (host.to_owned(), path.to_owned()),
    };
    if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
        return Err(format!("its name is longer than {MAX_NAME_LEN} characters"));
    }
    let reference = match (digest, tag) {
        (Some(digest), _) => Reference::Digest(digest),
        (None, Some(tag)) => Reference::Tag(tag.to_owned()),
        (None, None) => Reference::Tag("latest".to_owned()),
    };
    Ok(ImageRef {
        registry,
        repository,
        reference,
    })
}

/// Splits `host/path` when the first component is a host (see [`ImageRef`]).
fn split_host(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// `host[:port]`: DNS labels of letters, digits and `-`, or an IPv6 address in brackets.
fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => {
            let Some((v6, after)) = rest.split_once(']') else {
                return Err(format!("its registry host {host:?} has an unclosed `[`"));
            };
            if v6.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("its registry host {host:?} is not an IPv6 address"));
            }
            match after {
                "" => (None, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (None, Some(port)),
                    None => return Err(format!("its registry host {host:?} is malformed")),
                },
            }
        }
        None => match host.split_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        },
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("its registry host {host:?} has an invalid port"));
        }
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.is_some_and(|name| !name.split('.').all(label_ok)) {
        return Err(format!("its registry host {host:?} is not a host name"));
    }
    Ok(())
}

/// A path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn check_component(component: &str) -> Result<(), String> {
    if component.is_empty() {
        return Err("its repository path has an empty component".into());
    }
    if component.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("repository names must be lower-case".into());
    }
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    let mut expect_alnum = true;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            expect_alnum = false;
            i += 1;
            continue;
        }
        if expect_alnum {
            return Err(format!(
                "its repository path component {component:?} has a separator in the wrong place"
            ));
        }
        // A separator: `.`, `_`, `__` or a run of `-`.
        let run = match b {
            b'.' => 1,
            b'_' if bytes.get(i + 1) == Some(&b'_') => 2,
            b'_' => 1,
            b'-' => bytes[i..].iter().take_while(|&&c| c == b'-').count(),
            _ => {
                return Err(format!(
                    "its repository path component {component:?} has a character other than a-z, 0-9, `.`, `_` and `-`"
                ));
            }
        };
        i += run;
        expect_alnum = true;
    }
    if expect_alnum {
        return Err(format!(
            "its repository path component {component:?} ends with a separator"
        ));
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = match tag.as_bytes() {
        [] => false,
        [first, rest @ ..] => {
            tag.len() <= MAX_TAG_LEN
                && word(*first)
                && rest.iter().all(|&b| word(b) || b == b'.' || b == b'-')
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "its tag {tag:?} is not 1 to {MAX_TAG_LEN} letters, digits, `_`, `.` and `-` (not starting with `.` or `-`)"
        ))
    }
}

/// `sha256:<64 hex>` or `sha512:<128 hex>`, lower-case: the digests registries compute.
pub(crate) fn parse_digest(digest: &str) -> Result<String, String> {
    let hex_len = match digest.split_once(':') {
        Some(("sha256", hex)) => (hex, 64),
        Some(("sha512", hex)) => (hex, 128),
        Some((algorithm, _)) => {
            return Err(format!(
                "its digest algorithm {algorithm:?} is not sha256 or sha512"
            ));
        }
        None => return Err("its digest is not `algorithm:hex`".into()),
    };
    let (hex, len) = hex_len;
    if hex.len() != len
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!("its digest is not {len} lower-case hex digits"));
    }
    Ok(digest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(image: &str) -> (String, String, Reference) {
        let r = ImageRef::parse(image).unwrap_or_else(|e| panic!("{image}: {e}"));
        (r.registry, r.repository, r.reference)
    }

    fn tag(t: &str) -> Reference {
        Reference::Tag(t.into())
    }

    const DIGEST: &str = "sha256:8d1fa9d29a1f37ceacdf2a042a17484efb08ea533b660dcd1ed80469914a51a5";

    #[test]
    fn a_bare_name_is_an_official_docker_hub_image_at_latest() {
        assert_eq!(
            parsed("nginx"),
            (DOCKER_HUB.into(), "library/nginx".into(), tag("latest"))
        );
    }

    #[test]
    fn docker_hub_names_are_normalised_alike() {
        let keys: Vec<String> = [
            "nginx",
            "nginx:latest",
            "library/nginx",
            "docker.io/nginx",
            "docker.io/library/nginx:latest",
            "index.docker.io/library/nginx",
        ]
        .iter()
        .map(|i| ImageRef::parse(i).unwrap().key())
        .collect();
        assert!(
            keys.iter()
                .all(|k| k == "registry-1.docker.io/library/nginx:latest"),
            "{keys:?}"
        );
    }

    #[test]
    fn a_user_repository_on_docker_hub_gets_no_library_prefix() {
        assert_eq!(
            parsed("grafana/grafana:11.1.0"),
            (DOCKER_HUB.into(), "grafana/grafana".into(), tag("11.1.0"))
        );
    }

    #[test]
    fn a_host_is_a_first_component_with_a_dot_a_port_or_localhost() {
        assert_eq!(
            parsed("ghcr.io/org/app:tag"),
            ("ghcr.io".into(), "org/app".into(), tag("tag"))
        );
        assert_eq!(
            parsed("127.0.0.1:5000/team/web:latest"),
            ("127.0.0.1:5000".into(), "team/web".into(), tag("latest"))
        );
        assert_eq!(
            parsed("localhost/app"),
            ("localhost".into(), "app".into(), tag("latest"))
        );
        assert_eq!(
            parsed("registry.example.com:8443/a/b/c"),
            (
                "registry.example.com:8443".into(),
                "a/b/c".into(),
                tag("latest")
            )
        );
        assert_eq!(
            parsed("[::1]:5000/app:2"),
            ("[::1]:5000".into(), "app".into(), tag("2"))
        );
    }

    #[test]
    fn a_host_is_lower_cased_and_an_upper_case_first_component_is_a_host() {
        assert_eq!(
            parsed("Registry.Example.COM/app"),
            ("registry.example.com".into(), "app".into(), tag("latest"))
        );
        assert_eq!(parsed("MyHost/app").0, "myhost");
    }

    #[test]
    fn a_port_without_a_path_is_a_tag_as_for_docker() {
        assert_eq!(
            parsed("localhost:5000"),
            (DOCKER_HUB.into(), "library/localhost".into(), tag("5000"))
        );
    }

    #[test]
    fn a_digest_is_kept_and_wins_over_a_tag() {
        assert_eq!(
            parsed(&format!("repo@{DIGEST}")),
            (
                DOCKER_HUB.into(),
                "library/repo".into(),
                Reference::Digest(DIGEST.into())
            )
        );
        let both = ImageRef::parse(&format!("ghcr.io/a/b:1@{DIGEST}")).unwrap();
        assert_eq!(both.reference, Reference::Digest(DIGEST.into()));
        assert_eq!(both.tag(), None);
        assert_eq!(both.key(), format!("ghcr.io/a/b@{DIGEST}"));
    }

    #[test]
    fn separators_follow_the_distribution_grammar() {
        for ok in ["a.b", "a_b", "a__b", "a-b", "a---b", "a1/b2.c3_d4__e5-f6"] {
            assert!(ImageRef::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a..b", "a___b", "-a", "a-", "_a", "a/", "/a", "a//b", "a_.b", "a+b",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upper_case_repositories_are_rejected() {
        let e = ImageRef::parse("ghcr.io/Org/App:1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lower-case"), "{e}");
        assert!(e.contains("ghcr.io/Org/App:1"), "{e}");
        assert!(ImageRef::parse("Nginx").is_err());
    }

    #[test]
    fn broken_references_are_rejected_with_the_reason() {
        for (bad, why) in [
            ("", "empty"),
            ("nginx:", "tag"),
            ("nginx:-x", "tag"),
            ("nginx:.x", "tag"),
            (&format!("nginx:{}", "a".repeat(129)), "tag"),
            ("nginx@sha256:abc", "hex"),
            (&format!("nginx@md5:{}", "a".repeat(32)), "algorithm"),
            (&format!("nginx@sha256:{}", "A".repeat(64)), "hex"),
            ("nginx@", "digest"),
            ("ngi nx", "white space"),
            ("app:${TAG}", "variable"),
            ("${IMAGE}", "variable"),
            ("host:port/app", "port"),
            ("host:/app", "port"),
            ("bad_host.example/app", "host name"),
            ("[::1/app", "unclosed"),
            ("[zz]:5000/app", "IPv6"),
            ("ghcr.io/", "no repository"),
        ] {
            let e = ImageRef::parse(bad)
                .map(|r| r.key())
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn overlong_names_are_rejected() {
        let long = format!("ghcr.io/{}", "a".repeat(250));
        assert!(ImageRef::parse(&long).is_err());
    }

    #[test]
    fn an_invalid_reference_is_shown_safely() {
        let e = ImageRef::parse("app\u{1b}[31m:1").unwrap_err().to_string();
        assert!(!e.contains('\u{1b}'), "{e}");
    }
}
