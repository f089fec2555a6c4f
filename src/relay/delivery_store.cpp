#include "relay/detail/delivery_store.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <eventlog/core/error.hpp>
#include <eventlog/core/json.hpp>
#include <eventlog/observability/log.hpp>
#include <random>

namespace eventlog::relay::detail {
namespace {

/// Advisory-lock class id ("EVLG") under which each relay session holds its owner key.
constexpr int kOwnerLockClass = 0x45564C47;

// Every shape of rows the store decodes: 0 batch id (NULL in a read of chunks: the chunk's is assigned by key),
// 1 event_id, 2 event_type, 3 event_date_time (unix µs), 4 environment, 5 event_context, 6 metadata_version,
// 7 trace_id, 8 enqueued_at (unix µs, 0 when unknown), 9 txid (0 in a record of the version before), 10 outbox id,
// 11 span_id.
//
// The rows of chunks: eventlog.range_rows_in() over the range (lo, hi] from the first chunk's first key to the last
// chunk's last key, in the partitions those keys can be in (migration 0021: planned with the parameters' values, the
// read opens and locks only those, so retention can truncate the others meanwhile). Its two parts come in key order one
// after the other (the keys of the first are below those of the second), so no sort is needed. $7 bounds the rows read
// at one more than the chunks hold: without a bound the planner, which cannot estimate the key interval, expected the
// whole range and read a backlog of 1M rows by a sequential scan and a sort for every claim (300 ms a claim of 10,000,
// against 13 ms by the index). Times as float8 microseconds: exact (below 2^53) and rounded to the nearest by the cast,
// and 15% cheaper for the server than extract()'s numeric.
constexpr std::string_view kReadSql = R"sql(
SELECT NULL, o.event_id, o.event_type, (pg_catalog.date_part('epoch', o.event_date_time) * 1000000)::bigint,
       o.environment, o.event_context, o.metadata_version, o.trace_id,
       (pg_catalog.date_part('epoch', o.enqueued_at) * 1000000)::bigint, o.txid, o.id, o.span_id
FROM eventlog.range_rows_in($1::txid_snapshot, $2::txid_snapshot, $3::bigint, $4::bigint, $5::bigint, $6::bigint,
                            $7::bigint, eventlog.outbox_slots($3::bigint, $5::bigint)) o)sql";

constexpr std::string_view kClaimSql = R"sql(
SELECT batch_id, lo, hi, first_txid, first_id, last_txid, last_id, events, picked
FROM eventlog.claim_chunks($1::integer, $2::integer, $3::integer, $4::bigint, $5::uuid[]))sql";

// The chunks in flight of an owner, moved to this session's key, with their ranges, in claim order: all of them ($3
// NULL, one server), or those of target $3 on a cluster (a chunk without a target counts as any node's, '*').
constexpr std::string_view kAdoptChunksSql = R"sql(
WITH moved AS (
    UPDATE eventlog.outbox_chunk c SET owner = $1
    WHERE c.owner = $2 AND NOT EXISTS (SELECT 1 FROM eventlog.outbox_ack a WHERE a.batch_id = c.batch_id)
      AND ($3::text IS NULL OR coalesce(c.target, '*') = $3::text)
    RETURNING c.batch_id, c.range_id, c.first_txid, c.first_id, c.last_txid, c.last_id, c.events
)
SELECT m.batch_id, r.lo::text, r.hi::text, m.first_txid, m.first_id, m.last_txid, m.last_id, m.events
FROM moved m JOIN eventlog.outbox_range r ON r.id = m.range_id ORDER BY m.range_id, m.first_txid, m.first_id)sql";

// Records of the version before (eventlog.delivery, a copy of the rows), left in flight across an upgrade.
// A holder of an owner's lock that is not a relay: a session of a role outside eventlog_relay (superusers are members
// of every role). Without that role in the cluster, only a superuser is trusted.
constexpr std::string_view kStrangerSql = R"sql(
SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::oid AND l.objid = $2::oid AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
  AND CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_relay')
           THEN NOT pg_catalog.pg_has_role(a.usesysid, 'eventlog_relay', 'MEMBER')
           ELSE NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE oid = a.usesysid) END)sql";

