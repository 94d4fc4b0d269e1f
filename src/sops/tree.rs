//! SOPS's tree and what is done to it: the [`Node`]s every store is read into, the `sops`
//! [`Metadata`], the selection [`Rules`], the walk that decrypts the selected leaves while it
//! feeds the MAC ([`decrypt_branches`], after `sops.go`'s `Tree.Decrypt`), and the MAC check
//! ([`verify_mac`], after `cmd/sops/common`'s `DecryptTree`).

use std::fmt::Write as _;

use aes_gcm::aead::KeyInit as _;
use regex::Regex;
use sha2::{Digest as _, Sha512};
use subtle::ConstantTimeEq as _;

use super::SopsError;
use super::keys::DataKey;
use super::value::{self, Cipher, ValueError};
use crate::untrusted::sanitize;

/// A value of a document, as SOPS's tree holds it (`TreeBranch`, `[]interface{}`, scalars).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    /// A mapping, its entries in document order.
    Map(Vec<Entry>),
    List(Vec<Node>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A decrypted `type:bytes` value, or a `str` whose plaintext is not UTF-8.
    Bytes(Vec<u8>),
    Null,
}

/// One item of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Entry {
    Pair(String, Node),
    /// A comment line (dotenv and INI keep theirs; SOPS encrypts comments by default).
    Comment(String),
}

impl Node {
    /// The value of `key` in a mapping.
    pub(super) fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find_map(|entry| match entry {
                Entry::Pair(k, v) if k == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// What SOPS's `ToBytes` makes of a leaf for the MAC.
pub(super) fn mac_bytes(node: &Node) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    match node {
        Node::Str(s) => Cow::Borrowed(s.as_bytes()),
        Node::Bytes(b) => Cow::Borrowed(b),
        Node::Int(i) => Cow::Owned(i.to_string().into_bytes()),
        Node::Float(f) => Cow::Owned(go_float(*f).into_bytes()),
        // Python SOPS wrote `True`/`False`; Go SOPS kept it for the MAC.
        Node::Bool(true) => Cow::Borrowed(b"True"),
        Node::Bool(false) => Cow::Borrowed(b"False"),
        Node::Map(_) | Node::List(_) | Node::Null => Cow::Borrowed(b""),
    }
}

/// A float as Go's `strconv.FormatFloat(f, 'f', -1, 64)` writes it: the shortest decimal that
/// reads back as the same float, never an exponent (`1000`, `0.5`, `1e21` as 22 digits).
/// Rust's `Display` for `f64` is that same shortest, exponent-free form; only the non-finite
/// values are spelt differently.
pub(super) fn go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{f}")
    }
}

/// Which leaves are encrypted: SOPS's `shouldBeEncrypted`. SOPS refuses files with more than
/// one rule and defaults to `unencrypted_suffix: _unencrypted` when none is set
/// (`stores.Metadata.ToInternal`), so there is exactly one.
#[derive(Debug, Clone)]
pub(super) struct Rules {
    selector: Selector,
    /// Only encrypted leaves are in the MAC, after [`MAC_ONLY_ENCRYPTED_PREFIX`].
    pub mac_only_encrypted: bool,
}

#[derive(Debug, Clone)]
enum Selector {
    /// Leaves under a key ending in this are clear text.
    UnencryptedSuffix(String),
    /// Only leaves under a key ending in this are encrypted.
    EncryptedSuffix(String),
    /// Leaves under a key matching this are clear text.
    UnencryptedRegex(Regex),
    /// Only leaves under a key matching this are encrypted.
    EncryptedRegex(Regex),
    /// Leaves after a comment matching this are clear text.
    UnencryptedCommentRegex(Regex),
    /// Only leaves after a comment matching this are encrypted.
    EncryptedCommentRegex(Regex),
}

