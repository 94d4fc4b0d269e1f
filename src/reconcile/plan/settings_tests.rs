//! The plan's rules for a stack's settings in Git (SPEC §11): order between stacks, sync
//! windows, the per-stack drift policy, suspension from Git, and the reverse order of removals.
//! The clock is a parameter: windows are tested at fixed instants.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::tests::{container, revert, snapshot, sync_map, synced};
use super::*;
use crate::desired_state::settings::{Read, StackSettings};
use crate::desired_state::{DesiredStack, Health};
use crate::schedule::SyncWindow;

/// 2026-12-05T03:00:00Z, a Saturday.
fn saturday_3am() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_439_600)
}

/// Gives stack `path` of `snapshot` the settings `settings`.
fn with(snapshot: &mut Snapshot, path: &str, settings: StackSettings) {
    let stack: &mut DesiredStack = Arc::make_mut(snapshot.stacks.get_mut(path).unwrap());
    stack.settings = Some(Arc::new(Read {
        settings,
        ..Read::default()
    }));
}

fn depends_on(paths: &[&str]) -> StackSettings {
    StackSettings {
        depends_on: paths.iter().map(|p| (*p).to_owned()).collect(),
        ..StackSettings::default()
    }
}

/// Settings with these windows (schedule, seconds).
fn windows(list: &[(&str, u64)]) -> StackSettings {
    StackSettings {
        sync_windows: Some(window_list(list)),
        ..StackSettings::default()
    }
}

fn window_list(list: &[(&str, u64)]) -> Vec<SyncWindow> {
    list.iter()
        .map(|(schedule, secs)| SyncWindow::new(schedule, Duration::from_secs(*secs)).unwrap())
        .collect()
}

/// The plan for one stack `web` at `w1` with `settings`, nothing deployed, on Saturday 03:00.
fn plan_web(settings: StackSettings) -> Plan {
    let mut snap = snapshot(&[("web", "w1")]);
    with(&mut snap, "web", settings);
    plan(&snap, &BTreeMap::new(), &[], &revert(), saturday_3am())
}

fn healthy(hash: &str) -> SyncInfo {
    let mut info = synced(hash);
    info.health = Health::Healthy;
    info
}

fn action<'a>(plan: &'a Plan, path: &str) -> &'a Action {
    plan.actions
        .iter()
        .find(|a| a.path() == path)
        .unwrap_or_else(|| panic!("no action for {path}: {plan:?}"))
}

fn is_sync(action: &Action) -> bool {
    matches!(action, Action::Sync { .. })
}

fn is_wait(action: &Action) -> bool {
    matches!(action, Action::Wait { .. })
}

#[test]
fn a_stack_waits_for_a_dependency_that_is_not_deployed_yet_and_says_so() {
    let mut snap = snapshot(&[("api", "a1"), ("db", "d1"), ("other", "o1")]);
    with(&mut snap, "api", depends_on(&["db"]));
    let plan = plan(&snap, &BTreeMap::new(), &[], &revert(), saturday_3am());
    // The first wave: db, and the independent stack, in parallel.
    assert!(is_sync(action(&plan, "db")));
    assert!(is_sync(action(&plan, "other")));
    assert!(is_wait(action(&plan, "api")), "{plan:?}");
    assert_eq!(plan.blocked["api"], "waiting for db (syncing)");
    assert_eq!(plan.blocked.len(), 1);
}

#[test]
fn a_dependency_synced_but_not_healthy_yet_holds_its_dependents() {
    let mut snap = snapshot(&[("api", "a1"), ("db", "d1")]);
    with(&mut snap, "api", depends_on(&["db"]));
    let mut progressing = synced("d1");
    progressing.health = Health::Progressing;
    let plan = plan(
        &snap,
        &sync_map(&[("db", progressing)]),
        &[container("db", "db", "d1")],
        &revert(),
        saturday_3am(),
    );
    assert!(is_wait(action(&plan, "api")));
    assert_eq!(plan.blocked["api"], "waiting for db (progressing)");
}

#[test]
fn a_synced_and_healthy_dependency_lets_the_next_wave_go() {
    let mut snap = snapshot(&[("api", "a1"), ("db", "d1"), ("web", "w1")]);
    with(&mut snap, "api", depends_on(&["db"]));
    with(&mut snap, "web", depends_on(&["api", "db"]));
    let plan = plan(
        &snap,
        &sync_map(&[("db", healthy("d1"))]),
        &[container("db", "db", "d1")],
        &revert(),
        saturday_3am(),
    );
    assert!(is_sync(action(&plan, "api")), "{plan:?}");
    assert!(is_wait(action(&plan, "web")));
    assert_eq!(plan.blocked["web"], "waiting for api (syncing)");
}

