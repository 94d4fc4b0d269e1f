//! YAML, JSON and the binary store (`stores/yaml`, `stores/json`). Both parsers deserialize
//! into [`Node`] with one serde visitor, which keeps mapping keys in document order (the MAC
//! depends on it) and refuses what SOPS refuses: non-string keys, duplicate keys, a top level
//! that is not a mapping. YAML aliases are resolved by `yaml_serde`; `<<` stays an ordinary key,
//! as it does in SOPS (yaml.v3 nodes).
//!
//! Numbers follow the Go stores: a JSON integer that fits in 64 bits is an int, any other
//! number a float; YAML scalars are typed by `yaml_serde`'s YAML 1.2 resolver, like yaml.v3's
//! for the usual forms (`5`, `0x1f`, `0o17`, `1.5`, `1e3`, `.inf`, `true`, `null`). Two forms
//! differ: yaml.v3 reads a plain `0777` as octal and `1_000` as 1000, `yaml_serde` both as
//! strings. Encrypted values carry their own type and are not affected; a clear-text value
//! written that way is in the MAC as SOPS rendered it, so such a file fails the MAC check here
//! (refused, never decrypted wrongly). YAML comments are not read: they are never in the MAC,
//! and the plaintext is written without them. JSON is written with serde_json's string
//! escaping (Go's also escapes `<`, `>`, `&`): the same JSON, not always the same bytes.

use std::collections::HashSet;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize as _;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::super::tree::{Entry, Node};
use super::super::{Format, SopsError};
use super::{Document, extract_metadata};
use crate::untrusted::sanitize;

impl<'de> de::Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping, a sequence or a scalar")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        // SOPS's JSON store: an integer outside int64 is a float.
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        let mut seen = HashSet::new();
        while let Some(Key(key)) = map.next_key::<Key>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {:?}",
                    sanitize(&key, 64)
                )));
            }
            let value = map.next_value::<Node>()?;
            entries.push(Entry::Pair(key, value));
        }
        Ok(Node::Map(entries))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Node, A::Error> {
        Err(de::Error::custom("YAML tags (!tag) are not supported"))
    }
}

/// A mapping key: SOPS walks only string keys (`Tree contains a non-string key`).
struct Key(String);

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Node::deserialize(deserializer)? {
            Node::Str(key) => Ok(Key(key)),
            _ => Err(de::Error::custom(
                "a mapping key is not a string (SOPS supports string keys only)",
            )),
        }
    }
}

/// The entries of a top-level mapping; SOPS refuses any other top level.
fn top_level(node: Node, format: Format) -> Result<Vec<Entry>, SopsError> {
    match node {
        Node::Map(entries) => Ok(entries),
        // An empty YAML document (`---` alone) is an empty branch.
        Node::Null if format == Format::Yaml => Ok(Vec::new()),
        _ => Err(SopsError::Syntax {
            format,
            reason: "the top level is not a mapping".into(),
        }),
    }
}

fn syntax(format: Format, error: impl fmt::Display) -> SopsError {
    SopsError::Syntax {
        format,
        reason: sanitize(&error.to_string(), 256),
    }
}

/// Every document of a YAML file.
fn yaml_documents(bytes: &[u8]) -> Result<Vec<Node>, SopsError> {
    yaml_serde::Deserializer::from_slice(bytes)
        .map(|document| Node::deserialize(document).map_err(|e| syntax(Format::Yaml, e)))
        .collect()
}

pub(in super::super) fn parse_yaml(bytes: &[u8]) -> Result<Document, SopsError> {
    let mut branches = yaml_documents(bytes)?
        .into_iter()
        .map(|node| top_level(node, Format::Yaml))
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = extract_metadata(&mut branches, Format::Yaml)?;
    Ok(Document { branches, metadata })
}

pub(in super::super) fn parse_json(format: Format, bytes: &[u8]) -> Result<Document, SopsError> {
    let node: Node = serde_json::from_slice(bytes).map_err(|e| syntax(format, e))?;
    let mut branches = vec![top_level(node, format)?];
    let metadata = extract_metadata(&mut branches, format)?;
    Ok(Document { branches, metadata })
}

/// Does the first YAML document have a `sops` mapping? (SOPS reads the metadata there.)
pub(in super::super) fn is_yaml_sops(bytes: &[u8]) -> bool {
    let Some(document) = yaml_serde::Deserializer::from_slice(bytes).next() else {
        return false;
    };
    Node::deserialize(document).is_ok_and(|node| matches!(node.get("sops"), Some(Node::Map(_))))
}