constexpr std::string_view kAdoptRecordsSql = R"sql(
WITH moved AS (
    UPDATE eventlog.delivery SET owner = $1 WHERE owner = $2 RETURNING batch_id, claimed_at, events
)
SELECT m.batch_id, e.event_id, e.event_type, (extract(epoch FROM e.event_date_time) * 1000000)::bigint,
       e.environment, e.event_context, e.metadata_version, e.trace_id,
       coalesce((extract(epoch FROM e.enqueued_at) * 1000000)::bigint, 0), 0, e.id, e.span_id
FROM moved m, pg_catalog.unnest(m.events) e ORDER BY m.claimed_at, m.batch_id, e.id)sql";

// A dead letter, copied from the outbox row (by its key) of a chunk this session owns, or, for a record of the version
// before, from the record's copy. $1 batch id, $2 event id, $3 error, $4 attempts, $5 owner, $6 txid, $7 outbox id.
constexpr std::string_view kDeadLetterSql = R"sql(
INSERT INTO eventlog.dead_letter (event_id, event_type, event_date_time, environment, event_context,
                                  metadata_version, trace_id, enqueued_at, error, attempts, batch_id, span_id)
SELECT e.event_id, e.event_type, e.event_date_time, e.environment, e.event_context, e.metadata_version, e.trace_id,
       e.enqueued_at, $3, $4, $1, COALESCE(e.span_id, '')
FROM ((SELECT o.event_id, o.event_type, o.event_date_time, o.environment, o.event_context, o.metadata_version,
              o.trace_id, o.enqueued_at, o.span_id
       FROM eventlog.outbox o
       WHERE $6::bigint <> 0 AND o.txid = $6::bigint AND o.id = $7::bigint AND o.event_id = $2
         AND EXISTS (SELECT 1 FROM eventlog.outbox_chunk c WHERE c.batch_id = $1 AND c.owner = $5))
      UNION ALL
      (SELECT x.event_id, x.event_type, x.event_date_time, x.environment, x.event_context, x.metadata_version,
              x.trace_id, x.enqueued_at, x.span_id
       FROM eventlog.delivery d, pg_catalog.unnest(d.events) x
       WHERE $6::bigint = 0 AND d.batch_id = $1 AND d.owner = $5 AND x.event_id = $2)
      LIMIT 1) e
ON CONFLICT (event_id) DO UPDATE SET error = EXCLUDED.error,
    attempts = eventlog.dead_letter.attempts + EXCLUDED.attempts, last_failed_at = pg_catalog.now(),
    batch_id = EXCLUDED.batch_id)sql";

/// Row `i` of kClaimSql's or kAdoptChunksSql's result: batch id, lo, hi, first key, last key, row count.
Chunk ChunkAt(const pg::Result& r, int i) {
    Chunk c;
    c.batch_id = Uuid::Parse(r.Get(i, 0)).value_or(Uuid{});
    c.lo = std::string(r.Get(i, 1));
    c.hi = std::string(r.Get(i, 2));
    c.first_txid = r.GetInt(i, 3);
    c.first_id = r.GetInt(i, 4);
    c.last_txid = r.GetInt(i, 5);
    c.last_id = r.GetInt(i, 6);
    c.events = r.GetInt(i, 7);
    return c;
}

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

DeliveryStore::DeliveryStore(const Config& config, const Probe& probe) : config_(config), probe_(probe) {}

