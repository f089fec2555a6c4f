#!/usr/bin/env bash
# `make bench`: the benchmark harness (bench/run.py; docs/benchmarks.md). Arguments go to bench/run.py, e.g.
#   scripts/bench.sh --quick                          every scenario, small sizes (~3 minutes)
#   scripts/bench.sh --scenarios drain,freshness      some scenarios at full size
#   scripts/bench.sh --use-configured                 the servers of DATABASE_URL / CLICKHOUSE_URI (emptied!)
#   make bench BENCH_ARGS="--quick --scenarios drain"
# Starts throwaway PostgreSQL and ClickHouse on free ports unless --use-configured, and removes them at exit.
# Writes bench/results/latest.json and latest.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ -x build/eventlog ] || scripts/build.sh build
# Debian's interpreter: python3-psycopg2 and python3-clickhouse-driver are installed for it (a pyenv or venv
# python3 earlier in PATH would not see them).
exec /usr/bin/python3 bench/run.py "$@"
