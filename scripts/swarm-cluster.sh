#!/usr/bin/env bash
# A three-node Docker Swarm on this machine, for docker-cd's cluster tests (tests/swarm_cluster.rs)
# and for a newcomer who wants a swarm to deploy to.
#
#   up      build the node image if needed, start 1 manager + 2 workers and a registry on a
#           private network, init/join the swarm, push the test image into the registry; prints
#           `DOCKER_HOST=tcp://<manager>:2375` and `REGISTRY=<addr>:5000` on stdout
#   down    remove everything `up` made (containers, network; the cached node image stays
#           unless --image)
#   status  what is running, and the swarm's `docker node ls`
#
# The node image: a Debian bookworm base made with `debootstrap` plus Debian's `docker.io` and
# `docker-registry`, imported with `docker import` (no registry, no Dockerfile). It is cached by
# content: its tag is a hash of this script's node-image section, so an edit rebuilds it.
#
# Each node is a Docker engine in a container. `--privileged` cannot be used on some hosts (no
# CAP_SYS_RESOURCE in the bounding set), so the nodes get every other capability, unconfined
# seccomp/apparmor/system paths, every device, a private cgroup namespace and a tmpfs at
# /var/lib/docker. The engines listen on tcp://0.0.0.0:2375 WITHOUT TLS, inside the private network
# only: a test cluster, not a production set-up.
#
# Needs root (debootstrap), a Docker engine, and a Debian mirror (MIRROR, default
# http://deb.debian.org/debian) for the first build. Environment: MIRROR, SWARM_PREFIX
# (default docker-cd-swarm), DOCKER_CD_TEST_IMAGE (default docker-cd-test/busybox:latest).
#
# Usage: scripts/swarm-cluster.sh up|down [--image]|status
set -euo pipefail
cd "$(dirname "$0")/.."
# The cluster runs on the host's engine: SWARM_HOST_DOCKER_HOST names it if it is not the default
# (a DOCKER_HOST printed by `up`, still exported, names the manager, not the host).
if [ -n "${SWARM_HOST_DOCKER_HOST:-}" ]; then export DOCKER_HOST="$SWARM_HOST_DOCKER_HOST"; else unset DOCKER_HOST; fi

PREFIX="${SWARM_PREFIX:-docker-cd-swarm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
NETWORK="$PREFIX-net"
MANAGER="$PREFIX-manager"
WORKERS=("$PREFIX-worker1" "$PREFIX-worker2")
REGISTRY="$PREFIX-registry"
TEST_IMAGE="${DOCKER_CD_TEST_IMAGE:-docker-cd-test/busybox:latest}"
LABEL="com.docker-cd.swarm-cluster=$PREFIX"

