// The console's events (docs/admin-console.md): recent events from ClickHouse's event_log, filtered by type, time
// range, trace id or event id, 50 a page (at most 200 pages), every query bounded by a time range, LIMIT,
// max_rows_to_read and max_execution_time (EventLogReader); one event's page: its status as GET /api/v1/events/{id}
// sees it in PostgreSQL (eventlog.event_status, through console_event_status) and the other events of its trace.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <eventlog/core/error.hpp>
#include <eventlog/core/uuid.hpp>
#include <eventlog/observability/log.hpp>
#include <string>

#include "http/console_internal.hpp"

namespace eventlog::http::console {
namespace {

constexpr std::size_t kPageRows = 50;
constexpr std::size_t kMaxPages = 200;
constexpr std::int64_t kDefaultWindowS = 86'400;
constexpr std::int64_t kTraceWindowS = 86'400;  // a trace's other events: within a day either side
constexpr std::size_t kTraceRows = 100;

std::int64_t NowS() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/// Seconds since the epoch of a datetime-local value ("2026-12-07T19:05" or with ":SS"), read as UTC.
std::optional<std::int64_t> ParseLocal(const std::string& text) {
    std::tm tm{};
    int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
    char t = 0;
    const int n =
        std::sscanf(text.c_str(), "%4d-%2d-%2d%c%2d:%2d:%2d", &year, &month, &day, &t, &hour, &minute, &second);
    if (n < 6 || (t != 'T' && t != ' ') || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 ||
        second > 59 || year < 1970 || year > 2105) {
        return std::nullopt;
    }
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    return static_cast<std::int64_t>(timegm(&tm));
}

std::string FormatLocal(std::int64_t s) {
    const auto t = static_cast<std::time_t>(s);
    std::tm tm{};
    gmtime_r(&t, &tm);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                       tm.tm_min);
}

std::string EventTable(const std::vector<detail::EventLogReader::Row>& rows, std::size_t shown, std::string_view id) {
    std::string out = "<div class=\"scroll\" tabindex=\"0\"><table id=\"" + std::string(id) +
                      "\"><thead><tr><th scope=\"col\">Event time (UTC)</th><th scope=\"col\">Type</th><th "
                      "scope=\"col\">Event</th><th scope=\"col\">Trace</th><th scope=\"col\">Context</th></tr></thead>"
                      "<tbody>\n";
    for (std::size_t i = 0; i < shown && i < rows.size(); ++i) {
        const auto& r = rows[i];
        out += "<tr><td>" + HtmlEscape(r.event_date_time) + "</td><td>" + HtmlEscape(r.event_type) +
               "</td><td><a class=\"mono\" href=\"/admin/events/" + HtmlEscape(r.event_id) + "/\">" +
               HtmlEscape(r.event_id) + "</a></td><td class=\"mono\">" + HtmlEscape(r.trace_id) +
               "</td><td class=\"mono\">" + HtmlEscape(Shorten(r.event_context, 160)) + "</td></tr>\n";
    }
    return out + "</tbody></table></div>\n";
}

class ListHandler : public PageHandler {
public:
    using PageHandler::PageHandler;

protected:
    Response Serve(const Request& request, const SignedIn& who) override {
        const auto query = ParseForm(request.query);
        const std::int64_t now = NowS();
        detail::EventLogReader::Filter filter;
        filter.event_type = Shorten(Field(query, "type"), 200);
        filter.trace_id = Shorten(Field(query, "trace"), 128);
        std::string error;
        const std::string event_id_text = Field(query, "event_id");
        if (!event_id_text.empty()) {
            if (const auto id = Uuid::Parse(event_id_text)) {
                filter.event_id = id->ToString();
            } else {
                error = "Event id: expected a UUID.";
            }
        }
        const auto from = ParseLocal(Field(query, "from"));
        const auto to = ParseLocal(Field(query, "to"));
        if (!Field(query, "from").empty() && !from) error = "From: expected a date and time (UTC).";
        if (!Field(query, "to").empty() && !to) error = "To: expected a date and time (UTC).";
        filter.to_s = to.value_or(now + 60);
        filter.from_s = from.value_or(filter.to_s - kDefaultWindowS);
        std::size_t page = 0;
        if (const std::string p = Field(query, "page");
            !p.empty() && p.size() <= 9 && p.find_first_not_of("0123456789") == std::string::npos) {
            page = std::min<std::size_t>(std::stoul(p), kMaxPages - 1);
        }
        filter.limit = kPageRows + 1;
        filter.offset = page * kPageRows;

        std::string content = "<h1>Events</h1>\n<p>Delivered events in ClickHouse, newest event time first.</p>\n";
        content +=
            "<form method=\"get\" action=\"/admin/events/\" class=\"filters\" id=\"event-filter\">\n"
            "<div class=\"field\"><label for=\"type\">Event type (exact)</label><input type=\"text\" id=\"type\" "
            "name=\"type\" "
            "maxlength=\"200\" value=\"" +
            HtmlEscape(filter.event_type) +
            "\"></div>\n<div class=\"field\"><label for=\"from\">From (UTC)</label><input type=\"datetime-local\" "
            "id=\"from\" name=\"from\" "
            "value=\"" +
            FormatLocal(filter.from_s) +
            "\"></div>\n<div class=\"field\"><label for=\"to\">To (UTC)</label><input type=\"datetime-local\" "
            "id=\"to\" name=\"to\" value=\"" +
            FormatLocal(filter.to_s) +
            "\"></div>\n<div class=\"field\"><label for=\"trace\">Trace id</label><input type=\"text\" id=\"trace\" "
            "name=\"trace\" "
            "maxlength=\"128\" value=\"" +
            HtmlEscape(filter.trace_id) +
            "\"></div>\n<div class=\"field\"><label for=\"event_id\">Event id</label><input type=\"text\" "
            "id=\"event_id\" name=\"event_id\" "
            "maxlength=\"36\" value=\"" +
            HtmlEscape(event_id_text) +
            "\"></div>\n<button type=\"submit\" id=\"filter-submit\">Filter</button>\n</form>\n";
        if (!error.empty()) {
            content += "<p class=\"error\" role=\"alert\" id=\"filter-error\">" + HtmlEscape(error) + "</p>\n";
            return Html(400, Page("Events", content, &who, "/admin/events/"));
        }
        if (!Ctx().reader) {
            content += "<p class=\"error\">ClickHouse is not configured (CLICKHOUSE_*).</p>\n";
            return Html(200, Page("Events", content, &who, "/admin/events/"));
        }
        std::vector<detail::EventLogReader::Row> rows;
        try {
            rows = Ctx().reader->Events(filter);
        } catch (const Error& e) {
            log::Warning("console_events_failed", {{"error", std::string(e.what())}, {"code", e.Code()}});
            content +=
                "<p class=\"error\" role=\"alert\" id=\"events-error\">ClickHouse did not answer within its "
                "bounds (5 s, HTTP_LOOKUP_MAX_ROWS rows read): narrow the time range or add a filter.</p>\n";
            return Html(503, Page("Events", content, &who, "/admin/events/"));
        }
        const std::size_t shown = std::min(rows.size(), kPageRows);
        if (shown == 0) {
            content += "<p id=\"no-events\">No events match.</p>\n";
        } else {
            content += EventTable(rows, shown, "event-list");
        }
        const std::string base = "/admin/events/?type=" + UrlEncode(filter.event_type) +
                                 "&from=" + UrlEncode(FormatLocal(filter.from_s)) +
                                 "&to=" + UrlEncode(FormatLocal(filter.to_s)) + "&trace=" + UrlEncode(filter.trace_id) +
                                 "&event_id=" + UrlEncode(event_id_text);
        content += "<nav aria-label=\"Pages\" class=\"pager\">";
        if (page > 0) {
            content += "<a href=\"" + HtmlEscape(base) + "&page=" + std::to_string(page - 1) +
                       "\" id=\"previous-page\">Newer</a> ";
        }
        if (rows.size() > kPageRows && page + 1 < kMaxPages) {
            content +=
                "<a href=\"" + HtmlEscape(base) + "&page=" + std::to_string(page + 1) + "\" id=\"next-page\">Older</a>";
        }
        content += "</nav>\n";
        return Html(200, Page("Events", content, &who, "/admin/events/"));
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
        const auto status = InTransaction(Ctx(), [&](pg::Transaction& tx) {
            return tx.Exec(
                "SELECT state, coalesce(to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), ''), "
                "coalesce(attempts::text, ''), coalesce(error, '') FROM eventlog.console_event_status($1::bytea, "
                "$2::uuid)",
                {who.token_hash, event_id});
        });
        std::optional<detail::EventLogReader::Row> row;
        std::vector<detail::EventLogReader::Row> trace;
        std::string clickhouse_error;
        if (Ctx().reader) {
            try {
                detail::EventLogReader::Filter f;
                f.event_id = event_id;
                f.from_s = 0;
                f.to_s = 4'294'967'295;
                f.limit = 1;
                const auto found = Ctx().reader->Events(f);
                if (!found.empty()) row = found.front();
                if (row && !row->trace_id.empty()) {
                    detail::EventLogReader::Filter t;
                    t.trace_id = row->trace_id;
                    t.from_s = row->event_time_s - kTraceWindowS;
                    t.to_s = row->event_time_s + kTraceWindowS;
                    t.limit = kTraceRows;
                    trace = Ctx().reader->Events(t);
                }
            } catch (const Error& e) {
                log::Warning("console_event_failed", {{"error", std::string(e.what())}, {"code", e.Code()}});
                clickhouse_error = "ClickHouse did not answer within its bounds.";
            }
        }
        std::string state;
        std::string detail_text;
        if (status.Rows() == 1 && status.Get(0, 0) != "registered") {
            state = std::string(status.Get(0, 0));
            detail_text = std::string(state == "pending"     ? "enqueued "
                                      : state == "in_flight" ? "claimed "
                                                             : "failed ") +
                          std::string(status.Get(0, 1)) + " UTC";
            if (!status.Get(0, 2).empty()) detail_text += ", attempts " + std::string(status.Get(0, 2));
            if (!status.Get(0, 3).empty()) detail_text += ", error: " + std::string(status.Get(0, 3));
        } else if (row || status.Rows() == 1) {
            state = "delivered";
            if (row && !row->inserted_at.empty()) detail_text = "inserted " + row->inserted_at + " UTC";
        } else {
            state = "unknown";
            detail_text = "Neither PostgreSQL nor ClickHouse knows this event id.";
        }
        if (!row && status.Rows() == 0) return NotFoundPage(who, "No event with id " + event_id + ".");

        std::string content = "<h1>Event</h1>\n<dl class=\"fields\">\n";
        const auto field = [&](std::string_view label, std::string_view id_attr, std::string_view value) {
            content += "<div><dt>" + std::string(label) + "</dt><dd id=\"" + std::string(id_attr) + "\">" +
                       HtmlEscape(value) + "</dd></div>\n";
        };
        field("Event id", "event-id", event_id);
        field("Status", "event-status", state);
        if (!detail_text.empty()) field("Since", "event-status-detail", detail_text);
        if (row) {
            field("Event type", "event-type", row->event_type);
            field("Event time (UTC)", "event-date-time", row->event_date_time);
            field("Environment", "environment", row->environment);
            field("Trace id", "trace-id", row->trace_id);
        }
        content += "</dl>\n";
        if (state == "dead_lettered") {
            content += "<p><a href=\"/admin/dead-letters/" + event_id + "/\">Its dead letter</a></p>\n";
        }
        if (!clickhouse_error.empty()) content += "<p class=\"error\">" + HtmlEscape(clickhouse_error) + "</p>\n";
        if (row) {
            content += "<h2>Context</h2>\n<pre id=\"event-context\">" + HtmlEscape(row->event_context) + "</pre>\n";
            if (!row->trace_id.empty()) {
                content +=
                    "<section aria-labelledby=\"trace-heading\"><h2 id=\"trace-heading\">Events of this "
                    "trace</h2>\n<p>Within a day of this event, at most " +
                    std::to_string(kTraceRows) + ".</p>\n";
                content += EventTable(trace, trace.size(), "trace-events");
                content += "</section>\n";
            }
        }
        content += "<p><a href=\"/admin/events/\">All events</a></p>\n";
        return Html(200, Page("Event", content, &who, "/admin/events/"));
    }
};

}  // namespace

void AddEventRoutes(Router& router, const std::shared_ptr<const Console>& console) {
    router.Add("GET", "/admin/events/", std::make_shared<ListHandler>(console));
    router.Add("GET", "/admin/events/{event_id}/", std::make_shared<ShowHandler>(console));
}

}  // namespace eventlog::http::console
