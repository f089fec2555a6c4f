// Client behaviour against a scripted fake HTTP server on 127.0.0.1: error classification of
// timeouts, dropped connections and server errors, request layout, keep-alive, secret redaction.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <eventlog/clickhouse/client.hpp>
#include <eventlog/core/error.hpp>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace eventlog::clickhouse {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

/// What the fake server does with one request.
struct Reply {
    std::string response;  ///< Raw HTTP response; empty = send nothing.
    bool close = false;    ///< Close the connection after `response`.
    bool hang = false;     ///< Never answer (until the server stops).
};

/// A thread-per-connection HTTP/1.1 server that hands each request to a handler. Not a general HTTP server.
class FakeServer {
public:
    explicit FakeServer(std::function<Reply(const std::string&)> handler) : handler_(std::move(handler)) {
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        const int one = 1;
        ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 8) != 0) {
            throw std::runtime_error("fake server: bind/listen failed");
        }
        socklen_t len = sizeof addr;
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] { Run(); });
    }

    ~FakeServer() {
        stop_ = true;
        thread_.join();
        for (auto& connection : connections_) connection.join();
        ::close(listen_fd_);
    }

    std::string Url() const { return "http://127.0.0.1:" + std::to_string(port_); }
    int Accepted() const { return accepted_; }
    std::vector<std::string> Requests() {
        std::lock_guard lock(mutex_);
        return requests_;
    }

private:
    bool WaitReadable(int fd) {
        while (!stop_) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 20) > 0) return true;
        }
        return false;
    }

    void Run() {
        while (WaitReadable(listen_fd_)) {
            const int fd = ::accept(listen_fd_, nullptr, nullptr);
            if (fd < 0) continue;
            ++accepted_;
            connections_.emplace_back([this, fd] {
                Serve(fd);
                ::close(fd);
            });
        }
    }

    void Serve(int fd) {
        std::string buffer;
        while (true) {
            // Read one request: headers, then Content-Length bytes of body.
            std::size_t header_end;
            while ((header_end = buffer.find("\r\n\r\n")) == std::string::npos) {
                char chunk[4096];
                if (!WaitReadable(fd)) return;
                const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
                if (n <= 0) return;
                buffer.append(chunk, static_cast<std::size_t>(n));
            }
            std::size_t body_size = 0;
            const auto cl = buffer.find("Content-Length: ");
            if (cl != std::string::npos && cl < header_end) body_size = std::stoul(buffer.substr(cl + 16));
            while (buffer.size() < header_end + 4 + body_size) {
                char chunk[4096];
                if (!WaitReadable(fd)) return;
                const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
                if (n <= 0) return;
                buffer.append(chunk, static_cast<std::size_t>(n));
            }
            const std::string request = buffer.substr(0, header_end + 4 + body_size);
            buffer.erase(0, request.size());
            {
                std::lock_guard lock(mutex_);
                requests_.push_back(request);
            }
            const Reply reply = handler_(request);
            if (reply.hang) {
                while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(10));
                return;
            }
            if (!reply.response.empty()) ::send(fd, reply.response.data(), reply.response.size(), MSG_NOSIGNAL);
            if (reply.close) return;
        }
    }

    std::function<Reply(const std::string&)> handler_;
    int listen_fd_{-1};
    int port_{0};
    std::atomic<bool> stop_{false};
    std::atomic<int> accepted_{0};
    std::mutex mutex_;
    std::vector<std::string> requests_;
    std::thread thread_;
    std::vector<std::thread> connections_;  // only touched by thread_ and, after it joined, the destructor
};

std::string Http(int status, const std::string& body, const std::string& extra_headers = "") {
    return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\nConnection: Keep-Alive\r\n" + extra_headers + "\r\n" + body;
}

ClientOptions FastOptions(const std::string& url) {
    ClientOptions options;
    options.base_url = url;
    options.database = "db";
    options.connect_timeout = std::chrono::milliseconds(500);
    options.send_receive_timeout = std::chrono::milliseconds(300);
    return options;
}

template <typename E>
std::string MessageOf(const std::function<void()>& f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    } catch (const std::exception& e) {
        ADD_FAILURE() << "wrong exception type: " << e.what();
        return {};
    }
    ADD_FAILURE() << "no exception";
    return {};
}

TEST(ClickHouseClientFakeServerTest, TimeoutIsInDoubtForInsertAndTransientForQuery) {
    FakeServer server([](const std::string&) { return Reply{"", false, true}; });
    Client client(FastOptions(server.Url()));
    const auto message = MessageOf<InDoubtError>([&] { client.Insert("t", "(`a`)", "row"); });
    EXPECT_THAT(message, HasSubstr(server.Url()));
    EXPECT_THAT(message, HasSubstr("outcome unknown"));
    MessageOf<TransientError>([&] { client.Query("SELECT 1"); });
}

