#pragma once

#include <atomic>
#include <cstdint>
#include <eventlog/core/config.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace eventlog::metrics {
class Registry;
}
namespace eventlog::sentry {
class SentryClient;
}
namespace eventlog::tracing {
class TraceExporter;
}

namespace eventlog::relay {

/// Counters of one Run().
struct Stats {
    std::int64_t delivered{0};          ///< Events confirmed in ClickHouse.
    std::int64_t batches{0};            ///< Batches acknowledged.
    std::int64_t dead_lettered{0};      ///< Events moved to the dead-letter table.
    std::int64_t recovered_batches{0};  ///< Batches of dead relays finished by this one.
    std::int64_t retries{0};            ///< Failed attempts that were retried.
    bool stop_timed_out{false};         ///< A graceful stop ran past RELAY_SHUTDOWN_TIMEOUT_MS and left work in flight.
};

/// What a relay reports about itself to /healthz and /readyz. Plain value type.
struct Health {
    bool connected{false};  ///< Its PostgreSQL session and ClickHouse stage are up.
    /// Work is pending or held (a batch in flight, or failures being retried) and nothing has been acknowledged for
    /// RELAY_STALL_SECONDS.
    bool stalled{false};
    std::string reason;       ///< Why it is not ready ("" when it is).
    double last_ack_unix{0};  ///< Unix time of the last acknowledgement (0: none yet).
    double busy_seconds{0};   ///< How long it has had work without an acknowledgement (0 when idle).
    /// It found the outbox empty, every older transaction ended, and it now only watches the outbox's id sequence
    /// (docs/delivery.md, "Waking the relay").
    bool resting{false};
};

/// How Run() ends.
struct RunOptions {
    bool drain{false};  ///< Return once the outbox and the in-flight batches of dead relays are empty.
};

/// The test seam of delivery: called each time delivery reaches a named step, with its name: "in_cut" (a claim's
/// chunks cut, the claim lock held, nothing committed), "after_claim" (the claim committed, its rows read),
/// "before_insert", "before_presence_query", "after_insert", "during_ack" (acknowledgement written, not committed),
/// "during_truncate" (retention truncated a partition, not committed). A probe may throw an eventlog::Error there
/// (as if that step failed) or stop or end the process (as if it hung or crashed there). Production code passes
/// none; the CLI installs one only when a test asks for it (EVENTLOG_FAULT_POINT, docs/delivery.md, "Test switch").
using StepProbe = std::function<void(std::string_view step)>;

/// The delivery loop: claims batches from the outbox, inserts them into ClickHouse, acknowledges them,
/// retries with backoff, isolates poison rows and finishes batches left behind by crashed relays.
/// The protocol is in docs/delivery.md. One Relay runs on one thread; Stop() may be called from any
/// thread or a signal handler.
class Relay {
public:
    /// With `registry`, the relay registers and updates its eventlog_relay_* metrics there (docs/observability.md);
    /// with `sentry`, it reports a stall, dead letters, a paused delivery and a batch that failed RELAY_MAX_ATTEMPTS
    /// times in a row; with `tracer`, it exports a span per claim (kind consumer). All must outlive it. `probe` is
    /// the test seam (StepProbe); empty in production.
    explicit Relay(Config config, metrics::Registry* registry = nullptr, sentry::SentryClient* sentry = nullptr,
                   tracing::TraceExporter* tracer = nullptr, StepProbe probe = {});
    ~Relay();
    Relay(const Relay&) = delete;
    Relay& operator=(const Relay&) = delete;

    /// Runs until Stop() (or, with drain, until there is no work). Throws only on fatal errors.
    Stats Run(const RunOptions& options = {});
    /// Asks Run() to finish the batch in flight and return. Async-signal-safe.
    void Stop() noexcept;
    /// Asks Run() to return as soon as possible, abandoning the batch in flight to recovery.
    void Abort() noexcept;
    /// The relay's state for health checks. Thread-safe; cheap (no I/O).
    Health GetHealth() const;

private:
    class Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace eventlog::relay
