//! SOPS files of a stack decrypted before the stack is written to disk (SPEC §12).
//!
//! Every regular file of the stack is looked at ([`crate::sops::detect`]: by content, cheap
//! for files that do not mention `sops`); a SOPS document is replaced by its plaintext, which
//! materialisation writes with mode 0600 ([`DECRYPTED`]). Nothing else sees the plaintext: the
//! refresh, the diff and the history read Git's blobs, and errors name the file and the cause,
//! never a value.
//!
//! Adapter layer (shared by the engines). Uses: sops, desired_state (the stack files). Pure.

use crate::desired_state::tree::{MODE_SYMLINK, StackFile};
use crate::sops::{self, Identities, SopsError};

/// The mode a decrypted file gets in the stack's file list: not a Git mode (those are 100644,
/// 100755 and 120000); materialisation writes such a file with mode 0600.
pub const DECRYPTED: u32 = 0o100600;

/// A SOPS file of the stack that cannot be decrypted.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{path} is a SOPS-encrypted file, and no age key is configured (SOPS_AGE_KEY_FILE or SOPS_AGE_KEY)"
    )]
    NoKey { path: String },
    #[error("{path} cannot be decrypted: {source}")]
    Sops {
        path: String,
        #[source]
        source: SopsError,
    },
}

/// Replaces each SOPS file of `files` by its plaintext, marked [`DECRYPTED`]; the paths
/// decrypted, in order. The first file that cannot be decrypted is the error, and no file is
/// half changed by it.
pub fn decrypt(
    files: &mut [StackFile],
    identities: &Identities,
) -> Result<Vec<String>, SecretError> {
    let mut decrypted = Vec::new();
    for file in files.iter_mut().filter(|f| f.mode != MODE_SYMLINK) {
        let name = file.path.rsplit('/').next().unwrap_or(&file.path);
        let Some(format) = sops::detect(name, &file.content) else {
            continue;
        };
        if identities.is_empty() {
            return Err(SecretError::NoKey {
                path: file.path.clone(),
            });
        }
        let plaintext = sops::decrypt_as(format, &file.content, identities).map_err(|source| {
            SecretError::Sops {
                path: file.path.clone(),
                source,
            }
        })?;
        file.content = plaintext;
        file.mode = DECRYPTED;
        decrypted.push(file.path.clone());
    }
    Ok(decrypted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/data/sops/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn key(path: &str) -> Identities {
        Identities::parse(&String::from_utf8(fixture(path)).unwrap()).unwrap()
    }

    fn files() -> Vec<StackFile> {
        vec![
            StackFile {
                path: "compose.yaml".into(),
                mode: 0o100644,
                content: b"services: {app: {image: x, env_file: .env}}\n".to_vec(),
            },
            StackFile {
                path: ".env".into(),
                mode: 0o100644,
                content: fixture("fluxcd-kustomize-controller/env.env"),
            },
            StackFile {
                path: "config/app.yaml".into(),
                mode: 0o100755,
                content: fixture("fluxcd-kustomize-controller/age.yaml"),
            },
        ]
    }

    #[test]
    fn sops_files_are_replaced_by_their_plaintext_and_marked_and_others_are_left() {
        let mut files = files();
        let plain = files[0].clone();
        let done = decrypt(&mut files, &key("fluxcd-kustomize-controller/age.txt")).unwrap();
        assert_eq!(done, [".env", "config/app.yaml"]);
        assert_eq!(files[0], plain);
        assert_eq!(
            files[1].content,
            fixture("fluxcd-kustomize-controller/env.decrypted.env")
        );
        assert_eq!(files[1].mode, DECRYPTED);
        assert_eq!(files[2].mode, DECRYPTED);
        assert!(!String::from_utf8_lossy(&files[2].content).contains("ENC["));
    }

    #[test]
    fn a_wrong_or_missing_key_names_the_file_and_never_a_value() {
        let mut list = files();
        let e = decrypt(&mut list, &Identities::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            ".env is a SOPS-encrypted file, and no age key is configured (SOPS_AGE_KEY_FILE or SOPS_AGE_KEY)"
        );
        let mut files = files();
        let e = decrypt(&mut files, &key("mic92-sops-nix/age-keys.txt")).unwrap_err();
        let text = crate::error_chain(&e);
        assert!(text.starts_with(".env cannot be decrypted: "), "{text}");
        let plaintext =
            String::from_utf8(fixture("fluxcd-kustomize-controller/env.decrypted.env")).unwrap();
        for line in plaintext.lines().filter(|l| !l.is_empty()) {
            let value = line.split_once('=').map_or(line, |(_, v)| v);
            assert!(!text.contains(value), "{text}");
        }
        // Nothing was changed by the failed call.
        assert_eq!(files[1].mode, 0o100644);
    }

    /// `config/app.yaml` changed by `damage`: the stack's error names the file and the cause.
    fn damaged(damage: impl Fn(String) -> String) -> String {
        let mut list = files();
        list.remove(1); // only the YAML file
        let text = String::from_utf8(list[1].content.clone()).unwrap();
        list[1].content = damage(text).into_bytes();
        let e = decrypt(&mut list, &key("fluxcd-kustomize-controller/age.txt")).unwrap_err();
        let text = crate::error_chain(&e);
        assert!(
            text.starts_with("config/app.yaml cannot be decrypted: "),
            "{text}"
        );
        assert!(!text.contains("key: value"), "no plaintext: {text}");
        text
    }

    #[test]
    fn a_flipped_ciphertext_byte_or_a_changed_mac_fails_naming_the_file() {
        // The first character of the first value's ciphertext, flipped.
        let flipped = damaged(|text| {
            let at = text.find("ENC[AES256_GCM,data:").unwrap() + "ENC[AES256_GCM,data:".len();
            let mut bytes = text.into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            String::from_utf8(bytes).unwrap()
        });
        assert!(
            flipped.contains("stringData.key"),
            "the key path: {flipped}"
        );
        let mac = damaged(|text| {
            let at =
                text.find("mac: ENC[AES256_GCM,data:").unwrap() + "mac: ENC[AES256_GCM,data:".len();
            let mut bytes = text.into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            String::from_utf8(bytes).unwrap()
        });
        assert!(mac.to_ascii_lowercase().contains("mac"), "{mac}");
    }
}