#[test]
fn a_dependency_synced_to_an_older_commit_is_not_ready_at_this_snapshot() {
    let mut snap = snapshot(&[("api", "a2"), ("db", "d2")]);
    with(&mut snap, "api", depends_on(&["db"]));
    let plan = plan(
        &snap,
        &sync_map(&[("db", healthy("d1")), ("api", healthy("a1"))]),
        &[container("db", "db", "d1"), container("api", "api", "a1")],
        &revert(),
        saturday_3am(),
    );
    assert!(is_sync(action(&plan, "db")));
    assert!(is_wait(action(&plan, "api")));
    assert_eq!(plan.blocked["api"], "waiting for db (syncing)");
}

#[test]
fn a_failing_or_suspended_dependency_leaves_dependents_waiting_and_naming_it() {
    let mut snap = snapshot(&[("api", "a1"), ("db", "d1")]);
    with(&mut snap, "api", depends_on(&["db"]));
    let mut failed = SyncInfo::new(StackStatus::Failed);
    failed.failed_content_hash = Some("d1".into());
    failed.consecutive_failures = 1;
    failed.last_sync_at = Some(saturday_3am());
    let first = plan(
        &snap,
        &sync_map(&[("db", failed)]),
        &[],
        &revert(),
        saturday_3am(),
    );
    assert!(matches!(action(&first, "db"), Action::Backoff { .. }));
    assert_eq!(first.blocked["api"], "waiting for db (failed)");

    let mut suspended = healthy("d1");
    suspended.suspend();
    let plan = plan(
        &snap,
        &sync_map(&[("db", suspended)]),
        &[container("db", "db", "d1")],
        &revert(),
        saturday_3am(),
    );
    assert_eq!(plan.blocked["api"], "waiting for db (suspended)");
}

#[test]
fn a_dependency_with_an_error_holds_its_dependents() {
    let mut snap = snapshot(&[("api", "a1"), ("db", "d1")]);
    with(&mut snap, "api", depends_on(&["db"]));
    Arc::make_mut(snap.stacks.get_mut("db").unwrap()).error = Some("bad".into());
    let plan = plan(&snap, &BTreeMap::new(), &[], &revert(), saturday_3am());
    assert!(matches!(action(&plan, "db"), Action::Fail { .. }));
    assert_eq!(plan.blocked["api"], "waiting for db (failed)");
}

#[test]
fn an_operator_sync_is_never_held_back_by_dependencies_or_windows() {
    let mut snap = snapshot(&[("api", "a1"), ("db", "d1")]);
    with(
        &mut snap,
        "api",
        StackSettings {
            sync_windows: Some(window_list(&[("0 0 1 1 *", 60)])),
            ..depends_on(&["db"])
        },
    );
    let mut asked = SyncInfo::new(StackStatus::Missing);
    asked.request_sync();
    let plan = plan(
        &snap,
        &sync_map(&[("api", asked)]),
        &[],
        &revert(),
        saturday_3am(),
    );
    assert!(
        matches!(
            action(&plan, "api"),
            Action::Sync {
                reason: SyncReason::Manual,
                ..
            }
        ),
        "{plan:?}"
    );
    assert!(!plan.blocked.contains_key("api"));
}

#[test]
fn outside_every_window_an_automatic_sync_waits_until_the_next_opening() {
    let plan = plan_web(windows(&[("0 2 * * 0", 7200), ("0 4 * * 1", 600)]));
    // The reconciler plans again when the earliest window opens.
    assert_eq!(
        plan.window_opens,
        Some(saturday_3am() + Duration::from_secs(23 * 3600))
    );
    assert!(is_wait(action(&plan, "web")));
    assert_eq!(
        plan.blocked["web"],
        "sync window opens 2026-12-06T02:00:00Z"
    );
}

#[test]
fn inside_a_window_the_sync_runs() {
    // Open from 02:00 for two hours; and any open window opens the gate.
    for open in [
        windows(&[("0 2 * * 6", 7200)]),
        windows(&[("0 2 * * 0", 60), ("30 2 * * *", 3600)]),
    ] {
        let plan = plan_web(open);
        assert!(is_sync(action(&plan, "web")), "{plan:?}");
        assert!(plan.blocked.is_empty());
    }
    // Closed at the end of an opening: 01:00 for two hours ends at 03:00.
    let plan = plan_web(windows(&[("0 1 * * 6", 7200)]));
    assert_eq!(
        plan.blocked["web"],
        "sync window opens 2026-12-12T01:00:00Z"
    );
}

