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
#    Then the local stack's security (each a reproduced review finding; all failures are listed together):
#    - PostgreSQL refuses connections without a password, from root and from `nobody`, over TCP and the unix
#      socket (the reproduction: `nobody` running COPY ... TO PROGRAM as the superuser);
#    - ClickHouse refuses a request without credentials, and a page's cross-origin text/plain POST of DDL;
#    - clickhouse-server does not run as root; .env is mode 600 and no password appears in make run's output;
#    - the server folders are mktemp'd, private to their users, and a symlink planted (by `nobody`) at the
#      formerly predictable /var/tmp/eventlog-pg-<md5> path leads root to change nothing.
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
http_port=$("$src/scripts/stack.sh" free-port)
while [ "$http_port" = "$pg_port" ] || [ "$http_port" = "$ch_port" ]; do http_port=$("$src/scripts/stack.sh" free-port); done
stack_dir="$work/.local/dev"
server_homes=()
make_pid=""
as_root=0
[ "$(id -u)" -eq 0 ] && as_root=1
# The path the old scripts/stack.sh linked PostgreSQL's data from, predictable by any local user.
planted="/var/tmp/eventlog-pg-$(printf '%s' "$stack_dir" | md5sum | cut -c1-12)"
canary=""

# The processes that belong to this run's stack: any whose command line or working folder mentions it.
stack_processes() {
    local pid cmd cwd
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
        cwd=$(readlink "$p/cwd" 2>/dev/null || true)
        local ours=0 home
        [[ "$cmd $cwd" == *"$work"* ]] && ours=1
        for home in "${server_homes[@]}"; do [[ "$cmd $cwd" == *"$home"* ]] && ours=1; done
        [ "$ours" = 1 ] || continue
        [ "$pid" = "$$" ] && continue
        # A zombie is already gone; only its parent has not reaped it yet.
        [ "$(awk '{print $3}' "$p/stat" 2>/dev/null)" = Z ] && continue
        echo "$pid $cmd"
    done
}

cleanup() {
    [ -n "$make_pid" ] && kill -KILL -- "-$make_pid" 2>/dev/null || true
    "$src/scripts/stack.sh" remove "$stack_dir" >/dev/null 2>&1 || true
    rm -rf --one-file-system "$work"
    [ -L "$planted" ] && rm -f "$planted"
    [ -n "$canary" ] && rm -rf --one-file-system "$canary"
    rm -f "/tmp/eventlog-quickstart-pwned-$$"
}
trap cleanup EXIT

# Starts `make run` as its own process group and waits for its banner.
start_make_run() {
    : >"$work/run.log"
    (cd "$work" && exec env -u DATABASE_URL -u CLICKHOUSE_URI -u EVENTLOG_ENV_FILE -u BUILD_DIR -u LOCAL_DIR PG_PORT="$pg_port" \
        CH_PORT="$ch_port" HTTP_LISTEN="127.0.0.1:$http_port" setsid make run >"$work/run.log" 2>&1) &
    make_pid=$!
    for _ in $(seq 1 1800); do
        grep -q '^eventlog is running' "$work/run.log" && break
        kill -0 "$make_pid" 2>/dev/null || fail "make run exited before its banner"
        sleep 0.1
    done
    grep -q '^eventlog is running' "$work/run.log" || fail "no banner from make run within 180 s"
    local f
    for f in "$stack_dir/pg/location" "$stack_dir/ch/location"; do
        [ -f "$f" ] && server_homes+=("$(cat "$f")")
    done
    [ -L "$stack_dir/pg" ] && server_homes+=("$(readlink -f "$stack_dir/pg")")
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
    (cd "$work" && env -u DATABASE_URL -u CLICKHOUSE_URI -u EVENTLOG_ENV_FILE -u BUILD_DIR -u LOCAL_DIR bash -c "$1")
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
        *"dbshell --clickhouse"*) query_cmd=$c ;;
        *"eventlog status"*) status_cmd=$c ;;
    esac
done
[ -n "$emit_cmd" ] && [ -n "$query_cmd" ] && [ -n "$status_cmd" ] ||
    fail "the README block lacks one of emit / query (dbshell --clickhouse) / status: ${commands[*]}"

