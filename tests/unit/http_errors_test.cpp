// The PostgreSQL SQLSTATE classifier and the table from error kinds to HTTP statuses.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <eventlog/http/api_keys.hpp>
#include <eventlog/http/errors.hpp>
#include <eventlog/pg/errors.hpp>
#include <eventlog/pg/pool.hpp>

namespace eventlog {
namespace {

TEST(PgErrorsTest, ConnectionLossShutdownAndReadOnlyAreTransientAndPoisonTheSession) {
    for (const char* s : {"08000", "08003", "08006", "08001", "08004", "57P01", "57P02", "57P03", "25006"}) {
        const auto c = pg::ClassifySqlstate(s);
        EXPECT_EQ(c.kind, ErrorKind::kTransient) << s;
        EXPECT_TRUE(c.poisons_connection) << s;
    }
}

TEST(PgErrorsTest, ConflictsAndResourceShortagesAreTransientOnTheSameSession) {
    for (const char* s : {"40001", "40P01", "55P03", "57014", "53000", "53100", "53200", "53300", "54000", "54001"}) {
        const auto c = pg::ClassifySqlstate(s);
        EXPECT_EQ(c.kind, ErrorKind::kTransient) << s;
        EXPECT_FALSE(c.poisons_connection) << s;
    }
}

TEST(PgErrorsTest, AuthenticationMissingObjectsAndPrivilegesAreConfiguration) {
    for (const char* s : {"28000", "28P01", "3D000", "42P01", "3F000", "42883", "42501"}) {
        EXPECT_EQ(pg::ClassifySqlstate(s).kind, ErrorKind::kConfiguration) << s;
    }
}

TEST(PgErrorsTest, DataAndConstraintErrorsAreInvalidInput) {
    for (const char* s : {"22023", "22P02", "22001", "22008", "23505", "23502", "23514", "23503"}) {
        EXPECT_EQ(pg::ClassifySqlstate(s).kind, ErrorKind::kInvalidInput) << s;
    }
}

TEST(PgErrorsTest, AnythingElseIsFatal) {
    for (const char* s : {"42601", "XX000", "P0001", "", "0"}) {
        EXPECT_EQ(pg::ClassifySqlstate(s).kind, ErrorKind::kFatal) << s;
        EXPECT_FALSE(pg::ClassifySqlstate(s).poisons_connection) << s;
    }
}

TEST(HttpErrorTableTest, EachKindHasOneStatus) {
    EXPECT_EQ(http::StatusFor(ErrorKind::kInvalidInput), 400);
    EXPECT_EQ(http::StatusFor(ErrorKind::kTransient), 503);
    EXPECT_EQ(http::StatusFor(ErrorKind::kInDoubt), 503);
    EXPECT_EQ(http::StatusFor(ErrorKind::kRejected), 422);
    EXPECT_EQ(http::StatusFor(ErrorKind::kConfiguration), 500);
    EXPECT_EQ(http::StatusFor(ErrorKind::kFatal), 500);
}

TEST(HttpErrorTableTest, AnswersCarryNoServerTextAndRetryableOnesSayWhen) {
    Error server(ErrorKind::kConfiguration, "postgresql: permission denied for table outbox (SQLSTATE 42501)");
    server.SetOrigin(ErrorSource::kPostgres, "42501");
    auto p = http::ProblemFor(server);
    EXPECT_EQ(p.status, 500);
    EXPECT_EQ(p.error, "internal error");

    InvalidInputError constraint("postgresql", "duplicate key value violates unique constraint (SQLSTATE 23505)");
    constraint.SetOrigin(ErrorSource::kPostgres, "23505");
    p = http::ProblemFor(constraint);
    EXPECT_EQ(p.status, 409);
    EXPECT_EQ(p.field, "");

    InvalidInputError data("postgresql", "invalid input syntax (SQLSTATE 22P02)");
    data.SetOrigin(ErrorSource::kPostgres, "22P02");
    p = http::ProblemFor(data);
    EXPECT_EQ(p.status, 400);
    EXPECT_EQ(p.field, "") << "a server's error names no field of the request";
    EXPECT_EQ(http::ProblemFor(InvalidInputError("event_id", "bad")).field, "event_id");

    p = http::ProblemFor(InDoubtError("postgresql: connection lost during COMMIT"));
    EXPECT_EQ(p.status, 503);
    EXPECT_EQ(p.retry_after, http::kRetryAfterSeconds);
    p = http::ProblemFor(pg::PoolTimeoutError("pool: no session"));
    EXPECT_EQ(p.status, 503);
    EXPECT_EQ(p.retry_after, http::kRetryAfterSeconds);
}

TEST(ApiKeyTokenTest, ParsesOnlyTheCanonicalForm) {
    const std::string secret(43, 'A');
    const auto parsed = http::ParseToken("elk_42_" + secret);
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->key_id, 42);
    for (const std::string& bad :
         {"elk_42_" + secret.substr(1), "elk__" + secret, "elk_0_" + secret, "elk_-1_" + secret, "xyz_42_" + secret,
          "elk_42_" + secret.substr(1) + "=", "elk_42_" + secret.substr(1) + "B", "elk_4x_" + secret}) {
        EXPECT_FALSE(http::ParseToken(bad)) << bad;
    }
}

TEST(ApiKeyTokenTest, TheHashDependsOnTheSecretKeyAndAnEmptyKeyIsRefused) {
    std::array<unsigned char, 32> secret{};
    secret[0] = 1;
    EXPECT_NE(http::HashTokenSecret("a", secret), http::HashTokenSecret("b", secret));
    EXPECT_EQ(http::HashTokenSecret("a", secret), http::HashTokenSecret("a", secret));
    EXPECT_THROW(http::HashTokenSecret("", secret), ConfigError);
}

// Stored keys hold this value: any way of computing it must give HMAC-SHA256 (here Python's hmac module's answer),
// also when one thread alternates between two keys.
TEST(ApiKeyTokenTest, TheHashIsHmacSha256OfTheSecretUnderTheSecretKey) {
    std::array<unsigned char, 32> secret{};
    for (std::size_t i = 0; i < secret.size(); ++i) secret[i] = static_cast<unsigned char>(i);
    const auto hex = [](const std::array<unsigned char, 32>& bytes) {
        std::string out;
        for (const unsigned char b : bytes) out += fmt::format("{:02x}", b);
        return out;
    };
    constexpr const char* kExpected = "f43248c43760e358e57ed2acc19d2d1d2db1d5be6276930c3d24767d6bc54049";
    EXPECT_EQ(hex(http::HashTokenSecret("http-api-test-secret", secret)), kExpected);
    EXPECT_NE(hex(http::HashTokenSecret("another", secret)), kExpected);
    EXPECT_EQ(hex(http::HashTokenSecret("http-api-test-secret", secret)), kExpected);
}

}  // namespace
}  // namespace eventlog
