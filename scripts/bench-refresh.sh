#!/usr/bin/env bash
# Refresh benchmark: builds fixture repositories of N stacks with ../shared/bench/gen_fixture_repo.sh
# (or $GEN_FIXTURE) and times docker-cd's Git reader against plain git on each (cold, after one
# new commit, nothing new), printing medians, ratios and git process counts.
#
#   scripts/bench-refresh.sh            # N = 1000 and 10000
#   scripts/bench-refresh.sh 100 1000   # other sizes
set -euo pipefail
cd "$(dirname "$0")/.."
GEN=${GEN_FIXTURE:-../shared/bench/gen_fixture_repo.sh}
[ -x "$GEN" ] || GEN=/work/shared/bench/gen_fixture_repo.sh
[ -x "$GEN" ] || { echo "bench: gen_fixture_repo.sh not found; set GEN_FIXTURE" >&2; exit 1; }
ROUNDS=${ROUNDS:-5}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000)

cargo build --quiet --release --locked --example bench_refresh
work=$(mktemp -d -t docker-cd-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
for n in "${sizes[@]}"; do
  "$GEN" "$n" "$work/repo-$n.git" 20 stacks >/dev/null
  target/release/examples/bench_refresh "$work/repo-$n.git" stacks "$ROUNDS"
  echo
done
