//! A real registry for tests: Debian's `docker-registry` package (the CNCF distribution
//! registry 2.8) on 127.0.0.1 with a free port and its storage in a temp dir, stopped on drop.
//! The Docker engine treats 127.0.0.0/8 registries as insecure, so `docker push` speaks plain
//! HTTP to it, as does docker-cd.
//!
//! ```ignore
//! if !registry::require() { return; }
//! let registry = TestRegistry::start(RegistryAuth::None).await;
//! let digest = registry.push(docker::TEST_IMAGE, "team/app:1");
//! ```
//!
//! [`require`] follows [`docker::require`](super::docker::require): without the engine, the test
//! image, `docker-registry` or `htpasswd` a test skips loudly, and fails under `CI=true`.
//! [`TestRegistry::push`] tags images `127.0.0.1:<port>/…`; the tags, the digest references a
//! push leaves, and the images [`TestRegistry::build_variant`] makes are removed on drop, so a
//! run leaves no image behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::checked;

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const HTPASSWD_BIN: &str = "/usr/bin/htpasswd";
/// The realm of the htpasswd registries, as their `Basic` challenge names it.
pub const HTPASSWD_REALM: &str = "docker-cd-test";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// True when registry tests can run: Docker (see [`super::docker::require`]) and the
/// `docker-registry` and `apache2-utils` packages. Panics under `CI=true` otherwise.
pub fn require() -> bool {
    if !super::docker::require() {
        return false;
    }
    for (bin, package) in [
        (REGISTRY_BIN, "docker-registry"),
        (HTPASSWD_BIN, "apache2-utils"),
    ] {
        if !Path::new(bin).exists() {
            if in_ci() {
                panic!("CI=true but {bin} is missing: apt-get install {package}");
            }
            eprintln!(
                "\n*** SKIPPING registry test: {bin} is missing (apt-get install {package}) ***\n"
            );
            return false;
        }
    }
    true
}

/// How the registry authenticates.
pub enum RegistryAuth {
    None,
    /// `auth: htpasswd` with one bcrypt user.
    Htpasswd {
        user: String,
        password: String,
    },
    /// `auth: token`: tokens from `realm`, signed by the key of the PEM certificate
    /// `root_cert_pem`.
    Token {
        realm: String,
        service: String,
        issuer: String,
        root_cert_pem: String,
    },
}

/// A running registry; see the module documentation.
pub struct TestRegistry {
    child: Child,
    dir: TempDir,
    /// `127.0.0.1:<port>`: the registry's name in image references.
    pub host: String,
    /// The user and password `docker push` logs in with, when the registry wants some.
    login: Option<(String, String)>,
    /// Image references this registry's tests tagged or built, removed on drop.
    made: Mutex<Vec<String>>,
}

impl TestRegistry {
    /// Starts a registry and waits until `/v2/` answers (at most 15 s).
    pub async fn start(auth: RegistryAuth) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let login = match &auth {
            RegistryAuth::Htpasswd { user, password } => {
                let line = checked(Command::new(HTPASSWD_BIN).args(["-Bbn", user, password]));
                std::fs::write(dir.path().join("htpasswd"), format!("{line}\n")).unwrap();
                Some((user.clone(), password.clone()))
            }
            RegistryAuth::Token { root_cert_pem, .. } => {
                std::fs::write(dir.path().join("root.pem"), root_cert_pem).unwrap();
                None
            }
            RegistryAuth::None => None,
        };
        let auth_yaml = match &auth {
            RegistryAuth::None => String::new(),
            RegistryAuth::Htpasswd { .. } => format!(
                "auth:\n  htpasswd:\n    realm: {HTPASSWD_REALM}\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ),
            RegistryAuth::Token {
                realm,
                service,
                issuer,
                ..
            } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                dir.path().join("root.pem").display()
            ),
        };
        // A port picked by the kernel, then released for the registry: another process could
        // take it in between, so a registry that exits at once is started again on another.
        for _attempt in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let host = format!("127.0.0.1:{port}");
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: {host}\n{auth_yaml}",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let mut child = child;
            if wait_ready(&mut child, &host).await {
                return Self {
                    child,
                    dir,
                    host,
                    login,
                    made: Mutex::new(Vec::new()),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
            eprintln!("the test registry on {host} did not start:\n{log}");
        }
        panic!("the test registry did not start in 3 attempts");
    }

