// The HTTP/1.1 server on Boost.Beast. Network I/O runs on an io_context shared by io_threads; each connection's
// handlers are serialised on its own strand. A complete request is handed to a worker pool (handlers block on
// PostgreSQL), and the answer is posted back to the connection's strand. Deadlines: headers (also the keep-alive
// idle time), body, write. A slow client holds one socket and nothing else.
// clang-format off
#include <utility>  // first: Boost 1.74's asio/awaitable.hpp uses std::exchange without including it
// Boost 1.74's beast::http::basic_parser returns boost::none in a way GCC 12 reports as maybe-uninitialized when
// inlined under -fsanitize (a false positive inside the library): silenced for Boost's headers only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#pragma GCC diagnostic pop
// clang-format on
#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <eventlog/core/error.hpp>
#include <eventlog/http/errors.hpp>
#include <eventlog/http/server.hpp>
#include <eventlog/observability/log.hpp>
#include <eventlog/observability/metrics.hpp>
#include <eventlog/observability/tracing.hpp>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "http/gzip.hpp"

namespace eventlog::http {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using BeastRequest = bhttp::request<bhttp::string_body>;

std::string Lower(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
    return out;
}

Problem MakeProblem(int status, std::string error) {
    Problem p;
    p.status = status;
    p.error = std::move(error);
    return p;
}

/// True when a Transfer-Encoding value is exactly `chunked` (any case, spaces and tabs around it allowed).
bool IsPlainChunked(std::string_view value) {
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    constexpr std::string_view kChunked = "chunked";
    if (value.size() != kChunked.size()) return false;
    for (std::size_t i = 0; i < value.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(value[i])) != kChunked[i]) return false;
    }
    return true;
}

/// The host part of a Host header value: "[::1]:8000" -> "::1", "example.com:80" -> "example.com".
std::string HostWithoutPort(std::string_view host) {
    if (!host.empty() && host.front() == '[') {
        const auto close = host.find(']');
        return close == std::string_view::npos ? std::string() : std::string(host.substr(1, close - 1));
    }
    return Lower(host.substr(0, host.find(':')));
}

}  // namespace

struct Server::Impl {
    class Session;

    Impl(ServerOptions o, std::shared_ptr<const Router> r)
        : options(std::move(o)),
          router(std::move(r)),
          ioc(static_cast<int>(IoThreads())),
          acceptor(net::make_strand(ioc)),
          workers(std::max(1u, options.worker_threads)) {
        if (options.metrics != nullptr) {
            requests = &options.metrics->AddCounter(metrics::kHttpRequests);
            duration = &options.metrics->AddHistogram(metrics::kHttpRequestDuration).Get();
        }
    }

    unsigned IoThreads() const {
        if (options.io_threads != 0) return options.io_threads;
        return std::max(1u, std::thread::hardware_concurrency());
    }

    struct Exchange;
    /// Starts answering a request whose body was read (on its connection's strand): small requests a handler takes
    /// without blocking stay on this network thread, the others go to a worker thread.
    void Process(const std::shared_ptr<Session>& session, BeastRequest& beast_request) noexcept;
    /// The checks before a handler: Host, route (404/405), Content-Encoding. Fills the exchange's request and
    /// handler; true when the body is gzip (inflated on the worker thread).
    bool Dispatch(Exchange& exchange, BeastRequest& beast_request);
    /// Ends the exchange with `response`, or with what `error` renders to: the span, then the answer on the
    /// connection's strand.
    void Complete(const std::shared_ptr<Exchange>& exchange, Response response, std::exception_ptr error) noexcept;
    /// The answer for an exception a handler threw (ProblemError as it says; other errors logged).
    Response Render(std::exception_ptr error, const std::string& route) const noexcept;
    /// The refusal for `error` (a handler's exception), logged and reported as Render() does.
    Problem ProblemOf(std::exception_ptr error, const std::string& route) const noexcept;
    /// The route label of a request whose headers were read: its route's pattern, or kUnmatched.
    std::string RouteOf(std::string_view method, std::string_view target) const;
    /// 400 naming `Host` when `host_header` (without its port) is not in ALLOWED_HOSTS.
    std::optional<Problem> HostProblem(std::string_view host_header) const;
    /// 404, or 405 with the allowed methods, when no route takes `method` on `target`'s path.
    std::optional<Problem> RouteProblem(std::string_view method, std::string_view target) const;
    /// Counts one answer (when metrics are on).
    void Count(const std::string& route, int status, std::chrono::steady_clock::time_point started) const;
    void ReportUnhandled(const std::exception& error, const std::string& route) const noexcept;
    void Accept();
    void OnAccept(beast::error_code ec, tcp::socket socket);

