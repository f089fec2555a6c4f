#!/usr/bin/python3
"""The design eventlog replaces, reimplemented faithfully for `make bench`: a Celery task that drained the outbox.

One transaction per batch:
  SELECT ... WHERE NOT processed ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED
  INSERT the rows into ClickHouse (clickhouse_driver, native protocol)
  UPDATE ... SET processed = true WHERE id = ANY(...)
  COMMIT
until a claim comes back empty. The outbox is `baseline_outbox` (eventlog.outbox's columns plus `processed`, with
an index on id WHERE NOT processed, the "proper indexing" of the replaced service); the ClickHouse table has
event_log's shape. It is generous to the old design: psycopg2 rows instead of Django model instances, and one
process with no Celery broker round trips between batches.

Connection settings come from the environment (never the command line): BASELINE_PG_DSN, BASELINE_CH_HOST,
BASELINE_CH_PORT (native TCP port), BASELINE_CH_USER, BASELINE_CH_PASSWORD, BASELINE_CH_DATABASE.
Prints {"events": N, "batches": B, "seconds": S} on stdout.
"""
import argparse
import json
import os
import time
import uuid

import psycopg2
import psycopg2.extras
from clickhouse_driver import Client

COLUMNS = "event_id, event_type, event_date_time, environment, event_context, metadata_version, trace_id, batch_id"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="baseline_outbox", help="PostgreSQL outbox table with a processed flag")
    ap.add_argument("--ch-table", default="baseline_event_log", help="ClickHouse table shaped like event_log")
    ap.add_argument("--batch-size", type=int, default=int(os.environ.get("EVENT_BATCH_SIZE", "1000")))
    args = ap.parse_args()
    environment = os.environ.get("ENVIRONMENT", "Local")
    psycopg2.extras.register_uuid()
    pg = psycopg2.connect(os.environ["BASELINE_PG_DSN"])
    ch = Client(host=os.environ.get("BASELINE_CH_HOST", "127.0.0.1"), port=int(os.environ["BASELINE_CH_PORT"]),
                user=os.environ.get("BASELINE_CH_USER", "default"), password=os.environ.get("BASELINE_CH_PASSWORD", ""),
                database=os.environ.get("BASELINE_CH_DATABASE", "default"))
    claim = (f"SELECT id, event_id, event_type, event_date_time, environment, event_context, metadata_version, "
             f"trace_id FROM {args.table} WHERE NOT processed ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED")
    mark = f"UPDATE {args.table} SET processed = true WHERE id = ANY(%s)"
    insert = f"INSERT INTO {args.ch_table} ({COLUMNS}) VALUES"
    total = batches = 0
    t0 = time.monotonic()
    while True:
        with pg:  # one transaction per batch: commit on success, roll back on error
            with pg.cursor() as cur:
                cur.execute(claim, (args.batch_size,))
                rows = cur.fetchall()
                if not rows:
                    break
                batch_id = uuid.uuid4()
                # psycopg2 decodes the json column into Python objects, as Django's JSONField did; the task
                # serialised them back for ClickHouse.
                data = [(r[1], r[2], r[3], r[4] or environment, json.dumps(r[5], separators=(",", ":"),
                                                                            ensure_ascii=False),
                         r[6], r[7], batch_id) for r in rows]
                ch.execute(insert, data)
                cur.execute(mark, ([r[0] for r in rows],))
        total += len(rows)
        batches += 1
    print(json.dumps({"events": total, "batches": batches, "seconds": time.monotonic() - t0}))


if __name__ == "__main__":
    main()
