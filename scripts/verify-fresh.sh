#!/usr/bin/env bash
# verify-fresh: proves that the README's commands work on a fresh Debian 12 machine. Run it by
# hand (as root) before calling a change to the installation path resolved; it is NOT part of CI
# (it installs every package and builds from scratch: expect 15-40 minutes).
#
#   scripts/verify-fresh.sh [--no-cache] [--keep] [--repo DIR]      (or: make verify-fresh)
#
# What it does:
#   1. installs debootstrap on this machine if it is missing (apt-get, Debian's archive);
#   2. builds a bare Debian 12 root (debootstrap --variant=minbase --include=make,git,ca-certificates
#      bookworm) in a fresh .local/verify-fresh.XXXXXX. The untouched root is cached as
#      .local/verify-fresh-cache/bookworm-minbase.tar, so later runs restore that tarball instead of
#      running debootstrap again. Into the root it then puts what a Debian machine or container
#      has: /usr/sbin/policy-rc.d ("exit 101", as Debian container images ship it), this machine's
#      /etc/apt/sources.list(.d) (same mirror, security updates), /etc/resolv.conf, and an
#      /etc/hosts naming localhost if debootstrap left none;
#   3. clones the committed HEAD of this checkout (uncommitted changes are NOT included) or of
#      --repo DIR into /root/eventlog inside the root. /root stays 0700, as on a real machine: the
#      project's scripts must cope with a checkout the postgres user cannot enter;
#   4. mounts /sys, /dev, /dev/pts, /dev/shm in the root and runs `cd /root/eventlog && make test`
#      there as root with chroot, in a clean environment, in its own PID namespace with its own
#      /proc (unshare --pid --fork --mount-proc): when it ends the kernel kills whatever it
#      started. Afterwards any process whose root is still inside the folder is killed, every
#      mount under it is unmounted (checked with findmnt), and only then is the folder deleted;
#   5. prints each phase's time and the total, and exits with make test's status. When make test
#      fails, the e2e logs and ctest's logs are copied to .local/verify-fresh-failed/ first.
# The whole output also goes to .local/verify-fresh.log. Ctrl-C (or SIGTERM to its process group)
# stops it and still cleans up.
#
# Options:
#   --no-cache   run debootstrap even if the cached tarball exists (and replace the tarball)
#   --keep       keep the root folder afterwards (mounts are still removed) to look around in it:
#                chroot .local/verify-fresh.XXXXXX /bin/bash
#   --repo DIR   clone this repository (its committed HEAD) instead of the current checkout
#   -h, --help   this text
# Network: only Debian's archive (the mirror in /etc/apt/sources.list*) is needed.
set -euo pipefail

MIRROR=http://deb.debian.org/debian
SUITE=bookworm
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() { echo "verify-fresh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

SELF=$(realpath "$0")
TOP=$(cd "$(dirname "$SELF")/.." && pwd)

use_cache=1
keep=0
repo="$TOP"
while [ $# -gt 0 ]; do
    case "$1" in
        --no-cache) use_cache=0 ;;
        --keep) keep=1 ;;
        --repo) [ $# -ge 2 ] || die "--repo needs a directory"; repo=$2; shift ;;
        --repo=*) repo=${1#--repo=} ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

if [ "$(id -u)" -ne 0 ]; then
    die "must run as root (it uses debootstrap, mount and chroot): sudo scripts/verify-fresh.sh"
fi
repo=$(realpath "$repo")
git -C "$repo" rev-parse --verify -q HEAD >/dev/null || die "$repo is not a git repository with a commit"
case "$TOP" in *[[:space:]]*) die "the checkout's path contains white space: $TOP" ;; esac

LOCAL="$TOP/.local"
LOG="$LOCAL/verify-fresh.log"
CACHE_DIR="$LOCAL/verify-fresh-cache"
CACHE="$CACHE_DIR/$SUITE-minbase.tar"

# Everything below also goes to the log: run this script again behind tee.
if [ -z "${VERIFY_FRESH_LOGGING:-}" ]; then
    mkdir -p "$LOCAL"
    args=()
    [ "$use_cache" -eq 1 ] || args+=(--no-cache)
    [ "$keep" -eq 0 ] || args+=(--keep)
    set +e
    VERIFY_FRESH_LOGGING=1 "$SELF" "${args[@]}" --repo "$repo" 2>&1 | tee -i "$LOG"
    exit "${PIPESTATUS[0]}"
