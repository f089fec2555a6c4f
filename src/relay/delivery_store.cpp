#include "relay/detail/delivery_store.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <eventlog/core/error.hpp>
#include <eventlog/core/json.hpp>
#include <eventlog/observability/log.hpp>
#include <random>

#include "relay/detail/fault_point.hpp"

namespace eventlog::relay::detail {
namespace {

/// How often a claim starts from the head of the outbox instead of the floor (see kClaimSql): every 5 s, or, when a
/// sweep is slow (it walks every dead index entry a held snapshot keeps), 20 times its duration after it started, up
/// to 60 s, so that sweeps cost at most about 5% of the relay's time on PostgreSQL.
constexpr std::chrono::seconds kSweepInterval{5};
constexpr int kSweepCostFactor = 20;
constexpr std::chrono::seconds kSweepIntervalMax{60};

/// Advisory-lock class id ("EVLG") under which each relay session holds its owner key.
constexpr int kOwnerLockClass = 0x45564C47;

// The claim moves up to $3 rows from the outbox into delivery records of at most $2 rows each (record k gets the
// batch id $5[k]), in one statement, so each row is either still pending or durably held by exactly one record: never
// both, never neither. $4 bounds the claim's bytes (the first row always fits), so no record nears PostgreSQL's 1 GB
// value limit and the relay's memory stays bounded (the kept rows are a prefix, so one window numbers and sums them).
// The picked ids are materialised first: a `DELETE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` may be
// planned as a nested loop that re-runs the locking subquery per row and claims far more than n rows (the crash suite
// lost events that way). The last column tells a claim cut by the byte bound from one that found the outbox empty. The
// delete goes by `id = ANY(array)`: joined with the window's output, whose row count the planner underestimates, it was
// planned as a hash join over a sequential scan of the whole outbox (58 ms of 174 at a 100k backlog, and growing with
// it). No two row sets are joined at all: a claimed row finds its record by `width_bucket` over the sorted first ids
// of the records (computed once), because a join of the deleted rows with the window's output was planned as a
// nested loop whenever the outbox's statistics said it was nearly empty (as after autovacuum analysed a drained
// outbox): 10,000 x 10,000 comparisons, one claim on CPU for 67 s. Every function is qualified: the session's
// search_path is pinned as well.
//
// $6 is the session's floor: every outbox row at or below it was claimed or rolled back, as far as this session can
// tell, so the scan starts above it and never walks the dead index entries that deleted rows leave behind while some
// session on the server holds an old snapshot (vacuum cannot remove them then, and a claim from the head of the
// index once slowed from 55k to 4k events/s that way). A claim returns its transaction id and its snapshot's xmin:
// once every transaction older than claim k has ended, no row at or below k's highest id can still appear, and the
// floor moves there. A periodic sweep from the head (floor 0) picks up anything the floor skipped: a row whose id
// was drawn before its transaction got its id, or rows another relay's claim locked and then rolled back. A sweep
// is only slower, never needed for correctness of what is claimed. One summary row comes back even when nothing was
// claimed (its batch id is NULL), so the floor moves while the relay polls an empty outbox.
constexpr std::string_view kClaimSql = R"sql(
WITH picked AS MATERIALIZED (
    SELECT id, pg_catalog.octet_length(event_context::text) + pg_catalog.octet_length(event_type) + 64 AS size
    FROM eventlog.outbox WHERE id > $6 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED
), bounded AS MATERIALIZED (
    SELECT id, (pg_catalog.row_number() OVER w - 1) % $2 = 0 AS starts_part FROM (
        SELECT id, pg_catalog.sum(size) OVER w - size AS before FROM picked WINDOW w AS (ORDER BY id)) s
    WHERE before < $4 WINDOW w AS (ORDER BY id)
), deleted AS (
    DELETE FROM eventlog.outbox o WHERE o.id = ANY (ARRAY(SELECT id FROM bounded))
    RETURNING o.id, o.event_id, o.event_type, o.event_date_time, o.environment, o.event_context,
              o.metadata_version, o.trace_id, o.enqueued_at, o.span_id
), claimed AS MATERIALIZED (
    SELECT d.*, ($5::uuid[])[pg_catalog.width_bucket(d.id, (SELECT pg_catalog.array_agg(id ORDER BY id)
                                                            FROM bounded WHERE starts_part))] AS batch_id
    FROM deleted d
), recorded AS (
    INSERT INTO eventlog.delivery (batch_id, owner, events)
    SELECT c.batch_id, $1, pg_catalog.array_agg(ROW(c.id, c.event_id, c.event_type, c.event_date_time, c.environment,
           c.event_context, c.metadata_version, c.trace_id, c.enqueued_at, c.span_id)::eventlog.pending_event
           ORDER BY c.id)
    FROM claimed c GROUP BY c.batch_id
), summary AS (
    SELECT (SELECT pg_catalog.count(*) FROM picked) AS picked,
           pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint AS xmin,
           (SELECT last_value FROM eventlog.outbox_id_seq) AS sequence
)
SELECT c.batch_id, c.event_id, c.event_type, (extract(epoch FROM c.event_date_time) * 1000000)::bigint,
       c.environment, c.event_context, c.metadata_version, c.trace_id, s.picked, c.id,
       CASE WHEN c.id IS NOT NULL THEN pg_catalog.pg_current_xact_id()::text::bigint END, s.xmin, s.sequence,
       (extract(epoch FROM c.enqueued_at) * 1000000)::bigint, c.span_id
FROM summary s LEFT JOIN claimed c ON true ORDER BY c.id)sql";

constexpr std::string_view kLoadOwnerSql = R"sql(
SELECT d.batch_id, e.event_id, e.event_type, (extract(epoch FROM e.event_date_time) * 1000000)::bigint,
       e.environment, e.event_context, e.metadata_version, e.trace_id, 0, e.span_id
FROM eventlog.delivery d, pg_catalog.unnest(d.events) e WHERE d.owner = $1 ORDER BY d.claimed_at, d.batch_id, e.id)sql";

