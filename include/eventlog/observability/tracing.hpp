#pragma once

// Traces: W3C trace context, a span model, and an OTLP/HTTP JSON exporter that sends batches on a background
// thread.
//
//   tracing::TraceExporter exporter(tracing::ExporterOptions::FromEnvironment(env));   // disabled when unset
//   tracing::Span span = tracing::StartSpan("relay.batch", tracing::SpanKind::kConsumer, parent);
//   span.links.push_back({producer_context, {{"messaging.batch.message_count", std::int64_t{1}}}});
//   ...
//   span.End();
//   exporter.Export(std::move(span));                                                 // never blocks on I/O

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

namespace eventlog::tracing {

/// 16-byte trace id; all zero means "none".
using TraceId = std::array<std::uint8_t, 16>;
/// 8-byte span id; all zero means "none".
using SpanId = std::array<std::uint8_t, 8>;

/// Lower-case hex of an id (32 or 16 characters).
std::string ToHex(const TraceId& id);
std::string ToHex(const SpanId& id);
/// Parses exactly 32 (16) lower-case hex characters; nullopt otherwise or when all zero.
std::optional<TraceId> ParseTraceId(std::string_view hex);
std::optional<SpanId> ParseSpanId(std::string_view hex);
/// A random non-zero id from a per-thread generator seeded from the OS (ids need uniqueness, not secrecy).
TraceId NewTraceId();
SpanId NewSpanId();

/// The part of a span that crosses process boundaries. Value type.
struct SpanContext {
    TraceId trace_id{};
    SpanId span_id{};
    std::uint8_t flags{0};  ///< W3C trace-flags; bit 0 = sampled.

    /// Both ids non-zero.
    bool IsValid() const noexcept;
    /// The sampled flag.
    bool Sampled() const noexcept { return (flags & 0x01) != 0; }
    bool operator==(const SpanContext&) const = default;
};

/// Parses a W3C `traceparent` header value (Trace Context Level 1): version 00 is exactly
/// "00-<32 hex>-<16 hex>-<2 hex>", lower-case hex, ids not all zero; a higher version (01..fe) is read the same
/// way from its first 55 characters when it is at least that long and the 56th, if any, is '-'. Version ff,
/// upper-case hex, wrong lengths, whitespace and trailing data on version 00 give nullopt.
std::optional<SpanContext> ParseTraceparent(std::string_view header);
/// Formats "00-<trace id>-<span id>-<flags>".
std::string FormatTraceparent(const SpanContext& context);

/// An attribute value: string, 64-bit integer, double or bool.
using AttributeValue = std::variant<std::string, std::int64_t, double, bool>;
/// Attributes in order (keys should be unique).
using Attributes = std::vector<std::pair<std::string, AttributeValue>>;

/// OTLP Span.SpanKind.
enum class SpanKind { kUnspecified = 0, kInternal = 1, kServer = 2, kClient = 3, kProducer = 4, kConsumer = 5 };
/// OTLP Status.StatusCode.
enum class StatusCode { kUnset = 0, kOk = 1, kError = 2 };

/// A link to another span, e.g. from a relay batch to each producer's span.
struct SpanLink {
    SpanContext context;
    Attributes attributes;
};

/// One finished (or running) span. Plain value type; build it, End() it and hand it to the exporter.
struct Span {
    SpanContext context;      ///< This span's trace id, span id and flags.
    SpanId parent_span_id{};  ///< All zero for a root span.
    std::string name;
    SpanKind kind{SpanKind::kInternal};
    std::int64_t start_unix_nanos{0};
    std::int64_t end_unix_nanos{0};
    Attributes attributes;
    StatusCode status{StatusCode::kUnset};
    std::string status_message;  ///< Only sent with StatusCode::kError.
    std::vector<SpanLink> links;
    std::uint32_t dropped_links_count{0};  ///< Links left out (a cap on links per span).

