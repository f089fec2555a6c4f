#include "cli/relay_ops.hpp"

#include <algorithm>
#include <chrono>
#include <eventlog/core/error.hpp>
#include <eventlog/http/api.hpp>
#include <eventlog/http/ops.hpp>
#include <eventlog/http/server.hpp>
#include <eventlog/observability/log.hpp>
#include <eventlog/observability/metrics.hpp>
#include <eventlog/observability/sentry.hpp>
#include <eventlog/observability/tracing.hpp>
#include <eventlog/observability/version.hpp>
#include <eventlog/outbox/outbox.hpp>
#include <eventlog/pg/connection.hpp>
#include <eventlog/relay/relay.hpp>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#ifndef EVENTLOG_COMMIT
#define EVENTLOG_COMMIT "unknown"
#endif

namespace eventlog::cli {
namespace {

/// The backlog figures that live in PostgreSQL, so they are right after a restart: read on its own session at
/// scrape time, at most once a second for the gauges of one scrape. Every wait is bounded: connecting (2 s) and
/// the query (its statement_timeout, at most 5 s); a scrape that finds another one reading does not queue behind
/// it on the mutex but answers from the last reading (or without these samples), so a database that stops
/// answering cannot pile up scrapes or hold up the relay's stop.
class BacklogReader {
public:
    explicit BacklogReader(const PostgresConfig& postgres)
        : conninfo_(postgres.ConnInfo()),
          timeout_(postgres.statement_timeout.count() == 0
                       ? std::chrono::milliseconds(5'000)
                       : std::min(postgres.statement_timeout, std::chrono::milliseconds(5'000))) {}

    outbox::Status Read() {
        std::unique_lock lock(mutex_, std::try_to_lock);
        if (!lock.owns_lock()) {
            const std::lock_guard last(last_mutex_);
            if (last_) return *last_;
            throw TransientError("postgresql: the backlog is being read by another scrape", false);
        }
        const auto now = std::chrono::steady_clock::now();
        if (cached_ && now - read_at_ < std::chrono::seconds(1)) return *cached_;
        // The gauges of one scrape share one attempt: after a failure, none is made again for a second.
        if (now - failed_at_ < std::chrono::seconds(1)) throw TransientError(failure_, false);
        try {
            if (!session_ || !session_->Healthy()) {
                pg::ConnectOptions options;
                options.conninfo = conninfo_;
                options.application_name = "eventlog-relay-metrics";
                options.connect_timeout = std::chrono::milliseconds(2'000);
                options.statement_timeout = timeout_;
                session_.emplace(pg::Connection::Open(options));
            }
            cached_ = outbox::ReadStatus(*session_);
            read_at_ = now;
            const std::lock_guard last(last_mutex_);
            last_ = cached_;
            return *cached_;
        } catch (const Error& e) {
            session_.reset();
            cached_.reset();
            failed_at_ = std::chrono::steady_clock::now();
            failure_ = e.what();
            const std::lock_guard last(last_mutex_);
            last_.reset();
            throw;  // the registry renders these gauges without samples
        }
    }

private:
    std::string conninfo_;
    std::chrono::milliseconds timeout_;
    std::mutex mutex_;  // held by the one scrape that reads
    std::optional<pg::Connection> session_;
    std::optional<outbox::Status> cached_;
    std::chrono::steady_clock::time_point read_at_{};
    std::chrono::steady_clock::time_point failed_at_{};  // of the last failed reading
    std::string failure_;                                // its error
    std::mutex last_mutex_;  // guards last_, which scrapes that find the reader busy answer from
    std::optional<outbox::Status> last_;
};

}  // namespace

void AddSentryMetrics(metrics::Registry& registry, const sentry::SentryClient& client) {
    const auto* c = &client;
    registry.AddCallback(metrics::kSentrySentEvents, [c] {
        return std::vector<metrics::CallbackSample>{{{}, static_cast<double>(c->SentEvents())}};
    });
    registry.AddCallback(metrics::kSentryDroppedEvents, [c] {
        return std::vector<metrics::CallbackSample>{{{}, static_cast<double>(c->DroppedEvents())}};
    });
}

void AddTracingMetrics(metrics::Registry& registry, const tracing::TraceExporter& exporter) {
    const auto* e = &exporter;
    registry.AddCallback(metrics::kOtelExportedSpans, [e] {
        return std::vector<metrics::CallbackSample>{{{}, static_cast<double>(e->ExportedSpans())}};
    });
    registry.AddCallback(metrics::kOtelDroppedSpans, [e] {
        return std::vector<metrics::CallbackSample>{{{}, static_cast<double>(e->DroppedSpans())}};
    });
}

struct RelayOps::Impl {
    explicit Impl(const Config& c) : config(c), backlog(c.postgres) {}

    Config config;
    metrics::Registry registry;
    BacklogReader backlog;
    std::unique_ptr<http::Server> server;
    std::jthread monitor;
};

RelayOps::RelayOps(const Config& config) : impl_(std::make_unique<Impl>(config)) {
    auto& r = impl_->registry;
    metrics::AddBuildInfo(r, std::string(observability::Version()), EVENTLOG_COMMIT);
    auto* backlog = &impl_->backlog;
    r.AddCallback(metrics::kOutboxPendingEvents, [backlog] {
        return std::vector<metrics::CallbackSample>{{{}, static_cast<double>(backlog->Read().pending)}};
    });
    r.AddCallback(metrics::kOutboxOldestPendingAge, [backlog] {
        return std::vector<metrics::CallbackSample>{{{}, backlog->Read().oldest_pending_age_seconds}};
    });
    r.AddCallback(metrics::kOutboxInFlightEvents, [backlog] {
        return std::vector<metrics::CallbackSample>{{{}, static_cast<double>(backlog->Read().in_flight_events)}};
    });
    r.AddCallback(metrics::kOutboxRetainedBytes, [backlog] {
        return std::vector<metrics::CallbackSample>{{{}, static_cast<double>(backlog->Read().retained_bytes)}};
    });
    r.AddCallback(metrics::kDeadLetterEvents, [backlog] {
        return std::vector<metrics::CallbackSample>{{{}, static_cast<double>(backlog->Read().dead_letters)}};
    });
}

RelayOps::~RelayOps() { Stop(); }

metrics::Registry& RelayOps::Registry() { return impl_->registry; }

void RelayOps::Start(const relay::Relay& relay) {
    const relay::Relay* watched = &relay;
    // The monitor makes a stall visible in the log even when nobody probes /readyz (GetHealth() logs changes).
    impl_->monitor = std::jthread([watched](const std::stop_token& stop) {
        while (!stop.stop_requested()) {
            watched->GetHealth();
            for (int i = 0; i < 10 && !stop.stop_requested(); ++i)
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    });
    const std::string& listen = impl_->config.relay.metrics_listen;
    if (listen.empty() || listen == "off") return;
    try {
        http::ServerOptions options;
        http::ParseListen(listen, "METRICS_LISTEN", options);
        // ALLOWED_HOSTS, as on the API: with any Host accepted, a web page on another name could read these
        // figures through DNS rebinding. Prometheus must scrape by a name in the list (the default has 127.0.0.1).
        options.allowed_hosts = impl_->config.allowed_hosts;
        options.io_threads = 1;
        options.worker_threads = 2;
        options.max_connections = 64;
        options.max_body_bytes = 1024;
        impl_->server = std::make_unique<http::Server>(options, http::MakeOpsRouter(impl_->registry, [watched] {
                                                           const auto h = watched->GetHealth();
                                                           return h.connected && !h.stalled ? std::string() : h.reason;
                                                       }));
        impl_->server->Start();
        log::Info("metrics_listening",
                  {{"address", listen}, {"port", static_cast<std::int64_t>(impl_->server->Port())}});
    } catch (const Error& e) {
        impl_->server.reset();
        log::Error("metrics_listen_failed", {{"address", listen}, {"error", std::string(e.what())}});
    }
}

void RelayOps::Stop() {
    if (impl_->monitor.joinable()) {
        impl_->monitor.request_stop();
        impl_->monitor.join();
    }
    if (impl_->server) {
        impl_->server->Stop();
        impl_->server->Wait();
        impl_->server.reset();
    }
}

}  // namespace eventlog::cli
