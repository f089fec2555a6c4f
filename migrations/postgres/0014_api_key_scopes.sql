-- API key scopes (issue 20; docs/http-api.md, "Authentication"). A key carries the scopes chosen when it was made
-- (`eventlog apikey create --name N --scope S`, repeatable): events:write (POST /api/v1/events), events:read
-- (GET /api/v1/events/{event_id}), users:write (POST /api/v1/users). A key made without --scope, and every key made
-- before this migration, has all three, as before. Scopes never change: a key that needs others is replaced.
ALTER TABLE eventlog.api_key
    ADD COLUMN scopes text[] NOT NULL DEFAULT '{events:write,events:read,users:write}',
    ADD CONSTRAINT "scopes: expected one or more of events:write, events:read, users:write"
        CHECK (cardinality(scopes) > 0 AND scopes <@ '{events:write,events:read,users:write}'::text[]);

-- The hash and scopes of active key `key_id` (both NULL when there is none or it is revoked): what the API server
-- admits a request by, before it reads the body.
CREATE FUNCTION eventlog.api_key_check(key_id bigint, OUT token_hash bytea, OUT scopes text[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT k.token_hash, k.scopes FROM eventlog.api_key k WHERE k.id = api_key_check.key_id AND k.revoked_at IS NULL
$$;

DROP FUNCTION eventlog.api_key_create(text, bytea);
CREATE FUNCTION eventlog.api_key_create(name text, token_hash bytea,
                                        scopes text[] DEFAULT '{events:write,events:read,users:write}')
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    INSERT INTO eventlog.api_key (name, token_hash, scopes)
    VALUES (api_key_create.name, api_key_create.token_hash, api_key_create.scopes)
    RETURNING id
$$;

DROP FUNCTION eventlog.api_key_list();
CREATE FUNCTION eventlog.api_key_list()
RETURNS TABLE (name text, created_at timestamptz, revoked_at timestamptz, scopes text[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT k.name, k.created_at, k.revoked_at, k.scopes FROM eventlog.api_key k ORDER BY k.id
$$;

REVOKE ALL ON FUNCTION eventlog.api_key_check(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventlog.api_key_create(text, bytea, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventlog.api_key_list() FROM PUBLIC;
DO $grants$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_producer') THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON FUNCTION eventlog.api_key_check(bigint) TO eventlog_producer;
    GRANT EXECUTE ON FUNCTION eventlog.api_key_create(text, bytea, text[]), eventlog.api_key_list() TO eventlog_admin;
END
$grants$;
