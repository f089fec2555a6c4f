// The API's handlers: one class per route (docs/http-api.md).
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <eventlog/clickhouse/client.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/core/event.hpp>
#include <eventlog/core/json.hpp>
#include <eventlog/core/uuid.hpp>
#include <eventlog/http/api.hpp>
#include <eventlog/http/api_keys.hpp>
#include <eventlog/http/console.hpp>
#include <eventlog/http/errors.hpp>
#include <eventlog/observability/log.hpp>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "http/event_log_reader.hpp"
#include "http/event_writer.hpp"
#include "http/input.hpp"
#include "http/request_trace.hpp"

namespace eventlog::http {
using detail::EventLogReader;
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

/// The token of an `Authorization: Bearer TOKEN` header (scheme case-insensitive, spaces trimmed); "" when none.
std::string BearerToken(const Request& request) {
    const std::string header = request.Header("authorization");
    constexpr std::string_view kScheme = "bearer ";
    if (header.size() <= kScheme.size()) return {};
    std::string scheme = header.substr(0, kScheme.size());
    std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return std::tolower(c); });
    if (scheme != kScheme) return {};
    std::string_view token(header);
    token.remove_prefix(kScheme.size());
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
    return std::string(token);
}

Problem UnauthorizedProblem() {
    Problem p;
    p.status = 401;
    p.error = "missing or invalid API key";
    p.field = "Authorization";
    return p;
}

[[noreturn]] void Unauthorized() { throw ProblemError(UnauthorizedProblem()); }

/// How long a key's stored hash (or its absence) is trusted for admission: a revoked key is refused from the
/// headers at most this long after the revocation (the handlers check the key with the database again anyway).
constexpr std::chrono::milliseconds kKeyCacheTtl{2'000};

/// A route that needs an API key: the key is checked from the headers, before the body is read (docs/security.md,
/// "No work before authentication"), through a cache of key hashes shared by the routes; the wrapped handler
/// answers admitted requests as before.
class KeyedHandler : public Handler {
public:
    KeyedHandler(std::shared_ptr<KeyCache> keys, pg::Pool& pool, std::string_view scope, std::shared_ptr<Handler> inner)
        : keys_(std::move(keys)), pool_(pool), scope_(scope), inner_(std::move(inner)) {}

    Response Handle(const Request& request) override { return inner_->Handle(request); }
    bool HandleAsync(const Request& request, const Completion& done) override {
        return inner_->HandleAsync(request, done);
    }
    Admission Admit(const Request& head, bool may_block) override {
        const auto token = ParseToken(BearerToken(head));
        if (!token) return {.decided = true, .refusal = UnauthorizedProblem()};
        std::vector<std::string> scopes;
        auto verdict = keys_->Check(*token, &scopes);
        if (verdict == KeyCache::Verdict::kUnknown) {
            if (!may_block) return {.decided = false, .refusal = std::nullopt};
            auto session = Checkout(pool_);
            keys_->Refresh(*session, token->key_id);
            verdict = keys_->Check(*token, &scopes);
        }
        if (verdict != KeyCache::Verdict::kValid) return {.decided = true, .refusal = UnauthorizedProblem()};
        if (std::find(scopes.begin(), scopes.end(), scope_) == scopes.end()) {
            Problem p;
            p.status = 403;
            p.error = "the API key lacks the scope " + scope_;
            p.field = "Authorization";
            return {.decided = true, .refusal = p};
        }
        return {};
    }

private:
    std::shared_ptr<KeyCache> keys_;
    pg::Pool& pool_;
    std::string scope_;
    std::shared_ptr<Handler> inner_;
};

/// Bearer authentication on `session`: 401 unless the token belongs to an active key.
void Authenticate(const Request& request, pg::Connection& session, const std::string& secret_key) {
    if (!VerifyToken(session, secret_key, BearerToken(request))) Unauthorized();
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
        if (!DatabaseAnswers()) {
            Problem p;
            p.status = 503;
            p.error = "database unavailable";
            p.retry_after = kRetryAfterSeconds;
            return ToResponse(p);
        }
        return JsonResponse(200, R"({"status":"ready"})");
    }

private:
    /// Whether PostgreSQL answered a `SELECT 1` within the last second: anyone may ask /readyz, and a flood of it
    /// costs the database at most one query a second (issue 20). Concurrent askers wait for the one check.
    bool DatabaseAnswers() {
        const std::lock_guard lock(mutex_);
        const auto now = std::chrono::steady_clock::now();
        if (checked_ && now - *checked_ < std::chrono::seconds(1)) return ready_;
        try {
            auto session = pool_.Acquire();
            session->Exec("SELECT 1");
            ready_ = true;
        } catch (const Error& e) {
            log::Warning("http_not_ready", {{"error", std::string(e.what())}});
            ready_ = false;
        }
        checked_ = std::chrono::steady_clock::now();
        return ready_;
    }

    pg::Pool& pool_;
    std::function<bool()> stopping_;
    std::mutex mutex_;
    std::optional<std::chrono::steady_clock::time_point> checked_;
    bool ready_{false};
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
                "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM eventlog_demo.create_user($1, $2, $3, $4, $5)",
                {user.email, user.first_name, user.last_name,
                 request.trace_id.empty() ? pg::Param{} : pg::Param{request.trace_id},
                 request.span_id.empty() ? pg::Param{} : pg::Param{request.span_id}});
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

