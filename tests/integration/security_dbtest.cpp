// Least privilege and the search_path hijack, against a real PostgreSQL (label db). Attacks walked here:
// 1. A role with only what a producer has plus CREATE on public (the default on PostgreSQL <= 14) defines
//    public.array_agg(eventlog.pending_event), public.unnest(eventlog.pending_event[]) and
//    public.cardinality(eventlog.pending_event[]) that make their caller's role grant it SUPERUSER. The exact type
//    match beats the built-ins for any SQL that calls them unqualified under the default search_path. The test
//    first proves the trap is armed (an unqualified call in a rolled-back transaction escalates), then runs the
//    relay, status and the dead-letter calls as the superuser: the attacker must stay unprivileged. The same
//    attacker also defines public.lower(text) and public.regexp_replace(text, text, text, text), and the
//    superuser then calls emit() and emit_checked() with public first on its search_path.
// 2. Each role gets what it needs and no more: the producer can only call emit(); it cannot read or change the
//    outbox, the delivery records or the dead letters. The relay delivers as eventlog_relay alone.
// 3. An event over eventlog.limits is refused by emit() with the field named (the limits a trigger wrote into its
//    body), and by the C++ COPY path; one that reached the outbox by a privileged INSERT is dead-lettered by the
//    relay with the reason, and its neighbours are delivered.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <eventlog/core/error.hpp>
#include <eventlog/outbox/dead_letters.hpp>
#include <eventlog/outbox/outbox.hpp>
#include <eventlog/pg/connection.hpp>
#include <string>
#include <vector>

#include "relay/detail/delivery_store.hpp"
#include "support/test_env.hpp"

namespace eventlog {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::StackTest;
using testing::TestStack;

class SecurityTest : public StackTest {
protected:
    TestStack::Options StackOptions() override {
        return {.overrides = {{"RELAY_BACKOFF_BASE_MS", "20"}, {"RELAY_BACKOFF_CAP_MS", "100"}}};
    }

    void TearDown() override {
        for (const auto& role : roles_) {
            try {
                stack_->Pg().Exec("DROP OWNED BY " + role + " CASCADE");
                stack_->Pg().Exec("DROP ROLE IF EXISTS " + role);
            } catch (const std::exception& e) {
                ADD_FAILURE() << "cleanup of role " << role << ": " << e.what();
            }
        }
        StackTest::TearDown();
    }

    /// A login role unique to this test database, member of `group` (may be empty).
    std::string MakeLogin(const std::string& suffix, const std::string& group) {
        const std::string role = stack_->DatabaseName() + "_" + suffix;
        stack_->Pg().Exec("CREATE ROLE " + role + " LOGIN PASSWORD 'pw'" + (group.empty() ? "" : " IN ROLE " + group));
        stack_->Pg().Exec("GRANT CONNECT ON DATABASE " + stack_->DatabaseName() + " TO " + role);
        roles_.push_back(role);
        return role;
    }

    /// A session of `role` on the test database.
    pg::Connection ConnectAs(const std::string& role) {
        pg::ConnectOptions options;
        auto config = stack_->Config().postgres;
        config.user = role;
        config.password = "pw";
        options.conninfo = config.ConnInfo();
        return pg::Connection::Open(options);
    }

    /// A configuration whose PostgreSQL user is `role`.
    Config ConfigAs(const std::string& role) {
        Config config = stack_->Config();
        config.postgres.user = role;
        config.postgres.password = "pw";
        return config;
    }

    bool IsSuperuser(const std::string& role) {
        return stack_->PgCount("SELECT count(*) FROM pg_roles WHERE rolname = '" + role + "' AND rolsuper") == 1;
    }

    void EmitOne(const std::string& context = R"({"a":1})") {
        stack_->Producer().Exec("SELECT eventlog.emit('security_test', $1::json)", {context});
    }

