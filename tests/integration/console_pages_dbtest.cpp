// The admin console's pages over HTTP against real PostgreSQL and ClickHouse (label db; docs/admin-console.md): the
// API server in process as a role holding only eventlog_producer, signed in as a browser would be. The dashboard's
// figures equal outbox::ReadStatus; a replay through the console is delivered exactly once and audited; a discard
// removes and audits; a revoked key is refused by the API; every new form is 403 without its CSRF token; lists are
// paged and filtered; hostile event types and payloads come out escaped.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <eventlog/admin/administrators.hpp>
#include <eventlog/admin/sessions.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/http/api.hpp>
#include <eventlog/http/server.hpp>
#include <eventlog/outbox/outbox.hpp>
#include <eventlog/pg/pool.hpp>
#include <memory>
#include <regex>
#include <string>
#include <thread>

#include "support/http_client.hpp"
#include "support/test_env.hpp"

namespace eventlog {
namespace {

using ::testing::HasSubstr;
using testing::HttpAnswer;
using testing::HttpRequest;
using ::testing::Not;
using testing::StackTest;

constexpr const char* kSecretKey = "console-pages-secret-8d2e4f6a1c3b5d7e9f0a2c4e6b8d0f1a3c5e7b9d2f4a6c8e0b1d3f5";

class ConsolePagesTest : public StackTest {
protected:
    void SetUp() override {
        StackTest::SetUp();
        if (HasFatalFailure()) return;
        producer_ = stack_->DatabaseName() + "_pages_api";
        stack_->Pg().Exec("CREATE ROLE " + producer_ + " LOGIN PASSWORD 'pw' IN ROLE eventlog_producer");
        stack_->Pg().Exec("GRANT CONNECT ON DATABASE " + stack_->DatabaseName() + " TO " + producer_);
        admin::CreateAdministrator(stack_->Pg(), "ada", "", "correct horse battery staple");
        StartServer();
        session_ = SignIn();
        csrf_ = CsrfOf(Get("/admin/").body);
        ASSERT_FALSE(csrf_.empty());
    }

    void TearDown() override {
        if (server_) {
            server_->Stop();
            server_->Wait();
            server_.reset();
        }
        pool_.reset();
        if (stack_ && !producer_.empty()) {
            try {
                stack_->Pg().Exec("DROP OWNED BY " + producer_ + " CASCADE");
                stack_->Pg().Exec("DROP ROLE IF EXISTS " + producer_);
            } catch (const std::exception& e) {
                ADD_FAILURE() << "cleanup of role " << producer_ << ": " << e.what();
            }
        }
        StackTest::TearDown();
    }

    void StartServer() {
        http::ServeSettings settings;
        settings.secret_key = kSecretKey;
        settings.clickhouse = testing::ClientOptionsFor(stack_->Config());
        settings.clickhouse_table = stack_->Config().clickhouse.table;
        settings.server.port = 0;
        settings.server.io_threads = 1;
        settings.server.worker_threads = 2;
        pg::PoolOptions pool_options;
        auto postgres = stack_->Config().postgres;
        postgres.user = producer_;
        postgres.password = "pw";
        pool_options.connect.conninfo = postgres.ConnInfo();
        pool_options.max_size = 2;
        pool_ = std::make_unique<pg::Pool>(pool_options);
        server_ = std::make_unique<http::Server>(settings.server,
                                                 http::MakeApiRouter(*pool_, settings, [] { return false; }));
        server_->Start();
    }

    HttpAnswer Get(const std::string& path, bool signed_in = true) {
        std::vector<std::pair<std::string, std::string>> headers;
        if (signed_in) headers.emplace_back("Cookie", session_);
        return HttpRequest(server_->Port(), "GET", path, {}, headers);
    }

    /// POSTs `form` as signed in, with the session's CSRF token first unless `with_csrf` is false.
    HttpAnswer Post(const std::string& path, const std::string& form, bool with_csrf = true) {
        const std::string body = with_csrf ? "csrf_token=" + csrf_ + (form.empty() ? "" : "&" + form) : form;
        return HttpRequest(server_->Port(), "POST", path, body,
                           {{"Content-Type", "application/x-www-form-urlencoded"}, {"Cookie", session_}});
    }