// A holder of an owner's lock that is not a relay: a session of a role outside eventlog_relay (superusers are members
// of every role). Without that role in the cluster, only a superuser is trusted.
constexpr std::string_view kStrangerSql = R"sql(
SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::oid AND l.objid = $2::oid AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
  AND CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_relay')
           THEN NOT pg_catalog.pg_has_role(a.usesysid, 'eventlog_relay', 'MEMBER')
           ELSE NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE oid = a.usesysid) END)sql";

constexpr std::string_view kAdoptSql = R"sql(
WITH moved AS (
    UPDATE eventlog.delivery SET owner = $1 WHERE owner = $2 RETURNING batch_id, claimed_at, events
)
SELECT m.batch_id, e.event_id, e.event_type, (extract(epoch FROM e.event_date_time) * 1000000)::bigint,
       e.environment, e.event_context, e.metadata_version, e.trace_id, 0, e.span_id
FROM moved m, pg_catalog.unnest(m.events) e ORDER BY m.claimed_at, m.batch_id, e.id)sql";

constexpr std::string_view kDeadLetterSql = R"sql(
INSERT INTO eventlog.dead_letter (event_id, event_type, event_date_time, environment, event_context,
                                  metadata_version, trace_id, enqueued_at, error, attempts, batch_id, span_id)
SELECT e.event_id, e.event_type, e.event_date_time, e.environment, e.event_context, e.metadata_version, e.trace_id,
       e.enqueued_at, $3, $4, $1, COALESCE(e.span_id, '')
FROM eventlog.delivery d, pg_catalog.unnest(d.events) e WHERE d.batch_id = $1 AND d.owner = $5 AND e.event_id = $2
ORDER BY e.id LIMIT 1
ON CONFLICT (event_id) DO UPDATE SET error = EXCLUDED.error,
    attempts = eventlog.dead_letter.attempts + EXCLUDED.attempts, last_failed_at = pg_catalog.now(),
    batch_id = EXCLUDED.batch_id)sql";