    std::vector<std::string> roles_;
};

TEST_F(SecurityTest, AProducerCannotHijackBuiltInsToBecomeSuperuser) {
    const std::string attacker = MakeLogin("attacker", "eventlog_producer");
    stack_->Pg().Exec("GRANT CREATE ON SCHEMA public TO " + attacker);  // PostgreSQL <= 14 grants this to PUBLIC
    stack_->Pg().Exec("CREATE TABLE public.hijack_marker (n int)");
    stack_->Pg().Exec("GRANT INSERT ON public.hijack_marker TO " + attacker);
    {
        auto session = ConnectAs(attacker);
        session.Exec(R"sql(
CREATE FUNCTION public.escalate() RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO public.hijack_marker VALUES (1);
    NULL;  -- replaced below by the escalation naming the attacker's role
EXCEPTION WHEN OTHERS THEN NULL;
END $f$;
CREATE FUNCTION public.evil_step(s eventlog.pending_event[], e eventlog.pending_event)
RETURNS eventlog.pending_event[] LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.escalate(); RETURN pg_catalog.array_append(s, e); END $f$;
CREATE AGGREGATE public.array_agg(eventlog.pending_event) (SFUNC = public.evil_step,
    STYPE = eventlog.pending_event[], INITCOND = '{}');
CREATE FUNCTION public.unnest(a eventlog.pending_event[]) RETURNS SETOF eventlog.pending_event
LANGUAGE plpgsql AS $f$ BEGIN PERFORM public.escalate(); RETURN QUERY SELECT * FROM pg_catalog.unnest(a); END $f$;
CREATE FUNCTION public.cardinality(a eventlog.pending_event[]) RETURNS integer
LANGUAGE plpgsql AS $f$ BEGIN PERFORM public.escalate(); RETURN pg_catalog.cardinality(a); END $f$;
CREATE FUNCTION public.lower(t text) RETURNS text
LANGUAGE plpgsql AS $f$ BEGIN PERFORM public.escalate(); RETURN pg_catalog.lower(t); END $f$;
CREATE FUNCTION public.regexp_replace(t text, p text, r text, f text) RETURNS text
LANGUAGE plpgsql AS $f$ BEGIN PERFORM public.escalate(); RETURN pg_catalog.regexp_replace(t, p, r, f); END $f$;
)sql");
        session.Exec(
            "CREATE OR REPLACE FUNCTION public.escalate() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN "
            "INSERT INTO public.hijack_marker VALUES (1); EXECUTE 'ALTER ROLE " +
            attacker + " SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END $f$");
    }
    // The trap is armed: an unqualified call by a superuser under the default search_path runs the attacker's
    // code and makes it a superuser (inside a transaction that is rolled back).
    {
        auto probe = stack_->OpenPg();
        probe.Exec("BEGIN");
        probe.Exec("SET LOCAL search_path = \"$user\", public");
        probe.Exec("SELECT cardinality(ARRAY[]::eventlog.pending_event[])");
        const bool ran = probe.Exec("SELECT count(*) FROM public.hijack_marker").GetInt(0, 0) == 1;
        const bool escalated =
            probe.Exec("SELECT count(*) FROM pg_roles WHERE rolname = $1 AND rolsuper", {attacker}).GetInt(0, 0) == 1;
        probe.Exec("ROLLBACK");
        ASSERT_TRUE(ran && escalated) << "the trap is not armed, so this test could not fail";
    }
    {
        auto probe = stack_->OpenPg();
        probe.Exec("BEGIN");
        probe.Exec("SET LOCAL search_path = public, pg_catalog");
        probe.Exec("SELECT lower('X')");
        const bool escalated =
            probe.Exec("SELECT count(*) FROM pg_roles WHERE rolname = $1 AND rolsuper", {attacker}).GetInt(0, 0) == 1;
        probe.Exec("ROLLBACK");
        ASSERT_TRUE(escalated) << "the lower() trap is not armed, so this test could not fail";
    }

    for (int i = 0; i < 20; ++i) EmitOne(R"({"i":)" + std::to_string(i) + "}");
    // A dead relay's record, so that status and recovery have arrays to count and unnest.
    stack_->Pg().Exec(
        "BEGIN;"
        "INSERT INTO eventlog.delivery (batch_id, owner, events) SELECT gen_random_uuid(), 999, "
        "pg_catalog.array_agg(ROW(o.id, o.event_id, o.event_type, o.event_date_time, o.environment, o.event_context, "
        "o.metadata_version, o.trace_id, o.enqueued_at, o.span_id)::eventlog.pending_event ORDER BY o.id) FROM "
        "eventlog.outbox o WHERE o.id % 2 = "
        "0;"
        "DELETE FROM eventlog.outbox WHERE id % 2 = 0;"
        "COMMIT");
    auto operator_session = stack_->OpenPg();
    EXPECT_EQ(outbox::ReadStatus(operator_session).in_flight_events, 10);
    stack_->Drain();
    outbox::ListDeadLetters(operator_session);
    outbox::ReplayDeadLetters(operator_session, {});
    operator_session.Exec("SET search_path = public, pg_catalog");
    operator_session.Exec("SELECT eventlog.emit('UserCreated', '{}')");
    operator_session.Exec("SELECT eventlog.emit_checked('OrderPlaced', '{}')");
    operator_session.Exec("RESET search_path");
    stack_->Drain();

    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM public.hijack_marker"), 0)
        << "an attacker's function ran inside eventlog's SQL";
    EXPECT_FALSE(IsSuperuser(attacker));
    EXPECT_EQ(stack_->ChCount("SELECT count() FROM " + stack_->ChTable()), 22);
}

TEST_F(SecurityTest, TheProducerRoleCanOnlyEmit) {
    const std::string producer = MakeLogin("app_producer", "eventlog_producer");
    auto session = ConnectAs(producer);
    const auto id = session.Exec("SELECT eventlog.emit('UserCreated', '{\"email\":\"a@b.c\"}')");
    EXPECT_EQ(id.Get(0, 0).size(), 36u);
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.outbox WHERE event_type = 'UserCreated'"), 1);

    const std::vector<std::string> refused = {
        "SELECT count(*) FROM eventlog.outbox",
        "INSERT INTO eventlog.outbox (event_id, event_type, event_context) VALUES (gen_random_uuid(), 'x', '{}')",
        "DELETE FROM eventlog.outbox",
        "SELECT count(*) FROM eventlog.in_flight",
        "DELETE FROM eventlog.delivery",
        "SELECT count(*) FROM eventlog.dead_letter",
        "INSERT INTO eventlog.dead_letter (event_id) VALUES (gen_random_uuid())",
        "UPDATE eventlog.limits SET max_context_bytes = 1000000000",
        "SELECT count(*) FROM eventlog_demo.users",
    };
    for (const auto& sql : refused) {
        try {
            session.Exec(sql);
            ADD_FAILURE() << "the producer role may run: " << sql;
        } catch (const ConfigError& e) {
            EXPECT_THAT(e.what(), HasSubstr("42501")) << sql;  // insufficient_privilege
        }
    }
}

TEST_F(SecurityTest, TheRelayDeliversAsTheRelayRoleAlone) {
    const std::string relay_login = MakeLogin("relay_login", "eventlog_relay");
    for (int i = 0; i < 50; ++i) EmitOne(R"({"i":)" + std::to_string(i) + "}");
    relay::Relay relay(ConfigAs(relay_login));
    const auto stats = relay.Run({.drain = true});
    EXPECT_EQ(stats.delivered, 50);
    EXPECT_EQ(stack_->ChQuery("SELECT count(), uniqExact(event_id) FROM " + stack_->ChTable()), "50\t50\n");
    EXPECT_EQ(stack_->PendingEvents(), 0);
    auto session = ConnectAs(relay_login);
    EXPECT_THROW(session.Exec("INSERT INTO eventlog.outbox (event_id, event_type, event_context) VALUES "
                              "(gen_random_uuid(), 'x', '{}')"),
                 ConfigError);
    // And every relay the suite runs uses such a role (TestStack::Config()), never a superuser.
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM pg_roles WHERE rolname = '" + stack_->Config().postgres.user +
                              "' AND NOT rolsuper AND NOT rolcreaterole AND NOT rolcreatedb AND "
                              "pg_has_role(rolname, 'eventlog_relay', 'MEMBER')"),
              1);
}

