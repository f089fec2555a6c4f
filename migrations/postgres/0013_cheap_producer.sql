-- Storage v2, the producer's side (issue 19): a write through emit() costs about what a plain INSERT costs.
--
-- A profile of single-event transactions (bench/producer_breakdown.py, 16 pgbench clients, no relay) put emit() at
-- 0.48x a plain INSERT, while a SECURITY DEFINER function that only inserts the row ran at 1.09x: the cost was the
-- body around the INSERT. Four parts of it move out of the producer's path:
--
-- 1. The limits are named CHECK constraints on the outbox instead of PL/pgSQL reading eventlog.limits and testing
--    each field. A constraint is evaluated in C on every path into the outbox (emit(), emit_batch(), COPY, a
--    privileged INSERT), and its name is the error: `new row for relation "outbox" violates check constraint
--    "event_context: expected at most 1048576 bytes"` (SQLSTATE 23514). eventlog.limits stays the one place an
--    admin changes a limit: a trigger on it rewrites the size constraints (NOT VALID: rows already written are not
--    scanned again; taking the table's lock waits at most lock_timeout, 5 s, and the UPDATE fails instead of
--    queueing producers behind it).
-- 2. The event name is stored as written; the relay converts it to snake_case when it encodes the row for
--    ClickHouse (src/core: one implementation of the rule, where the SQL and the C++ forms used to disagree: SQL
--    measured the name before the conversion and C++ after, so a name near the limit was accepted by emit() and
--    dead-lettered by the relay). The limit applies to the name as written, on every path. snake_case() is dropped.
-- 3. The idempotency registry is written only for an id the caller supplies (emit(event_id => ...), emit_batch()
--    with ids, the HTTP API, outbox::EmitMany). An id the server makes cannot be a duplicate of anything.
--
-- 4. The wake-up flag (0006) is no longer read: a resting relay watches the outbox's id sequence instead
--    (docs/delivery.md, "Waking the relay"). Reading the flag cost a single-event transaction 6-12% of its rate.
--    The sequence eventlog.relay_wakeup and wake_relays() stay for relays of the version before, during an upgrade.
ALTER TABLE eventlog.outbox ALTER COLUMN event_id SET DEFAULT gen_random_uuid();

-- The rules that do not depend on eventlog.limits. NOT VALID: every row already in the outbox passed emit()'s checks
-- or a privileged writer's, and the relay dead-letters a row over the limits whatever its way in.
ALTER TABLE eventlog.outbox
    ADD CONSTRAINT "event_type: expected a non-empty event name"
        CHECK (pg_catalog.btrim(event_type, E' \t-.') <> '') NOT VALID,
    ADD CONSTRAINT "event_context: expected a JSON object"
        CHECK (pg_catalog.json_typeof(event_context) = 'object') NOT VALID,
    ADD CONSTRAINT "metadata_version: expected a non-negative integer" CHECK (metadata_version >= 0) NOT VALID;

-- The size rules, from eventlog.limits: dropped and added again whenever the row changes.
CREATE FUNCTION eventlog.apply_limits() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '5s' AS $$
DECLARE
    lim   eventlog.limits;
    steps text[] := '{}';
    old   name;
BEGIN
    SELECT * INTO STRICT lim FROM eventlog.limits;
    FOR old IN SELECT c.conname FROM pg_catalog.pg_constraint c
               WHERE c.conrelid = 'eventlog.outbox'::pg_catalog.regclass AND c.contype = 'c'
                 AND c.conname LIKE '%: expected at most % bytes' LOOP
        steps := steps || format('DROP CONSTRAINT %I', old);
    END LOOP;
    steps := steps
        || format('ADD CONSTRAINT %I CHECK (pg_catalog.octet_length(event_type) <= %s) NOT VALID',
                  format('event_type: expected at most %s bytes', lim.max_event_type_bytes), lim.max_event_type_bytes)
        || format('ADD CONSTRAINT %I CHECK (pg_catalog.octet_length(event_context::text) <= %s) NOT VALID',
                  format('event_context: expected at most %s bytes', lim.max_context_bytes), lim.max_context_bytes)
        || format('ADD CONSTRAINT %I CHECK (pg_catalog.octet_length(environment) <= %s) NOT VALID',
                  format('environment: expected at most %s bytes', lim.max_environment_bytes),
                  lim.max_environment_bytes)
        || format('ADD CONSTRAINT %I CHECK (pg_catalog.octet_length(trace_id) <= %s) NOT VALID',
                  format('trace_id: expected at most %s bytes', lim.max_trace_id_bytes), lim.max_trace_id_bytes)
        || format('ADD CONSTRAINT %I CHECK (pg_catalog.octet_length(span_id) <= %s) NOT VALID',
                  format('span_id: expected at most %s bytes', lim.max_trace_id_bytes), lim.max_trace_id_bytes);
    EXECUTE 'ALTER TABLE eventlog.outbox ' || array_to_string(steps, ', ');
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION eventlog.apply_limits() FROM PUBLIC;
CREATE TRIGGER limits_to_constraints AFTER INSERT OR UPDATE ON eventlog.limits
    FOR EACH STATEMENT EXECUTE FUNCTION eventlog.apply_limits();
UPDATE eventlog.limits SET singleton = true;  -- the constraints of today's limits

-- Same contract as 0011 (the signature, the OUT columns, exactly-once for a supplied id within
-- IDEMPOTENCY_WINDOW), without the checks (the constraints above), the name conversion (the relay), the wake-up
-- flag and, for a server-made id, the registry.
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
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- The transaction takes its id before the outbox id is drawn (the claim floor relies on that order:
    -- docs/delivery.md, "The claim floor"); a plain expression, no query.
    accepted := pg_current_xact_id() IS NOT NULL;
    IF emit_checked.event_id IS NULL THEN
        INSERT INTO eventlog.outbox AS o (event_type, event_date_time, environment, event_context, metadata_version,
                                          trace_id, span_id)
        VALUES (emit_checked.event_type, coalesce(emit_checked.event_date_time, clock_timestamp()),
                nullif(emit_checked.environment, ''), emit_checked.event_context, emit_checked.metadata_version,
                coalesce(emit_checked.trace_id, ''), coalesce(emit_checked.span_id, ''))
        RETURNING o.event_id INTO id;
    ELSE
        id := emit_checked.event_id;
        -- Exactly once per event_id within IDEMPOTENCY_WINDOW (0007): the outbox row is written only when the
        -- registry took the id. A concurrent copy waits on the registry's key for the first one's transaction and is
        -- then a duplicate (or accepted, if that one rolled back).
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
        IF NOT accepted THEN
            RETURN;
        END IF;
    END IF;
END
$$;

-- As in 0011, with the same changes: a NULL id (or a NULL array of ids) is made here and not registered.
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
BEGIN
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
