#include <eventlog/admin/administrators.hpp>
#include <eventlog/admin/password.hpp>
#include <eventlog/core/error.hpp>

namespace eventlog::admin {
namespace {

constexpr std::string_view kUtc = "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'";

}  // namespace

void CheckUsername(std::string_view username) {
    if (username.empty() || username.size() > 150) {
        throw InvalidInputError("username", "expected 1 to 150 letters, digits or @.+-_");
    }
    for (const char c : username) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '@' ||
                        c == '.' || c == '+' || c == '-' || c == '_';
        if (!ok) throw InvalidInputError("username", "expected 1 to 150 letters, digits or @.+-_");
    }
}

void CreateAdministrator(pg::Connection& connection, std::string_view username, std::string_view email,
                         std::string_view password) {
    CheckUsername(username);
    if (email.size() > 254) throw InvalidInputError("email", "expected at most 254 bytes");
    for (const char c : email) {
        if (static_cast<unsigned char>(c) < 0x21 || c == 0x7F) {
            throw InvalidInputError("email", "expected no spaces or control characters");
        }
    }
    CheckPassword(password, username);
    const std::string hash = HashPassword(password);
    try {
        connection.Exec("SELECT eventlog.console_admin_create($1, $2, $3)", {username, email, hash});
    } catch (const Error& e) {
        if (e.Source() == ErrorSource::kPostgres && e.Code() == "23505") {
            throw InvalidInputError("username", "an administrator with this username already exists");
        }
        throw;
    }
}

std::vector<AdministratorInfo> ListAdministrators(pg::Connection& connection) {
    const std::string sql = std::string(
                                "SELECT username, email, disabled, pg_catalog.to_char(created_at AT TIME ZONE "
                                "'UTC', ") +
                            std::string(kUtc) + "), coalesce(pg_catalog.to_char(last_login_at AT TIME ZONE 'UTC', " +
                            std::string(kUtc) + "), '') FROM eventlog.console_admin_list()";
    const auto r = connection.Exec(sql);
    std::vector<AdministratorInfo> out;
    out.reserve(static_cast<std::size_t>(r.Rows()));
    for (int i = 0; i < r.Rows(); ++i) {
        out.push_back({std::string(r.Get(i, 0)), std::string(r.Get(i, 1)), r.Get(i, 2) == "t", std::string(r.Get(i, 3)),
                       std::string(r.Get(i, 4))});
    }
    return out;
}

bool DisableAdministrator(pg::Connection& connection, std::string_view username) {
    return connection.Exec("SELECT eventlog.console_admin_disable($1)", {username}).Get(0, 0) == "t";
}

bool SetAdministratorPassword(pg::Connection& connection, std::string_view username, std::string_view password) {
    CheckPassword(password, username);
    const std::string hash = HashPassword(password);
    return connection.Exec("SELECT eventlog.console_admin_set_password($1, $2)", {username, hash}).Get(0, 0) == "t";
}

}  // namespace eventlog::admin
