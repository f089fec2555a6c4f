// Every wait on PostgreSQL has a deadline (issue 20), tested with a server that stops answering: PostgreSQL frozen
// with SIGSTOP (postmaster and backends), its sockets open, so nothing but a client-side deadline ends a wait (the
// server's statement_timeout cannot fire, TCP sees a live peer). POSTGRES_STATEMENT_TIMEOUT=1 makes the bound 3 s
// (the statement's second plus the client's 2 s of grace).
//
// How they failed before the deadlines: `serve` left every request unanswered for as long as the freeze lasted (the
// client's 20 s read timed out: status 0); the relay's scrapes queued behind one mutex held across a query that
// never returned, and SIGTERM ended the relay only through the watchdog (exit 3, relay_shutdown_timeout).
#include <algorithm>

#include "e2e_support.hpp"
#include "support/http_client.hpp"

namespace eventlog::e2e {
namespace {

using namespace std::chrono_literals;

constexpr const char* kSecret = "e2e-deadline-secret-3f1b8d2c6a4e0f9b7d5c3a1e8f6b4d2c0a9e7f5b3d1c8a6e4f2b0d9c7a5e3";

class Deadlines : public E2eTest {
protected:
    /// SIGCONT on every path out of a test that froze PostgreSQL.
    struct Thaw {
        World& world;
        bool frozen{false};
        void Freeze() {
            world.FreezePostgres();
            frozen = true;
        }
        void Now() {
            if (frozen) world.ThawPostgres();
            frozen = false;
        }
        ~Thaw() { Now(); }
    };
};

TEST_F(Deadlines, ServeAnswersEveryRequestWithinItsBoundWhilePostgresIsFrozenAndRecoversAfter) {
    auto& w = *world_;
    const auto created =
        w.Eventlog({"apikey", "create", "--name", "e2e"}, {{"SECRET_KEY", kSecret}, {"DATABASE_URL", w.Dsn()}}, 30s);
    ASSERT_TRUE(created.Ok()) << created.output;
    const std::string token = SplitLines(created.output).back();
    const std::uint16_t port = FreeLoopbackPort();
    const std::string log = w.LogDir() + "/serve.log";
    Child serve = Child::Spawn(
        "serve", {EVENTLOG_BINARY, "serve", "--listen", "127.0.0.1:" + std::to_string(port)},
        w.ChildEnv({{"SECRET_KEY", kSecret}, {"DATABASE_URL", w.ProducerDsn()}, {"POSTGRES_STATEMENT_TIMEOUT", "1"}}),
        log);
    ASSERT_TRUE(WaitFor([&] { return CountInFile(log, "http_listening") > 0 || !serve.Running(); }, 30s));
    const auto post = [&](const std::string& type) {
        testing::HttpConnection c(port, 20s);
        const std::string body = R"({"event_type":")" + type + R"(","event_context":{}})";
        c.SendRaw(testing::FormatRequest("POST", "/api/v1/events", body,
                                         {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + token}},
                                         false));
        return c.Read();
    };
    ASSERT_EQ(post("before").status, 202);  // the pool holds a session, the key is cached

