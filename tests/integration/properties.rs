//! Property tests (proptest) for the pure parts an attacker or a repository controls: the
//! webhook signature verifier and body parsers, the project-name mapper, the ref and URL
//! validators (refs differentially against `git check-ref-format`), and the git output parsers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;

use docker_cd::config::{RepoUrl, Revision};
use docker_cd::desired_state::{DesiredStack, assign_project_names, project_name};
use docker_cd::webhook::{self, WebhookError};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::Sha256;

/// Request headers as (lower-case name, value) pairs.
struct Pairs(Vec<(&'static str, Vec<u8>)>);

impl webhook::Headers for Pairs {
    fn values(&self, name: &str) -> Vec<&[u8]> {
        self.0
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
            .collect()
    }
}

/// The pure path for a delivery with these headers: authenticate, verify, parse.
fn receive(
    headers: &Pairs,
    secret: &[u8],
    content_type: &[u8],
    body: &[u8],
) -> Result<webhook::Delivery, WebhookError> {
    let (sender, credential) = webhook::authenticate(headers)?;
    let document = credential.verify(sender, &[secret], Some(content_type), body)?;
    webhook::parse_delivery(sender, headers, &document)
}

/// A GitHub push delivery's check of `header` over `body` under `secret`.
fn verify_github(secret: &[u8], body: &[u8], header: &[u8]) -> Result<(), WebhookError> {
    let headers = Pairs(vec![
        ("x-github-event", b"push".to_vec()),
        ("x-hub-signature-256", header.to_vec()),
    ]);
    let (sender, credential) = webhook::authenticate(&headers)?;
    credential.verify(sender, &[secret], None, body).map(drop)
}

fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A valid stack at `path` whose project name is still to be assigned.
fn unnamed_stack(path: &str) -> DesiredStack {
    let (compose_file, content_hash) = ("compose.yaml".into(), "t".into());
    DesiredStack {
        path: path.to_owned(),
        compose_file,
        content_hash,
        project_name: None,
        compose_hash: None,
        compose_blob: None,
        warnings: Vec::new(),
        error: None,
        settings: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A signature verifies its own body under its own secret, and nothing else.
    #[test]
    fn a_signature_verifies_only_its_own_body_and_secret(
        secret in proptest::collection::vec(any::<u8>(), 1..64),
        other_secret in proptest::collection::vec(any::<u8>(), 1..64),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let header = sign(&secret, &body);
        prop_assert_eq!(verify_github(&secret, &body, header.as_bytes()), Ok(()));
        if other_secret != secret {
            prop_assert_eq!(
                verify_github(&other_secret, &body, header.as_bytes()),
                Err(WebhookError::BadSignature)
            );
        }
        if !body.is_empty() {
            let mut changed = body.clone();
            let i = flip.index(changed.len());
            changed[i] ^= 1 << bit;
            prop_assert_eq!(
                verify_github(&secret, &changed, header.as_bytes()),
                Err(WebhookError::BadSignature)
            );
        }
        let mut longer = body.clone();
        longer.push(b'\n');
        prop_assert!(verify_github(&secret, &longer, header.as_bytes()).is_err());
    }

    /// Arbitrary header bytes never panic and never verify.
    #[test]
    fn arbitrary_signature_headers_never_panic_or_verify(
        header in proptest::collection::vec(any::<u8>(), 0..200),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let result = verify_github(b"secret", &body, &header);
        if header != sign(b"secret", &body).as_bytes() {
            // An upper-case rendering of the right digest is the only other accepted form.
            let upper = sign(b"secret", &body).to_ascii_uppercase().replacen("SHA256=", "sha256=", 1);
            if header != upper.as_bytes() {
                prop_assert!(result.is_err());
            }
        }
    }

    /// Correctly signed bodies of any bytes, any event header and content type, from any sender,
    /// never panic the parsers; GitLab's are never refused.
    #[test]
    fn webhook_body_parsers_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        event in proptest::collection::vec(any::<u8>(), 0..24),
        form in any::<bool>(),
        sender in 0usize..4,
    ) {
        let content_type: &[u8] = if form { b"application/x-www-form-urlencoded" } else { b"application/json" };
        let signed = sign(b"secret", &body);
        let headers = Pairs(match sender {
            0 => vec![("x-github-event", event.clone()), ("x-hub-signature-256", signed.into_bytes())],
            1 => vec![("x-gitlab-event", event.clone()), ("x-gitlab-token", b"secret".to_vec())],
            2 => vec![("x-docker-cd-signature", signed.into_bytes())],
            // Gitea signs the JSON, which is the body unless it is a form.
            _ => vec![("x-gitea-event", event.clone()), ("x-gitea-signature", signed.as_bytes()["sha256=".len()..].to_vec())],
        });
        let result = receive(&headers, b"secret", content_type, &body);
        if sender == 1 {
            prop_assert!(result.is_ok(), "{:?}", result);
        }
    }

    /// JSON-shaped push bodies with fields of random types parse or fail cleanly.
    #[test]
    fn type_confused_push_fields_fail_cleanly(
        git_ref in prop_oneof![Just("\"refs/heads/main\"".to_owned()), Just("5".to_owned()), Just("null".to_owned()), Just("[]".to_owned()), Just("{}".to_owned())],
        repository in prop_oneof![Just("{}".to_owned()), Just("null".to_owned()), Just("\"x\"".to_owned()), Just("{\"full_name\": 3}".to_owned())],
        deleted in prop_oneof![Just("true".to_owned()), Just("\"yes\"".to_owned()), Just("null".to_owned()), Just("1".to_owned())],
    ) {
        let body = format!("{{\"ref\": {git_ref}, \"repository\": {repository}, \"deleted\": {deleted}}}");
        let headers = Pairs(vec![("x-github-event", b"push".to_vec()), ("x-hub-signature-256", sign(b"s", body.as_bytes()).into_bytes())]);
        match receive(&headers, b"s", b"application/json", body.as_bytes()) {
            Ok(webhook::Delivery::Push(push)) => prop_assert_eq!(push.refs, ["refs/heads/main"]),
            Ok(other) => prop_assert!(false, "{:?}", other),
            Err(e) => prop_assert!(matches!(e, WebhookError::InvalidPayload(_))),
        }
    }

    /// Every project name produced is a valid compose project name, and the mapping is a
    /// function of the path alone.
    #[test]
    fn project_names_are_valid_and_deterministic(path in "\\PC{0,24}") {
        let first = project_name(&path);
        prop_assert_eq!(&first, &project_name(&path));
        if let Some(name) = first {
            prop_assert!(name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()), "{}", name);
            prop_assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'), "{}", name);
        }
    }

    /// Distinct paths that map to the same project name are all reported; no stack is ever
    /// left with a name another stack also has.
    #[test]
    fn colliding_project_names_are_all_reported(paths in proptest::collection::btree_set("[A-Za-z _.-]{1,4}", 1..12)) {
        let mut stacks: BTreeMap<String, DesiredStack> = paths
            .iter()
            .map(|p| (p.clone(), unnamed_stack(p)))
            .collect();
        assign_project_names(&mut stacks);
        let mut by_name: BTreeMap<String, Vec<&DesiredStack>> = BTreeMap::new();
        for stack in stacks.values() {
            match &stack.project_name {
                Some(name) => by_name.entry(name.clone()).or_default().push(stack),
                None => prop_assert!(stack.error.is_some()),
            }
        }
        for (name, group) in by_name {
            let collides = group.len() > 1;
            for stack in group {
                prop_assert_eq!(stack.error.as_ref().is_some_and(|e| e.contains("collides")), collides, "{} {:?}", name, stack);
            }
        }
    }

    /// Arbitrary strings never panic the validators, and an accepted URL is safe to hand to git.
    #[test]
    fn accepted_urls_are_never_option_like_or_helpers(raw in "\\PC{0,40}") {
        let _ = Revision::parse(&raw);
        if let Ok(url) = RepoUrl::parse(&raw) {
            let s = url.as_str();
            prop_assert!(!s.starts_with('-'));
            prop_assert!(!s.contains("::"));
            prop_assert!(!s.chars().any(char::is_whitespace));
        }
    }

    /// Structured URLs: helpers and option-like hosts or users are refused; passwords never
    /// stay in the URL git is given.
    #[test]
    fn structured_urls_are_validated(
        scheme in prop_oneof![Just("https"), Just("http"), Just("ssh"), Just("file"), Just("ext"), Just("fd"), Just("git+ssh")],
        user in prop_oneof![Just(""), Just("git@"), Just("-oProxyCommand=x@"), Just("u:p4ssw0rd@")],
        host in prop_oneof![Just("example.com"), Just("-oProxyCommand=touch"), Just(""), Just("127.0.0.1:8443")],
        path in prop_oneof![Just("/org/repo.git"), Just(""), Just("/-x")],
    ) {
        let raw = format!("{scheme}://{user}{host}{path}");
        if let Ok(url) = RepoUrl::parse(&raw) {
            prop_assert!(!matches!(scheme, "ext" | "fd"), "{}", raw);
            prop_assert!(!host.starts_with('-') || scheme == "file", "{}", raw);
            prop_assert!(!user.starts_with('-') || scheme == "file", "{}", raw);
            prop_assert!(!url.as_str().contains("p4ssw0rd"), "{}", raw);
        }
    }

    /// Any bytes never panic the git output parsers.
    #[test]
    fn git_output_parsers_never_panic(out in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = docker_cd::git::parse::ls_tree(&out);
        let _ = docker_cd::git::parse::ls_remote(&out);
        let _ = docker_cd::git::parse::batch(&out);
        let _ = docker_cd::git::parse::batch_header(&out);
        let _ = docker_cd::git::parse::version(&out);
        let _ = docker_cd::git::parse::commit_message(&out);
        let _ = docker_cd::compose::engine::parse_ps(&out);
    }

    /// ls-tree records built from random fields parse back to the same fields.
    #[test]
    fn ls_tree_records_round_trip(
        entries in proptest::collection::vec(("[0-9a-f]{40}", "[^\\x00\\t]{1,30}", 0u64..100_000, 0usize..3), 0..20)
    ) {
        let mut out = Vec::new();
        for (oid, path, size, kind) in &entries {
            let (mode, kind_name, size_text) = match kind {
                0 => ("100644", "blob", size.to_string()),
                1 => ("040000", "tree", "-".to_owned()),
                _ => ("160000", "commit", "-".to_owned()),
            };
            out.extend_from_slice(format!("{mode} {kind_name} {oid} {size_text:>7}\t{path}").as_bytes());
            out.push(0);
        }
        let parsed = docker_cd::git::parse::ls_tree(&out).unwrap();
        prop_assert_eq!(parsed.len(), entries.len());
        for (entry, (oid, path, size, kind)) in parsed.iter().zip(&entries) {
            prop_assert_eq!(&entry.oid, oid);
            prop_assert_eq!(&entry.path, path);
            prop_assert_eq!(entry.size, (*kind == 0).then_some(*size));
        }
    }
}

/// `git check-ref-format --allow-onelevel <name>` succeeds.
fn git_accepts(name: &str) -> bool {
    Command::new("git")
        .args(["check-ref-format", "--allow-onelevel", name])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .unwrap()
        .success()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Differential against git: every revision docker-cd accepts, git accepts too; and every
    /// name git accepts is accepted unless docker-cd has a stated extra rule (leading '-',
    /// symbolic `HEAD`, full ref names outside refs/heads/ and refs/tags/).
    #[test]
    fn revisions_agree_with_git_check_ref_format(
        // Mostly near-valid names (dots and slashes in every position), some with every
        // character git treats specially.
        name in prop_oneof![
            3 => "[ab0/.\\-]{1,10}",
            1 => "[ab/.@{}~^:?*\\[\\\\ 0x\\-_é]{1,12}",
            1 => "(refs/(heads|tags|remotes)/)?[ab.]{1,4}(\\.lock)?",
        ],
    ) {
        prop_assume!(!(name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit())));
        let ours = Revision::parse(&name).is_ok();
        if name.starts_with('-') {
            prop_assert!(!ours, "{:?}", name);
            return Ok(());
        }
        let theirs = git_accepts(&name);
        if ours {
            prop_assert!(theirs, "docker-cd accepts {:?} but git does not", name);
        }
        let extra_rule = name == "HEAD"
            || (name.starts_with("refs/") && !name.starts_with("refs/heads/") && !name.starts_with("refs/tags/"));
        if theirs && !extra_rule {
            prop_assert!(ours, "git accepts {:?} but docker-cd does not", name);
        }
    }
}
