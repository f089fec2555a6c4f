// Integration tests against a real ClickHouse server: EVENTLOG_TEST_CH_URL (e.g. http://127.0.0.1:18123),
// optional EVENTLOG_TEST_CH_USER / EVENTLOG_TEST_CH_PASSWORD. Works on 18.16 and modern servers.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <eventlog/clickhouse/client.hpp>
#include <eventlog/clickhouse/row_binary.hpp>
#include <eventlog/core/error.hpp>
#include <string>
#include <vector>

namespace eventlog::clickhouse {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Env(const char* name, const char* fallback = "") {
    const char* value = std::getenv(name);
    return value != nullptr ? value : fallback;
}

const Uuid kBatchId = *Uuid::Parse("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");

Event MakeEvent(const char* id, std::int64_t micros, std::string trace_id, std::uint64_t version = 1) {
    Event event;
    event.event_id = *Uuid::Parse(id);
    event.event_type = "user_created";
    event.event_date_time_us = micros;
    event.environment = "Local";
    event.event_context = R"({"email":"a@b.c","first_name":"A\tB","last_name":"OBrien \\ \u00e9"})";
    event.metadata_version = version;
    event.trace_id = std::move(trace_id);
    return event;
}

class ClickHouseClientTest : public ::testing::Test {
protected:
    void SetUp() override {
        url_ = Env("EVENTLOG_TEST_CH_URL");
        if (url_.empty()) {
            FAIL() << "EVENTLOG_TEST_CH_URL is not set: point it at a ClickHouse HTTP endpoint, "
                      "e.g. EVENTLOG_TEST_CH_URL=http://127.0.0.1:18123";
        }
        database_ = "eventlog_ch_dbtest_" + std::to_string(::getpid());
        Client admin(Options("default"));
        admin.Execute("DROP DATABASE IF EXISTS " + QuoteIdentifier(database_));
        admin.Execute("CREATE DATABASE " + QuoteIdentifier(database_));
        client_.emplace(Options(database_));
    }

    void TearDown() override {
        if (client_) client_->Execute("DROP DATABASE IF EXISTS " + QuoteIdentifier(database_));
    }

    ClientOptions Options(const std::string& database) const {
        ClientOptions options;
        options.base_url = url_;
        options.user = Env("EVENTLOG_TEST_CH_USER", "default");
        options.password = Env("EVENTLOG_TEST_CH_PASSWORD");
        options.database = database;
        options.connect_timeout = std::chrono::milliseconds(2000);
        options.send_receive_timeout = std::chrono::milliseconds(20000);
        return options;
    }

    // CREATE TABLE that also works on 18.16, where LowCardinality is still experimental.
    void Create(const std::string& table, const std::string& columns, const std::string& order_by) {
        std::vector<std::pair<std::string, std::string>> settings;
        if (!client_->Version().AtLeast(19, 1)) settings.emplace_back("allow_experimental_low_cardinality_type", "1");
        client_->Query("CREATE TABLE " + QuoteIdentifier(database_) + "." + QuoteIdentifier(table) + " (" + columns +
                           ") ENGINE = MergeTree() ORDER BY " + order_by,
                       settings);
    }

