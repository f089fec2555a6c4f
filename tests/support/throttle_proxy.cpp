#include "support/throttle_proxy.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace eventlog::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kBufferSize = 64 * 1024;
/// Longest a connection thread sleeps in poll() before looking at its stop flag again.
constexpr int kMaxPollMs = 50;

[[noreturn]] void ThrowErrno(const std::string& what) {
    throw std::runtime_error("ThrottleProxy: " + what + ": " + std::strerror(errno));
}

void SetNonBlocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL, 0);
    if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

void CloseFd(int& fd) {
    if (fd >= 0) {
        ::close(fd);
        fd = -1;
    }
}

/// A blocking TCP connection to host:port, or -1.
int ConnectTo(const std::string& host, int port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return -1;
    int fd = -1;
    for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
        fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
        CloseFd(fd);
    }
    ::freeaddrinfo(found);
    if (fd >= 0) {
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;
}

/// A token bucket: `rate` bytes per second, burst of 1/20 s of traffic (at least 256 bytes).
class Bucket {
public:
    /// Bytes that may be read now (0 when the caller must wait), and in `wait` how long to wait otherwise.
    std::size_t Allowance(std::size_t rate, Clock::time_point now, std::chrono::milliseconds& wait) {
        wait = std::chrono::milliseconds(0);
        if (rate == 0) {
            last_ = now;
            tokens_ = 0;
            return kBufferSize;
        }
        const double burst = std::max(256.0, static_cast<double>(rate) / 20.0);
        if (last_ == Clock::time_point{}) {
            tokens_ = burst;
        } else {
            tokens_ = std::min(
                burst, tokens_ + std::chrono::duration<double>(now - last_).count() * static_cast<double>(rate));
        }
        last_ = now;
        // Never forward in dribbles: wait for a chunk of min(burst, 1 KiB).
        const double chunk = std::min(burst, 1024.0);
        if (tokens_ >= chunk) return static_cast<std::size_t>(tokens_);
        const double seconds = (chunk - tokens_) / static_cast<double>(rate);
        wait = std::chrono::milliseconds(static_cast<long>(seconds * 1000.0) + 1);
        return 0;
    }
    void Consume(std::size_t bytes) { tokens_ -= static_cast<double>(bytes); }

private:
    double tokens_{0};
    Clock::time_point last_{};
};

/// One direction of a proxied connection: bytes read from `from`, buffered, written to `to`.
struct Pipe {
    Pipe(int* from_fd, int* to_fd) : from(from_fd), to(to_fd) {}
    int* from;
    int* to;
    std::vector<char> buffer = std::vector<char>(kBufferSize);
    std::size_t begin{0};
    std::size_t end{0};
    bool eof{false};   // `from` reached end of stream
    bool shut{false};  // `to` was shut down for writing after eof
    Bucket bucket;
    bool Pending() const { return begin < end; }
    bool Done() const { return eof && !Pending(); }
};

}  // namespace

struct ThrottleProxy::Connection {
    int client_fd{-1};
    int server_fd{-1};
    std::atomic<bool> closing{false};
    std::atomic<bool> finished{false};
    std::thread thread;
};

ThrottleProxy::ThrottleProxy(std::string target_host, int target_port, std::size_t upstream_bytes_per_second,
                             std::size_t downstream_bytes_per_second)
    : target_host_(std::move(target_host)),
      target_port_(target_port),
      up_rate_(upstream_bytes_per_second),
      down_rate_(downstream_bytes_per_second) {
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) ThrowErrno("pipe2");
    wake_read_fd_ = pipe_fds[0];
    wake_write_fd_ = pipe_fds[1];
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) {
        CloseFd(wake_read_fd_);
        CloseFd(wake_write_fd_);
        ThrowErrno("socket");
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    socklen_t length = sizeof(address);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        ::listen(listen_fd_, 64) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        const int saved = errno;
        CloseFd(listen_fd_);
        CloseFd(wake_read_fd_);
        CloseFd(wake_write_fd_);
        errno = saved;
        ThrowErrno("bind/listen on 127.0.0.1");
    }
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
}

ThrottleProxy::~ThrottleProxy() {
    stopping_.store(true);
    const char byte = 'x';
    [[maybe_unused]] const auto written = ::write(wake_write_fd_, &byte, 1);
    if (acceptor_.joinable()) acceptor_.join();
    CloseAll();
    std::list<std::unique_ptr<Connection>> connections;
    {
        std::lock_guard lock(mutex_);
        connections.swap(connections_);
    }
    for (auto& c : connections) {
        if (c->thread.joinable()) c->thread.join();
    }
    CloseFd(listen_fd_);
    CloseFd(wake_read_fd_);
    CloseFd(wake_write_fd_);
}

