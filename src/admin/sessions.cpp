#include <openssl/rand.h>
#include <openssl/sha.h>

#include <array>
#include <eventlog/admin/administrators.hpp>
#include <eventlog/admin/password.hpp>
#include <eventlog/admin/sessions.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/core/text.hpp>

namespace eventlog::admin {
namespace {

constexpr std::string_view kBase64Url = kBase64UrlAlphabet;
constexpr std::size_t kTokenBytes = 32;
constexpr std::size_t kTokenChars = 43;

/// "\x..." (bytea hex input) of SHA-256(`token`'s characters); nullopt unless it is 43 base64url characters.
std::optional<std::string> TokenHash(std::string_view token) {
    if (token.size() != kTokenChars || token.find_first_not_of(kBase64Url) != std::string_view::npos) {
        return std::nullopt;
    }
    std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
    SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest.data());
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "\\x";
    for (const unsigned char b : digest) {
        out.push_back(kHex[b >> 4]);
        out.push_back(kHex[b & 0x0F]);
    }
    return out;
}

}  // namespace

std::optional<std::string> SessionTokenHash(std::string_view session_token) { return TokenHash(session_token); }

LoginResult Login(pg::Connection& connection, std::string_view username, std::string_view password,
                  std::string_view client_address, std::chrono::seconds idle) {
    // A name no administrator can have (too long, other characters) is looked up nowhere, and is recorded cut to 150
    // bytes: a form cannot fill the failure table and the audit log with 16 KiB names.
    bool valid = true;
    try {
        CheckUsername(username);
    } catch (const InvalidInputError&) {
        valid = false;
        username = username.substr(0, 150);
    }
    const auto setting =
        valid ? connection.Exec("SELECT eventlog.console_login_setting($1)", {username}) : pg::Result();
    const bool known = valid && setting.Rows() == 1 && !setting.IsNull(0, 0);
    std::optional<std::string> presented = HashWithSetting(password, known ? setting.Get(0, 0) : DummySetting());
    if (!known) presented.reset();

    std::array<unsigned char, kTokenBytes> random{};
    if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1) {
        throw Error(ErrorKind::kFatal, "admin: RAND_bytes failed");
    }
    LoginResult result;
    std::string token = Base64Url(random.data(), random.size());
    const std::string hash = *TokenHash(token);
    const std::string idle_seconds = std::to_string(idle.count());
    pg::Param presented_param;
    if (presented) presented_param = *presented;
    const auto r = connection.Exec("SELECT eventlog.console_login($1, $2, $3, $4::bytea, $5::integer)",
                                   {username, presented_param, client_address, hash, idle_seconds});
    const std::string_view outcome = r.Get(0, 0);
    if (outcome == "ok") {
        result.outcome = LoginOutcome::kOk;
        result.session_token = std::move(token);
    } else if (outcome == "throttled") {
        result.outcome = LoginOutcome::kThrottled;
    }
    return result;
}

std::optional<std::string> SessionAdministrator(pg::Connection& connection, std::string_view session_token,
                                                std::chrono::seconds idle) {
    const auto hash = TokenHash(session_token);
    if (!hash) return std::nullopt;
    const auto r = connection.Exec("SELECT eventlog.console_session_touch($1::bytea, $2::integer)",
                                   {*hash, std::to_string(idle.count())});
    if (r.Rows() != 1 || r.IsNull(0, 0)) return std::nullopt;
    return std::string(r.Get(0, 0));
}

bool Logout(pg::Connection& connection, std::string_view session_token, std::string_view client_address) {
    const auto hash = TokenHash(session_token);
    if (!hash) return false;
    return connection.Exec("SELECT eventlog.console_logout($1::bytea, $2)", {*hash, client_address}).Get(0, 0) == "t";
}

}  // namespace eventlog::admin
