// The admin console's sign-in, sign-out and first page (docs/admin-console.md). Server-rendered HTML without
// JavaScript, one stylesheet served from here, a strict Content-Security-Policy.
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <eventlog/admin/sessions.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/http/console.hpp>
#include <memory>
#include <string>

namespace eventlog::http {
namespace {

constexpr std::string_view kSessionCookie = "eventlog_session";
constexpr std::string_view kCsrfCookie = "eventlog_csrf";
constexpr std::string_view kCsrfField = "csrf_token";
constexpr std::size_t kMaxFormBytes = 16'384;
constexpr std::string_view kBase64Url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// No script, no frame, no other origin: styles and forms to this server only.
constexpr std::string_view kContentSecurityPolicy =
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'";

constexpr std::string_view kStylesheet =
    R"css(:root { color-scheme: light; --ink: #1d2330; --muted: #5b6475; --line: #d5d9e0;
  --accent: #1f5fbf; --bad: #a4161a; --paper: #ffffff; --wash: #f3f5f8; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, sans-serif; color: var(--ink); background: var(--wash); }
header { background: var(--ink); color: #fff; padding: 0.5rem 1rem; display: flex; flex-wrap: wrap;
  justify-content: space-between; align-items: center; gap: 0.5rem; }
header .brand { margin: 0; font-weight: 600; }
main { max-width: 40rem; margin: 1.5rem auto; padding: 1.25rem; background: var(--paper);
  border: 1px solid var(--line); border-radius: 6px; }
h1 { font-size: 1.4rem; margin-top: 0; }
label { display: block; margin-top: 1rem; font-weight: 600; }
input[type=text], input[type=password] { display: block; width: 100%; padding: 0.5rem; margin-top: 0.25rem;
  font: inherit; border: 1px solid var(--muted); border-radius: 4px; }
button { margin-top: 1.25rem; padding: 0.5rem 1rem; font: inherit; color: #fff; background: var(--accent);
  border: 0; border-radius: 4px; cursor: pointer; }
header button { margin: 0; background: transparent; border: 1px solid #fff; }
:focus-visible { outline: 3px solid #f2b705; outline-offset: 2px; }
.error { color: var(--bad); border-left: 4px solid var(--bad); padding-left: 0.75rem; }
@media (max-width: 400px) { main { margin: 0; border-radius: 0; border-left: 0; border-right: 0; } }
)css";

int HexDigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string Hex(const unsigned char* data, std::size_t size) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(size * 2);
    for (std::size_t i = 0; i < size; ++i) {
        out.push_back(kHex[data[i] >> 4]);
        out.push_back(kHex[data[i] & 0x0F]);
    }
    return out;
}

/// HMAC-SHA256(secret_key, purpose + "\n" + value) in hex: a CSRF token bound to `value` (a cookie's random token).
std::string CsrfToken(std::string_view secret_key, std::string_view purpose, std::string_view value) {
    const std::string message = std::string(purpose) + "\n" + std::string(value);
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int length = 0;
    if (HMAC(EVP_sha256(), secret_key.data(), static_cast<int>(secret_key.size()),
             reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest.data(),
             &length) == nullptr) {
        throw Error(ErrorKind::kFatal, "console: HMAC-SHA256 failed");
    }
    return Hex(digest.data(), length);
}

bool SameToken(std::string_view presented, std::string_view expected) {
    return presented.size() == expected.size() &&
           CRYPTO_memcmp(presented.data(), expected.data(), expected.size()) == 0;
}

bool WellFormedToken(std::string_view token) {
    return token.size() == 43 && token.find_first_not_of(kBase64Url) == std::string_view::npos;
}

std::string RandomToken() {
    std::array<unsigned char, 32> random{};
    if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1) {
        throw Error(ErrorKind::kFatal, "console: RAND_bytes failed");
    }
    std::string out;
    std::uint32_t buffer = 0;
    int bits = 0;
    for (const unsigned char b : random) {
        buffer = (buffer << 8) | b;
        bits += 8;
        while (bits >= 6) {
            out.push_back(kBase64Url[(buffer >> (bits - 6)) & 0x3F]);
            bits -= 6;
        }
    }
    if (bits > 0) out.push_back(kBase64Url[(buffer << (6 - bits)) & 0x3F]);
    return out;
}

/// A cookie for the console's pages only: HttpOnly, SameSite=Strict, Path=/admin/, Secure when the request came over
/// TLS. An empty `value` deletes it.
std::string Cookie(std::string_view name, std::string_view value, bool secure) {
    std::string out = std::string(name) + "=" + std::string(value) + "; Path=/admin/; HttpOnly; SameSite=Strict";
    if (value.empty()) out += "; Max-Age=0";
    if (secure) out += "; Secure";
    return out;
}

Response Html(int status, std::string body) {
    Response r;
    r.status = status;
    r.body = std::move(body);
    r.content_type = "text/html; charset=utf-8";
    r.headers = {{"Content-Security-Policy", std::string(kContentSecurityPolicy)},
                 {"X-Content-Type-Options", "nosniff"},
                 {"X-Frame-Options", "DENY"},
                 {"Referrer-Policy", "same-origin"},
                 {"Cache-Control", "no-store"}};
    return r;
}

Response Redirect(std::string location) {
    Response r = Html(303, "");
    r.headers.emplace_back("Location", std::move(location));
    return r;
}

/// A whole page: the header bar (with a sign-out form when `csrf` is set), then `content`.
std::string Page(std::string_view title, std::string_view content, const std::string& csrf = "") {
    std::string out =
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>";
    out += HtmlEscape(title);
    out +=
        " · eventlog admin</title>\n<link rel=\"stylesheet\" href=\"/admin/static/console.css\">\n</head>\n<body>\n"
        "<header><p class=\"brand\">eventlog admin</p>";
    if (!csrf.empty()) {
        out += "<form method=\"post\" action=\"/admin/logout/\"><input type=\"hidden\" name=\"csrf_token\" value=\"" +
               csrf + "\"><button type=\"submit\">Sign out</button></form>";
    }
    out += "</header>\n<main>\n";
    out += content;
    out += "</main>\n</body>\n</html>\n";
    return out;
}

std::string LoginPage(const std::string& csrf, std::string_view username, std::string_view error) {
    std::string content = "<h1>Sign in</h1>\n";
    if (!error.empty()) content += "<p class=\"error\" role=\"alert\">" + HtmlEscape(error) + "</p>\n";
    content += "<form method=\"post\" action=\"/admin/login/\">\n<input type=\"hidden\" name=\"csrf_token\" value=\"" +
               csrf +
               "\">\n<label for=\"username\">Username</label>\n"
               "<input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" "
               "autocapitalize=\"none\" maxlength=\"150\" required value=\"" +
               HtmlEscape(username) +
               "\">\n<label for=\"password\">Password</label>\n"
               "<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" "
               "required>\n<button type=\"submit\">Sign in</button>\n</form>\n";
    return Page("Sign in", content);
}

Response Forbidden() {
    return Html(403, Page("Forbidden",
                          "<h1>Forbidden</h1>\n<p class=\"error\" role=\"alert\">The form's CSRF token is missing or "
                          "wrong. Go back, reload the page and try again.</p>\n"
                          "<p><a href=\"/admin/login/\">Sign in</a></p>\n"));
}

std::map<std::string, std::string> ReadForm(const Request& request) {
    if (request.body.size() > kMaxFormBytes) {
        Problem p;
        p.status = 413;
        p.error = "form too large";
        throw ProblemError(p);
    }
    if (request.MediaType() != "application/x-www-form-urlencoded") {
        Problem p;
        p.status = 415;
        p.error = "unsupported Content-Type (expected application/x-www-form-urlencoded)";
        p.field = "Content-Type";
        throw ProblemError(p);
    }
    return ParseForm(request.body);
}

std::string Field(const std::map<std::string, std::string>& form, std::string_view name) {
    const auto it = form.find(std::string(name));
    return it == form.end() ? std::string() : it->second;
}

/// The state every console handler shares. Thread-safe (read-only after construction; the pool is thread-safe).
struct Console {
    pg::Pool& pool;
    ConsoleSettings settings;

