#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <eventlog/clickhouse/client.hpp>
#include <eventlog/clickhouse/row_binary.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/core/event.hpp>
#include <eventlog/core/json.hpp>
#include <eventlog/observability/log.hpp>
#include <eventlog/pg/connection.hpp>
#include <eventlog/relay/relay.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <unordered_set>

namespace eventlog::relay {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// Advisory-lock class id ("EVLG") under which each relay session holds its owner key.
constexpr int kOwnerLockClass = 0x45564C47;
/// How long recovery waits after taking a dead owner's lock, so that a send the owner began just
/// before losing its session has reached ClickHouse and can be killed or awaited.
constexpr milliseconds kRecoveryGrace{2000};
/// How often an idle relay looks for batches left by dead relays.
constexpr milliseconds kRecoveryInterval{5000};

// The claim moves up to $3 rows from the outbox into a delivery record in one statement, so the
// rows are either still pending or durably recorded as batch $1: never both, never neither.
// The claim moves up to $3 rows from the outbox into a delivery record in one statement, so the
// rows are either still pending or durably recorded as batch $1: never both, never neither. The
// picked ids are materialised first: a `DELETE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP
// LOCKED)` may be planned as a nested loop that re-runs the locking subquery per row and claims far
// more than n rows.
constexpr std::string_view kClaimSql = R"sql(
WITH picked AS MATERIALIZED (
    SELECT id FROM eventlog.outbox ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED
), claimed AS (
    DELETE FROM eventlog.outbox o USING picked p WHERE o.id = p.id
    RETURNING o.id, o.event_id, o.event_type, o.event_date_time, o.environment, o.event_context,
              o.metadata_version, o.trace_id, o.enqueued_at
), recorded AS (
    INSERT INTO eventlog.delivery (batch_id, owner, events)
    SELECT $1, $2, array_agg(ROW(c.*)::eventlog.pending_event ORDER BY c.id) FROM claimed c HAVING count(*) > 0
)
SELECT event_id, event_type, (extract(epoch FROM event_date_time) * 1000000)::bigint, environment,
       event_context, metadata_version, trace_id
FROM claimed ORDER BY id)sql";

constexpr std::string_view kLoadBatchSql = R"sql(
SELECT e.event_id, e.event_type, (extract(epoch FROM e.event_date_time) * 1000000)::bigint, e.environment,
       e.event_context, e.metadata_version, e.trace_id
FROM eventlog.delivery d, unnest(d.events) e WHERE d.batch_id = $1 ORDER BY e.id)sql";

/// Test-only switch: EVENTLOG_FAULT_POINT=<name> kills the process with SIGKILL the
/// EVENTLOG_FAULT_AFTER-th time (default 1st) the relay reaches that point.
void FaultPoint(const char* name) {
    static const char* point = std::getenv("EVENTLOG_FAULT_POINT");
    if (point == nullptr || std::string_view(point) != name) return;
    static int remaining = [] {
        const char* after = std::getenv("EVENTLOG_FAULT_AFTER");
        return after ? std::max(1, std::atoi(after)) : 1;
    }();
    if (--remaining == 0) {
        log::Warning("fault_point_kill", {{"point", std::string(name)}});
        ::kill(::getpid(), SIGKILL);
    }
}

struct PendingRow {
    Event event;
    int attempts{0};    ///< Content rejections of this row alone.
    std::string error;  ///< Why it is dead-lettered.
};

}  // namespace

class Relay::Impl {
public:
    explicit Impl(Config config) : config_(std::move(config)), rng_(std::random_device{}()) {}

    Stats Run(const RunOptions& options);
    void Stop() noexcept {
        stop_requested_at_.store(Clock::now().time_since_epoch().count());
        stop_.store(true);
    }
    void Abort() noexcept {
        stop_.store(true);
        abort_.store(true);
    }

private:
    // --- connections -------------------------------------------------------------------------
    void Connect();
    void PlanEncoder();
    void CheckSession();
    /// The PostgreSQL session, after collecting a prefetched claim still running on it.
    pg::Connection& Pg();
    void StartPrefetch();
    void CollectPrefetch();

