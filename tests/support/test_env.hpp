#pragma once

// Shared helpers for tests that need real servers (tests/integration/*_dbtest.cpp, tests/e2e/*_e2etest.cpp).
//
// Servers come from the environment, never from defaults:
//   EVENTLOG_TEST_PG_DSN   postgres://eventlog:eventlog@127.0.0.1:54329/eventlog  (a SUPERUSER: CREATE DATABASE)
//   EVENTLOG_TEST_CH_URL   http://127.0.0.1:18123                                  (scheme, host, port; no path)
//   EVENTLOG_TEST_CH_USER / EVENTLOG_TEST_CH_PASSWORD  optional ClickHouse credentials ("default", "")
// When one of the two required variables is unset, TestStack's constructor throws std::runtime_error
// naming it, so the test FAILS (it never skips).
//
// Typical use:
//
//   eventlog::testing::TestStack stack;                    // fresh PG database + CH database, migrated
//   { eventlog::pg::Transaction tx(stack.Pg()); eventlog::outbox::Emit(tx, event); tx.Commit(); }
//   eventlog::relay::Relay(stack.Config()).Run({.drain = true});
//   EXPECT_EQ(stack.ChCount("SELECT count() FROM " + stack.ChTable()), 1);
//
// Or derive a gtest fixture from StackTest, which builds `stack_` in SetUp() and turns a missing server
// variable into a fatal failure with a clear message.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <eventlog/clickhouse/client.hpp>
#include <eventlog/core/config.hpp>
#include <eventlog/pg/connection.hpp>
#include <eventlog/relay/relay.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace eventlog::testing {

/// The value of environment variable `name`; throws std::runtime_error with `hint` when unset or empty.
std::string RequireEnv(const char* name, std::string_view hint);

/// `dsn` (a postgres:// URL) with its database path replaced by `database` (query string kept).
std::string WithDatabase(const std::string& dsn, const std::string& database);

/// Client options (URL, credentials, database, timeouts) for `config.clickhouse`, as the relay builds them.
clickhouse::ClientOptions ClientOptionsFor(const eventlog::Config& config);

/// Polls `condition` every `step` until it is true or `timeout` passes; returns its last value.
bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
               std::chrono::milliseconds step = std::chrono::milliseconds(10));

/// A throwaway PostgreSQL database plus a throwaway ClickHouse database, both migrated (unless told not to),
/// and a Config pointing at them. Non-copyable, non-movable, not thread-safe (create extra connections with
/// OpenPg()/OpenCh() for other threads). The destructor drops both databases (PostgreSQL WITH (FORCE)); join
/// any relay threads before it runs.
class TestStack {
public:
    /// Settings used unless overridden: ENVIRONMENT=integration_test, EVENT_PROCESSING_INTERVAL=1,
    /// RELAY_BACKOFF_BASE_MS=20, RELAY_BACKOFF_CAP_MS=200, CLICKHOUSE_CONNECT_TIMEOUT=2,
    /// CLICKHOUSE_SEND_RECEIVE_TIMEOUT=30, plus DATABASE_URL, CLICKHOUSE_* and CLICKHOUSE_SCHEMA for the
    /// fresh databases.
    struct Options {
        EnvMap overrides;    ///< Extra/overriding configuration variables (e.g. {"EVENT_BATCH_SIZE", "500"}).
        bool migrate{true};  ///< Run outbox::Migrate in the constructor.
    };

    /// Creates eventlog_test_<pid>_<n> in PostgreSQL and ClickHouse (same name), then migrates.
    TestStack();
    explicit TestStack(Options options);
    ~TestStack();
    TestStack(const TestStack&) = delete;
    TestStack& operator=(const TestStack&) = delete;

    /// The configuration built by LoadConfig from Env(): the relay's. Its PostgreSQL user is a login role of this
    /// stack that holds only eventlog_relay, so every relay a test runs has the least privilege that works (Pg()
    /// and OpenPg() stay the administrator's, for setting up and inspecting).
    const eventlog::Config& Config() const { return config_; }
    /// A configuration for the same databases with `extra` variables layered over Env().
    eventlog::Config ConfigWith(const EnvMap& extra) const;
    /// The variables Config() was loaded from.
    const EnvMap& Env() const { return env_; }

    /// A connection to the test's PostgreSQL database (opened once, reused).
    pg::Connection& Pg();
    /// A new connection to the test's PostgreSQL database (for other threads).
    pg::Connection OpenPg() const;
    /// A connection as this stack's producer login, a role that holds only eventlog_producer: it may call
    /// eventlog.emit() and nothing else (opened once, reused). Tests emit through it as an application would.
    pg::Connection& Producer();
    /// A client for the test's ClickHouse database (created once, reused).
    clickhouse::Client& Ch();
    /// A new ClickHouse client for the test's database (for other threads).
    clickhouse::Client OpenCh() const;