std::string UuidArray(const std::vector<Uuid>& ids) {
    std::string text = "{";
    for (const auto& id : ids) {
        if (text.size() > 1) text += ',';
        text += id.ToString();
    }
    return text + "}";
}

}  // namespace

std::vector<Uuid> BatchIds(const std::vector<PendingRow>& rows) {
    std::vector<Uuid> ids;
    for (const auto& r : rows) {
        if (ids.empty() || !(ids.back() == r.batch_id)) {
            if (std::find(ids.begin(), ids.end(), r.batch_id) == ids.end()) ids.push_back(r.batch_id);
        }
    }
    return ids;
}

OwnerLock::~OwnerLock() {
    if (store_ != nullptr) store_->Unlock(owner_);
}

DeliveryStore::DeliveryStore(const Config& config) : config_(config) {}

void DeliveryStore::Connect() {
    // A claim started or collected on the old session is not lost: its delivery records are recovered.
    claim_in_flight_ = false;
    floor_candidates_.clear();
    prefetched_.reset();
    pg_.reset();
    pg::ConnectOptions options;
    options.conninfo = config_.postgres.ConnInfo();
    options.application_name = "eventlog-relay";
    options.statement_timeout = config_.postgres.statement_timeout;
    options.connect_timeout = config_.postgres.ConnectTimeout();
    pg_.emplace(pg::Connection::Open(options));
    // A standby can hold no delivery record and serialises no claim, and what it shows lags the primary: refused
    // with an error that says so. A configuration error: delivery pauses and is retried, so a standby that is
    // promoted is used from then on.
    if (pg_->Exec("SELECT pg_catalog.pg_is_in_recovery()").Get(0, 0) == "t") {
        const std::string server = pg_->Server();
        pg_.reset();
        throw ConfigError("postgresql: " + server +
                          " is a standby (in recovery); the relay claims and acknowledges on the primary only: point "
                          "DATABASE_URL at it (with several hosts, add target_session_attrs=read-write)");
    }
    // A fresh owner key per session: records of an earlier session of this process are recovered like those of
    // any dead relay.
    std::random_device seed;
    std::mt19937 rng(seed());
    std::uniform_int_distribution<int> dist(1, INT32_MAX);
    for (;;) {
        const int candidate = dist(rng);
        const auto r =
            pg_->Exec(fmt::format("SELECT pg_catalog.pg_try_advisory_lock({}, {})", kOwnerLockClass, candidate));
        if (r.Get(0, 0) != "t") continue;
        // A key whose earlier (dead) session left records would make them look like ours: never reuse one.
        const auto left = pg_->Exec("SELECT pg_catalog.count(*) FROM eventlog.delivery WHERE owner = $1",
                                    {std::to_string(candidate)});
        if (left.GetInt(0, 0) == 0) {
            owner_ = candidate;
            break;
        }
        pg_->Exec(fmt::format("SELECT pg_catalog.pg_advisory_unlock({}, {})", kOwnerLockClass, candidate));
    }
    // Other relays tell a live relay's lock from a stranger's by its role (kStrangerSql): a relay whose role is
    // neither a member of eventlog_relay nor (without that role) a superuser would have its live batches fenced and
    // adopted by the others every recovery pass. It refuses to run instead.
    const auto member = pg_->Exec(
        "SELECT current_user::text, CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = "
        "'eventlog_relay') THEN pg_catalog.pg_has_role(current_user, 'eventlog_relay', 'MEMBER') ELSE "
        "(SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) END");
    if (member.Get(0, 1) != "t") {
        const std::string role(member.Get(0, 0));
        throw Error(ErrorKind::kFatal,
                    "postgresql: the relay's role '" + role +
                        "' is not a member of eventlog_relay, so other relays would take this relay's live batches "
                        "for a dead relay's; run `GRANT eventlog_relay TO " +
                        role + "` (or log in as a role that has it)");
    }
    pg_->Exec("LISTEN eventlog_outbox");
    // Let the server notice a vanished relay during a long statement instead of holding its row locks.
    pg_->Exec("SET client_connection_check_interval = '1s'");
    // A full claim materialises a few MB of rows twice (the deleted rows, the claimed rows): with the default 4 MB
    // they spilled to temporary files.
    pg_->Exec("SET work_mem = '64MB'");
    const auto id = pg_->Exec("SELECT pg_catalog.replace(outbox_id::text, '-', '') FROM eventlog.relay_identity");
    if (id.Rows() != 1) throw ConfigError("postgresql: eventlog.relay_identity has no row; run `eventlog migrate`");
    outbox_id_ = std::string(id.Get(0, 0).substr(0, 16));
    limits_ = outbox::ReadLimits(*pg_);
    suspect_for_ = ReadTimeline();
    // The new session starts at the highest floor published (migration 0009), not at the head: the first claim
    // would otherwise walk every dead index entry a held snapshot keeps. Rows that came back below it (a failover
    // that lost commits, a restore) are found by the first sweep, one interval later.
    floor_ = pg_->Exec("SELECT last_value FROM eventlog.relay_floor").GetInt(0, 0);
    published_floor_ = floor_;
    next_sweep_ = std::chrono::steady_clock::now() + kSweepInterval;
}

