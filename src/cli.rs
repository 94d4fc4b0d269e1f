//! The operator subcommands besides `serve`: `check`, `status` and `refresh`, and in
//! [`operate`] `diff`, `history`, `sync`, `rollback`, `unpin`, `suspend` and `resume`.
//!
//! - [`check`] is what to run before deploying docker-cd: the settings are already validated
//!   (by `config`); it then reads the repository exactly as the agent would (the real git
//!   reader, into a temporary directory that is removed afterwards, never the configured
//!   `DATA_DIR`, which a running agent may be using), looks for the compose tool and the
//!   engine when reconciling, and lists every stack with its project name and problems.
//! - [`status`] and [`refresh`] talk to a running instance over its HTTP API (plain HTTP,
//!   through `reqwest` without TLS): they need no repository settings.
//!
//! Reports go to the writer given (stdout in the binary); each function says with [`Exit`]
//! whether the process should end successfully. Everything from the repository or an instance
//! (stack paths, refs, commit messages, errors holding a tool's stderr) is shown escaped and
//! bounded ([`crate::untrusted`]): it can neither drive the terminal nor forge a line of the
//! report. A text of several lines continues, indented, under its field.
//!
//! Wiring layer: uses config, git, compose (the client environment), engine (chosen once from
//! `DEPLOY_MODE`, as the agent does), desired_state, untrusted.

pub mod operate;

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::{ClientConfig, Config};
use crate::desired_state::Snapshot;
use crate::engine::{Engine, Host};
use crate::git::GitReader;
use crate::untrusted::{Untrusted, sanitize};

/// How often `refresh` asks for the outcome.
const POLL_EVERY: Duration = Duration::from_millis(200);
/// Limit for one HTTP request of `status` and `refresh`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest problem text `status` shows in its table.
const MAX_PROBLEM_CHARS: usize = 100;
/// Longest line of an error `check` and `status` show.
const MAX_LINE_CHARS: usize = 1000;

/// How a subcommand ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    /// Something is wrong (the report says what), or for `diff`, changes are pending:
    /// exit code 1.
    Failure,
}

/// A `status` or `refresh` request that did not get a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach docker-cd at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("unexpected answer from {url}: {message}")]
    Answer { url: String, message: String },
    #[error("the refresh did not finish within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}

