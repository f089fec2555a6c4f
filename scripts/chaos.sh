#!/usr/bin/env bash
# The long form of the crash test: builds, starts throwaway PostgreSQL and ClickHouse on free ports under
# .local/chaos-$$, runs the end-to-end crash tests with many rounds, stops the servers.
#
#   scripts/chaos.sh [ROUNDS] [SECONDS]
#     ROUNDS   chaos rounds of Crash.ChaosExactlyOnce (default 20; `make test` runs 3)
#     SECONDS  keep starting rounds until this many seconds have passed (default 0: rounds only)
#   EVENTLOG_CHAOS_FILTER  gtest filter (default: all Crash.* tests)
#   EVENTLOG_MULTI_SECONDS / EVENTLOG_FREEZE_SECONDS  length of the concurrent-relay / ClickHouse-freeze tests
#   EVENTLOG_E2E_SEED      reproduce a run's random choices
#   BUILD_DIR              build directory (default build)
# Relay logs and a timeline per test go to .local/e2e-logs/ (kept, with the databases, when a test fails).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-${EVENTLOG_CHAOS_ROUNDS:-20}}
seconds=${2:-${EVENTLOG_CHAOS_SECONDS:-0}}
filter=${EVENTLOG_CHAOS_FILTER:-Crash.*}
BUILD_DIR=${BUILD_DIR:-build}

scripts/build.sh "$BUILD_DIR"

stack_dir=".local/chaos-$$"
pg_port=$(scripts/stack.sh free-port)
ch_port=$(scripts/stack.sh free-port)
while [ "$ch_port" = "$pg_port" ]; do ch_port=$(scripts/stack.sh free-port); done
cleanup() {
    # ClickHouse may have been left frozen by an interrupted run.
    [ -f "$stack_dir/ch/pid" ] && kill -CONT "$(cat "$stack_dir/ch/pid")" 2>/dev/null || true
    scripts/stack.sh remove "$stack_dir" || true
}
trap cleanup EXIT
EVENTLOG_PG_FSYNC=off scripts/stack.sh start "$stack_dir" "$pg_port" "$ch_port"

# The superuser DSN is for the test harness only; secrets go through the environment, never printed.
EVENTLOG_TEST_PG_DSN="postgres://postgres:$(scripts/stack.sh secret "$stack_dir" PG_SUPERUSER_PASSWORD)@127.0.0.1:$pg_port/eventlog"
EVENTLOG_TEST_CH_PASSWORD=$(scripts/stack.sh secret "$stack_dir" CH_PASSWORD)
export EVENTLOG_TEST_PG_DSN EVENTLOG_TEST_CH_PASSWORD
export EVENTLOG_TEST_CH_URL="http://127.0.0.1:$ch_port"
export EVENTLOG_TEST_CH_USER=eventlog
export EVENTLOG_TEST_STACK_DIR="$(realpath "$stack_dir")"
export EVENTLOG_CHAOS_ROUNDS="$rounds" EVENTLOG_CHAOS_SECONDS="$seconds"
echo "chaos: $rounds rounds, at least $seconds s, filter $filter; PostgreSQL :$pg_port, ClickHouse :$ch_port"
start=$(date +%s)
status=0
"$BUILD_DIR/tests/eventlog_e2e_tests" --gtest_filter="$filter" || status=$?
echo "chaos: $( [ $status -eq 0 ] && echo PASSED || echo FAILED ) in $(( $(date +%s) - start )) s"
exit $status
