#!/usr/bin/env bash
# make test-deploy: builds the container images and runs the compose stack of docker-compose.yml end to end, on a
# machine with nothing but Debian 12 (as root), then removes everything it made. Not in CI (it builds eventlog in a
# container from scratch: about 15 minutes on 2 cores). docs/deploy.md, "Tested here".
#
#   1. installs docker.io, docker-compose and debootstrap if missing, and starts its own dockerd (data, socket and
#      pid under .local/test-deploy/, overlay2, bridge networking);
#   2. makes the base images the Dockerfiles name (debian:bookworm, debian:bookworm-slim) with debootstrap and
#      `docker import` (no registry is reachable); the debootstrap tarball is cached in .local/deploy-cache/;
#   3. builds the eventlog image (its size must stay under 150 MB) and stand-ins for the official PostgreSQL,
#      ClickHouse and Prometheus images from Debian's packages (deploy/test/compose.test.yml);
#   4. `docker-compose up -d` with generated passwords; measures the time from `up` to the first event in ClickHouse;
#   5. makes an API key with `docker-compose run --rm migrate apikey create`, posts events through the published
#      port while `docker kill` ends relay-1 mid-stream (and starts it again), and checks that ClickHouse holds every
#      accepted event exactly once;
#   6. `docker-compose down` and `up -d` again: the events are still there (named volumes);
#   7. tears everything down: containers, networks, volumes, images, dockerd and its data.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
[ "$(id -u)" = 0 ] || { echo "test-deploy: run as root (it starts dockerd)" >&2; exit 1; }
step() { echo "=== test-deploy: $* ($(date +%H:%M:%S), ${SECONDS}s)"; }
fail() { echo "test-deploy: FAILED: $*" >&2; exit 1; }

need=()
for p in docker.io docker-compose debootstrap; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    step "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

WORK=$ROOT/.local/test-deploy
CACHE=$ROOT/.local/deploy-cache
PROJECT=eventlogdeploytest
mkdir -p "$WORK" "$CACHE"
export DOCKER_HOST=unix://$WORK/docker.sock
COMPOSE=(docker-compose -p "$PROJECT" -f docker-compose.yml -f deploy/test/compose.test.yml --env-file "$WORK/env")

