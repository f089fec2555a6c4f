-- The outbox, the in-flight delivery record, dead letters and the emit() producer API.
CREATE SCHEMA IF NOT EXISTS eventlog;
-- gen_random_uuid() is built in from PostgreSQL 13 (no pgcrypto needed).

-- Pending events. Producers insert inside their own transaction; the relay moves rows out in batches.
CREATE TABLE eventlog.outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         uuid        NOT NULL,
    event_type       text        NOT NULL,
    event_date_time  timestamptz NOT NULL DEFAULT clock_timestamp(),
    environment      text,                      -- NULL: the relay's ENVIRONMENT
    event_context    json        NOT NULL,      -- producer's JSON text (json keeps key order; jsonb would not)
    metadata_version bigint      NOT NULL DEFAULT 1,
    trace_id         text        NOT NULL DEFAULT '',
    enqueued_at      timestamptz NOT NULL DEFAULT now()
);

-- One event as carried by a delivery record (same fields as an outbox row).
CREATE TYPE eventlog.pending_event AS (
    id               bigint,
    event_id         uuid,
    event_type       text,
    event_date_time  timestamptz,
    environment      text,
    event_context    json,
    metadata_version bigint,
    trace_id         text,
    enqueued_at      timestamptz
);

-- A batch that left the outbox and is not yet acknowledged by ClickHouse. The claim moves the rows
-- here in the same statement that deletes them from the outbox, so a committed claim can always be
-- finished after a crash (see docs/delivery.md).
CREATE TABLE eventlog.delivery (
    batch_id   uuid        PRIMARY KEY,
    owner      integer     NOT NULL,            -- advisory-lock key of the relay session that claimed it
    claimed_at timestamptz NOT NULL DEFAULT now(),
    attempts   integer     NOT NULL DEFAULT 0,
    last_error text,
    events     eventlog.pending_event[] NOT NULL
);
ALTER TABLE eventlog.delivery ALTER COLUMN events SET COMPRESSION lz4;

-- Events that can never be delivered, with the reason. Replayed back to the outbox with the same event_id.
CREATE TABLE eventlog.dead_letter (
    event_id         uuid        PRIMARY KEY,
    event_type       text        NOT NULL,
    event_date_time  timestamptz NOT NULL,
    environment      text,
    event_context    json        NOT NULL,
    metadata_version bigint      NOT NULL,
    trace_id         text        NOT NULL DEFAULT '',
    enqueued_at      timestamptz NOT NULL,
    error            text        NOT NULL,
    attempts         integer     NOT NULL,
    batch_id         uuid,
    first_failed_at  timestamptz NOT NULL DEFAULT now(),
    last_failed_at   timestamptz NOT NULL DEFAULT now()
);

-- snake_case of an event name: UserCreated -> user_created, HTTPRequestFailed -> http_request_failed.
CREATE FUNCTION eventlog.snake_case(name text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT lower(regexp_replace(regexp_replace(regexp_replace(regexp_replace(name,
        '[-. ]+', '_', 'g'),
        '([A-Z]+)([A-Z][a-z])', '\1_\2', 'g'),
        '([a-z0-9])([A-Z])', '\1_\2', 'g'),
        '_+', '_', 'g'))
$$;

-- The SQL producer API: call inside your transaction; rolled back with it.
CREATE FUNCTION eventlog.emit(
    event_type       text,
    event_context    json,
    event_id         uuid        DEFAULT NULL,
    event_date_time  timestamptz DEFAULT NULL,
    environment      text        DEFAULT NULL,
    metadata_version bigint      DEFAULT 1,
    trace_id         text        DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    new_id uuid := coalesce(emit.event_id, gen_random_uuid());
BEGIN
    IF emit.event_type IS NULL OR btrim(emit.event_type) = '' THEN
        RAISE EXCEPTION 'event_type: expected a non-empty event name' USING ERRCODE = '22023';
    END IF;
    IF emit.event_context IS NULL OR json_typeof(emit.event_context) <> 'object' THEN
        RAISE EXCEPTION 'event_context: expected a JSON object' USING ERRCODE = '22023';
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

-- Wake the relay once per inserting statement (NOTIFYs with equal payload collapse per transaction).
CREATE FUNCTION eventlog.notify_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('eventlog_outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON eventlog.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION eventlog.notify_outbox();

-- Demo application table (the seed's users API writes here and emits user_created).
CREATE TABLE eventlog.users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         text        NOT NULL UNIQUE,
    first_name    text        NOT NULL DEFAULT '',
    last_name     text        NOT NULL DEFAULT '',
    password_hash text,
    is_superuser  boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);
