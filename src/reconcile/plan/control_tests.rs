//! The plan's rules for what an operator controls (SPEC §9, §10): suspended stacks, pins,
//! automatic rollbacks, syncs asked for, and failed health waits.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::tests::{backs_off_then_retries, container, only, revert, snapshot, sync_map, synced};
use super::*;
use crate::desired_state::{Hold, Request, Target};

fn target(revision: &str, hash: &str) -> Target {
    Target {
        revision: revision.into(),
        content_hash: hash.into(),
        compose_file: "compose.yaml".into(),
        compose_hash: Some("c0".into()),
        commit_message: "old".into(),
    }
}

fn pinned(at: Target) -> SyncInfo {
    let mut info = synced(&at.content_hash);
    info.restore_pin(at);
    info
}

#[test]
fn a_suspended_stack_is_only_counted_whatever_differs() {
    let mut info = synced("h1");
    info.suspend();
    let now = SystemTime::now();
    // Changed in Git, gone from the host, drifted: none of it is acted on.
    for containers in [vec![container("web", "app", "h1")], vec![]] {
        let action = only(plan(
            &snapshot(&[("web", "h2")]),
            &sync_map(&[("web", info.clone())]),
            &containers,
            &revert(),
            now,
        ));
        assert!(matches!(action, Action::Observe { .. }), "{action:?}");
    }
    let mut stopped = container("web", "app", "h1");
    stopped.state = "exited".into();
    stopped.status = "Exited (1) 1 second ago".into();
    let action = only(plan(
        &snapshot(&[("web", "h1")]),
        &sync_map(&[("web", info.clone())]),
        &[stopped],
        &revert(),
        now,
    ));
    assert!(matches!(action, Action::Observe { .. }), "{action:?}");
}

#[test]
fn a_suspended_stack_gone_from_git_is_never_removed() {
    let mut info = synced("h1");
    info.suspend();
    let mut policy = revert();
    policy.remove_enabled = true;
    let plan = plan(
        &snapshot(&[("other", "h9")]),
        &sync_map(&[("web", info)]),
        &[
            container("web", "app", "h1"),
            container("other", "app", "h9"),
        ],
        &policy,
        SystemTime::now(),
    );
    let web: Vec<&Action> = plan.actions.iter().filter(|a| a.path() == "web").collect();
    assert!(
        matches!(web.as_slice(), [Action::Orphan { reason, .. }] if reason.contains("suspended")),
        "{web:?}"
    );
}

#[test]
fn a_pinned_stack_is_synced_to_its_pin_not_to_git() {
    let info = pinned(target("old1", "h0"));
    // Git moved on (h2); the host runs h1: the pin (h0) is what gets applied.
    let action = only(plan(
        &snapshot(&[("web", "h2")]),
        &sync_map(&[("web", info.clone())]),
        &[container("web", "app", "h1")],
        &revert(),
        SystemTime::now(),
    ));
    match action {
        Action::Sync { target, reason, .. } => {
            assert_eq!(target, Some(target_of("old1", "h0")));
            assert_eq!(
                reason,
                SyncReason::ContentChanged {
                    deployed: "h1".into(),
                    desired: "h0".into()
                }
            );
        }
        other => panic!("{other:?}"),
    }
    // Running the pin: nothing to do, whatever Git says.
    let action = only(plan(
        &snapshot(&[("web", "h2")]),
        &sync_map(&[("web", info)]),
        &[container("web", "app", "h0")],
        &revert(),
        SystemTime::now(),
    ));
    assert!(matches!(action, Action::Observe { .. }), "{action:?}");
}

fn target_of(revision: &str, hash: &str) -> Target {
    target(revision, hash)
}

#[test]
fn an_unpinned_stack_goes_back_to_git() {
    let mut info = pinned(target("old1", "h0"));
    info.unpin();
    assert_eq!(info.pinned_revision, None);
    let action = only(plan(
        &snapshot(&[("web", "h2")]),
        &sync_map(&[("web", info)]),
        &[container("web", "app", "h0")],
        &revert(),
        SystemTime::now(),
    ));
    assert!(
        matches!(&action, Action::Sync { target: None, reason: SyncReason::ContentChanged { desired, .. }, .. } if desired == "h2"),
        "{action:?}"
    );
}

