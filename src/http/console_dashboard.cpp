// The console's dashboard at /admin/ (docs/admin-console.md): `eventlog status`'s figures (outbox::ReadStatus, the
// same function), the relays' sessions, delivered per minute and the delivery lag over the last hour as an inline
// SVG drawn here, and whether PostgreSQL and ClickHouse answer.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <eventlog/core/error.hpp>
#include <eventlog/observability/log.hpp>
#include <eventlog/outbox/outbox.hpp>
#include <string>
#include <vector>

#include "http/console_internal.hpp"

namespace eventlog::http::console {
namespace {

constexpr int kChartWidth = 600;
constexpr int kChartHeight = 160;
constexpr int kChartTop = 16;

std::string Seconds(double s) {
    if (s < 120) return fmt::format("{:.1f} s", s);
    if (s < 7200) return fmt::format("{:.1f} min", s / 60);
    return fmt::format("{:.1f} h", s / 3600);
}

/// The chart: one bar per minute (delivered, left scale) and the mean lag as a line (right scale), the hour before
/// `now_s`; then the same numbers as a table for screen readers and text browsers.
std::string ChartSvg(const detail::EventLogReader::Chart& chart, std::int64_t now_s) {
    const std::int64_t first = (now_s / 60) * 60 - std::int64_t{59} * 60;
    std::vector<const detail::EventLogReader::Minute*> slots(60, nullptr);
    std::int64_t max_delivered = 0;
    std::int64_t total = 0;
    double max_lag = 0;
    for (const auto& m : chart.minutes) {
        const std::int64_t index = (m.start_s - first) / 60;
        if (index < 0 || index >= 60) continue;
        slots[static_cast<std::size_t>(index)] = &m;
        max_delivered = std::max(max_delivered, m.delivered);
        max_lag = std::max(max_lag, m.avg_lag_s);
        total += m.delivered;
    }
    const double bar = static_cast<double>(kChartWidth) / 60;
    std::string out = fmt::format(
        "<figure>\n<svg id=\"delivery-chart\" class=\"chart\" viewBox=\"0 0 {} {}\" role=\"img\" "
        "aria-labelledby=\"chart-title\" preserveAspectRatio=\"none\">\n<title id=\"chart-title\">Delivered per "
        "minute{} over the last hour: {} events, at most {} in a minute</title>\n",
        kChartWidth, kChartHeight + kChartTop + 20, chart.by_insert_time ? " and mean delivery lag" : "", total,
        max_delivered);
    out += fmt::format("<line class=\"axis\" x1=\"0\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\"/>\n", kChartTop + kChartHeight,
                       kChartWidth);
    std::string lag_points;
    for (std::size_t i = 0; i < slots.size(); ++i) {
        if (slots[i] == nullptr) continue;
        const double h = max_delivered > 0 ? static_cast<double>(slots[i]->delivered) /
                                                 static_cast<double>(max_delivered) * kChartHeight
                                           : 0;
        out += fmt::format("<rect class=\"bar\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\"/>\n",
                           static_cast<double>(i) * bar + 1, kChartTop + kChartHeight - h, bar - 2, h);
        if (chart.by_insert_time && max_lag > 0) {
            lag_points += fmt::format("{:.1f},{:.1f} ", (static_cast<double>(i) + 0.5) * bar,
                                      kChartTop + kChartHeight - slots[i]->avg_lag_s / max_lag * kChartHeight);
        }
    }
    if (!lag_points.empty()) out += "<polyline class=\"lag\" points=\"" + lag_points + "\"/>\n";
    out += fmt::format(
        "<text x=\"2\" y=\"12\">{} / min</text>\n<text x=\"{}\" y=\"12\" text-anchor=\"end\">{}</text>\n"
        "<text x=\"2\" y=\"{}\">60 min ago</text>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\">now</text>\n</svg>\n",
        max_delivered, kChartWidth - 2, chart.by_insert_time ? "lag max " + Seconds(max_lag) : std::string(),
        kChartTop + kChartHeight + 16, kChartWidth - 2, kChartTop + kChartHeight + 16);
    out += "<figcaption>Bars: events delivered per minute";
    out += chart.by_insert_time ? " (by ClickHouse insert time). Line: mean delivery lag (insert time minus event "
                                  "time)."
                                : " (by event time: this event_log has no inserted_at column, so no lag).";
    out += "</figcaption>\n</figure>\n";
    out +=
        "<details><summary>The chart's numbers</summary>\n<table id=\"delivery-table\"><thead><tr><th "
        "scope=\"col\">Minute (UTC)</th><th scope=\"col\">Delivered</th><th scope=\"col\">Mean lag</th><th "
        "scope=\"col\">Max lag</th></tr></thead><tbody>\n";
    for (const auto& m : chart.minutes) {
        const auto t = static_cast<std::time_t>(m.start_s);
        std::tm tm{};
        gmtime_r(&t, &tm);
        out += fmt::format("<tr><td>{:02}:{:02}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n", tm.tm_hour, tm.tm_min,
                           m.delivered, chart.by_insert_time ? Seconds(m.avg_lag_s) : "–",
                           chart.by_insert_time ? Seconds(m.max_lag_s) : "–");
    }
    out += "</tbody></table></details>\n";
    out += fmt::format("<p>Delivered in the last hour: <strong id=\"delivered-last-hour\">{}</strong></p>\n", total);
    return out;
}

class DashboardHandler : public PageHandler {
public:
    using PageHandler::PageHandler;

protected:
    Response Serve(const Request&, const SignedIn& who) override {
        std::string content = "<h1>Dashboard</h1>\n";
        // PostgreSQL: the figures and relays. A failure is shown, not thrown: the page is for when things are wrong.
        std::string postgres = "reachable";
        outbox::Status s;
        std::string relays;
        int relay_count = 0;
        try {
            const auto started = std::chrono::steady_clock::now();
            InTransaction(Ctx(), [&](pg::Transaction& tx) {
                s = outbox::ReadStatus(tx.Conn());
                const auto r = tx.Exec(
                    "SELECT pid, client_address, to_char(connected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), "
                    "coalesce(to_char(last_seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), ''), "
                    "coalesce(extract(epoch FROM now() - last_seen_at)::bigint::text, ''), state "
                    "FROM eventlog.console_relays($1::bytea)",
                    {who.token_hash});
                relay_count = r.Rows();
                for (int i = 0; i < r.Rows(); ++i) {
                    relays +=
                        "<tr><td>" + HtmlEscape(r.Get(i, 0)) + "</td><td>" + HtmlEscape(r.Get(i, 1)) + "</td><td>" +
                        HtmlEscape(r.Get(i, 2)) + "</td><td>" +
                        (r.Get(i, 3).empty() ? std::string("–")
                                             : HtmlEscape(r.Get(i, 3)) + " (" + HtmlEscape(r.Get(i, 4)) + " s ago)") +
                        "</td><td>" + HtmlEscape(r.Get(i, 5)) + "</td></tr>\n";
                }
            });
            postgres = fmt::format("reachable ({} ms)", std::chrono::duration_cast<std::chrono::milliseconds>(
                                                            std::chrono::steady_clock::now() - started)
                                                            .count());
        } catch (const Error& e) {
            postgres = "unreachable";
            log::Warning("console_dashboard_postgres_failed", {{"error", std::string(e.what())}, {"code", e.Code()}});
        }
        content += "<section aria-labelledby=\"figures\"><h2 id=\"figures\">Outbox</h2>\n<dl class=\"figures\">\n";
        content += fmt::format(
            "<div><dt>Backlog</dt><dd id=\"backlog\">{}</dd></div>\n"
            "<div><dt>Oldest waiting</dt><dd id=\"oldest-age\">{}</dd></div>\n"
            "<div><dt>In flight</dt><dd><span id=\"in-flight\">{}</span> events in <span "
            "id=\"in-flight-batches\">{}</span> batches</dd></div>\n"
            "<div><dt>Dead letters</dt><dd><a id=\"dead-letters\" href=\"/admin/dead-letters/\">{}</a></dd></div>\n"
            "<div><dt>Outbox on disk</dt><dd id=\"retained-bytes\">{} bytes</dd></div>\n",
            s.pending, Seconds(s.oldest_pending_age_seconds), s.in_flight_events, s.in_flight_batches, s.dead_letters,
            Thousands(s.retained_bytes));
        content += "</dl>\n";
        if (!s.retention_waiting.empty()) {
            content += "<p>Retention waits for: " + HtmlEscape(s.retention_waiting) + "</p>\n";
        }
        content += "</section>\n";

        content += fmt::format(
            "<section aria-labelledby=\"relays-heading\"><h2 id=\"relays-heading\">Relays</h2>\n<p>Relay sessions "
            "connected to PostgreSQL: <strong id=\"relays-alive\">{}</strong></p>\n",
            relay_count);
        if (relay_count > 0) {
            content +=
                "<div class=\"scroll\" tabindex=\"0\"><table id=\"relays\"><thead><tr><th scope=\"col\">PID</th><th "
                "scope=\"col\">Address</th><th scope=\"col\">Connected (UTC)</th><th scope=\"col\">Last seen "
                "(UTC)</th><th scope=\"col\">State</th></tr></thead><tbody>\n" +
                relays + "</tbody></table></div>\n";
        }
        content += "</section>\n";

        // ClickHouse: the chart.
        std::string clickhouse = "not configured";
        std::string chart_html = "<p>ClickHouse is not configured (CLICKHOUSE_*), so there is no chart.</p>\n";
        if (Ctx().reader) {
            const auto now_s =
                std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                    .count();
            try {
                const auto chart = Ctx().reader->DeliveredPerMinute(now_s);
                clickhouse = "reachable";
                chart_html = ChartSvg(chart, now_s);
            } catch (const Error& e) {
                log::Warning("console_dashboard_clickhouse_failed",
                             {{"error", std::string(e.what())}, {"code", e.Code()}});
                try {
                    Ctx().reader->Ping();
                    clickhouse = "reachable";
                    chart_html = "<p class=\"error\">The chart's query failed: " + HtmlEscape(e.what()) + "</p>\n";
                } catch (const Error&) {
                    clickhouse = "unreachable";
                    chart_html = "<p class=\"error\">ClickHouse does not answer.</p>\n";
                }
            }
        }
        content += "<section aria-labelledby=\"delivery\"><h2 id=\"delivery\">Delivery, last hour</h2>\n" + chart_html +
                   "</section>\n";
        content += fmt::format(
            "<section aria-labelledby=\"servers\"><h2 id=\"servers\">Servers</h2>\n<dl class=\"figures\">\n"
            "<div><dt>PostgreSQL</dt><dd id=\"postgres-status\">{}</dd></div>\n"
            "<div><dt>ClickHouse</dt><dd id=\"clickhouse-status\">{}</dd></div>\n</dl>\n</section>\n",
            HtmlEscape(postgres), HtmlEscape(clickhouse));
        return Html(200, Page("Dashboard", content, &who, "/admin/"));
    }
};

}  // namespace

void AddDashboardRoutes(Router& router, const std::shared_ptr<const Console>& console) {
    router.Add("GET", "/admin/", std::make_shared<DashboardHandler>(console));
}

}  // namespace eventlog::http::console
