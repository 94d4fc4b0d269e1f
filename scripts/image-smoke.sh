#!/usr/bin/env bash
# Image smoke test: builds the runtime image from docker/Dockerfile on this machine, without a
# registry, runs docker-cd from it the way docker/docker-compose.yml does, and checks that it
# deploys a stack and reports `synced`. Prints the image size and the time from container start
# to the first `synced`. Needs root (debootstrap, chown), a Docker engine, git, curl, jq, and
# network access to a Debian mirror (MIRROR, default http://deb.debian.org/debian).
#
# Nothing can be pulled, so the public base images of the Dockerfile are replaced by local ones:
#   RUNTIME_IMAGE     docker-cd-test/debian:bookworm, made with `debootstrap --variant=minbase`
#                     and `docker import`, trimmed like debian:bookworm-slim (cached: built once)
#   DOCKER_CLI_IMAGE  docker-cd-test/docker-tools:trixie, FROM scratch with Debian trixie's
#   COMPOSE_IMAGE     `docker-cli` (/usr/local/bin/docker) and `docker-compose` v2 plugin
#                     (/docker-compose), the paths the real images have (cached: built once)
#   RUST_IMAGE        not used: `--target runtime` builds everything but the binary, and the
#                     binary built on this host (Debian bookworm, the runtime's glibc) is added
#                     on top with `COPY`, exactly as the Dockerfile's last stage does.
# SMOKE_REBUILD=1 rebuilds the cached images. Everything else the run creates (container,
# deployed stack, data dir, fixture repository, the final image) is removed at the end, also on
# failure; the runtime stage stays tagged docker-cd-test/docker-cd-runtime:smoke as build cache.
set -euo pipefail
cd "$(dirname "$0")/.."

