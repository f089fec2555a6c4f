"""The scenarios of `make bench` (docs/benchmarks.md says what each measures and what it cannot)."""
import dataclasses
import json
import os
import re
import resource
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from . import workload
from .procstat import CpuProbe, process_cpu
from .runner import PgActivitySampler, Runner, log, per_million, relay_profile
from .servers import ROOT, TestCluster, remove_cluster, start_cluster, wait_until
from .stats import fmt_num, fmt_summary, percentile, summary


@dataclass
class Config:
    quick: bool = False
    reps: Optional[int] = None                       # --reps: overrides every repetition count
    drain_sizes: list = field(default_factory=lambda: [100_000, 1_000_000, 3_000_000])
    drain_reps: dict = field(default_factory=lambda: {100_000: 3, 1_000_000: 3, 3_000_000: 1})
    two_relay_reps: dict = field(default_factory=lambda: {100_000: 3, 1_000_000: 1, 3_000_000: 1})
    baseline_sizes: list = field(default_factory=lambda: [100_000, 1_000_000])
    baseline_reps: dict = field(default_factory=lambda: {100_000: 3, 1_000_000: 1})
    sustained_seconds: float = 60
    sustained_warmup: float = 10
    sustained_producers: int = 2
    sustained_batch: int = 1000
    sustained_mode: str = "insert"
    sustained_rate: float = 0                        # events/s over all producers; 0: as fast as they can
    rounds_size: int = 100_000
    rounds_normal: int = 4
    rounds_held: int = 10
    fresh_seconds: float = 60
    fresh_rate: int = 5000
    fresh_clients: int = 8
    long: bool = False
    producer_seconds: int = 30
    producer_clients: int = 16
    producer_reps: int = 3
    micro_min_time: float = 0.5
    http_seconds: float = 20
    http_reps: int = 3
    http_connections: int = 64
    http_batch: int = 1000
    http_batch_connections: int = 8
    http_serve_env: dict = field(default_factory=dict)   # --serve-env: extra settings of `eventlog serve`
    cluster_drain_sizes: list = field(default_factory=lambda: [100_000])   # --drain-sizes when given
    cluster_drain_reps: dict = field(default_factory=lambda: {100_000: 3, 1_000_000: 1, 3_000_000: 1})

    def n_reps(self, table: dict, size: int) -> int:
        return self.reps if self.reps else table.get(size, 1)


def _row(metric, value, target="", note=""):
    return {"metric": metric, "value": value, "target": target, "note": note}


def _loadavg() -> list:
    return [float(x) for x in open("/proc/loadavg").read().split()[:3]]


# --- 1. drain ---------------------------------------------------------------------------------------------------
def drain_once(r: Runner, n: int, relays: int, label: str, target: str = "") -> dict:
    r.reset()
    load_s = r.load(n)
    r.vacuum("eventlog.outbox")
    r.checkpoint()
    timeout = max(300.0, n / 2000.0)
    load_before = _loadavg()
    sampler = PgActivitySampler(r.servers)
    cpu0 = r.cpu.snapshot()
    t0 = time.monotonic()
    if relays == 1:
        with sampler:
            procs = [r.relay(drain=True, name=label)]
            rc = procs[0].wait(timeout)
        t1 = time.monotonic()
        cpu1 = r.cpu.snapshot()
        if rc != 0:
            raise RuntimeError(f"relay --drain exited with {rc}; see {procs[0].log_path}")
    else:
        procs = [r.relay(drain=False, name=f"{label}-{i}") for i in range(relays)]
        try:
            with sampler:
                if not r.wait_delivered(n, timeout):
                    raise RuntimeError(f"{relays} relays did not deliver {n} events in {timeout:.0f} s")
            t1 = time.monotonic()
            cpu1 = r.cpu.snapshot()
            wait_until(r.pg_empty, 60, 0.05)
        finally:
            for p in procs:
                p.stop()
    wall = t1 - t0
    count, uniq = r.ch_count_uniq()
    delta = CpuProbe.delta(cpu0, cpu1)
    relay_cpu = sum(p.cpu for p in procs if p.cpu is not None)
    res = {"events": n, "relays": relays, "seconds": wall, "rate": n / wall, "load_seconds": load_s,
           "load_rate": n / load_s if load_s else None, "clickhouse_count": count, "clickhouse_unique": uniq,
           "exact": count == n and uniq == n,
           "cpu_s_per_million": {"relay": per_million(relay_cpu, n),
                                 "postgresql": per_million(delta["postgresql"], n),
                                 "clickhouse": per_million(delta["clickhouse"], n)},
           "loadavg_before": load_before, "pg_activity": sampler.result(),
           "profile": relay_profile([p.log_path for p in procs], wall)}
    for k, v in delta.items():  # a cluster's probe also reports ZooKeeper
        res["cpu_s_per_million"].setdefault(k, per_million(v, n))
    log(f"  drain {n:,}{target} with {relays} relay(s): {res['rate']:,.0f} events/s ({wall:.1f} s), "
        f"exact={res['exact']}, load {load_before[0]:.1f}")
    return res


def _profile_note(profile: dict) -> str:
    """claim_delivered's timings (or the busiest debug line with *_us fields, should it be renamed)."""
    events = profile["by_log_event"]
    if not events:
        return "no debug lines with timings"
    name = "claim_delivered" if "claim_delivered" in events else max(events, key=lambda k: events[k]["lines"])
    cd = events[name]
    parts = [f"{k.replace('_us', '')} {v['us_per_event']:.1f} µs/ev ({v['share_of_wall'] * 100:.0f}% of wall)"
             for k, v in cd["fields"].items() if v["us_per_event"] is not None]
    per = f"{cd['events'] / cd['lines']:,.0f} events per line" if cd["lines"] else ""
    return f"{name} ×{cd['lines']:,} ({per}): " + "; ".join(parts)


def _summarise_drain(runs: list) -> dict:
    return {"rate": summary(x["rate"] for x in runs),
            "seconds": summary(x["seconds"] for x in runs),
            "cpu_s_per_million": {k: summary(x["cpu_s_per_million"][k] for x in runs)
                                  for k in ("relay", "postgresql", "clickhouse")},
            "all_exact": all(x["exact"] for x in runs),
            "load_rate": summary(x["load_rate"] for x in runs)}


