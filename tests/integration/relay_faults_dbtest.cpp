// Poison isolation, unencodable events and a missing target table, against real servers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <eventlog/clickhouse/client.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/core/event.hpp>
#include <eventlog/outbox/dead_letters.hpp>
#include <eventlog/outbox/migrate.hpp>
#include <eventlog/outbox/outbox.hpp>
#include <eventlog/pg/connection.hpp>
#include <eventlog/relay/relay.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/test_env.hpp"

namespace eventlog {
namespace {

using ::testing::AnyOf;
using testing::BackgroundRelay;
using ::testing::HasSubstr;
using testing::StackTest;
using testing::TestStack;

Event MakeEvent(std::string type, std::string context) {
    Event event;
    event.event_type = std::move(type);
    event.event_context = std::move(context);
    return event;
}

std::string CountAndUnique(TestStack& stack) {
    return stack.ChQuery("SELECT count(), uniqExact(event_id) FROM " + stack.ChTable());
}

std::string Pair(int count) { return std::to_string(count) + "\t" + std::to_string(count) + "\n"; }

class PoisonTest : public StackTest {
protected:
    TestStack::Options StackOptions() override {
        return {.overrides = {{"RELAY_MAX_ATTEMPTS", "2"},
                              {"RELAY_BACKOFF_BASE_MS", "10"},
                              {"RELAY_BACKOFF_CAP_MS", "50"},
                              {"EVENT_BATCH_SIZE", "1000"}}};
    }
};

TEST_F(PoisonTest, RejectedEventIsDeadLetteredItsNeighboursDeliveredAndReplayWorks) {
    // The server refuses any row whose event_type is poison_event (code 395, FUNCTION_THROW_IF_VALUE_IS_NON_ZERO).
    stack_->Ch().Execute("ALTER TABLE " + stack_->ChTable() +
                         " ADD COLUMN poison_check UInt8 MATERIALIZED throwIf(event_type = 'poison_event')");
    std::vector<Event> events;
    for (int i = 0; i < 1000; ++i) {
        events.push_back(i == 500 ? MakeEvent("poison_event", R"({"i":500,"poison":true})")
                                  : MakeEvent("normal_event", R"({"i":)" + std::to_string(i) + "}"));
    }
    events[500].span_id = "00f067aa0ba902b7";  // the producing span's id stays with a dead letter and its replay
    std::vector<Uuid> ids;
    {
        pg::Transaction tx(stack_->Pg());
        ids = outbox::EmitMany(tx, std::move(events));
        tx.Commit();
    }
    const Uuid poison_id = ids[500];

    const relay::Stats stats = stack_->Drain();
    EXPECT_EQ(stats.delivered, 999);
    EXPECT_EQ(stats.dead_lettered, 1);
    EXPECT_EQ(CountAndUnique(*stack_), Pair(999));
    EXPECT_EQ(stack_->ChCount("SELECT count() FROM " + stack_->ChTable() + " WHERE event_type = 'poison_event'"), 0);
    EXPECT_EQ(stack_->PendingEvents(), 0);

    const auto dead = outbox::ListDeadLetters(stack_->Pg());
    ASSERT_EQ(dead.size(), 1u);
    EXPECT_EQ(dead[0].event_id, poison_id.ToString());
    EXPECT_EQ(dead[0].event_type, "poison_event");
    EXPECT_EQ(dead[0].event_context, R"({"i":500,"poison":true})");
    EXPECT_THAT(dead[0].error, AnyOf(HasSubstr("throwIf"), HasSubstr("395")));
    // ClickHouse's code and message, not the server's URL or the relay's stage (the API shows this text).
    EXPECT_THAT(dead[0].error, ::testing::Not(HasSubstr(stack_->Config().clickhouse.host + ":")));
    EXPECT_THAT(dead[0].error, ::testing::Not(HasSubstr("eventlog_stage_")));
    EXPECT_GE(dead[0].attempts, 2);
    EXPECT_FALSE(dead[0].batch_id.empty());
    const auto found = outbox::FindDeadLetter(stack_->Pg(), poison_id);
    ASSERT_TRUE(found.has_value());
    EXPECT_EQ(found->error, dead[0].error);

    // Fix the target, replay, and the event arrives with its original id.
    stack_->Ch().Execute("ALTER TABLE " + stack_->ChTable() + " DROP COLUMN poison_check");
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.dead_letter WHERE span_id = '00f067aa0ba902b7'"), 1);
    EXPECT_EQ(outbox::ReplayDeadLetters(stack_->Pg(), {}), 1);
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.outbox_pending WHERE span_id = '00f067aa0ba902b7'"), 1);
    const relay::Stats replay = stack_->Drain();
    EXPECT_EQ(replay.delivered, 1);
    EXPECT_EQ(CountAndUnique(*stack_), Pair(1000));
    EXPECT_EQ(stack_->ChQuery("SELECT event_type, event_context FROM " + stack_->ChTable() +
                              " WHERE event_id = toUUID('" + poison_id.ToString() + "')"),
              "poison_event\t{\"i\":500,\"poison\":true}\n");
    EXPECT_TRUE(outbox::ListDeadLetters(stack_->Pg()).empty());
    EXPECT_EQ(stack_->PendingEvents(), 0);
}

// (issue 18, item 2) A materialized view that throws for one event, attached where ClickHouse 18.16 runs views for
// the relay's rows: on the relay's stage (18.16 does not run views of `event_log` for blocks a view pushes into it).
// Views of a table run in name order. Named after the relay's forwarding view, the throwing view fails the INSERT
// after the row is stored in event_log: the code before the fix retried the lone row as "nothing can have been
// written" and stored it once per attempt (RELAY_MAX_ATTEMPTS copies), then dead-lettered it, and a replay added
// more. Named before it, the row is never stored: dead-lettered, then delivered once by a replay after the view is
// gone. Either way: one row.
TEST_F(PoisonTest, AViewThatThrowsForALoneEventLeavesExactlyOneRowWhereverItRuns) {
    for (const std::string view : {"zz_poison_view", "aa_poison_view"}) {
        SCOPED_TRACE(view);
        stack_->Ch().Execute("TRUNCATE TABLE " + stack_->ChTable());
        testing::BackgroundRelay relay(stack_->Config());
        const std::string db = stack_->DatabaseName();
        std::string stage;
        ASSERT_TRUE(testing::WaitUntil(
            [&] {
                stage = stack_->ChQuery("SELECT name FROM system.tables WHERE database = '" + db +
                                        "' AND name LIKE 'eventlog_stage_%' AND engine = 'Null'");
                return !stage.empty();
            },
            std::chrono::seconds(10)));
        stage.erase(stage.find_last_not_of('\n') + 1);
        ASSERT_EQ(stage.find('\n'), std::string::npos) << "more than one stage: " << stage;
        stack_->Ch().Execute("CREATE MATERIALIZED VIEW `" + db + "`.`" + view + "` ENGINE = Memory AS SELECT " +
                             "throwIf(event_type = 'poison_event') AS poisoned FROM `" + db + "`.`" + stage + "`");
        std::string id;
        {
            pg::Transaction tx(stack_->Producer());
            id = std::string(tx.Exec("SELECT eventlog.emit('PoisonEvent', '{}'::json)::text").Get(0, 0));
            tx.Commit();
        }
        const auto rows = [&] {
            return stack_->ChCount("SELECT count() FROM " + stack_->ChTable() + " WHERE event_id = toUUID('" + id +
                                   "')");
        };
        ASSERT_TRUE(testing::WaitUntil([&] { return stack_->PendingEvents() == 0; }, std::chrono::seconds(30)))
            << "the event is still pending";
        const relay::Stats stats = relay.Stop();
        EXPECT_EQ(relay.Error(), "");
        EXPECT_GT(stats.retries, 0) << "the view never threw: the test walked nothing";
        stack_->Ch().Execute("DROP TABLE `" + db + "`.`" + view + "`");
        const auto dead = stack_->PgCount("SELECT count(*) FROM eventlog.dead_letter");
        const bool stored_first = view == "zz_poison_view";
        EXPECT_EQ(rows(), stored_first ? 1 : 0);
        EXPECT_EQ(dead, stored_first ? 0 : 1) << "a stored row was dead-lettered, or a missing one was not";
        outbox::ReplayDeadLetters(stack_->Pg(), {});
        stack_->Drain();
        EXPECT_EQ(rows(), 1) << "after the replay";
        EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.dead_letter"), 0);
    }
}

/// Rows ClickHouse cannot store. Producers are refused such a date since migration 0017; the outbox's constraint is
/// dropped here to stand for rows written before it (NOT VALID keeps them), which the relay must still dead-letter.
class UnencodableTest : public StackTest {
protected:
    void SetUp() override {
        StackTest::SetUp();
        stack_->Pg().Exec(
            "ALTER TABLE eventlog.outbox DROP CONSTRAINT \"event_date_time: expected 1970-01-01 to "
            "2106-02-07T06:28:15Z\"");
    }
};

TEST_F(UnencodableTest, OutOfRangeTimestampIsDeadLetteredNamingTheColumn) {
    // DateTime holds 1970..2106 (18.16); DateTime64 1900..2299 (modern servers).
    const bool dt64 = stack_->Ch().SupportsDateTime64();
    const std::string bad_time = dt64 ? "2300-01-01 00:00:00+00" : "2200-01-01 00:00:00+00";
    std::vector<std::string> good;
    std::string bad;
    {
        pg::Transaction tx(stack_->Producer());
        for (int i = 0; i < 5; ++i) {
            if (i == 2) {
                bad = std::string(tx.Exec("SELECT eventlog.emit('FarFuture', '{\"i\": 2}'::json, event_date_time => '" +
                                          bad_time + "')")
                                      .Get(0, 0));
            }
            good.emplace_back(
                tx.Exec("SELECT eventlog.emit('Normal', '{\"i\": " + std::to_string(i) + "}'::json)").Get(0, 0));
        }
        tx.Commit();
    }
    const relay::Stats stats = stack_->Drain();
    EXPECT_EQ(stats.delivered, 5);
    EXPECT_EQ(stats.dead_lettered, 1);
    EXPECT_EQ(CountAndUnique(*stack_), Pair(5));
    EXPECT_EQ(stack_->ChCount("SELECT count() FROM " + stack_->ChTable() + " WHERE event_type = 'normal'"), 5);

    const auto dead = outbox::ListDeadLetters(stack_->Pg());
    ASSERT_EQ(dead.size(), 1u);
    EXPECT_EQ(dead[0].event_id, bad);
    EXPECT_EQ(dead[0].event_type, "FarFuture");  // as written (the relay converts a name only for ClickHouse)
    EXPECT_THAT(dead[0].event_date_time, HasSubstr(dt64 ? "2300-01-01T00:00:00" : "2200-01-01T00:00:00"));
    EXPECT_THAT(dead[0].error, HasSubstr("event_date_time"));
    EXPECT_THAT(dead[0].error, HasSubstr(dt64 ? "DateTime64" : "DateTime"));
    EXPECT_GE(dead[0].attempts, 1);
    EXPECT_EQ(stack_->PendingEvents(), 0);
}

/// Creates the target table again as `eventlog migrate` does: its bookkeeping is dropped first, so that migration
/// 0001 runs again (CREATE ... IF NOT EXISTS), rendered by the same code.
void RecreateEventLog(TestStack& stack) {
    stack.Ch().Execute("DROP TABLE IF EXISTS " + clickhouse::QuoteIdentifier(stack.DatabaseName()) +
                       ".eventlog_migrations");
    const auto report = outbox::MigrateClickHouse(stack.Ch(), stack.Config().clickhouse);
    if (report.applied.size() != 1) throw std::runtime_error("migration 0001 did not run again");
}

// Known bug (src/relay/relay.cpp, Relay::Impl::Acknowledge): when two outbox rows of one batch share an event_id
// and both are dead-lettered, the dead-letter INSERT ... SELECT ... ON CONFLICT (event_id) DO UPDATE proposes the
// same event_id twice in one command; PostgreSQL raises SQLSTATE 21000 ("cannot affect row a second time"), which
// is classified fatal, so Run() throws, and every restart recovers the same batch and dies again: one duplicated
// poison event halts all delivery. Enable once the statement picks a single row per event_id.
TEST_F(UnencodableTest, DuplicateEventIdPoisonIsDeadLetteredOnce) {
    const std::string id = "3f2504e0-4f89-41d3-9a0c-0305e82c3399";
    const std::string bad_time =
        stack_->Ch().SupportsDateTime64() ? "2300-01-01 00:00:00+00" : "2200-01-01 00:00:00+00";
    for (int i = 0; i < 2; ++i) {
        stack_->Producer().Exec("SELECT eventlog.emit('FarFuture', '{}'::json, event_id => '" + id +
                                "', event_date_time => '" + bad_time + "')");
    }
    stack_->Producer().Exec("SELECT eventlog.emit('Normal', '{}'::json)");
    const relay::Stats stats = stack_->Drain();
    EXPECT_EQ(stats.delivered, 1);
    const auto dead = outbox::ListDeadLetters(stack_->Pg());
    ASSERT_EQ(dead.size(), 1u);
    EXPECT_EQ(dead[0].event_id, id);
    EXPECT_EQ(stack_->ChCount("SELECT count() FROM " + stack_->ChTable()), 1);
    EXPECT_EQ(stack_->PendingEvents(), 0);
}

class MissingTableTest : public StackTest {};

TEST_F(MissingTableTest, RelayPausesWithoutLosingDataAndResumesWhenTheTableIsBack) {
    stack_->Ch().Execute("DROP TABLE " + stack_->ChTable());
    std::vector<Uuid> ids;
    {
        pg::Transaction tx(stack_->Pg());
        std::vector<Event> events;
        for (int i = 0; i < 10; ++i) events.push_back(MakeEvent("WhileMissing", R"({"i":)" + std::to_string(i) + "}"));
        ids = outbox::EmitMany(tx, std::move(events));
        tx.Commit();
    }

    BackgroundRelay relay(stack_->Config());
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    EXPECT_EQ(relay.Error(), "");
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.dead_letter"), 0);
    EXPECT_EQ(stack_->PendingEvents(), 10);

    RecreateEventLog(*stack_);
    const bool arrived =
        testing::WaitUntil([&] { return stack_->ChCount("SELECT count() FROM " + stack_->ChTable()) >= 10; },
                           std::chrono::seconds(20), std::chrono::milliseconds(50));
    EXPECT_TRUE(arrived);
    EXPECT_TRUE(testing::WaitUntil([&] { return stack_->PendingEvents() == 0; }, std::chrono::seconds(5)));
    const relay::Stats stats = relay.Stop();
    EXPECT_EQ(relay.Error(), "");
    EXPECT_EQ(stats.delivered, 10);
    EXPECT_GT(stats.retries, 0);
    EXPECT_EQ(CountAndUnique(*stack_), Pair(10));
    EXPECT_EQ(stack_->ChCount("SELECT count() FROM " + stack_->ChTable() + " WHERE event_type = 'while_missing'"), 10);
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.dead_letter"), 0);
}

TEST_F(MissingTableTest, TableDroppedUnderARunningRelayPausesTheClaimedBatch) {
    BackgroundRelay relay(stack_->Config());
    // Let it plan the encoder against the existing table and go idle.
    {
        pg::Transaction tx(stack_->Pg());
        outbox::Emit(tx, MakeEvent("BeforeDrop", R"({"i":0})"));
        tx.Commit();
    }
    ASSERT_TRUE(testing::WaitUntil([&] { return stack_->ChCount("SELECT count() FROM " + stack_->ChTable()) == 1; },
                                   std::chrono::seconds(10)));
    stack_->Ch().Execute("DROP TABLE " + stack_->ChTable());
    {
        pg::Transaction tx(stack_->Pg());
        std::vector<Event> events;
        for (int i = 0; i < 10; ++i) events.push_back(MakeEvent("AfterDrop", R"({"i":)" + std::to_string(i) + "}"));
        outbox::EmitMany(tx, std::move(events));
        tx.Commit();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    EXPECT_EQ(relay.Error(), "");
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.dead_letter"), 0);
    EXPECT_EQ(stack_->PendingEvents(), 10);

    RecreateEventLog(*stack_);
    EXPECT_TRUE(testing::WaitUntil([&] { return stack_->PendingEvents() == 0; }, std::chrono::seconds(20),
                                   std::chrono::milliseconds(50)));
    relay.Stop();
    EXPECT_EQ(relay.Error(), "");
    EXPECT_EQ(CountAndUnique(*stack_), Pair(10));
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.dead_letter"), 0);
}

}  // namespace
}  // namespace eventlog
