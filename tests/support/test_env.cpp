#include "support/test_env.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <eventlog/core/error.hpp>
#include <eventlog/core/uuid.hpp>
#include <eventlog/outbox/migrate.hpp>
#include <stdexcept>
#include <thread>

namespace eventlog::testing {
namespace {

std::atomic<int> g_counter{0};

std::string OptionalEnv(const char* name, const char* fallback) {
    const char* value = std::getenv(name);
    return value != nullptr && *value != '\0' ? value : fallback;
}

}  // namespace

std::string RequireEnv(const char* name, std::string_view hint) {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') {
        throw std::runtime_error(std::string(name) + " is not set: the integration tests need a real server. " +
                                 std::string(hint));
    }
    return value;
}

std::string WithDatabase(const std::string& dsn, const std::string& database) {
    const auto scheme_end = dsn.find("://");
    if (scheme_end == std::string::npos) throw std::runtime_error("expected a postgres:// URL, got: " + dsn);
    const auto authority_start = scheme_end + 3;
    const auto query = dsn.find('?', authority_start);
    const auto slash = dsn.find('/', authority_start);
    const std::string query_part = query == std::string::npos ? "" : dsn.substr(query);
    const auto authority_end = std::min(slash, query);
    return dsn.substr(0, authority_end) + "/" + database + query_part;
}

clickhouse::ClientOptions ClientOptionsFor(const eventlog::Config& config) {
    return clickhouse::OptionsFrom(config.clickhouse);
}

bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
               std::chrono::milliseconds step) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (condition()) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(step);
    }
}

TestStack::TestStack() : TestStack(Options{}) {}

TestStack::TestStack(Options options) {
    pg_dsn_ = RequireEnv("EVENTLOG_TEST_PG_DSN",
                         "Set it to a PostgreSQL superuser URL, e.g. "
                         "EVENTLOG_TEST_PG_DSN=postgres://eventlog:eventlog@127.0.0.1:54329/eventlog");
    ch_url_ = RequireEnv("EVENTLOG_TEST_CH_URL",
                         "Set it to a ClickHouse HTTP endpoint, e.g. EVENTLOG_TEST_CH_URL=http://127.0.0.1:18123");
    while (!ch_url_.empty() && ch_url_.back() == '/') ch_url_.pop_back();
    name_ = "eventlog_test_" + std::to_string(::getpid()) + "_" + std::to_string(g_counter.fetch_add(1));

    env_ = {
        {"ENVIRONMENT", "integration_test"},
        {"DATABASE_URL", WithDatabase(pg_dsn_, name_)},
        {"CLICKHOUSE_URI", ch_url_},
        {"CLICKHOUSE_USER", OptionalEnv("EVENTLOG_TEST_CH_USER", "default")},
        {"CLICKHOUSE_PASSWORD", OptionalEnv("EVENTLOG_TEST_CH_PASSWORD", "")},
        {"CLICKHOUSE_SCHEMA", name_},
        {"CLICKHOUSE_CONNECT_TIMEOUT", "2"},
        {"CLICKHOUSE_SEND_RECEIVE_TIMEOUT", "30"},
        {"EVENT_PROCESSING_INTERVAL", "1"},
        {"RELAY_BACKOFF_BASE_MS", "20"},
        {"RELAY_BACKOFF_CAP_MS", "200"},
    };
    for (const auto& [key, value] : options.overrides) env_[key] = value;
    admin_config_ = LoadConfig(env_);
    // The relay's login: a role of this stack that holds only eventlog_relay (created in Create()).
    relay_role_ = name_ + "_relay";
    relay_password_ = Uuid::Random().ToString();
    producer_role_ = name_ + "_producer";
    if (options.overrides.count("DATABASE_URL") == 0) {
        env_["DATABASE_URL"] = "postgres://" + relay_role_ + ":" + relay_password_ + "@" + admin_config_.postgres.host +
                               ":" + std::to_string(admin_config_.postgres.port) + "/" + name_;
    }
    config_ = LoadConfig(env_);
    try {
        Create(options.migrate);
    } catch (...) {
        Cleanup();
        throw;
    }
}

