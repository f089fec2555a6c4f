-- Exact idempotency for every producer path (docs/delivery.md, "Idempotency"): an event_id accepted within
-- IDEMPOTENCY_WINDOW (default 24 h) is stored again nowhere, whether its first copy is still in the outbox, in
-- flight, delivered or dead-lettered. One registry serves emit(), emit_checked() (which tells a duplicate apart),
-- EmitMany's COPY and the HTTP API. The relay removes ids older than the window in small batches.
CREATE TABLE eventlog.event_ids (
    event_id    uuid        CONSTRAINT event_ids_pkey PRIMARY KEY,
    accepted_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
-- Pruning goes by age; a BRIN index costs a producer next to nothing (ids arrive in time order).
CREATE INDEX event_ids_accepted_at ON eventlog.event_ids USING brin (accepted_at);

-- emit() with the outcome: (id, accepted); accepted is false for a duplicate, which wrote nothing.
CREATE FUNCTION eventlog.emit_checked(
    event_type       text,
    event_context    json,
    event_id         uuid        DEFAULT NULL,
    event_date_time  timestamptz DEFAULT NULL,
    environment      text        DEFAULT NULL,
    metadata_version bigint      DEFAULT 1,
    trace_id         text        DEFAULT NULL,
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
    IF emit_checked.metadata_version IS NULL OR emit_checked.metadata_version < 0 THEN
        RAISE EXCEPTION 'metadata_version: expected a non-negative integer' USING ERRCODE = '22023';
    END IF;
    IF new_type !~ '^[a-z0-9]+(_[a-z0-9]+)*$' THEN
        new_type := eventlog.snake_case(new_type);
    END IF;
    -- Exactly once per event_id within IDEMPOTENCY_WINDOW: a second copy is stored nowhere. A concurrent copy
    -- waits here for the first one's transaction and is then a duplicate (or accepted, if that one rolled back).
    id := new_id;
    INSERT INTO eventlog.event_ids (event_id) VALUES (new_id) ON CONFLICT ON CONSTRAINT event_ids_pkey DO NOTHING;
    IF NOT FOUND THEN
        accepted := false;
        RETURN;
    END IF;
    accepted := true;
    INSERT INTO eventlog.outbox (event_id, event_type, event_date_time, environment, event_context,
                                 metadata_version, trace_id)
    VALUES (new_id, new_type, coalesce(emit_checked.event_date_time, clock_timestamp()),
            nullif(emit_checked.environment, ''), emit_checked.event_context, emit_checked.metadata_version, coalesce(emit_checked.trace_id, ''));
    -- After the row: this transaction has its id before it reads the flag (see the top of this file).
    IF (SELECT last_value FROM eventlog.relay_wakeup) > (extract(epoch FROM clock_timestamp()) * 1000)::bigint THEN
        PERFORM pg_notify('eventlog_outbox', '');
    END IF;
END
$$;

-- emit() keeps its contract (returns the event's id, duplicate or not) and shares emit_checked()'s body. It runs with
-- its caller's rights and names only a qualified function, so it needs no pinned search_path, and PostgreSQL can
-- inline it into the caller's query (no second function call per event).
CREATE OR REPLACE FUNCTION eventlog.emit(
    event_type       text,
    event_context    json,
    event_id         uuid        DEFAULT NULL,
    event_date_time  timestamptz DEFAULT NULL,
    environment      text        DEFAULT NULL,
    metadata_version bigint      DEFAULT 1,
    trace_id         text        DEFAULT NULL
) RETURNS uuid
LANGUAGE sql AS $$
    SELECT (eventlog.emit_checked($1, $2, $3, $4, $5, $6, $7)).id
$$;

REVOKE ALL ON TABLE eventlog.event_ids FROM PUBLIC;
REVOKE ALL ON FUNCTION eventlog.emit_checked(text, json, uuid, timestamptz, text, bigint, text) FROM PUBLIC;
DO $grants$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_relay') THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON FUNCTION eventlog.emit_checked(text, json, uuid, timestamptz, text, bigint, text)
        TO eventlog_producer, eventlog_admin;
    GRANT SELECT, INSERT ON eventlog.event_ids TO eventlog_admin;   -- EmitMany registers before its COPY
    GRANT SELECT, DELETE ON eventlog.event_ids TO eventlog_relay;   -- pruning past the window
END
$grants$;
