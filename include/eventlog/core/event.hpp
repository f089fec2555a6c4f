#pragma once

#include <cstdint>
#include <eventlog/core/uuid.hpp>
#include <string>

namespace eventlog {

/// One event as stored in the outbox and delivered to ClickHouse. Plain value type.
struct Event {
    Uuid event_id;                       ///< Idempotency key; random when the producer gives none.
    std::string event_type;              ///< Name as written ("UserCreated"); stored in ClickHouse in snake_case.
    std::int64_t event_date_time_us{0};  ///< Microseconds since the Unix epoch, UTC.
    std::string environment;             ///< Deployment environment, "Local" by default.
    std::string event_context;           ///< Compact JSON text, key order as the producer wrote it.
    std::uint64_t metadata_version{1};   ///< Schema version of event_context.
    std::string trace_id;                ///< W3C trace id (32 hex) or empty.
    /// W3C span id (16 hex) of the span that produced the event, or empty. Kept in PostgreSQL only, for the relay's
    /// span links (docs/observability.md, "Traces"); not a column of event_log.
    std::string span_id;
};

/// The current time in microseconds since the Unix epoch.
std::int64_t NowMicros() noexcept;

/// Formats microseconds since the epoch as "YYYY-MM-DD HH:MM:SS.ffffff" (UTC).
std::string FormatTimestamp(std::int64_t micros);

}  // namespace eventlog
