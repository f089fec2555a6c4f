#!/usr/bin/env bash
# `make test-cluster`: the relay delivering to a 2 x 2 ClickHouse cluster while its nodes fail, producers running all
# along (ctest e2e.cluster_delivery, label cluster; tests/e2e/cluster_delivery_e2etest.sh; docs/cluster.md, "The
# cluster test"). About 3 minutes; not part of `make test`.
#   Builds BUILD_DIR (build; nothing to do after `make build`), starts a throwaway PostgreSQL on a free port unless
#   EVENTLOG_TEST_PG_DSN names one (a superuser's), runs `ctest -L cluster` and removes what it started. The test starts
#   its own ZooKeeper and four ClickHouse servers (scripts/cluster.sh) and removes them.
#   CTEST_ARGS: extra ctest arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

scripts/install-deps.sh
BUILD_DIR=${BUILD_DIR:-build}
scripts/build.sh "$BUILD_DIR"

if [ -z "${EVENTLOG_TEST_PG_DSN:-}" ]; then
    stack_dir=".local/test-cluster-$$"
    pg_port=$(scripts/stack.sh free-port)
    cleanup() {
        "$ROOT/scripts/stack.sh" remove "$ROOT/$stack_dir" || true
    }
    trap cleanup EXIT
    EVENTLOG_PG_FSYNC=off scripts/stack.sh start-pg "$stack_dir" "$pg_port"
    # The superuser DSN reaches the test through the environment, never printed.
    EVENTLOG_TEST_PG_DSN="postgres://postgres:$(scripts/stack.sh secret "$stack_dir" PG_SUPERUSER_PASSWORD)@127.0.0.1:$pg_port/eventlog"
    export EVENTLOG_TEST_PG_DSN
    echo "test PostgreSQL in $stack_dir: 127.0.0.1:$pg_port (generated password)"
fi

cd "$BUILD_DIR"
# --verbose: the test's figures (rates, per-shard counts) are its point, so they are shown when it passes too.
# shellcheck disable=SC2086
ctest --verbose --timeout 900 -L cluster ${CTEST_ARGS:-}