say() { printf 'swarm-cluster: %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ---- node image -------------------------------------------------------------------------------
# NODE-IMAGE-BEGIN (the hash of this section up to NODE-IMAGE-END is the image's tag)
NODE_PACKAGES=docker.io,docker-registry,iptables,ca-certificates,procps
# The node's init: cgroups writable, then dockerd (or the registry) in the foreground.
node_init() {
  cat <<'EOF'
#!/bin/sh
set -e
# A private cgroup namespace is mounted read-only: remount the hierarchy read-write.
# (cgroup v1: each hierarchy is a read-only bind mount, which only `remount,bind,rw` changes.)
mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
for d in /sys/fs/cgroup/*; do
  [ -d "$d" ] && [ ! -L "$d" ] || continue
  mount -o remount,bind,rw "$d" 2>/dev/null || mount -o remount,rw "$d" 2>/dev/null || true
done
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  # cgroup v2: move ourselves out of the root so the controllers can be delegated.
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 </sys/fs/cgroup/cgroup.procs >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || true
  sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers >/sys/fs/cgroup/cgroup.subtree_control || true
fi
case "${1:-dockerd}" in
registry)
  mkdir -p /var/lib/docker-registry
  cat >/etc/docker/registry/config.yml <<'CFG'
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: 0.0.0.0:5000
CFG
  exec /usr/bin/docker-registry serve /etc/docker/registry/config.yml
  ;;
*)
  rm -f /var/run/docker.pid /run/containerd/containerd.pid
  exec dockerd --host unix:///var/run/docker.sock --host tcp://0.0.0.0:2375 \
    --storage-driver overlay2 --insecure-registry "$REGISTRY_ADDR" >/var/log/dockerd.log 2>&1
  ;;
esac
EOF
}
build_node_image() {
  command -v debootstrap >/dev/null || die "needs debootstrap (apt-get install debootstrap) to build $NODE_IMAGE"
  [ "$(id -u)" = 0 ] || die "needs root to build $NODE_IMAGE with debootstrap"
  local work rootfs
  work=$(mktemp -d /tmp/docker-cd-swarm-image.XXXXXX)
  rootfs="$work/rootfs"
  say "building $NODE_IMAGE with debootstrap from $MIRROR (about a minute)"
  if ! debootstrap --variant=minbase --include="$NODE_PACKAGES" bookworm "$rootfs" "$MIRROR" \
    >"$work/debootstrap.log" 2>&1; then
    tail -20 "$work/debootstrap.log" >&2
    rm -rf "$work"
    die "debootstrap failed (log above)"
  fi
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/doc/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/archives/*.deb
  mkdir -p "$rootfs/etc/docker/registry"
  node_init >"$rootfs/usr/local/bin/node-init"
  chmod 0755 "$rootfs/usr/local/bin/node-init"
  tar -C "$rootfs" -c . | docker import \
    --change 'ENTRYPOINT ["/usr/local/bin/node-init"]' \
    --change "LABEL $LABEL" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$NODE_IMAGE" >/dev/null
  rm -rf "$work"
}
# NODE-IMAGE-END
node_image_tag() {
  sed -n '/^# NODE-IMAGE-BEGIN/,/^# NODE-IMAGE-END/p' "$0" | sha256sum | cut -c1-12
}
NODE_IMAGE="$PREFIX-node:$(node_image_tag)"

# ---- helpers ------------------------------------------------------------------------------------
exists() { docker container inspect "$1" >/dev/null 2>&1; }
running() { [ "$(docker container inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }
ip_of() {
  docker container inspect --format "{{(index .NetworkSettings.Networks \"$NETWORK\").IPAddress}}" "$1"
}
on() { # on NODE docker ARGS...: the node's own docker CLI
  local node="$1"
  shift
  docker exec "$node" "$@"
}

start_node() {
  local name="$1" role="$2"
  if running "$name"; then return 0; fi
  exists "$name" && docker rm -f "$name" >/dev/null
  local args=(
    -d --name "$name" --hostname "$name" --network "$NETWORK" --label "$LABEL"
    --cap-add ALL --cap-drop SYS_RESOURCE
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined
    --security-opt systempaths=unconfined
    --device-cgroup-rule 'a *:* rwm' --cgroupns private
    --env "REGISTRY_ADDR=$REGISTRY:5000"
  )
  if [ "$role" = registry ]; then
    docker run "${args[@]}" "$NODE_IMAGE" registry >/dev/null
  else
    docker run "${args[@]}" --tmpfs /var/lib/docker:exec,dev,suid "$NODE_IMAGE" >/dev/null
  fi
}

wait_engine() {
  local node="$1" i
  for i in $(seq 1 60); do
    on "$node" docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  docker exec "$node" tail -20 /var/log/dockerd.log >&2 || true
  die "the engine in $node does not answer after 30 s (its log above)"
}

swarm_state() { on "$1" docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo unknown; }

cmd_up() {
  local t0
  t0=$(now_ms)
  command -v docker >/dev/null || die "needs the docker CLI"
  docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "the Docker engine does not answer"
  docker image inspect "$NODE_IMAGE" >/dev/null 2>&1 || build_node_image
  local built
  built=$(now_ms)
  docker network inspect "$NETWORK" >/dev/null 2>&1 ||
    docker network create --label "$LABEL" "$NETWORK" >/dev/null
  start_node "$REGISTRY" registry
  start_node "$MANAGER" manager
  local w
  for w in "${WORKERS[@]}"; do start_node "$w" worker; done
  wait_engine "$MANAGER"
  for w in "${WORKERS[@]}"; do wait_engine "$w"; done

  local manager_ip
  manager_ip=$(ip_of "$MANAGER")
  if [ "$(swarm_state "$MANAGER")" != active ]; then
    on "$MANAGER" docker swarm init --advertise-addr "$manager_ip" --dispatcher-heartbeat 2s >/dev/null
  fi
  local token
  token=$(on "$MANAGER" docker swarm join-token -q worker)
  for w in "${WORKERS[@]}"; do
    if [ "$(swarm_state "$w")" != active ]; then
      on "$w" docker swarm join --token "$token" "$manager_ip:2377" >/dev/null
    fi
  done
  # Drop nodes left "down" by a worker restarted since (a new engine joins as a new node).
  local stale
  stale=$(on "$MANAGER" docker node ls --format '{{.ID}} {{.Status}}' | awk '$2 == "Down" {print $1}')
  [ -z "$stale" ] || on "$MANAGER" docker node rm --force $stale >/dev/null

  # The test image, into the shared registry (pushed by the manager's engine, which trusts it).
  if ! docker image inspect "$TEST_IMAGE" >/dev/null 2>&1; then
    scripts/build-test-image.sh >/dev/null
  fi
  local remote="$REGISTRY:5000/$TEST_IMAGE"
  if ! on "$MANAGER" docker image inspect "$remote" >/dev/null 2>&1; then
    docker save "$TEST_IMAGE" | docker exec -i "$MANAGER" docker load >/dev/null
    on "$MANAGER" docker tag "$TEST_IMAGE" "$remote"
  fi
  local i
  for i in $(seq 1 20); do
    on "$MANAGER" docker push "$remote" >/dev/null 2>&1 && break
    [ "$i" = 20 ] && die "cannot push $remote into the registry"
    sleep 0.5
  done
  local done_ms
  done_ms=$(now_ms)
  say "cluster up: image $(((built - t0)))ms, start $(((done_ms - built)))ms"
  printf 'DOCKER_HOST=tcp://%s:2375\n' "$manager_ip"
  printf 'REGISTRY=%s:5000\n' "$REGISTRY"
  printf 'IMAGE=%s\n' "$remote"
}

cmd_down() {
  local ids
  mapfile -t ids < <(docker ps -aq --filter "label=$LABEL")
  [ ${#ids[@]} -eq 0 ] || docker rm -f -v "${ids[@]}" >/dev/null
  if docker network inspect "$NETWORK" >/dev/null 2>&1; then docker network rm "$NETWORK" >/dev/null; fi
  if [ "${1:-}" = --image ]; then
    mapfile -t ids < <(docker images -q --filter "label=$LABEL")
    [ ${#ids[@]} -eq 0 ] || docker rmi -f "${ids[@]}" >/dev/null
  fi
  say "cluster down"
}

cmd_status() {
  docker ps -a --filter "label=$LABEL" --format '{{.Names}}\t{{.Status}}'
  if running "$MANAGER"; then
    printf 'DOCKER_HOST=tcp://%s:2375\n' "$(ip_of "$MANAGER")"
    on "$MANAGER" docker node ls
  else
    say "no manager running"
    return 1
  fi
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down "${2:-}" ;;
status) cmd_status ;;
*) die "usage: $0 up|down [--image]|status" ;;
esac
