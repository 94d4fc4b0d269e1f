#!/usr/bin/env bash
# The README's demo: builds a local Git repository from fixtures/demo in a temp dir and runs
# docker-cd against it, so it deploys three stacks on this machine's Docker engine: cache first,
# then web (it depends on cache, and runs a preSync "migration" hook), while worker waits for its
# sync window (Saturdays 02:00-04:00 UTC) until it is synced by hand.
#
#   scripts/demo.sh            # then open http://127.0.0.1:8080/ (PORT=… to change)
#
# While it runs, change the repository it prints and watch docker-cd follow:
#   cd <repo> && echo '<h1>v2</h1>' > stacks/web/www/index.html && git commit -qam v2
#   curl -X POST http://127.0.0.1:8080/api/refresh      # or wait for the 15 s poll
# Ctrl-C stops docker-cd and removes the demo's containers (DEMO_KEEP=1 leaves them running).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. scripts/demo-lib.sh
PORT=${PORT:-8080}

for tool in cargo git docker; do
  command -v "$tool" >/dev/null 2>&1 || { echo "demo: $tool is required" >&2; exit 1; }
done
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
  || { echo "demo: the Docker engine does not answer (is the daemon running, may you use its socket?)" >&2; exit 1; }

echo "demo: building the local demo image (nothing is pulled)…" >&2
scripts/build-test-image.sh >/dev/null
echo "demo: building docker-cd…" >&2
cargo build --quiet --locked --bin docker-cd
BIN="$ROOT/target/debug/docker-cd"

WORK=$(mktemp -d -t docker-cd-demo.XXXXXX)
REPO="$WORK/repo"
demo_repo "$REPO" "Demo stacks: web, worker, cache"

cleanup() {
  trap - INT TERM EXIT
  if [ -n "${PID:-}" ]; then
    kill -TERM "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  if [ "${DEMO_KEEP:-0}" != 1 ]; then
    echo "demo: removing the demo's containers, networks and volumes" >&2
    remove_projects web worker cache
    rm -rf "$WORK"
  else
    echo "demo: left running; the repository and data stay in $WORK" >&2
  fi
}
trap cleanup INT TERM EXIT

cat >&2 <<MSG

  docker-cd demo
  --------------
  repository : $REPO   (commit to it; docker-cd follows)
  dashboard  : http://127.0.0.1:$PORT/  (curl it for a plain-text summary)
  API        : curl http://127.0.0.1:$PORT/api/stacks
               curl -X POST http://127.0.0.1:$PORT/api/refresh
  webhook    : secret "demo-secret" at http://127.0.0.1:$PORT/api/webhook
  demo site  : curl http://127.0.0.1:18080/   (the "web" stack, once synced)
  settings   : web waits for cache (dependsOn) and runs a preSync hook, see
                 curl http://127.0.0.1:$PORT/api/stacks/web/history
               worker waits for its sync window (blockedBy); deploy it now with
                 curl -X POST http://127.0.0.1:$PORT/api/stacks/worker/sync
  Ctrl-C stops it and removes the demo's containers.

MSG

GIT_REPO_URL="file://$REPO" \
GIT_DEPLOY_DIR=stacks \
DATA_DIR="$WORK/data" \
LISTEN_ADDR=127.0.0.1 \
PORT="$PORT" \
WEBHOOK_SECRET=demo-secret \
REFRESH_POLL_INTERVAL=15s \
RECONCILE_INTERVAL=15s \
RECONCILE_REMOVE_ENABLED=true \
  "$BIN" &
PID=$!
wait "$PID"