def scenario_drain(r: Runner, cfg: Config) -> dict:
    out = {"one_relay": {}, "two_relays": {}}
    rows = []
    for relays, key, reps in ((1, "one_relay", cfg.drain_reps), (2, "two_relays", cfg.two_relay_reps)):
        for n in cfg.drain_sizes:
            runs = [drain_once(r, n, relays, f"drain-{relays}r-{n}-{i}") for i in range(cfg.n_reps(reps, n))]
            s = _summarise_drain(runs)
            s["runs"] = runs
            out[key][str(n)] = s
            cpu = s["cpu_s_per_million"]
            rows.append(_row(f"drain {n:,}, {relays} relay{'s' if relays > 1 else ''} (events/s)",
                             fmt_summary(s["rate"]), "≥ 150,000" if relays == 1 else "",
                             ("" if s["all_exact"] else "NOT EXACT: see json; ") +
                             "CPU s/M ev: relay {} · PG {} · CH {}".format(
                                 fmt_num(cpu['relay']['median'] if cpu['relay'] else None, 1),
                                 fmt_num(cpu['postgresql']['median'] if cpu['postgresql'] else None, 1),
                                 fmt_num(cpu['clickhouse']['median'] if cpu['clickhouse'] else None, 1))))
    one = out["one_relay"]
    sizes = [str(n) for n in cfg.drain_sizes if str(n) in one and one[str(n)]["rate"]]
    if len(sizes) >= 2:
        medians = [one[n]["rate"]["median"] for n in sizes]
        spread = (max(medians) - min(medians)) / max(medians)
        out["flatness"] = {"sizes": sizes, "medians": medians, "spread": spread}
        rows.append(_row("drain flatness over backlogs (1 relay)", f"{spread * 100:.0f}% spread of medians",
                         "≤ 15%", ""))
    # Where the time goes: the first 1-relay run of the largest backlog.
    if sizes:
        first = one[sizes[-1]]["runs"][0]
        out["profile_note"] = _profile_note(first["profile"])
        rows.append(_row(f"relay profile, drain {int(sizes[-1]):,}", out["profile_note"], "", "first run"))
        rows.append(_row(f"relay's PostgreSQL sessions, drain {int(sizes[-1]):,}",
                         PgActivitySampler.note(first["pg_activity"]), "", "pg_stat_activity every 50 ms"))
    out["rows"] = rows
    return out


# --- 5. baseline (runs after drain so that it can reuse the same run's figures) ------------------------------
def _setup_baseline(r: Runner) -> None:
    r.pg_exec("CREATE SCHEMA IF NOT EXISTS eventlog_bench",
              "DROP TABLE IF EXISTS eventlog_bench.baseline_outbox",
              "CREATE TABLE eventlog_bench.baseline_outbox (LIKE eventlog.outbox INCLUDING DEFAULTS INCLUDING "
              "IDENTITY INCLUDING CONSTRAINTS INCLUDING INDEXES)",
              # The seed's outbox: an id key, no transaction id (eventlog's since migration 0018).
              "ALTER TABLE eventlog_bench.baseline_outbox DROP COLUMN txid, ADD PRIMARY KEY (id), ALTER COLUMN id DROP "
              "DEFAULT, ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY",
              "ALTER TABLE eventlog_bench.baseline_outbox ADD COLUMN processed boolean NOT NULL DEFAULT false",
              # The replaced service's "proper indexing on the outbox table": the claim's index.
              "CREATE INDEX baseline_outbox_unprocessed ON eventlog_bench.baseline_outbox (id) WHERE NOT processed")
    db = r.servers.ch_database
    r.ch.query(f"DROP TABLE IF EXISTS `{db}`.baseline_event_log")
    r.ch.query(f"CREATE TABLE `{db}`.baseline_event_log AS {r.ch_table}")


def baseline_once(r: Runner, n: int, label: str) -> dict:
    db = r.servers.ch_database
    r.pg_exec("TRUNCATE eventlog_bench.baseline_outbox")
    r.ch_truncate(f"`{db}`.baseline_event_log")
    r.load(n, table="eventlog_bench.baseline_outbox")
    r.vacuum("eventlog_bench.baseline_outbox")
    r.checkpoint()
    s = r.servers
    env = dict(os.environ, BASELINE_PG_DSN=s.pg_admin_dsn, BASELINE_CH_HOST=s.ch_host,
               BASELINE_CH_PORT=str(s.ch_tcp_port), BASELINE_CH_USER=s.ch_user, BASELINE_CH_PASSWORD=s.ch_password,
               BASELINE_CH_DATABASE=db)
    cpu0 = r.cpu.snapshot()
    t0 = time.monotonic()
    with open(r.logdir / f"{label}.log", "w") as err:
        proc = subprocess.Popen(["/usr/bin/python3", str(ROOT / "bench" / "baseline_celery_style.py"),
                                 "--table", "eventlog_bench.baseline_outbox", "--ch-table", "baseline_event_log"],
                                env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        t1 = time.monotonic()
        cpu1 = r.cpu.snapshot()
        stdout = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"baseline exited with {proc.returncode}; see {r.logdir / (label + '.log')}")
    wall = t1 - t0
    c, u = r.ch.scalar(f"SELECT count(), uniqExact(event_id) FROM `{db}`.baseline_event_log FORMAT TSV").split("\t")
    delta = CpuProbe.delta(cpu0, cpu1)
    res = {"events": n, "seconds": wall, "rate": n / wall, "exact": int(c) == n and int(u) == n,
           "reported": json.loads(stdout or "{}"),
           "cpu_s_per_million": {"baseline_process": per_million(usage.ru_utime + usage.ru_stime, n),
                                 "postgresql": per_million(delta["postgresql"], n),
                                 "clickhouse": per_million(delta["clickhouse"], n)}}
    log(f"  baseline {n:,}: {res['rate']:,.0f} events/s ({wall:.1f} s), exact={res['exact']}")
    return res


def scenario_baseline(r: Runner, cfg: Config, drain_result: Optional[dict]) -> dict:
    _setup_baseline(r)
    out = {"sizes": {}, "rows": []}
    for n in cfg.baseline_sizes:
        reps = cfg.n_reps(cfg.baseline_reps, n)
        ours = (drain_result or {}).get("one_relay", {}).get(str(n))
        ours_source = "drain scenario of this run"
        ours_runs = []
        base_runs = []
        for i in range(reps):
            if not ours:
                ours_runs.append(drain_once(r, n, 1, f"baseline-ours-{n}-{i}"))
            base_runs.append(baseline_once(r, n, f"baseline-{n}-{i}"))
        if not ours:
            ours = _summarise_drain(ours_runs)
            ours_source = "interleaved with the baseline runs"
        base = summary(x["rate"] for x in base_runs)
        ratio = ours["rate"]["median"] / base["median"] if base and ours.get("rate") else None
        worst = ours["rate"]["min"] / base["max"] if base and ours.get("rate") else None
        out["sizes"][str(n)] = {"baseline": {"rate": base, "runs": base_runs,
                                             "cpu_s_per_million": {k: summary(x["cpu_s_per_million"][k]
                                                                              for x in base_runs)
                                                                   for k in base_runs[0]["cpu_s_per_million"]},
                                             "all_exact": all(x["exact"] for x in base_runs)},
                                "ours_rate": ours["rate"], "ours_source": ours_source,
                                "ratio_of_medians": ratio, "ratio_worst_case": worst}
        out["rows"].append(_row(f"baseline (Celery-style Python) drain {n:,} (events/s)", fmt_summary(base), "", ""))
        out["rows"].append(_row(f"eventlog / baseline, {n:,}", f"{ratio:.2f}× (worst pairing {worst:.2f}×)"
                                if ratio else "n/a", "≥ 4×", f"ours: {ours_source}"))
    return out


