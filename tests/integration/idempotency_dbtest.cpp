// Exact idempotency on every producer path, against real servers (label db). Interleavings walked here:
// 1. The same event_id emitted twice while the first copy is still pending: the second is stored nowhere.
// 2. A retry that arrives after the first copy was delivered to ClickHouse: still a duplicate.
// 3. COPY (EmitMany) with an id accepted earlier and an id repeated inside the batch.
// 4. Two transactions emit the same id at once: the second waits for the first; after its commit the second is a
//    duplicate, after its rollback the second is accepted.
// 5. An id past IDEMPOTENCY_WINDOW is pruned by the relay and may be accepted again.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <eventlog/outbox/outbox.hpp>
#include <eventlog/pg/connection.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support/test_env.hpp"

namespace eventlog {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::StackTest;
using testing::TestStack;

class IdempotencyTest : public StackTest {
protected:
    /// emit_checked() as the producer role: "t" when accepted, "f" for a duplicate.
    std::string EmitChecked(pg::Connection& session, const std::string& id, const std::string& context = "{}") {
        const auto r =
            session.Exec("SELECT id::text, accepted FROM eventlog.emit_checked('idempotency_test', $2::json, $1::uuid)",
                         {id, context});
        EXPECT_EQ(r.Get(0, 0), id);
        return std::string(r.Get(0, 1));
    }

    std::string CountAndUnique() {
        return stack_->ChQuery("SELECT count(), uniqExact(event_id) FROM " + stack_->ChTable());
    }

    std::int64_t Pending(const std::string& id) {
        return stack_->PgCount("SELECT count(*) FROM eventlog.outbox WHERE event_id = '" + id + "'");
    }
};

constexpr const char* kId = "6f1c2a3e-0000-4000-8000-000000000001";

TEST_F(IdempotencyTest, ASecondEmitWhileTheFirstIsPendingIsStoredNowhere) {
    EXPECT_EQ(EmitChecked(stack_->Producer(), kId, R"({"copy":1})"), "t");
    EXPECT_EQ(EmitChecked(stack_->Producer(), kId, R"({"copy":2})"), "f");
    // emit() keeps its contract: it returns the id, duplicate or not, and stores nothing more.
    EXPECT_EQ(stack_->Producer()
                  .Exec("SELECT eventlog.emit('idempotency_test', '{}'::json, $1::uuid)::text", {kId})
                  .Get(0, 0),
              kId);
    EXPECT_EQ(Pending(kId), 1);
    EXPECT_EQ(stack_->Drain().delivered, 1);
    EXPECT_EQ(CountAndUnique(), "1\t1\n");
    EXPECT_EQ(stack_->ChQuery("SELECT event_context FROM " + stack_->ChTable()), "{\"copy\":1}\n");
}

TEST_F(IdempotencyTest, ARetryAfterTheFirstCopyWasDeliveredIsADuplicate) {
    EXPECT_EQ(EmitChecked(stack_->Producer(), kId), "t");
    EXPECT_EQ(stack_->Drain().delivered, 1);
    EXPECT_EQ(CountAndUnique(), "1\t1\n");
    EXPECT_EQ(EmitChecked(stack_->Producer(), kId), "f");
    {
        pg::Transaction tx(stack_->Pg());
        Event e;
        e.event_id = *Uuid::Parse(kId);
        e.event_type = "idempotency_test";
        e.event_context = "{}";
        outbox::Emit(tx, e);
        tx.Commit();
    }
    EXPECT_EQ(Pending(kId), 0);
    stack_->Drain();
    EXPECT_EQ(CountAndUnique(), "1\t1\n");
}

TEST_F(IdempotencyTest, CopyWritesOnlyIdsNotAcceptedBeforeNorEarlierInTheBatch) {
    EXPECT_EQ(EmitChecked(stack_->Producer(), kId), "t");
    const std::string fresh = "6f1c2a3e-0000-4000-8000-000000000002";
    std::vector<Event> events(3);
    for (auto& e : events) {
        e.event_type = "idempotency_copy";
        e.event_context = "{}";
    }
    events[0].event_id = *Uuid::Parse(kId);    // accepted before, through emit()
    events[1].event_id = *Uuid::Parse(fresh);  // new
    events[2].event_id = *Uuid::Parse(fresh);  // repeated within the batch
    std::vector<bool> accepted;
    {
        pg::Transaction tx(stack_->Pg());
        const auto ids = outbox::EmitMany(tx, events, &accepted);
        tx.Commit();
        EXPECT_EQ(ids.size(), 3u);
    }
    EXPECT_THAT(accepted, ::testing::ElementsAre(false, true, false));
    EXPECT_EQ(Pending(kId), 1);
    EXPECT_EQ(Pending(fresh), 1);
    EXPECT_EQ(stack_->Drain().delivered, 2);
    EXPECT_EQ(CountAndUnique(), "2\t2\n");
}

TEST_F(IdempotencyTest, OfTwoConcurrentCopiesTheSecondWaitsForTheFirstsOutcome) {
    for (const bool first_commits : {true, false}) {
        SCOPED_TRACE(first_commits ? "first commits" : "first rolls back");
        const std::string id =
            first_commits ? "6f1c2a3e-0000-4000-8000-000000000003" : "6f1c2a3e-0000-4000-8000-000000000004";
        auto first = stack_->OpenPg();
        first.Exec("BEGIN");
        EXPECT_EQ(EmitChecked(first, id), "t");
        std::atomic<bool> done{false};
        std::string second_result;
        std::thread second([&] {
            auto session = stack_->OpenPg();
            second_result = EmitChecked(session, id);
            done.store(true);
        });
        std::this_thread::sleep_for(milliseconds(300));
        EXPECT_FALSE(done.load()) << "the second copy did not wait for the first transaction";
        first.Exec(first_commits ? "COMMIT" : "ROLLBACK");
        second.join();
        EXPECT_EQ(second_result, first_commits ? "f" : "t");
        EXPECT_EQ(Pending(id), 1);
    }
}

class IdempotencyWindowTest : public StackTest {
protected:
    TestStack::Options StackOptions() override { return {.overrides = {{"IDEMPOTENCY_WINDOW", "3600"}}}; }
};

TEST_F(IdempotencyWindowTest, AnIdPastTheWindowIsPrunedAndMayBeAcceptedAgain) {
    const std::string recent = "6f1c2a3e-0000-4000-8000-000000000005";
    stack_->Producer().Exec("SELECT eventlog.emit('window_test', '{}'::json, $1::uuid)", {kId});
    stack_->Producer().Exec("SELECT eventlog.emit('window_test', '{}'::json, $1::uuid)", {recent});
    // kId was accepted two hours ago: past the one-hour window; `recent` is inside it.
    stack_->Pg().Exec("UPDATE eventlog.event_ids SET accepted_at = now() - interval '2 hours' WHERE event_id = $1",
                      {kId});
    EXPECT_EQ(stack_->Drain().delivered, 2);  // the relay prunes on its recovery pass
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.event_ids"), 1);
    EXPECT_EQ(stack_->Producer()
                  .Exec("SELECT accepted FROM eventlog.emit_checked('window_test', '{}'::json, $1::uuid)", {kId})
                  .Get(0, 0),
              "t");
    EXPECT_EQ(stack_->Producer()
                  .Exec("SELECT accepted FROM eventlog.emit_checked('window_test', '{}'::json, $1::uuid)", {recent})
                  .Get(0, 0),
              "f");
}

}  // namespace
}  // namespace eventlog