TEST(ClickHouseClientFakeServerTest, DroppedConnectionIsInDoubtForInsert) {
    FakeServer server([](const std::string&) { return Reply{"", true, false}; });
    Client client(FastOptions(server.Url()));
    MessageOf<InDoubtError>([&] { client.Insert("t", "(`a`)", "row"); });
    MessageOf<TransientError>([&] { client.Execute("SELECT 1"); });
}

TEST(ClickHouseClientFakeServerTest, ServerErrorWithoutCode) {
    FakeServer server([](const std::string&) { return Reply{Http(502, "Bad Gateway\n")}; });
    Client client(FastOptions(server.Url()));
    EXPECT_THAT(MessageOf<InDoubtError>([&] { client.Insert("t", "(`a`)", "row"); }), HasSubstr("HTTP 502"));
    EXPECT_THAT(MessageOf<TransientError>([&] { client.Query("SELECT 1"); }), HasSubstr("Bad Gateway"));
}

TEST(ClickHouseClientFakeServerTest, ModernErrorWithHeaderCode) {
    FakeServer server([](const std::string&) {
        return Reply{Http(404,
                          "Code: 60. DB::Exception: Table db.t does not exist. (UNKNOWN_TABLE) (version 24.8.4.13)\n",
                          "X-ClickHouse-Exception-Code: 60\r\n")};
    });
    Client client(FastOptions(server.Url()));
    const auto message = MessageOf<ConfigError>([&] { client.Insert("t", "(`a`)", "row"); });
    EXPECT_THAT(message, HasSubstr("UNKNOWN_TABLE"));
    EXPECT_THAT(message, HasSubstr("Table db.t does not exist"));
    EXPECT_THAT(message, Not(HasSubstr("\n")));
}

TEST(ClickHouseClientFakeServerTest, ExceptionHeaderOn200IsAnError) {
    FakeServer server([](const std::string&) {
        return Reply{
            Http(200, "1\nCode: 241. DB::Exception: Memory limit exceeded", "X-ClickHouse-Exception-Code: 241\r\n")};
    });
    Client client(FastOptions(server.Url()));
    MessageOf<TransientError>([&] { client.Query("SELECT 1"); });
}

TEST(ClickHouseClientFakeServerTest, SecretsAreNotInMessages) {
    FakeServer server([](const std::string&) {
        return Reply{Http(401,
                          "Code: 516. DB::Exception: alice: Authentication failed: password is incorrect, or there is "
                          "no user with such name. (AUTHENTICATION_FAILED)")};
    });
    ClientOptions options = FastOptions("http://alice:url-secret@" + server.Url().substr(7));
    options.user = "alice";
    options.password = "header-secret";
    Client client(options);
    const auto message = MessageOf<ConfigError>([&] { client.Ping(); });
    EXPECT_THAT(message, HasSubstr("authentication failed for user 'alice'"));
    EXPECT_THAT(message, HasSubstr(server.Url()));
    EXPECT_THAT(message, Not(HasSubstr("secret")));
    EXPECT_EQ(client.DisplayUrl(), server.Url());
}

TEST(ClickHouseClientFakeServerTest, RequestLayoutAndKeepAlive) {
    FakeServer server([](const std::string& request) {
        if (request.rfind("GET /ping", 0) == 0) return Reply{Http(200, "Ok.\n")};
        return Reply{Http(200, "")};
    });
    ClientOptions options = FastOptions(server.Url());
    options.user = "relay";
    options.password = "pw";
    options.database = "analytics";
    Client client(options);
    client.Ping();
    InsertOptions insert_options;
    insert_options.query_id = "q-1";
    insert_options.deduplication_token = "batch 7";
    client.Insert("event_log", "(`a`, `b`)", std::string("\x01\x00z", 3), insert_options);
    client.Query("SELECT 1", {{"max_threads", "2"}});
    // Ping and Query share one keep-alive connection; the insert used its own (insert_on_fresh_connection).
    EXPECT_EQ(server.Accepted(), 2);

    const auto requests = server.Requests();
    ASSERT_EQ(requests.size(), 3u);
    EXPECT_THAT(requests[0], HasSubstr("GET /ping HTTP/1.1\r\n"));
    EXPECT_THAT(requests[0], HasSubstr("X-ClickHouse-User: relay\r\n"));
    EXPECT_THAT(requests[0], HasSubstr("X-ClickHouse-Key: pw\r\n"));
    EXPECT_THAT(requests[1], HasSubstr("POST /?database=analytics&query=INSERT%20INTO%20%60analytics%60.%60event_log%60"
                                       "%20%28%60a%60%2C%20%60b%60%29%20FORMAT%20RowBinary&query_id=q-1"
                                       "&insert_deduplication_token=batch%207 HTTP/1.1\r\n"));
    EXPECT_EQ(requests[1].substr(requests[1].size() - 3), std::string("\x01\x00z", 3));
    EXPECT_THAT(requests[2], HasSubstr("POST /?database=analytics&wait_end_of_query=1&max_threads=2 HTTP/1.1\r\n"));
    EXPECT_EQ(requests[2].substr(requests[2].size() - 8), "SELECT 1");
}

