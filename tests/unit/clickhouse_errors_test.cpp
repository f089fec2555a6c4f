#include <gtest/gtest.h>

#include <eventlog/clickhouse/client.hpp>
#include <eventlog/clickhouse/errors.hpp>

namespace eventlog::clickhouse {
namespace {

TEST(ClickHouseErrorsTest, ParsesLegacyFormat) {
    EXPECT_EQ(ParseServerErrorCode("Code: 81, e.displayText() = DB::Exception: Database nope doesn't exist, "
                                   "e.what() = DB::Exception\n"),
              81);
    EXPECT_EQ(ParseServerErrorCode("Code: 395, e.displayText() = DB::Exception: Value passed to 'throwIf' function "
                                   "is non zero, e.what() = DB::Exception"),
              395);
}

TEST(ClickHouseErrorsTest, ParsesModernFormat) {
    EXPECT_EQ(ParseServerErrorCode("Code: 60. DB::Exception: Table default.x does not exist. (UNKNOWN_TABLE) "
                                   "(version 23.8.2.7 (official build))\n"),
              60);
    EXPECT_EQ(ParseServerErrorCode("Code: 516. DB::Exception: default: Authentication failed: password is incorrect, "
                                   "or there is no user with such name. (AUTHENTICATION_FAILED)"),
              516);
}

TEST(ClickHouseErrorsTest, ParsesCodeAfterPartialOutput) {
    EXPECT_EQ(ParseServerErrorCode("1\n2\nCode: 241. DB::Exception: Memory limit exceeded"), 241);
}

TEST(ClickHouseErrorsTest, NoCode) {
    EXPECT_EQ(ParseServerErrorCode(""), std::nullopt);
    EXPECT_EQ(ParseServerErrorCode("Bad Gateway"), std::nullopt);
    EXPECT_EQ(ParseServerErrorCode("Code: abc"), std::nullopt);
    EXPECT_EQ(ParseServerErrorCode("Code: 12"), std::nullopt);
}

TEST(ClickHouseErrorsTest, ConfigurationCodes) {
    for (int code : {192, 193, 194, 516, 497, 60, 81, 16, 47, 115}) {
        EXPECT_EQ(ClassifyServerError(code, false), ErrorKind::kConfiguration) << code;
        EXPECT_EQ(ClassifyServerError(code, true), ErrorKind::kConfiguration) << code;
    }
    EXPECT_TRUE(IsAuthenticationError(193));
    EXPECT_TRUE(IsAuthenticationError(516));
    EXPECT_FALSE(IsAuthenticationError(60));
}

TEST(ClickHouseErrorsTest, ContentRejections) {
    for (int code : {395, 6, 27, 33, 38, 41, 53, 69, 70, 117, 321, 131, 26, 72}) {
        EXPECT_EQ(ClassifyServerError(code, true), ErrorKind::kRejected) << code;
        EXPECT_EQ(ClassifyServerError(code, false), ErrorKind::kRejected) << code;
    }
}

TEST(ClickHouseErrorsTest, TransientAndInDoubt) {
    for (int code : {252, 241, 202, 210}) {
        EXPECT_EQ(ClassifyServerError(code, true), ErrorKind::kTransient) << code;
        EXPECT_EQ(ClassifyServerError(code, false), ErrorKind::kTransient) << code;
    }
    for (int code : {159, 209, 394}) {
        EXPECT_EQ(ClassifyServerError(code, true), ErrorKind::kInDoubt) << code;
        EXPECT_EQ(ClassifyServerError(code, false), ErrorKind::kTransient) << code;
    }
    // A replicated table's: no ZooKeeper, a read-only replica, a quorum out of reach: nothing written. An unknown
    // status (the part written, its commit or quorum not confirmed) or ZooKeeper failing meanwhile: in doubt.
    for (int code : {225, 242, 285, 286}) {
        EXPECT_EQ(ClassifyServerError(code, true), ErrorKind::kTransient) << code;
    }
    for (int code : {319, 999}) {
        EXPECT_EQ(ClassifyServerError(code, true), ErrorKind::kInDoubt) << code;
        EXPECT_EQ(ClassifyServerError(code, false), ErrorKind::kTransient) << code;
    }
    EXPECT_EQ(ClassifyServerError(999999, true), ErrorKind::kTransient);
    EXPECT_EQ(ClassifyServerError(62, false), ErrorKind::kTransient);
}

TEST(ClickHouseErrorsTest, Names) {
    EXPECT_EQ(ServerErrorName(60), "UNKNOWN_TABLE");
    EXPECT_EQ(ServerErrorName(252), "TOO_MANY_PARTS");
    EXPECT_EQ(ServerErrorName(123456), "");
}

TEST(ClickHouseErrorsTest, ThrowErrorPicksTheSubclass) {
    EXPECT_THROW(ThrowError(ErrorKind::kTransient, "x"), TransientError);
    EXPECT_THROW(ThrowError(ErrorKind::kInDoubt, "x"), InDoubtError);
    EXPECT_THROW(ThrowError(ErrorKind::kRejected, "x"), RejectedError);
    EXPECT_THROW(ThrowError(ErrorKind::kConfiguration, "x"), ConfigError);
}

TEST(ClickHouseQuotingTest, Identifiers) {
    EXPECT_EQ(QuoteIdentifier("event_log"), "`event_log`");
    EXPECT_EQ(QuoteIdentifier("a`b\\c"), "`a\\`b\\\\c`");
}

TEST(ClickHouseQuotingTest, Strings) {
    EXPECT_EQ(QuoteString("it's"), "'it\\'s'");
    EXPECT_EQ(QuoteString("a\\b\nc"), "'a\\\\b\\nc'");
    EXPECT_EQ(QuoteString(std::string_view("\0", 1)), "'\\0'");
}

TEST(ClickHouseVersionTest, ParseAndCompare) {
    const auto v = ParseServerVersion("18.16.1\n");
    EXPECT_EQ(v.major, 18);
    EXPECT_EQ(v.minor, 16);
    EXPECT_EQ(v.patch, 1);
    EXPECT_EQ(v.text, "18.16.1");
    EXPECT_TRUE(v.AtLeast(18, 16));
    EXPECT_TRUE(v.AtLeast(1, 99));
    EXPECT_FALSE(v.AtLeast(18, 17));
    EXPECT_FALSE(v.AtLeast(20, 1));
    const auto modern = ParseServerVersion("24.8.4.13");
    EXPECT_TRUE(modern.AtLeast(22, 2));
    EXPECT_EQ(modern.patch, 4);
}

TEST(ClickHouseErrorsTest, WithoutEndpointDropsTheServerUrlAndTheStageOfAnInsertError) {
    EXPECT_EQ(WithoutEndpoint("ClickHouse http://10.0.0.7:8123 (insert into `db`.`eventlog_stage_1_2_3`): HTTP 500 "
                              "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO: Code: 395, e.displayText() = DB::Exception: x"),
              "HTTP 500 FUNCTION_THROW_IF_VALUE_IS_NON_ZERO: Code: 395, e.displayText() = DB::Exception: x");
    // Anything else is left as it is.
    EXPECT_EQ(WithoutEndpoint("event_date_time: outside DateTime"), "event_date_time: outside DateTime");
    EXPECT_EQ(WithoutEndpoint("ClickHouse http://h:1 (query SELECT 1): HTTP 500"),
              "ClickHouse http://h:1 (query SELECT 1): HTTP 500");
}

}  // namespace
}  // namespace eventlog::clickhouse
