#!/usr/bin/python3
"""`make bench`: eventlog's benchmark harness (docs/benchmarks.md).

Starts throwaway PostgreSQL 15 and ClickHouse on free loopback ports (scripts/stack.sh), or uses the configured
servers with --use-configured, runs the chosen scenarios against build/eventlog, prints a table and writes
bench/results/latest.json and latest.md.
"""
import argparse
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import report, scenarios  # noqa: E402
from harness.runner import Runner, log  # noqa: E402
from harness.servers import ROOT, configured_servers, remove_own_stack, start_own_stack  # noqa: E402

ALL = ["micro", "drain", "cluster-drain", "baseline", "sustained", "freshness", "producer", "http"]


def parse_size(text: str) -> int:
    t = text.strip().lower().replace("_", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t[:-1] if mult > 1 else t) * mult)


def build_config(args) -> scenarios.Config:
    cfg = scenarios.Config(quick=args.quick, reps=args.reps, long=args.long)
    if args.quick:
        cfg.drain_sizes = [100_000]
        cfg.drain_reps = {100_000: 1}
        cfg.two_relay_reps = {100_000: 1}
        cfg.baseline_sizes = [100_000]
        cfg.baseline_reps = {100_000: 1}
        cfg.sustained_seconds, cfg.sustained_warmup = 15, 5
        cfg.rounds_size, cfg.rounds_normal, cfg.rounds_held = 50_000, 2, 3
        cfg.fresh_seconds = 15
        cfg.producer_seconds, cfg.producer_reps = 5, 1
        cfg.micro_min_time = 0.1
        cfg.http_seconds, cfg.http_reps = 5, 1
        cfg.cluster_drain_reps = {100_000: 1}
    if args.drain_sizes:
        cfg.drain_sizes = [parse_size(x) for x in args.drain_sizes.split(",")]
        cfg.cluster_drain_sizes = cfg.drain_sizes
    if args.baseline_sizes:
        cfg.baseline_sizes = [parse_size(x) for x in args.baseline_sizes.split(",")]
    if args.sustained_seconds:
        cfg.sustained_seconds = args.sustained_seconds
    cfg.sustained_mode = args.sustained_producer
    cfg.sustained_rate = args.sustained_rate
    cfg.fresh_rate = args.freshness_rate
    cfg.http_serve_env = dict(kv.split("=", 1) for kv in args.serve_env)
    return cfg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default=",".join(ALL),
                    help=f"comma-separated, in any order (run in this order): {','.join(ALL)}")
    ap.add_argument("--quick", action="store_true", help="small sizes, one run each: about 3 minutes")
    ap.add_argument("--long", action="store_true", help="freshness for 10 minutes (parts must stay bounded)")
    ap.add_argument("--reps", type=int, help="runs per measured point (overrides the defaults)")
    ap.add_argument("--drain-sizes", help="backlogs for the drain and cluster-drain scenarios, e.g. 100k,1M,3M "
                                          "(cluster-drain: 100k by default)")
    ap.add_argument("--baseline-sizes", help="backlogs for the baseline, e.g. 100k,1M")
    ap.add_argument("--sustained-seconds", type=float, help="measured seconds of the sustained scenario (60)")
    ap.add_argument("--sustained-producer", choices=["insert", "emit"], default="insert",
                    help="producers write multi-row INSERTs (default) or call eventlog.emit() per row")
    ap.add_argument("--sustained-rate", type=float, default=0,
                    help="pace the sustained producers to this many events/s in total (default: unpaced)")
    ap.add_argument("--freshness-rate", type=int, default=5000, help="producer transactions/s (5000)")
    ap.add_argument("--use-configured", action="store_true",
                    help="use DATABASE_URL / CLICKHOUSE_URI (environment or .env) instead of throwaway servers; "
                         "THE OUTBOX AND event_log THERE ARE EMPTIED")
    ap.add_argument("--allow-nonempty", action="store_true",
                    help="with --use-configured: go on even if the outbox or event_log holds rows (they are deleted)")
    ap.add_argument("--pg-fsync", choices=["on", "off"], default="off",
                    help="fsync of the throwaway PostgreSQL (off, as the test servers: this disk syncs in ~2.5 ms, "
                         "which would bound every producer figure; on measures that)")
    ap.add_argument("--relay-env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for every relay, e.g. EVENT_BATCH_SIZE=5000 (default settings otherwise)")
    ap.add_argument("--serve-env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for `eventlog serve` in the http scenario, e.g. HTTP_GROUP_COMMIT_US=0")
    ap.add_argument("--output", default=str(ROOT / "bench" / "results"), help="folder for latest.json/latest.md")
    ap.add_argument("--binary", default=str(ROOT / "build" / "eventlog"),
                    help="the eventlog binary to measure (default build/eventlog), e.g. a copy of an older build "
                         "for an A/B comparison in alternating runs")
    args = ap.parse_args()
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in ALL]
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(ALL)}")
    cfg = build_config(args)
    relay_env = dict(kv.split("=", 1) for kv in args.relay_env)
    binary = Path(args.binary).resolve()
    if not binary.exists():
        ap.error(f"{binary} is missing: run scripts/build.sh build (make bench does)")
    out_dir = Path(args.output).resolve()  # pgbench runs in another folder: its script paths must be absolute
    logdir = out_dir / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    for old in logdir.iterdir():
        old.unlink()

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    started = time.time()
    results = {"schema": 1, "started_at": report.now_utc(), "mode": "quick" if args.quick else "full",
               "command": " ".join(["bench/run.py", *(shlex.quote(a) for a in sys.argv[1:])]),
               "machine": report.machine(), "commit": report.commit(),
               "loadavg_start": open("/proc/loadavg").read().split()[:3], "relay_env": relay_env,
               "scenarios": {}}
    servers = None
    try:
        if args.use_configured:
            servers = configured_servers()
            log(f"using the configured servers (PostgreSQL, ClickHouse {servers.ch_host}:{servers.ch_http_port})")
        elif any(s != "micro" for s in chosen):
            log("starting throwaway PostgreSQL and ClickHouse (scripts/stack.sh)")
            servers = start_own_stack(args.pg_fsync)
        runner = None
        if servers:
            runner = Runner(servers, logdir, relay_env, binary)
            runner.migrate()
            if args.use_configured and not args.allow_nonempty:
                if not runner.pg_empty() or runner.ch_rows() > 0:
                    raise SystemExit("the configured outbox or event_log is not empty; the bench deletes their rows: "
                                     "point it at bench databases, or pass --allow-nonempty")
            results["servers"] = report.server_info(runner)
        else:
            results["servers"] = {"own_stack": False}
        drain_result = None
        for name in [s for s in ALL if s in chosen]:
            log(f"scenario {name}")
            t0 = time.monotonic()
            try:
                if name == "micro":
                    res = scenarios.scenario_micro(cfg, ROOT / "build")
                elif name == "drain":
                    res = drain_result = scenarios.scenario_drain(runner, cfg)
                elif name == "cluster-drain":
                    res = scenarios.scenario_cluster_drain(runner, cfg)
                elif name == "baseline":
                    res = scenarios.scenario_baseline(runner, cfg, drain_result)
                elif name == "sustained":
                    res = scenarios.scenario_sustained(runner, cfg)
                elif name == "freshness":
                    res = scenarios.scenario_freshness(runner, cfg)
                elif name == "producer":
                    res = scenarios.scenario_producer(runner, cfg)
                else:
                    res = scenarios.scenario_http(runner, cfg)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - one failed scenario does not lose the others' figures
                traceback.print_exc()
                res = {"error": f"{type(e).__name__}: {e}"}
            res["elapsed_s"] = time.monotonic() - t0
            res["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
            results["scenarios"][name] = res
        results["finished_at"] = report.now_utc()
        results["duration_s"] = time.time() - started
        results["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        report.write(results, out_dir)
        print(report.console_table(results), flush=True)
        print(f"\nwritten: {out_dir / 'latest.json'}, {out_dir / 'latest.md'} (relay and pgbench logs in {logdir})",
              flush=True)
    finally:
        if servers is not None and servers.own_stack:
            # Deleting ClickHouse's many small part files can take minutes on a disk mounted with `discard`.
            log("removing the throwaway servers")
            remove_own_stack(servers)
    failed = [k for k, v in results["scenarios"].items() if v.get("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