    std::string SignIn() {
        const auto form = HttpRequest(server_->Port(), "GET", "/admin/login/");
        std::smatch m;
        const std::string set_cookie = form.headers.count("set-cookie") ? form.headers.at("set-cookie") : "";
        std::string cookie;
        std::string token;
        if (std::regex_search(set_cookie, m, std::regex("^(eventlog_csrf=[A-Za-z0-9_-]{43});"))) cookie = m[1];
        if (std::regex_search(form.body, m, std::regex(R"re(name="csrf_token" value="([0-9a-f]{64})")re")))
            token = m[1];
        const auto answer = HttpRequest(server_->Port(), "POST", "/admin/login/",
                                        "csrf_token=" + token + "&username=ada&password=correct+horse+battery+staple",
                                        {{"Content-Type", "application/x-www-form-urlencoded"}, {"Cookie", cookie}});
        EXPECT_EQ(answer.status, 303) << answer.body;
        const std::string session = answer.headers.count("set-cookie") ? answer.headers.at("set-cookie") : "";
        return session.substr(0, session.find(';'));
    }

    static std::string CsrfOf(const std::string& body) {
        std::smatch m;
        if (std::regex_search(body, m, std::regex(R"re(name="csrf_token" value="([0-9a-f]{64})")re"))) return m[1];
        return "";
    }

    /// The text inside the element with id `id` (up to the next '<').
    static std::string Anchor(const std::string& body, const std::string& id) {
        std::smatch m;
        if (std::regex_search(body, m, std::regex("id=\"" + id + "\"[^>]*>([^<]*)<"))) return m[1];
        return "<no element with id " + id + ">";
    }

    static int Count(const std::string& body, const std::string& needle) {
        int n = 0;
        for (auto at = body.find(needle); at != std::string::npos; at = body.find(needle, at + 1)) ++n;
        return n;
    }

    /// Inserts a dead letter of `type` with payload `context` (as the relay would leave one) and returns its id.
    std::string DeadLetter(const std::string& type, const std::string& context = "{}",
                           const std::string& error = "HTTP 500 from ClickHouse") {
        return std::string(stack_->Pg()
                               .Exec("INSERT INTO eventlog.dead_letter (event_id, event_type, event_date_time, "
                                     "event_context, metadata_version, enqueued_at, error, attempts) VALUES "
                                     "(gen_random_uuid(), $1, now(), $2::json, 1, now(), $3, 5) RETURNING event_id",
                                     {type, context, error})
                               .Get(0, 0));
    }

    std::int64_t Audited(const std::string& action) {
        return stack_->PgCount("SELECT count(*) FROM eventlog.console_audit WHERE action = '" + action + "'");
    }

