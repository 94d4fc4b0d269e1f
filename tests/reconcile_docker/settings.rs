//! Settings in Git (`x-docker-cd:` in a stack's compose file, SPEC §11, issue 14) on the real
//! engine: the order between stacks (`dependsOn`, start times from `docker inspect`), errors and
//! warnings of the settings, `files` and `profiles`, `preSync`/`postSync` hooks (and one that
//! hangs), per-stack `drift`, `suspend` from Git, sync windows, and removal in reverse order.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::common::docker::{self, TEST_IMAGE};
use super::common::{TestApp, TestRepo, find, log_tail, publish, status, wait_for};
use super::{LONG, env_var, inspect, running_ids, service_container, stack_file, start};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers

/// A compose file: the `x-docker-cd:` mapping made of `settings` (its lines, indented by two
/// spaces; empty: no settings at all), then `services`.
fn compose(settings: &str, services: &[String]) -> String {
    let mut text = String::new();
    if !settings.is_empty() {
        text.push_str("x-docker-cd:\n");
        text.push_str(settings);
    }
    text.push_str("services:\n");
    text.push_str(&services.concat());
    text
}

/// A service of the test image running the shell line `command` under an init, with `extra`
/// lines (indented for the service).
fn service(name: &str, command: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    image: {TEST_IMAGE}\n    init: true\n    command: [\"sh\", \"-c\", {command:?}]\n{extra}"
    )
}

fn sleeper(name: &str) -> String {
    service(name, "exec sleep 3600", "")
}

/// A service that turns healthy `seconds` after it starts, and not before.
fn slow_healthy(name: &str, seconds: u32) -> String {
    service(
        name,
        &format!("sleep {seconds}; touch /tmp/ready; exec sleep 3600"),
        "    healthcheck:\n      test: [\"CMD\", \"sh\", \"-c\", \"test -f /tmp/ready\"]\n      \
         interval: 1s\n      timeout: 1s\n      retries: 1\n",
    )
}

/// A sleeper `app` with `GREETING` in its environment.
fn greeter(greeting: &str) -> String {
    service(
        "app",
        "exec sleep 3600",
        &format!("    environment:\n      GREETING: {greeting:?}\n"),
    )
}

/// The `dependsOn` line of the settings.
fn depends_on(paths: &[&str]) -> String {
    let quoted: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
    format!("  dependsOn: [{}]\n", quoted.join(", "))
}

/// When the container of `service` in `project` started (`.State.StartedAt`).
fn started_at(project: &str, service: &str) -> SystemTime {
    let id = service_container(project, service)
        .unwrap_or_else(|| panic!("{project}/{service}: no container"));
    let text = inspect(&id)["State"]["StartedAt"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    humantime::parse_rfc3339_weak(&text)
        .unwrap_or_else(|e| panic!("{project}/{service}: StartedAt {text:?}: {e}"))
}

/// `later - earlier`, negative when `later` is earlier, in milliseconds (for messages).
fn gap_ms(earlier: SystemTime, later: SystemTime) -> i128 {
    let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i128;
    ms(later) - ms(earlier)
}

/// The services of a project's running containers, sorted.
fn running_services(project: &str) -> Vec<String> {
    let mut services: Vec<String> = running_ids(project)
        .iter()
        .map(|id| docker::label(id, "com.docker.compose.service"))
        .collect();
    services.sort();
    services
}

fn text<'a>(stacks: &'a [Value], path: &str, field: &str) -> &'a str {
    find(stacks, path)
        .and_then(|s| s[field].as_str())
        .unwrap_or_default()
}

fn encode(path: &str) -> String {
    path.replace('/', "%2F")
}

async fn history(app: &TestApp, path: &str) -> Vec<Value> {
    let (code, body) = app
        .get_json(&format!("/api/stacks/{}/history", encode(path)))
        .await;
    assert_eq!(code, 200, "{body}");
    body["deployments"].as_array().cloned().unwrap_or_default()
}

/// Waits until the stack is `synced` at `revision` with containers running.
async fn synced_at(app: &TestApp, prefix: &str, path: &str, revision: &str) -> Vec<Value> {
    wait_for(
        app,
        prefix,
        LONG,
        &format!("{path} synced at {revision}"),
        |stacks| {
            find(stacks, path).is_some_and(|s| {
                s["status"] == "synced"
                    && s["syncedRevision"] == revision
                    && s["containersRunning"].as_u64().unwrap_or(0) > 0
            })
        },
    )
    .await
}

