#!/usr/bin/env bash
# `make run`: applies migrations, starts the HTTP API (`eventlog serve`, HTTP_LISTEN or 127.0.0.1:8000) in the
# background and runs the relay in the foreground. Ctrl-C stops everything it started.
#
# Where the configuration comes from (the same rule for every `eventlog` command):
#   1. the process environment, then
#   2. `.env` in the working directory (EVENTLOG_ENV_FILE names another file).
# With neither DATABASE_URL nor CLICKHOUSE_URI in the environment and no `.env`, this script starts the
# local stack (PostgreSQL 15 and ClickHouse under LOCAL_DIR, on PG_PORT and CH_PORT) and writes a `.env`
# pointing at it, so that `build/eventlog emit|status|...` in a second terminal in this folder reach the
# same servers. A `.env` written here carries an EVENTLOG_LOCAL_STACK line; later runs start that stack
# again. A `.env` without that line (yours) or URLs in the environment: no local servers are started.
# The local servers accept only the passwords generated for them (scripts/stack.sh), which go into `.env`.
# SECRET_KEY (for API tokens): the environment's or `.env`'s; without one, a key is generated once into
# .local/secret_key and used from there (scripts/lib/secret_key.sh); `make apikey` uses the same.
set -euo pipefail
cd "$(dirname "$0")/.."
LOCAL_DIR=${LOCAL_DIR:-.local/dev}
PG_PORT=${PG_PORT:-54329}
CH_PORT=${CH_PORT:-18123}
env_file=${EVENTLOG_ENV_FILE:-.env}

# Writes $env_file for the local stack in $stack_dir: its generated credentials (hex, so nothing to encode in
# the URLs), mode 600 from the start. Nothing of it is printed.
write_env() {
    local ch_native pg_password ch_password
    ch_native=$(cat "$stack_dir/ch/tcp_port")
    pg_password=$(scripts/stack.sh secret "$stack_dir" PG_PASSWORD)
    ch_password=$(scripts/stack.sh secret "$stack_dir" CH_PASSWORD)
    (
        umask 077
        rm -f "$env_file.tmp"
        cat >"$env_file.tmp" <<ENV
# Written by \`make run\` for the local servers it starts in $stack_dir (see .env.example for every
# variable). Every eventlog command run in this folder reads this file; the environment wins over it.
# The passwords were generated for these servers (scripts/stack.sh); keep this file private (mode 600).
# Replace the URLs to use other servers (then delete the EVENTLOG_LOCAL_STACK line), or delete this
# file and \`make run\` writes it again.
EVENTLOG_LOCAL_STACK=$stack_dir:$PG_PORT:$CH_PORT
DATABASE_URL=postgres://eventlog:$pg_password@127.0.0.1:$PG_PORT/eventlog
CLICKHOUSE_URI=http://eventlog:$ch_password@127.0.0.1:$CH_PORT/eventlog
CLICKHOUSE_NATIVE_PORT=$ch_native
ENV
        chmod 600 "$env_file.tmp"
        mv "$env_file.tmp" "$env_file"
    )
    echo "wrote $env_file for the local servers"
}

stack_dir=""
if [ -n "${DATABASE_URL:-}" ] || [ -n "${CLICKHOUSE_URI:-}" ]; then
    echo "using DATABASE_URL / CLICKHOUSE_URI from the environment; no local servers started"
elif [ ! -e "$env_file" ]; then
    stack_dir=$LOCAL_DIR
    scripts/stack.sh start "$stack_dir" "$PG_PORT" "$CH_PORT"
    write_env
elif line=$(grep -E '^EVENTLOG_LOCAL_STACK=' "$env_file" | tail -n 1); then
    IFS=: read -r stack_dir PG_PORT CH_PORT <<<"${line#EVENTLOG_LOCAL_STACK=}"
    [ -n "$stack_dir" ] && [ -n "$PG_PORT" ] && [ -n "$CH_PORT" ] ||
        { echo "run: $env_file: expected EVENTLOG_LOCAL_STACK=DIR:PG_PORT:CH_PORT, got '$line'" >&2; exit 2; }
    fresh=0
    [ -e "$stack_dir/credentials" ] || fresh=1
    scripts/stack.sh start "$stack_dir" "$PG_PORT" "$CH_PORT"
    # The folder was deleted: the servers are new, and so are their passwords.
    [ "$fresh" = 0 ] || write_env
else
    echo "using the servers configured in $env_file; no local servers started"
fi

serve_pid=""
stop_stack() {
    if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
        kill -TERM "$serve_pid" 2>/dev/null || true
        wait "$serve_pid" 2>/dev/null || true
    fi
    if [ -n "$stack_dir" ]; then
        echo "stopping local servers (data kept in $stack_dir)"
        scripts/stack.sh stop "$stack_dir"
    fi
}
trap stop_stack EXIT

build/eventlog migrate
# shellcheck source=scripts/lib/secret_key.sh
. scripts/lib/secret_key.sh
ensure_secret_key "$env_file"
build/eventlog serve &
serve_pid=$!
# serve exits at once (2) on a bad setting or a busy port: say so instead of announcing it.
sleep 0.5
kill -0 "$serve_pid" 2>/dev/null || { wait "$serve_pid" || true; echo "run: eventlog serve did not start (see above)" >&2; exit 1; }
listen=${HTTP_LISTEN:-$(sed -n 's/^HTTP_LISTEN=\([^[:space:]#]*\).*/\1/p' "$env_file" 2>/dev/null | tail -n 1)}
listen=${listen:-127.0.0.1:8000}
cat <<TXT

eventlog is running (configuration: environment, then $env_file).
$([ -n "$stack_dir" ] && echo "  local PostgreSQL on 127.0.0.1:$PG_PORT and ClickHouse on 127.0.0.1:$CH_PORT, data in $stack_dir")

In another terminal, in this folder:
  build/eventlog emit UserCreated '{"email":"a@b.c","first_name":"A","last_name":"B"}'
  echo 'SELECT * FROM eventlog.event_log FORMAT Vertical' | build/eventlog dbshell --clickhouse
  build/eventlog status
  make superuser    (an administrator of the console: http://$listen/admin/; asks for a password)
  make apikey       (an API key for the HTTP API on http://$listen; the token is the last line)
  curl -H "Authorization: Bearer \$TOKEN" -d '{"event_type":"OrderPlaced","event_context":{"order_id":42}}' \\
       -H 'Content-Type: application/json' http://$listen/api/v1/events
  make shell        (psql)      make ch-shell   (clickhouse-client)

Ctrl-C stops the HTTP API, the relay$([ -n "$stack_dir" ] && echo " and the local servers").
TXT
# The relay runs in the foreground; Ctrl-C (SIGINT) drains the batch in flight and returns here. serve, a background
# job of a script (which ignores SIGINT), gets SIGTERM from stop_stack: it finishes its requests in flight and exits.
set +e
build/eventlog relay
rc=$?
set -e
[ $rc -eq 0 ] || [ $rc -eq 130 ] || exit $rc
