//! The INI store (`stores/ini/store.go`, which reads and writes through go-ini with its
//! defaults). Read: lines are left-trimmed; `#` and `;` lines are comments, gathered until the
//! next section header (its comment) or key (that key's comment); `[name]` opens a section
//! (keys before any header are in `DEFAULT`, which always comes first); `key = value` or
//! `key: value`, the key trimmed; the value: `"""…"""` (which may span lines) or `` `…` `` taken
//! as they are, otherwise trimmed, continued on the next line after a trailing `\`, cut at the
//! first `#` or `;`, and stripped of one pair of surrounding `"` or `'`. A repeated section
//! merges; a repeated key takes the new value in its first place. The `[sops]` section holds the
//! flattened metadata.
//!
//! SOPS's tree: one entry per section (`DEFAULT` first), holding the section's comment, then
//! each key followed by its comment (the comment that stood above it), comment markers
//! stripped. Written back as go-ini writes: comments as `; …` lines above what they belong to,
//! `[name]` headers (none for `DEFAULT`, which is left out when empty), `key = value` with the
//! `=` aligned within a section, quoting values as go-ini does, a blank line after each section.

use super::super::tree::{Entry, Node, go_float};
use super::super::{Format, SopsError};
use super::{Document, flat};

const DEFAULT_SECTION: &str = "DEFAULT";

/// A section as go-ini holds it.
#[derive(Debug, Default)]
struct Section {
    name: String,
    comment: String,
    /// Key, value, comment.
    keys: Vec<(String, String, String)>,
}

/// Is this a SOPS INI file: does it have a `[sops]` section (by content alone: one with a
/// `mac` key)?
pub(in super::super) fn is_sops(bytes: &[u8], strict: bool) -> bool {
    let Ok(sections) = read_sections(bytes) else {
        return false;
    };
    sections
        .iter()
        .find(|s| s.name == "sops")
        .is_some_and(|s| !strict || s.keys.iter().any(|(k, _, _)| k == "mac"))
}

fn syntax(reason: String) -> SopsError {
    SopsError::Syntax {
        format: Format::Ini,
        reason,
    }
}