    /// `<host>/<repository_and_tag>`.
    pub fn image(&self, repository_and_tag: &str) -> String {
        format!("{}/{repository_and_tag}", self.host)
    }

    /// The registry's log (errors, and the access log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The docker client config directory `docker login` wrote for this registry (with
    /// `docker --config`, so the machine's own `~/.docker` is never touched); logs in on first
    /// use. `None` for a registry without a login.
    pub fn docker_login_config(&self) -> Option<PathBuf> {
        let (user, password) = self.login.as_ref()?;
        let dir = self.dir.path().join("docker-client");
        if !dir.join("config.json").exists() {
            std::fs::create_dir_all(&dir).unwrap();
            let mut login = Command::new("docker")
                .arg("--config")
                .arg(&dir)
                .args(["login", "--username", user, "--password-stdin", &self.host])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write as _;
            login
                .stdin
                .take()
                .unwrap()
                .write_all(password.as_bytes())
                .unwrap();
            let out = login.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "docker login {} failed: {}\nregistry log:\n{}",
                self.host,
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
        Some(dir)
    }

    /// Logs `docker` in with `user` and `password` for a token registry, whose users the
    /// token server knows; then [`push`](Self::push) uses that login.
    pub fn set_login(&mut self, user: &str, password: &str) {
        self.login = Some((user.to_owned(), password.to_owned()));
    }

    /// Tags `source` (a local image) as `<host>/<repository_and_tag>`, pushes it with the real
    /// engine, and returns the manifest digest `docker push` printed, after checking that the
    /// image's RepoDigests say the same.
    pub fn push(&self, source: &str, repository_and_tag: &str) -> String {
        let target = self.image(repository_and_tag);
        checked(Command::new("docker").args(["tag", source, &target]));
        self.made.lock().unwrap().push(target.clone());
        let mut push = Command::new("docker");
        if let Some(config) = self.docker_login_config() {
            push.arg("--config").arg(config);
        }
        let out = push.args(["push", &target]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "docker push {target} failed: {}{stdout}\nregistry log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        // `1: digest: sha256:… size: 528`
        let printed = stdout
            .lines()
            .find_map(|l| l.split_once(" digest: ").map(|(_, rest)| rest))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no digest in the output of docker push: {stdout}"))
            .to_owned();
        let repo_digests = checked(Command::new("docker").args([
            "image",
            "inspect",
            "--format",
            "{{range .RepoDigests}}{{println .}}{{end}}",
            &target,
        ]));
        let repository = target.rsplit_once(':').map_or(&*target, |(r, _)| r);
        // The push left a `<repository>@<digest>` reference on the image: removed on drop too.
        self.made
            .lock()
            .unwrap()
            .push(format!("{repository}@{printed}"));
        assert!(
            repo_digests
                .lines()
                .any(|l| l == format!("{repository}@{printed}")),
            "docker push printed {printed}, RepoDigests say {repo_digests}"
        );
        printed
    }

    /// A new local image: `base` with a label, so its config, and so its manifest digest,
    /// differ from `base`'s. Built with the classic builder from the local image (no pull).
    pub fn build_variant(&self, base: &str, label: &str) -> String {
        let tag = format!("docker-cd-test/registry-variant:{label}");
        let mut build = Command::new("docker")
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "--quiet", "--label"])
            .arg(format!("com.docker-cd.test.registry-variant={label}"))
            .args(["--tag", &tag, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        build
            .stdin
            .take()
            .unwrap()
            .write_all(format!("FROM {base}\n").as_bytes())
            .unwrap();
        let out = build.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "docker build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.made.lock().unwrap().push(tag.clone());
        tag
    }
}

/// Waits until `/v2/` answers (200, or 401 with auth), for at most 15 s or until the registry
/// exits.
async fn wait_ready(child: &mut Child, host: &str) -> bool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(answer) = client.get(format!("http://{host}/v2/")).send().await {
            if matches!(answer.status().as_u16(), 200 | 401) {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let made = std::mem::take(&mut *self.made.lock().unwrap_or_else(|e| e.into_inner()));
        // One by one: a reference that an earlier removal took with it is an error that must
        // not stop the rest.
        for reference in made.iter().rev() {
            let _ = Command::new("docker")
                .args(["rmi", reference])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
