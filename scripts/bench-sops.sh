#!/usr/bin/env bash
# SOPS benchmark: `sops::detect` and `sops::decrypt` of every real fixture in tests/data/sops/
# (median of 200 rounds per file, in µs), and `detect` on an ordinary compose file. Builds the
# release example. Target (issue 15): ≤ 5 ms per decrypted file.
#
#   scripts/bench-sops.sh [rounds]     # default 200
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release --locked --example bench_sops
target/release/examples/bench_sops "${1:-200}"