// The server's timeline changes at every promotion and point-in-time restore: a session that finds another one than
// the relays recorded opens the presence window for every relay (migration 0012). Returns how long it stays open.
std::chrono::milliseconds DeliveryStore::ReadTimeline() {
    const auto now = pg_->Exec(
        "SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL ELSE "
        "pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8) END");
    if (now.IsNull(0, 0)) return std::chrono::milliseconds(0);  // a standby: the first claim fails and reconnects
    const std::string timeline(now.Get(0, 0));
    const auto r = pg_->Exec(
        "INSERT INTO eventlog.relay_timeline AS t (only_row, timeline) VALUES (true, $1) "
        "ON CONFLICT (only_row) DO UPDATE SET timeline = EXCLUDED.timeline, suspect_until = CASE WHEN t.timeline <> "
        "EXCLUDED.timeline THEN pg_catalog.now() + pg_catalog.make_interval(secs => $2::float8) ELSE t.suspect_until "
        "END RETURNING (t.timeline = $1)::text, (extract(epoch FROM (GREATEST(t.suspect_until, "
        "pg_catalog.clock_timestamp()) - pg_catalog.clock_timestamp())) * 1000)::bigint",
        {timeline, std::to_string(std::chrono::duration_cast<std::chrono::seconds>(kSuspectWindow).count())});
    const std::int64_t ms = r.GetInt(0, 1);
    if (ms > 0) {
        log::Warning("presence_window_open", {{"timeline", timeline},
                                              {"remaining_ms", ms},
                                              {"reason", std::string("the server's timeline changed (a failover or a "
                                                                     "restore): claims are checked for presence")}});
    }
    return std::chrono::milliseconds(ms);
}

bool DeliveryStore::Healthy() const noexcept { return pg_.has_value() && pg_->Healthy(); }

int DeliveryStore::BackendPid() const noexcept { return pg_ ? pg_->BackendPid() : 0; }

std::string DeliveryStore::Server() const { return pg_ ? pg_->Server() : std::string(); }

pg::Connection& DeliveryStore::Session() {
    if (!pg_) throw TransientError("postgresql: not connected", true);
    if (claim_in_flight_) {
        // Another statement needs the session: take the claim's result off the wire, decode it later.
        claim_in_flight_ = false;
        prefetched_.emplace(pg_->Receive());
    }
    return *pg_;
}

void DeliveryStore::CheckSession() { Session().Exec("SELECT 1"); }

void DeliveryStore::StartClaim() {
    if (ClaimInFlight()) return;
    const int limit = std::max(config_.relay.event_batch_size, config_.relay.clickhouse_batch_size);
    const int records = (limit + config_.relay.event_batch_size - 1) / config_.relay.event_batch_size;
    std::vector<Uuid> batch_ids(static_cast<std::size_t>(records));
    for (auto& id : batch_ids) id = Uuid::Random();
    std::int64_t floor = floor_;
    if (std::chrono::steady_clock::now() >= next_sweep_) {
        floor = 0;
        next_sweep_ = std::chrono::steady_clock::now() + kSweepInterval;
    }
    started_claim_swept_ = floor == 0;
    claim_started_at_ = std::chrono::steady_clock::now();
    Session().Send(kClaimSql,
                   {std::to_string(owner_), std::to_string(config_.relay.event_batch_size), std::to_string(limit),
                    std::to_string(config_.relay.claim_max_bytes), UuidArray(batch_ids), std::to_string(floor)});
    claim_in_flight_ = true;
}

