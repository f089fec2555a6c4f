"""The pieces every scenario uses: the relay as a child process (with its CPU time), resets, loads, counts."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from . import workload
from .procstat import CpuProbe, process_cpu
from .servers import ROOT, Servers, remove_own_stack, start_own_stack, wait_until


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Relay:
    """One `eventlog relay` process. wait()/stop() reap it with wait4, so `cpu` is its exact user+system time."""

    def __init__(self, runner: "Runner", drain: bool, name: str, extra_env: Optional[dict] = None):
        self.log_path = runner.logdir / f"{name}.log"
        env = runner.servers.eventlog_env({"LOG_LEVEL": "debug", **runner.relay_env, **(extra_env or {})})
        with open(self.log_path, "w") as err:
            self.proc = subprocess.Popen([str(runner.binary), "relay", *(["--drain"] if drain else [])],
                                         cwd=runner.logdir, env=env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)
        self.cpu: Optional[float] = None
        self.returncode: Optional[int] = None
        self.started = time.monotonic()
        self.ended: Optional[float] = None

    def lifetime(self) -> float:
        """Seconds from start to exit (to now while it runs): the wall time its log lines cover."""
        return (self.ended or time.monotonic()) - self.started

    def live_cpu(self) -> Optional[float]:
        return process_cpu(self.proc.pid, with_children=False)

    def wait(self, timeout: float) -> int:
        timer = threading.Timer(timeout, lambda: self._signal(signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(self.proc.pid, 0)
        finally:
            timer.cancel()
        self.ended = time.monotonic()
        self.returncode = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.returncode  # reaped here: Popen must not wait again
        self.cpu = usage.ru_utime + usage.ru_stime
        return self.returncode

    def _signal(self, sig) -> None:
        try:
            os.kill(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 60) -> int:
        if self.returncode is not None:
            return self.returncode
        self._signal(signal.SIGTERM)
        return self.wait(timeout)


def relay_profile(log_paths, wall_seconds: float) -> dict:
    """Sums the `*_us` fields of the relay's debug lines per event name (e.g. claim_delivered: claim_wait_us,
    send_us, ack_us): total seconds, microseconds per event and share of the wall time; counts warnings/errors."""
    per_event = {}
    problems = {}
    too_many_parts = 0
    for path in log_paths:
        try:
            lines = Path(path).read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if "too many parts" in line.lower():
                too_many_parts += 1
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            name = rec.get("event", "?")
            if rec.get("level") in ("warning", "error"):
                problems[name] = problems.get(name, 0) + 1
            fields = {k: v for k, v in rec.items() if k.endswith("_us") and isinstance(v, (int, float))}
            if not fields:
                continue
            agg = per_event.setdefault(name, {"lines": 0, "events": 0, "us": {}})
            agg["lines"] += 1
            if isinstance(rec.get("events"), int):
                agg["events"] += rec["events"]
            for k, v in fields.items():
                agg["us"][k] = agg["us"].get(k, 0) + v
    out = {}
    for name, agg in per_event.items():
        fields = {}
        for k, total in agg["us"].items():
            fields[k] = {"total_s": total / 1e6,
                         "us_per_event": (total / agg["events"]) if agg["events"] else None,
                         "share_of_wall": (total / 1e6 / wall_seconds) if wall_seconds > 0 else None}
        out[name] = {"lines": agg["lines"], "events": agg["events"], "fields": fields}
    return {"by_log_event": out, "warnings_and_errors": problems, "too_many_parts_lines": too_many_parts}


class Runner:
    """Shared state of one bench run: servers, binary, CPU probe, a row-number sequence, the logs folder."""

    def __init__(self, servers: Servers, logdir: Path, relay_env: dict, binary: Optional[Path] = None):
        self.servers = servers
        self.binary = binary or ROOT / "build" / "eventlog"
        self.logdir = logdir
        self.relay_env = relay_env
        self.seq = workload.Sequence()
        self.ch = servers.ch()
        self.cpu = CpuProbe(servers)
        db = servers.ch_database
        self.ch_table = f"`{db}`.`{servers.event_log_table}`"
        self._relay_serial = 0

    # --- PostgreSQL ---------------------------------------------------------------------------------------------
    def pg_exec(self, *statements: str, admin: bool = True) -> None:
        conn = self.servers.pg(admin=admin)
        try:
            with conn.cursor() as cur:
                for s in statements:
                    cur.execute(s)
        finally:
            conn.close()

    def pg_value(self, sql: str, admin: bool = True):
        conn = self.servers.pg(admin=admin)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchone()[0]
        finally:
            conn.close()

    def checkpoint(self) -> None:
        try:
            self.pg_exec("CHECKPOINT")
        except Exception:  # noqa: BLE001 - configured servers may not allow it; only lowers noise
            pass

    def vacuum(self, table: str) -> None:
        self.pg_exec(f"VACUUM ANALYZE {table}")

    def pending(self) -> int:
        """Events not yet acknowledged: rows in no chunk plus rows of chunks in flight (eventlog.backlog())."""
        return int(self.pg_value("SELECT pending + in_flight_events FROM eventlog.backlog()"))

    def pg_empty(self) -> bool:
        return bool(self.pg_value("SELECT pending = 0 AND in_flight_records = 0 FROM eventlog.backlog()"))

    # --- ClickHouse ---------------------------------------------------------------------------------------------
    def ch_rows(self, ch=None) -> int:
        """Rows in event_log from the active parts' metadata: cheap enough to poll every few ms."""
        db, table = self.servers.ch_database, self.servers.event_log_table
        v = (ch or self.ch).scalar(f"SELECT sum(rows) FROM system.parts WHERE database = '{db}' "
                                   f"AND table = '{table}' AND active")
        return int(v or 0)

    def ch_count_uniq(self, where: str = "1") -> tuple:
        c, u = self.ch.scalar(f"SELECT count(), uniqExact(event_id) FROM {self.ch_table} WHERE {where} "
                              "FORMAT TSV").split("\t")
        return int(c), int(u)

    def ch_active_parts(self, ch=None) -> int:
        db, table = self.servers.ch_database, self.servers.event_log_table
        return int((ch or self.ch).scalar(f"SELECT count() FROM system.parts WHERE database = '{db}' "
                                          f"AND table = '{table}' AND active"))

    def ch_events(self, names) -> dict:
        """Cumulative ProfileEvents of the server (system.events), 0 when absent."""
        rows = self.ch.query("SELECT event, value FROM system.events FORMAT TSV").splitlines()
        got = dict(r.split("\t") for r in rows if r)
        return {n: int(got.get(n, 0)) for n in names}

    def ch_truncate(self, table: str) -> None:
        try:
            self.ch.query(f"TRUNCATE TABLE {table}")
        except RuntimeError:
            self.ch.query(f"ALTER TABLE {table} DELETE WHERE 1")

    # --- the pieces of a scenario ------------------------------------------------------------------------------
    def migrate(self) -> None:
        subprocess.run([str(self.binary), "migrate"], cwd=self.logdir, env=self.servers.eventlog_env(
            {"LOG_LEVEL": "warning"}, relay=False), check=True, stdout=subprocess.DEVNULL)

    def reset(self) -> None:
        """Empty outbox, no delivery records, empty event_log (the chain of ranges stays: it has no gap)."""
        self.pg_exec("TRUNCATE eventlog.outbox, eventlog.delivery, eventlog.outbox_chunk, eventlog.outbox_ack")
        self.ch_truncate(self.ch_table)

    def load(self, n: int, table: str = "eventlog.outbox") -> float:
        return workload.load(self.servers, table, n, self.seq)

    def relay(self, drain: bool, name: str, extra_env: Optional[dict] = None) -> Relay:
        self._relay_serial += 1
        return Relay(self, drain, f"{self._relay_serial:03d}-{name}", extra_env)

    def wait_delivered(self, expected: int, timeout: float) -> bool:
        return wait_until(lambda: self.ch_rows() >= expected, timeout, 0.02)