#[test]
fn the_global_windows_apply_unless_the_stack_has_its_own_and_an_empty_list_is_always_open() {
    let mut policy = revert();
    policy.sync_windows = window_list(&[("0 2 * * 0", 3600)]);
    let mut snap = snapshot(&[("free", "f1"), ("own", "o1"), ("plain", "p1")]);
    with(&mut snap, "free", windows(&[]));
    with(&mut snap, "own", windows(&[("0 3 * * 6", 600)]));
    let plan = plan(&snap, &BTreeMap::new(), &[], &policy, saturday_3am());
    assert!(is_sync(action(&plan, "free")));
    assert!(is_sync(action(&plan, "own")));
    assert!(is_wait(action(&plan, "plain")));
    assert_eq!(
        plan.blocked["plain"],
        "sync window opens 2026-12-06T02:00:00Z"
    );
}

#[test]
fn a_drift_revert_waits_for_the_window_too() {
    let mut policy = revert();
    policy.sync_windows = window_list(&[("0 2 * * 0", 3600)]);
    let snap = snapshot(&[("web", "w1")]);
    let plan = plan(
        &snap,
        &sync_map(&[("web", healthy("w1"))]),
        &[],
        &policy,
        saturday_3am(),
    );
    assert!(is_wait(action(&plan, "web")), "{plan:?}");
    assert!(plan.blocked["web"].starts_with("sync window opens "));
}

#[test]
fn a_stack_in_sync_is_not_blocked_whatever_the_windows_say() {
    let mut policy = revert();
    policy.sync_windows = window_list(&[("0 2 * * 0", 3600)]);
    let plan = plan(
        &snapshot(&[("web", "w1")]),
        &sync_map(&[("web", healthy("w1"))]),
        &[container("web", "app", "w1")],
        &policy,
        saturday_3am(),
    );
    assert!(matches!(action(&plan, "web"), Action::Observe { .. }));
    assert!(plan.blocked.is_empty());
}

#[test]
fn the_stack_drift_setting_overrides_the_global_policy() {
    let mut stopped = container("web", "app", "w1");
    stopped.state = "exited".into();
    stopped.status = "Exited (1) 1 second ago".into();
    for (drift, expected) in [
        (DriftPolicy::Ignore, "observe"),
        (DriftPolicy::Flag, "flag"),
        (DriftPolicy::Revert, "sync"),
    ] {
        let mut snap = snapshot(&[("web", "w1")]);
        with(
            &mut snap,
            "web",
            StackSettings {
                drift: Some(drift),
                ..StackSettings::default()
            },
        );
        let plan = plan(
            &snap,
            &sync_map(&[("web", healthy("w1"))]),
            std::slice::from_ref(&stopped),
            &revert(),
            saturday_3am(),
        );
        let got = match action(&plan, "web") {
            Action::Observe { .. } => "observe",
            Action::Flag { .. } => "flag",
            Action::Sync { .. } => "sync",
            other => panic!("{other:?}"),
        };
        assert_eq!(got, expected, "{drift:?}");
    }
    // Everything gone is drift too: ignored as well.
    let mut snap = snapshot(&[("web", "w1")]);
    with(
        &mut snap,
        "web",
        StackSettings {
            drift: Some(DriftPolicy::Ignore),
            ..StackSettings::default()
        },
    );
    let plan = plan(
        &snap,
        &sync_map(&[("web", healthy("w1"))]),
        &[],
        &revert(),
        saturday_3am(),
    );
    assert!(matches!(action(&plan, "web"), Action::Observe { .. }));
}

#[test]
fn a_stack_suspended_in_git_is_only_counted() {
    let mut snap = snapshot(&[("web", "w2")]);
    with(
        &mut snap,
        "web",
        StackSettings {
            suspend: Some(true),
            ..StackSettings::default()
        },
    );
    for containers in [vec![container("web", "app", "w1")], vec![]] {
        let plan = plan(
            &snap,
            &sync_map(&[("web", healthy("w1"))]),
            &containers,
            &revert(),
            saturday_3am(),
        );
        assert!(matches!(action(&plan, "web"), Action::Observe { .. }));
    }
    // `suspend: false` is no suspension.
    with(
        &mut snap,
        "web",
        StackSettings {
            suspend: Some(false),
            ..StackSettings::default()
        },
    );
    let plan = plan(&snap, &BTreeMap::new(), &[], &revert(), saturday_3am());
    assert!(is_sync(action(&plan, "web")));
}

fn gone_container(project: &str, depends_on: &str) -> ContainerInfo {
    let mut c = container(project, "app", "h");
    c.labels.depends_on = depends_on.into();
    c
}

