#pragma once

// A minimal HTTP/1.1 client over a raw loopback socket, for tests that must control exactly what is sent and when
// (keep-alive, partial headers, gzip bodies). Not for production use: no TLS, no chunked answers.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace eventlog::testing {

/// A parsed answer. Plain value type.
struct HttpAnswer {
    int status{0};                               ///< 0 when the server closed without answering.
    std::map<std::string, std::string> headers;  ///< Lower-case names.
    std::string body;
};

/// One TCP connection to 127.0.0.1:port. Move-only; closes in the destructor. Not thread-safe.
class HttpConnection {
public:
    /// Connects; throws std::runtime_error when it cannot. Reads wait at most `timeout`.
    explicit HttpConnection(std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(10));
    ~HttpConnection();
    HttpConnection(HttpConnection&& other) noexcept;
    HttpConnection& operator=(HttpConnection&&) = delete;
    HttpConnection(const HttpConnection&) = delete;
    HttpConnection& operator=(const HttpConnection&) = delete;

    /// Writes raw bytes; false when the peer has closed.
    bool SendRaw(std::string_view bytes);
    /// Reads one answer (Content-Length framed); status 0 when the connection closed first or the read timed out.
    HttpAnswer Read();
    /// True when the server has closed the connection (a read returns EOF or reset within `wait`).
    bool ClosedByPeer(std::chrono::milliseconds wait);
    /// Every byte the server sends until it closes the connection (or the timeout passes), unparsed.
    std::string ReadUntilClosed();

private:
    int fd_{-1};
    std::chrono::milliseconds timeout_;
    std::string buffer_;
};

/// One request on a new connection: `headers` are added to Host (127.0.0.1) and Content-Length.
HttpAnswer HttpRequest(std::uint16_t port, std::string_view method, std::string_view target, std::string_view body = {},
                       const std::vector<std::pair<std::string, std::string>>& headers = {});

/// The raw request text for `method`, `target`, `headers` and `body` (Host and Content-Length added).
std::string FormatRequest(std::string_view method, std::string_view target, std::string_view body,
                          const std::vector<std::pair<std::string, std::string>>& headers, bool keep_alive);

}  // namespace eventlog::testing