def per_million(seconds: Optional[float], events: int) -> Optional[float]:
    if seconds is None or events <= 0:
        return None
    return seconds * 1e6 / events


class PgActivitySampler:
    """Samples what the relay's PostgreSQL sessions (application_name eventlog-relay) are doing, every 50 ms, from
    pg_stat_activity: on CPU in a statement, waiting in a statement (by wait event), or idle (the relay is busy
    elsewhere: decoding, inserting into ClickHouse, waiting for NOTIFY). Also the longest statement seen."""

    SQL = ("SELECT state, wait_event_type, wait_event, "
           "extract(epoch FROM clock_timestamp() - query_start)::float8, left(query, 80) "
           "FROM pg_stat_activity WHERE application_name = 'eventlog-relay'")

    def __init__(self, servers, interval: float = 0.05):
        self.servers = servers
        self.interval = interval
        self.counts = {}
        self.samples = 0
        self.longest = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Idempotent; safe before start()."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def _run(self):
        try:
            conn = self.servers.pg(admin=True)
        except Exception:  # noqa: BLE001 - no sampling, said in the result
            return
        try:
            with conn.cursor() as cur:
                while not self._stop.is_set():
                    cur.execute(self.SQL)
                    for state, wtype, wevent, secs, query in cur.fetchall():
                        if state == "active":
                            key = f"active {wtype}:{wevent}" if wtype else "active on CPU"
                            if secs is not None and (self.longest is None or secs > self.longest["seconds"]):
                                self.longest = {"seconds": secs, "wait": f"{wtype}:{wevent}" if wtype else "CPU",
                                                "query": " ".join((query or "").split())}
                        else:
                            key = state or "?"
                        self.counts[key] = self.counts.get(key, 0) + 1
                        self.samples += 1
                    self._stop.wait(self.interval)
        except Exception:  # noqa: BLE001 - the server went away at the end of a scenario
            pass
        finally:
            conn.close()

    def result(self) -> dict:
        shares = {k: v / self.samples for k, v in sorted(self.counts.items(), key=lambda kv: -kv[1])} \
            if self.samples else {}
        return {"session_samples": self.samples, "shares": shares, "longest_statement": self.longest}

    @staticmethod
    def note(res: dict) -> str:
        if not res or not res.get("shares"):
            return "no samples"
        parts = [f"{k} {v * 100:.0f}%" for k, v in list(res["shares"].items())[:4]]
        longest = res.get("longest_statement")
        if longest:
            parts.append(f"longest statement {longest['seconds']:.2f} s ({longest['wait']}: "
                         f"{longest['query'][:40]}…)")
        return "relay's PG sessions: " + ", ".join(parts)


@contextlib.contextmanager
def throwaway_runner(logs: str):
    """For a standalone script: a Runner on throwaway servers (fsync off, as `make bench` starts them), migrated,
    with its logs in bench/results/`logs`; the servers are removed when the block ends."""
    logdir = ROOT / "bench" / "results" / logs
    logdir.mkdir(parents=True, exist_ok=True)
    servers = start_own_stack("off")
    try:
        runner = Runner(servers, logdir, {})
        runner.migrate()
        yield runner
    finally:
        remove_own_stack(servers)
