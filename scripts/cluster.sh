#!/usr/bin/env bash
# A replicated, sharded ClickHouse test cluster on loopback (issue 23): one ZooKeeper and SHARDS x REPLICAS
# ClickHouse servers, each a scripts/stack.sh ClickHouse of its own, named cluster `eventlog_cluster`.
#
#   scripts/cluster.sh start DIR [SHARDS REPLICAS]   start ZooKeeper and the servers (default 2 x 2), wait until ready
#   scripts/cluster.sh nodes DIR                     print "SHARD REPLICA HTTP_PORT TCP_PORT" per server
#   scripts/cluster.sh secret DIR                    print the CH_PASSWORD every server shares (for "$(...)" only)
#   scripts/cluster.sh stop-node DIR S R | start-node DIR S R    one server (S, R count from 1)
#   scripts/cluster.sh kill-node DIR S R             kill -9 one server
#   scripts/cluster.sh freeze-shard DIR S | thaw-shard DIR S     SIGSTOP / SIGCONT every server of shard S
#   scripts/cluster.sh stop DIR | remove DIR         stop everything (keep data) | and delete the data
#
# Layout: DIR/credentials (one CH_PASSWORD for every server: a Distributed query logs in to the others as `eventlog`),
# DIR/zk (ZooKeeper's port, pid, log; its data in /var/tmp/eventlog-zk.XXXXXXXXXX as the `zookeeper` user when run
# as root), DIR/node-S-R (a stack.sh folder whose ch/extra.xml names ZooKeeper, the cluster's shards, the node's
# macros {shard} and {replica}, and its interserver port). Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
STACK=$PWD/scripts/stack.sh
CLUSTER=eventlog_cluster

die() { echo "cluster: $*" >&2; exit 1; }
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$st" ] && [ "${st:0:1}" != Z ]; }
is_root() { [ "$(id -u)" -eq 0 ]; }
# A free port below the kernel's ephemeral range (net.ipv4.ip_local_port_range, from 32768 by default), none of those
# this cluster already chose. Outgoing connections draw their ports from the ephemeral range, so a port picked there
# and released could be taken by one before the server binds it ("Address already in use" at start, seen once).
port() {
    local dir=$1
    { cat "$dir"/zk/port "$dir"/node-*/ch/port "$dir"/node-*/ch/tcp_port "$dir"/node-*/ch/interserver_port 2>/dev/null ||
        true; } |
        python3 -c '
import random, socket, sys
taken = {int(x) for x in sys.stdin.read().split()}
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(500):
    p = random.randint(20000, max(20001, low - 1))
    if p in taken:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    sys.exit(0)
sys.exit("cluster: no free port found")'
}

node_dir() { echo "$1/node-$2-$3"; }

# Each server's folder, in shard then replica order.
each_node() {
    local dir=$1 d
    for d in "$dir"/node-*-*; do [ -d "$d" ] && echo "$d"; done | sort -t- -k2,2n -k3,3n
}

zk_user() { if is_root; then echo zookeeper; else id -un; fi; }