/// `docker-cd check`. `config` is already valid; this reads the repository and reports.
pub async fn check(config: Config, out: &mut impl Write) -> std::io::Result<Exit> {
    let redactor = config.redactor();
    let mut errors = 0usize;
    let mut warnings = 0usize;
    let field = |out: &mut dyn Write, name: &str, value: &str| field_lines(out, 14, name, value);

    field(out, "configuration", "valid")?;
    field(out, "repository", config.git.repo.as_str())?;
    field(out, "deploy dir", &config.git.deploy_dir.to_string())?;

    let scratch = tempfile::Builder::new()
        .prefix("docker-cd-check-")
        .tempdir()?;
    let read = async {
        let reader = GitReader::open(&config.git, scratch.path(), &config.child_env).await?;
        reader.read(None).await
    };
    let snapshot = match read.await {
        Ok(Some(snapshot)) => Some(snapshot),
        Ok(None) => {
            errors += 1;
            field(out, "revision", "error: the git reader returned nothing")?;
            None
        }
        Err(e) => {
            errors += 1;
            let reason = redactor.redact(&crate::error_chain(&e));
            field(
                out,
                "revision",
                &format!("error: cannot read {}: {reason}", config.git.revision),
            )?;
            None
        }
    };
    if let Some(snapshot) = &snapshot {
        let ref_type = serde_json::to_value(snapshot.ref_type).unwrap_or(Value::Null);
        field(
            out,
            "revision",
            &format!(
                "{} -> {} ({}) at {} \"{}\"",
                config.git.revision,
                Untrusted::new(&snapshot.git_ref),
                ref_type.as_str().unwrap_or("?"),
                snapshot.revision,
                Untrusted::new(first_line(&snapshot.commit_message)),
            ),
        )?;
        for warning in &snapshot.warnings {
            warnings += 1;
            field(out, "", &format!("warning: {}", Untrusted::new(warning)))?;
        }
    }

    if config.reconcile.enabled {
        let env = crate::compose::client_env(&config.child_env.vars);
        let host = Host::new(config.reconcile.docker_bin.clone(), env.clone());
        match Engine::detect(&config.reconcile, host.clone(), env).await {
            Ok(engine) => field(out, "compose", &engine.describe())?,
            Err(e) => {
                errors += 1;
                let reason = redactor.redact(&crate::error_chain(e.tool_error()));
                field(out, "compose", &format!("error: {reason}"))?;
            }
        }
        match host.server_version().await {
            Ok(version) => field(out, "docker engine", &format!("reachable, {version}"))?,
            Err(e) => {
                warnings += 1;
                let reason = redactor.redact(&crate::error_chain(&e));
                field(
                    out,
                    "docker engine",
                    &format!(
                        "warning: not reachable ({}); docker-cd starts anyway and reports every stack failed until it answers",
                        first_line(&reason)
                    ),
                )?;
            }
        }
    } else {
        field(
            out,
            "reconcile",
            "disabled (RECONCILE_ENABLED=false): nothing would be applied, docker is not needed",
        )?;
    }

    if let Some(snapshot) = &snapshot {
        let (stack_errors, stack_warnings) = stack_table(snapshot, out)?;
        errors += stack_errors;
        warnings += stack_warnings;
    }

    writeln!(out)?;
    let verdict = if errors == 0 { "passed" } else { "failed" };
    writeln!(
        out,
        "check {verdict}: {} {}, {} {}",
        errors,
        plural(errors, "error", "errors"),
        warnings,
        plural(warnings, "warning", "warnings")
    )?;
    Ok(if errors == 0 {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// The stacks of a snapshot with their project names and problems; returns the numbers of
/// errors and warnings.
fn stack_table(snapshot: &Snapshot, out: &mut impl Write) -> std::io::Result<(usize, usize)> {
    writeln!(out)?;
    if snapshot.stacks.is_empty() {
        writeln!(
            out,
            "warning: the deploy dir holds no stacks (directories with a compose file); nothing would be deployed"
        )?;
        return Ok((0, 1));
    }
    let mut rows = Vec::new();
    let (mut errors, mut warnings) = (0, 0);
    for stack in snapshot.stacks.values() {
        // One line per problem: each escaped, so none can start a line of its own.
        let mut problems = Vec::new();
        if let Some(error) = &stack.error {
            errors += 1;
            problems.push(format!(
                "error: {}",
                Untrusted::bounded(error, MAX_LINE_CHARS)
            ));
        }
        for warning in &stack.warnings {
            warnings += 1;
            problems.push(format!(
                "warning: {}",
                Untrusted::bounded(warning, MAX_LINE_CHARS)
            ));
        }
        rows.push(vec![
            sanitize(&stack.path, DEFAULT_CELL_CHARS),
            stack
                .project_name
                .as_deref()
                .map_or_else(|| "-".to_owned(), |p| sanitize(p, DEFAULT_CELL_CHARS)),
            sanitize(&stack.compose_file, DEFAULT_CELL_CHARS),
            if problems.is_empty() {
                "ok".to_owned()
            } else {
                problems.join("\n")
            },
        ]);
    }
    table(
        out,
        &["STACK", "PROJECT", "COMPOSE FILE", "PROBLEMS"],
        &rows,
    )?;
    let deployable = snapshot
        .stacks
        .values()
        .filter(|s| s.error.is_none())
        .count();
    writeln!(
        out,
        "\n{} {}, {deployable} would be deployed",
        snapshot.stacks.len(),
        plural(snapshot.stacks.len(), "stack", "stacks"),
    )?;
    Ok((errors, warnings))
}

/// `docker-cd status`: the refresh status and the stacks table of a running instance: each
/// stack's status and health, and for a stack that is not healthy what its health message
/// says, under its problem, and below that what the last image check found.
pub async fn status(client: ClientConfig, out: &mut impl Write) -> Result<Exit, ClientError> {
    let http = http_client()?;
    let refresh = get_json(&http, &client, "/api/refresh-status").await?;
    let stacks = get_json(&http, &client, "/api/stacks").await?;
    let Some(stacks) = stacks.as_array() else {
        return Err(ClientError::Answer {
            url: format!("{}/api/stacks", client.base_url),
            message: "expected a JSON array".into(),
        });
    };
    let io = |e: std::io::Error| ClientError::Answer {
        url: client.base_url.clone(),
        message: format!("cannot write the report: {e}"),
    };
    write_refresh_summary(&refresh, &client.base_url, out).map_err(io)?;
    let rows: Vec<Vec<String>> = stacks
        .iter()
        .map(|s| {
            vec![
                text(&s["path"]),
                text(&s["projectName"]),
                text(&s["status"]),
                text(&s["health"]),
                format!(
                    "{}/{}",
                    s["containersRunning"].as_u64().unwrap_or(0),
                    s["containersTotal"].as_u64().unwrap_or(0)
                ),
                s["syncedRevision"]
                    .as_str()
                    .map(|r| sanitize(r, 12))
                    .unwrap_or_else(|| "-".to_owned()),
                problem_cell(s),
            ]
        })
        .collect();
    writeln!(out).map_err(io)?;
    if rows.is_empty() {
        writeln!(out, "no stacks").map_err(io)?;
    } else {
        table(
            out,
            &[
                "STACK",
                "PROJECT",
                "STATUS",
                "HEALTH",
                "CONTAINERS",
                "SYNCED",
                "PROBLEM",
            ],
            &rows,
        )
        .map_err(io)?;
    }
    Ok(Exit::Success)
}

/// `docker-cd refresh`: asks for a refresh and waits until one that started after the request
/// has finished. Exits with failure if that refresh failed.
///
/// The instance numbers its refreshes (`refreshId`). The number seen before the request is
/// noted; any refresh with a higher number started after it and therefore reads the
/// repository as it is now, so its outcome is the answer (whether it ran for this request or
/// for a webhook that arrived at the same moment).
pub async fn refresh(client: ClientConfig, out: &mut impl Write) -> Result<Exit, ClientError> {
    let http = http_client()?;
    let before = get_json(&http, &client, "/api/refresh-status").await?;
    let before_id = refresh_id(&before, &client)?;
    let url = format!("{}/api/refresh", client.base_url);
    let mut request = http.post(&url);
    if let Some(token) = &client.api_token {
        request = request.bearer_auth(token.expose());
    }
    let answer = send(request, &url).await?;
    let io = |e: std::io::Error| ClientError::Answer {
        url: client.base_url.clone(),
        message: format!("cannot write the report: {e}"),
    };
    writeln!(
        out,
        "refresh requested: {}",
        Untrusted::new(answer["status"].as_str().unwrap_or("?"))
    )
    .map_err(io)?;

    let deadline = Instant::now() + client.timeout;
    loop {
        let status = get_json(&http, &client, "/api/refresh-status").await?;
        let id = refresh_id(&status, &client)?;
        let phase = status["refreshStatus"].as_str().unwrap_or_default();
        // Higher: started after the request. Lower: the instance restarted since, so every
        // refresh it ran is newer too.
        if id != before_id && matches!(phase, "completed" | "failed") {
            write_refresh_summary(&status, &client.base_url, out).map_err(io)?;
            return Ok(if phase == "completed" {
                Exit::Success
            } else {
                Exit::Failure
            });
        }
        if Instant::now() >= deadline {
            return Err(ClientError::Timeout(client.timeout));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn refresh_id(status: &Value, client: &ClientConfig) -> Result<u64, ClientError> {
    status["refreshId"]
        .as_u64()
        .ok_or_else(|| ClientError::Answer {
            url: format!("{}/api/refresh-status", client.base_url),
            message: "no refreshId (is this docker-cd, and as new as this client?)".into(),
        })
}

fn write_refresh_summary(
    status: &Value,
    base_url: &str,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let field = |out: &mut dyn Write, name: &str, value: &str| field_lines(out, 10, name, value);
    field(out, "instance", base_url)?;
    match status["revision"].as_str() {
        Some(revision) => field(
            out,
            "revision",
            &format!(
                "{} at {} \"{}\"",
                text(&status["ref"]),
                Untrusted::new(revision),
                Untrusted::new(first_line(
                    status["commitMessage"].as_str().unwrap_or_default()
                ))
            ),
        )?,
        None => field(
            out,
            "revision",
            &format!("{} (not read yet)", text(&status["ref"])),
        )?,
    }
    field(
        out,
        "refresh",
        &format!(
            "{} (#{}, trigger {}, at {}), {} stacks",
            text(&status["refreshStatus"]),
            status["refreshId"].as_u64().unwrap_or(0),
            text(&status["trigger"]),
            text(&status["refreshedAt"]),
            status["stackCount"].as_u64().unwrap_or(0),
        ),
    )?;
    if let Some(error) = status["refreshError"].as_str() {
        field(out, "error", error)?;
    }
    if let Some(warnings) = status["warnings"].as_array() {
        for warning in warnings.iter().filter_map(Value::as_str) {
            field(out, "warning", &sanitize(warning, MAX_LINE_CHARS))?;
        }
    }
    Ok(())
}

/// The one problem `status` shows for a stack: its error in Git, its last sync error, its
/// drift, or its warnings, shortened to one line.
fn problem_of(stack: &Value) -> String {
    let warnings: Vec<&str> = stack["warnings"]
        .as_array()
        .map(|w| w.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let problem = stack["error"]
        .as_str()
        .or_else(|| stack["lastSyncError"].as_str())
        .or_else(|| stack["drift"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| warnings.join("; "));
    shortened(&problem)
}

/// Why a stack that is not healthy has its health (its `healthMessage`), on one line; `None`
/// for a healthy stack or when nothing is said.
fn health_note(stack: &Value) -> Option<String> {
    if stack["health"].as_str() == Some("healthy") {
        return None;
    }
    let message = stack["healthMessage"].as_str().map(str::trim)?;
    (!message.is_empty()).then(|| shortened(message))
}

/// What the last image check found (SPEC §12), one line each: the services with an update
/// available (`updates: web, worker (update failed)`) and the first service whose registry
/// could not be asked (`image check: cache: registry.example.com: timed out`, `+ 1 more`).
fn image_notes(stack: &Value) -> Vec<String> {
    let images = stack["images"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut notes = Vec::new();
    let updates: Vec<String> = images
        .iter()
        .filter(|i| i["updateAvailable"].as_bool() == Some(true))
        .map(|i| {
            let failed = if i["updateFailed"].as_bool() == Some(true) {
                " (update failed)"
            } else {
                ""
            };
            format!("{}{failed}", i["service"].as_str().unwrap_or("?"))
        })
        .collect();
    if !updates.is_empty() {
        notes.push(shortened(&format!("updates: {}", updates.join(", "))));
    }
    let errors: Vec<String> = images
        .iter()
        .filter_map(|i| {
            // Its first line only, so that "+ n more" is not cut off with the rest.
            let error = first_line(i["error"].as_str()?);
            Some(format!("{}: {error}", i["service"].as_str().unwrap_or("?")))
        })
        .collect();
    if let Some(first) = errors.first() {
        let more = match errors.len() - 1 {
            0 => String::new(),
            n => format!(" (+ {n} more)"),
        };
        notes.push(shortened(&format!("image check: {first}{more}")));
    }
    notes
}

/// The PROBLEM cell: the stack's problem, and on lines of their own the health note, unless it
/// says the same (a sync that failed on health names the same service and cause), and what
/// the image check found.
fn problem_cell(stack: &Value) -> String {
    let problem = problem_of(stack);
    let mut lines: Vec<String> = (!problem.is_empty())
        .then(|| problem.clone())
        .into_iter()
        .collect();
    if let Some(note) = health_note(stack).filter(|note| *note != problem) {
        lines.push(format!("health: {note}"));
    }
    lines.extend(image_notes(stack));
    lines.join("\n")
}

/// The first line of `text`, escaped, and cut to [`MAX_PROBLEM_CHARS`] with a `…`.
fn shortened(text: &str) -> String {
    // Escaped first, so that the cut counts what is shown.
    let line = sanitize(first_line(text), MAX_LINE_CHARS);
    if line.chars().count() > MAX_PROBLEM_CHARS {
        let mut short: String = line.chars().take(MAX_PROBLEM_CHARS - 1).collect();
        short.push('…');
        short
    } else {
        line
    }
}

fn http_client() -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        // Proxies come from the environment, which only `config` reads; the instance is
        // normally on this host anyway.
        .no_proxy()
        .build()
        .map_err(|source| ClientError::Unreachable {
            url: String::new(),
            source,
        })
}

async fn get_json(
    http: &reqwest::Client,
    client: &ClientConfig,
    path: &str,
) -> Result<Value, ClientError> {
    let url = format!("{}{path}", client.base_url);
    send(http.get(&url), &url).await
}

/// Sends a request and returns its JSON body; a non-2xx answer becomes
/// [`ClientError::Status`] with the instance's `{"error": …}` message.
async fn send(request: reqwest::RequestBuilder, url: &str) -> Result<Value, ClientError> {
    let response = request
        .send()
        .await
        .map_err(|source| ClientError::Unreachable {
            url: url.to_owned(),
            source,
        })?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|source| ClientError::Unreachable {
            url: url.to_owned(),
            source,
        })?;
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    if !status.is_success() {
        let message = json
            .as_ref()
            .and_then(|j| j["error"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        return Err(ClientError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
            message,
        });
    }
    json.ok_or_else(|| ClientError::Answer {
        url: url.to_owned(),
        message: "not JSON".into(),
    })
}

/// A JSON value as table text: strings bare (escaped and bounded), null as `-`.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => sanitize(s, DEFAULT_CELL_CHARS),
        other => sanitize(&other.to_string(), DEFAULT_CELL_CHARS),
    }
}

/// Longest cell of a table (a stack path, a project name).
const DEFAULT_CELL_CHARS: usize = crate::untrusted::DEFAULT_MAX_CHARS;

/// `name`, padded to `width`, then `value`: its first line beside the name, each further line
/// indented below it, every line escaped and bounded. However many lines an error holds, none
/// starts where a field's name does.
fn field_lines(out: &mut dyn Write, width: usize, name: &str, value: &str) -> std::io::Result<()> {
    let mut lines = value.lines();
    let first = lines.next().unwrap_or_default();
    writeln!(
        out,
        "{name:<width$} {}",
        Untrusted::bounded(first, MAX_LINE_CHARS)
    )?;
    for line in lines {
        writeln!(
            out,
            "{:<width$} {}",
            "",
            Untrusted::bounded(line, MAX_LINE_CHARS)
        )?;
    }
    Ok(())
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default().trim()
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// Left-aligned columns separated by two spaces. A cell with several lines continues on the
/// following lines in its column; the last column is never padded.
fn table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            for line in cell.lines() {
                widths[i] = widths[i].max(width(line));
            }
        }
    }
    let line = |out: &mut dyn Write, cells: &[&str]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.push_str(&" ".repeat(widths[i] - width(cell) + 2));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, header)?;
    for row in rows {
        let lines: Vec<Vec<&str>> = row.iter().map(|c| c.lines().collect()).collect();
        let height = lines.iter().map(Vec::len).max().unwrap_or(1).max(1);
        for i in 0..height {
            let cells: Vec<&str> = lines
                .iter()
                .map(|l| l.get(i).copied().unwrap_or(""))
                .collect();
            line(out, &cells)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns_and_continue_multi_line_cells() {
        let mut out = Vec::new();
        table(
            &mut out,
            &["STACK", "PROBLEMS"],
            &[
                vec!["web".into(), "ok".into()],
                vec!["a-long-name".into(), "error: one\nwarning: two".into()],
            ],
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "STACK        PROBLEMS",
                "web          ok",
                "a-long-name  error: one",
                "             warning: two",
            ]
        );
    }

    #[test]
    fn a_value_of_several_lines_continues_indented_and_every_line_is_escaped() {
        let mut out = Vec::new();
        field_lines(
            &mut out,
            8,
            "error",
            "cannot list refs\nfatal: \u{1b}[2Jgone\r\ncheck passed: forged",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "error    cannot list refs\n         fatal: \\u{1b}[2Jgone\n         check passed: forged\n"
        );
    }

    #[test]
    fn a_stack_that_is_not_healthy_says_why_under_its_problem() {
        let degraded = json!({
            "health": "degraded",
            "healthMessage": "worker: restarting (exit code 1, 5 restarts)\nmore",
            "lastSyncError": null,
            "warnings": ["two compose files"],
        });
        assert_eq!(
            problem_cell(&degraded),
            "two compose files\nhealth: worker: restarting (exit code 1, 5 restarts)"
        );
        let alone = json!({"health": "progressing", "healthMessage": "web: health: starting"});
        assert_eq!(problem_cell(&alone), "health: web: health: starting");
        // A sync that failed on health says the same thing once.
        let failed = json!({
            "health": "degraded",
            "healthMessage": "web: unhealthy: curl: (7) refused",
            "lastSyncError": "web: unhealthy: curl: (7) refused",
        });
        assert_eq!(problem_cell(&failed), "web: unhealthy: curl: (7) refused");
        // Healthy, or nothing said: only the problem.
        let healthy = json!({"health": "healthy", "healthMessage": "all 3 services running"});
        assert_eq!(problem_cell(&healthy), "");
        let unknown = json!({"health": "unknown", "healthMessage": null, "drift": "web stopped"});
        assert_eq!(problem_cell(&unknown), "web stopped");
        // Escaped and bounded like every other text of the instance.
        let evil =
            json!({"health": "degraded", "healthMessage": format!("\u{1b}[2J{}", "x".repeat(300))});
        let cell = problem_cell(&evil);
        assert!(cell.starts_with("health: \\u{1b}[2J"), "{cell}");
        assert_eq!(cell.chars().count(), "health: ".len() + MAX_PROBLEM_CHARS);
    }

    #[test]
    fn a_stack_with_image_updates_or_a_failed_check_says_so_under_its_problem() {
        let image = |service: &str, available: bool, failed: bool, error: Option<&str>| {
            json!({"service": service, "image": "nginx:1.27", "updateAvailable": available,
                   "updateFailed": failed, "error": error})
        };
        let stack = json!({
            "health": "healthy",
            "drift": "web stopped",
            "images": [
                image("db", false, false, None),
                image("web", true, false, None),
                image("worker", true, true, None),
                image("cache", false, false, Some("registry.example.com: \u{1b}[2Jtimed out\nmore")),
                image("queue", false, false, Some("quay.io: 401")),
            ],
        });
        assert_eq!(
            problem_cell(&stack),
            "web stopped\nupdates: web, worker (update failed)\n\
             image check: cache: registry.example.com: \\u{1b}[2Jtimed out (+ 1 more)"
        );
        let alone = json!({"health": "healthy", "images": [image("web", true, false, None)]});
        assert_eq!(problem_cell(&alone), "updates: web");
        let one = json!({"images": [image("queue", false, false, Some("quay.io: 401"))]});
        assert_eq!(problem_cell(&one), "image check: queue: quay.io: 401");
        // Up to date, or never checked: nothing.
        let quiet = json!({"health": "healthy", "images": [image("db", false, false, None)]});
        assert_eq!(problem_cell(&quiet), "");
        assert_eq!(
            problem_cell(&json!({"health": "healthy", "images": []})),
            ""
        );
    }

    #[test]
    fn a_stack_shows_its_most_important_problem_on_one_line() {
        let stack = json!({
            "error": null,
            "lastSyncError": "compose up failed\n--- stderr\nno such image",
            "drift": "container stopped",
            "warnings": ["two compose files"],
        });
        assert_eq!(problem_of(&stack), "compose up failed");
        let stack =
            json!({"error": null, "lastSyncError": null, "drift": null, "warnings": ["a", "b"]});
        assert_eq!(problem_of(&stack), "a; b");
        let long = "x".repeat(300);
        let stack = json!({"error": long, "warnings": []});
        assert_eq!(problem_of(&stack).chars().count(), MAX_PROBLEM_CHARS);
    }
}
