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
--    dead-lettered by the relay). The limit applies to the name as written, on every path. snake_case() is dropped (0015).
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

-- emit_batch() gets the same changes (no name conversion, no wake-up flag, no registry row for a server-made id) in
-- 0015, together with the writer's key; snake_case() is dropped there, once nothing calls it.
