//! The repository's newtypes, each with a `parse` constructor that checks what git would
//! otherwise be trusted with: [`RepoUrl`] (with its [`Transport`] and any credentials split off),
//! [`Revision`] (a branch, a tag, either, or a commit id) and [`DeployDir`].
//!
//! Pure: no environment, no files, no processes. Uses [`Secret`] from `secrets` for a password
//! embedded in a URL, and nothing else of the crate.

use std::fmt;

use super::secrets::Secret;

/// How git reaches the repository; decides `GIT_ALLOW_PROTOCOL` and which credentials apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Https,
    Http,
    Ssh,
    File,
}

impl Transport {
    /// The value for `GIT_ALLOW_PROTOCOL`: only what the URL needs.
    pub fn git_protocol(self) -> &'static str {
        match self {
            Self::Https => "https",
            Self::Http => "http",
            Self::Ssh => "ssh",
            Self::File => "file",
        }
    }
}

/// A validated repository URL with any `user:password@` credentials split off, so the URL itself
/// is safe to pass in argv, to log and to show in the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl {
    url: String,
    transport: Transport,
    username: Option<String>,
    password: Option<Secret>,
}

impl RepoUrl {
    /// Accepts `https://`, `http://`, `ssh://`, `file://`, scp-like `user@host:path` and absolute
    /// paths. Rejects transport helpers (`ext::`, `fd::`, anything with `::`) and every URL, host
    /// or user that starts with `-`, which git or ssh would read as an option.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("is empty".into());
        }
        if raw.starts_with('-') {
            return Err("must not start with '-'".into());
        }
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("must not contain whitespace or control characters".into());
        }
        if raw.contains("::") {
            return Err("transport helpers (such as ext:: or fd::) are not allowed".into());
        }
        if let Some((scheme, rest)) = raw.split_once("://") {
            let transport = match scheme.to_ascii_lowercase().as_str() {
                "https" => Transport::Https,
                "http" => Transport::Http,
                "ssh" | "git+ssh" => Transport::Ssh,
                "file" => Transport::File,
                other => {
                    return Err(format!(
                        "scheme {other:?} is not supported (use https://, ssh://, file:// or git@host:path)"
                    ));
                }
            };
            if transport == Transport::File {
                if !rest.starts_with('/') {
                    return Err("file:// URLs must hold an absolute path".into());
                }
                return Ok(Self::plain(raw.to_owned(), transport));
            }
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let (userinfo, host) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, authority),
            };
            if host.is_empty() {
                return Err("has no host".into());
            }
            if host.starts_with('-') {
                return Err("host must not start with '-'".into());
            }
            if path.len() <= 1 {
                return Err("has no repository path".into());
            }
            let (username, password) = match userinfo {
                None => (None, None),
                Some(u) => {
                    let (user, pass) = match u.split_once(':') {
                        Some((user, pass)) => (user, Some(pass)),
                        None => (u, None),
                    };
                    if user.starts_with('-') {
                        return Err("user must not start with '-'".into());
                    }
                    if transport == Transport::Ssh && pass.is_some() {
                        return Err(
                            "ssh URLs must not carry a password; use GIT_SSH_KEY_FILE".into()
                        );
                    }
                    if transport == Transport::Ssh {
                        // Kept in the URL, where git decodes it itself.
                        ((!user.is_empty()).then(|| user.to_owned()), None)
                    } else {
                        // Split off the URL, so decoded here as git would (`p%40ss` is `p@ss`).
                        let user = percent_decode("user", user)?;
                        if user.contains(':') {
                            return Err("user must not contain ':' (%3A)".into());
                        }
                        let pass = pass.map(|p| percent_decode("password", p)).transpose()?;
                        (
                            (!user.is_empty()).then_some(user),
                            pass.filter(|p| !p.is_empty()).map(Secret::new),
                        )
                    }
                }
            };
            // Credentials of http(s) URLs are split off; ssh keeps its user in the URL.
            let url = match (transport, &username) {
                (Transport::Ssh, Some(user)) => format!("{scheme}://{user}@{host}{path}"),
                _ => format!("{scheme}://{host}{path}"),
            };
            return Ok(Self {
                url,
                transport,
                username,
                password,
            });
        }
        if raw.starts_with('/') {
            return Ok(Self::plain(raw.to_owned(), Transport::File));
        }
        // scp-like syntax: [user@]host:path, recognised by git when there is a ':' before any '/'.
        if let Some(colon) = raw.find(':') {
            if raw[..colon].contains('/') {
                return Err("is a relative path; use an absolute path or a URL".into());
            }
            let (userhost, path) = (&raw[..colon], &raw[colon + 1..]);
            let (user, host) = match userhost.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, userhost),
            };
            if host.is_empty() || path.is_empty() {
                return Err("scp-like URLs need host and path (git@host:org/repo.git)".into());
            }
            if host.starts_with('-') || user.is_some_and(|u| u.starts_with('-')) {
                return Err("host and user must not start with '-'".into());
            }
            if path.starts_with('-') {
                return Err("path must not start with '-'".into());
            }
            return Ok(Self {
                url: raw.to_owned(),
                transport: Transport::Ssh,
                username: user.map(str::to_owned),
                password: None,
            });
        }
        Err("is neither a URL (https://, ssh://, file://), an scp-like git@host:path nor an absolute path".into())
    }

    fn plain(url: String, transport: Transport) -> Self {
        Self {
            url,
            transport,
            username: None,
            password: None,
        }
    }

    /// The URL git is given: never holds a password or token.
    pub fn as_str(&self) -> &str {
        &self.url
    }
    pub fn transport(&self) -> Transport {
        self.transport
    }
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }
    /// A password embedded in the configured URL (`https://user:TOKEN@host/…`).
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// Decodes `%XX` escapes of a URL's user or password (RFC 3986 userinfo). The value is never
/// part of the problem: it may be a token.
fn percent_decode(what: &str, raw: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| format!("the {what} in the URL is not UTF-8 once percent-decoded"))
}

