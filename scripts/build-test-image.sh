#!/usr/bin/env bash
# Build the local test image `docker-cd-test/busybox:latest` FROM scratch, without any registry.
#
# The image is what docker-cd's Docker tests, the fixtures and the demo run: nothing can be pulled
# on CI, so it is assembled from files already on the machine and loaded with `docker import`
# (no Dockerfile, no builder, no buildx needed).
#
# Where the root filesystem comes from, in order:
#   1. a static busybox: $BUSYBOX, or `busybox` on PATH, /bin/busybox, /usr/bin/busybox, ...
#   2. otherwise a dynamically linked busybox, copied with the libraries `ldd` lists for it
#   3. otherwise, as root with apt-get: `apt-get update && apt-get install -y busybox-static`
#      (CI on Debian); skipped with --no-install
#   4. otherwise host binaries (sh, sleep, cat, env, ls, echo, ...) with their libraries and the
#      dynamic loader: enough for `sh -c 'while :; do sleep 3600; done'` (Linux hosts only)
#
# Idempotent: an existing image with the label com.docker-cd.test=true is kept unless --force.
# Prints the image id on stdout as its last line; progress goes to stderr.
#
# Usage: scripts/build-test-image.sh [--force] [--no-install] [--host-binaries] [--image NAME]
set -euo pipefail

IMAGE="${DOCKER_CD_TEST_IMAGE:-docker-cd-test/busybox:latest}"
DOCKER="${DOCKER_BIN:-docker}"
FORCE=0
ALLOW_INSTALL=1
MODE=auto # auto | host

# Applets the tests, fixtures and demo rely on. A static busybox provides all of them; the
# host-binaries fallback provides whichever exist (only sh and sleep are required).
REQUIRED_HOST_BINARIES=(sh sleep)
OPTIONAL_HOST_BINARIES=(cat env ls echo true false printf test mkdir rm cp mv touch grep sed head
  tail wc id hostname date kill sort tr cut basename dirname uname wget nc httpd)

log() { printf 'build-test-image: %s\n' "$*" >&2; }
die() {
  printf 'build-test-image: error: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

while [ $# -gt 0 ]; do
  case "$1" in
  --force) FORCE=1 ;;
  --no-install) ALLOW_INSTALL=0 ;;
  --host-binaries) MODE=host ;;
  --image)
    [ $# -ge 2 ] || die "--image needs a value"
    IMAGE="$2"
    shift
    ;;
  -h | --help)
    usage
    exit 0
    ;;
  *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done

command -v "$DOCKER" >/dev/null 2>&1 || die "docker CLI not found ('$DOCKER'); install Docker or set DOCKER_BIN"
"$DOCKER" info >/dev/null 2>&1 || die "cannot reach the Docker daemon with '$DOCKER info' (is it running? may this user use the socket?)"

# --- idempotency ------------------------------------------------------------------------------

if [ "$FORCE" -eq 0 ] && "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
  label="$("$DOCKER" image inspect --format '{{ index .Config.Labels "com.docker-cd.test" }}' "$IMAGE" 2>/dev/null || true)"
  if [ "$label" = "true" ]; then
    log "$IMAGE already exists; keeping it (use --force to rebuild)"
    "$DOCKER" image inspect --format '{{.Id}}' "$IMAGE"
    exit 0
  fi
  log "$IMAGE exists but lacks the label com.docker-cd.test=true; rebuilding it"
fi
old_id="$("$DOCKER" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"

# --- helpers ----------------------------------------------------------------------------------

work="$(mktemp -d "${TMPDIR:-/tmp}/docker-cd-test-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root"

