//! One SOPS value: `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<type>]`, after
//! `aes/cipher.go`. The plaintext is AES-256-GCM of the value's text with a 32-byte nonce (`iv`)
//! and a 16-byte tag, all standard base64 with padding; `type` says how to read it back: `str`,
//! `int` (decimal, `strconv.Atoi`; older SOPS wrote `int64`), `float` (`strconv.ParseFloat`),
//! `bool` (`strconv.ParseBool`), `bytes` (the bytes themselves) or `comment`.

use aes_gcm::AesGcm;
use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead as _, Payload};
use aes_gcm::aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::tree::{Node, go_parse_bool};

/// AES-256-GCM with SOPS's 32-byte nonce (Go's `cipher.NewGCMWithNonceSize(block, 32)`).
pub(super) type Cipher = AesGcm<Aes256, U32>;

/// The nonce size SOPS writes.
const IV_LEN: usize = 32;
/// The GCM tag size.
const TAG_LEN: usize = 16;

/// Why a value could not be decrypted. Carries no part of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ValueError {
    /// Encrypted by the file's rules, but not an `ENC[AES256_GCM,…]` text.
    NotEncrypted,
    /// `ENC[…]` but its base64 or its sizes are wrong.
    Malformed,
    /// AES-GCM refused it: changed ciphertext, iv or tag, moved to another key, or another key.
    Authentication,
    /// The plaintext is not what its `type` says.
    WrongType,
    /// A `type` SOPS does not write.
    UnknownType,
}

impl ValueError {
    /// What to say about it.
    pub(super) fn cause(self) -> &'static str {
        match self {
            ValueError::NotEncrypted => {
                "the rules say it is encrypted, but it is not an ENC[AES256_GCM,…] value"
            }
            ValueError::Malformed => "its ENC[AES256_GCM,…] text is malformed",
            ValueError::Authentication => {
                "authentication failed (ciphertext, iv or tag changed, or the value was moved to another key)"
            }
            ValueError::WrongType => "its plaintext does not match its type",
            ValueError::UnknownType => "unknown value type",
        }
    }
}

/// The parts of an `ENC[…]` text.
struct Sealed<'a> {
    data: &'a str,
    iv: &'a str,
    tag: &'a str,
    kind: &'a str,
}

/// Splits an `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` text; `None` if it is not one.
fn split(text: &str) -> Option<Sealed<'_>> {
    let body = text
        .strip_prefix("ENC[AES256_GCM,data:")?
        .strip_suffix(']')?;
    let (data, rest) = body.split_once(",iv:")?;
    let (iv, rest) = rest.split_once(",tag:")?;
    let (tag, kind) = rest.split_once(",type:")?;
    Some(Sealed {
        data,
        iv,
        tag,
        kind,
    })
}

/// Decrypts the text of an `ENC[…]` value and returns its plaintext bytes and its type.
fn open<'a>(
    cipher: &Cipher,
    text: &'a str,
    additional_data: &str,
) -> Result<(Vec<u8>, &'a str), ValueError> {
    let sealed = split(text).ok_or(ValueError::NotEncrypted)?;
    let decode = |b64: &str| BASE64.decode(b64).map_err(|_| ValueError::Malformed);
    let mut message = decode(sealed.data)?;
    let iv = decode(sealed.iv)?;
    let tag = decode(sealed.tag)?;
    if iv.len() != IV_LEN || tag.len() != TAG_LEN {
        return Err(ValueError::Malformed);
    }
    // Go's GCM `Open` takes the ciphertext with the tag appended; so does RustCrypto's.
    message.extend_from_slice(&tag);
    let plain = cipher
        .decrypt(
            iv.as_slice().into(),
            Payload {
                msg: &message,
                aad: additional_data.as_bytes(),
            },
        )
        .map_err(|_| ValueError::Authentication)?;
    Ok((plain, sealed.kind))
}

/// Decrypts a value and reads it back as its `type` says.
pub(super) fn decrypt(
    cipher: &Cipher,
    text: &str,
    additional_data: &str,
) -> Result<Node, ValueError> {
    let (plain, kind) = open(cipher, text, additional_data)?;
    decode(plain, kind)
}

/// Reads a decrypted plaintext back as `kind` says (`aes/cipher.go`'s `Decrypt`).
pub(super) fn decode(plain: Vec<u8>, kind: &str) -> Result<Node, ValueError> {
    let text = || std::str::from_utf8(&plain).map_err(|_| ValueError::WrongType);
    Ok(match kind {
        "str" => match String::from_utf8(plain) {
            Ok(s) => Node::Str(s),
            // A Go string holds any bytes; keep them.
            Err(e) => Node::Bytes(e.into_bytes()),
        },
        "int" | "int64" => Node::Int(text()?.parse().map_err(|_| ValueError::WrongType)?),
        "float" => Node::Float(text()?.parse().map_err(|_| ValueError::WrongType)?),
        "bool" => Node::Bool(go_parse_bool(text()?).ok_or(ValueError::WrongType)?),
        "bytes" => Node::Bytes(plain),
        // A comment's type where a value belongs: SOPS would turn the value into a comment.
        "comment" => return Err(ValueError::WrongType),
        _ => return Err(ValueError::UnknownType),
    })
}

/// Decrypts an encrypted comment (`type:comment`, or any text type).
pub(super) fn decrypt_comment(
    cipher: &Cipher,
    text: &str,
    additional_data: &str,
) -> Result<String, ValueError> {
    let (plain, kind) = open(cipher, text, additional_data)?;
    match kind {
        "comment" | "str" => String::from_utf8(plain).map_err(|_| ValueError::WrongType),
        _ => Err(ValueError::WrongType),
    }
}

/// Encrypts like SOPS's `Cipher.Encrypt`, for the tests' own documents (the fixtures come from
/// the real SOPS). The nonce is given: tests need no randomness.
#[cfg(test)]
pub(super) fn seal(
    cipher: &Cipher,
    plain: &[u8],
    kind: &str,
    additional_data: &str,
    iv: [u8; IV_LEN],
) -> String {
    let out = cipher
        .encrypt(
            (&iv).into(),
            Payload {
                msg: plain,
                aad: additional_data.as_bytes(),
            },
        )
        .expect("AES-GCM encryption does not fail for small inputs");
    let (data, tag) = out.split_at(out.len() - TAG_LEN);
    format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
        BASE64.encode(data),
        BASE64.encode(iv),
        BASE64.encode(tag)
    )
}