// Advisory locks are open to every role: a stranger takes the key of a dead relay before any relay recovers it. Two
// relays must still finish that owner's records, once: the one that adopts them delivers them, the other finds none.
TEST_F(SecurityTest, AStrangerHoldingADeadRelaysLockDoesNotBlockItsRecovery) {
    for (int i = 0; i < 50; ++i) EmitOne(R"({"i":)" + std::to_string(i) + "}");
    ASSERT_EQ(stack_->ClaimAs(4243, 10).size(), 5u);
    const std::string stranger = MakeLogin("stranger", "");
    auto session = ConnectAs(stranger);
    session.Exec("SELECT pg_advisory_lock(1163283527, 4243)");  // the relay's lock class, the dead owner's key
    ASSERT_EQ(stack_->PgCount("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = 4243"),
              1);

    testing::BackgroundRelay first(stack_->Config());
    testing::BackgroundRelay second(stack_->Config());
    ASSERT_TRUE(testing::WaitUntil([&] { return stack_->PgCount("SELECT count(*) FROM eventlog.in_flight") == 0; },
                                   std::chrono::seconds(30)))
        << "the dead owner's records were not recovered while a stranger held its lock";
    first.Stop();
    second.Stop();
    EXPECT_EQ(first.Error(), "");
    EXPECT_EQ(second.Error(), "");
    EXPECT_EQ(stack_->ChQuery("SELECT count(), uniqExact(event_id) FROM " + stack_->ChTable()), "50\t50\n");
    // The stranger's lock was not touched.
    EXPECT_EQ(session
                  .Exec("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4243 AND pid = "
                        "pg_backend_pid()")
                  .GetInt(0, 0),
              1);
}

