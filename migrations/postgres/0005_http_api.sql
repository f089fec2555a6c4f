-- The HTTP API (docs/http-api.md): API keys, and the demo users use case for eventlog_producer.
--
-- API keys are reachable only through the SECURITY DEFINER functions below: eventlog_producer (the role
-- `eventlog serve` runs as) may ask for one active key's hash by id, and nothing else; eventlog_admin creates,
-- lists and revokes. A token is "elk_<id>_<secret>"; only HMAC-SHA256(SECRET_KEY, secret) is stored.
CREATE TABLE eventlog.api_key (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL UNIQUE CHECK (octet_length(name) BETWEEN 1 AND 200),
    token_hash bytea       NOT NULL CHECK (octet_length(token_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
REVOKE ALL ON eventlog.api_key FROM PUBLIC;

-- The hash of active key `key_id`, NULL when there is none or it is revoked. The server compares it with the HMAC
-- of the presented secret in constant time; asked on every request, so a revocation holds at once everywhere.
CREATE FUNCTION eventlog.api_key_hash(key_id bigint) RETURNS bytea
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT k.token_hash FROM eventlog.api_key k WHERE k.id = api_key_hash.key_id AND k.revoked_at IS NULL
$$;

CREATE FUNCTION eventlog.api_key_create(name text, token_hash bytea) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO eventlog.api_key (name, token_hash) VALUES (api_key_create.name, api_key_create.token_hash)
    RETURNING id
$$;

CREATE FUNCTION eventlog.api_key_list() RETURNS TABLE (name text, created_at timestamptz, revoked_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT k.name, k.created_at, k.revoked_at FROM eventlog.api_key k ORDER BY k.id
$$;

-- True when an active key named `name` was revoked by this call.
CREATE FUNCTION eventlog.api_key_revoke(name text) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH revoked AS (
        UPDATE eventlog.api_key k SET revoked_at = now()
        WHERE k.name = api_key_revoke.name AND k.revoked_at IS NULL RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM revoked)
$$;

-- The seed's CreateUser: the user and its user_created event in one statement, so both or neither are written.
-- A second user with the same email raises unique_violation (23505) before any event is emitted.
CREATE FUNCTION eventlog_demo.create_user(user_email text, user_first_name text, user_last_name text)
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
                                                            'last_name', created.last_name));
    RETURN QUERY SELECT created.id, created.email, created.first_name, created.last_name, created.created_at;
END
$$;

-- Where event `event_id` is in PostgreSQL, for GET /api/v1/events/{event_id}: at most one row, 'pending' (in the
-- outbox), 'in_flight' (inside a delivery record) or 'dead_lettered', in that order; no row when it is in none of
-- them (then it was delivered, or never accepted: the server asks ClickHouse). One statement, one snapshot: a claim
-- moves rows from the outbox to a delivery record atomically, and a delivery record is deleted only after
-- ClickHouse acknowledged the insert, so asking ClickHouse after this cannot miss an event that was here.
-- Producers may call it, not read the tables. Cost: the outbox and the delivery records are scanned (event_id is
-- not indexed there); acceptable for an occasional lookup, not for polling at high rates.
CREATE FUNCTION eventlog.event_status(event_id uuid)
RETURNS TABLE (state text, since timestamptz, attempts integer, error text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.state, s.since, s.attempts, s.error FROM (
        (SELECT 1 AS rank, 'pending'::text AS state, o.enqueued_at AS since, NULL::integer AS attempts,
                NULL::text AS error
         FROM eventlog.outbox o WHERE o.event_id = event_status.event_id LIMIT 1)
        UNION ALL
        (SELECT 2, 'in_flight', d.claimed_at, d.attempts, NULL
         FROM eventlog.delivery d
         WHERE EXISTS (SELECT 1 FROM pg_catalog.unnest(d.events) e WHERE e.event_id = event_status.event_id) LIMIT 1)
        UNION ALL
        (SELECT 3, 'dead_lettered', x.last_failed_at, x.attempts, x.error
         FROM eventlog.dead_letter x WHERE x.event_id = event_status.event_id)
    ) s ORDER BY s.rank LIMIT 1
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA eventlog FROM PUBLIC;
REVOKE ALL ON SCHEMA eventlog_demo FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA eventlog_demo FROM PUBLIC;
REVOKE ALL ON FUNCTION eventlog_demo.create_user(text, text, text) FROM PUBLIC;
DO $grants$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_producer') THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON FUNCTION eventlog.api_key_hash(bigint), eventlog.event_status(uuid) TO eventlog_producer;
    GRANT EXECUTE ON FUNCTION eventlog.api_key_create(text, bytea), eventlog.api_key_list(),
        eventlog.api_key_revoke(text) TO eventlog_admin;
    GRANT USAGE ON SCHEMA eventlog_demo TO eventlog_producer;
    GRANT EXECUTE ON FUNCTION eventlog_demo.create_user(text, text, text) TO eventlog_producer;
END
$grants$;
