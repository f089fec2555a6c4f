-- Where a chunk's rows go on a ClickHouse cluster (docs/cluster.md, "Delivery to a cluster").
--
-- A relay that delivers to a cluster writes each claim into one node's shard-local table, through its stage on that
-- node. The fence and the presence check of a chunk whose insert is in doubt must run on the node its rows were sent
-- to, so the node is part of the record, written in the claim's transaction before any row is sent:
--   NULL        one server (CLICKHOUSE_CLUSTER unset): everything as before;
--   'host:port' that node (an entry of CLICKHOUSE_SHARDS): fenced, checked and re-sent there, never elsewhere;
--   '*'         any node: a claim made while presence is checked first (after a failover, when a lost claim's rows
--               may already be on any shard). Fenced and checked on every node; its recovery waits for all of them.
ALTER TABLE eventlog.outbox_chunk ADD COLUMN target text;

DO $grants$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_relay') THEN
        RETURN;
    END IF;
    GRANT UPDATE (target) ON eventlog.outbox_chunk TO eventlog_relay;
END
$grants$;