/// SOPS's `MACOnlyEncryptedInitialization`: SHA-256 of `sops`, hashed first when
/// `mac_only_encrypted` is set, so the two kinds of MAC never coincide.
pub(super) const MAC_ONLY_ENCRYPTED_PREFIX: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// SOPS's default rule when a file names none.
const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";

impl Rules {
    /// Does a comment regex decide? Those need the file's comments.
    pub(super) fn needs_comments(&self) -> bool {
        matches!(
            self.selector,
            Selector::UnencryptedCommentRegex(_) | Selector::EncryptedCommentRegex(_)
        )
    }

    /// Is the leaf at `path` (its mapping keys from the root) encrypted? `comments` holds, per
    /// nesting level, the comments seen since the level's last non-comment item; `is_comment`
    /// says the leaf is itself the last of them.
    pub(super) fn is_encrypted(
        &self,
        path: &[String],
        comments: &[Vec<String>],
        is_comment: bool,
    ) -> bool {
        match &self.selector {
            Selector::UnencryptedSuffix(suffix) => !path.iter().any(|k| k.ends_with(suffix)),
            Selector::EncryptedSuffix(suffix) => path.iter().any(|k| k.ends_with(suffix)),
            Selector::UnencryptedRegex(re) => !path.iter().any(|k| re.is_match(k)),
            Selector::EncryptedRegex(re) => path.iter().any(|k| re.is_match(k)),
            Selector::UnencryptedCommentRegex(re) => {
                !comments.iter().flatten().any(|c| re.is_match(c))
            }
            Selector::EncryptedCommentRegex(re) => {
                // SOPS skips the comment itself: the line that matches is the marker and stays
                // in clear text; only what follows it is encrypted.
                let last_level = comments.len().saturating_sub(1);
                comments.iter().enumerate().any(|(i, level)| {
                    level.iter().enumerate().any(|(j, c)| {
                        let is_self = is_comment && i == last_level && j + 1 == level.len();
                        !is_self && re.is_match(c)
                    })
                })
            }
        }
    }
}

/// The `sops` metadata this module uses.
#[derive(Debug, Clone)]
pub(super) struct Metadata {
    /// Age stanzas of the one key group, in file order.
    pub age: Vec<AgeStanza>,
    /// The other kinds of master keys in the file (`pgp`, `kms`, …), for error messages.
    pub other_kinds: Vec<String>,
    /// `sops.lastmodified`, as written.
    pub last_modified: String,
    /// `sops.mac`, an `ENC[…]` value.
    pub mac: String,
    pub rules: Rules,
}

/// One `sops.age[]` entry.
#[derive(Debug, Clone)]
pub(super) struct AgeStanza {
    pub recipient: String,
    /// The ASCII-armored age file holding the data key.
    pub enc: String,
}

/// Metadata keys that are not master-key lists.
const NOT_MASTER_KEYS: &[&str] = &[
    "key_groups",
    "shamir_threshold",
    "lastmodified",
    "mac",
    "unencrypted_suffix",
    "encrypted_suffix",
    "unencrypted_regex",
    "encrypted_regex",
    "unencrypted_comment_regex",
    "encrypted_comment_regex",
    "mac_only_encrypted",
    "version",
];

