//! The deployment history: [`History`] over `deployments.log` (format and reasons in the
//! [module doc](super)). The pure part, `parse`, reads the file's bytes into records.
//!
//! Uses: [`crate::desired_state::rfc3339`] for timestamps, and the parent's file helpers.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::HistoryError;

/// `HISTORY_LIMIT`'s default: deployments kept per stack.
pub const DEFAULT_LIMIT: usize = 20;

const FILE_NAME: &str = "deployments.log";
const FORMAT: &str = "docker-cd-history";
const VERSION: u64 = 1;
/// Compaction never starts below this many records in the file, so that a small store (one
/// stack, limit 20) is not rewritten every 20 appends: a rewrite costs two `fsync`s, and this
/// keeps their share at most 1 in 2,000 appends. 4,096 records are about 2 MB, read in a few
/// milliseconds.
const COMPACT_FLOOR: usize = 4096;
/// Hex digits of the checksum that opens each line (8 bytes of SHA-256).
const SUM_LEN: usize = 16;

/// Why a deployment ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    Commit,
    Drift,
    Manual,
    Rollback,
    ImageUpdate,
    Ack,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Commit => "commit",
            Trigger::Drift => "drift",
            Trigger::Manual => "manual",
            Trigger::Rollback => "rollback",
            Trigger::ImageUpdate => "image-update",
            Trigger::Ack => "ack",
        }
    }
}

/// How a deployment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Succeeded,
    Failed,
    /// It failed and the last succeeded deployment was re-applied (`ROLLBACK_ON_FAILURE`).
    RolledBack,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled-back",
        }
    }
}

/// One service's image as deployed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployedImage {
    pub service: String,
    /// The reference the compose file names (`nginx:1.27`).
    pub image: String,
    /// The image id it resolved to (`sha256:…`), when the engine reported one.
    pub image_id: Option<String>,
}

/// One hook that ran during a sync (SPEC §11): `compose run` of a service of the stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookRun {
    /// `preSync` or `postSync`.
    pub phase: String,
    pub service: String,
    /// `None`: it did not exit by itself (timed out and killed, or could not start).
    pub exit_code: Option<i32>,
    /// The end of what it wrote (stdout, then stderr), at most [`HOOK_OUTPUT_BYTES`].
    pub output: String,
}

/// How much of a hook's output a record keeps: the last 16 KiB.
pub const HOOK_OUTPUT_BYTES: usize = 16 * 1024;

/// A deployment about to be recorded: a [`Deployment`] without its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeployment {
    /// The stack's path in the repository (`apps/web`).
    pub stack: String,
    pub revision: String,
    pub commit_message: String,
    pub content_hash: String,
    pub trigger: Trigger,
    pub started_at: SystemTime,
    pub finished_at: SystemTime,
    pub outcome: Outcome,
    /// Why it failed or was rolled back; `None` when it succeeded.
    pub reason: Option<String>,
    pub images: Vec<DeployedImage>,
    pub hooks: Vec<HookRun>,
}

/// One sync attempt of a stack. Serialises as SPEC §10's record (the stack is not part of it;
/// the log stores it next to the record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// Increases over the whole store, across restarts; gaps are possible (an append that
    /// failed still used its id).
    pub id: u64,
    #[serde(skip)]
    pub stack: String,
    pub revision: String,
    pub commit_message: String,
    pub content_hash: String,
    pub trigger: Trigger,
    /// Whole seconds, like every timestamp of the API (RFC 3339 on the wire).
    #[serde(with = "timestamp")]
    pub started_at: SystemTime,
    #[serde(with = "timestamp")]
    pub finished_at: SystemTime,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub images: Vec<DeployedImage>,
    /// Records written before hooks existed have none.
    #[serde(default)]
    pub hooks: Vec<HookRun>,
}

impl Deployment {
    fn new(id: u64, new: NewDeployment) -> Deployment {
        Deployment {
            id,
            stack: new.stack,
            revision: new.revision,
            commit_message: new.commit_message,
            content_hash: new.content_hash,
            trigger: new.trigger,
            started_at: whole_seconds(new.started_at),
            finished_at: whole_seconds(new.finished_at),
            outcome: new.outcome,
            reason: new.reason,
            images: new.images,
            hooks: new.hooks,
        }
    }
}

/// Truncates to what the wire format keeps, so a record reads the same before and after a
/// restart. Times before 1970 (a broken clock) become 1970.
fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// RFC 3339 for serde, both ways: written by the API's helper, read back with humantime.
mod timestamp {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::desired_state::rfc3339;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339::format(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339(&text).map_err(D::Error::custom)
    }
}

