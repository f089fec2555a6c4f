// The API's handlers: one class per route (docs/http-api.md).
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <eventlog/clickhouse/client.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/core/json.hpp>
#include <eventlog/core/uuid.hpp>
#include <eventlog/http/api.hpp>
#include <eventlog/http/api_keys.hpp>
#include <eventlog/http/errors.hpp>
#include <eventlog/observability/log.hpp>
#include <mutex>
#include <vector>

#include "http/input.hpp"
#include "http/request_trace.hpp"

namespace eventlog::http {
namespace {

[[noreturn]] void Refuse(int status, std::string error, std::string field = {}) {
    Problem p;
    p.status = status;
    p.error = std::move(error);
    p.field = std::move(field);
    throw ProblemError(p);
}

void RequireMediaType(const Request& request, std::initializer_list<std::string_view> accepted) {
    const std::string type = request.MediaType();
    for (const auto a : accepted) {
        if (type == a) return;
    }
    std::string list;
    for (const auto a : accepted) list += (list.empty() ? "" : " or ") + std::string(a);
    Refuse(415, "unsupported Content-Type (expected " + list + ")", "Content-Type");
}

/// Checks out a session; a full pool is a 503 with Retry-After (the server maps PoolTimeoutError).
pg::Pool::Lease Checkout(pg::Pool& pool) { return pool.Acquire(); }

/// Bearer authentication on `session`: 401 unless the token belongs to an active key.
void Authenticate(const Request& request, pg::Connection& session, const std::string& secret_key) {
    const std::string header = request.Header("authorization");
    constexpr std::string_view kScheme = "bearer ";
    bool ok = false;
    if (header.size() > kScheme.size()) {
        std::string scheme = header.substr(0, kScheme.size());
        std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return std::tolower(c); });
        if (scheme == kScheme) {
            std::string_view token(header);
            token.remove_prefix(kScheme.size());
            while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
            while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
            ok = VerifyToken(session, secret_key, token);
        }
    }
    if (!ok) {
        Problem p;
        p.status = 401;
        p.error = "missing or invalid API key";
        p.field = "Authorization";
        throw ProblemError(p);
    }
}

class HealthzHandler : public Handler {
public:
    Response Handle(const Request&) override { return JsonResponse(200, R"({"status":"ok"})"); }
};

class ReadyzHandler : public Handler {
public:
    ReadyzHandler(pg::Pool& pool, std::function<bool()> stopping) : pool_(pool), stopping_(std::move(stopping)) {}
    Response Handle(const Request&) override {
        if (stopping_ && stopping_()) {
            Problem p;
            p.status = 503;
            p.error = "stopping";
            return ToResponse(p);
        }
        try {
            auto session = pool_.Acquire();
            session->Exec("SELECT 1");
        } catch (const Error& e) {
            log::Warning("http_not_ready", {{"error", std::string(e.what())}});
            Problem p;
            p.status = 503;
            p.error = "database unavailable";
            p.retry_after = kRetryAfterSeconds;
            return ToResponse(p);
        }
        return JsonResponse(200, R"({"status":"ready"})");
    }

private:
    pg::Pool& pool_;
    std::function<bool()> stopping_;
};

class UsersHandler : public Handler {
public:
    UsersHandler(pg::Pool& pool, std::string secret_key) : pool_(pool), secret_key_(std::move(secret_key)) {}
    Response Handle(const Request& request) override {
        auto session = Checkout(pool_);
        Authenticate(request, *session, secret_key_);
        RequireMediaType(request, {"application/json"});
        const auto user = detail::ParseUser(request.body);
        pg::Result r;
        try {
            // One statement: the user and its user_created event are written together or not at all.
            r = session->Exec(
                "SELECT id, email, first_name, last_name, "
                "pg_catalog.to_char(created_at AT TIME ZONE 'UTC', "
                "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM eventlog_demo.create_user($1, $2, $3)",
                {user.email, user.first_name, user.last_name});
        } catch (const Error& e) {
            if (e.Source() == ErrorSource::kPostgres && e.Code() == "23505") {
                Refuse(409, "User with this email already exists");
            }
            throw;
        }
        std::string body = "{\"id\":" + std::string(r.Get(0, 0)) + ",\"email\":";
        AppendJsonString(body, r.Get(0, 1));
        body += ",\"first_name\":";
        AppendJsonString(body, r.Get(0, 2));
        body += ",\"last_name\":";
        AppendJsonString(body, r.Get(0, 3));
        body += ",\"created_at\":";
        AppendJsonString(body, r.Get(0, 4));
        body += "}";
        return JsonResponse(201, std::move(body));
    }

private:
    pg::Pool& pool_;
    std::string secret_key_;
};

