#!/usr/bin/env bash
# Figures for docs/swarm.md: the three-node cluster's start time (first, from nothing, and cached:
# node image kept) and the time from a push to replicas updated across the nodes, read from the
# cluster suite's own log lines (it deploys with docker-cd, polling Git every 5 s).
#
# Usage: scripts/bench-swarm-cluster.sh [--first]   (--first also removes the cached node image,
# so the first start includes debootstrap: about 1.5 to 4 minutes depending on the mirror and load)
set -euo pipefail
cd "$(dirname "$0")/.."
unset DOCKER_HOST
now_ms() { echo $(($(date +%s%N) / 1000000)); }

if [ "${1:-}" = --first ]; then
  scripts/swarm-cluster.sh down --image
  t=$(now_ms)
  scripts/swarm-cluster.sh up >/dev/null
  echo "cluster start, first (node image built): $((($(now_ms) - t) / 1000)) s"
fi
scripts/swarm-cluster.sh down
t=$(now_ms)
scripts/swarm-cluster.sh up >/dev/null
echo "cluster start, cached node image: $((($(now_ms) - t) / 1000)) s"
scripts/swarm-cluster.sh down

# The suite's figures: first deploy, push to replicas updated (start-first, 3 replicas on two
# workers), drain and node loss to healthy again.
cargo test --locked --test swarm_cluster -- --nocapture 2>&1 |
  grep -E '^(first deploy|push to replicas|killed worker|swarm-cluster: cluster up|test result)' |
  sed 's/; seen .*//'
