#!/usr/bin/python3
"""What does a status lookup cost with a large backlog? (docs/http-api.md, "GET /api/v1/events/{event_id}")

Writes a backlog of EVENTS pending events through eventlog.emit_batch() (the HTTP API's write: each gets its
registry row), on throwaway servers (scripts/stack.sh), then times, REPS times each and alternating:
- eventlog.event_status(id) for a pending event in the middle of the backlog, and for an unknown id;
- the query the lookup made before migration 0011 to find a pending event: the outbox scanned by event_id.
Prints each variant's median and range in milliseconds (client-side, one query per connection round trip).

    bench/status_lookup.py [--events 1000000] [--reps 5]
"""
import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import report  # noqa: E402
from harness.runner import log, throwaway_runner  # noqa: E402

CHUNK = 10_000
CONTEXT = '{"email":"test@example.com","first_name":"Test","last_name":"Testovich","pad":"' + "x" * 200 + '"}'


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    with throwaway_runner("status-lookup-logs") as runner:
        conn = runner.servers.pg(admin=True)
        with conn.cursor() as cur:
            t0 = time.monotonic()
            for done in range(0, args.events, CHUNK):
                k = min(CHUNK, args.events - done)
                cur.execute("SELECT count(*) FROM eventlog.emit_batch(array_fill('UserCreated'::text, ARRAY[%s]), "
                            "array_fill(%s::json, ARRAY[%s]), NULL, NULL, NULL, NULL, NULL)", (k, CONTEXT, k))
            log(f"backlog of {args.events:,} written in {time.monotonic() - t0:.0f} s")
            cur.execute("VACUUM ANALYZE eventlog.outbox")
            cur.execute("VACUUM ANALYZE eventlog.event_ids")
            cur.execute("SELECT event_id::text FROM eventlog.outbox ORDER BY id OFFSET %s LIMIT 1", (args.events // 2,))
            pending = cur.fetchone()[0]
            queries = {
                "event_status(), pending": ("SELECT state FROM eventlog.event_status(%s::uuid)", lambda: pending),
                "event_status(), unknown id": ("SELECT state FROM eventlog.event_status(%s::uuid)",
                                               lambda: str(uuid.uuid4())),
                "outbox scanned by event_id (before 0011)": (
                    "SELECT 'pending' FROM eventlog.outbox WHERE event_id = %s::uuid LIMIT 1", lambda: pending),
            }
            times = {name: [] for name in queries}
            for rep in range(args.reps):
                for name, (sql, arg) in queries.items():
                    t = time.monotonic()
                    cur.execute(sql, (arg(),))
                    rows = cur.fetchall()
                    times[name].append((time.monotonic() - t) * 1000)
                    expected = [] if "unknown" in name else [("pending",)]
                    if rows != expected:
                        raise SystemExit(f"{name}: expected {expected}, got {rows}")
        conn.close()
    for name, values in times.items():
        print(report.median_range_line(name, values, "ms", ".2f", f"backlog {args.events:,}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
