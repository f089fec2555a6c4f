#!/usr/bin/python3
"""Does the relay's pruning of the idempotency registry keep up? (issue 20; docs/benchmarks.md, "Registry pruning")

Ids accepted more than IDEMPOTENCY_WINDOW ago leave eventlog.event_ids through the relay: batches of 10,000, for at
most 1 s of every 5 s recovery pass. Ids arrive at the rate producers supply them (every HTTP event with an
event_id, every emit(event_id => ...)), so the registry stays bounded only if the relay removes them at least as
fast, sustained.

On throwaway servers (scripts/stack.sh), each run writes EXPIRED ids already past the window (as a registry that
fell behind holds them), starts one `eventlog relay` and counts the registry every second for SECONDS; the sustained
rate is the ids removed over whole 5 s passes. Beside it, in the same run, the rate at which eventlog.emit_batch()
registers ids (one statement of 1,000 caller-supplied ids at a time, the HTTP API's write): the rate pruning must
match. Prints each figure's median and range over RUNS runs.

    bench/registry_prune.py [--expired 1000000] [--seconds 20] [--runs 3]
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import report  # noqa: E402
from harness.runner import log, throwaway_runner  # noqa: E402


def registered_per_second(cur, seconds: float) -> float:
    """emit_batch() of 1,000 caller-supplied ids per statement for `seconds`: ids registered per second."""
    n = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        cur.execute("SELECT count(*) FROM eventlog.emit_batch(array_fill('Registered'::text, ARRAY[1000]), "
                    "array_fill('{}'::json, ARRAY[1000]), ARRAY(SELECT gen_random_uuid() FROM generate_series(1, "
                    "1000)), NULL, NULL, NULL, NULL)")
        n += cur.fetchone()[0]
    return n / (time.monotonic() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--expired", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    pruned, registered = [], []
    with throwaway_runner("registry-prune-logs") as runner:
        conn = runner.servers.pg(admin=True)
        with conn.cursor() as cur:
            for run in range(args.runs):
                cur.execute("TRUNCATE eventlog.event_ids, eventlog.outbox")
                registered.append(registered_per_second(cur, 5))
                cur.execute("TRUNCATE eventlog.event_ids, eventlog.outbox")
                cur.execute("INSERT INTO eventlog.event_ids (event_id, accepted_at) SELECT gen_random_uuid(), "
                            "now() - interval '2 days' FROM generate_series(1, %s)", (args.expired,))
                cur.execute("VACUUM ANALYZE eventlog.event_ids")
                relay = runner.relay(False, f"prune-{run}")
                counts = []
                t0 = time.monotonic()
                while time.monotonic() - t0 < args.seconds:
                    cur.execute("SELECT count(*) FROM eventlog.event_ids")
                    counts.append((time.monotonic() - t0, cur.fetchone()[0]))
                    time.sleep(1)
                relay.stop()
                # Whole passes only: from the first count after the relay's first pass began to the last.
                (t_first, c_first), (t_last, c_last) = counts[1], counts[-1]
                rate = (c_first - c_last) / (t_last - t_first) if c_last > 0 else None
                if rate is None:
                    log(f"run {run}: all {args.expired:,} pruned within {args.seconds} s: raise --expired")
                    rate = (counts[0][1] - c_last) / (t_last - counts[0][0])
                pruned.append(rate)
                log(f"run {run}: pruned {rate:,.0f} ids/s sustained; emit_batch registered {registered[-1]:,.0f} "
                    f"ids/s")
        conn.close()
    print(report.median_range_line("registry pruned by one relay, sustained", pruned, "ids/s", ",.0f",
                                   f"{args.expired:,} expired"))
    print(report.median_range_line("ids registered by emit_batch (1,000 per call)", registered, "ids/s", ",.0f",
                                   "one session"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
