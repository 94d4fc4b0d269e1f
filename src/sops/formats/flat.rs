//! The flattened metadata of the dotenv and INI stores (`stores/flatten.go`): nested keys are
//! joined with `__map_<key>` and `__list_<index>` (`age__list_0__map_enc`), every value is a
//! string with its newlines written `\n`. [`unflatten`] rebuilds the `sops` mapping.

use std::collections::BTreeMap;

use super::super::tree::{Entry, Node};

const MAP_SEPARATOR: &str = "__map_";
const LIST_SEPARATOR: &str = "__list_";

/// One step of a flattened key.
#[derive(Debug, PartialEq)]
enum Token<'a> {
    Key(&'a str),
    Index(usize),
}

/// Splits `age__list_0__map_enc` into `age`, `[0]`, `enc` (SOPS's `tokenize`; a list index that
/// is not a number is 0, as Go's ignored `Atoi` error makes it).
fn tokenize(path: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut rest = path;
    let mut list = false;
    loop {
        let next = [MAP_SEPARATOR, LIST_SEPARATOR]
            .iter()
            .filter_map(|sep| rest.find(sep).map(|at| (at, *sep)))
            .min_by_key(|(at, _)| *at);
        let (text, following) = match next {
            Some((at, sep)) => (&rest[..at], Some((at, sep))),
            None => (rest, None),
        };
        tokens.push(if list {
            Token::Index(text.parse().unwrap_or(0))
        } else {
            Token::Key(text)
        });
        match following {
            Some((at, sep)) => {
                list = sep == LIST_SEPARATOR;
                rest = &rest[at + sep.len()..];
            }
            None => return tokens,
        }
    }
}

/// A tree being rebuilt: lists by index, since flattened keys come in any order.
#[derive(Debug)]
enum Partial {
    Map(Vec<(String, Partial)>),
    List(BTreeMap<usize, Partial>),
    Leaf(String),
}

impl Partial {
    fn insert(&mut self, tokens: &[Token<'_>], value: String) {
        let Some((first, rest)) = tokens.split_first() else {
            return;
        };
        let fresh = || match rest.first() {
            None => Partial::Leaf(String::new()),
            Some(Token::Key(_)) => Partial::Map(Vec::new()),
            Some(Token::Index(_)) => Partial::List(BTreeMap::new()),
        };
        let child = match (self, first) {
            (Partial::Map(entries), Token::Key(key)) => {
                let at = match entries.iter().position(|(k, _)| k == key) {
                    Some(at) => at,
                    None => {
                        entries.push(((*key).to_owned(), fresh()));
                        entries.len() - 1
                    }
                };
                &mut entries[at].1
            }
            (Partial::List(items), Token::Index(i)) => items.entry(*i).or_insert_with(fresh),
            // A key that contradicts an earlier one (`a=1`, `a__map_b=2`): the first wins.
            _ => return,
        };
        if rest.is_empty() {
            *child = Partial::Leaf(value);
        } else {
            child.insert(rest, value);
        }
    }

    fn into_node(self) -> Node {
        match self {
            Partial::Map(entries) => Node::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| Entry::Pair(k, v.into_node()))
                    .collect(),
            ),
            Partial::List(items) => Node::List(items.into_values().map(Self::into_node).collect()),
            Partial::Leaf(s) => Node::Str(s),
        }
    }
}

/// The `sops` mapping from flattened `(key, value)` pairs, their `\n` escapes decoded.
pub(super) fn unflatten<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Node {
    let mut root = Partial::Map(Vec::new());
    for (key, value) in pairs {
        root.insert(&tokenize(key), value.replace("\\n", "\n"));
    }
    root.into_node()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattened_keys_split_into_keys_and_list_positions() {
        assert_eq!(
            tokenize("age__list_0__map_enc"),
            [Token::Key("age"), Token::Index(0), Token::Key("enc")]
        );
        assert_eq!(
            tokenize("key_groups__list_1__map_age__list_10__map_recipient"),
            [
                Token::Key("key_groups"),
                Token::Index(1),
                Token::Key("age"),
                Token::Index(10),
                Token::Key("recipient")
            ]
        );
        assert_eq!(tokenize("mac"), [Token::Key("mac")]);
    }

    #[test]
    fn lists_are_rebuilt_in_index_order_whatever_the_key_order() {
        let node = unflatten([
            ("age__list_10__map_recipient", "r10"),
            ("age__list_2__map_recipient", "r2"),
            ("age__list_2__map_enc", "line1\\nline2"),
            ("mac", "m"),
        ]);
        let Some(Node::List(stanzas)) = node.get("age") else {
            panic!("{node:?}")
        };
        let recipients: Vec<_> = stanzas.iter().map(|s| s.get("recipient")).collect();
        assert_eq!(
            recipients,
            [
                Some(&Node::Str("r2".into())),
                Some(&Node::Str("r10".into()))
            ]
        );
        assert_eq!(
            stanzas[0].get("enc"),
            Some(&Node::Str("line1\nline2".into()))
        );
        assert_eq!(node.get("mac"), Some(&Node::Str("m".into())));
    }
}
