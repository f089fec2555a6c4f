-- The demo users table (the seed's users API) gets the rules the HTTP route applies, in the database (issue 20):
-- create_user() is callable by any producer role directly, and the table had no length or format rule at all. The
-- email is unique regardless of case (the route lowers the domain only, as Django's normalize_email does, so
-- `Ann@example.com` and `ann@example.com` were two users of one mailbox). NOT VALID: existing rows are not scanned.
-- An existing pair of emails that differ only in case makes this migration fail with a unique violation naming the
-- index: merge or rename one of them, then run `eventlog migrate` again.
ALTER TABLE eventlog_demo.users
    ADD CONSTRAINT "email: expected an email address of at most 254 bytes"
        CHECK (pg_catalog.octet_length(email) <= 254
               AND email ~ '^[^@[:space:][:cntrl:]]+@[^@[:space:][:cntrl:]]+$') NOT VALID,
    ADD CONSTRAINT "first_name: expected at most 150 bytes" CHECK (pg_catalog.octet_length(first_name) <= 150)
        NOT VALID,
    ADD CONSTRAINT "last_name: expected at most 150 bytes" CHECK (pg_catalog.octet_length(last_name) <= 150) NOT VALID;
CREATE UNIQUE INDEX users_email_any_case ON eventlog_demo.users (pg_catalog.lower(email));