    std::string url_;
    std::string database_;
    std::optional<Client> client_;
};

TEST_F(ClickHouseClientTest, PingAndVersion) {
    client_->Ping();
    const ServerVersion version = client_->Version();
    EXPECT_GE(version.major, 18);
    EXPECT_FALSE(version.text.empty());
    EXPECT_EQ(client_->SupportsDateTime64(), version.AtLeast(20, 1));
    EXPECT_EQ(client_->SupportsDeduplicationToken(), version.AtLeast(22, 2));
    EXPECT_EQ(client_->Query("SELECT currentDatabase() FORMAT TabSeparated"), database_ + "\n");
    EXPECT_EQ(client_->Query("SELECT value FROM system.settings WHERE name = 'max_threads' FORMAT TabSeparated",
                             {{"max_threads", "3"}}),
              "3\n");
    std::cout << "ClickHouse server version " << version.text << "\n";
}

TEST_F(ClickHouseClientTest, InsertRowBinaryAndReadBackExactText) {
    const bool dt64 = client_->SupportsDateTime64();
    Create("event_log",
           "event_id UUID, event_type LowCardinality(String), event_date_time " +
               std::string(dt64 ? "DateTime64(6, 'UTC')" : "DateTime('UTC')") +
               ", environment FixedString(8), event_context String, metadata_version UInt16 DEFAULT 1, "
               "trace_id Nullable(String), batch_id UUID, inserted_at DateTime DEFAULT now(), "
               "day Date MATERIALIZED toDate(event_date_time)",
           "(event_date_time, event_id)");
    const auto columns = client_->DescribeTable(database_, "event_log");
    const auto encoder = RowBinaryEncoder::ForColumns(columns);
    EXPECT_EQ(encoder.ColumnList(),
              "(`event_id`, `event_type`, `event_date_time`, `environment`, `event_context`, `metadata_version`, "
              "`trace_id`, `batch_id`)");

    const std::vector<Event> events = {
        MakeEvent("00112233-4455-6677-8899-aabbccddeeff", 1614834367123456, "4bf92f3577b34da6a3ce929d0e0e4736", 2),
        // Not the epoch itself: 18.16 prints DateTime 0 / Date 0 as "0000-00-00 00:00:00" / "0000-00-00".
        MakeEvent("ffffffff-0000-4000-8000-000000000001", 86400000001, "", 65535),
        MakeEvent("80000000-0000-4000-8000-7fffffffffff", 4102444799999999, "x"),  // 2099-12-31 23:59:59.999999
    };
    std::string body;
    for (const auto& event : events) encoder.Append(event, kBatchId, body);
    client_->Insert("event_log", encoder.ColumnList(), body, InsertOptions{"eventlog-dbtest-insert-1", ""});

    const std::string text = client_->Query(
        "SELECT toString(event_id), event_type, toString(event_date_time), toStringCutToZero(environment), "
        "event_context, metadata_version, trace_id, toString(batch_id), toString(day) FROM event_log "
        "ORDER BY event_date_time FORMAT TabSeparated");
    const std::string context_tsv = R"({"email":"a@b.c","first_name":"A\\tB","last_name":"OBrien \\\\ \\u00e9"})";
    const std::string fraction1 = dt64 ? ".000001" : "";
    const std::string fraction2 = dt64 ? ".123456" : "";
    const std::string fraction3 = dt64 ? ".999999" : "";
    const std::string batch = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    EXPECT_EQ(text, "ffffffff-0000-4000-8000-000000000001\tuser_created\t1970-01-02 00:00:00" + fraction1 +
                        "\tLocal\t" + context_tsv + "\t65535\t\\N\t" + batch + "\t1970-01-02\n" +
                        "00112233-4455-6677-8899-aabbccddeeff\tuser_created\t2021-03-04 05:06:07" + fraction2 +
                        "\tLocal\t" + context_tsv + "\t2\t4bf92f3577b34da6a3ce929d0e0e4736\t" + batch +
                        "\t2021-03-04\n" + "80000000-0000-4000-8000-7fffffffffff\tuser_created\t2099-12-31 23:59:59" +
                        fraction3 + "\tLocal\t" + context_tsv + "\t1\tx\t" + batch + "\t2099-12-31\n");
    Event quoted = MakeEvent("00000000-0000-4000-8000-000000000000", 1614834367000000, "");
    quoted.event_context = "{\"q\":\"it's \\\\ a\\tb\\n\"}\n\t'";
    body.clear();
    encoder.Append(quoted, kBatchId, body);
    client_->Insert("event_log", encoder.ColumnList(), body);
    EXPECT_EQ(client_->Query("SELECT count() FROM event_log WHERE event_context = " +
                             QuoteString(quoted.event_context) + " FORMAT TabSeparated"),
              "1\n");
    EXPECT_EQ(client_->Query("SELECT count() FROM event_log WHERE inserted_at > toDateTime('2020-01-01 00:00:00') "
                             "FORMAT TabSeparated"),
              "4\n");
}

TEST_F(ClickHouseClientTest, AlternativeColumnTypes) {
    Create(
        "alt",
        "event_id String, batch_id FixedString(16), event_date_time Date, metadata_version Int64, "
        "trace_id LowCardinality(Nullable(String)), event_type Nullable(String), environment LowCardinality(String), "
        "event_context String",
        "event_id");
    const auto encoder = RowBinaryEncoder::ForColumns(client_->DescribeTable(database_, "alt"));
    std::string body;
    encoder.Append(MakeEvent("00112233-4455-6677-8899-aabbccddeeff", 1614834367123456, "", 7), kBatchId, body);
    encoder.Append(MakeEvent("00112233-4455-6677-8899-aabbccddeef0", -1 + 86400000000LL * 2, "t", 8), kBatchId, body);
    client_->Insert("alt", encoder.ColumnList(), body);
    EXPECT_EQ(client_->Query("SELECT event_id, lower(hex(batch_id)), toString(event_date_time), metadata_version, "
                             "trace_id, event_type, environment FROM alt ORDER BY event_id FORMAT TabSeparated"),
              "00112233-4455-6677-8899-aabbccddeef0\t0f1e2d3c4b5a69788796a5b4c3d2e1f0\t1970-01-02\t8\tt\tuser_created"
              "\tLocal\n"
              "00112233-4455-6677-8899-aabbccddeeff\t0f1e2d3c4b5a69788796a5b4c3d2e1f0\t2021-03-04\t7\t\\N\tuser_created"
              "\tLocal\n");
}

// Servers before 20.1 (18.16 here) have no DateTime64: creating such a column fails, and the client says so, which is
// why migrations fall back to DateTime there.
TEST_F(ClickHouseClientTest, DateTime64IsRefusedWhereTheServerLacksIt) {
    if (client_->Version().AtLeast(20, 1)) {
        EXPECT_TRUE(client_->SupportsDateTime64());
        GTEST_SKIP() << "ClickHouse " << client_->Version().text << " has DateTime64: nothing to refuse here";
    }
    EXPECT_FALSE(client_->SupportsDateTime64());
    EXPECT_THROW(Create("modern", "event_id UUID, event_date_time DateTime64(3, 'UTC')", "event_id"), eventlog::Error);
}

// Only a modern server (22.3+) can run this; on 18.16 it is reported as skipped (ctest counts it so), never as passed.
TEST_F(ClickHouseClientTest, ModernTypesRoundTripOnAModernServer) {
    if (!client_->Version().AtLeast(22, 3)) {
        GTEST_SKIP() << "ClickHouse " << client_->Version().text << " has no Bool, Date32 or DateTime64";
    }
    Create("modern", "event_id UUID, event_date_time DateTime64(3, 'UTC'), metadata_version Bool", "event_id");
    Create("modern32", "event_id UUID, event_date_time Date32", "event_id");
    std::string body;
    auto encoder = RowBinaryEncoder::ForColumns(client_->DescribeTable(database_, "modern"));
    encoder.Append(MakeEvent("00112233-4455-6677-8899-aabbccddeeff", -2208988800000000 + 1500, "", 1), kBatchId, body);
    client_->Insert("modern", encoder.ColumnList(), body);
    EXPECT_EQ(client_->Query("SELECT toString(event_id), toString(event_date_time), metadata_version FROM modern "
                             "FORMAT TabSeparated"),
              "00112233-4455-6677-8899-aabbccddeeff\t1900-01-01 00:00:00.001\ttrue\n");
    body.clear();
    encoder = RowBinaryEncoder::ForColumns(client_->DescribeTable(database_, "modern32"));
    encoder.Append(MakeEvent("00112233-4455-6677-8899-aabbccddeeff", 10413791999999999, ""), kBatchId, body);
    client_->Insert("modern32", encoder.ColumnList(), body);
    EXPECT_EQ(client_->Query("SELECT toString(event_date_time) FROM modern32 FORMAT TabSeparated"), "2299-12-31\n");
}

TEST_F(ClickHouseClientTest, DescribeTable) {
    Create("described", "a String, `odd\tname` UInt8 DEFAULT 1, c String MATERIALIZED a, d String ALIAS a", "tuple()");
    const auto columns = client_->DescribeTable(database_, "described");
    ASSERT_EQ(columns.size(), 4u);
    EXPECT_EQ(columns[0].name, "a");
    EXPECT_EQ(columns[0].type, "String");
    EXPECT_EQ(columns[0].default_kind, "");
    EXPECT_EQ(columns[1].name, "odd\tname");
    EXPECT_EQ(columns[1].type, "UInt8");
    EXPECT_EQ(columns[1].default_kind, "DEFAULT");
    EXPECT_EQ(columns[2].default_kind, "MATERIALIZED");
    EXPECT_EQ(columns[3].default_kind, "ALIAS");

    try {
        client_->DescribeTable(database_, "missing");
        FAIL() << "no exception";
    } catch (const ConfigError& e) {
        EXPECT_THAT(e.what(), HasSubstr("missing"));
    }
}

TEST_F(ClickHouseClientTest, TimezoneTypeNameSurvivesDescribe) {
    Create("tz", "event_date_time DateTime('UTC')", "tuple()");
    const auto columns = client_->DescribeTable(database_, "tz");
    ASSERT_EQ(columns.size(), 1u);
    EXPECT_EQ(columns[0].type, "DateTime('UTC')");
}

TEST_F(ClickHouseClientTest, WrongPasswordIsConfigErrorMentioningAuthentication) {
    ClientOptions options = Options(database_);
    options.password = "definitely-wrong-s3cret";
    Client client(options);
    try {
        client.Query("SELECT 1");
        FAIL() << "no exception";
    } catch (const ConfigError& e) {
        EXPECT_THAT(e.what(), HasSubstr("authentication"));
        EXPECT_THAT(e.what(), Not(HasSubstr("definitely-wrong-s3cret")));
        EXPECT_THAT(e.what(), HasSubstr(url_));
    }
}

TEST_F(ClickHouseClientTest, UnknownTableAndDatabaseAreConfigErrors) {
    try {
        client_->Insert("no_such_table", "(`event_id`)", std::string(16, '\0'));
        FAIL() << "no exception";
    } catch (const ConfigError& e) {
        EXPECT_THAT(e.what(), HasSubstr("Code: 60"));
        EXPECT_THAT(e.what(), HasSubstr("no_such_table"));
    }
    Client client(Options("no_such_database_eventlog"));
    EXPECT_THROW(client.Query("SELECT 1"), ConfigError);
}

TEST_F(ClickHouseClientTest, UnknownSettingIsConfigError) {
    EXPECT_THROW(client_->Query("SELECT 1", {{"no_such_setting_eventlog", "1"}}), ConfigError);
}

// Where the server knows insert_deduplication_token (22.2+), the same token twice stores the rows once (the table keeps
// a deduplication window); elsewhere the setting is refused as a configuration error and nothing is stored.
TEST_F(ClickHouseClientTest, DeduplicationTokenOnlyWhereSupported) {
    const bool supported = client_->SupportsDeduplicationToken();
    if (supported) {
        client_->Query("CREATE TABLE " + QuoteIdentifier(database_) +
                       ".dedup (event_id UUID) ENGINE = MergeTree() ORDER BY event_id "
                       "SETTINGS non_replicated_deduplication_window = 100");
    } else {
        Create("dedup", "event_id UUID", "event_id");
    }
    const auto encoder = RowBinaryEncoder::ForColumns(client_->DescribeTable(database_, "dedup"));
    std::string body;
    encoder.Append(MakeEvent("00112233-4455-6677-8899-aabbccddeeff", 0, ""), kBatchId, body);
    InsertOptions options;
    options.deduplication_token = "batch-1";
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (supported) {
            client_->Insert("dedup", encoder.ColumnList(), body, options);
        } else {
            EXPECT_THROW(client_->Insert("dedup", encoder.ColumnList(), body, options), ConfigError);
        }
    }
    EXPECT_EQ(client_->Query("SELECT count() FROM " + QuoteIdentifier(database_) + ".dedup FORMAT TabSeparated"),
              supported ? "1\n" : "0\n");
}

