#pragma once

#include <eventlog/core/config.hpp>
#include <memory>

namespace eventlog::relay {
class Relay;
}
namespace eventlog::metrics {
class Registry;
}
namespace eventlog::sentry {
class SentryClient;
}
namespace eventlog::tracing {
class TraceExporter;
}

namespace eventlog::cli {

/// Registers eventlog_sentry_sent_events_total and _dropped_events_total, read from `client` at scrape time (both
/// must outlive the registry's use). Used by `relay` and `serve`.
void AddSentryMetrics(metrics::Registry& registry, const sentry::SentryClient& client);
/// Registers eventlog_otel_exported_spans_total and _dropped_spans_total, read from `exporter` at scrape time.
void AddTracingMetrics(metrics::Registry& registry, const tracing::TraceExporter& exporter);

/// The relay's operations side (docs/observability.md): a metrics registry (the relay's meters, the backlog and
/// dead letters read from PostgreSQL at scrape time, build info), the listener on METRICS_LISTEN with /metrics,
/// /healthz and /readyz, and a monitor that logs a stall as soon as it begins and when it clears. Not copyable.
class RelayOps {
public:
    explicit RelayOps(const Config& config);
    ~RelayOps();
    RelayOps(const RelayOps&) = delete;
    RelayOps& operator=(const RelayOps&) = delete;

    /// The registry to hand to the relay (before Start()).
    metrics::Registry& Registry();
    /// Starts the listener (unless METRICS_LISTEN is empty or "off") and the monitor. A listener that cannot bind
    /// is logged (metrics_listen_failed) and skipped: delivery never waits for monitoring.
    void Start(const relay::Relay& relay);
    /// Stops both; idempotent (the destructor calls it).
    void Stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace eventlog::cli
