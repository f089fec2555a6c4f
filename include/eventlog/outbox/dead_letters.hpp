#pragma once

#include <cstdint>
#include <eventlog/core/uuid.hpp>
#include <eventlog/pg/connection.hpp>
#include <optional>
#include <string>
#include <vector>

namespace eventlog::outbox {

/// One row of eventlog.dead_letter, as listed by `eventlog dlq`.
struct DeadLetter {
    std::string event_id;
    std::string event_type;
    std::string event_date_time;  ///< ISO 8601, UTC.
    std::string environment;
    std::string event_context;
    std::int64_t metadata_version{1};
    std::string error;
    int attempts{0};
    std::string batch_id;
    std::string first_failed_at;
    std::string last_failed_at;

    /// This dead letter as a JSON object.
    std::string ToJson() const;
};

/// Lists dead letters, oldest failure first, at most `limit`.
std::vector<DeadLetter> ListDeadLetters(pg::Connection& connection, int limit = 1000);

/// The dead letter with `event_id`, if any.
std::optional<DeadLetter> FindDeadLetter(pg::Connection& connection, const Uuid& event_id);

/// Moves dead letters back into the outbox with the same event_id (all of them when `ids` is empty),
/// in one transaction; one whose event_date_time ClickHouse cannot store (kEventTimeRule) stays. Returns how many
/// were moved.
std::int64_t ReplayDeadLetters(pg::Connection& connection, const std::vector<Uuid>& ids);

/// Deletes dead letters (all of them when `ids` is empty). Returns how many were deleted.
std::int64_t DiscardDeadLetters(pg::Connection& connection, const std::vector<Uuid>& ids);

}  // namespace eventlog::outbox
