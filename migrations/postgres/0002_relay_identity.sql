-- One identifier per outbox, shared by all its relays. The relays name their ClickHouse staging tables after it,
-- so that relays of different outboxes writing into the same ClickHouse database never fence each other's
-- inserts (docs/delivery.md, "The fence").
CREATE TABLE eventlog.relay_identity (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    outbox_id uuid    NOT NULL DEFAULT gen_random_uuid()
);
INSERT INTO eventlog.relay_identity DEFAULT VALUES;
