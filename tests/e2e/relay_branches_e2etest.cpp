// Relay branches that only real processes and real faults reach, one deterministic test each:
//   - a claim prefetched when SIGTERM arrives (full claims: EVENT_BATCH_SIZE < CLICKHOUSE_BATCH_SIZE);
//   - the shutdown bound cutting a retry backoff short (ClickHouse unreachable behind a closed proxy);
//   - the relay's PostgreSQL session terminated while its send loop retries an unreachable ClickHouse, and while
//     its insert hangs in a frozen ClickHouse;
//   - the presence check failing (fault point, action throw) while a rejected chunk is being bisected;
//   - a PostgreSQL error the relay classifies fatal (a trigger refusing the acknowledgement).
// Each proves from the relay's log that it took the branch, and ends with the exactly-once check.
#include <memory>

#include "e2e_support.hpp"
#include "support/throttle_proxy.hpp"

namespace eventlog::e2e {
namespace {

using namespace std::chrono_literals;

class RelayBranches : public E2eTest {
protected:
    static ProducedEvents Committed(std::vector<std::string> ids) {
        ProducedEvents p;
        p.committed = std::move(ids);
        return p;
    }

    static std::string LogOf(const Child& relay) { return Tail(ReadFile(relay.LogPath()), 4000); }

    /// SIGTERM, then a graceful exit 0 (generous deadline).
    void StopGracefully(Child& relay) {
        relay.Signal(SIGTERM);
        const auto st = relay.Wait(60s);
        ASSERT_TRUE(st.has_value()) << relay.Name() << " did not exit after SIGTERM:\n" << LogOf(relay);
        EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << DescribeStatus(*st) << "\n" << LogOf(relay);
        world_->Note(fmt::format("{} stopped: {}", relay.Name(), DescribeStatus(*st)));
    }

