// Graceful shutdown of `eventlog relay`: the first SIGTERM lets the batch in flight finish and exits 0 (bounded by
// RELAY_SHUTDOWN_TIMEOUT_MS); a second signal exits at once. Either way a drain afterwards leaves every committed
// event in ClickHouse exactly once.
//
// No test bets on how fast a loaded machine is: signals are sent once the relay's log shows it is ready for them,
// exits are awaited with generous deadlines, and what is asserted is the order of events in the relay's log (and
// deadlines that only the path under test can meet: ClickHouse stays frozen with a 60 s request timeout).
#include "e2e_support.hpp"

namespace eventlog::e2e {
namespace {

using namespace std::chrono_literals;

/// Large enough that a graceful stop never meets it on a loaded machine.
constexpr int kShutdownTimeoutMs = 30'000;

class Shutdown : public E2eTest {
protected:
    /// A backlog large enough that the relay is busy when the signal arrives, plus a running producer.
    void WithBacklog(Producer& producer) {
        auto pg = OpenPg(world_->Dsn());
        pg::Transaction tx(pg);
        const auto r = tx.Exec(
            "SELECT eventlog.emit('e2e_event', json_build_object('n', g)::json) FROM generate_series(1, 30000) g");
        tx.Commit();
        for (int i = 0; i < r.Rows(); ++i) backlog_.committed.emplace_back(r.Get(i, 0));
        producer.Start();
    }

    ProducedEvents AllEvents(const Producer& producer) {
        ProducedEvents all = producer.Events();
        all.committed.insert(all.committed.end(), backlog_.committed.begin(), backlog_.committed.end());
        return all;
    }

    /// Waits until the relay has delivered something (so it is mid-stream, not starting up).
    void WaitForProgress() {
        auto ch = OpenCh(world_->Srv().ch_url, world_->Name(), 5s);
        const auto until = Clock::now() + 30s;
        while (Clock::now() < until) {
            try {
                if (std::stoll(ch.Query("SELECT count() FROM " + world_->Table())) > 0) return;
            } catch (const Error&) {
            }
            std::this_thread::sleep_for(20ms);
        }
        ADD_FAILURE() << "the relay delivered nothing within 30 s";
    }

    /// Starts a relay, waits until it delivers, then freezes ClickHouse (SIGSTOP) and waits until the relay is held
    /// inside a ClickHouse request (its PostgreSQL session has been waiting on it for 300 ms). The caller sends
    /// SIGCONT to ClickHousePid().
    Child& StartRelayThenFreezeClickHouse(const std::string& shutdown_timeout_ms, const std::string& send_timeout_s) {
        Child& relay = world_->StartRelay({{"EVENT_BATCH_SIZE", "1000"},
                                           {"RELAY_SHUTDOWN_TIMEOUT_MS", shutdown_timeout_ms},
                                           {"CLICKHOUSE_SEND_RECEIVE_TIMEOUT", send_timeout_s}});
        const auto connected = world_->WaitForLogLine(relay, "relay_connected");
        EXPECT_TRUE(connected) << "the relay never connected:\n" << Tail(ReadFile(relay.LogPath()), 3000);
        WaitForProgress();
        const pid_t ch = world_->ClickHousePid();
        EXPECT_GT(ch, 0);
        ::kill(ch, SIGSTOP);
        world_->Note("clickhouse SIGSTOP");
        if (connected) {
            const int backend = static_cast<int>(connected->IntField("backend_pid"));
            EXPECT_TRUE(WaitFor([&] { return world_->BackendQuiet(backend, 300ms); }, 30s, 50ms))
                << "the relay did not settle into a ClickHouse request while ClickHouse was frozen";
            world_->Note("relay blocked in ClickHouse");
        }
        return relay;
    }

    /// Index of `event` in `lines` (-1 when absent).
    static long At(const std::vector<LogLine>& lines, const std::string& event) { return FindLine(lines, event); }

