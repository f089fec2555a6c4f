#pragma once

// The span links from a claim's span to the spans that produced its events (docs/observability.md, "Traces").

#include <cstddef>
#include <eventlog/observability/tracing.hpp>
#include <vector>

#include "relay/detail/pending_row.hpp"

namespace eventlog::relay::detail {

/// Span links with what was left out.
struct ProducerLinks {
    std::vector<tracing::SpanLink> links;
    std::uint32_t dropped{0};  ///< Distinct producer spans beyond the cap.
};

/// One link per distinct producer span context of `rows` (a well-formed trace_id and span_id: 32 and 16 lower-case
/// hex digits, not all zero; anything else is no link), in first-seen order, each carrying the number of the
/// claim's events it wrote as `messaging.batch.message_count`. At most `max_links` (OpenTelemetry's default link
/// limit is 128): the others are counted in `dropped`.
ProducerLinks LinkProducers(const std::vector<PendingRow>& rows, std::size_t max_links);

}  // namespace eventlog::relay::detail
