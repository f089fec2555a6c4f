#include "http/event_writer.hpp"

#include <fmt/format.h>
#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <eventlog/core/error.hpp>
#include <eventlog/core/uuid.hpp>
#include <eventlog/http/api_keys.hpp>
#include <eventlog/http/server.hpp>
#include <eventlog/observability/log.hpp>
#include <exception>
#include <future>
#include <optional>
#include <set>

namespace eventlog::http::detail {
namespace {

// All events of a request (or of a group of requests) in one set-based statement, eventlog.emit_batch()
// (migration 0010: emit_checked()'s checks and registry for many events at once), in one transaction. The
// per-event status comes from the database's idempotency registry (docs/delivery.md, "Idempotency"): an event_id
// accepted before within IDEMPOTENCY_WINDOW, or earlier in the same statement, is "duplicate" and stored nowhere.
constexpr std::string_view kEmitSql = R"sql(
SELECT b.ord - 1, b.id, b.accepted
FROM eventlog.emit_batch($1::text[], $2::json[], $3::uuid[], $4::timestamptz[], $5::text[], $6::bigint[], $7::text[],
                         $8::text[], $9::bigint[]) b
ORDER BY b.ord)sql";

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

/// The nine array parameters of kEmitSql, built one event at a time.
class EmitArrays {
public:
    /// Adds `e`, written with API key `key_id` (its ids are that key's: migration 0015).
    void Add(const IncomingEvent& e, std::int64_t key_id) {
        AppendArrayElement(keys_, std::to_string(key_id));
        AppendArrayElement(types_, e.event_type);
        AppendArrayElement(contexts_, e.event_context);
        // An event without an id gets a time-ordered one here: the idempotency registry's primary key then grows at
        // its right edge (a random id touches a random page of a large index per insert).
        AppendArrayElement(ids_, e.event_id ? e.event_id : std::optional<std::string>(NewId().ToString()));
        AppendArrayElement(times_, e.event_date_time);
        AppendArrayElement(environments_, e.environment);
        AppendArrayElement(versions_, e.metadata_version
                                          ? std::optional<std::string>(std::to_string(*e.metadata_version))
                                          : std::nullopt);
        AppendArrayElement(traces_, e.trace_id);
        AppendArrayElement(spans_, e.span_id);
    }

    /// Runs kEmitSql (prepared once per session) on `session` as a statement of its own, which is its own
    /// transaction: once it answered, the events are committed (one round trip and one statement for PostgreSQL to
    /// run, where BEGIN, the statement and COMMIT took three). The rows are (global index, id, accepted). A session
    /// lost before the answer leaves the outcome unknown: InDoubtError, as a lost COMMIT (pg::Transaction::Commit).
    pg::Result Run(pg::Connection& session) {
        for (auto* a : {&types_, &contexts_, &ids_, &times_, &environments_, &versions_, &traces_, &spans_, &keys_}) {
            a->push_back('}');
        }
        try {
            return session.ExecPrepared(
                "eventlog_http_emit", kEmitSql,
                {types_, contexts_, ids_, times_, environments_, versions_, traces_, spans_, keys_});
        } catch (const Error& e) {
            if (e.PoisonsConnection()) {
                throw InDoubtError(std::string("postgresql: outcome of eventlog.emit_batch unknown: ") + e.what());
            }
            throw;
        }
    }

private:
    /// Uuid::TimeOrdered()'s layout (version 7: the millisecond, then random bits), the random bits drawn for
    /// kIdsPerDraw ids at once: one RAND_bytes call per id was 3% of the server's CPU under single-event load.
    Uuid NewId() {
        if (drawn_ == kIdsPerDraw) {
            if (RAND_bytes(random_.data(), static_cast<int>(random_.size())) != 1) {
                throw Error(ErrorKind::kFatal, "RAND_bytes failed: no entropy for a UUID");
            }
            drawn_ = 0;
        }
        Uuid id;
        std::memcpy(id.bytes.data(), random_.data() + drawn_ * id.bytes.size(), id.bytes.size());
        ++drawn_;
        const auto ms = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
                .count());
        for (int i = 0; i < 6; ++i) id.bytes[i] = static_cast<std::uint8_t>(ms >> (8 * (5 - i)));  // big-endian
        id.bytes[6] = static_cast<std::uint8_t>((id.bytes[6] & 0x0F) | 0x70);                      // version 7
        id.bytes[8] = static_cast<std::uint8_t>((id.bytes[8] & 0x3F) | 0x80);                      // RFC 4122 variant
        return id;
    }

