#pragma once

#include <eventlog/clickhouse/client.hpp>
#include <eventlog/core/config.hpp>
#include <eventlog/pg/connection.hpp>
#include <string>
#include <vector>

namespace eventlog::outbox {

/// What one Migrate() call did.
struct MigrationReport {
    std::vector<std::string> applied;  ///< "postgres/0001_outbox", ... newly applied this call.
    int already_applied{0};            ///< Migrations found recorded and skipped.
    /// Materialized views on the target table that rows the relay delivers do not reach: the server does not run a
    /// table's views for rows another view pushes into it (18.16), and the relay writes through a view (its stage).
    std::vector<std::string> views_not_run;
};

/// Applies the PostgreSQL migrations (recorded in eventlog.schema_migrations, serialised by an
/// advisory lock so concurrent callers are safe) and the ClickHouse ones (database and event_log
/// table named by the configuration; recorded in `<database>.eventlog_migrations`). Idempotent.
MigrationReport Migrate(pg::Connection& postgres, clickhouse::Client& clickhouse, const Config& config);

/// Only the PostgreSQL half of Migrate().
MigrationReport MigratePostgres(pg::Connection& postgres);

/// Only the ClickHouse half of Migrate().
MigrationReport MigrateClickHouse(clickhouse::Client& clickhouse, const ClickHouseConfig& config);

}  // namespace eventlog::outbox
