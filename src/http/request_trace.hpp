#pragma once

// The hook that stores the producing span's trace with the events of a request (docs/observability.md, "Traces").

#include <eventlog/http/server.hpp>
#include <vector>

#include "http/input.hpp"

namespace eventlog::http::detail {

/// Gives every event that has no trace_id of its own the trace id of the request's span (an incoming traceparent's
/// trace, else the trace the server started and exports), so that event_log.trace_id leads to the request that
/// wrote it, and the span's id, so that the relay's span links to it. An event's own trace_id, even "", is kept
/// (and gets no span id: the request's span is not in that trace); an untraced request (Request::trace_id "")
/// changes nothing.
inline void InheritRequestTrace(std::vector<IncomingEvent>& events, const Request& request) {
    if (request.trace_id.empty()) return;
    for (auto& e : events) {
        if (e.trace_id) continue;
        e.trace_id = request.trace_id;
        if (!request.span_id.empty()) e.span_id = request.span_id;
    }
}

}  // namespace eventlog::http::detail
