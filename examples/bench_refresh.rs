//! Refresh benchmark: times docker-cd's Git reader against plain `git` doing the least any
//! git-based reader must do, on the same repository, in the same run.
//!
//! Usage: `bench_refresh <bare repo made by gen_fixture_repo.sh> [deploy dir] [rounds]`
//! (see `scripts/bench-refresh.sh`). Prints, for a cold start, a refresh after one new commit and
//! a refresh with nothing new: docker-cd's median time, the baseline's, their ratio, and the git
//! processes docker-cd spawned.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use docker_cd::config::{ChildEnv, DeployDir, GitConfig, RepoUrl, Revision, SshSettings};
use docker_cd::git::GitReader;
use docker_cd::process::spawn_counts;

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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn git_spawns() -> u64 {
    spawn_counts()
        .iter()
        .filter(|(k, _)| k.starts_with("git"))
        .map(|(_, v)| v)
        .sum()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let origin = PathBuf::from(
        args.get(1)
            .expect("usage: bench_refresh <bare repo> [deploy dir] [rounds]"),
    );
    let deploy = args.get(2).cloned().unwrap_or_else(|| "stacks".into());
    let rounds: usize = args.get(3).map(|r| r.parse().unwrap()).unwrap_or(5);
    let url = format!(
        "file://{}",
        std::fs::canonicalize(&origin).unwrap().display()
    );
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path().join("work");
    git(scratch.path(), &["clone", "--quiet", &url, "work"]);

    let config = GitConfig {
        bin: which::which("git").unwrap(),
        repo: RepoUrl::parse(&url).unwrap(),
        revision: Revision::parse("main").unwrap(),
        deploy_dir: DeployDir::parse(&deploy).unwrap(),
        token: None,
        ssh: SshSettings::default(),
        timeout: Duration::from_secs(600),
    };
    let env = ChildEnv {
        vars: vec![("PATH".into(), std::env::var_os("PATH").unwrap())],
    };

    let (mut cold, mut cold_base, mut warm, mut warm_base, mut noop, mut noop_base) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut cold_spawns, mut warm_spawns, mut noop_spawns) = (0, 0, 0);
    let mut stacks = 0;
    for round in 0..rounds {
        // docker-cd, cold: empty data dir (mirror init, full fetch, every blob read).
        let data = tempfile::tempdir().unwrap();
        let before = git_spawns();
        let started = Instant::now();
        let reader = GitReader::open(&config, data.path(), &env).await.unwrap();
        let snapshot = reader.read(None).await.unwrap().unwrap();
        cold.push(started.elapsed());
        cold_spawns = git_spawns() - before;
        stacks = snapshot.stacks.len();

        // Baseline, cold: init a bare repo and fetch the same ref into it.
        let base = tempfile::tempdir().unwrap();
        let started = Instant::now();
        git(base.path(), &["init", "--quiet", "--bare", "m.git"]);
        git(
            &base.path().join("m.git"),
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                &url,
                "+refs/heads/main:refs/b/main",
            ],
        );
        cold_base.push(started.elapsed());

        // One new commit that bumps one stack's image tag.
        let file = first_compose(&work, &deploy);
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, format!("{text}# bench round {round}\n")).unwrap();
        git(
            &work,
            &["commit", "--quiet", "-am", &format!("bench round {round}")],
        );
        git(&work, &["push", "--quiet", "origin", "HEAD:main"]);

        let before = git_spawns();
        let started = Instant::now();
        let next = reader.read(Some(&snapshot)).await.unwrap().unwrap();
        warm.push(started.elapsed());
        warm_spawns = git_spawns() - before;
        assert_ne!(next.revision, snapshot.revision);

        let started = Instant::now();
        git(
            &base.path().join("m.git"),
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                &url,
                "+refs/heads/main:refs/b/main",
            ],
        );
        warm_base.push(started.elapsed());

        let before = git_spawns();
        let started = Instant::now();
        assert!(reader.read(Some(&next)).await.unwrap().is_none());
        noop.push(started.elapsed());
        noop_spawns = git_spawns() - before;

        let started = Instant::now();
        git(base.path(), &["ls-remote", &url, "refs/heads/main"]);
        noop_base.push(started.elapsed());
    }

    println!(
        "repository: {} ({stacks} stacks under {deploy}/), {rounds} rounds, medians",
        origin.display()
    );
    println!(
        "{:<34} {:>12} {:>12} {:>7} {:>14}",
        "case", "docker-cd", "baseline", "ratio", "git processes"
    );
    for (name, ours, base, spawns, baseline) in [
        (
            "cold (empty data dir)",
            median(cold),
            median(cold_base),
            cold_spawns,
            "init + fetch",
        ),
        (
            "after one new commit",
            median(warm),
            median(warm_base),
            warm_spawns,
            "fetch",
        ),
        (
            "nothing new",
            median(noop),
            median(noop_base),
            noop_spawns,
            "ls-remote",
        ),
    ] {
        println!(
            "{name:<34} {:>12} {:>12} {:>6.2}x {:>14}   (baseline: git {baseline})",
            ms(ours),
            ms(base),
            ours.as_secs_f64() / base.as_secs_f64(),
            spawns
        );
    }
}

/// The compose file of the first stack in the deploy dir of a work tree.
fn first_compose(work: &Path, deploy: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(work.join(deploy))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        for name in docker_cd::desired_state::COMPOSE_FILE_NAMES {
            if dir.join(name).is_file() {
                return dir.join(name);
            }
        }
    }
    panic!("no stack found under {deploy}");
}
