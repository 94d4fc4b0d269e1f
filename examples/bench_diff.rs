//! Diff benchmark (run by `scripts/bench-diff.sh`): `GitReader::diff_stack` of a stack of
//! 1,000 files with one file changed between the deployed and the desired commit, through the
//! real reader on a real bare mirror. Prints the median of the rounds (default 20) and the git
//! processes one diff spawns; also, for scale, the diff when nothing is deployed (all 1,000
//! files added). Nothing is asserted. Target (issue 13): ≤ 50 ms for the one-change diff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use docker_cd::config::{ChildEnv, DeployDir, GitConfig, RepoUrl, Revision, SshSettings};
use docker_cd::git::GitReader;
use docker_cd::process::spawn_counts;

const FILES: usize = 1000;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn git_spawns() -> u64 {
    spawn_counts()
        .into_iter()
        .filter(|(k, _)| k == "git" || k.starts_with("git "))
        .map(|(_, n)| n)
        .sum()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("rounds: a number"))
        .unwrap_or(20);
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    git(
        s,
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            "origin.git",
        ],
    );
    git(s, &["init", "--quiet", "--initial-branch=main", "work"]);
    let work = s.join("work");

    // The stack: a compose file and 999 config files of a few lines in 10 directories; and 50
    // other stacks around it, which the diff must not look at.
    write(
        &work.join("stacks/big/compose.yaml"),
        "services:\n  app:\n    image: nginx:1.27\n",
    );
    for i in 1..FILES {
        write(
            &work.join(format!("stacks/big/conf/d{}/file{i:04}.conf", i % 10)),
            &format!("# file {i}\nkey_{i} = value\nother = {}\n", i * 7),
        );
    }
    for j in 0..50 {
        write(
            &work.join(format!("stacks/other{j:02}/compose.yaml")),
            &format!("services:\n  s{j}:\n    image: busybox\n"),
        );
    }
    git(&work, &["add", "--all"]);
    git(&work, &["commit", "--quiet", "-m", "one"]);
    let deployed = git(&work, &["rev-parse", "HEAD"]);
    write(
        &work.join("stacks/big/conf/d7/file0507.conf"),
        "# file 507\nkey_507 = changed\nother = 3549\n",
    );
    git(&work, &["commit", "--quiet", "--all", "-m", "two"]);
    let desired = git(&work, &["rev-parse", "HEAD"]);
    let origin = s.join("origin.git");
    git(
        &work,
        &["push", "--quiet", origin.to_str().unwrap(), "HEAD:main"],
    );

    let config = GitConfig {
        bin: which::which("git").unwrap(),
        repo: RepoUrl::parse(&format!("file://{}", origin.display())).unwrap(),
        revision: Revision::parse("main").unwrap(),
        deploy_dir: DeployDir::parse("stacks").unwrap(),
        token: None,
        ssh: SshSettings::default(),
        timeout: Duration::from_secs(60),
    };
    let env = ChildEnv {
        vars: ["PATH", "HOME"]
            .iter()
            .filter_map(|k| std::env::var_os(k).map(|v| ((*k).into(), v)))
            .collect(),
    };
    let data = s.join("data");
    let reader = GitReader::open(&config, &data, &env).await.unwrap();
    reader.read(None).await.unwrap().unwrap();

    let mut results = BTreeMap::new();
    for (label, from) in [
        ("one change of 1,000 files", Some(deployed.as_str())),
        ("nothing deployed (1,000 files added)", None),
    ] {
        // A warm-up round: the mirror's pack is in the page cache, as on a running agent.
        let diffs = reader.diff_stack(from, &desired, "big").await.unwrap();
        let before = git_spawns();
        let mut samples = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let started = Instant::now();
            let again = reader.diff_stack(from, &desired, "big").await.unwrap();
            samples.push(started.elapsed());
            assert_eq!(again.len(), diffs.len());
        }
        let processes = (git_spawns() - before) as f64 / rounds as f64;
        let (min, max) = (
            *samples.iter().min().unwrap(),
            *samples.iter().max().unwrap(),
        );
        println!(
            "diff_stack, {label}: median {} of {rounds} (min {}, max {}); {} files in the answer, {processes} git processes per diff",
            ms(median(samples.clone())),
            ms(min),
            ms(max),
            diffs.len(),
        );
        results.insert(label, median(samples));
    }
    let one = results["one change of 1,000 files"];
    println!(
        "target: ≤ 50 ms for one change of 1,000 files: {} ({})",
        ms(one),
        if one <= Duration::from_millis(50) {
            "met"
        } else {
            "missed"
        }
    );
}