// Claims are serialised by a lock only a relay may take (storage v2): a stranger that holds the advisory key an earlier
// draft used, or tries the table lock itself, stalls nothing. With an advisory lock any role could stop every claim.
TEST_F(SecurityTest, AStrangerCannotStallClaims) {
    for (int i = 0; i < 5; ++i) EmitOne(R"({"i":)" + std::to_string(i) + "}");
    const std::string stranger = MakeLogin("claim_staller", "");
    auto session = ConnectAs(stranger);
    session.Exec("SELECT pg_advisory_lock(1163283527, 0)");
    session.Exec("BEGIN");
    try {
        session.Exec("LOCK TABLE eventlog.outbox_range IN SHARE ROW EXCLUSIVE MODE");
        ADD_FAILURE() << "a stranger took the claim lock";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("42501"));
    }
    session.Exec("ROLLBACK");
    testing::BackgroundRelay drain(stack_->Config(), /*drain=*/true);
    EXPECT_TRUE(drain.WaitFinished(std::chrono::seconds(10))) << "claims waited for the stranger";
    EXPECT_EQ(drain.Stop().delivered, 5);
    EXPECT_EQ(stack_->ChCount("SELECT count() FROM " + stack_->ChTable()), 5);
}

// (issue 18, item 8) Two relays whose role is outside eventlog_relay took each other's live batches for a dead
// relay's: each fenced the other's stage and adopted its records every pass, and an acknowledgement deleted records
// by batch id whoever owned them by then, so a poison row adopted between the two was lost. Seen failing before the
// fix: such a relay ran (no error), and the acknowledgement below deleted the other owner's record.
TEST_F(SecurityTest, ARelayOutsideTheRelayRoleRefusesToStartAndNoRelayDeletesAnotherOwnersRecord) {
    const std::string outsider = MakeLogin("outsider_relay", "");
    // Every privilege of the relay, granted directly instead of through eventlog_relay.
    stack_->Pg().Exec("GRANT USAGE ON SCHEMA eventlog TO " + outsider);
    stack_->Pg().Exec("GRANT SELECT ON eventlog.outbox, eventlog.in_flight TO " + outsider);
    stack_->Pg().Exec(
        "GRANT SELECT, INSERT, DELETE, UPDATE ON eventlog.delivery, eventlog.outbox_range, "
        "eventlog.outbox_chunk, eventlog.outbox_ack TO " +
        outsider);
    stack_->Pg().Exec("GRANT EXECUTE ON FUNCTION eventlog.claim_chunks(integer, integer, integer, bigint, uuid[]) TO " +
                      outsider);
    stack_->Pg().Exec("GRANT SELECT, INSERT, UPDATE ON eventlog.dead_letter TO " + outsider);
    stack_->Pg().Exec("GRANT SELECT ON eventlog.relay_identity, eventlog.limits TO " + outsider);
    for (int i = 0; i < 5; ++i) EmitOne(R"({"i":)" + std::to_string(i) + "}");
    relay::Relay relay(ConfigAs(outsider));
    try {
        relay.Run({.drain = true});
        ADD_FAILURE() << "a relay outside eventlog_relay ran";
    } catch (const Error& e) {
        EXPECT_EQ(e.Kind(), ErrorKind::kFatal);
        EXPECT_THAT(e.what(), HasSubstr("'" + outsider + "' is not a member of eventlog_relay"));
        EXPECT_THAT(e.what(), HasSubstr("GRANT eventlog_relay TO " + outsider));
    }
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.outbox_chunk"), 0) << "it claimed before refusing";

    // A record of another, live owner (its lock held here): a session acknowledging it by batch id deletes nothing
    // and writes no dead letter for its rows.
    stack_->Pg().Exec("SELECT pg_advisory_lock(1163283527, 4244)");
    const std::string batch = stack_->ClaimAs(4244).at(0);
    const auto first =
        stack_->Pg().Exec("SELECT event_id::text, txid, id FROM eventlog.outbox ORDER BY txid, id LIMIT 1");
    const std::string first_id(first.Get(0, 0));
    const Config config = stack_->Config();
    relay::detail::DeliveryStore store(config);
    store.Connect();
    relay::detail::PendingRow dead;
    dead.batch_id = Uuid::Parse(batch).value();
    dead.event.event_id = Uuid::Parse(first_id).value();
    dead.txid = first.GetInt(0, 1);
    dead.outbox_id = first.GetInt(0, 2);
    dead.error = "rejected";
    store.Acknowledge({dead.batch_id}, {dead});
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.in_flight WHERE owner = 4244"), 1);
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.dead_letter"), 0);
    stack_->Pg().Exec("SELECT pg_advisory_unlock_all()");
    EXPECT_EQ(stack_->Drain().delivered, 5);
    EXPECT_EQ(stack_->ChQuery("SELECT count(), uniqExact(event_id) FROM " + stack_->ChTable()), "5\t5\n");
}