fi

now() { date +%s; }
dur() { local s=$1; printf '%dm%02ds' $((s / 60)) $((s % 60)); }
say() { printf '\n=== verify-fresh %s: %s\n' "$(date '+%H:%M:%S')" "$*"; }

ROOT=""
CACHE_TMP=""

# Mount points at or under $ROOT, deepest first.
mounts_under() {
    [ -n "$ROOT" ] || return 0
    findmnt -rn -o TARGET | awk -v r="$ROOT" '$0 == r || index($0, r "/") == 1' | sort -r
}

# PIDs of processes whose root directory is $ROOT or lies inside it.
# shellcheck disable=SC2317 # reached from the EXIT trap
procs_inside() {
    [ -n "$ROOT" ] && [ -d "$ROOT" ] || return 0
    local want p pid link
    want=$(stat -c '%d:%i' "$ROOT")
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [ "$pid" != $$ ] || continue
        link=$(readlink "$p/root" 2>/dev/null) || continue
        if [ "$link" = "$ROOT" ] || [ "${link#"$ROOT"/}" != "$link" ] \
            || [ "$(stat -L -c '%d:%i' "$p/root" 2>/dev/null)" = "$want" ]; then
            echo "$pid"
        fi
    done
}

# shellcheck disable=SC2317 # reached from the EXIT trap
kill_inside() {
    local pids i
    for i in $(seq 1 20); do
        pids=$(procs_inside | tr '\n' ' ')
        [ -n "${pids// /}" ] || return 0
        [ "$i" -gt 1 ] || echo "verify-fresh: killing processes left inside the root: $pids"
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.5
    done
    echo "verify-fresh: processes still inside the root: $(procs_inside | tr '\n' ' ')" >&2
    return 1
}

unmount_all() {
    local m i
    for i in 1 2 3; do
        [ -n "$(mounts_under)" ] || return 0
        while read -r m; do
            [ -n "$m" ] || continue
            umount "$m" 2>/dev/null || { [ "$i" -lt 3 ] || umount -l "$m" 2>/dev/null; } || true
        done < <(mounts_under)
    done
    [ -z "$(mounts_under)" ] || { echo "verify-fresh: still mounted: $(mounts_under | tr '\n' ' ')" >&2; return 1; }
}

# shellcheck disable=SC2317 # reached from the EXIT trap
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM HUP
    [ -z "$CACHE_TMP" ] || rm -f "$CACHE_TMP"
    if [ -n "$ROOT" ] && [ -d "$ROOT" ]; then
        local clean=1
        kill_inside || clean=0
        unmount_all || clean=0
        if [ "$clean" -eq 0 ]; then
            echo "verify-fresh: NOT deleting $ROOT (processes or mounts remain; see above)" >&2
            [ "$rc" -ne 0 ] || rc=1
        elif [ "$keep" -eq 1 ]; then
            echo "verify-fresh: kept $ROOT (no mounts left; delete it with rm -rf --one-file-system)"
        else
            rm -rf --one-file-system "$ROOT"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

t_start=$(now)
say "checkout $TOP, cloning $repo ($(git -C "$repo" log -1 --format='%h %s'))"
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    echo "note: $repo has uncommitted changes; only its committed HEAD is tested"
fi

# 1. debootstrap on this machine.
if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends debootstrap \
        || { apt-get update && apt-get install -y --no-install-recommends debootstrap; }
fi

# 2. The bare Debian root.
mkdir -p "$LOCAL"
ROOT=$(mktemp -d "$LOCAL/verify-fresh.XXXXXX")
chmod 755 "$ROOT" # mktemp makes it 0700; as / of the chroot it must be enterable by everyone
t0=$(now)
if [ "$use_cache" -eq 1 ] && [ -f "$CACHE" ]; then
    phase_root="cache restore"
    say "restoring the cached $SUITE minbase root from $CACHE (--no-cache runs debootstrap instead)"
    tar -C "$ROOT" --numeric-owner --xattrs --xattrs-include='*' -xpf "$CACHE"
