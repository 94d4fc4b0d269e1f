//! Tests against the real SOPS fixtures in `tests/data/sops/` (written by the `sops` CLI, with
//! their published throwaway age keys and plaintexts), and against documents made here with
//! SOPS's encryption rules for what the fixtures do not cover (the other selection rules, the
//! value types, JSON, INI, comments).

use std::path::PathBuf;

use sha2::{Digest as _, Sha512};

use super::formats::{self, Document};
use super::keys::data_key;
use super::tree::{Entry, Metadata, Node, Rules, go_float, go_rfc3339, mac_bytes};
use super::value::{self, Cipher};
use super::*;
use aes_gcm::aead::KeyInit as _;

const FLUX: &str = "fluxcd-kustomize-controller";
const NIX: &str = "mic92-sops-nix";
const CUEGEN: &str = "noris-network-cuegen";

fn fixture_path(dir: &str, file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/sops")
        .join(dir)
        .join(file)
}

fn fixture(dir: &str, file: &str) -> Vec<u8> {
    let path = fixture_path(dir, file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn identities(dir: &str, file: &str) -> Identities {
    Identities::parse(&String::from_utf8(fixture(dir, file)).unwrap()).unwrap()
}

/// Every encrypted fixture: directory, file, key file, plaintext file.
const FIXTURES: &[(&str, &str, &str, &str)] = &[
    (FLUX, "age.yaml", "age.txt", "age.decrypted.yaml"),
    (
        FLUX,
        "global-secret.yaml",
        "age-global.txt",
        "global-secret.decrypted.yaml",
    ),
    (FLUX, "env.env", "age.txt", "env.decrypted.env"),
    (FLUX, "component.env", "age.txt", "component.decrypted.env"),
    (FLUX, "file.txt", "age.txt", "file.decrypted.txt"),
    (
        NIX,
        "secrets.yaml",
        "age-keys.txt",
        "secrets.decrypted.yaml",
    ),
    (
        CUEGEN,
        "config.enc.yaml",
        "key.txt",
        "config.decrypted.yaml",
    ),
    (CUEGEN, "secret.enc.cue", "key.txt", "secret.decrypted.cue"),
];

/// Plaintext values of the fixtures distinctive enough to look for in error messages (the
/// flux fixtures' plaintext `value` is a word every message may use; documents made below
/// cover that case with distinctive values).
const FIXTURE_PLAINTEXTS: &[&str] = &[
    "global-value",
    "test_value",
    "another value",
    "db.example.com",
    "5432",
    "abc123secret",
    "s3cr3t-value",
    "demo-secret",
];

fn yaml(bytes: &[u8]) -> yaml_serde::Value {
    yaml_serde::from_slice(bytes).unwrap()
}

#[test]
fn every_fixture_decrypts_to_its_plaintext() {
    for (dir, file, key, plain) in FIXTURES {
        let out = decrypt(file, &fixture(dir, file), &identities(dir, key))
            .unwrap_or_else(|e| panic!("{dir}/{file}: {e}"));
        let expected = fixture(dir, plain);
        if file.ends_with(".yaml") {
            // The README: YAML quoting and indentation may differ, the values may not.
            assert_eq!(yaml(&out), yaml(&expected), "{dir}/{file}");
        } else {
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&expected),
                "{dir}/{file}"
            );
        }
    }
}

#[test]
fn yaml_plaintext_keeps_the_key_order_of_the_file() {
    let out = decrypt(
        "secrets.yaml",
        &fixture(NIX, "secrets.yaml"),
        &identities(NIX, "age-keys.txt"),
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "test_key: test_value\na_list:\n- e1\n- e3\nnested:\n  test:\n    file: another value\n"
    );
}

#[test]
fn every_fixture_is_detected_with_its_store() {
    for (dir, file, _, _) in FIXTURES {
        let expected = match *file {
            "env.env" | "component.env" => Format::Dotenv,
            "file.txt" | "secret.enc.cue" => Format::Binary,
            _ => Format::Yaml,
        };
        assert_eq!(
            detect(file, &fixture(dir, file)),
            Some(expected),
            "{dir}/{file}"
        );
    }
    // A path is cut to its file name; a `.json` name reads the envelope as a JSON document.
    let envelope = fixture(FLUX, "file.txt");
    assert_eq!(
        detect("apps/web/secret.json", &envelope),
        Some(Format::Json)
    );
    assert_eq!(
        detect("apps/web/.env.production", &fixture(FLUX, "env.env")),
        Some(Format::Dotenv)
    );
    // By content alone, a SOPS dotenv file is still recognised.
    assert_eq!(
        detect("secrets.txt", &fixture(FLUX, "env.env")),
        Some(Format::Dotenv)
    );
}