start_zk() {
    local dir=$1 user data zport
    mkdir -p -m 700 "$dir/zk"
    if [ -f "$dir/zk/pid" ] && alive "$(cat "$dir/zk/pid")"; then return 0; fi
    user=$(zk_user)
    if is_root; then
        id -u zookeeper >/dev/null 2>&1 || die "no 'zookeeper' user (is zookeeperd installed? scripts/install-deps.sh)"
        if [ -f "$dir/zk/location" ]; then data=$(cat "$dir/zk/location"); else data=""; fi
        if [ -z "$data" ] || [ ! -d "$data" ]; then
            data=$(mktemp -d /var/tmp/eventlog-zk.XXXXXXXXXX)
            chown zookeeper:zookeeper "$data"
            echo "$data" >"$dir/zk/location"
        fi
    else
        data=$dir/zk/data
        mkdir -p "$data"
    fi
    [ -f /usr/share/java/zookeeper.jar ] || die "no /usr/share/java/zookeeper.jar (is zookeeperd installed?)"
    zport=$(cat "$dir/zk/port" 2>/dev/null || port "$dir")
    echo "$zport" >"$dir/zk/port"
    local cfg
    cfg=$(printf '%s\n' "dataDir=$data" "clientPort=$zport" "clientPortAddress=127.0.0.1" "tickTime=500" \
        "admin.enableServer=false" "4lw.commands.whitelist=ruok")
    if is_root; then
        printf '%s\n' "$cfg" | runuser -u "$user" -- sh -c 'umask 077 && cat >"$1"' sh "$data/zoo.cfg"
    else
        printf '%s\n' "$cfg" >"$data/zoo.cfg"
    fi
    local -a cmd=(java -Xmx256m -cp "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
        org.apache.zookeeper.server.ZooKeeperServerMain "$data/zoo.cfg")
    if is_root; then cmd=(setpriv --reuid="$user" --regid="$user" --init-groups -- "${cmd[@]}"); fi
    (cd / && exec setsid nohup env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "${cmd[@]}" \
        >"$dir/zk/stdout.log" 2>&1) &
    echo $! >"$dir/zk/pid"
    for _ in $(seq 1 300); do
        if [ "$(zk_ruok "$zport")" = imok ]; then return 0; fi
        alive "$(cat "$dir/zk/pid")" || { tail -20 "$dir/zk/stdout.log" >&2; die "zookeeper exited"; }
        sleep 0.1
    done
    die "zookeeper did not answer ruok on port $zport"
}

zk_ruok() {
    timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$1 && printf ruok >&3 && cat <&3' _ "$1" 2>/dev/null || true
}

