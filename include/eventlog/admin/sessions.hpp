#pragma once

#include <chrono>
#include <eventlog/pg/connection.hpp>
#include <optional>
#include <string>
#include <string_view>

// Console logins and sessions (migration 0019, docs/admin-console.md), as the API server runs them under
// eventlog_producer: it never reads a password hash, only the hash's setting (parameters and salt); the database
// compares, throttles, creates the session and writes the audit row. Free functions on the caller's session.

namespace eventlog::admin {

/// Failures that throttle a username or a client address, and the window they are counted in (the SQL function
/// eventlog.console_login holds the same numbers; AdminSessionsTest proves them equal).
inline constexpr int kMaxLoginFailures = 5;
inline constexpr std::chrono::minutes kLoginFailureWindow{15};

/// What a login attempt came to.
enum class LoginOutcome {
    kOk,         ///< Right password of an enabled administrator: a session was created.
    kRefused,    ///< Unknown username, disabled administrator or wrong password (counted as a failure).
    kThrottled,  ///< kMaxLoginFailures failures within kLoginFailureWindow for this username or client address:
                 ///< nothing was compared or counted.
};

/// A login attempt's outcome and, with kOk, the new session's token (43 base64url characters of 32 random bytes,
/// for the cookie; only its SHA-256 is stored).
struct LoginResult {
    LoginOutcome outcome{LoginOutcome::kRefused};
    std::string session_token;
};

/// One login attempt by `client_address` (as the server saw or trusted it). The password is hashed with the stored
/// hash's setting (or a dummy one for an unknown username, so both cost the same), then eventlog.console_login
/// decides. The session expires after `idle` without use.
LoginResult Login(pg::Connection& connection, std::string_view username, std::string_view password,
                  std::string_view client_address, std::chrono::seconds idle);

/// The username of the live session `session_token` (nullopt when the token is malformed, unknown, expired, or its
/// administrator disabled); the session's expiry moves to now + `idle`.
std::optional<std::string> SessionAdministrator(pg::Connection& connection, std::string_view session_token,
                                                std::chrono::seconds idle);

/// "\\x..." (bytea hex input) of SHA-256(`session_token`), what the console's functions (migration 0020) take to
/// find the caller's session; nullopt unless the token is 43 base64url characters.
std::optional<std::string> SessionTokenHash(std::string_view session_token);

/// Ends session `session_token` and audits the logout; false when there was no live session.
bool Logout(pg::Connection& connection, std::string_view session_token, std::string_view client_address);

}  // namespace eventlog::admin
