#include <fmt/format.h>

#include <eventlog/core/error.hpp>
#include <eventlog/observability/log.hpp>
#include <eventlog/outbox/migrate.hpp>
#include <random>
#include <set>
#include <sstream>

#include "outbox/migrations_embedded.hpp"

namespace eventlog::outbox {
namespace {

// Arbitrary constant: the advisory lock that serialises concurrent `migrate` runs.
constexpr std::int64_t kMigrationLockKey = 0x6576656e746c6f67;  // "eventlog"

std::string Replace(std::string text, std::string_view from, std::string_view to) {
    for (auto pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size())) {
        text.replace(pos, from.size(), to);
    }
    return text;
}

/// Splits a ClickHouse script into statements at ';' ending a line; drops comment-only lines.
std::vector<std::string> SplitStatements(std::string_view script) {
    std::vector<std::string> out;
    std::string current;
    std::istringstream in{std::string(script)};
    std::string line;
    while (std::getline(in, line)) {
        const auto first = line.find_first_not_of(" \t");
        if (first == std::string::npos || line.compare(first, 2, "--") == 0) continue;
        current += line;
        current += '\n';
        const auto last = line.find_last_not_of(" \t\r");
        if (last != std::string::npos && line[last] == ';') {
            current.erase(current.find_last_of(';'));
            out.push_back(std::move(current));
            current.clear();
        }
    }
    if (current.find_first_not_of(" \t\r\n") != std::string::npos) out.push_back(std::move(current));
    return out;
}

}  // namespace

namespace {

std::vector<std::string> ViewsTheRelayCannotReach(clickhouse::Client& ch, const ClickHouseConfig& config) {
    auto views = ch.DependentViews(config.database, config.table);
    if (views.empty()) return views;
    std::random_device seed;
    const std::string probe = fmt::format("eventlog_stage_probe_{:08x}", seed());
    if (ch.ViewsCascade(config.database, probe)) views.clear();
    return views;
}

}  // namespace

MigrationReport MigratePostgres(pg::Connection& postgres) {
    MigrationReport report;
    postgres.Exec(fmt::format("SELECT pg_advisory_lock({})", kMigrationLockKey));
    try {
        postgres.Exec(
            "CREATE SCHEMA IF NOT EXISTS eventlog;"
            "CREATE TABLE IF NOT EXISTS eventlog.schema_migrations ("
            "  name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())");
        std::set<std::string> done;
        const auto applied = postgres.Exec("SELECT name FROM eventlog.schema_migrations");
        for (int i = 0; i < applied.Rows(); ++i) done.emplace(applied.Get(i, 0));
        for (const auto& m : detail::EmbeddedMigrations()) {
            if (m.engine != "postgres") continue;
            const std::string name(m.name);
            if (done.count(name)) {
                ++report.already_applied;
                continue;
            }
            pg::Transaction tx(postgres);
            tx.Exec(m.sql);
            tx.Exec("INSERT INTO eventlog.schema_migrations (name) VALUES ($1)", {name});
            tx.Commit();
            report.applied.push_back("postgres/" + name);
            log::Info("migration_applied", {{"engine", std::string("postgres")}, {"name", name}});
        }
    } catch (...) {
        if (postgres.Healthy()) postgres.Exec(fmt::format("SELECT pg_advisory_unlock({})", kMigrationLockKey));
        throw;
    }
    postgres.Exec(fmt::format("SELECT pg_advisory_unlock({})", kMigrationLockKey));
    return report;
}

