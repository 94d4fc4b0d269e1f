#!/usr/bin/env bash
# How the dashboard copes with many stacks: for repositories of N stacks (made by
# ../shared/bench/gen_fixture_repo.sh), docker-cd (release build, reconciling off) serves the
# grid; this prints the page's size and server time next to /api/stacks, and how long headless
# Chromium takes to load and paint it next to a near-empty page of the same instance (both
# include Chromium's own start-up, so the difference is the grid's cost). Medians of 3 rounds.
#
#   scripts/bench-dashboard.sh [N ...]      # default: 100 1000 10000; needs chromium, curl
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
GEN="$ROOT/../shared/bench/gen_fixture_repo.sh"
PORT=${PORT:-18390}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100 1000 10000)

for tool in cargo git curl chromium; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench-dashboard: $tool is required" >&2; exit 1; }
done
[ -x "$GEN" ] || [ -f "$GEN" ] || { echo "bench-dashboard: $GEN is missing" >&2; exit 1; }

cargo build --quiet --locked --release --bin docker-cd
BIN="$ROOT/target/release/docker-cd"
WORK=$(mktemp -d -t docker-cd-bench-dashboard.XXXXXX)
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Seconds for headless Chromium to load URL and write a screenshot.
browser_seconds() {
  local start end
  start=$(date +%s.%N)
  chromium --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars \
    --no-first-run --user-data-dir="$WORK/chromium" --window-size=1280,800 \
    --screenshot="$WORK/shot.png" "$1" >/dev/null 2>&1
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { print b - a }'
}

printf '%-7s %-12s %-12s %-11s %-11s %-13s %-13s %-10s\n' \
  stacks "html size" "json size" "html time" "json time" "browser grid" "browser empty" "grid cost"
for n in "${SIZES[@]}"; do
  repo="$WORK/repo-$n.git"
  bash "$GEN" "$n" "$repo" 2 >/dev/null 2>&1
  GIT_REPO_URL="file://$repo" GIT_DEPLOY_DIR=stacks DATA_DIR="$WORK/data-$n" \
    LISTEN_ADDR=127.0.0.1 PORT="$PORT" REFRESH_POLL_INTERVAL=off RECONCILE_ENABLED=false \
    "$BIN" >"$WORK/log-$n" 2>&1 &
  PID=$!
  for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$PORT/api/refresh-status" 2>/dev/null | grep -q '"completed"' && break
    sleep 0.2
  done
  base="http://127.0.0.1:$PORT"
  html_size=$(curl -s -o /dev/null -H 'Accept: text/html' -w '%{size_download}' "$base/")
  json_size=$(curl -s -o /dev/null -w '%{size_download}' "$base/api/stacks")
  html_t=$(for _ in 1 2 3; do curl -s -o /dev/null -H 'Accept: text/html' -w '%{time_total}\n' "$base/"; done | median)
  json_t=$(for _ in 1 2 3; do curl -s -o /dev/null -w '%{time_total}\n' "$base/api/stacks"; done | median)
  grid_t=$(for _ in 1 2 3; do browser_seconds "$base/"; done | median)
  empty_t=$(for _ in 1 2 3; do browser_seconds "$base/stacks/no-such-stack"; done | median)
  kill "$PID" && wait "$PID" 2>/dev/null || true
  PID=""
  printf '%-7s %-12s %-12s %-11s %-11s %-13s %-13s %-10s\n' "$n" \
    "$((html_size / 1024)) KiB" "$((json_size / 1024)) KiB" \
    "$(awk -v t="$html_t" 'BEGIN { printf "%.0f ms", t * 1000 }')" \
    "$(awk -v t="$json_t" 'BEGIN { printf "%.0f ms", t * 1000 }')" \
    "$(printf '%.2f s' "$grid_t")" "$(printf '%.2f s' "$empty_t")" \
    "$(awk -v g="$grid_t" -v e="$empty_t" 'BEGIN { printf "%+.2f s", g - e }')"
done
