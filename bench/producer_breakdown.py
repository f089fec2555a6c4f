#!/usr/bin/python3
"""Where does emit() spend a producer's time? (issue 19's producer goal: emit() >= 0.9x a plain INSERT)

On throwaway servers (scripts/stack.sh, fsync off as in `make bench`), without a relay, pgbench runs single-event
transactions with 16 clients (as bench/run.py's `producer` scenario) through four writers of the same ~300-byte
event, in a rotated order each round:
- `plain`: a single-row INSERT into a table shaped like the outbox, with its constraints (the scenario's baseline);
- `insert only`: a SECURITY DEFINER PL/pgSQL function that only inserts the row into eventlog.outbox (what calling
  a function with pinned search_path costs by itself);
- `emit`: eventlog.emit('UserCreated', ...), the server making the id (no idempotency registry since migration
  0013);
- `emit, caller's id`: the same with `event_id => gen_random_uuid()`, which writes the registry too.
Prints each writer's tx/s (median, range) and its ratio to `plain` in the same round.

    bench/producer_breakdown.py [--seconds 20] [--reps 3] [--clients 16]
"""
import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import report  # noqa: E402
from harness.runner import log, throwaway_runner  # noqa: E402
from harness.scenarios import _PLAIN_SQL, _PRODUCER_CONTEXT, _setup_plain, pgbench  # noqa: E402

SCHEMA = "eventlog_cost"

INSERT_ONLY = f"""CREATE FUNCTION {SCHEMA}.insert_only(event_type text, event_context json) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE new_id uuid := gen_random_uuid();
BEGIN
    INSERT INTO eventlog.outbox (event_id, event_type, event_context)
    VALUES (new_id, insert_only.event_type, insert_only.event_context);
    RETURN new_id;
END
$$"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--clients", type=int, default=16)
    args = ap.parse_args()
    with throwaway_runner("producer-breakdown-logs") as r:
        _setup_plain(r)
        producer = r.servers.producer_role()
        owner = r.servers.pg(admin=False)  # the schema owner: the copy runs with the rights emit() has
        with owner.cursor() as cur:
            cur.execute(f"CREATE SCHEMA {SCHEMA}")
            cur.execute(f'GRANT USAGE ON SCHEMA {SCHEMA} TO "{producer}"')
            cur.execute(INSERT_ONLY)
            cur.execute(f'GRANT EXECUTE ON FUNCTION {SCHEMA}.insert_only TO "{producer}"')
        owner.close()
        event = f"'UserCreated', '{_PRODUCER_CONTEXT}'"
        scripts = {
            "plain": _PLAIN_SQL,
            "insert only": f"SELECT {SCHEMA}.insert_only('user_created', '{_PRODUCER_CONTEXT}');",
            "emit": f"SELECT eventlog.emit({event});",
            "emit, caller's id": f"SELECT eventlog.emit({event}, event_id => gen_random_uuid());",
        }
        names = list(scripts)
        results = {name: [] for name in names}
        ratios = {name: [] for name in names}
        for rep in range(args.reps):
            order = names[rep % len(names):] + names[:rep % len(names)]
            got = {}
            for name in order:
                r.pg_exec("TRUNCATE eventlog.outbox, eventlog.event_ids, eventlog_bench.bench_plain")
                r.checkpoint()
                slug = re.sub(r"[^a-z]+", "-", name)
                got[name] = pgbench(r, scripts[name], f"breakdown-{slug}-{rep}", args.seconds, args.clients)["tps"]
                results[name].append(got[name])
            for name in names:
                ratios[name].append(got[name] / got["plain"])
            log(f"round {rep + 1}: " + ", ".join(f"{n} {got[n]:,.0f}" for n in names))
    for name in names:
        print(report.median_range_line(name + " (tx/s)", results[name], "tx/s", ",.0f", f"{args.clients} clients"))
    for name in names[1:]:
        print(report.median_range_line(name + " / plain", ratios[name], "", ".2f", "same round"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
