#!/usr/bin/env bash
# The README's quick start, run the way a newcomer runs it (ctest: e2e.quickstart, label e2e).
#
#   tests/e2e/quickstart_e2etest.sh SOURCE_DIR BUILD_DIR
#
# 1. A folder that looks like a fresh checkout (links to the sources and to BUILD_DIR as build/), with no
#    .env, so that nothing of the developer's own configuration is seen.
# 2. `make run` there, on throwaway ports, in its own session and process group (as a terminal runs it).
# 3. From a second process in the same folder: the commands of the README's "While `make run` is running"
#    block, verbatim but for the local ports (54329, 18123 -> the throwaway ones). The emitted event must
#    reach ClickHouse with the README's values, and status must answer.
# 4. Ctrl-C (SIGINT to the process group): make returns, and no process of the stack is left.
# 5. `make run` again in the same folder: it reuses the .env it wrote and the same data; status answers and
#    shows nothing pending; Ctrl-C again leaves nothing behind.
# Any failure prints the make run log and exits 1.
set -euo pipefail
src=$(realpath "$1")
build=$(realpath "$2")

fail() {
    echo "FAIL: $*" >&2
    [ -f "$work/run.log" ] && { echo "--- make run log ---" >&2; tail -n 60 "$work/run.log" >&2; }
    exit 1
}

mkdir -p "$src/.local"
work=$(mktemp -d "$src/.local/quickstart.XXXXXX")
for entry in Makefile README.md scripts migrations .env.example; do ln -s "$src/$entry" "$work/$entry"; done
ln -s "$build" "$work/build"
pg_port=$("$src/scripts/stack.sh" free-port)
ch_port=$("$src/scripts/stack.sh" free-port)
while [ "$ch_port" = "$pg_port" ]; do ch_port=$("$src/scripts/stack.sh" free-port); done
stack_dir="$work/.local/dev"
pg_real=""
make_pid=""

# The processes that belong to this run's stack: any whose command line or working folder mentions it.
stack_processes() {
    local pid cmd cwd
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
        cwd=$(readlink "$p/cwd" 2>/dev/null || true)
        case "$cmd $cwd" in
            *"$work"*) ;;
            *) if [ -z "$pg_real" ] || [[ "$cmd $cwd" != *"$pg_real"* ]]; then continue; fi ;;
        esac
        [ "$pid" = "$$" ] && continue
        # A zombie is already gone; only its parent has not reaped it yet.
        [ "$(awk '{print $3}' "$p/stat" 2>/dev/null)" = Z ] && continue
        echo "$pid $cmd"
    done
}

