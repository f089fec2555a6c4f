#!/usr/bin/env bash
# `eventlog relay` delivering to a replicated, sharded ClickHouse cluster while its nodes fail, with producers running
# all along (ctest: e2e.cluster_delivery, label cluster, not in `make test`: `make test-cluster`; issue 23,
# docs/cluster.md, "The cluster test").
#
#   tests/e2e/cluster_delivery_e2etest.sh SOURCE_DIR BUILD_DIR     (PostgreSQL: EVENTLOG_TEST_PG_DSN, a superuser's)
#
# 1. A throwaway cluster (scripts/cluster.sh): ZooKeeper and 2 shards x 2 replicas; `eventlog migrate` with
#    CLICKHOUSE_CLUSTER; three producers, each one psql session committing transactions of 1-5 events through
#    eventlog.emit() that also insert the same event ids into cluster_test.committed (so that table is exactly the
#    committed set); every 10th transaction writes the type cluster_test_rolled_back and rolls back.
# 2. One `eventlog relay` with CLICKHOUSE_SHARDS, CLICKHOUSE_SEND_RECEIVE_TIMEOUT=5 and CLICKHOUSE_CONNECT_TIMEOUT=1
#    (so that a frozen shard is noticed soon).
#    With the producers on: 10 s; kill -9 of replica 1-1; 10 s measured (rows arriving on shard 1's live replica 1-2,
#    polled every second); shard 2 frozen (SIGSTOP of both replicas) for 30 s, measured the same way; thawed; 1-1
#    started again; then everything restarted (the relay stopped with SIGTERM, every ClickHouse node stopped and
#    started, a new relay); 10 s more; producers stopped.
# 3. Once the relay has delivered (the Distributed table's count reaches the committed count, 180 s at most) it is
#    stopped with SIGTERM (exit 0). Then, after SYSTEM SYNC REPLICA on every node: both replicas of each shard hold
#    the same rows, the Distributed table holds every committed event exactly once and nothing else (the sorted id
#    sets are equal), no rolled-back event anywhere, the outbox has nothing pending, shard 1 received rows while
#    shard 2 was frozen, and both shards hold rows. The figures (per-shard counts, rates) are printed.
# Every log is kept in BUILD_DIR/test-artifacts/cluster_delivery/; on failure the relay's log tail is printed too.
set -euo pipefail
src=$(realpath "$1")
build=$(realpath "$2")
bin="$build/eventlog"
: "${EVENTLOG_TEST_PG_DSN:?PostgreSQL for the test: EVENTLOG_TEST_PG_DSN (scripts/test-cluster.sh sets it)}"

