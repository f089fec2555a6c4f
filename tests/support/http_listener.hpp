#pragma once

// A tiny HTTP/1.1 server on 127.0.0.1 for tests of HTTP clients (exporters): it records each request and
// answers with what the test's responder returns.
//
//   eventlog::testing::HttpListener listener;                    // ephemeral port, default answer 200 "{}"
//   listener.SetResponder([](const auto& r) { return eventlog::testing::HttpListener::Response{429, {"Retry-After:
//   60"}}; });
//   ... point the client at listener.Url() ...
//   ASSERT_TRUE(listener.WaitForRequests(1, std::chrono::seconds(5)));
//   EXPECT_EQ(listener.Requests()[0].path, "/api/42/envelope/");
//
// One thread accepts and serves connections one at a time (keep-alive honoured, Content-Length bodies only).
// Non-copyable, non-movable; every method is thread-safe; the destructor stops and joins the thread.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace eventlog::testing {

class HttpListener {
public:
    /// A received request; header names lower-cased.
    struct Request {
        std::string method;
        std::string path;
        std::map<std::string, std::string> headers;
        std::string body;
    };
    /// What to answer.
    struct Response {
        int status{200};
        std::vector<std::string> headers;  ///< "Name: value" lines.
        std::string body{"{}"};
    };
    using Responder = std::function<Response(const Request&)>;

    /// Listens on 127.0.0.1, an ephemeral port. Throws std::runtime_error when the socket cannot be set up.
    HttpListener();
    ~HttpListener();
    HttpListener(const HttpListener&) = delete;
    HttpListener& operator=(const HttpListener&) = delete;

    int Port() const noexcept { return port_; }
    /// "http://127.0.0.1:<port>".
    std::string Url() const;
    /// Replaces the responder (default: 200 with body "{}").
    void SetResponder(Responder responder);
    /// Every request received so far, in order.
    std::vector<Request> Requests() const;
    /// Waits until at least `count` requests arrived; false on timeout.
    bool WaitForRequests(std::size_t count, std::chrono::milliseconds timeout) const;

private:
    void Serve();
    void ServeConnection(int fd);

    int listen_fd_{-1};
    int port_{0};
    mutable std::mutex mutex_;
    mutable std::condition_variable arrived_;
    std::vector<Request> requests_;
    Responder responder_;
    bool stopping_{false};
    std::thread thread_;
};

/// A TCP port on 127.0.0.1 that nothing listens on (bound, then closed), for "collector unreachable" tests.
int ClosedLoopbackPort();

}  // namespace eventlog::testing
