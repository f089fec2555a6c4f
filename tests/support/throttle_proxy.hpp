#pragma once

// A TCP proxy for tests that need a slow or breakable link to a server (e.g. ClickHouse's HTTP port).
//
//   eventlog::testing::ThrottleProxy proxy("127.0.0.1", clickhouse_port);
//   proxy.SetRate(50 * 1024);                                   // client -> server: 50 KiB/s
//   config = stack.ConfigWith({{"CLICKHOUSE_URI", "http://127.0.0.1:" + std::to_string(proxy.Port())}});
//   ...
//   proxy.CloseAll();                                           // drop every live connection at once
//
// Plain POSIX sockets and poll(2); one acceptor thread plus one thread per proxied connection, all joined
// by the destructor.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace eventlog::testing {

/// Listens on 127.0.0.1 (an ephemeral port) and forwards every accepted connection to `target_host:target_port`,
/// limiting the bytes per second each connection may carry client -> server (upstream) and, optionally,
/// server -> client (downstream). The limit is a token bucket per connection and direction with a burst of 1/20 s
/// of traffic; changing a rate takes effect at once, for live connections too. Half-closes are forwarded.
/// Non-copyable, non-movable; every method is thread-safe. The destructor drops every connection and joins all
/// threads.
class ThrottleProxy {
public:
    /// Starts listening and accepting at once. Throws std::runtime_error when the socket cannot be set up.
    /// A rate of 0 means unlimited. The target is connected to (resolved with getaddrinfo) per accepted
    /// connection; when that fails, the client's connection is closed.
    ThrottleProxy(std::string target_host, int target_port, std::size_t upstream_bytes_per_second = 0,
                  std::size_t downstream_bytes_per_second = 0);
    /// Stops accepting, drops every live connection, joins every thread.
    ~ThrottleProxy();
    ThrottleProxy(const ThrottleProxy&) = delete;
    ThrottleProxy& operator=(const ThrottleProxy&) = delete;
    ThrottleProxy(ThrottleProxy&&) = delete;
    ThrottleProxy& operator=(ThrottleProxy&&) = delete;

    /// The local port clients connect to (on 127.0.0.1).
    int Port() const noexcept { return port_; }
    /// "http://127.0.0.1:<Port()>", for HTTP clients.
    std::string Url() const;

    /// Limits client -> server traffic to `bytes_per_second` per connection (0: unlimited).
    void SetRate(std::size_t bytes_per_second) noexcept;
    /// Limits server -> client traffic to `bytes_per_second` per connection (0: unlimited).
    void SetDownstreamRate(std::size_t bytes_per_second) noexcept;

    /// Drops every live connection at once (both sockets shut down and closed; data not yet forwarded is
    /// discarded). New connections are still accepted afterwards.
    void CloseAll();

    /// From now on, every new connection is answered by the proxy itself: it reads one HTTP request (headers and a
    /// Content-Length body), answers `status` with "Connection: close" and closes, as a rate-limiting proxy or load
    /// balancer in front of the server would. Live connections are dropped, so a keep-alive client must reconnect
    /// and meet the refusal. `status` 0 ends the refusal: new connections are forwarded again.
    void RefuseRequests(int status);
    /// The steady-clock times at which refused requests were answered, in order.
    std::vector<std::chrono::steady_clock::time_point> RefusedAt() const;

    /// Connections currently being proxied.
    std::size_t ActiveConnections() const;
    /// Connections accepted since construction.
    std::uint64_t AcceptedConnections() const noexcept { return accepted_.load(); }
    /// Bytes forwarded client -> server so far, over all connections.
    std::uint64_t BytesUpstream() const noexcept { return bytes_up_.load(); }
    /// Bytes forwarded server -> client so far, over all connections.
    std::uint64_t BytesDownstream() const noexcept { return bytes_down_.load(); }

private:
    struct Connection;

    void AcceptLoop();
    void Refuse(Connection& connection, int status);
    void Serve(Connection& connection);
    void ReapFinished();

    std::string target_host_;
    int target_port_;
    int listen_fd_{-1};
    int wake_read_fd_{-1};  // self-pipe: wakes the acceptor on shutdown
    int wake_write_fd_{-1};
    int port_{0};
    std::atomic<bool> stopping_{false};
    std::atomic<std::size_t> up_rate_;
    std::atomic<std::size_t> down_rate_;
    std::atomic<std::uint64_t> accepted_{0};
    std::atomic<std::uint64_t> bytes_up_{0};
    std::atomic<std::uint64_t> bytes_down_{0};
    std::atomic<int> refuse_status_{0};
    std::vector<std::chrono::steady_clock::time_point> refused_at_;  // guarded by mutex_
    mutable std::mutex mutex_;                                       // guards connections_ and refused_at_
    std::list<std::unique_ptr<Connection>> connections_;             // live and finished-but-unjoined connections
    std::thread acceptor_;
};

}  // namespace eventlog::testing
