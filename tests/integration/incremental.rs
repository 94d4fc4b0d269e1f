//! The incremental read (`diff-tree` against the previous snapshot's commit, applied to its
//! listing) must give exactly what a full read (`ls-tree` of the whole deploy dir) gives: same
//! stacks, content and compose hashes, errors, warnings and listing. Checked on real git with
//! random sequences of commits (fixed seeds, so a failure reproduces), for a deploy dir and for
//! the repository root, and checked that the incremental path is really the one taken.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use common::TestRepo;
use docker_cd::config::{DeployDir, GitConfig, RepoUrl, Revision, SshSettings};
use docker_cd::desired_state::{COMPOSE_FILE_NAMES, MAX_COMPOSE_FILE_BYTES, Snapshot};
use docker_cd::git::GitReader;

/// A small deterministic generator (xorshift64*), so that no dependency is needed and every
/// failure names the seed that reproduces it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Directory names a stack may have: plain, uppercase, with a space, colliding project names,
/// hidden ones, and one with no valid project-name character.
const NAMES: [&str; 10] = [
    "web", "db", "Web App", "webapp", "x-1", ".hidden", "notes", "日本", "z", "cache",
];

fn compose(rng: &mut Rng) -> String {
    format!(
        "services:\n  app:\n    image: busybox:{}\n",
        rng.below(1_000_000)
    )
}

/// One random change to the work tree under `deploy` (empty: the root); returns what it did.
fn mutate(repo: &TestRepo, deploy: &str, rng: &mut Rng) -> String {
    let at = |p: &str| {
        if deploy.is_empty() {
            p.to_owned()
        } else {
            format!("{deploy}/{p}")
        }
    };
    let work = repo.work();
    let exists = |p: &str| std::fs::symlink_metadata(work.join(p)).is_ok();
    let clear = |p: &str| {
        let full = work.join(p);
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&full).unwrap(),
            Ok(_) => std::fs::remove_file(&full).unwrap(),
            Err(_) => {}
        }
    };
    // A file or link at `p` needs its parent to be a directory, not a file.
    let make_parent = |p: &str| {
        let parent = Path::new(p).parent().unwrap().to_str().unwrap().to_owned();
        let mut prefix = String::new();
        for part in parent.split('/').filter(|s| !s.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if work.join(&prefix).is_file() || work.join(&prefix).is_symlink() {
                clear(&prefix);
            }
        }
    };
    let name = *rng.pick(&NAMES);
    let file = *rng.pick(&COMPOSE_FILE_NAMES);
    let path = at(&format!("{name}/{file}"));
    match rng.below(100) {
        0..=29 => {
            make_parent(&path);
            clear(&path);
            repo.write(&path, compose(rng));
            format!("write {path}")
        }
        30..=44 => {
            clear(&path);
            format!("remove {path}")
        }
        45..=54 => {
            let other = at(&format!(
                "{name}/{}",
                rng.pick(&[
                    ".env",
                    "README.md",
                    "config/app.conf",
                    "examples/compose.yaml"
                ])
            ));
            make_parent(&other);
            clear(&other);
            repo.write(&other, compose(rng));
            format!("write {other}")
        }
        55..=61 => {
            clear(&at(name));
            format!("remove dir {}", at(name))
        }
        62..=66 => {
            make_parent(&path);
            clear(&path);
            let targets = ["../x", "compose.real.yml", "/etc/shadow"];
            let target: &str = targets[rng.below(targets.len())];
            repo.symlink(&path, target);
            format!("symlink {path}")
        }
        67..=70 => {
            clear(&at(name));
            repo.write(&at(name), "now a file\n");
            format!("file instead of dir {}", at(name))
        }
        71..=74 => {
            make_parent(&path);
            clear(&path);
            repo.write(
                &format!("{path}/inner.txt"),
                "a directory named like a compose file\n",
            );
            format!("directory {path}")
        }
        75..=78 => {
            if exists(&path) && work.join(&path).is_file() && !work.join(&path).is_symlink() {
                use std::os::unix::fs::PermissionsExt;
                let full = work.join(&path);
                let mode = std::fs::metadata(&full).unwrap().permissions().mode();
                std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode ^ 0o111))
                    .unwrap();
                format!("chmod {path}")
            } else {
                "nothing (chmod of a missing file)".into()
            }
        }
        79..=80 => {
            make_parent(&path);
            clear(&path);
            let big = "#".repeat(MAX_COMPOSE_FILE_BYTES as usize + 1);
            repo.write(&path, big);
            format!("oversized {path}")
        }
        81..=82 => {
            // A directory whose name is not UTF-8.
            let mut raw = work
                .join(if deploy.is_empty() { "." } else { deploy })
                .into_os_string();
            raw.push("/");
            let mut bytes = raw.as_bytes().to_vec();
            bytes.extend_from_slice(b"caf\xe9");
            let dir = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&bytes));
            if dir.exists() {
                std::fs::remove_dir_all(&dir).unwrap();
                "remove a non-UTF-8 directory".into()
            } else {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("compose.yaml"), compose(rng)).unwrap();
                "add a non-UTF-8 directory".into()
            }
        }
        83..=85 if !deploy.is_empty() => {
            clear(deploy);
            format!("remove the deploy dir {deploy}")
        }
        83..=85 => "nothing".into(),
        86..=90 => {
            repo.write("outside.txt", compose(rng));
            "a change outside the stacks".into()
        }
        _ => {
            // Several stacks at once.
            let mut done = Vec::new();
            for _ in 0..3 {
                let name = *rng.pick(&NAMES);
                let path = at(&format!("{name}/{}", rng.pick(&COMPOSE_FILE_NAMES)));
                make_parent(&path);
                clear(&path);
                repo.write(&path, compose(rng));
                done.push(path);
            }
            format!("write {done:?}")
        }
    }
}

