#!/usr/bin/env bash
# Starts and stops the local PostgreSQL 15 and ClickHouse servers as plain processes.
#
#   scripts/stack.sh start DIR PG_PORT CH_HTTP_PORT   start both (reuses data in DIR), wait until ready
#   scripts/stack.sh stop DIR                          stop both (fast shutdown), keep data
#   scripts/stack.sh remove DIR                        stop both and delete their data
#   scripts/stack.sh start-pg DIR PORT | start-ch DIR HTTP_PORT | stop-pg DIR | stop-ch DIR
#   scripts/stack.sh free-port                         print a free TCP port on 127.0.0.1
#
# Both listen on 127.0.0.1 only. PostgreSQL refuses to run as root, so as root it runs as the
# `postgres` user (DIR must be reachable by it). Data lives in DIR/pg and DIR/ch.
set -euo pipefail

die() { echo "stack: $*" >&2; exit 1; }

# True when PID is a live process (a killed process can linger as a zombie until reaped).
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$st" ] && [ "${st:0:1}" != Z ]; }

PG_BIN=$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || true)
[ -n "$PG_BIN" ] || PG_BIN=$(dirname "$(command -v initdb || echo /usr/bin/initdb)")

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

free_port() {
    # Ask the kernel for an ephemeral port, then release it.
    python3 - 2>/dev/null <<'PY' || perl -MIO::Socket::INET -e 'my $s=IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1",LocalPort=>0) or die; print $s->sockport(),"\n"'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

start_pg() {
    local dir=$1 port=$2
    local data="$dir/pg/data" sock="$dir/pg/run"
    if [ "$(id -u)" -eq 0 ] && [ ! -e "$dir/pg" ] && ! runuser -u postgres -- test -x "$dir"; then
        # The checkout lies under a folder the postgres user cannot enter (e.g. /root): keep the
        # PostgreSQL data in /var/tmp and link it into place.
        local outside
        outside="/var/tmp/eventlog-pg-$(printf '%s' "$dir" | md5sum | cut -c1-12)"
        mkdir -p "$outside"
        ln -sfn "$outside" "$dir/pg"
    fi
    mkdir -p "$dir/pg/run"
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$dir/pg/"; chmod 755 "$dir"; fi
    local pgdir
    pgdir=$(readlink -f "$dir/pg")
    data="$pgdir/data"
    sock="$pgdir/run"
    if [ ! -f "$data/PG_VERSION" ]; then
        as_pg "$PG_BIN/initdb" --nosync -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$pgdir/initdb.log" 2>&1 \
            || { cat "$pgdir/initdb.log" >&2; die "initdb failed"; }
    fi
    if as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        echo "postgresql already running in $data"; return 0
    fi
    as_pg setsid "$PG_BIN/pg_ctl" -D "$data" -l "$pgdir/server.log" -w -t 60 start -o \
        "-p $port -k $sock -c listen_addresses=127.0.0.1 -c fsync=${EVENTLOG_PG_FSYNC:-on} -c max_connections=200 -c max_prepared_transactions=50 -c shared_buffers=256MB" \
        >/dev/null || { tail -20 "$pgdir/server.log" >&2; die "postgresql did not start"; }
    echo "$port" >"$dir/pg/port"
    # The application role and database.
    "$PG_BIN/psql" -qAt -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT 'CREATE ROLE eventlog LOGIN SUPERUSER PASSWORD ''eventlog'''
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'eventlog') \gexec
SELECT 'CREATE DATABASE eventlog OWNER eventlog'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'eventlog') \gexec
SQL
}

