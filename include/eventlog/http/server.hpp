#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace eventlog::metrics {
class Registry;
}
namespace eventlog::tracing {
class TraceExporter;
}

namespace eventlog::http {

/// One HTTP request as a handler sees it: the body is already decoded (gzip inflated) and bounded. Plain value type.
struct Request {
    std::string method;                          ///< "GET", "POST", ...
    std::string path;                            ///< The target before '?', e.g. "/api/v1/events".
    std::string query;                           ///< The target after '?' ("" when none).
    std::map<std::string, std::string> headers;  ///< Header names in lower case; a repeated header keeps the last.
    std::string body;                            ///< Decoded body.
    std::map<std::string, std::string> params;   ///< Path parameters filled by the router ("{event_id}").
    /// The request span's ids (lower-case hex), set by the server when the request is traced (it came with a valid
    /// W3C `traceparent`, whose trace is continued, or the server exports spans: a new trace); "" otherwise. Every
    /// log line written while the handler runs carries the span's ids in either case.
    std::string trace_id;
    std::string span_id;
    /// The peer's IP address as the server's socket saw it (a proxy's, behind one); "" when unknown.
    std::string client_address;

    /// The value of header `lower_case_name`, "" when absent.
    std::string Header(std::string_view lower_case_name) const;
    /// The media type of Content-Type, lower case, without parameters ("application/json"); "" when absent.
    std::string MediaType() const;
};

/// One HTTP response. Plain value type.
struct Response {
    int status{200};
    std::string body;
    std::string content_type{"application/json"};
    std::vector<std::pair<std::string, std::string>> headers;  ///< Extra headers (Retry-After, Allow, ...).
};

/// A refusal a handler (or the server) turns into a JSON error answer {"error","field","index"}. `error` is our own
/// short text: never server text, SQL or a stack trace. Copyable.
struct Problem {
    int status{400};
    std::string error;
    std::string field;                  ///< "" when no field applies.
    std::optional<std::size_t> index;   ///< The event's index in a batch, when one applies.
    std::optional<int> retry_after;     ///< Seconds, sent as Retry-After (503).
    std::optional<std::size_t> offset;  ///< Byte offset of malformed JSON, sent as "offset".
    std::vector<std::string> allow;     ///< Methods for a 405's Allow header.
};

/// Thrown by handlers for an answer other than their success: the server renders it with ToResponse().
class ProblemError : public std::exception {
public:
    explicit ProblemError(Problem problem) : problem_(std::move(problem)) {}
    const char* what() const noexcept override { return problem_.error.c_str(); }
    /// The refusal to send.
    const Problem& Get() const noexcept { return problem_; }

private:
    Problem problem_;
};

/// The JSON answer for `problem` (its body, status and headers).
Response ToResponse(const Problem& problem);

/// A JSON response with `status` and `body`.
Response JsonResponse(int status, std::string body);

/// One route's logic. Implementations are shared by all server threads: Handle() and HandleAsync() must be
/// thread-safe.
class Handler {
public:
    /// The answer to a request taken by HandleAsync(): the response, or instead (non-null `error`) what Handle()
    /// would have thrown, which the server renders the same way. Called exactly once, from any thread, but never from
    /// within HandleAsync() itself. Copyable.
    using Completion = std::function<void(Response response, std::exception_ptr error)>;

    virtual ~Handler() = default;
    /// Answers `request`; throws ProblemError for a refusal (any other exception becomes a logged 500). Runs on a
    /// worker thread and may block.
    virtual Response Handle(const Request& request) = 0;
    /// Tried first, on a network thread, for a request whose body is small and not compressed: a handler that can
    /// answer it without blocking a thread returns true and calls `done` later (e.g. from a thread of its own); false
    /// leaves the request to Handle() on a worker thread. Must not block. Throws as Handle() does for an answer it
    /// gives at once (then `done` is not called). The default takes nothing.
    virtual bool HandleAsync(const Request& request, const Completion& done);

    /// The answer of Admit().
    struct Admission {
        bool decided{true};              ///< false: not decidable without blocking; asked again with may_block
        std::optional<Problem> refusal;  ///< set: the request is refused with it, its body unread
    };
    /// Called once the request's headers are read, before its body (`head` has no body and no params): a handler
    /// that can refuse a request from its headers alone (a missing or unknown API key) does it here, so that a
    /// refused request costs no body read, inflation or parse, and no database session while its key is known. First
    /// called on a network thread with `may_block` false, where it must not block; a handler that needs I/O to
    /// decide returns `decided = false` and is called again on a worker thread with `may_block` true. A refused
    /// request is answered and its connection closed. The default admits every request.
    virtual Admission Admit(const Request& head, bool may_block);
};

/// Maps (method, path) to a handler. Patterns are literal segments and `{name}` segments that match one non-empty
/// segment and fill Request::params. A path matches only exactly: a trailing slash only where the pattern has one
/// ("/admin/login/", as Django's URLs), never an empty segment. Built before the server starts, then read-only
/// (thread-safe to read).
class Router {
public:
    /// Adds a route; a second handler for the same method and pattern replaces the first.
    void Add(std::string method, const std::string& pattern, std::shared_ptr<Handler> handler);