/// Appends `value` to a PostgreSQL array literal (text form): quoted, with '"' and '\' escaped; NULL when absent.
void AppendArrayElement(std::string& out, const std::optional<std::string>& value) {
    if (out.size() > 1) out.push_back(',');
    if (!value) {
        out += "NULL";
        return;
    }
    out.push_back('"');
    for (const char c : *value) {
        if (c == '"' || c == '\\') out.push_back('\\');
        out.push_back(c);
    }
    out.push_back('"');
}

// All events of a request in one statement, one eventlog.emit_checked() call per row (in index order), in one
// transaction. The per-event status comes from the database's idempotency registry (docs/delivery.md,
// "Idempotency"): an event_id accepted before within IDEMPOTENCY_WINDOW, or earlier in the same request, is
// "duplicate" and stored nowhere.
constexpr std::string_view kEmitSql = R"sql(
SELECT u.i - 1, r.id, CASE WHEN r.accepted THEN 'accepted' ELSE 'duplicate' END
FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::uuid[]),
                pg_catalog.unnest($4::timestamptz[]), pg_catalog.unnest($5::text[]), pg_catalog.unnest($6::bigint[]),
                pg_catalog.unnest($7::text[])) WITH ORDINALITY AS u(t, c, id, ts, env, mv, tr, i),
     LATERAL eventlog.emit_checked(u.t, u.c::json, u.id, u.ts, u.env, COALESCE(u.mv, 1), u.tr) r
ORDER BY u.i)sql";

/// The field emit() names first in its message ("event_context: expected at most ..."), "" when none: the name is
/// ours, the rest of the server's text stays in the log.
std::string FieldNamedIn(const std::string& text) {
    for (const char* field :
         {"event_type", "event_context", "environment", "trace_id", "metadata_version", "event_date_time"}) {
        if (text.find(std::string(field) + ":") != std::string::npos) return field;
    }
    return {};
}

/// The index of the first event emit() refuses, found by emitting them one by one in a transaction that is rolled
/// back (only after the set-based statement failed, so that a bad batch costs at most twice its work); nullopt
/// when every one passes alone.
std::optional<std::size_t> FirstRefused(pg::Connection& session, const std::vector<detail::IncomingEvent>& events) {
    pg::Transaction tx(session);
    for (std::size_t i = 0; i < events.size(); ++i) {
        const auto& e = events[i];
        const std::optional<std::string> version =
            e.metadata_version ? std::optional<std::string>(std::to_string(*e.metadata_version)) : std::nullopt;
        const auto view = [](const std::optional<std::string>& v) { return v ? pg::Param(*v) : pg::Param(); };
        try {
            tx.Exec("SELECT eventlog.emit($1, $2::json, $3::uuid, $4::timestamptz, $5, COALESCE($6::bigint, 1), $7)",
                    {e.event_type, e.event_context, view(e.event_id), view(e.event_date_time), view(e.environment),
                     view(version), view(e.trace_id)});
        } catch (const Error& error) {
            if (error.Kind() == ErrorKind::kInvalidInput) return i;
            throw;
        }
    }
    return std::nullopt;  // the destructor rolls back
}

class EventsHandler : public Handler {
public:
    EventsHandler(pg::Pool& pool, std::string secret_key, EventBounds bounds)
        : pool_(pool), secret_key_(std::move(secret_key)), bounds_(bounds) {}