cleanup() {
    set +e
    step "teardown"
    if [ -S "$WORK/docker.sock" ]; then
        "${COMPOSE[@]}" down -v --remove-orphans --rmi all >/dev/null 2>&1
        docker ps -aq | xargs -r docker rm -f >/dev/null 2>&1
        docker volume ls -q | xargs -r docker volume rm >/dev/null 2>&1
        docker network prune -f >/dev/null 2>&1
        left="containers=$(docker ps -aq | wc -l) volumes=$(docker volume ls -q | wc -l) networks=$(docker network ls -q --filter type=custom | wc -l)"
        echo "left behind: $left"
    fi
    if [ -n "${dockerd_pid:-}" ]; then
        kill "$dockerd_pid" 2>/dev/null
        for _ in $(seq 1 150); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
    fi
    # dockerd's overlay mounts, then its data.
    grep " $WORK/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

step "starting dockerd"
dockerd --data-root "$WORK/data" --exec-root "$WORK/exec" --pidfile "$WORK/dockerd.pid" -H "$DOCKER_HOST" \
    --storage-driver overlay2 >"$WORK/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 1 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
docker info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log"; fail "dockerd did not start"; }

step "base images (debootstrap, docker import)"
if [ ! -f "$CACHE/bookworm-minbase.tar" ]; then
    rootfs=$(mktemp -d "$WORK/rootfs.XXXXXX")
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 ||
        { tail -20 "$WORK/debootstrap.log"; fail "debootstrap"; }
    # What Debian's container images add: services never start during apt-get, the same archive and security
    # updates as this machine, no apt caches.
    printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d" && chmod 755 "$rootfs/usr/sbin/policy-rc.d"
    # and, as theirs, apt keeps no downloaded package after an install
    printf '%s\n' 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };' \
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };' \
        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' >"$rootfs/etc/apt/apt.conf.d/docker-clean"
    rm -f "$rootfs/etc/apt/sources.list"
    cp /etc/apt/sources.list.d/*.sources "$rootfs/etc/apt/sources.list.d/" 2>/dev/null ||
        echo "deb http://deb.debian.org/debian bookworm main" >"$rootfs/etc/apt/sources.list"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
    tar -C "$rootfs" -cf "$CACHE/bookworm-minbase.tar" .
    rm -rf "$rootfs"
fi
docker import "$CACHE/bookworm-minbase.tar" debian:bookworm >/dev/null
# slim: as Debian's, without documentation, manual pages and locales, and dpkg told to leave them out of later
# installs. Made from a second tarball (removing them in a layer on top would not make the image smaller).
if [ ! -f "$CACHE/bookworm-slim.tar" ]; then
    rootfs=$(mktemp -d "$WORK/rootfs.XXXXXX")
    tar -C "$rootfs" -xf "$CACHE/bookworm-minbase.tar"
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' 'path-exclude /usr/share/locale/*' 'path-exclude /usr/share/info/*' \
        >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim"
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/info/*
    tar -C "$rootfs" -cf "$CACHE/bookworm-slim.tar" .
    rm -rf "$rootfs"
fi
docker import --change 'CMD ["bash"]' "$CACHE/bookworm-slim.tar" debian:bookworm-slim >/dev/null

step "building the eventlog image"
commit=$(git rev-parse --short=12 HEAD)
DOCKER_BUILDKIT=0 docker build -q --build-arg VERSION=0.1.0 --build-arg COMMIT="$commit" -t eventlog:latest . >/dev/null ||
    fail "docker build"
size=$(docker image inspect eventlog:latest --format '{{.Size}}')
echo "eventlog image: $((size / 1000 / 1000)) MB ($size bytes), commit $commit"
[ "$size" -lt 150000000 ] || fail "the image is over 150 MB"
[ "$(docker image inspect eventlog:latest --format '{{.Config.User}}')" = "10001:10001" ] || fail "the image runs as root"
docker run --rm eventlog:latest --version

step "building the stand-in images"
{
    for v in POSTGRES_SUPERUSER_PASSWORD EVENTLOG_DB_PASSWORD EVENTLOG_RELAY_DB_PASSWORD EVENTLOG_API_DB_PASSWORD \
        CLICKHOUSE_PASSWORD SECRET_KEY; do
        echo "$v=$(openssl rand -hex 32)"
    done
    port=$(scripts/stack.sh free-port)
    echo "HTTP_PUBLISH=127.0.0.1:$port"
    echo "ENVIRONMENT=deploy-test"
} >"$WORK/env"
chmod 600 "$WORK/env"
port=$(sed -n 's/^HTTP_PUBLISH=127.0.0.1://p' "$WORK/env")
ch_password=$(sed -n 's/^CLICKHOUSE_PASSWORD=//p' "$WORK/env")
"${COMPOSE[@]}" build -q postgres clickhouse prometheus >/dev/null

ch() { "${COMPOSE[@]}" exec -T clickhouse clickhouse-client --user eventlog --password "$ch_password" --query "$1"; }
rows() { ch "SELECT count() FROM eventlog.event_log" 2>/dev/null || echo 0; }

step "docker-compose up"
t_up=$SECONDS
"${COMPOSE[@]}" up -d >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; "${COMPOSE[@]}" logs --tail 30; fail "up"; }
for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.5
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || { "${COMPOSE[@]}" logs --tail 50; fail "serve never answered"; }
token=$("${COMPOSE[@]}" run --rm -T migrate apikey create --name deploy-test --scope events:write 2>/dev/null | tail -n 1)
[[ "$token" == elk_* ]] || fail "apikey create printed no token"
post() {  # post ID: one event with that id; prints the HTTP status
    curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        --data "{\"event_type\":\"deploy_test\",\"event_context\":{},\"event_id\":\"$1\"}" \
        "http://127.0.0.1:$port/api/v1/events"
}
first_id=$(cat /proc/sys/kernel/random/uuid)
[ "$(post "$first_id")" = 202 ] || fail "the first event was not accepted"
for _ in $(seq 1 600); do [ "$(rows)" -ge 1 ] && break; sleep 0.2; done
[ "$(rows)" -ge 1 ] || { "${COMPOSE[@]}" logs --tail 50; fail "the first event never reached ClickHouse"; }
echo "from up to the first event in ClickHouse: $((SECONDS - t_up)) s"
"${COMPOSE[@]}" ps

step "events while relay-1 is killed"
accepted=("$first_id")
for i in $(seq 1 600); do
    id=$(cat /proc/sys/kernel/random/uuid)
    status=$(post "$id")
    case "$status" in
        202) accepted+=("$id") ;;
        *) echo "event $i: HTTP $status (not counted; a 503 is the API's retry-later)" ;;
    esac
    if [ "$i" = 200 ]; then
        docker kill --signal KILL "${PROJECT}_relay-1_1" >/dev/null
        echo "relay-1 killed (SIGKILL) after 200 events"
    fi
    [ "$i" = 400 ] && "${COMPOSE[@]}" start relay-1 >/dev/null && echo "relay-1 started again"
done
expected=${#accepted[@]}
for _ in $(seq 1 600); do [ "$(rows)" -ge "$expected" ] && break; sleep 0.2; done
read -r total unique <<<"$(ch "SELECT count(), uniqExact(event_id) FROM eventlog.event_log FORMAT TSV")"
printf '%s\n' "${accepted[@]}" | LC_ALL=C sort >"$WORK/accepted.txt"
ch "SELECT toString(event_id) FROM eventlog.event_log FORMAT TSV" | LC_ALL=C sort >"$WORK/stored.txt"
echo "accepted $expected events; ClickHouse holds $total rows, $unique distinct"
[ "$total" = "$expected" ] && [ "$unique" = "$expected" ] || fail "not exactly once"
diff -q "$WORK/accepted.txt" "$WORK/stored.txt" >/dev/null || fail "ClickHouse holds other events than were accepted"

step "restart: docker-compose down, then up"
"${COMPOSE[@]}" down >/dev/null 2>&1
"${COMPOSE[@]}" up -d >/dev/null 2>&1
for _ in $(seq 1 300); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.5; done
after=$(rows)
echo "after the restart ClickHouse holds $after rows"
[ "$after" = "$expected" ] || fail "the data did not survive the restart"
[ "$(post "$(cat /proc/sys/kernel/random/uuid)")" = 202 ] || fail "the key did not survive the restart"
echo "test-deploy: PASSED in ${SECONDS}s"
