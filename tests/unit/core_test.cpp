#include <gtest/gtest.h>

#include <eventlog/core/config.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/core/json.hpp>
#include <eventlog/core/uuid.hpp>

namespace eventlog {
namespace {

TEST(SnakeCase, ConvertsProducerNames) {
    EXPECT_EQ(ToSnakeCase("UserCreated"), "user_created");
    EXPECT_EQ(ToSnakeCase("user_created"), "user_created");
    EXPECT_EQ(ToSnakeCase("HTTPRequestFailed"), "http_request_failed");
    EXPECT_EQ(ToSnakeCase("user-created"), "user_created");
    EXPECT_EQ(ToSnakeCase("OrderV2Shipped"), "order_v2_shipped");
    EXPECT_EQ(ToSnakeCase("A"), "a");
    EXPECT_EQ(ToSnakeCase(" \tuser-created "), "user_created");  // ends trimmed, separators become one '_'
    EXPECT_EQ(ToSnakeCase("user-created."), "user_created_");
    EXPECT_EQ(ToSnakeCase("user__created"), "user_created");
    EXPECT_EQ(ToSnakeCase("_private"), "_private");
    EXPECT_EQ(ToSnakeCase("- . -"), "");  // the outbox refuses such a name (migration 0013)
}

// The relay converts every name as it encodes the row, including names an older emit() had already converted, so
// the conversion must be idempotent; IsSnakeCase is its allocation-free fast path and must agree with it.
TEST(SnakeCase, IsIdempotentAndIsSnakeCaseAgreesOverRandomNames) {
    const std::string alphabet[] = {"a", "Z", "7", "_", "-", ".", " ", "\t", "HTTP", "Id", "x", "\xc3\xa9", "__", "!"};
    std::uint32_t state = 12345;
    const auto next = [&state] {
        state = state * 1664525u + 1013904223u;
        return state >> 8;
    };
    for (int round = 0; round < 20000; ++round) {
        std::string name;
        const auto parts = next() % 8;
        for (std::uint32_t i = 0; i < parts; ++i) name += alphabet[next() % std::size(alphabet)];
        const std::string once = ToSnakeCase(name);
        ASSERT_EQ(ToSnakeCase(once), once) << "not idempotent for \"" << name << "\"";
        ASSERT_EQ(IsSnakeCase(name), !name.empty() && once == name) << "\"" << name << "\"";
    }
}

TEST(MinifyJson, RemovesWhitespaceOutsideStringsOnly) {
    EXPECT_EQ(MinifyJson("{\"email\":\"a@b.c\", \"first_name\":\"A\",\"last_name\":\"B\"}"),
              "{\"email\":\"a@b.c\",\"first_name\":\"A\",\"last_name\":\"B\"}");
    EXPECT_EQ(MinifyJson(" {\n \"a b\" : \"x  y\" ,\t\"c\": [1, 2] } "), "{\"a b\":\"x  y\",\"c\":[1,2]}");
}

TEST(MinifyJson, KeepsKeyOrderDuplicatesAndEscapes) {
    EXPECT_EQ(MinifyJson("{\"z\": 1, \"a\": 2, \"z\": 3}"), "{\"z\":1,\"a\":2,\"z\":3}");
    EXPECT_EQ(MinifyJson("{\"q\": \"say \\\"hi\\\" \\\\ \"}"), "{\"q\":\"say \\\"hi\\\" \\\\ \"}");
    EXPECT_EQ(MinifyJson("{\"u\": \"\\u00e9 caf\xc3\xa9\"}"), "{\"u\":\"\\u00e9 caf\xc3\xa9\"}");
}

TEST(MinifyJson, RejectsInvalidJsonNamingTheField) {
    try {
        MinifyJson("{\"a\": }", "event_context");
        FAIL() << "expected InvalidInputError";
    } catch (const InvalidInputError& e) {
        EXPECT_EQ(e.Field(), "event_context");
        EXPECT_NE(std::string(e.what()).find("expected valid JSON"), std::string::npos);
    }
    EXPECT_THROW(MinifyJson("{\"a\": 1"), InvalidInputError);
}

TEST(Uuid, TimeOrderedIdsCarryTheirMillisecondAndSortByIt) {
    const auto t = std::chrono::system_clock::time_point(std::chrono::milliseconds(0x0123456789ABLL));
    const auto a = Uuid::TimeOrdered(t);
    const auto b = Uuid::TimeOrdered(t);
    EXPECT_EQ(a.ToString().substr(0, 15), "01234567-89ab-7");  // the 48-bit time, then the version nibble
    EXPECT_EQ(a.bytes[8] & 0xC0, 0x80);                        // RFC variant
    EXPECT_NE(a, b);                                           // 74 random bits
    const auto later = Uuid::TimeOrdered(t + std::chrono::milliseconds(1));
    EXPECT_LT(a, later);
    EXPECT_LT(b, later);
    EXPECT_EQ(Uuid::Parse(later.ToString()), later);
}

TEST(Uuid, RoundTripsAndRejectsMalformed) {
    const auto id = Uuid::Parse("0F8FAD5B-D9CB-469F-A165-70867728950E");
    ASSERT_TRUE(id.has_value());
    EXPECT_EQ(id->ToString(), "0f8fad5b-d9cb-469f-a165-70867728950e");
    EXPECT_FALSE(Uuid::Parse("0f8fad5b-d9cb-469f-a165-70867728950").has_value());
    EXPECT_FALSE(Uuid::Parse("0f8fad5bxd9cb-469f-a165-70867728950e").has_value());
    EXPECT_FALSE(Uuid::Parse("0f8fad5b-d9cb-469f-a165-70867728950g").has_value());
    const Uuid r = Uuid::Random();
    EXPECT_EQ(r.bytes[6] >> 4, 4);
    EXPECT_NE(r, Uuid::Random());
}

TEST(Config, DefaultsMatchTheSeed) {
    const Config c = LoadConfig({});
    EXPECT_EQ(c.environment, "Local");
    EXPECT_EQ(c.relay.event_batch_size, 1000);
    EXPECT_EQ(c.relay.processing_interval, std::chrono::seconds(60));
    EXPECT_EQ(c.relay.clickhouse_batch_size, 10000);
    EXPECT_EQ(c.clickhouse.table, "event_log");
    EXPECT_EQ(c.clickhouse.database, "default");
    EXPECT_EQ(c.clickhouse.port, 8123);
    EXPECT_EQ(c.clickhouse.connect_timeout, std::chrono::seconds(30));
    EXPECT_EQ(c.clickhouse.send_receive_timeout, std::chrono::seconds(10));
}

TEST(Config, DatabaseUrlWinsOverPostgresParts) {
    const Config c =
        LoadConfig({{"DATABASE_URL", "postgres://test_user:12%2F3456@db:6543/test_database?sslmode=disable"},
                    {"POSTGRES_HOST", "ignored"},
                    {"POSTGRES_DB", "ignored"}});
    EXPECT_EQ(c.postgres.host, "db");
    EXPECT_EQ(c.postgres.port, 6543);
    EXPECT_EQ(c.postgres.user, "test_user");
    EXPECT_EQ(c.postgres.password, "12/3456");
    EXPECT_EQ(c.postgres.database, "test_database");
    EXPECT_EQ(c.postgres.sslmode, "disable");
    EXPECT_EQ(c.postgres.Redacted().find("12/3456"), std::string::npos);
}

TEST(Config, PostgresPartsWhenNoUrl) {
    const Config c = LoadConfig({{"POSTGRES_HOST", "pg"},
                                 {"POSTGRES_PORT", "5433"},
                                 {"POSTGRES_USER", "u"},
                                 {"POSTGRES_PASSWORD", "p"},
                                 {"POSTGRES_DB", "d"}});
    EXPECT_EQ(c.postgres.ConnInfo(), "host='pg' port=5433 user='u' dbname='d' password='p'");
}

TEST(Config, ClickHouseUriWinsOverParts) {
    const Config c = LoadConfig({{"CLICKHOUSE_URI", "http://analyst:s3cret@clickhouse:18123/analytics"},
                                 {"CLICKHOUSE_HOST", "ignored"},
                                 {"CLICKHOUSE_SCHEMA", "ignored"},
                                 {"CLICKHOUSE_EVENT_LOG_TABLE_NAME", "events"}});
    EXPECT_EQ(c.clickhouse.host, "clickhouse");
    EXPECT_EQ(c.clickhouse.port, 18123);
    EXPECT_EQ(c.clickhouse.user, "analyst");
    EXPECT_EQ(c.clickhouse.password, "s3cret");
    EXPECT_EQ(c.clickhouse.database, "analytics");
    EXPECT_EQ(c.clickhouse.table, "events");
    EXPECT_EQ(c.clickhouse.Redacted().find("s3cret"), std::string::npos);
}

TEST(Config, BadValuesNameTheVariable) {
    auto message_for = [](EnvMap env) -> std::string {
        try {
            LoadConfig(env);
        } catch (const ConfigError& e) {
            return e.what();
        }
        return "no error";
    };
    EXPECT_NE(message_for({{"EVENT_BATCH_SIZE", "lots"}}).find("EVENT_BATCH_SIZE: expected an integer"),
              std::string::npos);
    EXPECT_NE(message_for({{"EVENT_BATCH_SIZE", "0"}}).find("EVENT_BATCH_SIZE"), std::string::npos);
    EXPECT_NE(message_for({{"CLICKHOUSE_PORT", "99999"}}).find("CLICKHOUSE_PORT"), std::string::npos);
    EXPECT_NE(message_for({{"EVENT_PROCESSING_INTERVAL", "-1"}}).find("EVENT_PROCESSING_INTERVAL"), std::string::npos);
    EXPECT_NE(message_for({{"DEBUG", "maybe"}}).find("DEBUG: expected true or false"), std::string::npos);
    EXPECT_NE(message_for({{"DATABASE_URL", "not a url"}}).find("DATABASE_URL"), std::string::npos);
    EXPECT_NE(message_for({{"CLICKHOUSE_EVENT_LOG_TABLE_NAME", "x; DROP"}}).find("CLICKHOUSE_EVENT_LOG_TABLE_NAME"),
              std::string::npos);
    EXPECT_NE(message_for({{"CLICKHOUSE_PROTOCOL", "tcp"}}).find("CLICKHOUSE_PROTOCOL"), std::string::npos);
}

TEST(Config, FractionalSecondsAndDotenv) {
    const EnvMap env = ParseDotenv(
        "# comment\nexport EVENT_PROCESSING_INTERVAL=0.5\nSECRET_KEY=\"v3ry s3cr3t\"\n"
        "ENVIRONMENT=dev # trailing comment\n\n");
    EXPECT_EQ(env.at("SECRET_KEY"), "v3ry s3cr3t");
    EXPECT_EQ(env.at("ENVIRONMENT"), "dev");
    const Config c = LoadConfig(env);
    EXPECT_EQ(c.relay.processing_interval, std::chrono::milliseconds(500));
    EXPECT_THROW(ParseDotenv("JUST_A_WORD\n"), ConfigError);
}

}  // namespace
}  // namespace eventlog
