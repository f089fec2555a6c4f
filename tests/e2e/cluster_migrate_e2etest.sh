#!/usr/bin/env bash
# `eventlog migrate` with CLICKHOUSE_CLUSTER on a replicated, sharded ClickHouse cluster (ctest: e2e.cluster_migrate,
# label e2e; issue 23, docs/cluster.md).
#
#   tests/e2e/cluster_migrate_e2etest.sh SOURCE_DIR BUILD_DIR     (PostgreSQL: EVENTLOG_TEST_PG_DSN, a superuser's)
#
# 1. A throwaway cluster from Debian's packages (scripts/cluster.sh): ZooKeeper and 2 shards x 2 replicas.
# 2. `eventlog migrate` with CLICKHOUSE_CLUSTER: on every node the shard-local event_log_local is ReplicatedMergeTree
#    with its ZooKeeper path from the node's {shard} macro and its replica name from {replica} (both replicas of a
#    shard see each other), and event_log is a Distributed table over the shards.
# 3. Rows written to one replica of each shard are on the other replica, and every node reads them all through the
#    Distributed table; a write to the Distributed table is refused (no sharding key: writes go to a shard's own
#    table); a second migrate applies nothing.
# 4. The relay refuses the cluster without CLICKHOUSE_SHARDS (exit 2, naming it); with it, `relay --drain` spreads its
#    claims over both shards, and every event is in the Distributed table once. (The faults: make test-cluster.)
set -euo pipefail
src=$(realpath "$1")
build=$(realpath "$2")
bin="$build/eventlog"
: "${EVENTLOG_TEST_PG_DSN:?PostgreSQL for the test: EVENTLOG_TEST_PG_DSN (scripts/test.sh sets it)}"

