//! The dashboard for browsers: the stacks grid at `/` (for requests that accept HTML), a page per
//! stack at `/stacks/{path}`, and the static files they use at `/assets/…`.
//!
//! Pages are askama templates (`templates/` here, checked at compile time, HTML-escaped by
//! default): every value that comes from Git or the host (paths, commit messages, errors) is
//! escaped by the template engine, never by hand. The script and the stylesheet (`assets/`
//! here) are embedded with `include_str!`; there is no build step. Everything lives under
//! `src/` so the container build, which copies `src/` only, has it. The script keeps the pages
//! live from `/api/events`, filters the grid (by status, by health, by control, by path), sends
//! the refresh and acknowledge requests and the operator's (sync now, rollback, suspend,
//! resume, unpin, all with the API token), prepends new deployments to the stack page's
//! history (`stack.history`), and fetches and shows the stack's diff (`/api/stacks/{path}/diff`).
//! What a stack's `x-docker-cd:` says (SPEC §11) is on both: a card shows what holds the stack
//! back (`blockedBy`), a suspension by Git apart from the operator's, and its dependencies; the
//! stack page lists every setting, links the dependencies, and shows each deployment's hooks.
//! Image updates (SPEC §12) too: a card says when a service has an update available or its
//! registry could not be asked; the stack page has a table of every checked service (running
//! digest against the registry's) and a button that starts a check.
//! Pages are served with a Content-Security-Policy that allows only these same-origin files:
//! no inline script, style or event handler.
//!
//! The grid's view of a stack ([`CardView`]) has a twin in `assets/dashboard.js`
//! (`fillCard`), which renders the same fields from the JSON records of the event stream into
//! the same markup (the card template is rendered once, empty, for it). A change to one needs
//! the same change to the other.
//!
//! Uses: desired_state (records, refresh status, sync history), compose (the containers of one
//! project, read-only), config (what the header shows), [`super::names`] (status and health
//! names). Not
//! [`super::page`]: the page at `/` uses the grid, never the other way round.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::names::WireName;
use super::{ApiError, AppState};
use crate::desired_state::settings::{Hook, Phase, StackSettings};
use crate::desired_state::{Health, ImageStatus, RefreshStatus, StackRecord, StackStatus, rfc3339};
use crate::history::{Deployment, HookRun, Outcome};
use crate::stack::ContainerView;

/// The statuses the grid can filter by, in the order of its chips (`statuses` in the script).
const STATUSES: [StackStatus; 7] = [
    StackStatus::Missing,
    StackStatus::Syncing,
    StackStatus::Synced,
    StackStatus::Failed,
    StackStatus::Drifted,
    StackStatus::Orphaned,
    StackStatus::Deleting,
];

/// Only the dashboard's own files; nothing inline. `connect-src` covers `/api/events` and the
/// POSTs of the buttons.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// How many hex digits of a commit id the pages show.
const SHORT_REVISION: usize = 12;
/// How many the grid's "pinned" badge shows (`PIN_REVISION` in the script).
const PIN_REVISION: usize = 7;
/// The operator's holds the grid can filter by (`?control=`), in the order of their chips.
const CONTROLS: [&str; 2] = ["pinned", "suspended"];

/// The grid's query string: `?status=failed&health=degraded&q=web`. Unknown or malformed
/// parameters are ignored (the page then shows everything).
#[derive(Debug, Default, Deserialize)]
pub(super) struct GridQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    health: String,
    /// `pinned` or `suspended`.
    #[serde(default)]
    control: String,
    #[serde(default)]
    q: String,
}

impl GridQuery {
    pub(super) fn parse(raw: Option<&str>) -> Self {
        let mut query: Self = raw
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default();
        if !STATUSES.iter().any(|s| s.wire_name() == query.status) {
            query.status.clear();
        }
        if !Health::ALL.iter().any(|h| h.wire_name() == query.health) {
            query.health.clear();
        }
        if !CONTROLS.contains(&query.control.as_str()) {
            query.control.clear();
        }
        query
    }

    /// The same test as `matches` in `assets/dashboard.js`.
    fn matches(&self, record: &StackRecord) -> bool {
        (self.status.is_empty() || status_name(record) == self.status)
            && (self.health.is_empty() || record.sync.health.wire_name() == self.health)
            && (self.control.is_empty() || control_name(record) == self.control)
            && (self.q.is_empty()
                || record
                    .path
                    .to_lowercase()
                    .contains(&self.q.trim().to_lowercase()))
    }
}

/// A point in time for `<time>`: RFC 3339 and a readable UTC text (empty `iso` when absent).
#[derive(Debug, Default)]
struct Stamp {
    iso: String,
    text: String,
}

impl Stamp {
    /// `2026-11-28 16:22:37 UTC`, or `absent` when there is no time; `stampText` in the script.
    fn new(time: Option<SystemTime>, absent: &str) -> Self {
        match time {
            Some(t) => {
                let iso = rfc3339::format(t);
                let text = iso.replacen('T', " ", 1).replace('Z', " UTC");
                Self { iso, text }
            }
            None => Self {
                iso: String::new(),
                text: absent.to_owned(),
            },
        }
    }
}

/// The refresh status as the header shows it.
#[derive(Debug)]
struct RefreshView {
    status: String,
    revision: String,
    revision_short: String,
    commit_message: String,
    trigger: String,
    refreshed_at: Stamp,
    error: String,
    warnings: Vec<String>,
}

impl RefreshView {
    fn new(r: &RefreshStatus) -> Self {
        let revision = r.revision.clone().unwrap_or_default();
        Self {
            status: r.refresh_status.wire_name(),
            revision_short: short_revision(&revision, "not read yet"),
            revision,
            commit_message: first_line(r.commit_message.as_deref()),
            trigger: r
                .trigger
                .map(|t| format!("{t} refresh"))
                .unwrap_or_default(),
            refreshed_at: Stamp::new(r.refreshed_at, ""),
            error: r.refresh_error.clone().unwrap_or_default(),
            warnings: r.warnings.clone(),
        }
    }
}

/// What every page's header shows.
#[derive(Debug)]
struct Header {
    repo: String,
    revision: String,
    deploy_dir: String,
    refresh: RefreshView,
    /// `API_TOKEN` is set: the buttons ask for it (the page never knows the token).
    token_required: bool,
}

impl Header {
    fn new(state: &AppState) -> Self {
        let info = &state.info;
        let deploy_dir = info.deploy_dir.to_string();
        Self {
            repo: info.repo.to_string(),
            revision: info.revision.to_string(),
            deploy_dir: if deploy_dir.is_empty() {
                "(repository root)".into()
            } else {
                deploy_dir
            },
            refresh: RefreshView::new(&state.store.refresh_status()),
            token_required: info.api_token.is_some(),
        }
    }
}

/// One card of the grid; `fillCard` in the script is its twin.
#[derive(Debug, Default)]
struct CardView {
    path: String,
    status: String,
    health: String,
    /// Why the stack has its health (the badge's tooltip); empty when nothing is said.
    health_message: String,
    /// The compose project, when it differs from the path.
    project: String,
    in_git: bool,
    running: u32,
    total: u32,
    /// `max` of the containers meter: at least 1, so an empty stack shows an empty meter.
    meter_max: u32,
    revision: String,
    revision_short: String,
    commit_message: String,
    synced_at: Stamp,
    drifted: bool,
    drift: String,
    error: String,
    warnings: String,
    /// The pinned commit, shortened to [`PIN_REVISION`] (empty: not pinned).
    pinned: String,
    /// The whole pinned commit (the badge's tooltip).
    pinned_revision: String,
    suspended: bool,
    /// Git suspends the stack (`x-docker-cd.suspend: true`); apart from the operator's hold.
    suspended_in_git: bool,
    /// Why an automatic sync waits (empty: nothing holds it back).
    blocked_by: String,
    /// `after db, cache`: the stacks of `dependsOn` (empty: none).
    depends_on: String,
    /// The services whose registry has a newer image (the "update available" tag's tooltip;
    /// empty: none).
    updates: String,
    /// Why the registry could not be asked, per service (the "image check failed" tag's
    /// tooltip; empty: every registry answered).
    image_errors: String,
    /// The control the card counts under for the filter: `pinned`, `suspended` or empty.
    /// A stack both pinned and suspended counts as suspended (that is what holds it).
    control: String,
    hidden: bool,
}