    std::string producer_;
    std::unique_ptr<pg::Pool> pool_;
    std::unique_ptr<http::Server> server_;
    std::string session_;
    std::string csrf_;
};

TEST_F(ConsolePagesTest, TheDashboardShowsTheFiguresOfEventlogStatusAndTheLastHoursDeliveries) {
    for (int i = 0; i < 3; ++i) stack_->Producer().Exec("SELECT eventlog.emit('Delivered', '{}'::json)");
    ASSERT_EQ(stack_->Drain().delivered, 3);
    for (int i = 0; i < 4; ++i) stack_->Producer().Exec("SELECT eventlog.emit('Waiting', '{}'::json)");
    stack_->ClaimAs(7, 1);  // one chunk of one event in flight, as a relay that died after claiming leaves it
    DeadLetter("Failed");

    const auto page = Get("/admin/");
    ASSERT_EQ(page.status, 200) << page.body;
    const auto s = outbox::ReadStatus(stack_->Pg());
    EXPECT_EQ(s.dead_letters, 1);
    EXPECT_GT(s.in_flight_events, 0);
    EXPECT_EQ(Anchor(page.body, "backlog"), std::to_string(s.pending));
    EXPECT_EQ(Anchor(page.body, "in-flight"), std::to_string(s.in_flight_events));
    EXPECT_EQ(Anchor(page.body, "in-flight-batches"), std::to_string(s.in_flight_batches));
    EXPECT_EQ(Anchor(page.body, "dead-letters"), "1");
    EXPECT_EQ(Anchor(page.body, "delivered-last-hour"), "3");
    EXPECT_THAT(page.body, HasSubstr("<h1>Dashboard</h1>"));
    EXPECT_THAT(page.body, HasSubstr("<svg id=\"delivery-chart\""));
    EXPECT_THAT(Anchor(page.body, "postgres-status"), HasSubstr("reachable"));
    EXPECT_EQ(Anchor(page.body, "clickhouse-status"), "reachable");
    EXPECT_EQ(Anchor(page.body, "relays-alive"), "0");  // Drain's relay has stopped
    EXPECT_THAT(page.body, HasSubstr("<nav aria-label=\"Console\">"));
    EXPECT_THAT(page.body, Not(HasSubstr("<script")));
    EXPECT_THAT(page.body, Not(HasSubstr("http://")));
}

TEST_F(ConsolePagesTest, EveryPageNeedsASessionAndEveryNewFormItsCsrfToken) {
    for (const std::string path :
         {"/admin/", "/admin/dead-letters/", "/admin/api-keys/", "/admin/users/", "/admin/audit/", "/admin/events/",
          "/admin/dead-letters/00000000-0000-0000-0000-000000000001/",
          "/admin/events/00000000-0000-0000-0000-000000000001/"}) {
        const auto anonymous = Get(path, false);
        EXPECT_EQ(anonymous.status, 303) << path;
        EXPECT_EQ(anonymous.headers.count("location") ? anonymous.headers.at("location") : "", "/admin/login/") << path;
    }
    const std::string id = DeadLetter("Kept");
    stack_->Pg().Exec("SELECT eventlog.api_key_create('kept', decode(repeat('00', 32), 'hex'))");
    for (const auto& [path, form] : std::vector<std::pair<std::string, std::string>>{
             {"/admin/dead-letters/confirm/", "action=replay&scope=selected&id=" + id},
             {"/admin/dead-letters/replay/", "action=replay&scope=selected&id=" + id},
             {"/admin/dead-letters/discard/", "action=discard&scope=selected&id=" + id},
             {"/admin/dead-letters/replay/", "action=replay&scope=matching&type=&error="},
             {"/admin/api-keys/create/", "name=forged"},
             {"/admin/api-keys/revoke/confirm/", "name=kept"},
             {"/admin/api-keys/revoke/", "name=kept"},
         }) {
        EXPECT_EQ(Post(path, form, false).status, 403) << path;
        EXPECT_EQ(Post(path, "csrf_token=" + std::string(64, '0') + "&" + form, false).status, 403) << path;
        const auto anonymous = HttpRequest(server_->Port(), "POST", path, "csrf_token=" + csrf_ + "&" + form,
                                           {{"Content-Type", "application/x-www-form-urlencoded"}});
        EXPECT_EQ(anonymous.status, 303) << path;
    }
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.dead_letter"), 1);
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.api_key WHERE revoked_at IS NULL"), 1);
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.api_key"), 1);
    EXPECT_EQ(
        stack_->PgCount("SELECT count(*) FROM eventlog.console_audit WHERE action NOT IN ('admin_created', 'login')"),
        0)
        << stack_->Pg().Exec("SELECT string_agg(action || ' ' || target, '; ') FROM eventlog.console_audit").Get(0, 0);
}

TEST_F(ConsolePagesTest, AReplayThroughTheConsoleIsDeliveredExactlyOnceAndAudited) {
    const std::string id = DeadLetter("Replayed", R"({"n":1})");
    const auto list = Get("/admin/dead-letters/");
    ASSERT_EQ(list.status, 200);
    EXPECT_THAT(list.body, HasSubstr("id=\"dead-letter-" + id + "\""));
    EXPECT_THAT(list.body, HasSubstr("HTTP 500 from ClickHouse"));
    const auto shown = Get("/admin/dead-letters/" + id + "/");
    ASSERT_EQ(shown.status, 200);
    EXPECT_EQ(Anchor(shown.body, "attempts"), "5");
    EXPECT_THAT(shown.body, HasSubstr("id=\"replay-" + id + "\""));

    const auto confirm = Post("/admin/dead-letters/confirm/", "scope=selected&action=replay&id=" + id);
    ASSERT_EQ(confirm.status, 200) << confirm.body;
    EXPECT_THAT(confirm.body, HasSubstr("<h1>Confirm replay</h1>"));
    EXPECT_EQ(Anchor(confirm.body, "confirm-count"), "1");
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.dead_letter"), 1);  // nothing happens before the "yes"

    const auto done = Post("/admin/dead-letters/replay/", "scope=selected&action=replay&id=" + id);
    ASSERT_EQ(done.status, 200) << done.body;
    EXPECT_EQ(Anchor(done.body, "result-count"), "1");
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.dead_letter"), 0);
    // The same post again (a double click, a reload) finds nothing to replay.
    EXPECT_EQ(Anchor(Post("/admin/dead-letters/replay/", "scope=selected&action=replay&id=" + id).body, "result-count"),
              "0");
    EXPECT_EQ(stack_->Drain().delivered, 1);
    EXPECT_EQ(stack_->Drain().delivered, 0);
    EXPECT_EQ(stack_->ChCount("SELECT count() FROM " + stack_->ChTable() + " WHERE event_id = toUUID('" + id + "')"),
              1);
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.console_audit WHERE action = 'dead_letters_replayed' AND "
                              "actor = 'ada' AND target = '" +
                              id + "' AND (details->>'count')::int = 1 AND client_address = '127.0.0.1'"),
              1);
    EXPECT_EQ(Audited("dead_letters_replayed"), 2);  // the second, empty one is recorded too
    // The audit log page shows it, newest first.
    const auto audit = Get("/admin/audit/");
    ASSERT_EQ(audit.status, 200);
    EXPECT_THAT(audit.body, HasSubstr("<h1>Audit log</h1>"));
    EXPECT_LT(audit.body.find("dead_letters_replayed"), audit.body.find(">login<"));
}