    static constexpr std::size_t kIdsPerDraw = 64;
    std::array<std::uint8_t, 16 * kIdsPerDraw> random_{};
    std::size_t drawn_{kIdsPerDraw};
    std::string types_{"{"}, contexts_{"{"}, ids_{"{"}, times_{"{"}, environments_{"{"}, versions_{"{"}, traces_{"{"},
        spans_{"{"}, keys_{"{"};
};

/// The field emit() names first in its message ("event_context: expected at most ..."), "" when none: the name is
/// ours, the rest of the server's text stays in the log.
std::string FieldNamedIn(const std::string& text) {
    for (const char* field : {"event_type", "event_context", "environment", "trace_id", "span_id", "metadata_version",
                              "event_date_time", "event_id"}) {
        if (text.find(std::string(field) + ":") != std::string::npos) return field;
    }
    return {};
}

/// The index of the first event emit() refuses, found by emitting them one by one in a transaction that is rolled
/// back (only after the set-based statement failed, so that a bad batch costs at most twice its work); nullopt
/// when every one passes alone.
std::optional<std::size_t> FirstRefused(pg::Connection& session, const std::vector<IncomingEvent>& events) {
    pg::Transaction tx(session);
    for (std::size_t i = 0; i < events.size(); ++i) {
        const auto& e = events[i];
        const std::optional<std::string> version =
            e.metadata_version ? std::optional<std::string>(std::to_string(*e.metadata_version)) : std::nullopt;
        const auto view = [](const std::optional<std::string>& v) { return v ? pg::Param(*v) : pg::Param(); };
        try {
            tx.Exec(
                "SELECT eventlog.emit($1, $2::json, $3::uuid, $4::timestamptz, $5, COALESCE($6::bigint, 1), $7, $8)",
                {e.event_type, e.event_context, view(e.event_id), view(e.event_date_time), view(e.environment),
                 view(version), view(e.trace_id), view(e.span_id)});
        } catch (const Error& error) {
            if (error.Kind() == ErrorKind::kInvalidInput) return i;
            throw;
        }
    }
    return std::nullopt;  // the destructor rolls back
}

/// The index emit_batch() names in a clash ("event_id: already used by another writer (events[N])"), if any.
std::optional<std::size_t> ClashIndex(const std::string& text) {
    constexpr std::string_view kMarker = "already used by another writer (events[";
    const auto at = text.find(kMarker);
    if (at == std::string::npos) return std::nullopt;
    std::size_t index = 0;
    const char* begin = text.data() + at + kMarker.size();
    const auto [end, ec] = std::from_chars(begin, text.data() + text.size(), index);
    if (ec != std::errc() || end == begin) return std::nullopt;
    return index;
}

bool RefusedByEmit(const Error& e) {
    return e.Kind() == ErrorKind::kInvalidInput && e.Source() == ErrorSource::kPostgres;
}

/// The bytes `events` take in a group's statement, about: every field's text, and 64 for the rest of a row.
std::size_t BytesOf(const std::vector<IncomingEvent>& events) noexcept {
    std::size_t bytes = 0;
    const auto size = [](const std::optional<std::string>& v) { return v ? v->size() : 0; };
    for (const auto& e : events) {
        bytes += 64 + e.event_type.size() + e.event_context.size() + size(e.event_id) + size(e.event_date_time) +
                 size(e.environment) + size(e.trace_id) + size(e.span_id);
    }
    return bytes;
}

/// A failure of a group's shared statement after which each member is written alone: an event the outbox refuses
/// (class 22/23), or a transient error that rolled the statement back on an intact session (a deadlock with
/// another group, a statement timeout), which need not recur for one member alone.
bool SplitsTheGroup(const Error& e) {
    return RefusedByEmit(e) ||
           (e.Kind() == ErrorKind::kTransient && !e.PoisonsConnection() && e.Source() == ErrorSource::kPostgres);
}

EventResult ResultOf(const pg::Result& rows, int row, std::size_t offset) {
    return {static_cast<std::size_t>(rows.GetInt(row, 0)) - offset, std::string(rows.Get(row, 1)),
            rows.Get(row, 2) == "t"};
}

}  // namespace