    ProducedEvents backlog_;
};

TEST_F(Shutdown, SigtermFinishesTheBatchAndExitsZero) {
    auto& w = *world_;
    Producer producer(w.ProducerDsn(), w.Rng()());
    WithBacklog(producer);
    Child& relay =
        w.StartRelay({{"EVENT_BATCH_SIZE", "1000"}, {"RELAY_SHUTDOWN_TIMEOUT_MS", std::to_string(kShutdownTimeoutMs)}});
    WaitForProgress();
    const auto t0 = Clock::now();
    relay.Signal(SIGTERM);
    w.Note("SIGTERM");
    const auto st = relay.Wait(milliseconds(kShutdownTimeoutMs + 30'000));
    ASSERT_TRUE(st.has_value()) << "the relay did not exit after SIGTERM\n" << Tail(ReadFile(relay.LogPath()), 3000);
    w.Note(fmt::format("relay exited: {} after {:.3f}s", DescribeStatus(*st), SecondsSince(t0)));
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << DescribeStatus(*st) << "\n"
                                                         << Tail(ReadFile(relay.LogPath()), 3000);
    // It finished the batch itself: relay_stopping, then relay_stopped, and the shutdown bound never fired.
    const auto lines = ParseLog(relay.LogPath());
    EXPECT_GE(At(lines, "relay_stopping"), 0) << EventList(lines);
    EXPECT_GT(At(lines, "relay_stopped"), At(lines, "relay_stopping")) << EventList(lines);
    EXPECT_EQ(At(lines, "relay_shutdown_timeout"), -1) << EventList(lines);
    // A graceful stop acknowledges its batch: nothing of this relay is left in flight.
    auto pg = OpenPg(w.Dsn());
    EXPECT_EQ(pg.Exec("SELECT count(*) FROM eventlog.in_flight").GetInt(0, 0), 0)
        << "a graceful stop left a delivery record behind";
    producer.Stop();
    w.Drain();
    w.VerifyExactlyOnce(AllEvents(producer));
}

// The relay is held inside a batch (ClickHouse frozen, 60 s request timeout, 60 s shutdown bound) so that the
// first SIGTERM cannot complete; the second SIGTERM, sent once the first was taken (relay_stopping), must end the
// process (exit 130, relay_exit_now) while ClickHouse is still frozen, and the abandoned batch is recovered by the
// drain.
TEST_F(Shutdown, SecondSignalExitsAtOnce) {
    auto& w = *world_;
    Producer producer(w.ProducerDsn(), w.Rng()());
    WithBacklog(producer);
    Child& relay = StartRelayThenFreezeClickHouse("60000", "60");
    const pid_t ch = w.ClickHousePid();
    const auto t0 = Clock::now();
    relay.Signal(SIGTERM);
    w.Note("SIGTERM");
    const auto stopping = w.WaitForLogLine(relay, "relay_stopping", 30s);
    std::optional<int> st;
    if (stopping) {
        relay.Signal(SIGTERM);
        w.Note("second SIGTERM after relay_stopping");
        // Nothing else can end the relay within this wait: ClickHouse stays frozen and both bounds are 60 s.
        st = relay.Wait(30s);
    }
    ::kill(ch, SIGCONT);
    w.Note("clickhouse SIGCONT");
    ASSERT_TRUE(stopping) << "no relay_stopping line after the first SIGTERM\n"
                          << Tail(ReadFile(relay.LogPath()), 3000);
    ASSERT_TRUE(st.has_value()) << "the relay did not exit after a second SIGTERM\n"
                                << Tail(ReadFile(relay.LogPath()), 3000);
    w.Note(fmt::format("relay exited: {} after {:.3f}s", DescribeStatus(*st), SecondsSince(t0)));
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 130) << "expected exit 130, got " << DescribeStatus(*st);
    const auto lines = ParseLog(relay.LogPath());
    EXPECT_GT(At(lines, "relay_exit_now"), At(lines, "relay_stopping")) << EventList(lines);
    EXPECT_EQ(At(lines, "relay_stopped"), -1) << "a batch finished with ClickHouse frozen? " << EventList(lines);
    EXPECT_EQ(At(lines, "relay_shutdown_timeout"), -1) << EventList(lines);
    producer.Stop();
    w.Drain();
    w.VerifyExactlyOnce(AllEvents(producer));
}

// ClickHouse hangs (SIGSTOP) while the relay inserts; SIGTERM must still end the relay through the shutdown
// bound (RELAY_SHUTDOWN_TIMEOUT_MS = 1 s: relay_stopping, then relay_shutdown_timeout, then exit 0, not before the
// bound), although the insert in flight would block for 60 s; the abandoned batch is recovered by the drain.
TEST_F(Shutdown, SigtermWhileClickHouseHangsRespectsTheTimeout) {
    auto& w = *world_;
    Producer producer(w.ProducerDsn(), w.Rng()());
    WithBacklog(producer);
    Child& relay = StartRelayThenFreezeClickHouse("1000", "60");
    const pid_t ch = w.ClickHousePid();
    const auto t0 = Clock::now();
    relay.Signal(SIGTERM);
    w.Note("SIGTERM");
    // Only the shutdown bound can end the relay within this wait: ClickHouse stays frozen, its timeout is 60 s.
    const auto st = relay.Wait(30s);
    const double elapsed = SecondsSince(t0);
    ::kill(ch, SIGCONT);
    w.Note("clickhouse SIGCONT");
    ASSERT_TRUE(st.has_value()) << "the relay did not exit after SIGTERM while ClickHouse hung\n"
                                << Tail(ReadFile(relay.LogPath()), 3000);
    w.Note(fmt::format("relay exited: {} after {:.3f}s", DescribeStatus(*st), elapsed));
    // A stop the timeout forced is not a clean stop: exit status 3 (it was 0, indistinguishable for a supervisor).
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 3) << DescribeStatus(*st);
    EXPECT_GE(elapsed, 1.0) << "the relay left before RELAY_SHUTDOWN_TIMEOUT_MS instead of waiting for its batch";
    const auto lines = ParseLog(relay.LogPath());
    EXPECT_GE(At(lines, "relay_stopping"), 0) << EventList(lines);
    EXPECT_GT(At(lines, "relay_shutdown_timeout"), At(lines, "relay_stopping")) << EventList(lines);
    EXPECT_EQ(At(lines, "relay_exit_now"), -1) << EventList(lines);
    producer.Stop();
    w.Drain();
    w.VerifyExactlyOnce(AllEvents(producer));
}

}  // namespace
}  // namespace eventlog::e2e
