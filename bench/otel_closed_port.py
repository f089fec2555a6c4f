#!/usr/bin/python3
"""Does an unreachable OTLP collector slow delivery? (docs/observability.md, "Cost of an unreachable collector")

Drains the same backlog with one `eventlog relay --drain`, alternating: without an exporter, then with
OTEL_EXPORTER_OTLP_ENDPOINT pointing at a closed loopback port (every export fails: connection refused), REPS times
each, on throwaway servers (scripts/stack.sh), and prints each run and the range per variant. Each drain is the
bench's `drain` scenario (bench/harness/scenarios.py: drain_once), so the figures compare with docs/benchmarks.md.

    bench/otel_closed_port.py [--events 200000] [--reps 3]
"""
import argparse
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import report, scenarios  # noqa: E402
from harness.runner import log, throwaway_runner  # noqa: E402


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    port = closed_port()
    variants = {"no exporter": {},
                "exporter, closed port": {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}}
    rates = {name: [] for name in variants}
    with throwaway_runner("otel-logs") as runner:
        for rep in range(args.reps):
            for name, env in variants.items():
                runner.relay_env = {"LOG_LEVEL": "info", **env}
                label = f"otel-{rep + 1}-{'exporter' if env else 'none'}"
                res = scenarios.drain_once(runner, args.events, 1, label)
                if not res["exact"]:
                    raise SystemExit(f"{name}: ClickHouse does not hold every event exactly once")
                dropped = ""
                if env:
                    log_text = "".join(p.read_text() for p in runner.logdir.glob(f"*-{label}.log"))
                    dropped = f", otel_export_failed lines: {log_text.count('otel_export_failed')}"
                rates[name].append(res["rate"])
                log(f"run {rep + 1} {name}: {res['rate']:,.0f} events/s{dropped}")
    for name, values in rates.items():
        print(report.median_range_line(name, values, "events/s", note=f"{args.events:,} events each"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
