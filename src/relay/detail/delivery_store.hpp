#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <eventlog/core/config.hpp>
#include <eventlog/core/uuid.hpp>
#include <eventlog/outbox/outbox.hpp>
#include <eventlog/pg/connection.hpp>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include "relay/detail/pending_row.hpp"
#include "relay/detail/step_probe.hpp"

namespace eventlog::relay::detail {

class DeliveryStore;

/// After a failover (or any lost session) claims are checked for presence before their first insert for this long:
/// under asynchronous replication a failover can lose a claim's commit, and its rows come back to the outbox although
/// they were delivered (docs/delivery.md, "Failover").
constexpr std::chrono::milliseconds kSuspectWindow{60'000};

/// A session-level advisory lock on a relay owner key, held by this store's session. Move-only; the destructor
/// releases it (when the session is still alive: a lost session has released it already). Must not outlive the
/// store.
class OwnerLock {
public:
    OwnerLock(DeliveryStore& store, int owner) : store_(&store), owner_(owner) {}
    OwnerLock(OwnerLock&& other) noexcept : store_(other.store_), owner_(other.owner_) { other.store_ = nullptr; }
    OwnerLock& operator=(OwnerLock&&) = delete;
    OwnerLock(const OwnerLock&) = delete;
    OwnerLock& operator=(const OwnerLock&) = delete;
    ~OwnerLock();

    /// The locked owner key.
    int Owner() const noexcept { return owner_; }

private:
    DeliveryStore* store_;
    int owner_;
};

/// One chunk of a range: the delivery record of storage v2 (docs/delivery.md, "Ranges"). Its rows are the rows of
/// range (lo, hi] with keys from `first` to `last`, `events` of them.
struct Chunk {
    Uuid batch_id;
    std::string lo, hi;  // the range's snapshots, as text
    std::int64_t first_txid{0}, first_id{0}, last_txid{0}, last_id{0};
    std::int64_t events{0};
};

/// What a retention pass did with one partition of the outbox (eventlog.truncate_delivered()).
struct SlotState {
    int slot{0};
    std::int64_t bytes{0};
    std::string state;  // "truncated", "live" (may hold undelivered rows) or "locked" (another session holds it)
};

/// The PostgreSQL side of delivery: one session (with its owner key and advisory lock), the claim, the
/// acknowledgement, dead letters, the records of dead owners and retention. All SQL of the protocol lives here. Not
/// thread-safe; one per relay.
class DeliveryStore {
public:
    /// `probe`: the relay's test seam (it must outlive the store).
    explicit DeliveryStore(const Config& config, const Probe& probe = kNoProbe);

    /// Opens a new session (closing any old one, which releases its owner lock), takes a fresh owner key, pins
    /// the search_path and LISTENs for the outbox's NOTIFY.
    void Connect();
    /// True while the session is open and not known to be broken.
    bool Healthy() const noexcept;
    /// The session's owner key (its advisory lock; the owner of its chunks).
    int Owner() const noexcept { return owner_; }
    /// The server's pid of the session (for logs).
    int BackendPid() const noexcept;
    /// "host:port" of the PostgreSQL server of the session (pg::Connection::Server).
    std::string Server() const;
    /// Fails unless the session still answers (so it still owns its records).
    void CheckSession();
    /// An identifier of this outbox shared by every relay of it (eventlog.relay_identity), 16 hex characters.
    const std::string& OutboxId() const noexcept { return outbox_id_; }
    /// How long from the session's start its claims must be checked for presence because the server's timeline
    /// changed since relays last recorded it (a failover, a restore); 0 normally. Durable: every relay sees it.
    std::chrono::milliseconds SuspectFor() const noexcept { return suspect_for_; }
    /// eventlog.limits as read when the session opened.
    const outbox::Limits& Limits() const noexcept { return limits_; }

    /// On a cluster: `choose` names the node of each claim (ClickHouseSink::ChooseNode(), or "*"), written into the
    /// claim's records in its transaction. Without one (one server) records have no target.
    void SetTargetChooser(std::function<std::string()> choose) { choose_target_ = std::move(choose); }
    /// The target of the claim Claim() returned last ("" without a chooser).
    const std::string& LastClaimTarget() const noexcept { return last_target_; }

    /// Claims the next chunks (eventlog.claim_chunks: up to CLICKHOUSE_BATCH_SIZE rows and RELAY_CLAIM_MAX_BYTES,
    /// in chunks of EVENT_BATCH_SIZE, committed) and starts reading their rows without waiting, so the read runs on
    /// the server while the relay inserts the claim before.
    void StartClaim();
    /// Returns the rows of the claim started last (starting one when none is), in key order, each with its chunk's
    /// batch id. With `prefetch_next`, a full claim starts the next one before its rows are decoded.
    std::vector<PendingRow> Claim(bool prefetch_next);
    /// True when the last claim stopped at its row or byte bound (more is probably waiting).
    bool LastClaimWasFull() const noexcept { return last_claim_full_; }
    /// True while a claim started by StartClaim() has not been collected.
    bool ClaimInFlight() const noexcept { return reading_.valid() || prefetched_.has_value(); }

    /// Acknowledges delivered records: writes `dead` into eventlog.dead_letter and acknowledges the chunks (and
    /// deletes records of the version before), in one transaction, for the records this session still owns.
    void Acknowledge(const std::vector<Uuid>& batch_ids, const std::vector<PendingRow>& dead);

    /// Owners of records in flight other than this session's.
    std::vector<int> OtherOwners();
    /// Takes `owner`'s lock when its session is gone; nullopt while it is held (the owner lives).
    std::optional<OwnerLock> TryLock(int owner);
    /// True when `owner`'s lock is held by a session whose role is not a relay's (not a member of eventlog_relay):
    /// advisory locks are open to every role, so a stranger can take a dead owner's key; the owner is dead all the
    /// same, because a live relay holds its own key for its session's life.
    bool HeldByStranger(int owner);
    /// The targets of `owner`'s records in flight ("*" for a record without one).
    std::vector<std::string> Targets(int owner);
    /// Moves `owner`'s records in flight (all, or those of `target` on a cluster) to this session's owner key, in
    /// one statement each (of two relays adopting at once, one gets them), and returns their rows in claim order.
    /// Recovery adopts a dead owner's records after fencing it there, so that the rows it re-sends belong to this
    /// session (and to this session's fence).
    std::vector<PendingRow> Adopt(int owner, const std::optional<std::string>& target = std::nullopt);
    /// True when `owner` has records in flight.
    bool HasRecords(int owner);
    /// Removes up to 10,000 accepted event ids older than `window` from eventlog.event_ids; returns how many.
    std::int64_t PruneEventIds(std::chrono::seconds window);
    /// Records in flight, of every owner.
    std::int64_t InFlightRecords();
    /// One retention pass: truncates the outbox's partitions whose rows are all delivered, forgets ranges whose
    /// rows are gone. Returns the partitions that hold rows, with what happened to each.
    std::vector<SlotState> Retain();
    /// Waits up to `timeout` for the outbox's NOTIFY.
    bool WaitForNotify(std::chrono::milliseconds timeout);

    /// A transaction id drawn now, for OlderTransactionsEnded(): every producer that drew an outbox id before this
    /// call had taken its transaction id before that, so it has a smaller one.
    std::int64_t Mark();
    /// True once every transaction older than `mark` has ended.
    bool OlderTransactionsEnded(std::int64_t mark);
    /// The outbox id sequence's last value (0 before the first id). Not subject to MVCC: it moves when a producer
    /// draws an id, before that producer commits.
    std::int64_t OutboxSequence();

private:
    friend class OwnerLock;
    pg::Connection& Session();
    void Unlock(int owner) noexcept;
    std::chrono::milliseconds ReadTimeline();
    /// Sends the read of `chunks` (consecutive chunks of one range) without waiting.
    void SendRead(const std::vector<Chunk>& chunks);
    /// The read of the claim in flight, received and decoded by a thread of its own: PostgreSQL streams the rows
    /// while the relay inserts the claim before (before, nobody read the socket meanwhile, and the server waited on
    /// it: ClientWrite 34% of the relay's session in a drain of 1M).
    /// The rows of a read of `chunks`, each with its chunk's batch id; fails unless every chunk has its count.
    std::vector<PendingRow> Rows(const pg::Result& result, const std::vector<Chunk>& chunks) const;
    std::vector<PendingRow> Decode(const pg::Result& result) const;

    const Config& config_;
    const Probe& probe_;
    std::optional<pg::Connection> pg_;
    int owner_{0};
    std::string outbox_id_;
    outbox::Limits limits_;
    std::chrono::milliseconds suspect_for_{0};
    std::future<std::vector<PendingRow>> reading_;  // declared after pg_: joined before it goes
    // A read collected early, when another statement needed the session.
    std::optional<std::vector<PendingRow>> prefetched_;
    std::vector<Chunk> claimed_;  // the chunks of the read in flight (or prefetched)
    bool claimed_full_{false};    // whether that claim stopped at its row or byte bound
    bool last_claim_full_{false};
    std::function<std::string()> choose_target_;  // a cluster's: the node of each claim
    std::string claimed_target_;                  // the target of the claim in flight
    std::string last_target_;                     // the target of the claim returned last
};

}  // namespace eventlog::relay::detail