/// A place among the requests waiting for visibility, held while one waits (at most `max` at once: each holds a
/// worker thread). Taken before anything is written, so that a refusal (503) never follows a commit.
class WaitSlot {
public:
    WaitSlot(std::atomic<std::size_t>& count, std::size_t max) : count_(count) {
        if (count_.fetch_add(1) >= max) {
            count_.fetch_sub(1);
            Problem p;
            p.status = 503;
            p.error = "too many requests waiting for visibility";
            p.field = "wait";
            p.retry_after = kRetryAfterSeconds;
            throw ProblemError(p);
        }
    }
    ~WaitSlot() { count_.fetch_sub(1); }
    WaitSlot(const WaitSlot&) = delete;
    WaitSlot& operator=(const WaitSlot&) = delete;

private:
    std::atomic<std::size_t>& count_;
};

/// POST /api/v1/events: the events in one transaction (alone, or in a group commit for small requests), 202 with one
/// result per event; with `wait=visible`, after that until ClickHouse holds them all (200) or the timeout passes
/// (202, "visible": false).
class EventsHandler : public Handler {
public:
    EventsHandler(pg::Pool& pool, const ServeSettings& settings, std::shared_ptr<EventLogReader> reader,
                  std::function<bool()> stopping)
        : pool_(pool),
          secret_key_(settings.secret_key),
          bounds_(settings.events),
          reader_(std::move(reader)),
          stopping_(std::move(stopping)),
          max_waiting_(std::max<std::size_t>(1, settings.server.worker_threads / 2)),
          group_(pool, settings.secret_key, GroupOptions(settings)) {}

    Response Handle(const Request& request) override {
        const auto checked = Check(request);
        auto events = Parse(request);
        std::optional<WaitSlot> slot;
        if (checked.wait.visible) slot.emplace(waiting_, max_waiting_);
        // The times the accepted events can carry: those sent, and for the rest the database's clock during the
        // write (a second of margin each way). wait=visible looks for them only there.
        std::int64_t from_us = NowMicros() - 1'000'000;
        std::int64_t to_us = from_us;
        for (const auto& e : events) {
            if (!e.event_date_time) continue;
            if (const auto us = detail::ParseRfc3339(*e.event_date_time)) {
                from_us = std::min(from_us, *us);
                to_us = std::max(to_us, *us);
            }
        }
        std::vector<detail::EventResult> results;
        if (group_.Takes(events)) {
            results = group_.Submit(checked.token, std::move(events));
        } else {
            auto session = Checkout(pool_);
            Authenticate(request, *session, secret_key_);
            results = detail::WriteEvents(session, events, checked.token.key_id);
        }  // the session is back in the pool before any waiting

        std::string list = ResultsJson(results);
        if (!checked.wait.visible) return JsonResponse(202, std::move(list));
        to_us = std::max(to_us, NowMicros() + 1'000'000);
        const bool visible =
            WaitVisible(results, checked.wait.timeout, from_us / 1'000'000, to_us / 1'000'000, checked.token.key_id);
        return JsonResponse(visible ? 200 : 202,
                            std::string("{\"visible\":") + (visible ? "true" : "false") + ",\"events\":" + list + "}");
    }

