#pragma once

#include <chrono>
#include <cstdint>
#include <eventlog/clickhouse/client.hpp>
#include <eventlog/http/server.hpp>
#include <eventlog/pg/pool.hpp>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

// The admin console's pages on the API server's listener (docs/admin-console.md): GET/POST /admin/login/,
// POST /admin/logout/, GET /admin/static/console.css, and, with a session, the dashboard (/admin/), events, dead
// letters, API keys, users and the audit log.

namespace eventlog::http {

/// What the console needs from `eventlog serve`'s settings. Plain value.
struct ConsoleSettings {
    std::string secret_key;                    ///< SECRET_KEY: CSRF tokens are HMAC-SHA256 under it.
    std::chrono::seconds idle_timeout{1800};   ///< CONSOLE_SESSION_IDLE_SECONDS: a session ends after this unused.
    std::vector<std::string> trusted_proxies;  ///< HTTP_TRUSTED_PROXY: peers whose X-Forwarded-* are believed.
    /// Where the dashboard's chart and the events pages read event_log (CLICKHOUSE_*); nullopt: those say ClickHouse
    /// is not configured.
    std::optional<clickhouse::ClientOptions> clickhouse;
    std::string clickhouse_table{"event_log"};  ///< CLICKHOUSE_EVENT_LOG_TABLE_NAME.
    std::uint64_t lookup_max_rows{10'000'000};  ///< HTTP_LOOKUP_MAX_ROWS: max_rows_to_read of every ClickHouse query.
};

/// Adds the console's routes to `router`; handlers borrow `pool` (which must outlive the router).
void AddConsoleRoutes(Router& router, pg::Pool& pool, const ConsoleSettings& settings);

/// Who sent a request, as far as the server can tell.
struct ClientOrigin {
    std::string address;  ///< The client's IP address ("unknown" when the socket gave none).
    bool secure{false};   ///< The request reached us over TLS (only ever through a trusted proxy: serve has no TLS).
};

/// The request's origin: from a peer in `trusted_proxies`, the last X-Forwarded-For entry (the address that proxy
/// saw) and X-Forwarded-Proto's last value == "https"; from any other peer, the peer's address and not secure (its
/// X-Forwarded-* are ignored, so a client cannot claim another address to escape throttling).
ClientOrigin OriginOf(const Request& request, const std::vector<std::string>& trusted_proxies);

/// The fields of an application/x-www-form-urlencoded body ('+' is a space, %XX a byte); a repeated name keeps the
/// first value; a malformed escape is kept as written.
std::map<std::string, std::string> ParseForm(std::string_view body);

/// The value of cookie `name` in the request's Cookie header, "" when absent.
std::string CookieValue(const Request& request, std::string_view name);

/// `text` with & < > " ' escaped for HTML text and attribute values.
std::string HtmlEscape(std::string_view text);

}  // namespace eventlog::http