    Thaw thaw{w};
    thaw.Freeze();
    // Several at once: each is answered (503, nothing stored) within the bound, none waits for the freeze to end.
    std::vector<testing::HttpAnswer> answers(4);
    std::vector<double> took(answers.size());
    {
        std::vector<std::thread> clients;
        for (std::size_t i = 0; i < answers.size(); ++i) {
            clients.emplace_back([&, i] {
                const auto t0 = Clock::now();
                answers[i] = post("during");
                took[i] = SecondsSince(t0);
            });
        }
        for (auto& c : clients) c.join();
    }
    const bool healthz = testing::HttpRequest(port, "GET", "/healthz").status == 200;
    thaw.Now();
    for (std::size_t i = 0; i < answers.size(); ++i) {
        EXPECT_EQ(answers[i].status, 503) << answers[i].body;
        EXPECT_LT(took[i], 8.0) << "request " << i;
        w.Note(fmt::format("request {} answered {} after {:.2f} s", i, answers[i].status, took[i]));
    }
    EXPECT_TRUE(healthz) << "/healthz did not answer while PostgreSQL was frozen";
    // Afterwards the server writes again: the abandoned sessions are closed, not reused.
    EXPECT_TRUE(WaitFor([&] { return post("after").status == 202; }, 15s, 200ms));
    auto pg = OpenPg(w.Dsn());
    EXPECT_EQ(pg.Exec("SELECT count(*) FROM eventlog.outbox WHERE event_type = 'during'").GetInt(0, 0), 0);
    serve.Signal(SIGTERM);
    const auto status = serve.Wait(30s);
    ASSERT_TRUE(status);
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(*status);
}

TEST_F(Deadlines, TheRelayAnswersScrapesAndStopsGracefullyWhilePostgresIsFrozen) {
    auto& w = *world_;
    const std::uint16_t port = FreeLoopbackPort();
    ProducedEvents backlog;
    {
        auto pg = OpenPg(w.Dsn());
        pg::Transaction tx(pg);
        const auto r = tx.Exec(
            "SELECT eventlog.emit('e2e_event', json_build_object('n', g)::json) FROM generate_series(1, 20000) g");
        tx.Commit();
        for (int i = 0; i < r.Rows(); ++i) backlog.committed.emplace_back(r.Get(i, 0));
    }
    Child& relay = w.StartRelay({{"METRICS_LISTEN", "127.0.0.1:" + std::to_string(port)},
                                 {"POSTGRES_STATEMENT_TIMEOUT", "1"},
                                 {"RELAY_SHUTDOWN_TIMEOUT_MS", "20000"}});
    ASSERT_TRUE(w.WaitForLogLine(relay, "metrics_listening", 30s)) << Tail(ReadFile(relay.LogPath()), 3000);
    ASSERT_TRUE(WaitFor([&] { return w.ChRows() > 0; }, 30s, 20ms));
    EXPECT_EQ(testing::HttpRequest(port, "GET", "/metrics").status, 200);

    Thaw thaw{w};
    thaw.Freeze();
    std::this_thread::sleep_for(1500ms);  // past the backlog reading's 1 s cache: the next scrape asks PostgreSQL
    // Scrapes do not queue behind the one reading the backlog: each answers within the bound.
    std::vector<int> statuses(4);
    std::vector<double> took(statuses.size());
    {
        std::vector<std::thread> scrapers;
        for (std::size_t i = 0; i < statuses.size(); ++i) {
            scrapers.emplace_back([&, i] {
                const auto t0 = Clock::now();
                testing::HttpConnection c(port, 20s);
                c.SendRaw(testing::FormatRequest("GET", "/metrics", "", {}, false));
                statuses[i] = c.Read().status;
                took[i] = SecondsSince(t0);
            });
        }
        for (auto& s : scrapers) s.join();
    }
    // The premise: one scrape met the frozen server (it waited for its deadline) while the others did not queue.
    EXPECT_GE(*std::max_element(took.begin(), took.end()), 2.0);
    EXPECT_LT(*std::min_element(took.begin(), took.end()), 1.0);
    for (std::size_t i = 0; i < statuses.size(); ++i) {
        EXPECT_EQ(statuses[i], 200) << "scrape " << i;
        EXPECT_LT(took[i], 5.0) << "scrape " << i;
        w.Note(fmt::format("scrape {} answered {} after {:.2f} s", i, statuses[i], took[i]));
    }
    // SIGTERM with PostgreSQL still frozen: the statement in progress ends at its deadline and the relay stops by
    // itself, long before RELAY_SHUTDOWN_TIMEOUT_MS (20 s) would force it.
    const auto t0 = Clock::now();
    relay.Signal(SIGTERM);
    const auto st = relay.Wait(60s);
    const double stop_took = SecondsSince(t0);
    thaw.Now();
    ASSERT_TRUE(st.has_value()) << "the relay did not exit\n" << Tail(ReadFile(relay.LogPath()), 3000);
    w.Note(fmt::format("relay exited {} after {:.2f} s", DescribeStatus(*st), stop_took));
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << DescribeStatus(*st) << "\n"
                                                         << Tail(ReadFile(relay.LogPath()), 3000);
    EXPECT_LT(stop_took, 15.0);
    EXPECT_EQ(CountInFile(relay.LogPath(), "relay_shutdown_timeout"), 0);
    // Whatever it held is recovered: a drain leaves every event in ClickHouse once.
    w.Drain();
    w.VerifyExactlyOnce(backlog);
}

}  // namespace
}  // namespace eventlog::e2e