dir=$(mktemp -d "$build/test-cluster-delivery.XXXXXX")
artifacts="$build/test-artifacts/cluster_delivery"
pgdb="eventlog_cldel_$$"
chdb="eventlog_cd_$$"
admin_dsn=${EVENTLOG_TEST_PG_DSN%/*}/postgres
relay_pid=""
relay_log=""
producer_pids=()
cleanup() {
    touch "$dir/stop-producers"
    for p in "${producer_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "$relay_pid" ]; then kill -KILL "$relay_pid" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    "$src/scripts/cluster.sh" remove "$dir" >/dev/null 2>&1 || true
    psql -X -q "$admin_dsn" -c "DROP DATABASE IF EXISTS $pgdb WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
keep_logs() {
    rm -rf "$artifacts" && mkdir -p "$artifacts"
    cp "$dir"/*.log "$dir"/*.samples "$artifacts/" 2>/dev/null || true
}
fail() {
    echo "FAIL: $*" >&2
    if [ -n "$relay_log" ] && [ -f "$relay_log" ]; then
        echo "--- $(basename "$relay_log"), last 40 lines ---" >&2
        tail -n 40 "$relay_log" >&2
    fi
    keep_logs
    echo "logs kept in $artifacts" >&2
    exit 1
}
step() { echo "--- $* (${SECONDS} s)"; }

# 1. The cluster, the databases, the producers.
"$src/scripts/cluster.sh" start "$dir" 2 2
password=$("$src/scripts/cluster.sh" secret "$dir")
declare -A http
while read -r s r h _; do http[$s-$r]=$h; done < <("$src/scripts/cluster.sh" nodes "$dir")
[ "${#http[@]}" -eq 4 ] || fail "expected 4 servers, got ${#http[@]}"
ch() {  # NODE SQL: one query over HTTP, 60 s at most (a frozen node would hold it forever)
    curl -sS --fail-with-body -m 60 -u "eventlog:$password" --data-binary "$2" "http://127.0.0.1:${http[$1]}/"
}
node_pid() { cat "$dir/node-$1/ch/pid"; }
proc_state() { ps -o stat= -p "$1" 2>/dev/null | cut -c1 || true; }

psql -X -q -v ON_ERROR_STOP=1 "$admin_dsn" -c "CREATE DATABASE $pgdb"
export DATABASE_URL=${EVENTLOG_TEST_PG_DSN%/*}/$pgdb
export CLICKHOUSE_URI="http://eventlog:$password@127.0.0.1:${http[1-1]}/$chdb"
export CLICKHOUSE_CLUSTER=eventlog_cluster
export CLICKHOUSE_SHARDS="127.0.0.1:${http[1-1]},127.0.0.1:${http[1-2]};127.0.0.1:${http[2-1]},127.0.0.1:${http[2-2]}"
# A frozen node holds the relay for one request's connect + send/receive deadline before it is marked down
# (docs/cluster.md, "Delivery to a cluster"): short, as that page's setup says.
export CLICKHOUSE_SEND_RECEIVE_TIMEOUT=5 CLICKHOUSE_CONNECT_TIMEOUT=1
export SECRET_KEY=cluster-delivery-test-secret-key-0123456789abcdef
export LOG_LEVEL=info ENVIRONMENT=cluster_test METRICS_LISTEN=off
(cd "$dir" && "$bin" migrate >"$dir/migrate.log" 2>&1) || { cat "$dir/migrate.log" >&2; fail "eventlog migrate"; }
psql_() { psql -X -qAt -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"; }
psql_ -c "CREATE SCHEMA cluster_test; CREATE TABLE cluster_test.committed (event_id uuid PRIMARY KEY)"

producer() {  # P: one session; transaction i emits 1 + i % 5 events; every 10th rolls back
    local p=$1 i=0 rolled=0 type end
    {
        while [ ! -e "$dir/stop-producers" ]; do
            i=$((i + 1))
            type=cluster_test_event end=COMMIT
            if [ $((i % 10)) -eq 0 ]; then type=cluster_test_rolled_back end=ROLLBACK rolled=$((rolled + 1)); fi
            printf "BEGIN; INSERT INTO cluster_test.committed SELECT eventlog.emit('%s', json_build_object('producer', \
%d, 'tx', %d, 'n', n)) FROM generate_series(1, %d) AS n; %s;\n" "$type" "$p" "$i" $((1 + i % 5)) "$end"
            sleep 0.02
        done
        echo "$rolled" >"$dir/producer-$p.rolled"
    } | psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" >"$dir/producer-$p.log" 2>&1
}
for p in 1 2 3; do
    producer "$p" &
    producer_pids+=($!)
done
committed() { psql_ -c "SELECT count(*) FROM cluster_test.committed"; }

# 2. The relay, and the failures.
relay_n=0
start_relay() {
    relay_n=$((relay_n + 1))
    relay_log="$dir/relay-$relay_n.log"
    (cd "$dir" && exec "$bin" relay) >"$relay_log" 2>&1 &
    relay_pid=$!
}
stop_relay() {  # SIGTERM; exit 0 expected within 60 s
    local rc=0
    kill -TERM "$relay_pid"
    for _ in $(seq 1 600); do kill -0 "$relay_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$relay_pid" 2>/dev/null && fail "relay $relay_n still running 60 s after SIGTERM"
    wait "$relay_pid" || rc=$?
    relay_pid=""
    [ "$rc" -eq 0 ] || fail "relay $relay_n exited $rc after SIGTERM, expected 0"
}
relay_alive() { if [ -z "$relay_pid" ] || ! kill -0 "$relay_pid" 2>/dev/null; then fail "relay $relay_n exited"; fi; }
per_second() { awk -v n="$1" -v t0="$2" -v t1="$3" 'BEGIN { printf "%.0f", n / (t1 - t0) }'; }
shard_rows() { ch "$1" "SELECT count() FROM $chdb.event_log_local"; }
declare -A fig  # NAME.rows, NAME.rate (events/s arriving on shard 1), NAME.committed (events/s), NAME.moving
measure() {  # NAME SECONDS: rows arriving on shard 1's live replica 1-2, polled every second
    local name=$1 secs=$2 t0 n0 t1 n1 c0 c1 i n moving=0 prev
    t0=$(date +%s.%N) n0=$(shard_rows 1-2) c0=$(committed)
    prev=$n0
    echo "0 $n0" >"$dir/$name.samples"
    for i in $(seq 1 "$secs"); do
        sleep 1
        n=$(shard_rows 1-2)
        echo "$i $n" >>"$dir/$name.samples"
        [ "$n" -gt "$prev" ] && moving=$((moving + 1))
        prev=$n
        relay_alive
    done
    t1=$(date +%s.%N) n1=$n c1=$(committed)
    fig[$name.rows]=$((n1 - n0))
    fig[$name.rate]=$(per_second $((n1 - n0)) "$t0" "$t1")
    fig[$name.committed]=$(per_second $((c1 - c0)) "$t0" "$t1")
    fig[$name.moving]=$moving
    fig[$name.per_second]=$(awk 'NR > 1 { printf "%s%d", sep, $2 - prev; sep = " " } { prev = $2 }' "$dir/$name.samples")
}

start_relay
step "producers and the relay running"
sleep 10
relay_alive
[ "$(committed)" -gt 0 ] || fail "the producers committed nothing in 10 s (see $dir/producer-*.log)"

step "kill -9 of replica 1-1"
victim=$(node_pid 1-1)
"$src/scripts/cluster.sh" kill-node "$dir" 1 1
for _ in $(seq 1 50); do [ -z "$(proc_state "$victim")" ] && break; sleep 0.1; done
[ -z "$(proc_state "$victim")" ] || fail "replica 1-1 (pid $victim) survived kill -9"
measure before 10
echo "before the freeze (10 s): shard 1 received ${fig[before.rows]} rows, ${fig[before.rate]} events/s" \
    "(producers committed ${fig[before.committed]} events/s)"

step "shard 2 frozen (SIGSTOP) for 30 s"
"$src/scripts/cluster.sh" freeze-shard "$dir" 2
for node in 2-1 2-2; do
    [ "$(proc_state "$(node_pid "$node")")" = T ] || fail "replica $node is not stopped after freeze-shard"
done
measure freeze 30
for node in 2-1 2-2; do
    [ "$(proc_state "$(node_pid "$node")")" = T ] || fail "replica $node woke during the freeze"
done
"$src/scripts/cluster.sh" thaw-shard "$dir" 2
echo "during the freeze (30 s): shard 1 received ${fig[freeze.rows]} rows, ${fig[freeze.rate]} events/s" \
    "(producers committed ${fig[freeze.committed]} events/s; rows arrived in ${fig[freeze.moving]} of 30 polls)"
echo "  rows per second during the freeze: ${fig[freeze.per_second]}"

step "replica 1-1 started again"
"$src/scripts/cluster.sh" start-node "$dir" 1 1
sleep 5
relay_alive

step "everything restarted: the relay (SIGTERM), every ClickHouse node, a new relay"
stop_relay
for node in 1-1 1-2 2-1 2-2; do "$src/scripts/cluster.sh" stop-node "$dir" "${node%-*}" "${node#*-}"; done
for node in 1-1 1-2 2-1 2-2; do "$src/scripts/cluster.sh" start-node "$dir" "${node%-*}" "${node#*-}"; done
start_relay
sleep 10
relay_alive

step "producers stopped"
touch "$dir/stop-producers"
for p in "${producer_pids[@]}"; do wait "$p" || fail "a producer failed (see $dir/producer-*.log)"; done
producer_pids=()
if grep -q . "$dir"/producer-*.log; then cat "$dir"/producer-*.log >&2; fail "a producer reported errors"; fi
expected=$(committed)
rolled=$(awk '{ n += $1 } END { print n + 0 }' "$dir"/producer-*.rolled)
[ "$rolled" -gt 0 ] || fail "the premise: some transactions rolled back"
echo "committed: $expected events ($rolled transactions of cluster_test_rolled_back rolled back)"

# 3. Delivered exactly once.
step "waiting for the relay to deliver $expected events (180 s at most)"
got=0
for _ in $(seq 1 180); do
    got=$(ch 1-1 "SELECT count() FROM $chdb.event_log" 2>/dev/null || echo 0)
    [ "$got" -ge "$expected" ] && break
    relay_alive
    sleep 1
done
[ "$got" -ge "$expected" ] || fail "the Distributed table reads $got rows after 180 s, expected $expected"
stop_relay
relay_summary() {  # LOG: its relay_stopped figures, and its warnings and errors counted by log event
    local stopped problems
    stopped=$(grep -h '"event":"relay_stopped"' "$1" | grep -o '"delivered".*}' | tr -d '"{}')
    problems=$(grep -h '"level":"\(warning\|error\)"' "$1" | grep -o '"event":"[^"]*"' | cut -d'"' -f4 | sort |
        uniq -c | awk '{ printf "%s%s x%s", sep, $2, $1; sep = ", " }')
    echo "$(basename "$1" .log): ${stopped:-no relay_stopped line}; warnings and errors: ${problems:-none}"
}
for f in "$dir"/relay-*.log; do relay_summary "$f"; done
for node in 1-1 1-2 2-1 2-2; do ch "$node" "SYSTEM SYNC REPLICA $chdb.event_log_local" >/dev/null; done
declare -A rows
for node in 1-1 1-2 2-1 2-2; do rows[$node]=$(shard_rows "$node"); done
[ "${rows[1-1]}" = "${rows[1-2]}" ] || fail "shard 1's replicas differ: ${rows[1-1]} vs ${rows[1-2]} rows"
[ "${rows[2-1]}" = "${rows[2-2]}" ] || fail "shard 2's replicas differ: ${rows[2-1]} vs ${rows[2-2]} rows"
read -r count uniq < <(ch 2-2 "SELECT count(), uniqExact(event_id) FROM $chdb.event_log FORMAT TSV")
[ -n "${uniq:-}" ] || fail "the Distributed table did not answer the final count"
s1=${rows[1-1]} s2=${rows[2-1]}
echo "delivered: $count rows, $uniq ids through the Distributed table; shard 1 $s1 rows" \
    "($((s1 * 100 / (s1 + s2 > 0 ? s1 + s2 : 1)))%), shard 2 $s2 rows ($((s2 * 100 / (s1 + s2 > 0 ? s1 + s2 : 1)))%)"
[ "$((s1 + s2))" -eq "$count" ] || fail "the shards hold $((s1 + s2)) rows, the Distributed table reads $count"
[ "$count" -eq "$expected" ] && [ "$uniq" -eq "$expected" ] ||
    fail "ClickHouse holds $count rows ($uniq ids), expected $expected committed events once each"
ch 1-2 "SELECT event_id FROM $chdb.event_log FORMAT TSV" | LC_ALL=C sort >"$dir/clickhouse.ids"
psql_ -c "SELECT event_id FROM cluster_test.committed" | LC_ALL=C sort >"$dir/committed.ids"
diff_ids=$(LC_ALL=C comm -3 "$dir/committed.ids" "$dir/clickhouse.ids" | head -n 5)
[ -z "$diff_ids" ] || fail "the id sets differ (committed only | ClickHouse only), first lines: $diff_ids"
leaked=$(ch 1-2 "SELECT count() FROM $chdb.event_log WHERE event_type = 'cluster_test_rolled_back'")
[ "$leaked" -eq 0 ] || fail "$leaked rolled-back events were delivered"
pending=$(psql_ -c "SELECT pending + in_flight_records FROM eventlog.backlog()")
[ "$pending" -eq 0 ] || fail "$pending events or records still pending in the outbox"
[ "${fig[freeze.rows]}" -gt 0 ] || fail "shard 1 received nothing while shard 2 was frozen"
[ "$s1" -gt 0 ] && [ "$s2" -gt 0 ] || fail "one shard holds no rows (shard 1 $s1, shard 2 $s2)"
keep_logs
echo "PASS: $expected committed events exactly once on a 2x2 cluster through kill -9, a 30 s frozen shard and a" \
    "full restart; shard 1 took ${fig[freeze.rate]} events/s during the freeze (${fig[before.rate]} before)"
