-- Wake-ups that cost producers nothing while a relay is awake (docs/delivery.md, "Waking the relay").
--
-- The per-statement NOTIFY trigger made every producing transaction take PostgreSQL's global notify lock through its
-- commit, serialising commits (and their WAL flushes): emit() ran at a fraction of a plain INSERT's rate. Now a
-- relay about to sleep sets eventlog.relay_wakeup to the time (epoch ms) it will sleep until, and only a producer
-- that reads a time in the future notifies. A sequence, because reading it is not subject to MVCC: a producer in
-- a REPEATABLE READ transaction reads the value set a moment ago, as any other does. The producer reads it after
-- its row is written (its transaction id assigned), and the relay, after setting it, waits until every transaction
-- older than its own has ended before its last look at the outbox: a producer that read the old value is then
-- either visible to that look or has not written yet (and will read the new value). No wake-up is lost.
CREATE SEQUENCE eventlog.relay_wakeup MINVALUE 0 START 0;

-- Notifies the relays if one is asleep. emit() does this inline; other writers into the outbox (COPY, a replay of
-- dead letters) call it in their transaction (without it they are picked up within EVENT_PROCESSING_INTERVAL).
CREATE FUNCTION eventlog.wake_relays() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF (SELECT last_value FROM eventlog.relay_wakeup) > (extract(epoch FROM clock_timestamp()) * 1000)::bigint THEN
        PERFORM pg_notify('eventlog_outbox', '');
    END IF;
END
$$;

DROP TRIGGER outbox_notify ON eventlog.outbox;
DROP FUNCTION eventlog.notify_outbox();

-- Same contract as before (0003); cheaper: names already in snake_case skip the four regular expressions, and the
-- wake-up check is inline.
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
    new_id   uuid := coalesce(emit.event_id, gen_random_uuid());
    new_type text := btrim(emit.event_type);
    lim      eventlog.limits;
BEGIN
    SELECT * INTO lim FROM eventlog.limits;
    IF new_type IS NULL OR new_type = '' THEN
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
    IF new_type !~ '^[a-z0-9]+(_[a-z0-9]+)*$' THEN
        new_type := eventlog.snake_case(new_type);
    END IF;
    INSERT INTO eventlog.outbox (event_id, event_type, event_date_time, environment, event_context,
                                 metadata_version, trace_id)
    VALUES (new_id, new_type, coalesce(emit.event_date_time, clock_timestamp()),
            nullif(emit.environment, ''), emit.event_context, emit.metadata_version, coalesce(emit.trace_id, ''));
    -- After the row: this transaction has its id before it reads the flag (see the top of this file).
    IF (SELECT last_value FROM eventlog.relay_wakeup) > (extract(epoch FROM clock_timestamp()) * 1000)::bigint THEN
        PERFORM pg_notify('eventlog_outbox', '');
    END IF;
    RETURN new_id;
END
$$;

REVOKE ALL ON FUNCTION eventlog.wake_relays() FROM PUBLIC;
REVOKE ALL ON SEQUENCE eventlog.relay_wakeup FROM PUBLIC;
DO $grants$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_relay') THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON FUNCTION eventlog.wake_relays() TO eventlog_producer, eventlog_admin;
    -- The relay sets the flag (setval needs UPDATE) and reads it.
    GRANT SELECT, UPDATE ON SEQUENCE eventlog.relay_wakeup TO eventlog_relay;
END
$grants$;