/// A JSON object with a `sops` object: the binary store's envelope (only `data`, a string,
/// besides `sops`) or a JSON document.
pub(in super::super) fn json_kind(bytes: &[u8]) -> Option<Format> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    let node: Node = serde_json::from_slice(bytes).ok()?;
    let Node::Map(entries) = &node else {
        return None;
    };
    if !matches!(node.get("sops"), Some(Node::Map(_))) {
        return None;
    }
    let is_envelope = entries.len() == 2 && matches!(node.get("data"), Some(Node::Str(_)));
    Some(if is_envelope {
        Format::Binary
    } else {
        Format::Json
    })
}

/// The YAML of the decrypted documents, `---` between them (yaml.v3's encoder does the same).
/// Keys keep their order; indentation and quoting are `yaml_serde`'s, not yaml.v3's.
pub(in super::super) fn render_yaml(branches: &[Vec<Entry>]) -> Result<Vec<u8>, SopsError> {
    let mut out = String::new();
    for (i, branch) in branches.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let text =
            yaml_serde::to_string(&yaml_mapping(branch)).map_err(|e| syntax(Format::Yaml, e))?;
        out.push_str(&text);
    }
    Ok(out.into_bytes())
}

fn yaml_mapping(entries: &[Entry]) -> yaml_serde::Value {
    let mut mapping = yaml_serde::Mapping::new();
    for entry in entries {
        if let Entry::Pair(key, value) = entry {
            mapping.insert(yaml_serde::Value::String(key.clone()), yaml_value(value));
        }
    }
    yaml_serde::Value::Mapping(mapping)
}

fn yaml_value(node: &Node) -> yaml_serde::Value {
    use yaml_serde::Value;
    match node {
        Node::Map(entries) => yaml_mapping(entries),
        Node::List(items) => Value::Sequence(items.iter().map(yaml_value).collect()),
        Node::Str(s) => Value::String(s.clone()),
        Node::Int(i) => Value::Number((*i).into()),
        Node::Float(f) => Value::Number((*f).into()),
        Node::Bool(b) => Value::Bool(*b),
        Node::Null => Value::Null,
        // yaml.v3 writes bytes that are not UTF-8 as `!!binary` base64.
        Node::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => Value::String(s.to_owned()),
            Err(_) => Value::Tagged(Box::new(yaml_serde::value::TaggedValue {
                tag: yaml_serde::value::Tag::new("!binary"),
                value: Value::String(BASE64.encode(b)),
            })),
        },
    }
}

/// The JSON of the decrypted document as SOPS writes it: `json.Indent` with a tab, `"key":
/// value`, a final newline.
pub(in super::super) fn render_json(branches: &[Vec<Entry>]) -> Result<Vec<u8>, SopsError> {
    let mut out = String::new();
    let empty = Vec::new();
    json_map(branches.first().unwrap_or(&empty), 0, &mut out)?;
    out.push('\n');
    Ok(out.into_bytes())
}

fn json_indent(depth: usize, out: &mut String) {
    out.push('\n');
    for _ in 0..depth {
        out.push('\t');
    }
}

fn json_map(entries: &[Entry], depth: usize, out: &mut String) -> Result<(), SopsError> {
    let pairs: Vec<_> = entries
        .iter()
        .filter_map(|entry| match entry {
            Entry::Pair(key, value) => Some((key, value)),
            Entry::Comment(_) => None,
        })
        .collect();
    if pairs.is_empty() {
        out.push_str("{}");
        return Ok(());
    }
    out.push('{');
    for (i, (key, value)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_indent(depth + 1, out);
        json_string(key, out);
        out.push_str(": ");
        json_value(value, depth + 1, out)?;
    }
    json_indent(depth, out);
    out.push('}');
    Ok(())
}

fn json_value(node: &Node, depth: usize, out: &mut String) -> Result<(), SopsError> {
    match node {
        Node::Map(entries) => json_map(entries, depth, out)?,
        Node::List(items) if items.is_empty() => out.push_str("[]"),
        Node::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_indent(depth + 1, out);
                json_value(item, depth + 1, out)?;
            }
            json_indent(depth, out);
            out.push(']');
        }
        Node::Str(s) => json_string(s, out),
        Node::Int(i) => out.push_str(&i.to_string()),
        Node::Float(f) => out.push_str(&go_json_float(*f).ok_or_else(|| {
            SopsError::Unsupported("a NaN or infinite float cannot be written as JSON".into())
        })?),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Null => out.push_str("null"),
        // Go's json.Marshal writes a []byte as base64.
        Node::Bytes(b) => json_string(&BASE64.encode(b), out),
    }
    Ok(())
}