impl CardView {
    fn new(record: &StackRecord, query: &GridQuery) -> Self {
        let sync = &record.sync;
        let revision = sync.synced_revision.clone().unwrap_or_default();
        let status = status_name(record);
        let drifted = sync.status == StackStatus::Drifted;
        Self {
            path: record.path.clone(),
            health: sync.health.wire_name(),
            health_message: sync.health_message.clone().unwrap_or_default(),
            project: record
                .project_name
                .clone()
                .filter(|p| *p != record.path)
                .unwrap_or_default(),
            in_git: record.in_git,
            running: sync.containers_running,
            total: sync.containers_total,
            meter_max: sync.containers_total.max(1),
            revision_short: short_revision(&revision, "—"),
            revision,
            commit_message: first_line(sync.synced_commit_message.as_deref()),
            synced_at: Stamp::new(sync.synced_at, "never"),
            drift: if drifted {
                sync.drift.clone().unwrap_or_default()
            } else {
                String::new()
            },
            drifted,
            error: record
                .error
                .clone()
                .or_else(|| sync.last_sync_error.clone())
                .unwrap_or_default(),
            warnings: record.warnings.join("; "),
            pinned: sync
                .pinned_revision
                .as_deref()
                .map(|r| r.chars().take(PIN_REVISION).collect())
                .unwrap_or_default(),
            pinned_revision: sync.pinned_revision.clone().unwrap_or_default(),
            suspended: sync.suspended,
            suspended_in_git: sync.suspended_in_git,
            blocked_by: sync.blocked_by.clone().unwrap_or_default(),
            depends_on: after_text(&record.settings.depends_on),
            updates: updates_text(&sync.images),
            image_errors: image_errors_text(&sync.images),
            control: control_name(record).to_owned(),
            hidden: !query.matches(record),
            status,
        }
    }

    /// The card inside `<template>`: every slot empty, every optional part hidden.
    fn blank() -> Self {
        Self {
            in_git: true,
            meter_max: 1,
            ..Self::default()
        }
    }
}

/// A chip of the filter bar: a status or a health to filter by (`value` empty: all stacks).
#[derive(Debug)]
struct Chip {
    value: String,
    label: String,
    count: usize,
    active: bool,
}

impl Chip {
    /// The chips of one filter: "all", then one per name (in `names`' order), each with how
    /// many cards have it by `name_of`; `active` is the name filtered by (empty: none).
    fn row(
        all: &str,
        names: impl IntoIterator<Item = String>,
        cards: &[CardView],
        name_of: impl Fn(&CardView) -> &str,
        active: &str,
    ) -> Vec<Self> {
        let mut chips = vec![Self {
            value: String::new(),
            label: all.to_owned(),
            count: cards.len(),
            active: active.is_empty(),
        }];
        chips.extend(names.into_iter().map(|name| Self {
            count: cards.iter().filter(|c| name_of(c) == name).count(),
            active: active == name,
            label: name.clone(),
            value: name,
        }));
        chips
    }
}

#[derive(Template)]
#[template(path = "dashboard.html", config = "src/http/dashboard/askama.toml")]
struct DashboardPage {
    header: Header,
    chips: Vec<Chip>,
    health_chips: Vec<Chip>,
    control_chips: Vec<Chip>,
    cards: Vec<CardView>,
    blank: CardView,
    query: String,
    running: u32,
    containers: u32,
    /// Why the grid shows nothing: `none` (no stacks), `filter`, or empty.
    empty_reason: &'static str,
}

/// The stack page's fields.
#[derive(Debug)]
struct DetailView {
    path: String,
    status: String,
    health: String,
    health_message: String,
    drifted: bool,
    drift: String,
    error: String,
    last_sync_error: String,
    warnings: Vec<String>,
    project: String,
    compose_file: String,
    in_git: bool,
    content_hash: String,
    synced_revision: String,
    synced_commit_message: String,
    synced_content_hash: String,
    synced_at: Stamp,
    last_sync_at: Stamp,
    last_sync_status: String,
    running: u32,
    total: u32,
    /// The commit the stack runs (empty: none known).
    running_revision: String,
    /// The commit the stack is pinned at (empty: it follows Git).
    pinned_revision: String,
    suspended: bool,
    suspended_in_git: bool,
    /// Why an automatic sync waits (empty: nothing holds it back).
    blocked_by: String,
    /// The stacks of `dependsOn`, each a link to its page.
    depends_on: Vec<String>,
    /// What the compose file's `x-docker-cd:` sets, key by key (empty: nothing).
    settings: Vec<Setting>,
    /// What the last image-update check found, per service (empty: none yet).
    images: Vec<ImageRow>,
    images_checked_at: Stamp,
    /// `x-docker-cd.imageUpdates: false`: the stack's images are never checked.
    image_updates_off: bool,
}

impl DetailView {
    fn new(record: &StackRecord) -> Self {
        let sync = &record.sync;
        let status = status_name(record);
        let drifted = sync.status == StackStatus::Drifted;
        Self {
            path: record.path.clone(),
            health: sync.health.wire_name(),
            health_message: sync.health_message.clone().unwrap_or_default(),
            drifted,
            drift: if drifted {
                sync.drift.clone().unwrap_or_default()
            } else {
                String::new()
            },
            error: record.error.clone().unwrap_or_default(),
            last_sync_error: sync.last_sync_error.clone().unwrap_or_default(),
            warnings: record.warnings.clone(),
            project: record.project_name.clone().unwrap_or_default(),
            compose_file: record.compose_file.clone().unwrap_or_default(),
            in_git: record.in_git,
            content_hash: record.content_hash.clone().unwrap_or_default(),
            synced_revision: sync.synced_revision.clone().unwrap_or_else(|| "—".into()),
            synced_commit_message: first_line(sync.synced_commit_message.as_deref()),
            synced_content_hash: sync.synced_content_hash.clone().unwrap_or_default(),
            synced_at: Stamp::new(sync.synced_at, "never"),
            last_sync_at: Stamp::new(sync.last_sync_at, "never"),
            last_sync_status: sync
                .last_sync_status
                .map(WireName::wire_name)
                .unwrap_or_default(),
            running: sync.containers_running,
            total: sync.containers_total,
            running_revision: sync.synced_revision.clone().unwrap_or_default(),
            pinned_revision: sync.pinned_revision.clone().unwrap_or_default(),
            suspended: sync.suspended,
            suspended_in_git: sync.suspended_in_git,
            blocked_by: sync.blocked_by.clone().unwrap_or_default(),
            depends_on: record.settings.depends_on.clone(),
            settings: Setting::list(&record.settings),
            images: sync.images.iter().map(ImageRow::new).collect(),
            images_checked_at: Stamp::new(sync.images_checked_at, "never"),
            image_updates_off: record.settings.image_updates == Some(false),
            status,
        }
    }
}

/// One service of the stack page's images table (SPEC §12).
#[derive(Debug)]
struct ImageRow {
    service: String,
    /// As the compose file names it.
    image: String,
    /// The running image's digest (empty: never pulled from its registry) and its short form.
    digest: String,
    digest_short: String,
    /// The registry's digest for the tag (empty: it could not be asked) and its short form.
    latest_digest: String,
    latest_short: String,
    /// `up-to-date`, `update-available`, `update-failed` or `error`.
    status: &'static str,
    /// What the status cell says: `up to date`, `update available`, `update failed`, `error`.
    status_text: &'static str,
    /// Why the registry could not be asked (empty: it answered).
    error: String,
}

impl ImageRow {
    fn new(i: &ImageStatus) -> Self {
        let (status, status_text) = if i.error.is_some() {
            ("error", "error")
        } else if i.update_failed {
            ("update-failed", "update failed")
        } else if i.update_available {
            ("update-available", "update available")
        } else {
            ("up-to-date", "up to date")
        };
        let digest = i.digest.clone().unwrap_or_default();
        let latest_digest = i.latest_digest.clone().unwrap_or_default();
        Self {
            service: i.service.clone(),
            image: i.image.clone(),
            digest_short: short_digest(&digest, "not from a registry"),
            digest,
            latest_short: short_digest(&latest_digest, "—"),
            latest_digest,
            status,
            status_text,
            error: i.error.clone().unwrap_or_default(),
        }
    }
}

