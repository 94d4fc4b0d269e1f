//! A stack's settings in Git (SPEC §11): the top-level `x-docker-cd:` mapping of its compose
//! file, which Compose itself ignores.
//!
//! [`read`] takes the compose file's bytes and gives the settings, the warnings (unknown keys)
//! and the error (an invalid value, naming the key and what is allowed). It is pure and cheap
//! on files without settings: a file that does not contain the text `x-docker-cd` is not
//! parsed at all, so a refresh of 10,000 stacks without settings parses no YAML.
//!
//! The YAML is read with `yaml_serde` (the maintained continuation of `serde_yaml`, which its
//! author archived), the crate the rest of docker-cd reads compose files with: anchors and
//! aliases are resolved by the parser, `<<` merges by [`yaml_serde::Value::apply_merge`].
//!
//! Foundation layer, part of the desired state. Uses: config (`DriftPolicy`), schedule (sync
//! windows).

use std::time::Duration;

use serde::Serialize;
use yaml_serde::{Mapping, Value};

use crate::config::DriftPolicy;
use crate::schedule::SyncWindow;

/// The top-level key the settings live under.
pub const KEY: &str = "x-docker-cd";

/// The keys of the settings mapping, in the order the reference lists them.
pub const KEYS: [&str; 11] = [
    "suspend",
    "drift",
    "healthTimeout",
    "rollbackOnFailure",
    "dependsOn",
    "files",
    "profiles",
    "hooks",
    "syncWindows",
    "imageUpdates",
    // Accepted and ignored: a place for the operator's own notes.
    "description",
];

/// The most hooks per phase, and the most entries of any list setting: settings are a few
/// lines, a list of thousands is a mistake.
pub const MAX_LIST: usize = 64;

/// What a stack's `x-docker-cd:` says. Every field is optional: `None` (or empty) means the
/// global setting applies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftPolicy>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_duration"
    )]
    pub health_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_on_failure: Option<bool>,
    /// Stack paths that must be synced and healthy first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Compose files merged in this order, relative to the stack directory. Empty: the
    /// stack's compose file alone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
    /// `None`: `SYNC_WINDOWS` applies. `Some(empty)`: this stack has no windows (always open).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_windows: Option<Vec<SyncWindow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_updates: Option<bool>,
}

/// No settings (what a stack without `x-docker-cd:` has).
pub static EMPTY: StackSettings = StackSettings {
    suspend: None,
    drift: None,
    health_timeout: None,
    rollback_on_failure: None,
    depends_on: Vec::new(),
    files: Vec::new(),
    profiles: Vec::new(),
    hooks: Hooks {
        pre_sync: Vec::new(),
        post_sync: Vec::new(),
    },
    sync_windows: None,
    image_updates: None,
};

/// Serializes a stack's [`Read`] as its settings alone (`{}` when it has none).
pub fn serialize_read<S: serde::Serializer>(
    read: &Option<std::sync::Arc<Read>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    read.as_deref()
        .map_or(&EMPTY, |r| &r.settings)
        .serialize(serializer)
}

impl StackSettings {
    /// Whether the file said anything at all.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// The hooks of a stack, by phase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pre_sync: Vec<Hook>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub post_sync: Vec<Hook>,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        self.pre_sync.is_empty() && self.post_sync.is_empty()
    }
}

/// One hook: `compose run --rm --no-deps <service> <command…>` of the stack itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hook {
    pub service: String,
    /// Empty: the service's own command.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    PreSync,
    PostSync,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreSync => "preSync",
            Self::PostSync => "postSync",
        }
    }
}

/// What [`read`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Read {
    pub settings: StackSettings,
    /// Unknown keys, each named with where it was.
    pub warnings: Vec<String>,
    /// The first invalid value: the stack cannot be synced.
    pub error: Option<String>,
}

fn serialize_duration<S: serde::Serializer>(
    value: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => serializer.serialize_str(&humantime::format_duration(*d).to_string()),
        None => serializer.serialize_none(),
    }
}