    Response Handle(const Request& request) override {
        auto session = Checkout(pool_);
        Authenticate(request, *session, secret_key_);
        RequireMediaType(request, {"application/json", "application/x-ndjson"});
        detail::EventLimits limits;
        limits.max_events = bounds_.max_events;
        limits.max_context_bytes = bounds_.max_context_bytes;
        const auto format =
            request.MediaType() == "application/x-ndjson" ? detail::BodyFormat::kNdjson : detail::BodyFormat::kJson;
        auto events = detail::ParseEvents(request.body, format, limits);
        detail::InheritRequestTrace(events, request);  // observability: event_log.trace_id from the request span

        std::string types = "{", contexts = "{", ids = "{", times = "{", environments = "{", versions = "{",
                    traces = "{";
        for (const auto& e : events) {
            AppendArrayElement(types, e.event_type);
            AppendArrayElement(contexts, e.event_context);
            AppendArrayElement(ids, e.event_id);
            AppendArrayElement(times, e.event_date_time);
            AppendArrayElement(environments, e.environment);
            AppendArrayElement(versions, e.metadata_version
                                             ? std::optional<std::string>(std::to_string(*e.metadata_version))
                                             : std::nullopt);
            AppendArrayElement(traces, e.trace_id);
        }
        for (auto* a : {&types, &contexts, &ids, &times, &environments, &versions, &traces}) a->push_back('}');

        pg::Result rows;
        try {
            pg::Transaction tx(*session);
            rows = tx.Exec(kEmitSql, {types, contexts, ids, times, environments, versions, traces});
            tx.Commit();
        } catch (const InDoubtError&) {
            session.Discard();
            throw;
        } catch (const Error& e) {
            if (e.Kind() == ErrorKind::kInvalidInput && e.Source() == ErrorSource::kPostgres) {
                log::Warning("http_events_refused", {{"error", std::string(e.what())}});
                Problem p;
                p.status = 400;
                p.error = "refused by the database (eventlog.emit)";
                p.field = FieldNamedIn(e.what());
                p.index = events.size() == 1 ? std::optional<std::size_t>(0) : FirstRefused(*session, events);
                throw ProblemError(p);
            }
            throw;
        }
        std::string body = "[";
        for (int i = 0; i < rows.Rows(); ++i) {
            if (i) body += ",";
            body += fmt::format(R"({{"index":{},"event_id":"{}","status":)", rows.Get(i, 0), rows.Get(i, 1));
            AppendJsonString(body, rows.Get(i, 2));
            body += "}";
        }
        body += "]";
        return JsonResponse(202, std::move(body));
    }

private:
    pg::Pool& pool_;
    std::string secret_key_;
    EventBounds bounds_;
};

/// "YYYY-MM-DD HH:MM:SS[.ffffff]" (UTC, as PostgreSQL and ClickHouse print it here) as RFC 3339.
std::string Rfc3339(std::string_view text) {
    std::string out(text);
    if (out.size() > 10 && out[10] == ' ') out[10] = 'T';
    return out + "Z";
}

/// ClickHouse clients for the lookups: not thread-safe each, so checked out one per request and kept for reuse.
class ClickHousePool {
public:
    explicit ClickHousePool(clickhouse::ClientOptions options) : options_(std::move(options)) {}
    /// Runs `sql` on an idle client (a new one when none is idle) and returns the body.
    std::string Query(const std::string& sql) {
        std::unique_ptr<clickhouse::Client> client;
        {
            const std::lock_guard lock(mutex_);
            if (!idle_.empty()) {
                client = std::move(idle_.back());
                idle_.pop_back();
            }
        }
        if (!client) client = std::make_unique<clickhouse::Client>(options_);
        std::string body = client->Query(sql);  // a client that threw is dropped, not reused
        const std::lock_guard lock(mutex_);
        if (idle_.size() < kMaxIdle) idle_.push_back(std::move(client));
        return body;
    }

private:
    static constexpr std::size_t kMaxIdle = 8;
    clickhouse::ClientOptions options_;
    std::mutex mutex_;
    std::vector<std::unique_ptr<clickhouse::Client>> idle_;
};

