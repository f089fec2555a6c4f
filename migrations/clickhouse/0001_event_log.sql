-- The analytical event log. Placeholders: {database}, {table}, {event_time_type} (DateTime64(6, 'UTC')
-- where the server has it, DateTime('UTC') on older servers) and {table_settings} (deduplication
-- window on servers with insert_deduplication_token). See docs/schema.md.
CREATE DATABASE IF NOT EXISTS {database};
CREATE TABLE IF NOT EXISTS {database}.{table} (
    event_id         UUID,
    event_type       String,
    event_date_time  {event_time_type},
    environment      String,
    event_context    String,
    metadata_version UInt64 DEFAULT 1,
    trace_id         String DEFAULT '',
    batch_id         UUID,
    inserted_at      DateTime DEFAULT now()
) ENGINE = MergeTree
PARTITION BY toYYYYMM(event_date_time)
ORDER BY (event_date_time, event_type)
{table_settings};
