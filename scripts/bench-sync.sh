#!/usr/bin/env bash
# Sync benchmark on this machine's Docker engine (the figures of issue 12, see
# examples/bench_sync.rs): webhook -> running and healthy against `compose up -d [--wait]` by
# hand (same run); cold start of 24 slow-starting stacks with SYNC_CONCURRENCY=4 against 1;
# the time from a container turning healthy to the API saying so between syncs; the docker
# processes of a reconcile tick over many synced stacks (right after, and steady); the
# processes of a no-op reconcile over the demo stacks. Cleans up everything it creates.
#
#   scripts/bench-sync.sh [rounds] [stacks]     # default 5 rounds, 1000 stacks
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-test-image.sh >/dev/null
cargo build --quiet --release --locked --example bench_sync
echo "compose: $(docker compose version 2>/dev/null || echo 'no plugin'); $(docker-compose version --short 2>/dev/null || echo 'no v1') (v1); load: $(uptime)"
RUST_LOG=${RUST_LOG:-warn} target/release/examples/bench_sync "${1:-5}" "${2:-1000}"
echo "load at the end: $(uptime)"