    /// The administrator of the request's live session (touching it), nullopt without one.
    std::optional<std::string> SessionOf(const Request& request, std::string* token = nullptr) const {
        const std::string cookie = CookieValue(request, kSessionCookie);
        if (!WellFormedToken(cookie)) return std::nullopt;
        auto session = pool.Acquire();
        auto who = admin::SessionAdministrator(*session, cookie, settings.idle_timeout);
        if (who && token != nullptr) *token = cookie;
        return who;
    }
};

class StylesheetHandler : public Handler {
public:
    Response Handle(const Request&) override {
        Response r = Html(200, std::string(kStylesheet));
        r.content_type = "text/css; charset=utf-8";
        for (auto& [name, value] : r.headers) {
            if (name == "Cache-Control") value = "max-age=3600";  // the same for everyone: cacheable, unlike pages
        }
        return r;
    }
};

class LoginFormHandler : public Handler {
public:
    explicit LoginFormHandler(std::shared_ptr<const Console> console) : console_(std::move(console)) {}
    Response Handle(const Request& request) override {
        if (console_->SessionOf(request)) return Redirect("/admin/");
        const auto origin = OriginOf(request, console_->settings.trusted_proxies);
        std::string cookie = CookieValue(request, kCsrfCookie);
        const bool fresh = !WellFormedToken(cookie);
        if (fresh) cookie = RandomToken();
        Response r = Html(200, LoginPage(CsrfToken(console_->settings.secret_key, "login", cookie), "", ""));
        if (fresh) r.headers.emplace_back("Set-Cookie", Cookie(kCsrfCookie, cookie, origin.secure));
        return r;
    }

private:
    std::shared_ptr<const Console> console_;
};

class LoginHandler : public Handler {
public:
    explicit LoginHandler(std::shared_ptr<const Console> console) : console_(std::move(console)) {}
    Response Handle(const Request& request) override {
        const auto form = ReadForm(request);
        const std::string cookie = CookieValue(request, kCsrfCookie);
        const std::string csrf =
            WellFormedToken(cookie) ? CsrfToken(console_->settings.secret_key, "login", cookie) : "";
        if (csrf.empty() || !SameToken(Field(form, kCsrfField), csrf)) return Forbidden();

        const auto origin = OriginOf(request, console_->settings.trusted_proxies);
        const std::string username = Field(form, "username");
        admin::LoginResult result;
        {
            auto session = console_->pool.Acquire();
            result = admin::Login(*session, username, Field(form, "password"), origin.address,
                                  console_->settings.idle_timeout);
        }
        switch (result.outcome) {
            case admin::LoginOutcome::kOk: {
                Response r = Redirect("/admin/");
                r.headers.emplace_back("Set-Cookie", Cookie(kSessionCookie, result.session_token, origin.secure));
                return r;
            }
            case admin::LoginOutcome::kThrottled: {
                Response r = Html(429, LoginPage(csrf, username,
                                                 "Too many failed sign-ins for this username or from this address (5 "
                                                 "in 15 minutes). Wait 15 minutes, then try again."));
                r.headers.emplace_back("Retry-After", "900");
                return r;
            }
            case admin::LoginOutcome::kRefused:
                break;
        }
        return Html(
            200, LoginPage(csrf, username, "Please enter the correct username and password. Both are case-sensitive."));
    }

private:
    std::shared_ptr<const Console> console_;
};

class LogoutHandler : public Handler {
public:
    explicit LogoutHandler(std::shared_ptr<const Console> console) : console_(std::move(console)) {}
    Response Handle(const Request& request) override {
        const auto form = ReadForm(request);
        const std::string token = CookieValue(request, kSessionCookie);
        const auto origin = OriginOf(request, console_->settings.trusted_proxies);
        if (!WellFormedToken(token) ||
            !SameToken(Field(form, kCsrfField), CsrfToken(console_->settings.secret_key, "session", token))) {
            return Forbidden();
        }
        {
            auto session = console_->pool.Acquire();
            admin::Logout(*session, token, origin.address);
        }
        Response r = Redirect("/admin/login/");
        r.headers.emplace_back("Set-Cookie", Cookie(kSessionCookie, "", origin.secure));
        return r;
    }

private:
    std::shared_ptr<const Console> console_;
};

class HomeHandler : public Handler {
public:
    explicit HomeHandler(std::shared_ptr<const Console> console) : console_(std::move(console)) {}
    Response Handle(const Request& request) override {
        std::string token;
        const auto who = console_->SessionOf(request, &token);
        if (!who) return Redirect("/admin/login/");
        const std::string csrf = CsrfToken(console_->settings.secret_key, "session", token);
        return Html(200, Page("Console",
                              "<h1>Console</h1>\n<p>Signed in as <strong>" + HtmlEscape(*who) +
                                  "</strong>.</p>\n<p>The dashboard, events, dead letters, API keys and users pages "
                                  "come next.</p>\n",
                              csrf));
    }

private:
    std::shared_ptr<const Console> console_;
};

}  // namespace

