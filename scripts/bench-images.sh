#!/usr/bin/env bash
# Image-update check cost (SPEC §12, issue 15): N stacks sharing K images from a real registry
# (Debian's docker-registry on 127.0.0.1), all deployed by docker-cd; then one check with
# nothing new. Prints the manifest requests and pulls the registry saw (from its access log),
# docker-cd's own count, and how long the check took. Target: ≤ K manifest requests, 0 pulls.
#
#   scripts/bench-images.sh              # N=100 stacks, K=10 images
#   STACKS=50 IMAGES=5 scripts/bench-images.sh
#
# Needs Docker, docker-registry (apt-get install docker-registry) and a Rust toolchain. Starts
# N containers (sleep) and removes them, the registry and its images at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

STACKS=${STACKS:-100}
IMAGES=${IMAGES:-10}
REGISTRY_BIN=${REGISTRY_BIN:-/usr/bin/docker-registry}
[ -x "$REGISTRY_BIN" ] || { echo "bench-images: $REGISTRY_BIN is missing (apt-get install docker-registry)" >&2; exit 1; }
docker version >/dev/null 2>&1 || { echo "bench-images: the Docker engine does not answer" >&2; exit 1; }

echo "bench-images: building docker-cd (release) and the test image" >&2
cargo build --quiet --release --locked --bin docker-cd
scripts/build-test-image.sh >/dev/null
IMAGE=docker-cd-test/busybox:latest

work=$(mktemp -d -t docker-cd-bench-images.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
api=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg="127.0.0.1:$port"
cd_pid=""
reg_pid=""
cleanup() {
  [ -n "$cd_pid" ] && kill "$cd_pid" 2>/dev/null && wait "$cd_pid" 2>/dev/null || true
  ids=$(docker ps -aq --filter "label=com.docker-cd.owner=docker-cd" --filter "label=com.docker.compose.project" \
        | xargs -r docker inspect --format '{{.Id}} {{index .Config.Labels "com.docker.compose.project"}}' \
        | awk '$2 ~ /^bimg-/ {print $1}')
  # Ten at a time: this VM's engine stopped answering a removal of 100 containers at once.
  [ -n "$ids" ] && echo "$ids" | xargs -r -n 10 docker rm -f >/dev/null || true
  docker network ls --format '{{.Name}}' | grep '^bimg-' | xargs -r docker network rm >/dev/null || true
  for i in $(seq 0 $((IMAGES - 1))); do
    docker rmi "$reg/bench/img$i:1" >/dev/null 2>&1 || true
  done
  [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/registry.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $work/storage
http:
  addr: $reg
EOF
"$REGISTRY_BIN" serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 1 50); do curl -sf "http://$reg/v2/" >/dev/null && break; sleep 0.2; done
for i in $(seq 0 $((IMAGES - 1))); do
  docker tag "$IMAGE" "$reg/bench/img$i:1"
  docker push --quiet "$reg/bench/img$i:1" >/dev/null
done

git init -q --initial-branch=main "$work/src"
for n in $(seq -w 1 "$STACKS"); do
  mkdir -p "$work/src/stacks/bimg-$n"
  i=$(( 10#$n % IMAGES ))
  printf 'x-docker-cd:\n  imageUpdates: true\nservices:\n  app:\n    image: %s\n    init: true\n    network_mode: none\n    command: ["sleep", "3600"]\n' \
    "$reg/bench/img$i:1" > "$work/src/stacks/bimg-$n/compose.yaml"
done
git -C "$work/src" add -A
git -C "$work/src" -c user.name=bench -c user.email=bench@localhost commit -qm "$STACKS stacks"
git clone -q --bare "$work/src" "$work/origin.git"

echo "bench-images: deploying $STACKS stacks sharing $IMAGES images" >&2
GIT_REPO_URL="file://$work/origin.git" GIT_DEPLOY_DIR=stacks DATA_DIR="$work/data" PORT="$api" \
  LISTEN_ADDR=127.0.0.1 RECONCILE_INTERVAL=1h REFRESH_POLL_INTERVAL=off SYNC_CONCURRENCY=8 \
  SYNC_HEALTH_TIMEOUT=2m LOG_FORMAT=json RUST_LOG=info \
  target/release/docker-cd > "$work/docker-cd.log" 2>&1 &
cd_pid=$!
synced() {
  curl -sf "http://127.0.0.1:$api/api/stacks" | python3 -c '
import json, sys
stacks = json.load(sys.stdin)
print(sum(1 for s in stacks if s["status"] == "synced"))' 2>/dev/null || echo 0
}
for _ in $(seq 1 600); do
  [ "$(synced)" = "$STACKS" ] && break
  sleep 1
done
[ "$(synced)" = "$STACKS" ] || { echo "bench-images: not all stacks synced; see $work/docker-cd.log" >&2; tail -20 "$work/docker-cd.log" >&2; exit 1; }

heads_before=$(grep -c '"HEAD /v2/.*/manifests/' "$work/registry.log" || true)
gets_before=$(grep -cE '"GET /v2/.*/(manifests|blobs)/' "$work/registry.log" || true)
checks_before=$(grep -c '"image check done"' "$work/docker-cd.log" || true)
started=$(date +%s%N)
curl -sf -X POST -H 'Content-Type: application/json' -d '{}' "http://127.0.0.1:$api/api/image-updates" >/dev/null
for _ in $(seq 1 600); do
  [ "$(grep -c '"image check done"' "$work/docker-cd.log" || true)" -gt "$checks_before" ] && break
  sleep 0.05
done
elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))
sleep 2 # the registry's access log lags a little
heads=$(( $(grep -c '"HEAD /v2/.*/manifests/' "$work/registry.log" || true) - heads_before ))
gets=$(( $(grep -cE '"GET /v2/.*/(manifests|blobs)/' "$work/registry.log" || true) - gets_before ))
summary=$(grep '"image check done"' "$work/docker-cd.log" | tail -1)
updates=$(curl -sf "http://127.0.0.1:$api/api/stacks" | python3 -c '
import json, sys
stacks = json.load(sys.stdin)
print(sum(1 for s in stacks for i in s.get("images", []) if i["updateAvailable"]))')
echo "image check over $STACKS stacks sharing $IMAGES images, nothing new:"
echo "  manifest HEAD requests the registry saw: $heads (target <= $IMAGES)"
echo "  manifest/blob GETs (pulls) the registry saw: $gets (target 0)"
echo "  services with an update available: $updates (expected 0)"
echo "  check took: ${elapsed_ms} ms (POST to 'image check done')"
echo "  docker-cd: $(echo "$summary" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); f=d.get("fields",d); print({k: f[k] for k in ("stacks","services","requests","updates") if k in f})')"
