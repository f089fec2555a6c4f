#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <eventlog/core/config.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/observability/metrics.hpp>
#include <eventlog/relay/relay.hpp>
#include <vector>

#include "relay/detail/pending_row.hpp"
#include "relay/detail/retry_policy.hpp"

namespace eventlog::sentry {
struct Report;
}

namespace eventlog::relay::detail {

/// Watches the delivery loop from outside it: the loop tells it what happened (a session up or lost, work begun, an
/// acknowledgement, a failure and the decision taken), and it keeps the metrics, the Sentry reports, the error log
/// lines about failures and the stall clock behind Relay::GetHealth(). The loop keeps no meter, report or health
/// state of its own. The notifications come from the loop's thread; GetHealth() may be called from any thread.
class LoopObserver {
public:
    /// With `registry`, registers the eventlog_relay_* metrics there; with `sentry`, reports to it. Both may be null
    /// and must outlive the observer.
    LoopObserver(const RelayConfig& config, metrics::Registry* registry, sentry::SentryClient* sentry);

    /// The session (PostgreSQL and the ClickHouse stage) is up, or was lost.
    void SessionUp() noexcept { connected_.store(true); }
    void SessionLost() noexcept { connected_.store(false); }
    /// The relay only watches the outbox's id sequence (true) or has stopped doing so (false).
    void Resting(bool resting) noexcept { resting_.store(resting); }
    /// Work began or goes on (a claim with rows, a recovery, a failure): starts the stall clock unless it runs.
    void Busy() noexcept;
    /// Nothing pending and nothing held: stops the stall clock.
    void Idle() noexcept { busy_since_.store(0); }

    /// True when acknowledgements should carry the rows' write times (for the lag histogram).
    bool WantsLags() const noexcept { return lag_ != nullptr; }
    /// `records` delivery records of `delivered` events were acknowledged (`outcome`: "delivered" or "recovered");
    /// `enqueued_us`: the rows' write times in µs since the epoch, where known (0: unknown).
    void Acknowledged(std::int64_t delivered, std::int64_t records, const char* outcome,
                      const std::vector<std::int64_t>& enqueued_us);
    /// A claim's inserts took `seconds` from its rows in hand to the last one confirmed.
    void Inserted(double seconds);
    /// Rows went to the dead letters (reported once per fingerprint and minute by the Sentry client).
    void DeadLettered(const std::vector<PendingRow>& dead) const;
    /// An insert attempt failed `failures` times in a row and is retried (the batch sender's view).
    void SendFailed(const Error& error, int failures) const;
    /// A step of the loop failed with `error`, and the loop does `action` about it; `failures` counts the loop's
    /// consecutive failures before this one. Logs the line for it and reports what deserves a report.
    void LoopFailed(const Error& error, LoopAction action, int failures);

    /// The relay's state for health checks; a stall starting or ending is logged (and a start reported) by whichever
    /// caller observes it first. Thread-safe, no I/O.
    Health GetHealth() const;

private:
    using Clock = std::chrono::steady_clock;
    void Report(const sentry::Report& report) const;

    const RelayConfig& config_;
    sentry::SentryClient* sentry_;
    metrics::Counter* delivered_{nullptr};
    metrics::CounterFamily* batches_{nullptr};
    metrics::Histogram* lag_{nullptr};
    metrics::Histogram* insert_{nullptr};
    metrics::CounterFamily* retries_{nullptr};
    metrics::Gauge* last_success_{nullptr};
    std::atomic<bool> connected_{false};
    std::atomic<bool> resting_{false};
    std::atomic<double> last_ack_unix_{0.0};
    std::atomic<Clock::rep> last_ack_{0};
    std::atomic<Clock::rep> busy_since_{0};  // 0: idle
    mutable std::atomic<bool> stall_reported_{false};
};

}  // namespace eventlog::relay::detail