# is_static FILE: true when FILE is an executable that needs no dynamic loader.
is_static() {
  local out
  if command -v file >/dev/null 2>&1; then
    out="$(file -L "$1" 2>/dev/null || true)"
    case "$out" in
    *"statically linked"* | *"static-pie linked"*) return 0 ;;
    *"dynamically linked"*) return 1 ;;
    esac
  fi
  command -v ldd >/dev/null 2>&1 || return 1
  # glibc's ldd says "not a dynamic executable" (exit 1); newer ones say "statically linked".
  out="$(LC_ALL=C ldd "$1" 2>&1 || true)"
  case "$out" in
  *"not a dynamic executable"* | *"statically linked"*) return 0 ;;
  *) return 1 ;;
  esac
}

# find_busybox static|any: print the first busybox found of that kind.
find_busybox() {
  local kind="$1" c
  for c in "${BUSYBOX:-}" "$(command -v busybox 2>/dev/null || true)" /bin/busybox /usr/bin/busybox \
    /sbin/busybox /usr/sbin/busybox /usr/lib/initramfs-tools/bin/busybox; do
    if [ -z "$c" ] || [ ! -f "$c" ] || [ ! -x "$c" ]; then continue; fi
    if [ "$kind" = any ] || is_static "$c"; then
      printf '%s\n' "$c"
      return 0
    fi
  done
  return 1
}

# copy_libs BINARY: copy every shared library and the loader `ldd` lists into the rootfs, at the
# same absolute path (the loader finds them there through its default search path).
copy_libs() {
  local bin="$1" line path
  is_static "$bin" && return 0
  command -v ldd >/dev/null 2>&1 || die "ldd not found: cannot collect the libraries of $bin"
  while IFS= read -r line; do
    # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)",
    # "linux-vdso.so.1 (0x...)" (virtual, skipped), "libfoo.so => not found" (fatal).
    case "$line" in
    *"=> not found"*) die "$bin needs a library that is not installed: ${line#"${line%%[![:space:]]*}"}" ;;
    esac
    path="$(printf '%s\n' "$line" | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; t; s/^[[:space:]]*\(\/[^ ]*\).*/\1/p')"
    [ -n "$path" ] || continue
    [ -e "$root$path" ] && continue
    mkdir -p "$root$(dirname "$path")"
    cp -L "$path" "$root$path"
  done < <(LC_ALL=C ldd "$bin" 2>/dev/null)
}

write_etc() {
  mkdir -p "$root/etc" "$root/tmp" "$root/root" "$root/var/www"
  chmod 1777 "$root/tmp"
  chmod 0700 "$root/root"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
}

# install_busybox PATH: busybox at /bin/busybox plus a symlink for every applet it has.
install_busybox() {
  local bb="$1" applet list
  mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin"
  cp -L "$bb" "$root/bin/busybox"
  chmod 0755 "$root/bin/busybox"
  copy_libs "$bb"
  # --list-full prints paths such as "usr/bin/wget"; older builds only have --list.
  if list="$("$bb" --list-full 2>/dev/null)" && [ -n "$list" ]; then
    :
  else
    list="$("$bb" --list | sed 's|^|bin/|')"
  fi
  while IFS= read -r applet; do
    [ -n "$applet" ] || continue
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$root/$(dirname "$applet")"
    ln -sf /bin/busybox "$root/$applet"
  done <<<"$list"
  # The applets the project relies on must all be there.
  for applet in sh sleep cat env ls echo wget httpd true false nc; do
    if ! printf '%s\n' "$list" | grep -qx "\(.*/\)\{0,1\}$applet"; then
      log "warning: $bb has no '$applet' applet"
    fi
  done
}

