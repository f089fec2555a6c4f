#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace eventlog {

/// Variable name -> value. The process environment layered over a `.env` file.
using EnvMap = std::map<std::string, std::string>;

/// Reads `.env` at `dotenv_path` (missing file or "": empty) and overlays the process environment, which wins.
/// Lines are `NAME=value`, `export NAME=value`, `# comments`; values may be single- or double-quoted.
/// The file must be owned by the effective user and not writable by group or others, else ConfigError naming
/// the file and the reason. The environment wins per connection: when it sets any of a connection's endpoint,
/// credential or TLS variables (kPostgresConnectionVariables, kClickHouseConnectionVariables), that connection's
/// variables in the file are ignored and their names appended to `ignored` (when not null).
EnvMap ReadEnvironment(const std::string& dotenv_path = ".env", std::vector<std::string>* ignored = nullptr);

/// The variables that together say where the PostgreSQL connection goes and with which credentials and trust.
inline constexpr const char* kPostgresConnectionVariables[] = {
    "DATABASE_URL",      "POSTGRES_HOST",    "POSTGRES_PORT",       "POSTGRES_USER",
    "POSTGRES_PASSWORD", "POSTGRES_SSLMODE", "POSTGRES_SSLROOTCERT"};
/// The same for ClickHouse.
inline constexpr const char* kClickHouseConnectionVariables[] = {
    "CLICKHOUSE_URI",  "CLICKHOUSE_PROTOCOL", "CLICKHOUSE_HOST",    "CLICKHOUSE_PORT",
    "CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_CA_FILE", "CLICKHOUSE_NATIVE_PORT"};

/// Parses a `.env` file's text. Throws ConfigError naming the line when a line is malformed.
EnvMap ParseDotenv(const std::string& text);

