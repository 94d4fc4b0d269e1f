#!/usr/bin/env bash
# Takes the operator guide's dashboard screenshots (docs/dashboard-*.png) from a live demo: docker-cd
# deploys fixtures/demo plus one stack that cannot start, one container is stopped by hand so
# its stack shows as drifted, then headless Chromium photographs the grid (light and dark) and
# one stack's page.
#
#   scripts/dashboard-screenshots.sh        # needs Docker, chromium; PORT=… (default 18090)
#
# Like scripts/demo.sh it deploys compose projects named web, worker, cache and billing on this
# machine's engine, and removes them (and everything else it made) when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. scripts/demo-lib.sh
PORT=${PORT:-18090}
OUT="$ROOT/docs"
PROJECTS="web worker cache billing"

for tool in cargo git docker curl chromium; do
  command -v "$tool" >/dev/null 2>&1 || { echo "screenshots: $tool is required" >&2; exit 1; }
done

scripts/build-test-image.sh >/dev/null
cargo build --quiet --locked --bin docker-cd
BIN="$ROOT/target/debug/docker-cd"

WORK=$(mktemp -d -t docker-cd-shots.XXXXXX)
REPO="$WORK/repo"
# A stack without services: it fails, and the grid shows why.
add_billing() {
  mkdir -p "$1/stacks/billing"
  cp fixtures/broken/no-services/compose.yaml "$1/stacks/billing/compose.yaml"
}
demo_repo "$REPO" "Demo stacks: web, worker, cache, billing" add_billing

cleanup() {
  trap - INT TERM EXIT
  if [ -n "${PID:-}" ]; then
    kill -TERM "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  # shellcheck disable=SC2086 # one word a project
  remove_projects $PROJECTS
  rm -rf "$WORK"
}
trap cleanup INT TERM EXIT

GIT_REPO_URL="file://$REPO" \
GIT_DEPLOY_DIR=stacks \
DATA_DIR="$WORK/data" \
LISTEN_ADDR=127.0.0.1 \
PORT="$PORT" \
REFRESH_POLL_INTERVAL=off \
RECONCILE_INTERVAL=5s \
DRIFT_POLICY=flag \
  "$BIN" >"$WORK/docker-cd.log" 2>&1 &
PID=$!

# The plain-text banner lists "  <path>  <status>" per stack.
status_of() {
  curl -fsS "http://127.0.0.1:$PORT/" 2>/dev/null | awk -v p="$1" '$1 == p { print $2 }'
}
wait_status() { # path status
  for _ in $(seq 1 240); do
    [ "$(status_of "$1")" = "$2" ] && return 0
    sleep 0.5
  done
  echo "screenshots: $1 did not become $2; docker-cd's log:" >&2
  tail -n 40 "$WORK/docker-cd.log" >&2
  exit 1
}
# The demo's worker waits for its sync window (x-docker-cd.syncWindows, Saturday night); a sync
# asked for by hand is never held back, so ask for one once the stack is listed.
for _ in $(seq 1 240); do
  [ -n "$(status_of worker)" ] && break
  sleep 0.5
done
curl -fsS -X POST "http://127.0.0.1:$PORT/api/stacks/worker/sync" >/dev/null
for stack in web worker cache; do wait_status "$stack" synced; done
wait_status billing failed

# Drift: stop the worker by hand; the next resync tick flags it.
docker stop --time 1 $(docker ps -q --filter label=com.docker.compose.project=worker) >/dev/null
wait_status worker drifted

shoot() { # file url [extra chromium flags]
  local file=$1 url=$2
  shift 2
  chromium --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars \
    --no-first-run --user-data-dir="$WORK/chromium" --window-size=1280,760 "$@" \
    --screenshot="$OUT/$file" "$url" >/dev/null 2>&1
  echo "screenshots: wrote docs/$file" >&2
}
mkdir -p "$OUT"
shoot dashboard-grid.png "http://127.0.0.1:$PORT/"
shoot dashboard-grid-dark.png "http://127.0.0.1:$PORT/" --force-dark-mode --blink-settings=preferredColorScheme=0
shoot dashboard-stack.png "http://127.0.0.1:$PORT/stacks/worker"
