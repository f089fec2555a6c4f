#pragma once

#include <cstdint>
#include <eventlog/core/event.hpp>
#include <eventlog/pg/connection.hpp>
#include <vector>

namespace eventlog::outbox {

/// Normalises and validates an event before it is written: snake_case event_type, minified
/// event_context (must be a JSON object), random event_id when zero, now when event_date_time is 0.
/// Throws InvalidInputError naming the field.
Event Normalize(Event event);

/// Writes `event` into the outbox inside the caller's transaction; nothing is emitted if that
/// transaction rolls back. Returns the event's id.
Uuid Emit(pg::Transaction& transaction, Event event);

/// Writes many events with one COPY inside the caller's transaction. Returns their ids in order.
std::vector<Uuid> EmitMany(pg::Transaction& transaction, std::vector<Event> events);

/// Backlog figures for `eventlog status`.
struct Status {
    std::int64_t pending{0};               ///< Rows waiting in the outbox.
    double oldest_pending_age_seconds{0};  ///< Age of the oldest pending row (0 when none).
    std::int64_t in_flight_batches{0};     ///< Claimed batches not yet acknowledged.
    std::int64_t in_flight_events{0};      ///< Events in those batches.
    std::int64_t dead_letters{0};          ///< Rows in the dead-letter table.
};

/// Reads the backlog figures.
Status ReadStatus(pg::Connection& connection);

}  // namespace eventlog::outbox