    ServerOptions options;
    std::shared_ptr<const Router> router;
    net::io_context ioc;
    tcp::acceptor acceptor;
    net::thread_pool workers;
    std::vector<std::thread> threads;
    std::atomic<bool> stopping{false};
    std::atomic<std::size_t> connections{0};
    std::mutex clients_mutex;
    std::unordered_map<std::string, std::size_t> clients;  // open connections per client address
    /// Counts a connection from `client`; false (nothing counted) when it already holds its limit.
    bool AdmitClient(const std::string& client);
    /// Uncounts a connection from `client`.
    void ReleaseClient(const std::string& client);
    std::mutex exchanges_mutex;
    std::condition_variable exchanges_done;
    std::size_t exchanges{0};  // requests between their body and their answer's post (Wait() waits for them)
    std::mutex sessions_mutex;
    std::set<std::shared_ptr<Session>> sessions;  // live connections, for Stop()
    std::uint16_t port{0};
    bool joined{false};
    metrics::CounterFamily* requests{nullptr};  // null without ServerOptions::metrics
    metrics::Histogram* duration{nullptr};
};

/// The route label of a request that matched no route (never the path: it would make a series per URL).
constexpr std::string_view kUnmatched = "unmatched";

/// Bodies up to this size (as received, not compressed) are offered to Handler::HandleAsync on the network thread:
/// parsing them there costs less than handing them to a worker thread. Larger ones are parsed on a worker.
constexpr std::size_t kInlineBodyBytes = 64u << 10;

/// The read buffer each connection starts with (it grows for larger requests).
constexpr std::size_t kReadBufferBytes = 4096;

/// One connection. Owned by shared_ptrs held by its pending operations and by Impl::sessions until it closes.
class Server::Impl::Session : public std::enable_shared_from_this<Session> {
public:
    Session(Impl& server, tcp::socket&& socket, std::string client)
        : server_(server), stream_(std::move(socket)), body_timer_(stream_.get_executor()), client_(std::move(client)) {
        // Beast reads at most max(512, free capacity) bytes at a time: with room for a small request's headers and
        // body, one read takes both, where a fresh buffer made it two reads.
        buffer_.reserve(kReadBufferBytes);
    }

    void Start() {
        net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->ReadHeader(); });
    }

    /// Called on Stop(): an idle connection (waiting for a request) is closed; one with a request in flight
    /// finishes it and closes after the answer.
    void StopIfIdle() {
        net::post(stream_.get_executor(), [self = shared_from_this()] {
            if (!self->busy_) self->Close();
        });
    }

    /// The peer's address (set once at accept; safe to read from any thread).
    const std::string& Client() const noexcept { return client_; }

    /// Sends the answer of the request in flight, from any thread; `guard` kept io_context::run() going until now.
    void Respond(Response response, std::string route, net::executor_work_guard<net::io_context::executor_type> guard) {
        net::post(stream_.get_executor(), [self = shared_from_this(), response = std::move(response),
                                           route = std::move(route), guard = std::move(guard)]() mutable {
            self->route_ = std::move(route);
            self->Write(response, self->keep_alive_);
        });
    }

