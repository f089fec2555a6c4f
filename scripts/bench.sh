#!/usr/bin/env bash
# `make bench`: drain throughput. Fills the outbox with BENCH_EVENTS (300000) ~300-byte events, then
# times `eventlog relay --drain` for each EVENT_BATCH_SIZE in BENCH_BATCH_SIZES ("1000 10000").
# Uses the local servers under .local/dev (started if needed; `make run`'s) with their generated credentials,
# and separate `eventlog_bench` databases.
set -euo pipefail
cd "$(dirname "$0")/.."
LOCAL_DIR=${LOCAL_DIR:-.local/dev}
PG_PORT=${PG_PORT:-54329}
CH_PORT=${CH_PORT:-18123}
EVENTS=${BENCH_EVENTS:-300000}
SIZES=${BENCH_BATCH_SIZES:-"1000 10000"}
scripts/stack.sh start "$LOCAL_DIR" "$PG_PORT" "$CH_PORT" >/dev/null
# The stack's generated credentials: passwords go through the environment (psql) and curl's stdin, never a
# command line; nothing is printed.
export PGPASSFILE=/nonexistent
PGPASSWORD=$(scripts/stack.sh secret "$LOCAL_DIR" PG_SUPERUSER_PASSWORD) psql -qAtw -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
    -c "DROP DATABASE IF EXISTS eventlog_bench WITH (FORCE)" -c "CREATE DATABASE eventlog_bench OWNER eventlog"
pg_password=$(scripts/stack.sh secret "$LOCAL_DIR" PG_PASSWORD)
ch_password=$(scripts/stack.sh secret "$LOCAL_DIR" CH_PASSWORD)
# Runs one ClickHouse statement as the stack's `eventlog` user.
ch() {
    printf 'header = "X-ClickHouse-User: eventlog"\nheader = "X-ClickHouse-Key: %s"\n' "$ch_password" |
        curl -fsS -K - "http://127.0.0.1:$CH_PORT/" --data-binary "$1"
}
# Runs psql on the bench database as `eventlog`.
bench_psql() { PGPASSWORD=$pg_password psql -qAtw -h 127.0.0.1 -p "$PG_PORT" -U eventlog -d eventlog_bench "$@"; }
ch "DROP DATABASE IF EXISTS eventlog_bench" >/dev/null
export DATABASE_URL="postgres://eventlog:$pg_password@127.0.0.1:$PG_PORT/eventlog_bench"
export CLICKHOUSE_URI="http://eventlog:$ch_password@127.0.0.1:$CH_PORT/eventlog_bench"
export LOG_LEVEL=warning
build/eventlog migrate >/dev/null
context='{"email":"user@example.com","first_name":"Alexander","last_name":"Petrovich-Smith","plan":"enterprise","source":"signup-form","ip":"203.0.113.7","agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120"}'
for size in $SIZES; do
    bench_psql -c "TRUNCATE eventlog.outbox, eventlog.delivery"
    ch "TRUNCATE TABLE eventlog_bench.event_log" >/dev/null 2>&1 ||
        ch "ALTER TABLE eventlog_bench.event_log DELETE WHERE 1" >/dev/null
    t0=$(date +%s.%N)
    build/eventlog emit user_created "$context" --count "$EVENTS" >/dev/null
    t1=$(date +%s.%N)
    bench_psql -c "VACUUM ANALYZE eventlog.outbox"
    t2=$(date +%s.%N)
    EVENT_BATCH_SIZE=$size build/eventlog relay --drain >/dev/null
    t3=$(date +%s.%N)
    got=$(ch "SELECT count(), uniqExact(event_id) FROM eventlog_bench.event_log FORMAT TSV")
    awk -v n="$EVENTS" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v t3="$t3" -v b="$size" -v got="$got" \
        'BEGIN { e = t1 - t0; d = t3 - t2; printf "batch=%-6d emit(COPY)=%8.0f ev/s  drain=%8.0f ev/s (%.2f s)  clickhouse count,uniq=%s\n", b, n/e, n/d, d, got }'
done
