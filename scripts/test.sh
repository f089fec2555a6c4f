#!/usr/bin/env bash
# `make test`: builds, starts throwaway PostgreSQL and ClickHouse on free ports, runs the whole ctest
# suite (unit, integration, end-to-end) against them and stops them afterwards.
#   EVENTLOG_TEST_PG_DSN / EVENTLOG_TEST_CH_URL set: use those servers instead (no start/stop); give ClickHouse
#   credentials with EVENTLOG_TEST_CH_USER / EVENTLOG_TEST_CH_PASSWORD.
#   CTEST_ARGS: extra ctest arguments, e.g. CTEST_ARGS="-L unit". The label `cluster` is left out (make test-cluster).
#   EVENTLOG_SANITIZE=1 (make test-sanitize): AddressSanitizer + UndefinedBehaviorSanitizer build in
#   build-asan, running the unit and integration tests (the e2e tests time real processes and are not built).
#   EVENTLOG_SANITIZE=thread (make test-tsan): ThreadSanitizer build in build-tsan, running every test (unit,
#   integration, end-to-end: the relay and serve processes are TSan builds too); any report fails the test.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

scripts/install-deps.sh
if [ "${EVENTLOG_SANITIZE:-0}" = thread ]; then
    BUILD_DIR=${BUILD_DIR:-build-tsan}
    scripts/build.sh "$BUILD_DIR" -DEVENTLOG_TSAN=ON
    # Reports do not halt the process (a halted test binary left its relay children running, holding advisory locks
    # that failed later tests); any report still fails the test through its exit status.
    export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=0:second_deadlock_stack=1:exitcode=66}
elif [ "${EVENTLOG_SANITIZE:-0}" = 1 ]; then
    BUILD_DIR=${BUILD_DIR:-build-asan}
    scripts/build.sh "$BUILD_DIR" -DEVENTLOG_SANITIZE=ON
    CTEST_ARGS="-L unit|db ${CTEST_ARGS:-}"
    # Any report fails the test; leaks are reported too.
    export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
else
    BUILD_DIR=${BUILD_DIR:-build}
    scripts/build.sh "$BUILD_DIR"
fi

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
    # The superuser DSN is for the test harness only (CREATE DATABASE and roles, a security test that needs a
    # superuser to prove its trap is armed). Secrets reach the tests through the environment, never printed.
    EVENTLOG_TEST_PG_DSN="postgres://postgres:$(scripts/stack.sh secret "$stack_dir" PG_SUPERUSER_PASSWORD)@127.0.0.1:$pg_port/eventlog"
    EVENTLOG_TEST_CH_PASSWORD=$(scripts/stack.sh secret "$stack_dir" CH_PASSWORD)
    export EVENTLOG_TEST_PG_DSN EVENTLOG_TEST_CH_PASSWORD
    export EVENTLOG_TEST_CH_URL="http://127.0.0.1:$ch_port"
    export EVENTLOG_TEST_CH_USER=eventlog
    export EVENTLOG_TEST_STACK_DIR="$(realpath "$stack_dir")"
    echo "test servers in $stack_dir: PostgreSQL 127.0.0.1:$pg_port, ClickHouse 127.0.0.1:$ch_port (generated passwords)"
fi

cd "$BUILD_DIR"
# The cluster delivery test (label cluster: its own ZooKeeper and four ClickHouse servers, about 3 minutes) runs in
# `make test-cluster`, not here, unless CTEST_ARGS names it.
exclude=(-LE cluster)
case "${CTEST_ARGS:-}" in *cluster*) exclude=() ;; esac
# shellcheck disable=SC2086
ctest --output-on-failure --timeout 600 "${exclude[@]}" ${CTEST_ARGS:-}