/// Reads the settings of the compose file `bytes`. Messages start with the key
/// (`x-docker-cd.drift: …`); the stack prefixes its file's name.
pub fn read(bytes: &[u8]) -> Read {
    if !contains(bytes, KEY.as_bytes()) {
        return Read::default();
    }
    let mut doc: Value = match yaml_serde::from_slice(bytes) {
        Ok(doc) => doc,
        Err(e) => {
            return Read {
                error: Some(format!(
                    "{KEY} cannot be read: the file is not valid YAML: {e}"
                )),
                ..Read::default()
            };
        }
    };
    if let Err(e) = doc.apply_merge() {
        return Read {
            error: Some(format!(
                "{KEY} cannot be read: a `<<` merge cannot be applied: {e}"
            )),
            ..Read::default()
        };
    }
    let Some(value) = doc.as_mapping().and_then(|top| top.get(KEY)) else {
        return Read::default(); // the text is there, the key is not (a comment, a value)
    };
    let mut read = Read::default();
    match value {
        Value::Null => {}
        Value::Mapping(map) => {
            if let Err(e) = read_mapping(map, &mut read) {
                read.error = Some(format!("{KEY}.{e}"));
                read.settings = StackSettings::default();
            }
        }
        other => {
            read.error = Some(format!(
                "{KEY} must be a mapping of settings, not {}",
                kind(other)
            ));
        }
    }
    read.warnings = read
        .warnings
        .into_iter()
        .map(|w| format!("{KEY}.{w}"))
        .collect();
    read
}

/// An invalid value: `<key>: <what is wrong and what is allowed>`.
type Invalid = String;

fn read_mapping(map: &Mapping, read: &mut Read) -> Result<(), Invalid> {
    let s = &mut read.settings;
    for (key, value) in map {
        let Some(key) = key.as_str() else {
            read.warnings
                .push(format!("{}: a key that is not text is ignored", short(key)));
            continue;
        };
        let at = |what: String| format!("{key}: {what}");
        match key {
            "suspend" => s.suspend = Some(boolean(value).map_err(at)?),
            "rollbackOnFailure" => s.rollback_on_failure = Some(boolean(value).map_err(at)?),
            "imageUpdates" => s.image_updates = Some(boolean(value).map_err(at)?),
            "drift" => s.drift = Some(drift(value).map_err(at)?),
            "healthTimeout" => s.health_timeout = Some(duration(value, true).map_err(at)?),
            "dependsOn" => s.depends_on = strings(value, stack_path).map_err(at)?,
            "files" => s.files = strings(value, file_path).map_err(at)?,
            "profiles" => s.profiles = strings(value, profile).map_err(at)?,
            "hooks" => s.hooks = hooks(value, &mut read.warnings)?,
            "syncWindows" => s.sync_windows = Some(windows(value, &mut read.warnings)?),
            "description" => {}
            other => read.warnings.push(format!(
                "{other}: unknown setting, ignored (known: {})",
                KEYS.join(", ")
            )),
        }
    }
    Ok(())
}

fn boolean(value: &Value) -> Result<bool, String> {
    value
        .as_bool()
        .ok_or_else(|| format!("{} is not true or false", short(value)))
}

fn drift(value: &Value) -> Result<DriftPolicy, String> {
    match value.as_str() {
        Some("revert") => Ok(DriftPolicy::Revert),
        Some("flag") => Ok(DriftPolicy::Flag),
        Some("ignore") => Ok(DriftPolicy::Ignore),
        _ => Err(format!(
            "{} is not one of: revert, flag, ignore",
            short(value)
        )),
    }
}