/// A record line's JSON: the deployment with its stack (`String`s when read, borrowed when
/// written).
#[derive(Serialize, Deserialize)]
struct Line<S, T> {
    stack: S,
    #[serde(flatten)]
    deployment: T,
}

/// The header line's JSON.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    format: String,
    version: u64,
    next_id: u64,
}

/// What [`History::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    pub path: PathBuf,
    /// Intact records read.
    pub records: usize,
    /// Records kept in memory (the newest `limit` per stack).
    pub kept: usize,
    pub stacks: usize,
    /// Complete lines skipped: checksum or JSON wrong.
    pub damaged: usize,
    /// The last line was incomplete (a write torn by a crash) and was skipped.
    pub torn: bool,
    /// The file was rewritten with only the kept records.
    pub compacted: bool,
    /// The id the next append gets.
    pub next_id: u64,
}

impl LoadReport {
    /// Lines lost: damaged ones and a torn last one.
    pub fn skipped(&self) -> usize {
        self.damaged + usize::from(self.torn)
    }
}

/// The log's content as [`parse`] reads it.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    /// Intact records, in file order.
    pub records: Vec<Deployment>,
    /// The header's next id, if the file has an intact header.
    pub next_id: Option<u64>,
    pub damaged: usize,
    pub torn: bool,
}

fn checksum(json: &[u8]) -> String {
    hex::encode(&Sha256::digest(json)[..SUM_LEN / 2])
}

/// `<sum> <json>\n`.
fn encode_line(json: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(SUM_LEN + json.len() + 2);
    line.extend_from_slice(checksum(json).as_bytes());
    line.push(b' ');
    line.extend_from_slice(json);
    line.push(b'\n');
    line
}

/// The JSON of a line whose checksum holds, or `None`.
fn checked_json(line: &[u8]) -> Option<&[u8]> {
    if line.len() <= SUM_LEN || line[SUM_LEN] != b' ' {
        return None;
    }
    let (sum, json) = (&line[..SUM_LEN], &line[SUM_LEN + 1..]);
    (sum == checksum(json).as_bytes()).then_some(json)
}

/// Reads a log file's bytes. Lines with a wrong checksum or JSON are counted in `damaged`, an
/// unterminated last line sets `torn`; empty lines (left by a failed append, see
/// [`History::append`]) are ignored. Fails only for a header of another format version.
pub(super) fn parse(bytes: &[u8], path: &Path) -> Result<Parsed, HistoryError> {
    let mut parsed = Parsed::default();
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(end) => {
            parsed.torn = end + 1 < bytes.len();
            &bytes[..end]
        }
        None => {
            parsed.torn = !bytes.is_empty();
            &[][..]
        }
    };
    if complete.is_empty() {
        return Ok(parsed);
    }
    for (index, line) in complete.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let Some(json) = checked_json(line) else {
            parsed.damaged += 1;
            continue;
        };
        if index == 0 {
            if let Ok(header) = serde_json::from_slice::<Header>(json) {
                if header.format != FORMAT {
                    return Err(HistoryError::Damaged {
                        path: path.to_owned(),
                        reason: format!("not a docker-cd history (format {:?})", header.format),
                    });
                }
                if header.version != VERSION {
                    return Err(HistoryError::UnsupportedVersion {
                        path: path.to_owned(),
                        found: header.version,
                        supported: VERSION,
                    });
                }
                parsed.next_id = Some(header.next_id);
                continue;
            }
        }
        match serde_json::from_slice::<Line<String, Deployment>>(json) {
            Ok(Line {
                stack,
                mut deployment,
            }) => {
                deployment.stack = stack;
                parsed.records.push(deployment);
            }
            Err(_) => parsed.damaged += 1,
        }
    }
    Ok(parsed)
}

/// The file side of the store; only the holder of its lock writes to the file.
struct Writer {
    file: File,
    /// The length of the file up to the end of its last complete line.
    len: u64,
    /// Record lines in the file (what compaction is measured against).
    lines: usize,
    next_id: u64,
    /// A failed append may have left a partial line that could not be cut off: the next append
    /// starts with a newline so that it lands on a line of its own.
    torn: bool,
}

/// Each stack's newest deployments, oldest first.
type Stacks = HashMap<String, VecDeque<Deployment>>;