#[test]
fn asked_for_syncs_run_even_in_sync_and_a_rollback_applies_its_pin() {
    let mut info = synced("h1");
    info.request_sync();
    let action = only(plan(
        &snapshot(&[("web", "h1")]),
        &sync_map(&[("web", info)]),
        &[container("web", "app", "h1")],
        &revert(),
        SystemTime::now(),
    ));
    assert!(
        matches!(
            &action,
            Action::Sync {
                reason: SyncReason::Manual,
                target: None,
                reuse: None,
                ..
            }
        ),
        "{action:?}"
    );
    let mut info = synced("h1");
    info.pin(target("old1", "h0"));
    assert_eq!(info.pinned_revision.as_deref(), Some("old1"));
    let action = only(plan(
        &snapshot(&[("web", "h1")]),
        &sync_map(&[("web", info.clone())]),
        &[container("web", "app", "h1")],
        &revert(),
        SystemTime::now(),
    ));
    assert!(
        matches!(&action, Action::Sync { reason: SyncReason::Rollback(rev), target: Some(t), .. } if rev == "old1" && t.content_hash == "h0"),
        "{action:?}"
    );
    // A sync of another cause leaves the request; the requested sync spends it.
    info.start_sync();
    assert_eq!(info.requested, Some(Request::Rollback));
    info.start_requested_sync();
    assert_eq!(info.requested, None);
}

#[test]
fn after_an_automatic_rollback_the_stack_stays_failed_on_the_old_version_until_git_moves() {
    let mut info = synced("h1");
    let deployed = crate::desired_state::transitions::Deployment {
        revision: "old1".into(),
        commit_message: None,
        content_hash: "h1".into(),
        compose_hash: None,
        synced_at: None,
    };
    info.roll_back(
        deployed,
        target("old1", "h1"),
        "h2",
        "web: unhealthy",
        SystemTime::now(),
    );
    assert_eq!(info.status, StackStatus::Failed);
    assert!(
        info.last_sync_error
            .as_deref()
            .is_some_and(|e| e.starts_with("rolled back to old1: web: unhealthy")),
        "{:?}",
        info.last_sync_error
    );
    assert_eq!(
        info.pinned_revision, None,
        "an automatic rollback is not an operator's pin"
    );
    // Git still says h2, the host runs h1: left alone, still failed.
    let action = only(plan(
        &snapshot(&[("web", "h2")]),
        &sync_map(&[("web", info.clone())]),
        &[container("web", "app", "h1")],
        &revert(),
        SystemTime::now(),
    ));
    assert!(matches!(action, Action::Observe { .. }), "{action:?}");
    // A newer commit (h3): synced at once, no backoff.
    let action = only(plan(
        &snapshot(&[("web", "h3")]),
        &sync_map(&[("web", info)]),
        &[container("web", "app", "h1")],
        &revert(),
        SystemTime::now(),
    ));
    assert!(
        matches!(&action, Action::Sync { target: None, .. }),
        "{action:?}"
    );
}

#[test]
fn a_failed_health_wait_is_not_recognised_from_matching_labels_but_retried_after_backoff() {
    let mut info = SyncInfo::new(StackStatus::Missing);
    let at = SystemTime::now();
    info.fail("web: unhealthy".into(), "h1", at);
    let sync = sync_map(&[("web", info)]);
    let running = [container("web", "app", "h1")];
    backs_off_then_retries(&sync, &running, at);
}

#[test]
fn holds_apply_only_while_git_says_what_failed() {
    let auto = Hold {
        target: target("old1", "h1"),
        rolled_back_from: Some("h2".into()),
    };
    assert!(auto.applies("h2"));
    assert!(!auto.applies("h3"));
    let pin = Hold {
        target: target("old1", "h1"),
        rolled_back_from: None,
    };
    assert!(pin.applies("h2") && pin.applies("h3"));
    let _ = BTreeMap::<String, SyncInfo>::new();
}
