-- Two things the relay needs since the delivery review (issue 18).
--
-- The relay reads where the outbox's id sequence stands, so that its claim floor can go down again after the
-- sequence restarts (a restore, `TRUNCATE ... RESTART IDENTITY`, `ALTER SEQUENCE ... RESTART`): every new id is then
-- below the floor, and claims from the floor would find nothing, leaving all delivery to the 5 s sweeps
-- (docs/delivery.md, "The claim floor"). SELECT on a sequence reads its last value; it does not allow nextval().
DO $grants$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_relay') THEN
        RETURN;
    END IF;
    GRANT SELECT ON SEQUENCE eventlog.outbox_id_seq TO eventlog_relay;
END
$grants$;

-- The presence window after a failover, durable (docs/delivery.md, "Failover"). Under asynchronous replication a
-- failover can lose a claim's commit: its rows come back to the outbox although they were delivered. Relays used to
-- check claims for presence for 60 s after *they* lost a session; a relay started after the failover had no such
-- memory and sent the rows again. The relays now record the server's timeline (it changes at every promotion and
-- every point-in-time restore); a relay that connects to a different timeline opens the window here, for every
-- relay. Written with the migration's own timeline, so that a failover before the first relay still counts.
CREATE TABLE eventlog.relay_timeline (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    timeline text NOT NULL,
    suspect_until timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO eventlog.relay_timeline (timeline)
SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN '' ELSE
       pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8) END;
REVOKE ALL ON eventlog.relay_timeline FROM PUBLIC;
DO $grants$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_relay') THEN
        RETURN;
    END IF;
    GRANT SELECT, INSERT, UPDATE ON eventlog.relay_timeline TO eventlog_relay;
END
$grants$;
