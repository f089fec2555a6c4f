"""The servers a bench run talks to: its own throwaway stack (scripts/stack.sh) or the configured ones.

Credentials stay in this process and in the environment of the processes it starts (the relay, pgbench,
the baseline); they are never put on a command line or printed.
"""
import http.client
import os
import secrets
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import psycopg2

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "scripts" / "stack.sh"

# Variables that configure eventlog: never inherited from the caller's environment by a relay of our own stack,
# so that the bench measures the defaults (use --relay-env to change one on purpose).
CONFIG_PREFIXES = ("DATABASE_URL", "POSTGRES_", "CLICKHOUSE_", "EVENT_", "RELAY_", "EVENTLOG_", "LOG_LEVEL",
                   "ENVIRONMENT", "DEBUG", "SENTRY_", "OTEL_")


@dataclass
class Servers:
    """Where PostgreSQL and ClickHouse are, with the credentials to reach them."""
    pg_dsn: str                      # the schema owner: eventlog migrate, resets, the held snapshot
    pg_admin_dsn: str                # superuser on our own stack; the same role when configured
    ch_scheme: str
    ch_host: str
    ch_http_port: int
    ch_tcp_port: int
    ch_user: str
    ch_password: str
    ch_database: str
    event_log_table: str = "event_log"
    own_stack: bool = False
    stack_dir: Optional[Path] = None
    ch_pid_hint: Optional[int] = None
    extra_env: dict = field(default_factory=dict)  # configured mode: every variable of .env and the environment
    relay_dsn: str = ""              # a login in eventlog_relay (relays as other roles take each other for strangers)
    producer_dsn: str = ""           # a login in eventlog_producer: pgbench producers (emit, the plain INSERT)

    def __post_init__(self):
        self.relay_dsn = self.relay_dsn or self.pg_dsn
        self.producer_dsn = self.producer_dsn or self.pg_dsn

    def clickhouse_uri(self) -> str:
        user = urllib.parse.quote(self.ch_user, safe="")
        password = urllib.parse.quote(self.ch_password, safe="")
        return f"{self.ch_scheme}://{user}:{password}@{self.ch_host}:{self.ch_http_port}/{self.ch_database}"

    def eventlog_env(self, extra: Optional[dict] = None, relay: bool = True) -> dict:
        """The environment of an `eventlog` process on these servers: the relay's role, or the owner's (migrate)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(CONFIG_PREFIXES)}
        env.update(self.extra_env)
        env["DATABASE_URL"] = self.relay_dsn if relay else self.pg_dsn
        env["CLICKHOUSE_URI"] = self.clickhouse_uri()
        env.pop("CLICKHOUSE_USER", None)
        env.pop("CLICKHOUSE_PASSWORD", None)
        env.update(extra or {})
        return env

    def libpq_env(self) -> dict:
        """PG* variables for pgbench, from the producer's DSN."""
        u = urllib.parse.urlsplit(self.producer_dsn)
        env = dict(os.environ)
        env.update({"PGHOST": u.hostname or "127.0.0.1", "PGPORT": str(u.port or 5432),
                    "PGUSER": urllib.parse.unquote(u.username or ""),
                    "PGPASSWORD": urllib.parse.unquote(u.password or ""),
                    "PGDATABASE": urllib.parse.unquote(u.path.lstrip("/")), "PGPASSFILE": "/nonexistent"})
        for k, v in urllib.parse.parse_qsl(u.query):
            if k == "sslmode":
                env["PGSSLMODE"] = v
            elif k == "sslrootcert":
                env["PGSSLROOTCERT"] = v
        return env

    def producer_role(self) -> str:
        return urllib.parse.unquote(urllib.parse.urlsplit(self.producer_dsn).username or "")

    def pg(self, admin: bool = False, autocommit: bool = True, dsn: Optional[str] = None):
        conn = psycopg2.connect(dsn or (self.pg_admin_dsn if admin else self.pg_dsn))
        conn.autocommit = autocommit
        return conn

    def ch(self) -> "ClickHouseHttp":
        return ClickHouseHttp(self)


