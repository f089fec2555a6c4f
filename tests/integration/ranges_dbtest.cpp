// Storage v2's ranges and chunks against a real PostgreSQL (label db): what a claim covers, whatever the commit order,
// and retention. Interleavings walked here:
// 1. Random producers and claimers at once (many rounds, each with its seed printed): single-event and multi-event
//    transactions, rollbacks, savepoints rolled back inside committed transactions, transactions held open across many
//    cuts, two-phase commits decided by another session later, bulk COPYs, while two claimers cut ranges and take
//    chunks of random sizes and byte bounds and acknowledge some. The offline checker then recomputes every chunk's
//    rows from its descriptor: each committed event in exactly one chunk, no rolled-back one, every chunk its count,
//    every range chained to the one before; and each chunk's rows read right after its claim equal the rows read at
//    the end (a record's contents never change).
// 2. No event waits for another transaction: one held open for seconds, a prepared one decided seconds later, while
//    other events flow; each is delivered within a poll and an insert of its own commit.
// 3. Retention: once the transaction ids have moved past a partition's turn and its rows are acknowledged, a relay's
//    pass truncates it; a session holding the partition (as pg_dump does) makes the pass skip it without making a
//    producer wait, and the next pass after it ends truncates it. `eventlog status` says what retention waits for.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <eventlog/outbox/outbox.hpp>
#include <eventlog/pg/connection.hpp>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/test_env.hpp"

namespace eventlog {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::BackgroundRelay;
using testing::StackTest;
using testing::TestStack;
using testing::WaitUntil;
using Clock = std::chrono::steady_clock;

class RangesTest : public StackTest {
protected:
    TestStack::Options StackOptions() override {
        return {.overrides = {{"RELAY_POLL_MS", "5"}, {"RELAY_IDLE_LINGER_MS", "60000"}}};
    }

    bool Visible(const std::string& id) {
        return stack_->ChCount("SELECT count() FROM " + stack_->ChTable() + " WHERE event_id = toUUID('" + id + "')") ==
               1;
    }

