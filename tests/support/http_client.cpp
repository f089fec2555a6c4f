#include "support/http_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace eventlog::testing {

HttpConnection::HttpConnection(std::uint16_t port, std::chrono::milliseconds timeout) : timeout_(timeout) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error("socket() failed");
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
        ::close(fd_);
        fd_ = -1;
        throw std::runtime_error("connect() to 127.0.0.1:" + std::to_string(port) + " failed");
    }
}

HttpConnection::~HttpConnection() {
    if (fd_ >= 0) ::close(fd_);
}

HttpConnection::HttpConnection(HttpConnection&& other) noexcept
    : fd_(other.fd_), timeout_(other.timeout_), buffer_(std::move(other.buffer_)) {
    other.fd_ = -1;
}

bool HttpConnection::SendRaw(std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n <= 0) return false;
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

HttpAnswer HttpConnection::Read() {
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    const auto fill = [&]() -> bool {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
        char chunk[65536];
        const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
        if (n <= 0) return false;
        buffer_.append(chunk, static_cast<std::size_t>(n));
        return true;
    };
    HttpAnswer answer;
    std::size_t end = 0;
    for (;;) {
        // Skip interim 1xx answers (100 Continue).
        end = buffer_.find("\r\n\r\n");
        if (end != std::string::npos && buffer_.compare(0, 10, "HTTP/1.1 1") == 0) {
            buffer_.erase(0, end + 4);
            continue;
        }
        if (end != std::string::npos) break;
        if (!fill()) return answer;
    }
    const std::string head = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);
    answer.status = std::stoi(head.substr(9, 3));
    std::size_t line = head.find("\r\n");
    while (line != std::string::npos) {
        const std::size_t next = head.find("\r\n", line + 2);
        const std::string h = head.substr(line + 2, next == std::string::npos ? std::string::npos : next - line - 2);
        const auto colon = h.find(':');
        if (colon != std::string::npos) {
            std::string name = h.substr(0, colon);
            std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
            std::string value = h.substr(colon + 1);
            while (!value.empty() && value.front() == ' ') value.erase(0, 1);
            answer.headers[name] = value;
        }
        line = next;
    }
    const std::size_t length =
        answer.headers.count("content-length") ? std::stoul(answer.headers["content-length"]) : 0;
    while (buffer_.size() < length) {
        if (!fill()) {
            answer.status = 0;
            return answer;
        }
    }
    answer.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return answer;
}

std::string HttpConnection::ReadUntilClosed() {
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    std::string out = std::move(buffer_);
    buffer_.clear();
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd p{fd_, POLLIN, 0};
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return out;
        char chunk[65536];
        const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
        if (n <= 0) return out;
        out.append(chunk, static_cast<std::size_t>(n));
    }
}

bool HttpConnection::ClosedByPeer(std::chrono::milliseconds wait) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(wait.count())) <= 0) return false;
    char c;
    return ::recv(fd_, &c, 1, MSG_PEEK) <= 0;
}

std::string FormatRequest(std::string_view method, std::string_view target, std::string_view body,
                          const std::vector<std::pair<std::string, std::string>>& headers, bool keep_alive) {
    std::string out = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\n";
    bool has_host = false;
    for (const auto& [name, value] : headers) {
        if (name == "Host") has_host = true;
        out += name + ": " + value + "\r\n";
    }
    if (!has_host) out += "Host: 127.0.0.1\r\n";
    if (!body.empty() || method == "POST") out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    if (!keep_alive) out += "Connection: close\r\n";
    out += "\r\n";
    out += body;
    return out;
}

HttpAnswer HttpRequest(std::uint16_t port, std::string_view method, std::string_view target, std::string_view body,
                       const std::vector<std::pair<std::string, std::string>>& headers) {
    HttpConnection connection(port);
    connection.SendRaw(FormatRequest(method, target, body, headers, false));
    return connection.Read();
}

}  // namespace eventlog::testing