cleanup() {
    [ -n "$make_pid" ] && kill -KILL -- "-$make_pid" 2>/dev/null || true
    "$src/scripts/stack.sh" remove "$stack_dir" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# Starts `make run` as its own process group and waits for its banner.
start_make_run() {
    : >"$work/run.log"
    (cd "$work" && exec env -u DATABASE_URL -u CLICKHOUSE_URI -u EVENTLOG_ENV_FILE PG_PORT="$pg_port" \
        CH_PORT="$ch_port" setsid make run >"$work/run.log" 2>&1) &
    make_pid=$!
    for _ in $(seq 1 1800); do
        grep -q '^eventlog is running' "$work/run.log" && break
        kill -0 "$make_pid" 2>/dev/null || fail "make run exited before its banner"
        sleep 0.1
    done
    grep -q '^eventlog is running' "$work/run.log" || fail "no banner from make run within 180 s"
    [ -L "$stack_dir/pg" ] && pg_real=$(readlink -f "$stack_dir/pg")
    return 0
}

# Ctrl-C as a terminal sends it: SIGINT to the whole foreground process group.
stop_make_run() {
    kill -INT -- "-$make_pid"
    for _ in $(seq 1 600); do kill -0 "$make_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$make_pid" 2>/dev/null && fail "make run still running 60 s after Ctrl-C"
    wait "$make_pid" 2>/dev/null || true
    make_pid=""
    grep -q 'stopping local servers' "$work/run.log" || fail "make run did not stop the local servers"
    local left=""
    for _ in $(seq 1 100); do
        left=$(stack_processes)
        [ -z "$left" ] && break
        sleep 0.1
    done
    [ -z "$left" ] || fail "processes left behind after Ctrl-C: $left"
}

# Runs one README command in the checkout, as a second terminal would.
readme_command() {
    (cd "$work" && env -u DATABASE_URL -u CLICKHOUSE_URI -u EVENTLOG_ENV_FILE bash -c "$1")
}

# The README's commands: the ```sh block after the line that starts "While `make run` is running".
mapfile -t commands < <(awk '
    /^While `make run` is running/ { want = 1; next }
    want && /^```sh/ { inside = 1; next }
    inside && /^```/ { exit }
    inside {
        line = $0
        if (sub(/\\$/, "", line)) { acc = acc line; next }
        print acc line; acc = ""
    }' "$src/README.md" | sed -e "s/18123/$ch_port/g" -e "s/54329/$pg_port/g")
[ "${#commands[@]}" -ge 3 ] || fail "expected the README's emit, query and status commands, found ${#commands[@]}"
emit_cmd="" query_cmd="" status_cmd=""
for c in "${commands[@]}"; do
    case "$c" in
        *"eventlog emit "*) emit_cmd=$c ;;
        *curl*) query_cmd=$c ;;
        *"eventlog status"*) status_cmd=$c ;;
    esac
done
[ -n "$emit_cmd" ] && [ -n "$query_cmd" ] && [ -n "$status_cmd" ] ||
    fail "the README block lacks one of emit / curl query / status: ${commands[*]}"

# --- first run --------------------------------------------------------------------------------------
start_make_run
[ -f "$work/.env" ] || fail "make run wrote no .env"
[ "$(stat -c %a "$work/.env")" = 600 ] || fail ".env is not private (mode $(stat -c %a "$work/.env"))"

event_id=$(readme_command "$emit_cmd") || fail "README emit failed: $event_id"
[[ "$event_id" =~ ^[0-9a-f-]{36}$ ]] || fail "emit printed '$event_id', expected the event's uuid"

arrived=""
for _ in $(seq 1 300); do
    out=$(readme_command "$query_cmd" 2>&1 || true)
    if grep -q 'event_type:.*user_created' <<<"$out"; then arrived=$out; break; fi
    sleep 0.1
done
[ -n "$arrived" ] || fail "the event did not reach ClickHouse within 30 s; last query output: $out"
grep -q "event_id:.*$event_id" <<<"$arrived" || fail "the query's rows lack event $event_id: $arrived"
grep -qF 'event_context:        {"email":"a@b.c","first_name":"A","last_name":"B"}' <<<"$arrived" ||
    grep -qF '{"email":"a@b.c","first_name":"A","last_name":"B"}' <<<"$arrived" ||
    fail "event_context is not the README's minified object: $arrived"
grep -q 'environment:.*Local' <<<"$arrived" || fail "environment is not Local: $arrived"

status=$(readme_command "$status_cmd") || fail "README status failed: $status"
grep -q '^pending:' <<<"$status" || fail "status printed no pending line: $status"

stop_make_run

# --- second run: the .env it wrote brings the same stack back ---------------------------------------
start_make_run
grep -q 'wrote .env' "$work/run.log" && fail "the second make run rewrote .env"
status=$(readme_command "$status_cmd") || fail "status after restart failed: $status"
grep -q '^pending: *0$' <<<"$status" || fail "after restart, expected nothing pending: $status"
out=$(readme_command "$query_cmd") || fail "query after restart failed"
grep -q "$event_id" <<<"$out" || fail "the event is gone after restart: $out"
stop_make_run

echo "quickstart: emit -> ClickHouse, status, Ctrl-C and restart all behave as the README says"
