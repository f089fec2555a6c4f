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
serve_pid=""
relay_pid=""
cleanup() {
    # A failed check leaves the server and the relay of the API part running: they go first.
    [ -z "$serve_pid$relay_pid" ] || kill -9 $serve_pid $relay_pid >/dev/null 2>&1 || true
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

# Every replica fetches what its shard received before an exact count through the Distributed table, which reads
# one replica per shard: a replica that has not fetched the last part yet would show fewer rows (lag, not loss).
sync_replicas() {
    local node
    for node in 1-1 1-2 2-1 2-2; do ch "$node" "SYSTEM SYNC REPLICA $chdb.event_log_local"; done
}

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
sync_replicas
got=$(ch 2-2 "SELECT count(), uniqExact(event_id) FROM $chdb.event_log WHERE event_type = 'drained' FORMAT TSV")
[ "$got" = "$(printf '25000\t25000')" ] || fail "the Distributed table reads '$got' drained events, expected 25000 once each"
one=$(ch 1-1 "SELECT count() FROM $chdb.event_log_local WHERE event_type = 'drained'")
two=$(ch 2-1 "SELECT count() FROM $chdb.event_log_local WHERE event_type = 'drained'")
[ "$one" -gt 0 ] && [ "$two" -gt 0 ] || fail "the claims were not spread: shard 1 has $one, shard 2 has $two"
echo "relay --drain into the cluster: 25000 events once each; shard 1 $one, shard 2 $two"

# A relay killed (kill -9) after its 3rd insert and before the acknowledgement, then another after its 4th: the
# records name the nodes written to; the next relay fences the dead one's stage there, finds every row of that
# insert present on that node (the replica written to) and sends nothing again, while the rest of the backlog goes
# to both shards.
psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" \
    -c "SELECT eventlog.emit('killed', pg_catalog.json_build_object('n', g)) FROM generate_series(1, 30000) g" >/dev/null
for after in 3 4; do
    set +e
    EVENTLOG_FAULT_POINT=after_insert EVENTLOG_FAULT_AFTER=$after EVENT_BATCH_SIZE=1000 CLICKHOUSE_BATCH_SIZE=2000 \
        "$bin" relay --drain >"$dir/relay-killed-$after.log" 2>&1
    rc=$?
    set -e
    [ "$rc" -eq 137 ] || { tail -5 "$dir/relay-killed-$after.log" >&2; fail "the relay with a kill after insert $after exited $rc"; }
done
EVENT_BATCH_SIZE=1000 CLICKHOUSE_BATCH_SIZE=2000 "$bin" relay --drain >"$dir/relay-after-kill.log" 2>&1 ||
    { tail -20 "$dir/relay-after-kill.log" >&2; fail "relay --drain after the kills exited $?"; }
# Each relay recovers the one killed before it: the second the first's records, the third the second's.
found=$(cat "$dir/relay-killed-4.log" "$dir/relay-after-kill.log" | grep -c '"event":"batch_reconciled"' || true)
[ "$found" -ge 2 ] || { grep -v debug "$dir/relay-after-kill.log" | tail -20 >&2; fail "recovery found $found of the 2 killed relays' inserts present"; }
sync_replicas
got=$(ch 1-2 "SELECT count(), uniqExact(event_id) FROM $chdb.event_log WHERE event_type = 'killed' FORMAT TSV")
[ "$got" = "$(printf '30000\t30000')" ] || fail "after the kills the Distributed table reads '$got', expected 30000 once each"
echo "two relays killed after an insert: recovery found both inserts present on their nodes; 30000 events once each"
# What replication gives. An identical block inserted twice through a stage like the relay's (a Null table and a
# view into the shard's table) is stored once: block deduplication works through the view (on 18.16 too).
# CLICKHOUSE_INSERT_QUORUM reaches the server: a quorum of 3 on 2 replicas is refused (TOO_FEW_LIVE_REPLICAS, 285,
# nothing written) and delivery waits; with 2 every insert is on both replicas when it returns, and all is once.
ch 1-1 "CREATE TABLE $chdb.dedup_stage AS $chdb.event_log_local ENGINE = Null"
ch 1-1 "CREATE MATERIALIZED VIEW $chdb.dedup_stage_mv TO $chdb.event_log_local AS SELECT * FROM $chdb.dedup_stage"
for _ in 1 2; do
    ch 1-1 "INSERT INTO $chdb.dedup_stage (event_id, event_type, event_date_time, environment, event_context,
            metadata_version, trace_id, batch_id) VALUES ('00000000-0000-0000-0000-0000000000d1', 'dedup',
            toDateTime('2026-12-07 12:00:00'), 'test', '{}', 1, '', '11111111-1111-1111-1111-111111111111')"
