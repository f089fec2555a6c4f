#include "relay/detail/clickhouse_sink.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <eventlog/core/error.hpp>
#include <eventlog/observability/log.hpp>
#include <set>
#include <sstream>
#include <unordered_set>

namespace eventlog::relay::detail {
namespace {

constexpr std::string_view kStagePrefix = "eventlog_stage_";
/// Bound on one presence query's SQL text; ClickHouse's default max_query_size is 262,144 bytes.
constexpr std::size_t kMaxPresenceQueryBytes = std::size_t{128} * 1024;

std::string RandomNonce() {
    const std::string id = Uuid::Random().ToString();
    return id.substr(0, 8);
}

}  // namespace

ClickHouseSink::ClickHouseSink(const Config& config, const Probe& probe)
    : config_(config), probe_(probe), client_(clickhouse::OptionsFrom(config.clickhouse)) {}

std::string ClickHouseSink::Qualified(const std::string& table) const {
    return clickhouse::QuoteIdentifier(config_.clickhouse.database) + "." + clickhouse::QuoteIdentifier(table);
}

std::string ClickHouseSink::Prefix() const { return std::string(kStagePrefix) + outbox_id_ + "_"; }

void ClickHouseSink::Reset() noexcept {
    encoder_.reset();
    stage_.clear();
}

void ClickHouseSink::Open(const std::string& outbox_id, int owner) {
    Reset();
    outbox_id_ = outbox_id;
    const auto columns = client_.DescribeTable(config_.clickhouse.database, config_.clickhouse.table);
    const bool has_event_id =
        std::any_of(columns.begin(), columns.end(), [](const auto& c) { return c.name == "event_id"; });
    if (!has_event_id) {
        throw ConfigError(
            fmt::format("clickhouse: table {}.{} has no event_id column; the relay needs it to "
                        "deliver exactly once",
                        config_.clickhouse.database, config_.clickhouse.table));
    }
    auto encoder = clickhouse::RowBinaryEncoder::ForColumns(columns);
    const std::string stage = fmt::format("{}{}_{}", Prefix(), owner, RandomNonce());
    const std::string target = Qualified(config_.clickhouse.table);
    // Shaped like the target (DEFAULT and MATERIALIZED expressions included, so they are computed exactly as a
    // direct insert would); the view forwards each inserted block into the target within the same INSERT. It
    // names every stored column: a view's block reaches the target as it is, without defaults added (18.16).
    std::string stored;
    for (const auto& c : columns) {
        if (c.default_kind == "ALIAS" || c.default_kind == "EPHEMERAL") continue;
        stored += (stored.empty() ? "" : ", ") + clickhouse::QuoteIdentifier(c.name);
    }
    client_.Execute(fmt::format("CREATE TABLE {} AS {} ENGINE = Null", Qualified(stage), target));
    client_.Execute(fmt::format("CREATE MATERIALIZED VIEW {} TO {} AS SELECT {} FROM {}", Qualified(stage + "_mv"),
                                target, stored, Qualified(stage)));
    encoder_.emplace(std::move(encoder));
    stage_ = stage;
    // The target's own materialized views run for the rows the stage's view pushes into it only where the server
    // cascades views (not 18.16): said by name at every session start (docs/delivery.md).
    if (auto views = client_.DependentViews(config_.clickhouse.database, config_.clickhouse.table);
        !views.empty() && !client_.ViewsCascade(config_.clickhouse.database, "eventlog_stage_probe_" + RandomNonce())) {
        std::string names;
        for (const auto& v : views) names += (names.empty() ? "" : ", ") + v;
        log::Warning("target_views_not_run",
                     {{"views", names},
                      {"server_version", client_.Version().text},
                      {"hint", std::string("this server does not run a table's materialized views for rows a view "
                                           "pushes into it, and the relay delivers through one (its stage): these "
                                           "views do not see delivered events (docs/delivery.md)")}});
    }
    log::Info("relay_target", {{"table", config_.clickhouse.database + "." + config_.clickhouse.table},
                               {"columns", encoder_->ColumnList()},
                               {"stage", stage_},
                               {"server_version", client_.Version().text}});
}

void ClickHouseSink::Insert(std::vector<PendingRow>& rows, std::vector<PendingRow>& dead) {
    if (!IsOpen()) throw TransientError("clickhouse: the session's stage is not open", false);
    std::string body;
    body.reserve(rows.size() * 384);
    std::vector<PendingRow> sendable;
    sendable.reserve(rows.size());
    for (auto& r : rows) {
        try {
            encoder_->Append(r.event, r.batch_id, body);
            sendable.push_back(std::move(r));
        } catch (const RejectedError& e) {
            // Unrepresentable in the target column: dead-letter with the reason, never send it wrong.
            log::Warning("event_unencodable",
                         {{"event_id", r.event.event_id.ToString()}, {"error", std::string(e.what())}});
            r.attempts = std::max(r.attempts, 1);
            r.error = e.what();
            dead.push_back(std::move(r));
        }
    }
    rows = std::move(sendable);
    if (rows.empty()) return;
    clickhouse::InsertOptions options;
    options.query_id = fmt::format("{}-{}", rows.front().batch_id.ToString(), ++send_seq_);
    probe_.At("before_insert");
    client_.Insert(stage_, encoder_->ColumnList(), body, options);
}

std::vector<PendingRow> ClickHouseSink::Missing(const std::vector<PendingRow>& rows) {
    if (rows.empty()) return {};
    if (!encoder_)
        encoder_.emplace(clickhouse::RowBinaryEncoder::ForColumns(
            client_.DescribeTable(config_.clickhouse.database, config_.clickhouse.table)));
    // A DateTime/DateTime64 event_date_time leads our table's sort key: look rows up by their exact times.
    const bool has_time = encoder_->EventTimeLiteral(0).has_value();
    const std::string target = Qualified(config_.clickhouse.table);
    const std::vector<std::pair<std::string, std::string>> settings = {
        {"max_execution_time",
         std::to_string(std::max<long long>(1, config_.clickhouse.send_receive_timeout.count() / 1000))},
        {"timeout_overflow_mode", "throw"}};
    std::unordered_set<std::string> present;
    std::size_t i = 0;
    while (i < rows.size()) {
        std::set<std::string> times;
        std::string ids;
        std::size_t bytes = 0;
        for (; i < rows.size() && bytes < kMaxPresenceQueryBytes; ++i) {
            const auto& event = rows[i].event;
            std::optional<std::string> time;
            if (has_time) {
                time = encoder_->EventTimeLiteral(event.event_date_time_us);
                if (!time) continue;  // outside the column's range: never stored, so missing
                if (times.insert(*time).second) bytes += time->size() + 1;
            }
            if (!ids.empty()) ids += ',';
            ids += '\'' + event.event_id.ToString() + '\'';
            bytes += 39;
        }
        if (ids.empty()) continue;
        std::string time_filter;
        if (has_time) {
            time_filter = "event_date_time IN (";
            for (const auto& t : times) {
                if (time_filter.back() != '(') time_filter += ',';
                time_filter += t;
            }
            time_filter += ") AND ";
        }
        probe_.At("before_presence_query");
        const std::string body = client_.Query(
            fmt::format("SELECT DISTINCT toString(event_id) FROM {} WHERE {}event_id IN ({}) FORMAT TabSeparated",
                        target, time_filter, ids),
            settings);
        std::istringstream lines(body);
        for (std::string line; std::getline(lines, line);) present.insert(line);
    }
    std::vector<PendingRow> missing;
    for (const auto& r : rows) {
        if (!present.count(r.event.event_id.ToString())) missing.push_back(r);
    }
    return missing;
}

std::vector<std::string> ClickHouseSink::StageTables(const std::string& name_prefix) {
    const std::string body = client_.Query(fmt::format(
        "SELECT name FROM system.tables WHERE database = {} AND substring(name, 1, {}) = {} FORMAT TabSeparated",
        clickhouse::QuoteString(config_.clickhouse.database), name_prefix.size(),
        clickhouse::QuoteString(name_prefix)));
    std::vector<std::string> names;
    std::istringstream lines(body);
    for (std::string line; std::getline(lines, line);) {
        if (!line.empty()) names.push_back(line);
    }
    return names;
}

void ClickHouseSink::Drop(const std::string& table) {
    // Modern servers (Atomic databases) drop lazily unless told to wait for the queries using the table.
    const bool sync = client_.Version().AtLeast(20, 5);
    client_.Execute(fmt::format("DROP TABLE IF EXISTS {}{}", Qualified(table), sync ? " SYNC" : ""));
}

void ClickHouseSink::Fence(int owner) {
    auto tables = StageTables(Prefix() + std::to_string(owner) + "_");
    // The stages first (this is what waits for and then refuses inserts), then their views.
    std::stable_partition(tables.begin(), tables.end(),
                          [](const std::string& t) { return t.size() < 3 || t.compare(t.size() - 3, 3, "_mv") != 0; });
    for (const auto& t : tables) Drop(t);
    if (!tables.empty()) log::Info("stage_fenced", {{"owner", static_cast<std::int64_t>(owner)}});
}

std::vector<int> ClickHouseSink::StagedOwners() {
    const std::string prefix = Prefix();
    std::set<int> owners;
    for (const auto& name : StageTables(prefix)) {
        int owner = 0;
        const char* begin = name.data() + prefix.size();
        const char* end = name.data() + name.size();
        auto [p, ec] = std::from_chars(begin, end, owner);
        if (ec == std::errc() && p != begin && p < end && *p == '_') owners.insert(owner);
    }
    return {owners.begin(), owners.end()};
}

void ClickHouseSink::DropOwnStage() noexcept {
    if (stage_.empty()) return;
    try {
        Drop(stage_);
        Drop(stage_ + "_mv");
    } catch (const Error& e) {
        log::Warning("stage_drop_failed", {{"stage", stage_}, {"error", std::string(e.what())}});
    }
    stage_.clear();
}

}  // namespace eventlog::relay::detail
