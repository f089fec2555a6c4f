-- Storage v2, the read side (issue 19): an insert-only outbox, read in snapshot ranges (docs/delivery.md, "Ranges").
--
-- Before, a claim deleted every row it took and copied it into a delivery record (16-22 µs of PostgreSQL per event,
-- two event-sizes of WAL, dead rows that a held snapshot keeps). Now no event row is updated or deleted on the way:
-- - every row carries its writer's transaction id (`txid`, the 64-bit form, epoch included) and is indexed by
--   (txid, id);
-- - a *range* (lo, hi] holds exactly the rows whose transaction is visible in snapshot hi and not in lo (PgQ's batch).
--   Ranges are cut one at a time under an advisory transaction lock, hi taken after the lock, and chained (the lo of
--   a range is the hi of the one before), so every committed transaction falls into exactly one range;
-- - a *chunk* (eventlog.outbox_chunk) is the next EVENT_BATCH_SIZE rows of a range in (txid, id) order: its
--   descriptor (range, first and last key, row count, owner, batch id) is the delivery record. The relay reads the
--   chunk's rows by key, inserts them, and acknowledges by inserting the batch id into eventlog.outbox_ack;
-- - rows leave by TRUNCATE of a partition: the outbox is a ring of 16 partitions by the writer's transaction id
--   (65,536 ids each in turn), and a partition is truncated once every transaction that can have written into it
--   is behind the oldest unacknowledged range (eventlog.truncate_delivered()).
-- The delivery records of earlier versions (eventlog.delivery) stay readable: relays recover them as before.

LOCK TABLE eventlog.outbox IN ACCESS EXCLUSIVE MODE;

CREATE SEQUENCE eventlog.outbox_id_seq_v2;
SELECT pg_catalog.setval('eventlog.outbox_id_seq_v2', s.last_value, s.is_called) FROM eventlog.outbox_id_seq s;

-- The slot of a transaction id: (txid >> 16) & 15. A transaction writes into one partition for its whole life, and no
-- producer reads anything to choose it. The columns keep the order of the outbox before; txid comes last.
CREATE TABLE eventlog.outbox_v2 (
    id               bigint      NOT NULL DEFAULT pg_catalog.nextval('eventlog.outbox_id_seq_v2'),
    event_id         uuid        NOT NULL DEFAULT pg_catalog.gen_random_uuid(),
    event_type       text        NOT NULL,
    event_date_time  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    environment      text,
    event_context    json        NOT NULL,
    metadata_version bigint      NOT NULL DEFAULT 1,
    trace_id         text        NOT NULL DEFAULT '',
    enqueued_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    span_id          text        NOT NULL DEFAULT '',
    txid             bigint      NOT NULL DEFAULT pg_catalog.txid_current(),
    CONSTRAINT "event_date_time: expected 1970-01-01 to 2106-02-07T06:28:15Z"
        CHECK (event_date_time >= '1970-01-01 00:00:00+00' AND event_date_time < '2106-02-07 06:28:16+00')
) PARTITION BY LIST (((txid >> 16) & 15));
DO $slots$
BEGIN
    FOR s IN 0..15 LOOP
        EXECUTE pg_catalog.format('CREATE TABLE eventlog.outbox_%s PARTITION OF eventlog.outbox_v2 FOR VALUES IN (%s)',
                                  s, s);
    END LOOP;
END
$slots$;
CREATE INDEX outbox_v2_key ON eventlog.outbox_v2 (txid, id);

-- The registry keeps its event's transaction id too, so a status lookup finds a pending row by its key and pruning
-- knows when the event is delivered (below the retention frontier). NULL for ids registered before this migration.
ALTER TABLE eventlog.event_ids ADD COLUMN txid bigint;
ALTER TABLE eventlog.event_ids ALTER COLUMN txid SET DEFAULT pg_catalog.txid_current();

-- Pending rows move over, written by this transaction (so they form the first range). A row out of ClickHouse's
-- DateTime range (it predates 0017's constraint) cannot move: it becomes a dead letter, as the relay would have made it.
WITH moved AS (
    INSERT INTO eventlog.outbox_v2 (id, event_id, event_type, event_date_time, environment, event_context,
                                    metadata_version, trace_id, enqueued_at, span_id)
    SELECT o.id, o.event_id, o.event_type, o.event_date_time, o.environment, o.event_context, o.metadata_version,
           o.trace_id, o.enqueued_at, o.span_id
    FROM eventlog.outbox o
    WHERE o.event_date_time >= '1970-01-01 00:00:00+00' AND o.event_date_time < '2106-02-07 06:28:16+00'
    RETURNING id, event_id, txid
)
UPDATE eventlog.event_ids r SET txid = m.txid FROM moved m WHERE r.event_id = m.event_id AND r.outbox_id = m.id;
INSERT INTO eventlog.dead_letter (event_id, event_type, event_date_time, environment, event_context, metadata_version,
                                  trace_id, enqueued_at, error, attempts, span_id)
SELECT o.event_id, o.event_type, o.event_date_time, o.environment, o.event_context, o.metadata_version, o.trace_id,
       o.enqueued_at, 'event_date_time: outside ClickHouse''s DateTime range (moved by migration 0018)', 0, o.span_id
FROM eventlog.outbox o
WHERE NOT (o.event_date_time >= '1970-01-01 00:00:00+00' AND o.event_date_time < '2106-02-07 06:28:16+00')
ON CONFLICT (event_id) DO NOTHING;

DROP TABLE eventlog.outbox;  -- and its identity sequence eventlog.outbox_id_seq
ALTER TABLE eventlog.outbox_v2 RENAME TO outbox;
ALTER INDEX eventlog.outbox_v2_key RENAME TO outbox_key;
ALTER SEQUENCE eventlog.outbox_id_seq_v2 RENAME TO outbox_id_seq;
ALTER SEQUENCE eventlog.outbox_id_seq OWNED BY eventlog.outbox.id;

-- Ranges, chained: lo of each is hi of the one before. Only inserted by cuts; a range whose rows are all gone from the
-- outbox (truncated) and whose chunks are all acknowledged is deleted with its chunks (eventlog.truncate_delivered()).
CREATE TABLE eventlog.outbox_range (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lo      txid_snapshot NOT NULL,
    hi      txid_snapshot NOT NULL,
    lo_xmin bigint        NOT NULL,  -- txid_snapshot_xmin(lo): every row of the range has a txid at or above it
    hi_xmax bigint        NOT NULL,  -- txid_snapshot_xmax(hi): every row of the range has a txid below it
    cut_at  timestamptz   NOT NULL DEFAULT pg_catalog.now()
);
-- The first range ends at this transaction's snapshot with this transaction counted as running (a snapshot leaves
-- its own transaction out), so the rows it moved, and every transaction still running (e.g. a producer waiting for
-- this migration's lock), fall into the next range. A transaction id at or above xmax is not visible anyway.
INSERT INTO eventlog.outbox_range (lo, hi, lo_xmin, hi_xmax)
SELECT x.snap, x.snap, pg_catalog.txid_snapshot_xmin(x.snap), pg_catalog.txid_snapshot_xmax(x.snap)
FROM (SELECT CASE WHEN me >= pg_catalog.txid_snapshot_xmax(s) THEN s ELSE
              (LEAST(pg_catalog.txid_snapshot_xmin(s), me)::text || ':' || pg_catalog.txid_snapshot_xmax(s)::text || ':' ||
               (SELECT pg_catalog.string_agg(x::text, ',' ORDER BY x)
                FROM (SELECT pg_catalog.txid_snapshot_xip(s) AS x UNION SELECT me) xs))::txid_snapshot END AS snap
      FROM pg_catalog.txid_current_snapshot() s, pg_catalog.txid_current() me) x;

-- The delivery records: a chunk of a range, owned by the relay session that claimed it (its advisory-lock key).
CREATE TABLE eventlog.outbox_chunk (
    batch_id   uuid        PRIMARY KEY,
    range_id   bigint      NOT NULL,
    owner      integer     NOT NULL,
    first_txid bigint      NOT NULL,
    first_id   bigint      NOT NULL,
    last_txid  bigint      NOT NULL,
    last_id    bigint      NOT NULL,
    events     integer     NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX outbox_chunk_cursor ON eventlog.outbox_chunk (range_id, last_txid, last_id);
CREATE INDEX outbox_chunk_owner ON eventlog.outbox_chunk (owner);
-- Acknowledgements: a chunk is delivered once its batch id is here. Inserted, never updated.
CREATE TABLE eventlog.outbox_ack (
    batch_id uuid        PRIMARY KEY,
    acked_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- The rows of range (lo, hi] in (txid, id) order with keys from (from_txid, from_id) to (to_txid, to_id), both
-- included, at most `max_rows`: the one definition of what a range (and a chunk of it) holds, used by the claim, the
-- relay's reads, the backlog and the tests' checker. Two parts, never joined by OR (that would lose the ordered index
-- scan): the transactions running at lo that had committed by hi, then those that started after lo. Every key of the
-- first part is below every key of the second, so the parts come in key order one after the other. No SET clause,
-- so that the planner inlines it into the caller's query (every name in it is qualified).
CREATE FUNCTION eventlog.range_rows(lo txid_snapshot, hi txid_snapshot, from_txid bigint, from_id bigint,
                                    to_txid bigint, to_id bigint, max_rows bigint)
RETURNS SETOF eventlog.outbox
LANGUAGE sql STABLE AS $$
    (SELECT o.* FROM eventlog.outbox o
     WHERE o.txid = ANY (ARRAY(SELECT x FROM pg_catalog.txid_snapshot_xip(lo) x
                               WHERE pg_catalog.txid_visible_in_snapshot(x, hi)))
       AND (o.txid, o.id) >= (from_txid, from_id) AND (o.txid, o.id) <= (to_txid, to_id)
     ORDER BY o.txid, o.id LIMIT max_rows)
    UNION ALL
    (SELECT o.* FROM eventlog.outbox o
     WHERE o.txid >= pg_catalog.txid_snapshot_xmax(lo) AND o.txid < pg_catalog.txid_snapshot_xmax(hi)
       AND pg_catalog.txid_visible_in_snapshot(o.txid, hi)
       AND (o.txid, o.id) >= (from_txid, from_id) AND (o.txid, o.id) <= (to_txid, to_id)
     ORDER BY o.txid, o.id LIMIT max_rows)
$$;

-- Where the next chunk of range `range_id` starts: the key after its newest chunk's last key, or (-1, -1) before its
-- first chunk.
CREATE FUNCTION eventlog.range_cursor(range_id bigint, OUT after_txid bigint, OUT after_id bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(c.last_txid, -1), coalesce(c.last_id + 1, -1)
    FROM (SELECT 1) one
    LEFT JOIN LATERAL (SELECT x.last_txid, x.last_id FROM eventlog.outbox_chunk x
                       WHERE x.range_id = range_cursor.range_id
                       ORDER BY x.last_txid DESC, x.last_id DESC LIMIT 1) c ON true
$$;

-- The claim: the next chunks of the newest range after its last chunk, or, when that range is exhausted, of a new
-- range cut now. At most `max_rows` rows (and `max_bytes`, the first row always fits), in chunks of `chunk_rows`;
-- chunk k gets batch id batch_ids[k]. Returns the chunks written (none when nothing is pending), and in `picked` how
-- many rows were looked at (more than the chunks hold when the byte bound cut the claim). One claim at a time per
-- outbox (a lock on eventlog.outbox_range), so chunks never overlap and the chain of ranges has no gap.
CREATE FUNCTION eventlog.claim_chunks(owner integer, chunk_rows integer, max_rows integer, max_bytes bigint,
                                      batch_ids uuid[])
RETURNS TABLE (batch_id uuid, range_id bigint, lo text, hi text, first_txid bigint, first_id bigint,
               last_txid bigint, last_id bigint, events integer, picked integer)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r          eventlog.outbox_range;
    after_txid bigint := -1;
    after_id   bigint := -1;
    now_snap   txid_snapshot;
    kmax       constant bigint := 9223372036854775807;
BEGIN
    -- One claim at a time: a table lock that conflicts with itself, which only a role allowed to change the ranges
    -- may take (an advisory lock, open to every role, would let any session stall every claim). Plain reads of the
    -- ranges do not wait for it. Each statement below takes a new snapshot, after the lock, so it sees the chunks and
    -- ranges of the claim before.
    LOCK TABLE eventlog.outbox_range IN SHARE ROW EXCLUSIVE MODE;
    SELECT * INTO STRICT r FROM eventlog.outbox_range x ORDER BY x.id DESC LIMIT 1;
    SELECT x.after_txid, x.after_id INTO STRICT after_txid, after_id FROM eventlog.range_cursor(r.id) x;
    IF NOT EXISTS (SELECT 1 FROM eventlog.range_rows(r.lo, r.hi, after_txid, after_id, kmax, kmax, 1)) THEN
        -- The newest range is exhausted: cut the next one at this moment, unless nothing happened since.
        now_snap := pg_catalog.txid_current_snapshot();
        IF now_snap::text = r.hi::text
           OR NOT EXISTS (SELECT 1 FROM eventlog.range_rows(r.hi, now_snap, -1, -1, kmax, kmax, 1)) THEN
            -- Empty: not recorded (the next cut starts from the same lo, so nothing is skipped), so an idle relay
            -- writes nothing.
            RETURN;
        END IF;
        INSERT INTO eventlog.outbox_range (lo, hi, lo_xmin, hi_xmax)
        VALUES (r.hi, now_snap, pg_catalog.txid_snapshot_xmin(r.hi), pg_catalog.txid_snapshot_xmax(now_snap))
        RETURNING * INTO STRICT r;
        after_txid := -1;
        after_id := -1;
    END IF;
    RETURN QUERY
    WITH keys AS MATERIALIZED (
        SELECT k.txid, k.id,
               pg_catalog.octet_length(k.event_context::text) + pg_catalog.octet_length(k.event_type) + 64 AS size
        FROM eventlog.range_rows(r.lo, r.hi, after_txid, after_id, kmax, kmax, max_rows) k
    ), numbered AS (
        SELECT k.txid, k.id, pg_catalog.row_number() OVER w AS n, pg_catalog.sum(k.size) OVER w - k.size AS before
        FROM keys k WINDOW w AS (ORDER BY k.txid, k.id)
    ), kept AS (
        SELECT k.txid, k.id, (k.n - 1) / chunk_rows AS part FROM numbered k
        WHERE k.n <= max_rows AND (k.n = 1 OR k.before < max_bytes)
    ), chunks AS (
        SELECT k.part, (pg_catalog.array_agg(ARRAY[k.txid, k.id] ORDER BY k.txid, k.id)) AS keys,
               pg_catalog.count(*)::integer AS n
        FROM kept k GROUP BY k.part
    ), written AS (
        INSERT INTO eventlog.outbox_chunk AS c (batch_id, range_id, owner, first_txid, first_id, last_txid, last_id,
                                               events)
        SELECT batch_ids[(ch.part + 1)::integer], r.id, claim_chunks.owner, ch.keys[1][1], ch.keys[1][2], ch.keys[ch.n][1],
               ch.keys[ch.n][2], ch.n
        FROM chunks ch
        RETURNING c.batch_id, c.range_id, c.first_txid, c.first_id, c.last_txid, c.last_id, c.events
    )
    SELECT w.batch_id, w.range_id, r.lo::text, r.hi::text, w.first_txid, w.first_id, w.last_txid, w.last_id,
           w.events, (SELECT pg_catalog.count(*)::integer FROM keys)
    FROM written w ORDER BY w.first_txid, w.first_id;
END
$$;

-- A snapshot in which exactly the acknowledged transactions are visible (with every earlier one): the lo of the
-- oldest range not yet done (a chunk of it in flight, or, for the newest range, rows not yet in a chunk), or the hi
-- of the newest range when every range is done. A transaction visible in it committed before that range began, so
-- its rows are in earlier ranges, all acknowledged; its xmin is the retention frontier (every transaction before it
-- ended, and its rows, if it committed, are acknowledged). Used by retention and by the registry's pruning.
CREATE FUNCTION eventlog.acknowledged_snapshot()
RETURNS txid_snapshot
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r          eventlog.outbox_range;
    open_range bigint;
    after_txid bigint := -1;
    after_id   bigint := -1;
    kmax       constant bigint := 9223372036854775807;
BEGIN
    SELECT pg_catalog.min(c.range_id) INTO open_range FROM eventlog.outbox_chunk c
    WHERE NOT EXISTS (SELECT 1 FROM eventlog.outbox_ack a WHERE a.batch_id = c.batch_id);
    SELECT * INTO STRICT r FROM eventlog.outbox_range x ORDER BY x.id DESC LIMIT 1;
    IF open_range IS NULL THEN
        SELECT x.after_txid, x.after_id INTO STRICT after_txid, after_id FROM eventlog.range_cursor(r.id) x;
        IF NOT EXISTS (SELECT 1 FROM eventlog.range_rows(r.lo, r.hi, after_txid, after_id, kmax, kmax, 1)) THEN
            RETURN r.hi;
        END IF;
        open_range := r.id;
    END IF;
    RETURN (SELECT x.lo FROM eventlog.outbox_range x WHERE x.id = open_range);
END
$$;

CREATE FUNCTION eventlog.retention_frontier()
RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.txid_snapshot_xmin(eventlog.acknowledged_snapshot())
$$;

-- Retention, run by the relays every few seconds. For each partition that holds rows, truncates it when every
-- transaction id that can have written into it (the newest turn of its slot below the next id) is below the
-- retention frontier. The partition's lock is taken with a short lock_timeout and the condition checked again under
-- it (with the next transaction id read after the lock), so a transaction of the slot's next turn that wrote before
-- the lock keeps the partition, and one that writes after it waits for the TRUNCATE and writes into the empty
-- partition. A session holding the partition (pg_dump, a long read) makes this skip it: it costs disk, not speed, and
-- producers never wait for it (they write into the current slot, never into one being truncated). Then deletes the
-- ranges whose rows are all gone, with their chunks and acknowledgements. Returns one row per partition with rows.
CREATE FUNCTION eventlog.truncate_delivered(lock_timeout_ms integer DEFAULT 50)
RETURNS TABLE (slot integer, bytes bigint, state text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    frontier bigint;
    next_id  bigint;
    newest   bigint;
    turn     bigint;
    part     regclass;
BEGIN
    PERFORM pg_catalog.set_config('lock_timeout', lock_timeout_ms::text || 'ms', true);
    FOR s IN 0..15 LOOP
        part := pg_catalog.format('eventlog.outbox_%s', s)::regclass;
        slot := s;
        bytes := pg_catalog.pg_total_relation_size(part);
        CONTINUE WHEN pg_catalog.pg_relation_size(part) = 0;
        BEGIN
            frontier := eventlog.retention_frontier();
            next_id := pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot());
            newest := (next_id - 1) >> 16;
            turn := newest - ((newest - s) & 15);  -- the newest turn of slot s at or before the newest window
            IF (turn + 1) << 16 > frontier THEN
                state := 'live';  -- it may hold rows not yet delivered, or rows of running transactions
            ELSE
                EXECUTE pg_catalog.format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', part);
                next_id := pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot());
                newest := (next_id - 1) >> 16;
                turn := newest - ((newest - s) & 15);
                IF (turn + 1) << 16 > eventlog.retention_frontier() THEN
                    state := 'live';
                ELSE
                    EXECUTE pg_catalog.format('TRUNCATE %s', part);
                    state := 'truncated';
                END IF;
            END IF;
        EXCEPTION WHEN lock_not_available THEN
            state := 'locked';  -- another session holds the partition: retried at the next pass
        END;
        RETURN NEXT;
    END LOOP;
    WITH gone AS (
        DELETE FROM eventlog.outbox_range r
        WHERE r.id < (SELECT pg_catalog.max(x.id) FROM eventlog.outbox_range x)
          AND r.hi_xmax <= (SELECT coalesce(pg_catalog.min(o.txid), 9223372036854775807) FROM eventlog.outbox o)
          AND NOT EXISTS (SELECT 1 FROM eventlog.outbox_chunk c WHERE c.range_id = r.id
                          AND NOT EXISTS (SELECT 1 FROM eventlog.outbox_ack a WHERE a.batch_id = c.batch_id))
        RETURNING r.id
    ), chunks AS (
        DELETE FROM eventlog.outbox_chunk c USING gone g WHERE c.range_id = g.id RETURNING c.batch_id
    )
    DELETE FROM eventlog.outbox_ack a USING chunks c WHERE a.batch_id = c.batch_id;
END
$$;

-- The delivery records in flight, of this version (chunks not acknowledged) and of the version before.
CREATE VIEW eventlog.in_flight AS
SELECT c.batch_id, c.owner, c.claimed_at, c.events FROM eventlog.outbox_chunk c
WHERE NOT EXISTS (SELECT 1 FROM eventlog.outbox_ack a WHERE a.batch_id = c.batch_id)
UNION ALL
SELECT d.batch_id, d.owner, d.claimed_at, pg_catalog.cardinality(d.events) FROM eventlog.delivery d;

-- What is waiting, for `eventlog status` and the metrics: events not yet in a chunk, chunks in flight (and their
-- events) of this version and of the version before, the oldest waiting event's enqueue time, the outbox's size on
-- disk (rows stay there, delivered or not, until their partition is truncated), and what retention waits for: records
-- in flight, or the oldest transaction still running that keeps the frontier back ('' when the frontier is recent).
CREATE FUNCTION eventlog.backlog(OUT pending bigint, OUT oldest_enqueued_at timestamptz, OUT in_flight_records bigint,
                                 OUT in_flight_events bigint, OUT retained_bytes bigint, OUT retention_waiting text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r          eventlog.outbox_range;
    after_txid bigint := -1;
    after_id   bigint := -1;
    kmax       constant bigint := 9223372036854775807;
BEGIN
    SELECT * INTO STRICT r FROM eventlog.outbox_range x ORDER BY x.id DESC LIMIT 1;
    SELECT x.after_txid, x.after_id INTO STRICT after_txid, after_id FROM eventlog.range_cursor(r.id) x;
    -- Not chunked: the rest of the newest range, and every row committed after its hi.
    SELECT pg_catalog.count(*), pg_catalog.min(o.enqueued_at) INTO pending, oldest_enqueued_at
    FROM ((SELECT k.enqueued_at FROM eventlog.range_rows(r.lo, r.hi, after_txid, after_id, kmax, kmax, kmax) k)
          UNION ALL
          (SELECT k.enqueued_at FROM eventlog.range_rows(r.hi, pg_catalog.txid_current_snapshot(), -1, -1, kmax, kmax,
                                                         kmax) k)) o;
    SELECT pg_catalog.count(*), coalesce(pg_catalog.sum(f.events), 0) INTO in_flight_records, in_flight_events
    FROM eventlog.in_flight f;
    retained_bytes := (SELECT pg_catalog.sum(pg_catalog.pg_total_relation_size(i.inhrelid))::bigint
                       FROM pg_catalog.pg_inherits i WHERE i.inhparent = 'eventlog.outbox'::regclass);
    retention_waiting := coalesce(
        (SELECT pg_catalog.format('delivery records in flight since %s', pg_catalog.min(c.claimed_at))
         FROM eventlog.outbox_chunk c
         WHERE NOT EXISTS (SELECT 1 FROM eventlog.outbox_ack a WHERE a.batch_id = c.batch_id)
         HAVING pg_catalog.count(*) > 0),
        (SELECT pg_catalog.format('a transaction open for %s s (pid %s, %s)',
                                  pg_catalog.round(extract(epoch FROM pg_catalog.now() - a.xact_start)), a.pid,
                                  coalesce(nullif(a.application_name, ''), a.usename::text, 'unknown'))
         FROM pg_catalog.pg_stat_activity a
         WHERE a.backend_xid IS NOT NULL
           AND pg_catalog.age(a.backend_xid) >= pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot())
                                                - eventlog.retention_frontier()
         ORDER BY pg_catalog.age(a.backend_xid) DESC LIMIT 1),
        '');
END
$$;

-- The rows of the outbox not yet acknowledged (pending or in a chunk in flight), for administrators and tests.
-- Delivered rows stay in the outbox until their partition is truncated; this view leaves them out.
CREATE VIEW eventlog.outbox_pending AS
SELECT o.* FROM eventlog.outbox o
WHERE NOT EXISTS (
    SELECT 1 FROM eventlog.outbox_range r
    JOIN eventlog.outbox_chunk c ON c.range_id = r.id
    JOIN eventlog.outbox_ack a ON a.batch_id = c.batch_id
    WHERE r.lo_xmin <= o.txid AND o.txid < r.hi_xmax
      AND pg_catalog.txid_visible_in_snapshot(o.txid, r.hi) AND NOT pg_catalog.txid_visible_in_snapshot(o.txid, r.lo)
      AND (c.first_txid, c.first_id) <= (o.txid, o.id) AND (o.txid, o.id) <= (c.last_txid, c.last_id));

-- The status of one event in PostgreSQL: pending (not in a chunk yet), in_flight (in a chunk not acknowledged, or in
-- a record of the version before), dead_lettered; no row when PostgreSQL holds no such state (delivered, or unknown).
CREATE OR REPLACE FUNCTION eventlog.event_status(event_id uuid)
RETURNS TABLE (state text, since timestamptz, attempts integer, error text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.state, s.since, s.attempts, s.error FROM (
        (SELECT CASE WHEN c.batch_id IS NULL THEN 1 ELSE 2 END AS rank,
                CASE WHEN c.batch_id IS NULL THEN 'pending' ELSE 'in_flight' END AS state,
                CASE WHEN c.batch_id IS NULL THEN o.enqueued_at ELSE c.claimed_at END AS since,
                CASE WHEN c.batch_id IS NULL THEN NULL::integer ELSE 0 END AS attempts, NULL::text AS error
         FROM eventlog.event_ids reg
         JOIN eventlog.outbox o ON o.txid = reg.txid AND o.id = reg.outbox_id AND o.event_id = reg.event_id
         LEFT JOIN LATERAL (
             SELECT ch.batch_id, ch.claimed_at, EXISTS (SELECT 1 FROM eventlog.outbox_ack a
                                                       WHERE a.batch_id = ch.batch_id) AS acked
             FROM eventlog.outbox_range r JOIN eventlog.outbox_chunk ch ON ch.range_id = r.id
             WHERE r.lo_xmin <= o.txid AND o.txid < r.hi_xmax
               AND pg_catalog.txid_visible_in_snapshot(o.txid, r.hi)
               AND NOT pg_catalog.txid_visible_in_snapshot(o.txid, r.lo)
               AND (ch.first_txid, ch.first_id) <= (o.txid, o.id) AND (o.txid, o.id) <= (ch.last_txid, ch.last_id)
             LIMIT 1) c ON true
         WHERE reg.event_id = event_status.event_id AND NOT coalesce(c.acked, false))
        UNION ALL
        (SELECT 2, 'in_flight', d.claimed_at, d.attempts, NULL
         FROM eventlog.delivery d
         WHERE EXISTS (SELECT 1 FROM pg_catalog.unnest(d.events) e WHERE e.event_id = event_status.event_id) LIMIT 1)
        UNION ALL
        (SELECT 3, 'dead_lettered', x.last_failed_at, x.attempts, x.error
         FROM eventlog.dead_letter x WHERE x.event_id = event_status.event_id)
    ) s ORDER BY s.rank LIMIT 1
$$;

REVOKE ALL ON eventlog.outbox, eventlog.outbox_range, eventlog.outbox_chunk, eventlog.outbox_ack,
    eventlog.outbox_pending, eventlog.in_flight FROM PUBLIC;
REVOKE ALL ON FUNCTION eventlog.range_rows(txid_snapshot, txid_snapshot, bigint, bigint, bigint, bigint, bigint),
    eventlog.claim_chunks(integer, integer, integer, bigint, uuid[]), eventlog.retention_frontier(),
    eventlog.acknowledged_snapshot(), eventlog.range_cursor(bigint),
    eventlog.truncate_delivered(integer), eventlog.backlog() FROM PUBLIC;
DO $grants$
DECLARE
    s integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_relay') THEN
        RETURN;
    END IF;
    -- The relay reads the outbox and truncates delivered partitions; it deletes no row (a relay of the version
    -- before, still running during an upgrade, fails to claim instead of deleting rows from the new outbox).
    GRANT SELECT ON eventlog.outbox, eventlog.outbox_pending, eventlog.in_flight TO eventlog_relay, eventlog_admin;
    FOR s IN 0..15 LOOP
        EXECUTE pg_catalog.format('GRANT TRUNCATE ON eventlog.outbox_%s TO eventlog_relay', s);
    END LOOP;
    GRANT SELECT ON SEQUENCE eventlog.outbox_id_seq TO eventlog_relay;
    GRANT USAGE, SELECT ON SEQUENCE eventlog.outbox_id_seq TO eventlog_admin;
    GRANT SELECT, INSERT, DELETE ON eventlog.outbox_range TO eventlog_relay;
    GRANT SELECT, INSERT, DELETE, UPDATE (owner) ON eventlog.outbox_chunk TO eventlog_relay;
    GRANT SELECT, INSERT, DELETE ON eventlog.outbox_ack TO eventlog_relay;
    GRANT SELECT ON eventlog.outbox_range, eventlog.outbox_chunk, eventlog.outbox_ack TO eventlog_admin;
    GRANT EXECUTE ON FUNCTION eventlog.range_rows(txid_snapshot, txid_snapshot, bigint, bigint, bigint, bigint, bigint),
        eventlog.retention_frontier(), eventlog.acknowledged_snapshot(), eventlog.range_cursor(bigint),
        eventlog.backlog() TO eventlog_relay, eventlog_admin;
    GRANT EXECUTE ON FUNCTION eventlog.claim_chunks(integer, integer, integer, bigint, uuid[]),
        eventlog.truncate_delivered(integer) TO eventlog_relay;
    -- An administrator's bulk COPY and the dead-letter replay: every column but txid, which is always the writer's.
    GRANT INSERT (id, event_id, event_type, event_date_time, environment, event_context, metadata_version, trace_id,
                  enqueued_at, span_id) ON eventlog.outbox TO eventlog_admin;
    GRANT UPDATE (txid) ON eventlog.event_ids TO eventlog_admin;
END
$grants$;