// libcurl silently re-sends a request when a *reused* connection dies before any response byte; for an
// INSERT that would duplicate rows (or turn an in-doubt insert into a "connection refused" on the retry).
// With insert_on_fresh_connection (the default) an insert never rides a reused connection.
Reply CloseOnSecondRequest(std::atomic<int>& count) {
    const int n = ++count;
    if (n == 2) return Reply{"", true, false};
    return Reply{Http(200, "Ok.\n")};
}

TEST(ClickHouseClientFakeServerTest, InsertIsNeverSilentlyResent) {
    std::atomic<int> count{0};
    FakeServer server([&](const std::string&) { return CloseOnSecondRequest(count); });
    Client client(FastOptions(server.Url()));
    client.Ping();
    MessageOf<InDoubtError>([&] { client.Insert("t", "(`a`)", "row"); });
    EXPECT_EQ(server.Requests().size(), 2u);
    client.Ping();  // the client recovers on a new connection
}

TEST(ClickHouseClientFakeServerTest, CurlResendsOnReusedConnectionWhenFreshConnectionIsOff) {
    std::atomic<int> count{0};
    FakeServer server([&](const std::string&) { return CloseOnSecondRequest(count); });
    ClientOptions options = FastOptions(server.Url());
    options.insert_on_fresh_connection = false;
    Client client(options);
    client.Ping();
    client.Insert("t", "(`a`)", "row");       // "succeeds"...
    EXPECT_EQ(server.Requests().size(), 3u);  // ...after curl sent the insert twice
}

TEST(ClickHouseClientFakeServerTest, VersionIsCached) {
    FakeServer server([](const std::string&) { return Reply{Http(200, "23.8.2.7\n")}; });
    Client client(FastOptions(server.Url()));
    EXPECT_EQ(client.Version().text, "23.8.2.7");
    EXPECT_TRUE(client.SupportsDeduplicationToken());
    EXPECT_TRUE(client.SupportsDateTime64());
    EXPECT_EQ(server.Requests().size(), 1u);
}

TEST(ClickHouseClientFakeServerTest, ResponseLargerThanTheCapIsRefused) {
    const std::string big(256 * 1024, 'x');
    FakeServer server([&](const std::string&) { return Reply{Http(200, big)}; });
    ClientOptions options = FastOptions(server.Url());
    options.max_response_bytes = 1000;
    Client client(options);
    const auto message = MessageOf<ConfigError>([&] { client.Query("SELECT repeat('x', 262144)"); });
    EXPECT_THAT(message, HasSubstr("response larger than 1000 bytes"));
    EXPECT_THAT(message, HasSubstr("max_response_bytes"));
    EXPECT_THAT(MessageOf<InDoubtError>([&] { client.Insert("t", "(`a`)", "row"); }),
                HasSubstr("response larger than 1000 bytes"));
}

TEST(ClickHouseClientFakeServerTest, ResponseUpToTheCapIsReturned) {
    const std::string body(1000, 'x');
    FakeServer server([&](const std::string&) { return Reply{Http(200, body)}; });
    ClientOptions options = FastOptions(server.Url());
    options.max_response_bytes = 1000;
    Client client(options);
    EXPECT_EQ(client.Query("SELECT 1"), body);
}

TEST(ClickHouseClientFakeServerTest, DefaultResponseCapIs64MiB) {
    EXPECT_EQ(ClientOptions{}.max_response_bytes, std::size_t{64} << 20);
}

// The CA file reaches libcurl: a missing one fails the TLS setup before any byte is sent, as a ConfigError.
TEST(ClickHouseClientFakeServerTest, CaFileIsUsedForHttps) {
    FakeServer server([](const std::string&) { return Reply{Http(200, "Ok.\n")}; });
    ClientOptions options = FastOptions("https://127.0.0.1:" + server.Url().substr(server.Url().rfind(':') + 1));
    options.ca_file = "/nonexistent/eventlog-test-ca.pem";
    Client client(options);
    EXPECT_THAT(MessageOf<ConfigError>([&] { client.Ping(); }), HasSubstr("TLS"));
}

TEST(ClickHouseVersionOverflowTest, LongDigitRunsSaturate) {
    const auto v = ParseServerVersion("99999999999999999999.1");
    EXPECT_EQ(v.major, std::numeric_limits<int>::max());
    EXPECT_EQ(v.minor, 1);
    EXPECT_TRUE(v.AtLeast(22, 2));
    const auto w = ParseServerVersion("23.99999999999999999999999.3");
    EXPECT_EQ(w.major, 23);
    EXPECT_EQ(w.minor, std::numeric_limits<int>::max());
    EXPECT_EQ(w.patch, 3);
}

}  // namespace
}  // namespace eventlog::clickhouse