private:
    void ReadHeader() {
        if (server_.stopping.load()) return Close();
        busy_ = false;
        head_only_ = false;
        parser_.emplace();
        parser_->header_limit(static_cast<std::uint32_t>(server_.options.max_header_bytes));
        parser_->body_limit(server_.options.max_body_bytes);
        stream_.expires_after(server_.options.header_timeout);
        bhttp::async_read_header(
            stream_, buffer_, *parser_,
            [self = shared_from_this()](beast::error_code ec, std::size_t) { self->OnHeader(ec); });
    }

    void OnHeader(beast::error_code ec) {
        if (ec == bhttp::error::header_limit) return Fail(MakeProblem(431, "request headers too large"));
        // The parser compares Content-Length with the body limit as soon as the headers are complete.
        if (ec == bhttp::error::body_limit) return Fail(MakeProblem(413, "request body too large"));
        if (ec == bhttp::error::bad_content_length || ec == bhttp::error::bad_transfer_encoding) {
            // Beast refuses a request with both framings, or a malformed one: said, not just closed.
            Problem p = MakeProblem(400, "ambiguous or malformed request framing (Content-Length, Transfer-Encoding)");
            p.field = ec == bhttp::error::bad_content_length ? "Content-Length" : "Transfer-Encoding";
            return Fail(p);
        }
        if (ec) return Close();  // end of stream, timeout (slow or idle client), reset, malformed request line
        busy_ = true;
        started_ = std::chrono::steady_clock::now();
        head_only_ = parser_->get().method() == bhttp::verb::head;
        // Request framing: only plain `chunked` is understood. Any other transfer coding would leave the body
        // unframed, and its bytes would be read as the next request on this connection (smuggling behind a proxy
        // that frames it otherwise); a request with both framings is ambiguous. Refused before any body is read,
        // and the connection is closed with the answer.
        if (const auto te = parser_->get()[bhttp::field::transfer_encoding]; !te.empty()) {
            Problem p = MakeProblem(501, "Transfer-Encoding: only chunked is supported");
            p.field = "Transfer-Encoding";
            if (!IsPlainChunked(std::string_view(te.data(), te.size()))) return Fail(p);
            if (parser_->get().count(bhttp::field::content_length) > 0) {
                p = MakeProblem(400, "both Transfer-Encoding and Content-Length");
                p.field = "Transfer-Encoding";
                return Fail(p);
            }
        }
        const auto length = parser_->content_length();
        if (length && *length > server_.options.max_body_bytes) return Fail(MakeProblem(413, "request body too large"));
        const auto& header = parser_->get();
        // A foreign Host is refused before its body is read (and the connection closed): nothing of it is worth
        // receiving. A client that waits for 100 Continue learns a 404/405 before it sends the body, too.
        const auto host = header[bhttp::field::host];
        if (auto p = server_.HostProblem(std::string_view(host.data(), host.size()))) return Fail(*p);
        // The route's handler may refuse the request from its headers (docs/security.md, "No work before
        // authentication"), deciding here or, when it needs the database, on a worker thread.
        const auto method = header.method_string();
        const auto target = header.target();
        const std::string_view target_view(target.data(), target.size());
        auto match = server_.router->Find(std::string_view(method.data(), method.size()),
                                          target_view.substr(0, target_view.find('?')));
        if (!match.handler) return AfterAdmission();
        Request head;
        head.method = std::string(method.data(), method.size());
        head.path = std::string(target_view.substr(0, target_view.find('?')));
        if (const auto q = target_view.find('?'); q != std::string_view::npos) head.query = target_view.substr(q + 1);
        for (const auto& field : header) {
            const auto name = field.name_string();
            head.headers[Lower(std::string_view(name.data(), name.size()))] = std::string(field.value());
        }
        Handler::Admission admission;
        try {
            admission = match.handler->Admit(head, false);
        } catch (...) {
            return Fail(MakeProblem(500, "internal error"));
        }
        if (admission.decided) {
            if (admission.refusal) return Fail(*admission.refusal);
            return AfterAdmission();
        }
        net::post(server_.workers, [self = shared_from_this(), handler = std::move(match.handler),
                                    route = std::move(match.route), head = std::move(head),
                                    guard = net::make_work_guard(server_.ioc)]() mutable {
            std::optional<Problem> refusal;
            try {
                refusal = handler->Admit(head, true).refusal;
            } catch (...) {  // e.g. no database session: a 503 to send again, logged with its cause
                refusal = self->server_.ProblemOf(std::current_exception(), route);
            }
            net::post(self->stream_.get_executor(), [self, refusal = std::move(refusal), guard = std::move(guard)] {
                if (refusal) return self->Fail(*refusal);
                self->AfterAdmission();
            });
        });
    }

    /// The rest of OnHeader() once the request is admitted: 100 Continue when asked for, then the body.
    void AfterAdmission() {
        const auto& header = parser_->get();
        const auto expect = header[bhttp::field::expect];
        if (!expect.empty() && beast::iequals(expect, "100-continue")) {
            const auto method = header.method_string();
            const auto target = header.target();
            if (auto p = server_.RouteProblem(std::string_view(method.data(), method.size()),
                                              std::string_view(target.data(), target.size()))) {
                return Fail(*p);
            }
            static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
            stream_.expires_after(server_.options.write_timeout);
            net::async_write(stream_, net::buffer(kContinue),
                             [self = shared_from_this()](beast::error_code write_ec, std::size_t) {
                                 if (write_ec) return self->Close();
                                 self->ReadBody();
                             });
            return;
        }
        ReadBody();
    }

    /// Reads the body under its own timer rather than the stream's deadline, which would close the socket: a body
    /// that stops arriving is answered 408 (and the connection closed) instead of being cut off without a word.
    void ReadBody() {
        stream_.expires_never();
        reading_body_ = true;
        body_timed_out_ = false;
        body_timer_.expires_after(server_.options.body_timeout);
        body_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
            if (ec || !self->reading_body_) return;  // cancelled, or the body arrived first (same strand)
            self->body_timed_out_ = true;
            beast::error_code ignored;
            self->stream_.socket().cancel(ignored);
        });
        bhttp::async_read(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, std::size_t) { self->OnBody(ec); });
    }

    void OnBody(beast::error_code ec) {
        reading_body_ = false;
        body_timer_.cancel();
        if (body_timed_out_) return Fail(MakeProblem(408, "request body not received within the time limit"));
        if (ec == bhttp::error::body_limit) return Fail(MakeProblem(413, "request body too large"));
        if (ec) return Close();
        stream_.expires_never();
        request_ = parser_->release();
        keep_alive_ = request_.keep_alive();
        server_.Process(shared_from_this(), request_);
    }

    /// Answers a request that is refused before its body was read, then closes (the rest of the body is unread).
    void Fail(const Problem& problem) {
        if (!busy_) started_ = std::chrono::steady_clock::now();  // the headers were not complete
        busy_ = true;
        const bool logged = log::Enabled(log::Level::kInfo);
        log::Fields access;
        if (parser_ && parser_->is_header_done()) {
            const auto& header = parser_->get();
            const std::string_view method(header.method_string().data(), header.method_string().size());
            const std::string_view target(header.target().data(), header.target().size());
            route_ = server_.RouteOf(method, target);
            if (logged) {
                access = {{"method", std::string(method)}, {"path", std::string(target.substr(0, target.find('?')))}};
            }
        } else {
            route_ = std::string(kUnmatched);
        }
        // The access line of a request refused before its handler (Complete() writes the others).
        if (logged) {
            access.emplace_back("route", route_);
            access.emplace_back("status", static_cast<std::int64_t>(problem.status));
            log::Info("http_request", access);
        }
        Write(ToResponse(problem), false);
    }

    void Write(const Response& response, bool keep_alive) {
        server_.Count(route_, response.status, started_);
        keep_alive = keep_alive && !server_.stopping.load();
        auto message = std::make_shared<std::string>(Serialize(response, keep_alive, !head_only_));
        stream_.expires_after(server_.options.write_timeout);
        net::async_write(stream_, net::buffer(*message),
                         [self = shared_from_this(), message, keep_alive](beast::error_code ec, std::size_t) {
                             if (ec) return self->Close();
                             if (!keep_alive) return self->LingerClose();
                             self->ReadHeader();
                         });
    }

    /// The answer as Beast's serializer wrote it (status line, Content-Type, the extra headers, Connection: close
    /// when the connection ends, Content-Length, the body), in one buffer: one allocation and one send, where the
    /// message object, its fields and the serializer's buffer sequence cost several allocations per answer.
    static std::string Serialize(const Response& response, bool keep_alive, bool with_body = true) {
        const auto reason = bhttp::obsolete_reason(static_cast<bhttp::status>(response.status));
        std::string out;
        out.reserve(128 + response.body.size());
        out += "HTTP/1.1 ";
        out += std::to_string(response.status);
        out += ' ';
        out.append(reason.data(), reason.size());
        out += "\r\nContent-Type: ";
        out += response.content_type;
        for (const auto& [name, value] : response.headers) {
            out += "\r\n";
            out += name;
            out += ": ";
            out += value;
        }
        if (!keep_alive) out += "\r\nConnection: close";
        out += "\r\nContent-Length: ";
        out += std::to_string(response.body.size());
        out += "\r\n\r\n";
        if (with_body) out += response.body;  // a HEAD's answer: the GET's headers, no body (RFC 9110, 9.3.2)
        return out;
    }

    /// Half-closes, then reads and drops what the client still sends (the rest of a refused body) for a short
    /// while: closing with unread data makes the kernel send a reset that can destroy the answer in flight.
    void LingerClose() {
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        stream_.expires_after(std::chrono::seconds(1));
        Drain(0);
    }

    void Drain(std::size_t drained) {
        constexpr std::size_t kMaxDrain = 1u << 20;
        if (drained > kMaxDrain) return Close();
        stream_.async_read_some(net::buffer(scratch_),
                                [self = shared_from_this(), drained](beast::error_code ec, std::size_t n) {
                                    if (ec) return self->Close();
                                    self->Drain(drained + n);
                                });
    }

    void Close() {
        if (closed_) return;
        closed_ = true;
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        stream_.close();
        server_.connections.fetch_sub(1);
        server_.ReleaseClient(client_);
        const std::lock_guard lock(server_.sessions_mutex);
        server_.sessions.erase(shared_from_this());
    }

    Impl& server_;
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
    BeastRequest request_;
    std::array<char, 16384> scratch_{};
    net::steady_timer body_timer_;  // the body's deadline (HTTP_BODY_TIMEOUT_MS)
    std::string client_;            // the peer's address, for the per-client connection count
    bool reading_body_{false};
    bool body_timed_out_{false};
    bool keep_alive_{false};
    bool busy_{false};
    bool head_only_{false};  // the request in flight is a HEAD: its answer goes without the body
    bool closed_{false};
    std::string route_;                              // the metric label of the request in flight
    std::chrono::steady_clock::time_point started_;  // its headers were complete
};