/// The deployment history: appends go to the log, reads come from memory.
///
/// Two locks, always taken in this order: `writer` (held through the file write and its
/// `fdatasync`, so ids and file order agree) and then `stacks` (held only to copy or insert a
/// few records, never across I/O, so reads never wait for a disk).
#[derive(Debug)]
pub struct History {
    dir: PathBuf,
    path: PathBuf,
    limit: usize,
    /// [`COMPACT_FLOOR`], lower in tests.
    compact_floor: usize,
    writer: Mutex<Writer>,
    stacks: RwLock<Stacks>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("len", &self.len)
            .field("lines", &self.lines)
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

impl History {
    /// Opens (or creates) the history in `dir`, keeping the newest `limit` deployments per
    /// stack (at least one). Damaged or torn lines are skipped and reported, never fatal; the
    /// open fails only when the directory or file cannot be read or written, or the file is
    /// of another format version.
    pub fn open(dir: &Path, limit: usize) -> Result<(History, LoadReport), HistoryError> {
        History::open_with_floor(dir, limit, COMPACT_FLOOR)
    }

    fn open_with_floor(
        dir: &Path,
        limit: usize,
        compact_floor: usize,
    ) -> Result<(History, LoadReport), HistoryError> {
        let limit = limit.max(1);
        super::ensure_dir(dir)?;
        super::remove_stale_temps(dir, FILE_NAME);
        let path = dir.join(FILE_NAME);
        let (bytes, exists) = match std::fs::read(&path) {
            Ok(bytes) => (bytes, true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), false),
            Err(e) => return Err(HistoryError::io("read", &path)(e)),
        };
        let parsed = parse(&bytes, &path)?;
        drop(bytes);

        let records = parsed.records.len();
        let max_id = parsed.records.iter().map(|d| d.id).max().unwrap_or(0);
        let next_id = parsed.next_id.unwrap_or(1).max(max_id + 1);
        let mut grouped: HashMap<String, Vec<Deployment>> = HashMap::new();
        for deployment in parsed.records {
            grouped
                .entry(deployment.stack.clone())
                .or_default()
                .push(deployment);
        }
        let stacks: Stacks = grouped
            .into_iter()
            .map(|(stack, mut deployments)| {
                deployments.sort_by_key(|d| d.id);
                deployments.dedup_by_key(|d| d.id);
                let excess = deployments.len().saturating_sub(limit);
                (stack, deployments.into_iter().skip(excess).collect())
            })
            .collect();
        let kept = stacks.values().map(VecDeque::len).sum();

        let needs_rewrite = !exists
            || parsed.damaged > 0
            || parsed.torn
            || records > threshold(limit, stacks.len(), compact_floor);
        let writer = if needs_rewrite {
            rewrite(dir, &path, &stacks, next_id)?
        } else {
            let file = open_append(&path)?;
            Writer {
                file,
                len: bytes_len(&path)?,
                lines: records,
                next_id,
                torn: false,
            }
        };
        let report = LoadReport {
            path: path.clone(),
            records,
            kept,
            stacks: stacks.len(),
            damaged: parsed.damaged,
            torn: parsed.torn,
            compacted: exists && needs_rewrite,
            next_id,
        };
        let history = History {
            dir: dir.to_owned(),
            path,
            limit,
            compact_floor,
            writer: Mutex::new(writer),
            stacks: RwLock::new(stacks),
        };
        Ok((history, report))
    }

    /// Records a deployment: one `write` and one `fdatasync` of the log, then memory. Returns
    /// the record with its id. On an error nothing is kept (the partial line is cut off), and
    /// the id is not handed out again.
    pub fn append(&self, new: NewDeployment) -> Result<Deployment, HistoryError> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let deployment = Deployment::new(writer.next_id, new);
        writer.next_id += 1;
        let json = serde_json::to_vec(&Line {
            stack: deployment.stack.as_str(),
            deployment: &deployment,
        })
        .map_err(|source| HistoryError::Encode {
            path: self.path.clone(),
            source,
        })?;
        let mut line = Vec::new();
        if writer.torn {
            line.push(b'\n');
        }
        line.extend(encode_line(&json));

        let written = writer
            .file
            .write_all(&line)
            .map_err(HistoryError::io("append to", &self.path))
            .and_then(|()| {
                writer
                    .file
                    .sync_data()
                    .map_err(HistoryError::io("sync", &self.path))
            });
        if let Err(e) = written {
            // Cut the partial line off; if even that fails, make the next line start fresh.
            let len = writer.len;
            writer.torn = writer.file.set_len(len).is_err();
            return Err(e);
        }
        writer.len += line.len() as u64;
        writer.lines += 1;
        writer.torn = false;