std::string ThrottleProxy::Url() const { return "http://127.0.0.1:" + std::to_string(port_); }

void ThrottleProxy::SetRate(std::size_t bytes_per_second) noexcept { up_rate_.store(bytes_per_second); }

void ThrottleProxy::SetDownstreamRate(std::size_t bytes_per_second) noexcept { down_rate_.store(bytes_per_second); }

void ThrottleProxy::CloseAll() {
    std::lock_guard lock(mutex_);
    for (auto& c : connections_) {
        c->closing.store(true);
        // Shut down, not close: the connection's own thread closes its descriptors (under mutex_), so a
        // descriptor number is never reused behind our back. Shutting down wakes its poll() at once.
        if (c->client_fd >= 0) ::shutdown(c->client_fd, SHUT_RDWR);
        if (c->server_fd >= 0) ::shutdown(c->server_fd, SHUT_RDWR);
    }
}

std::size_t ThrottleProxy::ActiveConnections() const {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(
        std::count_if(connections_.begin(), connections_.end(), [](const auto& c) { return !c->finished.load(); }));
}

void ThrottleProxy::ReapFinished() {
    std::list<std::unique_ptr<Connection>> finished;
    {
        std::lock_guard lock(mutex_);
        for (auto it = connections_.begin(); it != connections_.end();) {
            if ((*it)->finished.load()) {
                finished.push_back(std::move(*it));
                it = connections_.erase(it);
            } else {
                ++it;
            }
        }
    }
    for (auto& c : finished) {
        if (c->thread.joinable()) c->thread.join();
    }
}

void ThrottleProxy::AcceptLoop() {
    while (!stopping_.load()) {
        pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_read_fd_, POLLIN, 0}};
        const int ready = ::poll(fds, 2, 1000);
        ReapFinished();
        if (stopping_.load()) break;
        if (ready <= 0 || (fds[0].revents & POLLIN) == 0) continue;
        const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) continue;
        accepted_.fetch_add(1);
        if (const int status = refuse_status_.load(); status != 0) {
            auto connection = std::make_unique<Connection>();
            connection->client_fd = client;
            Connection& ref = *connection;
            std::lock_guard lock(mutex_);
            connections_.push_back(std::move(connection));
            ref.thread = std::thread([this, &ref, status] { Refuse(ref, status); });
            continue;
        }
        const int server = ConnectTo(target_host_, target_port_);
        if (server < 0) {
            ::close(client);
            continue;
        }
        const int one = 1;
        ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        SetNonBlocking(client);
        SetNonBlocking(server);
        auto connection = std::make_unique<Connection>();
        connection->client_fd = client;
        connection->server_fd = server;
        Connection& ref = *connection;
        std::lock_guard lock(mutex_);
        connections_.push_back(std::move(connection));
        ref.thread = std::thread([this, &ref] { Serve(ref); });
    }
}

