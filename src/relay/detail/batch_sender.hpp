#pragma once

#include <chrono>
#include <cstdint>
#include <eventlog/core/config.hpp>
#include <eventlog/core/error.hpp>
#include <functional>
#include <vector>

#include "relay/detail/clickhouse_sink.hpp"
#include "relay/detail/pending_row.hpp"

namespace eventlog::relay::detail {

/// Counters the sender adds to.
struct SendCounters {
    std::int64_t retries{0};  ///< Failed attempts that were retried.
    std::int64_t sent{0};     ///< Rows ClickHouse confirmed (not counting rows found already present).
};

/// Hooks the sender needs from the relay.
struct SenderHooks {
    /// Sleeps up to the duration; false when the relay must stop now (abort, or the stop bound passed).
    std::function<bool(std::chrono::milliseconds)> sleep;
    /// The backoff before the `failures`-th retry (failures counts from 0).
    std::function<std::chrono::milliseconds(int failures)> backoff;
    /// True while this relay's PostgreSQL session (its ownership of the rows) is alive.
    std::function<bool()> session_alive;
    /// Told of every failed attempt that does not dead-letter its row (`failures`: consecutive failures of the chunk,
    /// this one included); may be empty.
    std::function<void(const Error& error, int failures)> on_failure;
};

/// Delivers rows through a ClickHouseSink: splits them into inserts of at most CLICKHOUSE_BATCH_SIZE rows,
/// reconciles after an ambiguous failure, bisects rejected chunks and dead-letters single rows. It keeps every
/// row in an explicit work list until ClickHouse confirmed it or it is dead-lettered, so an exception can never
/// leave rows unaccounted for: whatever it throws, the caller must not acknowledge, and the rows stay in their
/// delivery records for recovery. Not thread-safe.
class BatchSender {
public:
    BatchSender(ClickHouseSink& sink, const RelayConfig& config, SenderHooks hooks, SendCounters& counters);

    /// Delivers `rows` (first asking ClickHouse which are already present when `reconcile_first`) and returns
    /// those that went to the dead letters. Throws, leaving everything to recovery, on a lost session, an
    /// in-doubt insert, a configuration error, a fatal error or a stop.
    std::vector<PendingRow> Deliver(std::vector<PendingRow> rows, bool reconcile_first);

private:
    ClickHouseSink& sink_;
    const RelayConfig& config_;
    SenderHooks hooks_;
    SendCounters& counters_;
};

}  // namespace eventlog::relay::detail