    /// A request the group commit takes, without wait=visible, is queued there from the network thread and answered
    /// from the group's writer thread: no handler thread waits for the commit.
    bool HandleAsync(const Request& request, const Completion& done) override {
        const auto checked = Check(request);
        if (checked.wait.visible) return false;  // waits for ClickHouse: a worker thread's job
        auto events = Parse(request);
        if (!group_.Takes(events)) return false;
        group_.Enqueue(checked.token, std::move(events),
                       [done](const std::vector<detail::EventResult>& results, std::exception_ptr error) {
                           if (error) return done(Response{}, std::move(error));
                           Response response;
                           try {
                               response = JsonResponse(202, ResultsJson(results));
                           } catch (...) {
                               return done(Response{}, std::current_exception());
                           }
                           done(std::move(response), nullptr);
                       });
        return true;
    }

private:
    struct Checked {
        ParsedToken token;
        detail::WaitRequest wait;
    };

    /// The checks before the body is parsed: a well-formed token (its key is checked with the write), the media type
    /// and the query.
    Checked Check(const Request& request) const {
        const auto token = ParseToken(BearerToken(request));
        if (!token) Unauthorized();  // malformed: refused before anything else; a key that exists is checked below
        RequireMediaType(request, {"application/json", "application/x-ndjson"});
        const auto wait = detail::ParseEventsQuery(request.query);
        if (wait.visible && !reader_) Refuse(400, "wait=visible needs ClickHouse, which is not configured", "wait");
        return {*token, wait};
    }

    std::vector<detail::IncomingEvent> Parse(const Request& request) const {
        detail::EventLimits limits;
        limits.max_events = bounds_.max_events;
        limits.max_context_bytes = bounds_.max_context_bytes;
        const auto format =
            request.MediaType() == "application/x-ndjson" ? detail::BodyFormat::kNdjson : detail::BodyFormat::kJson;
        auto events = detail::ParseEvents(request.body, format, limits);
        detail::InheritRequestTrace(events, request);  // observability: event_log.trace_id from the request span
        return events;
    }

    /// The per-event answer, in request order: [{"index","event_id","status"}, ...].
    static std::string ResultsJson(const std::vector<detail::EventResult>& results) {
        std::string list;
        list.reserve(2 + results.size() * 80);
        list += '[';
        for (const auto& r : results) {
            if (list.size() > 1) list += ',';
            list += R"({"index":)";
            list += std::to_string(r.index);
            list += R"(,"event_id":")";
            list += r.event_id;
            list += r.accepted ? R"(","status":"accepted"})" : R"(","status":"duplicate"})";
        }
        list += ']';
        return list;
    }

    static detail::GroupCommitOptions GroupOptions(const ServeSettings& settings) {
        detail::GroupCommitOptions options;
        options.window = settings.group_commit_window;
        options.max_writing_groups = settings.group_commit_groups;
        options.max_group_bytes = settings.group_commit_bytes;
        return options;
    }

    /// Polls until every event of `results` is delivered or `timeout` passes; a final check runs at the deadline.
    /// An accepted event is looked for in event_log within [from_s, to_s], its possible times (a bounded query).
    /// A duplicate's first copy may carry any earlier time: PostgreSQL says whether it was delivered (registered,
    /// neither pending, in flight nor dead-lettered). A failed query counts as "not yet" (the events are committed
    /// whatever ClickHouse says). Gives up early when the server stops.
    bool WaitVisible(const std::vector<detail::EventResult>& results, std::chrono::milliseconds timeout,
                     std::int64_t from_s, std::int64_t to_s, std::int64_t key_id) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        std::set<std::string> missing;
        std::set<std::string> duplicates;
        for (const auto& r : results) (r.accepted ? missing : duplicates).insert(r.event_id);
        auto pause = std::chrono::milliseconds(10);
        for (;;) {
            try {
                if (!missing.empty()) {
                    for (const auto& id :
                         reader_->Present(std::vector<std::string>(missing.begin(), missing.end()), from_s, to_s)) {
                        missing.erase(id);
                    }
                }
                if (!duplicates.empty()) {
                    for (const auto& id : DeliveredInPostgres(duplicates, key_id)) duplicates.erase(id);
                }
            } catch (const Error& e) {
                log::Warning("http_wait_visible_query_failed", {{"error", std::string(e.what())}});
            }
            if (missing.empty() && duplicates.empty()) return true;
            const auto now = std::chrono::steady_clock::now();
            if (now >= deadline || (stopping_ && stopping_())) return false;
            std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(pause, deadline - now));
            pause = std::min(pause * 2, std::chrono::milliseconds(200));
        }
    }

    /// Those of `ids` (written under `key_id`) that PostgreSQL knows were delivered: registered, and neither pending,
    /// in flight nor dead-lettered.
    std::vector<std::string> DeliveredInPostgres(const std::set<std::string>& ids, std::int64_t key_id) {
        std::string array = "{";
        for (const auto& id : ids) array += (array.size() > 1 ? "," : "") + id;
        array += "}";
        auto session = Checkout(pool_);
        const auto r = session->Exec(
            "SELECT u::text FROM pg_catalog.unnest($1::uuid[]) u, eventlog.event_status(u, $2::bigint) s "
            "WHERE s.state = 'registered'",
            {array, std::to_string(key_id)});
        std::vector<std::string> delivered;
        delivered.reserve(static_cast<std::size_t>(r.Rows()));
        for (int i = 0; i < r.Rows(); ++i) delivered.emplace_back(r.Get(i, 0));
        return delivered;
    }

    pg::Pool& pool_;
    std::string secret_key_;
    EventBounds bounds_;
    std::shared_ptr<EventLogReader> reader_;
    std::function<bool()> stopping_;
    std::size_t max_waiting_;
    std::atomic<std::size_t> waiting_{0};
    detail::GroupCommitter group_;
};
/// "YYYY-MM-DD HH:MM:SS[.ffffff]" (UTC, as PostgreSQL and ClickHouse print it here) as RFC 3339.
std::string Rfc3339(std::string_view text) {
    std::string out(text);
    if (out.size() > 10 && out[10] == ' ') out[10] = 'T';
    return out + "Z";
}

