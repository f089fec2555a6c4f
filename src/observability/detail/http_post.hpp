#pragma once

// A small libcurl POST client for the exporters' background threads (private to observability).

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace eventlog::observability::detail {

/// One POST: URL, extra header lines ("Name: value"), body, deadlines, and how much of the answer to keep.
struct HttpRequest {
    std::string url;
    std::vector<std::string> headers;
    std::string body;
    std::chrono::milliseconds timeout{10'000};               ///< The whole exchange.
    std::chrono::milliseconds connect_timeout{3'000};        ///< TCP and TLS connect.
    std::size_t max_response_bytes{std::size_t{64} * 1024};  ///< The rest of the body is read and discarded.
};

/// The answer, or the transport error when there was none.
struct HttpResponse {
    long status{0};           ///< HTTP status; 0 when no answer arrived.
    std::string body;         ///< At most max_response_bytes.
    std::string error;        ///< libcurl's message when status is 0 (names host and port, never headers).
    std::string retry_after;  ///< Retry-After header value, "" when absent.
    std::string rate_limits;  ///< X-Sentry-Rate-Limits header value, "" when absent.
};

/// Sends POSTs over one reused connection (keep-alive). Move-only; not thread-safe: one per sending thread.
class HttpClient {
public:
    HttpClient();
    ~HttpClient();
    HttpClient(HttpClient&&) noexcept;
    HttpClient& operator=(HttpClient&&) noexcept;

    /// Sends `request`; never throws for transport or HTTP errors (they are in the response). Only http and
    /// https URLs are followed, redirects are not.
    HttpResponse Post(const HttpRequest& request);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace eventlog::observability::detail
