//! The binary's start-up contract: invalid configuration stops it with exit code 2 and one line
//! per problem, before any child process runs; secrets are never echoed (TESTPLAN C1, C3, C4).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary with a clean environment plus `vars`, and a PATH whose `git` records that it
/// was run (so "no git spawned" is checked, not assumed).
fn run(vars: &[(&str, &str)], marker_dir: &Path) -> Output {
    let fake_bin = marker_dir.join("bin");
    std::fs::create_dir_all(&fake_bin).unwrap();
    let fake_git = fake_bin.join("git");
    std::fs::write(
        &fake_git,
        format!(
            "#!/bin/sh\ntouch {}/git-ran\nexit 1\n",
            marker_dir.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake_git, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", fake_bin.display());
    Command::new(env!("CARGO_BIN_EXE_docker-cd"))
        .env_clear()
        .env("PATH", path)
        .env("DATA_DIR", marker_dir.join("data"))
        .env("RECONCILE_ENABLED", "false")
        .envs(vars.iter().copied())
        .output()
        .unwrap()
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn c01_option_like_and_command_running_urls_are_rejected_before_git_runs() {
    for url in [
        "--upload-pack=touch /tmp/x",
        "ext::sh -c touch% /tmp/pwned",
        "ssh://-oProxyCommand=touch%20/tmp/pwned/repo",
        "fd::17",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = run(&[("GIT_REPO_URL", url)], dir.path());
        assert_eq!(
            out.status.code(),
            Some(2),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = stderr_lines(&out);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("error: GIT_REPO_URL: "), "{lines:?}");
        assert!(
            !dir.path().join("git-ran").exists(),
            "git was spawned for {url}"
        );
        assert!(!Path::new("/tmp/pwned").exists());
    }
}

#[test]
fn c03_revision_expressions_and_option_like_revisions_are_rejected() {
    for revision in ["--x", "main..dev", "ma in", "HEAD~1", "main^{}", "-"] {
        let dir = tempfile::tempdir().unwrap();
        let out = run(
            &[
                ("GIT_REPO_URL", "/srv/repo.git"),
                ("GIT_REVISION", revision),
            ],
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(2), "{revision}");
        let lines = stderr_lines(&out);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("error: GIT_REVISION: "), "{lines:?}");
        assert!(!dir.path().join("git-ran").exists());
    }
}

#[test]
fn c04_every_problem_gets_one_clear_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            ("REFRESH_POLL_INTERVAL", "every now and then"),
            ("DRIFT_POLICY", "ignore"),
            ("GIT_TIMEOUT", "0s"),
            ("PORT", "http"),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let lines = stderr_lines(&out);
    let variables: Vec<&str> = lines
        .iter()
        .map(|l| l.trim_start_matches("error: ").split(':').next().unwrap())
        .collect();
    assert_eq!(
        variables,
        [
            "GIT_REPO_URL",
            "GIT_TIMEOUT",
            "REFRESH_POLL_INTERVAL",
            "DRIFT_POLICY",
            "PORT"
        ],
        "{lines:#?}"
    );
    assert!(lines[0].contains("is required"));
    assert!(
        lines[2].contains("\"every now and then\" is not a duration"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].contains("not one of: revert, flag"),
        "{}",
        lines[3]
    );
}

#[test]
fn c04_secrets_are_never_echoed_in_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            (
                "GIT_REPO_URL",
                "https://bob:hunter2-token@example.com/a.git",
            ),
            ("GIT_ACCESS_TOKEN", "other-token-value"),
            ("WEBHOOK_SECRET", "whsec-value"),
            ("WEBHOOK_SECRET_FILE", "/nonexistent"),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    for secret in ["hunter2-token", "other-token-value", "whsec-value"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert_eq!(text.lines().count(), 2, "{text}");
}

#[test]
fn help_lists_every_setting() {
    let out = Command::new(env!("CARGO_BIN_EXE_docker-cd"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for variable in [
        "GIT_REPO_URL",
        "GIT_REVISION",
        "GIT_DEPLOY_DIR",
        "GIT_ACCESS_TOKEN",
        "GIT_ACCESS_TOKEN_FILE",
        "GIT_SSH_KEY_FILE",
        "GIT_SSH_KNOWN_HOSTS_FILE",
        "GIT_SSH_ACCEPT_NEW_HOST_KEYS",
        "DATA_DIR",
        "LISTEN_ADDR",
        "PORT",
        "WEBHOOK_SECRET",
        "WEBHOOK_SECRET_FILE",
        "REFRESH_POLL_INTERVAL",
        "RECONCILE_ENABLED",
        "RECONCILE_REMOVE_ENABLED",
        "DRIFT_POLICY",
        "API_TOKEN",
        "API_TOKEN_FILE",
        "GIT_TIMEOUT",
        "COMPOSE_TIMEOUT",
        "LOG_FORMAT",
    ] {
        assert!(
            help.contains(&format!("[env: {variable}")),
            "--help lacks {variable}"
        );
    }
}

#[test]
fn sigterm_stops_the_service_promptly_with_exit_code_0() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("origin.git");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&[
        "init",
        "--quiet",
        "--bare",
        "--initial-branch=main",
        repo.to_str().unwrap(),
    ]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_docker-cd"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("GIT_REPO_URL", format!("file://{}", repo.display()))
        .env("DATA_DIR", dir.path().join("data"))
        .env("RECONCILE_ENABLED", "false")
        .env("LISTEN_ADDR", "127.0.0.1")
        .env("PORT", port.to_string())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "never listened");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let started = std::time::Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(25),
            "did not exit within 25 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