MIRROR=${MIRROR:-http://deb.debian.org/debian}
BASE_IMAGE=docker-cd-test/debian:bookworm
TOOLS_IMAGE=docker-cd-test/docker-tools:trixie
RUNTIME_IMAGE=docker-cd-test/docker-cd-runtime:smoke
RUN_ID="dcdsmoke$(printf '%x' "$(( $(date +%s%N) / 1000 % 0xffffffff ))")"
IMAGE="docker-cd-test/docker-cd:${RUN_ID}"
CONTAINER="${RUN_ID}-agent"
STACK="${RUN_ID}web" # the stack directory, hence the compose project: no operator uses this
SYNC_TIMEOUT=${SYNC_TIMEOUT:-180}

say() { printf 'image-smoke: %s\n' "$*" >&2; }
die() {
  say "FAILED: $*"
  exit 1
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
for tool in docker git curl jq; do
  command -v "$tool" >/dev/null || die "needs $tool"
done
[ "$(id -u)" = 0 ] || die "needs root (debootstrap for the base image, chown of the data dir)"
docker version --format '{{.Server.Version}}' >/dev/null || die "the Docker engine does not answer"

work=$(mktemp -d /tmp/docker-cd-smoke.XXXXXX)
cleanup() {
  local status=$?
  if [ $status -ne 0 ] && docker container inspect "$CONTAINER" >/dev/null 2>&1; then
    say "docker-cd's log (last 40 lines):"
    docker logs --tail 40 "$CONTAINER" 2>&1 | sed 's/^/  | /' >&2 || true
  fi
  docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
  local ids
  mapfile -t ids < <(docker ps -aq --filter "label=com.docker.compose.project=${STACK}")
  [ ${#ids[@]} -eq 0 ] || docker rm -f -v "${ids[@]}" >/dev/null 2>&1 || true
  mapfile -t ids < <(docker network ls -q --filter "label=com.docker.compose.project=${STACK}")
  [ ${#ids[@]} -eq 0 ] || docker network rm "${ids[@]}" >/dev/null 2>&1 || true
  docker rmi "$IMAGE" >/dev/null 2>&1 || true
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT

phase_start=$(now_ms)
phase() {
  local t
  t=$(now_ms)
  say "$1 ($(((t - phase_start) / 1000)) s)"
  phase_start=$t
}

# ---- base image: Debian bookworm, debootstrapped and imported --------------------------------
if [ "${SMOKE_REBUILD:-0}" = 1 ] || ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || die "needs debootstrap (apt-get install debootstrap)"
  say "building $BASE_IMAGE with debootstrap from $MIRROR"
  rootfs="$work/rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  # What debian:bookworm-slim does: no docs, man pages or translations, no apt caches.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  echo "deb $MIRROR bookworm main" >"$rootfs/etc/apt/sources.list"
  tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  phase "built $BASE_IMAGE"
fi

# ---- stand-in for docker:*-cli and docker/compose-bin: Debian trixie packages -----------------
if [ "${SMOKE_REBUILD:-0}" = 1 ] || ! docker image inspect "$TOOLS_IMAGE" >/dev/null 2>&1; then
  say "building $TOOLS_IMAGE from Debian trixie's docker-cli and docker-compose (v2) packages"
  mkdir -p "$work/tools"
  cat >"$work/tools/Dockerfile" <<EOF
FROM $BASE_IMAGE AS debs
LABEL com.docker-cd-test.smoke=tools-debs
RUN echo "deb $MIRROR trixie main" > /etc/apt/sources.list.d/trixie.list \\
 && printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' > /etc/apt/preferences.d/trixie \\
 && apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t trixie \\
      docker-cli docker-compose >/dev/null \\
 && /usr/bin/docker --version \\
 && /usr/libexec/docker/cli-plugins/docker-compose version
FROM scratch
COPY --from=debs /usr/bin/docker /usr/local/bin/docker
COPY --from=debs /usr/libexec/docker/cli-plugins/docker-compose /docker-compose
EOF
  docker build -q -t "$TOOLS_IMAGE" "$work/tools" >/dev/null
  docker image prune -f --filter label=com.docker-cd-test.smoke=tools-debs >/dev/null
  phase "built $TOOLS_IMAGE"
fi

# ---- the image -------------------------------------------------------------------------------
say "building the runtime stage of docker/Dockerfile"
docker build -q -f docker/Dockerfile --target runtime \
  --build-arg RUNTIME_IMAGE="$BASE_IMAGE" \
  --build-arg DOCKER_CLI_IMAGE="$TOOLS_IMAGE" \
  --build-arg COMPOSE_IMAGE="$TOOLS_IMAGE" \
  --label com.docker-cd-test.smoke=runtime \
  -t "$RUNTIME_IMAGE" . >/dev/null
# The previous runtime image, if this build replaced it.
docker image prune -f --filter label=com.docker-cd-test.smoke=runtime >/dev/null
phase "built $RUNTIME_IMAGE"
say "building docker-cd (release) on the host"
cargo build --release --locked --quiet --bin docker-cd
phase "built target/release/docker-cd"
mkdir -p "$work/image"
cp target/release/docker-cd "$work/image/docker-cd"
printf 'FROM %s\nCOPY docker-cd /usr/local/bin/docker-cd\n' "$RUNTIME_IMAGE" >"$work/image/Dockerfile"
docker build -q -t "$IMAGE" "$work/image" >/dev/null
image_bytes=$(docker image inspect --format '{{.Size}}' "$IMAGE")
binary_bytes=$(stat -c %s target/release/docker-cd)
phase "built $IMAGE"

# ---- a fixture repository with one stack -----------------------------------------------------
[ -n "$(docker image ls -q docker-cd-test/busybox:latest)" ] || scripts/build-test-image.sh >/dev/null
repo="$work/infra.git"
src="$work/src"
mkdir -p "$src/$STACK/www"
marker="served from ${STACK} through a relative bind mount"
echo "$marker" >"$src/$STACK/www/index.html"
cat >"$src/$STACK/compose.yaml" <<'EOF'
services:
  web:
    image: docker-cd-test/busybox:latest
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: ["127.0.0.1::8080"]
    volumes: ["./www:/www:ro"]
EOF
git_() { git -c user.name=smoke -c user.email=smoke@example.invalid -c init.defaultBranch=main "$@"; }
git_ init -q "$src"
git_ -C "$src" add -A
git_ -C "$src" commit -q -m "smoke stack"
commit=$(git -C "$src" rev-parse HEAD)
git_ clone -q --bare "$src" "$repo"
chown -R 10001:10001 "$repo" # read by the image's user, like any repository it would fetch

# ---- run it as docker/docker-compose.yml does --------------------------------------------------
socket=${DOCKER_HOST:-unix:///var/run/docker.sock}
[ "${socket#unix://}" != "$socket" ] || die "DOCKER_HOST=$socket: only a unix socket can be mounted"
socket=${socket#unix://}
data="$work/data" # DATA_DIR: the same absolute path on the host and in the container
install -d -o 10001 -g 10001 -m 0750 "$data"
docker run -d --name "$CONTAINER" \
  --group-add "$(stat -c %g "$socket")" \
  --security-opt no-new-privileges:true --cap-drop ALL \
  --stop-timeout 30 \
  --health-interval 2s \
  -p 127.0.0.1::8080 \
  -v "$socket:/var/run/docker.sock" \
  -v "$data:$data" -e DATA_DIR="$data" \
  -v "$repo:$repo:ro" -e GIT_REPO_URL="file://$repo" \
  -e LOG_FORMAT=json \
  "$IMAGE" >/dev/null
started_ns=$(date -d "$(docker inspect --format '{{.State.StartedAt}}' "$CONTAINER")" +%s%N)
port=$(docker port "$CONTAINER" 8080/tcp | head -1 | sed 's/.*://')
api="http://127.0.0.1:$port"

synced_ms=""
deadline=$(($(date +%s) + SYNC_TIMEOUT))
while [ "$(date +%s)" -lt "$deadline" ]; do
  status=$(curl -fsS --max-time 2 "$api/api/stacks" 2>/dev/null |
    jq -r --arg s "$STACK" '.[] | select(.path == $s) | .status' 2>/dev/null || true)
  if [ "$status" = synced ]; then
    synced_ms=$((($(date +%s%N) - started_ns) / 1000000))
    break
  fi
  [ "$(docker inspect --format '{{.State.Running}}' "$CONTAINER")" = true ] || die "the container stopped"
  sleep 0.1
done
[ -n "$synced_ms" ] || die "stack $STACK not synced within ${SYNC_TIMEOUT}s (last status: ${status:-none})"
phase "stack $STACK synced"

# ---- what an operator would check ----------------------------------------------------------
stack_json=$(curl -fsS "$api/api/stacks/$STACK")
[ "$(jq -r .syncedRevision <<<"$stack_json")" = "$commit" ] || die "synced revision is not $commit: $stack_json"
web_port=$(jq -r '.containers[0].ports' <<<"$stack_json" | sed -n 's/.*127\.0\.0\.1:\([0-9]*\)->8080.*/\1/p')
[ -n "$web_port" ] || die "no published port in $stack_json"
page=$(curl -fsS --max-time 5 "http://127.0.0.1:$web_port/")
[ "$page" = "$marker" ] || die "the stack served $page instead of its bind-mounted file"
readyz=$(curl -sS "$api/readyz")
jq -e '.ready == true and (.composeTool | test("plugin"))' <<<"$readyz" >/dev/null ||
  die "not ready, or not through the compose plugin: $readyz"
metrics=$(curl -fsS "$api/metrics")
grep -qF "docker_cd_stack_status{stack=\"$STACK\",status=\"synced\"} 1" <<<"$metrics" ||
  die "/metrics lacks the synced stack"
grep -q '^docker_cd_command_duration_seconds_count{program="docker",subcommand="compose up"} [1-9]' <<<"$metrics" ||
  die "/metrics lacks the compose up duration"
docker exec "$CONTAINER" docker-cd status >"$work/status.txt" || die "docker-cd status failed: $(cat "$work/status.txt")"
grep -qE "^${STACK} +${STACK} +synced +healthy +1/1" "$work/status.txt" || die "docker-cd status: $(cat "$work/status.txt")"
docker exec "$CONTAINER" docker-cd check >"$work/check.txt" || die "docker-cd check failed: $(cat "$work/check.txt")"
grep -q "^check passed" "$work/check.txt" || die "docker-cd check: $(cat "$work/check.txt")"

# JSON logs: every line parses; refresh and sync outcomes carry trigger, commit, stack, duration.
docker logs "$CONTAINER" >"$work/log.json" 2>&1
jq -s -e 'length > 0' "$work/log.json" >/dev/null || die "a log line is not JSON"
jq -s -e --arg c "$commit" 'any(.[]; .message == "refresh completed" and .trigger == "startup"
    and .commit == $c and (.duration_ms | type) == "number")' "$work/log.json" >/dev/null ||
  die "no JSON 'refresh completed' line with trigger, commit and duration_ms"
jq -s -e --arg c "$commit" --arg s "$STACK" 'any(.[]; .message == "sync succeeded" and .stack == $s
    and .commit == $c and .trigger == "refresh" and (.duration_ms | type) == "number")' \
  "$work/log.json" >/dev/null ||
  die "no JSON 'sync succeeded' line with stack, commit, trigger and duration_ms"

health=""
for _ in $(seq 1 60); do
  health=$(docker inspect --format '{{.State.Health.Status}}' "$CONTAINER")
  [ "$health" = healthy ] && break
  sleep 1
done
[ "$health" = healthy ] || die "the HEALTHCHECK did not turn healthy (status: $health)"
phase "checks passed: page, readyz, metrics, status, check, JSON logs, healthy"

stop_start=$(now_ms)
docker stop -t 30 "$CONTAINER" >/dev/null
stop_ms=$(($(now_ms) - stop_start))
exit_code=$(docker inspect --format '{{.State.ExitCode}}' "$CONTAINER")
[ "$exit_code" = 0 ] || die "docker-cd exited with $exit_code after SIGTERM"
[ "$stop_ms" -lt 25000 ] || die "SIGTERM took ${stop_ms} ms (more than 25 s)"
[ -n "$(docker ps -q --filter "label=com.docker.compose.project=${STACK}")" ] ||
  die "stopping docker-cd stopped the stack it deployed"

printf '\nimage-smoke: passed\n'
printf '  image size:                 %d MB (binary %d MB)\n' $((image_bytes / 1000000)) $((binary_bytes / 1000000))
printf '  container start to synced:  %d ms\n' "$synced_ms"
printf '  SIGTERM to exit:            %d ms (exit code 0)\n' "$stop_ms"