#[test]
fn ordinary_files_are_not_detected() {
    let compose = b"services:\n  web:\n    image: nginx:1.27\n    environment:\n      SOPS_AGE_KEY_FILE: /keys.txt\n";
    assert_eq!(detect("compose.yaml", compose), None);
    assert_eq!(
        detect(".env", b"POSTGRES_PASSWORD=x\nSOPS_AGE_KEY=y\n"),
        None
    );
    assert_eq!(
        detect("app.env", b"# sops_mac is not a key here\nA=1\n"),
        None
    );
    assert_eq!(detect("x.yaml", b"sops: not a mapping\nkey: value\n"), None);
    assert_eq!(detect("x.yaml", b"sops:\n  - a list\n"), None);
    assert_eq!(detect("x.json", br#"{"sops": "text", "data": "x"}"#), None);
    assert_eq!(detect("notes.txt", b"sops is a tool\n"), None);
    assert_eq!(detect("empty.yaml", b""), None);
    assert_eq!(
        detect("settings.ini", b"[sops]\nmac = x\n"),
        Some(Format::Ini)
    );
    assert_eq!(detect("settings.ini", b"[main]\nsops = yes\n"), None);
}

#[test]
fn a_damaged_sops_file_is_still_detected_so_that_it_fails_loudly() {
    let mut broken = fixture(FLUX, "age.yaml");
    broken.extend_from_slice(b"  : - [unbalanced\n");
    assert_eq!(detect("age.yaml", &broken), Some(Format::Yaml));
    let err = decrypt("age.yaml", &broken, &identities(FLUX, "age.txt")).unwrap_err();
    assert!(matches!(err, SopsError::Syntax { .. }), "{err}");
}

#[test]
fn the_wrong_key_is_refused_naming_the_recipient() {
    let err = decrypt(
        "global-secret.yaml",
        &fixture(FLUX, "global-secret.yaml"),
        &identities(FLUX, "age.txt"),
    )
    .unwrap_err();
    let SopsError::WrongKey {
        recipients,
        configured,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        recipients,
        "age1henwn645drkd3fa34t27t2w2x0nsgw3w4h62gmg5x5xflyjpy38s5cncph"
    );
    assert_eq!(
        configured,
        "age1l44xcng8dqj32nlv6d930qvvrny05hglzcv9qpc7kxjc6902ma4qufys29"
    );
    let message = err.to_string();
    assert!(message.starts_with("wrong key:"), "{message}");
    assert!(message.contains("age1henwn645"), "{message}");
}

#[test]
fn the_second_recipient_is_tried_and_other_keys_of_the_file_are_ignored() {
    // secrets.yaml has two age stanzas and two PGP ones; the key opens the first. With the
    // identities of another fixture first, the search must go on to the matching one.
    let ids = identities(FLUX, "age.txt").merged(identities(NIX, "age-keys.txt"));
    assert_eq!(ids.len(), 2);
    assert!(decrypt("secrets.yaml", &fixture(NIX, "secrets.yaml"), &ids).is_ok());
}

#[test]
fn no_identities_is_a_clear_error() {
    let err = decrypt(
        "age.yaml",
        &fixture(FLUX, "age.yaml"),
        &Identities::default(),
    )
    .unwrap_err();
    assert_eq!(err, SopsError::NoIdentities);
    assert!(err.to_string().contains("SOPS_AGE_KEY_FILE"), "{err}");
}

/// `bytes` with the first occurrence of `from` replaced by `to`.
fn replaced(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.contains(from), "{from:?} not in the fixture");
    text.replacen(from, to, 1).into_bytes()
}

/// A base64 text with one bit of its first decoded byte flipped.
fn flip_first_byte(b64: &str) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine.decode(b64).unwrap();
    bytes[0] ^= 0x01;
    engine.encode(bytes)
}

#[test]
fn a_flipped_ciphertext_byte_names_the_key_path() {
    let cases = [
        (FLUX, "age.yaml", "age.txt", "mHeXsmQ=", "stringData.key"),
        (NIX, "secrets.yaml", "age-keys.txt", "mYU=", "a_list[1]"),
        (
            NIX,
            "secrets.yaml",
            "age-keys.txt",
            "9YhsaXoxxdbLUzeWqA==",
            "nested.test.file",
        ),
        (FLUX, "env.env", "age.txt", "3PTvx6o=", "key"),
        (FLUX, "file.txt", "age.txt", "QNbPAYY=", "data"),
    ];
    for (dir, file, key, data, path) in cases {
        let damaged = replaced(&fixture(dir, file), data, &flip_first_byte(data));
        let err = decrypt(file, &damaged, &identities(dir, key)).unwrap_err();
        assert_eq!(
            err,
            SopsError::DamagedValue {
                path: path.into(),
                cause: value::ValueError::Authentication.cause(),
            },
            "{dir}/{file}"
        );
        assert!(err.to_string().contains(path), "{err}");
    }
}

#[test]
fn a_value_moved_to_another_key_fails_its_authentication() {
    // The additional data binds a value to its path: key → other, same ciphertext.
    let damaged = replaced(&fixture(FLUX, "env.env"), "key=ENC", "other=ENC");
    let err = decrypt("env.env", &damaged, &identities(FLUX, "age.txt")).unwrap_err();
    assert!(
        matches!(&err, SopsError::DamagedValue { path, .. } if path == "other"),
        "{err:?}"
    );
}

#[test]
fn a_changed_mac_or_clear_text_is_a_mac_error() {
    let ids = identities(FLUX, "age.txt");
    let original = fixture(FLUX, "age.yaml");
    // sops.mac's ciphertext changed: it no longer decrypts.
    let mac_data = "vmrF+VgW3o8z4h/DOStCUNudz68yHEC8Mws+LPoKpM3Xc7GM0Z1CfX0TKwdLLjMuvyWa2Nx2NIxm0+MCbmR8+y2izn0hHPSWhNVCWSK+iW48M05vXhDCV0xNkqM7g0kLhQ3PiSrB69loQj8C590HIfEViEtyDCFUeynDgcC289Q=";
    let damaged = replaced(&original, mac_data, &flip_first_byte(mac_data));
    assert_eq!(
        decrypt("age.yaml", &damaged, &ids),
        Err(SopsError::MacDamaged)
    );
    // lastmodified is the MAC's additional data.
    let damaged = replaced(&original, "2024-11-12T13:33:42Z", "2024-11-12T13:33:43Z");
    assert_eq!(
        decrypt("age.yaml", &damaged, &ids),
        Err(SopsError::MacDamaged)
    );
    // Clear text outside encrypted_regex is still covered by the MAC.
    let damaged = replaced(&original, "name: age", "name: evil");
    let err = decrypt("age.yaml", &damaged, &ids).unwrap_err();
    assert_eq!(err, SopsError::MacMismatch);
    assert!(err.to_string().starts_with("MAC mismatch"), "{err}");
    // An empty MAC never matches.
    let damaged = replaced(
        &fixture(FLUX, "env.env"),
        "sops_mac=ENC",
        "sops_mac=\nsops_x=ENC",
    );
    assert_eq!(
        decrypt("env.env", &damaged, &ids),
        Err(SopsError::MacMismatch)
    );
}