impl Metadata {
    /// Reads the `sops` mapping, as `stores.Metadata.ToInternal` does: one key group (the
    /// top-level master-key lists, or the only entry of `key_groups`), `lastmodified` and `mac`,
    /// and exactly one selection rule.
    pub(super) fn read(sops: &Node) -> Result<Self, SopsError> {
        let invalid = |what: &str| SopsError::Metadata(what.to_owned());
        if !matches!(sops, Node::Map(_)) {
            return Err(invalid("sops is not a mapping"));
        }
        let text = |key: &str| -> Result<Option<String>, SopsError> {
            match sops.get(key) {
                None | Some(Node::Null) => Ok(None),
                Some(Node::Str(s)) => Ok(Some(s.clone())),
                Some(_) => Err(SopsError::Metadata(format!("sops.{key} is not a string"))),
            }
        };
        let last_modified =
            text("lastmodified")?.ok_or_else(|| invalid("sops.lastmodified is missing"))?;
        let mac = text("mac")?.ok_or_else(|| invalid("sops.mac is missing"))?;

        let top_level_kinds = master_key_kinds(sops);
        let group = if !top_level_kinds.is_empty() {
            sops
        } else {
            match sops.get("key_groups") {
                Some(Node::List(groups)) if groups.len() == 1 => &groups[0],
                Some(Node::List(groups)) if groups.len() > 1 => {
                    return Err(SopsError::Unsupported(format!(
                        "{} key groups (Shamir secret sharing); only files with one key group can be decrypted",
                        groups.len()
                    )));
                }
                _ => return Err(invalid("no master keys (sops.age, sops.key_groups, …)")),
            }
        };
        let mut age = Vec::new();
        if let Some(Node::List(stanzas)) = group.get("age") {
            for stanza in stanzas {
                let field = |key: &str| stanza.get(key).and_then(Node::as_str).map(str::to_owned);
                let (Some(recipient), Some(enc)) = (field("recipient"), field("enc")) else {
                    return Err(invalid("an entry of sops.age lacks recipient or enc"));
                };
                age.push(AgeStanza { recipient, enc });
            }
        }
        let other_kinds = master_key_kinds(group)
            .into_iter()
            .filter(|kind| kind != "age")
            .collect();

        Ok(Self {
            age,
            other_kinds,
            last_modified,
            mac,
            rules: read_rules(sops)?,
        })
    }
}

/// The names of the non-empty master-key lists of a metadata mapping or key group.
fn master_key_kinds(group: &Node) -> Vec<String> {
    let Node::Map(entries) = group else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| match entry {
            Entry::Pair(key, Node::List(keys))
                if !keys.is_empty() && !NOT_MASTER_KEYS.contains(&key.as_str()) =>
            {
                Some(key.clone())
            }
            _ => None,
        })
        .collect()
}

fn read_rules(sops: &Node) -> Result<Rules, SopsError> {
    let mut rules = Vec::new();
    for key in [
        "unencrypted_suffix",
        "encrypted_suffix",
        "unencrypted_regex",
        "encrypted_regex",
        "unencrypted_comment_regex",
        "encrypted_comment_regex",
    ] {
        match sops.get(key) {
            None | Some(Node::Null) => {}
            Some(Node::Str(s)) if s.is_empty() => {}
            Some(Node::Str(s)) => rules.push((key, s.as_str())),
            Some(_) => return Err(SopsError::Metadata(format!("sops.{key} is not a string"))),
        }
    }
    if rules.len() > 1 {
        let names: Vec<_> = rules.iter().map(|(key, _)| *key).collect();
        return Err(SopsError::Metadata(format!(
            "more than one selection rule ({}); SOPS allows one",
            names.join(", ")
        )));
    }
    let regex = |key: &str, pattern: &str| {
        Regex::new(pattern).map_err(|_| {
            SopsError::Metadata(format!("sops.{key} is not a valid regular expression"))
        })
    };
    let selector = match rules.first() {
        None => Selector::UnencryptedSuffix(DEFAULT_UNENCRYPTED_SUFFIX.into()),
        Some((key, pattern)) => match *key {
            "unencrypted_suffix" => Selector::UnencryptedSuffix((*pattern).into()),
            "encrypted_suffix" => Selector::EncryptedSuffix((*pattern).into()),
            "unencrypted_regex" => Selector::UnencryptedRegex(regex(key, pattern)?),
            "encrypted_regex" => Selector::EncryptedRegex(regex(key, pattern)?),
            "unencrypted_comment_regex" => Selector::UnencryptedCommentRegex(regex(key, pattern)?),
            _ => Selector::EncryptedCommentRegex(regex(key, pattern)?),
        },
    };
    // mapstructure's weak typing: dotenv and INI carry the flag as the text `true`.
    let mac_only_encrypted = match sops.get("mac_only_encrypted") {
        None | Some(Node::Null) => false,
        Some(Node::Bool(b)) => *b,
        Some(Node::Str(s)) => match go_parse_bool(s) {
            Some(b) => b,
            None => {
                return Err(SopsError::Metadata(
                    "sops.mac_only_encrypted is not a boolean".into(),
                ));
            }
        },
        Some(_) => {
            return Err(SopsError::Metadata(
                "sops.mac_only_encrypted is not a boolean".into(),
            ));
        }
    };
    Ok(Rules {
        selector,
        mac_only_encrypted,
    })
}

