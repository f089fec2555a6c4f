-- The admin console's first slice (issue 21; docs/admin-console.md): administrators, console sessions, login
-- failures for throttling, and an audit log.
--
-- Nothing here is granted on a table. eventlog_admin (the CLI: `eventlog createsuperuser`, `eventlog admin ...`)
-- creates, lists, disables and re-passwords administrators through the functions below. eventlog_producer (the role
-- `eventlog serve` runs as) may only run a login, find and end a session: it never reads a password hash. A login is
-- two calls: console_login_setting(username) gives the server the argon2id parameters and salt of the stored hash
-- (never its digest), the server hashes the presented password with them, and console_login(...) compares the
-- result with the stored hash inside the database, counts the failure or creates the session, and writes the audit
-- row, all in one transaction. A stolen API-server role therefore cannot take hashes away to crack offline, and
-- its guesses are throttled like anyone's.

CREATE TABLE eventlog.console_admin (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Django's rule for usernames: 1-150 letters, digits and @ . + - _.
    username      text        NOT NULL UNIQUE
        CONSTRAINT "username: expected 1 to 150 letters, digits or @.+-_" CHECK (username ~ '^[A-Za-z0-9@.+_-]{1,150}$'),
    email         text        NOT NULL DEFAULT ''
        CONSTRAINT "email: expected at most 254 bytes" CHECK (octet_length(email) <= 254),
    -- The PHC string libargon2 encodes: $argon2id$v=19$m=...,t=...,p=...$salt$digest.
    password_hash text        NOT NULL
        CONSTRAINT "password_hash: expected an argon2id hash" CHECK (password_hash LIKE '$argon2id$%'),
    disabled      boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);

