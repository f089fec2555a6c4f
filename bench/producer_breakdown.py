#!/usr/bin/python3
"""Where does emit() spend a producer's time? (issue 9's producer-cost target: emit() >= 80% of a plain INSERT)

On throwaway servers (scripts/stack.sh, fsync off as in `make bench`), without a relay, pgbench runs single-event
transactions with 16 clients (as bench/run.py's `producer` scenario) through six writers of the same ~300-byte
event, in a rotated order each round:
- `plain`: a single-row INSERT into a table shaped like the outbox (the scenario's baseline);
- `insert only`: a SECURITY DEFINER PL/pgSQL function that only inserts the row into eventlog.outbox (what calling
  a function with pinned search_path costs by itself);
- `no registry, no checks, snake_case type`: the next one called with `user_created`, a name that needs no
  conversion;
- `no registry, no checks`: eventlog.emit_checked() as migrated, without its input checks and without its
  idempotency registry, called with `UserCreated` as `emit` is (snake_case() converts it);
- `no registry`: eventlog.emit_checked() as migrated, without its idempotency registry (the outbox row is written
  directly, its id from the identity);
- `emit`: eventlog.emit() itself.
The three reduced functions are made from the live definition of eventlog.emit_checked (pg_get_functiondef) by
cutting those parts out, so they follow later migrations; the script stops if a part is no longer found. They live
in a schema of their own, owned by the schema owner like the real one. Prints each writer's tx/s (median, range)
and its ratio to `plain` in the same round.

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
SIGNATURE = "eventlog.emit_checked(text, json, uuid, timestamptz, text, bigint, text, text)"


def cut(text: str, start: str, end: str, replacement: str = "") -> str:
    """`text` with the span from `start` to the end of `end` (after it) replaced; stops when either is missing."""
    a = text.find(start)
    b = text.find(end, a) if a >= 0 else -1
    if a < 0 or b < 0:
        raise SystemExit(f"emit_checked() no longer has {start!r} ... {end!r}: update bench/producer_breakdown.py")
    return text[:a] + replacement + text[b + len(end):]


def variants(definition: str) -> dict:
    """CREATE FUNCTION statements of the reduced copies of emit_checked(), by name."""
    base = definition.replace("FUNCTION eventlog.emit_checked(", f"FUNCTION {SCHEMA}.emit_checked(", 1)
    no_registry = cut(base, "WITH registered AS", "FROM registered r;",
                      "INSERT INTO eventlog.outbox (event_id, event_type, event_date_time, environment, "
                      "event_context, metadata_version, trace_id, span_id)\n    VALUES (new_id, new_type, "
                      "coalesce(emit_checked.event_date_time, clock_timestamp()), nullif(emit_checked.environment, "
                      "''), emit_checked.event_context, emit_checked.metadata_version, coalesce(emit_checked.trace_id, "
                      "''), coalesce(emit_checked.span_id, ''));")
    no_checks = cut(no_registry, "    IF new_type IS NULL OR new_type = ''",
                    "'metadata_version: expected a non-negative integer' USING ERRCODE = '22023';\n    END IF;\n")
    return {
        "no_registry": no_registry.replace(f"{SCHEMA}.emit_checked(", f"{SCHEMA}.no_registry(", 1)
                                  .replace("emit_checked.", "no_registry."),
        "no_checks": no_checks.replace(f"{SCHEMA}.emit_checked(", f"{SCHEMA}.no_checks(", 1)
                              .replace("emit_checked.", "no_checks."),
        "insert_only": f"""CREATE FUNCTION {SCHEMA}.insert_only(event_type text, event_context json) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE new_id uuid := gen_random_uuid();
BEGIN
    INSERT INTO eventlog.outbox (event_id, event_type, event_context)
    VALUES (new_id, insert_only.event_type, insert_only.event_context);
    RETURN new_id;
END
$$""",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--clients", type=int, default=16)
    args = ap.parse_args()
    with throwaway_runner("producer-breakdown-logs") as r:
        _setup_plain(r)
        producer = r.servers.producer_role()
        owner = r.servers.pg(admin=False)  # the schema owner: the copies run with the rights emit_checked() has
        with owner.cursor() as cur:
            cur.execute("SELECT pg_get_functiondef(%s::regprocedure)", (SIGNATURE,))
            definition = cur.fetchone()[0]
            cur.execute(f"CREATE SCHEMA {SCHEMA}")
            cur.execute(f'GRANT USAGE ON SCHEMA {SCHEMA} TO "{producer}"')
            for name, sql in variants(definition).items():
                cur.execute(sql)
                cur.execute(f'GRANT EXECUTE ON FUNCTION {SCHEMA}.{name} TO "{producer}"')
        owner.close()
        event = f"'UserCreated', '{_PRODUCER_CONTEXT}'"
        scripts = {
            "plain": _PLAIN_SQL,
            "insert only": f"SELECT {SCHEMA}.insert_only('user_created', '{_PRODUCER_CONTEXT}');",
            "no registry, no checks, snake_case type": f"SELECT ({SCHEMA}.no_checks('user_created', "
                                                       f"'{_PRODUCER_CONTEXT}')).id;",
            "no registry, no checks": f"SELECT ({SCHEMA}.no_checks({event})).id;",
            "no registry": f"SELECT ({SCHEMA}.no_registry({event})).id;",
            "emit": f"SELECT eventlog.emit({event});",
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
