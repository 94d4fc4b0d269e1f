//! SOPS's stores (`stores/`): each format read into [`Document`] (branches of [`Entry`]s plus
//! the `sops` metadata as a [`Node`]) and the decrypted branches written back.
//!
//! | part | reads and writes |
//! |---|---|
//! | `structured` | YAML (every document of the file), JSON, and the binary store's JSON envelope |
//! | `dotenv` | `KEY=VALUE` lines, `#` comments, `sops_…` metadata lines |
//! | `ini` | sections, `key = value`, `;`/`#` comments, a `[sops]` metadata section |
//! | `flat` | the flattened metadata of dotenv and INI (`age__list_0__map_enc`) |

pub(super) mod dotenv;
mod flat;
pub(super) mod ini;
pub(super) mod structured;

use super::tree::{Entry, Node};
use super::{Format, SopsError};

/// A SOPS document split into its data and its metadata.
#[derive(Debug)]
pub(super) struct Document {
    /// One branch per YAML document (one for every other format), `sops` removed.
    pub branches: Vec<Vec<Entry>>,
    /// The `sops` mapping (unflattened for dotenv and INI).
    pub metadata: Node,
}

pub(super) fn parse(format: Format, bytes: &[u8]) -> Result<Document, SopsError> {
    match format {
        Format::Yaml => structured::parse_yaml(bytes),
        Format::Json | Format::Binary => structured::parse_json(format, bytes),
        Format::Dotenv => dotenv::parse(bytes),
        Format::Ini => ini::parse(bytes),
    }
}

pub(super) fn render(format: Format, branches: &[Vec<Entry>]) -> Result<Vec<u8>, SopsError> {
    match format {
        Format::Yaml => structured::render_yaml(branches),
        Format::Json => structured::render_json(branches),
        Format::Binary => structured::render_binary(branches),
        Format::Dotenv => Ok(dotenv::render(branches)),
        Format::Ini => Ok(ini::render(branches)),
    }
}

/// Takes the top-level `sops` entries out of the first branch (and drops them from the others,
/// as SOPS's `ExtractMetadata` does); the first one is the metadata, a second in the first
/// branch is an error.
fn extract_metadata(branches: &mut [Vec<Entry>], format: Format) -> Result<Node, SopsError> {
    let mut metadata = None;
    for (i, branch) in branches.iter_mut().enumerate() {
        let mut kept = Vec::with_capacity(branch.len());
        for entry in branch.drain(..) {
            match entry {
                Entry::Pair(key, node) if key == "sops" => {
                    if i == 0 {
                        if metadata.is_some() {
                            return Err(SopsError::Syntax {
                                format,
                                reason: "more than one sops key".into(),
                            });
                        }
                        metadata = Some(node);
                    }
                }
                entry => kept.push(entry),
            }
        }
        *branch = kept;
    }
    metadata.ok_or_else(|| SopsError::Metadata("no sops metadata".into()))
}