/// `sha256:0123456789ab` (the algorithm and [`SHORT_REVISION`] hex digits), or `absent`.
fn short_digest(digest: &str, absent: &str) -> String {
    if digest.is_empty() {
        return absent.to_owned();
    }
    match digest.split_once(':') {
        Some((algorithm, hex)) => {
            let hex: String = hex.chars().take(SHORT_REVISION).collect();
            format!("{algorithm}:{hex}")
        }
        None => digest.chars().take(SHORT_REVISION).collect(),
    }
}

/// One key of a stack's `x-docker-cd:` as the stack page lists it.
#[derive(Debug)]
struct Setting {
    /// As the file spells it: `healthTimeout`, `dependsOn`.
    key: &'static str,
    value: SettingValue,
}

/// A setting's value, by how the page shows it.
#[derive(Debug)]
enum SettingValue {
    /// `true`, `revert`, `1m 30s`: as the JSON API spells it.
    Text(String),
    /// Stack paths, each a link to its page (`dependsOn`).
    Stacks(Vec<String>),
    /// Compose files or profiles, in the file's order.
    Names(Vec<String>),
    Hooks(Vec<HookView>),
    /// Empty: the stack has no windows at all (always open), whatever `SYNC_WINDOWS` says.
    Windows(Vec<WindowView>),
}

/// A hook of the settings: `preSync`, its service and its command.
#[derive(Debug)]
struct HookView {
    phase: &'static str,
    service: String,
    /// The arguments as a JSON array (`["sh", "-c", "./migrate.sh"]`): exact, spaces and
    /// quotes included. Empty: the service's own command.
    command: String,
}

impl HookView {
    fn new(phase: Phase, hook: &Hook) -> Self {
        Self {
            phase: phase.as_str(),
            service: hook.service.clone(),
            command: if hook.command.is_empty() {
                String::new()
            } else {
                serde_json::to_string(&hook.command).unwrap_or_default()
            },
        }
    }
}

/// A sync window of the settings.
#[derive(Debug)]
struct WindowView {
    /// Cron, 5 fields, UTC.
    schedule: String,
    /// `2h`, `1h 30m`.
    duration: String,
}

impl Setting {
    /// Every key the settings set, in the reference's order (SPEC §11); empty when none.
    fn list(s: &StackSettings) -> Vec<Self> {
        use SettingValue::{Hooks, Names, Stacks, Text, Windows};
        let flag = |b: Option<bool>| b.map(|b| Text(b.to_string()));
        let hooks: Vec<HookView> = s
            .hooks
            .pre_sync
            .iter()
            .map(|h| HookView::new(Phase::PreSync, h))
            .chain(
                s.hooks
                    .post_sync
                    .iter()
                    .map(|h| HookView::new(Phase::PostSync, h)),
            )
            .collect();
        let list = |names: &[String], value: fn(Vec<String>) -> SettingValue| {
            (!names.is_empty()).then(|| value(names.to_vec()))
        };
        [
            ("suspend", flag(s.suspend)),
            ("drift", s.drift.map(|d| Text(wire_text(&d)))),
            (
                "healthTimeout",
                s.health_timeout
                    .map(|d| Text(humantime::format_duration(d).to_string())),
            ),
            ("rollbackOnFailure", flag(s.rollback_on_failure)),
            ("dependsOn", list(&s.depends_on, Stacks)),
            ("files", list(&s.files, Names)),
            ("profiles", list(&s.profiles, Names)),
            ("hooks", (!hooks.is_empty()).then_some(Hooks(hooks))),
            (
                "syncWindows",
                s.sync_windows.as_ref().map(|windows| {
                    Windows(
                        windows
                            .iter()
                            .map(|w| WindowView {
                                schedule: w.schedule().to_owned(),
                                duration: humantime::format_duration(w.duration()).to_string(),
                            })
                            .collect(),
                    )
                }),
            ),
            ("imageUpdates", flag(s.image_updates)),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|value| Self { key, value }))
        .collect()
    }
}

/// One container row.
#[derive(Debug)]
struct ContainerRow {
    name: String,
    service: String,
    state: String,
    health: String,
    status: String,
    image: String,
    ports: String,
}

impl From<ContainerView> for ContainerRow {
    fn from(c: ContainerView) -> Self {
        Self {
            name: c.name,
            service: c.service,
            state: c.state,
            health: c.health.unwrap_or("").to_owned(),
            status: c.status,
            image: c.image,
            ports: c.ports,
        }
    }
}

/// One row of the deployment history; `fillDeployment` in the script is its twin.
#[derive(Debug, Default)]
struct DeploymentRow {
    id: String,
    started_at: Stamp,
    duration: String,
    trigger: String,
    revision: String,
    revision_short: String,
    commit_message: String,
    outcome: String,
    reason: String,
    /// `service: image (id)`, one per service.
    images: Vec<String>,
    /// The hooks that ran, in order (SPEC §11).
    hooks: Vec<HookRunView>,
    /// A rollback to this row's commit is offered: it succeeded, and the stack runs another
    /// commit now.
    rollback: bool,
}

impl DeploymentRow {
    /// `running`: the commit the stack runs now; `controls`: the operator's buttons are shown
    /// (reconciling is on).
    fn new(d: &Deployment, running: Option<&str>, controls: bool) -> Self {
        Self {
            id: d.id.to_string(),
            started_at: Stamp::new(Some(d.started_at), ""),
            duration: format_duration(
                d.finished_at
                    .duration_since(d.started_at)
                    .unwrap_or_default(),
            ),
            trigger: d.trigger.as_str().to_owned(),
            revision_short: short_revision(&d.revision, "—"),
            revision: d.revision.clone(),
            commit_message: first_line(Some(&d.commit_message)),
            outcome: d.outcome.as_str().to_owned(),
            reason: d.reason.clone().unwrap_or_default(),
            images: d
                .images
                .iter()
                .map(|i| {
                    image_text(
                        &i.service,
                        &i.image,
                        i.image_id.as_deref().unwrap_or_default(),
                    )
                })
                .collect(),
            hooks: d.hooks.iter().map(HookRunView::new).collect(),
            rollback: controls
                && d.outcome == Outcome::Succeeded
                && running.is_none_or(|r| r != d.revision),
        }
    }
}

/// A hook that ran during a deployment; `hookItem` in the script is its twin.
#[derive(Debug)]
struct HookRunView {
    phase: String,
    service: String,
    /// `exit 0`, or why there is no exit code; `exitText` in the script.
    exit: String,
    /// It did not exit with 0.
    failed: bool,
    /// The end of what it wrote (empty: nothing).
    output: String,
}

impl HookRunView {
    fn new(h: &HookRun) -> Self {
        Self {
            phase: h.phase.clone(),
            service: h.service.clone(),
            exit: match h.exit_code {
                Some(code) => format!("exit {code}"),
                None => "no exit code (timed out or did not start)".into(),
            },
            failed: h.exit_code != Some(0),
            output: h.output.clone(),
        }
    }
}

/// `web: nginx:1.27 (sha256:0123456789ab)`; `imageText` in the script.
fn image_text(service: &str, image: &str, image_id: &str) -> String {
    let id: String = image_id.chars().take(7 + SHORT_REVISION).collect();
    if id.is_empty() {
        format!("{service}: {image}")
    } else {
        format!("{service}: {image} ({id})")
    }
}

#[derive(Template)]
#[template(path = "stack.html", config = "src/http/dashboard/askama.toml")]
struct StackPage {
    header: Header,
    s: DetailView,
    containers: Vec<ContainerRow>,
    containers_error: String,
    /// Newest first.
    history: Vec<DeploymentRow>,
    /// Why the history cannot be shown (empty: it can).
    history_error: String,
    /// Reconciling is on: the operator's buttons are shown.
    controls: bool,
    /// The empty row the script clones for a deployment announced live.
    blank_deployment: DeploymentRow,
}

#[derive(Template)]
#[template(path = "not_found.html", config = "src/http/dashboard/askama.toml")]
struct NotFoundPage {
    header: Header,
    path: String,
}

