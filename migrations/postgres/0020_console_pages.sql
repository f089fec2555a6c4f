-- The admin console's pages (issue 21; docs/admin-console.md): dashboard, dead letters, API keys, users, audit log,
-- events. The API server runs as an eventlog_producer role, which reads none of the tables behind these pages. It
-- gets functions, not tables: each console function is SECURITY DEFINER, takes the SHA-256 of the caller's session
-- token, refuses (42501) unless that session is live, and writes the audit row for a change in the same transaction
-- as the change. So a stolen producer login can replay, discard, create or revoke nothing without a live
-- administrator's session token.
--
-- Two bodies move here from C++ so that the CLI and the console run the same SQL: the status figures
-- (outbox::ReadStatus: `eventlog status`, the dashboard) and the dead-letter replay and discard (outbox::
-- ReplayDeadLetters / DiscardDeadLetters: `eventlog dlq replay|discard`, the console's buttons).

-- `eventlog status`'s figures, one home: ReadStatus selects from this, and so does the dashboard (through the same
-- C++ function), so their numbers cannot differ. Counts (which /metrics already publishes) and what retention waits
-- for; any of the three roles may read them.
CREATE FUNCTION eventlog.status(OUT pending bigint, OUT oldest_pending_age_seconds float8,
                                OUT in_flight_batches bigint, OUT in_flight_events bigint, OUT dead_letters bigint,
                                OUT retained_bytes bigint, OUT retention_waiting text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT b.pending, coalesce(extract(epoch FROM pg_catalog.now() - b.oldest_enqueued_at), 0)::float8,
           b.in_flight_records, b.in_flight_events, (SELECT pg_catalog.count(*) FROM eventlog.dead_letter),
           b.retained_bytes, b.retention_waiting
    FROM eventlog.backlog() b
$$;

-- Moves dead letters back into the outbox with the same event_id (all of them when `ids` is NULL); one whose
-- event_date_time ClickHouse cannot store stays (migration 0017). The event id registry points at the new outbox
-- row and its transaction (status lookups; migrations 0011, 0018), and holds the id again if it was pruned
-- meanwhile. Returns how many moved. The only replay: `eventlog dlq replay` and the console both call it.
CREATE FUNCTION eventlog.dead_letter_replay(ids uuid[]) RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH moved AS (
        DELETE FROM eventlog.dead_letter d
        WHERE (dead_letter_replay.ids IS NULL OR d.event_id = ANY (dead_letter_replay.ids))
          AND d.event_date_time >= '1970-01-01 00:00:00+00' AND d.event_date_time < '2106-02-07 06:28:16+00'
        RETURNING d.event_id, d.event_type, d.event_date_time, d.environment, d.event_context, d.metadata_version,
                  d.trace_id, d.span_id
    ), replayed AS (
        INSERT INTO eventlog.outbox (event_id, event_type, event_date_time, environment, event_context,
                                     metadata_version, trace_id, span_id)
        SELECT * FROM moved RETURNING id, event_id
    ), registered AS (
        INSERT INTO eventlog.event_ids AS r (event_id, outbox_id) SELECT event_id, id FROM replayed
        ON CONFLICT ON CONSTRAINT event_ids_pkey DO UPDATE SET outbox_id = EXCLUDED.outbox_id, txid = EXCLUDED.txid
        RETURNING 1
    )
    SELECT pg_catalog.count(*) FROM registered
$$;

-- Deletes dead letters (all of them when `ids` is NULL); returns how many.
CREATE FUNCTION eventlog.dead_letter_discard(ids uuid[]) RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    WITH gone AS (
        DELETE FROM eventlog.dead_letter d
        WHERE dead_letter_discard.ids IS NULL OR d.event_id = ANY (dead_letter_discard.ids)
        RETURNING 1
    )
    SELECT pg_catalog.count(*) FROM gone
$$;

-- The dead-letter list pages by (first_failed_at, event_id), oldest failure first, as `eventlog dlq list`.
CREATE INDEX dead_letter_first_failed ON eventlog.dead_letter (first_failed_at, event_id);

-- ---- The console's functions (eventlog_producer, each needing a live session) ----

-- The administrator of live session `session_token_hash`; raises insufficient_privilege (42501) without one. Not
-- granted to anyone: the console functions below call it as their owner.
CREATE FUNCTION eventlog.console_actor(session_token_hash bytea) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    who text;
BEGIN
    SELECT a.username INTO who FROM eventlog.console_session s JOIN eventlog.console_admin a ON a.id = s.admin_id
    WHERE s.token_hash = console_actor.session_token_hash AND s.expires_at > pg_catalog.now() AND NOT a.disabled;
    IF who IS NULL THEN
        RAISE EXCEPTION 'console: no live session' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN who;
END
$$;

-- The relays' PostgreSQL sessions (application_name eventlog-relay) in this database: connected since, last state
-- change (the last time it started or finished a statement) and state.
CREATE FUNCTION eventlog.console_relays(session_token_hash bytea)
RETURNS TABLE (pid integer, client_address text, connected_at timestamptz, last_seen_at timestamptz, state text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM eventlog.console_actor(console_relays.session_token_hash);
    RETURN QUERY
    SELECT a.pid, coalesce(pg_catalog.host(a.client_addr), 'local'), a.backend_start, a.state_change,
           coalesce(a.state, '')
    FROM pg_catalog.pg_stat_activity a
    WHERE a.application_name = 'eventlog-relay' AND a.datname = pg_catalog.current_database()
    ORDER BY a.backend_start
    LIMIT 100;
END
$$;

-- Dead letters whose event_type contains `type_filter` and whose error contains `error_filter` (case-insensitive;
-- '' matches all), oldest failure first, after (`after_failed_at`, `after_id`) when given, at most `max_rows` (<= 500).
CREATE FUNCTION eventlog.console_dead_letters(session_token_hash bytea, type_filter text, error_filter text,
                                              after_failed_at timestamptz, after_id uuid, max_rows integer)
RETURNS TABLE (event_id uuid, event_type text, event_date_time timestamptz, environment text, event_context json,
               metadata_version bigint, error text, attempts integer, batch_id uuid, first_failed_at timestamptz,
               last_failed_at timestamptz, trace_id text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM eventlog.console_actor(console_dead_letters.session_token_hash);
    RETURN QUERY
    SELECT d.event_id, d.event_type, d.event_date_time, d.environment, d.event_context, d.metadata_version, d.error,
           d.attempts, d.batch_id, d.first_failed_at, d.last_failed_at, d.trace_id
    FROM eventlog.dead_letter d
    WHERE pg_catalog.strpos(pg_catalog.lower(d.event_type), pg_catalog.lower(coalesce(type_filter, ''))) > 0
      AND pg_catalog.strpos(pg_catalog.lower(d.error), pg_catalog.lower(coalesce(error_filter, ''))) > 0
      AND (after_failed_at IS NULL OR (d.first_failed_at, d.event_id) > (after_failed_at, after_id))
    ORDER BY d.first_failed_at, d.event_id
    LIMIT least(greatest(max_rows, 1), 500);
END
$$;

-- Dead letter `dead_letter_id` (no row when there is none), as console_dead_letters.
CREATE FUNCTION eventlog.console_dead_letter(session_token_hash bytea, dead_letter_id uuid)
RETURNS TABLE (event_id uuid, event_type text, event_date_time timestamptz, environment text, event_context json,
               metadata_version bigint, error text, attempts integer, batch_id uuid, first_failed_at timestamptz,
               last_failed_at timestamptz, trace_id text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM eventlog.console_actor(console_dead_letter.session_token_hash);
    RETURN QUERY
    SELECT d.event_id, d.event_type, d.event_date_time, d.environment, d.event_context, d.metadata_version, d.error,
           d.attempts, d.batch_id, d.first_failed_at, d.last_failed_at, d.trace_id
    FROM eventlog.dead_letter d WHERE d.event_id = console_dead_letter.dead_letter_id;
END
$$;

-- How many dead letters match the filters (as console_dead_letters).
CREATE FUNCTION eventlog.console_dead_letter_count(session_token_hash bytea, type_filter text, error_filter text)
RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM eventlog.console_actor(console_dead_letter_count.session_token_hash);
    RETURN (SELECT pg_catalog.count(*) FROM eventlog.dead_letter d
            WHERE pg_catalog.strpos(pg_catalog.lower(d.event_type), pg_catalog.lower(coalesce(type_filter, ''))) > 0
              AND pg_catalog.strpos(pg_catalog.lower(d.error), pg_catalog.lower(coalesce(error_filter, ''))) > 0);
END
$$;

-- Replays (`action` 'replay') or discards ('discard') the dead letters `ids`, or, when `ids` is NULL, every one
-- matching the filters, through dead_letter_replay / dead_letter_discard, and audits it (dead_letters_replayed /
-- dead_letters_discarded: the count, the filters, and up to 1,000 of the ids). Returns how many.
CREATE FUNCTION eventlog.console_dead_letter_act(session_token_hash bytea, client_address text, action text,
                                                 ids uuid[], type_filter text, error_filter text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    who     text := eventlog.console_actor(console_dead_letter_act.session_token_hash);
    chosen  uuid[] := ids;
    changed bigint;
BEGIN
    IF action NOT IN ('replay', 'discard') THEN
        RAISE EXCEPTION 'action: expected replay or discard' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF chosen IS NULL THEN
        SELECT coalesce(pg_catalog.array_agg(d.event_id), '{}') INTO chosen FROM eventlog.dead_letter d
        WHERE pg_catalog.strpos(pg_catalog.lower(d.event_type), pg_catalog.lower(coalesce(type_filter, ''))) > 0
          AND pg_catalog.strpos(pg_catalog.lower(d.error), pg_catalog.lower(coalesce(error_filter, ''))) > 0;
    END IF;
    IF action = 'replay' THEN
        changed := eventlog.dead_letter_replay(chosen);
    ELSE
        changed := eventlog.dead_letter_discard(chosen);
    END IF;
    INSERT INTO eventlog.console_audit (actor, action, target, client_address, details)
    VALUES (who, CASE action WHEN 'replay' THEN 'dead_letters_replayed' ELSE 'dead_letters_discarded' END,
            CASE WHEN pg_catalog.cardinality(chosen) = 1 THEN chosen[1]::text
                 ELSE pg_catalog.format('%s dead letters', changed) END,
            console_dead_letter_act.client_address,
            pg_catalog.jsonb_build_object('count', changed, 'selected', ids IS NOT NULL,
                                          'type_filter', coalesce(type_filter, ''),
                                          'error_filter', coalesce(error_filter, ''),
                                          'event_ids', pg_catalog.to_jsonb(chosen[1:1000])));
    RETURN changed;
END
$$;

-- Every API key (api_key_list, never a hash).
CREATE FUNCTION eventlog.console_api_keys(session_token_hash bytea)
RETURNS TABLE (name text, created_at timestamptz, revoked_at timestamptz, scopes text[])
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM eventlog.console_actor(console_api_keys.session_token_hash);
    RETURN QUERY SELECT * FROM eventlog.api_key_list();
END
$$;

-- Creates a key through api_key_create and audits it (api_key_created, target the name, details the scopes).
CREATE FUNCTION eventlog.console_api_key_create(session_token_hash bytea, client_address text, name text,
                                               token_hash bytea, scopes text[])
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    who text := eventlog.console_actor(console_api_key_create.session_token_hash);
    id  bigint;
BEGIN
    id := eventlog.api_key_create(console_api_key_create.name, console_api_key_create.token_hash,
                                  console_api_key_create.scopes);
    INSERT INTO eventlog.console_audit (actor, action, target, client_address, details)
    VALUES (who, 'api_key_created', console_api_key_create.name, console_api_key_create.client_address,
            pg_catalog.jsonb_build_object('scopes', console_api_key_create.scopes));
    RETURN id;
END
$$;

-- Revokes key `name` through api_key_revoke and audits it (api_key_revoked); false when there was no active key.
CREATE FUNCTION eventlog.console_api_key_revoke(session_token_hash bytea, client_address text, name text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    who text := eventlog.console_actor(console_api_key_revoke.session_token_hash);
BEGIN
    IF NOT eventlog.api_key_revoke(console_api_key_revoke.name) THEN
        RETURN false;
    END IF;
    INSERT INTO eventlog.console_audit (actor, action, target, client_address)
    VALUES (who, 'api_key_revoked', console_api_key_revoke.name, console_api_key_revoke.client_address);
    RETURN true;
END
$$;

-- The demo users table behind POST /api/v1/users, newest first: those whose email, first or last name contains
-- `search` (case-insensitive, '' for all), with an id below `before_id` when given, at most `max_rows` (<= 500).
CREATE FUNCTION eventlog.console_users(session_token_hash bytea, search text, before_id bigint, max_rows integer)
RETURNS TABLE (id bigint, email text, first_name text, last_name text, created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    needle text := pg_catalog.lower(coalesce(search, ''));
BEGIN
    PERFORM eventlog.console_actor(console_users.session_token_hash);
    RETURN QUERY
    SELECT u.id, u.email, u.first_name, u.last_name, u.created_at FROM eventlog_demo.users u
    WHERE (before_id IS NULL OR u.id < before_id)
      AND (needle = '' OR pg_catalog.strpos(pg_catalog.lower(u.email), needle) > 0
           OR pg_catalog.strpos(pg_catalog.lower(u.first_name), needle) > 0
           OR pg_catalog.strpos(pg_catalog.lower(u.last_name), needle) > 0)
    ORDER BY u.id DESC
    LIMIT least(greatest(max_rows, 1), 500);
END
$$;

-- The audit log, newest first, with an id below `before_id` when given, at most `max_rows` (<= 500).
CREATE FUNCTION eventlog.console_audit_log(session_token_hash bytea, before_id bigint, max_rows integer)
RETURNS TABLE (id bigint, at timestamptz, actor text, action text, target text, client_address text, db_role text,
               details jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM eventlog.console_actor(console_audit_log.session_token_hash);
    RETURN QUERY
    SELECT a.id, a.at, a.actor, a.action, a.target, a.client_address, a.db_role, a.details
    FROM eventlog.console_audit a
    WHERE before_id IS NULL OR a.id < before_id
    ORDER BY a.id DESC
    LIMIT least(greatest(max_rows, 1), 500);
END
$$;

-- Where event `lookup_id` is in PostgreSQL, as GET /api/v1/events/{event_id} sees it (event_status, whatever key
-- wrote it): pending, in_flight, dead_lettered, or 'registered' (its id is known and it is no longer here:
-- delivered); no row when PostgreSQL does not know it.
CREATE FUNCTION eventlog.console_event_status(session_token_hash bytea, lookup_id uuid)
RETURNS TABLE (state text, since timestamptz, attempts integer, error text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM eventlog.console_actor(console_event_status.session_token_hash);
    RETURN QUERY
    (SELECT s.state, s.since, s.attempts, s.error FROM eventlog.event_status(console_event_status.lookup_id) s)
    UNION ALL
    (SELECT 'registered', NULL::timestamptz, NULL::integer, NULL::text FROM eventlog.event_ids r
     WHERE r.event_id = console_event_status.lookup_id)
    LIMIT 1;
END
$$;

REVOKE ALL ON FUNCTION eventlog.status(), eventlog.dead_letter_replay(uuid[]), eventlog.dead_letter_discard(uuid[]),
    eventlog.console_actor(bytea), eventlog.console_relays(bytea),
    eventlog.console_dead_letters(bytea, text, text, timestamptz, uuid, integer),
    eventlog.console_dead_letter_count(bytea, text, text), eventlog.console_dead_letter(bytea, uuid),
    eventlog.console_dead_letter_act(bytea, text, text, uuid[], text, text), eventlog.console_api_keys(bytea),
    eventlog.console_api_key_create(bytea, text, text, bytea, text[]),
    eventlog.console_api_key_revoke(bytea, text, text), eventlog.console_users(bytea, text, bigint, integer),
    eventlog.console_audit_log(bytea, bigint, integer), eventlog.console_event_status(bytea, uuid) FROM PUBLIC;
DO $grants$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_producer') THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON FUNCTION eventlog.status() TO eventlog_admin, eventlog_producer, eventlog_relay;
    GRANT EXECUTE ON FUNCTION eventlog.dead_letter_replay(uuid[]), eventlog.dead_letter_discard(uuid[])
        TO eventlog_admin;
    GRANT EXECUTE ON FUNCTION eventlog.console_relays(bytea),
        eventlog.console_dead_letters(bytea, text, text, timestamptz, uuid, integer),
        eventlog.console_dead_letter_count(bytea, text, text), eventlog.console_dead_letter(bytea, uuid),
        eventlog.console_dead_letter_act(bytea, text, text, uuid[], text, text), eventlog.console_api_keys(bytea),
        eventlog.console_api_key_create(bytea, text, text, bytea, text[]),
        eventlog.console_api_key_revoke(bytea, text, text), eventlog.console_users(bytea, text, bigint, integer),
        eventlog.console_audit_log(bytea, bigint, integer), eventlog.console_event_status(bytea, uuid)
        TO eventlog_producer;
END
$grants$;
