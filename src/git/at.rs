//! One stack as it was at one commit of the mirror: what a rollback (SPEC §10) is checked
//! against and applied from, and what a pin restored at start-up is held at.
//!
//! A few processes per call (resolve the commit, the stack directory's tree, its entries, the
//! compose file, the commit message); it runs only on an operator's rollback and at start-up
//! for pinned stacks, never per refresh.
//!
//! Part of the git adapter. Uses: process (through the reader), desired_state (the target and
//! the compose file names).

use sha2::{Digest, Sha256};

use super::{GitError, GitReader, parse};
use crate::desired_state::tree::ObjectKind;
use crate::desired_state::{COMPOSE_FILE_NAMES, Target};

/// What a commit holds for a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackAt {
    /// No such commit in the mirror (or not a commit id at all).
    NoCommit,
    /// The commit exists; the stack directory (with a compose file) does not.
    NoStack {
        revision: String,
    },
    Found(Target),
}

/// Whether `revision` may be looked up: a commit id, full or abbreviated to 7 hex digits or
/// more. Anything else (a ref name, an option, `HEAD~1`) is not a commit of the mirror.
pub fn is_commit_id(revision: &str) -> bool {
    (7..=64).contains(&revision.len()) && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

impl GitReader {
    /// The stack at `stack_path` (under the deploy directory) as commit `revision` holds it.
    pub async fn stack_at(&self, revision: &str, stack_path: &str) -> Result<StackAt, GitError> {
        if !is_commit_id(revision) {
            return Ok(StackAt::NoCommit);
        }
        let resolved = self
            .git()
            .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .arg(format!("{revision}^{{commit}}"))
            .run()
            .await;
        let Ok(resolved) = resolved else {
            return Ok(StackAt::NoCommit);
        };
        let commit = String::from_utf8_lossy(&resolved.stdout).trim().to_owned();
        if !parse::is_object_id(&commit) {
            return Ok(StackAt::NoCommit);
        }
        let dir = self.repo_path(stack_path);
        // `<commit>:<path>^{tree}` would look for a path ending in `^{tree}`: list the
        // directory's own entry instead (one process), and take it only when it is a tree.
        let parent = self
            .git()
            .args(["ls-tree", "-z", "--end-of-options", &commit, "--"])
            .arg(&dir)
            .run()
            .await
            .map_err(GitError::Read)?;
        let no_stack = || StackAt::NoStack {
            revision: commit.clone(),
        };
        let Some(tree) = parse::ls_tree(&parent.stdout)?
            .into_iter()
            .find(|e| e.path == dir && e.kind == ObjectKind::Tree)
            .map(|e| e.oid)
        else {
            return Ok(no_stack());
        };
        let listing = self
            .git()
            .args(["ls-tree", "-z", "--end-of-options", &tree])
            .run()
            .await
            .map_err(GitError::Read)?;
        let entries = parse::ls_tree(&listing.stdout)?;
        let compose = COMPOSE_FILE_NAMES.iter().find_map(|name| {
            entries
                .iter()
                .find(|e| e.path == *name && e.kind == ObjectKind::Blob)
        });
        let Some(compose) = compose else {
            return Ok(no_stack());
        };
        let blob = self
            .git()
            .args(["cat-file", "blob", &compose.oid])
            .run()
            .await
            .map_err(GitError::Read)?;
        let raw_commit = self
            .git()
            .args(["cat-file", "commit", &commit])
            .run()
            .await
            .map_err(GitError::Read)?;
        Ok(StackAt::Found(Target {
            revision: commit,
            content_hash: tree,
            compose_file: compose.path.clone(),
            compose_hash: Some(hex::encode(Sha256::digest(&blob.stdout))),
            commit_message: parse::commit_message(&raw_commit.stdout),
        }))
    }
}

impl GitReader {
    /// One file of a stack at `commit` (a full commit id), or `None` when it is not there.
    /// One process. Capped like any stack file.
    pub async fn stack_file_at(
        &self,
        commit: &str,
        stack_path: &str,
        file: &str,
    ) -> Result<Option<Vec<u8>>, GitError> {
        if !parse::is_object_id(commit) {
            return Ok(None);
        }
        let dir = self.repo_path(stack_path);
        let out = self
            .git()
            .args(["cat-file", "blob", "--end-of-options"])
            .arg(format!("{commit}:{dir}/{file}"))
            .stdout_limit(super::MAX_STACK_FILE_BYTES as usize)
            .run()
            .await;
        Ok(out.ok().map(|o| o.stdout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::diff::tests::Repo;

    #[tokio::test]
    async fn a_stack_is_found_at_the_commits_that_hold_it_and_only_there() {
        let repo = Repo::new();
        repo.write("stacks/web/compose.yaml", "services: {app: {image: a}}\n");
        repo.write("stacks/web/.env", "A=1\n");
        let first = repo.commit("web");
        repo.write("stacks/web/compose.yaml", "services: {app: {image: b}}\n");
        repo.write(
            "stacks/api/docker-compose.yml",
            "services: {x: {image: c}}\n",
        );
        repo.remove("stacks/web/.env");
        let second = repo.commit("web changed, api added");
        let data = tempfile::tempdir().unwrap();
        let reader = repo.reader("stacks", data.path()).await;

        let StackAt::Found(web) = reader.stack_at(&first, "web").await.unwrap() else {
            panic!("web at the first commit");
        };
        assert_eq!(web.revision, first);
        assert_eq!(
            web.content_hash,
            repo.git(&["rev-parse", &format!("{first}:stacks/web")])
        );
        assert_eq!(web.compose_file, "compose.yaml");
        assert_eq!(
            web.compose_hash.as_deref(),
            Some(hex::encode(Sha256::digest(b"services: {app: {image: a}}\n")).as_str())
        );
        assert_eq!(web.commit_message, "web");
        // Abbreviated ids resolve to the full one.
        let StackAt::Found(short) = reader.stack_at(&second[..10], "api").await.unwrap() else {
            panic!("api at the second commit");
        };
        assert_eq!(short.revision, second);
        assert_eq!(short.compose_file, "docker-compose.yml");
        // Not there at the first commit; a commit the mirror lacks; not a commit id at all.
        assert_eq!(
            reader.stack_at(&first, "api").await.unwrap(),
            StackAt::NoStack {
                revision: first.clone()
            }
        );
        assert_eq!(
            reader
                .stack_at("0123456789abcdef0123456789abcdef01234567", "web")
                .await
                .unwrap(),
            StackAt::NoCommit
        );
        assert_eq!(
            reader.stack_at("main", "web").await.unwrap(),
            StackAt::NoCommit
        );
        // A file of the stack, at a commit; absent files are None.
        assert_eq!(
            reader
                .stack_file_at(&first, "web", ".env")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"A=1\n"[..])
        );
        assert_eq!(
            reader.stack_file_at(&second, "web", ".env").await.unwrap(),
            None
        );
    }

    #[test]
    fn only_commit_ids_are_looked_up() {
        for ok in ["abcdef0", "0123456789abcdef0123456789abcdef01234567"] {
            assert!(is_commit_id(ok), "{ok}");
        }
        for bad in [
            "",
            "abc",
            "main",
            "HEAD~1",
            "--output=x",
            "abcdefg",
            "refs/heads/main",
        ] {
            assert!(!is_commit_id(bad), "{bad}");
        }
    }
}