void TestStack::Create(bool migrate) {
    {
        pg::ConnectOptions admin_options;
        admin_options.conninfo = pg_dsn_;
        admin_options.application_name = "eventlog-test-admin";
        auto admin = pg::Connection::Open(admin_options);
        admin.Exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
        admin.Exec("CREATE DATABASE " + name_);
        pg_created_ = true;
    }
    {
        auto admin_options = ClientOptionsFor(config_);
        admin_options.database = "default";
        clickhouse::Client admin(admin_options);
        admin.Execute("DROP DATABASE IF EXISTS " + clickhouse::QuoteIdentifier(name_));
        admin.Execute("CREATE DATABASE " + clickhouse::QuoteIdentifier(name_));
        ch_created_ = true;
    }
    if (migrate) outbox::Migrate(Pg(), Ch(), admin_config_);
    auto& admin = Pg();
    admin.Exec("CREATE ROLE " + relay_role_ + " LOGIN PASSWORD '" + relay_password_ + "'");
    relay_role_created_ = true;
    admin.Exec("GRANT CONNECT ON DATABASE " + name_ + " TO " + relay_role_);
    admin.Exec("CREATE ROLE " + producer_role_ + " LOGIN PASSWORD '" + relay_password_ + "'");
    producer_role_created_ = true;
    admin.Exec("GRANT CONNECT ON DATABASE " + name_ + " TO " + producer_role_);
    if (admin.Exec("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'eventlog_relay'").Rows() == 1) {
        admin.Exec("GRANT eventlog_relay TO " + relay_role_);
        admin.Exec("GRANT eventlog_producer TO " + producer_role_);
    }
}

TestStack::~TestStack() { Cleanup(); }

void TestStack::Cleanup() noexcept {
    pg_.reset();
    producer_.reset();
    ch_.reset();
    try {
        if (ch_created_) {
            auto admin_options = ClientOptionsFor(config_);
            admin_options.database = "default";
            clickhouse::Client admin(admin_options);
            admin.Execute("DROP DATABASE IF EXISTS " + clickhouse::QuoteIdentifier(name_));
            ch_created_ = false;
        }
    } catch (const std::exception& e) {
        ADD_FAILURE() << "cannot drop ClickHouse database " << name_ << ": " << e.what();
    }
    try {
        if (pg_created_) {
            pg::ConnectOptions admin_options;
            admin_options.conninfo = pg_dsn_;
            auto admin = pg::Connection::Open(admin_options);
            admin.Exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
            pg_created_ = false;
            if (relay_role_created_) admin.Exec("DROP ROLE IF EXISTS " + relay_role_);
            relay_role_created_ = false;
            if (producer_role_created_) admin.Exec("DROP ROLE IF EXISTS " + producer_role_);
            producer_role_created_ = false;
        }
    } catch (const std::exception& e) {
        ADD_FAILURE() << "cannot drop PostgreSQL database " << name_ << ": " << e.what();
    }
}

eventlog::Config TestStack::ConfigWith(const EnvMap& extra) const {
    EnvMap env = env_;
    for (const auto& [key, value] : extra) env[key] = value;
    return LoadConfig(env);
}

pg::Connection& TestStack::Pg() {
    if (!pg_ || !pg_->Healthy()) pg_.emplace(OpenPg());
    return *pg_;
}

pg::Connection TestStack::OpenPg() const {
    pg::ConnectOptions options;
    options.conninfo = admin_config_.postgres.ConnInfo();
    options.application_name = "eventlog-test";
    return pg::Connection::Open(options);
}

pg::Connection& TestStack::Producer() {
    if (!producer_ || !producer_->Healthy()) {
        auto config = config_.postgres;
        config.user = producer_role_;
        config.password = relay_password_;
        pg::ConnectOptions options;
        options.conninfo = config.ConnInfo();
        options.application_name = "eventlog-test-producer";
        producer_.emplace(pg::Connection::Open(options));
    }
    return *producer_;
}

clickhouse::Client& TestStack::Ch() {
    if (!ch_) ch_.emplace(OpenCh());
    return *ch_;
}

clickhouse::Client TestStack::OpenCh() const { return clickhouse::Client(ClientOptionsFor(config_)); }

std::string TestStack::ChTable() const {
    return clickhouse::QuoteIdentifier(config_.clickhouse.database) + "." +
           clickhouse::QuoteIdentifier(config_.clickhouse.table);
}

std::string TestStack::ChQuery(std::string_view sql) { return Ch().Query(std::string(sql) + " FORMAT TabSeparated"); }

std::int64_t TestStack::ChCount(std::string_view sql) {
    const std::string body = ChQuery(sql);
    try {
        return std::stoll(body);
    } catch (const std::exception&) {
        throw std::runtime_error("ClickHouse query did not return an integer: " + std::string(sql) + " -> '" + body +
                                 "'");
    }
}

std::int64_t TestStack::PgCount(std::string_view sql) { return Pg().Exec(sql).GetInt(0, 0); }

std::int64_t TestStack::PendingEvents() {
    return PgCount(
        "SELECT (SELECT count(*) FROM eventlog.outbox_pending) + "
        "(SELECT coalesce(sum(cardinality(events)), 0) FROM eventlog.delivery)");
}

