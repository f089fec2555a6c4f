// Recovery paths of the relay against real servers (label db). Interleavings walked here:
// 1. A relay's session is lost, and rows it had delivered come back to the outbox with the same ids (what a
//    failover under asynchronous replication does when the claim's commit is lost): the relay must find them
//    present and not send them again (the 60 s presence window after a lost session).
// 2. A live relay recovers a dead owner's records: afterwards it must hold no advisory lock of that owner (locks
//    are objects released on every path), so a later relay could take them.
// 3. A dead owner that left only a stage (no records) is swept: its stage tables are dropped.
// 4. A stage fenced under a live relay (an operator, or a recovering relay that believed it dead): the relay's
//    next insert fails with "table doesn't exist", the session ends, a new stage is built and nothing is lost.
// 5. Claims bounded by bytes: with a small RELAY_CLAIM_MAX_BYTES each claim stops early and later claims take the
//    rest (a claim once passed PostgreSQL's 1 GB value limit and failed forever).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <eventlog/outbox/outbox.hpp>
#include <eventlog/pg/connection.hpp>
#include <string>
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

constexpr const char* kOwnerLockClass = "1163283527";  // 0x45564C47, the relay's advisory-lock class

class RelayRecoveryTest : public StackTest {
protected:
    TestStack::Options StackOptions() override {
        return {.overrides = {{"EVENT_PROCESSING_INTERVAL", "0.2"},
                              {"RELAY_BACKOFF_BASE_MS", "20"},
                              {"RELAY_BACKOFF_CAP_MS", "100"}}};
    }

    void EmitN(int n) {
        std::vector<Event> events;
        for (int i = 0; i < n; ++i) {
            Event e;
            e.event_type = "recovery_test";
            e.event_context = R"({"i":)" + std::to_string(i) + "}";
            events.push_back(std::move(e));
        }
        pg::Transaction tx(stack_->Pg());
        outbox::EmitMany(tx, std::move(events));
        tx.Commit();
    }

    std::string CountAndUnique() {
        return stack_->ChQuery("SELECT count(), uniqExact(event_id) FROM " + stack_->ChTable());
    }

    /// Backend pids of relay sessions on the test database.
    std::vector<std::string> RelayPids() {
        auto admin = stack_->OpenPg();
        const auto r = admin.Exec(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'eventlog-relay' AND datname = $1 ORDER BY pid",
            {stack_->DatabaseName()});
        std::vector<std::string> pids;
        for (int i = 0; i < r.Rows(); ++i) pids.emplace_back(r.Get(i, 0));
        return pids;
    }

    std::int64_t StageTables() {
        return stack_->ChCount("SELECT count() FROM system.tables WHERE database = '" + stack_->DatabaseName() +
                               "' AND name LIKE 'eventlog\\\\_stage\\\\_%'");
    }
};

// A failover that lost a claim's commit, as every relay sees it: all relay sessions end at once, and the claim's rows
// come back to the outbox (same ids, same times) although they were delivered. Two relays: whichever claims them
// must find them in ClickHouse (each one's presence window after its lost session), or they are sent twice.
TEST_F(RelayRecoveryTest, RowsThatReturnToTheOutboxAfterALostSessionAreNotSentAgain) {
    EmitN(100);
    stack_->Pg().Exec("CREATE TABLE public.saved AS SELECT * FROM eventlog.outbox");
    stack_->Drain();
    ASSERT_EQ(CountAndUnique(), "100\t100\n");

    BackgroundRelay first(stack_->Config());
    BackgroundRelay second(stack_->Config());
    ASSERT_TRUE(WaitUntil([&] { return RelayPids().size() == 2; }, seconds(20)));
    const auto old_pids = RelayPids();
    for (const auto& pid : old_pids) stack_->Pg().Exec("SELECT pg_terminate_backend($1::int)", {pid});
    ASSERT_TRUE(WaitUntil(
        [&] {
            const auto pids = RelayPids();
            return pids.size() == 2 && std::none_of(pids.begin(), pids.end(), [&](const std::string& p) {
                       return std::find(old_pids.begin(), old_pids.end(), p) != old_pids.end();
                   });
        },
        seconds(20)))
        << "the relays did not reconnect after their sessions were terminated";
    stack_->Pg().Exec(
        "INSERT INTO eventlog.outbox (event_id, event_type, event_date_time, environment, event_context, "
        "metadata_version, trace_id) SELECT event_id, event_type, event_date_time, environment, event_context, "
        "metadata_version, trace_id FROM public.saved");
    ASSERT_TRUE(WaitUntil([&] { return stack_->PendingEvents() == 0; }, seconds(30)));
    first.Stop();
    second.Stop();
    EXPECT_EQ(first.Error(), "");
    EXPECT_EQ(second.Error(), "");
    EXPECT_EQ(CountAndUnique(), "100\t100\n");
}