class ClickHouseHttp:
    """One keep-alive HTTP connection to ClickHouse; not thread-safe (one per thread)."""

    def __init__(self, servers: Servers):
        self.s = servers
        self.conn = None

    def _connect(self):
        cls = http.client.HTTPSConnection if self.s.ch_scheme == "https" else http.client.HTTPConnection
        self.conn = cls(self.s.ch_host, self.s.ch_http_port, timeout=120)

    def query(self, sql: str) -> str:
        headers = {"X-ClickHouse-User": self.s.ch_user, "X-ClickHouse-Key": self.s.ch_password}
        path = "/?" + urllib.parse.urlencode({"database": self.s.ch_database})
        for attempt in (0, 1):
            if self.conn is None:
                self._connect()
            try:
                self.conn.request("POST", path, body=sql.encode(), headers=headers)
                resp = self.conn.getresponse()
                body = resp.read().decode()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
                continue
            if resp.status != 200:
                raise RuntimeError(f"ClickHouse: HTTP {resp.status}: {body.strip()[:500]}")
            return body
        raise AssertionError("unreachable")

    def scalar(self, sql: str) -> str:
        return self.query(sql).strip()

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _stack(*args: str, env: Optional[dict] = None, capture: bool = False) -> str:
    r = subprocess.run([str(STACK), *args], cwd=ROOT, env=env, check=True, text=True,
                       stdout=subprocess.PIPE if capture else subprocess.DEVNULL)
    return (r.stdout or "").strip()


def start_own_stack(fsync: str) -> Servers:
    """Throwaway PostgreSQL 15 and ClickHouse on free loopback ports, as scripts/test.sh starts them."""
    stack_dir = ROOT / ".local" / f"bench-{os.getpid()}"
    pg_port = int(_stack("free-port", capture=True))
    ch_port = int(_stack("free-port", capture=True))
    while ch_port == pg_port:
        ch_port = int(_stack("free-port", capture=True))
    env = dict(os.environ, EVENTLOG_PG_FSYNC=fsync)
    _stack("start", str(stack_dir), str(pg_port), str(ch_port), env=env)
    superuser = _stack("secret", str(stack_dir), "PG_SUPERUSER_PASSWORD", capture=True)
    app = _stack("secret", str(stack_dir), "PG_PASSWORD", capture=True)
    ch_password = _stack("secret", str(stack_dir), "CH_PASSWORD", capture=True)
    q = lambda s: urllib.parse.quote(s, safe="")  # noqa: E731
    tcp_port = int((stack_dir / "ch" / "tcp_port").read_text().strip())
    pid = int((stack_dir / "ch" / "pid").read_text().strip())
    # Least-privilege logins, as the production checklist asks: the relay in eventlog_relay, producers in
    # eventlog_producer (stack.sh created both groups).
    relay_pw, producer_pw = secrets.token_hex(16), secrets.token_hex(16)
    conn = psycopg2.connect(f"postgres://postgres:{q(superuser)}@127.0.0.1:{pg_port}/eventlog")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE ROLE bench_relay LOGIN PASSWORD %s IN ROLE eventlog_relay", (relay_pw,))
        cur.execute("CREATE ROLE bench_producer LOGIN PASSWORD %s IN ROLE eventlog_producer", (producer_pw,))
    conn.close()
    return Servers(relay_dsn=f"postgres://bench_relay:{relay_pw}@127.0.0.1:{pg_port}/eventlog",
                   producer_dsn=f"postgres://bench_producer:{producer_pw}@127.0.0.1:{pg_port}/eventlog",
                   pg_dsn=f"postgres://eventlog:{q(app)}@127.0.0.1:{pg_port}/eventlog",
                   pg_admin_dsn=f"postgres://postgres:{q(superuser)}@127.0.0.1:{pg_port}/eventlog",
                   ch_scheme="http", ch_host="127.0.0.1", ch_http_port=ch_port, ch_tcp_port=tcp_port,
                   ch_user="eventlog", ch_password=ch_password, ch_database="eventlog", own_stack=True,
                   stack_dir=stack_dir, ch_pid_hint=pid)


def remove_own_stack(servers: Servers) -> None:
    if servers.own_stack and servers.stack_dir is not None:
        subprocess.run([str(STACK), "remove", str(servers.stack_dir)], cwd=ROOT, check=False,
                       stdout=subprocess.DEVNULL)


CLUSTER = ROOT / "scripts" / "cluster.sh"