/// The configured `GIT_REVISION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revision {
    /// A name that may be a branch or a tag; the remote decides (branch first).
    Name(String),
    /// Given as `refs/heads/<name>`.
    Branch(String),
    /// Given as `refs/tags/<name>`.
    Tag(String),
    /// A full 40-hex commit id (lower-cased).
    Commit(String),
}

impl Revision {
    /// Validates with git's ref-format rules (`git check-ref-format`), plus: never starts with
    /// `-`, and no revision expressions (`HEAD~1`, `main..dev`, `@{…}`).
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("is empty".into());
        }
        if raw.len() == 40 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Self::Commit(raw.to_ascii_lowercase()));
        }
        check_ref_name(raw)?;
        if let Some(name) = raw.strip_prefix("refs/heads/") {
            return Ok(Self::Branch(name.to_owned()));
        }
        if let Some(name) = raw.strip_prefix("refs/tags/") {
            return Ok(Self::Tag(name.to_owned()));
        }
        if raw.starts_with("refs/") {
            return Err("only refs/heads/… and refs/tags/… may be given as full ref names".into());
        }
        Ok(Self::Name(raw.to_owned()))
    }

    /// The full ref names this revision may be on the remote, in order of preference: a branch
    /// `refs/heads/<name>`, a tag `refs/tags/<name>`, a bare name both (the branch first), a
    /// commit id none (it is not a ref).
    pub fn candidate_refs(&self) -> Vec<String> {
        match self {
            Self::Branch(n) => vec![format!("refs/heads/{n}")],
            Self::Tag(n) => vec![format!("refs/tags/{n}")],
            Self::Name(n) => vec![format!("refs/heads/{n}"), format!("refs/tags/{n}")],
            Self::Commit(_) => Vec::new(),
        }
    }

    /// The name as configured (without a `refs/…/` prefix).
    pub fn name(&self) -> &str {
        match self {
            Self::Name(n) | Self::Branch(n) | Self::Tag(n) | Self::Commit(n) => n,
        }
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Branch(n) => write!(f, "refs/heads/{n}"),
            Self::Tag(n) => write!(f, "refs/tags/{n}"),
            Self::Name(n) | Self::Commit(n) => f.write_str(n),
        }
    }
}