    /// Name of both databases ("eventlog_test_<pid>_<n>").
    const std::string& DatabaseName() const { return name_; }
    /// "`db`.`event_log`": the fully qualified event_log table, for ClickHouse SQL.
    std::string ChTable() const;

    /// Runs a ClickHouse query returning one integer (e.g. "SELECT count() FROM " + ChTable()).
    std::int64_t ChCount(std::string_view sql);
    /// Runs a ClickHouse query and returns the TabSeparated body (FORMAT TabSeparated is appended).
    std::string ChQuery(std::string_view sql);
    /// Runs a PostgreSQL query returning one integer, on Pg().
    std::int64_t PgCount(std::string_view sql);
    /// Events not yet delivered: rows of eventlog.outbox not acknowledged (eventlog.outbox_pending) plus events in
    /// records of the version before (eventlog.delivery).
    std::int64_t PendingEvents();
    /// Claims every pending row as relay owner `owner` would (eventlog.claim_chunks, in chunks of `chunk_rows`, claim
    /// after claim until one finds nothing) and returns the chunks' batch ids: the records a relay leaves when it dies
    /// right after its claims.
    std::vector<std::string> ClaimAs(int owner, int chunk_rows = 1'000'000);
    /// The offline checker of storage v2 (docs/delivery.md, "Ranges"): recomputes every chunk's rows from its
    /// descriptor and returns what is wrong, "" when nothing is: a chunk whose rows are not its count (fewer is
    /// right for an acknowledged one whose partition was truncated since), a row in two
    /// chunks, a committed row in no chunk (with `all_claimed`: once a claim found nothing more), consecutive ranges
    /// that do not chain (lo of one = hi of the one before).
    std::string CheckRanges(bool all_claimed);

    /// Runs a relay on Config() (or ConfigWith(extra)) with drain=true and returns its stats.
    relay::Stats Drain(const EnvMap& extra = {});

private:
    void Create(bool migrate);
    void Cleanup() noexcept;

    std::string pg_dsn_;  // admin DSN (EVENTLOG_TEST_PG_DSN)
    std::string ch_url_;  // EVENTLOG_TEST_CH_URL
    std::string name_;
    bool pg_created_{false};
    bool ch_created_{false};
    EnvMap env_;
    eventlog::Config config_;
    eventlog::Config admin_config_;  // the same with the administrator's PostgreSQL user (EVENTLOG_TEST_PG_DSN)
    std::string relay_role_;
    std::string relay_password_;
    bool relay_role_created_{false};
    std::string producer_role_;
    bool producer_role_created_{false};
    std::optional<pg::Connection> pg_;
    std::optional<pg::Connection> producer_;
    std::optional<clickhouse::Client> ch_;
};

/// A relay running Run() on its own thread (with drain, until it returns by itself; without, until Stop());
/// records an exception that escapes Run(). Non-copyable; the destructor stops and joins.
class BackgroundRelay {
public:
    explicit BackgroundRelay(const eventlog::Config& config, bool drain = false);
    ~BackgroundRelay();
    BackgroundRelay(const BackgroundRelay&) = delete;
    BackgroundRelay& operator=(const BackgroundRelay&) = delete;
    /// Stop(), then Abort() if Run() has not returned 5 s later; joins. Returns the stats of Run().
    relay::Stats Stop();
    /// Waits until Run() returns by itself or `bound` passes; true when it returned.
    bool WaitFinished(std::chrono::milliseconds bound) const;
    /// True once Run() has returned or thrown.
    bool Finished() const { return finished_.load(); }
    /// The text of the exception that escaped Run() ("" when none, or not returned yet).
    std::string Error() const;
    /// The relay's health (relay::Relay::GetHealth()).
    relay::Health Health() const { return relay_.GetHealth(); }

private:
    relay::Relay relay_;
    relay::Stats stats_;
    mutable std::mutex mutex_;
    std::string error_;
    std::atomic<bool> finished_{false};
    std::thread thread_;
};

/// A gtest fixture owning a TestStack built in SetUp() from StackOptions().
class StackTest : public ::testing::Test {
protected:
    /// Override to change the stack's settings.
    virtual TestStack::Options StackOptions() { return {}; }
    void SetUp() override;
    void TearDown() override;

    std::unique_ptr<TestStack> stack_;
};

/// TestStack::CheckRanges() on any session of an eventlog database.
std::string CheckRanges(pg::Connection& pg, bool all_claimed);

}  // namespace eventlog::testing
