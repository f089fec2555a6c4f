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
