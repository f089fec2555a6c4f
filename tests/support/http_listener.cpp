#include "support/http_listener.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace eventlog::testing {
namespace {

int BindLoopback(int* port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    socklen_t length = sizeof address;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        const int e = errno;
        ::close(fd);
        throw std::runtime_error(std::string("bind 127.0.0.1: ") + std::strerror(e));
    }
    *port = ntohs(address.sin_port);
    return fd;
}

/// Waits up to `ms` for `fd` to be readable; false on timeout.
bool Readable(int fd, int ms) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, ms) > 0;
}

const char* Reason(int status) {
    switch (status) {
        case 200:
            return "OK";
        case 400:
            return "Bad Request";
        case 429:
            return "Too Many Requests";
        case 500:
            return "Internal Server Error";
        case 503:
            return "Service Unavailable";
        default:
            return "Status";
    }
}

}  // namespace

HttpListener::HttpListener() {
    listen_fd_ = BindLoopback(&port_);
    if (::listen(listen_fd_, 16) != 0) {
        ::close(listen_fd_);
        throw std::runtime_error("listen on 127.0.0.1 failed");
    }
    thread_ = std::thread([this] { Serve(); });
}

HttpListener::~HttpListener() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    thread_.join();
    ::close(listen_fd_);
}

std::string HttpListener::Url() const { return "http://127.0.0.1:" + std::to_string(port_); }

void HttpListener::SetResponder(Responder responder) {
    std::lock_guard lock(mutex_);
    responder_ = std::move(responder);
}

std::vector<HttpListener::Request> HttpListener::Requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
}

bool HttpListener::WaitForRequests(std::size_t count, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    return arrived_.wait_for(lock, timeout, [&] { return requests_.size() >= count; });
}

void HttpListener::Serve() {
    while (true) {
        {
            std::lock_guard lock(mutex_);
            if (stopping_) return;
        }
        if (!Readable(listen_fd_, 50)) continue;
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) continue;
        ServeConnection(fd);
        ::close(fd);
    }
}

void HttpListener::ServeConnection(int fd) {
    std::string buffer;
    while (true) {
        // Read the head.
        std::size_t head_end = std::string::npos;
        while ((head_end = buffer.find("\r\n\r\n")) == std::string::npos) {
            {
                std::lock_guard lock(mutex_);
                if (stopping_) return;
            }
            if (!Readable(fd, 50)) continue;
            char chunk[8192];
            const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
            if (n <= 0) return;
            buffer.append(chunk, static_cast<std::size_t>(n));
        }
        Request request;
        const std::string head = buffer.substr(0, head_end);
        buffer.erase(0, head_end + 4);
        std::size_t line_end = head.find("\r\n");
        const std::string request_line = head.substr(0, line_end);
        const auto sp1 = request_line.find(' ');
        const auto sp2 = request_line.find(' ', sp1 + 1);
        request.method = request_line.substr(0, sp1);
        request.path = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
        std::size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
        while (pos < head.size()) {
            std::size_t next = head.find("\r\n", pos);
            if (next == std::string::npos) next = head.size();
            const std::string line = head.substr(pos, next - pos);
            const auto colon = line.find(':');
            if (colon != std::string::npos) {
                std::string name = line.substr(0, colon);
                std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
                std::string value = line.substr(colon + 1);
                value.erase(0, value.find_first_not_of(" \t"));
                request.headers[name] = value;
            }
            pos = next + 2;
        }
        std::size_t length = 0;
        if (auto it = request.headers.find("content-length"); it != request.headers.end()) {
            length = std::stoul(it->second);
        }
        while (buffer.size() < length) {
            if (!Readable(fd, 5000)) return;
            char chunk[8192];
            const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
            if (n <= 0) return;
            buffer.append(chunk, static_cast<std::size_t>(n));
        }
        request.body = buffer.substr(0, length);
        buffer.erase(0, length);

        Responder responder;
        {
            std::lock_guard lock(mutex_);
            responder = responder_;
        }
        const Response response = responder ? responder(request) : Response{};
        {
            std::lock_guard lock(mutex_);
            requests_.push_back(std::move(request));
        }
        arrived_.notify_all();
        std::string out = "HTTP/1.1 " + std::to_string(response.status) + " " + Reason(response.status) + "\r\n";
        for (const auto& h : response.headers) out += h + "\r\n";
        out += "Content-Type: application/json\r\nContent-Length: " + std::to_string(response.body.size()) +
               "\r\n\r\n" + response.body;
        std::size_t sent = 0;
        while (sent < out.size()) {
            const ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
            if (n <= 0) return;
            sent += static_cast<std::size_t>(n);
        }
    }
}

int ClosedLoopbackPort() {
    int port = 0;
    const int fd = BindLoopback(&port);
    ::close(fd);
    return port;
}

}  // namespace eventlog::testing
