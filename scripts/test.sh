#!/usr/bin/env bash
# `make test`: builds, starts throwaway PostgreSQL and ClickHouse on free ports, runs the whole ctest
# suite (unit, integration, end-to-end) against them and stops them afterwards.
#   EVENTLOG_TEST_PG_DSN / EVENTLOG_TEST_CH_URL set: use those servers instead (no start/stop).
#   CTEST_ARGS: extra ctest arguments, e.g. CTEST_ARGS="-L unit".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

scripts/install-deps.sh
BUILD_DIR=${BUILD_DIR:-build}
scripts/build.sh "$BUILD_DIR"

started=""
if [ -z "${EVENTLOG_TEST_PG_DSN:-}" ] || [ -z "${EVENTLOG_TEST_CH_URL:-}" ]; then
    stack_dir=".local/test-$$"
    pg_port=$(scripts/stack.sh free-port)
    ch_port=$(scripts/stack.sh free-port)
    while [ "$ch_port" = "$pg_port" ]; do ch_port=$(scripts/stack.sh free-port); done
    started="$stack_dir"
    cleanup() {
        "$ROOT/scripts/stack.sh" remove "$ROOT/$started" || true
    }
    trap cleanup EXIT
    EVENTLOG_PG_FSYNC=off scripts/stack.sh start "$stack_dir" "$pg_port" "$ch_port"
    export EVENTLOG_TEST_PG_DSN="postgres://eventlog:eventlog@127.0.0.1:$pg_port/eventlog"
    export EVENTLOG_TEST_CH_URL="http://127.0.0.1:$ch_port"
    export EVENTLOG_TEST_STACK_DIR="$(realpath "$stack_dir")"
    echo "test servers: PostgreSQL $EVENTLOG_TEST_PG_DSN, ClickHouse $EVENTLOG_TEST_CH_URL"
fi

cd "$BUILD_DIR"
# shellcheck disable=SC2086
ctest --output-on-failure --timeout 600 ${CTEST_ARGS:-}