ClientOrigin OriginOf(const Request& request, const std::vector<std::string>& trusted_proxies) {
    ClientOrigin origin;
    origin.address = request.client_address.empty() ? "unknown" : request.client_address;
    if (std::find(trusted_proxies.begin(), trusted_proxies.end(), request.client_address) == trusted_proxies.end()) {
        return origin;
    }
    const auto last = [](const std::string& list) {
        const auto comma = list.rfind(',');
        std::string value = comma == std::string::npos ? list : list.substr(comma + 1);
        const auto first = value.find_first_not_of(" \t");
        const auto end = value.find_last_not_of(" \t");
        return first == std::string::npos ? std::string() : value.substr(first, end - first + 1);
    };
    if (const std::string forwarded = last(request.Header("x-forwarded-for")); !forwarded.empty()) {
        origin.address = forwarded;
    }
    std::string proto = last(request.Header("x-forwarded-proto"));
    std::transform(proto.begin(), proto.end(), proto.begin(), [](unsigned char c) { return std::tolower(c); });
    origin.secure = proto == "https";
    return origin;
}

std::map<std::string, std::string> ParseForm(std::string_view body) {
    const auto decode = [](std::string_view text) {
        std::string out;
        out.reserve(text.size());
        for (std::size_t i = 0; i < text.size(); ++i) {
            const char c = text[i];
            if (c == '+') {
                out.push_back(' ');
            } else if (c == '%' && i + 2 < text.size() && HexDigit(text[i + 1]) >= 0 && HexDigit(text[i + 2]) >= 0) {
                out.push_back(static_cast<char>(HexDigit(text[i + 1]) * 16 + HexDigit(text[i + 2])));
                i += 2;
            } else {
                out.push_back(c);
            }
        }
        return out;
    };
    std::map<std::string, std::string> fields;
    while (!body.empty()) {
        const auto amp = body.find('&');
        const std::string_view pair = body.substr(0, amp);
        if (!pair.empty()) {
            const auto eq = pair.find('=');
            fields.emplace(decode(pair.substr(0, eq)),
                           eq == std::string_view::npos ? std::string() : decode(pair.substr(eq + 1)));
        }
        if (amp == std::string_view::npos) break;
        body.remove_prefix(amp + 1);
    }
    return fields;
}