done
n=$(ch 1-1 "SELECT count() FROM $chdb.event_log_local WHERE event_type = 'dedup'")
[ "$n" = 1 ] || fail "an identical block inserted twice through a stage is stored $n times, expected once"
ch 1-1 "DROP TABLE $chdb.dedup_stage_mv"
ch 1-1 "DROP TABLE $chdb.dedup_stage"
psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" \
    -c "SELECT eventlog.emit('quorum', pg_catalog.json_build_object('n', g)) FROM generate_series(1, 6000) g" >/dev/null
set +e
CLICKHOUSE_INSERT_QUORUM=3 CLICKHOUSE_BATCH_SIZE=2000 timeout -s TERM 6 "$bin" relay --drain >"$dir/relay-quorum3.log" 2>&1
set -e
grep -q 'TOO_FEW_LIVE_REPLICAS' "$dir/relay-quorum3.log" || { tail -5 "$dir/relay-quorum3.log" >&2; fail "a quorum of 3 on 2 replicas was not refused"; }
n=$(ch 1-1 "SELECT count() FROM $chdb.event_log WHERE event_type = 'quorum'")
[ "$n" = 0 ] || fail "inserts refused for their quorum stored $n rows"
CLICKHOUSE_INSERT_QUORUM=2 CLICKHOUSE_BATCH_SIZE=2000 "$bin" relay --drain >"$dir/relay-quorum2.log" 2>&1 ||
    { tail -20 "$dir/relay-quorum2.log" >&2; fail "relay --drain with a quorum of 2 exited $?"; }
for node in 1-1 1-2 2-1 2-2; do  # no SYSTEM SYNC REPLICA: the quorum means both replicas had each insert
    n=$(ch "$node" "SELECT count() FROM $chdb.event_log_local WHERE event_type = 'quorum'")
    other=$(ch "$node" "SELECT count() FROM $chdb.event_log WHERE event_type = 'quorum'")
    [ "$other" = 6000 ] && [ "$n" -gt 0 ] || fail "$node: with a quorum of 2, $n rows in its shard's table, $other in all"
done
echo "block deduplication through a stage; insert_quorum 3 of 2 refused and nothing written; quorum 2: every replica had every row"

# Claims lost in a PostgreSQL failover, walked without one: the delivered claims' records are deleted (as an
# asynchronous failover loses their commits), so their rows, already on both shards, are claimable again, and the
# presence window is open (as the new timeline opens it). Claims in the window are recorded as any node's ('*') and
# looked up on every node: nothing is sent twice, and 5,000 events written since are sent once. (With the window's
# claims pinned to one node, half of the old rows were sent again: to the other shard.)
psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" \
    -c "SELECT eventlog.emit('lost_claims', pg_catalog.json_build_object('n', g)) FROM generate_series(1, 20000) g" >/dev/null
EVENT_BATCH_SIZE=1000 CLICKHOUSE_BATCH_SIZE=2000 "$bin" relay --drain >"$dir/relay-before-loss.log" 2>&1 ||
    { tail -20 "$dir/relay-before-loss.log" >&2; fail "relay --drain before the lost claims exited $?"; }
psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" <<'SQL' >/dev/null
BEGIN;
DELETE FROM eventlog.outbox_ack;
DELETE FROM eventlog.outbox_chunk;
DELETE FROM eventlog.outbox_range WHERE id <> (SELECT min(id) FROM eventlog.outbox_range);
UPDATE eventlog.relay_timeline SET suspect_until = pg_catalog.now() + interval '10 minutes';
SELECT eventlog.emit('after_loss', pg_catalog.json_build_object('n', g)) FROM generate_series(1, 5000) g;
COMMIT;
SQL
EVENT_BATCH_SIZE=1000 CLICKHOUSE_BATCH_SIZE=2000 "$bin" relay --drain >"$dir/relay-after-loss.log" 2>&1 ||
    { tail -20 "$dir/relay-after-loss.log" >&2; fail "relay --drain after the lost claims exited $?"; }
