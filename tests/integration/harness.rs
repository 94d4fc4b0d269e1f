//! The test harness's own invariant check, shown able to fail: a process left running with an
//! instance's marker, and a zombie child, are both reported. Each case holds
//! [`common::PROCESS_SCAN`] exclusively: the zombie made here would otherwise be seen by the
//! checks of the other tests of this binary, and each case's process by the other's scan.

use crate::common;

use std::time::Duration;

/// Runs the check in its own task and returns its panic message, or `None` if it passed.
async fn check_message(markers: Vec<String>) -> Option<String> {
    let outcome =
        tokio::spawn(async move { common::assert_no_leftover_processes(&markers).await }).await;
    match outcome {
        Ok(()) => None,
        Err(e) => {
            let panic = e.into_panic();
            Some(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
            )
        }
    }
}

#[tokio::test]
async fn a_running_process_with_the_instance_marker_is_reported_and_none_after_it_ends() {
    let _alone = common::PROCESS_SCAN.write().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("data").display().to_string();
    // `$0` of the shell is the marker: it shows in the command line.
    let mut child = std::process::Command::new("sh")
        .args(["-c", "sleep 30", &marker])
        .spawn()
        .unwrap();
    let message = check_message(vec![marker.clone()]).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let message = message.expect("a live process with the marker fails the check");
    assert!(
        message.contains(&format!("{}", child.id())) && message.contains(&marker),
        "{message}"
    );
    assert_eq!(check_message(vec![marker]).await, None);
}

#[tokio::test]
async fn a_zombie_child_that_stays_is_reported_and_none_after_it_is_reaped() {
    let _alone = common::PROCESS_SCAN.write().await;
    let mut child = std::process::Command::new("true").spawn().unwrap();
    // Not waited for: it stays a zombie.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let message = check_message(Vec::new()).await;
    child.wait().unwrap();
    let message = message.expect("a zombie child fails the check");
    assert!(
        message.contains(&format!("zombie child {}", child.id())),
        "{message}"
    );
    assert_eq!(check_message(Vec::new()).await, None);
}