#[test]
fn swapped_list_items_decrypt_but_fail_the_mac() {
    // List items share their parent's path, so their ciphertexts can be swapped; only the MAC,
    // which covers the order, catches it.
    let original = String::from_utf8(fixture(NIX, "secrets.yaml")).unwrap();
    let first = "ENC[AES256_GCM,data:oOQ=,iv:5P+1UQyIYOW8xXgsvTXC17msGcA6IGB3N8n+pstfqjo=,tag:ox4rgjbb8c0vYZ2XmwRgpg==,type:str]";
    let second = "ENC[AES256_GCM,data:mYU=,iv:LbGS8DjM6Vnr2nU7QokzQlg0gL+XMWhqbN+ypP7ZIZo=,tag:CFrhnZv6lYGJOVso+2YBFg==,type:str]";
    let swapped = original
        .replace(first, "FIRST")
        .replace(second, first)
        .replace("FIRST", second);
    assert_eq!(
        decrypt(
            "secrets.yaml",
            swapped.as_bytes(),
            &identities(NIX, "age-keys.txt")
        ),
        Err(SopsError::MacMismatch)
    );
}

/// The decrypted `sops.mac` of a fixture, with its data key.
fn stored_mac(dir: &str, file: &str, key: &str) -> String {
    let bytes = fixture(dir, file);
    let format = detect(file, &bytes).unwrap();
    let Document { metadata, .. } = formats::parse(format, &bytes).unwrap();
    let metadata = Metadata::read(&metadata).unwrap();
    let data_key = data_key(&metadata, &identities(dir, key)).unwrap();
    let cipher = Cipher::new(data_key.expose().into());
    let aad = go_rfc3339(&metadata.last_modified).unwrap();
    match value::decrypt(&cipher, &metadata.mac, &aad).unwrap() {
        Node::Str(mac) => mac,
        other => panic!("{other:?}"),
    }
}

fn sha512_upper_hex(parts: &[&[u8]]) -> String {
    let mut hash = Sha512::new();
    for part in parts {
        hash.update(part);
    }
    hash.finalize().iter().map(|b| format!("{b:02X}")).collect()
}

#[test]
fn the_mac_is_sha512_over_the_leaves_in_document_order() {
    // Computed by hand from the fixtures' plaintexts: clear-text leaves included (age.yaml's
    // apiVersion, kind and metadata.name are outside its encrypted_regex), list items in order.
    assert_eq!(
        stored_mac(FLUX, "age.yaml", "age.txt"),
        sha512_upper_hex(&[b"v1", b"Secret", b"age", b"value"])
    );
    assert_eq!(
        stored_mac(NIX, "secrets.yaml", "age-keys.txt"),
        sha512_upper_hex(&[b"test_value", b"e1", b"e3", b"another value"])
    );
    assert_eq!(
        stored_mac(CUEGEN, "config.enc.yaml", "key.txt"),
        sha512_upper_hex(&[b"db.example.com", b"5432", b"abc123secret"])
    );
    assert_eq!(
        stored_mac(FLUX, "env.env", "age.txt"),
        sha512_upper_hex(&[b"value"])
    );
    assert_eq!(
        stored_mac(FLUX, "file.txt", "age.txt"),
        sha512_upper_hex(&[b"value"])
    );
}

#[test]
fn mac_leaves_are_rendered_as_sops_to_bytes_renders_them() {
    let cases: &[(Node, &str)] = &[
        (Node::Str("täxt".into()), "täxt"),
        (Node::Int(-42), "-42"),
        (Node::Int(5432), "5432"),
        (Node::Float(1.5), "1.5"),
        (Node::Float(1000.0), "1000"),
        (Node::Float(0.1), "0.1"),
        (Node::Float(1e21), "1000000000000000000000"),
        (Node::Float(1.5e-7), "0.00000015"),
        (Node::Float(f64::INFINITY), "+Inf"),
        (Node::Bool(true), "True"),
        (Node::Bool(false), "False"),
        (Node::Bytes(vec![0xff, 0x00]), "\u{fffd}\u{0}"),
    ];
    for (node, text) in cases {
        assert_eq!(String::from_utf8_lossy(&mac_bytes(node)), *text, "{node:?}");
    }
    assert_eq!(go_float(-0.0), "-0");
    assert_eq!(go_float(f64::NAN), "NaN");
}

#[test]
fn values_decode_by_their_type() {
    let ok: &[(&str, &[u8], Node)] = &[
        ("str", b"s3cr3t", Node::Str("s3cr3t".into())),
        ("str", b"\xff", Node::Bytes(vec![0xff])),
        ("int", b"-17", Node::Int(-17)),
        ("int", b"+5", Node::Int(5)),
        ("int64", b"9", Node::Int(9)),
        ("float", b"2.5", Node::Float(2.5)),
        ("float", b"1e3", Node::Float(1000.0)),
        ("bool", b"True", Node::Bool(true)),
        ("bool", b"false", Node::Bool(false)),
        ("bool", b"1", Node::Bool(true)),
        ("bytes", b"\x00\x01", Node::Bytes(vec![0, 1])),
    ];
    for (kind, plain, node) in ok {
        assert_eq!(
            value::decode(plain.to_vec(), kind).as_ref(),
            Ok(node),
            "{kind}"
        );
    }
    let wrong: &[(&str, &[u8])] = &[
        ("int", b"1.5"),
        ("int", b"12x"),
        ("float", b"abc"),
        ("bool", b"yes"),
        ("comment", b"x"),
    ];
    for (kind, plain) in wrong {
        assert_eq!(
            value::decode(plain.to_vec(), kind),
            Err(value::ValueError::WrongType),
            "{kind}"
        );
    }
    assert_eq!(
        value::decode(b"x".to_vec(), "complex"),
        Err(value::ValueError::UnknownType)
    );
}