/// GET /api/v1/events/{event_id}: pending, in_flight or dead_lettered from PostgreSQL (one snapshot, through
/// eventlog.event_status), else delivered when ClickHouse has it, else 404. Asking in this order cannot miss an
/// event that moves meanwhile: a delivery record is deleted only after ClickHouse acknowledged its rows.
class EventStatusHandler : public Handler {
public:
    EventStatusHandler(pg::Pool& pool, std::string secret_key, const ServeSettings& settings)
        : pool_(pool), secret_key_(std::move(secret_key)) {
        if (settings.clickhouse) {
            clickhouse_.emplace(*settings.clickhouse);
            table_ = clickhouse::QuoteIdentifier(settings.clickhouse->database) + "." +
                     clickhouse::QuoteIdentifier(settings.clickhouse_table);
        }
    }

    /// The answer for a row of eventlog.event_status appended to `body`.
    static std::string FromPostgres(std::string body, const pg::Result& r) {
        const std::string_view state = r.Get(0, 0);
        AppendJsonString(body, state);
        body += state == "pending"     ? ",\"enqueued_at\":"
                : state == "in_flight" ? ",\"claimed_at\":"
                                       : ",\"failed_at\":";
        AppendJsonString(body, r.Get(0, 1));
        if (!r.IsNull(0, 2)) body += ",\"attempts\":" + std::string(r.Get(0, 2));
        if (state == "dead_lettered") {
            body += ",\"error\":";
            AppendJsonString(body, r.Get(0, 3));
        }
        return body + "}";
    }

    Response Handle(const Request& request) override {
        std::string event_id;
        std::string body;
        {  // the session goes back to the pool before ClickHouse is asked
            auto session = Checkout(pool_);
            Authenticate(request, *session, secret_key_);
            const auto id = Uuid::Parse(request.params.at("event_id"));
            if (!id) Refuse(400, "expected a UUID", "event_id");
            event_id = id->ToString();
            const auto r = session->Exec(
                "SELECT state, pg_catalog.to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
                "attempts, error FROM eventlog.event_status($1::uuid)",
                {event_id});
            body = "{\"event_id\":\"" + event_id + "\",\"status\":";
            if (r.Rows() == 1) return JsonResponse(200, FromPostgres(std::move(body), r));
        }
        if (clickhouse_) {
            const std::string found = clickhouse_->Query(
                "SELECT toString(min(inserted_at), 'UTC') FROM " + table_ + " WHERE event_id = toUUID(" +
                clickhouse::QuoteString(event_id) + ") HAVING count() > 0 FORMAT TabSeparated");
            std::string_view inserted_at(found);
            while (!inserted_at.empty() && (inserted_at.back() == '\n' || inserted_at.back() == '\r')) {
                inserted_at.remove_suffix(1);
            }
            if (!inserted_at.empty()) {
                body += "\"delivered\",\"inserted_at\":";
                AppendJsonString(body, Rfc3339(inserted_at));
                body += "}";
                return JsonResponse(200, std::move(body));
            }
        }
        Problem p;
        p.status = 404;
        p.error = "event not found";
        p.field = "event_id";
        throw ProblemError(p);
    }

private:
    pg::Pool& pool_;
    std::string secret_key_;
    std::optional<ClickHousePool> clickhouse_;
    std::string table_;
};

std::int64_t ReadInt(const EnvMap& env, const char* name, std::int64_t fallback, std::int64_t min, std::int64_t max) {
    const auto it = env.find(name);
    if (it == env.end() || it->second.empty()) return fallback;
    std::int64_t value = 0;
    const auto& text = it->second;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
        throw ConfigError(fmt::format("{}: expected an integer from {} to {}, got '{}'", name, min, max, text));
    }
    return value;
}

}  // namespace