std::optional<Problem> Server::Impl::HostProblem(std::string_view host_header) const {
    const std::string host = HostWithoutPort(host_header);
    const auto& allowed = options.allowed_hosts;
    if (std::find(allowed.begin(), allowed.end(), "*") != allowed.end() ||
        std::find(allowed.begin(), allowed.end(), host) != allowed.end()) {
        return std::nullopt;
    }
    Problem p = MakeProblem(400, "Host not allowed");
    p.field = "Host";
    return p;
}

std::optional<Problem> Server::Impl::RouteProblem(std::string_view method, std::string_view target) const {
    const auto match = router->Find(method, target.substr(0, target.find('?')));
    if (match.status == 404) return MakeProblem(404, "not found");
    if (match.status == 405) {
        Problem p = MakeProblem(405, "method not allowed");
        p.allow = match.allow;
        return p;
    }
    return std::nullopt;
}

std::string Server::Impl::RouteOf(std::string_view method, std::string_view target) const {
    const auto match = router->Find(method, target.substr(0, target.find('?')));
    return match.route.empty() ? std::string(kUnmatched) : match.route;
}

void Server::Impl::Count(const std::string& route, int status, std::chrono::steady_clock::time_point started) const {
    if (requests == nullptr) return;
    requests->WithLabels({route, std::to_string(status)}).Inc();
    duration->Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
}

