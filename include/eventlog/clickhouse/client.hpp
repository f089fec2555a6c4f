#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace eventlog {
struct ClickHouseConfig;
}  // namespace eventlog

namespace eventlog::clickhouse {

/// Connection settings for one ClickHouse HTTP endpoint.
struct ClientOptions {
    /// Scheme, host and port of the HTTP interface, no path ("http://127.0.0.1:8123").
    std::string base_url{"http://127.0.0.1:8123"};
    /// User name, sent as the X-ClickHouse-User header ("default").
    std::string user{"default"};
    /// Password, sent as the X-ClickHouse-Key header (empty); never appears in error messages.
    std::string password;
    /// Database sent as the `database` URL parameter; tables in Insert() are resolved in it ("default").
    std::string database{"default"};
    /// Limit for establishing the TCP (and TLS) connection (30 s).
    std::chrono::milliseconds connect_timeout{30000};
    /// Added to connect_timeout to form the total deadline of one request (10 s).
    std::chrono::milliseconds send_receive_timeout{10000};
    /// Send each Insert() on a new TCP connection, closed afterwards (true). libcurl silently re-sends a request
    /// whose reused keep-alive connection died before any response byte, which for an INSERT can duplicate rows or
    /// hide an in-doubt outcome; a fresh connection is never retried that way. Other requests always reuse.
    bool insert_on_fresh_connection{true};
    /// Largest response body accepted (64 MiB). A larger one is abandoned as soon as it passes the limit, without
    /// buffering the rest: ConfigError (InDoubtError for an insert). Bounds the memory one query can take.
    std::size_t max_response_bytes{std::size_t{64} << 20};
    /// CA bundle (PEM) used to verify an https server's certificate instead of the system's ("": system store).
    /// Certificate and host name verification are always on.
    std::string ca_file;
};

/// The server's version as reported by SELECT version().
struct ServerVersion {
    int major{0};      ///< e.g. 18 in "18.16.1".
    int minor{0};      ///< e.g. 16 in "18.16.1".
    int patch{0};      ///< e.g. 1 in "18.16.1".
    std::string text;  ///< The full version string as returned by the server.

    /// True when the version is `maj.min` or later.
    bool AtLeast(int maj, int min) const;
};

/// Parses "major.minor.patch[.build]"; missing parts stay 0, a part too large for int saturates at INT_MAX.
ServerVersion ParseServerVersion(std::string_view text);

/// One column of a table as listed in system.columns.
struct Column {
    std::string name;          ///< Column name.
    std::string type;          ///< Type as the server spells it, e.g. "DateTime64(6, 'UTC')".
    std::string default_kind;  ///< "", "DEFAULT", "MATERIALIZED", "ALIAS" (or "EPHEMERAL" on new servers).
};

/// Per-insert settings.
struct InsertOptions {
    /// Sent as the `query_id` URL parameter when non-empty.
    std::string query_id;
    /// Sent as the `insert_deduplication_token` setting when non-empty (server 22.2+ only).
    std::string deduplication_token;
    /// Sent as the `insert_quorum` setting when above 0 (a replicated table: the insert succeeds once this many
    /// replicas have the rows).
    int insert_quorum{0};
};

/// One keep-alive HTTP connection to ClickHouse (a reused curl easy handle). Movable, not copyable,
/// not thread-safe: use one Client per thread. Every call has a deadline of connect + send_receive timeout.
/// Failures throw eventlog::Error subclasses: TransientError, InDoubtError (insert outcome unknown),
/// RejectedError (the rows were refused), ConfigError (auth, missing table/database, unknown setting).
class Client {
public:
    /// Stores the options; does not connect yet.
    explicit Client(ClientOptions options);
    ~Client();
    Client(Client&&) noexcept;
    Client& operator=(Client&&) noexcept;
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    /// GET /ping; throws when the server does not answer "Ok.".
    void Ping();
    /// POSTs `sql` with `settings` as URL parameters and returns the response body.
    std::string Query(std::string_view sql, const std::vector<std::pair<std::string, std::string>>& settings = {});
    /// Runs a statement (DDL etc.) and ignores the body.
    void Execute(std::string_view sql);
    /// Sends "INSERT INTO `database`.`table` column_list FORMAT RowBinary" with `rowbinary` as the body.
    void Insert(std::string_view table, std::string_view column_list, std::string_view rowbinary,
                const InsertOptions& options = {});
    /// SELECT version(), cached after the first successful call.
    ServerVersion Version();
    /// The columns from system.columns in the server's order (18.16 lists MATERIALIZED/ALIAS columns last);
    /// ConfigError if the table (or database) does not exist.
    std::vector<Column> DescribeTable(std::string_view database, std::string_view table);
    /// True when the server knows the insert_deduplication_token setting (22.2+).
    bool SupportsDeduplicationToken();
    /// True when the server has the DateTime64 type (20.1+).
    bool SupportsDateTime64();
    /// The materialized views that read from `database`.`table`, as "database.view" (system.tables' dependencies).
    std::vector<std::string> DependentViews(std::string_view database, std::string_view table);
    /// True when rows a materialized view pushes into a table also run that table's own materialized views (modern
    /// servers; not 18.16). Probed once per client with four throwaway tables `probe_prefix`_src/_dst/_fwd/_cnt in
    /// `database` (dropped again), then cached. Throws like Query().
    bool ViewsCascade(std::string_view database, std::string_view probe_prefix);
    /// The options this client was built with.
    const ClientOptions& Options() const;
    /// base_url without any "user:password@" part, as used in error messages.
    const std::string& DisplayUrl() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Quotes an identifier with backticks, escaping backslashes and backticks.
std::string QuoteIdentifier(std::string_view name);

/// Quotes a string literal with single quotes, escaping backslashes, quotes and control bytes.
std::string QuoteString(std::string_view value);

/// Client options for the server, credentials, database and timeouts of `config`.
ClientOptions OptionsFrom(const ClickHouseConfig& config);

}  // namespace eventlog::clickhouse