TEST_F(ConsolePagesTest, DiscardingAllMatchingAFilterRemovesOnlyThoseAndIsAudited) {
    const std::string a = DeadLetter("BadOrder", "{}", "schema mismatch");
    const std::string b = DeadLetter("BadOrder", "{}", "schema mismatch");
    const std::string kept = DeadLetter("GoodOrder", "{}", "timeout");
    const auto filtered = Get("/admin/dead-letters/?type=badorder&error=");
    EXPECT_EQ(Anchor(filtered.body, "dead-letter-count"), "2");
    EXPECT_THAT(filtered.body, Not(HasSubstr(kept)));
    const auto confirm = Post("/admin/dead-letters/confirm/", "scope=matching&action=discard&type=BadOrder&error=");
    EXPECT_EQ(Anchor(confirm.body, "confirm-count"), "2");
    const auto done = Post("/admin/dead-letters/discard/", "scope=matching&action=discard&type=BadOrder&error=");
    ASSERT_EQ(done.status, 200) << done.body;
    EXPECT_EQ(Anchor(done.body, "result-count"), "2");
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.dead_letter"), 1);
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.dead_letter WHERE event_id = '" + kept + "'"), 1);
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.console_audit WHERE action = 'dead_letters_discarded' "
                              "AND (details->>'count')::int = 2 AND details->>'type_filter' = 'BadOrder' AND "
                              "details->'event_ids' ? '" +
                              a + "' AND details->'event_ids' ? '" + b + "'"),
              1);
    EXPECT_EQ(stack_->Drain().delivered, 0);  // discarded means gone, not replayed
}

