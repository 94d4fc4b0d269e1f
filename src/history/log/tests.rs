use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, UNIX_EPOCH};

use super::*;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A deployment whose every field is derived from `n`, so a reader can tell it is intact.
fn sample(stack: &str, n: u64) -> NewDeployment {
    NewDeployment {
        stack: stack.into(),
        revision: format!("rev{n:038}"),
        commit_message: format!("fix: change {n}\n\nwith a body, \"quotes\" and ünïcode"),
        content_hash: format!("hash-{n}"),
        trigger: if n % 2 == 0 {
            Trigger::Commit
        } else {
            Trigger::ImageUpdate
        },
        started_at: at(1_700_000_000 + n),
        finished_at: at(1_700_000_000 + n + 3),
        outcome: if n % 3 == 2 {
            Outcome::Failed
        } else {
            Outcome::Succeeded
        },
        reason: (n % 3 == 2).then(|| format!("compose up failed for {n}")),
        images: vec![DeployedImage {
            service: "web".into(),
            image: format!("nginx:1.{n}"),
            image_id: Some(format!("sha256:{n:064}")),
        }],
        hooks: if n % 4 == 1 {
            vec![crate::history::HookRun {
                phase: "preSync".into(),
                service: "migrate".into(),
                exit_code: Some(0),
                output: format!("migrated to {n}\n"),
            }]
        } else {
            Vec::new()
        },
    }
}

/// The `n` a deployment was made from, if every field agrees with [`sample`].
fn sample_number(d: &Deployment) -> Option<u64> {
    let n: u64 = d.content_hash.strip_prefix("hash-")?.parse().ok()?;
    let expected = Deployment::new(d.id, sample(&d.stack, n));
    (*d == expected).then_some(n)
}

/// Opens without the compaction floor, so that small tests compact.
fn open(dir: &Path, limit: usize) -> (History, LoadReport) {
    History::open_with_floor(dir, limit, 0).unwrap()
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

fn record_lines(dir: &Path) -> usize {
    std::fs::read_to_string(log_path(dir))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"stack\""))
        .count()
}

fn ids(deployments: &[Deployment]) -> Vec<u64> {
    deployments.iter().map(|d| d.id).collect()
}

#[test]
fn appends_are_listed_newest_first_with_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let (history, report) = open(dir.path(), DEFAULT_LIMIT);
    assert_eq!(
        (report.records, report.next_id, report.compacted),
        (0, 1, false)
    );
    let a1 = history.append(sample("apps/web", 1)).unwrap();
    let b = history.append(sample("apps/db", 2)).unwrap();
    let a2 = history.append(sample("apps/web", 3)).unwrap();
    assert_eq!(ids(&[a1.clone(), b.clone(), a2.clone()]), vec![1, 2, 3]);
    assert_eq!(a1, Deployment::new(1, sample("apps/web", 1)));
    assert_eq!(history.list("apps/web"), vec![a2, a1]);
    assert_eq!(history.list("apps/db"), vec![b]);
    assert!(history.list("apps/none").is_empty());
    let mut stacks = history.stacks();
    stacks.sort();
    assert_eq!(stacks, vec!["apps/db", "apps/web"]);
}

