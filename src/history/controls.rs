//! Stack controls: the revision a stack is pinned at (after a rollback) and whether it is
//! suspended, in `controls.json` (format in the [module doc](super)).
//!
//! Uses: the parent's file helpers only.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use super::HistoryError;

const FILE_NAME: &str = "controls.json";
const VERSION: u64 = 1;

/// What an operator set on one stack. The default (not pinned, not suspended) is never stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Control {
    /// Automatic syncs stop; the stack stays at this commit until unpinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_revision: Option<String>,
    /// Never synced, reverted or removed.
    #[serde(default)]
    pub suspended: bool,
}

impl Control {
    fn is_default(&self) -> bool {
        *self == Control::default()
    }
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u64,
    #[serde(default)]
    stacks: BTreeMap<String, Control>,
}

/// The controls of every stack: changes are written through to `controls.json` before they
/// show in memory, so what is read was durable first.
///
/// `write` serialises the changes (held across the file's rewrite and `fsync`s); `state` is
/// swapped whole after that and only ever held to clone an `Arc`, so reads never wait for a
/// disk.
#[derive(Debug)]
pub struct Controls {
    dir: PathBuf,
    path: PathBuf,
    write: Mutex<()>,
    state: RwLock<Arc<BTreeMap<String, Control>>>,
}

impl Controls {
    /// Opens the controls in `dir` (created if needed). A missing file means no controls; a
    /// damaged or unreadable one is an error naming it, never an empty set.
    pub fn open(dir: &Path) -> Result<Controls, HistoryError> {
        super::ensure_dir(dir)?;
        super::remove_stale_temps(dir, FILE_NAME);
        let path = dir.join(FILE_NAME);
        let stacks = match std::fs::read(&path) {
            Ok(bytes) => parse(&bytes, &path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(HistoryError::io("read", &path)(e)),
        };
        Ok(Controls {
            dir: dir.to_owned(),
            path,
            write: Mutex::new(()),
            state: RwLock::new(Arc::new(stacks)),
        })
    }

    /// Pins `stack` at `revision` (replacing any pin).
    pub fn pin(&self, stack: &str, revision: &str) -> Result<Control, HistoryError> {
        self.change(stack, |c| c.pinned_revision = Some(revision.to_owned()))
    }

    pub fn unpin(&self, stack: &str) -> Result<Control, HistoryError> {
        self.change(stack, |c| c.pinned_revision = None)
    }

    pub fn suspend(&self, stack: &str) -> Result<Control, HistoryError> {
        self.change(stack, |c| c.suspended = true)
    }

    pub fn resume(&self, stack: &str) -> Result<Control, HistoryError> {
        self.change(stack, |c| c.suspended = false)
    }

    /// The stack's controls (the default when none are set).
    pub fn get(&self, stack: &str) -> Control {
        self.all().get(stack).cloned().unwrap_or_default()
    }

    /// Every stack that has a control set.
    pub fn all(&self) -> Arc<BTreeMap<String, Control>> {
        Arc::clone(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Applies `edit` to a copy, writes the copy, then makes it current. A change that changes
    /// nothing writes nothing.
    fn change(
        &self,
        stack: &str,
        edit: impl FnOnce(&mut Control),
    ) -> Result<Control, HistoryError> {
        let _write = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.all();
        let before = current.get(stack).cloned().unwrap_or_default();
        let mut control = before.clone();
        edit(&mut control);
        if control == before {
            return Ok(control);
        }
        let mut stacks = BTreeMap::clone(&current);
        if control.is_default() {
            stacks.remove(stack);
        } else {
            stacks.insert(stack.to_owned(), control.clone());
        }
        let file = File {
            version: VERSION,
            stacks,
        };
        let mut bytes =
            serde_json::to_vec_pretty(&file).map_err(|source| HistoryError::Encode {
                path: self.path.clone(),
                source,
            })?;
        bytes.push(b'\n');
        super::replace_file(&self.dir, FILE_NAME, &bytes)?;
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(file.stacks);
        Ok(control)
    }
}

/// Reads `controls.json`; anything but a well-formed file of this version is an error.
fn parse(bytes: &[u8], path: &Path) -> Result<BTreeMap<String, Control>, HistoryError> {
    let file: File = serde_json::from_slice(bytes).map_err(|e| HistoryError::Damaged {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if file.version != VERSION {
        return Err(HistoryError::UnsupportedVersion {
            path: path.to_owned(),
            found: file.version,
            supported: VERSION,
        });
    }
    Ok(file
        .stacks
        .into_iter()
        .filter(|(_, c)| !c.is_default())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_and_suspensions_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let controls = Controls::open(dir.path()).unwrap();
        assert_eq!(controls.get("apps/web"), Control::default());
        controls.pin("apps/web", "abc123").unwrap();
        controls.suspend("apps/db").unwrap();
        controls.suspend("apps/web").unwrap();
        drop(controls);

        let controls = Controls::open(dir.path()).unwrap();
        assert_eq!(
            controls.get("apps/web"),
            Control {
                pinned_revision: Some("abc123".into()),
                suspended: true
            }
        );
        assert!(controls.get("apps/db").suspended);
        assert_eq!(controls.all().len(), 2);

        controls.unpin("apps/web").unwrap();
        controls.resume("apps/db").unwrap();
        drop(controls);
        let controls = Controls::open(dir.path()).unwrap();
        assert_eq!(
            *controls.all(),
            BTreeMap::from([(
                "apps/web".to_owned(),
                Control {
                    pinned_revision: None,
                    suspended: true
                }
            )])
        );
    }

    #[test]
    fn a_missing_file_means_no_controls_and_is_not_created_by_reading() {
        let dir = tempfile::tempdir().unwrap();
        let controls = Controls::open(&dir.path().join("history")).unwrap();
        assert!(controls.all().is_empty());
        assert!(!dir.path().join("history").join(FILE_NAME).exists());
    }

    #[test]
    fn a_damaged_file_fails_the_open_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let controls = Controls::open(dir.path()).unwrap();
        controls.pin("apps/web", "abc123").unwrap();
        drop(controls);
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&path, &bytes).unwrap();

        let err = Controls::open(dir.path()).unwrap_err();
        assert!(matches!(err, HistoryError::Damaged { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("{} is damaged: ", path.display())),
            "{text}"
        );

        std::fs::write(&path, b"").unwrap();
        assert!(matches!(
            Controls::open(dir.path()),
            Err(HistoryError::Damaged { .. })
        ));
    }

    #[test]
    fn a_file_of_another_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), br#"{"version":2,"stacks":{}}"#).unwrap();
        assert!(matches!(
            Controls::open(dir.path()),
            Err(HistoryError::UnsupportedVersion { found: 2, .. })
        ));
    }

    #[test]
    fn the_file_holds_only_stacks_with_a_control() {
        let dir = tempfile::tempdir().unwrap();
        let controls = Controls::open(dir.path()).unwrap();
        controls.pin("a", "r1").unwrap();
        controls.suspend("b").unwrap();
        controls.unpin("a").unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"version": 1, "stacks": {"b": {"suspended": true}}})
        );
    }
}
