#!/usr/bin/env bash
# Deployment history benchmark (issue 13): fsyncs per append (counted with strace when it is
# installed), load time on restart at 1,000 stacks × 20 records, append latency. The store is
# written under BENCH_DIR (default: the system's temporary directory), on that disk.
#
#   scripts/bench-history.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release --locked --example bench_history
target/release/examples/bench_history