# --- 7. drain into a cluster (scripts/cluster.sh: ZooKeeper, 2 shards x 2 replicas) --------------------------------
class ClusterRunner(Runner):
    """The run's Runner with ClickHouse swapped for a test cluster: the same PostgreSQL, outbox and relay role; the
    relay with CLICKHOUSE_CLUSTER and CLICKHOUSE_SHARDS; resets per node; counts through the Distributed table after
    SYSTEM SYNC REPLICA on every node (a Distributed read picks one replica per shard, which may lag); CPU of the four
    servers and ZooKeeper."""

    def __init__(self, single: Runner, cluster: TestCluster):
        self.cluster = cluster
        servers = dataclasses.replace(
            single.servers, ch_scheme="http", ch_host="127.0.0.1", ch_http_port=cluster.http(1, 1),
            ch_tcp_port=cluster.nodes[0][3], ch_user="eventlog", ch_password=cluster.password,
            ch_database="eventlog", event_log_table="event_log", own_stack=False, stack_dir=None, ch_pid_hint=None,
            extra_env={**single.servers.extra_env, "CLICKHOUSE_CLUSTER": "eventlog_cluster",
                       "CLICKHOUSE_SHARDS": cluster.shards_variable(), "CLICKHOUSE_CONNECT_TIMEOUT": "1"})
        super().__init__(servers, single.logdir, single.relay_env, single.binary)
        self.seq = single.seq
        self.cpu = ClusterCpuProbe(servers, cluster)
        self.nodes = {f"{s}-{r}": dataclasses.replace(servers, ch_http_port=h).ch() for s, r, h, _ in cluster.nodes}

    def reset(self) -> None:
        self.pg_exec("TRUNCATE eventlog.outbox, eventlog.delivery, eventlog.outbox_chunk, eventlog.outbox_ack")
        # On each shard's leader replica: a replica that is not the leader forwards the statement to it as `default`,
        # which has no password this cluster knows (ClickHouse 18.16).
        db = self.servers.ch_database
        for ch in self.nodes.values():
            if ch.scalar(f"SELECT is_leader FROM system.replicas WHERE database = '{db}' "
                         "AND table = 'event_log_local'") == "1":
                ch.query(f"TRUNCATE TABLE `{db}`.event_log_local")

    def sync_replicas(self) -> None:
        for ch in self.nodes.values():
            ch.query(f"SYSTEM SYNC REPLICA `{self.servers.ch_database}`.event_log_local")

    def ch_count_uniq(self, where: str = "1") -> tuple:
        self.sync_replicas()
        return super().ch_count_uniq(where)

    def shard_rows(self) -> dict:
        """Rows per shard (its first replica's, after a sync)."""
        return {s: int(self.nodes[f"{s}-1"].scalar(f"SELECT count() FROM `{self.servers.ch_database}`.event_log_local"))
                for s in sorted({s for s, _, _, _ in self.cluster.nodes})}


class ClusterCpuProbe(CpuProbe):
    """PostgreSQL as CpuProbe; ClickHouse: the sum over the cluster's servers; ZooKeeper apart."""

    def __init__(self, servers, cluster: TestCluster):
        super().__init__(servers)
        self.pids = cluster.pids()

    def snapshot(self) -> dict:
        snap = super().snapshot()
        ch = [process_cpu(p) if p else None for k, p in self.pids.items() if k != "zk"]
        snap["clickhouse"] = None if None in ch else sum(ch)
        snap["zookeeper"] = process_cpu(self.pids["zk"]) if self.pids.get("zk") else None
        return snap


def scenario_cluster_drain(r: Runner, cfg: Config) -> dict:
    """`relay --drain` of the same backlog into the run's one server and into a 2 x 2 cluster, alternating (which
    goes first alternates too, so that a drift of the machine falls on both)."""
    out = {"sizes": {}}
    rows = []
    log("  starting a 2 x 2 ClickHouse cluster (scripts/cluster.sh)")
    cluster = start_cluster(2, 2)
    try:
        c = ClusterRunner(r, cluster)
        c.migrate()
        out["clickhouse_version"] = c.ch.scalar("SELECT version()")
        for n in cfg.cluster_drain_sizes:
            single, clustered = [], []
            for i in range(cfg.n_reps(cfg.cluster_drain_reps, n)):
                order = [("one", r), ("cluster", c)]
                for kind, runner in (order if i % 2 == 0 else order[::-1]):
                    run = drain_once(runner, n, 1, f"cluster-drain-{kind}-{n}-{i}",
                                     " into the cluster" if kind == "cluster" else " into one server")
                    if kind == "cluster":
                        run["shard_rows"] = c.shard_rows()
                        clustered.append(run)
                    else:
                        single.append(run)
            one_s, cl_s = _summarise_drain(single), _summarise_drain(clustered)
            cl_s["cpu_s_per_million"]["zookeeper"] = summary(x["cpu_s_per_million"].get("zookeeper") for x in clustered)
            shares = [min(x["shard_rows"].values()) / max(1, sum(x["shard_rows"].values())) for x in clustered]
            out["sizes"][str(n)] = {"one_server": {**one_s, "runs": single}, "cluster": {**cl_s, "runs": clustered},
                                    "smallest_shard_share": summary(shares)}
            rows.append(_row(f"drain {n:,} into one server (events/s)", fmt_summary(one_s["rate"]), "",
                             ("" if one_s["all_exact"] else "NOT EXACT: see json; ") + _cpu_note(one_s)))
            rows.append(_row(f"drain {n:,} into a 2x2 cluster (events/s)", fmt_summary(cl_s["rate"]), "",
                             ("" if cl_s["all_exact"] else "NOT EXACT: see json; ") + _cpu_note(cl_s) +
                             f" (4 servers) · ZK {fmt_num(_median(cl_s['cpu_s_per_million']['zookeeper']), 1)}; "
                             f"smaller shard's share {min(shares) * 100:.0f}–{max(shares) * 100:.0f}%"))
            if one_s["rate"] and cl_s["rate"]:
                rows.append(_row(f"cluster / one server, drain {n:,}",
                                 f"{cl_s['rate']['median'] / one_s['rate']['median']:.2f}× (medians)", "", ""))
    finally:
        log("  removing the cluster")
        remove_cluster(cluster)
    out["rows"] = rows
    return out


def _median(s: Optional[dict]) -> Optional[float]:
    return s["median"] if s else None


def _cpu_note(s: dict) -> str:
    cpu = s["cpu_s_per_million"]
    return "CPU s/M ev: relay {} · PG {} · CH {}".format(*(fmt_num(_median(cpu[k]), 1)
                                                           for k in ("relay", "postgresql", "clickhouse")))


# --- 2. sustained, and the held-snapshot rounds ------------------------------------------------------------------
class HeldSnapshot:
    """A session that holds a REPEATABLE READ snapshot open (as a long report or an idle-in-transaction session)."""

    def __init__(self, r: Runner):
        self.conn = r.servers.pg()
        with self.conn.cursor() as cur:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT count(*) FROM eventlog.outbox")

    def close(self):
        try:
            with self.conn.cursor() as cur:
                cur.execute("ROLLBACK")
        finally:
            self.conn.close()