TEST_F(ClickHouseClientTest, ClosedPortIsTransient) {
    // Bind an ephemeral port, then close it: connecting there is refused.
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    socklen_t len = sizeof addr;
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    ::close(fd);
    ClientOptions options = Options(database_);
    options.base_url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
    Client client(options);
    EXPECT_THROW(client.Ping(), TransientError);
    EXPECT_THROW(client.Insert("t", "(`a`)", "x"), TransientError);  // nothing was sent: not in doubt
}

TEST_F(ClickHouseClientTest, ThrowIfInMaterializedColumnRejectsTheRows) {
    Create("guarded", "event_id UUID, metadata_version UInt64, guard UInt8 MATERIALIZED throwIf(metadata_version = 13)",
           "event_id");
    const auto encoder = RowBinaryEncoder::ForColumns(client_->DescribeTable(database_, "guarded"));
    std::string body;
    encoder.Append(MakeEvent("00112233-4455-6677-8899-aabbccddeeff", 0, "", 12), kBatchId, body);
    encoder.Append(MakeEvent("00112233-4455-6677-8899-aabbccddeef0", 0, "", 13), kBatchId, body);
    try {
        client_->Insert("guarded", encoder.ColumnList(), body);
        FAIL() << "no exception";
    } catch (const RejectedError& e) {
        EXPECT_THAT(e.what(), HasSubstr("Code: 395"));
    }
    EXPECT_EQ(client_->Query("SELECT count() FROM guarded FORMAT TabSeparated"), "0\n");
    // The connection is still usable afterwards.
    body.clear();
    encoder.Append(MakeEvent("00112233-4455-6677-8899-aabbccddeeff", 0, "", 12), kBatchId, body);
    client_->Insert("guarded", encoder.ColumnList(), body);
    EXPECT_EQ(client_->Query("SELECT count() FROM guarded FORMAT TabSeparated"), "1\n");
}

TEST_F(ClickHouseClientTest, MalformedRowBinaryIsRejected) {
    Create("strict", "event_id UUID, event_type String", "event_id");
    // A string length that runs past the end of the body.
    try {
        client_->Insert("strict", "(`event_id`, `event_type`)", std::string(16, '\0') + "\x7f" + "abc");
        FAIL() << "no exception";
    } catch (const RejectedError& e) {
        EXPECT_THAT(e.what(), HasSubstr("Code: 33"));
    }
}

TEST_F(ClickHouseClientTest, ClientIsMovable) {
    Client moved = std::move(*client_);
    moved.Ping();
    *client_ = std::move(moved);
    client_->Ping();
}

}  // namespace
}  // namespace eventlog::clickhouse
