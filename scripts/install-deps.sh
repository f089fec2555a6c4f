#!/usr/bin/env bash
# Installs the Debian packages eventlog needs to build, test, lint and run locally, and nothing else.
# As root it runs apt-get; otherwise it prints the exact command to run. With every package present
# it does nothing (no apt-get update), so `make run` / `make test` stay fast after the first time.
#
# Servers installed here are never started as system services: the project starts its own
# PostgreSQL and ClickHouse processes under .local/ (scripts/stack.sh). While apt runs, a
# policy-rc.d that refuses service starts is put in place, unless the machine already has one
# (Debian container images do); an existing one is left untouched.
set -euo pipefail

# Each group: the packages, then why the project needs them.
PACKAGES=(
    # Build: compiler, CMake + Ninja (scripts/build.sh), ccache (faster rebuilds), pkg-config (CMake's find modules).
    build-essential cmake ninja-build ccache pkg-config
    # Scripts: git (lint's file list, verify-fresh's clone), curl (ClickHouse readiness, README's query),
    # ca-certificates (HTTPS to ClickHouse), procps (ps: stack.sh's liveness checks).
    git curl ca-certificates procps
    # Libraries linked by the code: libpq (pg), libcurl (clickhouse), OpenSSL (hashes),
    # simdjson (JSON input), fmt (formatting), CLI11 (the eventlog command line), libargon2 (administrators'
    # password hashes, argon2id).
    libpq-dev libcurl4-openssl-dev libssl-dev libsimdjson-dev libfmt-dev libcli11-dev libargon2-dev
    # The HTTP API (`eventlog serve`): Boost.Beast and Boost.Asio (header-only; Debian 12 ships 1.74),
    # zlib (gzip request bodies).
    libboost1.74-dev zlib1g-dev
    # Tests: GoogleTest and GoogleMock (tests/unit, tests/integration, tests/e2e).
    libgtest-dev libgmock-dev
    # Protocol tests against the protocols' reference parsers: promtool (`promtool check metrics` on the rendered
    # metrics), Sentry's Python SDK (its envelope parser, run with /usr/bin/python3). Node.js and npm for the
    # OpenTelemetry proto check are added below unless a node with npm is already installed.
    prometheus python3-sentry-sdk
    # The console's browser tests (tests/browser, ctest label browser): Debian's Chromium, headless, driven through
    # chromedriver by python3-selenium (run with /usr/bin/python3). axe-core comes from npm, below.
    chromium chromium-driver python3-selenium
    # Servers the local stack and the tests run as plain processes (psql for `make shell`, the bench).
    postgresql-15 postgresql-client-15 clickhouse-server clickhouse-client
    # The ClickHouse cluster of the cluster tests (scripts/cluster.sh): ZooKeeper, run as a plain process.
    zookeeperd
    # `make lint` (run in CI): formatting, clang-tidy, cppcheck.
    clang-format clang-tidy cppcheck
    # `make bench` (bench/run.py): PostgreSQL and ClickHouse clients for the harness and the Celery-style baseline
    # (bench/baseline_celery_style.py), Google Benchmark for the micro-benchmarks (bench/micro), wrk for the HTTP
    # scenario. pgbench comes with postgresql-15.
    python3 python3-psycopg2 python3-clickhouse-driver libbenchmark-dev wrk
)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

# Node.js and npm (tests/protocol: the OTLP check; tests/browser: axe-core). A node that came with its own npm
# (NodeSource's nodejs package bundles it and conflicts with Debian's npm package) is used as it is.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    missing+=(nodejs npm)
fi

# The npm packages of tests/protocol (the OTLP check) and tests/browser (axe-core), exactly as each package-lock.json
# pins them, from the npm registry; again only when the installed tree is older than the lock file. Install scripts
# are not run (none is needed).
install_npm_packages() {
    local dir
    cd "$(dirname "$0")/.."
    for dir in tests/protocol tests/browser; do
        [ -f "$dir/package-lock.json" ] || continue  # a copy without the tests (the quick start's) needs none
        if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
            echo "installing the npm packages of $dir (npm ci)"
            (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
        fi
    done
}

if [ ${#missing[@]} -eq 0 ]; then
    install_npm_packages
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
# An EXIT trap's last status becomes the script's: it must end in success whether or not it removed the file.
cleanup() {
    if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi
    return 0
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "installed: ${missing[*]}"
install_npm_packages
