// PostgreSQL failover under load (label e2e). The primary dies with its host (scripts/stack.sh kill-pg: kill -9 of
// the postmaster and every backend at once) while producers commit and a relay delivers; its streaming standby is
// promoted; producers and the relay find the new primary through a multi-host DATABASE_URL
// (`postgres://USER:PASSWORD@A:a,B:b/db?target_session_attrs=read-write`, libpq's own failover) and go on.
// docs/delivery.md, "Failover", makes two promises, and each test walks one:
//
//  - Synchronous replication (the standby in synchronous_standby_names): every commit a client saw survives, so the
//    whole exactly-once check holds through two failovers in a row (A -> B -> C): each committed event once in
//    ClickHouse, no rolled-back one, nothing left in the outbox or in delivery records.
//  - Asynchronous replication: the new primary may lack the last commits of the old one. What may happen then:
//    a claim whose commit is lost after the relay inserted its rows (the rows are pending again on the new
//    primary: the relay's presence check after a lost session must find them in ClickHouse and not send them
//    twice); a lost acknowledgement (the records come back: recovery); a lost producer commit (the event is gone
//    from PostgreSQL; only synchronous replication prevents that). The test asserts no event twice, no rolled-back
//    event, and that every committed event missing from ClickHouse is one the new primary does not know either.
//
// Where the kill lands (before, during or after a claim, an insert or an acknowledgement) is left to timing: the
// producers commit continuously and the relay claims every 200 ms at most, so each kill interrupts some step of
// the protocol; the relay's log shows which.
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <eventlog/core/uuid.hpp>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "e2e_support.hpp"
#include "support/http_client.hpp"
#include "support/throttle_proxy.hpp"

namespace eventlog::e2e {
namespace {

using namespace std::chrono_literals;

constexpr const char* kSecret = "e2e-failover-secret-3c9e1f7a5d2b8e4c6a0f9d1b3e5c7a9f2d4b6e8c0a1f3d5b7e9c2a";

/// A client of `eventlog serve` on its own thread: posts batches of 1..20 events with fresh event ids, one request
/// at a time on a new connection, and sends a request again, same body, until it is answered 202: after a 503 (which
/// must carry Retry-After: the commit's outcome is unknown, or no session) or a connection closed without an answer.
/// That is what docs/http-api.md tells clients to do, and it must make every event land exactly once.
class HttpProducer {
public:
    HttpProducer(std::uint16_t port, std::string token) : port_(port), token_(std::move(token)) {}
    ~HttpProducer() { Stop(); }
    HttpProducer(const HttpProducer&) = delete;
    HttpProducer& operator=(const HttpProducer&) = delete;

    void Start() {
        thread_ = std::thread([this] { Loop(); });
    }
    /// Stops after the request in flight is answered 202 (or 60 s of retrying).
    void Stop() {
        stop_.store(true);
        if (thread_.joinable()) thread_.join();
    }
    /// Ids of events in requests answered 202. Call after Stop().
    const std::vector<std::string>& Accepted() const { return accepted_; }
    /// Ids of a request never answered 202 (gave up): present at most once. Call after Stop().
    const std::vector<std::string>& Unresolved() const { return unresolved_; }
    std::int64_t AcceptedSoFar() const { return accepted_count_.load(); }
    int Retries() const { return retries_; }
    /// Answers other than 202 and 503-with-Retry-After, described; empty when there were none.
    const std::vector<std::string>& Unexpected() const { return unexpected_; }

private:
    void Loop() {
        std::mt19937_64 rng(port_);
        std::int64_t n = 0;
        while (!stop_.load()) {
            const int k = std::uniform_int_distribution<int>(1, 20)(rng);
            std::vector<std::string> ids;
            std::string body = "[";
            for (int i = 0; i < k; ++i) {
                ids.push_back(Uuid::Random().ToString());
                body += fmt::format(R"({}{{"event_id":"{}","event_type":"http_failover","event_context":{{"n":{}}}}})",
                                    i ? "," : "", ids.back(), ++n);
            }
            body += "]";
            const auto give_up = Clock::now() + 60s;
            for (;;) {
                testing::HttpAnswer a;
                try {
                    a = testing::HttpRequest(
                        port_, "POST", "/api/v1/events", body,
                        {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + token_}});
                } catch (const std::exception&) {
                    a.status = 0;  // could not connect
                }
                if (a.status == 202) {
                    for (const auto& id : ids) {
                        if (a.body.find(id) == std::string::npos)
                            unexpected_.push_back("202 without " + id + ": " + a.body);
                    }
                    accepted_.insert(accepted_.end(), ids.begin(), ids.end());
                    accepted_count_.fetch_add(k);
                    break;
                }
                if (a.status == 503 && a.headers.count("retry-after") == 0) {
                    unexpected_.push_back("503 without Retry-After: " + a.body);
                }
                if (a.status != 503 && a.status != 0) {
                    unexpected_.push_back(fmt::format("{}: {}", a.status, a.body));
                    unresolved_.insert(unresolved_.end(), ids.begin(), ids.end());
                    break;
                }
                ++retries_;
                if (Clock::now() > give_up) {
                    unresolved_.insert(unresolved_.end(), ids.begin(), ids.end());
                    break;
                }
                std::this_thread::sleep_for(20ms);
            }
        }
    }