void Server::Impl::ReportUnhandled(const std::exception& error, const std::string& route) const noexcept {
    if (!options.on_unhandled) return;
    try {
        options.on_unhandled(error, route);
    } catch (...) {  // a reporter's failure never changes the answer
    }
}

/// One request from its body to its answer. Shared by the worker task or the handler's completion; its work guard
/// keeps io_context::run() going until the answer is posted to the connection's strand.
struct Server::Impl::Exchange {
    Exchange(std::shared_ptr<Session> s, net::executor_work_guard<net::io_context::executor_type> g)
        : session(std::move(s)), guard(std::move(g)) {}

    std::shared_ptr<Session> session;
    net::executor_work_guard<net::io_context::executor_type> guard;
    Request request;
    std::shared_ptr<Handler> handler;
    std::string route{kUnmatched};
    std::string method;
    std::optional<tracing::Span> span;
    log::Fields context;  // the request's ids, method and path on every log line written for it
    std::chrono::steady_clock::time_point started{std::chrono::steady_clock::now()};  // the body was read
};

// The request span: an incoming traceparent's trace continued (a malformed one is ignored: a new trace starts),
// its ids in the request and in the log context of the threads that handle it, exported when a tracer is set.
void Server::Impl::Process(const std::shared_ptr<Session>& session, BeastRequest& beast_request) noexcept {
    std::shared_ptr<Exchange> exchange;
    try {
        exchange = std::make_shared<Exchange>(session, net::make_work_guard(ioc));
    } catch (...) {  // out of memory: no answer rather than a crash
        session->Respond(ToResponse(MakeProblem(500, "internal error")), std::string(kUnmatched),
                         net::make_work_guard(ioc));
        return;
    }
    {
        const std::lock_guard lock(exchanges_mutex);
        ++exchanges;
    }
    auto& x = *exchange;
    bool traced = false;
    try {
        x.method = std::string(beast_request.method_string());
        const auto header = beast_request.find("traceparent");
        const auto parent =
            header == beast_request.end()
                ? std::nullopt
                : tracing::ParseTraceparent(std::string_view(header->value().data(), header->value().size()));
        x.span.emplace(tracing::StartSpan("HTTP", tracing::SpanKind::kServer, parent));
        // The request is traced when its caller traces it or when this server exports its spans; otherwise the
        // ids only tie the handler's log lines together, and the handler is not told of a trace that exists nowhere.
        traced = parent.has_value() || (options.tracer != nullptr && options.tracer->Enabled());
        const auto target = beast_request.target();
        const std::string_view path(target.data(), std::min(target.size(), target.find('?')));
        x.context = log::Fields{{"trace_id", tracing::ToHex(x.span->context.trace_id)},
                                {"span_id", tracing::ToHex(x.span->context.span_id)},
                                {"method", x.method},
                                {"path", std::string(path)}};
    } catch (...) {  // no span rather than no answer
    }
    std::optional<log::ScopedContext> context;
    bool inflate = false;
    try {
        context.emplace(x.context);
        if (x.span && traced) {
            x.request.trace_id = tracing::ToHex(x.span->context.trace_id);
            x.request.span_id = tracing::ToHex(x.span->context.span_id);
        }
        inflate = Dispatch(x, beast_request);
        if (!inflate && x.request.body.size() <= kInlineBodyBytes &&
            x.handler->HandleAsync(x.request, [this, exchange](Response response, std::exception_ptr error) {
                std::optional<log::ScopedContext> scope;  // on the handler's thread, for the error's log line
                if (error) {
                    try {
                        scope.emplace(exchange->context);
                    } catch (...) {
                    }
                }
                Complete(exchange, std::move(response), std::move(error));
            })) {
            return;
        }
    } catch (...) {
        Complete(exchange, Response{}, std::current_exception());
        return;
    }
    try {
        net::post(workers, [this, exchange, inflate] {
            std::optional<log::ScopedContext> scope;
            Response response;
            std::exception_ptr error;
            try {
                scope.emplace(exchange->context);
                if (inflate) exchange->request.body = detail::Gunzip(exchange->request.body, options.max_body_bytes);
                response = exchange->handler->Handle(exchange->request);
            } catch (...) {
                error = std::current_exception();
            }
            Complete(exchange, std::move(response), std::move(error));
        });
    } catch (...) {
        Complete(exchange, Response{}, std::current_exception());
    }
}