    // --- the protocol -----------------------------------------------------------------------
    std::size_t ClaimAndDeliver();
    void Deliver(const Uuid& batch_id, std::vector<PendingRow> rows);
    void SendAll(const Uuid& batch_id, std::vector<PendingRow> rows, std::vector<PendingRow>& dead,
                 std::string& last_error);
    void InsertRows(const Uuid& batch_id, std::vector<PendingRow>& rows, std::vector<PendingRow>& dead);
    std::vector<PendingRow> Missing(const Uuid& batch_id, std::vector<PendingRow> rows);
    void Acknowledge(const Uuid& batch_id, const std::vector<PendingRow>& dead, const std::string& error);
    void RecoverAbandoned(bool include_own);
    std::vector<PendingRow> DecodeRows(const pg::Result& result) const;

    // --- helpers -----------------------------------------------------------------------------
    bool SleepInterruptible(milliseconds duration);
    milliseconds Backoff(int failures);

    Config config_;
    std::mt19937_64 rng_;
    std::atomic<bool> stop_{false};
    std::atomic<bool> abort_{false};
    std::atomic<Clock::rep> stop_requested_at_{0};
    std::optional<pg::Connection> pg_;
    std::optional<clickhouse::Client> ch_;
    std::optional<clickhouse::RowBinaryEncoder> encoder_;
    std::string event_time_type_;
    int owner_{0};
    std::uint64_t send_seq_{0};
    // Pipelining: the next claim runs on the server while the current batch is inserted.
    bool prefetch_pending_{false};
    Uuid prefetch_id_;
    std::optional<std::pair<Uuid, pg::Result>> prefetched_;
    Stats stats_;
};

