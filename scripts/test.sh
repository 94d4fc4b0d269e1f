#!/usr/bin/env bash
# The README's test command: builds the local test image when a Docker engine answers, then runs
# every test (unit, integration, and the end-to-end tests on the real engine).
#
# Docker tests skip with a loud message on a machine without Docker, and FAIL under CI=true.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test refresh`).
# Not the three-node swarm suite (tests/swarm_cluster.rs needs root and debootstrap): it is
# `test = false` in Cargo.toml, which --all-targets leaves out; `.ci/run` runs it on its own.
set -euo pipefail
cd "$(dirname "$0")/.."

if docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  scripts/build-test-image.sh >/dev/null
else
  echo "test.sh: the Docker engine does not answer; Docker tests will be skipped (they fail when CI=true)" >&2
fi

cargo test --locked --all-targets "$@"
