// Upgrading a live system to storage v2 (migration 0018) against real servers (label db): the version before's schema
// holds pending events, a record in flight of a relay that died, and a dead letter, while producers keep writing
// events with their own ids through `eventlog migrate`; then a relay of this version starts. Every acknowledged event
// must be in ClickHouse exactly once, the dead letter still replayable, and a relay of the version before (its claim
// deletes outbox rows) must fail to claim on the new outbox instead of taking rows away.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <eventlog/core/error.hpp>
#include <eventlog/core/uuid.hpp>
#include <eventlog/outbox/dead_letters.hpp>
#include <eventlog/outbox/migrate.hpp>
#include <eventlog/outbox/outbox.hpp>
#include <eventlog/pg/connection.hpp>
#include <iostream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "outbox/migrations_embedded.hpp"
#include "support/test_env.hpp"

namespace eventlog {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::BackgroundRelay;
using testing::StackTest;
using testing::TestStack;
using testing::WaitUntil;

class UpgradeTest : public StackTest {
protected:
    TestStack::Options StackOptions() override { return {.overrides = {}, .migrate = false}; }

    /// The PostgreSQL schema of an earlier version: the embedded migrations before `first_new`, recorded as applied.
    void MigrateBefore(std::string_view first_new) {
        auto& pg = stack_->Pg();
        pg.Exec(
            "CREATE SCHEMA IF NOT EXISTS eventlog; CREATE TABLE IF NOT EXISTS eventlog.schema_migrations (name text "
            "PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())");
        for (const auto& m : outbox::detail::EmbeddedMigrations()) {
            if (m.engine != "postgres" || m.name >= first_new) continue;
            pg::Transaction tx(pg);
            tx.Exec(m.sql);
            tx.Exec("INSERT INTO eventlog.schema_migrations (name) VALUES ($1)", {std::string(m.name)});
            tx.Commit();
        }
        outbox::MigrateClickHouse(stack_->Ch(), stack_->Config().clickhouse);
    }
};

TEST_F(UpgradeTest, ALiveSystemUpgradesUnderLoadLosingAndDuplicatingNothing) {
    MigrateBefore("0018");
    std::set<std::string> acknowledged;  // every event id whose emit() returned
    std::mutex mutex;
    const auto emit = [&](pg::Connection& session, const std::string& id) {
        session.Exec("SELECT eventlog.emit('upgrade_event', '{}'::json, $1::uuid)", {id});
        std::lock_guard lock(mutex);
        acknowledged.insert(id);
    };
    for (int i = 0; i < 300; ++i) emit(stack_->Producer(), Uuid::Random().ToString());
    // A relay of the version before died holding a record of 100 of them, and one event is a dead letter.
    stack_->Pg().Exec(
        "WITH moved AS (DELETE FROM eventlog.outbox WHERE id IN (SELECT id FROM eventlog.outbox ORDER BY id LIMIT "
        "100) RETURNING *) INSERT INTO eventlog.delivery (batch_id, owner, events) SELECT gen_random_uuid(), 5151, "
        "array_agg(ROW(m.*)::eventlog.pending_event ORDER BY m.id) FROM moved m");
    ASSERT_EQ(stack_->PgCount("SELECT cardinality(events) FROM eventlog.delivery"), 100);
    const std::string dead = Uuid::Random().ToString();
    stack_->Pg().Exec(
        "INSERT INTO eventlog.dead_letter (event_id, event_type, event_date_time, event_context, metadata_version, "
        "enqueued_at, error, attempts) VALUES ($1::uuid, 'upgrade_dead', now(), '{}', 1, now(), 'Code: 27', 5)",
        {dead});

    // Producers keep writing through the migration; a call that fails is sent again with the same id.
    std::atomic<bool> producing{true};
    std::atomic<int> retried{0};
    std::vector<std::thread> producers;
    for (int p = 0; p < 3; ++p) {
        producers.emplace_back([&] {
            auto session = stack_->OpenPg();
            while (producing.load()) {
                const std::string id = Uuid::Random().ToString();
                for (;;) {
                    try {
                        emit(session, id);
                        break;
                    } catch (const Error&) {
                        ++retried;
                        if (!session.Healthy()) session = stack_->OpenPg();
                    }
                }
            }
        });
    }
    std::this_thread::sleep_for(milliseconds(300));
    const auto report = outbox::MigratePostgres(stack_->Pg());
    // 0019 and 0020 (the admin console's tables and functions), 0021 (range_rows_in(): reads of only their
    // partitions) and 0022 (a chunk's ClickHouse node on a cluster) come along; they change nothing 0018's protocol
    // rests on.
    EXPECT_THAT(report.applied, ::testing::ElementsAre("postgres/0018_outbox_ranges", "postgres/0019_admin_console",
                                                       "postgres/0020_console_pages", "postgres/0021_range_pruning",
                                                       "postgres/0022_chunk_targets"));
    std::this_thread::sleep_for(milliseconds(300));

    // A relay of the version before claims by deleting outbox rows: on the new outbox it is refused, and takes none.
    {
        pg::ConnectOptions options;
        options.conninfo = stack_->Config().postgres.ConnInfo();  // the relay's role
        auto old_relay = pg::Connection::Open(options);
        try {
            old_relay.Exec("DELETE FROM eventlog.outbox WHERE id IN (SELECT id FROM eventlog.outbox LIMIT 10)");
            ADD_FAILURE() << "a relay of the version before could delete rows of the new outbox";
        } catch (const Error& e) {
            EXPECT_THAT(e.what(), ::testing::HasSubstr("42501"));
        }
    }

    // The relay of this version starts while the load goes on.
    {
        BackgroundRelay relay(stack_->Config());
        std::this_thread::sleep_for(milliseconds(1000));
        producing.store(false);
        for (auto& t : producers) t.join();
        EXPECT_TRUE(WaitUntil([&] { return stack_->PendingEvents() == 0; }, seconds(60)));
        EXPECT_TRUE(
            WaitUntil([&] { return stack_->PgCount("SELECT count(*) FROM eventlog.in_flight") == 0; }, seconds(30)));
        relay.Stop();
        EXPECT_EQ(relay.Error(), "");
    }
    EXPECT_EQ(outbox::ReplayDeadLetters(stack_->Pg(), {}), 1);
    stack_->Drain();

    std::cout << acknowledged.size() << " events acknowledged across the upgrade, " << retried.load()
              << " producer calls sent again\n";
    EXPECT_EQ(stack_->CheckRanges(true), "");
    const auto rows =
        stack_->Ch().Query("SELECT toString(event_id) FROM " + stack_->ChTable() + " FORMAT TabSeparated");
    std::multiset<std::string> delivered;
    std::size_t start = 0;
    while (start < rows.size()) {
        const auto end = rows.find('\n', start);
        delivered.insert(rows.substr(start, end - start));
        start = end + 1;
    }
    std::set<std::string> expected = acknowledged;
    expected.insert(dead);
    EXPECT_EQ(delivered.size(), expected.size()) << "events lost or delivered twice";
    EXPECT_EQ(std::set<std::string>(delivered.begin(), delivered.end()), expected);
}

}  // namespace
}  // namespace eventlog
