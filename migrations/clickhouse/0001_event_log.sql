-- The analytical event log. Placeholders: {database}, {table}, {event_time_type} (DateTime64(6, 'UTC')
-- where the server has it, DateTime('UTC') on older servers) and {table_settings} (deduplication
-- window on servers with insert_deduplication_token). With CLICKHOUSE_CLUSTER (docs/cluster.md): {on_cluster} runs
-- each statement on every node, {local_table} is the shard-local table <table>_local, {engine} is
-- ReplicatedMergeTree with its ZooKeeper path and replica name from the {shard} and {replica} macros, and
-- {distributed} adds the Distributed table <table> over the shards; on one server they are empty, <table> and
-- MergeTree. See docs/schema.md.
CREATE DATABASE IF NOT EXISTS {database}{on_cluster};
CREATE TABLE IF NOT EXISTS {database}.{local_table}{on_cluster} (
    event_id         UUID,
    event_type       String,
    event_date_time  {event_time_type},
    environment      String,
    event_context    String,
    metadata_version UInt64 DEFAULT 1,
    trace_id         String DEFAULT '',
    batch_id         UUID,
    inserted_at      DateTime DEFAULT now()
) ENGINE = {engine}
PARTITION BY toYYYYMM(event_date_time)
ORDER BY (event_date_time, event_type)
{table_settings};
{distributed}
