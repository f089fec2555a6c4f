// The relay's operations listener as a process serves it (label e2e): /metrics in the Prometheus text format with
// the figures a delivery produced and the backlog read from PostgreSQL, /healthz, /readyz, and stall detection
// when ClickHouse freezes (SIGSTOP) while events are pending: /readyz turns 503 naming the stall, `relay_stalled`
// is logged, and both clear by themselves once ClickHouse resumes, with every event delivered once.
#include <signal.h>

#include <string>
#include <thread>

#include "e2e_support.hpp"
#include "support/http_client.hpp"

namespace eventlog::e2e {
namespace {

using namespace std::chrono_literals;

class RelayOps : public E2eTest {
protected:
    /// The value of the sample line `name` (exact, labels included) in /metrics; -1 when absent.
    static double Sample(const std::string& metrics, const std::string& name) {
        for (const auto& line : SplitLines(metrics)) {
            if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
        }
        return -1;
    }
    /// The sum of the samples whose line starts with `prefix` (every label set of one metric).
    static double SumOf(const std::string& metrics, const std::string& prefix) {
        double sum = 0;
        for (const auto& line : SplitLines(metrics)) {
            if (line.rfind(prefix, 0) == 0) sum += std::stod(line.substr(line.rfind(' ') + 1));
        }
        return sum;
    }
};

TEST_F(RelayOps, MetricsShowDeliveryAndAStallIsReportedAndClearsByItself) {
    auto& w = *world_;
    const std::uint16_t port = FreeLoopbackPort();
    Child& relay = w.StartRelay({{"METRICS_LISTEN", "127.0.0.1:" + std::to_string(port)},
                                 {"RELAY_STALL_SECONDS", "2"},
                                 {"CLICKHOUSE_SEND_RECEIVE_TIMEOUT", "1"}});
    ASSERT_TRUE(w.WaitForLogLine(relay, "metrics_listening", 30s)) << Tail(ReadFile(relay.LogPath()), 3000);
    auto ids = w.EmitCommitted(50);
    ASSERT_TRUE(WaitFor([&] { return w.ChRows() == 50; }, 30s, 50ms));

    const auto get = [&](const std::string& path) { return testing::HttpRequest(port, "GET", path); };
    ASSERT_TRUE(
        WaitFor([&] { return Sample(get("/metrics").body, "eventlog_relay_delivered_events_total") == 50; }, 10s, 50ms))
        << get("/metrics").body;
    const auto metrics = get("/metrics");
    EXPECT_EQ(metrics.status, 200);
    // (issue 20) The listener took any Host, so a page on another name could read it through DNS rebinding: a Host
    // outside ALLOWED_HOSTS is 400 now, as on the API (it was 200).
    const auto foreign = testing::HttpRequest(port, "GET", "/metrics", "", {{"Host", "rebound.example"}});
    EXPECT_EQ(foreign.status, 400) << foreign.body;
    EXPECT_NE(foreign.body.find(R"("field":"Host")"), std::string::npos) << foreign.body;
    EXPECT_EQ(Sample(metrics.body, "eventlog_outbox_pending_events"), 0) << metrics.body;
    EXPECT_EQ(Sample(metrics.body, "eventlog_dead_letter_events"), 0) << metrics.body;
    EXPECT_EQ(Sample(metrics.body, "eventlog_relay_delivery_lag_seconds_count"), 50) << metrics.body;
    EXPECT_GT(Sample(metrics.body, "eventlog_relay_last_success_timestamp_seconds"), 1.7e9) << metrics.body;
    EXPECT_EQ(get("/healthz").status, 200);
    EXPECT_EQ(get("/readyz").status, 200) << get("/readyz").body;

    // ClickHouse frozen with events pending: inserts time out, nothing is acknowledged.
    std::thread freeze([&] { w.FreezeClickHouse(std::chrono::milliseconds(9000)); });
    const auto more = w.EmitCommitted(200);
    ids.insert(ids.end(), more.begin(), more.end());
    testing::HttpAnswer ready;
    const bool stalled = WaitFor(
        [&] {
            ready = get("/readyz");
            return ready.status == 503;
        },
        8s, 100ms);
    EXPECT_TRUE(stalled) << "readyz stayed " << ready.status << " " << ready.body;
    EXPECT_NE(ready.body.find("stalled"), std::string::npos) << ready.body;
    EXPECT_TRUE(w.WaitForLogLine(relay, "relay_stalled", 5s)) << Tail(ReadFile(relay.LogPath()), 3000);
    const auto during = get("/metrics").body;
    EXPECT_GT(SumOf(during, "eventlog_relay_retries_total{"), 0) << during;
    freeze.join();

    // Resumed: delivery goes on and the stall clears by itself.
    EXPECT_TRUE(WaitFor([&] { return w.ChRows() == 250; }, 60s, 100ms)) << Tail(ReadFile(relay.LogPath()), 3000);
    EXPECT_TRUE(WaitFor([&] { return get("/readyz").status == 200; }, 20s, 100ms)) << get("/readyz").body;
    EXPECT_TRUE(w.WaitForLogLine(relay, "relay_stall_cleared", 10s)) << Tail(ReadFile(relay.LogPath()), 3000);
    relay.Signal(SIGTERM);
    ASSERT_TRUE(relay.Wait(60s).has_value());
    w.VerifyExactlyOnce([&] {
        ProducedEvents p;
        p.committed = ids;
        return p;
    }());
}

}  // namespace
}  // namespace eventlog::e2e