void ParseListen(const std::string& text, const char* variable, ServerOptions& options) {
    std::string host;
    std::string port;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find("]:");
        if (close == std::string::npos) throw ConfigError(fmt::format("{}: expected [IPV6]:PORT", variable));
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string::npos || colon == 0)
            throw ConfigError(fmt::format("{}: expected HOST:PORT", variable));
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    int value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value < 0 || value > 65535 || port.empty()) {
        throw ConfigError(fmt::format("{}: expected a port from 0 to 65535 after ':'", variable));
    }
    if (host == "localhost") host = "127.0.0.1";
    options.host = host;
    options.port = static_cast<std::uint16_t>(value);
}

ServeSettings LoadServeSettings(const EnvMap& env, const Config& config) {
    RequireSecretKey(config.secret_key);
    ServeSettings s;
    s.secret_key = config.secret_key;
    s.clickhouse = clickhouse::OptionsFrom(config.clickhouse);
    s.clickhouse_table = config.clickhouse.table;
    s.server.host = config.http_host;
    s.server.port = static_cast<std::uint16_t>(config.http_port);
    if (const auto it = env.find("HTTP_LISTEN"); it != env.end() && !it->second.empty()) {
        ParseListen(it->second, "HTTP_LISTEN", s.server);
    }
    s.server.allowed_hosts = config.allowed_hosts;
    s.server.worker_threads = static_cast<unsigned>(ReadInt(env, "HTTP_WORKERS", s.server.worker_threads, 1, 1024));
    s.server.max_connections = static_cast<std::size_t>(
        ReadInt(env, "HTTP_MAX_CONNECTIONS", static_cast<std::int64_t>(s.server.max_connections), 1, 1'000'000));
    s.server.max_body_bytes = static_cast<std::size_t>(
        ReadInt(env, "HTTP_MAX_BODY_BYTES", static_cast<std::int64_t>(s.server.max_body_bytes), 1024, 1LL << 30));
    s.server.header_timeout = std::chrono::milliseconds(
        ReadInt(env, "HTTP_HEADER_TIMEOUT_MS", s.server.header_timeout.count(), 100, 3'600'000));
    s.server.body_timeout =
        std::chrono::milliseconds(ReadInt(env, "HTTP_BODY_TIMEOUT_MS", s.server.body_timeout.count(), 100, 3'600'000));
    s.pool_size =
        static_cast<std::size_t>(ReadInt(env, "HTTP_PG_POOL_SIZE", static_cast<std::int64_t>(s.pool_size), 1, 10'000));
    s.acquire_timeout =
        std::chrono::milliseconds(ReadInt(env, "HTTP_PG_ACQUIRE_TIMEOUT_MS", s.acquire_timeout.count(), 1, 600'000));
    s.events.max_events = static_cast<std::size_t>(
        ReadInt(env, "HTTP_MAX_EVENTS", static_cast<std::int64_t>(s.events.max_events), 1, 10'000'000));
    s.events.max_context_bytes = static_cast<std::size_t>(
        ReadInt(env, "HTTP_MAX_CONTEXT_BYTES", static_cast<std::int64_t>(s.events.max_context_bytes), 2, 256LL << 20));
    return s;
}

std::shared_ptr<Router> MakeApiRouter(pg::Pool& pool, const ServeSettings& settings, std::function<bool()> stopping) {
    RequireSecretKey(settings.secret_key);
    auto router = std::make_shared<Router>();
    router->Add("GET", "/healthz", std::make_shared<HealthzHandler>());
    router->Add("GET", "/readyz", std::make_shared<ReadyzHandler>(pool, std::move(stopping)));
    router->Add("POST", "/api/v1/users", std::make_shared<UsersHandler>(pool, settings.secret_key));
    router->Add("POST", "/api/v1/events", std::make_shared<EventsHandler>(pool, settings.secret_key, settings.events));
    router->Add("GET", "/api/v1/events/{event_id}",
                std::make_shared<EventStatusHandler>(pool, settings.secret_key, settings));
    return router;
}

}  // namespace eventlog::http