    std::string Emit(pg::Connection& session, const std::string& type) {
        return std::string(session.Exec("SELECT eventlog.emit($1, '{}'::json)::text", {type}).Get(0, 0));
    }
};

/// The event ids of a chunk's rows, read by its descriptor.
std::vector<std::string> ChunkRows(pg::Connection& pg, const std::string& batch_id) {
    const auto r = pg.Exec(
        "SELECT k.event_id::text FROM eventlog.outbox_chunk c JOIN eventlog.outbox_range r ON r.id = c.range_id, "
        "LATERAL eventlog.range_rows(r.lo, r.hi, c.first_txid, c.first_id, c.last_txid, c.last_id, "
        "9223372036854775807) k WHERE c.batch_id = $1::uuid",
        {batch_id});
    std::vector<std::string> ids;
    for (int i = 0; i < r.Rows(); ++i) ids.emplace_back(r.Get(i, 0));
    return ids;
}

TEST_F(RangesTest, RandomInterleavingsPutEveryCommittedEventInExactlyOneChunk) {
    constexpr int kRounds = 4;
    constexpr int kProducers = 4;
    constexpr int kTransactions = 60;
    for (int round = 0; round < kRounds; ++round) {
        const unsigned seed = std::random_device{}();
        SCOPED_TRACE("seed " + std::to_string(seed));
        std::cout << "round " << round << " seed " << seed << "\n";
        std::mutex mutex;
        std::set<std::string> committed, rolled_back;
        std::map<std::string, std::vector<std::string>> claimed;  // batch id -> rows read right after the claim
        std::atomic<bool> producing{true};
        std::atomic<int> prepared_seq{0};
        std::vector<std::thread> threads;
        std::string failure;
        const auto fail = [&](const std::string& what) {
            std::lock_guard lock(mutex);
            if (failure.empty()) failure = what;
        };
        for (int p = 0; p < kProducers; ++p) {
            threads.emplace_back([&, p] {
                try {
                    std::mt19937 rng(seed + static_cast<unsigned>(p));
                    auto session = stack_->OpenPg();
                    auto decider = stack_->OpenPg();  // decides prepared transactions, as a coordinator would
                    for (int t = 0; t < kTransactions; ++t) {
                        std::vector<std::string> kept, dropped;
                        const int shape = std::uniform_int_distribution<int>(0, 6)(rng);
                        const auto emit = [&] { return Emit(session, "round_event"); };
                        session.Exec("BEGIN");
                        if (shape == 0) {  // one event
                            kept.push_back(emit());
                        } else if (shape == 1) {  // several
                            for (int i = 0; i < 5; ++i) kept.push_back(emit());
                        } else if (shape == 2) {  // rolled back
                            dropped.push_back(emit());
                            dropped.push_back(emit());
                            session.Exec("ROLLBACK");
                            std::lock_guard lock(mutex);
                            rolled_back.insert(dropped.begin(), dropped.end());
                            continue;
                        } else if (shape == 3) {  // a savepoint rolled back inside a committed transaction
                            kept.push_back(emit());
                            session.Exec("SAVEPOINT s");
                            dropped.push_back(emit());
                            session.Exec("ROLLBACK TO SAVEPOINT s");
                            kept.push_back(emit());
                        } else if (shape == 4) {  // held open across cuts
                            kept.push_back(emit());
                            std::this_thread::sleep_for(milliseconds(std::uniform_int_distribution<int>(0, 150)(rng)));
                            kept.push_back(emit());
                        } else if (shape == 5) {  // two-phase, decided later by another session
                            kept.push_back(emit());
                            const std::string gid =
                                "ranges_" + std::to_string(p) + "_" + std::to_string(prepared_seq.fetch_add(1));
                            session.Exec("PREPARE TRANSACTION '" + gid + "'");
                            std::this_thread::sleep_for(milliseconds(std::uniform_int_distribution<int>(0, 100)(rng)));
                            const bool commit = std::uniform_int_distribution<int>(0, 1)(rng) == 1;
                            decider.Exec((commit ? "COMMIT PREPARED '" : "ROLLBACK PREPARED '") + gid + "'");
                            std::lock_guard lock(mutex);
                            (commit ? committed : rolled_back).insert(kept.begin(), kept.end());
                            continue;
                        } else {  // a bulk COPY
                            std::vector<Event> events(200);
                            for (auto& e : events) {
                                e.event_type = "round_copy";
                                e.event_context = "{}";
                            }
                            pg::Connection& conn = session;
                            conn.Exec("ROLLBACK");
                            pg::Transaction tx(conn);
                            for (const auto& id : outbox::EmitMany(tx, std::move(events)))
                                kept.push_back(id.ToString());
                            tx.Commit();
                            std::lock_guard lock(mutex);
                            committed.insert(kept.begin(), kept.end());
                            continue;
                        }
                        session.Exec("COMMIT");
                        std::lock_guard lock(mutex);
                        committed.insert(kept.begin(), kept.end());
                        rolled_back.insert(dropped.begin(), dropped.end());
                    }
                } catch (const std::exception& e) {
                    fail(std::string("producer: ") + e.what());
                }
            });
        }
        std::vector<std::thread> claimers;
        for (int c = 0; c < 2; ++c) {
            claimers.emplace_back([&, c] {
                try {
                    std::mt19937 rng(seed + 100 + static_cast<unsigned>(c));
                    auto session = stack_->OpenPg();
                    const auto claim_once = [&] {
                        const int chunk = std::uniform_int_distribution<int>(1, 40)(rng);
                        const int max_rows = std::uniform_int_distribution<int>(1, 300)(rng);
                        const int max_bytes = std::uniform_int_distribution<int>(1, 20000)(rng);
                        const auto r = session.Exec(
                            "SELECT batch_id::text FROM eventlog.claim_chunks($1::integer, $2::integer, $3::integer, "
                            "$4::bigint, (SELECT array_agg(gen_random_uuid()) FROM generate_series(0, $3::integer / "
                            "$2::integer)))",
                            {std::to_string(100 + c), std::to_string(chunk), std::to_string(max_rows),
                             std::to_string(max_bytes)});
                        for (int i = 0; i < r.Rows(); ++i) {
                            const std::string id(r.Get(i, 0));
                            auto rows = ChunkRows(session, id);
                            if (std::uniform_int_distribution<int>(0, 2)(rng) == 0) {
                                session.Exec("INSERT INTO eventlog.outbox_ack (batch_id) VALUES ($1::uuid)", {id});
                            }
                            std::lock_guard lock(mutex);
                            claimed.emplace(id, std::move(rows));
                        }
                        return r.Rows();
                    };
                    while (producing.load()) {
                        claim_once();
                        std::this_thread::sleep_for(milliseconds(std::uniform_int_distribution<int>(0, 5)(rng)));
                    }
                } catch (const std::exception& e) {
                    fail(std::string("claimer: ") + e.what());
                }
            });
        }
        for (auto& t : threads) t.join();
        producing.store(false);
        for (auto& t : claimers) t.join();
        ASSERT_EQ(failure, "");
        // Everything left, in one claim of big chunks.
        for (const auto& id : stack_->ClaimAs(999, 50)) claimed.emplace(id, ChunkRows(stack_->Pg(), id));

        EXPECT_EQ(stack_->CheckRanges(true), "");
        std::map<std::string, int> seen;
        for (const auto& [batch, rows] : claimed) {
            EXPECT_EQ(ChunkRows(stack_->Pg(), batch), rows) << "the rows of chunk " << batch << " changed";
            for (const auto& id : rows) ++seen[id];
        }
        int twice = 0, rolled_back_seen = 0, missing = 0;
        for (const auto& [id, n] : seen) {
            twice += n > 1;
            rolled_back_seen += rolled_back.count(id) > 0;
        }
        for (const auto& id : committed) missing += seen.count(id) == 0;
        std::cout << "round " << round << ": " << committed.size() << " committed, " << rolled_back.size()
                  << " rolled back, " << claimed.size() << " chunks\n";
        EXPECT_GT(committed.size(), 0u);
        EXPECT_GT(rolled_back.size(), 0u) << "no rollback: this round walked less than it should";
        EXPECT_EQ(twice, 0) << "events in two chunks";
        EXPECT_EQ(rolled_back_seen, 0) << "rolled-back events in a chunk";
        EXPECT_EQ(missing, 0) << "committed events in no chunk";
        EXPECT_EQ(seen.size(), committed.size());
        if (HasFailure()) break;
    }
}

TEST_F(RangesTest, NoEventWaitsForATransactionHeldOpenOrPreparedMeanwhile) {
    BackgroundRelay relay(stack_->Config());
    auto held = stack_->OpenPg();
    held.Exec("BEGIN");
    const std::string held_id = Emit(held, "held_open");
    auto prepared = stack_->OpenPg();
    prepared.Exec("BEGIN");
    const std::string prepared_id = Emit(prepared, "prepared");
    prepared.Exec("PREPARE TRANSACTION 'ranges_latency'");
    auto producer = stack_->OpenPg();
    double worst_ms = 0;
    for (int i = 0; i < 40; ++i) {
        const std::string id = Emit(producer, "flowing");
        const auto committed = Clock::now();
        ASSERT_TRUE(WaitUntil([&] { return Visible(id); }, seconds(10), milliseconds(2)));
        worst_ms = std::max(worst_ms, std::chrono::duration<double, std::milli>(Clock::now() - committed).count());
        std::this_thread::sleep_for(milliseconds(50));
    }
    std::cout << "40 events behind an open and a prepared transaction: slowest visible after " << worst_ms << " ms\n";
    EXPECT_LT(worst_ms, 1000) << "an event waited for the older transactions";
    EXPECT_FALSE(Visible(held_id));
    EXPECT_FALSE(Visible(prepared_id));

    held.Exec("COMMIT");
    auto committed = Clock::now();
    ASSERT_TRUE(WaitUntil([&] { return Visible(held_id); }, seconds(10), milliseconds(2)));
    const double held_ms = std::chrono::duration<double, std::milli>(Clock::now() - committed).count();
    stack_->Pg().Exec("COMMIT PREPARED 'ranges_latency'");
    committed = Clock::now();
    ASSERT_TRUE(WaitUntil([&] { return Visible(prepared_id); }, seconds(10), milliseconds(2)));
    const double prepared_ms = std::chrono::duration<double, std::milli>(Clock::now() - committed).count();
    std::cout << "held-open event visible " << held_ms << " ms after its commit, prepared one " << prepared_ms
              << " ms after COMMIT PREPARED\n";
    EXPECT_LT(held_ms, 1000);
    EXPECT_LT(prepared_ms, 1000);
    relay.Stop();
    EXPECT_EQ(relay.Error(), "");
    EXPECT_EQ(stack_->PendingEvents(), 0);
    EXPECT_EQ(stack_->CheckRanges(true), "");
}

class RetentionTest : public StackTest {
protected:
    /// Moves the server's transaction ids on by at least `n` (subtransactions that write take an id each).
    void BurnTransactionIds(int n) {
        auto session = stack_->OpenPg();
        session.Exec("CREATE TEMP TABLE burn (x integer)");
        session.Exec("DO $$ BEGIN FOR i IN 1.." + std::to_string(n) +
                     " LOOP BEGIN INSERT INTO burn VALUES (i); EXCEPTION WHEN OTHERS THEN NULL; END; END LOOP; "
                     "END $$");
    }
    std::int64_t Slot(std::int64_t txid) { return (txid >> 16) & 15; }
    std::int64_t RowsIn(std::int64_t slot) {
        return stack_->PgCount("SELECT count(*) FROM eventlog.outbox_" + std::to_string(slot));
    }
};

TEST_F(RetentionTest, ADeliveredPartitionIsTruncatedOnceTheIdsMovedOnAndAHolderOnlyDelaysIt) {
    auto producer = stack_->OpenPg();
    producer.Exec("BEGIN");  // one transaction: one partition
    for (int i = 0; i < 100; ++i) producer.Exec("SELECT eventlog.emit('retained', '{}'::json)");
    producer.Exec("COMMIT");
    const std::int64_t slot = Slot(stack_->PgCount("SELECT max(txid) FROM eventlog.outbox"));
    stack_->Drain();
    ASSERT_EQ(RowsIn(slot), 100) << "delivered rows stay until their partition is truncated";
    auto status = outbox::ReadStatus(stack_->Pg());
    EXPECT_GT(status.retained_bytes, 0);

    // The ids move past the partition's turn; a later event is delivered, so the acknowledged snapshot is past it.
    BurnTransactionIds(140'000);
    ASSERT_NE(Slot(stack_->PgCount("SELECT txid_current()")), slot) << "the premise: another partition's turn";
    producer.Exec("SELECT eventlog.emit('later', '{}'::json)");
    stack_->Drain();

    // A session holds the partition, as pg_dump does (ACCESS SHARE until it ends): the pass skips it, and a producer
    // writing meanwhile does not wait.
    auto holder = stack_->OpenPg();
    holder.Exec("BEGIN");
    holder.Exec("LOCK TABLE eventlog.outbox_" + std::to_string(slot) + " IN ACCESS SHARE MODE");
    double worst_emit_ms = 0;
    std::thread writer([&] {  // 200 events over about a second, while the drain's pass tries the partition
        auto session = stack_->OpenPg();
        for (int i = 0; i < 200; ++i) {
            const auto t0 = Clock::now();
            session.Exec("SELECT eventlog.emit('during_hold', '{}'::json)");
            worst_emit_ms =
                std::max(worst_emit_ms, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
            std::this_thread::sleep_for(milliseconds(5));
        }
    });
    std::this_thread::sleep_for(milliseconds(50));
    stack_->Drain();
    writer.join();
    std::cout << "slowest emit while the relay's pass met a held partition: " << worst_emit_ms << " ms\n";
    EXPECT_LT(worst_emit_ms, 500) << "a producer waited for retention";
    EXPECT_EQ(RowsIn(slot), 100) << "truncated while another session held it";
    holder.Exec("COMMIT");

    stack_->Drain();
    EXPECT_EQ(RowsIn(slot), 0) << "the delivered partition was not truncated";
    EXPECT_EQ(stack_->ChCount("SELECT uniqExact(event_id) FROM " + stack_->ChTable()),
              stack_->ChCount("SELECT count() FROM " + stack_->ChTable()));
    EXPECT_EQ(stack_->PendingEvents(), 0);
    EXPECT_EQ(stack_->CheckRanges(true), "");
    EXPECT_LT(outbox::ReadStatus(stack_->Pg()).retained_bytes, status.retained_bytes + 8192 * 16);

    // A transaction that holds an id keeps the frontier back, and the status says which.
    auto open = stack_->OpenPg();
    open.Exec("BEGIN");
    open.Exec("SELECT txid_current()");
    producer.Exec("SELECT eventlog.emit('after_open', '{}'::json)");
    stack_->Drain();
    status = outbox::ReadStatus(stack_->Pg());
    EXPECT_THAT(status.retention_waiting, ::testing::HasSubstr("a transaction open for")) << status.retention_waiting;
    open.Exec("ROLLBACK");
}

// (migration 0021) The relay's reads lock only the partitions their keys can be in, so a delivered partition is
// truncated while another relay reads, as a second relay does all the time. Sampled from pg_locks while a drain reads
// 100,000 rows of one partition, each sample counted only when the same read statement ran before and after it. Seen
// failing with the read through range_rows(): every read held all sixteen partitions.
TEST_F(RetentionTest, TheRelaysReadsLockOnlyThePartitionsOfTheirKeys) {
    auto producer = stack_->OpenPg();
    producer.Exec("SELECT count(eventlog.emit('bulk', json_build_object('i', i))) FROM generate_series(1, 100000) i");
    std::atomic<bool> done{false};
    std::thread drain([&] {
        stack_->Drain();
        done.store(true);
    });
    auto watcher = stack_->OpenPg();
    constexpr std::string_view kReading =
        "SELECT pid, query_start::text FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' "
        "AND application_name = 'eventlog-relay' AND query LIKE '%range_rows_in%'";
    int samples = 0;
    std::int64_t worst = 0;
    while (!done.load()) {
        const auto before = watcher.Exec(kReading);
        if (before.Rows() != 1) continue;
        const auto locks = watcher.Exec(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE l.pid = $1::integer "
            "AND c.relname ~ '^outbox_[0-9]+$'",
            {std::string(before.Get(0, 0))});
        const auto after = watcher.Exec(kReading);
        if (after.Rows() != 1 || std::string(after.Get(0, 1)) != std::string(before.Get(0, 1))) continue;
        ++samples;
        worst = std::max(worst, locks.GetInt(0, 0));
    }
    drain.join();
    std::cout << samples << " samples of the relay's reads; the most partitions one held: " << worst << "\n";
    EXPECT_GT(samples, 0) << "no read was seen: the test did not walk its case";
    EXPECT_LE(worst, 2) << "a read locked partitions its keys cannot be in";
    EXPECT_EQ(stack_->PendingEvents(), 0);
    EXPECT_EQ(stack_->CheckRanges(true), "");
}

}  // namespace
}  // namespace eventlog
