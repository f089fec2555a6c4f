-- A relay recovering a dead owner whose advisory lock a stranger holds moves that owner's records to its own key
-- (docs/delivery.md, "Recovery"): it needs to change the owner column, and nothing else.
DO $grants$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_relay') THEN
        GRANT UPDATE (owner) ON eventlog.delivery TO eventlog_relay;
    END IF;
END
$grants$;