@dataclass
class TestCluster:
    """A ClickHouse test cluster started by scripts/cluster.sh: ZooKeeper and shards x replicas on loopback."""
    dir: Path
    password: str
    nodes: list                      # (shard, replica, http_port, tcp_port), shard then replica order

    def http(self, shard: int, replica: int) -> int:
        return next(h for s, r, h, _ in self.nodes if (s, r) == (shard, replica))

    def shards_variable(self) -> str:
        """CLICKHOUSE_SHARDS: shards separated by `;`, a shard's replicas by `,` (HTTP ports)."""
        shards = {}
        for s, _, h, _ in self.nodes:
            shards.setdefault(s, []).append(f"127.0.0.1:{h}")
        return ";".join(",".join(v) for _, v in sorted(shards.items()))

    def pids(self) -> dict:
        """The servers' pids by "S-R", and ZooKeeper's under "zk" (None when a pid file is missing)."""
        def read(path: Path):
            try:
                return int(path.read_text().strip())
            except (OSError, ValueError):
                return None
        out = {f"{s}-{r}": read(self.dir / f"node-{s}-{r}" / "ch" / "pid") for s, r, _, _ in self.nodes}
        out["zk"] = read(self.dir / "zk" / "pid")
        return out


def start_cluster(shards: int = 2, replicas: int = 2) -> TestCluster:
    """scripts/cluster.sh start in .local/bench-cluster-PID (free ports, a generated password shared by the nodes)."""
    d = ROOT / ".local" / f"bench-cluster-{os.getpid()}"
    subprocess.run([str(CLUSTER), "start", str(d), str(shards), str(replicas)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    password = subprocess.run([str(CLUSTER), "secret", str(d)], cwd=ROOT, check=True, text=True,
                              capture_output=True).stdout.strip()
    nodes = []
    for line in subprocess.run([str(CLUSTER), "nodes", str(d)], cwd=ROOT, check=True, text=True,
                               capture_output=True).stdout.splitlines():
        s, r, h, t = (int(x) for x in line.split())
        nodes.append((s, r, h, t))
    return TestCluster(dir=d, password=password, nodes=nodes)


def remove_cluster(cluster: TestCluster) -> None:
    subprocess.run([str(CLUSTER), "remove", str(cluster.dir)], cwd=ROOT, check=False, stdout=subprocess.DEVNULL)


def read_dotenv(path: Path) -> dict:
    """KEY=VALUE lines (optional `export`, optional single or double quotes); comments and blanks skipped."""
    out = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def configured_servers() -> Servers:
    """The servers named by DATABASE_URL / CLICKHOUSE_URI (+ CLICKHOUSE_USER/PASSWORD), environment first, then .env."""
    dotenv = read_dotenv(Path(os.environ.get("EVENTLOG_ENV_FILE", ROOT / ".env")))
    merged = {**dotenv, **{k: v for k, v in os.environ.items() if k.startswith(CONFIG_PREFIXES)}}
    dsn = merged.get("DATABASE_URL")
    uri = merged.get("CLICKHOUSE_URI")
    if not dsn or not uri:
        raise SystemExit("--use-configured needs DATABASE_URL and CLICKHOUSE_URI (environment or .env)")
    u = urllib.parse.urlsplit(uri)
    user = urllib.parse.unquote(u.username) if u.username else merged.get("CLICKHOUSE_USER", "default")
    password = urllib.parse.unquote(u.password) if u.password is not None else merged.get("CLICKHOUSE_PASSWORD", "")
    scheme = u.scheme or "http"
    extra = {k: v for k, v in merged.items() if k not in ("DATABASE_URL", "CLICKHOUSE_URI", "EVENTLOG_LOCAL_STACK")}
    return Servers(pg_dsn=dsn, pg_admin_dsn=dsn, ch_scheme=scheme, ch_host=u.hostname or "127.0.0.1",
                   ch_http_port=u.port or (8443 if scheme == "https" else 8123),
                   ch_tcp_port=int(merged.get("CLICKHOUSE_NATIVE_PORT", "9000")), ch_user=user, ch_password=password,
                   ch_database=(u.path.strip("/") or merged.get("CLICKHOUSE_SCHEMA", "default")),
                   event_log_table=merged.get("CLICKHOUSE_EVENT_LOG_TABLE_NAME", "event_log"), extra_env=extra)


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