#[test]
fn a_deployment_serialises_as_the_spec_record() {
    let d = Deployment::new(7, sample("apps/web", 2));
    let value = serde_json::to_value(&d).unwrap();
    let n = format!("{:064}", 2);
    assert_eq!(
        value,
        serde_json::json!({
            "id": 7,
            "revision": format!("rev{:038}", 2),
            "commitMessage": "fix: change 2\n\nwith a body, \"quotes\" and ünïcode",
            "contentHash": "hash-2",
            "trigger": "commit",
            "startedAt": "2023-11-14T22:13:22Z",
            "finishedAt": "2023-11-14T22:13:25Z",
            "outcome": "failed",
            "reason": "compose up failed for 2",
            "images": [{"service": "web", "image": "nginx:1.2", "imageId": format!("sha256:{n}")}],
            "hooks": [],
        })
    );
    // A record with a hook carries its phase, service, exit code and output.
    let hooked = serde_json::to_value(Deployment::new(8, sample("apps/web", 1))).unwrap();
    assert_eq!(
        hooked["hooks"],
        serde_json::json!([{"phase": "preSync", "service": "migrate", "exitCode": 0, "output": "migrated to 1\n"}])
    );
    for (t, s) in [
        (Trigger::Commit, "commit"),
        (Trigger::Drift, "drift"),
        (Trigger::Manual, "manual"),
        (Trigger::Rollback, "rollback"),
        (Trigger::ImageUpdate, "image-update"),
        (Trigger::Ack, "ack"),
    ] {
        assert_eq!(t.as_str(), s);
        assert_eq!(serde_json::to_value(t).unwrap(), s);
    }
    for (o, s) in [
        (Outcome::Succeeded, "succeeded"),
        (Outcome::Failed, "failed"),
        (Outcome::RolledBack, "rolled-back"),
    ] {
        assert_eq!(o.as_str(), s);
        assert_eq!(serde_json::to_value(o).unwrap(), s);
    }
}

#[test]
fn times_are_kept_to_the_second_so_a_reopen_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (history, _) = open(dir.path(), DEFAULT_LIMIT);
    let mut new = sample("s", 1);
    new.started_at = at(100) + Duration::from_millis(999);
    let d = history.append(new).unwrap();
    assert_eq!(d.started_at, at(100));
    drop(history);
    let (history, _) = open(dir.path(), DEFAULT_LIMIT);
    assert_eq!(history.list("s"), vec![d]);
}

#[test]
fn a_reopen_after_drop_keeps_everything_and_ids_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (history, _) = open(dir.path(), DEFAULT_LIMIT);
    for n in 0..10 {
        history.append(sample(&format!("s{}", n % 3), n)).unwrap();
    }
    let before: Vec<_> = (0..3).map(|s| history.list(&format!("s{s}"))).collect();
    drop(history);

    let (history, report) = open(dir.path(), DEFAULT_LIMIT);
    assert_eq!(
        (
            report.records,
            report.kept,
            report.stacks,
            report.skipped(),
            report.compacted
        ),
        (10, 10, 3, 0, false)
    );
    let after: Vec<_> = (0..3).map(|s| history.list(&format!("s{s}"))).collect();
    assert_eq!(before, after);
    assert_eq!(history.append(sample("s0", 10)).unwrap().id, 11);
}

#[test]
fn a_file_cut_in_the_middle_of_the_last_record_loses_only_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let (history, _) = open(dir.path(), DEFAULT_LIMIT);
    for n in 0..5 {
        history.append(sample("s", n)).unwrap();
    }
    let kept = history.list("s")[1..].to_vec();
    drop(history);
    let path = log_path(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    let last_line_start = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let cut = last_line_start + (bytes.len() - last_line_start) / 2;
    std::fs::write(&path, &bytes[..cut]).unwrap();

    let (history, report) = open(dir.path(), DEFAULT_LIMIT);
    assert!(report.torn);
    assert_eq!(
        (report.records, report.damaged, report.skipped()),
        (4, 0, 1)
    );
    assert!(
        report.compacted,
        "a torn tail is cut off before anything is appended"
    );
    assert_eq!(history.list("s"), kept);

    let next = history.append(sample("s", 5)).unwrap();
    assert!(next.id > kept[0].id);
    drop(history);
    let (history, report) = open(dir.path(), DEFAULT_LIMIT);
    assert_eq!((report.records, report.skipped()), (5, 0));
    assert_eq!(history.list("s")[0], next);
}