void ThrottleProxy::Serve(Connection& connection) {
    Pipe up(&connection.client_fd, &connection.server_fd);
    Pipe down(&connection.server_fd, &connection.client_fd);
    Pipe* pipes[2] = {&up, &down};
    std::atomic<std::size_t>* rates[2] = {&up_rate_, &down_rate_};
    std::atomic<std::uint64_t>* counters[2] = {&bytes_up_, &bytes_down_};
    bool failed = false;
    while (!failed && !connection.closing.load() && !stopping_.load() && !(up.Done() && down.Done())) {
        const auto now = Clock::now();
        std::chrono::milliseconds timeout(kMaxPollMs);
        std::size_t allowance[2] = {0, 0};
        short events[2] = {0, 0};  // [0]: client fd, [1]: server fd
        for (int d = 0; d < 2; ++d) {
            Pipe& p = *pipes[d];
            const int from_slot = d == 0 ? 0 : 1;
            const int to_slot = 1 - from_slot;
            if (p.eof && !p.Pending() && !p.shut) {
                ::shutdown(*p.to, SHUT_WR);  // forward the half-close
                p.shut = true;
            }
            if (p.Pending()) {
                events[to_slot] |= POLLOUT;
            } else if (!p.eof) {
                std::chrono::milliseconds wait(0);
                allowance[d] = p.bucket.Allowance(rates[d]->load(), now, wait);
                if (allowance[d] > 0) {
                    events[from_slot] |= POLLIN;
                } else {
                    timeout = std::min(timeout, wait);
                }
            }
        }
        pollfd fds[2] = {{connection.client_fd, events[0], 0}, {connection.server_fd, events[1], 0}};
        const int ready = ::poll(fds, 2, static_cast<int>(timeout.count()));
        if (ready < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (ready == 0) continue;
        bool progressed = false;
        for (int d = 0; d < 2; ++d) {
            Pipe& p = *pipes[d];
            const pollfd& from = fds[d == 0 ? 0 : 1];
            const pollfd& to = fds[d == 0 ? 1 : 0];
            if ((from.events & POLLIN) != 0 && (from.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
                const std::size_t want = std::min(allowance[d], p.buffer.size());
                const ssize_t n = ::recv(*p.from, p.buffer.data(), want, 0);
                if (n > 0) {
                    p.begin = 0;
                    p.end = static_cast<std::size_t>(n);
                    p.bucket.Consume(p.end);
                    progressed = true;
                } else if (n == 0) {
                    p.eof = true;
                    progressed = true;
                } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    failed = true;
                }
            }
            if ((to.events & POLLOUT) != 0 && (to.revents & (POLLOUT | POLLHUP | POLLERR)) != 0 && p.Pending()) {
                const ssize_t n = ::send(*p.to, p.buffer.data() + p.begin, p.end - p.begin, MSG_NOSIGNAL);
                if (n > 0) {
                    p.begin += static_cast<std::size_t>(n);
                    counters[d]->fetch_add(static_cast<std::uint64_t>(n));
                    progressed = true;
                } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    failed = true;
                }
            }
        }
        // A hang-up or error reported on a descriptor we are not reading yet (throttled) would make poll()
        // return at once in a loop: sleep out the throttle instead.
        if (!progressed && !failed) {
            for (const auto& f : fds) {
                if ((f.revents & POLLERR) != 0 && (f.events & (POLLIN | POLLOUT)) == 0) failed = true;
            }
            if (!failed) std::this_thread::sleep_for(timeout);
        }
    }
    std::lock_guard lock(mutex_);
    CloseFd(connection.client_fd);
    CloseFd(connection.server_fd);
    connection.finished.store(true);
}

void ThrottleProxy::RefuseRequests(int status) {
    refuse_status_.store(status);
    if (status != 0) CloseAll();
}

std::vector<std::chrono::steady_clock::time_point> ThrottleProxy::RefusedAt() const {
    std::lock_guard lock(mutex_);
    return refused_at_;
}

// Reads one request (blocking, with a 10 s bound per read), answers `status` and closes.
void ThrottleProxy::Refuse(Connection& connection, int status) {
    std::string request;
    std::size_t need = std::string::npos;  // total bytes of headers and body, once the headers are complete
    char buffer[65536];
    while (!stopping_.load() && !connection.closing.load() && (need == std::string::npos || request.size() < need)) {
        pollfd fd{connection.client_fd, POLLIN, 0};
        if (::poll(&fd, 1, 100) <= 0) continue;
        const ssize_t n = ::recv(connection.client_fd, buffer, sizeof(buffer), 0);
        if (n == 0) break;  // the client closed
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            break;
        }
        request.append(buffer, static_cast<std::size_t>(n));
        const auto end = request.find("\r\n\r\n");
        if (need == std::string::npos && end != std::string::npos) {
            std::size_t length = 0;
            std::string headers = request.substr(0, end);
            for (auto& c : headers) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            if (const auto at = headers.find("\r\ncontent-length:"); at != std::string::npos) {
                length = std::stoul(headers.substr(at + 17));
            }
            need = end + 4 + length;
        }
    }
    if (need != std::string::npos && request.size() >= need) {
        const std::string body = "refused by the test proxy\n";
        const std::string answer = "HTTP/1.1 " + std::to_string(status) + " Refused\r\nContent-Type: text/plain\r\n" +
                                   "Content-Length: " + std::to_string(body.size()) +
                                   "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" + body;
        {
            std::lock_guard lock(mutex_);
            refused_at_.push_back(Clock::now());
        }
        ::send(connection.client_fd, answer.data(), answer.size(), MSG_NOSIGNAL);
    }
    ::shutdown(connection.client_fd, SHUT_RDWR);
    std::lock_guard lock(mutex_);
    CloseFd(connection.client_fd);
    connection.finished.store(true);
}

}  // namespace eventlog::testing