fn reader_config(url: &str, deploy: &str) -> GitConfig {
    GitConfig {
        bin: "git".into(),
        repo: RepoUrl::parse(url).unwrap(),
        revision: Revision::parse("main").unwrap(),
        deploy_dir: DeployDir::parse(deploy).unwrap(),
        token: None,
        ssh: SshSettings::default(),
        timeout: Duration::from_secs(60),
    }
}

async fn run(seed: u64, deploy: &str, steps: usize) {
    let repo = TestRepo::new();
    let mut rng = Rng(seed);
    repo.write("README.md", "fixture\n");
    for _ in 0..6 {
        mutate(&repo, deploy, &mut rng);
    }
    // The deploy dir exists at the start.
    repo.write(
        &format!(
            "{}web/compose.yaml",
            if deploy.is_empty() {
                String::new()
            } else {
                format!("{deploy}/")
            }
        ),
        compose(&mut rng),
    );
    repo.commit_and_push("start");

    let data = tempfile::tempdir().unwrap();
    let reader = GitReader::open(
        &reader_config(&repo.url(), deploy),
        data.path(),
        &common::child_env(),
    )
    .await
    .unwrap();
    let mut previous: Snapshot = reader.read(None).await.unwrap().unwrap();
    let mut compared = 0;
    for step in 0..steps {
        let mut did = Vec::new();
        for _ in 0..1 + rng.below(3) {
            did.push(mutate(&repo, deploy, &mut rng));
        }
        repo.commit_and_push(&format!("step {step}"));
        let context = format!("seed {seed}, deploy dir {deploy:?}, step {step}: {did:?}");
        let incremental = reader.read(Some(&previous)).await;
        let full = reader.read(None).await;
        match (incremental, full) {
            (Ok(Some(incremental)), Ok(Some(full))) => {
                assert_eq!(incremental, full, "{context}");
                compared += 1;
                previous = incremental;
            }
            (Err(a), Err(b)) => {
                // Both fail the same way (the deploy dir is gone); the last good one is kept.
                assert_eq!(a.to_string(), b.to_string(), "{context}");
            }
            (a, b) => panic!("{context}: incremental {a:?}, full {b:?}"),
        }
    }
    let stats = reader.stats();
    assert!(
        compared >= steps / 2,
        "seed {seed}: only {compared} comparisons"
    );
    assert!(
        stats.incremental >= compared as u64 / 2,
        "seed {seed}: the incremental path was rarely taken: {stats:?}"
    );
}

#[tokio::test]
async fn incremental_reads_equal_full_reads_under_a_deploy_dir() {
    for seed in [0x5eed_0001, 0x5eed_0002, 0x5eed_0003] {
        run(seed, "stacks", 25).await;
    }
}

#[tokio::test]
async fn incremental_reads_equal_full_reads_at_the_repository_root() {
    for seed in [0x5eed_0011, 0x5eed_0012] {
        run(seed, "", 25).await;
    }
}

#[tokio::test]
async fn a_force_push_to_an_unrelated_history_is_read_incrementally_and_correctly() {
    let repo = TestRepo::new();
    repo.write("stacks/a/compose.yaml", "services: {a: {image: x}}\n");
    repo.write("stacks/b/compose.yaml", "services: {b: {image: x}}\n");
    repo.commit_and_push("one");
    let data = tempfile::tempdir().unwrap();
    let reader = GitReader::open(
        &reader_config(&repo.url(), "stacks"),
        data.path(),
        &common::child_env(),
    )
    .await
    .unwrap();
    let first = reader.read(None).await.unwrap().unwrap();

    // A new root commit with other content, force-pushed.
    repo.git(&["checkout", "--quiet", "--orphan", "other"]);
    repo.git(&["rm", "-r", "--quiet", "--cached", "."]);
    repo.remove("stacks");
    repo.write("stacks/b/compose.yml", "services: {b: {image: y}}\n");
    repo.write("stacks/c/docker-compose.yml", "services: {c: {image: y}}\n");
    repo.commit("unrelated");
    repo.git(&["push", "--quiet", "--force", "origin", "HEAD:main"]);

    let incremental = reader.read(Some(&first)).await.unwrap().unwrap();
    assert_eq!(reader.stats().incremental, 1, "{:?}", reader.stats());
    let full = reader.read(None).await.unwrap().unwrap();
    assert_eq!(incremental, full);
    let paths: Vec<_> = incremental.stacks.keys().map(String::as_str).collect();
    assert_eq!(paths, ["b", "c"]);
    assert_eq!(incremental.stacks["b"].compose_file, "compose.yml");
}