#[test]
fn lastmodified_is_normalised_as_go_formats_it() {
    assert_eq!(
        go_rfc3339("2024-11-12T13:33:42Z").as_deref(),
        Some("2024-11-12T13:33:42Z")
    );
    assert_eq!(
        go_rfc3339("2024-11-12T13:33:42.123456Z").as_deref(),
        Some("2024-11-12T13:33:42Z")
    );
    assert_eq!(
        go_rfc3339("2024-11-12T13:33:42+00:00").as_deref(),
        Some("2024-11-12T13:33:42Z")
    );
    assert_eq!(
        go_rfc3339("2024-11-12T14:33:42+01:00").as_deref(),
        Some("2024-11-12T14:33:42+01:00")
    );
    for bad in [
        "2024-11-12",
        "2024-11-12 13:33:42Z",
        "2024-11-12T13:33:42",
        "x",
    ] {
        assert_eq!(go_rfc3339(bad), None, "{bad}");
    }
}

#[test]
fn identities_parse_the_age_identity_file_format() {
    let text = String::from_utf8(fixture(FLUX, "age.txt")).unwrap();
    let ids = Identities::parse(&format!("\n  {}\r\n# another comment\n", text.trim())).unwrap();
    assert_eq!(
        ids.recipients(),
        ["age1l44xcng8dqj32nlv6d930qvvrny05hglzcv9qpc7kxjc6902ma4qufys29"]
    );
    // Debug shows public keys only.
    let debug = format!("{ids:?}");
    assert!(
        debug.contains("age1l44x") && !debug.contains("AGE-SECRET-KEY"),
        "{debug}"
    );
    assert!(Identities::parse("# only a comment\n").unwrap().is_empty());
    // Bech32 is case-insensitive (but not mixed-case).
    assert_eq!(
        Identities::parse(&text.to_lowercase())
            .unwrap()
            .recipients(),
        ids.recipients()
    );
    let secret = "AGE-SECRET-KEY-1RH87A5Z54ZGUR9S0AS3R6WHFSEFNPLYMAKF5Z2CEU7R06VRJ0A3Q7242AX";
    for (text, expected) in [
        (
            format!("# ok\n{secret}\n"),
            SopsError::InvalidIdentity { line: 2 },
        ),
        (
            "age1l44xcng8dqj32nlv6d930qvvrny05hglzcv9qpc7kxjc6902ma4qufys29".into(),
            SopsError::InvalidIdentity { line: 1 },
        ),
        (
            "AGE-PLUGIN-YUBIKEY-1XYZ".into(),
            SopsError::PluginIdentity { line: 1 },
        ),
    ] {
        let err = Identities::parse(&text).unwrap_err();
        assert_eq!(err, expected);
        assert!(!err.to_string().contains("AGE-SECRET-KEY-1RH"), "{err}");
    }
}

// Documents made here, encrypted as SOPS's `Tree.Encrypt` does.

/// A fixed data key for the documents made here.
const DATA_KEY: [u8; 32] = [7; 32];
const LAST_MODIFIED: &str = "2026-01-02T03:04:05Z";

/// SOPS's encryption walk over a plaintext branch: encrypts what `rules` select (comments
/// with `type:comment`), feeds the MAC with the plaintext leaves, returns the MAC.
struct Sealer {
    cipher: Cipher,
    rules: Rules,
    mac: Sha512,
    keys: Vec<String>,
    comments: Vec<Vec<String>>,
    nonce: u8,
}

impl Sealer {
    fn new(metadata: &Node) -> Self {
        let rules = Metadata::read(metadata).unwrap().rules;
        let mut mac = Sha512::new();
        if rules.mac_only_encrypted {
            mac.update(super::tree::MAC_ONLY_ENCRYPTED_PREFIX);
        }
        Self {
            cipher: Cipher::new((&DATA_KEY).into()),
            rules,
            mac,
            keys: vec![],
            comments: vec![],
            nonce: 0,
        }
    }

    fn iv(&mut self) -> [u8; 32] {
        self.nonce += 1;
        [self.nonce; 32]
    }

    fn aad(&self) -> String {
        format!("{}:", self.keys.join(":"))
    }

    fn map(&mut self, entries: &mut [Entry]) {
        self.comments.push(vec![]);
        for entry in entries {
            match entry {
                Entry::Comment(text) => {
                    self.comments.last_mut().unwrap().push(text.clone());
                    if self.rules.is_encrypted(&self.keys, &self.comments, true) {
                        let iv = self.iv();
                        *text =
                            value::seal(&self.cipher, text.as_bytes(), "comment", &self.aad(), iv);
                    }
                }
                Entry::Pair(key, node) => {
                    self.keys.push(key.clone());
                    self.value(node);
                    self.keys.pop();
                    self.comments.last_mut().unwrap().clear();
                }
            }
        }
        self.comments.pop();
    }