/// Go's `strconv.ParseBool`.
pub(super) fn go_parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// One step of a leaf's path, for its additional data (keys only) and for error messages
/// (keys and list positions).
enum Step {
    Key(String),
    Index(usize),
}

/// The state of SOPS's tree walk while decrypting.
struct Walk<'a> {
    cipher: &'a Cipher,
    rules: &'a Rules,
    mac: Sha512,
    /// Mapping keys from the root to the current node.
    keys: Vec<String>,
    /// `keys` with list positions, for messages.
    steps: Vec<Step>,
    /// Per nesting level, the comments since the level's last non-comment item (SOPS's
    /// `commentsStack`), as they are in the file.
    comments: Vec<Vec<String>>,
}

/// Decrypts every selected leaf of every branch (YAML document) in place and returns the MAC
/// over the result: SOPS's `Tree.Decrypt`. Comments are decrypted too when selected (and kept
/// as they are when they turn out not to be `ENC[…]`, as SOPS does); they are never in the MAC.
pub(super) fn decrypt_branches(
    branches: &mut [Vec<Entry>],
    data_key: &DataKey,
    rules: &Rules,
) -> Result<String, SopsError> {
    let cipher = Cipher::new(data_key.expose().into());
    let mut walk = Walk {
        cipher: &cipher,
        rules,
        mac: Sha512::new(),
        keys: Vec::new(),
        steps: Vec::new(),
        comments: Vec::new(),
    };
    if rules.mac_only_encrypted {
        walk.mac.update(MAC_ONLY_ENCRYPTED_PREFIX);
    }
    for branch in branches {
        walk.map(branch)?;
    }
    Ok(hex_upper(&walk.mac.finalize()))
}

impl Walk<'_> {
    fn map(&mut self, entries: &mut [Entry]) -> Result<(), SopsError> {
        self.comments.push(Vec::new());
        for entry in entries {
            match entry {
                Entry::Comment(text) => {
                    self.level().push(text.clone());
                    if self.rules.is_encrypted(&self.keys, &self.comments, true) {
                        let aad = additional_data(&self.keys);
                        // Not ENC[…] (written in clear by an older SOPS, or a marker): kept.
                        if let Ok(plain) = value::decrypt_comment(self.cipher, text, &aad) {
                            *text = plain;
                        }
                    }
                }
                Entry::Pair(key, node) => {
                    self.keys.push(key.clone());
                    self.steps.push(Step::Key(key.clone()));
                    self.value(node)?;
                    self.keys.pop();
                    self.steps.pop();
                    self.level().clear();
                }
            }
        }
        self.comments.pop();
        Ok(())
    }

    fn list(&mut self, items: &mut [Node]) -> Result<(), SopsError> {
        self.comments.push(Vec::new());
        for (i, item) in items.iter_mut().enumerate() {
            self.steps.push(Step::Index(i));
            self.value(item)?;
            self.steps.pop();
            self.level().clear();
        }
        self.comments.pop();
        Ok(())
    }

    fn value(&mut self, node: &mut Node) -> Result<(), SopsError> {
        match node {
            Node::Map(entries) => self.map(entries),
            Node::List(items) => self.list(items),
            // SOPS's walk passes nulls by: neither decrypted nor in the MAC.
            Node::Null => Ok(()),
            leaf => self.leaf(leaf),
        }
    }

    fn leaf(&mut self, node: &mut Node) -> Result<(), SopsError> {
        let encrypted = self.rules.is_encrypted(&self.keys, &self.comments, false);
        if encrypted {
            *node = match node {
                // SOPS leaves empty strings as they are, unencrypted.
                Node::Str(s) if s.is_empty() => Node::Str(String::new()),
                Node::Str(sealed) => {
                    value::decrypt(self.cipher, sealed, &additional_data(&self.keys))
                        .map_err(|e| self.damaged(e))?
                }
                _ => return Err(self.damaged(ValueError::NotEncrypted)),
            };
        }
        if !self.rules.mac_only_encrypted || encrypted {
            self.mac.update(mac_bytes(node));
        }
        Ok(())
    }

    fn level(&mut self) -> &mut Vec<String> {
        // `map` and `list` push a level before visiting anything under it.
        let last = self.comments.len() - 1;
        &mut self.comments[last]
    }

    fn damaged(&self, error: ValueError) -> SopsError {
        SopsError::DamagedValue {
            path: display_path(&self.steps),
            cause: error.cause(),
        }
    }
}

