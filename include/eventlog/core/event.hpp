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

/// The range of event_date_time that every path accepts (SQL, C++, HTTP): that of ClickHouse's DateTime, the
/// narrowest type event_log's column has (1970-01-01T00:00:00Z to 2106-02-07T06:28:15Z; the fraction of the last
/// second is kept by DateTime64 and dropped by DateTime). The outbox's CHECK constraint (migration 0017) states the
/// same bounds; a test proves they agree.
inline constexpr std::int64_t kMinEventTimeMicros = 0;
inline constexpr std::int64_t kMaxEventTimeMicros = 4'294'967'295'999'999;
/// What an event_date_time outside that range is told (after "event_date_time: ").
inline constexpr const char* kEventTimeRule = "expected 1970-01-01 to 2106-02-07T06:28:15Z";

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
constexpr std::int64_t DaysFromCivil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

/// The current time in microseconds since the Unix epoch.
std::int64_t NowMicros() noexcept;

/// Formats microseconds since the epoch as "YYYY-MM-DD HH:MM:SS.ffffff" (UTC).
std::string FormatTimestamp(std::int64_t micros);

}  // namespace eventlog
