#pragma once

#include <eventlog/pg/connection.hpp>
#include <string>
#include <string_view>
#include <vector>

// The console's administrators (migration 0019, docs/admin-console.md), as `eventlog createsuperuser` and
// `eventlog admin ...` manage them: through the SECURITY DEFINER functions granted to eventlog_admin, never the
// tables. Each change writes its audit row in the same statement. Free functions on the caller's session.

namespace eventlog::admin {

/// Throws InvalidInputError (field "username") unless `username` is 1-150 letters, digits or @.+-_ (Django's rule).
void CheckUsername(std::string_view username);

/// Creates administrator `username` with `email` (may be empty) and `password`, which must pass CheckPassword: it is
/// stored as its argon2id hash only. Throws InvalidInputError for a bad username, email or password (naming the
/// rule) and when the username is taken.
void CreateAdministrator(pg::Connection& connection, std::string_view username, std::string_view email,
                         std::string_view password);

/// One administrator as `admin list` shows it (never the hash).
struct AdministratorInfo {
    std::string username;
    std::string email;
    bool disabled{false};
    std::string created_at;     ///< UTC, "YYYY-MM-DDTHH:MM:SSZ".
    std::string last_login_at;  ///< UTC as created_at; "" when never.
};

/// Every administrator, oldest first.
std::vector<AdministratorInfo> ListAdministrators(pg::Connection& connection);

/// Disables `username` and ends its console sessions; false when there is no such administrator.
bool DisableAdministrator(pg::Connection& connection, std::string_view username);

/// Replaces the password of `username` (it must pass CheckPassword, else InvalidInputError) and ends its console
/// sessions; false when there is no such administrator. A disabled administrator stays disabled.
bool SetAdministratorPassword(pg::Connection& connection, std::string_view username, std::string_view password);

}  // namespace eventlog::admin