std::vector<PendingRow> DeliveryStore::Claim(bool prefetch_next) {
    pg::Result result;
    if (claim_in_flight_) {
        claim_in_flight_ = false;
        result = pg_->Receive();
    } else if (prefetched_) {
        result = std::move(*prefetched_);
        prefetched_.reset();
    } else {
        StartClaim();
        claim_in_flight_ = false;
        result = pg_->Receive();
    }
    const auto limit =
        static_cast<std::int64_t>(std::max(config_.relay.event_batch_size, config_.relay.clickhouse_batch_size));
    // The summary row alone (NULL batch id) when nothing was claimed.
    const bool empty = result.Rows() == 0 || result.IsNull(0, 0);
    const auto rows = empty ? std::int64_t{0} : static_cast<std::int64_t>(result.Rows());
    // Full: the row bound was reached, or the byte bound left picked rows behind.
    const bool full = rows >= limit || (rows > 0 && result.GetInt(0, 8) > rows);
    if (result.Rows() > 0) {
        AdvanceFloor(result, rows, full);
        // The outbox's sequence restarted below the floor (a restore, TRUNCATE ... RESTART IDENTITY): every new row
        // is below it. The floor starts again from the head, here and for sessions that start later.
        const std::int64_t sequence = result.GetInt(0, 12);
        if (sequence < floor_) {
            log::Warning("claim_floor_reset", {{"floor", floor_},
                                               {"sequence", sequence},
                                               {"reason", std::string("the outbox's id sequence is below the floor")}});
            floor_ = 0;
            floor_candidates_.clear();
            published_floor_ = 0;
            pending_floor_reset_ = true;
        }
    }
    last_claim_swept_ = started_claim_swept_;
    if (last_claim_swept_) {
        // A slow sweep spaces the next one out. The time measured may include the relay's own work while the
        // claim was pipelined; that only spaces sweeps out a little more, never past kSweepIntervalMax.
        const auto took = std::chrono::steady_clock::now() - claim_started_at_;
        const auto interval =
            std::clamp<std::chrono::steady_clock::duration>(kSweepCostFactor * took, kSweepInterval, kSweepIntervalMax);
        next_sweep_ = std::max(next_sweep_, claim_started_at_ + interval);
    }
    last_claim_full_ = full;
    // The next claim starts before this one is decoded, so PostgreSQL claims while the relay decodes and inserts.
    if (prefetch_next && last_claim_full_) StartClaim();
    return Decode(result);
}

// A candidate (H, X) becomes the floor once this claim's snapshot is newer than every transaction older than X: the
// rows those transactions wrote below H are visible to this claim. But this claim takes only the lowest of them
// when it is full (its row or byte bound cut it): then it covered ids up to its highest claimed id only, and the
// floor may move that far and no further; the candidate stays for the next claim. (Before, a full claim promoted the
// floor to H, and the rows between its highest id and H, e.g. the rest of a 30,000-event transaction that
// committed after a later small one was delivered, were left to the 5 s sweeps.)
void DeliveryStore::AdvanceFloor(const pg::Result& r, std::int64_t claimed, bool full) {
    const std::int64_t xmin = r.GetInt(0, 11);
    const int last = static_cast<int>(claimed) - 1;  // rows come in id order
    const std::int64_t covered = full && claimed > 0 ? r.GetInt(last, 9) : INT64_MAX;
    while (!floor_candidates_.empty() && xmin > floor_candidates_.front().second) {
        if (floor_candidates_.front().first > covered) {
            floor_ = std::max(floor_, covered);
            break;
        }
        floor_ = std::max(floor_, floor_candidates_.front().first);
        floor_candidates_.pop_front();
    }
    if (claimed > 0) {
        floor_candidates_.emplace_back(r.GetInt(last, 9), r.GetInt(last, 10));
        // Bounded: a transaction that never ends keeps them all waiting, and the oldest are the ones that matter.
        if (floor_candidates_.size() > 1024) floor_candidates_.pop_back();
    }
}

