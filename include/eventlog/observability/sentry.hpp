#pragma once

// Sentry: errors sent as envelopes to SENTRY_CONFIG_DSN from a background thread, with repeats rate-limited.
//
//   sentry::SentryClient sentry(sentry::ClientOptions::FromEnvironment(env));   // disabled when the DSN is unset
//   try { ... } catch (const eventlog::Error& e) { sentry.Capture(sentry::ReportFrom(e, "batch_failed")); }

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
#include <vector>

namespace eventlog {
class Error;
}

namespace eventlog::sentry {

/// A parsed DSN: scheme://PUBLIC_KEY@host[:port]/[path/]PROJECT_ID. Value type. The public key authenticates the
/// sender, so it is kept out of messages: use Redacted() in logs.
struct Dsn {
    std::string scheme;  ///< "http" or "https".
    std::string public_key;
    std::string host;        ///< As written, brackets kept for IPv6.
    std::string port;        ///< "" when the DSN has none.
    std::string path;        ///< Between host and project id, with leading and trailing '/' ("/" when none).
    std::string project_id;  ///< Digits.

    /// Parses `text`; nullopt when malformed (the caller's message must not echo the text).
    static std::optional<Dsn> Parse(std::string_view text);
    /// POST target: scheme://host[:port]{path}api/PROJECT_ID/envelope/.
    std::string EnvelopeUrl() const;
    /// The DSN without a secret part: scheme://PUBLIC_KEY@host[:port]{path}PROJECT_ID (the envelope's "dsn").
    std::string ToString() const;
    /// The same with the key replaced by "***", for logs.
    std::string Redacted() const;
    /// "Sentry sentry_version=7, sentry_key=KEY, sentry_client=eventlog/VERSION".
    std::string AuthHeader() const;
};

/// Event severity.
enum class Level { kDebug, kInfo, kWarning, kError, kFatal };

/// One error to report. Plain value type.
struct Report {
    Level level{Level::kError};
    std::string message;         ///< What happened, e.g. "batch failed after 5 attempts".
    std::string exception_type;  ///< When set, sent as exception.values[0] with exception_value.
    std::string exception_value;
    std::string logger{"eventlog"};
    /// Tags; ReportFrom sets error.kind, error.source and error.code. Keys and values are truncated by Sentry
    /// at 32 / 200 characters.
    std::vector<std::pair<std::string, std::string>> tags;
    /// Grouping and rate-limiting key; "" = exception type (or message), source and code.
    std::vector<std::string> fingerprint;
    std::string trace_id;  ///< 32 hex, sent as contexts.trace with span_id when both are set.
    std::string span_id;   ///< 16 hex.
};

/// A report for `error`: message `what` (e.g. "batch_failed"), exception type `what` and value error.what(), tags
/// error.kind, error.source (postgresql, clickhouse, eventlog) and error.code (SQLSTATE or ClickHouse code).
Report ReportFrom(const Error& error, std::string_view what);

/// Settings. Value type.
struct ClientOptions {
    std::optional<Dsn> dsn;                             ///< Unset: the client is disabled (no thread, nothing sent).
    std::string environment;                            ///< SENTRY_CONFIG_ENVIRONMENT, else ENVIRONMENT, else "Local".
    std::string release;                                ///< "eventlog@VERSION" unless set.
    std::string server_name;                            ///< Host name; "" = omitted.
    std::size_t max_queue{100};                         ///< Events waiting to be sent; more are dropped.
    std::chrono::milliseconds repeat_interval{60'000};  ///< The same fingerprint at most once per interval.
    std::chrono::milliseconds timeout{5'000};           ///< One request.
    std::chrono::milliseconds shutdown_timeout{2'000};  ///< Flush bound in the destructor.

    /// From SENTRY_CONFIG_DSN and SENTRY_CONFIG_ENVIRONMENT (or ENVIRONMENT). Throws ConfigError when the DSN is
    /// set but malformed; the message names the variable and the expected form, never the value.
    static ClientOptions FromEnvironment(const std::map<std::string, std::string>& env);
};

/// The envelope for `report`: header {event_id, dsn, sent_at}, item header {"type":"event","length":N}, and the
/// event (event_id, timestamp, platform "native", level, logger, message, exception, environment, release, tags,
/// fingerprint, contexts.trace, sdk), each line ended by '\n'. `event_id` is 32 lower-case hex characters.
std::string BuildEnvelope(const Dsn& dsn, const ClientOptions& options, const Report& report,
                          const std::string& event_id);

/// Sends reports from one background thread. Capture() never blocks on I/O. Repeats of a fingerprint within
/// repeat_interval are dropped; a 429 answer (Retry-After, or X-Sentry-Rate-Limits for the error category) stops
/// sending until it expires, dropping what arrives meanwhile. Failed requests are not retried. Non-copyable,
/// non-movable; Capture/Flush/counters are thread-safe. The destructor flushes (bounded) and joins the thread.
class SentryClient {
public:
    explicit SentryClient(ClientOptions options);
    ~SentryClient();
    SentryClient(const SentryClient&) = delete;
    SentryClient& operator=(const SentryClient&) = delete;

    /// False when no DSN is configured.
    bool Enabled() const noexcept { return enabled_; }
    /// Queues `report`; returns its event id (32 hex), or "" when it was dropped (disabled, repeat, rate limit,
    /// full queue).
    std::string Capture(const Report& report);
    /// Waits until every report queued so far has been sent or dropped, at most `timeout`; true when it was.
    bool Flush(std::chrono::milliseconds timeout);

    /// Events Sentry accepted (2xx).
    std::uint64_t SentEvents() const noexcept { return sent_.load(std::memory_order_relaxed); }
    /// Events not sent: repeats, rate limits, full queue, failed requests (disabled clients count nothing).
    std::uint64_t DroppedEvents() const noexcept { return dropped_.load(std::memory_order_relaxed); }

private:
    struct Pending {
        std::string event_id;
        std::string envelope;
    };
    void Run(const std::stop_token& stop);

    ClientOptions options_;
    bool enabled_{false};
    std::atomic<std::uint64_t> sent_{0};
    std::atomic<std::uint64_t> dropped_{0};
    std::mutex mutex_;
    std::condition_variable_any wake_;
    std::condition_variable idle_;
    std::deque<Pending> queue_;
    std::map<std::string, std::chrono::steady_clock::time_point> last_sent_;  // fingerprint -> last capture
    std::chrono::steady_clock::time_point blocked_until_{};                   // from a 429 / rate-limit header
    std::uint64_t enqueued_{0};
    std::uint64_t finished_{0};
    std::jthread thread_;
};

}  // namespace eventlog::sentry