-- Server-side session state. The cookie carries 32 random bytes; only their SHA-256 is stored, so a read of this
-- table yields no usable cookie. A session ends at expires_at, which every use moves to now() + the idle timeout.
CREATE TABLE eventlog.console_session (
    token_hash   bytea       PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    admin_id     bigint      NOT NULL REFERENCES eventlog.console_admin (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX console_session_admin ON eventlog.console_session (admin_id);

-- One row per refused login, for throttling per username and per client address (5 in 15 minutes); rows older than
-- a day are deleted by the next failure.
CREATE TABLE eventlog.console_login_failure (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username       text        NOT NULL,
    client_address text        NOT NULL,
    failed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_login_failure_username ON eventlog.console_login_failure (username, failed_at);
CREATE INDEX console_login_failure_client ON eventlog.console_login_failure (client_address, failed_at);
CREATE INDEX console_login_failure_age ON eventlog.console_login_failure (failed_at);

-- Who did what, when. `actor` is the administrator's username for the console, or "cli" for a command (then
-- db_role says which database role ran it); `target` is what the action was about (a username, ...).
CREATE TABLE eventlog.console_audit (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    actor          text        NOT NULL,
    action         text        NOT NULL,
    target         text        NOT NULL DEFAULT '',
    client_address text        NOT NULL DEFAULT '',
    db_role        text        NOT NULL DEFAULT session_user,
    details        jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX console_audit_at ON eventlog.console_audit (at);

REVOKE ALL ON eventlog.console_admin, eventlog.console_session, eventlog.console_login_failure,
    eventlog.console_audit FROM PUBLIC;

-- ---- For the CLI (eventlog_admin) ----

-- Creates administrator `username`; raises unique_violation (23505) when the name is taken.
CREATE FUNCTION eventlog.console_admin_create(username text, email text, password_hash text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_id bigint;
BEGIN
    INSERT INTO eventlog.console_admin (username, email, password_hash)
    VALUES (console_admin_create.username, coalesce(console_admin_create.email, ''), console_admin_create.password_hash)
    RETURNING id INTO new_id;
    INSERT INTO eventlog.console_audit (actor, action, target, details)
    VALUES ('cli', 'admin_created', console_admin_create.username,
            jsonb_build_object('email', coalesce(console_admin_create.email, '')));
    RETURN new_id;
END
$$;

-- Every administrator, oldest first, without hashes.
CREATE FUNCTION eventlog.console_admin_list()
RETURNS TABLE (username text, email text, disabled boolean, created_at timestamptz, last_login_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.username, a.email, a.disabled, a.created_at, a.last_login_at FROM eventlog.console_admin a ORDER BY a.id
$$;

-- Disables `username` and ends its sessions; false when there is no such administrator.
CREATE FUNCTION eventlog.console_admin_disable(username text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    found_id bigint;
BEGIN
    UPDATE eventlog.console_admin a SET disabled = true WHERE a.username = console_admin_disable.username
    RETURNING a.id INTO found_id;
    IF found_id IS NULL THEN
        RETURN false;
    END IF;
    DELETE FROM eventlog.console_session s WHERE s.admin_id = found_id;
    INSERT INTO eventlog.console_audit (actor, action, target) VALUES ('cli', 'admin_disabled', console_admin_disable.username);
    RETURN true;
END
$$;

-- Replaces the password hash of `username` and ends its sessions; false when there is no such administrator.
-- A disabled administrator stays disabled.
CREATE FUNCTION eventlog.console_admin_set_password(username text, password_hash text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    found_id bigint;
BEGIN
    UPDATE eventlog.console_admin a SET password_hash = console_admin_set_password.password_hash
    WHERE a.username = console_admin_set_password.username
    RETURNING a.id INTO found_id;
    IF found_id IS NULL THEN
        RETURN false;
    END IF;
    DELETE FROM eventlog.console_session s WHERE s.admin_id = found_id;
    INSERT INTO eventlog.console_audit (actor, action, target)
    VALUES ('cli', 'admin_password_set', console_admin_set_password.username);
    RETURN true;
END
$$;

-- ---- For the API server (eventlog_producer) ----

-- The argon2id parameters and salt of enabled administrator `username`'s hash ("$argon2id$v=19$m=..,t=..,p=..$SALT",
-- the digest cut off), NULL when there is none: what the server needs to hash a presented password the same way.
CREATE FUNCTION eventlog.console_login_setting(username text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.left(a.password_hash,
                           pg_catalog.length(a.password_hash)
                           - pg_catalog.strpos(pg_catalog.reverse(a.password_hash), '$'))
    FROM eventlog.console_admin a
    WHERE a.username = console_login_setting.username AND NOT a.disabled
$$;

-- One login attempt. `presented_hash` is the presented password hashed with console_login_setting's parameters and
-- salt (NULL when there was none). Outcomes:
--   'throttled': 5 or more failures in the last 15 minutes for this username or this client address; nothing is
--                compared or counted (so waiting 15 minutes is enough), the attempt is audited;
--   'refused':   unknown or disabled administrator, or a wrong password; the failure is counted and audited;
--   'ok':        a session `session_token_hash` is created, expiring after `idle_seconds` without use.
CREATE FUNCTION eventlog.console_login(username text, presented_hash text, client_address text,
                                       session_token_hash bytea, idle_seconds integer)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    admin eventlog.console_admin;
BEGIN
    -- Attempts for one username take turns, so that concurrent guesses cannot all pass the count below.
    PERFORM pg_catalog.pg_advisory_xact_lock(1634888046, pg_catalog.hashtext(console_login.username));
    IF (SELECT count(*) FROM eventlog.console_login_failure f
        WHERE f.username = console_login.username AND f.failed_at > now() - interval '15 minutes') >= 5
       OR (SELECT count(*) FROM eventlog.console_login_failure f
           WHERE f.client_address = console_login.client_address AND f.failed_at > now() - interval '15 minutes') >= 5
    THEN
        INSERT INTO eventlog.console_audit (actor, action, target, client_address)
        VALUES (console_login.username, 'login_throttled', console_login.username, console_login.client_address);
        RETURN 'throttled';
    END IF;
    SELECT * INTO admin FROM eventlog.console_admin a WHERE a.username = console_login.username;
    IF admin.id IS NULL OR admin.disabled OR console_login.presented_hash IS NULL
       OR admin.password_hash <> console_login.presented_hash THEN
        DELETE FROM eventlog.console_login_failure f WHERE f.failed_at < now() - interval '1 day';
        INSERT INTO eventlog.console_login_failure (username, client_address)
        VALUES (console_login.username, console_login.client_address);
        INSERT INTO eventlog.console_audit (actor, action, target, client_address, details)
        VALUES (console_login.username, 'login_failed', console_login.username, console_login.client_address,
                jsonb_build_object('reason', CASE WHEN admin.id IS NULL THEN 'unknown username'
                                                  WHEN admin.disabled THEN 'disabled'
                                                  ELSE 'wrong password' END));
        RETURN 'refused';
    END IF;
    DELETE FROM eventlog.console_session s WHERE s.admin_id = admin.id AND s.expires_at < now();
    INSERT INTO eventlog.console_session (token_hash, admin_id, expires_at)
    VALUES (console_login.session_token_hash, admin.id, now() + make_interval(secs => console_login.idle_seconds));
    UPDATE eventlog.console_admin a SET last_login_at = now() WHERE a.id = admin.id;
    INSERT INTO eventlog.console_audit (actor, action, target, client_address)
    VALUES (admin.username, 'login', admin.username, console_login.client_address);
    RETURN 'ok';
END
$$;

-- The administrator of live session `session_token_hash` (NULL when it is unknown, expired or its administrator
-- is disabled); each use moves its expiry to now() + `idle_seconds`.
CREATE FUNCTION eventlog.console_session_touch(session_token_hash bytea, idle_seconds integer) RETURNS text
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    UPDATE eventlog.console_session s
    SET last_seen_at = now(), expires_at = now() + make_interval(secs => console_session_touch.idle_seconds)
    FROM eventlog.console_admin a
    WHERE s.token_hash = console_session_touch.session_token_hash AND s.expires_at > now()
      AND a.id = s.admin_id AND NOT a.disabled
    RETURNING a.username
$$;

-- Ends session `session_token_hash`; false when there was no live one.
CREATE FUNCTION eventlog.console_logout(session_token_hash bytea, client_address text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    who text;
BEGIN
    WITH ended AS (
        DELETE FROM eventlog.console_session s WHERE s.token_hash = console_logout.session_token_hash
        RETURNING s.admin_id, s.expires_at
    )
    SELECT a.username INTO who FROM ended e JOIN eventlog.console_admin a ON a.id = e.admin_id
    WHERE e.expires_at > now();
    IF who IS NULL THEN
        RETURN false;
    END IF;
    INSERT INTO eventlog.console_audit (actor, action, target, client_address)
    VALUES (who, 'logout', who, console_logout.client_address);
    RETURN true;
END
$$;

REVOKE ALL ON FUNCTION eventlog.console_admin_create(text, text, text), eventlog.console_admin_list(),
    eventlog.console_admin_disable(text), eventlog.console_admin_set_password(text, text),
    eventlog.console_login_setting(text), eventlog.console_login(text, text, text, bytea, integer),
    eventlog.console_session_touch(bytea, integer), eventlog.console_logout(bytea, text) FROM PUBLIC;
DO $grants$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_producer') THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON FUNCTION eventlog.console_admin_create(text, text, text), eventlog.console_admin_list(),
        eventlog.console_admin_disable(text), eventlog.console_admin_set_password(text, text) TO eventlog_admin;
    GRANT EXECUTE ON FUNCTION eventlog.console_login_setting(text),
        eventlog.console_login(text, text, text, bytea, integer), eventlog.console_session_touch(bytea, integer),
        eventlog.console_logout(bytea, text) TO eventlog_producer;
END
$grants$;
