//! Commit status (SPEC §13): each forge's request for "stack S at commit C is pending,
//! succeeded or failed" ([`request`], pure), sent through the same kind of lane as the
//! notifications. GitHub `POST /repos/{owner}/{repo}/statuses/{sha}` (`Authorization: Bearer`),
//! Gitea and Forgejo `POST /repos/{owner}/{repo}/statuses/{sha}` under `/api/v1`
//! (`Authorization: token …`), GitLab `POST /projects/{url-encoded path}/statuses/{sha}` under
//! `/api/v4` (`PRIVATE-TOKEN`, `name` for the context, `failed` for a failure).

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::json;

use super::deliver::{COMPONENT, Context, Request};
use crate::config::{CommitStatusConfig, Forge};

/// A status's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Success,
    Failure,
}

/// One status to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub stack: String,
    /// The 40-hex commit id.
    pub sha: String,
    pub state: State,
    pub description: String,
}

/// The URL and the request of `update` on `config`'s forge.
pub fn request(
    config: &CommitStatusConfig,
    update: &Update,
    context: &Context,
) -> (String, Request) {
    let encode = |s: &str| percent_encoding::utf8_percent_encode(s, COMPONENT).to_string();
    let owner_repo = config
        .repo
        .split('/')
        .map(encode)
        .collect::<Vec<_>>()
        .join("/");
    let sha = encode(&update.sha);
    let name = format!("docker-cd/{}", update.stack);
    // GitHub keeps 140 characters of a description.
    let description: String = crate::untrusted::sanitize(&update.description, 140);
    let target = context.stack_page(&update.stack);
    let token = config.token.as_ref().map(|t| t.expose()).unwrap_or("");
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let (url, body) = match config.forge {
        Forge::Github | Forge::Gitea => {
            let state = match update.state {
                State::Pending => "pending",
                State::Success => "success",
                State::Failure => "failure",
            };
            let scheme = if config.forge == Forge::Github {
                headers.insert(
                    ACCEPT,
                    HeaderValue::from_static("application/vnd.github+json"),
                );
                headers.insert(
                    HeaderName::from_static("x-github-api-version"),
                    HeaderValue::from_static("2022-11-28"),
                );
                "Bearer"
            } else {
                "token"
            };
            if let Ok(mut value) = HeaderValue::from_str(&format!("{scheme} {token}")) {
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
            }
            (
                format!("{}/repos/{owner_repo}/statuses/{sha}", config.api_url),
                json!({
                    "state": state,
                    "target_url": target,
                    "description": description,
                    "context": name,
                }),
            )
        }
        Forge::Gitlab => {
            let state = match update.state {
                State::Pending => "pending",
                State::Success => "success",
                State::Failure => "failed",
            };
            if let Ok(mut value) = HeaderValue::from_str(token) {
                value.set_sensitive(true);
                headers.insert(HeaderName::from_static("private-token"), value);
            }
            (
                format!(
                    "{}/projects/{}/statuses/{sha}",
                    config.api_url,
                    encode(&config.repo)
                ),
                json!({
                    "state": state,
                    "name": name,
                    "target_url": target,
                    "description": description,
                }),
            )
        }
    };
    (
        url,
        Request {
            headers,
            body: body.to_string().into_bytes(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use serde_json::Value;

    fn config(forge: Forge, api: &str, repo: &str) -> CommitStatusConfig {
        CommitStatusConfig {
            forge,
            api_url: api.into(),
            repo: repo.into(),
            token: Some(Secret::new("tok")),
        }
    }

    fn update(state: State) -> Update {
        Update {
            stack: "apps/web".into(),
            sha: "a".repeat(40),
            state,
            description: "deployed".into(),
        }
    }

    #[test]
    fn each_forge_gets_its_path_auth_header_and_fields() {
        let context = Context {
            public_url: Some("https://cd.example".into()),
            instance: "i".into(),
        };
        let sha = "a".repeat(40);
        let (url, req) = request(
            &config(Forge::Github, "https://api.github.com", "org/infra"),
            &update(State::Failure),
            &context,
        );
        assert_eq!(
            url,
            format!("https://api.github.com/repos/org/infra/statuses/{sha}")
        );
        assert_eq!(req.headers[AUTHORIZATION], "Bearer tok");
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["state"], "failure");
        assert_eq!(body["context"], "docker-cd/apps/web");
        assert_eq!(body["target_url"], "https://cd.example/stacks/apps%2Fweb");

        let (url, req) = request(
            &config(Forge::Gitea, "https://codeberg.org/api/v1", "o/r"),
            &update(State::Pending),
            &Context::default(),
        );
        assert_eq!(
            url,
            format!("https://codeberg.org/api/v1/repos/o/r/statuses/{sha}")
        );
        assert_eq!(req.headers[AUTHORIZATION], "token tok");
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["state"], "pending");
        assert_eq!(body["target_url"], Value::Null);

        let (url, req) = request(
            &config(
                Forge::Gitlab,
                "https://gitlab.com/api/v4",
                "group/sub/project",
            ),
            &update(State::Failure),
            &context,
        );
        assert_eq!(
            url,
            format!("https://gitlab.com/api/v4/projects/group%2Fsub%2Fproject/statuses/{sha}")
        );
        assert_eq!(req.headers["private-token"], "tok");
        assert!(req.headers.get(AUTHORIZATION).is_none());
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["state"], "failed");
        assert_eq!(body["name"], "docker-cd/apps/web");
    }
}