/// GET /api/v1/events/{event_id}: pending, in_flight or dead_lettered from PostgreSQL (one snapshot, through
/// eventlog.event_status), else delivered when ClickHouse has it, else 404. Asking in this order cannot miss an
/// event that moves meanwhile: a delivery record is deleted only after ClickHouse acknowledged its rows.
class EventStatusHandler : public Handler {
public:
    EventStatusHandler(pg::Pool& pool, std::string secret_key, std::shared_ptr<EventLogReader> reader)
        : pool_(pool), secret_key_(std::move(secret_key)), reader_(std::move(reader)) {}

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
            const auto token = ParseToken(BearerToken(request));
            if (!token) Unauthorized();
            // Only the key that wrote the event sees it (migration 0015): another key's event, or one written
            // without a key, is not found.
            const auto r = session->Exec(
                "SELECT state, pg_catalog.to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
                "attempts, error FROM eventlog.event_status($1::uuid, $2::bigint)",
                {event_id, std::to_string(token->key_id)});
            if (r.Rows() != 1) NotFound();
            body = "{\"event_id\":\"" + event_id + "\",\"status\":";
            if (r.Get(0, 0) != "registered") return JsonResponse(200, FromPostgres(std::move(body), r));
        }
        // Registered under this key and no longer in PostgreSQL: delivered, whatever the bounded lookup below finds
        // in time (HTTP_LOOKUP_MAX_ROWS, 5 s); it only adds when.
        std::optional<std::string> inserted_at;
        if (reader_) {
            try {
                inserted_at = reader_->InsertedAt(event_id);
            } catch (const Error& e) {
                log::Warning("http_status_lookup_failed", {{"error", std::string(e.what())}, {"code", e.Code()}});
            }
        }
        body += "\"delivered\"";
        if (inserted_at) {
            body += ",\"inserted_at\":";
            AppendJsonString(body, Rfc3339(*inserted_at));
        }
        body += "}";
        return JsonResponse(200, std::move(body));
    }