/// go-ini's parser with its default options, for what SOPS writes and reads.
fn read_sections(bytes: &[u8]) -> Result<Vec<Section>, SopsError> {
    let text = std::str::from_utf8(bytes).map_err(|_| syntax("not UTF-8".into()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut sections = vec![Section {
        name: DEFAULT_SECTION.into(),
        ..Section::default()
    }];
    let mut current = 0;
    let mut comment = String::new();
    let mut i = 0;
    while i < lines.len() {
        let number = i + 1;
        let line = lines[i].trim_start();
        i += 1;
        if line.is_empty() {
            continue;
        }
        if line.starts_with('#') || line.starts_with(';') {
            comment.push_str(line);
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(close) = rest.rfind(']') else {
                return Err(syntax(format!("line {number}: unclosed section header")));
            };
            let name = &rest[..close];
            if name.is_empty() {
                return Err(syntax(format!("line {number}: empty section name")));
            }
            current = match sections.iter().position(|s| s.name == name) {
                Some(at) => at,
                None => {
                    sections.push(Section {
                        name: name.to_owned(),
                        ..Section::default()
                    });
                    sections.len() - 1
                }
            };
            sections[current].comment = std::mem::take(&mut comment).trim().to_owned();
            continue;
        }
        let (key, value_start) =
            key_name(line).ok_or_else(|| syntax(format!("line {number} is not key = value")))?;
        let (value, consumed) = read_value(&line[value_start..], &lines[i..])
            .ok_or_else(|| syntax(format!("line {number}: unclosed quoted value")))?;
        i += consumed;
        let key_comment = std::mem::take(&mut comment).trim().to_owned();
        let section = &mut sections[current];
        match section.keys.iter_mut().find(|(k, _, _)| *k == key) {
            Some(existing) => {
                existing.1 = value;
                existing.2 = key_comment;
            }
            None => section.keys.push((key, value, key_comment)),
        }
    }
    Ok(sections)
}

/// go-ini's `readKeyName`: a key (perhaps quoted with `"`, `"""` or `` ` ``) up to the first
/// `=` or `:`; returns it trimmed and where the value starts.
fn key_name(line: &str) -> Option<(String, usize)> {
    let quote = if line.starts_with("\"\"\"") && line.len() > 6 {
        "\"\"\""
    } else if line.starts_with('"') {
        "\""
    } else if line.starts_with('`') {
        "`"
    } else {
        ""
    };
    if !quote.is_empty() {
        let start = quote.len();
        let close = start + line[start..].find(quote)?;
        let delimiter = close + start + line[close + start..].find(['=', ':'])?;
        return Some((line[start..close].trim().to_owned(), delimiter + 1));
    }
    let delimiter = line.find(['=', ':'])?;
    if delimiter == 0 {
        return None;
    }
    Some((line[..delimiter].trim().to_owned(), delimiter + 1))
}

/// go-ini's `readValue`: the value that starts in `first` (the rest of its line, line break
/// included), reading on into `following` lines where it continues. Returns the value and how
/// many following lines it took; `None` for an unclosed `"""`.
fn read_value(first: &str, following: &[&str]) -> Option<(String, usize)> {
    let line = first.trim_start();
    if line.is_empty() {
        return Some((String::new(), 0));
    }
    let quote = if line.len() > 3 && line.starts_with("\"\"\"") {
        "\"\"\""
    } else if line.starts_with('`') {
        "`"
    } else {
        ""
    };
    if !quote.is_empty() {
        let body = &line[quote.len()..];
        if let Some(end) = body.rfind(quote) {
            return Some((body[..end].to_owned(), 0));
        }
        // A multi-line value: up to the line holding the closing quote.
        let mut value = body.to_owned();
        for (n, next) in following.iter().enumerate() {
            if let Some(end) = next.rfind(quote) {
                value.push_str(&next[..end]);
                return Some((value, n + 1));
            }
            value.push_str(next);
        }
        return None;
    }
    let mut line = line.trim().to_owned();
    if line.ends_with('\\') {
        // Continuation lines: joined, trimmed, until one does not end in `\`.
        line.pop();
        let mut consumed = 0;
        for next in following {
            let next = next.trim();
            consumed += 1;
            if next.is_empty() {
                break;
            }
            line.push_str(next);
            if !line.ends_with('\\') {
                break;
            }
            line.pop();
        }
        return Some((line, consumed));
    }
    if let Some(at) = line.find(['#', ';']) {
        line = line[..at].trim().to_owned();
    }
    for q in ['\'', '"'] {
        let surrounded = line.len() > 2
            && line.starts_with(q)
            && line.ends_with(q)
            && line.matches(q).count() == 2;
        if surrounded {
            line = line[1..line.len() - 1].to_owned();
            break;
        }
    }
    Some((line, 0))
}

/// SOPS's `stripCommentChar`.
fn strip_comment_marker(comment: &str) -> String {
    if comment.starts_with(';') {
        comment.trim_start_matches([';', ' ']).to_owned()
    } else if comment.starts_with('#') {
        comment.trim_start_matches(['#', ' ']).to_owned()
    } else {
        comment.to_owned()
    }
}

pub(in super::super) fn parse(bytes: &[u8]) -> Result<Document, SopsError> {
    let sections = read_sections(bytes)?;
    let mut branch = Vec::new();
    let mut metadata = None;
    for section in sections {
        if section.name == "sops" {
            metadata = Some(flat::unflatten(
                section
                    .keys
                    .iter()
                    .map(|(k, v, _)| (k.as_str(), v.as_str())),
            ));
            continue;
        }
        let mut items = Vec::new();
        if !section.comment.is_empty() {
            items.push(Entry::Comment(strip_comment_marker(&section.comment)));
        }
        for (key, value, comment) in section.keys {
            items.push(Entry::Pair(key, Node::Str(value)));
            if !comment.is_empty() {
                items.push(Entry::Comment(strip_comment_marker(&comment)));
            }
        }
        branch.push(Entry::Pair(section.name, Node::Map(items)));
    }
    let metadata = metadata.ok_or_else(|| SopsError::Metadata("no [sops] section".into()))?;
    Ok(Document {
        branches: vec![branch],
        metadata,
    })
}

/// SOPS's `valToString` for a decrypted value.
fn value_text(node: &Node) -> String {
    match node {
        Node::Str(s) => s.clone(),
        Node::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Node::Int(i) => i.to_string(),
        // strconv.FormatFloat(v, 'f', 6, 64)
        Node::Float(f) if f.is_finite() => format!("{f:.6}"),
        Node::Float(f) => go_float(*f),
        Node::Bool(b) => b.to_string(),
        Node::Null | Node::Map(_) | Node::List(_) => String::new(),
    }
}

/// go-ini's comment lines: `; ` before a line that has no marker.
fn write_comment(comment: &str, out: &mut String) {
    for line in comment.split('\n') {
        let line = line.trim();
        match line.chars().next() {
            Some(marker @ ('#' | ';')) => {
                out.push(marker);
                out.push(' ');
                out.push_str(line[1..].trim());
            }
            _ => {
                out.push_str("; ");
                out.push_str(line);
            }
        }
        out.push('\n');
    }
}

pub(in super::super) fn render(branches: &[Vec<Entry>]) -> Vec<u8> {
    // SOPS's `encodeTree`: the tree back into go-ini sections.
    let mut sections: Vec<Section> = Vec::new();
    for entry in branches.iter().flatten() {
        let Entry::Pair(name, Node::Map(items)) = entry else {
            continue;
        };
        let at = match sections.iter().position(|s| s.name == *name) {
            Some(at) => at,
            None => {
                sections.push(Section {
                    name: name.clone(),
                    ..Section::default()
                });
                sections.len() - 1
            }
        };
        let section = &mut sections[at];
        for (i, item) in items.iter().enumerate() {
            match item {
                Entry::Comment(text) if i == 0 => section.comment = text.clone(),
                Entry::Comment(text) => {
                    if let Some(last) = section.keys.last_mut() {
                        last.2 = text.clone();
                    }
                }
                Entry::Pair(key, value) => {
                    section
                        .keys
                        .push((key.clone(), value_text(value), String::new()));
                }
            }
        }
    }
    // go-ini always has DEFAULT, first.
    if sections.first().is_none_or(|s| s.name != DEFAULT_SECTION) {
        sections.insert(
            0,
            Section {
                name: DEFAULT_SECTION.into(),
                ..Section::default()
            },
        );
    }

    let mut out = String::new();
    for (i, section) in sections.iter().enumerate() {
        if !section.comment.is_empty() {
            write_comment(&section.comment, &mut out);
        }
        if i > 0 || section.name != DEFAULT_SECTION {
            out.push('[');
            out.push_str(&section.name);
            out.push_str("]\n");
        } else if section.keys.is_empty() {
            continue;
        }
        let quoted_key = |key: &str| {
            if key.contains(['"', '=', ':']) {
                format!("`{key}`")
            } else if key.contains('`') {
                format!("\"\"\"{key}\"\"\"")
            } else {
                key.to_owned()
            }
        };
        let align = section
            .keys
            .iter()
            .map(|(k, _, _)| quoted_key(k).len())
            .max()
            .unwrap_or(0);
        for (key, value, comment) in &section.keys {
            if !comment.is_empty() {
                write_comment(comment, &mut out);
            }
            let key = quoted_key(key);
            out.push_str(&key);
            out.extend(std::iter::repeat_n(' ', align - key.len()));
            out.push_str(" = ");
            if value.contains(['\n', '`']) {
                out.push_str(&format!("\"\"\"{value}\"\"\""));
            } else if value.contains(['#', ';']) {
                out.push_str(&format!("`{value}`"));
            } else if value.trim() != value {
                out.push_str(&format!("\"{value}\""));
            } else {
                out.push_str(value);
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOPS's own `TestDecodeIni` input.
    const SOPS_TEST_INI: &str = "
; last modified 1 April 2001 by John Doe
[owner]
name=John Doe
organization=Acme Widgets Inc.

[database]
; use IP address in case network name resolution is not working
server=192.0.2.62     
port=143
file=\"payroll.dat\"
";

    #[test]
    fn sections_keys_and_comments_are_read_as_sops_reads_them() {
        let sections = read_sections(SOPS_TEST_INI.as_bytes()).unwrap();
        let names: Vec<_> = sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["DEFAULT", "owner", "database"]);
        assert_eq!(
            sections[1].comment,
            "; last modified 1 April 2001 by John Doe"
        );
        let database: Vec<_> = sections[2]
            .keys
            .iter()
            .map(|(k, v, c)| (k.as_str(), v.as_str(), c.as_str()))
            .collect();
        assert_eq!(
            database,
            [
                (
                    "server",
                    "192.0.2.62",
                    "; use IP address in case network name resolution is not working"
                ),
                ("port", "143", ""),
                ("file", "payroll.dat", ""),
            ]
        );
    }

    #[test]
    fn values_are_unquoted_cut_at_inline_comments_and_continued() {
        let sections = read_sections(
            b"a = `x;y`\nb = 'q' ; note\nc = one \\\n  two\nd = \"\"\"multi\nline\"\"\"\ne: colon\n",
        )
        .unwrap();
        let values: Vec<_> = sections[0]
            .keys
            .iter()
            .map(|(k, v, _)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            values,
            [
                ("a", "x;y"),
                ("b", "q"),
                ("c", "one two"),
                ("d", "multi\nline"),
                ("e", "colon")
            ]
        );
        assert!(read_sections(b"[open\n").is_err());
        assert!(read_sections(b"no delimiter\n").is_err());
    }

    #[test]
    fn the_plaintext_is_written_as_go_ini_writes_it() {
        let branch = vec![
            Entry::Pair("DEFAULT".into(), Node::Map(vec![])),
            Entry::Pair(
                "database".into(),
                Node::Map(vec![
                    Entry::Comment("the primary".into()),
                    Entry::Pair("server".into(), Node::Str("192.0.2.62".into())),
                    Entry::Pair("password".into(), Node::Str("a;b".into())),
                    Entry::Comment("rotate yearly".into()),
                    Entry::Pair("p".into(), Node::Int(143)),
                ]),
            ),
        ];
        let out = String::from_utf8(render(&[branch])).unwrap();
        assert_eq!(
            out,
            "; the primary\n[database]\nserver   = 192.0.2.62\n; rotate yearly\npassword = `a;b`\np        = 143\n\n"
        );
    }
}