#[test]
fn a_flipped_byte_in_a_middle_record_loses_only_that_record() {
    for target in ["json", "checksum"] {
        let dir = tempfile::tempdir().unwrap();
        let (history, _) = open(dir.path(), DEFAULT_LIMIT);
        for n in 0..5 {
            history.append(sample("s", n)).unwrap();
        }
        let mut expected = history.list("s");
        expected.remove(2); // id 3, the third record
        drop(history);

        let path = log_path(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        // Line 0 is the header; line 3 holds id 3.
        let line_start = bytes
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .nth(2)
            .unwrap()
            .0
            + 1;
        let offset = match target {
            "json" => line_start + SUM_LEN + 40,
            _ => line_start + 3,
        };
        bytes[offset] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();

        let (history, report) = open(dir.path(), DEFAULT_LIMIT);
        assert_eq!((report.records, report.damaged, report.torn), (4, 1, false));
        assert!(report.compacted);
        assert_eq!(history.list("s"), expected, "{target}");
        drop(history);
        let (_, report) = open(dir.path(), DEFAULT_LIMIT);
        assert_eq!((report.records, report.skipped()), (4, 0));
    }
}

#[test]
fn each_stack_keeps_its_newest_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (history, _) = open(dir.path(), 3);
    for n in 1..=5 {
        history.append(sample("a", n)).unwrap();
    }
    history.append(sample("b", 6)).unwrap();
    history.append(sample("b", 7)).unwrap();
    assert_eq!(ids(&history.list("a")), vec![5, 4, 3]);
    assert_eq!(ids(&history.list("b")), vec![7, 6]);
    drop(history);
    let (history, report) = open(dir.path(), 3);
    assert_eq!((report.records, report.kept), (7, 5));
    assert_eq!(ids(&history.list("a")), vec![5, 4, 3]);
    assert_eq!(ids(&history.list("b")), vec![7, 6]);
}

#[test]
fn compaction_keeps_the_newest_records_and_ids_keep_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let (history, _) = open(dir.path(), 2);
    for n in 1..=50 {
        let d = history.append(sample(&format!("s{}", n % 2), n)).unwrap();
        assert_eq!(d.id, n);
        // Two stacks, limit 2: compaction at more than 8 records, down to 4.
        assert!(record_lines(dir.path()) <= 8, "after {n}");
    }
    assert_eq!(ids(&history.list("s0")), vec![50, 48]);
    assert_eq!(ids(&history.list("s1")), vec![49, 47]);
    drop(history);

    let (history, report) = open(dir.path(), 2);
    assert_eq!(report.skipped(), 0);
    assert_eq!(ids(&history.list("s0")), vec![50, 48]);
    assert_eq!(ids(&history.list("s1")), vec![49, 47]);
    assert_eq!(history.append(sample("s0", 51)).unwrap().id, 51);
}

#[test]
fn a_small_store_is_not_compacted_below_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let (history, _) = History::open(dir.path(), 2).unwrap();
    for n in 1..=30 {
        history.append(sample("s", n)).unwrap();
    }
    assert_eq!(record_lines(dir.path()), 30);
    assert_eq!(ids(&history.list("s")), vec![30, 29]);
    assert_eq!(threshold(20, 1000, COMPACT_FLOOR), 40_000);
    assert_eq!(threshold(20, 1, COMPACT_FLOOR), COMPACT_FLOOR);
}

#[test]
fn a_file_over_the_threshold_is_compacted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (history, _) = open(dir.path(), 100);
    for n in 1..=30 {
        history.append(sample("s", n)).unwrap();
    }
    drop(history);
    let (history, report) = open(dir.path(), 5);
    assert_eq!(
        (report.records, report.kept, report.compacted),
        (30, 5, true)
    );
    assert_eq!(record_lines(dir.path()), 5);
    assert_eq!(ids(&history.list("s")), vec![30, 29, 28, 27, 26]);
}

#[test]
fn forgetting_a_stack_removes_it_on_disk_and_its_ids_are_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (history, _) = open(dir.path(), DEFAULT_LIMIT);
    history.append(sample("kept", 1)).unwrap();
    history.append(sample("gone", 2)).unwrap();
    history.append(sample("gone", 3)).unwrap();
    history.forget("gone").unwrap();
    history.forget("never-there").unwrap();
    assert!(history.list("gone").is_empty());
    drop(history);

    let (history, report) = open(dir.path(), DEFAULT_LIMIT);
    assert_eq!((report.records, report.next_id), (1, 4));
    assert!(history.list("gone").is_empty());
    assert_eq!(history.append(sample("kept", 4)).unwrap().id, 4);
}