bool Server::Impl::Dispatch(Exchange& x, BeastRequest& beast_request) {
    auto& request = x.request;
    request.method = x.method;
    const auto beast_target = beast_request.target();
    const std::string_view target(beast_target.data(), beast_target.size());
    const auto question = target.find('?');
    request.path = std::string(target.substr(0, question));
    if (question != std::string_view::npos) request.query = std::string(target.substr(question + 1));
    for (const auto& field : beast_request) {
        const auto name = field.name_string();
        request.headers[Lower(std::string_view(name.data(), name.size()))] = std::string(field.value());
    }
    request.body = std::move(beast_request.body());
    request.client_address = x.session->Client();

    if (auto p = HostProblem(request.Header("host"))) throw ProblemError(*p);
    auto match = router->Find(request.method, request.path);
    if (!match.route.empty()) x.route = match.route;
    if (auto p = RouteProblem(request.method, request.path)) throw ProblemError(*p);
    const std::string encoding = Lower(request.Header("content-encoding"));
    if (!encoding.empty() && encoding != "identity" && encoding != "gzip") {
        Problem p = MakeProblem(415, "unsupported Content-Encoding (gzip or identity)");
        p.field = "Content-Encoding";
        throw ProblemError(p);
    }
    request.params = std::move(match.params);
    x.handler = std::move(match.handler);
    return encoding == "gzip";
}

