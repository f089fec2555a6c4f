#pragma once

// Reads event_log in ClickHouse for the API's status lookup and `wait=visible`, and for the console's chart and
// events pages, within bounds.

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

    /// Delivered events of one minute, for the console's chart.
    struct Minute {
        std::int64_t start_s{0};  ///< The minute's start, seconds since the epoch.
        std::int64_t delivered{0};
        double avg_lag_s{0};  ///< Mean of inserted_at - event_date_time (0 without inserted_at).
        double max_lag_s{0};
    };
    /// Delivered per minute over the hour before `now_s`.
    struct Chart {
        bool by_insert_time{false};   ///< event_log has inserted_at: minutes of insertion, with lag. Otherwise
                                      ///< minutes of event_date_time and no lag.
        std::vector<Minute> minutes;  ///< Only minutes with deliveries, oldest first.
    };
    /// The chart's data: by inserted_at when event_log has it (looked up once in system.columns), only among events
    /// whose event_date_time is within a day before the hour (the sort key bounds the scan), else by event_date_time.
    Chart DeliveredPerMinute(std::int64_t now_s);

    /// One row of event_log, as the console shows it.
    struct Row {
        std::string event_id, event_type, event_date_time, environment, event_context, trace_id, inserted_at;
        std::int64_t event_time_s{0};  ///< event_date_time in whole seconds since the epoch.
    };
    /// What the console's events page asks for. Empty strings match all.
    struct Filter {
        std::string event_type;  ///< Equal to.
        std::string trace_id;    ///< Equal to.
        std::string event_id;    ///< A canonical UUID.
        std::int64_t from_s{0};  ///< event_date_time >= from_s.
        std::int64_t to_s{0};    ///< event_date_time < to_s.
        std::size_t limit{50};
        std::size_t offset{0};
    };
    /// Events matching `filter`, newest event_date_time first; `limit` + `offset` at most 10,050.
    std::vector<Row> Events(const Filter& filter);

    /// GET /ping on a client; throws when ClickHouse does not answer.
    void Ping();

private:
    // 2,000 quoted UUIDs are about 80 KB of SQL, well under ClickHouse's max_query_size (256 KiB).
    static constexpr std::size_t kIdsPerQuery = 2'000;
    static constexpr std::size_t kMaxIdle = 8;

    /// True when event_log has an inserted_at column (looked up once).
    bool HasInsertedAt();
    /// Runs `sql` on an idle client (a new one when none is idle) and returns the body.
    std::string Query(const std::string& sql);

    clickhouse::ClientOptions options_;
    std::string table_;
    std::string database_name_, table_name_;
    std::optional<bool> has_inserted_at_;                        // guarded by mutex_
    std::vector<std::pair<std::string, std::string>> settings_;  // the bounds, sent with every query
    std::mutex mutex_;
    std::vector<std::unique_ptr<clickhouse::Client>> idle_;
};

}  // namespace eventlog::http::detail