#[test]
fn the_succeeded_deployments_rollback_looks_for() {
    let dir = tempfile::tempdir().unwrap();
    let (history, _) = open(dir.path(), DEFAULT_LIMIT);
    let deploy = |revision: &str, outcome| {
        let mut new = sample("s", 0);
        new.revision = revision.into();
        new.outcome = outcome;
        history.append(new).unwrap()
    };
    assert_eq!(history.last_succeeded("s"), None);
    let old = deploy("r1", Outcome::Succeeded);
    let current = deploy("r2", Outcome::Succeeded);
    let again = deploy("r2", Outcome::Succeeded);
    deploy("r3", Outcome::Failed);
    deploy("r3", Outcome::RolledBack);
    assert_eq!(history.last_succeeded("s"), Some(again));
    assert_eq!(history.previous_succeeded("s", "r2"), Some(old.clone()));
    assert_eq!(history.previous_succeeded("s", "r1").map(|d| d.id), Some(3));
    assert_ne!(current.id, 3);
    assert_eq!(history.previous_succeeded("other", "r2"), None);
}

#[test]
fn appends_from_many_threads_get_distinct_ids_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let (history, _) = open(dir.path(), 1000);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let history = &history;
            scope.spawn(move || {
                for n in 0..25 {
                    history.append(sample(&format!("t{t}"), n)).unwrap();
                }
            });
        }
    });
    drop(history);
    let bytes = std::fs::read(log_path(dir.path())).unwrap();
    let parsed = parse(&bytes, Path::new("x")).unwrap();
    assert_eq!(ids(&parsed.records), (1..=100).collect::<Vec<_>>());
}

#[test]
fn a_file_of_another_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let header = br#"{"format":"docker-cd-history","version":2,"nextId":1}"#;
    std::fs::write(log_path(dir.path()), encode_line(header)).unwrap();
    let err = History::open(dir.path(), DEFAULT_LIMIT).unwrap_err();
    assert!(matches!(
        err,
        HistoryError::UnsupportedVersion { found: 2, .. }
    ));
    assert!(
        err.to_string()
            .contains("deployments.log has format version 2"),
        "{err}"
    );
}

#[test]
fn parsing_skips_damage_and_empty_lines_and_keeps_the_rest() {
    let record = |n| {
        let d = Deployment::new(n, sample("s", n));
        let json = serde_json::to_vec(&Line {
            stack: "s",
            deployment: &d,
        })
        .unwrap();
        encode_line(&json)
    };
    let path = Path::new("deployments.log");
    let parsed = parse(b"", path).unwrap();
    assert_eq!(
        (parsed.records.len(), parsed.damaged, parsed.torn),
        (0, 0, false)
    );
    let parsed = parse(b"0123", path).unwrap();
    assert_eq!(
        (parsed.records.len(), parsed.damaged, parsed.torn),
        (0, 0, true)
    );

    let mut bytes = record(1);
    bytes.extend(b"\n\n"); // left by failed appends
    bytes.extend(b"not a record at all\n");
    bytes.extend(encode_line(b"{\"valid\": \"checksum, not a record\"}"));
    bytes.extend(record(2));
    let parsed = parse(&bytes, path).unwrap();
    assert_eq!(ids(&parsed.records), vec![1, 2]);
    assert_eq!(
        (parsed.damaged, parsed.torn, parsed.next_id),
        (2, false, None)
    );
    assert_eq!(parsed.records[1].stack, "s");
}

// The kill test. The crate spawns children only through `crate::process`; this test is the
// exception: it re-runs its own test binary (`std::process`, synchronously) as the writer to
// kill, selected by an environment variable, which only the test reads.

const WRITER_DIR: &str = "DOCKER_CD_TEST_HISTORY_WRITER_DIR";
const WRITER_LIMIT: &str = "DOCKER_CD_TEST_HISTORY_WRITER_LIMIT";

