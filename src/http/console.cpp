// The admin console's sign-in and sign-out, and what its pages share (docs/admin-console.md). Server-rendered HTML
// without JavaScript, one stylesheet served from here, a strict Content-Security-Policy. The pages themselves are in
// console_*.cpp.
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
#include <eventlog/http/errors.hpp>
#include <eventlog/observability/log.hpp>
#include <memory>
#include <string>

#include "http/console_internal.hpp"

namespace eventlog::http {
namespace {

using console::Console;
using console::Field;
using console::Forbidden;
using console::Html;
using console::Page;
using console::ReadForm;
using console::Redirect;

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
header .who { margin: 0 0 0 auto; }
nav ul { list-style: none; margin: 0; padding: 0.25rem 1rem; display: flex; flex-wrap: wrap; gap: 0.25rem 1rem;
  background: var(--paper); border-bottom: 1px solid var(--line); }
nav a { color: var(--accent); }
nav a[aria-current=page] { color: var(--ink); font-weight: 600; text-decoration: none; }
main { max-width: 72rem; }
h2 { font-size: 1.15rem; margin-top: 1.5rem; }
a { color: var(--accent); }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(10rem, 1fr)); gap: 0.75rem; margin: 0; }
.figures div { border: 1px solid var(--line); border-radius: 4px; padding: 0.5rem 0.75rem; }
.figures dt { color: var(--muted); font-size: 0.9rem; }
.figures dd { margin: 0; font-size: 1.3rem; font-weight: 600; overflow-wrap: anywhere; }
.fields div { display: flex; flex-wrap: wrap; gap: 0 1rem; border-bottom: 1px solid var(--line); padding: 0.25rem 0; }
.fields dt { min-width: 10rem; color: var(--muted); }
.fields dd { margin: 0; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
.scroll table { min-width: 36rem; }
table { border-collapse: collapse; width: 100%; font-size: 0.95rem; }
th, td { text-align: left; padding: 0.35rem 0.5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
caption { text-align: left; color: var(--muted); }
.mono, pre, code { font-family: ui-monospace, monospace; font-size: 0.9rem; overflow-wrap: anywhere; }
pre { white-space: pre-wrap; background: var(--wash); padding: 0.75rem; border-radius: 4px; }
.filters { display: flex; flex-wrap: wrap; gap: 0 1rem; align-items: end; }
.filters .field { flex: 1 1 12rem; min-width: 0; }
.filters label { margin-top: 0.5rem; }
.filters input { width: 100%; }
.filters button { margin-top: 0.5rem; }
input[type=datetime-local] { display: block; padding: 0.45rem; margin-top: 0.25rem; font: inherit;
  border: 1px solid var(--muted); border-radius: 4px; }
fieldset { margin-top: 1rem; border: 1px solid var(--line); border-radius: 4px; }
.check { display: flex; gap: 0.5rem; align-items: center; }
.check label { margin: 0; font-weight: 400; }
td form button, td button { margin: 0; padding: 0.25rem 0.6rem; }
button.danger { background: var(--bad); }
.pager { margin-top: 1rem; }
.notice { border: 2px solid var(--accent); border-radius: 4px; padding: 0.5rem 1rem; }
.chart { width: 100%; height: auto; border: 1px solid var(--line); }
.chart .bar { fill: var(--accent); }
.chart .lag { fill: none; stroke: var(--bad); stroke-width: 2; }
.chart .axis { stroke: var(--muted); }
.chart text { font-size: 12px; fill: var(--muted); }
figure { margin: 0; }
@media (max-width: 400px) { main { margin: 0; padding: 0.75rem; border-radius: 0; border-left: 0; border-right: 0; }
  .fields dt { min-width: 0; } }
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
        if (console::SignedInOf(*console_, request)) return Redirect("/admin/");
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

}  // namespace

namespace console {

std::optional<SignedIn> SignedInOf(const Console& console, const Request& request) {
    const std::string cookie = CookieValue(request, kSessionCookie);
    if (!WellFormedToken(cookie)) return std::nullopt;
    std::optional<std::string> who;
    {
        auto session = console.pool.Acquire();
        who = admin::SessionAdministrator(*session, cookie, console.settings.idle_timeout);
    }
    if (!who) return std::nullopt;
    SignedIn out;
    out.username = std::move(*who);
    out.token_hash = admin::SessionTokenHash(cookie).value_or("");
    out.csrf = CsrfToken(console.settings.secret_key, "session", cookie);
    out.origin = OriginOf(request, console.settings.trusted_proxies);
    return out;
}

bool CsrfOk(const SignedIn& who, const std::map<std::string, std::string>& form) {
    return SameToken(Field(form, kCsrfField), who.csrf);
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

std::string CsrfInput(const SignedIn& who) {
    return "<input type=\"hidden\" name=\"csrf_token\" value=\"" + who.csrf + "\">";
}

std::string Page(std::string_view title, std::string_view content, const SignedIn* who, std::string_view current) {
    static constexpr std::array<std::pair<std::string_view, std::string_view>, 6> kNav = {{
        {"/admin/", "Dashboard"},
        {"/admin/events/", "Events"},
        {"/admin/dead-letters/", "Dead letters"},
        {"/admin/api-keys/", "API keys"},
        {"/admin/users/", "Users"},
        {"/admin/audit/", "Audit log"},
    }};
    std::string out =
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>";
    out += HtmlEscape(title);
    out +=
        " · eventlog admin</title>\n<link rel=\"stylesheet\" href=\"/admin/static/console.css\">\n</head>\n<body>\n"
        "<header><p class=\"brand\">eventlog admin</p>";
    if (who != nullptr) {
        out += "<p class=\"who\">Signed in as <strong>" + HtmlEscape(who->username) +
               "</strong></p><form method=\"post\" action=\"/admin/logout/\">" + CsrfInput(*who) +
               "<button type=\"submit\" id=\"sign-out\">Sign out</button></form>";
    }
    out += "</header>\n";
    if (who != nullptr) {
        out += "<nav aria-label=\"Console\"><ul>";
        for (const auto& [path, label] : kNav) {
            out += "<li><a href=\"" + std::string(path) + "\"";
            if (path == current) out += " aria-current=\"page\"";
            out += ">" + std::string(label) + "</a></li>";
        }
        out += "</ul></nav>\n";
    }
    out += "<main>\n";
    out += content;
    out += "</main>\n</body>\n</html>\n";
    return out;
}

Response Forbidden() {
    return Html(403, Page("Forbidden",
                          "<h1>Forbidden</h1>\n<p class=\"error\" role=\"alert\">The form's CSRF token is missing or "
                          "wrong. Go back, reload the page and try again.</p>\n"
                          "<p><a href=\"/admin/login/\">Sign in</a></p>\n"));
}

Response NotFoundPage(const SignedIn& who, std::string_view what) {
    return Html(
        404, Page("Not found", "<h1>Not found</h1>\n<p class=\"error\" role=\"alert\">" + HtmlEscape(what) + "</p>\n",
                  &who));
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

std::string UrlEncode(std::string_view text) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (const char c : text) {
        const auto b = static_cast<unsigned char>(c);
        if (std::isalnum(b) || c == '-' || c == '_' || c == '.' || c == '~') {
            out.push_back(c);
        } else {
            out.push_back('%');
            out.push_back(kHex[b >> 4]);
            out.push_back(kHex[b & 0x0F]);
        }
    }
    return out;
}

std::string Shorten(std::string_view text, std::size_t max_bytes) {
    if (text.size() <= max_bytes) return std::string(text);
    std::size_t cut = max_bytes;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // not inside a character
    return std::string(text.substr(0, cut)) + "…";
}

std::string Thousands(std::int64_t n) {
    std::string digits = std::to_string(n < 0 ? -n : n);
    std::string out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
        out.push_back(digits[i]);
    }
    return n < 0 ? "-" + out : out;
}

Response ErrorPage(const Error& error, const Request& request) {
    const Problem p = ProblemFor(error);
    log::Warning("console_request_failed",
                 {{"path", request.path}, {"error", std::string(error.what())}, {"code", error.Code()}});
    std::string content =
        "<h1>" + std::string(p.status == 503 ? "Unavailable" : "Error") +
        "</h1>\n<p class=\"error\" role=\"alert\" id=\"error-text\">" + HtmlEscape(p.error) +
        (p.status == 503 ? ": PostgreSQL or ClickHouse did not answer. Reload the page in a moment." : ".") +
        "</p>\n<p><a href=\"/admin/\">Dashboard</a></p>\n";
    Response r = Html(p.status, Page(p.status == 503 ? "Unavailable" : "Error", content));
    if (p.retry_after) r.headers.emplace_back("Retry-After", std::to_string(*p.retry_after));
    return r;
}

Response PageHandler::Handle(const Request& request) {
    try {
        const auto who = SignedInOf(*console_, request);
        if (!who) return Redirect("/admin/login/");
        return Serve(request, *who);
    } catch (const Error& e) {
        return ErrorPage(e, request);
    }
}

Response ActionHandler::Handle(const Request& request) {
    try {
        const auto who = SignedInOf(*console_, request);
        if (!who) return Redirect("/admin/login/");
        const auto form = ReadForm(request);
        if (!CsrfOk(*who, form)) return Forbidden();
        return Act(request, *who, form);
    } catch (const Error& e) {
        return ErrorPage(e, request);
    }
}

}  // namespace console

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
    std::shared_ptr<detail::EventLogReader> reader;
    if (settings.clickhouse) {
        reader = std::make_shared<detail::EventLogReader>(*settings.clickhouse, settings.clickhouse_table,
                                                          settings.lookup_max_rows);
    }
    auto console = std::make_shared<const Console>(Console{pool, settings, std::move(reader)});
    router.Add("GET", "/admin/static/console.css", std::make_shared<StylesheetHandler>());
    router.Add("GET", "/admin/login/", std::make_shared<LoginFormHandler>(console));
    router.Add("POST", "/admin/login/", std::make_shared<LoginHandler>(console));
    router.Add("POST", "/admin/logout/", std::make_shared<LogoutHandler>(console));
    console::AddDashboardRoutes(router, console);
    console::AddDeadLetterRoutes(router, console);
    console::AddApiKeyRoutes(router, console);
    console::AddTableRoutes(router, console);
    console::AddEventRoutes(router, console);
}

}  // namespace eventlog::http
