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
        let dir = if self.config.deploy_dir.is_root() {
            stack_path.to_owned()
        } else {
            format!("{}/{stack_path}", self.config.deploy_dir.as_str())
        };
        let tree = self
            .git()
            .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .arg(format!("{commit}:{dir}^{{tree}}"))
            .run()
            .await;
        let no_stack = || StackAt::NoStack {
            revision: commit.clone(),
        };
        let Ok(tree) = tree else {
            return Ok(no_stack());
        };
        let tree = String::from_utf8_lossy(&tree.stdout).trim().to_owned();
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

#[cfg(test)]
mod tests {
    use super::*;

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