void Server::Impl::Complete(const std::shared_ptr<Exchange>& exchange, Response response,
                            std::exception_ptr error) noexcept {
    auto& x = *exchange;
    if (error) response = Render(std::move(error), x.route);
    if (x.span && options.tracer != nullptr) {
        try {
            x.span->name = x.method + " " + x.route;
            x.span->attributes = {{"http.request.method", x.method},
                                  {"http.route", x.route},
                                  {"http.response.status_code", static_cast<std::int64_t>(response.status)}};
            if (response.status >= 500) x.span->status = tracing::StatusCode::kError;
            x.span->End();
            options.tracer->Export(std::move(*x.span));
        } catch (...) {
        }
    }
    // The access line, with the request's context (trace_id, span_id, method, path). The duration is the
    // handler's, from the request read in full to the answer built; eventlog_http_request_duration_seconds also
    // counts reading the body.
    if (log::Enabled(log::Level::kInfo)) {
        try {
            log::Fields fields = x.context;
            fields.emplace_back("route", x.route);
            fields.emplace_back("status", static_cast<std::int64_t>(response.status));
            fields.emplace_back(
                "duration_ms",
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - x.started).count());
            log::Info("http_request", fields);
        } catch (...) {  // no line rather than no answer
        }
    }
    x.session->Respond(std::move(response), x.route, std::move(x.guard));
    {
        const std::lock_guard lock(exchanges_mutex);
        --exchanges;
    }
    exchanges_done.notify_all();
}

Response Server::Impl::Render(std::exception_ptr error, const std::string& route) const noexcept {
    try {
        return ToResponse(ProblemOf(std::move(error), route));
    } catch (...) {
        return ToResponse(MakeProblem(500, "internal error"));
    }
}

Problem Server::Impl::ProblemOf(std::exception_ptr error, const std::string& route) const noexcept {
    try {
        std::rethrow_exception(std::move(error));
    } catch (const ProblemError& e) {
        return e.Get();
    } catch (const Error& e) {
        Problem problem = ProblemFor(e);
        log::Fields fields{
            {"kind", std::string(ToString(e.Kind()))}, {"error", std::string(e.what())}, {"route", route}};
        // A 503 (no session, or a commit in doubt) tells the client to send again, as during every failover of the
        // database: a warning. What needs someone is an error.
        if (problem.status == 503) {
            log::Warning("http_request_failed", fields);
        } else {
            log::Error("http_request_failed", fields);
        }
        if (problem.status == 500) ReportUnhandled(e, route);
        return problem;
    } catch (const std::exception& e) {
        log::Error("http_request_failed",
                   {{"kind", std::string("fatal")}, {"error", std::string(e.what())}, {"route", route}});
        ReportUnhandled(e, route);
        return MakeProblem(500, "internal error");
    } catch (...) {
        return MakeProblem(500, "internal error");
    }
}

void Server::Impl::Accept() {
    acceptor.async_accept(net::make_strand(ioc),
                          [this](beast::error_code ec, tcp::socket socket) { OnAccept(ec, std::move(socket)); });
}

bool Server::Impl::AdmitClient(const std::string& client) {
    if (options.max_connections_per_client == 0) return true;
    const std::lock_guard lock(clients_mutex);
    auto& open = clients[client];
    if (open >= options.max_connections_per_client) return false;
    ++open;
    return true;
}