TEST_F(RelayRecoveryTest, ARecoveredOwnersLockIsReleasedAndItsStageDropped) {
    EmitN(50);
    // A dead relay's leftovers: its claim (owner 4242 holds no lock: its session is gone) and an orphan stage of
    // another dead owner that claimed nothing.
    stack_->Pg().Exec(
        "BEGIN;"
        "INSERT INTO eventlog.delivery (batch_id, owner, events) SELECT gen_random_uuid(), 4242, "
        "array_agg(ROW(o.id, o.event_id, o.event_type, o.event_date_time, o.environment, o.event_context, "
        "o.metadata_version, o.trace_id, o.enqueued_at, o.span_id)::eventlog.pending_event ORDER BY o.id) FROM "
        "eventlog.outbox o;"
        "DELETE FROM eventlog.outbox;"
        "COMMIT");
    const auto id = stack_->Pg().Exec("SELECT replace(outbox_id::text, '-', '') FROM eventlog.relay_identity");
    const std::string outbox_id(id.Get(0, 0).substr(0, 16));
    const std::string orphan = "eventlog_stage_" + outbox_id + "_777_deadbeef";
    stack_->Ch().Execute("CREATE TABLE `" + stack_->DatabaseName() + "`.`" + orphan + "` AS " + stack_->ChTable() +
                         " ENGINE = Null");

    BackgroundRelay relay(stack_->Config());
    ASSERT_TRUE(WaitUntil([&] { return stack_->PendingEvents() == 0; }, seconds(30)));
    EXPECT_EQ(CountAndUnique(), "50\t50\n");
    // The orphan stage is swept and only the live relay's stage (table and view) is left.
    ASSERT_TRUE(WaitUntil([&] { return StageTables() == 2; }, seconds(20))) << StageTables() << " stage tables";
    // The live relay holds only its own owner lock, none of 4242's or 777's.
    EXPECT_EQ(stack_->PgCount(std::string("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = ") +
                              kOwnerLockClass + " AND objid IN (4242, 777)"),
              0);
    EXPECT_EQ(stack_->PgCount(std::string("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = ") +
                              kOwnerLockClass),
              1);
    relay.Stop();
    EXPECT_EQ(relay.Error(), "");
    // A clean stop with nothing in flight drops the relay's own stage too.
    EXPECT_EQ(StageTables(), 0);
}

TEST_F(RelayRecoveryTest, AStageDroppedUnderALiveRelayEndsItsSessionAndLosesNothing) {
    BackgroundRelay relay(stack_->Config());
    ASSERT_TRUE(WaitUntil([&] { return StageTables() == 2; }, seconds(20)));
    const auto stage = stack_->ChQuery("SELECT name FROM system.tables WHERE database = '" + stack_->DatabaseName() +
                                       "' AND name LIKE 'eventlog\\\\_stage\\\\_%' AND name NOT LIKE '%\\\\_mv'");
    stack_->Ch().Execute("DROP TABLE `" + stack_->DatabaseName() + "`.`" + stage.substr(0, stage.size() - 1) + "`");
    EmitN(200);
    ASSERT_TRUE(WaitUntil([&] { return stack_->PendingEvents() == 0; }, seconds(30)));
    relay.Stop();
    EXPECT_EQ(relay.Error(), "");
    EXPECT_EQ(CountAndUnique(), "200\t200\n");
}

TEST_F(RelayRecoveryTest, AClaimStopsAtItsByteBoundAndTheRestFollowsInLaterClaims) {
    // 10 events of ~700 bytes with RELAY_CLAIM_MAX_BYTES=1024: a claim takes rows while the bytes before the row
    // are under the bound, so each claim (one record, as EVENT_BATCH_SIZE is larger) holds 2 events.
    std::vector<Event> events;
    for (int i = 0; i < 10; ++i) {
        Event e;
        e.event_type = "sized_event";
        e.event_context = R"({"i":)" + std::to_string(i) + R"(,"blob":")" + std::string(600, 'x') + "\"}";
        events.push_back(std::move(e));
    }
    {
        pg::Transaction tx(stack_->Pg());
        outbox::EmitMany(tx, std::move(events));
        tx.Commit();
    }
    const auto bounded = stack_->Drain({{"RELAY_CLAIM_MAX_BYTES", "1024"}});
    EXPECT_EQ(bounded.delivered, 10);
    EXPECT_EQ(bounded.batches, 5) << "each claim must stop at the byte bound";
    EXPECT_EQ(CountAndUnique(), "10\t10\n");
}

}  // namespace
}  // namespace eventlog
