// Graceful shutdown of `eventlog relay`: the first SIGTERM lets the batch in flight finish and exits 0 within
// RELAY_SHUTDOWN_TIMEOUT_MS (+2 s of slack); a second signal exits at once. Either way a drain afterwards
// leaves every committed event in ClickHouse exactly once.
#include "e2e_support.hpp"

namespace eventlog::e2e {
namespace {

using namespace std::chrono_literals;

constexpr int kShutdownTimeoutMs = 4000;

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

    /// Starts a relay, waits until it delivers, then freezes ClickHouse (SIGSTOP) so that the relay is held
    /// inside a batch. The caller sends SIGCONT to ClickHousePid().
    Child& StartRelayThenFreezeClickHouse(const std::string& shutdown_timeout_ms, const std::string& send_timeout_s) {
        Child& relay = world_->StartRelay({{"EVENT_BATCH_SIZE", "1000"},
                                           {"RELAY_SHUTDOWN_TIMEOUT_MS", shutdown_timeout_ms},
                                           {"CLICKHOUSE_SEND_RECEIVE_TIMEOUT", send_timeout_s}});
        WaitForProgress();
        const pid_t ch = world_->ClickHousePid();
        EXPECT_GT(ch, 0);
        ::kill(ch, SIGSTOP);
        world_->Note("clickhouse SIGSTOP");
        std::this_thread::sleep_for(300ms);
        return relay;
    }

    ProducedEvents backlog_;
};

TEST_F(Shutdown, SigtermFinishesTheBatchAndExitsZero) {
    auto& w = *world_;
    Producer producer(w.Dsn(), w.Rng()());
    WithBacklog(producer);
    Child& relay =
        w.StartRelay({{"EVENT_BATCH_SIZE", "1000"}, {"RELAY_SHUTDOWN_TIMEOUT_MS", std::to_string(kShutdownTimeoutMs)}});
    WaitForProgress();
    const auto t0 = Clock::now();
    relay.Signal(SIGTERM);
    w.Note("SIGTERM");
    const auto st = relay.Wait(milliseconds(kShutdownTimeoutMs + 2000));
    ASSERT_TRUE(st.has_value()) << "the relay did not exit within RELAY_SHUTDOWN_TIMEOUT_MS + 2 s after SIGTERM\n"
                                << Tail(ReadFile(relay.LogPath()), 3000);
    w.Note(fmt::format("relay exited: {} after {:.3f}s", DescribeStatus(*st), SecondsSince(t0)));
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << DescribeStatus(*st) << "\n"
                                                         << Tail(ReadFile(relay.LogPath()), 3000);
    const std::string log = ReadFile(relay.LogPath());
    EXPECT_NE(log.find("relay_stopping"), std::string::npos) << "no relay_stopping line:\n" << Tail(log, 2000);
    EXPECT_NE(log.find("relay_stopped"), std::string::npos) << "no relay_stopped line:\n" << Tail(log, 2000);
    // A graceful stop acknowledges its batch: nothing of this relay is left in flight.
    auto pg = OpenPg(w.Dsn());
    EXPECT_EQ(pg.Exec("SELECT count(*) FROM eventlog.delivery").GetInt(0, 0), 0)
        << "a graceful stop left a delivery record behind";
    producer.Stop();
    w.Drain();
    w.VerifyExactlyOnce(AllEvents(producer));
}

// The relay is held inside a batch (ClickHouse frozen) so that the first SIGTERM cannot complete quickly; the
// second SIGTERM must end the process at once, and the abandoned batch is recovered by the drain.
TEST_F(Shutdown, SecondSignalExitsAtOnce) {
    auto& w = *world_;
    Producer producer(w.Dsn(), w.Rng()());
    WithBacklog(producer);
    Child& relay = StartRelayThenFreezeClickHouse("30000", "20");
    const pid_t ch = w.ClickHousePid();
    const auto t0 = Clock::now();
    relay.Signal(SIGTERM);
    std::this_thread::sleep_for(20ms);
    relay.Signal(SIGTERM);
    w.Note("SIGTERM twice");
    const auto st = relay.Wait(2s);
    ::kill(ch, SIGCONT);
    w.Note("clickhouse SIGCONT");
    ASSERT_TRUE(st.has_value()) << "the relay did not exit within 2 s of a second SIGTERM\n"
                                << Tail(ReadFile(relay.LogPath()), 3000);
    w.Note(fmt::format("relay exited: {} after {:.3f}s", DescribeStatus(*st), SecondsSince(t0)));
    EXPECT_FALSE(WIFSIGNALED(*st)) << "expected an exit, got " << DescribeStatus(*st);
    EXPECT_NE(ReadFile(relay.LogPath()).find("relay_exit_now"), std::string::npos);
    producer.Stop();
    w.Drain();
    w.VerifyExactlyOnce(AllEvents(producer));
}

// ClickHouse hangs (SIGSTOP) while the relay inserts; SIGTERM must still end the relay within the shutdown
// timeout (the in-flight batch is abandoned to recovery), and nothing is lost or duplicated.
TEST_F(Shutdown, SigtermWhileClickHouseHangsRespectsTheTimeout) {
    auto& w = *world_;
    Producer producer(w.Dsn(), w.Rng()());
    WithBacklog(producer);
    Child& relay = StartRelayThenFreezeClickHouse("1000", "5");
    const pid_t ch = w.ClickHousePid();
    const auto t0 = Clock::now();
    relay.Signal(SIGTERM);
    // RELAY_SHUTDOWN_TIMEOUT_MS + 2 s, although the insert in flight could block for 1 + 5 s.
    const auto st = relay.Wait(milliseconds(1000 + 2000 + 6000));
    ::kill(ch, SIGCONT);
    w.Note("clickhouse SIGCONT");
    ASSERT_TRUE(st.has_value()) << "the relay did not exit after SIGTERM while ClickHouse hung\n"
                                << Tail(ReadFile(relay.LogPath()), 3000);
    w.Note(fmt::format("relay exited: {} after {:.3f}s", DescribeStatus(*st), SecondsSince(t0)));
    EXPECT_LE(SecondsSince(t0), 1.0 + 2.0) << "SIGTERM took longer than RELAY_SHUTDOWN_TIMEOUT_MS + 2 s";
    EXPECT_FALSE(WIFSIGNALED(*st)) << DescribeStatus(*st);
    producer.Stop();
    w.Drain();
    w.VerifyExactlyOnce(AllEvents(producer));
}

}  // namespace
}  // namespace eventlog::e2e
