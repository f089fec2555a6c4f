// The relay's LoopObserver (metrics and the stall clock, from the loop's notifications) and the CLI's fault
// injection (the test seam wired to EVENTLOG_FAULT_*). No server.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <eventlog/core/config.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/observability/metrics.hpp>
#include <string>
#include <thread>

#include "cli/fault_injection.hpp"
#include "relay/detail/loop_observer.hpp"

namespace {

using eventlog::ConfigError;
using eventlog::Error;
using eventlog::RelayConfig;
using eventlog::TransientError;
using eventlog::relay::detail::LoopAction;
using eventlog::relay::detail::LoopObserver;

bool Has(const std::string& text, const std::string& line) { return text.find(line) != std::string::npos; }

TEST(LoopObserverTest, AcknowledgementsFailuresAndPausesReachTheMetrics) {
    RelayConfig config;
    eventlog::metrics::Registry registry;
    LoopObserver observer(config, &registry, nullptr);
    ASSERT_TRUE(observer.WantsLags());
    observer.SessionUp();
    observer.Acknowledged(250, 3, "delivered", {0, 1});
    observer.Acknowledged(40, 1, "recovered", {});
    observer.Inserted(0.2);
    observer.LoopFailed(TransientError("network"), LoopAction::kReconnect, 0);
    observer.LoopFailed(ConfigError("no table"), LoopAction::kPause, 1);
    const std::string text = registry.Render();
    EXPECT_TRUE(Has(text, "eventlog_relay_delivered_events_total 290\n")) << text;
    EXPECT_TRUE(Has(text, "eventlog_relay_batches_total{outcome=\"delivered\"} 3\n")) << text;
    EXPECT_TRUE(Has(text, "eventlog_relay_batches_total{outcome=\"recovered\"} 1\n")) << text;
    EXPECT_TRUE(Has(text, "eventlog_relay_retries_total{kind=\"transient\"} 1\n")) << text;
    EXPECT_TRUE(Has(text, "eventlog_relay_retries_total{kind=\"configuration\"} 1\n")) << text;
    EXPECT_TRUE(Has(text, "eventlog_relay_insert_duration_seconds_count 1\n")) << text;
    // One write time known (1 µs after the epoch): one lag observed, of about the time since then.
    EXPECT_TRUE(Has(text, "eventlog_relay_delivery_lag_seconds_count 1\n")) << text;
    // A failure ends the session as far as health is concerned.
    const auto h = observer.GetHealth();
    EXPECT_FALSE(h.connected);
    EXPECT_GT(h.last_ack_unix, 0.0);
}

TEST(LoopObserverTest, TheStallClockRunsOnlyWhileWorkIsPendingAndAnAcknowledgementRestartsIt) {
    RelayConfig config;
    config.stall_after = std::chrono::seconds(0);  // any busy moment without an acknowledgement is a stall
    LoopObserver observer(config, nullptr, nullptr);
    EXPECT_FALSE(observer.WantsLags());
    observer.SessionUp();
    EXPECT_FALSE(observer.GetHealth().stalled) << "idle is never stalled";
    observer.Busy();
    auto h = observer.GetHealth();
    EXPECT_TRUE(h.stalled);
    EXPECT_NE(h.reason.find("stalled"), std::string::npos) << h.reason;
    observer.Idle();
    h = observer.GetHealth();
    EXPECT_FALSE(h.stalled);
    EXPECT_EQ(h.reason, "");
    EXPECT_EQ(h.busy_seconds, 0.0);

    config.stall_after = std::chrono::seconds(3600);
    LoopObserver patient(config, nullptr, nullptr);
    patient.SessionUp();
    patient.Busy();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const double before = patient.GetHealth().busy_seconds;
    EXPECT_GT(before, 0.0);
    patient.Acknowledged(1, 1, "delivered", {});
    EXPECT_LT(patient.GetHealth().busy_seconds, before) << "an acknowledgement restarts the clock";
    patient.Resting(true);
    EXPECT_TRUE(patient.GetHealth().resting);
}

/// Sets the EVENTLOG_FAULT_* variables for one test and clears them after.
class FaultEnv {
public:
    FaultEnv(const char* point, const char* action, const char* after) {
        Set("EVENTLOG_FAULT_POINT", point);
        Set("EVENTLOG_FAULT_ACTION", action);
        Set("EVENTLOG_FAULT_AFTER", after);
    }
    ~FaultEnv() {
        ::unsetenv("EVENTLOG_FAULT_POINT");
        ::unsetenv("EVENTLOG_FAULT_ACTION");
        ::unsetenv("EVENTLOG_FAULT_AFTER");
    }
    FaultEnv(const FaultEnv&) = delete;
    FaultEnv& operator=(const FaultEnv&) = delete;

private:
    static void Set(const char* name, const char* value) {
        if (value == nullptr) {
            ::unsetenv(name);
        } else {
            ::setenv(name, value, 1);
        }
    }
};

TEST(FaultInjectionTest, WithoutTheVariableThereIsNoProbe) {
    const FaultEnv env(nullptr, "throw", "1");
    EXPECT_FALSE(eventlog::cli::FaultInjectionFromEnvironment());
}

TEST(FaultInjectionTest, ThrowActsOnceAtTheNthTimeTheStepIsReachedAndIgnoresOtherSteps) {
    const FaultEnv env("after_insert", "throw", "3");
    const auto probe = eventlog::cli::FaultInjectionFromEnvironment();
    ASSERT_TRUE(probe);
    probe("after_claim");
    probe("after_claim");
    probe("after_claim");
    probe("after_insert");
    probe("after_insert");
    try {
        probe("after_insert");
        ADD_FAILURE() << "the third after_insert did not throw";
    } catch (const Error& e) {
        EXPECT_EQ(e.Kind(), eventlog::ErrorKind::kTransient);
        EXPECT_EQ(e.Code(), "210");
        EXPECT_NE(std::string(e.what()).find("after_insert"), std::string::npos) << e.what();
    }
    EXPECT_NO_THROW(probe("after_insert")) << "it acts once";
}

TEST(FaultInjectionTest, AnUnknownActionIsRefusedNamingTheVariable) {
    const FaultEnv env("after_claim", "explode", nullptr);
    try {
        (void)eventlog::cli::FaultInjectionFromEnvironment();
        ADD_FAILURE() << "an unknown action was accepted";
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("EVENTLOG_FAULT_ACTION"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("explode"), std::string::npos) << e.what();
    }
}

}  // namespace