TEST_F(ConsolePagesTest, AKeyCreatedOnTheConsoleWorksUntilItIsRevokedThereThenTheApiRefusesIt) {
    const auto created = Post("/admin/api-keys/create/", "name=billing&scope-events-write=events%3Awrite");
    ASSERT_EQ(created.status, 200) << created.body;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(created.body, m, std::regex(R"re(id="new-token" readonly value="(elk_[^"]+)")re")))
        << created.body;
    const std::string token = m[1];
    EXPECT_EQ(Count(Get("/admin/api-keys/").body, token), 0);  // shown once
    EXPECT_THAT(Get("/admin/api-keys/").body, HasSubstr("id=\"revoke-billing\""));
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.api_key WHERE name = 'billing' AND scopes = "
                              "'{events:write}'"),
              1);
    const auto emit = [&] {
        return HttpRequest(server_->Port(), "POST", "/api/v1/events", R"({"event_type":"Paid","event_context":{}})",
                           {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + token}});
    };
    EXPECT_EQ(emit().status / 100, 2);

    const auto confirm = Post("/admin/api-keys/revoke/confirm/", "name=billing");
    EXPECT_THAT(confirm.body, HasSubstr("<h1>Confirm revoke</h1>"));
    EXPECT_EQ(emit().status / 100, 2);  // not yet
    const auto revoked = Post("/admin/api-keys/revoke/", "name=billing");
    ASSERT_EQ(revoked.status, 200) << revoked.body;
    // Within the key cache's time to live (2 s) every server refuses it.
    EXPECT_TRUE(testing::WaitUntil([&] { return emit().status == 401; }, std::chrono::seconds(5),
                                   std::chrono::milliseconds(200)));
    EXPECT_EQ(Audited("api_key_created"), 1);
    EXPECT_EQ(Audited("api_key_revoked"), 1);
    EXPECT_EQ(Post("/admin/api-keys/revoke/", "name=billing").status, 404);  // nothing left to revoke
    // A duplicate or bad name is refused on the form, naming the rule.
    const auto again = Post("/admin/api-keys/create/", "name=billing");
    EXPECT_EQ(again.status, 400);
    EXPECT_EQ(Anchor(again.body, "create-error"), "Name: a key with this name already exists");
    EXPECT_EQ(Audited("api_key_created"), 1);
}