# install_host_binaries: the fallback for machines without any busybox.
install_host_binaries() {
  [ "$(uname -s)" = Linux ] || die "no busybox found, and host binaries only work on Linux hosts; install busybox-static (or busybox) and re-run"
  local name src real first
  declare -A copied=() # real path -> name of the first copy
  mkdir -p "$root/bin" "$root/usr"
  ln -s ../bin "$root/usr/bin" # /usr/bin/env for "#!/usr/bin/env" scripts
  ln -s bin "$root/sbin"
  for name in "${REQUIRED_HOST_BINARIES[@]}" "${OPTIONAL_HOST_BINARIES[@]}"; do
    # `type -P` ignores builtins (echo, true, test are also shell builtins).
    src="$(type -P "$name" 2>/dev/null || true)"
    if [ -z "$src" ]; then
      case " ${REQUIRED_HOST_BINARIES[*]} " in
      *" $name "*) die "host binary '$name' not found on PATH" ;;
      esac
      continue
    fi
    real="$(readlink -f "$src")"
    first="${copied[$real]:-}"
    if [ -n "$first" ]; then
      # Same file under another name (multi-call binaries such as coreutils or uutils dispatch on
      # argv[0], which a symlink keeps).
      ln -s "$first" "$root/bin/$name"
    else
      cp -L "$src" "$root/bin/$name"
      chmod 0755 "$root/bin/$name"
      copy_libs "$real"
      copied[$real]="$name"
    fi
  done
  log "host binaries: $(find "$root/bin" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort | tr '\n' ' ')"
}

install_busybox_static_with_apt() {
  [ "$ALLOW_INSTALL" -eq 1 ] || return 1
  [ "$(id -u)" -eq 0 ] || {
    log "not root: not installing busybox-static"
    return 1
  }
  command -v apt-get >/dev/null 2>&1 || {
    log "apt-get not found: not installing busybox-static"
    return 1
  }
  log "no static busybox found; installing busybox-static with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update && apt-get install -y --no-install-recommends busybox-static; } >"$work/apt.log" 2>&1; then
    tail -n 20 "$work/apt.log" >&2
    log "warning: apt-get install busybox-static failed (output above)"
    return 1
  fi
}

# --- assemble the root filesystem -------------------------------------------------------------

variant=""
if [ "$MODE" = auto ]; then
  if bb="$(find_busybox static)"; then
    variant=busybox-static
  elif bb="$(find_busybox any)"; then
    # Before apt: busybox-static conflicts with (and would remove) an installed busybox package.
    variant=busybox-dynamic
  elif install_busybox_static_with_apt && bb="$(find_busybox static)"; then
    variant=busybox-static
  fi
fi

if [ -n "$variant" ]; then
  log "using $variant: $bb ($("$bb" 2>&1 | head -n 1 || true))"
  install_busybox "$bb"
else
  if [ "$MODE" = host ]; then
    log "--host-binaries: assembling the image from host binaries and their libraries"
  else
    log "no busybox available; assembling the image from host binaries and their libraries"
  fi
  variant=host-binaries
  install_host_binaries
fi
write_etc

# --- import -----------------------------------------------------------------------------------

tar_owner=(--owner=0 --group=0 --numeric-owner)
tar --version 2>/dev/null | grep -q 'GNU tar' || tar_owner=(--uid 0 --gid 0) # bsdtar

log "importing $variant root filesystem ($(du -sh "$root" | cut -f1)) as $IMAGE"
new_id="$(tar -C "$root" "${tar_owner[@]}" -cf - . | "$DOCKER" import \
  --change 'LABEL com.docker-cd.test=true' \
  --change "LABEL com.docker-cd.test.variant=$variant" \
  --change 'LABEL org.opencontainers.image.title="docker-cd test image"' \
  --change 'LABEL org.opencontainers.image.description="busybox-like image for docker-cd tests, built by scripts/build-test-image.sh"' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["sh"]' \
  --message "docker-cd test image ($variant)" \
  - "$IMAGE")"

# Smoke test: the shapes of command the tests and fixtures use.
if ! out="$("$DOCKER" run --rm --network none "$IMAGE" sh -c 'sleep 0 && echo ok' 2>&1)" || [ "$out" != ok ]; then
  die "the new image does not run 'sh -c \"sleep 0 && echo ok\"': $out"
fi

# A --force rebuild leaves the previous image untagged; drop it when nothing uses it.
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  "$DOCKER" image rm "$old_id" >/dev/null 2>&1 || true
fi

log "built $IMAGE ($variant)"
printf '%s\n' "$new_id"
