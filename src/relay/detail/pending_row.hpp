#pragma once

#include <cstdint>
#include <eventlog/core/event.hpp>
#include <eventlog/core/uuid.hpp>
#include <string>
#include <vector>

namespace eventlog::relay::detail {

/// One claimed event on its way to ClickHouse, with the delivery record (batch) that holds it.
struct PendingRow {
    Event event;
    Uuid batch_id;      ///< The delivery record; written into event_log.batch_id as lineage.
    int attempts{0};    ///< Rejections of this row alone (or of an unknown cause), for the dead-letter decision.
    std::string error;  ///< Why it is dead-lettered.
    std::int64_t enqueued_us{0};  ///< When the producer's transaction wrote it (unix µs; 0 when unknown).
    std::int64_t txid{0};         ///< The outbox row's key: its writer's transaction id (0: a record of the version
    std::int64_t outbox_id{0};    ///< before, which holds a copy of the row) and its id.
};

/// The distinct batch ids of `rows`, in first-seen order.
std::vector<Uuid> BatchIds(const std::vector<PendingRow>& rows);

}  // namespace eventlog::relay::detail
