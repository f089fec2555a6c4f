// End-to-end delivery through real servers, in process: producer APIs (C++ and SQL) -> eventlog.outbox ->
// relay::Relay -> ClickHouse event_log. Servers from EVENTLOG_TEST_PG_DSN / EVENTLOG_TEST_CH_URL (see
// tests/support/test_env.hpp); each test gets fresh databases.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <eventlog/core/error.hpp>
#include <eventlog/core/event.hpp>
#include <eventlog/core/json.hpp>
#include <eventlog/outbox/dead_letters.hpp>
#include <eventlog/outbox/outbox.hpp>
#include <eventlog/pg/connection.hpp>
#include <eventlog/relay/relay.hpp>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "support/test_env.hpp"

namespace eventlog {
namespace {

using ::testing::HasSubstr;
using testing::StackTest;
using testing::TestStack;

constexpr std::string_view kZeroUuid = "00000000-0000-0000-0000-000000000000";

// 2024-03-04 05:06:07.123456 UTC.
constexpr std::int64_t kFixedMicros = 1709528767123456;

Event MakeEvent(std::string type, std::string context) {
    Event event;
    event.event_type = std::move(type);
    event.event_context = std::move(context);
    return event;
}

std::vector<Event> ManyEvents(int n) {
    std::vector<Event> events;
    events.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        events.push_back(MakeEvent("BulkEvent", R"({"n":)" + std::to_string(i) + R"(,"pad":"xxxxxxxxxxxxxxxxxxxx"})"));
    }
    return events;
}

std::vector<std::string> Split(const std::string& line, char sep = '\t') {
    std::vector<std::string> out;
    std::string current;
    for (const char c : line) {
        if (c == sep) {
            out.push_back(current);
            current.clear();
        } else if (c != '\n') {
            current.push_back(c);
        }
    }
    out.push_back(current);
    return out;
}

class OutboxRelayTest : public StackTest {};

TEST_F(OutboxRelayTest, EmitThenDrainDeliversExactlyThatRow) {
    Event event = MakeEvent("UserCreated", R"({"email":"a@b.c", "first_name":"A","last_name":"B"})");
    event.event_date_time_us = kFixedMicros;
    Uuid id;
    {
        pg::Transaction tx(stack_->Pg());
        id = outbox::Emit(tx, event);
        tx.Commit();
    }
    ASSERT_NE(id, Uuid{});
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.outbox"), 1);

    const relay::Stats stats = stack_->Drain();
    EXPECT_EQ(stats.delivered, 1);
    EXPECT_EQ(stats.batches, 1);
    EXPECT_EQ(stats.dead_lettered, 0);

    const std::string rows = stack_->ChQuery(
        "SELECT toString(event_id), event_type, toString(event_date_time), environment, event_context, "
        "metadata_version, toString(batch_id), trace_id FROM " +
        stack_->ChTable());
    const auto fields = Split(rows);
    ASSERT_EQ(fields.size(), 8u) << rows;
    EXPECT_EQ(fields[0], id.ToString());
    EXPECT_EQ(fields[1], "user_created");
    const bool dt64 = stack_->Ch().SupportsDateTime64();
    EXPECT_EQ(fields[2], dt64 ? "2024-03-04 05:06:07.123456" : "2024-03-04 05:06:07");
    EXPECT_EQ(fields[3], "integration_test");  // ENVIRONMENT of the relay's config
    EXPECT_EQ(fields[4], R"({"email":"a@b.c","first_name":"A","last_name":"B"})");
    EXPECT_EQ(fields[5], "1");
    EXPECT_NE(fields[6], kZeroUuid);
    EXPECT_TRUE(Uuid::Parse(fields[6]).has_value()) << fields[6];
    EXPECT_EQ(fields[7], "");
    EXPECT_EQ(rows.find('\n'), rows.size() - 1) << "exactly one row expected: " << rows;

    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.outbox_pending"), 0);
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.in_flight"), 0);
    EXPECT_EQ(stack_->CheckRanges(true), "");
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.dead_letter"), 0);
}

TEST_F(OutboxRelayTest, SqlEmitDeliversMinifiedContextInKeyOrder) {
    const std::string id = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
    const auto r = stack_->Producer().Exec(
        "SELECT eventlog.emit('OrderPlaced', '{\"b\": 1,  \"a\": [1, 2]}'::json, event_id => '" + id +
        "'::uuid, environment => 'prod', metadata_version => 3)");
    ASSERT_EQ(r.Rows(), 1);
    EXPECT_EQ(r.Get(0, 0), id);

    stack_->Drain();
    const std::string rows = stack_->ChQuery(
        "SELECT toString(event_id), event_type, environment, event_context, "
        "metadata_version FROM " +
        stack_->ChTable());
    EXPECT_EQ(rows, id + "\torder_placed\tprod\t{\"b\":1,\"a\":[1,2]}\t3\n");
    EXPECT_EQ(stack_->PendingEvents(), 0);
}

TEST_F(OutboxRelayTest, SqlEmitRejectsBadInputNamingTheFieldAndWritesNothing) {
    try {
        stack_->Producer().Exec("SELECT eventlog.emit('  ', '{}'::json)");
        FAIL() << "empty event_type was accepted";
    } catch (const InvalidInputError& e) {
        EXPECT_THAT(e.what(), HasSubstr("event_type: expected a non-empty event name"));
        EXPECT_THAT(e.what(), HasSubstr("22023"));
    }
    try {
        stack_->Producer().Exec("SELECT eventlog.emit('OrderPlaced', '[1, 2]'::json)");
        FAIL() << "a JSON array was accepted as event_context";
    } catch (const InvalidInputError& e) {
        EXPECT_THAT(e.what(), HasSubstr("event_context"));
    }
    try {
        stack_->Producer().Exec("SELECT eventlog.emit('OrderPlaced', '{}'::json, metadata_version => -1)");
        FAIL() << "a negative metadata_version was accepted";
    } catch (const InvalidInputError& e) {
        EXPECT_THAT(e.what(), HasSubstr("metadata_version"));
    }
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.outbox"), 0);
    stack_->Drain();
    EXPECT_EQ(stack_->ChCount("SELECT count() FROM " + stack_->ChTable()), 0);
}

// One set of rules on every path (migration 0013): the C++ checks (Normalize, LimitViolation) and emit()'s, whose
// limits a trigger on eventlog.limits writes into its body, accept exactly the same events, for random names,
// contexts and field sizes around small limits (changed through eventlog.limits, as an admin would). The context is
// measured as stored: C++ writes it minified, so SQL is given the text C++ would write (or the raw text when C++ finds
// it is not JSON). Every accepted name then reaches ClickHouse as ToSnakeCase of the name as written.
TEST_F(OutboxRelayTest, TheCppChecksAndTheSqlChecksAcceptTheSameEvents) {
    stack_->Pg().Exec(
        "UPDATE eventlog.limits SET max_event_type_bytes = 12, max_context_bytes = 30, max_environment_bytes = 6, "
        "max_trace_id_bytes = 8");
    const outbox::Limits limits = outbox::ReadLimits(stack_->Pg());
    const std::string names[] = {"", " ", "\t", "-", ".", "User", "Created", "HTTP", "x", "_", "\xc3\xa9", "Id2"};
    const std::string contexts[] = {"{}", "{\"a\": 1}", "[1]", "\"s\"", "{\"a\":", "7", "{ }"};
    std::uint32_t state = 2026;
    const auto next = [&state] {
        state = state * 1664525u + 1013904223u;
        return state >> 8;
    };
    int accepted = 0;
    int refused = 0;
    std::vector<std::pair<std::string, std::string>> ids_and_names;
    for (int round = 0; round < 600; ++round) {
        Event e;
        for (std::uint32_t i = next() % 6; i > 0; --i) e.event_type += names[next() % std::size(names)];
        if (next() % 3 == 0) {
            e.event_context = "{\"k\": \"" + std::string(next() % 30, 'v') + "\"}";
        } else {
            e.event_context = contexts[next() % std::size(contexts)];
        }
        e.environment = std::string(next() % 9, 'e');
        e.trace_id = std::string(next() % 11, 't');
        e.span_id = std::string(next() % 11, 's');
        bool cpp_ok = true;
        std::string stored_context = e.event_context;
        try {
            const Event normal = outbox::Normalize(e);
            stored_context = normal.event_context;
            cpp_ok = !outbox::LimitViolation(normal, limits).has_value();
        } catch (const InvalidInputError&) {
            cpp_ok = false;
        }
        bool sql_ok = true;
        std::string sql_error;
        std::string id;
        pg::Connection& producer = stack_->Producer();
        try {
            id = producer
                     .Exec("SELECT eventlog.emit($1, $2::json, environment => $3, trace_id => $4, span_id => $5)",
                           {e.event_type, stored_context,
                            e.environment.empty() ? pg::Param{} : pg::Param{e.environment}, e.trace_id, e.span_id})
                     .Get(0, 0);
        } catch (const InvalidInputError& error) {
            sql_ok = false;
            sql_error = error.what();
        }
        ASSERT_EQ(cpp_ok, sql_ok) << "type \"" << e.event_type << "\" context " << stored_context << " environment "
                                  << e.environment.size() << " trace_id " << e.trace_id.size() << " span_id "
                                  << e.span_id.size() << ": " << sql_error;
        if (sql_ok) {
            ++accepted;
            ids_and_names.emplace_back(id, ToSnakeCase(e.event_type));
        } else {
            ++refused;
        }
    }
    EXPECT_GT(accepted, 100);  // both outcomes are walked many times
    EXPECT_GT(refused, 100);
    stack_->Pg().Exec(
        "UPDATE eventlog.limits SET max_event_type_bytes = 200, max_context_bytes = 1048576, "
        "max_environment_bytes = 200, max_trace_id_bytes = 128");
    EXPECT_EQ(stack_->Drain().delivered, accepted);
    const std::string stored = stack_->ChQuery("SELECT toString(event_id), event_type FROM " + stack_->ChTable() +
                                               " ORDER BY toString(event_id)");
    std::sort(ids_and_names.begin(), ids_and_names.end());
    std::string expected;
    for (const auto& [id, name] : ids_and_names) expected += id + "\t" + name + "\n";
    EXPECT_EQ(stored, expected);
}

TEST_F(OutboxRelayTest, CppEmitRejectsBadInputNamingTheField) {
    pg::Transaction tx(stack_->Pg());
    try {
        outbox::Emit(tx, MakeEvent("", R"({"a":1})"));
        FAIL() << "empty event_type was accepted";
    } catch (const InvalidInputError& e) {
        EXPECT_EQ(e.Field(), "event_type");
    }
    try {
        outbox::Emit(tx, MakeEvent("X", R"("just a string")"));
        FAIL() << "a JSON string was accepted as event_context";
    } catch (const InvalidInputError& e) {
        EXPECT_EQ(e.Field(), "event_context");
    }
    try {
        outbox::Emit(tx, MakeEvent("X", R"({"a":)"));
        FAIL() << "truncated JSON was accepted";
    } catch (const InvalidInputError& e) {
        EXPECT_EQ(e.Field(), "event_context");
    }
    tx.Commit();
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.outbox"), 0);
}

// Dates ClickHouse cannot store (DateTime: 1970-01-01T00:00:00Z to 2106-02-07T06:28:15Z) are refused on every path,
// naming the field, and the C++ rule (kMin/kMaxEventTimeMicros) and the outbox's constraint (migration 0017) agree
// at both bounds: before, 2200-01-01 was accepted by emit() and by C++ and dead-lettered by the relay. What is
// accepted reaches ClickHouse with nothing dead-lettered, and a dead letter out of range stays one on a replay.
TEST_F(OutboxRelayTest, EveryPathRefusesADateClickHouseCannotStoreAndTheBoundsAgree) {
    struct Case {
        const char* text;
        std::int64_t micros;
    };
    const Case cases[] = {
        {"1969-12-31T23:59:59.999999Z", -1},
        {"1970-01-01T00:00:00.000001Z", 1},
        {"2024-05-01T12:00:00Z", 1'714'564'800'000'000},
        {"2106-02-07T06:28:15.999999Z", kMaxEventTimeMicros},
        {"2106-02-07T06:28:16Z", kMaxEventTimeMicros + 1},
        {"2200-01-01T00:00:00Z", 7'258'118'400'000'000},
        {"1900-01-01T00:00:00Z", -2'208'988'800'000'000},
    };
    int accepted = 0;
    for (const auto& c : cases) {
        const bool inside = c.micros >= kMinEventTimeMicros && c.micros <= kMaxEventTimeMicros;
        bool sql_ok = true;
        try {
            stack_->Producer().Exec("SELECT eventlog.emit('Dated', '{}'::json, event_date_time => $1::timestamptz)",
                                    {std::string(c.text)});
        } catch (const InvalidInputError& e) {
            sql_ok = false;
            EXPECT_THAT(e.what(), HasSubstr("event_date_time: expected 1970-01-01 to 2106-02-07T06:28:15Z")) << c.text;
        }
        EXPECT_EQ(sql_ok, inside) << c.text;
        bool cpp_ok = true;
        {
            pg::Transaction tx(stack_->Pg());
            Event e = MakeEvent("Dated", "{}");
            e.event_date_time_us = c.micros;
            try {
                outbox::Emit(tx, e);
                tx.Commit();
            } catch (const InvalidInputError& error) {
                cpp_ok = false;
                EXPECT_EQ(error.Field(), "event_date_time") << c.text;
            }
        }
        EXPECT_EQ(cpp_ok, inside) << c.text;
        accepted += (sql_ok ? 1 : 0) + (cpp_ok ? 1 : 0);
    }
    EXPECT_EQ(accepted, 6);  // three times inside the range, by two paths
    // A COPY (EmitMany's path) and a direct INSERT meet the same constraint.
    EXPECT_THROW(stack_->Pg().Exec("INSERT INTO eventlog.outbox (event_type, event_context, event_date_time) "
                                   "VALUES ('Dated', '{}', '2106-02-07 06:28:16+00')"),
                 InvalidInputError);
    const auto stats = stack_->Drain();
    EXPECT_EQ(stats.delivered, 6);
    EXPECT_EQ(stats.dead_lettered, 0);
    // As seconds: 18.16 prints 0 as 0000-00-00 and a time in 2106 wrapped (its date table ends in 2105), though it
    // stores and compares them right.
    EXPECT_EQ(stack_->ChQuery("SELECT min(toUInt32(event_date_time)), max(toUInt32(event_date_time)) FROM " +
                              stack_->ChTable()),
              "0\t4294967295\n");
    // A dead letter from before the constraint (2200) stays where it is on a replay; the one in range moves.
    stack_->Pg().Exec(
        "INSERT INTO eventlog.dead_letter (event_id, event_type, event_date_time, event_context, metadata_version, "
        "enqueued_at, error, attempts) VALUES "
        "(gen_random_uuid(), 'Late', '2200-01-01 00:00:00+00', '{}', 1, now(), 'out of range', 1), "
        "(gen_random_uuid(), 'Fine', '2024-01-01 00:00:00+00', '{}', 1, now(), 'transient', 1)");
    EXPECT_EQ(outbox::ReplayDeadLetters(stack_->Pg(), {}), 1);
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.dead_letter WHERE event_type = 'Late'"), 1);
}

TEST_F(OutboxRelayTest, RolledBackTransactionsEmitNothing) {
    std::vector<Uuid> rolled_back;
    {
        pg::Transaction tx(stack_->Pg());
        rolled_back.push_back(outbox::Emit(tx, MakeEvent("RolledBack", R"({"api":"cpp-explicit"})")));
        tx.Rollback();
    }
    {
        pg::Transaction tx(stack_->Pg());
        rolled_back.push_back(outbox::Emit(tx, MakeEvent("RolledBack", R"({"api":"cpp-destructor"})")));
        // no Commit(): the destructor rolls back
    }
    {
        stack_->Producer().Exec("BEGIN");
        const auto r = stack_->Producer().Exec("SELECT eventlog.emit('RolledBack', '{\"api\":\"sql\"}'::json)");
        rolled_back.push_back(*Uuid::Parse(r.Get(0, 0)));
        stack_->Producer().Exec("ROLLBACK");
    }
    // A committed control event proves the relay did run.
    Uuid committed;
    {
        pg::Transaction tx(stack_->Pg());
        committed = outbox::Emit(tx, MakeEvent("Committed", R"({"api":"cpp"})"));
        tx.Commit();
    }
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.outbox"), 1);

    const relay::Stats stats = stack_->Drain();
    EXPECT_EQ(stats.delivered, 1);
    EXPECT_EQ(stack_->ChCount("SELECT count() FROM " + stack_->ChTable() + " WHERE event_type = 'rolled_back'"), 0);
    EXPECT_EQ(stack_->ChQuery("SELECT toString(event_id), event_type FROM " + stack_->ChTable()),
              committed.ToString() + "\tcommitted\n");
    EXPECT_EQ(stack_->PendingEvents(), 0);
}

TEST_F(OutboxRelayTest, EmitManyWithCopyDeliversEveryEventOnce) {
    constexpr int kEvents = 5000;
    std::vector<Uuid> ids;
    {
        pg::Transaction tx(stack_->Pg());
        ids = outbox::EmitMany(tx, ManyEvents(kEvents));
        tx.Commit();
    }
    ASSERT_EQ(ids.size(), static_cast<std::size_t>(kEvents));
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.outbox"), kEvents);
    EXPECT_EQ(stack_->PgCount("SELECT count(DISTINCT event_id) FROM eventlog.outbox"), kEvents);

    const relay::Stats stats = stack_->Drain();
    EXPECT_EQ(stats.delivered, kEvents);
    EXPECT_EQ(stats.dead_lettered, 0);
    EXPECT_EQ(stack_->ChQuery("SELECT count(), uniqExact(event_id) FROM " + stack_->ChTable()),
              std::to_string(kEvents) + "\t" + std::to_string(kEvents) + "\n");
    // The first and the last id as returned by EmitMany are there, with their payloads.
    EXPECT_EQ(stack_->ChQuery("SELECT event_context FROM " + stack_->ChTable() + " WHERE event_id = toUUID('" +
                              ids.back().ToString() + "')"),
              R"({"n":4999,"pad":"xxxxxxxxxxxxxxxxxxxx"})"
              "\n");
    EXPECT_EQ(stack_->ChCount("SELECT count() FROM " + stack_->ChTable() + " WHERE event_id = toUUID('" +
                              ids.front().ToString() + "')"),
              1);
    EXPECT_EQ(stack_->PendingEvents(), 0);
}

// The producing span's id (migration 0011) is stored by every producer path, bounded like the trace id, kept by
// a delivery record, and not a column of event_log: the relay turns it into span links (tests/e2e).
TEST_F(OutboxRelayTest, EveryProducerPathStoresTheProducingSpanIdWithinItsLimit) {
    const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    stack_->Producer().Exec("SELECT eventlog.emit('sql_emit', '{}'::json, trace_id => '" + trace +
                            "', span_id => '00f067aa0ba902b1')");
    stack_->Producer().Exec("SELECT eventlog.emit_checked('sql_checked', '{}'::json, span_id => '00f067aa0ba902b2')");
    stack_->Producer().Exec(
        "SELECT eventlog.emit_batch(ARRAY['sql_batch', 'sql_batch'], ARRAY['{}', '{}']::json[], NULL, NULL, NULL, "
        "NULL, NULL, ARRAY[NULL, '00f067aa0ba902b3'])");
    stack_->Producer().Exec("SELECT eventlog.emit('sql_seven_args', '{}'::json, NULL, NULL, NULL, 1, '" + trace +
                            "')");  // a call written before 0011
    {
        pg::Transaction tx(stack_->Pg());
        Event one = MakeEvent("cpp_emit", "{}");
        one.span_id = "00f067aa0ba902b4";
        outbox::Emit(tx, one);
        Event many = MakeEvent("cpp_emit_many", "{}");
        many.span_id = "00f067aa0ba902b5";
        outbox::EmitMany(tx, {many});
        tx.Commit();
    }
    const auto stored = stack_->Pg().Exec("SELECT event_type || ':' || span_id FROM eventlog.outbox ORDER BY id");
    std::string listed;
    for (int i = 0; i < stored.Rows(); ++i) listed += std::string(stored.Get(i, 0)) + "\n";
    EXPECT_EQ(listed,
              "sql_emit:00f067aa0ba902b1\nsql_checked:00f067aa0ba902b2\nsql_batch:\nsql_batch:00f067aa0ba902b3\n"
              "sql_seven_args:\ncpp_emit:00f067aa0ba902b4\ncpp_emit_many:00f067aa0ba902b5\n");

    stack_->Pg().Exec("UPDATE eventlog.limits SET max_trace_id_bytes = 16");
    const std::string long_span = "00f067aa0ba902b7x";
    for (const std::string& sql :
         {"SELECT eventlog.emit('x', '{}'::json, span_id => '" + long_span + "')",
          "SELECT eventlog.emit_batch(ARRAY['x'], ARRAY['{}']::json[], NULL, NULL, NULL, NULL, NULL, ARRAY['" +
              long_span + "'])"}) {
        try {
            stack_->Producer().Exec(sql);
            ADD_FAILURE() << "an oversize span_id was accepted: " << sql;
        } catch (const InvalidInputError& e) {
            EXPECT_THAT(e.what(), HasSubstr("span_id: expected at most 16 bytes")) << sql;
        }
    }
    Event over = MakeEvent("x", "{}");
    over.span_id = long_span;
    pg::Transaction tx(stack_->Pg());
    EXPECT_THROW(outbox::EmitMany(tx, {over}), InvalidInputError);
    tx.Rollback();
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.outbox"), 7);

    stack_->Pg().Exec("UPDATE eventlog.limits SET max_trace_id_bytes = 128");
    const relay::Stats stats = stack_->Drain();
    EXPECT_EQ(stats.delivered, 7);
    EXPECT_EQ(stack_->ChCount("SELECT count() FROM " + stack_->ChTable() + " WHERE trace_id = '" + trace + "'"), 2);
}

TEST_F(OutboxRelayTest, TwoConcurrentRelaysDeliverEachEventExactlyOnce) {
    // Enough for both to take part: with 20,000 one relay once drained them all before the other had started (an
    // ASan build on 2 cores while a docker build compiled beside it).
    constexpr int kEvents = 60000;
    {
        pg::Transaction tx(stack_->Pg());
        outbox::EmitMany(tx, ManyEvents(kEvents));
        tx.Commit();
    }
    const Config config_a = stack_->ConfigWith({{"EVENT_BATCH_SIZE", "500"}});
    const Config config_b = stack_->ConfigWith({{"EVENT_BATCH_SIZE", "500"}});
    relay::Stats stats_a;
    relay::Stats stats_b;
    std::string error_a;
    std::string error_b;
    auto run = [](const Config& config, relay::Stats& stats, std::string& error) {
        try {
            relay::Relay relay(config);
            stats = relay.Run({.drain = true});
        } catch (const std::exception& e) {
            error = e.what();
        }
    };
    std::thread a(run, std::cref(config_a), std::ref(stats_a), std::ref(error_a));
    std::thread b(run, std::cref(config_b), std::ref(stats_b), std::ref(error_b));
    a.join();
    b.join();
    ASSERT_EQ(error_a, "");
    ASSERT_EQ(error_b, "");

    EXPECT_EQ(stack_->ChQuery("SELECT count(), uniqExact(event_id) FROM " + stack_->ChTable()),
              std::to_string(kEvents) + "\t" + std::to_string(kEvents) + "\n");
    EXPECT_GT(stats_a.delivered, 0);
    EXPECT_GT(stats_b.delivered, 0);
    EXPECT_EQ(stats_a.delivered + stats_b.delivered, kEvents);
    EXPECT_EQ(stats_a.dead_lettered + stats_b.dead_lettered, 0);
    EXPECT_EQ(stack_->PendingEvents(), 0);
    std::cout << "relay_a_delivered=" << stats_a.delivered << " relay_b_delivered=" << stats_b.delivered << "\n";
}

class RestingLatencyTest : public StackTest {
protected:
    TestStack::Options StackOptions() override { return {.overrides = {{"EVENT_PROCESSING_INTERVAL", "60"}}}; }
};

// A resting relay (it only watches the outbox's id sequence) sees a new event within a second, whatever
// EVENT_PROCESSING_INTERVAL says: the producer does nothing to wake it (migration 0013).
TEST_F(RestingLatencyTest, ARestingRelaySeesANewEventWithinASecond) {
    ASSERT_EQ(stack_->Config().relay.processing_interval, std::chrono::seconds(60));
    relay::Relay relay(stack_->Config());
    std::string error;
    std::thread worker([&] {
        try {
            relay.Run();
        } catch (const std::exception& e) {
            error = e.what();
        }
    });
    // Idle: the relay's session is connected and LISTENing, and it has had time to find the outbox empty.
    const bool connected = testing::WaitUntil(
        [&] {
            return stack_->PgCount(
                       "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                       "application_name = 'eventlog-relay'") == 1;
        },
        std::chrono::seconds(10));
    EXPECT_TRUE(connected);
    // Resting: it found the outbox empty and every older transaction ended.
    EXPECT_TRUE(testing::WaitUntil([&] { return relay.GetHealth().resting; }, std::chrono::seconds(10)));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));

    const auto start = std::chrono::steady_clock::now();
    Uuid id;
    {
        pg::Transaction tx(stack_->Pg());
        id = outbox::Emit(tx, MakeEvent("LatencyProbe", R"({"probe":true})"));
        tx.Commit();
    }
    const std::string count_sql =
        "SELECT count() FROM " + stack_->ChTable() + " WHERE event_id = toUUID('" + id.ToString() + "')";
    const bool visible = testing::WaitUntil([&] { return stack_->ChCount(count_sql) == 1; }, std::chrono::seconds(10));
    const auto latency_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    std::cout << "emit_to_visible_ms=" << latency_ms << "\n";
    relay.Stop();
    worker.join();
    EXPECT_EQ(error, "");
    ASSERT_TRUE(visible) << "the event did not reach ClickHouse within 10 s";
    EXPECT_LT(latency_ms, 1000);
}

}  // namespace
}  // namespace eventlog