dir=$(mktemp -d "$build/test-cluster.XXXXXX")
pgdb="eventlog_cluster_$$"
chdb="eventlog_cl_$$"
admin_dsn=${EVENTLOG_TEST_PG_DSN%/*}/postgres
cleanup() {
    "$src/scripts/cluster.sh" remove "$dir" >/dev/null 2>&1 || true
    psql -X -q "$admin_dsn" -c "DROP DATABASE IF EXISTS $pgdb" >/dev/null 2>&1 || true
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

"$src/scripts/cluster.sh" start "$dir" 2 2
password=$("$src/scripts/cluster.sh" secret "$dir")
declare -A http
while read -r s r h _; do http[$s-$r]=$h; done < <("$src/scripts/cluster.sh" nodes "$dir")
[ "${#http[@]}" -eq 4 ] || fail "expected 4 servers, got ${#http[@]}"
ch() { curl -sS --fail-with-body -u "eventlog:$password" --data-binary "$2" "http://127.0.0.1:${http[$1]}/"; }

psql -X -q -v ON_ERROR_STOP=1 "$admin_dsn" -c "CREATE DATABASE $pgdb"
export DATABASE_URL=${EVENTLOG_TEST_PG_DSN%/*}/$pgdb
export CLICKHOUSE_URI="http://eventlog:$password@127.0.0.1:${http[1-1]}/$chdb"
export CLICKHOUSE_CLUSTER=eventlog_cluster
export SECRET_KEY=cluster-migrate-test-secret-key-0123456789abcdef
"$bin" migrate >"$dir/migrate.log" 2>&1 || { cat "$dir/migrate.log" >&2; fail "eventlog migrate exited $?"; }

for node in 1-1 1-2 2-1 2-2; do
    shard=${node%-*}
    engine=$(ch "$node" "SELECT engine FROM system.tables WHERE database = '$chdb' AND name = 'event_log_local'")
    [ "$engine" = ReplicatedMergeTree ] || fail "$node: event_log_local is '$engine', expected ReplicatedMergeTree"
    engine=$(ch "$node" "SELECT engine FROM system.tables WHERE database = '$chdb' AND name = 'event_log'")
    [ "$engine" = Distributed ] || fail "$node: event_log is '$engine', expected Distributed"
    got=$(ch "$node" "SELECT zookeeper_path, replica_name, total_replicas FROM system.replicas
                      WHERE database = '$chdb' AND table = 'event_log_local' FORMAT TSV")
    want=$(printf '/clickhouse/tables/%s/%s.event_log_local\tr%s\t2' "$shard" "$chdb" "$node")
    [ "$got" = "$want" ] || fail "$node: replica '$got', expected '$want'"
done

row() {  # event_id, type
    printf "('%s', '%s', now(), 'test', '{}', 1, '', '11111111-1111-1111-1111-111111111111')" "$1" "$2"
}
ch 1-1 "INSERT INTO $chdb.event_log_local (event_id, event_type, event_date_time, environment, event_context,
        metadata_version, trace_id, batch_id) VALUES $(row 00000000-0000-0000-0000-000000000001 a),
        $(row 00000000-0000-0000-0000-000000000002 a), $(row 00000000-0000-0000-0000-000000000003 a)"
ch 2-2 "INSERT INTO $chdb.event_log_local (event_id, event_type, event_date_time, environment, event_context,
        metadata_version, trace_id, batch_id) VALUES $(row 00000000-0000-0000-0000-000000000004 b),
        $(row 00000000-0000-0000-0000-000000000005 b)"
ch 1-2 "SYSTEM SYNC REPLICA $chdb.event_log_local"
ch 2-1 "SYSTEM SYNC REPLICA $chdb.event_log_local"
for node in 1-1 1-2 2-1 2-2; do
    n=$(ch "$node" "SELECT count() FROM $chdb.event_log_local")
    want=3
    [ "${node%-*}" = 2 ] && want=2
    [ "$n" = "$want" ] || fail "$node: $n rows in its shard's table, expected $want"
    n=$(ch "$node" "SELECT count(), uniqExact(event_id) FROM $chdb.event_log FORMAT TSV")
    [ "$n" = "$(printf '5\t5')" ] || fail "$node: the Distributed table reads '$n', expected 5 rows, 5 ids"
done
if out=$(ch 1-1 "INSERT INTO $chdb.event_log (event_id, event_type, event_date_time, environment, event_context,
          metadata_version, trace_id, batch_id) VALUES $(row 00000000-0000-0000-0000-000000000006 c)" 2>&1); then
    fail "a write to the Distributed table was accepted"
fi
grep -qi "sharding key" <<<"$out" || fail "the Distributed table refused a write for another reason: $out"
echo "the Distributed table refuses writes (no sharding key)"

"$bin" migrate >"$dir/migrate2.log" 2>&1 || { cat "$dir/migrate2.log" >&2; fail "the second migrate exited $?"; }
grep -q '"event":"migration_applied"' "$dir/migrate2.log" && fail "the second migrate applied something again"

# The relay: without CLICKHOUSE_SHARDS it refuses (exit 2, naming the variable); with it, a drain spreads the claims
# over both shards and every event is in the Distributed table once.
set +e
"$bin" relay --drain >"$dir/relay.log" 2>&1
rc=$?
set -e
[ "$rc" -eq 2 ] || { cat "$dir/relay.log" >&2; fail "the relay exited $rc without CLICKHOUSE_SHARDS, expected 2"; }
grep -q CLICKHOUSE_SHARDS "$dir/relay.log" || { cat "$dir/relay.log" >&2; fail "the relay's refusal names nothing"; }
psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" \
    -c "SELECT eventlog.emit('drained', pg_catalog.json_build_object('n', g)) FROM generate_series(1, 25000) g" >/dev/null
export CLICKHOUSE_SHARDS="127.0.0.1:${http[1-1]},127.0.0.1:${http[1-2]};127.0.0.1:${http[2-1]},127.0.0.1:${http[2-2]}"
EVENT_BATCH_SIZE=1000 CLICKHOUSE_BATCH_SIZE=5000 "$bin" relay --drain >"$dir/relay.log" 2>&1 ||
    { tail -20 "$dir/relay.log" >&2; fail "relay --drain into the cluster exited $?"; }
got=$(ch 2-2 "SELECT count(), uniqExact(event_id) FROM $chdb.event_log WHERE event_type = 'drained' FORMAT TSV")
[ "$got" = "$(printf '25000\t25000')" ] || fail "the Distributed table reads '$got' drained events, expected 25000 once each"
one=$(ch 1-1 "SELECT count() FROM $chdb.event_log_local WHERE event_type = 'drained'")
two=$(ch 2-1 "SELECT count() FROM $chdb.event_log_local WHERE event_type = 'drained'")
[ "$one" -gt 0 ] && [ "$two" -gt 0 ] || fail "the claims were not spread: shard 1 has $one, shard 2 has $two"
echo "relay --drain into the cluster: 25000 events once each; shard 1 $one, shard 2 $two"
echo "PASS: migrate on a 2x2 cluster; replicated, distributed, idempotent; the relay delivers to both shards"