        let stacks_now = {
            let mut stacks = self.stacks.write().unwrap_or_else(PoisonError::into_inner);
            let kept = stacks.entry(deployment.stack.clone()).or_default();
            kept.push_back(deployment.clone());
            if kept.len() > self.limit {
                kept.pop_front();
            }
            stacks.len()
        };
        if writer.lines > threshold(self.limit, stacks_now, self.compact_floor) {
            // The record is durable already; a failed compaction only leaves the file longer.
            if let Err(e) = self.compact(&mut writer) {
                tracing::warn!(error = %crate::error_chain(&e), "cannot compact the deployment history");
            }
        }
        Ok(deployment)
    }

    /// The stack's kept deployments, newest first.
    pub fn list(&self, stack: &str) -> Vec<Deployment> {
        let stacks = self.stacks.read().unwrap_or_else(PoisonError::into_inner);
        stacks
            .get(stack)
            .map(|kept| kept.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// The stack's newest succeeded deployment.
    pub fn last_succeeded(&self, stack: &str) -> Option<Deployment> {
        self.find_newest(stack, |d| d.outcome == Outcome::Succeeded)
    }

    /// The stack's newest succeeded deployment of another revision than `excluding_revision`
    /// (what runs now): rollback's default target.
    pub fn previous_succeeded(&self, stack: &str, excluding_revision: &str) -> Option<Deployment> {
        self.find_newest(stack, |d| {
            d.outcome == Outcome::Succeeded && d.revision != excluding_revision
        })
    }

    fn find_newest(&self, stack: &str, wanted: impl Fn(&Deployment) -> bool) -> Option<Deployment> {
        let stacks = self.stacks.read().unwrap_or_else(PoisonError::into_inner);
        stacks.get(stack)?.iter().rev().find(|d| wanted(d)).cloned()
    }

    /// The stacks that have a history.
    pub fn stacks(&self) -> Vec<String> {
        let stacks = self.stacks.read().unwrap_or_else(PoisonError::into_inner);
        stacks.keys().cloned().collect()
    }

    /// Drops a stack's history (a stack removed from Git), on disk too: the log is rewritten
    /// without it.
    pub fn forget(&self, stack: &str) -> Result<(), HistoryError> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let removed = self
            .stacks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(stack)
            .is_some();
        if removed {
            self.compact(&mut writer)?;
        }
        Ok(())
    }

    /// Rewrites the log with the kept records. The caller holds the writer lock, so no append
    /// runs meanwhile; reads go on from memory.
    fn compact(&self, writer: &mut Writer) -> Result<(), HistoryError> {
        let stacks = self
            .stacks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        *writer = rewrite(&self.dir, &self.path, &stacks, writer.next_id)?;
        Ok(())
    }
}

/// Compaction starts when the file holds more than this many records: twice what is kept at
/// most, and never less than `floor`.
fn threshold(limit: usize, stacks: usize, floor: usize) -> usize {
    (2 * limit * stacks.max(1)).max(floor)
}

/// Writes a fresh log (header, then every kept record in id order) in place of the old one,
/// atomically, and opens it for appending.
fn rewrite(dir: &Path, path: &Path, stacks: &Stacks, next_id: u64) -> Result<Writer, HistoryError> {
    let encode = |source| HistoryError::Encode {
        path: path.to_owned(),
        source,
    };
    let mut records: Vec<&Deployment> = stacks.values().flatten().collect();
    records.sort_unstable_by_key(|d| d.id);
    let header = serde_json::to_vec(&Header {
        format: FORMAT.into(),
        version: VERSION,
        next_id,
    })
    .map_err(encode)?;
    let mut bytes = encode_line(&header);
    for deployment in &records {
        let json = serde_json::to_vec(&Line {
            stack: deployment.stack.as_str(),
            deployment,
        })
        .map_err(encode)?;
        bytes.extend(encode_line(&json));
    }
    super::replace_file(dir, FILE_NAME, &bytes)?;
    Ok(Writer {
        file: open_append(path)?,
        len: bytes.len() as u64,
        lines: records.len(),
        next_id,
        torn: false,
    })
}

fn open_append(path: &Path) -> Result<File, HistoryError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(HistoryError::io("open", path))
}

fn bytes_len(path: &Path) -> Result<u64, HistoryError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(HistoryError::io("read the size of", path))
}

#[cfg(test)]
mod tests;
