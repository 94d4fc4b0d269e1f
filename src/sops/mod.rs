//! SOPS documents decrypted with age identities (SPEC §12): [`detect`] tells whether a file of
//! a stack is a SOPS document, [`decrypt`] turns it into what `sops --decrypt` writes, with the
//! MAC verified. Pure: bytes and [`Identities`] in, bytes or a [`SopsError`] out; no files, no
//! environment, no logging.
//!
//! The format is SOPS's own (getsops/sops v3: `sops.go`, `aes/cipher.go`, `stores/`):
//!
//! - **Data key.** 32 random bytes, age-encrypted (ASCII-armored) once per recipient in
//!   `sops.age[].enc` (or in the one group of `sops.key_groups`). Any stanza our identities open
//!   gives the key (`keys`).
//! - **Values.** Every selected leaf is `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`: AES-256-GCM
//!   with a 32-byte nonce (`iv`) and a 16-byte tag, base64; the additional data is the leaf's key
//!   path joined with `:` plus a trailing `:` (`stringData:key:`), list items sharing their
//!   parent's path; `type` is `str`, `int`, `float`, `bool`, `bytes` (or `comment`) (`value`).
//!   An empty string stays an empty string, unencrypted.
//! - **Selection.** At most one of `unencrypted_suffix` (the default, `_unencrypted`),
//!   `encrypted_suffix`, `unencrypted_regex`, `encrypted_regex`, `unencrypted_comment_regex`,
//!   `encrypted_comment_regex`: the suffixes and key regexes are tested against every key of
//!   the leaf's path (a parent key selects all below it), the comment regexes against the
//!   comments above the leaf (`tree::Rules`). Leaves not selected stay in clear text but are in
//!   the MAC, unless `mac_only_encrypted`.
//! - **MAC.** SHA-512 over every leaf in document order as SOPS's `ToBytes` renders it (strings
//!   as they are, ints in decimal, floats in Go's shortest `'f'` form, bools as `True`/`False`;
//!   nulls and comments not at all), only the encrypted leaves after a fixed 32-byte prefix when
//!   `mac_only_encrypted`; upper-case hex, stored encrypted in `sops.mac` with
//!   `sops.lastmodified` (as Go's RFC 3339 renders it) as the additional data (`tree`).
//! - **Stores.** YAML and JSON keep the tree with a top-level `sops` mapping; the binary store is
//!   a JSON envelope `{"data": "ENC[…]", "sops": {…}}` whose decryption is the data itself;
//!   dotenv and INI flatten the metadata into `sops_age__list_0__map_enc=…` lines and a `[sops]`
//!   section, newlines escaped as `\n` (`formats`).
//!
//! What it does not do, and says so in its errors: PGP, cloud KMS and Vault master keys (only
//! age; a file with none is [`SopsError::Unsupported`]), Shamir key groups (more than one group),
//! age plugin and SSH identities, and the comment regexes in YAML files (their comments are not
//! read; everything else in YAML is).
//!
//! Errors name the cause and where (a key path, a recipient), never a value or key material.
//! Uses: [`crate::untrusted`] (key paths and recipients in error messages), nothing else.

mod formats;
mod keys;
mod tree;
mod value;

#[cfg(test)]
mod tests;

use std::fmt;

pub use keys::Identities;

/// The SOPS stores this module reads. Which one a file is decides how it is parsed and how its
/// plaintext is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A YAML document (or several) with a top-level `sops` mapping.
    Yaml,
    /// A JSON object with a top-level `sops` object.
    Json,
    /// SOPS's binary store: a JSON object with exactly `data` (a string) and `sops`; its
    /// plaintext is the decrypted `data` itself.
    Binary,
    /// `KEY=VALUE` lines with `sops_…` metadata lines.
    Dotenv,
    /// An INI file with a `[sops]` section.
    Ini,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
            Format::Binary => "SOPS binary (JSON envelope)",
            Format::Dotenv => "dotenv",
            Format::Ini => "INI",
        })
    }
}

/// Why a SOPS document could not be decrypted. Messages name the cause and the place (a key
/// path, the recipients), never a value, a ciphertext or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SopsError {
    /// [`decrypt`] was given a file [`detect`] does not take for a SOPS document.
    #[error("not a SOPS document")]
    NotSops,
    /// The file is not valid in its format (YAML, JSON, dotenv, INI).
    #[error("cannot be read as {format}: {reason}")]
    Syntax { format: Format, reason: String },
    /// The `sops` metadata is missing something or holds something SOPS itself would refuse.
    #[error("invalid SOPS metadata: {0}")]
    Metadata(String),
    /// The file is valid SOPS but uses something this implementation does not do.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// No age identities are configured.
    #[error(
        "no age identities are configured; give docker-cd the key with SOPS_AGE_KEY_FILE (or SOPS_AGE_KEY)"
    )]
    NoIdentities,
    /// None of the configured identities opens any of the file's age stanzas.
    #[error(
        "wrong key: the file is encrypted for {recipients}, and none of the configured age identities (for {configured}) is one of them"
    )]
    WrongKey {
        /// The file's age recipients, comma-separated.
        recipients: String,
        /// The public keys of the configured identities, comma-separated.
        configured: String,
    },
    /// An age stanza that one of our identities matched could not be decrypted.
    #[error("the data key encrypted for {recipient} is damaged ({cause})")]
    DamagedDataKey {
        recipient: String,
        cause: &'static str,
    },
    /// A value could not be decrypted or decoded.
    #[error("damaged value at {path}: {cause}")]
    DamagedValue { path: String, cause: &'static str },
    /// `sops.mac` itself could not be decrypted.
    #[error(
        "MAC cannot be decrypted: sops.mac is damaged, or sops.lastmodified was changed after encryption"
    )]
    MacDamaged,
    /// The MAC computed over the decrypted document differs from `sops.mac`.
    #[error(
        "MAC mismatch: the file was changed after it was encrypted (a value, a key or their order), or is damaged"
    )]
    MacMismatch,
    /// A line of an age identity text is not an x25519 identity.
    #[error("line {line} is not an age identity (AGE-SECRET-KEY-1…)")]
    InvalidIdentity { line: usize },
    /// A line of an age identity text is a plugin identity.
    #[error("line {line} is an age plugin identity (AGE-PLUGIN-…); plugins are not supported")]
    PluginIdentity { line: usize },
}