def sustained_once(r: Runner, cfg: Config, held: bool, label: str) -> dict:
    r.reset()
    r.vacuum("eventlog.outbox")
    holder = HeldSnapshot(r) if held else None
    relay = r.relay(drain=False, name=label)
    stop = threading.Event()
    produced = [0] * cfg.sustained_producers
    errors = []
    per_producer_rate = cfg.sustained_rate / cfg.sustained_producers if cfg.sustained_rate else 0
    started = time.monotonic()

    def producer(i: int):
        conn = r.servers.pg(dsn=r.servers.producer_dsn) if cfg.sustained_mode == "emit" else r.servers.pg(admin=True)
        try:
            with conn.cursor() as cur:
                while not stop.is_set():
                    if per_producer_rate:
                        ahead = produced[i] / per_producer_rate - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(min(ahead, 0.1))
                            continue
                    lo, hi = r.seq.take(cfg.sustained_batch)
                    cur.execute(workload.emit_sql(lo, hi) if cfg.sustained_mode == "emit"
                                else workload.insert_sql("eventlog.outbox", lo, hi))
                    produced[i] += cfg.sustained_batch
        except Exception as e:  # noqa: BLE001 - reported
            errors.append(e)
        finally:
            conn.close()

    threads = [threading.Thread(target=producer, args=(i,), daemon=True) for i in range(cfg.sustained_producers)]
    for t in threads:
        t.start()
    sampler = PgActivitySampler(r.servers)
    try:
        time.sleep(cfg.sustained_warmup)
        sampler.start()
        c0, p0, prod0 = r.ch_rows(), r.pending(), sum(produced)
        cpu0, rcpu0, t0 = r.cpu.snapshot(), relay.live_cpu(), time.monotonic()
        samples = [(0.0, c0)]
        while time.monotonic() - t0 < cfg.sustained_seconds:
            time.sleep(min(5.0, cfg.sustained_seconds - (time.monotonic() - t0)))
            samples.append((time.monotonic() - t0, r.ch_rows()))
        c1, prod1, cpu1, rcpu1, t1 = r.ch_rows(), sum(produced), r.cpu.snapshot(), relay.live_cpu(), time.monotonic()
        sampler.stop()
        p1 = r.pending()
    finally:
        sampler.stop()
        stop.set()
        for t in threads:
            t.join()
        relay.stop()
        if holder:
            holder.close()
    if errors:
        raise errors[0]
    wall = t1 - t0
    delivered = c1 - c0
    made = prod1 - prod0
    windows = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(samples, samples[1:]) if b[0] > a[0]]
    growth = p1 - p0
    delta = CpuProbe.delta(cpu0, cpu1)
    res = {"held_snapshot": held, "seconds": wall, "delivered_rate": delivered / wall, "produced_rate": made / wall,
           "pending_start": p0, "pending_end": p1, "backlog_growth": growth,
           "flat": growth <= max(10_000, 0.05 * made), "window_rates": windows,
           "producer": {"mode": cfg.sustained_mode, "sessions": cfg.sustained_producers,
                        "events_per_transaction": cfg.sustained_batch, "target_rate": cfg.sustained_rate or None},
           "cpu_s_per_million_delivered": {
               "relay": per_million(rcpu1 - rcpu0 if rcpu0 is not None and rcpu1 is not None else None, delivered),
               "postgresql_incl_producers": per_million(delta["postgresql"], delivered),
               "clickhouse": per_million(delta["clickhouse"], delivered)},
           "profile": relay_profile([relay.log_path], relay.lifetime()), "pg_activity": sampler.result()}
    log(f"  sustained{' (snapshot held)' if held else ''}: delivered {res['delivered_rate']:,.0f}/s, produced "
        f"{res['produced_rate']:,.0f}/s, pending {p0:,} -> {p1:,}")
    return res


def rounds(r: Runner, cfg: Config, held: bool, count: int, running: bool = False) -> list:
    """Rounds of cfg.rounds_size events loaded in one transaction, then drained: by a `relay --drain` started per
    round (timed from its start to its exit, closing sweep included), or, with `running`, by one relay that runs
    through all rounds (timed from the load's commit, which moves the outbox's id sequence the relay watches, until ClickHouse has the round)."""
    r.reset()
    r.vacuum("eventlog.outbox")
    holder = HeldSnapshot(r) if held else None
    kind = ("running-" if running else "") + ("held" if held else "normal")
    relay = r.relay(drain=False, name=f"rounds-{kind}") if running else None
    rates = []
    try:
        for i in range(count):
            before = r.ch_rows()
            r.load(cfg.rounds_size)
            t0 = time.monotonic()
            if running:
                if not r.wait_delivered(before + cfg.rounds_size, max(300.0, cfg.rounds_size / 1000.0)):
                    raise RuntimeError(f"round {i + 1} not delivered; see {relay.log_path}")
                wall = time.monotonic() - t0
            else:
                drain = r.relay(drain=True, name=f"rounds-{kind}-{i}")
                rc = drain.wait(max(300.0, cfg.rounds_size / 1000.0))
                wall = time.monotonic() - t0
                if rc != 0:
                    raise RuntimeError(f"relay --drain exited with {rc}; see {drain.log_path}")
            got = r.ch_rows() - before
            rates.append({"round": i + 1, "rate": cfg.rounds_size / wall, "seconds": wall,
                          "delivered": got, "exact_count": got == cfg.rounds_size})
            log(f"  round {i + 1}{' (snapshot held)' if held else ''}{', running relay' if running else ''}: "
                f"{rates[-1]['rate']:,.0f} events/s")
    finally:
        if relay:
            relay.stop()
        if holder:
            holder.close()
    return rates


def scenario_sustained(r: Runner, cfg: Config) -> dict:
    out = {"normal": sustained_once(r, cfg, False, "sustained"),
           "held_snapshot": sustained_once(r, cfg, True, "sustained-held")}
    rows = []
    for key, name in (("normal", "sustained"), ("held_snapshot", "sustained, snapshot held")):
        x = out[key]
        w = x["window_rates"]
        rows.append(_row(f"{name} (delivered events/s)", fmt_num(x["delivered_rate"]),
                         "≥ 100,000" if key == "normal" else "",
                         f"produced {fmt_num(x['produced_rate'])}/s; backlog {x['pending_start']:,} → "
                         f"{x['pending_end']:,} ({'flat' if x['flat'] else 'GROWING'}); 5 s windows "
                         f"{fmt_num(min(w) if w else None)}–{fmt_num(max(w) if w else None)}"))
        rows.append(_row(f"{name}: relay profile", _profile_note(x["profile"]), "", "whole relay lifetime"))
        rows.append(_row(f"{name}: relay's PostgreSQL sessions", PgActivitySampler.note(x["pg_activity"]), "",
                         "measured window"))
    for key, running, label in (("rounds", False, "`relay --drain` per round"),
                                ("rounds_running_relay", True, "one running relay")):
        normal = rounds(r, cfg, False, cfg.rounds_normal, running)
        held = rounds(r, cfg, True, cfg.rounds_held, running)
        base = summary(x["rate"] for x in normal)
        held_s = summary(x["rate"] for x in held)
        out[key] = {"events_per_round": cfg.rounds_size, "normal": normal, "held": held,
                    "normal_rate": base, "held_rate": held_s,
                    "worst_held_vs_normal_median": (held_s["min"] / base["median"]) if base and held_s else None,
                    "last_held_vs_normal_median": (held[-1]["rate"] / base["median"]) if base and held else None}
        worst = out[key]["worst_held_vs_normal_median"]
        rows.append(_row(f"rounds of {cfg.rounds_size:,}, {label}: without snapshot (events/s)",
                         ", ".join(fmt_num(x["rate"]) for x in normal), "", ""))
        rows.append(_row(f"rounds of {cfg.rounds_size:,}, {label}: snapshot held (events/s)",
                         ", ".join(fmt_num(x["rate"]) for x in held), "each ≥ 80% of normal",
                         f"worst round {worst * 100:.0f}% of normal median" if worst else ""))
    out["rows"] = rows
    return out


