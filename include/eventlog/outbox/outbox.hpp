#pragma once

#include <cstdint>
#include <eventlog/core/event.hpp>
#include <eventlog/pg/connection.hpp>
#include <optional>
#include <string>
#include <vector>

namespace eventlog::outbox {

/// Normalises and validates an event before it is written: event_type as written (not empty: the relay converts it
/// to snake_case), minified event_context (must be a JSON object), random event_id when zero, now when
/// event_date_time is 0. Throws InvalidInputError naming the field.
Event Normalize(Event event);

/// Size limits on event fields, from eventlog.limits (one row an admin may change). Plain value type.
struct Limits {
    std::int64_t max_event_type_bytes{200};   ///< event_type, as written.
    std::int64_t max_context_bytes{1 << 20};  ///< event_context as stored (1 MiB).
    std::int64_t max_environment_bytes{200};  ///< environment.
    std::int64_t max_trace_id_bytes{128};     ///< trace_id.
};

/// Reads eventlog.limits.
Limits ReadLimits(pg::Connection& connection);

/// The first field of `event` over `limits` as "field: expected at most N bytes, got M"; nullopt when none is.
std::optional<std::string> LimitViolation(const Event& event, const Limits& limits);

/// Writes `event` into the outbox inside the caller's transaction (through eventlog.emit(), so the
/// producer role needs only EXECUTE on it and eventlog.limits apply); nothing is emitted if that
/// transaction rolls back. Returns the event's id: the caller's (registered for exact idempotency within
/// IDEMPOTENCY_WINDOW), or, when event_id is zero, one the server made.
Uuid Emit(pg::Transaction& transaction, Event event);

/// Writes many events with one COPY inside the caller's transaction, after checking each against eventlog.limits
/// (InvalidInputError naming the field and the event's index). Needs INSERT on eventlog.outbox and eventlog.event_ids
/// (eventlog_admin). An event whose event_id was accepted before (within IDEMPOTENCY_WINDOW), or earlier in the same
/// call, is not written; `accepted`, when given, says which were. Returns every event's id, in order.
std::vector<Uuid> EmitMany(pg::Transaction& transaction, std::vector<Event> events,
                           std::vector<bool>* accepted = nullptr);

/// Backlog figures for `eventlog status`.
struct Status {
    std::int64_t pending{0};               ///< Rows waiting in the outbox.
    double oldest_pending_age_seconds{0};  ///< Age of the oldest pending row (0 when none).
    std::int64_t in_flight_batches{0};     ///< Claimed batches not yet acknowledged.
    std::int64_t in_flight_events{0};      ///< Events in those batches.
    std::int64_t dead_letters{0};          ///< Rows in the dead-letter table.
    std::int64_t retained_bytes{0};        ///< Disk of the outbox's partitions (delivered rows stay until truncated).
    std::string retention_waiting;         ///< What keeps delivered rows on disk ("" when nothing does).
};

/// Reads the backlog figures.
Status ReadStatus(pg::Connection& connection);

}  // namespace eventlog::outbox
