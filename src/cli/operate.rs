//! The operator's commands against a running instance (SPEC §10): `diff`, `history`, `sync`,
//! `rollback`, `unpin`, `suspend`, `resume`. Each is one or a few requests to the HTTP API
//! (`/api/stacks/{path}/…`, the path percent-encoded as one segment) and a short report;
//! everything the instance answers is shown escaped and bounded, like `status`.
//!
//! Exit codes: `diff` says 0 (nothing to do) or 1 (changes pending) through [`Exit`], like
//! `terraform plan -detailed-exitcode`; every command's error (the instance refused, is not
//! there, answered nonsense) is an `Err`, which `main` turns into exit code 2.

use std::io::Write;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::{ClientError, Exit, field_lines, get_json, http_client, send, shortened, table, text};
use crate::config::ClientConfig;
use crate::untrusted::{Untrusted, sanitize};

/// What stays unescaped in a path segment: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Longest line of a file's diff the report shows (a minified file is one long line).
const MAX_DIFF_LINE_CHARS: usize = 1000;

/// `/api/stacks/{path}{suffix}` with the path as one segment (`apps/web` → `apps%2Fweb`).
fn stack_url(path: &str, suffix: &str) -> String {
    format!("/api/stacks/{}{suffix}", utf8_percent_encode(path, SEGMENT))
}

fn report_error(client: &ClientConfig) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |e| ClientError::Answer {
        url: client.base_url.clone(),
        message: format!("cannot write the report: {e}"),
    }
}

/// A commit id shortened for a report, `-` when absent.
fn short(revision: &Value) -> String {
    revision
        .as_str()
        .map(|r| sanitize(&r.chars().take(12).collect::<String>(), 12))
        .unwrap_or_else(|| "-".to_owned())
}

