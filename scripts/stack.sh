#!/usr/bin/env bash
# Starts and stops the local PostgreSQL 15 and ClickHouse servers as plain processes.
#
#   scripts/stack.sh start DIR PG_PORT CH_HTTP_PORT   start both (reuses data in DIR), wait until ready
#   scripts/stack.sh stop DIR                          stop both (fast shutdown), keep data
#   scripts/stack.sh remove DIR                        stop both and delete their data
#   scripts/stack.sh start-pg DIR PORT | start-ch DIR HTTP_PORT | stop-pg DIR | stop-ch DIR
#   scripts/stack.sh secret DIR NAME                   print one generated secret (for "$(...)" only):
#                                                      PG_PASSWORD, PG_SUPERUSER_PASSWORD or CH_PASSWORD
#   scripts/stack.sh free-port                         print a free TCP port on 127.0.0.1
#   scripts/stack.sh start-pg-standby DIR PORT PRIMARY_DIR
#                                                      a streaming standby of PRIMARY_DIR's PostgreSQL (its
#                                                      copy, same credentials; application_name eventlog_standby)
#   scripts/stack.sh promote-pg DIR | kill-pg DIR      promote a standby; kill -9 a server and all its processes
#                                                      at once (a crashed host). For the failover tests.
#   scripts/stack.sh crash-pg DIR                      immediate shutdown (pg_ctl -m immediate: no checkpoint,
#                                                      crash recovery at the next start-pg). For the crash tests.
#   scripts/stack.sh freeze-pg DIR | thaw-pg DIR       SIGSTOP / SIGCONT of a server and all its processes (a server
#                                                       that stops answering, its sockets open)
#
# Both listen on 127.0.0.1 only and accept no connection without a password:
#   PostgreSQL  scram-sha-256 on TCP for every role (no `trust` anywhere); the unix socket lies in a folder
#               only the server's user can enter. Roles: `eventlog` (LOGIN, owner of database `eventlog`, no
#               SUPERUSER/CREATEROLE/CREATEDB; password PG_PASSWORD), the NOLOGIN groups eventlog_producer,
#               eventlog_relay, eventlog_admin (created here, so migrations need not create roles), and the
#               superuser `postgres` (password PG_SUPERUSER_PASSWORD; for this script and the test harness).
#   ClickHouse  user `eventlog` (password CH_PASSWORD, sha256 in users.xml); `default` has a random password
#               nobody keeps, so a request without credentials (e.g. a page's cross-origin POST) is refused.
# Secrets are generated at the first start into DIR/credentials (mode 600) and never printed.
#
# As root, each server runs as its own system user (PostgreSQL as `postgres`, ClickHouse as `clickhouse`)
# in a folder made with `mktemp -d /var/tmp/eventlog-{pg,ch}.XXXXXXXXXX`, mode 700, owned by that user (the
# checkout may lie where those users cannot enter, e.g. /root). Its path is kept in DIR/{pg,ch}/location and
# checked (a directory, not a link, owned by that user, mode 700) before every use. This script writes,
# reads and deletes in those folders only as their user, never as root. DIR itself (credentials, pid and
# port files, ClickHouse's stdout) belongs to the caller. Without root, everything runs as the caller and
# the server folders are made inside DIR.
set -euo pipefail
umask 077

die() { echo "stack: $*" >&2; exit 1; }

# True when PID is a live process (a killed process can linger as a zombie until reaped).
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$st" ] && [ "${st:0:1}" != Z ]; }

PG_BIN=$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || true)
[ -n "$PG_BIN" ] || PG_BIN=$(dirname "$(command -v initdb || echo /usr/bin/initdb)")
SAFE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

is_root() { [ "$(id -u)" -eq 0 ]; }
ME=$(id -un)

