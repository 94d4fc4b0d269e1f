//! The integration tests that need no binary of their own, as modules of one test binary.
//!
//! Each `tests/*.rs` is a binary that links the whole crate, so every one costs a link after any
//! change to `src/`; these share one. Each module is the file it was (`cargo test --test
//! integration webhook::` runs one). Kept apart, each as its own binary: `reconcile_docker`
//! (CI runs it a second time with compose v1), `swarm_docker` (it puts the engine in swarm
//! mode), `refresh` and `edge` (they measure this process's memory, descriptors and threads,
//! which other tests in the same process would disturb), `faults_docker` and `browser` (the
//! slow real-engine and real-browser suites).
//!
//! All modules share one log capture and one process: [`common::TestApp::stop`]'s checks look
//! only at this instance's processes, and the harness's own test, which leaves a zombie on
//! purpose, holds [`common::PROCESS_SCAN`] exclusively while it does.

#[path = "../common/mod.rs"]
mod common;

mod api;
mod auth;
mod cli;
mod forges;
mod harness;
mod health;
mod incremental;
mod materialise;
mod metrics;
mod notify;
mod properties;
mod public_errors;
mod webhook;
