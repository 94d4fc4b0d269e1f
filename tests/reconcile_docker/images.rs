//! Image updates against a real registry (SPEC §12, issue 15): Debian's `docker-registry` on
//! 127.0.0.1, filled by the real `docker push`. When a tag moves in the registry, only the
//! service using it is pulled and recreated, the history says `image-update`, and a check with
//! nothing new changes nothing.

use std::time::Duration;

use super::common::docker::{self, TEST_IMAGE};
use super::common::registry::{self, RegistryAuth, TestRegistry};
use super::common::{TestRepo, find, wait_for, wait_revision};
use super::{LONG, stack_file, start};
use serde_json::{Value, json};

/// The id of the container of `service` in `project`.
fn container_of(project: &str, service: &str) -> String {
    super::service_container(project, service).unwrap_or_default()
}

fn image_of(container: &str) -> String {
    docker::output(&["inspect", "--format", "{{.Image}}", container])
        .trim()
        .to_owned()
}

fn service_status<'a>(stack: &'a Value, service: &str) -> Option<&'a Value> {
    stack["images"]
        .as_array()?
        .iter()
        .find(|i| i["service"] == service)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tag_recreates_only_its_service_and_a_check_with_nothing_new_changes_nothing() {
    if !registry::require() {
        return;
    }
    let Some((prefix, [path], _cleanup)) = docker::begin_projects("img", ["web"]) else {
        return;
    };
    let reg = TestRegistry::start(RegistryAuth::None).await;
    let first = reg.push(TEST_IMAGE, "team/app:1");
    reg.push(TEST_IMAGE, "team/side:1");
    let app_image = reg.image("team/app:1");
    let side_image = reg.image("team/side:1");
    let repo = TestRepo::new();
    repo.write(
        &stack_file(&path, "compose.yaml"),
        format!(
            "x-docker-cd:\n  imageUpdates: true\nservices:\n  app:\n    image: {app_image}\n    init: true\n    command: [\"sleep\", \"3600\"]\n  side:\n    image: {side_image}\n    init: true\n    command: [\"sleep\", \"3600\"]\n"
        ),
    );
    let revision = repo.commit_and_push("two services from the registry");
    let app = start(&repo, |a| {
        a.reconcile_interval = "5s".into();
        a.sync_health_timeout = "30s".into();
    })
    .await;
    app.run(async |app| {
        wait_revision(app, &revision).await;
        wait_for(app, &prefix, LONG, "synced and healthy", |stacks| {
            find(stacks, &path).is_some_and(|s| s["status"] == "synced" && s["health"] == "healthy")
        })
        .await;
        let app_before = container_of(&path, "app");
        let side_before = container_of(&path, "side");
        let old_image = image_of(&app_before);

        // The tag moves: a new image under team/app:1.
        let variant = reg.build_variant(TEST_IMAGE, "moved");
        let second = reg.push(&variant, "team/app:1");
        assert_ne!(first, second);
        let (code, body) = app.post_json("/api/image-updates", json!({})).await;
        assert_eq!(code, 202, "{body}");
        assert_eq!(body["status"], "checking");

        let stacks = wait_for(app, &prefix, LONG, "the image update", |stacks| {
            find(stacks, &path).is_some_and(|s| {
                s["status"] == "synced"
                    && service_status(s, "app").is_some_and(|i| {
                        i["digest"] == second.as_str() && i["updateAvailable"] == false
                    })
            })
        })
        .await;
        let stack = find(&stacks, &path).unwrap();
        let side = service_status(stack, "side").unwrap();
        assert_eq!(side["updateAvailable"], false, "{stack}");
        assert_eq!(side["latestDigest"], side["digest"], "{stack}");
        assert_eq!(
            service_status(stack, "app").unwrap()["latestDigest"],
            second.as_str()
        );
        assert_eq!(stack["syncedRevision"], revision.as_str(), "same commit");

        // Only app was recreated, on the new image.
        let app_after = container_of(&path, "app");
        assert_ne!(app_after, app_before, "app is recreated");
        assert_ne!(image_of(&app_after), old_image, "on the new image");
        assert_eq!(
            container_of(&path, "side"),
            side_before,
            "side is left alone"
        );

        // The history says so.
        let (code, history) = app
            .get_json(&format!("/api/stacks/{}/history", path.replace('/', "%2F")))
            .await;
        assert_eq!(code, 200, "{history}");
        let newest = &history["deployments"][0];
        assert_eq!(newest["trigger"], "image-update", "{history}");
        assert_eq!(newest["outcome"], "succeeded", "{history}");
        assert_eq!(newest["revision"], revision.as_str());
        let records = history["deployments"].as_array().unwrap().len();

        // A second check with nothing new: no pull, no recreation, no record.
        let checked = stack["imagesCheckedAt"].clone();
        let (code, _) = app.post_json("/api/image-updates", json!({})).await;
        assert_eq!(code, 202);
        wait_for(app, &prefix, LONG, "a second check", |stacks| {
            find(stacks, &path).is_some_and(|s| {
                s["imagesCheckedAt"] != checked
                    && s["images"]
                        .as_array()
                        .is_some_and(|l| l.iter().all(|i| i["updateAvailable"] == false))
            })
        })
        .await;
        // Give a reconcile tick the chance to act on it, were it wrong.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(container_of(&path, "app"), app_after);
        assert_eq!(container_of(&path, "side"), side_before);
        let (_, history) = app
            .get_json(&format!("/api/stacks/{}/history", path.replace('/', "%2F")))
            .await;
        assert_eq!(
            history["deployments"].as_array().unwrap().len(),
            records,
            "{history}"
        );
    })
    .await;
}