# Runs a command as `nobody` (any local user), from a folder it may enter, with nothing of our environment.
as_nobody() { (cd / && runuser -u nobody -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"); }

# The review's findings on the local stack, as checks; prints one line per problem found.
stack_security_problems() {
    local code marker="/tmp/eventlog-quickstart-pwned-$$" sock_dir pid user f loc kind owner want
    # PostgreSQL: no connection without a password (the reproduction ran shell commands as the superuser).
    local copy="COPY (SELECT 1) TO PROGRAM 'touch $marker'"
    if env -u PGPASSWORD PGPASSFILE=/nonexistent psql -qAtw -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres \
        -c "$copy" >/dev/null 2>&1; then
        echo "postgresql: root connected as postgres over TCP without a password (and ran COPY TO PROGRAM)"
    fi
    if env -u PGPASSWORD PGPASSFILE=/nonexistent psql -qAtw -h 127.0.0.1 -p "$pg_port" -U eventlog -d eventlog \
        -c 'SELECT 1' >/dev/null 2>&1; then
        echo "postgresql: root connected as eventlog over TCP without a password"
    fi
    if [ "$as_root" = 1 ]; then
        if as_nobody psql -qAtw -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "$copy" >/dev/null 2>&1; then
            echo "postgresql: nobody connected as postgres over TCP without a password (and ran COPY TO PROGRAM)"
        fi
        if [ -f "$stack_dir/pg/location" ]; then sock_dir="$(cat "$stack_dir/pg/location")/run"; else sock_dir="$(readlink -f "$stack_dir/pg")/run"; fi
        if as_nobody psql -qAtw -h "$sock_dir" -p "$pg_port" -U postgres -d postgres -c "$copy" >/dev/null 2>&1; then
            echo "postgresql: nobody connected as postgres through the unix socket in $sock_dir"
        fi
    fi
    [ -e "$marker" ] && echo "postgresql: COPY ... TO PROGRAM ran for a client without a password ($marker exists)"
    # ClickHouse: no request without credentials; a web page's forged cross-origin POST carries none.
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ch_port/" --data-binary 'SELECT 1' || true)
    [ "$code" = 200 ] && echo "clickhouse: a query without credentials was answered (HTTP 200)"
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Origin: http://evil.example' -H 'Content-Type: text/plain' \
        --data 'CREATE DATABASE pwned' "http://127.0.0.1:$ch_port/" || true)
    [ "$code" = 200 ] && echo "clickhouse: a cross-origin text/plain POST ran CREATE DATABASE pwned (HTTP 200)"
    local pwned
    pwned=$(readme_command "echo \"SELECT count() FROM system.databases WHERE name = 'pwned'\" | build/eventlog dbshell --clickhouse" 2>&1 || true)
    [ "$pwned" = 0 ] || echo "clickhouse: database pwned exists, or the check could not tell ($pwned)"
    pid=$(cat "$stack_dir/ch/pid" 2>/dev/null || true)
    user=$(ps -o user= -p "${pid:-0}" 2>/dev/null || true)
    [ -n "$user" ] || echo "clickhouse: no server process for pid '$pid'"
    [ "$user" = root ] && echo "clickhouse-server runs as root (pid $pid)"
    # .env: private, and its passwords are generated and never printed.
    [ "$(stat -c %a "$work/.env")" = 600 ] || echo ".env is mode $(stat -c %a "$work/.env"), not 600"
    grep -q '^DATABASE_URL=postgres://eventlog:eventlog@' "$work/.env" && echo ".env: the fixed password eventlog:eventlog"
    grep -q '^CLICKHOUSE_URI=http://[a-z]*:@' "$work/.env" && echo ".env: ClickHouse without a password"
    local secret
    for secret in $(sed -n -e 's|^DATABASE_URL=postgres://[^:]*:\([^@]*\)@.*|\1|p' \
        -e 's|^CLICKHOUSE_URI=http://[^:]*:\([^@]*\)@.*|\1|p' "$work/.env"); do
        [ "${#secret}" -ge 16 ] && grep -qF "$secret" "$work/run.log" && echo "make run printed a password from .env"
    done
    # Server folders: made with mktemp, private to the server's user; nothing at the predictable path.
    [ -L "$stack_dir/pg" ] && echo "$stack_dir/pg is a link (to $(readlink "$stack_dir/pg"))"
    if [ "$as_root" = 1 ]; then
        for kind in pg ch; do
            f="$stack_dir/$kind/location"
            [ -f "$f" ] || { echo "no $f naming the server folder"; continue; }
            loc=$(cat "$f")
            [[ "$loc" =~ ^/var/tmp/eventlog-$kind\.[A-Za-z0-9]{10}$ ]] || echo "$kind folder $loc is not a mktemp'd /var/tmp/eventlog-$kind.XXXXXXXXXX"
            if [ "$kind" = pg ]; then want=postgres; else want=clickhouse; fi
            owner=$(stat -c '%U %a %F' "$loc" 2>/dev/null || true)
            [ "$owner" = "$want 700 directory" ] || echo "$kind folder $loc: expected '$want 700 directory', found '$owner'"
        done
        [ "$(stat -c '%U %a' "$canary")" = "root 700" ] || echo "the planted link's target changed: $(stat -c '%U %a' "$canary")"
        [ "$(stat -c '%U %a' "$canary/secret" 2>/dev/null)" = "root 600" ] && [ "$(cat "$canary/secret")" = canary ] ||
            echo "the root-only file behind the planted link changed"
        [ "$(find "$canary" -mindepth 1 | wc -l)" = 1 ] || echo "root wrote into the planted link's target: $(ls -A "$canary" | tr '\n' ' ')"
        [ "$(readlink "$planted" 2>/dev/null)" = "$canary" ] || echo "the planted link $planted was replaced"
    fi
}

# --- first run --------------------------------------------------------------------------------------
if [ "$as_root" = 1 ]; then
    # Another local user plants a link at the path the old stack.sh would have used, to a root-only folder.
    canary=$(mktemp -d /var/tmp/eventlog-quickstart-canary.XXXXXX)
    echo canary >"$canary/secret"
    chmod 600 "$canary/secret"
    rm -f "$planted"
    as_nobody ln -s "$canary" "$planted"
fi
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

# The HTTP API that make run started, with a key from `make apikey` (its token is the last line).
token=$(readme_command "make -s apikey NAME=quickstart" | tail -n 1) || fail "make apikey failed: $token"
[[ "$token" =~ ^elk_[0-9]+_[A-Za-z0-9_-]{43}$ ]] || fail "make apikey's last line is not a token: $token"
answer=$(curl -s -w ' %{http_code}' -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"event_type":"OrderPlaced","event_context":{"order_id":42}}' \
    "http://127.0.0.1:$http_port/api/v1/events?wait=visible&timeout=20s") || fail "POST to make run's server failed"
[[ "$answer" == '{"visible":true,"events":[{"index":0,"event_id":'*'"status":"accepted"}]} 200' ]] ||
    fail "POST /api/v1/events?wait=visible answered: $answer"
# `make superuser`: an administrator of the console, its password as one line on standard input.
out=$(readme_command "printf '%s\\n' 'a fresh passphrase for the console' | make -s superuser NAME=quickstart PASSWORD_STDIN=1") ||
    fail "make superuser failed: $out"
out=$(readme_command "build/eventlog admin list") || fail "eventlog admin list failed: $out"
grep -q '^quickstart  *active' <<<"$out" || fail "admin list does not show the administrator make superuser made: $out"
# ... who signs in to the console on make run's server, with curl keeping the cookies as a browser would.
jar="$work/console.cookies"
form=$(curl -s -c "$jar" "http://127.0.0.1:$http_port/admin/login/") || fail "GET /admin/login/ failed"
csrf=$(grep -o 'name="csrf_token" value="[0-9a-f]*"' <<<"$form" | sed -e 's/.*value="//' -e 's/"$//')
[ ${#csrf} -eq 64 ] || fail "the login form has no CSRF token: $form"
answer=$(curl -s -b "$jar" -c "$jar" -o /dev/null -w '%{http_code} %{redirect_url}' --data-urlencode "csrf_token=$csrf" \
    --data-urlencode username=quickstart --data-urlencode 'password=a fresh passphrase for the console' \
    "http://127.0.0.1:$http_port/admin/login/") || fail "POST /admin/login/ failed"
[ "$answer" = "303 http://127.0.0.1:$http_port/admin/" ] || fail "signing in answered: $answer"
home=$(curl -s -b "$jar" "http://127.0.0.1:$http_port/admin/") || fail "GET /admin/ failed"
grep -q 'Signed in as <strong>quickstart</strong>' <<<"$home" || fail "/admin/ does not say who is signed in: $home"
[ "$(stat -c %a "$work/.local/secret_key")" = 600 ] || fail ".local/secret_key is not mode 600"
grep -qF "$(cat "$work/.local/secret_key")" "$work/run.log" && fail "make run printed the generated SECRET_KEY"

problems=$(stack_security_problems)
[ -z "$problems" ] || fail "the local stack is open:"$'\n'"$problems"

stop_make_run

# --- second run: the .env it wrote brings the same stack back ---------------------------------------
start_make_run
grep -q 'wrote .env' "$work/run.log" && fail "the second make run rewrote .env"
status=$(readme_command "$status_cmd") || fail "status after restart failed: $status"
grep -q '^pending: *0$' <<<"$status" || fail "after restart, expected nothing pending: $status"
out=$(readme_command "$query_cmd") || fail "query after restart failed"
grep -q "$event_id" <<<"$out" || fail "the event is gone after restart: $out"
stop_make_run

echo "quickstart: emit -> ClickHouse, status, make apikey + the HTTP API, make superuser + signing in at /admin/, Ctrl-C and restart all behave as the README says; the local stack refuses clients without its generated passwords"