    fn value(&mut self, node: &mut Node) {
        match node {
            Node::Map(entries) => self.map(entries),
            Node::List(items) => {
                self.comments.push(vec![]);
                for item in items {
                    self.value(item);
                }
                self.comments.pop();
            }
            Node::Null => {}
            leaf => {
                let encrypted = self.rules.is_encrypted(&self.keys, &self.comments, false);
                if !self.rules.mac_only_encrypted || encrypted {
                    self.mac.update(mac_bytes(leaf));
                }
                let (plain, kind) = match leaf {
                    Node::Str(s) if s.is_empty() => return,
                    Node::Str(s) => (s.clone(), "str"),
                    Node::Int(i) => (i.to_string(), "int"),
                    Node::Float(f) => (go_float(*f), "float"),
                    Node::Bool(b) => (if *b { "True" } else { "False" }.to_owned(), "bool"),
                    _ => unreachable!(),
                };
                if encrypted {
                    let iv = self.iv();
                    *leaf = Node::Str(value::seal(
                        &self.cipher,
                        plain.as_bytes(),
                        kind,
                        &self.aad(),
                        iv,
                    ));
                }
            }
        }
    }

    /// The `ENC[…]` MAC for `sops.mac`.
    fn finish(mut self) -> String {
        let mac: String = self
            .mac
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        let iv = self.iv();
        value::seal(&self.cipher, mac.as_bytes(), "str", LAST_MODIFIED, iv)
    }
}

/// The age stanza holding [`DATA_KEY`] for the flux fixtures' `age.txt` recipient.
fn age_stanza() -> Node {
    let ids = identities(FLUX, "age.txt");
    let recipient: age::x25519::Recipient = ids.recipients()[0].parse().unwrap();
    let enc = age::encrypt_and_armor(&recipient, &DATA_KEY).unwrap();
    Node::Map(vec![
        Entry::Pair("recipient".into(), Node::Str(ids.recipients()[0].clone())),
        Entry::Pair("enc".into(), Node::Str(enc)),
    ])
}

/// `sops` metadata with the age stanza, the given rule entries and the MAC (filled in later).
fn metadata(rules: &[(&str, Node)]) -> Node {
    let mut entries = vec![Entry::Pair("age".into(), Node::List(vec![age_stanza()]))];
    entries.push(Entry::Pair(
        "lastmodified".into(),
        Node::Str(LAST_MODIFIED.into()),
    ));
    entries.push(Entry::Pair("mac".into(), Node::Str(String::new())));
    for (key, value) in rules {
        entries.push(Entry::Pair((*key).into(), value.clone()));
    }
    entries.push(Entry::Pair("version".into(), Node::Str("3.10.2".into())));
    Node::Map(entries)
}

fn set_mac(metadata: &mut Node, mac: String) {
    let Node::Map(entries) = metadata else {
        unreachable!()
    };
    for entry in entries {
        if let Entry::Pair(key, value) = entry {
            if key == "mac" {
                *value = Node::Str(mac.clone());
            }
        }
    }
}

/// A YAML document encrypted as SOPS would, from `plain` and the rule entries.
fn sealed_yaml(plain: &str, rules: &[(&str, Node)]) -> Vec<u8> {
    sealed_yaml_with(plain, metadata(rules))
}

/// [`sealed_yaml`] with the metadata given.
fn sealed_yaml_with(plain: &str, mut meta: Node) -> Vec<u8> {
    let Node::Map(mut entries) = yaml_serde::from_str::<Node>(plain).unwrap() else {
        panic!("not a mapping")
    };
    let mut sealer = Sealer::new(&meta);
    sealer.map(&mut entries);
    set_mac(&mut meta, sealer.finish());
    entries.push(Entry::Pair("sops".into(), meta));
    formats::render(Format::Yaml, &[entries]).unwrap()
}

fn flux_ids() -> Identities {
    identities(FLUX, "age.txt")
}

const TYPED_YAML: &str = "\
db:
  password: hunter2-typed
  port: 5433
  ratio: 0.75
  enabled: true
  empty: ''
  nothing: null
  hosts:
    - alpha.internal
    - beta.internal
plain_unencrypted: shown
";

#[test]
fn every_value_type_survives_encryption_by_sops_rules() {
    let sealed = sealed_yaml(TYPED_YAML, &[]);
    let text = String::from_utf8(sealed.clone()).unwrap();
    // The default rule: `_unencrypted` keys stay clear; empty strings and nulls are not sealed.
    assert!(text.contains("plain_unencrypted: shown"), "{text}");
    assert!(
        text.contains("type:int]") && text.contains("type:float]"),
        "{text}"
    );
    assert!(
        text.contains("type:bool]") && !text.contains("hunter2"),
        "{text}"
    );
    let out = decrypt("typed.yaml", &sealed, &flux_ids()).unwrap();
    assert_eq!(yaml(&out), yaml(TYPED_YAML.as_bytes()));
}

#[test]
fn each_selection_rule_picks_the_leaves_sops_picks() {
    let plain = "\
user: admin-clear
password_enc: pw-sealed
nested:
  token_enc: tok-sealed
  label: label-clear
";
    let cases: &[(&str, Node, &[&str], &[&str])] = &[
        (
            "encrypted_suffix",
            Node::Str("_enc".into()),
            &["user: admin-clear", "label: label-clear"],
            &["pw-sealed", "tok-sealed"],
        ),
        (
            "unencrypted_regex",
            Node::Str("^(user|label)$".into()),
            &["user: admin-clear", "label: label-clear"],
            &["pw-sealed", "tok-sealed"],
        ),
        (
            // A parent key matching selects everything under it.
            "encrypted_regex",
            Node::Str("^nested$".into()),
            &["user: admin-clear", "password_enc: pw-sealed"],
            &["tok-sealed", "label-clear"],
        ),
        (
            "unencrypted_suffix",
            Node::Str("_enc".into()),
            &["password_enc: pw-sealed", "token_enc: tok-sealed"],
            &["admin-clear", "label-clear"],
        ),
    ];
    for (rule, pattern, clear, sealed) in cases {
        let file = sealed_yaml(plain, &[(rule, pattern.clone())]);
        let text = String::from_utf8(file.clone()).unwrap();
        for c in *clear {
            assert!(text.contains(c), "{rule}: {c} should be clear in\n{text}");
        }
        for s in *sealed {
            assert!(!text.contains(s), "{rule}: {s} should be sealed in\n{text}");
        }
        let out = decrypt("rules.yaml", &file, &flux_ids()).unwrap();
        assert_eq!(yaml(&out), yaml(plain.as_bytes()), "{rule}");
    }
}