/// In the child: appends until killed, printing each acknowledged id.
fn run_writer_if_child() -> bool {
    let Some(dir) = std::env::var_os(WRITER_DIR) else {
        return false;
    };
    let limit = std::env::var(WRITER_LIMIT).unwrap().parse().unwrap();
    let (history, _) = open(Path::new(&dir), limit);
    let mut out = std::io::stdout().lock();
    // Bounded, in case the parent dies without killing us.
    for n in 0..200_000 {
        let d = history.append(sample(&format!("s{}", n % 3), n)).unwrap();
        writeln!(out, "acked {}", d.id).unwrap();
        out.flush().unwrap();
    }
    true
}

/// Starts the writer, kills it with SIGKILL once it acknowledged `after` records (it is in the
/// middle of further appends by then), and returns the last id it acknowledged.
fn kill_writer_after(test: &str, dir: &Path, limit: usize, after: usize) -> u64 {
    use std::process::{Command, Stdio};

    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let name = test.strip_prefix("docker_cd::").unwrap_or(test);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(WRITER_DIR, dir)
        .env(WRITER_LIMIT, limit.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // The pipe stays open until the child is dead: closing it first would make the child's
    // next print fail, and it would stop between appends instead of in one.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut last = 0;
    let mut seen = 0;
    let mut line = String::new();
    while seen < after {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(id) = line.trim_end().strip_prefix("acked ") {
            last = id.parse().unwrap();
            seen += 1;
        }
    }
    assert_eq!(seen, after, "the writer stopped early");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    let status = child.wait().unwrap();
    drop(stdout);
    assert_eq!(status.signal(), Some(9), "killed: {status:?}");
    last
}

#[test]
fn kill_9_while_appending_loses_at_most_the_last_record() {
    if run_writer_if_child() {
        return;
    }
    let test = concat!(
        module_path!(),
        "::kill_9_while_appending_loses_at_most_the_last_record"
    );
    let dir = tempfile::tempdir().unwrap();
    // A limit no run reaches: no compaction, so every record ever written must still be there.
    let limit = 1_000_000;
    for after in [40, 150, 300] {
        let acked = kill_writer_after(test, dir.path(), limit, after);
        let (history, report) = open(dir.path(), limit);
        assert_eq!(report.damaged, 0, "{report:?}");
        assert!(report.skipped() <= 1, "{report:?}");
        let mut all: Vec<Deployment> = (0..3)
            .flat_map(|s| history.list(&format!("s{s}")))
            .collect();
        all.sort_by_key(|d| d.id);
        for d in &all {
            assert!(sample_number(d).is_some(), "damaged record {d:?}");
        }
        // Nothing missing in the middle, nothing acknowledged missing at the end.
        assert_eq!(ids(&all), (1..=all.len() as u64).collect::<Vec<_>>());
        assert!(
            all.len() as u64 >= acked,
            "acked {acked}, kept {}",
            all.len()
        );
    }
}

#[test]
fn kill_9_during_compactions_keeps_the_newest_records() {
    if run_writer_if_child() {
        return;
    }
    let test = concat!(
        module_path!(),
        "::kill_9_during_compactions_keeps_the_newest_records"
    );
    let dir = tempfile::tempdir().unwrap();
    // Three stacks, limit 2: a compaction every 7 appends or so.
    let limit = 2;
    for after in [25, 77, 130] {
        let acked = kill_writer_after(test, dir.path(), limit, after);
        let (history, report) = open(dir.path(), limit);
        assert_eq!(report.damaged, 0, "{report:?}");
        assert!(report.skipped() <= 1, "{report:?}");
        let mut newest = 0;
        for s in 0..3 {
            let list = history.list(&format!("s{s}"));
            assert_eq!(list.len(), limit);
            assert!(list[0].id > list[1].id);
            assert!(list.iter().all(|d| sample_number(d).is_some()));
            newest = newest.max(list[0].id);
        }
        assert!(newest >= acked, "acked {acked}, newest kept {newest}");
        assert!(report.next_id > newest);
    }
}
