-- emit_checked() for many events in one set-based statement: the HTTP API's write (docs/http-api.md). The same
-- checks with the same messages (the first refused event in order raises, and nothing is written), the same
-- registry for exact idempotency (an event_id accepted before, or earlier in the same call, is a duplicate and
-- stored nowhere), the same wake-up check, once per call. Measured on the development machine (loaded), 1,000
-- events of ~300 bytes, alternating four times: 20-27 ms per call against 37-42 ms for one emit_checked() call per
-- row in one statement.
-- NULL elements mean the argument's default (a random id, the insert's clock, the relay's environment,
-- metadata_version 1, no trace id): an array cannot tell an absent value from a null one.
CREATE FUNCTION eventlog.emit_batch(
    event_types       text[],
    event_contexts    json[],
    event_ids         uuid[],
    event_date_times  timestamptz[],
    environments      text[],
    metadata_versions bigint[],
    trace_ids         text[],
    OUT ord           bigint,
    OUT id            uuid,
    OUT accepted      boolean
) RETURNS SETOF record
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lim     eventlog.limits;
    problem text;
BEGIN
    SELECT * INTO lim FROM eventlog.limits;
    SELECT p.problem INTO problem
    FROM (SELECT x.i, CASE
            WHEN btrim(x.t) IS NULL OR btrim(x.t) = '' THEN 'event_type: expected a non-empty event name'
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
            WHEN x.mv < 0 THEN 'metadata_version: expected a non-negative integer'
          END AS problem
          FROM ROWS FROM (unnest(event_types), unnest(event_contexts), unnest(environments),
                          unnest(metadata_versions), unnest(trace_ids)) WITH ORDINALITY AS x(t, c, env, mv, tr, i)) p
    WHERE p.problem IS NOT NULL
    ORDER BY p.i
    LIMIT 1;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION '%', problem USING ERRCODE = '22023';
    END IF;
    -- Registry first, in order: of two copies of one id in the call the first is inserted and the second skipped
    -- (ON CONFLICT DO NOTHING also skips rows that conflict within the statement); a concurrent copy waits for the
    -- first one's transaction, as in emit_checked().
    RETURN QUERY
    WITH u AS MATERIALIZED (
        SELECT x.i, coalesce(x.id, gen_random_uuid()) AS id, btrim(x.t) AS t, x.c, x.ts, x.env,
               coalesce(x.mv, 1) AS mv, x.tr
        FROM ROWS FROM (unnest(event_types), unnest(event_contexts), unnest(event_ids), unnest(event_date_times),
                        unnest(environments), unnest(metadata_versions), unnest(trace_ids))
             WITH ORDINALITY AS x(t, c, id, ts, env, mv, tr, i)
    ), reg AS (
        INSERT INTO eventlog.event_ids AS r (event_id)
        SELECT u.id FROM u ORDER BY u.i
        ON CONFLICT ON CONSTRAINT event_ids_pkey DO NOTHING
        RETURNING r.event_id
    ), first AS (
        SELECT DISTINCT ON (u.id) u.i FROM u JOIN reg ON reg.event_id = u.id ORDER BY u.id, u.i
    ), names AS (  -- snake_case once per distinct name: a batch mostly repeats a few
        SELECT d.t, CASE WHEN d.t ~ '^[a-z0-9]+(_[a-z0-9]+)*$' THEN d.t ELSE eventlog.snake_case(d.t) END AS name
        FROM (SELECT DISTINCT u.t FROM u) d
    ), ins AS (
        INSERT INTO eventlog.outbox (event_id, event_type, event_date_time, environment, event_context,
                                     metadata_version, trace_id)
        SELECT u.id, n.name, coalesce(u.ts, clock_timestamp()), nullif(u.env, ''), u.c, u.mv, coalesce(u.tr, '')
        FROM u JOIN first ON first.i = u.i JOIN names n ON n.t = u.t
        ORDER BY u.i
        RETURNING 1
    )
    SELECT u.i, u.id, first.i IS NOT NULL FROM u LEFT JOIN first ON first.i = u.i ORDER BY u.i;
    -- After the rows: this transaction has its id before it reads the flag (0006_cheap_wakeups.sql).
    IF (SELECT last_value FROM eventlog.relay_wakeup) > (extract(epoch FROM clock_timestamp()) * 1000)::bigint THEN
        PERFORM pg_notify('eventlog_outbox', '');
    END IF;
END
$$;

REVOKE ALL ON FUNCTION eventlog.emit_batch(text[], json[], uuid[], timestamptz[], text[], bigint[], text[]) FROM PUBLIC;
DO $grants$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_producer') THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON FUNCTION eventlog.emit_batch(text[], json[], uuid[], timestamptz[], text[], bigint[], text[])
        TO eventlog_producer, eventlog_admin;
END
$grants$;
