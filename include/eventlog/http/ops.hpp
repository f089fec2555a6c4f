#pragma once

#include <eventlog/http/server.hpp>
#include <functional>
#include <memory>
#include <string>

namespace eventlog::metrics {
class Registry;
}

namespace eventlog::http {

/// The routes of a process's operations listener (the relay's METRICS_LISTEN): GET /metrics renders `registry`
/// (Prometheus text format 0.0.4), GET /healthz answers 200 while the process runs, GET /readyz answers 200, or
/// 503 with {"error": reason} when `not_ready` returns a reason. `registry` must outlive the router.
/// GET /metrics: renders `registry` (Prometheus text format 0.0.4). No authentication: the figures are counts by
/// fixed labels, never an id, a key or a payload (docs/observability.md). `registry` must outlive the handler.
std::shared_ptr<Handler> MakeMetricsHandler(const metrics::Registry& registry);

std::shared_ptr<Router> MakeOpsRouter(const metrics::Registry& registry, std::function<std::string()> not_ready);

}  // namespace eventlog::http
