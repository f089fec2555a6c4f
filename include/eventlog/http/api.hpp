#pragma once

#include <chrono>
#include <cstddef>
#include <eventlog/clickhouse/client.hpp>
#include <eventlog/core/config.hpp>
#include <eventlog/http/server.hpp>
#include <eventlog/pg/pool.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace eventlog::http {

/// Bounds on POST /api/v1/events (docs/http-api.md).
struct EventBounds {
    std::size_t max_events{10'000};           ///< HTTP_MAX_EVENTS per request (413 beyond).
    std::size_t max_context_bytes{1u << 20};  ///< HTTP_MAX_CONTEXT_BYTES per event_context (413 beyond).
};

/// What `eventlog serve` runs with, read from the environment (docs/http-api.md lists the variables). Plain value.
struct ServeSettings {
    ServerOptions server;
    std::size_t pool_size{16};                         ///< HTTP_PG_POOL_SIZE: PostgreSQL sessions at most.
    std::chrono::milliseconds acquire_timeout{1'000};  ///< HTTP_PG_ACQUIRE_TIMEOUT_MS: then 503 Retry-After.
    EventBounds events;
    /// HTTP_GROUP_COMMIT_US: how long a group commit of small POST /api/v1/events requests gathers; 0 disables it.
    std::chrono::microseconds group_commit_window{200};
    /// HTTP_GROUP_COMMIT_GROUPS: group commits writing at once at most; a closed group waits for a free one.
    std::size_t group_commit_groups{2};
    /// HTTP_GROUP_COMMIT_BYTES: a group closes before its events' bytes would pass this (16 MiB); a larger request is
    /// written alone.
    std::size_t group_commit_bytes{16u << 20};
    std::string secret_key;  ///< SECRET_KEY (required; never printed).
    /// Where GET /api/v1/events/{event_id} looks for delivered events (CLICKHOUSE_*); nullopt: it answers 404
    /// for events PostgreSQL no longer holds.
    std::optional<clickhouse::ClientOptions> clickhouse;
    std::string clickhouse_table{"event_log"};  ///< CLICKHOUSE_EVENT_LOG_TABLE_NAME.
    /// HTTP_LOOKUP_MAX_ROWS: every ClickHouse query the API starts (status lookups, wait=visible) reads at most this
    /// many rows (max_rows_to_read) and runs at most 5 s (max_execution_time); past either it fails instead of
    /// scanning on.
    std::uint64_t lookup_max_rows{10'000'000};
    /// CONSOLE_SESSION_IDLE_SECONDS: an admin console session ends after this long unused (docs/admin-console.md).
    std::chrono::seconds console_idle_timeout{1800};
    /// HTTP_TRUSTED_PROXY: comma-separated IP addresses of reverse proxies whose X-Forwarded-For and
    /// X-Forwarded-Proto the console believes (the client's address for throttling, TLS for the Secure cookie).
    std::vector<std::string> trusted_proxies;
};

/// Reads ServeSettings from `env` and `config` (HTTP_LISTEN wins over HTTP_HOST/HTTP_PORT; ALLOWED_HOSTS and
/// SECRET_KEY come from `config`). Throws ConfigError naming the variable; an empty SECRET_KEY is refused.
ServeSettings LoadServeSettings(const EnvMap& env, const Config& config);

/// Parses "HOST:PORT" ("127.0.0.1:8000", "[::1]:8000") into `options`; throws ConfigError naming `variable`.
void ParseListen(const std::string& text, const char* variable, ServerOptions& options);

/// The API's routes: GET /healthz, GET /readyz, POST /api/v1/users, POST /api/v1/events and
/// GET /api/v1/events/{event_id}; and the admin console's (AddConsoleRoutes, include/eventlog/http/console.hpp).
/// Handlers borrow `pool` (which must outlive the router); `stopping` turns /readyz to 503 when the stop begins.
std::shared_ptr<Router> MakeApiRouter(pg::Pool& pool, const ServeSettings& settings, std::function<bool()> stopping);

}  // namespace eventlog::http