/// git's ref-format rules (see `git help check-ref-format`), checked without spawning git.
fn check_ref_name(name: &str) -> Result<(), String> {
    if name.starts_with('-') {
        return Err("must not start with '-'".into());
    }
    if name == "@" || name == "HEAD" {
        return Err("must name a branch, tag or commit id, not a symbolic ref".into());
    }
    if name.contains("..") {
        return Err("must not contain '..' (revision ranges are not allowed)".into());
    }
    if name.contains("@{") {
        return Err("must not contain '@{'".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(*c))
    {
        return Err(format!(
            "must not contain {c:?} (no spaces, control characters or any of ~^:?*[\\)"
        ));
    }
    if name.ends_with('/') || name.ends_with('.') || name.starts_with('/') {
        return Err("must not start with '/' or end with '/' or '.'".into());
    }
    if name.contains("//") {
        return Err("must not contain '//'".into());
    }
    for component in name.split('/') {
        if component.starts_with('.') {
            return Err("no path component may start with '.'".into());
        }
        if component.ends_with(".lock") {
            return Err("no path component may end with '.lock'".into());
        }
    }
    Ok(())
}

/// The deploy dir: a normalised relative path inside the repository (empty = the root).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeployDir(String);

impl DeployDir {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.starts_with('/') {
            return Err("must be a relative path inside the repository".into());
        }
        if raw.chars().any(|c| c.is_control() || c == '\\') {
            return Err("must not contain control characters or '\\'".into());
        }
        let mut parts = Vec::new();
        for part in raw.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err("must not contain '..'".into()),
                p => parts.push(p),
            }
        }
        Ok(Self(parts.join("/")))
    }
    /// Empty for the repository root; never has a leading or trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for DeployDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("/")
        } else {
            f.write_str(&self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_like_and_helper_urls_are_rejected() {
        for url in [
            "--upload-pack=touch /tmp/x",
            "-oProxyCommand=x",
            "ext::sh -c touch% /tmp/pwned",
            "ext::sh",
            "fd::3",
            "ssh://-oProxyCommand=touch%20/tmp/x/repo",
            "ssh://git@-oProxyCommand=x/repo",
            "-host:repo",
            "git@-host:repo",
            "ftp://host/repo",
            "relative/path",
        ] {
            assert!(RepoUrl::parse(url).is_err(), "{url} must be rejected");
        }
    }

    #[test]
    fn accepted_url_forms_keep_their_transport() {
        let cases = [
            ("https://github.com/org/repo.git", Transport::Https),
            ("ssh://git@github.com/org/repo.git", Transport::Ssh),
            ("git@github.com:org/repo.git", Transport::Ssh),
            ("file:///srv/repo.git", Transport::File),
            ("/srv/repo.git", Transport::File),
        ];
        for (url, transport) in cases {
            let parsed = RepoUrl::parse(url).expect(url);
            assert_eq!(parsed.transport(), transport);
            assert_eq!(parsed.as_str(), url);
        }
    }

    #[test]
    fn credentials_are_split_off_https_urls_percent_decoded() {
        // (URL as configured, URL without credentials, user, password)
        let cases = [
            (
                "https://bob:s3cr3tT0ken@git.example.com/org/repo.git",
                "https://git.example.com/org/repo.git",
                "bob",
                "s3cr3tT0ken",
            ),
            (
                "https://b%40b:p%40ss%3Aw%2Frd%25@git.example.com/r.git",
                "https://git.example.com/r.git",
                "b@b",
                "p@ss:w/rd%",
            ),
        ];
        for (raw, stripped, user, password) in cases {
            let url = RepoUrl::parse(raw).unwrap();
            assert_eq!(url.as_str(), stripped);
            assert_eq!(url.username(), Some(user));
            assert_eq!(url.password().map(Secret::expose), Some(password));
            assert!(!format!("{url:?} {url}").contains(password), "{raw}");
        }
    }

    #[test]
    fn revisions_follow_git_ref_format_rules() {
        for bad in [
            "--x",
            "-x",
            "main..dev",
            "ma in",
            "HEAD~1",
            "main^",
            "a:b",
            "x.lock",
            "a//b",
            ".hidden",
            "main@{1}",
            "",
            "refs/remotes/x",
            "HEAD",
        ] {
            assert!(Revision::parse(bad).is_err(), "{bad:?} must be rejected");
        }
        assert_eq!(Revision::parse("main"), Ok(Revision::Name("main".into())));
        assert_eq!(
            Revision::parse("release/1.2"),
            Ok(Revision::Name("release/1.2".into()))
        );
        assert_eq!(
            Revision::parse("refs/tags/v1"),
            Ok(Revision::Tag("v1".into()))
        );
        let id = "0123456789ABCDEF0123456789abcdef01234567";
        assert_eq!(
            Revision::parse(id),
            Ok(Revision::Commit(id.to_ascii_lowercase()))
        );
    }

    #[test]
    fn candidate_refs_name_a_branch_before_a_tag_and_nothing_for_a_commit() {
        let refs = |raw: &str| Revision::parse(raw).unwrap().candidate_refs();
        assert_eq!(refs("main"), ["refs/heads/main", "refs/tags/main"]);
        assert_eq!(
            refs("release/1.2"),
            ["refs/heads/release/1.2", "refs/tags/release/1.2"]
        );
        assert_eq!(refs("refs/heads/dev"), ["refs/heads/dev"]);
        assert_eq!(refs("refs/tags/v1"), ["refs/tags/v1"]);
        assert!(refs(&"0a".repeat(20)).is_empty());
    }

    #[test]
    fn deploy_dir_is_normalised_and_dot_dot_rejected() {
        assert_eq!(DeployDir::parse("./stacks/").unwrap().as_str(), "stacks");
        assert!(DeployDir::parse("").unwrap().is_root());
        assert!(DeployDir::parse("stacks/../..").is_err());
        assert!(DeployDir::parse("/etc").is_err());
    }

    #[test]
    fn an_undecodable_password_is_a_problem_and_ssh_users_stay_encoded() {
        // Undecodable bytes are a problem, never a guess; the value is not echoed.
        let e = RepoUrl::parse("https://bob:p%FFss@git.example.com/r.git").unwrap_err();
        assert!(e.contains("UTF-8") && !e.contains("p%FFss"), "{e}");
        // ssh keeps its user in the URL, where git decodes it itself.
        let ssh = RepoUrl::parse("ssh://git%2Bx@host/r.git").unwrap();
        assert_eq!(ssh.as_str(), "ssh://git%2Bx@host/r.git");
    }
}