    /// Starts a relay (with `settings`) whose ClickHouse traffic goes through a proxy, lets it deliver 50 events,
    /// closes the proxy while the relay is idle (ClickHouse unreachable: inserts are refused, nothing is in
    /// doubt), emits 500 more and waits until the relay retries a refused insert. Sets `relay` and appends the
    /// committed ids to `ids`. Call with ASSERT_NO_FATAL_FAILURE.
    void StartRelayThenCutClickHouse(std::map<std::string, std::string> settings, Child*& relay,
                                     std::vector<std::string>& ids) {
        auto& w = *world_;
        auto proxy = std::make_unique<testing::ThrottleProxy>("127.0.0.1", w.Srv().ch_port);
        settings["CLICKHOUSE_URI"] = proxy->Url() + "/" + w.Name();
        relay = &w.StartRelay(settings);
        const auto first = w.EmitCommitted(50);
        ids.insert(ids.end(), first.begin(), first.end());
        ASSERT_TRUE(WaitFor([&] { return w.ChRows() == 50; }, 30s, 50ms))
            << "the relay did not deliver through the proxy:\n"
            << LogOf(*relay);
        // Idle means acknowledged too: rows in ClickHouse while the insert's answer is still on its way back through
        // the proxy made the cut an insert in doubt (seen once under load), and the relay never reached a refusal.
        ASSERT_TRUE(WaitFor(
            [&] {
                return w.PgInt(
                           "SELECT (SELECT count(*) FROM eventlog.outbox_pending) + "
                           "(SELECT count(*) FROM eventlog.in_flight)") == 0;
            },
            30s, 20ms))
            << "the relay did not acknowledge the first 50:\n"
            << LogOf(*relay);
        proxy.reset();
        w.Note("proxy closed: ClickHouse unreachable");
        const auto more = w.EmitCommitted(500);
        ids.insert(ids.end(), more.begin(), more.end());
        const auto retrying = w.WaitForLogLine(*relay, "delivery_failed", 30s, 0, "action", "reconcile_and_retry");
        ASSERT_TRUE(retrying) << "the relay never retried a refused insert:\n" << LogOf(*relay);
        w.Note("relay retrying: " + retrying->Field("error"));
    }
};

// Claims of 2,000 rows (20 records of 100) come back full, so the relay starts the next claim before sending
// each one. SIGTERM while two claims are held: the relay must deliver and acknowledge both (the prefetched one is
// its own), drop its stage and exit 0; a second relay with --drain delivers the rest.
TEST_F(RelayBranches, PrefetchedClaimPendingAtSigtermIsDeliveredBeforeTheRelayExits) {
    auto& w = *world_;
    const auto ids = w.EmitCommitted(30'000);
    Child& relay = w.StartRelay({{"EVENT_BATCH_SIZE", "100"}, {"CLICKHOUSE_BATCH_SIZE", "2000"}});
    // Two claim transactions among the records at once: one being sent, one prefetched.
    auto pg = OpenPg(w.Dsn());
    const bool prefetched =
        WaitFor([&] { return pg.Exec("SELECT count(DISTINCT claimed_at) FROM eventlog.in_flight").GetInt(0, 0) >= 2; },
                30s, 2ms);
    relay.Signal(SIGTERM);
    w.Note(fmt::format("SIGTERM with a prefetched claim: {}", prefetched));
    ASSERT_TRUE(prefetched) << "never saw a prefetched claim next to the one being sent:\n" << LogOf(relay);
    const auto st = relay.Wait(60s);
    ASSERT_TRUE(st.has_value()) << "the relay did not exit after SIGTERM:\n" << LogOf(relay);
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << DescribeStatus(*st) << "\n" << LogOf(relay);
    const auto lines = ParseLog(relay.LogPath());
    const long stopping = FindLine(lines, "relay_stopping");
    const long stopped = FindLine(lines, "relay_stopped");
    EXPECT_GE(stopping, 0) << EventList(lines);
    EXPECT_GT(stopped, stopping) << EventList(lines);
    EXPECT_EQ(FindLine(lines, "relay_shutdown_timeout"), -1) << EventList(lines);
    EXPECT_EQ(FindLine(lines, "relay_prefetched_batch_left"), -1) << EventList(lines);
    // Both claims were delivered and acknowledged by this relay; the stop came mid-backlog; the stage is gone.
    EXPECT_EQ(pg.Exec("SELECT count(*) FROM eventlog.in_flight").GetInt(0, 0), 0)
        << "the stopping relay left delivery records behind";
    EXPECT_GT(pg.Exec("SELECT count(*) FROM eventlog.outbox_pending").GetInt(0, 0), 0)
        << "the backlog was gone before SIGTERM: the stop interrupted nothing";
    EXPECT_EQ(w.StageTables(), 0) << "the stopping relay did not drop its stage";
    if (stopped >= 0) {
        EXPECT_EQ(w.ChRows(), lines[static_cast<std::size_t>(stopped)].IntField("delivered"))
            << "ClickHouse holds other rows than the relay says it delivered";
    }
    w.Drain();
    w.VerifyExactlyOnce(Committed(ids));
}

// ClickHouse becomes unreachable (the relay reaches it through a proxy that is then closed: connections refused,
// nothing in doubt) while the relay has a batch to send, so it retries with backoffs of up to 4 s. SIGTERM must
// end it at the shutdown bound (2 s): not before (it keeps trying to finish its batch), and within the bound plus
// a generous margin; the records stay, and a relay that reaches ClickHouse delivers them exactly once.
TEST_F(RelayBranches, SigtermDuringARetryBackoffExitsAtTheShutdownBound) {
    auto& w = *world_;
    constexpr int kBoundMs = 2000;
    Child* cut = nullptr;
    std::vector<std::string> ids;
    ASSERT_NO_FATAL_FAILURE(StartRelayThenCutClickHouse({{"RELAY_SHUTDOWN_TIMEOUT_MS", std::to_string(kBoundMs)},
                                                         {"RELAY_BACKOFF_BASE_MS", "4000"},
                                                         {"RELAY_BACKOFF_CAP_MS", "4000"}},
                                                        cut, ids));
    Child& relay = *cut;
    const auto t0 = Clock::now();
    relay.Signal(SIGTERM);
    w.Note("SIGTERM");
    const auto st = relay.Wait(milliseconds(kBoundMs + 10'000));
    const double elapsed = SecondsSince(t0);
    ASSERT_TRUE(st.has_value()) << "the relay did not exit within RELAY_SHUTDOWN_TIMEOUT_MS + 10 s of SIGTERM:\n"
                                << LogOf(relay);
    w.Note(fmt::format("relay exited: {} after {:.3f}s", DescribeStatus(*st), elapsed));
    // Cut short by the bound, whichever check saw it first: exit 3, not a clean 0.
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 3) << DescribeStatus(*st) << "\n" << LogOf(relay);
    EXPECT_GE(elapsed, kBoundMs / 1000.0) << "the relay gave up its batch before the shutdown bound";
    const auto lines = ParseLog(relay.LogPath());
    const long failed = FindLine(lines, "delivery_failed", 0, "action", "reconcile_and_retry");
    const long stopping = FindLine(lines, "relay_stopping");
    EXPECT_GT(stopping, failed) << EventList(lines);
    // The backoff sleep gave control back and the relay returned from its loop (relay_stopped). Had it kept
    // sleeping and retrying, the CLI's watchdog would have ended the process with _exit 200 ms after the bound,
    // without that line. Which check saw the deadline first (the sleep's own bound, or the watchdog's abort,
    // relay_shutdown_timeout) is a race between two checks of the same deadline; both end the sleep.
    EXPECT_GT(FindLine(lines, "relay_stopped"), stopping) << EventList(lines);
    w.Note(FindLine(lines, "relay_shutdown_timeout") >= 0 ? "the watchdog's abort ended the sleep"
                                                          : "the sleep's own stop bound ended it");
    EXPECT_GT(w.PgInt("SELECT count(*) FROM eventlog.in_flight"), 0) << "the unsent batch's records are gone";
    const auto mark = w.MarkLogs();
    w.Drain();
    const auto drain = w.RelayLogLines(mark);
    EXPECT_GE(FindLine(drain, "batch_recovering"), 0) << "the drain recovered nothing: " << EventList(drain);
    w.VerifyExactlyOnce(Committed(ids));
}

// ClickHouse is unreachable (closed proxy: connections refused, nothing in doubt), so the relay's send loop retries
// its batch; then its PostgreSQL session is terminated. The next failed attempt must find the session gone and
// leave the batch to recovery (a transient error that would otherwise be retried: delivery_failed kind transient,
// action leave_to_recovery) instead of retrying rows it no longer owns. A relay that reaches ClickHouse fences the
// lost session's stage and delivers its records exactly once.
TEST_F(RelayBranches, SessionLostWhileRetryingAnUnreachableClickHouseLeavesTheBatchToRecovery) {
    auto& w = *world_;
    Child* cut = nullptr;
    std::vector<std::string> ids;
    ASSERT_NO_FATAL_FAILURE(StartRelayThenCutClickHouse(
        {{"RELAY_SHUTDOWN_TIMEOUT_MS", "2000"}, {"RELAY_BACKOFF_BASE_MS", "100"}, {"RELAY_BACKOFF_CAP_MS", "300"}}, cut,
        ids));
    Child& relay = *cut;
    const auto connected = w.WaitForLogLine(relay, "relay_connected");
    ASSERT_TRUE(connected) << LogOf(relay);
    const std::int64_t owner = connected->IntField("owner");
    const std::size_t mark = FileSize(relay.LogPath());
    ASSERT_TRUE(w.TerminateBackend(static_cast<int>(connected->IntField("backend_pid"))))
        << "pg_terminate_backend hit no session:\n"
        << LogOf(relay);
    const auto left = w.WaitForLogLine(relay, "delivery_failed", 30s, mark, "action", "leave_to_recovery");
    ASSERT_TRUE(left) << "the send loop went on retrying without its session:\n" << LogOf(relay);
    EXPECT_EQ(left->Field("kind"), "transient") << left->text;
    EXPECT_EQ(left->owner, owner) << left->text;
    ASSERT_NO_FATAL_FAILURE(StopGracefully(relay));
    EXPECT_GT(w.PgInt("SELECT count(*) FROM eventlog.in_flight"), 0) << "the unsent batch's records are gone";
    const auto marks = w.MarkLogs();
    w.Drain();
    const auto drain = w.RelayLogLines(marks);
    const long fenced = FindLine(drain, "stage_fenced", 0, "owner", std::to_string(owner));
    EXPECT_GE(fenced, 0) << EventList(drain);
    EXPECT_GT(FindLine(drain, "batch_recovered", 0, "dead_owner", std::to_string(owner)), fenced) << EventList(drain);
    w.VerifyExactlyOnce(Committed(ids));
}

// The relay is held inside an insert (ClickHouse frozen with SIGSTOP) when its PostgreSQL session is terminated.
// The insert times out in doubt (3 s) with the session gone, so the send loop leaves the batch to recovery; after
// SIGCONT the relay's next session fences the old stage (waiting for, or refusing, the insert the server may still
// run) and recovers the old session's records. Every event arrives exactly once.
TEST_F(RelayBranches, SessionLostWhileAnInsertHangsIsFencedAndRecoveredOnce) {
    auto& w = *world_;
    const auto ids = w.EmitCommitted(30'000);
    Child& relay = w.StartRelay(
        {{"EVENT_BATCH_SIZE", "500"}, {"CLICKHOUSE_BATCH_SIZE", "2000"}, {"CLICKHOUSE_SEND_RECEIVE_TIMEOUT", "3"}});
    const auto connected = w.WaitForLogLine(relay, "relay_connected");
    ASSERT_TRUE(connected) << LogOf(relay);
    const std::int64_t owner = connected->IntField("owner");
    const int backend = static_cast<int>(connected->IntField("backend_pid"));
    ASSERT_TRUE(WaitFor([&] { return w.ChRows() > 0; }, 30s, 20ms)) << "nothing delivered:\n" << LogOf(relay);
    const std::size_t mark = FileSize(relay.LogPath());
    const pid_t ch = w.ClickHousePid();
    ASSERT_GT(ch, 0);
    ::kill(ch, SIGSTOP);
    w.Note("clickhouse SIGSTOP");
    // Blocked in ClickHouse: its PostgreSQL session has been waiting on it for 300 ms.
    const bool blocked = WaitFor([&] { return w.BackendQuiet(backend, 300ms); }, 30s, 50ms);
    const bool terminated = blocked && w.TerminateBackend(backend);
    std::optional<LogLine> left;
    if (terminated) left = w.WaitForLogLine(relay, "delivery_failed", 30s, mark, "action", "leave_to_recovery");
    ::kill(ch, SIGCONT);
    w.Note("clickhouse SIGCONT");
    ASSERT_TRUE(blocked) << "the relay did not settle into a ClickHouse request:\n" << LogOf(relay);
    ASSERT_TRUE(terminated) << "pg_terminate_backend(" << backend << ") hit no session:\n" << LogOf(relay);
    ASSERT_TRUE(left) << "the send loop did not leave the batch to recovery:\n" << LogOf(relay);
    EXPECT_EQ(left->owner, owner) << left->text;
    const auto recovered = w.WaitForLogLine(relay, "batch_recovered", 60s, mark, "dead_owner", std::to_string(owner));
    ASSERT_TRUE(recovered) << "the old session's records were not recovered:\n" << LogOf(relay);
    // In this order: the failure, a new session, the old stage fenced, its records recovered.
    const auto lines = ParseLog(relay.LogPath(), mark);
    const std::string old_owner = std::to_string(owner);
    const long failed = FindLine(lines, "delivery_failed", 0, "action", "leave_to_recovery");
    const long reconnected = failed < 0 ? -1 : FindLine(lines, "relay_connected", static_cast<std::size_t>(failed));
    ASSERT_GT(reconnected, failed) << EventList(lines);
    EXPECT_NE(lines[static_cast<std::size_t>(reconnected)].IntField("owner"), owner) << "the owner key was reused";
    const long fenced = FindLine(lines, "stage_fenced", static_cast<std::size_t>(reconnected), "owner", old_owner);
    EXPECT_GT(fenced, reconnected) << EventList(lines);
    const long recovering =
        fenced < 0 ? -1
                   : FindLine(lines, "batch_recovering", static_cast<std::size_t>(fenced), "dead_owner", old_owner);
    EXPECT_GT(recovering, fenced) << EventList(lines);
    ASSERT_NO_FATAL_FAILURE(StopGracefully(relay));
    w.Drain();
    w.VerifyExactlyOnce(Committed(ids));
}

// A row the server rejects (a MATERIALIZED throwIf column, code 395) makes the relay bisect its chunk; the presence
// check that comes first in the bisection fails (fault point before_presence_query, action throw: one transient
// error). The relay must retry it, go on bisecting, dead-letter only the poison row and deliver its neighbours.
TEST_F(RelayBranches, PresenceCheckFailingAfterARejectionIsRetriedAndOnlyThePoisonIsDeadLettered) {
    auto& w = *world_;
    auto ch = OpenCh(w.Srv().ch_url, w.Name(), 30s);
    ch.Execute("ALTER TABLE " + w.Table() +
               " ADD COLUMN poison_check UInt8 MATERIALIZED throwIf(event_type = 'poison_event')");
    const auto ids = w.EmitCommitted(300, 150);
    const std::string poison = ids[149];
    const auto mark = w.MarkLogs();
    w.Drain(180s, {{"EVENTLOG_FAULT_POINT", "before_presence_query"},
                   {"EVENTLOG_FAULT_ACTION", "throw"},
                   {"RELAY_MAX_ATTEMPTS", "2"},
                   {"EVENT_BATCH_SIZE", "100"}});
    const auto lines = w.RelayLogLines(mark);
    const auto throws = Select(lines, "fault_point_throw");
    ASSERT_EQ(throws.size(), 1u) << EventList(lines);
    EXPECT_EQ(throws[0].Field("point"), "before_presence_query") << throws[0].text;
    // In this order: the rejection decides a bisection, the presence check before it throws, that failure is
    // retried, and the bisection goes on.
    const long rejected = FindLine(lines, "delivery_failed", 0, "action", "bisect");
    const long thrown = FindLine(lines, "fault_point_throw");
    const long retried = thrown < 0 ? -1 : FindLine(lines, "delivery_failed", static_cast<std::size_t>(thrown));
    ASSERT_GE(rejected, 0) << EventList(lines);
    EXPECT_EQ(lines[static_cast<std::size_t>(rejected)].Field("kind"), "rejected");
    EXPECT_GT(thrown, rejected) << EventList(lines);
    ASSERT_GT(retried, thrown) << EventList(lines);
    const auto& r = lines[static_cast<std::size_t>(retried)];
    EXPECT_EQ(r.Field("action"), "reconcile_and_retry") << r.text;
    EXPECT_NE(r.Field("error").find("before_presence_query"), std::string::npos) << r.text;
    EXPECT_GT(FindLine(lines, "batch_bisect", static_cast<std::size_t>(retried)), retried) << EventList(lines);
    const auto dead = Select(lines, "event_dead_lettered");
    ASSERT_EQ(dead.size(), 1u) << EventList(lines);
    EXPECT_EQ(dead[0].Field("event_id"), poison);
    w.VerifyExactlyOnce(Committed(ids), {poison});
}

// A PostgreSQL error the relay classifies fatal: a trigger refuses the acknowledgement (SQLSTATE P0001) after the
// rows were inserted. The relay must log relay_fatal and exit 1 without retrying, leaving its records; once the
// trigger is gone, the next relay fences the dead session's stage, finds the rows present and sends nothing twice.
TEST_F(RelayBranches, FatalPostgresErrorAtAcknowledgementExitsOneAndTheNextRelayFinishesOnce) {
    auto& w = *world_;
    auto pg = OpenPg(w.Dsn());
    pg.Exec(
        "CREATE FUNCTION public.e2e_refuse_ack() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'e2e: acknowledgements refused'; END $$");
    pg.Exec(
        "CREATE TRIGGER e2e_refuse_ack BEFORE INSERT ON eventlog.outbox_ack FOR EACH STATEMENT "
        "EXECUTE FUNCTION public.e2e_refuse_ack()");
    const auto ids = w.EmitCommitted(500);
    Child& relay = w.StartRelay();
    const auto st = relay.Wait(60s);
    ASSERT_TRUE(st.has_value()) << "the relay did not stop on a fatal error:\n" << LogOf(relay);
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 1) << DescribeStatus(*st) << "\n" << LogOf(relay);
    const auto lines = ParseLog(relay.LogPath());
    const auto fatal = Select(lines, "relay_fatal");
    ASSERT_EQ(fatal.size(), 1u) << EventList(lines);
    EXPECT_EQ(fatal[0].Field("code"), "P0001") << fatal[0].text;
    EXPECT_NE(fatal[0].Field("error").find("acknowledgements refused"), std::string::npos) << fatal[0].text;
    EXPECT_EQ(FindLine(lines, "relay_retry"), -1) << "a fatal error was retried: " << EventList(lines);
    // The rows reached ClickHouse before the acknowledgement failed; their records stay for the next relay.
    EXPECT_EQ(w.ChRows(), 500);
    EXPECT_GT(pg.Exec("SELECT count(*) FROM eventlog.in_flight").GetInt(0, 0), 0);
    pg.Exec("DROP TRIGGER e2e_refuse_ack ON eventlog.outbox_ack");
    const auto mark = w.MarkLogs();
    w.Drain();
    const auto drain = w.RelayLogLines(mark);
    const long fenced = FindLine(drain, "stage_fenced");
    EXPECT_GE(fenced, 0) << EventList(drain);
    EXPECT_GT(FindLine(drain, "batch_recovered"), fenced) << EventList(drain);
    const auto stopped = Select(drain, "relay_stopped");
    ASSERT_EQ(stopped.size(), 1u) << EventList(drain);
    EXPECT_EQ(stopped[0].IntField("delivered"), 0) << "the recovery sent rows that were present: " << stopped[0].text;
    w.VerifyExactlyOnce(Committed(ids));
}

}  // namespace
}  // namespace eventlog::e2e
