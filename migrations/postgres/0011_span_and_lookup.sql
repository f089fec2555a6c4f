-- Two changes to the producer's write: the producing span's id is stored with each event, and each registry row
-- keeps its outbox row's id for the status lookup.
--
-- The producing span's id, stored with each event (docs/observability.md, "Traces"), so that the relay's span
-- for a claim can link to the spans that wrote its events (OpenTelemetry messaging: a batch receive links to each
-- message's creation context). trace_id already holds the producer's trace; span_id completes the W3C context.
-- It lives in PostgreSQL only (the outbox, delivery records, dead letters): event_log keeps the trace id, and the
-- link is in the trace. `span_id` is a new last parameter with a default of emit(), emit_checked() and
-- emit_batch(), so every existing call keeps working; the functions are dropped and created again because a
-- second overload would make those calls ambiguous. Its size is bounded by the trace id's limit. The relay
-- links only well-formed ids (16 hex digits, not all zero) and ignores anything else.
-- ADD COLUMN with a constant default does not rewrite the outbox; ADD ATTRIBUTE leaves the records in flight as
-- they are (their span_id reads NULL).
ALTER TABLE eventlog.outbox ADD COLUMN span_id text NOT NULL DEFAULT '';
ALTER TABLE eventlog.dead_letter ADD COLUMN span_id text NOT NULL DEFAULT '';
ALTER TYPE eventlog.pending_event ADD ATTRIBUTE span_id text;

-- The status lookup by the registry (docs/http-api.md, "GET /api/v1/events/{event_id}"). event_status() found a
-- pending event by scanning the outbox (event_id is not indexed there): 160-200 ms at a backlog of a million, per
-- request, for anyone with an API key. An index on outbox.event_id would cost every producer one more index entry
-- (a random page of a large index for a random id). Instead the registry row each accepted event already gets
-- keeps its outbox row's id: the producer draws the id (nextval of the outbox's identity) into the registry row and
-- writes the outbox row with it, 8 bytes more per registry row and no new index; a lookup is two primary-key
-- probes. The producer takes its transaction id before it draws the outbox id, so the id is never drawn before its
-- transaction has one (the claim floor relies on that order: docs/delivery.md, "The claim floor"). The relay now
-- prunes only registry rows whose outbox row is gone, so a pending event keeps both its exact idempotency and its
-- lookup however long it waits. Rows accepted before this migration get their pointer here.
ALTER TABLE eventlog.event_ids ADD COLUMN outbox_id bigint;
UPDATE eventlog.event_ids r SET outbox_id = o.id FROM eventlog.outbox o WHERE o.event_id = r.event_id;

DROP FUNCTION eventlog.emit(text, json, uuid, timestamptz, text, bigint, text);
DROP FUNCTION eventlog.emit_checked(text, json, uuid, timestamptz, text, bigint, text);
DROP FUNCTION eventlog.emit_batch(text[], json[], uuid[], timestamptz[], text[], bigint[], text[]);