# --- 3. freshness --------------------------------------------------------------------------------------------------
_PGBENCH_TPS = re.compile(r"^tps = ([\d.]+)", re.M)
_PGBENCH_TX = re.compile(r"number of transactions actually processed: (\d+)")
_PGBENCH_FAILED = re.compile(r"number of failed transactions: (\d+)")
_PGBENCH_LAT = re.compile(r"latency average = ([\d.]+) ms")
_PGBENCH_LAG = re.compile(r"rate limit schedule lag: avg ([\d.]+) \(max ([\d.]+)\) ms")


def pgbench(r: Runner, script: str, name: str, seconds: int, clients: int, rate: Optional[int] = None) -> dict:
    path = r.logdir / f"{name}.sql"
    path.write_text(script + "\n")
    cmd = ["pgbench", "-n", "-f", str(path), "-T", str(int(seconds)), "-c", str(clients), "-j", "2"]
    if rate:
        cmd += ["-R", str(rate)]
    p = subprocess.run(cmd, env=r.servers.libpq_env(), cwd=r.logdir, text=True, capture_output=True)
    (r.logdir / f"{name}.pgbench.log").write_text(p.stdout + p.stderr)
    if p.returncode != 0:
        raise RuntimeError(f"pgbench failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    m = lambda rx: rx.search(p.stdout)  # noqa: E731
    lag = m(_PGBENCH_LAG)
    return {"tps": float(m(_PGBENCH_TPS).group(1)), "transactions": int(m(_PGBENCH_TX).group(1)),
            "failed": int(m(_PGBENCH_FAILED).group(1)) if m(_PGBENCH_FAILED) else 0,
            "latency_avg_ms": float(m(_PGBENCH_LAT).group(1)) if m(_PGBENCH_LAT) else None,
            "schedule_lag_avg_ms": float(lag.group(1)) if lag else None,
            "schedule_lag_max_ms": float(lag.group(2)) if lag else None}


def _optional(fn):
    """A secondary figure: None (and a line on stderr) instead of losing the scenario's main figures."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001
        log(f"  (secondary query failed: {type(e).__name__}: {e})")
        return None


def _wait_for_stage(log_path, timeout: float) -> str:
    """The relay's stage table, from its `relay_target` log line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in open(log_path, errors="replace"):
            if '"relay_target"' in line:
                try:
                    return json.loads(line)["stage"]
                except (ValueError, KeyError):
                    pass
        time.sleep(0.1)
    raise RuntimeError(f"no relay_target line with the stage name in {log_path}")


def scenario_freshness(r: Runner, cfg: Config) -> dict:
    seconds = 600 if cfg.long else cfg.fresh_seconds
    db = r.servers.ch_database
    r.reset()
    r.vacuum("eventlog.outbox")
    relay = r.relay(drain=False, name="freshness")
    # A view on the relay's stage records, per insert, which batch_ids it carried, so the poller reads a few rows
    # per poll instead of scanning event_log. (18.16 does not run a view of event_log for rows that reach it
    # through the stage's own view.) Views of a table run one after another in name order, so `zzz_…` runs after
    # the stage's view has written event_log: a batch id is visible here only once its rows are visible there.
    stage = _wait_for_stage(relay.log_path, 20)
    r.ch.query(f"DROP TABLE IF EXISTS `{db}`.zzz_bench_probe_mv")
    r.ch.query(f"DROP TABLE IF EXISTS `{db}`.bench_probe_batches")
    r.ch.query(f"CREATE TABLE `{db}`.bench_probe_batches (seen DateTime, batch_id UUID, n UInt64) "
               "ENGINE = MergeTree ORDER BY (seen, batch_id)")
    r.ch.query(f"CREATE MATERIALIZED VIEW `{db}`.zzz_bench_probe_mv TO `{db}`.bench_probe_batches AS "
               f"SELECT now() AS seen, batch_id, count() AS n FROM `{db}`.`{stage}` "
               "WHERE event_type = 'freshness_probe' GROUP BY batch_id")
    seen = {}
    poll_ms = []
    stop = threading.Event()

    def poller():
        ch = r.servers.ch()
        try:
            while not stop.is_set():
                t_send = time.time()
                body = ch.query(f"SELECT toString(batch_id) FROM `{db}`.bench_probe_batches "
                                "WHERE seen >= now() - 5 FORMAT TSV")
                t_recv = time.time()
                poll_ms.append((t_recv - t_send) * 1000)
                for b in body.split():
                    seen.setdefault(b, t_recv)
                time.sleep(max(0.0, 0.010 - (time.time() - t_send)))
        finally:
            ch.close()

    script = ("SELECT eventlog.emit('freshness_probe', json_build_object('t', "
              "extract(epoch from clock_timestamp()), 'n', :client_id));")
    poll_thread = threading.Thread(target=poller, daemon=True)
    parts = []
    sampler = PgActivitySampler(r.servers)
    try:
        poll_thread.start()
        sampler.start()
        ev0 = r.ch_events(["InsertQuery", "InsertedRows", "DelayedInserts", "RejectedInserts"])
        t0 = time.monotonic()
        result = {}
        bench_thread = threading.Thread(target=lambda: result.update(
            pgbench(r, script, "freshness", int(seconds), cfg.fresh_clients, cfg.fresh_rate)))
        bench_thread.start()
        sample_every = 10.0 if cfg.long else 5.0
        while bench_thread.is_alive():
            bench_thread.join(sample_every)
            parts.append((round(time.monotonic() - t0, 1), r.ch_active_parts()))
        t1 = time.monotonic()
        sampler.stop()
        ev1 = r.ch_events(list(ev0))
        if "tps" not in result:
            raise RuntimeError("pgbench did not finish; see freshness.pgbench.log")
        committed = result["transactions"]
        # Wait for the tail (events committed at the very end) before stopping the poller.
        wait_until(lambda: len(seen) > 0 and r.ch_count_uniq("event_type = 'freshness_probe'")[0] >= committed,
                   60, 0.2)
        time.sleep(0.5)
    finally:
        sampler.stop()
        stop.set()
        if poll_thread.is_alive():
            poll_thread.join()
        r.ch.query(f"DROP TABLE IF EXISTS `{db}`.zzz_bench_probe_mv")  # before the relay drops its stage
        relay.stop()
    end_parts = _optional(r.ch_active_parts)
    rows = r.ch.query(f"SELECT toString(batch_id), event_context FROM {r.ch_table} "
                      "WHERE event_type = 'freshness_probe' FORMAT TSV").splitlines()
    lat = []
    by_time = []
    unseen = 0
    for line in rows:
        batch, ctx = line.split("\t", 1)
        t_seen = seen.get(batch)
        if t_seen is None:
            unseen += 1
            continue
        t = float(json.loads(ctx)["t"])
        lat.append((t_seen - t) * 1000)
        by_time.append((t, lat[-1]))
    lat.sort()
    # Latency over the run, per 10 s of commit time: shows whether a tail is a stall or a drift.
    buckets = {}
    if by_time:
        first = min(t for t, _ in by_time)
        for t, ms in by_time:
            buckets.setdefault(int((t - first) // 10) * 10, []).append(ms)
    over_time = [{"from_s": k, "events": len(v), "p50": percentile(sorted(v), 50), "p99": percentile(sorted(v), 99),
                  "max": max(v)} for k, v in sorted(buckets.items())]
    split = _optional(lambda: int(r.ch.scalar(
        f"SELECT count() FROM (SELECT batch_id FROM `{db}`.bench_probe_batches GROUP BY batch_id HAVING count() > 1)")
        or 0))
    _optional(lambda: r.ch.query(f"DROP TABLE IF EXISTS `{db}`.bench_probe_batches"))
    count, uniq = _optional(lambda: r.ch_count_uniq("event_type = 'freshness_probe'")) or (None, None)
    dur = t1 - t0
    inserts = ev1["InsertQuery"] - ev0["InsertQuery"]
    prof = relay_profile([relay.log_path], relay.lifetime())
    res = {"seconds": dur, "target_rate": cfg.fresh_rate, "clients": cfg.fresh_clients, "pgbench": result,
           "events_in_clickhouse": count, "unique": uniq, "exact": count == committed and uniq == committed,
           "latency_ms": {"p50": percentile(lat, 50), "p95": percentile(lat, 95), "p99": percentile(lat, 99),
                          "max": lat[-1] if lat else None, "measured_events": len(lat), "unseen_events": unseen,
                          "per_10s_of_commit_time": over_time},
           "poll_ms": {"p50": percentile(sorted(poll_ms), 50), "p99": percentile(sorted(poll_ms), 99),
                       "polls": len(poll_ms)},
           "batches_split_over_inserts": split,
           "clickhouse": {"insert_queries": inserts, "inserts_per_second": inserts / dur if dur else None,
                          "delayed_inserts": ev1["DelayedInserts"] - ev0["DelayedInserts"],
                          "rejected_inserts": ev1["RejectedInserts"] - ev0["RejectedInserts"],
                          "active_parts_end": end_parts, "active_parts_samples": parts,
                          "active_parts_max": max([p for _, p in parts] + ([end_parts] if end_parts else []))},
           "too_many_parts_in_relay_log": prof["too_many_parts_lines"], "profile": prof,
           "pg_activity": sampler.result()}
    L = res["latency_ms"]
    log(f"  freshness: p50 {fmt_num(L['p50'], 1)} ms, p99 {fmt_num(L['p99'], 1)} ms, tps {result['tps']:,.0f}")
    res["rows"] = [
        _row(f"freshness at {cfg.fresh_rate:,}/s for {seconds:.0f} s: commit→visible p50 / p95 / p99 / max (ms)",
             " / ".join(fmt_num(L[k], 1) for k in ("p50", "p95", "p99", "max")), "p50 ≤ 50, p99 ≤ 200",
             f"{L['measured_events']:,} events; poll every 10 ms, poll p50 {fmt_num(res['poll_ms']['p50'], 1)} ms"
             + (f"; {unseen} unseen" if unseen else "")),
        _row("freshness: p99 per 10 s of the run (ms)",
             ", ".join(fmt_num(b["p99"]) for b in over_time) or "n/a", "", "a stall shows as one high bucket"),
        _row("freshness: achieved producer tx/s (pgbench)", fmt_num(result["tps"]), f"{cfg.fresh_rate:,}",
             f"schedule lag avg {fmt_num(result['schedule_lag_avg_ms'], 1)} ms, max "
             f"{fmt_num(result['schedule_lag_max_ms'], 1)} ms; failed {result['failed']}"),
        _row("freshness: ClickHouse inserts/s, active parts end / max", f"{fmt_num(inserts / dur, 1)}, "
             f"{end_parts} / {res['clickhouse']['active_parts_max']}", "parts bounded",
             f"delayed {res['clickhouse']['delayed_inserts']}, rejected {res['clickhouse']['rejected_inserts']}, "
             f"'too many parts' in relay log: {prof['too_many_parts_lines']}"),
        _row("freshness: relay profile", _profile_note(prof), "", "whole relay lifetime"),
        _row("freshness: relay's PostgreSQL sessions", PgActivitySampler.note(res["pg_activity"]), "",
             "while pgbench ran"),
    ]
    return res


# --- 4. producer cost ----------------------------------------------------------------------------------------------
_PRODUCER_CONTEXT = ('{"email":"user@example.com","first_name":"Alexandra","last_name":"Petrovich-Smith",'
                     '"plan":"enterprise","source":"signup-form","ip":"203.0.113.7","locale":"de-DE",'
                     '"user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) '
                     'Chrome/120.0.6099.109 Safari/537.36"}')


_PLAIN_SQL = ("INSERT INTO eventlog_bench.bench_plain (event_id, event_type, environment, event_context, "
              f"metadata_version, trace_id) VALUES (gen_random_uuid(), 'user_created', NULL, "
              f"'{_PRODUCER_CONTEXT}', 1, '');")


def _setup_plain(r: Runner) -> None:
    """eventlog_bench.bench_plain: the outbox's event columns and defaults with an id key, no partitions, no trigger and no
    CHECK constraint; the producer may insert."""
    r.pg_exec("CREATE SCHEMA IF NOT EXISTS eventlog_bench",
              "DROP TABLE IF EXISTS eventlog_bench.bench_plain",
              # without the outbox's CHECK constraints (migration 0013): the baseline is an INSERT that checks nothing
              "CREATE TABLE eventlog_bench.bench_plain (LIKE eventlog.outbox INCLUDING DEFAULTS INCLUDING IDENTITY "
              "INCLUDING INDEXES)",
              # an application's table: an id key, no transaction id column (the outbox's since migration 0018)
              "ALTER TABLE eventlog_bench.bench_plain DROP COLUMN txid, ADD PRIMARY KEY (id), ALTER COLUMN id DROP DEFAULT, "
              "ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY")
    producer = r.servers.producer_role()
    r.pg_exec(f'GRANT USAGE ON SCHEMA eventlog_bench TO "{producer}"',
              f'GRANT SELECT, INSERT ON eventlog_bench.bench_plain TO "{producer}"')


def scenario_producer(r: Runner, cfg: Config) -> dict:
    """emit() (the server makes the id), emit() with the caller's id and a plain INSERT, alternating, with and without
    a relay running; tx/s, the ratio to the plain INSERT of the same round, and WAL bytes per transaction (the
    server's WAL position before and after each pgbench run, so the relay's WAL is counted with the writer's when it
    runs)."""
    _setup_plain(r)
    scripts = {
        "emit": f"SELECT eventlog.emit('UserCreated', '{_PRODUCER_CONTEXT}');",
        "emit_id": f"SELECT eventlog.emit('UserCreated', '{_PRODUCER_CONTEXT}', event_id => gen_random_uuid());",
        "plain": _PLAIN_SQL,
    }
    kinds = list(scripts)
    out = {"clients": cfg.producer_clients, "seconds": cfg.producer_seconds, "scripts": scripts}
    rows = []
    for with_relay in (True, False):
        key = "with_relay" if with_relay else "without_relay"
        r.reset()
        r.pg_exec("TRUNCATE eventlog_bench.bench_plain")
        r.vacuum("eventlog.outbox")
        relay = r.relay(drain=False, name="producer-cost") if with_relay else None
        rounds = []
        try:
            for i in range(cfg.producer_reps):
                order = kinds[i % len(kinds):] + kinds[:i % len(kinds)]
                got = {}
                for kind in order:
                    if kind == "plain":
                        r.pg_exec("TRUNCATE eventlog_bench.bench_plain")
                    elif not with_relay:
                        r.pg_exec("TRUNCATE eventlog.outbox, eventlog.event_ids")
                    r.checkpoint()
                    before = int(r.pg_value("SELECT pg_current_wal_lsn() - '0/0'"))
                    got[kind] = pgbench(r, scripts[kind], f"producer-{key}-{kind}-{i}", cfg.producer_seconds,
                                        cfg.producer_clients)
                    wal = int(r.pg_value("SELECT pg_current_wal_lsn() - '0/0'")) - before
                    got[kind]["wal_bytes_per_tx"] = wal / max(1, got[kind]["transactions"])
                rounds.append({k: got[k] for k in kinds} | {
                    "ratio": got["emit"]["tps"] / got["plain"]["tps"],
                    "ratio_id": got["emit_id"]["tps"] / got["plain"]["tps"]})
                log(f"  producer {key} round {i + 1}: " + ", ".join(
                    f"{k} {got[k]['tps']:,.0f} tx/s ({got[k]['wal_bytes_per_tx']:,.0f} WAL B/tx)" for k in kinds))
        finally:
            if relay:
                relay.stop()
        res = {"rounds": rounds, "ratio": summary(x["ratio"] for x in rounds),
               "ratio_id": summary(x["ratio_id"] for x in rounds)}
        for k in kinds:
            res[k + "_tps"] = summary(x[k]["tps"] for x in rounds)
            res[k + "_wal"] = summary(x[k]["wal_bytes_per_tx"] for x in rounds)
        out[key] = res
        label = "relay running" if with_relay else "no relay"
        rows.append(_row(f"producer, {label}: emit() tx/s", fmt_summary(res["emit_tps"]), "", ""))
        rows.append(_row(f"producer, {label}: emit(event_id => ...) tx/s", fmt_summary(res["emit_id_tps"]), "", ""))
        rows.append(_row(f"producer, {label}: plain INSERT tx/s", fmt_summary(res["plain_tps"]), "", ""))
        rows.append(_row(f"producer, {label}: emit / plain", fmt_summary(res["ratio"], 2),
                         "≥ 0.90" if with_relay else "", "same round"))
        rows.append(_row(f"producer, {label}: emit(event_id) / plain", fmt_summary(res["ratio_id"], 2), "",
                         "same round"))
        rows.append(_row(f"producer, {label}: WAL bytes/tx emit / emit(event_id) / plain",
                         " / ".join(fmt_summary(res[k + "_wal"]) for k in kinds), "",
                         "relay's WAL included" if with_relay else ""))
    out["rows"] = rows
    return out


# --- micro-benchmarks ----------------------------------------------------------------------------------------------
def scenario_micro(cfg: Config, build_dir) -> dict:
    build = subprocess.run(["cmake", "--build", str(build_dir), "--target", "eventlog_micro_bench"], cwd=ROOT,
                           text=True, capture_output=True)
    binary = build_dir / "eventlog_micro_bench"
    if build.returncode != 0 or not binary.exists():
        msg = (build.stdout + build.stderr).strip().splitlines()[-3:]
        return {"error": "could not build eventlog_micro_bench (libbenchmark-dev?): " + " | ".join(msg),
                "rows": [_row("micro-benchmarks", "not run", "", "eventlog_micro_bench did not build")]}
    p = subprocess.run([str(binary), "--benchmark_format=json", f"--benchmark_min_time={cfg.micro_min_time}",
                        "--benchmark_repetitions=3", "--benchmark_report_aggregates_only=true"],
                       text=True, capture_output=True, check=True)
    data = json.loads(p.stdout)
    results = {}
    for b in data["benchmarks"]:
        name, agg = b.get("run_name", b["name"]), b.get("aggregate_name")
        if agg in ("median", "mean", "stddev") or agg is None:
            entry = results.setdefault(name, {})
            entry[(agg or "value") + "_MBps"] = b.get("bytes_per_second", 0) / 1e6
            if "items_per_second" in b:
                entry[(agg or "value") + "_items_per_s"] = b["items_per_second"]
    rows = [_row(f"micro: {name.replace('BM_', '')} (MB/s)", fmt_num(v.get("median_MBps", v.get("value_MBps")), 0),
                 "", (f"{fmt_num(v['median_items_per_s'])} rows/s" if "median_items_per_s" in v else ""))
            for name, v in results.items()]
    return {"context": {k: data["context"].get(k) for k in ("num_cpus", "mhz_per_cpu", "library_build_type")},
            "benchmarks": results, "rows": rows}


# --- 6. HTTP ---------------------------------------------------------------------------------------------------------
_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_PCT = re.compile(r"^\s+(50|75|90|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wrk_lua(path, token: str, body: str) -> None:
    """A wrk script that POSTs `body` with the token (the file is private to the bench's logs folder)."""
    path.write_text("wrk.method = \"POST\"\n"
                    f"wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"
                    "wrk.headers[\"Content-Type\"] = \"application/json\"\n"
                    f"wrk.body = {json.dumps(body)}\n")
    os.chmod(path, 0o600)


def wrk(r: Runner, url: str, script, name: str, seconds: float, connections: int) -> dict:
    cmd = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{int(seconds)}s", "--latency", "--timeout", "10s",
           "-s", str(script), url]
    p = subprocess.run(cmd, cwd=r.logdir, text=True, capture_output=True)
    (r.logdir / f"{name}.wrk.log").write_text(p.stdout + p.stderr)
    if p.returncode != 0:
        raise RuntimeError(f"wrk failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    total = _WRK_TOTAL.search(p.stdout)
    sock = _WRK_SOCKET.search(p.stdout)
    pct = {int(m.group(1)): float(m.group(2)) * _UNIT_MS[m.group(3)] for m in _WRK_PCT.finditer(p.stdout)}
    non2xx = int(_WRK_NON2XX.search(p.stdout).group(1)) if _WRK_NON2XX.search(p.stdout) else 0
    requests = int(total.group(1))
    return {"requests": requests, "seconds": float(total.group(2)) * _UNIT_MS[total.group(3)] / 1000,
            "rps": float(_WRK_RPS.search(p.stdout).group(1)), "non_2xx": non2xx,
            "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
            "ok": requests - non2xx, "p50_ms": pct.get(50), "p99_ms": pct.get(99)}


def wrk_with_cpu(r: Runner, serve: "Serve", url: str, script, name: str, seconds: float, connections: int) -> dict:
    """wrk() and the CPU each party spent per request meanwhile: wrk (the only child reaped in between), the server,
    PostgreSQL (the postmaster's tree). In microseconds; None where it cannot be read."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    serve_before = process_cpu(serve.proc.pid, with_children=False)
    pg_before = r.cpu.snapshot()["postgresql"]
    res = wrk(r, url, script, name, seconds, connections)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    serve_after = process_cpu(serve.proc.pid, with_children=False)
    pg_after = r.cpu.snapshot()["postgresql"]
    n = max(1, res["requests"])
    per = lambda a, b: (b - a) / n * 1e6 if a is not None and b is not None else None  # noqa: E731
    res["cpu_us_per_request"] = {
        "wrk": per(children.ru_utime + children.ru_stime, after.ru_utime + after.ru_stime),
        "serve": per(serve_before, serve_after), "postgresql": per(pg_before, pg_after)}
    return res


class Serve:
    """`eventlog serve` as the producer role on a free loopback port, with a fresh SECRET_KEY."""

    def __init__(self, r: Runner, secret: str, extra_env: Optional[dict] = None):
        self.port = _free_port()
        env = r.servers.eventlog_env({"LOG_LEVEL": "warning", "SECRET_KEY": secret,
                                      "HTTP_LISTEN": f"127.0.0.1:{self.port}", **(extra_env or {})})
        env["DATABASE_URL"] = r.servers.producer_dsn
        self.log_path = r.logdir / "serve.log"
        self.proc = subprocess.Popen([str(r.binary), "serve"], cwd=r.logdir, env=env, stdin=subprocess.DEVNULL,
                                     stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        import urllib.request

        def ready():
            try:
                return urllib.request.urlopen(self.url + "/readyz", timeout=1).status == 200
            except OSError:
                return False
        if not wait_until(ready, 20, 0.1):
            self.stop()
            raise RuntimeError(f"eventlog serve did not become ready (see {self.log_path})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _fmt_us(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _cpu_split(runs: list, per: int) -> str:
    """Medians over runs of the CPU per request (divided by `per`: per event) of wrk, the server and PostgreSQL."""
    parts = []
    for k in ("wrk", "serve", "postgresql"):
        values = [x["cpu_us_per_request"][k] / per for x in runs if x["cpu_us_per_request"].get(k) is not None]
        parts.append(fmt_summary(summary(values), 1) if values else "n/a")
    return " / ".join(parts)


def scenario_http(r: Runner, cfg: Config) -> dict:
    import secrets as _secrets
    seconds = cfg.http_seconds
    reps = cfg.reps or cfg.http_reps
    secret = _secrets.token_hex(32)
    r.reset()
    r.pg_exec("DELETE FROM eventlog.api_key WHERE name = 'bench'")
    env = r.servers.eventlog_env({"LOG_LEVEL": "warning", "SECRET_KEY": secret}, relay=False)
    created = subprocess.run([str(r.binary), "apikey", "create", "--name", "bench"], cwd=r.logdir, env=env,
                             text=True, capture_output=True, check=True)
    token = created.stdout.strip().splitlines()[-1]
    batch_body = json.dumps([{"event_type": "UserCreated", "event_context": json.loads(_PRODUCER_CONTEXT)}] *
                            cfg.http_batch)
    _wrk_lua(r.logdir / "http-single.lua", token,
             json.dumps({"event_type": "UserCreated", "event_context": json.loads(_PRODUCER_CONTEXT)}))
    _wrk_lua(r.logdir / "http-batch.lua", token, batch_body)
    _setup_plain(r)
    out = {"seconds": seconds, "reps": reps, "single_connections": cfg.http_connections,
           "batch_connections": cfg.http_batch_connections, "batch_events": cfg.http_batch,
           "serve_env": cfg.http_serve_env, "relay_running": False}
    serve = Serve(r, secret, cfg.http_serve_env)
    singles, batches, plains = [], [], []
    expected = 0      # events of the 2xx answers wrk counted
    in_flight = 0     # events of requests wrk left unanswered at its deadline (it does not count them): at most this

    try:
        for i in range(reps):
            before = r.pending()
            res = wrk_with_cpu(r, serve, serve.url + "/api/v1/events", r.logdir / "http-single.lua",
                               f"http-single-{i}", seconds, cfg.http_connections)
            res["events_written"] = r.pending() - before
            res["events_per_s"] = res["ok"] / res["seconds"]
            expected += res["ok"]
            in_flight += cfg.http_connections
            singles.append(res)
            cpu = res["cpu_us_per_request"]
            log(f"  http single {i + 1}: {res['rps']:,.0f} req/s, p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, "
                f"non-2xx {res['non_2xx']}, socket errors {res['socket_errors']}; CPU us/request wrk "
                f"{_fmt_us(cpu['wrk'])}, serve {_fmt_us(cpu['serve'])}, PostgreSQL {_fmt_us(cpu['postgresql'])}")
            before = r.pending()
            res = wrk_with_cpu(r, serve, serve.url + "/api/v1/events", r.logdir / "http-batch.lua",
                               f"http-batch-{i}", seconds, cfg.http_batch_connections)
            res["events_written"] = r.pending() - before
            res["events_per_s"] = res["ok"] * cfg.http_batch / res["seconds"]
            expected += res["ok"] * cfg.http_batch
            in_flight += cfg.http_batch_connections * cfg.http_batch
            batches.append(res)
            log(f"  http batch {i + 1}: {res['rps']:,.0f} req/s = {res['events_per_s']:,.0f} events/s, p50 "
                f"{res['p50_ms']} ms, p99 {res['p99_ms']} ms, non-2xx {res['non_2xx']}")
    finally:
        serve.stop()
    for i in range(reps):
        r.pg_exec("TRUNCATE eventlog_bench.bench_plain")
        plains.append(pgbench(r, _PLAIN_SQL, f"http-baseline-plain-{i}", int(seconds), cfg.http_connections))
        log(f"  pgbench single-row INSERT {i + 1}: {plains[-1]['tps']:,.0f} tx/s")
    written = r.pending()
    relay = r.relay(drain=True, name="http-drain")
    relay.wait(3600)
    count, uniq = r.ch_count_uniq()
    out.update({"single": singles, "batch": batches, "pgbench_plain": plains, "accepted_expected": expected,
                "outbox_written": written, "clickhouse_count": count, "clickhouse_uniq": uniq,
                "in_flight_at_most": in_flight,
                "exact": count == uniq == written and expected <= written <= expected + in_flight})
    s = {k: summary(x[k] for x in singles) for k in ("rps", "p50_ms", "p99_ms")}
    b = {k: summary(x[k] for x in batches) for k in ("rps", "events_per_s", "p50_ms", "p99_ms")}
    bad = sum(x["non_2xx"] + x["socket_errors"] for x in singles + batches)
    out["single_summary"], out["batch_summary"] = s, b
    exact = "exact" if out["exact"] else "NOT EXACT"
    out["rows"] = [
        _row(f"HTTP single-event requests/s ({cfg.http_connections} connections)", fmt_summary(s["rps"]),
             "≥ 20,000", f"p50 {fmt_summary(s['p50_ms'], 2)} ms, p99 {fmt_summary(s['p99_ms'], 2)} ms"),
        _row(f"HTTP {cfg.http_batch}-event batches: events/s ({cfg.http_batch_connections} connections)",
             fmt_summary(b["events_per_s"]), "≥ 150,000",
             f"p50 {fmt_summary(b['p50_ms'], 1)} ms, p99 {fmt_summary(b['p99_ms'], 1)} ms"),
        _row("HTTP single-event requests: CPU µs per request, wrk / eventlog serve / PostgreSQL",
             _cpu_split(singles, 1), "", "the machine's 2 cores give 2,000,000 µs per second to share"),
        _row(f"HTTP {cfg.http_batch}-event batches: CPU µs per event, wrk / eventlog serve / PostgreSQL",
             _cpu_split(batches, cfg.http_batch), "", ""),
        _row("HTTP non-2xx answers and socket errors", fmt_num(bad), "0", ""),
        _row(f"pgbench single-row INSERT, {cfg.http_connections} clients (tx/s)",
             fmt_summary(summary(p["tps"] for p in plains)), "", "baseline, same run"),
        _row("HTTP events: ClickHouse count / uniqExact / written to the outbox", f"{count:,} / {uniq:,} / {written:,}",
             "", f"{exact}; wrk counted {expected:,} in 2xx answers, plus at most {in_flight:,} in requests it "
                 "stopped waiting for"),
    ]
    if not out["exact"]:
        out["error"] = (f"not exact: outbox {written}, 2xx events {expected} (+ at most {in_flight} unanswered), "
                        f"ClickHouse {count} / {uniq}")
    return out