private:
    [[noreturn]] static void NotFound() {
        Problem p;
        p.status = 404;
        p.error = "event not found";
        p.field = "event_id";
        throw ProblemError(p);
    }

    pg::Pool& pool_;
    std::string secret_key_;
    std::shared_ptr<EventLogReader> reader_;
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
    RequireStrongSecretKey(config.secret_key);
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
    s.server.max_connections_per_client =
        static_cast<std::size_t>(ReadInt(env, "HTTP_MAX_CONNECTIONS_PER_CLIENT",
                                         static_cast<std::int64_t>(s.server.max_connections_per_client), 0, 1'000'000));
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
    s.group_commit_window =
        std::chrono::microseconds(ReadInt(env, "HTTP_GROUP_COMMIT_US", s.group_commit_window.count(), 0, 1'000'000));
    s.group_commit_groups = static_cast<std::size_t>(
        ReadInt(env, "HTTP_GROUP_COMMIT_GROUPS", static_cast<std::int64_t>(s.group_commit_groups), 1, 1'000));
    s.group_commit_bytes = static_cast<std::size_t>(
        ReadInt(env, "HTTP_GROUP_COMMIT_BYTES", static_cast<std::int64_t>(s.group_commit_bytes), 1024, 1LL << 30));
    s.lookup_max_rows = static_cast<std::uint64_t>(
        ReadInt(env, "HTTP_LOOKUP_MAX_ROWS", static_cast<std::int64_t>(s.lookup_max_rows), 1, 1LL << 40));
    s.events.max_context_bytes = static_cast<std::size_t>(
        ReadInt(env, "HTTP_MAX_CONTEXT_BYTES", static_cast<std::int64_t>(s.events.max_context_bytes), 2, 256LL << 20));
    s.console_idle_timeout = std::chrono::seconds(
        ReadInt(env, "CONSOLE_SESSION_IDLE_SECONDS", s.console_idle_timeout.count(), 60, std::int64_t{7} * 86'400));
    if (const auto it = env.find("HTTP_TRUSTED_PROXY"); it != env.end()) {
        std::string_view list = it->second;
        while (!list.empty()) {
            const auto comma = list.find(',');
            std::string_view item = list.substr(0, comma);
            while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
            while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
            if (!item.empty()) {
                if (item.find_first_not_of("0123456789abcdefABCDEF:.") != std::string_view::npos) {
                    throw ConfigError("HTTP_TRUSTED_PROXY: expected comma-separated IP addresses (the proxies' own)");
                }
                s.trusted_proxies.emplace_back(item);
            }
            if (comma == std::string_view::npos) break;
            list.remove_prefix(comma + 1);
        }
    }
    return s;
}

std::shared_ptr<Router> MakeApiRouter(pg::Pool& pool, const ServeSettings& settings, std::function<bool()> stopping) {
    RequireSecretKey(settings.secret_key);
    auto router = std::make_shared<Router>();
    router->Add("GET", "/healthz", std::make_shared<HealthzHandler>());
    std::shared_ptr<EventLogReader> reader;
    if (settings.clickhouse)
        reader =
            std::make_shared<EventLogReader>(*settings.clickhouse, settings.clickhouse_table, settings.lookup_max_rows);
    router->Add("GET", "/readyz", std::make_shared<ReadyzHandler>(pool, stopping));
    auto keys = std::make_shared<KeyCache>(settings.secret_key, kKeyCacheTtl);
    const auto keyed = [&](std::string_view scope, std::shared_ptr<Handler> inner) {
        return std::make_shared<KeyedHandler>(keys, pool, scope, std::move(inner));
    };
    router->Add("POST", "/api/v1/users",
                keyed(kScopeUsersWrite, std::make_shared<UsersHandler>(pool, settings.secret_key)));
    router->Add("POST", "/api/v1/events",
                keyed(kScopeEventsWrite, std::make_shared<EventsHandler>(pool, settings, reader, std::move(stopping))));
    router->Add("GET", "/api/v1/events/{event_id}",
                keyed(kScopeEventsRead, std::make_shared<EventStatusHandler>(pool, settings.secret_key, reader)));
    AddConsoleRoutes(*router, pool,
                     {.secret_key = settings.secret_key,
                      .idle_timeout = settings.console_idle_timeout,
                      .trusted_proxies = settings.trusted_proxies,
                      .clickhouse = settings.clickhouse,
                      .clickhouse_table = settings.clickhouse_table,
                      .lookup_max_rows = settings.lookup_max_rows});
    return router;
}

}  // namespace eventlog::http
