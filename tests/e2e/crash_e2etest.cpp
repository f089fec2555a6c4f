// Crash tests: exactly-once delivery while relays are killed (kill -9, fault points), run concurrently, and while
// ClickHouse is killed, frozen and restarted and PostgreSQL sessions are terminated or the server restarted.
//
// Crash.ChaosExactlyOnce runs EVENTLOG_CHAOS_ROUNDS rounds (default 3, the `make test` form; scripts/chaos.sh runs
// the long form), and keeps starting rounds until EVENTLOG_CHAOS_SECONDS have passed when that is set. Each round:
//   1. kill cycles: one or two relays started and kill -9'd after 50-400 ms (sometimes after a first 2 s, so the
//      kill lands mid-delivery rather than in start-up or recovery), then one relay that lives 2.5-4 s;
//   2. the three fault points after_claim, after_insert, during_ack (EVENTLOG_FAULT_AFTER 1..5), in random
//      order, half of them next to a second, normal relay;
//   3. server faults, spread over the rounds so that the short form has each once: ClickHouse kill -9 and
//      restart, ClickHouse SIGSTOP longer than CLICKHOUSE_SEND_RECEIVE_TIMEOUT, pg_terminate_backend of the relays'
//      sessions, PostgreSQL restart (the producer pauses for it).
// Then the producer stops, `eventlog relay --drain` finishes everything and ClickHouse must hold each committed
// event exactly once. EVENTLOG_E2E_SEED reproduces a run's choices (the timing still differs).
#include "e2e_support.hpp"

namespace eventlog::e2e {
namespace {

using namespace std::chrono_literals;

class Crash : public E2eTest {
protected:
    void SleepMs(int ms) { std::this_thread::sleep_for(milliseconds(ms)); }

    /// Per-relay variety: batch sizes from tiny to a few hundred.
    std::map<std::string, std::string> RelayVars() {
        return {{"EVENT_BATCH_SIZE", std::to_string(world_->Uniform(5, 300))}};
    }

    void KillCycles(int cycles) {
        auto& w = *world_;
        for (int i = 0; i < cycles; ++i) {
            const int n = w.Chance(0.35) ? 2 : 1;
            const int settle = w.Chance(0.5) ? 2000 : 0;
            std::vector<Child*> relays;
            for (int k = 0; k < n; ++k) relays.push_back(&w.StartRelay(RelayVars()));
            if (n == 2) ++w.Counts()["two_relays_at_once"];
            for (auto* r : relays) {
                SleepMs(settle / n + w.Uniform(50, 400));
                w.KillRelay(*r);
            }
        }
        Child& survivor = w.StartRelay(RelayVars());
        SleepMs(w.Uniform(2500, 4000));
        w.KillRelay(survivor);
    }

    void FaultPoint(const std::string& point) {
        auto& w = *world_;
        const int after = w.Uniform(1, 5);
        auto vars = RelayVars();
        vars["EVENTLOG_FAULT_POINT"] = point;
        vars["EVENTLOG_FAULT_AFTER"] = std::to_string(after);
        Child& faulty = w.StartRelay(vars);
        Child* companion = w.Chance(0.5) ? &w.StartRelay(RelayVars()) : nullptr;
        if (companion) ++w.Counts()["two_relays_at_once"];
        const auto st = faulty.Wait(15s);
        if (st && WIFSIGNALED(*st) && WTERMSIG(*st) == SIGKILL) {
            ++w.Counts()["fault_" + point];
            w.Note(fmt::format("{} died at fault point {} (after {})", faulty.Name(), point, after));
        } else {
            ++w.Counts()["fault_" + point + "_not_reached"];
            w.Note(fmt::format("{} did not reach fault point {} x{} ({})", faulty.Name(), point, after,
                               st ? DescribeStatus(*st) : std::string("still running")));
            w.KillRelay(faulty);
        }
        if (companion) {
            SleepMs(w.Uniform(50, 1000));
            w.KillRelay(*companion);
        }
    }

