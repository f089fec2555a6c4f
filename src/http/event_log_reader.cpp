#include "http/event_log_reader.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <string_view>

namespace eventlog::http::detail {

EventLogReader::EventLogReader(clickhouse::ClientOptions options, const std::string& table, std::uint64_t max_rows)
    : options_(std::move(options)),
      table_(clickhouse::QuoteIdentifier(options_.database) + "." + clickhouse::QuoteIdentifier(table)),
      database_name_(options_.database),
      table_name_(table),
      settings_{{"max_execution_time", std::to_string(kLookupSeconds)},
                {"timeout_overflow_mode", "throw"},
                {"max_rows_to_read", std::to_string(max_rows)},
                {"read_overflow_mode", "throw"}} {}

std::optional<std::string> EventLogReader::InsertedAt(const std::string& event_id) {
    const std::string found =
        Query("SELECT toString(min(inserted_at), 'UTC') FROM " + table_ + " WHERE event_id = toUUID(" +
              clickhouse::QuoteString(event_id) + ") HAVING count() > 0 FORMAT TabSeparated");
    std::string_view inserted_at(found);
    while (!inserted_at.empty() && (inserted_at.back() == '\n' || inserted_at.back() == '\r')) {
        inserted_at.remove_suffix(1);
    }
    if (inserted_at.empty()) return std::nullopt;
    return std::string(inserted_at);
}

std::set<std::string> EventLogReader::Present(const std::vector<std::string>& event_ids, std::int64_t from_s,
                                              std::int64_t to_s) {
    std::set<std::string> present;
    for (std::size_t i = 0; i < event_ids.size(); i += kIdsPerQuery) {
        std::string ids;
        for (std::size_t j = i; j < std::min(event_ids.size(), i + kIdsPerQuery); ++j) {
            if (!ids.empty()) ids += ',';
            ids += clickhouse::QuoteString(event_ids[j]);
        }
        const std::string body = Query(
            fmt::format("SELECT DISTINCT toString(event_id) FROM {} WHERE event_date_time >= toDateTime({}) AND "
                        "event_date_time < toDateTime({}) + 1 AND event_id IN ({}) FORMAT TabSeparated",
                        table_, std::max<std::int64_t>(from_s, 0), std::min<std::int64_t>(to_s, 4'294'967'294), ids));
        std::size_t start = 0;
        while (start < body.size()) {
            auto end = body.find('\n', start);
            if (end == std::string::npos) end = body.size();
            if (end > start) present.insert(body.substr(start, end - start));
            start = end + 1;
        }
    }
    return present;
}

namespace {

/// The fields of one TabSeparated line, unescaped (\\ \t \n \r \0 \' \b \f).
std::vector<std::string> TsvFields(std::string_view line) {
    std::vector<std::string> fields(1);
    for (std::size_t i = 0; i < line.size(); ++i) {
        const char c = line[i];
        if (c == '\t') {
            fields.emplace_back();
        } else if (c == '\\' && i + 1 < line.size()) {
            const char e = line[++i];
            fields.back().push_back(e == 't'   ? '\t'
                                    : e == 'n' ? '\n'
                                    : e == 'r' ? '\r'
                                    : e == '0' ? '\0'
                                    : e == 'b' ? '\b'
                                    : e == 'f' ? '\f'
                                               : e);
        } else {
            fields.back().push_back(c);
        }
    }
    return fields;
}

std::vector<std::vector<std::string>> TsvRows(const std::string& body) {
    std::vector<std::vector<std::string>> rows;
    std::size_t start = 0;
    while (start < body.size()) {
        auto end = body.find('\n', start);
        if (end == std::string::npos) end = body.size();
        if (end > start) rows.push_back(TsvFields(std::string_view(body).substr(start, end - start)));
        start = end + 1;
    }
    return rows;
}

}  // namespace

bool EventLogReader::HasInsertedAt() {
    {
        const std::lock_guard lock(mutex_);
        if (has_inserted_at_) return *has_inserted_at_;
    }
    // Once per process: 18.16 and 23.x alike list it in system.columns (our migration has it; an older table may not).
    clickhouse::Client client(options_);
    bool found = false;
    for (const auto& column : client.DescribeTable(database_name_, table_name_)) {
        if (column.name == "inserted_at") found = true;
    }
    const std::lock_guard lock(mutex_);
    has_inserted_at_ = found;
    return found;
}

EventLogReader::Chart EventLogReader::DeliveredPerMinute(std::int64_t now_s) {
    const bool by_insert_time = HasInsertedAt();
    const std::int64_t from = std::max<std::int64_t>(now_s - 3600, 0);
    std::string sql;
    if (by_insert_time) {
        sql = fmt::format(
            "SELECT toUInt32(toStartOfMinute(inserted_at)) AS m, count(), "
            "avg(toInt64(toUInt32(inserted_at)) - toInt64(toUInt32(event_date_time))), "
            "max(toInt64(toUInt32(inserted_at)) - toInt64(toUInt32(event_date_time))) FROM {} "
            "WHERE event_date_time >= toDateTime({}) AND inserted_at >= toDateTime({}) AND inserted_at < "
            "toDateTime({}) "
            "GROUP BY m ORDER BY m LIMIT 61 FORMAT TabSeparated",
            table_, std::max<std::int64_t>(from - 86'400, 0), from, now_s + 60);
    } else {
        sql = fmt::format(
            "SELECT toUInt32(toStartOfMinute(event_date_time)) AS m, count(), 0, 0 FROM {} "
            "WHERE event_date_time >= toDateTime({}) AND event_date_time < toDateTime({}) "
            "GROUP BY m ORDER BY m LIMIT 61 FORMAT TabSeparated",
            table_, from, now_s + 60);
    }
    Chart chart;
    chart.by_insert_time = by_insert_time;
    for (const auto& row : TsvRows(Query(sql))) {
        if (row.size() < 4) continue;
        chart.minutes.push_back({std::stoll(row[0]), std::stoll(row[1]), std::stod(row[2]), std::stod(row[3])});
    }
    return chart;
}

std::vector<EventLogReader::Row> EventLogReader::Events(const Filter& filter) {
    std::string where = fmt::format("event_date_time >= toDateTime({}) AND event_date_time < toDateTime({})",
                                    std::clamp<std::int64_t>(filter.from_s, 0, 4'294'967'295),
                                    std::clamp<std::int64_t>(filter.to_s, 0, 4'294'967'295));
    if (!filter.event_type.empty()) where += " AND event_type = " + clickhouse::QuoteString(filter.event_type);
    if (!filter.trace_id.empty()) where += " AND trace_id = " + clickhouse::QuoteString(filter.trace_id);
    if (!filter.event_id.empty()) where += " AND event_id = toUUID(" + clickhouse::QuoteString(filter.event_id) + ")";
    const bool inserted_at = HasInsertedAt();
    const std::string sql = fmt::format(
        "SELECT toString(event_id), event_type, toString(event_date_time), environment, event_context, trace_id, {}, "
        "toUInt32(event_date_time) "
        "FROM {} WHERE {} ORDER BY event_date_time DESC, event_id LIMIT {} OFFSET {} FORMAT TabSeparated",
        inserted_at ? "toString(inserted_at)" : "''", table_, where, std::min<std::size_t>(filter.limit, 500),
        std::min<std::size_t>(filter.offset, 10'000));
    std::vector<Row> out;
    for (auto& row : TsvRows(Query(sql))) {
        if (row.size() < 8) continue;
        out.push_back({std::move(row[0]), std::move(row[1]), std::move(row[2]), std::move(row[3]), std::move(row[4]),
                       std::move(row[5]), std::move(row[6]), std::stoll(row[7])});
    }
    return out;
}

void EventLogReader::Ping() { Query("SELECT 1 FORMAT TabSeparated"); }

std::string EventLogReader::Query(const std::string& sql) {
    std::unique_ptr<clickhouse::Client> client;
    {
        const std::lock_guard lock(mutex_);
        if (!idle_.empty()) {
            client = std::move(idle_.back());
            idle_.pop_back();
        }
    }
    if (!client) client = std::make_unique<clickhouse::Client>(options_);
    std::string body = client->Query(sql, settings_);  // a client that threw is dropped, not reused
    const std::lock_guard lock(mutex_);
    if (idle_.size() < kMaxIdle) idle_.push_back(std::move(client));
    return body;
}

}  // namespace eventlog::http::detail