/// A duration such as `2m` or `90s`; `0` (the number or the text) where `zero` allows it.
fn duration(value: &Value, zero: bool) -> Result<Duration, String> {
    let allowed = if zero {
        "a duration such as 90s, 2m or 1h30m, or 0"
    } else {
        "a duration such as 30m, 2h or 1h30m, more than 0"
    };
    let parsed = match value {
        Value::Number(n) if n.as_u64() == Some(0) => Some(Duration::ZERO),
        Value::String(text) if text.trim() == "0" => Some(Duration::ZERO),
        Value::String(text) => humantime::parse_duration(text.trim()).ok(),
        _ => None,
    };
    match parsed {
        Some(d) if d.is_zero() && !zero => Err(format!("{} is not {allowed}", short(value))),
        Some(d) => Ok(d),
        None => Err(format!("{} is not {allowed}", short(value))),
    }
}

/// A list of text entries, each checked by `check`.
fn strings(value: &Value, check: fn(&str) -> Result<(), String>) -> Result<Vec<String>, String> {
    let Some(list) = value.as_sequence() else {
        return Err(format!("{} is not a list (write [a, b])", short(value)));
    };
    if list.len() > MAX_LIST {
        return Err(format!(
            "{} entries, more than the {MAX_LIST} allowed",
            list.len()
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let Some(text) = entry.as_str() else {
            return Err(format!("entry {} ({}) is not text", i + 1, short(entry)));
        };
        check(text).map_err(|e| format!("entry {} ({text:?}) {e}", i + 1))?;
        if out.iter().any(|o| o == text) {
            return Err(format!("entry {} ({text:?}) is listed twice", i + 1));
        }
        out.push(text.to_owned());
    }
    Ok(out)
}

/// A stack path as `dependsOn` names it: the directory under the deploy directory, as the
/// stack list shows it (`db`, `apps/web`).
fn stack_path(text: &str) -> Result<(), String> {
    relative(
        text,
        "a stack path relative to the deploy directory, such as db or apps/web",
    )
}

/// A compose file of `files`: inside the stack directory.
fn file_path(text: &str) -> Result<(), String> {
    relative(
        text,
        "a file inside the stack directory, such as compose.prod.yaml",
    )
}

fn relative(text: &str, allowed: &str) -> Result<(), String> {
    let bad = text.is_empty()
        || text.starts_with('/')
        || text.ends_with('/')
        || text.contains('\\')
        || text.chars().any(char::is_control)
        || text
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        Err(format!("is not {allowed}"))
    } else {
        Ok(())
    }
}

/// A compose profile name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, as compose allows.
fn profile(text: &str) -> Result<(), String> {
    let mut chars = text.chars();
    let first = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        Ok(())
    } else {
        Err("is not a profile name (a letter or digit, then letters, digits, _, . or -)".into())
    }
}

fn hooks(value: &Value, warnings: &mut Vec<String>) -> Result<Hooks, Invalid> {
    let mut hooks = Hooks::default();
    let map = match value {
        Value::Null => return Ok(hooks),
        Value::Mapping(map) => map,
        other => {
            return Err(format!(
                "hooks: {} is not a mapping of preSync and postSync",
                short(other)
            ));
        }
    };
    for (key, list) in map {
        let phase = match key.as_str() {
            Some("preSync") => Phase::PreSync,
            Some("postSync") => Phase::PostSync,
            _ => {
                warnings.push(format!(
                    "hooks.{}: unknown hook phase, ignored (known: preSync, postSync)",
                    short(key)
                ));
                continue;
            }
        };
        let name = phase.as_str();
        let read = hook_list(list).map_err(|e| format!("hooks.{name}{e}"))?;
        match phase {
            Phase::PreSync => hooks.pre_sync = read,
            Phase::PostSync => hooks.post_sync = read,
        }
    }
    Ok(hooks)
}