void Server::Impl::ReleaseClient(const std::string& client) {
    if (options.max_connections_per_client == 0) return;
    const std::lock_guard lock(clients_mutex);
    const auto it = clients.find(client);
    if (it == clients.end()) return;
    if (--it->second == 0) clients.erase(it);
}

void Server::Impl::OnAccept(beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
    if (!ec) {
        beast::error_code peer_ec;
        const auto peer = socket.remote_endpoint(peer_ec);
        std::string client = peer_ec ? std::string() : peer.address().to_string();
        const bool over_total = connections.load() >= options.max_connections;
        if (over_total || !AdmitClient(client)) {
            // Refuse without queueing: a short answer on a fresh socket fits its send buffer, so this never blocks.
            static const std::string kBusy =
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                "Connection: close\r\nContent-Length: 33\r\n\r\n{\"error\":\"too many connections\"}\n";
            beast::error_code ignored;
            socket.non_blocking(true, ignored);
            socket.write_some(net::buffer(kBusy), ignored);
            socket.shutdown(tcp::socket::shutdown_both, ignored);
            socket.close(ignored);
            log::Warning("http_connection_refused",
                         {{"reason", std::string(over_total ? "max_connections" : "max_connections_per_client")}});
        } else {
            connections.fetch_add(1);
            auto session = std::make_shared<Session>(*this, std::move(socket), std::move(client));
            {
                const std::lock_guard lock(sessions_mutex);
                sessions.insert(session);
            }
            session->Start();
        }
    }
    if (!stopping.load()) Accept();
}

Server::Server(ServerOptions options, std::shared_ptr<const Router> router)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(router))) {}

Server::~Server() {
    if (!impl_->threads.empty() && !impl_->joined) {
        Abort();
        Wait();
    }
}

void Server::Start() {
    auto& s = *impl_;
    beast::error_code ec;
    const auto address = net::ip::make_address(s.options.host, ec);
    if (ec) throw ConfigError("HTTP_LISTEN: expected a literal IP address as host, got '" + s.options.host + "'");
    const tcp::endpoint endpoint(address, s.options.port);
    s.acceptor.open(endpoint.protocol(), ec);
    if (!ec) s.acceptor.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) s.acceptor.bind(endpoint, ec);
    if (!ec) s.acceptor.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
        throw ConfigError("HTTP_LISTEN: cannot listen on " + s.options.host + ":" + std::to_string(s.options.port) +
                          " (" + ec.message() + ")");
    }
    s.port = s.acceptor.local_endpoint().port();
    s.Accept();
    for (unsigned i = 0; i < s.IoThreads(); ++i) s.threads.emplace_back([&s] { s.ioc.run(); });
    log::Info("http_listening", {{"host", s.options.host},
                                 {"port", static_cast<std::int64_t>(s.port)},
                                 {"io_threads", static_cast<std::int64_t>(s.IoThreads())},
                                 {"worker_threads", static_cast<std::int64_t>(s.options.worker_threads)}});
}

std::uint16_t Server::Port() const { return impl_->port; }

bool Server::Stopping() const noexcept { return impl_->stopping.load(); }

void Server::Stop() {
    auto& s = *impl_;
    if (s.stopping.exchange(true)) return;
    log::Info("http_stopping", {});
    net::post(s.acceptor.get_executor(), [&s] {
        beast::error_code ignored;
        s.acceptor.close(ignored);
    });
    std::vector<std::shared_ptr<Impl::Session>> live;
    {
        const std::lock_guard lock(s.sessions_mutex);
        live.assign(s.sessions.begin(), s.sessions.end());
    }
    for (const auto& session : live) session->StopIfIdle();
}

void Server::Abort() {
    impl_->stopping.store(true);
    impl_->ioc.stop();
}

void Server::Wait() {
    auto& s = *impl_;
    if (s.joined) return;
    for (auto& t : s.threads) t.join();
    s.workers.join();
    {  // after Abort(), an answer a handler's own thread is still preparing is posted to the stopped io_context
        std::unique_lock lock(s.exchanges_mutex);
        s.exchanges_done.wait(lock, [&s] { return s.exchanges == 0; });
    }
    s.joined = true;
    {
        const std::lock_guard lock(s.sessions_mutex);
        s.sessions.clear();
    }
    log::Info("http_stopped", {});
}

}  // namespace eventlog::http
