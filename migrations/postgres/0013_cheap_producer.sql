-- Storage v2, the producer's side (issue 19): a write through emit() costs about what a plain INSERT costs.
--
-- A profile of single-event transactions (bench/producer_breakdown.py, 16 pgbench clients, no relay) put emit() at
-- 0.48x a plain INSERT, while a SECURITY DEFINER function that only inserts the row ran at 1.09x: the cost was the
-- body around the INSERT. Five parts of it go:
--
-- 1. The limits were read from eventlog.limits by a query on every call. They are now constants in the bodies of
--    emit() and emit_checked(), which a trigger on eventlog.limits writes again whenever the row changes (the next
--    call in every session uses the new body). eventlog.limits stays the one place an admin changes a limit.
--    (Named CHECK constraints on the outbox were tried first: PostgreSQL plans a table's check expressions again for
--    every INSERT statement, which cost 12-17% of a single-event transaction, against 4% for the same checks as
--    PL/pgSQL expressions, which are planned once per session. The relay still dead-letters a row over the limits
--    that reached the outbox another way.)
-- 2. The event name is stored as written; the relay converts it to snake_case when it encodes the row for
--    ClickHouse (src/core: one implementation of the rule, where the SQL and the C++ forms used to disagree: SQL
--    measured the name before the conversion and C++ after, so a name near the limit was accepted by emit() and
--    dead-lettered by the relay). The limit applies to the name as written, on every path. snake_case() is dropped.
-- 3. The idempotency registry is written only for an id the caller supplies (emit(event_id => ...), emit_batch()
--    with ids, the HTTP API, outbox::EmitMany). An id the server makes cannot be a duplicate of anything.
-- 4. The wake-up flag (0006) is no longer read: a resting relay watches the outbox's id sequence instead
--    (docs/delivery.md, "Waking the relay"). Reading the flag cost a single-event transaction 6-12% of its rate.
--    The sequence eventlog.relay_wakeup and wake_relays() stay for relays of the version before, during an upgrade.
-- 5. emit() was a SQL wrapper reading the id out of emit_checked()'s (id, accepted) record: 25% of a single-event
--    transaction. It is a PL/pgSQL function of its own now, which hands only a caller's id to emit_checked().
ALTER TABLE eventlog.outbox ALTER COLUMN event_id SET DEFAULT gen_random_uuid();

-- Writes emit() and emit_checked() with the limits of eventlog.limits as constants. Same contracts as 0011 (the
-- signatures, emit_checked()'s OUT columns, exactly-once for a supplied id within IDEMPOTENCY_WINDOW, an error
-- naming the field with SQLSTATE 22023 and nothing written for bad input).
CREATE FUNCTION eventlog.apply_limits() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $apply$
DECLARE
    lim    eventlog.limits;
    checks text;
