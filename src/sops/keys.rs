//! Age identities ([`Identities`]) and the document's data key ([`data_key`]): SOPS encrypts its
//! 32-byte data key with age once per recipient and stores the ASCII-armored result in
//! `sops.age[].enc` (`age/keysource.go`); any stanza one of our identities opens gives the key.

use std::fmt;
use std::io::Read as _;

use age::armor::ArmoredReader;
use age::secrecy::{ExposeSecret as _, ExposeSecretMut as _, SecretBox};
use age::x25519;

use super::SopsError;
use super::tree::Metadata;
use crate::untrusted::sanitize;

/// Age x25519 identities (secret keys) to decrypt with. `Debug` shows their public keys only.
#[derive(Clone, Default)]
pub struct Identities(Vec<x25519::Identity>);

impl Identities {
    /// Parses an age identity file (what `age-keygen` writes, and what `SOPS_AGE_KEY_FILE` and
    /// `SOPS_AGE_KEY` hold): one `AGE-SECRET-KEY-1…` per line; empty lines and lines starting
    /// with `#` are skipped; surrounding whitespace (a `\r`, an indent) is ignored. Errors name
    /// the line, never its content. An empty text gives an empty set ([`Identities::is_empty`]).
    pub fn parse(text: &str) -> Result<Self, SopsError> {
        let mut identities = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.parse::<x25519::Identity>() {
                Ok(identity) => identities.push(identity),
                Err(_) if line.starts_with("AGE-PLUGIN-") => {
                    return Err(SopsError::PluginIdentity { line: i + 1 });
                }
                Err(_) => return Err(SopsError::InvalidIdentity { line: i + 1 }),
            }
        }
        Ok(Self(identities))
    }

    /// These identities followed by `other`'s (SOPS uses every key it is given).
    pub fn merged(mut self, other: Identities) -> Self {
        self.0.extend(other.0);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The public keys (`age1…`) of these identities, in order. Public: safe to show.
    pub fn recipients(&self) -> Vec<String> {
        self.0.iter().map(|i| i.to_public().to_string()).collect()
    }
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identities")
            .field("recipients", &self.recipients())
            .finish()
    }
}

/// A document's 32-byte data key, wiped from memory when dropped.
pub(super) struct DataKey(SecretBox<[u8; 32]>);

impl DataKey {
    pub(super) fn expose(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

/// Opens the data key from the file's age stanzas, trying each (in file order) with all
/// identities.
pub(super) fn data_key(metadata: &Metadata, identities: &Identities) -> Result<DataKey, SopsError> {
    if metadata.age.is_empty() {
        let kinds = if metadata.other_kinds.is_empty() {
            "no master key".to_owned()
        } else {
            sanitize(&metadata.other_kinds.join(", "), 128)
        };
        return Err(SopsError::Unsupported(format!(
            "the file is encrypted only for {kinds} (no age recipient); docker-cd decrypts with age keys only"
        )));
    }
    if identities.is_empty() {
        return Err(SopsError::NoIdentities);
    }
    let mut damaged = None;
    for stanza in &metadata.age {
        match open_stanza(&stanza.enc, identities) {
            Ok(key) => return Ok(key),
            Err(Opened::NotOurs) => {}
            Err(Opened::Damaged(cause)) => {
                damaged.get_or_insert((stanza.recipient.as_str(), cause));
            }
        }
    }
    if let Some((recipient, cause)) = damaged {
        return Err(SopsError::DamagedDataKey {
            recipient: sanitize(recipient, 128),
            cause,
        });
    }
    let recipients: Vec<_> = metadata.age.iter().map(|s| s.recipient.as_str()).collect();
    Err(SopsError::WrongKey {
        recipients: sanitize(&recipients.join(", "), 1024),
        configured: identities.recipients().join(", "),
    })
}

/// Why one stanza gave no key.
enum Opened {
    /// None of our identities is its recipient.
    NotOurs,
    /// It is not a valid age file, or it decrypts to something that is not a data key.
    Damaged(&'static str),
}

fn open_stanza(armored: &str, identities: &Identities) -> Result<DataKey, Opened> {
    let decryptor = age::Decryptor::new_buffered(ArmoredReader::new(armored.as_bytes()))
        .map_err(|_| Opened::Damaged("not a valid age file"))?;
    let mut reader = decryptor
        .decrypt(identities.0.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => Opened::NotOurs,
            _ => Opened::Damaged("age decryption failed"),
        })?;
    // A data key is 32 bytes; read one byte more to tell a longer plaintext.
    let mut key = SecretBox::new(Box::new([0u8; 32]));
    let mut extra = [0u8; 1];
    let read_ok = reader.read_exact(key.expose_secret_mut()).is_ok();
    if !read_ok || !matches!(reader.read(&mut extra), Ok(0)) {
        return Err(Opened::Damaged(
            "its payload is damaged or not a 32-byte data key",
        ));
    }
    Ok(DataKey(key))
}