#[test]
fn mac_only_encrypted_leaves_clear_text_out_of_the_mac() {
    let plain = "user: admin-clear\npassword_enc: pw-sealed\n";
    for flag in [Node::Bool(true), Node::Str("true".into())] {
        let rules = [
            ("encrypted_suffix", Node::Str("_enc".into())),
            ("mac_only_encrypted", flag),
        ];
        let file = sealed_yaml(plain, &rules);
        // Clear text may change without breaking the MAC…
        let changed = replaced(&file, "admin-clear", "admin-other");
        let out = decrypt("m.yaml", &changed, &flux_ids()).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("admin-other"));
        // …and the MAC differs from the full one (the fixed prefix).
        let full = sealed_yaml(plain, &rules[..1]);
        assert_ne!(stored_mac_of(&file), stored_mac_of(&full));
    }
}

fn stored_mac_of(yaml_file: &[u8]) -> String {
    let Document { metadata, .. } = formats::parse(Format::Yaml, yaml_file).unwrap();
    let metadata = Metadata::read(&metadata).unwrap();
    let cipher = Cipher::new((&DATA_KEY).into());
    match value::decrypt(&cipher, &metadata.mac, LAST_MODIFIED).unwrap() {
        Node::Str(mac) => mac,
        other => panic!("{other:?}"),
    }
}

#[test]
fn metadata_sops_refuses_is_refused() {
    let plain = "a: b-value\n";
    let two_rules = sealed_yaml(plain, &[("encrypted_suffix", Node::Str("_x".into()))]);
    let two_rules = replaced(&two_rules, "version: 3.10.2", "encrypted_regex: ^a$");
    assert!(matches!(
        decrypt("x.yaml", &two_rules, &flux_ids()),
        Err(SopsError::Metadata(m)) if m.contains("more than one selection rule")
    ));
    let bad_regex = sealed_yaml(plain, &[]);
    let bad_regex = replaced(
        &bad_regex,
        "version: 3.10.2",
        "encrypted_regex: '(unclosed'",
    );
    assert!(matches!(
        decrypt("x.yaml", &bad_regex, &flux_ids()),
        Err(SopsError::Metadata(m)) if m.contains("encrypted_regex")
    ));
    let no_mac = replaced(&fixture(FLUX, "age.yaml"), "  mac: ENC", "  not_mac: ENC");
    assert!(matches!(
        decrypt("age.yaml", &no_mac, &flux_ids()),
        Err(SopsError::Metadata(m)) if m.contains("sops.mac")
    ));
}

#[test]
fn files_without_an_age_recipient_or_with_shamir_groups_are_unsupported() {
    let pgp_only = b"a: ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]\nsops:\n  pgp:\n    - fp: 7FB89715AADA920D65D25E63F9BA9DEBD03F57C0\n      enc: x\n  lastmodified: '2024-01-01T00:00:00Z'\n  mac: x\n";
    let err = decrypt("p.yaml", pgp_only, &flux_ids()).unwrap_err();
    assert!(
        matches!(&err, SopsError::Unsupported(m) if m.contains("pgp") && m.contains("no age recipient")),
        "{err}"
    );
    let shamir = b"a: x\nsops:\n  key_groups:\n    - age: [{recipient: r, enc: e}]\n    - age: [{recipient: s, enc: f}]\n  lastmodified: '2024-01-01T00:00:00Z'\n  mac: x\n";
    let err = decrypt("s.yaml", shamir, &flux_ids()).unwrap_err();
    assert!(
        matches!(&err, SopsError::Unsupported(m) if m.contains("Shamir")),
        "{err}"
    );
}

#[test]
fn a_single_key_group_is_read_like_top_level_keys() {
    // `age:` moved under `key_groups: [{age: …}]`.
    let Node::Map(mut entries) = metadata(&[]) else {
        unreachable!()
    };
    let Entry::Pair(_, stanzas) = entries.remove(0) else {
        unreachable!()
    };
    let group = Node::Map(vec![Entry::Pair("age".into(), stanzas)]);
    entries.insert(0, Entry::Pair("key_groups".into(), Node::List(vec![group])));
    let file = sealed_yaml_with("a: grouped-secret\n", Node::Map(entries));
    assert!(String::from_utf8_lossy(&file).contains("key_groups:"));
    let out = decrypt("g.yaml", &file, &flux_ids()).unwrap();
    assert_eq!(yaml(&out), yaml(b"a: grouped-secret\n"));
}

#[test]
fn comment_regexes_are_refused_in_yaml() {
    let file = sealed_yaml("a: b-secret\n", &[]);
    let file = replaced(&file, "version: 3.10.2", "unencrypted_comment_regex: keep");
    assert!(matches!(
        decrypt("c.yaml", &file, &flux_ids()),
        Err(SopsError::Unsupported(m)) if m.contains("comment")
    ));
}