BEGIN
    SELECT * INTO STRICT lim FROM eventlog.limits;
    -- The checks of both functions (parameters by their bare names: no table is involved).
    checks := format($checks$
    IF event_type IS NULL OR btrim(event_type, E' \t-.') = '' THEN
        RAISE EXCEPTION 'event_type: expected a non-empty event name' USING ERRCODE = '22023';
    END IF;
    IF octet_length(event_type) > %1$s THEN
        RAISE EXCEPTION 'event_type: expected at most %1$s bytes, got %%', octet_length(event_type)
            USING ERRCODE = '22023';
    END IF;
    IF event_context IS NULL OR json_typeof(event_context) <> 'object' THEN
        RAISE EXCEPTION 'event_context: expected a JSON object' USING ERRCODE = '22023';
    END IF;
    IF octet_length(event_context::text) > %2$s THEN
        RAISE EXCEPTION 'event_context: expected at most %2$s bytes, got %%', octet_length(event_context::text)
            USING ERRCODE = '22023';
    END IF;
    IF octet_length(environment) > %3$s THEN
        RAISE EXCEPTION 'environment: expected at most %3$s bytes' USING ERRCODE = '22023';
    END IF;
    IF octet_length(trace_id) > %4$s THEN
        RAISE EXCEPTION 'trace_id: expected at most %4$s bytes' USING ERRCODE = '22023';
    END IF;
    IF octet_length(span_id) > %4$s THEN
        RAISE EXCEPTION 'span_id: expected at most %4$s bytes' USING ERRCODE = '22023';
    END IF;
    IF metadata_version IS NULL OR metadata_version < 0 THEN
        RAISE EXCEPTION 'metadata_version: expected a non-negative integer' USING ERRCODE = '22023';
    END IF;
$checks$, lim.max_event_type_bytes, lim.max_context_bytes, lim.max_environment_bytes, lim.max_trace_id_bytes);

    EXECUTE format($emit$
CREATE OR REPLACE FUNCTION eventlog.emit(
    event_type       text,
    event_context    json,
    event_id         uuid        DEFAULT NULL,
    event_date_time  timestamptz DEFAULT NULL,
    environment      text        DEFAULT NULL,
    metadata_version bigint      DEFAULT 1,
    trace_id         text        DEFAULT NULL,
    span_id          text        DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    new_id uuid;
BEGIN
    -- Written by eventlog.apply_limits() from eventlog.limits (migration 0013): change the limits there.
%1$s
    IF emit.event_id IS NOT NULL THEN  -- a caller's id: exactly once, through the registry
        RETURN (eventlog.emit_checked(emit.event_type, emit.event_context, emit.event_id, emit.event_date_time,
                                      emit.environment, emit.metadata_version, emit.trace_id, emit.span_id)).id;
    END IF;
    -- The transaction takes its id before the outbox id is drawn (the claim floor and the resting relay rely on
    -- that order: docs/delivery.md); a plain expression, no query.
    IF pg_current_xact_id() IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO eventlog.outbox AS o (event_type, event_date_time, environment, event_context, metadata_version,
                                      trace_id, span_id)
    VALUES (emit.event_type, coalesce(emit.event_date_time, clock_timestamp()), nullif(emit.environment, ''),
            emit.event_context, emit.metadata_version, coalesce(emit.trace_id, ''), coalesce(emit.span_id, ''))
    RETURNING o.event_id INTO new_id;
    RETURN new_id;
END
$body$$emit$, checks);

    EXECUTE format($checked$
CREATE OR REPLACE FUNCTION eventlog.emit_checked(
    event_type       text,
    event_context    json,
    event_id         uuid        DEFAULT NULL,
    event_date_time  timestamptz DEFAULT NULL,
    environment      text        DEFAULT NULL,
    metadata_version bigint      DEFAULT 1,
    trace_id         text        DEFAULT NULL,
    span_id          text        DEFAULT NULL,
    OUT id           uuid,
    OUT accepted     boolean
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
BEGIN
    -- Written by eventlog.apply_limits() from eventlog.limits (migration 0013): change the limits there.
%1$s
    -- The transaction takes its id before the outbox id is drawn; a plain expression, no query.
    accepted := pg_current_xact_id() IS NOT NULL;
    IF emit_checked.event_id IS NULL THEN
        INSERT INTO eventlog.outbox AS o (event_type, event_date_time, environment, event_context, metadata_version,
                                          trace_id, span_id)
        VALUES (emit_checked.event_type, coalesce(emit_checked.event_date_time, clock_timestamp()),
                nullif(emit_checked.environment, ''), emit_checked.event_context, emit_checked.metadata_version,
                coalesce(emit_checked.trace_id, ''), coalesce(emit_checked.span_id, ''))
        RETURNING o.event_id INTO id;
        RETURN;
    END IF;
    id := emit_checked.event_id;
    -- Exactly once per event_id within IDEMPOTENCY_WINDOW (0007): the outbox row is written only when the registry
    -- took the id. A concurrent copy waits on the registry's key for the first one's transaction and is then a
    -- duplicate (or accepted, if that one rolled back).
    WITH registered AS (
        INSERT INTO eventlog.event_ids AS r (event_id, outbox_id)
        VALUES (emit_checked.event_id, nextval('eventlog.outbox_id_seq'))
        ON CONFLICT ON CONSTRAINT event_ids_pkey DO NOTHING RETURNING r.event_id, r.outbox_id
    )
    INSERT INTO eventlog.outbox (id, event_id, event_type, event_date_time, environment, event_context,
                                 metadata_version, trace_id, span_id) OVERRIDING SYSTEM VALUE
    SELECT r.outbox_id, r.event_id, emit_checked.event_type,
           coalesce(emit_checked.event_date_time, clock_timestamp()), nullif(emit_checked.environment, ''),
           emit_checked.event_context, emit_checked.metadata_version, coalesce(emit_checked.trace_id, ''),
           coalesce(emit_checked.span_id, '')
    FROM registered r;
    accepted := FOUND;
END
$body$$checked$, checks);
    RETURN NULL;
END
$apply$;
REVOKE ALL ON FUNCTION eventlog.apply_limits() FROM PUBLIC;
CREATE TRIGGER limits_to_functions AFTER INSERT OR UPDATE ON eventlog.limits
    FOR EACH STATEMENT EXECUTE FUNCTION eventlog.apply_limits();
UPDATE eventlog.limits SET singleton = true;  -- emit() and emit_checked() with today's limits

-- As in 0011 (its checks read eventlog.limits once per call, which a batch amortises), without the name conversion
-- and the wake-up flag; a NULL id (or a NULL array of ids) is made here and not registered.
CREATE OR REPLACE FUNCTION eventlog.emit_batch(
    event_types       text[],
    event_contexts    json[],
    event_ids         uuid[],
    event_date_times  timestamptz[],
    environments      text[],
    metadata_versions bigint[],
    trace_ids         text[],
    span_ids          text[] DEFAULT NULL,
    OUT ord           bigint,
    OUT id            uuid,
    OUT accepted      boolean
) RETURNS SETOF record
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lim     eventlog.limits;
    problem text;
BEGIN
    SELECT * INTO lim FROM eventlog.limits;  -- once per call: a batch's checks are set-based
    SELECT p.problem INTO problem
    FROM (SELECT x.i, CASE
            WHEN x.t IS NULL OR btrim(x.t, E' \t-.') = '' THEN 'event_type: expected a non-empty event name'
            WHEN octet_length(x.t) > lim.max_event_type_bytes THEN
                format('event_type: expected at most %s bytes, got %s', lim.max_event_type_bytes, octet_length(x.t))
            WHEN x.c IS NULL OR json_typeof(x.c) <> 'object' THEN 'event_context: expected a JSON object'
            WHEN octet_length(x.c::text) > lim.max_context_bytes THEN
                format('event_context: expected at most %s bytes, got %s', lim.max_context_bytes,
                       octet_length(x.c::text))
            WHEN octet_length(x.env) > lim.max_environment_bytes THEN
                format('environment: expected at most %s bytes', lim.max_environment_bytes)
            WHEN octet_length(x.tr) > lim.max_trace_id_bytes THEN
                format('trace_id: expected at most %s bytes', lim.max_trace_id_bytes)
            WHEN octet_length(x.sp) > lim.max_trace_id_bytes THEN
                format('span_id: expected at most %s bytes', lim.max_trace_id_bytes)
            WHEN x.mv < 0 THEN 'metadata_version: expected a non-negative integer'
          END AS problem
          FROM ROWS FROM (unnest(event_types), unnest(event_contexts), unnest(environments),
                          unnest(metadata_versions), unnest(trace_ids), unnest(span_ids))
               WITH ORDINALITY AS x(t, c, env, mv, tr, sp, i)) p
    WHERE p.problem IS NOT NULL
    ORDER BY p.i
    LIMIT 1;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION '%', problem USING ERRCODE = '22023';
    END IF;
    PERFORM pg_current_xact_id();  -- the transaction's id before the outbox ids are drawn
    -- Every row draws its outbox id in the call's order; a supplied id is registered with it, first come first
    -- served (ON CONFLICT DO NOTHING also skips the later copy of an id repeated within the call), and only the
    -- rows the registry took, or that supplied no id, are written.
    RETURN QUERY
    WITH u AS MATERIALIZED (
        SELECT x.i, x.id IS NOT NULL AS supplied, coalesce(x.id, gen_random_uuid()) AS id,
               nextval('eventlog.outbox_id_seq') AS outbox_id, x.t, x.c, x.ts, x.env, coalesce(x.mv, 1) AS mv, x.tr,
               x.sp
        FROM ROWS FROM (unnest(event_types), unnest(event_contexts), unnest(event_ids), unnest(event_date_times),
                        unnest(environments), unnest(metadata_versions), unnest(trace_ids), unnest(span_ids))
             WITH ORDINALITY AS x(t, c, id, ts, env, mv, tr, sp, i)
        ORDER BY x.i
    ), reg AS (
        INSERT INTO eventlog.event_ids AS r (event_id, outbox_id)
        SELECT u.id, u.outbox_id FROM u WHERE u.supplied ORDER BY u.i
        ON CONFLICT ON CONSTRAINT event_ids_pkey DO NOTHING
        RETURNING r.outbox_id
    ), taken AS MATERIALIZED (
        SELECT u.* FROM u WHERE NOT u.supplied OR u.outbox_id IN (SELECT reg.outbox_id FROM reg)
    ), ins AS (
        INSERT INTO eventlog.outbox (id, event_id, event_type, event_date_time, environment, event_context,
                                     metadata_version, trace_id, span_id) OVERRIDING SYSTEM VALUE
        SELECT t.outbox_id, t.id, t.t, coalesce(t.ts, clock_timestamp()), nullif(t.env, ''), t.c, t.mv,
               coalesce(t.tr, ''), coalesce(t.sp, '')
        FROM taken t ORDER BY t.i
        RETURNING 1
    )
    SELECT u.i, u.id, t.i IS NOT NULL FROM u LEFT JOIN taken t ON t.i = u.i ORDER BY u.i;
END
$$;

-- One implementation of the name rule (the relay's); nothing calls this one any more.
DROP FUNCTION eventlog.snake_case(text);
