#include <fmt/format.h>

#include <eventlog/core/error.hpp>
#include <eventlog/core/json.hpp>
#include <eventlog/outbox/outbox.hpp>

namespace eventlog::outbox {
namespace {

constexpr std::string_view kInsertSql =
    "INSERT INTO eventlog.outbox (event_id, event_type, event_date_time, environment, event_context, "
    "metadata_version, trace_id) VALUES ($1, $2, $3, $4, $5, $6, $7)";

std::string PgTimestamp(std::int64_t micros) { return FormatTimestamp(micros) + "+00"; }

/// Appends `value` in COPY text format (backslash escapes for \, tab, newline, CR).
void AppendCopyField(std::string& out, std::string_view value) {
    for (const char c : value) {
        switch (c) {
            case '\\':
                out += "\\\\";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            default:
                out.push_back(c);
        }
    }
}

}  // namespace

Event Normalize(Event event) {
    if (event.event_type.find_first_not_of(" \t") == std::string::npos) {
        throw InvalidInputError("event_type", "expected a non-empty event name");
    }
    event.event_type = ToSnakeCase(event.event_type);
    const auto first = event.event_context.find_first_not_of(" \t\r\n");
    if (first == std::string::npos || event.event_context[first] != '{') {
        throw InvalidInputError("event_context", "expected a JSON object");
    }
    event.event_context = MinifyJson(event.event_context, "event_context");
    if (event.event_id == Uuid{}) event.event_id = Uuid::Random();
    if (event.event_date_time_us == 0) event.event_date_time_us = NowMicros();
    if (event.metadata_version > static_cast<std::uint64_t>(INT64_MAX)) {
        throw InvalidInputError("metadata_version", "expected an integer below 2^63");
    }
    return event;
}

Uuid Emit(pg::Transaction& transaction, Event event) {
    event = Normalize(std::move(event));
    const std::string id = event.event_id.ToString();
    const std::string ts = PgTimestamp(event.event_date_time_us);
    const std::string version = std::to_string(event.metadata_version);
    transaction.Exec(kInsertSql,
                     {id, event.event_type, ts, event.environment.empty() ? pg::Param{} : pg::Param{event.environment},
                      event.event_context, version, event.trace_id});
    return event.event_id;
}

std::vector<Uuid> EmitMany(pg::Transaction& transaction, std::vector<Event> events) {
    std::vector<Uuid> ids;
    ids.reserve(events.size());
    std::string data;
    data.reserve(events.size() * 256);
    for (auto& raw : events) {
        Event e = Normalize(std::move(raw));
        ids.push_back(e.event_id);
        data += e.event_id.ToString();
        data.push_back('\t');
        AppendCopyField(data, e.event_type);
        data.push_back('\t');
        data += PgTimestamp(e.event_date_time_us);
        data.push_back('\t');
        if (e.environment.empty()) {
            data += "\\N";
        } else {
            AppendCopyField(data, e.environment);
        }
        data.push_back('\t');
        AppendCopyField(data, e.event_context);
        data.push_back('\t');
        data += std::to_string(e.metadata_version);
        data.push_back('\t');
        AppendCopyField(data, e.trace_id);
        data.push_back('\n');
    }
    if (!ids.empty()) {
        transaction.Conn().CopyIn(
            "COPY eventlog.outbox (event_id, event_type, event_date_time, environment, event_context, "
            "metadata_version, trace_id) FROM STDIN",
            data);
    }
    return ids;
}

Status ReadStatus(pg::Connection& connection) {
    const auto r = connection.Exec(
        "SELECT (SELECT count(*) FROM eventlog.outbox), "
        "coalesce(extract(epoch FROM now() - (SELECT enqueued_at FROM eventlog.outbox ORDER BY id LIMIT 1)), "
        "0)::float8, "
        "(SELECT count(*) FROM eventlog.delivery), "
        "(SELECT coalesce(sum(cardinality(events)), 0) FROM eventlog.delivery), "
        "(SELECT count(*) FROM eventlog.dead_letter)");
    Status s;
    s.pending = r.GetInt(0, 0);
    s.oldest_pending_age_seconds = std::max(0.0, std::stod(std::string(r.Get(0, 1))));
    s.in_flight_batches = r.GetInt(0, 2);
    s.in_flight_events = r.GetInt(0, 3);
    s.dead_letters = r.GetInt(0, 4);
    return s;
}

}  // namespace eventlog::outbox
