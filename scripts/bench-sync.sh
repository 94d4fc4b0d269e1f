#!/usr/bin/env bash
# Sync benchmark on this machine's Docker engine: time from a signed webhook to the new
# container running (against `compose up -d` by hand, same run), and the docker/compose
# processes a no-op reconcile spawns. Cleans up everything it creates.
#
#   scripts/bench-sync.sh [rounds]     # default 5
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-test-image.sh >/dev/null
cargo build --quiet --release --locked --example bench_sync
RUST_LOG=${RUST_LOG:-warn} target/release/examples/bench_sync "${1:-5}"
