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
//! | foundation | [`config`], [`process`], [`desired_state`], [`queue`], [`metrics`], [`untrusted`] | settings; child processes; the snapshot and the cache; the single-slot queue; Prometheus metrics; untrusted text made safe to log and print |
//! | adapters | [`git`], [`compose`], [`swarm`], [`webhook`] | the `git` binary; `docker`/`docker compose`; `docker stack`/`docker service` on a swarm manager; GitHub webhook verification |
//! | workflows | [`refresh`], [`reconcile`] | the single-slot refresh queue; plan and apply |
//! | edge | [`http`] | the axum API |
//! | wiring | [`app`], [`cli`] | builds the pieces, runs them until shutdown; the `check`, `status` and `refresh` subcommands |
//!
//! Only [`process`] spawns children; only [`config`] reads the environment; [`http`] reaches
//! git and docker only through the workflows and adapters it is handed.

pub mod app;
pub mod cli;
pub mod compose;
pub mod config;
pub mod desired_state;
pub mod git;
pub mod http;
pub mod metrics;
pub mod process;
pub mod queue;
pub mod reconcile;
pub mod refresh;
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