std::int64_t DeliveryStore::Mark() {
    return Session().Exec("SELECT pg_catalog.pg_current_xact_id()::text::bigint").GetInt(0, 0);
}

std::int64_t DeliveryStore::OutboxSequence() {
    const auto r = Session().Exec("SELECT pg_catalog.pg_sequence_last_value('eventlog.outbox_id_seq')");
    return r.IsNull(0, 0) ? 0 : r.GetInt(0, 0);
}

bool DeliveryStore::OlderTransactionsEnded(std::int64_t mark) {
    return Session()
               .Exec("SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint > $1",
                     {std::to_string(mark)})
               .Get(0, 0) == "t";
}

std::vector<PendingRow> DeliveryStore::Decode(const pg::Result& r) const {
    std::vector<PendingRow> rows;
    rows.reserve(static_cast<std::size_t>(r.Rows()));
    for (int i = 0; i < r.Rows(); ++i) {
        if (r.IsNull(i, 0)) continue;  // the claim's summary row: nothing claimed
        PendingRow row;
        row.batch_id = Uuid::Parse(r.Get(i, 0)).value_or(Uuid{});
        Event& e = row.event;
        e.event_id = Uuid::Parse(r.Get(i, 1)).value_or(Uuid{});
        e.event_type = std::string(r.Get(i, 2));
        e.event_date_time_us = r.GetInt(i, 3);
        e.environment = r.IsNull(i, 4) ? config_.environment : std::string(r.Get(i, 4));
        e.event_context = MinifyTrustedJson(r.Get(i, 5));
        e.metadata_version = static_cast<std::uint64_t>(r.GetInt(i, 6));
        e.trace_id = std::string(r.Get(i, 7));
        if (r.Columns() > 14) row.enqueued_us = r.GetInt(i, 13);  // claims only (recovered rows: unknown)
        // The last column of every shape; NULL in a record claimed before migration 0011.
        e.span_id = std::string(r.Get(i, r.Columns() - 1));
        rows.push_back(std::move(row));
    }
    return rows;
}

void DeliveryStore::Acknowledge(const std::vector<Uuid>& batch_ids, const std::vector<PendingRow>& dead) {
    auto& session = Session();
    pg::Transaction tx(session);
    // Only records this session still owns: another relay that adopted one (docs/security.md) delivers or
    // dead-letters its rows itself, after its own presence check.
    const std::string owner = std::to_string(owner_);
    for (const auto& d : dead) {
        tx.Exec(kDeadLetterSql,
                {d.batch_id.ToString(), d.event.event_id.ToString(),
                 d.error.empty() ? std::string("rejected") : d.error, std::to_string(std::max(d.attempts, 1)), owner});
    }
    const auto deleted = tx.Exec("DELETE FROM eventlog.delivery WHERE batch_id = ANY($1::uuid[]) AND owner = $2",
                                 {UuidArray(batch_ids), owner})
                             .AffectedRows();
    if (deleted < static_cast<std::int64_t>(batch_ids.size())) {
        log::Warning("records_taken_over", {{"records", static_cast<std::int64_t>(batch_ids.size())},
                                            {"still_ours", deleted},
                                            {"hint", std::string("another relay adopted them; it finishes them")}});
    }
    FaultPoint("during_ack");
    tx.Commit();
    PublishFloor();
}

