#!/usr/bin/env bash
# Diff benchmark: `GitReader::diff_stack` of a stack of 1,000 files with one change, on a real
# bare mirror (median of 20 rounds, and the git processes per diff). Builds the release example.
#
#   scripts/bench-diff.sh [rounds]     # default 20
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release --locked --example bench_diff
RUST_LOG=${RUST_LOG:-warn} target/release/examples/bench_diff "${1:-20}"