stop_pg() {
    local data
    data="$(readlink -f "$1/pg")/data"
    [ -f "$data/PG_VERSION" ] || return 0
    as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

ch_config() {
    local dir=$1 http=$2 tcp=$3
    cat >"$dir/ch/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$dir/ch/log/server.log</log>
        <errorlog>$dir/ch/log/error.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$http</http_port>
    <tcp_port>$tcp</tcp_port>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>30</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$dir/ch/data/</path>
    <tmp_path>$dir/ch/tmp/</tmp_path>
    <user_files_path>$dir/ch/user_files/</user_files_path>
    <format_schema_path>$dir/ch/format_schemas/</format_schema_path>
    <users_config>$dir/ch/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
XML
    cat >"$dir/ch/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
}

ch_server_bin() {
    for b in /usr/bin/clickhouse /usr/sbin/clickhouse-server /usr/bin/clickhouse-server; do
        [ -x "$b" ] && { echo "$b"; return; }
    done
    die "clickhouse-server is not installed (scripts/install-deps.sh)"
}

start_ch() {
    local dir=$1 http=$2
    mkdir -p "$dir/ch/log" "$dir/ch/data" "$dir/ch/tmp" "$dir/ch/user_files" "$dir/ch/format_schemas"
    if [ -f "$dir/ch/pid" ] && alive "$(cat "$dir/ch/pid")"; then
        echo "clickhouse already running (pid $(cat "$dir/ch/pid"))"; return 0
    fi
    # The native (TCP) port is kept across restarts: `.env` names it for clickhouse-client (make ch-shell).
    local tcp
    tcp=$(cat "$dir/ch/tcp_port" 2>/dev/null || true)
    [ -n "$tcp" ] || tcp=$(free_port)
    ch_config "$dir" "$http" "$tcp"
    local bin; bin=$(ch_server_bin)
    if [ "$(basename "$bin")" = clickhouse ]; then
        setsid nohup "$bin" server --config-file="$dir/ch/config.xml" >"$dir/ch/log/stdout.log" 2>&1 &
    else
        setsid nohup "$bin" --config-file="$dir/ch/config.xml" >"$dir/ch/log/stdout.log" 2>&1 &
    fi
    echo $! >"$dir/ch/pid"
    echo "$http" >"$dir/ch/port"
    echo "$tcp" >"$dir/ch/tcp_port"
    for _ in $(seq 1 300); do
        if curl -fsS "http://127.0.0.1:$http/ping" >/dev/null 2>&1; then return 0; fi
        alive "$(cat "$dir/ch/pid")" || { tail -20 "$dir/ch/log/stdout.log" "$dir/ch/log/error.log" >&2 || true; die "clickhouse exited"; }
        sleep 0.1
    done
    die "clickhouse did not answer /ping on port $http"
}

stop_ch() {
    local dir=$1
    [ -f "$dir/ch/pid" ] || return 0
    local pid; pid=$(cat "$dir/ch/pid")
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/ch/pid"
}

cmd=${1:-}
case "$cmd" in
    start) [ $# -eq 4 ] || die "usage: start DIR PG_PORT CH_HTTP_PORT"
           dir=$(realpath -m "$2"); mkdir -p "$dir"; start_pg "$dir" "$3"; start_ch "$dir" "$4" ;;
    stop) [ $# -eq 2 ] || die "usage: stop DIR"; dir=$(realpath -m "$2"); stop_ch "$dir"; stop_pg "$dir" ;;
    remove) [ $# -eq 2 ] || die "usage: remove DIR"; dir=$(realpath -m "$2"); stop_ch "$dir"; stop_pg "$dir"
            [ -L "$dir/pg" ] && rm -rf "$(readlink -f "$dir/pg")"
            rm -rf "$dir" ;;
    start-pg) dir=$(realpath -m "$2"); mkdir -p "$dir"; start_pg "$dir" "$3" ;;
    start-ch) dir=$(realpath -m "$2"); mkdir -p "$dir"; start_ch "$dir" "$3" ;;
    stop-pg) stop_pg "$(realpath -m "$2")" ;;
    stop-ch) stop_ch "$(realpath -m "$2")" ;;
    free-port) free_port ;;
    *) die "usage: start|stop|start-pg|start-ch|stop-pg|stop-ch|free-port (see the header)" ;;
esac