    /// The result of Match(): the handler and path parameters, or the status 404 / 405 (with the allowed methods).
    struct Match {
        std::shared_ptr<Handler> handler;
        std::map<std::string, std::string> params;
        int status{200};
        std::vector<std::string> allow;
        /// The pattern of the route whose path matched ("/api/v1/events/{event_id}"), also for a 405; "" for a 404.
        /// Metric labels use it, never the path itself.
        std::string route;
    };
    /// Finds the route for `method` and `path`.
    Match Find(std::string_view method, std::string_view path) const;

private:
    struct Route {
        std::string method;
        std::string pattern;
        std::vector<std::string> segments;
        std::shared_ptr<Handler> handler;
        bool trailing_slash{false};
    };
    std::vector<Route> routes_;
};

/// Server settings with documented defaults (docs/http-api.md lists the variables that set them).
struct ServerOptions {
    std::string host{"127.0.0.1"};  ///< HTTP_LISTEN's host (a literal IPv4 or IPv6 address).
    std::uint16_t port{8000};       ///< HTTP_LISTEN's port; 0 picks a free one (tests).
    std::vector<std::string> allowed_hosts{"localhost", "127.0.0.1"};  ///< ALLOWED_HOSTS; "*" allows any Host.
    unsigned io_threads{0};                                            ///< Network threads; 0: the number of cores.
    unsigned worker_threads{64};        ///< HTTP_WORKERS: threads that run handlers (block on SQL or a group commit).
    std::size_t max_connections{1024};  ///< HTTP_MAX_CONNECTIONS: more are answered 503 and closed.
    /// HTTP_MAX_CONNECTIONS_PER_CLIENT: connections one client address may hold at once (more are answered 503 and
    /// closed), so that one client cannot take all of max_connections; 0: no per-client limit (behind a proxy every
    /// client has the proxy's address: set it above the proxy's connection pool, or 0).
    std::size_t max_connections_per_client{256};
    std::size_t max_body_bytes{16u << 20};             ///< HTTP_MAX_BODY_BYTES: body as sent and as inflated.
    std::size_t max_header_bytes{16u << 10};           ///< Request line plus headers (431 beyond).
    std::chrono::milliseconds header_timeout{10'000};  ///< HTTP_HEADER_TIMEOUT_MS: idle keep-alive + headers.
    std::chrono::milliseconds body_timeout{30'000};    ///< HTTP_BODY_TIMEOUT_MS: reading the body.
    std::chrono::milliseconds write_timeout{30'000};   ///< Writing the answer.
    /// When set (it must outlive the server), the server registers eventlog_http_requests_total{route,status} and
    /// eventlog_http_request_duration_seconds there and counts every answer: route is the route's pattern, or
    /// "unmatched" for a path no route has; the duration runs from the complete headers to the answer's start.
    metrics::Registry* metrics{nullptr};
    /// Called (on a worker thread) when a handler throws something other than ProblemError or eventlog::Error: the
    /// answer is a 500. `route` as for metrics. Must not throw (what it throws is ignored).
    std::function<void(const std::exception& error, const std::string& route)> on_unhandled;
    /// When set (it must outlive the server), each request's span is exported: kind server, named "METHOD route",
    /// with http.request.method, http.route and http.response.status_code; status error for a 5xx answer.
    tracing::TraceExporter* tracer{nullptr};
};

/// The HTTP/1.1 server (Boost.Beast): keep-alive, network I/O on io_threads, handlers on worker_threads, the
/// limits of ServerOptions. Not copyable or movable; thread-safe. The router is shared, read-only.
class Server {
public:
    Server(ServerOptions options, std::shared_ptr<const Router> router);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    /// Binds and starts the threads; throws ConfigError when the address cannot be bound.
    void Start();
    /// The bound port (after Start()).
    std::uint16_t Port() const;
    /// Graceful stop, callable from any thread (e.g. a signal thread): stops accepting, closes idle connections,
    /// lets requests in flight finish and answer (with Connection: close). Returns at once; Wait() joins.
    void Stop();
    /// Stops at once: in-flight requests are abandoned (their connections closed without an answer).
    void Abort();
    /// Blocks until every thread has finished after Stop() or Abort().
    void Wait();
    /// True once Stop() or Abort() was called (readiness turns false).
    bool Stopping() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace eventlog::http
