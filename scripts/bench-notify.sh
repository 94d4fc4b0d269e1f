#!/usr/bin/env bash
# Notification benchmark (issue 16): is a sync's duration unchanged when a notification
# receiver never answers? Two docker-cd instances run side by side on this machine's Docker
# engine, each with one small stack of its own: one without receivers, one with NOTIFY_EVENTS=all
# and a generic receiver that accepts connections and never answers (every sync sends it
# sync.succeeded). Each round commits a change to both stacks and times, for each instance in
# turn (the order alternates), POST /api/refresh -> the stack synced at the new commit as
# /api/stacks says. Prints the median of each, their ratio, and docker-cd's own mean
# docker_cd_sync_duration_seconds of each. Cleans up everything it creates.
#
#   scripts/bench-notify.sh [rounds]     # default 10
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-10}
scripts/build-test-image.sh >/dev/null
cargo build --quiet --locked --bin docker-cd
bin=$PWD/target/debug/docker-cd
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for p in notify-bench-plain notify-bench-hang; do
    docker compose -p "$p" down --timeout 1 >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# A receiver that accepts every connection and never answers.
hang_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1024)
held = []
while True:
    held.append(s.accept())
' "$hang_port" &
pids+=($!)

repo=$work/repo
git init -q -b main "$repo"
stack() { # dir name value
  mkdir -p "$repo/$1/$2"
  printf 'services:\n  app:\n    image: docker-cd-test/busybox:latest\n    command: ["sleep", "3600"]\n    environment:\n      ROUND: "%s"\n' "$3" >"$repo/$1/$2/compose.yaml"
}
stack a notify-bench-plain 0
stack b notify-bench-hang 0
git -C "$repo" add -A && git -C "$repo" -c user.name=bench -c user.email=bench@localhost commit -qm round-0

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_a=$(free_port)
port_b=$(free_port)
start() { # dir port [extra env...]
  local dir=$1 port=$2
  shift 2
  env -i PATH="$PATH" HOME="$HOME" DOCKER_HOST="${DOCKER_HOST:-}" RUST_LOG=warn \
    GIT_REPO_URL="file://$repo" GIT_DEPLOY_DIR="$dir" DATA_DIR="$work/data-$dir" \
    LISTEN_ADDR=127.0.0.1 PORT="$port" REFRESH_POLL_INTERVAL=off SYNC_HEALTH_TIMEOUT=30s \
    "$@" "$bin" >"$work/log-$dir" 2>&1 &
  pids+=($!)
}
start a "$port_a"
start b "$port_b" NOTIFY_URLS="generic+http://127.0.0.1:$hang_port/hook" NOTIFY_EVENTS=all

synced_at() { # port stack commit -> 0 when synced there
  curl -fsS "http://127.0.0.1:$1/api/stacks" 2>/dev/null |
    jq -e --arg p "$2" --arg c "$3" '.[] | select(.path == $p and .syncedRevision == $c and .status == "synced")' >/dev/null
}
wait_synced() { # port stack commit
  local deadline=$((SECONDS + 120))
  until synced_at "$1" "$2" "$3"; do
    if ((SECONDS > deadline)); then
      echo "timed out waiting for $2 at $3" >&2
      cat "$work"/log-* >&2
      exit 1
    fi
    sleep 0.02
  done
}
head=$(git -C "$repo" rev-parse HEAD)
wait_synced "$port_a" notify-bench-plain "$head"
wait_synced "$port_b" notify-bench-hang "$head"

now_ms() { date +%s%3N; }
timed_sync() { # port stack dir round -> ms
  stack "$3" "$2" "$4"
  git -C "$repo" add -A && git -C "$repo" -c user.name=bench -c user.email=bench@localhost commit -qm "round-$4-$3"
  local commit t0
  commit=$(git -C "$repo" rev-parse HEAD)
  t0=$(now_ms)
  curl -fsS -X POST "http://127.0.0.1:$1/api/refresh" >/dev/null
  wait_synced "$1" "$2" "$commit"
  echo $(($(now_ms) - t0))
}
plain=()
hang=()
for round in $(seq 1 "$rounds"); do
  if ((round % 2)); then
    plain+=("$(timed_sync "$port_a" notify-bench-plain a "$round")")
    hang+=("$(timed_sync "$port_b" notify-bench-hang b "$round")")
  else
    hang+=("$(timed_sync "$port_b" notify-bench-hang b "$round")")
    plain+=("$(timed_sync "$port_a" notify-bench-plain a "$round")")
  fi
done

median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
mean_sync() { # port -> mean sync duration in ms from /metrics
  curl -fsS "http://127.0.0.1:$1/metrics" | awk '
    /^docker_cd_sync_duration_seconds_sum/ {s+=$2} /^docker_cd_sync_duration_seconds_count/ {c+=$2}
    END {printf "%.0f", (c ? 1000*s/c : 0)}'
}
m_plain=$(median "${plain[@]}")
m_hang=$(median "${hang[@]}")
echo "rounds: $rounds; load: $(uptime)"
echo "refresh -> synced, no receiver:              median ${m_plain} ms  (${plain[*]})"
echo "refresh -> synced, receiver never answering: median ${m_hang} ms  (${hang[*]})"
echo "ratio (never answering / none): $(awk -v a="$m_hang" -v b="$m_plain" 'BEGIN {printf "%.2f", a/b}')"
echo "docker-cd's mean sync duration: none $(mean_sync "$port_a") ms, never answering $(mean_sync "$port_b") ms"
echo "notifications of the hanging instance: $(curl -fsS "http://127.0.0.1:$port_b/metrics" | grep '^docker_cd_notifications_total' | tr '\n' ' ')"