/// The grid for `GET /` from a browser.
pub(super) fn grid_page(state: &AppState, query: &GridQuery) -> Response {
    let stacks = state.store.stacks();
    let cards: Vec<CardView> = stacks.iter().map(|r| CardView::new(r, query)).collect();
    let chips = Chip::row(
        "all",
        STATUSES.iter().map(|s| s.wire_name()),
        &cards,
        |c| &c.status,
        &query.status,
    );
    let health_chips = Chip::row(
        "any health",
        Health::ALL.iter().map(|h| h.wire_name()),
        &cards,
        |c| &c.health,
        &query.health,
    );
    let control_chips = Chip::row(
        "any control",
        CONTROLS.iter().map(|c| (*c).to_owned()),
        &cards,
        |c| &c.control,
        &query.control,
    );
    let empty_reason = if cards.is_empty() {
        "none"
    } else if cards.iter().all(|c| c.hidden) {
        "filter"
    } else {
        ""
    };
    let page = DashboardPage {
        header: Header::new(state),
        chips,
        health_chips,
        control_chips,
        running: cards.iter().map(|c| c.running).sum(),
        containers: cards.iter().map(|c| c.total).sum(),
        cards,
        blank: CardView::blank(),
        query: query.q.clone(),
        empty_reason,
    };
    html(StatusCode::OK, page.render())
}

/// `GET /stacks/{path}`: one stack, its containers (read from the engine, shared with other
/// views of the moment) and its history.
pub(super) async fn stack_page(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Response {
    let Some(record) = state.store.stack(&path) else {
        let page = NotFoundPage {
            header: Header::new(&state),
            path,
        };
        return html(StatusCode::NOT_FOUND, page.render());
    };
    let (containers, containers_error) =
        match state.engine.describe(record.project_name.as_deref()).await {
            Ok(stack) => (
                stack
                    .containers
                    .iter()
                    .cloned()
                    .map(ContainerRow::from)
                    .collect(),
                String::new(),
            ),
            Err(e) => (Vec::new(), state.info.errors.render(&*e).into_string()),
        };
    let running = record.sync.synced_revision.as_deref();
    let controls = state.reconcile.is_some();
    let (history, history_error) = match state.reconcile.as_ref().map(|h| h.history(&path)) {
        Some(Ok(deployments)) => (
            deployments
                .iter()
                .map(|d| DeploymentRow::new(d, running, controls))
                .collect(),
            String::new(),
        ),
        // The stack went away between the two reads: the next event says so.
        Some(Err(e)) => (Vec::new(), e.to_string()),
        None => (Vec::new(), String::new()),
    };
    let page = StackPage {
        header: Header::new(&state),
        s: DetailView::new(&record),
        containers,
        containers_error,
        history,
        history_error,
        controls,
        blank_deployment: DeploymentRow::default(),
    };
    html(StatusCode::OK, page.render())
}

/// A rendered page with the dashboard's security headers; a render error is logged and
/// answered with a plain 500.
fn html(status: StatusCode, rendered: askama::Result<String>) -> Response {
    match rendered {
        Ok(body) => {
            let mut response = (status, Html(body)).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            );
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => ApiError::internal("cannot render a dashboard page", e).into_response(),
    }
}

/// An embedded file with its content type and an `ETag` of its content.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: String,
}

impl Asset {
    fn new(body: &'static str, content_type: &'static str) -> Self {
        let digest = Sha256::digest(body.as_bytes());
        Self {
            body,
            content_type,
            etag: format!("\"{}\"", &hex::encode(digest)[..16]),
        }
    }
}

static SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_str!("assets/dashboard.js"),
        "text/javascript; charset=utf-8",
    )
});
static STYLE: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_str!("assets/dashboard.css"),
        "text/css; charset=utf-8",
    )
});
static ICON: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(include_str!("assets/favicon.svg"), "image/svg+xml"));

/// `GET /assets/{name}`: the embedded script, stylesheet and icon. Browsers revalidate them on
/// each load (`no-cache` with an `ETag`), so a new binary's files are picked up at once.
pub(super) async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let asset: &Asset = match name.as_str() {
        "dashboard.js" => &SCRIPT,
        "dashboard.css" => &STYLE,
        "favicon.svg" => &ICON,
        _ => {
            return ApiError::NotFound("no such asset".into()).into_response();
        }
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == asset.etag));
    let cache = [
        (header::CACHE_CONTROL, "no-cache"),
        (header::ETAG, asset.etag.as_str()),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        cache,
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        asset.body,
    )
        .into_response()
}

/// The operator's hold on a stack, as the grid's control filter names it: `suspended`, else
/// `pinned`, else empty (`controlName` in the script).
fn control_name(record: &StackRecord) -> &'static str {
    if record.sync.suspended {
        "suspended"
    } else if record.sync.pinned_revision.is_some() {
        "pinned"
    } else {
        ""
    }
}

/// `after db, cache` for a `dependsOn` (empty: none); `afterText` in the script.
fn after_text(depends_on: &[String]) -> String {
    if depends_on.is_empty() {
        String::new()
    } else {
        format!("after {}", depends_on.join(", "))
    }
}

