//! The persistent bare mirror under the data dir: opening it, repairing or re-creating it when
//! it is damaged, and clearing the lock files a killed git leaves behind.
//!
//! Uses: std only (and the reader's own git command).

use std::io;
use std::path::Path;

use super::{GitError, GitReader};
use crate::process::Command;

impl GitReader {
    pub(super) async fn prepare_mirror(&self) -> Result<(), GitError> {
        let healthy = self.mirror.join("HEAD").is_file() && self.mirror.join("objects").is_dir();
        if self.mirror.exists() && !healthy {
            tracing::warn!(mirror = %self.mirror.display(), "mirror is not a git repository; rebuilding it");
            self.remove_mirror()?;
        }
        if !self.mirror.exists() {
            if let Some(parent) = self.mirror.parent() {
                create_dir(parent)?;
            }
            Command::new(&self.config.bin)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .args(["init", "--bare", "--quiet", "--"])
                .arg(&self.mirror)
                .timeout(self.config.timeout)
                .run()
                .await
                .map_err(GitError::Read)?;
        }
        // Only this process uses the mirror, and no git child runs yet: any lock file is a
        // leftover of a run that was killed.
        remove_lock_files(&self.mirror).map_err(|source| GitError::Mirror {
            path: self.mirror.clone(),
            source,
        })?;
        Ok(())
    }

    pub(super) fn remove_mirror(&self) -> Result<(), GitError> {
        std::fs::remove_dir_all(&self.mirror).map_err(|source| GitError::Mirror {
            path: self.mirror.clone(),
            source,
        })
    }
}

pub(super) fn create_dir(path: &Path) -> Result<(), GitError> {
    std::fs::create_dir_all(path).map_err(|source| GitError::Mirror {
        path: path.to_owned(),
        source,
    })
}

/// Removes `*.lock` files left in the mirror's top level and under `refs/`.
pub(super) fn remove_lock_files(mirror: &Path) -> io::Result<()> {
    fn walk(dir: &Path, recurse: bool) -> io::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                if recurse {
                    walk(&path, true)?;
                }
            } else if path.extension().is_some_and(|e| e == "lock") {
                tracing::warn!(file = %path.display(), "removing a stale lock file from the mirror");
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }
    walk(mirror, false)?;
    walk(&mirror.join("refs"), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_lock_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mirror = dir.path();
        std::fs::create_dir_all(mirror.join("refs/docker-cd")).unwrap();
        std::fs::write(mirror.join("packed-refs.lock"), "").unwrap();
        std::fs::write(mirror.join("refs/docker-cd/target.lock"), "").unwrap();
        std::fs::write(mirror.join("refs/docker-cd/target"), "x").unwrap();
        remove_lock_files(mirror).unwrap();
        assert!(!mirror.join("packed-refs.lock").exists());
        assert!(!mirror.join("refs/docker-cd/target.lock").exists());
        assert!(mirror.join("refs/docker-cd/target").exists());
    }
}
