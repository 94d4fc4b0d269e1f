//! What errors readable without a token show (TESTPLAN X8): a stack's `lastSyncError` holds no
//! value from its compose file and no absolute path; the full text is in the debug log only.
//! Fast: the compose tool and the docker CLI are fakes that answer as the real ones would (the
//! same case against the real compose is in `tests/reconcile_docker.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::{TestApp, TestRepo, stack, write_executable};

/// A compose file whose interpolation error prints a secret-looking value.
const LEAKY_COMPOSE: &str =
    "services:\n  app:\n    image: x\n    environment:\n      PASSWORD: \"hunter2${\"\n";

#[tokio::test]
async fn x08_a_compose_error_shows_what_failed_without_the_files_values_or_absolute_paths() {
    let tools = tempfile::tempdir().unwrap();
    // A docker CLI on a host with no containers.
    let docker = tools.path().join("docker");
    write_executable(&docker, "#!/bin/sh\nexit 0\n");
    // A compose that fails `up` (the one compose run of a sync) as compose does on this file: naming the file by its
    // absolute path, then the interpolation error as 1.29 words it, then as v2 does.
    let compose = tools.path().join("docker-compose");
    write_executable(
        &compose,
        "#!/bin/sh\n\
         if [ \"$1\" = version ]; then echo 1.29.2; exit 0; fi\n\
         while [ $# -gt 0 ]; do [ \"$1\" = --file ] && file=\"$2\"; shift; done\n\
         echo \"ERROR: The Compose file '$file' is invalid because:\" >&2\n\
         echo 'Invalid interpolation format for \"environment\" option in service \"app\": \"hunter2${\"' >&2\n\
         echo 'invalid interpolation format for services.app.environment.PASSWORD.' >&2\n\
         echo 'You may need to escape any $ with another $.' >&2\n\
         echo 'hunter2${' >&2\n\
         exit 1\n",
    );
    let repo = TestRepo::new();
    repo.write("leaky/compose.yaml", LEAKY_COMPOSE);
    repo.commit_and_push("a broken value");
    let app = TestApp::start(&repo.url(), |a| {
        a.reconcile_enabled = "true".into();
        a.docker_bin = Some(docker.clone());
        a.compose_bin = Some(compose.clone());
    })
    .await;
    let stacks = app
        .wait_stacks(Duration::from_secs(60), |s| {
            s.iter()
                .any(|s| s["path"] == "leaky" && s["lastSyncError"].is_string())
        })
        .await;
    let error = stack(&stacks, "leaky")["lastSyncError"]
        .as_str()
        .unwrap()
        .to_owned();
    // What failed, the exit status, the useful part of the message.
    assert!(error.starts_with("compose up failed: "), "{error}");
    assert!(error.contains("exit code 1"), "{error}");
    assert!(error.contains("Invalid interpolation format"), "{error}");
    assert!(
        error.contains("services.app.environment.PASSWORD"),
        "{error}"
    );
    // No value, no absolute path, no command line.
    assert!(!error.contains("hunter2"), "{error}");
    let data_dir = app.data.path().join("data").display().to_string();
    assert!(!error.contains(&data_dir), "{error}");
    assert!(!error.contains(tools.path().to_str().unwrap()), "{error}");
    assert!(!error.contains("--project-directory"), "{error}");
    // The debug log has the whole text.
    let logs = common::logs();
    assert!(
        logs.lines().any(|l| l.contains("DEBUG")
            && l.contains("the full text of an error")
            && l.contains("hunter2${")
            && l.contains(&format!("--project-directory {data_dir}/stacks/leaky"))),
        "no full text in the debug log"
    );
    app.stop().await;
}
