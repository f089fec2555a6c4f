-- The claim floor, shared (docs/delivery.md, "The claim floor"). A relay session that starts (a new process, a
-- reconnect) used to begin at floor 0, and its first claim walked every dead index entry a held snapshot keeps
-- in the outbox. Sessions now publish the floor they reach here, and a new session starts from the highest one
-- published. Safe: a floor only says where a claim starts to look; a row below it (a restore, a failover that
-- lost commits, a claim rolled back) is found by the periodic sweep from the head, and `relay --drain` ends only
-- on an empty sweep. A sequence, as eventlog.relay_wakeup (0006): setval() is not transactional and leaves no dead
-- row behind. Two relays may publish at once and a lower value may win; that only makes a new session look from
-- a little further back.
CREATE SEQUENCE eventlog.relay_floor MINVALUE 0 START 0;

REVOKE ALL ON SEQUENCE eventlog.relay_floor FROM PUBLIC;
DO $grants$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_relay') THEN
        RETURN;
    END IF;
    -- The relay publishes the floor (setval needs UPDATE) and reads it.
    GRANT SELECT, UPDATE ON SEQUENCE eventlog.relay_floor TO eventlog_relay;
END
$grants$;
