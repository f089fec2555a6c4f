#include <fmt/format.h>
#include <libpq-fe.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <eventlog/core/error.hpp>
#include <eventlog/pg/connection.hpp>
#include <eventlog/pg/errors.hpp>
#include <exception>
#include <mutex>
#include <set>
#include <string>

namespace eventlog::pg {

SqlstateClass ClassifySqlstate(std::string_view s) {
    const auto starts = [&](std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; };
    if (starts("08") || s == "57P01" || s == "57P02" || s == "57P03" || s == "25006") {
        return {ErrorKind::kTransient, true};
    }
    // Class 54 (program limit exceeded, e.g. a value over 1 GB): claims are bounded by bytes so none should reach
    // it; if one does, a retry with backoff keeps the relay alive and its records safe, where exiting would only
    // be restarted into the same error.
    if (s == "40001" || s == "40P01" || s == "55P03" || s == "57014" || starts("53") || starts("54")) {
        return {ErrorKind::kTransient, false};
    }
    if (starts("28") || s == "3D000" || s == "42P01" || s == "3F000" || s == "42883" || s == "42501") {
        return {ErrorKind::kConfiguration, false};
    }
    if (starts("22") || starts("23")) return {ErrorKind::kInvalidInput, false};
    return {ErrorKind::kFatal, false};
}
namespace {

/// How much longer than the server's statement_timeout the client waits for an answer before it gives the session
/// up: a live server cancels first (57014, the session stays usable); a frozen one is cut off here.
constexpr std::chrono::milliseconds kAnswerGrace{2'000};

PGresult* AsResult(void* p) { return static_cast<PGresult*>(p); }

std::string Trimmed(const char* message) {
    std::string s = message ? message : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

/// A server error as "SEVERITY:  primary message" (and its HINT), without DETAIL and CONTEXT: those quote data (a
/// failing row's values, a duplicate key, a function's statement and arguments) that must not reach logs or Sentry.
std::string ServerMessage(const PGresult* result) {
    const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
    if (primary == nullptr) return Trimmed(PQresultErrorMessage(result));
    const char* severity = PQresultErrorField(result, PG_DIAG_SEVERITY);
    std::string message = fmt::format("{}:  {}", severity ? severity : "ERROR", primary);
    if (const char* hint = PQresultErrorField(result, PG_DIAG_MESSAGE_HINT))
        message += fmt::format("\nHINT:  {}", hint);
    return message;
}

template <typename E>
[[noreturn]] void ThrowWithState(E error, const std::string& sqlstate) {
    if (!sqlstate.empty()) error.SetOrigin(ErrorSource::kPostgres, sqlstate);
    throw error;
}

/// Throws the error tree's class for a SQLSTATE (ClassifySqlstate). A broken connection poisons the session.
[[noreturn]] void ThrowFor(const std::string& sqlstate, const std::string& message, bool connection_bad) {
    const SqlstateClass c = connection_bad ? SqlstateClass{ErrorKind::kTransient, true} : ClassifySqlstate(sqlstate);
    if (connection_bad || sqlstate.rfind("08", 0) == 0) {
        ThrowWithState(TransientError(fmt::format("postgresql: connection lost: {}", message), true), sqlstate);
    }
    const std::string text = fmt::format("postgresql: {} (SQLSTATE {})", message, sqlstate);
    switch (c.kind) {
        case ErrorKind::kTransient:
        case ErrorKind::kInDoubt:
            ThrowWithState(TransientError(text, c.poisons_connection), sqlstate);
        case ErrorKind::kConfiguration:
            ThrowWithState(ConfigError(text, c.poisons_connection), sqlstate);
        case ErrorKind::kInvalidInput:
            ThrowWithState(InvalidInputError("postgresql", fmt::format("{} (SQLSTATE {})", message, sqlstate)),
                           sqlstate);
        case ErrorKind::kRejected:
        case ErrorKind::kFatal:
            break;
    }
    ThrowWithState(Error(ErrorKind::kFatal, text), sqlstate);
}

/// NUL-terminated copies of a statement and its text parameters, as libpq wants them.
struct TextParams {
    TextParams(std::string_view text, const std::vector<Param>& params) : sql(text) {
        storage.reserve(params.size());
        values.reserve(params.size());
        for (const auto& p : params) {
            if (p) {
                storage.emplace_back(*p);
                values.push_back(storage.back().c_str());
            } else {
                values.push_back(nullptr);
            }
        }
    }
    int Count() const { return static_cast<int>(values.size()); }

    std::string sql;
    std::vector<std::string> storage;
    std::vector<const char*> values;
};

}  // namespace

void Result::Deleter::operator()(void* result) const noexcept { PQclear(AsResult(result)); }

int Result::Rows() const noexcept { return result_ ? PQntuples(AsResult(result_.get())) : 0; }
int Result::Columns() const noexcept { return result_ ? PQnfields(AsResult(result_.get())) : 0; }

std::string_view Result::Get(int row, int column) const noexcept {
    auto* r = AsResult(result_.get());
    return {PQgetvalue(r, row, column), static_cast<std::size_t>(PQgetlength(r, row, column))};
}

bool Result::IsNull(int row, int column) const noexcept { return PQgetisnull(AsResult(result_.get()), row, column); }

std::int64_t Result::GetInt(int row, int column) const {
    const auto text = Get(row, column);
    std::int64_t value = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || p != text.data() + text.size()) {
        throw Error(ErrorKind::kFatal,
                    fmt::format("postgresql: expected an integer in column {}, got '{}'", column, text));
    }
    return value;
}

std::int64_t Result::AffectedRows() const noexcept {
    if (!result_) return 0;
    const char* n = PQcmdTuples(AsResult(result_.get()));
    std::int64_t value = 0;
    std::from_chars(n, n + std::strlen(n), value);
    return value;
}

struct Connection::Impl {
    PGconn* conn{nullptr};
    std::mutex cancel_mutex;
    PGcancel* cancel{nullptr};
    std::set<std::string, std::less<>> prepared;            // names of the statements ExecPrepared() prepared
    std::chrono::milliseconds answer_timeout{0};            // the client's bound on one call (0: none)
    std::chrono::steady_clock::time_point sent_deadline{};  // of the statement Send() started
    bool abandoned{false};                                  // closed by a deadline: never used again
    ~Impl() {
        if (cancel) PQfreeCancel(cancel);
        if (conn) PQfinish(conn);
    }
};

Connection::Connection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Connection::Connection(Connection&&) noexcept = default;
Connection& Connection::operator=(Connection&&) noexcept = default;
Connection::~Connection() = default;

Connection Connection::Open(const ConnectOptions& options) {
    auto impl = std::make_unique<Impl>();
    const std::string timeout = std::to_string(std::max<long long>(1, (options.connect_timeout.count() + 999) / 1000));
    // TCP keepalives and tcp_user_timeout come before the conninfo, which overrides them: without them a
    // blackholed server (a failed-over primary, a dropped route) stalls a session for the kernel's ~15 minutes
    // of retransmissions. With these, a dead peer is noticed within about 30 s.
    const char* keys[] = {"keepalives",       "keepalives_idle",  "keepalives_interval",
                          "keepalives_count", "tcp_user_timeout", "dbname",
                          "connect_timeout",  "application_name", nullptr};
    const char* values[] = {
        "1",    "10", "5", "3", "30000", options.conninfo.c_str(), timeout.c_str(), options.application_name.c_str(),
        nullptr};
    impl->conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
    if (impl->conn == nullptr) throw TransientError("postgresql: out of memory allocating a connection");
    if (PQstatus(impl->conn) != CONNECTION_OK) {
        const std::string message = Trimmed(PQerrorMessage(impl->conn));
        if (message.find("password authentication failed") != std::string::npos ||
            message.find("does not exist") != std::string::npos ||
            message.find("no pg_hba.conf entry") != std::string::npos) {
            throw ConfigError(fmt::format("postgresql: cannot connect: {}", message));
        }
        throw TransientError(fmt::format("postgresql: cannot connect: {}", message), true);
    }
    // Every session eventlog opens resolves names in pg_catalog first and never in a schema another role can
    // write: eventlog's SQL runs over producers' data, and an object a producer creates (public.array_agg for a
    // type of ours, say) must not shadow a built-in (docs/security.md).
    // Non-blocking from here on: every call waits for the socket with a deadline (Await), so a server that stops
    // answering (frozen, blackholed) costs a bounded wait, never a hung thread.
    PQsetnonblocking(impl->conn, 1);
    if (options.statement_timeout.count() > 0) impl->answer_timeout = options.statement_timeout + kAnswerGrace;
    impl->cancel = PQgetCancel(impl->conn);
    // Silence NOTICE messages on stderr; they are not errors.
    PQsetNoticeProcessor(
        impl->conn, [](void*, const char*) {}, nullptr);
    Connection connection(std::move(impl));
    std::string setup = "SET search_path = pg_catalog, pg_temp";
    if (options.statement_timeout.count() > 0) {
        setup += fmt::format("; SET statement_timeout = {}", options.statement_timeout.count());
    }
    try {
        connection.Exec(setup);
    } catch (const Error& e) {
        throw TransientError(fmt::format("postgresql: cannot set up the session: {}", e.what()), true);
    }
    return connection;
}

Result Connection::Check(void* raw, std::string_view sql) {
    PGresult* result = AsResult(raw);
    Result owned(result);
    const bool bad = PQstatus(impl_->conn) != CONNECTION_OK;
    if (result == nullptr) ThrowFor("", Trimmed(PQerrorMessage(impl_->conn)), true);
    const auto status = PQresultStatus(result);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_COPY_IN) return owned;
    const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
    std::string message = ServerMessage(result);
    if (message.empty()) message = Trimmed(PQerrorMessage(impl_->conn));
    if (message.empty()) message = fmt::format("statement failed: {:.80}", sql);
    ThrowFor(state ? state : "", message, bad);
}

std::chrono::steady_clock::time_point Connection::Deadline() {
    if (impl_->abandoned) Abandon();  // a session a deadline closed is never used again
    if (impl_->answer_timeout.count() <= 0) return std::chrono::steady_clock::time_point::max();
    return std::chrono::steady_clock::now() + impl_->answer_timeout;
}

void Connection::Abandon() {
    impl_->abandoned = true;
    ::shutdown(PQsocket(impl_->conn), SHUT_RDWR);  // the server's end of it sees the session close when it wakes
    throw TransientError(fmt::format("postgresql: connection lost: no answer within {} ms; the session is closed",
                                     impl_->answer_timeout.count()),
                         true);
}

void Connection::WaitForSocket(short events, std::chrono::steady_clock::time_point deadline) {
    pollfd p{PQsocket(impl_->conn), events, 0};
    if (p.fd < 0) ThrowFor("", Trimmed(PQerrorMessage(impl_->conn)), true);
    for (;;) {
        int wait_ms = -1;
        if (deadline != std::chrono::steady_clock::time_point::max()) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) Abandon();
            wait_ms = static_cast<int>(std::min<std::int64_t>(left.count(), 60'000));
        }
        const int rc = ::poll(&p, 1, wait_ms);
        if (rc > 0) break;
        if (rc < 0 && errno != EINTR) ThrowFor("", std::strerror(errno), true);
    }
    if ((p.revents & (POLLIN | POLLERR | POLLHUP)) != 0 && PQconsumeInput(impl_->conn) == 0) {
        ThrowFor("", Trimmed(PQerrorMessage(impl_->conn)), true);
    }
}

void Connection::Flush(std::chrono::steady_clock::time_point deadline) {
    for (;;) {
        const int rc = PQflush(impl_->conn);
        if (rc == 0) return;
        if (rc < 0) ThrowFor("", Trimmed(PQerrorMessage(impl_->conn)), true);
        WaitForSocket(POLLOUT | POLLIN, deadline);  // reads too: the server may answer (an error) before it reads all
    }
}

Result Connection::Await(std::string_view sql, std::chrono::steady_clock::time_point deadline) {
    Flush(deadline);
    std::optional<Result> last;
    std::exception_ptr first_error;  // the first error wins, as PQexec reports it, with its type kept
    for (;;) {
        while (PQisBusy(impl_->conn) != 0) WaitForSocket(POLLIN, deadline);
        PGresult* r = PQgetResult(impl_->conn);
        if (r == nullptr) break;
        if (PQresultStatus(r) == PGRES_COPY_IN && !first_error) return Result(r);  // CopyIn() sends the data
        try {
            last = Check(r, sql);
        } catch (const Error&) {
            if (!first_error) first_error = std::current_exception();
        }
    }
    if (first_error) std::rethrow_exception(first_error);
    if (!last) ThrowFor("", Trimmed(PQerrorMessage(impl_->conn)), !Healthy());
    return std::move(*last);
}

void Connection::ThrowIfSendFailed(int sent) {
    if (sent != 1) ThrowFor("", Trimmed(PQerrorMessage(impl_->conn)), PQstatus(impl_->conn) != CONNECTION_OK);
}

Result Connection::Exec(std::string_view sql) {
    const auto deadline = Deadline();
    const std::string text(sql);
    ThrowIfSendFailed(PQsendQuery(impl_->conn, text.c_str()));
    return Await(sql, deadline);
}

Result Connection::Exec(std::string_view sql, const std::vector<Param>& params) {
    const auto deadline = Deadline();
    const TextParams p(sql, params);
    ThrowIfSendFailed(
        PQsendQueryParams(impl_->conn, p.sql.c_str(), p.Count(), nullptr, p.values.data(), nullptr, nullptr, 0));
    return Await(sql, deadline);
}

Result Connection::ExecPrepared(const std::string& name, std::string_view sql, const std::vector<Param>& params) {
    const auto deadline = Deadline();
    const TextParams p(sql, params);
    if (impl_->prepared.count(name) == 0) {
        ThrowIfSendFailed(PQsendPrepare(impl_->conn, name.c_str(), p.sql.c_str(), p.Count(), nullptr));
        Await(sql, deadline);
        impl_->prepared.insert(name);
    }
    ThrowIfSendFailed(PQsendQueryPrepared(impl_->conn, name.c_str(), p.Count(), p.values.data(), nullptr, nullptr, 0));
    return Await(sql, deadline);
}

void Connection::Send(std::string_view sql, const std::vector<Param>& params) {
    impl_->sent_deadline = Deadline();
    const TextParams p(sql, params);
    ThrowIfSendFailed(
        PQsendQueryParams(impl_->conn, p.sql.c_str(), p.Count(), nullptr, p.values.data(), nullptr, nullptr, 0));
    Flush(impl_->sent_deadline);
}

Result Connection::Receive() { return Await("(async statement)", impl_->sent_deadline); }

void Connection::CopyIn(std::string_view copy_sql, std::string_view data) {
    const auto deadline = Deadline();
    Exec(copy_sql);  // enters COPY IN state (PGRES_COPY_IN accepted by Check)
    constexpr std::size_t kChunk = 1 << 20;
    for (std::size_t off = 0; off < data.size();) {
        const auto n = std::min(kChunk, data.size() - off);
        const int rc = PQputCopyData(impl_->conn, data.data() + off, static_cast<int>(n));
        if (rc < 0) ThrowFor("", Trimmed(PQerrorMessage(impl_->conn)), PQstatus(impl_->conn) != CONNECTION_OK);
        if (rc == 0) {  // libpq's buffer is full: wait until the socket takes more
            WaitForSocket(POLLOUT | POLLIN, deadline);
            continue;
        }
        off += n;
    }
    for (;;) {
        const int rc = PQputCopyEnd(impl_->conn, nullptr);
        if (rc < 0) ThrowFor("", Trimmed(PQerrorMessage(impl_->conn)), PQstatus(impl_->conn) != CONNECTION_OK);
        if (rc == 1) break;
        WaitForSocket(POLLOUT | POLLIN, deadline);
    }
    Await(copy_sql, deadline);
}

bool Connection::WaitForNotify(std::chrono::milliseconds timeout) {
    auto drain = [this] {
        bool got = false;
        while (PGnotify* n = PQnotifies(impl_->conn)) {
            got = true;
            PQfreemem(n);
        }
        return got;
    };
    if (PQconsumeInput(impl_->conn) == 0) ThrowFor("", Trimmed(PQerrorMessage(impl_->conn)), true);
    if (drain()) return true;
    pollfd pfd{PQsocket(impl_->conn), POLLIN, 0};
    // Never negative: poll() takes that for "forever". A caller's remaining time can be (its deadline passed between
    // its check and this call), and a resting relay then slept until a NOTIFY that may never come (seen: a drain
    // test's relay asleep for minutes, its stop request unanswered).
    const int rc = ::poll(&pfd, 1, static_cast<int>(std::clamp<std::int64_t>(timeout.count(), 0, 3'600'000)));
    if (rc <= 0) return false;
    if (PQconsumeInput(impl_->conn) == 0) ThrowFor("", Trimmed(PQerrorMessage(impl_->conn)), true);
    return drain();
}

bool Connection::Healthy() const noexcept {
    return impl_ && !impl_->abandoned && PQstatus(impl_->conn) == CONNECTION_OK;
}

bool Connection::ClosedWhileIdle() noexcept {
    if (!Healthy()) return true;
    pollfd p{PQsocket(impl_->conn), POLLIN, 0};
    if (p.fd < 0) return true;
    if (::poll(&p, 1, 0) <= 0) return false;  // nothing arrived: still open
    if (PQconsumeInput(impl_->conn) == 0) return true;
    (void)PQisBusy(impl_->conn);  // parses what arrived (a FATAL error before the close, a notification)
    if (PQstatus(impl_->conn) != CONNECTION_OK) return true;
    // libpq reads the FATAL message a terminated backend sends but not yet the end of the stream after it.
    char byte = 0;
    return ::recv(p.fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

int Connection::BackendPid() const noexcept { return impl_ ? PQbackendPID(impl_->conn) : 0; }

std::string Connection::Server() const {
    if (!impl_ || impl_->conn == nullptr) return {};
    const char* host = PQhost(impl_->conn);
    const char* port = PQport(impl_->conn);
    return fmt::format("{}:{}", host ? host : "", port ? port : "");
}

void Connection::Cancel() noexcept {
    if (!impl_ || !impl_->cancel) return;
    char err[256];
    PQcancel(impl_->cancel, err, sizeof(err));
}

Transaction::Transaction(Connection& connection, std::string_view begin_sql) : connection_(connection) {
    connection_.Exec(begin_sql);
}

Transaction::~Transaction() { Rollback(); }

void Transaction::Commit() {
    open_ = false;
    try {
        connection_.Exec("COMMIT");
    } catch (const Error& e) {
        if (e.PoisonsConnection()) throw InDoubtError(fmt::format("postgresql: COMMIT outcome unknown: {}", e.what()));
        throw;
    }
}

void Transaction::Rollback() noexcept {
    if (!open_) return;
    open_ = false;
    if (!connection_.Healthy()) return;
    try {
        connection_.Exec("ROLLBACK");
    } catch (...) {
        // The server drops the transaction with the session anyway.
    }
}

}  // namespace eventlog::pg
