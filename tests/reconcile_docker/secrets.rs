//! SOPS files of a stack on the real engine (SPEC §12, issue 15), with real files made by the
//! sops CLI (`tests/data/sops/`, public test keys): a SOPS `.env` and a SOPS config file reach
//! the container as plaintext, written 0600 under `DATA_DIR`; the plaintext appears in no API
//! answer, history, diff, dashboard page or log line; a file encrypted for another key fails its
//! stack, naming the file.

use std::os::unix::fs::PermissionsExt as _;

use super::common::docker;
use super::common::{TestRepo, find, logs, wait_for, wait_revision};
use super::{LONG, stack_file, start};

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/sops/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// What the plaintext of the config file holds, and must appear nowhere but in the container.
const SECRETS: [&str; 2] = ["abc123secret", "db.example.com"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sops_files_reach_the_container_as_plaintext_and_nowhere_else() {
    let Some((prefix, [path, locked], _cleanup)) =
        docker::begin_projects("sops", ["web", "locked"])
    else {
        return;
    };
    let repo = TestRepo::new();
    repo.write(
        &stack_file(&path, "compose.yaml"),
        format!(
            "services:\n  app:\n    image: {}\n    init: true\n    env_file: .env\n    volumes: [\"./config.yaml:/etc/app/config.yaml:ro\"]\n    command: [\"sleep\", \"3600\"]\n",
            docker::TEST_IMAGE
        ),
    );
    repo.write(
        &stack_file(&path, ".env"),
        fixture("fluxcd-kustomize-controller/env.env"),
    );
    repo.write(
        &stack_file(&path, "config.yaml"),
        fixture("noris-network-cuegen/config.enc.yaml"),
    );
    // Encrypted for a key docker-cd is not given.
    repo.write(
        &stack_file(&locked, "compose.yaml"),
        format!(
            "services:\n  app:\n    image: {}\n    init: true\n    command: [\"sleep\", \"3600\"]\n",
            docker::TEST_IMAGE
        ),
    );
    repo.write(
        &stack_file(&locked, "secret.yaml"),
        fixture("fluxcd-kustomize-controller/global-secret.yaml"),
    );
    let revision = repo.commit_and_push("secrets");
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("age.txt");
    let mut both = fixture("fluxcd-kustomize-controller/age.txt");
    both.push(b'\n');
    both.extend(fixture("noris-network-cuegen/key.txt"));
    std::fs::write(&key_file, both).unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let app = start(&repo, |a| {
        a.sops_age_key_file = Some(key_file.clone());
        a.data_dir = data_dir.clone();
        a.reconcile_interval = "5s".into();
    })
    .await;
    app.run(async |app| {
        wait_revision(app, &revision).await;
        let stacks = wait_for(app, &prefix, LONG, "web synced, locked failed", |stacks| {
            find(stacks, &path).is_some_and(|s| s["status"] == "synced")
                && find(stacks, &locked).is_some_and(|s| s["status"] == "failed")
        })
        .await;
        let error = find(&stacks, &locked).unwrap()["lastSyncError"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            error.starts_with("secret.yaml cannot be decrypted: "),
            "the error names the file: {error}"
        );
        assert!(
            docker::container_ids(&locked).is_empty(),
            "nothing of locked runs"
        );

        // The container has the plaintext.
        let id = docker::container_ids(&path).remove(0);
        let env = docker::output(&["exec", &id, "sh", "-c", "echo \"$key\""]);
        assert_eq!(env.trim(), "value", "the .env's plaintext");
        let config = docker::output(&["exec", &id, "cat", "/etc/app/config.yaml"]);
        for secret in SECRETS {
            assert!(config.contains(secret), "{config}");
        }
        assert!(!config.contains("ENC["), "{config}");
        assert!(!config.contains("sops:"), "{config}");

        // Written 0600 under DATA_DIR, the other files as before.
        let stack_dir = data_dir.join("stacks").join(&path);
        for file in [".env", "config.yaml"] {
            let mode = std::fs::metadata(stack_dir.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let mode = std::fs::metadata(stack_dir.join("compose.yaml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);

        // Nowhere else: the API, the history, the diff, the dashboard, the log.
        let encoded = path.replace('/', "%2F");
        let mut seen = String::new();
        for route in [
            "/api/stacks".to_owned(),
            format!("/api/stacks/{encoded}"),
            format!("/api/stacks/{encoded}/history"),
            format!("/api/stacks/{encoded}/diff"),
            format!("/api/stacks/{}/history", locked.replace('/', "%2F")),
            format!("/stacks/{encoded}"),
            "/".to_owned(),
            "/metrics".to_owned(),
        ] {
            seen.push_str(&app.get_text(&route).await);
        }
        assert!(seen.contains(&path), "the answers were read");
        seen.push_str(&logs());
        for secret in SECRETS {
            assert!(!seen.contains(secret), "{secret} leaked");
        }
    })
    .await;
}
