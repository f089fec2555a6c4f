#!/usr/bin/env bash
# Installs the Debian packages eventlog needs to build, test and run locally.
# As root it runs apt-get; otherwise it prints the exact command to run.
# Servers installed here are never started as system services: the project starts its own
# PostgreSQL and ClickHouse processes under .local/ (see scripts/stack.sh).
set -euo pipefail

PACKAGES=(
    build-essential cmake ninja-build ccache pkg-config git curl ca-certificates procps
    libpq-dev libcurl4-openssl-dev libssl-dev
    libboost1.74-dev libsimdjson-dev libfmt-dev libspdlog-dev libcli11-dev
    libgtest-dev libgmock-dev libbenchmark-dev libargon2-dev
    postgresql-15 postgresql-client-15
    clickhouse-server clickhouse-client
    prometheus
    clang-format clang-tidy cppcheck
)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "eventlog needs these Debian packages; run as root:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

echo "installing: ${missing[*]}"
# Keep package post-install scripts from starting system-wide services.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
fi
cleanup() { [ "$created_policy" -eq 1 ] && rm -f "$policy"; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
