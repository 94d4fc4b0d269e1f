//! The dotenv store (`stores/dotenv/store.go`): the file is split on `\n`; empty lines are
//! skipped; a line starting with `#` is a comment (kept, and decrypted when SOPS encrypted it);
//! any other line is `KEY=VALUE`, split at the first `=`, with no trimming and `\n` in the value
//! read as a newline. Keys starting with `sops_` are the flattened metadata. The plaintext is
//! written back the same way: `KEY=VALUE` and `#comment` lines, newlines as `\n`.

use super::super::tree::{Entry, Node, go_float};
use super::super::{Format, SopsError};
use super::{Document, flat};

const PREFIX: &str = "sops_";

/// Is this a SOPS dotenv file? With a dotenv name, SOPS's test: a key starts with `sops_`.
/// By content alone (`strict`), also: every line is a comment or `KEY=VALUE` with a plain key,
/// and there is a `sops_mac` key.
pub(in super::super) fn is_sops(bytes: &[u8], strict: bool) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let mut has_prefix = false;
    let mut has_mac = false;
    for line in text.split('\n').filter(|line| !line.is_empty()) {
        if line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((key, _)) => {
                has_prefix |= key.starts_with(PREFIX);
                has_mac |= key == "sops_mac";
                let plain_key = !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
                if strict && !plain_key {
                    return false;
                }
            }
            None if strict => return false,
            None => {}
        }
    }
    if strict { has_mac } else { has_prefix }
}

pub(in super::super) fn parse(bytes: &[u8]) -> Result<Document, SopsError> {
    let syntax = |reason: String| SopsError::Syntax {
        format: Format::Dotenv,
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| syntax("not UTF-8".into()))?;
    let mut entries = Vec::new();
    let mut metadata = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            entries.push(Entry::Comment(comment.to_owned()));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(syntax(format!("line {} is not KEY=VALUE", i + 1)));
        };
        match key.strip_prefix(PREFIX) {
            Some(meta_key) => metadata.push((meta_key, value)),
            None => entries.push(Entry::Pair(
                key.to_owned(),
                Node::Str(value.replace("\\n", "\n")),
            )),
        }
    }
    if metadata.is_empty() {
        return Err(SopsError::Metadata("no sops_ metadata lines".into()));
    }
    // SOPS decodes `\n` in every line, then once more in the metadata.
    let decoded: Vec<(&str, String)> = metadata
        .into_iter()
        .map(|(k, v)| (k, v.replace("\\n", "\n")))
        .collect();
    Ok(Document {
        branches: vec![entries],
        metadata: flat::unflatten(decoded.iter().map(|(k, v)| (*k, v.as_str()))),
    })
}

/// `KEY=VALUE` and `#comment` lines, newlines in values written `\n`.
pub(in super::super) fn render(branches: &[Vec<Entry>]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in branches.iter().flatten() {
        match entry {
            Entry::Comment(text) => {
                out.push(b'#');
                out.extend_from_slice(text.as_bytes());
            }
            Entry::Pair(key, value) => {
                out.extend_from_slice(key.as_bytes());
                out.push(b'=');
                let text = match value {
                    Node::Str(s) => s.clone().into_bytes(),
                    Node::Bytes(b) => b.clone(),
                    Node::Int(i) => i.to_string().into_bytes(),
                    Node::Float(f) => go_float(*f).into_bytes(),
                    Node::Bool(b) => b.to_string().into_bytes(),
                    // Not produced by the dotenv parser.
                    Node::Null | Node::Map(_) | Node::List(_) => Vec::new(),
                };
                escape_newlines(&text, &mut out);
            }
        }
        out.push(b'\n');
    }
    out
}

fn escape_newlines(text: &[u8], out: &mut Vec<u8>) {
    for b in text {
        if *b == b'\n' {
            out.extend_from_slice(b"\\n");
        } else {
            out.push(*b);
        }
    }
}