/// A dotenv file encrypted as SOPS would, comments included.
fn sealed_dotenv(plain: &str, rules: &[(&str, Node)]) -> Vec<u8> {
    let mut entries = Vec::new();
    for line in plain.lines().filter(|l| !l.is_empty()) {
        match line.strip_prefix('#') {
            Some(comment) => entries.push(Entry::Comment(comment.into())),
            None => {
                let (k, v) = line.split_once('=').unwrap();
                entries.push(Entry::Pair(k.into(), Node::Str(v.replace("\\n", "\n"))));
            }
        }
    }
    let mut meta = metadata(rules);
    let mut sealer = Sealer::new(&meta);
    sealer.map(&mut entries);
    set_mac(&mut meta, sealer.finish());
    let mut out = formats::render(Format::Dotenv, &[entries]).unwrap();
    for (key, value) in flatten("", &meta) {
        out.extend_from_slice(format!("sops_{key}={}\n", value.replace('\n', "\\n")).as_bytes());
    }
    out
}

/// SOPS's `Flatten` of a metadata mapping (leaves as text).
fn flatten(prefix: &str, node: &Node) -> Vec<(String, String)> {
    match node {
        Node::Map(entries) => entries
            .iter()
            .filter_map(|e| match e {
                Entry::Pair(k, v) => Some((k, v)),
                Entry::Comment(_) => None,
            })
            .flat_map(|(k, v)| {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}__map_{k}")
                };
                flatten(&key, v)
            })
            .collect(),
        Node::List(items) => items
            .iter()
            .enumerate()
            .flat_map(|(i, v)| flatten(&format!("{prefix}__list_{i}"), v))
            .collect(),
        Node::Str(s) => vec![(prefix.into(), s.clone())],
        Node::Bool(b) => vec![(prefix.into(), b.to_string())],
        other => panic!("{other:?}"),
    }
}

#[test]
fn dotenv_comments_and_newlines_round_trip_byte_for_byte() {
    let plain = "# database settings\nDB_PASSWORD=pa55-dotenv\nCERT=line1\\nline2\nNAME_unencrypted=visible\nEMPTY=\n";
    let file = sealed_dotenv(plain, &[]);
    let text = String::from_utf8(file.clone()).unwrap();
    assert!(
        !text.contains("database settings") && !text.contains("pa55"),
        "{text}"
    );
    assert!(
        text.contains("#ENC[AES256_GCM,") && text.contains("type:comment]"),
        "{text}"
    );
    assert_eq!(detect("app.env", &file), Some(Format::Dotenv));
    let out = decrypt("app.env", &file, &flux_ids()).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), plain);
}

#[test]
fn dotenv_comment_regexes_select_by_the_comments_above() {
    let plain = "#sops:enc\nDB_PASSWORD=pa55-marked\nPLAIN=visible-text\n";
    let file = sealed_dotenv(
        plain,
        &[("encrypted_comment_regex", Node::Str("^sops:enc".into()))],
    );
    let text = String::from_utf8(file.clone()).unwrap();
    // The marker stays clear, the value under it is sealed, the next one is not.
    assert!(
        text.contains("#sops:enc\n") && text.contains("PLAIN=visible-text"),
        "{text}"
    );
    assert!(!text.contains("pa55-marked"), "{text}");
    let out = decrypt("app.env", &file, &flux_ids()).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), plain);

    let plain = "#keep\nSHOWN=clear-one\nHIDDEN=pa55-unmarked\n";
    let file = sealed_dotenv(
        plain,
        &[("unencrypted_comment_regex", Node::Str("^keep$".into()))],
    );
    let text = String::from_utf8(file.clone()).unwrap();
    assert!(
        text.contains("SHOWN=clear-one") && !text.contains("pa55-unmarked"),
        "{text}"
    );
    let out = decrypt("app.env", &file, &flux_ids()).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), plain);
}

#[test]
fn json_documents_decrypt_to_tab_indented_json() {
    let plain = r#"{"user": "admin-json", "port": 5434, "ratio": 2.5, "tls": false, "tags": ["a", "b"], "none": null}"#;
    let Node::Map(mut entries) = serde_json::from_str::<Node>(plain).unwrap() else {
        unreachable!()
    };
    let mut meta = metadata(&[]);
    let mut sealer = Sealer::new(&meta);
    sealer.map(&mut entries);
    set_mac(&mut meta, sealer.finish());
    entries.push(Entry::Pair("sops".into(), meta));
    let file = formats::render(Format::Json, &[entries]).unwrap();
    assert_eq!(detect("config.json", &file), Some(Format::Json));
    assert_eq!(detect("config.conf", &file), Some(Format::Json));
    let out = decrypt("config.json", &file, &flux_ids()).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\n\t\"user\": \"admin-json\",\n\t\"port\": 5434,\n\t\"ratio\": 2.5,\n\t\"tls\": false,\n\t\"tags\": [\n\t\t\"a\",\n\t\t\"b\"\n\t],\n\t\"none\": null\n}\n"
    );
}