/// `web: nginx:1.27, worker: redis:7 (update failed)`: the services with an update available;
/// empty when none (`updatesText` in the script).
fn updates_text(images: &[ImageStatus]) -> String {
    images
        .iter()
        .filter(|i| i.update_available)
        .map(|i| {
            let failed = if i.update_failed {
                " (update failed)"
            } else {
                ""
            };
            format!("{}: {}{failed}", i.service, i.image)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `web: registry.example.com refused the credentials`, one line per service the registry
/// could not be asked for; empty when none (`imageErrorsText` in the script).
fn image_errors_text(images: &[ImageStatus]) -> String {
    images
        .iter()
        .filter_map(|i| i.error.as_ref().map(|e| format!("{}: {e}", i.service)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A unit enum's name as the JSON API writes it (`revert`), so the page and the API agree.
fn wire_text(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

fn status_name(record: &StackRecord) -> String {
    record.sync.status.wire_name()
}

/// The first [`SHORT_REVISION`] characters, or `absent`.
fn short_revision(revision: &str, absent: &str) -> String {
    if revision.is_empty() {
        absent.to_owned()
    } else {
        revision.chars().take(SHORT_REVISION).collect()
    }
}

/// A commit message's subject line.
fn first_line(message: Option<&str>) -> String {
    message
        .and_then(|m| m.lines().next())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// `850 ms`, `4.2 s`, `3 min 5 s`.
fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} min {} s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired_state::{DesiredStack, SyncInfo};

    fn record(path: &str, status: StackStatus) -> StackRecord {
        let desired = DesiredStack {
            path: path.into(),
            project_name: Some(path.to_lowercase()),
            compose_file: "compose.yaml".into(),
            compose_hash: None,
            content_hash: "0123456789abcdef0123".into(),
            compose_blob: None,
            warnings: vec![],
            error: None,
            settings: None,
        };
        StackRecord::new(&desired, &SyncInfo::new(status))
    }

    #[test]
    fn query_strings_are_parsed_leniently() {
        let q = GridQuery::parse(Some("status=failed&q=Web"));
        assert_eq!((q.status.as_str(), q.q.as_str()), ("failed", "Web"));
        let q = GridQuery::parse(Some("status=bogus&x=1"));
        assert_eq!((q.status.as_str(), q.q.as_str()), ("", ""));
        let q = GridQuery::parse(Some("q=%ZZ&&=="));
        assert_eq!(q.status, "");
        assert_eq!(GridQuery::parse(None).q, "");
    }

    #[test]
    fn every_status_the_api_names_is_a_filter() {
        for status in [
            "missing", "syncing", "synced", "failed", "drifted", "orphaned", "deleting",
        ] {
            let query = GridQuery::parse(Some(&format!("status={status}")));
            assert_eq!(query.status, status);
        }
    }

    #[test]
    fn the_filter_matches_status_and_a_case_insensitive_path_substring() {
        let web = record("Web-App", StackStatus::Failed);
        assert!(GridQuery::parse(Some("q=app")).matches(&web));
        assert!(GridQuery::parse(Some("q=+WEB+")).matches(&web));
        assert!(GridQuery::parse(Some("status=failed&q=web")).matches(&web));
        assert!(!GridQuery::parse(Some("status=synced")).matches(&web));
        assert!(!GridQuery::parse(Some("q=cache")).matches(&web));
    }

    #[test]
    fn cards_escape_what_comes_from_git_and_the_host() {
        let mut evil = record("<img src=x onerror=alert(1)>", StackStatus::Failed);
        evil.sync.last_sync_error = Some("error: \"<script>alert('x')</script>\" & more".into());
        evil.sync.synced_commit_message = Some("<b>bold</b> subject\nSECOND LINE".into());
        let page = DashboardPage {
            header: Header {
                repo: "https://example.invalid/<repo>.git".into(),
                revision: "main".into(),
                deploy_dir: "stacks".into(),
                refresh: RefreshView::new(&RefreshStatus::initial("main".into())),
                token_required: false,
            },
            chips: vec![],
            health_chips: vec![],
            control_chips: vec![],
            cards: vec![CardView::new(&evil, &GridQuery::default())],
            blank: CardView::blank(),
            query: "\"><script>".into(),
            running: 0,
            containers: 0,
            empty_reason: "",
        };
        let html = page.render().unwrap();
        for raw in [
            "<img src=x",
            "<script>alert",
            "<b>bold</b>",
            "<repo>",
            "\"><script>",
        ] {
            assert!(!html.contains(raw), "{raw:?} is not escaped");
        }
        assert!(
            html.contains("&#60;img src=x onerror=alert(1)&#62;"),
            "{html}"
        );
        assert!(html.contains("href=\"/stacks/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E\""));
        assert!(html.contains("&#60;b&#62;bold&#60;/b&#62; subject"));
        assert!(
            !html.contains("SECOND LINE"),
            "only the subject line is shown"
        );
        // No inline script or handler anywhere: the CSP forbids them.
        assert!(!html.contains("<script>"));
        assert!(!html.contains(" onclick="));
    }

    #[test]
    fn the_blank_card_hides_every_optional_part() {
        let page = DashboardPage {
            header: Header {
                repo: String::new(),
                revision: String::new(),
                deploy_dir: String::new(),
                refresh: RefreshView::new(&RefreshStatus::initial("main".into())),
                token_required: true,
            },
            chips: vec![],
            health_chips: vec![],
            control_chips: vec![],
            cards: vec![],
            blank: CardView::blank(),
            query: String::new(),
            running: 0,
            containers: 0,
            empty_reason: "none",
        };
        let html = page.render().unwrap();
        let template = html
            .split("<template id=\"card-template\">")
            .nth(1)
            .and_then(|t| t.split("</template>").next())
            .unwrap();
        assert!(
            template.contains("data-field=\"health\" data-health=\"\" title=\"\"></span>"),
            "the health badge is an empty slot: {template}"
        );
        for field in [
            "project",
            "not-in-git",
            "suspended-in-git",
            "depends-on",
            "drift",
            "error",
            "warnings",
        ] {
            let slot = format!("data-field=\"{field}\" hidden");
            assert!(
                template.contains(&slot),
                "{field} is not hidden: {template}"
            );
        }
        assert!(
            template.contains("data-field=\"blocked-by\" title=\"\" hidden></span>"),
            "{template}"
        );
        for field in ["updates", "image-errors"] {
            let slot = format!("data-field=\"{field}\" title=\"\" hidden>");
            assert!(template.contains(&slot), "{field}: {template}");
        }
        assert!(template.contains("data-action=\"ack\" data-path=\"\" hidden"));
        assert!(html.contains("data-token-required=\"true\""));
    }

    fn header() -> Header {
        Header {
            repo: String::new(),
            revision: String::new(),
            deploy_dir: String::new(),
            refresh: RefreshView::new(&RefreshStatus::initial("main".into())),
            token_required: false,
        }
    }

    fn with_health(mut record: StackRecord, health: Health, message: Option<&str>) -> StackRecord {
        record.sync.health = health;
        record.sync.health_message = message.map(str::to_owned);
        record
    }

    #[test]
    fn every_health_the_api_names_is_a_filter_and_others_are_ignored() {
        for health in [
            "healthy",
            "progressing",
            "degraded",
            "missing",
            "suspended",
            "unknown",
        ] {
            let query = GridQuery::parse(Some(&format!("health={health}&status=failed")));
            assert_eq!(
                (query.health.as_str(), query.status.as_str()),
                (health, "failed")
            );
        }
        let query = GridQuery::parse(Some("health=synced&status=failed"));
        assert_eq!(
            (query.health.as_str(), query.status.as_str()),
            ("", "failed")
        );
    }

    #[test]
    fn the_filter_matches_health_together_with_status_and_path() {
        let web = with_health(record("web", StackStatus::Failed), Health::Degraded, None);
        assert!(GridQuery::parse(Some("health=degraded")).matches(&web));
        assert!(GridQuery::parse(Some("health=degraded&status=failed&q=we")).matches(&web));
        assert!(!GridQuery::parse(Some("health=healthy")).matches(&web));
        assert!(!GridQuery::parse(Some("health=degraded&status=synced")).matches(&web));
        assert!(!GridQuery::parse(Some("health=degraded&q=db")).matches(&web));
    }

    #[test]
    fn cards_carry_a_health_badge_with_its_message_as_an_escaped_tooltip() {
        let web = with_health(
            record("web", StackStatus::Synced),
            Health::Degraded,
            Some("web: unhealthy: \"<script>alert(1)</script>\""),
        );
        let db = with_health(record("db", StackStatus::Synced), Health::Healthy, None);
        let query = GridQuery::parse(Some("health=healthy"));
        let cards = vec![CardView::new(&db, &query), CardView::new(&web, &query)];
        let page = DashboardPage {
            header: header(),
            chips: vec![],
            health_chips: Chip::row(
                "any health",
                Health::ALL.iter().map(|h| h.wire_name()),
                &cards,
                |c| &c.health,
                &query.health,
            ),
            control_chips: vec![],
            cards,
            blank: CardView::blank(),
            query: String::new(),
            running: 0,
            containers: 0,
            empty_reason: "",
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains(
                "<span class=\"badge health\" data-field=\"health\" data-health=\"degraded\" \
                 title=\"web: unhealthy: &#34;&#60;script&#62;alert(1)&#60;/script&#62;&#34;\">degraded</span>"
            ),
            "{html}"
        );
        assert!(
            html.contains(
                "<span class=\"badge health\" data-field=\"health\" data-health=\"healthy\" title=\"\">healthy</span>"
            ),
            "{html}"
        );
        // The health filter hides the degraded card; the status badge is still first.
        assert!(
            html.contains(
                "data-path=\"web\" data-status=\"synced\" data-health=\"degraded\" data-control=\"\" hidden>"
            )
        );
        assert!(html.contains(
            "data-path=\"db\" data-status=\"synced\" data-health=\"healthy\" data-control=\"\">"
        ));
        // One chip per health and "any health", counted, the filtered one pressed.
        let chips = html
            .split("aria-label=\"filter by health\"")
            .nth(1)
            .and_then(|t| t.split("</div>").next())
            .unwrap();
        assert_eq!(chips.matches("data-filter-health=").count(), 7, "{chips}");
        assert!(chips.contains(
            "value=\"healthy\" class=\"chip\" data-filter-health=\"healthy\" data-health=\"healthy\" aria-pressed=\"true\">healthy <span class=\"count\" data-health-count=\"healthy\">1</span>"
        ), "{chips}");
        assert!(chips.contains(
            "data-filter-health=\"degraded\" data-health=\"degraded\" aria-pressed=\"false\">degraded <span class=\"count\" data-health-count=\"degraded\">1</span>"
        ), "{chips}");
        assert!(chips.contains(
            "data-filter-health=\"\" data-health=\"\" aria-pressed=\"false\">any health <span class=\"count\" data-health-count=\"\">2</span>"
        ), "{chips}");
        assert!(
            chips.contains("data-health-count=\"suspended\">0</span>"),
            "{chips}"
        );
    }

    #[test]
    fn the_stack_page_shows_health_beside_status_and_says_why() {
        let page = |record: &StackRecord| {
            StackPage {
                header: header(),
                s: DetailView::new(record),
                containers: vec![],
                containers_error: String::new(),
                history: vec![],
                history_error: String::new(),
                controls: false,
                blank_deployment: DeploymentRow::default(),
            }
            .render()
            .unwrap()
        };
        let html = page(&with_health(
            record("web", StackStatus::Failed),
            Health::Degraded,
            Some("worker: restarting (exit code 1, 5 restarts) <b>"),
        ));
        assert!(
            html.contains(
                "<span class=\"badge\" data-status=\"failed\">failed</span>\n    \
                 <span class=\"badge health\" id=\"health\" data-health=\"degraded\" \
                 title=\"worker: restarting (exit code 1, 5 restarts) &#60;b&#62;\">degraded</span>"
            ),
            "{html}"
        );
        assert!(
            html.contains(
                "<p class=\"health-message\" id=\"health-message\" data-health=\"degraded\">\
                 Health: worker: restarting (exit code 1, 5 restarts) &#60;b&#62;</p>"
            ),
            "{html}"
        );
        assert!(!html.contains("<b>"), "{html}");
        let html = page(&with_health(
            record("web", StackStatus::Synced),
            Health::Healthy,
            None,
        ));
        assert!(html.contains("data-health=\"healthy\" title=\"\">healthy</span>"));
        assert!(!html.contains("health-message"), "{html}");
    }

    fn deployment(id: u64, revision: &str, outcome: Outcome, reason: Option<&str>) -> Deployment {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_347_000);
        Deployment {
            id,
            stack: "web".into(),
            revision: revision.into(),
            commit_message: "<b>subject</b>\nbody".into(),
            content_hash: "c0ffee".into(),
            trigger: crate::history::Trigger::Commit,
            started_at: at,
            finished_at: at + Duration::from_secs(4),
            outcome,
            reason: reason.map(str::to_owned),
            images: vec![crate::history::DeployedImage {
                service: "app".into(),
                image: "busybox:1.36".into(),
                image_id: Some("sha256:0123456789abcdef0123".into()),
            }],
            hooks: Vec::new(),
        }
    }

    fn stack_page(record: &StackRecord, history: &[Deployment], controls: bool) -> String {
        let running = record.sync.synced_revision.as_deref();
        StackPage {
            header: header(),
            s: DetailView::new(record),
            containers: vec![],
            containers_error: String::new(),
            history: history
                .iter()
                .map(|d| DeploymentRow::new(d, running, controls))
                .collect(),
            history_error: String::new(),
            controls,
            blank_deployment: DeploymentRow::default(),
        }
        .render()
        .unwrap()
    }

    #[test]
    fn the_history_offers_a_rollback_only_to_succeeded_deployments_of_another_commit() {
        let mut web = record("web", StackStatus::Synced);
        web.sync.synced_revision = Some("bbbb".into());
        let history = [
            deployment(3, "bbbb", Outcome::Succeeded, None),
            deployment(2, "cccc", Outcome::Failed, Some("web: <i>unhealthy</i>")),
            deployment(1, "aaaa", Outcome::Succeeded, None),
        ];
        let html = stack_page(&web, &history, true);
        let rows: Vec<&str> = html.split("<tr data-deployment=").skip(1).collect();
        // Three rows and the blank one of the template.
        assert_eq!(rows.len(), 4, "{html}");
        assert!(
            rows[0].contains("data-revision=\"bbbb\" hidden>"),
            "{}",
            rows[0]
        );
        assert!(
            rows[1].contains("data-revision=\"cccc\" hidden>"),
            "{}",
            rows[1]
        );
        assert!(
            rows[2].contains("data-revision=\"aaaa\">Roll back to this"),
            "{}",
            rows[2]
        );
        assert!(rows[3].starts_with("\"\" data-outcome=\"\""), "{}", rows[3]);
        assert!(rows[1].contains("data-outcome=\"failed\">failed</span>"));
        assert!(
            rows[1].contains("web: &#60;i&#62;unhealthy&#60;/i&#62;"),
            "{}",
            rows[1]
        );
        assert!(rows[0].contains("&#60;b&#62;subject&#60;/b&#62;"));
        assert!(!html.contains("<b>subject") && !html.contains("<i>unhealthy"));
        assert!(rows[0].contains("<code>app: busybox:1.36 (sha256:0123456789ab)</code>"));
        assert!(rows[0].contains(">4.0 s</span>"), "{}", rows[0]);
        assert!(rows[0].contains("datetime=\"2025-11-28T16:23:20Z\""));
        // The operator's buttons; no unpin or resume for a stack that is neither.
        assert!(
            html.contains("data-action=\"sync\" data-path=\"web\">Sync now"),
            "{html}"
        );
        assert!(html.contains("data-action=\"unpin\" data-path=\"web\" hidden>"));
        assert!(html.contains("data-action=\"suspend\" data-path=\"web\">Suspend"));
        assert!(html.contains("data-action=\"resume\" data-path=\"web\" hidden>"));
        assert!(html.contains("id=\"stack-diff\""));
        assert!(html.contains("data-running=\"bbbb\" data-controls=\"true\""));

        // Without reconciling: no buttons at all, and the page says why nothing is recorded.
        let html = stack_page(&web, &[], false);
        assert!(!html.contains("data-action=\"sync\""));
        assert!(html.contains("Reconciling is disabled"), "{html}");
        assert!(!html.contains("Roll back to this</button>\n</tr>\n\n  </tbody>"));
    }

    #[test]
    fn a_pinned_or_suspended_stack_says_so_on_its_page_and_its_card() {
        let mut web = record("web", StackStatus::Synced);
        web.sync.pinned_revision = Some("e55f32bec0b1e7ca08085a6d120683ba0e804db8".into());
        let html = stack_page(&web, &[], true);
        assert!(html.contains("id=\"pinned-note\""), "{html}");
        assert!(html.contains("data-action=\"unpin\" data-path=\"web\">Unpin"));
        let card = CardView::new(&web, &GridQuery::parse(Some("control=pinned")));
        assert_eq!(
            (card.pinned.as_str(), card.control.as_str(), card.hidden),
            ("e55f32b", "pinned", false)
        );
        assert!(CardView::new(&web, &GridQuery::parse(Some("control=suspended"))).hidden);

        web.sync.suspended = true;
        let html = stack_page(&web, &[], true);
        assert!(html.contains("id=\"suspended-note\""));
        assert!(html.contains("data-action=\"sync\" data-path=\"web\" hidden>"));
        assert!(html.contains("data-action=\"resume\" data-path=\"web\">Resume"));
        let card = CardView::new(&web, &GridQuery::parse(Some("control=suspended")));
        assert_eq!((card.control.as_str(), card.hidden), ("suspended", false));
        let page = DashboardPage {
            header: header(),
            chips: vec![],
            health_chips: vec![],
            control_chips: vec![],
            cards: vec![card],
            blank: CardView::blank(),
            query: String::new(),
            running: 0,
            containers: 0,
            empty_reason: "",
        };
        let html = page.render().unwrap();
        assert!(
            html.contains("data-field=\"pinned\" title=\"e55f32bec0b1e7ca08085a6d120683ba0e804db8\">pinned e55f32b</span>"),
            "{html}"
        );
        assert!(html.contains("data-field=\"suspended\">suspended</span>"));
        assert!(html.contains("data-control=\"suspended\""));
        assert_eq!(GridQuery::parse(Some("control=bogus")).control, "");
    }

    fn grid(cards: Vec<CardView>) -> String {
        DashboardPage {
            header: header(),
            chips: vec![],
            health_chips: vec![],
            control_chips: vec![],
            cards,
            blank: CardView::blank(),
            query: String::new(),
            running: 0,
            containers: 0,
            empty_reason: "",
        }
        .render()
        .unwrap()
    }

    /// Every key set, with hostile text where the type allows any.
    fn hostile_settings() -> StackSettings {
        use crate::desired_state::settings::Hooks;
        StackSettings {
            suspend: Some(false),
            drift: Some(crate::config::DriftPolicy::Ignore),
            health_timeout: Some(Duration::from_secs(90)),
            rollback_on_failure: Some(true),
            depends_on: vec!["db".into(), "<script>alert(1)</script>".into()],
            files: vec!["compose.yaml".into(), "compose.prod.yaml".into()],
            profiles: vec!["prod".into()],
            hooks: Hooks {
                pre_sync: vec![Hook {
                    service: "migrate".into(),
                    command: vec!["sh".into(), "-c".into(), "echo '<script>x</script>'".into()],
                }],
                post_sync: vec![Hook {
                    service: "web".into(),
                    command: vec![],
                }],
            },
            sync_windows: Some(vec![
                crate::schedule::SyncWindow::new("0 2 * * 6", Duration::from_secs(7200)).unwrap(),
            ]),
            image_updates: Some(false),
        }
    }

    #[test]
    fn the_stack_page_lists_every_setting_from_git_escaped_and_links_the_dependencies() {
        let mut web = record("web", StackStatus::Synced);
        web.settings = hostile_settings();
        let html = stack_page(&web, &[], true);
        let settings = html
            .split("<dl class=\"fields settings\" id=\"settings\">")
            .nth(1)
            .and_then(|t| t.split("</dl>").next())
            .unwrap_or_else(|| panic!("no settings: {html}"));
        let keys: Vec<&str> = settings
            .split("data-setting=\"")
            .skip(1)
            .filter_map(|t| t.split('"').next())
            .collect();
        assert_eq!(
            keys,
            [
                "suspend",
                "drift",
                "healthTimeout",
                "rollbackOnFailure",
                "dependsOn",
                "files",
                "profiles",
                "hooks",
                "syncWindows",
                "imageUpdates"
            ]
        );
        for shown in [
            "<dt><code>suspend</code></dt><dd><code>false</code></dd>",
            "<dt><code>drift</code></dt><dd><code>ignore</code></dd>",
            "<dt><code>healthTimeout</code></dt><dd><code>1m 30s</code></dd>",
            "<dt><code>rollbackOnFailure</code></dt><dd><code>true</code></dd>",
            "<dd><a href=\"/stacks/db\">db</a>, <a href=\"/stacks/%3Cscript%3Ealert%281%29%3C%2Fscript%3E\">&#60;script&#62;alert(1)&#60;/script&#62;</a></dd>",
            "<dd><code>compose.yaml</code>, <code>compose.prod.yaml</code></dd>",
            "<dd><code>prod</code></dd>",
            "<li data-phase=\"preSync\"><span class=\"phase\">preSync</span> <code>migrate</code> \
             <code>[&#34;sh&#34;,&#34;-c&#34;,&#34;echo &#39;&#60;script&#62;x&#60;/script&#62;&#39;&#34;]</code></li>",
            "<li data-phase=\"postSync\"><span class=\"phase\">postSync</span> <code>web</code> \
             <span class=\"meta\">its own command</span></li>",
            "<li><code>0 2 * * 6</code> (UTC) for <code>2h</code></li>",
            "<dt><code>imageUpdates</code></dt><dd><code>false</code></dd>",
        ] {
            assert!(settings.contains(shown), "{shown:?} in {settings}");
        }
        // The dependencies beside the other fields too, as links.
        assert!(html.contains(
            "<dd id=\"depends-on\"><a href=\"/stacks/db\">db</a>, <a href=\"/stacks/%3Cscript%3E"
        ));
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("id=\"no-settings\""));

        // No windows at all is said apart from no windows set (SYNC_WINDOWS applies).
        web.settings = StackSettings {
            sync_windows: Some(vec![]),
            ..StackSettings::default()
        };
        let html = stack_page(&web, &[], true);
        assert!(html.contains(
            "<dt><code>syncWindows</code></dt><dd><span class=\"meta\">none: always open</span></dd>"
        ), "{html}");
        assert!(!html.contains("id=\"depends-on\""));
    }

    #[test]
    fn a_stack_without_settings_says_none() {
        let html = stack_page(&record("web", StackStatus::Synced), &[], true);
        assert!(
            html.contains("<h3>Settings <small>(x-docker-cd)</small></h3>\n  <p class=\"empty\" id=\"no-settings\">none</p>"),
            "{html}"
        );
        assert!(!html.contains("id=\"settings\""));
        assert!(!html.contains("id=\"blocked-by\"") && !html.contains("id=\"waiting\""));
        assert!(!html.contains("suspended-in-git-note"));
    }

    #[test]
    fn what_holds_a_stack_back_is_on_its_card_and_prominent_on_its_page() {
        let mut web = record("web", StackStatus::Synced);
        web.settings.depends_on = vec!["db".into(), "cache <b>".into()];
        web.sync.blocked_by = Some("waiting for db (progressing) <i>".into());
        let card = CardView::new(&web, &GridQuery::default());
        let html = grid(vec![card]);
        assert!(
            html.contains(
                "<span class=\"tag wait\" data-field=\"blocked-by\" \
                 title=\"waiting for db (progressing) &#60;i&#62;\">waiting for db (progressing) &#60;i&#62;</span>"
            ),
            "{html}"
        );
        assert!(
            html.contains(
                "<span class=\"tag\" data-field=\"depends-on\">after db, cache &#60;b&#62;</span>"
            ),
            "{html}"
        );
        assert!(html.contains(
            "data-field=\"suspended-in-git\" hidden title=\"x-docker-cd.suspend: true\">"
        ));
        assert!(!html.contains("<i>") && !html.contains("<b>"));

        let page = stack_page(&web, &[], true);
        assert!(
            page.contains("<span class=\"badge wait\" id=\"waiting\" title=\"waiting for db (progressing) &#60;i&#62;\">waiting</span>"),
            "{page}"
        );
        assert!(
            page.contains(
                "<p class=\"hold wait\" id=\"blocked-by\"><strong>Automatic syncs wait:</strong> \
                 <span id=\"blocked-by-text\">waiting for db (progressing) &#60;i&#62;</span>."
            ),
            "{page}"
        );
        assert!(page.contains("data-action=\"sync\" data-path=\"web\">Sync now"));

        // Suspended by Git: its own badge and note, apart from the operator's; no sync button.
        web.sync.blocked_by = None;
        web.sync.suspended_in_git = true;
        web.sync.health = Health::Suspended;
        let card = CardView::new(&web, &GridQuery::parse(Some("control=suspended")));
        assert!(
            card.hidden,
            "the control filter counts the operator's holds only"
        );
        let html = grid(vec![card]);
        assert!(html.contains(
            "data-field=\"suspended-in-git\" title=\"x-docker-cd.suspend: true\">suspended in Git</span>"
        ));
        assert!(html.contains("data-field=\"suspended\" hidden>suspended</span>"));
        assert!(html.contains("data-field=\"blocked-by\" title=\"\" hidden></span>"));
        let page = stack_page(&web, &[], true);
        assert!(page.contains("id=\"suspended-in-git-note\""), "{page}");
        assert!(!page.contains("id=\"suspended-note\""));
        assert!(!page.contains("id=\"blocked-by\""));
        assert!(page.contains("data-action=\"sync\" data-path=\"web\" hidden>"));
        assert!(page.contains("data-action=\"resume\" data-path=\"web\" hidden>"));
    }

    const RUNNING: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const LATEST: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(service: &str, image: &str) -> ImageStatus {
        ImageStatus {
            service: service.into(),
            image: image.into(),
            digest: Some(RUNNING.into()),
            latest_digest: Some(RUNNING.into()),
            update_available: false,
            error: None,
            image_id: None,
            update_failed: false,
        }
    }

    /// One service of each status, with hostile text where a registry or a compose file can
    /// put any.
    fn checked_images() -> Vec<ImageStatus> {
        let newer = ImageStatus {
            latest_digest: Some(LATEST.into()),
            update_available: true,
            ..image("web", "nginx:1.27")
        };
        let failed = ImageStatus {
            digest: None,
            update_failed: true,
            ..newer.clone()
        };
        let broken = ImageStatus {
            digest: None,
            latest_digest: None,
            error: Some(
                "registry.example.com refused the credentials: <script>alert(1)</script>".into(),
            ),
            ..image(
                "cache",
                "registry.example.com/<img src=x onerror=alert(1)>:7",
            )
        };
        vec![
            image("db", "postgres:16"),
            newer,
            ImageStatus {
                service: "worker".into(),
                ..failed
            },
            broken,
        ]
    }

    #[test]
    fn the_stack_page_shows_each_checked_image_with_its_status_escaped() {
        let mut web = record("web", StackStatus::Synced);
        web.sync.images = checked_images();
        web.sync.images_checked_at =
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_347_000));
        let html = stack_page(&web, &[], true);
        assert!(
            html.contains(
                "<p class=\"meta\" id=\"images-checked\">last checked \
                 <time datetime=\"2025-11-28T16:23:20Z\">2025-11-28 16:23:20 UTC</time> \
                 <button type=\"button\" data-action=\"check-images\">Check images now</button></p>"
            ),
            "{html}"
        );
        assert!(html.contains(
            "<thead><tr><th>service</th><th>image</th><th>running digest</th><th>registry digest</th><th>status</th></tr></thead>"
        ));
        let rows: Vec<&str> = html
            .split("<tr data-service=")
            .skip(1)
            .map(|r| r.split("</tr>").next().unwrap())
            .collect();
        assert_eq!(rows.len(), 4, "{html}");
        assert_eq!(
            rows[0],
            format!(
                "\"db\" data-image-status=\"up-to-date\"><td>db</td><td><code>postgres:16</code></td>\
                 <td><code title=\"{RUNNING}\">sha256:111111111111</code></td>\
                 <td><code title=\"{RUNNING}\">sha256:111111111111</code></td>\
                 <td><span class=\"badge\" data-image-status=\"up-to-date\">up to date</span></td>"
            )
        );
        assert!(
            rows[1].contains(&format!(
                "<td><code title=\"{LATEST}\">sha256:222222222222</code></td>\
                 <td><span class=\"badge\" data-image-status=\"update-available\">update available</span></td>"
            )),
            "{}",
            rows[1]
        );
        // Never pulled from its registry: no running digest, and the update failed.
        assert!(
            rows[2].contains(
                "<td><code title=\"\">not from a registry</code></td>\
                 <td><code title=\"sha256:2222"
            ),
            "{}",
            rows[2]
        );
        assert!(rows[2].contains(
            "<span class=\"badge\" data-image-status=\"update-failed\">update failed</span></td>"
        ));
        // The registry could not be asked: why, escaped, and no registry digest.
        assert!(
            rows[3].contains(
                "<td><code>registry.example.com/&#60;img src=x onerror=alert(1)&#62;:7</code></td>"
            ),
            "{}",
            rows[3]
        );
        assert!(
            rows[3].contains(
                "<td><code title=\"\">—</code></td><td><span class=\"badge\" data-image-status=\"error\">error</span> \
                 <span class=\"message\">registry.example.com refused the credentials: &#60;script&#62;alert(1)&#60;/script&#62;</span></td>"
            ),
            "{}",
            rows[3]
        );
        assert!(
            !html.contains("<script>") && !html.contains("<img"),
            "{html}"
        );
        assert!(!html.contains("id=\"no-images\""));

        // Without reconciling nothing is checked on request: no button.
        let html = stack_page(&web, &[], false);
        assert!(html.contains("id=\"images\""));
        assert!(!html.contains("data-action=\"check-images\""), "{html}");
    }

    #[test]
    fn a_stack_whose_images_are_not_checked_says_why() {
        let mut web = record("web", StackStatus::Synced);
        let html = stack_page(&web, &[], true);
        assert!(
            html.contains("<time datetime=\"\">never</time> <button type=\"button\" data-action=\"check-images\">"),
            "{html}"
        );
        assert!(html.contains("<p class=\"empty\" id=\"no-images\">Not checked yet"));
        assert!(!html.contains("id=\"images\""));

        web.sync.images_checked_at = Some(SystemTime::UNIX_EPOCH);
        let html = stack_page(&web, &[], true);
        assert!(html.contains(
            "id=\"no-images\">No service of this stack runs a tagged image from a registry.</p>"
        ));

        web.settings.image_updates = Some(false);
        let html = stack_page(&web, &[], true);
        assert!(html.contains("id=\"image-updates-off\""), "{html}");
        assert!(!html.contains("id=\"no-images\""));
    }

    #[test]
    fn cards_mark_available_updates_and_failed_checks_with_escaped_tooltips() {
        let mut web = record("web", StackStatus::Synced);
        web.sync.images = checked_images();
        let html = grid(vec![CardView::new(&web, &GridQuery::default())]);
        assert!(
            html.contains(
                "<span class=\"tag update\" data-field=\"updates\" \
                 title=\"web: nginx:1.27, worker: nginx:1.27 (update failed)\">update available</span>"
            ),
            "{html}"
        );
        assert!(
            html.contains(
                "<span class=\"tag warn\" data-field=\"image-errors\" \
                 title=\"cache: registry.example.com refused the credentials: &#60;script&#62;alert(1)&#60;/script&#62;\">\
                 image check failed</span>"
            ),
            "{html}"
        );
        assert!(!html.contains("<script>alert"));

        // Every image up to date (or none checked yet): neither tag.
        web.sync.images = vec![image("db", "postgres:16")];
        let html = grid(vec![CardView::new(&web, &GridQuery::default())]);
        assert!(html.contains("data-field=\"updates\" title=\"\" hidden>update available</span>"));
        assert!(
            html.contains(
                "data-field=\"image-errors\" title=\"\" hidden>image check failed</span>"
            )
        );
        // Several errors: one line each in the tooltip.
        let broken = |service: &str| ImageStatus {
            error: Some(format!("{service}.example.com: timed out")),
            ..image(service, "x:1")
        };
        web.sync.images = vec![broken("a"), broken("b")];
        let card = CardView::new(&web, &GridQuery::default());
        assert_eq!(
            card.image_errors,
            "a: a.example.com: timed out\nb: b.example.com: timed out"
        );
        assert_eq!(card.updates, "");
    }

    #[test]
    fn digests_are_shortened_to_their_algorithm_and_twelve_digits() {
        assert_eq!(short_digest(LATEST, "—"), "sha256:222222222222");
        assert_eq!(short_digest("", "—"), "—");
        assert_eq!(short_digest("abc", "—"), "abc");
    }

    #[test]
    fn the_history_shows_each_hook_with_its_output_folded_and_escaped() {
        let mut failed = deployment(2, "cccc", Outcome::Failed, Some("postSync hook failed"));
        failed.hooks = vec![
            HookRun {
                phase: "preSync".into(),
                service: "migrate".into(),
                exit_code: Some(0),
                output: "migrated 3 tables\n<script>alert(1)</script>".into(),
            },
            HookRun {
                phase: "postSync".into(),
                service: "web".into(),
                exit_code: None,
                output: String::new(),
            },
        ];
        let html = stack_page(
            &record("web", StackStatus::Failed),
            &[failed, deployment(1, "aaaa", Outcome::Succeeded, None)],
            true,
        );
        assert!(html.contains("<th>images</th><th>hooks</th><th></th>"));
        let rows: Vec<&str> = html.split("<tr data-deployment=").skip(1).collect();
        assert!(
            rows[0].contains(
                "<ul class=\"hooks\" data-field=\"hooks\"><li data-phase=\"preSync\" data-failed=\"false\">\
                 <span class=\"phase\">preSync</span> <code>migrate</code> <span class=\"exit\">exit 0</span>\
                 <details><summary>output</summary><pre>migrated 3 tables\n&#60;script&#62;alert(1)&#60;/script&#62;</pre></details></li>\
                 <li data-phase=\"postSync\" data-failed=\"true\"><span class=\"phase\">postSync</span> <code>web</code> \
                 <span class=\"exit\">no exit code (timed out or did not start)</span> <span class=\"meta\">no output</span></li></ul>"
            ),
            "{}",
            rows[0]
        );
        assert!(!html.contains("<script>alert"));
        // A deployment without hooks, and the blank row of the template, have an empty list.
        assert!(rows[1].contains("<ul class=\"hooks\" data-field=\"hooks\"></ul>"));
        assert!(rows[2].contains("<ul class=\"hooks\" data-field=\"hooks\"></ul>"));
    }

    #[test]
    fn stamps_and_durations_read_well() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_347_000);
        let stamp = Stamp::new(Some(t), "never");
        assert_eq!(stamp.iso, "2025-11-28T16:23:20Z");
        assert_eq!(stamp.text, "2025-11-28 16:23:20 UTC");
        assert_eq!(Stamp::new(None, "never").text, "never");
        assert_eq!(format_duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(format_duration(Duration::from_millis(4240)), "4.2 s");
        assert_eq!(format_duration(Duration::from_secs(185)), "3 min 5 s");
        assert_eq!(short_revision("", "—"), "—");
        assert_eq!(
            short_revision("e55f32bec0b1e7ca08085a6d120683ba0e804db8", "—"),
            "e55f32bec0b1"
        );
    }
}
