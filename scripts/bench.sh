#!/usr/bin/env bash
# Benchmark docker-cd against the Git floor and the alternatives, in one run, and print the
# table that docs/performance.md shows (see examples/bench.rs for what is measured
# and how).
#
#   scripts/bench.sh                      # N = 100, 1,000 and 10,000 stacks, 5 rounds each
#   SIZES="1000" ROUNDS=3 scripts/bench.sh
#   RECONCILE=0 scripts/bench.sh          # skip the no-op reconcile on the Docker engine
#   SETTINGS=1 scripts/bench.sh           # every compose file also has an x-docker-cd: block
#
# The webhook burst (BURST deliveries of one new commit, per round) is sent three times: as
# GitHub, as Gitea form deliveries signed over their JSON payload, and as GitLab Push Hooks with
# the token; each gets its own p50/p99/max row.
#
# Needs git and a Rust toolchain. The no-op reconcile over 1,000 synced stacks also needs a
# Docker engine and docker-compose (or the compose plugin); it builds the local test image
# (scripts/build-test-image.sh), starts one exited container per stack and removes them all
# at the end. Fixture repositories are made with ../shared/bench/gen_fixture_repo.sh (or
# $GEN_FIXTURE) in a temp dir that is removed at the end. Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"100 1000 10000"}
ROUNDS=${ROUNDS:-5}
ALT_ROUNDS=${ALT_ROUNDS:-3}   # rounds of the slow `git show` per compose file alternative
BURST=${BURST:-1000}
RECONCILE=${RECONCILE:-1}
RECONCILE_STACKS=${RECONCILE_STACKS:-1000}
SETTINGS=${SETTINGS:-0}

GEN=${GEN_FIXTURE:-../shared/bench/gen_fixture_repo.sh}
[ -f "$GEN" ] || GEN=/work/shared/bench/gen_fixture_repo.sh
[ -f "$GEN" ] || { echo "bench: gen_fixture_repo.sh not found; set GEN_FIXTURE" >&2; exit 1; }
command -v git >/dev/null || { echo "bench: git is needed" >&2; exit 1; }

reconcile_args=()
if [ "$RECONCILE" = 1 ]; then
  if docker version >/dev/null 2>&1 && { command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1; }; then
    echo "bench: building the local test image for the reconcile measure (scripts/build-test-image.sh)" >&2
    scripts/build-test-image.sh >/dev/null
  else
    echo "bench: no Docker engine with compose here; the no-op reconcile is skipped" >&2
    RECONCILE=0
  fi
fi

echo "bench: building docker-cd and the harness (release)" >&2
cargo build --quiet --release --locked --bin docker-cd --example bench

work=$(mktemp -d -t docker-cd-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
repos=()
# SETTINGS=1: one more commit gives every stack's compose file settings (SPEC §11), so that
# every refresh reads and parses them.
add_settings() {
  local clone="$work/settings-clone"
  git clone -q "$1" "$clone"
  for f in "$clone"/stacks/*/compose.yaml "$clone"/stacks/*/compose.yml \
           "$clone"/stacks/*/docker-compose.yaml "$clone"/stacks/*/docker-compose.yml; do
    [ -f "$f" ] || continue
    printf 'x-docker-cd:\n  drift: flag\n  healthTimeout: 90s\n  dependsOn: []\n  syncWindows: [{schedule: "0 2 * * 6", duration: 2h}]\n' >> "$f"
  done
  git -C "$clone" -c user.name=bench -c user.email=bench@localhost commit -qam "bench: settings in every stack"
  git -C "$clone" push -q origin HEAD:main
  rm -rf "$clone"
}
for n in $SIZES; do
  echo "bench: generating a fixture repository of $n stacks" >&2
  bash "$GEN" "$n" "$work/repo-$n.git" 20 stacks >/dev/null
  [ "$SETTINGS" = 1 ] && add_settings "$work/repo-$n.git"
  repos+=("$n=$work/repo-$n.git")
done
if [ "$RECONCILE" = 1 ]; then
  [ -d "$work/repo-$RECONCILE_STACKS.git" ] || bash "$GEN" "$RECONCILE_STACKS" "$work/repo-$RECONCILE_STACKS.git" 20 stacks >/dev/null
  reconcile_args=(--reconcile "$work/repo-$RECONCILE_STACKS.git")
fi

echo "bench: load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
target/release/examples/bench \
  --binary target/release/docker-cd --rounds "$ROUNDS" --alt-rounds "$ALT_ROUNDS" --burst "$BURST" \
  "${reconcile_args[@]}" "${repos[@]}"
echo "bench: load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