/// A local image `base` whose own healthcheck always fails (compose files that set none
/// inherit it), tagged `tag`.
fn unhealthy_variant(base: &str, tag: &str) {
    use std::io::Write as _;
    let mut build = std::process::Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "--quiet", "--tag", tag, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    build
        .stdin
        .take()
        .unwrap()
        .write_all(
            format!("FROM {base}\nHEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD false\n")
                .as_bytes(),
        )
        .unwrap();
    let out = build.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_update_that_turns_unhealthy_is_rolled_back_and_not_tried_again() {
    if !registry::require() {
        return;
    }
    let Some((prefix, [path], _cleanup)) = docker::begin_projects("imgrb", ["web"]) else {
        return;
    };
    let reg = TestRegistry::start(RegistryAuth::None).await;
    reg.push(TEST_IMAGE, "team/app:1");
    let image = reg.image("team/app:1");
    let repo = TestRepo::new();
    repo.write(
        &stack_file(&path, "compose.yaml"),
        format!(
            "x-docker-cd:\n  imageUpdates: true\n  rollbackOnFailure: true\n  healthTimeout: 15s\nservices:\n  app:\n    image: {image}\n    init: true\n    command: [\"sleep\", \"3600\"]\n"
        ),
    );
    let revision = repo.commit_and_push("one service from the registry");
    let app = start(&repo, |a| {
        a.reconcile_interval = "5s".into();
        a.sync_health_timeout = "30s".into();
    })
    .await;
    let broken = "docker-cd-test/registry-variant:unhealthy";
    app.run(async |app| {
        wait_revision(app, &revision).await;
        wait_for(app, &prefix, LONG, "synced and healthy", |stacks| {
            find(stacks, &path).is_some_and(|s| s["status"] == "synced" && s["health"] == "healthy")
        })
        .await;
        let old_image = image_of(&container_of(&path, "app"));
        unhealthy_variant(TEST_IMAGE, broken);
        let moved = reg.push(broken, "team/app:1");
        let (code, _) = app.post_json("/api/image-updates", json!({})).await;
        assert_eq!(code, 202);
        let stacks = wait_for(app, &prefix, LONG, "the failed update", |stacks| {
            find(stacks, &path).is_some_and(|s| {
                service_status(s, "app").is_some_and(|i| i["updateFailed"] == true)
                    && s["health"] == "healthy"
            })
        })
        .await;
        let stack = find(&stacks, &path).unwrap();
        assert_eq!(stack["status"], "synced", "{stack}");
        assert!(
            stack["lastSyncError"]
                .as_str()
                .is_some_and(|e| e.starts_with("image update of app: ")),
            "{stack}"
        );
        assert_eq!(
            service_status(stack, "app").unwrap()["latestDigest"],
            moved.as_str()
        );
        // The previous image runs again.
        assert_eq!(image_of(&container_of(&path, "app")), old_image);
        let (_, history) = app
            .get_json(&format!("/api/stacks/{}/history", path.replace('/', "%2F")))
            .await;
        let newest = &history["deployments"][0];
        assert_eq!(newest["trigger"], "image-update", "{history}");
        assert_eq!(newest["outcome"], "rolled-back", "{history}");
        let records = history["deployments"].as_array().unwrap().len();
        // A check that finds the same digest does not try again.
        let (code, _) = app.post_json("/api/image-updates", json!({})).await;
        assert_eq!(code, 202);
        tokio::time::sleep(Duration::from_secs(8)).await;
        let (_, history) = app
            .get_json(&format!("/api/stacks/{}/history", path.replace('/', "%2F")))
            .await;
        assert_eq!(
            history["deployments"].as_array().unwrap().len(),
            records,
            "{history}"
        );
        assert_eq!(image_of(&container_of(&path, "app")), old_image);
    })
    .await;
    let _ = std::process::Command::new("docker")
        .args(["rmi", "--force", broken])
        .output();
}
