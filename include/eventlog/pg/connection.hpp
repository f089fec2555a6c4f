#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace eventlog::pg {

/// A query parameter in text format; nullopt is SQL NULL.
using Param = std::optional<std::string_view>;

/// The result of one statement. Move-only; owns the underlying PGresult.
class Result {
public:
    Result() = default;
    /// Number of rows returned.
    int Rows() const noexcept;
    /// Number of columns returned.
    int Columns() const noexcept;
    /// The text value at (row, column); empty for NULL.
    std::string_view Get(int row, int column) const noexcept;
    /// True when the value at (row, column) is NULL.
    bool IsNull(int row, int column) const noexcept;
    /// The value parsed as a 64-bit integer; throws Error(kFatal) when it is not one.
    std::int64_t GetInt(int row, int column) const;
    /// Rows affected by INSERT/UPDATE/DELETE (0 for other statements).
    std::int64_t AffectedRows() const noexcept;

private:
    friend class Connection;
    struct Deleter {
        void operator()(void* result) const noexcept;
    };
    explicit Result(void* result) : result_(result) {}
    std::unique_ptr<void, Deleter> result_;
};

/// Connection options with documented defaults. Every session's search_path is pinned to `pg_catalog, pg_temp`
/// (qualify every table). TCP keepalives (idle 10 s, interval 5 s, 3 probes) and
/// tcp_user_timeout (30 s) are on unless `conninfo` sets those keywords itself.
struct ConnectOptions {
    std::string conninfo;                               ///< libpq keyword/value string or URI.
    std::chrono::milliseconds connect_timeout{10'000};  ///< Bound on establishing the session.
    std::string application_name{"eventlog"};           ///< Shown in pg_stat_activity.
    /// Bound on each call. The server cancels a statement that runs longer (statement_timeout: SQLSTATE 57014, a
    /// TransientError; the session stays usable); a server that does not answer within this plus 2 s (frozen,
    /// blackholed) loses the session: the call throws a TransientError that poisons it (a COMMIT: InDoubtError).
    /// 0: no bound (migrations, which wait for each other's lock).
    std::chrono::milliseconds statement_timeout{30'000};
};

/// One libpq session. Move-only, not thread-safe. Errors are thrown as the eventlog::Error tree with
/// the SQLSTATE classified (connection loss: TransientError that poisons the connection; auth and
/// missing objects: ConfigError; constraint and data errors: InvalidInputError).
class Connection {
public:
    /// Connects; throws TransientError (server unreachable) or ConfigError (auth, missing database).
    static Connection Open(const ConnectOptions& options);

    Connection(Connection&&) noexcept;
    Connection& operator=(Connection&&) noexcept;
    ~Connection();

    /// Runs one or more statements without parameters; returns the last result.
    Result Exec(std::string_view sql);
    /// Runs one statement with text parameters $1..$n.
    Result Exec(std::string_view sql, const std::vector<Param>& params);
    /// Exec() of a statement this session prepares under `name` on its first use (PQprepare), so that later calls
    /// skip its parsing and planning. `name` must always come with the same `sql`; prepared statements last as long
    /// as the session.
    Result ExecPrepared(const std::string& name, std::string_view sql, const std::vector<Param>& params);
    /// Sends one parameterised statement without waiting for it (libpq async); the server runs it while
    /// the caller does other work. Exactly one Receive() must follow before any other call.
    void Send(std::string_view sql, const std::vector<Param>& params);
    /// Waits for the statement started by Send() and returns its result (throws like Exec()).
    Result Receive();
    /// Streams `data` (COPY text format) into `copy_sql` ("COPY t (a, b) FROM STDIN").
    void CopyIn(std::string_view copy_sql, std::string_view data);
    /// Waits up to `timeout` for a NOTIFY on any channel this session LISTENs to; true when one arrived.
    /// All pending notifications are consumed.
    bool WaitForNotify(std::chrono::milliseconds timeout);
    /// False once the session is known to be broken.
    bool Healthy() const noexcept;
    /// For an idle session: reads what the server sent meanwhile, without waiting, and is true when that was the end
    /// of the session (a terminated backend, a server that shut down or failed over). A pool asks this before it
    /// hands out a session that sat idle, so that a dead one costs no request.
    bool ClosedWhileIdle() noexcept;
    /// The server process id of this session (for pg_terminate_backend in tests and logs).
    int BackendPid() const noexcept;
    /// "host:port" of the server this session reached: with several hosts in the DSN (libpq's failover), the one
    /// that answered. Empty when not connected.
    std::string Server() const;
    /// Interrupts the statement in progress from another thread (PQcancel); safe to call concurrently.
    void Cancel() noexcept;

private:
    struct Impl;
    explicit Connection(std::unique_ptr<Impl> impl);
    Result Check(void* result, std::string_view sql);
    /// When the call starting now must have its answer (time_point::max() without a bound); throws like Abandon()
    /// for a session a deadline already closed.
    std::chrono::steady_clock::time_point Deadline();
    /// Closes a session whose server did not answer in time and throws the poisoning TransientError.
    [[noreturn]] void Abandon();
    /// Waits until the socket is ready for `events` (reading what arrived) or abandons the session at `deadline`.
    void WaitForSocket(short events, std::chrono::steady_clock::time_point deadline);
    /// Sends what libpq has queued, by `deadline`.
    void Flush(std::chrono::steady_clock::time_point deadline);
    /// Flushes, then collects the statement's results by `deadline`: the last one, or the first error.
    Result Await(std::string_view sql, std::chrono::steady_clock::time_point deadline);
    /// Throws for a PQsend* call that returned `sent` != 1.
    void ThrowIfSendFailed(int sent);
    std::unique_ptr<Impl> impl_;
};

/// A transaction on a borrowed connection: BEGIN on construction, ROLLBACK in the destructor unless
/// Commit() succeeded. Not copyable or movable; must not outlive the connection.
class Transaction {
public:
    /// Begins a transaction (`begin_sql` may add an isolation level).
    explicit Transaction(Connection& connection, std::string_view begin_sql = "BEGIN");
    ~Transaction();
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;

    /// Runs statements inside the transaction.
    Result Exec(std::string_view sql) { return connection_.Exec(sql); }
    /// Runs one parameterised statement inside the transaction.
    Result Exec(std::string_view sql, const std::vector<Param>& params) { return connection_.Exec(sql, params); }
    /// The connection, for COPY and other calls.
    Connection& Conn() noexcept { return connection_; }
    /// Commits. A connection lost during COMMIT throws InDoubtError: the outcome is unknown.
    void Commit();
    /// Rolls back now (also done by the destructor).
    void Rollback() noexcept;

private:
    Connection& connection_;
    bool open_{true};
};

}  // namespace eventlog::pg