#[test]
fn ini_files_decrypt_section_by_section() {
    let branch = vec![
        Entry::Pair("DEFAULT".into(), Node::Map(vec![])),
        Entry::Pair(
            "database".into(),
            Node::Map(vec![
                Entry::Comment("primary".into()),
                Entry::Pair("host".into(), Node::Str("db.internal".into())),
                Entry::Pair("password".into(), Node::Str("pa55-ini".into())),
            ]),
        ),
    ];
    let mut sealed = branch.clone();
    let mut meta = metadata(&[]);
    let mut sealer = Sealer::new(&meta);
    sealer.map(&mut sealed);
    set_mac(&mut meta, sealer.finish());
    let mut sops_keys = Vec::new();
    for (key, value) in flatten("", &meta) {
        sops_keys.push(Entry::Pair(key, Node::Str(value.replace('\n', "\\n"))));
    }
    sealed.push(Entry::Pair("sops".into(), Node::Map(sops_keys)));
    let file = formats::render(Format::Ini, &[sealed]).unwrap();
    let text = String::from_utf8(file.clone()).unwrap();
    assert!(
        !text.contains("pa55-ini") && text.contains("[sops]"),
        "{text}"
    );
    assert_eq!(detect("app.ini", &file), Some(Format::Ini));
    let out = decrypt("app.ini", &file, &flux_ids()).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "; primary\n[database]\nhost     = db.internal\npassword = pa55-ini\n\n"
    );
    // The section and the key are the value's path.
    let moved = replaced(&file, "[database]", "[other]");
    assert!(matches!(
        decrypt("app.ini", &moved, &flux_ids()),
        Err(SopsError::DamagedValue { path, .. }) if path == "other.host"
    ));
}

#[test]
fn a_damaged_data_key_or_value_type_is_named_without_the_value() {
    let ids = flux_ids();
    // A value whose type was changed: its tag no longer matches (type is not authenticated,
    // so this is the decode failing).
    let file = sealed_yaml("port: 5433\n", &[]);
    let file = replaced(&file, "type:int]", "type:bool]");
    let err = decrypt("t.yaml", &file, &ids).unwrap_err();
    assert!(
        matches!(&err, SopsError::DamagedValue { path, cause } if path == "port" && cause.contains("type")),
        "{err:?}"
    );
    // A clear value where the rules want an encrypted one.
    let file = replaced(
        &fixture(FLUX, "age.yaml"),
        "key: ENC[AES256_GCM,data:mHeXsmQ=",
        "key: clear-text,data:mHeXsmQ=",
    );
    let err = decrypt("age.yaml", &file, &ids).unwrap_err();
    assert!(
        matches!(&err, SopsError::DamagedValue { path, .. } if path == "stringData.key"),
        "{err:?}"
    );
    // The armored data key cut short.
    let file = replaced(
        &fixture(FLUX, "age.yaml"),
        "LKiZDcq+nqKDUI7owZ+xNs2w5SrQjEWVhDXRSeSSRiJrK/bCYKzRxA==\n",
        "",
    );
    let err = decrypt("age.yaml", &file, &ids).unwrap_err();
    assert!(
        matches!(&err, SopsError::DamagedDataKey { recipient, .. } if recipient.starts_with("age1l44x")),
        "{err:?}"
    );
}

#[test]
fn no_error_message_holds_a_plaintext_or_key_material() {
    let mut errors: Vec<SopsError> = Vec::new();
    let mut provoke = |name: &str, bytes: &[u8], ids: &Identities| {
        errors.push(decrypt(name, bytes, ids).expect_err(name));
    };
    let empty = Identities::default();
    for (dir, file, key, _) in FIXTURES {
        let bytes = fixture(dir, file);
        let ids = identities(dir, key);
        provoke(file, &bytes, &empty);
        // Every other fixture's key is a wrong one.
        for (other_dir, _, other_key, _) in FIXTURES {
            let other = identities(other_dir, other_key);
            if other.recipients() != ids.recipients() {
                provoke(file, &bytes, &other);
            }
        }
        // Every ENC value flipped in turn, and the MAC values.
        let text = String::from_utf8(bytes.clone()).unwrap();
        for (at, _) in text.match_indices("ENC[AES256_GCM,data:") {
            let start = at + "ENC[AES256_GCM,data:".len();
            let end = start + text[start..].find(',').unwrap();
            let data = &text[start..end];
            let mut damaged = text.clone();
            damaged.replace_range(start..end, &flip_first_byte(data));
            provoke(file, damaged.as_bytes(), &ids);
            let mut retyped = text.clone();
            let type_at = at + text[at..].find("type:str]").unwrap();
            retyped.replace_range(type_at..type_at + 9, "type:bool]");
            provoke(file, retyped.as_bytes(), &ids);
        }
    }
    // The documents made here, with distinctive plaintexts.
    let typed = sealed_yaml(TYPED_YAML, &[]);
    provoke(
        "typed.yaml",
        &replaced(&typed, "type:int]", "type:bool]"),
        &flux_ids(),
    );
    provoke(
        "typed.yaml",
        &replaced(&typed, "shown", "changed"),
        &flux_ids(),
    );
    provoke("typed.yaml", &typed, &identities(NIX, "age-keys.txt"));
    provoke(
        "app.env",
        &replaced(&sealed_dotenv("K=pa55-dotenv\n", &[]), "K=ENC", "J=ENC"),
        &flux_ids(),
    );

    let keys: Vec<String> = ["age.txt", "age-global.txt"]
        .iter()
        .map(|k| (FLUX, *k))
        .chain([(NIX, "age-keys.txt"), (CUEGEN, "key.txt")])
        .map(|(d, k)| String::from_utf8(fixture(d, k)).unwrap())
        .flat_map(|text| {
            text.lines()
                .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let made_plaintexts = [
        "hunter2-typed",
        "alpha.internal",
        "pa55-dotenv",
        "5433",
        "0.75",
    ];
    assert!(errors.len() > 40, "{}", errors.len());
    for error in &errors {
        let message = format!("{error} / {error:?}");
        for secret in FIXTURE_PLAINTEXTS.iter().chain(&made_plaintexts) {
            assert!(!message.contains(secret), "{secret:?} in {message}");
        }
        for key in &keys {
            assert!(!message.contains(&key[..20]), "key material in {message}");
        }
        assert!(!message.contains("ENC["), "a ciphertext in {message}");
    }
}