# The system user a server runs as.
svc_user() {
    if ! is_root; then echo "$ME"; return; fi
    case $1 in
        pg) id -u postgres >/dev/null 2>&1 || die "no 'postgres' user (is postgresql-15 installed? scripts/install-deps.sh)"
            echo postgres ;;
        ch) id -u clickhouse >/dev/null 2>&1 ||
                die "no 'clickhouse' user (the clickhouse-server package creates it; or: adduser --system --group clickhouse)"
            echo clickhouse ;;
    esac
}

# Runs a command as USER with a minimal environment (none of the caller's variables, secrets included).
as_user() {
    local user=$1
    shift
    if is_root; then
        (cd / && runuser -u "$user" -- env -i PATH="$SAFE_PATH" LANG=C.UTF-8 "$@")
    else
        env -i PATH="$SAFE_PATH" LANG=C.UTF-8 HOME="${HOME:-/}" "$@"
    fi
}

# Writes stdin to PATH as USER (mode 600): never a root write into a folder another user owns.
write_as() { as_user "$1" sh -c 'umask 077 && cat >"$1"' sh "$2"; }

free_port() {
    # Ask the kernel for an ephemeral port, then release it.
    python3 - 2>/dev/null <<'PY' || perl -MIO::Socket::INET -e 'my $s=IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1",LocalPort=>0) or die; print $s->sockport(),"\n"'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

# "OWNER MODE TYPE" of a path, not following a link.
stat_of() { stat -c '%U %a %F' -- "$1" 2>/dev/null; }

# A folder of the stack that belongs to the caller (DIR, DIR/pg, DIR/ch): made mode 700, or checked (a
# directory of the caller, not a link, that no one else may write to).
own_dir() {
    local d=$1 s
    if [ ! -e "$d" ] && [ ! -L "$d" ]; then mkdir -m 700 -- "$d"; fi
    s=$(stat -c '%U %F' -- "$d")
    [ "$s" = "$ME directory" ] && [ $((0$(stat -c %a -- "$d") & 022)) -eq 0 ] ||
        die "$d: expected a directory owned by $ME that only $ME may write to; found: $(stat_of "$d")"
}

# A DIR made by the stack.sh before generated credentials (trust authentication, ClickHouse without a
# password, PostgreSQL data linked from a predictable /var/tmp path): refused, never reused.
legacy_layout() {
    local dir=$1
    [ -L "$dir/pg" ] || [ -e "$dir/pg/data" ] || [ -e "$dir/ch/data" ] || [ -e "$dir/ch/config.xml" ]
}
refuse_legacy() {
    legacy_layout "$1" || return 0
    die "$1 was made by an older scripts/stack.sh (PostgreSQL trusting local connections, ClickHouse without a
password, as root). Delete it and its data with: scripts/stack.sh remove $1
(and delete a .env that names it; \`make run\` writes a new one)."
}

# Generates DIR/credentials at the first start; checks it afterwards.
ensure_credentials() {
    local f=$1/credentials
    if [ ! -e "$f" ] && [ ! -L "$f" ]; then
        local tmp; tmp=$(mktemp "$1/credentials.XXXXXX")
        {
            echo "# Generated by scripts/stack.sh for the servers of this folder. Keep private."
            echo "PG_SUPERUSER_PASSWORD=$(random_hex)"
            echo "PG_PASSWORD=$(random_hex)"
            echo "CH_PASSWORD=$(random_hex)"
        } >"$tmp"
        mv -- "$tmp" "$f"
    fi
    [ "$(stat_of "$f")" = "$ME 600 regular file" ] || die "$f: expected a regular file owned by $ME, mode 600"
}
random_hex() { head -c 24 /dev/urandom | od -An -tx1 -v | tr -d ' \n'; }

secret() {
    local dir=$1 name=$2 f=$1/credentials v
    [ "$(stat_of "$f")" = "$ME 600 regular file" ] || die "$f: missing, or not a private file of $ME"
    v=$(sed -n "s/^$name=\([0-9a-f]\{16,\}\)\$/\1/p" "$f" | tail -n 1)
    [ -n "$v" ] || die "$f has no $name"
    printf '%s' "$v"
}

# The server folder of KIND (pg|ch) for DIR: made at the first start, checked at every use. Prints its path;
# prints nothing when there is none yet and CREATE is not "create".
server_home() {
    local dir=$1 kind=$2 create=${3:-} user base loc s
    user=$(svc_user "$kind")
    if is_root; then base=/var/tmp; else base=$dir/$kind; fi
    if [ -f "$dir/$kind/location" ] && [ ! -L "$dir/$kind/location" ]; then
        loc=$(cat -- "$dir/$kind/location")
        [[ "$loc" =~ ^/.*/eventlog-$kind\.[A-Za-z0-9]{10}$ ]] && [ "$(dirname -- "$loc")" = "$base" ] ||
            die "$dir/$kind/location: unexpected path '$loc'"
        if [ -e "$loc" ] || [ -L "$loc" ]; then
            s=$(stat_of "$loc")
            [ "$s" = "$user 700 directory" ] ||
                die "$loc: expected a directory owned by $user, mode 700, not a link; found: $s. Refusing to use it."
            echo "$loc"
            return 0
        fi
        [ "$create" = create ] || return 0
        echo "stack: $loc (named by $dir/$kind/location) is gone; starting with an empty one" >&2
    fi
    [ "$create" = create ] || return 0
    loc=$(mktemp -d "$base/eventlog-$kind.XXXXXXXXXX")
    is_root && chown -h "$user:$user" -- "$loc"
    echo "$loc" >"$dir/$kind/location.tmp"
    mv -- "$dir/$kind/location.tmp" "$dir/$kind/location"
    echo "$loc"
}

pg_sql_as_superuser() {
    local port=$1 password=$2
    PGPASSWORD=$password PGPASSFILE=/nonexistent "$PG_BIN/psql" -qAtw -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 >/dev/null
}

start_pg() {
    local dir=$1 port=$2 user home data sock super app
    refuse_legacy "$dir"
    own_dir "$dir"
    own_dir "$dir/pg"
    ensure_credentials "$dir"
    user=$(svc_user pg)
    home=$(server_home "$dir" pg create)
    data="$home/data"
    sock="$home/run"
    super=$(secret "$dir" PG_SUPERUSER_PASSWORD)
    app=$(secret "$dir" PG_PASSWORD)
    if ! as_user "$user" test -f "$data/PG_VERSION"; then
        as_user "$user" mkdir -p -m 700 "$sock"
        # The superuser's password reaches initdb through a file only the server's user can read.
        printf '%s\n' "$super" | write_as "$user" "$home/pwfile"
        if ! as_user "$user" "$PG_BIN/initdb" --nosync -D "$data" -U postgres --pwfile="$home/pwfile" \
            --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/pg/initdb.log" 2>&1; then
            as_user "$user" rm -f "$home/pwfile"
            cat "$dir/pg/initdb.log" >&2
            die "initdb failed"
        fi
        as_user "$user" rm -f "$home/pwfile"
        {
            echo "# Written by scripts/stack.sh: a password (scram-sha-256) for every connection; no trust."
            echo "# TYPE  DATABASE  USER      ADDRESS       METHOD"
            is_root && echo "local   all       postgres                peer"
            echo "local   all       all                     scram-sha-256"
            echo "host    all       all       127.0.0.1/32  scram-sha-256"
            echo "host    all       all       ::1/128       scram-sha-256"
            echo "host    replication postgres 127.0.0.1/32 scram-sha-256"
        } | write_as "$user" "$data/pg_hba.conf"
    fi
    run_pg "$dir" "$port"
    # The application role (no SUPERUSER, CREATEROLE or CREATEDB), its database, and the groups of
    # migrations/postgres/0003_least_privilege.sql (made here so that the role needs no CREATEROLE).
    # The password travels on psql's stdin, never on a command line.
    pg_sql_as_superuser "$port" "$super" <<SQL
SELECT 'CREATE ROLE eventlog LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'eventlog') \gexec
ALTER ROLE eventlog WITH LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS PASSWORD '$app';
SELECT format('CREATE ROLE %I NOLOGIN', r) FROM unnest(ARRAY['eventlog_producer', 'eventlog_relay', 'eventlog_admin']) r
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
-- The local stack's one login runs the relay too: it must be a member of eventlog_relay, or other relays take its
-- live batches for a dead relay's (docs/security.md, "Advisory locks held by strangers"); the relay refuses to start
-- otherwise.
GRANT eventlog_relay TO eventlog;
SELECT 'CREATE DATABASE eventlog OWNER eventlog'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'eventlog') \gexec
SQL
}

# Starts the server of DIR's PostgreSQL folder on PORT unless it runs; records the port.
run_pg() {
    local dir=$1 port=$2 user home data
    user=$(svc_user pg)
    home=$(server_home "$dir" pg)
    data="$home/data"
    if as_user "$user" "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        echo "postgresql already running in $data"
    else
        as_user "$user" setsid "$PG_BIN/pg_ctl" -D "$data" -l "$home/server.log" -w -t 60 start -o \
            "-p $port -k $home/run -c listen_addresses=127.0.0.1 -c password_encryption=scram-sha-256 -c fsync=${EVENTLOG_PG_FSYNC:-on} -c max_connections=200 -c max_prepared_transactions=50 -c shared_buffers=256MB" \
            >/dev/null || { as_user "$user" tail -20 "$home/server.log" >&2; die "postgresql did not start"; }
    fi
    echo "$port" >"$dir/pg/port"
}

# A streaming standby of PRIMARY's server in DIR: a base backup taken as the superuser (its password in a
# passfile only the server's user can read), standby.signal, and primary_conninfo naming it eventlog_standby
# (the name a primary's synchronous_standby_names can list). DIR gets PRIMARY's credentials: the roles are the
# same. The primary's pg_hba.conf must allow replication for postgres from 127.0.0.1 (stacks made by this
# script do).
start_pg_standby() {
    local dir=$1 port=$2 primary=$3 user home data pport phome
    [ -f "$primary/pg/port" ] || die "$primary: no PostgreSQL of this script (no pg/port)"
    pport=$(cat -- "$primary/pg/port")
    [[ "$pport" =~ ^[0-9]+$ ]] || die "$primary/pg/port: not a port"
    phome=$(server_home "$primary" pg)
    [ -n "$phome" ] || die "$primary: no PostgreSQL folder"
    refuse_legacy "$dir"
    own_dir "$dir"
    own_dir "$dir/pg"
    if [ ! -e "$dir/credentials" ]; then
        ensure_credentials "$primary"
        (umask 077 && cp -- "$primary/credentials" "$dir/credentials")
    fi
    ensure_credentials "$dir"
    user=$(svc_user pg)
    home=$(server_home "$dir" pg create)
    data="$home/data"
    if ! as_user "$user" test -f "$data/PG_VERSION"; then
        as_user "$user" mkdir -p -m 700 "$home/run"
        printf '127.0.0.1:%s:*:postgres:%s\n' "$pport" "$(secret "$dir" PG_SUPERUSER_PASSWORD)" |
            write_as "$user" "$home/pgpass"
        as_user "$user" env PGPASSFILE="$home/pgpass" "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$pport" -U postgres -w \
            -D "$data" -X stream -c fast >"$dir/pg/basebackup.log" 2>&1 ||
            { cat "$dir/pg/basebackup.log" >&2; die "pg_basebackup from $primary failed"; }
        as_user "$user" touch "$data/standby.signal"
        printf "primary_conninfo = 'host=127.0.0.1 port=%s user=postgres passfile=%s application_name=eventlog_standby'\n" \
            "$pport" "$home/pgpass" | as_user "$user" sh -c 'cat >>"$1"' sh "$data/postgresql.auto.conf"
    fi
    run_pg "$dir" "$port"
}

promote_pg() {
    local home
    home=$(server_home "$1" pg)
    [ -n "$home" ] || die "$1: no PostgreSQL folder"
    as_user "$(svc_user pg)" "$PG_BIN/pg_ctl" -D "$home/data" -w -t 60 promote >/dev/null
}

# The postmaster's pid of stack DIR, then the pids of the processes it started, on one line.
pg_processes() {
    local home pid
    home=$(server_home "$1" pg)
    [ -n "$home" ] || die "$1: no PostgreSQL folder"
    pid=$(as_user "$(svc_user pg)" head -n 1 "$home/data/postmaster.pid" 2>/dev/null || true)
    [[ "$pid" =~ ^[0-9]+$ ]] || die "$1: no running PostgreSQL (no postmaster.pid)"
    echo "$pid $(ps -o pid= --ppid "$pid" | tr -s ' \n' ' ')"
}

# kill -9 of the postmaster and every process it started, in one kill(1): nothing gets to write or send after
# any of them died, as when the host crashes.
kill_pg() {
    local all
    all=$(pg_processes "$1") || exit 1
    # shellcheck disable=SC2086  # the pids are separate words on purpose
    kill -9 $all 2>/dev/null || true
    while alive "${all%% *}"; do sleep 0.05; done
}

# SIGSTOP (or, with CONT, SIGCONT) of the postmaster and every process it started: the postmaster first when
# freezing (it forks no new backend), last when thawing.
signal_pg() {
    local all pid children
    all=$(pg_processes "$1") || exit 1
    pid=${all%% *}
    children=${all#* }
    if [ "$2" = STOP ]; then
        kill -STOP "$pid"
        # shellcheck disable=SC2086  # the children are separate words on purpose
        kill -STOP $children 2>/dev/null || true
    else
        # shellcheck disable=SC2086
        kill -CONT $children 2>/dev/null || true
        kill -CONT "$pid"
    fi
}

stop_pg() {
    local dir=$1 user home
    if legacy_layout "$dir"; then stop_legacy_pg "$dir"; return 0; fi
    home=$(server_home "$dir" pg)
    [ -n "$home" ] || return 0
    user=$(svc_user pg)
    as_user "$user" test -f "$home/data/PG_VERSION" || return 0
    as_user "$user" "$PG_BIN/pg_ctl" -D "$home/data" -m "${2:-fast}" -w -t 60 stop >/dev/null 2>&1 || true
}

# An older layout's PostgreSQL data folder: DIR/pg, or the /var/tmp/eventlog-pg-<md5> folder DIR/pg links
# to (resolved one step, checked, never followed as root). Prints nothing when it is neither.
legacy_pg_home() {
    local dir=$1 target
    if [ -L "$dir/pg" ]; then
        target=$(readlink -- "$dir/pg")
        if [[ "$target" =~ ^/var/tmp/eventlog-pg-[0-9a-f]{12}$ ]] &&
            [[ "$(stat_of "$target")" =~ ^postgres\ (700|750|755)\ directory$ ]]; then
            echo "$target"
        else
            echo "stack: $dir/pg links to $target, which is not an eventlog PostgreSQL folder; left alone" >&2
        fi
    elif [ -d "$dir/pg" ]; then
        echo "$dir/pg"
    fi
}

# An older layout's server: stopped as the postgres user.
stop_legacy_pg() {
    local home user
    home=$(legacy_pg_home "$1")
    [ -n "$home" ] || return 0
    user=$(svc_user pg)
    as_user "$user" test -f "$home/data/PG_VERSION" || return 0
    as_user "$user" "$PG_BIN/pg_ctl" -D "$home/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

ch_config() {
    local home=$1 http=$2 tcp=$3
    cat <<XML
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$home/log/server.log</log>
        <errorlog>$home/log/error.log</errorlog>
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
    <path>$home/data/</path>
    <tmp_path>$home/tmp/</tmp_path>
    <user_files_path>$home/user_files/</user_files_path>
    <format_schema_path>$home/format_schemas/</format_schema_path>
    <users_config>$home/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
XML
}

# users.xml: `eventlog` with CH_PASSWORD; `default` with a random password that is not kept.
ch_users() {
    local eventlog_sha=$1 default_sha=$2
    cat <<XML
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <eventlog>
            <password_sha256_hex>$eventlog_sha</password_sha256_hex>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </eventlog>
        <default>
            <password_sha256_hex>$default_sha</password_sha256_hex>
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

sha256_hex() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

start_ch() {
    local dir=$1 http=$2 user home tcp bin
    refuse_legacy "$dir"
    own_dir "$dir"
    own_dir "$dir/ch"
    ensure_credentials "$dir"
    if [ -f "$dir/ch/pid" ] && alive "$(cat "$dir/ch/pid")"; then
        echo "clickhouse already running (pid $(cat "$dir/ch/pid"))"; return 0
    fi
    user=$(svc_user ch)
    home=$(server_home "$dir" ch create)
    as_user "$user" mkdir -p "$home/log" "$home/data" "$home/tmp" "$home/user_files" "$home/format_schemas"
    # The native (TCP) port is kept across restarts: `.env` names it for clickhouse-client (make ch-shell).
    tcp=$(cat "$dir/ch/tcp_port" 2>/dev/null || true)
    [ -n "$tcp" ] || tcp=$(free_port)
    ch_config "$home" "$http" "$tcp" | write_as "$user" "$home/config.xml"
    # DIR/ch/extra.xml, when present, is merged into the configuration (config.d): scripts/cluster.sh writes a
    # cluster node's ZooKeeper, shards, macros and interserver port there.
    as_user "$user" mkdir -p "$home/config.d"
    if [ -f "$dir/ch/extra.xml" ]; then
        write_as "$user" "$home/config.d/extra.xml" <"$dir/ch/extra.xml"
    else
        as_user "$user" rm -f "$home/config.d/extra.xml"
    fi
    ch_users "$(sha256_hex "$(secret "$dir" CH_PASSWORD)")" "$(sha256_hex "$(random_hex)")" |
        write_as "$user" "$home/users.xml"
    bin=$(ch_server_bin)
    local -a server=("$bin")
    [ "$(basename "$bin")" = clickhouse ] && server+=(server)
    server+=("--config-file=$home/config.xml")
    # setpriv and env exec in place, so $! is the server's pid (the e2e tests kill and freeze it).
    if is_root; then
        server=(setpriv --reuid="$user" --regid="$user" --init-groups -- "${server[@]}")
    fi
    (cd / && exec setsid nohup env -i PATH="$SAFE_PATH" LANG=C.UTF-8 "${server[@]}" >"$dir/ch/stdout.log" 2>&1) &
    echo $! >"$dir/ch/pid"
    echo "$http" >"$dir/ch/port"
    echo "$tcp" >"$dir/ch/tcp_port"
    for _ in $(seq 1 300); do
        if curl -fsS "http://127.0.0.1:$http/ping" >/dev/null 2>&1; then return 0; fi
        alive "$(cat "$dir/ch/pid")" || {
            tail -20 "$dir/ch/stdout.log" >&2 || true
            as_user "$user" tail -20 "$home/log/error.log" >&2 || true
            die "clickhouse exited"
        }
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

# Deletes the stack: each server folder as its own user (a link or anything planted there can only lead
# to what that user may delete anyway), then DIR, which holds only the caller's files, without crossing
# file systems.
remove_stack() {
    local dir=$1 kind user home
    [ -e "$dir" ] || return 0
    [ -d "$dir" ] && [ ! -L "$dir" ] || die "$dir: not a directory"
    for kind in pg ch; do
        home=$(server_home "$dir" "$kind")
        if [ -n "$home" ]; then as_user "$(svc_user "$kind")" rm -rf --one-file-system -- "$home"; fi
    done
    if is_root; then
        # An older layout: PostgreSQL's data linked from /var/tmp/eventlog-pg-<md5>.
        if [ -L "$dir/pg" ]; then
            local legacy
            legacy=$(legacy_pg_home "$dir")
            [ -n "$legacy" ] && as_user postgres rm -rf --one-file-system -- "$legacy"
            rm -f -- "$dir/pg"
        fi
        # Anything in DIR that belongs to a server's user goes as that user.
        local path owner
        while IFS= read -r -d '' path; do
            owner=$(stat -c %U -- "$path")
            case "$owner" in
                postgres | clickhouse) as_user "$owner" rm -rf --one-file-system -- "$path" 2>/dev/null || true ;;
            esac
        done < <(find "$dir" -xdev -mindepth 1 \( -user postgres -o -user clickhouse \) -prune -print0)
    fi
    rm -rf --one-file-system -- "$dir"
}

stack_dir_arg() { realpath -m -- "$1"; }

cmd=${1:-}
case "$cmd" in
    start) [ $# -eq 4 ] || die "usage: start DIR PG_PORT CH_HTTP_PORT"
           dir=$(stack_dir_arg "$2"); mkdir -p -- "$(dirname -- "$dir")"; start_pg "$dir" "$3"; start_ch "$dir" "$4" ;;
    stop) [ $# -eq 2 ] || die "usage: stop DIR"; dir=$(stack_dir_arg "$2"); stop_ch "$dir"; stop_pg "$dir" ;;
    remove) [ $# -eq 2 ] || die "usage: remove DIR"; dir=$(stack_dir_arg "$2"); stop_ch "$dir"; stop_pg "$dir"
            remove_stack "$dir" ;;
    start-pg) [ $# -eq 3 ] || die "usage: start-pg DIR PORT"
              dir=$(stack_dir_arg "$2"); mkdir -p -- "$(dirname -- "$dir")"; start_pg "$dir" "$3" ;;
    start-ch) [ $# -eq 3 ] || die "usage: start-ch DIR HTTP_PORT"
              dir=$(stack_dir_arg "$2"); mkdir -p -- "$(dirname -- "$dir")"; start_ch "$dir" "$3" ;;
    stop-pg) [ $# -eq 2 ] || die "usage: stop-pg DIR"; stop_pg "$(stack_dir_arg "$2")" ;;
    stop-ch) [ $# -eq 2 ] || die "usage: stop-ch DIR"; stop_ch "$(stack_dir_arg "$2")" ;;
    secret) [ $# -eq 3 ] || die "usage: secret DIR NAME"
            case $3 in PG_PASSWORD | PG_SUPERUSER_PASSWORD | CH_PASSWORD) ;; *) die "secret: unknown name $3" ;; esac
            secret "$(stack_dir_arg "$2")" "$3" ;;
    free-port) free_port ;;
    start-pg-standby) [ $# -eq 4 ] || die "usage: start-pg-standby DIR PORT PRIMARY_DIR"
                      dir=$(stack_dir_arg "$2"); mkdir -p -- "$(dirname -- "$dir")"
                      start_pg_standby "$dir" "$3" "$(stack_dir_arg "$4")" ;;
    promote-pg) [ $# -eq 2 ] || die "usage: promote-pg DIR"; promote_pg "$(stack_dir_arg "$2")" ;;
    kill-pg) [ $# -eq 2 ] || die "usage: kill-pg DIR"; kill_pg "$(stack_dir_arg "$2")" ;;
    crash-pg) [ $# -eq 2 ] || die "usage: crash-pg DIR"; stop_pg "$(stack_dir_arg "$2")" immediate ;;
    freeze-pg) [ $# -eq 2 ] || die "usage: freeze-pg DIR"; signal_pg "$(stack_dir_arg "$2")" STOP ;;
    thaw-pg) [ $# -eq 2 ] || die "usage: thaw-pg DIR"; signal_pg "$(stack_dir_arg "$2")" CONT ;;
    *) die "usage: start|stop|remove|start-pg|start-ch|stop-pg|stop-ch|secret|free-port|start-pg-standby|promote-pg|kill-pg|crash-pg|freeze-pg|thaw-pg (see the header)" ;;
esac