    std::uint16_t port_;
    std::string token_;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::vector<std::string> accepted_, unresolved_, unexpected_;
    std::atomic<std::int64_t> accepted_count_{0};
    int retries_{0};
};

class Failover : public ::testing::Test {
protected:
    struct Node {
        std::string dir;
        int port{0};
    };

    void SetUp() override {
        start_ = Clock::now();
        base_ = fmt::format("{}/.local/failover-{}", EVENTLOG_SOURCE_DIR, ::getpid());
        Shell(fmt::format("rm -rf '{}' && mkdir -p '{}'", base_, base_));
    }

    void TearDown() override {
        for (auto& p : producers_) p->Stop();
        if (http_) http_->Stop();
        if (serve_.Running()) serve_.Kill();
        if (world_) {
            world_->KillAllRelays();
            if (HasFailure()) world_->Keep();
        }
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        std::printf("[ e2e      ] %s.%s: %.1f s%s\n", info->test_suite_name(), info->name(), SecondsSince(start_),
                    world_ ? world_->Summary().c_str() : "");
        std::fflush(stdout);
        world_.reset();  // drops the test's databases on the surviving primary
        // kill -9 first: a stopped (SIGSTOP) WAL sender would hold a fast shutdown up until its timeout.
        for (const auto& n : nodes_) {
            Shell(fmt::format("'{0}' kill-pg '{1}'; '{0}' remove '{1}'", StackScript(), n.dir));
        }
        Shell(fmt::format("rm -rf '{}'", base_));
    }

    static std::string StackScript() { return std::string(EVENTLOG_SOURCE_DIR) + "/scripts/stack.sh"; }

    CommandResult Shell(const std::string& command) {
        auto env = CleanEnvironment();
        SetVar(env, "EVENTLOG_PG_FSYNC", "off");
        return RunCommand({"/bin/bash", "-c", command}, env, fmt::format("/tmp/eventlog-failover-{}.log", ::getpid()),
                          120s);
    }

    void MustShell(const std::string& command) {
        const auto r = Shell(command);
        ASSERT_TRUE(r.Ok()) << command << ": " << DescribeStatus(r.status) << "\n" << r.output;
    }

    /// A DSN for `database` on whichever node is the primary: libpq's multi-host URL, tried in order.
    std::string Dsn(const std::string& database, const std::string& user, const std::string& password) const {
        std::string hosts;
        for (const auto& n : nodes_) hosts += fmt::format("{}127.0.0.1:{}", hosts.empty() ? "" : ",", n.port);
        return fmt::format("postgres://{}:{}@{}/{}?target_session_attrs=read-write", user, password, hosts, database);
    }

    std::string SuperuserPassword() {
        const auto r = Shell(fmt::format("'{}' secret '{}' PG_SUPERUSER_PASSWORD", StackScript(), nodes_.front().dir));
        EXPECT_TRUE(r.Ok()) << r.output;
        return r.output;
    }

    /// A superuser session on node `i` itself.
    pg::Connection OpenNode(std::size_t i) {
        return OpenPg(fmt::format("postgres://postgres:{}@127.0.0.1:{}/postgres", password_, nodes_[i].port));
    }

    /// Starts the first primary.
    void StartPrimary() {
        nodes_.push_back({base_ + "/node0", FreeLoopbackPort()});
        ASSERT_NO_FATAL_FAILURE(
            MustShell(fmt::format("'{}' start-pg '{}' {}", StackScript(), nodes_[0].dir, nodes_[0].port)));
        password_ = SuperuserPassword();
    }

