#pragma once

// Reads event_log in ClickHouse for the API's status lookup and `wait=visible`, within bounds.

#include <cstddef>
#include <cstdint>
#include <eventlog/clickhouse/client.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace eventlog::http::detail {

/// Reads event_log in ClickHouse for the status lookup and for `wait=visible`. Every query is bounded (issue 20:
/// event_log has no index on event_id, and a lookup scanned all of it): at most `max_rows` rows read and
/// kLookupSeconds of execution, past which ClickHouse stops it with an error. Its clients are not thread-safe each,
/// so one is checked out per query and kept for reuse. Thread-safe; not copyable.
class EventLogReader {
public:
    /// The most a lookup runs in ClickHouse (max_execution_time).
    static constexpr int kLookupSeconds = 5;

    EventLogReader(clickhouse::ClientOptions options, const std::string& table, std::uint64_t max_rows);
    EventLogReader(const EventLogReader&) = delete;
    EventLogReader& operator=(const EventLogReader&) = delete;

    /// The earliest inserted_at of `event_id` as ClickHouse prints it (UTC), nullopt when event_log does not hold it.
    std::optional<std::string> InsertedAt(const std::string& event_id);

    /// Those of `event_ids` (canonical UUIDs) whose event_date_time lies within [from_s, to_s] (seconds since the
    /// epoch) that event_log holds, asked kIdsPerQuery at a time. The time range leads event_log's sort key, so a
    /// query reads only the parts of that range, not the table.
    std::set<std::string> Present(const std::vector<std::string>& event_ids, std::int64_t from_s, std::int64_t to_s);

private:
    // 2,000 quoted UUIDs are about 80 KB of SQL, well under ClickHouse's max_query_size (256 KiB).
    static constexpr std::size_t kIdsPerQuery = 2'000;
    static constexpr std::size_t kMaxIdle = 8;

    /// Runs `sql` on an idle client (a new one when none is idle) and returns the body.
    std::string Query(const std::string& sql);

    clickhouse::ClientOptions options_;
    std::string table_;
    std::vector<std::pair<std::string, std::string>> settings_;  // the bounds, sent with every query
    std::mutex mutex_;
    std::vector<std::unique_ptr<clickhouse::Client>> idle_;
};

}  // namespace eventlog::http::detail
