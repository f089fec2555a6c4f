#pragma once

// What the console's pages share (src/http/console*.cpp; docs/admin-console.md): the console's state, the signed-in
// administrator, HTML pages and responses, forms, CSRF. Internal to the http component.

#include <cstdint>
#include <eventlog/core/error.hpp>
#include <eventlog/http/console.hpp>
#include <eventlog/pg/connection.hpp>
#include <eventlog/pg/pool.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "http/event_log_reader.hpp"

namespace eventlog::http::console {

/// The state every console handler shares. Thread-safe (read-only after construction; the pool and the reader are).
struct Console {
    pg::Pool& pool;
    ConsoleSettings settings;
    std::shared_ptr<detail::EventLogReader> reader;  ///< nullptr without ClickHouse settings.
};

/// The administrator of a request's live session. Plain value.
struct SignedIn {
    std::string username;
    std::string token_hash;  ///< "\x..." SHA-256 of the session token: what the migration 0020 functions take.
    std::string csrf;        ///< The session's CSRF token, for every form on the page.
    ClientOrigin origin;
};

/// The signed-in administrator of `request` (touching the session), nullopt without a live session.
std::optional<SignedIn> SignedInOf(const Console& console, const Request& request);

/// True when `form` carries `who`'s CSRF token.
bool CsrfOk(const SignedIn& who, const std::map<std::string, std::string>& form);

/// An HTML response with the console's security headers.
Response Html(int status, std::string body);
/// 303 to `location`.
Response Redirect(std::string location);
/// 403: the CSRF token is missing or wrong.
Response Forbidden();
/// A page of the console for `who`: header (nav, who, sign-out), then `content`. `current` is the nav entry's path.
std::string Page(std::string_view title, std::string_view content, const SignedIn* who = nullptr,
                 std::string_view current = "");
/// 404 as a console page.
Response NotFoundPage(const SignedIn& who, std::string_view what);
/// An HTML page for a failure of a page's work (503 with Retry-After when a server did not answer), logged.
Response ErrorPage(const Error& error, const Request& request);
/// A POST body as form fields (413 over 16 KiB, 415 for another Content-Type).
std::map<std::string, std::string> ReadForm(const Request& request);
/// The field's value, "" when absent.
std::string Field(const std::map<std::string, std::string>& form, std::string_view name);
/// `text` encoded for a URL's query string.
std::string UrlEncode(std::string_view text);
/// The hidden CSRF field for `who`'s forms.
std::string CsrfInput(const SignedIn& who);
/// `text` cut to `max_bytes` (at a UTF-8 boundary) with "…" when cut.
std::string Shorten(std::string_view text, std::size_t max_bytes);
/// "1,234" style thousands.
std::string Thousands(std::int64_t n);

/// Runs `f(transaction)` on a pooled session in one transaction with a 5 s statement_timeout, then commits.
template <typename F>
auto InTransaction(const Console& console, F&& f) {
    auto lease = console.pool.Acquire();
    pg::Transaction tx(*lease);
    tx.Exec("SET LOCAL statement_timeout = 5000");
    if constexpr (std::is_void_v<decltype(f(tx))>) {
        f(tx);
        tx.Commit();
    } else {
        auto result = f(tx);
        tx.Commit();
        return result;
    }
}

/// A GET page that needs a session: 303 to the sign-in form without one.
class PageHandler : public Handler {
public:
    explicit PageHandler(std::shared_ptr<const Console> console) : console_(std::move(console)) {}
    Response Handle(const Request& request) final;

protected:
    /// The page for `who`.
    virtual Response Serve(const Request& request, const SignedIn& who) = 0;
    const Console& Ctx() const { return *console_; }

private:
    std::shared_ptr<const Console> console_;
};

/// A state-changing POST: 303 to the sign-in form without a session, 403 without its CSRF token.
class ActionHandler : public Handler {
public:
    explicit ActionHandler(std::shared_ptr<const Console> console) : console_(std::move(console)) {}
    Response Handle(const Request& request) final;

protected:
    /// The answer to the checked form.
    virtual Response Act(const Request& request, const SignedIn& who,
                         const std::map<std::string, std::string>& form) = 0;
    const Console& Ctx() const { return *console_; }

private:
    std::shared_ptr<const Console> console_;
};

/// The routes of each page (console_dashboard.cpp, console_dead_letters.cpp, console_api_keys.cpp,
/// console_tables.cpp, console_events.cpp).
void AddDashboardRoutes(Router& router, const std::shared_ptr<const Console>& console);
void AddDeadLetterRoutes(Router& router, const std::shared_ptr<const Console>& console);
void AddApiKeyRoutes(Router& router, const std::shared_ptr<const Console>& console);
void AddTableRoutes(Router& router, const std::shared_ptr<const Console>& console);
void AddEventRoutes(Router& router, const std::shared_ptr<const Console>& console);

}  // namespace eventlog::http::console
