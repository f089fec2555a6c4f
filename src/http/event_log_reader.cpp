#include "http/event_log_reader.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <string_view>

namespace eventlog::http::detail {

EventLogReader::EventLogReader(clickhouse::ClientOptions options, const std::string& table, std::uint64_t max_rows)
    : options_(std::move(options)),
      table_(clickhouse::QuoteIdentifier(options_.database) + "." + clickhouse::QuoteIdentifier(table)),
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
