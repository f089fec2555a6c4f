-- Event ids belong to the API key that wrote them (issue 20; docs/http-api.md, "Ids belong to their key").
--
-- Event ids were global across keys: key B could post key A's predictable id first, and A's real event was
-- answered `duplicate` and stored nowhere; any key read any event's status. The registry now records the key of an
-- id written through the HTTP API (NULL for the SQL and C++ paths, which have no key). A copy of an id under the
-- same key is a duplicate, as before; the same id under another key (or an id an SQL producer registered) is a
-- clash: emit_batch() refuses the whole call with SQLSTATE 23505 and a message naming event_id, and the API
-- answers 409 for that request (a group commit isolates it, as any refused member). The status lookup answers
-- only the key that wrote the event.
ALTER TABLE eventlog.event_ids ADD COLUMN key_id bigint;

DROP FUNCTION eventlog.emit_batch(text[], json[], uuid[], timestamptz[], text[], bigint[], text[], text[]);
-- As in 0011 (its checks read eventlog.limits once per call, which a batch amortises), with 0013's changes (the
-- name stored as written, no wake-up flag, a NULL id made here and not registered) and the writer's key per event
-- (`key_ids`, NULL: no key).
CREATE FUNCTION eventlog.emit_batch(
    event_types       text[],
    event_contexts    json[],
    event_ids         uuid[],
    event_date_times  timestamptz[],
    environments      text[],
    metadata_versions bigint[],
    trace_ids         text[],
    span_ids          text[] DEFAULT NULL,
    key_ids           bigint[] DEFAULT NULL,
    OUT ord           bigint,
    OUT id            uuid,
    OUT accepted      boolean
) RETURNS SETOF record
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    clash   bigint;
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
    RETURN QUERY
    WITH u AS MATERIALIZED (
        SELECT x.i, x.id IS NOT NULL AS supplied, coalesce(x.id, gen_random_uuid()) AS id,
               nextval('eventlog.outbox_id_seq') AS outbox_id, x.t, x.c, x.ts, x.env, coalesce(x.mv, 1) AS mv, x.tr,
               x.sp, x.k
        FROM ROWS FROM (unnest(event_types), unnest(event_contexts), unnest(event_ids), unnest(event_date_times),
                        unnest(environments), unnest(metadata_versions), unnest(trace_ids), unnest(span_ids),
                        unnest(key_ids))
             WITH ORDINALITY AS x(t, c, id, ts, env, mv, tr, sp, k, i)
        ORDER BY x.i
    ), reg AS (
        INSERT INTO eventlog.event_ids AS r (event_id, outbox_id, key_id)
        -- In the order of the ids (a repeat within the call: its first copy), not of the call: two calls holding
        -- the same ids wait for each other's rows in one order and cannot deadlock (issue 20).
        SELECT u.id, u.outbox_id, u.k FROM u WHERE u.supplied ORDER BY u.id, u.i
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
    -- A supplied id whose registry row belongs to another writer. A statement of its own: its snapshot sees a row
    -- that a concurrent copy committed while the insert above waited for it.
    IF key_ids IS NOT NULL THEN
        SELECT x.i INTO clash
        FROM ROWS FROM (unnest(event_ids), unnest(key_ids)) WITH ORDINALITY AS x(id, k, i)
        JOIN eventlog.event_ids r ON r.event_id = x.id
        WHERE x.id IS NOT NULL AND x.k IS NOT NULL AND r.key_id IS DISTINCT FROM x.k
        ORDER BY x.i LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'event_id: already used by another writer (events[%])', clash - 1
                USING ERRCODE = '23505';
        END IF;
    END IF;
END
$$;

-- The status of an event written with API key `key_id`: as event_status(event_id), or 'registered' when the
-- registry holds it for that key but PostgreSQL no longer does (delivered: the caller asks ClickHouse); no row when
-- the key did not write it (or its registry row was pruned, IDEMPOTENCY_WINDOW after delivery).
CREATE FUNCTION eventlog.event_status(event_id uuid, key_id bigint)
RETURNS TABLE (state text, since timestamptz, attempts integer, error text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(s.state, 'registered'), s.since, s.attempts, s.error
    FROM eventlog.event_ids r
    LEFT JOIN LATERAL eventlog.event_status(r.event_id) s ON true
    WHERE r.event_id = event_status.event_id AND r.key_id = event_status.key_id
$$;

REVOKE ALL ON FUNCTION eventlog.emit_batch(text[], json[], uuid[], timestamptz[], text[], bigint[], text[], text[],
                                           bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventlog.event_status(uuid, bigint) FROM PUBLIC;
DO $grants$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_producer') THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON FUNCTION eventlog.emit_batch(text[], json[], uuid[], timestamptz[], text[], bigint[], text[],
                                                  text[], bigint[]),
                              eventlog.event_status(uuid, bigint)
        TO eventlog_producer, eventlog_admin;
END
$grants$;

-- One implementation of the name rule (the relay's, since 0013); nothing calls this one any more.
DROP FUNCTION eventlog.snake_case(text);
