//! Which repository a URL names, for telling a delivery about another repository from one about
//! `GIT_REPO_URL`'s: the host and the path, normalised so that the clone, SSH and web URLs of one
//! repository are equal.
//!
//! Pure: strings in, [`RepoIdentity`] out. Uses nothing else of the crate.

use std::fmt;

/// A repository's host and path, normalised: the host lower-case without user or port, the path
/// lower-case without its leading and trailing `/` or its `.git` suffix. So
/// `https://Git.Example.com:3000/Org/Repo.git`, `ssh://git@git.example.com:2222/org/repo.git`,
/// `git@git.example.com:org/repo` and `https://git.example.com/org/repo/` are all
/// `git.example.com/org/repo`.
///
/// Ports are dropped because a forge's SSH and HTTP URLs differ in port only; case because
/// GitHub, GitLab and Gitea resolve repository paths case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoIdentity {
    host: String,
    path: String,
}

impl RepoIdentity {
    /// The identity of a network URL: `scheme://[user@]host[:port]/path` (any scheme but
    /// `file`) or scp-like `[user@]host:path`. `None` for a local repository (`file://`, an
    /// absolute path), which no forge names, and for anything without a host and a path.
    pub fn from_url(url: &str) -> Option<Self> {
        let url = url.trim();
        let (authority, path) = if let Some((scheme, rest)) = url.split_once("://") {
            if scheme.eq_ignore_ascii_case("file") {
                return None;
            }
            rest.split_once('/')?
        } else {
            // scp-like: a ':' before any '/'.
            let colon = url.find(':')?;
            if url[..colon].contains('/') {
                return None;
            }
            (&url[..colon], &url[colon + 1..])
        };
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = match host.strip_prefix('[') {
            // An IPv6 literal keeps its colons.
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => host.split(':').next().unwrap_or_default(),
        };
        let path = normalise_path(path);
        if host.is_empty() || path.is_empty() {
            return None;
        }
        Some(Self {
            host: host.to_ascii_lowercase(),
            path,
        })
    }

    /// Whether a name such as `full_name` (`org/repo`) or GitLab's `path_with_namespace`
    /// (`group/sub/project`) is this repository's path, or its end (a forge served under a
    /// sub-path, `https://host/gitlab/group/project`).
    pub fn has_name(&self, name: &str) -> bool {
        let name = normalise_path(name);
        !name.is_empty()
            && (self.path == name
                || self
                    .path
                    .strip_suffix(&name)
                    .is_some_and(|head| head.ends_with('/')))
    }
}

impl fmt::Display for RepoIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.path)
    }
}

fn normalise_path(path: &str) -> String {
    // Query and fragment are not part of a repository path.
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    path.trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(url: &str) -> String {
        RepoIdentity::from_url(url).map_or_else(|| "none".to_owned(), |i| i.to_string())
    }

    #[test]
    fn clone_ssh_and_web_urls_of_one_repository_are_equal() {
        for url in [
            "https://git.example.com/org/repo.git",
            "https://Git.Example.com:3000/Org/Repo.git",
            "http://git.example.com/org/repo",
            "https://git.example.com/org/repo/",
            "https://user@git.example.com/org/repo.git",
            "ssh://git@git.example.com:2222/org/repo.git",
            "ssh://git@git.example.com/org/repo.git/",
            "git+ssh://git@git.example.com/org/repo.git",
            "git://git.example.com/org/repo.git",
            "git@git.example.com:org/repo.git",
            "git.example.com:org/repo",
            "git@git.example.com:/org/repo.git",
        ] {
            assert_eq!(id(url), "git.example.com/org/repo", "{url}");
        }
    }

    #[test]
    fn other_hosts_paths_and_groups_differ() {
        let ours = RepoIdentity::from_url("https://git.example.com/org/repo.git").unwrap();
        for url in [
            "https://github.com/org/repo.git",
            "https://git.example.com/org/repo2.git",
            "https://git.example.com/other/repo.git",
            "https://git.example.com/group/org/repo.git",
            "git@git.example.org:org/repo.git",
        ] {
            assert_ne!(RepoIdentity::from_url(url).as_ref(), Some(&ours), "{url}");
        }
    }

    #[test]
    fn local_repositories_and_urls_without_a_path_have_no_identity() {
        for url in [
            "file:///srv/git/repo.git",
            "FILE:///srv/git/repo.git",
            "/srv/git/repo.git",
            "relative/dir:with-colon",
            "https://git.example.com",
            "https://git.example.com/",
            "https:///org/repo",
            "git@:org/repo",
            "",
        ] {
            assert_eq!(id(url), "none", "{url}");
        }
    }

    #[test]
    fn ipv6_hosts_keep_their_address_and_drop_the_port() {
        assert_eq!(id("ssh://git@[::1]:2222/org/repo.git"), "::1/org/repo");
    }

    #[test]
    fn names_match_the_whole_path_or_its_end_on_a_segment() {
        let ours = RepoIdentity::from_url("https://host/gitlab/Group/Sub/Project.git").unwrap();
        assert!(ours.has_name("group/sub/project"));
        assert!(ours.has_name("sub/project"));
        assert!(ours.has_name("gitlab/group/sub/project"));
        assert!(!ours.has_name("b/project"));
        assert!(!ours.has_name("other/project"));
        assert!(!ours.has_name(""));
        assert!(!ours.has_name("/"));
    }
}
