#include <fmt/format.h>

#include <eventlog/core/error.hpp>
#include <eventlog/core/json.hpp>
#include <eventlog/outbox/outbox.hpp>
#include <string>
#include <unordered_map>

namespace eventlog::outbox {
namespace {

// Through emit(): one set of checks and limits for every producer path, and a producer role needs nothing but
// EXECUTE on it.
constexpr std::string_view kInsertSql =
    "SELECT eventlog.emit(event_type => $2, event_context => $5::json, event_id => $1::uuid, "
    "event_date_time => $3::timestamptz, environment => $4, metadata_version => $6::bigint, trace_id => $7, "
    "span_id => $8)";

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
    // The name is stored as written; the relay converts it (ToSnakeCase), and one that converts to nothing is
    // refused here as by the outbox's constraint (migration 0013).
    if (event.event_type.find_first_not_of(" \t-.") == std::string::npos) {
        throw InvalidInputError("event_type", "expected a non-empty event name");
    }
    const auto first = event.event_context.find_first_not_of(" \t\r\n");
    if (first == std::string::npos || event.event_context[first] != '{') {
        throw InvalidInputError("event_context", "expected a JSON object");
    }
    event.event_context = MinifyJson(event.event_context, "event_context");
    if (event.event_id == Uuid{}) event.event_id = Uuid::Random();
    if (event.event_date_time_us == 0) event.event_date_time_us = NowMicros();
    if (event.event_date_time_us < kMinEventTimeMicros || event.event_date_time_us > kMaxEventTimeMicros) {
        throw InvalidInputError("event_date_time", kEventTimeRule);
    }
    if (event.metadata_version > static_cast<std::uint64_t>(INT64_MAX)) {
        throw InvalidInputError("metadata_version", "expected an integer below 2^63");
    }
    return event;
}

Uuid Emit(pg::Transaction& transaction, Event event) {
    // An id the caller supplied is registered for exact idempotency; one left zero is made by the server, which
    // registers nothing for it (it cannot be a duplicate: docs/delivery.md, "Idempotency").
    const bool supplied = event.event_id != Uuid{};
    event = Normalize(std::move(event));
    const std::string ts = PgTimestamp(event.event_date_time_us);
    const std::string version = std::to_string(event.metadata_version);
    const auto r =
        transaction.Exec(kInsertSql, {supplied ? pg::Param{event.event_id.ToString()} : pg::Param{}, event.event_type,
                                      ts, event.environment.empty() ? pg::Param{} : pg::Param{event.environment},
                                      event.event_context, version, event.trace_id, event.span_id});
    if (supplied) return event.event_id;
    const auto made = r.Rows() == 1 && !r.IsNull(0, 0) ? Uuid::Parse(r.Get(0, 0)) : std::nullopt;
    if (!made) throw Error(ErrorKind::kFatal, "postgresql: eventlog.emit() returned no event id");
    return *made;
}

Limits ReadLimits(pg::Connection& connection) {
    const auto r = connection.Exec(
        "SELECT max_event_type_bytes, max_context_bytes, max_environment_bytes, max_trace_id_bytes "
        "FROM eventlog.limits");
    Limits limits;
    if (r.Rows() != 1) throw ConfigError("postgresql: eventlog.limits has no row; run `eventlog migrate`");
    limits.max_event_type_bytes = r.GetInt(0, 0);
    limits.max_context_bytes = r.GetInt(0, 1);
    limits.max_environment_bytes = r.GetInt(0, 2);
    limits.max_trace_id_bytes = r.GetInt(0, 3);
    return limits;
}

std::optional<std::string> LimitViolation(const Event& event, const Limits& limits) {
    const auto check = [](const char* field, std::size_t size, std::int64_t max) -> std::optional<std::string> {
        if (static_cast<std::int64_t>(size) <= max) return std::nullopt;
        return fmt::format("{}: expected at most {} bytes (eventlog.limits), got {}", field, max, size);
    };
    if (auto v = check("event_type", event.event_type.size(), limits.max_event_type_bytes)) return v;
    if (auto v = check("event_context", event.event_context.size(), limits.max_context_bytes)) return v;
    if (auto v = check("environment", event.environment.size(), limits.max_environment_bytes)) return v;
    if (auto v = check("trace_id", event.trace_id.size(), limits.max_trace_id_bytes)) return v;
    return check("span_id", event.span_id.size(), limits.max_trace_id_bytes);
}

std::vector<Uuid> EmitMany(pg::Transaction& transaction, std::vector<Event> events, std::vector<bool>* accepted) {
    const Limits limits = ReadLimits(transaction.Conn());
    std::vector<Uuid> ids;
    ids.reserve(events.size());
    for (auto& raw : events) {
        raw = Normalize(std::move(raw));
        if (auto violation = LimitViolation(raw, limits)) {
            throw InvalidInputError(fmt::format("events[{}]", ids.size()), *violation);
        }
        ids.push_back(raw.event_id);
    }
    if (accepted != nullptr) accepted->assign(events.size(), false);
    if (ids.empty()) return ids;
    // The registry first (docs/delivery.md, "Idempotency"): only ids it takes now are written, each once, with the
    // outbox id the registry row points at (migration 0011), drawn after the transaction has its id.
    std::string array = "{";
    for (const auto& id : ids) {
        if (array.size() > 1) array += ',';
        array += id.ToString();
    }
    array += '}';
    transaction.Exec("SELECT pg_catalog.pg_current_xact_id()");
    const auto fresh = transaction.Exec(
        "INSERT INTO eventlog.event_ids AS r (event_id, outbox_id) "
        "SELECT x.id, pg_catalog.nextval('eventlog.outbox_id_seq') FROM pg_catalog.unnest($1::uuid[]) "
        "WITH ORDINALITY AS x(id, i) ORDER BY x.i "
        "ON CONFLICT ON CONSTRAINT event_ids_pkey DO NOTHING RETURNING r.event_id, r.outbox_id",
        {array});
    std::unordered_map<std::string, std::string> take;  // event id -> outbox id
    take.reserve(static_cast<std::size_t>(fresh.Rows()));
    for (int i = 0; i < fresh.Rows(); ++i) take.emplace(fresh.Get(i, 0), fresh.Get(i, 1));
    std::string data;
    data.reserve(take.size() * 256);
    for (std::size_t i = 0; i < events.size(); ++i) {
        const Event& e = events[i];
        const auto taken = take.find(e.event_id.ToString());
        if (taken == take.end()) continue;  // a duplicate, or a repeat within this batch
        if (accepted != nullptr) (*accepted)[i] = true;
        data += taken->second;
        data.push_back('\t');
        data += taken->first;
        take.erase(taken);
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
        data.push_back('\t');
        AppendCopyField(data, e.span_id);
        data.push_back('\n');
    }
    if (!data.empty()) {
        transaction.Conn().CopyIn(
            "COPY eventlog.outbox (id, event_id, event_type, event_date_time, environment, event_context, "
            "metadata_version, trace_id, span_id) FROM STDIN",
            data);
    }
    return ids;
}

Status ReadStatus(pg::Connection& connection) {
    // One home for the figures (migration 0020): `eventlog status` and the console's dashboard both read them here.
    const auto r = connection.Exec(
        "SELECT pending, oldest_pending_age_seconds, in_flight_batches, in_flight_events, dead_letters, "
        "retained_bytes, retention_waiting FROM eventlog.status()");
    Status s;
    s.pending = r.GetInt(0, 0);
    s.oldest_pending_age_seconds = std::max(0.0, std::stod(std::string(r.Get(0, 1))));
    s.in_flight_batches = r.GetInt(0, 2);
    s.in_flight_events = r.GetInt(0, 3);
    s.dead_letters = r.GetInt(0, 4);
    s.retained_bytes = r.GetInt(0, 5);
    s.retention_waiting = std::string(r.Get(0, 6));
    return s;
}

}  // namespace eventlog::outbox
