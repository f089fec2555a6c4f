#pragma once

// Parsing and validation of request bodies: strict, bounded, naming the field and the event's index. Pure functions
// (no database), unit-tested in tests/unit/http_input_test.cpp.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace eventlog::http::detail {

/// One event of a POST /api/v1/events body, validated. Optional fields are nullopt when absent or null.
struct IncomingEvent {
    std::string event_type;                      ///< Non-empty, as sent (emit() converts it to snake_case).
    std::string event_context;                   ///< A JSON object, minified, key order kept.
    std::optional<std::string> event_id;         ///< Canonical lower-case UUID.
    std::optional<std::string> event_date_time;  ///< RFC 3339 text as sent.
    std::optional<std::string> environment;
    std::optional<std::int64_t> metadata_version;  ///< Non-negative.
    std::optional<std::string> trace_id;
    /// The producing span's id: not a body field, set from the request's span with its trace id
    /// (request_trace.hpp), for the relay's span links.
    std::optional<std::string> span_id;
};

/// Bounds on a request's events, with documented defaults (docs/http-api.md). The database's eventlog.limits
/// apply as well; these refuse oversize input before it is sent.
struct EventLimits {
    std::size_t max_events{10'000};           ///< HTTP_MAX_EVENTS per request (413 beyond).
    std::size_t max_context_bytes{1u << 20};  ///< HTTP_MAX_CONTEXT_BYTES: event_context as sent (413 beyond).
    std::size_t max_event_type_bytes{200};
    std::size_t max_environment_bytes{200};
    std::size_t max_trace_id_bytes{128};
};

/// How the body is framed.
enum class BodyFormat {
    kJson,    ///< One JSON object, or a JSON array of objects.
    kNdjson,  ///< One JSON object per line (blank lines ignored).
};

/// Parses and validates every event of `body`; throws ProblemError (400 naming the field and index, 400 with the
/// byte offset for malformed JSON, 413 for too many events or an oversize event_context).
std::vector<IncomingEvent> ParseEvents(std::string_view body, BodyFormat format, const EventLimits& limits);

/// An RFC 3339 date-time ("2024-05-01T12:00:00Z", "...T12:00:00.123456+02:00"; 't', 'z' and a space separator
/// accepted; seconds 00-59) as microseconds since the epoch (UTC; digits past the sixth rounded, as PostgreSQL does),
/// or nullopt when `text` is not one.
std::optional<std::int64_t> ParseRfc3339(std::string_view text);
/// True when `text` is an RFC 3339 date-time (ParseRfc3339 reads it).
bool IsRfc3339(std::string_view text);

/// What POST /api/v1/events is asked to wait for, from its query string.
struct WaitRequest {
    bool visible{false};                        ///< `wait=visible`: answer once the events are in ClickHouse.
    std::chrono::milliseconds timeout{10'000};  ///< `timeout=`: how long to wait at most (default 10 s).
};

/// The longest `timeout=` accepted (30 s): a waiting request holds a worker thread.
inline constexpr std::chrono::milliseconds kMaxWaitTimeout{30'000};

/// Parses the query string of POST /api/v1/events: `wait=visible` and `timeout=` as a non-negative integer with its
/// unit, `ms` or `s` ("500ms", "5s"), at most kMaxWaitTimeout, only with `wait`. Values may be percent-encoded.
/// Throws ProblemError 400 naming the parameter (`wait`, `timeout`, or an unknown or repeated one).
WaitRequest ParseEventsQuery(std::string_view query);

/// A POST /api/v1/users body, validated.
struct IncomingUser {
    std::string email;       ///< Domain part lower-cased.
    std::string first_name;  ///< "" when absent.
    std::string last_name;   ///< "" when absent.
};

/// Parses and validates a user body; throws ProblemError 400 naming the field.
IncomingUser ParseUser(std::string_view body);

}  // namespace eventlog::http::detail