MigrationReport MigrateClickHouse(clickhouse::Client& ch, const ClickHouseConfig& config) {
    MigrationReport report;
    const std::string db = clickhouse::QuoteIdentifier(config.database);
    const std::string table = clickhouse::QuoteIdentifier(config.table);
    ch.Execute(fmt::format("CREATE DATABASE IF NOT EXISTS {}", db));
    ch.Execute(fmt::format(
        "CREATE TABLE IF NOT EXISTS {}.eventlog_migrations (name String, target String, applied_at DateTime "
        "DEFAULT now()) ENGINE = MergeTree ORDER BY (target, name)",
        db));
    std::set<std::string> done;
    {
        std::istringstream rows(
            ch.Query(fmt::format("SELECT name FROM {}.eventlog_migrations WHERE target = {} FORMAT TabSeparated", db,
                                 clickhouse::QuoteString(config.table))));
        for (std::string line; std::getline(rows, line);) {
            if (!line.empty()) done.insert(line);
        }
    }
    const bool datetime64 = ch.SupportsDateTime64();
    const bool dedup = ch.SupportsDeduplicationToken();
    // One server: MergeTree under the table's name. A cluster (docs/cluster.md): every statement ON CLUSTER, the
    // shard-local <table>_local replicated through ZooKeeper (path and replica name from each server's macros, as
    // ClickHouse documents), and the Distributed <table> over the shards for reads.
    const bool clustered = !config.cluster.empty();
    const std::string local = clustered ? clickhouse::QuoteIdentifier(config.table + "_local") : table;
    const std::string on_cluster = clustered ? " ON CLUSTER " + clickhouse::QuoteIdentifier(config.cluster) : "";
    const std::string engine =
        clustered ? fmt::format("ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{}.{}_local', '{{replica}}')",
                                config.database, config.table)
                  : "MergeTree";
    const std::string settings = !dedup ? ""
                                        : (clustered ? "SETTINGS replicated_deduplication_window = 1000"
                                                     : "SETTINGS non_replicated_deduplication_window = 1000");
    const std::string distributed =
        clustered ? fmt::format("CREATE TABLE IF NOT EXISTS {0}.{1}{2} AS {0}.{3} ENGINE = Distributed({4}, {5}, {6});",
                                db, table, on_cluster, local, clickhouse::QuoteIdentifier(config.cluster),
                                clickhouse::QuoteIdentifier(config.database),
                                clickhouse::QuoteIdentifier(config.table + "_local"))
                  : "";
    for (const auto& m : detail::EmbeddedMigrations()) {
        if (m.engine != "clickhouse") continue;
        const std::string name(m.name);
        if (done.count(name)) {
            ++report.already_applied;
            continue;
        }
        std::string sql(m.sql);
        sql = Replace(sql, "{database}", db);
        sql = Replace(sql, "{local_table}", local);
        sql = Replace(sql, "{table}", table);
        sql = Replace(sql, "{event_time_type}", datetime64 ? "DateTime64(6, 'UTC')" : "DateTime('UTC')");
        sql = Replace(sql, "{on_cluster}", on_cluster);
        sql = Replace(sql, "{distributed}", distributed);
        sql = Replace(sql, "{table_settings}", settings);
        sql = Replace(sql, "{engine}", engine);  // last: its path holds the server's own {shard} and {replica} macros
        for (const auto& statement : SplitStatements(sql)) ch.Execute(statement);
        ch.Execute(fmt::format("INSERT INTO {}.eventlog_migrations (name, target) VALUES ({}, {})", db,
                               clickhouse::QuoteString(name), clickhouse::QuoteString(config.table)));
        report.applied.push_back("clickhouse/" + name);
        log::Info("migration_applied", {{"engine", std::string("clickhouse")},
                                        {"name", name},
                                        {"table", config.database + "." + config.table},
                                        {"cluster", config.cluster},
                                        {"event_time_type", std::string(datetime64 ? "DateTime64(6)" : "DateTime")}});
    }
    report.views_not_run = ViewsTheRelayCannotReach(ch, config);
    return report;
}

MigrationReport Migrate(pg::Connection& postgres, clickhouse::Client& clickhouse, const Config& config) {
    MigrationReport report = MigratePostgres(postgres);
    MigrationReport ch = MigrateClickHouse(clickhouse, config.clickhouse);
    report.applied.insert(report.applied.end(), ch.applied.begin(), ch.applied.end());
    report.already_applied += ch.already_applied;
    report.views_not_run = std::move(ch.views_not_run);
    return report;
}

}  // namespace eventlog::outbox
