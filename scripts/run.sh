#!/usr/bin/env bash
# `make run`: starts local PostgreSQL and ClickHouse under .local/dev (unless DATABASE_URL / CLICKHOUSE_URI
# point elsewhere), applies migrations and runs the relay in the foreground. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
LOCAL_DIR=${LOCAL_DIR:-.local/dev}
PG_PORT=${PG_PORT:-54329}
CH_PORT=${CH_PORT:-18123}
local_pg="postgres://eventlog:eventlog@127.0.0.1:$PG_PORT/eventlog"
local_ch="http://default:@127.0.0.1:$CH_PORT/eventlog"
export DATABASE_URL=${DATABASE_URL:-$local_pg}
export CLICKHOUSE_URI=${CLICKHOUSE_URI:-$local_ch}

started=0
if [ "$DATABASE_URL" = "$local_pg" ] || [ "$CLICKHOUSE_URI" = "$local_ch" ]; then
    scripts/stack.sh start "$LOCAL_DIR" "$PG_PORT" "$CH_PORT"
    started=1
fi
stop_stack() {
    if [ "$started" = 1 ]; then
        echo "stopping local servers (data kept in $LOCAL_DIR)"
        scripts/stack.sh stop "$LOCAL_DIR"
    fi
}
trap stop_stack EXIT

build/eventlog migrate
ch_db=${CLICKHOUSE_URI##*/}
redact() { sed -E 's#://([^:@/]*)(:[^@/]*)?@#://\1@#' <<<"$1"; }  # never print passwords
cat <<TXT

eventlog is running.
  PostgreSQL  $(redact "$DATABASE_URL")   (make shell)
  ClickHouse  $(redact "$CLICKHOUSE_URI"), table event_log   (make ch-shell)

Emit an event and watch it arrive (in another terminal, same directory):
  build/eventlog emit UserCreated '{"email":"a@b.c","first_name":"A","last_name":"B"}'
  make shell   then: SELECT eventlog.emit('user_created', '{"email":"a@b.c"}');
  curl -s 'http://127.0.0.1:$CH_PORT/' --data-binary 'SELECT * FROM $ch_db.event_log ORDER BY event_date_time DESC LIMIT 5 FORMAT Vertical'
  build/eventlog status

Ctrl-C stops the relay and the servers.
TXT
# The relay runs in the foreground; Ctrl-C (SIGINT) drains the batch in flight and returns here.
set +e
build/eventlog relay
rc=$?
set -e
[ $rc -eq 0 ] || [ $rc -eq 130 ] || exit $rc
