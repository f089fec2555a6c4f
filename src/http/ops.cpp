#include <eventlog/http/ops.hpp>
#include <eventlog/observability/metrics.hpp>
#include <string>
#include <utility>

namespace eventlog::http {
namespace {

class MetricsHandler : public Handler {
public:
    explicit MetricsHandler(const metrics::Registry& registry) : registry_(registry) {}
    Response Handle(const Request&) override {
        Response r;
        r.body = registry_.Render();
        r.content_type = std::string(metrics::kContentType);
        return r;
    }

private:
    const metrics::Registry& registry_;
};

class HealthHandler : public Handler {
public:
    Response Handle(const Request&) override { return JsonResponse(200, R"({"status":"ok"})"); }
};

class ReadyHandler : public Handler {
public:
    explicit ReadyHandler(std::function<std::string()> not_ready) : not_ready_(std::move(not_ready)) {}
    Response Handle(const Request&) override {
        const std::string reason = not_ready_();
        if (reason.empty()) return JsonResponse(200, R"({"status":"ready"})");
        Problem p;
        p.status = 503;
        p.error = reason;  // our own text (Relay::GetHealth), no server message in it
        return ToResponse(p);
    }

private:
    std::function<std::string()> not_ready_;
};

}  // namespace

std::shared_ptr<Handler> MakeMetricsHandler(const metrics::Registry& registry) {
    return std::make_shared<MetricsHandler>(registry);
}

std::shared_ptr<Router> MakeOpsRouter(const metrics::Registry& registry, std::function<std::string()> not_ready) {
    auto router = std::make_shared<Router>();
    router->Add("GET", "/metrics", MakeMetricsHandler(registry));
    router->Add("GET", "/healthz", std::make_shared<HealthHandler>());
    router->Add("GET", "/readyz", std::make_shared<ReadyHandler>(std::move(not_ready)));
    return router;
}

}  // namespace eventlog::http