    /// A streaming standby of node `from`; with `synchronous`, node `from` waits for it at every commit.
    void AddStandby(std::size_t from, bool synchronous, int port = 0) {
        const std::size_t i = nodes_.size();
        nodes_.push_back({fmt::format("{}/node{}", base_, i), port != 0 ? port : FreeLoopbackPort()});
        ASSERT_NO_FATAL_FAILURE(MustShell(fmt::format("'{}' start-pg-standby '{}' {} '{}'", StackScript(),
                                                      nodes_[i].dir, nodes_[i].port, nodes_[from].dir)));
        auto primary = OpenNode(from);
        primary.Exec(
            fmt::format("ALTER SYSTEM SET synchronous_standby_names = '{}'", synchronous ? "eventlog_standby" : ""));
        primary.Exec("SELECT pg_reload_conf()");
        const std::string want = synchronous ? "sync" : "async";
        ASSERT_TRUE(WaitFor(
            [&] {
                const auto r = primary.Exec("SELECT sync_state FROM pg_stat_replication");
                return r.Rows() == 1 && r.Get(0, 0) == want;
            },
            30s, 50ms))
            << "node" << i << " is not a " << want << " standby of node" << from;
    }

    /// Waits until node `standby` has replayed everything node `primary` has written so far.
    void WaitCaughtUp(std::size_t primary, std::size_t standby) {
        auto p = OpenNode(primary);
        const std::string lsn(p.Exec("SELECT pg_current_wal_lsn()::text").Get(0, 0));
        auto s = OpenNode(standby);
        ASSERT_TRUE(WaitFor(
            [&] { return s.Exec("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", {lsn}).Get(0, 0) == "t"; }, 30s, 20ms))
            << "node" << standby << " did not catch up with node" << primary;
    }