/// Processes on the machine whose command line holds `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// 1. dependsOn: a chain in the order of health, an independent stack beside it

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depends_on_starts_each_stack_of_a_chain_after_its_dependency_is_healthy_while_an_independent_stack_overlaps()
 {
    let Some((prefix, [db, api, web, solo], _cleanup)) =
        docker::begin_projects("sorder", ["db", "api", "web", "solo"])
    else {
        return;
    };
    let repo = TestRepo::new();
    repo.write(
        &stack_file(&db, "compose.yaml"),
        compose("", &[slow_healthy("db", 4)]),
    )
    .write(
        &stack_file(&api, "compose.yaml"),
        compose(&depends_on(&[&db]), &[slow_healthy("api", 2)]),
    )
    .write(
        &stack_file(&web, "compose.yaml"),
        compose(&depends_on(&[&api]), &[sleeper("web")]),
    )
    .write(
        &stack_file(&solo, "compose.yaml"),
        compose("", &[sleeper("solo")]),
    );
    repo.commit_and_push("a chain db → api → web, and an independent stack");
    let app = start(&repo, |a| a.sync_health_timeout = "60s".into()).await;
    app.run(async |app| {
        let chain = [&db, &api, &web, &solo];
        // What api and web say while they wait, seen before their dependency is synced.
        let (mut api_blocked, mut web_blocked) = (None, None);
        let deadline = Instant::now() + LONG;
        let stacks = loop {
            let stacks = app.stacks().await;
            let ready = |path: &str| {
                find(&stacks, path)
                    .is_some_and(|s| s["status"] == "synced" && s["health"] == "healthy")
            };
            let blocked = |path: &str| find(&stacks, path).and_then(|s| s["blockedBy"].as_str());
            if !ready(&db) && api_blocked.is_none() {
                api_blocked = blocked(&api).map(str::to_owned);
            }
            if !ready(&api) && web_blocked.is_none() {
                web_blocked = blocked(&web).map(str::to_owned);
            }
            if chain.iter().all(|p| ready(p)) {
                break stacks;
            }
            assert!(
                Instant::now() < deadline,
                "the chain did not sync: {}\nlogs:\n{}",
                serde_json::to_string_pretty(&stacks).unwrap(),
                log_tail(&prefix)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let api_blocked =
            api_blocked.expect("api never said it was blocked while db was not ready");
        assert!(
            api_blocked.starts_with("waiting for ") && api_blocked.contains(db.as_str()),
            "{api_blocked}"
        );
        let web_blocked =
            web_blocked.expect("web never said it was blocked while api was not ready");
        assert!(web_blocked.contains(api.as_str()), "{web_blocked}");
        for path in chain {
            assert_eq!(
                find(&stacks, path).unwrap()["blockedBy"],
                Value::Null,
                "{path}"
            );
        }
        assert_eq!(
            find(&stacks, &api).unwrap()["settings"]["dependsOn"],
            json!([db]),
            "the record shows the settings"
        );

        // db cannot be healthy before /tmp/ready exists, 4 s after it started: api started
        // after that, web at least 2 s after api (api's own delay), and solo before db could
        // be healthy (it did not wait for anything).
        let (db_at, api_at, web_at, solo_at) = (
            started_at(&db, "db"),
            started_at(&api, "api"),
            started_at(&web, "web"),
            started_at(&solo, "solo"),
        );
        let db_healthy = db_at + Duration::from_secs(4);
        assert!(
            api_at >= db_healthy,
            "api started {} ms after db, before db could be healthy",
            gap_ms(db_at, api_at)
        );
        assert!(
            web_at >= api_at + Duration::from_secs(2),
            "web started {} ms after api, before api could be healthy",
            gap_ms(api_at, web_at)
        );
        assert!(
            solo_at < db_healthy,
            "the independent stack started {} ms after db: it waited for db",
            gap_ms(db_at, solo_at)
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 2. Dependency errors, a failing dependency, unknown keys and invalid values

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cycles_unknown_dependencies_and_invalid_values_fail_their_stacks_a_failing_dependency_blocks_and_unknown_keys_warn()
 {
    let names = [
        "cyca", "cycb", "lost", "broken", "waiter", "warned", "invalid", "slowpoke",
    ];
    let Some((prefix, p, _cleanup)) = docker::begin_projects("serr", names) else {
        return;
    };
    let [cyca, cycb, lost, broken, waiter, warned, invalid, slowpoke] = &p;
    let nosuch = format!("{prefix}-nosuch");
    let repo = TestRepo::new();
    let files = [
        (cyca, compose(&depends_on(&[cycb]), &[sleeper("app")])),
        (cycb, compose(&depends_on(&[cyca]), &[sleeper("app")])),
        (lost, compose(&depends_on(&[&nosuch]), &[sleeper("app")])),
        (
            broken,
            compose("", &[service("app", "exit 1", "    restart: \"no\"\n")]),
        ),
        (waiter, compose(&depends_on(&[broken]), &[sleeper("app")])),
        (
            warned,
            compose("  colour: blue\n  drift: revert\n", &[sleeper("app")]),
        ),
        (invalid, compose("  drift: sometimes\n", &[sleeper("app")])),
        // Healthy after 8 s, inside SYNC_HEALTH_TIMEOUT (10 s), not inside its own 2 s.
        (
            slowpoke,
            compose("  healthTimeout: 2s\n", &[slow_healthy("app", 8)]),
        ),
    ];
    for (path, file) in &files {
        repo.write(&stack_file(path, "compose.yaml"), file);
    }
    repo.commit_and_push("stacks with bad settings");
    let app = start(&repo, |a| a.sync_health_timeout = "10s".into()).await;
    app.run(async |app| {
        let stacks = wait_for(app, &prefix, LONG, "every stack settled", |stacks| {
            status(stacks, warned) == "synced"
                && status(stacks, broken) == "failed"
                && text(stacks, waiter, "blockedBy") == format!("waiting for {broken} (failed)")
                && [cyca, cycb, lost, invalid, slowpoke]
                    .iter()
                    .all(|path| status(stacks, path) == "failed")
        })
        .await;

        let cycle = text(&stacks, cyca, "error");
        assert!(
            cycle.contains("x-docker-cd.dependsOn: a cycle")
                && cycle.contains(cyca.as_str())
                && cycle.contains(cycb.as_str()),
            "{cycle}"
        );
        assert_eq!(
            text(&stacks, cycb, "error"),
            cycle,
            "the same cycle on both"
        );
        let unknown = text(&stacks, lost, "error");
        assert!(
            unknown.contains("x-docker-cd.dependsOn") && unknown.contains(&nosuch),
            "{unknown}"
        );
        let bad = text(&stacks, invalid, "error");
        assert!(
            bad.contains("x-docker-cd.drift")
                && bad.contains("\"sometimes\"")
                && bad.contains("revert, flag, ignore"),
            "the error names the key, the value and what is allowed: {bad}"
        );

        assert!(
            text(&stacks, broken, "lastSyncError").contains("exit code 1"),
            "{stacks:?}"
        );
        // Its exited container is the failure, retried after the backoff (30 s): no drift to
        // revert at once, which would sync it again and again.
        let attempts = history(app, broken).await;
        assert_eq!(attempts.len(), 1, "{attempts:?}");

        let late = text(&stacks, slowpoke, "lastSyncError");
        assert!(
            late.starts_with("app: ")
                && late.contains("not healthy within x-docker-cd.healthTimeout=2s"),
            "healthTimeout in Git overrides SYNC_HEALTH_TIMEOUT: {late}"
        );

        let warnings = find(&stacks, warned).unwrap()["warnings"].clone();
        assert!(
            warnings.as_array().is_some_and(|w| w.iter().any(|w| w
                .as_str()
                .is_some_and(|w| w.contains("x-docker-cd.colour") && w.contains("unknown")))),
            "{warnings}"
        );
        assert_eq!(find(&stacks, warned).unwrap()["error"], Value::Null);
        assert_eq!(
            find(&stacks, warned).unwrap()["settings"]["drift"],
            "revert"
        );
        assert_eq!(running_services(warned), ["app"]);

        for path in [cyca, cycb, lost, waiter, invalid] {
            assert!(
                docker::container_ids(path).is_empty(),
                "{path} was deployed: {}",
                serde_json::to_string_pretty(find(&stacks, path).unwrap()).unwrap()
            );
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3. files and profiles

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_merged_in_order_and_profiles_select_the_services_that_run() {
    let Some((prefix, [merged, profiled, plain, missing], _cleanup)) =
        docker::begin_projects("sfiles", ["merged", "profiled", "plain", "missing"])
    else {
        return;
    };
    let repo = TestRepo::new();
    repo.write(
        &stack_file(&merged, "compose.yaml"),
        compose(
            "  files: [compose.yaml, compose.prod.yaml]\n",
            &[greeter("from-the-first-file")],
        ),
    )
    .write(
        &stack_file(&merged, "compose.prod.yaml"),
        format!(
            "services:\n  app:\n    environment:\n      GREETING: from-prod\n      ADDED: by-prod\n{}",
            sleeper("sidecar")
        ),
    );
    let profile_services = [
        sleeper("app"),
        service("extra", "exec sleep 3600", "    profiles: [extra]\n"),
        service("debug", "exec sleep 3600", "    profiles: [debug]\n"),
    ];
    repo.write(
        &stack_file(&profiled, "compose.yaml"),
        compose("  profiles: [extra]\n", &profile_services),
    )
    .write(
        &stack_file(&plain, "compose.yaml"),
        compose("", &profile_services),
    );
    repo.write(
        &stack_file(&missing, "compose.yaml"),
        compose(
            "  files: [compose.yaml, compose.nowhere.yaml]\n",
            &[sleeper("app")],
        ),
    );
    repo.commit_and_push("extra files and profiles");
    let app = start(&repo, |_| {}).await;
    app.run(async |app| {
        let paths = [&merged, &profiled, &plain];
        let stacks = wait_for(app, &prefix, LONG, "all synced, one failed", |stacks| {
            paths.iter().all(|p| status(stacks, p) == "synced")
                && status(stacks, &missing) == "failed"
        })
        .await;
        let error = text(&stacks, &missing, "lastSyncError");
        assert!(
            error.contains("x-docker-cd.files: compose.nowhere.yaml is not in the stack directory"),
            "{error}"
        );
        assert!(docker::container_ids(&missing).is_empty());
        // The second file overrides a value, adds one and adds a service.
        assert_eq!(running_services(&merged), ["app", "sidecar"]);
        let app_container = inspect(&service_container(&merged, "app").unwrap());
        assert_eq!(
            env_var(&app_container, "GREETING").as_deref(),
            Some("from-prod")
        );
        assert_eq!(env_var(&app_container, "ADDED").as_deref(), Some("by-prod"));
        let record = find(&stacks, &merged).unwrap();
        assert_eq!(record["composeFile"], "compose.yaml", "{record}");
        assert_eq!(
            record["settings"]["files"],
            json!(["compose.yaml", "compose.prod.yaml"]),
            "{record}"
        );

        // The profile `extra` is on, `debug` is not; without the setting neither is.
        assert_eq!(running_services(&profiled), ["app", "extra"]);
        assert_eq!(running_services(&plain), ["app"]);
        assert_eq!(
            find(&stacks, &profiled).unwrap()["settings"]["profiles"],
            json!(["extra"])
        );
        // What a sync records as the stack's services (the label the drift check compares
        // with what runs) is what runs: a service of a profile that is off is no drift.
        for (path, expected) in [
            (&merged, "app,sidecar"),
            (&profiled, "app,extra"),
            (&plain, "app"),
        ] {
            for id in running_ids(path) {
                assert_eq!(
                    docker::label(&id, "com.docker-cd.services"),
                    expected,
                    "{path}"
                );
            }
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 4. Hooks

/// The `hooks:` lines of the settings: one hook of `phase` running `shell` in `app`.
fn hook(phase: &str, shell: &str) -> String {
    format!("  hooks:\n    {phase}: [{{service: app, command: [\"sh\", \"-c\", {shell:?}]}}]\n")
}

/// The one hook of a deployment record.
fn only_hook(deployment: &Value) -> &Value {
    let hooks = deployment["hooks"].as_array().expect("hooks in the record");
    assert_eq!(hooks.len(), 1, "{deployment}");
    &hooks[0]
}

/// The one-off containers (`compose run`) of a project, running or not.
fn oneoff_containers(project: &str) -> String {
    docker::output(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--filter",
        "label=com.docker.compose.oneoff=True",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_sync_hook_keeps_the_running_version_and_post_sync_hooks_are_recorded_and_roll_back()
 {
    let Some((prefix, [pre, post], _cleanup)) = docker::begin_projects("shook", ["pre", "post"])
    else {
        return;
    };
    let repo = TestRepo::new();
    repo.write(
        &stack_file(&pre, "compose.yaml"),
        compose("", &[greeter("one")]),
    )
    .write(
        &stack_file(&post, "compose.yaml"),
        compose(&hook("postSync", "echo smoke-ok"), &[greeter("one")]),
    );
    let first = repo.commit_and_push("two stacks, one with a smoke test");
    let app = start(&repo, |a| a.sync_health_timeout = "30s".into()).await;
    app.run(async |app| {
        synced_at(app, &prefix, &pre, &first).await;
        synced_at(app, &prefix, &post, &first).await;
        let deployments = history(app, &post).await;
        assert_eq!(deployments[0]["outcome"], "succeeded", "{deployments:?}");
        let smoke = only_hook(&deployments[0]);
        assert_eq!(smoke["phase"], "postSync", "{smoke}");
        assert_eq!(smoke["service"], "app", "{smoke}");
        assert_eq!(smoke["exitCode"], 0, "{smoke}");
        assert!(
            smoke["output"].as_str().unwrap().contains("smoke-ok"),
            "{smoke}"
        );
        assert!(
            history(app, &pre).await[0]["hooks"]
                .as_array()
                .is_none_or(Vec::is_empty)
        );
        let running = service_container(&pre, "app").unwrap();

        // A migration that fails: nothing of the new version starts. A smoke test that fails,
        // with rollbackOnFailure in Git (ROLLBACK_ON_FAILURE is off): the old version is back.
        repo.write(
            &stack_file(&pre, "compose.yaml"),
            compose(
                &hook("preSync", "echo migrating; exit 3"),
                &[greeter("two")],
            ),
        )
        .write(
            &stack_file(&post, "compose.yaml"),
            compose(
                &format!(
                    "  rollbackOnFailure: true\n{}",
                    hook("postSync", "echo smoke-failed; exit 1")
                ),
                &[greeter("two")],
            ),
        );
        let second = publish(app, &repo, "failing hooks").await;
        let stacks = wait_for(
            app,
            &prefix,
            LONG,
            "pre failed, post rolled back",
            |stacks| {
                status(stacks, &pre) == "failed"
                    && text(stacks, &pre, "lastSyncError").contains("preSync")
                    && status(stacks, &post) == "failed"
                    && text(stacks, &post, "lastSyncError").starts_with("rolled back to")
            },
        )
        .await;

        let error = text(&stacks, &pre, "lastSyncError");
        assert!(
            error.starts_with("preSync hook 1 (app) exited with code 3"),
            "the error names the hook: {error}"
        );
        assert_eq!(
            service_container(&pre, "app").as_deref(),
            Some(running.as_str())
        );
        assert_eq!(
            running_ids(&pre),
            std::slice::from_ref(&running),
            "the old container runs on"
        );
        assert_eq!(
            env_var(&inspect(&running), "GREETING").as_deref(),
            Some("one")
        );
        let deployments = history(app, &pre).await;
        let failed = &deployments[0];
        assert_eq!(failed["revision"], second.as_str(), "{failed}");
        assert_eq!(failed["outcome"], "failed", "{failed}");
        let migration = only_hook(failed);
        assert_eq!(migration["phase"], "preSync", "{migration}");
        assert_eq!(migration["service"], "app", "{migration}");
        assert_eq!(migration["exitCode"], 3, "{migration}");
        assert!(
            migration["output"].as_str().unwrap().contains("migrating"),
            "{migration}"
        );

        let error = text(&stacks, &post, "lastSyncError");
        assert!(
            error.starts_with(&format!("rolled back to {}", &first[..12]))
                && error.contains("postSync hook 1 (app) exited with code 1"),
            "{error}"
        );
        assert_eq!(
            find(&stacks, &post).unwrap()["syncedRevision"],
            first.as_str()
        );
        let post_app = service_container(&post, "app").unwrap();
        assert_eq!(
            env_var(&inspect(&post_app), "GREETING").as_deref(),
            Some("one")
        );
        let deployments = history(app, &post).await;
        assert_eq!(deployments[0]["trigger"], "rollback", "{deployments:?}");
        assert_eq!(deployments[0]["outcome"], "succeeded", "{deployments:?}");
        assert!(
            only_hook(&deployments[0])["output"]
                .as_str()
                .unwrap()
                .contains("smoke-ok")
        );
        assert_eq!(
            deployments[1]["revision"],
            second.as_str(),
            "{deployments:?}"
        );
        assert_eq!(deployments[1]["outcome"], "rolled-back", "{deployments:?}");
        let smoke = only_hook(&deployments[1]);
        assert_eq!(smoke["exitCode"], 1, "{smoke}");
        assert!(
            smoke["output"].as_str().unwrap().contains("smoke-failed"),
            "{smoke}"
        );

        // `run --rm`: no hook container is left of either stack.
        for path in [&pre, &post] {
            assert_eq!(
                oneoff_containers(path),
                "",
                "{path}: a hook container is left"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_hangs_is_killed_at_compose_timeout_with_its_container_and_the_sync_fails() {
    let Some((prefix, [hang], _cleanup)) = docker::begin_projects("shang", ["hang"]) else {
        return;
    };
    // A number no other test sleeps for, to find the hook's processes by.
    let marker = "sleep 3607";
    let repo = TestRepo::new();
    repo.write(
        &stack_file(&hang, "compose.yaml"),
        compose(
            "  hooks:\n    preSync: [{service: app, command: [sleep, \"3607\"]}]\n",
            &[sleeper("app")],
        ),
    );
    repo.commit_and_push("a migration that never ends");
    let started = Instant::now();
    let app = start(&repo, |a| a.compose_timeout = "10s".into()).await;
    app.run(async |app| {
        let stacks = wait_for(app, &prefix, LONG, "the sync failed", |stacks| {
            status(stacks, &hang) == "failed"
        })
        .await;
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_secs(10) && elapsed < Duration::from_secs(60),
            "failed after {elapsed:?}, not at the 10 s timeout"
        );
        let error = text(&stacks, &hang, "lastSyncError");
        assert!(
            error.starts_with("preSync hook 1 (app) did not finish within COMPOSE_TIMEOUT"),
            "{error}"
        );
        let name_filter = format!("name={hang}-hook");
        assert_eq!(
            docker::output(&["ps", "-aq", "--filter", &name_filter]),
            "",
            "the hook's container is left"
        );
        assert_eq!(oneoff_containers(&hang), "", "a one-off container is left");
        assert_eq!(
            processes_with(marker),
            Vec::<String>::new(),
            "the hook's processes live on"
        );
        assert!(
            docker::container_ids(&hang).is_empty(),
            "up ran after a failed preSync hook"
        );
        let deployments = history(app, &hang).await;
        assert_eq!(deployments[0]["outcome"], "failed", "{deployments:?}");
        let hook = only_hook(&deployments[0]);
        assert_eq!(hook["phase"], "preSync", "{hook}");
        assert_eq!(hook["exitCode"], Value::Null, "{hook}");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 5. drift and suspend from Git

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_ignore_and_flag_in_git_override_the_global_revert_and_suspend_in_git_deploys_nothing_until_removed()
 {
    let Some((prefix, [ignored, flagged, control, paused], _cleanup)) =
        docker::begin_projects("sdrift", ["ignored", "flagged", "control", "paused"])
    else {
        return;
    };
    let repo = TestRepo::new();
    for (path, settings) in [
        (&ignored, "  drift: ignore\n"),
        (&flagged, "  drift: flag\n"),
        (&control, ""),
        (&paused, "  suspend: true\n"),
    ] {
        repo.write(
            &stack_file(path, "compose.yaml"),
            compose(settings, &[sleeper("app")]),
        );
    }
    let first = repo.commit_and_push("drift policies and a suspension in Git");
    let app = start(&repo, |a| {
        a.drift_policy = "revert".into();
        a.reconcile_interval = "5s".into();
    })
    .await;
    app.run(async |app| {
        let stacks = wait_for(
            app,
            &prefix,
            LONG,
            "three synced, one suspended",
            |stacks| {
                [&ignored, &flagged, &control]
                    .iter()
                    .all(|p| status(stacks, p) == "synced")
                    && find(stacks, &paused)
                        .is_some_and(|s| s["suspendedInGit"] == true && s["health"] == "suspended")
            },
        )
        .await;
        let record = find(&stacks, &paused).unwrap();
        assert_eq!(record["settings"]["suspend"], true, "{record}");
        assert!(
            docker::container_ids(&paused).is_empty(),
            "a stack suspended in Git was deployed"
        );

        // Stopped by hand, the control stack (no setting: the global revert) last: the
        // reconcile that restarts it read the engine after the other two were stopped, so it
        // planned them too. That restart is the sign they were looked at, no sleep needed.
        let ids: Vec<String> = [&ignored, &flagged, &control]
            .iter()
            .map(|p| service_container(p, "app").unwrap())
            .collect();
        for id in &ids {
            docker::output(&["stop", "--time", "1", id]);
        }
        let stacks = wait_for(app, &prefix, LONG, "the control stack reverted", |stacks| {
            status(stacks, &control) == "synced" && running_ids(&control).len() == 1
        })
        .await;
        assert_eq!(
            status(&stacks, &ignored),
            "synced",
            "drift: ignore is not reported"
        );
        assert_eq!(find(&stacks, &ignored).unwrap()["drift"], Value::Null);
        assert!(
            running_ids(&ignored).is_empty(),
            "drift: ignore restarted the container"
        );
        assert_eq!(docker::container_ids(&ignored), [ids[0].clone()]);
        assert_eq!(status(&stacks, &flagged), "drifted", "{stacks:?}");
        assert!(
            text(&stacks, &flagged, "drift").contains("exited"),
            "{stacks:?}"
        );
        assert!(
            running_ids(&flagged).is_empty(),
            "drift: flag restarted the container"
        );
        assert!(
            docker::container_ids(&paused).is_empty(),
            "a stack suspended in Git was deployed"
        );

        // The suspension goes from Git: the stack is deployed.
        repo.write(
            &stack_file(&paused, "compose.yaml"),
            compose("", &[sleeper("app")]),
        );
        let second = publish(app, &repo, "resume in Git").await;
        assert_ne!(first, second);
        let stacks = synced_at(app, &prefix, &paused, &second).await;
        let record = find(&stacks, &paused).unwrap();
        assert_eq!(record["suspendedInGit"], false, "{record}");
        assert_ne!(record["health"], "suspended", "{record}");
        assert_eq!(running_services(&paused), ["app"]);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 6. Sync windows

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_sync_window_holds_automatic_syncs_until_it_opens_and_never_a_manual_sync() {
    let Some((prefix, [far, soon], _cleanup)) = docker::begin_projects("swin", ["far", "soon"])
    else {
        return;
    };
    // The next whole minute (UTC) at least 20 s away: the stack is seen waiting before it.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut opens = (now / 60 + 1) * 60;
    if opens - now < 20 {
        opens += 60;
    }
    let (minute, hour) = ((opens / 60) % 60, (opens / 3600) % 24);
    let opening = UNIX_EPOCH + Duration::from_secs(opens);
    let repo = TestRepo::new();
    repo.write(
        &stack_file(&far, "compose.yaml"),
        compose(
            "  syncWindows: [{schedule: \"0 0 1 1 *\", duration: 1m}]\n",
            &[sleeper("app")],
        ),
    )
    .write(
        &stack_file(&soon, "compose.yaml"),
        compose(
            &format!("  syncWindows: [{{schedule: \"{minute} {hour} * * *\", duration: 5m}}]\n"),
            &[sleeper("app")],
        ),
    );
    let commit = repo.commit_and_push("two stacks with sync windows");
    let app = start(&repo, |a| a.reconcile_interval = "5s".into()).await;
    app.run(async |app| {
        let expected = format!(
            "sync window opens {}",
            humantime::format_rfc3339_seconds(opening)
        );
        let stacks = wait_for(app, &prefix, LONG, "both wait for their window", |stacks| {
            text(stacks, &far, "blockedBy").starts_with("sync window opens")
                && text(stacks, &soon, "blockedBy") == expected
        })
        .await;
        assert!(
            SystemTime::now() < opening,
            "the test was too slow to see the window closed"
        );
        let far_blocked = text(&stacks, &far, "blockedBy");
        assert!(far_blocked.ends_with("-01-01T00:00:00Z"), "{far_blocked}");
        assert!(docker::container_ids(&far).is_empty());
        assert!(docker::container_ids(&soon).is_empty());

        // Sync now goes through a closed window.
        let (code, body) = app
            .post_json(&format!("/api/stacks/{}/sync", encode(&far)), json!({}))
            .await;
        assert_eq!(code, 202, "{body}");
        let stacks = synced_at(app, &prefix, &far, &commit).await;
        assert_eq!(find(&stacks, &far).unwrap()["blockedBy"], Value::Null);
        assert_eq!(history(app, &far).await[0]["trigger"], "manual");
        assert!(
            docker::container_ids(&soon).is_empty(),
            "soon did not wait for its window"
        );

        // The window opens: the waiting sync runs on a tick after that.
        let wait = opening
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            + Duration::from_secs(60);
        let stacks = wait_for(app, &prefix, wait, "soon synced in its window", |stacks| {
            status(stacks, &soon) == "synced" && !running_ids(&soon).is_empty()
        })
        .await;
        assert_eq!(find(&stacks, &soon).unwrap()["blockedBy"], Value::Null);
        let soon_at = started_at(&soon, "app");
        assert!(
            soon_at >= opening,
            "soon started {} ms before its window opened",
            gap_ms(soon_at, opening)
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 7. Removal in reverse order

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacks_deleted_from_git_together_are_removed_dependents_first() {
    let Some((prefix, [db, user, keeper], _cleanup)) =
        docker::begin_projects("srm", ["db", "app", "keeper"])
    else {
        return;
    };
    let repo = TestRepo::new();
    // The dependent takes a while to stop (a PID 1 that ignores SIGTERM, 3 s of grace): a
    // removal of db that did not wait would overlap it.
    let slow_stop = format!(
        "  app:\n    image: {TEST_IMAGE}\n    command: [\"sleep\", \"3600\"]\n    stop_grace_period: 3s\n"
    );
    repo.write(
        &stack_file(&db, "compose.yaml"),
        compose("", &[sleeper("db")]),
    )
    .write(
        &stack_file(&user, "compose.yaml"),
        compose(&depends_on(&[&db]), &[slow_stop]),
    )
    .write(
        &stack_file(&keeper, "compose.yaml"),
        compose("", &[sleeper("app")]),
    );
    let first = repo.commit_and_push("db, an app that depends on it, and a keeper");
    let app = start(&repo, |a| a.reconcile_remove_enabled = "true".into()).await;
    app.run(async |app| {
        for path in [&db, &user, &keeper] {
            synced_at(app, &prefix, path, &first).await;
        }
        let user_container = service_container(&user, "app").unwrap();
        assert_eq!(
            docker::label(&user_container, "com.docker-cd.depends-on"),
            db.as_str()
        );

        repo.remove(&format!("stacks/{db}"))
            .remove(&format!("stacks/{user}"));
        publish(app, &repo, "remove db and the app").await;
        let mut db_waited = false;
        let deadline = Instant::now() + LONG;
        loop {
            let stacks = app.stacks().await;
            if text(&stacks, &db, "blockedBy").contains(user.as_str()) {
                db_waited = true;
            }
            let user_left = docker::container_ids(&user);
            let db_running = running_ids(&db).len();
            let db_left = docker::container_ids(&db).len();
            if db_running == 0 || db_left == 0 {
                assert!(
                    user_left.is_empty(),
                    "db is being taken down ({db_running} running, {db_left} left) while the \
                     app that depends on it still has containers {user_left:?}"
                );
            }
            if user_left.is_empty() && db_left == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not removed: app {user_left:?}, db {db_left}: {stacks:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(db_waited, "db's record never said it waited for the app");
        assert_eq!(running_services(&keeper), ["app"]);
        wait_for(app, &prefix, LONG, "both gone from the list", |stacks| {
            find(stacks, &db).is_none() && find(stacks, &user).is_none()
        })
        .await;
    })
    .await;
}