grep -q '"event":"presence_window_open"' "$dir/relay-after-loss.log" || fail "the relay did not open the presence window"
sync_replicas
got=$(ch 2-1 "SELECT event_type, count(), uniqExact(event_id) FROM $chdb.event_log
              WHERE event_type IN ('lost_claims', 'after_loss', 'drained', 'killed', 'quorum') GROUP BY event_type ORDER BY event_type FORMAT TSV")
want=$(printf 'after_loss\t5000\t5000\ndrained\t25000\t25000\nkilled\t30000\t30000\nlost_claims\t20000\t20000\nquorum\t6000\t6000')
[ "$got" = "$want" ] || fail "after the lost claims the Distributed table reads:"$'\n'"$got"$'\n'"expected:"$'\n'"$want"
targets=$(psql -X -At "$DATABASE_URL" -c "SELECT count(*) FILTER (WHERE target = '*'), count(*) FROM eventlog.outbox_chunk")
[ "${targets%|*}" -gt 0 ] && [ "${targets%|*}" = "${targets#*|}" ] || fail "the window's claims were not all recorded as any node's: $targets"
echo "claims lost as in a failover: every old row found on its shard, none sent twice; 5000 new events once each"

# The readers read the Distributed table: `eventlog serve` with a running relay answers POST ?wait=visible once the
# event is in a shard, and GET /api/v1/events/{id} says delivered with its insert time.
api_port=$("$src/scripts/stack.sh" free-port)
"$bin" serve --listen "127.0.0.1:$api_port" >"$dir/serve.log" 2>&1 &
serve_pid=$!
"$bin" relay >"$dir/relay-running.log" 2>&1 &
relay_pid=$!
token=$("$bin" apikey create --name cluster-test | tail -n 1)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$api_port/healthz" >/dev/null && break; sleep 0.1; done
answer=$(curl -s -w ' %{http_code}' -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"event_type":"visible_on_a_cluster","event_context":{"n":1}}' \
    "http://127.0.0.1:$api_port/api/v1/events?wait=visible&timeout=20s") || fail "POST to eventlog serve failed"
[[ "$answer" == '{"visible":true,"events":[{"index":0,"event_id":'*'"status":"accepted"}]} 200' ]] ||
    { tail -5 "$dir/serve.log" "$dir/relay-running.log" >&2; fail "POST ?wait=visible on a cluster answered: $answer"; }
id=$(sed -E 's/.*"event_id":"([0-9a-f-]{36})".*/\1/' <<<"$answer")
status=$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$api_port/api/v1/events/$id")
grep -q '"status":"delivered"' <<<"$status" && grep -q '"inserted_at"' <<<"$status" ||
    fail "GET /api/v1/events/$id on a cluster answered: $status"
# The console's events page lists it too (an administrator signs in with curl keeping the cookies, as a browser).
printf '%s\n' 'a passphrase for the cluster console' |
    "$bin" createsuperuser --username clusteradmin --password-stdin >/dev/null
jar="$dir/console.cookies"
form=$(curl -s -c "$jar" "http://127.0.0.1:$api_port/admin/login/")
csrf=$(grep -o 'name="csrf_token" value="[0-9a-f]*"' <<<"$form" | sed -e 's/.*value="//' -e 's/"$//')
answer=$(curl -s -b "$jar" -c "$jar" -o /dev/null -w '%{http_code}' --data-urlencode "csrf_token=$csrf" \
    --data-urlencode username=clusteradmin --data-urlencode 'password=a passphrase for the cluster console' \
    "http://127.0.0.1:$api_port/admin/login/")
[ "$answer" = 303 ] || fail "signing in to the console answered $answer"
page=$(curl -s -b "$jar" "http://127.0.0.1:$api_port/admin/events/?type=visible_on_a_cluster")
grep -q "$id" <<<"$page" || fail "the console's events page on a cluster does not list $id"
kill -TERM "$serve_pid" "$relay_pid"
wait "$serve_pid" "$relay_pid" || fail "serve or relay did not stop cleanly on SIGTERM"
echo "eventlog serve on a cluster: wait=visible answered 200, the status lookup says delivered, the console lists it"
echo "PASS: migrate on a 2x2 cluster; replicated, distributed, idempotent; the relay delivers to both shards; the API reads the Distributed table"