    /// Builds the world on node 0 (databases and roles are replicated to the standbys) with the multi-host DSN.
    void MakeWorld() {
        world_ = std::make_unique<World>(std::string("Failover.") +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
        const std::string err = world_->Setup([&](Servers& s) {
            s.pg_dsn = Dsn("postgres", "postgres", password_);
            s.pg_port = nodes_.front().port;
        });
        ASSERT_TRUE(err.empty()) << err;
    }

    void StartProducers(int n) {
        for (int i = 0; i < n; ++i) {
            producers_.push_back(std::make_unique<Producer>(world_->ProducerDsn(), world_->Seed() + i, 5ms));
            producers_.back()->Start();
        }
    }

    /// A primary with an asynchronous standby that has caught up, the test's world on the primary, and three
    /// producers writing.
    void StartAsynchronousPairWithProducers() {
        ASSERT_NO_FATAL_FAILURE(StartPrimary());
        ASSERT_NO_FATAL_FAILURE(AddStandby(0, /*synchronous=*/false));
        ASSERT_NO_FATAL_FAILURE(MakeWorld());
        ASSERT_NO_FATAL_FAILURE(WaitCaughtUp(0, 1));
        StartProducers(3);
    }

    /// SIGTERM to a relay that must still be running; it must exit 0 within 30 s.
    static void StopRelay(Child& relay) {
        EXPECT_TRUE(relay.Running()) << relay.Name() << " exited: " << Tail(ReadFile(relay.LogPath()), 3000);
        relay.Signal(SIGTERM);
        const auto st = relay.Wait(30s);
        EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << Tail(ReadFile(relay.LogPath()), 3000);
    }

    std::int64_t Committed() const {
        std::int64_t sum = 0;
        for (const auto& p : producers_) sum += p->CommittedSoFar();
        if (http_) sum += http_->AcceptedSoFar();
        return sum;
    }

    /// `eventlog serve` as the producer role (multi-host DSN) on a free port, with a key for `http_`.
    void StartHttp() {
        auto& w = *world_;
        const auto created = w.Eventlog({"apikey", "create", "--name", "failover"},
                                        {{"SECRET_KEY", kSecret}, {"DATABASE_URL", w.Dsn()}}, 30s);
        ASSERT_TRUE(created.Ok()) << created.output;
        const auto lines = SplitLines(created.output);
        ASSERT_FALSE(lines.empty());
        const std::uint16_t port = FreeLoopbackPort();
        serve_log_ = w.LogDir() + "/serve.log";
        serve_ = Child::Spawn("serve", {EVENTLOG_BINARY, "serve", "--listen", "127.0.0.1:" + std::to_string(port)},
                              w.ChildEnv({{"SECRET_KEY", kSecret}, {"DATABASE_URL", w.ProducerDsn()}}), serve_log_);
        ASSERT_TRUE(WaitFor([&] { return CountInFile(serve_log_, "http_listening") > 0 || !serve_.Running(); }, 30s));
        ASSERT_TRUE(serve_.Running()) << Tail(ReadFile(serve_log_), 3000);
        http_ = std::make_unique<HttpProducer>(port, lines.back());
        http_->Start();
    }

    /// Stops the producers and returns what they did, merged.
    ProducedEvents StopProducers() {
        ProducedEvents all;
        if (http_) {
            http_->Stop();
            // An event of a request answered 202 is committed; one never answered so may be there at most once.
            all.committed = http_->Accepted();
            all.in_doubt = http_->Unresolved();
            EXPECT_TRUE(http_->Unexpected().empty())
                << http_->Unexpected().size() << " unexpected answers, e.g. " << http_->Unexpected().front();
            EXPECT_TRUE(http_->Unresolved().empty()) << "a request was never answered 202 in 60 s";
            world_->Counts()["http_events_accepted"] = static_cast<int>(http_->Accepted().size());
            world_->Counts()["http_retries"] = http_->Retries();
            serve_.Signal(SIGTERM);
            const auto st = serve_.Wait(30s);
            EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << Tail(ReadFile(serve_log_), 3000);
            // Each 503 was logged with its cause, as a warning: the client's resend is the remedy, nobody's page.
            int answered_503 = 0, warned = 0, errors = 0;
            for (const auto& l : ParseLog(serve_log_)) {
                if (l.event == "http_request" && l.Field("status") == "503") ++answered_503;
                if (l.event == "http_request_failed") ++(l.Field("level") == "warning" ? warned : errors);
            }
            EXPECT_EQ(errors, 0) << Tail(ReadFile(serve_log_), 3000);
            EXPECT_EQ(warned, answered_503);
        }
        for (auto& p : producers_) {
            p->Stop();
            const auto& e = p->Events();
            all.committed.insert(all.committed.end(), e.committed.begin(), e.committed.end());
            all.rolled_back.insert(all.rolled_back.end(), e.rolled_back.begin(), e.rolled_back.end());
            all.in_doubt.insert(all.in_doubt.end(), e.in_doubt.begin(), e.in_doubt.end());
            all.committed_txns += e.committed_txns;
            all.rolled_back_txns += e.rolled_back_txns;
            all.failed_txns += e.failed_txns;
        }
        return all;
    }

    /// Lets the load run until ClickHouse has `rows` more rows and producers committed more, then kills node `dead`'s
    /// host and promotes node `next`; returns once producers committed on the new primary.
    /// With `lose_claims` (asynchronous replication only; a synchronous primary would wait instead), the relay is
    /// first stopped (SIGSTOP) until a backlog has built up and reached the standby; then node `dead`'s WAL sender
    /// is stopped and the relay continued for 700 ms before the kill: it claims and delivers that backlog, and
    /// none of its claims reaches the standby, so the rows it delivered are pending again on the new primary.
    /// With `kill_relay`, that relay is killed (kill -9) after the primary and before the promotion.
    /// `at_kill`, when given, runs right before the kill and again right after the promotion.
    void FailOver(std::size_t dead, std::size_t next, Child* lose_claims = nullptr, bool kill_relay = false,
                  const std::function<void()>& at_kill = {}) {
        auto& w = *world_;
        const auto rows = w.ChRows();
        const auto committed = Committed();
        ASSERT_TRUE(WaitFor([&] { return w.ChRows() >= rows + 2000 && Committed() >= committed + 3000; }, 60s, 20ms))
            << "no delivery before the failover: ClickHouse " << w.ChRows() << " rows, committed " << Committed();
        w.Note(fmt::format("kill -9 node{} (the primary) with {} rows in ClickHouse, {} committed", dead, w.ChRows(),
                           Committed()));
        if (lose_claims != nullptr) {
            lose_claims->Signal(SIGSTOP);
            const auto backlog_from = Committed();
            ASSERT_TRUE(WaitFor([&] { return Committed() >= backlog_from + 2000; }, 30s, 20ms));
            ASSERT_NO_FATAL_FAILURE(WaitCaughtUp(dead, next));
            const auto senders = OpenNode(dead).Exec("SELECT pid FROM pg_stat_replication");
            ASSERT_EQ(senders.Rows(), 1);
            ASSERT_EQ(::kill(static_cast<pid_t>(senders.GetInt(0, 0)), SIGSTOP), 0);
            lose_claims->Signal(SIGCONT);
            w.Note(
                fmt::format("relay stopped while {} events were committed and replicated; then the WAL sender "
                            "stopped and the relay continued: from here the primary's commits are its own",
                            Committed() - backlog_from));
            const auto rows_then = w.ChRows();
            std::this_thread::sleep_for(700ms);
            auto node = OpenNode(dead);
            w.Note(fmt::format("{} rows delivered while replication was stopped; primary at {}, sent {}",
                               w.ChRows() - rows_then, node.Exec("SELECT pg_current_wal_lsn()::text").Get(0, 0),
                               node.Exec("SELECT sent_lsn::text || ' ' || state FROM pg_stat_replication").Get(0, 0)));
        }
        if (at_kill) at_kill();
        ASSERT_NO_FATAL_FAILURE(MustShell(fmt::format("'{}' kill-pg '{}'", StackScript(), nodes_[dead].dir)));
        ++w.Counts()["primary_kill9"];
        std::this_thread::sleep_for(500ms);  // producers and relay fail and retry against a dead primary and a standby
        if (kill_relay && lose_claims != nullptr) w.KillRelay(*lose_claims);
        ASSERT_NO_FATAL_FAILURE(MustShell(fmt::format("'{}' promote-pg '{}'", StackScript(), nodes_[next].dir)));
        w.Note(fmt::format("node{} promoted", next));
        if (at_kill) at_kill();
        const auto before = Committed();
        ASSERT_TRUE(WaitFor([&] { return Committed() >= before + 1000; }, 60s, 20ms))
            << "the producers did not commit on the promoted node" << next;
        w.Note(fmt::format("producers committed on node{}", next));
    }

    /// Stops the producers, waits until the outbox and the delivery records are empty on the primary and stops the
    /// relay, which must have lived through every failover.
    ProducedEvents Finish(Child& relay) {
        auto produced = StopProducers();
        auto& w = *world_;
        EXPECT_TRUE(WaitFor(
            [&] {
                try {
                    return w.PgInt(
                               "SELECT (SELECT count(*) FROM eventlog.outbox_pending) + "
                               "(SELECT count(*) FROM eventlog.in_flight)") == 0;
                } catch (const Error&) {
                    return false;
                }
            },
            90s, 100ms))
            << "the relay did not drain the new primary";
        StopRelay(relay);
        w.Note(fmt::format("drained; {} committed, {} in doubt, {} rolled back", produced.committed.size(),
                           produced.in_doubt.size(), produced.rolled_back.size()));
        return produced;
    }

    /// The asynchronous failover's outcome: claims delivered and then lost with the old primary were found in
    /// ClickHouse by the relay whose log is `relay_log` (not sent again), no event is in ClickHouse twice, no
    /// rolled-back one is there, and every committed event missing from ClickHouse is one the new primary lacks too.
    void CheckLostClaims(const ProducedEvents& produced, const std::vector<std::string>& relay_logs) {
        auto& w = *world_;
        ASSERT_GT(produced.committed.size(), 3'000u);
        // The dangerous interleaving happened: claims the relay had delivered were lost with the old primary, their
        // rows were pending again on the new one, and a relay found them in ClickHouse instead of sending them twice.
        std::int64_t found_present = 0;
        for (const auto& path : relay_logs) {
            for (const auto& l : Select(ParseLog(path), "batch_reconciled")) {
                found_present += l.IntField("already_in_clickhouse");
            }
        }
        EXPECT_GT(found_present, 0) << "no delivered claim was lost in the failover: the test did not walk its case";
        w.Counts()["events_found_in_clickhouse_after_failover"] = static_cast<int>(found_present);

        // What the new primary knows: every id its registry took (a committed producer transaction it received).
        auto pg = Retrying([&] { return OpenPg(w.Dsn()); });
        std::unordered_set<std::string> known;
        const auto r = pg.Exec("SELECT event_id::text FROM eventlog.event_ids");
        for (int i = 0; i < r.Rows(); ++i) known.emplace(r.Get(i, 0));
        EXPECT_EQ(pg.Exec("SELECT count(*) FROM eventlog.dead_letter").GetInt(0, 0), 0);

        auto ch = OpenCh(w.Srv().ch_url, w.Name(), 60s);
        std::unordered_map<std::string, int> seen;
        for (auto& id : SplitLines(Retrying([&] {
                 return ch.Query(fmt::format("SELECT toString(event_id) FROM {} FORMAT TabSeparated", w.Table()));
             }))) {
            ++seen[id];
        }
        std::vector<std::string> duplicated, phantom, lost_by_relay, unexpected;
        std::int64_t lost_by_failover = 0;
        const std::unordered_set<std::string> rolled(produced.rolled_back.begin(), produced.rolled_back.end());
        std::unordered_set<std::string> attempted(produced.committed.begin(), produced.committed.end());
        attempted.insert(produced.in_doubt.begin(), produced.in_doubt.end());
        for (const auto& [id, n] : seen) {
            if (n > 1) duplicated.push_back(id);
            if (rolled.count(id)) phantom.push_back(id);
            if (!attempted.count(id)) unexpected.push_back(id);
        }
        for (const auto& id : produced.committed) {
            if (seen.count(id)) continue;
            if (known.count(id)) {
                lost_by_relay.push_back(id);  // the new primary has it, the relay did not deliver it
            } else {
                ++lost_by_failover;  // committed on the old primary, never replicated: asynchronous replication's loss
            }
        }
        w.Counts()["events_committed"] = static_cast<int>(produced.committed.size());
        w.Counts()["events_lost_by_async_replication"] = static_cast<int>(lost_by_failover);
        w.Counts()["clickhouse_rows"] = static_cast<int>(seen.size());
        EXPECT_TRUE(duplicated.empty()) << duplicated.size() << " events are in ClickHouse more than once, e.g. "
                                        << duplicated.front() << "\n"
                                        << w.Timeline();
        EXPECT_TRUE(phantom.empty()) << phantom.size() << " rolled-back events in ClickHouse";
        EXPECT_TRUE(unexpected.empty()) << unexpected.size() << " unknown event ids in ClickHouse";
        EXPECT_TRUE(lost_by_relay.empty())
            << lost_by_relay.size() << " events the new primary has are missing from ClickHouse, e.g. "
            << lost_by_relay.front();
    }

    std::unique_ptr<World> world_;
    std::vector<std::unique_ptr<Producer>> producers_;
    std::unique_ptr<HttpProducer> http_;
    Child serve_;
    std::string serve_log_;
    std::vector<Node> nodes_;
    std::string base_;
    std::string password_;
    Clock::time_point start_;
};

TEST_F(Failover, WithASynchronousStandbyTwoFailoversUnderLoadLoseAndDuplicateNothing) {
    ASSERT_NO_FATAL_FAILURE(StartPrimary());
    ASSERT_NO_FATAL_FAILURE(AddStandby(0, /*synchronous=*/true));
    nodes_.push_back({base_ + "/node2", FreeLoopbackPort()});  // named in the DSN now, made after the first failover
    ASSERT_NO_FATAL_FAILURE(MakeWorld());
    ASSERT_NO_FATAL_FAILURE(WaitCaughtUp(0, 1));
    auto& w = *world_;
    StartProducers(2);
    ASSERT_NO_FATAL_FAILURE(StartHttp());
    Child& relay = w.StartRelay();

    ASSERT_NO_FATAL_FAILURE(FailOver(0, 1));
    // node2: a synchronous standby of the new primary, then the second failover.
    const Node third = nodes_.back();
    nodes_.pop_back();
    ASSERT_NO_FATAL_FAILURE(AddStandby(1, /*synchronous=*/true, third.port));
    ASSERT_NO_FATAL_FAILURE(FailOver(1, 2));

    const auto produced = Finish(relay);
    EXPECT_GT(produced.committed.size(), 10'000u);
    w.VerifyExactlyOnce(produced);
    // One relay process lived through both failovers: its sessions were on node0, then node1, then node2 (a
    // session may also be lost and made again on the same node).
    std::vector<std::string> servers;
    for (const auto& l : Select(ParseLog(relay.LogPath()), "relay_connected")) {
        const auto server = l.Field("postgres_server");
        if (servers.empty() || servers.back() != server) servers.push_back(server);
    }
    const std::vector<std::string> expected{fmt::format("127.0.0.1:{}", nodes_[0].port),
                                            fmt::format("127.0.0.1:{}", nodes_[1].port),
                                            fmt::format("127.0.0.1:{}", nodes_[2].port)};
    EXPECT_EQ(servers, expected) << Tail(ReadFile(relay.LogPath()), 3000);
}

TEST_F(Failover, WithAnAsynchronousStandbyNothingIsDuplicatedAndOnlyWhatTheNewPrimaryLacksIsMissing) {
    ASSERT_NO_FATAL_FAILURE(StartAsynchronousPairWithProducers());
    Child& relay = world_->StartRelay();
    ASSERT_NO_FATAL_FAILURE(FailOver(0, 1, /*lose_claims=*/&relay));
    const auto produced = Finish(relay);
    ASSERT_NO_FATAL_FAILURE(CheckLostClaims(produced, {relay.LogPath()}));
}

// (issue 19: "with 1 and 3 relays") Three relays at an asynchronous failover: claims of any of them delivered and then
// lost with the old primary are pending again on the new one; whichever relay claims them must find them in
// ClickHouse, and none may send them twice. The first relay is the one paused while the backlog replicates (the
// others keep delivering throughout), so that claims are cut after the WAL sender stops.
TEST_F(Failover, ThreeRelaysAtAnAsynchronousFailoverDuplicateNothing) {
    ASSERT_NO_FATAL_FAILURE(StartAsynchronousPairWithProducers());
    auto& w = *world_;
    Child& first = w.StartRelay();
    Child& second = w.StartRelay();
    Child& third = w.StartRelay();
    ASSERT_NO_FATAL_FAILURE(FailOver(0, 1, /*lose_claims=*/&first));
    const auto produced = Finish(first);
    StopRelay(second);
    StopRelay(third);
    ASSERT_NO_FATAL_FAILURE(CheckLostClaims(produced, {first.LogPath(), second.LogPath(), third.LogPath()}));
}

// (issue 19) A relay pointed at a standby refuses to claim or acknowledge there, with an error that names the
// standby and says what to do (delivery paused, retried), and delivers once that node is promoted. Before, it logged
// warnings "cannot execute LISTEN during recovery (SQLSTATE 25006)" as a transient failure, about five a second, and
// never named the cause (seen with the check disabled: the test fails on the missing reason).
TEST_F(Failover, ARelayPointedAtAStandbyRefusesWithAClearErrorUntilItIsPromoted) {
    ASSERT_NO_FATAL_FAILURE(StartPrimary());
    ASSERT_NO_FATAL_FAILURE(AddStandby(0, /*synchronous=*/false));
    ASSERT_NO_FATAL_FAILURE(MakeWorld());
    auto& w = *world_;
    ProducedEvents produced;
    {
        auto producer = OpenPg(w.ProducerDsn());
        const auto r = producer.Exec(
            "SELECT eventlog.emit('standby_test', json_build_object('i', i))::text FROM generate_series(1, 100) i");
        for (int i = 0; i < r.Rows(); ++i) produced.committed.emplace_back(r.Get(i, 0));
    }
    ASSERT_NO_FATAL_FAILURE(WaitCaughtUp(0, 1));
    // The relay role's DSN with the standby as its only host.
    std::string dsn = w.RelayDsn();
    const auto at = dsn.find('@');
    const auto slash = dsn.find('/', at);
    dsn =
        dsn.substr(0, at + 1) + fmt::format("127.0.0.1:{}", nodes_[1].port) + dsn.substr(slash, dsn.find('?') - slash);
    Child& relay = w.StartRelay({{"DATABASE_URL", dsn}});
    const auto refused = [&] {
        for (const auto& l : Select(ParseLog(relay.LogPath()), "delivery_paused")) {
            if (l.Field("reason").find("is a standby (in recovery)") != std::string::npos) return true;
        }
        return false;
    };
    ASSERT_TRUE(WaitFor(refused, 30s, 100ms)) << Tail(ReadFile(relay.LogPath()), 3000);
    EXPECT_EQ(w.ChRows(), 0);
    EXPECT_TRUE(relay.Running());
    ASSERT_NO_FATAL_FAILURE(MustShell(fmt::format("'{}' kill-pg '{}'", StackScript(), nodes_[0].dir)));
    ASSERT_NO_FATAL_FAILURE(MustShell(fmt::format("'{}' promote-pg '{}'", StackScript(), nodes_[1].dir)));
    EXPECT_TRUE(WaitFor([&] { return w.ChRows() == 100; }, 60s, 100ms)) << Tail(ReadFile(relay.LogPath()), 3000);
    relay.Signal(SIGTERM);
    const auto status = relay.Wait(60s);
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(*status);
    w.VerifyExactlyOnce(produced);
}

// (issue 18, item 3) The same lost claims, but the relay that saw the failover is gone (kill -9 before the
// promotion) and a new relay process starts on the promoted node: it has no memory of a lost session. The window is
// durable (the server's timeline changed: migration 0012), so it checks its claims all the same. Seen failing with
// the durable window disabled: the new relay sent the lost claims' rows again.
TEST_F(Failover, ARelayStartedAfterAnAsynchronousFailoverDuplicatesNothing) {
    ASSERT_NO_FATAL_FAILURE(StartAsynchronousPairWithProducers());
    Child& first = world_->StartRelay();
    ASSERT_NO_FATAL_FAILURE(FailOver(0, 1, /*lose_claims=*/&first, /*kill_relay=*/true));
    Child& second = world_->StartRelay();
    const auto produced = Finish(second);
    ASSERT_NO_FATAL_FAILURE(CheckLostClaims(produced, {second.LogPath()}));
    const auto log = ParseLog(second.LogPath());
    EXPECT_FALSE(Select(log, "presence_window_open").empty()) << "the new relay did not open the durable window";
}

// (issue 18, item 3) Two relays at an asynchronous failover, one of them sending through a slow link (25 KiB/s:
// each of its inserts takes seconds), so that an insert is on its way when the primary dies. Its session is gone
// with the primary, its claim may be lost (its rows pending again) or its record kept; either way, no relay may
// check those rows for presence while the insert can still land: recovery fences that session's stage first.
TEST_F(Failover, TwoRelaysWithASlowInsertInFlightAtAnAsynchronousFailoverDuplicateNothing) {
    ASSERT_NO_FATAL_FAILURE(StartAsynchronousPairWithProducers());
    auto& w = *world_;
    testing::ThrottleProxy proxy("127.0.0.1", w.Srv().ch_port, 25 * 1024);
    // Its graceful stop may wait for an insert on the slow link (seconds): the shutdown bound is raised to match the
    // link's timeout, or a SIGTERM during such an insert ends in exit 3 (seen once in CI, the insert still uploading).
    Child& slow = w.StartRelay({{"CLICKHOUSE_URI", proxy.Url() + "/" + w.Name()},
                                {"CLICKHOUSE_SEND_RECEIVE_TIMEOUT", "120"},
                                {"RELAY_SHUTDOWN_TIMEOUT_MS", "130000"}});
    Child& fast = w.StartRelay();
    std::vector<std::uint64_t> uploaded;  // the slow link's bytes before the kill and after the promotion
    const auto at_kill = [&] {
        if (uploaded.empty()) {
            // The kill must find an insert of the slow relay on its way: wait until the link carries bytes (seen
            // once in CI: the kill fell between two of its inserts, and the test's premise failed).
            const bool flowing = WaitFor(
                [&] {
                    const auto before = proxy.BytesUpstream();
                    std::this_thread::sleep_for(100ms);
                    return proxy.BytesUpstream() > before;
                },
                30s, 1ms);
            EXPECT_TRUE(flowing) << "the slow relay never uploaded before the kill";
        }
        uploaded.push_back(proxy.BytesUpstream());
    };
    ASSERT_NO_FATAL_FAILURE(FailOver(0, 1, /*lose_claims=*/&fast, /*kill_relay=*/false, at_kill));
    ASSERT_EQ(uploaded.size(), 2u);
    EXPECT_GT(uploaded[1], uploaded[0]) << "no insert of the slow relay was on its way across the failover";
    w.Counts()["slow_link_kib_across_failover"] = static_cast<int>((uploaded[1] - uploaded[0]) / 1024);
    const auto produced = Finish(fast);
    slow.Signal(SIGTERM);
    const auto st = slow.Wait(150s);
    EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << Tail(ReadFile(slow.LogPath()), 3000);
    ASSERT_NO_FATAL_FAILURE(CheckLostClaims(produced, {fast.LogPath(), slow.LogPath()}));
}

}  // namespace
}  // namespace eventlog::e2e
