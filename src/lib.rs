//! docker-cd: GitOps continuous delivery for Docker Compose.
//!
//! It watches one Git repository, treats every directory under a deploy directory that holds a
//! compose file as a stack, keeps the desired state in memory, and reconciles the Docker host
//! with `docker compose` so that what runs is what Git says.
//!
//! Modules, in layers (a module uses only the layers below it):
//!
//! | layer | modules | owns |
//! |---|---|---|
//! | foundation | [`config`], [`process`], [`desired_state`], [`history`], [`queue`], [`metrics`], [`untrusted`], [`schedule`], [`sops`] | settings; child processes; the snapshot and the cache; the durable deployment history and stack controls (pins, suspensions); the single-slot queue; Prometheus metrics; untrusted text made safe to log and print; sync windows (cron in UTC with a duration); SOPS documents decrypted with age identities |
//! | adapters | [`git`], [`stack`], [`compose`], [`swarm`], [`webhook`], [`registry`] | the `git` binary; what both engines share (labels, the override, materialisation, a stack's files); `docker`/`docker compose`; `docker stack`/`docker service` on a swarm manager; GitHub webhook verification; a Docker registry's manifest digests over HTTPS, with credentials from the Docker client config |
//! | engine | [`engine`] | the one seam over compose and swarm: read actual state, apply, remove, describe, probe the host |
//! | workflows | [`refresh`], [`reconcile`], [`notify`] | the single-slot refresh queue; plan and apply; notifications and commit statuses from the store's events; [`reconcile::EngineView`], the edge's read-only handle on the engine |
//! | edge | [`http`] | the axum API |
//! | wiring | [`app`], [`cli`] | builds the pieces, chooses the engine once, runs them until shutdown; the `check`, `status` and `refresh` subcommands |
//!
//! Inside the foundation, dependencies point one way: [`queue`], [`metrics`], [`untrusted`] and
//! [`schedule`] use no other module; [`sops`] uses only [`untrusted`] (key paths and recipients
//! in its errors); [`config`] uses only [`schedule`] (for `SYNC_WINDOWS`; it hands the age
//! identities to [`app`] as secret text, which [`sops::Identities::parse`] reads);
//! [`process`] uses only [`untrusted`] (log lines) and reports every child to an observer that
//! [`app`] connects to [`metrics`]; [`desired_state`] uses [`config`], [`process`],
//! [`schedule`] (a stack's sync windows) and [`untrusted`] (for the errors it shows clients),
//! and nothing in the foundation uses it but [`history`], for its RFC 3339 helper only (the
//! API's timestamps); [`history`] is pure storage
//! under `DATA_DIR/history` and uses nothing else. [`desired_state`] and [`metrics`] know nothing
//! of each other: the cache hands `GET /metrics` a [`desired_state::Census`] of its own types,
//! and [`http`] turns it into a [`metrics::State`].
//!
//! Only [`process`] spawns children; only [`config`] reads the environment. Within the
//! adapters, [`compose`] and [`swarm`] use [`stack`] and never each other; [`registry`] uses
//! only [`config`] (its secret type) and [`untrusted`], and speaks HTTP itself. Only [`engine`]
//! decides between compose and swarm (the wiring picks which one, from `DEPLOY_MODE`); the
//! workflows reach docker only through it, and [`http`] reaches git and docker only through the
//! workflows' handles ([`reconcile::EngineView`] for the engine), never an adapter.

pub mod app;
pub mod cli;
pub mod compose;
pub mod config;
pub mod desired_state;
pub mod engine;
pub mod git;
pub mod history;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod process;
pub mod queue;
pub mod reconcile;
pub mod refresh;
pub mod registry;
pub mod schedule;
pub mod sops;
pub mod stack;
pub mod swarm;
pub mod untrusted;
pub mod webhook;

/// An error with its chain of causes, joined by `: `, for logs and API answers.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // thiserror's `transparent` and some io errors repeat their cause; skip exact repeats.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