else
    phase_root="debootstrap"
    say "debootstrap --variant=minbase $SUITE into $ROOT"
    debootstrap --variant=minbase --include=make,git,ca-certificates "$SUITE" "$ROOT" "$MIRROR"
    [ -z "$(mounts_under)" ] || unmount_all
    mkdir -p "$CACHE_DIR"
    CACHE_TMP="$CACHE.tmp.$$"
    tar -C "$ROOT" --one-file-system --numeric-owner --xattrs --xattrs-include='*' -cpf "$CACHE_TMP" .
    mv -f "$CACHE_TMP" "$CACHE"
    CACHE_TMP=""
    echo "cached the pristine root as $CACHE ($(du -h "$CACHE" | cut -f1)); the next run skips debootstrap"
fi
t_root=$(($(now) - t0))

# What a Debian machine or container image has on top of debootstrap.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
rm -f "$ROOT/etc/apt/sources.list" "$ROOT"/etc/apt/sources.list.d/*
[ ! -f /etc/apt/sources.list ] || cp /etc/apt/sources.list "$ROOT/etc/apt/sources.list"
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    if [ -f "$f" ]; then cp "$f" "$ROOT/etc/apt/sources.list.d/"; fi
done
if [ ! -f "$ROOT/etc/apt/sources.list" ] && [ -z "$(ls -A "$ROOT/etc/apt/sources.list.d")" ]; then
    echo "deb $MIRROR $SUITE main" >"$ROOT/etc/apt/sources.list"
fi
rm -f "$ROOT/etc/resolv.conf"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
# The machine's own certificate authorities (a TLS-inspecting egress proxy, say) belong to its network, like
# resolv.conf: without them npm's registry fails with SELF_SIGNED_CERT_IN_CHAIN inside the root.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$ROOT/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
    chroot "$ROOT" /usr/sbin/update-ca-certificates >/dev/null
fi
if [ ! -s "$ROOT/etc/hosts" ]; then
    printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
fi

# 3. The clone.
t0=$(now)
say "git clone $repo -> /root/eventlog"
git -c advice.detachedHead=false clone --quiet --no-hardlinks "$repo" "$ROOT/root/eventlog"
echo "testing commit $(git -C "$ROOT/root/eventlog" log -1 --format='%H %s')"
t_clone=$(($(now) - t0))

# 4. make test inside.
mount -t sysfs sysfs "$ROOT/sys"
mount --bind /dev "$ROOT/dev"
mount --bind /dev/pts "$ROOT/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$ROOT/dev/shm"
say "make test in the fresh root (chroot, PID namespace); this takes a while"
t0=$(now)
set +e
unshare --pid --fork --kill-child --mount-proc="$ROOT/proc" \
    chroot "$ROOT" /usr/bin/env -i HOME=/root PATH="$CHROOT_PATH" TERM="${TERM:-dumb}" LANG=C.UTF-8 \
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    /bin/bash -c 'cd /root/eventlog && make test' </dev/null
status=$?
set -e
t_test=$(($(now) - t0))

# On failure, keep what the tests left for forensics (the root itself goes unless --keep).
ARTIFACTS="$LOCAL/verify-fresh-failed"
if [ "$status" -ne 0 ]; then
    rm -rf "$ARTIFACTS"
    mkdir -p "$ARTIFACTS"
    for a in .local/e2e-logs build/Testing/Temporary; do
        if [ -d "$ROOT/root/eventlog/$a" ]; then cp -a "$ROOT/root/eventlog/$a" "$ARTIFACTS/"; fi
    done
    echo "test logs saved in $ARTIFACTS"
fi

say "done"
printf '  %-15s %s\n' "$phase_root" "$(dur "$t_root")" clone "$(dur "$t_clone")" "make test" "$(dur "$t_test")" \
    total "$(dur $(($(now) - t_start)))"
if [ "$status" -eq 0 ]; then
    echo "verify-fresh: PASSED: make test succeeded on a fresh Debian 12 root"
else
    echo "verify-fresh: FAILED: make test exited with status $status on a fresh Debian 12 root (log: $LOG)"
fi
exit "$status"