/// `docker-cd diff [STACK]`: [`Exit::Success`] when nothing is pending, [`Exit::Failure`]
/// when something is.
pub async fn diff(
    client: ClientConfig,
    stack: Option<&str>,
    out: &mut impl Write,
) -> Result<Exit, ClientError> {
    let http = http_client()?;
    let io = report_error(&client);
    let Some(stack) = stack else {
        return diff_all(&http, &client, out).await;
    };
    let diff = get_json(&http, &client, &stack_url(stack, "/diff")).await?;
    let in_sync = in_sync(&diff, &client, stack)?;
    write_diff(stack, &diff, in_sync, out).map_err(io)?;
    Ok(if in_sync {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// `inSync` of a diff answer; an answer without it is not one.
fn in_sync(diff: &Value, client: &ClientConfig, stack: &str) -> Result<bool, ClientError> {
    diff["inSync"].as_bool().ok_or_else(|| ClientError::Answer {
        url: format!("{}{}", client.base_url, stack_url(stack, "/diff")),
        message: "no inSync (is this docker-cd, and as new as this client?)".into(),
    })
}

/// One stack's diff: the commits, each file with its unified diff, the service plan.
fn write_diff(
    stack: &str,
    diff: &Value,
    in_sync: bool,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let field = |out: &mut dyn Write, name: &str, value: &str| field_lines(out, 8, name, value);
    field(out, "stack", stack)?;
    field(
        out,
        "from",
        &diff["from"].as_str().map_or_else(
            || "nothing deployed".to_owned(),
            |r| format!("{r} (deployed)"),
        ),
    )?;
    field(out, "to", &format!("{} (desired)", text(&diff["to"])))?;
    field(
        out,
        "status",
        if in_sync {
            "in sync: nothing to do"
        } else {
            "changes pending"
        },
    )?;
    let files = diff["files"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    writeln!(out)?;
    if files.is_empty() {
        writeln!(out, "no file of the stack differs")?;
    }
    for file in files {
        let mut notes = Vec::new();
        if file["binary"] == true {
            notes.push("binary");
        }
        if file["truncated"] == true {
            notes.push("cut at 64 KiB");
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join(", "))
        };
        writeln!(
            out,
            "{:<9} {}{notes}",
            text(&file["change"]),
            text(&file["path"])
        )?;
        // Every line escaped on its own: a diff can hold anything, a terminal sequence too.
        for line in file["diff"].as_str().unwrap_or_default().lines() {
            writeln!(out, "    {}", Untrusted::bounded(line, MAX_DIFF_LINE_CHARS))?;
        }
    }
    let services = diff["services"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    writeln!(out)?;
    if services.is_empty() {
        return writeln!(out, "no service to plan");
    }
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            vec![
                text(&s["name"]),
                text(&s["action"]),
                shortened(s["reason"].as_str().unwrap_or_default()),
            ]
        })
        .collect();
    table(out, &["SERVICE", "ACTION", "REASON"], &rows)
}

/// Every stack's diff, one line each: exit 1 if any is pending, and an error (exit 2) if any
/// could not be read, after every line is printed.
async fn diff_all(
    http: &reqwest::Client,
    client: &ClientConfig,
    out: &mut impl Write,
) -> Result<Exit, ClientError> {
    let io = report_error(client);
    let stacks = get_json(http, client, "/api/stacks").await?;
    let Some(stacks) = stacks.as_array() else {
        return Err(ClientError::Answer {
            url: format!("{}/api/stacks", client.base_url),
            message: "expected a JSON array".into(),
        });
    };
    let mut rows = Vec::new();
    let (mut pending, mut first_error) = (0usize, None);
    for path in stacks.iter().filter_map(|s| s["path"].as_str()) {
        let answer = match get_json(http, client, &stack_url(path, "/diff")).await {
            Ok(diff) => in_sync(&diff, client, path).map(|in_sync| (diff, in_sync)),
            Err(e) => Err(e),
        };
        let row = match answer {
            Ok((diff, in_sync)) => {
                if !in_sync {
                    pending += 1;
                }
                vec![
                    sanitize(path, super::DEFAULT_CELL_CHARS),
                    if in_sync { "in sync" } else { "pending" }.to_owned(),
                    short(&diff["from"]),
                    short(&diff["to"]),
                    changes(&diff),
                ]
            }
            Err(e) => {
                let row = vec![
                    sanitize(path, super::DEFAULT_CELL_CHARS),
                    "error".to_owned(),
                    "-".to_owned(),
                    "-".to_owned(),
                    shortened(&crate::error_chain(&e)),
                ];
                first_error.get_or_insert(e);
                row
            }
        };
        rows.push(row);
    }
    if rows.is_empty() {
        writeln!(out, "no stacks").map_err(&io)?;
    } else {
        table(out, &["STACK", "DIFF", "FROM", "TO", "CHANGES"], &rows).map_err(&io)?;
        writeln!(
            out,
            "\n{pending} of {} {} pending",
            rows.len(),
            if rows.len() == 1 { "stack" } else { "stacks" }
        )
        .map_err(&io)?;
    }
    match first_error {
        Some(e) => Err(e),
        None if pending > 0 => Ok(Exit::Failure),
        None => Ok(Exit::Success),
    }
}

/// `2 files, 1 service to create, 1 to recreate`, or `-` when nothing differs.
fn changes(diff: &Value) -> String {
    let files = diff["files"].as_array().map_or(0, Vec::len);
    let mut parts = Vec::new();
    if files > 0 {
        parts.push(format!(
            "{files} {}",
            if files == 1 { "file" } else { "files" }
        ));
    }
    let services = diff["services"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for action in ["create", "recreate", "remove"] {
        let n = services.iter().filter(|s| s["action"] == action).count();
        if n > 0 {
            let noun = if n == 1 { "service" } else { "services" };
            parts.push(format!("{n} {noun} to {action}"));
        }
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

/// `docker-cd history STACK`: the deployments, newest first.
pub async fn history(
    client: ClientConfig,
    stack: &str,
    out: &mut impl Write,
) -> Result<Exit, ClientError> {
    let http = http_client()?;
    let io = report_error(&client);
    let url = stack_url(stack, "/history");
    let answer = get_json(&http, &client, &url).await?;
    let Some(deployments) = answer["deployments"].as_array() else {
        return Err(ClientError::Answer {
            url: format!("{}{url}", client.base_url),
            message: "no deployments (is this docker-cd, and as new as this client?)".into(),
        });
    };
    if deployments.is_empty() {
        writeln!(out, "no deployments of {} recorded", Untrusted::new(stack)).map_err(io)?;
        return Ok(Exit::Success);
    }
    let rows: Vec<Vec<String>> = deployments
        .iter()
        .map(|d| {
            let images: Vec<String> = d["images"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|i| format!("{}={}", text(&i["service"]), text(&i["image"])))
                .collect();
            vec![
                d["id"]
                    .as_u64()
                    .map_or_else(|| "-".to_owned(), |id| id.to_string()),
                text(&d["startedAt"]),
                text(&d["trigger"]),
                short(&d["revision"]),
                text(&d["outcome"]),
                if images.is_empty() {
                    "-".to_owned()
                } else {
                    images.join(" ")
                },
                d["reason"].as_str().map_or_else(String::new, shortened),
            ]
        })
        .collect();
    table(
        out,
        &[
            "ID", "STARTED", "TRIGGER", "REVISION", "OUTCOME", "IMAGES", "REASON",
        ],
        &rows,
    )
    .map_err(io)?;
    Ok(Exit::Success)
}

/// What `sync`, `unpin`, `suspend` and `resume` ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Sync,
    Unpin,
    Suspend,
    Resume,
}

impl Control {
    fn route(self) -> &'static str {
        match self {
            Control::Sync => "/sync",
            Control::Unpin => "/unpin",
            Control::Suspend => "/suspend",
            Control::Resume => "/resume",
        }
    }

    fn done(self, stack: &str) -> String {
        let stack = Untrusted::new(stack);
        match self {
            Control::Sync => format!("sync of {stack} queued: it is re-applied even if in sync"),
            Control::Unpin => format!("{stack} unpinned: it follows Git again"),
            Control::Suspend => format!(
                "{stack} suspended: it is never synced, reverted or removed until `docker-cd resume`"
            ),
            Control::Resume => format!("{stack} resumed: the next sync applies what differs"),
        }
    }
}

/// POSTs to one of the stack's control routes with the token; the instance's answer as JSON.
async fn post(
    client: &ClientConfig,
    stack: &str,
    route: &str,
    body: Option<Value>,
) -> Result<Value, ClientError> {
    let http = http_client()?;
    let url = format!("{}{}", client.base_url, stack_url(stack, route));
    let mut request = http.post(&url);
    if let Some(token) = &client.api_token {
        request = request.bearer_auth(token.expose());
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    send(request, &url).await
}

/// `docker-cd sync|unpin|suspend|resume STACK`.
pub async fn control(
    client: ClientConfig,
    action: Control,
    stack: &str,
    out: &mut impl Write,
) -> Result<Exit, ClientError> {
    post(&client, stack, action.route(), None).await?;
    writeln!(out, "{}", action.done(stack)).map_err(report_error(&client))?;
    Ok(Exit::Success)
}

/// `docker-cd rollback STACK [REVISION]`.
pub async fn rollback(
    client: ClientConfig,
    stack: &str,
    revision: Option<&str>,
    out: &mut impl Write,
) -> Result<Exit, ClientError> {
    let body = revision.map(|r| json!({ "revision": r }));
    let answer = post(&client, stack, "/rollback", body).await?;
    writeln!(
        out,
        "rollback of {} to {} queued; it stays pinned there until `docker-cd unpin`",
        Untrusted::new(stack),
        text(&answer["revision"])
    )
    .map_err(report_error(&client))?;
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_path_is_one_segment_of_the_url() {
        assert_eq!(
            stack_url("apps/web", "/diff"),
            "/api/stacks/apps%2Fweb/diff"
        );
        assert_eq!(
            stack_url("a b?#%", "/sync"),
            "/api/stacks/a%20b%3F%23%25/sync"
        );
        assert_eq!(stack_url("my-app_1.x~", ""), "/api/stacks/my-app_1.x~");
    }

    #[test]
    fn a_diff_is_reported_with_its_files_escaped_and_its_service_plan() {
        let diff = json!({
            "from": "aaaa", "to": "bbbb", "inSync": false,
            "files": [
                {"path": "compose.yaml", "change": "modified", "binary": false, "truncated": false,
                 "diff": "@@ -1 +1 @@\n-image: a:1\n+image: a:2\x1b[2J"},
                {"path": "logo.png", "change": "added", "binary": true, "truncated": false, "diff": null},
            ],
            "services": [{"name": "app", "action": "recreate", "reason": "content hash changed"}],
        });
        let mut out = Vec::new();
        write_diff("web", &diff, false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("status   changes pending\n"), "{text}");
        assert!(
            text.contains("modified  compose.yaml\n    @@ -1 +1 @@\n    -image: a:1\n"),
            "{text}"
        );
        assert!(text.contains("+image: a:2\\u{1b}[2J"), "{text}");
        assert!(text.contains("added     logo.png (binary)\n"), "{text}");
        assert!(
            text.contains("app      recreate  content hash changed"),
            "{text}"
        );
        assert_eq!(changes(&diff), "2 files, 1 service to recreate");
        assert_eq!(changes(&json!({"files": [], "services": []})), "-");
    }
}