/// SOPS's additional data for a value: its keys joined with `:`, plus a trailing `:`.
fn additional_data(keys: &[String]) -> String {
    let mut aad = keys.join(":");
    aad.push(':');
    aad
}

/// A leaf's place for people: `stringData.key`, `a_list[1]`; keys made safe to print.
fn display_path(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&sanitize(key, 64));
            }
            Step::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
        }
    }
    if out.is_empty() {
        out.push_str("(top level)");
    }
    out
}

fn hex_upper(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02X}");
    }
    out
}

/// Compares `computed` with `sops.mac`, decrypted with `sops.lastmodified` (as Go's RFC 3339
/// format renders the parsed time) as its additional data. Constant-time, like SOPS's
/// `decrypt` package.
pub(super) fn verify_mac(
    metadata: &Metadata,
    data_key: &DataKey,
    computed: &str,
) -> Result<(), SopsError> {
    let aad = go_rfc3339(&metadata.last_modified).ok_or_else(|| {
        SopsError::Metadata("sops.lastmodified is not an RFC 3339 date-time".into())
    })?;
    if metadata.mac.is_empty() {
        // SOPS decrypts an empty value to an empty one: "no MAC", which never matches.
        return Err(SopsError::MacMismatch);
    }
    let cipher = Cipher::new(data_key.expose().into());
    let Ok(Node::Str(stored)) = value::decrypt(&cipher, &metadata.mac, &aad) else {
        return Err(SopsError::MacDamaged);
    };
    if stored.as_bytes().ct_eq(computed.as_bytes()).into() {
        Ok(())
    } else {
        Err(SopsError::MacMismatch)
    }
}

/// `time.Parse(time.RFC3339, s)` followed by `Format(time.RFC3339)`, as SOPS does with
/// `lastmodified` before using it as the MAC's additional data: fractional seconds are
/// dropped and a zero offset is written `Z`. `None` when Go would not parse it.
pub(super) fn go_rfc3339(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range.clone())
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let date_time_ok = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !date_time_ok {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if end == 0 {
            return None;
        }
        rest = &fraction[end..];
    }
    let zone = match rest {
        "Z" => "Z".to_owned(),
        _ => {
            let z = rest.as_bytes();
            let offset_ok = z.len() == 6
                && (z[0] == b'+' || z[0] == b'-')
                && z[1..3].iter().all(u8::is_ascii_digit)
                && z[3] == b':'
                && z[4..6].iter().all(u8::is_ascii_digit);
            if !offset_ok {
                return None;
            }
            if &rest[1..] == "00:00" {
                "Z".to_owned()
            } else {
                rest.to_owned()
            }
        }
    };
    Some(format!("{}{zone}", &s[..19]))
}
