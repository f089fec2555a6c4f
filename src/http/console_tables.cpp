// Two read-only tables of the console (docs/admin-console.md): the users behind POST /api/v1/users (searchable) and
// the audit log, both newest first, 50 a page, paged by id (eventlog.console_users / console_audit_log, migration
// 0020).
#include <fmt/format.h>

#include <charconv>
#include <string>

#include "http/console_internal.hpp"

namespace eventlog::http::console {
namespace {

constexpr int kPageRows = 50;

/// The "before" cursor of a query string: a positive id, or nullopt.
std::optional<std::string> Before(const std::map<std::string, std::string>& query) {
    const std::string text = Field(query, "before");
    std::int64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value <= 0) return std::nullopt;
    return std::to_string(value);
}

class UsersHandler : public PageHandler {
public:
    using PageHandler::PageHandler;

protected:
    Response Serve(const Request& request, const SignedIn& who) override {
        const auto query = ParseForm(request.query);
        const std::string search = Shorten(Field(query, "q"), 254);
        const auto before = Before(query);
        const auto r = InTransaction(Ctx(), [&](pg::Transaction& tx) {
            return tx.Exec(
                "SELECT id, email, first_name, last_name, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD "
                "HH24:MI:SS') FROM eventlog.console_users($1::bytea, $2, $3::bigint, $4::integer)",
                {who.token_hash, search, before ? pg::Param(*before) : pg::Param(std::nullopt),
                 std::to_string(kPageRows + 1)});
        });
        std::string content =
            "<h1>Users</h1>\n<p>The users created through <code>POST /api/v1/users</code>, newest first.</p>\n"
            "<form method=\"get\" action=\"/admin/users/\" class=\"filters\" id=\"user-search\" role=\"search\">"
            "<div class=\"field\"><label for=\"q\">Email or name contains</label><input type=\"text\" id=\"q\" "
            "name=\"q\" "
            "maxlength=\"254\" value=\"" +
            HtmlEscape(search) + "\"></div><button type=\"submit\" id=\"search-submit\">Search</button></form>\n";
        const int shown = std::min(r.Rows(), kPageRows);
        if (shown == 0) {
            content += "<p id=\"no-users\">No users" + std::string(search.empty() ? "" : " match") + ".</p>\n";
        } else {
            content +=
                "<div class=\"scroll\" tabindex=\"0\"><table id=\"user-list\"><thead><tr><th scope=\"col\">Id</th><th "
                "scope=\"col\">Email</th><th scope=\"col\">First name</th><th scope=\"col\">Last name</th><th "
                "scope=\"col\">Created (UTC)</th></tr></thead><tbody>\n";
            for (int i = 0; i < shown; ++i) {
                content += "<tr id=\"user-" + HtmlEscape(r.Get(i, 0)) + "\"><td>" + HtmlEscape(r.Get(i, 0)) +
                           "</td><td>" + HtmlEscape(r.Get(i, 1)) + "</td><td>" + HtmlEscape(r.Get(i, 2)) + "</td><td>" +
                           HtmlEscape(r.Get(i, 3)) + "</td><td>" + HtmlEscape(r.Get(i, 4)) + "</td></tr>\n";
            }
            content += "</tbody></table></div>\n";
        }
        content += "<nav aria-label=\"Pages\" class=\"pager\">";
        if (before) content += "<a href=\"/admin/users/?q=" + UrlEncode(search) + "\" id=\"first-page\">Newest</a> ";
        if (r.Rows() > kPageRows) {
            content += "<a href=\"/admin/users/?q=" + UrlEncode(search) +
                       "&before=" + std::string(r.Get(kPageRows - 1, 0)) + "\" id=\"next-page\">Older</a>";
        }
        content += "</nav>\n";
        return Html(200, Page("Users", content, &who, "/admin/users/"));
    }
};

class AuditHandler : public PageHandler {
public:
    using PageHandler::PageHandler;

protected:
    Response Serve(const Request& request, const SignedIn& who) override {
        const auto query = ParseForm(request.query);
        const auto before = Before(query);
        const auto r = InTransaction(Ctx(), [&](pg::Transaction& tx) {
            return tx.Exec(
                "SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), actor, action, target, "
                "client_address, db_role, details::text FROM eventlog.console_audit_log($1::bytea, $2::bigint, "
                "$3::integer)",
                {who.token_hash, before ? pg::Param(*before) : pg::Param(std::nullopt), std::to_string(kPageRows + 1)});
        });
        std::string content =
            "<h1>Audit log</h1>\n<p>Every change, by the console or the command line, newest "
            "first.</p>\n";
        const int shown = std::min(r.Rows(), kPageRows);
        if (shown == 0) {
            content += "<p id=\"no-audit\">Nothing recorded yet.</p>\n";
        } else {
            content +=
                "<div class=\"scroll\" tabindex=\"0\"><table id=\"audit-list\"><thead><tr><th scope=\"col\">When "
                "(UTC)</th><th "
                "scope=\"col\">Who</th><th scope=\"col\">Action</th><th scope=\"col\">Target</th><th "
                "scope=\"col\">Address</th><th scope=\"col\">Details</th></tr></thead><tbody>\n";
            for (int i = 0; i < shown; ++i) {
                const std::string details(r.Get(i, 7));
                content += "<tr id=\"audit-" + HtmlEscape(r.Get(i, 0)) + "\"><td>" + HtmlEscape(r.Get(i, 1)) +
                           "</td><td>" + HtmlEscape(r.Get(i, 2)) +
                           (r.Get(i, 2) == "cli" ? " (" + HtmlEscape(r.Get(i, 6)) + ")" : std::string()) +
                           "</td><td class=\"action\">" + HtmlEscape(r.Get(i, 3)) + "</td><td>" +
                           HtmlEscape(Shorten(r.Get(i, 4), 160)) + "</td><td>" + HtmlEscape(r.Get(i, 5)) +
                           "</td><td class=\"mono\">" +
                           (details == "{}" ? std::string() : HtmlEscape(Shorten(details, 300))) + "</td></tr>\n";
            }
            content += "</tbody></table></div>\n";
        }
        content += "<nav aria-label=\"Pages\" class=\"pager\">";
        if (before) content += "<a href=\"/admin/audit/\" id=\"first-page\">Newest</a> ";
        if (r.Rows() > kPageRows) {
            content += "<a href=\"/admin/audit/?before=" + std::string(r.Get(kPageRows - 1, 0)) +
                       "\" id=\"next-page\">Older</a>";
        }
        content += "</nav>\n";
        return Html(200, Page("Audit log", content, &who, "/admin/audit/"));
    }
};

}  // namespace

void AddTableRoutes(Router& router, const std::shared_ptr<const Console>& console) {
    router.Add("GET", "/admin/users/", std::make_shared<UsersHandler>(console));
    router.Add("GET", "/admin/audit/", std::make_shared<AuditHandler>(console));
}

}  // namespace eventlog::http::console
