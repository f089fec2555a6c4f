// Crash tests: exactly-once delivery while relays are killed (kill -9, fault points), run concurrently, and while
// ClickHouse is killed, frozen and restarted and PostgreSQL sessions are terminated or the server restarted.
//
// Crash.ChaosExactlyOnce runs EVENTLOG_CHAOS_ROUNDS rounds (default 3, the `make test` form; scripts/chaos.sh runs
// the long form), and keeps starting rounds until EVENTLOG_CHAOS_SECONDS have passed when that is set. Each round:
//   1. kill cycles: one or two relays started and kill -9'd after 50-400 ms (sometimes after a first 2 s, so the
//      kill lands mid-delivery rather than in start-up or recovery), then one relay that lives 2.5-4 s;
//   2. the four fault points in_cut (the claim lock held), after_claim, after_insert, during_ack
//      (EVENTLOG_FAULT_AFTER 1..5), in random order, half of them next to a second, normal relay;
//   3. server faults, spread over the rounds so that the short form has each once: ClickHouse kill -9 and
//      restart, ClickHouse SIGSTOP longer than CLICKHOUSE_SEND_RECEIVE_TIMEOUT, pg_terminate_backend of the relays'
//      sessions, PostgreSQL restart (the producer pauses for it).
// Then the producer stops, `eventlog relay --drain` finishes everything and ClickHouse must hold each committed
// event exactly once. EVENTLOG_E2E_SEED reproduces a run's choices (the timing still differs).
//
// Every fault must be seen to happen and to reach the path it aims at, from the relays' own logs: each fault
// point relay dies by SIGKILL after its "fault_point_kill" line (and the logs hold exactly one such line per
// fault), each kill -9 hits a running relay, pg_terminate_backend hits at least one relay session and the
// relays reconnect, a ClickHouse kill makes a delivery fail, a ClickHouse freeze leaves an insert in doubt whose
// session's stage is then fenced, and the producer committed events.
#include <algorithm>

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
                EXPECT_TRUE(w.KillRelay(*r)) << r->Name() << " had ended by itself before its kill -9:\n"
                                             << Tail(ReadFile(r->LogPath()), 3000);
            }
        }
        Child& survivor = w.StartRelay(RelayVars());
        SleepMs(w.Uniform(2500, 4000));
        EXPECT_TRUE(w.KillRelay(survivor)) << survivor.Name() << " had ended by itself before its kill -9:\n"
                                           << Tail(ReadFile(survivor.LogPath()), 3000);
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
        // With the producer running, the point is usually reached within a second or two; on a loaded machine a
        // claim has been seen to take 10-20 s, so the deadline is generous.
        const auto st = faulty.Wait(60s);
        const auto kills = Select(ParseLog(faulty.LogPath()), "fault_point_kill");
        if (st && WIFSIGNALED(*st) && WTERMSIG(*st) == SIGKILL) {
            ++w.Counts()["fault_" + point];
            ++fault_kills_;
            w.Note(fmt::format("{} died at fault point {} (after {})", faulty.Name(), point, after));
            ASSERT_EQ(kills.size(), 1u) << faulty.Name() << " died by SIGKILL but its log has " << kills.size()
                                        << " fault_point_kill lines:\n"
                                        << Tail(ReadFile(faulty.LogPath()), 3000);
            EXPECT_EQ(kills[0].Field("point"), point) << kills[0].text;
        } else {
            w.Note(fmt::format("{} did not reach fault point {} x{} ({})", faulty.Name(), point, after,
                               st ? DescribeStatus(*st) : std::string("still running")));
            w.KillRelay(faulty);
            ADD_FAILURE() << faulty.Name() << " did not die at fault point " << point << " x" << after
                          << " within 60 s (" << (st ? DescribeStatus(*st) : std::string("still running")) << "):\n"
                          << Tail(ReadFile(faulty.LogPath()), 3000);
        }
        if (companion) {
            SleepMs(w.Uniform(50, 1000));
            w.KillRelay(*companion);
        }
    }

    /// Waits until some line after `mark` in the logs of `relays` satisfies `found` (given all those lines).
    template <typename F>
    bool WaitForEvidence(const World::LogMark& mark, const std::vector<Child*>& relays, F&& found,
                         milliseconds timeout = 30s) {
        return WaitFor(
            [&] {
                std::vector<LogLine> lines;
                for (const Child* r : relays) {
                    const auto at = mark.find(r->LogPath());
                    auto l = ParseLog(r->LogPath(), at == mark.end() ? 0 : at->second);
                    lines.insert(lines.end(), l.begin(), l.end());
                }
                return found(lines);
            },
            timeout, 50ms);
    }

    std::string LogsOf(const std::vector<Child*>& relays) {
        std::string out;
        for (const Child* r : relays) out += "--- " + r->Name() + ":\n" + Tail(ReadFile(r->LogPath()), 2500);
        return out;
    }

    void ServerFault(int kind, Producer& producer) {
        auto& w = *world_;
        Child& relay = w.StartRelay(RelayVars());
        Child* second = w.Chance(0.4) ? &w.StartRelay(RelayVars()) : nullptr;
        if (second) ++w.Counts()["two_relays_at_once"];
        std::vector<Child*> relays{&relay};
        if (second) relays.push_back(second);
        // The faults aim at relays with live sessions: not at one still starting.
        for (Child* r : relays) {
            EXPECT_TRUE(w.WaitForLogLine(*r, "relay_connected")) << r->Name() << " never connected:\n"
                                                                 << Tail(ReadFile(r->LogPath()), 3000);
        }
        SleepMs(w.Uniform(300, 1500));
        const auto mark = w.MarkLogs();
        switch (kind) {
            case 0: {
                ASSERT_NO_FATAL_FAILURE(w.KillAndRestartClickHouse(milliseconds(w.Uniform(0, 1000))));
                // The producer keeps the relays sending: one of them must have met the dead server.
                const bool failed = WaitForEvidence(mark, relays, [](const std::vector<LogLine>& lines) {
                    return !Select(lines, "delivery_failed").empty() || !Select(lines, "relay_retry").empty();
                });
                EXPECT_TRUE(failed) << "ClickHouse was killed but no relay saw a failure:\n" << LogsOf(relays);
                break;
            }
            case 1: {
                // > send/receive timeout (1 s) + connect
                ASSERT_NO_FATAL_FAILURE(w.FreezeClickHouse(milliseconds(w.Uniform(2500, 4000))));
                // An insert in doubt ends its session, and a recovery fences that session's stage.
                std::int64_t fenced_owner = 0;
                const bool fenced = WaitForEvidence(mark, relays, [&](const std::vector<LogLine>& lines) {
                    for (const auto& d : Select(lines, "delivery_failed", "kind", "in_doubt")) {
                        for (const auto& f : Select(lines, "stage_fenced", "owner", std::to_string(d.owner))) {
                            if (f.timestamp >= d.timestamp) fenced_owner = d.owner;
                        }
                    }
                    return fenced_owner != 0;
                });
                EXPECT_TRUE(fenced) << "ClickHouse was frozen past the timeouts but no relay logged an insert in doubt "
                                       "(delivery_failed kind in_doubt) whose stage was then fenced (stage_fenced):\n"
                                    << LogsOf(relays);
                if (fenced) w.Note(fmt::format("in-doubt session {} fenced", fenced_owner));
                break;
            }
            case 2: {
                const int n = w.TerminateRelayBackends();
                EXPECT_GE(n, 1) << "pg_terminate_backend hit no relay session";
                // A terminated session is noticed and replaced.
                const bool reconnected = WaitForEvidence(mark, relays, [](const std::vector<LogLine>& lines) {
                    return !Select(lines, "relay_connected").empty();
                });
                EXPECT_TRUE(reconnected) << "no relay reconnected after pg_terminate_backend:\n" << LogsOf(relays);
                break;
            }
            case 3: {
                producer.Pause();
                w.Note("producer paused");
                ASSERT_NO_FATAL_FAILURE(w.RestartPostgres());
                producer.Resume();
                w.Note("producer resumed");
                // Every relay lost its session and must have opened a new one.
                for (Child* r : relays) {
                    const bool reconnected = WaitForEvidence(mark, {r}, [](const std::vector<LogLine>& lines) {
                        return !Select(lines, "relay_connected").empty();
                    });
                    EXPECT_TRUE(reconnected) << r->Name() << " did not reconnect after the PostgreSQL restart:\n"
                                             << Tail(ReadFile(r->LogPath()), 3000);
                }
                break;
            }
        }
        // Let the relays reconcile what was in flight (recovery waits 2 s before it reconciles).
        SleepMs(w.Uniform(3000, 4500));
        for (Child* r : relays) {
            EXPECT_TRUE(w.KillRelay(*r)) << r->Name() << " had ended by itself:\n"
                                         << Tail(ReadFile(r->LogPath()), 3000);
        }
    }

    int fault_kills_{0};  ///< Relays seen dying at their fault point.
};

