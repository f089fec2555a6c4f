#pragma once

// Metrics: a registry of counters, gauges and histograms rendered in the Prometheus text format 0.0.4.
//
//   metrics::Registry registry;
//   auto& batches = registry.AddCounter(metrics::kRelayBatches);          // labels: outcome
//   metrics::Counter& delivered = batches.WithLabels({"delivered"});     // look up once, keep the reference
//   delivered.Inc();                                                      // hot path: one atomic add
//   std::string text = registry.Render();                                 // GET /metrics

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace eventlog::metrics {

/// The Prometheus metric type.
enum class Type { kCounter, kGauge, kHistogram };

/// A metric's definition: name (base units, `eventlog_` prefix), type, HELP text, label names, and for
/// histograms the bucket upper bounds (finite, increasing; +Inf is implied). Plain constant data.
struct Spec {
    std::string_view name;
    Type type;
    std::string_view help;
    std::span<const std::string_view> labels{};
    std::span<const double> buckets{};
};

/// A monotonically increasing value. Thread-safe, lock-free; owned by its family, never copied.
class Counter {
public:
    /// Adds `amount` (ignored unless > 0: a counter never goes down).
    void Inc(double amount = 1.0) noexcept;
    /// The current value.
    double Value() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<double> value_{0.0};
};

/// A value that goes up and down. Thread-safe, lock-free; owned by its family.
class Gauge {
public:
    /// Replaces the value.
    void Set(double value) noexcept { value_.store(value, std::memory_order_relaxed); }
    /// Adds `amount` (may be negative).
    void Inc(double amount = 1.0) noexcept { value_.fetch_add(amount, std::memory_order_relaxed); }
    /// Subtracts `amount`.
    void Dec(double amount = 1.0) noexcept { value_.fetch_add(-amount, std::memory_order_relaxed); }
    /// The current value.
    double Value() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<double> value_{0.0};
};

/// Observations counted into fixed buckets, plus their sum. Thread-safe, lock-free; owned by its family.
class Histogram {
public:
    /// `bounds`: finite, strictly increasing upper bounds (validated by the registry).
    explicit Histogram(std::span<const double> bounds);
    /// Counts `value` into the first bucket whose bound is >= value (NaN is ignored).
    void Observe(double value) noexcept;

    /// A consistent-enough copy: cumulative counts per bound, then the +Inf count (== count), and the sum.
    struct Snapshot {
        std::vector<std::uint64_t> cumulative;  ///< One per bound, plus a last one for +Inf.
        double sum{0};
    };
    /// Reads the buckets (a concurrent Observe may be counted in the buckets but not yet in the sum).
    Snapshot Read() const;

private:
    std::vector<double> bounds_;
    std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;  // bounds_.size() + 1 (the last is +Inf)
    std::atomic<double> sum_{0.0};
};

/// All series of one metric, one per combination of label values. Thread-safe. The number of series is
/// bounded: past `kMaxSeries` combinations, new combinations share one series whose values are all "other",
/// so a runaway label value costs accuracy, never memory. Label values must come from small fixed sets
/// (an outcome, an error kind, a route): never an id, a user or a free-form message.
template <typename T>
class Family {
public:
    /// Series per family before new combinations fold into the "other" series.
    static constexpr std::size_t kMaxSeries = 256;

    Family(const Spec& spec, std::vector<std::string> label_names);
    /// The series for `values` (one per label name, in order), created on first use. The reference stays valid
    /// for the registry's lifetime: look it up once and keep it on the hot path. Throws std::invalid_argument
    /// when the number of values differs from the number of labels.
    T& WithLabels(const std::vector<std::string>& values);
    /// The single series of a family without labels (throws std::invalid_argument when it has labels).
    T& Get();

    /// Appends the samples in text format (used by Registry::Render).
    void RenderSamples(std::string& out) const;
    /// The label names, in order.
    const std::vector<std::string>& LabelNames() const { return label_names_; }

private:
    std::vector<std::string> label_names_;
    std::vector<double> bounds_;  // histograms only
    mutable std::shared_mutex mutex_;
    std::map<std::vector<std::string>, std::unique_ptr<T>> series_;
    std::string name_;
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

/// One sample returned by a scrape-time callback.
struct CallbackSample {
    std::vector<std::string> label_values;  ///< One per label name of the metric's Spec, in order.
    double value{0};
};
/// Computes a metric's samples at scrape time (e.g. a backlog read from PostgreSQL). It runs on the scraping
/// thread, outside the registry's lock; when it throws, the metric is rendered without samples.
using Callback = std::function<std::vector<CallbackSample>()>;

/// Owns metric families and renders them. Non-copyable; every method is thread-safe. Families live as long as
/// the registry, so the references it hands out stay valid.
class Registry {
public:
    Registry();
    ~Registry();
    Registry(const Registry&) = delete;
    Registry& operator=(const Registry&) = delete;

    /// Registers a counter (name must end in `_total`). Throws std::invalid_argument on a bad or duplicate name,
    /// a bad label name, or a Spec of another type.
    CounterFamily& AddCounter(const Spec& spec);
    /// Registers a gauge. Throws as AddCounter.
    GaugeFamily& AddGauge(const Spec& spec);
    /// Registers a histogram with spec.buckets (finite, strictly increasing, at least one). Throws as AddCounter.
    HistogramFamily& AddHistogram(const Spec& spec);
    /// Registers a counter or gauge whose samples `callback` computes at each Render(). Throws as AddCounter.
    void AddCallback(const Spec& spec, Callback callback);

    /// The text exposition format 0.0.4: for each metric in registration order, # HELP, # TYPE and its samples.
    std::string Render() const;

private:
    struct Entry;
    Entry& Add(const Spec& spec, Type type);

    mutable std::mutex mutex_;
    std::vector<std::unique_ptr<Entry>> entries_;
};

/// The Content-Type of Render()'s output.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

// ---- The metrics eventlog exposes (issue 11). Register them from these specs so names and labels match the
// ---- documentation (docs/observability.md lists them all; a unit test checks the list).

/// Bucket bounds in seconds for request and insert durations (Prometheus client_golang's defaults).
inline constexpr double kDurationBuckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
/// Bucket bounds in seconds for commit-to-ClickHouse lag: from 50 ms to an hour.
inline constexpr double kLagBuckets[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};

inline constexpr std::string_view kOutcomeLabel[] = {"outcome"};
inline constexpr std::string_view kKindLabel[] = {"kind"};
inline constexpr std::string_view kRouteStatusLabels[] = {"route", "status"};
inline constexpr std::string_view kStateLabel[] = {"state"};
inline constexpr std::string_view kBuildLabels[] = {"version", "commit"};

inline constexpr Spec kOutboxPendingEvents{"eventlog_outbox_pending_events", Type::kGauge,
                                           "Events waiting in the PostgreSQL outbox (read from PostgreSQL)."};
inline constexpr Spec kOutboxOldestPendingAge{
    "eventlog_outbox_oldest_pending_age_seconds", Type::kGauge,
    "Age of the oldest event waiting in the outbox, 0 when it is empty (read from PostgreSQL)."};
inline constexpr Spec kOutboxInFlightEvents{
    "eventlog_outbox_in_flight_events", Type::kGauge,
    "Events claimed by a relay and not yet acknowledged (in delivery records; read from PostgreSQL)."};
inline constexpr Spec kOutboxRetainedBytes{
    "eventlog_outbox_retained_bytes", Type::kGauge,
    "Disk held by the outbox's partitions, delivered rows included until their partition is truncated (read from "
    "PostgreSQL)."};
inline constexpr Spec kRelayDeliveredEvents{"eventlog_relay_delivered_events_total", Type::kCounter,
                                            "Events acknowledged by ClickHouse since the process started."};
inline constexpr Spec kRelayBatches{"eventlog_relay_batches_total", Type::kCounter,
                                    "Batches finished, by outcome (delivered, retried, dead_lettered, paused).",
                                    kOutcomeLabel};
inline constexpr Spec kRelayDeliveryLag{"eventlog_relay_delivery_lag_seconds",
                                        Type::kHistogram,
                                        "Time from the producer's commit to the ClickHouse acknowledgement.",
                                        {},
                                        kLagBuckets};
inline constexpr Spec kRelayInsertDuration{"eventlog_relay_insert_duration_seconds",
                                           Type::kHistogram,
                                           "Duration of one INSERT into ClickHouse.",
                                           {},
                                           kDurationBuckets};
inline constexpr Spec kRelayRetries{"eventlog_relay_retries_total", Type::kCounter,
                                    "Retries of a batch, by error kind (transient, in_doubt, ...).", kKindLabel};
inline constexpr Spec kRelayLastSuccess{"eventlog_relay_last_success_timestamp_seconds", Type::kGauge,
                                        "Unix time of the last batch acknowledged by ClickHouse."};
inline constexpr Spec kDeadLetterEvents{"eventlog_dead_letter_events", Type::kGauge,
                                        "Events in the dead-letter table (read from PostgreSQL)."};
inline constexpr Spec kHttpRequests{"eventlog_http_requests_total", Type::kCounter,
                                    "HTTP requests answered, by route template and status code.", kRouteStatusLabels};
inline constexpr Spec kHttpRequestDuration{"eventlog_http_request_duration_seconds",
                                           Type::kHistogram,
                                           "Time to answer an HTTP request.",
                                           {},
                                           kDurationBuckets};
inline constexpr Spec kPgPoolConnections{"eventlog_pg_pool_connections", Type::kGauge,
                                         "PostgreSQL pool connections, by state (idle, in_use).", kStateLabel};
inline constexpr Spec kBuildInfo{"eventlog_build_info", Type::kGauge,
                                 "Always 1; the labels carry the version and the commit.", kBuildLabels};
inline constexpr Spec kOtelExportedSpans{"eventlog_otel_exported_spans_total", Type::kCounter,
                                         "Spans accepted by the OTLP collector."};
inline constexpr Spec kOtelDroppedSpans{"eventlog_otel_dropped_spans_total", Type::kCounter,
                                        "Spans dropped: queue full, collector unreachable or refusing."};
inline constexpr Spec kSentrySentEvents{"eventlog_sentry_sent_events_total", Type::kCounter,
                                        "Error events accepted by Sentry."};
inline constexpr Spec kSentryDroppedEvents{"eventlog_sentry_dropped_events_total", Type::kCounter,
                                           "Error events not sent: rate-limited, queue full or Sentry unreachable."};

/// Every Spec above, in documentation order.
inline constexpr const Spec* kAllSpecs[] = {&kOutboxPendingEvents, &kOutboxOldestPendingAge, &kOutboxInFlightEvents,
                                            &kOutboxRetainedBytes, &kRelayDeliveredEvents,   &kRelayBatches,
                                            &kRelayDeliveryLag,    &kRelayInsertDuration,    &kRelayRetries,
                                            &kRelayLastSuccess,    &kDeadLetterEvents,       &kHttpRequests,
                                            &kHttpRequestDuration, &kPgPoolConnections,      &kBuildInfo,
                                            &kOtelExportedSpans,   &kOtelDroppedSpans,       &kSentrySentEvents,
                                            &kSentryDroppedEvents};

/// Registers eventlog_build_info{version,commit} = 1.
void AddBuildInfo(Registry& registry, const std::string& version, const std::string& commit);

}  // namespace eventlog::metrics
