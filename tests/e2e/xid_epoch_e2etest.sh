#!/usr/bin/env bash
# Storage v2 across a transaction id epoch boundary, on a cluster whose epoch is above 0 (ctest: e2e.xid_epoch,
# label e2e). docs/delivery.md, "Ranges": rows carry their writer's 64-bit transaction id, ranges are snapshots, the
# outbox's ring of partitions is chosen by (txid >> 16) & 15; none of it may break where the 32-bit counter wraps.
#
#   tests/e2e/xid_epoch_e2etest.sh SOURCE_DIR BUILD_DIR     (ClickHouse: EVENTLOG_TEST_CH_URL/_USER/_PASSWORD)
#
# 1. A throwaway PostgreSQL 15 cluster, frozen, then pg_resetwal'd to epoch 1 and 32-bit xid 4,294,900,000: 67,296
#    transaction ids before the counter wraps (epoch 2), 1,760 before the next partition's turn.
# 2. `eventlog migrate`, a relay running, producers committing single events while a transaction that wrote before
#    the wrap stays open across it, and ids burnt (written subtransactions) to carry the counter past the wrap and
#    over several partition turns.
# 3. Every committed event in ClickHouse exactly once, the rolled-back one nowhere, the ranges' offline check clean
#    (chunks hold their counts, no row in two chunks, none in none), and retention truncated partitions on the way.
set -euo pipefail
src=$(realpath "$1")
build=$(realpath "$2")
bin="$build/eventlog"
pgbin=/usr/lib/postgresql/15/bin
: "${EVENTLOG_TEST_CH_URL:?ClickHouse for the test: EVENTLOG_TEST_CH_URL (scripts/test.sh sets it)}"

dir=$(mktemp -d /var/tmp/eventlog-epoch.XXXXXX)
chown postgres "$dir"
chmod 700 "$dir"
port=$("$src/scripts/stack.sh" free-port)
relay_pid=""
chdb="eventlog_epoch_$$"
ch() { curl -sS --fail-with-body -u "${EVENTLOG_TEST_CH_USER:-default}:${EVENTLOG_TEST_CH_PASSWORD:-}" \
    --data-binary "$1" "$EVENTLOG_TEST_CH_URL/"; }