    void ServerFault(int kind, Producer& producer) {
        auto& w = *world_;
        Child& relay = w.StartRelay(RelayVars());
        Child* second = w.Chance(0.4) ? &w.StartRelay(RelayVars()) : nullptr;
        if (second) ++w.Counts()["two_relays_at_once"];
        SleepMs(w.Uniform(300, 1500));
        switch (kind) {
            case 0:
                w.KillAndRestartClickHouse(milliseconds(w.Uniform(0, 1000)));
                break;
            case 1:
                w.FreezeClickHouse(milliseconds(w.Uniform(2500, 4000)));  // > send/receive timeout (1 s) + connect
                break;
            case 2:
                w.TerminateRelayBackends();
                break;
            case 3:
                producer.Pause();
                w.Note("producer paused");
                w.RestartPostgres();
                producer.Resume();
                w.Note("producer resumed");
                break;
        }
        // Let the relays reconcile what was in flight (recovery waits 2 s before it reconciles).
        SleepMs(w.Uniform(3000, 4500));
        w.KillRelay(relay);
        if (second) w.KillRelay(*second);
    }
};

TEST_F(Crash, ChaosExactlyOnce) {
    auto& w = *world_;
    const long rounds = std::max(1L, EnvInt("EVENTLOG_CHAOS_ROUNDS", 3));
    const long min_seconds = EnvInt("EVENTLOG_CHAOS_SECONDS", 0);
    Producer producer(w.Dsn(), w.Rng()());
    producer.Start();
    const auto t0 = Clock::now();
    for (long round = 0; round < rounds || SecondsSince(t0) < static_cast<double>(min_seconds); ++round) {
        w.Note(fmt::format("--- round {} ({} events committed so far)", round, producer.CommittedSoFar()));
        KillCycles(3);
        std::vector<std::string> points{"after_claim", "after_insert", "during_ack"};
        std::shuffle(points.begin(), points.end(), w.Rng());
        for (const auto& p : points) FaultPoint(p);
        // Server faults: round r takes kind r % 4; with fewer than 4 rounds the first rounds take several.
        for (int kind = 0; kind < 4; ++kind) {
            const long owner = rounds >= 4 ? kind : kind % rounds;
            if ((rounds >= 4 && round % 4 == owner) || (rounds < 4 && round == owner)) ServerFault(kind, producer);
        }
        ++w.Counts()["rounds"];
        if (HasFatalFailure()) break;
    }
    // A final relay with a regular life, killed too, so the drain starts from a crash as well.
    Child& last = w.StartRelay(RelayVars());
    SleepMs(w.Uniform(50, 400));
    w.KillRelay(last);
    producer.Stop();
    w.Note(fmt::format("producer stopped: {} committed, {} rolled back, {} in doubt (last error: {})",
                       producer.Events().committed.size(), producer.Events().rolled_back.size(),
                       producer.Events().in_doubt.size(), producer.LastError()));
    w.Drain();
    w.VerifyExactlyOnce(producer.Events());
    w.CountFromLogs();
    std::printf("[ summary  ] chaos rounds=%ld seed=%llu:%s\n", rounds, static_cast<unsigned long long>(w.Seed()),
                w.Summary().c_str());
}

/// N relays at once, each kill -9'd after a random 50 ms..3 s life and replaced at once; some with a fault point.
void ConcurrentRelays(E2eTest& test, World& w, int n) {
    const long seconds = EnvInt("EVENTLOG_MULTI_SECONDS", 20);
    Producer producer(w.Dsn(), w.Rng()());
    producer.Start();
    static const char* kPoints[] = {"after_claim", "after_insert", "during_ack"};
    struct Slot {
        Child* relay{nullptr};
        Clock::time_point deadline;
        std::string point;
    };
    std::vector<Slot> slots(static_cast<std::size_t>(n));
    const auto start_one = [&](Slot& s) {
        std::map<std::string, std::string> vars{{"EVENT_BATCH_SIZE", std::to_string(w.Uniform(5, 300))}};
        s.point.clear();
        if (w.Chance(0.15)) {
            s.point = kPoints[w.Uniform(0, 2)];
            vars["EVENTLOG_FAULT_POINT"] = s.point;
            vars["EVENTLOG_FAULT_AFTER"] = std::to_string(w.Uniform(1, 5));
        }
        s.relay = &w.StartRelay(vars);
        s.deadline = Clock::now() + milliseconds(w.Uniform(50, 3000));
    };
    for (auto& s : slots) start_one(s);
    const auto t0 = Clock::now();
    while (SecondsSince(t0) < static_cast<double>(seconds) && !test.HasFatalFailure()) {
        for (auto& s : slots) {
            if (s.relay->Running() && Clock::now() < s.deadline) continue;
            if (!s.relay->Running()) {
                const auto st = s.relay->Status();
                const bool fault = st && WIFSIGNALED(*st) && WTERMSIG(*st) == SIGKILL && !s.point.empty();
                w.Note(fmt::format("{} ended by itself: {}", s.relay->Name(), st ? DescribeStatus(*st) : "?"));
                if (fault)
                    ++w.Counts()["fault_" + s.point];
                else
                    ADD_FAILURE() << s.relay->Name() << " exited by itself: " << (st ? DescribeStatus(*st) : "?")
                                  << "\n"
                                  << Tail(ReadFile(s.relay->LogPath()), 3000);
            } else {
                w.KillRelay(*s.relay);
            }
            start_one(s);
        }
        std::this_thread::sleep_for(10ms);
    }
    w.KillAllRelays();
    producer.Stop();
    w.Note(fmt::format("producer stopped: {} committed", producer.Events().committed.size()));
    w.Drain();
    w.VerifyExactlyOnce(producer.Events());
    w.CountFromLogs();
    std::printf("[ summary  ] %d relays, %ld s, seed=%llu:%s\n", n, seconds, static_cast<unsigned long long>(w.Seed()),
                w.Summary().c_str());
}

// ClickHouse is frozen (SIGSTOP) again and again for longer than the relays' request deadline
// (CLICKHOUSE_CONNECT_TIMEOUT 1 s + CLICKHOUSE_SEND_RECEIVE_TIMEOUT 1 s): inserts time out on the client while
// the server still holds them, and run when it resumes, racing the relay's reconciliation of that batch.
TEST_F(Crash, RepeatedClickHouseFreezes) {
    auto& w = *world_;
    const long seconds = EnvInt("EVENTLOG_FREEZE_SECONDS", 20);
    Producer producer(w.Dsn(), w.Rng()(), milliseconds(2));
    producer.Start();
    Child& a = w.StartRelay({{"EVENT_BATCH_SIZE", "1000"}});
    Child& b = w.StartRelay({{"EVENT_BATCH_SIZE", "300"}});
    const auto t0 = Clock::now();
    while (SecondsSince(t0) < static_cast<double>(seconds) && !HasFatalFailure()) {
        std::this_thread::sleep_for(milliseconds(w.Uniform(100, 900)));
        w.FreezeClickHouse(milliseconds(w.Uniform(1100, 2600)));
    }
    std::this_thread::sleep_for(3s);
    for (Child* r : {&a, &b}) {
        EXPECT_TRUE(r->Running()) << r->Name() << " ended: " << Tail(ReadFile(r->LogPath()), 3000);
        r->Signal(SIGTERM);
        const auto st = r->Wait(10s);
        EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0)
            << r->Name() << ": " << (st ? DescribeStatus(*st) : "no exit after SIGTERM");
    }
    producer.Stop();
    w.Drain();
    w.VerifyExactlyOnce(producer.Events());
    w.CountFromLogs();
    std::printf("[ summary  ] freezes, seed=%llu:%s\n", static_cast<unsigned long long>(w.Seed()), w.Summary().c_str());
}

TEST_F(Crash, TwoRelaysWithRandomKills) { ConcurrentRelays(*this, *world_, 2); }

TEST_F(Crash, FourRelaysWithRandomKills) { ConcurrentRelays(*this, *world_, 4); }

}  // namespace
}  // namespace eventlog::e2e