fn json_string(s: &str, out: &mut String) {
    // serde_json's escaping of a str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// A float as Go's `encoding/json` writes it: the shortest `'f'` form, or `'e'` (with `e-7`,
/// `e+21`) below 1e-6 and from 1e21. `None` for NaN and infinities, which JSON cannot hold.
fn go_json_float(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let text = format!("{f:e}");
        return Some(match text.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => text,
        });
    }
    Some(format!("{f}"))
}

/// The binary store's plaintext: the decrypted `data` itself.
pub(in super::super) fn render_binary(branches: &[Vec<Entry>]) -> Result<Vec<u8>, SopsError> {
    let data = branches.first().and_then(|branch| {
        branch.iter().find_map(|entry| match entry {
            Entry::Pair(key, value) if key == "data" => Some(value),
            _ => None,
        })
    });
    match data {
        Some(Node::Str(s)) => Ok(s.clone().into_bytes()),
        Some(Node::Bytes(b)) => Ok(b.clone()),
        Some(_) => Err(SopsError::Syntax {
            format: Format::Binary,
            reason: "data is not a string".into(),
        }),
        None => Err(SopsError::Syntax {
            format: Format::Binary,
            reason: "no data key".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_floats_are_written_as_go_writes_them() {
        for (f, text) in [
            (1000.0, "1000"),
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (1e21, "1e+21"),
            (1.5e-7, "1.5e-7"),
            (1e20, "100000000000000000000"),
            (0.0, "0"),
        ] {
            assert_eq!(go_json_float(f).as_deref(), Some(text), "{f}");
        }
        assert_eq!(go_json_float(f64::NAN), None);
    }

    #[test]
    fn mapping_keys_keep_their_order_and_must_be_unique_strings() {
        let node: Node = yaml_serde::from_str("b: 1\na: 2\nc: [x, y]\n").unwrap();
        let keys: Vec<_> = match &node {
            Node::Map(entries) => entries
                .iter()
                .map(|e| match e {
                    Entry::Pair(k, _) => k.as_str(),
                    Entry::Comment(_) => "#",
                })
                .collect(),
            _ => panic!("{node:?}"),
        };
        assert_eq!(keys, ["b", "a", "c"]);
        for broken in ["a: 1\na: 2\n", "1: x\n", "[a, b]\n", "a: !custom x\n"] {
            let parsed = parse_yaml(format!("{broken}sops: {{}}\n").as_bytes());
            assert!(
                matches!(parsed, Err(SopsError::Syntax { .. })),
                "{broken:?}: {parsed:?}"
            );
        }
        let json: Node = serde_json::from_str(r#"{"z": 1, "y": 18446744073709551615}"#).unwrap();
        assert_eq!(json.get("z"), Some(&Node::Int(1)));
        assert_eq!(json.get("y"), Some(&Node::Float(18446744073709551615.0)));
    }

    #[test]
    fn yaml_scalars_get_the_types_sops_gives_them() {
        let node: Node = yaml_serde::from_str(
            "i: 5\nh: 0x1f\nf: 1.5\ne: 1e3\nb: true\nn: null\nt: 2024-01-01T00:00:00Z\nq: '5'\n",
        )
        .unwrap();
        assert_eq!(node.get("i"), Some(&Node::Int(5)));
        assert_eq!(node.get("h"), Some(&Node::Int(31)));
        assert_eq!(node.get("f"), Some(&Node::Float(1.5)));
        assert_eq!(node.get("e"), Some(&Node::Float(1000.0)));
        assert_eq!(node.get("b"), Some(&Node::Bool(true)));
        assert_eq!(node.get("n"), Some(&Node::Null));
        // yaml.v3 hands timestamps to an interface{} as strings, and so does yaml_serde.
        assert_eq!(
            node.get("t"),
            Some(&Node::Str("2024-01-01T00:00:00Z".into()))
        );
        assert_eq!(node.get("q"), Some(&Node::Str("5".into())));
    }

    #[test]
    fn json_is_written_tab_indented_like_sops() {
        let node: Node =
            serde_json::from_str(r#"{"a": {"b": [1, "x", {}], "c": []}, "d": null}"#).unwrap();
        let Node::Map(entries) = node else { panic!() };
        let out = String::from_utf8(render_json(&[entries]).unwrap()).unwrap();
        assert_eq!(
            out,
            "{\n\t\"a\": {\n\t\t\"b\": [\n\t\t\t1,\n\t\t\t\"x\",\n\t\t\t{}\n\t\t],\n\t\t\"c\": []\n\t},\n\t\"d\": null\n}\n"
        );
    }
}