void DeliveryStore::Connect() {
    // A claim started or collected on the old session is not lost: its delivery records are recovered.
    if (reading_.valid()) {
        try {
            (void)reading_.get();  // its session is about to go; its chunks are recovered like any others
        } catch (const std::exception&) {
        }
    }
    prefetched_.reset();
    claimed_.clear();
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
        if (!HasRecords(candidate)) {
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
    // A claim materialises its keys and a recovery the rows of records of the version before: with the default
    // 4 MB they spilled to temporary files.
    pg_->Exec("SET work_mem = '64MB'");
    // Reads of a range go by the outbox's (txid, id) index in key order and stop at their bound. Fresh partitions'
    // statistics say they are nearly empty, and the planner then chose bitmap scans of the whole range and a sort
    // (measured: 33 ms of a 46 ms claim of 10,000 rows).
    pg_->Exec("SET enable_bitmapscan = off");
    // A read pruned to one partition (migration 0021) was planned as a sequential scan of the whole partition and a
    // sort, because the estimate for the key interval covers the partition's whole txid range: 2.2 s for a chunk of
    // 10,000 rows of a 1M-row partition (the index scan took 30 ms). The relay's statements all go by an index.
    pg_->Exec("SET enable_seqscan = off");
    // JIT compiled the read's expressions whenever the plan's estimated cost passed jit_above_cost: about 100 ms a
    // read for nothing (the relay's statements are short and many).
    pg_->Exec("SET jit = off");
    // The two parts of a range's rows come in key order only from a plain Append (a parallel one interleaves them).
    pg_->Exec("SET max_parallel_workers_per_gather = 0");
    const auto id = pg_->Exec("SELECT pg_catalog.replace(outbox_id::text, '-', '') FROM eventlog.relay_identity");
    if (id.Rows() != 1) throw ConfigError("postgresql: eventlog.relay_identity has no row; run `eventlog migrate`");
    outbox_id_ = std::string(id.Get(0, 0).substr(0, 16));
    limits_ = outbox::ReadLimits(*pg_);
    suspect_for_ = ReadTimeline();
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

bool DeliveryStore::Healthy() const noexcept {
    if (reading_.valid()) reading_.wait();  // the reading thread uses the session until it is done
    return pg_.has_value() && pg_->Healthy();
}

int DeliveryStore::BackendPid() const noexcept { return pg_ ? pg_->BackendPid() : 0; }

std::string DeliveryStore::Server() const { return pg_ ? pg_->Server() : std::string(); }

pg::Connection& DeliveryStore::Session() {
    if (!pg_) throw TransientError("postgresql: not connected", true);
    if (reading_.valid()) prefetched_.emplace(reading_.get());  // another statement needs the session
    return *pg_;
}

void DeliveryStore::CheckSession() { Session().Exec("SELECT 1"); }

void DeliveryStore::StartClaim() {
    if (ClaimInFlight()) return;
    const int limit = std::max(config_.relay.event_batch_size, config_.relay.clickhouse_batch_size);
    const int records = (limit + config_.relay.event_batch_size - 1) / config_.relay.event_batch_size;
    std::vector<Uuid> batch_ids(static_cast<std::size_t>(records));
    for (auto& id : batch_ids) id = Uuid::Random();
    // The claim itself is short (keys only, under the claim lock) and committed before any row is read: from then
    // on its chunks are the records, whatever happens to this session. Its transaction is explicit so that the test
    // seam has a step inside the cut, the claim lock held and nothing committed (two round trips more a claim).
    // On a cluster the claim's node is chosen first and written into its records in the claim's transaction, before
    // any row is sent (migration 0022).
    const std::optional<std::string> target = choose_target_ ? std::optional(choose_target_()) : std::nullopt;
    pg::Result r;
    {
        pg::Transaction tx(Session());
        const std::string ids = UuidArray(batch_ids);
        r = tx.Exec(kClaimSql, {std::to_string(owner_), std::to_string(config_.relay.event_batch_size),
                                std::to_string(limit), std::to_string(config_.relay.claim_max_bytes), ids});
        if (target && r.Rows() > 0) {
            tx.Exec("UPDATE eventlog.outbox_chunk SET target = $1 WHERE batch_id = ANY ($2::uuid[])", {*target, ids});
        }
        if (r.Rows() > 0) probe_.At("in_cut");
        tx.Commit();
    }
    claimed_target_ = target.value_or(std::string());
    claimed_.clear();
    std::int64_t events = 0;
    for (int i = 0; i < r.Rows(); ++i) {
        Chunk c = ChunkAt(r, i);
        events += c.events;
        claimed_.push_back(std::move(c));
    }
    // Full: the row bound was reached, or the byte bound left rows behind.
    claimed_full_ = r.Rows() > 0 && (events >= limit || r.GetInt(0, 8) > events);
    if (claimed_.empty()) return;
    SendRead(claimed_);
    reading_ = std::async(std::launch::async, [this, chunks = claimed_] { return Rows(pg_->Receive(), chunks); });
}

void DeliveryStore::SendRead(const std::vector<Chunk>& chunks) {
    std::int64_t events = 0;
    for (const auto& c : chunks) events += c.events;
    Session().Send(kReadSql, {chunks.front().lo, chunks.front().hi, std::to_string(chunks.front().first_txid),
                              std::to_string(chunks.front().first_id), std::to_string(chunks.back().last_txid),
                              std::to_string(chunks.back().last_id), std::to_string(events + 1)});
}

std::vector<PendingRow> DeliveryStore::Claim(bool prefetch_next) {
    if (!ClaimInFlight()) StartClaim();
    if (claimed_.empty()) {
        last_claim_full_ = false;
        return {};
    }
    std::vector<PendingRow> rows;
    if (reading_.valid()) {
        rows = reading_.get();
    } else {
        rows = std::move(*prefetched_);
        prefetched_.reset();
    }
    claimed_.clear();
    last_claim_full_ = claimed_full_;
    last_target_ = claimed_target_;
    // The next claim starts now, so PostgreSQL reads while the relay inserts this one.
    if (prefetch_next && last_claim_full_) StartClaim();
    return rows;
}

// Each row belongs to the chunk whose key interval holds its key; the rows come in key order, and so do the chunks.
std::vector<PendingRow> DeliveryStore::Rows(const pg::Result& result, const std::vector<Chunk>& chunks) const {
    auto rows = Decode(result);
    std::size_t chunk = 0;
    std::int64_t in_chunk = 0;
    bool matches = !chunks.empty();
    for (auto& row : rows) {
        const auto key = std::pair(row.txid, row.outbox_id);
        while (matches && chunk < chunks.size() && key > std::pair(chunks[chunk].last_txid, chunks[chunk].last_id)) {
            matches = in_chunk == chunks[chunk].events;
            ++chunk;
            in_chunk = 0;
        }
        if (!matches || chunk >= chunks.size() || key < std::pair(chunks[chunk].first_txid, chunks[chunk].first_id) ||
            in_chunk >= chunks[chunk].events) {
            matches = false;
            break;
        }
        row.batch_id = chunks[chunk].batch_id;
        ++in_chunk;
    }
    matches = matches && chunk + 1 == chunks.size() && in_chunk == chunks.back().events;
    std::int64_t expected = 0;
    for (const auto& c : chunks) expected += c.events;
    if (!matches) {
        // Rows of a record are gone or were added: something outside the relays deleted or truncated outbox rows
        // (only acknowledged rows are truncated), or wrote rows with a transaction id not their own. Nothing is
        // sent or acknowledged; delivery pauses with the records kept, and an operator must look.
        throw ConfigError(fmt::format(
            "postgresql: delivery record {} should hold {} outbox rows from ({}, {}) to ({}, {}) in range ({}, {}], "
            "and {} were read: rows of the outbox were deleted, truncated or written by hand (docs/delivery.md, "
            "\"Ranges\")",
            chunks.front().batch_id.ToString(), expected, chunks.front().first_txid, chunks.front().first_id,
            chunks.back().last_txid, chunks.back().last_id, chunks.front().lo, chunks.front().hi, rows.size()));
    }
    return rows;
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
        PendingRow row;
        if (!r.IsNull(i, 0)) row.batch_id = Uuid::Parse(r.Get(i, 0)).value_or(Uuid{});
        Event& e = row.event;
        e.event_id = Uuid::Parse(r.Get(i, 1)).value_or(Uuid{});
        e.event_type = std::string(r.Get(i, 2));
        e.event_date_time_us = r.GetInt(i, 3);
        e.environment = r.IsNull(i, 4) ? config_.environment : std::string(r.Get(i, 4));
        e.event_context = MinifyTrustedJson(r.Get(i, 5));
        e.metadata_version = static_cast<std::uint64_t>(r.GetInt(i, 6));
        e.trace_id = std::string(r.Get(i, 7));
        row.enqueued_us = r.GetInt(i, 8);
        row.txid = r.GetInt(i, 9);
        row.outbox_id = r.GetInt(i, 10);
        e.span_id = std::string(r.Get(i, 11));  // NULL in a record claimed before migration 0011
        rows.push_back(std::move(row));
    }
    return rows;
}

void DeliveryStore::Acknowledge(const std::vector<Uuid>& batch_ids, const std::vector<PendingRow>& dead) {
    auto& session = Session();
    pg::Transaction tx(session);
    // Only records this session still owns: another relay that adopted one (docs/security.md) delivers or
    // dead-letters its rows itself, after its own presence check. Only a dead owner's records are adopted, and a
    // dead session commits nothing more, so an acknowledgement never races an adoption.
    const std::string owner = std::to_string(owner_);
    for (const auto& d : dead) {
        tx.Exec(
            kDeadLetterSql,
            {d.batch_id.ToString(), d.event.event_id.ToString(), d.error.empty() ? std::string("rejected") : d.error,
             std::to_string(std::max(d.attempts, 1)), owner, std::to_string(d.txid), std::to_string(d.outbox_id)});
    }
    const std::string ids = UuidArray(batch_ids);
    const auto acked =
        tx.Exec(
              "INSERT INTO eventlog.outbox_ack (batch_id) SELECT c.batch_id FROM eventlog.outbox_chunk c "
              "WHERE c.batch_id = ANY ($1::uuid[]) AND c.owner = $2 ON CONFLICT DO NOTHING",
              {ids, owner})
            .AffectedRows();
    const auto deleted =
        tx.Exec("DELETE FROM eventlog.delivery WHERE batch_id = ANY($1::uuid[]) AND owner = $2", {ids, owner})
            .AffectedRows();
    if (acked + deleted < static_cast<std::int64_t>(batch_ids.size())) {
        log::Warning("records_taken_over", {{"records", static_cast<std::int64_t>(batch_ids.size())},
                                            {"still_ours", acked + deleted},
                                            {"hint", std::string("another relay adopted them; it finishes them")}});
    }
    probe_.At("during_ack");
    tx.Commit();
}

std::vector<int> DeliveryStore::OtherOwners() {
    // eventlog.in_flight: chunks not acknowledged, and records of the storage before 0018.
    const auto r =
        Session().Exec("SELECT DISTINCT owner FROM eventlog.in_flight WHERE owner <> $1", {std::to_string(owner_)});
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

std::vector<std::string> DeliveryStore::Targets(int owner) {
    const auto r = Session().Exec(
        "SELECT DISTINCT coalesce(c.target, '*') FROM eventlog.outbox_chunk c WHERE c.owner = $1 AND NOT EXISTS "
        "(SELECT 1 FROM eventlog.outbox_ack a WHERE a.batch_id = c.batch_id) UNION SELECT '*' FROM eventlog.delivery d "
        "WHERE d.owner = $1 ORDER BY 1",
        {std::to_string(owner)});
    std::vector<std::string> targets;
    for (int i = 0; i < r.Rows(); ++i) targets.emplace_back(r.Get(i, 0));
    return targets;
}

std::vector<PendingRow> DeliveryStore::Adopt(int owner, const std::optional<std::string>& target) {
    const std::string me = std::to_string(owner_);
    const std::string them = std::to_string(owner);
    std::vector<PendingRow> rows;
    // Records of the version before have no target: any node's.
    if (!target || *target == "*") rows = Decode(Session().Exec(kAdoptRecordsSql, {me, them}));
    const pg::Param only = target ? pg::Param(*target) : pg::Param();
    const auto r = Session().Exec(kAdoptChunksSql, {me, them, only});
    // Consecutive chunks of one range are read together.
    std::vector<Chunk> run;
    auto flush = [&] {
        if (run.empty()) return;
        SendRead(run);
        auto read = Rows(pg_->Receive(), run);
        rows.insert(rows.end(), std::make_move_iterator(read.begin()), std::make_move_iterator(read.end()));
        run.clear();
    };
    for (int i = 0; i < r.Rows(); ++i) {
        Chunk c = ChunkAt(r, i);
        if (!run.empty() && (run.back().lo != c.lo || run.back().hi != c.hi)) flush();
        run.push_back(std::move(c));
    }
    flush();
    return rows;
}

bool DeliveryStore::HasRecords(int owner) {
    return Session()
               .Exec("SELECT EXISTS (SELECT 1 FROM eventlog.in_flight WHERE owner = $1)", {std::to_string(owner)})
               .Get(0, 0) == "t";
}

std::int64_t DeliveryStore::PruneEventIds(std::chrono::seconds window) {
    return Session()
        .Exec(
            // Only ids of delivered events: their transaction is visible in the acknowledged snapshot (its rows are
            // in acknowledged chunks) and they are not dead-lettered; an id without an outbox row (written by hand)
            // is. An id registered before migration 0018 (no txid) is
            // delivered unless a record of the version before holds it: records hold their rows in outbox order, so
            // one at or above the lowest first id of any such record is kept while they are in flight.
            "DELETE FROM eventlog.event_ids WHERE ctid = ANY (ARRAY(SELECT r.ctid FROM eventlog.event_ids r WHERE "
            "r.accepted_at < pg_catalog.now() - pg_catalog.make_interval(secs => $1::float8) "
            "AND NOT EXISTS (SELECT 1 FROM eventlog.dead_letter l WHERE l.event_id = r.event_id) "
            "AND CASE WHEN r.outbox_id IS NULL THEN true WHEN r.txid IS NOT NULL THEN "
            "pg_catalog.txid_visible_in_snapshot(r.txid, (SELECT "
            "eventlog.acknowledged_snapshot())) "
            "ELSE r.outbox_id IS NULL OR r.outbox_id < COALESCE((SELECT pg_catalog.min((d.events[1]).id) "
            "FROM eventlog.delivery d), 9223372036854775807) END LIMIT 10000))",
            {std::to_string(window.count())})
        .AffectedRows();
}

std::int64_t DeliveryStore::InFlightRecords() {
    return Session().Exec("SELECT pg_catalog.count(*) FROM eventlog.in_flight").GetInt(0, 0);
}

std::vector<SlotState> DeliveryStore::Retain() {
    // An explicit transaction, so that the test seam has a step with partitions truncated and nothing committed.
    pg::Transaction tx(Session());
    const auto r = tx.Exec("SELECT slot, bytes, state FROM eventlog.truncate_delivered()");
    std::vector<SlotState> slots;
    slots.reserve(static_cast<std::size_t>(r.Rows()));
    for (int i = 0; i < r.Rows(); ++i) {
        slots.push_back({static_cast<int>(r.GetInt(i, 0)), r.GetInt(i, 1), std::string(r.Get(i, 2))});
    }
    if (std::any_of(slots.begin(), slots.end(), [](const SlotState& s) { return s.state == "truncated"; })) {
        probe_.At("during_truncate");
    }
    tx.Commit();
    return slots;
}

bool DeliveryStore::WaitForNotify(std::chrono::milliseconds timeout) { return Session().WaitForNotify(timeout); }

}  // namespace eventlog::relay::detail
