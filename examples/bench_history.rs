//! Deployment history benchmark (run by `scripts/bench-history.sh`), on the disk of
//! `BENCH_DIR` (default: the system's temporary directory).
//!
//! 1. fsyncs per append: this binary re-runs itself under `strace -c -f -e
//!    trace=fdatasync,fsync` (when strace is installed) to append to a store of 1,000 stacks ×
//!    20 records, once with no appends and once with 1,000, and takes the difference. Also
//!    with a single stack, where compactions come most often.
//! 2. Load on restart: `History::open` of 1,000 stacks × 20 records (target ≤ 200 ms).
//! 3. Append latency (one `write` + one `fdatasync`): median and p99 of 1,000 appends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use docker_cd::history::{DeployedImage, History, NewDeployment, Outcome, Trigger};

const STACKS: usize = 1000;
const LIMIT: usize = 20;

fn deployment(stack: usize, n: usize) -> NewDeployment {
    let now = SystemTime::now();
    NewDeployment {
        stack: format!("apps/team-{:02}/service-{stack:04}", stack % 37),
        revision: format!("{:040x}", n * 7919 + stack),
        commit_message: format!("Bump service-{stack} to 1.{n}\n\nSigned-off-by: bench"),
        content_hash: format!("{:064x}", n * 104_729 + stack),
        trigger: Trigger::Commit,
        started_at: now,
        finished_at: now + Duration::from_secs(4),
        outcome: if n % 5 == 4 {
            Outcome::Failed
        } else {
            Outcome::Succeeded
        },
        reason: (n % 5 == 4).then(|| "compose up: service web is unhealthy".to_owned()),
        images: vec![
            DeployedImage {
                service: "web".into(),
                image: format!("registry.example.com/team/web:1.{n}"),
                image_id: Some(format!("sha256:{:064x}", n + stack)),
            },
            DeployedImage {
                service: "worker".into(),
                image: "registry.example.com/team/worker:2".into(),
                image_id: Some(format!("sha256:{:064x}", stack)),
            },
        ],
        hooks: Vec::new(),
    }
}

/// A store of `stacks` × `LIMIT` records in `dir`. Written on tmpfs when there is one (20,000
/// fdatasyncs would only measure the disk) and copied over.
fn build(dir: &Path, stacks: usize) {
    let shm = Path::new("/dev/shm");
    let scratch = tempfile::tempdir_in(if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    })
    .unwrap();
    let (history, _) = History::open(scratch.path(), LIMIT).unwrap();
    for n in 0..LIMIT {
        for stack in 0..stacks {
            history.append(deployment(stack, n)).unwrap();
        }
    }
    drop(history);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(
        scratch.path().join("deployments.log"),
        dir.join("deployments.log"),
    )
    .unwrap();
}

/// Child mode: `append DIR STACKS COUNT`.
fn append(dir: &Path, stacks: usize, count: usize) {
    let (history, _) = History::open(dir, LIMIT).unwrap();
    for i in 0..count {
        history.append(deployment(i % stacks, LIMIT + i)).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// fdatasync + fsync calls of `append DIR STACKS COUNT`, counted by strace.
fn syncs(store: &Path, work: &Path, stacks: usize, count: usize) -> u64 {
    let dir = work.join(format!("strace-{stacks}-{count}"));
    copy_dir(store, &dir);
    let out = work.join(format!("strace-{stacks}-{count}.txt"));
    let status = Command::new("strace")
        .args(["-c", "-f", "-e", "trace=fdatasync,fsync", "-o"])
        .arg(&out)
        .arg(std::env::current_exe().unwrap())
        .arg("append")
        .arg(&dir)
        .arg(stacks.to_string())
        .arg(count.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let report = std::fs::read_to_string(&out).unwrap();
    // `% time  seconds  usecs/call  calls  [errors]  syscall`: sum the calls column.
    report
        .lines()
        .filter(|l| l.ends_with(" fdatasync") || l.ends_with(" fsync"))
        .map(|l| l.split_whitespace().nth(3).unwrap().parse::<u64>().unwrap())
        .sum()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("append") {
        append(
            Path::new(&args[2]),
            args[3].parse().unwrap(),
            args[4].parse().unwrap(),
        );
        return;
    }
    let base: PathBuf = std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let work = tempfile::tempdir_in(base).unwrap();
    let store = work.path().join("store");
    let started = Instant::now();
    build(&store, STACKS);
    let size = std::fs::metadata(store.join("deployments.log"))
        .unwrap()
        .len();
    println!(
        "store: {STACKS} stacks × {LIMIT} records, {:.1} MB, {} bytes per record (built in {:.1} s)",
        size as f64 / 1e6,
        size / (STACKS * LIMIT) as u64,
        started.elapsed().as_secs_f64()
    );

    // 1. fsyncs per append.
    if which::which("strace").is_ok() {
        let count = 1000;
        let base = syncs(&store, work.path(), STACKS, 0);
        let with = syncs(&store, work.path(), STACKS, count);
        println!(
            "fsyncs per append, {STACKS} stacks: {:.3} ({} fdatasync/fsync calls for {count} appends, open alone: {base})",
            (with - base) as f64 / count as f64,
            with - base
        );
        let single = work.path().join("single");
        std::fs::create_dir_all(&single).unwrap();
        let count = 10_000;
        let base = syncs(&single, work.path(), 1, 0);
        let with = syncs(&single, work.path(), 1, count);
        println!(
            "fsyncs per append, 1 stack (compactions included): {:.4} ({} calls for {count} appends, open alone: {base})",
            (with - base) as f64 / count as f64,
            with - base
        );
    } else {
        println!("fsyncs per append: strace not found; by the code, one fdatasync per append");
    }

    // 2. Load on restart.
    let mut loads = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        let (history, report) = History::open(&store, LIMIT).unwrap();
        loads.push(started.elapsed());
        assert_eq!(
            (report.kept, report.skipped(), report.compacted),
            (STACKS * LIMIT, 0, false)
        );
        drop(history);
    }
    loads.sort();
    println!(
        "load on restart, {STACKS} stacks × {LIMIT}: median {}, max {} (target ≤ 200 ms)",
        ms(percentile(&loads, 0.5)),
        ms(*loads.last().unwrap())
    );

    // 3. Append latency, on the store just loaded.
    let (history, _) = History::open(&store, LIMIT).unwrap();
    let mut latencies = Vec::new();
    for i in 0..1000 {
        let new = deployment(i % STACKS, LIMIT + i);
        let started = Instant::now();
        history.append(new).unwrap();
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "append latency (write + fdatasync), 1,000 appends: median {}, p99 {}, max {}",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap())
    );
    let started = Instant::now();
    for _ in 0..1000 {
        std::hint::black_box(history.list(&deployment(7, 0).stack));
    }
    println!(
        "list of one stack ({LIMIT} records): {:.1} µs",
        started.elapsed().as_secs_f64() * 1e6 / 1000.0
    );
}