/// PostgreSQL connection settings.
struct PostgresConfig {
    std::string host{"127.0.0.1"};
    int port{5432};
    std::string user{"eventlog"};
    std::string password;
    std::string database{"eventlog"};
    std::string sslmode;      ///< libpq sslmode (POSTGRES_SSLMODE or DATABASE_URL's ?sslmode=); "" = libpq's default.
    std::string sslrootcert;  ///< libpq sslrootcert (POSTGRES_SSLROOTCERT or ?sslrootcert=); "" = libpq's default.
    /// POSTGRES_STATEMENT_TIMEOUT (seconds, default 15; 0: none): the bound on each statement of `relay`, `serve`
    /// and the commands (not `migrate`). The server cancels a longer one; a server that does not answer within it
    /// plus 2 s loses the session (pg::ConnectOptions::statement_timeout). Below RELAY_SHUTDOWN_TIMEOUT_MS (30 s)
    /// with a reconnect's 10 s, so that a graceful stop ends on its own while PostgreSQL does not answer.
    std::chrono::milliseconds statement_timeout{15'000};
    /// Other libpq keywords from DATABASE_URL's query string, percent-decoded, in order.
    std::vector<std::pair<std::string, std::string>> options;

    /// How long `relay` and `serve` wait to connect: no longer than for a statement's answer, statement_timeout +
    /// 2 s, from 2 s (libpq counts whole seconds, 2 at least) to 10 s.
    std::chrono::milliseconds ConnectTimeout() const;
    /// A libpq keyword/value connection string, every value quoted (contains the password).
    std::string ConnInfo() const;
    /// The same without the password, for logs.
    std::string Redacted() const;
};

/// ClickHouse HTTP interface settings.
struct ClickHouseConfig {
    std::string protocol{"http"};  ///< "http" or "https".
    std::string host{"127.0.0.1"};
    int port{8123};
    std::string user{"default"};
    std::string password;
    std::string database{"default"};  ///< CLICKHOUSE_SCHEMA.
    std::string table{"event_log"};   ///< CLICKHOUSE_EVENT_LOG_TABLE_NAME.
    /// CLICKHOUSE_CLUSTER: the cluster (of the server's remote_servers) that `eventlog migrate` creates the tables on:
    /// the shard-local ReplicatedMergeTree `<table>_local` on every node and a Distributed `<table>` over them
    /// (docs/cluster.md). Empty: one server, nothing changes.
    std::string cluster;
    /// CLICKHOUSE_SHARDS: the cluster's nodes as the relay reaches them over HTTP, "host:port" each, the replicas of
    /// a shard separated by ',' and the shards by ';' ("h1:8123,h2:8123;h3:8123,h4:8123"). Required by the relay
    /// with CLICKHOUSE_CLUSTER: it writes each claim into one node's `<table>_local`, and names the node in the
    /// claim's record, so an entry is a node's identity (change one only with nothing in flight; docs/cluster.md).
    std::vector<std::vector<std::string>> shards;
    /// CLICKHOUSE_INSERT_QUORUM: the relay's inserts on a cluster wait until this many replicas have the rows
    /// (ClickHouse's insert_quorum); 0, the default: the replica written to only.
    int insert_quorum{0};
    std::chrono::milliseconds connect_timeout{30'000};
    std::chrono::milliseconds send_receive_timeout{10'000};
    std::string ca_file;  ///< CLICKHOUSE_CA_FILE: CA bundle to verify the server's certificate (https only).

    /// "http://host:port" (no credentials; an IPv6 host in brackets).
    std::string BaseUrl() const;
    /// The same as BaseUrl() plus user and database, for logs (never the password).
    std::string Redacted() const;
};

/// Relay tuning.
struct RelayConfig {
    int event_batch_size{1000};                             ///< EVENT_BATCH_SIZE: rows per claim.
    std::chrono::milliseconds processing_interval{60'000};  ///< EVENT_PROCESSING_INTERVAL: idle poll.
    int clickhouse_batch_size{10000};                       ///< CLICKHOUSE_BATCH_SIZE: rows per insert at most.
    std::chrono::milliseconds backoff_base{200};            ///< RELAY_BACKOFF_BASE_MS.
    std::chrono::milliseconds backoff_cap{30'000};          ///< RELAY_BACKOFF_CAP_MS.
    int max_attempts{5};                                    ///< RELAY_MAX_ATTEMPTS before a row is dead-lettered.
    std::chrono::milliseconds shutdown_timeout{30'000};     ///< RELAY_SHUTDOWN_TIMEOUT_MS: drain bound on SIGTERM.
    std::int64_t claim_max_bytes{64LL << 20};  ///< RELAY_CLAIM_MAX_BYTES: bound on one claim's events (64 MiB).
    /// RELAY_POLL_MS: after a claim that was not full, the next starts this long after it at the earliest (events
    /// gather into fewer, larger inserts); also the poll interval while idle for RELAY_IDLE_LINGER_MS before the
    /// relay sleeps until NOTIFY.
    std::chrono::milliseconds poll_interval{20};
    std::chrono::milliseconds idle_linger{1000};  ///< RELAY_IDLE_LINGER_MS.
    /// IDEMPOTENCY_WINDOW (seconds): how long an accepted event_id keeps a later copy out (the relay prunes older).
    std::chrono::seconds idempotency_window{86'400};
    std::chrono::seconds stall_after{300};         ///< RELAY_STALL_SECONDS: work and no acknowledgement for this long.
    std::string metrics_listen{"127.0.0.1:9464"};  ///< METRICS_LISTEN: the relay's /metrics, /healthz, /readyz.
};

/// The whole configuration, read once at start-up. Plain value type.
struct Config {
    bool debug{false};
    std::string secret_key;
    std::vector<std::string> allowed_hosts;
    std::string environment{"Local"};
    std::string time_zone{"UTC"};
    std::string log_level{"info"};
    PostgresConfig postgres;
    ClickHouseConfig clickhouse;
    RelayConfig relay;
    std::string http_host{"127.0.0.1"};
    int http_port{8000};
    std::string sentry_dsn;
    std::string sentry_environment;
    std::string otel_endpoint;
};

/// Builds the configuration from `env`. DATABASE_URL wins over POSTGRES_*, CLICKHOUSE_URI over the
/// CLICKHOUSE_* parts (credentials in the URI over CLICKHOUSE_USER/PASSWORD; a URI without them uses those).
/// URLs are parsed by libcurl; user, password and database must be percent-encoded when they contain
/// reserved characters. Throws ConfigError naming the variable and the expected form on a bad value;
/// messages never contain a password, a URL's user information or SECRET_KEY.
Config LoadConfig(const EnvMap& env);

}  // namespace eventlog
