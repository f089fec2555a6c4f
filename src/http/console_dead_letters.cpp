// The console's dead letters (docs/admin-console.md): a filtered, paged list with error and attempts, one letter's
// payload, and replay / discard of one, the selected, or all matching a filter, each behind a confirmation page and
// done by eventlog.console_dead_letter_act (migration 0020), which runs the one replay (eventlog.dead_letter_replay,
// as `eventlog dlq replay` does) and writes the audit row in the same transaction.
#include <fmt/format.h>

#include <eventlog/core/error.hpp>
#include <eventlog/core/json.hpp>
#include <eventlog/core/uuid.hpp>
#include <string>
#include <vector>

#include "http/console_internal.hpp"

namespace eventlog::http::console {
namespace {

constexpr int kPageRows = 50;
constexpr std::size_t kMaxSelected = 500;  // checkboxes on one page at most (kPageRows), with room

constexpr std::string_view kColumns =
    "event_id, event_type, to_char(event_date_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
    "coalesce(environment, ''), event_context::text, metadata_version, error, attempts, coalesce(batch_id::text, ''), "
    "to_char(first_failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
    "to_char(last_failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), trace_id";

/// The list's filters, from a query string or a form.
struct Filters {
    std::string type;
    std::string error;

    static Filters From(const std::map<std::string, std::string>& fields) {
        return {Shorten(Field(fields, "type"), 200), Shorten(Field(fields, "error"), 200)};
    }
    std::string Query() const { return "type=" + UrlEncode(type) + "&error=" + UrlEncode(error); }
    std::string Hidden() const {
        return "<input type=\"hidden\" name=\"type\" value=\"" + HtmlEscape(type) +
               "\"><input type=\"hidden\" name=\"error\" value=\"" + HtmlEscape(error) + "\">";
    }
};

/// The canonical ids among `values`, at most kMaxSelected; nullopt when one is not a UUID.
std::optional<std::vector<std::string>> Ids(const std::vector<std::string>& values) {
    std::vector<std::string> out;
    for (const auto& v : values) {
        const auto id = Uuid::Parse(v);
        if (!id) return std::nullopt;
        out.push_back(id->ToString());
        if (out.size() > kMaxSelected) return std::nullopt;
    }
    return out;
}

/// "{id,id}" for a uuid[] parameter.
std::string UuidArray(const std::vector<std::string>& ids) {
    std::string out = "{";
    for (const auto& id : ids) out += (out.size() > 1 ? "," : "") + id;
    return out + "}";
}

/// Every value of a repeated form field ("id=a&id=b"), which ParseForm keeps only the first of.
std::vector<std::string> Repeated(std::string_view body, std::string_view name) {
    std::vector<std::string> out;
    while (!body.empty()) {
        const auto amp = body.find('&');
        const auto pair = body.substr(0, amp);
        const auto fields = ParseForm(pair);
        if (const auto it = fields.find(std::string(name)); it != fields.end()) out.push_back(it->second);
        if (amp == std::string_view::npos) break;
        body.remove_prefix(amp + 1);
    }
    return out;
}

class ListHandler : public PageHandler {
public:
    using PageHandler::PageHandler;

protected:
    Response Serve(const Request& request, const SignedIn& who) override {
        const auto query = ParseForm(request.query);
        const Filters filters = Filters::From(query);
        // The next page starts after the last row of this one: (first_failed_at, event_id), as the index orders.
        const std::string after_at = Field(query, "after_at");
        const auto after_id = Uuid::Parse(Field(query, "after_id"));
        // A timestamptz as PostgreSQL prints it ("2026-12-07 19:20:29.123456+00"); anything else starts at the top.
        const bool paged = !after_at.empty() && after_at.size() <= 40 &&
                           after_at.find_first_not_of("0123456789-:. +") == std::string::npos && after_id;
        std::int64_t total = 0;
        pg::Result rows;
        InTransaction(Ctx(), [&](pg::Transaction& tx) {
            total = tx.Exec("SELECT eventlog.console_dead_letter_count($1::bytea, $2, $3)",
                            {who.token_hash, filters.type, filters.error})
                        .GetInt(0, 0);
            rows = tx.Exec(
                std::string("SELECT ") + std::string(kColumns) +
                    ", first_failed_at::text FROM eventlog.console_dead_letters($1::bytea, $2, $3, "
                    "$4::timestamptz, $5::uuid, $6::integer)",
                {who.token_hash, filters.type, filters.error, paged ? pg::Param(after_at) : pg::Param(std::nullopt),
                 paged ? pg::Param(after_id->ToString()) : pg::Param(std::nullopt), std::to_string(kPageRows + 1)});
        });
        std::string content = "<h1>Dead letters</h1>\n";
        content += fmt::format("<p>Matching: <strong id=\"dead-letter-count\">{}</strong></p>\n", total);
        content +=
            "<form method=\"get\" action=\"/admin/dead-letters/\" class=\"filters\" id=\"dead-letter-filter\">\n"
            "<div class=\"field\"><label for=\"type\">Event type contains</label><input type=\"text\" id=\"type\" "
            "name=\"type\" "
            "maxlength=\"200\" value=\"" +
            HtmlEscape(filters.type) +
            "\"></div>\n<div class=\"field\"><label for=\"error\">Error contains</label><input type=\"text\" "
            "id=\"error\" name=\"error\" "
            "maxlength=\"200\" value=\"" +
            HtmlEscape(filters.error) +
            "\"></div>\n<button type=\"submit\" id=\"filter-submit\">Filter</button>\n</form>\n";
        if (total > 0) {
            content += "<form method=\"post\" action=\"/admin/dead-letters/confirm/\" id=\"all-matching\">" +
                       CsrfInput(who) + filters.Hidden() +
                       "<input type=\"hidden\" name=\"scope\" value=\"matching\">"
                       "<button type=\"submit\" name=\"action\" value=\"replay\" id=\"replay-matching\">Replay all " +
                       std::to_string(total) +
                       " matching…</button> <button type=\"submit\" name=\"action\" value=\"discard\" "
                       "id=\"discard-matching\" class=\"danger\">Discard all " +
                       std::to_string(total) + " matching…</button></form>\n";
        }
        const int shown = std::min(rows.Rows(), kPageRows);
        if (shown == 0) {
            content += "<p id=\"no-dead-letters\">No dead letters" +
                       std::string(filters.type.empty() && filters.error.empty() ? "" : " match these filters") +
                       ".</p>\n";
        } else {
            content += "<form method=\"post\" action=\"/admin/dead-letters/confirm/\" id=\"selected\">" +
                       CsrfInput(who) + filters.Hidden() + "<input type=\"hidden\" name=\"scope\" value=\"selected\">";
            content +=
                "<div class=\"scroll\" tabindex=\"0\"><table id=\"dead-letter-list\"><caption>Oldest failure "
                "first</caption><thead>"
                "<tr><th scope=\"col\">Select</th><th scope=\"col\">Event</th><th scope=\"col\">Type</th><th "
                "scope=\"col\">Error</th><th scope=\"col\">Attempts</th><th scope=\"col\">Last failed "
                "(UTC)</th></tr></thead><tbody>\n";
            for (int i = 0; i < shown; ++i) {
                const std::string id(rows.Get(i, 0));
                content += fmt::format(
                    "<tr id=\"dead-letter-{0}\"><td><input type=\"checkbox\" name=\"id\" value=\"{0}\" "
                    "id=\"select-{0}\" aria-label=\"Select {0}\"></td><td><a href=\"/admin/dead-letters/{0}/\" "
                    "class=\"mono\">{0}</a></td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td></tr>\n",
                    id, HtmlEscape(rows.Get(i, 1)), HtmlEscape(Shorten(rows.Get(i, 6), 200)),
                    HtmlEscape(rows.Get(i, 7)), HtmlEscape(rows.Get(i, 10)));
            }
            content +=
                "</tbody></table></div>\n<button type=\"submit\" name=\"action\" value=\"replay\" "
                "id=\"replay-selected\">Replay selected…</button> <button type=\"submit\" name=\"action\" "
                "value=\"discard\" id=\"discard-selected\" class=\"danger\">Discard selected…</button>\n</form>\n";
        }
        content += "<nav aria-label=\"Pages\" class=\"pager\">";
        if (paged)
            content += "<a href=\"/admin/dead-letters/?" + filters.Query() + "\" id=\"first-page\">First page</a> ";
        if (rows.Rows() > kPageRows) {
            content += "<a href=\"/admin/dead-letters/?" + filters.Query() +
                       "&after_at=" + UrlEncode(rows.Get(kPageRows - 1, 12)) +
                       "&after_id=" + std::string(rows.Get(kPageRows - 1, 0)) + "\" id=\"next-page\">Next page</a>";
        }
        content += "</nav>\n";
        return Html(200, Page("Dead letters", content, &who, "/admin/dead-letters/"));
    }
};

class ShowHandler : public PageHandler {
public:
    using PageHandler::PageHandler;

protected:
    Response Serve(const Request& request, const SignedIn& who) override {
        const auto id = Uuid::Parse(request.params.at("event_id"));
        if (!id) return NotFoundPage(who, "That is not an event id.");
        const std::string event_id = id->ToString();
        const auto r = InTransaction(Ctx(), [&](pg::Transaction& tx) {
            return tx.Exec(std::string("SELECT ") + std::string(kColumns) +
                               " FROM eventlog.console_dead_letter($1::bytea, $2::uuid)",
                           {who.token_hash, event_id});
        });
        if (r.Rows() == 0) {
            return NotFoundPage(who, "No dead letter with event id " + event_id + " (replayed or discarded?).");
        }
        std::string context = std::string(r.Get(0, 4));
        std::string content = "<h1>Dead letter</h1>\n<dl class=\"fields\">\n";
        const auto row = [&](std::string_view label, std::string_view id_attr, std::string_view value) {
            content += "<div><dt>" + std::string(label) + "</dt><dd id=\"" + std::string(id_attr) + "\">" +
                       HtmlEscape(value) + "</dd></div>\n";
        };
        row("Event id", "event-id", r.Get(0, 0));
        row("Event type", "event-type", r.Get(0, 1));
        row("Event time (UTC)", "event-date-time", r.Get(0, 2));
        row("Environment", "environment", r.Get(0, 3));
        row("Trace id", "trace-id", r.Get(0, 11));
        row("Metadata version", "metadata-version", r.Get(0, 5));
        row("Attempts", "attempts", r.Get(0, 7));
        row("Batch", "batch-id", r.Get(0, 8));
        row("First failed (UTC)", "first-failed-at", r.Get(0, 9));
        row("Last failed (UTC)", "last-failed-at", r.Get(0, 10));
        content += "</dl>\n<h2>Error</h2>\n<pre id=\"error-text\">" + HtmlEscape(r.Get(0, 6)) +
                   "</pre>\n<h2>Payload (event_context)</h2>\n<pre id=\"payload\">" + HtmlEscape(context) + "</pre>\n";
        content += "<form method=\"post\" action=\"/admin/dead-letters/confirm/\">" + CsrfInput(who) +
                   "<input type=\"hidden\" name=\"scope\" value=\"selected\"><input type=\"hidden\" name=\"id\" "
                   "value=\"" +
                   event_id + "\"><button type=\"submit\" name=\"action\" value=\"replay\" id=\"replay-" + event_id +
                   "\">Replay…</button> <button type=\"submit\" name=\"action\" value=\"discard\" "
                   "id=\"discard-" +
                   event_id + "\" class=\"danger\">Discard…</button></form>\n";
        content += "<p><a href=\"/admin/dead-letters/\">All dead letters</a></p>\n";
        return Html(200, Page("Dead letter", content, &who, "/admin/dead-letters/"));
    }
};

/// What a confirmation or an action is about, read from the posted form.
struct Choice {
    std::string action;  // "replay" or "discard"
    bool matching{false};
    std::vector<std::string> ids;
    Filters filters;
};

std::optional<Choice> ChoiceOf(const Request& request, const std::map<std::string, std::string>& form) {
    Choice c;
    c.action = Field(form, "action");
    if (c.action != "replay" && c.action != "discard") return std::nullopt;
    c.matching = Field(form, "scope") == "matching";
    c.filters = Filters::From(form);
    if (!c.matching) {
        auto ids = Ids(Repeated(request.body, "id"));
        if (!ids) return std::nullopt;
        c.ids = std::move(*ids);
    }
    return c;
}

class ConfirmHandler : public ActionHandler {
public:
    using ActionHandler::ActionHandler;

protected:
    Response Act(const Request& request, const SignedIn& who, const std::map<std::string, std::string>& form) override {
        const auto choice = ChoiceOf(request, form);
        if (!choice) {
            return Html(400, Page("Dead letters",
                                  "<h1>Dead letters</h1>\n<p class=\"error\" role=\"alert\">Choose replay or discard "
                                  "and at most 500 dead letters by their event ids.</p>\n<p><a "
                                  "href=\"/admin/dead-letters/\">Back to the list</a></p>\n",
                                  &who, "/admin/dead-letters/"));
        }
        if (!choice->matching && choice->ids.empty()) {
            return Html(400, Page("Dead letters",
                                  "<h1>Dead letters</h1>\n<p class=\"error\" role=\"alert\">No dead letter was "
                                  "selected.</p>\n<p><a href=\"/admin/dead-letters/?" +
                                      choice->filters.Query() + "\">Back to the list</a></p>\n",
                                  &who, "/admin/dead-letters/"));
        }
        const bool replay = choice->action == "replay";
        std::string what;
        if (choice->matching) {
            const auto n = InTransaction(Ctx(), [&](pg::Transaction& tx) {
                return tx
                    .Exec("SELECT eventlog.console_dead_letter_count($1::bytea, $2, $3)",
                          {who.token_hash, choice->filters.type, choice->filters.error})
                    .GetInt(0, 0);
            });
            what = fmt::format("all <strong id=\"confirm-count\">{}</strong> dead letters", n);
            if (!choice->filters.type.empty())
                what += " whose event type contains “" + HtmlEscape(choice->filters.type) + "”";
            if (!choice->filters.error.empty())
                what += " whose error contains “" + HtmlEscape(choice->filters.error) + "”";
        } else {
            what = fmt::format("<strong id=\"confirm-count\">{}</strong> selected dead letter{}", choice->ids.size(),
                               choice->ids.size() == 1 ? "" : "s");
        }
        std::string content = std::string("<h1>Confirm ") + (replay ? "replay" : "discard") + "</h1>\n<p>" +
                              (replay ? "Replay " : "Discard ") + what + "?</p>\n";
        content += replay ? "<p>Each moves back into the outbox with its event id, and the relay delivers it once. "
                            "One whose event time ClickHouse cannot store stays.</p>\n"
                          : "<p class=\"error\">Discarded events are deleted and cannot be recovered.</p>\n";
        if (!choice->matching) {
            content += "<ul class=\"mono\">";
            for (const auto& id : choice->ids) content += "<li>" + id + "</li>";
            content += "</ul>\n";
        }
        content += "<form method=\"post\" action=\"/admin/dead-letters/" + choice->action + "/\">" + CsrfInput(who) +
                   choice->filters.Hidden() + "<input type=\"hidden\" name=\"scope\" value=\"" +
                   (choice->matching ? "matching" : "selected") + "\">";
        for (const auto& id : choice->ids) content += "<input type=\"hidden\" name=\"id\" value=\"" + id + "\">";
        content += std::string("<input type=\"hidden\" name=\"action\" value=\"") + choice->action +
                   "\"><button type=\"submit\" id=\"confirm\"" + (replay ? "" : " class=\"danger\"") + ">Yes, " +
                   (replay ? "replay" : "discard") + "</button> <a href=\"/admin/dead-letters/?" +
                   choice->filters.Query() + "\" id=\"cancel\">Cancel</a></form>\n";
        return Html(200, Page(replay ? "Confirm replay" : "Confirm discard", content, &who, "/admin/dead-letters/"));
    }
};

class ChangeHandler : public ActionHandler {
public:
    ChangeHandler(std::shared_ptr<const Console> console, std::string action)
        : ActionHandler(std::move(console)), action_(std::move(action)) {}

protected:
    Response Act(const Request& request, const SignedIn& who, const std::map<std::string, std::string>& form) override {
        auto choice = ChoiceOf(request, form);
        if (!choice || choice->action != action_ || (!choice->matching && choice->ids.empty())) {
            return Html(400, Page("Dead letters",
                                  "<h1>Dead letters</h1>\n<p class=\"error\" role=\"alert\">Nothing to do: go back to "
                                  "the list and choose again.</p>\n",
                                  &who, "/admin/dead-letters/"));
        }
        const auto n = InTransaction(Ctx(), [&](pg::Transaction& tx) {
            return tx
                .Exec("SELECT eventlog.console_dead_letter_act($1::bytea, $2, $3, $4::uuid[], $5, $6)",
                      {who.token_hash, who.origin.address, action_,
                       choice->matching ? pg::Param(std::nullopt) : pg::Param(UuidArray(choice->ids)),
                       choice->filters.type, choice->filters.error})
                .GetInt(0, 0);
        });
        std::string content = std::string("<h1>Dead letters</h1>\n<p role=\"status\" id=\"result\">") +
                              (action_ == "replay" ? "Replayed " : "Discarded ") +
                              fmt::format("<strong id=\"result-count\">{}</strong>", n) + " dead letter" +
                              (n == 1 ? "" : "s") + ".</p>\n";
        if (action_ == "replay" && !choice->matching && n < static_cast<std::int64_t>(choice->ids.size())) {
            content +=
                "<p>The others were no longer dead letters, or their event time is out of ClickHouse's "
                "range.</p>\n";
        }
        content += "<p><a href=\"/admin/dead-letters/\">Back to the dead letters</a></p>\n";
        return Html(200, Page("Dead letters", content, &who, "/admin/dead-letters/"));
    }

private:
    std::string action_;
};

}  // namespace

void AddDeadLetterRoutes(Router& router, const std::shared_ptr<const Console>& console) {
    router.Add("GET", "/admin/dead-letters/", std::make_shared<ListHandler>(console));
    router.Add("GET", "/admin/dead-letters/{event_id}/", std::make_shared<ShowHandler>(console));
    router.Add("POST", "/admin/dead-letters/confirm/", std::make_shared<ConfirmHandler>(console));
    router.Add("POST", "/admin/dead-letters/replay/", std::make_shared<ChangeHandler>(console, "replay"));
    router.Add("POST", "/admin/dead-letters/discard/", std::make_shared<ChangeHandler>(console, "discard"));
}

}  // namespace eventlog::http::console