/// Is this file a SOPS document, and of which store?
///
/// By content, with the file name (`name`; a path is cut to its last component) deciding where
/// content alone is ambiguous:
///
/// - a name ending in `.env` (`.env`, `app.env`) or starting with `.env.` (`.env.production`):
///   dotenv, if a key starts with `sops_` (SOPS's own test);
/// - `.ini`: INI, if it has a `[sops]` section;
/// - `.json`: JSON, if it is an object with a `sops` object;
/// - `.yaml`, `.yml`: YAML, if a document is a mapping whose `sops` key is a mapping;
/// - any other name, by content alone: an object with a `sops` object is the binary store when
///   its only other key is a string `data` (what SOPS writes for a non-JSON file), JSON
///   otherwise; then YAML as above; then dotenv (every line `KEY=VALUE` or a comment, with a
///   `sops_mac` key); then INI (a `[sops]` section with a `mac`).
///
/// A file that holds `ENC[AES256_GCM,` and a top-level `sops:` line (or a `"sops"` key) but
/// does not parse still counts, so that [`decrypt`] reports the syntax error instead of the
/// ciphertext being deployed as it is.
pub fn detect(name: &str, bytes: &[u8]) -> Option<Format> {
    if !contains(bytes, b"sops") {
        return None;
    }
    let file = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let lower = file.to_ascii_lowercase();
    let detected = if lower.ends_with(".env") || lower.starts_with(".env.") {
        formats::dotenv::is_sops(bytes, false).then_some(Format::Dotenv)
    } else if lower.ends_with(".ini") {
        formats::ini::is_sops(bytes, false).then_some(Format::Ini)
    } else if lower.ends_with(".json") {
        formats::structured::json_kind(bytes).map(|_| Format::Json)
    } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        formats::structured::is_yaml_sops(bytes).then_some(Format::Yaml)
    } else {
        formats::structured::json_kind(bytes)
            .or_else(|| formats::structured::is_yaml_sops(bytes).then_some(Format::Yaml))
            .or_else(|| formats::dotenv::is_sops(bytes, true).then_some(Format::Dotenv))
            .or_else(|| formats::ini::is_sops(bytes, true).then_some(Format::Ini))
    };
    detected.or_else(|| damaged_sops_kind(&lower, bytes))
}

/// For a file that did not parse: a SOPS-looking file's likely format, so it fails loudly.
fn damaged_sops_kind(lower_name: &str, bytes: &[u8]) -> Option<Format> {
    if !contains(bytes, b"ENC[AES256_GCM,") {
        return None;
    }
    let starts_with_brace = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    if starts_with_brace && contains(bytes, b"\"sops\"") {
        return Some(Format::Json);
    }
    let has_sops_line = bytes
        .split(|b| *b == b'\n')
        .any(|line| line.trim_ascii_end() == b"sops:");
    if has_sops_line && !lower_name.ends_with(".env") && !lower_name.ends_with(".ini") {
        return Some(Format::Yaml);
    }
    None
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Decrypts a SOPS document into what `sops --decrypt` would write: the same format (YAML
/// re-rendered with its keys in order, JSON tab-indented, dotenv and INI line by line), or for
/// the binary store the data itself. The MAC is verified before anything is returned.
///
/// The store is the one [`detect`] finds for `name` and `bytes`; [`SopsError::NotSops`] if none.
pub fn decrypt(name: &str, bytes: &[u8], identities: &Identities) -> Result<Vec<u8>, SopsError> {
    let format = detect(name, bytes).ok_or(SopsError::NotSops)?;
    decrypt_as(format, bytes, identities)
}

/// [`decrypt`] with the store given (as [`detect`] returned it).
pub fn decrypt_as(
    format: Format,
    bytes: &[u8],
    identities: &Identities,
) -> Result<Vec<u8>, SopsError> {
    let mut document = formats::parse(format, bytes)?;
    let metadata = tree::Metadata::read(&document.metadata)?;
    if format == Format::Yaml && metadata.rules.needs_comments() {
        return Err(SopsError::Unsupported(
            "unencrypted_comment_regex and encrypted_comment_regex in YAML files (comments are not read)"
                .into(),
        ));
    }
    let data_key = keys::data_key(&metadata, identities)?;
    let computed = tree::decrypt_branches(&mut document.branches, &data_key, &metadata.rules)?;
    tree::verify_mac(&metadata, &data_key, &computed)?;
    formats::render(format, &document.branches)
}