std::string CookieValue(const Request& request, std::string_view name) {
    std::string_view header;
    const auto it = request.headers.find("cookie");
    if (it == request.headers.end()) return "";
    header = it->second;
    while (!header.empty()) {
        const auto semicolon = header.find(';');
        std::string_view pair = header.substr(0, semicolon);
        while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
        const auto eq = pair.find('=');
        if (eq != std::string_view::npos && pair.substr(0, eq) == name) return std::string(pair.substr(eq + 1));
        if (semicolon == std::string_view::npos) break;
        header.remove_prefix(semicolon + 1);
    }
    return "";
}

std::string HtmlEscape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            case '\'':
                out += "&#39;";
                break;
            default:
                out.push_back(c);
        }
    }
    return out;
}

void AddConsoleRoutes(Router& router, pg::Pool& pool, const ConsoleSettings& settings) {
    if (settings.secret_key.empty()) throw ConfigError("SECRET_KEY: required for the console's CSRF tokens");
    auto console = std::make_shared<const Console>(Console{pool, settings});
    router.Add("GET", "/admin/static/console.css", std::make_shared<StylesheetHandler>());
    router.Add("GET", "/admin/login/", std::make_shared<LoginFormHandler>(console));
    router.Add("POST", "/admin/login/", std::make_shared<LoginHandler>(console));
    router.Add("POST", "/admin/logout/", std::make_shared<LogoutHandler>(console));
    router.Add("GET", "/admin/", std::make_shared<HomeHandler>(console));
}

}  // namespace eventlog::http
