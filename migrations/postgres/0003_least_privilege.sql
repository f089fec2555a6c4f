-- Least privilege, pinned search_paths and bounded events (docs/security.md).
--
-- Roles (NOLOGIN groups; grant them to your login roles):
--   eventlog_producer  may only call eventlog.emit(...)
--   eventlog_relay     claims, delivers, acknowledges and dead-letters (the relay)
--   eventlog_admin     dead letters (list, replay, discard), limits, status; bulk COPY into the outbox
-- They are created here when the migrating role may create roles; otherwise a DBA creates them first (the
-- statements below) and then runs `eventlog migrate`: the GRANTs are applied once, with this migration.
DO $roles$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_producer') THEN
            CREATE ROLE eventlog_producer NOLOGIN;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_relay') THEN
            CREATE ROLE eventlog_relay NOLOGIN;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_admin') THEN
            CREATE ROLE eventlog_admin NOLOGIN;
        END IF;
    ELSE
        RAISE NOTICE 'eventlog: % may not create roles; create eventlog_producer, eventlog_relay and eventlog_admin '
                     '(NOLOGIN) and run this migration''s GRANTs (docs/security.md)', current_user;
    END IF;
END
$roles$;

-- Limits on every event field, read by emit() and by the relay (which dead-letters a row over them that reached
-- the outbox another way). One row; an admin may change it: UPDATE eventlog.limits SET max_context_bytes = ...
CREATE TABLE eventlog.limits (
    singleton              boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    max_event_type_bytes   integer NOT NULL DEFAULT 200 CHECK (max_event_type_bytes > 0),
    max_context_bytes      integer NOT NULL DEFAULT 1048576 CHECK (max_context_bytes > 0),
    max_environment_bytes  integer NOT NULL DEFAULT 200 CHECK (max_environment_bytes > 0),
    max_trace_id_bytes     integer NOT NULL DEFAULT 128 CHECK (max_trace_id_bytes > 0)
);
INSERT INTO eventlog.limits DEFAULT VALUES;

-- Every function that runs with other people's data resolves names only in pg_catalog (then pg_temp, last), so no
-- object a producer can create shadows a built-in. emit() runs as its owner: producers need no privilege on the
-- outbox and cannot bypass its checks.
ALTER FUNCTION eventlog.snake_case(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION eventlog.notify_outbox() SET search_path = pg_catalog, pg_temp;
CREATE OR REPLACE FUNCTION eventlog.emit(
    event_type       text,
    event_context    json,
    event_id         uuid        DEFAULT NULL,
    event_date_time  timestamptz DEFAULT NULL,
    environment      text        DEFAULT NULL,
    metadata_version bigint      DEFAULT 1,
    trace_id         text        DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_id uuid := coalesce(emit.event_id, gen_random_uuid());
    lim    eventlog.limits;
BEGIN
    SELECT * INTO lim FROM eventlog.limits;
    IF emit.event_type IS NULL OR btrim(emit.event_type) = '' THEN
        RAISE EXCEPTION 'event_type: expected a non-empty event name' USING ERRCODE = '22023';
    END IF;
    IF octet_length(emit.event_type) > lim.max_event_type_bytes THEN
        RAISE EXCEPTION 'event_type: expected at most % bytes, got %', lim.max_event_type_bytes,
            octet_length(emit.event_type) USING ERRCODE = '22023';
    END IF;
    IF emit.event_context IS NULL OR json_typeof(emit.event_context) <> 'object' THEN
        RAISE EXCEPTION 'event_context: expected a JSON object' USING ERRCODE = '22023';
    END IF;
    IF octet_length(emit.event_context::text) > lim.max_context_bytes THEN
        RAISE EXCEPTION 'event_context: expected at most % bytes, got %', lim.max_context_bytes,
            octet_length(emit.event_context::text) USING ERRCODE = '22023';
    END IF;
    IF octet_length(emit.environment) > lim.max_environment_bytes THEN
        RAISE EXCEPTION 'environment: expected at most % bytes', lim.max_environment_bytes USING ERRCODE = '22023';
    END IF;
    IF octet_length(emit.trace_id) > lim.max_trace_id_bytes THEN
        RAISE EXCEPTION 'trace_id: expected at most % bytes', lim.max_trace_id_bytes USING ERRCODE = '22023';
    END IF;
    IF emit.metadata_version IS NULL OR emit.metadata_version < 0 THEN
        RAISE EXCEPTION 'metadata_version: expected a non-negative integer' USING ERRCODE = '22023';
    END IF;
    INSERT INTO eventlog.outbox (event_id, event_type, event_date_time, environment, event_context,
                                 metadata_version, trace_id)
    VALUES (new_id, eventlog.snake_case(btrim(emit.event_type)), coalesce(emit.event_date_time, clock_timestamp()),
            nullif(emit.environment, ''), emit.event_context, emit.metadata_version, coalesce(emit.trace_id, ''));
    RETURN new_id;
END
$$;

-- The demo users table is the seed's application, not part of the relay's schema.
CREATE SCHEMA IF NOT EXISTS eventlog_demo;
ALTER TABLE eventlog.users SET SCHEMA eventlog_demo;

-- Nothing is open to PUBLIC; each role gets what it uses.
REVOKE ALL ON SCHEMA eventlog FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA eventlog FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA eventlog FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA eventlog FROM PUBLIC;
DO $grants$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_relay') THEN
        RETURN;
    END IF;
    GRANT USAGE ON SCHEMA eventlog TO eventlog_producer, eventlog_relay, eventlog_admin;
    GRANT EXECUTE ON FUNCTION eventlog.emit(text, json, uuid, timestamptz, text, bigint, text) TO eventlog_producer,
        eventlog_admin;
    -- FOR UPDATE needs UPDATE on some column: enqueued_at is the one whose change harms nothing.
    GRANT SELECT, DELETE, UPDATE (enqueued_at) ON eventlog.outbox TO eventlog_relay;
    GRANT SELECT, INSERT, DELETE ON eventlog.delivery TO eventlog_relay;
    GRANT SELECT, INSERT, UPDATE ON eventlog.dead_letter TO eventlog_relay;
    GRANT SELECT ON eventlog.relay_identity, eventlog.limits TO eventlog_relay, eventlog_admin;
    GRANT EXECUTE ON FUNCTION eventlog.snake_case(text) TO eventlog_admin;
    GRANT SELECT, INSERT ON eventlog.outbox TO eventlog_admin;
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA eventlog TO eventlog_admin;
    GRANT SELECT ON eventlog.delivery TO eventlog_admin;
    GRANT SELECT, DELETE ON eventlog.dead_letter TO eventlog_admin;
    GRANT UPDATE ON eventlog.limits TO eventlog_admin;
END
$grants$;