std::vector<EventResult> WriteEvents(pg::Pool::Lease& session, const std::vector<IncomingEvent>& events,
                                     std::int64_t key_id) {
    EmitArrays arrays;
    for (const auto& e : events) arrays.Add(e, key_id);
    pg::Result rows;
    try {
        rows = arrays.Run(*session);
    } catch (const InDoubtError&) {
        session.Discard();
        throw;
    } catch (const Error& e) {
        if (!RefusedByEmit(e)) throw;
        log::Warning("http_events_refused", {{"error", std::string(e.what())}});
        if (const auto clash = ClashIndex(e.what()); clash && *clash < events.size()) {
            Problem p;
            p.status = 409;
            p.error = "event_id already used by another writer (another API key, or a producer without one)";
            p.field = "event_id";
            p.index = *clash;
            throw ProblemError(p);
        }
        Problem p;
        p.status = 400;
        p.error = "refused by the database (eventlog.emit)";
        p.field = FieldNamedIn(e.what());
        p.index = events.size() == 1 ? std::optional<std::size_t>(0) : FirstRefused(*session, events);
        throw ProblemError(p);
    }
    std::vector<EventResult> results;
    results.reserve(static_cast<std::size_t>(rows.Rows()));
    for (int i = 0; i < rows.Rows(); ++i) results.push_back(ResultOf(rows, i, 0));
    return results;
}

struct GroupCommitter::Member {
    std::int64_t key_id{0};
    std::array<unsigned char, 32> presented{};  // HashTokenSecret of the token's secret
    std::vector<IncomingEvent> events;
    Done done;
    log::Fields context;  // the enqueuing thread's log context (the request's ids), for the lines written for it
    std::vector<EventResult> results;
    std::exception_ptr error;
};

struct GroupCommitter::Group {
    std::vector<Member> members;  // in arrival order, which is the order of their events in the statement
    std::size_t events{0};
    std::size_t bytes{0};  // BytesOf its members' events
    std::uint64_t serial{0};
    std::chrono::steady_clock::time_point opened;
};

GroupCommitter::GroupCommitter(pg::Pool& pool, std::string secret_key, const GroupCommitOptions& options)
    : pool_(pool), secret_key_(std::move(secret_key)), options_(options) {
    options_.max_writing_groups = std::max<std::size_t>(1, options_.max_writing_groups);
    if (options_.window.count() <= 0) return;  // grouping off: nothing is ever enqueued
    writers_.reserve(options_.max_writing_groups);
    for (std::size_t i = 0; i < options_.max_writing_groups; ++i) writers_.emplace_back([this] { Run(); });
}