cleanup() {
    [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null || true
    runuser -u postgres -- "$pgbin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    ch "DROP DATABASE IF EXISTS $chdb" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    [ -f "$dir/relay.log" ] && { echo "--- relay log ---" >&2; tail -n 40 "$dir/relay.log" >&2; }
    exit 1
}
pg_start() {
    runuser -u postgres -- "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_prepared_transactions=10" start >/dev/null
}
psql_() { psql -X -v ON_ERROR_STOP=1 -qAt "postgres://postgres@127.0.0.1:$port/eventlog" "$@"; }

# 1. The cluster: frozen first, so that no tuple's xmin looks like the future after the jump.
runuser -u postgres -- "$pgbin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
pg_start
runuser -u postgres -- "$pgbin/vacuumdb" -h "$dir" -p "$port" --all --freeze -q
runuser -u postgres -- "$pgbin/pg_ctl" -D "$dir/data" -w stop >/dev/null
runuser -u postgres -- "$pgbin/pg_resetwal" -e 1 -x 4294900000 "$dir/data" >/dev/null
# pg_xact must hold the page of the new next id (pg_resetwal's manual): its segment, zero-filled.
runuser -u postgres -- dd if=/dev/zero of="$dir/data/pg_xact/0FFF" bs=8192 count=32 2>/dev/null
pg_start
psql -X -qAt "postgres://postgres@127.0.0.1:$port/postgres" -c "CREATE DATABASE eventlog"
first=$(psql_ -c "SELECT txid_current()")
[ "$((first >> 32))" -eq 1 ] || fail "the premise: epoch 1, got txid $first"

export DATABASE_URL="postgres://postgres@127.0.0.1:$port/eventlog"
export CLICKHOUSE_URI="$EVENTLOG_TEST_CH_URL/$chdb"
export CLICKHOUSE_USER="${EVENTLOG_TEST_CH_USER:-default}" CLICKHOUSE_PASSWORD="${EVENTLOG_TEST_CH_PASSWORD:-}"
export LOG_LEVEL=info RELAY_POLL_MS=10 ENVIRONMENT=epoch_test
ch "CREATE DATABASE IF NOT EXISTS $chdb" >/dev/null
(cd "$dir" && "$bin" migrate >"$dir/migrate.log" 2>&1) || { cat "$dir/migrate.log" >&2; fail "eventlog migrate"; }

# 2. A relay, producers, a transaction open across the wrap, and the counter carried over it.
"$bin" relay >"$dir/relay.log" 2>&1 &
relay_pid=$!
emit() { psql_ -c "SELECT eventlog.emit('epoch_event', '{\"n\":$1}'::json)" >/dev/null; }
for i in $(seq 1 50); do emit "$i"; done
# Held open across the wrap: it wrote with epoch 1 and commits in epoch 2.
coproc HELD { psql -X -qAt "postgres://postgres@127.0.0.1:$port/eventlog" 2>&1; }
echo "BEGIN; SELECT eventlog.emit('held_across_the_wrap', '{}'::json);" >&"${HELD[1]}"
psql_ -c "BEGIN; SELECT eventlog.emit('rolled_back', '{}'::json); ROLLBACK;" >/dev/null
burn() {  # written subtransactions: one transaction id each
    psql_ -c "CREATE TEMP TABLE burn (x integer); DO \$\$ BEGIN FOR i IN 1..$1 LOOP BEGIN INSERT INTO burn VALUES (i);
              EXCEPTION WHEN OTHERS THEN NULL; END; END LOOP; END \$\$" >/dev/null
}
for round in 1 2 3 4; do
    burn 40000
    for i in $(seq 1 25); do emit "$((round * 100 + i))"; done
done
now=$(psql_ -c "SELECT txid_current()")
[ "$((now >> 32))" -ge 2 ] || fail "the premise: the counter wrapped into epoch 2, got txid $now"
echo "COMMIT;" >&"${HELD[1]}"
echo '\q' >&"${HELD[1]}"
wait "$HELD_PID" 2>/dev/null || true
for i in $(seq 1 20); do emit "$((900 + i))"; done

# 3. Everything delivered once; the checks.
expected=$((50 + 4 * 25 + 20 + 1))
for _ in $(seq 1 300); do
    got=$(ch "SELECT count() FROM $chdb.event_log" 2>/dev/null || echo 0)
    [ "$got" -ge "$expected" ] && break
    sleep 0.1
done
sleep 6  # a recovery pass (every 5 s) runs retention with every range acknowledged
read -r count uniq < <(ch "SELECT count(), uniqExact(event_id) FROM $chdb.event_log FORMAT TSV")
[ "$count" -eq "$expected" ] && [ "$uniq" -eq "$expected" ] || fail "ClickHouse holds $count rows ($uniq ids), expected $expected once each"
[ "$(ch "SELECT count() FROM $chdb.event_log WHERE event_type = 'rolled_back'")" -eq 0 ] || fail "a rolled-back event was delivered"
[ "$(ch "SELECT count() FROM $chdb.event_log WHERE event_type = 'held_across_the_wrap'")" -eq 1 ] ||
    fail "the transaction held open across the wrap was not delivered once"
pending=$(psql_ -c "SELECT pending + in_flight_records FROM eventlog.backlog()")
[ "$pending" -eq 0 ] || fail "$pending events or records still pending"
problems=$(psql_ -c "
WITH covered AS MATERIALIZED (
    SELECT c.batch_id, k.txid, k.id FROM eventlog.outbox_chunk c JOIN eventlog.outbox_range r ON r.id = c.range_id,
    LATERAL eventlog.range_rows(r.lo, r.hi, c.first_txid, c.first_id, c.last_txid, c.last_id, 9223372036854775807) k)
SELECT (SELECT count(*) FROM (SELECT 1 FROM covered GROUP BY txid, id HAVING count(*) > 1) d)
     + (SELECT count(*) FROM eventlog.outbox o WHERE NOT EXISTS (SELECT 1 FROM covered x WHERE x.txid = o.txid AND x.id = o.id))
     + (SELECT count(*) FROM eventlog.outbox_range r JOIN eventlog.outbox_range p ON p.id = r.id - 1 WHERE p.hi::text <> r.lo::text)")
[ "$problems" -eq 0 ] || fail "the offline range check found $problems problems"
truncated=$(grep -c '"outbox_partition_truncated"' "$dir/relay.log" || true)
[ "$truncated" -ge 1 ] || fail "retention truncated no partition across $((now - first)) transaction ids"
left=$(psql_ -c "SELECT count(*) FROM eventlog.outbox")
echo "ok: txid $first (epoch 1) to $now (epoch $((now >> 32))): $count events once, $truncated partitions truncated, $left rows left in the outbox"
