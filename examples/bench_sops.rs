//! SOPS benchmark (run by `scripts/bench-sops.sh`): `sops::detect` and `sops::decrypt` of every
//! real fixture in `tests/data/sops/` with its published test key, each timed alone; prints
//! the median of the rounds (default 200) in microseconds per file (`decrypt` detects again
//! inside), and the worst. Also, for scale, `detect` on an ordinary compose file (what every
//! other file of a stack costs), with and without the word `sops` in it.
//! Nothing is asserted. Target (issue 15): decryption adds ≤ 5 ms per decrypted file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use docker_cd::sops::{self, Identities};

/// Directory, encrypted file, key file.
const FIXTURES: &[(&str, &str, &str)] = &[
    ("fluxcd-kustomize-controller", "age.yaml", "age.txt"),
    (
        "fluxcd-kustomize-controller",
        "global-secret.yaml",
        "age-global.txt",
    ),
    ("fluxcd-kustomize-controller", "env.env", "age.txt"),
    ("fluxcd-kustomize-controller", "component.env", "age.txt"),
    ("fluxcd-kustomize-controller", "file.txt", "age.txt"),
    ("mic92-sops-nix", "secrets.yaml", "age-keys.txt"),
    ("noris-network-cuegen", "config.enc.yaml", "key.txt"),
    ("noris-network-cuegen", "secret.enc.cue", "key.txt"),
];

const COMPOSE: &str = "\
services:
  web:
    image: nginx:1.27
    ports: ['8080:80']
    environment:
      LOG_LEVEL: info
    depends_on: [db]
  db:
    image: postgres:16
    env_file: .env
    volumes: ['db:/var/lib/postgresql/data']
volumes:
  db: {}
";

fn read(dir: &str, file: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/sops")
        .join(dir)
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// The median of `rounds` timed calls of `f` (after one untimed warm-up call).
fn time(rounds: usize, mut f: impl FnMut()) -> Duration {
    f();
    let samples = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    median(samples)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|r| r.parse().expect("rounds is a number"))
        .unwrap_or(200);
    println!(
        "sops: median of {rounds} rounds per file (detect + decrypt, as a sync would call them)"
    );
    println!(
        "{:<20} {:>8} {:>8} {:>12} {:>12}",
        "file", "bytes", "store", "detect", "decrypt"
    );
    let mut worst = Duration::ZERO;
    for (dir, file, key) in FIXTURES {
        let bytes = read(dir, file);
        let text = String::from_utf8(read(dir, key)).unwrap();
        let identities = Identities::parse(&text).unwrap();
        let format = sops::detect(file, &bytes).expect("a fixture is a SOPS document");
        let detect = time(rounds, || {
            std::hint::black_box(sops::detect(file, &bytes));
        });
        let decrypt = time(rounds, || {
            std::hint::black_box(sops::decrypt(file, &bytes, &identities).unwrap());
        });
        worst = worst.max(decrypt);
        println!(
            "{file:<20} {:>8} {:>8} {:>12} {:>12}",
            bytes.len(),
            format!("{format:?}"),
            us(detect),
            us(decrypt)
        );
    }
    let compose = time(rounds, || {
        std::hint::black_box(sops::detect("compose.yaml", COMPOSE.as_bytes()));
    });
    // The word `sops` anywhere makes detect parse the file.
    let mentioning = format!("{COMPOSE}x-notes: secrets are in sops files\n");
    let parsed = time(rounds, || {
        std::hint::black_box(sops::detect("compose.yaml", mentioning.as_bytes()));
    });
    println!(
        "worst decrypt: {} (target ≤ 5 ms per decrypted file)",
        us(worst)
    );
    println!(
        "detect on an ordinary compose.yaml ({} bytes): {}; on one that mentions sops (parsed): {}",
        COMPOSE.len(),
        us(compose),
        us(parsed)
    );
}