GroupCommitter::~GroupCommitter() {
    {
        const std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    changed_.notify_all();
    for (auto& writer : writers_) writer.join();
}

bool GroupCommitter::Takes(const std::vector<IncomingEvent>& events) const noexcept {
    return options_.window.count() > 0 && events.size() <= options_.max_request_events &&
           BytesOf(events) <= options_.max_group_bytes;
}

void GroupCommitter::Enqueue(const ParsedToken& token, std::vector<IncomingEvent> events, Done done) {
    Member member;
    member.key_id = token.key_id;
    member.presented = HashTokenSecret(secret_key_, token.secret);
    member.events = std::move(events);
    member.done = std::move(done);
    member.context = log::CurrentContext();
    const std::size_t size = member.events.size();
    const std::size_t bytes = BytesOf(member.events);
    bool wake = false;  // writers are woken when a group opens or fills, not for every member
    {
        const std::lock_guard lock(mutex_);
        if (open_ && (open_->events + size > options_.max_group_events ||
                      open_->bytes + bytes > options_.max_group_bytes)) {  // full for this request: written as it is
            full_.push_back(std::move(open_));
            open_.reset();
        }
        if (!open_) {
            open_ = std::make_unique<Group>();
            open_->serial = ++serial_;
            open_->opened = std::chrono::steady_clock::now();
            wake = true;
        }
        open_->members.push_back(std::move(member));
        open_->events += size;
        open_->bytes += bytes;
        if (open_->events >= options_.max_group_events || open_->bytes >= options_.max_group_bytes) {
            full_.push_back(std::move(open_));
            open_.reset();
        }
        wake = wake || !full_.empty();
    }
    if (wake) changed_.notify_all();
}

std::vector<EventResult> GroupCommitter::Submit(const ParsedToken& token, std::vector<IncomingEvent> events) {
    // Shared with the writer, which may still be inside set_value() when get() returns here.
    auto answer = std::make_shared<std::promise<std::vector<EventResult>>>();
    auto future = answer->get_future();
    Enqueue(token, std::move(events), [answer](std::vector<EventResult> results, std::exception_ptr error) {
        if (error) {
            answer->set_exception(std::move(error));
        } else {
            answer->set_value(std::move(results));
        }
    });
    return future.get();
}

void GroupCommitter::Run() {
    std::unique_lock lock(mutex_);
    for (;;) {
        changed_.wait(lock, [&] { return stopping_ || open_ || !full_.empty(); });
        std::unique_ptr<Group> group;
        if (!full_.empty()) {
            group = std::move(full_.front());
            full_.pop_front();
        } else if (open_) {
            if (!stopping_) {  // a stopping committer writes what it has at once
                const std::uint64_t serial = open_->serial;
                const auto deadline = open_->opened + options_.window;
                changed_.wait_until(lock, deadline,
                                    [&] { return stopping_ || !full_.empty() || !open_ || open_->serial != serial; });
                // Taken by another writer, or filled: look again (a full group goes first).
                if (!full_.empty() || !open_ || open_->serial != serial) continue;
            }
            group = std::move(open_);
            open_.reset();
        } else {
            return;  // stopping, and every member was answered
        }
        lock.unlock();
        if (std::chrono::steady_clock::now() - group->opened > options_.max_queue_wait) {
            const auto waited = std::make_exception_ptr(pg::PoolTimeoutError(fmt::format(
                "postgresql: the write waited more than {} ms for the database", options_.max_queue_wait.count())));
            for (auto& m : group->members) m.error = waited;
        } else {
            Execute(*group);  // taken: its member list no longer changes
        }
        for (auto& m : group->members) {
            try {
                m.done(std::move(m.results), std::move(m.error));
            } catch (...) {  // Done must not throw; a member that throws cannot fail the others' answers
            }
        }
        group.reset();
        lock.lock();
    }
}

void GroupCommitter::Execute(Group& group) {
    std::vector<Member*> writers;
    try {
        auto session = pool_.Acquire();
        std::set<std::int64_t> ids;
        for (const auto& m : group.members) ids.insert(m.key_id);
        const auto stored = ActiveKeyHashes(*session, std::vector<std::int64_t>(ids.begin(), ids.end()));
        for (auto& member : group.members) {
            auto* m = &member;
            const auto it = stored.find(m->key_id);
            if (it != stored.end() && HashesMatch(m->presented, it->second)) {
                writers.push_back(m);
                continue;
            }
            Problem p;
            p.status = 401;
            p.error = "missing or invalid API key";
            p.field = "Authorization";
            m->error = std::make_exception_ptr(ProblemError(p));
        }
        if (writers.empty()) return;
        if (writers.size() > 1) {
            EmitArrays arrays;
            std::vector<std::size_t> offsets;
            std::size_t total = 0;
            for (const auto* m : writers) {
                offsets.push_back(total);
                total += m->events.size();
                for (const auto& e : m->events) arrays.Add(e, m->key_id);
            }
            try {
                const auto rows = arrays.Run(*session);
                std::size_t k = 0;
                for (int i = 0; i < rows.Rows(); ++i) {
                    const auto index = static_cast<std::size_t>(rows.GetInt(i, 0));
                    while (k + 1 < writers.size() && index >= offsets[k + 1]) ++k;
                    writers[k]->results.push_back(ResultOf(rows, i, offsets[k]));
                }
                return;
            } catch (const InDoubtError&) {
                session.Discard();
                throw;
            } catch (const Error& e) {
                if (!SplitsTheGroup(e)) throw;
                log::Info("http_group_commit_split",
                          {{"requests", static_cast<std::int64_t>(writers.size())}, {"code", e.Code()}});
            }
        }
        // One request, or a group refused by emit(): each request in its own transaction.
        for (auto* m : writers) {
            try {
                const log::ScopedContext context(m->context);  // http_events_refused names the request
                m->results = WriteEvents(session, m->events, m->key_id);
            } catch (...) {
                m->error = std::current_exception();
            }
        }
    } catch (...) {
        const auto error = std::current_exception();
        for (auto& m : group.members) {
            if (!m.error) {
                m.results.clear();
                m.error = error;
            }
        }
    }
}

}  // namespace eventlog::http::detail