TEST_F(SecurityTest, AnEventOverTheLimitsIsRefusedByEmitAndDeadLetteredIfItGotIn) {
    stack_->Pg().Exec("UPDATE eventlog.limits SET max_context_bytes = 1000");
    const std::string big = R"({"blob":")" + std::string(2000, 'x') + R"("})";
    try {
        EmitOne(big);
        ADD_FAILURE() << "emit accepted a 2 KB context over a 1000-byte limit";
    } catch (const InvalidInputError& e) {
        EXPECT_THAT(e.what(), HasSubstr("event_context: expected at most 1000 bytes"));
        // Issue 20: PostgreSQL's DETAIL ("Failing row contains (...)", the payload) and CONTEXT (the function's
        // statement) never reach an error's text, which is what logs and Sentry get.
        EXPECT_THAT(e.what(), Not(HasSubstr("xxxxxxxxxx")));
        EXPECT_THAT(e.what(), Not(HasSubstr("DETAIL")));
        EXPECT_THAT(e.what(), Not(HasSubstr("CONTEXT")));
    }
    // The C++ COPY path checks the same limits.
    {
        Event e;
        e.event_type = "security_test";
        e.event_context = big;
        pg::Transaction tx(stack_->Pg());
        EXPECT_THROW(outbox::EmitMany(tx, {e}), InvalidInputError);
    }
    // A privileged INSERT that skipped the checks: the relay dead-letters the row and delivers its neighbours.
    EmitOne(R"({"n":1})");
    stack_->Pg().Exec(
        "INSERT INTO eventlog.outbox (event_id, event_type, event_context) VALUES "
        "(gen_random_uuid(), 'security_test', $1::json)",
        {big});
    EmitOne(R"({"n":2})");
    const auto stats = stack_->Drain();
    EXPECT_EQ(stats.delivered, 2);
    EXPECT_EQ(stats.dead_lettered, 1);
    const auto dead = outbox::ListDeadLetters(stack_->Pg());
    ASSERT_EQ(dead.size(), 1u);
    EXPECT_THAT(dead[0].error, HasSubstr("event_context: expected at most 1000 bytes"));
    EXPECT_EQ(stack_->ChQuery("SELECT count(), uniqExact(event_id) FROM " + stack_->ChTable()), "2\t2\n");
}

}  // namespace
}  // namespace eventlog