std::vector<std::string> TestStack::ClaimAs(int owner, int chunk_rows) {
    // One claim takes rows of one range; claims go on until one finds nothing.
    std::vector<std::string> ids;
    for (;;) {
        const auto r = Pg().Exec(
            "SELECT batch_id::text FROM eventlog.claim_chunks($1::integer, $2::integer, 2147483647, "
            "9223372036854775807, (SELECT array_agg(gen_random_uuid()) FROM generate_series(0, (SELECT count(*) FROM "
            "eventlog.outbox) / $2::integer)))",
            {std::to_string(owner), std::to_string(chunk_rows)});
        if (r.Rows() == 0) return ids;
        for (int i = 0; i < r.Rows(); ++i) ids.emplace_back(r.Get(i, 0));
    }
}

std::string TestStack::CheckRanges(bool all_claimed) { return testing::CheckRanges(Pg(), all_claimed); }

std::string CheckRanges(pg::Connection& pg, bool all_claimed) {
    // Hash joins and aggregates only: a nested loop over the rows of every chunk was quadratic, and the check of 20
    // chaos rounds ran into the statement timeout.
    pg.Exec("SET enable_nestloop = off");
    const auto r = pg.Exec(R"sql(
WITH covered AS MATERIALIZED (
    SELECT c.batch_id, k.txid, k.id
    FROM eventlog.outbox_chunk c JOIN eventlog.outbox_range r ON r.id = c.range_id,
         LATERAL eventlog.range_rows(r.lo, r.hi, c.first_txid, c.first_id, c.last_txid, c.last_id,
                                     9223372036854775807) k
), per_chunk AS (
    SELECT batch_id, count(*) AS n FROM covered GROUP BY batch_id
)
SELECT
    (SELECT count(*) FROM eventlog.outbox_chunk c LEFT JOIN per_chunk p ON p.batch_id = c.batch_id
     LEFT JOIN eventlog.outbox_ack a ON a.batch_id = c.batch_id
     WHERE coalesce(p.n, 0) > c.events OR (coalesce(p.n, 0) < c.events AND a.batch_id IS NULL)) AS miscounted,
    (SELECT count(*) FROM (SELECT 1 FROM covered GROUP BY txid, id HAVING count(*) > 1) d) AS overlapping,
    (SELECT count(*) FROM eventlog.outbox o LEFT JOIN covered x ON x.txid = o.txid AND x.id = o.id
     WHERE x.id IS NULL) AS uncovered,
    (SELECT count(*) FROM eventlog.outbox_range r JOIN eventlog.outbox_range p ON p.id = r.id - 1
     WHERE p.hi::text <> r.lo::text) AS unchained)sql");
    pg.Exec("RESET enable_nestloop");
    std::string problems;
    const char* names[] = {"chunks whose rows are not their count", "rows in two chunks", "rows in no chunk",
                           "ranges not chained to the one before"};
    for (int i = 0; i < 4; ++i) {
        if (i == 2 && !all_claimed) continue;
        if (r.GetInt(0, i) != 0) problems += std::to_string(r.GetInt(0, i)) + " " + names[i] + "; ";
    }
    return problems;
}

relay::Stats TestStack::Drain(const EnvMap& extra) {
    relay::Relay relay(extra.empty() ? config_ : ConfigWith(extra));
    return relay.Run({.drain = true});
}

void StackTest::SetUp() {
    try {
        stack_ = std::make_unique<TestStack>(StackOptions());
    } catch (const std::exception& e) {
        FAIL() << "cannot set up the test databases: " << e.what();
    }
}

void StackTest::TearDown() { stack_.reset(); }

BackgroundRelay::BackgroundRelay(const eventlog::Config& config, bool drain) : relay_(config) {
    thread_ = std::thread([this, drain] {
        try {
            stats_ = relay_.Run({.drain = drain});
        } catch (const std::exception& e) {
            std::lock_guard lock(mutex_);
            error_ = e.what();
        }
        finished_.store(true);
    });
}

BackgroundRelay::~BackgroundRelay() { Stop(); }

bool BackgroundRelay::WaitFinished(std::chrono::milliseconds bound) const {
    return WaitUntil([&] { return finished_.load(); }, bound, std::chrono::milliseconds(20));
}

relay::Stats BackgroundRelay::Stop() {
    if (thread_.joinable()) {
        relay_.Stop();
        if (!WaitFinished(std::chrono::seconds(5))) relay_.Abort();
        thread_.join();
    }
    return stats_;
}

std::string BackgroundRelay::Error() const {
    std::lock_guard lock(mutex_);
    return error_;
}

}  // namespace eventlog::testing
