#include <algorithm>
#include <cctype>
#include <eventlog/core/json.hpp>
#include <eventlog/http/server.hpp>

namespace eventlog::http {
namespace {

std::vector<std::string> Segments(std::string_view path) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= path.size()) {
        const std::size_t slash = path.find('/', start);
        const std::size_t end = slash == std::string_view::npos ? path.size() : slash;
        if (end > start) out.emplace_back(path.substr(start, end - start));
        if (slash == std::string_view::npos) break;
        start = slash + 1;
    }
    return out;
}

bool IsParam(const std::string& segment) {
    return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

}  // namespace

std::string Request::Header(std::string_view lower_case_name) const {
    const auto it = headers.find(std::string(lower_case_name));
    return it == headers.end() ? std::string() : it->second;
}

std::string Request::MediaType() const {
    std::string type = Header("content-type");
    if (const auto semicolon = type.find(';'); semicolon != std::string::npos) type.resize(semicolon);
    while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.pop_back();
    while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.erase(0, 1);
    std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return std::tolower(c); });
    return type;
}

bool Handler::HandleAsync(const Request& /*request*/, const Completion& /*done*/) { return false; }

Handler::Admission Handler::Admit(const Request& /*head*/, bool /*may_block*/) { return {}; }

Response JsonResponse(int status, std::string body) {
    Response r;
    r.status = status;
    r.body = std::move(body);
    return r;
}

Response ToResponse(const Problem& problem) {
    std::string body = "{\"error\":";
    AppendJsonString(body, problem.error);
    if (!problem.field.empty()) {
        body += ",\"field\":";
        AppendJsonString(body, problem.field);
    }
    if (problem.index) body += ",\"index\":" + std::to_string(*problem.index);
    if (problem.offset) body += ",\"offset\":" + std::to_string(*problem.offset);
    body += "}";
    Response r = JsonResponse(problem.status, std::move(body));
    if (problem.retry_after) r.headers.emplace_back("Retry-After", std::to_string(*problem.retry_after));
    if (problem.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
    if (!problem.allow.empty()) {
        std::string allow;
        for (const auto& m : problem.allow) allow += (allow.empty() ? "" : ", ") + m;
        r.headers.emplace_back("Allow", allow);
    }
    return r;
}

void Router::Add(std::string method, const std::string& pattern, std::shared_ptr<Handler> handler) {
    const bool trailing_slash = pattern.size() > 1 && pattern.back() == '/';
    Route route{std::move(method), pattern, Segments(pattern), std::move(handler), trailing_slash};
    for (auto& r : routes_) {
        if (r.method == route.method && r.segments == route.segments && r.trailing_slash == route.trailing_slash) {
            r = std::move(route);
            return;
        }
    }
    routes_.push_back(std::move(route));
}

Router::Match Router::Find(std::string_view method, std::string_view path) const {
    Match result;
    result.status = 404;
    // Only the exact path: a leading slash, no empty segment, a trailing slash only where the route's pattern has one
    // (the console's Django-style URLs). Matching after dropping empty segments let `//metrics` past a proxy's
    // exact-path rule for `/metrics`.
    const bool exact = !path.empty() && path.front() == '/' && path.find("//") == std::string_view::npos;
    if (!exact) return result;
    const bool trailing_slash = path.size() > 1 && path.back() == '/';
    const auto segments = Segments(path);
    for (const auto& route : routes_) {
        if (route.segments.size() != segments.size() || route.trailing_slash != trailing_slash) continue;
        std::map<std::string, std::string> params;
        bool matches = true;
        for (std::size_t i = 0; i < segments.size() && matches; ++i) {
            if (IsParam(route.segments[i])) {
                params[route.segments[i].substr(1, route.segments[i].size() - 2)] = segments[i];
            } else {
                matches = route.segments[i] == segments[i];
            }
        }
        if (!matches) continue;
        result.route = route.pattern;
        // HEAD is answered like GET, without the body (the server leaves it out).
        if (route.method == method || (method == "HEAD" && route.method == "GET")) {
            result.handler = route.handler;
            result.params = std::move(params);
            result.status = 200;
            result.allow.clear();
            return result;
        }
        result.status = 405;
        for (const std::string_view allowed : {std::string_view(route.method), std::string_view("HEAD")}) {
            if (allowed == "HEAD" && route.method != "GET") continue;
            if (std::find(result.allow.begin(), result.allow.end(), allowed) == result.allow.end()) {
                result.allow.emplace_back(allowed);
            }
        }
    }
    return result;
}

}  // namespace eventlog::http