TEST_F(ConsolePagesTest, ListsArePagedAndFilteredWithinTheirBounds) {
    stack_->Pg().Exec(
        "INSERT INTO eventlog.dead_letter (event_id, event_type, event_date_time, event_context, metadata_version, "
        "enqueued_at, error, attempts, first_failed_at) SELECT gen_random_uuid(), 'Many', now(), '{}', 1, now(), "
        "'e', 1, now() - make_interval(secs => g) FROM generate_series(1, 60) g");
    const auto first = Get("/admin/dead-letters/");
    EXPECT_EQ(Count(first.body, "<tr id=\"dead-letter-"), 50);
    std::smatch m;
    ASSERT_TRUE(std::regex_search(first.body, m, std::regex(R"re(href="([^"]+)" id="next-page")re")));
    std::string next = m[1];
    next = std::regex_replace(next, std::regex("&amp;"), "&");
    const auto second = Get(next);
    EXPECT_EQ(Count(second.body, "<tr id=\"dead-letter-"), 10);
    EXPECT_THAT(second.body, Not(HasSubstr("id=\"next-page\"")));
    EXPECT_EQ(Count(Get("/admin/dead-letters/?type=nothing").body, "<tr id=\"dead-letter-"), 0);

    stack_->Pg().Exec(
        "SELECT eventlog_demo.create_user('user' || g || '@example.com', 'First' || g, 'Last') FROM "
        "generate_series(1, 55) g");
    const auto users = Get("/admin/users/");
    ASSERT_EQ(users.status, 200);
    EXPECT_THAT(users.body, HasSubstr("<h1>Users</h1>"));
    EXPECT_EQ(Count(users.body, "<tr id=\"user-"), 50);
    EXPECT_THAT(users.body, HasSubstr("user55@example.com"));  // newest first
    ASSERT_TRUE(std::regex_search(users.body, m, std::regex(R"re(href="([^"]+)" id="next-page")re")));
    EXPECT_EQ(Count(Get(std::regex_replace(std::string(m[1]), std::regex("&amp;"), "&")).body, "<tr id=\"user-"), 5);
    const auto search = Get("/admin/users/?q=USER1%40");
    EXPECT_EQ(Count(search.body, "<tr id=\"user-"), 1);
    EXPECT_THAT(search.body, HasSubstr("user1@example.com"));
    EXPECT_EQ(Count(Get("/admin/users/?q=%25").body, "<tr id=\"user-"), 0);  // no LIKE wildcards

    stack_->Pg().Exec(
        "INSERT INTO eventlog.console_audit (actor, action, target) SELECT 'cli', 'test_row', g::text FROM "
        "generate_series(1, 60) g");
    const auto audit = Get("/admin/audit/");
    EXPECT_EQ(Count(audit.body, "<tr id=\"audit-"), 50);
    EXPECT_LT(audit.body.find(">60<"), audit.body.find(">59<"));  // newest first
    ASSERT_TRUE(std::regex_search(audit.body, m, std::regex(R"re(href="([^"]+)" id="next-page")re")));
    EXPECT_EQ(Count(Get(m[1]).body, "<tr id=\"audit-"), 12);  // the other 10, ada's login and admin_created

    stack_->Producer().Exec("SELECT eventlog.emit('Paged', '{}'::json) FROM generate_series(1, 55)");
    ASSERT_EQ(stack_->Drain().delivered, 55 + 55);  // and the users' user_created events
    const auto events = Get("/admin/events/?type=paged");
    EXPECT_EQ(Count(events.body, "class=\"mono\" href=\"/admin/events/"), 50);
    ASSERT_TRUE(std::regex_search(events.body, m, std::regex(R"re(href="([^"]+)" id="next-page")re")));
    const auto older = Get(std::regex_replace(std::string(m[1]), std::regex("&amp;"), "&"));
    EXPECT_EQ(Count(older.body, "class=\"mono\" href=\"/admin/events/"), 5);
    EXPECT_THAT(older.body, HasSubstr("id=\"previous-page\""));
    // A page past the last is empty and its number is capped (at most 200 pages of 50 are ever asked for).
    EXPECT_EQ(Count(Get("/admin/events/?page=99999").body, "class=\"mono\" href=\"/admin/events/"), 0);
}

TEST_F(ConsolePagesTest, HostileEventTypesAndPayloadsAreEscapedOnTheDeadLetterAndEventsPages) {
    const std::string hostile = "<script>alert(1)</script>";
    const std::string id = DeadLetter(hostile, R"({"x":"<script>alert(2)</script>"})", "<img src=x>");
    const auto list = Get("/admin/dead-letters/");
    EXPECT_THAT(list.body, HasSubstr("&lt;script&gt;alert(1)&lt;/script&gt;"));
    EXPECT_THAT(list.body, HasSubstr("&lt;img src=x&gt;"));
    const auto shown = Get("/admin/dead-letters/" + id + "/");
    EXPECT_THAT(shown.body, HasSubstr("&lt;script&gt;alert(2)&lt;/script&gt;"));
    for (const auto* body : {&list.body, &shown.body}) {
        EXPECT_THAT(*body, Not(HasSubstr("<script")));
        EXPECT_THAT(*body, Not(HasSubstr("<img")));
    }

    const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    const std::string first = std::string(stack_->Producer()
                                              .Exec("SELECT eventlog.emit('Hostile', $1::json, trace_id => $2)",
                                                    {R"({"y":"</pre><script>x</script>"})", trace})
                                              .Get(0, 0));
    stack_->Producer().Exec("SELECT eventlog.emit('Sibling', '{}'::json, trace_id => $1)", {trace});
    stack_->Producer().Exec("SELECT eventlog.emit('Other', '{}'::json)");
    ASSERT_EQ(stack_->Drain().delivered, 3);
    const auto events = Get("/admin/events/");
    ASSERT_EQ(events.status, 200) << events.body;
    EXPECT_THAT(events.body, HasSubstr("<h1>Events</h1>"));
    EXPECT_EQ(Count(events.body, "class=\"mono\" href=\"/admin/events/"), 3);
    EXPECT_THAT(events.body, HasSubstr("&lt;/pre&gt;&lt;script&gt;"));
    EXPECT_THAT(events.body, Not(HasSubstr("<script")));
    EXPECT_EQ(Count(Get("/admin/events/?type=sibling").body, "class=\"mono\" href=\"/admin/events/"),
              1);  // the relay's snake_case
    EXPECT_EQ(Count(Get("/admin/events/?trace=" + trace).body, "class=\"mono\" href=\"/admin/events/"), 2);
    EXPECT_EQ(Count(Get("/admin/events/?event_id=" + first).body, "class=\"mono\" href=\"/admin/events/"), 1);
    EXPECT_EQ(Count(Get("/admin/events/?from=2001-01-01T00%3A00&to=2001-01-02T00%3A00").body,
                    "class=\"mono\" href=\"/admin/events/"),
              0);
    EXPECT_EQ(Get("/admin/events/?event_id=nope").status, 400);

    const auto one = Get("/admin/events/" + first + "/");
    ASSERT_EQ(one.status, 200) << one.body;
    EXPECT_EQ(Anchor(one.body, "event-status"), "delivered");
    EXPECT_EQ(Anchor(one.body, "trace-id"), trace);
    EXPECT_EQ(Count(one.body, "class=\"mono\" href=\"/admin/events/"), 2);  // the trace's two events
    EXPECT_THAT(one.body, Not(HasSubstr("<script")));
    // ClickHouse's TabSeparated escapes (backslashes, tabs, newlines in the context) are undone before escaping.
    const std::string escaped = std::string(
        stack_->Producer()
            .Exec("SELECT eventlog.emit('Escapes', $1::json)", {R"({"path":"C:\\dir\\x","tab":"a\tb","nl":"c\nd"})"})
            .Get(0, 0));
    ASSERT_EQ(stack_->Drain().delivered, 1);
    EXPECT_EQ(
        Anchor(Get("/admin/events/" + escaped + "/").body, "event-context"),
        R"({&quot;path&quot;:&quot;C:\\dir\\x&quot;,&quot;tab&quot;:&quot;a\tb&quot;,&quot;nl&quot;:&quot;c\nd&quot;})");
    const auto dead = Get("/admin/events/" + id + "/");
    EXPECT_EQ(Anchor(dead.body, "event-status"), "dead_lettered");
}

TEST_F(ConsolePagesTest, TheApiRoleChangesNothingWithoutALiveSessionAndReadsNoConsoleTable) {
    const std::string id = DeadLetter("Guarded");
    auto lease = pool_->Acquire();
    const auto code_of = [&](const std::string& sql, const std::vector<pg::Param>& params = {}) {
        try {
            lease->Exec(sql, params);
        } catch (const Error& e) {
            return e.Code();
        }
        return std::string("ok");
    };
    const std::string forged = "\\x" + std::string(64, 'a');
    // The functions the pages use refuse a session that does not exist, so a stolen producer login cannot use them.
    EXPECT_EQ(code_of("SELECT eventlog.console_dead_letter_act($1::bytea, '', 'replay', NULL, '', '')", {forged}),
              "42501");
    EXPECT_EQ(code_of("SELECT eventlog.console_api_key_create($1::bytea, '', 'x', decode(repeat('00', 32), 'hex'), "
                      "'{events:write}')",
                      {forged}),
              "42501");
    EXPECT_EQ(code_of("SELECT eventlog.console_api_key_revoke($1::bytea, '', 'x')", {forged}), "42501");
    EXPECT_EQ(code_of("SELECT * FROM eventlog.console_dead_letters($1::bytea, '', '', NULL, NULL, 10)", {forged}),
              "42501");
    EXPECT_EQ(code_of("SELECT * FROM eventlog.console_users($1::bytea, '', NULL, 10)", {forged}), "42501");
    EXPECT_EQ(code_of("SELECT * FROM eventlog.console_audit_log($1::bytea, NULL, 10)", {forged}), "42501");
    // Nor the bodies and tables underneath.
    EXPECT_EQ(code_of("SELECT eventlog.dead_letter_replay(NULL)"), "42501");
    EXPECT_EQ(code_of("SELECT eventlog.dead_letter_discard(NULL)"), "42501");
    EXPECT_EQ(code_of("SELECT eventlog.console_actor($1::bytea)", {forged}), "42501");
    EXPECT_EQ(code_of("SELECT count(*) FROM eventlog.dead_letter"), "42501");
    EXPECT_EQ(code_of("SELECT count(*) FROM eventlog.console_audit"), "42501");
    EXPECT_EQ(code_of("SELECT count(*) FROM eventlog_demo.users"), "42501");
    // The status figures are counts (/metrics publishes them too): any role reads them, the same for all.
    EXPECT_EQ(code_of("SELECT * FROM eventlog.status()"), "ok");
    // The real session works until it ends; then it is refused like a forged one.
    const std::string live = *admin::SessionTokenHash(session_.substr(session_.find('=') + 1));
    EXPECT_EQ(code_of("SELECT count(*) FROM eventlog.console_dead_letters($1::bytea, '', '', NULL, NULL, 10)", {live}),
              "ok");
    ASSERT_EQ(Post("/admin/logout/", "").status, 303);
    EXPECT_EQ(code_of("SELECT eventlog.console_dead_letter_act($1::bytea, '', 'discard', NULL, '', '')", {live}),
              "42501");
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM eventlog.dead_letter WHERE event_id = '" + id + "'"), 1);
}

TEST_F(ConsolePagesTest, APageWhoseDatabaseDoesNotAnswerSaysSoInHtmlWith503) {
    // A second server whose pool points at a port nobody listens on: the session cannot even be checked.
    pg::PoolOptions pool_options;
    auto postgres = stack_->Config().postgres;
    postgres.port = 1;
    pool_options.connect.conninfo = postgres.ConnInfo();
    pool_options.max_size = 1;
    pg::Pool dead_pool(pool_options);
    http::ServeSettings settings;
    settings.secret_key = kSecretKey;
    settings.server.port = 0;
    settings.server.io_threads = 1;
    settings.server.worker_threads = 1;
    http::Server dead(settings.server, http::MakeApiRouter(dead_pool, settings, [] { return false; }));
    dead.Start();
    for (const std::string path : {"/admin/", "/admin/dead-letters/", "/admin/audit/"}) {
        const auto answer = HttpRequest(dead.Port(), "GET", path, {}, {{"Cookie", session_}});
        EXPECT_EQ(answer.status, 503) << path;
        EXPECT_EQ(answer.headers.count("content-type") ? answer.headers.at("content-type") : "",
                  "text/html; charset=utf-8");
        EXPECT_THAT(answer.body, HasSubstr("<h1>Unavailable</h1>"));
        EXPECT_EQ(answer.headers.count("retry-after"), 1U);
    }
    dead.Stop();
    dead.Wait();
}

TEST_F(ConsolePagesTest, TheDashboardListsTheRunningRelaysSessions) {
    EXPECT_EQ(Anchor(Get("/admin/").body, "relays-alive"), "0");
    testing::BackgroundRelay relay(stack_->Config());
    std::string page;
    EXPECT_TRUE(testing::WaitUntil(
        [&] {
            page = Get("/admin/").body;
            return Anchor(page, "relays-alive") != "0";
        },
        std::chrono::seconds(10), std::chrono::milliseconds(100)));
    EXPECT_THAT(page, HasSubstr("<table id=\"relays\">"));
    EXPECT_EQ(stack_->PgCount("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'eventlog-relay' AND "
                              "datname = current_database()"),
              std::stoll(Anchor(page, "relays-alive")));
    relay.Stop();
}

}  // namespace
}  // namespace eventlog