/// The hooks of one phase; errors start with `[n]…` or `: …`, after the phase's name.
fn hook_list(value: &Value) -> Result<Vec<Hook>, String> {
    let Some(list) = value.as_sequence() else {
        return Err(format!(
            ": {} is not a list of hooks (write [{{service: migrate, command: [sh, -c, ./migrate.sh]}}])",
            short(value)
        ));
    };
    if list.len() > MAX_LIST {
        return Err(format!(
            ": {} hooks, more than the {MAX_LIST} allowed",
            list.len()
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, entry)| hook(entry).map_err(|e| format!("[{i}].{e}")))
        .collect()
}

fn hook(value: &Value) -> Result<Hook, String> {
    let Some(map) = value.as_mapping() else {
        return Err(format!(
            "service: {} is not a hook (a mapping with service and command)",
            short(value)
        ));
    };
    let mut service = None;
    let mut command = Vec::new();
    for (key, value) in map {
        match key.as_str() {
            Some("service") => match value.as_str() {
                Some(name) if is_service_name(name) => service = Some(name.to_owned()),
                _ => {
                    return Err(format!(
                        "service: {} is not a service name of the stack",
                        short(value)
                    ));
                }
            },
            Some("command") => {
                command = match value.as_sequence() {
                    Some(args) => args
                        .iter()
                        .map(|a| match a {
                            Value::String(s) => Ok(s.clone()),
                            Value::Number(n) => Ok(n.to_string()),
                            Value::Bool(b) => Ok(b.to_string()),
                            other => Err(format!(
                                "command: {} is not text (each argument must be)",
                                short(other)
                            )),
                        })
                        .collect::<Result<_, _>>()?,
                    None => {
                        return Err(format!(
                            "command: {} is not a list of arguments (write [sh, -c, ./migrate.sh])",
                            short(value)
                        ));
                    }
                }
            }
            _ => {
                return Err(format!(
                    "{}: unknown key of a hook (known: service, command)",
                    short(key)
                ));
            }
        }
    }
    let service = service.ok_or("service: missing (the compose service to run)")?;
    Ok(Hook { service, command })
}

/// A compose service name as compose allows it: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn is_service_name(name: &str) -> bool {
    profile(name).is_ok()
}

fn windows(value: &Value, warnings: &mut Vec<String>) -> Result<Vec<SyncWindow>, Invalid> {
    let at = |e: String| format!("syncWindows{e}");
    let Some(list) = value.as_sequence() else {
        return Err(at(format!(
            ": {} is not a list of windows (write [{{schedule: \"0 2 * * 6\", duration: 2h}}])",
            short(value)
        )));
    };
    if list.len() > MAX_LIST {
        return Err(at(format!(
            ": {} windows, more than the {MAX_LIST} allowed",
            list.len()
        )));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let Some(map) = entry.as_mapping() else {
            return Err(at(format!(
                "[{i}]: {} is not a window (a mapping with schedule and duration)",
                short(entry)
            )));
        };
        let mut schedule = None;
        let mut length = None;
        for (key, value) in map {
            match key.as_str() {
                Some("schedule") => match value.as_str() {
                    Some(text) => schedule = Some(text.to_owned()),
                    None => {
                        return Err(at(format!(
                            "[{i}].schedule: {} is not a cron schedule in quotes, such as \"0 2 * * 6\"",
                            short(value)
                        )));
                    }
                },
                Some("duration") => {
                    length =
                        Some(duration(value, false).map_err(|e| at(format!("[{i}].duration: {e}")))?);
                }
                _ => warnings.push(format!(
                    "syncWindows[{i}].{}: unknown key of a window, ignored (known: schedule, duration)",
                    short(key)
                )),
            }
        }
        let schedule = schedule.ok_or_else(|| at(format!("[{i}].schedule: missing")))?;
        let length = length.ok_or_else(|| at(format!("[{i}].duration: missing")))?;
        let window = SyncWindow::new(&schedule, length).map_err(|e| at(format!("[{i}]: {e}")))?;
        out.push(window);
    }
    Ok(out)
}

/// A value as a message quotes it: short, on one line.
fn short(value: &Value) -> String {
    let text = match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => return kind(other).into(),
    };
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests;
