#include "relay/detail/loop_observer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <eventlog/observability/log.hpp>
#include <eventlog/observability/metrics.hpp>
#include <eventlog/observability/sentry.hpp>
#include <string>

namespace eventlog::relay::detail {

LoopObserver::LoopObserver(const RelayConfig& config, metrics::Registry* registry, sentry::SentryClient* sentry)
    : config_(config), sentry_(sentry) {
    if (registry == nullptr) return;
    delivered_ = &registry->AddCounter(metrics::kRelayDeliveredEvents).Get();
    batches_ = &registry->AddCounter(metrics::kRelayBatches);
    lag_ = &registry->AddHistogram(metrics::kRelayDeliveryLag).Get();
    insert_ = &registry->AddHistogram(metrics::kRelayInsertDuration).Get();
    retries_ = &registry->AddCounter(metrics::kRelayRetries);
    last_success_ = &registry->AddGauge(metrics::kRelayLastSuccess).Get();
}

// Sentry reports are no-ops without a client; the client drops repeats of a fingerprint for a minute.
void LoopObserver::Report(const sentry::Report& report) const {
    if (sentry_ != nullptr) sentry_->Capture(report);
}

void LoopObserver::Busy() noexcept {
    Clock::rep idle = 0;
    busy_since_.compare_exchange_strong(idle, Clock::now().time_since_epoch().count());
}

void LoopObserver::Acknowledged(std::int64_t delivered, std::int64_t records, const char* outcome,
                                const std::vector<std::int64_t>& enqueued_us) {
    last_ack_.store(Clock::now().time_since_epoch().count());
    const double unix_now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    last_ack_unix_.store(unix_now);
    if (delivered_ == nullptr) return;
    delivered_->Inc(static_cast<double>(delivered));
    batches_->WithLabels({outcome}).Inc(static_cast<double>(records));
    last_success_->Set(unix_now);
    for (const std::int64_t us : enqueued_us) {
        if (us > 0) lag_->Observe(unix_now - static_cast<double>(us) / 1e6);
    }
}

void LoopObserver::Inserted(double seconds) {
    if (insert_ != nullptr) insert_->Observe(seconds);
}

void LoopObserver::DeadLettered(const std::vector<PendingRow>& dead) const {
    if (dead.empty()) return;
    sentry::Report report;
    report.message = fmt::format("event_dead_lettered: {} events moved to eventlog.dead_letter", dead.size());
    report.exception_type = "event_dead_lettered";
    report.exception_value = dead.front().error;  // ClickHouse's reason for the first one (as in the error log line)
    report.tags = {{"error.kind", "rejected"}, {"error.source", "clickhouse"}};
    report.fingerprint = {"event_dead_lettered"};
    Report(report);
}

// A batch that failed RELAY_MAX_ATTEMPTS times in a row is reported once on that attempt (it keeps being retried or
// bisected: no event is dropped); later failures of the same chunk are in the log only.
void LoopObserver::SendFailed(const Error& error, int failures) const {
    if (failures != config_.max_attempts) return;
    auto report = sentry::ReportFrom(error, "batch_failed");
    report.message = fmt::format("batch_failed: {} attempts in a row failed; the relay keeps retrying", failures);
    Report(report);
}

void LoopObserver::LoopFailed(const Error& error, LoopAction action, int failures) {
    if (action == LoopAction::kStop) {
        log::Error("relay_fatal", {{"error", std::string(error.what())}, {"code", error.Code()}});
        Report(sentry::ReportFrom(error, "relay_fatal"));
        return;
    }
    connected_.store(false);
    Busy();  // failures count as work that does not progress
    if (retries_ != nullptr) retries_->WithLabels({std::string(ToString(error.Kind()))}).Inc();
    if (action == LoopAction::kPause) {
        log::Error("delivery_paused", {{"reason", std::string(error.what())},
                                       {"code", error.Code()},
                                       {"hint", std::string("fix the configuration or the target table; no event "
                                                            "is dropped, delivery resumes by itself")}});
        // One issue per pause, whichever errors it goes through (a missing table fails the presence check, then the
        // column lookup, with different codes); the tags keep each report's code.
        auto report = sentry::ReportFrom(error, "delivery_paused");
        report.fingerprint = {"delivery_paused"};
        Report(report);
        return;
    }
    // The delivery loop failed RELAY_MAX_ATTEMPTS times in a row (each time the batch goes back to be retried or
    // recovered; nothing is dropped): reported once per run of failures.
    if (failures + 1 == config_.max_attempts) Report(sentry::ReportFrom(error, "batch_failed"));
    log::Warning("relay_retry", {{"kind", std::string(ToString(error.Kind()))},
                                 {"code", error.Code()},
                                 {"error", std::string(error.what())},
                                 {"failures", static_cast<std::int64_t>(failures + 1)}});
}

// Stalled: work was pending or held (a batch, or failures being retried) and nothing was acknowledged for
// RELAY_STALL_SECONDS. Whoever observes the change first (a health probe, a scrape, the CLI's monitor) logs it once.
Health LoopObserver::GetHealth() const {
    Health h;
    h.connected = connected_.load();
    h.resting = resting_.load();
    h.last_ack_unix = last_ack_unix_.load();
    const Clock::rep busy = busy_since_.load();
    if (busy != 0) {
        const Clock::rep since = std::max(busy, last_ack_.load());
        h.busy_seconds =
            std::chrono::duration<double>(Clock::now().time_since_epoch() - Clock::duration(since)).count();
        h.stalled = h.busy_seconds >= static_cast<double>(config_.stall_after.count());
    }
    if (h.stalled) {
        h.reason = fmt::format("stalled: work pending and nothing acknowledged for {:.0f} s", h.busy_seconds);
    } else if (!h.connected) {
        h.reason = "not connected to PostgreSQL and ClickHouse";
    }
    if (h.stalled && !stall_reported_.exchange(true)) {
        log::Error("relay_stalled", {{"seconds_without_ack", h.busy_seconds},
                                     {"stall_after_seconds", static_cast<std::int64_t>(config_.stall_after.count())}});
        sentry::Report report;
        report.message = "relay_stalled: " + h.reason;
        report.exception_type = "relay_stalled";
        report.exception_value = h.reason;
        report.fingerprint = {"relay_stalled"};
        Report(report);
    } else if (!h.stalled && stall_reported_.exchange(false)) {
        log::Info("relay_stall_cleared", {{"last_ack_unix", h.last_ack_unix}});
    }
    return h;
}

}  // namespace eventlog::relay::detail
