#include "relay/detail/producer_links.hpp"

#include <string>
#include <unordered_map>

namespace eventlog::relay::detail {

ProducerLinks LinkProducers(const std::vector<PendingRow>& rows, std::size_t max_links) {
    ProducerLinks out;
    // Key: the two ids' text; value: the link's index, or npos for a span beyond the cap (counted once).
    std::unordered_map<std::string, std::size_t> seen;
    std::vector<std::int64_t> counts;
    for (const auto& row : rows) {
        const auto& e = row.event;
        if (e.span_id.size() != 16 || e.trace_id.size() != 32) continue;
        auto [it, inserted] = seen.try_emplace(e.trace_id + e.span_id, std::string::npos);
        if (inserted) {
            const auto trace = tracing::ParseTraceId(e.trace_id);
            const auto span = tracing::ParseSpanId(e.span_id);
            if (!trace || !span) continue;  // stays npos, never counted
            if (out.links.size() == max_links) {
                ++out.dropped;
                continue;
            }
            it->second = out.links.size();
            out.links.push_back({{*trace, *span, 0}, {}});
            counts.push_back(0);
        }
        if (it->second != std::string::npos) ++counts[it->second];
    }
    for (std::size_t i = 0; i < out.links.size(); ++i) {
        out.links[i].attributes = {{"messaging.batch.message_count", counts[i]}};
    }
    return out;
}

}  // namespace eventlog::relay::detail