Relay::Relay(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Relay::~Relay() = default;
Stats Relay::Run(const RunOptions& options) { return impl_->Run(options); }
void Relay::Stop() noexcept { impl_->Stop(); }
void Relay::Abort() noexcept { impl_->Abort(); }

milliseconds Relay::Impl::Backoff(int failures) {
    // Full jitter: uniform in [0, min(cap, base * 2^failures)].
    const auto base = config_.relay.backoff_base.count();
    const auto cap = config_.relay.backoff_cap.count();
    const int shift = std::min(failures, 30);
    const long long ceiling = std::min<long long>(cap, base * (1LL << shift));
    std::uniform_int_distribution<long long> dist(0, std::max<long long>(ceiling, 1));
    return milliseconds(dist(rng_));
}

bool Relay::Impl::SleepInterruptible(milliseconds duration) {
    const auto until = Clock::now() + duration;
    while (Clock::now() < until) {
        if (abort_.load()) return false;
        if (stop_.load() && Clock::now() - Clock::time_point(Clock::duration(stop_requested_at_.load())) >
                                config_.relay.shutdown_timeout) {
            return false;  // graceful stop took too long: leave the batch to recovery
        }
        std::this_thread::sleep_for(std::min<Clock::duration>(milliseconds(50), until - Clock::now()));
    }
    return !abort_.load();
}

void Relay::Impl::Connect() {
    // A claim prefetched on the old session is not lost: its delivery record is recovered.
    prefetch_pending_ = false;
    prefetched_.reset();
    pg_.reset();
    pg::ConnectOptions options;
    options.conninfo = config_.postgres.ConnInfo();
    options.application_name = "eventlog-relay";
    pg_.emplace(pg::Connection::Open(options));
    // A fresh owner key per session: batches of an earlier session of this process are recovered like
    // those of any dead relay.
    std::uniform_int_distribution<int> dist(1, INT32_MAX);
    for (;;) {
        const int candidate = dist(rng_);
        const auto r = pg_->Exec(fmt::format("SELECT pg_try_advisory_lock({}, {})", kOwnerLockClass, candidate));
        if (r.Get(0, 0) == "t") {
            owner_ = candidate;
            break;
        }
    }
    pg_->Exec("LISTEN eventlog_outbox");
    // Let the server notice a vanished relay during a long statement instead of holding its row locks.
    pg_->Exec("SET client_connection_check_interval = '1s'");
    if (!ch_) ch_.emplace(clickhouse::OptionsFrom(config_.clickhouse));
    log::Info("relay_connected", {{"postgres", config_.postgres.Redacted()},
                                  {"clickhouse", config_.clickhouse.Redacted()},
                                  {"owner", static_cast<std::int64_t>(owner_)},
                                  {"backend_pid", static_cast<std::int64_t>(pg_->BackendPid())}});
}

void Relay::Impl::PlanEncoder() {
    const auto columns = ch_->DescribeTable(config_.clickhouse.database, config_.clickhouse.table);
    auto has = [&](std::string_view name) {
        return std::any_of(columns.begin(), columns.end(), [&](const auto& c) { return c.name == name; });
    };
    if (!has("event_id")) {
        throw ConfigError(
            fmt::format("clickhouse: table {}.{} has no event_id column; the relay needs it to "
                        "deliver exactly once",
                        config_.clickhouse.database, config_.clickhouse.table));
    }
    event_time_type_.clear();
    for (const auto& c : columns) {
        if (c.name == "event_date_time") event_time_type_ = c.type;
    }
    encoder_.emplace(clickhouse::RowBinaryEncoder::ForColumns(columns));
    log::Info("relay_target", {{"table", config_.clickhouse.database + "." + config_.clickhouse.table},
                               {"columns", encoder_->ColumnList()},
                               {"server_version", ch_->Version().text},
                               {"deduplication_token", ch_->SupportsDeduplicationToken()}});
}

void Relay::Impl::CheckSession() { Pg().Exec("SELECT 1"); }

pg::Connection& Relay::Impl::Pg() {
    if (prefetch_pending_) CollectPrefetch();
    return *pg_;
}

void Relay::Impl::StartPrefetch() {
    prefetch_id_ = Uuid::Random();
    pg_->Send(kClaimSql,
              {prefetch_id_.ToString(), std::to_string(owner_), std::to_string(config_.relay.event_batch_size)});
    prefetch_pending_ = true;
}

void Relay::Impl::CollectPrefetch() {
    prefetch_pending_ = false;
    auto result = pg_->Receive();
    prefetched_.emplace(prefetch_id_, std::move(result));
}

std::vector<PendingRow> Relay::Impl::DecodeRows(const pg::Result& r) const {
    std::vector<PendingRow> rows;
    rows.reserve(static_cast<std::size_t>(r.Rows()));
    for (int i = 0; i < r.Rows(); ++i) {
        PendingRow row;
        Event& e = row.event;
        e.event_id = Uuid::Parse(r.Get(i, 0)).value_or(Uuid{});
        e.event_type = std::string(r.Get(i, 1));
        e.event_date_time_us = r.GetInt(i, 2);
        e.environment = r.IsNull(i, 3) ? config_.environment : std::string(r.Get(i, 3));
        e.event_context = MinifyTrustedJson(r.Get(i, 4));
        e.metadata_version = static_cast<std::uint64_t>(r.GetInt(i, 5));
        e.trace_id = std::string(r.Get(i, 6));
        rows.push_back(std::move(row));
    }
    return rows;
}

std::size_t Relay::Impl::ClaimAndDeliver() {
    Uuid batch_id;
    pg::Result result;
    if (prefetch_pending_) CollectPrefetch();
    if (prefetched_) {
        batch_id = prefetched_->first;
        result = std::move(prefetched_->second);
        prefetched_.reset();
    } else {
        batch_id = Uuid::Random();
        result = Pg().Exec(
            kClaimSql, {batch_id.ToString(), std::to_string(owner_), std::to_string(config_.relay.event_batch_size)});
    }
    if (result.Rows() == 0) return 0;
    FaultPoint("after_claim");
    auto rows = DecodeRows(result);
    const std::size_t n = rows.size();
    // A full batch means more work is likely waiting: claim the next one now, so that PostgreSQL
    // works on it while ClickHouse takes this one.
    if (static_cast<int>(n) == config_.relay.event_batch_size && !stop_.load()) StartPrefetch();
    const auto dead_before = stats_.dead_lettered;
    Deliver(batch_id, std::move(rows));
    stats_.delivered += static_cast<std::int64_t>(n) - (stats_.dead_lettered - dead_before);
    return n;
}

void Relay::Impl::Deliver(const Uuid& batch_id, std::vector<PendingRow> rows) {
    std::vector<PendingRow> dead;
    std::string last_error;
    SendAll(batch_id, std::move(rows), dead, last_error);
    FaultPoint("after_insert");
    Acknowledge(batch_id, dead, last_error);
}

std::vector<PendingRow> Relay::Impl::Missing(const Uuid& batch_id, std::vector<PendingRow> rows) {
    if (rows.empty()) return rows;
    const std::string db = clickhouse::QuoteIdentifier(config_.clickhouse.database);
    const std::string table = clickhouse::QuoteIdentifier(config_.clickhouse.table);
    // An earlier attempt may still be running on the server (the client gave up, the server did not):
    // stop it and wait, so that what we read next is final.
    ch_->Execute(
        fmt::format("KILL QUERY WHERE query_id LIKE {} SYNC", clickhouse::QuoteString(batch_id.ToString() + "%")));
    std::string in_list;
    std::int64_t lo = INT64_MAX;
    std::int64_t hi = INT64_MIN;
    for (const auto& r : rows) {
        if (!in_list.empty()) in_list.push_back(',');
        in_list += clickhouse::QuoteString(r.event.event_id.ToString());
        lo = std::min(lo, r.event.event_date_time_us);
        hi = std::max(hi, r.event.event_date_time_us);
    }
    std::string time_filter;
    if (event_time_type_.rfind("DateTime", 0) == 0 && lo >= 0 && hi / 1'000'000 + 1 < UINT32_MAX) {
        time_filter = fmt::format(" AND event_date_time >= toDateTime({}) AND event_date_time <= toDateTime({})",
                                  lo / 1'000'000, hi / 1'000'000 + 1);
    }
    const std::string body = ch_->Query(fmt::format(
        "SELECT DISTINCT toString(event_id) FROM {}.{} WHERE toString(event_id) IN ({}){} FORMAT TabSeparated", db,
        table, in_list, time_filter));
    std::unordered_set<std::string> present;
    std::istringstream lines(body);
    for (std::string line; std::getline(lines, line);) present.insert(line);
    std::vector<PendingRow> missing;
    for (auto& r : rows) {
        if (!present.count(r.event.event_id.ToString())) missing.push_back(std::move(r));
    }
    return missing;
}

void Relay::Impl::InsertRows(const Uuid& batch_id, std::vector<PendingRow>& rows, std::vector<PendingRow>& dead) {
    std::string body;
    body.reserve(rows.size() * 384);
    std::vector<PendingRow> sendable;
    sendable.reserve(rows.size());
    for (auto& r : rows) {
        try {
            encoder_->Append(r.event, batch_id, body);
            sendable.push_back(std::move(r));
        } catch (const RejectedError& e) {
            // Unrepresentable in the target column: dead-letter with the reason, never send it wrong.
            log::Warning("event_unencodable",
                         {{"event_id", r.event.event_id.ToString()}, {"error", std::string(e.what())}});
            r.attempts = std::max(r.attempts, 1);
            r.error = e.what();
            dead.push_back(std::move(r));
        }
    }
    rows = std::move(sendable);
    if (rows.empty()) return;
    clickhouse::InsertOptions options;
    options.query_id = fmt::format("{}-{}", batch_id.ToString(), ++send_seq_);
    if (ch_->SupportsDeduplicationToken()) {
        options.deduplication_token =
            fmt::format("{}-{}-{}", batch_id.ToString(), rows.front().event.event_id.ToString(), rows.size());
    }
    ch_->Insert(config_.clickhouse.table, encoder_->ColumnList(), body, options);
}

void Relay::Impl::SendAll(const Uuid& batch_id, std::vector<PendingRow> rows, std::vector<PendingRow>& dead,
                          std::string& last_error) {
    int failures = 0;
    bool may_have_landed = false;  // an earlier attempt of these rows may be (partly) in ClickHouse
    bool settle = false;           // that attempt may still be queued on the server (timeout, frozen server)
    while (!rows.empty()) {
        try {
            if (!encoder_) PlanEncoder();
            if (may_have_landed) {
                CheckSession();  // we still own the batch (our advisory lock is alive)
                if (settle) {
                    // Once the server answers again, give an attempt it accepted before it stalled time to
                    // start, so that KILL QUERY ... SYNC in Missing() stops or awaits it.
                    ch_->Ping();
                    if (!SleepInterruptible(kRecoveryGrace)) throw TransientError("relay stopping", false);
                    settle = false;
                }
                rows = Missing(batch_id, std::move(rows));
                if (rows.empty()) return;
            }
            const std::size_t chunk = static_cast<std::size_t>(config_.relay.clickhouse_batch_size);
            if (rows.size() > chunk) {
                std::vector<PendingRow> rest(std::make_move_iterator(rows.begin() + static_cast<long>(chunk)),
                                             std::make_move_iterator(rows.end()));
                rows.resize(chunk);
                SendAll(batch_id, std::move(rows), dead, last_error);
                rows = std::move(rest);
                continue;
            }
            may_have_landed = true;
            InsertRows(batch_id, rows, dead);
            return;
        } catch (const Error& e) {
            ++stats_.retries;
            last_error = e.what();
            if (abort_.load()) throw;
            if (e.Kind() == ErrorKind::kInDoubt) settle = true;
            if (e.Kind() == ErrorKind::kRejected) {
                if (rows.size() > 1) {
                    // Isolate the offending rows: each half is confirmed or bisected further.
                    rows = Missing(batch_id, std::move(rows));
                    const auto half = rows.size() / 2;
                    std::vector<PendingRow> right(std::make_move_iterator(rows.begin() + static_cast<long>(half)),
                                                  std::make_move_iterator(rows.end()));
                    rows.resize(half);
                    log::Info("batch_bisect", {{"batch_id", batch_id.ToString()},
                                               {"left", static_cast<std::int64_t>(rows.size())},
                                               {"right", static_cast<std::int64_t>(right.size())}});
                    SendAll(batch_id, std::move(rows), dead, last_error);
                    SendAll(batch_id, std::move(right), dead, last_error);
                    return;
                }
                if (++rows.front().attempts >= config_.relay.max_attempts) {
                    log::Error("event_dead_lettered", {{"event_id", rows.front().event.event_id.ToString()},
                                                       {"attempts", static_cast<std::int64_t>(rows.front().attempts)},
                                                       {"error", last_error}});
                    rows.front().error = last_error;
                    dead.push_back(std::move(rows.front()));
                    return;
                }
            } else if (e.Kind() == ErrorKind::kConfiguration) {
                if (stop_.load()) throw;  // stopping while paused: the batch stays in its delivery record
                encoder_.reset();         // the table may be fixed or changed by the time we retry
                log::Error("delivery_paused",
                           {{"batch_id", batch_id.ToString()},
                            {"reason", std::string(e.what())},
                            {"hint", std::string("fix the configuration or the target table; "
                                                 "no event is dropped, delivery resumes by itself")}});
            } else if (e.Kind() == ErrorKind::kFatal || (e.PoisonsConnection() && !pg_->Healthy())) {
                throw;  // fatal, or lost our PostgreSQL session: the batch now belongs to recovery
            } else {
                log::Warning("delivery_retry", {{"batch_id", batch_id.ToString()},
                                                {"kind", std::string(ToString(e.Kind()))},
                                                {"error", last_error},
                                                {"failures", static_cast<std::int64_t>(failures + 1)}});
            }
            if (!SleepInterruptible(Backoff(failures++))) throw;
        }
    }
}

void Relay::Impl::Acknowledge(const Uuid& batch_id, const std::vector<PendingRow>& dead, const std::string& error) {
    const std::string id = batch_id.ToString();
    if (dead.empty()) {
        Pg().Exec("DELETE FROM eventlog.delivery WHERE batch_id = $1", {id});
        FaultPoint("during_ack");
    } else {
        pg::Transaction tx(Pg());
        for (const auto& d : dead) {
            const std::string event_id = d.event.event_id.ToString();
            const std::string attempts = std::to_string(d.attempts);
            tx.Exec(
                "INSERT INTO eventlog.dead_letter (event_id, event_type, event_date_time, environment, event_context, "
                "metadata_version, trace_id, enqueued_at, error, attempts, batch_id) "
                "SELECT e.event_id, e.event_type, e.event_date_time, e.environment, e.event_context, "
                "e.metadata_version, e.trace_id, e.enqueued_at, $3, $4, $1 "
                "FROM eventlog.delivery d, unnest(d.events) e WHERE d.batch_id = $1 AND e.event_id = $2 "
                "ORDER BY e.id LIMIT 1 ON CONFLICT (event_id) DO UPDATE SET error = EXCLUDED.error, attempts = "
                "eventlog.dead_letter.attempts + EXCLUDED.attempts, last_failed_at = now(), batch_id = "
                "EXCLUDED.batch_id",
                {id, event_id, d.error.empty() ? (error.empty() ? std::string("rejected") : error) : d.error,
                 attempts});
        }
        tx.Exec("DELETE FROM eventlog.delivery WHERE batch_id = $1", {id});
        FaultPoint("during_ack");
        tx.Commit();
        stats_.dead_lettered += static_cast<std::int64_t>(dead.size());
    }
    ++stats_.batches;
}

void Relay::Impl::RecoverAbandoned(bool include_own) {
    if (include_own) {
        // Our own delivery records are finished below, the prefetched one among them: forget it here
        // so that it is not delivered a second time without reconciliation.
        if (prefetch_pending_) CollectPrefetch();
        prefetched_.reset();
    }
    const auto candidates = Pg().Exec("SELECT DISTINCT owner FROM eventlog.delivery");
    std::vector<int> locked;
    for (int i = 0; i < candidates.Rows(); ++i) {
        const int owner = static_cast<int>(candidates.GetInt(i, 0));
        if (owner == owner_) {
            if (include_own) locked.push_back(owner);
            continue;
        }
        const auto r = Pg().Exec(fmt::format("SELECT pg_try_advisory_lock({}, {})", kOwnerLockClass, owner));
        if (r.Get(0, 0) == "t") locked.push_back(owner);
    }
    if (locked.empty()) return;
    ch_->Ping();  // the grace period starts once ClickHouse answers again
    SleepInterruptible(kRecoveryGrace);
    for (const int owner : locked) {
        const auto batches = Pg().Exec("SELECT batch_id FROM eventlog.delivery WHERE owner = $1 ORDER BY claimed_at",
                                       {std::to_string(owner)});
        for (int i = 0; i < batches.Rows(); ++i) {
            const std::string id(batches.Get(i, 0));
            const Uuid batch_id = Uuid::Parse(id).value_or(Uuid{});
            auto rows = DecodeRows(Pg().Exec(kLoadBatchSql, {id}));
            log::Warning("batch_recovering", {{"batch_id", id},
                                              {"dead_owner", static_cast<std::int64_t>(owner)},
                                              {"events", static_cast<std::int64_t>(rows.size())}});
            if (!encoder_) PlanEncoder();
            rows = Missing(batch_id, std::move(rows));
            const auto to_send = static_cast<std::int64_t>(rows.size());
            std::vector<PendingRow> dead;
            std::string error;
            SendAll(batch_id, std::move(rows), dead, error);
            Acknowledge(batch_id, dead, error);
            ++stats_.recovered_batches;
            stats_.delivered += to_send - static_cast<std::int64_t>(dead.size());
            log::Info("batch_recovered", {{"batch_id", id}, {"resent", to_send}});
        }
        if (owner != owner_) Pg().Exec(fmt::format("SELECT pg_advisory_unlock({}, {})", kOwnerLockClass, owner));
    }
}

Stats Relay::Impl::Run(const RunOptions& options) {
    log::Info("relay_starting",
              {{"batch_size", static_cast<std::int64_t>(config_.relay.event_batch_size)}, {"drain", options.drain}});
    int failures = 0;
    bool connected = false;
    bool first_recovery = true;
    auto last_recovery = Clock::now() - kRecoveryInterval;
    while (!stop_.load()) {
        try {
            if (!connected) {
                Connect();
                connected = true;
            }
            if (!encoder_) PlanEncoder();
            if (first_recovery || Clock::now() - last_recovery >= kRecoveryInterval) {
                RecoverAbandoned(first_recovery);
                first_recovery = false;
                last_recovery = Clock::now();
            }
            const std::size_t n = ClaimAndDeliver();
            failures = 0;
            if (n > 0) {
                log::Debug("batch_delivered", {{"events", static_cast<std::int64_t>(n)}});
                continue;
            }
            if (options.drain) {
                const auto left = Pg().Exec("SELECT count(*) FROM eventlog.delivery");
                if (left.GetInt(0, 0) == 0) break;
                RecoverAbandoned(false);
                last_recovery = Clock::now();
                if (Pg().Exec("SELECT count(*) FROM eventlog.delivery").GetInt(0, 0) > 0) {
                    SleepInterruptible(milliseconds(200));  // batches of live relays: wait for them
                }
                continue;
            }
            // Idle: sleep until NOTIFY, the poll interval, a stop request or the next recovery pass.
            const auto deadline = Clock::now() + config_.relay.processing_interval;
            while (!stop_.load() && Clock::now() < deadline) {
                const auto slice = std::min<Clock::duration>(milliseconds(250), deadline - Clock::now());
                if (Pg().WaitForNotify(std::chrono::duration_cast<milliseconds>(slice))) break;
                if (Clock::now() - last_recovery >= kRecoveryInterval) break;
            }
        } catch (const Error& e) {
            if (e.Kind() == ErrorKind::kFatal) {
                log::Error("relay_fatal", {{"error", std::string(e.what())}});
                throw;
            }
            if (abort_.load()) break;
            if (prefetch_pending_) {
                try {
                    CollectPrefetch();
                } catch (const Error&) {
                    prefetch_pending_ = false;  // its batch, if committed, is recovered like any other
                    connected = false;
                }
            }
            first_recovery = true;  // a batch of ours may be left in flight: finish it before claiming more
            if (e.PoisonsConnection() && pg_ && !pg_->Healthy()) {
                connected = false;  // reconnect with a new owner key; our batch is recovered like any other
            }
            if (e.Kind() == ErrorKind::kConfiguration) {
                encoder_.reset();
                log::Error("delivery_paused",
                           {{"reason", std::string(e.what())},
                            {"hint", std::string("no event is dropped; delivery resumes once fixed")}});
            } else {
                log::Warning("relay_retry", {{"kind", std::string(ToString(e.Kind()))},
                                             {"error", std::string(e.what())},
                                             {"failures", static_cast<std::int64_t>(failures + 1)}});
            }
            ++stats_.retries;
            SleepInterruptible(Backoff(failures++));
        }
    }
    // A claim prefetched before the stop request is delivered too (unless aborting): it is ours.
    if (!abort_.load() && connected && (prefetch_pending_ || prefetched_)) {
        try {
            ClaimAndDeliver();
        } catch (const Error& e) {
            log::Warning("relay_prefetched_batch_left", {{"error", std::string(e.what())}});
        }
    }
    log::Info("relay_stopped", {{"delivered", stats_.delivered},
                                {"batches", stats_.batches},
                                {"dead_lettered", stats_.dead_lettered},
                                {"recovered_batches", stats_.recovered_batches},
                                {"retries", stats_.retries}});
    return stats_;
}

}  // namespace eventlog::relay