#[test]
fn stacks_gone_from_git_are_removed_after_the_stacks_that_depended_on_them() {
    let mut policy = revert();
    policy.remove_enabled = true;
    let snap = snapshot(&[("keep", "k1")]);
    let all = [
        container("keep", "app", "k1"),
        gone_container("db", ""),
        gone_container("api", "db"),
        gone_container("web", "api,db"),
    ];
    let plan1 = plan(
        &snap,
        &sync_map(&[("keep", healthy("k1"))]),
        &all,
        &policy,
        saturday_3am(),
    );
    assert!(matches!(action(&plan1, "web"), Action::Remove { .. }));
    assert!(is_wait(action(&plan1, "api")));
    assert!(is_wait(action(&plan1, "db")));
    assert_eq!(
        plan1.blocked["db"],
        "waiting for api, web to be removed first (they depended on it)"
    );
    assert_eq!(
        plan1.blocked["api"],
        "waiting for web to be removed first (they depended on it)"
    );
    // web is gone: api goes next, then db.
    let plan2 = plan(
        &snap,
        &sync_map(&[("keep", healthy("k1"))]),
        &all[..3],
        &policy,
        saturday_3am(),
    );
    assert!(matches!(action(&plan2, "api"), Action::Remove { .. }));
    assert!(is_wait(action(&plan2, "db")));
    let plan3 = plan(
        &snap,
        &sync_map(&[("keep", healthy("k1"))]),
        &all[..2],
        &policy,
        saturday_3am(),
    );
    assert!(matches!(action(&plan3, "db"), Action::Remove { .. }));
    assert!(plan3.blocked.is_empty());
}

#[test]
fn a_removal_is_not_held_by_a_stack_still_in_git() {
    // A stack in Git that depends on a removed one has an error (unknown dependency) and does
    // not hold the removal back.
    let mut policy = revert();
    policy.remove_enabled = true;
    let mut snap = snapshot(&[("app", "a1")]);
    with(&mut snap, "app", depends_on(&["db"]));
    let plan = plan(
        &snap,
        &sync_map(&[("app", healthy("a1"))]),
        &[gone_container("app", "db"), gone_container("db", "")],
        &policy,
        saturday_3am(),
    );
    assert!(
        matches!(action(&plan, "db"), Action::Remove { .. }),
        "{plan:?}"
    );
}

fn with_update(available: bool, failed: bool) -> SyncInfo {
    let mut info = healthy("w1");
    info.images = vec![crate::desired_state::ImageStatus {
        service: "app".into(),
        image: "127.0.0.1:5000/team/app:1".into(),
        digest: Some("sha256:1".into()),
        latest_digest: Some("sha256:2".into()),
        update_available: available,
        error: None,
        image_id: Some("sha256:old".into()),
        update_failed: failed,
    }];
    info
}

#[test]
fn a_synced_stack_with_a_newer_image_is_updated_when_it_takes_updates() {
    let mut policy = revert();
    policy.image_updates = true;
    let running = [container("web", "app", "w1")];
    let plan_with = |info: SyncInfo, policy: &Policy, settings: StackSettings| {
        let mut snap = snapshot(&[("web", "w1")]);
        with(&mut snap, "web", settings);
        plan(
            &snap,
            &sync_map(&[("web", info)]),
            &running,
            policy,
            saturday_3am(),
        )
    };
    let plan1 = plan_with(with_update(true, false), &policy, StackSettings::default());
    assert!(
        matches!(action(&plan1, "web"), Action::UpdateImages { services, .. } if services == &["app".to_owned()]),
        "{plan1:?}"
    );
    // Nothing newer, an update that failed for this digest, or updates off: only observed.
    for (info, settings) in [
        (with_update(false, false), StackSettings::default()),
        (with_update(true, true), StackSettings::default()),
        (
            with_update(true, false),
            StackSettings {
                image_updates: Some(false),
                ..StackSettings::default()
            },
        ),
    ] {
        let p = plan_with(info, &policy, settings);
        assert!(matches!(action(&p, "web"), Action::Observe { .. }), "{p:?}");
    }
    // Off globally, on for the stack.
    let p = plan_with(
        with_update(true, false),
        &revert(),
        StackSettings {
            image_updates: Some(true),
            ..StackSettings::default()
        },
    );
    assert!(matches!(action(&p, "web"), Action::UpdateImages { .. }));
    // An image update respects sync windows.
    let p = plan_with(
        with_update(true, false),
        &policy,
        windows(&[("0 2 * * 0", 3600)]),
    );
    assert!(is_wait(action(&p, "web")), "{p:?}");
    assert!(p.blocked["web"].starts_with("sync window opens"));
}