TEST_F(Crash, ChaosExactlyOnce) {
    auto& w = *world_;
    const long rounds = std::max(1L, EnvInt("EVENTLOG_CHAOS_ROUNDS", 3));
    const long min_seconds = EnvInt("EVENTLOG_CHAOS_SECONDS", 0);
    Producer producer(w.ProducerDsn(), w.Rng()());
    producer.Start();
    const auto t0 = Clock::now();
    for (long round = 0; round < rounds || SecondsSince(t0) < static_cast<double>(min_seconds); ++round) {
        w.Note(fmt::format("--- round {} ({} events committed so far)", round, producer.CommittedSoFar()));
        KillCycles(3);
        // in_cut: inside the claim's transaction, its lock held (the companion relay's claims wait for the session).
        std::vector<std::string> points{"in_cut", "after_claim", "after_insert", "during_ack"};
        std::shuffle(points.begin(), points.end(), w.Rng());
        for (const auto& p : points) ASSERT_NO_FATAL_FAILURE(FaultPoint(p));
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
    // One fault_point_kill line per relay that died at its point, and no other.
    EXPECT_EQ(w.Counts()["log_fault_point_kill"], fault_kills_);
    EXPECT_EQ(fault_kills_, 4 * w.Counts()["rounds"]);
    std::printf("[ summary  ] chaos rounds=%ld seed=%llu:%s\n", rounds, static_cast<unsigned long long>(w.Seed()),
                w.Summary().c_str());
}

// (issue 19) PostgreSQL's immediate shutdown while a relay is inside each step that holds a transaction open or has
// just committed one: inside the cut (the claim lock held, nothing committed), after the claim committed (its rows
// read, not yet sent), with the acknowledgement written but not committed, with a partition truncated but not
// committed. The test seam stops the relay at the step (SIGSTOP), the server crashes (no checkpoint) and starts
// again with crash recovery, and the relay goes on: its session is gone, so whatever the step held is rolled back or
// left in a record, and its next session recovers it. Producers write throughout (their COMMITs in flight become in
// doubt). Every committed event is in ClickHouse once, the offline range checker is clean, the relay exits 0 at
// SIGTERM each time, and the truncation is done again by the next pass.
TEST_F(Crash, PostgresImmediateShutdownInsideEachStepLosesAndDuplicatesNothing) {
    auto& w = *world_;
    Producer producer(w.ProducerDsn(), w.Rng()());
    producer.Start();
    for (const std::string step : {"in_cut", "after_claim", "during_ack", "during_truncate"}) {
        // A partition's turn passes, so that one holds only delivered rows once the next events are acknowledged.
        if (step == "during_truncate") w.BurnTransactionIds(140'000);
        Child& relay = w.StartRelay({{"EVENTLOG_FAULT_POINT", step}, {"EVENTLOG_FAULT_ACTION", "stop"}});
        const auto at = w.WaitForLogLine(relay, "fault_point_stop", 60s);
        ASSERT_TRUE(at) << "the relay never reached " << step << ":\n" << Tail(ReadFile(relay.LogPath()), 3000);
        const auto stopped = [&] {
            std::ifstream stat(fmt::format("/proc/{}/stat", relay.Pid()));
            std::string pid, comm, state;
            stat >> pid >> comm >> state;
            return state == "T";
        };
        ASSERT_TRUE(WaitFor(stopped, 10s, 5ms)) << "the relay did not stop at " << step;
        const auto [before, after] = w.CrashPostgres();
        EXPECT_NE(before, after) << "PostgreSQL did not restart";
        const auto from = FileSize(relay.LogPath());
        relay.Signal(SIGCONT);
        w.Note("relay resumed after " + step);
        // Its session died with the server: the step fails, and a new session recovers what it held.
        EXPECT_TRUE(w.WaitForLogLine(relay, "relay_connected", 60s, from))
            << "no new session after the crash at " << step << ":\n"
            << Tail(ReadFile(relay.LogPath()), 3000);
        if (step == "during_truncate") {
            EXPECT_TRUE(w.WaitForLogLine(relay, "outbox_partition_truncated", 30s, from))
                << "the truncation rolled back by the crash was not done again:\n"
                << Tail(ReadFile(relay.LogPath()), 3000);
        }
        SleepMs(w.Uniform(500, 1500));
        relay.Signal(SIGTERM);
        const auto st = relay.Wait(60s);
        EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0)
            << step << ": " << (st ? DescribeStatus(*st) : "still running") << "\n"
            << Tail(ReadFile(relay.LogPath()), 3000);
        ++w.Counts()["crash_" + step];
    }
    producer.Stop();
    w.Note(fmt::format("producer stopped: {} committed, {} in doubt", producer.Events().committed.size(),
                       producer.Events().in_doubt.size()));
    w.Drain();
    w.VerifyExactlyOnce(producer.Events());
    std::printf("[ summary  ] seed=%llu:%s\n", static_cast<unsigned long long>(w.Seed()), w.Summary().c_str());
}

/// N relays at once, each kill -9'd after a random 50 ms..3 s life and replaced at once; some with a fault point.
/// The first relay always has one (EVENTLOG_FAULT_AFTER=1) and lives until it fires, so each run has at least one
/// fault; every relay that dies by itself must have died at its fault point, after its fault_point_kill line.
void ConcurrentRelays(E2eTest& test, World& w, int n) {
    const long seconds = EnvInt("EVENTLOG_MULTI_SECONDS", 20);
    Producer producer(w.ProducerDsn(), w.Rng()());
    producer.Start();
    static const char* kPoints[] = {"in_cut", "after_claim", "after_insert", "during_ack"};
    struct Slot {
        Child* relay{nullptr};
        Clock::time_point deadline;
        std::string point;
    };
    std::vector<Slot> slots(static_cast<std::size_t>(n));
    bool first = true;
    const auto start_one = [&](Slot& s) {
        std::map<std::string, std::string> vars{{"EVENT_BATCH_SIZE", std::to_string(w.Uniform(5, 300))}};
        s.point.clear();
        const bool sure = std::exchange(first, false);
        if (sure || w.Chance(0.15)) {
            s.point = kPoints[w.Uniform(0, 3)];
            vars["EVENTLOG_FAULT_POINT"] = s.point;
            vars["EVENTLOG_FAULT_AFTER"] = sure ? "1" : std::to_string(w.Uniform(1, 5));
        }
        s.relay = &w.StartRelay(vars);
        s.deadline = sure ? Clock::time_point::max() : Clock::now() + milliseconds(w.Uniform(50, 3000));
    };
    for (auto& s : slots) start_one(s);
    int fault_kills = 0;
    const auto t0 = Clock::now();
    // Runs `seconds`, and on until the first relay's fault fired (bounded: it fires within a second or two).
    const auto sure_pending = [&] { return slots[0].deadline == Clock::time_point::max(); };
    while ((SecondsSince(t0) < static_cast<double>(seconds) || (sure_pending() && SecondsSince(t0) < 60.0)) &&
           !test.HasFatalFailure()) {
        for (auto& s : slots) {
            if (s.relay->Running() && Clock::now() < s.deadline) continue;
            if (!s.relay->Running()) {
                const auto st = s.relay->Status();
                const bool fault = st && WIFSIGNALED(*st) && WTERMSIG(*st) == SIGKILL && !s.point.empty();
                w.Note(fmt::format("{} ended by itself: {}", s.relay->Name(), st ? DescribeStatus(*st) : "?"));
                if (fault) {
                    ++w.Counts()["fault_" + s.point];
                    ++fault_kills;
                    const auto lines = Select(ParseLog(s.relay->LogPath()), "fault_point_kill", "point", s.point);
                    EXPECT_EQ(lines.size(), 1u)
                        << s.relay->Name() << " died by SIGKILL without its fault_point_kill " << s.point << " line:\n"
                        << Tail(ReadFile(s.relay->LogPath()), 3000);
                } else {
                    ADD_FAILURE() << s.relay->Name() << " exited by itself: " << (st ? DescribeStatus(*st) : "?")
                                  << "\n"
                                  << Tail(ReadFile(s.relay->LogPath()), 3000);
                }
            } else {
                w.KillRelay(*s.relay);
            }
            start_one(s);
        }
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_FALSE(sure_pending()) << slots[0].relay->Name() << " never reached its fault point " << slots[0].point
                                 << ":\n"
                                 << Tail(ReadFile(slots[0].relay->LogPath()), 3000);
    w.KillAllRelays();
    producer.Stop();
    w.Note(fmt::format("producer stopped: {} committed", producer.Events().committed.size()));
    w.Drain();
    w.VerifyExactlyOnce(producer.Events());
    w.CountFromLogs();
    // Each relay that died at its point logged it; a relay kill -9'd by the test may have logged its line just
    // before (then both counts grow), never the other way round.
    EXPECT_GE(fault_kills, 1);
    EXPECT_GE(w.Counts()["log_fault_point_kill"], fault_kills);
    std::printf("[ summary  ] %d relays, %ld s, seed=%llu:%s\n", n, seconds, static_cast<unsigned long long>(w.Seed()),
                w.Summary().c_str());
}

// ClickHouse is frozen (SIGSTOP) again and again for longer than the relays' request deadline
// (CLICKHOUSE_CONNECT_TIMEOUT 1 s + CLICKHOUSE_SEND_RECEIVE_TIMEOUT 1 s): inserts time out on the client while
// the server still holds them, and run when it resumes, racing the relay's reconciliation of that batch. The logs
// must show inserts in doubt, each such session's stage fenced after it, and records recovered.
TEST_F(Crash, RepeatedClickHouseFreezes) {
    auto& w = *world_;
    const long seconds = EnvInt("EVENTLOG_FREEZE_SECONDS", 20);
    Producer producer(w.ProducerDsn(), w.Rng()(), milliseconds(2));
    producer.Start();
    Child& a = w.StartRelay({{"EVENT_BATCH_SIZE", "1000"}});
    Child& b = w.StartRelay({{"EVENT_BATCH_SIZE", "300"}});
    const auto t0 = Clock::now();
    // The first freeze outlasts any insert's 2 s deadline, so at least one insert is left in doubt; the others
    // vary around that deadline (an insert may also finish after the thaw).
    for (bool first = true; SecondsSince(t0) < static_cast<double>(seconds) && !HasFatalFailure(); first = false) {
        std::this_thread::sleep_for(milliseconds(w.Uniform(100, 900)));
        ASSERT_NO_FATAL_FAILURE(w.FreezeClickHouse(milliseconds(first ? 3000 : w.Uniform(1100, 2600))));
    }
    std::this_thread::sleep_for(3s);
    for (Child* r : {&a, &b}) {
        EXPECT_TRUE(r->Running()) << r->Name() << " ended: " << Tail(ReadFile(r->LogPath()), 3000);
        r->Signal(SIGTERM);
        const auto st = r->Wait(30s);
        EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0)
            << r->Name() << ": " << (st ? DescribeStatus(*st) : "no exit after SIGTERM");
    }
    producer.Stop();
    w.Drain();
    w.VerifyExactlyOnce(producer.Events());
    w.CountFromLogs();
    // An insert in doubt ends its session; the session's stage is fenced afterwards (by its relay's next session,
    // the other relay or the drain), and its records are recovered.
    const auto lines = w.RelayLogLines();
    const auto in_doubt = Select(lines, "delivery_failed", "kind", "in_doubt");
    EXPECT_GE(in_doubt.size(), 1u) << "the freezes left no insert in doubt: they did not reach the path they aim at";
    std::set<std::int64_t> sessions;
    int recovered = 0;
    for (const auto& d : in_doubt) {
        EXPECT_EQ(d.Field("action"), "leave_to_recovery") << d.text;
        if (!sessions.insert(d.owner).second) continue;
        bool fenced = false, records = false;
        const auto fences = Select(lines, "stage_fenced", "owner", std::to_string(d.owner));
        for (const auto& f : fences) fenced = fenced || f.timestamp >= d.timestamp;
        for (const auto& b : Select(lines, "batch_recovering", "dead_owner", std::to_string(d.owner))) {
            if (b.timestamp < d.timestamp) continue;
            records = true;
            // The fence comes between the in-doubt insert and the recovery of its records (whose presence check
            // would otherwise race the insert still held by the frozen server), not just at some time after it.
            const bool fenced_first = std::any_of(fences.begin(), fences.end(), [&](const LogLine& f) {
                return f.timestamp >= d.timestamp && f.timestamp <= b.timestamp;
            });
            EXPECT_TRUE(fenced_first) << "session " << d.owner << "'s records were recovered before its stage was "
                                      << "fenced: " << b.text;
        }
        // An insert in doubt during a recovery (the recovering session's own insert): its records, adopted by that
        // session, must be recovered again after its fence, never re-sent while it may still land.
        const auto finished = Select(lines, "batch_recovered");
        for (const auto& r : Select(lines, "batch_recovering")) {
            if (r.owner != d.owner || r.timestamp > d.timestamp) continue;
            const bool ended_before = std::any_of(finished.begin(), finished.end(), [&](const LogLine& f) {
                return f.owner == d.owner && f.timestamp >= r.timestamp && f.timestamp <= d.timestamp;
            });
            if (!ended_before) ++w.Counts()["in_doubt_during_recovery"];
        }
        EXPECT_TRUE(fenced) << "session " << d.owner
                            << " left an insert in doubt but its stage was never fenced: " << d.text;
        recovered += records ? 1 : 0;
    }
    EXPECT_GE(recovered, 1) << "no session with an insert in doubt had its records recovered (batch_recovering)";
    w.Counts()["in_doubt_sessions"] = static_cast<int>(sessions.size());
    w.Counts()["in_doubt_sessions_recovered"] = recovered;
    std::printf("[ summary  ] freezes, seed=%llu:%s\n", static_cast<unsigned long long>(w.Seed()), w.Summary().c_str());
}

TEST_F(Crash, TwoRelaysWithRandomKills) { ConcurrentRelays(*this, *world_, 2); }

TEST_F(Crash, FourRelaysWithRandomKills) { ConcurrentRelays(*this, *world_, 4); }

}  // namespace
}  // namespace eventlog::e2e
