#include <eventlog/core/json.hpp>
#include <eventlog/outbox/dead_letters.hpp>

namespace eventlog::outbox {
namespace {

constexpr std::string_view kColumns =
    "event_id, event_type, to_char(event_date_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
    "coalesce(environment, ''), event_context, metadata_version, error, attempts, coalesce(batch_id::text, ''), "
    "to_char(first_failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
    "to_char(last_failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

std::vector<DeadLetter> Decode(const pg::Result& r) {
    std::vector<DeadLetter> out;
    for (int i = 0; i < r.Rows(); ++i) {
        DeadLetter d;
        d.event_id = std::string(r.Get(i, 0));
        d.event_type = std::string(r.Get(i, 1));
        d.event_date_time = std::string(r.Get(i, 2));
        d.environment = std::string(r.Get(i, 3));
        d.event_context = MinifyTrustedJson(r.Get(i, 4));
        d.metadata_version = r.GetInt(i, 5);
        d.error = std::string(r.Get(i, 6));
        d.attempts = static_cast<int>(r.GetInt(i, 7));
        d.batch_id = std::string(r.Get(i, 8));
        d.first_failed_at = std::string(r.Get(i, 9));
        d.last_failed_at = std::string(r.Get(i, 10));
        out.push_back(std::move(d));
    }
    return out;
}

/// "{uuid,uuid}" for a uuid[] parameter.
std::string UuidArray(const std::vector<Uuid>& ids) {
    std::string out = "{";
    for (const auto& id : ids) {
        if (out.size() > 1) out.push_back(',');
        out += id.ToString();
    }
    out.push_back('}');
    return out;
}

}  // namespace

std::string DeadLetter::ToJson() const {
    std::string out = "{\"event_id\":";
    AppendJsonString(out, event_id);
    out += ",\"event_type\":";
    AppendJsonString(out, event_type);
    out += ",\"event_date_time\":";
    AppendJsonString(out, event_date_time);
    out += ",\"environment\":";
    AppendJsonString(out, environment);
    out += ",\"event_context\":";
    AppendJsonString(out, event_context);
    out += ",\"metadata_version\":" + std::to_string(metadata_version);
    out += ",\"error\":";
    AppendJsonString(out, error);
    out += ",\"attempts\":" + std::to_string(attempts);
    out += ",\"batch_id\":";
    AppendJsonString(out, batch_id);
    out += ",\"first_failed_at\":";
    AppendJsonString(out, first_failed_at);
    out += ",\"last_failed_at\":";
    AppendJsonString(out, last_failed_at);
    out += "}";
    return out;
}

std::vector<DeadLetter> ListDeadLetters(pg::Connection& connection, int limit) {
    return Decode(connection.Exec(std::string("SELECT ") + std::string(kColumns) +
                                      " FROM eventlog.dead_letter ORDER BY first_failed_at, event_id LIMIT $1",
                                  {std::to_string(limit)}));
}

std::optional<DeadLetter> FindDeadLetter(pg::Connection& connection, const Uuid& event_id) {
    auto rows = Decode(connection.Exec(
        std::string("SELECT ") + std::string(kColumns) + " FROM eventlog.dead_letter WHERE event_id = $1",
        {event_id.ToString()}));
    if (rows.empty()) return std::nullopt;
    return std::move(rows.front());
}

std::int64_t ReplayDeadLetters(pg::Connection& connection, const std::vector<Uuid>& ids) {
    // The one replay (migration 0020), which the console calls too: only what the outbox accepts moves, and the
    // event id registry follows the new outbox row.
    const auto r = ids.empty() ? connection.Exec("SELECT eventlog.dead_letter_replay(NULL)")
                               : connection.Exec("SELECT eventlog.dead_letter_replay($1::uuid[])", {UuidArray(ids)});
    return r.GetInt(0, 0);
}

std::int64_t DiscardDeadLetters(pg::Connection& connection, const std::vector<Uuid>& ids) {
    const auto r = ids.empty() ? connection.Exec("SELECT eventlog.dead_letter_discard(NULL)")
                               : connection.Exec("SELECT eventlog.dead_letter_discard($1::uuid[])", {UuidArray(ids)});
    return r.GetInt(0, 0);
}

}  // namespace eventlog::outbox