-- As in 0008, with span_id and the registry's outbox id.
CREATE FUNCTION eventlog.emit_checked(
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
DECLARE
    new_id   uuid := coalesce(emit_checked.event_id, gen_random_uuid());
    new_type text := btrim(emit_checked.event_type);
    lim      eventlog.limits;
BEGIN
    SELECT * INTO lim FROM eventlog.limits;
    IF new_type IS NULL OR new_type = '' THEN
        RAISE EXCEPTION 'event_type: expected a non-empty event name' USING ERRCODE = '22023';
    END IF;
    IF octet_length(emit_checked.event_type) > lim.max_event_type_bytes THEN
        RAISE EXCEPTION 'event_type: expected at most % bytes, got %', lim.max_event_type_bytes,
            octet_length(emit_checked.event_type) USING ERRCODE = '22023';
    END IF;
    IF emit_checked.event_context IS NULL OR json_typeof(emit_checked.event_context) <> 'object' THEN
        RAISE EXCEPTION 'event_context: expected a JSON object' USING ERRCODE = '22023';
    END IF;
    IF octet_length(emit_checked.event_context::text) > lim.max_context_bytes THEN
        RAISE EXCEPTION 'event_context: expected at most % bytes, got %', lim.max_context_bytes,
            octet_length(emit_checked.event_context::text) USING ERRCODE = '22023';
    END IF;
    IF octet_length(emit_checked.environment) > lim.max_environment_bytes THEN
        RAISE EXCEPTION 'environment: expected at most % bytes', lim.max_environment_bytes USING ERRCODE = '22023';
    END IF;
    IF octet_length(emit_checked.trace_id) > lim.max_trace_id_bytes THEN
        RAISE EXCEPTION 'trace_id: expected at most % bytes', lim.max_trace_id_bytes USING ERRCODE = '22023';
    END IF;
    IF octet_length(emit_checked.span_id) > lim.max_trace_id_bytes THEN
        RAISE EXCEPTION 'span_id: expected at most % bytes', lim.max_trace_id_bytes USING ERRCODE = '22023';
    END IF;
    IF emit_checked.metadata_version IS NULL OR emit_checked.metadata_version < 0 THEN
        RAISE EXCEPTION 'metadata_version: expected a non-negative integer' USING ERRCODE = '22023';
    END IF;
    IF new_type !~ '^[a-z0-9]+(_[a-z0-9]+)*$' THEN
        new_type := eventlog.snake_case(new_type);
    END IF;
    id := new_id;
    -- Exactly once per event_id within IDEMPOTENCY_WINDOW (0007): the outbox row is written only when the registry
    -- took the id. A concurrent copy waits on the registry's key for the first one's transaction and is then a
    -- duplicate (or accepted, if that one rolled back).
    PERFORM pg_current_xact_id();  -- the transaction's id before the outbox id is drawn
    WITH registered AS (
        INSERT INTO eventlog.event_ids AS r (event_id, outbox_id) VALUES (new_id, nextval('eventlog.outbox_id_seq'))
        ON CONFLICT ON CONSTRAINT event_ids_pkey DO NOTHING RETURNING r.event_id, r.outbox_id
    )
    INSERT INTO eventlog.outbox (id, event_id, event_type, event_date_time, environment, event_context,
                                 metadata_version, trace_id, span_id) OVERRIDING SYSTEM VALUE
    SELECT r.outbox_id, r.event_id, new_type, coalesce(emit_checked.event_date_time, clock_timestamp()),
           nullif(emit_checked.environment, ''), emit_checked.event_context, emit_checked.metadata_version,
           coalesce(emit_checked.trace_id, ''), coalesce(emit_checked.span_id, '')
    FROM registered r;
    accepted := FOUND;
    IF NOT accepted THEN
        RETURN;
    END IF;
    -- After the row: this transaction has its id before it reads the flag (0006).
    IF (SELECT last_value FROM eventlog.relay_wakeup) > (extract(epoch FROM clock_timestamp()) * 1000)::bigint THEN
        PERFORM pg_notify('eventlog_outbox', '');
    END IF;
END
$$;

-- As in 0007: caller's rights, one qualified call, inlined into the caller's query.
CREATE FUNCTION eventlog.emit(
    event_type       text,
    event_context    json,
    event_id         uuid        DEFAULT NULL,
    event_date_time  timestamptz DEFAULT NULL,
    environment      text        DEFAULT NULL,
    metadata_version bigint      DEFAULT 1,
    trace_id         text        DEFAULT NULL,
    span_id          text        DEFAULT NULL
) RETURNS uuid
LANGUAGE sql AS $$
    SELECT (eventlog.emit_checked($1, $2, $3, $4, $5, $6, $7, $8)).id
$$;

-- As in 0010, with span_ids (NULL: no span ids at all), the registry's outbox ids, and names materialised.
CREATE FUNCTION eventlog.emit_batch(
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
    -- Registry first, in order: of two copies of one id in the call the first is inserted and the second skipped
    -- (ON CONFLICT DO NOTHING also skips rows that conflict within the statement); a concurrent copy waits for the
    -- first one's transaction, as in emit_checked().
    PERFORM pg_current_xact_id();  -- the transaction's id before the outbox ids are drawn
    RETURN QUERY
    WITH u AS MATERIALIZED (
        SELECT x.i, coalesce(x.id, gen_random_uuid()) AS id, btrim(x.t) AS t, x.c, x.ts, x.env,
               coalesce(x.mv, 1) AS mv, x.tr, x.sp
        FROM ROWS FROM (unnest(event_types), unnest(event_contexts), unnest(event_ids), unnest(event_date_times),
                        unnest(environments), unnest(metadata_versions), unnest(trace_ids), unnest(span_ids))
             WITH ORDINALITY AS x(t, c, id, ts, env, mv, tr, sp, i)
    ), reg AS (
        INSERT INTO eventlog.event_ids AS r (event_id, outbox_id)
        SELECT u.id, nextval('eventlog.outbox_id_seq') FROM u ORDER BY u.i
        ON CONFLICT ON CONSTRAINT event_ids_pkey DO NOTHING
        RETURNING r.event_id, r.outbox_id
    ), first AS (
        SELECT DISTINCT ON (u.id) u.i, reg.outbox_id FROM u JOIN reg ON reg.event_id = u.id ORDER BY u.id, u.i
    ), names AS MATERIALIZED (  -- snake_case once per distinct name: a batch mostly repeats a few (not materialised,
       -- the planner pulled the expression into the join and ran the regular expressions once per row: 87-94 ms
       -- against 79-82 ms for 1,000 "UserCreated" events, three alternating calls)
        SELECT d.t, CASE WHEN d.t ~ '^[a-z0-9]+(_[a-z0-9]+)*$' THEN d.t ELSE eventlog.snake_case(d.t) END AS name
        FROM (SELECT DISTINCT u.t FROM u) d
    ), ins AS (
        INSERT INTO eventlog.outbox (id, event_id, event_type, event_date_time, environment, event_context,
                                     metadata_version, trace_id, span_id) OVERRIDING SYSTEM VALUE
        SELECT first.outbox_id, u.id, n.name, coalesce(u.ts, clock_timestamp()), nullif(u.env, ''), u.c, u.mv, coalesce(u.tr, ''),
               coalesce(u.sp, '')
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

-- The seed's CreateUser (0005) with the request's trace context, so that a user_created row leads to its request.
DROP FUNCTION eventlog_demo.create_user(text, text, text);
CREATE FUNCTION eventlog_demo.create_user(user_email text, user_first_name text, user_last_name text,
                                          trace_id text DEFAULT NULL, span_id text DEFAULT NULL)
RETURNS TABLE (id bigint, email text, first_name text, last_name text, created_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    created eventlog_demo.users;
BEGIN
    INSERT INTO eventlog_demo.users (email, first_name, last_name)
    VALUES (create_user.user_email, create_user.user_first_name, create_user.user_last_name)
    RETURNING * INTO created;
    PERFORM eventlog.emit('user_created', json_build_object('email', created.email, 'first_name', created.first_name,
                                                            'last_name', created.last_name),
                          trace_id => create_user.trace_id, span_id => create_user.span_id);
    RETURN QUERY SELECT created.id, created.email, created.first_name, created.last_name, created.created_at;
END
$$;

-- As in 0005, with the pending row found through the registry (two primary-key probes; the outbox row must still
-- carry the id). The delivery records are still scanned: they hold what the relays have in flight, at most a few
-- claims each.
CREATE OR REPLACE FUNCTION eventlog.event_status(event_id uuid)
RETURNS TABLE (state text, since timestamptz, attempts integer, error text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.state, s.since, s.attempts, s.error FROM (
        (SELECT 1 AS rank, 'pending'::text AS state, o.enqueued_at AS since, NULL::integer AS attempts,
                NULL::text AS error
         FROM eventlog.event_ids r JOIN eventlog.outbox o ON o.id = r.outbox_id
         WHERE r.event_id = event_status.event_id AND o.event_id = event_status.event_id)
        UNION ALL
        (SELECT 2, 'in_flight', d.claimed_at, d.attempts, NULL
         FROM eventlog.delivery d
         WHERE EXISTS (SELECT 1 FROM pg_catalog.unnest(d.events) e WHERE e.event_id = event_status.event_id) LIMIT 1)
        UNION ALL
        (SELECT 3, 'dead_lettered', x.last_failed_at, x.attempts, x.error
         FROM eventlog.dead_letter x WHERE x.event_id = event_status.event_id)
    ) s ORDER BY s.rank LIMIT 1
$$;

REVOKE ALL ON FUNCTION eventlog_demo.create_user(text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventlog.emit(text, json, uuid, timestamptz, text, bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventlog.emit_checked(text, json, uuid, timestamptz, text, bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventlog.emit_batch(text[], json[], uuid[], timestamptz[], text[], bigint[], text[], text[])
    FROM PUBLIC;
DO $grants$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_producer') THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON FUNCTION eventlog.emit(text, json, uuid, timestamptz, text, bigint, text, text),
                              eventlog.emit_checked(text, json, uuid, timestamptz, text, bigint, text, text),
                              eventlog.emit_batch(text[], json[], uuid[], timestamptz[], text[], bigint[], text[],
                                                  text[])
        TO eventlog_producer, eventlog_admin;
    GRANT EXECUTE ON FUNCTION eventlog_demo.create_user(text, text, text, text, text) TO eventlog_producer;
    -- EmitMany registers with the outbox id; a dead-letter replay points the registry at the new outbox row.
    GRANT UPDATE (outbox_id) ON eventlog.event_ids TO eventlog_admin;
END
$grants$;