    /// Sets end_unix_nanos to now.
    void End();
};

/// Nanoseconds since the Unix epoch.
std::int64_t NowUnixNanos() noexcept;
/// A span started now: a child of `parent` (same trace, flags kept) when it is valid, else the root of a new
/// sampled trace.
Span StartSpan(std::string name, SpanKind kind, const std::optional<SpanContext>& parent = std::nullopt);

/// Where and how to export. Value type.
struct ExporterOptions {
    /// Full URL spans are POSTed to (…/v1/traces); "" disables the exporter (no thread, nothing sent).
    std::string endpoint;
    /// Extra request headers from OTEL_EXPORTER_OTLP_(TRACES_)HEADERS ("Name: value"); may hold secrets, never logged.
    std::vector<std::string> headers;
    /// Resource attributes, service.name first.
    std::vector<std::pair<std::string, std::string>> resource;
    std::size_t max_queue_spans{2048};                  ///< Spans waiting to be sent; more are dropped and counted.
    std::size_t max_batch_spans{512};                   ///< Spans per request.
    std::chrono::milliseconds batch_delay{2'000};       ///< Longest a span waits for its batch to fill.
    std::chrono::milliseconds timeout{10'000};          ///< OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT: one request.
    std::chrono::milliseconds shutdown_timeout{3'000};  ///< Flush bound in the destructor.

    /// Reads the OpenTelemetry variables from `env`:
    /// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) or OTEL_EXPORTER_OTLP_ENDPOINT (+ "/v1/traces");
    /// OTEL_SERVICE_NAME (default `default_service_name`), OTEL_RESOURCE_ATTRIBUTES (key=value,…, values
    /// percent-decoded; the whole variable is ignored, with a warning, when malformed), the headers and timeout
    /// variables; OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none disable. Throws ConfigError when
    /// OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL asks for grpc (only OTLP/HTTP is spoken) or a number is malformed.
    static ExporterOptions FromEnvironment(const std::map<std::string, std::string>& env,
                                           const std::string& default_service_name = "eventlog");
};

/// Parses OTEL_RESOURCE_ATTRIBUTES: comma-separated key=value pairs, surrounding spaces trimmed, values
/// percent-decoded. nullopt when any pair is malformed (no '=', empty key, bad %XX escape).
std::optional<std::vector<std::pair<std::string, std::string>>> ParseResourceAttributes(std::string_view text);

/// Encodes spans as an OTLP ExportTraceServiceRequest in JSON (ids as hex, enums as integers, 64-bit integers as
/// decimal strings), with one resource and one instrumentation scope "eventlog".
std::string EncodeTraceRequest(const std::vector<std::pair<std::string, std::string>>& resource,
                               const std::vector<Span>& spans);

/// Batches spans and POSTs them to the collector from one background thread. Export() only takes a short lock:
/// it never waits for the network; when the queue is full the span is dropped and counted. A failed request
/// (unreachable collector, timeout, non-2xx answer) drops its batch and counts it; nothing is retried, so a
/// dead collector costs at most one request timeout per batch on the exporter's own thread. Non-copyable,
/// non-movable; Export/Flush/counters are thread-safe. The destructor flushes (bounded by shutdown_timeout)
/// and joins the thread.
class TraceExporter {
public:
    explicit TraceExporter(ExporterOptions options);
    ~TraceExporter();
    TraceExporter(const TraceExporter&) = delete;
    TraceExporter& operator=(const TraceExporter&) = delete;

    /// False when no endpoint is configured: Export() then discards spans without counting them.
    bool Enabled() const noexcept { return enabled_; }
    /// Queues a finished span; a span whose sampled flag is clear is discarded (parent-based sampling).
    void Export(Span span);
    /// Waits until every span queued so far has been sent or dropped, at most `timeout`; true when it was.
    bool Flush(std::chrono::milliseconds timeout);

    /// Spans the collector accepted (2xx), less the ones it reported as rejected.
    std::uint64_t ExportedSpans() const noexcept { return exported_.load(std::memory_order_relaxed); }
    /// Spans dropped: queue full, request failed, or rejected by the collector.
    std::uint64_t DroppedSpans() const noexcept { return dropped_.load(std::memory_order_relaxed); }

private:
    void Run(const std::stop_token& stop);

    ExporterOptions options_;
    bool enabled_{false};
    std::atomic<std::uint64_t> exported_{0};
    std::atomic<std::uint64_t> dropped_{0};
    std::mutex mutex_;
    std::condition_variable_any wake_;
    std::condition_variable idle_;
    std::deque<Span> queue_;
    std::uint64_t enqueued_{0};      // spans queued so far (under mutex_)
    std::uint64_t finished_{0};      // spans sent or dropped after being queued (under mutex_)
    std::uint64_t flush_target_{0};  // send at once, without waiting for a full batch, until finished_ reaches it
    std::jthread thread_;
};

}  // namespace eventlog::tracing