// At most once a second, and only forward. setval() is not transactional: the value stands at once.
void DeliveryStore::PublishFloor() {
    const auto now = std::chrono::steady_clock::now();
    if (pending_floor_reset_) {
        // Down, unconditionally: a session starting later must not begin above the restarted sequence.
        Session().Exec("SELECT pg_catalog.setval('eventlog.relay_floor', $1::bigint)", {std::to_string(floor_)});
        pending_floor_reset_ = false;
        published_floor_ = floor_;
        next_publish_ = now + std::chrono::seconds(1);
        return;
    }
    if (floor_ <= published_floor_ || now < next_publish_) return;
    Session().Exec(
        "SELECT pg_catalog.setval('eventlog.relay_floor', $1::bigint) "
        "WHERE $1::bigint > (SELECT last_value FROM eventlog.relay_floor)",
        {std::to_string(floor_)});
    published_floor_ = floor_;
    next_publish_ = now + std::chrono::seconds(1);
}

std::vector<int> DeliveryStore::OtherOwners() {
    const auto r =
        Session().Exec("SELECT DISTINCT owner FROM eventlog.delivery WHERE owner <> $1", {std::to_string(owner_)});
    std::vector<int> owners;
    owners.reserve(static_cast<std::size_t>(r.Rows()));
    for (int i = 0; i < r.Rows(); ++i) owners.push_back(static_cast<int>(r.GetInt(i, 0)));
    return owners;
}

std::optional<OwnerLock> DeliveryStore::TryLock(int owner) {
    if (owner == owner_) return std::nullopt;
    const auto r =
        Session().Exec(fmt::format("SELECT pg_catalog.pg_try_advisory_lock({}, {})", kOwnerLockClass, owner));
    if (r.Get(0, 0) != "t") return std::nullopt;
    return OwnerLock(*this, owner);
}

void DeliveryStore::Unlock(int owner) noexcept {
    if (!Healthy()) return;  // a lost session has released it
    try {
        Session().Exec(fmt::format("SELECT pg_catalog.pg_advisory_unlock({}, {})", kOwnerLockClass, owner));
    } catch (const Error& e) {
        log::Warning("owner_unlock_failed",
                     {{"owner", static_cast<std::int64_t>(owner)}, {"error", std::string(e.what())}});
    }
}

bool DeliveryStore::HeldByStranger(int owner) {
    return Session().Exec(kStrangerSql, {std::to_string(kOwnerLockClass), std::to_string(owner)}).GetInt(0, 0) > 0;
}

std::vector<PendingRow> DeliveryStore::Adopt(int owner) {
    return Decode(Session().Exec(kAdoptSql, {std::to_string(owner_), std::to_string(owner)}));
}

std::vector<PendingRow> DeliveryStore::LoadOwner(int owner) {
    return Decode(Session().Exec(kLoadOwnerSql, {std::to_string(owner)}));
}

std::int64_t DeliveryStore::PruneEventIds(std::chrono::seconds window) {
    return Session()
        .Exec(
            // Only ids of delivered events: not pending in the outbox (migration 0011), not dead-lettered, and not
            // in a delivery record. Records hold their rows in outbox order, so an id whose outbox row is at or
            // above the lowest first id of any record is kept while records are in flight (one probe per record,
            // never an unnest of their rows): conservative, and exact once they are acknowledged.
            "DELETE FROM eventlog.event_ids WHERE ctid = ANY (ARRAY(SELECT r.ctid FROM eventlog.event_ids r WHERE "
            "r.accepted_at < pg_catalog.now() - pg_catalog.make_interval(secs => $1::float8) "
            "AND NOT EXISTS (SELECT 1 FROM eventlog.outbox o WHERE o.id = r.outbox_id) "
            "AND NOT EXISTS (SELECT 1 FROM eventlog.dead_letter l WHERE l.event_id = r.event_id) "
            "AND (r.outbox_id IS NULL OR r.outbox_id < COALESCE((SELECT pg_catalog.min((d.events[1]).id) "
            "FROM eventlog.delivery d), "
            "9223372036854775807)) LIMIT 10000))",
            {std::to_string(window.count())})
        .AffectedRows();
}

std::int64_t DeliveryStore::InFlightRecords() {
    return Session().Exec("SELECT pg_catalog.count(*) FROM eventlog.delivery").GetInt(0, 0);
}

bool DeliveryStore::WaitForNotify(std::chrono::milliseconds timeout) { return Session().WaitForNotify(timeout); }

}  // namespace eventlog::relay::detail