stop_pid_file() {
    local f=$1 pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

# The node's ch/extra.xml: ZooKeeper, every shard's replicas (native ports), its macros and interserver port.
node_config() {
    local dir=$1 shard=$2 replica=$3 password=$4 zport s r d
    zport=$(cat "$dir/zk/port")
    echo '<?xml version="1.0"?>'
    echo '<yandex>'
    echo "    <zookeeper><node><host>127.0.0.1</host><port>$zport</port></node></zookeeper>"
    echo "    <distributed_ddl><path>/clickhouse/eventlog/task_queue/ddl</path></distributed_ddl>"
    echo "    <interserver_http_host>127.0.0.1</interserver_http_host>"
    echo "    <interserver_http_port>$(cat "$(node_dir "$dir" "$shard" "$replica")/ch/interserver_port")</interserver_http_port>"
    echo "    <macros><shard>$shard</shard><replica>r$shard-$replica</replica><cluster>$CLUSTER</cluster></macros>"
    echo "    <remote_servers><$CLUSTER>"
    for s in $(seq 1 "$(cat "$dir/shards")"); do
        echo "        <shard><internal_replication>true</internal_replication>"
        for r in $(seq 1 "$(cat "$dir/replicas")"); do
            d=$(node_dir "$dir" "$s" "$r")
            echo "            <replica><host>127.0.0.1</host><port>$(cat "$d/ch/tcp_port")</port><user>eventlog</user><password>$password</password></replica>"
        done
        echo "        </shard>"
    done
    echo "    </$CLUSTER></remote_servers>"
    echo '</yandex>'
}

start_node() {
    local dir=$1 s=$2 r=$3 d
    d=$(node_dir "$dir" "$s" "$r")
    [ -f "$d/ch/port" ] || die "$d: no such node (start the cluster first)"
    "$STACK" start-ch "$d" "$(cat "$d/ch/port")" >/dev/null
}

start_cluster() {
    local dir=$1 shards=${2:-2} replicas=${3:-2} s r d password
    [[ "$shards" =~ ^[1-9]$ && "$replicas" =~ ^[1-9]$ ]] || die "SHARDS and REPLICAS: expected 1 to 9"
    mkdir -p -m 700 "$dir"
    dir=$(cd "$dir" && pwd)
    if [ -f "$dir/shards" ]; then
        [ "$(cat "$dir/shards") $(cat "$dir/replicas")" = "$shards $replicas" ] ||
            die "$dir holds a $(cat "$dir/shards") x $(cat "$dir/replicas") cluster"
    fi
    echo "$shards" >"$dir/shards"
    echo "$replicas" >"$dir/replicas"
    # One stack.sh credentials file, copied to every node, so they share CH_PASSWORD.
    if [ ! -f "$dir/credentials" ]; then
        (umask 077 && { echo "# Generated by scripts/cluster.sh. Keep private."
            echo "CH_PASSWORD=$(head -c 24 /dev/urandom | od -An -tx1 -v | tr -d ' \n')"; } >"$dir/credentials")
    fi
    password=$(sed -n 's/^CH_PASSWORD=\([0-9a-f]\{16,\}\)$/\1/p' "$dir/credentials")
    [ -n "$password" ] || die "$dir/credentials has no CH_PASSWORD"
    start_zk "$dir"
    # Ports first (every node's configuration names every other node).
    for s in $(seq 1 "$shards"); do
        for r in $(seq 1 "$replicas"); do
            d=$(node_dir "$dir" "$s" "$r")
            mkdir -p -m 700 "$d/ch"
            [ -f "$d/credentials" ] || install -m 600 "$dir/credentials" "$d/credentials"
            [ -f "$d/ch/port" ] || port "$dir" >"$d/ch/port"
            [ -f "$d/ch/tcp_port" ] || port "$dir" >"$d/ch/tcp_port"
            [ -f "$d/ch/interserver_port" ] || port "$dir" >"$d/ch/interserver_port"
        done
    done
    for s in $(seq 1 "$shards"); do
        for r in $(seq 1 "$replicas"); do
            d=$(node_dir "$dir" "$s" "$r")
            (umask 077 && node_config "$dir" "$s" "$r" "$password" >"$d/ch/extra.xml")
            start_node "$dir" "$s" "$r"
        done
    done
}

each_node_of_shard() {
    local dir=$1 s=$2 r
    for r in $(seq 1 "$(cat "$dir/replicas")"); do node_dir "$dir" "$s" "$r"; done
}

signal_shard() {
    local dir=$1 s=$2 sig=$3 d
    for d in $(each_node_of_shard "$dir" "$s"); do
        [ -f "$d/ch/pid" ] && kill "-$sig" "$(cat "$d/ch/pid")" 2>/dev/null || true
    done
}

cmd=${1:-}
[ $# -ge 2 ] || die "usage: start|nodes|secret|stop-node|start-node|kill-node|freeze-shard|thaw-shard|stop|remove DIR ... (see the header)"
dir=$2
case "$cmd" in
    start) start_cluster "$dir" "${3:-2}" "${4:-2}" ;;
    nodes)
        for d in $(each_node "$dir"); do
            n=${d##*/node-}
            echo "${n%-*} ${n#*-} $(cat "$d/ch/port") $(cat "$d/ch/tcp_port")"
        done
        ;;
    secret) sed -n 's/^CH_PASSWORD=\([0-9a-f]\{16,\}\)$/\1/p' "$dir/credentials" ;;
    stop-node) "$STACK" stop-ch "$(node_dir "$dir" "$3" "$4")" ;;
    start-node) start_node "$dir" "$3" "$4" ;;
    kill-node)
        d=$(node_dir "$dir" "$3" "$4")
        [ -f "$d/ch/pid" ] && kill -KILL "$(cat "$d/ch/pid")" 2>/dev/null || true
        ;;
    freeze-shard) signal_shard "$dir" "$3" STOP ;;
    thaw-shard) signal_shard "$dir" "$3" CONT ;;
    stop)
        for d in $(each_node "$dir"); do "$STACK" stop-ch "$d"; done
        stop_pid_file "$dir/zk/pid"
        ;;
    remove)
        [ -d "$dir" ] || exit 0
        for d in $(each_node "$dir"); do "$STACK" remove "$d"; done
        stop_pid_file "$dir/zk/pid"
        if [ -f "$dir/zk/location" ]; then
            loc=$(cat "$dir/zk/location")
            [[ "$loc" =~ ^/var/tmp/eventlog-zk\.[A-Za-z0-9]{10}$ ]] && runuser -u zookeeper -- rm -rf --one-file-system -- "$loc"
        fi
        rm -rf --one-file-system -- "$dir"
        ;;
    *) die "unknown command '$cmd' (see the header)" ;;
esac
